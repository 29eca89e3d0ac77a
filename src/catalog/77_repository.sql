-- Disaster recovery (src/restore/repository.c): the repository read from
-- storage alone, and the catalog rebuilt from it on a fresh cluster.
--
-- repository_snapshots lists the snapshot manifests of a storage
-- destination, each read and verified without the catalog (the key comes
-- from backup_offline.key_directory); import_repository rebuilds the
-- catalog rows from the verified ones, creating the tables that do not
-- exist from the manifests' definitions.  The destination is validated and
-- confined to backup_offline.allowed_paths as a configuration's
-- storageDestination is (validate_storage, running as the caller).
--
-- repository_importer() is the import flag the catalog's guards check:
-- backup_snapshot_guard (70_backup.sql) accepts a new snapshot that is
-- already COMPLETED only while it is set, and backup_configuration_guard
-- (50_configuration.sql) records the importing role as the creator.  Only
-- import_repository's C code sets it, for its own catalog writes.
-- 60_security.sql has already run, so this file grants and revokes for its
-- own objects.

-- The role whose import_repository is writing the catalog in this session,
-- else NULL.
CREATE FUNCTION @extschema@.repository_importer()
RETURNS name
AS 'MODULE_PATHNAME', 'bo_repository_importer_sql'
LANGUAGE C VOLATILE;

-- Every snapshot manifest under storage the caller may see (its
-- organizations; all for roles that see every organization), read and
-- verified; a manifest that does not verify is a row with its problem.
CREATE FUNCTION @extschema@.repository_snapshots(storage jsonb)
RETURNS TABLE (snapshot_id uuid, snapshot_number text, configuration_id uuid, configuration_name text,
			   organization_id uuid, backup_type text, parent_snapshot_id uuid, base_snapshot_id uuid,
			   snapshot_time timestamptz, table_count integer, row_count bigint, stored_bytes bigint,
			   key_ids text[], manifest_valid boolean, missing_objects integer, problem text,
			   in_catalog boolean, manifest_object text)
AS 'MODULE_PATHNAME', 'bo_repository_snapshots_sql'
LANGUAGE C VOLATILE;

-- Rebuild the catalog from storage in the caller's transaction: missing
-- tables from the manifests' definitions (as the caller; from a manifest
-- that is not encrypted, hence not authenticated, without the defaults,
-- generated columns, checks and index expressions that would run code
-- other than pg_catalog's), then per configuration its entity types (only
-- for tables the caller may read, never system ones), its row (PAUSED, in
-- the manifests' organization) and its snapshots (COMPLETED, oldest
-- first); what the catalog holds is skipped.  Returns the report.
CREATE FUNCTION @extschema@.import_repository(storage jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'bo_import_repository_sql'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION @extschema@.repository_snapshots(jsonb) IS
	'the snapshot manifests in a storage destination, verified without the catalog';
COMMENT ON FUNCTION @extschema@.import_repository(jsonb) IS
	'rebuild the catalog (tables, entity types, configurations PAUSED, snapshots) from a repository';

REVOKE ALL ON FUNCTION
	@extschema@.repository_importer(),
	@extschema@.repository_snapshots(jsonb),
	@extschema@.import_repository(jsonb)
FROM PUBLIC;

-- the guards run as whoever writes configurations and snapshots
GRANT EXECUTE ON FUNCTION @extschema@.repository_importer()
TO backup_offline_admin, backup_offline_operator, backup_offline_approver,
   backup_offline_auditor, backup_offline_app;
-- listing reads what verify_object reads; it shows no secrets
GRANT EXECUTE ON FUNCTION @extschema@.repository_snapshots(jsonb)
TO backup_offline_admin, backup_offline_operator, backup_offline_auditor;
-- importing writes configurations, the registry and snapshots
GRANT EXECUTE ON FUNCTION @extschema@.import_repository(jsonb) TO backup_offline_admin;
