#!/usr/bin/env bash
# Federated trust domains (issue 16 §2): an inbound proxy trusting our root
# and partner.com's (ca = root/bundle.pem, partner.com:partner/bundle.pem).
# A partner client is let in by a partner rule; the partner's CA issuing
# one of our identities is refused as trust_domain_mismatch, whether the
# partner root is an mtls CA (its role widened by hand) or made with
# openssl without name constraints; a partner leaf's DNS name is not an
# identity here; our own root works as before; bad ca values stop the start.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
q "$MTLS" ca init partner --trust-domain partner.com
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://partner.com/ns/web --out pweb
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://partner.com/ns/other --dns admin.example.org --out pdns
q "$MTLS" ca issue --ca partner --dns only.partner.com --out ponlydns
# the partner's CA turned hostile: its role widened to our trust domain
sed -i 's|^allow = spiffe://partner.com/\*|allow = spiffe://partner.com/* spiffe://example.org/*|' partner/ca.conf
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://example.org/ns/prod/client --out forged
# a second partner whose root openssl made: no name constraints at all
mkdir other
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other/ca.key -out other/ca.pem \
    -days 30 -subj "/O=other.net/CN=other.net Root" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -addext "subjectKeyIdentifier=hash" 2>/dev/null ||
    { echo "setup failed: openssl root"; exit 1; }
now=$(date -u -d '-1 hour' +%Y%m%d%H%M%SZ) later=$(date -u -d '+1 day' +%Y%m%d%H%M%SZ)
backdated oforged URI:spiffe://example.org/ns/prod/client "$now" "$later" other || exit 1
backdated ogood URI:spiffe://other.net/ns/api "$now" "$later" other || exit 1

be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory "$T_DIR/partner"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

# bad values: stop the start with the reason
expect_exit 2 "two bundles of our own in ca refuse to start" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca "root/bundle.pem, int/bundle.pem" --allow-any
expect_grep 'two bundles of our own' "$T_DIR/err" "the refusal names the two own bundles"
expect_exit 2 "a missing partner bundle refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca "root/bundle.pem, partner.com:nope.pem" --allow-any
expect_grep 'nope.pem' "$T_DIR/err" "the refusal names the missing file"
cat partner/ca.pem > both.pem
expect_exit 2 "one root for two trust domains refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "root/bundle.pem, partner.com:partner/bundle.pem, partner.org:both.pem" --allow-any
expect_grep 'anchors one trust domain' "$T_DIR/err" "the refusal says a root anchors one trust domain"
cat partner/ca.pem root/ca.pem > withours.pem
expect_exit 2 "a partner bundle holding our own root refuses to start" timeout 10 "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "root/bundle.pem, partner.com:withours.pem" --allow-any
expect_grep 'one of our own roots' "$T_DIR/err" "the refusal says the root is one of our own"
expect_exit 2 "a partner bundle holding our own root, listed first, refuses to start" timeout 10 "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "partner.com:withours.pem, root/bundle.pem" --allow-any
expect_grep 'already the anchor of trust domain partner.com' "$T_DIR/err" "the refusal names the partner's trust domain"

port=$(free_port)
cat > fed.conf <<CONF
[listener "in"]
listen = 127.0.0.1:$port
target = 127.0.0.1:$be
cert = server.pem
key = server.key
ca = root/bundle.pem, partner.com:partner/bundle.pem, other.net:other/ca.pem
allow = spiffe://example.org/ns/prod/client spiffe://partner.com/ns/web spiffe://other.net/ns/api dns:admin.example.org
CONF
start_bg fed "$MTLS" proxy --config fed.conf --log-format json --workers 1
log="$T_DIR/fed.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "federated proxy starts" "$(cat "$log")"; exit 0; }
ok "federated proxy starts"

