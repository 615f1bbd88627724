#!/usr/bin/env bash
# A scoped intermediate, as OpenSSL, Go's crypto/x509, GnuTLS and mtls see
# it (issue 12 item 5, issue 13 item 1). Each case is a chain; all four
# verifiers must give the verdict in the table, so our encoding of the
# scope is checked against the others' name-constraint code, not ours.
#   dev     mtls ca intermediate --permit-spiffe spiffe://example.org/ns/dev/
#   web     ... --permit-spiffe .../ns/web/ --permit-dns web.example.org
#   legacy  what mtls wrote before: only a URI subtree, scope extension
#           under the 2.25 OID (made here with openssl)
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
cd "$T_DIR"

# Go: a stdlib-only helper built here, offline, caches in $T_DIR
if ! command -v go >/dev/null || ! command -v certtool >/dev/null; then
	not_ok "go and certtool are installed" "run scripts/deps.sh check (golang-go gnutls-bin)"
	exit 0
fi
export GOCACHE=$T_DIR/gocache GOPATH=$T_DIR/gopath GOFLAGS=-mod=mod GOTOOLCHAIN=local GOPROXY=off
if go build -o goverify "$here/helpers/goverify.go" 2> go.err; then ok "go helper builds"
else not_ok "go helper builds" "$(cat go.err)"; exit 0; fi

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate dev --parent root --name dev --permit-spiffe spiffe://example.org/ns/dev/
q "$MTLS" ca intermediate web --parent root --name web --permit-spiffe spiffe://example.org/ns/web/ \
    --permit-dns web.example.org
q "$MTLS" ca issue --ca dev --spiffe-id spiffe://example.org/ns/dev/a --out dev_ok
q "$MTLS" ca issue --ca web --spiffe-id spiffe://example.org/ns/web/a --dns api.web.example.org --out web_ok

# the legacy intermediate: URI subtree only, scope under the 2.25 OID
legacy_oid=2.25.199447486927615877784465314696394383395
scope_der=$(python3 -c 'import sys; s=b"spiffe://example.org/ns/dev/"; i=bytes([0x16,len(s)])+s; print((bytes([0x30,len(i)])+i).hex())')
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out legacy.key 2>/dev/null
printf '%s\n' 'basicConstraints=critical,CA:TRUE,pathlen:0' 'keyUsage=critical,keyCertSign,cRLSign' \
    'subjectKeyIdentifier=hash' 'authorityKeyIdentifier=keyid:always' \
    'nameConstraints=critical,permitted;URI:example.org' "$legacy_oid=DER:$scope_der" > legacy.ext
openssl req -new -key legacy.key -subj "/O=example.org/CN=legacy" -out legacy.csr 2>/dev/null &&
openssl x509 -req -in legacy.csr -CA root/ca.pem -CAkey root/ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days 2 -extfile legacy.ext -out legacy.pem 2>/dev/null || { not_ok "setup: legacy intermediate"; exit 0; }

# leaf NAME ISSUER_PEM ISSUER_KEY SAN [SUBJECT]: openssl-made, as a CA
# holding the intermediate's key could make it (mtls ca issue would refuse)
leaf() {
	local name=$1 icert=$2 ikey=$3 san=$4 subj=${5:-/O=example.org}
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" 2>/dev/null
	printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
	    'extendedKeyUsage=serverAuth,clientAuth' "subjectAltName=$san" > "$name.ext"
	openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null &&
	openssl x509 -req -in "$name.csr" -CA "$icert" -CAkey "$ikey" -set_serial "0x$(openssl rand -hex 16)" \
	    -days 1 -extfile "$name.ext" -out "$name.leaf" 2>/dev/null ||
	{ echo "setup: cannot make $name" >&2; exit 1; }
	cat "$name.leaf" "$icert" > "$name.pem"
}
spf=URI:spiffe://example.org/ns/dev/a
openssl x509 -in dev/ca.pem -out dev1.pem
openssl x509 -in web/ca.pem -out web1.pem
leaf dev_dns dev1.pem dev/ca.key "$spf,DNS:api.prod.example.org"
leaf dev_ip dev1.pem dev/ca.key "$spf,IP:10.0.0.5"
leaf dev_ip6 dev1.pem dev/ca.key "$spf,IP:::1"
leaf dev_cn dev1.pem dev/ca.key "$spf" "/O=example.org/CN=api.prod.example.org"
leaf dev_td dev1.pem dev/ca.key "URI:spiffe://other.org/ns/dev/a"
leaf web_dns web1.pem web/ca.key "URI:spiffe://example.org/ns/web/a,DNS:api.prod.example.org"
leaf legacy_ok legacy.pem legacy.key "$spf"
leaf legacy_dns legacy.pem legacy.key "$spf,DNS:api.prod.example.org"
leaf legacy_ip legacy.pem legacy.key "$spf,IP:10.0.0.5"
leaf legacy_cn legacy.pem legacy.key "$spf" "/O=example.org/CN=api.prod.example.org"

