#!/usr/bin/env bash
# An outbound proxy in front of a Go crypto/tls server with
# RequireAndVerifyClientCert and TLS 1.3 minimum (issue 13, section 3). In
# TLS 1.3 Go judges our certificate after our Finished, so its
# bad_certificate alert arrives when the proxy already pumps: the log must
# say peer_rejected_our_cert with the alert, not "result: ok" then a
# "reset" close. A certificate it accepts: the app's bytes, "result: ok".
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
cd "$T_DIR"
command -v go >/dev/null || { not_ok "go installed (scripts/deps.sh check)"; exit 0; }
pki_pair
q "$MTLS" ca init other --trust-domain other.org
export GOCACHE=$T_DIR/gocache GOPATH=$T_DIR/gopath GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off
go build -o gopeer "$P/gopeer.go" 2> go.err || { not_ok "go helper builds" "$(cat go.err)"; exit 0; }

g=$(free_port)
start_bg goserver timeout 60 ./gopeer server -listen "127.0.0.1:$g" -cert server.pem -key server.key \
    -ca root/bundle.pem -mode require -seconds 55
wait_for 15 grep -q listening "$T_DIR/goserver.out" || { not_ok "go server starts" "$(cat "$T_DIR/goserver.log")"; exit 0; }
# a second one that trusts only another CA: it refuses our certificate
g2=$(free_port)
start_bg goother timeout 60 ./gopeer server -listen "127.0.0.1:$g2" -cert server.pem -key server.key \
    -ca other/bundle.pem -mode require -seconds 55
wait_for 15 grep -q listening "$T_DIR/goother.out" || { not_ok "go server starts" "$(cat "$T_DIR/goother.log")"; exit 0; }

# outbound LISTEN_PORT GO_PORT NAME: an outbound proxy with client.pem to a Go server
outbound() {
	start_bg "$3" "$MTLS" proxy --outbound --listen "127.0.0.1:$1" --target "127.0.0.1:$2" --cert client.pem \
	    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server --workers 1 --log-format json
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$3.log" || { not_ok "$3 proxy starts" "$(cat "$T_DIR/$3.log")"; exit 0; }
}
good=$(free_port) bad=$(free_port)
outbound "$good" "$g" good
outbound "$bad" "$g2" bad

expect_exit 0 "through the outbound proxy, Go answers" curl -sS --max-time 10 "http://127.0.0.1:$good/"
expect_grep 'hello from go, client spiffe://example.org/ns/prod/client' "$T_DIR/out" "Go saw our SPIFFE ID"
wait_for 5 grep -q '"event":"close"' "$T_DIR/good.log"
expect_grep '"event":"handshake".*"role":"client".*"result":"ok"' "$T_DIR/good.log" "accepted: handshake result ok"
expect_grep '"event":"close".*"reason":"done"' "$T_DIR/good.log" "accepted: closed done"
# the handshake line comes before the close line
awk '/"event":"handshake"/{h=NR} /"event":"close"/{c=NR} END{exit !(h && c && h < c)}' "$T_DIR/good.log" \
    && ok "the handshake line precedes the close line" || not_ok "the handshake line precedes the close line" "$(cat "$T_DIR/good.log")"

curl -sS --max-time 10 "http://127.0.0.1:$bad/" > "$T_DIR/out" 2>&1
grep -q 'hello from go' "$T_DIR/out" && not_ok "a refused certificate gets no answer" || ok "a refused certificate gets no answer"
wait_for 10 grep -q '"event":"handshake"' "$T_DIR/bad.log"
expect_grep '"event":"handshake".*"result":"peer_rejected_our_cert".*alert bad certificate' "$T_DIR/bad.log" \
    "refused: peer_rejected_our_cert with Go's alert"
if grep -q '"result":"ok"' "$T_DIR/bad.log" || grep -q '"reason":"reset"' "$T_DIR/bad.log"; then
	not_ok "refused: no 'result: ok', no 'reset' close" "$(cat "$T_DIR/bad.log")"
else
	ok "refused: no 'result: ok', no 'reset' close"
fi
exit 0
