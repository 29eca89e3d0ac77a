-- Offline sessions, the sync event log and sync statistics.
--
-- A session is one reconnect of a device: begin_sync_session() when it comes
-- online (with how long it was offline, its app and network),
-- end_sync_session() when it is done (returning the session's summary).
-- The operations it uploads (queue_operations) and the pulls it makes
-- (pull_changes) belong to the device's ACTIVE session.  Only the device's
-- own calls write the session row (uploaded, duplicates, pulls, rows
-- pulled): what the processors do to its operations (applied, conflicts,
-- failures, latencies) is computed from sync_queue when asked
-- (sync_session_summary), so parallel processors never wait on a shared
-- counter row.
--
-- Every step of an operation is a row of sync_event: statement-level
-- triggers with transition tables on sync_queue and sync_conflict compare
-- the old and new rows, one INSERT ... SELECT per statement, so whatever
-- path changes a status (process_sync_queue, resolve_conflict, the
-- functions below, an administrator's UPDATE) is logged.  The device's own
-- calls add session, duplicate and pull events.  sync_statistics()
-- summarizes a time window of the log.

CREATE TYPE @extschema@.sync_event_type AS ENUM (
	'SESSION_STARTED',				-- begin_sync_session
	'SESSION_ENDED',				-- end_sync_session, or ABANDONED (detail.status)
	'OPERATION_QUEUED',				-- a new queue row
	'OPERATION_DUPLICATE',			-- a retried upload of an already queued operation
	'OPERATION_BLOCKED',			-- queued (or put) waiting for its dependencies
	'OPERATION_RELEASED',			-- BLOCKED -> PENDING
	'OPERATION_APPLIED',			-- -> COMPLETED
	'OPERATION_RETRY_SCHEDULED',	-- a transient failure: retry_count + 1, next_attempt_at later
	'OPERATION_DEAD_LETTERED',		-- -> FAILED
	'OPERATION_EXPIRED',			-- -> EXPIRED
	'OPERATION_CANCELLED',			-- -> CANCELLED
	'OPERATION_REPLAYED',			-- a finished operation put back (PENDING or BLOCKED)
	'CONFLICT_DETECTED',			-- every sync_conflict row (detail.status AUTO_RESOLVED or OPEN)
	'CONFLICT_RESOLVED',			-- OPEN -> RESOLVED
	'PULL_COMPLETED',				-- pull_changes answered
	'RESYNC_REQUIRED');				-- pull_changes: the cursor is older than the tombstones kept
-- ACTIVE     the device is online and syncing
-- ENDED      end_sync_session
-- ABANDONED  never ended: the device began a new session, or there was no
--            activity for backup_offline.sync_session_timeout (1 hour)
CREATE TYPE @extschema@.sync_session_status AS ENUM ('ACTIVE', 'ENDED', 'ABANDONED');

CREATE TABLE @extschema@.sync_session (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid,
	device_id text NOT NULL,
	user_id uuid,
	status @extschema@.sync_session_status NOT NULL DEFAULT 'ACTIVE',
	offline_since timestamptz,
	started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	last_activity_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	ended_at timestamptz,
	end_reason text,
	details jsonb NOT NULL DEFAULT '{}',
	end_details jsonb,
	operations_uploaded bigint NOT NULL DEFAULT 0,
	duplicates bigint NOT NULL DEFAULT 0,
	pulls bigint NOT NULL DEFAULT 0,
	rows_pulled bigint NOT NULL DEFAULT 0,
	resyncs bigint NOT NULL DEFAULT 0,
	last_cursor bigint,
	summary jsonb,
	CONSTRAINT sync_session_ended CHECK ((status OPERATOR(pg_catalog.=) 'ACTIVE') OPERATOR(pg_catalog.=) (ended_at IS NULL))
);
COMMENT ON TABLE @extschema@.sync_session IS 'Offline sessions: one reconnect of a device each, with what the device did in it';
CREATE UNIQUE INDEX sync_session_active ON @extschema@.sync_session (device_id) WHERE status = 'ACTIVE';
CREATE INDEX sync_session_idle ON @extschema@.sync_session (last_activity_at) WHERE status = 'ACTIVE';
CREATE INDEX sync_session_started ON @extschema@.sync_session (started_at);
CREATE INDEX sync_session_device ON @extschema@.sync_session (device_id, started_at);

-- The session of each operation.  No foreign key: its check would lock the
-- session row for every uploaded operation; queue_operations checks it.
ALTER TABLE @extschema@.sync_queue ADD COLUMN session_id uuid;
CREATE INDEX sync_queue_session ON @extschema@.sync_queue (session_id) WHERE session_id IS NOT NULL;

CREATE SEQUENCE @extschema@.sync_event_seq;

CREATE TABLE @extschema@.sync_event (
	id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('@extschema@.sync_event_seq'),
	organization_id uuid,
	occurred_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	event_type @extschema@.sync_event_type NOT NULL,
	device_id text,
	session_id uuid,
	queue_id uuid,
	operation_id text,
	entity_type text,
	entity_id text,
	conflict_id uuid,
	detail jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE @extschema@.sync_event IS 'The sync event log: sessions, every status change of queued operations, conflicts, pulls';
-- appended in time order: a BRIN index serves time windows and the purge
CREATE INDEX sync_event_time ON @extschema@.sync_event USING brin (occurred_at);
CREATE INDEX sync_event_device ON @extschema@.sync_event (device_id, occurred_at);
CREATE INDEX sync_event_session ON @extschema@.sync_event (session_id) WHERE session_id IS NOT NULL;

-- How long an ACTIVE session may go without activity before it counts as
-- ABANDONED: backup_offline.sync_session_timeout when the server defines
-- it, else 1 hour.
CREATE FUNCTION @extschema@.sync_session_timeout()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(nullif(current_setting('backup_offline.sync_session_timeout', true), '')::interval, interval '1 hour')
$$;

-- ---------------------------------------------------------------------
-- Events from the queue and the conflicts.  The trigger functions are
-- SECURITY DEFINER (whoever changes the queue, the event is written) and
-- fire only on their table; each statement's events are one INSERT ...
-- SELECT over its transition tables.  Their plans are made once per
-- session, for the size of the first statement's transition tables: a
-- nested loop planned for one row would join the old and new rows of a
-- later 5,000-row UPDATE in quadratic time (seconds), so nested loops are
-- off: the old and new rows are hash-joined, and the queue row of a
-- conflict is looked up by its key in a subquery (a join that only a nested
-- loop can run would be costed as disabled, 10^10, and compiled by JIT at
-- every call: JIT is off too).
-- ---------------------------------------------------------------------

-- sync_queue: a new row is OPERATION_QUEUED (and OPERATION_BLOCKED when it
-- waits for dependencies); an update is logged by its status change (or,
-- status PENDING kept, by a higher retry_count: a retry scheduled).
-- PENDING -> CONFLICT is logged by its sync_conflict row.
CREATE FUNCTION @extschema@.sync_queue_events()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_nestloop = off
SET jit = off
AS $$
BEGIN
	IF TG_RELID <> '@extschema@.sync_queue'::regclass THEN
		RAISE EXCEPTION 'sync_queue_events fires only on table sync_queue' USING ERRCODE = '42501';
	END IF;
	IF TG_OP = 'INSERT' THEN
		INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, queue_id, operation_id,
											entity_type, entity_id, detail)
		SELECT n.organization_id, 'OPERATION_QUEUED'::@extschema@.sync_event_type, n.device_id, n.session_id, n.id, n.operation_id,
			   n.entity_type, n.entity_id,
			   -- the priority (the rest is on the queue row), a constant per
			   -- priority: this runs for every operation uploaded
			   CASE n.priority WHEN 'CRITICAL' THEN '{"priority": "CRITICAL"}'::jsonb WHEN 'HIGH' THEN '{"priority": "HIGH"}'::jsonb
				   WHEN 'NORMAL' THEN '{"priority": "NORMAL"}'::jsonb WHEN 'LOW' THEN '{"priority": "LOW"}'::jsonb
				   ELSE '{"priority": "BACKGROUND"}'::jsonb END
		  FROM new_rows n
		UNION ALL
		SELECT n.organization_id, 'OPERATION_BLOCKED'::@extschema@.sync_event_type, n.device_id, n.session_id, n.id, n.operation_id,
			   n.entity_type, n.entity_id,
			   jsonb_build_object('dependsOn', n.depends_on, 'onDependencyFailure', n.on_dependency_failure)
		  FROM new_rows n
		 WHERE n.status = 'BLOCKED';
	ELSE
		INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, queue_id, operation_id,
											entity_type, entity_id, detail)
		SELECT c.organization_id, c.t, c.device_id, c.session_id, c.id, c.operation_id, c.entity_type, c.entity_id,
			   CASE c.t
				   WHEN 'OPERATION_RETRY_SCHEDULED' THEN
					   jsonb_build_object('retryCount', c.retry_count, 'nextAttemptAt', c.next_attempt_at, 'error', c.last_error)
				   WHEN 'OPERATION_RELEASED' THEN
					   jsonb_build_object('dependsOn', c.depends_on)
				   WHEN 'OPERATION_REPLAYED' THEN
					   jsonb_build_object('fromStatus', c.old_status, 'status', c.status, 'lastError', c.old_error,
										  'retryCount', c.old_retry_count)
				   WHEN 'OPERATION_BLOCKED' THEN
					   jsonb_build_object('fromStatus', c.old_status, 'dependsOn', c.depends_on,
										  'onDependencyFailure', c.on_dependency_failure)
				   WHEN 'OPERATION_APPLIED' THEN
					   jsonb_build_object('fromStatus', c.old_status, 'result', c.result, 'retryCount', c.retry_count,
										  'applyMs', round(extract(epoch FROM c.completed_at - c.enqueued_at) * 1000, 3))
				   ELSE
					   jsonb_build_object('fromStatus', c.old_status, 'retryCount', c.retry_count, 'error', c.last_error)
			   END
		  FROM (SELECT n.*, o.status AS old_status, o.last_error AS old_error, o.retry_count AS old_retry_count,
					   CASE
						   WHEN n.status = o.status THEN
							   CASE WHEN n.status = 'PENDING' AND n.retry_count > o.retry_count THEN 'OPERATION_RETRY_SCHEDULED' END
						   WHEN n.status = 'PENDING' AND o.status = 'BLOCKED' THEN 'OPERATION_RELEASED'
						   WHEN n.status IN ('PENDING', 'BLOCKED') AND o.status IN ('COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED', 'CONFLICT')
							   THEN 'OPERATION_REPLAYED'
						   WHEN n.status = 'BLOCKED' THEN 'OPERATION_BLOCKED'
						   WHEN n.status = 'COMPLETED' THEN 'OPERATION_APPLIED'
						   WHEN n.status = 'FAILED' THEN 'OPERATION_DEAD_LETTERED'
						   WHEN n.status = 'EXPIRED' THEN 'OPERATION_EXPIRED'
						   WHEN n.status = 'CANCELLED' THEN 'OPERATION_CANCELLED'
					   END::@extschema@.sync_event_type AS t
				  FROM new_rows n JOIN old_rows o ON o.id = n.id
				 WHERE n.status <> o.status OR n.retry_count > o.retry_count) c
		 WHERE c.t IS NOT NULL;
	END IF;
	RETURN NULL;
END
$$;

-- sync_conflict: every new row is CONFLICT_DETECTED (resolved automatically
-- or OPEN); OPEN -> RESOLVED is CONFLICT_RESOLVED.  The session is the
-- operation's.
CREATE FUNCTION @extschema@.sync_conflict_events()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_nestloop = off
SET jit = off
AS $$
BEGIN
	IF TG_RELID <> '@extschema@.sync_conflict'::regclass THEN
		RAISE EXCEPTION 'sync_conflict_events fires only on table sync_conflict' USING ERRCODE = '42501';
	END IF;
	IF TG_OP = 'INSERT' THEN
		INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, queue_id, operation_id,
											entity_type, entity_id, conflict_id, detail)
		SELECT n.organization_id, 'CONFLICT_DETECTED'::@extschema@.sync_event_type, n.device_id,
			   (SELECT q.session_id FROM @extschema@.sync_queue q WHERE q.id = n.queue_id), n.queue_id,
			   (SELECT q.operation_id FROM @extschema@.sync_queue q WHERE q.id = n.queue_id), n.entity_type, n.entity_id, n.id,
			   jsonb_build_object('status', n.status, 'type', n.conflict_type, 'resolution', n.resolution,
								  'requiresManualResolution', n.requires_manual_resolution,
								  'fields', jsonb_path_query_array(n.conflicting_fields, '$[*].path'))
		  FROM new_rows n;
	ELSE
		INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, queue_id, operation_id,
											entity_type, entity_id, conflict_id, detail)
		SELECT n.organization_id, 'CONFLICT_RESOLVED'::@extschema@.sync_event_type, n.device_id,
			   (SELECT q.session_id FROM @extschema@.sync_queue q WHERE q.id = n.queue_id), n.queue_id,
			   (SELECT q.operation_id FROM @extschema@.sync_queue q WHERE q.id = n.queue_id), n.entity_type, n.entity_id, n.id,
			   jsonb_build_object('type', n.conflict_type, 'strategy', n.resolution_strategy, 'resolvedBy', n.resolved_by,
								  'notes', n.notes,
								  'openMs', round(extract(epoch FROM coalesce(n.resolved_at, now()) - n.created_at) * 1000, 3))
		  FROM new_rows n JOIN old_rows o ON o.id = n.id
		 WHERE o.status = 'OPEN' AND n.status = 'RESOLVED';
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER sync_queue_events_insert AFTER INSERT ON @extschema@.sync_queue
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sync_queue_events();
CREATE TRIGGER sync_queue_events_update AFTER UPDATE ON @extschema@.sync_queue
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sync_queue_events();
CREATE TRIGGER sync_conflict_events_insert AFTER INSERT ON @extschema@.sync_conflict
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sync_conflict_events();
CREATE TRIGGER sync_conflict_events_update AFTER UPDATE ON @extschema@.sync_conflict
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.sync_conflict_events();

