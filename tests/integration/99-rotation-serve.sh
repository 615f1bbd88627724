#!/usr/bin/env bash
# What ca serve answers for the old root between a rotation's switch and
# its retire (issue 16 §1, docs/rotation.md): a root served directly is
# rotated to `switched`; then (a) OCSP for an old-root leaf is answered by
# the old root (good, then revoked), and a proxy with --require-staple
# keeps reaching an upstream whose old-root leaf it staples; (b) the old
# root's CRL is served at /v1/crl/previous, verifies with the old root and
# lists a revocation made after the switch, its CRL number growing; /v1/crl
# is still the new root's; (c) a join token made before the switch enrolls
# after it, a man in the middle with another CA's certificate still gets
# nothing, and a token after retire fails naming the reason and the fix.
# After retire the old root's OCSP requests are "unauthorized" and
# /v1/crl/previous is a 404.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
TD=spiffe://example.org/ns/rs
"$MTLS" ca init root --trust-domain example.org > /dev/null
cp root/ca.pem oldroot.pem
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --url "$URL" --ocsp-ttl 6s
ca_pid=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
hup() {	# hup PHASE: reload ca serve, wait for the reload that took PHASE
	kill -HUP "$ca_pid"
	wait_for 10 grep -q "\"event\":\"reload\",\"result\":\"ok\".*\"rotation\":\"$1\"" "$T_DIR/caserve.log"
}
# old-root certificates: a stapling server (enrolled through ca serve, so
# it names the OCSP responder), its client, and one to revoke later
"$MTLS" ca token create --ca root --spiffe-id "$TD/server" > srv.token
"$MTLS" agent --once --ca-url "$URL" --token-file srv.token --out-dir srv > agent.log 2>&1 \
    || { not_ok "agent enrolls the server" "$(cat agent.log)"; exit 0; }
q "$MTLS" ca issue --ca root --spiffe-id "$TD/client" --ttl 1h --out cli
q "$MTLS" ca issue --ca root --spiffe-id "$TD/victim" --ttl 1h --out victim
q "$MTLS" ca issue --ca root --spiffe-id "$TD/oldpeer" --ttl 1h --out oldpeer
# join tokens made before the switch
for t in early mitm retired; do
	"$MTLS" ca token create --ca root --spiffe-id "$TD/$t" > "$t.token"
done
mkdir www && echo "stapled hello" > www/index.html
be=$(free_port) in=$(free_port) out=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert srv/svid.pem \
    --key srv/svid.key --ca srv/bundle.pem --allow "$TD/client" --workers 1
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$out" --target "127.0.0.1:$in" \
    --cert cli.pem --key cli.key --ca oldroot.pem --expect "$TD/server" --workers 1 --require-staple
for l in inbound outbound; do
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$l.log" || { not_ok "$l starts" "$(cat "$T_DIR/$l.log")"; exit 0; }
done
wait_for 10 port_open "$be"
body=$(curl -sS --max-time 10 "http://127.0.0.1:$out/index.html" 2>&1)
[ "$body" = "stapled hello" ] || not_ok "before the rotation: a stapled request goes through" "$body"

# ---- rotate to switched ----
expect_exit 2 "ca crl --previous before any rotation: refused" "$MTLS" ca crl --ca root --previous --out prev-cli0.pem
expect_grep "no previous issuer: the rotation is not in phase switched" "$T_DIR/err" "the refusal says why"
[ ! -e prev-cli0.pem ] && ok "and writes nothing" || not_ok "prev-cli0.pem written"
q "$MTLS" ca rotation prepare --ca root
q "$MTLS" ca rotation publish --ca root
hup published || not_ok "reload published" "$(grep reload "$T_DIR/caserve.log")"
q "$MTLS" ca rotation switch --ca root --force	# the --once agent never reports
hup switched && ok "rotated to switched, ca serve reloaded" || { not_ok "reload switched" "$(grep reload "$T_DIR/caserve.log")"; exit 0; }
cp root/ca.pem newroot.pem
grep -q '"event":"previous_issuer"' "$T_DIR/caserve.log" && ok "ca serve loaded the previous issuer's key" ||
    not_ok "previous issuer loaded" "$(grep -E 'previous_issuer|reload' "$T_DIR/caserve.log")"

