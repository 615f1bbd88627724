#!/usr/bin/env bash
# The agent with its key in a PKCS#11 token (SoftHSM2): `mtls agent --key
# 'pkcs11:...'` makes a P-256 pair in the token (or uses the one there),
# signs its CSR in the token, enrolls, and renews presenting the token key
# in mTLS (the client key set on libcurl's SSL_CTX, never a file). Each
# renewal replaces the key, as with a key file: a new pair (fresh CKA_ID)
# in the token, and the old pair deleted once the new certificate is
# installed; a proxy given the label follows the certificate. The out-dir
# gets svid.pem and bundle.pem only; --on-rotate sees the URI with the
# current key's id= in MTLS_KEY. A pair a crash left (recorded in
# svid.keyids) is deleted at the next start. A wrong PIN is a clear error
# and writes nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/softhsm.sh"
cd "$T_DIR"
softhsm_setup
softhsm_token wl 1234
pinfile pin 1234
pinfile badpin 9999
URI="pkcs11:token=wl;object=agent?pin-source=file:$T_DIR/pin"
objects() { p11 wl 1234 --list-objects 2>/dev/null; }
tokpub() { p11_pub wl agent; }
certpub() { cert_pub "$1"; }
# how many of the token's public keys under the label are <cert>'s
tokpub_of() { local c; c=$(certpub "$1"); for i in $(p11 wl 1234 --list-objects --type pubkey 2>/dev/null | sed -n 's/^ *ID: *//p'); do
    p11_pub wl --id "$i"; done | grep -c "^${c%% *}"; }
serial() { openssl x509 -in "$1" -noout -serial; }

pki_root_int
port=$(free_port)
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "https://localhost:$port"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token

"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > bad.token
expect_exit 2 "a wrong PIN: the agent exits 2" "$MTLS" agent --ca-url "https://localhost:$port" --token-file bad.token \
    --key "pkcs11:token=wl;object=agent?pin-source=file:$T_DIR/badpin" --out-dir bad --once
expect_grep "PIN refused \(CKR_PIN_INCORRECT\) - check pin-source file .*/badpin" "$T_DIR/err" "and names the PIN file"
[ -z "$(ls -A bad 2>/dev/null)" ] && ok "nothing is written with a wrong PIN" || not_ok "bad/ holds" "$(ls bad)"

expect_exit 0 "the agent enrolls with a key it makes in the token" "$MTLS" agent --ca-url "https://localhost:$port" \
    --token-file web.token --key "$URI" --out-dir web --once --on-rotate 'echo "$MTLS_KEY" > rotated'
[ -s web/svid.pem ] && [ -s web/bundle.pem ] && [ ! -e web/svid.key ] && ok "out-dir: svid.pem and bundle.pem, no key file" \
    || not_ok "out-dir files" "$(ls -l web)"
[ "$(objects | grep -c 'label: *agent$')" = 2 ] && ok "the token holds the agent's key pair" || not_ok "token objects" "$(objects)"
objects | grep -A4 'Private Key Object; EC' | grep -q 'never extractable' && ok "the agent's key is never extractable" \
    || not_ok "key attributes" "$(objects)"
[ "$(tokpub)" = "$(certpub web/svid.pem)" ] && ok "the certificate is for the token's key (the CSR was signed there)" \
    || not_ok "enrolled key" "$(tokpub) / $(certpub web/svid.pem)"
expect_exit 0 "the certificate verifies" openssl verify -CAfile root/ca.pem -untrusted int/ca.pem web/svid.pem
idre="pkcs11:token=wl;object=agent;id=(%[0-9a-f]{2}){16}[?]pin-source=file:$T_DIR/pin"
grep -Eqx "$idre" rotated && ok "--on-rotate gets the key's URI with its id= in MTLS_KEY" \
    || not_ok "MTLS_KEY" "$(cat rotated 2>/dev/null)"

