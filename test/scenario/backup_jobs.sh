#!/usr/bin/env bash
# Backup jobs: consistency under concurrent writers, cancel, an interrupted
# waiting caller, progress, one run per configuration at a time, suspension
# after failures, and the backup window of scheduled runs.
#
#   a. consistency: pgbench keeps moving random amounts between a row of
#      accounts_a and a row of accounts_b, one transaction each (the sum over
#      both tables is constant); three FULL backups and an INCREMENTAL are
#      taken while it runs, the data changing between each two; every
#      snapshot, materialised, has the constant sum, and the four restored
#      states all differ;
#   b. cancel_backup of a job copying rows (a part object committed) returns
#      true; the snapshot ends CANCELLED and no file is left under its prefix
#      (objects nor temporary files) nor a row index; cancel_backup of a
#      finished snapshot returns false, of an unknown id fails with 42704;
#   c. run_backup with wait under statement_timeout = 300ms errors, and the
#      backup it started ends CANCELLED, nothing left under its prefix;
#   d. backup_progress, read twice while a job copies rows: its snapshot,
#      phase 'copying rows', bytes_total > 0, rows_done growing; run_backup
#      with wait prints NOTICEs naming the table while it copies (the waiter
#      looks once a second and whenever its latch is set: a NOTIFY to a
#      channel it listens on wakes it while the job is seen copying rows);
#   e. while one backup of a configuration is held PENDING by an open
#      writing transaction, a second run_backup of it fails with 55006;
#   f. with suspend_after_failures = 2 and a default key id whose key file
#      does not exist, two backups of an encrypting configuration fail
#      (FAILED, error with sqlstate and message, no objects left), the
#      configuration is SUSPENDED, a third run_backup is refused with 55000;
#      after the key setting is restored and the configuration reactivated,
#      a backup completes and consecutive_failures is 0;
#   g. a due configuration outside its backup window is skipped by the
#      scheduler (LOG line), starts no snapshot, and its next_backup_at moves
#      into the future;
#   h. schedule.maxDurationMinutes: a backup held PENDING by an open writing
#      transaction for longer than its one minute is stopped at the minute:
#      CANCELLED, saying why, counted as a failure of its configuration (this
#      case takes a minute).
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/backup_jobs
PORT=$((BO_TEST_PORT + 24))
REPO=$DIR/backups/repo
ORG=3e9a5c71-0b2d-4f68-a1c3-5d7e9f0a2b4c
TOTAL=2000000
NONE=00000000-0000-0000-0000-000000000000
bench=""
holder=""
cleanup() {
	[ -n "$bench" ] && kill "$bench" 2>/dev/null
	[ -n "$holder" ] && kill "$holder" 2>/dev/null
	cluster_stop "$DIR"
}
trap cleanup EXIT
plan 50

cluster_start "$DIR" "$PORT" "backup_offline.part_size = 4"
st=$?
ok $st "cluster started"
[ $st -eq 0 ] || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"

