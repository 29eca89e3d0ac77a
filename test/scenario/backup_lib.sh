# Helpers shared by the backup scenarios (backup_roundtrip, backup_chain,
# backup_crash, backup_jobs); sourced after tap.sh:
#
#   . "$(dirname "$0")/tap.sh"
#   . "$(dirname "$0")/backup_lib.sh"
#
# Like the scenarios' own helpers, they work on the caller's cluster: the
# variables DIR and PORT, read when a helper is called.
#
# test/run does not run *_lib.sh files as scenarios.

# Q SQL: one value from database postgres
Q() { q "$DIR" "$PORT" postgres "$1"; }

# diags TEXT: a diagnostic of any number of lines
diags() { printf '%s\n' "$*" | sed 's/^/# /'; }

# isd GOT WANT DESCRIPTION INFO: is, with INFO as a diagnostic when it fails
isd() {
	is "$1" "$2" "$3"
	[ "$1" == "$2" ] || diags "$4"
}

# wait_ready: until the server accepts connections (at most 30 s; after a
# crash it restarts on its own)
wait_ready() {
	for _ in $(seq 150); do
		Q "SELECT 1" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	return 1
}

# crash_mark; ...; no_crash_since: no server process died of a signal
# (server.log) since the mark; after a crash, waits (at most 30 s) until the
# server accepts connections again, so that later checks still run
crash_mark() { MARK=$(wc -l <"$DIR/server.log"); }
no_crash_since() {
	local crashed
	crashed=$(tail -n +"$((MARK + 1))" "$DIR/server.log" | grep -E 'terminated by signal|terminated by exception')
	if [ -n "$crashed" ]; then
		diags "$crashed"
		wait_ready
		return 1
	fi
	return 0
}

# install_wait_for_job REPO [row-index]: creates in database postgres the
# SQL function public.wait_for_job(snapshot, phase): the pid of the job
# worker once the job of the snapshot is in that phase, with the snapshot
# PENDING ("waiting for writers") or IN_PROGRESS with at least one committed
# object under its prefix in the repository REPO (the configuration's
# storageDestination path) ("copying rows"), and with row-index also its
# row index directory $PGDATA/pg_backup_offline/<snapshot> present; NULL
# after 60 s.  Polls in one session, so the caller can act at once.
# psql's output and errors go to stdout and stderr; fails if psql does.
install_wait_for_job() {
	local repo=$1 row_index=""
	case "${2:-}" in
		"") ;;
		row-index) row_index="
		   AND (pg_stat_file('pg_backup_offline/' || sid, true)).isdir" ;;
		*) echo "install_wait_for_job: unknown option '$2'" >&2; return 1 ;;
	esac
	cluster_psql "$DIR" "$PORT" -d postgres <<SQL
CREATE FUNCTION public.wait_for_job(sid uuid, want text) RETURNS integer
LANGUAGE plpgsql AS \$\$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 s';
	p record;
BEGIN
	LOOP
		SELECT * INTO p FROM backup_offline.backup_progress WHERE snapshot_id = sid AND phase = want;
		IF FOUND AND (SELECT status FROM backup_offline.backup_snapshot WHERE id = sid) = 'PENDING'
		   AND want = 'waiting for writers' THEN
			RETURN p.pid;
		END IF;
		IF FOUND AND (SELECT status FROM backup_offline.backup_snapshot WHERE id = sid) = 'IN_PROGRESS'
		   AND want = 'copying rows'
		   AND EXISTS (SELECT 1 FROM pg_ls_dir(format('%s/backup_offline/%s/%s', '$repo', p.configuration_id, sid), true, false) f
						WHERE f NOT LIKE '.tmp.%')$row_index THEN
			RETURN p.pid;
		END IF;
		EXIT WHEN clock_timestamp() > deadline;
		PERFORM pg_sleep(0.005);
	END LOOP;
	RETURN NULL;
END
\$\$;
SQL
}
