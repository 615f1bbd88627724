#!/usr/bin/env bash
# The full lifecycle: ca serve issues 15-second certificates, two agents
# keep an inbound and an outbound proxy supplied while a client loop runs
# requests through the pair; each side rotates at least 5 times with zero
# failed requests. Then the client is revoked and the inbound proxy (CRL
# fetched by URL every 2 s) refuses it. Last, ca serve is SIGKILLed during
# a loop of enrollments: what clients received is in the inventory, no
# serial twice, no burned token usable again.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
sed -i 's/^default_ttl = .*/default_ttl = 15s/' int/ca.conf
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --ttl 1h --out admin
port=$(free_port)
URL="https://localhost:$port"
serve() { start_bg "caserve$1" "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" \
    --admin spiffe://example.org/admin; CA_PID=$BG_PID; }
serve 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve1.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve1.log")"; exit 0; }

# ---- two agents, two proxies, one client loop ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/rot/server > srv.token
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/rot/client > cli.token
start_bg agent_srv "$MTLS" agent --ca-url "$URL" --token-file srv.token --out-dir srv
start_bg agent_cli "$MTLS" agent --ca-url "$URL" --token-file cli.token --out-dir cli
AGENT_CLI=$BG_PID
wait_for 15 test -s srv/svid.pem -a -s cli/svid.pem || { not_ok "agents enroll" "$(cat "$T_DIR"/agent_*.log)"; exit 0; }
ok "both agents enrolled"
mkdir www && echo "hello rotation" > www/index.html
be=$(free_port) in=$(free_port) out=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert srv/svid.pem \
    --key srv/svid.key --ca srv/bundle.pem --allow spiffe://example.org/ns/rot/client \
    --crl-url "$URL/v1/crl" --crl-refresh 2s --workers 1
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$out" --target "127.0.0.1:$in" \
    --cert cli/svid.pem --key cli/svid.key --ca cli/bundle.pem --expect spiffe://example.org/ns/rot/server --workers 1
wait_for 10 port_open "$be" && wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound.log" &&
    wait_for 10 grep -q '"event":"start"' "$T_DIR/outbound.log" || {
	not_ok "the pair starts" "$(cat "$T_DIR/inbound.log" "$T_DIR/outbound.log")"; exit 0; }
renewals() { grep -c '"event":"renew"' "$T_DIR/agent_$1.log"; }
# requests until both sides renewed 5 times (150 s at most)
# and until each proxy has seen 5 peer serials in full handshakes (a
# resumed session logs the serial it was made with, so the last renewal
# can show up a few requests after the agent wrote it)
python3 - "$out" "$T_DIR/agent_srv.log" "$T_DIR/agent_cli.log" "$T_DIR/inbound.log" "$T_DIR/outbound.log" > loop.txt <<'PY'
import re, sys, time, urllib.request
port, logs, plogs = int(sys.argv[1]), sys.argv[2:4], sys.argv[4:6]
n = fails = 0
errs = []
deadline = time.time() + 150
def renewed(p):
    return sum('"event":"renew"' in l for l in open(p))
def serials(p):
    return len({m.group(1) for l in open(p) if '"event":"handshake"' in l and '"result":"ok"' in l
                for m in [re.search(r'"serial":"([0-9A-F]*)"', l)] if m})
while time.time() < deadline and (min(renewed(p) for p in logs) < 5 or
                                  min(serials(p) for p in plogs) < 5):
    n += 1
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%d/index.html" % port, timeout=10).read()
        if body != b"hello rotation\n":
            fails += 1; errs.append("body %r" % body[:40])
    except Exception as e:
        fails += 1; errs.append(str(e))
    time.sleep(0.05)
print(n, fails, "; ".join(errs[:3]))
PY
read -r nreq nfail rest < loop.txt
[ "$(renewals srv)" -ge 5 ] && [ "$(renewals cli)" -ge 5 ] && ok "each side rotated at least 5 times ($(renewals srv), $(renewals cli))" \
    || not_ok "5 rotations each" "srv $(renewals srv), cli $(renewals cli); $(tail -3 "$T_DIR/agent_cli.log")"
