-- Offline sessions, the sync event log and sync_statistics: each of the 16
-- event types produced by its real cause (queue_operations,
-- process_sync_queue, resolve_conflict, pull_changes, the session and
-- dead-letter functions) and checked with its detail; the session
-- lifecycle (begin, operations and pulls counted, end with its summary,
-- abandoned and timed-out sessions) and its validation; statistics against
-- figures computed in SQL over a known data set (counts, percentile_cont
-- latencies overall and per priority); cancel and replay (audited);
-- organizations, privileges and the purge.
BEGIN;
SELECT plan(114);
\ir lib/errors.psql

\set org_a 'aaaaaaaa-0000-4000-8000-0000000000a9'
\set org_b 'bbbbbbbb-0000-4000-8000-0000000000b9'
\set nurse 'eeeeeeee-0000-4000-8000-0000000000e9'
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
SET backup_offline.organization_id = :'org_a';

CREATE SCHEMA t_ss;
CREATE TABLE t_ss.visits (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a9',
	status text, notes text, miles int NOT NULL DEFAULT 0);
CREATE TABLE t_ss.notes (id text PRIMARY KEY, organization_id uuid NOT NULL DEFAULT 'aaaaaaaa-0000-4000-8000-0000000000a9',
	body text CHECK (body <> 'forbidden'));
-- a note with body 'flaky' fails transiently (a serialization failure): the processor retries it
CREATE FUNCTION t_ss.flaky() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.body = 'flaky' THEN
		RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER flaky BEFORE INSERT OR UPDATE ON t_ss.notes FOR EACH ROW EXECUTE FUNCTION t_ss.flaky();
SELECT backup_offline.register_sync_entity('SS_VISIT', 't_ss.visits', '{"organizationColumn": "organization_id",
	"fieldPolicies": {"notes": "append", "miles": "additive"}, "tombstoneLifetime": "1 hour"}') IS NOT NULL AS r1 \gset
SELECT backup_offline.register_sync_entity('SS_NOTE', 't_ss.notes',
	'{"organizationColumn": "organization_id", "defaultStrategy": "MANUAL", "deletePolicy": "MANUAL"}') IS NOT NULL AS r2 \gset

-- a clock reading for now (+ offset ms)
CREATE FUNCTION pg_temp.hlc(offset_ms bigint DEFAULT 0) RETURNS bigint LANGUAGE sql AS $$
	SELECT (((extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_ms) << 16)
$$;
-- an operation of device dev, number seq, with extra keys
CREATE FUNCTION pg_temp.op(dev text, seq int, operation text, entity text, id text, payload jsonb DEFAULT NULL, extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object('deviceId', dev, 'operationId', dev || '-' || seq, 'deviceSeq', seq,
		'clientHlc', pg_temp.hlc(seq), 'operation', operation, 'entityType', entity, 'entityId', id, 'payload', payload)) || extra
$$;
CREATE FUNCTION pg_temp.queue(dev text, seq int, operation text, entity text, id text, payload jsonb DEFAULT NULL, extra jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE sql AS $$
	SELECT backup_offline.queue_operation(pg_temp.op(dev, seq, operation, entity, id, payload, extra))
$$;
CREATE FUNCTION pg_temp.qid(opid text) RETURNS uuid LANGUAGE sql AS $$
	SELECT id FROM backup_offline.sync_queue WHERE operation_id = opid
$$;
-- the events of an operation, in order
CREATE FUNCTION pg_temp.events(opid text) RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(event_type::text, ' ' ORDER BY id) FROM backup_offline.sync_event WHERE operation_id = opid
$$;
-- the detail of the last event of a type (of an operation)
CREATE FUNCTION pg_temp.ev(t text, opid text DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
	SELECT detail FROM backup_offline.sync_event
	 WHERE event_type = t::backup_offline.sync_event_type AND (opid IS NULL OR operation_id = opid)
	 ORDER BY id DESC LIMIT 1
$$;
-- statistics of this transaction's events
CREATE FUNCTION pg_temp.stats(filter jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
	SELECT backup_offline.sync_statistics(now() - interval '1 hour', clock_timestamp(), filter)
$$;

SELECT is((SELECT string_agg(t::text, ' ' ORDER BY t) FROM unnest(enum_range(NULL::backup_offline.sync_event_type)) t),
	'SESSION_STARTED SESSION_ENDED OPERATION_QUEUED OPERATION_DUPLICATE OPERATION_BLOCKED OPERATION_RELEASED OPERATION_APPLIED '
	'OPERATION_RETRY_SCHEDULED OPERATION_DEAD_LETTERED OPERATION_EXPIRED OPERATION_CANCELLED OPERATION_REPLAYED '
	'CONFLICT_DETECTED CONFLICT_RESOLVED PULL_COMPLETED RESYNC_REQUIRED', 'the 16 sync event types');

-- the event triggers hash-join old and new rows whatever size of statement their plans were made for
SELECT is((SELECT string_agg(proname || ':' || array_to_string(proconfig, ','), ' ' ORDER BY proname) FROM pg_proc
			WHERE proname IN ('sync_queue_events', 'sync_conflict_events') AND pronamespace = 'backup_offline'::regnamespace),
	'sync_conflict_events:search_path=pg_catalog, pg_temp,enable_nestloop=off,jit=off '
	'sync_queue_events:search_path=pg_catalog, pg_temp,enable_nestloop=off,jit=off',
	'the event triggers run without nested loops (a plan made for one row is not quadratic for many)');

-- ---- a session begins --------------------------------------------------------------------
SELECT backup_offline.begin_sync_session('tab-1', jsonb_build_object('offlineSince', now() - interval '3 hours',
	'appVersion', '4.2.0', 'platform', 'android', 'networkType', 'CELLULAR', 'pendingOperations', 9, 'userId', :'nurse')) AS s1 \gset
SELECT is((SELECT status || ' ' || device_id || ' ' || user_id || ' ' || (offline_since = now() - interval '3 hours') || ' ' || (ended_at IS NULL)
			 FROM backup_offline.sync_session WHERE id = :'s1'),
	'ACTIVE tab-1 eeeeeeee-0000-4000-8000-0000000000e9 true true', 'begin_sync_session: an ACTIVE session with the device''s offlineSince');
SELECT is((SELECT details FROM backup_offline.sync_session WHERE id = :'s1'),
	'{"appVersion": "4.2.0", "platform": "android", "networkType": "CELLULAR", "pendingOperations": 9}'::jsonb,
	'... and its app and network details');
SELECT is((SELECT (e.detail->>'offlineMs')::numeric = round(extract(epoch FROM s.started_at - s.offline_since) * 1000, 3)
				  AND e.detail->>'networkType' = 'CELLULAR' AND e.detail->>'appVersion' = '4.2.0' AND e.session_id = s.id
				  AND e.device_id = 'tab-1' AND e.organization_id = :'org_a'
			 FROM backup_offline.sync_event e JOIN backup_offline.sync_session s ON s.id = e.session_id
			WHERE e.event_type = 'SESSION_STARTED'), true,
	'SESSION_STARTED: the session, its device, how long it was offline, its app and network');

SELECT alike(pg_temp.error_short(format('SELECT backup_offline.begin_sync_session(%L, %L)', 'tab-9',
			jsonb_build_object('offlineSince', clock_timestamp() + interval '2 hours'))),
	'22023: details.offlineSince is 7___._ s in the future (the device clock is ahead; at most 300 s are accepted)',
	'offlineSince in the future beyond the clock skew is refused');
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab-9', '{"offlineSince": "2020-01-01T00:00:00Z"}')$$),
	'22023: details.offlineSince 2020-01-01T00:00:00Z is more than a year ago', 'an offlineSince more than a year back is refused');
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab-9', '{"offlineSince": "yesterday"}')$$),
	'22023: invalid details.offlineSince: "yesterday"', 'offlineSince is an ISO 8601 time');
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab-9', '{"battery": 80}')$$),
	'22023: unknown key details.battery', 'unknown details are refused');
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab-9', '{"networkType": "5G"}')$$),
	'22023: invalid details.networkType: "5G"', 'network types are checked');
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab 9')$$),
	'22023: invalid device_id: ''tab 9''', 'device ids are checked');
