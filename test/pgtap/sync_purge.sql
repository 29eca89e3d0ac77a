-- purge_sync_queue: settled operations purged as a prefix of each device's
-- numbers; a gap, a waiting operation, a too recent one and one a waiting
-- operation needs end the prefix; operations with conflict records are
-- kept; a purged operation uploaded again is answered PURGED and applied
-- neither again nor twice; bad input changes nothing.
BEGIN;
SELECT plan(13);
\ir lib/errors.psql

\set org 'aaaaaaaa-0000-4000-8000-0000000000b6'
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
SET backup_offline.organization_id = :'org';
CREATE SCHEMA t_pu;
CREATE TABLE t_pu.counters (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000b6',
	hits int NOT NULL DEFAULT 0, label text);
INSERT INTO t_pu.counters (id) SELECT 'c' || g FROM generate_series(1, 9) g;
SELECT backup_offline.register_sync_entity('PU_COUNTER', 't_pu.counters',
	'{"organizationColumn": "organization_id", "fieldPolicies": {"hits": "additive"}}') IS NOT NULL AS registered \gset

-- operation seq of device dev on counter id: hits set to the device's running count n
CREATE FUNCTION pg_temp.op(dev text, seq int, id text, n int, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object('deviceId', dev, 'operationId', dev || '-' || seq, 'deviceSeq', seq,
		'clientHlc', (extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16, 'operation', 'PATCH', 'entityType', 'PU_COUNTER',
		'entityId', id, 'payload', jsonb_build_object('hits', n), 'baseVersion', 1) || extra
$$;
CREATE FUNCTION pg_temp.seqs(dev text) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(device_seq::text, ',' ORDER BY device_seq), '') FROM backup_offline.sync_queue WHERE device_id = dev
$$;

-- device a: 1..4 on its own counters, applied; device b: 1, 2 then a gap (4 arrives, 3 does not)
SELECT backup_offline.queue_operations(jsonb_build_array(pg_temp.op('a', 1, 'c1', 1), pg_temp.op('a', 2, 'c2', 1),
	pg_temp.op('a', 3, 'c3', 1), pg_temp.op('a', 4, 'c4', 1))) IS NOT NULL AS queued \gset
SELECT backup_offline.queue_operations(jsonb_build_array(pg_temp.op('b', 1, 'c5', 1), pg_temp.op('b', 2, 'c6', 1),
	pg_temp.op('b', 4, 'c7', 1))) IS NOT NULL AS queued \gset
SELECT (backup_offline.process_sync_queue()->>'completed')::int AS completed \gset
-- device a's 5th waits (a later operation on c4 keeps a-4: its merge base), device a's 3rd recently settled
SELECT backup_offline.queue_operation(pg_temp.op('a', 5, 'c4', 2, '{"expiresAt": "2099-01-01T00:00:00Z", "dependsOn": ["a-9"]}')) IS NOT NULL AS q5 \gset
UPDATE backup_offline.sync_queue SET completed_at = now() - interval '40 days' WHERE status = 'COMPLETED' AND operation_id <> 'a-3';

SELECT is(pg_temp.error_of($$SELECT backup_offline.purge_sync_queue('2 hours')$$),
	'22023: invalid older_than: 02:00:00 / Keep at least a day of settled operations (devices retry uploads), such as purge_sync_queue(''30 days'').',
	'less than a day is refused');
SELECT is(backup_offline.purge_sync_queue('30 days'), '{"kept": 0, "purged": 4, "devices": 2}',
	'a-1, a-2 and b-1, b-2 purged ...');
SELECT is(pg_temp.seqs('a') || ' / ' || pg_temp.seqs('b'), '3,4,5 / 4',
	'... a-3 (too recent) ends a''s prefix, the gap at 3 ends b''s');
SELECT is((SELECT string_agg(device_id || ':' || purged_seq, ' ' ORDER BY device_id) FROM backup_offline.sync_device), 'a:2 b:2',
	'each device''s purged prefix is recorded');

-- a purged operation uploaded again: answered PURGED, not queued, not applied again
SELECT is((SELECT string_agg(r->>'operationId' || ':' || (r->>'status') || ':' || (r->>'duplicate'), ' ')
			 FROM jsonb_array_elements(backup_offline.queue_operations(jsonb_build_array(pg_temp.op('a', 1, 'c1', 1), pg_temp.op('b', 3, 'c8', 1)))) r),
	'a-1:PURGED:true b-3:PENDING:false', 'a purged upload is a duplicate (PURGED); the missing b-3 is queued');
SELECT is(pg_temp.seqs('a'), '3,4,5', '... a-1 not queued again');
SELECT is((backup_offline.process_sync_queue()->>'completed')::int, 1, 'only b-3 applies');
SELECT is((SELECT string_agg(id || '=' || hits, ' ' ORDER BY id) FROM t_pu.counters WHERE id IN ('c1', 'c8')), 'c1=1 c8=1',
	'c1 counted once');

-- a-3 ages; a-4 is kept while a-5 waits on the same counter; b's prefix now runs through 4
UPDATE backup_offline.sync_queue SET completed_at = now() - interval '40 days' WHERE status = 'COMPLETED';
SELECT is(backup_offline.purge_sync_queue('30 days'), '{"kept": 0, "purged": 3, "devices": 2}', 'a-3, b-3 and b-4 purged');
SELECT is(pg_temp.seqs('a') || ' / ' || pg_temp.seqs('b'), '4,5 / ', '... a-4 kept: a-5 waits on its row');

-- a conflict record keeps its operation, without ending the prefix
UPDATE backup_offline.sync_queue SET status = 'CANCELLED', completed_at = now() - interval '40 days' WHERE operation_id = 'a-5';
INSERT INTO backup_offline.sync_conflict (organization_id, queue_id, device_id, conflict_type, entity_type, entity_id, client_version,
	resolution, status, requires_manual_resolution)
SELECT :'org', id, 'a', 'UPDATE_UPDATE', 'PU_COUNTER', 'c4', '{}', 'merged', 'AUTO_RESOLVED', false
  FROM backup_offline.sync_queue WHERE operation_id = 'a-4';
SELECT is(backup_offline.purge_sync_queue('30 days'), '{"kept": 1, "purged": 1, "devices": 1}', 'a-4 kept for its conflict record, a-5 purged');
SELECT is(pg_temp.seqs('a') || ' ' || (SELECT purged_seq FROM backup_offline.sync_device WHERE device_id = 'a'), '4 5',
	'... and a''s prefix runs past it');
SELECT is((SELECT r->>'status' FROM jsonb_array_elements(backup_offline.queue_operations(jsonb_build_array(pg_temp.op('a', 4, 'c4', 1)))) r),
	'COMPLETED', 'the kept operation answers its own retried upload');

SELECT * FROM finish();
ROLLBACK;
