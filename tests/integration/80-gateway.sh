#!/usr/bin/env bash
# The HTTP gateway (mode = http): routes with their own policies (public,
# any certificate, one identity, a trust-domain prefix, a virtual host),
# identity headers set and never taken from the client, upstream mTLS to
# nginx with pooled connections, bodies both ways byte-identical, and the
# smuggling and limit cases refused with 400/413/431 while the next
# request still works.
. "$(dirname "$0")/lib.sh"
H="$(cd "$(dirname "$0")" && pwd)/helpers"
cd "$T_DIR"
pki_pair
pki_bad_clients
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/ops/admin --out ops
be=$(free_port) gwp=$(free_port) ng=$(free_port) adm=$(free_port) dead=$(free_port) evil=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
# an upstream whose status line hides a bare CR (response
# splitting towards a client that takes CR for a line end)
start_bg evil python3 -c "
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)
for _ in range(50):
    c, _a = s.accept(); c.settimeout(5)
    try:
        req = c.recv(65536)
        if b'/evil/ctl' in req:
            c.sendall(b'HTTP/1.1 200 O\\x0bK\\r\\nContent-Length: 2\\r\\n\\r\\nok')
        else:
            c.sendall(b'HTTP/1.1 200 OK\\rSet-Cookie: evil=1\\r\\nContent-Length: 2\\r\\n\\r\\nok')
    except OSError:
        pass
    c.close()
