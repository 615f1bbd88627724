#!/usr/bin/env bash
# Hot reload under load: 20 replacements of the inbound proxy's certificate,
# key and bundle (written like the agent: temp file, then rename) while curl
# makes new connections and one keep-alive connection keeps asking; two bad
# replacements (garbage, a certificate for another key) are refused while
# serving goes on. Zero failed requests; each new serial in the reload log.
# Then SIGTERM: a slow transfer in flight completes, new connections are
# refused, exit 0; a connection that outlasts --drain-timeout is cut at it.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca init other --trust-domain example.org --name "Other Root"
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
mkdir live
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out live/server
cp root/bundle.pem live/bundle.pem
cat root/bundle.pem other/bundle.pem > two-roots.pem

# the backend: files over HTTP/1.1 keep-alive; /slow trickles slow.bin over ~3 s
mkdir www && echo "hello" > www/hello.txt && head -c 2097152 /dev/urandom > www/slow.bin
cat > backend.py <<'PY'
import http.server, os, sys, time
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path != "/slow":
            return super().do_GET()
        data = open("slow.bin", "rb").read()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        step = len(data) // 30
        for i in range(0, len(data), step):
            self.wfile.write(data[i:i + step]); time.sleep(0.1)
    def log_message(self, *a): pass
os.chdir(sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
be=$(free_port)
start_bg backend python3 backend.py "$be" www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
port=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert live/server.pem \
    --key live/server.key --ca live/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --workers 2 \
    --drain-timeout 20s
PX=$BG_PID
log="$T_DIR/inbound.log"
wait_for 10 grep -q '"event":"start"' "$log" && ok "proxy starts" || { not_ok "proxy starts" "$(cat "$log")"; exit 0; }
first_serial=$(serial_of live/server.pem)

# client 1: a bounded loop of curl, one new connection per request (60 s at most)
cat > loop.sh <<LOOP
#!/usr/bin/env bash
end=\$((SECONDS + 60)); okc=0; bad=0
while [ ! -e stop ] && [ \$SECONDS -lt \$end ]; do
	if [ "\$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key https://localhost:$port/hello.txt 2>>loop.err)" = hello ]; then
		okc=\$((okc + 1)); else bad=\$((bad + 1)); fi
done
echo "\$okc \$bad" > loop.result
LOOP
chmod +x loop.sh
# client 2: one keep-alive connection opened before the first reload, asking
# until told to stop; prints "OK BAD CONNECTIONS"
cat > keepalive.py <<'PY'
import http.client, os, ssl, sys, time
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("client.pem", "client.key")
c = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx, timeout=5)
ok = bad = 0; socks = set(); end = time.time() + 60
while not os.path.exists("stop") and time.time() < end:
    try:
        c.request("GET", "/hello.txt"); r = c.getresponse(); body = r.read()
        socks.add(c.sock.getsockname()[1])	# the local port: one per TCP connection
        if r.status == 200 and body == b"hello\n": ok += 1
        else: bad += 1
    except Exception as e:
        bad += 1; print(repr(e), file=sys.stderr); c.close()
    time.sleep(0.02)
open("keepalive.result", "w").write("%d %d %d\n" % (ok, bad, len(socks)))
PY
start_bg loop ./loop.sh
start_bg keepalive python3 keepalive.py "$port"
wait_for 10 count_gt "$log" '"event":"close"' 0 || not_ok "the client loop gets going" "$(tail -3 loop.err)"

# replace NAME: new server cert + key (+ a bundle alternating between one and
# two roots), each written to a temp file and renamed into place
replace() {
	"$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out next --force > /dev/null || return 1
	if [ $((i % 2)) = 0 ]; then cp two-roots.pem live/bundle.pem.tmp; else cp root/bundle.pem live/bundle.pem.tmp; fi
	mv next.key live/server.key.tmp && mv next.pem live/server.pem.tmp
	mv live/server.key.tmp live/server.key && mv live/server.pem.tmp live/server.pem
	mv live/bundle.pem.tmp live/bundle.pem
}
last_ok_serial() {
	grep '"event":"reload"' "$log" | grep '"result":"ok"' | tail -1 |
	    python3 -c 'import json,sys; print(json.loads(sys.stdin.read() or "{}").get("serial", ""))'
}
serial_is() { [ "$(last_ok_serial)" = "$1" ]; }
n_failed() { grep '"event":"reload"' "$log" | grep -c '"result":"failed"'; }
failed_gt() { [ "$(n_failed)" -gt "$1" ]; }

