/*-------------------------------------------------------------------------
 *
 * verify.c
 *		verify_snapshot, and materialising a snapshot chain into tables.
 *
 * Levels:
 *	checksums  every object's stored bytes against the manifest (size and
 *			   digest), the manifest object against the catalog's checksum;
 *			   needs no key.
 *	decrypt    every object read through the archive reader (AEAD, frame
 *			   and trailer checks), its plaintext length and digest against
 *			   the manifest; the stored manifest's self-checksum, and that it
 *			   is the catalog's manifest.
 *	restore    decrypt, then the snapshot's chain materialised into a
 *			   scratch schema (bo_materialize_table: COPY FROM the stored
 *			   streams), each table's row count and rows digest compared
 *			   with the manifest; the schema is dropped again.
 *
 * Damage is reported in the result (valid false, problems[]), not raised,
 * and recorded on the snapshot: COMPLETED becomes CORRUPTED, and a
 * CORRUPTED snapshot that verifies again becomes COMPLETED.  The work runs
 * as the extension's owner (the caller needs only EXECUTE and to see the
 * snapshot through row-level security).
 *
 * IDENTIFICATION
 *		src/backup/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "parser/scansup.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"
#include "storage/storage.h"

PG_FUNCTION_INFO_V1(bo_verify_snapshot_sql);
PG_FUNCTION_INFO_V1(bo_rows_digest_sql);
PG_FUNCTION_INFO_V1(bo_materialize_snapshot_sql);

/* ---------------------------------------------------------------------
 * jsonb helpers
 * ---------------------------------------------------------------------
 */
JsonbValue *
bo_jget(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

char *
bo_jstr(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

uint64
bo_jnum(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvNumeric)
		return 0;
	return DatumGetUInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
}

JsonbContainer *
bo_jcontainer(JsonbContainer *c, const char *key)
{
	JsonbValue *v = bo_jget(c, key);

	if (v == NULL || v->type != jbvBinary)
		return NULL;
	return v->val.binary.data;
}

/* the elements of a JSON array container that are objects or arrays */
List *
bo_jelements(JsonbContainer *array)
{
	List	   *out = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (array == NULL)
		return NIL;
	it = JsonbIteratorInit(array);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_ELEM)
		{
			JsonbValue *copy = palloc(sizeof(JsonbValue));

			*copy = v;
			out = lappend(out, copy);
		}
	}
	return out;
}

/* ---------------------------------------------------------------------
 * Materialisation
 * ---------------------------------------------------------------------
 */

/* the archive object COPY FROM is reading (data_source_cb has no argument) */
static BoArchiveReader *copy_source = NULL;

static int
copy_source_read(void *outbuf, int minread, int maxread)
{
	int			got = 0;

	while (got < minread)
	{
		size_t		n = bo_archive_read(copy_source, (char *) outbuf + got, maxread - got);

		if (n == 0)
			break;
		got += n;
	}
	return got;
}

/* COPY the stored stream "name" into rel */
static uint64
copy_object_into(BoStorage *storage, const char *name, Relation rel, BoRowFormat format,
				 const char *encoding)
{
	ParseState *pstate = make_parsestate(NULL);
	List	   *options = NIL;
	CopyFromState cstate;
	uint64		rows;

	/*
	 * Text in the source's server encoding: the ENCODING option of a text
	 * COPY; for binary COPY, whose receive functions convert from the client
	 * encoding, the client encoding (restored by the caller's GUC level).
	 */
	if (format == BO_ROW_BINARY)
	{
		options = lappend(options, makeDefElem("format", (Node *) makeString("binary"), -1));
		if (encoding != NULL)
			SetConfigOption("client_encoding", encoding, PGC_SUSET, PGC_S_SESSION);
	}
	else if (encoding != NULL)
		options = lappend(options, makeDefElem("encoding", (Node *) makeString(pstrdup(encoding)), -1));

	/* as logical replication's table sync does: COPY FROM needs the range table */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	copy_source = bo_archive_reader_open(storage, name, NULL);
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source_read, NIL, options);
		rows = CopyFrom(cstate);
		EndCopyFrom(cstate);
		bo_archive_reader_close(copy_source);
	}
	PG_FINALLY();
	{
		copy_source = NULL;
	}
	PG_END_TRY();
	free_parsestate(pstate);
	return rows;
}