-- Dead-letter handling is audited: a cancellation, and an operation put back
-- from a final status (replay_sync_operation, or an administrator's
-- UPDATE).  The processors never make these changes, so their updates
-- queue no audit event (the WHEN clause is checked per row, no call).
CREATE TRIGGER sync_queue_audit AFTER UPDATE ON @extschema@.sync_queue
	FOR EACH ROW
	WHEN (OLD.status IS DISTINCT FROM NEW.status
		  AND (NEW.status = 'CANCELLED' OR OLD.status IN ('FAILED', 'EXPIRED', 'CANCELLED', 'COMPLETED')))
	EXECUTE FUNCTION @extschema@.audit_row_change('sync_queue');

-- ---------------------------------------------------------------------
-- Sessions
-- ---------------------------------------------------------------------

-- The device details begin_sync_session and end_sync_session keep
-- (app and network), checked: a JSON object of the allowed keys.
CREATE FUNCTION @extschema@.sync_session_details(details jsonb, allowed text[])
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM @extschema@.check_object(details, 'details', allowed);
	RETURN jsonb_strip_nulls(jsonb_build_object(
		'appVersion', @extschema@.json_text(details, 'appVersion', 'details', false, 100),
		'platform', @extschema@.json_text(details, 'platform', 'details', false, 100),
		'osVersion', @extschema@.json_text(details, 'osVersion', 'details', false, 100),
		'deviceModel', @extschema@.json_text(details, 'deviceModel', 'details', false, 100),
		'networkType', @extschema@.json_choice(details, 'networkType', 'details',
			ARRAY['WIFI', 'CELLULAR', 'ETHERNET', 'SATELLITE', 'OTHER', 'UNKNOWN'], 'UNKNOWN'),
		'pendingOperations', @extschema@.json_int(details, 'pendingOperations', 'details', 0, 1000000000, NULL),
		'reason', @extschema@.json_text(details, 'reason', 'details', false, 200)));
