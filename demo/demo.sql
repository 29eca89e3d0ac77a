-- backup_offline demo: a home-care agency's schema, its entity registry,
-- SPEC.md's example backup configurations with their next runs, and
-- backups: FULL, INCREMENTAL, verification, a snapshot materialised, and a
-- dropped table restored from the latest chain with an approval, wiped
-- fields merged back in place and the merge rolled back.
\set ECHO queries
SET timezone = 'America/Chicago';
CREATE EXTENSION backup_offline;

-- a small care-coordination schema
CREATE SCHEMA care;
CREATE TABLE care.clients (id uuid PRIMARY KEY, organization_id uuid NOT NULL, branch_id uuid,
	name text NOT NULL, birth_date date, address jsonb);
CREATE TABLE care.caregivers (id uuid PRIMARY KEY, organization_id uuid NOT NULL, branch_id uuid,
	name text NOT NULL);
CREATE TABLE care.schedules (id uuid PRIMARY KEY, client_id uuid, caregiver_id uuid,
	starts_at timestamptz, ends_at timestamptz);
CREATE TABLE care.visits (id uuid PRIMARY KEY, client_id uuid, caregiver_id uuid, branch_id uuid,
	visit_date date, tasks jsonb, notes text);
CREATE TABLE care.evv_records (id uuid PRIMARY KEY, visit_id uuid, caregiver_id uuid, client_id uuid,
	clock_in timestamptz, clock_out timestamptz, latitude numeric(9,6), longitude numeric(9,6));
CREATE TABLE care.payroll (id uuid PRIMARY KEY, caregiver_id uuid, period_end date, gross numeric(12,2));
CREATE TABLE care.time_entries (id uuid PRIMARY KEY, caregiver_id uuid, work_date date, hours numeric(5,2));

-- the entity registry maps SPEC.md's entity types to these tables
SELECT backup_offline.register_entity('CLIENT', 'care.clients',
	'{"clientIdColumn": "id", "branchIdColumn": "branch_id", "containsPHI": true, "containsPII": true}');
SELECT backup_offline.register_entity('CAREGIVER', 'care.caregivers',
	'{"caregiverIdColumn": "id", "branchIdColumn": "branch_id", "containsPII": true}');
SELECT backup_offline.register_entity('SCHEDULE', 'care.schedules',
	'{"clientIdColumn": "client_id", "caregiverIdColumn": "caregiver_id", "dateColumn": "starts_at"}');
SELECT backup_offline.register_entity('VISIT', 'care.visits',
	'{"clientIdColumn": "client_id", "caregiverIdColumn": "caregiver_id", "branchIdColumn": "branch_id", "dateColumn": "visit_date", "containsPHI": true}');
SELECT backup_offline.register_entity('EVV_RECORD', 'care.evv_records',
	'{"clientIdColumn": "client_id", "caregiverIdColumn": "caregiver_id", "dateColumn": "clock_in", "containsPHI": true}');
SELECT backup_offline.register_entity('PAYROLL', 'care.payroll',
	'{"caregiverIdColumn": "caregiver_id", "dateColumn": "period_end", "containsFinancial": true, "containsPII": true}');
SELECT backup_offline.register_entity('TIME_ENTRY', 'care.time_entries',
	'{"caregiverIdColumn": "caregiver_id", "dateColumn": "work_date", "containsFinancial": true}');

SELECT regulation, minimum_retention, until_subject_age, source_citation FROM backup_offline.compliance_rule ORDER BY regulation;

-- the application acts for one organization per transaction or session
SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';

-- SPEC.md use case 1: automated daily backups with 30-day retention
SELECT backup_offline.create_backup_configuration($$
{"name": "Daily Production Backup", "configType": "FULL",
 "schedule": {"frequency": "DAILY", "startTime": "02:00", "endTime": "05:00", "timezone": "America/Chicago"},
 "retention": {"retentionDays": 30, "autoDeleteExpired": true},
 "storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "/tmp/backup_offline_demo/backups/daily"},
 "encryptionEnabled": true, "compressionEnabled": true}
$$) AS daily_id \gset

-- SPEC.md: visit schedules backed up daily
SELECT backup_offline.create_backup_configuration($$
{"name": "Visit Schedule Backup", "scope": {"includeEntities": ["VISIT", "SCHEDULE"]},
 "schedule": {"frequency": "DAILY", "timezone": "America/New_York"},
 "storageDestination": {"type": "AWS_S3", "bucket": "care-backups", "region": "us-east-1", "prefix": "visits/"}}
$$);

