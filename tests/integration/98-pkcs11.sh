#!/usr/bin/env bash
# Keys in a PKCS#11 token (SoftHSM2, its tokens in this test's folder): a
# P-256 key generated in the token, its CSR signed in the token, issued by
# `mtls ca issue --csr`; `mtls proxy --key 'pkcs11:...?pin-source=file:..'`
# serves curl and openssl s_client; `mtls doctor files` and `doctor connect`
# use token keys too. A wrong PIN, a missing object, a missing token, a PIN
# file others can read and pin-value are clear errors and exit 2. An
# offline root whose key is in the token (`ca init --key-uri
# --existing-key`) signs an intermediate; `ca serve` on it signs leaves in
# the token. (98-pkcs11-gen.sh: keys generated in the token.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/softhsm.sh"
cd "$T_DIR"
softhsm_setup
[ -f /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so ] || [ -n "$(find /usr/lib -name pkcs11.so -path '*engines-3*' 2>/dev/null | head -1)" ] \
    || { not_ok "libengine-pkcs11-openssl installed (scripts/deps.sh check)"; exit 0; }
softhsm_token wl 1234
softhsm_keypair wl 1234 server 01
softhsm_keypair wl 1234 client 02
pinfile pin 1234
pinfile badpin 9999
cp pin pin644 && chmod 644 pin644
ln -s pin pinlink
uri() { echo "pkcs11:token=wl;object=$1?pin-source=file:$T_DIR/${2:-pin}"; }

pki_root_int
# the CSRs are signed in the token (OpenSSL's pkcs11 engine: the test's own tool)
for who in server client; do
	q env OPENSSL_CONF=/dev/null openssl req -new -engine pkcs11 -keyform engine \
	    -key "pkcs11:token=wl;object=$who;type=private?pin-value=1234" -subj "/CN=$who" -out "$who.csr"
done
q "$MTLS" ca issue --ca int --csr server.csr --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
q "$MTLS" ca issue --ca int --csr client.csr --spiffe-id spiffe://example.org/ns/prod/client --out client
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/fileclient --out fileclient
[ ! -e server.key ] && ok "issuing for a token's CSR writes no key file" || not_ok "no key file" "$(ls)"

expect_exit 0 "doctor files: the token's key matches server.pem" "$MTLS" doctor files --cert server.pem --key "$(uri server)" --ca root/bundle.pem
expect_exit 1 "doctor files: the client's token key does not match server.pem" "$MTLS" doctor files --cert server.pem --key "$(uri client)" --ca root/bundle.pem

mkdir www && echo "hello from a token key" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

port=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert server.pem --key "$(uri server)" \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/fileclient --allow spiffe://example.org/ns/prod/client --workers 2
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy.log" && ok "the proxy starts with its key in the token" \
    || { not_ok "proxy with a token key starts" "$(cat "$T_DIR/proxy.log")"; exit 0; }
