/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *		The snapshot engine: one backup of a configuration's scope, run by
 *		a job worker.
 *
 * Steps, each in its own transaction so that the snapshot row's status is
 * durable at every point:
 *
 *	1. Fail snapshots left PENDING or IN_PROGRESS by a crash (recovery),
 *	   read the configuration, choose the backup type and parent, insert
 *	   the snapshot row PENDING.
 *	2. Wait (bounded) for the transactions that are writing now to finish,
 *	   having noted the WAL insert position first: the change threshold
 *	   (see README "Backups").  Status IN_PROGRESS.
 *	3. One REPEATABLE READ, read-only transaction: lock the scope's tables
 *	   (ACCESS SHARE, so no TRUNCATE or DDL runs under the scan), then take
 *	   the snapshot, so every table is read as of one instant; record the
 *	   consistency point; scan each table page by page and stream its rows
 *	   (COPY formats, encode.c) through the archive writer into storage,
 *	   one object per part; write the manifest last.  The manifest in
 *	   storage is the commit point.
 *	4. Status COMPLETED with the manifest, metrics and checksum.
 *
 * On any error (including a cancel or maxDurationMinutes) the transaction aborts
 * (the storage layer removes temporary objects), and a new transaction
 * marks the snapshot FAILED or CANCELLED and deletes the objects it had
 * committed, manifest first.  A crash instead leaves the row PENDING or
 * IN_PROGRESS; bo_backup_recover (run before every job, and at start-up
 * by the scheduler) fails such rows whose job is gone and deletes their
 * objects the same way.
 *
 * Objects: <root>/backup_offline/<configuration id>/<snapshot id>/
 *		t<NNNN>.rows.<PPPP>   rows of table NNNN (manifest order), part PPPP
 *		backup_manifest       the manifest (manifest.c)
 * each an archive object (with its ".key.<kek>" wraps when encrypted).
 *
 * IDENTIFICATION
 *		src/backup/snapshot.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"
#include "storage/storage.h"

/* rows are handed to the archive writer in pieces of about this size */
#define WRITE_BUFFER_SIZE (256 * 1024)
/* progress and cancel checks every this many heap blocks */
#define REPORT_EVERY_BLOCKS 64

/* the scope's filters, in the order of backup_scope_tables' columns */
typedef enum BoFilterKind
{
	BO_FILTER_CLIENT,
	BO_FILTER_CAREGIVER,
	BO_FILTER_BRANCH,
	BO_FILTER_DATE,
	BO_FILTER_ORGANIZATION,
	BO_FILTERS
} BoFilterKind;

/* a filter of the scope on one column: equal to one of values, or in a range */
typedef struct BoColumnFilter
{
	AttrNumber	attnum;
	Oid			collation;
	FmgrInfo	eq;				/* equality (value lists) */
	FmgrInfo	cmp;			/* btree comparison (date range) */
	int			nvalues;
	Datum	   *values;
	bool		has_from;
	Datum		from;			/* inclusive */
	bool		has_to;
	Datum		to;				/* exclusive */
} BoColumnFilter;

/* one table of the scope, and what backing it up produced */
typedef struct BoScopeTable
{
	Oid			relid;
	int			ordinal;		/* 1-based, manifest order */
	char	   *schema;
	char	   *name;
	char	   *entity_types;	/* JSON array text */
	char	   *columns[BO_FILTERS];	/* filter columns, by BoFilterKind */
	bool		phi;
	bool		pii;
	bool		financial;
	char	   *definition;		/* table_definition() JSON text */
	char	   *fingerprint;	/* its fingerprint */
	List	   *primary_key;	/* column names, NIL without one */
	/* the parent's entry for the table (incrementals) */
	bool		in_parent;
	BoRowsDigest parent_digest;	/* rows digest and count at the parent */
	bool		filters_changed;	/* the registry's filter columns differ */
	/* results */
	BoRowFormat format;
	List	   *copy_columns;
	BlockNumber nblocks;
	bool		delta;			/* changes since the parent, not a whole copy */
	bool		all_pages;		/* delta without a change threshold */
	const char *change_reason;	/* why an incremental copied it whole */
	uint64		pages_read;
	uint64		pages_skipped;
	uint64		upserted;		/* rows written */
	uint64		deleted;		/* keys written */
	uint64		plaintext_bytes;
	uint64		stored_bytes;
	BoRowsDigest digest;		/* of the table at this snapshot (and its row count) */
	StringInfoData objects;		/* JSON array members */
	int			nobjects;
} BoScopeTable;

/* the whole job */
typedef struct BoBackupJob
{
	BoJobSlot  *slot;
	MemoryContext cxt;
	char	   *configuration_id;
	char	   *configuration_name;
	char	   *organization_id;
	char	   *configuration_json;	/* configuration_to_json() text */
	char	   *scope_json;
	char	   *storage_json;
	bool		encrypted;
	bool		compressed;
	char	   *checksum_algorithm;
	int			max_duration_minutes;	/* 0: none */
	bool		timed_out;		/* cancelled by max_duration_minutes */
	/* the snapshot */
	char	   *snapshot_id;
	char	   *snapshot_number;
	char	   *backup_type;
	char	   *requested_type;
	char	   *parent_id;		/* NULL for FULL */
	char	   *base_id;
	char	   *prefix;			/* object name prefix, ends in '/' */
	Jsonb	   *parent_manifest;
	List	   *chain_ids;		/* snapshot ids from the FULL to the parent */
	XLogRecPtr	parent_change_lsn;	/* invalid: read every page */
	bool		scope_changed;	/* since the parent */
	TimestampTz started_at;
	TimestampTz snapshot_time;
	XLogRecPtr	change_lsn;		/* InvalidXLogRecPtr: writers did not finish */
	XLogRecPtr	snapshot_lsn;
	TransactionId xmin;
	TransactionId xmax;
	List	   *tables;			/* BoScopeTable * */
	BoArchiveOptions options;
	char	   *kek_id;
	BoJobProgress progress;
	/* the manifest */
	char	   *manifest;
	char	   *manifest_checksum;
	uint64		manifest_stored;
} BoBackupJob;

static void run_in_transaction(void (*fn) (BoBackupJob *), BoBackupJob *job);
static void resolve_scope(BoBackupJob *job);

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

/*
 * Pin the settings that make text output exact and the same on every run
 * (encode.c), in job workers and wherever rows are decoded again.
 */
void
bo_set_job_gucs(void)
{
	SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("TimeZone", "UTC", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("bytea_output", "hex", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("lc_monetary", "C", PGC_SUSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	/* binary COPY sends and receives text in the client encoding: none */
	SetConfigOption("client_encoding", GetDatabaseEncodingName(), PGC_SUSET, PGC_S_SESSION);
}

/* "<root>/backup_offline/<configuration>/<snapshot>/" as object names go */
char *
bo_snapshot_prefix(const char *configuration_id, const char *snapshot_id)
{
	return psprintf("backup_offline/%s/%s/", configuration_id, snapshot_id);
}

static char *
lsn_string(XLogRecPtr lsn)
{
	return psprintf("%X/%X", LSN_FORMAT_ARGS(lsn));
}

/* run one SPI statement with text parameters (NULL = SQL NULL) */
int
bo_spi_exec(const char *sql, int nargs, const char **args, bool read_only, long limit)
{
	Oid		   *types = palloc(sizeof(Oid) * Max(nargs, 1));
	Datum	   *values = palloc(sizeof(Datum) * Max(nargs, 1));
	char	   *nulls = palloc(Max(nargs, 1) + 1);
	int			i;
	int			rc;

	for (i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	nulls[nargs] = '\0';
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, limit);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* column i (1-based) of SPI result row r as text in the job's context, or NULL */
static char *
spi_text(BoBackupJob *job, uint64 r, int i)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, i);

	return v ? MemoryContextStrdup(job->cxt, v) : NULL;
}

static bool
spi_bool(uint64 r, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, i, &isnull);

	return !isnull && DatumGetBool(d);
}

static void
report(BoBackupJob *job)
{
	bo_job_report(&job->progress);
}

static void
set_phase(BoBackupJob *job, const char *phase)
{
	strlcpy(job->progress.phase, phase, sizeof(job->progress.phase));
	report(job);
}

/*
 * Cancel checks, plus schedule.maxDurationMinutes: a backup that runs longer than its
 * configuration allows is cancelled.
 */
static void
check_cancel(BoBackupJob *job)
{
	bo_job_check_cancel();
	if (job->max_duration_minutes > 0 &&
		TimestampDifferenceExceeds(job->started_at, GetCurrentTimestamp(),
								   job->max_duration_minutes * 60 * 1000))
	{
		job->timed_out = true;
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("backup cancelled: it ran longer than schedule.maxDurationMinutes (%d)",
						job->max_duration_minutes),
				 errhint("Raise schedule.maxDurationMinutes, or make the scope smaller.")));
	}
}

