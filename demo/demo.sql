-- backup_offline demo: a home-care agency's schema, its entity registry,
-- SPEC.md's example backup configurations with their next runs, and
-- backups: FULL, INCREMENTAL, verification, a snapshot materialised, and a
-- dropped table restored from the latest chain with an approval, wiped
-- fields merged back in place and the merge rolled back; then offline sync:
-- two phones edit one visit offline (plus an EVV clock-in) while the office
-- edits it too, reconnect, and pull the merged visit with its conflicts.
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

-- Offline sync.  Two caregivers' phones pull a visit and go offline; one
-- adds to its notes, the other records the EVV clock-in and later marks
-- the visit completed (and adds to the notes too); meanwhile the office,
-- with no clock-in received, marks the visit missed.  The phones
-- reconnect and upload their queues (one upload twice, its first answer
-- lost), the queue is applied (the EVV clock-in first), the visit's fields
-- merge under its policies with every conflict recorded, and the phones
-- pull the merged visit.
\echo
\echo '======== Offline sync: two phones edit one visit offline, the office edits it meanwhile'
SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';
-- the app gains a visit status, set from the caregivers' phones
ALTER TABLE care.visits ADD COLUMN status text NOT NULL DEFAULT 'SCHEDULED';

\echo
\echo '-- the tables the phones sync: a visit''s notes are appended to, its status goes to the latest'
\echo '-- edit (lww, by hybrid logical clock); EVV records are critical (never evicted from a phone)'
\echo '-- and a conflicting edit of one waits for a person (MANUAL)'
SELECT backup_offline.register_sync_entity('VISIT', 'care.visits', $$
{"organizationId": "0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50", "clientIdColumn": "client_id",
 "caregiverIdColumn": "caregiver_id", "dateColumn": "visit_date",
 "fieldPolicies": {"notes": "append", "status": "lww"}}
$$) IS NOT NULL AS visit_registered;
SELECT backup_offline.register_sync_entity('EVV_RECORD', 'care.evv_records', $$
{"organizationId": "0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50", "clientIdColumn": "client_id",
 "caregiverIdColumn": "caregiver_id", "critical": true, "defaultStrategy": "MANUAL"}
$$) IS NOT NULL AS evv_registered;
SELECT entity_type, table_name, strategy, field_policies, critical
  FROM backup_offline.sync_entity ORDER BY entity_type;

\echo
\echo '-- the office schedules a two-person visit (a lift transfer) for a new client'
INSERT INTO care.clients VALUES ('5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a01', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL,
	'Rosa Diaz', DATE '1938-04-12', '{"city": "Austin", "zip": 78704}');
