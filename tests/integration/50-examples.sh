#!/usr/bin/env bash
# The example programs, built against libmtls.so with only mtls.h: an mTLS
# echo server and client (non-blocking connection API), and verify_peer.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
EX=$BUILD/examples
for p in echo_server echo_client verify_peer; do
	[ -x "$EX/$p" ] || { not_ok "example $p is built (make examples)"; exit 0; }
done
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/echo/server --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/echo/client --out client
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/echo/stranger --out stranger

port=$(free_port)
start_bg echo "$EX/echo_server" "$port" server.pem server.key root/bundle.pem spiffe://example.org/echo/client 4
wait_for 10 grep -q listening "$T_DIR/echo.out" || { not_ok "echo_server starts" "$(cat "$T_DIR/echo.log")"; exit 0; }
expect_exit 0 "echo_client: echo over mTLS" "$EX/echo_client" 127.0.0.1 "$port" client.pem client.key root/bundle.pem \
    spiffe://example.org/echo/server "hello, mutual TLS"
expect_grep 'echo ok from spiffe://example.org/echo/server: hello, mutual TLS' "$T_DIR/out" "the client got its bytes back"
expect_exit 1 "echo_client with a stranger's certificate is refused" "$EX/echo_client" 127.0.0.1 "$port" stranger.pem \
    stranger.key root/bundle.pem spiffe://example.org/echo/server hi
expect_grep 'peer_rejected_our_cert' "$T_DIR/out" "the client reports peer_rejected_our_cert"
expect_exit 1 "echo_client expecting another server identity" "$EX/echo_client" 127.0.0.1 "$port" client.pem client.key \
    root/bundle.pem spiffe://example.org/echo/other hi
expect_grep 'identity_mismatch' "$T_DIR/out" "the client reports identity_mismatch"
out=$(printf 'ping\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet -CAfile root/bundle.pem \
    -cert client.pem -cert_chain client.pem -key client.key 2>/dev/null)
[ "$out" = ping ] && ok "openssl s_client gets its echo from echo_server" || not_ok "s_client echo" "$out"
wait_for 5 grep -q 'result=not_authorized' "$T_DIR/echo.out" && ok "echo_server logs not_authorized for the stranger" \
    || not_ok "server log" "$(cat "$T_DIR/echo.out")"

expect_exit 0 "verify_peer allows a matching identity" "$EX/verify_peer" root/bundle.pem 'spiffe://example.org/echo/*' client.pem
expect_grep '^identity: spiffe://example.org/echo/client$' "$T_DIR/out" "verify_peer lists the peer's identities (mtls_peer_identity)"
expect_grep '^valid: [0-9]* to [0-9]*$' "$T_DIR/out" "verify_peer prints the validity (mtls_peer_validity)"
expect_exit 1 "verify_peer refuses another" "$EX/verify_peer" root/bundle.pem 'spiffe://example.org/other/*' client.pem
expect_grep 'not_authorized' "$T_DIR/out" "verify_peer prints the code"
exit 0
