-- Backup configurations: create, read, update, status changes, soft delete,
-- and the audit rows every change writes.
\set VERBOSITY terse
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'iso_8601';
CREATE TABLE visits (id uuid PRIMARY KEY, client_id uuid, caregiver_id uuid, visit_date date, notes text);
CREATE TABLE payroll (id uuid PRIMARY KEY, caregiver_id uuid, gross numeric(12,2));
SELECT backup_offline.register_entity('VISIT', 'visits',
	'{"clientIdColumn": "client_id", "caregiverIdColumn": "caregiver_id", "dateColumn": "visit_date", "containsPHI": true}') IS NOT NULL AS registered;
SELECT backup_offline.register_entity('PAYROLL', 'payroll', '{"caregiverIdColumn": "caregiver_id", "containsFinancial": true}') IS NOT NULL AS registered;
SELECT entity_type, table_name, key_columns, client_id_column, date_column, contains_phi, contains_financial
  FROM backup_offline.entity_registry ORDER BY 1;
-- registry rows must name real columns
SELECT backup_offline.register_entity('SCHEDULE', 'visits', '{"dateColumn": "starts_at"}');

SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';
SELECT backup_offline.create_backup_configuration($$
{"name": "Payroll Archive",
 "scope": {"includeEntities": ["PAYROLL"], "includeFinancialData": true},
 "schedule": {"frequency": "MONTHLY", "dayOfMonth": 31, "startTime": "23:30", "timezone": "America/Chicago"},
 "retention": {"retentionDays": 2555, "autoDeleteExpired": false},
 "storageDestination": {"type": "AWS_S3", "bucket": "care-backups", "region": "us-east-1"},
 "complianceRequirements": [{"regulation": "IRS", "minimumRetentionDays": 2555, "requiresEncryption": true}]}
$$) AS id \gset

-- the stored object carries the defaults that applied
SELECT jsonb_pretty(backup_offline.get_backup_configuration(:'id')
	- ARRAY['id', 'createdAt', 'updatedAt', 'nextBackupAt', 'organizationId']);
SELECT status, version, timezone, next_backup_at > now() AS has_next_run
  FROM backup_offline.backup_configuration WHERE id = :'id';

-- a change of schedule moves the next run
SELECT backup_offline.update_backup_configuration(:'id',
	'{"schedule": {"frequency": "CUSTOM", "cronExpression": "0 3 1 * *", "timezone": "America/Chicago"}, "expectedVersion": 1}');
SELECT version, schedule->>'cronExpression' AS cron,
	   to_char(next_backup_at AT TIME ZONE 'America/Chicago', 'DD HH24:MI') AS local_day_time
  FROM backup_offline.backup_configuration WHERE id = :'id';

-- the status machine
SELECT backup_offline.set_backup_configuration_status(:'id', 'PAUSED', 'quarter close');
SELECT status, status_reason, next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id';
SELECT backup_offline.set_backup_configuration_status(:'id', 'SUSPENDED');
SELECT from_status, array_agg(to_status ORDER BY to_status) FROM backup_offline.config_status_transition GROUP BY 1 ORDER BY 1;
SELECT backup_offline.set_backup_configuration_status(:'id', 'ACTIVE');

-- soft delete keeps the row, archived and frozen
SELECT backup_offline.delete_backup_configuration(:'id', 'replaced');
SELECT status, deleted_at IS NOT NULL AS deleted, next_backup_at FROM backup_offline.backup_configuration WHERE id = :'id';
SELECT backup_offline.update_backup_configuration(:'id', '{"description": "too late"}');

-- every change is in the audit log, in order
RESET backup_offline.organization_id;
SELECT action, details->'changes' ?| ARRAY['status', 'schedule', 'deleted_at'] AS changed_key_fields
  FROM backup_offline.audit_log
 WHERE object_type = 'backup_configuration' AND object_id = :'id'
 ORDER BY id;
SELECT backup_offline.verify_audit_chain()->>'valid' AS chain_valid;

-- compliance rules: retention until the later of the event rule and the age rule
SELECT regulation, minimum_retention, until_subject_age, source_citation FROM backup_offline.compliance_rule ORDER BY 1;
SELECT backup_offline.compliance_retention_until('TEXAS', '2020-03-01', '2012-06-15') AS texas_minor,
	   backup_offline.compliance_retention_until('TEXAS', '2020-03-01', '1950-06-15') AS texas_adult,
	   backup_offline.compliance_retention_until('HIPAA', '2020-03-01') AS hipaa;
SELECT backup_offline.compliance_retention_until('TEXAS', '2020-03-01');