/* ---------------------------------------------------------------------
 * Recovery
 * ---------------------------------------------------------------------
 */

/*
 * One more consecutive failure of a configuration; SUSPENDED when it
 * reaches backup_offline.suspend_after_failures.
 */
static void
count_failure(const char *configuration_id)
{
	const char *args[2];

	args[0] = configuration_id;
	args[1] = psprintf("%d", bo_suspend_after_failures);
	bo_spi_exec("UPDATE backup_offline.backup_configuration c "
			 "   SET consecutive_failures = c.consecutive_failures + 1, "
			 "       status = CASE WHEN $2::int > 0 AND c.consecutive_failures + 1 >= $2::int "
			 "                     AND c.status = 'ACTIVE' THEN 'SUSPENDED' ELSE c.status END, "
			 "       status_reason = CASE WHEN $2::int > 0 AND c.consecutive_failures + 1 >= $2::int "
			 "                     AND c.status = 'ACTIVE' "
			 "                     THEN format('suspended after %s consecutive failed backups', c.consecutive_failures + 1) "
			 "                     ELSE c.status_reason END "
			 " WHERE c.id = $1::uuid", 2, args, false, 0);
}

/*
 * Delete every object of a snapshot, its manifest first, so that a
 * half-deleted snapshot is never mistaken for a committed one.  Returns
 * the number of objects deleted.
 */
static int
delete_snapshot_objects(const char *storage_json, const char *prefix)
{
	BoStorage  *storage;
	List	   *entries;
	ListCell   *lc;
	char	   *manifest = psprintf("%s%s", prefix, BO_MANIFEST_NAME);
	int			n = 0;

	storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(storage_json))));
	entries = bo_storage_list(storage, prefix);
	foreach(lc, entries)
	{
		BoStorageEntry *e = lfirst(lc);

		if (strncmp(e->name, manifest, strlen(manifest)) == 0)
		{
			bo_storage_delete(storage, e->name);
			n++;
		}
	}
	foreach(lc, entries)
	{
		BoStorageEntry *e = lfirst(lc);

		if (strncmp(e->name, manifest, strlen(manifest)) != 0)
		{
			bo_storage_delete(storage, e->name);
			n++;
		}
	}
	/* what puts interrupted by a crash left: the prefix is the snapshot's alone */
	n += bo_storage_cleanup(storage, prefix, 0);
	return n;
}

typedef struct BoObjectDeletion
{
	const char *storage_json;
	const char *prefix;
	int			removed;		/* out */
} BoObjectDeletion;

static void
delete_objects_cb(void *arg)
{
	BoObjectDeletion *d = arg;

	d->removed = delete_snapshot_objects(d->storage_json, d->prefix);
}

/*
 * Run fn(arg) in an internal subtransaction; NULL when it succeeded, else
 * its error message (the subtransaction rolled back, the error state
 * cleared).  For work whose failure is to be recorded, not raised.
 */
char *
bo_try_subtransaction(void (*fn) (void *arg), void *arg)
{
	return bo_try_subtransaction_code(fn, arg, NULL);
}

/* bo_try_subtransaction, also giving the error's SQLSTATE in *code (when not NULL) */
char *
bo_try_subtransaction_code(void (*fn) (void *arg), void *arg, int *code)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		error = edata->message;
		if (code != NULL)
			*code = edata->sqlerrcode;
	}
	PG_END_TRY();
	return error;
}

/*
 * Fail every snapshot left PENDING or IN_PROGRESS whose job is not
 * running (a crash, a restart, a worker that died) and delete its objects.
 * Runs in the caller's transaction, with SPI connected.  Returns how many
 * snapshots it failed.
 */
int
bo_backup_recover(void)
{
	int			failed = 0;
	uint64		i;
	SPITupleTable *rows;
	uint64		nrows;

	bo_spi_exec("SELECT s.id::text, s.snapshot_number, s.storage_location->'destination', "
			 "       s.storage_location->>'prefix', s.configuration_id::text "
			 "  FROM backup_offline.backup_snapshot s "
			 " WHERE s.status IN ('PENDING', 'IN_PROGRESS') "
			 "   FOR UPDATE SKIP LOCKED", 0, NULL, false, 0);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	for (i = 0; i < nrows; i++)
	{
		char	   *id = SPI_getvalue(rows->vals[i], rows->tupdesc, 1);
		char	   *number = SPI_getvalue(rows->vals[i], rows->tupdesc, 2);
		char	   *storage = SPI_getvalue(rows->vals[i], rows->tupdesc, 3);
		char	   *prefix = SPI_getvalue(rows->vals[i], rows->tupdesc, 4);
		char	   *configuration = SPI_getvalue(rows->vals[i], rows->tupdesc, 5);
		pg_uuid_t  *uuid = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(id)));
		char	   *removal;
		char	   *error;
		BoObjectDeletion del;
		const char *args[2];

		if (bo_job_running(BO_JOB_BACKUP, uuid))
			continue;
		bo_index_remove(id);

		/* storage trouble must not keep the row IN_PROGRESS forever */
		del.storage_json = storage;
		del.prefix = prefix;
		error = bo_try_subtransaction(delete_objects_cb, &del);
		removal = error ? psprintf("its objects could not be removed: %s", error)
			: psprintf("%d objects removed", del.removed);

		args[0] = id;
		args[1] = psprintf("the job was interrupted (server restart, crash or worker exit); %s", removal);
		bo_spi_exec("UPDATE backup_offline.backup_snapshot "
				 "   SET status = 'FAILED', status_reason = $2, completed_at = now(), "
				 "       error = jsonb_build_object('sqlstate', '57P01', 'message', $2) "
				 " WHERE id = $1::uuid", 2, args, false, 0);
		/* a job that keeps dying counts towards suspension like one that fails */
		count_failure(configuration);
		ereport(LOG,
				(errmsg("backup_offline: snapshot %s failed: %s", number, args[1])));
		failed++;
	}

	return failed;
}

/* ---------------------------------------------------------------------
 * Step 1: the snapshot row
 * ---------------------------------------------------------------------
 */
