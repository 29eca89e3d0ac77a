/*-------------------------------------------------------------------------
 *
 * inplace.c
 *		In-place restores with a conflict strategy, and their rollback.
 *
 * An IN_PLACE restore writes the snapshot's rows into the tables they were
 * backed up from, in the restore job's one transaction (restore.c).  Per
 * table of the scope:
 *
 *	1. The chain's copy of the table is materialised into the job's scratch
 *	   schema (for SELECTIVE, cut to the selection); for a whole table its
 *	   rows digest is checked against the manifest.
 *	2. The live table is locked (EXCLUSIVE: readers go on, writers wait) and
 *	   rows are matched by the manifest's primary key, over the columns the
 *	   backup and the table share (generated columns are the table's own):
 *	   a row the backup holds is unchanged, differs, or is missing from the
 *	   table; rows only the table holds are never touched by any strategy.
 *	3. The strategy decides, for rows that differ:
 *	     BACKUP_WINS     the backup's version
 *	     EXISTING_WINS   the table's version
 *	     NEWEST_WINS     the version whose modified_at_column is later
 *	     OLDEST_WINS     the version whose modified_at_column is earlier
 *	                     (a NULL time never wins; equal times keep the table's)
 *	     MERGE           the table's version, its NULL fields filled from the
 *	                     backup's
 *	     MANUAL          nothing: every differing and every missing row is
 *	                     recorded in restore_conflict with both versions and
 *	                     the differing fields
 *	   and every strategy but MANUAL inserts the rows missing from the table.
 *	4. With rollbackEnabled, before changing a row the job keeps its old
 *	   image (and the key of every row it inserts) in a table of schema
 *	   backup_offline_rollback, with an md5 of each row as the restore left
 *	   it; restore_rollback lists those tables.
 *	5. Validation: how many of the backup's rows the table now holds exactly.
 *
 * Everything that reads or writes the live table runs as the requester
 * (bo_restore_as): its privileges, the table's row-level security and
 * triggers apply, as if the requester had written the rows.
 *
 * rollback_restore runs in a job too, as its caller: it refuses when a
 * row the restore wrote has changed since (the md5 no longer matches),
 * else deletes the inserted rows, puts the old images back, checks them,
 * drops the rollback tables and marks the restore ROLLED_BACK, all in one
 * transaction.
 *
 * IDENTIFICATION
 *		src/restore/inplace.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "restore/restore.h"

#define ROLLBACK_SCHEMA "backup_offline_rollback"

/* one column of a live table, as a restore writes it */
typedef struct BoColumn
{
	char	   *name;			/* quoted */
	char	   *raw;			/* as in the catalog */
	char	   *type;			/* format_type of the live column */
	bool		in_backup;		/* the backup holds it */
	bool		generated;		/* the table computes it */
	bool		identity_always;	/* GENERATED ALWAYS AS IDENTITY: never updated */
	bool		key;
	bool		as_text;		/* the backup's copy holds it as text (a type holding a domain): cast on writing */
} BoColumn;

/* what the statements of one table are built from */
typedef struct BoInPlaceTable
{
	BoRestoreJob *job;
	const char *strategy;
	bool		rollback;
	bool		whole;			/* not SELECTIVE: every row of the backup's table */
	const char *live;			/* the live table, qualified */
	const char *source;			/* the materialised backup, qualified */
	const char *rollback_table; /* in the scratch schema, qualified */
	const char *conflicts;		/* MANUAL: the scratch table of conflicts, qualified */
	List	   *columns;		/* BoColumn, live table order */
	List	   *keys;			/* quoted key column names */
	List	   *raw_keys;		/* the same, as in the catalog */
	const char *modified;		/* quoted modified_at_column (NEWEST/OLDEST) */
	const char *modified_type;
	/* results */
	uint64		backup_rows;
	uint64		unchanged;
	uint64		differing;
	uint64		missing;
	uint64		table_only;
	uint64		updated;
	uint64		inserted;
	uint64		conflict_rows;
	uint64		matching;		/* after: backup rows the table holds exactly */
} BoInPlaceTable;

/*
 * "a.k1 = b.k1 AND ...".  Never an explicit cast to the live column's type
 * anywhere: an explicit cast truncates (varchar(3)) where the assignment
 * that INSERT and UPDATE do raises an error.
 */
static char *
key_join(BoInPlaceTable *t, const char *live, const char *other)
{
	StringInfoData s;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&s);
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (!c->key)
			continue;
		appendStringInfo(&s, "%s%s.%s = %s.%s", first ? "" : " AND ", live, c->name, other, c->name);
		first = false;
	}
	return s.data;
}

/* "ROW(x.c1, ...)::text" over the shared columns: rows compare by their text */
static char *
row_text(BoInPlaceTable *t, const char *alias)
{
	StringInfoData s;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&s);
	appendStringInfoString(&s, "ROW(");
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (!c->in_backup || c->generated)
			continue;
		appendStringInfo(&s, "%s%s.%s", first ? "" : ", ", alias, c->name);
		first = false;
	}
	appendStringInfoString(&s, ")::text");
	return s.data;
}

/* the first key column, to tell a matched row from a missing one */
static const char *
first_key(BoInPlaceTable *t)
{
	return linitial(t->keys);
}

/*
 * The columns that match a backup row with a live one: the primary key the
 * table had when it was backed up, else the key_columns of its entity type
 * in the registry (checked against the backup's rows: never NULL, never
 * twice).  A list of C strings.
 */
