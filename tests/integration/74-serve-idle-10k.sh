#!/usr/bin/env bash
# Issue 14: ca serve holds 10,000 idle TCP connections (silent, spread over
# 127.0.0.2-200 so the per-address cap of 64 is not what limits them) with
# its default --max-conns, closing none of them, while /healthz, an
# enrollment and a renewal answer promptly over new connections; its RSS
# with them open is measured and bounded. A server whose RLIMIT_NOFILE
# cannot hold --max-conns says so in a limit_lowered line.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
FLOOD="$_root/tests/integration/helpers/flood.py"
N=10000

# ---- an fd limit too low for --max-conns: lowered, and said ----
pki_root_int
port=$(free_port)
start_bg lowfd bash -c 'ulimit -n 1024 && exec "$@"' sh "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" \
    --url "https://localhost:$port"
LOW_PID=$BG_PID
wait_for 10 grep -q '"event":"start"' lowfd.log || not_ok "ca serve starts under ulimit -n 1024" "$(cat lowfd.log)"
grep '"event":"limit_lowered"' lowfd.log | grep -q '"max_conns":768' && grep '"event":"start"' lowfd.log | grep -q '"max_conns":768' \
    && ok "under ulimit -n 1024 the cap is lowered to 768 and a limit_lowered line says why" \
    || not_ok "limit_lowered line" "$(cat lowfd.log)"
kill -TERM "$LOW_PID"

if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt $((N + 600)) ]; then
	ok "# SKIP 10,000 idle connections: the hard fd limit is $(ulimit -Hn)"
	exit 0
fi

# ---- 10,000 idle connections held ----
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --first-byte-timeout 120s
CA_PID=$BG_PID
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
grep '"event":"start"' "$log" | grep -q '"max_conns":16384' && ok "default --max-conns is 16384" \
    || not_ok "default --max-conns" "$(grep start "$log")"
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token
q "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web --once
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/api > api.token
rss() { awk '/^VmRSS/ {print $2}' "/proc/$CA_PID/status"; }
rss0=$(rss)

start_bg flood python3 "$FLOOD" "$port" idle --idle $N --addrs 199 --first-addr 2 --hold-s 90 --open-s 40
FLOOD_PID=$BG_PID
wait_for 60 test -e idle.ready || { not_ok "the $N connections are open" "$(cat "$T_DIR/flood.log")"; exit 0; }
[ "$(js idle.ready 'd["idle"]')" = $N ] && ok "the helper opened $N connections from 199 addresses" \
    || not_ok "connections opened" "$(cat idle.ready)"
metric() { curl -sS --max-time 5 --cacert root/bundle.pem "$URL/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }
n=$(metric "mtls_connections_active ")
[ "${n:-0}" -gt $N ] && ok "the server holds them: $n connections open" || not_ok "held" "open: '$n'"
rss1=$(rss)
per=$(( (rss1 - rss0) * 1024 / N ))
[ "$per" -le 8192 ] && ok "RSS ${rss0} KiB before, ${rss1} KiB with $N idle: $per bytes each (at most 8 KiB)" \
    || not_ok "RSS bounded" "${rss0} KiB -> ${rss1} KiB: $per bytes a connection"
timed "with $N idle: /healthz on a new connection" 2000 curl -sS --fail --max-time 5 --cacert root/bundle.pem "$URL/healthz"
timed "with $N idle: enroll (agent --once with a token)" 5000 timeout 10 "$MTLS" agent --ca-url "$URL" \
    --token-file api.token --out-dir api --once
s1=$(serial_of web/svid.pem)
timed "with $N idle: renew (agent --once with the certificate)" 5000 timeout 10 "$MTLS" agent --ca-url "$URL" \
    --cert web/svid.pem --key web/svid.key --out-dir web --once
[ "$(serial_of web/svid.pem)" != "$s1" ] && ok "the renewal installed a new serial" || not_ok "renewal serial"
n=$(metric "mtls_connections_active ")
[ "${n:-0}" -gt $N ] && ok "still $n open after the calls" || not_ok "still held" "open: '$n'"
for r in max_conns evicted_idle first_byte_timeout per_ip_limit; do
	v=$(metric "mtls_ca_conns_closed_total{reason=\"$r\"}")
	[ "$v" = 0 ] && ok "no connection closed or refused for $r" || not_ok "closed for $r" "$v"
done
kill -TERM "$CA_PID"
wait_for 20 gone "$CA_PID" && ok "SIGTERM with $N idle: the server exits" || not_ok "exit on SIGTERM"
touch idle.stop
wait_for 30 gone "$FLOOD_PID" || kill "$FLOOD_PID"
