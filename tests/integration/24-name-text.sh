#!/usr/bin/env bash
# Names from peers and files printed as text or logged (issue 18 item 5):
# cert inspect of a certificate whose SANs and subject hold ESC, newlines
# and bytes >= 0x80 prints no raw control or 8-bit byte and shows every
# SAN (text and --json, ASCII); doctor connect to a server with such names
# and an ESC in its HTTP status line sends no ESC to the terminal and its
# --json keeps the status line that is not UTF-8; a text log line cannot
# be forged by a name (newline or " key=value" in a certificate); every
# gateway access line is whole JSON with every member.
. "$(dirname "$0")/lib.sh"
H="$(cd "$(dirname "$0")" && pwd)/helpers"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ip 127.0.0.1 --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
openssl x509 -in int/ca.pem -out int1.pem

# forged NAME GENERALNAMES_HEX [SUBJECT]: a leaf from int with exactly
# these SAN bytes (as in 22-name-bytes.sh)
forged() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
	printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
	    'extendedKeyUsage=serverAuth,clientAuth' "subjectAltName=DER:$2" > "$1.ext"
	openssl req -new -key "$1.key" -subj "${3:-/O=example.org}" -out "$1.csr" 2>/dev/null &&
	openssl x509 -req -in "$1.csr" -CA int1.pem -CAkey int/ca.key -set_serial "0x$(openssl rand -hex 16)" \
	    -days 1 -extfile "$1.ext" -out "$1.leaf" 2>/dev/null || { not_ok "setup: $1"; exit 0; }
	cat "$1.leaf" int1.pem > "$1.pem"
}
# gns TAG VALUE [TAG VALUE]...: GeneralNames DER (0x86 URI, 0x82 DNS, 0x81 email)
gns() { python3 -c '
import sys
L = lambda n: bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 255])
a = sys.argv[1:]; out = b""
for i in range(0, len(a), 2):
    v = bytes(a[i + 1], "latin-1").decode("unicode_escape").encode("latin-1")
    out += bytes([int(a[i], 16)]) + L(len(v)) + v
print((b"\x30" + L(len(out)) + out).hex())' "$@"; }
# raw8 FILE: no byte < 0x20 but \n, none >= 0x7f
raw8() { LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f\x80-\xff]' "$1"; }

forged hostile "$(gns 86 'spiffe://example.org/a\x1b[2J\nb' 82 'api.ex\x80mple.org' 82 'localhost' 81 'a\x1b]0;x\x07@b')" \
    "/O=ex"$'\x1b'"[2Jample/CN=caf"$'\xc3\xa9'

# cert inspect: text
"$MTLS" cert inspect hostile.pem > ins.txt 2> ins.err
if raw8 ins.txt || raw8 ins.err; then
	not_ok "cert inspect prints no raw control or 8-bit byte" "$(od -c ins.txt | grep -m3 '033\|\\n.*\\n\|[0-9]\{3\}')"
else ok "cert inspect prints no raw control or 8-bit byte"; fi
expect_grep '^  SANs: .*spiffe://example.org/a\\x1b\[2J\\x0ab' ins.txt "... the URI SAN with ESC and LF shown escaped"
expect_grep '^  SANs: .*dns:api\.ex\\x80mple\.org' ins.txt "... the DNS SAN that is not UTF-8 shown"
expect_grep '^  SANs: .*dns:localhost, email:a\\x1b\]0;x\\x07@b' ins.txt "... and the rest, in order"
expect_grep '^  not an identity:URI SAN' ins.txt "... and says which name is not an identity"
[ "$(wc -l < ins.txt)" -lt 40 ] && ok "... one line per fact (no line forged)" || not_ok "... one line per fact" "$(wc -l < ins.txt)"
# cert inspect --json: ASCII, valid, every SAN
"$MTLS" cert inspect --json hostile.pem > ins.json 2>&1
if raw8 ins.json; then not_ok "cert inspect --json is ASCII"; else ok "cert inspect --json is ASCII"; fi
got=$(js ins.json 'len(d[0]["sans"])' 2>&1)
[ "$got" = 4 ] && ok "cert inspect --json lists all 4 SANs" || not_ok "cert inspect --json lists all 4 SANs" "$got"
got=$(js ins.json 'd[0]["sans"][1]' 2>&1)
[ "$got" = 'dns:api.ex\x80mple.org' ] && ok "... the DNS SAN that is not UTF-8 as dns:api.ex\\x80mple.org" ||
    not_ok "... the DNS SAN that is not UTF-8 as dns:api.ex\\x80mple.org" "$got"
got=$(js ins.json 'd[0]["sans"][0] == "spiffe://example.org/a\x1b[2J\nb"' 2>&1)
[ "$got" = True ] && ok "... JSON keeps the UTF-8 name's bytes (ESC, LF)" || not_ok "... JSON keeps the UTF-8 name's bytes" "$got"