static List *
match_keys(BoInPlaceTable *t, Oid live, JsonbContainer *entry)
{
	List	   *keys = NIL;
	ListCell   *lc;
	Oid			types[3] = {UUIDOID, OIDOID, JSONBOID};
	Datum		values[3];
	uint64		i;

	foreach(lc, bo_jelements(bo_jcontainer(bo_jcontainer(entry, "definition"), "primaryKey")))
	{
		JsonbValue *k = lfirst(lc);

		keys = lappend(keys, pnstrdup(k->val.string.val, k->val.string.len));
	}
	if (keys != NIL)
		return keys;
	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(t->job->organization_id));
	values[1] = ObjectIdGetDatum(live);
	values[2] = JsonbPGetDatum(JsonbValueToJsonb(bo_jget(entry, "entityTypes")));
	bo_restore_exec("SELECT k FROM (SELECT r.key_columns FROM backup_offline.entity_registry r "
					"                WHERE r.table_name = $2 AND (r.organization_id = $1 OR r.organization_id IS NULL) "
					"                  AND $3 ? r.entity_type "
					"                ORDER BY r.organization_id NULLS LAST, r.entity_type LIMIT 1) x, "
					"       unnest(x.key_columns) k", 3, types, values);
	for (i = 0; i < SPI_processed; i++)
		keys = lappend(keys, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	if (keys == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s had no primary key when it was backed up, and the entity registry names no key columns for it",
						t->live),
				 errhint("Restore it into a new schema (destination.type NEW_SCHEMA) and reconcile by hand.")));
	return keys;
}

/*
 * Registry key columns must identify the rows of rel (the backup's copy, the
 * live table): none NULL, none twice; else updates would hit several rows.
 */
static void
check_keys_identify(BoInPlaceTable *t, const char *rel, const char *what)
{
	StringInfoData cols;
	StringInfoData nulls;
	ListCell   *lc;

	initStringInfo(&cols);
	initStringInfo(&nulls);
	foreach(lc, t->keys)
	{
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", (char *) lfirst(lc));
		appendStringInfo(&nulls, "%s%s IS NULL", nulls.len ? " OR " : "", (char *) lfirst(lc));
	}
	if (bo_restore_count(psprintf("SELECT (SELECT count(*) FROM %s WHERE %s) + "
								  "       (SELECT count(*) FROM (SELECT 1 FROM %s GROUP BY %s HAVING count(*) > 1) d)",
								  rel, nulls.data, rel, cols.data)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the key columns (%s) of table %s do not identify %s: some are NULL or repeated",
						cols.data, t->live, what),
				 errhint("Give the table a primary key, or restore it into a new schema and reconcile by hand.")));
}

/* the live table's columns, marked against the backup's copy and the keys */
static void
plan_columns(BoInPlaceTable *t, Oid live, Oid source, List *keys)
{
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(live), ObjectIdGetDatum(source)};
	SPITupleTable *rows;
	uint64		i;
	ListCell   *lc;

	bo_restore_exec("SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
					"       EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = $2 AND b.attname = a.attname "
					"                  AND b.attnum > 0 AND NOT b.attisdropped), "
					"       a.attgenerated <> '', a.attidentity = 'a', "
					"       EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = $2 AND b.attname = a.attname "
					"                  AND b.attnum > 0 AND NOT b.attisdropped AND b.atttypid = 'text'::regtype "
					"                  AND a.atttypid <> 'text'::regtype) "
					"  FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped "
					" ORDER BY a.attnum", 2, types, values);
	rows = SPI_tuptable;
	for (i = 0; i < SPI_processed; i++)
	{
		BoColumn   *c = palloc0(sizeof(BoColumn));
		char	   *name = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);

		c->name = pstrdup(quote_identifier(name));
		c->raw = name;
		c->type = SPI_getvalue(rows->vals[i], rows->tupdesc, 2);
		c->in_backup = strcmp(SPI_getvalue(rows->vals[i], rows->tupdesc, 3), "t") == 0;
		c->generated = strcmp(SPI_getvalue(rows->vals[i], rows->tupdesc, 4), "t") == 0;
		c->identity_always = strcmp(SPI_getvalue(rows->vals[i], rows->tupdesc, 5), "t") == 0;
		c->as_text = strcmp(SPI_getvalue(rows->vals[i], rows->tupdesc, 6), "t") == 0;
		foreach(lc, keys)
		{
			if (strcmp(name, lfirst(lc)) == 0)
				c->key = true;
		}
		if (c->key)
		{
			if (!c->in_backup || c->generated)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("key column %s of table %s cannot be matched with the backup's", name, t->live),
						 errhint("The column is generated now or missing from the backup; restore into a new schema instead.")));
			t->keys = lappend(t->keys, c->name);
			t->raw_keys = lappend(t->raw_keys, c->raw);
		}
		t->columns = lappend(t->columns, c);
	}
	if (list_length(t->keys) != list_length(keys))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s no longer has every column of its key", t->live),
				 errhint("Restore it into a new schema (destination.type NEW_SCHEMA) and reconcile by hand.")));
}

