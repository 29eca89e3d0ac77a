#!/usr/bin/env bash
# Benchmark: the offline-sync engine against a plain SKIP LOCKED queue.
#
#   test/bench/sync.sh [operations]     (default 20000)
#
# On a throwaway cluster (scripts/cluster.sh, port 55491), a visits table of
# 20 columns (text, numeric, timestamptz, jsonb tasks, long notes) with
# 20,000 rows, registered with register_sync_entity (notes append, miles
# additive, tasks merge_by_id, lww otherwise), then, best of 3 where
# noted:
#
#   1. ingest: queue_operations of <operations> PATCH operations from 20
#      devices in batches of 1,000 (each device's batch as a reconnecting
#      phone uploads it): operations/s.  Goal: at least 20,000/s batched.
#   2. processing: process_sync_queue(1000) in a loop until the queue is
#      empty, one processor, for <operations> operations of which 10% edit
#      a row from a stale base version with a conflicting field (merged by
#      merge3, recorded in sync_conflict): operations/s.
#   3. the plain queue the application would otherwise write: a table of
#      (id bigserial, entity_id, payload jsonb), a PL/pgSQL loop that claims
#      one job at a time with DELETE ... WHERE id = (SELECT ... FOR UPDATE
#      SKIP LOCKED LIMIT 1) RETURNING and applies it with UPDATE ... SET
#      (columns) = jsonb_populate_record(...), no versions, no merge, no
#      idempotency, no conflicts: the same operations on the same table
#      (whose sync triggers fire for both).  Goal: ours at least as fast.
#   4. merge3: 200,000 merges of 20-field visit documents (two fields changed
#      per side, one of them by both: an additive counter), one backend, one
#      core: merges/s, net of a scan of the same rows.  Goal: 200,000/s.
#
# Prints figures and ratios; no thresholds; exits 0 unless something fails
# to run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/scripts/cluster.sh"
OPS=${1:-20000}
DIR=/tmp/backup_offline_bench_sync
PORT=55491
ORG=6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b

cluster_stop "$DIR" >/dev/null 2>&1 || true
rm -rf "$DIR"
trap 'cluster_stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
cluster_start "$DIR" "$PORT" "shared_buffers = 512MB" >/dev/null
P() { cluster_psql "$DIR" "$PORT" -d postgres -X -At -q -v ON_ERROR_STOP=1 "$@"; }
# seconds of SQL, measured by the server
T() {
	printf '%s\n' "SET backup_offline.organization_id = '$ORG';" 'SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset' \
		"$1;" 'SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3);' | P | tail -1
}

P >/dev/null <<SQL
CREATE EXTENSION backup_offline;
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
CREATE SCHEMA care;
CREATE TABLE care.visits (
	id text PRIMARY KEY, organization_id uuid NOT NULL, client_id uuid, caregiver_id uuid, visit_date date,
	status text, planned_start timestamptz, planned_end timestamptz, actual_start timestamptz, actual_end timestamptz,
	miles numeric(8,2) NOT NULL DEFAULT 0, tasks jsonb, notes text, signature text, service_code text,
	units int, rate numeric(10,2), billed boolean, latitude numeric(9,6), longitude numeric(9,6));
INSERT INTO care.visits
SELECT 'v' || g, '$ORG', gen_random_uuid(), gen_random_uuid(), DATE '2026-10-01' + g % 60, 'SCHEDULED',
	   now(), now() + interval '2 hours', NULL, NULL, g % 30,
	   jsonb_build_array(jsonb_build_object('id', 1, 'task', 'bath', 'done', false), jsonb_build_object('id', 2, 'task', 'meals', 'done', false)),
	   repeat('Client was in good spirits. ', 1 + g % 10), NULL, 'T1019', 4, 18.50, false, 30.26, -97.74
  FROM generate_series(1, 20000) g;
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.register_sync_entity('VISIT', 'care.visits', '{"organizationColumn": "organization_id",
	"fieldPolicies": {"notes": "append", "miles": "additive", "tasks": "merge_by_id"}}');
-- the operations: device d edits visit ((i * 20 + d) mod 20000); 10% from a stale base
CREATE TABLE bench_ops AS
SELECT d, i, 'v' || (1 + (i * 20 + d) % 20000) AS vid,
	   jsonb_build_object('deviceId', 'dev' || d, 'operationId', 'op' || i, 'deviceSeq', i + 1,
		   'clientHlc', (extract(epoch FROM now()) * 1000)::bigint << 16, 'operation', 'PATCH', 'entityType', 'VISIT',
		   'entityId', 'v' || (1 + (i * 20 + d) % 20000),
		   'payload', CASE WHEN i % 10 = 0 THEN jsonb_build_object('status', 'COMPLETED', 'miles', 5)
						   ELSE jsonb_build_object('status', 'IN_PROGRESS', 'actual_start', now()) END,
		   'baseVersion', 1) AS op
  FROM generate_series(1, 20) d, generate_series(0, ($OPS / 20) - 1) i;
-- the stale ones: the office changed those rows after the devices' base
UPDATE care.visits SET status = 'RESCHEDULED', miles = miles + 1
 WHERE id IN (SELECT vid FROM bench_ops WHERE i % 10 = 0);
CREATE TABLE plain_queue (id bigserial PRIMARY KEY, entity_id text NOT NULL, payload jsonb NOT NULL);
CREATE FUNCTION plain_process() RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE
	j plain_queue;
	n bigint := 0;
