-- The hash-chained audit trail: numbering, the documented hash encoding,
-- append-only enforcement, verification of tampering, and privileges.
-- Runs as a superuser; ids are relative to the rows written here, since
-- other files may have written audit rows in the same database.
BEGIN;
SELECT plan(82);
-- audit entries are chained at commit; chain them at once so this transaction reads them
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;

-- The canonical encoding of src/catalog/audit.c, written independently in SQL.
CREATE FUNCTION pg_temp.audit_field(b bytea) RETURNS bytea
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT CASE WHEN b IS NULL THEN int4send(-1) ELSE int4send(octet_length(b)) || b END $$;

CREATE FUNCTION pg_temp.audit_recompute(r backup_offline.audit_log) RETURNS bytea
	LANGUAGE sql STABLE
	AS $$
	SELECT sha256(
		pg_temp.audit_field(int8send(r.id)) ||
		pg_temp.audit_field(timestamptz_send(r.occurred_at)) ||
		pg_temp.audit_field(uuid_send(r.organization_id)) ||
		pg_temp.audit_field(convert_to(r.actor_role::text, 'UTF8')) ||
		pg_temp.audit_field(uuid_send(r.actor_user_id)) ||
		pg_temp.audit_field(convert_to(r.action, 'UTF8')) ||
		pg_temp.audit_field(convert_to(r.object_type, 'UTF8')) ||
		pg_temp.audit_field(convert_to(r.object_id, 'UTF8')) ||
		pg_temp.audit_field(convert_to(r.details::text, 'UTF8')) ||
		pg_temp.audit_field(xid8send(r.transaction_id)) ||
		pg_temp.audit_field(r.prev_hash))
	$$;

-- ---- writing ---------------------------------------------------------------
CREATE TEMP TABLE t_ids (n int PRIMARY KEY, id bigint) ON COMMIT DROP;
GRANT SELECT ON t_ids TO PUBLIC;

SET LOCAL backup_offline.user_id = '6f1c1e2a-2222-4222-8222-000000000001';
INSERT INTO t_ids SELECT 1, backup_offline.write_audit('create', 'backup_configuration', 'cfg-1',
	'6f1c1e2a-1111-4111-8111-000000000001',
	'{"name": "nightly", "schedule": {"cron": "0 2 * * *"}, "n": 1.50}', 'backup_offline_operator');
RESET backup_offline.user_id;
INSERT INTO t_ids SELECT 2, backup_offline.write_audit('status_change', 'backup_configuration', NULL, NULL, NULL, NULL);
INSERT INTO t_ids SELECT 3, backup_offline.write_audit('update', 'entity_registry', 'Zürich — ünïcode',
	'6f1c1e2a-1111-4111-8111-000000000002', '{"note": "naïve \"quoted\"\n"}');
INSERT INTO t_ids SELECT 4, backup_offline.write_audit('delete', 'backup_configuration', 'cfg-1',
	'6f1c1e2a-1111-4111-8111-000000000001', '{}', 'backup_offline_admin');
INSERT INTO t_ids SELECT 5, backup_offline.write_audit('create', 'compliance_rule', 'rule-9',
	NULL, '{"k": [1, 2, null]}', 'backup_offline_approver');

SELECT is((SELECT id FROM t_ids WHERE n = 2), (SELECT id + 1 FROM t_ids WHERE n = 1), 'second write gets the next id');
SELECT is((SELECT array_agg(id - (SELECT id FROM t_ids WHERE n = 1) ORDER BY n) FROM t_ids),
	ARRAY[0, 1, 2, 3, 4]::bigint[], 'write_audit returns consecutive ids');
SELECT is((SELECT max(id) FROM backup_offline.audit_log), (SELECT max(id) FROM t_ids), 'the last write is the end of the log');
SELECT is((SELECT count(*) FROM backup_offline.audit_log), (SELECT max(id) FROM t_ids), 'ids run from 1 without gaps');
SELECT is((SELECT prev_hash FROM backup_offline.audit_log WHERE id = 1), ('\x' || repeat('00', 32))::bytea,
	'row 1 links to 32 zero bytes');

-- the server-filled columns
SELECT is(a.actor_role, 'backup_offline_operator'::name, 'actor_role is the role the caller passed')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 1;
SELECT is(a.actor_role, session_user::name, 'actor_role NULL records session_user')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 2;
SELECT is(a.actor_user_id, '6f1c1e2a-2222-4222-8222-000000000001'::uuid, 'actor_user_id comes from backup_offline.user_id')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 1;
SELECT is(a.actor_user_id, NULL::uuid, 'actor_user_id is NULL when the setting is empty')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 2;
SELECT is(a.details, '{}'::jsonb, 'details NULL is stored as {}')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 2;
SELECT is(a.transaction_id, pg_current_xact_id(), 'transaction_id is the writing transaction')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 1;
SELECT ok(a.occurred_at <= statement_timestamp() AND a.occurred_at >= transaction_timestamp(),
	'occurred_at is the writing statement''s time')
  FROM backup_offline.audit_log a JOIN t_ids t USING (id) WHERE t.n = 1;

