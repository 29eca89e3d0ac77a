/*-------------------------------------------------------------------------
 *
 * job.c
 *		Backup jobs: slots in shared memory, the dynamic job worker, and the
 *		SQL functions run_backup, cancel_backup and backup_progress.
 *
 * Each running backup owns one slot of a small array in shared memory
 * (backup_offline.max_backup_jobs, allocated when the library is in
 * shared_preload_libraries).  run_backup takes a slot, fills in what to
 * run, and starts a dynamic background worker in the current database,
 * running as the extension's owner; the worker creates the snapshot row,
 * publishes its id in the slot and runs the backup (snapshot.c).  The
 * slot carries progress for the backup_progress view, a cancel flag, and
 * the result.
 *
 * Who frees a slot: the backend waiting in run_backup, after reading the
 * result; or, when nobody waits (run_backup without wait, the scheduler,
 * a waiter that was interrupted), the worker itself when it finishes.
 * Both decide under the lock, so exactly one of them does.  A crash resets
 * shared memory with everything else; start-up recovery (snapshot.c) then
 * fails the snapshots that were running.
 *
 * IDENTIFICATION
 *		src/backup/job.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "backup_offline.h"
#include "backup/backup.h"

PG_FUNCTION_INFO_V1(bo_run_backup_sql);
PG_FUNCTION_INFO_V1(bo_cancel_backup_sql);
PG_FUNCTION_INFO_V1(bo_backup_progress_sql);

PGDLLEXPORT void bo_backup_worker_main(Datum main_arg);

typedef struct BoJobShared
{
	LWLock	   *lock;
	uint64		next_generation;
	int			nslots;
	BoJobSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} BoJobShared;

static BoJobShared *job_shared = NULL;

/* in a job worker: its slot */
static BoJobSlot *my_slot = NULL;
static uint64 my_generation = 0;
static volatile sig_atomic_t got_sigterm = false;

static Size
job_shmem_size(void)
{
	return add_size(offsetof(BoJobShared, slots),
					mul_size(sizeof(BoJobSlot), bo_max_backup_jobs));
}

/* from shmem_request_hook */
void
bo_job_shmem_request(void)
{
	RequestAddinShmemSpace(job_shmem_size());
	RequestNamedLWLockTranche("backup_offline_jobs", 1);
}

/* from shmem_startup_hook */
void
bo_job_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	job_shared = ShmemInitStruct("backup_offline jobs", job_shmem_size(), &found);
	if (!found)
	{
		memset(job_shared, 0, job_shmem_size());
		job_shared->lock = &(GetNamedLWLockTranche("backup_offline_jobs"))->lock;
		job_shared->nslots = bo_max_backup_jobs;
		job_shared->next_generation = 1;
	}
	LWLockRelease(AddinShmemInitLock);
}

bool
bo_job_available(void)
{
	return job_shared != NULL;
}

/* how many job slots are free now */
int
bo_job_free_slots(void)
{
	int			i;
	int			n = 0;

	if (job_shared == NULL)
		return 0;
	LWLockAcquire(job_shared->lock, LW_SHARED);
	for (i = 0; i < job_shared->nslots; i++)
		if (job_shared->slots[i].state == BO_JOB_FREE)
			n++;
	LWLockRelease(job_shared->lock);
	return n;
}

void
bo_job_require(const char *what)
{
	if (!bo_job_available())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs backup_offline in shared_preload_libraries", what),
				 errdetail("Backup jobs run in background workers that share memory with the server."),
				 errhint("Add backup_offline to shared_preload_libraries and restart the server.")));
}

/* ---------------------------------------------------------------------
 * Inside the job worker
 * ---------------------------------------------------------------------
 */
BoJobSlot *
bo_job_my_slot(void)
{
	return my_slot;
}

static void
wake_requester(BoJobSlot *slot)
{
	if (slot->requester_procno >= 0)
		SetLatch(&ProcGlobal->allProcs[slot->requester_procno].procLatch);
}

