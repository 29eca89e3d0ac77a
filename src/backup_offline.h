/*-------------------------------------------------------------------------
 *
 * backup_offline.h
 *		Settings and helpers shared by every part of backup_offline.
 *
 * Each part of the extension (schedule/, storage/, catalog/, ...) has its
 * own header for what other parts call; this one holds only the library's
 * settings (GUC variables) and whether it was preloaded.
 *
 * IDENTIFICATION
 *		src/backup_offline.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_H
#define BACKUP_OFFLINE_H

#include "compat.h"

/* GUC variables, defined in backup_offline.c */
extern char *bo_database;
extern char *bo_key_directory;
extern char *bo_allowed_paths;
extern int	bo_scheduler_interval;
extern char *bo_organization_id;
extern char *bo_user_id;
extern char *bo_default_key_id;
extern int	bo_compression_workers;
extern int	bo_max_backup_jobs;
extern int	bo_part_size;
extern int	bo_suspend_after_failures;
extern int	bo_sync_max_clock_skew;
extern int	bo_sync_priority_aging;
extern char *bo_sync_worker_role;

/* the owner of a function (src/catalog/change_audit.c) */
extern Oid	bo_function_owner(Oid funcoid);

/* true when the library was loaded through shared_preload_libraries */
extern bool bo_preloaded;

#endif							/* BACKUP_OFFLINE_H */
