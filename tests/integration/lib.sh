# Helpers for integration scripts: source it first.
#   ok NAME / not_ok NAME [DETAIL]      one TAP-like result line
#   expect_exit WANT NAME CMD...        runs CMD; stdout/stderr in $T_DIR/out, $T_DIR/err
#   expect_grep PATTERN FILE NAME       grep -E PATTERN in FILE
#   wait_for SECONDS CMD...             polls CMD until it succeeds or time runs out
#   free_port                           a free TCP port on 127.0.0.1
#   start_bg NAME CMD...                background process, stopped by PID at exit; $BG_PID
# Everything listens on 127.0.0.1; every process started is stopped by PID.
set -u
_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$_root/$BUILD" ;; esac
MTLS=${MTLS:-$BUILD/mtls}
T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mtls-test.XXXXXX")
_bg_pids=()

_cleanup() {
	local p
	for p in "${_bg_pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${_bg_pids[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$T_DIR"
}
trap _cleanup EXIT

ok() { echo "ok - $1"; }
not_ok() { echo "not ok - $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | head -20 | sed 's/^/    /'; return 0; }

expect_exit() {
	local want=$1 name=$2 rc
	shift 2
	"$@" > "$T_DIR/out" 2> "$T_DIR/err"
	rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"
	else not_ok "$name" "exit $rc, want $want: $* | $(head -c 600 "$T_DIR/out") | $(head -c 600 "$T_DIR/err")"; fi
}

expect_grep() {
	if grep -qE -- "$1" "$2" 2>/dev/null; then ok "$3"
	else not_ok "$3" "no /$1/ in $2: $(head -c 800 "$2" 2>/dev/null)"; fi
}

wait_for() {
	local secs=$1 deadline
	shift
	deadline=$(( $(date +%s%N) / 1000000 + secs * 1000 ))
	while ! "$@" >/dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -ge $deadline ] && return 1
		sleep 0.05
	done
	return 0
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() {
	python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.3).close()" 2>/dev/null
}

start_bg() {
	local name=$1
	shift
	"$@" > "$T_DIR/$name.out" 2> "$T_DIR/$name.log" &
	BG_PID=$!
	_bg_pids+=("$BG_PID")
}

# serial_of FILE: the first certificate's serial in mtls's form (upper hex,
# no leading zeros)
serial_of() {
	openssl x509 -in "$1" -noout -serial | cut -d= -f2 | sed 's/^0*//'
}

# count_gt FILE PATTERN N: FILE has more than N lines matching PATTERN
# (a fresh count each call, for wait_for)
count_gt() {
	[ "$(grep -c -- "$2" "$1" 2>/dev/null)" -gt "$3" ]
}

# q CMD...: a setup step that must work; on failure the script stops with
# the command and its stderr (the runner counts that as a failure).
q() {
	"$@" > /dev/null 2> "$T_DIR/setup.err" || {
		echo "setup failed: $*"; cat "$T_DIR/setup.err"; exit 1
	}
}

# pki_root_int: in the current directory, root CA "root" (trust domain
# example.org) and its intermediate "int".
pki_root_int() {
	q "$MTLS" ca init root --trust-domain example.org
	q "$MTLS" ca intermediate int --parent root --name int
}
# pki_pair: pki_root_int plus server.pem (spiffe://example.org/ns/prod/server,
# DNS localhost) and client.pem (spiffe://example.org/ns/prod/client).
pki_pair() {
	pki_root_int
	q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out server
	q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
}
