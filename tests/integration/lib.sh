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
	# under ASan/UBSan (make asan) a daemon's report lands in its log:
	# each one is a failure, not something to find by reading logs
	local f
	for f in "$T_DIR"/*.log "$T_DIR"/err; do
		[ -f "$f" ] || continue
		if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f"; then
			echo "not ok - sanitizer report in $(basename "$f")"
			grep -E -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$f" | head -25 | sed 's/^/    /'
		fi
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

# a port nothing listens on, and not one this test was already given: the
# kernel may hand the same free port to two probes in a row (each closes
# its socket before the next), and a test that takes two (a listener and
# its --admin) then starts one of them on a port in use
free_port() {
	local p i
	for i in 1 2 3 4 5 6 7 8; do
		p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		grep -qx "$p" "$T_DIR/.ports" 2>/dev/null || break
	done
	echo "$p" >> "$T_DIR/.ports"
	echo "$p"
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

# ms: CLOCK_REALTIME in milliseconds
ms() { echo $(( $(date +%s%N) / 1000000 )); }
# timed NAME MAX_MS CMD...: CMD succeeds within MAX_MS (output in
# $T_DIR/out and $T_DIR/err)
timed() {
	local name=$1 max=$2 t0 rc dt
	shift 2
	t0=$(ms)
	"$@" > "$T_DIR/out" 2> "$T_DIR/err"
	rc=$? dt=$(( $(ms) - t0 ))
	if [ "$rc" = 0 ] && [ "$dt" -le "$max" ]; then ok "$name (${dt} ms)"
	else not_ok "$name" "exit $rc after $dt ms (at most $max): $(head -c 400 "$T_DIR/err") $(head -c 200 "$T_DIR/out")"; fi
}
# js FILE EXPR: a Python expression over the JSON object d in FILE (the
# summary of helpers/flood.py)
js() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
# Assertions on helpers/flood.py's JSON summary FILE:
# closed_in FILE KIND N MIN MAX NAME: the flood's N connections of KIND
# were all closed by the server between MIN and MAX s after connect
closed_in() {
	[ "$(js "$1" "d['$2']['closed'] >= $3 and $4 <= d['$2']['min'] and d['$2']['max'] <= $5")" = True ] \
	    && ok "$6" || not_ok "$6" "$(js "$1" "d['$2']")"
}
# burst_cut FILE N NAME: exactly N of the burst from one address were
# closed at once (within 1 s of connect)
burst_cut() {
	[ "$(js "$1" 'd["burst"]["under_1s"]')" = "$2" ] && ok "$3" || not_ok "$3" "$(js "$1" 'd["burst"]')"
}
# all_closed FILE NAME: nothing of the flood is left open
all_closed() {
	[ "$(js "$1" 'sum(d["still_open"].values())')" = 0 ] && ok "$2" || not_ok "$2" "$(js "$1" 'd["still_open"]')"
}
# gone PID: exited (a zombie until we wait for it)
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

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
# pki_scoped: root CA "root" (trust domain example.org) and "prod", an
# intermediate scoped to spiffe://example.org/ns/prod/ and DNS localhost,
# with server.pem (spiffe://example.org/ns/prod/server, DNS localhost).
pki_scoped() {
	q "$MTLS" ca init root --trust-domain example.org
	q "$MTLS" ca intermediate prod --parent root --name prod --permit-spiffe spiffe://example.org/ns/prod/ \
	    --permit-dns localhost
	q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out server
}
# peers_need TOOL...: each installed, else one not_ok with the deps.sh
# hint and the script ends
peers_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || { not_ok "peer $t installed (scripts/deps.sh check)"; exit 0; }
	done
}
# peers_gopeer: helpers/peers/gopeer.go built into ./gopeer, offline, its
# caches in $T_DIR
peers_gopeer() {
	export GOCACHE=$T_DIR/gocache GOPATH=$T_DIR/gopath GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off
	go build -o gopeer "$_root/tests/integration/helpers/peers/gopeer.go" 2> go.err ||
	    { not_ok "go helper builds" "$(cat go.err)"; exit 0; }
}
# backdated NAME SAN START END [CA_DIR]: NAME.key and NAME.pem (leaf, then
# CA_DIR's certificate; default int) valid from START to END
# (YYYYMMDDHHMMSSZ), made with `openssl ca`, which can date a certificate
# outside the present; SAN like "URI:spiffe://..." or "DNS:localhost".
backdated() {
	local name=$1 san=$2 start=$3 end=$4 ca=${5:-int} d
	d=oca-$name
	mkdir -p "$d/newcerts" && : > "$d/index.txt" && echo 1000 > "$d/serial"
	cat > "$d/ca.cnf" <<CNF
[ ca ]
default_ca = c
[ c ]
dir = $d
database = $d/index.txt
new_certs_dir = $d/newcerts
serial = $d/serial
default_md = sha256
policy = p
unique_subject = no
copy_extensions = none
[ p ]
commonName = supplied
[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth,serverAuth
subjectAltName = $san
CNF
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -subj "/CN=$name" \
	    -out "$d/req.csr" 2>/dev/null
	openssl x509 -in "$ca/ca.pem" -out "$d/issuer.pem"
	openssl ca -batch -config "$d/ca.cnf" -cert "$d/issuer.pem" -keyfile "$ca/ca.key" -extensions ext \
	    -startdate "$start" -enddate "$end" -in "$d/req.csr" -out "$d/leaf.pem" >/dev/null 2>&1 ||
	    { echo "setup: cannot make $name" >&2; return 1; }
	cat "$d/leaf.pem" "$d/issuer.pem" > "$name.pem"
}
# pki_bad_clients: after pki_pair, the client certificates a server must
# refuse: intruder.pem (spiffe://example.org/ns/prod/intruder, valid, for
# allow rules), revoked.pem (in int's crl.pem), foreign.pem (from "Other
# Root", same trust domain), expired.pem (2020).
pki_bad_clients() {
	q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/intruder --out intruder
	q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/gone --out revoked
	q "$MTLS" ca revoke --ca int "$(serial_of revoked.pem)"
	q "$MTLS" ca crl --ca int --out crl.pem
	q "$MTLS" ca init other --trust-domain example.org --name "Other Root"
	q "$MTLS" ca intermediate otherint --parent other --name "other int"
	q "$MTLS" ca issue --ca otherint --spiffe-id spiffe://example.org/ns/prod/client --out foreign
	backdated expired URI:spiffe://example.org/ns/prod/client 20200101000000Z 20200201000000Z
}
# start_nginx_mtls PORT 'LOCATION BODY' ['EXTRA SERVER LINES']: nginx on
# 127.0.0.1:PORT, TLS 1.3 with server.pem, requiring client certificates
# that chain to root/bundle.pem (ssl_verify_client on); waits until it
# listens. Its error log is $T_DIR/nginx-error.log.
start_nginx_mtls() {
	cat > "$T_DIR/nginx.conf" <<NG
worker_processes 1;
error_log $T_DIR/nginx-error.log;
pid $T_DIR/nginx.pid;
events { worker_connections 64; }
http {
    access_log $T_DIR/nginx-access.log;
    client_body_temp_path $T_DIR; proxy_temp_path $T_DIR; fastcgi_temp_path $T_DIR; uwsgi_temp_path $T_DIR; scgi_temp_path $T_DIR;
    server {
        listen 127.0.0.1:$1 ssl;
        ssl_certificate $T_DIR/server.pem;
        ssl_certificate_key $T_DIR/server.key;
        ssl_client_certificate $T_DIR/root/bundle.pem;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.3;
        ${3:-}
        location / { $2 }
    }
}
NG
	start_bg nginx nginx -g 'daemon off;' -c "$T_DIR/nginx.conf" -e "$T_DIR/nginx-error.log"
	wait_for 10 port_open "$1" || not_ok "nginx starts" "$(cat "$T_DIR/nginx-error.log" "$T_DIR/nginx.log" 2>/dev/null)"
}