-- the chain
SELECT is((SELECT count(*)::int FROM backup_offline.audit_log a JOIN t_ids t USING (id)
			WHERE octet_length(a.row_hash) = 32 AND octet_length(a.prev_hash) = 32), 5,
	'row_hash and prev_hash are 32 bytes');
SELECT is((SELECT count(*)::int FROM backup_offline.audit_log a JOIN t_ids t USING (id)
			LEFT JOIN backup_offline.audit_log p ON p.id = a.id - 1
			WHERE a.prev_hash = coalesce(p.row_hash, ('\x' || repeat('00', 32))::bytea)), 5,
	'prev_hash of row n is row_hash of row n-1');
SELECT is((SELECT count(*)::int FROM backup_offline.audit_log a JOIN t_ids t USING (id)
			WHERE a.row_hash = pg_temp.audit_recompute(a)), 5,
	'row_hash equals the documented encoding recomputed in SQL');
SELECT is((SELECT count(*)::int FROM backup_offline.audit_log a
			WHERE a.row_hash <> pg_temp.audit_recompute(a)), 0,
	'every row in the log matches the documented encoding');
SELECT is((SELECT count(DISTINCT row_hash)::int FROM backup_offline.audit_log a JOIN t_ids t USING (id)), 5,
	'row hashes are distinct');
SELECT results_eq('SELECT last_id, last_hash FROM backup_offline.audit_chain_head',
	'SELECT id, row_hash FROM backup_offline.audit_log ORDER BY id DESC LIMIT 1',
	'the head points at the last row');

-- a plain superuser INSERT is chained too; supplying chain columns is refused
SELECT lives_ok($$INSERT INTO backup_offline.audit_log (actor_role, action, object_type)
	VALUES ('postgres', 'create', 'direct')$$, 'a superuser INSERT without chain columns is chained');
SELECT is((SELECT max(id) FROM backup_offline.audit_log), (SELECT max(id) + 1 FROM t_ids),
	'the direct insert took the next id');
SELECT throws_ok($$INSERT INTO backup_offline.audit_log (id, actor_role, action, object_type)
	VALUES (999999, 'postgres', 'create', 'forged')$$, '428C9',
	'cannot insert a value into column "id" of audit_log', 'an INSERT supplying id is refused');
SELECT throws_ok($$INSERT INTO backup_offline.audit_log (actor_role, action, object_type, row_hash)
	VALUES ('postgres', 'create', 'forged', sha256(''))$$, '428C9',
	'cannot insert a value into column "row_hash" of audit_log', 'an INSERT supplying row_hash is refused');
SELECT throws_ok($$INSERT INTO backup_offline.audit_log (actor_role, action, object_type, prev_hash)
	VALUES ('postgres', 'create', 'forged', sha256(''))$$, '428C9',
	'cannot insert a value into column "prev_hash" of audit_log', 'an INSERT supplying prev_hash is refused');

-- bad input
SELECT throws_ok($$SELECT backup_offline.write_audit('', 'backup_configuration', NULL, NULL)$$, '22023',
	'audit entry field "action" must not be empty', 'an empty action is refused');
SELECT throws_ok($$SELECT backup_offline.write_audit('create', NULL, NULL, NULL)$$, '22023',
	'audit entry field "object_type" must not be empty', 'a missing object_type is refused');
SELECT throws_ok($$SELECT backup_offline.write_audit('create', 'x', NULL, NULL, '"text"')$$, '22023',
	'audit entry field "details" must be a JSON object', 'non-object details are refused');

-- ---- append-only -------------------------------------------------------------
SELECT throws_ok(format('UPDATE backup_offline.audit_log SET details = %L WHERE id = %s', '{"x": 1}',
		(SELECT id FROM t_ids WHERE n = 2)),
	'42501', 'audit_log is append-only', 'UPDATE is refused for a superuser');
SELECT throws_ok(format('DELETE FROM backup_offline.audit_log WHERE id = %s', (SELECT id FROM t_ids WHERE n = 2)),
	'42501', 'audit_log is append-only', 'DELETE is refused for a superuser');