void
bo_job_publish_snapshot(const pg_uuid_t *id, const char *number, const char *backup_type)
{
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	my_slot->snapshot_id = *id;
	strlcpy(my_slot->snapshot_number, number, sizeof(my_slot->snapshot_number));
	strlcpy(my_slot->backup_type, backup_type, sizeof(my_slot->backup_type));
	my_slot->have_snapshot = true;
	wake_requester(my_slot);
	LWLockRelease(job_shared->lock);
}

void
bo_job_report(const BoJobProgress *progress)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	my_slot->progress = *progress;
	LWLockRelease(job_shared->lock);
}

/*
 * Raise an ERROR when the job was asked to stop (cancel_backup, the
 * waiting caller was cancelled, or the server shuts down); called in
 * every long loop besides CHECK_FOR_INTERRUPTS.
 */
void
bo_job_check_cancel(void)
{
	char		reason[BO_JOB_TEXT];
	bool		cancel;

	CHECK_FOR_INTERRUPTS();
	if (my_slot == NULL)
		return;
	if (got_sigterm)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("backup stopped because the job worker was asked to terminate")));
	LWLockAcquire(job_shared->lock, LW_SHARED);
	cancel = my_slot->cancel_requested;
	strlcpy(reason, my_slot->cancel_reason, sizeof(reason));
	LWLockRelease(job_shared->lock);
	if (cancel)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("backup cancelled: %s", reason)));
}

/* is a job running the snapshot with this id (any state but DONE)? */
bool
bo_job_terminating(void)
{
	return got_sigterm;
}

/* why this job was asked to stop (cancel_backup, cancel_restore, its caller), or NULL */
char *
bo_job_cancel_reason(void)
{
	char	   *reason = NULL;

	if (my_slot == NULL)
		return NULL;
	LWLockAcquire(job_shared->lock, LW_SHARED);
	if (my_slot->cancel_requested)
		reason = pstrdup(my_slot->cancel_reason);
	LWLockRelease(job_shared->lock);
	return reason;
}

/*
 * The job claims its snapshot id before it inserts the row, so that no
 * recovery running meanwhile takes the new row for an orphan.
 */
void
bo_job_claim_snapshot(const pg_uuid_t *id)
{
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	my_slot->snapshot_id = *id;
	my_slot->claimed = true;
	LWLockRelease(job_shared->lock);
}

/*
 * Is a job running the backup whose snapshot id (claimed, so perhaps not
 * yet inserted) or the restore whose id this is?
 */
bool
bo_job_running(BoJobKind kind, const pg_uuid_t *id)
{
	int			i;
	bool		running = false;

	if (job_shared == NULL)
		return false;
	LWLockAcquire(job_shared->lock, LW_SHARED);
	for (i = 0; i < job_shared->nslots; i++)
	{
		BoJobSlot  *s = &job_shared->slots[i];

		if ((s->state == BO_JOB_STARTING || s->state == BO_JOB_RUNNING) && s->kind == kind &&
			(kind == BO_JOB_RESTORE || s->claimed) &&
			memcmp(kind == BO_JOB_RESTORE ? &s->object_id : &s->snapshot_id, id, sizeof(pg_uuid_t)) == 0)
			running = true;
	}
	LWLockRelease(job_shared->lock);
	return running;
}

/* recovery of every kind of job (start-up, scheduler rounds, each backup) */
int
bo_jobs_recover(void)
{
	return bo_backup_recover() + bo_restore_recover();
}

static void
job_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	/* also interrupt waits for locks, SPI and I/O: the backup then fails */
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Mark the slot done (unless bo_backup_run did) and free it when nobody
 * waits for it.  Runs at worker exit, whatever the way out.
 */
