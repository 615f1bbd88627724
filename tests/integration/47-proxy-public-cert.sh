#!/usr/bin/env bash
# An inbound proxy whose server certificate comes from a public CA while
# its clients' certificates come from our private CA (--ca is the trust for
# peers): it starts with one own_chain warning, a private-CA client that the
# public root verifies gets the app's bytes, other clients are refused.
# An expired own certificate outside --ca still refuses to start.
. "$(dirname "$0")/lib.sh"
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
pki_root_int	# the private client CA
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/other --out other
# the "public" server PKI: a separate root the client trusts
q "$MTLS" ca init public --trust-domain public.test
q "$MTLS" ca issue --ca public --dns localhost --ip 127.0.0.1 --out server
backdated oldserver DNS:localhost 20200101000000Z 20200201000000Z public

be=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

expect_exit 2 "an expired own certificate outside --ca still refuses to start" "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert oldserver.pem --key oldserver.key --ca root/bundle.pem --allow-any
expect_grep 'cert_expired|expired' "$T_DIR/err" "the refusal says our certificate expired"

port=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --log-format json --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound.log" && ok "starts with a server certificate outside --ca" \
    || { not_ok "starts with a server certificate outside --ca" "$(cat "$T_DIR/inbound.log")"; exit 0; }
n=$(grep -c '"event":"own_chain"' "$T_DIR/inbound.log")
[ "$n" = 1 ] && ok "one own_chain warning line" || not_ok "one own_chain warning line" "$n: $(cat "$T_DIR/inbound.log")"
expect_grep '"level":"warn".*"event":"own_chain".*server.pem does not chain to --ca' "$T_DIR/inbound.log" \
    "the warning names our certificate and --ca"

expect_exit 0 "a private-CA client that trusts the public root gets the app's bytes" \
    curl -sS --max-time 10 --cacert public/bundle.pem --cert client.pem --key client.key "https://localhost:$port/x"
expect_grep '"path": *"/x"' "$T_DIR/out" "the app answered"
expect_exit 60 "the client verifying against the private CA refuses the public server cert" \
    curl -sS --max-time 10 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/x"
"$MTLS" ca issue --ca public --spiffe-id spiffe://public.test/ns/prod/client --out pubclient >/dev/null 2>&1 ||
    q "$MTLS" ca issue --ca public --dns client.public.test --out pubclient
curl -sS --max-time 10 --cacert public/bundle.pem --cert pubclient.pem --key pubclient.key \
    "https://localhost:$port/x" > "$T_DIR/out" 2>&1
[ -s "$T_DIR/out" ] && grep -q '"path"' "$T_DIR/out" && not_ok "a client from the public CA is refused" "$(cat "$T_DIR/out")" \
    || ok "a client from the public CA is refused"
wait_for 10 grep -q '"result":"unknown_ca"' "$T_DIR/inbound.log" && ok "the proxy logs unknown_ca for it" \
    || not_ok "the proxy logs unknown_ca for it" "$(tail -5 "$T_DIR/inbound.log")"
curl -sS --max-time 10 --cacert public/bundle.pem --cert other.pem --key other.key "https://localhost:$port/x" > "$T_DIR/out" 2>&1
grep -q '"path"' "$T_DIR/out" && not_ok "another private identity is refused" || ok "another private identity is refused"
wait_for 10 grep -q '"result":"not_authorized"' "$T_DIR/inbound.log" && ok "the proxy logs not_authorized" \
    || not_ok "the proxy logs not_authorized" "$(tail -5 "$T_DIR/inbound.log")"
exit 0
