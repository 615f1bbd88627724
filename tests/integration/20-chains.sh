#!/usr/bin/env bash
# The verification matrix of chains.txt: `mtls cert verify` must give the
# verdict and taxonomy code of each case, and agree with `openssl verify`
# where the case says openssl must agree.
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
cd "$T_DIR"
now=$(date +%s)

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name "scoped" \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns example.org
q "$MTLS" ca intermediate open --parent root --name "open"
q "$MTLS" ca issue --ca open --spiffe-id spiffe://example.org/ns/prod/api --dns api.example.org --out good
q "$MTLS" ca issue --ca open --spiffe-id spiffe://example.org/ns/prod/gone --out revoked
q "$MTLS" ca revoke --ca open "$(serial_of revoked.pem)"
q "$MTLS" ca crl --ca open --out crl.pem
q "$MTLS" ca init other --trust-domain other.org
q "$MTLS" ca intermediate otherint --parent other --name "other int"
q "$MTLS" ca issue --ca otherint --spiffe-id spiffe://other.org/x --out foreign
openssl x509 -in good.pem -out leaf_only.pem

# mk NAME SIGNER_CERT SIGNER_KEY "EXTENSIONS" [KEYSPEC] [DIGEST] [SUBJ]
# An openssl-made certificate NAME.pem with key NAME.key, valid now.
mk() {
	local name=$1 scert=$2 skey=$3 ext=$4 keyspec=${5:-ec:P-256} md=${6:-sha256}
	local subj=${7:-/O=example.org/CN=$name}
	case "$keyspec" in
	dsa:*) openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:${keyspec#dsa:} -out "$name.param" 2>/dev/null &&
	    openssl genpkey -paramfile "$name.param" -out "$name.key" 2>/dev/null ;;
	ec:*) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:${keyspec#ec:} -out "$name.key" 2>/dev/null ;;
	rsa:*) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:${keyspec#rsa:} -out "$name.key" 2>/dev/null ;;
	esac
	printf '%b\n' "$ext" > "$name.ext"
	openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null &&
	openssl x509 -req -in "$name.csr" -CA "$scert" -CAkey "$skey" -set_serial "${SERIAL:-0x$(openssl rand -hex 16)}" \
	    -days 2 -"$md" -extfile "$name.ext" -out "$name.pem" 2>/dev/null ||
	{ echo "setup: cannot make $name" >&2; exit 1; }
}
leafext='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth'
openssl x509 -in open/ca.pem -out open1.pem
openssl x509 -in int/ca.pem -out int1.pem

mk notca open1.pem open/ca.key 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign'
mk notca_leaf notca.pem notca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/a"
cat notca_leaf.pem notca.pem open1.pem > notca_chain.pem

mk sub open1.pem open/ca.key 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign'
mk sub_leaf sub.pem sub.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/b"
cat sub_leaf.pem sub.pem open1.pem > pathlen_chain.pem

mk nc int1.pem int/ca.key "$leafext\nsubjectAltName=URI:spiffe://other.org/x"
cat nc.pem int1.pem > nc_chain.pem
mk scope int1.pem int/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/dev/x"
cat scope.pem int1.pem > scope_chain.pem
mk dnsout int1.pem int/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/d,DNS:api.other.org"
cat dnsout.pem int1.pem > dnsout_chain.pem
mk ipout int1.pem int/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/i,IP:10.0.0.5"
cat ipout.pem int1.pem > ipout_chain.pem

mk serveronly open1.pem open/ca.key 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=URI:spiffe://example.org/ns/prod/s'
cat serveronly.pem open1.pem > serveronly_chain.pem
mk twouri open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/a,URI:spiffe://example.org/ns/prod/b"
cat twouri.pem open1.pem > twouri_chain.pem
mk catrue open1.pem open/ca.key 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/prod/c'
cat catrue.pem open1.pem > catrue_chain.pem
mk rsa1024 open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/r" rsa:1024
cat rsa1024.pem open1.pem > rsa1024_chain.pem
mk rsa2048 open1.pem open/ca.key "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://example.org/ns/prod/r2" rsa:2048
cat rsa2048.pem open1.pem > rsa2048_chain.pem
mk sha1 open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/h" ec:P-256 sha1
cat sha1.pem open1.pem > sha1_chain.pem

# wildcard DNS SANs (RFC 6125 6.4.3) for --dns
mk wild open1.pem open/ca.key "$leafext\nsubjectAltName=DNS:*.example.org"
cat wild.pem open1.pem > wild_chain.pem
mk partial open1.pem open/ca.key "$leafext\nsubjectAltName=DNS:f*.example.org"
cat partial.pem open1.pem > partial_chain.pem
mk wildtld open1.pem open/ca.key "$leafext\nsubjectAltName=DNS:*.org"
cat wildtld.pem open1.pem > wildtld_chain.pem

