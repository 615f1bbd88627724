#!/usr/bin/env bash
# What a renewal may install (issue 18, item 3) and an agent whose clock is
# off (item 4). A server that passes the agent's TLS (here: a sibling CA's
# own `ca serve` certificate, under the same root, so it has the CA-server
# EKU; helpers/fake_ca.py answering with what it likes) cannot install
# another identity, a certificate from another CA, or a root that no current
# root cross-signed: nothing is written, one log line says why. A root
# cross-signed by the current root is accepted. Then an agent and a proxy's
# built-in agent one hour ahead of a CA issuing 15-second certificates (run
# under faketime): a handful of issuances in 20 s, one clock_skew line with
# the skew, nothing installed; an agent an hour behind the same.
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
printf 'subjectAltName=URI:%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$WEB" > web.ext
SIB_SAME="'$MTLS' ca issue --ca sib --csr {csr} --spiffe-id $WEB --ttl 1h --out {out}.x && mv {out}.x.pem {out}"
SIB_OTHER="'$MTLS' ca issue --ca sib --csr {csr} --spiffe-id spiffe://example.org/ns/prod/db --ttl 1h --out {out}.x && mv {out}.x.pem {out}"
EVIL_SAME="openssl x509 -req -in {csr} -CA '$T_DIR/evil.pem' -CAkey '$T_DIR/evil.key' -CAcreateserial -days 1 -extfile '$T_DIR/web.ext' -out {out} && cat '$T_DIR/evil.pem' >> {out}"

# start_fake NAME BUNDLE SIGN: sets FAKE_URL, FAKE_LOG
start_fake() {
	local p
	p=$(free_port)
	FAKE_LOG="$T_DIR/$1.reqs"
	start_bg "$1" python3 "$_root/tests/integration/helpers/fake_ca.py" "$p" sibsrv.chain sib/serve/server.key "$2" \
	    "$FAKE_LOG" "$3"
	FAKE_URL="https://localhost:$p"
	wait_for 10 port_open "$p" || { not_ok "fake CA $1 starts" "$(cat "$T_DIR/$1.log")"; exit 0; }
}
renew_at_fake() { "$MTLS" agent --ca-url "$FAKE_URL" --cert web/svid.pem --key web/svid.key --out-dir web --once; }
unchanged() { sums web | cmp -s - web.sums && ok "$1: svid.pem, svid.key and bundle.pem unchanged" \
    || not_ok "$1: out-dir changed" "$(sums web; cat web.sums)"; }

# ---- 1. another identity, from a CA the bundle trusts ----
start_fake other root/ca.pem "$SIB_OTHER"
expect_exit 1 "renewal answered with another identity: refused" renew_at_fake
grep -q '"event":"sign","exit":0\|"event": "sign", "exit": 0' "$FAKE_LOG" && ok "(the fake CA did issue it)" \
    || not_ok "the fake CA issued nothing" "$(cat "$FAKE_LOG")"
expect_grep '"event":"install_refused".*"reason":"identity_mismatch"' "$T_DIR/err" "logged: install_refused identity_mismatch"
expect_grep "ns/prod/db.*ns/prod/web" "$T_DIR/err" "the refusal names both identities"
unchanged "another identity"

# ---- 2. the same identity from a CA outside the bundle ----
start_fake foreign root/ca.pem "$EVIL_SAME"
expect_exit 1 "renewal answered by another CA's certificate: refused" renew_at_fake
expect_grep '"event":"install_refused".*"reason":"unknown_ca"' "$T_DIR/err" "logged: install_refused unknown_ca"
unchanged "another CA"

# ---- 3. a bundle adding a foreign root, with a genuine certificate ----
start_fake addroot b-evil.pem "$SIB_SAME"
expect_exit 1 "a bundle adding a root nobody cross-signed: refused" renew_at_fake
expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$evil_fp\"" "$T_DIR/err" "logged: bundle_rejected with the root's fingerprint"
! grep -q '"method": "POST"' "$FAKE_LOG" && ok "refused before asking for a certificate (no POST)" \
    || not_ok "POST after a refused bundle" "$(cat "$FAKE_LOG")"
