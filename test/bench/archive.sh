#!/usr/bin/env bash
# Benchmark: MB/s of the whole archive pipeline (chunking, zstd level 3,
# AES-256-GCM, BLAKE3, storage on local disk with fsync) on about 1 GB of
# care-like data, next to the zstd command alone on the same bytes.
#
#   1. `zstd -3` alone (one thread, to /dev/null) and `zstd -3 -T2`;
#   2. archive_put_file (src/archive/bench.c: the file is streamed through
#      the writer in 1 MiB pieces) with backup_offline.compression_workers
#      = 0 and = 2, for chunk sizes of 1 MiB (the default), 4 MiB and
#      16 MiB; and once without a cipher, to show what encryption costs;
#   3. zstd alone with the writer's chunking (archive/zstd_chunks.c: one
#      ZSTD_compress2 call per chunk, in memory): zstd's worker threads at
#      each chunk size, a job size of 512 KiB (zstd's minimum), and two
#      threads compressing different chunks (what the writer's worker
#      threads do, with compression_workers > 0);
#   4. the read path at 1 MiB chunks: verify_object (read, check, decrypt,
#      decompress, discard) and archive_get_file (the same, written to a
#      file), next to `zstd -d` of the zstd command's own output.
#
# Ratios are against the goals of issue 3: the pipeline at least 0.9x zstd
# alone (one thread), and at least 1.6x with two compression workers.  Not
# a test: it prints figures, best of 3 runs, no thresholds.
# (XChaCha20-Poly1305 replaces AES-256-GCM where the CPU lacks AES-NI and
# CLMUL; the cipher used is printed.)
#
#   test/bench/archive.sh [MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/../.."
MIB=${1:-1024}
scripts/setup >/dev/null
. scripts/cluster.sh

DIR=$(mktemp -d /tmp/backup_offline_bench.XXXXXX)
chmod 755 "$DIR"
PORT=${BO_BENCH_PORT:-55492}
trap 'cluster_stop "$DIR/c"; rm -rf "$DIR"' EXIT
cluster_start "$DIR/c" "$PORT" >/dev/null
cluster_psql "$DIR/c" "$PORT" -d postgres -c "CREATE EXTENSION backup_offline" >/dev/null
as_pg sh -c "umask 077; head -c 32 /dev/urandom > '$DIR/c/keys/bench.key'"

B=$DIR/c/backups
as_pg mkdir -p "$B/in" "$B/out"
DATA=$B/in/care.json
BYTES=$((MIB * 1024 * 1024))
test/bench/archive/care_data.sh "$BYTES" >"$DATA"
chmod 644 "$DATA"
STORE="{\"type\": \"LOCAL_FILESYSTEM\", \"path\": \"$B/repo\"}"

if grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then
	CIPHER=aes-256-gcm
else
	CIPHER=xchacha20-poly1305
fi

echo "archive pipeline throughput, $MIB MiB of care-like data, best of 3 (MB/s = 10^6 plaintext bytes/s)"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores"
echo "zstd: $(zstd --version | head -1); cipher: $CIPHER"
echo

# mbps NANOSECONDS: MB/s of the data in that time
mbps() { awk -v b="$BYTES" -v ns="$1" 'BEGIN { printf "%.0f", b / (ns / 1e9) / 1e6 }'; }
# ratio A B: A / B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# best_ns COMMAND...: the shortest of 3 runs, in nanoseconds
best_ns() {
	local best="" t0 t1 el
	for _ in 1 2 3; do
		t0=$(date +%s%N)
		"$@" >/dev/null
		t1=$(date +%s%N)
		el=$((t1 - t0))
		if [ -z "$best" ] || [ "$el" -lt "$best" ]; then best=$el; fi
	done
	echo "$best"
}

zstd_t1() { zstd -3 -T1 -q -c "$DATA" >/dev/null; }
zstd_t2() { zstd -3 -T2 -q -c "$DATA" >/dev/null; }
ZSTD1=$(mbps "$(best_ns zstd_t1)")
ZSTD2=$(mbps "$(best_ns zstd_t2)")
zstd -3 -T1 -q -c "$DATA" >"$DIR/care.json.zst"
zstd_d() { zstd -d -q -c "$DIR/care.json.zst" >/dev/null; }
UNZSTD=$(mbps "$(best_ns zstd_d)")

# put WORKERS CHUNK-BYTES CIPHER: one archive_put_file of the data, the
# object deleted again afterwards; prints the stored length
RUN=0
put() {
	RUN=$((RUN + 1))
	cluster_psql "$DIR/c" "$PORT" -d postgres -At <<SQL
SET backup_offline.compression_workers = $1;
SELECT backup_offline.archive_put_file('$STORE', 'bench$RUN', '$DATA',
	'{"compression": "zstd", "level": 3, "cipher": "$3", "digest": "blake3", "chunkSize": $2, "keyId": "bench"}')->>'storedLength';
SQL
	cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT backup_offline.storage_delete('$STORE', 'bench$RUN'), backup_offline.storage_delete('$STORE', 'bench$RUN.key.bench')" >/dev/null
}

