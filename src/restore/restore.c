/*-------------------------------------------------------------------------
 *
 * restore.c
 *		Running a restore: run_restore and the restore job.
 *
 * A restore (restore_operation, src/catalog/75_restore.sql) that is
 * APPROVED runs in a job worker (job.c), like a backup, as the extension's
 * owner:
 *
 *	1. IN_PROGRESS, committed.
 *	2. One transaction: the snapshot's chain materialised (the engine of
 *	   materialize_snapshot, verify.c) -
 *	   - FULL, POINT_IN_TIME, SELECTIVE: into a new schema (the request's
 *		 destination.schema, or restore_<number>), one table per table of
 *		 the scope's entity types, named with the destination's tablePrefix,
 *		 then for SELECTIVE the rows outside the selection deleted (through
 *		 the filter columns the manifest recorded), then the tables' NOT
 *		 NULL columns, primary key, unique, check and exclusion constraints
 *		 and indexes recreated from the manifest's definitions;
 *	   - FILE_LEVEL: one table into a scratch schema, written to the
 *		 request's server file with COPY (csv with a header, or binary),
 *		 the scratch schema dropped;
 *	   validation results (per table: rows, and for whole tables the rows
 *	   digest against the manifest) and metrics, and COMPLETED, in the same
 *	   transaction.
 *	3. On an error or a cancel the transaction rolls back (nothing of the
 *	   restore is left; a file written before the error is removed) and
 *	   the restore becomes FAILED or CANCELLED in a new one.  A crash leaves
 *	   it IN_PROGRESS until the next job's recovery fails it.
 *
 * IDENTIFICATION
 *		src/restore/restore.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "catalog/pg_proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"
#include "utils/array.h"

#include "backup_offline.h"
#include "backup/backup.h"
#include "storage/paths.h"
#include "storage/storage.h"
#include "restore/restore.h"

PG_FUNCTION_INFO_V1(bo_run_restore_sql);
PG_FUNCTION_INFO_V1(bo_restore_job_cancel_sql);
PG_FUNCTION_INFO_V1(bo_rollback_restore_sql);

/* ---------------------------------------------------------------------
 * SPI helpers
 * ---------------------------------------------------------------------
 */
void
bo_restore_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

char *
bo_restore_value(int col)
{
	return SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col) : NULL;
}

/* the single bigint a query returns */
uint64
bo_restore_count(const char *sql)
{
	bo_restore_exec(sql, 0, NULL, NULL);
	return strtou64(bo_restore_value(1), NULL, 10);
}

/*
 * A private schema for the job's intermediate tables, owned by owner
 * (NULL: the job's role): backup_offline_restore_<pid>, dropped by the
 * job or rolled back with its transaction.
 */
char *
bo_restore_scratch_schema(const char *owner)
{
	char	   *schema = psprintf("backup_offline_restore_%d", MyProcPid);

	bo_restore_exec(psprintf("CREATE SCHEMA %s%s%s", quote_identifier(schema),
							 owner ? " AUTHORIZATION " : "", owner ? quote_identifier(owner) : ""),
					0, NULL, NULL);
	return schema;
}

/* ---------------------------------------------------------------------
 * The restore job
 * ---------------------------------------------------------------------
 */
static void
start_restore(BoRestoreJob *job)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {DirectFunctionCall1(uuid_in, CStringGetDatum(job->id))};
	MemoryContext old;
	char	   *status;

	bo_restore_exec("SELECT r.status::text, r.restore_number, r.request::text, r.snapshot_id::text, "
			 "       s.storage_location->'destination', s.manifest::text, r.requested_by, "
			 "       r.organization_id, "
			 "       NOT EXISTS (SELECT 1 FROM backup_offline.snapshot_chain(s.id) c WHERE c.status <> 'COMPLETED') "
			 "  FROM backup_offline.restore_operation r "
			 "  JOIN backup_offline.backup_snapshot s ON s.id = r.snapshot_id "
			 " WHERE r.id = $1 FOR UPDATE OF r", 1, types, values);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("restore %s does not exist", job->id)));
	old = MemoryContextSwitchTo(job->cxt);
	status = pstrdup(bo_restore_value(1));
	job->number = pstrdup(bo_restore_value(2));
	job->request = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(bo_restore_value(3))));
	job->snapshot_id = pstrdup(bo_restore_value(4));
	job->storage_json = pstrdup(bo_restore_value(5));
	job->manifest = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(bo_restore_value(6))));
	job->requested_by = pstrdup(bo_restore_value(7));
	job->organization_id = pstrdup(bo_restore_value(8));
	MemoryContextSwitchTo(old);
	/* the snapshot may have changed since the request: its whole chain must still be restorable */
	if (strcmp(bo_restore_value(9), "t") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the snapshot of restore %s is no longer restorable", job->number),
				 errdetail("A snapshot of its chain is no longer COMPLETED (corrupted, expired or deleted)."),
				 errhint("Verify the chain with verify_snapshot, or restore another snapshot.")));
	if (strcmp(status, "APPROVED") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s is %s", job->number, status),
				 errhint("Only APPROVED restores run.")));
	bo_restore_exec("UPDATE backup_offline.restore_operation SET status = 'IN_PROGRESS', started_at = now() "
			 " WHERE id = $1", 1, types, values);
}

