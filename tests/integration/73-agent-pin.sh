#!/usr/bin/env bash
# The agent's trust boundary (DESIGN.md: the token's root fingerprint is a
# pin; an mtls1 token, which pins nothing else, is refused: the serving CA's
# pin is tested in 79 with a sibling CA's server). A man in the middle (helpers/fake_ca.py) that serves the genuine root
# beside its own, or a root with the genuine root's name and another key,
# never receives the token and gets nothing written; the refusal names the
# expected and found fingerprints. Renewals verify the server against
# bundle.pem and its name. --out-dir must be the user's own and not
# writable by others. A renewal refused as revoked leaves no revoked
# certificate in --out-dir. Then the proxy's built-in agent, once.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca int --dns wrong.example --out wrongname
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f; }
root_fp=$(fp_of root/ca.pem)

# ---- the attacker's PKI: its own root, and a twin of the genuine root's name ----
mk_root() {	# mk_root NAME SUBJECT
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
	    -subj "$2" -days 2 -addext basicConstraints=critical,CA:TRUE \
	    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || { echo "setup: root $1"; exit 1; }
}
mk_leaf() {	# mk_leaf NAME ROOT: a localhost server certificate; NAME.chain is leaf + root
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -subj /CN=localhost \
	    -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 1 -extfile "$1.ext" \
	    -out "$1.pem" 2>/dev/null || { echo "setup: leaf $1"; exit 1; }
	cat "$1.pem" "$2.pem" > "$1.chain"
}
mk_root evil "/O=evil/CN=Evil Root"
mk_root twin "$(openssl x509 -in root/ca.pem -noout -subject -nameopt compat | sed 's/^subject=//')"
mk_leaf evil-srv evil
mk_leaf twin-srv twin
cat root/ca.pem evil.pem > answer-evil.pem	# the genuine root plus the attacker's
cat root/ca.pem twin.pem > answer-twin.pem
evil_fp=$(fp_of evil.pem) twin_fp=$(fp_of twin.pem)
[ "$(openssl x509 -in twin.pem -noout -subject)" = "$(openssl x509 -in root/ca.pem -noout -subject)" ] \
    && [ "$twin_fp" != "$root_fp" ] && ok "setup: the twin root has the genuine root's name and another key" \
    || not_ok "twin root"

# ---- the genuine CA ----
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --admin spiffe://example.org/admin
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/web > web.token
secret=$(cut -d. -f4 web.token)
unused() { [ "$(sqlite3 int/inventory.db "SELECT count(*) FROM tokens WHERE used_at IS NULL")" = "$1" ]; }

# start_fake NAME CHAIN KEY ANSWER: a fake CA; sets FAKE_URL, FAKE_LOG
start_fake() {
	local p
	p=$(free_port)
	FAKE_LOG="$T_DIR/$1.reqs"
	start_bg "$1" python3 "$_root/tests/integration/helpers/fake_ca.py" "$p" "$2" "$3" "$4" "$FAKE_LOG"
	FAKE_URL="https://localhost:$p"
	wait_for 10 port_open "$p" || { not_ok "fake CA $1 starts" "$(cat "$T_DIR/$1.log")"; exit 0; }
}
# never_got NAME: the fake CA's log shows the bodiless probe and no token
never_got() {
	if grep -q '"method": "GET", "path": "/v1/bundle"' "$FAKE_LOG" && ! grep -q -- "$secret" "$FAKE_LOG" &&
	    ! grep -q '"method": "POST"' "$FAKE_LOG"; then ok "$1: the fake CA never received the token"
	else not_ok "$1: the fake CA received the token" "$(cat "$FAKE_LOG")"; fi
}
empty_dir() { [ ! -e "$1" ] || [ -z "$(ls -A "$1")" ]; }

# ---- 0. tokens that pin less, or nothing readable: refused before any connection ----
n_enroll() { grep -c '"event":"request".*"path":"/v1/enroll"' "$T_DIR/caserve.log"; }
printf 'mtls1.%s.%s\n' "$root_fp" "$secret" > old.token
expect_exit 2 "an mtls1 token (pins only the root): refused" "$MTLS" agent --ca-url "$URL" --token-file old.token \
    --out-dir old --once
expect_grep "old.token: this token pins only the root; create a new one with mtls ca token create" "$T_DIR/err" \
    "the refusal says why and how to fix it"
cut -c1-135 web.token > short.token
expect_exit 2 "an mtls2 token with a truncated CA fingerprint: refused" "$MTLS" agent --ca-url "$URL" \
    --token-file short.token --out-dir old --once
expect_grep "short.token: malformed token: want mtls2.<root sha256>.<CA sha256>.<secret>" "$T_DIR/err" "the refusal shows the format"
[ "$(n_enroll)" = 0 ] && ok "neither reached the CA" || not_ok "enroll requests" "$(grep enroll "$T_DIR/caserve.log")"
empty_dir old && ok "neither wrote anything" || not_ok "old wrote" "$(ls -la old)"

