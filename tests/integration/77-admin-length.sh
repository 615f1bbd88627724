#!/usr/bin/env bash
# The admin endpoint's answers carry exactly the bytes Content-Length
# says (issue 14): every status (/healthz, /readyz 200, /metrics, 404,
# 400) and /readyz's 503 while draining, whose body was sent with
# Content-Length 48 for its 47 bytes, a NUL going out after the text.
# Each answer is read raw to the close: body length == Content-Length,
# no NUL byte anywhere.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair

be=$(free_port) pp=$(free_port) ap=$(free_port)
start_bg backend python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
held = []
while True:
    c, _ = s.accept(); held.append(c)   # holds every connection open
' "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem \
    --key server.key --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client \
    --admin "127.0.0.1:$ap" --workers 1 --drain-timeout 20s
PX=$BG_PID
plog="$T_DIR/proxy.log"
wait_for 10 grep -q '"event":"start"' "$plog" || { not_ok "proxy starts" "$(cat "$plog")"; exit 0; }

# raw.py PORT REQUEST: sends REQUEST, reads to the close (5 s at most),
# prints "STATUS CONTENT-LENGTH BODY-BYTES NULS" and the body on stderr
cat > raw.py <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.settimeout(5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode())
got = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
except OSError:
    pass
head, _, body = got.partition(b"\r\n\r\n")
lines = head.split(b"\r\n")
status = lines[0].split()[1].decode() if lines and len(lines[0].split()) > 1 else "-"
cl = "-"
for l in lines[1:]:
    k, _, v = l.partition(b":")
    if k.strip().lower() == b"content-length":
        cl = v.strip().decode()
print(status, cl, len(body), got.count(b"\0"))
sys.stderr.write(repr(body[:200]))
PY
# exact NAME WANT_STATUS REQUEST: the answer's body is Content-Length
# bytes, with no NUL
exact() {
	local r st cl n nul
	r=$(python3 raw.py "$ap" "$3" 2> body.txt)
	read -r st cl n nul <<< "$r"
	if [ "$st" = "$2" ] && [ "$cl" = "$n" ] && [ "$nul" = 0 ]; then
		ok "$1: $st, Content-Length $cl = the body's bytes, no NUL"
	else
		not_ok "$1" "status $st (want $2), Content-Length $cl, body $n bytes, $nul NUL bytes: $(cat body.txt)"
	fi
}
exact "/healthz" 200 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n'
exact "/readyz" 200 'GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n'
exact "/metrics" 200 'GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n'
exact "an unknown path" 404 'GET /nope HTTP/1.1\r\nHost: a\r\n\r\n'
exact "a request that is not a GET" 400 'POST / HTTP/1.1\r\nHost: a\r\n\r\n'

# an authorized connection holds the drain open: /readyz says 503
cat > hold.py <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("client.pem", "client.key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"x")
open("hold.ready", "w").write("1")
s.settimeout(30)
try:
    s.recv(1)
except OSError:
    pass
PY
start_bg hold python3 hold.py "$pp"
wait_for 10 test -e hold.ready || { not_ok "an authorized connection is held" "$(cat "$T_DIR/hold.log")"; exit 0; }
wait_for 5 grep -q '"event":"handshake".*"result":"ok"' "$plog" || not_ok "the held connection's handshake" "$(tail -3 "$plog")"
kill -TERM "$PX"
wait_for 5 grep -q '"event":"drain"' "$plog" || { not_ok "SIGTERM starts the drain" "$(tail -3 "$plog")"; exit 0; }
exact "/readyz while draining" 503 'GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n'
exit 0
