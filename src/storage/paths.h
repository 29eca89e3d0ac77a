/*-------------------------------------------------------------------------
 *
 * paths.h
 *		Confinement of server file paths to backup_offline.allowed_paths.
 *
 * IDENTIFICATION
 *		src/storage/paths.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_PATHS_H
#define BACKUP_OFFLINE_PATHS_H

extern char *bo_confine_path(const char *path, const char *field);

#endif							/* BACKUP_OFFLINE_PATHS_H */