" "$evil"
start_nginx_mtls "$ng" 'return 200 "nginx saw $ssl_client_s_dn $ssl_client_verify\n";' 'keepalive_requests 10000;'
cat > gw.conf <<CONF
[proxy]
admin = 127.0.0.1:$adm
workers = 1
[listener "gw"]
mode = http
listen = 127.0.0.1:$gwp
cert = server.pem
key = server.key
ca = root/bundle.pem
crl = crl.pem
max_body = 12m
[route "public"]
path = /public
upstream = 127.0.0.1:$be
client_cert = optional
[route "api"]
path = /api
upstream = 127.0.0.1:$be
allow_any = true
[route "admin"]
path = /admin
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/ops/admin
[route "team"]
path = /team/
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/prod/*
[route "vhost"]
host = other.example
path = /api
upstream = 127.0.0.1:$be
allow = spiffe://example.org/ns/ops/admin
[route "secure"]
path = /secure
upstream = 127.0.0.1:$ng
allow_any = true
upstream_tls = true
upstream_cert = client.pem
upstream_key = client.key
upstream_expect = spiffe://example.org/ns/prod/server
upstream_servername = localhost
[route "evil"]
path = /evil
upstream = 127.0.0.1:$evil
allow_any = true
[route "down"]
path = /down
upstream = 127.0.0.1:$dead
allow_any = true
CONF
start_bg gw "$MTLS" proxy --config gw.conf
GW_PID=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/gw.log" && wait_for 10 port_open "$be" \
    || { not_ok "the gateway starts" "$(cat "$T_DIR/gw.log")"; exit 0; }
U="https://localhost:$gwp"
c() { local who=$1; shift; if [ "$who" = none ]; then curl -sS --max-time 10 --cacert root/bundle.pem "$@";
	else curl -sS --max-time 10 --cacert root/bundle.pem --cert "$who.pem" --key "$who.key" "$@"; fi; }
code() { c "$@" -o /dev/null -w '%{http_code}' 2>/dev/null; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- per-route policies ----
[ "$(code client "$U/api/x")" = 200 ] && ok "api (any certificate): client 200" || not_ok "api client"
[ "$(code client "$U/admin/x")" = 403 ] && ok "admin (one identity): client 403" || not_ok "admin client"
[ "$(code ops "$U/admin/x")" = 200 ] && ok "admin: ops/admin 200" || not_ok "admin ops"
[ "$(code client "$U/team/a")" = 200 ] && ok "team (prefix spiffe://example.org/ns/prod/*): client 200" || not_ok "team client"
[ "$(code ops "$U/team/a")" = 403 ] && ok "team: ops/admin 403" || not_ok "team ops"
[ "$(code none "$U/public/x")" = 200 ] && ok "public (client_cert optional): no certificate 200" || not_ok "public none"
[ "$(code none "$U/api/x")" = 403 ] && ok "api: no certificate 403" || not_ok "api none"
[ "$(code client "$U/nothing")" = 404 ] && ok "no route: 404" || not_ok "404"
[ "$(code client -H 'Host: other.example' "$U/api/x")" = 403 ] && [ "$(code ops -H 'Host: other.example' "$U/api/x")" = 200 ] \
    && ok "host routing: other.example/api is the vhost route (ops only)" || not_ok "vhost"
[ "$(code client "$U/teamx")" = 404 ] && ok "prefixes match on segment boundaries (/teamx is not /team/)" || not_ok "segment"
for bad in expired foreign revoked; do
	c "$bad" "$U/api/x" -o body.json 2>/dev/null
	want=$( case $bad in expired) echo cert_expired;; foreign) echo unknown_ca;; revoked) echo revoked;; esac )
	grep -q "client_certificate_required" body.json && grep -q "$want" body.json \
	    && ok "$bad certificate: 403 on api naming $want" || not_ok "$bad on api" "$(cat body.json)"
	[ "$(code "$bad" "$U/public/x")" = 200 ] || not_ok "$bad on public"
done
c client "$U/admin/x" > deny.json 2>/dev/null
python3 - deny.json <<'PY' && ok "403 body is JSON naming the route and the rule" || not_ok "403 body" "$(cat deny.json)"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["error"] == "forbidden" and d["route"] == "admin", d
assert "spiffe://example.org/ns/ops/admin" in d["message"] and "ns/prod/client" in d["message"], d
PY
n=$(c client "$U/admin/1" "$U/api/2" -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' 2>/dev/null)
[ "$n" = "403:1 200:0 " ] && ok "after a 403 the connection stays usable (keep-alive)" || not_ok "keep-alive after 403" "$n"

# ---- identity headers ----
c client -H 'X-Forwarded-Client-Cert: By=x;URI=spiffe://example.org/ns/ops/admin' \
    -H 'X-Client-Spiffe-Id: spiffe://example.org/ns/ops/admin' "$U/api/h" > h.json
hash=$(openssl x509 -in client.pem -outform DER | sha256sum | cut -d' ' -f1)
xf=$(jq_ 'd["headers"].get("x-forwarded-client-cert")' < h.json)
[ "$(jq_ 'd["headers"].get("x-client-spiffe-id")' < h.json)" = spiffe://example.org/ns/prod/client ] \
    && ok "X-Client-Spiffe-Id is the peer's, the client's own is replaced" || not_ok "spiffe header" "$(cat h.json)"
case "$xf" in
By=spiffe://example.org/ns/prod/server\;Hash=$hash\;Subject=\"*\"\;URI=spiffe://example.org/ns/prod/client) ok "XFCC in Envoy's format: By, Hash (sha256 of the leaf), Subject, URI" ;;
*) not_ok "XFCC" "$xf" ;;
esac
echo "$xf" | grep -q "ns/ops/admin" && not_ok "spoofed XFCC kept" || ok "a spoofed XFCC from the client is dropped"
c none -H 'X-Forwarded-Client-Cert: URI=spiffe://example.org/ns/ops/admin' -H 'X-Client-Spiffe-Id: spoof' "$U/public/h" > h2.json
[ "$(jq_ '"x-forwarded-client-cert" in d["headers"] or "x-client-spiffe-id" in d["headers"]' < h2.json)" = False ] \
    && ok "anonymous on a public route: identity headers stripped, none set" || not_ok "anon headers" "$(cat h2.json)"
[ "$(jq_ 'd["headers"]["x-forwarded-for"]' < h.json)" = 127.0.0.1 ] && ok "X-Forwarded-For is the client address" \
    || not_ok "xff" "$(cat h.json)"

# ---- bodies, both ways ----
head -c 10485760 /dev/urandom > big.bin
want=$(sha256sum big.bin | cut -d' ' -f1)
got=$(c client --data-binary @big.bin "$U/api/up" | jq_ 'd["body_sha256"]')
[ "$got" = "$want" ] && ok "10 MiB request body arrives byte-identical (Content-Length)" || not_ok "upload" "$got"
got=$(c client -H 'Transfer-Encoding: chunked' --data-binary @big.bin "$U/api/up" | jq_ 'd["body_sha256"]')
[ "$got" = "$want" ] && ok "10 MiB chunked request body arrives byte-identical" || not_ok "chunked upload" "$got"
got=$(c client "$U/api/../admin/x" --path-as-is -o /dev/null -w '%{http_code}' 2>/dev/null)
[ "$got" = 403 ] && ok "a dot segment is removed before routing: /api/../admin/x is the admin route (403)" || not_ok "dot segment" "$got"
got=$(c client "$U/api/big/10485760" 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$(head -c 10485760 /dev/zero | tr '\0' x | sha256sum | cut -d' ' -f1)" ] && ok "10 MiB response arrives byte-identical" || not_ok "download"
for p in chunked eof; do
	c client "$U/api/$p" > r.json 2>/dev/null
	[ "$(jq_ 'd["path"]' < r.json 2>/dev/null)" = "/api/$p" ] && ok "a response framed by $p is relayed whole" \
	    || not_ok "response $p" "$(cat r.json)"
done
hd=$(c client -I "$U/api/x" -o /dev/null -w '%{http_code}:%{size_download}' 2>/dev/null)
[ "$hd" = "200:0" ] && ok "HEAD: 200, no body" || not_ok "HEAD" "$hd"

# ---- upstream mTLS to nginx, pooled ----
for i in $(seq 1 20); do c client "$U/secure/$i" >> ng.txt 2>/dev/null; done
[ "$(grep -c 'nginx saw.* SUCCESS' ng.txt)" = 20 ] && ok "20 requests through upstream mTLS to nginx (ssl_verify_client on)" \
    || not_ok "nginx upstream" "$(head -3 ng.txt)"
m=$(curl -s "http://127.0.0.1:$adm/metrics")
opened=$(echo "$m" | sed -n 's/^mtls_http_upstream_connections_total{listener="gw",route="secure",event="opened"} //p')
reused=$(echo "$m" | sed -n 's/^mtls_http_upstream_connections_total{listener="gw",route="secure",event="reused"} //p')
[ -n "$opened" ] && [ "$opened" -lt 20 ] && [ "$reused" -gt 0 ] \
    && ok "upstream connections reused: $opened TLS handshakes to nginx for 20 requests on 20 client connections" \
    || not_ok "pool reuse" "opened=$opened reused=$reused"
[ "$(code client "$U/down/x")" = 502 ] && ok "upstream down: 502" || not_ok "502"
c client -D evil.txt "$U/evil/x" -o evil.body 2>/dev/null
python3 - evil.txt <<'PY' && ok "an upstream status line with a bare CR: what reaches the client has no bare CR and no Set-Cookie" \
    || not_ok "bare CR upstream" "$(od -c evil.txt | head -5)"
import sys
h = open(sys.argv[1], "rb").read()
assert h.replace(b"\r\n", b"").find(b"\r") < 0, h
assert not any(l.lower().startswith(b"set-cookie") for l in h.split(b"\r\n")), h
PY
c client "$U/evil/ctl" -o ctl.body -w '%{http_code}' > ctl.code 2>/dev/null
[ "$(cat ctl.code)" = 502 ] && grep -q "control character" ctl.body && ok "a control byte in the upstream's reason phrase: 502, not passed on" \
    || not_ok "reason ctl" "$(cat ctl.code ctl.body)"

# ---- smuggling and limits: each refused, and the next request works ----
raw() { python3 "$H/raw_tls.py" "$gwp" client.pem client.key root/bundle.pem; }
rawcase() {
	local want=$1 name=$2 got
	got=$(printf "$3" | raw | head -1)
	case "$got" in "HTTP/1.1 $want "*) ok "$name: $want" ;; *) not_ok "$name" "got '$got'" ;; esac
	[ "$(code client "$U/api/after")" = 200 ] || not_ok "$name: the next request" "not 200"
}
rawcase 400 "Content-Length with Transfer-Encoding" 'POST /api/s HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
rawcase 400 "two Content-Length headers" 'POST /api/s HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'
rawcase 400 "obs-fold" 'GET /api/s HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'
rawcase 400 "bare LF" 'GET /api/s HTTP/1.1\nHost: a\n\n'
rawcase 400 "bare CR" 'GET /api/s HTTP/1.1\r\nHost: a\rX: y\r\n\r\n'
rawcase 400 "Transfer-Encoding other than chunked" 'POST /api/s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
rawcase 400 "no Host" 'GET /api/s HTTP/1.1\r\n\r\n'
rawcase 400 "encoded slash in the path" 'GET /api/..%%2fadmin HTTP/1.1\r\nHost: a\r\n\r\n'
rawcase 431 "a 20 KiB header" "GET /api/s HTTP/1.1\r\nHost: a\r\nX-Big: $(head -c 20000 /dev/zero | tr '\0' a)\r\n\r\n"
rawcase 431 "101 header fields" "GET /api/s HTTP/1.1\r\nHost: a\r\n$(for i in $(seq 1 101); do printf 'X-%d: y\\r\\n' "$i"; done)\r\n"
rawcase 413 "Content-Length over max_body" 'POST /api/s HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n'
big_chunk=$(printf '%x' 13000000)
rawcase 413 "chunked body over max_body" "POST /api/s HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n$big_chunk\r\n$(head -c 13000000 /dev/zero | tr '\0' a)\r\n0\r\n\r\n"
# an empty header value must not glue the next field to it (both ways)
printf 'GET /api/e HTTP/1.1\r\nX-Empty:\r\nHost: a\r\nConnection: close\r\n\r\n' | python3 -c "
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.load_verify_locations('root/bundle.pem'); ctx.check_hostname = False
ctx.load_cert_chain('client.pem', 'client.key')
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', $gwp), timeout=5), server_hostname='localhost')
s.sendall(sys.stdin.buffer.read()); b = b''
while True:
    try: c = s.recv(65536)
    except Exception: break
    if not c: break
    b += c
sys.stdout.write(b.split(b'\r\n\r\n', 1)[1].decode())" > empty.json 2>/dev/null
[ "$(jq_ 'd["headers"].get("host"), "x-empty" in d["headers"]' < empty.json 2>/dev/null)" = "a True" ] \
    && ok "an empty request header value keeps the next field apart" || not_ok "empty request header" "$(head -c 300 empty.json)"
c client -D eh.txt -o /dev/null "$U/api/emptyhdr" 2>/dev/null
grep -qi '^x-after: yes' eh.txt && grep -qi '^x-empty:' eh.txt && ok "an empty response header value keeps the next field apart" \
    || not_ok "empty response header" "$(cat eh.txt)"
two=$(printf 'GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | raw | tr '\n' ' ')
[ "$two" = "HTTP/1.1 200 OK HTTP/1.1 403 Forbidden " ] && ok "pipelined requests answered in order" || not_ok "pipelining" "$two $(grep '"request"' "$T_DIR/gw.log" | tail -3)"

# ---- access log and metrics ----
grep -q '"event":"request".*"route":"admin".*"peer_id":"spiffe://example.org/ns/prod/client".*"method":"GET".*"path":"/admin/x".*"status":403' "$T_DIR/gw.log" \
    && ok "access log: route, peer, method, path, status" || not_ok "access log" "$(grep '"request"' "$T_DIR/gw.log" | head -2)"
grep -q '"event":"request".*"route":"secure".*"upstream_ms":[0-9]*.*"total_ms":[0-9]*' "$T_DIR/gw.log" \
    && ok "access log: upstream and total time" || not_ok "access log times"
echo "$m" | grep -q '^mtls_http_requests_total{listener="gw",route="admin",code="403"} [1-9]' \
    && echo "$m" | grep -q '^mtls_http_requests_total{listener="gw",route="api",code="200"} [1-9]' \
    && ok "/metrics counts requests by route and status" || not_ok "metrics" "$(echo "$m" | grep http_requests | head)"

# ---- fail closed, and the flags form ----
printf '[listener "g"]\nmode = http\nlisten = 127.0.0.1:1\ncert = server.pem\nkey = server.key\nca = root/bundle.pem\n[route "open"]\nupstream = 127.0.0.1:2\n' > open.conf
expect_exit 2 "a route without rules refuses to start" "$MTLS" proxy --config open.conf
grep -q "allow rules, allow_any = true" "$T_DIR/err" && ok "and says how to fix it" || not_ok "fix text" "$(cat "$T_DIR/err")"
fp=$(free_port)
start_bg flags "$MTLS" proxy --http --listen "127.0.0.1:$fp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --workers 1
wait_for 10 port_open "$fp" || not_ok "--http starts" "$(cat "$T_DIR/flags.log")"
f1=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$fp/x" | jq_ 'd["headers"]["x-client-spiffe-id"]')
f2=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert ops.pem --key ops.key "https://localhost:$fp/x" -o /dev/null -w '%{http_code}')
[ "$f1" = spiffe://example.org/ns/prod/client ] && [ "$f2" = 403 ] && ok "--http: one route to --target with --allow" || not_ok "--http" "$f1 $f2"
alpn=$(openssl s_client -connect "127.0.0.1:$fp" -alpn h2,http/1.1 -cert client.pem -key client.key -CAfile root/bundle.pem </dev/null 2>/dev/null | grep -i "ALPN protocol")
echo "$alpn" | grep -q "http/1.1" && ok "ALPN: http/1.1 is negotiated (h2 is not)" || not_ok "alpn" "$alpn"

# ---- hot reload: a new server certificate is used for new connections ----
old_serial=$(serial_of server.pem)
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out server2
cp server2.key server.key.new && cp server2.pem server.pem.new && mv server.key.new server.key && mv server.pem.new server.pem
wait_for 10 grep -q '"event":"reload".*"result":"ok"' "$T_DIR/gw.log" || not_ok "reload logged" "$(grep reload "$T_DIR/gw.log")"
new_serial=$(serial_of server2.pem)
got=$(openssl s_client -connect "127.0.0.1:$gwp" -cert client.pem -key client.key -CAfile root/bundle.pem </dev/null 2>/dev/null \
    | openssl x509 -noout -serial 2>/dev/null | cut -d= -f2 | sed 's/^0*//')
