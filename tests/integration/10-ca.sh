#!/usr/bin/env bash
# The offline PKI: profiles checked by openssl, files and modes, no
# overwrite, key types, encrypted roots, CSRs, the inventory, CRLs, and bad
# input that changes nothing.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"

expect_exit 0 "ca init" "$MTLS" ca init root --trust-domain example.org
expect_exit 0 "ca intermediate (scoped)" "$MTLS" ca intermediate int --parent root --name "prod issuing" \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns prod.example.org
expect_exit 0 "ca issue" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/api \
    --dns api.prod.example.org --out api
expect_grep '^serial [0-9A-F]{32}$' "$T_DIR/out" "issue prints the 128-bit serial"
for f in ca.pem ca.key bundle.pem inventory.db ca.conf; do
	[ -f "root/$f" ] && ok "root has $f" || not_ok "root has $f"
done
[ "$(stat -c %a root/ca.key)" = 600 ] && ok "root key is 0600" || not_ok "root key is 0600" "$(stat -c %a root/ca.key)"
[ "$(stat -c %a int/ca.key)" = 600 ] && ok "intermediate key is 0600" || not_ok "intermediate key is 0600"
[ "$(stat -c %a api.key)" = 600 ] && ok "leaf key is 0600" || not_ok "leaf key is 0600"
[ "$(grep -c BEGIN api.pem)" = 2 ] && ok "PREFIX.pem is leaf + intermediate" || not_ok "PREFIX.pem is leaf + intermediate"

openssl x509 -in root/ca.pem -noout -text > root.txt
expect_grep 'CA:TRUE' root.txt "root: CA:TRUE"
expect_grep 'Basic Constraints: critical' root.txt "root: basicConstraints critical"
expect_grep 'Certificate Sign, CRL Sign' root.txt "root: keyCertSign, cRLSign"
expect_grep 'ASN1 OID: prime256v1' root.txt "root: EC P-256"
openssl x509 -in int/ca.pem -noout -text > int.txt
expect_grep 'CA:TRUE, pathlen:0' int.txt "intermediate: pathlen 0"
expect_grep 'X509v3 Name Constraints: critical' int.txt "intermediate: nameConstraints critical"
expect_grep 'URI:example.org' int.txt "intermediate: trust domain permitted"
expect_grep 'DNS:prod.example.org' int.txt "intermediate: DNS permitted"
expect_grep 'Authority Key Identifier' int.txt "intermediate: AKI"
openssl x509 -in api.pem -noout -text > leaf.txt
expect_grep 'CA:FALSE' leaf.txt "leaf: CA:FALSE"
expect_grep 'Key Usage: critical' leaf.txt "leaf: keyUsage critical"
expect_grep '^ +Digital Signature$' leaf.txt "leaf: digitalSignature only"
expect_grep 'TLS Web Server Authentication, TLS Web Client Authentication' leaf.txt "leaf: serverAuth+clientAuth"
expect_grep 'URI:spiffe://example.org/ns/prod/api' leaf.txt "leaf: SPIFFE ID in URI SAN"
expect_grep 'DNS:api.prod.example.org' leaf.txt "leaf: DNS SAN"
nb=$(date -d "$(openssl x509 -in api.pem -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in api.pem -noout -enddate | cut -d= -f2)" +%s)
[ $((na - nb)) -ge $((86400 + 240)) ] && [ $((na - nb)) -le $((86400 + 360)) ] \
    && ok "leaf: 24 h lifetime, notBefore back-dated 5 min" || not_ok "leaf lifetime" "$((na - nb)) s"

expect_exit 0 "openssl verify sslclient" openssl verify -CAfile root/bundle.pem -untrusted int/ca.pem -purpose sslclient api.pem
expect_exit 0 "openssl verify sslserver" openssl verify -CAfile root/bundle.pem -untrusted int/ca.pem -purpose sslserver api.pem

for kt in ec-p384 ed25519 rsa-2048; do
	expect_exit 0 "issue --key-type $kt" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/$kt \
	    --key-type "$kt" --out "k-$kt"
	expect_exit 0 "openssl verifies $kt leaf" openssl verify -CAfile root/bundle.pem -untrusted int/ca.pem -purpose sslclient "k-$kt.pem"
	expect_exit 0 "mtls verifies $kt leaf" "$MTLS" cert verify "k-$kt.pem" --ca root/bundle.pem --purpose client
