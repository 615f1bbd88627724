#!/usr/bin/env bash
# --config: one process holding an inbound and an outbound listener (a
# sidecar that serves its app and calls out), and bad config files refused
# with file:line.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/web --out web
mkdir www && echo "from the web app" > www/index.html
be=$(free_port) in_port=$(free_port) out_port=$(free_port) admin=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
cat > sidecar.conf <<CONF
# one sidecar: inbound for its own app, outbound for calls to a peer
[proxy]
workers = 2
admin = 127.0.0.1:$admin

[listener "web-in"]
mode = inbound
listen = 127.0.0.1:$in_port
target = 127.0.0.1:$be
cert = $T_DIR/web.pem
key = $T_DIR/web.key
ca = $T_DIR/root/bundle.pem
allow = spiffe://example.org/ns/prod/web spiffe://example.org/ns/test/*

[listener "web-out"]
mode = outbound
listen = 127.0.0.1:$out_port
target = 127.0.0.1:$in_port
cert = $T_DIR/web.pem
key = $T_DIR/web.key
ca = $T_DIR/root/bundle.pem
expect = spiffe://example.org/ns/prod/web
CONF
start_bg sidecar "$MTLS" proxy --config sidecar.conf
wait_for 10 count_gt "$T_DIR/sidecar.log" '"event":"start"' 1 && ok "both listeners start" \
    || { not_ok "both listeners start" "$(cat "$T_DIR/sidecar.log")"; exit 0; }
body=$(curl -sS --max-time 10 "http://127.0.0.1:$out_port/index.html")
[ "$body" = "from the web app" ] && ok "outbound listener -> inbound listener -> app, one process" || not_ok "through both" "$body"
log="$T_DIR/sidecar.log"
wait_for 5 grep -q '"listener":"web-in".*"result":"ok"' "$log" && ok "the inbound handshake is logged with its listener" || not_ok "web-in logged"
wait_for 5 grep -q '"listener":"web-out".*"result":"ok"' "$log" && ok "the outbound handshake is logged with its listener" || not_ok "web-out logged"
m=$(curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics")
[[ "$m" == *'role="server",result="ok"'* && "$m" == *'role="client",result="ok"'* ]] \
    && ok "/metrics counts both roles" || not_ok "metrics roles" "$m"

printf '[listener "x"]\nmode = sideways\n' > bad1.conf
expect_exit 2 "a bad mode is refused" "$MTLS" proxy --config bad1.conf
expect_grep 'bad1.conf:2: mode' "$T_DIR/err" "the error names file:line"
printf '[listener "x"]\nlisten = 127.0.0.1:1\ncolour = blue\n' > bad2.conf
expect_exit 2 "an unknown key is refused" "$MTLS" proxy --config bad2.conf
expect_grep "bad2.conf:3: unknown key 'colour'" "$T_DIR/err" "the error names the key"
printf '[proxy]\nworkers = 1\n' > bad3.conf
expect_exit 2 "a file without listeners is refused" "$MTLS" proxy --config bad3.conf
printf '[listener "x"]\nmode = inbound\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:2\ncert = %s/web.pem\nkey = %s/web.key\nca = %s/root/bundle.pem\n' \
    "$T_DIR" "$T_DIR" "$T_DIR" > open.conf
expect_exit 2 "fail closed from a file too: no allow rules" "$MTLS" proxy --config open.conf
expect_grep 'listener x|allow' "$T_DIR/err" "the refusal names the listener or --allow"
expect_exit 2 "--config with listener flags is refused" "$MTLS" proxy --config sidecar.conf --listen 127.0.0.1:1
exit 0