static void
job_worker_exit(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	/* the slot is still this job's: only this worker marks it done */
	if (my_slot->generation == my_generation && my_slot->state == BO_JOB_RUNNING)
	{
		if (my_slot->result_status[0] == '\0')
		{
			strlcpy(my_slot->result_status, "FAILED", sizeof(my_slot->result_status));
			my_slot->result_sqlstate = ERRCODE_INTERNAL_ERROR;
			strlcpy(my_slot->result_message, "the job worker exited before the backup finished",
					sizeof(my_slot->result_message));
		}
		my_slot->state = BO_JOB_DONE;
		if (my_slot->requester_procno < 0)
			my_slot->state = BO_JOB_FREE;
		else
			wake_requester(my_slot);
	}
	LWLockRelease(job_shared->lock);
	my_slot = NULL;
}

void
bo_backup_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	uint64		generation;
	BoJobSlot  *slot;

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	pqsignal(SIGTERM, job_sigterm);
	BackgroundWorkerUnblockSignals();

	if (job_shared == NULL || index < 0 || index >= job_shared->nslots)
		proc_exit(1);
	slot = &job_shared->slots[index];
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	if (slot->generation != generation || slot->state != BO_JOB_STARTING)
	{
		LWLockRelease(job_shared->lock);
		proc_exit(1);
	}
	slot->state = BO_JOB_RUNNING;
	slot->worker_pid = MyProcPid;
	slot->started_at = GetCurrentTimestamp();
	LWLockRelease(job_shared->lock);
	my_slot = slot;
	my_generation = generation;
	before_shmem_exit(job_worker_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(slot->database, slot->run_as, 0);
	pgstat_report_appname("backup_offline job");
	bo_set_job_gucs();
	if (slot->compression_workers >= 0)
	{
		char		value[16];

		snprintf(value, sizeof(value), "%d", slot->compression_workers);
		SetConfigOption("backup_offline.compression_workers", value, PGC_USERSET, PGC_S_SESSION);
	}

	if (slot->kind == BO_JOB_RESTORE)
		bo_restore_run(slot);
	else
		bo_backup_run(slot);
	/* job_worker_exit marks the slot done */
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * run_backup
 * ---------------------------------------------------------------------
 */

/*
 * Look at the configuration as the caller (row-level security applies):
 * it must be visible, not deleted, ACTIVE and not already running.
 */
static void
check_configuration(const char *config_id, pg_uuid_t *organization)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	bool		isnull;
	char	   *name;
	char	   *status;
	bool		deleted;
	char	   *running;
	char	   *running_id;

	args[0] = DirectFunctionCall1(uuid_in, CStringGetDatum(config_id));
	SPI_connect();
	if (SPI_execute_with_args("SELECT c.name, c.status::text, c.deleted_at IS NOT NULL, c.organization_id, "
							  "       s.snapshot_number, s.id::text "
							  "  FROM backup_offline.backup_configuration c "
							  "  LEFT JOIN backup_offline.backup_snapshot s "
							  "    ON s.configuration_id = c.id AND s.status IN ('PENDING', 'IN_PROGRESS') "
							  " WHERE c.id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read backup configuration");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("backup configuration %s does not exist", config_id),
				 errhint("Check the id; configurations of other organizations are not visible.")));
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	deleted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	*organization = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	running = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5);
	running_id = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6);
	/* a row no job runs (a crash) is failed by the next job's recovery: not in the way */
	if (running_id != NULL &&
		!bo_job_running(BO_JOB_BACKUP, DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(running_id)))))
		running = NULL;
	if (deleted)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup configuration \"%s\" is deleted", name),
				 errhint("Deleted configurations are kept for the record and do not run.")));
	if (strcmp(status, "ACTIVE") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup configuration \"%s\" is %s", name, status),
				 errhint("Only ACTIVE configurations run; reactivate it with set_backup_configuration_status(id, 'ACTIVE').")));
	if (running != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("backup configuration \"%s\" is already running (snapshot %s)", name, running),
				 errhint("Wait for it to finish, or stop it with cancel_backup(snapshot_id).")));
	SPI_finish();
}

