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
