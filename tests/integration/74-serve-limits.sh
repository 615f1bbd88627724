#!/usr/bin/env bash
# Issue 12 item 6: idle and slow connections must not lock out real clients.
# ca serve (default limits): 1,000 silent TCP connections spread over 40
# source addresses (127.0.0.2-41; loopback answers for all of 127/8), 50
# slowloris TLS heads and 50 never-finished ClientHellos, plus 80 from one
# address. While they are held (the closed ones reopened), a client on
# 127.0.0.1 gets /healthz, an OCSP answer, an enrollment and a renewal, each
# within 5 s. The silent ones are closed at the first-byte deadline (5 s),
# the slow ones at the request deadline (10 s), the 17th..80th from one
# address at once. A server capped at --max-conns 100 closes the
# longest-idle connection for a new one. The proxy's --admin endpoint under
# 1,000 idle and 20 slow connections: /healthz answers, SIGHUP reloads,
# SIGTERM drains and exits 0.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
FLOOD="$_root/tests/integration/helpers/flood.py"

pki_root_int
openssl x509 -in int/ca.pem -out int1.pem
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
CA_PID=$BG_PID
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token
q "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web --once
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/api > api.token

# ---- ca serve under 1,180 idle and slow connections ----
start_bg flood python3 "$FLOOD" "$port" flood1 --idle 1000 --addrs 40 --first-addr 2 \
    --slow-tls 50 --slow-raw 50 --burst 80 --burst-addr 127.0.0.250 --hold-s 60 --open-s 30
wait_for 40 test -e flood1.ready || { not_ok "the flood is open" "$(cat "$T_DIR/flood.log")"; exit 0; }
ok "flood open: $(cat flood1.ready)"
open_now() { curl -sS --max-time 5 --cacert root/bundle.pem "$URL/metrics" | awk '/^mtls_connections_active/ {print $2}'; }
n=$(open_now)
[ "${n:-0}" -ge 1000 ] && ok "the server holds the flood: $n connections open" || not_ok "flood held" "open: '$n'"
timed "under the flood: /healthz" 5000 curl -sS --fail --max-time 5 --cacert root/bundle.pem "$URL/healthz"
timed "under the flood: OCSP (openssl ocsp) says good" 5000 sh -c "openssl ocsp -issuer int1.pem -cert web/svid.pem \
    -url '$URL/v1/ocsp' -CAfile root/bundle.pem -timeout 5 2>&1 | grep -q 'web/svid.pem: good'"
timed "under the flood: enroll (agent --once with a token)" 5000 timeout 10 "$MTLS" agent --ca-url "$URL" \
    --token-file api.token --out-dir api --once
s1=$(serial_of web/svid.pem)
timed "under the flood: renew (agent --once with the certificate)" 5000 timeout 10 "$MTLS" agent --ca-url "$URL" \
    --cert web/svid.pem --key web/svid.key --out-dir web --once
[ "$(serial_of web/svid.pem)" != "$s1" ] && ok "the renewal installed a new serial" || not_ok "renewal serial"
n=$(open_now)
[ "${n:-0}" -ge 1000 ] && ok "still $n connections open after the four calls" || not_ok "flood still held" "open: '$n'"
touch flood1.stop
wait_for 40 test -e flood1 || { not_ok "the flood ends" "$(cat "$T_DIR/flood.log")"; exit 0; }
echo "    flood: $(cat flood1)"
[ "$(js flood1 'd["idle"]["closed"] >= 1000 and 4.5 <= d["idle"]["min"] and d["idle"]["max"] <= 7.5')" = True ] \
    && ok "silent connections are closed at the first-byte deadline (5 s)" \
    || not_ok "first-byte deadline" "$(cat flood1)"
[ "$(js flood1 'd["burst"]["under_1s"]')" = 16 ] \
    && ok "80 from one address: the 16 over --max-conns-per-ip 64 are closed at once" \
    || not_ok "per-address limit" "$(js flood1 'd["burst"]')"
[ "$(js flood1 'd["slow_raw"]["closed"] == 50 and 9 <= d["slow_raw"]["min"] and d["slow_raw"]["max"] <= 12')" = True ] \
    && ok "a ClientHello a byte a second is cut at the request deadline (10 s)" \
    || not_ok "slow ClientHello" "$(js flood1 'd["slow_raw"]')"
[ "$(js flood1 'd["slow_tls"]["closed"] == 50 and 9 <= d["slow_tls"]["min"] and d["slow_tls"]["max"] <= 14')" = True ] \
    && ok "a request head a byte a second is cut at the request deadline (10 s)" \
    || not_ok "slowloris head" "$(js flood1 'd["slow_tls"]')"
[ "$(js flood1 'sum(d["still_open"].values())')" = 0 ] && ok "nothing of the flood is left open" \
    || not_ok "left open" "$(js flood1 'd["still_open"]')"
