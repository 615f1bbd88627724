#!/usr/bin/env bash
# Go, Java (JDK 17), Node and GnuTLS against mtls, in two roles (issue 13,
# section 2), with a PKI from mtls ca under a scoped intermediate:
#   client -> inbound proxy: the allowed identity gets the app's bytes,
#       another identity of the same CA is refused and the proxy logs
#       not_authorized;
#   outbound proxy -> the peer as an mTLS server that requires and verifies
#       client certificates (Go RequireAndVerifyClientCert with TLS 1.3
#       minimum, Java needClientAuth, Node requestCert+rejectUnauthorized,
#       gnutls-serv --require-client-cert --verify-client-cert).
# Peer programs: helpers/peers/, built here; every server on 127.0.0.1
# with a bounded lifetime (gnutls-serv through bind_lo.so).
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
peers_need go java node gnutls-serv gnutls-cli cc
peers_gopeer
cc -shared -fPIC -o bind_lo.so "$P/bind_lo.c" -ldl || { not_ok "bind_lo.so builds"; exit 0; }

pki_scoped
q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/client --out client
q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/other --out other
# the JDK peers load what `mtls cert export --format p12` writes
echo changeit > p12.pw
for n in server client other; do
	q "$MTLS" cert export --cert "$n.pem" --key "$n.key" --format p12 --password-file p12.pw --out "$n.p12"
done
ca=root/bundle.pem

# the app behind the inbound proxy
be=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
in=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "$ca" --allow spiffe://example.org/ns/prod/client --log-format json --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound.log" || { not_ok "inbound proxy starts" "$(cat "$T_DIR/inbound.log")"; exit 0; }

# client_run PEER ID: that peer's client with ID's certificate, to the inbound proxy
client_run() {
	case "$1" in
	go) timeout 20 ./gopeer client -connect "127.0.0.1:$in" -name localhost -cert "$2.pem" -key "$2.key" -ca "$ca" ;;
	java) timeout 30 java "$P/Client.java" localhost "$in" "$2.p12" changeit "$ca" ;;
	node) timeout 20 node "$P/peer.js" client "$in" "$2.pem" "$2.key" "$ca" ;;
	gnutls) printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
		timeout 20 gnutls-cli --x509cafile "$ca" --x509certfile "$2.pem" --x509keyfile "$2.key" \
		    -p "$in" localhost ;;
	esac
}
for peer in go java node gnutls; do
	client_run "$peer" client > "$peer.in.out" 2> "$peer.in.err"
	if grep -q '"path": *"/"' "$peer.in.out"; then ok "$peer client -> inbound proxy: allowed identity gets the app's bytes"
	else not_ok "$peer client -> inbound proxy: allowed identity gets the app's bytes" \
	    "$(tail -5 "$peer.in.out"; tail -5 "$peer.in.err")"; fi
	before=$(grep -c '"result":"not_authorized"' "$T_DIR/inbound.log")
	client_run "$peer" other > "$peer.no.out" 2> "$peer.no.err"
	if grep -q '"path"' "$peer.no.out"; then not_ok "$peer client -> inbound proxy: another identity is refused" "$(cat "$peer.no.out")"
	else ok "$peer client -> inbound proxy: another identity is refused"; fi
	wait_for 10 count_gt "$T_DIR/inbound.log" '"result":"not_authorized"' "$before" &&
	    ok "$peer client -> inbound proxy: the proxy logs not_authorized" ||
	    not_ok "$peer client -> inbound proxy: the proxy logs not_authorized" "$(tail -3 "$T_DIR/inbound.log")"
done

# the peers as mTLS servers that require and verify client certificates
gp=$(free_port) jp=$(free_port) np=$(free_port) tp=$(free_port)
start_bg goserver timeout 90 ./gopeer server -listen "127.0.0.1:$gp" -cert server.pem -key server.key -ca "$ca" \
    -mode require -seconds 85
start_bg javaserver timeout 90 java "$P/Server.java" server.p12 changeit "$ca" 85 "need:$jp"
start_bg nodeserver timeout 90 node "$P/peer.js" server "$np" server.pem server.key "$ca" 85
LD_PRELOAD="$T_DIR/bind_lo.so" start_bg gnutlsserver timeout 90 gnutls-serv -p "$tp" --x509certfile server.pem \
    --x509keyfile server.key --x509cafile "$ca" --require-client-cert --verify-client-cert --http
for s in goserver javaserver nodeserver; do
	wait_for 30 grep -q listening "$T_DIR/$s.out" || { not_ok "$s starts" "$(cat "$T_DIR/$s.log")"; exit 0; }
done
wait_for 15 port_open "$tp" || { not_ok "gnutls-serv starts" "$(cat "$T_DIR/gnutlsserver.log")"; exit 0; }

# outbound PEER PORT ID: an outbound proxy with ID's certificate to PORT
outbound() {
	local lp
	lp=$(free_port)
	start_bg "out-$1-$3" "$MTLS" proxy --outbound --listen "127.0.0.1:$lp" --target "127.0.0.1:$2" \
	    --cert "$3.pem" --key "$3.key" --ca "$ca" --expect spiffe://example.org/ns/prod/server --workers 1 \
	    --log-format json
	wait_for 10 grep -q '"event":"start"' "$T_DIR/out-$1-$3.log" || { not_ok "outbound proxy to $1 starts"; return 1; }
	curl -sS --max-time 10 "http://127.0.0.1:$lp/" > "out-$1.body" 2>&1
	wait_for 5 grep -q '"event":"handshake"' "$T_DIR/out-$1-$3.log"
}
for peer in go:$gp java:$jp node:$np gnutls:$tp; do
	name=${peer%%:*} port=${peer#*:}
	outbound "$name" "$port" client || continue
	case "$name" in
	gnutls) want='HTTP/1\.[01] 200|GnuTLS' ;;
	*) want="hello from $name, client .*(spiffe://example.org/ns/prod/client|URI:spiffe://example.org/ns/prod/client)" ;;
	esac
	if grep -qE "$want" "out-$name.body"; then ok "outbound proxy -> $name mTLS server: the server's answer arrives"
	else not_ok "outbound proxy -> $name mTLS server: the server's answer arrives" "$(head -c 400 "out-$name.body")"; fi
	expect_grep '"event":"handshake".*"result":"ok"' "$T_DIR/out-$name-client.log" "outbound proxy -> $name: handshake ok"
done
exit 0