END
$$;

-- begin_sync_session(device_id text, details jsonb DEFAULT '{}') RETURNS uuid
-- A device is back online: a new ACTIVE session of the session's
-- organization (backup_offline.organization_id).  details: offlineSince
-- (when the device lost its connection, ISO 8601 with a time zone, by the
-- device's clock: at most backup_offline.sync_max_clock_skew in the
-- future, at most a year back), userId (default backup_offline.user_id),
-- appVersion, platform, osVersion, deviceModel, networkType (WIFI,
-- CELLULAR, ETHERNET, SATELLITE, OTHER, UNKNOWN), pendingOperations (how
-- many the device has to upload).  The device's earlier ACTIVE session, if
-- any, becomes ABANDONED, as do the organization's sessions idle for longer
-- than the session timeout.  Returns the session id.
CREATE FUNCTION @extschema@.begin_sync_session(device_id text, details jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	d jsonb := coalesce(details, '{}');
	org uuid;
	since_text text;
	since timestamptz;
	skew interval := @extschema@.sync_max_clock_skew();
	started timestamptz := clock_timestamp();
	keep jsonb;
	usr uuid;
	sid uuid := gen_random_uuid();
	timeout interval := @extschema@.sync_session_timeout();
BEGIN
	IF device_id IS NULL OR device_id !~ '^[A-Za-z0-9._:@-]{1,200}$' THEN
		PERFORM @extschema@.raise_invalid(format('invalid device_id: %s', coalesce(quote_literal(device_id), 'NULL')),
			'A device id is 1 to 200 letters, digits and . _ : @ -.');
	END IF;
	IF jsonb_typeof(d) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('details must be a JSON object',
			'Pass {"offlineSince": "2025-01-15T08:00:00Z", "appVersion": "4.2.0", "networkType": "CELLULAR"} or ''{}''.');
	END IF;
	keep := @extschema@.sync_session_details(d - 'offlineSince' - 'userId',
		ARRAY['appVersion', 'platform', 'osVersion', 'deviceModel', 'networkType', 'pendingOperations']);
	since_text := @extschema@.json_text(d, 'offlineSince', 'details', false, 40);
	IF since_text IS NOT NULL THEN
		IF since_text !~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}(:?\d{2})?)$' THEN
			PERFORM @extschema@.raise_invalid(format('invalid details.offlineSince: "%s"', since_text),
				'Give the time the device went offline as ISO 8601 with a time zone, such as "2025-01-15T08:00:00Z".');
		END IF;
		BEGIN
			since := since_text::timestamptz;
		EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
			PERFORM @extschema@.raise_invalid(format('invalid details.offlineSince: "%s" is not a valid time', since_text),
				'Give the time the device went offline as ISO 8601 with a time zone, such as "2025-01-15T08:00:00Z".');
		END;
		IF since > started + skew THEN
			PERFORM @extschema@.raise_invalid(
				format('details.offlineSince is %s s in the future (the device clock is ahead; at most %s s are accepted)',
					   round(extract(epoch FROM since - started)::numeric, 1), extract(epoch FROM skew)::bigint),
				'Fix the device clock, or leave offlineSince out.');
		END IF;
		IF since < started - interval '366 days' THEN
			PERFORM @extschema@.raise_invalid(format('details.offlineSince %s is more than a year ago', since_text),
				'The device clock looks wrong: fix it, or leave offlineSince out.');
		END IF;
	END IF;
	usr := coalesce(@extschema@.json_uuid(d, 'userId', 'details'), @extschema@.current_actor());
	org := @extschema@.resolve_organization(NULL, 'backup_offline.organization_id');

	-- one session start per device at a time
	PERFORM pg_advisory_xact_lock(hashtext('backup_offline.sync_session'), hashtext(begin_sync_session.device_id));
	-- the device's unfinished session, and sessions idle past the timeout, are abandoned
	WITH gone AS (
		UPDATE @extschema@.sync_session s
		   SET status = 'ABANDONED', ended_at = started,
			   end_reason = CASE WHEN s.device_id = begin_sync_session.device_id THEN format('superseded by session %s', sid)
								 ELSE format('no activity since %s', s.last_activity_at) END
		 WHERE s.id IN (SELECT a.id FROM @extschema@.sync_session a
						 WHERE a.status = 'ACTIVE'
						   AND (a.device_id = begin_sync_session.device_id OR a.last_activity_at < started - timeout)
						   FOR UPDATE SKIP LOCKED)
		RETURNING s.*)
	INSERT INTO @extschema@.sync_event (organization_id, occurred_at, event_type, device_id, session_id, detail)
	SELECT g.organization_id, started, 'SESSION_ENDED'::@extschema@.sync_event_type, g.device_id, g.id,
		   jsonb_build_object('status', g.status, 'reason', g.end_reason,
							  'durationMs', round(extract(epoch FROM g.ended_at - g.started_at) * 1000, 3))
	  FROM gone g;
	BEGIN
		INSERT INTO @extschema@.sync_session (id, organization_id, device_id, user_id, offline_since, started_at, last_activity_at,
											  details)
		VALUES (sid, org, begin_sync_session.device_id, usr, since, started, started, keep);
	EXCEPTION WHEN unique_violation THEN
		PERFORM @extschema@.raise_invalid(format('device %s has an ACTIVE session this role cannot see', begin_sync_session.device_id),
			'The device belongs to another organization: check backup_offline.organization_id.', NULL, '42501');
	END;
	INSERT INTO @extschema@.sync_event (organization_id, occurred_at, event_type, device_id, session_id, detail)
	VALUES (org, started, 'SESSION_STARTED', begin_sync_session.device_id, sid,
			jsonb_strip_nulls(jsonb_build_object('offlineSince', since, 'userId', usr,
				'offlineMs', round(extract(epoch FROM started - since) * 1000, 3))) || keep);
	RETURN sid;