SELECT throws_ok('UPDATE backup_offline.audit_log SET details = ''{}'' WHERE false',
	'42501', 'audit_log is append-only', 'an UPDATE matching no row is refused too');
SELECT throws_ok('TRUNCATE backup_offline.audit_log',
	'42501', 'audit_log is append-only', 'TRUNCATE is refused for a superuser');
SET LOCAL session_replication_role = replica;
SELECT throws_ok(format('DELETE FROM backup_offline.audit_log WHERE id = %s', (SELECT id FROM t_ids WHERE n = 2)),
	'42501', 'audit_log is append-only', 'DELETE is refused in replica mode');
SELECT throws_ok('TRUNCATE backup_offline.audit_log',
	'42501', 'audit_log is append-only', 'TRUNCATE is refused in replica mode');
RESET session_replication_role;
SELECT is((SELECT count(*)::int FROM backup_offline.audit_log a JOIN t_ids t USING (id)), 5,
	'the refused changes left every row in place');

-- ---- verification ----------------------------------------------------------
SELECT is(backup_offline.verify_audit_chain(),
	jsonb_build_object('valid', true, 'rowsChecked', (SELECT count(*) FROM backup_offline.audit_log),
		'lastId', (SELECT max(id) FROM backup_offline.audit_log), 'firstBrokenId', NULL, 'problem', NULL),
	'an intact chain verifies');

-- one row's details altered behind disabled triggers
SAVEPOINT tamper;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log SET details = '{"name": "weekly"}' WHERE id = (SELECT id FROM t_ids WHERE n = 2);
ALTER TABLE backup_offline.audit_log ENABLE TRIGGER USER;
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT id - 1 FROM t_ids WHERE n = 2),
		'firstBrokenId', (SELECT id FROM t_ids WHERE n = 2), 'problem', 'row_hash_mismatch'),
	'an altered row is row_hash_mismatch at that row');
SELECT is((backup_offline.verify_audit_chain()->>'rowsChecked')::bigint, (SELECT id - 1 FROM t_ids WHERE n = 2),
	'rowsChecked counts the rows before the broken one');
ROLLBACK TO tamper;

-- a row altered and re-hashed: the link to it breaks
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log SET details = '{"name": "weekly"}' WHERE id = (SELECT id FROM t_ids WHERE n = 2);
UPDATE backup_offline.audit_log a SET row_hash = pg_temp.audit_recompute(a) WHERE id = (SELECT id FROM t_ids WHERE n = 2);
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT id FROM t_ids WHERE n = 2),
		'firstBrokenId', (SELECT id FROM t_ids WHERE n = 3), 'problem', 'prev_hash_mismatch'),
	'a re-hashed row breaks the next row''s link: prev_hash_mismatch');
ROLLBACK TO tamper;

-- a changed actor_role, object_id or organization_id is detected too
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log SET actor_role = 'backup_offline_admin' WHERE id = (SELECT id FROM t_ids WHERE n = 1);
SELECT is(backup_offline.verify_audit_chain()->>'problem', 'row_hash_mismatch', 'a changed actor_role is detected');
ROLLBACK TO tamper;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log SET organization_id = NULL WHERE id = (SELECT id FROM t_ids WHERE n = 3);
SELECT is((backup_offline.verify_audit_chain()->>'firstBrokenId')::bigint, (SELECT id FROM t_ids WHERE n = 3),
	'a removed organization_id is detected at its row');
ROLLBACK TO tamper;

-- a middle row deleted
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
DELETE FROM backup_offline.audit_log WHERE id = (SELECT id FROM t_ids WHERE n = 3);
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT id FROM t_ids WHERE n = 2),
		'firstBrokenId', (SELECT id FROM t_ids WHERE n = 4), 'problem', 'gap'),
	'a deleted middle row is a gap at the row after it');
ROLLBACK TO tamper;

-- the last row deleted
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
DELETE FROM backup_offline.audit_log WHERE id = (SELECT max(id) FROM backup_offline.audit_log);
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT max(id) FROM backup_offline.audit_log),
		'firstBrokenId', (SELECT max(id) + 1 FROM backup_offline.audit_log), 'problem', 'head_mismatch'),
	'a deleted last row is head_mismatch at the missing id');
ROLLBACK TO tamper;

-- the head altered
UPDATE backup_offline.audit_chain_head SET last_hash = sha256('forged');
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT max(id) FROM backup_offline.audit_log),
		'firstBrokenId', (SELECT max(id) FROM backup_offline.audit_log), 'problem', 'head_mismatch'),
	'an altered head hash is head_mismatch at the last row');
ROLLBACK TO tamper;