[ "$nreq" -gt 100 ] && [ "$nfail" = 0 ] && ok "$nreq requests through the pair during the rotations, 0 failed" \
    || not_ok "zero failed requests" "$nreq requests, $nfail failed: $rest"
distinct() { grep '"event":"handshake"' "$1" | grep '"result":"ok"' | grep -o '"serial":"[0-9A-F]*"' | sort -u | wc -l; }
[ "$(distinct "$T_DIR/inbound.log")" -ge 5 ] && ok "the inbound proxy saw $(distinct "$T_DIR/inbound.log") client serials" \
    || not_ok "client serials change" "$(distinct "$T_DIR/inbound.log")"
[ "$(distinct "$T_DIR/outbound.log")" -ge 5 ] && ok "the outbound proxy saw $(distinct "$T_DIR/outbound.log") server serials" \
    || not_ok "server serials change" "$(distinct "$T_DIR/outbound.log")"
grep -q '"event":"reload".*"result":"ok"' "$T_DIR/inbound.log" && ok "the proxies reloaded the rotated files" \
    || not_ok "reloads"

# ---- one process as a self-renewing sidecar: mtls proxy --ca-url ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/rot/selfrenew > self.token
sp=$(free_port)
start_bg selfproxy "$MTLS" proxy --listen "127.0.0.1:$sp" --target "127.0.0.1:$be" --ca-url "$URL" \
    --token-file self.token --out-dir self --allow spiffe://example.org/ns/rot/client --workers 1
SELF_PID=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/selfproxy.log" && test -s self/svid.pem \
    && ok "proxy --ca-url enrolls itself and starts" || not_ok "built-in agent start" "$(tail -3 "$T_DIR/selfproxy.log")"
s0=$(serial_of self/svid.pem)
self_rotated() { grep -q '"event":"renew"' "$T_DIR/selfproxy.log" &&
    grep '"event":"reload"' "$T_DIR/selfproxy.log" | grep -q '"result":"ok"'; }
wait_for 20 self_rotated && [ "$(serial_of self/svid.pem)" != "$s0" ] \
    && ok "the built-in agent renews and the proxy reloads the new certificate" \
    || not_ok "built-in rotation" "$(grep -v handshake "$T_DIR/selfproxy.log" | tail -4)"
served=$(python3 - "$sp" <<'PY' 2>&1
import http.client, ssl, sys
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.check_hostname = False	# the sidecar's identity is a SPIFFE ID, no DNS name
ctx.load_cert_chain("cli/svid.pem", "cli/svid.key")
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=10)
c.request("GET", "/index.html"); print(c.getresponse().read().decode(), end="")
PY
)
[ "$served" = "hello rotation" ] && ok "the self-renewing sidecar serves with its rotated certificate" \
    || not_ok "self-renewing sidecar serves" "$served"
kill "$SELF_PID"
wait_for 10 grep -q '"event":"stop"' "$T_DIR/selfproxy.log" && ok "SIGTERM drains the sidecar (the agent thread does not take the signal)" \
    || not_ok "sidecar stop" "$(tail -2 "$T_DIR/selfproxy.log")"

# ---- revoke the client: the inbound proxy refuses it within its CRL interval ----
kill "$AGENT_CLI"; wait "$AGENT_CLI" 2>/dev/null
cs=$(serial_of cli/svid.pem)
t0=$(date +%s)
code=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert admin.pem --key admin.key -o revoke.json -w '%{http_code}' \
    -H 'Content-Type: application/json' -d "{\"serial\":\"$cs\"}" "$URL/v1/revoke")
