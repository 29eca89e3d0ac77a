-- Backup configurations: the API functions, the guard trigger that keeps
-- every write valid, and the audit of every change.
--
-- The API functions run as the caller (SECURITY INVOKER), so row-level
-- security applies to them as to direct SQL.  Direct INSERT/UPDATE on the
-- table goes through the same guard, so validation and status transitions
-- cannot be skipped, and the audit trigger records both.

-- A configuration row as SPEC.md's camelCase object.
CREATE FUNCTION @extschema@.configuration_to_json(c @extschema@.backup_configuration)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
		'id', c.id,
		'organizationId', c.organization_id,
		'name', c.name,
		'description', c.description,
		'configType', c.config_type,
		'schedule', c.schedule,
		'scope', c.scope,
		'retention', c.retention,
		'storageDestination', c.storage_destination,
		'encryptionEnabled', c.encryption_enabled,
		'compressionEnabled', c.compression_enabled,
		'integrityCheckEnabled', c.integrity_check_enabled,
		'checksumAlgorithm', c.checksum_algorithm,
		'notificationSettings', c.notification_settings,
		'complianceRequirements', c.compliance_requirements,
		'status', c.status,
		'statusReason', c.status_reason,
		'nextBackupAt', c.next_backup_at,
		'lastBackupAt', c.last_backup_at,
		'consecutiveFailures', c.consecutive_failures,
		'createdAt', c.created_at,
		'createdBy', c.created_by,
		'updatedAt', c.updated_at,
		'updatedBy', c.updated_by,
		'version', c.version,
		'deletedAt', c.deleted_at,
		'deletedBy', c.deleted_by))
$$;

-- The fields of a configuration that validate_configuration takes.
CREATE FUNCTION @extschema@.configuration_input(c @extschema@.backup_configuration)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT @extschema@.configuration_to_json(c) OPERATOR(pg_catalog.-) ARRAY[
		'id', 'statusReason', 'nextBackupAt', 'lastBackupAt', 'consecutiveFailures', 'createdAt',
		'createdBy', 'updatedAt', 'updatedBy', 'version', 'deletedAt', 'deletedBy']
$$;

-- The row base with the fields of v, a configuration as validate_configuration
-- returns it, put in their columns.
CREATE FUNCTION @extschema@.configuration_apply(v jsonb, base @extschema@.backup_configuration)
RETURNS @extschema@.backup_configuration
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	base.organization_id := (v->>'organizationId')::uuid;
	base.name := v->>'name';
	base.description := v->>'description';
	base.config_type := (v->>'configType')::@extschema@.backup_config_type;
	base.schedule := v->'schedule';
	base.timezone := v->'schedule'->>'timezone';
	base.scope := v->'scope';
	base.retention := v->'retention';
	base.storage_destination := v->'storageDestination';
	base.encryption_enabled := (v->>'encryptionEnabled')::boolean;
	base.compression_enabled := (v->>'compressionEnabled')::boolean;
	base.integrity_check_enabled := (v->>'integrityCheckEnabled')::boolean;
	base.checksum_algorithm := (v->>'checksumAlgorithm')::@extschema@.checksum_algorithm;
	base.notification_settings := v->'notificationSettings';
	base.compliance_requirements := v->'complianceRequirements';
	base.status := (v->>'status')::@extschema@.backup_config_status;
	RETURN base;
END
$$;

-- The next run of a configuration after now, or NULL when it does not run
-- on a schedule (not ACTIVE, deleted, or CONTINUOUS).
CREATE FUNCTION @extschema@.configuration_next_run(c @extschema@.backup_configuration)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
	SELECT CASE WHEN c.status OPERATOR(pg_catalog.=) 'ACTIVE' AND c.deleted_at IS NULL
				THEN @extschema@.next_run_time(c.schedule, c.timezone, pg_catalog.now()) END
$$;

-- BEFORE INSERT OR UPDATE guard: validation, status machine, bookkeeping
-- (version, created/updated at and by, deletion stamp, failure count reset
-- on reactivation, next run).
CREATE FUNCTION @extschema@.backup_configuration_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	content_changed boolean;
	bookkeeping CONSTANT text[] := ARRAY['updated_at', 'updated_by', 'updated_by_role', 'version'];
	-- kept by the scheduler and the job workers, not by users
	job_columns CONSTANT text[] := ARRAY['next_backup_at', 'last_backup_at', 'consecutive_failures'];
