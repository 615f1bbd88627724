#!/usr/bin/env bash
# The agent with its key in a PKCS#11 token (SoftHSM2): `mtls agent --key
# 'pkcs11:...'` makes a P-256 pair in the token (or uses the one there),
# signs its CSR in the token, enrolls, and renews presenting the token key
# in mTLS (the client key set on libcurl's SSL_CTX, never a file). The
# out-dir gets svid.pem and bundle.pem only; --on-rotate sees the URI in
# MTLS_KEY. A wrong PIN is a clear error and writes nothing.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
peers_need softhsm2-util pkcs11-tool
MOD=${MTLS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$MOD" ] || { not_ok "SoftHSM2 module $MOD (scripts/deps.sh check)"; exit 0; }
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T_DIR" > softhsm2.conf
export SOFTHSM2_CONF=$T_DIR/softhsm2.conf
q softhsm2-util --init-token --free --label wl --pin 1234 --so-pin 5678
printf '1234\n' > pin && chmod 600 pin
printf '9999\n' > badpin && chmod 600 badpin
URI="pkcs11:token=wl;object=agent?pin-source=file:$T_DIR/pin"
objects() { pkcs11-tool --module "$MOD" --token-label wl --login --pin 1234 --list-objects 2>/dev/null; }
tokpub() { pkcs11-tool --module "$MOD" --token-label wl --read-object --type pubkey --label agent 2>/dev/null \
    | openssl pkey -pubin -inform DER -outform DER 2>/dev/null | sha256sum; }
certpub() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum; }
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
[ "$(cat rotated 2>/dev/null)" = "$URI" ] && ok "--on-rotate gets the key's URI in MTLS_KEY" || not_ok "MTLS_KEY" "$(cat rotated 2>/dev/null)"

s0=$(serial web/svid.pem)
expect_exit 0 "the agent renews, presenting the token key in mTLS" "$MTLS" agent --ca-url "https://localhost:$port" \
    --key "$URI" --out-dir web --once
[ "$(serial web/svid.pem)" != "$s0" ] && ok "a new certificate is installed" || not_ok "renewed serial" "$s0"
[ "$(tokpub)" = "$(certpub web/svid.pem)" ] && [ ! -e web/svid.key ] && ok "for the same token key, still no key file" \
    || not_ok "renewed key" "$(ls web)"
expect_grep '"path":"/v1/renew","status":200' "$T_DIR/caserve.log" "ca serve logged the mTLS renewal"
[ "$(objects | grep -c 'label: *agent$')" = 2 ] && ok "the existing token key is used, no second pair" || not_ok "objects" "$(objects)"

s1=$(serial web/svid.pem)
expect_exit 0 "--cert with --key pkcs11: renews into another out-dir" "$MTLS" agent --ca-url "https://localhost:$port" \
    --cert web/svid.pem --key "$URI" --ca-bundle web/bundle.pem --out-dir web2 --once
[ -s web2/svid.pem ] && [ ! -e web2/svid.key ] && [ "$(serial web2/svid.pem)" != "$s1" ] \
    && ok "web2: a renewed certificate, no key file" || not_ok "web2" "$(ls -l web2)"
expect_exit 2 "--cert with a token key that does not exist: refused, none made" "$MTLS" agent \
    --ca-url "https://localhost:$port" --cert web/svid.pem --key "pkcs11:token=wl;object=nosuch?pin-source=file:$T_DIR/pin" \
    --ca-bundle web/bundle.pem --out-dir web4 --once
expect_grep "no such private key in token 'wl'" "$T_DIR/err" "the message names the missing object"
expect_exit 2 "a file --key still needs --cert" "$MTLS" agent --ca-url "https://localhost:$port" --token-file web.token \
    --key web/svid.pem --out-dir web3 --once