# ---- (a) OCSP for the old root's leaves ----
ocsp() {	# ocsp NAME: ask ca serve about NAME.pem (issued by the old root), check with the old root alone
	openssl ocsp -no_nonce -issuer oldroot.pem -cert "$1.pem" -reqout "$1.req" 2>/dev/null
	curl -sS --max-time 5 --cacert root/bundle.pem -H 'Content-Type: application/ocsp-request' \
	    --data-binary @"$1.req" "$URL/v1/ocsp" -o "$1.resp"
	openssl ocsp -respin "$1.resp" -issuer oldroot.pem -cert "$1.pem" -CAfile oldroot.pem -resp_text 2>&1
}
ocsp victim > o1.txt
grep -q "Response verify OK" o1.txt && grep -q "^victim.pem: good" o1.txt &&
    ok "after the switch: OCSP for an old-root leaf is good, signed by the old root" ||
    not_ok "old-root OCSP good" "$(grep -E 'verify|victim|Status|Responder' o1.txt)"
vserial=$(serial_of victim.pem)
q "$MTLS" ca revoke --ca root "$vserial" --reason keyCompromise
ocsp victim > o2.txt
grep -q "Response verify OK" o2.txt && grep -q "^victim.pem: revoked" o2.txt &&
    ok "revoked after the switch: OCSP says revoked, signed by the old root" ||
    not_ok "old-root OCSP revoked" "$(grep -E 'verify|victim|Status' o2.txt)"
# an issuer answers only for what it issued: a serial of the new root's
# named with the old root (its name and key in the CertID) is "unknown"
# (it was the new leaf's "good"), and the revoked old-root serial named
# with the new root too
ocsp_as() {	# ocsp_as ISSUER NAME: ask about NAME.pem's serial as issued by ISSUER.pem
	local sn
	sn=0x$(serial_of "$2.pem")
	openssl ocsp -no_nonce -issuer "$1.pem" -serial "$sn" -reqout "$1-$2.req" 2>/dev/null
	curl -sS --max-time 5 --cacert root/bundle.pem -H 'Content-Type: application/ocsp-request' \
	    --data-binary @"$1-$2.req" "$URL/v1/ocsp" -o "$1-$2.resp"
	openssl ocsp -respin "$1-$2.resp" -issuer "$1.pem" -serial "$sn" -CAfile "$1.pem" -resp_text 2>&1 |
	    sed "s/^$sn:/$2:/"
}
q "$MTLS" ca issue --ca root --spiffe-id "$TD/newleaf" --ttl 1h --out newleaf
openssl verify -CAfile newroot.pem newleaf.pem > /dev/null 2>&1 || not_ok "newleaf is the new root's"
ocsp_as newroot newleaf > o5.txt
grep -q "Response verify OK" o5.txt && grep -q "^newleaf: good" o5.txt &&
    ok "OCSP for a new-root serial, naming the new root: good" ||
    not_ok "new-root OCSP good" "$(grep -E 'verify|newleaf|Status|Error' o5.txt)"
ocsp_as oldroot newleaf > o6.txt
grep -q "Response verify OK" o6.txt && grep -q "^newleaf: unknown" o6.txt &&
    ok "the new root's serial named with the old root: unknown, not good" ||
    not_ok "old root, new serial: unknown" "$(grep -E 'verify|newleaf|Status|Error' o6.txt)"
ocsp_as newroot victim > o7.txt
grep -q "Response verify OK" o7.txt && grep -q "^victim: unknown" o7.txt &&
    ok "the old root's serial named with the new root: unknown, not revoked" ||
    not_ok "new root, old serial: unknown" "$(grep -E 'verify|victim|Status|Error' o7.txt)"
# the stapling server's staples from before the switch expire in 6 s: two
# good ones fetched since the switch, and the client requiring a staple
# still gets through
nstaple() { grep -c '"event":"ocsp_staple".*"status":"good"' "$T_DIR/inbound.log"; }
base=$(nstaple)
two_more() { [ "$(nstaple)" -ge $((base + 2)) ]; }
wait_for 40 two_more &&
    ok "the stapling proxy fetched good staples for its old-root leaf after the switch" ||
    not_ok "staples after the switch" "$(grep ocsp_staple "$T_DIR/inbound.log" | tail -3)"
body=$(curl -sS --max-time 10 "http://127.0.0.1:$out/index.html" 2>&1)
[ "$body" = "stapled hello" ] && ok "--require-staple keeps reaching the old-root leaf across the switch" ||
    not_ok "require_staple across the switch" "$body $(grep handshake "$T_DIR/outbound.log" | tail -2)"

