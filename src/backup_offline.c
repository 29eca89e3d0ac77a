/*-------------------------------------------------------------------------
 *
 * backup_offline.c
 *		Library start-up: settings under the reserved "backup_offline."
 *		prefix, and whether the library was preloaded.
 *
 * The library is meant to be listed in shared_preload_libraries, where
 * later parts register the scheduler launcher, job workers and the
 * continuous-backup worker.  Nothing in this release needs the postmaster's
 * help: loaded into a backend on first use, every SQL function and
 * session setting works; backup_offline.database, which only configures
 * workers, is then left undefined.
 *
 * Settings that name server files (key directory, allowed paths) are
 * superuser-only and hidden from ordinary roles.
 *
 * IDENTIFICATION
 *		src/backup_offline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/uuid.h"
#include "utils/varlena.h"
#include "storage/ipc.h"

#include "backup/backup.h"

#include "backup_offline.h"

PG_MODULE_MAGIC;

/* GUC variables */
char	   *bo_database = NULL;
char	   *bo_key_directory = NULL;
char	   *bo_allowed_paths = NULL;
int			bo_scheduler_interval = 60;
char	   *bo_organization_id = NULL;
char	   *bo_user_id = NULL;
char	   *bo_default_key_id = NULL;
int			bo_compression_workers = 0;
int			bo_max_backup_jobs = 4;
int			bo_part_size = 1024;
int			bo_suspend_after_failures = 3;
int			bo_sync_max_clock_skew = 300;
int			bo_sync_priority_aging = 60;
char	   *bo_sync_worker_role = NULL;

bool		bo_preloaded = false;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
bo_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	bo_job_shmem_request();
}

static void
bo_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	bo_job_shmem_startup();
}

static bool check_allowed_paths(char **newval, void **extra, GucSource source);
static bool check_uuid_setting(char **newval, void **extra, GucSource source);
static bool check_directory_setting(char **newval, void **extra, GucSource source);
static bool check_key_id_setting(char **newval, void **extra, GucSource source);