static void
create_snapshot(BoBackupJob *job)
{
	const char *args[10];
	char	   *status;
	char	   *deleted;
	char	   *config_type;
	int			rc;

	bo_jobs_recover();

	args[0] = job->configuration_id;
	rc = bo_spi_exec("SELECT c.name, c.status::text, (c.deleted_at IS NOT NULL)::text, c.config_type::text, "
				  "       c.organization_id::text, backup_offline.configuration_to_json(c)::text, "
				  "       c.scope::text, c.storage_destination::text, c.encryption_enabled, "
				  "       c.compression_enabled, c.checksum_algorithm::text, "
				  "       coalesce((c.schedule->>'maxDurationMinutes')::int, 0) "
				  "  FROM backup_offline.backup_configuration c WHERE c.id = $1::uuid FOR UPDATE",
				  1, args, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read the configuration");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("backup configuration %s does not exist", job->configuration_id)));
	job->configuration_name = spi_text(job, 0, 1);
	status = spi_text(job, 0, 2);
	deleted = spi_text(job, 0, 3);
	config_type = spi_text(job, 0, 4);
	job->organization_id = spi_text(job, 0, 5);
	job->configuration_json = spi_text(job, 0, 6);
	job->scope_json = spi_text(job, 0, 7);
	job->storage_json = spi_text(job, 0, 8);
	job->encrypted = spi_bool(0, 9);
	job->compressed = spi_bool(0, 10);
	job->checksum_algorithm = spi_text(job, 0, 11);
	job->max_duration_minutes = atoi(spi_text(job, 0, 12));
	if (strcmp(deleted, "true") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup configuration \"%s\" is deleted", job->configuration_name)));
	if (strcmp(status, "ACTIVE") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup configuration \"%s\" is %s", job->configuration_name, status),
				 errhint("Only ACTIVE configurations run.")));

	/* the type, and its parent */
	job->requested_type = MemoryContextStrdup(job->cxt,
											  job->slot->requested_type[0] ? job->slot->requested_type :
											  strcmp(config_type, "CONTINUOUS") == 0 ? "FULL" : config_type);
	job->backup_type = job->requested_type;
	job->parent_id = NULL;
	if (strcmp(job->requested_type, "FULL") != 0)
	{
		/*
		 * INCREMENTAL: the newest restorable snapshot of any type;
		 * DIFFERENTIAL: the newest restorable FULL.  Restorable: COMPLETED,
		 * with its whole chain COMPLETED.
		 */
		args[1] = job->requested_type;
		bo_spi_exec("SELECT s.id::text, s.base_snapshot_id::text FROM backup_offline.backup_snapshot s "
				 " WHERE s.configuration_id = $1::uuid AND s.status = 'COMPLETED' "
				 "   AND ($2 = 'INCREMENTAL' OR s.backup_type = 'FULL') "
				 "   AND NOT EXISTS (SELECT 1 FROM backup_offline.snapshot_chain(s.id) c "
				 "                    WHERE c.status <> 'COMPLETED') "
				 " ORDER BY s.completed_at DESC LIMIT 1", 2, args, false, 1);
		if (SPI_processed == 0)
		{
			ereport(NOTICE,
					(errmsg("no restorable FULL backup of \"%s\" exists: %s changed to FULL",
							job->configuration_name, job->requested_type)));
			job->backup_type = "FULL";
		}
		else
		{
			uint64		i;
			char	   *lsn;
			MemoryContext old;

			job->parent_id = spi_text(job, 0, 1);
			job->base_id = spi_text(job, 0, 2);
			args[0] = job->parent_id;
			args[1] = job->configuration_id;
			bo_spi_exec("SELECT p.manifest::text, p.consistency->>'changeLsn', "
					 "       (p.manifest->'configuration'->'scope' IS DISTINCT FROM "
					 "        backup_offline.configuration_to_json(c)->'scope') "
					 "  FROM backup_offline.backup_snapshot p, backup_offline.backup_configuration c "
					 " WHERE p.id = $1::uuid AND c.id = $2::uuid", 2, args, false, 1);
			old = MemoryContextSwitchTo(job->cxt);
			job->parent_manifest = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	  CStringGetDatum(spi_text(job, 0, 1))));
			MemoryContextSwitchTo(old);
			lsn = spi_text(job, 0, 2);
			job->parent_change_lsn = lsn ? DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(lsn)))
				: InvalidXLogRecPtr;
			job->scope_changed = spi_bool(0, 3);
			bo_spi_exec("SELECT id::text FROM backup_offline.snapshot_chain($1::uuid)", 1, args, false, 0);
			for (i = 0; i < SPI_processed; i++)
			{
				old = MemoryContextSwitchTo(job->cxt);
				job->chain_ids = lappend(job->chain_ids, spi_text(job, i, 1));
				MemoryContextSwitchTo(old);
			}
			args[0] = job->configuration_id;
		}
	}

	/* claim the id first: a recovery running meanwhile must not take the row for an orphan */
	bo_spi_exec("SELECT gen_random_uuid()::text", 0, NULL, true, 1);
	job->snapshot_id = spi_text(job, 0, 1);
	bo_job_claim_snapshot(DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(job->snapshot_id))));

	args[0] = job->configuration_id;
	args[1] = job->organization_id;
	args[2] = job->backup_type;
	args[3] = job->requested_type;
	args[4] = job->slot->trigger;
	args[5] = job->parent_id;
	args[6] = job->base_id;
	args[7] = job->slot->requested_by;
	args[8] = job->slot->requested_by_user[0] ? job->slot->requested_by_user : NULL;
	args[9] = job->snapshot_id;
	rc = bo_spi_exec("WITH n AS (SELECT $10::uuid AS id) "
				  "INSERT INTO backup_offline.backup_snapshot "
				  "  (id, organization_id, configuration_id, backup_type, requested_type, trigger, "
				  "   parent_snapshot_id, base_snapshot_id, requested_by, requested_by_user, "
				  "   storage_location, checksum_algorithm, encrypted, compressed, worker_pid) "
				  "SELECT n.id, $2::uuid, $1::uuid, $3::backup_offline.backup_type, "
				  "       $4::backup_offline.backup_type, $5, $6::uuid, coalesce($7::uuid, n.id), $8::name, $9::uuid, "
				  "       jsonb_build_object('type', c.storage_destination->>'type', "
				  "                          'destination', c.storage_destination, "
				  "                          'prefix', 'backup_offline/' || $1 || '/' || n.id || '/', "
				  "                          'manifest', 'backup_offline/' || $1 || '/' || n.id || '/backup_manifest'), "
				  "       c.checksum_algorithm, c.encryption_enabled, c.compression_enabled, pg_backend_pid() "
				  "  FROM n, backup_offline.backup_configuration c WHERE c.id = $1::uuid "
				  "ON CONFLICT (configuration_id) WHERE status IN ('PENDING', 'IN_PROGRESS') DO NOTHING "
				  "RETURNING id::text, snapshot_number, base_snapshot_id::text",
				  10, args, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not create the snapshot row");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("backup configuration \"%s\" is already running", job->configuration_name),
				 errhint("Wait for it to finish, or stop it with cancel_backup(snapshot_id).")));
	job->snapshot_id = spi_text(job, 0, 1);
	job->snapshot_number = spi_text(job, 0, 2);
	job->base_id = spi_text(job, 0, 3);
	job->prefix = MemoryContextStrdup(job->cxt, bo_snapshot_prefix(job->configuration_id, job->snapshot_id));
}

/* ---------------------------------------------------------------------
 * Step 2: wait for the writers of the moment
 * ---------------------------------------------------------------------
 */

/*
 * Every heap page changed after the backup's snapshot carries an LSN above
 * the WAL position noted here, once every transaction that was writing at
 * that moment has finished: those are the only ones whose earlier changes
 * could become visible later without touching their pages again.  Wait
 * for them, up to a bound; when they do not finish in time the threshold
 * is not recorded, and the next INCREMENTAL reads every page of the
 * tables instead of only the changed ones.
 */
static void
wait_for_writers(BoBackupJob *job)
{
	Snapshot	snap;
	TransactionId *xids;
	int			nxids;
	int			i;
	TimestampTz deadline;

	set_phase(job, "waiting for writers");
	job->change_lsn = GetXLogInsertRecPtr();
	snap = GetLatestSnapshot();
	nxids = snap->xcnt;
	xids = palloc(sizeof(TransactionId) * Max(nxids, 1));
	memcpy(xids, snap->xip, sizeof(TransactionId) * nxids);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60 * 1000);

	for (i = 0; i < nxids; i++)
	{
		while (TransactionIdIsInProgress(xids[i]))
		{
			if (GetCurrentTimestamp() > deadline)
			{
				ereport(LOG,
						(errmsg("backup_offline: snapshot %s: transaction %u is still writing after 60 s; "
								"the next incremental backup will read every page",
								job->snapshot_number, xids[i])));
				job->change_lsn = InvalidXLogRecPtr;
				return;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			check_cancel(job);
		}
	}
}

static void
start_scan(BoBackupJob *job)
{
	const char *args[1] = {job->snapshot_id};

	resolve_scope(job);
	wait_for_writers(job);
	bo_spi_exec("UPDATE backup_offline.backup_snapshot SET status = 'IN_PROGRESS', started_at = now() "
			 " WHERE id = $1::uuid", 1, args, false, 0);
}

/* ---------------------------------------------------------------------
 * Step 3: the scan
 * ---------------------------------------------------------------------
 */

/* the scope's tables, locked */
static void
resolve_scope(BoBackupJob *job)
{
	const char *args[1] = {job->configuration_id};
	uint64		i;
	MemoryContext old;

	bo_spi_exec("SELECT relid, schema_name, table_name, to_jsonb(entity_types)::text, "
			 "       client_id_column, caregiver_id_column, branch_id_column, date_column, "
			 "       organization_column, contains_phi, contains_pii, contains_financial "
			 "  FROM backup_offline.backup_scope_tables($1::uuid)", 1, args, true, 0);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the scope of backup configuration \"%s\" selects no table", job->configuration_name),
				 errhint("Register the entity types of the scope in backup_offline.entity_registry.")));
	old = MemoryContextSwitchTo(job->cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		BoScopeTable *t = palloc0(sizeof(BoScopeTable));
		int			c;

		t->relid = (Oid) strtoul(spi_text(job, i, 1), NULL, 10);
		t->ordinal = (int) i + 1;
		t->schema = spi_text(job, i, 2);
		t->name = spi_text(job, i, 3);
		t->entity_types = spi_text(job, i, 4);
		for (c = 0; c < BO_FILTERS; c++)
			t->columns[c] = spi_text(job, i, 5 + c);
		t->phi = spi_bool(i, 10);
		t->pii = spi_bool(i, 11);
		t->financial = spi_bool(i, 12);
		initStringInfo(&t->objects);
		job->tables = lappend(job->tables, t);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Lock the tables (before the snapshot exists), then take it.
 */
static void
lock_tables(BoBackupJob *job)
{
	ListCell   *lc;

	foreach(lc, job->tables)
	{
		BoScopeTable *t = lfirst(lc);

		LockRelationOid(t->relid, AccessShareLock);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(t->relid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("table %s.%s of the scope was dropped", t->schema, t->name)));
	}
}

