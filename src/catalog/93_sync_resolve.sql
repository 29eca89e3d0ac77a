-- Resolving sync conflicts by hand: resolve_conflict().  Every resolution
-- is audited (the row change of sync_conflict, with who and how).

ALTER TABLE @extschema@.sync_conflict
	ADD COLUMN resolution_strategy text,
	ADD COLUMN resolution_data jsonb;

CREATE TRIGGER sync_conflict_audit
	AFTER UPDATE ON @extschema@.sync_conflict
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('sync_conflict');

-- resolve_conflict(conflict_id uuid, strategy text, resolved_by uuid,
--                  resolution jsonb DEFAULT NULL, notes text DEFAULT NULL) RETURNS jsonb
-- Decide an OPEN conflict:
--   CLIENT_WINS        the device's version: the fields it changed from
--                      its base (for a delete: the row deleted; for an
--                      update of a deleted row: the device's row back)
--   SERVER_WINS        the row as it is now (nothing written)
--   FIELD_LEVEL_MERGE  the row as it is now with the fields of resolution
--                      over it (the person's choice per field, e.g. taken
--                      from conflicting_fields)
--   CUSTOM             resolution is the whole document to write
-- in the caller's transaction, as the caller (its privileges on the table
-- apply); the conflict becomes RESOLVED with who, when, how and notes, and
-- its operation COMPLETED, which releases the device's later operations on
-- that entity.  Returns the conflict's resolution and the row's version.
CREATE FUNCTION @extschema@.resolve_conflict(conflict_id uuid, strategy text, resolved_by uuid,
											 resolution jsonb DEFAULT NULL, notes text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c @extschema@.sync_conflict;
	e @extschema@.sync_entity;
	q @extschema@.sync_queue;
	current_doc jsonb;
	final jsonb;
	version bigint;
	device_deleted boolean;
BEGIN
	IF conflict_id IS NULL THEN
		PERFORM @extschema@.raise_invalid('conflict_id is required', 'Pass the id of an OPEN sync_conflict row.', NULL, '22004');
	END IF;
	SELECT * INTO c FROM @extschema@.sync_conflict WHERE id = conflict_id FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM @extschema@.raise_invalid(format('conflict %s does not exist', conflict_id),
			'Check the id; conflicts of other organizations are not visible.', NULL, '42704');
	END IF;
	IF c.status <> 'OPEN' THEN
		PERFORM @extschema@.raise_invalid(format('conflict %s is %s', conflict_id, c.status),
			'Only OPEN conflicts wait for a decision.', NULL, '55000');
	END IF;
	IF strategy IS NULL OR strategy NOT IN ('CLIENT_WINS', 'SERVER_WINS', 'FIELD_LEVEL_MERGE', 'CUSTOM') THEN
		PERFORM @extschema@.raise_invalid(format('invalid strategy: %s', coalesce(quote_literal(strategy), 'NULL')),
			'Use CLIENT_WINS, SERVER_WINS, FIELD_LEVEL_MERGE (with the chosen fields in resolution) or CUSTOM (with the document).');
	END IF;
	IF resolved_by IS NULL THEN
		PERFORM @extschema@.raise_invalid('resolved_by is required', 'Name the user (uuid) who decides.', NULL, '22004');
	END IF;
	IF strategy IN ('FIELD_LEVEL_MERGE', 'CUSTOM') AND jsonb_typeof(resolution) IS DISTINCT FROM 'object' THEN
		PERFORM @extschema@.raise_invalid(format('strategy %s needs resolution, a JSON object of fields', strategy),
			'Give the fields to write, such as {"status": "COMPLETED"}.');
	END IF;
	IF strategy IN ('CLIENT_WINS', 'SERVER_WINS') AND resolution IS NOT NULL THEN
		PERFORM @extschema@.raise_invalid(format('strategy %s takes no resolution', strategy),
			'Leave resolution out, or use FIELD_LEVEL_MERGE or CUSTOM.');
	END IF;
	SELECT * INTO q FROM @extschema@.sync_queue WHERE id = c.queue_id FOR UPDATE;
	e := @extschema@.sync_entity_of(c.entity_type, c.organization_id);
	EXECUTE format('SELECT to_jsonb(sync_target.*) FROM %s sync_target WHERE %s FOR UPDATE',
				   e.table_name, @extschema@.sync_key_match(e, 'sync_target', '$1'))
		INTO current_doc USING c.entity_id;
	device_deleted := q.operation = 'DELETE';

	IF strategy = 'CLIENT_WINS' THEN
		IF device_deleted THEN
			IF current_doc IS NOT NULL THEN
				PERFORM @extschema@.sync_apply(e, 'DELETE', c.entity_id, NULL);
			END IF;
		ELSE
			-- the fields the device changed (a row that is gone comes back whole):
			-- what others wrote since to fields the device left alone stays
			final := CASE WHEN current_doc IS NULL OR c.base_version IS NULL THEN c.client_version->'data'
						  ELSE (SELECT coalesce(jsonb_object_agg(f.key, f.value), '{}') FROM jsonb_each(c.client_version->'data') f
								 WHERE f.value IS DISTINCT FROM c.base_version->'data'->f.key) END;
			PERFORM @extschema@.sync_apply(e, CASE WHEN current_doc IS NULL THEN 'INSERT' ELSE 'UPDATE' END, c.entity_id, final);
		END IF;
	ELSIF strategy IN ('FIELD_LEVEL_MERGE', 'CUSTOM') THEN
		final := CASE WHEN strategy = 'CUSTOM' THEN resolution ELSE coalesce(current_doc, '{}') || resolution END;
		PERFORM @extschema@.sync_apply(e, CASE WHEN current_doc IS NULL THEN 'INSERT' ELSE 'UPDATE' END, c.entity_id, final);
	END IF;
	SELECT r.version INTO version FROM @extschema@.sync_row r WHERE r.entity_id = e.id AND r.row_key = c.entity_id;

	UPDATE @extschema@.sync_conflict
	   SET status = 'RESOLVED', resolved_by = resolve_conflict.resolved_by, resolved_at = now(),
		   notes = resolve_conflict.notes, resolution_strategy = resolve_conflict.strategy,
		   resolution_data = resolve_conflict.resolution
	 WHERE id = c.id;
	UPDATE @extschema@.sync_queue
	   SET status = 'COMPLETED', completed_at = clock_timestamp(),
		   result = coalesce(result, '{}') || jsonb_build_object('version', version, 'resolution', lower(strategy),
																	'resolvedBy', resolve_conflict.resolved_by)
	 WHERE id = c.queue_id AND status = 'CONFLICT';
	RETURN jsonb_strip_nulls(jsonb_build_object('conflictId', c.id, 'status', 'RESOLVED', 'strategy', strategy,
		'version', version, 'operationId', q.operation_id));
END
$$;

REVOKE ALL ON FUNCTION @extschema@.resolve_conflict(uuid, text, uuid, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.resolve_conflict(uuid, text, uuid, jsonb, text)
TO backup_offline_admin, backup_offline_app;
