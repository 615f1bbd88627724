#!/usr/bin/env bash
# OCSP stapling in the data path: an inbound proxy whose certificate names
# an OCSP responder (issued by ca serve) fetches, checks and staples its
# status, and refreshes it at half its validity; an outbound proxy with
# --require-staple refuses an upstream with no staple, and one whose
# stapled status turned revoked, with code revoked.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --ocsp-ttl 20s
CA_PID=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/st/server > srv.token
"$MTLS" agent --once --ca-url "$URL" --token-file srv.token --out-dir srv > agent.log 2>&1 \
    || { not_ok "agent enrolls the server" "$(cat agent.log)"; exit 0; }
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/st/client --ttl 1h --out cli
mkdir www && echo "stapled hello" > www/index.html
be=$(free_port) in=$(free_port) in2=$(free_port) out=$(free_port) out2=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
inbound() { start_bg "$1" "$MTLS" proxy --listen "127.0.0.1:$2" --target "127.0.0.1:$be" --cert srv/svid.pem \
    --key srv/svid.key --ca srv/bundle.pem --allow spiffe://example.org/ns/st/client --workers 1 "${@:3}"; }
outbound() { start_bg "$1" "$MTLS" proxy --outbound --listen "127.0.0.1:$2" --target "127.0.0.1:$3" \
    --cert cli.pem --key cli.key --ca root/bundle.pem --expect spiffe://example.org/ns/st/server --workers 1 "${@:4}"; }
inbound inbound "$in"
inbound nostaple "$in2" --no-staple
outbound outbound "$out" "$in" --require-staple
outbound outbound2 "$out2" "$in2" --require-staple
for l in inbound nostaple outbound outbound2; do
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$l.log" || { not_ok "$l starts" "$(cat "$T_DIR/$l.log")"; exit 0; }
done
wait_for 10 port_open "$be"

# ---- the inbound proxy fetched its status before serving ----
grep -q '"event":"ocsp_staple".*"status":"good"' "$T_DIR/inbound.log" \
    && ok "inbound proxy fetched a good OCSP status for its certificate" \
    || not_ok "staple fetched" "$(grep ocsp_staple "$T_DIR/inbound.log")"
! grep -q '"event":"ocsp_staple"' "$T_DIR/nostaple.log" && ok "--no-staple fetches nothing" || not_ok "--no-staple"
sc() { openssl s_client -connect "127.0.0.1:$1" -status -cert cli.pem -key cli.key -CAfile root/bundle.pem \
    -servername localhost </dev/null 2>&1; }
sc "$in" > sc1.txt
grep -q "OCSP Response Status: successful" sc1.txt && grep -q "Cert Status: good" sc1.txt \
    && ok "openssl s_client -status receives the stapled response: good" || not_ok "s_client staple" "$(grep -A12 'OCSP' sc1.txt | head -20)"
sc "$in2" > sc2.txt
grep -q "OCSP response: no response sent" sc2.txt && ok "without stapling s_client sees no response" \
    || not_ok "no staple" "$(grep -i ocsp sc2.txt)"

# ---- --require-staple ----
body=$(curl -sS --max-time 10 "http://127.0.0.1:$out/index.html" 2>&1)
[ "$body" = "stapled hello" ] && ok "--require-staple: a good staple lets the request through" || not_ok "through" "$body"
! curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$out2/index.html" 2>/dev/null && ok "--require-staple: no staple, no request" \
    || not_ok "refused without staple"
wait_for 5 grep -q '"result":"revoked".*stapled no OCSP response' "$T_DIR/outbound2.log" \
    && ok "the refusal is logged with code revoked and why" || not_ok "code revoked" "$(grep handshake "$T_DIR/outbound2.log" | tail -2)"

# ---- a config file carries require_staple too; inbound refuses it ----
expect_exit 2 "--require-staple on an inbound listener is refused" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target 127.0.0.1:2 --cert cli.pem --key cli.key --ca root/bundle.pem --allow-any --require-staple
grep -q "outbound listeners" "$T_DIR/err" && ok "and it says why" || not_ok "why" "$(cat "$T_DIR/err")"
cat > out.conf <<CONF
[listener "up"]
mode = outbound
listen = 127.0.0.1:$(free_port)
target = 127.0.0.1:$in2
cert = cli.pem
key = cli.key
ca = root/bundle.pem
expect = spiffe://example.org/ns/st/server
require_staple = true
CONF
start_bg conf "$MTLS" proxy --config out.conf
wait_for 10 grep -q '"event":"start"' "$T_DIR/conf.log" || not_ok "config proxy starts" "$(cat "$T_DIR/conf.log")"
cport=$(sed -n 's/^listen = 127.0.0.1://p' out.conf)
! curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$cport/index.html" 2>/dev/null &&
    wait_for 5 grep -q '"result":"revoked"' "$T_DIR/conf.log" && ok "require_staple = true in a config file refuses too" \
    || not_ok "config require_staple" "$(tail -3 "$T_DIR/conf.log")"

# ---- [agent] in a config file: one process enrolls, serves and staples ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/st/conf > conf.token
ap=$(free_port)
cat > agent.conf <<CONF
[agent]
ca_url = $URL
token_file = conf.token
out_dir = confagent
[listener "api"]
listen = 127.0.0.1:$ap
target = 127.0.0.1:$be
allow = spiffe://example.org/ns/st/client
CONF
start_bg confagent "$MTLS" proxy --config agent.conf
wait_for 15 grep -q '"event":"start"' "$T_DIR/confagent.log" && test -s confagent/svid.pem \
    && ok "[agent] in a config file enrolls before the listener starts" || not_ok "[agent] config" "$(tail -5 "$T_DIR/confagent.log")"
sc "$ap" > sc5.txt
grep -q "Cert Status: good" sc5.txt && grep -q "URI:spiffe://example.org/ns/st/conf" <(openssl x509 -in confagent/svid.pem -noout -ext subjectAltName) \
    && ok "it serves the enrolled certificate, stapled" || not_ok "enrolled + stapled" "$(grep -A5 OCSP sc5.txt | head)"

# an answer saying "good", kept for the rollback check at the end
openssl ocsp -issuer int/ca.pem -cert srv/svid.pem -reqout ocspreq.der 2>/dev/null
curl -sS --max-time 5 --cacert root/bundle.pem -H 'Content-Type: application/ocsp-request' \
    --data-binary @ocspreq.der "$URL/v1/ocsp" -o good_old.der
openssl ocsp -respin good_old.der -resp_text -noverify 2>/dev/null | grep -q 'Cert Status: good' \
    || not_ok "an old good OCSP answer is captured"

# ---- revoke the server: the next refresh staples "revoked", the client refuses ----
serial=$(serial_of srv/svid.pem)
q "$MTLS" ca revoke --ca int "$serial" --reason keyCompromise
wait_for 25 grep -q '"event":"ocsp_staple".*"status":"revoked"' "$T_DIR/inbound.log" \
    && ok "the staple is refreshed before its nextUpdate and now says revoked" \
    || not_ok "refreshed staple" "$(grep ocsp_staple "$T_DIR/inbound.log")"
wait_for 5 grep -q '"event":"reload".*"trigger":"fetched".*"result":"ok"' "$T_DIR/inbound.log" || true
refused() { ! curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$out/index.html" 2>/dev/null; }
wait_for 10 refused && ok "the outbound proxy refuses the revoked upstream" || not_ok "revoked upstream refused"
wait_for 5 grep -q '"result":"revoked".*certificate is revoked' "$T_DIR/outbound.log" \
    && ok "logged: the server's certificate is revoked (stapled)" || not_ok "revoked log" "$(grep handshake "$T_DIR/outbound.log" | tail -2)"
sc "$in" > sc3.txt
grep -q "Cert Status: revoked" sc3.txt && ok "s_client sees the revoked staple" || not_ok "s_client revoked" "$(grep -A12 'OCSP' sc3.txt | head)"

# ---- the responder goes away: warned, retried, the proxy keeps serving ----
kill "$CA_PID"
wait_for 30 grep -q '"level":"warn".*"event":"ocsp_staple".*"error"' "$T_DIR/inbound.log" \
    && ok "a failed refresh is logged with its error" || not_ok "fetch failure logged" "$(grep ocsp_staple "$T_DIR/inbound.log" | tail -2)"
sc "$in" > sc4.txt
grep -q "Verify return code: 0" sc4.txt && ok "the inbound proxy keeps serving while its responder is down" \
    || not_ok "still serving" "$(tail -5 sc4.txt)"

# ---- rollback: an older, validly signed "good" never replaces "revoked" ----
# whoever answers at the responder's URL (here a stand-in with a valid
# certificate for localhost) replays the answer captured before the revocation
q "$MTLS" ca issue --ca int --dns localhost --out fakeocsp
wait_for 10 gone "$CA_PID" || not_ok "ca serve has stopped"
cat > fakeocsp.py <<'PY'
import http.server, ssl, sys
port, cert, key, resp = int(sys.argv[1]), sys.argv[2], sys.argv[3], open(sys.argv[4], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)
        print("served the old answer", flush=True)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.timeout = 1
for _ in range(120):
    srv.handle_request()
PY
start_bg fakeocsp python3 fakeocsp.py "$port" fakeocsp.pem fakeocsp.key good_old.der
wait_for 70 grep -q 'older than the staple held' "$T_DIR/inbound.log" \
    && ok "the replayed older good answer is refused, with why" \
    || not_ok "OCSP rollback refused" "$(cat "$T_DIR/fakeocsp.out" "$T_DIR/fakeocsp.log"; grep ocsp_staple "$T_DIR/inbound.log" | tail -3)"
sc "$in" > sc6.txt
grep -q "Cert Status: revoked" sc6.txt || grep -q "OCSP response: no response sent" sc6.txt \
    && ok "the proxy staples revoked, or nothing once that expired: never the old good" \
    || not_ok "no good staple after the replay" "$(grep -A12 'OCSP' sc6.txt | head)"
exit 0
