#!/usr/bin/env bash
# Scenario: the archive reader's libFuzzer target (test/fuzz) builds with
# ASan + UBSan, the committed corpus is what the generator writes, every
# corpus object reads cleanly, and a bounded random run (60 s by default,
# BO_FUZZ_SECONDS to change) finds nothing.  Self-tests show that a
# violated invariant and a sanitizer report each make a run fail, so this
# scenario can fail.  No cluster is needed.
set -uo pipefail
. "$(dirname "$0")/tap.sh"
cd "$(dirname "$0")/../.."

SECONDS_LIMIT=${BO_FUZZ_SECONDS:-60}
WORK=$(mktemp -d "${BO_TEST_DIR:-/tmp}/fuzz_reader.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FUZZ=test/fuzz/build/fuzz_reader
CORPUS=test/fuzz/corpus

plan 9

make -s fuzz PG_CONFIG="${PGBIN:-/usr/lib/postgresql/15/bin}/pg_config" >"$WORK/build.out" 2>&1
st=$?
ok $st "make fuzz builds the target with ASan and UBSan"
[ $st -eq 0 ] || sed 's/^/#   /' "$WORK/build.out"
[ -x "$FUZZ" ] || { echo "Bail out! no fuzz target"; exit 1; }

n=$(find "$CORPUS" -type f | wc -l)
big=$(find "$CORPUS" -type f -size +64k | wc -l)
[ "$n" -ge 20 ] && [ "$n" -le 30 ] && [ "$big" -eq 0 ]
ok $? "the corpus has 20 to 30 files, none over 64 KiB ($n files)"

mkdir -p "$WORK/regen"
st=1
if test/fuzz/build/gen_corpus "$WORK/regen" >/dev/null; then
	st=0
	for f in "$WORK"/regen/*.boa; do
		cmp -s "$f" "$CORPUS/$(basename "$f")" || { diag "differs: $(basename "$f")"; st=1; }
	done
fi
ok $st "the committed generated objects are what gen_corpus writes"

# every corpus file (generated objects and regression inputs) once
"$FUZZ" -runs=0 -rss_limit_mb=2048 -artifact_prefix="$WORK/" "$CORPUS" >"$WORK/corpus.out" 2>&1
st=$?
ok $st "every corpus input reads without a finding"
[ $st -eq 0 ] || tail -n 30 "$WORK/corpus.out" | sed 's/^/#   /'

# the self-tests: a planted finding must fail a run
BO_FUZZ_SELFTEST=invariant "$FUZZ" -runs=0 -artifact_prefix="$WORK/st-" "$CORPUS" >"$WORK/st1.out" 2>&1
st=$?
[ $st -ne 0 ] && grep -q "invariant violated" "$WORK/st1.out"
ok $? "a violated invariant fails the run (exit $st)"
BO_FUZZ_SELFTEST=asan "$FUZZ" -runs=0 -artifact_prefix="$WORK/st-" "$CORPUS" >"$WORK/st2.out" 2>&1
st=$?
[ $st -ne 0 ] && grep -q "AddressSanitizer: heap-buffer-overflow" "$WORK/st2.out"
ok $? "an AddressSanitizer report fails the run (exit $st)"

# a bounded random run from the corpus; new inputs go to a scratch directory
mkdir -p "$WORK/new"
"$FUZZ" -max_total_time="$SECONDS_LIMIT" -rss_limit_mb=2048 -timeout=25 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$WORK/" "$WORK/new" "$CORPUS" >"$WORK/run.out" 2>&1
st=$?
ok $st "a ${SECONDS_LIMIT}s random run under ASan and UBSan finds nothing"
[ $st -eq 0 ] || grep -E "ERROR|runtime error|invariant|SUMMARY|Test unit" "$WORK/run.out" | head -n 20 | sed 's/^/#   /'
diag "$(grep -E '^stat::number_of_executed_units' "$WORK/run.out") $(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$WORK/run.out" | tail -n 1)"
arts=$(find "$WORK" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
is "$arts" 0 "the random run left no crash, leak, timeout or out-of-memory artifact"
grep -qE '^stat::number_of_executed_units: *[1-9][0-9]{3,}' "$WORK/run.out"
ok $? "the random run executed at least 1000 inputs"

exit $((TAP_FAILED > 0))