/* take a free slot; ERROR when all are busy */
static int
take_slot(void)
{
	int			i;

	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < job_shared->nslots; i++)
	{
		BoJobSlot  *s = &job_shared->slots[i];

		if (s->state == BO_JOB_FREE)
		{
			memset(s, 0, sizeof(*s));
			s->state = BO_JOB_STARTING;
			s->generation = job_shared->next_generation++;
			s->requester_procno = -1;
			LWLockRelease(job_shared->lock);
			return i;
		}
	}
	LWLockRelease(job_shared->lock);
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("too many backup jobs are running"),
			 errdetail("All %d job slots are in use.", job_shared->nslots),
			 errhint("Wait for a backup to finish, or raise backup_offline.max_backup_jobs (needs a restart).")));
	return -1;					/* keep compiler quiet */
}

static void
free_slot(int index)
{
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	job_shared->slots[index].state = BO_JOB_FREE;
	LWLockRelease(job_shared->lock);
}

/*
 * Start a job worker for the filled slot; the slot is freed again when
 * that fails.
 */
static void
start_worker(int index)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BoJobSlot  *slot = &job_shared->slots[index];
	pid_t		pid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "backup_offline", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bo_backup_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "backup_offline job %d", index);
	strlcpy(worker.bgw_type, "backup_offline job", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(index);
	memcpy(worker.bgw_extra, &slot->generation, sizeof(slot->generation));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		free_slot(index);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a backup job worker"),
				 errhint("Raise max_worker_processes (needs a restart); backup_offline needs one worker per running backup.")));
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
	{
		bool		ran;

		/* it may have run and finished already */
		LWLockAcquire(job_shared->lock, LW_SHARED);
		ran = slot->state == BO_JOB_DONE || slot->state == BO_JOB_FREE;
		LWLockRelease(job_shared->lock);
		if (ran)
			return;
		free_slot(index);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the backup job worker could not start"),
				 errhint("See the server log.")));
	}
}

/*
 * Take and fill a slot for a backup job (bo_job_launch starts it): used by
 * run_backup and the scheduler.  Returns the slot index.  requester_procno: the pgprocno of the backend that will wait
 * for the result and free the slot, or -1 (the worker frees it).
 */
int
bo_job_prepare(Oid database, Oid run_as, const char *configuration_id,
			 const pg_uuid_t *organization, const char *requested_type,
			 const char *trigger, const char *requested_by, const char *requested_by_user,
			 int requester_procno)
{
	int			index;
	BoJobSlot  *slot;

	index = take_slot();
	slot = &job_shared->slots[index];
	slot->database = database;
	slot->run_as = run_as;
	slot->configuration_id = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(configuration_id)));
	slot->organization_id = *organization;
	strlcpy(slot->requested_type, requested_type ? requested_type : "", sizeof(slot->requested_type));
	strlcpy(slot->trigger, trigger, sizeof(slot->trigger));
	strlcpy(slot->requested_by, requested_by, sizeof(slot->requested_by));
	strlcpy(slot->requested_by_user, requested_by_user ? requested_by_user : "",
			sizeof(slot->requested_by_user));
	slot->requester_procno = requester_procno;
	/* a waiting caller's compression_workers applies to its backup */
	slot->compression_workers = requester_procno >= 0 ? bo_compression_workers : -1;
	return index;
}

/* start the job worker of a prepared slot (freed again when that fails) */
void
bo_job_launch(int index)
{
	start_worker(index);
}

/*
 * The waiting backend lets go of a slot: frees it when the job is done,
 * else leaves it to the worker; cancel: stop the backup too.
 */
static void
release_slot(int index, bool cancel)
{
	BoJobSlot  *slot = &job_shared->slots[index];

	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	if (slot->requester_procno == MyProc->pgprocno)
	{
		if (slot->state == BO_JOB_DONE)
			slot->state = BO_JOB_FREE;
		else
		{
			slot->requester_procno = -1;
			if (cancel)
			{
				slot->cancel_requested = true;
				strlcpy(slot->cancel_reason, "the waiting run_backup call was interrupted",
						sizeof(slot->cancel_reason));
			}
		}
	}
	LWLockRelease(job_shared->lock);
}