-- SPEC.md: compliance-aware payroll archive, 7 years, IRS
SELECT backup_offline.create_backup_configuration($$
{"name": "Payroll Archive", "scope": {"includeEntities": ["PAYROLL", "TIME_ENTRY"], "includeFinancialData": true},
 "schedule": {"frequency": "MONTHLY", "dayOfMonth": 31, "startTime": "23:30", "timezone": "America/Chicago"},
 "retention": {"retentionDays": 2555, "autoDeleteExpired": false},
 "storageDestination": {"type": "MULTI", "replicas": [
    {"type": "LOCAL_FILESYSTEM", "path": "/tmp/backup_offline_demo/backups/payroll", "permissions": "0640"},
    {"type": "AZURE_BLOB", "accountName": "carearchive", "container": "payroll"}]},
 "complianceRequirements": [{"regulation": "IRS", "minimumRetentionDays": 2555, "requiresEncryption": true}]}
$$);

-- EVV records every 15 minutes on weekdays' working hours (cron), Texas rules
SELECT backup_offline.create_backup_configuration($$
{"name": "EVV Working Hours", "configType": "INCREMENTAL",
 "scope": {"includeEntities": ["EVV_RECORD"]},
 "schedule": {"frequency": "CUSTOM", "cronExpression": "*/15 6-20 * * MON-FRI", "timezone": "America/Chicago"},
 "retention": {"retentionDays": 2557, "keepDaily": 14, "keepWeekly": 8, "keepMonthly": 24, "keepYearly": 7},
 "storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "/tmp/backup_offline_demo/backups/evv"},
 "complianceRequirements": [{"regulation": "TEXAS"}, {"regulation": "HIPAA"}]}
$$);

\x off
SELECT name, config_type, schedule->>'frequency' AS frequency, timezone, status,
	   next_backup_at AT TIME ZONE timezone AS next_local, next_backup_at
  FROM backup_offline.backup_configuration ORDER BY name;

-- next runs across the fall-back night (America/Chicago, 2026-11-01): the
-- 01:30 daily run happens once; hourly runs keep every real hour
SELECT t AS daily_0130 FROM backup_offline.next_run_times('{"frequency": "DAILY", "startTime": "01:30"}',
	'America/Chicago', '2026-10-30 12:00-05', 3) t;
SELECT t AS hourly_at_15 FROM backup_offline.next_run_times('{"frequency": "HOURLY", "startTime": "00:15"}',
	'America/Chicago', '2026-11-01 00:00-05', 4) t;
-- MONTHLY on day 31 clamps to the month's last day
SELECT (t AT TIME ZONE 'UTC')::date AS monthly_31 FROM backup_offline.next_run_times('{"frequency": "MONTHLY", "dayOfMonth": 31}',
	'UTC', '2028-01-01', 4) t;

-- bad input is refused with the JSON path, and nothing changes
\set ON_ERROR_STOP 0
\set SHOW_CONTEXT never
SELECT backup_offline.create_backup_configuration('{"name": "Bad", "schedule": {"frequency": "DAILY", "startTime": "25:00"}, "storageDestination": {"type": "AWS_S3", "bucket": "b1b"}}');
SELECT backup_offline.create_backup_configuration($$
{"name": "Too Short HIPAA", "schedule": {"frequency": "DAILY"}, "retention": {"retentionDays": 30},
 "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"}, "complianceRequirements": [{"regulation": "HIPAA"}]}
$$);
\set ON_ERROR_STOP 1

-- changes are versioned and audited; the audit log is a hash chain
SELECT backup_offline.set_backup_configuration_status(:'daily_id', 'PAUSED', 'storage maintenance');
SELECT backup_offline.update_backup_configuration(:'daily_id', '{"schedule": {"frequency": "WEEKLY", "daysOfWeek": [0, 3], "startTime": "03:00", "timezone": "America/Chicago"}}');
SELECT backup_offline.set_backup_configuration_status(:'daily_id', 'ACTIVE');
SELECT name, version, status, schedule->>'frequency' AS frequency, next_backup_at
  FROM backup_offline.backup_configuration WHERE id = :'daily_id';
RESET backup_offline.organization_id;

-- Backups.  Some rows first.
SELECT setseed(0.42);
INSERT INTO care.clients SELECT gen_random_uuid(), '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL,
	'Client ' || g, DATE '1930-01-01' + (g * 37) % 25000, jsonb_build_object('city', 'Austin', 'zip', 78700 + g % 50)
  FROM generate_series(1, 500) g;
INSERT INTO care.caregivers SELECT gen_random_uuid(), '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL, 'Caregiver ' || g
  FROM generate_series(1, 40) g;
