#!/usr/bin/env bash
# Readiness for service managers (issue 17 §3): ca serve, the proxy and
# the agent speak sd_notify to $NOTIFY_SOCKET (src/svc/net/notify.c).
# A python AF_UNIX datagram socket stands for systemd and notes, as each
# message arrives, whether the daemon's port accepts / its certificate is
# on disk:
# - ca serve (abstract '@' socket): READY=1 with the port open; SIGTERM:
#   STOPPING=1 and exit 0.
# - proxy (path socket): READY=1 with the port open; SIGHUP: RELOADING=1
#   (with MONOTONIC_USEC) then READY=1; SIGTERM: STOPPING=1.
# - agent: READY=1 with svid.pem installed; SIGTERM: STOPPING=1.
# - a NOTIFY_SOCKET that is neither a path nor '@name': a warning, the
#   proxy still serves.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
NL="$_root/tests/integration/helpers/notify_listen.py"
pki_pair
# listen NAME ADDR [PORT] [FILE]: a notify socket; lines in NAME.n
listen() {
	start_bg "nl_$1" python3 "$NL" "$2" "$T_DIR/$1.n" "${3:-}" "${4:-}"
	wait_for 10 test -e "$T_DIR/$1.n.bound" || { not_ok "notify socket $1 bound" "$(cat "$T_DIR/nl_$1.log")"; exit 0; }
}
has() { grep -q "$2" "$T_DIR/$1.n" 2>/dev/null; }
exited() { ! kill -0 "$1" 2>/dev/null; }

# ---- ca serve ----
port=$(free_port)
listen ca "@mtls-test-$$-ca" "$port"
NOTIFY_SOCKET="@mtls-test-$$-ca" start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" \
    --url "https://localhost:$port"
CA_PID=$BG_PID
wait_for 10 has ca '^READY=1' || { not_ok "ca serve sends READY=1" "$(cat "$T_DIR/caserve.log")"; exit 0; }
has ca '^READY=1 port=open' && ok "ca serve: READY=1 on an abstract socket, its port accepting" \
    || not_ok "ca serve READY=1 before its port accepts" "$(cat ca.n)"
URL="https://localhost:$port"

# ---- agent (enrolls at that CA) ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token
listen agent "$T_DIR/agent.sock" "" "$T_DIR/web/svid.pem"
NOTIFY_SOCKET="$T_DIR/agent.sock" start_bg agent "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web
AG_PID=$BG_PID
wait_for 15 has agent '^READY=1' && has agent '^READY=1 .*file=yes' \
    && ok "agent: READY=1 once its certificate is installed" || not_ok "agent READY=1" "$(cat agent.n agent.log 2>&1)"
kill -TERM "$AG_PID"
wait_for 10 exited "$AG_PID" && wait_for 5 has agent '^STOPPING=1' \
    && ok "agent: SIGTERM sends STOPPING=1" || not_ok "agent STOPPING=1" "$(cat agent.n)"

kill -TERM "$CA_PID"
wait_for 20 exited "$CA_PID"
wait "$CA_PID"; rc=$?
wait_for 5 has ca '^STOPPING=1' && [ "$rc" = 0 ] && ok "ca serve: SIGTERM sends STOPPING=1, exit 0" \
    || not_ok "ca serve STOPPING=1 (exit $rc)" "$(cat ca.n)"

# ---- proxy ----
mkdir www && echo hello > www/hello.txt
be=$(free_port) pp=$(free_port)
start_bg backend python3 -m http.server --bind 127.0.0.1 --directory www "$be"
wait_for 10 port_open "$be" || { not_ok "backend listens" "$(cat "$T_DIR/backend.log")"; exit 0; }
listen px "$T_DIR/px.sock" "$pp"
NOTIFY_SOCKET="$T_DIR/px.sock" start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --workers 1
PX_PID=$BG_PID
wait_for 10 has px '^READY=1' || { not_ok "proxy sends READY=1" "$(cat "$T_DIR/proxy.log")"; exit 0; }
has px '^READY=1 port=open' && ok "proxy: READY=1 with its listener accepting" || not_ok "proxy READY=1 early" "$(cat px.n)"
kill -HUP "$PX_PID"
wait_for 10 test "$(grep -c '^READY=1' px.n)" -ge 2 || true
tail -n 2 px.n | sed 's/ .*//' | cut -d, -f1 | tr '\n' ' ' > seq.txt
[ "$(cat seq.txt)" = "RELOADING=1 READY=1 " ] && grep -q '^RELOADING=1,MONOTONIC_USEC=[0-9]' px.n \
    && ok "proxy: SIGHUP sends RELOADING=1 (MONOTONIC_USEC) then READY=1" || not_ok "proxy reload notify" "$(cat px.n)"
curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key \
    "https://localhost:$pp/hello.txt" > got.txt 2>&1
grep -qx hello got.txt && ok "proxy serves after the reload" || not_ok "proxy after reload" "$(cat got.txt)"
kill -TERM "$PX_PID"
wait_for 15 exited "$PX_PID" && has px '^STOPPING=1' && ok "proxy: SIGTERM sends STOPPING=1" \
    || not_ok "proxy STOPPING=1" "$(cat px.n)"

# ---- a NOTIFY_SOCKET that is not one ----
pp=$(free_port)
NOTIFY_SOCKET="relative/sock" start_bg proxy2 "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --workers 1
wait_for 10 port_open "$pp" && wait_for 5 grep -q 'NOTIFY_SOCKET is not' "$T_DIR/proxy2.log" \
    && ok "a bad NOTIFY_SOCKET: a warning naming it, the proxy still serves" || not_ok "bad NOTIFY_SOCKET" "$(cat "$T_DIR/proxy2.log")"
