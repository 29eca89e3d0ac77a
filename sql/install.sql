-- The extension installs into its own schema with its roles.
\set VERBOSITY terse
SELECT extname, extversion, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'backup_offline';
SELECT rolname FROM pg_roles WHERE rolname LIKE 'backup\_offline\_%' ORDER BY 1;
-- the prefix is reserved: unknown settings under it are refused
SET backup_offline.no_such_setting = 1;
-- session settings are validated
SET backup_offline.organization_id = 'not-a-uuid';
SET backup_offline.organization_id = '6f1c1e2a-1111-4111-8111-000000000001';
SHOW backup_offline.organization_id;
RESET backup_offline.organization_id;
