#!/usr/bin/env bash
# The filesystem storage driver against real failures: a full disk (a 1 MB
# tmpfs), a directory the server cannot write, a read-only filesystem,
# NETWORK_SHARE on a mount and off one (and after the share is unmounted),
# a cancel and a kill -9 of the backend in the middle of a 200 MB put.
#
# What a failed put leaves: after an ERROR (full disk, cancel) nothing at
# all; after kill -9 no object under the final name, only a temporary file
# ".tmp.<pid>.<n>.<name>", which storage_list never shows and
# storage_cleanup removes once it has not been modified for older_than
# (default 1 hour, so a put still running in another session is left alone).
set -uo pipefail
. "$(dirname "$0")/tap.sh"

DIR=$BO_TEST_DIR/storage_fs
PORT=$((BO_TEST_PORT + 18))
LOCAL=$DIR/allowed
SHARE=$DIR/share
ROFS=$DIR/rofs
cleanup() {
	cluster_stop "$DIR"
	mountpoint -q "$SHARE" && umount "$SHARE"
	mountpoint -q "$ROFS" && umount "$ROFS"
}
trap cleanup EXIT
# mounting the test filesystems needs root (CI runs as root)
if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP mounting tmpfs needs root"
	exit 0
fi
plan 40

cluster_start "$DIR" "$PORT" "backup_offline.allowed_paths = '$LOCAL, $SHARE, $ROFS'"
ok $? "cluster started"
mkdir -p "$LOCAL" "$SHARE" "$ROFS" &&
	mount -t tmpfs -o size=1m,mode=0700 tmpfs "$SHARE" &&
	mount -t tmpfs -o ro,size=1m tmpfs "$ROFS" &&
	chown postgres: "$LOCAL" "$SHARE"
ok $? "a 1 MB tmpfs and a read-only tmpfs mounted"
cluster_psql "$DIR" "$PORT" -d postgres -c "CREATE EXTENSION backup_offline" >/dev/null
ok $? "extension created"

local_dest() { echo "{\"type\": \"LOCAL_FILESYSTEM\", \"path\": \"$1\"}"; }
share_dest() { echo "{\"type\": \"NETWORK_SHARE\", \"path\": \"$1\"}"; }
# the error of a statement, with its SQLSTATE
sql_error() {
	cluster_psql "$DIR" "$PORT" -d postgres -v VERBOSITY=verbose -c "$1" 2>&1 >/dev/null | grep -m1 '^ERROR'
}

# ---- full disk -----------------------------------------------------------
err=$(sql_error "SELECT backup_offline.storage_put('$(share_dest "$SHARE/repo")', 'full.bin', convert_to(repeat('x', 2 * 1024 * 1024), 'UTF8'))")
diag "$err"
[[ "$err" == "ERROR:  53100: could not write file \"$SHARE/repo/.tmp."*".full.bin\": No space left on device" ]]
ok $? "a put larger than the filesystem fails with 53100 and \"No space left on device\""
is "$(ls -A "$SHARE/repo")" "" "the full disk leaves no object and no temporary file"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_stat('$(share_dest "$SHARE/repo")', 'full.bin') IS NULL")" "t" \
	"storage_stat finds no object"
cluster_psql "$DIR" "$PORT" -d postgres -c "SELECT backup_offline.storage_put('$(share_dest "$SHARE/repo")', 'small.bin', convert_to(repeat('y', 700000), 'UTF8'))" >/dev/null
ok $? "the space is free again: a 700 kB put on the share succeeds"
is "$(q "$DIR" "$PORT" postgres "SELECT md5(backup_offline.storage_get('$(share_dest "$SHARE/repo")', 'small.bin')) = md5(repeat('y', 700000))")" "t" \
	"and reads back"
err=$(sql_error "SELECT backup_offline.storage_put('$(share_dest "$SHARE/repo")', 'second.bin', convert_to(repeat('z', 500000), 'UTF8'))")
[[ "$err" == *"No space left on device" ]]
ok $? "a put that fills the rest of the disk fails"
is "$(ls -A "$SHARE/repo")" "small.bin" "only the committed object is there"

