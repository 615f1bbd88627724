#!/usr/bin/env bash
# What a renewal may install (issue 18, item 3) and an agent whose clock is
# off (item 4). A server that passes the agent's TLS (helpers/fake_ca.py
# with the genuine CA's own `ca serve` certificate, answering with what it
# likes) cannot install another identity, a certificate from another CA (a
# sibling under the same root included) or outliving its CA, a root that no
# current root cross-signed, or any byte but our own PEM of the certificates
# it sent: nothing is written, one log line says why. A root cross-signed by
# the current root is accepted. A sibling CA's `ca serve` (same root, the
# CA-server EKU) is not the CA that made the token nor the one that issued
# ours: refused in TLS, the token never sent, its "revoked" never heard.
# Then an agent and a proxy's built-in agent one hour ahead of a CA issuing
# 15-second certificates (run under faketime): a handful of issuances in
# 20 s, one clock_skew line with the skew, nothing installed; an agent an
# hour behind the same.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
command -v faketime > /dev/null || { not_ok "faketime is installed (scripts/deps.sh check)"; exit 0; }
pki_root_int
q "$MTLS" ca intermediate sib --parent root --name sib
fp_of() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr A-F a-f; }
sums() { sha256sum "$1"/svid.pem "$1"/svid.key "$1"/bundle.pem; }
WEB=spiffe://example.org/ns/prod/web

# ---- the genuine CA, and the sibling's CA-server certificate ----
port=$(free_port) sport=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
start_bg sibserve "$MTLS" ca serve --ca sib --listen "127.0.0.1:$sport" --url "https://localhost:$sport"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" && wait_for 10 grep -q '"event":"start"' "$T_DIR/sibserve.log" \
    || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log" "$T_DIR/sibserve.log")"; exit 0; }
cat int/serve/server.pem int/ca.pem > intsrv.chain
cat sib/serve/server.pem sib/ca.pem > sibsrv.chain
curl -sS -o /dev/null -D hdr.txt --cacert root/ca.pem "$URL/healthz"
grep -qi '^Date: [A-Z][a-z][a-z], [0-9][0-9] [A-Z][a-z][a-z] 20[0-9][0-9] [0-9:]* GMT' hdr.txt \
    && ok "ca serve answers with a Date header (the agents measure skew with it)" || not_ok "Date header" "$(cat hdr.txt)"

"$MTLS" ca token create --ca int --spiffe-id "$WEB" > web.token
expect_exit 0 "the agent enrolls at the genuine CA" "$MTLS" agent --ca-url "$URL" --token-file web.token --out-dir web --once
root_fp=$(fp_of root/ca.pem)
sums web > web.sums

