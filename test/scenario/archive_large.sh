#!/usr/bin/env bash
# Archive round trips of 1 GiB of care-like data, with the backend's peak
# memory independent of the object's size.
#
# The data (test/bench/archive/care_data.sh: JSON lines of visit notes with
# varying numbers, so zstd compresses it as it would real records) is
# streamed through the writer and the reader by archive_put_file and
# archive_get_file (src/archive/bench.c), for two combinations:
#
#	A. zstd level 3, AES-256-GCM (XChaCha20-Poly1305 where the CPU lacks
#	   AES-NI and CLMUL), BLAKE3;
#	B. no compression, no cipher, SHA-256.
#
# Each combination writes and reads back a 64 MiB and a 1 GiB object, each
# size in a fresh session; the output must have the sha256sum of the input,
# the stored digest must be what b3sum / sha256sum print for the object
# file, and the session's peak resident memory (VmHWM of the backend, read
# from /proc/<pid>/status while the session is still open) for 1 GiB may
# exceed that for 64 MiB by at most $SLACK_MIB MiB: a check that memory
# does not grow with the size, not a timing threshold.  The figures are
# printed as TAP diagnostics.  Also: the file functions refuse paths
# outside allowed_paths and existing output files, and a damaged object
# leaves no partial output file; repeated reads leave no descriptor open.
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/archive_large
PORT=$((BO_TEST_PORT + 20))
B=$DIR/backups
IN=$B/in
OUT=$B/out
GEN=$(cd "$(dirname "$0")/../bench/archive" && pwd)/care_data.sh
SLACK_MIB=16
GIB=$((1024 * 1024 * 1024))
MIB64=$((64 * 1024 * 1024))
trap 'cluster_stop "$DIR"' EXIT
# it needs about 4 GB of disk for the data, the objects and the copies
free_kb=$(df -Pk "$BO_TEST_DIR" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
	echo "1..0 # SKIP needs 6 GB free in $BO_TEST_DIR, has $((free_kb / 1024)) MB"
	exit 0
fi
plan 26

cluster_start "$DIR" "$PORT"
ok $? "cluster started"
q "$DIR" "$PORT" postgres "CREATE EXTENSION backup_offline" >/dev/null
ok $? "extension created"
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/keys/large.key'"

# the inputs: 1 GiB of care-like data and its first 64 MiB
as_pg mkdir -p "$IN" "$OUT"
"$GEN" "$GIB" >"$IN/1g.json" && head -c "$MIB64" "$IN/1g.json" >"$IN/64m.json"
chmod 644 "$IN/1g.json" "$IN/64m.json"
is "$(stat -c %s "$IN/1g.json") $(stat -c %s "$IN/64m.json")" "$GIB $MIB64" "1 GiB and 64 MiB of care-like data generated"
sha_1g=$(sha256sum <"$IN/1g.json" | cut -d' ' -f1)
sha_64m=$(sha256sum <"$IN/64m.json" | cut -d' ' -f1)

if grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
	CIPHER=aes-256-gcm
else
	CIPHER=xchacha20-poly1305
fi
diag "combination A: zstd-3, $CIPHER, BLAKE3; combination B: none, none, SHA-256"
OPTS_A="{\"compression\": \"zstd\", \"level\": 3, \"cipher\": \"$CIPHER\", \"digest\": \"blake3\", \"keyId\": \"large\"}"
OPTS_B='{"compression": "none", "cipher": "none", "digest": "sha256"}'

st() { printf '{"type": "LOCAL_FILESYSTEM", "path": "%s/%s"}' "$B" "$1"; }

# round_trip REPO NAME INPUT OPTIONS: in one fresh session, put the input
# file as object NAME, get it back into $OUT/NAME, then print the put's
# result (one JSON line), the get's length, and the backend's VmHWM in kB.
round_trip() {
	cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BO_BACKEND_PID :pid
SELECT backup_offline.archive_put_file('$(st "$1")', '$2', '$3', '$4');
SELECT backup_offline.archive_get_file('$(st "$1")', '$2', '$OUT/$2');
\! sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/\$BO_BACKEND_PID/status
SQL
}

# json FIELD: a field of the put result in $res
json() { perl -MJSON::PP -e 'my $j = JSON::PP->new->decode($ARGV[0]); print $j->{$ARGV[1]} // ""' "$res" "$1"; }

# run_case LABEL REPO NAME INPUT OPTIONS: round trip; sets res, got_len,
# peak_kb, secs; checks the output's sha256sum
run_case() {
	local out t0 t1
	t0=$(date +%s%N)
	out=$(round_trip "$2" "$3" "$4" "$5" 2>&1)
	t1=$(date +%s%N)
	res=$(sed -n 1p <<<"$out")
	got_len=$(sed -n 2p <<<"$out")
	peak_kb=$(sed -n 3p <<<"$out")
	secs=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
	if [ -z "$peak_kb" ]; then
		diag "$out"
		peak_kb=0
	fi
	diag "$1: put + get in ${secs}s, stored $(json storedLength) bytes in $(json chunkCount) chunks, backend peak (VmHWM) $((peak_kb / 1024)) MiB"
}

# ---- A: zstd-3 + AEAD + BLAKE3 ---------------------------------------------
run_case "A 64 MiB" a a64 "$IN/64m.json" "$OPTS_A"
peak_a64=$peak_kb
is "$(sha256sum <"$OUT/a64" | cut -d' ' -f1)" "$sha_64m" "A 64 MiB: the plaintext read back has the input's sha256sum"

run_case "A 1 GiB" a a1g "$IN/1g.json" "$OPTS_A"
peak_a1g=$peak_kb
is "$(json plaintextLength) $(json chunkCount) $(json cipher) $got_len" "$GIB 1024 $CIPHER $GIB" \
	"A 1 GiB: 1024 chunks of 1 MiB written with $CIPHER, $GIB bytes read back"
is "$(sha256sum <"$OUT/a1g" | cut -d' ' -f1)" "$sha_1g" "A 1 GiB: the plaintext read back has the input's sha256sum"
rm -f "$OUT/a1g"
is "$(json storedDigest)" "$(b3sum --no-names "$B/a/a1g")" "A 1 GiB: the stored digest is b3sum of the object file"
[ "$(json storedLength)" -lt $((GIB / 4)) ]
ok $? "A 1 GiB: zstd-3 stores the care-like data in less than a quarter of its size"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.verify_object('$(st a)', 'a1g')->>'valid'")" true \
	"A 1 GiB: verify_object finds every chunk valid"
diag "A peak memory: 64 MiB object $((peak_a64 / 1024)) MiB, 1 GiB object $((peak_a1g / 1024)) MiB ($peak_a64 kB, $peak_a1g kB)"
[ "$peak_a64" -gt 0 ] && [ "$peak_a1g" -le $((peak_a64 + SLACK_MIB * 1024)) ]
ok $? "A: peak memory for 1 GiB is within $SLACK_MIB MiB of that for 64 MiB"

# ---- B: none + none + SHA-256 ----------------------------------------------
run_case "B 64 MiB" b b64 "$IN/64m.json" "$OPTS_B"
peak_b64=$peak_kb
is "$(sha256sum <"$OUT/b64" | cut -d' ' -f1)" "$sha_64m" "B 64 MiB: the plaintext read back has the input's sha256sum"

run_case "B 1 GiB" b b1g "$IN/1g.json" "$OPTS_B"
peak_b1g=$peak_kb
is "$(json plaintextLength) $(json chunkCount) $(json compression) $(json cipher) $got_len" "$GIB 1024 none none $GIB" \
	"B 1 GiB: 1024 chunks stored raw without a cipher, $GIB bytes read back"
is "$(json plaintextDigest)" "$sha_1g" "B 1 GiB: the plaintext digest is the input's sha256sum"
is "$(sha256sum <"$OUT/b1g" | cut -d' ' -f1)" "$sha_1g" "B 1 GiB: the plaintext read back has the input's sha256sum"
rm -f "$OUT/b1g"
is "$(json storedDigest)" "$(sha256sum <"$B/b/b1g" | cut -d' ' -f1)" "B 1 GiB: the stored digest is sha256sum of the object file"
diag "B peak memory: 64 MiB object $((peak_b64 / 1024)) MiB, 1 GiB object $((peak_b1g / 1024)) MiB ($peak_b64 kB, $peak_b1g kB)"
[ "$peak_b64" -gt 0 ] && [ "$peak_b1g" -le $((peak_b64 + SLACK_MIB * 1024)) ]
ok $? "B: peak memory for 1 GiB is within $SLACK_MIB MiB of that for 64 MiB"
rm -f "$B/b/b1g"

# ---- read descriptors ------------------------------------------------------
# fs.c keeps read descriptors open for the life of the destination's memory
# and the transaction: after reads in one session (inside a transaction
# block or out of one) the backend has no file under the repository open
fds=$(cluster_psql "$DIR" "$PORT" -d postgres -At <<SQL
SELECT pg_backend_pid() AS pid \gset
\setenv BO_BACKEND_PID :pid
SELECT backup_offline.verify_object('$(st a)', 'a64')->>'valid';
\! ls -l /proc/\$BO_BACKEND_PID/fd | grep -c -F '$B/'
SELECT count(*) FROM generate_series(1, 20) g, LATERAL backup_offline.verify_object('$(st a)', 'a64') v WHERE v->>'valid' = 'true';
BEGIN;
SELECT backup_offline.verify_object('$(st b)', 'b64')->>'valid';
SELECT backup_offline.verify_object('$(st a)', 'a64')->>'valid';
COMMIT;
\! ls -l /proc/\$BO_BACKEND_PID/fd | grep -c -F '$B/'
SQL
)
set -- $fds
diag "backend's open files under the repository: $2 after one verify_object, $6 after 22 more"
[ "$*" == "true 0 20 true true 0" ]
ok $? "repeated reads leave no descriptor open"

# ---- the file functions' edges ---------------------------------------------
# sql_error SQL: the first error line with its SQLSTATE
sql_error() {
	cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose -c "$1" 2>&1 >/dev/null | grep -m1 '^ERROR'
}
err=$(sql_error "SELECT backup_offline.archive_put_file('$(st a)', 'x', '/etc/passwd')")
[[ "$err" == "ERROR:  22023: invalid path: \"/etc/passwd\" is not under an allowed backup directory" ]]
ok $? "archive_put_file refuses an input outside allowed_paths (22023)"
err=$(sql_error "SELECT backup_offline.archive_get_file('$(st a)', 'a64', '/tmp/archive_large_out')")
[[ "$err" == "ERROR:  22023: invalid path: "* ]] && [ ! -e /tmp/archive_large_out ]
ok $? "archive_get_file refuses an output outside allowed_paths (22023) and writes nothing"
err=$(sql_error "SELECT backup_offline.archive_get_file('$(st a)', 'a64', '$OUT/a64')")
[[ "$err" == "ERROR:  58P02: could not create file \"$OUT/a64\": File exists" ]]
ok $? "archive_get_file never replaces an existing file (58P02)"
is "$(sha256sum <"$OUT/a64" | cut -d' ' -f1)" "$sha_64m" "the existing file is unchanged"
err=$(sql_error "SELECT backup_offline.archive_put_file('$(st a)', 'a64', '$IN/64m.json')")
[[ "$err" == "ERROR:  42710: archive object \"a64\" already exists" ]]
ok $? "archive_put_file refuses an existing object name (42710)"

# damage a copy of the 64 MiB object 5 MiB into its stored bytes (some 40
# MiB of plaintext in): the chunks before it are
# written to the output file before the reader fails
as_pg mkdir -p "$B/bad"
as_pg cp "$B/a/a64" "$B/a/a64.key.large" "$B/bad/"
printf '\xff' | dd of="$B/bad/a64" bs=1 seek=$((5 * 1024 * 1024)) conv=notrunc status=none
err=$(sql_error "SELECT backup_offline.archive_get_file('$(st bad)', 'a64', '$OUT/bad')")
diag "$err"
[[ "$err" == "ERROR:  XX001: object \"a64\" is corrupt at chunk "* ]]
ok $? "archive_get_file of a damaged object fails with XX001 naming the chunk"
[ ! -e "$OUT/bad" ]
ok $? "and leaves no partial output file"

# an ordinary role: not granted; and granted, refused by the superuser check
q "$DIR" "$PORT" postgres "CREATE ROLE bo_large_user LOGIN; GRANT USAGE ON SCHEMA backup_offline TO bo_large_user" >/dev/null
user_error() {
	cluster_psql "$DIR" "$PORT" -d postgres -U bo_large_user -v VERBOSITY=verbose -c "$1" 2>&1 >/dev/null | grep -m1 '^ERROR'
}
err=$(user_error "SELECT backup_offline.archive_get_file('$(st a)', 'a64', '$OUT/u')")
[[ "$err" == "ERROR:  42501: permission denied for function archive_get_file" ]]
ok $? "archive_get_file is not granted to ordinary roles (42501)"
q "$DIR" "$PORT" postgres "GRANT EXECUTE ON FUNCTION backup_offline.archive_put_file(jsonb, text, text, jsonb) TO bo_large_user" >/dev/null
err=$(user_error "SELECT backup_offline.archive_put_file('$(st a)', 'u', '$IN/64m.json')")
[[ "$err" == "ERROR:  42501: must be superuser to write archive objects from server files" ]]
ok $? "archive_put_file, even when granted, runs for superusers only (42501)"

rm -f "$IN/1g.json" "$B/a/a1g"
