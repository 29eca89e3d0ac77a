/*-------------------------------------------------------------------------
 *
 * restore.h
 *		The restore job's state and the helpers restore.c and inplace.c
 *		share.
 *
 * IDENTIFICATION
 *		src/restore/restore.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_RESTORE_H
#define BACKUP_OFFLINE_RESTORE_H

#include "lib/stringinfo.h"
#include "nodes/nodes.h"
#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "backup/backup.h"
#include "storage/storage.h"

typedef struct BoRestoreJob
{
	MemoryContext cxt;
	char	   *id;
	char	   *number;
	Jsonb	   *request;		/* validate_restore's normalised request */
	char	   *snapshot_id;
	char	   *organization_id;
	char	   *storage_json;
	Jsonb	   *manifest;
	char	   *requested_by;	/* the requesting role: owns what the restore creates */
	char	   *run_by;			/* the role that called run_restore / rollback_restore */
	char	   *file_path;		/* FILE_LEVEL: written, to remove on failure */
	bool		file_written;
	StringInfoData results;		/* validation results: JSON array members */
	StringInfoData skipped;		/* definitions that could not be recreated: JSON array members */
	StringInfoData extra;		/* more metrics members (", \"key\": value" ...) */
	int			nresults;
	uint64		rows;
	int			tables;
} BoRestoreJob;

/* restore.c */
extern void bo_restore_exec(const char *sql, int nargs, Oid *types, Datum *values);
extern char *bo_restore_value(int col);
extern uint64 bo_restore_count(const char *sql);
extern bool bo_restore_table_in_scope(JsonbContainer *entry, Jsonb *request);
extern void bo_restore_as(const char *role, void (*fn) (void *), void *arg);
extern void bo_restore_select(BoRestoreJob *job, JsonbContainer *entry, const char *qualified);
extern bool bo_restore_digest_equal(JsonbContainer *entry, BoRowsDigest *got);
extern char *bo_restore_scratch_schema(const char *owner);

/* repository.c */
extern Node *bo_restore_one_statement(const char *sql, NodeTag tag, const char *what);

/* inplace.c */
extern void bo_restore_in_place(BoRestoreJob *job, BoStorage *storage, List *chain);
extern void bo_restore_rollback(BoRestoreJob *job);
extern void bo_restore_check_rollback(const char *number, const char *status, const char *destination,
									  bool rollback_enabled, const char *strategy);

#endif							/* BACKUP_OFFLINE_RESTORE_H */
