-- The offline-sync operation queue: what reconnecting devices upload
-- (SPEC.md's OfflineSyncQueue plus a device sequence number, a client
-- hybrid logical clock and the base version the device edited), idempotent
-- by device and operationId.
--
-- A hybrid logical clock (clientHlc) is an integer: milliseconds since the
-- Unix epoch shifted left 16 bits, plus a 16-bit counter.  A clock further
-- in the future than backup_offline.sync_max_clock_skew is refused; the
-- highest clock seen per device is kept in sync_device.

CREATE TYPE @extschema@.sync_operation AS ENUM ('CREATE', 'UPDATE', 'DELETE', 'PATCH', 'MERGE', 'UPSERT');
CREATE TYPE @extschema@.sync_priority AS ENUM ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'BACKGROUND');
-- PENDING     waits to be applied (next_attempt_at after a transient failure)
-- BLOCKED     waits for the operations it depends on
-- COMPLETED   applied (result holds the outcome)
-- CONFLICT    waits for a person (a MANUAL conflict, see sync_conflict)
-- FAILED      dead-lettered: a permanent failure, the retries used up, or a
--             failed dependency; last_error says why
-- EXPIRED     not applied before expires_at
-- CANCELLED   withdrawn
CREATE TYPE @extschema@.sync_queue_status AS ENUM
	('PENDING', 'BLOCKED', 'COMPLETED', 'CONFLICT', 'FAILED', 'EXPIRED', 'CANCELLED');

CREATE TABLE @extschema@.sync_device (
	device_id text PRIMARY KEY,
	organization_id uuid,
	user_id uuid,
	last_hlc bigint NOT NULL DEFAULT 0,
	last_seq bigint NOT NULL DEFAULT 0,
	first_seen_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_seen_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	max_skew_ms bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.sync_device IS 'Devices that upload operations: their highest clock and sequence number, the largest clock skew seen';

CREATE SEQUENCE @extschema@.sync_queue_seq;

CREATE TABLE @extschema@.sync_queue (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	enqueue_seq bigint NOT NULL DEFAULT pg_catalog.nextval('@extschema@.sync_queue_seq'),
	organization_id uuid,
	device_id text NOT NULL,
	operation_id text NOT NULL,
	device_seq bigint NOT NULL,
	user_id uuid,
	operation @extschema@.sync_operation NOT NULL,
	entity_type text NOT NULL,
	entity_id text NOT NULL,
	payload jsonb,
	base_version bigint,
	client_hlc bigint NOT NULL,
	priority @extschema@.sync_priority NOT NULL,
	depends_on text[] NOT NULL DEFAULT '{}',
	on_dependency_failure text NOT NULL DEFAULT 'FAIL' CHECK (on_dependency_failure IN ('FAIL', 'HOLD')),
	status @extschema@.sync_queue_status NOT NULL DEFAULT 'PENDING',
	retry_count integer NOT NULL DEFAULT 0,
	max_retries integer NOT NULL DEFAULT 5,
	next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at timestamptz,
	has_conflict boolean NOT NULL DEFAULT false,
	last_error jsonb,
	result jsonb,
	enqueued_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	completed_at timestamptz,
	UNIQUE (device_id, operation_id),
	UNIQUE (device_id, device_seq)
);
COMMENT ON TABLE @extschema@.sync_queue IS 'Operations uploaded by devices (SPEC.md''s OfflineSyncQueue), idempotent by device and operationId';
CREATE INDEX sync_queue_runnable ON @extschema@.sync_queue (priority, enqueue_seq) WHERE status IN ('PENDING', 'BLOCKED');
-- the operations on one row: per device in order (what waits before an
-- operation, and what the device did to the row before: its edits build on
-- its own earlier ones, see sync_device_base), and the versions waiting
-- operations were made on (their images are kept beyond the history depth
-- until they are merged)
CREATE INDEX sync_queue_entity ON @extschema@.sync_queue (entity_type, entity_id, device_id, device_seq);
-- what the processor's housekeeping looks at before every batch: operations
-- waiting for their dependencies, and those that can expire
CREATE INDEX sync_queue_blocked ON @extschema@.sync_queue (device_id) WHERE status = 'BLOCKED';
CREATE INDEX sync_queue_expiring ON @extschema@.sync_queue (expires_at)
	WHERE status IN ('PENDING', 'BLOCKED') AND expires_at IS NOT NULL;

-- backup_offline.sync_max_clock_skew: how far in the future a device's
-- clock may be (300 s unless set; the setting exists only once the library
-- is loaded)
CREATE FUNCTION @extschema@.sync_max_clock_skew()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(current_setting('backup_offline.sync_max_clock_skew', true), ''), '300s')::interval
$$;