/* an error or exit while waiting: the interrupted caller takes its backup with it */
static void
release_slot_on_error(int code, Datum arg)
{
	release_slot(DatumGetInt32(arg), true);
}

/* the slot of a prepared job, to fill in before bo_job_run */
BoJobSlot *
bo_job_slot(int index)
{
	return &job_shared->slots[index];
}

/*
 * Start a prepared job (its slot's requester is this backend) and wait:
 * with wait, until it is done (the slot freed, its last state in
 * *result); without, until the worker has published its object (or is
 * done).  An interrupt while waiting cancels the job.  observe, when
 * given, sees the slot each time the caller wakes (for progress reports).
 */
void
bo_job_run(int index, bool wait, BoJobSlot *result, BoJobObserver observe, void *arg)
{
	BoJobSlot  *slot = &job_shared->slots[index];
	BoJobSlot	copy;

	PG_ENSURE_ERROR_CLEANUP(release_slot_on_error, Int32GetDatum(index));
	{
		bo_job_launch(index);
		for (;;)
		{
			LWLockAcquire(job_shared->lock, LW_SHARED);
			copy = *slot;
			LWLockRelease(job_shared->lock);
			if (observe != NULL)
				observe(&copy, wait, arg);
			if (copy.state == BO_JOB_DONE || (!wait && copy.have_snapshot))
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(release_slot_on_error, Int32GetDatum(index));
	if (copy.state == BO_JOB_DONE)
		free_slot(index);
	else
		release_slot(index, false);
	*result = copy;
}

static const char *
format_bytes(int64 bytes)
{
	if (bytes >= INT64CONST(10) * 1024 * 1024 * 1024)
		return psprintf("%lld GB", (long long) (bytes / (1024 * 1024 * 1024)));
	if (bytes >= INT64CONST(10) * 1024 * 1024)
		return psprintf("%lld MB", (long long) (bytes / (1024 * 1024)));
	if (bytes >= INT64CONST(10) * 1024)
		return psprintf("%lld kB", (long long) (bytes / 1024));
	return psprintf("%lld bytes", (long long) bytes);
}

/* what run_backup has told its caller so far */
typedef struct BoProgressReport
{
	bool		told_type;
	char		last_table[2 * NAMEDATALEN + 2];
	TimestampTz last_notice;
} BoProgressReport;

/*
 * run_backup's observer: a NOTICE when the backup runs as another type
 * than asked, and (with wait) one per table and every 10 s.
 */
static void
report_backup_progress(const BoJobSlot *copy, bool wait, void *arg)
{
	BoProgressReport *r = arg;
	TimestampTz now = GetCurrentTimestamp();

	if (!copy->have_snapshot)
		return;
	if (!r->told_type && copy->requested_type[0] != '\0' &&
		strcmp(copy->requested_type, copy->backup_type) != 0)
	{
		ereport(NOTICE,
				(errmsg("backup %s runs as %s: the configuration has no restorable FULL backup for a %s",
						copy->snapshot_number, copy->backup_type, copy->requested_type)));
		r->told_type = true;
	}
	if (!wait || copy->state == BO_JOB_DONE)
		return;
	if (strcmp(copy->progress.current_table, r->last_table) != 0 ||
		TimestampDifferenceExceeds(r->last_notice, now, 10000))
	{
		if (copy->progress.current_table[0] != '\0')
			ereport(NOTICE,
					(errmsg("backup %s: %s, table %s (%d of %d), %lld rows, %s of %s scanned",
							copy->snapshot_number, copy->progress.phase,
							copy->progress.current_table, copy->progress.tables_done + 1,
							copy->progress.tables_total, (long long) copy->progress.rows_done,
							format_bytes(copy->progress.bytes_done),
							format_bytes(copy->progress.bytes_total))));
		strlcpy(r->last_table, copy->progress.current_table, sizeof(r->last_table));
		r->last_notice = now;
	}
}

Datum
bo_run_backup_sql(PG_FUNCTION_ARGS)
{
	char	   *config_id;
	char	   *requested_type = NULL;
	bool		wait;
	pg_uuid_t	organization;
	int			index;
	pg_uuid_t  *result = palloc(sizeof(pg_uuid_t));
	BoJobSlot	copy;
	BoProgressReport reported;

	bo_job_require("run_backup");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("configuration_id is required"),
				 errhint("Pass the id of a backup configuration.")));
	config_id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	if (!PG_ARGISNULL(1))
	{
		requested_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
		if (strcmp(requested_type, "FULL") != 0 && strcmp(requested_type, "INCREMENTAL") != 0 &&
			strcmp(requested_type, "DIFFERENTIAL") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid backup_type: \"%s\"", requested_type),
					 errhint("Use FULL, INCREMENTAL or DIFFERENTIAL, or NULL for the configuration's own type.")));
	}
	wait = PG_ARGISNULL(2) ? true : PG_GETARG_BOOL(2);

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("run_backup cannot run on a standby"),
				 errhint("Back up on the primary: a backup writes its snapshot rows.")));
	check_configuration(config_id, &organization);
	/*
	 * The job cannot see this transaction's changes, and would wait for its
	 * locks: a caller that has written must commit first (or not wait).
	 */
	if (wait && TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("run_backup with wait cannot run in a transaction that has written to the database"),
				 errdetail("The backup runs in another session; it would wait for this transaction's locks, "
						   "and this transaction waits for the backup."),
				 errhint("Commit first, or call run_backup(id, type, wait => false).")));

	index = bo_job_prepare(MyDatabaseId, bo_function_owner(fcinfo->flinfo->fn_oid), config_id,
						   &organization, requested_type, "MANUAL",
						   GetUserNameFromId(GetUserId(), false),
						   bo_user_id && bo_user_id[0] ? bo_user_id : NULL, MyProc->pgprocno);
	memset(&reported, 0, sizeof(reported));
	bo_job_run(index, wait, &copy, report_backup_progress, &reported);
	if (copy.state != BO_JOB_DONE)
	{
		*result = copy.snapshot_id;
		PG_RETURN_UUID_P(result);
	}

	/* done: the slot is freed */
	if (strcmp(copy.result_status, "COMPLETED") != 0)
	{
		if (copy.have_snapshot)
			ereport(ERROR,
					(errcode(copy.result_sqlstate ? copy.result_sqlstate : ERRCODE_INTERNAL_ERROR),
					 errmsg("backup %s %s: %s", copy.snapshot_number,
							strcmp(copy.result_status, "CANCELLED") == 0 ? "was cancelled" : "failed",
							copy.result_message),
					 errdetail("Snapshot %s is %s; its objects were removed.",
							   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&copy.snapshot_id))),
							   copy.result_status)));
		ereport(ERROR,
				(errcode(copy.result_sqlstate ? copy.result_sqlstate : ERRCODE_INTERNAL_ERROR),
				 errmsg("backup could not start: %s", copy.result_message)));
	}
	if (wait)
		ereport(NOTICE,
				(errmsg("backup %s completed: %s, %d tables, %lld rows, %s stored",
						copy.snapshot_number, copy.backup_type, copy.progress.tables_total,
						(long long) copy.progress.rows_done, format_bytes(copy.progress.stored_bytes))));
	*result = copy.snapshot_id;
	PG_RETURN_UUID_P(result);
}