# ---- NETWORK_SHARE -----------------------------------------------------------
is "$(q "$DIR" "$PORT" postgres "SELECT string_agg(name, ',') FROM backup_offline.storage_list('$(share_dest "$SHARE/repo")')")" "small.bin" \
	"NETWORK_SHARE is accepted on the tmpfs mount"
err=$(sql_error "SELECT * FROM backup_offline.storage_list('$(share_dest "$LOCAL/share")')")
is "$err" "ERROR:  55000: invalid storageDestination.path: \"$LOCAL/share\" is not on a mounted network share" \
	"NETWORK_SHARE on a directory of the root filesystem is refused"
mkdir "$SHARE/ro" && chown postgres: "$SHARE/ro" && chmod 500 "$SHARE/ro"
err=$(sql_error "SELECT * FROM backup_offline.storage_list('$(share_dest "$SHARE/ro/x")')")
is "$err" "ERROR:  42501: invalid storageDestination.path: the network share \"$SHARE\" (tmpfs) is not writable by the server: Permission denied" \
	"NETWORK_SHARE on a directory the server cannot write is refused"
err=$(sql_error "SELECT * FROM backup_offline.storage_list('$(share_dest "$ROFS")')")
is "$err" "ERROR:  42501: invalid storageDestination.path: the network share \"$ROFS\" (tmpfs) is not writable by the server: Read-only file system" \
	"NETWORK_SHARE on a read-only mount is refused"

# ---- permission denied, read-only filesystem -------------------------------
mkdir -p "$LOCAL/locked" && chown postgres: "$LOCAL/locked" && chmod 500 "$LOCAL/locked"
err=$(sql_error "SELECT backup_offline.storage_put('$(local_dest "$LOCAL/locked")', 'x.bin', '\\x01')")
[[ "$err" == "ERROR:  42501: could not create file \"$LOCAL/locked/.tmp."*".x.bin\": Permission denied" ]]
ok $? "a directory the server cannot write: 42501, \"Permission denied\""
diag "$err"
err=$(sql_error "SELECT backup_offline.storage_put('$(local_dest "$LOCAL/locked")', 'sub/x.bin', '\\x01')")
is "$err" "ERROR:  42501: could not create directory \"$LOCAL/locked/sub\": Permission denied" \
	"no subdirectory can be created there either"
is "$(ls -A "$LOCAL/locked")" "" "nothing was left in the locked directory"
err=$(sql_error "SELECT backup_offline.storage_put('$(local_dest "$ROFS")', 'x.bin', '\\x01')")
[[ "$err" == "ERROR:  42501: could not create file \"$ROFS/.tmp."*".x.bin\": Read-only file system" ]]
ok $? "a read-only filesystem: 42501, \"Read-only file system\""

# ---- a put of 200 MB, interrupted -----------------------------------------
# start_put NAME: a 200 MB put in the background; sets PUT_PID (psql) and
# BACKEND (the server process), and waits until its temporary file exists
start_put() {
	cluster_psql "$DIR" "$PORT" -d postgres -c \
		"SELECT backup_offline.storage_put('$(local_dest "$LOCAL/big")', '$1', convert_to(repeat('b', 200 * 1024 * 1024), 'UTF8'))" \
		>"$DIR/put_$1.out" 2>&1 &
	PUT_PID=$!
	BACKEND=
	local i
	for i in $(seq 1 3000); do
		if [ -z "$BACKEND" ]; then
			BACKEND=$(q "$DIR" "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE query LIKE '%storage_put%$1%' AND pid <> pg_backend_pid()")
		fi
		if [ -n "$BACKEND" ] && [ -n "$(find "$LOCAL/big" -maxdepth 1 -name ".tmp.*.$1" 2>/dev/null)" ]; then
			return 0
		fi
		sleep 0.01
	done
	return 1
}