unchanged "foreign root"
for b in r2s r2e; do
	start_fake "cross_$b" "b-$b.pem" "$SIB_SAME"
	expect_exit 1 "a new root cross-signed by $( [ $b = r2s ] && echo 'an intermediate' || echo 'an untrusted root'): refused" renew_at_fake
	expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$r2_fp\"" "$T_DIR/err" "logged: bundle_rejected names the new root"
	unchanged "cross by $b"
done

# ---- 4. root rotation: a new root cross-signed by the current one ----
start_fake rotate b-r2x.pem "$SIB_SAME"
old_serial=$(serial_of web/svid.pem)
expect_exit 0 "a new root cross-signed by the current root: accepted" renew_at_fake
grep -q "$r2_fp" <(openssl crl2pkcs7 -nocrl -certfile web/bundle.pem | openssl pkcs7 -print_certs | \
    awk '/BEGIN/{f="c"++n".pem"} f{print > f}' && for c in c*.pem; do fp_of "$c"; done) \
    && ok "bundle.pem now holds the new root" || not_ok "new root missing" "$(cat web/bundle.pem)"
[ "$(serial_of web/svid.pem)" != "$old_serial" ] && ok "and the new certificate is installed" || not_ok "not renewed"
rm -f c*.pem
# the rotated bundle.pem (cross-certificate and all) verifies the CA that
# issued it, whose bundle has no r2 any more: dropping a root needs nothing
expect_exit 0 "the next renewal at that CA itself (sib), with the rotated bundle.pem" "$MTLS" agent \
    --ca-url "https://localhost:$sport" --cert web/svid.pem --key web/svid.key --out-dir web --once
sums web > web.sums

# ---- 5. enrollment: the pinned connection may not add a root either ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/api > api.token
secret=$(cut -d. -f3 api.token)
start_fake enr b-evil.pem "$SIB_SAME"
expect_exit 1 "enrollment with a bundle adding a foreign root: refused" "$MTLS" agent --ca-url "$FAKE_URL" \
    --token-file api.token --out-dir api --once
expect_grep "\"event\":\"bundle_rejected\".*\"sha256\":\"$evil_fp\"" "$T_DIR/err" "enrollment: bundle_rejected names the root"
! grep -q -- "$secret" "$FAKE_LOG" && ! grep -q '"method": "POST"' "$FAKE_LOG" && ok "enrollment: the token was never sent" \
    || not_ok "token sent" "$(cat "$FAKE_LOG")"
[ ! -e api ] || [ -z "$(ls -A api)" ] && ok "enrollment: nothing written" || not_ok "api wrote" "$(ls -la api)"

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
expect_grep '"event":"clock_skew".*"skew_s":-3[23][0-9][0-9].*"source":"server_certificate"' "$T_DIR/err" \
    "it says the clock is behind by at least 55 min"
expect_grep "clock skew\\? .*CA server's certificate .* starts in 3[23][0-9][0-9] s.* behind" "$T_DIR/err" "and why"
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
    --ca-url "https://localhost:$sport" --cert web/svid.pem --key web/svid.key --out-dir web --once
expect_grep '"event":"clock_skew".*"skew_s":(29[0-9]|30[0-9]).*"installed":true' "$T_DIR/err" \
    "and a clock_skew warning with the skew (Date header)"

# ---- not yet valid, in words ----
nb=$(date -d "$(openssl x509 -in web/svid.pem -noout -startdate | cut -d= -f2)" +%s)
expect_exit 1 "cert verify an hour before notBefore" "$MTLS" cert verify web/svid.pem --ca web/bundle.pem --at $((nb - 3600))
expect_grep "starts in 3600 s \(clock skew\?" "$T_DIR/out" "not yet valid says clock skew with the amount"
exit 0