/* ---------------------------------------------------------------------
 * cancel_backup and backup_progress
 * ---------------------------------------------------------------------
 */
Datum
bo_cancel_backup_sql(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *id = PG_GETARG_UUID_P(0);
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1] = {UUIDPGetDatum(id)};
	bool		found;

	bo_job_require("cancel_backup");
	/* the caller must see the snapshot (row-level security) */
	SPI_connect();
	if (SPI_execute_with_args("SELECT 1 FROM backup_offline.backup_snapshot WHERE id = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read snapshot");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("snapshot %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
				 errhint("Check the id; snapshots of other organizations are not visible.")));
	SPI_finish();

	found = bo_job_cancel(BO_JOB_BACKUP, id,
						  psprintf("requested by %s", GetUserNameFromId(GetUserId(), false)));
	PG_RETURN_BOOL(found);
}

/*
 * Ask the running job of that kind for id (a backup's snapshot, a restore)
 * to stop; false when none runs it.
 */
bool
bo_job_cancel(BoJobKind kind, const pg_uuid_t *id, const char *reason)
{
	bool		found = false;
	int			i;

	if (job_shared == NULL)
		return false;
	LWLockAcquire(job_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < job_shared->nslots; i++)
	{
		BoJobSlot  *s = &job_shared->slots[i];
		const pg_uuid_t *its = kind == BO_JOB_RESTORE ? &s->object_id : &s->snapshot_id;

		if (s->state == BO_JOB_RUNNING && s->kind == kind && (kind == BO_JOB_RESTORE || s->have_snapshot) &&
			memcmp(its, id, sizeof(pg_uuid_t)) == 0)
		{
			s->cancel_requested = true;
			strlcpy(s->cancel_reason, reason, sizeof(s->cancel_reason));
			/* SIGINT cancels what the worker does now (a COPY, a lock wait) */
			if (s->worker_pid != 0)
				(void) kill(s->worker_pid, SIGINT);
			found = true;
		}
	}
	LWLockRelease(job_shared->lock);
	return found;
}