# case CHAIN MTLS OPENSSL GO GNUTLS: mtls = ok or its taxonomy code;
# others ok | fail | parse (cannot even parse the chain)
case_() {
	local chain=$1 want_m=$2 want_o=$3 want_g=$4 want_t=$5 out rc got
	out=$("$MTLS" cert verify "$chain.pem" --ca root/bundle.pem 2>&1); rc=$?
	if { [ "$want_m" = ok ] && [ $rc -eq 0 ]; } || { [ $rc -eq 1 ] && [[ "$out" == "$want_m:"* ]]; }; then
		ok "mtls: $chain -> $want_m"
	else not_ok "mtls: $chain -> $want_m" "exit $rc: $out"; fi

	awk 'BEGIN{n=0} /-----BEGIN/{n++} n>1{print > "rest.pem"}' "$chain.pem"
	openssl verify -CAfile root/ca.pem -untrusted rest.pem "$chain.pem" > ossl.out 2>&1 && got=ok || got=fail
	rm -f rest.pem
	[ "$got" = "$want_o" ] && ok "openssl: $chain -> $want_o" ||
	    not_ok "openssl: $chain -> $want_o" "$(cat ossl.out)"

	./goverify root/ca.pem "$chain.pem" > go.out 2>&1; rc=$?
	case $rc in 0) got=ok ;; 1) got=fail ;; *) got=parse ;; esac
	[ "$got" = "$want_g" ] && ok "go: $chain -> $want_g" || not_ok "go: $chain -> $want_g" "$(cat go.out)"

	certtool --verify --load-ca-certificate root/ca.pem --infile "$chain.pem" > gnutls.out 2>&1 && got=ok || got=fail
	grep -q 'error parsing' gnutls.out && got=parse
	[ "$got" = "$want_t" ] && ok "gnutls: $chain -> $want_t" ||
	    not_ok "gnutls: $chain -> $want_t" "$(tail -3 gnutls.out)"
}

#     chain      mtls              openssl go    gnutls
case_ dev_ok     ok                ok      ok    ok
case_ dev_dns    name_constraints  fail    fail  fail
case_ dev_ip     name_constraints  fail    fail  fail
case_ dev_ip6    name_constraints  fail    fail  fail
# Go never reads the CN; OpenSSL and GnuTLS check a hostname-like one
case_ dev_cn     name_constraints  fail    ok    fail
# GnuTLS ignores permitted URI subtrees: it does not check the trust domain
case_ dev_td     name_constraints  fail    fail  ok
case_ web_ok     ok                ok      ok    ok
case_ web_dns    name_constraints  fail    fail  fail
# before the fix: OpenSSL saw DNS/IP/CN unconstrained, Go and GnuTLS could
# not parse the 2.25 OID; our verifier reads the scope and refuses
case_ legacy_ok  ok                ok      parse parse
case_ legacy_dns name_constraints  ok      parse parse
case_ legacy_ip  name_constraints  ok      parse parse
case_ legacy_cn  name_constraints  ok      parse parse

# the new intermediates carry the new OID, and only it
if openssl x509 -in dev/ca.pem -noout -text | grep -q '1.3.6.1.4.1.32473.6857.1' &&
   ! openssl x509 -in dev/ca.pem -noout -text | grep -q "$legacy_oid"; then
	ok "dev carries the scope under 1.3.6.1.4.1.32473.6857.1"
