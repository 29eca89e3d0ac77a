-- The audit trail: writing, verifying, and the refusals.
\set VERBOSITY terse
-- ids below are relative to whatever earlier tests left in the log
SELECT coalesce(max(id), 0) AS base FROM backup_offline.audit_log \gset
-- an entry is numbered when its transaction commits, so inside the
-- transaction write_audit() has no id to return yet
SET backup_offline.user_id = '6f1c1e2a-2222-4222-8222-000000000001';
SELECT backup_offline.write_audit('create', 'backup_configuration', 'cfg-1',
		'6f1c1e2a-1111-4111-8111-000000000001', '{"name": "nightly", "type": "FULL"}',
		'backup_offline_operator') IS NULL AS numbered_at_commit;
RESET backup_offline.user_id;
SELECT max(id) - :base AS first FROM backup_offline.audit_log;
-- a transaction that chains its entries at once gets their ids
BEGIN;
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;
SELECT backup_offline.write_audit('status_change', 'backup_configuration', 'cfg-1',
		'6f1c1e2a-1111-4111-8111-000000000001', '{"to": "PAUSED", "from": "ACTIVE"}',
		NULL) - :base AS second;
SELECT backup_offline.write_audit('delete', 'backup_configuration', 'cfg-1', NULL) - :base AS third;
COMMIT;
-- nothing is left waiting
SELECT count(*) AS pending FROM backup_offline.audit_pending;
-- the server fills in the chain columns
SELECT id - :base AS n, action,
	   CASE WHEN actor_role = session_user THEN '(session user)' ELSE actor_role END AS actor,
	   actor_user_id, details,
	   octet_length(row_hash) AS hash_bytes,
	   prev_hash = coalesce((SELECT p.row_hash FROM backup_offline.audit_log p WHERE p.id = a.id - 1),
							'\x0000000000000000000000000000000000000000000000000000000000000000') AS linked
  FROM backup_offline.audit_log a WHERE id > :base ORDER BY id;
SELECT last_id - :base AS head FROM backup_offline.audit_chain_head;
SELECT v->'valid' AS valid, (v->>'lastId')::bigint - :base AS last_id, v->'problem' AS problem
  FROM backup_offline.verify_audit_chain() AS v;
-- bad input changes nothing
SELECT backup_offline.write_audit('', 'backup_configuration', NULL, NULL);
SELECT backup_offline.write_audit('create', 'backup_configuration', NULL, NULL, '[1, 2]');
INSERT INTO backup_offline.audit_log (id, actor_role, action, object_type)
	VALUES (1000, 'postgres', 'create', 'forged');
-- the log is append-only, for superusers too
UPDATE backup_offline.audit_log SET details = '{}' WHERE id = :base + 1;
DELETE FROM backup_offline.audit_log WHERE id = :base + 1;
TRUNCATE backup_offline.audit_log;
SET session_replication_role = replica;
DELETE FROM backup_offline.audit_log WHERE id = :base + 1;
RESET session_replication_role;
-- a rolled-back transaction's entries are never numbered
BEGIN;
SELECT backup_offline.write_audit('create', 'rolled_back', NULL, NULL) IS NULL AS queued;
ROLLBACK;
SELECT count(*) AS rows, max(id) - :base AS last FROM backup_offline.audit_log WHERE id > :base;
-- what a superuser does behind disabled triggers, verification finds
BEGIN;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log SET details = '{"name": "weekly", "type": "FULL"}' WHERE id = :base + 1;
SELECT v->'valid' AS valid, (v->>'firstBrokenId')::bigint - :base AS broken, v->'problem' AS problem
  FROM backup_offline.verify_audit_chain() AS v;
ROLLBACK;
BEGIN;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
DELETE FROM backup_offline.audit_log WHERE id = :base + 2;
SELECT v->'valid' AS valid, (v->>'firstBrokenId')::bigint - :base AS broken, v->'problem' AS problem
  FROM backup_offline.verify_audit_chain() AS v;
ROLLBACK;
BEGIN;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
DELETE FROM backup_offline.audit_log WHERE id = :base + 3;
SELECT v->'valid' AS valid, (v->>'firstBrokenId')::bigint - :base AS broken, v->'problem' AS problem
  FROM backup_offline.verify_audit_chain() AS v;
ROLLBACK;
-- the application may neither read nor write the log; the auditor reads and verifies
SET ROLE backup_offline_app;
SELECT count(*) FROM backup_offline.audit_log;
SELECT backup_offline.write_audit('create', 'backup_configuration', NULL, NULL);
SELECT backup_offline.verify_audit_chain();
RESET ROLE;
SET ROLE backup_offline_auditor;
SELECT count(*) >= 3 AS reads FROM backup_offline.audit_log;
SELECT v->'valid' AS valid FROM backup_offline.verify_audit_chain() AS v;
RESET ROLE;
