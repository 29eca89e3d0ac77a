-- Bad configuration input: each case fails with its SQLSTATE and a message
-- naming the JSON path, and leaves the catalog and the audit log unchanged.
BEGIN;
SELECT plan(172);
-- audit entries are chained at commit; chain them at once so this transaction reads them
SET CONSTRAINTS backup_offline.audit_pending_chain IMMEDIATE;

SET LOCAL timezone = 'UTC';
CREATE SCHEMA t_care;
CREATE TABLE t_care.clients (id uuid PRIMARY KEY, branch_id uuid, name text);
CREATE TABLE t_care.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date, notes text);
CREATE TABLE t_care.payroll (id uuid PRIMARY KEY, caregiver_id uuid, gross numeric);
SELECT backup_offline.register_entity('T_CLIENT', 't_care.clients', '{"clientIdColumn": "id", "containsPHI": true}');
SELECT backup_offline.register_entity('T_VISIT', 't_care.visits', '{"clientIdColumn": "client_id", "dateColumn": "visit_date"}');
SELECT backup_offline.register_entity('T_PAYROLL', 't_care.payroll', '{"caregiverIdColumn": "caregiver_id", "containsFinancial": true}');
CREATE TABLE t_care.gone (id uuid PRIMARY KEY);
SELECT backup_offline.register_entity('T_GONE', 't_care.gone');
DROP TABLE t_care.gone;
SELECT set_config('backup_offline.organization_id', 'aaaaaaaa-0000-4000-8000-000000000001', true);
-- an organization's own HIPAA row that tries to be weaker than the shared one
INSERT INTO backup_offline.compliance_rule (organization_id, regulation, name, jurisdiction, minimum_retention, source_citation)
VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'HIPAA', 'lax', 'X', '1 day', 'none');

-- a valid base: each case changes one thing
CREATE TEMP TABLE base AS SELECT jsonb '{
  "name": "Nightly",
  "scope": {"includeEntities": ["T_VISIT", "T_PAYROLL"]},
  "schedule": {"frequency": "DAILY", "startTime": "02:00"},
  "retention": {"retentionDays": 30},
  "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"},
  "encryptionEnabled": false
}' AS j;

SELECT lives_ok($$SELECT backup_offline.create_backup_configuration((SELECT j FROM base))$$, 'the base configuration is valid');
SELECT backup_offline.create_backup_configuration((SELECT j || '{"name": "Disabled one"}' FROM base)) AS disabled_id \gset
SELECT backup_offline.set_backup_configuration_status(:'disabled_id', 'DISABLED');

-- a symbolic link inside the allowed directory that leads out of it
DO $$ BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L',
				   format('ln -sfn /etc %s/escape', current_setting('backup_offline.allowed_paths')));
END $$;

CREATE TEMP TABLE bad (n serial, descr text, sql text, state text, message text);
CREATE FUNCTION pg_temp.create_with(patch jsonb) RETURNS text LANGUAGE sql AS
	$$ SELECT format('SELECT backup_offline.create_backup_configuration(%L::jsonb)', (SELECT j FROM base) || patch) $$;
CREATE FUNCTION pg_temp.create_raw(input text) RETURNS text LANGUAGE sql AS
	$$ SELECT format('SELECT backup_offline.create_backup_configuration(%L::jsonb)', input) $$;