# ---- (b) the old root's CRL ----
getcrl() { curl -sS --max-time 5 --cacert root/bundle.pem -o "$2" -w '%{http_code}' "$URL$1"; }
code=$(getcrl /v1/crl/previous prev1.der)
openssl crl -inform DER -in prev1.der -CAfile oldroot.pem -noout > crlv.txt 2>&1
[ "$code" = 200 ] && grep -q "verify OK" crlv.txt && ok "/v1/crl/previous: a CRL that verifies with the old root" ||
    not_ok "old CRL served" "$code $(cat crlv.txt)"
openssl crl -inform DER -in prev1.der -noout -text > prev1.txt 2>&1
grep -qi "Serial Number: *0*$vserial" prev1.txt && ok "it lists the revocation made after the switch" ||
    not_ok "old CRL lists the revocation" "$(grep -i serial prev1.txt | head -5)"
crlnum() { openssl crl -inform DER -in "$1" -noout -crlnumber | sed 's/^crlNumber=0x//'; }
q "$MTLS" ca revoke --ca root "$(serial_of cli.pem)"
n1=$(crlnum prev1.der) n2=$n1
# a revocation made outside ca serve is counted within a second
grown() { getcrl /v1/crl/previous prev2.der > /dev/null; n2=$(crlnum prev2.der); [ $((16#$n2)) -gt $((16#$n1)) ]; }
[ -n "$n1" ] && wait_for 5 grown && ok "its CRL number grows with the next revocation ($n1 -> $n2)" ||
    not_ok "old CRL number grows" "$n1 -> $n2"
getcrl /v1/crl cur.der > /dev/null
openssl crl -inform DER -in cur.der -CAfile newroot.pem -noout > curv.txt 2>&1
grep -q "verify OK" curv.txt && ok "/v1/crl is still the new root's CRL" || not_ok "current CRL" "$(cat curv.txt)"
# the same from the command line: the old issuer's CRL, signed by rotation/old.key
expect_exit 0 "ca crl --previous in phase switched" "$MTLS" ca crl --ca root --previous --out prev-cli.pem
expect_grep "wrote prev-cli.pem \\([0-9]+ revoked; the previous issuer's, CN=example.org Root CA,O=example.org\\)" "$T_DIR/out" \
    "it says whose CRL it wrote"
openssl crl -in prev-cli.pem -CAfile oldroot.pem -noout > cliv.txt 2>&1
grep -q "verify OK" cliv.txt && ok "ca crl --previous: a CRL that verifies with the old root" || not_ok "CLI old CRL" "$(cat cliv.txt)"
openssl crl -in prev-cli.pem -noout -text > prev-cli.txt 2>&1
grep -qi "Serial Number: *0*$vserial" prev-cli.txt && grep -qi "Serial Number: *0*$(serial_of cli.pem)" prev-cli.txt &&
    ok "it lists both revocations made after the switch" || not_ok "CLI old CRL lists them" "$(grep -i serial prev-cli.txt)"
n3=$(openssl crl -in prev-cli.pem -noout -crlnumber | sed 's/^crlNumber=0x//')
[ $((16#$n3)) -gt $((16#$n2)) ] && ok "its CRL number follows ca serve's ($n2 -> $n3)" || not_ok "CLI CRL number" "$n2 -> $n3"

# ---- (c) a join token made before the switch ----
expect_exit 0 "after the switch: a token made before it enrolls" \
    "$MTLS" agent --once --ca-url "$URL" --token-file early.token --out-dir late
newsub=$(openssl x509 -in newroot.pem -noout -subject | sed 's/^subject=//')
openssl x509 -in late/svid.pem -noout -issuer 2>/dev/null | grep -qF "$newsub" &&
    ok "its certificate is the new root's" || not_ok "enrolled under the new root" "$(openssl x509 -in late/svid.pem -noout -issuer 2>&1)"
# a man in the middle: another CA's certificate for localhost, with the
# genuine bundle and everything ca serve presents after its own leaf
# (the cross-certificate, the old root's certificate for ca serve's key)
q "$MTLS" ca init other --trust-domain example.org --name "Other Root"
q "$MTLS" ca issue --ca other --dns localhost --out mitm
openssl s_client -connect "127.0.0.1:$port" -servername localhost -showcerts < /dev/null 2> /dev/null |
    awk '/BEGIN CERTIFICATE/{n++} n>1' | sed -n '/BEGIN/,/END/p' > served-rest.pem
grep -c 'BEGIN CERTIFICATE' served-rest.pem | grep -q '^2$' && ok "ca serve presents the cross-certificate and the old root's certificate for its key" ||
    not_ok "served chain" "$(grep -c BEGIN served-rest.pem)"
cat mitm.pem served-rest.pem > mitm.chain
curl -sS --cacert root/bundle.pem "$URL/v1/bundle" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bundle"], end="")' > genuine-bundle.pem
mp=$(free_port)
start_bg fake python3 "$_root/tests/integration/helpers/fake_ca.py" "$mp" mitm.chain mitm.key genuine-bundle.pem "$T_DIR/fake.reqs"
wait_for 10 port_open "$mp" || not_ok "the man in the middle starts" "$(cat "$T_DIR/fake.log")"
expect_exit 1 "a man in the middle with another CA's certificate: the agent refuses" \
    "$MTLS" agent --once --ca-url "https://localhost:$mp" --token-file mitm.token --out-dir mitm-out
secret=$(cut -d. -f4 mitm.token)
! grep -q -- "$secret" "$T_DIR/fake.reqs" && ! grep -q '"method": "POST"' "$T_DIR/fake.reqs" &&
    ok "the man in the middle never received the token" || not_ok "the MITM got the token" "$(cat "$T_DIR/fake.reqs")"

# ---- (b) a proxy checking CRLs across the switch: /v1/crl/all ----
# a new-root server trusting the overlap bundle, CRLs from ca serve: the
# old root's peers are still judged by the old root's CRL
cp=$(free_port)
start_bg crlproxy "$MTLS" proxy --listen "127.0.0.1:$cp" --target "127.0.0.1:$be" --cert late/svid.pem \
    --key late/svid.key --ca late/bundle.pem --allow-any --crl-url "$URL/v1/crl/all" --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/crlproxy.log" || not_ok "the CRL-checking proxy starts" "$(cat "$T_DIR/crlproxy.log")"
peer() {	# peer NAME RESULT: NAME.pem's handshake with the proxy is logged with RESULT
	openssl s_client -connect "127.0.0.1:$cp" -cert "$1.pem" -key "$1.key" -CAfile late/bundle.pem < /dev/null > /dev/null 2>&1
	grep -q "\"serial\":\"0*$(serial_of "$1.pem")\".*\"result\":\"$2\"" "$T_DIR/crlproxy.log"
}
wait_for 10 peer oldpeer ok && ok "a proxy fetching /v1/crl/all serves an old-root peer after the switch" ||
    not_ok "old-root peer with CRLs" "$(grep -E 'handshake|crl' "$T_DIR/crlproxy.log" | tail -3)"
wait_for 10 peer victim revoked && ok "and refuses the old-root peer revoked after the switch, as revoked" ||
    not_ok "revoked old-root peer" "$(grep -E 'handshake|crl' "$T_DIR/crlproxy.log" | tail -3)"

# ---- retire: the old root is no longer answered for ----
q "$MTLS" ca rotation retire --ca root --force
hup retired || not_ok "reload retired" "$(grep reload "$T_DIR/caserve.log")"
ocsp victim > o3.txt
grep -q "unauthorized" o3.txt && ok "after retire: OCSP for an old-root leaf is unauthorized (RFC 6960 2.3)" ||
    not_ok "old-root OCSP after retire" "$(head -5 o3.txt)"
code=$(getcrl /v1/crl/previous prev3.der)
[ "$code" = 404 ] && grep -q no_previous_issuer prev3.der && ok "after retire: /v1/crl/previous is a 404 naming why" ||
    not_ok "old CRL after retire" "$code $(head -c 300 prev3.der)"
expect_exit 2 "after retire: ca crl --previous refused" "$MTLS" ca crl --ca root --previous --out prev-cli3.pem
expect_grep "after retire the old issuer is trusted nowhere" "$T_DIR/err" "naming why"
expect_exit 1 "after retire: a token made before the switch is refused" \
    "$MTLS" agent --once --ca-url "$URL" --token-file retired.token --out-dir retired-out
expect_grep "root rotated\\? new token: mtls ca token create" "$T_DIR/err" "the refusal names the reason and the fix"
exit 0