-- a row appended behind the trigger's back (replica mode skips the chain trigger)
SET LOCAL session_replication_role = replica;
INSERT INTO backup_offline.audit_log (id, occurred_at, actor_role, action, object_type, transaction_id, prev_hash, row_hash)
	SELECT max(id) + 1, now(), 'postgres', 'create', 'forged', pg_current_xact_id(),
		(SELECT row_hash FROM backup_offline.audit_log ORDER BY id DESC LIMIT 1), sha256('x')
	  FROM backup_offline.audit_log;
RESET session_replication_role;
SELECT is(backup_offline.verify_audit_chain()->>'problem', 'row_hash_mismatch',
	'a forged appended row with a wrong hash is row_hash_mismatch');
ROLLBACK TO tamper;
SET LOCAL session_replication_role = replica;
INSERT INTO backup_offline.audit_log (id, occurred_at, actor_role, action, object_type, transaction_id, prev_hash, row_hash)
	SELECT max(id) + 1, now(), 'postgres', 'create', 'forged', pg_current_xact_id(),
		(SELECT row_hash FROM backup_offline.audit_log ORDER BY id DESC LIMIT 1), sha256('x')
	  FROM backup_offline.audit_log;
RESET session_replication_role;
ALTER TABLE backup_offline.audit_log DISABLE TRIGGER USER;
UPDATE backup_offline.audit_log a SET row_hash = pg_temp.audit_recompute(a)
 WHERE id = (SELECT max(id) FROM backup_offline.audit_log);
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked',
	jsonb_build_object('valid', false, 'lastId', (SELECT max(id) FROM backup_offline.audit_log),
		'firstBrokenId', (SELECT max(id) FROM backup_offline.audit_log), 'problem', 'head_mismatch'),
	'a correctly forged appended row is caught by the head: head_mismatch');
ROLLBACK TO tamper;
SELECT is(backup_offline.verify_audit_chain()->>'valid', 'true', 'after rolling the tampering back the chain verifies');

-- the chain continues from the head after more writes
INSERT INTO t_ids SELECT 6, backup_offline.write_audit('create', 'backup_configuration', 'cfg-2', NULL);
SELECT is((SELECT prev_hash FROM backup_offline.audit_log WHERE id = (SELECT id FROM t_ids WHERE n = 6)),
	(SELECT row_hash FROM backup_offline.audit_log WHERE id = (SELECT id - 1 FROM t_ids WHERE n = 6)),
	'a later write links to the previous last row');
SELECT is(backup_offline.verify_audit_chain()->>'valid', 'true', 'the longer chain verifies');

-- a rolled-back subtransaction takes its rows and its head move with it
SAVEPOINT sub;
INSERT INTO t_ids SELECT 7, backup_offline.write_audit('create', 'backup_configuration', 'cfg-3', NULL);
INSERT INTO t_ids SELECT 8, backup_offline.write_audit('update', 'backup_configuration', 'cfg-3', NULL);
ROLLBACK TO sub;
INSERT INTO t_ids SELECT 7, backup_offline.write_audit('create', 'backup_configuration', 'cfg-4', NULL);
SELECT is((SELECT id FROM t_ids WHERE n = 7), (SELECT id + 1 FROM t_ids WHERE n = 6),
	'after a rolled-back savepoint the next id follows the last kept row');
SELECT is((SELECT prev_hash FROM backup_offline.audit_log WHERE id = (SELECT id FROM t_ids WHERE n = 7)),
	(SELECT row_hash FROM backup_offline.audit_log WHERE id = (SELECT id FROM t_ids WHERE n = 6)),
	'and links to the last kept row');
-- the head changed by something else in the same transaction is found again
UPDATE backup_offline.audit_chain_head SET last_id = last_id;
INSERT INTO t_ids SELECT 8, backup_offline.write_audit('delete', 'backup_configuration', 'cfg-4', NULL);
SELECT is((SELECT id FROM t_ids WHERE n = 8), (SELECT id + 1 FROM t_ids WHERE n = 7),
	'a write after another update of the head still gets the next id');
-- many rows in one statement
INSERT INTO backup_offline.audit_log (actor_role, action, object_type, details)
	SELECT current_user, 'create', 'bulk', jsonb_build_object('i', g) FROM generate_series(1, 2000) g;
SELECT is((SELECT count(*) FROM backup_offline.audit_log WHERE id > (SELECT id FROM t_ids WHERE n = 8)), 2000::bigint,
	'a 2000-row INSERT is chained');
SELECT is(backup_offline.verify_audit_chain() - 'rowsChecked' - 'lastId',
	'{"valid": true, "problem": null, "firstBrokenId": null}'::jsonb, 'and the whole chain verifies');