else not_ok "dev carries the scope under 1.3.6.1.4.1.32473.6857.1"; fi

# doctor and inspect say what the legacy OID breaks and how to reissue
"$MTLS" cert inspect legacy.pem > inspect_legacy.txt 2>&1
expect_grep 'WARNING: .*legacy OID.*Go.*GnuTLS.*reissue' inspect_legacy.txt "cert inspect warns about the legacy OID"
"$MTLS" cert inspect --json legacy.pem > inspect_legacy.json 2>&1
expect_grep '"spiffe_scope_oid": *"2\.25\.' inspect_legacy.json "cert inspect --json names the scope OID"
"$MTLS" cert inspect dev/ca.pem > inspect_dev.txt 2>&1
grep -q WARNING inspect_dev.txt && not_ok "no warning for the new OID" "$(cat inspect_dev.txt)" || ok "no warning for the new OID"
"$MTLS" doctor files --cert legacy_ok.pem --ca root/bundle.pem --json > doctor_legacy.json 2>&1
expect_grep '"check": *"interop"' doctor_legacy.json "doctor files: an interop finding for the legacy OID"
expect_grep 'mtls ca intermediate' doctor_legacy.json "... whose fix says how to reissue"

# a CA's own scope_oid (a deployment's PEN): written on its intermediates,
# understood by its own issuance check, and by verifiers given MTLS_SCOPE_OID
q "$MTLS" ca init proot --trust-domain example.org
sed -i 's/^# scope_oid = .*/scope_oid = 1.3.6.1.4.1.99999.7.1/' proot/ca.conf
q "$MTLS" ca intermediate pdev --parent proot --name pdev --permit-spiffe spiffe://example.org/ns/dev/
expect_grep '1\.3\.6\.1\.4\.1\.99999\.7\.1' <(openssl x509 -in pdev/ca.pem -noout -text) \
    "scope_oid from ca.conf is the extension's OID"
expect_grep '^scope_oid = 1\.3\.6\.1\.4\.1\.99999\.7\.1' pdev/ca.conf "the intermediate inherits scope_oid"
expect_exit 0 "pdev issues inside its scope" "$MTLS" ca issue --ca pdev \
    --spiffe-id spiffe://example.org/ns/dev/a --out pdev_ok
expect_exit 2 "pdev refuses outside its scope" "$MTLS" ca issue --ca pdev \
    --spiffe-id spiffe://example.org/ns/prod/a --out pdev_bad
openssl x509 -in pdev/ca.pem -out pdev1.pem
leaf pdev_out pdev1.pem pdev/ca.key "URI:spiffe://example.org/ns/prod/a"
expect_exit 1 "MTLS_SCOPE_OID: the path scope of a custom OID is enforced" \
    env MTLS_SCOPE_OID=1.3.6.1.4.1.99999.7.1 "$MTLS" cert verify pdev_out.pem --ca proot/bundle.pem
expect_grep '^name_constraints:' "$T_DIR/out" "... as name_constraints"
expect_exit 1 "MTLS_SCOPE_OID with a 2.25 UUID arc fails closed" \
    env MTLS_SCOPE_OID=2.25.199447486927615877784465314696394383395 "$MTLS" cert verify pdev_ok.pem --ca proot/bundle.pem
sed -i 's/^scope_oid = .*/scope_oid = 2.25/' pdev/ca.conf
expect_exit 2 "ca.conf scope_oid with two arcs: refused" "$MTLS" ca issue --ca pdev \
    --spiffe-id spiffe://example.org/ns/dev/b --out pdev_b
sed -i 's/^scope_oid = .*/scope_oid = 1.3.6.1.4.1.4294967296.1/' pdev/ca.conf
expect_exit 2 "ca.conf scope_oid with an arc over 31 bits: refused" "$MTLS" ca issue --ca pdev \
    --spiffe-id spiffe://example.org/ns/dev/b --out pdev_b
expect_grep 'scope_oid .* 31 bits' "$T_DIR/err" "... naming the key and the rule"
exit 0
