-- process_sync_queue: order (priority across devices, FIFO per device and
-- entity, aging), dependencies (five deep, a failed one), dead letters that
-- block nothing, conflicts by version with field-level merges, deletes
-- against updates under each delete policy, MANUAL conflicts that hold the
-- device's later operations on the entity, expiry.  Concurrency and crashes
-- are in test/scenario/sync_process.sh.
BEGIN;
SELECT plan(34);

\set org 'aaaaaaaa-0000-4000-8000-0000000000a8'
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
SET backup_offline.organization_id = :'org';

CREATE SCHEMA t_sp;
CREATE TABLE t_sp.visits (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a8',
	status text, notes text, miles int NOT NULL DEFAULT 0);
CREATE TABLE t_sp.evv (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a8',
	visit_id text, clock_in timestamptz);
CREATE TABLE t_sp.notes (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a8',
	body text CHECK (body <> 'forbidden'));
SELECT backup_offline.register_sync_entity('SP_VISIT', 't_sp.visits',
	'{"organizationColumn": "organization_id", "fieldPolicies": {"notes": "append", "miles": "additive"}}') IS NOT NULL AS r1 \gset
SELECT backup_offline.register_sync_entity('SP_EVV', 't_sp.evv', '{"organizationColumn": "organization_id", "critical": true}') IS NOT NULL AS r2 \gset
SELECT backup_offline.register_sync_entity('SP_NOTE', 't_sp.notes',
	'{"organizationColumn": "organization_id", "defaultStrategy": "MANUAL", "deletePolicy": "MANUAL"}') IS NOT NULL AS r3 \gset