# ---- 1. MITM: genuine root + its own in the bundle, its own chain in TLS ----
start_fake evil evil-srv.chain evil-srv.key answer-evil.pem
expect_exit 1 "MITM with the genuine root beside its own: the agent refuses" \
    "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm1 --once
expect_grep "root pin mismatch: want sha256:$root_fp, got sha256:$evil_fp" "$T_DIR/err" \
    "the refusal names the expected and the found root fingerprints"
never_got "MITM"
empty_dir mitm1 && ok "MITM: nothing written in --out-dir" || not_ok "MITM wrote" "$(ls -la mitm1)"
# without --once it does not retry a server that is not the token's CA
expect_exit 1 "MITM without --once: the agent exits instead of retrying" \
    timeout 20 "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm1
never_got "MITM, no --once"

# ---- 2. MITM with a root of the genuine root's name and another key ----
start_fake twin twin-srv.chain twin-srv.key answer-twin.pem
expect_exit 1 "a twin of the genuine root's name: the agent refuses" \
    "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm2 --once
expect_grep "want sha256:$root_fp, got sha256:$twin_fp" "$T_DIR/err" "the refusal names the twin's fingerprint"
never_got "twin"
empty_dir mitm2 && ok "twin: nothing written" || not_ok "twin wrote" "$(ls -la mitm2)"

# ---- 3. a bundle without the pinned root at all ----
start_fake nopin evil-srv.chain evil-srv.key evil.pem
expect_exit 1 "a bundle without the token's root: refused" \
    "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm3 --once
expect_grep "want sha256:$root_fp, got sha256:$evil_fp .*bundle lacks it" "$T_DIR/err" "the refusal says the bundle lacks the root"
never_got "no pinned root"
empty_dir mitm3 && ok "no pinned root: nothing written" || not_ok "nopin wrote" "$(ls -la mitm3)"

# ---- 4. the genuine CA's chain for another name: the host name is checked ----
cat wrongname.pem > wrongname.chain
start_fake wrongname wrongname.chain wrongname.key root/ca.pem
expect_exit 1 "a genuine chain for another host name: refused before the token" \
    "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm4 --once
never_got "wrong name"
empty_dir mitm4 && ok "wrong name: nothing written" || not_ok "wrongname wrote" "$(ls -la mitm4)"

# ---- 4b. a genuine workload certificate for the CA's own host name: the
# root vouches for it, but only ca serve's certificate has the CA-server EKU
q "$MTLS" ca issue --ca int --dns localhost --out wl
cat wl.pem > wl.chain
start_fake workload wl.chain wl.key answer-evil.pem
expect_exit 1 "a workload certificate for the CA's host name: refused before the token" \
    "$MTLS" agent --ca-url "$FAKE_URL" --token-file web.token --out-dir mitm4b --once
grep -q 'is not the CA server' "$T_DIR/err" && grep -q 'CA-server extended key usage' "$T_DIR/err" \
    && ok "and the refusal says the server is not the CA server" || not_ok "not-CA message" "$(cat "$T_DIR/err")"
never_got "workload certificate"
empty_dir mitm4b && ok "workload certificate: nothing written" || not_ok "workload wrote" "$(ls -la mitm4b)"

# ---- 5. the proxy's built-in agent goes through the same pin ----
start_fake evilp evil-srv.chain evil-srv.key answer-evil.pem
pp=$(free_port) tp=$(free_port)
expect_exit 2 "proxy --ca-url through a MITM: refuses to start" timeout 20 "$MTLS" proxy --listen "127.0.0.1:$pp" \
    --target "127.0.0.1:$tp" --ca-url "$FAKE_URL" --token-file web.token --out-dir mitmp --allow-any --workers 1
expect_grep "root pin mismatch: want sha256:$root_fp" "$T_DIR/err" "proxy: the refusal names the fingerprints"
never_got "proxy"
empty_dir mitmp && ok "proxy: nothing written" || not_ok "proxy wrote" "$(ls -la mitmp)"

unused 1 && ok "after every attack the token is still unspent" || not_ok "token spent"

# ---- the honest CA: the same token enrolls ----
expect_exit 0 "the same token enrolls at the genuine CA" \
    "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web --once
[ "$(stat -c %a web)" = 700 ] && ok "a missing --out-dir is created 0700" || not_ok "out-dir mode" "$(stat -c %a web)"
[ "$(fp_of web/bundle.pem)" = "$root_fp" ] && ok "bundle.pem holds the pinned root" || not_ok "bundle.pem" "$(cat web/bundle.pem)"

# ---- renewals verify against bundle.pem and the host name ----
start_fake evilr evil-srv.chain evil-srv.key answer-evil.pem
expect_exit 1 "renewal through a MITM: refused" "$MTLS" agent --ca-url "$FAKE_URL" --cert web/svid.pem \
    --key web/svid.key --out-dir web --once
grep -q '"event": "request"' "$FAKE_LOG" && not_ok "renewal: the MITM got a request" "$(cat "$FAKE_LOG")" \
    || ok "renewal: the MITM got no request (TLS verified against bundle.pem)"