END
$$;

-- The summary of a session, as end_sync_session returns it: the session's
-- own counters and, computed from its operations, their statuses,
-- conflicts (with_conflict: a sync_conflict row; in_conflict: waiting for
-- a person) and latencies (percentile_cont), and the retries scheduled
-- (events).  timed_out: ACTIVE, but idle past the session timeout.
CREATE VIEW @extschema@.sync_session_summary WITH (security_invoker = true) AS
SELECT s.id, s.organization_id, s.device_id, s.user_id, s.status,
	   s.status = 'ACTIVE' AND s.last_activity_at < now() - @extschema@.sync_session_timeout() AS timed_out,
	   s.offline_since, s.started_at, s.last_activity_at, s.ended_at, s.end_reason,
	   round(extract(epoch FROM s.started_at - s.offline_since) * 1000, 3) AS offline_ms,
	   round(extract(epoch FROM coalesce(s.ended_at, clock_timestamp()) - s.started_at) * 1000, 3) AS duration_ms,
	   s.operations_uploaded, s.duplicates, s.pulls, s.rows_pulled, s.resyncs, s.last_cursor,
	   coalesce(o.operations, 0) AS operations, coalesce(o.pending, 0) AS pending, coalesce(o.completed, 0) AS completed,
	   coalesce(o.in_conflict, 0) AS in_conflict, coalesce(o.failed, 0) AS failed, coalesce(o.expired, 0) AS expired,
	   coalesce(o.cancelled, 0) AS cancelled, r.retries, coalesce(o.with_conflict, 0) AS with_conflict,
	   round(o.apply_ms[1]::numeric, 3) AS apply_p50_ms, round(o.apply_ms[2]::numeric, 3) AS apply_p95_ms,
	   round(o.apply_ms[3]::numeric, 3) AS apply_p99_ms, round(o.apply_max_ms::numeric, 3) AS apply_max_ms,
	   round(o.end_to_end_ms[1]::numeric, 3) AS end_to_end_p50_ms, round(o.end_to_end_ms[2]::numeric, 3) AS end_to_end_p95_ms,
	   round(o.end_to_end_ms[3]::numeric, 3) AS end_to_end_p99_ms, round(o.end_to_end_max_ms::numeric, 3) AS end_to_end_max_ms,
	   s.details, s.end_details
  FROM @extschema@.sync_session s
  LEFT JOIN LATERAL (
	SELECT count(*) AS operations,
		   count(*) FILTER (WHERE q.status IN ('PENDING', 'BLOCKED')) AS pending,
		   count(*) FILTER (WHERE q.status = 'COMPLETED') AS completed,
		   count(*) FILTER (WHERE q.status = 'CONFLICT') AS in_conflict,
		   count(*) FILTER (WHERE q.status = 'FAILED') AS failed,
		   count(*) FILTER (WHERE q.status = 'EXPIRED') AS expired,
		   count(*) FILTER (WHERE q.status = 'CANCELLED') AS cancelled,
		   count(*) FILTER (WHERE q.has_conflict) AS with_conflict,
		   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY (extract(epoch FROM q.completed_at - q.enqueued_at) * 1000)::float8)
			   FILTER (WHERE q.status = 'COMPLETED') AS apply_ms,
		   max((extract(epoch FROM q.completed_at - q.enqueued_at) * 1000)::float8) FILTER (WHERE q.status = 'COMPLETED') AS apply_max_ms,
		   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
			   (ORDER BY (extract(epoch FROM q.completed_at - @extschema@.hlc_time(q.client_hlc)) * 1000)::float8)
			   FILTER (WHERE q.status = 'COMPLETED') AS end_to_end_ms,
		   max((extract(epoch FROM q.completed_at - @extschema@.hlc_time(q.client_hlc)) * 1000)::float8)
			   FILTER (WHERE q.status = 'COMPLETED') AS end_to_end_max_ms
	  FROM @extschema@.sync_queue q
	 WHERE q.session_id = s.id) o ON true
  CROSS JOIN LATERAL (
	SELECT count(*) AS retries FROM @extschema@.sync_event e
	 WHERE e.session_id = s.id AND e.event_type = 'OPERATION_RETRY_SCHEDULED') r;