INSERT INTO care.caregivers VALUES
	('5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a02', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL, 'Ana Ruiz'),
	('5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a03', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', NULL, 'Ben Okafor');
INSERT INTO care.visits (id, client_id, caregiver_id, visit_date, tasks, notes) VALUES
	('5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a01', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a02',
	 DATE '2026-11-26', '[{"task": "transfer", "done": false}, {"task": "meals", "done": false}]', 'Two-person lift transfer.');

-- the two phones, as this session plays them: each one's pull cursor, the
-- rows of its last pull, and its queue of operations made offline; a
-- phone's clock is a hybrid logical clock (milliseconds << 16 | counter).
-- Their data is fixed (ids, notes, the clock-in time) so that the test
-- (test/scenario/demo.sh) can check the outcome exactly; the clocks are
-- real, and phone-ben's status edit is made after the office's and
-- phone-ana's edits, so its clock is later (or the same millisecond, when
-- lww's tie-break, the longer node name, picks phone-ben too).
\echo
\echo '-- this session plays the two phones: each one''s pull cursor, last pull and offline queue'
CREATE TEMP TABLE phone (device text PRIMARY KEY, user_id uuid NOT NULL, cursor bigint NOT NULL DEFAULT 0,
	pulled jsonb, queue jsonb NOT NULL DEFAULT '[]');
INSERT INTO phone (device, user_id) VALUES
	('phone-ana', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a02'), ('phone-ben', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a03');
CREATE FUNCTION pg_temp.phone_clock() RETURNS bigint LANGUAGE sql
AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16 $$;
-- each phone pulls Rosa Diaz's rows from its cursor; phone_rows shows what each holds from its last pull
CREATE FUNCTION pg_temp.pull_phones() RETURNS integer LANGUAGE sql AS $$
	UPDATE phone SET pulled = p.r->'changes', cursor = (p.r->>'nextCursor')::bigint
	  FROM (SELECT device, backup_offline.pull_changes(device, cursor, 100, '{"clientIds": ["5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a01"]}') r
			  FROM phone) p
	 WHERE p.device = phone.device
	RETURNING 1
$$;
CREATE TEMP VIEW phone_rows AS
SELECT device, cursor, c->>'entityType' AS entity, c->>'version' AS version, c->'data'->>'status' AS status,
	   coalesce(c->'data'->>'notes', 'clock-in ' || (c->'data'->>'clock_in')) AS notes
  FROM phone, jsonb_array_elements(pulled) c ORDER BY device, entity;

\echo
\echo '-- both phones pull Rosa Diaz''s rows, then lose the signal'
SELECT pg_temp.pull_phones() \gset
SELECT * FROM phone_rows;

\echo
\echo '-- offline: phone-ben records the EVV clock-in (a CREATE, priority CRITICAL)'
UPDATE phone SET queue = queue || jsonb_build_object('deviceId', device, 'operationId', 'ben-1', 'deviceSeq', 1,
	'clientHlc', pg_temp.phone_clock(), 'userId', user_id, 'priority', 'CRITICAL',
	'operation', 'CREATE', 'entityType', 'EVV_RECORD', 'entityId', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a05',
	'payload', jsonb_build_object('visit_id', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04', 'caregiver_id', user_id,
		'client_id', '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a01', 'clock_in', '2026-11-26 08:02:00-06',
		'latitude', 30.246912, 'longitude', -97.769203))
 WHERE device = 'phone-ben';
\echo '-- offline: phone-ana adds to the visit''s notes (a PATCH of the version it pulled)'
UPDATE phone SET queue = queue || jsonb_build_object('deviceId', device, 'operationId', 'ana-1', 'deviceSeq', 1,
	'clientHlc', pg_temp.phone_clock(), 'userId', user_id,
	'operation', 'PATCH', 'entityType', 'VISIT', 'entityId', pulled->0->>'id', 'baseVersion', (pulled->0->>'version')::int,
	'payload', jsonb_build_object('notes', (pulled->0->'data'->>'notes') || ' Ana: skin intact, repositioned.'))
 WHERE device = 'phone-ana';
\echo '-- meanwhile the office, with no clock-in received, marks the visit missed'
UPDATE care.visits SET status = 'MISSED', notes = notes || ' Office: no clock-in by 10:00, family called.'
 WHERE id = '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04';
\echo '-- later, offline: phone-ben marks the visit completed and adds to its notes'
UPDATE phone SET queue = queue || jsonb_build_object('deviceId', device, 'operationId', 'ben-2', 'deviceSeq', 2,
	'clientHlc', pg_temp.phone_clock(), 'userId', user_id,
	'operation', 'PATCH', 'entityType', 'VISIT', 'entityId', pulled->0->>'id', 'baseVersion', (pulled->0->>'version')::int,
	'payload', jsonb_build_object('status', 'COMPLETED',
		'notes', (pulled->0->'data'->>'notes') || ' Ben: ate breakfast, vitals normal.'))
 WHERE device = 'phone-ben';
SELECT device, o->>'operationId' AS operation_id, o->>'operation' AS operation, o->>'entityType' AS entity,
	   coalesce(o->>'priority', 'NORMAL') AS priority, o->>'baseVersion' AS base_version, o->'payload'->>'status' AS status
  FROM phone, jsonb_array_elements(queue) o ORDER BY device, o->>'deviceSeq';

\echo
\echo '-- the phones reconnect and upload their queues; phone-ben''s answer is lost on the way,'
\echo '-- so it uploads the same queue again: nothing is queued twice'
SELECT r->>'operationId' AS operation_id, r->>'status' AS status, r->>'duplicate' AS duplicate
  FROM phone, jsonb_array_elements(backup_offline.queue_operations(queue)) r WHERE device = 'phone-ana';
SELECT r->>'operationId' AS operation_id, r->>'status' AS status, r->>'duplicate' AS duplicate
  FROM phone, jsonb_array_elements(backup_offline.queue_operations(queue)) r WHERE device = 'phone-ben';
SELECT r->>'operationId' AS operation_id, r->>'status' AS status, r->>'duplicate' AS duplicate
  FROM phone, jsonb_array_elements(backup_offline.queue_operations(queue)) r WHERE device = 'phone-ben';

\echo
\echo '-- the queue is applied: the EVV clock-in first (CRITICAL), then the visit''s edits in upload order'
\echo '-- ("conflicts" counts operations left for a person; merges made are recorded in sync_conflict)'
SELECT backup_offline.process_sync_queue();
SELECT row_number() OVER (ORDER BY completed_at) AS applied, device_id, operation_id, operation, entity_type, priority,
	   status, result->>'version' AS version, result->>'conflictType' AS conflict
  FROM backup_offline.sync_queue WHERE device_id IN ('phone-ana', 'phone-ben') ORDER BY completed_at;
SELECT count(*) AS clock_ins FROM care.evv_records WHERE visit_id = '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04';

\echo
\echo '-- the merged visit: every note kept, in the order they reached the server; the latest status'
SELECT v.status, v.notes, r.version
  FROM care.visits v JOIN backup_offline.sync_row r ON r.row_key = v.id::text AND r.entity_id =
	   (SELECT id FROM backup_offline.sync_entity WHERE entity_type = 'VISIT')
 WHERE v.id = '5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a04';
\echo '-- its conflict records, one per phone: both notes appended; the status, changed by the office'
\echo '-- and by phone-ben, went to phone-ben''s later edit'
SELECT device_id, conflict_type, status, resolution, base_version->>'version' AS base_version,
	   server_version->>'version' AS server_version, jsonb_path_query_array(conflicting_fields, '$[*].path') AS fields
  FROM backup_offline.sync_conflict ORDER BY device_id;
\x on
SELECT c.device_id, f->>'path' AS field, f->>'base' AS base, f->>'client' AS client, f->>'server' AS server,
	   c.merged->>(f->>'path') AS merged
  FROM backup_offline.sync_conflict c, jsonb_array_elements(c.conflicting_fields) f
 WHERE f->>'path' = 'notes' ORDER BY c.device_id;
\x off
SELECT jsonb_pretty(f) AS status_conflict
  FROM backup_offline.sync_conflict c, jsonb_array_elements(c.conflicting_fields) f WHERE f->>'path' = 'status';

\echo
\echo '-- the phones pull again from their cursors: the merged visit and phone-ben''s clock-in'
SELECT pg_temp.pull_phones() \gset
SELECT * FROM phone_rows;

\echo
\echo '-- what the sync engine did in this demo (sync_statistics; latencies are in latencyMs)'
SELECT s->'operations'->'byStatus'->>'COMPLETED' AS completed, s->'conflicts'->'byType'->>'FIELD_LEVEL' AS field_level_conflicts,
	   s->>'duplicates' AS duplicate_uploads, s->'pulls'->>'count' AS pulls
  FROM backup_offline.sync_statistics(now() - interval '1 hour', clock_timestamp()) s;
RESET backup_offline.organization_id;