CREATE FUNCTION pg_temp.hlc(offset_ms int DEFAULT 0) RETURNS bigint LANGUAGE sql AS $$
	SELECT (((extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_ms) << 16)
$$;
-- queue one operation: device, its sequence number, operation, entity, id, payload, extra keys
CREATE FUNCTION pg_temp.op(dev text, seq int, operation text, entity text, id text, payload jsonb DEFAULT NULL, extra jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE sql AS $$
	SELECT backup_offline.queue_operation(jsonb_strip_nulls(jsonb_build_object('deviceId', dev, 'operationId', dev || '-' || seq,
		'deviceSeq', seq, 'clientHlc', pg_temp.hlc(seq), 'operation', operation, 'entityType', entity, 'entityId', id,
		'payload', payload)) || extra)
$$;
-- the operations of the queue in the order they completed
CREATE FUNCTION pg_temp.done_order() RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(operation_id, ' ' ORDER BY completed_at, enqueue_seq) FROM backup_offline.sync_queue WHERE status = 'COMPLETED'
$$;
CREATE FUNCTION pg_temp.status(opid text) RETURNS text LANGUAGE sql AS $$
	SELECT status::text FROM backup_offline.sync_queue WHERE operation_id = opid
$$;

-- ---- order -------------------------------------------------------------------------------
SELECT pg_temp.op('d1', 1, 'CREATE', 'SP_VISIT', 'v1', '{"status": "SCHEDULED"}', '{"priority": "LOW"}');
SELECT pg_temp.op('d1', 2, 'PATCH', 'SP_VISIT', 'v1', '{"notes": "Arrived."}', '{"priority": "CRITICAL", "baseVersion": 1}');
SELECT pg_temp.op('d2', 1, 'CREATE', 'SP_VISIT', 'v2', '{"status": "SCHEDULED"}', '{"priority": "BACKGROUND"}');
SELECT pg_temp.op('d3', 1, 'CREATE', 'SP_EVV', 'e1', '{"visit_id": "v1"}', '{"priority": "CRITICAL"}');
SELECT is(backup_offline.process_sync_queue()->>'completed', '4', 'four operations applied');
SELECT is(pg_temp.done_order(), 'd3-1 d1-1 d1-2 d2-1',
	'CRITICAL first across devices, but never ahead of an earlier operation of the same device on the same entity');
SELECT is((SELECT status || ' ' || notes FROM t_sp.visits WHERE id = 'v1'), 'SCHEDULED Arrived.', 'the visit as the device left it');
DELETE FROM backup_offline.sync_queue;

-- aging: a LOW operation that has waited long enough goes before a fresh HIGH one
SELECT pg_temp.op('d4', 1, 'CREATE', 'SP_VISIT', 'v4', '{"status": "x"}', '{"priority": "LOW"}');
UPDATE backup_offline.sync_queue SET enqueued_at = now() - interval '5 minutes' WHERE operation_id = 'd4-1';
SELECT pg_temp.op('d5', 1, 'CREATE', 'SP_VISIT', 'v5', '{"status": "y"}', '{"priority": "HIGH"}');
SELECT is(backup_offline.process_sync_queue(1)->>'processed', '1', 'one operation per call when asked');
SELECT is(pg_temp.done_order(), 'd4-1', 'a LOW operation waiting 5 minutes (aging 60 s per level) overtakes a fresh HIGH one');
SELECT backup_offline.process_sync_queue();
DELETE FROM backup_offline.sync_queue;

-- ---- dependencies --------------------------------------------------------------------------
SELECT pg_temp.op('d6', 5, 'PATCH', 'SP_VISIT', 'v6', '{"status": "e"}', '{"baseVersion": 4, "dependsOn": ["d6-4"]}');
SELECT pg_temp.op('d6', 4, 'PATCH', 'SP_VISIT', 'v6', '{"status": "d"}', '{"baseVersion": 3, "dependsOn": ["d6-3"]}');
SELECT pg_temp.op('d6', 3, 'PATCH', 'SP_VISIT', 'v6', '{"status": "c"}', '{"baseVersion": 2, "dependsOn": ["d6-2"]}');
SELECT pg_temp.op('d6', 2, 'PATCH', 'SP_VISIT', 'v6', '{"status": "b"}', '{"baseVersion": 1, "dependsOn": ["d6-1"], "priority": "CRITICAL"}');
SELECT pg_temp.op('d6', 1, 'CREATE', 'SP_VISIT', 'v6', '{"status": "a"}', '{"priority": "BACKGROUND"}');
SELECT is(backup_offline.process_sync_queue()->>'completed', '5', 'a chain of five dependencies, queued backwards, all applied');
SELECT is(pg_temp.done_order(), 'd6-1 d6-2 d6-3 d6-4 d6-5', '... in dependency order');
SELECT is((SELECT status FROM t_sp.visits WHERE id = 'v6'), 'e', '... ending with the last');
DELETE FROM backup_offline.sync_queue;

-- ---- dead letters ----------------------------------------------------------------------------
SELECT pg_temp.op('d7', 1, 'CREATE', 'SP_NOTE', 'n1', '{"body": "forbidden"}');
SELECT pg_temp.op('d7', 2, 'CREATE', 'SP_NOTE', 'n2', '{"body": "fine"}', '{"dependsOn": ["d7-1"]}');
SELECT pg_temp.op('d7', 3, 'CREATE', 'SP_NOTE', 'n3', '{"body": "held"}', '{"dependsOn": ["d7-1"], "onDependencyFailure": "HOLD"}');
SELECT pg_temp.op('d8', 1, 'CREATE', 'SP_NOTE', 'n4', '{"body": "unrelated"}');
SELECT backup_offline.process_sync_queue();
SELECT is(pg_temp.status('d7-1') || ' ' || (SELECT last_error->>'sqlstate' FROM backup_offline.sync_queue WHERE operation_id = 'd7-1'),
	'FAILED 23514', 'a permanent failure (a check constraint) is dead-lettered with its SQLSTATE at once');
SELECT is(pg_temp.status('d7-2') || ' ' || pg_temp.status('d7-3') || ' ' || pg_temp.status('d8-1'), 'FAILED BLOCKED COMPLETED',
	'its dependents fail (or are held, HOLD), and unrelated operations go on');
SELECT is((SELECT string_agg(id, ',' ORDER BY id) FROM t_sp.notes), 'n4', 'nothing of the failed chain was applied');
DELETE FROM backup_offline.sync_queue;

-- ---- conflicts -----------------------------------------------------------------------------
INSERT INTO t_sp.visits (id, status, notes, miles) VALUES ('v10', 'SCHEDULED', 'Seen.', 10);
SELECT pg_temp.op('d9', 1, 'PATCH', 'SP_VISIT', 'v10', '{"notes": "Seen. Ate lunch.", "miles": 12}', '{"baseVersion": 1}');
SELECT pg_temp.op('d10', 1, 'PATCH', 'SP_VISIT', 'v10', '{"status": "DONE", "notes": "Seen. Office called.", "miles": 15}', '{"baseVersion": 1}');
SELECT backup_offline.process_sync_queue();
SELECT is((SELECT status || ' | ' || notes || ' | ' || miles FROM t_sp.visits WHERE id = 'v10'),
	'DONE | Seen. Ate lunch. Office called. | 17', 'two devices edited from version 1: fields merged (append, additive, untouched status)');
SELECT is((SELECT conflict_type || ' ' || status || ' ' || jsonb_array_length(conflicting_fields) FROM backup_offline.sync_conflict),
	'FIELD_LEVEL AUTO_RESOLVED 2', 'the conflict is recorded with both conflicting fields');
SELECT is((SELECT (client_version->'data'->>'miles') || ' ' || (server_version->'data'->>'miles') || ' ' || (base_version->'data'->>'miles')
			 FROM backup_offline.sync_conflict), '15 12 10', '... with the client''s, the server''s and the base values');
DELETE FROM backup_offline.sync_conflict;
DELETE FROM backup_offline.sync_queue;

-- delete against update: DELETE_WINS (default) deletes and records the losing update
INSERT INTO t_sp.visits (id, status) VALUES ('v11', 'SCHEDULED');
UPDATE t_sp.visits SET status = 'OFFICE' WHERE id = 'v11';
SELECT pg_temp.op('d11', 1, 'DELETE', 'SP_VISIT', 'v11', NULL, '{"baseVersion": 1}');
SELECT backup_offline.process_sync_queue();
SELECT is((SELECT count(*) FROM t_sp.visits WHERE id = 'v11')::text || ' ' ||
		  (SELECT conflict_type || ' ' || resolution || ' ' || (server_version->'data'->>'status') FROM backup_offline.sync_conflict),
	'0 DELETE_UPDATE delete_wins OFFICE', 'DELETE_WINS: deleted, and the office''s losing update is on record');
DELETE FROM backup_offline.sync_conflict;
DELETE FROM backup_offline.sync_queue;

-- MANUAL: nothing decided automatically; later operations of the device on that entity wait
INSERT INTO t_sp.notes (id, body) VALUES ('n10', 'first');
UPDATE t_sp.notes SET body = 'office' WHERE id = 'n10';
SELECT pg_temp.op('d12', 1, 'PATCH', 'SP_NOTE', 'n10', '{"body": "device"}', '{"baseVersion": 1}');
SELECT pg_temp.op('d12', 2, 'PATCH', 'SP_NOTE', 'n10', '{"body": "device again"}', '{"baseVersion": 2}');
SELECT pg_temp.op('d12', 3, 'CREATE', 'SP_NOTE', 'n11', '{"body": "other entity"}');
SELECT backup_offline.process_sync_queue();
SELECT is(pg_temp.status('d12-1') || ' ' || pg_temp.status('d12-2') || ' ' || pg_temp.status('d12-3'), 'CONFLICT PENDING COMPLETED',
	'a MANUAL conflict waits; the device''s next operation on that note waits behind it; another entity goes on');
SELECT is((SELECT body FROM t_sp.notes WHERE id = 'n10') || ' ' ||
		  (SELECT conflict_type || ' ' || status || ' ' || requires_manual_resolution FROM backup_offline.sync_conflict),
	'office UPDATE_UPDATE OPEN true', 'the server''s value stays until a person resolves it');

-- ---- resolution by a person ------------------------------------------------------------------
\set nurse 'eeeeeeee-0000-4000-8000-0000000000e8'
SELECT id AS c1 FROM backup_offline.sync_conflict WHERE status = 'OPEN' \gset
SELECT throws_ok(format($q$SELECT backup_offline.resolve_conflict(%L, 'BOTH', %L)$q$, :'c1', :'nurse'), '22023',
	'invalid strategy: ''BOTH''', 'an unknown strategy is refused');
SELECT throws_ok(format($q$SELECT backup_offline.resolve_conflict(%L, 'FIELD_LEVEL_MERGE', %L)$q$, :'c1', :'nurse'), '22023',
	'strategy FIELD_LEVEL_MERGE needs resolution, a JSON object of fields', 'FIELD_LEVEL_MERGE needs the chosen fields');
SELECT is(backup_offline.resolve_conflict(:'c1', 'FIELD_LEVEL_MERGE', :'nurse', '{"body": "merged by the nurse"}', 'called the office')->>'status',
	'RESOLVED', 'resolve_conflict with the fields a person chose');
SELECT is((SELECT body FROM t_sp.notes WHERE id = 'n10') || ' | ' || pg_temp.status('d12-1') || ' | ' ||
		  (SELECT resolution_strategy || ' ' || resolved_by || ' ' || notes FROM backup_offline.sync_conflict WHERE id = :'c1'),
	'merged by the nurse | COMPLETED | FIELD_LEVEL_MERGE eeeeeeee-0000-4000-8000-0000000000e8 called the office',
	'the row takes the chosen fields, the operation completes, the decision is on the conflict');
SELECT is((SELECT count(*) FROM backup_offline.audit_pending WHERE object_type = 'sync_conflict' AND object_id = :'c1'), 1::bigint,
	'the resolution is audited');
SELECT throws_ok(format($q$SELECT backup_offline.resolve_conflict(%L, 'SERVER_WINS', %L)$q$, :'c1', :'nurse'), '55000',
	format('conflict %s is RESOLVED', :'c1'), 'a resolved conflict is not decided again');
SELECT backup_offline.process_sync_queue();
SELECT is(pg_temp.status('d12-2'), 'CONFLICT', 'the device''s next operation on the note ran once released (and conflicts in turn)');
SELECT is(backup_offline.resolve_conflict((SELECT id FROM backup_offline.sync_conflict WHERE status = 'OPEN'), 'CLIENT_WINS', :'nurse')->>'status',
	'RESOLVED', 'CLIENT_WINS');
SELECT is((SELECT body FROM t_sp.notes WHERE id = 'n10'), 'device again', '... writes the device''s version');
DELETE FROM backup_offline.sync_conflict;
DELETE FROM backup_offline.sync_queue;

-- ---- expiry and arguments ------------------------------------------------------------------
SELECT pg_temp.op('d13', 1, 'CREATE', 'SP_VISIT', 'v13', '{"status": "late"}',
	jsonb_build_object('expiresAt', to_char(now() - interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
SELECT is(backup_offline.process_sync_queue()->>'expired', '1', 'an operation past expiresAt expires');
SELECT is(pg_temp.status('d13-1') || ' ' || (SELECT count(*) FROM t_sp.visits WHERE id = 'v13'), 'EXPIRED 0', '... unapplied');
SELECT throws_ok($$SELECT backup_offline.process_sync_queue(0)$$, '22023', 'invalid max_operations: 0', 'max_operations is checked');

-- ---- after review: keys of char(n), a device's failed edit in its chain, a stamped clock's cap ------
CREATE TABLE t_sp.codes (code char(3) PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a8', label text);
SELECT backup_offline.register_sync_entity('SP_CODE', 't_sp.codes', '{"organizationColumn": "organization_id"}') IS NOT NULL AS r4 \gset
INSERT INTO t_sp.codes (code, label) VALUES ('abc', 'first'), ('a', 'single');
SELECT pg_temp.op('d20', 1, 'PATCH', 'SP_CODE', 'abc', '{"label": "changed by device"}', '{"baseVersion": 1}');
SELECT pg_temp.op('d21', 1, 'PATCH', 'SP_CODE', 'axy', '{"label": "for axy"}', '{"baseVersion": 1}');
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is((SELECT string_agg(code || '=' || label, ' ' ORDER BY code) FROM t_sp.codes), 'a=single abc=changed by device',
	'a char(3) key: the row of the id is written, not the one a cast to char cuts it to');
SELECT is(pg_temp.status('d21-1'), 'FAILED', '... and an id no row has fails (no conflict against another row)');

CREATE TABLE t_sp.tally (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a8',
	label text, n int NOT NULL DEFAULT 0, k int);
SELECT backup_offline.register_sync_entity('SP_TALLY', 't_sp.tally', '{"organizationColumn": "organization_id", "fieldPolicies": {"n": "additive"}}')
	IS NOT NULL AS r5 \gset
INSERT INTO t_sp.tally (id, n) VALUES ('a', 10), ('b', 10);
-- on both rows the device counted 11 (refused: k is no number) then 12; the office edits b's label meanwhile
SELECT pg_temp.op('d22', 1, 'PATCH', 'SP_TALLY', 'a', '{"n": 11, "k": "oops"}', '{"baseVersion": 1}');
SELECT pg_temp.op('d22', 2, 'PATCH', 'SP_TALLY', 'a', '{"n": 12}', '{"baseVersion": 1}');
SELECT pg_temp.op('d22', 3, 'PATCH', 'SP_TALLY', 'b', '{"n": 11, "k": "oops"}', '{"baseVersion": 1}');
SELECT pg_temp.op('d22', 4, 'PATCH', 'SP_TALLY', 'b', '{"n": 12}', '{"baseVersion": 1}');
UPDATE t_sp.tally SET label = 'office' WHERE id = 'b';
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is((SELECT string_agg(id || '=' || n, ' ' ORDER BY id) FROM t_sp.tally), 'a=12 b=12',
	'a failed edit is not part of the device''s base: written as sent or merged, the same count');
SELECT is((SELECT count(*) FROM backup_offline.sync_conflict WHERE entity_type = 'SP_TALLY'), 0::bigint, '... and no conflict with itself');

-- sync_stamp never sets a clock later than queue_operations accepts
UPDATE t_sp.tally SET label = 'stamped' WHERE id = 'a';
SELECT count(*) AS stamped FROM backup_offline.sync_stamp((SELECT id FROM backup_offline.sync_entity WHERE entity_type = 'SP_TALLY'),
	'{a}', ARRAY[7258118400000::bigint << 16]) \gset
SELECT is((SELECT :stamped = 1 AND backup_offline.hlc_time(r.hlc) BETWEEN now() AND clock_timestamp() + interval '301 seconds'
			 FROM backup_offline.sync_row r WHERE r.row_key = 'a'
			  AND r.entity_id = (SELECT id FROM backup_offline.sync_entity WHERE entity_type = 'SP_TALLY')), true,
	'a clock in 2200 is capped at the accepted skew');

SELECT * FROM finish();
ROLLBACK;
