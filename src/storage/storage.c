/*-------------------------------------------------------------------------
 *
 * storage.c
 *		The storage driver interface: opening a destination, object names,
 *		write-once puts, and the operator's SQL functions.
 *
 * A destination is validated by the same SQL function that validates the
 * storageDestination of a backup configuration (validate_storage in
 * 40_validate.sql), so a destination is accepted here exactly when a
 * configuration holding it would be, and errors name the same JSON paths.
 * The driver is then chosen by type; types whose driver this version does
 * not have fail with 0A000 instead of pretending to store anything.
 *
 * Crash safety of a put is the driver's business (fs.c: temporary file,
 * fsync, no-replace rename, directory fsync); this file makes sure that a
 * put that does not reach its commit never leaves temporary data behind
 * while the server is up:
 *
 *	- every open writer is in a backend-local list; a transaction callback
 *	  discards the writers of an aborting (sub)transaction, and at commit
 *	  discards (with a WARNING) any writer its caller forgot;
 *	- a reset callback on the writer's memory context discards it when that
 *	  context is reset or deleted before commit or abort.
 *
 * Whichever comes first does the work; the other finds the writer no longer
 * open.  File descriptors of drivers come from OpenTransientFile, so fd.c
 * closes them at (sub)transaction abort; the abort path therefore tells the
 * driver to forget its descriptors, not to close them.  What a crash or
 * kill -9 leaves (a temporary object, never a final one) is invisible to
 * bo_storage_list and removed by bo_storage_cleanup.
 *
 * Puts are not transactional: a committed object stays when the enclosing
 * transaction later rolls back.  Callers make objects reachable only through
 * a manifest written last (DESIGN.md, "write once, commit last").
 *
 * IDENTIFICATION
 *		src/storage/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "backup_offline.h"
#include "storage/storage.h"

/* bytes handed to a driver per call, between interrupt checks */
#define BO_STORAGE_IO_CHUNK (1024 * 1024)

PG_FUNCTION_INFO_V1(bo_storage_put_sql);
PG_FUNCTION_INFO_V1(bo_storage_get_sql);
PG_FUNCTION_INFO_V1(bo_storage_list_sql);
PG_FUNCTION_INFO_V1(bo_storage_delete_sql);
PG_FUNCTION_INFO_V1(bo_storage_stat_sql);
PG_FUNCTION_INFO_V1(bo_storage_cleanup_sql);

/* writers begun and neither committed nor discarded */
static dlist_head open_writers = DLIST_STATIC_INIT(open_writers);
static bool callbacks_registered = false;

/* destination types of the specification without a driver in this version */
static const char *const undriven_types[] = {
	"AWS_S3", "AZURE_BLOB", "GOOGLE_CLOUD_STORAGE", "SFTP", "MULTI"
};

/*
 * Is c allowed in a name component?
 */
static inline bool
name_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/*
 * Why "name" is not a valid object name (or prefix), or NULL when it is.
 * A prefix may be empty, may end with '/', and its last component may be a
 * partial one (only its characters are checked).
 */
static const char *
name_problem(const char *name, bool is_prefix)
{
	size_t		len = strlen(name);
	const char *p = name;

	if (len == 0)
		return is_prefix ? NULL : "The name is empty.";
	if (len > BO_STORAGE_NAME_MAX)
		return "The name is longer than 1024 bytes.";
	if (name[0] == '/')
		return "The name is absolute; object names are relative to the destination.";

	while (*p)
	{
		const char *end = p;
		size_t		clen;

		while (*end && *end != '/')
		{
			if (!name_char_ok(*end))
				return "The name contains a character other than letters, digits, \".\", \"_\", \"-\" and \"/\".";
			end++;
		}
		clen = end - p;

		/* the partial last component of a prefix: characters only */
		if (is_prefix && *end == '\0')
			break;

		if (clen == 0)
			return "The name has an empty component.";
		if ((clen == 1 && p[0] == '.') || (clen == 2 && p[0] == '.' && p[1] == '.'))
			return "The name has a \".\" or \"..\" component.";
		if (clen >= strlen(BO_STORAGE_TEMP_PREFIX) &&
			strncmp(p, BO_STORAGE_TEMP_PREFIX, strlen(BO_STORAGE_TEMP_PREFIX)) == 0)
			return "Components beginning with \".tmp.\" are reserved for temporary objects.";
		if (*end == '\0')
			break;
		p = end + 1;
		if (*p == '\0' && !is_prefix)
			return "The name ends with \"/\".";
	}
	return NULL;
}

