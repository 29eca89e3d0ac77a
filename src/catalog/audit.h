/*-------------------------------------------------------------------------
 *
 * audit.h
 *		The append-only, hash-chained audit trail (audit.c): what other
 *		parts call to record an action.
 *
 * IDENTIFICATION
 *		src/catalog/audit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_AUDIT_H
#define BACKUP_OFFLINE_AUDIT_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/uuid.h"

/* length of prev_hash and row_hash: SHA-256 */
#define BO_AUDIT_HASH_LEN	32

/*
 * Append one entry to backup_offline.audit_log and return its id.
 *
 * action and object_type must be non-empty; object_id, organization_id and
 * details may be NULL (details NULL is stored as '{}', otherwise it must be
 * a JSON object); actor_role NULL records the session user.  Runs through
 * SPI as the current user, who must be allowed to insert into audit_log
 * (the extension owner: SQL callers go through write_audit(), which is
 * SECURITY DEFINER).  The row is chained by the audit_log trigger; the
 * chain head stays locked until the transaction ends.
 */
extern int64 bo_audit_write(const char *action, const char *object_type,
							const char *object_id,
							const pg_uuid_t *organization_id,
							Jsonb *details, const char *actor_role);

#endif							/* BACKUP_OFFLINE_AUDIT_H */
