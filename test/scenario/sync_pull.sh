#!/usr/bin/env bash
# Pull cursors under concurrent writers (pull_changes, sync_sequence;
# src/catalog/90_sync.sql): a cursor never passes a change that commits
# later.
#
# Proven:
#   * while a transaction that wrote a row is open, a pull returns the rows
#     other transactions committed after it wrote (the cursor moves past
#     them), and once it commits, the next pull from that cursor returns its
#     row: the cursor never passed it;
#   * a rolled-back transaction's rows never appear;
#   * four writers commit 400 rows in transactions of random length while a
#     device pulls in pages of 25 with the cursors it is given: once the
#     writers are done and the device has caught up, it has seen every row
#     exactly once (count and the ids), and nothing else.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/backup_lib.sh"

DIR=$BO_TEST_DIR/sync_pull
PORT=$((BO_TEST_PORT + 31))
trap 'jobs -p | xargs -r kill 2>/dev/null; cluster_stop "$DIR"' EXIT
plan 7

psqlq() { cluster_psql "$DIR" "$PORT" -d postgres -At -q "$@"; }

cluster_start "$DIR" "$PORT" || exit 1
psqlq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || exit 1
CREATE EXTENSION backup_offline;
INSERT INTO backup_offline.organization_member VALUES ('postgres', NULL);
CREATE TABLE public.t (id text PRIMARY KEY, writer int, v int);
SELECT backup_offline.register_sync_entity('ITEM', 'public.t', '{}');
-- the device's state: its cursor and what it has seen
CREATE TABLE public.cur (cur bigint NOT NULL);
INSERT INTO public.cur VALUES (0);
CREATE TABLE public.seen (id text, seq bigint, deleted boolean);
SQL
# one pull of 25 from the device's cursor; what it got is kept, the cursor advanced
PULL="WITH p AS (SELECT backup_offline.pull_changes('device-1', (SELECT cur FROM public.cur), 25) r),
	s AS (INSERT INTO public.seen SELECT c->>'id', (c->>'seq')::bigint, (c->>'deleted')::boolean
			FROM p, jsonb_array_elements(p.r->'changes') c)
	UPDATE public.cur SET cur = (SELECT (r->>'nextCursor')::bigint FROM p) RETURNING (SELECT r->>'hasMore' FROM p);"

# ---- an open writer holds the cursor back ---------------------------------------
mkfifo "$DIR/a.in"
cluster_psql "$DIR" "$PORT" -d postgres -At -q <"$DIR/a.in" >"$DIR/a.out" 2>&1 &
exec 7>"$DIR/a.in"
echo "BEGIN; INSERT INTO public.t VALUES ('a1', 0, 1); SELECT 'a1 written';" >&7
for _ in $(seq 100); do grep -q 'a1 written' "$DIR/a.out" && break; sleep 0.1; done
psqlq -c "INSERT INTO public.t VALUES ('b1', 0, 1)"
psqlq -c "BEGIN" -c "INSERT INTO public.t VALUES ('c1', 0, 1)" -c "ROLLBACK"
psqlq -c "$PULL" >/dev/null
is "$(psqlq -c "SELECT string_agg(id, ' ' ORDER BY seq) FROM public.seen")" "b1" \
	"while a1's transaction is open, b1 (written after a1, committed) is pulled, a1 is not"
echo "COMMIT; SELECT 'a1 committed';" >&7
for _ in $(seq 100); do grep -q 'a1 committed' "$DIR/a.out" && break; sleep 0.1; done
exec 7>&-
psqlq -c "$PULL" >/dev/null
is "$(psqlq -c "SELECT string_agg(id, ' ' ORDER BY seq) FROM public.seen")" "b1 a1" \
	"once a1 commits, the cursor b1 gave brings a1: it was not passed"
is "$(psqlq -c "SELECT count(*) FROM backup_offline.sync_row WHERE row_key = 'c1'")" "0" "a rolled-back insert leaves no trace"
psqlq -c "TRUNCATE public.seen" -c "UPDATE public.cur SET cur = (SELECT max(change_seq) FROM backup_offline.sync_row)"

# ---- four writers, one device ----------------------------------------------------
for w in 1 2 3 4; do
	(
		for i in $(seq 100); do
			echo "BEGIN; INSERT INTO public.t VALUES ('w$w-$i', $w, $i); SELECT pg_sleep(random() * 0.03); COMMIT;"
		done | cluster_psql "$DIR" "$PORT" -d postgres -At -q >/dev/null 2>"$DIR/w$w.err"
	) &
	WRITERS[$w]=$!
done
(
	while kill -0 "${WRITERS[1]}" 2>/dev/null || kill -0 "${WRITERS[2]}" 2>/dev/null ||
		kill -0 "${WRITERS[3]}" 2>/dev/null || kill -0 "${WRITERS[4]}" 2>/dev/null; do
		psqlq -c "$PULL" >/dev/null 2>>"$DIR/puller.err"
		echo >>"$DIR/pulls"
	done
) &
PULLER=$!
wait "${WRITERS[@]}"
wait "$PULLER"
diag "pulls made while the writers wrote: $(wc -l <"$DIR/pulls")"
# catch up
for _ in $(seq 50); do
	[ "$(psqlq -c "$PULL")" = "false" ] && break
done
is "$(cat "$DIR"/w*.err "$DIR/puller.err")" "" "writers and puller ran without errors"
is "$(psqlq -c "SELECT count(*) FROM public.t WHERE writer > 0")" "400" "the four writers committed 400 rows"
is "$(psqlq -c "SELECT count(*) || ' ' || count(DISTINCT id) FROM public.seen")" "400 400" \
	"the device saw 400 changes, each row once"
is "$(psqlq -c "SELECT count(*) FROM public.t t WHERE t.writer > 0 AND NOT EXISTS (SELECT 1 FROM public.seen s WHERE s.id = t.id)")
$(psqlq -c "SELECT count(*) FROM public.seen s WHERE NOT EXISTS (SELECT 1 FROM public.t t WHERE t.id = s.id AND t.writer > 0)")" "0
0" "no committed row was missed, and nothing else was seen"