[ "$got" = "$new_serial" ] && [ "$got" != "$old_serial" ] && [ "$(code client "$U/api/x")" = 200 ] \
    && ok "hot reload: new connections get the new certificate, requests keep working" || not_ok "gateway reload" "got $got want $new_serial"

# ---- timeouts: the head has one deadline, a response one between reads ----
tp=$(free_port)
printf '[listener "t"]\nmode = http\nlisten = 127.0.0.1:%s\ncert = server.pem\nkey = server.key\nca = root/bundle.pem\nrequest_timeout = 1s\n[route "all"]\nupstream = 127.0.0.1:%s\nallow_any = true\n' "$tp" "$be" > t.conf
start_bg tgw "$MTLS" proxy --config t.conf --workers 1
wait_for 10 port_open "$tp" || not_ok "timeout gateway starts" "$(cat "$T_DIR/tgw.log")"
TU="https://localhost:$tp"
[ "$(code client "$TU/slow/1500")" = 504 ] && ok "request_timeout 1s: an upstream silent for 1.5 s is a 504" || not_ok "504"
drip=$(c client "$TU/drip/6" 2>/dev/null | grep -c chunk)
[ "$drip" = 6 ] && ok "a response slower than the timeout in all, but never silent that long, arrives whole" || not_ok "drip" "$drip chunks"
slowhead=$(printf 'GET /x HTTP/1.1\r\nHost: a\r\n' | python3 "$H/raw_tls.py" "$tp" client.pem client.key root/bundle.pem | head -1)
case "$slowhead" in "HTTP/1.1 408 "*) ok "a head still incomplete after the timeout is a 408" ;; *) not_ok "408" "$slowhead" ;; esac

# ---- drain ----
n0=$(grep -c "slow request started" "$T_DIR/backend.log")
c client "$U/api/slow/1500" > slow.json 2>/dev/null &
slow=$!
wait_for 5 sh -c "[ \$(grep -c 'slow request started' '$T_DIR/backend.log') -gt $n0 ]" || not_ok "the slow request reached the backend"
kill -TERM "$GW_PID"
wait "$slow"
[ "$(jq_ 'd["path"]' < slow.json 2>/dev/null)" = /api/slow/1500 ] && ok "SIGTERM: the request in flight completes" || not_ok "drain" "$(cat slow.json)"
wait_for 10 sh -c "! kill -0 $GW_PID 2>/dev/null" && ok "and the gateway exits" || not_ok "exit after drain"