INSERT INTO care.visits SELECT gen_random_uuid(), c.id, NULL, NULL, DATE '2026-10-01' + g % 50,
	jsonb_build_array(jsonb_build_object('task', 'bathing', 'done', g % 3 = 0), jsonb_build_object('task', 'meals', 'done', true)),
	repeat('Client was in good spirits; vitals normal. ', 1 + g % 20)
  FROM generate_series(1, 4000) g, LATERAL (SELECT id FROM care.clients ORDER BY id OFFSET g % 500 LIMIT 1) c;
INSERT INTO care.evv_records SELECT gen_random_uuid(), v.id, NULL, v.client_id,
	v.visit_date + time '08:00', v.visit_date + time '10:30', 30.267153 + random() / 100, -97.743057 + random() / 100
  FROM care.visits v;

-- a key-encryption key: 32 random bytes in a file of the key directory
-- (backup_offline.key_directory, readable by the server only), named by
-- backup_offline.default_key_id
DO $$ BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L',
		'umask 077; head -c 32 /dev/urandom > ' || current_setting('backup_offline.key_directory') || '/demo.key');
END $$;
ALTER SYSTEM SET backup_offline.default_key_id = 'demo';
SELECT pg_reload_conf(), pg_sleep(0.2);

-- a FULL backup of the daily configuration's scope, in a job worker: one
-- MVCC snapshot for all tables, each table one compressed, encrypted
-- object in COPY format, and a manifest written last
SELECT backup_offline.run_backup(:'daily_id', 'FULL') AS full_id \gset
SELECT snapshot_number, backup_type, status, data_metrics->>'tableCount' AS tables,
	   data_metrics->>'rowCount' AS rows, data_metrics->>'plaintextBytes' AS plaintext_bytes,
	   data_metrics->>'storedBytes' AS stored_bytes
  FROM backup_offline.backup_snapshot WHERE id = :'full_id';

-- some work of the day, then an INCREMENTAL: only the changed rows, and
-- the keys of deleted ones
UPDATE care.visits SET notes = notes || ' Follow-up call scheduled.' WHERE visit_date = DATE '2026-10-07';
DELETE FROM care.evv_records WHERE clock_in::date = DATE '2026-10-08';
INSERT INTO care.clients SELECT gen_random_uuid(), '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL, 'New client ' || g, DATE '1950-05-05', '{}'
  FROM generate_series(1, 5) g;
SELECT backup_offline.run_backup(:'daily_id', 'INCREMENTAL') AS incr_id \gset
SELECT s.snapshot_number, s.backup_type, t->>'name' AS table_name, t->>'change' AS change,
	   t->>'upsertedRows' AS upserted, t->>'deletedRows' AS deleted, t->>'rowCount' AS rows,
	   t->>'pagesRead' AS pages_read, t->>'pagesSkipped' AS pages_skipped
  FROM backup_offline.backup_snapshot s, jsonb_array_elements(s.manifest->'tables') t
 WHERE s.id = :'incr_id' ORDER BY 3;
SELECT snapshot_number, (data_metrics->>'storedBytes')::bigint AS stored_bytes
  FROM backup_offline.backup_snapshot ORDER BY created_at;

-- verification: stored bytes, then decryption, then a restore of the
-- chain (FULL + INCREMENTAL) into a scratch schema compared table by table
SELECT backup_offline.verify_snapshot(:'incr_id', 'checksums')->>'valid' AS checksums_valid;
SELECT backup_offline.verify_snapshot(:'incr_id', 'decrypt')->>'valid' AS decrypt_valid;
SELECT t->>'name' AS table_name, t->>'restoredRows' AS restored_rows, t->>'equal' AS equal
  FROM jsonb_array_elements(backup_offline.verify_snapshot(:'incr_id', 'restore')->'tables') t ORDER BY 1;

-- the FULL as it was, materialised next to the live tables: the visits
-- changed since
SELECT backup_offline.materialize_snapshot(:'full_id', 'as_of_full')->'tables' IS NOT NULL AS materialised;
SELECT count(*) AS visits_changed_since_full
  FROM care.visits v JOIN as_of_full.visits o USING (id) WHERE v.notes IS DISTINCT FROM o.notes;

-- Restores.  Someone drops the EVV table by mistake.
DROP TABLE care.evv_records;
-- An operator asks for it back from the latest chain (FULL + INCREMENTAL),
-- into a side schema...
SELECT backup_offline.create_restore(jsonb_build_object('snapshotId', :'incr_id', 'restoreType', 'FULL',
	'scope', '{"includeEntities": ["EVV_RECORD"]}'::jsonb, 'destination', '{"schema": "evv_recovered"}'::jsonb,
	'notes', 'EVV table dropped by mistake')) AS restore_id \gset