start_fake wrongr wrongname.chain wrongname.key root/ca.pem
expect_exit 1 "renewal to a genuine chain for another name: refused" "$MTLS" agent --ca-url "$FAKE_URL" \
    --cert web/svid.pem --key web/svid.key --out-dir web --once
grep -q '"event": "request"' "$FAKE_LOG" && not_ok "renewal: the wrong name got a request" "$(cat "$FAKE_LOG")" \
    || ok "renewal: the host name is checked (no request reached the wrong name)"

start_fake workloadr wl.chain wl.key answer-evil.pem
expect_exit 1 "renewal to a workload certificate for the CA's host name: refused" "$MTLS" agent --ca-url "$FAKE_URL" \
    --cert web/svid.pem --key web/svid.key --ca-bundle web/bundle.pem --out-dir web --once
! grep -q '"method": "POST"' "$FAKE_LOG" && ok "the workload posing as the CA never got a renewal request" \
    || not_ok "renewal reached the workload" "$(cat "$FAKE_LOG")"

# ---- --out-dir: this user's, not writable by others ----
mkdir -m 700 open && chmod 777 open
expect_exit 2 "--out-dir writable by others: refused" "$MTLS" agent --ca-url "$URL" --cert web/svid.pem \
    --key web/svid.key --out-dir open --once
expect_grep "open is writable by others \(mode 777\): chmod go-w open" "$T_DIR/err" "the refusal names the directory and the fix"
empty_dir open && ok "writable --out-dir: nothing written" || not_ok "open wrote" "$(ls -la open)"
expect_exit 2 "proxy --out-dir writable by others: refused" timeout 20 "$MTLS" proxy --listen "127.0.0.1:$pp" \
    --target "127.0.0.1:$tp" --ca-url "$URL" --token-file web.token --out-dir open --allow-any --workers 1
expect_grep "open is writable by others" "$T_DIR/err" "proxy: the same check"
mkdir -m 700 grp && chmod 770 grp
expect_exit 2 "--out-dir writable by its group: refused" "$MTLS" agent --ca-url "$URL" --cert web/svid.pem \
    --key web/svid.key --out-dir grp --once
expect_grep "writable by its group" "$T_DIR/err" "the group case is named"
if [ "$(id -u)" = 0 ]; then mkdir -m 700 theirs && chown 65534 theirs && dir=theirs other=65534
else dir=/ other=0; fi
expect_exit 2 "--out-dir of another user: refused" "$MTLS" agent --ca-url "$URL" --cert web/svid.pem \
    --key web/svid.key --out-dir "$dir" --once
expect_grep "belongs to uid $other, not to this user" "$T_DIR/err" "the refusal names the owner and the fix"

# ---- a revoked certificate is never installed, and leaves out-dir ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/rev > rev.token
expect_exit 0 "enroll a certificate to revoke" "$MTLS" agent --ca-url "$URL" --token-file rev.token --out-dir rv --once
cp rv/svid.pem c.pem && cp rv/svid.key c.key
rs=$(serial_of rv/svid.pem)
code=$(curl -sS --max-time 10 --cacert root/ca.pem --cert admin.pem --key admin.key -o revoke.json -w '%{http_code}' \
    -H 'Content-Type: application/json' -d "{\"serial\":\"$rs\"}" "$URL/v1/revoke")
[ "$code" = 200 ] && ok "the admin revokes it" || not_ok "revoke" "$code $(cat revoke.json)"
expect_exit 1 "renewal with a revoked --cert: refused" "$MTLS" agent --ca-url "$URL" --cert c.pem --key c.key \
    --ca-bundle root/ca.pem --out-dir fresh --once
expect_grep "revoked" "$T_DIR/err" "the refusal says revoked"
[ ! -e fresh/svid.pem ] && [ ! -e fresh/svid.key ] && ok "the revoked --cert was not installed in --out-dir" \
    || not_ok "revoked --cert installed" "$(ls -la fresh)"
expect_exit 1 "without --once a revoked --cert ends the agent instead of retrying" \
    timeout 20 "$MTLS" agent --ca-url "$URL" --cert c.pem --key c.key --ca-bundle root/ca.pem --out-dir fresh2
[ ! -e fresh2/svid.pem ] && ok "...and installs nothing" || not_ok "fresh2 installed" "$(ls -la fresh2)"
expect_exit 1 "renewal of the revoked files in --out-dir: refused" "$MTLS" agent --ca-url "$URL" \
    --cert rv/svid.pem --key rv/svid.key --out-dir rv --once
[ ! -e rv/svid.pem ] && [ ! -e rv/svid.key ] && [ -s rv/bundle.pem ] \
    && ok "the revoked svid.pem and svid.key left --out-dir (bundle.pem stays)" || not_ok "revoked files kept" "$(ls -la rv)"
expect_grep "\"event\":\"revoked\".*\"serial\":\"$rs\"" "$T_DIR/err" "the removal is logged with the serial"
[ "$(serial_of c.pem)" = "$rs" ] && [ -s c.key ] && ok "--cert/--key themselves are left alone" \
    || not_ok "--cert touched"
exit 0