/* does the manifest table entry hold one of the scope's entity types? */
bool
bo_restore_table_in_scope(JsonbContainer *entry, Jsonb *request)
{
	JsonbContainer *scope = bo_jcontainer(&request->root, "scope");
	JsonbContainer *wanted = scope ? bo_jcontainer(scope, "includeEntities") : NULL;
	ListCell   *lc;
	ListCell   *lc2;

	if (wanted == NULL)
		return true;
	foreach(lc, bo_jelements(bo_jcontainer(entry, "entityTypes")))
	{
		JsonbValue *have = lfirst(lc);

		foreach(lc2, bo_jelements(wanted))
		{
			JsonbValue *w = lfirst(lc2);

			if (have->val.string.len == w->val.string.len &&
				memcmp(have->val.string.val, w->val.string.val, w->val.string.len) == 0)
				return true;
		}
	}
	return false;
}

/* the strings of a JSON array as a text[] literal's elements, for SPI */
static Datum
text_array(JsonbContainer *array)
{
	List	   *items = bo_jelements(array);
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(items), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, items)
	{
		JsonbValue *v = lfirst(lc);

		if (v->type == jbvString)
			elems[n++] = PointerGetDatum(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
		else if (v->type == jbvNumeric)
			elems[n++] = CStringGetTextDatum(DatumGetCString(DirectFunctionCall1(numeric_out,
																				   NumericGetDatum(v->val.numeric))));
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * SELECTIVE: delete the rows of target outside the request's selection,
 * through the filter columns the manifest recorded for the table.
 */
void
bo_restore_select(BoRestoreJob *job, JsonbContainer *entry, const char *qualified)
{
	JsonbContainer *scope = bo_jcontainer(&job->request->root, "scope");
	JsonbContainer *filters = bo_jcontainer(entry, "filterColumns");
	JsonbContainer *pk = bo_jcontainer(bo_jcontainer(entry, "definition"), "primaryKey");
	static const char *const id_filters[2] = {"clientIds", "caregiverIds"};
	Oid			types[2] = {TEXTARRAYOID, DATEOID};
	int			k;

	for (k = 0; k < 2; k++)
	{
		JsonbContainer *ids = bo_jcontainer(scope, id_filters[k]);
		char	   *column = filters ? bo_jstr(filters, id_filters[k]) : NULL;
		Datum		values[1];

		if (ids == NULL || column == NULL)
			continue;
		values[0] = text_array(ids);
		bo_restore_exec(psprintf("DELETE FROM %s WHERE %s IS NULL OR NOT lower(%s::text) = ANY (SELECT lower(x) FROM unnest($1) x)",
						  qualified, quote_identifier(column), quote_identifier(column)),
				 1, types, values);
	}
	if (bo_jcontainer(scope, "dateRange") != NULL && filters != NULL && bo_jstr(filters, "dateRange") != NULL)
	{
		JsonbContainer *dr = bo_jcontainer(scope, "dateRange");
		const char *column = quote_identifier(bo_jstr(filters, "dateRange"));
		char	   *from = bo_jstr(dr, "startDate");
		char	   *to = bo_jstr(dr, "endDate");

		if (from)
		{
			Datum		values[1] = {DirectFunctionCall1(date_in, CStringGetDatum(from))};

			bo_restore_exec(psprintf("DELETE FROM %s WHERE %s IS NULL OR %s::date < $1", qualified, column, column),
					 1, &types[1], values);
		}
		if (to)
		{
			Datum		values[1] = {DirectFunctionCall1(date_in, CStringGetDatum(to))};

			bo_restore_exec(psprintf("DELETE FROM %s WHERE %s IS NULL OR %s::date > $1", qualified, column, column),
					 1, &types[1], values);
		}
	}
	if (bo_jcontainer(scope, "recordIds") != NULL)
	{
		Datum		values[1] = {text_array(bo_jcontainer(scope, "recordIds"))};
		List	   *keys = bo_jelements(pk);
		JsonbValue *key;

		/* records are named by one-column keys: other tables are not filtered by them */
		if (list_length(keys) != 1)
			return;
		key = linitial(keys);
		bo_restore_exec(psprintf("DELETE FROM %s WHERE NOT lower(%s::text) = ANY (SELECT lower(x) FROM unnest($1) x)",
						  qualified, quote_identifier(pnstrdup(key->val.string.val, key->val.string.len))),
				 1, types, values);
	}
}

/* is a relation (an index) of that name in the schema already? */
static bool
name_taken(const char *schema, const char *name)
{
	return name != NULL && OidIsValid(get_relname_relid(name, get_namespace_oid(schema, false)));
}

/*
 * Recreate what the manifest's definition holds beyond columns and rows:
 * NOT NULL, primary key, unique, check and exclusion constraints, indexes.
 * Foreign keys are left out (they would point at the source's tables).
 */
/* one DDL statement of a definition; a failure is recorded, not raised */
typedef struct BoDdl
{
	const char *sql;
	NodeTag		tag;			/* the one statement it must be */
	const char *what;
} BoDdl;

static void
run_ddl_cb(void *arg)
{
	BoDdl	   *d = arg;

	/* the definition comes from a manifest: exactly the one statement meant, or nothing */
	(void) bo_restore_one_statement(d->sql, d->tag, d->what);
	bo_restore_exec(d->sql, 0, NULL, NULL);
}

/* a definition the restore could not recreate, for the metrics */
static void
skip_definition(BoRestoreJob *job, const char *what, const char *why)
{
	if (job->skipped.len > 0)
		appendStringInfoString(&job->skipped, ", ");
	appendStringInfoChar(&job->skipped, '{');
	bo_json_add_text(&job->skipped, "definition", what);
	bo_json_add_text(&job->skipped, "error", why);
	appendStringInfoChar(&job->skipped, '}');
}

static void
try_ddl(BoRestoreJob *job, const char *what, const char *sql, NodeTag tag)
{
	BoDdl		d = {sql, tag, what};
	char	   *error = bo_try_subtransaction(run_ddl_cb, &d);

	if (error != NULL)
		skip_definition(job, what, error);
	CommandCounterIncrement();
}

static void
recreate_definition(BoRestoreJob *job, JsonbContainer *entry, const char *schema, const char *name,
					const char *target_schema, const char *target)
{
	JsonbContainer *def = bo_jcontainer(entry, "definition");
	char	   *qualified = psprintf("%s.%s", quote_identifier(target_schema), quote_identifier(target));
	char	   *source = psprintf(" ON %s ", quote_qualified_identifier(schema, name));
	StringInfoData notnull;
	ListCell   *lc;

	/* every NOT NULL in one statement: one scan of the table, not one per column */
	initStringInfo(&notnull);
	foreach(lc, bo_jelements(bo_jcontainer(def, "columns")))
	{
		JsonbContainer *c = ((JsonbValue *) lfirst(lc))->val.binary.data;
		JsonbValue *nn = bo_jget(c, "notNull");

		if (nn != NULL && nn->type == jbvBool && nn->val.boolean && bo_jstr(c, "generated") == NULL)
			appendStringInfo(&notnull, "%s ALTER COLUMN %s SET NOT NULL", notnull.len > 0 ? "," : "",
							 quote_identifier(bo_jstr(c, "name")));
	}
	if (notnull.len > 0)
		try_ddl(job, "NOT NULL columns", psprintf("ALTER TABLE %s%s", qualified, notnull.data), T_AlterTableStmt);
	foreach(lc, bo_jelements(bo_jcontainer(def, "constraints")))
	{
		JsonbContainer *c = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *type = bo_jstr(c, "type");
		char	   *cname = bo_jstr(c, "name");

		if (type == NULL || strchr("pucx", type[0]) == NULL)
			continue;
		/* an index-backed constraint's name is taken (another table of the schema): let PostgreSQL name it */
		if (type[0] != 'c' && name_taken(target_schema, cname))
			try_ddl(job, cname, psprintf("ALTER TABLE %s ADD %s", qualified, bo_jstr(c, "definition")), T_AlterTableStmt);
		else
			try_ddl(job, cname, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", qualified,
										 quote_identifier(cname), bo_jstr(c, "definition")), T_AlterTableStmt);
	}
	foreach(lc, bo_jelements(bo_jcontainer(def, "indexes")))
	{
		JsonbContainer *c = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *ddl = bo_jstr(c, "definition");
		char	   *iname = bo_jstr(c, "name");
		char	   *unique_head;
		char	   *plain_head;
		const char *kind;
		const char *rest;

		if (ddl == NULL || iname == NULL)
			continue;
		/* exactly what pg_get_indexdef prints: CREATE [UNIQUE] INDEX <name> ON <table> <rest> */
		unique_head = psprintf("CREATE UNIQUE INDEX %s%s", quote_identifier(iname), source);
		plain_head = psprintf("CREATE INDEX %s%s", quote_identifier(iname), source);
		if (strncmp(ddl, unique_head, strlen(unique_head)) == 0)
		{
			kind = "CREATE UNIQUE INDEX";
			rest = ddl + strlen(unique_head);
		}
		else if (strncmp(ddl, plain_head, strlen(plain_head)) == 0)
		{
			kind = "CREATE INDEX";
			rest = ddl + strlen(plain_head);
		}
		else
		{
			skip_definition(job, iname, "an index definition the restore does not read");
			continue;
		}
		/* the index on the target (it lives in its table's schema), named by PostgreSQL when its name is taken */
		if (name_taken(target_schema, iname))
			try_ddl(job, iname, psprintf("%s ON %s %s", kind, qualified, rest), T_IndexStmt);
		else
			try_ddl(job, iname, psprintf("%s %s ON %s %s", kind, quote_identifier(iname), qualified, rest), T_IndexStmt);
	}
}

/* does a table's count and rows digest equal its manifest entry's? */
bool
bo_restore_digest_equal(JsonbContainer *entry, BoRowsDigest *got)
{
	char	   *expected = bo_jstr(entry, "rowsDigest");

	return got->count == bo_jnum(entry, "rowCount") && expected != NULL &&
		strcmp(bo_rows_digest_hex(got), expected) == 0;
}

/* a validation result for one restored table */
static void
add_result(BoRestoreJob *job, JsonbContainer *entry, const char *restored_as, BoRowsDigest *got, bool whole)
{
	StringInfo	s = &job->results;
	char	   *expected = bo_jstr(entry, "rowsDigest");
	uint64		expected_rows = bo_jnum(entry, "rowCount");
	bool		equal = bo_restore_digest_equal(entry, got);

	if (job->nresults++ > 0)
		appendStringInfoString(s, ", ");
	appendStringInfoChar(s, '{');
	bo_json_add_text(s, "table", psprintf("%s.%s", bo_jstr(entry, "schema"), bo_jstr(entry, "name")));
	bo_json_add_text(s, "restoredAs", restored_as);
	bo_json_add_u64(s, "rows", got->count);
	bo_json_add_u64(s, "backupRows", expected_rows);
	if (whole)
		bo_json_add_raw(s, "equalToBackup", equal ? "true" : "false");
	appendStringInfoChar(s, '}');
	if (whole && !equal)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("restored table %s differs from the backup: " UINT64_FORMAT " rows, %s; the manifest says " UINT64_FORMAT " rows, %s",
						restored_as, got->count, bo_rows_digest_hex(got), expected_rows, expected ? expected : "nothing")));
	job->rows += got->count;
	job->tables++;
}

