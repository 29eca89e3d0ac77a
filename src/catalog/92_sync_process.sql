-- Processing the sync queue: process_sync_queue() applies queued operations
-- to the entity tables, detects and resolves conflicts, retries transient
-- failures with backoff and dead-letters permanent ones.
--
-- An operation is taken when it is PENDING, due (next_attempt_at), and no
-- earlier operation of the same device on the same entity is still
-- PENDING, BLOCKED or in CONFLICT; among those, by priority (CRITICAL
-- first) aged by one level per backup_offline.sync_priority_aging seconds
-- of waiting (so LOW work cannot starve), then in enqueue order.  Several
-- processors may run at once: operations are claimed FOR UPDATE SKIP
-- LOCKED.  Each operation runs in its own subtransaction: its change to the
-- entity table, its queue row (the idempotency record) and its conflict
-- record commit together, with the caller's transaction, or not at all.
--
-- Conflicts are detected by version: the operation's baseVersion against
-- the row's current version (sync_row).  The device's document is the base
-- image (sync_row_history) with the payload's fields over it; merge3 merges
-- it with the server's under the entity's policy: its strategy as the
-- default (CLIENT_WINS client_wins, SERVER_WINS server_wins, NEWEST_WINS and
-- FIELD_LEVEL_MERGE lww by hybrid logical clock, MANUAL manual, CUSTOM its
-- function) and its field policies.  Delete against update follows the
-- entity's delete policy.  Every conflict is recorded in sync_conflict with
-- the base, client and server versions, also when resolved automatically.

CREATE TYPE @extschema@.sync_conflict_type AS ENUM
	('UPDATE_UPDATE', 'UPDATE_DELETE', 'DELETE_UPDATE', 'CREATE_CREATE', 'FIELD_LEVEL', 'DEPENDENCY');
CREATE TYPE @extschema@.sync_conflict_status AS ENUM ('AUTO_RESOLVED', 'OPEN', 'RESOLVED');

ALTER TABLE @extschema@.sync_row ADD COLUMN hlc bigint;

CREATE TABLE @extschema@.sync_conflict (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid,
	queue_id uuid NOT NULL REFERENCES @extschema@.sync_queue (id),
	device_id text NOT NULL,
	conflict_type @extschema@.sync_conflict_type NOT NULL,
	entity_type text NOT NULL,
	entity_id text NOT NULL,
	base_version jsonb,
	client_version jsonb NOT NULL,
	server_version jsonb,
	conflicting_fields jsonb NOT NULL DEFAULT '[]',
	merged jsonb,
	resolution text NOT NULL,
	status @extschema@.sync_conflict_status NOT NULL,
	requires_manual_resolution boolean NOT NULL,
	resolved_by uuid,
	resolved_at timestamptz,
	notes text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.sync_conflict IS 'Conflicts between devices'' operations and the server (SPEC.md''s SyncConflict), with every losing value';
CREATE INDEX sync_conflict_open ON @extschema@.sync_conflict (entity_type, entity_id) WHERE status = 'OPEN';
CREATE INDEX sync_conflict_queue ON @extschema@.sync_conflict (queue_id);

-- The merge3 policy of an entity for one operation: its strategy as the
-- default, its field policies, the clocks of the two sides.
CREATE FUNCTION @extschema@.sync_policy(e @extschema@.sync_entity, client_hlc bigint, server_hlc bigint, client_node text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_strip_nulls(jsonb_build_object(
		'default', CASE e.strategy
					   WHEN 'CLIENT_WINS' THEN '"client_wins"'::jsonb
					   WHEN 'SERVER_WINS' THEN '"server_wins"'::jsonb
					   WHEN 'MANUAL' THEN '"manual"'::jsonb
					   WHEN 'CUSTOM' THEN jsonb_build_object('strategy', 'custom', 'function', e.custom_function::regproc::text)
					   ELSE '"lww"'::jsonb END,
		'fields', CASE WHEN e.strategy IN ('FIELD_LEVEL_MERGE', 'NEWEST_WINS', 'CUSTOM') THEN e.field_policies END,
		'clientHlc', client_hlc, 'serverHlc', server_hlc,
		'clientNode', client_node, 'serverNode', 'server'))
$$;

-- Apply one document to an entity table: INSERT (upsert when exists is
-- false and the row is gone), UPDATE of the fields the document has, or
-- DELETE.  Only the table's columns are written; the key is the entity id.
CREATE FUNCTION @extschema@.sync_apply(e @extschema@.sync_entity, action text, entity_id text, doc jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols text;
	d jsonb := coalesce(doc, '{}') || jsonb_build_object(e.key_column, entity_id);
BEGIN
	SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
	  FROM pg_attribute a
	 WHERE a.attrelid = e.table_name AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
	   AND d ? a.attname AND (action <> 'UPDATE' OR a.attname <> e.key_column);
	IF action = 'INSERT' THEN
		EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, $1)',
					   e.table_name, cols, cols, e.table_name) USING d;
	ELSIF action = 'UPDATE' THEN
		IF cols IS NOT NULL THEN
			EXECUTE format('UPDATE %s SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1)) WHERE %I::text = $2',
						   e.table_name, cols, cols, e.table_name, e.key_column) USING d, entity_id;
		END IF;
	ELSE
		EXECUTE format('DELETE FROM %s WHERE %I::text = $1', e.table_name, e.key_column) USING entity_id;
	END IF;
END
$$;

-- Record the hybrid logical clock of the operation that just wrote a row,
-- in the same transaction; returns the row's version (NULL when this
-- transaction did not write it).  SECURITY DEFINER: processors may not
-- write sync_row otherwise, and only the row their own transaction wrote.
CREATE FUNCTION @extschema@.sync_stamp(entity uuid, key text, hlc bigint)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	UPDATE @extschema@.sync_row s SET hlc = greatest(coalesce(s.hlc, 0), sync_stamp.hlc)
	 WHERE s.entity_id = entity AND s.row_key = key AND s.writer = pg_current_xact_id()
	RETURNING s.version