COMMENT ON VIEW @extschema@.sync_session_summary IS 'Sessions with the statuses, retries, conflicts and latencies of their operations';

-- end_sync_session(session_id uuid, details jsonb DEFAULT '{}') RETURNS jsonb
-- The device is done: its ACTIVE session becomes ENDED.  details:
-- pendingOperations (what the device still has to upload), networkType,
-- reason.  Returns (and keeps in sync_session.summary) the summary:
-- {"sessionId", "deviceId", "userId", "status", "offlineSince",
-- "startedAt", "endedAt", "offlineMs", "durationMs", "uploaded",
-- "duplicates", "pulls", "rowsPulled", "resyncs", "lastCursor",
-- "operations": {"total", "pending", "completed", "conflict", "failed",
-- "expired", "cancelled"}, "retries", "conflicts", "applyLatencyMs":
-- {"p50", "p95", "p99", "max"}, "endToEndLatencyMs": {...}}.
CREATE FUNCTION @extschema@.end_sync_session(session_id uuid, details jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s @extschema@.sync_session;
	keep jsonb;
	result_summary jsonb;
	ended timestamptz := clock_timestamp();
BEGIN
	IF session_id IS NULL THEN
		PERFORM @extschema@.raise_invalid('session_id is required', 'Pass the id begin_sync_session returned.', NULL, '22004');
	END IF;
	IF details IS NULL OR jsonb_typeof(details) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('details must be a JSON object', 'Pass {"pendingOperations": 0} or ''{}''.');
	END IF;
	keep := @extschema@.sync_session_details(details, ARRAY['pendingOperations', 'networkType', 'reason']);
	IF NOT details ? 'networkType' THEN
		keep := keep - 'networkType';
	END IF;
	SELECT * INTO s FROM @extschema@.sync_session x WHERE x.id = end_sync_session.session_id FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM @extschema@.raise_invalid(format('session %s does not exist', session_id),
			'Check the id; sessions of other organizations are not visible.', NULL, '42704');
	END IF;
	IF s.status <> 'ACTIVE' THEN
		PERFORM @extschema@.raise_invalid(format('session %s is %s', session_id, s.status),
			'Only an ACTIVE session ends; begin a new one when the device is back.', NULL, '55000');
	END IF;
	UPDATE @extschema@.sync_session x
	   SET status = 'ENDED', ended_at = ended, last_activity_at = ended, end_details = keep,
		   end_reason = coalesce(keep->>'reason', 'ended by the device')
	 WHERE x.id = s.id;
	SELECT jsonb_build_object(
			   'sessionId', v.id, 'deviceId', v.device_id, 'userId', v.user_id, 'status', v.status,
			   'offlineSince', v.offline_since, 'startedAt', v.started_at, 'endedAt', v.ended_at,
			   'offlineMs', v.offline_ms, 'durationMs', v.duration_ms,
			   'uploaded', v.operations_uploaded, 'duplicates', v.duplicates, 'pulls', v.pulls, 'rowsPulled', v.rows_pulled,
			   'resyncs', v.resyncs, 'lastCursor', v.last_cursor,
			   'operations', jsonb_build_object('total', v.operations, 'pending', v.pending, 'completed', v.completed,
												'conflict', v.in_conflict, 'failed', v.failed, 'expired', v.expired,
												'cancelled', v.cancelled),
			   'retries', v.retries, 'conflicts', v.with_conflict,
			   'applyLatencyMs', jsonb_build_object('p50', v.apply_p50_ms, 'p95', v.apply_p95_ms, 'p99', v.apply_p99_ms,
													'max', v.apply_max_ms),
			   'endToEndLatencyMs', jsonb_build_object('p50', v.end_to_end_p50_ms, 'p95', v.end_to_end_p95_ms,
													   'p99', v.end_to_end_p99_ms, 'max', v.end_to_end_max_ms))
	  INTO result_summary
	  FROM @extschema@.sync_session_summary v WHERE v.id = s.id;
	UPDATE @extschema@.sync_session x SET summary = result_summary WHERE x.id = s.id;
	INSERT INTO @extschema@.sync_event (organization_id, occurred_at, event_type, device_id, session_id, detail)
	VALUES (s.organization_id, ended, 'SESSION_ENDED', s.device_id, s.id,
			jsonb_build_object('status', 'ENDED', 'reason', coalesce(keep->>'reason', 'ended by the device')) || (keep - 'reason')
			|| (result_summary - 'sessionId' - 'deviceId' - 'userId' - 'status'));
	RETURN result_summary;
END
$$;

-- The device's ACTIVE session (NULL: none, or idle past the timeout), for
-- its operations and pulls.
CREATE FUNCTION @extschema@.sync_active_session(device_id text)
RETURNS uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.id FROM @extschema@.sync_session s
	 WHERE s.device_id = sync_active_session.device_id AND s.status = 'ACTIVE'
	   AND s.last_activity_at >= clock_timestamp() - @extschema@.sync_session_timeout()
$$;

-- A pull answered by pull_changes (n_rows NULL: resync required): the
-- device's ACTIVE session counts it, and PULL_COMPLETED or RESYNC_REQUIRED
-- is logged, in the session's organization (without a session, the
-- device's, else the caller's when it is one).
CREATE FUNCTION @extschema@.sync_record_pull(device_id text, since bigint, n_rows integer, next_cursor bigint, has_more boolean,
											 horizon bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sid uuid;
	org uuid;
	orgs uuid[];
BEGIN
	UPDATE @extschema@.sync_session s
	   SET pulls = s.pulls + 1, rows_pulled = s.rows_pulled + coalesce(n_rows, 0),
		   resyncs = s.resyncs + CASE WHEN n_rows IS NULL THEN 1 ELSE 0 END,
		   last_cursor = next_cursor, last_activity_at = clock_timestamp()
	 WHERE s.id = @extschema@.sync_active_session(sync_record_pull.device_id)
	RETURNING s.id, s.organization_id INTO sid, org;
	IF org IS NULL THEN
		SELECT d.organization_id INTO org FROM @extschema@.sync_device d WHERE d.device_id = sync_record_pull.device_id;
	END IF;
	IF org IS NULL THEN
		orgs := @extschema@.current_organization_ids();
		IF cardinality(orgs) = 1 THEN
			org := orgs[1];
		ELSIF NOT @extschema@.sees_all_organizations() THEN
			RETURN;											-- no organization to log it in
		END IF;
	END IF;
	INSERT INTO @extschema@.sync_event (organization_id, event_type, device_id, session_id, detail)
	VALUES (org, CASE WHEN n_rows IS NULL THEN 'RESYNC_REQUIRED' ELSE 'PULL_COMPLETED' END::@extschema@.sync_event_type,
			device_id, sid,
			CASE WHEN n_rows IS NULL THEN jsonb_build_object('since', since, 'horizon', horizon)
				 ELSE jsonb_build_object('rows', n_rows, 'since', since, 'nextCursor', next_cursor, 'hasMore', has_more) END);
END
$$;

-- ---------------------------------------------------------------------
-- Dead letters: cancel and replay
-- ---------------------------------------------------------------------

-- cancel_sync_operation(id uuid) RETURNS jsonb
-- Withdraw a PENDING, BLOCKED or FAILED operation: CANCELLED (operations
-- depending on it fail, or wait with onDependencyFailure HOLD).  Audited;
-- logged as OPERATION_CANCELLED.  Returns {"id", "operationId",
-- "fromStatus", "status"}.
CREATE FUNCTION @extschema@.cancel_sync_operation(id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q @extschema@.sync_queue;
BEGIN
	IF id IS NULL THEN
		PERFORM @extschema@.raise_invalid('id is required', 'Pass the id of a sync_queue row.', NULL, '22004');
	END IF;
	SELECT * INTO q FROM @extschema@.sync_queue x WHERE x.id = cancel_sync_operation.id FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM @extschema@.raise_invalid(format('sync operation %s does not exist', id),
			'Check the id; operations of other organizations are not visible.', NULL, '42704');
	END IF;
	IF q.status NOT IN ('PENDING', 'BLOCKED', 'FAILED') THEN
		PERFORM @extschema@.raise_invalid(format('sync operation %s is %s', id, q.status),
			'Only PENDING, BLOCKED and FAILED operations can be cancelled.', NULL, '55000');
	END IF;
	UPDATE @extschema@.sync_queue x SET status = 'CANCELLED', completed_at = clock_timestamp() WHERE x.id = q.id;
	RETURN jsonb_build_object('id', q.id, 'operationId', q.operation_id, 'fromStatus', q.status, 'status', 'CANCELLED');
END
$$;

-- replay_sync_operation(id uuid) RETURNS jsonb
-- Put a dead-lettered (FAILED) or EXPIRED operation back: PENDING (BLOCKED
-- while an operation it depends on has not completed: replay that one
-- first), retry_count 0, due now, no longer expiring; last_error is
-- cleared (the OPERATION_REPLAYED event keeps it).  Audited.  Returns
-- {"id", "operationId", "fromStatus", "status", "lastError"}.
CREATE FUNCTION @extschema@.replay_sync_operation(id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q @extschema@.sync_queue;
	waits boolean;
BEGIN
	IF id IS NULL THEN
		PERFORM @extschema@.raise_invalid('id is required', 'Pass the id of a FAILED or EXPIRED sync_queue row.', NULL, '22004');
	END IF;
	SELECT * INTO q FROM @extschema@.sync_queue x WHERE x.id = replay_sync_operation.id FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM @extschema@.raise_invalid(format('sync operation %s does not exist', id),
			'Check the id; operations of other organizations are not visible.', NULL, '42704');
	END IF;
	IF q.status NOT IN ('FAILED', 'EXPIRED') THEN
		PERFORM @extschema@.raise_invalid(format('sync operation %s is %s', id, q.status),
			'Only FAILED (dead-lettered) and EXPIRED operations are replayed.', NULL, '55000');
	END IF;
	waits := EXISTS (SELECT 1 FROM unnest(q.depends_on) dep
					  WHERE NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue p
										 WHERE p.device_id = q.device_id AND p.operation_id = dep AND p.status = 'COMPLETED'));
	UPDATE @extschema@.sync_queue x
	   SET status = CASE WHEN waits THEN 'BLOCKED' ELSE 'PENDING' END::@extschema@.sync_queue_status,
		   retry_count = 0, next_attempt_at = now(), expires_at = NULL, completed_at = NULL, last_error = NULL, result = NULL
	 WHERE x.id = q.id;
	RETURN jsonb_build_object('id', q.id, 'operationId', q.operation_id, 'fromStatus', q.status,
							  'status', CASE WHEN waits THEN 'BLOCKED' ELSE 'PENDING' END, 'lastError', q.last_error);
END
$$;

-- ---------------------------------------------------------------------
-- Statistics and the purge
-- ---------------------------------------------------------------------

-- {"count", "p50", "p95", "p99", "max"} of latencies (ms; percentiles by
-- percentile_cont, rounded to microseconds)
CREATE FUNCTION @extschema@.sync_latency_json(n bigint, p double precision[], mx double precision)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_build_object('count', coalesce(n, 0), 'p50', round(p[1]::numeric, 3), 'p95', round(p[2]::numeric, 3),
							  'p99', round(p[3]::numeric, 3), 'max', round(mx::numeric, 3))
$$;

-- sync_statistics(since timestamptz DEFAULT now() - interval '24 hours',
--                 until timestamptz DEFAULT now(), filter jsonb DEFAULT '{}') RETURNS jsonb
-- What happened in [since, until), from the event log and the rows it
-- names, within the caller's organizations (row-level security) and the
-- filter: {"deviceId", "entityType", "sessionId"} (entityType does not
-- narrow sessions and pulls).
--   operations   the operations queued in the window, by their status now
--                and by priority
--   latencyMs    of the operations applied in the window (COMPLETED now):
--                apply = completed_at - enqueued_at, endToEnd =
--                completed_at - hlc_time(client_hlc) (offline time
--                included); count, p50, p95, p99 (percentile_cont: linear
--                interpolation), max, in milliseconds; per priority too
--   conflicts    detected in the window, by type and by status now;
--                resolved (CONFLICT_RESOLVED events)
--   retries, deadLetters, expired, cancelled, replayed, duplicates
--                events in the window
--   pulls        {"count", "rows", "resyncRequired"}
--   sessions     started in the window: {"started", "byStatus", "offlineMs"}
--   events       the count of each of the 16 event types
CREATE FUNCTION @extschema@.sync_statistics(since timestamptz DEFAULT now() - interval '24 hours',
											until timestamptz DEFAULT now(), filter jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	f jsonb := coalesce(filter, '{}');
	dev text;
	etype text;
	sid uuid;
	result jsonb;
BEGIN
	IF since IS NULL OR until IS NULL THEN
		PERFORM @extschema@.raise_invalid(format('%s is required', CASE WHEN since IS NULL THEN 'since' ELSE 'until' END),
			'Give the window as two timestamps, such as now() - interval ''1 hour'' and now().', NULL, '22004');
	END IF;
	IF since > until THEN
		PERFORM @extschema@.raise_invalid(format('since (%s) is after until (%s)', since, until),
			'The window starts at since and ends before until.');
	END IF;
	IF jsonb_typeof(f) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('filter must be a JSON object', 'Pass {"deviceId": "tablet-7"} or ''{}''.');
	END IF;
	PERFORM @extschema@.check_object(f, 'filter', ARRAY['deviceId', 'entityType', 'sessionId']);
	dev := @extschema@.json_matching(f, 'deviceId', 'filter', false, 200, '^[A-Za-z0-9._:@-]{1,200}$',
		'A device id is 1 to 200 letters, digits and . _ : @ -.');
	etype := @extschema@.json_text(f, 'entityType', 'filter', false, 63);
	IF etype IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.sync_entity e WHERE e.entity_type = etype) THEN
		PERFORM @extschema@.raise_invalid(format('invalid filter.entityType: "%s" is not a registered sync entity', etype),
			'Name an entity type registered with register_sync_entity.');
	END IF;
	sid := @extschema@.json_uuid(f, 'sessionId', 'filter');

	WITH ev AS MATERIALIZED (
		SELECT e.event_type, e.queue_id, e.conflict_id, e.detail
		  FROM @extschema@.sync_event e
		 WHERE e.occurred_at >= since AND e.occurred_at < until
		   AND (dev IS NULL OR e.device_id = dev)
		   AND (sid IS NULL OR e.session_id = sid)
		   AND (etype IS NULL OR e.entity_type = etype
				OR e.event_type IN ('SESSION_STARTED', 'SESSION_ENDED', 'PULL_COMPLETED', 'RESYNC_REQUIRED'))),
	counts AS (
		SELECT t, count(ev.event_type) AS n
		  FROM unnest(enum_range(NULL::@extschema@.sync_event_type)) t LEFT JOIN ev ON ev.event_type = t
		 GROUP BY t),
	ops AS (
		SELECT q.status, q.priority
		  FROM (SELECT DISTINCT ev.queue_id FROM ev WHERE ev.event_type = 'OPERATION_QUEUED') a
		  JOIN @extschema@.sync_queue q ON q.id = a.queue_id),
	applied AS (
		SELECT q.priority, (extract(epoch FROM q.completed_at - q.enqueued_at) * 1000)::float8 AS apply_ms,
			   (extract(epoch FROM q.completed_at - @extschema@.hlc_time(q.client_hlc)) * 1000)::float8 AS e2e_ms
		  FROM (SELECT DISTINCT ev.queue_id FROM ev WHERE ev.event_type = 'OPERATION_APPLIED') a
		  JOIN @extschema@.sync_queue q ON q.id = a.queue_id
		 WHERE q.status = 'COMPLETED' AND q.completed_at IS NOT NULL),
	latency AS (
		SELECT grouping(a.priority) AS overall, a.priority,
			   @extschema@.sync_latency_json(count(*),
				   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY a.apply_ms), max(a.apply_ms)) AS apply,
			   @extschema@.sync_latency_json(count(*),
				   percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY a.e2e_ms), max(a.e2e_ms)) AS e2e
		  FROM applied a
		 GROUP BY GROUPING SETS ((), (a.priority))),
	conf AS (
		SELECT c.conflict_type, c.status
		  FROM (SELECT DISTINCT ev.conflict_id FROM ev WHERE ev.event_type = 'CONFLICT_DETECTED') a
		  JOIN @extschema@.sync_conflict c ON c.id = a.conflict_id),
	sess AS (
		SELECT s.status, (extract(epoch FROM s.started_at - s.offline_since) * 1000)::float8 AS offline_ms
		  FROM @extschema@.sync_session s
		 WHERE s.started_at >= since AND s.started_at < until
		   AND (dev IS NULL OR s.device_id = dev) AND (sid IS NULL OR s.id = sid))
	SELECT jsonb_build_object(
		'since', since, 'until', until, 'filter', f,
		'operations', jsonb_build_object(
			'queued', (SELECT count(*) FROM ops),
			'byStatus', (SELECT jsonb_object_agg(s, (SELECT count(*) FROM ops WHERE ops.status = s))
						   FROM unnest(enum_range(NULL::@extschema@.sync_queue_status)) s),
			'byPriority', (SELECT jsonb_object_agg(p, (SELECT count(*) FROM ops WHERE ops.priority = p))
							 FROM unnest(enum_range(NULL::@extschema@.sync_priority)) p)),
		'latencyMs', jsonb_build_object(
			'apply', coalesce((SELECT l.apply FROM latency l WHERE l.overall = 1), @extschema@.sync_latency_json(0, NULL, NULL)),
			'endToEnd', coalesce((SELECT l.e2e FROM latency l WHERE l.overall = 1), @extschema@.sync_latency_json(0, NULL, NULL)),
			'byPriority', (SELECT jsonb_object_agg(p, jsonb_build_object(
								'apply', coalesce(l.apply, @extschema@.sync_latency_json(0, NULL, NULL)),
								'endToEnd', coalesce(l.e2e, @extschema@.sync_latency_json(0, NULL, NULL))))
							 FROM unnest(enum_range(NULL::@extschema@.sync_priority)) p
							 LEFT JOIN latency l ON l.overall = 0 AND l.priority = p)),
		'conflicts', jsonb_build_object(
			'detected', (SELECT count(*) FROM conf),
			'byType', (SELECT jsonb_object_agg(t, (SELECT count(*) FROM conf WHERE conf.conflict_type = t))
						 FROM unnest(enum_range(NULL::@extschema@.sync_conflict_type)) t),
			'byStatus', (SELECT jsonb_object_agg(t, (SELECT count(*) FROM conf WHERE conf.status = t))
						   FROM unnest(enum_range(NULL::@extschema@.sync_conflict_status)) t),
			'resolved', (SELECT n FROM counts WHERE t = 'CONFLICT_RESOLVED')),
		'retries', (SELECT n FROM counts WHERE t = 'OPERATION_RETRY_SCHEDULED'),
		'deadLetters', (SELECT n FROM counts WHERE t = 'OPERATION_DEAD_LETTERED'),
		'expired', (SELECT n FROM counts WHERE t = 'OPERATION_EXPIRED'),
		'cancelled', (SELECT n FROM counts WHERE t = 'OPERATION_CANCELLED'),
		'replayed', (SELECT n FROM counts WHERE t = 'OPERATION_REPLAYED'),
		'duplicates', (SELECT n FROM counts WHERE t = 'OPERATION_DUPLICATE'),
		'pulls', jsonb_build_object(
			'count', (SELECT n FROM counts WHERE t = 'PULL_COMPLETED'),
			'rows', (SELECT coalesce(sum((ev.detail->>'rows')::bigint), 0) FROM ev WHERE ev.event_type = 'PULL_COMPLETED'),
			'resyncRequired', (SELECT n FROM counts WHERE t = 'RESYNC_REQUIRED')),
		'sessions', jsonb_build_object(
			'started', (SELECT count(*) FROM sess),
			'byStatus', (SELECT jsonb_object_agg(t, (SELECT count(*) FROM sess WHERE sess.status = t))
						   FROM unnest(enum_range(NULL::@extschema@.sync_session_status)) t),
			'offlineMs', (SELECT @extschema@.sync_latency_json(count(x.offline_ms),
							  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY x.offline_ms), max(x.offline_ms))
							FROM sess x WHERE x.offline_ms IS NOT NULL)),
		'events', (SELECT jsonb_object_agg(t, n) FROM counts))
	  INTO result;
	RETURN result;