/*
 * Raise 22023 unless "name" is a valid object name.
 */
void
bo_storage_check_name(const char *name)
{
	const char *problem = name_problem(name, false);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid object name \"%s\"", name),
				 errdetail("%s", problem),
				 errhint("Object names are relative paths of letters, digits, \".\", \"_\" and \"-\" separated by \"/\", such as \"backups/2024/full.bo\".")));
}

/*
 * Raise 22023 unless "prefix" is a valid object-name prefix.
 */
void
bo_storage_check_prefix(const char *prefix)
{
	const char *problem = name_problem(prefix, true);

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid object name prefix \"%s\"", prefix),
				 errdetail("%s", problem),
				 errhint("A prefix is the beginning of an object name, such as \"backups/2024/\", or empty for all objects.")));
}

/*
 * Is "name" a valid object name?  For drivers listing what they find.
 */
bool
bo_storage_name_is_valid(const char *name)
{
	return name_problem(name, false) == NULL;
}

/*
 * Run validate_storage() on a destination and return the normalised copy,
 * allocated in the caller's memory context.
 */
static Jsonb *
validate_destination(Jsonb *destination)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {JSONBOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	Datum		d;
	bool		isnull;
	int			ret;
	Jsonb	   *result = NULL;

	if (!OidIsValid(get_extension_oid("backup_offline", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"backup_offline\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION backup_offline in this database.")));

	if (destination == NULL)
		nulls[0] = 'n';
	values[0] = PointerGetDatum(destination);
	values[1] = CStringGetTextDatum("storageDestination");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT backup_offline.validate_storage($1, $2, false)",
								2, argtypes, values, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "validate_storage returned %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		result = DatumGetJsonbPCopy(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	if (result == NULL)
		elog(ERROR, "validate_storage returned NULL");
	return result;
}

/*
 * A string member of the normalised configuration, or NULL when absent.
 */
char *
bo_storage_config_text(BoStorage *storage, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&storage->config->root, key, strlen(key), &v) == NULL ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * Open a storage destination: validate and normalise it, check that this
 * version has its driver, and let the driver check what it needs (paths,
 * mounts, users).  Allocated in the current memory context.
 */