/*
 * Run fn(arg) as role (the requester, or who rolls back), in a restricted
 * security context: check constraints, index expressions, casts, triggers
 * and whatever user code they call run with that role's rights, never the
 * extension owner's.  Settings that code changes (even with SET or
 * set_config(..., false): a search_path that would capture the owner's
 * later unqualified calls) are undone on the way out, as PostgreSQL does
 * around index builds.
 */
void
bo_restore_as(const char *role_name, void (*fn) (void *), void *arg)
{
	Oid			save_userid;
	int			save_sec;
	int			save_nestlevel;
	Oid			role = get_role_oid(role_name, false);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

typedef struct BoSelection
{
	BoRestoreJob *job;
	JsonbContainer *entry;
	const char *qualified;
} BoSelection;

static void
apply_selection_cb(void *arg)
{
	BoSelection *s = arg;

	bo_restore_select(s->job, s->entry, s->qualified);
}

typedef struct BoDefinition
{
	BoRestoreJob *job;
	JsonbContainer *entry;
	const char *schema;
	const char *name;
	const char *target_schema;
	const char *target;
} BoDefinition;

static void
recreate_definition_cb(void *arg)
{
	BoDefinition *d = arg;

	recreate_definition(d->job, d->entry, d->schema, d->name, d->target_schema, d->target);
}

/* the first of name, alternative, alternative_2, ... free in schema (cut as CREATE cuts it) */
static char *
free_name(const char *schema, char *name, char *alternative)
{
	Oid			nsp = get_namespace_oid(schema, false);
	int			n;

	truncate_identifier(name, strlen(name), false);
	if (!OidIsValid(get_relname_relid(name, nsp)))
		return name;
	truncate_identifier(alternative, strlen(alternative), false);
	if (!OidIsValid(get_relname_relid(alternative, nsp)))
		return alternative;
	for (n = 2;; n++)
	{
		char	   *candidate = psprintf("%.*s_%d", NAMEDATALEN - 12, alternative, n);

		if (!OidIsValid(get_relname_relid(candidate, nsp)))
			return candidate;
	}
}

static void
restore_into_schema(BoRestoreJob *job, BoStorage *storage, List *chain)
{
	JsonbContainer *dest = bo_jcontainer(&job->request->root, "destination");
	char	   *schema = dest ? bo_jstr(dest, "schema") : NULL;
	char	   *prefix = dest ? bo_jstr(dest, "tablePrefix") : NULL;
	char	   *rtype = bo_jstr(&job->request->root, "restoreType");
	bool		selective = strcmp(rtype, "SELECTIVE") == 0;
	ListCell   *lc;

	if (schema == NULL)
	{
		char	   *p;

		schema = psprintf("restore_%s", job->number);
		for (p = schema; *p; p++)
			*p = (*p == '-') ? '_' : pg_ascii_tolower((unsigned char) *p);
	}
	if (OidIsValid(get_namespace_oid(schema, true)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_SCHEMA),
				 errmsg("schema \"%s\" already exists", schema),
				 errhint("A restore creates its schema; drop the old one or name another destination.schema.")));
	/* the schema and its tables belong to the requester (see bo_restore_as) */
	bo_restore_exec(psprintf("CREATE SCHEMA %s AUTHORIZATION %s", quote_identifier(schema),
					  quote_identifier(job->requested_by)), 0, NULL, NULL);

	foreach(lc, bo_jelements(bo_jcontainer(&job->manifest->root, "tables")))
	{
		JsonbContainer *e = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *tschema = bo_jstr(e, "schema");
		char	   *tname = bo_jstr(e, "name");
		char	   *target;
		BoRowsDigest got;

		if (!bo_restore_table_in_scope(e, job->request))
			continue;
		bo_job_check_cancel();
		target = free_name(schema, psprintf("%s%s", prefix ? prefix : "", tname),
						   psprintf("%s%s_%s", prefix ? prefix : "", tschema, tname));
		bo_materialize_table_digest(storage, chain, tschema, tname, schema, target, &got);
		bo_restore_exec(psprintf("ALTER TABLE %s.%s OWNER TO %s", quote_identifier(schema), quote_identifier(target),
						  quote_identifier(job->requested_by)), 0, NULL, NULL);
		CommandCounterIncrement();
		if (selective)
		{
			BoSelection sel = {job, e, psprintf("%s.%s", quote_identifier(schema), quote_identifier(target))};

			bo_restore_as(job->requested_by, apply_selection_cb, &sel);
		}
		CommandCounterIncrement();
		/* the digest taken while loading, unless the selection has deleted rows since */
		if (selective)
			bo_table_rows_digest(get_relname_relid(target, get_namespace_oid(schema, false)),
								 bo_entry_format(e, tschema, tname), GetLatestSnapshot(), &got);
		add_result(job, e, psprintf("%s.%s", quote_identifier(schema), quote_identifier(target)), &got, !selective);
		{
			BoDefinition d = {job, e, tschema, tname, schema, target};

			bo_restore_as(job->requested_by, recreate_definition_cb, &d);
		}
		CommandCounterIncrement();
	}
}