# a proxy given the label (not an id) serves the agent's certificate
mkdir www && echo "hello via a rotated token key" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
pport=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pport" --target "127.0.0.1:$be" --cert web/svid.pem --key "$URI" \
    --ca web/bundle.pem --allow spiffe://example.org/ns/prod/client
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy.log" || { not_ok "proxy starts" "$(cat "$T_DIR/proxy.log")"; exit 0; }
served() { printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$pport" \
    -CAfile root/ca.pem -cert client.pem -cert_chain int/ca.pem -key client.key -ign_eof 2>/dev/null > served.out
    openssl x509 -in served.out -noout -serial 2>/dev/null; }
serves() { [ "$(served)" = "$(serial web/svid.pem)" ] && grep -q "hello via a rotated token key" served.out; }
wait_for 10 serves && ok "the proxy on the token key: a handshake, the agent's certificate" || not_ok "proxy handshake" "$(cat served.out)"

for n in 1 2; do
	s0=$(serial web/svid.pem)
	p0=$(certpub web/svid.pem)
	expect_exit 0 "renewal $n: the agent renews, presenting the token key in mTLS" "$MTLS" agent \
	    --ca-url "https://localhost:$port" --key "$URI" --out-dir web --once --on-rotate 'echo "$MTLS_KEY" > rotated'
	[ "$(serial web/svid.pem)" != "$s0" ] && [ "$(certpub web/svid.pem)" != "$p0" ] \
	    && ok "renewal $n: a new certificate for a new key" || not_ok "renewal $n: serial/key" "$s0 $p0"
	[ "$(tokpub)" = "$(certpub web/svid.pem)" ] && [ ! -e web/svid.key ] && [ ! -e web/svid.keyids ] \
	    && ok "renewal $n: the token's only key under the label is the certificate's; no key file, no ids left" \
	    || not_ok "renewal $n: token key" "$(ls web) $(objects)"
	[ "$(p11_labels wl 1234 agent)" = 2 ] && ok "renewal $n: the old pair is gone from the token (one pair left)" \
	    || not_ok "renewal $n: objects" "$(objects)"
	expect_grep '"event":"token_key_replaced"' "$T_DIR/err" "renewal $n: the agent logs the replacement"
	grep -Eqx "$idre" rotated && [ "$(cat rotated)" != "$(cat rotated.$((n - 1)) 2>/dev/null)" ] \
	    && ok "renewal $n: MTLS_KEY names the new key's id" || not_ok "renewal $n: MTLS_KEY" "$(cat rotated)"
	cp rotated "rotated.$n"
	wait_for 20 serves && ok "renewal $n: the proxy (key by label) serves the new certificate with the new key" \
	    || not_ok "renewal $n: proxy handshake" "$(served) / $(serial web/svid.pem) $(tail -3 "$T_DIR/proxy.log")"
done
expect_exit 0 "doctor files: MTLS_KEY (the id) matches the installed certificate" "$MTLS" doctor files \
    --cert web/svid.pem --key "$(cat rotated)" --ca web/bundle.pem
expect_grep '"path":"/v1/renew","status":200' "$T_DIR/caserve.log" "ca serve logged the mTLS renewal"

# a crash after a pair was made, before its certificate: the pair is
# recorded in svid.keyids; two pairs share the label meanwhile
softhsm_keypair wl 1234 agent 0badc0de
printf '0badc0de\n' > web/svid.keyids
pport=$(free_port)	# a proxy starting now, given the label
start_bg proxy2 "$MTLS" proxy --listen "127.0.0.1:$pport" --target "127.0.0.1:$be" --cert web/svid.pem --key "$URI" \
    --ca web/bundle.pem --allow spiffe://example.org/ns/prod/client
wait_for 10 serves && ok "two pairs under the label: a proxy given the label loads the certificate's key" \
    || not_ok "proxy with an orphan under the label" "$(cat "$T_DIR/proxy2.log")"