Datum
bo_backup_progress_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	bool		all = superuser();
	Datum	   *orgs = NULL;
	int			norgs = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (job_shared == NULL)
		return (Datum) 0;

	/* only the caller's organizations, as row-level security would show them */
	if (!all)
	{
		bool		isnull;
		Datum		d;

		SPI_connect();
		if (SPI_execute("SELECT backup_offline.sees_all_organizations(), "
						"       backup_offline.current_organization_ids()", true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the caller's organizations");
		all = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) && !isnull;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

			deconstruct_array(DatumGetArrayTypePCopy(d), UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
							  &orgs, NULL, &norgs);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}

	for (i = 0; i < job_shared->nslots; i++)
	{
		BoJobSlot	s;
		Datum		values[14];
		bool		nulls[14] = {0};

		LWLockAcquire(job_shared->lock, LW_SHARED);
		s = job_shared->slots[i];
		LWLockRelease(job_shared->lock);
		if (s.state != BO_JOB_RUNNING || !s.have_snapshot || s.kind != BO_JOB_BACKUP)
			continue;
		if (!all)
		{
			int			k;
			bool		mine = false;

			for (k = 0; k < norgs && !mine; k++)
				mine = memcmp(DatumGetUUIDP(orgs[k]), &s.organization_id, sizeof(pg_uuid_t)) == 0;
			if (!mine)
				continue;
		}

		values[0] = Int32GetDatum(s.worker_pid);
		values[1] = UUIDPGetDatum(&s.snapshot_id);
		values[2] = UUIDPGetDatum(&s.configuration_id);
		values[3] = UUIDPGetDatum(&s.organization_id);
		values[4] = CStringGetTextDatum(s.backup_type);
		values[5] = CStringGetTextDatum(s.progress.phase);
		if (s.progress.current_table[0] != '\0')
			values[6] = CStringGetTextDatum(s.progress.current_table);
		else
			nulls[6] = true;
		values[7] = Int32GetDatum(s.progress.tables_done);
		values[8] = Int32GetDatum(s.progress.tables_total);
		values[9] = Int64GetDatum(s.progress.rows_done);
		values[10] = Int64GetDatum(s.progress.bytes_done);
		values[11] = Int64GetDatum(s.progress.bytes_total);
		values[12] = Int64GetDatum(s.progress.stored_bytes);
		values[13] = TimestampTzGetDatum(s.started_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