BEGIN
	LOOP
		DELETE FROM plain_queue WHERE id = (SELECT id FROM plain_queue ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
		RETURNING * INTO j;
		EXIT WHEN NOT FOUND;
		UPDATE care.visits v SET (status, actual_start, miles) =
			(SELECT coalesce(r.status, v.status), coalesce(r.actual_start, v.actual_start), coalesce(r.miles, v.miles)
			   FROM jsonb_populate_record(NULL::care.visits, j.payload) r)
		 WHERE v.id = j.entity_id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
\$\$;
SQL
CHECKPOINT_SQL="CHECKPOINT"
echo "sync benchmark: $OPS operations, 20 devices, visits of 20 columns (20,000 rows), 10% conflicting"

best() { sort -n | head -1; }
# 1. ingest
ingest=()
for run in 1 2 3; do
	P -c "TRUNCATE backup_offline.sync_queue CASCADE" -c "TRUNCATE backup_offline.sync_device" -c "$CHECKPOINT_SQL" 2>/dev/null
	ingest+=("$(T "SELECT count(*) FROM (SELECT backup_offline.queue_operations(jsonb_agg(op ORDER BY i)) FROM bench_ops GROUP BY d, i / 1000) x")")
done
INGEST=$(printf '%s\n' "${ingest[@]}" | best)
# 2. processing (the queue from the last ingest run; rows reset between runs)
P -c "CREATE TABLE visits_saved AS SELECT * FROM care.visits" \
  -c "CREATE TABLE row_saved AS SELECT * FROM backup_offline.sync_row" \
  -c "CREATE TABLE history_saved AS SELECT * FROM backup_offline.sync_row_history"
# the rows, their versions and history as before the processing
RESET_ROWS="UPDATE care.visits v SET (status, actual_start, miles) = (s.status, s.actual_start, s.miles) FROM visits_saved s WHERE s.id = v.id;
	DELETE FROM backup_offline.sync_row_history;
	UPDATE backup_offline.sync_row r SET version = s.version, change_seq = NULL, hlc = NULL FROM row_saved s
	 WHERE s.entity_id = r.entity_id AND s.row_key = r.row_key;
	INSERT INTO backup_offline.sync_row_history SELECT * FROM history_saved;"
process=()
for run in 1 2 3; do
	if [ "$run" -gt 1 ]; then
		P -c "UPDATE backup_offline.sync_queue SET status = 'PENDING', completed_at = NULL, result = NULL, has_conflict = false" \
		  -c "DELETE FROM backup_offline.sync_conflict" -c "$RESET_ROWS" -c "$CHECKPOINT_SQL" >/dev/null
	fi
	process+=("$(T "DO \$\$ BEGIN LOOP EXIT WHEN (backup_offline.process_sync_queue(1000)->>'processed')::int = 0; END LOOP; END \$\$")")
done
PROCESS=$(printf '%s\n' "${process[@]}" | best)
STATS=$(P -c "SELECT count(*) FILTER (WHERE status = 'COMPLETED') || ' completed, ' || count(*) FILTER (WHERE has_conflict) || ' with a conflict record, ' || count(*) FILTER (WHERE status = 'FAILED') || ' failed' FROM backup_offline.sync_queue")
# 3. the plain queue
plain=()
for run in 1 2 3; do
	P -c "$RESET_ROWS" \
	  -c "INSERT INTO plain_queue (entity_id, payload) SELECT vid, op->'payload' FROM bench_ops ORDER BY d, i" -c "$CHECKPOINT_SQL"
	plain+=("$(T "SELECT plain_process()")")
done
PLAIN=$(printf '%s\n' "${plain[@]}" | best)
# 4. merge3
P >/dev/null <<'SQL'
CREATE TABLE docs AS
SELECT b, b || jsonb_build_object('field_1', 'client edit', 'field_4', 7) AS c,
		  b || jsonb_build_object('field_5', 'office edit', 'field_4', 9) AS s
  FROM (SELECT (SELECT jsonb_object_agg('field_' || i, CASE WHEN i % 4 = 0 THEN to_jsonb(i * g) WHEN i % 4 = 1 THEN to_jsonb('value ' || i || ' of ' || g)
													WHEN i % 4 = 2 THEN to_jsonb(i % 3 = 0) ELSE to_jsonb(i * 1.5) END)
				  FROM generate_series(1, 20) i) AS b
		  FROM generate_series(1, 200000) g) x;
SQL
merge=()
scan=()
for run in 1 2 3; do
	scan+=("$(T "SELECT count(jsonb_typeof(c)) FROM docs")")
	merge+=("$(T "SELECT count(backup_offline.merge3(b, c, s, '{\"fields\": {\"field_4\": \"additive\"}}')) FROM docs")")
done
SCAN=$(printf '%s\n' "${scan[@]}" | best)
MERGE=$(printf '%s\n' "${merge[@]}" | best)

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "| | seconds (best of 3) | per second | |"
echo "|---|---|---|---|"
echo "| ingest: queue_operations, batches of 1,000 | $INGEST | $(rate "$OPS" "$INGEST") | goal 20,000/s |"
echo "| processing: process_sync_queue, 10% conflicts | $PROCESS | $(rate "$OPS" "$PROCESS") | $STATS |"
echo "| plain SKIP LOCKED queue, same operations, no merge | $PLAIN | $(rate "$OPS" "$PLAIN") | ours / plain: $(ratio "$PLAIN" "$PROCESS")x the speed |"
echo "| merge3, 200,000 20-field merges (net of a $SCAN s scan) | $MERGE | $(rate 200000 "$(awk -v m="$MERGE" -v s="$SCAN" 'BEGIN { print m - s }')") | goal 200,000/s |"