$$;

-- Apply one claimed operation (in the caller's subtransaction); returns the
-- queue row's outcome: {"status", "result", "conflictId"}.
CREATE FUNCTION @extschema@.sync_apply_operation(q @extschema@.sync_queue)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
	r @extschema@.sync_row;
	server_doc jsonb;
	base_doc jsonb;
	client_doc jsonb;
	m jsonb;
	ctype @extschema@.sync_conflict_type;
	cid uuid;
	exists_now boolean;
	server_hlc bigint;
	outcome text := 'COMPLETED';
	resolution text;
	new_version bigint;
BEGIN
	SELECT * INTO e FROM @extschema@.sync_entity s
	 WHERE s.entity_type = q.entity_type AND (s.organization_id IS NULL OR s.organization_id = q.organization_id)
	 ORDER BY s.organization_id NULLS LAST LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sync entity type "%" is no longer registered', q.entity_type USING ERRCODE = '42704';
	END IF;
	-- the current row, locked: other processors wait for this operation
	EXECUTE format('SELECT to_jsonb(t.*) FROM %s t WHERE %I::text = $1 FOR UPDATE', e.table_name, e.key_column)
		INTO server_doc USING q.entity_id;
	exists_now := server_doc IS NOT NULL;
	SELECT * INTO r FROM @extschema@.sync_row s WHERE s.entity_id = e.id AND s.row_key = q.entity_id;
	server_hlc := coalesce(r.hlc, ((extract(epoch FROM r.changed_at) * 1000)::bigint << 16));
	IF q.base_version IS NOT NULL THEN
		SELECT h.image INTO base_doc FROM @extschema@.sync_row_history h
		 WHERE h.entity_id = e.id AND h.row_key = q.entity_id AND h.version = q.base_version;
	END IF;
	client_doc := coalesce(base_doc, '{}') || coalesce(q.payload, '{}') || jsonb_build_object(e.key_column, q.entity_id);

	IF q.operation = 'DELETE' THEN
		IF NOT exists_now THEN
			NULL;												-- already gone: done
		ELSIF r.version = q.base_version OR e.delete_policy = 'DELETE_WINS' THEN
			IF r.version <> q.base_version THEN
				ctype := 'DELETE_UPDATE';
				resolution := 'delete_wins';
			END IF;
			PERFORM @extschema@.sync_apply(e, 'DELETE', q.entity_id, NULL);
		ELSE
			ctype := 'DELETE_UPDATE';
			resolution := CASE e.delete_policy WHEN 'UPDATE_WINS' THEN 'update_wins' ELSE 'manual' END;
			IF e.delete_policy = 'MANUAL' THEN
				outcome := 'CONFLICT';
			END IF;
		END IF;
	ELSIF NOT exists_now AND q.operation IN ('CREATE', 'UPSERT') THEN
		PERFORM @extschema@.sync_apply(e, 'INSERT', q.entity_id, client_doc);
	ELSIF NOT exists_now AND r.row_key IS NULL THEN
		RAISE EXCEPTION '% % does not exist: a % needs a row the server has', q.entity_type, q.entity_id, q.operation
			USING ERRCODE = '42704', HINT = 'Create it first (CREATE or UPSERT).';
	ELSIF NOT exists_now THEN
		-- the device updated a row the server deleted
		ctype := 'UPDATE_DELETE';
		IF e.delete_policy = 'UPDATE_WINS' THEN
			resolution := 'update_wins';
			PERFORM @extschema@.sync_apply(e, 'INSERT', q.entity_id, client_doc);
		ELSIF e.delete_policy = 'MANUAL' THEN
			resolution := 'manual';
			outcome := 'CONFLICT';
		ELSE
			resolution := 'delete_wins';
		END IF;
	ELSIF q.operation = 'CREATE' OR r.version IS DISTINCT FROM q.base_version THEN
		-- both changed it: merge field by field under the entity's policy
		ctype := CASE WHEN q.operation = 'CREATE' THEN 'CREATE_CREATE' ELSE 'UPDATE_UPDATE' END;
		m := @extschema@.merge3(CASE WHEN q.operation = 'CREATE' THEN NULL ELSE base_doc END, client_doc, server_doc,
								@extschema@.sync_policy(e, q.client_hlc, server_hlc, q.device_id));
		IF jsonb_array_length(m->'conflicts') = 0 THEN
			ctype := NULL;										-- disjoint changes: nothing lost
		ELSIF ctype = 'UPDATE_UPDATE' AND NOT (m->>'requiresManualResolution')::boolean THEN
			ctype := 'FIELD_LEVEL';
		END IF;
		resolution := CASE WHEN (m->>'requiresManualResolution')::boolean THEN 'manual' ELSE 'merged' END;
		IF (m->>'requiresManualResolution')::boolean THEN
			outcome := 'CONFLICT';
		END IF;
		IF m->'merged' IS DISTINCT FROM server_doc THEN
			PERFORM @extschema@.sync_apply(e, 'UPDATE', q.entity_id, m->'merged');
		END IF;
	ELSE
		PERFORM @extschema@.sync_apply(e, 'UPDATE', q.entity_id, client_doc);
	END IF;

	-- the row's clock: the operation's (a later server edit has its own time)
	new_version := @extschema@.sync_stamp(e.id, q.entity_id, q.client_hlc);
	IF ctype IS NOT NULL THEN
		INSERT INTO @extschema@.sync_conflict (organization_id, queue_id, device_id, conflict_type, entity_type, entity_id,
			base_version, client_version, server_version, conflicting_fields, merged, resolution, status,
			requires_manual_resolution)
		VALUES (q.organization_id, q.id, q.device_id, ctype, q.entity_type, q.entity_id,
			CASE WHEN base_doc IS NOT NULL THEN jsonb_build_object('version', q.base_version, 'data', base_doc) END,
			jsonb_build_object('operation', q.operation, 'data', client_doc, 'hlc', q.client_hlc, 'baseVersion', q.base_version),
			CASE WHEN r.row_key IS NOT NULL THEN jsonb_build_object('version', r.version, 'deleted', NOT exists_now,
																	 'data', server_doc, 'hlc', server_hlc) END,
			coalesce(m->'conflicts', '[]'), m->'merged', resolution,
			(CASE WHEN outcome = 'CONFLICT' THEN 'OPEN' ELSE 'AUTO_RESOLVED' END)::@extschema@.sync_conflict_status,
			outcome = 'CONFLICT')
		RETURNING id INTO cid;
	END IF;
	RETURN jsonb_strip_nulls(jsonb_build_object('status', outcome,
		'result', jsonb_strip_nulls(jsonb_build_object('version', new_version, 'conflictType', ctype, 'resolution', resolution)),
		'conflictId', cid));
END
$$;

-- process_sync_queue(max_operations int DEFAULT 1000) RETURNS jsonb
-- Apply up to max_operations queued operations (see the top of this file);
-- returns {"processed", "completed", "conflicts", "retried", "failed",
-- "expired", "released"}.  Safe with several processors at once.
CREATE FUNCTION @extschema@.process_sync_queue(max_operations integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q @extschema@.sync_queue;
	outcome jsonb;
	aging double precision := coalesce(extract(epoch FROM nullif(current_setting('backup_offline.sync_priority_aging', true), '')::interval), 60);
	processed integer := 0;
	completed integer := 0;
	conflicts integer := 0;
	retried integer := 0;
	failed integer := 0;
	expired integer := 0;
	released integer := 0;
	claimed integer;
	released_now integer;
	n integer;
	state text;
	msg text;
	transient boolean;
BEGIN
	IF max_operations IS NULL OR max_operations NOT BETWEEN 1 AND 100000 THEN
		PERFORM @extschema@.raise_invalid(format('invalid max_operations: %s', coalesce(max_operations::text, 'NULL')),
			'Process 1 to 100000 operations per call.');
	END IF;
	LOOP
		-- housekeeping: expiry, dependencies that finished (again whenever a
		-- batch comes back empty, so chains complete within one call)
		UPDATE @extschema@.sync_queue SET status = 'EXPIRED', completed_at = now(),
			   last_error = jsonb_build_object('message', 'not applied before expiresAt')
		 WHERE status IN ('PENDING', 'BLOCKED') AND expires_at < now();
		GET DIAGNOSTICS n = ROW_COUNT;
		expired := expired + n;
		UPDATE @extschema@.sync_queue b SET status = 'PENDING'
		 WHERE b.status = 'BLOCKED'
		   AND NOT EXISTS (SELECT 1 FROM unnest(b.depends_on) d
							WHERE NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue p
											   WHERE p.device_id = b.device_id AND p.operation_id = d AND p.status = 'COMPLETED'));
		GET DIAGNOSTICS released_now = ROW_COUNT;
		released := released + released_now;
		-- a dependency that will never complete: fail the dependents (or hold them)
		UPDATE @extschema@.sync_queue b SET status = 'FAILED', completed_at = now(),
			   last_error = jsonb_build_object('sqlstate', '55000', 'message',
					format('dependency %s %s', f.operation_id, lower(f.status::text)))
		  FROM @extschema@.sync_queue f
		 WHERE b.status = 'BLOCKED' AND b.on_dependency_failure = 'FAIL'
		   AND f.device_id = b.device_id AND f.operation_id = ANY (b.depends_on)
		   AND f.status IN ('FAILED', 'EXPIRED', 'CANCELLED');
		GET DIAGNOSTICS n = ROW_COUNT;
		failed := failed + n;

		EXIT WHEN processed >= max_operations;
		-- a batch of runnable operations, best first, claimed; the same
		-- device's later operations on an entity are not runnable while an
		-- earlier one waits, so a batch holds at most one per device and entity
		claimed := 0;
		FOR q IN
			SELECT * FROM @extschema@.sync_queue c
			 WHERE c.status = 'PENDING' AND c.next_attempt_at <= now()
			   AND NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue p
								WHERE p.device_id = c.device_id AND p.entity_type = c.entity_type AND p.entity_id = c.entity_id
								  AND p.device_seq < c.device_seq AND p.status IN ('PENDING', 'BLOCKED', 'CONFLICT'))
			 ORDER BY CASE c.priority WHEN 'CRITICAL' THEN 0 WHEN 'HIGH' THEN 1 WHEN 'NORMAL' THEN 2 WHEN 'LOW' THEN 3 ELSE 4 END
					  - floor(extract(epoch FROM now() - c.enqueued_at) / aging), c.enqueue_seq
			 LIMIT least(100, max_operations - processed)
			 FOR UPDATE SKIP LOCKED
		LOOP
			claimed := claimed + 1;
			processed := processed + 1;
			BEGIN
				outcome := @extschema@.sync_apply_operation(q);
				UPDATE @extschema@.sync_queue SET status = (outcome->>'status')::@extschema@.sync_queue_status,
					   result = outcome->'result', has_conflict = outcome ? 'conflictId', completed_at = clock_timestamp(),
					   last_error = NULL
				 WHERE id = q.id;
				IF outcome->>'status' = 'CONFLICT' THEN
					conflicts := conflicts + 1;
				ELSE
					completed := completed + 1;
				END IF;
				-- the device's next operation on this entity may now outrank the
				-- rest of the batch: take the order afresh
				IF outcome->>'status' = 'COMPLETED' AND EXISTS (
						SELECT 1 FROM @extschema@.sync_queue x
						 WHERE x.device_id = q.device_id AND x.entity_type = q.entity_type AND x.entity_id = q.entity_id
						   AND x.device_seq > q.device_seq AND x.status = 'PENDING') THEN
					EXIT;
				END IF;
			EXCEPTION WHEN OTHERS THEN
				GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
				-- lock timeouts, deadlocks, serialization failures, shortage: try again later
				transient := state IN ('40001', '40P01', '55P03', '57014', '53000', '53100', '53200', '53300');
				IF transient AND q.retry_count < q.max_retries THEN
					UPDATE @extschema@.sync_queue SET retry_count = retry_count + 1,
						   next_attempt_at = now() + least(interval '1 hour',
								interval '1 second' * power(2, q.retry_count) * (0.5 + random() / 2)),
						   last_error = jsonb_build_object('sqlstate', state, 'message', msg, 'transient', true)
					 WHERE id = q.id;
					retried := retried + 1;
				ELSE
					UPDATE @extschema@.sync_queue SET status = 'FAILED', completed_at = clock_timestamp(),
						   retry_count = retry_count + 1,
						   last_error = jsonb_build_object('sqlstate', state, 'message', msg, 'transient', transient)
					 WHERE id = q.id;
					failed := failed + 1;
				END IF;
			END;
		END LOOP;
		-- nothing runnable: done, unless finished dependencies or released entities make more runnable
		EXIT WHEN claimed = 0 AND released_now = 0;
	END LOOP;
	RETURN jsonb_build_object('processed', processed, 'completed', completed, 'conflicts', conflicts, 'retried', retried,
							  'failed', failed, 'expired', expired, 'released', released);
END
$$;

REVOKE ALL ON @extschema@.sync_conflict FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.sync_policy(@extschema@.sync_entity, bigint, bigint, text),
	@extschema@.sync_apply(@extschema@.sync_entity, text, text, jsonb),
	@extschema@.sync_stamp(uuid, text, bigint),
	@extschema@.sync_apply_operation(@extschema@.sync_queue),
	@extschema@.process_sync_queue(integer)
FROM PUBLIC;
GRANT SELECT ON @extschema@.sync_conflict TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT INSERT, UPDATE ON @extschema@.sync_conflict TO backup_offline_admin, backup_offline_app;
GRANT UPDATE ON @extschema@.sync_queue TO backup_offline_admin, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_policy(@extschema@.sync_entity, bigint, bigint, text),
	@extschema@.sync_apply(@extschema@.sync_entity, text, text, jsonb),
	@extschema@.sync_stamp(uuid, text, bigint),
	@extschema@.sync_apply_operation(@extschema@.sync_queue),
	@extschema@.process_sync_queue(integer)
TO backup_offline_admin, backup_offline_app;
ALTER TABLE @extschema@.sync_conflict ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_conflict FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_conflict', '');
