#!/usr/bin/env bash
# The memo of libssl's parses (src/svc/proxy/x509memo.c): repeated client
# chains and tickets are answered from it (the counters in /metrics prove it
# is active in the shipped binary), and it never mixes up certificates or
# skips a check: interleaved identities keep their own verdicts and
# serials, an expired certificate after a good one is still refused, and a
# resumed session answered from it is still re-authorized.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
pki_bad_clients
mkdir www && echo "memo body" > www/index.html
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
port=$(free_port) admin=$(free_port)
cat > proxy.conf <<EOF
[listener "in"]
listen = 127.0.0.1:$port
target = 127.0.0.1:$be
cert = server.pem
key = server.key
ca = root/bundle.pem
allow = spiffe://example.org/ns/prod/client
crl = crl.pem
EOF
start_bg proxy "$MTLS" proxy --config proxy.conf --admin "127.0.0.1:$admin" --workers 2
PID=$BG_PID
log="$T_DIR/proxy.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "proxy starts" "$(cat "$log")"; exit 0; }
ok "proxy starts"

metric() {	# metric KIND RESULT: the memo counter
	curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics" |
	    awk -v k="kind=\"$1\"" -v r="result=\"$2\"" 'index($0, "mtls_parse_memo_total{") == 1 && index($0, k) && index($0, r) { print $2 }'
}
get() {	# get NAME: one request with NAME.pem/NAME.key; prints the body
	curl -sS --max-time 10 --cacert root/bundle.pem --cert "$1.pem" --key "$1.key" "https://localhost:$port/index.html" 2>/dev/null
}

h0=$(metric certificate hit)
[ -n "$h0" ] && ok "/metrics has the memo counters" || not_ok "memo counters" "$(curl -sS "http://127.0.0.1:$admin/metrics" | tail -5)"
t0=$(metric session hit)
good=0 refused=0
for i in 1 2 3 4 5 6; do
	[ "$(get client)" = "memo body" ] && good=$((good + 1))
	get intruder > /dev/null || refused=$((refused + 1))
	get expired > /dev/null || refused=$((refused + 1))
done
[ "$good" = 6 ] && ok "a good chain interleaved with others: 6 of 6 answered" || not_ok "good chain answered" "$good of 6"
[ "$refused" = 12 ] && ok "the intruder and the expired certificate: 12 of 12 refused" || not_ok "bad chains refused" "$refused of 12"
n_ok() { grep '"event":"handshake"' "$log" | grep '"result":"ok"' | grep -c "\"serial\":\"$(serial_of client.pem)\""; }
n_na() { grep '"result":"not_authorized"' "$log" | grep -c "\"serial\":\"$(serial_of intruder.pem)\""; }
n_exp() { grep -c '"result":"cert_expired"' "$log"; }
exp_ge() { [ "$(n_exp)" -ge "$1" ]; }
wait_for 5 exp_ge 6	# the log line of the last refusal may still be on its way
[ "$(n_ok)" -ge 6 ] && [ "$(n_na)" -ge 6 ] && [ "$(n_exp)" -ge 6 ] &&
    ok "each handshake logged with its own verdict and serial" || not_ok "verdicts" "ok $(n_ok) not_authorized $(n_na) expired $(n_exp)"
h1=$(metric certificate hit)
[ "$((h1 - h0))" -ge 20 ] && ok "repeated chains are answered from the memo ($((h1 - h0)) hits)" \
    || not_ok "certificate memo hits" "$h0 -> $h1"
t1=$(metric session hit)
[ "$((t1 - t0))" -ge 6 ] && ok "making a ticket reuses the session instead of parsing it back ($((t1 - t0)) for 6 tickets)" \
    || not_ok "ticket construction answered without a parse" "$t0 -> $t1"

# the good leaf with one bit of its CA signature flipped: the same key and
# names, different bytes; after the good one is memoized it must not pass
openssl x509 -in client.pem -outform DER -out leaf.der
python3 -c "import sys; b=bytearray(open('leaf.der','rb').read()); b[-1]^=1; open('tampered.der','wb').write(b)"
{ openssl x509 -inform DER -in tampered.der; sed -n '/END CERTIFICATE/,$p' client.pem | sed 1d; } > tampered.pem
cp client.key tampered.key
nbad=$(grep -c '"event":"handshake"' "$log")
get tampered > /dev/null && not_ok "a tampered copy of a memoized certificate is refused" "it got the body" \
    || ok "a tampered copy of a memoized certificate is refused"
wait_for 5 count_gt "$log" '"event":"handshake"' "$nbad"
last=$(grep '"event":"handshake"' "$log" | tail -1)
code=$(printf '%s' "$last" | sed -n 's/.*"result":"\([a-z_]*\)".*/\1/p')
[ -n "$code" ] && [ "$code" != ok ] && ok "and logged with a failure code ($code)" \
    || not_ok "tampered certificate logged as a failure" "$last"

sc() {	# sc [s_client args...]: one request, all output
	printf 'GET /index.html HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
	    -CAfile root/bundle.pem -cert client.pem -cert_chain client.pem -key client.key -ign_eof "$@" 2>&1
}
sc -sess_out s.sess > /dev/null
s0=$(metric session hit)
r=0
for i in 1 2 3; do
	out=$(sc -sess_in s.sess)
	[[ "$out" == *Reused* && "$out" == *"memo body"* ]] && r=$((r + 1))
done
[ "$r" = 3 ] && ok "one ticket resumes three times" || not_ok "resumption" "$r of 3"
s1=$(metric session hit)
[ "$((s1 - s0))" -ge 2 ] && ok "a ticket presented again is answered from the memo ($((s1 - s0)) hits)" \
    || not_ok "session memo hits" "$s0 -> $s1"

# re-authorization still runs on a memoized resumption: the client is
# revoked (a new CRL, picked up by the file watch), so the same ticket must
# not get it in, and its full handshake is refused as revoked
n=$(grep '"event":"reload"' "$log" | grep -c '"result":"ok"')
q "$MTLS" ca revoke --ca int "$(serial_of client.pem)"
q "$MTLS" ca crl --ca int --out crl.new && mv crl.new crl.pem
reloads_gt() { [ "$(grep '"event":"reload"' "$log" | grep -c '"result":"ok"')" -gt "$1" ]; }
wait_for 10 reloads_gt "$n" || not_ok "the new CRL is loaded" "$(grep reload "$log")"
nr=$(grep -c '"result":"revoked"' "$log")
out=$(sc -sess_in s.sess)
[[ "$out" != *"memo body"* ]] && ok "after the client is revoked the memoized ticket does not get it in" \
    || not_ok "re-authorization after revocation" "$(echo "$out" | grep -E 'Reused|New|memo')"
wait_for 5 count_gt "$log" '"result":"revoked"' "$nr" && ok "and the refusal is logged revoked" \
    || not_ok "refusal logged" "$(tail -3 "$log")"
