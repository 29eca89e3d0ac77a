-- Restores (src/restore/): SPEC.md's RestoreOperation, its status machine,
-- approval, and the functions that create, approve, run and cancel one.
--
-- A restore materialises a snapshot's chain (the engine of
-- materialize_snapshot, src/backup/verify.c) into a new schema, or exports
-- one table of it to a server file.  It runs in a job worker (like a
-- backup), so its status changes are durable; the row is written by the
-- functions below and the job worker only, through a guard trigger, and
-- every change is audited.  60_security.sql has already run, so this file
-- grants and revokes for its own objects.

CREATE TYPE @extschema@.restore_type AS ENUM ('FULL', 'SELECTIVE', 'POINT_IN_TIME', 'FILE_LEVEL');

-- PENDING_APPROVAL  created, waits for an approver (requiresApproval)
-- APPROVED          may run (approved, or created without requiresApproval)
-- IN_PROGRESS       a job worker restores
-- COMPLETED         done: validation results and metrics recorded
-- FAILED            stopped by an error or a crash; nothing of it is left
-- CANCELLED         cancelled before or while running
-- ROLLED_BACK       an in-place restore undone by rollback_restore
CREATE TYPE @extschema@.restore_status AS ENUM
	('PENDING_APPROVAL', 'APPROVED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'ROLLED_BACK');

CREATE SEQUENCE @extschema@.restore_number_seq;

CREATE TABLE @extschema@.restore_operation (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	organization_id uuid NOT NULL,
	restore_number text NOT NULL UNIQUE
		DEFAULT 'RST-' OPERATOR(pg_catalog.||) pg_catalog.lpad(pg_catalog.nextval('@extschema@.restore_number_seq')::text, 8, '0'),
	snapshot_id uuid NOT NULL REFERENCES @extschema@.backup_snapshot (id),
	restore_type @extschema@.restore_type NOT NULL,
	scope jsonb NOT NULL,
	destination jsonb NOT NULL,
	request jsonb NOT NULL,
	status @extschema@.restore_status NOT NULL,
	status_reason text,
	status_changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	requires_approval boolean NOT NULL,
	rollback_enabled boolean NOT NULL,
	requested_by name NOT NULL DEFAULT CURRENT_USER,
	requested_by_user uuid,
	approved_by name,
	approved_by_user uuid,
	approved_at timestamptz,
	approval_notes text,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	started_at timestamptz,
	completed_at timestamptz,
	validation_results jsonb,
	metrics jsonb,
	error jsonb,
	rolled_back_at timestamptz,
	rolled_back_by name,
	rollback_results jsonb
);
COMMENT ON TABLE @extschema@.restore_operation IS
	'Restores (SPEC.md''s RestoreOperation): requested, approved, run by a job worker';
CREATE INDEX restore_operation_snapshot ON @extschema@.restore_operation (snapshot_id);

CREATE TABLE @extschema@.restore_status_transition (
	from_status @extschema@.restore_status NOT NULL,
	to_status @extschema@.restore_status NOT NULL,
	PRIMARY KEY (from_status, to_status)
);
INSERT INTO @extschema@.restore_status_transition VALUES
	('PENDING_APPROVAL', 'APPROVED'), ('PENDING_APPROVAL', 'CANCELLED'),
	('APPROVED', 'IN_PROGRESS'), ('APPROVED', 'CANCELLED'),
	('IN_PROGRESS', 'COMPLETED'), ('IN_PROGRESS', 'FAILED'), ('IN_PROGRESS', 'CANCELLED'),
	('COMPLETED', 'ROLLED_BACK');

-- Identity fixed, status along restore_status_transition, approval only
-- with the move to APPROVED.
CREATE FUNCTION @extschema@.restore_operation_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb;
BEGIN
	IF TG_OP = 'INSERT' THEN
		-- whatever the statement set: everything follows from the validated request
		v := @extschema@.validate_restore(NEW.request);
		NEW.request := v;
		NEW.organization_id := (v->>'organizationId')::uuid;
		NEW.snapshot_id := (v->>'snapshotId')::uuid;
		NEW.restore_type := (v->>'restoreType')::@extschema@.restore_type;
		NEW.scope := v->'scope';
		NEW.destination := coalesce(v->'destination', jsonb_build_object('file', v->'file'));
		NEW.requires_approval := (v->>'requiresApproval')::boolean;
		NEW.rollback_enabled := (v->>'rollbackEnabled')::boolean;
		IF NOT NEW.requires_approval AND NOT pg_has_role(current_user, 'backup_offline_admin', 'MEMBER') THEN
			RAISE EXCEPTION 'only administrators may waive the approval of a restore (requiresApproval)'
				USING ERRCODE = '42501', HINT = 'Leave requiresApproval out: a member of backup_offline_approver approves it.';
		END IF;
		NEW.status := CASE WHEN NEW.requires_approval THEN 'PENDING_APPROVAL' ELSE 'APPROVED' END;
		NEW.status_reason := NULL;
		NEW.requested_by := current_user;
		NEW.requested_by_user := @extschema@.current_actor();
		NEW.approved_by := NULL;
		NEW.approved_by_user := NULL;
		NEW.approved_at := NULL;
		NEW.approval_notes := NULL;
		NEW.created_at := now();
		NEW.started_at := NULL;
		NEW.completed_at := NULL;
		NEW.validation_results := NULL;
		NEW.metrics := NULL;
		NEW.error := NULL;
		NEW.rolled_back_at := NULL;
		NEW.rolled_back_by := NULL;
		NEW.rollback_results := NULL;
		NEW.status_changed_at := now();
		IF NEW.destination->>'type' = 'IN_PLACE' AND NOT NEW.requires_approval THEN
			RAISE EXCEPTION 'an in-place restore always requires approval (requiresApproval)'
				USING ERRCODE = '22023', HINT = 'Leave requiresApproval out: it changes live tables, so another person approves it.';
		END IF;
		RETURN NEW;
	END IF;
	IF NEW.id <> OLD.id OR NEW.organization_id <> OLD.organization_id OR NEW.restore_number <> OLD.restore_number
	   OR NEW.snapshot_id <> OLD.snapshot_id OR NEW.restore_type <> OLD.restore_type
	   OR NEW.scope <> OLD.scope OR NEW.destination <> OLD.destination OR NEW.request <> OLD.request
	   OR NEW.requires_approval <> OLD.requires_approval OR NEW.rollback_enabled <> OLD.rollback_enabled
	   OR NEW.requested_by <> OLD.requested_by OR NEW.requested_by_user IS DISTINCT FROM OLD.requested_by_user
	   OR NEW.created_at <> OLD.created_at THEN
		RAISE EXCEPTION 'the request of restore % cannot change', OLD.restore_number
			USING ERRCODE = '23514', HINT = 'Cancel it and create a new restore.';
	END IF;
	IF (NEW.approved_by IS DISTINCT FROM OLD.approved_by OR NEW.approved_at IS DISTINCT FROM OLD.approved_at
		OR NEW.approval_notes IS DISTINCT FROM OLD.approval_notes)
	   AND NOT (OLD.status = 'PENDING_APPROVAL' AND NEW.status = 'APPROVED') THEN
		RAISE EXCEPTION 'restore % can only be approved on its way from PENDING_APPROVAL to APPROVED', OLD.restore_number
			USING ERRCODE = '23514', HINT = 'Use approve_restore(id).';
	END IF;
	IF NEW.status_reason IS DISTINCT FROM OLD.status_reason AND NEW.status = OLD.status THEN
		RAISE EXCEPTION 'the status reason of restore % changes only with its status', OLD.restore_number
			USING ERRCODE = '23514', HINT = 'It says why the status is what it is.';
	END IF;
	-- running, finishing, failing, rolling back and stopping a running restore
	-- are the job worker's (the extension owner); cancel_restore asks the job
	IF NEW.status <> OLD.status
	   AND (NEW.status IN ('IN_PROGRESS', 'COMPLETED', 'FAILED', 'ROLLED_BACK') OR OLD.status = 'IN_PROGRESS')
	   AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
		RAISE EXCEPTION 'only the restore job sets restore % %', OLD.restore_number, NEW.status
			USING ERRCODE = '42501', HINT = 'Use run_restore(id) or rollback_restore(id).';
	END IF;
	-- approval: by a member of backup_offline_approver who is not the requester
	IF OLD.status = 'PENDING_APPROVAL' AND NEW.status = 'APPROVED' THEN
		IF NOT pg_has_role(current_user, 'backup_offline_approver', 'MEMBER') THEN
			RAISE EXCEPTION 'role "%" may not approve restores', current_user
				USING ERRCODE = '42501', HINT = 'Approvers are members of backup_offline_approver.';
		END IF;
		-- not the requester: neither its role nor its application user (a pooled
		-- login serves many application users: backup_offline.user_id tells them apart)
		IF current_user = OLD.requested_by
		   OR (@extschema@.current_actor() IS NOT NULL AND @extschema@.current_actor() = OLD.requested_by_user) THEN
			RAISE EXCEPTION 'restore % cannot be approved by its own requester', OLD.restore_number
				USING ERRCODE = '42501', HINT = 'Another member of backup_offline_approver approves it.';
		END IF;
		NEW.approved_by := current_user;
		NEW.approved_by_user := @extschema@.current_actor();
		NEW.approved_at := now();
	END IF;
	IF NEW.status <> OLD.status THEN
		PERFORM @extschema@.check_status_transition('@extschema@.restore_status_transition'::regclass, 'restore ' || OLD.restore_number,
			OLD.status, NEW.status, '55000');
		NEW.status_changed_at := now();
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER restore_operation_guard
	BEFORE INSERT OR UPDATE ON @extschema@.restore_operation
	FOR EACH ROW EXECUTE FUNCTION @extschema@.restore_operation_guard();

CREATE TRIGGER restore_operation_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.restore_operation
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('restore_operation');

SELECT pg_catalog.pg_extension_config_dump('@extschema@.restore_operation', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.restore_number_seq', '');

-- The column that records when a row of rel last changed (entity_registry's
-- modified_at_column of one of its entity types: the organization's own
-- row first, then a shared one), or NULL.  NEWEST_WINS / OLDEST_WINS
-- restores compare rows by it.
CREATE FUNCTION @extschema@.restore_modified_column(organization uuid, rel regclass, entity_types jsonb)
RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.modified_at_column
	  FROM @extschema@.entity_registry r
	 WHERE r.table_name OPERATOR(pg_catalog.=) rel AND r.modified_at_column IS NOT NULL
	   AND (r.organization_id OPERATOR(pg_catalog.=) organization OR r.organization_id IS NULL)
	   AND entity_types OPERATOR(pg_catalog.?) r.entity_type
	 ORDER BY r.organization_id NULLS LAST, r.entity_type
	 LIMIT 1
$$;

-- Validate SPEC.md's CreateRestoreOperationInput; returns the normalised
-- request: restoreType, snapshotId (for POINT_IN_TIME: the newest
-- COMPLETED snapshot of configurationId at or before
-- scope.restoreToTimestamp, whose chain is restorable), scope, destination,
-- file, conflictResolutionStrategy, requiresApproval, rollbackEnabled, notes.
CREATE FUNCTION @extschema@.validate_restore(request jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	rtype text;
	snap uuid;
	config uuid;
	scope jsonb;
	dest jsonb;
	file jsonb := NULL;
	strategy text;
	target timestamptz;
	s @extschema@.backup_snapshot;
	entities text[];
	known text[];
	e text;
	dr jsonb;
	date_from date;
	date_to date;
	schema_name text;
	file_path text;
	dest_type text;
	tbl jsonb;
	rel regclass;
BEGIN
	IF request IS NULL OR jsonb_typeof(request) <> 'object' THEN
		PERFORM @extschema@.raise_invalid('the restore request must be a JSON object',
			'Pass SPEC.md''s CreateRestoreOperationInput, e.g. {"snapshotId": "...", "restoreType": "FULL"}.');
	END IF;
	PERFORM @extschema@.check_object(request, '',
		ARRAY['snapshotId', 'configurationId', 'restoreType', 'scope', 'destination', 'file',
			  'conflictResolutionStrategy', 'requiresApproval', 'rollbackEnabled', 'notes']);
	IF NOT request ? 'restoreType' THEN
		PERFORM @extschema@.raise_invalid('restoreType is required',
			'Use FULL, SELECTIVE, POINT_IN_TIME or FILE_LEVEL.');
	END IF;
	rtype := @extschema@.json_choice(request, 'restoreType', '',
		ARRAY['FULL', 'SELECTIVE', 'POINT_IN_TIME', 'FILE_LEVEL'], NULL);

	scope := coalesce(request->'scope', '{}');
	PERFORM @extschema@.check_object(scope, 'scope',
		ARRAY['includeEntities', 'recordIds', 'clientIds', 'caregiverIds', 'dateRange', 'restoreToTimestamp']);
	IF scope ? 'restoreToTimestamp' THEN
		IF jsonb_typeof(scope->'restoreToTimestamp') <> 'string'
		   OR NOT (scope->>'restoreToTimestamp') ~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN
			PERFORM @extschema@.raise_invalid(
				format('invalid scope.restoreToTimestamp: %s', @extschema@.json_excerpt(scope->'restoreToTimestamp')),
				'Give an ISO 8601 timestamp with a time zone, such as "2025-01-15T10:30:00Z".');
		END IF;
		BEGIN
			target := (scope->>'restoreToTimestamp')::timestamptz;
		EXCEPTION WHEN others THEN
			PERFORM @extschema@.raise_invalid(
				format('invalid scope.restoreToTimestamp: %s', @extschema@.json_excerpt(scope->'restoreToTimestamp')),
				'Give an ISO 8601 timestamp with a time zone, such as "2025-01-15T10:30:00Z".');
		END;
	END IF;

	snap := @extschema@.json_uuid(request, 'snapshotId', '');
	config := @extschema@.json_uuid(request, 'configurationId', '');
	IF rtype = 'POINT_IN_TIME' THEN
		IF target IS NULL THEN
			PERFORM @extschema@.raise_invalid('a POINT_IN_TIME restore needs scope.restoreToTimestamp',
				'Give the instant to restore to.');
		END IF;
		IF snap IS NOT NULL THEN
			PERFORM @extschema@.raise_invalid('a POINT_IN_TIME restore chooses its snapshot: leave snapshotId out',
				'Name the configuration (configurationId); the newest snapshot at or before the time is used.');
		END IF;
		IF config IS NULL THEN
			PERFORM @extschema@.raise_invalid('a POINT_IN_TIME restore needs configurationId',
				'Name the backup configuration whose snapshots to restore from.');
		END IF;
		SELECT b.* INTO s FROM @extschema@.backup_snapshot b
		 WHERE b.configuration_id = config AND b.status = 'COMPLETED' AND b.snapshot_time <= target
		   AND NOT EXISTS (SELECT 1 FROM @extschema@.snapshot_chain(b.id) c WHERE c.status <> 'COMPLETED')
		 ORDER BY b.snapshot_time DESC LIMIT 1;
		IF NOT FOUND THEN
			PERFORM @extschema@.raise_invalid(
				format('no restorable snapshot of configuration %s at or before %s', config, target),
				'Choose a later time, or a configuration with COMPLETED snapshots.', NULL, '42704');
		END IF;
	ELSE
		IF snap IS NULL THEN
			PERFORM @extschema@.raise_invalid('snapshotId is required',
				'Give the id of a COMPLETED snapshot (or use restoreType POINT_IN_TIME with a time).');
		END IF;
		IF target IS NOT NULL THEN
			PERFORM @extschema@.raise_invalid('scope.restoreToTimestamp is only for POINT_IN_TIME restores',
				'Leave it out, or use restoreType POINT_IN_TIME.');
		END IF;
		IF config IS NOT NULL THEN
			PERFORM @extschema@.raise_invalid('configurationId is only for POINT_IN_TIME restores',
				'The snapshot names its configuration: leave configurationId out.');
		END IF;
		SELECT b.* INTO s FROM @extschema@.backup_snapshot b WHERE b.id = snap;
		IF NOT FOUND THEN
			PERFORM @extschema@.raise_invalid(format('snapshot %s does not exist', snap),
				'Check the id; snapshots of other organizations are not visible.', NULL, '42704');
		END IF;
		IF s.status <> 'COMPLETED' THEN
			PERFORM @extschema@.raise_invalid(format('snapshot %s is %s', s.snapshot_number, s.status),
				'Only COMPLETED snapshots are restored; verify_snapshot turns a CORRUPTED one back when it verifies.',
				NULL, '55000');
		END IF;
	END IF;

	-- the scope: entity types of the snapshot
	SELECT array_agg(DISTINCT x ORDER BY x) INTO known
	  FROM jsonb_array_elements(s.manifest->'tables') t, jsonb_array_elements_text(t->'entityTypes') x;
	entities := @extschema@.json_text_array(scope, 'includeEntities', 'scope', false);
	FOR e IN SELECT unnest(coalesce(entities, '{}')) LOOP
		IF NOT e = ANY (coalesce(known, '{}')) THEN
			PERFORM @extschema@.raise_invalid(
				format('snapshot %s holds no entity type "%s" (scope.includeEntities)', s.snapshot_number, e),
				format('It holds: %s.', coalesce(array_to_string(known, ', '), 'nothing')));
		END IF;
	END LOOP;
	PERFORM @extschema@.json_uuid_array(scope, 'clientIds', 'scope');
	PERFORM @extschema@.json_uuid_array(scope, 'caregiverIds', 'scope');
	IF scope ? 'recordIds' AND (jsonb_typeof(scope->'recordIds') <> 'array'
		OR jsonb_array_length(scope->'recordIds') = 0
		OR EXISTS (SELECT 1 FROM jsonb_array_elements(scope->'recordIds') x
				   WHERE jsonb_typeof(x) NOT IN ('string', 'number'))) THEN
		PERFORM @extschema@.raise_invalid('invalid scope.recordIds: a non-empty array of strings or numbers is required',
			'List the primary key values (one-column keys) of the records to restore.');
	END IF;
	dr := scope->'dateRange';
	IF dr IS NOT NULL THEN
		PERFORM @extschema@.check_object(dr, 'scope.dateRange', ARRAY['startDate', 'endDate']);
		date_from := @extschema@.json_date(dr, 'startDate', 'scope.dateRange');
		date_to := @extschema@.json_date(dr, 'endDate', 'scope.dateRange');
		IF date_from IS NULL AND date_to IS NULL THEN
			PERFORM @extschema@.raise_invalid('scope.dateRange needs startDate or endDate',
				'Give "startDate", "endDate" or both as ISO dates.');
		END IF;
		IF date_from > date_to THEN
			PERFORM @extschema@.raise_invalid(
				format('invalid scope.dateRange: startDate %s is after endDate %s', date_from, date_to),
				'Swap the dates or widen the range.');
		END IF;
	END IF;
	IF rtype = 'SELECTIVE' AND NOT (scope ?| ARRAY['includeEntities', 'recordIds', 'clientIds', 'caregiverIds', 'dateRange']) THEN
		PERFORM @extschema@.raise_invalid('a SELECTIVE restore needs a selection in scope',
			'Give includeEntities, recordIds, clientIds, caregiverIds or dateRange.');
	END IF;
	IF rtype <> 'SELECTIVE' AND scope ?| ARRAY['recordIds', 'clientIds', 'caregiverIds', 'dateRange'] THEN
		PERFORM @extschema@.raise_invalid(
			format('scope selects records, which a %s restore does not', rtype),
			'Use restoreType SELECTIVE to restore some records.');
	END IF;

	-- where to
	dest := coalesce(request->'destination', '{}');
	PERFORM @extschema@.check_object(dest, 'destination', ARRAY['type', 'schema', 'tablePrefix']);
	dest_type := @extschema@.json_choice(dest, 'type', 'destination', ARRAY['NEW_SCHEMA', 'IN_PLACE'], 'NEW_SCHEMA');
	IF dest_type = 'IN_PLACE' AND dest ?| ARRAY['schema', 'tablePrefix'] THEN
		PERFORM @extschema@.raise_invalid('an IN_PLACE restore writes into the tables of the snapshot: leave destination.schema and destination.tablePrefix out',
			'Use destination.type NEW_SCHEMA to restore into a schema of its own.');
	END IF;
	schema_name := @extschema@.json_matching(dest, 'schema', 'destination', false, 63,
		'^[a-z_][a-z0-9_]*$', 'A new schema''s name: lower-case letters, digits and _, not beginning with a digit.');
	PERFORM @extschema@.json_matching(dest, 'tablePrefix', 'destination', false, 30,
		'^[a-z_][a-z0-9_]*$', 'A prefix of lower-case letters, digits and _.');
	IF schema_name IS NOT NULL AND EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = schema_name) THEN
		PERFORM @extschema@.raise_invalid(format('schema "%s" already exists (destination.schema)', schema_name),
			'A restore creates its schema: name one that does not exist, or leave it out.', NULL, '42P06');
	END IF;

	IF rtype = 'FILE_LEVEL' THEN
		file := request->'file';
		IF file IS NULL THEN
			PERFORM @extschema@.raise_invalid('a FILE_LEVEL restore needs file',
				'Give {"entity": "VISIT", "path": "/allowed/dir/visits.csv", "format": "csv"}.');
		END IF;
		PERFORM @extschema@.check_object(file, 'file', ARRAY['entity', 'path', 'format']);
		e := @extschema@.json_text(file, 'entity', 'file', true, 63);
		IF NOT e = ANY (coalesce(known, '{}')) THEN
			PERFORM @extschema@.raise_invalid(
				format('snapshot %s holds no entity type "%s" (file.entity)', s.snapshot_number, e),
				format('It holds: %s.', coalesce(array_to_string(known, ', '), 'nothing')));
		END IF;
		file_path := @extschema@.confine_path(@extschema@.json_text(file, 'path', 'file', true, 1024), 'file.path');
		file := jsonb_build_object('entity', e, 'path', file_path,
			'format', @extschema@.json_choice(file, 'format', 'file', ARRAY['csv', 'binary'], 'csv'));
		IF request ? 'destination' THEN
			PERFORM @extschema@.raise_invalid('a FILE_LEVEL restore writes a file, not a schema: leave destination out',
				'Name the file in "file".');
		END IF;
	ELSIF request ? 'file' THEN
		PERFORM @extschema@.raise_invalid('file is only for FILE_LEVEL restores',
			'Leave it out, or use restoreType FILE_LEVEL.');
	END IF;

	-- a new schema takes no conflict strategy other than the default
	strategy := @extschema@.json_choice(request, 'conflictResolutionStrategy', '',
		ARRAY['BACKUP_WINS', 'EXISTING_WINS', 'NEWEST_WINS', 'OLDEST_WINS', 'MERGE', 'MANUAL'], 'BACKUP_WINS');
	IF dest_type = 'IN_PLACE' THEN
		IF rtype = 'FILE_LEVEL' THEN
			PERFORM @extschema@.raise_invalid('a FILE_LEVEL restore writes a file, not a table in place: leave destination out',
				'Name the file in "file".');
		END IF;
		IF NOT @extschema@.json_bool(request, 'requiresApproval', '', true) THEN
			PERFORM @extschema@.raise_invalid('an in-place restore always requires approval (requiresApproval)',
				'Leave requiresApproval out: it changes live tables, so another person approves it.');
		END IF;
		-- every table of the scope must exist, and for NEWEST_WINS / OLDEST_WINS name its timestamp column
		FOR tbl IN SELECT x FROM jsonb_array_elements(s.manifest->'tables') x
				  WHERE entities IS NULL OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(x->'entityTypes') et
													 WHERE et = ANY (entities)) LOOP
			rel := to_regclass(format('%I.%I', tbl->>'schema', tbl->>'name'));
			IF rel IS NULL THEN
				PERFORM @extschema@.raise_invalid(
					format('table %I.%I of snapshot %s does not exist: an IN_PLACE restore writes into it',
						   tbl->>'schema', tbl->>'name', s.snapshot_number),
					'Restore into a new schema (destination.type NEW_SCHEMA), or recreate the table first (import_repository creates missing tables).',
					NULL, '42P01');
			END IF;
			IF strategy IN ('NEWEST_WINS', 'OLDEST_WINS')
			   AND @extschema@.restore_modified_column(s.organization_id, rel, tbl->'entityTypes') IS NULL THEN
				PERFORM @extschema@.raise_invalid(
					format('conflictResolutionStrategy %s needs the time each row last changed, and table %s has no modified_at_column in entity_registry',
						   strategy, rel),
					'Set modified_at_column of its entity type (register_entity option modifiedAtColumn), or choose another strategy.');
			END IF;
		END LOOP;
	ELSIF strategy <> 'BACKUP_WINS' THEN
		PERFORM @extschema@.raise_invalid(
			format('conflictResolutionStrategy %s needs a restore in place; a restore into a new schema has no conflicts', strategy),
			'Leave it out (BACKUP_WINS) for a restore into a new schema.');
	END IF;

	RETURN jsonb_strip_nulls(jsonb_build_object(
		'restoreType', rtype,
		'snapshotId', s.id,
		'configurationId', s.configuration_id,
		'organizationId', s.organization_id,
		'scope', scope,
		'destination', CASE WHEN rtype = 'FILE_LEVEL' THEN NULL
							WHEN dest_type = 'IN_PLACE' THEN jsonb_build_object('type', 'IN_PLACE')
						   ELSE jsonb_build_object('type', 'NEW_SCHEMA', 'schema', schema_name,
												   'tablePrefix', coalesce(dest->>'tablePrefix', '')) END,
		'file', file,
		'conflictResolutionStrategy', strategy,
		'requiresApproval', @extschema@.json_bool(request, 'requiresApproval', '', true),
		'rollbackEnabled', @extschema@.json_bool(request, 'rollbackEnabled', '', true),
		'notes', @extschema@.json_text(request, 'notes', '', false, 1000)));
END
$$;

-- create_restore(request jsonb) RETURNS uuid
CREATE FUNCTION @extschema@.create_restore(request jsonb)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_id uuid;
BEGIN
	-- the guard validates the request and fills in the row
	INSERT INTO @extschema@.restore_operation
		(organization_id, snapshot_id, restore_type, scope, destination, request, status,
		 requires_approval, rollback_enabled)
	VALUES ('00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000', 'FULL',
			'{}', '{}', request, 'PENDING_APPROVAL', true, true)
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;

-- The restore row for id, locked; an error when it is not visible.
CREATE FUNCTION @extschema@.lock_restore(restore_id uuid)
RETURNS @extschema@.restore_operation
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r @extschema@.restore_operation;
BEGIN
	IF restore_id IS NULL THEN
		RAISE EXCEPTION 'id is required' USING ERRCODE = '22004', HINT = 'Pass the restore''s uuid.';
	END IF;
	SELECT * INTO r FROM @extschema@.restore_operation WHERE id = restore_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'restore % does not exist', restore_id
			USING ERRCODE = '42704', HINT = 'Check the id; restores of other organizations are not visible.';
	END IF;
	RETURN r;
END
$$;

-- approve_restore(id uuid, notes text) RETURNS void: by a member of
-- backup_offline_approver who is not the requester (neither the same role
-- nor the same application user); the guard checks both.
CREATE FUNCTION @extschema@.approve_restore(id uuid, notes text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r @extschema@.restore_operation := @extschema@.lock_restore(approve_restore.id);
BEGIN
	IF r.status <> 'PENDING_APPROVAL' THEN
		RAISE EXCEPTION 'restore % is %, not waiting for approval', r.restore_number, r.status
			USING ERRCODE = '55000', HINT = 'Only PENDING_APPROVAL restores are approved.';
	END IF;
	UPDATE @extschema@.restore_operation o
	   SET status = 'APPROVED', approval_notes = notes
	 WHERE o.id = r.id;
END
$$;

-- cancel_restore(id uuid) RETURNS boolean: a restore that waits for
-- approval or to run is CANCELLED (true); a running one is asked to stop
-- (true; its job makes it CANCELLED); a finished one: false.
CREATE FUNCTION @extschema@.cancel_restore(id uuid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r @extschema@.restore_operation := @extschema@.lock_restore(cancel_restore.id);
BEGIN
	IF r.status IN ('PENDING_APPROVAL', 'APPROVED') THEN
		UPDATE @extschema@.restore_operation o
		   SET status = 'CANCELLED', status_reason = format('cancelled by %s', current_user)
		 WHERE o.id = r.id;
		RETURN true;
	END IF;
	IF r.status = 'IN_PROGRESS' THEN
		RETURN @extschema@.restore_job_cancel(r.id);
	END IF;
	RETURN false;
END
$$;

-- run_restore(id uuid, wait boolean DEFAULT true) RETURNS jsonb: run an
-- APPROVED restore in a job worker (src/restore/restore.c).
CREATE FUNCTION @extschema@.run_restore(id uuid, wait boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_run_restore_sql'
LANGUAGE C VOLATILE;

-- Ask the job running restore id to stop (cancel_restore uses it).
CREATE FUNCTION @extschema@.restore_job_cancel(id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'bo_restore_job_cancel_sql'
LANGUAGE C STRICT VOLATILE;

-- rollback_restore(id uuid) RETURNS jsonb: undo a COMPLETED in-place
-- restore in a job worker (src/restore/inplace.c).
CREATE FUNCTION @extschema@.rollback_restore(id uuid)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_rollback_restore_sql'
LANGUAGE C VOLATILE;

-- What an in-place restore with rollbackEnabled kept to undo itself: per
-- table, a table in schema backup_offline_rollback holding the old image
-- of every row it updated (action 'U') and every row it inserted ('I'),
-- with a digest of the row as the restore left it; ordinal: the order the
-- restore wrote the tables in (parents before children), which a rollback
-- reverses.  Written by the job; rollback_restore reads it and drops it.
CREATE TABLE @extschema@.restore_rollback (
	restore_id uuid NOT NULL REFERENCES @extschema@.restore_operation (id),
	organization_id uuid NOT NULL,
	table_schema name NOT NULL,
	table_name name NOT NULL,
	rollback_table name NOT NULL,
	ordinal integer NOT NULL,
	key_columns name[] NOT NULL,
	updated_rows bigint NOT NULL,
	inserted_rows bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (restore_id, table_schema, table_name)
);
COMMENT ON TABLE @extschema@.restore_rollback IS
	'What in-place restores kept to undo themselves (rollback_restore)';

-- A MANUAL in-place restore applies nothing: it records here every row
-- whose backup version differs from the table's (ROW_DIFFERS, with the
-- differing fields) and every row only the backup holds (BACKUP_ONLY).
CREATE TABLE @extschema@.restore_conflict (
	id uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
	restore_id uuid NOT NULL REFERENCES @extschema@.restore_operation (id),
	organization_id uuid NOT NULL,
	table_schema name NOT NULL,
	table_name name NOT NULL,
	record_key jsonb NOT NULL,
	conflict_type text NOT NULL CHECK (conflict_type IN ('ROW_DIFFERS', 'BACKUP_ONLY')),
	backup_version jsonb NOT NULL,
	existing_version jsonb,
	conflicting_fields jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.restore_conflict IS
	'Conflicts a MANUAL in-place restore found: backup and existing versions of each row';
CREATE INDEX restore_conflict_restore ON @extschema@.restore_conflict (restore_id, table_schema, table_name);

-- privileges and row-level security
REVOKE ALL ON @extschema@.restore_operation, @extschema@.restore_status_transition,
	@extschema@.restore_rollback, @extschema@.restore_conflict FROM PUBLIC;
REVOKE ALL ON FUNCTION
	@extschema@.restore_operation_guard(),
	@extschema@.validate_restore(jsonb),
	@extschema@.create_restore(jsonb),
	@extschema@.lock_restore(uuid),
	@extschema@.approve_restore(uuid, text),
	@extschema@.cancel_restore(uuid),
	@extschema@.run_restore(uuid, boolean),
	@extschema@.restore_job_cancel(uuid),
	@extschema@.rollback_restore(uuid),
	@extschema@.restore_modified_column(uuid, regclass, jsonb)
FROM PUBLIC;

GRANT USAGE ON SEQUENCE @extschema@.restore_number_seq
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT SELECT ON @extschema@.restore_operation, @extschema@.restore_status_transition,
	@extschema@.restore_rollback
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;
-- whole rows of the backup and the table (PHI): not for approvers and auditors
GRANT SELECT ON @extschema@.restore_conflict
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
-- requesting: the guard validates and fills every column from the request
GRANT INSERT (organization_id, snapshot_id, restore_type, scope, destination, request, status,
			  requires_approval, rollback_enabled)
ON @extschema@.restore_operation TO backup_offline_admin, backup_offline_operator, backup_offline_app;
-- approving and cancelling: the guard allows only those changes
GRANT UPDATE (status, status_reason, approval_notes)
ON @extschema@.restore_operation
TO backup_offline_admin, backup_offline_operator, backup_offline_approver, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.validate_restore(jsonb),
	@extschema@.restore_modified_column(uuid, regclass, jsonb),
	@extschema@.rollback_restore(uuid),
	@extschema@.create_restore(jsonb),
	@extschema@.lock_restore(uuid),
	@extschema@.cancel_restore(uuid),
	@extschema@.run_restore(uuid, boolean),
	@extschema@.restore_job_cancel(uuid)
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT EXECUTE ON FUNCTION
	@extschema@.lock_restore(uuid),
	@extschema@.approve_restore(uuid, text),
	@extschema@.cancel_restore(uuid),
	@extschema@.restore_job_cancel(uuid),
	@extschema@.rollback_restore(uuid)
TO backup_offline_approver;

ALTER TABLE @extschema@.restore_operation ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.restore_operation
	FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));

ALTER TABLE @extschema@.restore_rollback ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.restore_rollback
	FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));
ALTER TABLE @extschema@.restore_conflict ENABLE ROW LEVEL SECURITY;
CREATE POLICY organization_rows ON @extschema@.restore_conflict
	FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));

SELECT pg_catalog.pg_extension_config_dump('@extschema@.restore_rollback', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.restore_conflict', '');
