/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The scheduler: a background worker that starts due backups.
 *
 * Registered when backup_offline is in shared_preload_libraries, it runs
 * in the database named by backup_offline.database (like pg_cron, one
 * database per cluster).  Every backup_offline.scheduler_interval seconds,
 * starting at once, it fails the snapshots a crash, a restart or a dead
 * worker left running (bo_backup_recover), then looks for ACTIVE
 * configurations whose next_backup_at has passed and which are not
 * running, and for each:
 *
 *	- inside its backup window (schedule.startTime .. endTime, see
 *	  in_backup_window): starts a job worker (job.c) with the
 *	  configuration's own type, as run_backup does;
 *	- outside it (the server was down, or the window closed while the run
 *	  waited for a slot): skips the run, with a LOG line;
 *
 * and advances next_backup_at to the next run after now, so a missed
 * period is never run twice.  When every job slot is busy it leaves the
 * remaining configurations due and tries again at the next round; a start
 * that fails (no background worker free) is logged, and that
 * configuration stays due.
 * CONTINUOUS configurations are not snapshot schedules and are skipped.
 *
 * IDENTIFICATION
 *		src/schedule/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/acl.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"

PGDLLEXPORT void bo_launcher_main(Datum main_arg);

/* register the scheduler (from _PG_init, while preloading) */
void
bo_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "backup_offline", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bo_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "backup_offline scheduler", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "backup_offline scheduler", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* the extension's owner, or InvalidOid when it is not installed here */
static Oid
extension_owner(void)
{
	Oid			owner = InvalidOid;

	if (!OidIsValid(get_extension_oid("backup_offline", true)))
		return InvalidOid;
	if (SPI_execute("SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'backup_offline'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return owner;
}

/* one due configuration */
typedef struct BoDue
{
	Oid			owner;
	const char *owner_name;
	char	   *id;
	char	   *organization;
	char	   *name;
	bool		in_window;
	bool		no_slot;		/* out: every job slot was busy */
} BoDue;

/*
 * Advance next_backup_at, then start the job (inside the window).  Runs
 * in a subtransaction: when the start fails, the configuration stays due
 * and the others go on.
 */
static void
start_due(void *arg)
{
	BoDue	   *d = arg;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(d->id)};

	if (d->in_window && bo_job_free_slots() == 0)
	{
		d->no_slot = true;
		return;
	}
	if (SPI_execute_with_args("UPDATE backup_offline.backup_configuration c "
							  "   SET next_backup_at = backup_offline.next_run_time(c.schedule, c.timezone, now()) "
							  " WHERE c.id = $1::uuid",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not advance next_backup_at");
	if (d->in_window)
	{
		pg_uuid_t  *organization = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(d->organization)));
		int			index = bo_job_prepare(MyDatabaseId, d->owner, d->id, organization, NULL, "SCHEDULE",
										   d->owner_name, NULL, -1);

		bo_job_launch(index);
		ereport(LOG,
				(errmsg("backup_offline scheduler: started the scheduled backup of \"%s\"", d->name)));
	}
	else
		ereport(LOG,
				(errmsg("backup_offline scheduler: skipped the backup of \"%s\": outside its backup window",
						d->name)));
}

/*
 * One round: start what is due.  Runs in a transaction with SPI.
 */
static void
schedule_due(Oid owner)
{
	SPITupleTable *due;
	uint64		ndue;
	uint64		i;
	char	   *owner_name = GetUserNameFromId(owner, false);

	if (SPI_execute("SELECT c.id::text, c.organization_id::text, c.name, "
					"       backup_offline.in_backup_window(c.schedule, c.timezone, now()) "
					"  FROM backup_offline.backup_configuration c "
					" WHERE c.deleted_at IS NULL AND c.status = 'ACTIVE' "
					"   AND c.config_type <> 'CONTINUOUS' AND c.next_backup_at <= now() "
					"   AND NOT EXISTS (SELECT 1 FROM backup_offline.backup_snapshot s "
					"                    WHERE s.configuration_id = c.id "
					"                      AND s.status IN ('PENDING', 'IN_PROGRESS')) "
					" ORDER BY c.next_backup_at "
					"   FOR UPDATE OF c SKIP LOCKED", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read due backup configurations");
	due = SPI_tuptable;
	ndue = SPI_processed;

	for (i = 0; i < ndue; i++)
	{
		BoDue		d;
		char	   *in_window = SPI_getvalue(due->vals[i], due->tupdesc, 4);
		char	   *error;

		d.owner = owner;
		d.owner_name = owner_name;
		d.id = SPI_getvalue(due->vals[i], due->tupdesc, 1);
		d.organization = SPI_getvalue(due->vals[i], due->tupdesc, 2);
		d.name = SPI_getvalue(due->vals[i], due->tupdesc, 3);
		d.in_window = in_window != NULL && strcmp(in_window, "t") == 0;
		d.no_slot = false;
		error = bo_try_subtransaction(start_due, &d);
		if (d.no_slot)
		{
			ereport(LOG,
					(errmsg("backup_offline scheduler: every job slot is busy; \"%s\" waits for the next round",
							d.name)));
			break;
		}
		if (error != NULL)
			ereport(LOG,
					(errmsg("backup_offline scheduler: could not start the backup of \"%s\": %s", d.name, error)));
	}
}

/*
 * Run step(arg) in a transaction of its own, with SPI connected and a
 * snapshot, as the activity what; an error is reported (the worker goes
 * on at the next round).  Returns whether it committed.
 */
static bool
in_transaction(const char *what, void (*step) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool done = false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, what);
		step(arg);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		done = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return done;
}

/* one round of backups: recovery of interrupted jobs, then what is due */
static void
backup_round(void *arg)
{
	Oid			owner = extension_owner();

	if (OidIsValid(owner))
	{
		/* at start, and every round: a job can also die without a restart */
		int			n = bo_jobs_recover();

		if (n > 0)
			ereport(LOG,
					(errmsg("backup_offline scheduler: failed %d interrupted jobs", n)));
		schedule_due(owner);
	}
}

/* one batch of the sync queue, as backup_offline.sync_worker_role; *arg: how many it processed */
static void
sync_batch(void *arg)
{
	Oid			role = get_role_oid(bo_sync_worker_role, true);
	Oid			save_userid;
	int			save_sec;

	*(int64 *) arg = 0;
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("backup_offline.sync_worker_role \"%s\" does not exist", bo_sync_worker_role)));
	if (!OidIsValid(extension_owner()))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("backup_offline.sync_worker_role is set, but extension backup_offline is not installed in database \"%s\"",
						bo_database)));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_execute("SELECT (backup_offline.process_sync_queue(500)->>'processed')::bigint "
					" WHERE EXISTS (SELECT 1 FROM backup_offline.sync_queue WHERE status IN ('PENDING', 'BLOCKED'))",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not apply the sync queue");
	if (SPI_processed > 0)
	{
		bool		isnull;

		*(int64 *) arg = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * Apply the sync queue as backup_offline.sync_worker_role, in batches of
 * 500, each its own transaction, until it is empty or 20 batches are done
 * (the backups wait no longer than that).  A batch that fails is reported
 * and retried at the next round; its operations are untouched.
 */
static void
process_sync(void)
{
	int			batch;

	if (bo_sync_worker_role == NULL || bo_sync_worker_role[0] == '\0')
		return;
	for (batch = 0; batch < 20; batch++)
	{
		int64		processed = 0;

		if (!in_transaction("applying the sync queue", sync_batch, &processed) || processed < 500)
			return;
		CHECK_FOR_INTERRUPTS();
	}
}

void
bo_launcher_main(Datum main_arg)
{

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(bo_database, NULL, 0);
	pgstat_report_appname("backup_offline scheduler");
	bo_set_job_gucs();

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		(void) in_transaction("looking for due backups", backup_round, NULL);

		process_sync();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) bo_scheduler_interval * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