SELECT restore_number, restore_type, status FROM backup_offline.restore_operation WHERE id = :'restore_id';
-- ... and a second person approves it (never the requester)
CREATE ROLE demo_approver IN ROLE backup_offline_approver;
INSERT INTO backup_offline.organization_member VALUES ('demo_approver', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50');
SET ROLE demo_approver;
SELECT backup_offline.approve_restore(:'restore_id', 'confirmed with the office');
RESET ROLE;
SELECT r->>'status' AS status, t->>'restoredAs' AS restored_as, t->>'rows' AS rows, t->>'equalToBackup' AS equal_to_backup
  FROM backup_offline.run_restore(:'restore_id') r, jsonb_array_elements(r->'validationResults') t;
-- the recovered table next to the FULL's copy: the records deleted on
-- 2026-10-08 stay deleted, as they were at the latest backup
SELECT (SELECT count(*) FROM as_of_full.evv_records) AS at_full,
	   (SELECT count(*) FROM evv_recovered.evv_records) AS recovered,
	   (SELECT count(*) FROM as_of_full.evv_records f
		 WHERE NOT EXISTS (SELECT 1 FROM evv_recovered.evv_records r WHERE r.id = f.id)) AS deleted_since_full;
-- put it back where it was
ALTER TABLE evv_recovered.evv_records SET SCHEMA care;

-- A bad UPDATE empties the notes of the visits of 2026-10-09; the office
-- has since rescheduled one of them.  An in-place MERGE restore of that day
-- fills the fields the live rows lack from the latest chain and keeps every
-- other live value (in place always needs an approver).
UPDATE care.visits SET notes = NULL WHERE visit_date = DATE '2026-10-09';
UPDATE care.visits SET tasks = tasks || '{"rescheduled": true}'
 WHERE id = (SELECT min(id::text)::uuid FROM care.visits WHERE visit_date = DATE '2026-10-09');
SELECT count(*) FILTER (WHERE notes IS NULL) AS visits_without_notes,
	   count(*) FILTER (WHERE tasks @> '[{"rescheduled": true}]') AS rescheduled
  FROM care.visits WHERE visit_date = DATE '2026-10-09';
SELECT backup_offline.create_restore(jsonb_build_object('snapshotId', :'incr_id', 'restoreType', 'SELECTIVE',
	'scope', '{"includeEntities": ["VISIT"], "dateRange": {"startDate": "2026-10-09", "endDate": "2026-10-09"}}'::jsonb,
	'destination', '{"type": "IN_PLACE"}'::jsonb, 'conflictResolutionStrategy', 'MERGE',
	'notes', 'notes of Oct 9 wiped by a bad UPDATE')) AS merge_id \gset
SET ROLE demo_approver;
SELECT backup_offline.approve_restore(:'merge_id', 'checked');
RESET ROLE;
SELECT r->>'status' AS status, t->>'backupRows' AS backup_rows, t->>'differingRows' AS differing,
	   t->>'updatedRows' AS updated, t->>'keptExistingRows' AS kept
  FROM backup_offline.run_restore(:'merge_id') r, jsonb_array_elements(r->'validationResults') t;
SELECT count(*) FILTER (WHERE notes IS NULL) AS visits_without_notes,
	   count(*) FILTER (WHERE tasks @> '[{"rescheduled": true}]') AS rescheduled
  FROM care.visits WHERE visit_date = DATE '2026-10-09';
-- every in-place restore can be undone while nobody has changed its rows since
SELECT r->>'status' AS status, r->'rollbackResults'->>'restoredRows' AS rows_put_back
  FROM backup_offline.rollback_restore(:'merge_id') r;
SELECT count(*) FILTER (WHERE notes IS NULL) AS visits_without_notes_after_rollback
  FROM care.visits WHERE visit_date = DATE '2026-10-09';

-- an application role of another organization sees none of these rows and
-- cannot read the audit log
CREATE ROLE demo_app_other IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member (role_name, organization_id)
VALUES ('demo_app_other', '7d1e0c55-2b6b-4f0e-9d7e-5b8d1f2c3a41');
SET ROLE demo_app_other;
SELECT count(*) AS configurations_visible_to_other_org FROM backup_offline.backup_configuration;
\set ON_ERROR_STOP 0
SELECT count(*) FROM backup_offline.audit_log;
\set ON_ERROR_STOP 1
RESET ROLE;

SELECT id, action, object_type, actor_role, left(encode(row_hash, 'hex'), 16) AS row_hash
  FROM backup_offline.audit_log ORDER BY id DESC LIMIT 5;
SELECT backup_offline.verify_audit_chain();
