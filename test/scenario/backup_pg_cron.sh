#!/usr/bin/env bash
# pg_cron instead of the built-in scheduler: a cron job that calls
# run_backup (what the README's "Running backups" shows) takes a backup;
# pg_cron records the job run as succeeded, the snapshot is COMPLETED with
# trigger MANUAL, requested by the role that scheduled the job, and it
# verifies.  A second job whose configuration is PAUSED fails in pg_cron's
# run details with run_backup's error, and writes no snapshot.
#
# pg_cron 1.4 (Debian 12) schedules by the minute: this takes up to a
# minute and a half.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/backup_pg_cron
PORT=$((BO_TEST_PORT + 25))
ORG=3c9e1f20-7b6a-4d5c-8e9f-102132435465
trap 'cluster_stop "$DIR"' EXIT
plan 7

cluster_start "$DIR" "$PORT" \
	"shared_preload_libraries = 'backup_offline, pg_cron'" \
	"cron.database_name = 'postgres'" \
	"cron.use_background_workers = on"
st=$?
ok $st "cluster with backup_offline and pg_cron preloaded started"
[ $st -eq 0 ] || exit 1
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"

cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >"$DIR/setup.out" 2>&1 <<SQL
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
CREATE EXTENSION pg_cron;
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id bigint PRIMARY KEY, notes text);
INSERT INTO public.visits SELECT g, 'visit ' || g FROM generate_series(1, 1000) g;
SELECT backup_offline.register_entity('VISIT', 'public.visits', '{}');
INSERT INTO backup_offline.organization_member VALUES ('postgres', '$ORG');
SET backup_offline.organization_id = '$ORG';
SELECT backup_offline.create_backup_configuration(jsonb_build_object('name', name,
	'scope', '{"includeEntities": ["VISIT"]}'::jsonb,
	'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}'::jsonb,
	'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', '$DIR/backups/repo')))
  FROM (VALUES ('cron nightly'), ('cron paused')) v(name);
SELECT backup_offline.set_backup_configuration_status(id, 'PAUSED', 'test')
  FROM backup_offline.backup_configuration WHERE name = 'cron paused';
SELECT cron.schedule('visits backup', '* * * * *',
	format('SELECT backup_offline.run_backup(%L)', (SELECT id FROM backup_offline.backup_configuration WHERE name = 'cron nightly')));
SELECT cron.schedule('paused backup', '* * * * *',
	format('SELECT backup_offline.run_backup(%L)', (SELECT id FROM backup_offline.backup_configuration WHERE name = 'cron paused')));
SQL
ok $? "two cron jobs call run_backup every minute" || sed 's/^/# /' "$DIR/setup.out"

snap=""
for _ in $(seq 900); do
	snap=$(q "$DIR" "$PORT" postgres "SELECT id FROM backup_offline.backup_snapshot WHERE status = 'COMPLETED' LIMIT 1")
	[ -n "$snap" ] && break
	sleep 0.1
done
ok $([ -n "$snap" ] && echo 0 || echo 1) "within a minute and a half pg_cron's job took a backup"
snap=${snap:-00000000-0000-0000-0000-000000000000}
is "$(q "$DIR" "$PORT" postgres "SELECT trigger || ' ' || requested_by || ' ' || (manifest->'totals'->>'rowCount') FROM backup_offline.backup_snapshot WHERE id = '$snap'")" \
	"MANUAL postgres 1000" "the snapshot is a MANUAL run requested by the role that scheduled the job, with every row"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_snapshot('$snap', 'restore')->>'valid'")" true \
	"and it verifies at level restore"

# pg_cron's record of both jobs' runs
runs=""
for _ in $(seq 300); do
	runs=$(q "$DIR" "$PORT" postgres "SELECT string_agg(j.jobname || ':' || d.status, ',' ORDER BY j.jobname)
		FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE d.status IN ('succeeded', 'failed')")
	[[ "$runs" == *"paused backup:"* && "$runs" == *"visits backup:"* ]] && break
	sleep 0.1
done
[[ "$runs" == *"visits backup:succeeded"* ]]
ok $? "pg_cron records the backup job's run as succeeded" || diag "runs: $runs"
is "$(q "$DIR" "$PORT" postgres "SELECT d.status || ' ' || (d.return_message LIKE '%backup configuration \"cron paused\" is PAUSED%')::text
		|| ' ' || (SELECT count(*) FROM backup_offline.backup_snapshot s JOIN backup_offline.backup_configuration c
				   ON c.id = s.configuration_id WHERE c.name = 'cron paused')
	FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'paused backup' LIMIT 1")" \
	"failed true 0" "the paused configuration's job fails with run_backup's error, and writes no snapshot"