/* the backup's rows: unchanged, differing, missing; and rows only the table holds */
static void
classify(BoInPlaceTable *t)
{
	char	   *join = key_join(t, "t", "s");

	bo_restore_exec(psprintf("SELECT count(*), "
							 "       count(*) FILTER (WHERE t.%s IS NOT NULL AND %s IS NOT DISTINCT FROM %s), "
							 "       count(*) FILTER (WHERE t.%s IS NOT NULL AND %s IS DISTINCT FROM %s), "
							 "       count(*) FILTER (WHERE t.%s IS NULL) "
							 "  FROM %s s LEFT JOIN %s t ON %s",
							 first_key(t), row_text(t, "s"), row_text(t, "t"),
							 first_key(t), row_text(t, "s"), row_text(t, "t"),
							 first_key(t), t->source, t->live, join), 0, NULL, NULL);
	t->backup_rows = strtou64(bo_restore_value(1), NULL, 10);
	t->unchanged = strtou64(bo_restore_value(2), NULL, 10);
	t->differing = strtou64(bo_restore_value(3), NULL, 10);
	t->missing = strtou64(bo_restore_value(4), NULL, 10);
	/* for a selection, the rest of the table is simply outside it */
	if (t->whole)
		t->table_only = bo_restore_count(psprintf("SELECT count(*) FROM %s t WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE %s)",
												  t->live, t->source, join));
}

/* the rows that differ and that the strategy takes from the backup, as a condition on t and s */
static char *
update_condition(BoInPlaceTable *t)
{
	char	   *differ = psprintf("%s IS DISTINCT FROM %s", row_text(t, "s"), row_text(t, "t"));

	if (strcmp(t->strategy, "BACKUP_WINS") == 0)
		return differ;
	if (strcmp(t->strategy, "NEWEST_WINS") == 0)
		return psprintf("%s AND (s.%s > t.%s OR (t.%s IS NULL AND s.%s IS NOT NULL))", differ,
						t->modified, t->modified, t->modified, t->modified);
	if (strcmp(t->strategy, "OLDEST_WINS") == 0)
		return psprintf("%s AND (s.%s < t.%s OR (t.%s IS NULL AND s.%s IS NOT NULL))", differ,
						t->modified, t->modified, t->modified, t->modified);
	if (strcmp(t->strategy, "MERGE") == 0)
	{
		StringInfoData s;
		ListCell   *lc;

		initStringInfo(&s);
		foreach(lc, t->columns)
		{
			BoColumn   *c = lfirst(lc);

			if (c->in_backup && !c->generated && !c->key && !c->identity_always)
				appendStringInfo(&s, "%s(t.%s IS NULL AND s.%s IS NOT NULL)", s.len ? " OR " : "", c->name, c->name);
		}
		return s.len ? psprintf("(%s)", s.data) : NULL;
	}
	return NULL;					/* EXISTING_WINS */
}

/* SET list: the backup's values (MERGE: only where the table's are NULL) */
static char *
set_list(BoInPlaceTable *t)
{
	StringInfoData s;
	ListCell   *lc;
	bool		merge = strcmp(t->strategy, "MERGE") == 0;

	initStringInfo(&s);
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (!c->in_backup || c->generated || c->key || c->identity_always)
			continue;
		if (merge)
			appendStringInfo(&s, "%s%s = coalesce(t.%s, s.%s%s%s)", s.len ? ", " : "", c->name, c->name, c->name,
							 c->as_text ? "::" : "", c->as_text ? c->type : "");
		else
			appendStringInfo(&s, "%s%s = s.%s%s%s", s.len ? ", " : "", c->name, c->name,
							 c->as_text ? "::" : "", c->as_text ? c->type : "");
	}
	return s.len ? s.data : NULL;
}

/*
 * MANUAL: the differing and missing rows, both versions, into the conflicts
 * table (created by the extension owner; the requester may only insert).
 */
static void
collect_conflicts(BoInPlaceTable *t)
{
	StringInfoData names;
	StringInfoData key;
	ListCell   *lc;

	/* the shared columns by their catalog names: to_jsonb's keys */
	initStringInfo(&names);
	initStringInfo(&key);
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (!c->in_backup || c->generated)
			continue;
		appendStringInfo(&names, "%s%s", names.len ? ", " : "", quote_literal_cstr(c->raw));
		if (c->key)
			appendStringInfo(&key, "%s%s, s.%s", key.len ? ", " : "", quote_literal_cstr(c->raw), c->name);
	}
	bo_restore_exec(psprintf("INSERT INTO %s (record_key, conflict_type, backup_version, existing_version) "
							 "SELECT jsonb_build_object(%s), "
							 "       CASE WHEN t.%s IS NULL THEN 'BACKUP_ONLY' ELSE 'ROW_DIFFERS' END, "
							 "       (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(to_jsonb(s.*)) e "
							 "         WHERE e.key = ANY (ARRAY[%s])), "
							 "       CASE WHEN t.%s IS NOT NULL THEN "
							 "            (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(to_jsonb(t.*)) e "
							 "              WHERE e.key = ANY (ARRAY[%s])) END "
							 "  FROM %s s LEFT JOIN %s t ON %s "
							 " WHERE t.%s IS NULL OR %s IS DISTINCT FROM %s",
							 t->conflicts, key.data, first_key(t), names.data, first_key(t), names.data,
							 t->source, t->live, key_join(t, "t", "s"),
							 first_key(t), row_text(t, "s"), row_text(t, "t")), 0, NULL, NULL);
	t->conflict_rows = SPI_processed;
}

/* the column list and the backup's values, for INSERT (assignment converts them) */
static void
insert_lists(BoInPlaceTable *t, StringInfo cols, StringInfo vals)
{
	ListCell   *lc;

	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (!c->in_backup || c->generated)
			continue;
		appendStringInfo(cols, "%s%s", cols->len ? ", " : "", c->name);
		/* a value kept as text goes back through its type's input, as the requester */
		appendStringInfo(vals, "%ss.%s%s%s", vals->len ? ", " : "", c->name, c->as_text ? "::" : "", c->as_text ? c->type : "");
	}
}

