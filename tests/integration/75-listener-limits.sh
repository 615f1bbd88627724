#!/usr/bin/env bash
# Issue 12 item 6 in the other servers: idle and slow connections must not
# lock out real clients of `mtls doctor serve` and of the proxy's TCP
# listeners. Floods come from 127.0.0.2-41 (loopback answers for all of
# 127/8) and from one address, 127.0.0.250; the real client is on 127.0.0.1.
#  - doctor serve (defaults): 1,000 silent connections, 50 slowloris TLS
#    heads, 50 never-finished ClientHellos and 80 from one address: a curl
#    with a client certificate gets its report within 5 s; silent ones are
#    closed at the first-byte deadline (5 s), slow ones at the request
#    deadline (10 s), the 65th..80th from one address at once.
#  - the proxy (2 workers, defaults): 1,000 silent, 50 never-finished
#    ClientHellos, 300 from one address: an mTLS client's bytes go through
#    the proxy and back within 5 s; silent ones are closed at 5 s, slow ones
#    10 s after their first byte, exactly the 44 over --max-conns-per-ip 256
#    at once though the two workers accept on their own sockets; /metrics
#    and conn_limit lines say why; SIGHUP reloads and SIGTERM drains under
#    the flood.
#  - the proxy at --max-conns 100 full of silent connections: the
#    longest-waiting one is closed for a new client, an authorized
#    connection opened before the flood is never closed for one.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
FLOOD="$_root/tests/integration/helpers/flood.py"

pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client