INSERT INTO bad (descr, sql, state, message) VALUES
 ('not an object', pg_temp.create_raw('[1, 2]'), '22023', 'the configuration must be a JSON object'),
 ('unknown top-level key', pg_temp.create_with('{"nmae": "x"}'), '22023', 'unknown key nmae'),
 ('server-assigned id given', pg_temp.create_with('{"id": "aaaaaaaa-0000-4000-8000-000000000009"}'), '22023', 'unknown key id'),
 ('missing name', pg_temp.create_raw('{"schedule": {"frequency": "DAILY"}, "scope": {"includeEntities": ["T_VISIT"]}, "storageDestination": {"type": "AWS_S3", "bucket": "abc"}}'), '22023', 'name is required'),
 ('blank name', pg_temp.create_with('{"name": "  "}'), '22023', 'name must not be empty'),
 ('name too long', pg_temp.create_with(jsonb_build_object('name', repeat('n', 256))), '22023', 'name is too long (256 characters)'),
 ('name not a string', pg_temp.create_with('{"name": 5}'), '22023', 'invalid name: 5 is not a string'),
 ('description too long', pg_temp.create_with(jsonb_build_object('description', repeat('d', 1001))), '22023', 'description is too long (1001 characters)'),
 ('unknown configType', pg_temp.create_with('{"configType": "SNAPSHOT"}'), '22023', 'invalid configType: "SNAPSHOT"'),
 ('organizationId not a uuid', pg_temp.create_with('{"organizationId": "org-123"}'), '22023', 'invalid organizationId: "org-123" is not a uuid'),
 ('missing schedule', pg_temp.create_raw('{"name": "x", "scope": {"includeEntities": ["T_VISIT"]}, "storageDestination": {"type": "AWS_S3", "bucket": "abc"}}'), '22023', 'schedule is required'),
 ('schedule not an object', pg_temp.create_with('{"schedule": "daily"}'), '22023', 'schedule must be a JSON object'),
 ('schedule without frequency', pg_temp.create_with('{"schedule": {"startTime": "02:00"}}'), '22023', 'schedule.frequency is required'),
 ('bad startTime', pg_temp.create_with('{"schedule": {"frequency": "DAILY", "startTime": "25:00"}}'), '22023', 'invalid schedule.startTime: "25:00"'),
 ('startTime without leading zero', pg_temp.create_with('{"schedule": {"frequency": "DAILY", "startTime": "2:00"}}'), '22023', 'invalid schedule.startTime: "2:00"'),
 ('dayOfMonth 32', pg_temp.create_with('{"schedule": {"frequency": "MONTHLY", "dayOfMonth": 32}}'), '22023', 'invalid schedule.dayOfMonth: 32'),
 ('dayOfMonth not an integer', pg_temp.create_with('{"schedule": {"frequency": "MONTHLY", "dayOfMonth": 1.5}}'), '22023', 'invalid schedule.dayOfMonth: 1.5'),
 ('CUSTOM without cron', pg_temp.create_with('{"schedule": {"frequency": "CUSTOM"}}'), '22023', 'schedule.cronExpression is required when schedule.frequency is CUSTOM'),
 ('cron minute 61', pg_temp.create_with('{"schedule": {"frequency": "CUSTOM", "cronExpression": "61 * * * *"}}'), '22023', 'invalid schedule.cronExpression: "61 * * * *"'),
 ('unknown time zone', pg_temp.create_with('{"schedule": {"frequency": "DAILY", "timezone": "Mars/Olympus"}}'), '22023', 'unknown time zone "Mars/Olympus" in schedule.timezone'),
 ('CONTINUOUS type with a daily schedule', pg_temp.create_with('{"configType": "CONTINUOUS"}'), '22023', 'schedule.frequency DAILY does not fit configType CONTINUOUS'),
 ('scope not an object', pg_temp.create_with('{"scope": ["T_VISIT"]}'), '22023', 'scope must be a JSON object'),
 ('unknown scope key', pg_temp.create_with('{"scope": {"entities": ["T_VISIT"]}}'), '22023', 'unknown key scope.entities'),
 ('empty includeEntities', pg_temp.create_with('{"scope": {"includeEntities": []}}'), '22023', 'scope.includeEntities must not be empty'),
 ('unknown entity', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT", "ALIENS"]}}'), '22023', 'unknown entity type "ALIENS" in scope.includeEntities[1]'),
 ('entity listed twice', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT", "T_VISIT"]}}'), '22023', 'invalid scope.includeEntities[1]: "T_VISIT" is listed twice'),
 ('everything excluded', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "excludeEntities": ["T_VISIT"]}}'), '22023', 'scope selects no entity'),
 ('client id not a uuid', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "clientIds": ["abc"]}}'), '22023', 'invalid scope.clientIds[0]: "abc" is not a uuid'),
 ('caregiver filter on entities without the column', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "caregiverIds": ["aaaaaaaa-0000-4000-8000-000000000002"]}}'), '22023', 'scope.caregiverIds filters no selected entity'),
 ('date range reversed', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "dateRange": {"startDate": "2025-02-01", "endDate": "2025-01-01"}}}'), '22023', 'invalid scope.dateRange: startDate 2025-02-01 is after endDate 2025-01-01'),
 ('date not a calendar date', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "dateRange": {"startDate": "2025-02-30"}}}'), '22023', 'invalid scope.dateRange.startDate: "2025-02-30" is not a calendar date'),
 ('includePHI not a boolean', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "includePHI": "no"}}'), '22023', 'invalid scope.includePHI: "no" is not a boolean'),
 ('negative retention', pg_temp.create_with('{"retention": {"retentionDays": -1}}'), '22023', 'invalid retention.retentionDays: -1 is out of range'),
 ('retention as a string', pg_temp.create_with('{"retention": {"retentionDays": "30"}}'), '22023', 'invalid retention.retentionDays: "30" is not an integer'),
 ('fractional GFS tier', pg_temp.create_with('{"retention": {"retentionDays": 30, "keepDaily": 1.5}}'), '22023', 'invalid retention.keepDaily: 1.5 is not an integer'),
 ('negative GFS tier', pg_temp.create_with('{"retention": {"retentionDays": 30, "keepWeekly": -2}}'), '22023', 'invalid retention.keepWeekly: -2 is out of range'),
 ('unknown retention key', pg_temp.create_with('{"retention": {"days": 30}}'), '22023', 'unknown key retention.days'),
 ('missing storage destination', pg_temp.create_raw('{"name": "x", "schedule": {"frequency": "DAILY"}, "scope": {"includeEntities": ["T_VISIT"]}}'), '22023', 'storageDestination is required'),
 ('unknown storage type', pg_temp.create_with('{"storageDestination": {"type": "FTP"}}'), '22023', 'invalid storageDestination.type: "FTP"'),
 ('S3 without bucket', pg_temp.create_with('{"storageDestination": {"type": "AWS_S3", "region": "us-east-1"}}'), '22023', 'storageDestination.bucket is required'),
 ('S3 bad bucket name', pg_temp.create_with('{"storageDestination": {"type": "AWS_S3", "bucket": "My_Bucket"}}'), '22023', 'invalid storageDestination.bucket: "My_Bucket"'),
 ('S3 key of another type', pg_temp.create_with('{"storageDestination": {"type": "AWS_S3", "bucket": "abc", "path": "/x"}}'), '22023', 'unknown key storageDestination.path'),
 ('S3 endpoint not a URL', pg_temp.create_with('{"storageDestination": {"type": "AWS_S3", "bucket": "abc", "endpoint": "localhost:9000"}}'), '22023', 'invalid storageDestination.endpoint: "localhost:9000"'),
 ('local path outside allowed_paths', pg_temp.create_with('{"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "/etc/backups"}}'), '22023', 'invalid storageDestination.path: "/etc/backups" is not under an allowed backup directory'),
 ('local path with ..', pg_temp.create_with(jsonb_build_object('storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', current_setting('backup_offline.allowed_paths') || '/../../etc'))), '22023', format('invalid storageDestination.path: "%s/../../etc" contains a "." or ".." component', current_setting('backup_offline.allowed_paths'))),
 ('local path escaping through a symbolic link', pg_temp.create_with(jsonb_build_object('storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', current_setting('backup_offline.allowed_paths') || '/escape/x'))), '22023', format('invalid storageDestination.path: "%s/escape/x" leads outside the allowed backup directories through a symbolic link', current_setting('backup_offline.allowed_paths'))),
 ('relative local path', pg_temp.create_with('{"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "backups"}}'), '22023', 'invalid storageDestination.path: "backups" is not an absolute path'),
 ('permissions not 4 octal digits', pg_temp.create_with(jsonb_build_object('storageDestination', jsonb_build_object('type', 'NETWORK_SHARE', 'path', current_setting('backup_offline.allowed_paths') || '/share', 'permissions', '640'))), '22023', 'invalid storageDestination.permissions: "640"'),
 ('MULTI without replicas', pg_temp.create_with('{"storageDestination": {"type": "MULTI", "replicas": []}}'), '22023', 'storageDestination.replicas needs at least one replica'),
 ('MULTI inside MULTI', pg_temp.create_with('{"storageDestination": {"type": "MULTI", "replicas": [{"type": "MULTI", "replicas": []}]}}'), '22023', 'invalid storageDestination.replicas[0].type: "MULTI"'),
 ('replica without bucket', pg_temp.create_with('{"storageDestination": {"type": "MULTI", "replicas": [{"type": "GOOGLE_CLOUD_STORAGE"}]}}'), '22023', 'storageDestination.replicas[0].bucket is required'),
 ('Azure account name with capitals', pg_temp.create_with('{"storageDestination": {"type": "AZURE_BLOB", "accountName": "CareArchive", "container": "payroll"}}'), '22023', 'invalid storageDestination.accountName: "CareArchive"'),
 ('SFTP port out of range', pg_temp.create_with('{"storageDestination": {"type": "SFTP", "host": "backup.example.org", "username": "bk", "path": "/srv", "port": 70000}}'), '22023', 'invalid storageDestination.port: 70000 is out of range'),
 ('encryptionEnabled not a boolean', pg_temp.create_with('{"encryptionEnabled": "yes"}'), '22023', 'invalid encryptionEnabled: "yes" is not a boolean'),
 ('unknown checksum algorithm', pg_temp.create_with('{"checksumAlgorithm": "MD5"}'), '22023', 'invalid checksumAlgorithm: "MD5"'),
 ('unknown notification channel', pg_temp.create_with('{"notificationSettings": {"channels": ["PIGEON"]}}'), '22023', 'invalid notificationSettings.channels[0]: "PIGEON"'),
 ('webhook channel without URL', pg_temp.create_with('{"notificationSettings": {"channels": ["WEBHOOK"]}}'), '22023', 'notificationSettings.webhookUrl is required for the WEBHOOK channel'),
 ('bad e-mail recipient', pg_temp.create_with('{"notificationSettings": {"channels": ["EMAIL"], "recipients": ["dba-at-example"]}}'), '22023', 'invalid notificationSettings.recipients[0]: "dba-at-example"'),
 ('complianceRequirements not an array', pg_temp.create_with('{"complianceRequirements": {"regulation": "HIPAA"}}'), '22023', 'invalid complianceRequirements: {"regulation": "HIPAA"} is not an array'),
 ('unknown regulation', pg_temp.create_with('{"complianceRequirements": [{"regulation": "GDPR"}]}'), '22023', 'unknown regulation "GDPR" in complianceRequirements[0].regulation'),
 ('unknown compliance key', pg_temp.create_with('{"complianceRequirements": [{"regulation": "IRS", "years": 4}]}'), '22023', 'unknown key complianceRequirements[0].years'),
 ('PHI scope without encryption', pg_temp.create_with('{"scope": {"includeEntities": ["T_CLIENT"]}}'), '23514', 'encryptionEnabled must be true: the scope includes PHI'),
 ('includePHI without encryption', pg_temp.create_with('{"scope": {"includeEntities": ["T_VISIT"], "includePHI": true}}'), '23514', 'encryptionEnabled must be true: the scope includes PHI'),
 ('HIPAA minimum not met', pg_temp.create_with('{"encryptionEnabled": true, "complianceRequirements": [{"regulation": "HIPAA"}]}'), '23514', 'retention.retentionDays 30 is below the 2192 days HIPAA requires'),
 ('stated minimum above the rule not met', pg_temp.create_with('{"retention": {"retentionDays": 2000}, "complianceRequirements": [{"regulation": "IRS", "minimumRetentionDays": 2555}]}'), '23514', 'retention.retentionDays 2000 is below the 2555 days IRS requires'),
 ('requiresEncryption without encryption', pg_temp.create_with('{"retention": {"retentionDays": 0}, "complianceRequirements": [{"regulation": "IRS", "requiresEncryption": true}]}'), '23514', 'encryptionEnabled must be true: IRS requires encryption'),
 ('HIPAA without integrity checks', pg_temp.create_with('{"encryptionEnabled": true, "integrityCheckEnabled": false, "retention": {"retentionDays": 0}, "complianceRequirements": [{"regulation": "HIPAA"}]}'), '23514', 'integrityCheckEnabled must be true: HIPAA requires integrity checks'),
 ('duplicate name', pg_temp.create_with('{}'), '23505', 'backup configuration "Nightly" already exists'),
 ('a requirement waiving its rule''s safeguard', pg_temp.create_with('{"encryptionEnabled": true, "retention": {"retentionDays": 0}, "complianceRequirements": [{"regulation": "HIPAA", "requiresEncryption": false}]}'), '23514', 'complianceRequirements[0] cannot waive a safeguard HIPAA requires'),
 ('created archived', pg_temp.create_with('{"name": "Born archived", "status": "ARCHIVED"}'), '22023', 'invalid status: a new backup configuration cannot be ARCHIVED'),
 ('an organization rule cannot weaken the shared one', pg_temp.create_with('{"encryptionEnabled": true, "complianceRequirements": [{"regulation": "HIPAA"}]}'), '23514', 'retention.retentionDays 30 is below the 2192 days HIPAA requires'),
 ('a regulation listed twice', pg_temp.create_with('{"retention": {"retentionDays": 0}, "complianceRequirements": [{"regulation": "IRS"}, {"regulation": "IRS"}]}'), '22023', 'invalid complianceRequirements[1].regulation: "IRS" is listed twice'),
 ('a replica listed twice', pg_temp.create_with('{"storageDestination": {"type": "MULTI", "replicas": [{"type": "AWS_S3", "bucket": "abc"}, {"type": "AWS_S3", "bucket": "abc"}]}}'), '22023', 'invalid storageDestination.replicas[1]: the same destination is listed twice'),
 ('bad SMS recipient', pg_temp.create_with('{"notificationSettings": {"channels": ["SMS"], "recipients": ["not a phone"]}}'), '22023', 'invalid notificationSettings.recipients[0]: "not a phone"'),
 ('notifications enabled without a channel', pg_temp.create_with('{"notificationSettings": {"enabled": true}}'), '22023', 'notificationSettings.enabled needs at least one channel'),
 ('a huge number is cut in the message', pg_temp.create_raw('{"name": "x", "schedule": {"frequency": "DAILY"}, "scope": {"includeEntities": ["T_VISIT"]}, "storageDestination": {"type": "AWS_S3", "bucket": "abc"}, "retention": {"retentionDays": ' || repeat('9', 400) || '}}'), '22023', 'invalid retention.retentionDays: ' || repeat('9', 57) || '... is out of range'),
 ('an entity whose table was dropped', pg_temp.create_with('{"scope": {"includeEntities": ["T_GONE"]}}'), '42P01', 'scope selects entity type "T_GONE" whose table no longer exists'),
 ('unregistering an entity type in use', $$DELETE FROM backup_offline.entity_registry WHERE entity_type = 'T_VISIT'$$, '23503', 'entity type "T_VISIT" is in use by backup configuration "Disabled one", "Nightly"'),
 ('update: unknown key', format('SELECT backup_offline.update_backup_configuration(%L, %L)', (SELECT id FROM backup_offline.backup_configuration WHERE name = 'Nightly'), '{"frequency": "DAILY"}'), '22023', 'unknown key frequency'),
 ('update: bad nested value', format('SELECT backup_offline.update_backup_configuration(%L, %L)', (SELECT id FROM backup_offline.backup_configuration WHERE name = 'Nightly'), '{"retention": {"retentionDays": -5}}'), '22023', 'invalid retention.retentionDays: -5 is out of range'),
 ('update: stale version', format('SELECT backup_offline.update_backup_configuration(%L, %L)', (SELECT id FROM backup_offline.backup_configuration WHERE name = 'Nightly'), '{"name": "Renamed", "expectedVersion": 7}'), '40001', 'backup configuration "Nightly" has version 1, not 7'),
 ('update: unknown id', $$SELECT backup_offline.update_backup_configuration('aaaaaaaa-0000-4000-8000-00000000dead', '{"name": "x"}')$$, '42704', 'backup configuration aaaaaaaa-0000-4000-8000-00000000dead does not exist'),
 ('status: unknown value', format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', :'disabled_id', 'RUNNING'), '22023', 'invalid status: "RUNNING"'),
 ('status: transition not allowed', format('SELECT backup_offline.set_backup_configuration_status(%L, %L)', :'disabled_id', 'PAUSED'), '23514', 'invalid status transition of backup configuration "Disabled one" from DISABLED to PAUSED'),
 ('direct UPDATE bypassing the API is validated too', format($q$UPDATE backup_offline.backup_configuration SET retention = '{"retentionDays": -1}' WHERE id = %L$q$, :'disabled_id'), '22023', 'invalid retention.retentionDays: -1 is out of range');

CREATE FUNCTION pg_temp.fingerprint() RETURNS text LANGUAGE sql AS $$
	SELECT md5(coalesce((SELECT string_agg(c::text, '|' ORDER BY c.id) FROM backup_offline.backup_configuration c), '')
			   || coalesce((SELECT max(id)::text FROM backup_offline.audit_log), '0'))
$$;
-- The cases run as the application role of the organization (each statement
-- switches role inside throws_ok's subtransaction, so pgTAP's bookkeeping
-- stays with the superuser); deleting registry rows takes an administrator.
CREATE ROLE t_err_app IN ROLE backup_offline_app;
CREATE ROLE t_err_admin IN ROLE backup_offline_admin;
INSERT INTO backup_offline.organization_member VALUES ('t_err_app', 'aaaaaaaa-0000-4000-8000-000000000001');
UPDATE bad SET sql = 'SET LOCAL ROLE ' || CASE WHEN sql LIKE 'DELETE FROM backup_offline.entity_registry%' THEN 't_err_admin' ELSE 't_err_app' END
				  || '; ' || sql;

SELECT pg_temp.fingerprint() AS before \gset

SELECT is((SELECT count(*) FROM bad), 85::bigint, 'the table of bad inputs has 85 cases');
-- no ORDER BY: rows come out in the order they are evaluated (insertion
-- order of a fresh temporary table), which keeps the TAP numbers in order
SELECT unnest(ARRAY[
	throws_ok(sql, state, message, descr),
	is(pg_temp.fingerprint(), :'before', descr || ': catalog and audit log unchanged')])
  FROM bad;

SELECT * FROM finish();
ROLLBACK;
