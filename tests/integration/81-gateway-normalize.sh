#!/usr/bin/env bash
# The gateway's request normalization and identity headers (issue 12,
# items 2, 3, 4, 7): the target and Host are normalized once, routed on
# and forwarded as routed; bytes outside the grammar are a 400; identity
# headers are folded (case, '-'/'_') and only ever set by us; a 400 never
# echoes bytes past what the request sent; a certificate name with CR LF
# never reaches the upstream as a header line.
. "$(dirname "$0")/lib.sh"
H="$(cd "$(dirname "$0")" && pwd)/helpers"
cd "$T_DIR"
pki_pair
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/ops/admin --out ops
be=$(free_port) gwp=$(free_port) gwu=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
cat > gw.conf <<CONF
[proxy]
workers = 1
[listener "gw"]
mode = http
listen = 127.0.0.1:$gwp
cert = server.pem
key = server.key
ca = root/bundle.pem
[route "app"]
listener = gw
path = /app
upstream = 127.0.0.1:$be
client_cert = optional
[route "admin"]
listener = gw
path = /app/admin
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/ops/admin
[route "vh"]
listener = gw
host = H.Example
path = /v
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/ops/admin
[route "v"]
listener = gw
path = /v
upstream = 127.0.0.1:$be
client_cert = optional
[route "any"]
listener = gw
path = /any
upstream = 127.0.0.1:$be
allow_any = true
[listener "pass"]
mode = http
listen = 127.0.0.1:$gwu
cert = server.pem
key = server.key
ca = root/bundle.pem
underscores_in_headers = pass
[route "all"]
listener = pass
path = /
upstream = 127.0.0.1:$be
client_cert = optional
CONF
start_bg gw "$MTLS" proxy --config gw.conf
wait_for 10 port_open "$gwp" && wait_for 10 port_open "$gwu" && wait_for 10 port_open "$be" \
    || { not_ok "the gateway starts" "$(cat "$T_DIR/gw.log")"; exit 0; }