printf '%-44s %8s %8s %8s\n' "" "MB/s" "/zstd-3" "/zstd-T2"
printf '%-44s %8s %8s %8s\n' "zstd -3 (one thread)" "$ZSTD1" "1.00" "$(ratio "$ZSTD1" "$ZSTD2")"
printf '%-44s %8s %8s %8s\n' "zstd -3 -T2" "$ZSTD2" "$(ratio "$ZSTD2" "$ZSTD1")" "1.00"
for chunk in 1 4 16; do
	for workers in 0 2; do
		m=$(mbps "$(best_ns put "$workers" $((chunk * 1024 * 1024)) "$CIPHER")")
		printf '%-44s %8s %8s %8s\n' "pipeline, $chunk MiB chunks, compression_workers=$workers" \
			"$m" "$(ratio "$m" "$ZSTD1")" "$(ratio "$m" "$ZSTD2")"
		eval "P_${chunk}_${workers}=$m"
	done
done
m=$(mbps "$(best_ns put 0 $((1024 * 1024)) none)")
printf '%-44s %8s %8s %8s\n' "pipeline without cipher, 1 MiB, workers=0" "$m" "$(ratio "$m" "$ZSTD1")" "$(ratio "$m" "$ZSTD2")"
STORED=$(put 0 $((1024 * 1024)) "$CIPHER")
echo "(stored size at 1 MiB chunks: $STORED bytes, ratio $(ratio "$BYTES" "$STORED"):1; zstd -3: $(stat -c %s "$DIR/care.json.zst") bytes)"

# zstd alone, chunk by chunk as the writer calls it
cc -O2 -o "$DIR/zstd_chunks" test/bench/archive/zstd_chunks.c -lzstd -lpthread
zc() { # zc CHUNK-MIB MODE N [JOB]: best MB/s of 3
	local best=0 m
	for _ in 1 2 3; do
		m=$("$DIR/zstd_chunks" "$DATA" 3 $(($1 * 1024 * 1024)) "${@:2}" | cut -d' ' -f1)
		[ "$m" -gt "$best" ] && best=$m
	done
	echo "$best"
}
echo
printf '%-44s %8s %8s\n' "zstd library alone, one call per chunk" "MB/s" "/zstd-3"
for chunk in 1 4 16; do
	for workers in 0 2; do
		m=$(zc "$chunk" mt "$workers")
		printf '%-44s %8s %8s\n' "$chunk MiB chunks, nbWorkers=$workers" "$m" "$(ratio "$m" "$ZSTD1")"
	done
done
m=$(zc 1 mt 2 524288)
printf '%-44s %8s %8s\n' "1 MiB chunks, nbWorkers=2, jobSize=512 KiB" "$m" "$(ratio "$m" "$ZSTD1")"
m=$(zc 1 chunks 2)
printf '%-44s %8s %8s\n' "1 MiB chunks, 2 threads on different chunks" "$m" "$(ratio "$m" "$ZSTD1")"

# the read path: one object with the default options
cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT backup_offline.archive_put_file('$STORE', 'read', '$DATA', '{\"cipher\": \"$CIPHER\", \"keyId\": \"bench\"}')" >/dev/null
verify() { cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT backup_offline.verify_object('$STORE', 'read')->>'valid'"; }
get_file() {
	as_pg rm -f "$B/out/read"
	cluster_psql "$DIR/c" "$PORT" -d postgres -At -c "SELECT backup_offline.archive_get_file('$STORE', 'read', '$B/out/read')"
}
V=$(mbps "$(best_ns verify)")
G=$(mbps "$(best_ns get_file)")
echo
printf '%-44s %8s %8s\n' "read path (1 MiB chunks)" "MB/s" "/zstd -d"
printf '%-44s %8s %8s\n' "zstd -d (one thread)" "$UNZSTD" "1.00"
printf '%-44s %8s %8s\n' "verify_object (with key)" "$V" "$(ratio "$V" "$UNZSTD")"
printf '%-44s %8s %8s\n' "archive_get_file (to a file, no fsync)" "$G" "$(ratio "$G" "$UNZSTD")"

echo
echo "goals (issue 3): pipeline >= 0.9x zstd -3 alone; >= 1.6x zstd -3 alone with two workers"
echo "  1 MiB chunks: workers=0 $(ratio "$P_1_0" "$ZSTD1")x (goal 0.9x), workers=2 $(ratio "$P_1_2" "$ZSTD1")x (goal 1.6x)"
echo "  4 MiB chunks: workers=0 $(ratio "$P_4_0" "$ZSTD1")x, workers=2 $(ratio "$P_4_2" "$ZSTD1")x"
echo "  16 MiB chunks: workers=0 $(ratio "$P_16_0" "$ZSTD1")x, workers=2 $(ratio "$P_16_2" "$ZSTD1")x"
