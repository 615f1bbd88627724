#!/usr/bin/env bash
# Federation with the peers users run, not only OpenSSL (issue 17, s23
# item 4). partner.com's CA issues its workloads' certificates; our proxy
# trusts our root and partner.com's (ca = root/bundle.pem,
# partner.com:partner/bundle.pem).
#  - inbound: a partner client in Go (crypto/tls), Python (ssl) and GnuTLS
#    (gnutls-cli) with a partner certificate is let in by a partner rule;
#    the same client with a partner-issued certificate for one of OUR
#    identities is refused, trust_domain_mismatch in our log;
#  - outbound: our proxy as the client of a Go and a GnuTLS server holding
#    the partner's certificate (--expect a partner ID); a server holding a
#    partner-issued certificate for our identity is refused the same way;
#  - the SPIFFE bundle we serve (/v1/bundle?format=spiffe) read by Go's
#    standard library (go-spiffe is not available offline) and by Python
#    (json, ssl; joserfc's JWK set when installed) against the SPIFFE trust
#    domain and bundle spec's x509-svid fields.
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR" || exit 1
peers_need go gnutls-serv gnutls-cli cc
peers_gopeer
cc -shared -fPIC -o bind_lo.so "$P/bind_lo.c" -ldl || { not_ok "bind_lo.so builds"; exit 0; }
pki_pair
q "$MTLS" ca init partner --trust-domain partner.com
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://partner.com/ns/web --out pweb
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://partner.com/ns/api --dns localhost --out psrv
# the partner's CA turned hostile: its role widened to our trust domain
sed -i 's|^allow = spiffe://partner.com/\*|allow = spiffe://partner.com/* spiffe://example.org/*|' partner/ca.conf
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://example.org/ns/prod/client --out forged
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out fsrv
ca=root/bundle.pem
fed="root/bundle.pem, partner.com:partner/bundle.pem"

be=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
in=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "$fed" --allow spiffe://partner.com/ns/web --log-format json --workers 1
log=$T_DIR/inbound.log
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "federated inbound proxy starts" "$(cat "$log")"; exit 0; }

# client_run PEER NAME: that peer's client with NAME's certificate, to the inbound proxy
client_run() {
	case "$1" in
	go) timeout 20 ./gopeer client -connect "127.0.0.1:$in" -name localhost -cert "$2.pem" -key "$2.key" -ca "$ca" ;;
	python) timeout 20 python3 "$P/pyclient.py" "$in" "$2.pem" "$2.key" "$ca" ;;
	gnutls) printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
		timeout 20 gnutls-cli --x509cafile "$ca" --x509certfile "$2.pem" --x509keyfile "$2.key" \
		    -p "$in" localhost ;;
	esac
}
for peer in go python gnutls; do
	before=$(grep -c '"peer_id":"spiffe://partner.com/ns/web".*"result":"ok"' "$log")
	client_run "$peer" pweb > "$peer.in.out" 2> "$peer.in.err"
	grep -q '"path": *"/"' "$peer.in.out" && ok "$peer client with a partner certificate: let in by the partner rule" \
	    || not_ok "$peer partner client let in" "$(tail -5 "$peer.in.out"; tail -5 "$peer.in.err"; tail -2 "$log")"
	wait_for 5 count_gt "$log" '"peer_id":"spiffe://partner.com/ns/web".*"result":"ok"' "$before" \
	    && ok "$peer: logged ok for spiffe://partner.com/ns/web" || not_ok "$peer: logged ok" "$(tail -2 "$log")"
	before=$(grep -c '"result":"trust_domain_mismatch"' "$log")
	client_run "$peer" forged > "$peer.no.out" 2> "$peer.no.err"
	grep -q '"path"' "$peer.no.out" && not_ok "$peer: the partner CA's certificate for our identity gets no byte" \
	    "$(head -c 300 "$peer.no.out")" || ok "$peer: the partner CA's certificate for our identity gets no byte"
	wait_for 10 count_gt "$log" '"result":"trust_domain_mismatch".*outside trust domain partner.com' "$before" \
	    && ok "$peer: our log says trust_domain_mismatch (outside trust domain partner.com)" \
	    || not_ok "$peer: trust_domain_mismatch logged" "$(grep '"event":"handshake"' "$log" | tail -2)"
done

# ---- our proxy as the client of servers holding the partner's certificate ----
gp=$(free_port) tp=$(free_port) gf=$(free_port)
start_bg goserver timeout 90 ./gopeer server -listen "127.0.0.1:$gp" -cert psrv.pem -key psrv.key -ca "$ca" \
    -mode require -seconds 85
start_bg goforged timeout 90 ./gopeer server -listen "127.0.0.1:$gf" -cert fsrv.pem -key fsrv.key -ca "$ca" \
    -mode require -seconds 85
LD_PRELOAD="$T_DIR/bind_lo.so" start_bg gnutlsserver timeout 90 gnutls-serv -p "$tp" --x509certfile psrv.pem \
    --x509keyfile psrv.key --x509cafile "$ca" --require-client-cert --verify-client-cert --http
for s in goserver goforged; do
	wait_for 30 grep -q listening "$T_DIR/$s.out" || { not_ok "$s starts" "$(cat "$T_DIR/$s.log")"; exit 0; }