/* as the requester: lock the live table (its privileges decide), classify, MANUAL's conflicts */
static void
classify_table(void *arg)
{
	BoInPlaceTable *t = arg;

	bo_restore_exec(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE", t->live), 0, NULL, NULL);
	classify(t);
	if (strcmp(t->strategy, "MANUAL") == 0)
	{
		collect_conflicts(t);
		t->matching = t->unchanged;
	}
}

/*
 * As the extension owner, before the writes: the old image of every row
 * the strategy will update ('U') and the key of every row it will insert
 * ('I'), in a table only the owner can touch.
 */
static void
keep_rollback(BoInPlaceTable *t, const char *cond)
{
	StringInfoData keys;
	StringInfoData vals;
	ListCell   *lc;

	bo_restore_exec(psprintf("CREATE TABLE %s AS SELECT * FROM %s WITH NO DATA", t->rollback_table, t->live), 0, NULL, NULL);
	bo_restore_exec(psprintf("ALTER TABLE %s ADD COLUMN __bo_action \"char\" NOT NULL, ADD COLUMN __bo_after text",
							 t->rollback_table), 0, NULL, NULL);
	if (cond != NULL && t->differing > 0)
		bo_restore_exec(psprintf("INSERT INTO %s SELECT t.*, 'U' FROM %s t JOIN %s s ON %s WHERE %s",
								 t->rollback_table, t->live, t->source, key_join(t, "t", "s"), cond), 0, NULL, NULL);
	initStringInfo(&keys);
	initStringInfo(&vals);
	foreach(lc, t->keys)
	{
		appendStringInfo(&keys, "%s, ", (char *) lfirst(lc));
		appendStringInfo(&vals, "s.%s, ", (char *) lfirst(lc));
	}
	if (t->missing > 0)
		bo_restore_exec(psprintf("INSERT INTO %s (%s__bo_action) SELECT %s'I' FROM %s s "
								 "WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE %s)",
								 t->rollback_table, keys.data, vals.data, t->source, t->live, key_join(t, "t", "s")),
						0, NULL, NULL);
}

/* as the requester: the strategy's updates and the missing rows' inserts, then the validation count */
static void
apply_table(void *arg)
{
	BoInPlaceTable *t = arg;
	char	   *join = key_join(t, "t", "s");
	char	   *cond = update_condition(t);
	char	   *set = set_list(t);
	StringInfoData cols;
	StringInfoData vals;

	if (cond != NULL && set != NULL && t->differing > 0)
	{
		bo_restore_exec(psprintf("UPDATE %s t SET %s FROM %s s WHERE %s AND %s", t->live, set, t->source, join, cond),
						0, NULL, NULL);
		t->updated = SPI_processed;
	}
	initStringInfo(&cols);
	initStringInfo(&vals);
	insert_lists(t, &cols, &vals);
	if (t->missing > 0)
	{
		bo_restore_exec(psprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s s "
								 "WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE %s)",
								 t->live, cols.data, vals.data, t->source, t->live, join), 0, NULL, NULL);
		t->inserted = SPI_processed;
	}
	CommandCounterIncrement();
	/* validation: the backup's rows the table now holds exactly */
	t->matching = bo_restore_count(psprintf("SELECT count(*) FROM %s s JOIN %s t ON %s WHERE %s IS NOT DISTINCT FROM %s",
											t->source, t->live, join, row_text(t, "s"), row_text(t, "t")));
}

/* one validation result */
static void
add_table_result(BoInPlaceTable *t, JsonbContainer *entry, bool verified)
{
	StringInfo	s = &t->job->results;

	if (t->job->nresults++ > 0)
		appendStringInfoString(s, ", ");
	appendStringInfoChar(s, '{');
	bo_json_add_text(s, "table", psprintf("%s.%s", bo_jstr(entry, "schema"), bo_jstr(entry, "name")));
	bo_json_add_text(s, "restoredAs", t->live);
	bo_json_add_text(s, "strategy", t->strategy);
	bo_json_add_u64(s, "backupRows", t->backup_rows);
	if (t->whole)
		bo_json_add_raw(s, "backupVerified", verified ? "true" : "false");
	bo_json_add_u64(s, "unchangedRows", t->unchanged);
	bo_json_add_u64(s, "differingRows", t->differing);
	bo_json_add_u64(s, "missingRows", t->missing);
	if (t->whole)
		bo_json_add_u64(s, "tableOnlyRows", t->table_only);
	bo_json_add_u64(s, "updatedRows", t->updated);
	bo_json_add_u64(s, "insertedRows", t->inserted);
	if (strcmp(t->strategy, "MANUAL") == 0)
		bo_json_add_u64(s, "conflicts", t->conflict_rows);
	else
		bo_json_add_u64(s, "keptExistingRows", t->differing - t->updated);
	bo_json_add_u64(s, "backupRowsMatching", t->matching);
	appendStringInfoChar(s, '}');
	t->job->rows += t->backup_rows;
	t->job->tables++;
}

/* the restore's number as a lower-case identifier part: rst_00000012 */
static char *
number_ident(const char *number)
{
	char	   *s = pstrdup(number);
	char	   *p;

	for (p = s; *p; p++)
		*p = (*p == '-') ? '_' : pg_ascii_tolower((unsigned char) *p);
	return s;
}

/*
 * The manifest entries of the scope, referenced tables before the tables
 * whose foreign keys point at them (among the scope's tables; cycles and
 * self-references keep the manifest's order): rows missing from a child
 * table can then point at rows the restore puts back into its parent.
 */