seen=0 served=0
for i in $(seq 1 20); do
	replace || { not_ok "replacement $i issued"; continue; }
	want=$(serial_of live/server.pem)
	if [ "$i" = 10 ]; then kill -HUP "$PX"; fi	# SIGHUP reloads too
	wait_for 10 serial_is "$want" && seen=$((seen + 1))
	# what a new client sees now is the new certificate
	echo | timeout 5 openssl s_client -connect "127.0.0.1:$port" 2>/dev/null | openssl x509 -noout -serial 2>/dev/null |
	    grep -qi "=0*$want\$" && served=$((served + 1))
done
[ "$seen" = 20 ] && ok "20 replacements: each new serial in a reload ok line" \
    || not_ok "20 replacements: each new serial in a reload ok line" "$seen/20: $(grep '"event":"reload"' "$log" | tail -3)"
[ "$served" = 20 ] && ok "after each reload new clients get the new certificate" || not_ok "new certificate served" "$served/20"
[ "$(last_ok_serial)" != "$first_serial" ] && ok "the serial in the reload log is not the first one" || not_ok "new serial"
good_serial=$(serial_of live/server.pem)
cp live/server.pem good.pem

# bad replacement 1: garbage where the certificate was
f=$(n_failed)
echo "garbage" > live/server.pem.tmp && mv live/server.pem.tmp live/server.pem
wait_for 10 failed_gt "$f" && ok "a garbage certificate is refused (reload failed)" \
    || not_ok "garbage refused" "$(grep '"event":"reload"' "$log" | tail -2)"
grep '"result":"failed"' "$log" | tail -1 | grep -q 'server.pem' && ok "the failed reload names the file" \
    || not_ok "failed reload names the file" "$(grep '"result":"failed"' "$log" | tail -1)"
body=$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt")
[ "$body" = hello ] && ok "after the garbage: still serving" || not_ok "still serving after garbage" "$body"
echo | timeout 5 openssl s_client -connect "127.0.0.1:$port" 2>/dev/null | openssl x509 -noout -serial 2>/dev/null |
    grep -qi "=0*$good_serial\$" && ok "after the garbage: the last good certificate is served" || not_ok "last good served"
# bad replacement 2: a valid certificate that does not match the key
f=$(n_failed)
cp client.pem live/server.pem.tmp && mv live/server.pem.tmp live/server.pem
wait_for 10 failed_gt "$f" && ok "a certificate for another key is refused (reload failed)" \
    || not_ok "mismatched certificate refused" "$(grep '"event":"reload"' "$log" | tail -2)"
body=$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt")
[ "$body" = hello ] && ok "after the mismatch: still serving" || not_ok "still serving after mismatch" "$body"
cp good.pem live/server.pem.tmp && mv live/server.pem.tmp live/server.pem

touch stop
wait_for 70 test -s loop.result || not_ok "client loop ends"
wait_for 70 test -s keepalive.result || not_ok "keep-alive client ends"
read -r okc bad < loop.result
[ "$bad" = 0 ] && [ "$okc" -gt 20 ] && ok "new connections under reload: zero failed ($okc ok)" \
    || not_ok "new connections under reload: zero failed" "$okc ok, $bad failed: $(tail -3 loop.err)"
read -r kok kbad kconns < keepalive.result
[ "$kbad" = 0 ] && [ "$kok" -gt 20 ] && ok "a keep-alive connection under reload: zero failed ($kok ok)" \
    || not_ok "keep-alive under reload: zero failed" "$kok ok, $kbad failed: $(tail -3 "$T_DIR/keepalive.log")"