[ "$code" = 200 ] && ok "the admin revokes the client's current certificate" || not_ok "revoke" "$code $(cat revoke.json)"
refused() { ! curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$out/index.html" 2>/dev/null; }
if wait_for 10 refused && grep -q "\"result\":\"revoked\".*\"serial\":\"$cs\"\|\"serial\":\"$cs\".*\"result\":\"revoked\"" "$T_DIR/inbound.log"; then
	ok "the pair refuses the revoked client within $(( $(date +%s) - t0 )) s (CRL refresh 2s): revoked in the log"
else
	not_ok "revoked client refused" "$(grep -v '"result":"ok"' "$T_DIR/inbound.log" | tail -3)"
fi
openssl x509 -in int/ca.pem -out int1.pem
openssl ocsp -issuer int1.pem -cert cli/svid.pem -url "$URL/v1/ocsp" -CAfile root/bundle.pem > ocsp.txt 2>&1
grep -q "cli/svid.pem: revoked" ocsp.txt && ok "openssl ocsp says revoked" || not_ok "ocsp revoked" "$(cat ocsp.txt)"

# ---- SIGKILL during enrollments ----
for i in $(seq 1 40); do "$MTLS" ca token create --ca int --spiffe-id "spiffe://example.org/ns/kill/w$i"; done > tokens.txt
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.key -subj /CN=k -out k.csr 2>/dev/null
python3 - "$port" "$CA_PID" > kill.txt 2> kill.err <<'PY' &
import http.client, json, os, signal, ssl, sys, threading, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile="root/bundle.pem")
csr = open("k.csr").read()
tokens = [t.strip() for t in open("tokens.txt")]
got = {}            # token -> serial received
def enroll(tok):
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=5)
    c.request("POST", "/v1/enroll", json.dumps({"token": tok, "csr": csr}), {"Content-Type": "application/json"})
    r = c.getresponse(); b = r.read(); c.close()
    return r.status, json.loads(b) if b else {}
killed = False
pending = list(tokens)
deadline = time.time() + 60
while pending and time.time() < deadline:
    tok = pending[0]
    try:
        st, body = enroll(tok)
    except Exception:
        time.sleep(0.1); continue          # the server is down: retry the same token
    if st == 200:
        got[tok] = body["serial"]
    elif not (st == 401 and "used already" in body.get("message", "")):
        print("unexpected", st, body, file=sys.stderr)
    pending.pop(0)
    if len(got) >= 10 and not killed:
        # kill while the next enrollment is in flight
        t = threading.Thread(target=lambda: (time.sleep(0.002), os.kill(pid, signal.SIGKILL)))
        t.start(); killed = True
        open("killed", "w").write("1")
print(json.dumps(got))
PY
KILLER=$!
wait_for 30 test -e killed || not_ok "the CA was killed mid-loop"
wait_for 10 sh -c "! kill -0 $CA_PID 2>/dev/null"
serve 2
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve2.log" && ok "ca serve restarts after SIGKILL" \
    || not_ok "restart" "$(cat "$T_DIR/caserve2.log")"
wait "$KILLER"
python3 - <<'PY' > durability.txt
import json, sqlite3
got = json.loads(open("kill.txt").read())
db = sqlite3.connect("int/inventory.db")
serials = {r[0] for r in db.execute("SELECT serial FROM certs")}
missing = [s for s in got.values() if s not in serials]
dups = db.execute("SELECT count(*) - count(DISTINCT serial) FROM certs").fetchone()[0]
orphans = db.execute("SELECT count(*) FROM tokens WHERE used_at IS NOT NULL AND serial NOT IN (SELECT serial FROM certs)").fetchone()[0]
print(len(got), len(missing), dups, orphans)
PY
read -r ngot nmissing ndups norphans < durability.txt
[ "$ngot" -ge 30 ] && [ "$nmissing" = 0 ] && ok "every one of $ngot certificates received is in the inventory" \
    || not_ok "received certificates recorded" "$(cat durability.txt kill.err)"
[ "$ndups" = 0 ] && [ "$norphans" = 0 ] && ok "no serial twice; every burned token paid for a recorded certificate" \
    || not_ok "no duplicates/orphans" "$(cat durability.txt)"
reused=$(python3 - "$port" <<'PY'
import http.client, json, ssl, sys
ctx = ssl.create_default_context(cafile="root/bundle.pem")
got = json.loads(open("kill.txt").read()); bad = 0
for tok in got:
    c = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx, timeout=5)
    c.request("POST", "/v1/enroll", json.dumps({"token": tok, "csr": open("k.csr").read()}), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); bad += r.status != 401
print(bad)
PY
)
[ "$reused" = 0 ] && ok "no burned token can be used again after the restart" || not_ok "burned tokens" "$reused accepted"
[ ! -s kill.err ] && ok "every answer was 200 or 'used already'" || not_ok "unexpected answers" "$(head -3 kill.err)"
exit 0