static List *
tables_in_order(BoRestoreJob *job)
{
	List	   *entries = NIL;
	List	   *oids = NIL;
	List	   *ordered = NIL;
	bool	   *placed;
	int			n;
	int			done = 0;
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(&job->manifest->root, "tables")))
	{
		JsonbContainer *e = ((JsonbValue *) lfirst(lc))->val.binary.data;
		Oid			nsp = get_namespace_oid(bo_jstr(e, "schema"), true);

		if (!bo_restore_table_in_scope(e, job->request))
			continue;
		entries = lappend(entries, e);
		oids = lappend_oid(oids, OidIsValid(nsp) ? get_relname_relid(bo_jstr(e, "name"), nsp) : InvalidOid);
	}
	n = list_length(entries);
	placed = palloc0(sizeof(bool) * Max(n, 1));
	while (done < n)
	{
		bool		progress = false;
		int			i;

		for (i = 0; i < n; i++)
		{
			Oid			types[2] = {OIDOID, OIDARRAYOID};
			Datum		values[2];
			Datum	   *waiting = palloc(sizeof(Datum) * Max(n, 1));
			int			nwaiting = 0;
			int			j;

			if (placed[i])
				continue;
			/* the scope's tables not placed yet that this one references */
			for (j = 0; j < n; j++)
				if (!placed[j] && j != i && OidIsValid(list_nth_oid(oids, j)))
					waiting[nwaiting++] = ObjectIdGetDatum(list_nth_oid(oids, j));
			if (OidIsValid(list_nth_oid(oids, i)) && nwaiting > 0)
			{
				values[0] = ObjectIdGetDatum(list_nth_oid(oids, i));
				values[1] = PointerGetDatum(construct_array(waiting, nwaiting, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
				bo_restore_exec("SELECT 1 FROM pg_constraint WHERE conrelid = $1 AND contype = 'f' AND confrelid = ANY ($2)",
								2, types, values);
				if (SPI_processed > 0)
					continue;
			}
			placed[i] = true;
			ordered = lappend(ordered, list_nth(entries, i));
			done++;
			progress = true;
		}
		/* a cycle: the rest in the manifest's order */
		if (!progress)
			for (i = 0; i < n; i++)
				if (!placed[i])
				{
					placed[i] = true;
					ordered = lappend(ordered, list_nth(entries, i));
					done++;
				}
	}
	return ordered;
}

void
bo_restore_in_place(BoRestoreJob *job, BoStorage *storage, List *chain)
{
	char	   *strategy = bo_jstr(&job->request->root, "conflictResolutionStrategy");
	JsonbValue *rb = bo_jget(&job->request->root, "rollbackEnabled");
	bool		rollback = rb != NULL && rb->type == jbvBool && rb->val.boolean && strcmp(strategy, "MANUAL") != 0;
	bool		selective = strcmp(bo_jstr(&job->request->root, "restoreType"), "SELECTIVE") == 0;
	/* the scratch schema is the owner's: the requester reads and inserts where granted, creates nothing */
	char	   *scratch = bo_restore_scratch_schema(NULL);
	Oid			nsp = get_namespace_oid(scratch, false);
	const char *requester = quote_identifier(job->requested_by);
	uint64		updated = 0;
	uint64		inserted = 0;
	uint64		conflicts = 0;
	int			n = 0;
	ListCell   *lc;

	bo_restore_exec(psprintf("GRANT USAGE ON SCHEMA %s TO %s", quote_identifier(scratch), requester), 0, NULL, NULL);
	if (rollback)
		bo_restore_exec("CREATE SCHEMA IF NOT EXISTS " ROLLBACK_SCHEMA, 0, NULL, NULL);
	foreach(lc, tables_in_order(job))
	{
		JsonbContainer *e = lfirst(lc);
		char	   *tschema = bo_jstr(e, "schema");
		char	   *tname = bo_jstr(e, "name");
		BoInPlaceTable t = {0};
		Oid			live;
		Oid			source;
		char	   *copy;
		bool		verified = false;
		BoRowsDigest got;

		copy = psprintf("b_%d", ++n);
		bo_job_check_cancel();
		t.job = job;
		t.strategy = strategy;
		t.rollback = rollback;
		t.whole = !selective;
		t.live = quote_qualified_identifier(tschema, tname);
		t.source = quote_qualified_identifier(scratch, copy);
		t.rollback_table = quote_qualified_identifier(scratch, psprintf("r_%d", n));
		t.conflicts = quote_qualified_identifier(scratch, psprintf("c_%d", n));
		live = get_relname_relid(tname, get_namespace_oid(tschema, true));
		if (!OidIsValid(live))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("table %s does not exist: an in-place restore writes into it", t.live),
					 errhint("Restore into a new schema (destination.type NEW_SCHEMA), or recreate the table first.")));

		/* the backup's copy: the requester reads it (and cuts it to a selection) */
		bo_materialize_table_digest(storage, chain, tschema, tname, scratch, copy, selective ? NULL : &got);
		bo_restore_exec(psprintf("GRANT SELECT ON %s TO %s", t.source, requester), 0, NULL, NULL);
		CommandCounterIncrement();
		source = get_relname_relid(copy, nsp);
		if (selective)
			bo_restore_select(job, e, t.source);
		else
		{
			verified = bo_restore_digest_equal(e, &got);
			if (!verified)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("the backup of table %s as loaded differs from its manifest: " UINT64_FORMAT " rows, %s",
								t.live, got.count, bo_rows_digest_hex(&got))));
		}
		CommandCounterIncrement();

		{
			bool		has_pk = bo_jelements(bo_jcontainer(bo_jcontainer(e, "definition"), "primaryKey")) != NIL;

			plan_columns(&t, live, source, match_keys(&t, live, e));
			if (!has_pk)
			{
				check_keys_identify(&t, t.source, "the backup's rows");
				check_keys_identify(&t, t.live, "the table's rows");
			}
		}
		if (strcmp(strategy, "NEWEST_WINS") == 0 || strcmp(strategy, "OLDEST_WINS") == 0)
		{
			Oid			types[3] = {UUIDOID, OIDOID, JSONBOID};
			Datum		values[3];
			char	   *column;
			ListCell   *lc2;

			values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->organization_id));
			values[1] = ObjectIdGetDatum(live);
			values[2] = JsonbPGetDatum(JsonbValueToJsonb(bo_jget(e, "entityTypes")));
			bo_restore_exec("SELECT backup_offline.restore_modified_column($1, $2, $3)", 3, types, values);
			column = bo_restore_value(1);
			if (column == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("%s needs the time each row of %s last changed, and entity_registry names no modified_at_column for it",
								strategy, t.live),
						 errhint("Set modified_at_column of its entity type, or restore with another strategy.")));
			foreach(lc2, t.columns)
			{
				BoColumn   *c = lfirst(lc2);

				if (strcmp(c->name, quote_identifier(column)) == 0 && c->in_backup)
				{
					t.modified = c->name;
					t.modified_type = c->type;
				}
			}
			if (t.modified == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("the backup of %s has no column %s to compare", t.live, quote_identifier(column)),
						 errhint("Restore with another strategy.")));
		}

		/*
		 * As the requester: lock the live table (readers go on, writers wait
		 * until the restore commits), classify, MANUAL's conflicts; as the
		 * owner: keep what a rollback needs; as the requester: write.
		 */
		if (strcmp(strategy, "MANUAL") == 0)
		{
			bo_restore_exec(psprintf("CREATE TABLE %s (record_key jsonb, conflict_type text, backup_version jsonb, "
									 "existing_version jsonb)", t.conflicts), 0, NULL, NULL);
			bo_restore_exec(psprintf("GRANT INSERT ON %s TO %s", t.conflicts, requester), 0, NULL, NULL);
		}
		bo_restore_as(job->requested_by, classify_table, &t);
		CommandCounterIncrement();
		if (strcmp(strategy, "MANUAL") != 0)
		{
			if (rollback)
				keep_rollback(&t, update_condition(&t));
			CommandCounterIncrement();
			bo_restore_as(job->requested_by, apply_table, &t);
			CommandCounterIncrement();
			/* each kept row as the restore left it, to tell a later change */
			if (rollback)
				bo_restore_exec(psprintf("UPDATE %s r SET __bo_after = md5((t.*)::text) FROM %s t WHERE %s",
										 t.rollback_table, t.live, key_join(&t, "t", "r")), 0, NULL, NULL);
		}

		if (t.conflict_rows > 0)
		{
			Oid			types[4] = {UUIDOID, UUIDOID, NAMEOID, NAMEOID};
			Datum		values[4];

			values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
			values[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->organization_id));
			values[2] = DirectFunctionCall1(namein, CStringGetDatum(tschema));
			values[3] = DirectFunctionCall1(namein, CStringGetDatum(tname));
			bo_restore_exec(psprintf("INSERT INTO backup_offline.restore_conflict "
									 "  (restore_id, organization_id, table_schema, table_name, record_key, conflict_type, "
									 "   backup_version, existing_version, conflicting_fields) "
									 "SELECT $1, $2, $3, $4, c.record_key, c.conflict_type, c.backup_version, c.existing_version, "
									 "       CASE WHEN c.existing_version IS NULL THEN '[]'::jsonb ELSE "
									 "       (SELECT coalesce(jsonb_agg(jsonb_build_object('field', k, 'backupValue', c.backup_version->k, "
									 "                                                     'existingValue', c.existing_version->k) ORDER BY k), '[]') "
									 "          FROM jsonb_object_keys(c.backup_version) k "
									 "         WHERE (c.backup_version->>k) IS DISTINCT FROM (c.existing_version->>k)) END "
									 "  FROM %s c", t.conflicts), 4, types, values);
		}
		if (rollback)
		{
			char	   *name = psprintf("%s_%d", number_ident(job->number), n);
			Oid			types[9] = {UUIDOID, UUIDOID, NAMEOID, NAMEOID, NAMEOID, TEXTARRAYOID, INT8OID, INT8OID, INT4OID};
			Datum		values[9];
			Datum	   *keys = palloc(sizeof(Datum) * list_length(t.raw_keys));
			int			k = 0;
			ListCell   *lc2;

			/* the rollback table leaves the scratch schema, the extension's own */
			bo_restore_exec(psprintf("ALTER TABLE %s SET SCHEMA " ROLLBACK_SCHEMA, t.rollback_table), 0, NULL, NULL);
			bo_restore_exec(psprintf("ALTER TABLE " ROLLBACK_SCHEMA ".%s RENAME TO %s",
									 quote_identifier(psprintf("r_%d", n)), quote_identifier(name)), 0, NULL, NULL);
			foreach(lc2, t.raw_keys)
				keys[k++] = CStringGetTextDatum(lfirst(lc2));
			values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
			values[1] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->organization_id));
			values[2] = DirectFunctionCall1(namein, CStringGetDatum(tschema));
			values[3] = DirectFunctionCall1(namein, CStringGetDatum(tname));
			values[4] = DirectFunctionCall1(namein, CStringGetDatum(name));
			values[5] = PointerGetDatum(construct_array(keys, k, TEXTOID, -1, false, TYPALIGN_INT));
			values[6] = Int64GetDatum(t.updated);
			values[7] = Int64GetDatum(t.inserted);
			values[8] = Int32GetDatum(n);
			bo_restore_exec("INSERT INTO backup_offline.restore_rollback "
							"  (restore_id, organization_id, table_schema, table_name, rollback_table, key_columns, "
							"   updated_rows, inserted_rows, ordinal) "
							"VALUES ($1, $2, $3, $4, $5, $6::name[], $7, $8, $9)", 9, types, values);
		}
		add_table_result(&t, e, verified);
		updated += t.updated;
		inserted += t.inserted;
		conflicts += t.conflict_rows;
		CommandCounterIncrement();
	}
	bo_restore_exec(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(scratch)), 0, NULL, NULL);
	appendStringInfo(&job->extra, ", \"strategy\": \"%s\", \"updatedRows\": " UINT64_FORMAT
					 ", \"insertedRows\": " UINT64_FORMAT ", \"conflicts\": " UINT64_FORMAT
					 ", \"rollbackKept\": %s",
					 strategy, updated, inserted, conflicts, rollback ? "true" : "false");
}