SELECT is((SELECT count(*) FROM backup_offline.sync_session), 1::bigint, 'the refused sessions left nothing');

-- ---- operations of the session -----------------------------------------------------------
INSERT INTO t_ss.visits (id, status, notes, miles) VALUES ('v10', 'SCHEDULED', 'Seen.', 10);
UPDATE t_ss.visits SET notes = 'Seen. Office called.', miles = 12 WHERE id = 'v10';
INSERT INTO t_ss.notes (id, body) VALUES ('n10', 'first');
UPDATE t_ss.notes SET body = 'office' WHERE id = 'n10';
SELECT is(jsonb_array_length(backup_offline.queue_operations(jsonb_build_array(
	pg_temp.op('tab-1', 1, 'CREATE', 'SS_VISIT', 'v1', '{"status": "SCHEDULED"}', jsonb_build_object('priority', 'CRITICAL', 'sessionId', :'s1')),
	pg_temp.op('tab-1', 2, 'CREATE', 'SS_NOTE', 'n1', '{"body": "forbidden"}', jsonb_build_object('sessionId', :'s1')),
	pg_temp.op('tab-1', 3, 'CREATE', 'SS_NOTE', 'n2', '{"body": "fine"}', '{"dependsOn": ["tab-1-1"]}'),
	pg_temp.op('tab-1', 4, 'CREATE', 'SS_NOTE', 'n3', '{"body": "flaky"}', '{"maxRetries": 1}'),
	pg_temp.op('tab-1', 5, 'CREATE', 'SS_NOTE', 'n4', '{"body": "late"}',
			   jsonb_build_object('expiresAt', to_char(now() - interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))),
	pg_temp.op('tab-1', 6, 'PATCH', 'SS_VISIT', 'v10', '{"notes": "Seen. Ate lunch.", "miles": 15}', '{"baseVersion": 1}'),
	pg_temp.op('tab-1', 7, 'PATCH', 'SS_NOTE', 'n10', '{"body": "device"}', '{"baseVersion": 1}')))), 7,
	'a batch uploaded in the session');
SELECT is((SELECT count(*) FILTER (WHERE session_id = :'s1') || '/' || count(*) FROM backup_offline.sync_queue), '7/7',
	'its operations belong to the session, named (sessionId) or not');
SELECT is((SELECT string_agg(event_type || ':' || operation_id, ' ' ORDER BY id) FROM backup_offline.sync_event
			WHERE event_type IN ('OPERATION_QUEUED', 'OPERATION_BLOCKED') AND session_id = :'s1'),
	'OPERATION_QUEUED:tab-1-1 OPERATION_QUEUED:tab-1-2 OPERATION_QUEUED:tab-1-3 OPERATION_QUEUED:tab-1-4 OPERATION_QUEUED:tab-1-5 '
	'OPERATION_QUEUED:tab-1-6 OPERATION_QUEUED:tab-1-7 OPERATION_BLOCKED:tab-1-3',
	'OPERATION_QUEUED for each, OPERATION_BLOCKED for the one waiting for a dependency');