END
$$;

-- purge_sync_events(older_than interval) RETURNS bigint
-- Delete the events older than older_than (at least 1 hour) of the
-- caller's organizations; returns how many.  Statistics cover what is
-- kept.  Called by an administrator or on a schedule, e.g. with pg_cron:
--   SELECT cron.schedule('purge-sync-events', '17 3 * * *',
--                        $$SELECT backup_offline.purge_sync_events('90 days')$$);
CREATE FUNCTION @extschema@.purge_sync_events(older_than interval)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '1 hour' THEN
		PERFORM @extschema@.raise_invalid(format('invalid older_than: %s', coalesce(older_than::text, 'NULL')),
			'Keep at least the last hour of events, such as purge_sync_events(''90 days'').');
	END IF;
	DELETE FROM @extschema@.sync_event e WHERE e.occurred_at < now() - older_than;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- privileges and row-level security
REVOKE ALL ON @extschema@.sync_session, @extschema@.sync_event, @extschema@.sync_session_summary FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.sync_session_timeout(),
	@extschema@.sync_queue_events(),
	@extschema@.sync_conflict_events(),
	@extschema@.sync_session_details(jsonb, text[]),
	@extschema@.begin_sync_session(text, jsonb),
	@extschema@.end_sync_session(uuid, jsonb),
	@extschema@.sync_active_session(text),
	@extschema@.sync_record_pull(text, bigint, integer, bigint, boolean, bigint),
	@extschema@.cancel_sync_operation(uuid),
	@extschema@.replay_sync_operation(uuid),
	@extschema@.sync_latency_json(bigint, double precision[], double precision),
	@extschema@.sync_statistics(timestamptz, timestamptz, jsonb),
	@extschema@.purge_sync_events(interval)