/* ---------------------------------------------------------------------
 * rollback_restore's job
 * ---------------------------------------------------------------------
 */
typedef struct BoRollbackTable
{
	const char *live;
	const char *copy;			/* the rollback rows, in the scratch schema */
	List	   *columns;		/* BoColumn of the live table */
	uint64		changed;
	uint64		removed;
	uint64		restored;
	uint64		mismatched;
} BoRollbackTable;

static char *
rollback_join(BoRollbackTable *t)
{
	StringInfoData s;
	ListCell   *lc;

	initStringInfo(&s);
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (c->key)
			appendStringInfo(&s, "%st.%s = r.%s", s.len ? " AND " : "", c->name, c->name);
	}
	return s.data;
}

/* put the old rows back; runs as rollback_restore's caller */
static void
rollback_table(void *arg)
{
	BoRollbackTable *t = arg;
	char	   *join = rollback_join(t);
	StringInfoData set;
	StringInfoData old_row;
	StringInfoData new_row;
	ListCell   *lc;

	bo_restore_exec(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE", t->live), 0, NULL, NULL);
	t->changed = bo_restore_count(psprintf("SELECT count(*) FROM %s r LEFT JOIN %s t ON %s "
										   " WHERE md5((t.*)::text) IS DISTINCT FROM r.__bo_after",
										   t->copy, t->live, join));
	if (t->changed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg_plural(UINT64_FORMAT " row of %s changed after the restore wrote it",
							   UINT64_FORMAT " rows of %s changed after the restore wrote them",
							   t->changed, t->changed, t->live),
				 errdetail("A rollback would overwrite those changes."),
				 errhint("Nothing was rolled back.  Reconcile those rows by hand, or restore again from a snapshot.")));

	initStringInfo(&set);
	initStringInfo(&old_row);
	initStringInfo(&new_row);
	foreach(lc, t->columns)
	{
		BoColumn   *c = lfirst(lc);

		if (c->generated)
			continue;
		appendStringInfo(&old_row, "%sr.%s", old_row.len ? ", " : "", c->name);
		appendStringInfo(&new_row, "%st.%s", new_row.len ? ", " : "", c->name);
		if (!c->key && !c->identity_always)
			appendStringInfo(&set, "%s%s = r.%s", set.len ? ", " : "", c->name, c->name);
	}
	bo_restore_exec(psprintf("DELETE FROM %s t USING %s r WHERE %s AND r.__bo_action = 'I'", t->live, t->copy, join),
					0, NULL, NULL);
	t->removed = SPI_processed;
	if (set.len > 0)
	{
		bo_restore_exec(psprintf("UPDATE %s t SET %s FROM %s r WHERE %s AND r.__bo_action = 'U'",
								 t->live, set.data, t->copy, join), 0, NULL, NULL);
		t->restored = SPI_processed;
	}
	CommandCounterIncrement();
	/* every old row back exactly (a trigger of the table could change them) */
	t->mismatched = bo_restore_count(psprintf("SELECT count(*) FROM %s r LEFT JOIN %s t ON %s "
											  " WHERE r.__bo_action = 'U' AND ROW(%s)::text IS DISTINCT FROM ROW(%s)::text",
											  t->copy, t->live, join, old_row.data, new_row.data));
}

