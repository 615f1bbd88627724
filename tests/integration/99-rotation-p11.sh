#!/usr/bin/env bash
# A new intermediate whose key is made in a PKCS#11 token (SoftHSM2):
# `ca rotation prepare --parent root --key-uri URI` writes rotation/new.keyuri
# (0600, no key file) and the key pair is in the token; a wrong PIN leaves
# nothing (no rotation folder, no token object); switch makes ca.keyuri
# the issuing key (ca.key gone, kept as rotation/old.key) and what `ca
# issue` signs then chains through the new intermediate; retire revokes the
# old one at the root.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
peers_need softhsm2-util pkcs11-tool
MOD=${MTLS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$MOD" ] || { not_ok "SoftHSM2 module $MOD (scripts/deps.sh check)"; exit 0; }
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T_DIR" > softhsm2.conf
export SOFTHSM2_CONF=$T_DIR/softhsm2.conf
q softhsm2-util --init-token --free --label ca --pin 4321 --so-pin 8765
printf '4321\n' > pin && chmod 600 pin
printf '9999\n' > badpin && chmod 600 badpin
uri() { echo "pkcs11:token=ca;object=$1?pin-source=file:$T_DIR/${2:-pin}"; }
count() { pkcs11-tool --module "$MOD" --token-label ca --login --pin 4321 --list-objects 2>/dev/null | grep -c "label: *$1\$"; }

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name "Issuing CA"
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/old --out old
expect_exit 2 "--key-uri without --parent is refused" "$MTLS" ca rotation prepare --ca int --key-uri "$(uri int2)"
expect_exit 2 "a wrong PIN is refused" "$MTLS" ca rotation prepare --ca int --parent root --key-uri "$(uri int2 badpin)"
expect_grep "PIN refused" "$T_DIR/err" "... saying so"
[ ! -e int/rotation ] && [ ! -e int/rotation.json ] && [ "$(count int2)" = 0 ] &&
    ok "a refused prepare leaves no rotation folder and nothing in the token" || not_ok "nothing left" "$(ls int) $(count int2)"
expect_exit 0 "prepare --key-uri makes the new intermediate's key in the token" \
    "$MTLS" ca rotation prepare --ca int --parent root --key-uri "$(uri int2)"
[ ! -e int/rotation/new.key ] && [ "$(stat -c %a int/rotation/new.keyuri)" = 600 ] && [ "$(count int2)" = 2 ] &&
    ok "no new.key; new.keyuri 0600; the key pair in the token" || not_ok "prepare files" "$(ls -l int/rotation) $(count int2)"
expect_exit 0 "publish" "$MTLS" ca rotation publish --ca int
expect_exit 0 "switch" "$MTLS" ca rotation switch --ca int
[ ! -e int/ca.key ] && [ "$(stat -c %a int/ca.keyuri)" = 600 ] && [ "$(stat -c %a int/rotation/old.key)" = 600 ] &&
    ok "after switch: ca.keyuri, no ca.key, the old key in rotation/old.key" || not_ok "switch files" "$(ls -l int int/rotation)"
expect_exit 0 "ca issue signs with the token's key" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/new --out new
sub=$(openssl x509 -in int/ca.pem -noout -subject | sed 's/^subject=//')
openssl x509 -in new.pem -noout -issuer | grep -qF "$sub" && openssl verify -CAfile root/ca.pem -untrusted new.pem new.pem > /dev/null &&
    ok "the new leaf chains to the root through the new intermediate" || not_ok "new leaf" "$(openssl x509 -in new.pem -noout -issuer)"
expect_exit 1 "retire is blocked by the old intermediate's leaf" "$MTLS" ca rotation retire --ca int --parent root
q "$MTLS" ca revoke --ca int "$(openssl x509 -in old.pem -noout -serial | cut -d= -f2)"
expect_exit 0 "retire --parent" "$MTLS" ca rotation retire --ca int --parent root

# ---- a CA whose key is already in the token: int (int2's key since the
# switch) rotated again, to int3; switch keeps int2's URI as
# rotation/old.keyuri, and ca serve answers OCSP for int2's leaves with it
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/mid --out mid
expect_exit 2 "prepare without --key-uri is refused: the new key would leave the token" \
    "$MTLS" ca rotation prepare --ca int --parent root
expect_grep "key is in a PKCS#11 token: give --key-uri" "$T_DIR/err" "... saying to give --key-uri"
[ -e int/rotation/old.key ] && [ ! -e int/rotation/old.keyuri ] && [ "$(count int3)" = 0 ] &&
    ok "the refused prepare left the finished rotation's folder as it was" || not_ok "refused prepare" "$(ls -l int/rotation)"
# the new intermediate's name carries the second it is made in, and the
# inventory tells the leaves of two intermediates apart by issuer name: in
# the second the current one was made (faketime), prepare is refused
t_int2=$(openssl x509 -in int/ca.pem -noout -subject | sed -n 's/.* \(20[0-9-]*\)T\([0-9][0-9]\)\([0-9][0-9]\)\([0-9][0-9]\)Z.*/\1 \2:\3:\4/p')
if command -v faketime > /dev/null && [ -n "$t_int2" ]; then
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" expect_exit 2 \
	    "prepare in the second the current intermediate was made is refused" \
	    faketime -f "@$t_int2 UTC" "$MTLS" ca rotation prepare --ca int --parent root --key-uri "$(uri int3)"
	expect_grep "would be named '.*' like the current one" "$T_DIR/err" "... saying the name would be the current one's"
	[ "$(count int3)" = 0 ] && [ -e int/rotation/old.key ] && ok "... and changes nothing" ||
	    not_ok "refused prepare changed something" "$(ls -l int/rotation; count int3)"
else
	not_ok "faketime is installed, int/ca.pem's name has a stamp (scripts/deps.sh check)" "$t_int2"
fi
t_now() { [ "$(date -u +%s)" -gt "$(date -u -d "$t_int2 UTC" +%s)" ]; }
wait_for 3 t_now
expect_exit 0 "prepare --key-uri for a CA whose key is in the token" \
    "$MTLS" ca rotation prepare --ca int --parent root --key-uri "$(uri int3)"
expect_exit 0 "publish (second rotation)" "$MTLS" ca rotation publish --ca int
cp int/ca.keyuri int2.keyuri
expect_exit 0 "switch (second rotation)" "$MTLS" ca rotation switch --ca int
cmp -s int2.keyuri int/rotation/old.keyuri && [ "$(stat -c %a int/rotation/old.keyuri)" = 600 ] &&
    [ ! -e int/rotation/old.key ] && [ ! -e int/ca.key ] && [ "$(cat int/ca.keyuri)" = "$(uri int3)" ] &&
    [ "$(count int2)" = 2 ] &&
    ok "after switch: rotation/old.keyuri (0600) is int2's URI, ca.keyuri int3's, no key file, int2 still in the token" ||
    not_ok "second switch files" "$(ls -l int int/rotation; cat int/ca.keyuri int/rotation/old.keyuri)"
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts after the switch" "$(cat "$T_DIR/caserve.log")"; exit 0; }
openssl ocsp -no_nonce -issuer int/rotation/old.pem -cert mid.pem -reqout mid.req 2> /dev/null
curl -sS --max-time 10 --cacert root/ca.pem -H 'Content-Type: application/ocsp-request' \
    --data-binary @mid.req "$URL/v1/ocsp" -o mid.resp 2> curl.err
openssl ocsp -respin mid.resp -issuer int/rotation/old.pem -cert mid.pem -VAfile int/rotation/old.pem > ocsp-old.txt 2>&1
grep -q "Response verify OK" ocsp-old.txt && grep -q "mid.pem: good" ocsp-old.txt &&
    ok "OCSP about an old intermediate's leaf: good, signed by the old key in the token" ||
    not_ok "OCSP by the old key" "$(cat curl.err ocsp-old.txt; tail -3 "$T_DIR/caserve.log")"
expect_exit 0 "ca issue signs with int3's key" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/new3 --out new3
openssl verify -CAfile root/ca.pem -untrusted new3.pem new3.pem > v3.txt 2>&1 &&
    openssl verify -CAfile root/ca.pem -untrusted int/ca.pem new3.pem > /dev/null 2>&1 &&
    ! openssl verify -CAfile root/ca.pem -untrusted int/rotation/old.pem new3.pem > /dev/null 2>&1 &&
    ok "the new leaf chains to the root through int3, not int2" ||
    not_ok "int3 leaf" "$(cat v3.txt; openssl x509 -in new3.pem -noout -issuer)"
for c in mid new; do q "$MTLS" ca revoke --ca int "$(openssl x509 -in $c.pem -noout -serial | cut -d= -f2)"; done
expect_exit 0 "retire --parent (second rotation)" "$MTLS" ca rotation retire --ca int --parent root
expect_grep "its key is in the token int/rotation/old.keyuri names: destroy it .pkcs11-tool --delete-object" "$T_DIR/out" \
    "retire says the old key is in the token, named by rotation/old.keyuri"
