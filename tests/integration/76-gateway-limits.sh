#!/usr/bin/env bash
# Issue 12 item 6 in the HTTP gateway (mode = http): idle and slow
# connections must not lock out real clients. Floods come from
# 127.0.0.2-41 and from one address, 127.0.0.250; the real client is on
# 127.0.0.1.
#  - the gateway (2 workers, defaults): 1,000 silent connections, 50
#    never-finished ClientHellos, 300 from one address: an mTLS curl gets
#    its answer within 5 s; silent ones are closed at the first-byte
#    deadline (5 s), slow ones 10 s after their first byte, exactly the 44
#    over max_conns_per_ip 256 at once; /metrics and conn_limit lines say
#    why; SIGTERM drains under a flood of silent connections.
#  - the gateway at --max-conns 100 full of silent connections: the
#    longest-waiting one (here: request heads sent a byte a second, then
#    silent ones) is closed for a new client, a request in progress is
#    never closed for one; max_conns_per_ip 5 from a config file is
#    exact.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
FLOOD="$_root/tests/integration/helpers/flood.py"

pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client

# an HTTP backend: "hello" for any GET; /slow answers after slow.go exists
# (at most 60 s)
cat > backend.py <<'PY'
import http.server, os, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            for _ in range(600):
                if os.path.exists("slow.go"): break
                time.sleep(0.1)
        b = b"hello\n"
        self.send_response(200); self.send_header("Content-Length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
be=$(free_port)
start_bg backend python3 backend.py "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
get() { curl -sS --fail --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$1/$2" | grep -qx hello; }

gwconf() {	# gwconf PORT ADMIN_PORT EXTRA_PROXY_LINES EXTRA_LISTENER_LINES
	printf '[proxy]\nadmin = 127.0.0.1:%s\n%s\n[listener "gw"]\nmode = http\nlisten = 127.0.0.1:%s\ncert = server.pem\nkey = server.key\nca = root/bundle.pem\n%s\n[route "all"]\npath = /\nupstream = 127.0.0.1:%s\nallow = spiffe://example.org/ns/prod/client\n' \
	    "$2" "$3" "$1" "$4" "$be"
}

# ---- max_conns_per_ip is taken on http listeners, bad values refused ----
gwconf 1 1 "" "max_conns_per_ip = -3" > badlimit.conf
expect_exit 2 "http listener: max_conns_per_ip = -3 is refused" "$MTLS" proxy --config badlimit.conf
expect_grep 'badlimit.conf:[0-9]*: max_conns_per_ip' "$T_DIR/err" "the refusal names the file, line and key"

# ---- the gateway under 1,350 idle and slow connections ----
gp=$(free_port) ap=$(free_port)
gwconf "$gp" "$ap" "workers = 2
drain_timeout = 3s" "" > gw.conf
start_bg gw "$MTLS" proxy --config gw.conf
GW=$BG_PID
glog="$T_DIR/gw.log"
wait_for 10 port_open "$gp" || { not_ok "gateway starts" "$(cat "$glog")"; exit 0; }
metrics() { curl -sS --max-time 3 "http://127.0.0.1:$1/metrics"; }
get "$gp" x && ok "the gateway answers an mTLS client" || not_ok "gateway answers" "$(tail -3 "$glog")"
start_bg flood1 python3 "$FLOOD" "$gp" flood1 --idle 1000 --addrs 40 --first-addr 2 --slow-raw 50 \
    --burst 300 --burst-addr 127.0.0.250 --hold-s 60 --open-s 30
wait_for 40 test -e flood1.ready || { not_ok "the flood on the gateway is open" "$(cat "$T_DIR/flood1.log")"; exit 0; }
ok "flood on the gateway: $(cat flood1.ready)"
active_ge() { [ "$(metrics "$1" | awk '/^mtls_connections_active/ {print $2}')" -ge "$2" ] 2>/dev/null; }
wait_for 5 active_ge "$ap" 1000
n=$(metrics "$ap" | awk '/^mtls_connections_active/ {print $2}')
[ "${n:-0}" -ge 1000 ] && ok "the gateway holds the flood: $n connections open" || not_ok "flood held" "open: '$n'"
timed "under the flood: an mTLS curl gets its answer from the gateway" 5000 get "$gp" a
timed "under the flood: again" 5000 get "$gp" b
touch flood1.stop
wait_for 40 test -e flood1 || { not_ok "the flood on the gateway ends" "$(cat "$T_DIR/flood1.log")"; exit 0; }
echo "    flood: $(cat flood1)"
closed_in flood1 idle 1000 4.5 7.5 "gateway: silent connections are closed at the first-byte deadline (5 s)"
burst_cut flood1 44 "gateway: 300 from one address over 2 workers: exactly the 44 over max_conns_per_ip 256 are closed at once"
closed_in flood1 slow_raw 50 9 14 "gateway: a ClientHello a byte a second is cut at the handshake deadline (10 s after its first byte)"
all_closed flood1 "gateway: nothing of the flood is left open"
metrics "$ap" > gmetrics.txt
grep -Eq '^mtls_conns_closed_total\{reason="first_byte_timeout"\} [0-9]{4,}$' gmetrics.txt &&
    grep -q '^mtls_conns_closed_total{reason="per_ip_limit"} 44$' gmetrics.txt &&
    grep -q '^mtls_conns_closed_total{reason="handshake_timeout"} 50$' gmetrics.txt \
    && ok "gateway: /metrics counts the closes by reason" || not_ok "gateway metrics by reason" "$(grep conns_closed gmetrics.txt)"
grep -q '"event":"conn_limit".*"listener":"gw".*"reason":"per_ip_limit".*"client":"127.0.0.250' "$glog" \
    && ok "gateway: the per-address limit is logged with the listener and the address" \
    || not_ok "gateway: conn_limit log" "$(grep conn_limit "$glog" | head -3)"
# drain under a new flood of silent connections
start_bg flood2 python3 "$FLOOD" "$gp" flood2 --idle 1000 --addrs 40 --first-addr 2 --hold-s 60 --open-s 30
wait_for 40 test -e flood2.ready || { not_ok "the second flood on the gateway is open"; exit 0; }
t0=$(ms)
kill -TERM "$GW"
rc=timeout
wait_for 8 gone "$GW" && { wait "$GW"; rc=$?; }
dt=$(( $(ms) - t0 ))
[ "$rc" = 0 ] && [ "$dt" -le 3000 ] && ok "under 1,000 silent connections: SIGTERM drains the gateway and exits 0 (${dt} ms)" \
    || not_ok "SIGTERM under the flood" "exit $rc after $dt ms; $(tail -3 "$glog")"
touch flood2.stop

# ---- at --max-conns: silent ones make room, a request in progress stays;
# ---- max_conns_per_ip 5 is exact ----
cp=$(free_port) cap=$(free_port)
gwconf "$cp" "$cap" "workers = 1
max_conns = 100
first_byte_timeout = 30s
handshake_timeout = 30s" "max_conns_per_ip = 0" > cap.conf
# a public route: clients without a certificate finish the handshake too
printf '[route "pub"]\npath = /pub\nupstream = 127.0.0.1:%s\nclient_cert = optional\n' "$be" >> cap.conf
start_bg gw2 "$MTLS" proxy --config cap.conf
glog2="$T_DIR/gw2.log"
wait_for 10 port_open "$cp" || { not_ok "gateway --max-conns 100 starts" "$(cat "$glog2")"; exit 0; }
start_bg slow curl -sS --max-time 90 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$cp/slow"
SLOW=$BG_PID
wait_for 10 grep -q '"event":"handshake".*"result":"ok"' "$glog2" || { not_ok "a slow request is in progress"; exit 0; }
# heads sent a byte a second (the first byte 1 s after they are open),
# then, once those are in their heads, silent connections fill the cap
start_bg flood3h python3 "$FLOOD" "$cp" flood3h --slow-tls 50 --addrs 1 --first-addr 3 --hold-s 60
wait_for 30 test -e flood3h.ready || { not_ok "flood 3 (heads) is open" "$(cat "$T_DIR/flood3h.log")"; exit 0; }
t3=$(ms)
elapsed() { [ $(( $(ms) - t3 )) -ge "$1" ]; }
wait_for 5 elapsed 2500
start_bg flood3 python3 "$FLOOD" "$cp" flood3 --idle 300 --addrs 1 --first-addr 2 --hold-s 60
wait_for 30 test -e flood3.ready || { not_ok "flood 3 is open"; exit 0; }
timed "--max-conns 100 full of silent connections: an mTLS curl still gets its answer" 5000 get "$cp" c
touch slow.go
wait_for 10 gone "$SLOW" || true
grep -qx hello "$T_DIR/slow.out" && ok "the request in progress before the flood was never closed for a newcomer" \
    || not_ok "request in progress kept" "$(cat "$T_DIR/slow.out" "$T_DIR/slow.log")"
metrics "$cap" > gmetrics2.txt
grep -Eq '^mtls_conns_closed_total\{reason="evicted_idle"\} [1-9][0-9]*$' gmetrics2.txt &&
    grep -Eq '^mtls_connections_active (9[0-9]|100)$' gmetrics2.txt \
    && ok "at the cap the longest-waiting silent connections were closed for new ones" \
    || not_ok "eviction" "$(grep -E 'conns_closed|active' gmetrics2.txt)"
touch flood3.stop flood3h.stop
wait_for 40 test -e flood3h || { not_ok "flood 3 ends" "$(cat "$T_DIR/flood3h.log")"; exit 0; }
echo "    flood: $(cat flood3h)"
closed_in flood3h slow_tls 50 0 20 "at the cap, request heads sent a byte a second (the oldest waits) were closed for newcomers, long before request_timeout (60 s)"
pp=$(free_port)
gwconf "$pp" "$(free_port)" "workers = 2" "max_conns_per_ip = 5" > per5.conf
start_bg gw3 "$MTLS" proxy --config per5.conf
wait_for 10 port_open "$pp" || { not_ok "gateway max_conns_per_ip 5 starts" "$(cat "$T_DIR/gw3.log")"; exit 0; }
start_bg flood4 python3 "$FLOOD" "$pp" flood4 --burst 20 --burst-addr 127.0.0.250 --hold-s 2
wait_for 30 test -e flood4 || { not_ok "flood 4 ends" "$(cat "$T_DIR/flood4.log")"; exit 0; }
burst_cut flood4 15 "max_conns_per_ip = 5 from a config file: exactly the 15 over it are closed at once"
timed "the limit is per address: a curl from 127.0.0.1 gets its answer" 5000 get "$pp" d
exit 0