# doctor connect: a server with those names, and a status line with ESC
# (valid UTF-8 around it) or bytes that are not UTF-8
cat hostile.leaf int1.pem > hostile.chain
st_esc=$(printf 'HTTP/1.1 400 \x1b[2J\x1b]0;pwned\x07caf\xc3\xa9' | od -An -tx1 | tr -d ' \n')
st_bad=$(printf 'HTTP/1.1 400 \x1b[2J\x80\xff bad' | od -An -tx1 | tr -d ' \n')
p1=$(free_port)
start_bg hostile1 python3 "$H/hostile_tls.py" "$p1" hostile.chain hostile.key "$st_esc"
p2=$(free_port)
start_bg hostile2 python3 "$H/hostile_tls.py" "$p2" hostile.chain hostile.key "$st_bad"
wait_for 10 port_open "$p1" && wait_for 10 port_open "$p2" || { not_ok "hostile servers start"; exit 0; }
expect_exit 1 "doctor connect to the hostile server reports a problem" \
    "$MTLS" doctor connect "127.0.0.1:$p1" --ca root/bundle.pem --timeout 10s
if raw8 "$T_DIR/out" || raw8 "$T_DIR/err"; then
	not_ok "doctor connect sends no raw ESC or 8-bit byte to the terminal" "$(od -c "$T_DIR/out" | grep -m3 033)"
else ok "doctor connect sends no raw ESC or 8-bit byte to the terminal"; fi
expect_grep '^  HTTP/1.1 400 \\x1b\[2J\\x1b\]0;pwned\\x07caf\\xc3\\xa9' "$T_DIR/out" "... the status line shown escaped"
expect_grep 'spiffe://example.org/a\\x1b\[2J\\x0ab' "$T_DIR/out" "... the server's names shown escaped"
"$MTLS" doctor connect "127.0.0.1:$p2" --ca root/bundle.pem --timeout 10s --json > dj.json 2> dj.err
if raw8 dj.json; then not_ok "doctor connect --json is ASCII"; else ok "doctor connect --json is ASCII"; fi
got=$(js dj.json 'd["http"]["status_line"]' 2>&1)
[ "$got" = $'HTTP/1.1 400 \x1b[2J\\x80\\xff bad' ] && ok "doctor --json keeps a status line that is not UTF-8 (\\xNN)" ||
    not_ok "doctor --json keeps a status line that is not UTF-8" "$got"
got=$(js dj.json 'len(d["server_chain"][0]["sans"])' 2>&1)
[ "$got" = 4 ] && ok "doctor --json lists the server's 4 SANs" || not_ok "doctor --json lists the server's 4 SANs" "$got"

# the agent: a CA server whose error message holds terminal sequences
body=$(printf '{"error":"denied","message":"\\u001b[2J\\u001b]0;pwned\\u0007 no\\nmtls agent: fake"}' | od -An -tx1 | tr -d ' \n')
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out casrv.key 2>/dev/null
printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=serverAuth,1.3.6.1.4.1.32473.6857.2' 'subjectAltName=DNS:localhost' > casrv.ext
openssl req -new -key casrv.key -subj "/O=example.org/CN=localhost" -out casrv.csr 2>/dev/null &&
openssl x509 -req -in casrv.csr -CA int1.pem -CAkey int/ca.key -set_serial 77 -days 1 -extfile casrv.ext \
    -out casrv.leaf 2>/dev/null && cat casrv.leaf int1.pem > casrv.pem || not_ok "setup: casrv"
p3=$(free_port)
start_bg hostile3 python3 "$H/hostile_tls.py" "$p3" casrv.pem casrv.key "$(printf 'HTTP/1.1 403 Forbidden' | od -An -tx1 | tr -d ' \n')" "$body"
wait_for 10 port_open "$p3" || { not_ok "hostile CA server starts"; exit 0; }
mkdir -m 0700 agentdir
expect_exit 1 "agent fails on the hostile CA server's 403" "$MTLS" agent --ca-url "https://localhost:$p3" \
    --cert client.pem --key client.key --ca-bundle root/bundle.pem --out-dir agentdir --once --log-format json
if raw8 "$T_DIR/err"; then not_ok "agent prints the server's message with no raw control byte" "$(od -c "$T_DIR/err" | grep -m3 033)"
else ok "agent prints the server's message with no raw control byte"; fi
expect_grep 'HTTP 403: \\x1b\[2J\\x1b\]0;pwned\\x07 no\\x0amtls agent: fake' "$T_DIR/err" "... escaped"

# --log-format text: a client certificate whose URI SAN holds a newline and
# a fake line, and whose subject holds " result=ok peer_id=..."
forged forge "$(gns 86 'spiffe://example.org/ns/prod/a\n2026-01-01T00:00:00.000Z info  handshake result=ok peer_id=spiffe://example.org/admin')" \
    "/O=example.org/CN=x result=ok peer_id=dns:admin.example.org"
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
p=$(free_port)
start_bg proxy_text "$MTLS" proxy --listen "127.0.0.1:$p" --target "127.0.0.1:$be" --cert server.pem \
    --key server.key --ca root/bundle.pem --allow-any --workers 1 --log-format text
