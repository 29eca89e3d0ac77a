#!/usr/bin/env bash
# Organizations and scope filters in backups.  One shared visits table holds
# the rows of two organizations; the entity type names its organization
# column, so each organization's backup holds its own rows only (counted in
# the manifest, seen in a materialised copy).  A configuration filtered by
# clientIds and a date range holds exactly the matching rows, also after an
# INCREMENTAL.  When an administrator changes the registry's filter columns,
# the next INCREMENTAL copies the table whole and says why.  rows_digest
# refuses a role that row-level security restricts on the table.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/backup_tenants
PORT=$((BO_TEST_PORT + 26))
ORG_A=aaaaaaaa-1111-4111-8111-111111111111
ORG_B=bbbbbbbb-2222-4222-8222-222222222222
C1=c1c1c1c1-0000-4000-8000-000000000001
C2=c2c2c2c2-0000-4000-8000-000000000002
trap 'cluster_stop "$DIR"' EXIT
plan 11

Q() { q "$DIR" "$PORT" postgres "$1"; }

cluster_start "$DIR" "$PORT"
ok $? "cluster started"
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/k1.key'"
cluster_psql "$DIR" "$PORT" -d postgres -v ON_ERROR_STOP=1 >"$DIR/setup.out" 2>&1 <<SQL
ALTER SYSTEM SET backup_offline.default_key_id = 'k1';
SELECT pg_reload_conf();
CREATE EXTENSION backup_offline;
CREATE TABLE public.visits (id bigint PRIMARY KEY, organization_id uuid NOT NULL, client_id uuid,
	other_client uuid, visit_date date, notes text);
-- 600 rows of organization A (clients C1 and C2, 60 days), 400 of B
INSERT INTO public.visits
SELECT g, CASE WHEN g <= 600 THEN '$ORG_A'::uuid ELSE '$ORG_B'::uuid END,
	   CASE WHEN g % 2 = 0 THEN '$C1'::uuid ELSE '$C2'::uuid END,
	   CASE WHEN g % 3 = 0 THEN '$C1'::uuid ELSE '$C2'::uuid END,
	   DATE '2026-01-01' + g % 60, 'visit ' || g
  FROM generate_series(1, 1000) g;
SELECT backup_offline.register_entity('VISIT', 'public.visits',
	'{"organizationColumn": "organization_id", "clientIdColumn": "client_id", "dateColumn": "visit_date"}');
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
CREATE FUNCTION pg_temp.cfg(org uuid, name text, scope jsonb) RETURNS uuid LANGUAGE sql AS \$\$
	SELECT backup_offline.create_backup_configuration(jsonb_build_object('organizationId', org, 'name', name,
		'scope', scope, 'schedule', '{"frequency": "DAILY", "startTime": "02:00", "timezone": "UTC"}'::jsonb,
		'storageDestination', jsonb_build_object('type', 'LOCAL_FILESYSTEM', 'path', '$DIR/backups/repo')))
\$\$;
SELECT pg_temp.cfg('$ORG_A', 'a all', '{"includeEntities": ["VISIT"]}');
SELECT pg_temp.cfg('$ORG_B', 'b all', '{"includeEntities": ["VISIT"]}');
SELECT pg_temp.cfg('$ORG_A', 'a c1 january', '{"includeEntities": ["VISIT"], "clientIds": ["$C1"],
	"dateRange": {"startDate": "2026-01-10", "endDate": "2026-01-31"}}');
SQL
ok $? "a visits table shared by two organizations, registered with its organization column" || sed 's/^/# /' "$DIR/setup.out"
cfg() { Q "SELECT id FROM backup_offline.backup_configuration WHERE name = '$1'"; }
A=$(cfg 'a all')
B=$(cfg 'b all')
F=$(cfg 'a c1 january')
rows() { Q "SELECT manifest->'totals'->>'rowCount' FROM backup_offline.backup_snapshot WHERE id = '$1'"; }

SA=$(Q "SELECT backup_offline.run_backup('$A', 'FULL')" 2>/dev/null)
SB=$(Q "SELECT backup_offline.run_backup('$B', 'FULL')" 2>/dev/null)
is "$(rows "${SA:-00000000-0000-0000-0000-000000000000}") $(rows "${SB:-00000000-0000-0000-0000-000000000000}")" "600 400" \
	"each organization's backup holds its own rows only"