-- ---- chaining at commit ---------------------------------------------------------
-- (the rest of this file chains at once; here the default comes back)
SET CONSTRAINTS backup_offline.audit_pending_chain DEFERRED;
SELECT is(backup_offline.write_audit('create', 'deferred', 'd-1', NULL), NULL::bigint,
	'a deferred write has no id yet');
SELECT is((SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'deferred'), 0::bigint,
	'and is not in the log before commit');
SAVEPOINT pend;
SELECT backup_offline.write_audit('create', 'deferred', 'd-rolled-back', NULL);
ROLLBACK TO pend;
SELECT backup_offline.write_audit('create', 'deferred', 'd-2', NULL);
INSERT INTO backup_offline.audit_log (actor_role, action, object_type, object_id)
	VALUES (current_user, 'create', 'deferred', 'd-3');
SELECT is((SELECT array_agg(object_id ORDER BY id) FROM backup_offline.audit_log WHERE object_type = 'deferred'),
	ARRAY['d-1', 'd-2', 'd-3'], 'a direct INSERT first chains the entries written before it, in order');
SELECT is((SELECT count(*) FROM backup_offline.audit_pending), 0::bigint, 'and leaves none pending');
SELECT backup_offline.write_audit('create', 'deferred', 'd-4', NULL);
SELECT is((SELECT count(*) FROM backup_offline.audit_pending), 1::bigint, 'a later write waits in audit_pending');
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;
SELECT is((SELECT array_agg(object_id ORDER BY id) FROM backup_offline.audit_log WHERE object_type = 'deferred'),
	ARRAY['d-1', 'd-2', 'd-3', 'd-4'],
	'SET CONSTRAINTS ... IMMEDIATE chains it; the write rolled back to a savepoint never is');
SELECT is(backup_offline.verify_audit_chain()->>'valid', 'true', 'the chain verifies');

-- ---- privileges --------------------------------------------------------------
SELECT is(has_table_privilege(r, 'backup_offline.audit_pending', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'), false,
	r || ' has no privilege on audit_pending')
  FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
					'backup_offline_auditor', 'backup_offline_app']) AS r;
SELECT ok((SELECT relrowsecurity FROM pg_class WHERE oid = 'backup_offline.audit_pending'::regclass),
	'audit_pending has row-level security');
SELECT is(has_table_privilege(r, 'backup_offline.audit_log', 'INSERT, UPDATE, DELETE, TRUNCATE'), false,
	r || ' may not change audit_log')
  FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
					'backup_offline_auditor', 'backup_offline_app']) AS r;

SET LOCAL ROLE backup_offline_app;
SELECT throws_ok('SELECT count(*) FROM backup_offline.audit_log', '42501', NULL, 'the app role cannot read audit_log');
SELECT throws_ok('SELECT count(*) FROM backup_offline.audit_pending', '42501', NULL, 'the app role cannot read audit_pending');
SELECT throws_ok($$SELECT backup_offline.write_audit('create', 'x', NULL, NULL)$$, '42501', NULL,
	'the app role cannot call write_audit');
SELECT throws_ok('SELECT backup_offline.verify_audit_chain()', '42501', NULL, 'the app role cannot verify');
RESET ROLE;
SET LOCAL ROLE backup_offline_operator;
SELECT throws_ok('SELECT count(*) FROM backup_offline.audit_log', '42501', NULL, 'the operator cannot read audit_log');
SELECT throws_ok($$SELECT backup_offline.write_audit('create', 'x', NULL, NULL)$$, '42501', NULL,
	'the operator cannot call write_audit');
SELECT throws_ok('SELECT backup_offline.verify_audit_chain()', '42501', NULL, 'the operator cannot verify');
RESET ROLE;
SET LOCAL ROLE backup_offline_approver;
SELECT throws_ok('SELECT count(*) FROM backup_offline.audit_log', '42501', NULL, 'the approver cannot read audit_log');
RESET ROLE;
SET LOCAL ROLE backup_offline_auditor;
SELECT is((SELECT count(*) FROM backup_offline.audit_log a JOIN t_ids t USING (id)), 8::bigint,
	'the auditor reads rows of every organization');
SELECT is(backup_offline.verify_audit_chain()->>'valid', 'true', 'the auditor can verify');
SELECT throws_ok($$SELECT backup_offline.write_audit('create', 'x', NULL, NULL)$$, '42501', NULL,
	'the auditor cannot call write_audit');
RESET ROLE;
SET LOCAL ROLE backup_offline_admin;
SELECT is(backup_offline.verify_audit_chain()->>'valid', 'true', 'the admin can verify');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
