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

# ---- RSA public exponent 1: a key with no secret part ----
# The "signature" of any message under e = 1 is its padded digest: such a
# CSR verifies, and whoever has seen the certificate (a handshake, a log,
# XFCC) signs as it. The CA must not issue one, a peer must not pass one.
cat > e1csr.py <<'PY'
import base64, hashlib, os, sys
def L(n):
    if n < 128: return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, 'big'); return bytes([0x80 | len(b)]) + b
def T(t, c): return bytes([t]) + L(len(c)) + c
def INT(v): return T(2, v.to_bytes((v.bit_length() + 8) // 8 or 1, 'big'))
def OID(s):
    p = [int(x) for x in s.split('.')]; o = bytes([40 * p[0] + p[1]])
    for v in p[2:]:
        e = [v & 0x7f]; v >>= 7
        while v: e.append(0x80 | (v & 0x7f)); v >>= 7
        o += bytes(reversed(e))
    return T(6, o)
SEQ = lambda *a: T(0x30, b''.join(a))
n = int.from_bytes(os.urandom(256), 'big') | (1 << 2047) | 1
spki = SEQ(SEQ(OID('1.2.840.113549.1.1.1'), b'\x05\x00'), T(3, b'\x00' + SEQ(INT(n), INT(1))))
cri = SEQ(INT(0), SEQ(T(0x31, SEQ(OID('2.5.4.3'), T(0x0c, b'w')))), spki, b'\xa0\x00')
di = SEQ(SEQ(OID('2.16.840.1.101.3.4.2.1'), b'\x05\x00'), T(4, hashlib.sha256(cri).digest()))
em = b'\x00\x01' + b'\xff' * (256 - 3 - len(di)) + b'\x00' + di     # the signature: s^1 = EM
csr = base64.b64encode(SEQ(cri, SEQ(OID('1.2.840.113549.1.1.11'), b'\x05\x00'), T(3, b'\x00' + em))).decode()
print("-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(csr[i:i + 64] for i in range(0, len(csr), 64)) +
      "\n-----END CERTIFICATE REQUEST-----")
PY
cat > fakekey.py <<'PY'
import base64, subprocess, sys	# an RSA "private key" with d = 1 for CERT's modulus
n = int(subprocess.run(["openssl", "x509", "-in", sys.argv[1], "-noout", "-modulus"], capture_output=True,
    text=True).stdout.strip().split("=")[1], 16)
def L(k):
    if k < 128: return bytes([k])
    b = k.to_bytes((k.bit_length() + 7) // 8, 'big'); return bytes([0x80 | len(b)]) + b
def T(t, c): return bytes([t]) + L(len(c)) + c
def INT(v): return T(2, v.to_bytes((v.bit_length() + 8) // 8 or 1, 'big'))
b = base64.b64encode(T(0x30, b''.join(INT(v) for v in (0, n, 1, 1, 3, 5, 1, 1, 2)))).decode()
print("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) +
      "\n-----END RSA PRIVATE KEY-----")
PY
python3 e1csr.py > e1.csr && openssl req -in e1.csr -noout -verify 2>/dev/null || { echo "setup failed: e=1 CSR"; exit 1; }
expect_exit 2 "ca issue refuses a CSR whose RSA public exponent is 1" "$MTLS" ca issue --ca int \
    --spiffe-id spiffe://example.org/ns/prod/client --csr e1.csr --out e1issued
expect_grep 'weak_key_or_signature' "$T_DIR/err" "the refusal is weak_key_or_signature"
[ ! -e e1issued.pem ] && ok "no certificate written for the e=1 key" || not_ok "no certificate written for the e=1 key"
# one made by hand with our intermediate's key (another tool, an older CA)
printf '[e]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/prod/client\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > e1.cnf
openssl x509 -req -in e1.csr -CA int/ca.pem -CAkey int/ca.key -extfile e1.cnf -extensions e -days 1 \
    -set_serial 0x5e51 -out e1leaf.pem 2>/dev/null && cat e1leaf.pem int/ca.pem > e1.pem &&
    python3 fakekey.py e1leaf.pem > e1.key || { echo "setup failed: e=1 leaf"; exit 1; }
"$MTLS" doctor files --cert e1.pem --key e1.key --ca root/bundle.pem --json > doctor.json 2>/dev/null
[ "$(js doctor.json '[f["code"] for f in d["findings"] if "public exponent" in f.get("text", "")]')" = "['weak_key_or_signature']" ] &&
    ok "doctor files names the unsafe RSA exponent (weak_key_or_signature)" ||
    not_ok "doctor files names the unsafe RSA exponent" "$(head -c 600 doctor.json)"
# a proxy without federation: nothing but the key decides
port=$(free_port)
start_bg plain "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --log-format json --workers 1
log="$T_DIR/plain.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "plain proxy starts" "$(cat "$log")"; exit 0; }
out=$(get client)
[[ "$out" == *body-s23* ]] && ok "plain proxy: our own client gets through" || not_ok "plain proxy: our client" "$out"
out=$(get e1)
[[ "$out" != *body-s23* ]] && ok "a client with an e=1 RSA certificate and a key anyone can make: no byte of the body" ||
    not_ok "e=1 client refused" "$out"
wait_for 5 grep -q '"result":"weak_key_or_signature"' "$log" && ok "the e=1 client: weak_key_or_signature" ||
    not_ok "the e=1 client: weak_key_or_signature" "$(grep '"event":"handshake"' "$log" | tail -1)"

# ---- a partner bundle of thousands of roots ----
# 12000 roots fit in the 8 MiB file limit; filling OpenSSL 3.0's trust
# store with them took minutes of CPU at every config build (3000: 7 s).
# A federated trust domain's bundle holds at most 100 roots.
openssl ecparam -name prime256v1 -genkey -noout -out many.key 2>/dev/null
cp partner/ca.pem many.pem
for i in $(seq 1 100); do
	openssl req -x509 -key many.key -subj "/CN=r$i" -days 2 -set_serial "$i" \
	    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null >> many.pem ||
	    { echo "setup failed: root $i"; exit 1; }
done
expect_exit 2 "a partner bundle of 101 roots refuses to start" timeout 20 "$MTLS" proxy --listen 127.0.0.1:1 \
    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca "root/bundle.pem, partner.com:many.pem" --allow-any
expect_grep 'at most 100 roots' "$T_DIR/err" "the refusal gives the limit"