[ "$kconns" = 1 ] && ok "the keep-alive connection lives through every reload" || not_ok "one keep-alive connection" "$kconns connections"
kill -0 "$PX" 2>/dev/null && ok "the proxy is still the same process" || not_ok "proxy alive"

# SIGTERM drain: a transfer in flight completes; new connections are refused
curl -sS --max-time 30 --cacert root/bundle.pem --cert client.pem --key client.key \
    "https://localhost:$port/slow" -o slow.bin 2> slow.err &
slow=$!
wait_for 10 test -s slow.bin || not_ok "the slow transfer starts" "$(cat slow.err)"
t0=$(date +%s%N)
kill -TERM "$PX"
kill -0 "$slow" 2>/dev/null && ok "SIGTERM with a transfer in flight" || not_ok "transfer in flight at SIGTERM" "already done"
wait_for 5 grep -q '"event":"drain"' "$log" && ok "drain is logged" || not_ok "drain logged" "$(tail -2 "$log")"
refused() {
	python3 -c "
import socket, sys
try: socket.create_connection(('127.0.0.1', $port), 1).close()
except ConnectionRefusedError: sys.exit(0)
sys.exit(1)"
}
wait_for 5 refused && ok "after SIGTERM a new connection is refused" || not_ok "new connections refused after SIGTERM"
kill -0 "$slow" 2>/dev/null && ok "... while the transfer is still going" || not_ok "transfer still going when refusing"
wait "$slow"; rc=$?
[ "$rc" = 0 ] && cmp -s slow.bin www/slow.bin && ok "the in-flight transfer completed byte-identical" \
    || not_ok "in-flight transfer" "curl exit $rc, $(stat -c %s slow.bin) bytes: $(cat slow.err)"
for _ in $(seq 1 250); do kill -0 "$PX" 2>/dev/null || break; sleep 0.1; done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$PX" 2>/dev/null; rc=$?
[ "$rc" = 0 ] && ok "the proxy exits 0 after the drain" || not_ok "exit 0 after drain" "exit $rc"
[ "$ms" -lt 20000 ] && ok "... within --drain-timeout (${ms} ms)" || not_ok "exit within --drain-timeout" "${ms} ms"

# a connection that outlasts --drain-timeout 2s is cut there, and the proxy exits 0
port2=$(free_port)
start_bg short "$MTLS" proxy --listen "127.0.0.1:$port2" --target "127.0.0.1:$be" --cert good.pem \
    --key live/server.key --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --workers 1 --drain-timeout 2s
PX2=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/short.log" || not_ok "second proxy starts" "$(cat "$T_DIR/short.log")"
cat > hold.py <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("client.pem", "client.key")
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while b"hello\n" not in got:
    got += s.recv(4096)
open("hold.ready", "w").write("1")
s.settimeout(15); t = time.time()
try:
    while s.recv(4096): pass
    print("closed after %.1f s" % (time.time() - t))
except (socket.timeout, TimeoutError):
    print("still open after 15 s")
except OSError as e:
    print("closed after %.1f s (%s)" % (time.time() - t, e))
PY
python3 hold.py "$port2" > hold.out 2> hold.err &
hold=$!
wait_for 10 test -e hold.ready || not_ok "a keep-alive connection is held" "$(cat hold.err)"
t0=$(date +%s%N)
kill -TERM "$PX2"
for _ in $(seq 1 100); do kill -0 "$PX2" 2>/dev/null || break; sleep 0.1; done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$PX2" 2>/dev/null; rc=$?
[ "$rc" = 0 ] && [ "$ms" -ge 1500 ] && [ "$ms" -lt 6000 ] && ok "an open connection holds the drain until --drain-timeout 2s (${ms} ms), exit 0" \
    || not_ok "drain cut at --drain-timeout" "exit $rc after ${ms} ms"
wait "$hold"
grep -q '^closed' hold.out && ok "the held connection is closed at the deadline" || not_ok "held connection closed" "$(cat hold.out hold.err)"
exit 0
