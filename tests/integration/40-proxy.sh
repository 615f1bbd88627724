#!/usr/bin/env bash
# mtls proxy with real peers: curl and openssl s_client through an inbound
# proxy (good, and HAProxy's trio: expired, revoked; plus no certificate,
# another CA, an identity not allowed, TLS 1.2), nginx behind an outbound
# proxy, an outbound+inbound pair carrying 10 MiB byte-identical, fail-closed
# startup, the admin endpoint.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
pki_bad_clients

# the backend: serves files, and echoes the sha256 of what is POSTed
mkdir www && echo "hello through mtls" > www/hello.txt && head -c 10485760 /dev/urandom > www/big.bin
cat > backend.py <<'PY'
import hashlib, http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0")); h = hashlib.sha256(); left = n
        while left > 0:
            b = self.rfile.read(min(65536, left))
            if not b: break
            h.update(b); left -= len(b)
        body = h.hexdigest().encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
be=$(free_port)
start_bg backend python3 backend.py "$be" www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

# fail closed
expect_exit 2 "inbound without --allow refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca root/bundle.pem
expect_grep '--allow' "$T_DIR/err" "the refusal names --allow"
expect_exit 2 "a non-loopback target refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 --target 192.0.2.1:80 \
    --cert server.pem --key server.key --ca root/bundle.pem --allow-any
expect_grep 'unsafe-target' "$T_DIR/err" "the refusal names --unsafe-target"
expect_exit 2 "an outbound --listen off loopback refuses to start" "$MTLS" proxy --outbound --listen 0.0.0.0:1 \
    --target "127.0.0.1:$be" --cert client.pem --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server
expect_grep 'unsafe-target' "$T_DIR/err" "the outbound refusal names --unsafe-target"
up=$(free_port)
start_bg unsafe "$MTLS" proxy --listen "127.0.0.1:$up" --target 192.0.2.1:80 --unsafe-target --cert server.pem --key server.key \
    --ca root/bundle.pem --allow-any --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/unsafe.log" && ok "with --unsafe-target a remote target is accepted" \
    || not_ok "--unsafe-target starts" "$(cat "$T_DIR/unsafe.log")"
kill "$BG_PID"
expect_exit 2 "a key that does not match refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 --target "127.0.0.1:$be" \
    --cert server.pem --key client.key --ca root/bundle.pem --allow-any
expect_grep 'does not match' "$T_DIR/err" "the refusal says the key does not match"

in_port=$(free_port) admin=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in_port" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --crl crl.pem --admin "127.0.0.1:$admin" \
    --log-format json --workers 2
IN_PID=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound.log" || { not_ok "inbound proxy starts" "$(cat "$T_DIR/inbound.log")"; exit 0; }
ok "inbound proxy starts"
url="https://localhost:$in_port"
log="$T_DIR/inbound.log"
count() { grep -c "\"result\":\"$1\"" "$log"; }
# logged PATTERN: wait until the inbound log has a handshake line with it
logged() { wait_for 5 grep -q "$1" "$log"; }