start_put cancelled.bin
ok $? "a 200 MB put is writing its temporary file"
q "$DIR" "$PORT" postgres "SELECT pg_cancel_backend($BACKEND)" >/dev/null
wait "$PUT_PID"
grep -q "canceling statement due to user request" "$DIR/put_cancelled.bin.out"
ok $? "the put is cancelled"
is "$(ls -A "$LOCAL/big")" "" "a cancelled put leaves no object and no temporary file"

# two puts of one name: the small one commits while the big one writes; the
# big one's rename then refuses to replace it
start_put race.bin
ok $? "a 200 MB put of race.bin is writing its temporary file"
cluster_psql "$DIR" "$PORT" -d postgres -c "SELECT backup_offline.storage_put('$(local_dest "$LOCAL/big")', 'race.bin', '\\x07')" >/dev/null
ok $? "a 1-byte put of race.bin commits meanwhile"
wait "$PUT_PID"
grep -q 'ERROR:  object "race.bin" already exists' "$DIR/put_race.bin.out"
ok $? "the 200 MB put fails at its commit: the object is not replaced"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_get('$(local_dest "$LOCAL/big")', 'race.bin')")|$(ls -A "$LOCAL/big")" '\x07|race.bin' \
	"the first object stays, and no temporary file is left"
q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_delete('$(local_dest "$LOCAL/big")', 'race.bin')" >/dev/null

start_put killed.bin
ok $? "another 200 MB put is writing its temporary file"
diag "temporary file at kill: $(find "$LOCAL/big" -name '.tmp.*' -printf '%f %s bytes')"
kill -9 "$BACKEND"
ok $? "kill -9 of the backend $BACKEND"
wait "$PUT_PID"
up=1
for i in $(seq 1 300); do
	if q "$DIR" "$PORT" postgres "SELECT 1" >/dev/null 2>&1; then up=0; break; fi
	sleep 0.1
done
ok $up "the server is back after crash recovery"
[ ! -e "$LOCAL/big/killed.bin" ]
ok $? "no object under the final name"
leftover=$(find "$LOCAL/big" -name '.tmp.*.killed.bin' | wc -l)
is "$leftover" "1" "the temporary file of the killed put remains"
is "$(q "$DIR" "$PORT" postgres "SELECT count(*) FROM backup_offline.storage_list('$(local_dest "$LOCAL/big")')")" "0" \
	"storage_list does not show it"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_stat('$(local_dest "$LOCAL/big")', 'killed.bin') IS NULL")" "t" \
	"storage_stat finds no object"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_cleanup('$(local_dest "$LOCAL/big")')")" "0" \
	"storage_cleanup leaves a temporary file modified within the hour"
touch -d '2 hours ago' "$LOCAL"/big/.tmp.*.killed.bin
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_cleanup('$(local_dest "$LOCAL/big")')")" "1" \
	"storage_cleanup removes it once it is older than an hour"
is "$(ls -A "$LOCAL/big")" "" "nothing is left"
cluster_psql "$DIR" "$PORT" -d postgres -c "SELECT backup_offline.storage_put('$(local_dest "$LOCAL/big")', 'killed.bin', '\\x2a')" >/dev/null
ok $? "the name can be written after the crash"
is "$(q "$DIR" "$PORT" postgres "SELECT backup_offline.storage_get('$(local_dest "$LOCAL/big")', 'killed.bin')")" '\x2a' \
	"and holds the new object"

# ---- the share goes away --------------------------------------------------
umount "$SHARE"
ok $? "the share is unmounted"
err=$(sql_error "SELECT backup_offline.storage_put('$(share_dest "$SHARE/repo")', 'after.bin', '\\x01')")
is "$err" "ERROR:  55000: invalid storageDestination.path: \"$SHARE/repo\" is not on a mounted network share" \
	"a put to the unmounted share is refused"
is "$(ls -A "$SHARE")" "" "nothing was written to the bare mount point"