/*
 * Create table "schema"."name" with the copied columns of a manifest table
 * entry (their names, types and collations; no constraints).
 */
/*
 * The type a materialised column gets: the column's type with domains
 * replaced by their base types (also as array elements), so that loading
 * rows runs no domain CHECK, which is user code, as the extension's owner.
 */
static char *
scratch_type(const char *typname)
{
	Oid			typid;
	int32		typmod;
	Oid			elem;

	parseTypeString(typname, &typid, &typmod, false);
	elem = get_element_type(typid);
	if (OidIsValid(elem) && get_typtype(elem) == TYPTYPE_DOMAIN)
	{
		Oid			base = getBaseTypeAndTypmod(elem, &typmod);
		Oid			array = get_array_type(base);

		if (!OidIsValid(array))
			elog(ERROR, "type %s has no array type", format_type_be(base));
		return format_type_with_typemod(array, typmod);
	}
	if (get_typtype(typid) == TYPTYPE_DOMAIN)
		typid = getBaseTypeAndTypmod(typid, &typmod);
	return format_type_with_typemod(typid, typmod);
}

static void
create_table_from_entry(JsonbContainer *entry, const char *schema, const char *name, bool key_only)
{
	StringInfoData sql;
	JsonbContainer *def = bo_jcontainer(entry, "definition");
	List	   *columns = bo_jelements(bo_jcontainer(def, "columns"));
	List	   *copied = bo_jelements(key_only ? bo_jcontainer(def, "primaryKey") : bo_jcontainer(entry, "copyColumns"));
	ListCell   *lc;
	ListCell   *lc2;
	bool		first = true;

	initStringInfo(&sql);
	/* schema NULL: a temporary table */
	if (schema == NULL)
		appendStringInfo(&sql, "CREATE TEMP TABLE %s (", quote_identifier(name));
	else
		appendStringInfo(&sql, "CREATE TABLE %s.%s (", quote_identifier(schema), quote_identifier(name));
	foreach(lc, copied)
	{
		JsonbValue *cv = lfirst(lc);
		char	   *cname = pnstrdup(cv->val.string.val, cv->val.string.len);

		foreach(lc2, columns)
		{
			JsonbValue *col = lfirst(lc2);
			char	   *n = bo_jstr(col->val.binary.data, "name");

			if (n != NULL && strcmp(n, cname) == 0)
			{
				char	   *collation = bo_jstr(col->val.binary.data, "collation");

				appendStringInfo(&sql, "%s%s %s", first ? "" : ", ", quote_identifier(cname),
								 scratch_type(bo_jstr(col->val.binary.data, "type")));
				if (collation)
					appendStringInfo(&sql, " COLLATE %s", collation);
				first = false;
				break;
			}
		}
		if (lc2 == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("manifest names column \"%s\" without its definition", cname)));
	}
	appendStringInfoChar(&sql, ')');
	if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not create table %s.%s", schema, name);
}

/* the manifest entry of table schema.name, or NULL */
JsonbContainer *
bo_manifest_table(Jsonb *manifest, const char *schema, const char *name)
{
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		char	   *s = bo_jstr(t->val.binary.data, "schema");
		char	   *n = bo_jstr(t->val.binary.data, "name");

		if (s && n && strcmp(s, schema) == 0 && strcmp(n, name) == 0)
			return t->val.binary.data;
	}
	return NULL;
}

/* COPY every object of one kind of a manifest table entry into rel */
static void
load_objects(BoStorage *storage, JsonbContainer *entry, const char *kind, Relation rel,
			 BoRowFormat format, const char *encoding)
{
	ListCell   *lc;

	foreach(lc, bo_jelements(bo_jcontainer(entry, "objects")))
	{
		JsonbContainer *o = ((JsonbValue *) lfirst(lc))->val.binary.data;
		char	   *k = bo_jstr(o, "kind");

		if (k != NULL && strcmp(k, kind) == 0)
		{
			copy_object_into(storage, bo_jstr(o, "name"), rel, format, encoding);
			CommandCounterIncrement();
		}
	}
}

BoRowFormat
bo_entry_format(JsonbContainer *entry, const char *schema, const char *name)
{
	BoRowFormat format;
	char	   *f = bo_jstr(entry, "format");

	if (f == NULL || !bo_row_format_parse(f, &format))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("manifest gives table %s.%s an unknown format", schema, name)));
	return format;
}

