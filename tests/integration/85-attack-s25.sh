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

# The agent's bundle rule admits a new root with "a cross-certificate: a
# CA certificate with the new root's subject and key, signed by a current
# root". Every intermediate is that, for its own name and key. On main the
# server of a scoped intermediate (its key holder: a compromised ca serve
# or replica) put in bundle.pem a self-signed twin of its certificate (same
# subject and key, no constraints) beside its certificate; its agents took
# the twin as a root of bundle.pem, and a leaf its key signed for a name
# outside its scope then verified against that bundle.pem (mtls cert
# verify: ok; a proxy with --ca DIR/bundle.pem the same). A cross-
# certificate now admits a root only when it constrains nothing (no path
# length, no name constraints, no scope or other extension but key usage,
# key identifiers and CRL/AIA pointers), as prepare's crosses do.
q "$MTLS" ca intermediate scoped --parent root --name "Prod CA" \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns localhost
port=$(free_port)
start_bg caserve "$MTLS" ca serve --ca scoped --listen "127.0.0.1:$port" --dns localhost
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
"$MTLS" ca token create --ca scoped --spiffe-id spiffe://example.org/ns/prod/sa/web > tok
mkdir -m 700 wl
expect_exit 0 "an agent enrolls at the scoped CA" \
    "$MTLS" agent --ca-url "https://localhost:$port" --token-file tok --out-dir wl --once
cp wl/bundle.pem wl.bundle.before
openssl req -x509 -new -key scoped/ca.key -subj "/O=example.org/CN=Prod CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out twin.pem 2>/dev/null || { echo "setup failed: openssl req"; exit 1; }
cat wl.bundle.before twin.pem scoped/ca.pem > scoped/bundle.pem
kill -HUP "$BG_PID"
wait_for 10 grep -q '"event":"reload","result":"ok"' "$log" || not_ok "ca serve reloads" "$(tail -3 "$log")"
expect_exit 1 "a renewal refuses the bundle whose new root is the scoped CA's self-signed twin" \
    "$MTLS" agent --ca-url "https://localhost:$port" --cert wl/svid.pem --key wl/svid.key --out-dir wl --once
expect_grep 'without an unconstrained cross-certificate' "$T_DIR/err" "... saying why"
cmp -s wl.bundle.before wl/bundle.pem && ok "... and bundle.pem is unchanged" ||
    not_ok "... and bundle.pem is unchanged" "$(grep -c BEGIN wl/bundle.pem) certificates"
# what the twin would have let the scoped CA's key do
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout evil.key -subj "/O=example.org" \
    -out evil.csr 2>/dev/null &&
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/payments/sa/db\n' > evil.ext &&
openssl x509 -req -in evil.csr -CA scoped/ca.pem -CAkey scoped/ca.key -set_serial 7 -days 1 \
    -extfile evil.ext -out evil.pem 2>/dev/null || { echo "setup failed: openssl x509"; exit 1; }
expect_exit 1 "a leaf of the scoped CA's key outside its scope does not verify against the agent's bundle.pem" \
    "$MTLS" cert verify evil.pem --ca wl/bundle.pem --untrusted scoped/ca.pem
expect_grep '^name_constraints' "$T_DIR/out" "... name_constraints"
