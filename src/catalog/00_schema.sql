-- Types and roles.  The schema itself is created by CREATE EXTENSION (the
-- control file names it); every object is qualified with @extschema@.

-- Roles are cluster-wide: create them once, keep them when the extension is
-- dropped or created again in another database.
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['backup_offline_admin', 'backup_offline_operator',
							 'backup_offline_approver', 'backup_offline_auditor',
							 'backup_offline_app']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;

GRANT USAGE ON SCHEMA @extschema@ TO backup_offline_admin, backup_offline_operator,
	backup_offline_approver, backup_offline_auditor, backup_offline_app;
