#!/usr/bin/env bash
# Enrollment by a peer that is not mtls (issue 13, section 2; section 6):
# openssl req makes the key and CSR, curl enrolls at mtls ca serve (a scoped
# intermediate) with a token from mtls ca token, python3 writes the answer's
# certificate and bundle to files; then Go, Java (PKCS#12 from openssl
# pkcs12), Node and GnuTLS each use that certificate directly as a client
# through the inbound proxy; then curl renews with the certificate as its
# client certificate and the renewed one is used by Go. Every curl command
# is docs/api.md's, as written there (only host, port and files differ).
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
peers_need go java node gnutls-cli curl
peers_gopeer

pki_scoped
port=$(free_port)
CA=https://localhost:$port
q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/admin --out admin
start_bg caserve "$MTLS" ca serve --ca prod --listen "127.0.0.1:$port" --url "$CA" --dns localhost \
    --admin spiffe://example.org/ns/prod/admin
wait_for 15 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca prod --spiffe-id spiffe://example.org/ns/prod/web > web.token 2> token.err ||
    { not_ok "ca token create" "$(cat token.err)"; exit 0; }

# ---- docs/api.md, "First contact" ----
(
set -e
curl -sS --fail-with-body -k $CA/v1/bundle |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["bundle"], end="")' > root.pem
[ "$(openssl x509 -in root.pem -outform DER | sha256sum | cut -d' ' -f1)" = "$(cut -d. -f2 web.token)" ] ||
    { echo "not the CA of this token" >&2; exit 1; }
) > first.out 2>&1 && cmp -s <(openssl x509 -in root.pem) <(openssl x509 -in root/ca.pem) \
    && ok "first contact: the bundle fetched without verification has the token's root" \
    || { not_ok "first contact: the bundle fetched without verification has the token's root" "$(cat first.out)"; exit 0; }

# ---- docs/api.md, POST /v1/enroll ----
(
set -e
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout svid.key -subj /CN=web -out svid.csr
python3 -c 'import json, sys; print(json.dumps({"token": open(sys.argv[1]).read().strip(), "csr": open(sys.argv[2]).read()}))' \
    web.token svid.csr > enroll.json
curl -sS --fail-with-body --cacert root.pem -H 'Content-Type: application/json' \
    --data-binary @enroll.json $CA/v1/enroll > issued.json
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); open("svid.pem", "w").write(d["certificate"]); open("bundle.pem", "w").write(d["bundle"])' \
    issued.json
) > enroll.out 2>&1 && ok "curl enrolls an openssl req CSR with the token, as docs/api.md says" \
    || { not_ok "curl enrolls an openssl req CSR with the token, as docs/api.md says" "$(cat enroll.out issued.json)"; exit 0; }
python3 - issued.json <<'PY' && ok "the answer has the documented fields" || not_ok "the answer has the documented fields" "$(cat issued.json)"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"certificate", "bundle", "serial", "identity", "not_after"}, d.keys()
assert d["identity"] == "spiffe://example.org/ns/prod/web" and isinstance(d["not_after"], int), d
assert d["certificate"].count("BEGIN CERTIFICATE") == 2, "leaf and the intermediate"
PY
openssl verify -CAfile bundle.pem -untrusted svid.pem svid.pem > v.out 2>&1 &&
    openssl x509 -in svid.pem -noout -ext subjectAltName | grep -q 'URI:spiffe://example.org/ns/prod/web' \
    && ok "openssl verifies the issued chain with the answer's bundle; the SAN is the token's identity" \
    || not_ok "openssl verifies the issued chain" "$(cat v.out)"
[ "$(openssl x509 -in svid.pem -noout -pubkey)" = "$(openssl pkey -in svid.key -pubout)" ] \
    && ok "the certificate is for the CSR's key" || not_ok "the certificate is for the CSR's key"
