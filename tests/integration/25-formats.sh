#!/usr/bin/env bash
# The formats users ask for (issue 13, section 5), each read back by a
# consumer that is not mtls: `mtls cert export` as PKCS#12 (JDK keytool and
# OpenSSL), HAProxy's combined PEM (a real HAProxy serving it), DER, a
# kubernetes.io/tls Secret; `mtls ca bundle --format spiffe` read by Go's
# standard library and by --ca; PKCS#12, DER and SPIFFE bundles read by
# cert inspect/verify and doctor files. Bad input changes nothing.
. "$(dirname "$0")/lib.sh"
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
for t in go keytool haproxy curl; do
	command -v "$t" >/dev/null || { not_ok "$t installed (scripts/deps.sh check)"; exit 0; }
done
export GOCACHE=$T_DIR/gocache GOPATH=$T_DIR/gopath GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off
go build -o gobundle "$H/gobundle.go" 2> go.err || { not_ok "go helper builds" "$(cat go.err)"; exit 0; }

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name int --permit-spiffe spiffe://example.org/ns/prod/ \
    --permit-dns localhost
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/api --dns localhost --out api
q "$MTLS" ca init rroot --trust-domain example.org --key-type rsa-2048
q "$MTLS" ca issue --ca rroot --spiffe-id spiffe://example.org/ns/prod/r --out r
printf 'pass word\n' > pw
printf 'nope\n' > badpw

# ---- SPIFFE trust bundle ----
expect_exit 0 "ca bundle --format spiffe writes a JWK Set" "$MTLS" ca bundle --ca root --format spiffe --out b.json
"$MTLS" ca bundle --ca rroot --format spiffe > rb.json
out=$(./gobundle b.json api.pem) && [ "$out" = "ok 1 roots" ] \
    && ok "Go's standard library reads the bundle (JWK matches x5c) and verifies the chain with it" \
    || not_ok "gobundle EC" "$out"
out=$(./gobundle rb.json r.pem) && [ "$out" = "ok 1 roots" ] && ok "... and an RSA root's n/e" || not_ok "gobundle RSA" "$out"
"$MTLS" ca bundle --ca root > b.pem
cmp -s b.pem root/bundle.pem && ok "ca bundle (PEM) prints bundle.pem" || not_ok "ca bundle PEM"
expect_exit 0 "cert verify --ca accepts a SPIFFE bundle" "$MTLS" cert verify api.pem --ca b.json
expect_exit 1 "... whose roots are only its own (another CA's leaf is refused)" "$MTLS" cert verify r.pem --ca b.json
python3 - b.json > tampered.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
k = d["keys"][0]
k["x"] = ("A" if k["x"][0] != "A" else "B") + k["x"][1:]
print(json.dumps(d))
PY
expect_exit 2 "a bundle whose JWK does not describe its x5c certificate is refused" "$MTLS" cert verify api.pem --ca tampered.json
expect_grep "JWK members do not describe" "$T_DIR/err" "... and says so"
echo '{"keys":[{"use":"jwt-svid","kty":"EC","crv":"P-256","x":"AA","y":"AA"}],"spiffe_sequence":1}' > jwtonly.json
expect_exit 2 "a bundle with no x509-svid key is refused" "$MTLS" cert verify api.pem --ca jwtonly.json
expect_grep "no x509-svid key" "$T_DIR/err" "... naming why"

# ---- PKCS#12 ----
expect_exit 0 "cert export --format p12" "$MTLS" cert export --cert api.pem --key api.key --format p12 \
    --password-file pw --out api.p12
[ "$(stat -c %a api.p12)" = 600 ] && ok "the PKCS#12 file is 0600" || not_ok "p12 mode" "$(stat -c %a api.p12)"
keytool -list -v -keystore api.p12 -storetype PKCS12 -storepass 'pass word' > kt.out 2>&1 &&
    grep -q 'Entry type: PrivateKeyEntry' kt.out && grep -q 'Certificate chain length: 2' kt.out \
    && ok "JDK keytool (KeyStore) loads it: one key entry with its 2-certificate chain" \
    || not_ok "keytool reads the p12" "$(head -20 kt.out)"
openssl pkcs12 -in api.p12 -passin 'pass:pass word' -nodes -nocerts 2>/dev/null | openssl pkey -pubout > p12pub.pem &&
    openssl pkey -in api.key -pubout | cmp -s - p12pub.pem \
    && ok "openssl reads the key back from it" || not_ok "openssl pkcs12 key"
openssl pkcs12 -in api.p12 -passin 'pass:pass word' -info -noout 2> p12info.txt
grep -q 'PBES2, PBKDF2, AES-256-CBC' p12info.txt && grep -q 'MAC: sha256' p12info.txt \
    && ok "AES-256/PBKDF2 bags and a SHA-256 MAC (no RC2, no 3DES)" || not_ok "p12 algorithms" "$(cat p12info.txt)"