/*
 * Apply the changes of an incremental entry to target_schema.target:
 * delete the keys of its deletes objects, then load its upserts.
 */
static void
apply_changes(BoStorage *storage, JsonbContainer *entry, const char *encoding,
			  const char *schema, const char *name, const char *target_schema, const char *target)
{
	/* the keys to delete, in a temporary table: no name of the schema can clash */
	const char *deletes = "backup_offline_deletes";
	BoRowFormat format = bo_entry_format(entry, schema, name);
	List	   *keys = bo_jelements(bo_jcontainer(bo_jcontainer(entry, "definition"), "primaryKey"));
	StringInfoData sql;
	ListCell   *lc;
	Relation	rel;

	create_table_from_entry(entry, NULL, deletes, true);
	CommandCounterIncrement();
	rel = table_open(RelnameGetRelid(deletes), RowExclusiveLock);
	load_objects(storage, entry, "deletes", rel, format, encoding);
	table_close(rel, NoLock);

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s.%s t USING pg_temp.%s d WHERE ",
					 quote_identifier(target_schema), quote_identifier(target), deletes);
	foreach(lc, keys)
	{
		JsonbValue *k = lfirst(lc);
		const char *col = quote_identifier(pnstrdup(k->val.string.val, k->val.string.len));

		appendStringInfo(&sql, "%st.%s = d.%s", lc == list_head(keys) ? "" : " AND ", col, col);
	}
	if (SPI_execute(sql.data, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not apply the deletes of %s.%s", schema, name);
	if (SPI_execute(psprintf("DROP TABLE pg_temp.%s", deletes), false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not drop %s", deletes);
	CommandCounterIncrement();

	rel = table_open(get_relname_relid(target, get_namespace_oid(target_schema, false)), RowExclusiveLock);
	load_objects(storage, entry, "rows", rel, format, encoding);
	table_close(rel, NoLock);
}

/*
 * Materialise table schema.name as of the last snapshot of chain (a List
 * of Jsonb manifests from the FULL to that snapshot) as
 * target_schema.target: the newest whole copy along the chain, then the
 * changes of every later snapshot, in order.
 */
void
bo_materialize_table(BoStorage *storage, List *chain, const char *schema, const char *name,
				  const char *target_schema, const char *target)
{
	int			n = list_length(chain);
	int			start = -1;
	int			i;
	JsonbContainer *entry;
	Relation	rel;

	for (i = n - 1; i >= 0 && start < 0; i--)
	{
		JsonbContainer *e = bo_manifest_table(list_nth(chain, i), schema, name);
		char	   *change;

		if (e == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table %s.%s is missing from a snapshot of the chain", schema, name)));
		change = bo_jstr(e, "change");
		if (change == NULL || strcmp(change, "whole") == 0)
			start = i;
	}
	if (start < 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the chain holds no whole copy of table %s.%s", schema, name)));

	entry = bo_manifest_table(list_nth(chain, start), schema, name);
	create_table_from_entry(bo_manifest_table(llast(chain), schema, name), target_schema, target, false);
	CommandCounterIncrement();
	rel = table_open(get_relname_relid(target, get_namespace_oid(target_schema, false)), RowExclusiveLock);
	load_objects(storage, entry, "rows", rel, bo_entry_format(entry, schema, name),
				 bo_jstr(&((Jsonb *) list_nth(chain, start))->root, "serverEncoding"));
	table_close(rel, NoLock);

	for (i = start + 1; i < n; i++)
		apply_changes(storage, bo_manifest_table(list_nth(chain, i), schema, name),
					  bo_jstr(&((Jsonb *) list_nth(chain, i))->root, "serverEncoding"),
					  schema, name, target_schema, target);
}

/* count and rows digest of a table, encoded as format */
void
bo_table_rows_digest(Oid relid, BoRowFormat format, Snapshot source, BoRowsDigest *out)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Snapshot	snapshot = RegisterSnapshot(source);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	BoRowEncoder enc;
	HeapTuple	tuple;
	Datum	   *values = palloc(sizeof(Datum) * Max(tupdesc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(tupdesc->natts, 1));

	memset(out, 0, sizeof(*out));
	bo_row_encoder_init(&enc, tupdesc, format, NIL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		CHECK_FOR_INTERRUPTS();
		heap_deform_tuple(tuple, tupdesc, values, nulls);
		bo_row_encode(&enc, values, nulls);
		bo_rows_digest_add(out, enc.row.data, enc.row.len);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
}

/* ---------------------------------------------------------------------
 * verify_snapshot
 * ---------------------------------------------------------------------
 */
typedef enum BoVerifyLevel
{
	BO_VERIFY_CHECKSUMS,
	BO_VERIFY_DECRYPT,
	BO_VERIFY_RESTORE
} BoVerifyLevel;

typedef struct BoVerify
{
	BoStorage  *storage;
	BoVerifyLevel level;
	BoDigestAlgorithm digest;
	StringInfoData problems;
	int			nproblems;
	uint64		objects;
	uint64		bytes;
} BoVerify;

static void
problem(BoVerify *v, const char *object, const char *text)
{
	if (v->nproblems++ > 0)
		appendStringInfoString(&v->problems, ", ");
	appendStringInfoChar(&v->problems, '{');
	if (object)
		bo_json_add_text(&v->problems, "object", object);
	bo_json_add_text(&v->problems, "problem", text);
	appendStringInfoChar(&v->problems, '}');
}

/* digest of the stored bytes of name; its size in *size */
static char *
stored_digest(BoVerify *v, const char *name, uint64 *size)
{
	BoDigest   *d = bo_digest_create(v->digest);
	char	   *buf = palloc(1024 * 1024);
	uint8		out[BO_DIGEST_MAX_LENGTH];
	uint64		offset = 0;
	size_t		n;
	int			len;

	while ((n = bo_storage_get(v->storage, name, offset, buf, 1024 * 1024)) > 0)
	{
		CHECK_FOR_INTERRUPTS();
		bo_digest_update(d, buf, n);
		offset += n;
	}
	len = bo_digest_final(d, out);
	bo_digest_free(d);
	pfree(buf);
	*size = offset;
	return bo_hex(out, len);
}

/* read name through the archive reader to its end; what it was */
static void
read_object(BoVerify *v, const char *name, BoArchiveResult *res)
{
	BoArchiveReader *r = bo_archive_reader_open(v->storage, name, NULL);
	char	   *buf = palloc(1024 * 1024);

	while (bo_archive_read(r, buf, 1024 * 1024) > 0)
		CHECK_FOR_INTERRUPTS();
	bo_archive_reader_result(r, res);
	bo_archive_reader_close(r);
	pfree(buf);
}

/* one object of the manifest to check */
typedef struct BoObjectCheck
{
	BoVerify   *v;
	JsonbContainer *o;			/* its manifest entry */
	const char *name;
	/* the manifest object instead */
	const char *checksum;
	Jsonb	   *catalog_manifest;
} BoObjectCheck;

static void
check_object(void *arg)
{
	BoObjectCheck *c = arg;
	BoVerify   *v = c->v;
	JsonbContainer *o = c->o;
	const char *name = c->name;

	if (v->level == BO_VERIFY_CHECKSUMS)
	{
		uint64		size;
		char	   *digest = stored_digest(v, name, &size);

		if (size != bo_jnum(o, "storedLength"))
			problem(v, name, psprintf("stored size is " UINT64_FORMAT " bytes, the manifest says " UINT64_FORMAT,
									  size, bo_jnum(o, "storedLength")));
		else if (strcmp(digest, bo_jstr(o, "storedDigest")) != 0)
			problem(v, name, psprintf("stored digest is %s, the manifest says %s", digest, bo_jstr(o, "storedDigest")));
		v->bytes += size;
	}
	else
	{
		BoArchiveResult res;

		read_object(v, name, &res);
		if (res.plaintext_length != bo_jnum(o, "plaintextLength"))
			problem(v, name, psprintf("plaintext is " UINT64_FORMAT " bytes, the manifest says " UINT64_FORMAT,
									  res.plaintext_length, bo_jnum(o, "plaintextLength")));
		else if (strcmp(bo_hex(res.plaintext_digest, res.digest_length), bo_jstr(o, "plaintextDigest")) != 0)
			problem(v, name, "plaintext digest differs from the manifest");
		else if (strcmp(bo_hex(res.stored_digest, res.digest_length), bo_jstr(o, "storedDigest")) != 0)
			problem(v, name, "stored digest differs from the manifest");
		v->bytes += res.stored_length;
	}
}

/*
 * The manifest object: at level checksums its stored digest against the
 * catalog; else read, self-checksum, and equal to the catalog's manifest.
 */
static void
check_manifest(void *arg)
{
	BoObjectCheck *c = arg;
	BoVerify   *v = c->v;
	uint64		size;

	if (v->level == BO_VERIFY_CHECKSUMS)
	{
		char	   *digest = stored_digest(v, c->name, &size);

		if (c->checksum == NULL || strcmp(digest, c->checksum) != 0)
			problem(v, c->name, psprintf("stored digest is %s, the catalog says %s", digest,
										 c->checksum ? c->checksum : "nothing"));
	}
	else
	{
		size_t		len;
		char	   *text = bo_manifest_read(v->storage, c->name, &len);
		Jsonb	   *stored = bo_manifest_parse(text, len, "the stored manifest");
		BoStorageStat st;

		if (compareJsonbContainers(&stored->root, &c->catalog_manifest->root) != 0)
			problem(v, c->name, "the stored manifest differs from the catalog's");
		size = bo_storage_stat(v->storage, c->name, &st) ? st.size : 0;
	}
	v->bytes += size;
}

/*
 * Check one object (o NULL: the manifest object); an error is recorded as
 * a problem of the object, not raised.
 */
static void
verify_object_entry(BoVerify *v, JsonbContainer *o, const char *manifest_name,
					const char *checksum, Jsonb *catalog_manifest)
{
	BoObjectCheck c = {v, o, o ? bo_jstr(o, "name") : manifest_name, checksum, catalog_manifest};
	char	   *error = bo_try_subtransaction(o ? check_object : check_manifest, &c);

	if (error != NULL)
		problem(v, c.name, error);
	v->objects++;
}

/* the name a table of the manifest gets when materialised */
static char *
table_target(JsonbContainer *e, List *names, bool verify)
{
	char	   *tname = bo_jstr(e, "name");
	ListCell   *lc;
	int			same = 0;

	char	   *target;

	if (verify)
		return psprintf("t%04d", (int) bo_jnum(e, "ordinal"));
	foreach(lc, names)
		same += strcmp(lfirst(lc), tname) == 0;
	target = same > 1 ? psprintf("%s_%s", bo_jstr(e, "schema"), tname) : pstrdup(tname);
	/* as CREATE TABLE would cut it, so that it is found again */
	truncate_identifier(target, strlen(target), false);
	return target;
}

/*
 * The manifests of the chain that restores snapshot_id, its FULL first (a
 * List of Jsonb).  SPI must be connected.
 */
List *
bo_chain_manifests(const char *snapshot_id)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	List	   *chain = NIL;
	uint64		i;

	args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(snapshot_id));
	if (SPI_execute_with_args("SELECT manifest::text FROM backup_offline.snapshot_chain($1)",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot chain");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *m = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (m == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("a snapshot of the chain has no manifest")));
		chain = lappend(chain, DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(m))));
	}
	return chain;
}

/* one table to materialise and digest */
typedef struct BoTableRestore
{
	BoVerify   *v;
	List	   *chain;
	JsonbContainer *entry;
	const char *schema;			/* of the source table */
	const char *name;
	const char *target_schema;
	const char *target;
	BoRowsDigest got;			/* out */
} BoTableRestore;

static void
restore_one_table(void *arg)
{
	BoTableRestore *r = arg;
	BoRowFormat format = bo_entry_format(r->entry, r->schema, r->name);

	bo_materialize_table(r->v->storage, r->chain, r->schema, r->name, r->target_schema, r->target);
	CommandCounterIncrement();
	/* the rows this transaction has just loaded */
	bo_table_rows_digest(get_relname_relid(r->target, get_namespace_oid(r->target_schema, false)), format,
					  GetLatestSnapshot(), &r->got);
}

/*
 * Materialise every table of the snapshot into schema (created here) and
 * compare each with the manifest; appends the tables' results to out.
 * verify: a scratch schema, dropped again, tables named t<ordinal>; else
 * the tables keep their names (schema_name when two share a name).
 */
static void
restore_tables(BoVerify *v, const char *snapshot_id, Jsonb *manifest, StringInfo out,
			   const char *schema, bool verify)
{
	List	   *chain;
	ListCell   *lc;
	bool		first_table = true;
	List	   *names = NIL;

	chain = bo_chain_manifests(snapshot_id);

	if (OidIsValid(get_namespace_oid(schema, true)))
	{
		if (!verify)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_SCHEMA),
					 errmsg("schema \"%s\" already exists", schema),
					 errhint("Materialise into a new schema: pass a name that is not in use.")));
		SPI_execute(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(schema)), false, 0);
	}
	SPI_execute(psprintf("CREATE SCHEMA %s", quote_identifier(schema)), false, 0);
	if (!verify)
	{
		/* the table names, to see which are ambiguous */
		foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
			names = lappend(names, bo_jstr(((JsonbValue *) lfirst(lc))->val.binary.data, "name"));
	}

	appendStringInfoString(out, "[");
	foreach(lc, bo_jelements(bo_jcontainer(&manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		JsonbContainer *e = t->val.binary.data;
		char	   *tschema = bo_jstr(e, "schema");
		char	   *tname = bo_jstr(e, "name");
		char	   *target = table_target(e, names, verify);
		char	   *expected = bo_jstr(e, "rowsDigest");
		uint64		expected_rows = bo_jnum(e, "rowCount");
		BoTableRestore r = {v, chain, e, tschema, tname, schema, target};
		bool		equal = false;
		char	   *error;

		memset(&r.got, 0, sizeof(r.got));
		error = bo_try_subtransaction(restore_one_table, &r);

		if (error == NULL)
		{
			equal = r.got.count == expected_rows && expected != NULL &&
				strcmp(bo_rows_digest_hex(&r.got), expected) == 0;
			if (!equal)
				problem(v, psprintf("%s.%s", tschema, tname),
						psprintf("restored " UINT64_FORMAT " rows with digest %s; the manifest says " UINT64_FORMAT " rows, %s",
								 r.got.count, bo_rows_digest_hex(&r.got), expected_rows, expected ? expected : "nothing"));
		}
		else
			problem(v, psprintf("%s.%s", tschema, tname), psprintf("restore failed: %s", error));

		if (!first_table)
			appendStringInfoString(out, ", ");
		first_table = false;
		appendStringInfoChar(out, '{');
		bo_json_add_text(out, "schema", tschema);
		bo_json_add_text(out, "name", tname);
		if (!verify)
			bo_json_add_text(out, "restoredAs", psprintf("%s.%s", quote_identifier(schema), quote_identifier(target)));
		bo_json_add_u64(out, "expectedRows", expected_rows);
		bo_json_add_u64(out, "restoredRows", r.got.count);
		bo_json_add_text(out, "rowsDigest", error ? "" : bo_rows_digest_hex(&r.got));
		bo_json_add_raw(out, "equal", equal ? "true" : "false");
		appendStringInfoChar(out, '}');
	}
	appendStringInfoString(out, "]");
	if (verify)
		SPI_execute(psprintf("DROP SCHEMA %s CASCADE", quote_identifier(schema)), false, 0);
}

/* a snapshot row, as the caller sees it */
typedef struct BoSnapshotRow
{
	char	   *id;
	char	   *number;
	char	   *status;
	char	   *storage_json;
	char	   *manifest_name;
	char	   *checksum;
	char	   *algorithm;
	Jsonb	   *manifest;
} BoSnapshotRow;

/*
 * Read snapshot id (a uuid Datum) through row-level security; it must
 * have a manifest (COMPLETED or CORRUPTED).  SPI must be connected.
 */
static void
read_snapshot(Datum id, BoSnapshotRow *row)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1] = {id};
	char	   *manifest_text;

	row->id = DatumGetCString(DirectFunctionCall1(uuid_out, id));
	if (SPI_execute_with_args("SELECT snapshot_number, status::text, storage_location->'destination', "
							  "       storage_location->>'manifest', checksum, checksum_algorithm::text, manifest::text "
							  "  FROM backup_offline.backup_snapshot WHERE id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("snapshot %s does not exist", row->id),
				 errhint("Check the id; snapshots of other organizations are not visible.")));
	row->number = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	row->status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	row->storage_json = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	row->manifest_name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	row->checksum = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	row->algorithm = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	manifest_text = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7);
	if (strcmp(row->status, "COMPLETED") != 0 && strcmp(row->status, "CORRUPTED") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("snapshot %s is %s: it has no manifest", row->number, row->status),
				 errhint("Only COMPLETED and CORRUPTED snapshots have a manifest and objects.")));
	row->manifest = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(manifest_text)));
}