SELECT is(jsonb_build_array(pg_temp.ev('OPERATION_QUEUED', 'tab-1-1'), pg_temp.ev('OPERATION_QUEUED', 'tab-1-2')),
	'[{"priority": "CRITICAL"}, {"priority": "NORMAL"}]', 'OPERATION_QUEUED detail: the priority');
SELECT is(pg_temp.ev('OPERATION_BLOCKED', 'tab-1-3'), '{"dependsOn": ["tab-1-1"], "onDependencyFailure": "FAIL"}',
	'OPERATION_BLOCKED detail: what it waits for');
SELECT is((SELECT entity_type || ' ' || entity_id || ' ' || queue_id || ' ' || device_id FROM backup_offline.sync_event
			WHERE event_type = 'OPERATION_QUEUED' AND operation_id = 'tab-1-6'),
	'SS_VISIT v10 ' || pg_temp.qid('tab-1-6') || ' tab-1', '... with the operation''s entity, queue row and device');

-- a retried upload
SELECT is(backup_offline.queue_operations(jsonb_build_array(
	pg_temp.op('tab-1', 1, 'CREATE', 'SS_VISIT', 'v1', '{"status": "SCHEDULED"}', jsonb_build_object('priority', 'CRITICAL', 'sessionId', :'s1'))))
	->0->>'duplicate', 'true', 'an operation uploaded again is a duplicate');