body=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert fileclient.pem --key fileclient.key "https://localhost:$port/hello.txt")
[ "$body" = "hello from a token key" ] && ok "curl with a client certificate gets the body" || not_ok "curl body" "$body"
body=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert fileclient.pem --key fileclient.key "https://localhost:$port/hello.txt")
[ "$body" = "hello from a token key" ] && ok "a second connection (another login-free signature) gets the body" || not_ok "curl again" "$body"
out=$(printf 'GET /hello.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -showcerts -ign_eof \
    -CAfile root/bundle.pem -cert fileclient.pem -cert_chain fileclient.pem -key fileclient.key -verify_return_error 2>&1)
[[ "$out" == *"Verify return code: 0 (ok)"* && "$out" == *"hello from a token key"* ]] \
    && ok "openssl s_client verifies the chain and gets the body" || not_ok "s_client" "$(echo "$out" | tail -20)"
n=$(echo "$out" | grep -c 'BEGIN CERTIFICATE')
[ "$n" = 2 ] && ok "the proxy sends leaf and intermediate" || not_ok "chain length" "$n certificates"
expect_exit 0 "doctor connect, its client key in the token too, is accepted" "$MTLS" doctor connect "127.0.0.1:$port" \
    --servername localhost --ca root/bundle.pem --cert client.pem --key "$(uri client)" --expect spiffe://example.org/ns/prod/server
expect_grep 'spiffe://example.org/ns/prod/server' "$T_DIR/out" "doctor connect shows the server's chain"
kill "$BG_PID"
expect_exit 2 "cert export refuses a token key (it never leaves the token)" "$MTLS" cert export --cert server.pem \
    --key "$(uri server)" --format pem --out exported.pem
expect_grep "never leaves it" "$T_DIR/err" "the refusal says why"
[ ! -e exported.pem ] && ok "no file is written for a token key" || not_ok "exported.pem written" "$(grep -A2 PRIVATE exported.pem)"

# clear errors; nothing starts
refuse() {	# refuse NAME KEY PATTERN (a proxy that starts instead is stopped at 20 s: exit 124)
	expect_exit 2 "$1: the proxy exits 2" timeout 20 "$MTLS" proxy --listen "127.0.0.1:$(free_port)" --target "127.0.0.1:$be" \
	    --cert server.pem --key "$2" --ca root/bundle.pem --allow-any --workers 1
	expect_grep "$3" "$T_DIR/err" "$1: the message says so"
}
refuse "a wrong PIN" "$(uri server badpin)" "pkcs11: token wl: PIN refused \(CKR_PIN_INCORRECT\) - check pin-source file .*/badpin"
refuse "a missing object" "$(uri nosuch)" "pkcs11:token=wl;object=nosuch: no such private key in token 'wl'"
grep -q 'pin-source' "$T_DIR/err" && not_ok "the missing-object message leaves the query out" "$(cat "$T_DIR/err")" \
    || ok "the missing-object message leaves the query out"
refuse "a missing token" "pkcs11:token=nope;object=server?pin-source=file:$T_DIR/pin" "no initialized token labelled 'nope'"
refuse "a PIN file mode 0644" "$(uri server pin644)" "pin644 is readable by others \(mode 644\): chmod 600"
refuse "a PIN file that is a symlink (to a good one)" "$(uri server pinlink)" "pkcs11 PIN file .*/pinlink is a symlink: give the path of the file itself"
refuse "pin-value in the URI" "pkcs11:token=wl;object=server?pin-value=1234" "pin-value is refused"
grep -q 1234 "$T_DIR/err" && not_ok "the pin-value message does not echo the PIN" || ok "the pin-value message does not echo the PIN"
refuse "a missing module" "pkcs11:token=wl;object=server?pin-source=file:$T_DIR/pin&module-path=$T_DIR/none.so" "pkcs11 module .*/none.so"

# ---- an offline root in the token ----
softhsm_token ca 4321 8765
softhsm_keypair ca 4321 root 0a
pinfile capin 4321
CAURI="pkcs11:token=ca;object=root?pin-source=file:$T_DIR/capin"
expect_exit 2 "ca init --key-uri refuses --pass-file" "$MTLS" ca init troot --trust-domain example.org --key-uri "$CAURI" --pass-file capin
expect_exit 2 "ca init --key-uri --existing-key with a wrong object: a clear error" "$MTLS" ca init troot \
    --trust-domain example.org --key-uri "pkcs11:token=ca;object=nosuch?pin-source=file:$T_DIR/capin" --existing-key
expect_grep "no such private key in token 'ca'" "$T_DIR/err" "the error names the missing object"
[ ! -e troot ] && ok "a failed ca init leaves no folder" || not_ok "no troot after a failure" "$(ls troot)"
expect_exit 2 "ca init --key-uri on a key the token holds: refused without --existing-key" "$MTLS" ca init troot \
    --trust-domain example.org --key-uri "$CAURI"
expect_grep "already holds this private key.*--existing-key" "$T_DIR/err" "the refusal names --existing-key"
expect_exit 0 "ca init --key-uri --existing-key: a root whose key is in the token" "$MTLS" ca init troot \
    --trust-domain example.org --key-uri "$CAURI" --existing-key
[ ! -e troot/ca.key ] && [ "$(stat -c %a troot/ca.keyuri)" = 600 ] && ok "no ca.key; ca.keyuri is 0600" \
    || not_ok "root files" "$(ls -l troot)"
grep -q 4321 troot/ca.keyuri && not_ok "ca.keyuri holds no PIN" || ok "ca.keyuri holds no PIN"
pub_token=$(p11_pub ca root)
pub_cert=$(cert_pub troot/ca.pem)
[ -n "$pub_token" ] && [ "$pub_token" = "$pub_cert" ] && ok "the root certificate holds the token's public key" \
    || not_ok "root public key" "$pub_token / $pub_cert"
expect_exit 0 "the offline root in the token signs an intermediate" "$MTLS" ca intermediate tint --parent troot --name tint
expect_exit 0 "the intermediate verifies under the token root" openssl verify -CAfile troot/ca.pem tint/ca.pem
sed -i "s|capin|badpin|" troot/ca.keyuri
expect_exit 2 "the root's URI with a wrong PIN file refuses to sign" "$MTLS" ca intermediate tint3 --parent troot --name tint3
expect_grep "PIN refused \(CKR_PIN_INCORRECT\)" "$T_DIR/err" "and says the PIN was refused"
sed -i "s|badpin|capin|" troot/ca.keyuri

cport=$(free_port)
start_bg caserve "$MTLS" ca serve --ca troot --listen "127.0.0.1:$cport" --url "https://localhost:$cport"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" && ok "ca serve starts on the token root" \
    || { not_ok "ca serve on the token root" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca troot --spiffe-id spiffe://example.org/ns/prod/web > web.token 2> err || not_ok "token create" "$(cat err)"
expect_exit 0 "ca serve signs an enrollment with the token key" "$MTLS" agent --ca-url "https://localhost:$cport" \
    --token-file web.token --out-dir web --once
expect_exit 0 "the enrolled certificate verifies under the token root" openssl verify -CAfile troot/bundle.pem web/svid.pem

# two key pairs without CKA_IDs: libp11 may pair a private key with the
# other's public key; such a key is refused, never used to make a root
# whose certificate does not verify
softhsm_token noid 1234
for l in a b; do
	q p11 noid 1234 --keypairgen --key-type EC:prime256v1 --label $l	# no --id
done
refused=0 bad=0
for l in a b; do
	"$MTLS" ca init "noid-$l" --trust-domain example.org --key-uri "pkcs11:token=noid;object=$l?pin-source=file:$T_DIR/pin" \
	    --existing-key > /dev/null 2> "noid-$l.err"
	case $? in
	0) openssl verify -CAfile "noid-$l/ca.pem" "noid-$l/ca.pem" > /dev/null 2>&1 || bad=$((bad + 1)) ;;
	2) grep -q 'does not verify with the public key paired with it' "noid-$l.err" && refused=$((refused + 1)) || bad=$((bad + 1)) ;;
	*) bad=$((bad + 1)) ;;
	esac
done
[ "$bad" = 0 ] && [ "$refused" -ge 1 ] && ok "a private key paired with another's public key is refused ($refused of 2)" \
    || not_ok "mis-paired token keys" "refused $refused, bad $bad: $(cat noid-*.err)"