body=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert client.pem --key client.key "$url/hello.txt")
[ "$body" = "hello through mtls" ] && ok "curl with a good certificate: exact body" || not_ok "curl good" "$body"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert root/bundle.pem --cert client.pem --key client.key "$url/hello.txt")
[ "$code" = 200 ] && ok "curl good: HTTP 200" || not_ok "curl good: HTTP 200" "$code"
out=$(printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$in_port" -quiet \
    -CAfile root/bundle.pem -cert client.pem -cert_chain client.pem -key client.key -verify_return_error 2>/dev/null)
[[ "$out" == *"hello through mtls"* ]] && ok "openssl s_client with a good chain gets the body" || not_ok "s_client good" "$out"
logged '"peer_id":"spiffe://example.org/ns/prod/client"' && ok "the handshake log names the peer" || not_ok "peer in log"
grep '"event":"handshake"' "$log" | head -1 | python3 -c 'import json,sys; d=json.loads(sys.stdin.readline()); assert d["result"]=="ok" and d["tls_version"]=="TLSv1.3" and d["serial"] and d["cipher"] and d["group"] and "handshake_us" in d' \
    && ok "the handshake line has version, cipher, group, serial, time" || not_ok "handshake line fields" "$(head -3 "$log")"

reject() {	# reject NAME CODE CURL_ARGS...
	local name=$1 want=$2 before
	shift 2
	before=$(count "$want")
	if curl -sS -o /dev/null --max-time 10 --cacert root/bundle.pem "$@" "$url/hello.txt" 2>/dev/null; then
		not_ok "$name: refused" "curl succeeded"
	else
		ok "$name: refused"
	fi
	if wait_for 5 count_gt "$log" "\"result\":\"$want\"" "$before"; then ok "$name: logged $want"
	else not_ok "$name: logged $want" "$(tail -3 "$log")"; fi
}
reject "no client certificate" no_client_cert
reject "a certificate from another CA" unknown_ca --cert foreign.pem --key foreign.key
reject "an expired certificate" cert_expired --cert expired.pem --key expired.key
reject "a revoked certificate" revoked --cert revoked.pem --key revoked.key
reject "an identity not allowed" not_authorized --cert intruder.pem --key intruder.key
reject "an identity not allowed (again, from the verification cache)" not_authorized --cert intruder.pem --key intruder.key
n=$(grep '"result":"not_authorized"' "$log" | grep -c '"peer_id":"spiffe://example.org/ns/prod/intruder"')
[ "$n" -ge 2 ] && ok "every refusal names the peer, cached or not" || not_ok "refusals name the peer" "$(grep not_authorized "$log")"
reject "TLS 1.2 when 1.3 is required" protocol_version --tls-max 1.2 --cert client.pem --key client.key
before=$(count not_tls)
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 python3 -c "
import socket,sys; s=socket.create_connection(('127.0.0.1',$in_port)); s.sendall(sys.stdin.buffer.read()); s.settimeout(3)
try: s.recv(100)
except Exception: pass"
wait_for 5 count_gt "$log" '"result":"not_tls"' "$before" && ok "plain HTTP to the TLS port: not_tls" || not_ok "not_tls logged"

# admin endpoint
m=$(curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics")
[[ "$m" == *'mtls_handshakes_total{role="server",result="ok",resumed="false"}'* ]] && ok "/metrics counts ok handshakes" || not_ok "/metrics ok" "$m"
[[ "$m" == *'result="not_authorized"'* ]] && ok "/metrics counts refusals by code" || not_ok "/metrics by code"
[[ "$m" == *mtls_cert_expiry_timestamp_seconds* && "$m" == *mtls_handshake_seconds_bucket* ]] && ok "/metrics has expiry and latency" || not_ok "/metrics expiry"
[ "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/readyz")" = ready ] && ok "/readyz ready" || not_ok "/readyz"

# a resumed session is re-authorized: resumes while allowed
rm -f sess.pem
printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$in_port" -quiet -CAfile root/bundle.pem \
    -cert client.pem -cert_chain client.pem -key client.key -sess_out sess.pem >/dev/null 2>&1
out=$(printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$in_port" -CAfile root/bundle.pem \
    -cert client.pem -cert_chain client.pem -key client.key -sess_in sess.pem -ign_eof 2>&1)
[[ "$out" == *Reused* && "$out" == *"hello through mtls"* ]] && ok "a session ticket resumes" || not_ok "resumption" "$(echo "$out" | grep -E 'New|Reused')"
wait_for 5 grep -q '"resumed":true' "$log" && ok "the log marks the resumed handshake" || not_ok "resumed in log"

# ... and refused once the certificate it was made with is revoked: a new
# CRL reloads, and the old ticket must not resume
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client2
rm -f sess2.pem
printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$in_port" -quiet -CAfile root/bundle.pem \
    -cert client2.pem -cert_chain client2.pem -key client2.key -sess_out sess2.pem >/dev/null 2>&1
q "$MTLS" ca revoke --ca int "$(serial_of client2.pem)"
reloads=$(grep -c '"event":"reload"' "$log")
q "$MTLS" ca crl --ca int --out crl.pem --force
wait_for 10 count_gt "$log" '"event":"reload"' "$reloads" && ok "a new CRL file is reloaded" || not_ok "CRL reload"
before=$(grep -c '"result":"revoked"' "$log")
out=$(printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$in_port" -CAfile root/bundle.pem \
    -cert client2.pem -cert_chain client2.pem -key client2.key -sess_in sess2.pem -ign_eof 2>&1)
[[ "$out" != *Reused* && "$out" != *"hello through mtls"* ]] && ok "a revoked client's session does not resume" \
    || not_ok "revoked session refused" "$(echo "$out" | grep -E 'Reused|New|hello')"
wait_for 5 count_gt "$log" '"result":"revoked"' "$before" && ok "the retry is refused as revoked" || not_ok "revoked logged"

# outbound proxy to nginx with ssl_verify_client on
ng=$(free_port) out_port=$(free_port)
start_nginx_mtls "$ng" 'return 200 "nginx saw $ssl_client_s_dn_legacy|$ssl_client_verify\n";'
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$out_port" --target "127.0.0.1:$ng" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/outbound.log" || not_ok "outbound starts" "$(cat "$T_DIR/outbound.log")"
out=$(curl -sS --max-time 10 "http://127.0.0.1:$out_port/")
[[ "$out" == *"|SUCCESS"* ]] && ok "outbound proxy -> nginx ssl_verify_client on: verified" || not_ok "outbound to nginx" "$out"
bad_port=$(free_port)
start_bg outbound_bad "$MTLS" proxy --outbound --listen "127.0.0.1:$bad_port" --target "127.0.0.1:$ng" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/someone-else --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/outbound_bad.log"
curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$bad_port/" 2>/dev/null && not_ok "wrong --expect: refused" || ok "wrong --expect: refused"
wait_for 5 grep -q '"result":"identity_mismatch"' "$T_DIR/outbound_bad.log" && ok "wrong --expect: identity_mismatch logged" \
    || not_ok "identity_mismatch logged" "$(cat "$T_DIR/outbound_bad.log")"

# the pair: outbound -> inbound -> backend, 10 MiB both ways
pair=$(free_port)
start_bg pair "$MTLS" proxy --outbound --listen "127.0.0.1:$pair" --target "127.0.0.1:$in_port" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/pair.log"
got=$(curl -sS --max-time 60 "http://127.0.0.1:$pair/big.bin" | sha256sum | cut -d' ' -f1)
want=$(sha256sum www/big.bin | cut -d' ' -f1)
[ "$got" = "$want" ] && ok "10 MiB download through the pair is byte-identical" || not_ok "10 MiB download" "$got != $want"
got=$(curl -sS --max-time 60 --data-binary @www/big.bin -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$pair/")
[ "$got" = "$want" ] && ok "10 MiB upload through the pair is byte-identical" || not_ok "10 MiB upload" "$got != $want"
wait_for 5 grep -q '"bytes_out":1048[0-9]\{4\}' "$log" && ok "the close line counts the bytes" || not_ok "close line bytes" "$(grep close "$log" | tail -2)"

# the outbound side resumes its upstream sessions, and still names the peer
for _ in 1 2 3; do curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$pair/hello.txt"; done
wait_for 5 grep -q '"resumed":true' "$T_DIR/pair.log" && ok "the outbound proxy resumes upstream sessions" \
    || not_ok "outbound resumption" "$(grep handshake "$T_DIR/pair.log" | tail -2)"
grep '"resumed":true' "$T_DIR/pair.log" | grep -q '"peer_id":"spiffe://example.org/ns/prod/server"' \
    && ok "a resumed upstream handshake names the server" || not_ok "resumed names the server"

# SIGTERM: stops accepting, exits 0
kill -TERM "$IN_PID"
for _ in $(seq 1 100); do kill -0 "$IN_PID" 2>/dev/null || break; sleep 0.1; done
wait "$IN_PID" 2>/dev/null; rc=$?
[ "$rc" = 0 ] && ok "SIGTERM: exit 0" || not_ok "SIGTERM: exit 0" "exit $rc"
port_open "$in_port" && not_ok "after SIGTERM the port is closed" || ok "after SIGTERM the port is closed"
exit 0