SELECT is(pg_temp.ev('OPERATION_DUPLICATE', 'tab-1-1'), jsonb_build_object('status', 'PENDING', 'queuedInSession', :'s1',
	'enqueuedAt', (SELECT enqueued_at FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-1')),
	'OPERATION_DUPLICATE detail: the stored status, when and in which session it was queued');
SELECT is((SELECT operations_uploaded || ' ' || duplicates FROM backup_offline.sync_session WHERE id = :'s1'), '7 1',
	'the session counts the operations its device uploaded and the duplicates');

-- ---- processing --------------------------------------------------------------------------
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is(pg_temp.events('tab-1-1'), 'OPERATION_QUEUED OPERATION_DUPLICATE OPERATION_APPLIED', 'an applied operation''s events');
SELECT is(pg_temp.ev('OPERATION_APPLIED', 'tab-1-1'),
	(SELECT jsonb_build_object('fromStatus', 'PENDING', 'retryCount', 0, 'result', result,
		'applyMs', round(extract(epoch FROM completed_at - enqueued_at) * 1000, 3))
	   FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-1'),
	'OPERATION_APPLIED detail: from which status, the result, the apply latency');
SELECT is(pg_temp.events('tab-1-3'), 'OPERATION_QUEUED OPERATION_BLOCKED OPERATION_RELEASED OPERATION_APPLIED',
	'a dependent operation: blocked, released when its dependency completed, applied');
SELECT is(pg_temp.ev('OPERATION_RELEASED', 'tab-1-3'), '{"dependsOn": ["tab-1-1"]}', 'OPERATION_RELEASED detail');
SELECT is(pg_temp.events('tab-1-2'), 'OPERATION_QUEUED OPERATION_DEAD_LETTERED', 'a permanent failure is dead-lettered');
SELECT is((SELECT (d - 'error') || jsonb_build_object('sqlstate', d->'error'->'sqlstate') FROM pg_temp.ev('OPERATION_DEAD_LETTERED', 'tab-1-2') d),
	'{"fromStatus": "PENDING", "retryCount": 1, "sqlstate": "23514"}', 'OPERATION_DEAD_LETTERED detail: the error');
SELECT is(pg_temp.events('tab-1-4'), 'OPERATION_QUEUED OPERATION_RETRY_SCHEDULED', 'a transient failure schedules a retry');
SELECT is(pg_temp.ev('OPERATION_RETRY_SCHEDULED', 'tab-1-4'),
	(SELECT jsonb_build_object('retryCount', 1, 'nextAttemptAt', next_attempt_at, 'error', last_error)
	   FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-4'),
	'OPERATION_RETRY_SCHEDULED detail: the retry count, when, the error');
SELECT is(pg_temp.ev('OPERATION_RETRY_SCHEDULED', 'tab-1-4')->'error'->>'sqlstate', '40001', '... a serialization failure');
SELECT is(pg_temp.events('tab-1-5') || ' ' || (pg_temp.ev('OPERATION_EXPIRED', 'tab-1-5')->>'fromStatus'),
	'OPERATION_QUEUED OPERATION_EXPIRED PENDING', 'an operation past its expiresAt expires');
SELECT is(pg_temp.events('tab-1-6'), 'OPERATION_QUEUED CONFLICT_DETECTED OPERATION_APPLIED',
	'a conflict merged field by field: detected, applied');
SELECT is((SELECT e.detail || jsonb_build_object('conflict', e.conflict_id = c.id, 'session', e.session_id = :'s1')
			 FROM backup_offline.sync_event e JOIN backup_offline.sync_conflict c ON c.queue_id = e.queue_id
			WHERE e.event_type = 'CONFLICT_DETECTED' AND e.operation_id = 'tab-1-6'),
	'{"status": "AUTO_RESOLVED", "type": "FIELD_LEVEL", "resolution": "merged", "requiresManualResolution": false,
	  "fields": ["miles", "notes"], "conflict": true, "session": true}',
	'CONFLICT_DETECTED detail: resolved automatically, its type, resolution and fields');
SELECT is(pg_temp.events('tab-1-7'), 'OPERATION_QUEUED CONFLICT_DETECTED', 'a MANUAL conflict: detected, waiting');
SELECT is(pg_temp.ev('CONFLICT_DETECTED', 'tab-1-7'),
	'{"status": "OPEN", "type": "UPDATE_UPDATE", "resolution": "manual", "requiresManualResolution": true, "fields": ["body"]}',
	'CONFLICT_DETECTED detail: OPEN');

-- the retry comes due and fails again: its retries are used up
UPDATE backup_offline.sync_queue SET next_attempt_at = now() WHERE operation_id = 'tab-1-4';
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is(pg_temp.events('tab-1-4'), 'OPERATION_QUEUED OPERATION_RETRY_SCHEDULED OPERATION_DEAD_LETTERED',
	'moving next_attempt_at is no event; the failed retry is dead-lettered');
SELECT is((pg_temp.ev('OPERATION_DEAD_LETTERED', 'tab-1-4')->>'retryCount') || ' ' ||
		  (pg_temp.ev('OPERATION_DEAD_LETTERED', 'tab-1-4')->'error'->>'transient'), '2 true', '... with its retries and a transient error');

-- a dependency that failed: its dependent fails too
SELECT pg_temp.queue('tab-1', 8, 'CREATE', 'SS_NOTE', 'n5', '{"body": "after n1"}', '{"dependsOn": ["tab-1-2"]}') IS NOT NULL AS q8 \gset
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is(pg_temp.events('tab-1-8') || ' ' || (pg_temp.ev('OPERATION_DEAD_LETTERED', 'tab-1-8')->>'fromStatus') || ' ' ||
		  (pg_temp.ev('OPERATION_DEAD_LETTERED', 'tab-1-8')->'error'->>'message'),
	'OPERATION_QUEUED OPERATION_BLOCKED OPERATION_DEAD_LETTERED BLOCKED dependency tab-1-2 failed',
	'a dependent of a dead letter is dead-lettered from BLOCKED');

-- a person resolves the MANUAL conflict
SELECT backup_offline.resolve_conflict((SELECT id FROM backup_offline.sync_conflict WHERE status = 'OPEN'), 'CLIENT_WINS', :'nurse',
	NULL, 'checked with the office') IS NOT NULL AS resolved \gset
SELECT is(pg_temp.events('tab-1-7'), 'OPERATION_QUEUED CONFLICT_DETECTED CONFLICT_RESOLVED OPERATION_APPLIED',
	'resolve_conflict: CONFLICT_RESOLVED, then the operation applied');
SELECT is(pg_temp.ev('CONFLICT_RESOLVED', 'tab-1-7') - 'openMs',
	'{"type": "UPDATE_UPDATE", "strategy": "CLIENT_WINS", "resolvedBy": "eeeeeeee-0000-4000-8000-0000000000e9", "notes": "checked with the office"}',
	'CONFLICT_RESOLVED detail: strategy, who, notes');
SELECT is((pg_temp.ev('CONFLICT_RESOLVED', 'tab-1-7')->>'openMs')::numeric,
	(SELECT round(extract(epoch FROM resolved_at - created_at) * 1000, 3) FROM backup_offline.sync_conflict WHERE status = 'RESOLVED'),
	'... and how long it was open');
SELECT is(pg_temp.ev('OPERATION_APPLIED', 'tab-1-7')->>'fromStatus', 'CONFLICT', 'the resolved operation is applied from CONFLICT');

-- ---- dead letters: replay and cancel ---------------------------------------------------------
SELECT is(backup_offline.replay_sync_operation(pg_temp.qid('tab-1-2')) - 'lastError',
	jsonb_build_object('id', pg_temp.qid('tab-1-2'), 'operationId', 'tab-1-2', 'fromStatus', 'FAILED', 'status', 'PENDING'),
	'replay_sync_operation: a dead letter back to PENDING');
SELECT is((SELECT status || ' ' || retry_count || ' ' || (last_error IS NULL) || ' ' || (completed_at IS NULL) || ' ' || (next_attempt_at = now())
			 FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-2'),
	'PENDING 0 true true true', '... retry count 0, due now, its error cleared');
SELECT is((SELECT (d - 'lastError') || jsonb_build_object('sqlstate', d->'lastError'->'sqlstate') FROM pg_temp.ev('OPERATION_REPLAYED', 'tab-1-2') d),
	'{"fromStatus": "FAILED", "status": "PENDING", "retryCount": 1, "sqlstate": "23514"}',
	'OPERATION_REPLAYED detail: from where, the last error kept');
SELECT is(backup_offline.cancel_sync_operation(pg_temp.qid('tab-1-2')),
	jsonb_build_object('id', pg_temp.qid('tab-1-2'), 'operationId', 'tab-1-2', 'fromStatus', 'PENDING', 'status', 'CANCELLED'),
	'cancel_sync_operation: a PENDING operation withdrawn');
SELECT is(backup_offline.cancel_sync_operation(pg_temp.qid('tab-1-8'))->>'status', 'CANCELLED', '... and a FAILED one');
SELECT is(pg_temp.events('tab-1-2'),
	'OPERATION_QUEUED OPERATION_DEAD_LETTERED OPERATION_REPLAYED OPERATION_CANCELLED', 'replayed, then cancelled');
SELECT is(pg_temp.ev('OPERATION_CANCELLED', 'tab-1-8')->>'fromStatus', 'FAILED', 'OPERATION_CANCELLED detail: from where');
SELECT is(backup_offline.replay_sync_operation(pg_temp.qid('tab-1-5'))->>'status', 'PENDING', 'an EXPIRED operation is replayed ...');
SELECT is((SELECT (expires_at IS NULL)::text FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-5'), 'true', '... and no longer expires');
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT is(pg_temp.events('tab-1-5'), 'OPERATION_QUEUED OPERATION_EXPIRED OPERATION_REPLAYED OPERATION_APPLIED', '... and applied');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.cancel_sync_operation(%L)', pg_temp.qid('tab-1-1'))),
	format('55000: sync operation %s is COMPLETED', pg_temp.qid('tab-1-1')), 'a completed operation is not cancelled');
SELECT is(pg_temp.error_of(format('SELECT backup_offline.replay_sync_operation(%L)', pg_temp.qid('tab-1-2'))),
	format('55000: sync operation %s is CANCELLED / Only FAILED (dead-lettered) and EXPIRED operations are replayed.', pg_temp.qid('tab-1-2')),
	'only dead letters and expired operations are replayed');
SELECT is(pg_temp.error_short($$SELECT backup_offline.replay_sync_operation('00000000-0000-4000-8000-000000000000')$$),
	'42704: sync operation 00000000-0000-4000-8000-000000000000 does not exist', 'unknown operations');
SELECT is(pg_temp.error_short($$SELECT backup_offline.cancel_sync_operation(NULL)$$), '22004: id is required', 'an id is required');
SELECT is((SELECT string_agg(object_id || ' ' || action || ' ' || (details->'changes'->'status'->>'new'), ', ' ORDER BY seq)
			 FROM backup_offline.audit_pending WHERE object_type = 'sync_queue'),
	pg_temp.qid('tab-1-2') || ' status_change PENDING, ' || pg_temp.qid('tab-1-2') || ' status_change CANCELLED, ' ||
	pg_temp.qid('tab-1-8') || ' status_change CANCELLED, ' || pg_temp.qid('tab-1-5') || ' status_change PENDING',
	'every replay and cancellation is audited, and nothing the processor did');

-- ---- pulls --------------------------------------------------------------------------------
SELECT is((SELECT jsonb_array_length(p->'changes') || ' ' || (p->>'hasMore') FROM backup_offline.pull_changes('tab-1', 0, 2) p), '2 true',
	'the device pulls a page');
SELECT is(pg_temp.ev('PULL_COMPLETED'),
	jsonb_build_object('rows', 2, 'since', 0, 'hasMore', true,
		'nextCursor', (SELECT last_cursor FROM backup_offline.sync_session WHERE id = :'s1')),
	'PULL_COMPLETED detail: rows, cursors');
SELECT is((SELECT pulls || ' ' || rows_pulled || ' ' || (last_cursor > 0) FROM backup_offline.sync_session WHERE id = :'s1'), '1 2 true',
	'the session counts pulls and rows');
-- an office delete, its tombstone forgotten: a cursor before it must resync
INSERT INTO t_ss.visits (id, status) VALUES ('v20', 'x');
DELETE FROM t_ss.visits WHERE id = 'v20';
SELECT backup_offline.sync_sequence() > 0 AS sequenced \gset
UPDATE backup_offline.sync_row SET changed_at = now() - interval '2 hours' WHERE deleted;
SELECT is(backup_offline.pull_changes('tab-1', 1, 100)->>'resyncRequired', 'true', 'an old cursor after forgotten tombstones');
SELECT is((SELECT e.detail = jsonb_build_object('since', 1, 'horizon', (SELECT value FROM backup_offline.sync_state WHERE name = 'tombstone_horizon'))
				  AND e.session_id = :'s1'
			 FROM backup_offline.sync_event e WHERE e.event_type = 'RESYNC_REQUIRED'), true,
	'RESYNC_REQUIRED detail: the cursor and the horizon');

-- ---- the session ends --------------------------------------------------------------------
SELECT backup_offline.end_sync_session(:'s1', '{"pendingOperations": 0, "reason": "sync done", "networkType": "WIFI"}') AS summary \gset
SELECT is(:'summary'::jsonb - 'startedAt' - 'endedAt' - 'durationMs' - 'offlineMs' - 'offlineSince' - 'lastCursor'
		  - 'applyLatencyMs' - 'endToEndLatencyMs',
	jsonb_build_object('sessionId', :'s1', 'deviceId', 'tab-1', 'userId', :'nurse', 'status', 'ENDED', 'uploaded', 8,
		'duplicates', 1, 'pulls', 2, 'rowsPulled', 2, 'resyncs', 1, 'retries', 1, 'conflicts', 2,
		'operations', '{"total": 8, "pending": 0, "completed": 5, "conflict": 0, "failed": 1, "expired": 0, "cancelled": 2}'::jsonb),
	'end_sync_session: the summary (the device''s counters, its operations'' outcomes, retries and conflicts)');
SELECT is(:'summary'::jsonb->'applyLatencyMs',
	(SELECT jsonb_build_object('p50', round(p[1]::numeric, 3), 'p95', round(p[2]::numeric, 3), 'p99', round(p[3]::numeric, 3),
							   'max', round(l::numeric, 3))
	   FROM (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY x) AS p, max(x) AS l
			   FROM (SELECT (extract(epoch FROM completed_at - enqueued_at) * 1000)::float8 AS x FROM backup_offline.sync_queue
					  WHERE session_id = :'s1' AND status = 'COMPLETED') y) z),
	'... its apply latency percentiles, as computed from its operations');
SELECT is((SELECT status || ' ' || end_reason || ' ' || (summary = :'summary'::jsonb) || ' ' || end_details::text
			 FROM backup_offline.sync_session WHERE id = :'s1'),
	'ENDED sync done true {"reason": "sync done", "networkType": "WIFI", "pendingOperations": 0}', '... kept on the session');
SELECT is(pg_temp.ev('SESSION_ENDED') - 'startedAt' - 'endedAt' - 'durationMs' - 'offlineMs' - 'offlineSince' - 'lastCursor'
		  - 'applyLatencyMs' - 'endToEndLatencyMs' - 'operations',
	'{"status": "ENDED", "reason": "sync done", "networkType": "WIFI", "pendingOperations": 0, "uploaded": 8, "duplicates": 1,
	  "pulls": 2, "rowsPulled": 2, "resyncs": 1, "retries": 1, "conflicts": 2}',
	'SESSION_ENDED detail: the summary');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.end_sync_session(%L)', :'s1')),
	format('55000: session %s is ENDED', :'s1'), 'a session ends once');
SELECT is(pg_temp.error_short($$SELECT backup_offline.end_sync_session('00000000-0000-4000-8000-000000000000')$$),
	'42704: session 00000000-0000-4000-8000-000000000000 does not exist', 'unknown sessions');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.end_sync_session(%L, %L)', :'s1', '{"pendingOperations": -1}')),
	'22023: invalid details.pendingOperations: -1 is out of range', 'end details are checked');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L)',
			jsonb_build_array(pg_temp.op('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}', jsonb_build_object('sessionId', :'s1'))))),
	format('55000: ops[0].sessionId: session %s is ENDED', :'s1'), 'no operations in an ended session');