curl -sS --max-time 5 --cacert root/bundle.pem "$URL/metrics" > metrics.txt
grep -Eq 'mtls_ca_conns_closed_total\{reason="first_byte_timeout"\} [0-9]{4,}' metrics.txt &&
    grep -q 'mtls_ca_conns_closed_total{reason="per_ip_limit"} 16$' metrics.txt &&
    grep -Eq 'mtls_ca_conns_closed_total\{reason="request_timeout"\} (9[0-9]|1[0-9]{2})$' metrics.txt \
    && ok "/metrics counts the closes by reason" || not_ok "metrics by reason" "$(grep conns_closed metrics.txt)"
grep -q '"event":"conn_limit".*"reason":"per_ip_limit".*"client":"127.0.0.250"' "$log" \
    && ok "the per-address limit is logged with the address" || not_ok "conn_limit log" "$(grep conn_limit "$log" | head -3)"
kill -0 "$CA_PID" 2>/dev/null && ok "ca serve still runs" || not_ok "ca serve runs"

# ---- the global cap: the longest-idle connection makes room ----
cap_case() {
	local port2
	port2=$(free_port)
	start_bg caserve2 "$MTLS" ca serve --ca int --listen "127.0.0.1:$port2" --url "https://localhost:$port2" \
	    --max-conns 100 --max-conns-per-ip 0 --first-byte-timeout 30s
	wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve2.log" ||
	    { not_ok "ca serve --max-conns 100 starts" "$(cat "$T_DIR/caserve2.log")"; return; }
	start_bg flood2 python3 "$FLOOD" "$port2" flood2 --idle 300 --addrs 1 --first-addr 2 --hold-s 60
	wait_for 30 test -e flood2.ready || { not_ok "flood 2 is open"; return; }
	timed "--max-conns 100 full of idle connections: /healthz still answers" 5000 \
	    curl -sS --fail --max-time 5 --cacert root/bundle.pem "https://localhost:$port2/healthz"
	curl -sS --max-time 5 --cacert root/bundle.pem "https://localhost:$port2/metrics" > metrics2.txt
	grep -Eq 'mtls_ca_conns_closed_total\{reason="evicted_idle"\} [1-9]' metrics2.txt &&
	    grep -Eq '^mtls_connections_active (9[0-9]|10[0-9])$' metrics2.txt \
	    && ok "at the cap the longest-idle connections were closed for new ones" \
	    || not_ok "eviction" "$(grep -E 'conns_closed|active' metrics2.txt)"
	touch flood2.stop
}
cap_case

# ---- the proxy's admin endpoint: reload and drain under the flood ----
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out server
pp=$(free_port) ap=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$(free_port)" --cert server.pem \
    --key server.key --ca root/bundle.pem --allow-any --admin "127.0.0.1:$ap" --drain-timeout 3s --workers 1
PX=$BG_PID
plog="$T_DIR/proxy.log"
wait_for 10 grep -q '"event":"start"' "$plog" || { not_ok "proxy starts" "$(cat "$plog")"; exit 0; }
start_bg flood3 python3 "$FLOOD" "$ap" flood3 --slow-raw 20 --drip-s 0.5 --idle 1000 --addrs 40 --first-addr 2 \
    --hold-s 60 --open-s 15
wait_for 30 test -e flood3.ready || { not_ok "flood on --admin is open"; exit 0; }
ok "flood on --admin: $(cat flood3.ready)"
timed "under the flood: admin /healthz" 3000 curl -sS --fail --max-time 3 "http://127.0.0.1:$ap/healthz"
curl -sS --max-time 3 "http://127.0.0.1:$ap/metrics" > ametrics.txt
grep -Eq 'mtls_admin_conns_closed_total\{reason="evicted_idle"\} [1-9]' ametrics.txt \
    && ok "admin /metrics counts the idle connections closed for new ones" \
    || not_ok "admin eviction metric" "$(grep admin_conns ametrics.txt)"
kill -HUP "$PX"
wait_for 3 grep -q '"event":"reload"' "$plog" && ok "under the flood: SIGHUP reloads within 3 s" \
    || not_ok "SIGHUP reload under the flood" "$(tail -3 "$plog")"
t0=$(ms)
kill -TERM "$PX"
rc=timeout
wait_for 8 gone "$PX" && { wait "$PX"; rc=$?; }
dt=$(( $(ms) - t0 ))
[ "$rc" = 0 ] && [ "$dt" -le 8000 ] && ok "under the flood: SIGTERM drains and exits 0 (${dt} ms)" \
    || not_ok "SIGTERM under the flood" "exit $rc after $dt ms; $(tail -3 "$plog")"
grep -q '"event":"stop"' "$plog" && ok "the proxy logged its stop" || not_ok "stop logged"
touch flood3.stop
exit 0