# the token is spent: the documented error body
curl -sS --fail-with-body --cacert root.pem -H 'Content-Type: application/json' \
    --data-binary @enroll.json -o again.json -w '%{http_code}' $CA/v1/enroll > again.code 2>/dev/null
python3 -c 'import json, sys; d = json.load(open("again.json")); assert set(d) == {"error", "message"} and d["error"] == "bad_token" and "used" in d["message"], d' 2>/dev/null &&
    [ "$(cat again.code)" = 401 ] && ok "the token again: 401 {\"error\": \"bad_token\", \"message\": ...used...}" \
    || not_ok "the token again: 401 bad_token" "$(cat again.code again.json)"
curl -sS --fail-with-body --cacert root.pem -H 'Accept: application/jwk-set+json' $CA/v1/bundle > jwks.json 2>&1
python3 -c 'import json; d = json.load(open("jwks.json")); assert d["keys"] and all(k["use"] == "x509-svid" for k in d["keys"]), d' 2>/dev/null \
    && ok "GET /v1/bundle with Accept: application/jwk-set+json is a JWK Set" || not_ok "JWK Set bundle" "$(head -c 300 jwks.json)"

# ---- the issued certificate, used directly by each peer ----
be=$(free_port) in=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root.pem --allow spiffe://example.org/ns/prod/web --log-format json --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound.log" || { not_ok "inbound proxy starts" "$(cat "$T_DIR/inbound.log")"; exit 0; }
openssl pkcs12 -export -in svid.pem -inkey svid.key -out svid.p12 -passout pass:changeit 2> p12.err ||
    not_ok "openssl pkcs12 -export of the issued certificate" "$(cat p12.err)"
# client_run PEER PEM KEY P12
client_run() {
	case "$1" in
	go) timeout 20 ./gopeer client -connect "127.0.0.1:$in" -name localhost -cert "$2" -key "$3" -ca root.pem ;;
	java) timeout 30 java "$P/Client.java" localhost "$in" "$4" changeit root.pem ;;
	node) timeout 20 node "$P/peer.js" client "$in" "$2" "$3" root.pem ;;
	gnutls) printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
		timeout 20 gnutls-cli --x509cafile root.pem --x509certfile "$2" --x509keyfile "$3" -p "$in" localhost ;;
	esac
}
for peer in go java node gnutls; do
	before=$(grep -c '"event":"handshake".*ns/prod/web.*"result":"ok"' "$T_DIR/inbound.log")
	client_run "$peer" svid.pem svid.key svid.p12 > "$peer.out" 2> "$peer.err"
	if grep -q '"path": *"/"' "$peer.out" && count_gt "$T_DIR/inbound.log" \
	    '"event":"handshake".*ns/prod/web.*"result":"ok"' "$before"; then
		ok "$peer client with the curl-enrolled certificate -> inbound proxy: allowed, the app answers"
	else
		not_ok "$peer client with the curl-enrolled certificate -> inbound proxy: allowed, the app answers" \
		    "$(tail -5 "$peer.out"; tail -5 "$peer.err"; tail -2 "$T_DIR/inbound.log")"
	fi
done

# ---- docs/api.md, POST /v1/renew ----
(
set -e
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout new.key -subj /CN=web -out new.csr
python3 -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' new.csr > renew.json
curl -sS --fail-with-body --cacert root.pem --cert svid.pem --key svid.key -H 'Content-Type: application/json' \
    --data-binary @renew.json $CA/v1/renew > renewed.json
) > renew.out 2>&1 && ok "curl renews with the issued certificate as its client certificate, as docs/api.md says" \
    || { not_ok "curl renews, as docs/api.md says" "$(cat renew.out renewed.json)"; exit 0; }
