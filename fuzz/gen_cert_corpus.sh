#!/usr/bin/env bash
# Writes certificate inputs for fuzz_cert into DIR at run time (certificates
# are never committed): PEM chains, DER, truncated and bit-flipped copies,
# certificates with our SPIFFE scope extension and name constraints, a
# SPIFFE bundle and a PKCS#12 file.
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
