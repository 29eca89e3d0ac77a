-- queue_operation(s): SPEC.md's payload rules per operation, clocks, the
-- idempotency of retried uploads, dependencies, device bookkeeping,
-- organizations and privileges.  Processing comes with process_sync_queue.
BEGIN;
SELECT plan(29);
\ir lib/errors.psql

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a7'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b7'

-- a clock reading for now (+ offset seconds)
CREATE FUNCTION pg_temp.hlc(offset_s int DEFAULT 0) RETURNS bigint LANGUAGE sql AS $$
	SELECT (((extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_s * 1000) << 16)
$$;
-- an operation with defaults, changed by extra
CREATE FUNCTION pg_temp.op(seq int, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('deviceId', 'tablet-7', 'operationId', 'op-' || seq, 'deviceSeq', seq, 'clientHlc', pg_temp.hlc(),
		'operation', 'UPDATE', 'entityType', 'SQ_VISIT', 'entityId', 'v1', 'payload', '{"status": "DONE"}'::jsonb, 'baseVersion', 1)
		|| extra
$$;
CREATE FUNCTION pg_temp.q(ops jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L::jsonb)', ops))
$$;

CREATE SCHEMA t_sq;
CREATE TABLE t_sq.visits (id text PRIMARY KEY, organization_id uuid, status text);
SELECT backup_offline.register_sync_entity('SQ_VISIT', 't_sq.visits', '{"organizationColumn": "organization_id"}') IS NOT NULL AS registered \gset
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
SET backup_offline.organization_id = :'org_a';

-- ---- payload rules, one per operation ------------------------------------------------
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "CREATE"}'))),
	'22023: ops[0].baseVersion: a CREATE has no base version', 'a CREATE has no baseVersion');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "CREATE", "payload": {"id": "v2"}}') - 'baseVersion')),
	'22023: ops[0].payload: its key differs from entityId', 'a CREATE''s key, if present, is entityId');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1) - 'baseVersion')),
	'22023: ops[0].baseVersion: a UPDATE needs the version the device edited (a positive integer)', 'an UPDATE needs its base version');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "PATCH", "payload": [1]}'))),
	'22023: ops[0].payload: a PATCH needs the fields as a JSON object', 'a PATCH carries an object');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "DELETE"}'))),
	'22023: ops[0].payload: a DELETE carries no payload', 'a DELETE carries no payload');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "DELETE", "payload": null}') - 'baseVersion')),
	'22023: ops[0].baseVersion: a DELETE needs the version the device edited (a positive integer)', 'a DELETE needs its base version');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"operation": "REPLACE"}'))),
	'22023: ops[0].operation: "REPLACE" is not CREATE, UPDATE, DELETE, PATCH, MERGE or UPSERT', 'unknown operations');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"entityType": "Visit"}'))),
	'22023: ops[0].entityType: "Visit" is not a registered sync entity', 'the entity type must be registered');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"priority": "URGENT"}'))),
	'22023: ops[0].priority: "URGENT" is not CRITICAL, HIGH, NORMAL, LOW or BACKGROUND', 'priorities');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"deviceSeq": 0}'))), '22023: ops[0].deviceSeq: a positive integer is required',
	'device sequence numbers start at 1');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"dependsOn": ["op-1"]}'))), '22023: ops[0].dependsOn: an operation cannot depend on itself',
	'no self-dependency');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, '{"retries": 3}'))), '22023: ops[0] has an unknown key retries', 'unknown keys');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1), pg_temp.op(2, '{"payload": "x"}'))),
	'22023: ops[1].payload: a UPDATE needs the fields as a JSON object', 'the failing operation is named by its index');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1), pg_temp.op(2, '{"expiresAt": "2026-02-30T08:00:00Z"}'))),
	'22023: ops[1].expiresAt: 2026-02-30T08:00:00Z is not a valid time', 'an expiresAt of the right shape that is no time is named');
SELECT is((SELECT count(*) FROM backup_offline.sync_queue), 0::bigint, '... and nothing of a batch with an invalid operation is queued');

-- ---- clocks --------------------------------------------------------------------------------
SELECT alike(pg_temp.q(jsonb_build_array(pg_temp.op(1, jsonb_build_object('clientHlc', pg_temp.hlc(3600))))),
	'22023: ops[0].clientHlc is 3600._ s in the future (the device clock is ahead; at most 300 s are accepted)',
	'a clock an hour ahead is refused');
SET LOCAL backup_offline.sync_max_clock_skew = '2h';
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(1, jsonb_build_object('clientHlc', pg_temp.hlc(3600)))))::text, 'no error',
	'... accepted within a larger backup_offline.sync_max_clock_skew');
RESET backup_offline.sync_max_clock_skew;
SELECT is((SELECT max_skew_ms BETWEEN 3590000 AND 3600000 FROM backup_offline.sync_device WHERE device_id = 'tablet-7'), true,
	'the device''s largest skew is recorded');

-- ---- idempotency --------------------------------------------------------------------------
SELECT is((backup_offline.queue_operations(jsonb_build_array(pg_temp.op(2, '{"priority": "CRITICAL"}'), pg_temp.op(3, '{"dependsOn": ["op-2"]}')))
			->1->>'status'), 'BLOCKED', 'an operation with dependencies waits BLOCKED');
SELECT is((SELECT string_agg(operation_id || ':' || status || ':' || priority, ' ' ORDER BY device_seq) FROM backup_offline.sync_queue),
	'op-1:PENDING:NORMAL op-2:PENDING:CRITICAL op-3:BLOCKED:NORMAL', 'three operations queued');
SELECT is(backup_offline.queue_operations(jsonb_build_array(pg_temp.op(2, '{"priority": "CRITICAL"}')))->0->>'duplicate', 'true',
	'a retried upload is recognised ...');
SELECT is((SELECT count(*) FROM backup_offline.sync_queue), 3::bigint, '... and not queued again');
SELECT is(backup_offline.queue_operation(pg_temp.op(2, '{"priority": "CRITICAL"}')),
	(SELECT id FROM backup_offline.sync_queue WHERE operation_id = 'op-2'), 'queue_operation returns the stored operation''s id');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(2, '{"payload": {"status": "OTHER"}}'))),
	'23505: operation op-2 was already queued by this device with other content', 'the same operationId with other content is refused');
SELECT is(pg_temp.q(jsonb_build_array(pg_temp.op(9, '{"operationId": "op-x", "deviceSeq": 2}'))),
	'23505: ops[0].deviceSeq: 2 is already the number of operation op-2 of this device', 'a device sequence number is used once');
SELECT is((SELECT last_seq FROM backup_offline.sync_device WHERE device_id = 'tablet-7'), 3::bigint, 'the device''s highest sequence number');

-- ---- organizations and privileges ---------------------------------------------------------
CREATE ROLE t_sq_app_a IN ROLE backup_offline_app;
CREATE ROLE t_sq_app_b IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member VALUES ('t_sq_app_a', :'org_a'), ('t_sq_app_b', :'org_b');
RESET backup_offline.organization_id;
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC', pg_my_temp_schema()::regnamespace);
END $$;
SET LOCAL ROLE t_sq_app_a;
SELECT is((SELECT count(*) FROM backup_offline.sync_queue), 3::bigint, 'the application of the organization sees its operations');
SET LOCAL ROLE t_sq_app_b;
SELECT is((SELECT count(*) FROM backup_offline.sync_queue), 0::bigint, 'another organization sees none of them');
RESET ROLE;
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_function_privilege(r, 'backup_offline.queue_operations(jsonb)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_app']::text[], 'who may queue operations');

SELECT * FROM finish();
ROLLBACK;