count() { grep '"event":"handshake"' "$log" | grep -c "$1"; }
get() {	# get CERT: the body of GET /ca.conf through the proxy, or nothing
	printf 'GET /ca.conf HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet \
	    -CAfile root/bundle.pem -cert "$1.pem" -cert_chain "$1.pem" -key "$1.key" 2>/dev/null
}
let_in() {	# let_in NAME CERT PEER_ID
	local before out pat="\"event\":\"handshake\".*\"peer_id\":\"$3\".*\"result\":\"ok\""
	before=$(grep -c "$pat" "$log")
	out=$(get "$2")
	[[ "$out" == *"trust_domain = partner.com"* ]] && ok "$1: the body arrives" || not_ok "$1: the body arrives" "$out"
	wait_for 5 count_gt "$log" "$pat" "$before" &&
	    ok "$1: logged ok for $3" || not_ok "$1: logged ok for $3" "$(tail -2 "$log")"
}
refuse() {	# refuse NAME CERT CODE
	local before out
	before=$(count "\"result\":\"$3\"")
	out=$(get "$2")
	[[ "$out" != *"trust_domain"* ]] && ok "$1: no byte of the body" || not_ok "$1: no byte of the body" "$out"
	wait_for 5 count_gt "$log" "\"result\":\"$3\"" "$before" && ok "$1: logged $3" ||
	    not_ok "$1: logged $3" "$(grep '"event":"handshake"' "$log" | tail -2)"
}

let_in "our own client (our root, as before)" client spiffe://example.org/ns/prod/client
let_in "the partner's client, allowed by a partner rule" pweb spiffe://partner.com/ns/web
let_in "other.net's client (openssl root), allowed by its rule" ogood spiffe://other.net/ns/api
refuse "partner.com's CA issuing one of our identities" forged trust_domain_mismatch
grep '"result":"trust_domain_mismatch"' "$log" | grep -q 'outside trust domain partner.com' &&
    ok "the reason names the partner's trust domain" || not_ok "reason names partner.com" "$(grep trust_domain_mismatch "$log" | tail -1)"
refuse "other.net's root (no name constraints) issuing one of our identities" oforged trust_domain_mismatch
refuse "a partner leaf with only a DNS name" ponlydns trust_domain_mismatch
refuse "a partner leaf's DNS name matching our dns: rule" pdns not_authorized

# ---- partner.com's ca serve: its bundle in the SPIFFE form ----
pp=$(free_port)
start_bg pserve "$MTLS" ca serve --ca partner --listen "127.0.0.1:$pp" --dns localhost
PSERVE_PID=$BG_PID
wait_for 15 grep -q '"event":"start"' "$T_DIR/pserve.log" || { not_ok "partner's ca serve starts" "$(cat "$T_DIR/pserve.log")"; exit 0; }
# what a SPIFFE bundle endpoint client sends: no Accept of ours
curl -sS --max-time 5 --cacert partner/bundle.pem -H 'Accept:' -D hdr.txt \
    "https://localhost:$pp/v1/bundle?format=spiffe" > pb.json
grep -qi '^content-type: application/json' hdr.txt && python3 - pb.json partner/ca.pem <<'PY' \
    && ok "GET /v1/bundle?format=spiffe with no Accept: the SPIFFE bundle (x509-svid keys, x5c = the root, sequence, refresh hint)" \
    || not_ok "?format=spiffe" "$(cat hdr.txt; head -c 400 pb.json)"
import base64, json, ssl, sys
d = json.load(open(sys.argv[1]))
root = ssl.PEM_cert_to_DER_cert(open(sys.argv[2]).read())
assert [k["use"] for k in d["keys"]] == ["x509-svid"]
assert base64.b64decode(d["keys"][0]["x5c"][0]) == root
assert d["keys"][0]["kty"] == "EC" and isinstance(d["spiffe_sequence"], int) and d["spiffe_refresh_hint"] > 0
PY
code=$(curl -sS -o bad.json -w '%{http_code}' --max-time 5 --cacert partner/bundle.pem "https://localhost:$pp/v1/bundle?format=jwks")
[ "$code" = 400 ] && grep -q bad_query bad.json && ok "an unknown ?format is a 400 bad_query" || not_ok "bad format 400" "$code $(cat bad.json)"
curl -sS --max-time 5 --cacert partner/bundle.pem -H 'Accept: application/json' "https://localhost:$pp/v1/bundle?format=pem" > pem.json
python3 -c 'import json,sys; assert "BEGIN CERTIFICATE" in json.load(open(sys.argv[1]))["bundle"]' pem.json &&
    ok "?format=pem wins over Accept" || not_ok "?format=pem" "$(head -c 200 pem.json)"