BoStorage *
bo_storage_open(Jsonb *destination)
{
	BoStorage  *storage = palloc0(sizeof(BoStorage));
	int			i;

	storage->config = validate_destination(destination);
	storage->type = bo_storage_config_text(storage, "type");
	if (storage->type == NULL)
		elog(ERROR, "validate_storage returned no type");

	if (strcmp(storage->type, bo_fs_driver.type) == 0)
		storage->driver = &bo_fs_driver;
	else if (strcmp(storage->type, bo_network_share_driver.type) == 0)
		storage->driver = &bo_network_share_driver;
	else
	{
		for (i = 0; i < lengthof(undriven_types); i++)
		{
			if (strcmp(storage->type, undriven_types[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("storage type \"%s\" has no driver in this version", storage->type),
						 errdetail("storageDestination.type is \"%s\".", storage->type),
						 errhint("This version of backup_offline stores objects on LOCAL_FILESYSTEM and NETWORK_SHARE destinations only.")));
		}
		elog(ERROR, "unexpected storage type \"%s\"", storage->type);
	}

	storage->driver->open(storage);
	return storage;
}

/*
 * storageDestination.type of an open destination.
 */
const char *
bo_storage_type(BoStorage *storage)
{
	return storage->type;
}

/*
 * The normalised storageDestination of an open destination.
 */
Jsonb *
bo_storage_config(BoStorage *storage)
{
	return storage->config;
}

/*
 * Discard an open writer: remove its temporary object, take it off the
 * list.  at_xact_end: called from a transaction callback.  Never throws.
 */
static void
writer_discard(BoStorageWriter *writer, bool at_xact_end)
{
	if (writer->state != BO_WRITER_OPEN)
		return;
	writer->state = BO_WRITER_DISCARDED;
	dlist_delete(&writer->node);
	writer->storage->driver->discard(writer, at_xact_end);
}

/*
 * Memory-context reset callback: a writer whose memory goes away before
 * commit or abort is discarded.
 */
static void
writer_reset_callback(void *arg)
{
	writer_discard((BoStorageWriter *) arg, false);
}

/*
 * Transaction callback: discard the writers still open when the
 * transaction ends.  At abort that is the normal error path; at commit the
 * caller forgot to commit or abort a put, which is reported.
 */
static void
writers_xact_callback(XactEvent event, void *arg)
{
	dlist_mutable_iter iter;
	bool		is_commit;

	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			is_commit = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			is_commit = true;
			break;
		default:
			return;
	}

	dlist_foreach_modify(iter, &open_writers)
	{
		BoStorageWriter *writer = dlist_container(BoStorageWriter, node, iter.cur);

		if (is_commit)
			ereport(WARNING,
					(errmsg("put of object \"%s\" was neither committed nor aborted", writer->name),
					 errdetail("Its temporary data has been removed.")));
		writer_discard(writer, true);
	}
}

/*
 * Subtransaction callback: discard the writers of an aborting
 * subtransaction; hand those of a committing one to its parent (as fd.c
 * does with their descriptors).
 */
static void
writers_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	dlist_mutable_iter iter;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;

	dlist_foreach_modify(iter, &open_writers)
	{
		BoStorageWriter *writer = dlist_container(BoStorageWriter, node, iter.cur);

		if (writer->subid != mySubid)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			writer_discard(writer, true);
		else
			writer->subid = parentSubid;
	}
}

/*
 * Begin a write-once put of object "name".  Fails at once when the object
 * exists.  The writer lives in the current memory context; resetting that
 * context before commit discards the put.
 */
BoStorageWriter *
bo_storage_put_begin(BoStorage *storage, const char *name)
{
	BoStorageWriter *writer;

	bo_storage_check_name(name);

	if (!callbacks_registered)
	{
		RegisterXactCallback(writers_xact_callback, NULL);
		RegisterSubXactCallback(writers_subxact_callback, NULL);
		callbacks_registered = true;
	}

	writer = palloc0(sizeof(BoStorageWriter));
	writer->storage = storage;
	writer->name = pstrdup(name);
	writer->subid = GetCurrentSubTransactionId();
	writer->reset_callback.func = writer_reset_callback;
	writer->reset_callback.arg = writer;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &writer->reset_callback);

	/* listed before the driver creates anything, so an error cleans up */
	writer->state = BO_WRITER_OPEN;
	dlist_push_tail(&open_writers, &writer->node);

	storage->driver->put_begin(writer);
	return writer;
}

/*
 * Append data to an open put.
 */
void
bo_storage_put_write(BoStorageWriter *writer, const void *data, size_t len)
{
	const char *p = data;

	if (writer->state != BO_WRITER_OPEN)
		elog(ERROR, "put of object \"%s\" is not open", writer->name);

	while (len > 0)
	{
		size_t		n = Min(len, BO_STORAGE_IO_CHUNK);

		CHECK_FOR_INTERRUPTS();
		writer->storage->driver->put_write(writer, p, n);
		writer->written += n;
		p += n;
		len -= n;
	}
}