-- ---- abandoned sessions ------------------------------------------------------------------
SELECT backup_offline.begin_sync_session('tab-1') AS s2 \gset
SELECT backup_offline.begin_sync_session('tab-1', '{"networkType": "WIFI"}') AS s3 \gset
SELECT is((SELECT status || ' ' || end_reason FROM backup_offline.sync_session WHERE id = :'s2'),
	format('ABANDONED superseded by session %s', :'s3'), 'a session the device never ended is abandoned by its next one');
SELECT is(pg_temp.ev('SESSION_ENDED') - 'durationMs', jsonb_build_object('status', 'ABANDONED', 'reason', format('superseded by session %s', :'s3')),
	'SESSION_ENDED detail: ABANDONED, why');
SELECT backup_offline.begin_sync_session('tab-2') AS s4 \gset
SELECT is(pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L)',
			jsonb_build_array(pg_temp.op('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}', jsonb_build_object('sessionId', :'s4'))))),
	format('22023: ops[0].sessionId: session %s is a session of device tab-2, not tab-1', :'s4'), 'a device uses its own session');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L)',
			jsonb_build_array(pg_temp.op('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}', '{"sessionId": "00000000-0000-4000-8000-000000000000"}')))),
	'42704: ops[0].sessionId: session 00000000-0000-4000-8000-000000000000 does not exist', 'unknown sessions are refused');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L)',
			jsonb_build_array(pg_temp.op('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}', '{"sessionId": 7}')))),
	'22023: ops[0].sessionId: a uuid (the id begin_sync_session returned)', 'a sessionId is a uuid');
