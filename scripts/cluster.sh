# Throwaway PostgreSQL clusters for the demo and the tests (sourced, not run).
#
#   cluster_start DIR PORT [extra postgresql.conf lines...]
#   cluster_stop DIR
#   cluster_psql DIR PORT [psql args...]
#
# The server never runs as root: as root we run it as Debian's "postgres"
# user, otherwise as the calling user.  The socket lives in DIR, the port is
# private, authentication is trust on the socket only.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Does this server know the setting output_plugin_libraries (15.19+)?
server_has_setting() {
	"$PGBIN/postgres" --describe-config 2>/dev/null | cut -f1 | grep -qx "$1"
}

cluster_start() {
	local dir=$1 port=$2
	shift 2
	mkdir -p "$dir"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
	as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; return 1; }
	{
		echo "listen_addresses = ''"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "shared_preload_libraries = 'backup_offline'"
		echo "wal_level = logical"
		echo "max_replication_slots = 16"
		echo "max_wal_senders = 16"
		echo "max_worker_processes = 32"
		echo "fsync = on"
		echo "timezone = 'UTC'"
		echo "backup_offline.database = 'postgres'"
		echo "backup_offline.allowed_paths = '$dir/backups'"
		echo "backup_offline.key_directory = '$dir/keys'"
		if server_has_setting output_plugin_libraries; then
			echo "output_plugin_libraries = 'pgoutput, test_decoding, backup_offline'"
		fi
		local line
		for line in "$@"; do echo "$line"; done
	} | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
	as_pg mkdir -p "$dir/backups" "$dir/keys"
	as_pg chmod 700 "$dir/keys"
	as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
		{ cat "$dir/server.log"; return 1; }
}

cluster_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
	return 0
}

cluster_psql() {
	local dir=$1 port=$2
	shift 2
	"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"
}