# send WHO PORT FILE...: the answers to FILE's bytes, one after another on
# one connection (WHO: a certificate name, or none)
send() {
	local who=$1 port=$2; shift 2
	if [ "$who" = none ]; then python3 "$H/raw_resp.py" "$port" - - root/bundle.pem "$@"
	else python3 "$H/raw_resp.py" "$port" "$who.pem" "$who.key" root/bundle.pem "$@"; fi
}
# req WHO 'RAW REQUEST' [PORT]: the whole answer to one request
req() { printf "$2" > req.bin; send "$1" "${3:-$gwp}" req.bin; }
status() { head -1 | cut -d' ' -f2; }
body() { python3 -c "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().split(b'\r\n\r\n', 1)[-1])"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- item 2: one normalization before routing, forwarded as routed ----
got=$(req none 'GET /app/%%61dmin/panel HTTP/1.1\r\nHost: a\r\n\r\n')
[ "$(echo "$got" | status)" = 403 ] && echo "$got" | grep -q '"route":"admin"' \
    && ok "anonymous /app/%61dmin/panel is the admin route: 403" || not_ok "encoded unreserved byte" "$got"
got=$(req ops 'GET /app/%%61dmin/panel HTTP/1.1\r\nHost: a\r\n\r\n')
[ "$(echo "$got" | body | jq_ 'd["path"]')" = /app/admin/panel ] \
    && ok "ops: 200, and the upstream gets exactly the path that was routed (/app/admin/panel)" || not_ok "forwarded path" "$got"
got=$(req none 'GET /app/x/%%2e%%2E/admin/p HTTP/1.1\r\nHost: a\r\n\r\n')
[ "$(echo "$got" | status)" = 403 ] && ok "encoded dot segments are removed before routing (/app/x/%2e%2E/admin: 403)" || not_ok "encoded dots" "$got"
got=$(req ops 'GET /app/%%7euser/./%%c3%%a9?q=%%41&r=/../x HTTP/1.1\r\nHost: a\r\n\r\n')
[ "$(echo "$got" | body | jq_ 'd["path"]')" = '/app/~user/%C3%A9?q=%41&r=/../x' ] \
    && ok "RFC 3986 6.2.2: unreserved decoded, escapes upper case, '.' removed; the query as received" || not_ok "normal form" "$got"
bad() {
	local name=$1 raw=$2 why=$3 got
	got=$(req none "$raw")
	if [ "$(echo "$got" | status)" = 400 ] && echo "$got" | grep -q "$why"; then ok "$name: 400 ($why)"
	else not_ok "$name" "$got"; fi
}
bad "a tab inside the request line" 'GET /app/admin\t HTTP/1.1\r\nHost: a\r\n\r\n' "request-target grammar"
bad "two spaces in the request line" 'GET  /app/x HTTP/1.1\r\nHost: a\r\n\r\n' "malformed request line"
bad "a non-ASCII byte in the target" 'GET /app/\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n' "request-target grammar"
bad "a fragment in the target" 'GET /app/x#y HTTP/1.1\r\nHost: a\r\n\r\n' "request-target grammar"
bad "an encoded slash" 'GET /app/x%%2fadmin HTTP/1.1\r\nHost: a\r\n\r\n' "encoded '/'"
bad "an encoded backslash" 'GET /app/x%%5Cadmin HTTP/1.1\r\nHost: a\r\n\r\n' "encoded '/'"
bad "an encoded NUL" 'GET /app/x%%00 HTTP/1.1\r\nHost: a\r\n\r\n' "NUL"
bad "a backslash" 'GET /app\\\\admin HTTP/1.1\r\nHost: a\r\n\r\n' "request-target grammar"
bad "an empty segment" 'GET /app//admin HTTP/1.1\r\nHost: a\r\n\r\n' "empty path segment"
bad "'..' above the root" 'GET /app/../../admin HTTP/1.1\r\nHost: a\r\n\r\n' "above the root"
bad "a bad escape in the query" 'GET /app/x?q=%%zz HTTP/1.1\r\nHost: a\r\n\r\n' "percent-encoding"
bad "absolute-form" 'GET http://a/app/x HTTP/1.1\r\nHost: a\r\n\r\n' "origin-form"
bad "asterisk-form" 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n' "origin-form"

# ---- Host: lower case, one trailing dot, nothing else ----
got=$(req none 'GET /v/x HTTP/1.1\r\nHost: H.EXAMPLE.\r\n\r\n')
[ "$(echo "$got" | status)" = 403 ] && echo "$got" | grep -q '"route":"vh"' \
    && ok "Host 'H.EXAMPLE.' is the host route h.example (403), not the public /v" || not_ok "host trailing dot" "$got"
got=$(req ops 'GET /v/x HTTP/1.1\r\nHost: H.Example.:443\r\n\r\n')
[ "$(echo "$got" | body | jq_ 'd["headers"]["host"]')" = h.example:443 ] \
    && ok "ops: 200, and the upstream gets the Host that was routed (h.example:443)" || not_ok "host forwarded" "$got"
bad "Host with an escape" 'GET /v/x HTTP/1.1\r\nHost: h%%2eexample\r\n\r\n' "percent-escape in Host"
bad "Host with two trailing dots" 'GET /v/x HTTP/1.1\r\nHost: h.example..\r\n\r\n' "empty label"
bad "Host with a space" 'GET /v/x HTTP/1.1\r\nHost: h .example\r\n\r\n' "invalid character in Host"
bad "Host with a bad port" 'GET /v/x HTTP/1.1\r\nHost: h.example:99999\r\n\r\n' "invalid port"
bad "two Host headers" 'GET /v/x HTTP/1.1\r\nHost: a\r\nHost: h.example\r\n\r\n' "repeated Host"
printf '[listener "g"]\nmode = http\nlisten = 127.0.0.1:%s\ncert = server.pem\nkey = server.key\nca = root/bundle.pem\n[route "r"]\npath = /a/%%61\nupstream = 127.0.0.1:2\nclient_cert = optional\n' "$(free_port)" > badroute.conf
expect_exit 2 "a route path not in normal form refuses to start" timeout 10 "$MTLS" proxy --config badroute.conf
grep -q "not in normal form" "$T_DIR/err" && ok "and says so" || not_ok "route path message" "$(cat "$T_DIR/err")"

# ---- item 3: identity headers cannot be spoofed ----
bad "whitespace before a field's colon" 'GET /app/x HTTP/1.1\r\nHost: a\r\nX-Client-Spiffe-Id : spiffe://example.org/ns/ops/admin\r\n\r\n' "whitespace between a header field name and the colon"
bad "the same after empty lines (ignored before a request line, not a way past the checks)" '\r\n\r\nGET /app/x HTTP/1.1\r\nHost: a\r\nX-Client-Spiffe-Id : v\r\n\r\n' "whitespace between a header field name and the colon"
bad "a tab in the request line after empty lines" '\r\n\r\nGET /app/admin\t HTTP/1.1\r\nHost: a\r\n\r\n' "request-target grammar"
spoof='GET /app/h HTTP/1.1\r\nHost: a\r\nX_Client_Spiffe_Id: spiffe://example.org/ns/ops/admin\r\nX_Forwarded_Client_Cert: URI=spiffe://example.org/ns/ops/admin\r\nx-client_spiffe-ID: s\r\nForwarded: for=10.0.0.1\r\nX-Real-IP: 10.0.0.1\r\nX-Forwarded-Host: admin.example\r\nX-Forwarded-Port: 1\r\nX_Forwarded_For: 10.0.0.1\r\nX-Foo_Bar: 1\r\nX-Keep: yes\r\n\r\n'
python3 - "$(req none "$spoof" | body)" <<'PY' && ok "anonymous: no spelling of an identity header reaches the upstream; names with '_' dropped" || not_ok "spoofed identity headers" "$(req none "$spoof")"
import json, sys
h = json.loads(sys.argv[1])["headers"]
fold = {k.lower().replace("_", "-"): v for k, v in h.items()}
for k in ("x-client-spiffe-id", "x-forwarded-client-cert", "forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-port"):
    assert k not in fold, (k, h)
assert fold["x-forwarded-for"] == "127.0.0.1", h
assert not any("_" in k for k in h), h
assert h.get("x-keep") == "yes", h
PY
got=$(req ops "$spoof" | body)
python3 - "$got" <<'PY' && ok "ops: the identity headers are ours only" || not_ok "ops identity headers" "$got"
import json, sys
h = json.loads(sys.argv[1])["headers"]
assert h["x-client-spiffe-id"] == "spiffe://example.org/ns/ops/admin", h
assert sum(1 for k in h if k.lower().replace("_", "-") == "x-client-spiffe-id") == 1, h
assert h["x-forwarded-client-cert"].startswith("By=spiffe://example.org/ns/prod/server;Hash="), h
PY
got=$(req none "$spoof" "$gwu" | body)
python3 - "$got" <<'PY' && ok "underscores_in_headers = pass: X-Foo_Bar passes, X_Client_Spiffe_Id still does not" || not_ok "underscores pass" "$got"
import json, sys
h = json.loads(sys.argv[1])["headers"]
assert h.get("x-foo_bar") == "1", h
fold = {k.lower().replace("_", "-") for k in h}
assert "x-client-spiffe-id" not in fold and "x-forwarded-client-cert" not in fold, h
PY

# ---- item 4: a 400 echoes nothing past what this request sent ----
secret=$(printf 'SECRET-COOKIE=%s;' $(seq 1 40) | tr -d '\n')
printf 'POST /app/form HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s' "${#secret}" "$secret" > a.bin
printf 'POST /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n' > b.bin
send none "$gwp" a.bin b.bin > same.out
send none "$gwp" a.bin > /dev/null
send none "$gwp" b.bin > other.out
grep -q '"request".*"message":"Transfer-Encoding .gzip' "$T_DIR/gw.log" || not_ok "the 400 is logged" "$(grep '"request"' "$T_DIR/gw.log" | tail -2)"
if grep -q "HTTP/1.1 400" same.out && grep -q "HTTP/1.1 400" other.out && grep -q "gzip" other.out \
    && ! grep -q SECRET same.out other.out && ! grep '"request"' "$T_DIR/gw.log" | grep -q SECRET; then
	ok "Transfer-Encoding gzip: 400 naming 'gzip'; no byte of an earlier body (same or other connection) in the answer or the log"
else
	not_ok "400 leak" "$(cat same.out other.out; grep SECRET "$T_DIR/gw.log" | head -2)"
fi

# ---- item 7: a certificate name with CR LF never becomes a header line ----
# forge NAME SAN...: NAME.pem/.key signed by int, its subjectAltName built
# by hand (DER) from TYPE:VALUE items (uri or dns), bytes as they are
forge() {
	local name=$1; shift
	python3 - "$@" <<'PY' > "$name.hex"
import sys
tags = {"uri": 0x86, "dns": 0x82}
gn = b""
for a in sys.argv[1:]:
    t, v = a.split(":", 1)
    v = v.encode().replace(b"\\r\\n", b"\r\n")
    gn += bytes([tags[t], len(v)]) + v
print(":".join("%02X" % b for b in b"\x30" + bytes([len(gn)]) + gn))
PY
	printf '[ext]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\nsubjectAltName = critical,DER:%s\n' \
	    "$(cat "$name.hex")" > "$name.cnf"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -subj "/CN=$name" \
	    -out "$name.csr" 2>/dev/null
	openssl x509 -req -in "$name.csr" -CA int/ca.pem -CAkey int/ca.key -CAcreateserial -days 1 -extfile "$name.cnf" \
	    -extensions ext -out "$name.leaf" 2>/dev/null && cat "$name.leaf" int/ca.pem > "$name.pem" \
	    && openssl x509 -in "$name.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "X-Injected" \
	    || { not_ok "setup: the forged certificate $name" ""; exit 0; }
}
forge forged 'uri:spiffe://example.org/ns/prod/client\r\nX-Injected: yes'
forge forged2 'uri:spiffe://example.org/ns/prod/client' 'uri:urn:x\r\nX-Injected: yes'
forge forged3 'uri:spiffe://example.org/ns/prod/client' 'dns:a.example\r\nX-Injected: yes'
for who in forged forged2 forged3; do
	for p in /any/f /app/f; do
		got=$(req $who "GET $p HTTP/1.1\r\nHost: a\r\n\r\n")
		code=$(echo "$got" | status)
		case "$p:${code:-none}" in
		/any/f:403|/any/f:none|/app/f:403|/app/f:none) ok "$who (CR LF in a SAN) on $p: refused (${code:-handshake}$(echo "$got" | grep -o '"error":"[a-z_]*"'))" ;;
		/app/f:200) echo "$got" | body | grep -qi 'x-injected' && not_ok "$who on $p: forwarded with the injected line" "$got" \
		    || ok "$who (CR LF in a SAN) on public $p: anonymous, no identity headers" ;;
		*) not_ok "$who on $p" "$got" ;;
		esac
	done
done
grep -qi "'x-injected'" "$T_DIR/backend.log" && not_ok "the upstream saw an injected header line" "$(grep -i injected "$T_DIR/backend.log" | head -2)" \
    || ok "the upstream never saw an X-Injected header line"
