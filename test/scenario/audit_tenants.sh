#!/usr/bin/env bash
# The audit chain does not couple organizations: an application transaction
# of organization A that changes a configuration and then stays open does not
# hold up organization B's audited changes, at READ COMMITTED or REPEATABLE
# READ.  Ids are still gapless and in commit order (B's later-written but
# earlier-committed change gets the smaller id); a prepared transaction's
# entries are chained at PREPARE and appear with COMMIT PREPARED.
#
# Session 1 runs in a background psql fed through a fifo; every wait is
# bounded, and B's sessions use lock_timeout, so a regression shows as a lock
# timeout error, never as a hang.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/audit_tenants
PORT=$((BO_TEST_PORT + 16))
ORG_A=aaaaaaaa-0000-4000-8000-00000000000a
ORG_B=bbbbbbbb-0000-4000-8000-00000000000b
SESSIONS=()

cleanup() {
	local name pid
	for name in "${SESSIONS[@]}"; do
		pid=$(cat "$DIR/$name.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
	done
	cluster_stop "$DIR"
}
trap cleanup EXIT
plan 17

# session_open NAME ROLE: psql as ROLE in the background, reading NAME.in
session_open() {
	local name=$1 role=$2 fd
	rm -f "$DIR/$name.in"
	mkfifo "$DIR/$name.in"
	(
		# other sessions' input must not stay open in this one
		for other in "${SESSIONS[@]}"; do
			var="fd_$other"
			eval "exec ${!var}>&-"
		done
		exec "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$role" -d postgres \
			<"$DIR/$name.in" >"$DIR/$name.out" 2>&1
	) &
	echo $! >"$DIR/$name.pid"
	exec {fd}>"$DIR/$name.in"
	printf -v "fd_$name" '%s' "$fd"
	SESSIONS+=("$name")
}

# session_send NAME SQL...: feed lines to the session
session_send() {
	local name=$1 var="fd_$1"
	shift
	printf '%s\n' "$@" >&"${!var}"
}

# session_wait NAME MARK: wait (at most 30 s) until the session printed MARK;
# fails at once if the session ended
session_wait() {
	local name=$1 mark=$2 pid
	pid=$(cat "$DIR/$name.pid")
	for _ in $(seq 300); do
		grep -qx "$mark" "$DIR/$name.out" && return 0
		kill -0 "$pid" 2>/dev/null || { grep -qx "$mark" "$DIR/$name.out"; return; }
		sleep 0.1
	done
	return 1
}

# session_close NAME: end the input, wait (at most 30 s) for psql to exit;
# returns its exit status
session_close() {
	local name=$1 var="fd_$1" pid
	pid=$(cat "$DIR/$name.pid")
	eval "exec ${!var}>&-"
	for _ in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid"; return; }
		sleep 0.1
	done
	return 1
}

# as_tenant ROLE SQL: one autocommit statement as ROLE that gives up after
# 5 s of waiting for a lock
as_tenant() {
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U "$1" -d postgres \
		-c "SET lock_timeout = '5s'" -c "$2" 2>&1
}

cluster_start "$DIR" "$PORT" "max_prepared_transactions = 2"
ok $? "cluster started"
# a background psql that died must fail its test, not kill the script
trap '' PIPE
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null <<SQL
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id uuid PRIMARY KEY, client_id uuid, visit_date date);
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{"clientIdColumn": "client_id"}');
CREATE ROLE tenant_a LOGIN IN ROLE backup_offline_app;
CREATE ROLE tenant_b LOGIN IN ROLE backup_offline_app;
INSERT INTO backup_offline.organization_member (role_name, organization_id)
VALUES ('tenant_a', '$ORG_A'), ('tenant_b', '$ORG_B');
SELECT backup_offline.create_backup_configuration(jsonb_build_object(
	'organizationId', org, 'name', 'nightly',
	'scope', '{"includeEntities": ["VISIT"]}'::jsonb,
	'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "America/Chicago"}'::jsonb,
	'storageDestination', '{"type": "AWS_S3", "bucket": "care-backups"}'::jsonb))
  FROM unnest(ARRAY['$ORG_A', '$ORG_B']) AS org;
SQL
ok $? "organizations A and B, each with a configuration and an application role"
CFG_A=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_configuration WHERE organization_id = '$ORG_A'")
CFG_B=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_configuration WHERE organization_id = '$ORG_B'")
BASE=$(q "$DIR" "$PORT" postgres "SELECT max(id) FROM backup_offline.audit_log")
desc_id="SELECT id FROM backup_offline.audit_log WHERE details->'changes'->'description'->>'new' ="