expect_exit 2 "p12 without --password-file is refused" "$MTLS" cert export --cert api.pem --key api.key --format p12 --out x.p12
[ ! -e x.p12 ] && ok "... and writes nothing" || not_ok "nothing written"
expect_exit 0 "cert inspect reads PKCS#12 with --password-file" "$MTLS" cert inspect api.p12 --password-file pw
expect_grep 'spiffe://example.org/ns/prod/api' "$T_DIR/out" "... showing its leaf"
expect_exit 2 "cert inspect: a wrong PKCS#12 password" "$MTLS" cert inspect api.p12 --password-file badpw
expect_grep 'password is wrong' "$T_DIR/err" "... says the password is wrong"
expect_exit 2 "cert inspect: no password for a protected PKCS#12" "$MTLS" cert inspect api.p12
expect_grep 'give the password with --password-file' "$T_DIR/err" "... says how to give it"
expect_exit 0 "cert verify reads a PKCS#12 leaf" "$MTLS" cert verify api.p12 --password-file pw --ca root/bundle.pem \
    --spiffe-id spiffe://example.org/ns/prod/api
expect_exit 0 "doctor files: a PKCS#12 --cert brings its key" "$MTLS" doctor files --cert api.p12 --password-file pw \
    --ca b.json
expect_grep 'the private key matches' "$T_DIR/out" "... and the key is checked against the leaf"

# a hostile MAC iteration count: refused at once, before any password is tried
openssl pkcs12 -export -in api.pem -inkey api.key -passout pass: -keypbe NONE -certpbe NONE \
    -iter 16777216 -maciter -out iter.p12 2>/dev/null
python3 - iter.p12 <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
i = b.rfind(bytes([2, 4, 1, 0, 0, 0]))   # INTEGER 16777216, the MAC's count
assert i > 0
open(sys.argv[1], "wb").write(b[:i] + bytes([2, 4, 0x7f, 0xff, 0xff, 0xff]) + b[i + 6:])
PY
t0=$(ms)
expect_exit 2 "a PKCS#12 file with 2^31 MAC iterations is refused" timeout 20 "$MTLS" cert inspect iter.p12
expect_grep 'MAC iteration count 2147483647 is outside' "$T_DIR/err" "... at once ($(( $(ms) - t0 )) ms), naming the count"
expect_exit 2 "... also where any DER file is read (--ca)" timeout 20 "$MTLS" cert verify api.pem --ca iter.p12

# ---- DER ----
"$MTLS" cert export --cert api.pem --format der > api.der
openssl x509 -inform der -in api.der -noout -subject > der.txt 2>&1 && grep -q 'CN = localhost' der.txt \
    && ok "cert export --format der: openssl reads the leaf" || not_ok "der" "$(cat der.txt)"
expect_exit 0 "cert inspect reads DER" "$MTLS" cert inspect api.der
expect_exit 1 "cert verify reads a DER leaf (no chain in it: chain_incomplete)" "$MTLS" cert verify api.der --ca root/bundle.pem
expect_grep '^chain_incomplete' "$T_DIR/out" "... and names what is missing"

# ---- HAProxy combined PEM, served by HAProxy ----
expect_exit 0 "cert export --format pem (HAProxy crt)" "$MTLS" cert export --cert api.pem --key api.key --format pem --out haproxy.pem
[ "$(stat -c %a haproxy.pem)" = 600 ] && ok "the combined PEM is 0600" || not_ok "pem mode"
hp=$(free_port)
cat > haproxy.cfg <<CFG
global
    log stderr format raw local0
defaults
    mode http
    timeout client 10s
    timeout server 10s
    timeout connect 5s
frontend fe
    bind 127.0.0.1:$hp ssl crt $T_DIR/haproxy.pem
    http-request return status 200 content-type text/plain string "served by haproxy"
CFG
start_bg haproxy haproxy -db -f haproxy.cfg
wait_for 10 port_open "$hp" || { not_ok "haproxy starts with our combined PEM" "$(cat "$T_DIR/haproxy.log")"; exit 0; }
out=$(curl -sS --max-time 5 --cacert root/bundle.pem "https://localhost:$hp/" 2>&1)
[ "$out" = "served by haproxy" ] && ok "HAProxy serves the exported chain; curl verifies it to the root" \
    || not_ok "haproxy with the exported crt" "$out"

# ---- Kubernetes Secret ----
expect_exit 0 "cert export --format k8s" "$MTLS" cert export --cert api.pem --key api.key --format k8s \
    --ca root/bundle.pem --name api-tls --out secret.yaml