static void
restore_to_file(BoRestoreJob *job, BoStorage *storage, List *chain)
{
	JsonbContainer *file = bo_jcontainer(&job->request->root, "file");
	char	   *entity = bo_jstr(file, "entity");
	char	   *format = bo_jstr(file, "format");
	char	   *scratch;
	JsonbContainer *entry = NULL;
	ListCell   *lc;
	struct stat st;
	BoRowsDigest got;
	char	   *qualified;
	int			fd;

	job->file_path = MemoryContextStrdup(job->cxt, bo_jstr(file, "path"));
	foreach(lc, bo_jelements(bo_jcontainer(&job->manifest->root, "tables")))
	{
		JsonbContainer *e = ((JsonbValue *) lfirst(lc))->val.binary.data;
		ListCell   *lc2;

		foreach(lc2, bo_jelements(bo_jcontainer(e, "entityTypes")))
		{
			JsonbValue *t = lfirst(lc2);

			if (strlen(entity) == t->val.string.len && memcmp(entity, t->val.string.val, t->val.string.len) == 0)
			{
				if (entry != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_AMBIGUOUS_PARAMETER),
							 errmsg("several tables of the snapshot hold entity type \"%s\" (file.entity)", entity),
							 errhint("A FILE_LEVEL restore writes one table: register the entity type for one table only.")));
				entry = e;
			}
		}
	}
	if (entry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("snapshot holds no table of entity type \"%s\"", entity)));
	/*
	 * Never replace a file, nor write through a symbolic link: anything at
	 * the path is refused, and the file is created here, private to the
	 * server's user, before COPY writes into it.
	 */
	(void) bo_confine_path(job->file_path, "file.path");
	if (lstat(job->file_path, &st) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_FILE),
				 errmsg("file \"%s\" already exists (file.path)", job->file_path),
				 errhint("A FILE_LEVEL restore writes a new file; name one that does not exist.")));
	fd = open(job->file_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\" (file.path): %m", job->file_path)));
	close(fd);
	job->file_written = true;

	scratch = bo_restore_scratch_schema(NULL);
	bo_materialize_table_digest(storage, chain, bo_jstr(entry, "schema"), bo_jstr(entry, "name"), scratch, "t",
								&got);
	CommandCounterIncrement();
	qualified = psprintf("%s.t", quote_identifier(scratch));
	add_result(job, entry, job->file_path, &got, true);
	bo_restore_exec(psprintf("COPY %s TO %s WITH (FORMAT %s%s)", qualified, quote_literal_cstr(job->file_path),
					  strcmp(format, "binary") == 0 ? "binary" : "csv",
					  strcmp(format, "binary") == 0 ? "" : ", HEADER"), 0, NULL, NULL);
	bo_restore_exec(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(scratch)), 0, NULL, NULL);
}