/* names of the filters, as the manifest's filterColumns and errors spell them */
static const char *const filter_names[BO_FILTERS] = {
	"clientIds", "caregiverIds", "branchIds", "dateRange", "organization"
};

/* error context: which filter value was being read */
static void
filter_error_context(void *arg)
{
	errcontext("%s", (const char *) arg);
}

/* a filter value of the scope as a datum of the column's base type */
static Datum
filter_value(Oid typinput, Oid typioparam, int32 typmod, const char *text)
{
	return OidInputFunctionCall(typinput, (char *) text, typioparam, typmod);
}

/*
 * The scope's filters that apply to table t: the columns the entity
 * registry names for it, with the configuration's values (client,
 * caregiver and branch ids, the date range) and, where the registry names
 * an organization column, the configuration's organization.  Values are
 * read as the column's base type, so no domain check (user code) runs in
 * the job worker.
 */
static List *
table_filters(BoBackupJob *job, BoScopeTable *t, Relation rel)
{
	Jsonb	   *scope = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(job->scope_json)));
	List	   *filters = NIL;
	int			k;

	for (k = 0; k < BO_FILTERS; k++)
	{
		BoColumnFilter *f;
		AttrNumber	attnum;
		Form_pg_attribute att;
		Oid			basetype;
		int32		typmod;
		Oid			typinput;
		Oid			typioparam;
		TypeCacheEntry *tce;
		JsonbValue *v = NULL;
		ErrorContextCallback errcb;

		if (t->columns[k] == NULL)
			continue;
		if (k < BO_FILTER_ORGANIZATION)
		{
			v = getKeyJsonValueFromContainer(&scope->root, filter_names[k], strlen(filter_names[k]), NULL);
			if (v == NULL || v->type != jbvBinary)
				continue;
		}
		attnum = get_attnum(t->relid, t->columns[k]);
		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of table %s.%s, named in the entity registry, does not exist",
							t->columns[k], t->schema, t->name),
					 errhint("Register the entity type again with the table's columns.")));
		att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
		typmod = att->atttypmod;
		basetype = getBaseTypeAndTypmod(att->atttypid, &typmod);
		getTypeInputInfo(basetype, &typinput, &typioparam);
		tce = lookup_type_cache(basetype, TYPECACHE_EQ_OPR_FINFO | TYPECACHE_CMP_PROC_FINFO);

		f = palloc0(sizeof(BoColumnFilter));
		f->attnum = attnum;
		f->collation = att->attcollation;
		errcb.callback = filter_error_context;
		errcb.arg = psprintf("reading %s of the scope for column %s of table %s.%s",
							 k == BO_FILTER_ORGANIZATION ? "the organization id" : psprintf("scope.%s", filter_names[k]),
							 t->columns[k], t->schema, t->name);
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		if (k != BO_FILTER_DATE)
		{
			if (!OidIsValid(tce->eq_opr_finfo.fn_oid))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_FUNCTION),
						 errmsg("column %s.%s.%s has no equality operator for %s",
								t->schema, t->name, t->columns[k], filter_names[k])));
			f->eq = tce->eq_opr_finfo;
			if (k == BO_FILTER_ORGANIZATION)
			{
				f->values = palloc(sizeof(Datum));
				f->values[f->nvalues++] = filter_value(typinput, typioparam, typmod, job->organization_id);
			}
			else
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbValue	e;
				JsonbIteratorToken tok;

				f->values = palloc(sizeof(Datum) * Max(JsonContainerSize(v->val.binary.data), 1));
				while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				{
					if (tok == WJB_ELEM && e.type == jbvString)
						f->values[f->nvalues++] =
							filter_value(typinput, typioparam, typmod,
										 pnstrdup(e.val.string.val, e.val.string.len));
				}
				/* an empty list filters nothing */
				if (f->nvalues == 0)
				{
					error_context_stack = errcb.previous;
					continue;
				}
			}
		}
		else
		{
			JsonbValue *from = getKeyJsonValueFromContainer(v->val.binary.data, "startDate", 9, NULL);
			JsonbValue *to = getKeyJsonValueFromContainer(v->val.binary.data, "endDate", 7, NULL);

			if (!OidIsValid(tce->cmp_proc_finfo.fn_oid))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_FUNCTION),
						 errmsg("column %s.%s.%s has no ordering for scope.dateRange",
								t->schema, t->name, t->columns[k])));
			f->cmp = tce->cmp_proc_finfo;
			if (from != NULL && from->type == jbvString)
			{
				f->has_from = true;
				f->from = filter_value(typinput, typioparam, -1,
									   pnstrdup(from->val.string.val, from->val.string.len));
			}
			if (to != NULL && to->type == jbvString)
			{
				/* the end date is inclusive: rows before the next day */
				DateADT		d = DatumGetDateADT(DirectFunctionCall1(date_in,
																	CStringGetDatum(pnstrdup(to->val.string.val, to->val.string.len))));

				f->has_to = true;
				f->to = filter_value(typinput, typioparam, -1,
									 DatumGetCString(DirectFunctionCall1(date_out, DateADTGetDatum(d + 1))));
			}
		}
		error_context_stack = errcb.previous;
		filters = lappend(filters, f);
	}
	return filters;
}

static bool
row_passes(List *filters, Datum *values, bool *nulls)
{
	ListCell   *lc;

	foreach(lc, filters)
	{
		BoColumnFilter *f = lfirst(lc);
		Datum		v = values[f->attnum - 1];
		int			i;

		if (nulls[f->attnum - 1])
			return false;
		if (f->nvalues > 0 || OidIsValid(f->eq.fn_oid))
		{
			bool		found = false;

			for (i = 0; i < f->nvalues && !found; i++)
				found = DatumGetBool(FunctionCall2Coll(&f->eq, f->collation, v, f->values[i]));
			if (!found)
				return false;
		}
		else
		{
			if (f->has_from && DatumGetInt32(FunctionCall2Coll(&f->cmp, f->collation, v, f->from)) < 0)
				return false;
			if (f->has_to && DatumGetInt32(FunctionCall2Coll(&f->cmp, f->collation, v, f->to)) >= 0)
				return false;
		}
	}
	return true;
}

/*
 * A stream of one kind ("rows" or "deletes") of a table, cut into parts:
 * each part is one archive object holding a complete COPY stream.  Parts
 * begin lazily, so an incremental without deletes writes no deletes
 * object; a whole copy always writes at least one (possibly empty) part.
 */
typedef struct BoPartWriter
{
	BoBackupJob *job;
	BoScopeTable *table;
	BoStorage  *storage;
	const char *kind;
	int			part;
	BoArchiveWriter *writer;	/* NULL between parts */
	char	   *name;
	uint64		rows;
	uint64		plaintext;		/* bytes handed to the writer so far */
	StringInfoData buf;
} BoPartWriter;

static void
part_init(BoPartWriter *pw, BoBackupJob *job, BoScopeTable *t, BoStorage *storage, const char *kind)
{
	memset(pw, 0, sizeof(*pw));
	pw->job = job;
	pw->table = t;
	pw->storage = storage;
	pw->kind = kind;
	initStringInfo(&pw->buf);
}

static void
part_flush(BoPartWriter *pw)
{
	if (pw->buf.len > 0)
	{
		bo_archive_write(pw->writer, pw->buf.data, pw->buf.len);
		pw->plaintext += pw->buf.len;
		resetStringInfo(&pw->buf);
	}
}

static void
part_begin(BoPartWriter *pw)
{
	pw->name = psprintf("%st%04d.%s.%04d", pw->job->prefix, pw->table->ordinal, pw->kind, pw->part);
	pw->writer = bo_archive_writer_begin(pw->storage, pw->name, &pw->job->options);
	pw->rows = 0;
	pw->plaintext = 0;
	bo_row_stream_header(pw->table->format, &pw->buf);
}

static void
part_finish(BoPartWriter *pw)
{
	BoArchiveResult res;
	BoScopeTable *t = pw->table;
	StringInfo	s = &t->objects;

	if (pw->writer == NULL)
		return;
	bo_row_stream_trailer(t->format, &pw->buf);
	part_flush(pw);
	bo_archive_writer_finish(pw->writer, &res);
	pw->writer = NULL;

	if (t->nobjects++ > 0)
		appendStringInfoString(s, ", ");
	appendStringInfoChar(s, '{');
	bo_json_add_text(s, "name", pw->name);
	bo_json_add_text(s, "kind", pw->kind);
	bo_json_add_u64(s, "part", pw->part);
	bo_json_add_u64(s, "rows", pw->rows);
	bo_json_add_u64(s, "plaintextLength", res.plaintext_length);
	bo_json_add_text(s, "plaintextDigest", bo_hex(res.plaintext_digest, res.digest_length));
	bo_json_add_u64(s, "storedLength", res.stored_length);
	bo_json_add_text(s, "storedDigest", bo_hex(res.stored_digest, res.digest_length));
	bo_json_add_text(s, "cipher", bo_cipher_name(res.cipher));
	bo_json_add_text(s, "keyId", res.kek_id[0] ? res.kek_id : NULL);
	appendStringInfoChar(s, '}');

	t->plaintext_bytes += res.plaintext_length;
	t->stored_bytes += res.stored_length;
	pw->job->progress.stored_bytes += res.stored_length;
	if (res.kek_id[0] && pw->job->kek_id == NULL)
		pw->job->kek_id = MemoryContextStrdup(pw->job->cxt, res.kek_id);
	pw->part++;
}