# ---- bundles fetched from partner endpoints (https_web, pinned root) ----
q "$MTLS" ca issue --ca partner --dns localhost --out pfile
cp pb.json served.json
cat > fileserve.py <<'PY'
import http.server, ssl, sys
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain("pfile.pem", "pfile.key")
s.socket = c.wrap_socket(s.socket, server_side=True); s.serve_forever()
PY
fp=$(free_port)
start_bg fileserve python3 fileserve.py "$fp"
wait_for 10 port_open "$fp" || { not_ok "bundle file server starts"; exit 0; }
fport=$(free_port) fport2=$(free_port)
cat > fetch.conf <<CONF
[listener "fetched"]
listen = 127.0.0.1:$fport
target = 127.0.0.1:$be
cert = server.pem
key = server.key
ca = root/bundle.pem, partner.com:https://localhost:$pp/v1/bundle?format=spiffe
bundle_root = partner.com:partner/bundle.pem
bundle_refresh = 1s
allow = spiffe://partner.com/ns/web spiffe://partner.com/ns/web2
[listener "file"]
listen = 127.0.0.1:$fport2
target = 127.0.0.1:$be
cert = server.pem
key = server.key
ca = root/bundle.pem, partner.com:https://localhost:$fp/served.json
bundle_root = partner.com:partner/bundle.pem
bundle_refresh = 1s
allow = spiffe://partner.com/ns/web spiffe://example.org/ns/prod/client
CONF
expect_exit 2 "an endpoint over plain http refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 --target "127.0.0.1:$be" \
    --cert server.pem --key server.key --ca "root/bundle.pem, partner.com:http://localhost:$pp/v1/bundle" --allow-any
expect_grep 'must be https' "$T_DIR/err" "the refusal says https"
expect_exit 2 "an endpoint not verified by the pinned root refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --allow-any \
    --ca "root/bundle.pem, partner.com:https://localhost:$pp/v1/bundle?format=spiffe"
start_bg fetch "$MTLS" proxy --config fetch.conf --log-format json --workers 1
flog="$T_DIR/fetch.log"
wait_for 15 grep -q '"event":"start"' "$flog" || { not_ok "proxy with fetched bundles starts" "$(cat "$flog")"; exit 0; }
grep '"event":"bundle"' "$flog" | grep -q '"roots":1' && ok "the partner's bundle was fetched at start (1 root)" ||
    not_ok "bundle fetched at start" "$(grep bundle "$flog")"
port=$fport log=$flog
let_in "fetched bundle: the partner's client" pweb spiffe://partner.com/ns/web
refuse "fetched bundle: partner.com's CA issuing our identity" forged trust_domain_mismatch

# the partner rotates: a second root in its bundle, served after a restart
q "$MTLS" ca init partner2 --trust-domain partner.com --name "partner.com Root 2"
q "$MTLS" ca issue --ca partner2 --spiffe-id spiffe://partner.com/ns/web2 --out pweb2
refuse "before the rotation, the new root's client (its issuer unknown)" pweb2 chain_incomplete
kill "$PSERVE_PID"
wait_for 10 count_gt "$flog" '"event":"bundle_fetch"' 0 && ok "the endpoint down: the fetch failure is logged" ||
    not_ok "bundle_fetch failure logged" "$(tail -3 "$flog")"
let_in "the endpoint down: the last good bundle still lets the partner in" pweb spiffe://partner.com/ns/web
cat partner2/ca.pem >> partner/bundle.pem
start_bg pserve "$MTLS" ca serve --ca partner --listen "127.0.0.1:$pp" --dns localhost
t0=$(ms)
wait_for 20 grep -q '"event":"bundle".*"roots":2' "$flog" && ok "the rotated bundle (2 roots) is picked up ($(( $(ms) - t0 )) ms after the endpoint restarted)" ||
    not_ok "rotated bundle picked up" "$(grep bundle "$flog" | tail -3)"