/*
 * Can restore number (status, destination type, rollbackEnabled, strategy)
 * be rolled back?  An error saying why not.  rollback_restore asks before
 * it starts the job, the job again under the restore's lock.
 */
void
bo_restore_check_rollback(const char *number, const char *status, const char *destination,
						  bool rollback_enabled, const char *strategy)
{
	if (strcmp(status, "COMPLETED") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s is %s", number, status),
				 errhint("Only a COMPLETED in-place restore is rolled back.")));
	if (destination == NULL || strcmp(destination, "IN_PLACE") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s wrote into a schema or file of its own, not in place", number),
				 errhint("Drop what it created instead.")));
	if (strategy != NULL && strcmp(strategy, "MANUAL") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s (MANUAL) changed nothing: there is nothing to roll back", number),
				 errhint("Its conflicts are in backup_offline.restore_conflict.")));
	if (!rollback_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s ran without rollbackEnabled: it kept nothing to roll back with", number),
				 errhint("Restore an earlier snapshot instead.")));
}

void
bo_restore_rollback(BoRestoreJob *job)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {DirectFunctionCall1(uuid_in, CStringGetDatum(job->id))};
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	char	   *scratch;
	StringInfoData results;
	uint64		removed = 0;
	uint64		restored = 0;

	bo_restore_exec("SELECT restore_number, status::text, destination->>'type', rollback_enabled, "
					"       request->>'conflictResolutionStrategy' "
					"  FROM backup_offline.restore_operation WHERE id = $1 FOR UPDATE", 1, types, values);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("restore %s does not exist", job->id)));
	job->number = MemoryContextStrdup(job->cxt, bo_restore_value(1));
	bo_restore_check_rollback(job->number, bo_restore_value(2), bo_restore_value(3),
							  strcmp(bo_restore_value(4), "t") == 0, bo_restore_value(5));

	bo_restore_exec("SELECT table_schema, table_name, rollback_table, key_columns "
					"  FROM backup_offline.restore_rollback WHERE restore_id = $1 "
					" ORDER BY ordinal DESC", 1, types, values);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	scratch = bo_restore_scratch_schema(NULL);
	bo_restore_exec(psprintf("GRANT USAGE ON SCHEMA %s TO %s", quote_identifier(scratch), quote_identifier(job->run_by)),
					0, NULL, NULL);
	initStringInfo(&results);
	for (i = 0; i < nrows; i++)
	{
		char	   *tschema = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);
		char	   *tname = SPI_getvalue(rows->vals[i], rows->tupdesc, 2);
		char	   *kept = psprintf(ROLLBACK_SCHEMA ".%s", quote_identifier(SPI_getvalue(rows->vals[i], rows->tupdesc, 3)));
		BoRollbackTable t = {0};
		Oid			live = get_relname_relid(tname, get_namespace_oid(tschema, true));
		Oid			rtypes[2] = {OIDOID, NAMEARRAYOID};
		Datum		rvalues[2];
		bool		isnull;
		SPITupleTable *cols;
		uint64		j;

		t.live = quote_qualified_identifier(tschema, tname);
		if (!OidIsValid(live))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("table %s no longer exists: restore %s cannot be rolled back", t.live, job->number)));
		rvalues[0] = ObjectIdGetDatum(live);
		rvalues[1] = SPI_getbinval(rows->vals[i], rows->tupdesc, 4, &isnull);
		bo_restore_exec("SELECT attname, attgenerated <> '', attidentity = 'a', attname = ANY ($2) FROM pg_attribute "
						" WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum", 2, rtypes, rvalues);
		cols = SPI_tuptable;
		for (j = 0; j < SPI_processed; j++)
		{
			BoColumn   *c = palloc0(sizeof(BoColumn));
			char	   *name = SPI_getvalue(cols->vals[j], cols->tupdesc, 1);

			c->name = pstrdup(quote_identifier(name));
			c->generated = strcmp(SPI_getvalue(cols->vals[j], cols->tupdesc, 2), "t") == 0;
			c->identity_always = strcmp(SPI_getvalue(cols->vals[j], cols->tupdesc, 3), "t") == 0;
			c->key = strcmp(SPI_getvalue(cols->vals[j], cols->tupdesc, 4), "t") == 0;
			t.columns = lappend(t.columns, c);
		}
		/* the caller reads a copy it may not change: the kept table stays the extension's */
		t.copy = psprintf("%s.r_%d", quote_identifier(scratch), (int) i + 1);
		bo_restore_exec(psprintf("CREATE TABLE %s AS SELECT * FROM %s", t.copy, kept), 0, NULL, NULL);
		bo_restore_exec(psprintf("GRANT SELECT ON %s TO %s", t.copy, quote_identifier(job->run_by)), 0, NULL, NULL);
		CommandCounterIncrement();
		bo_restore_as(job->run_by, rollback_table, &t);
		if (t.mismatched > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg_plural(UINT64_FORMAT " row of %s would not be as it was before the restore",
								   UINT64_FORMAT " rows of %s would not be as they were before the restore",
								   t.mismatched, t.mismatched, t.live),
					 errdetail("A trigger of the table changes the rows written back, or its key no longer identifies one row."),
					 errhint("Nothing was rolled back; the rollback table %s is kept.", kept)));
		bo_restore_exec(psprintf("DROP TABLE %s", kept), 0, NULL, NULL);
		if (i > 0)
			appendStringInfoString(&results, ", ");
		appendStringInfoChar(&results, '{');
		bo_json_add_text(&results, "table", t.live);
		bo_json_add_u64(&results, "removedRows", t.removed);
		bo_json_add_u64(&results, "restoredRows", t.restored);
		appendStringInfoChar(&results, '}');
		removed += t.removed;
		restored += t.restored;
	}
	bo_restore_exec(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(scratch)), 0, NULL, NULL);
	{
		Oid			utypes[3] = {UUIDOID, TEXTOID, TEXTOID};
		Datum		uvalues[3];

		uvalues[0] = values[0];
		uvalues[1] = CStringGetTextDatum(job->run_by);
		uvalues[2] = CStringGetTextDatum(psprintf("{\"tables\": [%s], \"removedRows\": " UINT64_FORMAT
												  ", \"restoredRows\": " UINT64_FORMAT "}",
												  results.data, removed, restored));
		bo_restore_exec("DELETE FROM backup_offline.restore_rollback WHERE restore_id = $1", 1, utypes, uvalues);
		bo_restore_exec("UPDATE backup_offline.restore_operation "
						"   SET status = 'ROLLED_BACK', status_reason = format('rolled back by %s', $2), "
						"       rolled_back_at = now(), rolled_back_by = $2, rollback_results = $3::jsonb "
						" WHERE id = $1", 3, utypes, uvalues);
	}
}