/* the buffer the next row goes into (a part begun when none is open) */
static StringInfo
part_buffer(BoPartWriter *pw)
{
	if (pw->writer == NULL)
		part_begin(pw);
	return &pw->buf;
}

/* a row was appended to part_buffer(): hand full buffers on, cut parts */
static void
part_row_added(BoPartWriter *pw)
{
	pw->rows++;
	if (pw->buf.len >= WRITE_BUFFER_SIZE)
	{
		part_flush(pw);
		if ((int64) pw->plaintext >= (int64) bo_part_size * 1024 * 1024)
			part_finish(pw);
	}
}

/* append one encoded row (or key) to the stream */
static void
part_add(BoPartWriter *pw, const char *data, int len)
{
	appendBinaryStringInfo(part_buffer(pw), data, len);
	part_row_added(pw);
}

/* what one table's backup needs while it scans */
typedef struct BoTableScan
{
	BoBackupJob *job;
	BoScopeTable *t;
	Relation	rel;
	TupleDesc	tupdesc;
	BoRowEncoder enc;			/* rows */
	BoRowEncoder keyenc;		/* primary keys */
	bool		has_key;
	List	   *filters;
	Datum	   *values;
	bool	   *nulls;
	BoPartWriter rows;
	BoPartWriter deletes;
	BoIndexWriter *index;		/* NULL: the table keeps no row index */
	BoIndexEntry *entries;		/* this block's, for the index */
	int			nentries;
	MemoryContext blockcxt;		/* reset per block */
} BoTableScan;

/*
 * Encode the visible tuple at off, and when it passes the filters, add it
 * to the rows stream and (with an index) to this block's entries.
 */
static void
emit_row(BoTableScan *ts, Page page, BlockNumber blk, OffsetNumber off)
{
	ItemId		lp = PageGetItemId(page, off);
	HeapTupleData tuple;
	BoIndexEntry *e;
	StringInfo	buf;
	int			start;
	uint8		hash[16];

	tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
	tuple.t_len = ItemIdGetLength(lp);
	tuple.t_tableOid = ts->t->relid;
	ItemPointerSet(&tuple.t_self, blk, off);
	heap_deform_tuple(&tuple, ts->tupdesc, ts->values, ts->nulls);
	if (ts->filters != NIL && !row_passes(ts->filters, ts->values, ts->nulls))
		return;

	/* encoded straight into the part's buffer, hashed there */
	buf = part_buffer(&ts->rows);
	start = buf->len;
	bo_row_encode_into(&ts->enc, ts->values, ts->nulls, buf);
	bo_row_hash(buf->data + start, buf->len - start, hash);
	part_row_added(&ts->rows);
	bo_rows_digest_add_hash(&ts->t->digest, hash);
	ts->t->upserted++;
	ts->job->progress.rows_done++;
	if (ts->index == NULL)
		return;
	e = &ts->entries[ts->nentries++];
	e->offset = off;
	e->xmin = HeapTupleHeaderGetRawXmin(tuple.t_data);
	memcpy(e->hash, hash, sizeof(hash));
	bo_row_encode(&ts->keyenc, ts->values, ts->nulls);
	if (ts->keyenc.row.len > PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a primary key of %s.%s encodes to %d bytes, more than the row index holds (65535)",
						ts->t->schema, ts->t->name, ts->keyenc.row.len),
				 errhint("Leave the table out of the scope, or give it a shorter primary key.")));
	e->keylen = ts->keyenc.row.len;
	e->key = MemoryContextAlloc(ts->blockcxt, e->keylen);
	memcpy(e->key, ts->keyenc.row.data, e->keylen);
}

/* a row version of the parent is gone: delete its key */
static void
emit_delete(BoTableScan *ts, const BoIndexEntry *old)
{
	part_add(&ts->deletes, old->key, old->keylen);
	bo_rows_digest_sub_hash(&ts->t->digest, old->hash);
	ts->t->deleted++;
}

/*
 * The visible tuples of block blk (the buffer pinned and share-locked);
 * returns how many, offsets in visible[].
 */
static int
visible_tuples(BoTableScan *ts, Buffer buf, BlockNumber blk, Snapshot snapshot,
			   OffsetNumber *visible)
{
	Page		page = BufferGetPage(buf);
	OffsetNumber maxoff = PageIsNew(page) ? InvalidOffsetNumber : PageGetMaxOffsetNumber(page);
	OffsetNumber off;
	int			n = 0;

	for (off = FirstOffsetNumber; off <= maxoff; off = OffsetNumberNext(off))
	{
		ItemId		lp = PageGetItemId(page, off);
		HeapTupleData tuple;

		if (!ItemIdIsNormal(lp))
			continue;
		tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
		tuple.t_len = ItemIdGetLength(lp);
		tuple.t_tableOid = ts->t->relid;
		ItemPointerSet(&tuple.t_self, blk, off);
		if (HeapTupleSatisfiesVisibility(&tuple, snapshot, buf))
			visible[n++] = off;
	}
	return n;
}

/*
 * Why table t of an incremental must be copied whole, or NULL (with
 * *chain set) when its changes can be computed.
 */
