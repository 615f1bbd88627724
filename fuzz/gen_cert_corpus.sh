#!/usr/bin/env bash
# Writes certificate inputs for fuzz_cert into DIR at run time (certificates
# are never committed): PEM chains, DER, truncated and bit-flipped copies,
# certificates with our SPIFFE scope extension and name constraints, one
# with hostile bytes in its names, a SPIFFE bundle and a PKCS#12 file.
#   fuzz/gen_cert_corpus.sh MTLS_BINARY DIR
set -eu
mtls=$1 out=$2
mkdir -p "$out"
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
"$mtls" ca init "$w/root" --trust-domain example.org > /dev/null
"$mtls" ca intermediate "$w/int" --parent "$w/root" --name int \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns example.org > /dev/null
"$mtls" ca issue --ca "$w/int" --spiffe-id spiffe://example.org/ns/prod/a --dns a.example.org \
    --out "$w/leaf" > /dev/null
"$mtls" ca issue --ca "$w/root" --dns localhost --ip 127.0.0.1 --ip ::1 --out "$w/ip" > /dev/null
"$mtls" ca issue --ca "$w/int" --spiffe-id spiffe://example.org/ns/prod/r --key-type rsa-2048 --out "$w/rsa" > /dev/null
cp "$w/leaf.pem" "$out/chain.pem"
cp "$w/int/ca.pem" "$out/int.pem"
cp "$w/root/ca.pem" "$out/root.pem"
cp "$w/rsa.pem" "$out/rsa.pem"
cp "$w/ip.pem" "$out/ip.pem"
# names no identity may have (issue 18): ESC, LF, 0x80, an email and a
# directory name in the SANs, a subject with ESC and UTF-8
san=$(python3 -c '
v = [(0x86, b"spiffe://example.org/a\x1b[2J\nb"), (0x82, b"api.ex\x80mple.org"),
     (0x81, b"a\x1b]0;x\x07@b"), (0x82, b"\xc3\xa9.example.org\x00x")]
out = b"".join(bytes([t, len(d)]) + d for t, d in v)
print((bytes([0x30, len(out)]) + out).hex())')
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$w/hn.key" 2>/dev/null
printf '%s\n' 'basicConstraints=critical,CA:FALSE' "subjectAltName=DER:$san" > "$w/hn.ext"
openssl req -new -key "$w/hn.key" -subj "/O=ex"$'\x1b'"[2Jample/CN=caf"$'\xc3\xa9' -out "$w/hn.csr" 2>/dev/null &&
openssl x509 -req -in "$w/hn.csr" -CA "$w/int/ca.pem" -CAkey "$w/int/ca.key" -set_serial 99 -days 1 \
    -extfile "$w/hn.ext" -outform DER -out "$out/hostile-names.der" 2>/dev/null || true
openssl x509 -in "$w/leaf.pem" -outform DER -out "$out/leaf.der"
openssl x509 -in "$w/int/ca.pem" -outform DER -out "$out/int.der"
# the other forms certs_parse reads: a SPIFFE bundle (JWK Set) and PKCS#12
# (empty password, so that the parse gets past the MAC)
"$mtls" ca bundle --ca "$w/root" --format spiffe > "$out/bundle.json"
openssl pkcs12 -export -in "$w/leaf.pem" -inkey "$w/leaf.key" -passout pass: -out "$out/leaf.p12" 2>/dev/null
for f in chain.pem leaf.der int.der bundle.json leaf.p12; do
	sz=$(stat -c %s "$out/$f")
	head -c $((sz / 2)) "$out/$f" > "$out/half-$f"
	head -c $((sz - 1)) "$out/$f" > "$out/short-$f"
	python3 - "$out/$f" "$out/flip-$f" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
for i in range(7, len(b), 97):
    b[i] ^= 0x5a
open(sys.argv[2], "wb").write(bytes(b))
PY
done