# daily schedules twelve hours away: the scheduler leaves these alone
H=$((10#$(date -u +%H)))
START=$(printf '%02d:00' $(( (H + 12) % 24 )))
config() { # config NAME ENTITIES: the configuration JSON
	printf '{"organizationId": "%s", "name": "%s", "scope": {"includeEntities": %s},
		"schedule": {"frequency": "DAILY", "startTime": "%s", "timezone": "UTC"},
		"retention": {"retentionDays": 30},
		"storageDestination": {"type": "LOCAL_FILESYSTEM", "path": "%s"}, "checksumAlgorithm": "BLAKE3"}' \
		"$ORG" "$1" "$2" "$START" "$REPO"
}
cluster_psql "$DIR" "$PORT" -d postgres >"$DIR/setup.out" 2>&1 <<SQL
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
CREATE EXTENSION backup_offline;
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
CREATE TABLE public.accounts_a (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE public.accounts_b (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO public.accounts_a SELECT g, 1000 FROM generate_series(1, 1000) g;
INSERT INTO public.accounts_b SELECT g, 1000 FROM generate_series(1, 1000) g;
CREATE TABLE public.hold (x int);
CREATE SCHEMA care;
CREATE TABLE care.big_visits (id bigint PRIMARY KEY, client_id uuid NOT NULL, note text NOT NULL);
-- 600,000 rows of about 300 bytes (two sha512 in hex: compressible 2x, not more)
INSERT INTO care.big_visits
	SELECT g, md5(g::text)::uuid, encode(sha512(int8send(g)), 'hex') || encode(sha512(int8send(-g)), 'hex')
	  FROM generate_series(1, 600000) g;
CHECKPOINT;
SELECT backup_offline.register_entity('ACCOUNT_A', 'public.accounts_a', '{"containsFinancial": true}');
SELECT backup_offline.register_entity('ACCOUNT_B', 'public.accounts_b', '{"containsFinancial": true}');
SELECT backup_offline.register_entity('BIG_VISIT', 'care.big_visits', '{"clientIdColumn": "client_id"}');
SELECT backup_offline.create_backup_configuration('$(config accounts '["ACCOUNT_A", "ACCOUNT_B"]')');
SELECT backup_offline.create_backup_configuration('$(config big '["BIG_VISIT"]')');
SELECT backup_offline.create_backup_configuration('$(config failing '["ACCOUNT_A"]')');
SQL
setup_rc=$?
# public.wait_for_job(snapshot, phase) (backup_lib.sh)
install_wait_for_job "$REPO" >>"$DIR/setup.out" 2>&1 || setup_rc=1
cfg() { Q "SELECT id FROM backup_offline.backup_configuration WHERE name = '$1'"; }
ACC=$(cfg accounts)
BIG=$(cfg big)
FAIL=$(cfg failing)
setup_ok=$([ $setup_rc -eq 0 ] && [ -n "$ACC" ] && [ -n "$BIG" ] && [ -n "$FAIL" ] && echo 0 || echo 1)
ok $setup_ok "tables, entities and configurations set up"
[ $setup_ok -eq 0 ] || { sed 's/^/# /' "$DIR/setup.out"; exit 1; }

# files DIR / objects DIR / temps DIR: all files, committed objects, the
# storage driver's temporary files in a directory (a snapshot's prefix)
files() { find "$1" -type f 2>/dev/null | wc -l; }
objects() { find "$1" -type f ! -name '.tmp.*' 2>/dev/null | wc -l; }
prefix() { echo "$REPO/backup_offline/$1/$2"; }

# final_status ID: the snapshot's status once it is no longer PENDING or
# IN_PROGRESS (polls at most 60 s)
final_status() {
	local s=""
	for _ in $(seq 600); do
		s=$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '$1'")
		case "$s" in
			PENDING | IN_PROGRESS) sleep 0.1 ;;
			*) break ;;
		esac
	done
	echo "$s"
}

# err SQL: "SQLSTATE message" of the error the statement raises, or nothing
err() {
	cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose -c "$1" 2>&1 >/dev/null |
		sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1 \2/p' | head -1
}

# set_conf NAME VALUE SHOWN: ALTER SYSTEM, reload, and wait (at most 10 s)
# until a new session shows SHOWN, so that new job workers have it
set_conf() {
	Q "ALTER SYSTEM SET $1 = '$2'" >/dev/null
	Q "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 100); do
		[ "$(Q "SHOW $1")" = "$3" ] && return 0
		sleep 0.1
	done
	diag "$1 did not become $3"
	return 1
}

# ---- a. consistency under concurrent transfers --------------------------------
cat >"$DIR/transfer.sql" <<'SQL'
\set a random(1, 1000)
\set b random(1, 1000)
\set amount random(-500, 500)
BEGIN;
UPDATE public.accounts_a SET balance = balance - :amount WHERE id = :a;
UPDATE public.accounts_b SET balance = balance + :amount WHERE id = :b;
END;
SQL
"$PGBIN/pgbench" -n -h "$DIR" -p "$PORT" -U postgres -c 2 -j 2 -T 300 -f "$DIR/transfer.sql" postgres \
	>"$DIR/bench.out" 2>&1 &
bench=$!
# state: a fingerprint of accounts_a; changed STATE: wait (at most 30 s)
# until the transfers have moved on from STATE
state() { Q "SELECT md5(string_agg(balance::text, ',' ORDER BY id)) FROM public.accounts_a"; }
changed() {
	for _ in $(seq 300); do
		[ "$(state)" != "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
moving=0
changed "$(state)" || moving=1
snaps=()
for type in FULL FULL INCREMENTAL FULL; do
	before=$(state)
	snaps+=("$(Q "SELECT backup_offline.run_backup('$ACC', '$type')" 2>>"$DIR/consistency.err")")
	changed "$before" || moving=1
done
kill "$bench"
wait "$bench" 2>/dev/null
bench=""
ok $moving "transfers committed before and between the four backups"
ids=$(printf "'%s'," "${snaps[@]}")
ids="${ids%,}"
is "$(Q "SELECT string_agg(backup_type || ' ' || status, ', ' ORDER BY created_at)
	FROM backup_offline.backup_snapshot WHERE id IN ($ids)")" \
	"FULL COMPLETED, FULL COMPLETED, INCREMENTAL COMPLETED, FULL COMPLETED" \
	"three FULL backups and an INCREMENTAL completed while the transfers ran"
is "$(Q "SELECT parent_snapshot_id FROM backup_offline.backup_snapshot WHERE id = '${snaps[2]:-$NONE}'")" "${snaps[1]}" \
	"the INCREMENTAL's parent is the FULL before it"
restored=()
for i in 0 1 2 3; do
	Q "SELECT backup_offline.materialize_snapshot('${snaps[$i]:-$NONE}', 'm$i')" >/dev/null 2>>"$DIR/consistency.err"
	is "$(Q "SELECT (SELECT sum(balance) FROM m$i.accounts_a) + (SELECT sum(balance) FROM m$i.accounts_b)" 2>/dev/null)" \
		"$TOTAL" "snapshot $((i + 1)) (${snaps[$i]:+$(Q "SELECT backup_type FROM backup_offline.backup_snapshot WHERE id = '${snaps[$i]}'")}) restores sum(a) + sum(b) = $TOTAL"
	restored+=("$(Q "SELECT md5(string_agg(balance::text, ',' ORDER BY id)) FROM m$i.accounts_a" 2>/dev/null)")
done
is "$(printf '%s\n' "${restored[@]}" | grep -c . | tr -d ' ')-$(printf '%s\n' "${restored[@]}" | grep . | sort -u | wc -l | tr -d ' ')" \
	"4-4" "the four snapshots hold four different states"
is "$(Q "SELECT (SELECT sum(balance) FROM public.accounts_a) + (SELECT sum(balance) FROM public.accounts_b)")" "$TOTAL" \
	"the live tables still sum to $TOTAL"
grep -v "^NOTICE" "$DIR/consistency.err" | sed "s/^/# /"

# ---- b. cancel_backup --------------------------------------------------------------
B=$(Q "SELECT backup_offline.run_backup('$BIG', 'FULL', false)")
wpid=$(Q "SELECT public.wait_for_job('${B:-$NONE}', 'copying rows')")
[ -n "$wpid" ] || diag "b: the job was not seen copying rows"
is "$(Q "SELECT backup_offline.cancel_backup('${B:-$NONE}')")" t "cancel_backup of a job copying rows returns true"
is "$(final_status "${B:-$NONE}")" CANCELLED "the cancelled snapshot ends CANCELLED"
reason=$(Q "SELECT status_reason FROM backup_offline.backup_snapshot WHERE id = '${B:-$NONE}'")
if [[ "$reason" == *"requested by postgres"* ]]; then ok 0 "its status_reason says who cancelled it"; else
	ok 1 "its status_reason says who cancelled it"; diag "status_reason: $reason"; fi
is "$(files "$(prefix "$BIG" "$B")")" 0 "no file (object or temporary) is left under its prefix"
ok $([ ! -e "$DIR/data/pg_backup_offline/$B" ] && echo 0 || echo 1) "no row index is left for it"
is "$(Q "SELECT backup_offline.cancel_backup('${snaps[0]:-$NONE}')")" f "cancel_backup of a finished snapshot returns false"
e=$(err "SELECT backup_offline.cancel_backup(gen_random_uuid())")
is "${e%% *}" 42704 "cancel_backup of an unknown snapshot fails with 42704 ($e)"

# ---- c. the interrupted waiting caller takes its backup with it -----------------
last=$(Q "SELECT coalesce(max(snapshot_number), '') FROM backup_offline.backup_snapshot")
out=$(cluster_psql "$DIR" "$PORT" -d postgres -c "SET statement_timeout = '300ms'" \
	-c "SELECT backup_offline.run_backup('$BIG', 'FULL')" 2>&1)
if [[ "$out" == *"canceling statement due to statement timeout"* ]]; then ok 0 "run_backup with wait errors at the statement timeout"; else
	ok 1 "run_backup with wait errors at the statement timeout"; diag "$out"; fi
C=$(Q "SELECT id FROM backup_offline.backup_snapshot WHERE configuration_id = '$BIG' AND snapshot_number > '$last'")
is "$(final_status "${C:-$NONE}")" CANCELLED "the interrupted caller's backup ends CANCELLED"
reason=$(Q "SELECT status_reason FROM backup_offline.backup_snapshot WHERE id = '${C:-$NONE}'")
if [[ "$reason" == *"waiting run_backup call was interrupted"* ]]; then ok 0 "its status_reason names the interrupted call"; else
	ok 1 "its status_reason names the interrupted call"; diag "status_reason: $reason"; fi
is "$(files "$(prefix "$BIG" "$C")")" 0 "no file is left under its prefix"

# ---- d. progress --------------------------------------------------------------------
D=$(Q "SELECT backup_offline.run_backup('$BIG', 'FULL', false)")
Q "SELECT public.wait_for_job('${D:-$NONE}', 'copying rows')" >/dev/null
read1=$(Q "SELECT snapshot_id || '|' || phase || '|' || current_table || '|' || rows_done || '|' || bytes_total
	FROM backup_offline.backup_progress WHERE snapshot_id = '${D:-$NONE}'")
IFS='|' read -r p_id p_phase p_table r1 p_total <<<"$read1"
is "$p_id|$p_phase|$p_table" "$D|copying rows|care.big_visits" "backup_progress shows the job's snapshot copying rows of care.big_visits"
ok $([ "${p_total:-0}" -gt 0 ] && echo 0 || echo 1) "bytes_total > 0 ($p_total)"
r2=""
for _ in $(seq 300); do
	r2=$(Q "SELECT rows_done FROM backup_offline.backup_progress WHERE snapshot_id = '${D:-$NONE}'")
	[ -z "$r2" ] || [ "$r2" -gt "${r1:-0}" ] && break
	sleep 0.01
done
ok $([ -n "$r2" ] && [ "$r2" -gt "${r1:-0}" ] && echo 0 || echo 1) "rows_done grows between two reads ($r1, then $r2)"
Q "SELECT backup_offline.cancel_backup('${D:-$NONE}')" >/dev/null
final_status "${D:-$NONE}" >/dev/null
# The waiting call looks at the job when its latch is set and once a
# second; a NOTIFY to the channel it listens on sets its latch while the job
# copies rows, so a report falls inside the copy however fast it is.
cluster_psql "$DIR" "$PORT" -d postgres -c "LISTEN nudge" -c "SELECT backup_offline.run_backup('$BIG', 'FULL')" \
	>/dev/null 2>"$DIR/notices.err" &
waiter=$!
W=""
for _ in $(seq 300); do
	W=$(Q "SELECT snapshot_id FROM backup_offline.backup_progress WHERE configuration_id = '$BIG'")
	[ -n "$W" ] && break
	sleep 0.05
done
Q "SELECT public.wait_for_job('${W:-$NONE}', 'copying rows')" >/dev/null
Q "NOTIFY nudge" >/dev/null
wait "$waiter"
notices=$(cat "$DIR/notices.err")
if grep -qE '^NOTICE:  backup BKP-[0-9]+: copying rows, table care\.big_visits \(1 of 1\), [0-9]+ rows, ' <<<"$notices"; then
	ok 0 "run_backup with wait reports progress in NOTICEs naming the table"
else ok 1 "run_backup with wait reports progress in NOTICEs naming the table"; diag "$notices"; fi
if grep -qE '^NOTICE:  backup BKP-[0-9]+ completed: FULL, 1 tables, 600000 rows, ' <<<"$notices"; then
	ok 0 "and a NOTICE when it completed"
else ok 1 "and a NOTICE when it completed"; diag "$notices"; fi

# ---- e. one configuration never runs twice at once ----------------------------
PGAPPNAME=holder cluster_psql "$DIR" "$PORT" -d postgres \
	-c "BEGIN; INSERT INTO public.hold VALUES (1); SELECT pg_sleep(120)" >"$DIR/holder.out" 2>&1 &
holder=$!
for _ in $(seq 300); do
	[ "$(Q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND backend_xid IS NOT NULL")" = 1 ] && break
	sleep 0.1
done
E=$(Q "SELECT backup_offline.run_backup('$ACC', 'FULL', false)")
ok $([ -n "$(Q "SELECT public.wait_for_job('${E:-$NONE}', 'waiting for writers')")" ] && echo 0 || echo 1) \
	"a backup is held PENDING by an open writing transaction"
e=$(err "SELECT backup_offline.run_backup('$ACC', 'FULL')")
is "${e%% *}" 55006 "a second run_backup of the configuration fails with 55006"
if [[ "$e" == *"is already running"* ]]; then ok 0 "saying the configuration is already running"; else
	ok 1 "saying the configuration is already running"; diag "got: $e"; fi
Q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'" >/dev/null
wait "$holder" 2>/dev/null
holder=""
is "$(final_status "${E:-$NONE}")" COMPLETED "the held backup completes once the writer is gone"

# ---- f. suspension after consecutive failures -----------------------------------
set_conf backup_offline.suspend_after_failures 2 2
set_conf backup_offline.default_key_id nokey nokey
last=$(Q "SELECT coalesce(max(snapshot_number), '') FROM backup_offline.backup_snapshot")
fails=0
for i in 1 2; do
	out=$(Q "SELECT backup_offline.run_backup('$FAIL')" 2>&1)
	if [[ "$out" =~ ERROR:\ \ backup\ BKP-[0-9]+\ failed: ]]; then fails=$((fails + 1)); else diag "run $i: $out"; fi
done
diag "failure: $(grep ERROR <<<"$out")"
is "$fails" 2 "two backups with a missing key file fail with an ERROR"
F=$(Q "SELECT string_agg(id::text, ' ') FROM backup_offline.backup_snapshot WHERE configuration_id = '$FAIL' AND snapshot_number > '$last'")
is "$(Q "SELECT count(*) FROM backup_offline.backup_snapshot WHERE configuration_id = '$FAIL' AND snapshot_number > '$last'
	AND status = 'FAILED' AND error->>'sqlstate' ~ '^[0-9A-Z]{5}$' AND error->>'message' <> ''")" 2 \
	"both snapshots are FAILED with an error carrying sqlstate and message"
left=0
for f in $F; do left=$((left + $(objects "$(prefix "$FAIL" "$f")"))); done
is "$left" 0 "the failed snapshots left no objects"
is "$(Q "SELECT status FROM backup_offline.backup_configuration WHERE id = '$FAIL'")" SUSPENDED \
	"the configuration is SUSPENDED after 2 consecutive failures"
reason=$(Q "SELECT status_reason FROM backup_offline.backup_configuration WHERE id = '$FAIL'")
ok $([ -n "$reason" ] && echo 0 || echo 1) "with a status_reason ($reason)"
is "$(Q "SELECT consecutive_failures FROM backup_offline.backup_configuration WHERE id = '$FAIL'")" 2 "consecutive_failures is 2"
e=$(err "SELECT backup_offline.run_backup('$FAIL')")
is "${e%% *}" 55000 "a third run_backup is refused with 55000"
if [[ "$e" == *"is SUSPENDED"* ]]; then ok 0 "saying the configuration is SUSPENDED"; else
	ok 1 "saying the configuration is SUSPENDED"; diag "got: $e"; fi
is "$(Q "SELECT count(*) FROM backup_offline.backup_snapshot WHERE configuration_id = '$FAIL' AND snapshot_number > '$last'")" 2 \
	"the refused run created no snapshot"
set_conf backup_offline.default_key_id k1 k1
Q "SELECT backup_offline.set_backup_configuration_status('$FAIL', 'ACTIVE')" >/dev/null
G=$(Q "SELECT backup_offline.run_backup('$FAIL')" 2>/dev/null)
is "$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '${G:-$NONE}'")" COMPLETED \
	"reactivated, with the key restored, a backup completes"
is "$(Q "SELECT consecutive_failures FROM backup_offline.backup_configuration WHERE id = '$FAIL'")" 0 "consecutive_failures is 0 again"

# ---- g. the backup window ---------------------------------------------------------
# a window two to three hours from now (UTC), so now is outside it
WIN_START=$(printf '%02d:00' $(( (H + 2) % 24 )))
WIN_END=$(printf '%02d:00' $(( (H + 3) % 24 )))
WIN=$(Q "SELECT backup_offline.create_backup_configuration('{\"organizationId\": \"$ORG\", \"name\": \"window\",
	\"scope\": {\"includeEntities\": [\"ACCOUNT_A\"]},
	\"schedule\": {\"frequency\": \"DAILY\", \"startTime\": \"$WIN_START\", \"endTime\": \"$WIN_END\", \"timezone\": \"UTC\"},
	\"retention\": {\"retentionDays\": 30},
	\"storageDestination\": {\"type\": \"LOCAL_FILESYSTEM\", \"path\": \"$REPO\"}}')")
is "$(Q "SELECT backup_offline.in_backup_window(schedule, timezone, now()) FROM backup_offline.backup_configuration WHERE id = '${WIN:-$NONE}'")" f \
	"now is outside the window $WIN_START-$WIN_END UTC"
logpos=$(($(stat -c %s "$DIR/server.log") + 1))
set_conf backup_offline.scheduler_interval 1 1s
Q "UPDATE backup_offline.backup_configuration SET next_backup_at = now() - interval '1 minute' WHERE id = '${WIN:-$NONE}'" >/dev/null
skipped=1
for _ in $(seq 300); do
	if tail -c +"$logpos" "$DIR/server.log" | grep -q 'skipped the backup of "window": outside its backup window' &&
		[ "$(Q "SELECT next_backup_at > now() FROM backup_offline.backup_configuration WHERE id = '${WIN:-$NONE}'")" = t ]; then
		skipped=0
		break
	fi
	sleep 0.1
done
ok $skipped "the scheduler logs that it skipped the run outside its backup window"
is "$(Q "SELECT next_backup_at > now() FROM backup_offline.backup_configuration WHERE id = '${WIN:-$NONE}'")" t \
	"next_backup_at moved into the future"
is "$(Q "SELECT count(*) FROM backup_offline.backup_snapshot WHERE configuration_id = '${WIN:-$NONE}'")" 0 \
	"no snapshot was started for it"

# ---- h. maxDurationMinutes ---------------------------------------------------------
SLOW=$(Q "SELECT backup_offline.create_backup_configuration(
	'$(config slow '["ACCOUNT_A"]')'::jsonb || '{\"schedule\": {\"frequency\": \"DAILY\", \"startTime\": \"$START\", \"timezone\": \"UTC\", \"maxDurationMinutes\": 1}}'::jsonb)")
PGAPPNAME=holder cluster_psql "$DIR" "$PORT" -d postgres \
	-c "BEGIN; INSERT INTO public.hold VALUES (2); SELECT pg_sleep(150)" >"$DIR/holder2.out" 2>&1 &
holder=$!
for _ in $(seq 300); do
	[ "$(Q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND backend_xid IS NOT NULL")" = 1 ] && break
	sleep 0.1
done
T=$(Q "SELECT backup_offline.run_backup('${SLOW:-$NONE}', 'FULL', false)")
st=""
for _ in $(seq 1200); do
	st=$(Q "SELECT status FROM backup_offline.backup_snapshot WHERE id = '${T:-$NONE}'")
	case "$st" in PENDING | IN_PROGRESS) sleep 0.1 ;; *) break ;; esac
done
writer_alive=$(Q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'holder' AND backend_xid IS NOT NULL")
Q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'holder'" >/dev/null
wait "$holder" 2>/dev/null
holder=""
is "$st" CANCELLED "a backup running past schedule.maxDurationMinutes is CANCELLED"
is "$(Q "SELECT status_reason LIKE '%maxDurationMinutes (1)%' FROM backup_offline.backup_snapshot WHERE id = '${T:-$NONE}'")" t \
	"its status_reason names schedule.maxDurationMinutes"
is "$writer_alive" 1 "it was stopped while the writer still held it, not after"
is "$(Q "SELECT consecutive_failures FROM backup_offline.backup_configuration WHERE id = '${SLOW:-$NONE}'")" 1 \
	"a backup that does not finish in time counts as a failure of its configuration"
