# A throwaway PostgreSQL for integration scripts (source after lib.sh):
#   pg_start       initdb into a temp folder, postgres on 127.0.0.1:$PG_PORT
#                  (scram password for TCP) and a Unix socket in $PG_DIR
#                  (trust), waits for pg_isready with a deadline; stopped
#                  by PID at exit (fast shutdown). Sets PG_URL_BASE
#                  (postgres://mtls@127.0.0.1:PORT), PG_PW (password file,
#                  0600, ours), PG_BIN.
#   pg_stop_now / pg_run   stop the server, start it again (same data;
#                  PG_OPTS=(-c k=v ...) adds server settings)
#   pg_sql DB SQL  runs SQL as the superuser over the socket
#   pg_createdb DB
#   pg_ca DIR DB   the CA directory DIR moves its inventory to a new
#                  database DB (ca store migrate, then ca.conf's store)
# PostgreSQL refuses to run as root: as root, the server runs as the
# postgres user (setpriv keeps the PID, so it is stopped by PID).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PG_PID=
_pg_stop() {
	if [ -n "$PG_PID" ] && kill -0 "$PG_PID" 2>/dev/null; then
		kill -INT "$PG_PID" 2>/dev/null	# fast shutdown
		for _ in $(seq 100); do kill -0 "$PG_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$PG_PID" 2>/dev/null
	fi
	[ -n "${PG_DIR:-}" ] && rm -rf "$PG_DIR"
	_cleanup
}
_as_pg() {
	if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"
	else "$@"; fi
}
pg_start() {
	[ -x "$PG_BIN/initdb" ] || { not_ok "PostgreSQL server installed (scripts/deps.sh check)"; return 1; }
	PG_DIR=$(mktemp -d /tmp/mtls-pg.XXXXXX)
	trap _pg_stop EXIT
	chmod 755 "$PG_DIR"
	[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR"
	printf 'mtls-test-%s\n' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" > "$T_DIR/pgpw"
	chmod 600 "$T_DIR/pgpw"
	PG_PW=$T_DIR/pgpw
	cp "$PG_PW" "$PG_DIR/initpw" && chmod 644 "$PG_DIR/initpw"
	_as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U mtls --pwfile="$PG_DIR/initpw" \
	    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync > "$T_DIR/initdb.log" 2>&1 \
	    || { not_ok "initdb" "$(tail -5 "$T_DIR/initdb.log")"; return 1; }
	rm -f "$PG_DIR/initpw"
	PG_PORT=$(free_port)
	PG_URL_BASE="postgres://mtls@127.0.0.1:$PG_PORT"
	pg_run
}
# pg_run: (re)starts the server of pg_start, waits until it is ready
pg_run() {
	local as=()
	[ "$(id -u)" = 0 ] && as=(setpriv --reuid=postgres --regid=postgres --init-groups)
	# exec'd in place (no shell in between): $! is the postmaster
	"${as[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -k "$PG_DIR" -p "$PG_PORT" \
	    -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 ${PG_OPTS[@]+"${PG_OPTS[@]}"} \
	    > "$T_DIR/postgres.out" 2> "$T_DIR/pg.server" &
	PG_PID=$!
	if ! wait_for 30 "$PG_BIN/pg_isready" -q -h "$PG_DIR" -p "$PG_PORT"; then
		not_ok "PostgreSQL starts" "$(tail -5 "$T_DIR/pg.server")"
		return 1
	fi
	return 0
}
# pg_stop_now: fast shutdown, waits until the postmaster is gone
pg_stop_now() {
	kill -INT "$PG_PID" 2>/dev/null
	wait_for 20 gone "$PG_PID"
	wait "$PG_PID" 2>/dev/null
}
pg_sql() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U mtls -d "$1" -c "$2"; }
pg_createdb() { pg_sql postgres "CREATE DATABASE $1"; }
pg_ca() {
	pg_createdb "$2"
	q "$MTLS" ca store migrate --ca "$1" --to "$PG_URL_BASE/$2" --password-file "$PG_PW"
	sed -i "/^\[ca\]/a store = $PG_URL_BASE/$2\nstore_password_file = $PG_PW" "$1/ca.conf"
	mv "$1/inventory.db" "$1/inventory.db.migrated"; rm -f "$1"/inventory.db-*
}
