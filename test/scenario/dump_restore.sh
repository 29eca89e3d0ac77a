#!/usr/bin/env bash
# pg_dump / pg_restore of a database that uses backup_offline: the user's
# catalog rows and the audit trail come back exactly, the built-in rows are
# recreated by CREATE EXTENSION (not duplicated), the chain verifies and
# goes on.  The restore runs with session_replication_role = replica, as the
# README says, so that the catalog's triggers do not re-stamp restored rows.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/dump_restore
PORT=$((BO_TEST_PORT + 14))
trap 'cluster_stop "$DIR"' EXIT
plan 9

cluster_start "$DIR" "$PORT"
ok $? "cluster started"
cluster_psql "$DIR" "$PORT" -d postgres -c "CREATE DATABASE src" -c "CREATE DATABASE dst" >/dev/null
cluster_psql "$DIR" "$PORT" -d src >/dev/null <<'SQL'
CREATE EXTENSION backup_offline;
CREATE SCHEMA care;
CREATE TABLE care.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
SELECT backup_offline.register_entity('VISIT', 'care.visits', '{"clientIdColumn": "client_id", "containsPHI": true}');
INSERT INTO backup_offline.compliance_rule (regulation, name, jurisdiction, minimum_retention, source_citation)
VALUES ('AGENCY', 'Agency policy', 'US-TX', '3 years', 'agency handbook 4.2');
CREATE ROLE dump_app IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member VALUES ('dump_app', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50');
SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';
SELECT backup_offline.create_backup_configuration('{"name": "Visits", "scope": {"includeEntities": ["VISIT"]},
  "schedule": {"frequency": "DAILY", "startTime": "02:00", "timezone": "America/Chicago"},
  "retention": {"retentionDays": 1200}, "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"},
  "complianceRequirements": [{"regulation": "AGENCY"}]}') AS id \gset
SELECT backup_offline.set_backup_configuration_status(:'id', 'PAUSED', 'before dump');
SQL
ok $? "source database with configurations, a rule, a membership and audit rows"

"$PGBIN/pg_dump" -h "$DIR" -p "$PORT" -U postgres -Fc -f "$DIR/src.dump" src
ok $? "pg_dump -Fc"
PGOPTIONS='-c session_replication_role=replica' "$PGBIN/pg_restore" -h "$DIR" -p "$PORT" -U postgres \
	-d dst --exit-on-error "$DIR/src.dump" >"$DIR/restore.out" 2>&1
st=$?
ok $st "pg_restore with session_replication_role = replica"
[ $st -eq 0 ] || sed 's/^/# /' "$DIR/restore.out"

fingerprint="SELECT md5(concat_ws('|',
	(SELECT string_agg(to_jsonb(c)::text, ',' ORDER BY id) FROM backup_offline.backup_configuration c),
	(SELECT string_agg(to_jsonb(r)::text, ',' ORDER BY entity_type) FROM backup_offline.entity_registry r),
	(SELECT string_agg(CASE WHEN built_in THEN to_jsonb(r) - ARRAY['id', 'created_at', 'updated_at'] ELSE to_jsonb(r) END::text,
					   ',' ORDER BY regulation) FROM backup_offline.compliance_rule r),
	(SELECT string_agg(CASE WHEN organization_id IS NULL AND role_name IN ('backup_offline_admin', 'backup_offline_auditor')
							THEN to_jsonb(m) - 'created_at' ELSE to_jsonb(m) END::text,
					   ',' ORDER BY role_name) FROM backup_offline.organization_member m)))"
is "$(q "$DIR" "$PORT" dst "$fingerprint")" "$(q "$DIR" "$PORT" src "$fingerprint")" \
	"configurations, registry, rules and memberships come back identical (built-in rows recreated once)"
audit="SELECT md5(string_agg(to_jsonb(a)::text, ',' ORDER BY id)) FROM backup_offline.audit_log a"
is "$(q "$DIR" "$PORT" dst "$audit")" "$(q "$DIR" "$PORT" src "$audit")" "the audit trail comes back byte for byte"
is "$(q "$DIR" "$PORT" dst "SELECT backup_offline.verify_audit_chain()->>'valid'")" "true" "the restored chain verifies"
q "$DIR" "$PORT" dst "SELECT backup_offline.set_backup_configuration_status(id, 'ACTIVE') FROM backup_offline.backup_configuration" >/dev/null
ok $? "the restored configuration can be reactivated"
is "$(q "$DIR" "$PORT" dst "SELECT (backup_offline.verify_audit_chain()->>'valid') || ' ' || (SELECT max(id) FROM backup_offline.audit_log) || ' ' || (SELECT count(*) FROM backup_offline.audit_log)")" \
	"true $(( $(q "$DIR" "$PORT" src "SELECT count(*) FROM backup_offline.audit_log") + 1 )) $(( $(q "$DIR" "$PORT" src "SELECT count(*) FROM backup_offline.audit_log") + 1 ))" \
	"the next change chains on the restored trail"
