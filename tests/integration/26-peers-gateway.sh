#!/usr/bin/env bash
# Go, Java (JDK 17), Node and GnuTLS (gnutls-cli) as clients of the HTTP
# gateway (mode = http; issue 13, section 2), with a PKI from mtls ca under
# a scoped intermediate:
#   a route allowed for the client's identity answers the app's bytes, and
#       the app received X-Forwarded-Client-Cert naming the client's SPIFFE
#       ID and the SHA-256 of its leaf, and X-Client-Spiffe-Id;
#   a route allowed only for another identity answers 403 and the
#       gateway's request line carries the taxonomy code not_authorized;
#   without a certificate (a public route lets the handshake through) a
#       route that needs one answers 403, logged no_client_cert.
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
peers_need go java node gnutls-cli
peers_gopeer

pki_scoped
q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/client --out client
echo changeit > p12.pw
q "$MTLS" cert export --cert client.pem --key client.key --format p12 --password-file p12.pw --out client.p12
ca=root/bundle.pem

be=$(free_port) gwp=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
cat > gw.conf <<CONF
[proxy]
workers = 1
[listener "gw"]
mode = http
listen = 127.0.0.1:$gwp
cert = server.pem
key = server.key
ca = $ca
[route "mine"]
path = /mine
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/prod/client
[route "theirs"]
path = /theirs
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/prod/other
[route "open"]
path = /open
upstream = 127.0.0.1:$be
client_cert = optional
CONF
start_bg gw "$MTLS" proxy --config gw.conf
wait_for 10 grep -q '"event":"start"' "$T_DIR/gw.log" && wait_for 10 port_open "$be" \
    || { not_ok "the gateway starts" "$(cat "$T_DIR/gw.log")"; exit 0; }
hash=$(openssl x509 -in client.pem -outform DER | sha256sum | cut -d' ' -f1)

# get PEER PATH: that peer's client, with client's certificate, GET PATH
get() {
	case "$1" in
	go) timeout 20 ./gopeer client -connect "127.0.0.1:$gwp" -name localhost -cert client.pem -key client.key \
	    -ca "$ca" -path "$2" ;;
	java) timeout 30 java "$P/Client.java" localhost "$gwp" client.p12 changeit "$ca" "$2" ;;
	node) timeout 20 node "$P/peer.js" client "$gwp" client.pem client.key "$ca" "$2" ;;
	gnutls) printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$2" |
		timeout 20 gnutls-cli --x509cafile "$ca" --x509certfile client.pem --x509keyfile client.key \
		    -p "$gwp" localhost ;;
	esac
}
# the JSON body of an HTTP answer in FILE: the object from the first '{'
# (gnutls-cli adds its own lines after it)
body() { python3 -c "
import json, sys
t = open(sys.argv[1], encoding='latin-1').read(); i = t.find('{')
print(json.dumps(json.JSONDecoder().raw_decode(t[i:])[0]) if i >= 0 else '')" "$1" 2>/dev/null; }
hdr() { python3 -c "import json,sys; print(json.load(sys.stdin)['headers'].get(sys.argv[1], ''))" "$1"; }

for peer in go java node gnutls; do
	get "$peer" "/mine/$peer" > "$peer.ok.out" 2> "$peer.ok.err"
	body "$peer.ok.out" > "$peer.ok.json"
	if grep -qE '^HTTP/1\.1 200' "$peer.ok.out" && grep -q "\"path\": *\"/mine/$peer\"" "$peer.ok.json"; then
		ok "$peer client -> gateway: the allowed route answers the app's bytes"
	else
		not_ok "$peer client -> gateway: the allowed route answers the app's bytes" \
		    "$(head -c 600 "$peer.ok.out"; tail -5 "$peer.ok.err")"
		continue
	fi
	xf=$(hdr x-forwarded-client-cert < "$peer.ok.json" 2>/dev/null)
	case "$xf" in
	*Hash=$hash\;*URI=spiffe://example.org/ns/prod/client) ok "$peer: the app got XFCC with the client's SPIFFE ID and leaf hash" ;;
	*) not_ok "$peer: the app got XFCC with the client's SPIFFE ID and leaf hash" "$xf" ;;
	esac
	[ "$(hdr x-client-spiffe-id < "$peer.ok.json" 2>/dev/null)" = spiffe://example.org/ns/prod/client ] \
	    && ok "$peer: the app got X-Client-Spiffe-Id" || not_ok "$peer: the app got X-Client-Spiffe-Id" "$(cat "$peer.ok.json")"

	get "$peer" "/theirs/$peer" > "$peer.no.out" 2> "$peer.no.err"
	if grep -qE '^HTTP/1\.1 403' "$peer.no.out" && ! grep -q '"headers"' "$peer.no.out"; then
		ok "$peer client -> gateway: a route for another identity answers 403"
	else
		not_ok "$peer client -> gateway: a route for another identity answers 403" "$(head -c 600 "$peer.no.out")"
	fi
	wait_for 10 grep -qE "\"route\":\"theirs\".*\"path\":\"/theirs/$peer\".*\"status\":403.*\"result\":\"not_authorized\"" \
	    "$T_DIR/gw.log" && ok "$peer: the gateway logs the 403 as not_authorized" \
	    || not_ok "$peer: the gateway logs the 403 as not_authorized" "$(grep "/theirs/$peer" "$T_DIR/gw.log")"
done
# with a public route the handshake takes a client without a certificate;
# a route that needs one refuses it, logged with the taxonomy code
printf 'GET /mine/anon HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 20 gnutls-cli --x509cafile "$ca" -p "$gwp" localhost > anon.out 2>&1
grep -qE '^HTTP/1\.1 403' anon.out && grep -q client_certificate_required anon.out \
    && ok "gnutls client without a certificate -> gateway: 403 client_certificate_required" \
    || not_ok "gnutls client without a certificate -> gateway: 403 client_certificate_required" "$(head -c 600 anon.out)"
wait_for 10 grep -qE '"path":"/mine/anon".*"status":403.*"result":"no_client_cert"' "$T_DIR/gw.log" \
    && ok "the gateway logs it as no_client_cert" \
    || not_ok "the gateway logs it as no_client_cert" "$(grep /mine/anon "$T_DIR/gw.log")"
grep -q "/theirs/" "$T_DIR/backend.log" && not_ok "the app never saw a refused request" "$(grep /theirs/ "$T_DIR/backend.log")" \
    || ok "the app never saw a refused request"
exit 0