-- an hour without activity: timed out
UPDATE backup_offline.sync_session SET last_activity_at = now() - interval '2 hours' WHERE id = :'s3';
SELECT is(pg_temp.error_short(format('SELECT backup_offline.queue_operations(%L)',
			jsonb_build_array(pg_temp.op('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}', jsonb_build_object('sessionId', :'s3'))))),
	format('55000: ops[0].sessionId: session %s is timed out', :'s3'), 'no operations in a timed-out session');
SELECT pg_temp.queue('tab-1', 9, 'CREATE', 'SS_NOTE', 'n9', '{"body": "x"}') IS NOT NULL AS q9 \gset
SELECT is((SELECT session_id FROM backup_offline.sync_queue WHERE operation_id = 'tab-1-9'), NULL, '... nor does one take them unnamed');
SELECT is((SELECT timed_out FROM backup_offline.sync_session_summary WHERE id = :'s3'), true, 'sync_session_summary shows it timed out');
SELECT backup_offline.begin_sync_session('tab-3') IS NOT NULL AS s5 \gset
SELECT alike((SELECT status || ' ' || end_reason FROM backup_offline.sync_session WHERE id = :'s3'), 'ABANDONED no activity since %',
	'the next session to begin marks it ABANDONED');

-- ---- statistics over a known data set ------------------------------------------------------
-- device st-1: ten operations (four CRITICAL) applied 100, 200, ..., 1000 ms after they were
-- queued, made 1, 2, ..., 10 minutes before; st-2: two LOW ones, one still pending
SELECT backup_offline.begin_sync_session('st-1') AS st1 \gset
SELECT is(jsonb_array_length(backup_offline.queue_operations((SELECT jsonb_agg(pg_temp.op('st-1', k, 'CREATE', 'SS_VISIT', 'st' || k,
		'{"status": "x"}', jsonb_build_object('priority', CASE WHEN k <= 4 THEN 'CRITICAL' ELSE 'NORMAL' END)) ORDER BY k)
	  FROM generate_series(1, 10) k))), 10, 'ten operations of st-1');
SELECT pg_temp.queue('st-2', 1, 'CREATE', 'SS_VISIT', 'st21', '{"status": "x"}', '{"priority": "LOW"}') IS NOT NULL AS st21 \gset
SELECT backup_offline.process_sync_queue() IS NOT NULL AS processed \gset
SELECT pg_temp.queue('st-2', 2, 'CREATE', 'SS_VISIT', 'st22', '{"status": "x"}', '{"priority": "LOW"}') IS NOT NULL AS st22 \gset
UPDATE backup_offline.sync_queue
   SET enqueued_at = '2026-03-01 10:00:00+00', completed_at = '2026-03-01 10:00:00+00'::timestamptz + device_seq * interval '100 ms',
	   client_hlc = ((extract(epoch FROM '2026-03-01 10:00:00+00'::timestamptz) * 1000)::bigint - device_seq * 60000) << 16
 WHERE device_id = 'st-1';