/*
 * Module load: define the settings, reserve the prefix.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	bo_preloaded = process_shared_preload_libraries_in_progress;

	/*
	 * A PGC_POSTMASTER setting can only be defined while the postmaster
	 * loads the library; loaded later into a backend, the workers it
	 * configures cannot exist anyway.
	 */
	if (bo_preloaded)
		DefineCustomStringVariable("backup_offline.database",
								   "Database in which backup_offline's background workers run.",
								   NULL,
								   &bo_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	DefineCustomStringVariable("backup_offline.key_directory",
							   "Directory holding key-encryption key files, one per key id.",
							   "Must be an absolute path readable only by the server's OS user.",
							   &bo_key_directory,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   check_directory_setting, NULL, NULL);

	DefineCustomStringVariable("backup_offline.allowed_paths",
							   "Directories under which the server may write backup files.",
							   "A comma-separated list of absolute paths; empty allows none.",
							   &bo_allowed_paths,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_LIST_INPUT | GUC_NOT_IN_SAMPLE,
							   check_allowed_paths, NULL, NULL);

	DefineCustomIntVariable("backup_offline.scheduler_interval",
							"How often the scheduler looks for due backup configurations.",
							NULL,
							&bo_scheduler_interval,
							60,
							1,
							3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("backup_offline.organization_id",
							   "Organization whose rows this session works on.",
							   "The application sets it per connection or transaction; row-level "
							   "security admits it only for roles that are members of that organization.",
							   &bo_organization_id,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_uuid_setting, NULL, NULL);

	DefineCustomStringVariable("backup_offline.user_id",
							   "Application user (uuid) recorded as the actor of changes.",
							   NULL,
							   &bo_user_id,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_uuid_setting, NULL, NULL);

	DefineCustomStringVariable("backup_offline.default_key_id",
							   "Key-encryption key that wraps the data keys of new archive objects.",
							   "The id of a key file in backup_offline.key_directory; empty means none.",
							   &bo_default_key_id,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   check_key_id_setting, NULL, NULL);

	DefineCustomIntVariable("backup_offline.compression_workers",
							"Worker threads that compress and encrypt archive chunks in parallel.",
							"0 compresses and encrypts in the backend itself.",
							&bo_compression_workers,
							0,
							0,
							16,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	if (bo_preloaded)
		DefineCustomIntVariable("backup_offline.max_backup_jobs",
								"Backups that may run at once (job worker slots).",
								"Each running backup uses one background worker of max_worker_processes.",
								&bo_max_backup_jobs,
								4,
								1,
								64,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomIntVariable("backup_offline.part_size",
							"Plaintext size after which a table's backup continues in a new object.",
							NULL,
							&bo_part_size,
							1024,
							1,
							1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("backup_offline.suspend_after_failures",
							"Consecutive failed backups after which a configuration is SUSPENDED.",
							"0 never suspends.",
							&bo_suspend_after_failures,
							3,
							0,
							1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("backup_offline.sync_max_clock_skew",
							"How far in the future a device's clock (its operations' clientHlc) may be.",
							"Operations stamped later than now plus this are refused.",
							&bo_sync_max_clock_skew,
							300,
							1,
							24 * 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("backup_offline.sync_priority_aging",
							"Waiting time after which a queued sync operation counts one priority level higher.",
							"So that LOW and BACKGROUND work cannot starve behind a stream of CRITICAL operations.",
							&bo_sync_priority_aging,
							60,
							1,
							7 * 24 * 3600,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("backup_offline.sync_worker_role",
							   "Role as which the scheduler worker applies the sync queue (process_sync_queue); empty: it does not.",
							   "The role needs an all-organizations membership and the privileges on the sync entities' tables.",
							   &bo_sync_worker_role,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("backup_offline");

	if (bo_preloaded)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = bo_shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = bo_shmem_startup;
		bo_launcher_register();
	}
}

/*
 * GUC check hook: empty, or a valid uuid.
 */
static bool
check_uuid_setting(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;
	int			i;
	int			digits = 0;

	if (s == NULL || s[0] == '\0')
		return true;
	/* canonical 8-4-4-4-12 form, as uuid_in prints it */
	for (i = 0; s[i] != '\0'; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				break;
		}
		else if (isxdigit((unsigned char) s[i]))
			digits++;
		else
			break;
	}
	if (s[i] != '\0' || i != 36 || digits != 32)
	{
		GUC_check_errdetail("The value must be a uuid such as \"00000000-0000-0000-0000-000000000000\", or empty.");
		return false;
	}
	return true;
}

/*
 * GUC check hook: empty, or an absolute path.
 */
static bool
check_directory_setting(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!is_absolute_path(*newval))
	{
		GUC_check_errdetail("The directory must be given as an absolute path.");
		return false;
	}
	return true;
}

/*
 * GUC check hook: empty, or a key id as key files are named.
 */
static bool
check_key_id_setting(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;
	int			i;

	if (s == NULL || s[0] == '\0')
		return true;
	for (i = 0; s[i] != '\0'; i++)
	{
		char		c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '_' || c == '.' || c == '-'))))
			break;
	}
	if (s[i] != '\0' || i > 64)
	{
		GUC_check_errdetail("A key id is 1 to 64 letters, digits, \"_\", \".\" and \"-\", beginning with a letter or digit.");
		return false;
	}
	return true;
}

/*
 * GUC check hook: a comma-separated list of absolute paths.
 */
static bool
check_allowed_paths(char **newval, void **extra, GucSource source)
{
	char	   *rawstring;
	List	   *elemlist;
	ListCell   *l;
	bool		ok = true;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;

	rawstring = pstrdup(*newval);
	if (!SplitDirectoriesString(rawstring, ',', &elemlist))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(rawstring);
		list_free_deep(elemlist);
		return false;
	}
	foreach(l, elemlist)
	{
		char	   *dir = (char *) lfirst(l);

		if (!is_absolute_path(dir))
		{
			GUC_check_errdetail("Path \"%s\" is not absolute.", dir);
			ok = false;
			break;
		}
	}
	pfree(rawstring);
	list_free_deep(elemlist);
	return ok;
}
