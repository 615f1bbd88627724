#!/usr/bin/env bash
# The proxy's built-in agent with its key in a PKCS#11 token (SoftHSM2):
# `mtls proxy --ca-url --out-dir --key 'pkcs11:...'` (and [agent] key = in
# a config file) enrolls with a pair made in the token, serves svid.pem
# with the token key, renews every few seconds (a CA issuing 15-second
# certificates) with a new pair each time, reloads to the new certificate
# and its key, and deletes the old pair: the token holds one pair under the
# label, no key file is ever written. A file --key, or [agent] key = a
# file, is refused with a message naming the form.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/softhsm.sh"
cd "$T_DIR"
softhsm_setup
softhsm_token wl 1234
pinfile pin 1234
URI="pkcs11:token=wl;object=side?pin-source=file:$T_DIR/pin"
serial() { openssl x509 -in "$1" -noout -serial 2>/dev/null; }

pki_root_int
sed -i 's/^default_ttl = .*/default_ttl = 15s/' int/ca.conf
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --ttl 1h --out client
mkdir www && echo "hello from a token-key sidecar" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

# refused forms: they start nothing and write nothing
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/side > side.token
expect_exit 2 "a key file with the built-in agent is refused" "$MTLS" proxy --listen "127.0.0.1:$(free_port)" \
    --target "127.0.0.1:$be" --ca-url "$URL" --token-file side.token --out-dir bad --key client.key
expect_grep "the built-in agent takes .*--key pkcs11:" "$T_DIR/err" "and the message names the token form"
printf '[agent]\nca_url = %s\nout_dir = bad\nkey = client.key\n[listener "in"]\nlisten = 127.0.0.1:1\ntarget = 127.0.0.1:%s\n' \
    "$URL" "$be" > bad.conf
expect_exit 2 "[agent] key = a file is refused" "$MTLS" proxy --config bad.conf
expect_grep "key in \[agent\] is a pkcs11: URI" "$T_DIR/err" "and says what key = takes"
[ ! -e bad ] && ok "nothing written for the refused forms" || not_ok "bad/" "$(ls -l bad)"

# one process: enroll with a token key, serve, renew, reload
pp=$(free_port)
start_bg side "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --ca-url "$URL" \
    --token-file side.token --out-dir side --key "$URI" --allow spiffe://example.org/ns/prod/client --workers 1
SIDE=$BG_PID
wait_for 15 grep -q '"event":"start"' "$T_DIR/side.log" && test -s side/svid.pem \
    && ok "proxy --ca-url --key pkcs11: enrolls with a token key and starts" || { not_ok "start" "$(tail -5 "$T_DIR/side.log")"; exit 0; }
[ ! -e side/svid.key ] && ok "no key file in the out-dir" || not_ok "out-dir" "$(ls -l side)"
[ "$(p11_pub wl side)" = "$(cert_pub side/svid.pem)" ] && ok "svid.pem certifies the token's key" \
    || not_ok "enrolled key" "$(p11 wl 1234 --list-objects 2>&1)"
served() { printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$pp" \
    -CAfile root/ca.pem -cert client.pem -cert_chain int/ca.pem -key client.key -ign_eof 2>/dev/null > served.out
    openssl x509 -in served.out -noout -serial 2>/dev/null; }
serves_current() { [ "$(served)" = "$(serial side/svid.pem)" ] && grep -q "hello from a token-key sidecar" served.out; }
wait_for 10 serves_current && ok "an mTLS client gets the backend's bytes through the token-key sidecar" \
    || not_ok "served" "$(cat served.out | head -5)"
s0=$(serial side/svid.pem)
renewed() { [ "$(grep -c '"event":"renew"' "$T_DIR/side.log")" -ge 2 ] &&
    [ "$(grep '"event":"reload"' "$T_DIR/side.log" | grep -c '"result":"ok"')" -ge 2 ]; }
wait_for 40 renewed && ok "the built-in agent renewed twice and the proxy reloaded each time" \
    || not_ok "renewals" "$(grep -v handshake "$T_DIR/side.log" | tail -6)"
[ "$(serial side/svid.pem)" != "$s0" ] && ok "a new certificate is installed" || not_ok "serial unchanged" "$s0"
expect_grep '"event":"token_key_replaced"' "$T_DIR/side.log" "each renewal makes a new pair in the token"
one_pair() { [ "$(p11_labels wl 1234 side)" = 2 ] && [ "$(p11_pub wl side)" = "$(cert_pub side/svid.pem)" ]; }
wait_for 10 one_pair && ok "the token holds one pair under the label: the current certificate's" \
    || not_ok "token objects" "$(p11 wl 1234 --list-objects 2>&1)"
wait_for 20 serves_current && ok "after renewal the sidecar serves the new certificate with the new token key" \
    || not_ok "served after renewal" "$(served) / $(serial side/svid.pem)"
[ ! -e side/svid.key ] && ok "still no key file" || not_ok "out-dir" "$(ls -l side)"
kill "$SIDE"
wait_for 10 grep -q '"event":"stop"' "$T_DIR/side.log" && ok "SIGTERM stops it" || not_ok "stop" "$(tail -2 "$T_DIR/side.log")"

# the same from a config file's [agent] key =
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/side2 > side2.token
pp=$(free_port)
cat > side2.conf <<CONF
[agent]
ca_url = $URL
token_file = side2.token
out_dir = side2
key = pkcs11:token=wl;object=side2?pin-source=file:$T_DIR/pin
[listener "in"]
listen = 127.0.0.1:$pp
target = 127.0.0.1:$be
allow = spiffe://example.org/ns/prod/client
CONF
start_bg side2 "$MTLS" proxy --config side2.conf --workers 1
wait_for 15 grep -q '"event":"start"' "$T_DIR/side2.log" && test -s side2/svid.pem \
    && ok "[agent] key = pkcs11: enrolls and starts" || { not_ok "config start" "$(tail -5 "$T_DIR/side2.log")"; exit 0; }
[ "$(p11_pub wl side2)" = "$(cert_pub side2/svid.pem)" ] && [ ! -e side2/svid.key ] \
    && ok "config: svid.pem certifies the token key, no key file" || not_ok "config key" "$(ls side2)"
served2() { printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$pp" \
    -CAfile root/ca.pem -cert client.pem -cert_chain int/ca.pem -key client.key -ign_eof 2>/dev/null | grep -q "hello from"; }
wait_for 10 served2 && ok "config: the sidecar serves" || not_ok "config served"
