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

# switch keeps a rotation/old.key already there (a run again after a
# crash must not copy the new key over it), then overwrites ca.key with
# the new key. On main a planted old.key (any key) was kept and the old
# intermediate's real key destroyed: ca serve then could not sign OCSP
# and /v1/crl/previous for the old one's leaves. It must be the key of
# rotation/old.pem (switch has the --pass-file that opens both).
rm -rf int && cp -a int.pub int
cp int/ca.pem int/rotation/old.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out int/rotation/old.key 2>/dev/null &&
    chmod 600 int/rotation/old.key || { echo "setup failed: openssl genpkey"; exit 1; }
cp int/ca.key ca.key.before
expect_exit 2 "switch refuses a rotation/old.key that is not the old intermediate's key" \
    "$MTLS" ca rotation switch --ca int
expect_grep 'rotation/old.key: not the key of rotation/old.pem' "$T_DIR/err" "... naming the file"
cmp -s ca.key.before int/ca.key && grep -q '"phase": "published"' int/rotation.json &&
    ok "... ca.key and the phase are unchanged" || not_ok "... ca.key and the phase are unchanged"

# switch of a new root above an intermediate copies PDIR/rotation/new.key
# over PDIR/ca.key. On main it was taken unchecked (DIR's new key is
# checked against new.pem, the parent's was not): a planted key became the
# offline root's ca.key and the root was lost.
q "$MTLS" ca init nroot --trust-domain example.org
q "$MTLS" ca intermediate nint --parent nroot --name "N"
q "$MTLS" ca rotation prepare --ca nint --parent nroot --new-root
q "$MTLS" ca rotation publish --ca nint
cp nroot/ca.key nroot.key.before
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out nroot/rotation/new.key 2>/dev/null ||
    { echo "setup failed: openssl genpkey"; exit 1; }
expect_exit 2 "switch refuses a PDIR/rotation/new.key that is not the new root's key" \
    "$MTLS" ca rotation switch --ca nint --parent nroot --force
expect_grep 'nroot/rotation/new.key: not the key of the new root' "$T_DIR/err" "... naming the file"
cmp -s nroot.key.before nroot/ca.key && grep -q '"phase": "published"' nint/rotation.json &&
    ok "... the offline root's ca.key and the phase are unchanged" ||
    not_ok "... the offline root's ca.key and the phase are unchanged"

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

# ca serve held the CA snapshot for a keep-alive connection's next request
# before waiting for it: a connection idle across the switch's reload was
# answered by the CA before it, and a GET /v1/crl on it signed the old
# intermediate's CRL into the server's cache, which every client then got
# as /v1/crl (and in /v1/crl/all) for half the CRL's life: proxies on
# --crl-url found no CRL for the new intermediate's leaves (unknown,
# refused). Any client can do it: the CRL needs no certificate. Now a
# request takes the snapshot when it arrives, and the cache is re-signed
# when it was made from another snapshot.
q "$MTLS" ca init kroot --trust-domain example.org
q "$MTLS" ca intermediate kint --parent kroot --name "example.org Issuing CA"
q "$MTLS" ca rotation prepare --ca kint --parent kroot
q "$MTLS" ca rotation publish --ca kint
port=$(free_port)
start_bg kserve "$MTLS" ca serve --ca kint --listen "127.0.0.1:$port" --idle-timeout 60s
klog="$T_DIR/kserve.log"
wait_for 10 grep -q '"event":"start"' "$klog" || { not_ok "ca serve starts" "$(cat "$klog")"; exit 0; }
cat > idle.py <<'PY'
import socket, ssl, sys, os, time
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
def get(t, path):
    t.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = t.recv(65536)
        if not d:
            sys.exit("closed")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < n:
        body += t.recv(65536)
    return body
t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
get(t, "/healthz")
open("idle.ready", "w").close()
deadline = time.time() + 30
while not os.path.exists("idle.go"):
    if time.time() > deadline:
        sys.exit("no go")
    time.sleep(0.05)
open("crl.idle.der", "wb").write(get(t, "/v1/crl"))
PY
python3 idle.py "$port" kroot/ca.pem > idle.out 2>&1 &
idle_pid=$!
wait_for 10 test -e idle.ready || not_ok "the keep-alive client connects" "$(cat idle.out)"
q "$MTLS" ca rotation switch --ca kint
kill -HUP "$BG_PID"
wait_for 10 grep -q '"rotation":"switched"' "$klog" || not_ok "ca serve reloads the switch" "$(tail -2 "$klog")"
touch idle.go
wait "$idle_pid"
crl_issuer() { openssl crl -inform DER -in "$1" -noout -issuer 2>/dev/null | sed 's/^issuer=//'; }
new_int=$(openssl x509 -in kint/ca.pem -noout -subject | sed 's/^subject=//')
[ "$(crl_issuer crl.idle.der)" = "$new_int" ] &&
    ok "a request on a connection idle across the switch is answered by the new intermediate" ||
    not_ok "a request on a connection idle across the switch is answered by the new intermediate" \
    "CRL of '$(crl_issuer crl.idle.der)', want '$new_int'; $(cat idle.out)"
curl -sS --cacert kroot/ca.pem -o crl.fresh.der "https://127.0.0.1:$port/v1/crl"
[ "$(crl_issuer crl.fresh.der)" = "$new_int" ] &&
    ok "GET /v1/crl after the switch is the new intermediate's CRL" ||
    not_ok "GET /v1/crl after the switch is the new intermediate's CRL" "CRL of '$(crl_issuer crl.fresh.der)'"
curl -sS --cacert kroot/ca.pem -o crl.all.pem "https://127.0.0.1:$port/v1/crl/all"
[ "$(grep -c 'BEGIN X509 CRL' crl.all.pem)" = 2 ] &&
    openssl crl -in crl.all.pem -noout -issuer | grep -qF "$new_int" &&
    ok "/v1/crl/all holds the new intermediate's CRL and the old one's" ||
    not_ok "/v1/crl/all holds the new intermediate's CRL and the old one's" "$(openssl crl -in crl.all.pem -noout -issuer)"

# Found, not fixed here (no failing check; docs/security/attack-s25.md):
# - prepare --parent cut short after the new intermediate is recorded in
#   PDIR's inventory (before rotation.json): run again, it makes another;
#   the first stays valid, unrevoked in `mtls ca list --ca PDIR`.
#   Reproduce: prepare --parent, rm DIR/rotation.json, prepare again.
# - the bundle rule still admits any CA certificate a current root signed
#   (a sibling intermediate's, public); the agent's pin then accepts that
#   sibling's CA server for renewals, which it refuses (denial of service).