# an echo backend, and a client that sends a line through the proxy with
# its certificate and wants it back (exit 0), or holds the connection open
# and checks it still echoes when told to (hold mode)
cat > echo.py <<'PY'
import socket, sys, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1]))); ls.listen(128)
def serve(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b: return
            c.sendall(b)
while True:
    c, _ = ls.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
cat > client.py <<'PY'
import os, socket, ssl, sys, time
port, mode = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "once"
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("client.pem", "client.key")
def echo(s, msg):
    s.sendall(msg); got = b""
    while len(got) < len(msg):
        b = s.recv(4096)
        if not b: raise SystemExit("closed after %r" % got)
        got += b
    if got != msg: raise SystemExit("got %r" % got)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
s.settimeout(5)
echo(s, b"hello through the flood\n")
if mode == "hold":		# until hold.go, at most 120 s; then echo again
    open("hold.ready", "w").write("1")
    for _ in range(1200):
        if os.path.exists("hold.go"): break
        time.sleep(0.1)
    echo(s, b"still here\n")
print("ok")
PY
be=$(free_port)
start_bg echo python3 echo.py "$be"
wait_for 10 port_open "$be" || { not_ok "echo backend starts"; exit 0; }

# ---- bad limits are refused at start, naming the flag or the key ----
expect_exit 2 "--max-conns-per-ip abc is refused" "$MTLS" proxy --listen 127.0.0.1:1 --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca root/bundle.pem --allow-any --max-conns-per-ip abc
expect_grep 'max-conns-per-ip' "$T_DIR/err" "the refusal names --max-conns-per-ip"
expect_exit 2 "--max-conns-per-ip on an outbound listener is refused" "$MTLS" proxy --outbound --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert client.pem --key client.key --ca root/bundle.pem \
    --expect spiffe://example.org/ns/prod/server --max-conns-per-ip 5
expect_exit 2 "--first-byte-timeout 0s is refused" "$MTLS" proxy --listen 127.0.0.1:1 --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca root/bundle.pem --allow-any --first-byte-timeout 0s
printf '[listener "in"]\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:%s\ncert = server.pem\nkey = server.key\nca = root/bundle.pem\nallow_any = true\nmax_conns_per_ip = -3\n' \
    "$be" > badlimit.conf
expect_exit 2 "max_conns_per_ip = -3 in a config file is refused" "$MTLS" proxy --config badlimit.conf
expect_grep 'badlimit.conf:8: max_conns_per_ip' "$T_DIR/err" "the refusal names the file, line and key"
expect_exit 2 "doctor serve --max-conns-per-ip -1 is refused" "$MTLS" doctor serve --listen 127.0.0.1:1 \
    --ca root/bundle.pem --max-conns-per-ip -1

# ---- doctor serve under 1,180 idle and slow connections ----
ds=$(free_port)
start_bg dserve "$MTLS" doctor serve --listen "127.0.0.1:$ds" --ca root/bundle.pem --cert server.pem --key server.key
dlog="$T_DIR/dserve.log"
wait_for 10 grep -q '"event":"start"' "$dlog" || { not_ok "doctor serve starts" "$(cat "$dlog")"; exit 0; }
start_bg flood1 python3 "$FLOOD" "$ds" flood1 --idle 1000 --addrs 40 --first-addr 2 \
    --slow-tls 50 --slow-raw 50 --burst 80 --burst-addr 127.0.0.250 --hold-s 60 --open-s 30
wait_for 40 test -e flood1.ready || { not_ok "the flood on doctor serve is open" "$(cat "$T_DIR/flood1.log")"; exit 0; }
ok "flood on doctor serve: $(cat flood1.ready)"
[ "$(js flood1.ready 'd.get("idle", 0)')" = 1000 ] && ok "doctor serve accepted the 1,000 silent connections" \
    || not_ok "1,000 silent connections open" "$(cat flood1.ready)"
report() { curl -sS --fail --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$ds/" |
    grep -q '^result: ok$'; }
timed "under the flood: doctor serve reports on a client (result: ok)" 5000 report
timed "under the flood: again" 5000 report
touch flood1.stop
wait_for 40 test -e flood1 || { not_ok "the flood on doctor serve ends" "$(cat "$T_DIR/flood1.log")"; exit 0; }
echo "    flood: $(cat flood1)"
closed_in flood1 idle 1000 4.5 7.5 "doctor serve: silent connections are closed at the first-byte deadline (5 s)"
burst_cut flood1 16 "doctor serve: 80 from one address: the 16 over --max-conns-per-ip 64 are closed at once"
closed_in flood1 slow_raw 50 9 12 "doctor serve: a ClientHello a byte a second is cut at the request deadline (10 s)"
closed_in flood1 slow_tls 50 9 12 "doctor serve: a request head a byte a second is cut at the request deadline (10 s)"
all_closed flood1 "doctor serve: nothing of the flood is left open"
grep -q '"event":"conn_limit".*"reason":"per_ip_limit".*"client":"127.0.0.250"' "$dlog" \
    && ok "doctor serve: the per-address limit is logged with the address" \
    || not_ok "doctor serve: conn_limit log" "$(grep conn_limit "$dlog" | head -3)"

# ---- the proxy's TCP listener under 1,350 idle and slow connections ----
pp=$(free_port) ap=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --admin "127.0.0.1:$ap" --drain-timeout 3s \
    --workers 2
PX=$BG_PID
plog="$T_DIR/proxy.log"
wait_for 10 grep -q '"event":"start"' "$plog" || { not_ok "proxy starts" "$(cat "$plog")"; exit 0; }
metrics() { curl -sS --max-time 3 "http://127.0.0.1:$ap/metrics"; }
start_bg flood2 python3 "$FLOOD" "$pp" flood2 --idle 1000 --addrs 40 --first-addr 2 --slow-raw 50 \
    --burst 300 --burst-addr 127.0.0.250 --hold-s 60 --open-s 30
wait_for 40 test -e flood2.ready || { not_ok "the flood on the proxy is open" "$(cat "$T_DIR/flood2.log")"; exit 0; }
ok "flood on the proxy: $(cat flood2.ready)"
n=$(metrics | awk '/^mtls_connections_active/ {print $2}')
[ "${n:-0}" -ge 1000 ] && ok "the proxy holds the flood: $n connections open" || not_ok "flood held" "open: '$n'"
timed "under the flood: an mTLS client's bytes go through the proxy and back" 5000 python3 client.py "$pp"
timed "under the flood: again" 5000 python3 client.py "$pp"
kill -HUP "$PX"
wait_for 3 grep -q '"event":"reload"' "$plog" && ok "under the flood: SIGHUP reloads within 3 s" \
    || not_ok "SIGHUP reload under the flood" "$(tail -3 "$plog")"
touch flood2.stop
wait_for 40 test -e flood2 || { not_ok "the flood on the proxy ends" "$(cat "$T_DIR/flood2.log")"; exit 0; }
echo "    flood: $(cat flood2)"
closed_in flood2 idle 1000 4.5 7.5 "proxy: silent connections are closed at the first-byte deadline (5 s)"
burst_cut flood2 44 "proxy: 300 from one address over 2 workers: exactly the 44 over --max-conns-per-ip 256 are closed at once"
closed_in flood2 slow_raw 50 9 14 "proxy: a ClientHello a byte a second is cut at the handshake deadline (10 s after its first byte)"
all_closed flood2 "proxy: nothing of the flood is left open"
metrics > pmetrics.txt
grep -Eq '^mtls_conns_closed_total\{reason="first_byte_timeout"\} [0-9]{4,}$' pmetrics.txt &&
    grep -q '^mtls_conns_closed_total{reason="per_ip_limit"} 44$' pmetrics.txt &&
    grep -q '^mtls_conns_closed_total{reason="handshake_timeout"} 50$' pmetrics.txt \
    && ok "proxy /metrics counts the closes by reason" || not_ok "proxy metrics by reason" "$(grep conns_closed pmetrics.txt)"
grep -q '"event":"conn_limit".*"reason":"per_ip_limit".*"client":"127.0.0.250' "$plog" \
    && ok "proxy: the per-address limit is logged with the address" \
    || not_ok "proxy: conn_limit log" "$(grep conn_limit "$plog" | head -3)"
python3 - "$plog" > limitlines.txt <<'PY'
import collections, json, sys
per = collections.Counter()
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        continue        # not a log line (a sanitizer's note)
    if d.get("event") == "conn_limit":
        per[(d["reason"], d["ts"][:19])] += 1
print(max(per.values()) if per else 0)
PY
[ "$(cat limitlines.txt)" = 1 ] && ok "proxy: at most one conn_limit line a second per reason ($(grep -c conn_limit "$plog") in all)" \
    || not_ok "proxy: conn_limit lines a second" "$(cat limitlines.txt)"
# drain under a new flood of silent connections
start_bg flood3 python3 "$FLOOD" "$pp" flood3 --idle 1000 --addrs 40 --first-addr 2 --hold-s 60 --open-s 30
wait_for 40 test -e flood3.ready || { not_ok "the second flood on the proxy is open"; exit 0; }
t0=$(ms)
kill -TERM "$PX"
rc=timeout
wait_for 8 gone "$PX" && { wait "$PX"; rc=$?; }
dt=$(( $(ms) - t0 ))
[ "$rc" = 0 ] && [ "$dt" -le 8000 ] && ok "under 1,000 silent connections: SIGTERM drains and exits 0 (${dt} ms)" \
    || not_ok "SIGTERM under the flood" "exit $rc after $dt ms; $(tail -3 "$plog")"
touch flood3.stop

# ---- the proxy at --max-conns: silent ones make room, authorized ones stay ----
cp=$(free_port) cap=$(free_port)
start_bg proxy2 "$MTLS" proxy --listen "127.0.0.1:$cp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --admin "127.0.0.1:$cap" --workers 1 \
    --max-conns 100 --max-conns-per-ip 0 --first-byte-timeout 30s --handshake-timeout 30s
plog2="$T_DIR/proxy2.log"
wait_for 10 grep -q '"event":"start"' "$plog2" || { not_ok "proxy --max-conns 100 starts" "$(cat "$plog2")"; exit 0; }
start_bg holder python3 client.py "$cp" hold
HOLDER=$BG_PID
wait_for 10 test -e hold.ready || { not_ok "an authorized connection is open" "$(cat "$T_DIR/holder.log")"; exit 0; }
start_bg flood4 python3 "$FLOOD" "$cp" flood4 --idle 300 --addrs 1 --first-addr 2 --hold-s 60
wait_for 30 test -e flood4.ready || { not_ok "flood 4 is open"; exit 0; }
timed "--max-conns 100 full of silent connections: an mTLS client still gets through" 5000 python3 client.py "$cp"
touch hold.go
wait_for 10 gone "$HOLDER" || true
[ "$(cat "$T_DIR/holder.out")" = ok ] && ok "the authorized connection opened before the flood was never closed for a newcomer" \
    || not_ok "authorized connection kept" "$(cat "$T_DIR/holder.out" "$T_DIR/holder.log")"
curl -sS --max-time 3 "http://127.0.0.1:$cap/metrics" > pmetrics2.txt
grep -Eq '^mtls_conns_closed_total\{reason="evicted_idle"\} [1-9][0-9]*$' pmetrics2.txt &&
    grep -Eq '^mtls_connections_active (9[0-9]|100)$' pmetrics2.txt \
    && ok "at the cap the longest-waiting silent connections were closed for new ones" \
    || not_ok "eviction" "$(grep -E 'conns_closed|active' pmetrics2.txt)"
touch flood4.stop
exit 0