/*
 * Make the put visible under its name, durably and atomically; fails with
 * 42710 when an object of that name appeared meanwhile (nothing replaced).
 */
void
bo_storage_put_commit(BoStorageWriter *writer)
{
	if (writer->state != BO_WRITER_OPEN)
		elog(ERROR, "put of object \"%s\" is not open", writer->name);

	CHECK_FOR_INTERRUPTS();
	writer->storage->driver->put_commit(writer);
	writer->state = BO_WRITER_COMMITTED;
	dlist_delete(&writer->node);
}

/*
 * Abandon an open put: nothing appears under its name.  A no-op on a
 * writer already committed or discarded.
 */
void
bo_storage_put_abort(BoStorageWriter *writer)
{
	writer_discard(writer, false);
}

/*
 * Bytes written to a put so far.
 */
uint64
bo_storage_put_size(BoStorageWriter *writer)
{
	return writer->written;
}

/*
 * Put a whole object from memory.
 */
void
bo_storage_put(BoStorage *storage, const char *name, const void *data, size_t len)
{
	BoStorageWriter *writer = bo_storage_put_begin(storage, name);

	bo_storage_put_write(writer, data, len);
	bo_storage_put_commit(writer);
}

/*
 * Read up to len bytes of object "name" from offset into buf; returns the
 * count, short only at the end of the object.  A missing object is 58P01.
 */
size_t
bo_storage_get(BoStorage *storage, const char *name, uint64 offset, void *buf, size_t len)
{
	bo_storage_check_name(name);
	return storage->driver->get(storage, name, offset, buf, len);
}

/*
 * Size and modification time of object "name"; false when it does not
 * exist.
 */
bool
bo_storage_stat(BoStorage *storage, const char *name, BoStorageStat *out)
{
	bo_storage_check_name(name);
	return storage->driver->stat(storage, name, out);
}

/*
 * The objects whose names begin with "prefix", as BoStorageEntry pointers
 * sorted by name (byte order).  Temporary objects are never listed.
 */
List *
bo_storage_list(BoStorage *storage, const char *prefix)
{
	bo_storage_check_prefix(prefix);
	return storage->driver->list(storage, prefix);
}

/*
 * Delete object "name".  Deleting a missing object is not an error (as
 * with S3), so an interrupted prune can simply be repeated.
 */
void
bo_storage_delete(BoStorage *storage, const char *name)
{
	bo_storage_check_name(name);
	storage->driver->delete(storage, name);
}

/*
 * Remove temporary objects left by puts that never finished (a crash, a
 * kill -9) and untouched for at least older_than_seconds, under prefix (a
 * "directory" ending in '/', or "" for the whole destination); returns how
 * many.
 */
