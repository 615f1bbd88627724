#!/usr/bin/env bash
# The proxy's admin endpoint (issue 18 item 1) and its durations (item 6).
# 1. 40 slow admin clients (20 sending a byte every 0.5 s without end, 20
#    silent; each opened again when closed; connected past the admin's 5 s
#    deadline) never delay the control loop: a client revoked by rewriting
#    the --crl file is refused (log: revoked) within 3 s, SIGHUP reloads,
#    the data path answers, and SIGTERM drains and exits 0 within
#    --drain-timeout. (Before the admin had its own loop, c5f3aa2, the
#    main loop polled 1 s per byte: none of these held.)
# 2. 300 silent admin connections against its cap of 64: the longest idle
#    is closed for each new one (counted in /metrics), /metrics and the
#    data path still answer.
# 3. Fail closed: --admin off loopback without --admin-allow exits 2 naming
#    the fix.
# 4. --admin-allow: mTLS with the listener's certificate and CA; an
#    allowed identity gets /metrics, another identity is refused
#    (not_authorized), so are no certificate and plain HTTP; revoking the
#    allowed identity in the --crl file, or in the CRL fetched from
#    --crl-url, reaches the admin endpoint too; admin_allow in a config
#    file.
# 5. Durations: --ticket-rotate 9223372036854775s used to overflow now + ms
#    and spin the main loop deaf to SIGTERM; it and other huge durations
#    (--ttl, --crl-refresh, --drain-timeout, config keys) exit 2 at once,
#    naming the flag.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
FLOOD="$_root/tests/integration/helpers/flood.py"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/victim --out victim
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/ops/prom --out prom
q "$MTLS" ca crl --ca int --out crl.pem

mkdir www && echo "hello" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server --bind 127.0.0.1 --directory www "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

# drip.py PORT N_SLOW N_SILENT OUT: keeps N_SLOW connections sending a
# byte every 0.5 s (a header that never ends: the old admin code polled 1 s
# per byte, up to 2 KiB, in the main loop) and N_SILENT sending nothing open to PORT, opening each
# again when the server closes it, until OUT.stop exists (60 s at most);
# writes OUT.ready once all are open, then OUT: "opened closed".
cat > drip.py <<'PY'
import os, select, socket, sys, time
port, n_slow, n_silent, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100000   # never ends
conns = {}          # socket -> [slow, bytes sent]
opened = closed = 0
def open_one(slow):
    global opened
    try:
        s = socket.create_connection(("127.0.0.1", port), 2)
    except OSError:
        return          # the server is gone (after SIGTERM)
    s.setblocking(False)
    conns[s] = [slow, 0]
    opened += 1
for i in range(n_slow + n_silent):
    open_one(i < n_slow)
open(out + ".ready", "w").write("%d\n" % opened)
end = time.time() + 60
next_drip = time.time() + 0.5
while time.time() < end and not os.path.exists(out + ".stop"):
    r, _, _ = select.select(list(conns), [], [], 0.2) if conns else ([], 0, 0)
    if not conns:
        time.sleep(0.2)
    for s in r:
        try:
            gone = s.recv(4096) == b""
        except OSError:
            gone = True
        if gone:
            slow = conns.pop(s)[0]
            s.close()
            closed += 1
            open_one(slow)
    if time.time() >= next_drip:
        next_drip += 0.5
        for s, st in conns.items():
            if st[0]:
                try:
                    s.send(req[st[1]:st[1] + 1]); st[1] += 1
                except OSError:
                    pass
open(out, "w").write("%d %d\n" % (opened, closed))
PY

get() { curl -sS --max-time 5 --cacert root/bundle.pem --cert "$2.pem" --key "$2.key" "https://localhost:$1/hello.txt"; }
refused() { ! get "$1" "$2" >/dev/null 2>&1; }

# ---- 1. slow admin clients: CRL reload, SIGHUP, SIGTERM ----
pp=$(free_port) ap=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --crl crl.pem --admin "127.0.0.1:$ap" \
    --workers 1 --drain-timeout 5s
