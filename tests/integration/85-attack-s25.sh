#!/usr/bin/env bash
# Attack session s25 (an outside attacker with the docs and the binary):
# the rotation of an intermediate under an offline root, what ca serve
# answers meanwhile, its HTTP. Findings and what held:
# docs/security/attack-s25.md.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name "example.org Issuing CA"
q "$MTLS" ca rotation prepare --ca int --parent root
q "$MTLS" ca rotation publish --ca int
cp -a int int.pub

# switch writes ca.key (the new key), then renames ca.pem (the new
# certificate): a kill -9 between the two leaves a CA whose key does not
# match its certificate, in phase published. docs/rotation.md: a crash
# leaves the previous phase and the step is run again. On main the run
# again failed ("int/ca.key: does not match ca.pem") and so did every
# command and ca serve's start on that directory, until someone copied
# rotation/old.key back by hand. The state, as the crash leaves it:
cp int/ca.pem int/rotation/old.pem && cp int/ca.key int/rotation/old.key && chmod 600 int/rotation/old.key
cp int/rotation/new.key int/ca.key
expect_exit 2 "the half-switched CA does not issue" \
    "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/a/sa/x --out x
expect_grep 'does not match ca.pem \(a rotation switch cut short\? run it again\)' "$T_DIR/err" \
    "... and says to run the switch again"
expect_exit 0 "switch run again after a crash between ca.key and ca.pem completes" \
    "$MTLS" ca rotation switch --ca int
grep -q '"phase": "switched"' int/rotation.json && ok "... the phase is switched" ||
    not_ok "... the phase is switched" "$(cat int/rotation.json)"
cmp -s int/ca.pem int/rotation/new.pem && cmp -s int/ca.key int/rotation/new.key &&
    cmp -s int/rotation/old.key int.pub/ca.key && ok "... ca.pem/ca.key are the new intermediate's, old.key the old one's" ||
    not_ok "... ca.pem/ca.key are the new intermediate's, old.key the old one's"
expect_exit 0 "... and the CA issues under the new intermediate" \
    "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/a/sa/x --out x
openssl verify -CAfile root/ca.pem -untrusted int/rotation/new.pem x.pem > /dev/null 2>&1 &&
    ok "... a leaf that verifies through the new intermediate" || not_ok "... a leaf that verifies through the new intermediate"