static void
finish_restore(BoRestoreJob *job, TimestampTz started)
{
	Oid			types[3] = {UUIDOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(job->id));
	values[1] = CStringGetTextDatum(psprintf("[%s]", job->results.data));
	values[2] = CStringGetTextDatum(psprintf("{\"tables\": %d, \"rows\": " UINT64_FORMAT ", \"durationMs\": " INT64_FORMAT
											 ", \"skippedDefinitions\": [%s]%s}",
											 job->tables, job->rows, (GetCurrentTimestamp() - started) / 1000,
											 job->skipped.data, job->extra.data));
	bo_restore_exec("UPDATE backup_offline.restore_operation "
			 "   SET status = 'COMPLETED', completed_at = now(), validation_results = $2::jsonb, metrics = $3::jsonb "
			 " WHERE id = $1", 3, types, values);
}

static void
fail_restore(const char *id, ErrorData *edata, bool cancelled)
{
	Oid			types[4] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];

	values[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(id));
	values[1] = CStringGetTextDatum(cancelled ? "CANCELLED" : "FAILED");
	values[2] = CStringGetTextDatum(edata->message);
	values[3] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	bo_restore_exec("UPDATE backup_offline.restore_operation "
			 "   SET status = $2::backup_offline.restore_status, status_reason = $3, completed_at = now(), "
			 "       error = jsonb_build_object('sqlstate', $4, 'message', $3) "
			 " WHERE id = $1 AND status = 'IN_PROGRESS'", 4, types, values);
}