done
openssl x509 -in k-rsa-2048.pem -noout -text | grep -q 'Digital Signature, Key Encipherment' \
    && ok "RSA leaf: keyEncipherment too" || not_ok "RSA leaf: keyEncipherment too"

# no overwrite without --force
cp api.pem api.pem.orig
expect_exit 2 "existing output is kept" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/api --out api
expect_grep 'already exists.*--force' "$T_DIR/err" "the error says to use --force"
cmp -s api.pem api.pem.orig && ok "api.pem unchanged" || not_ok "api.pem unchanged"
expect_exit 0 "--force replaces" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/api --out api --force
cmp -s api.pem api.pem.orig && not_ok "api.pem replaced" || ok "api.pem replaced"

# scope and role enforcement at issuance
expect_exit 2 "outside the SPIFFE scope: refused" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/dev/x --out dev
[ -e dev.pem ] || [ -e dev.key ] && not_ok "nothing written for a refused issue" || ok "nothing written for a refused issue"
expect_exit 2 "TTL beyond the role max: refused" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/x --ttl 1000d --out x
expect_grep 'max_ttl' "$T_DIR/err" "the error names max_ttl"

# a SPIFFE-only intermediate closes DNS, IP and e-mail (issue 12 item 5),
# and issuance refuses them even when a role would allow them: ca issue
# verifies what it signed with the peers' policy before recording it
expect_exit 0 "ca intermediate --permit-spiffe alone" "$MTLS" ca intermediate dev --parent root --name dev \
    --permit-spiffe spiffe://example.org/ns/dev/
openssl x509 -in dev/ca.pem -noout -text > dev.txt
expect_grep 'DNS:invalid' dev.txt "dev: DNS closed (permitted only the reserved name invalid)"
expect_grep 'email:invalid' dev.txt "dev: e-mail closed"
expect_grep 'IP:0.0.0.0/0.0.0.0' dev.txt "dev: IPv4 excluded"
expect_grep 'IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0' dev.txt "dev: IPv6 excluded"
sed -i 's|^allow = .*|allow = spiffe://example.org/ns/dev/* dns:* ip:*|' dev/ca.conf
for id in "--dns api.prod.example.org" "--ip 10.0.0.5"; do
	# shellcheck disable=SC2086
	expect_exit 2 "ca issue $id from dev (role allows it): refused" "$MTLS" ca issue --ca dev \
	    --spiffe-id spiffe://example.org/ns/dev/a $id --out devx
	expect_grep 'refusing to issue: .*name_constraints' "$T_DIR/err" "... by the name-constraint check"
	[ -e devx.pem ] || [ -e devx.key ] && not_ok "... nothing written" || ok "... nothing written"
done
expect_exit 0 "ca issue from dev inside its scope" "$MTLS" ca issue --ca dev --spiffe-id spiffe://example.org/ns/dev/a --out deva

# openssl rejects a leaf outside the permitted trust domain
openssl x509 -in int/ca.pem -out int1.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out evil.key 2>/dev/null
openssl req -new -key evil.key -subj /CN=evil -out evil.csr 2>/dev/null
printf 'basicConstraints=CA:FALSE\nsubjectAltName=URI:spiffe://other.org/x\n' > evil.ext
openssl x509 -req -in evil.csr -CA int1.pem -CAkey int/ca.key -set_serial 7 -days 1 -extfile evil.ext -out evil.pem 2>/dev/null
expect_exit 2 "openssl verify rejects a leaf outside the trust domain" openssl verify -CAfile root/bundle.pem -untrusted int1.pem evil.pem
cat "$T_DIR/out" "$T_DIR/err" > ossl.txt
expect_grep 'permitted subtree violation' ossl.txt "openssl says: permitted subtree violation"