python3 -c 'import json; d = json.load(open("renewed.json")); open("new.pem", "w").write(d["certificate"]); assert d["identity"] == "spiffe://example.org/ns/prod/web", d'
[ "$(serial_of new.pem)" != "$(serial_of svid.pem)" ] &&
    openssl x509 -in new.pem -noout -ext subjectAltName | grep -q 'URI:spiffe://example.org/ns/prod/web' &&
    [ "$(openssl x509 -in new.pem -noout -pubkey)" = "$(openssl pkey -in new.key -pubout)" ] \
    && ok "the renewed certificate: a new serial, the same identity, the new CSR's key" \
    || not_ok "the renewed certificate" "$(openssl x509 -in new.pem -noout -serial -ext subjectAltName 2>&1)"
client_run go new.pem new.key "" > go2.out 2> go2.err
grep -q '"path": *"/"' go2.out && ok "go client with the renewed certificate -> inbound proxy: allowed" \
    || not_ok "go client with the renewed certificate -> inbound proxy: allowed" "$(tail -3 go2.err)"
curl -sS --fail-with-body --cacert root.pem -H 'Content-Type: application/json' \
    --data-binary @renew.json -o norenew.json -w '%{http_code}' $CA/v1/renew > norenew.code 2>/dev/null
[ "$(cat norenew.code)" = 401 ] && grep -q '"error":"client_cert_required"' norenew.json \
    && ok "renew without a client certificate: 401 client_cert_required" || not_ok "renew without a client certificate" \
    "$(cat norenew.code norenew.json)"

# ---- docs/api.md: revoke, CRL, OCSP, health, as written there ----
serial=$(python3 -c 'import json; print(json.load(open("renewed.json"))["serial"])')
curl -sS --fail-with-body --cacert root.pem --cert admin.pem --key admin.key -H 'Content-Type: application/json' \
    --data '{"serial": "'"$serial"'", "reason": "keyCompromise"}' $CA/v1/revoke > revoked.json 2>&1
[ "$(cat revoked.json)" = "{\"serial\":\"$serial\",\"revoked\":true,\"already\":false}" ] \
    && ok "an admin revokes with curl: {serial, revoked: true, already: false}" || not_ok "revoke" "$(cat revoked.json)"
curl -sS --fail --cacert root.pem -o crl.der $CA/v1/crl && openssl crl -inform DER -in crl.der -noout -text > crl.txt 2>&1
grep -q "Serial Number: $serial" crl.txt && grep -q "Key Compromise" crl.txt \
    && ok "GET /v1/crl (DER) lists the serial, keyCompromise" || not_ok "crl" "$(head -c 400 crl.txt)"
openssl x509 -in prod/ca.pem -out int.pem
cp new.pem svid.pem
openssl ocsp -issuer int.pem -cert svid.pem -reqout req.der -no_nonce > /dev/null 2>&1
curl -sS --fail --cacert root.pem -H 'Content-Type: application/ocsp-request' --data-binary @req.der \
    -o resp.der $CA/v1/ocsp
openssl ocsp -respin resp.der -issuer int.pem -cert svid.pem -CAfile root.pem > ocsp1.txt 2>&1
curl -sS --fail --cacert root.pem -o resp.der "$CA/v1/ocsp/$(base64 -w0 req.der | tr '+/' '-_' | tr -d '=')"
openssl ocsp -respin resp.der -issuer int.pem -cert svid.pem -CAfile root.pem > ocsp2.txt 2>&1
grep -q "Response verify OK" ocsp1.txt && grep -q "svid.pem: revoked" ocsp1.txt && grep -q "svid.pem: revoked" ocsp2.txt \
    && ok "OCSP POST and GET with curl: revoked, the response verifies" || not_ok "ocsp" "$(cat ocsp1.txt ocsp2.txt)"
[ "$(curl -sS --cacert root.pem $CA/healthz)" = ok ] && [ "$(curl -sS --cacert root.pem -w ' %{http_code}\n' $CA/readyz)" = "ready
 200" ] && curl -sS --cacert root.pem $CA/metrics | grep -q '^mtls_ca_issued_total{how="renew"} 1$' \
    && ok "healthz, readyz and metrics answer as documented" || not_ok "healthz/readyz/metrics"
exit 0
