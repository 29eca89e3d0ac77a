# TAP helpers for scenario scripts (sourced).  Each scenario prints TAP and
# is run by prove from test/run; a scenario that dies before its plan is
# complete counts as failed.
#
# Scenarios start their own clusters (scripts/cluster.sh) under
# $BO_TEST_DIR on ports derived from $BO_TEST_PORT, and stop them on exit.

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/cluster.sh"

TAP_N=0
TAP_FAILED=0

plan() { echo "1..$1"; }

# ok CONDITION-EXIT-STATUS DESCRIPTION: ok 0 "desc" passes.
ok() {
	TAP_N=$((TAP_N + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $TAP_N - $2"
	else
		echo "not ok $TAP_N - $2"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

# is GOT WANT DESCRIPTION
is() {
	if [ "$1" == "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:  '$1'"
		echo "#   want: '$2'"
	fi
}

# like GOT PATTERN DESCRIPTION: GOT matches the shell PATTERN
like() {
	# shellcheck disable=SC2053
	if [[ "$1" == $2 ]]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:     '$1'"
		echo "#   pattern: '$2'"
	fi
}

diag() { echo "# $*"; }

# q DIR PORT DB SQL: one value, unaligned, no header
q() {
	cluster_psql "$1" "$2" -d "$3" -At -c "$4"
}

# All PIDs of a cluster: the postmaster and its children.
cluster_pids() {
	local pm
	pm=$(head -1 "$1/data/postmaster.pid")
	echo "$pm $(pgrep -P "$pm" | tr '\n' ' ')"
}