python3 - secret.yaml api.pem api.key root/bundle.pem > k8s.txt <<'PY'
import base64, re, sys
y = open(sys.argv[1]).read()
assert re.search(r"^kind: Secret$", y, re.M) and re.search(r"^type: kubernetes.io/tls$", y, re.M)
assert re.search(r"^  name: api-tls$", y, re.M)
data = dict(re.findall(r"^  (tls\.crt|tls\.key|ca\.crt): (\S+)$", y, re.M))
assert base64.b64decode(data["tls.crt"]) == open(sys.argv[2], "rb").read(), "tls.crt"
assert b"PRIVATE KEY" in base64.b64decode(data["tls.key"]), "tls.key"
assert base64.b64decode(data["ca.crt"]) == open(sys.argv[4], "rb").read(), "ca.crt"
print("ok")
PY
[ "$(cat k8s.txt)" = ok ] && ok "the Secret holds tls.crt, tls.key and ca.crt, byte for byte" || not_ok "k8s secret" "$(cat k8s.txt)"
base64 -d <<< "$(sed -n 's/^  tls.key: //p' secret.yaml)" > k8s.key
openssl pkey -in k8s.key -pubout | cmp -s - <(openssl pkey -in api.key -pubout) \
    && ok "... and tls.key is the certificate's key" || not_ok "k8s key"
expect_exit 2 "a --name that is not a Kubernetes name is refused" "$MTLS" cert export --cert api.pem --key api.key \
    --format k8s --name 'Bad_Name' --out bad.yaml
[ ! -e bad.yaml ] && ok "... and writes nothing" || not_ok "bad.yaml written"
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/other --out other
expect_exit 2 "a key that is not the certificate's is refused" "$MTLS" cert export --cert api.pem --key other.key \
    --format pem --out mismatch.pem
[ ! -e mismatch.pem ] && ok "... and writes nothing" || not_ok "mismatch.pem written"

# ---- GET /v1/bundle as a SPIFFE bundle ----
sp=$(free_port)
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$sp" --url "https://localhost:$sp" --dns localhost
wait_for 15 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
curl -sS --max-time 5 --cacert root/bundle.pem -H 'Accept: application/json' -D hdr.txt \
    "https://localhost:$sp/v1/bundle" > served.json
"$MTLS" ca bundle --ca int --format spiffe > local.json
grep -qi '^content-type: application/json' hdr.txt &&
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == json.load(open(sys.argv[2]))' served.json local.json \
    && ok "GET /v1/bundle with Accept: application/json answers the SPIFFE bundle (same as ca bundle --format spiffe)" \
    || not_ok "served JWKS" "$(cat hdr.txt; head -c 300 served.json)"
out=$(./gobundle served.json api.pem) && [ "$out" = "ok 1 roots" ] && ok "... which Go reads and verifies with" \
    || not_ok "gobundle served" "$out"
curl -sS --max-time 5 --cacert root/bundle.pem "https://localhost:$sp/v1/bundle" > served2.json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "BEGIN CERTIFICATE" in d["bundle"]' served2.json \
    && ok "without it (curl's */*, the agent) the PEM form stays" || not_ok "default bundle form" "$(head -c 300 served2.json)"

# ---- agent --layout k8s: a kubelet-style ..data swap ----
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/k8s > k8s.token 2> tok.err ||
    { not_ok "token for the k8s layout" "$(cat tok.err)"; exit 0; }
expect_exit 0 "agent --layout k8s enrolls" "$MTLS" agent --ca-url "https://localhost:$sp" --token-file k8s.token \
    --out-dir k8s --layout k8s --once
links_ok() {
	for f in tls.crt tls.key ca.crt; do
		[ "$(readlink "k8s/$f")" = "..data/$f" ] || return 1
	done
	d=$(readlink k8s/..data) && [[ "$d" == ..?* ]] && [ -d "k8s/$d" ] && [ ! -e k8s/svid.pem ]
}
links_ok && ok "tls.crt, tls.key and ca.crt are links into ..data, which points at a ..XXXXXX directory" \
    || not_ok "k8s layout links" "$(ls -la k8s)"
[ "$(stat -L -c %a k8s/tls.key)" = 600 ] && ok "tls.key is 0600" || not_ok "tls.key mode" "$(stat -L -c %a k8s/tls.key)"
expect_exit 0 "the certificate in tls.crt verifies with ca.crt" "$MTLS" cert verify k8s/tls.crt --ca k8s/ca.crt \
    --spiffe-id spiffe://example.org/ns/prod/k8s
d1=$(readlink k8s/..data) s1=$(serial_of k8s/tls.crt)
expect_exit 0 "agent --layout k8s renews" "$MTLS" agent --ca-url "https://localhost:$sp" --cert k8s/tls.crt \
    --key k8s/tls.key --out-dir k8s --layout k8s --once
d2=$(readlink k8s/..data)
[ "$d2" != "$d1" ] && [ "$(serial_of k8s/tls.crt)" != "$s1" ] && [ ! -e "k8s/$d1" ] &&
    [ "$(find k8s -maxdepth 1 -name '..?*' -type d | wc -l)" = 1 ] \
    && ok "a renewal swaps ..data to a new directory and removes the old one" \
    || not_ok "k8s swap" "d1=$d1 d2=$d2 $(ls -la k8s)"
openssl x509 -in k8s/tls.crt -noout -pubkey | cmp -s - <(openssl pkey -in k8s/tls.key -pubout) \
    && ok "tls.crt and tls.key belong together after the swap" || not_ok "k8s pair"
exit 0