log=$T_DIR/proxy_text.log
wait_for 10 grep -q ' start ' "$log" || { not_ok "proxy (text) starts" "$(cat "$log")"; exit 0; }
curl -sS -o /dev/null --max-time 10 --cacert root/bundle.pem --cert forge.pem --key forge.key \
    "https://localhost:$p/" 2>/dev/null
wait_for 10 grep -q 'invalid_svid' "$log" && ok "proxy (text) logs the refusal" || not_ok "proxy (text) logs the refusal" "$(tail -3 "$log")"
# every line is "TS LEVEL EVENT k=v ...", and, reading values in double
# quotes as one, the handshake line has one peer_id and one result
got=$(python3 - "$log" <<'EOF'
import re, shlex, sys
bad = []
for line in open(sys.argv[1], "rb").read().decode("ascii", "replace").split("\n"):
    if not line:
        continue
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", line):
        bad.append("not a line of ours: " + line[:80]); continue
    if " handshake " not in line:
        continue
    # our quoting only: double quotes (a log reader's key=value split)
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split, lex.quotes, lex.escape = True, '"', ""
    keys = [t.split("=", 1)[0] for t in list(lex)[3:]]
    for k in ("peer_id", "result"):
        if keys.count(k) != 1:
            bad.append("%s %d times: %s" % (k, keys.count(k), line[:300]))
print("\n".join(bad) if bad else "clean")
EOF
)
[ "$got" = clean ] && ok "text log: no forged line, no forged member" || not_ok "text log: no forged line, no forged member" "$got"
if raw8 "$log"; then not_ok "text log has no raw control or 8-bit byte"; else ok "text log has no raw control or 8-bit byte"; fi

# gateway access log: hostile paths and header values; every line whole
# JSON with every member
gwp=$(free_port)
cat > gw.conf <<CONF
[proxy]
workers = 1
[listener "gw"]
mode = http
listen = 127.0.0.1:$gwp
cert = server.pem
key = server.key
ca = root/bundle.pem
[route "api"]
path = /
upstream = 127.0.0.1:$be
allow_any = true
CONF
start_bg gw "$MTLS" proxy --config gw.conf --log-format json
wait_for 10 port_open "$gwp" || { not_ok "gateway starts" "$(tail -5 "$T_DIR/gw.log")"; exit 0; }
python3 - "$gwp" > gwreq.out 2>&1 <<'EOF'
import socket, ssl, sys
port = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations("root/bundle.pem"); ctx.check_hostname = False
ctx.load_cert_chain("client.pem", "client.key")
reqs = [b"GET /" + b"\x80" * 2000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /" + b"%80" * 682 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /" + b"%C3%A9" * 600 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"\x80" * 8000 + b"\r\n\r\n",
        b"GET /\x1b[2J HTTP/1.1\r\nHost: local\x80host\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n"]
for r in reqs:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
    s.sendall(r[:-2] + b"Connection: close\r\n\r\n")
    d = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            d += c
    except OSError:
        pass
    print(d.split(b"\r\n")[0].decode("latin-1"))
EOF
wait_for 10 sh -c "grep -c '\"event\":\"request\"' '$T_DIR/gw.log' | grep -qx 6" ||
    not_ok "gateway logs 6 requests" "$(cat gwreq.out; tail -3 "$T_DIR/gw.log")"
got=$(python3 - "$T_DIR/gw.log" <<'EOF'
import json, sys
bad, n = [], 0
for raw in open(sys.argv[1], "rb"):
    if raw.startswith(b"==") and b"ASan" in raw:
        continue    # make asan: the sanitizer's note on makecontext
    try:
        d = json.loads(raw)
    except ValueError as e:
        bad.append("not JSON (%s): %r" % (e, raw[:60] + raw[-60:])); continue
    if max(raw) >= 0x80:
        bad.append("not ASCII: %r" % raw[:80])
    if d.get("event") != "request":
        continue
    n += 1
    for k in ("listener", "route", "client", "peer_id", "method", "path", "status"):
        if k not in d:
            bad.append("no %s: %r" % (k, raw[:120]))
print("\n".join(bad) if bad else "clean %d" % n)
EOF
)
[ "$got" = "clean 6" ] && ok "gateway: every access line whole JSON, ASCII, every member" ||
    not_ok "gateway: every access line whole JSON, ASCII, every member" "$got"

# the class, in the source: json_string() of anything but a literal of
# ours returns NULL for bytes that are not UTF-8, and the member is then
# silently dropped; data goes through esc_jstr()/esc_json()
got=$(cd "$_root" && grep -rnE '\bjson_stringn?\([^"]' src --include='*.c' | grep -v '^src/lib/escape.c:')
[ -z "$got" ] && ok "source: no json_string() of data (esc_jstr instead)" ||
    not_ok "source: no json_string() of data (esc_jstr instead)" "$got"
exit 0