-- The hybrid logical clock's milliseconds, as a timestamptz
CREATE FUNCTION @extschema@.hlc_time(hlc bigint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$
	SELECT pg_catalog.to_timestamp((hlc OPERATOR(pg_catalog.>>) 16)::double precision OPERATOR(pg_catalog./) 1000)
$$;

-- queue_operations(ops jsonb) RETURNS jsonb
-- A device's batch (a JSON array of operations), or one operation (an
-- object).  Each operation: {"deviceId", "operationId", "deviceSeq",
-- "clientHlc", "operation", "entityType", "entityId", "payload",
-- "baseVersion", "priority", "dependsOn": [operationIds of the same
-- device], "onDependencyFailure": "FAIL" | "HOLD", "expiresAt",
-- "maxRetries", "userId", "sessionId"}.  Payload rules: CREATE carries the new row
-- (its key, if present, equal to entityId) and no baseVersion; UPDATE,
-- PATCH and MERGE carry fields and the baseVersion edited; DELETE carries
-- no payload and the baseVersion; UPSERT carries the row.  The whole batch
-- is checked before anything is stored: an invalid operation is an error
-- naming it (ops[i]) and nothing is queued.  An operation already queued
-- (same device and operationId, same content) is not queued again: its
-- stored state is returned (a retried upload, logged as OPERATION_DUPLICATE).
-- The operations belong to their device's ACTIVE session (begin_sync_session,
-- src/catalog/95_sync_sessions.sql), which counts them; a sessionId given
-- must name that session.  An operation numbered within what
-- purge_sync_queue purged for its device (sync_device.purged_seq,
-- src/catalog/96_sync_purge.sql) is not queued again either: status PURGED.
-- Returns [{"operationId", "id", "status", "duplicate", "result"}] in the
-- batch's order.
CREATE FUNCTION @extschema@.queue_operations(ops jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	batch jsonb;
	bad record;
	org uuid;
	skew_ms bigint := (extract(epoch FROM @extschema@.sync_max_clock_skew()) * 1000)::bigint;
	now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
	result jsonb;
	sessions jsonb;
	purged jsonb;
	wrong record;
BEGIN
	IF ops IS NULL OR jsonb_typeof(ops) NOT IN ('array', 'object') THEN
		PERFORM @extschema@.raise_invalid('ops must be a JSON array of operations (or one operation object)',
			'Pass [{"deviceId": ..., "operationId": ..., "deviceSeq": 1, "clientHlc": ..., "operation": "CREATE", ...}].');
	END IF;
	batch := CASE jsonb_typeof(ops) WHEN 'object' THEN jsonb_build_array(ops) ELSE ops END;
	IF jsonb_array_length(batch) = 0 THEN
		RETURN '[]';
	END IF;
	IF jsonb_array_length(batch) > 10000 THEN
		PERFORM @extschema@.raise_invalid(format('a batch holds at most 10000 operations, not %s', jsonb_array_length(batch)),
			'Upload in several batches.');
	END IF;
	org := @extschema@.resolve_organization(NULL, 'backup_offline.organization_id');

	-- the first invalid operation, with what is wrong, all checked set-based
	SELECT * INTO bad FROM (
		SELECT o.i, CASE
			WHEN jsonb_typeof(o.op) <> 'object' THEN 'is not an object'
			WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(o.op) k WHERE k NOT IN ('deviceId', 'operationId', 'deviceSeq', 'clientHlc',
					'operation', 'entityType', 'entityId', 'payload', 'baseVersion', 'priority', 'dependsOn', 'onDependencyFailure',
					'expiresAt', 'maxRetries', 'userId', 'sessionId'))
				THEN format('has an unknown key %s', (SELECT min(k) FROM jsonb_object_keys(o.op) k WHERE k NOT IN ('deviceId', 'operationId',
					'deviceSeq', 'clientHlc', 'operation', 'entityType', 'entityId', 'payload', 'baseVersion', 'priority', 'dependsOn',
					'onDependencyFailure', 'expiresAt', 'maxRetries', 'userId', 'sessionId')))
			WHEN jsonb_typeof(o.op->'deviceId') IS DISTINCT FROM 'string' OR o.op->>'deviceId' !~ '^[A-Za-z0-9._:@-]{1,200}$'
				THEN '.deviceId: 1 to 200 letters, digits and . _ : @ - are required'
			WHEN jsonb_typeof(o.op->'operationId') IS DISTINCT FROM 'string' OR length(o.op->>'operationId') NOT BETWEEN 1 AND 200
				THEN '.operationId: a string of 1 to 200 characters is required'
			WHEN jsonb_typeof(o.op->'deviceSeq') IS DISTINCT FROM 'number' OR (o.op->>'deviceSeq') !~ '^[1-9][0-9]{0,17}$'
				THEN '.deviceSeq: a positive integer is required'
			WHEN jsonb_typeof(o.op->'clientHlc') IS DISTINCT FROM 'number' OR (o.op->>'clientHlc') !~ '^[0-9]{1,19}$'
				THEN '.clientHlc: a hybrid logical clock (milliseconds << 16 | counter, a non-negative integer) is required'
			WHEN ((o.op->>'clientHlc')::numeric / 65536)::bigint > now_ms + skew_ms
				THEN format('.clientHlc is %s s in the future (the device clock is ahead; at most %s s are accepted)',
							round((((o.op->>'clientHlc')::numeric / 65536) - now_ms) / 1000, 1), skew_ms / 1000)
			WHEN NOT coalesce(o.op->>'operation', '') IN ('CREATE', 'UPDATE', 'DELETE', 'PATCH', 'MERGE', 'UPSERT')
				THEN format('.operation: %s is not CREATE, UPDATE, DELETE, PATCH, MERGE or UPSERT', coalesce(o.op->'operation', 'null'))
			WHEN NOT EXISTS (SELECT 1 FROM @extschema@.sync_entity e WHERE e.entity_type = o.op->>'entityType'
							 AND (e.organization_id IS NULL OR e.organization_id = org))
				THEN format('.entityType: %s is not a registered sync entity', coalesce(o.op->'entityType', 'null'))
			WHEN jsonb_typeof(o.op->'entityId') IS DISTINCT FROM 'string' OR length(o.op->>'entityId') NOT BETWEEN 1 AND 200
				THEN '.entityId: a string (the row''s key; new rows get their id on the device) is required'
			WHEN o.op->>'operation' = 'DELETE' AND o.op ? 'payload' AND o.op->'payload' NOT IN ('{}', 'null')
				THEN '.payload: a DELETE carries no payload'
			WHEN o.op->>'operation' <> 'DELETE' AND jsonb_typeof(o.op->'payload') IS DISTINCT FROM 'object'
				THEN format('.payload: a %s needs the fields as a JSON object', o.op->>'operation')
			WHEN o.op->>'operation' = 'CREATE' AND o.op ? 'baseVersion'
				THEN '.baseVersion: a CREATE has no base version'
			WHEN o.op->>'operation' IN ('UPDATE', 'PATCH', 'MERGE', 'DELETE')
				 AND (jsonb_typeof(o.op->'baseVersion') IS DISTINCT FROM 'number' OR (o.op->>'baseVersion') !~ '^[1-9][0-9]{0,17}$')
				THEN format('.baseVersion: a %s needs the version the device edited (a positive integer)', o.op->>'operation')
			WHEN o.op->>'operation' = 'UPSERT' AND o.op ? 'baseVersion'
				 AND (jsonb_typeof(o.op->'baseVersion') IS DISTINCT FROM 'number' OR (o.op->>'baseVersion') !~ '^[0-9]{1,18}$')
				THEN '.baseVersion: a non-negative integer'
			WHEN o.op->>'operation' IN ('CREATE', 'UPSERT')
				 AND (o.op->'payload') ? (SELECT e.key_column FROM @extschema@.sync_entity e WHERE e.entity_type = o.op->>'entityType'
										  ORDER BY e.organization_id NULLS LAST LIMIT 1)
				 AND (o.op->'payload')->>(SELECT e.key_column FROM @extschema@.sync_entity e WHERE e.entity_type = o.op->>'entityType'
										  ORDER BY e.organization_id NULLS LAST LIMIT 1) IS DISTINCT FROM o.op->>'entityId'
				THEN '.payload: its key differs from entityId'
			WHEN o.op ? 'priority' AND NOT coalesce(o.op->>'priority', '') IN ('CRITICAL', 'HIGH', 'NORMAL', 'LOW', 'BACKGROUND')
				THEN format('.priority: %s is not CRITICAL, HIGH, NORMAL, LOW or BACKGROUND', o.op->'priority')
			WHEN o.op ? 'dependsOn' AND (jsonb_typeof(o.op->'dependsOn') <> 'array'
				 OR EXISTS (SELECT 1 FROM jsonb_array_elements(o.op->'dependsOn') d WHERE jsonb_typeof(d) <> 'string'))
				THEN '.dependsOn: an array of operationIds of the same device'
			WHEN o.op->'dependsOn' ? (o.op->>'operationId')
				THEN '.dependsOn: an operation cannot depend on itself'
			WHEN o.op ? 'onDependencyFailure' AND NOT coalesce(o.op->>'onDependencyFailure', '') IN ('FAIL', 'HOLD')
				THEN '.onDependencyFailure: FAIL or HOLD'
			WHEN o.op ? 'expiresAt' AND (jsonb_typeof(o.op->'expiresAt') <> 'string'
				 OR NOT (o.op->>'expiresAt') ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}(:?\d{2})?)$')
				THEN '.expiresAt: an ISO 8601 timestamp with a time zone'
			WHEN o.op ? 'maxRetries' AND (jsonb_typeof(o.op->'maxRetries') <> 'number' OR (o.op->>'maxRetries') !~ '^[0-9]{1,2}$'
				 OR (o.op->>'maxRetries')::int > 25)
				THEN '.maxRetries: 0 to 25'
			WHEN o.op ? 'userId' AND (o.op->>'userId') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
				THEN '.userId: a uuid'
			WHEN o.op ? 'sessionId' AND (jsonb_typeof(o.op->'sessionId') IS DISTINCT FROM 'string'
				 OR (o.op->>'sessionId') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
				THEN '.sessionId: a uuid (the id begin_sync_session returned)'
			END AS problem
		  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i)) x
	 WHERE x.problem IS NOT NULL
	 ORDER BY x.i LIMIT 1;
	IF FOUND THEN
		PERFORM @extschema@.raise_invalid(format('ops[%s]%s%s', bad.i - 1, CASE WHEN bad.problem LIKE '.%' THEN '' ELSE ' ' END, bad.problem),
			'Fix that operation and upload the batch again: nothing of it was queued.');
	END IF;
	-- an expiresAt of the right shape that is no time (2026-02-30T00:00Z)
	FOR bad IN SELECT o.i, o.op->>'expiresAt' AS v FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i)
				WHERE o.op ? 'expiresAt' ORDER BY o.i LOOP
		BEGIN
			PERFORM bad.v::timestamptz;
		EXCEPTION WHEN data_exception THEN
			PERFORM @extschema@.raise_invalid(format('ops[%s].expiresAt: %s is not a valid time', bad.i - 1, bad.v),
				'Fix that operation and upload the batch again: nothing of it was queued.');
		END;
	END LOOP;
	-- the same operation twice in the batch, or two operations with one sequence number
	SELECT * INTO bad FROM (
		SELECT o.op->>'deviceId' AS d, o.op->>'operationId' AS oid, count(*) AS n, min(o.i) AS i
		  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i) GROUP BY 1, 2 HAVING count(*) > 1) x LIMIT 1;
	IF FOUND THEN
		PERFORM @extschema@.raise_invalid(format('ops[%s].operationId: operation %s of device %s appears %s times in the batch',
			bad.i - 1, bad.oid, bad.d, bad.n), 'Give every operation of a device its own operationId.', NULL, '23505');
	END IF;

	-- a sequence number another operation of the device already has
	SELECT o.i, o.op->>'deviceSeq' AS seq, q.operation_id AS other INTO bad
	  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i)
	  JOIN @extschema@.sync_queue q ON q.device_id = o.op->>'deviceId' AND q.device_seq = (o.op->>'deviceSeq')::bigint
	 WHERE q.operation_id <> o.op->>'operationId'
	 ORDER BY o.i LIMIT 1;
	IF FOUND THEN
		PERFORM @extschema@.raise_invalid(format('ops[%s].deviceSeq: %s is already the number of operation %s of this device',
			bad.i - 1, bad.seq, bad.other), 'Number a device''s operations 1, 2, 3, ... once each.', NULL, '23505');
	END IF;
	SELECT * INTO bad FROM (
		SELECT o.op->>'deviceId' AS d, o.op->>'deviceSeq' AS seq, min(o.i) AS i
		  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i) GROUP BY 1, 2 HAVING count(*) > 1) x LIMIT 1;
	IF FOUND THEN
		PERFORM @extschema@.raise_invalid(format('ops[%s].deviceSeq: %s is used twice in the batch for device %s', bad.i - 1, bad.seq, bad.d),
			'Number a device''s operations 1, 2, 3, ... once each.', NULL, '23505');
	END IF;

	-- how far each device's operations were purged (purge_sync_queue)
	SELECT jsonb_object_agg(d.device_id, d.purged_seq) INTO purged FROM @extschema@.sync_device d
	 WHERE d.purged_seq > 0 AND d.device_id IN (SELECT DISTINCT o.op->>'deviceId' FROM jsonb_array_elements(batch) o(op));
	-- the devices' ACTIVE sessions (idle ones time out); a sessionId given must be its device's
	SELECT jsonb_object_agg(s.device_id, s.id) INTO sessions
	  FROM @extschema@.sync_session s
	 WHERE s.status = 'ACTIVE' AND s.last_activity_at >= clock_timestamp() - @extschema@.sync_session_timeout()
	   AND s.device_id IN (SELECT DISTINCT o->>'deviceId' FROM jsonb_array_elements(batch) o);
	IF batch @? '$[*].sessionId' THEN
		SELECT o.i, o.op->>'sessionId' AS sid, o.op->>'deviceId' AS dev, s.id IS NOT NULL AS known, s.device_id AS owner, s.status
		  INTO wrong
		  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i)
		  LEFT JOIN @extschema@.sync_session s ON s.id = (o.op->>'sessionId')::uuid
		 WHERE o.op ? 'sessionId' AND (o.op->>'sessionId')::uuid IS DISTINCT FROM (sessions->>(o.op->>'deviceId'))::uuid
		 ORDER BY o.i LIMIT 1;
		IF FOUND AND NOT wrong.known THEN
			PERFORM @extschema@.raise_invalid(format('ops[%s].sessionId: session %s does not exist', wrong.i - 1, wrong.sid),
				'Begin a session with begin_sync_session; sessions of other organizations are not visible.', NULL, '42704');
		ELSIF FOUND AND wrong.owner <> wrong.dev THEN
			PERFORM @extschema@.raise_invalid(format('ops[%s].sessionId: session %s is a session of device %s, not %s',
				wrong.i - 1, wrong.sid, wrong.owner, wrong.dev), 'Upload a device''s operations in its own session.');
		ELSIF FOUND THEN
			PERFORM @extschema@.raise_invalid(format('ops[%s].sessionId: session %s is %s', wrong.i - 1, wrong.sid,
					CASE WHEN wrong.status = 'ACTIVE' THEN 'timed out' ELSE wrong.status::text END),
				'Begin a new session (begin_sync_session) and upload the batch again: nothing of it was queued.', NULL, '55000');
		END IF;
	END IF;

	-- store the new ones; a retried upload matches the stored operation
	WITH input AS (
		SELECT o.i, o.op->>'deviceId' AS device_id, o.op->>'operationId' AS operation_id, (o.op->>'deviceSeq')::bigint AS device_seq,
			   (o.op->>'userId')::uuid AS user_id, (o.op->>'operation')::@extschema@.sync_operation AS operation,
			   o.op->>'entityType' AS entity_type, o.op->>'entityId' AS entity_id,
			   CASE WHEN o.op->>'operation' = 'DELETE' THEN NULL ELSE o.op->'payload' END AS payload,
			   (o.op->>'baseVersion')::bigint AS base_version, (o.op->>'clientHlc')::bigint AS client_hlc,
			   coalesce(o.op->>'priority', 'NORMAL')::@extschema@.sync_priority AS priority,
			   coalesce(ARRAY(SELECT jsonb_array_elements_text(o.op->'dependsOn')), '{}') AS depends_on,
			   coalesce(o.op->>'onDependencyFailure', 'FAIL') AS on_dependency_failure,
			   (o.op->>'expiresAt')::timestamptz AS expires_at, coalesce((o.op->>'maxRetries')::int, 5) AS max_retries,
			   (sessions->>(o.op->>'deviceId'))::uuid AS session_id,
			   -- numbered within what purge_sync_queue purged: not queued again
			   (o.op->>'deviceSeq')::bigint <= coalesce((purged->>(o.op->>'deviceId'))::bigint, 0) AS purged
		  FROM jsonb_array_elements(batch) WITH ORDINALITY AS o(op, i)),
	ins AS (
		INSERT INTO @extschema@.sync_queue (organization_id, device_id, operation_id, device_seq, user_id, operation, entity_type,
			entity_id, payload, base_version, client_hlc, priority, depends_on, on_dependency_failure, expires_at, max_retries,
			status, session_id)
		SELECT org, i.device_id, i.operation_id, i.device_seq, coalesce(i.user_id, @extschema@.current_actor()), i.operation,
			   i.entity_type, i.entity_id, i.payload, i.base_version, i.client_hlc, i.priority, i.depends_on,
			   i.on_dependency_failure, i.expires_at, i.max_retries,
			   CASE WHEN cardinality(i.depends_on) > 0 THEN 'BLOCKED' ELSE 'PENDING' END::@extschema@.sync_queue_status,
			   i.session_id
		  FROM input i WHERE NOT i.purged ORDER BY i.i
		ON CONFLICT (device_id, operation_id) DO NOTHING
		RETURNING device_id, operation_id, id, status),
	dev AS (
		INSERT INTO @extschema@.sync_device AS d (device_id, organization_id, user_id, last_hlc, last_seq, max_skew_ms)
		SELECT i.device_id, org, max(i.user_id::text)::uuid, max(i.client_hlc), max(i.device_seq),
			   greatest(0, max(i.client_hlc / 65536) - now_ms)
		  FROM input i GROUP BY i.device_id
		ON CONFLICT (device_id) DO UPDATE
		   SET last_hlc = greatest(d.last_hlc, EXCLUDED.last_hlc), last_seq = greatest(d.last_seq, EXCLUDED.last_seq),
			   last_seen_at = now(), max_skew_ms = greatest(d.max_skew_ms, EXCLUDED.max_skew_ms),
			   user_id = coalesce(EXCLUDED.user_id, d.user_id))
	SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
			   'operationId', i.operation_id,
			   'id', coalesce(ins.id, q.id),
			   'status', coalesce(ins.status::text, q.status::text, 'PURGED'),
			   'duplicate', ins.id IS NULL,
			   'result', CASE WHEN ins.id IS NULL THEN q.result END,
			   '_same', CASE WHEN ins.id IS NULL AND q.id IS NOT NULL THEN
							 q.operation = i.operation AND q.entity_type = i.entity_type AND q.entity_id = i.entity_id
							 AND q.payload IS NOT DISTINCT FROM i.payload AND q.base_version IS NOT DISTINCT FROM i.base_version
							 AND q.device_seq = i.device_seq END)) ORDER BY i.i)
	  INTO result
	  FROM input i
	  LEFT JOIN ins ON ins.device_id = i.device_id AND ins.operation_id = i.operation_id
	  LEFT JOIN @extschema@.sync_queue q ON ins.id IS NULL AND q.device_id = i.device_id AND q.operation_id = i.operation_id;
	IF EXISTS (SELECT 1 FROM jsonb_array_elements(result) r WHERE (r->>'_same')::boolean IS FALSE) THEN
		SELECT r->>'operationId' AS oid INTO bad FROM jsonb_array_elements(result) r WHERE (r->>'_same')::boolean IS FALSE LIMIT 1;
		PERFORM @extschema@.raise_invalid(format('operation %s was already queued by this device with other content', bad.oid),
			'An operationId names one operation: give a new operation a new operationId.', NULL, '23505');
	END IF;
	-- retried uploads are logged (new operations by sync_queue's trigger); sessions count what their device sent
	IF result @? '$[*] ? (@.duplicate == true)' THEN
		INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, queue_id, operation_id, entity_type,
											entity_id, detail)
		SELECT q.organization_id, 'OPERATION_DUPLICATE'::@extschema@.sync_event_type, q.device_id, (sessions->>q.device_id)::uuid,
			   q.id, q.operation_id, q.entity_type, q.entity_id,
			   jsonb_strip_nulls(jsonb_build_object('status', q.status, 'enqueuedAt', q.enqueued_at, 'queuedInSession', q.session_id))
		  FROM jsonb_array_elements(result) r
		  JOIN @extschema@.sync_queue q ON q.id = (r->>'id')::uuid
		 WHERE (r->>'duplicate')::boolean;
	END IF;
	IF sessions IS NOT NULL THEN
		UPDATE @extschema@.sync_session s
		   SET operations_uploaded = s.operations_uploaded + c.uploaded, duplicates = s.duplicates + c.dup,
			   last_activity_at = clock_timestamp()
		  FROM (SELECT (sessions->>(b.op->>'deviceId'))::uuid AS sid,
					   count(*) FILTER (WHERE NOT (r.res->>'duplicate')::boolean) AS uploaded,
					   count(*) FILTER (WHERE (r.res->>'duplicate')::boolean) AS dup
				  FROM jsonb_array_elements(batch) WITH ORDINALITY AS b(op, i)
				  JOIN jsonb_array_elements(result) WITH ORDINALITY AS r(res, i) ON r.i = b.i
				 GROUP BY 1) c
		 WHERE s.id = c.sid;
	END IF;
	RETURN (SELECT jsonb_agg(r - '_same' ORDER BY n) FROM jsonb_array_elements(result) WITH ORDINALITY AS x(r, n));
