-- Privileges and row-level security.
--
--   backup_offline_admin     everything: configurations, registry, rules, memberships
--   backup_offline_operator  manages configurations and runs jobs
--   backup_offline_approver  approves restores (later parts); reads configurations
--   backup_offline_auditor   reads everything, including the audit log; changes nothing
--   backup_offline_app       the application: configurations of its organizations
--
-- Rows of one organization are invisible to roles of another (policies
-- below).  Nothing is granted to PUBLIC beyond the pure schedule functions.

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

-- the schedule functions are pure: anyone may compute next runs
GRANT EXECUTE ON FUNCTION
	@extschema@.next_run_times(jsonb, text, timestamptz, integer),
	@extschema@.next_run_time(jsonb, text, timestamptz),
	@extschema@.validate_schedule(jsonb, text),
	@extschema@.in_backup_window(jsonb, text, timestamptz),
	@extschema@.is_valid_timezone(text)
TO PUBLIC;

-- functions every role of the extension calls
GRANT EXECUTE ON FUNCTION
	@extschema@.check_status_transition(regclass, text, anyenum, anyenum, text),
	@extschema@.current_actor(),
	@extschema@.current_organization_ids(),
	@extschema@.sees_all_organizations(),
	@extschema@.resolve_organization(uuid, text),
	@extschema@.get_backup_configuration(uuid),
	@extschema@.configuration_to_json(@extschema@.backup_configuration),
	@extschema@.compliance_retention_until(text, date, date, uuid)
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;

-- what changing a configuration takes (the guard runs as the caller)
GRANT EXECUTE ON FUNCTION
	@extschema@.create_backup_configuration(jsonb),
	@extschema@.update_backup_configuration(uuid, jsonb),
	@extschema@.set_backup_configuration_status(uuid, text, text),
	@extschema@.delete_backup_configuration(uuid, text),
	@extschema@.lock_configuration(uuid),
	@extschema@.validate_configuration(jsonb),
	@extschema@.validate_scope(jsonb, uuid),
	@extschema@.validate_retention(jsonb),
	@extschema@.validate_storage(jsonb, text, boolean),
	@extschema@.validate_notifications(jsonb),
	@extschema@.configuration_input(@extschema@.backup_configuration),
	@extschema@.configuration_apply(jsonb, @extschema@.backup_configuration),
	@extschema@.configuration_next_run(@extschema@.backup_configuration),
	@extschema@.confine_path(text, text),
	@extschema@.raise_invalid(text, text, text, text),
	@extschema@.json_path(text, text),
	@extschema@.check_object(jsonb, text, text[]),
	@extschema@.json_bool(jsonb, text, text, boolean),
	@extschema@.json_int(jsonb, text, text, bigint, bigint, bigint),
	@extschema@.json_text(jsonb, text, text, boolean, integer),
	@extschema@.json_choice(jsonb, text, text, text[], text),
	@extschema@.json_matching(jsonb, text, text, boolean, integer, text, text),
	@extschema@.json_excerpt(jsonb),
	@extschema@.json_text_array(jsonb, text, text, boolean),
	@extschema@.json_uuid_array(jsonb, text, text),
	@extschema@.json_uuid(jsonb, text, text),
	@extschema@.json_date(jsonb, text, text),
	@extschema@.retention_interval_days(interval)
TO backup_offline_admin, backup_offline_operator, backup_offline_app;

GRANT EXECUTE ON FUNCTION @extschema@.register_entity(text, regclass, jsonb) TO backup_offline_admin;
-- Trigger functions are granted to no one: triggers fire without EXECUTE,
-- and a grant would let a role attach them to a table of its own.

-- tables
GRANT SELECT ON @extschema@.backup_configuration, @extschema@.entity_registry,
	@extschema@.compliance_rule, @extschema@.config_status_transition
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;
-- Only the configuration's own fields are writable; the bookkeeping columns
-- (id, versions, created/updated, next and last run, failure count) are set
-- by the guard trigger and the job workers, never by the caller.
-- (timezone follows schedule.timezone; deleted_by is stamped by the guard).
GRANT INSERT (organization_id, name, description, config_type, schedule, scope, retention,
			  storage_destination, encryption_enabled, compression_enabled, integrity_check_enabled,
			  checksum_algorithm, notification_settings, compliance_requirements, status, status_reason),
	  UPDATE (name, description, config_type, schedule, scope, retention, storage_destination,
			  encryption_enabled, compression_enabled, integrity_check_enabled, checksum_algorithm,
			  notification_settings, compliance_requirements, status, status_reason, deleted_at)
ON @extschema@.backup_configuration
TO backup_offline_admin, backup_offline_operator, backup_offline_app;
GRANT INSERT, UPDATE, DELETE ON @extschema@.entity_registry, @extschema@.compliance_rule,
	@extschema@.organization_member
TO backup_offline_admin;
-- every role reads its own memberships (the policy below); administrators
-- and auditors read them all
GRANT SELECT ON @extschema@.organization_member
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;

-- row-level security by organization
ALTER TABLE @extschema@.backup_configuration ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.entity_registry ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.compliance_rule ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.organization_member ENABLE ROW LEVEL SECURITY;

CREATE POLICY own_memberships ON @extschema@.organization_member
	FOR SELECT
	USING (EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
				   WHERE r.rolname OPERATOR(pg_catalog.=) role_name
					 AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER'))
		   OR pg_catalog.pg_has_role(CURRENT_USER, 'backup_offline_admin', 'MEMBER')
		   OR pg_catalog.pg_has_role(CURRENT_USER, 'backup_offline_auditor', 'MEMBER'));
CREATE POLICY admin_writes ON @extschema@.organization_member
	FOR ALL
	USING (pg_catalog.pg_has_role(CURRENT_USER, 'backup_offline_admin', 'MEMBER'))
	WITH CHECK (pg_catalog.pg_has_role(CURRENT_USER, 'backup_offline_admin', 'MEMBER'));

-- The membership check comes first, so that a role naming an organization
-- it does not belong to always gets the error.  Both calls are initplans,
-- evaluated once per query.
CREATE POLICY organization_rows ON @extschema@.backup_configuration
	FOR ALL
	USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()))
	WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
		   OR (SELECT @extschema@.sees_all_organizations()));

-- shared rows (organization_id NULL) are visible to all, writable only by
-- roles that see every organization
DO $policies$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['entity_registry', 'compliance_rule'] LOOP
		EXECUTE pg_catalog.format($p$
			CREATE POLICY organization_rows ON @extschema@.%I
				FOR ALL
				USING (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
					   OR organization_id IS NULL
					   OR (SELECT @extschema@.sees_all_organizations()))
				WITH CHECK (organization_id OPERATOR(pg_catalog.=) ANY ((SELECT @extschema@.current_organization_ids())::uuid[])
					   OR (SELECT @extschema@.sees_all_organizations()))
			$p$, t);
	END LOOP;
END
$policies$;