static const char *
delta_possible(BoTableScan *ts, BoIndexChain **chain)
{
	BoBackupJob *job = ts->job;
	BoScopeTable *t = ts->t;
	const char *reason = NULL;

	*chain = NULL;
	if (job->parent_id == NULL)
		return "a FULL copies every table whole";
	if (!ts->has_key)
		return "the table has no primary key";
	if (ts->rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		return "the table is unlogged: its pages carry no LSN";
	if (job->scope_changed)
		return "the configuration's scope changed since the parent";
	if (!t->in_parent)
		return "the table is not in the parent snapshot";
	if (t->filters_changed)
		return "the entity registry's filter columns for the table changed since the parent";
	*chain = bo_index_chain_open(job->chain_ids, t->relid, ts->rel->rd_node.relNode,
								 t->fingerprint, &reason);
	return *chain ? NULL : reason;
}

/*
 * Back up one table under the transaction snapshot.  A whole copy writes
 * every visible row that passes the scope's filters; an incremental reads
 * only the pages changed since its parent (page LSN above the parent's
 * change threshold, or beyond the parent's size) and writes the row
 * versions that are new as upserts and the keys of those that are gone as
 * deletes (rowindex.c).
 */
static void
backup_table(BoBackupJob *job, BoScopeTable *t, BoStorage *storage, Snapshot snapshot)
{
	BoTableScan ts;
	BufferAccessStrategy strategy = GetAccessStrategy(BAS_BULKREAD);
	OffsetNumber *visible = palloc(sizeof(OffsetNumber) * MaxHeapTuplesPerPage);
	const BoIndexEntry **old_by_offset = palloc0(sizeof(BoIndexEntry *) * (MaxHeapTuplesPerPage + 1));
	BoIndexChain *chain = NULL;
	BlockNumber parent_nblocks = 0;
	BlockNumber last;
	BlockNumber blk;

	memset(&ts, 0, sizeof(ts));
	ts.job = job;
	ts.t = t;
	ts.rel = table_open(t->relid, AccessShareLock);
	ts.tupdesc = RelationGetDescr(ts.rel);
	if (ts.rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s.%s is not a table", t->schema, t->name),
				 errhint("Register plain tables; partitioned tables are backed up through their partitions.")));

	t->format = bo_row_format_for(ts.tupdesc);
	bo_row_encoder_init(&ts.enc, ts.tupdesc, t->format, NIL);
	t->copy_columns = bo_row_encoder_column_names(&ts.enc);
	ts.has_key = t->primary_key != NIL;
	if (ts.has_key)
		bo_row_encoder_init(&ts.keyenc, ts.tupdesc, t->format, t->primary_key);
	ts.filters = table_filters(job, t, ts.rel);
	ts.values = palloc(sizeof(Datum) * Max(ts.tupdesc->natts, 1));
	ts.nulls = palloc(sizeof(bool) * Max(ts.tupdesc->natts, 1));
	ts.entries = palloc(sizeof(BoIndexEntry) * MaxHeapTuplesPerPage);
	ts.blockcxt = AllocSetContextCreate(CurrentMemoryContext, "backup block", ALLOCSET_DEFAULT_SIZES);
	t->nblocks = RelationGetNumberOfBlocks(ts.rel);
	part_init(&ts.rows, job, t, storage, "rows");
	part_init(&ts.deletes, job, t, storage, "deletes");

	t->change_reason = delta_possible(&ts, &chain);
	t->delta = chain != NULL;
	if (t->delta)
	{
		parent_nblocks = bo_index_chain_nblocks(chain);
		t->digest = t->parent_digest;
		t->all_pages = XLogRecPtrIsInvalid(job->parent_change_lsn);
	}
	else
		part_begin(&ts.rows);
	if (ts.has_key && ts.rel->rd_rel->relpersistence == RELPERSISTENCE_PERMANENT)
		ts.index = bo_index_begin(job->snapshot_id, t->relid, ts.rel->rd_node.relNode,
								  t->nblocks, !t->delta, t->fingerprint);

	last = Max(t->nblocks, parent_nblocks);
	for (blk = 0; blk < last; blk++)
	{
		const BoIndexEntry *old = NULL;
		int			nold = 0;
		Buffer		buf;
		Page		page;
		int			nvisible;
		int			i;

		if (blk % REPORT_EVERY_BLOCKS == 0)
		{
			check_cancel(job);
			report(job);
		}
		MemoryContextReset(ts.blockcxt);
		ts.nentries = 0;
		if (t->delta && blk < parent_nblocks)
			old = bo_index_chain_block(chain, blk, &nold);

		/* pages the table no longer has: every row of the parent there is gone */
		if (blk >= t->nblocks)
		{
			for (i = 0; i < nold; i++)
				emit_delete(&ts, &old[i]);
			continue;
		}

		buf = ReadBufferExtended(ts.rel, MAIN_FORKNUM, blk, RBM_NORMAL, strategy);
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buf);
		job->progress.bytes_done += BLCKSZ;
		/*
		 * A zeroed page (a relation extension not yet used, or one a crash
		 * left) has LSN 0 but may stand where the parent had rows: read it.
		 */
		if (t->delta && blk < parent_nblocks && !t->all_pages && !PageIsNew(page) &&
			PageGetLSN(page) <= job->parent_change_lsn)
		{
			/* unchanged since the parent: its index records stay valid */
			UnlockReleaseBuffer(buf);
			t->pages_skipped++;
			continue;
		}
		t->pages_read++;
		nvisible = visible_tuples(&ts, buf, blk, snapshot, visible);
		/* the pin keeps the visible tuples in place; decode them unlocked */
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);

		if (!t->delta)
		{
			for (i = 0; i < nvisible; i++)
				emit_row(&ts, page, blk, visible[i]);
		}
		else
		{
			/* match row versions by line pointer and xmin */
			for (i = 0; i < nold; i++)
				old_by_offset[old[i].offset] = &old[i];
			for (i = 0; i < nvisible; i++)
			{
				ItemId		lp = PageGetItemId(page, visible[i]);
				HeapTupleHeader htup = (HeapTupleHeader) PageGetItem(page, lp);
				const BoIndexEntry *o = old_by_offset[visible[i]];

				if (o != NULL && o->xmin == HeapTupleHeaderGetRawXmin(htup))
				{
					/* the same row version: unchanged, keep its record */
					ts.entries[ts.nentries++] = *o;
					old_by_offset[visible[i]] = NULL;
				}
				else
					emit_row(&ts, page, blk, visible[i]);
			}
			for (i = 0; i < nold; i++)
			{
				if (old_by_offset[old[i].offset] == &old[i])
				{
					emit_delete(&ts, &old[i]);
					old_by_offset[old[i].offset] = NULL;
				}
			}
		}
		ReleaseBuffer(buf);
		if (ts.index != NULL && (t->delta || ts.nentries > 0))
			bo_index_block(ts.index, blk, ts.entries, ts.nentries);
	}

	part_finish(&ts.deletes);
	part_finish(&ts.rows);
	if (ts.index != NULL)
		bo_index_finish(ts.index);
	if (chain != NULL)
		bo_index_chain_close(chain);
	FreeAccessStrategy(strategy);
	MemoryContextDelete(ts.blockcxt);
	table_close(ts.rel, NoLock);
}

/* the manifest's entry for one table */
static void
append_table_entry(StringInfo m, BoScopeTable *t)
{
	ListCell   *lc;

	appendStringInfoString(m, "{");
	bo_json_add_u64(m, "ordinal", t->ordinal);
	bo_json_add_text(m, "schema", t->schema);
	bo_json_add_text(m, "name", t->name);
	bo_json_add_raw(m, "entityTypes", t->entity_types);
	bo_json_add_raw(m, "definition", t->definition);
	bo_json_add_text(m, "format", bo_row_format_name(t->format));
	bo_json_add_key(m, "copyColumns");
	appendStringInfoChar(m, '[');
	foreach(lc, t->copy_columns)
	{
		if (lc != list_head(t->copy_columns))
			appendStringInfoString(m, ", ");
		escape_json(m, lfirst(lc));
	}
	appendStringInfoChar(m, ']');
	bo_json_add_key(m, "filterColumns");
	{
		int			k;

		appendStringInfoChar(m, '{');
		for (k = 0; k < BO_FILTERS; k++)
			bo_json_add_text(m, filter_names[k], t->columns[k]);
		appendStringInfoChar(m, '}');
	}
	bo_json_add_text(m, "change", t->delta ? "rows" : "whole");
	bo_json_add_text(m, "changeReason", t->change_reason);
	bo_json_add_u64(m, "pagesRead", t->pages_read);
	bo_json_add_u64(m, "pagesSkipped", t->pages_skipped);
	bo_json_add_u64(m, "upsertedRows", t->upserted);
	bo_json_add_u64(m, "deletedRows", t->deleted);
	bo_json_add_u64(m, "rowCount", t->digest.count);
	bo_json_add_text(m, "rowsDigest", bo_rows_digest_hex(&t->digest));
	bo_json_add_u64(m, "heapBlocks", t->nblocks);
	bo_json_add_u64(m, "plaintextBytes", t->plaintext_bytes);
	bo_json_add_u64(m, "storedBytes", t->stored_bytes);
	bo_json_add_u64(m, "phiRecords", t->phi ? t->digest.count : 0);
	bo_json_add_u64(m, "piiRecords", t->pii ? t->digest.count : 0);
	bo_json_add_u64(m, "financialRecords", t->financial ? t->digest.count : 0);
	bo_json_add_key(m, "objects");
	appendStringInfo(m, "[%s]", t->objects.data);
	appendStringInfoChar(m, '}');
}