/*
 * Become the extension's owner (the owner of the function being called)
 * with the job's output settings, for the work on storage and scratch
 * tables; returns the GUC nest level for leave_owner.
 */
static int
become_owner(FunctionCallInfo fcinfo, Oid *save_userid, int *save_sec)
{
	Oid			owner = bo_function_owner(fcinfo->flinfo->fn_oid);
	int			nestlevel;

	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE);
	nestlevel = NewGUCNestLevel();
	bo_set_job_gucs();
	/* the scratch schema's DROP ... CASCADE is not news */
	SetConfigOption("client_min_messages", "warning", PGC_SUSET, PGC_S_SESSION);
	return nestlevel;
}

static void
leave_owner(int nestlevel, Oid save_userid, int save_sec)
{
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec);
}

Datum
bo_verify_snapshot_sql(PG_FUNCTION_ARGS)
{
	char	   *level_name;
	BoVerify	v;
	BoSnapshotRow row;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	StringInfoData result;
	StringInfoData tables;
	ListCell   *lc;
	Datum		out;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("snapshot_id is required"),
				 errhint("Pass the id of a backup snapshot.")));
	level_name = PG_ARGISNULL(1) ? "decrypt" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	memset(&v, 0, sizeof(v));
	if (strcmp(level_name, "checksums") == 0)
		v.level = BO_VERIFY_CHECKSUMS;
	else if (strcmp(level_name, "decrypt") == 0)
		v.level = BO_VERIFY_DECRYPT;
	else if (strcmp(level_name, "restore") == 0)
		v.level = BO_VERIFY_RESTORE;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid level: \"%s\"", level_name),
				 errhint("Use checksums, decrypt or restore.")));

	SPI_connect();
	read_snapshot(PG_GETARG_DATUM(0), &row);
	if (!bo_digest_parse(row.algorithm, &v.digest))
		elog(ERROR, "unknown checksum algorithm \"%s\"", row.algorithm);
	nestlevel = become_owner(fcinfo, &save_userid, &save_sec);

	v.storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(row.storage_json))));
	initStringInfo(&v.problems);
	initStringInfo(&tables);

	verify_object_entry(&v, NULL, row.manifest_name, row.checksum, row.manifest);
	foreach(lc, bo_jelements(bo_jcontainer(&row.manifest->root, "tables")))
	{
		JsonbValue *t = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, bo_jelements(bo_jcontainer(t->val.binary.data, "objects")))
			verify_object_entry(&v, ((JsonbValue *) lfirst(lc2))->val.binary.data, NULL, NULL, NULL);
	}
	if (v.level == BO_VERIFY_RESTORE && v.nproblems == 0)
		restore_tables(&v, row.id, row.manifest, &tables, psprintf("backup_offline_verify_%d", MyProcPid), true);

	initStringInfo(&result);
	appendStringInfo(&result, "{\"snapshotId\": \"%s\", \"snapshotNumber\": ", row.id);
	escape_json(&result, row.number);
	appendStringInfo(&result, ", \"level\": \"%s\", \"valid\": %s, \"objects\": " UINT64_FORMAT
					 ", \"storedBytes\": " UINT64_FORMAT ", \"problems\": [%s]",
					 level_name, v.nproblems == 0 ? "true" : "false", v.objects, v.bytes, v.problems.data);
	if (v.level == BO_VERIFY_RESTORE)
		appendStringInfo(&result, ", \"tables\": %s", tables.len > 0 ? tables.data : "null");
	appendStringInfo(&result, ", \"verifiedAt\": \"%s\"}",
					 timestamptz_to_str(GetCurrentTimestamp()));

	/* record it on the snapshot (audited through the row change) */
	{
		Oid			types2[2] = {UUIDOID, TEXTOID};
		Datum		args2[2];

		args2[0] = PG_GETARG_DATUM(0);
		args2[1] = CStringGetTextDatum(result.data);
		if (SPI_execute_with_args("UPDATE backup_offline.backup_snapshot "
								  "   SET verification = $2::jsonb, verified_at = now(), "
								  "       status = CASE WHEN ($2::jsonb->>'valid')::boolean "
								  "                     THEN CASE WHEN status = 'CORRUPTED' THEN 'COMPLETED' ELSE status END "
								  "                     ELSE CASE WHEN status = 'COMPLETED' THEN 'CORRUPTED' ELSE status END END "
								  " WHERE id = $1",
								  2, types2, args2, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record the verification");
	}

	leave_owner(nestlevel, save_userid, save_sec);
	/* everything above lives in SPI's memory: copy the result out first */
	out = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(out);
}

/*
 * materialize_snapshot(snapshot_id uuid, target_schema name) RETURNS jsonb
 *
 * The engine restores build on: the snapshot's chain materialised into a
 * new schema, one table per table of the manifest (columns, types and
 * rows; no constraints or indexes), each compared with the manifest.  Any
 * damage or difference is an ERROR and leaves nothing behind.
 */
Datum
bo_materialize_snapshot_sql(PG_FUNCTION_ARGS)
{
	BoVerify	v;
	BoSnapshotRow row;
	char	   *schema;
	Oid			save_userid;
	int			save_sec;
	int			nestlevel;
	StringInfoData tables;
	StringInfoData result;
	Datum		out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s is required", PG_ARGISNULL(0) ? "snapshot_id" : "target_schema"),
				 errhint("Pass a snapshot id and the name of a schema that does not exist yet.")));
	schema = NameStr(*PG_GETARG_NAME(1));
	memset(&v, 0, sizeof(v));
	v.level = BO_VERIFY_RESTORE;

	SPI_connect();
	read_snapshot(PG_GETARG_DATUM(0), &row);
	if (!bo_digest_parse(row.algorithm, &v.digest))
		elog(ERROR, "unknown checksum algorithm \"%s\"", row.algorithm);
	nestlevel = become_owner(fcinfo, &save_userid, &save_sec);
	v.storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(row.storage_json))));
	initStringInfo(&v.problems);
	initStringInfo(&tables);
	restore_tables(&v, row.id, row.manifest, &tables, schema, false);
	if (v.nproblems > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("snapshot %s could not be materialised", row.number),
				 errdetail("Problems: [%s]", v.problems.data),
				 errhint("verify_snapshot(id, 'decrypt') tells which objects are damaged.")));
	leave_owner(nestlevel, save_userid, save_sec);

	initStringInfo(&result);
	appendStringInfo(&result, "{\"snapshotId\": \"%s\", \"snapshotNumber\": ", row.id);
	escape_json(&result, row.number);
	appendStringInfoString(&result, ", \"schema\": ");
	escape_json(&result, schema);
	appendStringInfo(&result, ", \"tables\": %s}", tables.len > 0 ? tables.data : "[]");
	/* everything above lives in SPI's memory: copy the result out first */
	out = SPI_datumTransfer(DirectFunctionCall1(jsonb_in, CStringGetDatum(result.data)), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(out);
}