PX=$BG_PID
plog="$T_DIR/proxy.log"
wait_for 10 grep -q '"event":"start"' "$plog" || { not_ok "proxy starts" "$(cat "$plog")"; exit 0; }
metrics() { curl -sS --max-time 5 "http://127.0.0.1:$ap/metrics"; }
[ "$(get "$pp" victim)" = hello ] && ok "before the revocation the victim gets through" || not_ok "victim before"
start_bg drip python3 drip.py "$ap" 20 20 drip1
wait_for 20 test -e drip1.ready || { not_ok "40 slow admin clients connect" "$(cat "$T_DIR/drip.log")"; exit 0; }
active() { [ "$(metrics | awk '/^mtls_admin_connections_active/ {print $2}')" -ge "$1" ]; }
fb_closed() { [ "$(metrics | awk '/^mtls_admin_conns_closed_total\{reason="first_byte_timeout"\}/ {print $2}')" -ge "$1" ]; }
# past the admin deadline (5 s) once: the silent ones were closed and came back
wait_for 15 fb_closed 20 && ok "the admin loop closes the silent ones at its 5 s deadline (they come back)" \
    || not_ok "admin first-byte deadline" "$(metrics | grep admin)"
wait_for 10 active 41 && ok "40 slow admin clients are connected (and this scrape)" \
    || not_ok "slow admin clients connected" "$(metrics | grep admin)"
timed "with them connected the data path answers" 5000 get "$pp" client
q "$MTLS" ca revoke --ca int "$(serial_of victim.pem)"
q "$MTLS" ca crl --ca int --out crl.new
t0=$(ms)
mv crl.new crl.pem
if wait_for 10 refused "$pp" victim; then
	dt=$(( $(ms) - t0 ))
	[ "$dt" -le 3000 ] && ok "the revoked client is refused ${dt} ms after the CRL file changed" \
	    || not_ok "revocation in time" "$dt ms"
else
	not_ok "the revoked client is refused" "$(tail -5 "$plog")"
fi
expect_grep '"event":"handshake".*"peer_id":"spiffe://example.org/ns/prod/victim".*"result":"revoked"' "$plog" \
    "the refusal is logged as revoked"
[ "$(get "$pp" client)" = hello ] && ok "the other client still gets through" || not_ok "client after revocation"
n=$(grep -c '"event":"reload".*"trigger":"SIGHUP"' "$plog")
kill -HUP "$PX"
wait_for 3 count_gt "$plog" '"trigger":"SIGHUP"' "$n" && ok "under the slow admin clients SIGHUP reloads within 3 s" \
    || not_ok "SIGHUP reload" "$(tail -3 "$plog")"
t0=$(ms)
kill -TERM "$PX"
rc=timeout
wait_for 8 gone "$PX" && { wait "$PX"; rc=$?; }
dt=$(( $(ms) - t0 ))
[ "$rc" = 0 ] && [ "$dt" -le 6500 ] && ok "under the slow admin clients SIGTERM drains and exits 0 (${dt} ms, --drain-timeout 5s)" \
    || not_ok "SIGTERM under slow admin clients" "exit $rc after $dt ms; $(tail -3 "$plog")"
touch drip1.stop
wait_for 10 test -e drip1 && echo "    drip: opened, closed by the server: $(cat drip1)"

# ---- 2. the admin loop's cap ----
pp=$(free_port) ap=$(free_port)
start_bg proxy2 "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --admin "127.0.0.1:$ap" --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy2.log" || { not_ok "proxy 2 starts" "$(cat "$T_DIR/proxy2.log")"; exit 0; }
start_bg flood python3 "$FLOOD" "$ap" flood --idle 300 --addrs 4 --first-addr 2 --hold-s 30
wait_for 30 test -e flood.ready || { not_ok "300 silent admin connections are open" "$(cat "$T_DIR/flood.log")"; exit 0; }
timed "300 silent admin connections: /metrics still answers" 5000 metrics
metrics > m2.txt
grep -Eq '^mtls_admin_conns_closed_total\{reason="evicted_idle"\} [1-9][0-9]*$' m2.txt &&
    grep -Eq '^mtls_admin_connections_active ([1-5][0-9]|6[0-4])$' m2.txt \
    && ok "at most 64 admin connections open; the idle closed for newcomers are counted" \
    || not_ok "admin cap" "$(grep admin m2.txt)"
timed "and the data path answers" 5000 get "$pp" client
touch flood.stop

# ---- 3. fail closed ----
expect_exit 2 "--admin off loopback without --admin-allow refuses to start" "$MTLS" proxy --listen "127.0.0.1:$(free_port)" \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem --allow-any --admin 192.0.2.1:9901
expect_grep 'admin-allow ID.*bind 127.0.0.1' "$T_DIR/err" "the refusal names the fix"
[ "$(wc -l < "$T_DIR/err")" = 1 ] && ok "in one line" || not_ok "one error line" "$(cat "$T_DIR/err")"
expect_exit 2 "--admin-allow without --admin is a usage error" "$MTLS" proxy --listen "127.0.0.1:$(free_port)" \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem --allow-any \
    --admin-allow spiffe://example.org/ns/ops/prom