/* step(arg) in a transaction of the job's own, with SPI and a snapshot, committed */
static void
in_job_transaction(void (*step) (void *), void *arg)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	step(arg);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

typedef struct BoRestoreStep
{
	BoRestoreJob *job;
	TimestampTz started;
	ErrorData  *edata;			/* fail_step: the error */
	bool		cancelled;
} BoRestoreStep;

static void
start_step(void *arg)
{
	start_restore(((BoRestoreStep *) arg)->job);
}

/* the restore itself, and COMPLETED */
static void
restore_step(void *arg)
{
	BoRestoreJob *job = ((BoRestoreStep *) arg)->job;
	BoStorage  *storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(job->storage_json))));
	List	   *chain = bo_chain_manifests(job->snapshot_id);

	if (strcmp(bo_jstr(&job->request->root, "restoreType"), "FILE_LEVEL") == 0)
		restore_to_file(job, storage, chain);
	else if (strcmp(bo_jstr(bo_jcontainer(&job->request->root, "destination"), "type"), "IN_PLACE") == 0)
		bo_restore_in_place(job, storage, chain);
	else
		restore_into_schema(job, storage, chain);
	finish_restore(job, ((BoRestoreStep *) arg)->started);
}

static void
rollback_step(void *arg)
{
	bo_restore_rollback(((BoRestoreStep *) arg)->job);
}

static void
fail_step(void *arg)
{
	BoRestoreStep *st = arg;

	fail_restore(st->job->id, st->edata, st->cancelled);
}

