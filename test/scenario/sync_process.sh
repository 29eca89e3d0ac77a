#!/usr/bin/env bash
# Processing the sync queue with several processors, a crash, and the
# scheduler's sync worker (process_sync_queue, backup_offline.sync_worker_role;
# src/catalog/92_sync_process.sql, src/schedule/launcher.c).
#
# Proven:
#   * four processors in parallel (process_sync_queue(25) in loops) apply
#     2,000 operations of 20 devices: each exactly once (every CREATE lands
#     once: a second apply would fail on the primary key and dead-letter
#     the operation; none FAILED, none left), and the table's rows equal
#     the operations' payloads (count and digest); four counters, each
#     counted up by five devices offline (50 PATCHes each, all from base
#     version 1, the device's running count), end at 250 each: every
#     increment merged additively once, a device's own earlier increments
#     not counted again;
#   * a processor killed (kill -9) in the middle of a batch loses nothing and
#     applies nothing twice: after the restart, processing again completes
#     every operation once;
#   * with backup_offline.sync_worker_role set, the scheduler worker applies
#     queued operations by itself, as that role.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/sync_process
PORT=$((BO_TEST_PORT + 32))
trap 'jobs -p | xargs -r kill 2>/dev/null; cluster_stop "$DIR"' EXIT
plan 8

psqlq() { cluster_psql "$DIR" "$PORT" -d postgres -At -q "$@"; }

cluster_start "$DIR" "$PORT" || exit 1
psqlq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || exit 1
CREATE EXTENSION backup_offline;
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
CREATE TABLE public.events (id text PRIMARY KEY, device text, n int);
CREATE TABLE public.counters (id text PRIMARY KEY, hits int NOT NULL DEFAULT 0);
INSERT INTO public.counters SELECT 'c' || d, 0 FROM generate_series(1, 23) d;
SELECT backup_offline.register_sync_entity('EVENT', 'public.events', '{}');
SELECT backup_offline.register_sync_entity('COUNTER', 'public.counters', '{"fieldPolicies": {"hits": "additive"}}');
-- a switch to stall one operation's write
CREATE TABLE public.stall (on_id text);
CREATE FUNCTION public.stall_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id = (SELECT on_id FROM public.stall) THEN
		PERFORM pg_sleep(60);
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER stall BEFORE INSERT ON public.events FOR EACH ROW EXECUTE FUNCTION public.stall_trigger();
SQL

# queue N operations per device for devices FROM..TO: a CREATE of an event
# and a +1 PATCH of a counter (the counter named by the SQL expression
# COUNTER of d, default the device's own): the device counts offline from
# base version 1 and sends its running count (g after g increments); each
# edit builds on its own earlier ones, and merges additively with the other
# devices' increments of the same counter
queue() {
	local counter=${4:-"'c' || d"}
	psqlq -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET backup_offline.organization_id = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b';
SELECT backup_offline.queue_operations(jsonb_agg(o ORDER BY d, g, k))
  FROM generate_series($1, $2) d, generate_series(1, $3) g, generate_series(0, 1) k,
	   LATERAL (SELECT CASE k
		   WHEN 0 THEN jsonb_build_object('deviceId', 'dev' || d, 'operationId', 'ev' || g, 'deviceSeq', 2 * g - 1,
				'clientHlc', (extract(epoch FROM now()) * 1000)::bigint << 16, 'operation', 'CREATE', 'entityType', 'EVENT',
				'entityId', 'e' || d || '-' || g, 'payload', jsonb_build_object('device', 'dev' || d, 'n', g))
		   ELSE jsonb_build_object('deviceId', 'dev' || d, 'operationId', 'hit' || g, 'deviceSeq', 2 * g,
				'clientHlc', (extract(epoch FROM now()) * 1000)::bigint << 16, 'operation', 'PATCH', 'entityType', 'COUNTER',
				'entityId', $counter, 'payload', jsonb_build_object('hits', g), 'baseVersion', 1) END AS o) x
 GROUP BY d;
SQL
}
# run process_sync_queue(25) until nothing is runnable
processor() {
	# (an error ends the loop too: the checks then show what is left)
	while [[ "$(psqlq -c "SELECT (backup_offline.process_sync_queue(25)->>'processed')::int" 2>>"$DIR/proc.err")" =~ ^[1-9] ]]; do :; done
}

