#!/usr/bin/env bash
# Crashes lose nothing and leave no half-visible backup.
#
# A table of 400,000 rows (about 140 MB: copying it takes a moment), one
# configuration and one COMPLETED FULL (S1).  Then three backups are
# interrupted by kill -9:
#
#   a. the job worker, while the snapshot is PENDING (held in "waiting for
#      writers" by an open writing transaction);
#   b. the job worker, while it is IN_PROGRESS copying rows, caught once a
#      part object is committed in the repository and its row index
#      directory exists (backup_offline.part_size = 4 MB);
#   c. the postmaster and all its children (a power loss), again while
#      copying rows; the cluster is started again with pg_ctl.
#
# After each, once the scheduler has run its start-up recovery: the snapshot
# is FAILED with a status_reason naming the interruption, its directory in
# the repository holds no object and no temporary file of an interrupted
# put, and $PGDATA/pg_backup_offline/<id> is gone; the interruptions count
# as consecutive failures (three suspend the configuration).  Finally S1 still verifies at level 'restore', every snapshot
# directory that holds objects belongs to a COMPLETED snapshot, and a
# scheduled run (scheduler_interval = 1, next_backup_at forced into the
# past) completes, moves next_backup_at into the future and leaves
# consecutive_failures at 0.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/backup_crash
PORT=$((BO_TEST_PORT + 23))
REPO=$DIR/backups/repo
ORG=7d1c2f0e-5a4b-4c3d-9e8f-0a1b2c3d4e5f
trap 'cluster_stop "$DIR"' EXIT
plan 31

cluster_start "$DIR" "$PORT" "backup_offline.part_size = 4"
st=$?
ok $st "cluster started"
[ $st -eq 0 ] || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"