# an encrypted root
printf 'correct horse battery staple\n' > pass
printf 'wrong\n' > wrong
expect_exit 0 "ca init --pass-file" "$MTLS" ca init eroot --trust-domain enc.example --pass-file pass
expect_grep 'ENCRYPTED PRIVATE KEY' eroot/ca.key "the root key is encrypted"
expect_exit 2 "wrong passphrase" "$MTLS" ca issue --ca eroot --spiffe-id spiffe://enc.example/a --out e1 --pass-file wrong
[ "$(wc -l < "$T_DIR/err")" = 1 ] && ok "wrong passphrase: one line on stderr" || not_ok "one line on stderr" "$(cat "$T_DIR/err")"
expect_grep 'eroot/ca.key' "$T_DIR/err" "the error names the key file"
expect_exit 2 "no passphrase for an encrypted key" "$MTLS" ca issue --ca eroot --spiffe-id spiffe://enc.example/a --out e1
expect_exit 0 "right passphrase" "$MTLS" ca issue --ca eroot --spiffe-id spiffe://enc.example/a --out e1 --pass-file pass

# a CSR: the key never leaves its owner
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout web.key -subj /CN=web -out web.csr 2>/dev/null
expect_exit 0 "issue --csr" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/web --csr web.csr --out web
[ -e web.key.new ] || [ "$(ls web.* | sort | tr '\n' ' ')" = "web.csr web.key web.pem " ] \
    && ok "no key written for a CSR" || not_ok "no key written for a CSR" "$(ls web.*)"
[ "$(openssl x509 -in web.pem -noout -pubkey)" = "$(openssl pkey -in web.key -pubout)" ] \
    && ok "the certificate carries the CSR's key" || not_ok "the certificate carries the CSR's key"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout sneaky.key -subj /CN=x \
    -addext "subjectAltName=URI:spiffe://example.org/ns/prod/admin" -out sneaky.csr 2>/dev/null
expect_exit 2 "a CSR asking for another identity is refused" "$MTLS" ca issue --ca int \
    --spiffe-id spiffe://example.org/ns/prod/web2 --csr sneaky.csr --out sneaky
head -c 200 web.csr > badsig.csr
expect_exit 2 "a damaged CSR is refused" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/w3 --csr badsig.csr --out w3
# the CSR parsed once (issue 15): DER, Ed25519 and P-384 keys issued as
# sent; a byte after the CSR refused (d2i_X509_REQ used to ignore it)
openssl req -new -newkey ed25519 -nodes -keyout ed.key -subj /CN=ed -outform DER -out ed.der 2>/dev/null
expect_exit 0 "issue --csr DER, Ed25519" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/ed --csr ed.der --out ed
[ "$(openssl x509 -in ed.pem -noout -pubkey)" = "$(openssl pkey -in ed.key -pubout)" ] \
    && ok "the certificate carries the Ed25519 CSR's key" || not_ok "the certificate carries the Ed25519 CSR's key"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout p384.key -subj /CN=p -out p384.csr 2>/dev/null
expect_exit 0 "issue --csr P-384" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/p384 --csr p384.csr --out p384
[ "$(openssl x509 -in p384.pem -noout -pubkey)" = "$(openssl pkey -in p384.key -pubout)" ] \
    && ok "the certificate carries the P-384 CSR's key" || not_ok "the certificate carries the P-384 CSR's key"
{ cat ed.der; printf 'x'; } > trailing.der
expect_exit 2 "a byte after a DER CSR is refused" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/tr --csr trailing.der --out tr
expect_grep 'trailing.der: not a CSR' "$T_DIR/err" "the error names the file and says not a CSR"

# inventory, expiry monitoring, revocation, CRL
expect_exit 0 "issue a 2-day certificate" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/short --ttl 2d --out short
expect_exit 0 "ca list --json" "$MTLS" ca list --ca int --json
python3 - "$T_DIR/out" api.pem web.pem short.pem <<'PY' > check.txt 2>&1 && ok "list --json holds every serial" || not_ok "list --json holds every serial" "$(cat check.txt)"
import json, subprocess, sys
rows = json.load(open(sys.argv[1]))
have = {r["serial"] for r in rows}
for f in sys.argv[2:]:
    s = subprocess.run(["openssl", "x509", "-in", f, "-noout", "-serial"], capture_output=True, text=True).stdout
    s = s.strip().split("=")[1].lstrip("0")
    assert s in have, (f, s, have)
