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
-- LOCKED.  An operation's change to the entity table, its queue row (the
-- idempotency record) and its conflict record commit together, with the
-- caller's transaction, or not at all.  Operations with nothing to merge
-- (an edit of the version the device knows, of a row no other operation
-- of the batch touches) are written set-based, a run of them per statement
-- (a plain queue pays a statement, and the table's statement triggers, per
-- job); if such a statement fails, its operations are applied one by one.
-- Every other operation runs alone in its own subtransaction.
--
-- A device that edits a row several times offline sends the same
-- baseVersion each time: each edit is taken as built on the device's
-- earlier ones (sync_device_base, sync_known_version), so its own earlier
-- edits are neither counted twice nor reported as conflicts.
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
-- default, its field policies, the clocks of the two sides.  Without the
-- base the device edited (an UPDATE whose base image is gone, an UPSERT
-- without a baseVersion) a counter's increment cannot be told from its value:
-- additive fields are then decided by the default rule, their losing value
-- recorded, instead of adding the device's whole value.
CREATE FUNCTION @extschema@.sync_policy(e @extschema@.sync_entity, client_hlc bigint, server_hlc bigint, client_node text,
										base_known boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN jsonb_strip_nulls(jsonb_build_object(
		'default', CASE e.strategy
					   WHEN 'CLIENT_WINS' THEN '"client_wins"'::jsonb
					   WHEN 'SERVER_WINS' THEN '"server_wins"'::jsonb
					   WHEN 'MANUAL' THEN '"manual"'::jsonb
					   WHEN 'CUSTOM' THEN jsonb_build_object('strategy', 'custom', 'function', e.custom_function::regproc::text)
					   ELSE '"lww"'::jsonb END,
		'fields', CASE WHEN e.strategy IN ('FIELD_LEVEL_MERGE', 'NEWEST_WINS', 'CUSTOM') THEN
					   CASE WHEN base_known THEN e.field_policies
							ELSE (SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}') FROM jsonb_each(e.field_policies) f
								   WHERE coalesce(f.value->>'strategy', f.value #>> '{}') IS DISTINCT FROM 'additive') END END,
		'clientHlc', client_hlc, 'serverHlc', server_hlc,
		'clientNode', client_node, 'serverNode', 'server'));
END
$$;

-- The sync entity an operation is for: the organization's own
-- registration of the type, else the one for every organization.
-- (The small helpers of the processor are PL/pgSQL, not SQL functions:
-- PL/pgSQL keeps their plans for the session, a SQL function called from
-- PL/pgSQL is planned again at every call.)
CREATE FUNCTION @extschema@.sync_entity_of(entity_type text, organization uuid)
RETURNS @extschema@.sync_entity
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
BEGIN
	SELECT s.* INTO e FROM @extschema@.sync_entity s
	 WHERE s.entity_type = sync_entity_of.entity_type AND (s.organization_id IS NULL OR s.organization_id = organization)
	 ORDER BY s.organization_id NULLS LAST LIMIT 1;
	RETURN e;
END
$$;

-- An entity's key column (of the table alias rel) compared with the
-- parameter param (text, or text[] when is_array), cast to the key's base
-- type without its length (a cast to char(3) or to a domain over
-- varchar(3) would cut 'abcd' to 'abc', or char to one character) so that
-- the index on the key is used (a uuid key compared as text would be read
-- whole), and then as the text the row's key is known by (sync_row.row_key):
-- 'A1B2...' does not find the row of the uuid 'a1b2...'.
CREATE FUNCTION @extschema@.sync_key_match(e @extschema@.sync_entity, rel text, param text, is_array boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT format(CASE WHEN is_array THEN '%1$s.%2$I = ANY (%3$s::%4$s[]) AND (to_jsonb(%1$s.%2$I) #>> ''{}'') = ANY (%3$s)'
							   ELSE '%1$s.%2$I = %3$s::%4$s AND (to_jsonb(%1$s.%2$I) #>> ''{}'') = %3$s' END,
						  rel, e.key_column, param,
						  format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, -1))
			  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
			 WHERE a.attrelid = e.table_name AND a.attname = e.key_column);
END
$$;

-- Apply one document to an entity table: INSERT, UPDATE of the fields the
-- document has, or DELETE.  Only the table's columns are written (not
-- generated ones; an UPDATE never writes the key or an identity column
-- GENERATED ALWAYS); the key is the entity id.
CREATE FUNCTION @extschema@.sync_apply(e @extschema@.sync_entity, action text, entity_id text, doc jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols text;
	d jsonb := coalesce(doc, '{}') || jsonb_build_object(e.key_column, entity_id);
BEGIN
	IF action = 'UPDATE' THEN
		SELECT string_agg(quote_ident(c), ', ' ORDER BY n) INTO cols
		  FROM unnest(@extschema@.sync_writable_columns(e)) WITH ORDINALITY AS w(c, n) WHERE d ? c;
	ELSE
		SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
		  FROM pg_attribute a
		 WHERE a.attrelid = e.table_name AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND d ? a.attname;
	END IF;
	IF action = 'INSERT' THEN
		EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, $1)',
					   e.table_name, cols, cols, e.table_name) USING d;
	ELSIF action = 'UPDATE' THEN
		IF cols IS NOT NULL THEN
			EXECUTE format('UPDATE %s sync_target SET (%s) = (SELECT %s FROM jsonb_populate_record(NULL::%s, $1)) WHERE %s',
						   e.table_name, cols, cols, e.table_name, @extschema@.sync_key_match(e, 'sync_target', '$2')) USING d, entity_id;
		END IF;
	ELSE
		EXECUTE format('DELETE FROM %s sync_target WHERE %s', e.table_name, @extschema@.sync_key_match(e, 'sync_target', '$1'))
			USING entity_id;
	END IF;
