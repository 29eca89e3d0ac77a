#!/usr/bin/env bash
# Bad input changes nothing, across transactions: each bad call runs as its
# own autocommit statement, as the application role, and afterwards the
# catalog tables, the audit log and its head are byte for byte as before.
# (The pgTAP suite checks messages and SQLSTATEs inside one transaction; this
# checks that no failure leaves anything committed behind.)
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/bad_input_atomic
PORT=$((BO_TEST_PORT + 15))
trap 'cluster_stop "$DIR"' EXIT

cluster_start "$DIR" "$PORT"
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL'
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
GRANT SELECT ON public.visits TO PUBLIC;
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{"clientIdColumn": "client_id"}');
CREATE ROLE atomic_app IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member VALUES ('atomic_app', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50');
SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50';
SELECT backup_offline.create_backup_configuration('{"name": "Visits", "scope": {"includeEntities": ["VISIT"]},
  "schedule": {"frequency": "DAILY", "startTime": "02:00"}, "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"}}');
SQL

ID=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_configuration")
BASE='"name": "New", "scope": {"includeEntities": ["VISIT"]}, "storageDestination": {"type": "AWS_S3", "bucket": "care-backups"}'
# each call, and the message it must fail with (not just any error: a
# permission problem in the extension would fail too, for the wrong reason)
calls=(
	"SELECT backup_offline.create_backup_configuration('{$BASE, \"schedule\": {\"frequency\": \"DAILY\", \"startTime\": \"25:00\"}}')"
	'invalid schedule.startTime: "25:00"'
	"SELECT backup_offline.create_backup_configuration('{$BASE, \"schedule\": {\"frequency\": \"CUSTOM\", \"cronExpression\": \"0 0 30 2 *\"}}')"
	'invalid schedule.cronExpression: "0 0 30 2 \*"'
	"SELECT backup_offline.create_backup_configuration('{$BASE, \"schedule\": {\"frequency\": \"DAILY\"}, \"retention\": {\"retentionDays\": -1}}')"
	'invalid retention.retentionDays: -1 is out of range'
	"SELECT backup_offline.create_backup_configuration('{$BASE, \"schedule\": {\"frequency\": \"DAILY\"}, \"complianceRequirements\": [{\"regulation\": \"HIPAA\"}]}')"
	'retention.retentionDays 30 is below the 2192 days HIPAA requires'
	"SELECT backup_offline.create_backup_configuration('{$BASE, \"schedule\": {\"frequency\": \"DAILY\"}, \"organizationId\": \"7d1e0c55-2b6b-4f0e-9d7e-5b8d1f2c3a41\"}')"
	'organizationId 7d1e0c55-2b6b-4f0e-9d7e-5b8d1f2c3a41 differs from the session'
	"SELECT backup_offline.create_backup_configuration('{\"name\": \"Visits\", \"scope\": {\"includeEntities\": [\"VISIT\"]}, \"storageDestination\": {\"type\": \"AWS_S3\", \"bucket\": \"care-backups\"}, \"schedule\": {\"frequency\": \"DAILY\"}}')"
	'backup configuration "Visits" already exists'
	"SELECT backup_offline.update_backup_configuration('$ID', '{\"schedule\": {\"frequency\": \"WEEKLY\"}}')"
	'schedule.daysOfWeek is required'
	"SELECT backup_offline.update_backup_configuration('$ID', '{\"expectedVersion\": 99, \"description\": \"x\"}')"
	'backup configuration "Visits" has version 1, not 99'
	"SELECT backup_offline.set_backup_configuration_status('$ID', 'RUNNING')"
	'invalid status: "RUNNING"'
	"UPDATE backup_offline.backup_configuration SET retention = '{\"retentionDays\": \"forever\"}' WHERE id = '$ID'"
	'invalid retention.retentionDays: "forever" is not an integer'
	"UPDATE backup_offline.backup_configuration SET next_backup_at = now() WHERE id = '$ID'"
	'permission denied for table backup_configuration'
	"DELETE FROM backup_offline.backup_configuration"
	'permission denied for table backup_configuration'
	"SELECT backup_offline.write_audit('forged', 'x', NULL, NULL, '{}', 'nobody')"
	'permission denied for function write_audit'
	"UPDATE backup_offline.compliance_rule SET minimum_retention = '1 day'"
	'permission denied for table compliance_rule'
)
plan $(( ${#calls[@]} / 2 + 1 ))

fingerprint="SELECT md5(concat_ws('|',
	(SELECT string_agg(to_jsonb(c)::text, ',' ORDER BY id) FROM backup_offline.backup_configuration c),
	(SELECT string_agg(to_jsonb(r)::text, ',' ORDER BY id) FROM backup_offline.entity_registry r),
	(SELECT string_agg(to_jsonb(r)::text, ',' ORDER BY id) FROM backup_offline.compliance_rule r),
	(SELECT string_agg(to_jsonb(m)::text, ',' ORDER BY role_name) FROM backup_offline.organization_member m),
	(SELECT string_agg(to_jsonb(a)::text, ',' ORDER BY id) FROM backup_offline.audit_log a),
	(SELECT string_agg(to_jsonb(h)::text, ',') FROM backup_offline.audit_chain_head h)))"
before=$(q "$DIR" "$PORT" postgres "$fingerprint")

for ((i = 0; i < ${#calls[@]}; i += 2)); do
	call=${calls[i]}
	want=${calls[i + 1]}
	out=$(cluster_psql "$DIR" "$PORT" -d postgres \
		-c "SET ROLE atomic_app" -c "SET backup_offline.organization_id = '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50'" \
		-c "$call" 2>&1)
	st=$?
	ok $([ $st -ne 0 ] && echo "$out" | grep -q "ERROR:  $want" && echo 0 || echo 1) "refused with \"$want\""
	[ $st -ne 0 ] && echo "$out" | grep -q "ERROR:  $want" || echo "$out" | sed 's/^/#   /'
done
is "$(q "$DIR" "$PORT" postgres "$fingerprint")" "$before" \
	"after $(( ${#calls[@]} / 2 )) refused statements the catalog, the audit log and its head are unchanged"
