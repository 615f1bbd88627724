#!/usr/bin/env bash
# The online CA end to end on 127.0.0.1: mtls ca serve, join tokens, mtls
# agent; every bad input gets its 4xx and records nothing; OCSP and CRL
# checked with openssl; revocation by an admin.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
openssl x509 -in int/ca.pem -out int1.pem
cat int1.pem root/bundle.pem > chain-roots.pem
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/gone --out gone
q "$MTLS" ca init other --trust-domain example.org --name "Other Root"
q "$MTLS" ca issue --ca other --spiffe-id spiffe://example.org/ns/prod/web --out foreign

port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --admin spiffe://example.org/admin
CA_PID=$BG_PID
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
ok "ca serve starts with a certificate issued by its own CA"
h=$(curl -sS --max-time 5 --cacert root/bundle.pem "$URL/healthz")
[ "$h" = ok ] && ok "ca serve: /healthz over TLS verified by the root" || not_ok "healthz" "$h"

# ---- enrollment with the agent ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token 2> err \
    && grep -Eq '^mtls2\.[0-9a-f]{64}\.[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$' web.token \
    && ok "token create prints a token carrying the root and CA fingerprints" || not_ok "token create" "$(cat err web.token)"
fp=$(openssl x509 -in root/bundle.pem -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
int_fp=$(openssl x509 -in int1.pem -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f)
grep -q "^mtls2\.$fp\.$int_fp\." web.token && ok "the token's fingerprints are the root's and the serving CA's SHA-256" \
    || not_ok "token fingerprints" "$(cat web.token)"
sqlite3 int/inventory.db "SELECT hash FROM tokens" | grep -q "$(cut -d. -f4 web.token)" \
    && not_ok "the token's secret must not be stored" || ok "only the token's hash is stored"
expect_exit 0 "agent --once enrolls with the token" "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web --once
[ "$(stat -c %a web/svid.key)" = 600 ] && ok "svid.key is 0600" || not_ok "svid.key mode" "$(stat -c %a web/svid.key)"
expect_exit 0 "the enrolled certificate verifies with the bundle the agent wrote" "$MTLS" cert verify web/svid.pem \
    --ca web/bundle.pem --spiffe-id spiffe://example.org/ns/prod/web --purpose client
openssl x509 -in web/svid.pem -noout -ext crlDistributionPoints,authorityInfoAccess > ext.txt 2>&1
grep -q "URI:$URL/v1/crl" ext.txt && grep -q "OCSP - URI:$URL/v1/ocsp" ext.txt \
    && ok "issued online: CRL distribution point and OCSP URL of this server" || not_ok "CDP/AIA" "$(cat ext.txt)"
s1=$(serial_of web/svid.pem)
expect_exit 0 "agent --once renews with the current certificate" "$MTLS" agent --ca-url "$URL" --cert web/svid.pem \
    --key web/svid.key --out-dir web --once
[ "$(serial_of web/svid.pem)" != "$s1" ] && ok "renewal installed a new serial" || not_ok "renewal serial"
expect_exit 1 "a token works once" "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web2 --once
expect_grep "used already" "$T_DIR/err" "the second use says the token was used"
# a token naming another CA's root: the agent refuses that server
sed "s/^mtls2\.[0-9a-f]*\./mtls2.$(printf '0%.0s' $(seq 64))./" web.token > wrongfp.token
expect_exit 1 "agent refuses a server without the token's root" "$MTLS" agent --ca-url "$URL" \
    --token-file wrongfp.token --out-dir web3 --once
expect_grep "root pin mismatch: want sha256:0{64}, got sha256:$fp .*bundle lacks it" "$T_DIR/err" "the refusal names the expected and found roots"

# ---- bad input: a 4xx, nothing recorded, still serving ----
rows() { sqlite3 int/inventory.db "SELECT count(*) FROM certs"; }
burned() { sqlite3 int/inventory.db "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL"; }
before=$(rows) burned_before=$(burned)
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/api > api.token
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key -subj /CN=api -out api.csr 2>/dev/null
openssl req -new -key api.key -subj /CN=api -addext subjectAltName=URI:spiffe://example.org/ns/prod/root-shell \
    -out other.csr 2>/dev/null
python3 - <<'PY'
import base64, json
tok = open("api.token").read().strip()
good = open("api.csr").read()
der = bytearray(base64.b64decode("".join(l for l in good.splitlines() if "-----" not in l)))
der[-3] ^= 0x55                                   # inside the signature
bad = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode() + "-----END CERTIFICATE REQUEST-----\n"
w = lambda n, o: open(n, "w").write(o if isinstance(o, str) else json.dumps(o))
w("big.json", json.dumps({"token": tok, "csr": good, "pad": "x" * 70000}))
w("malformed.json", '{"token": "' + tok + '", "csr": ')
w("garbage.json", {"token": tok, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})
w("badsig.json", {"token": tok, "csr": bad})
w("other.json", {"token": tok, "csr": open("other.csr").read()})
w("unknown.json", {"token": "mtls2." + "0" * 64 + "." + "0" * 64 + ".nope", "csr": good})
w("notobject.json", [1, 2])
w("good.json", {"token": tok, "csr": good})
w("renew.json", {"csr": good})
PY
post() {	# post NAME PATH BODY WANT_STATUS WANT_WORD [CURL ARGS]
	local name=$1 path=$2 body=$3 want=$4 word=$5 got
	shift 5
	got=$(curl -sS --max-time 10 --cacert root/bundle.pem -o resp.json -w '%{http_code}' "$@" \
	    -H 'Content-Type: application/json' --data-binary @"$body" "$URL$path" 2>&1)
	if [ "$got" = "$want" ] && grep -qi -- "$word" resp.json; then
		ok "$name: $want"
	else
		not_ok "$name: want $want and '$word'" "$got $(head -c 300 resp.json 2>/dev/null)"
	fi
}
post "an oversized body" /v1/enroll big.json 413 "too large"
post "malformed JSON" /v1/enroll malformed.json 400 malformed_json
post "JSON that is not an object" /v1/enroll notobject.json 400 malformed_json
post "a garbage CSR" /v1/enroll garbage.json 400 bad_csr
post "a CSR whose signature does not verify" /v1/enroll badsig.json 400 "does not verify"
post "a CSR asking for another identity" /v1/enroll other.json 403 "root-shell"
post "an unknown token" /v1/enroll unknown.json 401 "unknown token"
post "renew without a client certificate" /v1/renew renew.json 401 client_cert_required
post "renew with another CA's certificate" /v1/renew renew.json 401 client_cert_refused \
    --cert foreign.pem --key foreign.key
echo '{"serial":"01"}' > rev.json
post "revoke by a client that is not an admin" /v1/revoke rev.json 403 not_admin --cert web/svid.pem --key web/svid.key
[ "$(rows)" = "$before" ] && ok "refused requests recorded no certificate" || not_ok "inventory unchanged" "$before -> $(rows)"
[ "$(burned)" = "$burned_before" ] && ok "refused requests burned no token" || not_ok "tokens unchanged"
post "the same token with a good CSR, after the refusals" /v1/enroll good.json 200 certificate
[ "$(rows)" = $((before + 1)) ] && ok "a good enrollment records exactly one certificate" || not_ok "one more row" "$(rows)"
post "the burned token again" /v1/enroll good.json 401 "used already"
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/late --ttl 1s > late.token
python3 -c "import json; print(json.dumps({'token': open('late.token').read().strip(), 'csr': open('api.csr').read()}))" > late.json
late_expired() { [ "$(sqlite3 int/inventory.db "SELECT count(*) FROM tokens WHERE spiffe_id = \
    'spiffe://example.org/ns/prod/late' AND expires_at <= strftime('%s', 'now')")" = 1 ]; }
wait_for 10 late_expired || not_ok "the 1s token expires"
post "an expired token" /v1/enroll late.json 401 "expired"
kill -0 "$CA_PID" 2>/dev/null && ok "after every bad input ca serve still runs" || not_ok "ca serve survived"

# ---- revocation, OCSP (openssl ocsp), CRL (openssl crl) ----
ocsp() { openssl ocsp -issuer int1.pem -cert "$1" -url "$URL/v1/ocsp" -CAfile root/bundle.pem 2>&1; }
ocsp web/svid.pem > ocsp1.txt
grep -q "Response verify OK" ocsp1.txt && grep -q "web/svid.pem: good" ocsp1.txt \
    && ok "openssl ocsp: a valid certificate is good (response verifies)" || not_ok "ocsp good" "$(cat ocsp1.txt)"
ws=$(serial_of web/svid.pem)
echo "{\"serial\":\"$ws\",\"reason\":\"keyCompromise\"}" > rev.json
post "an admin revokes" /v1/revoke rev.json 200 '"revoked":true' --cert admin.pem --key admin.key
ocsp web/svid.pem > ocsp2.txt
grep -q "web/svid.pem: revoked" ocsp2.txt && grep -q "keyCompromise" ocsp2.txt \
    && ok "openssl ocsp: revoked, keyCompromise" || not_ok "ocsp revoked" "$(cat ocsp2.txt)"
openssl ocsp -issuer int1.pem -cert web/svid.pem -reqout req.der -no_nonce 2>/dev/null
b64=$(base64 -w0 req.der | tr '+/' '-_' | tr -d '=')
curl -sS --max-time 5 --cacert root/bundle.pem -o resp.der "$URL/v1/ocsp/$b64"
openssl ocsp -respin resp.der -issuer int1.pem -cert web/svid.pem -CAfile root/bundle.pem > ocsp3.txt 2>&1
grep -q "web/svid.pem: revoked" ocsp3.txt && ok "OCSP GET form: revoked" || not_ok "ocsp GET" "$(cat ocsp3.txt)"
curl -sS --max-time 5 --cacert root/bundle.pem -o crl.der "$URL/v1/crl"
openssl crl -inform DER -in crl.der -CAfile chain-roots.pem -noout -text > crl.txt 2>&1
grep -q "verify OK" crl.txt && grep -q "Next Update" crl.txt && grep -q "$ws" crl.txt \
    && ok "openssl crl: GET /v1/crl verifies, has nextUpdate, lists the revoked serial" || not_ok "crl" "$(head -20 crl.txt)"
post "renew with a revoked certificate" /v1/renew renew.json 403 revoked --cert web/svid.pem --key web/svid.key
curl -sS --max-time 5 --cacert root/bundle.pem "$URL/metrics" > metrics.txt
grep -q 'mtls_ca_requests_total{route="enroll",code="4xx"}' metrics.txt && grep -q 'mtls_ca_issued_total{how="enroll"}' metrics.txt \
    && ok "/metrics counts requests by route and status, and issuance" || not_ok "metrics" "$(head -20 metrics.txt)"
grep -Eq '^mtls_ca_phase_calls_total\{phase="sign"\} [1-9]' metrics.txt && grep -q 'mtls_ca_phase_seconds_total{phase="commit"}' metrics.txt \
    && ok "/metrics has the time per issuance phase (issue 15)" || not_ok "phase metrics" "$(grep phase metrics.txt)"
grep -q '"event":"issue".*"how":"enroll"' "$log" && grep -q '"event":"revoke"' "$log" \
    && ok "issue and revoke are logged" || not_ok "issue/revoke log lines"
# a certificate with a DNS SAN (its CN is a copy of the first DNS name)
# renews to the same names
q "$MTLS" ca issue --ca int --dns dnsonly.example.org --out dnsonly
expect_exit 0 "a certificate with a DNS SAN renews" "$MTLS" agent --ca-url "$URL" --cert dnsonly.pem \
    --key dnsonly.key --ca-bundle root/bundle.pem --out-dir dnsr --once
openssl x509 -in dnsr/svid.pem -noout -ext subjectAltName 2>/dev/null | grep -q 'DNS:dnsonly.example.org' \
    && ok "and the renewed certificate carries the same DNS name" || not_ok "renewed DNS SAN" "$(openssl x509 -in dnsr/svid.pem -noout -text 2>&1 | head -30)"
# a role's key_types bind CSRs too (offline --csr; enroll and renew share the check)
openssl genpkey -algorithm ED448 -out ed448.key 2>/dev/null
openssl req -new -key ed448.key -subj /CN=x -out ed448.csr 2>/dev/null
expect_exit 2 "ca issue --csr with an Ed448 key (no role allows it): refused" \
    "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/ed --csr ed448.csr --out ed448
grep -q 'is not allowed by role' "$T_DIR/err" && [ ! -e ed448.pem ] \
    && ok "the refusal names the role's key types and writes nothing" || not_ok "ed448 refusal" "$(cat "$T_DIR/err")"
# a scoped intermediate cannot certify localhost for itself: a clear refusal
q "$MTLS" ca intermediate scoped --parent root --name "scoped" --permit-spiffe spiffe://example.org/ns/dev/
expect_exit 2 "ca serve from a scoped CA without a permitted --dns refuses to start" \
    timeout 10 "$MTLS" ca serve --ca scoped --listen "127.0.0.1:$(free_port)"
grep -q 'name_constraints' "$T_DIR/err" && grep -q 'fix: a scoped CA certifies only the names it permits' "$T_DIR/err" \
    && ok "and says which names a scoped CA can serve" || not_ok "scoped ca serve hint" "$(cat "$T_DIR/err")"
exit 0
