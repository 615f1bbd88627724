#!/usr/bin/env bash
# Attack session s23 (an outside attacker with the docs and the binary).
# Federation: a partner's bundle may not take our identities away. The
# partner's root issues a certificate to the name and public key of our
# intermediate (it needs neither our key nor our help) and puts it in the
# bundle it gives us. OpenSSL prefers an issuer from the trust store, so
# the path of every one of our clients then ended at the partner's root
# and was refused trust_domain_mismatch. Our clients must get in; the
# partner's forged leaf for our trust domain must still be refused.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
q "$MTLS" ca init partner --trust-domain partner.com
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://partner.com/ns/web --out pweb
# the partner's CA turned hostile: its role widened to our trust domain
sed -i 's|^allow = spiffe://partner.com/\*|allow = spiffe://partner.com/* spiffe://example.org/*|' partner/ca.conf
q "$MTLS" ca issue --ca partner --spiffe-id spiffe://example.org/ns/prod/client --out forged
# keycopy(NAME CA): a CA certificate with NAME's subject and public key,
# issued by the partner's root
keycopy() {
	openssl x509 -in "$2/ca.pem" -noout -pubkey > "$1.pub" &&
	openssl req -new -key partner/ca.key -subj "$(openssl x509 -in "$2/ca.pem" -noout -subject \
	    -nameopt compat | sed 's/^subject=//')" -out "$1.csr" 2>/dev/null &&
	printf '[e]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > "$1.cnf" &&
	openssl x509 -req -in "$1.csr" -CA partner/ca.pem -CAkey partner/ca.key -force_pubkey "$1.pub" \
	    -extfile "$1.cnf" -extensions e -days 30 -set_serial "0x$RANDOM" -out "$1.pem" 2>/dev/null
}
keycopy kint int || { echo "setup failed: key copy of int"; exit 1; }
keycopy kroot root || { echo "setup failed: key copy of root"; exit 1; }
[ "$(openssl x509 -in kint.pem -noout -subject)" = "$(openssl x509 -in int/ca.pem -noout -subject)" ] ||
    { echo "setup failed: subject of the key copy"; exit 1; }
cat partner/ca.pem kint.pem kroot.pem > hostile.pem

be=$(free_port)
mkdir www && echo 'body-s23' > www/x.txt
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory "$T_DIR/www"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

port=$(free_port)
start_bg fed "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca "root/bundle.pem, partner.com:hostile.pem" --allow spiffe://example.org/ns/prod/client \
    --allow 'spiffe://partner.com/ns/web' --log-format json --workers 1
log="$T_DIR/fed.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "proxy with the hostile partner bundle starts" "$(cat "$log")"; exit 0; }
ok "proxy with the hostile partner bundle starts"

get() {	# get CERT: the body of GET /x.txt through the proxy, or nothing
	printf 'GET /x.txt HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet \
	    -CAfile root/bundle.pem -cert "$1.pem" -cert_chain "$1.pem" -key "$1.key" 2>/dev/null
}
hs() {	# hs PEER RESULT NAME: a handshake line for PEER with RESULT appears
	wait_for 5 grep -q "\"event\":\"handshake\".*\"peer_id\":\"$1\".*\"result\":\"$2\"" "$log" && ok "$3" ||
	    not_ok "$3" "$(grep '"event":"handshake"' "$log" | tail -2)"
}
out=$(get client)
[[ "$out" == *body-s23* ]] && ok "our own client gets through despite a partner key copy of our intermediate" ||
    not_ok "our own client gets through despite a partner key copy of our intermediate" "$out"
hs spiffe://example.org/ns/prod/client ok "our own client: handshake ok (not trust_domain_mismatch)"
out=$(get pweb)
[[ "$out" == *body-s23* ]] && ok "the partner's client still gets through" || not_ok "the partner's client" "$out"
out=$(get forged)
[[ "$out" != *body-s23* ]] && ok "the partner's forged leaf for our trust domain: no byte of the body" ||
    not_ok "forged leaf refused" "$out"
hs spiffe://example.org/ns/prod/client trust_domain_mismatch "the forged leaf: trust_domain_mismatch"