expect_exit 2 "--admin-allow with a bad rule is a usage error" "$MTLS" proxy --listen "127.0.0.1:$(free_port)" \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem --allow-any \
    --admin 127.0.0.1:1 --admin-allow 'spiffe://Example.org/x'
expect_grep '--admin-allow' "$T_DIR/err" "naming --admin-allow"

# ---- 4. --admin-allow: mTLS ----
pp=$(free_port) ap=$(free_port)
start_bg proxy3 "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --crl crl.pem --admin "127.0.0.1:$ap" \
    --admin-allow spiffe://example.org/ns/ops/prom --workers 1
p3log="$T_DIR/proxy3.log"
wait_for 10 grep -q '"event":"start"' "$p3log" || { not_ok "proxy --admin-allow starts" "$(cat "$p3log")"; exit 0; }
adm() { curl -sS --max-time 5 --cacert root/bundle.pem "$@" "https://localhost:$ap/metrics"; }
adm --cert prom.pem --key prom.key > m3.txt 2>&1
grep -q '^mtls_admin_refused_total 0$' m3.txt && ok "an allowed identity scrapes /metrics over mTLS" \
    || not_ok "allowed identity" "$(head -c 300 m3.txt)"
adm --cert client.pem --key client.key > /dev/null 2>&1 && not_ok "an identity not in --admin-allow is refused" \
    || ok "an identity not in --admin-allow is refused"
wait_for 5 grep -q '"event":"handshake","listener":"admin".*"peer_id":"spiffe://example.org/ns/prod/client".*"result":"not_authorized"' "$p3log" \
    && ok "logged as not_authorized on listener admin" || not_ok "not_authorized log" "$(grep admin "$p3log" | tail -3)"
adm > /dev/null 2>&1 && not_ok "no client certificate is refused" || ok "no client certificate is refused"
curl -sS --max-time 5 "http://127.0.0.1:$ap/metrics" > /dev/null 2>&1 && not_ok "plain HTTP is refused" \
    || ok "plain HTTP is refused"
[ "$(adm --cert prom.pem --key prom.key | awk '/^mtls_admin_refused_total/ {print $2}')" = 3 ] \
    && ok "the three refusals are counted in mtls_admin_refused_total" || not_ok "refusals counted" "$(adm --cert prom.pem --key prom.key | grep refused)"
q "$MTLS" ca revoke --ca int "$(serial_of prom.pem)"
q "$MTLS" ca crl --ca int --out crl.new
mv crl.new crl.pem
prom_refused() { ! adm --cert prom.pem --key prom.key > /dev/null 2>&1; }
wait_for 10 prom_refused && ok "revoking the scraper in the --crl file closes the admin endpoint to it" \
    || not_ok "admin CRL reload" "$(tail -3 "$p3log")"
expect_grep '"listener":"admin".*"peer_id":"spiffe://example.org/ns/ops/prom".*"result":"revoked"' "$p3log" \
    "logged as revoked"
kill "$BG_PID"