# ---- the attacker's material ----
mk_root() {	# mk_root NAME SUBJECT
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
	    -subj "$2" -days 2 -addext basicConstraints=critical,CA:TRUE \
	    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || { echo "setup: root $1"; exit 1; }
}
# cross NAME ROOT SIGNER: NAME.pem is ROOT's subject and key, signed by SIGNER
cross() {
	openssl x509 -x509toreq -in "$2.pem" -signkey "$2.key" -out "$1.csr" 2>/dev/null
	printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 1 -extfile "$1.ext" \
	    -out "$1.pem" 2>/dev/null || { echo "setup: cross $1"; exit 1; }
}
mk_root evil "/O=evil/CN=Evil Root"
mk_root r2 "/O=example.org/CN=example.org Root CA 2"
cp root/ca.pem rootc.pem && cp root/ca.key rootc.key
cp sib/ca.pem sibc.pem && cp sib/ca.key sibc.key
cross r2x r2 rootc	# r2 cross-signed by the current root
cross r2s r2 sibc	# by the sibling intermediate: not a root
cross r2e r2 evil	# by a root nobody trusts
cat root/ca.pem evil.pem > b-evil.pem
cat root/ca.pem r2.pem r2x.pem > b-r2x.pem
cat root/ca.pem r2.pem r2s.pem > b-r2s.pem
cat root/ca.pem r2.pem r2e.pem > b-r2e.pem
r2_fp=$(fp_of r2.pem) evil_fp=$(fp_of evil.pem)
printf 'subjectAltName=URI:%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' "$WEB" > web.ext
# issue CA ID: a SIGN command issuing ID for the CSR with `mtls ca issue --ca CA`
issue() { echo "'$MTLS' ca issue --ca $1 --csr {csr} --spiffe-id $2 --ttl 1h --out {out}.x && mv {out}.x.pem {out}"; }
INT_SAME=$(issue int "$WEB") INT_OTHER=$(issue int spiffe://example.org/ns/prod/db) SIB_SAME=$(issue sib "$WEB")
EVIL_SAME="openssl x509 -req -in {csr} -CA '$T_DIR/evil.pem' -CAkey '$T_DIR/evil.key' -CAcreateserial -days 1 -extfile '$T_DIR/web.ext' -out {out} && cat '$T_DIR/evil.pem' >> {out}"
# the genuine CA's key signing for 100 years: a leaf that outlives int
INT_LONG="openssl x509 -req -in {csr} -CA '$T_DIR/int/ca.pem' -CAkey '$T_DIR/int/ca.key' -CAcreateserial -days 36500 -extfile '$T_DIR/web.ext' -out {out} && cat '$T_DIR/int/ca.pem' >> {out}"
# hostile bytes around the PEM blocks: a terminal title (OSC), colour (CSI), a key, a CRL
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out junk.key 2>/dev/null
{ printf '\033]0;owned\007\033[31mred\n'; cat junk.key; printf -- '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n'; } > junk.txt
cat junk.txt root/ca.pem junk.txt > b-junk.pem
INT_JUNK="$INT_SAME && cat '$T_DIR/junk.txt' {out} '$T_DIR/junk.txt' > {out}.j && mv {out}.j {out}"

# start_fake NAME SERVER BUNDLE SIGN: a fake CA presenting SERVER's (int or
# sib) ca serve certificate; sets FAKE_URL, FAKE_LOG
start_fake() {
	local p
	p=$(free_port)
	FAKE_LOG="$T_DIR/$1.reqs"
	start_bg "$1" python3 "$_root/tests/integration/helpers/fake_ca.py" "$p" "$2srv.chain" "$2/serve/server.key" "$3" \
	    "$FAKE_LOG" "$4"
	FAKE_URL="https://localhost:$p"
	wait_for 10 port_open "$p" || { not_ok "fake CA $1 starts" "$(cat "$T_DIR/$1.log")"; exit 0; }
}
renew_at_fake() { "$MTLS" agent --ca-url "$FAKE_URL" --cert web/svid.pem --key web/svid.key --out-dir web --once; }
unchanged() { sums web | cmp -s - web.sums && ok "$1: svid.pem, svid.key and bundle.pem unchanged" \
    || not_ok "$1: out-dir changed" "$(sums web; cat web.sums)"; }
signed() { grep -q '"event":"sign","exit":0\|"event": "sign", "exit": 0' "$FAKE_LOG" && ok "(the fake CA did issue it)" \
    || not_ok "the fake CA issued nothing" "$(cat "$FAKE_LOG")"; }

# ---- 1. another identity, from the genuine CA ----
start_fake other int root/ca.pem "$INT_OTHER"
expect_exit 1 "renewal answered with another identity: refused" renew_at_fake
signed
expect_grep '"event":"install_refused".*"reason":"identity_mismatch"' "$T_DIR/err" "logged: install_refused identity_mismatch"
expect_grep "ns/prod/db.*ns/prod/web" "$T_DIR/err" "the refusal names both identities"
unchanged "another identity"

# ---- 2. the same identity from a CA outside the bundle, from the sibling,
# and from the genuine CA's key but outliving it ----
start_fake foreign int root/ca.pem "$EVIL_SAME"
expect_exit 1 "renewal answered by another CA's certificate: refused" renew_at_fake
expect_grep '"event":"install_refused".*"reason":"issuer_mismatch"' "$T_DIR/err" "logged: install_refused issuer_mismatch"
unchanged "another CA"
start_fake sibleaf int root/ca.pem "$SIB_SAME"
expect_exit 1 "renewal answered by the sibling CA's certificate (same root): refused" renew_at_fake
signed
expect_grep '"event":"install_refused".*"reason":"issuer_mismatch"' "$T_DIR/err" "logged: install_refused issuer_mismatch"
expect_grep "issued by /O=example.org/CN=sib, not by the CA that serves \(/O=example.org/CN=int\)" "$T_DIR/err" \
    "the refusal names the leaf's issuer and the serving CA"
unchanged "the sibling's leaf"
start_fake long int root/ca.pem "$INT_LONG"
expect_exit 1 "renewal answered by a 100-year leaf of the genuine CA: refused" renew_at_fake
signed
expect_grep '"event":"install_refused".*"reason":"outlives_issuer"' "$T_DIR/err" "logged: install_refused outlives_issuer"
expect_grep "valid until 21[0-9-]*T.*after its issuer's end \(20[0-9-]*T" "$T_DIR/err" "the refusal names both ends"
unchanged "a leaf outliving its CA"

# ---- 3. a bundle adding a foreign root, with a genuine certificate ----
start_fake addroot int b-evil.pem "$INT_SAME"
expect_exit 1 "a bundle adding a root nobody cross-signed: refused" renew_at_fake
expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$evil_fp\"" "$T_DIR/err" "logged: bundle_rejected with the root's fingerprint"
! grep -q '"method": "POST"' "$FAKE_LOG" && ok "refused before asking for a certificate (no POST)" \
    || not_ok "POST after a refused bundle" "$(cat "$FAKE_LOG")"
unchanged "foreign root"
for b in r2s r2e; do
	start_fake "cross_$b" int "b-$b.pem" "$INT_SAME"
	expect_exit 1 "a new root cross-signed by $( [ $b = r2s ] && echo 'an intermediate' || echo 'an untrusted root'): refused" renew_at_fake
	expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$r2_fp\"" "$T_DIR/err" "logged: bundle_rejected names the new root"
	unchanged "cross by $b"
done

# ---- 3b. a new root vouched for by an expired root, or by an expired
# cross-certificate: an agent whose bundle.pem still holds a root that has
# expired (its key since thrown away, or leaked, unwatched) ----
faketime -f '-10d' openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout xold.key \
    -out xold.pem -subj "/O=example.org/CN=example.org Root CA 0" -days 2 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null \
    || { echo "setup: expired root"; exit 1; }
mk_root r3 "/O=example.org/CN=example.org Root CA 3"
cross r3x r3 xold	# r3 cross-signed by the expired root
cat root/ca.pem xold.pem r3.pem r3x.pem > b-r3x.pem
faketime -f '-10d' openssl x509 -req -in r3x.csr -CA rootc.pem -CAkey rootc.key -CAcreateserial -days 1 \
    -extfile r3x.ext -out r3o.pem 2>/dev/null || { echo "setup: expired cross"; exit 1; }
cat root/ca.pem r3.pem r3o.pem > b-r3o.pem
r3_fp=$(fp_of r3.pem)
rm -rf webx && cp -a web webx && cat xold.pem >> webx/bundle.pem
sums webx > webx.sums
for b in r3x r3o; do
	start_fake "expired_$b" int "b-$b.pem" "$INT_SAME"
	expect_exit 1 "a new root vouched for by an expired $( [ $b = r3x ] && echo 'root' || echo 'cross-certificate'): refused" \
	    "$MTLS" agent --ca-url "$FAKE_URL" --cert webx/svid.pem --key webx/svid.key --out-dir webx --once
	expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$r3_fp\".*expired root or cross-certificate" "$T_DIR/err" \
	    "logged: bundle_rejected names the new root and the expired voucher"
	sums webx | cmp -s - webx.sums && ok "expired $b: svid.pem, svid.key and bundle.pem unchanged" \
	    || not_ok "expired $b: out-dir changed" "$(sums webx; cat webx.sums)"
done

# ---- 4. root rotation: a new root cross-signed by the current one ----
start_fake rotate int b-r2x.pem "$INT_SAME"
old_serial=$(serial_of web/svid.pem)
expect_exit 0 "a new root cross-signed by the current root: accepted" renew_at_fake
grep -q "$r2_fp" <(openssl crl2pkcs7 -nocrl -certfile web/bundle.pem | openssl pkcs7 -print_certs | \
    awk '/BEGIN/{f="c"++n".pem"} f{print > f}' && for c in c*.pem; do fp_of "$c"; done) \
    && ok "bundle.pem now holds the new root" || not_ok "new root missing" "$(cat web/bundle.pem)"
[ "$(serial_of web/svid.pem)" != "$old_serial" ] && ok "and the new certificate is installed" || not_ok "not renewed"
rm -f c*.pem
# the rotated bundle.pem (cross-certificate and all) verifies the genuine
# CA, whose bundle has no r2: dropping a root needs nothing
expect_exit 0 "the next renewal at the genuine CA, with the rotated bundle.pem" "$MTLS" agent \
    --ca-url "$URL" --cert web/svid.pem --key web/svid.key --out-dir web --once

# ---- 4b. hostile bytes around the certificates: only our own PEM is written ----
start_fake junk int b-junk.pem "$INT_JUNK"
old_serial=$(serial_of web/svid.pem)
expect_exit 0 "an answer with escapes, a PRIVATE KEY and a CRL block around the certificates: renewed" renew_at_fake
[ "$(serial_of web/svid.pem)" != "$old_serial" ] && ok "the new certificate is installed" || not_ok "junk: not renewed"
only_certs() {	# only_certs FILE N: N CERTIFICATE blocks, no other block, no byte outside PEM's
	local f=$1 n=$2
	[ "$(grep -c -- '-----BEGIN CERTIFICATE-----' "$f")" = "$n" ] &&
	    [ "$(grep -c -- '-----BEGIN' "$f")" = "$n" ] && ! LC_ALL=C grep -q '[^A-Za-z0-9+/= -]' "$f"
}
only_certs web/bundle.pem 1 && cmp -s web/bundle.pem <(openssl x509 -in root/ca.pem) \
    && ok "bundle.pem holds the root alone, re-encoded: no key, no CRL, no escape byte" \
    || not_ok "bundle.pem carries the answer's bytes" "$(cat -v web/bundle.pem | head -20)"
only_certs web/svid.pem 2 && ok "svid.pem holds the leaf and int alone, re-encoded" \
    || not_ok "svid.pem carries the answer's bytes" "$(cat -v web/svid.pem | head -20)"
# --layout k8s, and a --ca-bundle with the same bytes: copied re-encoded too
expect_exit 0 "the same answer, --layout k8s, --ca-bundle with the junk: renewed" "$MTLS" agent --ca-url "$FAKE_URL" \
    --cert web/svid.pem --key web/svid.key --ca-bundle b-junk.pem --layout k8s --out-dir kj --once
only_certs kj/ca.crt 1 && only_certs kj/tls.crt 2 && ok "k8s: ca.crt and tls.crt hold only the re-encoded certificates" \
    || not_ok "k8s files carry the answer's bytes" "$(cat -v kj/ca.crt kj/tls.crt | head -20)"
sums web > web.sums

# ---- 5. enrollment: the pinned connection may not add a root either ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/api > api.token
secret=$(cut -d. -f4 api.token)
token_kept() {	# token_kept WHAT: neither the token nor a POST reached the fake CA
	! grep -q -- "$secret" "$FAKE_LOG" && ! grep -q '"method": "POST"' "$FAKE_LOG" && ok "$1: the token was never sent" \
	    || not_ok "$1: token sent" "$(cat "$FAKE_LOG")"
}
start_fake enr int b-evil.pem "$INT_SAME"
expect_exit 1 "enrollment with a bundle adding a foreign root: refused" "$MTLS" agent --ca-url "$FAKE_URL" \
    --token-file api.token --out-dir api --once
expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$evil_fp\"" "$T_DIR/err" "enrollment: bundle_rejected names the root"
token_kept "enrollment"
[ ! -e api ] || [ -z "$(ls -A api)" ] && ok "enrollment: nothing written" || not_ok "api wrote" "$(ls -la api)"

# ---- 5b. the sibling CA's server: same root, the CA-server EKU ----
int_fp=$(fp_of int/ca.pem) sib_fp=$(fp_of sib/ca.pem)
start_fake sibenr sib root/ca.pem "$SIB_SAME"
expect_exit 1 "enrollment at the sibling's server: refused" "$MTLS" agent --ca-url "$FAKE_URL" \
    --token-file api.token --out-dir api1 --once
expect_grep "CA pin mismatch: want sha256:$int_fp, got sha256:$sib_fp" "$T_DIR/err" \
    "the refusal names the token's CA and the server's issuer"
expect_grep "\"event\":\"pin_mismatch\".*\"pin\":\"ca\".*\"expected_sha256\":\"$int_fp\",\"found_sha256\":\"$sib_fp\"" \
    "$T_DIR/err" "logged: pin_mismatch with both fingerprints"
grep -q '"method": "GET", "path": "/v1/bundle"' "$FAKE_LOG" && ok "(only the bodiless probe reached it)" \
    || not_ok "no probe" "$(cat "$FAKE_LOG")"
token_kept "sibling's server"
[ ! -e api1 ] || [ -z "$(ls -A api1)" ] && ok "sibling's server: nothing written" || not_ok "api1 wrote" "$(ls -la api1)"
n_enroll() { grep -c '"event":"request".*"path":"/v1/enroll"' "$T_DIR/sibserve.log"; }
expect_exit 1 "enrollment at the sibling's real ca serve: refused" "$MTLS" agent --ca-url "https://localhost:$sport" \
    --token-file api.token --out-dir api2 --once
expect_grep "CA pin mismatch: want sha256:$int_fp, got sha256:$sib_fp" "$T_DIR/err" "...as a CA pin mismatch"
[ "$(n_enroll)" = 0 ] && ok "the sibling's ca serve never got an enrollment" || not_ok "sibling enrolled" "$(tail -3 "$T_DIR/sibserve.log")"
expect_exit 0 "the same token then enrolls at the genuine CA" "$MTLS" agent --ca-url "$URL" --token-file api.token \
    --out-dir api3 --once

# renewal at the sibling's server: refused in TLS, nothing asked, nothing
# written; out-dir sr from the genuine CA
expect_exit 0 "a renewal at the genuine CA into sr" "$MTLS" agent --ca-url "$URL" --cert web/svid.pem --key web/svid.key \
    --ca-bundle root/ca.pem --out-dir sr --once
sums sr > sr.sums
sr_unchanged() { sums sr | cmp -s - sr.sums && ok "$1: svid.pem, svid.key and bundle.pem unchanged" \
    || not_ok "$1: out-dir changed" "$(ls -la sr; sums sr; cat sr.sums)"; }
renew_sr() { "$MTLS" agent --ca-url "$1" --cert sr/svid.pem --key sr/svid.key --out-dir sr --once; }
start_fake sibren sib root/ca.pem "$SIB_SAME"
expect_exit 1 "renewal at the sibling's server: refused" renew_sr "$FAKE_URL"
expect_grep "\"event\":\"pin_mismatch\".*\"pin\":\"ca\".*\"expected_issuer\":\"/O=example.org/CN=int\",\"found_sha256\":\"$sib_fp\"" \
    "$T_DIR/err" "logged: pin_mismatch naming our issuer and the server's"
! grep -q '"event": "request"' "$FAKE_LOG" && ok "the sibling's server got no request" || not_ok "request reached the sibling" "$(cat "$FAKE_LOG")"
sr_unchanged "renewal at the sibling"
expect_exit 1 "renewal at the sibling's real ca serve: refused" renew_sr "https://localhost:$sport"
expect_grep "CA pin mismatch: .* is not served by the CA that issued our certificate" "$T_DIR/err" "...as a CA pin mismatch"
sr_unchanged "renewal at the sibling's ca serve"
# the sibling's "revoked" is never heard
start_fake sibrev sib root/ca.pem revoked
expect_exit 1 "renewal at a sibling's server answering revoked: refused" renew_sr "$FAKE_URL"
! grep -q '"event":"revoked"' "$T_DIR/err" && ok "no revoked line" || not_ok "revoked by a sibling" "$(cat "$T_DIR/err")"
sr_unchanged "a sibling's revoked"
# without --once (--cert, so the renewal is due at once): backs off
start_fake sibren2 sib root/ca.pem "$SIB_SAME"
expect_exit 124 "an agent renewing at the sibling's server runs 12 s" timeout 12 "$MTLS" agent --ca-url "$FAKE_URL" \
    --cert sr/svid.pem --key sr/svid.key --ca-bundle root/ca.pem --out-dir bo
n=$(grep -c '"event":"renew_failed"' "$T_DIR/err")
[ "$n" -ge 2 ] && [ "$n" -le 5 ] && ok "it tried $n times in 12 s (back-off)" || not_ok "renew attempts in 12 s: $n" "$(tail -3 "$T_DIR/err")"
[ ! -e bo/svid.pem ] && ! grep -q '"event": "request"' "$FAKE_LOG" && ok "...and got nothing, asked nothing" \
    || not_ok "back-off run" "$(ls -la bo; cat "$FAKE_LOG")"

# ---- 6. clock skew: a CA issuing 15-second certificates ----
q "$MTLS" ca intermediate fast --parent root --name fast
sed -i 's/^default_ttl = .*/default_ttl = 15s/' fast/ca.conf
fport=$(free_port)
FURL="https://localhost:$fport"
start_bg fastserve "$MTLS" ca serve --ca fast --listen "127.0.0.1:$fport" --url "$FURL"
wait_for 10 grep -q '"event":"start"' "$T_DIR/fastserve.log" || { not_ok "fast ca serve starts" "$(cat "$T_DIR/fastserve.log")"; exit 0; }
issued() { grep -c '"event":"issue".*"how":"renew"' "$T_DIR/fastserve.log"; }
export FAKETIME_DONT_FAKE_MONOTONIC=1
# faketime is an LD_PRELOAD library, loaded before an ASan build's runtime
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
q "$MTLS" ca issue --ca fast --spiffe-id spiffe://example.org/ns/prod/skew --ttl 3h --out skew

# an agent one hour ahead: renewal is due at once (--cert)
n0=$(issued)
expect_exit 124 "an agent 1 h ahead runs 20 s" timeout 20 faketime -f +1h "$MTLS" agent --ca-url "$FURL" \
    --cert skew.pem --key skew.key --ca-bundle root/ca.pem --out-dir sk --on-rotate "echo rotated >> '$T_DIR/rotated'"
cp "$T_DIR/err" agent-skew.log
n=$(( $(issued) - n0 ))
[ "$n" -ge 1 ] && [ "$n" -le 3 ] && ok "in 20 s it asked for $n certificates (at most 3)" \
    || not_ok "issuances in 20 s: $n" "$(tail -5 agent-skew.log)"
[ "$(grep -c '"event":"clock_skew"' agent-skew.log)" = 1 ] && ok "one clock_skew line" \
    || not_ok "clock_skew lines: $(grep -c '"event":"clock_skew"' agent-skew.log)" "$(head -c 1500 agent-skew.log)"
skew=$(grep '"event":"clock_skew"' agent-skew.log | sed 's/.*"skew_s":\(-\{0,1\}[0-9]*\).*/\1/')
[ -n "$skew" ] && [ "$skew" -ge 3590 ] && [ "$skew" -le 3610 ] && ok "it says the clock is ${skew} s ahead (Date header)" \
    || not_ok "skew_s $skew" "$(grep clock_skew agent-skew.log)"
expect_grep '"event":"clock_skew".*"source":"date_header".*timedatectl' agent-skew.log "the line says how it measured and the fix"
expect_grep '"event":"renew_failed".*clock skew: this clock is 36[0-9][0-9] s ahead' agent-skew.log \
    "each failure says clock skew with the amount"
[ ! -e sk/svid.pem ] && [ ! -e "$T_DIR/rotated" ] && ok "nothing installed, --on-rotate never ran" \
    || not_ok "installed under skew" "$(ls -la sk; cat "$T_DIR/rotated" 2>/dev/null)"

# an agent one hour behind: already the CA server's certificate (backdated
# 5 min) is not valid yet here
expect_exit 1 "an agent 1 h behind: refused, once" faketime -f -1h "$MTLS" agent --ca-url "$FURL" \
    --cert skew.pem --key skew.key --ca-bundle root/ca.pem --out-dir sk2 --once
# (the root was made minutes ago, 5 min backdated: the skew seen is 1 h
# minus the test's age, so only its order of magnitude is asserted)
expect_grep '"event":"clock_skew".*"skew_s":-[123][0-9][0-9][0-9],.*"source":"server_certificate"' "$T_DIR/err" \
    "it says the clock is behind by more than 15 min"
expect_grep "clock skew\\? .*CA server's certificate .* starts in [123][0-9][0-9][0-9] s.* behind" "$T_DIR/err" "and why"
[ ! -e sk2/svid.pem ] && ok "nothing installed" || not_ok "installed behind" "$(ls -la sk2)"

# the proxy's built-in agent one hour ahead: its files are due within seconds
mkdir -m 700 pd
q "$MTLS" ca issue --ca fast --spiffe-id spiffe://example.org/ns/prod/skewp --ttl 3608s --out pd/svid
cp root/ca.pem pd/bundle.pem
sums pd > pd.sums
n0=$(issued)
pp=$(free_port) tp=$(free_port)
expect_exit 124 "a proxy 1 h ahead runs 20 s" timeout 20 faketime -f +1h "$MTLS" proxy --listen "127.0.0.1:$pp" \
    --target "127.0.0.1:$tp" --ca-url "$FURL" --out-dir pd --allow-any --workers 1
cp "$T_DIR/err" proxy-skew.log
n=$(( $(issued) - n0 ))
[ "$n" -ge 1 ] && [ "$n" -le 3 ] && ok "proxy: in 20 s it asked for $n certificates (at most 3)" \
    || not_ok "proxy: issuances in 20 s: $n" "$(tail -5 proxy-skew.log)"
[ "$(grep -c '"event":"clock_skew"' proxy-skew.log)" = 1 ] && ok "proxy: one clock_skew line" \
    || not_ok "proxy: clock_skew lines" "$(grep -c clock_skew proxy-skew.log)"
expect_grep '"event":"clock_skew".*"skew_s":36[0-9][0-9]' proxy-skew.log "proxy: with the skew"
sums pd | cmp -s - pd.sums && ok "proxy: nothing installed" || not_ok "proxy: out-dir changed" "$(ls -la pd)"

# 5 min ahead of a CA issuing for a day: installed, with one warning
expect_exit 0 "an agent 5 min ahead, day-long certificates: renewed" faketime -f +5m "$MTLS" agent \
    --ca-url "$URL" --cert web/svid.pem --key web/svid.key --out-dir web --once
expect_grep '"event":"clock_skew".*"skew_s":(29[0-9]|30[0-9]).*"installed":true' "$T_DIR/err" \
    "and a clock_skew warning with the skew (Date header)"

# ---- not yet valid, in words ----
nb=$(date -d "$(openssl x509 -in web/svid.pem -noout -startdate | cut -d= -f2)" +%s)
expect_exit 1 "cert verify an hour before notBefore" "$MTLS" cert verify web/svid.pem --ca web/bundle.pem --at $((nb - 3600))
expect_grep "starts in 3600 s \(clock skew\?" "$T_DIR/out" "not yet valid says clock skew with the amount"
exit 0