SELECT is(pg_temp.stats('{"deviceId": "st-1"}')->'latencyMs'->'apply',
	'{"count": 10, "p50": 550.000, "p95": 955.000, "p99": 991.000, "max": 1000.000}',
	'apply latency of st-1: p50, p95, p99 (percentile_cont), max');
SELECT is(pg_temp.stats('{"deviceId": "st-1"}')->'latencyMs'->'apply',
	(SELECT backup_offline.sync_latency_json(count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY x), max(x))
	   FROM (SELECT (extract(epoch FROM completed_at - enqueued_at) * 1000)::float8 AS x FROM backup_offline.sync_queue
			  WHERE device_id = 'st-1') y),
	'... as SQL computes it from the queue');
SELECT is(pg_temp.stats('{"deviceId": "st-1"}')->'latencyMs'->'endToEnd',
	'{"count": 10, "p50": 330550.000, "p95": 573955.000, "p99": 595591.000, "max": 601000.000}',
	'end-to-end latency (from the device''s clock, offline time included)');
SELECT is(pg_temp.stats('{"deviceId": "st-1"}')->'latencyMs'->'byPriority'->'CRITICAL',
	'{"apply": {"count": 4, "p50": 250.000, "p95": 385.000, "p99": 397.000, "max": 400.000},
	  "endToEnd": {"count": 4, "p50": 150250.000, "p95": 231385.000, "p99": 238597.000, "max": 240400.000}}',
	'latencies per priority: CRITICAL');
SELECT is(pg_temp.stats('{"deviceId": "st-1"}')->'latencyMs'->'byPriority'->'LOW',
	'{"apply": {"count": 0, "p50": null, "p95": null, "p99": null, "max": null},
	  "endToEnd": {"count": 0, "p50": null, "p95": null, "p99": null, "max": null}}', '... none for LOW');
SELECT is(pg_temp.stats('{"deviceId": "st-2"}')->'operations',
	'{"queued": 2, "byStatus": {"PENDING": 1, "BLOCKED": 0, "COMPLETED": 1, "CONFLICT": 0, "FAILED": 0, "EXPIRED": 0, "CANCELLED": 0},
	  "byPriority": {"CRITICAL": 0, "HIGH": 0, "NORMAL": 0, "LOW": 2, "BACKGROUND": 0}}',
	'operations of st-2 by status and priority');
SELECT is(pg_temp.stats()->'operations'->'byStatus',
	(SELECT jsonb_object_agg(s, (SELECT count(*) FROM backup_offline.sync_queue q WHERE q.status = s))
	   FROM unnest(enum_range(NULL::backup_offline.sync_queue_status)) s),
	'all operations by status, as in the queue');
SELECT is((SELECT jsonb_build_object('retries', s->'retries', 'deadLetters', s->'deadLetters', 'expired', s->'expired',
			 'cancelled', s->'cancelled', 'replayed', s->'replayed', 'duplicates', s->'duplicates', 'pulls', s->'pulls')
			 FROM pg_temp.stats() s),
	'{"retries": 1, "deadLetters": 3, "expired": 1, "cancelled": 2, "replayed": 2, "duplicates": 1,
	  "pulls": {"count": 1, "rows": 2, "resyncRequired": 1}}',
	'retries, dead letters, expiries, cancellations, replays, duplicates, pulls');
SELECT is(pg_temp.stats()->'conflicts',
	'{"detected": 2, "byType": {"UPDATE_UPDATE": 1, "UPDATE_DELETE": 0, "DELETE_UPDATE": 0, "CREATE_CREATE": 0, "FIELD_LEVEL": 1, "DEPENDENCY": 0},
	  "byStatus": {"AUTO_RESOLVED": 1, "OPEN": 0, "RESOLVED": 1}, "resolved": 1}',
	'conflicts by type and status');
SELECT is((pg_temp.stats()->'sessions') - 'offlineMs',
	'{"started": 6, "byStatus": {"ACTIVE": 3, "ENDED": 1, "ABANDONED": 2}}', 'sessions started, by status');
SELECT is((pg_temp.stats()->'sessions'->'offlineMs'->>'count') || ' ' || (pg_temp.stats()->'sessions'->'offlineMs'->>'max'),
	'1 ' || (SELECT round(extract(epoch FROM started_at - offline_since) * 1000, 3) FROM backup_offline.sync_session WHERE id = :'s1'),
	'... and how long they were offline');
SELECT is(pg_temp.stats(jsonb_build_object('sessionId', :'s1'))->'operations'->>'queued', '8', 'filtered by session');
SELECT is(pg_temp.stats('{"entityType": "SS_NOTE"}')->'operations'->>'queued',
	(SELECT count(*)::text FROM backup_offline.sync_queue WHERE entity_type = 'SS_NOTE'), 'filtered by entity type');
SELECT is(pg_temp.stats()->'events',
	(SELECT jsonb_object_agg(t, (SELECT count(*) FROM backup_offline.sync_event e WHERE e.event_type = t))
	   FROM unnest(enum_range(NULL::backup_offline.sync_event_type)) t), 'the count of every event type');
SELECT is((SELECT array_agg(t) FROM unnest(enum_range(NULL::backup_offline.sync_event_type)) t
			WHERE NOT EXISTS (SELECT 1 FROM backup_offline.sync_event e WHERE e.event_type = t)), NULL,
	'every one of the 16 event types was logged');