Q "SELECT backup_offline.materialize_snapshot('${SA:-00000000-0000-0000-0000-000000000000}', 'as_a')" >/dev/null 2>&1
is "$(Q "SELECT count(*) FILTER (WHERE organization_id <> '$ORG_A') || ' ' || count(*) FROM as_a.visits")" "0 600" \
	"organization A's materialised copy has no row of B"

# clientIds and an inclusive date range: C1's visits from Jan 10 to Jan 31
want=$(Q "SELECT count(*) FROM public.visits WHERE organization_id = '$ORG_A' AND client_id = '$C1'
	AND visit_date BETWEEN '2026-01-10' AND '2026-01-31'")
SF=$(Q "SELECT backup_offline.run_backup('$F', 'FULL')" 2>/dev/null)
is "$(rows "${SF:-00000000-0000-0000-0000-000000000000}")" "$want" \
	"the clientIds and dateRange filters keep exactly the matching rows ($want)"
# a row moves into the filter, one moves out, one inside changes
Q "UPDATE public.visits SET visit_date = '2026-01-15' WHERE id = 2" >/dev/null          # C1, into the range
Q "UPDATE public.visits SET client_id = '$C2' WHERE id = 20" >/dev/null                  # C1 -> C2, out
Q "UPDATE public.visits SET notes = 'changed' WHERE id = 22" >/dev/null                  # stays in
want=$(Q "SELECT count(*) FROM public.visits WHERE organization_id = '$ORG_A' AND client_id = '$C1'
	AND visit_date BETWEEN '2026-01-10' AND '2026-01-31'")
SI=$(Q "SELECT backup_offline.run_backup('$F', 'INCREMENTAL')" 2>/dev/null)
is "$(rows "${SI:-00000000-0000-0000-0000-000000000000}")" "$want" \
	"after rows move in and out of the filter, the INCREMENTAL's table holds exactly the matching rows"
Q "SELECT backup_offline.materialize_snapshot('${SI:-00000000-0000-0000-0000-000000000000}', 'as_f')" >/dev/null 2>&1
is "$(Q "SELECT md5(string_agg(v::text, '|' ORDER BY id)) FROM as_f.visits v")" \
	"$(Q "SELECT md5(string_agg(v::text, '|' ORDER BY id)) FROM public.visits v WHERE organization_id = '$ORG_A'
		AND client_id = '$C1' AND visit_date BETWEEN '2026-01-10' AND '2026-01-31'")" \
	"and the chain materialises to exactly those rows"

# the administrator filters by another client column: the next incremental copies whole
Q "UPDATE backup_offline.entity_registry SET client_id_column = 'other_client' WHERE entity_type = 'VISIT'" >/dev/null
SJ=$(Q "SELECT backup_offline.run_backup('$F', 'INCREMENTAL')" 2>/dev/null)
is "$(Q "SELECT t->>'change' || ': ' || (t->>'changeReason') FROM backup_offline.backup_snapshot s,
	jsonb_array_elements(s.manifest->'tables') t WHERE s.id = '${SJ:-00000000-0000-0000-0000-000000000000}'")" \
	"whole: the entity registry's filter columns for the table changed since the parent" \
	"a change of the registry's filter columns makes the next INCREMENTAL copy the table whole, saying why"
want=$(Q "SELECT count(*) FROM public.visits WHERE organization_id = '$ORG_A' AND other_client = '$C1'
	AND visit_date BETWEEN '2026-01-10' AND '2026-01-31'")
is "$(rows "${SJ:-00000000-0000-0000-0000-000000000000}")" "$want" "with the new column's rows"
is "$(Q "SELECT backup_offline.verify_snapshot('${SJ:-00000000-0000-0000-0000-000000000000}', 'restore')->>'valid'")" true \
	"and it verifies"

# rows_digest and row-level security
cluster_psql "$DIR" "$PORT" -d postgres >/dev/null 2>&1 <<SQL
CREATE ROLE t_reader;
GRANT USAGE ON SCHEMA backup_offline TO t_reader;
GRANT EXECUTE ON FUNCTION backup_offline.rows_digest(regclass) TO t_reader;
GRANT SELECT ON public.visits TO t_reader;
ALTER TABLE public.visits ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON public.visits FOR SELECT TO t_reader USING (organization_id = '$ORG_A');
SQL
out=$(cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose -c "SET ROLE t_reader" \
	-c "SELECT backup_offline.rows_digest('public.visits')" 2>&1)
[[ "$out" == *"ERROR:  42501: rows_digest cannot read table visits: row-level security applies to this role"* ]]
ok $? "rows_digest refuses a role that row-level security restricts on the table" || diag "$out"