BEGIN
	-- the time zone column always follows schedule.timezone
	NEW.timezone := coalesce(NEW.schedule->>'timezone', 'UTC');
	IF TG_OP = 'UPDATE' THEN
		-- an update that changes nothing is skipped: no new version, no audit row
		IF to_jsonb(NEW) - bookkeeping = to_jsonb(OLD) - bookkeeping THEN
			RETURN NULL;
		END IF;
		-- the jobs' bookkeeping alone: no new version (an application's
		-- expectedVersion stays valid across backups), no audit row
		IF to_jsonb(NEW) - bookkeeping - job_columns = to_jsonb(OLD) - bookkeeping - job_columns THEN
			NEW.updated_at := OLD.updated_at;
			NEW.updated_by := OLD.updated_by;
			NEW.updated_by_role := OLD.updated_by_role;
			NEW.version := OLD.version;
			RETURN NEW;
		END IF;
		IF OLD.deleted_at IS NOT NULL THEN
			RAISE EXCEPTION 'backup configuration "%" is deleted', OLD.name
				USING ERRCODE = '55000', HINT = 'Deleted configurations are kept for the record and cannot change.';
		END IF;
		IF NEW.id <> OLD.id OR NEW.organization_id <> OLD.organization_id THEN
			RAISE EXCEPTION 'the id and organization of backup configuration "%" cannot change', OLD.name
				USING ERRCODE = '23514', HINT = 'Create a new configuration instead.';
		END IF;
		-- a soft delete archives and changes nothing else of the content,
		-- whatever else the statement set
		IF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
			NEW := @extschema@.configuration_apply(@extschema@.configuration_input(OLD), NEW);
			NEW.timezone := OLD.timezone;
			NEW.deleted_at := now();
			NEW.deleted_by := @extschema@.current_actor();
			NEW.status := 'ARCHIVED';
		ELSE
			NEW.deleted_by := OLD.deleted_by;
		END IF;
		IF NEW.status <> OLD.status THEN
			PERFORM @extschema@.check_status_transition('@extschema@.config_status_transition'::regclass, format('backup configuration "%s"', OLD.name),
				OLD.status, NEW.status, '23514');
			NEW.status_changed_at := now();
			IF NEW.status = 'ACTIVE' THEN
				NEW.consecutive_failures := 0;
			END IF;
		END IF;
		-- Pausing, disabling or archiving must work even for a configuration
		-- that no longer validates (an entity type unregistered, a rule made
		-- stricter); changing its content or reactivating it validates.
		content_changed := @extschema@.configuration_input(NEW) - 'status' IS DISTINCT FROM @extschema@.configuration_input(OLD) - 'status'
			OR (NEW.status <> OLD.status AND NEW.status = 'ACTIVE');
		NEW.created_at := OLD.created_at;
		NEW.created_by := OLD.created_by;
		NEW.created_by_role := OLD.created_by_role;
		NEW.version := OLD.version + 1;
	ELSE
		content_changed := true;
		NEW.created_at := now();
		NEW.created_by := @extschema@.current_actor();
		-- import_repository writes as the extension owner for the role that called it
		NEW.created_by_role := coalesce(@extschema@.repository_importer(), current_user);
		NEW.version := 1;
		NEW.status_changed_at := now();
		NEW.consecutive_failures := 0;
		NEW.last_backup_at := NULL;
		NEW.deleted_by := NULL;
		IF NEW.deleted_at IS NOT NULL THEN
			RAISE EXCEPTION 'a new backup configuration cannot be deleted'
				USING ERRCODE = '23514', HINT = 'Leave deleted_at empty.';
		END IF;
		IF NEW.status NOT IN ('ACTIVE', 'PAUSED', 'DISABLED') THEN
			RAISE EXCEPTION 'invalid status: a new backup configuration cannot be %', NEW.status
				USING ERRCODE = '22023', HINT = 'Create it ACTIVE, PAUSED or DISABLED.';
		END IF;
	END IF;
	NEW.updated_at := now();
	NEW.updated_by := @extschema@.current_actor();
	NEW.updated_by_role := coalesce(@extschema@.repository_importer(), current_user);

	IF content_changed AND NEW.deleted_at IS NULL THEN
		NEW := @extschema@.configuration_apply(
			@extschema@.validate_configuration(@extschema@.configuration_input(NEW)), NEW);
	END IF;

	IF TG_OP = 'INSERT' OR NEW.schedule IS DISTINCT FROM OLD.schedule OR NEW.timezone IS DISTINCT FROM OLD.timezone
	   OR NEW.status IS DISTINCT FROM OLD.status OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
		NEW.next_backup_at := @extschema@.configuration_next_run(NEW);
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER backup_configuration_guard
	BEFORE INSERT OR UPDATE ON @extschema@.backup_configuration
	FOR EACH ROW EXECUTE FUNCTION @extschema@.backup_configuration_guard();

