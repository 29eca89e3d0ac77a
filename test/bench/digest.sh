#!/usr/bin/env bash
# Benchmark: digest throughput in MB/s over 256 MiB of random bytes.
#
#   1. backup_offline.digest() inside the server for BLAKE3, SHA256 and
#      SHA512 (the value is held in a PL/pgSQL variable, so only hashing is
#      timed), next to PostgreSQL's own sha256()/sha512() and the command
#      line tools on the same bytes (b3sum with one thread, sha256sum,
#      sha512sum).
#   2. Whether BLAKE3's run-time dispatch really uses SIMD here: the same
#      C driver linked once with the extension's libblake3.a (all kernels,
#      dispatch) and once with a portable-only build of the same sources.
#
# Not a test: it prints figures, best of 3 runs, no thresholds.
#
#   test/bench/digest.sh [MiB, default 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
MIB=${1:-256}
scripts/setup >/dev/null
. scripts/cluster.sh

DIR=$(mktemp -d /tmp/backup_offline_bench.XXXXXX)
chmod 755 "$DIR"
PORT=${BO_BENCH_PORT:-55491}
trap 'cluster_stop "$DIR/c"; rm -rf "$DIR"' EXIT
cluster_start "$DIR/c" "$PORT" >/dev/null
cluster_psql "$DIR/c" "$PORT" -d postgres -c "CREATE EXTENSION backup_offline" >/dev/null

DATA=$DIR/random.bin
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$DATA"
chmod 644 "$DATA"
BYTES=$((MIB * 1024 * 1024))

echo "digest throughput, $MIB MiB of random bytes, best of 3 (MB/s = 10^6 bytes/s)"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "CPU flags: $(grep -o -w -E 'sse4_1|avx2|avx512f|avx512vl|asimd' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo

# MB/s of one SQL function of the file's bytes, timed inside the server.
# PL/pgSQL copies a variable into each call, so the value is passed once as
# a query parameter and hashed k times in one query: (t(1 + k) - t(1)) / k is
# the time of one call without the copy.  CASE on the row keeps the planner
# from folding the call into a constant.
sql_mbps() {
	cluster_psql "$DIR/c" "$PORT" -d postgres -At <<SQL
DO \$\$
DECLARE
	v bytea := pg_read_binary_file('$DATA');
	q text := 'SELECT count($1(CASE WHEN g > 0 THEN \$1 END$2)) FROM generate_series(1, \$2) AS g';
	k int := 4;
	t0 timestamptz;
	one float8;
	many float8;
BEGIN
	FOR i IN 1..3 LOOP
		t0 := clock_timestamp();
		EXECUTE q USING v, 1;
		one := least(one, extract(epoch FROM clock_timestamp() - t0));
		t0 := clock_timestamp();
		EXECUTE q USING v, 1 + k;
		many := least(many, extract(epoch FROM clock_timestamp() - t0));
	END LOOP;
	RAISE NOTICE '%', round(($BYTES * k / (many - one) / 1e6)::numeric, 0);
END
\$\$;
SQL
}
mbps_of() { sql_mbps "$1" "${2:-}" 2>&1 | sed -n 's/^NOTICE:  //p'; }

# MB/s of a command reading the file
cli_mbps() {
	local best="" t0 t1 el
	for _ in 1 2 3; do
		t0=$(date +%s%N)
		"$@" "$DATA" >/dev/null
		t1=$(date +%s%N)
		el=$((t1 - t0))
		if [ -z "$best" ] || [ "$el" -lt "$best" ]; then best=$el; fi
	done
	echo $((BYTES * 1000 / best))
}

printf '%-44s %8s\n' "in the server" "MB/s"
printf '%-44s %8s\n' "backup_offline.digest(v, 'BLAKE3')" "$(mbps_of backup_offline.digest ", ''BLAKE3''")"
printf '%-44s %8s\n' "backup_offline.digest(v, 'SHA256')" "$(mbps_of backup_offline.digest ", ''SHA256''")"
printf '%-44s %8s\n' "sha256(v) (PostgreSQL)" "$(mbps_of sha256)"
printf '%-44s %8s\n' "backup_offline.digest(v, 'SHA512')" "$(mbps_of backup_offline.digest ", ''SHA512''")"
printf '%-44s %8s\n' "sha512(v) (PostgreSQL)" "$(mbps_of sha512)"
echo
cat /dev/null "$DATA" >/dev/null	# warm the page cache for the tools
printf '%-44s %8s\n' "command line tools (file in page cache)" "MB/s"
printf '%-44s %8s\n' "b3sum --num-threads 1" "$(cli_mbps b3sum --num-threads 1 --no-names)"
printf '%-44s %8s\n' "b3sum (all $(nproc) CPUs)" "$(cli_mbps b3sum --no-names)"
printf '%-44s %8s\n' "sha256sum" "$(cli_mbps sha256sum)"
printf '%-44s %8s\n' "sha512sum" "$(cli_mbps sha512sum)"
echo

# BLAKE3 dispatch: extension's archive vs. a portable-only build
SRC=$(make -s -f - print-blake3-src <<'MK'
include Makefile
print-blake3-src:
	@echo $(BLAKE3_SRC)
MK
)
LIB=src/archive/blake3_build/libblake3.a
[ -f "$LIB" ] || { echo "no $LIB: build the extension first (make)"; exit 1; }
cat >"$DIR/driver.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "blake3.h"

int
main(int argc, char **argv)
{
	size_t		n = (size_t) atol(argv[1]);
	unsigned char *buf = malloc(n);
	unsigned char out[BLAKE3_OUT_LEN];
	double		best = 0;

	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char) (i * 2654435761u >> 13);
	for (int r = 0; r < 3; r++)
	{
		struct timespec t0, t1;
		blake3_hasher h;
		double		el;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		blake3_hasher_init(&h);
		blake3_hasher_update(&h, buf, n);
		blake3_hasher_finalize(&h, out, BLAKE3_OUT_LEN);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		el = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		if (best == 0 || el < best)
			best = el;
	}
	printf("%.0f %02x%02x%02x%02x\n", n / best / 1e6, out[0], out[1], out[2], out[3]);
	return 0;
}
C
cc -O2 -I"$SRC" -o "$DIR/dispatch" "$DIR/driver.c" "$LIB"
cc -O3 -DBLAKE3_NO_SSE2 -DBLAKE3_NO_SSE41 -DBLAKE3_NO_AVX2 -DBLAKE3_NO_AVX512 -DBLAKE3_USE_NEON=0 \
	-I"$SRC" -o "$DIR/portable" "$DIR/driver.c" "$SRC/blake3.c" "$SRC/blake3_dispatch.c" "$SRC/blake3_portable.c"
read -r d_mbps d_hash < <("$DIR/dispatch" "$BYTES")
read -r p_mbps p_hash < <("$DIR/portable" "$BYTES")
printf '%-44s %8s\n' "BLAKE3 C library alone (one thread)" "MB/s"
printf '%-44s %8s\n' "libblake3.a of the extension (dispatch)" "$d_mbps"
printf '%-44s %8s\n' "same sources, portable code only" "$p_mbps"
[ "$d_hash" = "$p_hash" ] || echo "WARNING: the two builds disagree ($d_hash vs $p_hash)"
echo "dispatch / portable: $(awk -v a="$d_mbps" -v b="$p_mbps" 'BEGIN { printf "%.1fx", a / b }')"