FROM PUBLIC;
GRANT SELECT ON @extschema@.sync_session, @extschema@.sync_event, @extschema@.sync_session_summary
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
GRANT INSERT, UPDATE ON @extschema@.sync_session TO backup_offline_admin, backup_offline_app;
GRANT INSERT ON @extschema@.sync_event TO backup_offline_admin, backup_offline_app;
GRANT DELETE ON @extschema@.sync_event TO backup_offline_admin;
GRANT USAGE ON SEQUENCE @extschema@.sync_event_seq TO backup_offline_admin, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_session_timeout(),
	@extschema@.sync_latency_json(bigint, double precision[], double precision)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_session_details(jsonb, text[]),
	@extschema@.begin_sync_session(text, jsonb),
	@extschema@.end_sync_session(uuid, jsonb),
	@extschema@.sync_active_session(text),
	@extschema@.sync_record_pull(text, bigint, integer, bigint, boolean, bigint),
	@extschema@.cancel_sync_operation(uuid),
	@extschema@.replay_sync_operation(uuid)
TO backup_offline_admin, backup_offline_app;
GRANT EXECUTE ON FUNCTION @extschema@.sync_statistics(timestamptz, timestamptz, jsonb)
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT EXECUTE ON FUNCTION @extschema@.purge_sync_events(interval) TO backup_offline_admin;
ALTER TABLE @extschema@.sync_session ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_session FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
ALTER TABLE @extschema@.sync_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_event FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_session', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_event', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_event_seq', '');