-- Audit: one row per change, written as the extension owner on behalf of
-- the invoker (see change_audit.c).
CREATE FUNCTION @extschema@.audit_row_change()
RETURNS trigger
AS 'MODULE_PATHNAME', 'bo_audit_row_change'
LANGUAGE C;

-- What a row change means for the audit log: the action and its details.
-- Called only by audit_row_change.
CREATE FUNCTION @extschema@.record_row_change(op text, object_type text, old_row jsonb, new_row jsonb, actor name)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	action text;
	details jsonb;
	row_data jsonb := coalesce(new_row, old_row);
	changes jsonb;
BEGIN
	-- a snapshot's manifest is kept in its row and in storage, and its
	-- checksum is audited: the log does not copy the whole document
	IF object_type = 'backup_snapshot' THEN
		old_row := old_row - 'manifest';
		new_row := new_row - 'manifest';
		row_data := coalesce(new_row, old_row);
	END IF;
	IF op = 'INSERT' THEN
		action := 'create';
		details := jsonb_build_object('new', new_row);
	ELSIF op = 'DELETE' THEN
		action := 'purge';
		details := jsonb_build_object('old', old_row);
	ELSE
		SELECT jsonb_object_agg(n.key, jsonb_build_object('old', old_row->n.key, 'new', n.value))
		  INTO changes
		  FROM jsonb_each(new_row) n
		 WHERE n.value IS DISTINCT FROM old_row->n.key
		   AND n.key NOT IN ('updated_at', 'updated_by', 'updated_by_role', 'version',
							 'next_backup_at', 'last_backup_at', 'consecutive_failures');
		IF changes IS NULL THEN
			RETURN NULL;
		END IF;
		action := CASE WHEN changes ? 'deleted_at' AND old_row->>'deleted_at' IS NULL THEN 'delete'
					   WHEN changes ? 'status' THEN 'status_change'
					   ELSE 'update' END;
		details := jsonb_build_object('changes', changes, 'version', new_row->'version');
	END IF;
	RETURN @extschema@.write_audit(action, object_type, row_data->>'id',
								  (row_data->>'organization_id')::uuid, details, actor);
END
$$;

CREATE TRIGGER backup_configuration_audit
	AFTER INSERT OR UPDATE OR DELETE ON @extschema@.backup_configuration
	FOR EACH ROW EXECUTE FUNCTION @extschema@.audit_row_change('backup_configuration');

-- create_backup_configuration(config jsonb) RETURNS uuid
-- Validates SPEC.md's BackupConfiguration input and stores it.
CREATE FUNCTION @extschema@.create_backup_configuration(config jsonb)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v jsonb := @extschema@.validate_configuration(config);
	r @extschema@.backup_configuration := @extschema@.configuration_apply(v, NULL);
	new_id uuid;
BEGIN
	INSERT INTO @extschema@.backup_configuration
		(organization_id, name, description, config_type, schedule, scope, retention,
		 storage_destination, encryption_enabled, compression_enabled, integrity_check_enabled,
		 checksum_algorithm, notification_settings, compliance_requirements, status)
	VALUES (r.organization_id, r.name, r.description, r.config_type, r.schedule, r.scope,
			r.retention, r.storage_destination, r.encryption_enabled, r.compression_enabled,
			r.integrity_check_enabled, r.checksum_algorithm, r.notification_settings,
			r.compliance_requirements, r.status)
	RETURNING id INTO new_id;
	RETURN new_id;
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'backup configuration "%" already exists', v->>'name'
		USING ERRCODE = '23505', HINT = 'Configuration names are unique within an organization; choose another name.';
END
$$;