# A daily schedule at a time of day twelve hours away: the scheduler never
# starts this configuration by itself while the test runs.
START=$(printf '%02d:00' $(( (10#$(date -u +%H) + 12) % 24 )))
cluster_psql "$DIR" "$PORT" -d postgres >"$DIR/setup.out" 2>&1 <<SQL
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
CREATE EXTENSION backup_offline;
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
CREATE SCHEMA care;
CREATE TABLE care.visits (id bigint PRIMARY KEY, client_id uuid NOT NULL, visit_date date NOT NULL, note text NOT NULL);
-- notes of two sha512 values in hex: compressible 2x, not more
INSERT INTO care.visits
	SELECT g, md5(g::text)::uuid, date '2024-01-01' + (g % 366),
		   encode(sha512(int8send(g)), 'hex') || encode(sha512(int8send(-g)), 'hex')
	  FROM generate_series(1, 400000) g;
CREATE TABLE public.hold (x int);
SELECT backup_offline.register_entity('VISIT', 'care.visits', '{"clientIdColumn": "client_id", "dateColumn": "visit_date"}');
SELECT backup_offline.create_backup_configuration('{"organizationId": "$ORG", "name": "crash",
	"scope": {"includeEntities": ["VISIT"]},
	"schedule": {"frequency": "DAILY", "startTime": "$START", "timezone": "UTC"},
	"retention": {"retentionDays": 30},
	"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "$REPO"},
	"checksumAlgorithm": "BLAKE3"}');
SQL
setup_rc=$?
# public.wait_for_job(snapshot, phase) (backup_lib.sh); "copying rows" also
# waits for the snapshot's row index directory
install_wait_for_job "$REPO" row-index >>"$DIR/setup.out" 2>&1 || setup_rc=1
CFG=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_configuration WHERE name = 'crash'")
rows=$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM care.visits")
setup_ok=$([ $setup_rc -eq 0 ] && [ "$rows" = 400000 ] && [ -n "$CFG" ] && echo 0 || echo 1)
ok $setup_ok "400,000 rows and a configuration"
[ $setup_ok -eq 0 ] || { sed 's/^/# /' "$DIR/setup.out"; exit 1; }

S1=$(q "$DIR" "$PORT" postgres "SELECT backup_offline.run_backup('$CFG', 'FULL')" 2>"$DIR/s1.err")
is "$(q "$DIR" "$PORT" postgres "SELECT status FROM backup_offline.backup_snapshot WHERE id = '${S1:-00000000-0000-0000-0000-000000000000}'")" \
	COMPLETED "S1: a FULL backup completes"
# fewer WAL records to replay after each crash
q "$DIR" "$PORT" postgres "CHECKPOINT" >/dev/null

# objects DIR / temps DIR: committed objects / temporary files in a directory
objects() { find "$1" -type f ! -name '.tmp.*' 2>/dev/null | wc -l; }
temps() { find "$1" -type f -name '.tmp.*' 2>/dev/null | wc -l; }

# final_status ID: the snapshot's status once it is no longer PENDING or
# IN_PROGRESS; polls (at most 90 s) through a server restart
final_status() {
	local s=""
	for _ in $(seq 900); do
		s=$(q "$DIR" "$PORT" postgres "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$1'" 2>/dev/null)
		case "$s" in
			PENDING | IN_PROGRESS | "") sleep 0.1 ;;
			*) break ;;
		esac
	done
	echo "$s"
}

# kill9 PID: kill -9 one process, never "kill -9 0" (our own process group)
kill9() { [[ "$1" =~ ^[1-9][0-9]*$ ]] && kill -9 "$1"; }

# gone PIDS: wait (at most 30 s) until the processes are gone
gone() {
	local alive
	for _ in $(seq 300); do
		alive=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive -eq 0 ] && return 0
		sleep 0.1
	done
	return 1
}

# after_crash CASE ID: the checks every interrupted snapshot must pass
after_crash() {
	local id=$1 what=$2 status reason prefix
	status=$(final_status "$id")
	is "$status" FAILED "$what: the snapshot is FAILED after recovery"
	reason=$(q "$DIR" "$PORT" postgres "SELECT status_reason FROM backup_offline.backup_snapshot WHERE id = '$id'")
	if [[ "$reason" == *interrupted* ]]; then ok 0 "$what: status_reason names the interruption"; else
		ok 1 "$what: status_reason names the interruption"; diag "status_reason: $reason"; fi
	prefix=$REPO/backup_offline/$CFG/$id
	is "$(objects "$prefix")" 0 "$what: no object left under the snapshot's prefix"
	is "$(temps "$prefix")" 0 "$what: no temporary file of an interrupted put left under the prefix"
	if [ -e "$DIR/data/pg_backup_offline/$id" ]; then
		ok 1 "$what: no row index directory left"; ls -la "$DIR/data/pg_backup_offline/$id" | sed 's/^/# /'
	else ok 0 "$what: no row index directory left"; fi
}

# ---- a. kill -9 of the job worker while the snapshot is PENDING ------------
PGAPPNAME=holder cluster_psql "$DIR" "$PORT" -d postgres \
	-c "BEGIN; INSERT INTO public.hold VALUES (1); SELECT pg_sleep(120)" >"$DIR/holder.out" 2>&1 &
holder=$!
for _ in $(seq 300); do
	[ "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND backend_xid IS NOT NULL")" = 1 ] && break
	sleep 0.1
done
A=$(q "$DIR" "$PORT" postgres "SELECT backup_offline.run_backup('$CFG', 'FULL', false)")
wpid=$(q "$DIR" "$PORT" postgres "SELECT public.wait_for_job('$A', 'waiting for writers')")
is "$(q "$DIR" "$PORT" postgres "SELECT backend_type FROM pg_stat_activity WHERE pid = ${wpid:-0}")" "backup_offline job" \
	"a: the job is held PENDING, waiting for writers, in a job worker"
kill9 "$wpid"
after_crash "$A" "a (worker killed while PENDING)"
wait "$holder" 2>/dev/null

# ---- b. kill -9 of the job worker while it copies rows -----------------------
B=$(q "$DIR" "$PORT" postgres "SELECT backup_offline.run_backup('$CFG', 'FULL', false)")
wpid=$(q "$DIR" "$PORT" postgres "SELECT public.wait_for_job('$B', 'copying rows')")
is "$(q "$DIR" "$PORT" postgres "SELECT backend_type FROM pg_stat_activity WHERE pid = ${wpid:-0}")" "backup_offline job" \
	"b: the job worker is copying rows, with an object committed and its row index begun"
kill9 "$wpid"
diag "b: objects under the prefix right after the kill: $(objects "$REPO/backup_offline/$CFG/$B")"
after_crash "$B" "b (worker killed while copying rows)"

# ---- c. kill -9 of the whole cluster while a job copies rows -----------------
C=$(q "$DIR" "$PORT" postgres "SELECT backup_offline.run_backup('$CFG', 'FULL', false)")
wpid=$(q "$DIR" "$PORT" postgres "SELECT public.wait_for_job('$C', 'copying rows')")
pids=$(cluster_pids "$DIR")
kill -9 $pids
ok $([ -n "$wpid" ] && [[ " $pids " == *" $wpid "* ]] && echo 0 || echo 1) \
	"c: the postmaster and all children (the job worker copying rows among them) killed"
diag "c: objects under the prefix right after the kill: $(objects "$REPO/backup_offline/$CFG/$C")"
gone $pids
as_pg "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null
ok $? "c: the cluster starts again"
after_crash "$C" "c (power loss while copying rows)"

# ---- d. nothing else was harmed; the schedule still works ---------------------
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_snapshot('$S1', 'restore')->>'valid'")" true \
	"S1 still verifies at level restore"
is "$(q "$DIR" "$PORT" postgres "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$S1'")" COMPLETED \
	"S1 is still COMPLETED"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.backup_snapshot WHERE status IN ('PENDING', 'IN_PROGRESS')")" 0 \
	"no snapshot is left PENDING or IN_PROGRESS"
# every snapshot directory holding objects belongs to a COMPLETED snapshot
with_objects=$(for d in "$REPO/backup_offline/$CFG"/*/; do
	[ "$(objects "$d")" -gt 0 ] && basename "$d"
done | sort | tr '\n' ' ')
completed=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_snapshot WHERE configuration_id = '$CFG' AND status = 'COMPLETED'" | sort | tr '\n' ' ')
is "$with_objects" "$completed" "the repository holds objects of COMPLETED snapshots only"

# interrupted jobs count as failures: three of them suspend the configuration
# (backup_offline.suspend_after_failures defaults to 3); reactivate it
is "$(q "$DIR" "$PORT" postgres "SELECT consecutive_failures || ' ' || status FROM backup_offline.backup_configuration WHERE id = '$CFG'")" \
	"3 SUSPENDED" "three interrupted backups count as consecutive failures and suspend the configuration"
q "$DIR" "$PORT" postgres "SELECT backup_offline.set_backup_configuration_status('$CFG', 'ACTIVE')" >/dev/null
q "$DIR" "$PORT" postgres "ALTER SYSTEM SET backup_offline.scheduler_interval = 1" >/dev/null
q "$DIR" "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
q "$DIR" "$PORT" postgres "UPDATE backup_offline.backup_configuration SET next_backup_at = now() - interval '1 minute' WHERE id = '$CFG'" >/dev/null
sched=""
for _ in $(seq 900); do
	sched=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_snapshot
		WHERE configuration_id = '$CFG' AND trigger = 'SCHEDULE' AND status = 'COMPLETED'")
	[ -n "$sched" ] && break
	sleep 0.1
done
ok $([ -n "$sched" ] && echo 0 || echo 1) "a scheduled backup (trigger SCHEDULE) completes"
is "$(q "$DIR" "$PORT" postgres "SELECT manifest->'totals'->>'rowCount' FROM backup_offline.backup_snapshot WHERE id = '${sched:-00000000-0000-0000-0000-000000000000}'")" \
	400000 "the scheduled backup holds every row"
is "$(q "$DIR" "$PORT" postgres "SELECT next_backup_at > now() FROM backup_offline.backup_configuration WHERE id = '$CFG'")" t \
	"next_backup_at moved into the future"
is "$(q "$DIR" "$PORT" postgres "SELECT consecutive_failures FROM backup_offline.backup_configuration WHERE id = '$CFG'")" 0 \
	"consecutive_failures is 0 after the scheduled success"