int
bo_storage_cleanup(BoStorage *storage, const char *prefix, int64 older_than_seconds)
{
	if (older_than_seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative")));
	if (prefix[0] != '\0')
	{
		bo_storage_check_prefix(prefix);
		if (prefix[strlen(prefix) - 1] != '/')
			elog(ERROR, "storage cleanup prefix \"%s\" does not end in '/'", prefix);
	}
	return storage->driver->cleanup(storage, prefix, older_than_seconds);
}

/*
 * storage_put(storage jsonb, name text, data bytea) RETURNS void
 *
 * Write object "name" once, atomically.
 */
Datum
bo_storage_put_sql(PG_FUNCTION_ARGS)
{
	BoStorage  *storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bytea	   *data = PG_GETARG_BYTEA_PP(2);

	bo_storage_put(storage, name, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	PG_RETURN_VOID();
}

/*
 * storage_get(storage jsonb, name text, "offset" bigint DEFAULT 0,
 *			   length bigint DEFAULT NULL) RETURNS bytea
 *
 * Bytes of object "name" from offset; all the rest when length is NULL.
 * Reading past the end returns what there is.
 */
Datum
bo_storage_get_sql(PG_FUNCTION_ARGS)
{
	BoStorage  *storage;
	char	   *name;
	int64		offset;
	int64		length;
	bytea	   *result;
	size_t		got;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	offset = PG_GETARG_INT64(2);
	if (offset < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("offset must not be negative"),
				 errdetail("The offset given is " INT64_FORMAT ".", offset)));

	if (PG_ARGISNULL(3))
	{
		BoStorageStat st;

		if (!bo_storage_stat(storage, name, &st))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("object \"%s\" does not exist", name)));
		length = (uint64) offset >= st.size ? 0 : (int64) (st.size - offset);
	}
	else
	{
		length = PG_GETARG_INT64(3);
		if (length < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("length must not be negative"),
					 errdetail("The length given is " INT64_FORMAT ".", length)));
	}
	if (length > (int64) (MaxAllocSize - VARHDRSZ))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot return " INT64_FORMAT " bytes of object \"%s\" at once", length, name),
				 errhint("Read at most 1 GB at a time with the offset and length arguments.")));

	result = palloc(VARHDRSZ + length);
	got = bo_storage_get(storage, name, (uint64) offset, VARDATA(result), (size_t) length);
	SET_VARSIZE(result, VARHDRSZ + got);
	PG_RETURN_BYTEA_P(result);
}

/*
 * storage_list(storage jsonb, prefix text DEFAULT '')
 *	 RETURNS TABLE (name text, size bigint, modified timestamptz)
 *
 * The objects whose names begin with prefix, sorted by name.
 */
Datum
bo_storage_list_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BoStorage  *storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *entries;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	entries = bo_storage_list(storage, prefix);
	foreach(lc, entries)
	{
		BoStorageEntry *e = (BoStorageEntry *) lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(e->name);
		values[1] = Int64GetDatum((int64) e->size);
		values[2] = TimestampTzGetDatum(e->modified);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * storage_delete(storage jsonb, name text) RETURNS void
 *
 * Delete object "name" (no error when it does not exist).
 */
Datum
bo_storage_delete_sql(PG_FUNCTION_ARGS)
{
	BoStorage  *storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));

	bo_storage_delete(storage, name);
	PG_RETURN_VOID();
}

/*
 * storage_stat(storage jsonb, name text) RETURNS jsonb
 *
 * {"name": ..., "size": ..., "modified": ...} of object "name", or NULL
 * when it does not exist.
 */
Datum
bo_storage_stat_sql(PG_FUNCTION_ARGS)
{
	BoStorage  *storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	BoStorageStat st;
	StringInfoData buf;
	char		tsbuf[MAXDATELEN + 1];

	if (!bo_storage_stat(storage, name, &st))
		PG_RETURN_NULL();

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"name\": ");
	escape_json(&buf, name);
	appendStringInfo(&buf, ", \"size\": " UINT64_FORMAT ", \"modified\": ", st.size);
	escape_json(&buf, JsonEncodeDateTime(tsbuf, TimestampTzGetDatum(st.modified),
										 TIMESTAMPTZOID, NULL));
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * storage_cleanup(storage jsonb, older_than interval DEFAULT '1 hour')
 *	 RETURNS integer
 *
 * Remove temporary objects of unfinished puts untouched for older_than.
 */
Datum
bo_storage_cleanup_sql(PG_FUNCTION_ARGS)
{
	BoStorage  *storage = bo_storage_open(PG_GETARG_JSONB_P(0));
	Interval   *span = PG_GETARG_INTERVAL_P(1);
	int64		seconds;

	seconds = span->time / USECS_PER_SEC +
		(int64) span->day * SECS_PER_DAY +
		(int64) span->month * DAYS_PER_MONTH * SECS_PER_DAY;
	if (seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative"),
				 errhint("Give an interval such as '1 hour'.")));
	PG_RETURN_INT32(bo_storage_cleanup(storage, "", seconds));
}