void
bo_restore_run(BoJobSlot *slot)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "restore job", ALLOCSET_DEFAULT_SIZES);
	BoRestoreJob *job = MemoryContextAllocZero(cxt, sizeof(BoRestoreJob));
	TimestampTz started = GetCurrentTimestamp();
	bool		rollback = strcmp(slot->requested_type, "ROLLBACK") == 0;
	volatile bool begun = false;

	job->cxt = cxt;
	job->id = MemoryContextStrdup(cxt, DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&slot->object_id))));
	MemoryContextSwitchTo(cxt);
	initStringInfo(&job->results);
	initStringInfo(&job->skipped);
	initStringInfo(&job->extra);
	job->run_by = MemoryContextStrdup(cxt, slot->requested_by);

	PG_TRY();
	{
		BoRestoreStep st = {job, started};

		if (rollback)
			/* rollback_restore's job: one transaction; on an error nothing changes */
			in_job_transaction(rollback_step, &st);
		else
		{
			in_job_transaction(start_step, &st);
			begun = true;
			bo_job_publish_snapshot(&slot->object_id, job->number, "RESTORE");
			in_job_transaction(restore_step, &st);
		}
		strlcpy(slot->result_status, "COMPLETED", sizeof(slot->result_status));
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		bool		cancelled;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !bo_job_terminating();
		if (cancelled && bo_job_cancel_reason() != NULL)
			edata->message = psprintf("restore cancelled: %s", bo_job_cancel_reason());
		if (job->file_written && job->file_path != NULL)
			(void) unlink(job->file_path);
		if (begun)
		{
			BoRestoreStep st = {job, started, edata, cancelled};

			in_job_transaction(fail_step, &st);
		}
		ereport(LOG,
				(errmsg("backup_offline: %s %s %s: %s", rollback ? "rollback of restore" : "restore",
						job->number ? job->number : job->id, cancelled ? "cancelled" : "failed", edata->message)));
		strlcpy(slot->result_status, cancelled ? "CANCELLED" : "FAILED", sizeof(slot->result_status));
		slot->result_sqlstate = edata->sqlerrcode;
		strlcpy(slot->result_message, edata->message, sizeof(slot->result_message));
	}
	PG_END_TRY();
}

/*
 * Fail every restore left IN_PROGRESS whose job is not running (a crash, a
 * restart, a worker that died): its schema never committed; a FILE_LEVEL
 * restore's file (the path did not exist when it began) is removed.  Runs
 * in the caller's transaction, with SPI connected; returns how many.
 */
int
bo_restore_recover(void)
{
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	int			failed = 0;

	bo_restore_exec("SELECT r.id, r.restore_number, r.request->'file'->>'path' "
			 "  FROM backup_offline.restore_operation r WHERE r.status = 'IN_PROGRESS' "
			 "   FOR UPDATE SKIP LOCKED", 0, NULL, NULL);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	for (i = 0; i < nrows; i++)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull);
		char	   *number = SPI_getvalue(rows->vals[i], rows->tupdesc, 2);
		char	   *path = SPI_getvalue(rows->vals[i], rows->tupdesc, 3);
		const char *reason = "the job was interrupted (server restart, crash or worker exit)";
		Oid			types[2] = {UUIDOID, TEXTOID};
		Datum		values[2] = {id, CStringGetTextDatum(reason)};

		if (bo_job_running(BO_JOB_RESTORE, DatumGetUUIDP(id)))
			continue;
		if (path != NULL)
			(void) unlink(path);
		bo_restore_exec("UPDATE backup_offline.restore_operation "
				 "   SET status = 'FAILED', status_reason = $2, completed_at = now(), "
				 "       error = jsonb_build_object('sqlstate', '57P01', 'message', $2) "
				 " WHERE id = $1", 2, types, values);
		ereport(LOG,
				(errmsg("backup_offline: restore %s failed: %s", number, reason)));
		failed++;
	}
	return failed;
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

/* restore_job_cancel(id uuid) RETURNS boolean: ask a running restore's job to stop */
Datum
bo_restore_job_cancel_sql(PG_FUNCTION_ARGS)
{
	Oid			types[1] = {UUIDOID};
	Datum		values[1] = {PG_GETARG_DATUM(0)};
	bool		visible;

	/* only a restore the caller sees (row-level security) */
	SPI_connect();
	bo_restore_exec("SELECT 1 FROM backup_offline.restore_operation WHERE id = $1", 1, types, values);
	visible = SPI_processed > 0;
	SPI_finish();
	if (!visible)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("restore %s does not exist", DatumGetCString(DirectFunctionCall1(uuid_out, values[0]))),
				 errhint("Check the id; restores of other organizations are not visible.")));
	PG_RETURN_BOOL(bo_job_cancel(BO_JOB_RESTORE, PG_GETARG_UUID_P(0),
								 psprintf("requested by %s", GetUserNameFromId(GetUserId(), false))));
}

/*
 * Run restore id's job (rollback: its rollback) and return the restore as
 * SPEC.md's RestoreOperation, or raise the job's error.
 */