wait_for 10 count_gt "$flog" '"event":"reload".*"result":"ok"' 0 || not_ok "a reload follows the new bundle" "$(grep reload "$flog" | tail -2)"
let_in "after the rotation, the new root's client" pweb2 spiffe://partner.com/ns/web2
let_in "after the rotation, the old root's client" pweb spiffe://partner.com/ns/web

# a bundle that drops every root, then garbage: refused, the last good stays
port=$fport2
let_in "file endpoint: the partner's client" pweb spiffe://partner.com/ns/web
echo '{"keys": [], "spiffe_sequence": 99}' > served.json
wait_for 10 grep -q '"event":"bundle_rejected".*"listener":"file"\|"listener":"file".*"event":"bundle_rejected"' "$flog" &&
    ok "a bundle with no root is refused (bundle_rejected)" || not_ok "empty bundle refused" "$(grep -i bundle "$flog" | tail -3)"
let_in "after the empty bundle, the last good one still lets the partner in" pweb spiffe://partner.com/ns/web
echo 'not a bundle' > served.json
wait_for 10 count_gt "$flog" '"event":"bundle_rejected".*"listener":"file"\|"listener":"file".*"event":"bundle_rejected"' 1 &&
    ok "garbage is refused too" || not_ok "garbage refused" "$(grep -i bundle "$flog" | tail -3)"
let_in "after the garbage, the last good bundle still lets the partner in" pweb spiffe://partner.com/ns/web

# a hostile partner endpoint serving our own root beside its own: refused,
# our root stays ours (not scoped to partner.com), our clients still get in
let_in "file endpoint: our own client" client spiffe://example.org/ns/prod/client
cat partner/ca.pem root/bundle.pem > served.json
# the garbage before it is refused again at each refresh, so wait for the
# refusal that names our root, not for a count of refusals
wait_for 10 grep -q '"event":"bundle_rejected".*one of our own roots' "$flog" &&
    ok "a partner bundle holding our own root is refused, and the refusal says the root is one of our own" ||
    not_ok "partner bundle with our root refused" "$(grep -i bundle "$flog" | tail -3)"
let_in "after a partner served our root, our own client still gets in" client spiffe://example.org/ns/prod/client
let_in "and the partner's client too" pweb spiffe://partner.com/ns/web

# the HTTP gateway's routes see the identities libmtls verified: a partner
# leaf's DNS name (pdns: spiffe://partner.com/ns/other + DNS
# admin.example.org) does not match our dns: rule there either
gport=$(free_port)
cat > gwfed.conf <<CONF
[listener "gwfed"]
mode = http
listen = 127.0.0.1:$gport
cert = server.pem
key = server.key
ca = root/bundle.pem, partner.com:partner/bundle.pem
[route "conf"]
path = /ca.conf
upstream = 127.0.0.1:$be
allow = dns:admin.example.org spiffe://example.org/ns/prod/client
CONF
start_bg gwfed "$MTLS" proxy --config gwfed.conf --log-format json --workers 1
wait_for 10 port_open "$gport" || { not_ok "federated gateway starts" "$(cat "$T_DIR/gwfed.log")"; exit 0; }
gget() {	# gget CERT: the status line of GET /ca.conf through the gateway
	printf 'GET /ca.conf HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
	    timeout 10 openssl s_client -connect "127.0.0.1:$gport" -quiet -CAfile root/bundle.pem \
	    -cert "$1.pem" -cert_chain "$1.pem" -key "$1.key" 2>/dev/null | head -1 | tr -d '\r'
}
got=$(gget client)
[[ "$got" == *" 200"* ]] && ok "gateway: our client passes the route (dns: or its SPIFFE ID)" || not_ok "gateway: our client" "$got"
got=$(gget pdns)
[[ "$got" == *" 403"* ]] && ok "gateway: a partner leaf's DNS name does not pass our dns: route rule (403)" ||
    not_ok "gateway: partner DNS name passed a route" "$got"
