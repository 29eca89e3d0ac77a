#!/usr/bin/env bash
# Benchmark: what validation, versioning, row-level security and the
# hash-chained audit trail cost per configuration change, next to the plain
# UPDATE of an equally wide table without them (what an application would do
# with its own settings table).  Not a test: it prints figures and ratios.
#
#   test/bench/catalog_writes.sh [seconds per run, default 10] [clients, default 2]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-10}
CLIENTS=${2:-2}
scripts/setup >/dev/null
. scripts/cluster.sh

DIR=$(mktemp -d /tmp/backup_offline_bench.XXXXXX)
chmod 755 "$DIR"
PORT=${BO_BENCH_PORT:-55490}
trap 'cluster_stop "$DIR/c"; rm -rf "$DIR"' EXIT
cluster_start "$DIR/c" "$PORT" >/dev/null

cluster_psql "$DIR/c" "$PORT" -d postgres >/dev/null <<'SQL'
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{"clientIdColumn": "client_id"}');
SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'organizationId', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f50', 'name', 'config ' || g,
	'scope', '{"includeEntities": ["VISIT"]}'::jsonb,
	'schedule', '{"frequency": "CUSTOM", "cronExpression": "*/15 6-20 * * MON-FRI", "timezone": "America/Chicago"}'::jsonb,
	'retention', '{"retentionDays": 2555, "keepDaily": 14, "keepWeekly": 8}'::jsonb,
	'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb,
	'complianceRequirements', '[{"regulation": "IRS"}]'::jsonb))
  FROM generate_series(1, 100) g;
-- the same rows in a plain table: no triggers, no policies, no audit
CREATE TABLE public.plain_configuration AS SELECT * FROM backup_offline.backup_configuration;
ALTER TABLE public.plain_configuration ADD PRIMARY KEY (id);
SQL

cat >"$DIR/api.sql" <<'SQL'
\set n random(1, 100)
SELECT backup_offline.update_backup_configuration(id, jsonb_build_object('description', 'run ' || random()))
  FROM backup_offline.backup_configuration WHERE name = 'config ' || :n;
SQL
cat >"$DIR/plain.sql" <<'SQL'
\set n random(1, 100)
UPDATE public.plain_configuration SET description = 'run ' || random(), version = version + 1, updated_at = now()
 WHERE name = 'config ' || :n;
SQL
cat >"$DIR/audit.sql" <<'SQL'
SELECT backup_offline.write_audit('bench', 'bench', NULL, NULL, '{"k": 1}', 'postgres');
SQL

tps() {
	"$PGBIN/pgbench" -n -h "$DIR/c" -p "$PORT" -U postgres -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_PER_RUN" -f "$1" postgres 2>&1 |
		sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
plain=$(tps "$DIR/plain.sql")
api=$(tps "$DIR/api.sql")
audit=$(tps "$DIR/audit.sql")
valid=$(cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT backup_offline.verify_audit_chain()->>'valid'")
t0=$(date +%s%N)
rows=$(cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT (backup_offline.verify_audit_chain()->>'rowsChecked')")
t1=$(date +%s%N)

echo "configuration changes, $CLIENTS clients, ${SECONDS_PER_RUN}s each (pgbench tps):"
printf '  plain UPDATE of a settings table      %10.1f tps\n' "$plain"
printf '  update_backup_configuration (API)     %10.1f tps   ratio plain/API %.1fx\n' "$api" "$(awk -v a="$plain" -v b="$api" 'BEGIN { print a / b }')"
printf '  write_audit alone (hash chain)        %10.1f tps\n' "$audit"
printf '  verify_audit_chain over %s rows: %d ms (valid: %s)\n' "$rows" $(( (t1 - t0) / 1000000 )) "$valid"