/* the manifest, up to (not including) its checksum */
static void
build_manifest(BoBackupJob *job, StringInfo m)
{
	ListCell   *lc;
	uint64		rows = 0,
				plain = 0,
				stored = 0,
				objects = 0,
				phi = 0,
				pii = 0,
				fin = 0;
	char		sysid[32];

	foreach(lc, job->tables)
	{
		BoScopeTable *t = lfirst(lc);

		rows += t->digest.count;
		plain += t->plaintext_bytes;
		stored += t->stored_bytes;
		objects += t->nobjects;
		phi += t->phi ? t->digest.count : 0;
		pii += t->pii ? t->digest.count : 0;
		fin += t->financial ? t->digest.count : 0;
	}
	snprintf(sysid, sizeof(sysid), UINT64_FORMAT, GetSystemIdentifier());

	appendStringInfoString(m, "{");
	bo_json_add_u64(m, "manifestVersion", BO_MANIFEST_VERSION);
	bo_json_add_text(m, "format", "backup_offline snapshot manifest");
	bo_json_add_text(m, "snapshotId", job->snapshot_id);
	bo_json_add_text(m, "snapshotNumber", job->snapshot_number);
	bo_json_add_text(m, "backupType", job->backup_type);
	bo_json_add_text(m, "requestedType", job->requested_type);
	bo_json_add_text(m, "parentSnapshotId", job->parent_id);
	bo_json_add_text(m, "baseSnapshotId", job->base_id);
	bo_json_add_text(m, "configurationId", job->configuration_id);
	bo_json_add_text(m, "organizationId", job->organization_id);
	bo_json_add_raw(m, "configuration", job->configuration_json);
	bo_json_add_text(m, "systemIdentifier", sysid);
	bo_json_add_text(m, "database", get_database_name(MyDatabaseId));
	bo_json_add_text(m, "serverVersion", GetConfigOption("server_version", false, false));
	bo_json_add_u64(m, "serverVersionNum", PG_VERSION_NUM);
	bo_json_add_text(m, "serverEncoding", GetDatabaseEncodingName());
	bo_json_add_text(m, "startedAt", timestamptz_to_str(job->started_at));
	bo_json_add_text(m, "snapshotTime", timestamptz_to_str(job->snapshot_time));
	bo_json_add_key(m, "consistency");
	{

		appendStringInfoChar(m, '{');
		bo_json_add_u64(m, "xmin", job->xmin);
		bo_json_add_u64(m, "xmax", job->xmax);
		bo_json_add_text(m, "lsn", lsn_string(job->snapshot_lsn));
		bo_json_add_text(m, "changeLsn", XLogRecPtrIsInvalid(job->change_lsn) ? NULL : lsn_string(job->change_lsn));
		appendStringInfoChar(m, '}');
	}
	bo_json_add_text(m, "compression", job->compressed ? "zstd" : "none");
	bo_json_add_u64(m, "compressionLevel", job->compressed ? job->options.compression_level : 0);
	bo_json_add_text(m, "encryption", job->encrypted ? "aead" : "none");
	bo_json_add_text(m, "keyId", job->kek_id);
	bo_json_add_text(m, "digestAlgorithm", job->checksum_algorithm);
	bo_json_add_text(m, "rowsDigestAlgorithm", "xxh3-128-sum");
	bo_json_add_key(m, "totals");
	{

		appendStringInfoChar(m, '{');
		bo_json_add_u64(m, "tableCount", list_length(job->tables));
		bo_json_add_u64(m, "rowCount", rows);
		bo_json_add_u64(m, "objectCount", objects);
		bo_json_add_u64(m, "plaintextBytes", plain);
		bo_json_add_u64(m, "storedBytes", stored);
		bo_json_add_u64(m, "phiRecords", phi);
		bo_json_add_u64(m, "piiRecords", pii);
		bo_json_add_u64(m, "financialRecords", fin);
		appendStringInfoChar(m, '}');
	}
	bo_json_add_key(m, "tables");
	appendStringInfoChar(m, '[');
	foreach(lc, job->tables)
	{
		if (lc != list_head(job->tables))
			appendStringInfoString(m, ",\n");
		append_table_entry(m, lfirst(lc));
	}
	appendStringInfoChar(m, ']');
}

/* the parent manifest's row count and digest of table t */
static void
parent_entry(BoBackupJob *job, BoScopeTable *t)
{
	JsonbValue *tables = getKeyJsonValueFromContainer(&job->parent_manifest->root, "tables", 6, NULL);
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (tables == NULL || tables->type != jbvBinary)
		return;
	it = JsonbIteratorInit(tables->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *sv,
				   *nv,
				   *cv,
				   *dv,
				   *fv;
		int			k;

		if (tok != WJB_ELEM || v.type != jbvBinary)
			continue;
		sv = getKeyJsonValueFromContainer(v.val.binary.data, "schema", 6, NULL);
		nv = getKeyJsonValueFromContainer(v.val.binary.data, "name", 4, NULL);
		if (sv == NULL || nv == NULL || sv->type != jbvString || nv->type != jbvString ||
			strlen(t->schema) != sv->val.string.len || strlen(t->name) != nv->val.string.len ||
			memcmp(t->schema, sv->val.string.val, sv->val.string.len) != 0 ||
			memcmp(t->name, nv->val.string.val, nv->val.string.len) != 0)
			continue;
		fv = getKeyJsonValueFromContainer(v.val.binary.data, "filterColumns", 13, NULL);
		t->filters_changed = fv == NULL || fv->type != jbvBinary;
		for (k = 0; k < BO_FILTERS && !t->filters_changed; k++)
		{
			JsonbValue *c = getKeyJsonValueFromContainer(fv->val.binary.data, filter_names[k],
														 strlen(filter_names[k]), NULL);
			bool		had = c != NULL && c->type == jbvString;

			if (had != (t->columns[k] != NULL) ||
				(had && (strlen(t->columns[k]) != c->val.string.len ||
						 memcmp(t->columns[k], c->val.string.val, c->val.string.len) != 0)))
				t->filters_changed = true;
		}
		cv = getKeyJsonValueFromContainer(v.val.binary.data, "rowCount", 8, NULL);
		dv = getKeyJsonValueFromContainer(v.val.binary.data, "rowsDigest", 10, NULL);
		if (cv != NULL && cv->type == jbvNumeric && dv != NULL && dv->type == jbvString)
		{
			uint64		count = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(cv->val.numeric)));

			t->in_parent = bo_rows_digest_parse(pnstrdup(dv->val.string.val, dv->val.string.len),
												count, &t->parent_digest);
		}
		return;
	}
}

static void
scan_tables(BoBackupJob *job)
{
	Snapshot	snapshot;
	BoStorage  *storage;
	ListCell   *lc;
	StringInfoData m;
	BoArchiveWriter *w;
	BoArchiveResult res;
	char	   *manifest_name;

	set_phase(job, "taking snapshot");
	lock_tables(job);
	snapshot = GetTransactionSnapshot();
	job->snapshot_time = GetCurrentTimestamp();
	job->snapshot_lsn = GetXLogInsertRecPtr();
	job->xmin = snapshot->xmin;
	job->xmax = snapshot->xmax;
	PushActiveSnapshot(snapshot);
	SPI_connect();

	job->progress.tables_total = list_length(job->tables);
	foreach(lc, job->tables)
	{
		BoScopeTable *t = lfirst(lc);
		char	   *relid = psprintf("%u", t->relid);
		const char *args[1] = {relid};

		uint64		i;

		bo_spi_exec("SELECT d::text, d->>'fingerprint' "
				 "  FROM backup_offline.table_definition($1::oid::regclass) d", 1, args, true, 1);
		t->definition = spi_text(job, 0, 1);
		t->fingerprint = spi_text(job, 0, 2);
		bo_spi_exec("SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(d->'primaryKey') = 'array' "
				 "                                      THEN d->'primaryKey' ELSE '[]' END) "
				 "  FROM backup_offline.table_definition($1::oid::regclass) d", 1, args, true, 0);
		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(job->cxt);

			t->primary_key = lappend(t->primary_key, spi_text(job, i, 1));
			MemoryContextSwitchTo(old);
		}
		if (job->parent_manifest != NULL)
			parent_entry(job, t);
		{
			Relation	rel = RelationIdGetRelation(t->relid);

			job->progress.bytes_total += (int64) RelationGetNumberOfBlocks(rel) * BLCKSZ;
			RelationClose(rel);
		}
	}

	storage = bo_storage_open(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(job->storage_json))));
	set_phase(job, "copying rows");
	foreach(lc, job->tables)
	{
		BoScopeTable *t = lfirst(lc);

		snprintf(job->progress.current_table, sizeof(job->progress.current_table), "%s.%s",
				 t->schema, t->name);
		report(job);
		backup_table(job, t, storage, snapshot);
		job->progress.tables_done++;
	}
	job->progress.current_table[0] = '\0';

	set_phase(job, "writing manifest");
	initStringInfo(&m);
	build_manifest(job, &m);
	job->manifest = MemoryContextStrdup(job->cxt, bo_manifest_finish(&m));
	manifest_name = psprintf("%s%s", job->prefix, BO_MANIFEST_NAME);
	w = bo_archive_writer_begin(storage, manifest_name, &job->options);
	bo_archive_write(w, job->manifest, strlen(job->manifest));
	bo_archive_writer_finish(w, &res);
	job->manifest_checksum = MemoryContextStrdup(job->cxt, bo_hex(res.stored_digest, res.digest_length));
	job->manifest_stored = res.stored_length;
	job->progress.stored_bytes += res.stored_length;
	report(job);

	SPI_finish();
	PopActiveSnapshot();
}

/* ---------------------------------------------------------------------
 * Step 4 and failure
 * ---------------------------------------------------------------------
 */
/*
 * Keep the row indexes a next backup of this configuration can use: those
 * of the new snapshot's chain (the parent of an INCREMENTAL) and of the
 * newest COMPLETED FULL (the parent of a DIFFERENTIAL); remove the others,
 * so the local index takes the room of about one chain.  An incremental
 * whose parent's index is gone copies its tables whole.
 */
