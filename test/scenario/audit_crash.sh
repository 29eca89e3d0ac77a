#!/usr/bin/env bash
# Concurrent configuration changes from several sessions, then a kill -9 of
# the whole cluster in the middle of them (a power loss).  After restart:
# the audit chain verifies, has no gap, and every change that committed has
# exactly its audit rows (a configuration's version equals the number of its
# create/update/status audit rows); every change pgbench saw commit is there.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/audit_crash
PORT=$((BO_TEST_PORT + 11))
trap 'cluster_stop "$DIR"' EXIT
plan 10

cluster_start "$DIR" "$PORT" "synchronous_commit = on"
ok $? "cluster started"
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<'SQL'
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{"clientIdColumn": "client_id"}');
SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'organizationId', '0b6f3c1e-8a6d-4c1e-9f1e-2b7c9d3e4f5' || (g % 4),
	'name', 'config ' || g,
	'scope', '{"includeEntities": ["VISIT"]}'::jsonb,
	'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "America/Chicago"}'::jsonb,
	'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb))
  FROM generate_series(1, 20) g;
SQL
ok $? "20 configurations in 4 organizations created"

# phase 1: each transaction changes one random configuration (description or
# status; a status toggle may find the status already changed by another
# session and do nothing)
cat > "$DIR/change.sql" <<'SQL'
\set n random(1, 20)
\set k random(1, 3)
SELECT CASE WHEN :k = 1 THEN
		backup_offline.set_backup_configuration_status(id, CASE WHEN status = 'ACTIVE' THEN 'PAUSED' ELSE 'ACTIVE' END, 'bench')
	ELSE backup_offline.update_backup_configuration(id, jsonb_build_object('description', 'run ' || random()))
	END
  FROM backup_offline.backup_configuration WHERE name = 'config ' || :n;
SQL
# phase 2: each transaction certainly changes one configuration
cat > "$DIR/describe.sql" <<'SQL'
\set n random(1, 20)
SELECT backup_offline.update_backup_configuration(id, jsonb_build_object('description', 'run ' || random()))
  FROM backup_offline.backup_configuration WHERE name = 'config ' || :n;
SQL
changes_sql="SELECT count(*) FROM backup_offline.audit_log WHERE object_type = 'backup_configuration' AND action IN ('update', 'status_change')"

# phase 1: concurrency alone
"$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U postgres -c 4 -j 2 -t 200 -f "$DIR/change.sql" postgres >"$DIR/bench1.out" 2>&1
ok $? "800 concurrent changes from 4 sessions"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_audit_chain()->>'valid'")" "true" "the audit chain verifies after concurrent writers"
before=$(q "$DIR" "$PORT" postgres "$changes_sql")

# phase 2: kill -9 everything while 4 sessions are changing configurations
"$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U postgres -c 4 -j 2 -T 30 -l --log-prefix="$DIR/tx" \
	-f "$DIR/describe.sql" postgres >"$DIR/bench2.out" 2>&1 &
bench=$!
# kill once at least 100 changes have been acknowledged (bounded: 60 s)
for _ in $(seq 600); do
	[ "$(cat "$DIR"/tx* 2>/dev/null | wc -l)" -ge 100 ] && break
	sleep 0.1
done
pids=$(cluster_pids "$DIR")
kill -9 $pids
wait $bench
diag "killed $pids; pgbench: $(grep -E 'processed|aborted' "$DIR/bench2.out" | tr '\n' ' ')"
acked=$(cat "$DIR"/tx* 2>/dev/null | awk '$3 != "failed"' | wc -l)
# wait (at most 30 s) until the killed processes are gone, zombies reaped
for _ in $(seq 300); do
	alive=0
	for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ $alive -eq 0 ] && break
	sleep 0.1
done
as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null
ok $? "cluster restarts after kill -9"

result=$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_audit_chain()")
is "$(q "$DIR" "$PORT" postgres "SELECT ('$result'::jsonb)->>'valid'")" "true" "the audit chain verifies after the crash"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) = max(id) FROM backup_offline.audit_log")" "t" "audit ids have no gap"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.backup_configuration c
	WHERE c.version <> (SELECT count(*) FROM backup_offline.audit_log a
						 WHERE a.object_type = 'backup_configuration' AND a.object_id = c.id::text)")" "0" \
	"every committed change has exactly one audit row (version = audit rows per configuration)"
changes=$(( $(q "$DIR" "$PORT" postgres "$changes_sql") - before ))
diag "changes acknowledged to pgbench before the crash: $acked; changes in the database: $changes"
ok $([ "$changes" -ge "$acked" ] && echo 0 || echo 1) "every acknowledged change survived the crash"
ok $([ "$acked" -gt 0 ] && echo 0 || echo 1) "the crash happened while changes were being acknowledged"