SELECT is(backup_offline.sync_statistics(clock_timestamp(), clock_timestamp() + interval '1 hour')->'operations'->>'queued', '0',
	'a window without events');
SELECT alike(pg_temp.error_short($$SELECT backup_offline.sync_statistics(now(), now() - interval '1 day')$$),
	'22023: since (%) is after until (%)', 'since must not be after until');
SELECT is(pg_temp.error_short($$SELECT backup_offline.sync_statistics(NULL)$$), '22004: since is required', 'since is required');
SELECT is(pg_temp.error_short($$SELECT backup_offline.sync_statistics(filter => '{"device": "x"}')$$),
	'22023: unknown key filter.device', 'unknown filter keys are refused');
SELECT is(pg_temp.error_short($$SELECT backup_offline.sync_statistics(filter => '{"sessionId": "x"}')$$),
	'22023: invalid filter.sessionId: "x" is not a uuid', 'filter values are checked');
SELECT is(pg_temp.error_short($$SELECT backup_offline.sync_statistics(filter => '{"entityType": "NOPE"}')$$),
	'22023: invalid filter.entityType: "NOPE" is not a registered sync entity', '... entity types too');

-- ---- organizations and privileges ----------------------------------------------------------
CREATE ROLE t_ss_app_a IN ROLE backup_offline_app;
CREATE ROLE t_ss_app_b IN ROLE backup_offline_app;
CREATE ROLE t_ss_auditor IN ROLE backup_offline_auditor;
INSERT INTO backup_offline.organization_member VALUES ('t_ss_app_a', :'org_a'), ('t_ss_app_b', :'org_b'), ('t_ss_auditor', :'org_a');
RESET backup_offline.organization_id;
DO $$ BEGIN
	EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %1$I TO PUBLIC', pg_my_temp_schema()::regnamespace);
	EXECUTE format('GRANT ALL ON ALL FUNCTIONS IN SCHEMA %1$I TO PUBLIC', pg_my_temp_schema()::regnamespace);
END $$;
SELECT count(*) AS all_events FROM backup_offline.sync_event \gset
SELECT pg_temp.qid('tab-1-9') AS q9 \gset
SET LOCAL ROLE t_ss_app_a;
SELECT is((SELECT count(*) FROM backup_offline.sync_event), :'all_events'::bigint, 'the organization''s application sees its events');
SET LOCAL ROLE t_ss_auditor;
SELECT is((SELECT count(*) FROM backup_offline.sync_session_summary), 6::bigint, 'its auditor reads the sessions');
SET LOCAL ROLE t_ss_app_b;
SELECT is((SELECT count(*) FROM backup_offline.sync_event) + (SELECT count(*) FROM backup_offline.sync_session), 0::bigint,
	'another organization sees none of its events and sessions');
SELECT is(backup_offline.sync_statistics(now() - interval '1 hour', clock_timestamp())->'operations'->>'queued', '0',
	'... nor counts them');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.end_sync_session(%L)', :'s4')),
	format('42704: session %s does not exist', :'s4'), '... nor ends them');
SELECT is(pg_temp.error_short(format('SELECT backup_offline.cancel_sync_operation(%L)', :'q9')),
	format('42704: sync operation %s does not exist', :'q9'), '... nor finds their operations');
SELECT set_config('backup_offline.organization_id', :'org_b', true) IS NOT NULL AS org_b_set \gset
SELECT is(pg_temp.error_short($$SELECT backup_offline.begin_sync_session('tab-2')$$),
	'42501: device tab-2 has an ACTIVE session this role cannot see', 'a device with a session in another organization');
RESET ROLE;
RESET backup_offline.organization_id;
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_function_privilege(r, 'backup_offline.begin_sync_session(text, jsonb)', 'EXECUTE')
			  AND has_function_privilege(r, 'backup_offline.replay_sync_operation(uuid)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_app']::text[], 'who may begin sessions and replay operations');
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_function_privilege(r, 'backup_offline.sync_statistics(timestamptz, timestamptz, jsonb)', 'EXECUTE')),
	ARRAY['backup_offline_admin', 'backup_offline_app', 'backup_offline_operator']::text[], 'who may read statistics');
SELECT is((SELECT array_agg(r ORDER BY r) FROM unnest(ARRAY['backup_offline_admin', 'backup_offline_operator', 'backup_offline_approver',
			'backup_offline_auditor', 'backup_offline_app', 'public']) r
			WHERE has_table_privilege(r, 'backup_offline.sync_event', 'SELECT')),
	ARRAY['backup_offline_admin', 'backup_offline_app', 'backup_offline_auditor', 'backup_offline_operator']::text[], 'who may read events');

-- ---- the purge -----------------------------------------------------------------------------
SET LOCAL backup_offline.organization_id = :'org_a';
UPDATE backup_offline.sync_event SET occurred_at = occurred_at - interval '2 days' WHERE device_id = 'st-2';
SELECT is(backup_offline.purge_sync_events('1 day'), 3::bigint, 'purge_sync_events: the events older than asked');
SELECT is((SELECT count(*) FROM backup_offline.sync_event WHERE device_id = 'st-2') || ' ' || (SELECT count(*) FROM backup_offline.sync_event),
	'0 ' || (:'all_events'::bigint - 3), '... and only those');
SELECT is(pg_temp.error_short($$SELECT backup_offline.purge_sync_events('10 minutes')$$),
	'22023: invalid older_than: 00:10:00', 'the last hour is kept');

SELECT * FROM finish();
ROLLBACK;
