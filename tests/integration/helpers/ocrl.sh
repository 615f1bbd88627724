# ocrl OUT CERT KEY [openssl ca options]: a CRL revoking nothing, signed
# with KEY under CERT's name by `openssl ca -gencrl` (what mtls ca crl
# will not make: another key, dates of our choosing, a CA mtls no longer
# holds), CRL number 4096 (above mtls ca's own), one day, with the key's
# authority key identifier. Its scratch folder is oca-OUT; a failure stops
# the script with openssl's words.
ocrl() {
	local out=$1 cert=$2 key=$3 d
	shift 3
	d=oca-$(basename "$out")
	mkdir -p "$d" && : > "$d/index.txt" && echo 1000 > "$d/crlnumber"
	cat > "$d/ca.cnf" <<CNF
[ ca ]
default_ca = c
[ c ]
database = $d/index.txt
crlnumber = $d/crlnumber
default_md = sha256
default_crl_days = 1
crl_extensions = crlext
[ crlext ]
authorityKeyIdentifier = keyid:always
CNF
	openssl ca -batch -config "$d/ca.cnf" -gencrl -cert "$cert" -keyfile "$key" "$@" -out "$out" \
	    2> "$d/err" || { echo "setup: cannot make $out: $(cat "$d/err")"; exit 1; }
}