s0=$(serial web/svid.pem)
expect_exit 0 "the next start deletes the orphan, then renews" "$MTLS" agent --ca-url "https://localhost:$port" \
    --key "$URI" --out-dir web --once
expect_grep '"event":"token_key_deleted".*"id":"0badc0de"' "$T_DIR/err" "it logs the orphan's id"
[ "$(p11_labels wl 1234 agent)" = 2 ] && [ "$(serial web/svid.pem)" != "$s0" ] && [ ! -e web/svid.keyids ] \
    && ok "one pair left, the certificate renewed, no ids file" || not_ok "after the orphan" "$(objects)"

# a renewal that cannot open the token (the PIN file now wrong): it
# fails, nothing is made or recorded, the certificate and its key stay
s0=$(serial web/svid.pem)
pinfile pin 9999
expect_exit 2 "a wrong PIN at renewal: the agent exits 2" "$MTLS" agent --ca-url "https://localhost:$port" \
    --key "$URI" --out-dir web --once
pinfile pin 1234
[ "$(serial web/svid.pem)" = "$s0" ] && [ ! -e web/svid.keyids ] && [ "$(p11_labels wl 1234 agent)" = 2 ] \
    && [ "$(tokpub)" = "$(certpub web/svid.pem)" ] && ok "nothing made or recorded; the certificate and its key stay" \
    || not_ok "after a failed renewal" "$(ls web) $(objects)"

s1=$(serial web/svid.pem)
expect_exit 0 "--cert with --key pkcs11: renews into another out-dir" "$MTLS" agent --ca-url "https://localhost:$port" \
    --cert web/svid.pem --key "$URI" --ca-bundle web/bundle.pem --out-dir web2 --once
[ -s web2/svid.pem ] && [ ! -e web2/svid.key ] && [ "$(serial web2/svid.pem)" != "$s1" ] \
    && ok "web2: a renewed certificate, no key file" || not_ok "web2" "$(ls -l web2)"
[ "$(p11_labels wl 1234 agent)" = 4 ] && [ "$(tokpub_of web2/svid.pem)" = 1 ] && [ "$(tokpub_of web/svid.pem)" = 1 ] \
    && ok "web2: a pair of its own; --cert's key (web's) is kept, as a --cert key file is" || not_ok "web2 objects" "$(objects)"
expect_exit 2 "--cert with a token key that does not exist: refused, none made" "$MTLS" agent \
    --ca-url "https://localhost:$port" --cert web/svid.pem --key "pkcs11:token=wl;object=nosuch?pin-source=file:$T_DIR/pin" \
    --ca-bundle web/bundle.pem --out-dir web4 --once
expect_grep "no such private key in token 'wl'" "$T_DIR/err" "the message names the missing object"
expect_exit 2 "a file --key still needs --cert" "$MTLS" agent --ca-url "https://localhost:$port" --token-file web.token \
    --key web/svid.pem --out-dir web3 --once

# a URI naming its key by id= alone: a new pair needs a label, so that key
# is kept and re-certified at each renewal
softhsm_keypair wl 1234 byid 0c
IDURI="pkcs11:token=wl;id=%0c?pin-source=file:$T_DIR/pin"
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/byid > byid.token
expect_exit 0 "an id-only URI: the agent enrolls with the token's key" "$MTLS" agent --ca-url "https://localhost:$port" \
    --token-file byid.token --key "$IDURI" --out-dir byid --once
p0=$(certpub byid/svid.pem)
expect_exit 0 "an id-only URI: the agent renews" "$MTLS" agent --ca-url "https://localhost:$port" --key "$IDURI" \
    --out-dir byid --once
[ "$(certpub byid/svid.pem)" = "$p0" ] && [ "$(p11_pub wl byid)" = "$p0" ] && [ "$(p11_labels wl 1234 byid)" = 2 ] \
    && ok "an id-only URI: the same key re-certified, no pair made" || not_ok "id-only renewal" "$(objects)"