# RFC 5280 as written (X509_V_FLAG_X509_STRICT plus check_rfc5280 in
# verify.c); docs/security/path-validation.md
noid='subjectKeyIdentifier=none\nauthorityKeyIdentifier=none'
mk noaki open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/k\n$noid"
cat noaki.pem open1.pem > noaki_chain.pem
mk noski open1.pem open/ca.key "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n$noid\nauthorityKeyIdentifier=keyid"
mk noski_leaf noski.pem noski.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/k"
cat noski_leaf.pem noski.pem open1.pem > noski_chain.pem
mk eenc open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/n\nnameConstraints=critical,permitted;DNS:example.org"
cat eenc.pem open1.pem > eenc_chain.pem
mk ncsoft root/ca.pem root/ca.key "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=permitted;URI:example.org"
mk ncsoft_leaf ncsoft.pem ncsoft.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/n"
cat ncsoft_leaf.pem ncsoft.pem > ncsoft_chain.pem
mk exbar root/ca.pem root/ca.key "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=critical,excluded;DNS:bar.example.org"
mk exbar_leaf exbar.pem exbar.key "$leafext\nsubjectAltName=DNS:*.example.org"
cat exbar_leaf.pem exbar.pem > exbar_chain.pem
SERIAL=0 mk serial0 open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/z"
cat serial0.pem open1.pem > serial0_chain.pem
mk dotdns open1.pem open/ca.key "$leafext\nsubjectAltName=DNS:.example.org"
cat dotdns.pem open1.pem > dotdns_chain.pem
mk dsa open1.pem open/ca.key "$leafext\nsubjectAltName=URI:spiffe://example.org/ns/prod/q" dsa:2048
cat dsa.pem open1.pem > dsa_chain.pem

rel_time() {	# +3d / -1d / +2h -> absolute UNIX time
	local v=$1 n unit
	n=${v%[dh]}; unit=${v: -1}
	case "$unit" in d) echo $((now + n * 86400)) ;; h) echo $((now + n * 3600)) ;; esac
}

run_case() {
	local name=$1 chain=$2 anchors=$3 at=$4 purpose=$5 flags=$6 ossl=$7 crl=$8 want=$9 want_ossl=${10} untrusted=${11}
	local args=() oargs=() t rc out leaf rest
	args=(cert verify "$chain" --ca "$anchors")
	[ -n "$at" ] && { t=$(rel_time "$at"); args+=(--at "$t"); oargs+=(-attime "$t"); }
	[ -n "$purpose" ] && { args+=(--purpose "$purpose"); oargs+=(-purpose "ssl$purpose"); }
	[ -n "$crl" ] && { args+=(--crl "$crl"); oargs+=(-crl_check -CRLfile "$crl"); }
	# shellcheck disable=SC2206
	[ -n "$flags" ] && args+=($flags)
	# shellcheck disable=SC2206
	[ -n "$ossl" ] && oargs+=($ossl)
	out=$("$MTLS" "${args[@]}" 2>&1)
	rc=$?
	if [ "$want" = ok ]; then
		if [ $rc -eq 0 ] && [[ "$out" == ok:* ]]; then ok "mtls: $name"
		else not_ok "mtls: $name" "want ok, exit $rc: $out"; fi
	else
		if [ $rc -eq 1 ] && [[ "$out" == "$want:"* ]]; then ok "mtls: $name -> $want"
		else not_ok "mtls: $name" "want exit 1 and $want, got exit $rc: $out"; fi
	fi
	[ "$want_ossl" = skip ] && return
	# openssl verify takes the leaf and the rest as -untrusted
	awk 'BEGIN{n=0} /-----BEGIN/{n++} {print > (n==1 ? "case_leaf.pem" : "case_rest.pem")}' "$chain"
	[ -f case_rest.pem ] || : > case_rest.pem
	[ -n "$untrusted" ] && cat "$untrusted" >> case_rest.pem
	if [ -s case_rest.pem ]; then oargs+=(-untrusted case_rest.pem); fi
	out=$(openssl verify -CAfile "$anchors" "${oargs[@]}" case_leaf.pem 2>&1)
	rc=$?
	rm -f case_leaf.pem case_rest.pem
	if { [ "$want_ossl" = ok ] && [ $rc -eq 0 ]; } || { [ "$want_ossl" = fail ] && [ $rc -ne 0 ]; }; then
		ok "openssl agrees: $name ($want_ossl)"
	else
		not_ok "openssl agrees: $name" "want $want_ossl, exit $rc: $out"
	fi
}

# Parse chains.txt: blocks of key = value separated by blank lines.
declare -A c=()
flush() {
	[ -n "${c[name]:-}" ] || return 0
	run_case "${c[name]}" "${c[chain]}" "${c[anchors]:-root/bundle.pem}" "${c[at]:-}" \
	    "${c[purpose]:-}" "${c[flags]:-}" "${c[ossl]:-}" "${c[crl]:-}" "${c[expect]}" \
	    "${c[openssl]:-skip}" "${c[untrusted]:-}"
	c=()
}
while IFS= read -r line || [ -n "$line" ]; do
	case "$line" in
	'#'*) continue ;;
	'') flush ;;
	*=*) k=$(echo "${line%%=*}" | tr -d ' '); v=${line#*= }; c[$k]=$v ;;
	esac
done < "$here/chains.txt"
flush
exit 0