# the admin endpoint also takes the CRL the first listener fetches (--crl-url)
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/ops/prom3 --out prom3
mkdir crlsrv && q "$MTLS" ca crl --ca int --out crlsrv/crl.pem
cat > crlsrv.py <<'PY'
import functools, http.server, ssl, sys
H = functools.partial(http.server.SimpleHTTPRequestHandler, directory="crlsrv")
H.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("server.pem", "server.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
cs=$(free_port)
start_bg crlsrv python3 crlsrv.py "$cs"
wait_for 10 port_open "$cs" || { not_ok "the CRL server starts"; exit 0; }
pp=$(free_port) ap=$(free_port)
start_bg proxy5 "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --crl-url "https://localhost:$cs/crl.pem" \
    --crl-refresh 1s --admin "127.0.0.1:$ap" --admin-allow spiffe://example.org/ns/ops/prom3 --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy5.log" || { not_ok "proxy --crl-url --admin-allow starts" "$(cat "$T_DIR/proxy5.log")"; exit 0; }
adm --cert prom3.pem --key prom3.key | grep -q '^mtls_admin_refused_total 0$' \
    && ok "--crl-url: the allowed identity scrapes" || not_ok "--crl-url: allowed identity"
q "$MTLS" ca revoke --ca int "$(serial_of prom3.pem)"
q "$MTLS" ca crl --ca int --out crlsrv/crl.new
mv crlsrv/crl.new crlsrv/crl.pem
prom3_refused() { ! adm --cert prom3.pem --key prom3.key > /dev/null 2>&1; }
wait_for 10 prom3_refused && ok "--crl-url: a revocation in the fetched CRL reaches the admin endpoint" \
    || not_ok "admin takes the fetched CRL" "$(tail -3 "$T_DIR/proxy5.log")"
expect_grep '"listener":"admin".*"peer_id":"spiffe://example.org/ns/ops/prom3".*"result":"revoked"' "$T_DIR/proxy5.log" \
    "logged as revoked"
kill "$BG_PID"

q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/ops/prom2 --out prom2
pp=$(free_port) ap=$(free_port)
cat > px.conf <<CONF
[proxy]
admin = 127.0.0.1:$ap
admin_allow = spiffe://example.org/ns/ops/prom2
workers = 1
[listener "api"]
listen = 127.0.0.1:$pp
target = 127.0.0.1:$be
cert = server.pem
key = server.key
ca = root/bundle.pem
allow = spiffe://example.org/ns/prod/*
CONF
start_bg proxy4 "$MTLS" proxy --config px.conf
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy4.log" || { not_ok "proxy --config with admin_allow starts" "$(cat "$T_DIR/proxy4.log")"; exit 0; }
adm --cert prom2.pem --key prom2.key | grep -q '^mtls_admin_refused_total 0$' \
    && ok "config file: admin_allow lets its identity in" || not_ok "admin_allow in a file"
adm --cert client.pem --key client.key > /dev/null 2>&1 && not_ok "config file: another identity is refused" \
    || ok "config file: another identity is refused"
kill "$BG_PID"
sed -i 's/^admin = .*/admin = 192.0.2.1:9901/; /^admin_allow/d' px.conf
expect_exit 2 "config file: admin off loopback without admin_allow refuses to start" "$MTLS" proxy --config px.conf
expect_grep 'admin-allow' "$T_DIR/err" "naming the fix"

# ---- 5. durations ----
pflags=(--listen "127.0.0.1:$(free_port)" --target "127.0.0.1:$be" --cert server.pem --key server.key
    --ca root/bundle.pem --allow-any --workers 1)
huge=9223372036854775s
for f in --ticket-rotate --crl-refresh --drain-timeout --idle-timeout --handshake-timeout; do
	t0=$(ms)
	expect_exit 2 "proxy $f $huge exits 2" timeout -s KILL 10 "$MTLS" proxy "${pflags[@]}" "$f" "$huge"
	dt=$(( $(ms) - t0 ))
	grep -q -- "$f '$huge' is too long" "$T_DIR/err" && [ "$dt" -le 3000 ] \
	    && ok "at once (${dt} ms), naming $f" || not_ok "$f named, quickly" "$dt ms: $(cat "$T_DIR/err")"
done
expect_exit 2 "proxy --ticket-rotate 367d (over a year) exits 2" timeout -s KILL 10 "$MTLS" proxy "${pflags[@]}" --ticket-rotate 367d
cp px.conf big.conf
sed -i '/^admin/d; s/^workers = 1/workers = 1\nticket_rotate = 9223372036854775s/' big.conf
expect_exit 2 "config file: ticket_rotate = $huge exits 2" timeout -s KILL 10 "$MTLS" proxy --config big.conf
expect_grep 'big.conf:[0-9]+: ticket_rotate .* is too long' "$T_DIR/err" "naming the file, line and key"
# a byte count with a suffix was multiplied before its range check (UBSan:
# signed overflow in cmd_proxy.c)
cat > body.conf <<CONF
[listener "gw"]
mode = http
listen = 127.0.0.1:$(free_port)
cert = server.pem
key = server.key
ca = root/bundle.pem
max_body = 9223372036854775807m
[route "r"]
path = /
upstream = 127.0.0.1:$be
allow_any = true
CONF
expect_exit 2 "config file: max_body = 9223372036854775807m exits 2" timeout -s KILL 10 "$MTLS" proxy --config body.conf
expect_grep 'body.conf:[0-9]+: max_body' "$T_DIR/err" "naming the file, line and key"
expect_exit 2 "ca init --ttl $huge exits 2" "$MTLS" ca init huge --trust-domain example.org --ttl "$huge"
expect_grep "--ttl '$huge' is too long" "$T_DIR/err" "naming --ttl"
[ ! -e huge ] && ok "and writes nothing" || not_ok "ca init wrote a directory"
expect_exit 2 "ca issue --ttl $huge exits 2" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/x --ttl "$huge" --out x
expect_exit 2 "ca crl --ttl $huge exits 2" "$MTLS" ca crl --ca int --out x.crl --ttl "$huge"
[ ! -e x.crl ] && [ ! -e x.pem ] && ok "and they write nothing" || not_ok "files written"
exit 0