static void
prune_row_indexes(BoBackupJob *job)
{
	const char *args[2] = {job->configuration_id, job->snapshot_id};
	uint64		i;

	bo_spi_exec("SELECT s.id::text FROM backup_offline.backup_snapshot s "
			 " WHERE s.configuration_id = $1::uuid "
			 "   AND s.id NOT IN (SELECT c.id FROM backup_offline.snapshot_chain($2::uuid) c) "
			 "   AND s.id IS DISTINCT FROM (SELECT f.id FROM backup_offline.backup_snapshot f "
			 "                               WHERE f.configuration_id = $1::uuid AND f.backup_type = 'FULL' "
			 "                                 AND f.status = 'COMPLETED' ORDER BY f.completed_at DESC LIMIT 1)",
			 2, args, true, 0);
	for (i = 0; i < SPI_processed; i++)
		bo_index_remove(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
}

static void
complete_snapshot(BoBackupJob *job)
{
	const char *args[9];
	int64		ms = (GetCurrentTimestamp() - job->started_at) / 1000;

	args[0] = job->snapshot_id;
	args[1] = job->manifest;
	args[2] = job->manifest_checksum;
	args[3] = job->kek_id;
	args[4] = timestamptz_to_str(job->snapshot_time);
	args[5] = psprintf("{\"xmin\": %u, \"xmax\": %u, \"lsn\": \"%s\", \"changeLsn\": %s}",
					   job->xmin, job->xmax, lsn_string(job->snapshot_lsn),
					   XLogRecPtrIsInvalid(job->change_lsn) ? "null" :
					   psprintf("\"%s\"", lsn_string(job->change_lsn)));
	args[6] = psprintf(INT64_FORMAT, ms);
	args[7] = psprintf(UINT64_FORMAT, job->manifest_stored);
	args[8] = job->configuration_id;
	bo_spi_exec("WITH m AS (SELECT $2::jsonb AS j) "
			 "UPDATE backup_offline.backup_snapshot s "
			 "   SET status = 'COMPLETED', manifest = m.j, checksum = $3, key_id = $4, "
			 "       snapshot_time = $5::timestamptz, consistency = $6::jsonb, completed_at = now(), "
			 "       data_metrics = (m.j->'totals') || jsonb_build_object("
			 "           'durationMs', $7::bigint, 'manifestBytes', $8::bigint, "
			 "           'storedBytes', (m.j->'totals'->>'storedBytes')::bigint + $8::bigint) "
			 "  FROM m WHERE s.id = $1::uuid", 8, args, false, 0);
	bo_spi_exec("UPDATE backup_offline.backup_configuration "
			 "   SET last_backup_at = now(), consecutive_failures = 0 WHERE id = $1::uuid",
			 1, &args[8], false, 0);
}

static void
prune_row_indexes_cb(void *arg)
{
	prune_row_indexes((BoBackupJob *) arg);
}

/* after the snapshot committed: trouble here is only logged */
static void
prune_after_commit(BoBackupJob *job)
{
	char	   *error = bo_try_subtransaction(prune_row_indexes_cb, job);

	if (error != NULL)
		ereport(WARNING,
				(errmsg("backup_offline: could not prune row indexes after snapshot %s: %s",
						job->snapshot_number, error)));
}

/* what failure leaves behind, run in a fresh transaction */
typedef struct BoFailure
{
	BoBackupJob *job;
	ErrorData  *edata;
	bool		cancelled;
	char	   *removal;
} BoFailure;

static BoFailure *current_failure;

static void
record_failure(BoBackupJob *job)
{
	BoFailure  *f = current_failure;
	const char *args[6];
	char	   *status = f->cancelled ? "CANCELLED" : "FAILED";
	StringInfoData err;
	BoObjectDeletion del;
	char	   *error;

	bo_index_remove(job->snapshot_id);
	/* storage trouble must not keep the row from failing */
	del.storage_json = job->storage_json;
	del.prefix = job->prefix;
	error = bo_try_subtransaction(delete_objects_cb, &del);
	f->removal = error ? psprintf("objects could not be removed: %s", error)
		: psprintf("%d objects removed", del.removed);

	initStringInfo(&err);
	appendStringInfoChar(&err, '{');
	bo_json_add_text(&err, "sqlstate", unpack_sql_state(f->edata->sqlerrcode));
	bo_json_add_text(&err, "message", f->edata->message);
	bo_json_add_text(&err, "detail", f->edata->detail);
	bo_json_add_text(&err, "hint", f->edata->hint);
	bo_json_add_text(&err, "cleanup", f->removal);
	appendStringInfoChar(&err, '}');

	args[0] = job->snapshot_id;
	args[1] = status;
	args[2] = f->edata->message;
	args[3] = err.data;
	bo_spi_exec("UPDATE backup_offline.backup_snapshot "
			 "   SET status = $2::backup_offline.snapshot_status, status_reason = $3, error = $4::jsonb, "
			 "       completed_at = now() WHERE id = $1::uuid", 4, args, false, 0);
	/* a backup that does not finish in time fails its configuration; a cancel does not */
	if (!f->cancelled || job->timed_out)
		count_failure(job->configuration_id);
}

/* run fn(job) in its own transaction with SPI and a snapshot */
static void
run_in_transaction(void (*fn) (BoBackupJob *), BoBackupJob *job)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	fn(job);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

static void
slot_result(BoJobSlot *slot, const char *status, int sqlstate, const char *message)
{
	BoJobSlot  *my = bo_job_my_slot();

	(void) slot;
	strlcpy(my->result_status, status, sizeof(my->result_status));
	my->result_sqlstate = sqlstate;
	strlcpy(my->result_message, message ? message : "", sizeof(my->result_message));
}

/*
 * The job: run by the job worker for its slot.
 */
void
bo_backup_run(BoJobSlot *slot)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "backup job", ALLOCSET_DEFAULT_SIZES);
	BoBackupJob *job = MemoryContextAllocZero(cxt, sizeof(BoBackupJob));
	volatile bool created = false;

	job->slot = slot;
	job->cxt = cxt;
	job->configuration_id = MemoryContextStrdup(cxt, DatumGetCString(DirectFunctionCall1(uuid_out,
																						 UUIDPGetDatum(&slot->configuration_id))));
	job->started_at = GetCurrentTimestamp();

	PG_TRY();
	{
		run_in_transaction(create_snapshot, job);
		created = true;
		bo_job_publish_snapshot(DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(job->snapshot_id))),
								job->snapshot_number, job->backup_type);
		pgstat_report_activity(STATE_RUNNING, psprintf("backup %s of \"%s\"", job->snapshot_number,
														 job->configuration_name));

		/* archive options from the configuration */
		bo_archive_options_init(&job->options);
		if (!job->compressed)
			job->options.compression = BO_COMPRESSION_NONE;
		job->options.cipher = job->encrypted ? BO_CIPHER_AUTO : BO_CIPHER_NONE;
		if (!bo_digest_parse(job->checksum_algorithm, &job->options.digest))
			elog(ERROR, "unknown checksum algorithm \"%s\"", job->checksum_algorithm);
		if (job->encrypted && (bo_default_key_id == NULL || bo_default_key_id[0] == '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("configuration \"%s\" encrypts its backups, but backup_offline.default_key_id is not set",
							job->configuration_name),
					 errhint("Create a key file in backup_offline.key_directory and set backup_offline.default_key_id to its id.")));

		run_in_transaction(start_scan, job);

		/* the scan: one repeatable-read, read-only transaction */
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		XactIsoLevel = XACT_REPEATABLE_READ;
		XactReadOnly = true;
		scan_tables(job);
		CommitTransactionCommand();

		set_phase(job, "completing");
		run_in_transaction(complete_snapshot, job);
		slot_result(slot, "COMPLETED", 0, NULL);
		run_in_transaction(prune_after_commit, job);
	}
	PG_CATCH();
	{
		BoFailure	f;
		MemoryContext ecxt = MemoryContextSwitchTo(cxt);

		f.job = job;
		f.edata = CopyErrorData();
		/* a cancel; the server shutting down (SIGTERM) is a failure */
		f.cancelled = f.edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !bo_job_terminating();
		if (bo_job_terminating())
		{
			f.edata->sqlerrcode = ERRCODE_ADMIN_SHUTDOWN;
			f.edata->message = "the job worker was terminated (server shutdown or pg_terminate_backend)";
		}
		else if (f.cancelled && bo_job_cancel_reason() != NULL)
			/* the SIGINT of a cancel interrupts with PostgreSQL's own words: say who asked */
			f.edata->message = psprintf("backup cancelled: %s", bo_job_cancel_reason());
		f.removal = NULL;
		FlushErrorState();
		MemoryContextSwitchTo(ecxt);
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);

		ereport(LOG,
				(errmsg("backup_offline: backup %s of configuration %s %s: %s",
						job->snapshot_number ? job->snapshot_number : "(not started)",
						job->configuration_id, f.cancelled ? "cancelled" : "failed", f.edata->message)));
		if (created)
		{
			current_failure = &f;
			run_in_transaction(record_failure, job);
			current_failure = NULL;
		}
		slot_result(slot, f.cancelled ? "CANCELLED" : "FAILED", f.edata->sqlerrcode, f.edata->message);
	}
	PG_END_TRY();
}