assert all(r["status"] in ("valid", "revoked", "expired") for r in rows)
PY
expect_exit 1 "list --expiring 7d exits 1 when something is due" "$MTLS" ca list --ca int --expiring 7d
expect_grep "$(serial_of short.pem).*3d" "$T_DIR/out" "the 2-day certificate is flagged 3d"
expect_exit 0 "list --expiring 1h exits 0 when nothing is due" "$MTLS" ca list --ca eroot --expiring 1h
# nothing revoked yet: the count is 0 (was "-1": the CRL's empty list is NULL)
expect_exit 0 "ca crl with nothing revoked" "$MTLS" ca crl --ca int --out crl0.pem
expect_grep '\(0 revoked\)' "$T_DIR/out" "ca crl says 0 revoked"
s=$(serial_of short.pem)
expect_exit 0 "ca revoke" "$MTLS" ca revoke --ca int "$s" --reason keyCompromise
expect_exit 0 "ca revoke again is harmless" "$MTLS" ca revoke --ca int "$s"
expect_exit 2 "ca revoke of an unknown serial" "$MTLS" ca revoke --ca int 0123456789ABCDEF
expect_exit 0 "ca crl" "$MTLS" ca crl --ca int --out crl.pem
expect_grep '\(1 revoked\)' "$T_DIR/out" "ca crl says 1 revoked"
openssl crl -in crl.pem -noout -text > crl.txt
expect_grep "Serial Number: 0*$s" crl.txt "openssl crl lists the serial"
expect_grep 'Key Compromise' crl.txt "the CRL has the reason"
expect_grep 'X509v3 CRL Number' crl.txt "the CRL has a number"
expect_exit 2 "openssl verify -crl_check rejects the revoked leaf" openssl verify -CAfile root/bundle.pem \
    -untrusted int/ca.pem -crl_check -CRLfile crl.pem short.pem
expect_exit 0 "openssl verify -crl_check accepts another leaf" openssl verify -CAfile root/bundle.pem \
    -untrusted int/ca.pem -crl_check -CRLfile crl.pem api.pem
expect_exit 1 "mtls cert verify --crl: revoked" "$MTLS" cert verify short.pem --ca root/bundle.pem --crl crl.pem
expect_grep '^revoked: ' "$T_DIR/out" "mtls prints the revoked code"

# bad input: one line naming the file, exit 2, nothing written
snapshot() { find . -newer "$T_DIR/mark" -type f | sort; }
echo garbage > garbage.pem
head -c 300 api.pem > trunc.pem
touch "$T_DIR/mark"; sleep 0.01
expect_exit 2 "inspect garbage" "$MTLS" cert inspect garbage.pem
expect_grep 'garbage.pem' "$T_DIR/err" "the error names garbage.pem"
expect_exit 2 "verify truncated PEM" "$MTLS" cert verify trunc.pem --ca root/bundle.pem
expect_grep 'trunc.pem' "$T_DIR/err" "the error names trunc.pem"
expect_exit 2 "a CA directory that is not one" "$MTLS" ca issue --ca . --spiffe-id spiffe://example.org/a --out z1
expect_grep 'not a CA directory' "$T_DIR/err" "it says: not a CA directory"
expect_exit 2 "invalid SPIFFE ID (uppercase trust domain)" "$MTLS" ca issue --ca int --spiffe-id spiffe://Example.org/ns/prod/a --out z2
expect_exit 2 "invalid SPIFFE ID (dot segment)" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/../x --out z3
expect_exit 2 "unwritable output" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/a --out garbage.pem/x
cp -r int broken && head -c 4096 /dev/urandom > broken/inventory.db
expect_exit 2 "a corrupted inventory" "$MTLS" ca issue --ca broken --spiffe-id spiffe://example.org/ns/prod/a --out z4
expect_grep 'inventory' "$T_DIR/err" "the error names the inventory"
touch "$T_DIR/mark"; sleep 0.01
expect_exit 2 "a CA directory that exists is never overwritten" "$MTLS" ca init int --trust-domain example.org
[ -z "$(find . -newer "$T_DIR/mark" -type f -not -path './broken/*' -not -name out -not -name err)" ] && ok "bad input wrote nothing" \
    || not_ok "bad input wrote nothing" "$(find . -newer "$T_DIR/mark" -type f)"
ls -a | grep -q '\.tmp-' && not_ok "no temporary files left" "$(ls -a)" || ok "no temporary files left"
exit 0