done
wait_for 15 port_open "$tp" || { not_ok "gnutls-serv starts" "$(cat "$T_DIR/gnutlsserver.log")"; exit 0; }
# outbound NAME PORT EXPECT: an outbound proxy with client.pem to PORT; the body in NAME.body
outbound() {
	local lp
	lp=$(free_port)
	start_bg "out-$1" "$MTLS" proxy --outbound --listen "127.0.0.1:$lp" --target "127.0.0.1:$2" \
	    --cert client.pem --key client.key --ca "$fed" --expect "$3" --workers 1 --log-format json
	wait_for 10 grep -q '"event":"start"' "$T_DIR/out-$1.log" || { not_ok "outbound proxy to $1 starts"; return 1; }
	curl -sS --max-time 10 "http://127.0.0.1:$lp/" > "$1.body" 2>&1
	wait_for 5 grep -q '"event":"handshake"' "$T_DIR/out-$1.log"
}
outbound go "$gp" spiffe://partner.com/ns/api &&
	grep -q 'hello from go, client spiffe://example.org/ns/prod/client' go.body \
	&& ok "our proxy -> Go server with the partner's certificate: the answer arrives" \
	|| not_ok "outbound -> Go partner server" "$(head -c 300 go.body)"
expect_grep '"event":"handshake".*"peer_id":"spiffe://partner.com/ns/api".*"result":"ok"' "$T_DIR/out-go.log" \
    "outbound -> Go: handshake ok with the partner's ID"
outbound gnutls "$tp" spiffe://partner.com/ns/api &&
	grep -qE 'HTTP/1\.[01] 200|GnuTLS' gnutls.body \
	&& ok "our proxy -> GnuTLS server with the partner's certificate: the answer arrives" \
	|| not_ok "outbound -> GnuTLS partner server" "$(head -c 300 gnutls.body)"
expect_grep '"event":"handshake".*"peer_id":"spiffe://partner.com/ns/api".*"result":"ok"' "$T_DIR/out-gnutls.log" \
    "outbound -> GnuTLS: handshake ok with the partner's ID"
outbound forged "$gf" spiffe://example.org/ns/prod/server
grep -q 'hello from go' forged.body && not_ok "a server with the partner CA's certificate for our identity gets no request" \
    || ok "a server with the partner CA's certificate for our identity gets no request"
expect_grep '"event":"handshake".*"result":"trust_domain_mismatch"' "$T_DIR/out-forged.log" \
    "outbound: that server is refused as trust_domain_mismatch"

# ---- the SPIFFE bundle we serve, read by other code ----
sp=$(free_port)
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$sp" --dns localhost
wait_for 15 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
curl -sS --max-time 5 --cacert "$ca" -H 'Accept:' "https://localhost:$sp/v1/bundle?format=spiffe" > sb.json
go build -o gobundle "$H/gobundle.go" 2> gob.err || { not_ok "gobundle builds" "$(cat gob.err)"; exit 0; }
cat server.pem > chain.pem
./gobundle sb.json chain.pem > gob.out 2>&1 && grep -q '^ok 1 root' gob.out \
    && ok "Go's standard library reads the served SPIFFE bundle and verifies our server's chain with it" \
    || not_ok "gobundle" "$(cat gob.out)"
openssl x509 -in root/ca.pem -noout -pubkey | openssl pkey -pubin -outform DER -out root.spki 2>/dev/null
python3 - sb.json root/ca.pem root.spki > pyb.out 2>&1 <<'PY' && ok "Python (json, ssl): the served bundle is a SPIFFE bundle: $(cat pyb.out)" \
    || not_ok "SPIFFE bundle fields (Python)" "$(cat pyb.out; head -c 400 sb.json)"
import base64, json, ssl, sys
d = json.loads(open(sys.argv[1]).read())
root = ssl.PEM_cert_to_DER_cert(open(sys.argv[2]).read())
spki = open(sys.argv[3], "rb").read()
def b64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
# SPIFFE Trust Domain and Bundle, section 4: a JWK Set; spiffe_sequence and
# spiffe_refresh_hint optional integers; 4.2.1: "use" is x509-svid, "x5c"
# exactly one base64 DER certificate (not base64url), the key parameters
# those of that certificate's public key
assert set(d) <= {"keys", "spiffe_sequence", "spiffe_refresh_hint"}, sorted(d)
assert isinstance(d.get("spiffe_sequence", 0), int) and d["spiffe_sequence"] >= 0
assert isinstance(d.get("spiffe_refresh_hint", 1), int) and d["spiffe_refresh_hint"] > 0
keys = [k for k in d["keys"] if k.get("use") == "x509-svid"]
assert len(keys) == len(d["keys"]) == 1, d["keys"]
k = keys[0]
assert len(k["x5c"]) == 1
assert base64.b64decode(k["x5c"][0], validate=True) == root, "x5c is not our root"
# a P-256 SubjectPublicKeyInfo ends with the uncompressed point 04 || x || y
assert k["kty"] == "EC" and k["crv"] == "P-256", (k["kty"], k.get("crv"))
x, y = b64u(k["x"]), b64u(k["y"])
assert len(x) == len(y) == 32 and spki.endswith(b"\x04" + x + y), "x/y are not the certificate's key"
assert "d" not in k, "a private key parameter"
# a JOSE library's reading, when one is installed: joserfc refuses a "use"
# outside its registry (sig, enc), which RFC 7517 4.2 allows ("Other values
# MAY be used") and SPIFFE requires: the key parameters without it
try:
    from joserfc.jwk import KeySet
    ks = KeySet.import_key_set({"keys": [{p: v for p, v in x.items() if p != "use"} for x in d["keys"]]})
    jose = "; joserfc imports %d key (without \"use\")" % len(ks.keys)
except ImportError:
    jose = ""
print("1 x509-svid key, x5c = our root, P-256 x/y = its key, sequence %d, refresh hint %d s%s" % (
    d["spiffe_sequence"], d["spiffe_refresh_hint"], jose))
PY
exit 0