queue 1 20 50 "'c' || (1 + d % 4)"
is "$(psqlq -c "SELECT count(*) FROM backup_offline.sync_queue")" "2000" "2,000 operations of 20 devices queued"
for p in 1 2 3 4; do processor & PROCS[$p]=$!; done
wait "${PROCS[@]}"
is "$(psqlq -c "SELECT string_agg(status || ':' || n, ' ' ORDER BY status) FROM (SELECT status, count(*) n FROM backup_offline.sync_queue GROUP BY 1) s")" \
	"COMPLETED:2000" "four processors in parallel: every operation COMPLETED, none FAILED or left"
is "$(psqlq -c "SELECT count(*) || ' ' || md5(string_agg(id || ':' || device || ':' || n, ',' ORDER BY id)) FROM public.events")" \
	"$(psqlq -c "SELECT count(*) || ' ' || md5(string_agg(('e' || d || '-' || g) || ':dev' || d || ':' || g, ',' ORDER BY ('e' || d || '-' || g))) FROM generate_series(1, 20) d, generate_series(1, 50) g")" \
	"each CREATE applied exactly once: the events equal the payloads (count and digest)"
is "$(psqlq -c "SELECT string_agg(hits::text, ',' ORDER BY id) FROM public.counters WHERE id IN ('c1', 'c2', 'c3', 'c4')")" "250,250,250,250" \
	"five devices counting 50 each on one counter, in parallel, merged additively: every counter at 250 (nothing lost, nothing twice)"

# ---- a processor killed in the middle of a batch ------------------------------------
queue 21 22 20
psqlq -c "INSERT INTO public.stall VALUES ('e21-10')"
cluster_psql "$DIR" "$PORT" -d postgres -At -q -c "SELECT backup_offline.process_sync_queue(1000)" >/dev/null 2>&1 &
VICTIM=""
for _ in $(seq 150); do
	VICTIM=$(psqlq -c "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%process_sync_queue%'")
	[ -n "$VICTIM" ] && break
	sleep 0.2
done
ok "$([ -n "$VICTIM" ]; echo $?)" "a processor is stalled in the middle of its batch"
kill -9 "$VICTIM"
wait_ready
psqlq -c "DELETE FROM public.stall"
processor
is "$(psqlq -c "SELECT count(*) FILTER (WHERE status = 'COMPLETED') || ' ' || count(*) FROM backup_offline.sync_queue")
$(psqlq -c "SELECT count(*) FROM public.events WHERE device IN ('dev21', 'dev22')") $(psqlq -c "SELECT string_agg(hits::text, ',' ORDER BY id) FROM public.counters WHERE id IN ('c21', 'c22')")" \
	"2080 2080
40 20,20" \
	"after the kill and a new run: every operation completed once (40 new events, nothing twice)"

# ---- the scheduler's sync worker -------------------------------------------------------
psqlq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE ROLE syncer IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member VALUES ('syncer', NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.events, public.counters TO syncer;
GRANT SELECT ON public.stall TO syncer;
ALTER SYSTEM SET backup_offline.sync_worker_role = 'syncer';
ALTER SYSTEM SET backup_offline.scheduler_interval = 1;
SELECT pg_reload_conf();
SQL
queue 23 23 5
for _ in $(seq 150); do
	[ "$(psqlq -c "SELECT count(*) FROM backup_offline.sync_queue WHERE status <> 'COMPLETED'")" = "0" ] && break
	sleep 0.2
done
is "$(psqlq -c "SELECT count(*) FROM public.events WHERE device = 'dev23'") $(psqlq -c "SELECT count(*) FROM backup_offline.sync_queue WHERE status <> 'COMPLETED'")" \
	"5 0" "the scheduler worker applied the new operations by itself"
is "$(grep -E 'ERROR:' "$DIR/server.log" | grep -vc 'canceling statement\|terminating connection')" "0" "... as the sync worker role, without errors in the server log"