/*
 * rows_digest(rel regclass) RETURNS jsonb: the row count and rows digest
 * of a table as a backup would record them now (format, rowCount,
 * rowsDigest), to compare a live or restored table with a manifest.
 */
Datum
bo_rows_digest_sql(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	BoRowFormat format;
	BoRowsDigest d;
	int			nestlevel;
	char	   *json;

	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", get_rel_name(relid)),
				 errhint("rows_digest reads every row: it needs SELECT on the table.")));
	/* it reads the heap directly: not for tables whose rows this role may only partly see */
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rows_digest cannot read table %s: row-level security applies to this role",
						get_rel_name(relid)),
				 errhint("Run it as the table's owner or a role that bypasses row-level security.")));
	rel = table_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
	format = bo_row_format_for(RelationGetDescr(rel));
	table_close(rel, NoLock);

	nestlevel = NewGUCNestLevel();
	bo_set_job_gucs();
	bo_table_rows_digest(relid, format, GetActiveSnapshot(), &d);
	AtEOXact_GUC(false, nestlevel);

	json = psprintf("{\"format\": \"%s\", \"rowCount\": " UINT64_FORMAT ", \"rowsDigest\": \"%s\"}",
					bo_row_format_name(format), d.count, bo_rows_digest_hex(&d));
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}
