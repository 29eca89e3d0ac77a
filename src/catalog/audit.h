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
 * Append one entry to backup_offline.audit_log.  The entry is numbered and
 * chained when the transaction commits (audit.c), so the return value is 0;
 * it is the entry's id only when the transaction chains at once (SET
 * CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE, or ALL).
 *
 * action and object_type must be non-empty; object_id, organization_id and
 * details may be NULL (details NULL is stored as '{}', otherwise it must be
 * a JSON object); actor_role NULL records the session user.  occurred_at,
 * actor_user_id and transaction_id are taken now.  Runs through SPI as the
 * current user, who must be allowed to insert into audit_pending (the
 * extension owner: SQL callers go through write_audit(), which is SECURITY
 * DEFINER).  The chain lock is taken at commit and held only until the
 * commit ends, so the caller's transaction may stay open without holding
 * up other writers.
 */
extern int64 bo_audit_write(const char *action, const char *object_type,
							const char *object_id,
							const pg_uuid_t *organization_id,
							Jsonb *details, const char *actor_role);

#endif							/* BACKUP_OFFLINE_AUDIT_H */