static Datum
restore_job_sql(FunctionCallInfo fcinfo, bool wait, bool rollback)
{
	const char *what = rollback ? "rollback_restore" : "run_restore";
	Oid			types[1] = {UUIDOID};
	Datum		values[1];
	char	   *number;
	char	   *status;
	pg_uuid_t	organization;
	int			index;
	BoJobSlot  *slot;
	BoJobSlot	result;
	Datum		out;
	bool		isnull;

	bo_job_require(what);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id is required"),
				 errhint("Pass the id create_restore returned.")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("%s cannot run on a standby", what)));
	values[0] = PG_GETARG_DATUM(0);

	/* the restore, as the caller sees it */
	SPI_connect();
	bo_restore_exec("SELECT restore_number, status::text, organization_id, destination->>'type', rollback_enabled, "
					"       request->>'conflictResolutionStrategy' "
					"  FROM backup_offline.restore_operation WHERE id = $1", 1, types, values);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("restore %s does not exist", DatumGetCString(DirectFunctionCall1(uuid_out, values[0]))),
				 errhint("Check the id; restores of other organizations are not visible.")));
	number = bo_restore_value(1);
	status = bo_restore_value(2);
	organization = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (rollback)
		bo_restore_check_rollback(number, status, bo_restore_value(4), strcmp(bo_restore_value(5), "t") == 0,
								  bo_restore_value(6));
	else if (strcmp(status, "PENDING_APPROVAL") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s waits for approval", number),
				 errhint("A member of backup_offline_approver other than the requester calls approve_restore(id).")));
	else if (strcmp(status, "APPROVED") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restore %s is %s", number, status),
				 errhint("Only APPROVED restores run; create a new restore to run it again.")));
	if (wait && TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s with wait cannot run in a transaction that has written to the database", what),
				 errhint(rollback ? "Commit first." : "Commit first, or call run_restore(id, wait => false).")));
	if (wait && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s with wait needs a READ COMMITTED transaction", what),
				 errhint("It reads the restore's result when the job has committed it.")));

	index = bo_job_prepare(MyDatabaseId, bo_function_owner(fcinfo->flinfo->fn_oid), "00000000-0000-0000-0000-000000000000",
						   &organization, rollback ? "ROLLBACK" : NULL, "MANUAL", GetUserNameFromId(GetUserId(), false),
						   bo_user_id && bo_user_id[0] ? bo_user_id : NULL, MyProc->pgprocno);
	slot = bo_job_slot(index);
	slot->kind = BO_JOB_RESTORE;
	slot->object_id = *DatumGetUUIDP(values[0]);
	bo_job_run(index, wait, &result, NULL, NULL);

	if (result.state == BO_JOB_DONE && strcmp(result.result_status, "COMPLETED") != 0)
		ereport(ERROR,
				(errcode(result.result_sqlstate ? result.result_sqlstate : ERRCODE_INTERNAL_ERROR),
				 errmsg("%s %s %s: %s", rollback ? "rollback of restore" : "restore", number,
						strcmp(result.result_status, "CANCELLED") == 0 ? "was cancelled" : "failed",
						result.result_message)));

	bo_restore_exec("SELECT jsonb_strip_nulls(jsonb_build_object('id', id, 'restoreNumber', restore_number, "
			 "       'snapshotId', snapshot_id, 'restoreType', restore_type, 'status', status, "
			 "       'scope', scope, 'destination', destination, 'requiresApproval', requires_approval, "
			 "       'rollbackEnabled', rollback_enabled, 'approvedBy', approved_by, "
			 "       'validationResults', validation_results, 'metrics', metrics, 'error', error, "
			 "       'rolledBackAt', rolled_back_at, 'rolledBackBy', rolled_back_by, 'rollbackResults', rollback_results)) "
			 "  FROM backup_offline.restore_operation WHERE id = $1", 1, types, values);
	if (SPI_processed != 1)
		elog(ERROR, "restore %s vanished", number);
	out = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(out);
}

/*
 * run_restore(id uuid, wait boolean DEFAULT true) RETURNS jsonb
 *
 * Run an APPROVED restore in a job worker.  With wait: when it is done,
 * the restore as SPEC.md's RestoreOperation (status, validationResults,
 * metrics), or the job's error; without: once it is IN_PROGRESS.
 */
Datum
bo_run_restore_sql(PG_FUNCTION_ARGS)
{
	return restore_job_sql(fcinfo, PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1), false);
}

/*
 * rollback_restore(id uuid) RETURNS jsonb
 *
 * Undo a COMPLETED in-place restore (inplace.c) in a job worker, waiting
 * for it; the restore, ROLLED_BACK, with its rollbackResults.
 */
Datum
bo_rollback_restore_sql(PG_FUNCTION_ARGS)
{
	return restore_job_sql(fcinfo, true, true);
}
