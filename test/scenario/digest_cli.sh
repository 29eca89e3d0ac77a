#!/usr/bin/env bash
# Scenario: backup_offline.digest() on large inputs equals what the command
# line tools print (b3sum, sha256sum, sha512sum) for the same file, unknown
# algorithms are refused with SQLSTATE 22023 and a hint, and an ERROR while
# a SHA context is open (a cancel inside digest(), rolled back to a
# savepoint) neither crashes the backend (double free) nor leaks.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/digest_cli
PORT=$((BO_TEST_PORT + 17))
trap 'cluster_stop "$DIR"' EXIT

plan 13

cluster_start "$DIR" "$PORT" || { echo "Bail out! cluster did not start"; exit 1; }
sql() { q "$DIR" "$PORT" postgres "$1"; }
sql "CREATE EXTENSION backup_offline" >/dev/null

# two files of pseudo-random bytes: exactly 8 MiB, and 8 MiB + 12345 bytes
# (not a multiple of the 1 MiB slices nor of BLAKE3's 1 KiB chunks)
for size in 8388608 8401953; do
	f=$DIR/random_$size.bin
	head -c "$size" /dev/urandom >"$f"
	chmod 644 "$f"
	for alg in BLAKE3 SHA256 SHA512; do
		case $alg in
			BLAKE3) want=$(b3sum --no-names "$f") ;;
			SHA256) want=$(sha256sum "$f" | cut -d' ' -f1) ;;
			SHA512) want=$(sha512sum "$f" | cut -d' ' -f1) ;;
		esac
		got=$(sql "SELECT encode(backup_offline.digest(pg_read_binary_file('$f'), '$alg'), 'hex')")
		is "$got" "$want" "$alg of $size random bytes equals the command line tool"
	done
done

# unknown algorithm: message, SQLSTATE and hint as psql shows them
err=$(cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose \
	-c "SELECT backup_offline.digest('abc', 'md5')" 2>&1)
echo "$err" | grep -q 'ERROR:  22023: unknown digest algorithm "md5"'
ok $? "md5 is refused with 22023"
echo "$err" | grep -q 'HINT:  Use one of SHA256, SHA512, BLAKE3.'
ok $? "the hint lists SHA256, SHA512, BLAKE3"

# Cancel inside digest(): pg_cancel_backend() on the own backend is
# evaluated first in the target list; the next CHECK_FOR_INTERRUPTS() is in
# digest()'s feeding loop, after the SHA context was created (the input is a
# small inline value, so no TOAST fetch runs in between).  The savepoint
# rollback releases the context through the memory-context callback (the
# executor's memory goes first) and must not free it a second time through
# the resource owner.
sql "CREATE TABLE cancel_input AS SELECT repeat('care data ', 20)::bytea AS b" >/dev/null
{
	echo "SELECT pg_backend_pid() AS pid_before \\gset"
	echo "BEGIN;"
	for i in 1 2 3; do
		for alg in SHA256 SHA512 BLAKE3; do
			echo "SAVEPOINT s;"
			echo "SELECT pg_cancel_backend(pg_backend_pid()), backup_offline.digest(b, '$alg') FROM cancel_input;"
			echo "ROLLBACK TO SAVEPOINT s;"
		done
	done
	echo "SELECT 'digest ' || encode(backup_offline.digest(b, 'SHA256'), 'hex') FROM cancel_input;"
	echo "SELECT 'same backend ' || (pg_backend_pid() = :pid_before) ;"
	echo "COMMIT;"
} >"$DIR/cancel.sql"
cluster_psql "$DIR" "$PORT" -d postgres -At -v ON_ERROR_STOP=0 -f "$DIR/cancel.sql" >"$DIR/cancel.out" 2>&1
n_cancel=$(grep -c 'canceling statement due to user request' "$DIR/cancel.out")
is "$n_cancel" 9 "nine digest() calls canceled inside savepoints"
want=$(sql "SELECT encode(sha256(b), 'hex') FROM cancel_input")
grep -qx "digest $want" "$DIR/cancel.out"
ok $? "digest() works in the same transaction after the canceled calls"
grep -qx "same backend true" "$DIR/cancel.out"
ok $? "the backend survived (no double free)"
! grep -q 'WARNING' "$DIR/cancel.out"
ok $? "no WARNING (no cryptohash context leaked at commit)"
! grep -qE 'terminated by signal|double free|still referenced|server process .* was terminated' "$DIR/server.log"
ok $? "server log shows no crash and no leaked cryptohash context"

exit $((TAP_FAILED > 0))