END
$$;

-- Record the hybrid logical clocks of the operations that just wrote rows
-- (keys, with hlcs), in the same transaction; returns each row's version
-- (rows this transaction did not write are left out).  SECURITY DEFINER:
-- processors may not write sync_row otherwise, and only the rows their own
-- transaction wrote.
CREATE FUNCTION @extschema@.sync_stamp(entity uuid, keys text[], hlcs bigint[])
RETURNS TABLE (row_key text, version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- never later than a device clock queue_operations accepts
	latest bigint := (extract(epoch FROM clock_timestamp() + @extschema@.sync_max_clock_skew()) * 1000)::bigint << 16;
BEGIN
	RETURN QUERY
		UPDATE @extschema@.sync_row s SET hlc = least(greatest(coalesce(s.hlc, 0), u.hlc), latest)
		  FROM unnest(keys, hlcs) u(key, hlc)
		 WHERE s.entity_id = entity AND s.row_key = ANY (keys) AND s.row_key = u.key AND s.writer = pg_current_xact_id()
		RETURNING s.row_key, s.version;
END
$$;

-- A row's hybrid logical clock: that of the device operation that wrote it
-- last (hlc), else the time of its last write (changed_at: the office or
-- the application wrote it directly).
CREATE FUNCTION @extschema@.sync_row_clock(hlc bigint, changed_at timestamptz)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT COALESCE(hlc, (EXTRACT(epoch FROM changed_at) OPERATOR(pg_catalog.*) 1000)::bigint OPERATOR(pg_catalog.<<) 16)
$$;

-- What the device had of a row when it made operation q: the image of the
-- version it pulled (q.base_version) with the payloads of its earlier
-- operations on that row, made on the same base and applied, over it in
-- order (an earlier edit that failed is carried, if at all, by the later
-- one's values).  A
-- device that edits a row twice offline sends the same baseVersion twice:
-- its second edit builds on its first, not on the pulled image (merged
-- against the pulled image, an additive counter would count the first edit
-- twice and an appended note would be appended twice).  NULL when that
-- image is no longer kept (history_depth).
CREATE FUNCTION @extschema@.sync_device_base(q @extschema@.sync_queue, entity uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT h.image || coalesce((SELECT jsonb_object_agg(f.key, f.value ORDER BY p.device_seq)
										  FROM @extschema@.sync_queue p, jsonb_each(p.payload) f
										 WHERE p.device_id = q.device_id AND p.entity_type = q.entity_type
										   AND p.entity_id = q.entity_id AND p.device_seq < q.device_seq
										   AND p.base_version = q.base_version AND p.status = 'COMPLETED'), '{}')
			  FROM @extschema@.sync_row_history h
			 WHERE h.entity_id = entity AND h.row_key = q.entity_id AND h.version = q.base_version);
END
$$;

-- The version of the row that holds nothing the device has not seen: the
-- one it edited (q.base_version) or, when its previous operation on the
-- row that was not dropped (failed, expired, cancelled) was made on the
-- same base and written as sent (result.applied DIRECT: no merge, no
-- conflict), the version that operation wrote.
CREATE FUNCTION @extschema@.sync_known_version(q @extschema@.sync_queue)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN coalesce((SELECT CASE WHEN p.base_version = q.base_version AND p.status = 'COMPLETED' AND NOT p.has_conflict
									  AND p.result->>'applied' = 'DIRECT' THEN (p.result->>'version')::bigint END
					   FROM @extschema@.sync_queue p
					  WHERE p.device_id = q.device_id AND p.entity_type = q.entity_type AND p.entity_id = q.entity_id
						AND p.device_seq < q.device_seq AND p.status NOT IN ('FAILED', 'EXPIRED', 'CANCELLED')
					  ORDER BY p.device_seq DESC LIMIT 1), q.base_version);
END
$$;

-- Apply one claimed operation (in the caller's subtransaction); returns the
-- queue row's outcome: {"status", "result", "conflictId"}; result.applied
-- says what was written: DIRECT (the payload as sent), MERGED (merged with
-- the server's row) or NONE.
CREATE FUNCTION @extschema@.sync_apply_operation(q @extschema@.sync_queue)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity := @extschema@.sync_entity_of(q.entity_type, q.organization_id);
	r @extschema@.sync_row;
	server_doc jsonb;
	base_doc jsonb;
	client_doc jsonb;
	m jsonb;
	ctype @extschema@.sync_conflict_type;
	cid uuid;
	exists_now boolean;
	server_hlc bigint;
	known bigint := @extschema@.sync_known_version(q);
	outcome text := 'COMPLETED';
	resolution text;
	applied text := 'NONE';
	new_version bigint;
BEGIN
	IF e.id IS NULL THEN
		RAISE EXCEPTION 'sync entity type "%" is no longer registered', q.entity_type USING ERRCODE = '42704';
	END IF;
	-- the current row, locked: other processors wait for this operation
	EXECUTE format('SELECT to_jsonb(sync_target.*) FROM %s sync_target WHERE %s FOR UPDATE',
				   e.table_name, @extschema@.sync_key_match(e, 'sync_target', '$1'))
		INTO server_doc USING q.entity_id;
	exists_now := server_doc IS NOT NULL;
	SELECT * INTO r FROM @extschema@.sync_row s WHERE s.entity_id = e.id AND s.row_key = q.entity_id;
	server_hlc := @extschema@.sync_row_clock(r.hlc, r.changed_at);
	IF q.base_version IS NOT NULL THEN
		base_doc := @extschema@.sync_device_base(q, e.id);
	END IF;
	client_doc := coalesce(base_doc, '{}') || coalesce(q.payload, '{}') || jsonb_build_object(e.key_column, q.entity_id);

	IF q.operation = 'DELETE' THEN
		IF NOT exists_now THEN
			NULL;												-- already gone: done
		ELSIF r.version = known OR e.delete_policy = 'DELETE_WINS' THEN
			IF r.version <> known THEN
				ctype := 'DELETE_UPDATE';
				resolution := 'delete_wins';
			END IF;
			PERFORM @extschema@.sync_apply(e, 'DELETE', q.entity_id, NULL);
			applied := 'DIRECT';
		ELSE
			ctype := 'DELETE_UPDATE';
			resolution := CASE e.delete_policy WHEN 'UPDATE_WINS' THEN 'update_wins' ELSE 'manual' END;
			IF e.delete_policy = 'MANUAL' THEN
				outcome := 'CONFLICT';
			END IF;
		END IF;
	ELSIF NOT exists_now AND q.operation IN ('CREATE', 'UPSERT') THEN
		PERFORM @extschema@.sync_apply(e, 'INSERT', q.entity_id, client_doc);
		applied := 'DIRECT';
	ELSIF NOT exists_now AND r.row_key IS NULL THEN
		RAISE EXCEPTION '% % does not exist: a % needs a row the server has', q.entity_type, q.entity_id, q.operation
			USING ERRCODE = '42704', HINT = 'Create it first (CREATE or UPSERT).';
	ELSIF NOT exists_now THEN
		-- the device updated a row the server deleted
		ctype := 'UPDATE_DELETE';
		IF e.delete_policy = 'UPDATE_WINS' THEN
			resolution := 'update_wins';
			PERFORM @extschema@.sync_apply(e, 'INSERT', q.entity_id, client_doc);
			applied := 'MERGED';
		ELSIF e.delete_policy = 'MANUAL' THEN
			resolution := 'manual';
			outcome := 'CONFLICT';
		ELSE
			resolution := 'delete_wins';
		END IF;
	ELSIF q.operation = 'CREATE' OR r.version IS DISTINCT FROM known THEN
		-- both changed it: merge field by field under the entity's policy
		ctype := CASE WHEN q.operation = 'CREATE' THEN 'CREATE_CREATE' ELSE 'UPDATE_UPDATE' END;
		m := @extschema@.merge3(CASE WHEN q.operation = 'CREATE' THEN NULL ELSE base_doc END, client_doc, server_doc,
								@extschema@.sync_policy(e, q.client_hlc, server_hlc, q.device_id,
														q.operation = 'CREATE' OR base_doc IS NOT NULL));
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
			applied := 'MERGED';
		END IF;
	ELSE
		-- the row is what the device had: its fields as sent
		PERFORM @extschema@.sync_apply(e, 'UPDATE', q.entity_id, q.payload);
		applied := 'DIRECT';
	END IF;

	-- the row's clock, when this operation wrote it: the later of the
	-- operation's and the row's before (a merge keeps the row's newer values;
	-- a row's clock never goes back).  An operation that wrote nothing leaves
	-- it alone (the row may have been written earlier in this transaction).
	IF applied <> 'NONE' THEN
		SELECT s.version INTO new_version
		  FROM @extschema@.sync_stamp(e.id, ARRAY[q.entity_id], ARRAY[greatest(q.client_hlc, server_hlc)]) s;
	END IF;
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
		'result', jsonb_strip_nulls(jsonb_build_object('version', new_version, 'applied', applied, 'conflictType', ctype,
													   'resolution', resolution)),
		'conflictId', cid));
END
$$;

-- Apply one claimed operation in its own subtransaction and record its
-- outcome on its queue row: COMPLETED or CONFLICT (sync_apply_operation),
-- RETRIED (a transient failure: lock timeouts, deadlocks, serialization
-- failures, shortages; tried again after 2^retry_count seconds times a
-- random 0.5..1, at most an hour) or FAILED (dead-lettered with the
-- reason).  Returns the outcome.
CREATE FUNCTION @extschema@.sync_process_one(q @extschema@.sync_queue)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	outcome jsonb;
	state text;
	msg text;
	transient boolean;
BEGIN
	BEGIN
		outcome := @extschema@.sync_apply_operation(q);
		UPDATE @extschema@.sync_queue SET status = (outcome->>'status')::@extschema@.sync_queue_status,
			   result = outcome->'result', has_conflict = outcome ? 'conflictId', completed_at = clock_timestamp(),
			   last_error = NULL
		 WHERE id = q.id;
		RETURN outcome->>'status';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	END;
	transient := state IN ('40001', '40P01', '55P03', '53000', '53100', '53200', '53300');
	IF transient AND q.retry_count < q.max_retries THEN
		UPDATE @extschema@.sync_queue SET retry_count = retry_count + 1,
			   next_attempt_at = now() + least(interval '1 hour', interval '1 second' * power(2, q.retry_count) * (0.5 + random() / 2)),
			   last_error = jsonb_build_object('sqlstate', state, 'message', msg, 'transient', true)
		 WHERE id = q.id;
		RETURN 'RETRIED';
	END IF;
	UPDATE @extschema@.sync_queue SET status = 'FAILED', completed_at = clock_timestamp(), retry_count = retry_count + 1,
		   last_error = jsonb_build_object('sqlstate', state, 'message', msg, 'transient', transient)
	 WHERE id = q.id;
	RETURN 'FAILED';
END
$$;

-- The operations of a claimed batch that can be written as sent,
-- set-based (sync_apply_direct): an UPDATE, PATCH or MERGE of a row that
-- exists, that no other operation of the batch touches, that no other
-- processor holds (it is locked here, SKIP LOCKED) and that is at the
-- version the device knows (sync_known_version): nothing to merge.  Their
-- ids, entities and the row versions found.  Everything else (creates,
-- deletes, conflicts, rows another processor holds, keys the key's type
-- refuses) is applied one by one.
CREATE FUNCTION @extschema@.sync_direct_candidates(batch @extschema@.sync_queue[])
RETURNS TABLE (id uuid, entity uuid, version bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
	eid uuid;
	ids uuid[];
	keys text[];
	locked text[];
	writable text[];
BEGIN
	FOR eid, ids, keys IN
		SELECT (c.en).id, array_agg(c.id), array_agg(c.entity_id)
		  FROM (SELECT b.id, b.entity_id, b.operation, b.base_version, b.payload,
					   @extschema@.sync_entity_of(b.entity_type, b.organization_id) AS en,
					   count(*) OVER (PARTITION BY b.entity_type, b.entity_id) AS n
				  FROM unnest(batch) b) c
		 WHERE c.n = 1 AND c.operation IN ('UPDATE', 'PATCH', 'MERGE') AND c.base_version IS NOT NULL
		   AND jsonb_typeof(c.payload) = 'object' AND (c.en).id IS NOT NULL
		 GROUP BY (c.en).id
	LOOP
		SELECT * INTO e FROM @extschema@.sync_entity s WHERE s.id = eid;
		writable := @extschema@.sync_writable_columns(e);
		BEGIN
			EXECUTE format('SELECT array_agg(k) FROM (SELECT to_jsonb(sync_target.%I) #>> ''{}'' AS k FROM %s sync_target WHERE %s'
						   ' ORDER BY sync_target.%I FOR UPDATE SKIP LOCKED) x',
						   e.key_column, e.table_name, @extschema@.sync_key_match(e, 'sync_target', '$1', true), e.key_column)
				INTO locked USING keys;
		EXCEPTION WHEN OTHERS THEN
			CONTINUE;			-- a key the column's type refuses: one by one, where its error is recorded
		END;
		RETURN QUERY
			SELECT b.id, e.id, s.version
			  FROM unnest(batch) b
			  JOIN @extschema@.sync_row s ON s.entity_id = e.id AND s.row_key = b.entity_id
			 WHERE b.id = ANY (ids) AND b.entity_id = ANY (locked) AND NOT s.deleted
			   AND EXISTS (SELECT 1 FROM jsonb_object_keys(b.payload) k WHERE k = ANY (writable))
			   AND s.version = @extschema@.sync_known_version(b);
	END LOOP;
END
$$;

-- Write, set-based, operations that sync_direct_candidates found writable
-- as sent (ids, their entities, the row versions found): per entity and
-- per set of columns the payloads name, one UPDATE of those columns (as
-- one by one: the same columns written, the same column triggers fired),
-- guarded again by the version, so a row that moved since is left out;
-- then one statement stamping the rows' clocks and completing their queue
-- rows.  Each such group in one subtransaction: if anything fails (a value
-- a column refuses, a trigger's error), none of the group is written and
-- the caller applies its operations one by one, where each failure is
-- recorded against its own operation.  Returns the ids written.
CREATE FUNCTION @extschema@.sync_apply_direct(batch @extschema@.sync_queue[], ids uuid[], entities uuid[], versions bigint[])
RETURNS uuid[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e @extschema@.sync_entity;
	writable text[];
	keyset text[];
	cols text;
	done uuid[] := '{}';
	written_ids uuid[];
	written_keys text[];
	written_hlcs bigint[];
	completed uuid[];
BEGIN
	FOR e IN SELECT s.* FROM @extschema@.sync_entity s WHERE s.id IN (SELECT DISTINCT unnest(entities)) LOOP
		writable := @extschema@.sync_writable_columns(e);
		FOR keyset IN
			SELECT DISTINCT ARRAY(SELECT k FROM jsonb_object_keys(b.payload) k WHERE k = ANY (writable) ORDER BY k)
			  FROM unnest(batch) b JOIN unnest(ids, entities) d(id, entity) ON d.id = b.id AND d.entity = e.id
		LOOP
			CONTINUE WHEN cardinality(keyset) = 0;
			SELECT string_agg(quote_ident(k), ', ' ORDER BY n) INTO cols FROM unnest(keyset) WITH ORDINALITY AS u(k, n);
			BEGIN
				EXECUTE format($f$
					WITH sync_op AS (
						SELECT b.id, b.entity_id, b.payload,
							   greatest(b.client_hlc, @extschema@.sync_row_clock(s.hlc, s.changed_at)) AS clock
						  FROM unnest($1) b
						  JOIN unnest($2, $3, $4) d(id, entity, version) ON d.id = b.id AND d.entity = $5
						  JOIN @extschema@.sync_row s ON s.entity_id = $5 AND s.row_key = b.entity_id
						 WHERE s.version = d.version AND NOT s.deleted
						   AND ARRAY(SELECT k FROM jsonb_object_keys(b.payload) k WHERE k = ANY ($6) ORDER BY k) = $7),
					w AS (
						UPDATE %1$s sync_target SET (%2$s) = (SELECT %2$s FROM jsonb_populate_record(NULL::%1$s, sync_op.payload))
						  FROM sync_op
						 WHERE %3$s
						RETURNING sync_op.id, sync_op.entity_id, sync_op.clock)
					SELECT array_agg(w.id), array_agg(w.entity_id), array_agg(w.clock) FROM w$f$,
					e.table_name, cols, @extschema@.sync_key_match(e, 'sync_target', 'sync_op.entity_id'))
				  INTO written_ids, written_keys, written_hlcs USING batch, ids, entities, versions, e.id, writable, keyset;
				CONTINUE WHEN written_ids IS NULL;
				WITH stamped AS (SELECT * FROM @extschema@.sync_stamp(e.id, written_keys, written_hlcs)),
				c AS (
					UPDATE @extschema@.sync_queue q
					   SET status = 'COMPLETED', result = jsonb_build_object('version', s.version, 'applied', 'DIRECT'),
						   has_conflict = false, completed_at = clock_timestamp(), last_error = NULL
					  FROM unnest(written_ids, written_keys) u(id, key)
					  JOIN stamped s ON s.row_key = u.key
					 WHERE q.id = u.id
					RETURNING q.id)
				SELECT array_agg(c.id) INTO completed FROM c;
				IF cardinality(completed) IS DISTINCT FROM cardinality(written_ids) THEN
					RAISE EXCEPTION 'sync_apply_direct: % rows written, % operations completed', cardinality(written_ids),
						coalesce(cardinality(completed), 0);
				END IF;
				done := done || completed;
			EXCEPTION WHEN OTHERS THEN
				NULL;				-- applied one by one by the caller
			END;
		END LOOP;
	END LOOP;
	RETURN done;
END
$$;

-- The columns of an entity's table an UPDATE of a device's fields may
-- write: not the key, not generated ones, not identity columns GENERATED
-- ALWAYS.
CREATE FUNCTION @extschema@.sync_writable_columns(e @extschema@.sync_entity)
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN ARRAY(SELECT a.attname::text FROM pg_attribute a
				  WHERE a.attrelid = e.table_name AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
					AND a.attidentity <> 'a' AND a.attname <> e.key_column ORDER BY a.attnum);
END
$$;

-- Process a segment of a claimed batch (seg: operation ids in the batch's
-- order): the ones sync_direct_candidates found writable as sent
-- (direct_ids, direct_entities, direct_versions) set-based, then the
-- others one by one, in order.  Returns {processed, completed, conflicts,
-- retried, failed, stop}: stop is 1 when an operation completed whose
-- device has a later operation waiting on that entity (later).
CREATE FUNCTION @extschema@.sync_process_segment(batch @extschema@.sync_queue[], seg uuid[], direct_ids uuid[],
												 direct_entities uuid[], direct_versions bigint[], later uuid[])
RETURNS integer[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids uuid[];
	ents uuid[];
	vers bigint[];
	applied uuid[] := '{}';
	q @extschema@.sync_queue;
	outcome text;
	res integer[] := '{0, 0, 0, 0, 0, 0}';
BEGIN
	SELECT array_agg(d.id), array_agg(d.entity), array_agg(d.version) INTO ids, ents, vers
	  FROM unnest(direct_ids, direct_entities, direct_versions) d(id, entity, version) WHERE d.id = ANY (seg);
	IF ids IS NOT NULL THEN
		applied := @extschema@.sync_apply_direct(batch, ids, ents, vers);
	END IF;
	res[1] := cardinality(applied);
	res[2] := cardinality(applied);
	res[6] := EXISTS (SELECT 1 FROM unnest(applied) a WHERE a = ANY (later))::int;
	FOR q IN SELECT b.* FROM unnest(batch) b WHERE b.id = ANY (seg) AND NOT b.id = ANY (applied)
			  ORDER BY array_position(seg, b.id) LOOP
		outcome := @extschema@.sync_process_one(q);
		res[1] := res[1] + 1;
		res[2] := res[2] + (outcome = 'COMPLETED')::int;
		res[3] := res[3] + (outcome = 'CONFLICT')::int;
		res[4] := res[4] + (outcome = 'RETRIED')::int;
		res[5] := res[5] + (outcome = 'FAILED')::int;
		res[6] := greatest(res[6], (outcome = 'COMPLETED' AND q.id = ANY (later))::int);
	END LOOP;
	RETURN res;
END
$$;

-- process_sync_queue(max_operations int DEFAULT 1000) RETURNS jsonb
-- Apply up to max_operations queued operations (see the top of this file);
-- returns {"processed", "completed", "conflicts", "retried", "failed",
-- "expired", "released"}.  Safe with several processors at once.
--
-- Batches of up to 200 runnable operations are claimed, best first; each
-- priority's best are found through the index on (priority, enqueue_seq)
-- and aged, then merged.  A batch is processed in its order, in segments
-- (sync_process_segment): runs of operations writable as sent
-- (sync_direct_candidates) written set-based (sync_apply_direct), every
-- other operation alone (sync_process_one).  A batch without a DELETE
-- writes all its operations writable as sent first, in one segment: they
-- touch rows no other operation of the batch touches, and the batch
-- commits together (their completed_at is then earlier than that of
-- better-ranked operations applied one by one).  When an
-- operation completes whose device has a later operation on that entity
-- waiting, the rest of the batch is claimed again: that operation may now
-- outrank it.
CREATE FUNCTION @extschema@.process_sync_queue(max_operations integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	batch @extschema@.sync_queue[];
	later uuid[];
	direct_ids uuid[];
	direct_entities uuid[];
	direct_versions bigint[];
	seg uuid[];
	res integer[];
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
		-- a batch of runnable operations, best first, claimed: each
		-- priority's oldest runnable ones, aged, merged.  The same device's
		-- later operations on an entity are not runnable while an earlier
		-- one waits, so a batch holds at most one per device and entity.
		SELECT coalesce(array_agg(x.q ORDER BY x.rank, (x.q).enqueue_seq), '{}'),
			   coalesce(array_agg((x.q).id) FILTER (WHERE x.later), '{}')
		  INTO batch, later
		  FROM (SELECT c.q, array_position(enum_range(NULL::@extschema@.sync_priority), (c.q).priority)
							- floor(extract(epoch FROM now() - (c.q).enqueued_at) / aging) AS rank,
					   EXISTS (SELECT 1 FROM @extschema@.sync_queue l
								WHERE l.device_id = (c.q).device_id AND l.entity_type = (c.q).entity_type
								  AND l.entity_id = (c.q).entity_id AND l.device_seq > (c.q).device_seq
								  AND l.status = 'PENDING') AS later
				  FROM unnest(enum_range(NULL::@extschema@.sync_priority)) pr,
				  LATERAL (SELECT r AS q FROM @extschema@.sync_queue r
							WHERE r.priority = pr AND r.status = 'PENDING' AND r.next_attempt_at <= now()
							  AND NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue p
											   WHERE p.device_id = r.device_id AND p.entity_type = r.entity_type
												 AND p.entity_id = r.entity_id AND p.device_seq < r.device_seq
												 AND p.status IN ('PENDING', 'BLOCKED', 'CONFLICT'))
							ORDER BY r.enqueue_seq
							LIMIT least(200, max_operations - processed)
							FOR UPDATE SKIP LOCKED) c
				 ORDER BY 2, (c.q).enqueue_seq
				 LIMIT least(200, max_operations - processed)) x;
		claimed := cardinality(batch);
		-- nothing runnable: done, unless finished dependencies made more runnable
		EXIT WHEN claimed = 0 AND released_now = 0;
		CONTINUE WHEN claimed = 0;

		SELECT coalesce(array_agg(d.id), '{}'), coalesce(array_agg(d.entity), '{}'), coalesce(array_agg(d.version), '{}')
		  INTO direct_ids, direct_entities, direct_versions
		  FROM @extschema@.sync_direct_candidates(batch) d;
		-- the batch in its order, in segments (sync_process_segment): a run of
		-- operations writable as sent, up to one whose device has a later
		-- operation waiting on the entity, or one other operation alone.  A
		-- batch without a DELETE (whose cascades could reach other rows) puts
		-- all its writes as sent first, in one segment: they commute with the
		-- rest.  After an operation completes that releases a later one, the
		-- rest is claimed again (that operation may now outrank it).
		FOR seg IN
			WITH o AS (
				SELECT b.id, b.ordinality AS n, b.id = ANY (direct_ids) AS direct,
					   coalesce(lag(b.id = ANY (direct_ids) AND NOT b.id = ANY (later)) OVER (ORDER BY b.ordinality), false) AS joins
				  FROM unnest(batch) WITH ORDINALITY AS b),
			s AS (
				SELECT o.id, o.n, CASE WHEN NOT EXISTS (SELECT 1 FROM unnest(batch) d WHERE d.operation = 'DELETE')
									   THEN CASE WHEN o.direct THEN 0 ELSE o.n END
									   ELSE sum((NOT (o.direct AND o.joins))::int) OVER (ORDER BY o.n) END AS segment
				  FROM o)
			SELECT array_agg(s.id ORDER BY s.n) FROM s GROUP BY s.segment ORDER BY s.segment
		LOOP
			res := @extschema@.sync_process_segment(batch, seg, direct_ids, direct_entities, direct_versions, later);
			processed := processed + res[1];
			completed := completed + res[2];
			conflicts := conflicts + res[3];
			retried := retried + res[4];
			failed := failed + res[5];
			EXIT WHEN res[6] = 1;
		END LOOP;
	END LOOP;
	RETURN jsonb_build_object('processed', processed, 'completed', completed, 'conflicts', conflicts, 'retried', retried,
							  'failed', failed, 'expired', expired, 'released', released);
END
$$;

REVOKE ALL ON @extschema@.sync_conflict FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.sync_policy(@extschema@.sync_entity, bigint, bigint, text, boolean),
	@extschema@.sync_entity_of(text, uuid),
	@extschema@.sync_key_match(@extschema@.sync_entity, text, text, boolean),
	@extschema@.sync_apply(@extschema@.sync_entity, text, text, jsonb),
	@extschema@.sync_stamp(uuid, text[], bigint[]),
	@extschema@.sync_row_clock(bigint, timestamptz),
	@extschema@.sync_device_base(@extschema@.sync_queue, uuid),
	@extschema@.sync_known_version(@extschema@.sync_queue),
	@extschema@.sync_apply_operation(@extschema@.sync_queue),
	@extschema@.sync_process_one(@extschema@.sync_queue),
	@extschema@.sync_direct_candidates(@extschema@.sync_queue[]),
	@extschema@.sync_apply_direct(@extschema@.sync_queue[], uuid[], uuid[], bigint[]),
	@extschema@.sync_writable_columns(@extschema@.sync_entity),
	@extschema@.sync_process_segment(@extschema@.sync_queue[], uuid[], uuid[], uuid[], bigint[], uuid[]),
	@extschema@.process_sync_queue(integer)
FROM PUBLIC;
GRANT SELECT ON @extschema@.sync_conflict TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT INSERT, UPDATE ON @extschema@.sync_conflict TO backup_offline_admin, backup_offline_app;
GRANT UPDATE ON @extschema@.sync_queue TO backup_offline_admin, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.sync_policy(@extschema@.sync_entity, bigint, bigint, text, boolean),
	@extschema@.sync_entity_of(text, uuid),
	@extschema@.sync_key_match(@extschema@.sync_entity, text, text, boolean),
	@extschema@.sync_apply(@extschema@.sync_entity, text, text, jsonb),
	@extschema@.sync_stamp(uuid, text[], bigint[]),
	@extschema@.sync_row_clock(bigint, timestamptz),
	@extschema@.sync_device_base(@extschema@.sync_queue, uuid),
	@extschema@.sync_known_version(@extschema@.sync_queue),
	@extschema@.sync_apply_operation(@extschema@.sync_queue),
	@extschema@.sync_process_one(@extschema@.sync_queue),
	@extschema@.sync_direct_candidates(@extschema@.sync_queue[]),
	@extschema@.sync_apply_direct(@extschema@.sync_queue[], uuid[], uuid[], bigint[]),
	@extschema@.sync_writable_columns(@extschema@.sync_entity),
	@extschema@.sync_process_segment(@extschema@.sync_queue[], uuid[], uuid[], uuid[], bigint[], uuid[]),
	@extschema@.process_sync_queue(integer)
TO backup_offline_admin, backup_offline_app;
ALTER TABLE @extschema@.sync_conflict ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.sync_conflict FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_conflict', '');
