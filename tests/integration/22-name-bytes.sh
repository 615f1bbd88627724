#!/usr/bin/env bash
# A name with control bytes, spaces or non-ASCII is never an identity
# (issue 12 item 7, the library's half): certificates made by hand with a
# URI SAN holding CR LF (a header injection if it reached X-Client-Spiffe-Id
# or XFCC), a DNS SAN with a space and one with a byte >= 0x80. mtls cert
# verify refuses each as invalid_svid with the bytes escaped, and the proxy
# refuses the handshake with that code in its log line.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
openssl x509 -in int/ca.pem -out int1.pem

# forged NAME GENERALNAMES_DER_HEX: a leaf from int whose subjectAltName is
# exactly these DER bytes (openssl's "DER:" form takes them as they are)
forged() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
	printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
	    'extendedKeyUsage=serverAuth,clientAuth' "subjectAltName=DER:$2" > "$1.ext"
	openssl req -new -key "$1.key" -subj "/O=example.org" -out "$1.csr" 2>/dev/null &&
	openssl x509 -req -in "$1.csr" -CA int1.pem -CAkey int/ca.key -set_serial "0x$(openssl rand -hex 16)" \
	    -days 1 -extfile "$1.ext" -out "$1.leaf" 2>/dev/null || { not_ok "setup: $1"; exit 0; }
	cat "$1.leaf" int1.pem > "$1.pem"
}
# gn TAG BYTES...: GeneralNames DER with one name (tag 0x86 URI, 0x82 DNS)
gn() { python3 -c 'import sys; v=bytes(sys.argv[2],"latin-1").decode("unicode_escape").encode("latin-1"); n=bytes([int(sys.argv[1],16),len(v)])+v; print((bytes([0x30,len(n)])+n).hex())' "$@"; }

forged crlf "$(gn 86 'spiffe://example.org/ns/prod/a\r\nX-Injected: 1')"
forged dnssp "$(gn 82 'api example.org')"
forged dns8 "$(gn 82 'api.ex\xe4mple.org')"
forged uri7f "$(gn 86 'spiffe://example.org/ns/prod/a\x7f')"
if openssl x509 -in crlf.leaf -noout -ext subjectAltName 2>/dev/null | od -c | grep -q '\\r'; then
	ok "the forged leaf really holds CR LF in its URI SAN"
else not_ok "the forged leaf really holds CR LF in its URI SAN"; fi

for c in crlf dnssp dns8 uri7f; do
	expect_exit 1 "cert verify refuses $c" "$MTLS" cert verify "$c.pem" --ca root/bundle.pem
	expect_grep '^invalid_svid: leaf .* is not an identity' "$T_DIR/out" "... as invalid_svid, naming the name"
	if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f\x80-\xff]' "$T_DIR/out" "$T_DIR/err"; then
		not_ok "... and prints no raw control or 8-bit byte" "$(od -c "$T_DIR/out" | head)"
	else ok "... and prints no raw control or 8-bit byte"; fi
done
"$MTLS" cert verify crlf.pem --ca root/bundle.pem > crlf.out 2>&1
expect_grep 'URI SAN .spiffe://example.org/ns/prod/a\\x0d\\x0aX-Injected:\\x201' crlf.out \
    "the reason shows CR LF and the space escaped as \\xNN"

# a subject CN with CR LF, DEL and a C1 control (U+009B, CSI): refused as
# an identity, and neither verify nor inspect prints those bytes raw
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ctl.key 2>/dev/null
openssl req -new -key ctl.key -subj "/O=example.org/CN=ev"$'\r\n'"il"$'\x7f'"x"$'\xc2\x9b'"y" -out ctl.csr 2>/dev/null
printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'subjectAltName=URI:spiffe://example.org/ns/prod/ctl' > ctl.ext
openssl x509 -req -in ctl.csr -CA int1.pem -CAkey int/ca.key -set_serial 11 -days 1 -extfile ctl.ext \
    -out ctl.leaf 2>/dev/null && cat ctl.leaf int1.pem > ctl.pem || not_ok "setup: ctl"
expect_exit 1 "cert verify refuses a CN with CR LF" "$MTLS" cert verify ctl.pem --ca root/bundle.pem
expect_grep "^invalid_svid: .*subject CN 'ev\\\\x0d\\\\x0ail\\\\x7fx" "$T_DIR/out" "... escaped in the reason"
"$MTLS" cert inspect ctl.pem > ctl.txt 2>&1
if LC_ALL=C grep -qP '\xc2[\x80-\x9f]|[\x00-\x08\x0b-\x1f\x7f]' ctl.txt; then
	not_ok "cert inspect prints no raw C0/C1 control" "$(od -c ctl.txt | head -5)"
else ok "cert inspect prints no raw C0/C1 control"; fi

# the proxy: --allow-any, so only the verifier stands between the name and
# the log line (and, in http mode, the upstream's headers)
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
for fmt in json text; do
	p=$(free_port)
	start_bg "proxy_$fmt" "$MTLS" proxy --listen "127.0.0.1:$p" --target "127.0.0.1:$be" --cert server.pem \
	    --key server.key --ca root/bundle.pem --allow-any --workers 1 --log-format "$fmt"
	log=$T_DIR/proxy_$fmt.log
	wait_for 10 grep -q 'start' "$log" || { not_ok "proxy ($fmt) starts" "$(cat "$log")"; continue; }
	code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert root/bundle.pem --cert crlf.pem \
	    --key crlf.key "https://localhost:$p/" 2>/dev/null)
	[ "$code" != 200 ] && ok "proxy ($fmt) does not serve the CR LF certificate" ||
	    not_ok "proxy ($fmt) does not serve the CR LF certificate" "http $code"
	wait_for 5 grep -q 'invalid_svid' "$log" && ok "proxy ($fmt) logs invalid_svid" ||
	    not_ok "proxy ($fmt) logs invalid_svid" "$(tail -3 "$log")"
	if LC_ALL=C grep -q $'[\r\x01-\x08\x0b-\x1f\x7f]' "$log" || grep -q '^X-Injected' "$log"; then
		not_ok "proxy ($fmt) log has no raw control byte" "$(od -c "$log" | grep -m3 '\\r')"
	else ok "proxy ($fmt) log has no raw control byte"; fi
done
exit 0