END
$$;

-- queue_operation(op jsonb) RETURNS uuid: one operation (see
-- queue_operations); the queue id, also for a retried upload.
CREATE FUNCTION @extschema@.queue_operation(op jsonb)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF op IS NULL OR jsonb_typeof(op) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('op must be a JSON object', 'Pass one operation; queue_operations takes a batch.');
	END IF;
	RETURN (@extschema@.queue_operations(op)->0->>'id')::uuid;
END
$$;

REVOKE ALL ON @extschema@.sync_device, @extschema@.sync_queue FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.queue_operations(jsonb), @extschema@.queue_operation(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.hlc_time(bigint) TO PUBLIC;
GRANT SELECT ON @extschema@.sync_device, @extschema@.sync_queue
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
GRANT INSERT ON @extschema@.sync_queue TO backup_offline_admin, backup_offline_app;
GRANT INSERT, UPDATE ON @extschema@.sync_device TO backup_offline_admin, backup_offline_app;
GRANT USAGE ON SEQUENCE @extschema@.sync_queue_seq TO backup_offline_admin, backup_offline_app;
GRANT EXECUTE ON FUNCTION @extschema@.queue_operations(jsonb), @extschema@.queue_operation(jsonb)
TO backup_offline_admin, backup_offline_app;
ALTER TABLE @extschema@.sync_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_queue FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
ALTER TABLE @extschema@.sync_device ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_device FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_device', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_queue_seq', '');