# session 1: A changes its configuration and stays idle in its transaction
session_open s1 tenant_a
session_send s1 "BEGIN;" \
	"SELECT backup_offline.update_backup_configuration('$CFG_A', '{\"description\": \"A, left open\"}') IS NULL;" \
	'\echo s1-changed'
session_wait s1 s1-changed
ok $? "session 1 (organization A) changed its configuration in an open transaction"
idle=1
for _ in $(seq 300); do
	[ "$(q "$DIR" "$PORT" postgres "SELECT state FROM pg_stat_activity WHERE usename = 'tenant_a'" 2>/dev/null)" == "idle in transaction" ] &&
		{ idle=0; break; }
	sleep 0.1
done
ok $idle "session 1 is idle in transaction"

# session 2: B changes its own configuration and commits
out=$(as_tenant tenant_b "SELECT backup_offline.update_backup_configuration('$CFG_B', '{\"description\": \"B, committed\"}')")
st=$?
ok $st "organization B's audited change commits while A's transaction is open (no lock wait)"
[ $st -eq 0 ] || diag "$out"
is "$(q "$DIR" "$PORT" postgres "$desc_id 'B, committed'")" "$((BASE + 1))" "B's entry is chained at its commit, next after the setup's"

# session 3: B at REPEATABLE READ takes its snapshot before A commits
session_open s3 tenant_b
session_send s3 "SET lock_timeout = '5s';" "BEGIN ISOLATION LEVEL REPEATABLE READ;" \
	"SELECT count(*) FROM backup_offline.backup_configuration;" '\echo s3-snapshot'
session_wait s3 s3-snapshot
ok $? "session 3 (organization B, REPEATABLE READ) has its snapshot"

session_send s1 "COMMIT;" '\echo s1-committed'
session_wait s1 s1-committed
ok $? "session 1 commits"
session_close s1
st=$?
ok $st "session 1 ends without error"
[ $st -eq 0 ] || sed 's/^/# s1: /' "$DIR/s1.out"

# the head moved after session 3's snapshot: its commit must not fail (40001)
session_send s3 "SELECT backup_offline.update_backup_configuration('$CFG_B', '{\"description\": \"B, repeatable read\"}') IS NULL;" \
	"COMMIT;" '\echo s3-committed'
session_wait s3 s3-committed
st=$?
session_close s3
ok $st "a REPEATABLE READ transaction whose snapshot predates A's commit commits its audited change"
[ $st -eq 0 ] || sed 's/^/# s3: /' "$DIR/s3.out"

# a prepared transaction: chained at PREPARE, visible with COMMIT PREPARED
as_tenant tenant_a "BEGIN;
SELECT backup_offline.update_backup_configuration('$CFG_A', '{\"description\": \"A, prepared\"}') IS NULL;
PREPARE TRANSACTION 'audit_a';" >/dev/null
ok $? "organization A prepares a transaction with an audited change"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM pg_prepared_xacts p
	JOIN pg_locks x ON x.locktype = 'transactionid' AND x.transactionid = p.transaction
	JOIN pg_locks l ON l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
	WHERE p.gid = 'audit_a' AND l.locktype = 'object' AND l.classid = 'pg_class'::regclass
	  AND l.objid = 'backup_offline.audit_chain_head'::regclass AND l.granted")" "1" \
	"the prepared transaction chained its entry at PREPARE and holds the chain until it ends"
q "$DIR" "$PORT" postgres "COMMIT PREPARED 'audit_a'" >/dev/null
is "$(q "$DIR" "$PORT" postgres "$desc_id 'A, prepared'")" "$((BASE + 4))" "COMMIT PREPARED makes its entry the next one"

# the chain: commit order, no gap, nothing left pending
is "$(q "$DIR" "$PORT" postgres "SELECT ($desc_id 'B, committed') < ($desc_id 'A, left open')
	AND ($desc_id 'A, left open') < ($desc_id 'B, repeatable read')")" "t" \
	"ids follow commit order: B's change, then A's, then B's repeatable read change"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) || ' ' || max(id) FROM backup_offline.audit_log")" "$((BASE + 4)) $((BASE + 4))" \
	"ids run from 1 to the last without a gap"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_audit_chain()->>'valid'")" "true" "the audit chain verifies"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.audit_pending")" "0" "no entry is left pending"