-- The configuration row for id, locked; an error when it is not visible.
CREATE FUNCTION @extschema@.lock_configuration(config_id uuid)
RETURNS @extschema@.backup_configuration
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c @extschema@.backup_configuration;
BEGIN
	IF config_id IS NULL THEN
		RAISE EXCEPTION 'id is required' USING ERRCODE = '22023', HINT = 'Pass the configuration''s uuid.';
	END IF;
	SELECT * INTO c FROM @extschema@.backup_configuration WHERE id = config_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'backup configuration % does not exist', config_id
			USING ERRCODE = '42704', HINT = 'Check the id; configurations of other organizations are not visible.';
	END IF;
	IF c.deleted_at IS NOT NULL THEN
		RAISE EXCEPTION 'backup configuration "%" is deleted', c.name
			USING ERRCODE = '55000', HINT = 'Deleted configurations are kept for the record and cannot change.';
	END IF;
	RETURN c;
END
$$;

-- update_backup_configuration(id uuid, changes jsonb) RETURNS void
-- Replaces the top-level fields named in changes (a nested object such as
-- schedule is replaced whole); "expectedVersion" makes the update
-- conditional on the row's version.  The next run is recomputed when the
-- schedule or its time zone changes.
CREATE FUNCTION @extschema@.update_backup_configuration(id uuid, changes jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c @extschema@.backup_configuration := @extschema@.lock_configuration(id);
	expected bigint;
	v jsonb;
BEGIN
	PERFORM @extschema@.check_object(changes, '',
		ARRAY['name', 'description', 'configType', 'schedule', 'scope', 'retention', 'storageDestination',
			  'encryptionEnabled', 'compressionEnabled', 'integrityCheckEnabled', 'checksumAlgorithm',
			  'notificationSettings', 'complianceRequirements', 'expectedVersion']);
	expected := @extschema@.json_int(changes, 'expectedVersion', '', 1, 2147483647, NULL);
	IF expected IS NOT NULL AND expected <> c.version THEN
		RAISE EXCEPTION 'backup configuration "%" has version %, not %', c.name, c.version, expected
			USING ERRCODE = '40001', HINT = 'Someone changed it meanwhile: read it again and reapply the change.';
	END IF;
	v := @extschema@.validate_configuration(@extschema@.configuration_input(c) || (changes - 'expectedVersion'));
	c := @extschema@.configuration_apply(v, c);
	UPDATE @extschema@.backup_configuration b
	   SET (name, description, config_type, schedule, scope, retention, storage_destination,
			encryption_enabled, compression_enabled, integrity_check_enabled, checksum_algorithm,
			notification_settings, compliance_requirements)
		 = (c.name, c.description, c.config_type, c.schedule, c.scope, c.retention,
			c.storage_destination, c.encryption_enabled, c.compression_enabled, c.integrity_check_enabled,
			c.checksum_algorithm, c.notification_settings, c.compliance_requirements)
	 WHERE b.id = c.id;
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'backup configuration "%" already exists', v->>'name'
		USING ERRCODE = '23505', HINT = 'Configuration names are unique within an organization; choose another name.';
END
$$;

-- set_backup_configuration_status(id uuid, status text, reason text DEFAULT NULL) RETURNS void
CREATE FUNCTION @extschema@.set_backup_configuration_status(id uuid, status text, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c @extschema@.backup_configuration := @extschema@.lock_configuration(id);
	new_status text := @extschema@.json_choice(jsonb_build_object('status', status), 'status', '',
		ARRAY['ACTIVE', 'PAUSED', 'SUSPENDED', 'DISABLED', 'ARCHIVED'], NULL);
BEGIN
	IF new_status = c.status::text THEN
		RETURN;
	END IF;
	UPDATE @extschema@.backup_configuration b
	   SET status = new_status::@extschema@.backup_config_status,
		   status_reason = reason
	 WHERE b.id = c.id;
END
$$;

-- delete_backup_configuration(id uuid, reason text DEFAULT NULL) RETURNS void
-- A soft delete: the row stays, archived, for the record and the audit trail.
CREATE FUNCTION @extschema@.delete_backup_configuration(id uuid, reason text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c @extschema@.backup_configuration := @extschema@.lock_configuration(id);
BEGIN
	UPDATE @extschema@.backup_configuration b
	   SET status = 'ARCHIVED',
		   status_reason = coalesce(reason, b.status_reason),
		   deleted_at = now()
	 WHERE b.id = c.id;
END
$$;

-- get_backup_configuration(id uuid) RETURNS jsonb: the SPEC.md object.
CREATE FUNCTION @extschema@.get_backup_configuration(id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT @extschema@.configuration_to_json(b) FROM @extschema@.backup_configuration b WHERE b.id = $1
$$;
