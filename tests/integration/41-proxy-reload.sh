#!/usr/bin/env bash
# Hot reload under load (20 certificate + bundle replacements, one of them
# garbage): zero failed requests, new serials in the logs. Drain on SIGTERM
# with a slow transfer in flight. Faults that cost only their connection.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client
mkdir live
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out live/server
cp root/bundle.pem live/bundle.pem

mkdir www && echo "hello" > www/hello.txt && head -c 4194304 /dev/urandom > www/big.bin
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
port=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert live/server.pem \
    --key live/server.key --ca live/bundle.pem --allow spiffe://example.org/ns/prod/* --workers 2 \
    --handshake-timeout 2s --drain-timeout 20s
PX=$BG_PID
log="$T_DIR/inbound.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "proxy starts" "$(cat "$log")"; exit 0; }
first_serial=$(serial_of live/server.pem)

# a bounded client loop: requests until told to stop (60 s at most)
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
start_bg loop ./loop.sh
LOOP_PID=$BG_PID
wait_for 10 count_gt "$log" '"event":"close"' 0

replace() {	# new server cert + bundle, written like an agent: temp file, then rename
	"$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out "next" --force > /dev/null
	cp root/bundle.pem bundle.next
	mv next.key live/server.key.tmp && mv next.pem live/server.pem.tmp
	mv live/server.key.tmp live/server.key && mv live/server.pem.tmp live/server.pem
	mv bundle.next live/bundle.pem
}
reloads_ok() { grep '"event":"reload"' "$log" | grep -c '"result":"ok"'; }
reloads_gt() { [ "$(reloads_ok)" -gt "$1" ]; }
for i in $(seq 1 20); do
	before=$(reloads_ok)
	replace
	if [ "$i" = 10 ]; then kill -HUP "$PX"; fi	# SIGHUP works too
	wait_for 10 reloads_gt "$before" || { not_ok "reload $i observed" "$(grep reload "$log" | tail -2)"; }
done
[ "$(reloads_ok)" -ge 20 ] && ok "20 replacements reloaded" || not_ok "20 replacements reloaded" "$(reloads_ok) reloads"
# one invalid replacement: refused, old set keeps serving
cp live/server.pem good.pem
echo "garbage" > live/server.pem.tmp && mv live/server.pem.tmp live/server.pem
wait_for 10 grep -q '"result":"failed"' "$log" && ok "a garbage certificate is refused (reload failed)" \
    || not_ok "garbage refused" "$(grep reload "$log" | tail -2)"
body=$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt")
[ "$body" = hello ] && ok "still serving with the previous certificate" || not_ok "still serving" "$body"
cp good.pem live/server.pem.tmp && mv live/server.pem.tmp live/server.pem
touch stop
wait_for 70 test -s loop.result || not_ok "client loop ends"
read -r okc bad < loop.result
[ "$bad" = 0 ] && [ "$okc" -gt 20 ] && ok "zero failed requests under reload ($okc ok)" \
    || not_ok "zero failed requests under reload" "$okc ok, $bad failed: $(tail -3 loop.err)"
last=$(grep '"event":"reload"' "$log" | grep '"result":"ok"' | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["serial"])')
[ -n "$last" ] && [ "$last" != "$first_serial" ] && ok "a new serial in the reload log" || not_ok "new serial" "$last"
wait_for 5 grep -q "\"serial\":\"$last\"" "$log" && ok "the new serial is served" || not_ok "new serial served"
echo | timeout 5 openssl s_client -connect "127.0.0.1:$port" 2>/dev/null | openssl x509 -noout -serial | grep -qi "$last" \
    && ok "openssl s_client sees the new certificate" || not_ok "openssl sees the new certificate"

# faults: each costs only its own connection
before=$(grep -c '"result":"handshake_timeout"' "$log")
python3 - "$port" <<'PY' &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex("160301020001"))   # half a ClientHello record, then stall
time.sleep(4)
PY
stall=$!
wait_for 6 count_gt "$log" '"result":"handshake_timeout"' "$before" \
    && ok "a stalled half ClientHello: handshake_timeout" || not_ok "handshake_timeout" "$(tail -2 "$log")"
wait "$stall" 2>/dev/null
python3 - "$port" <<'PY'
import socket, sys
for i in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2); s.close()
    except OSError:
        pass
PY
body=$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt")
[ "$body" = hello ] && ok "after a flood of 200 dropped connections: still serving" || not_ok "after flood" "$body"

# target down: connect_failed, then the proxy keeps working when it is back
kill "$(pgrep -f "http.server $be" | head -1)" 2>/dev/null
wait_for 5 sh -c "! python3 -c \"import socket; socket.create_connection(('127.0.0.1',$be),0.3)\""
curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt" >/dev/null 2>&1
wait_for 5 grep -q '"result":"connect_failed"' "$log" && ok "target down: connect_failed logged" || not_ok "connect_failed" "$(tail -2 "$log")"
start_bg backend2 python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be"
body=$(curl -sS --max-time 5 --cacert root/bundle.pem --cert client.pem --key client.key "https://localhost:$port/hello.txt")
[ "$body" = hello ] && ok "target back: served again" || not_ok "target back" "$body"

# --max-conns: the connection past the limit is closed at once and logged
mp=$(free_port)
start_bg limited "$MTLS" proxy --listen "127.0.0.1:$mp" --target "127.0.0.1:$be" --cert good.pem \
    --key live/server.key --ca root/bundle.pem --allow-any --max-conns 2 --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/limited.log" || not_ok "limited proxy starts" "$(cat "$T_DIR/limited.log")"
python3 - "$mp" > maxconns.txt <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(3)
try:
    print("third:", "closed" if s.recv(1) == b"" else "open")
except ConnectionResetError:
    print("third: closed")
except socket.timeout:
    print("third: open")
PY
grep -q 'third: closed' maxconns.txt && ok "--max-conns 2: the third connection is closed" || not_ok "--max-conns" "$(cat maxconns.txt)"
wait_for 5 grep -q '"event":"refused"' "$T_DIR/limited.log" && ok "--max-conns: refused is logged" || not_ok "refused logged"

# drain: a slow transfer in flight completes after SIGTERM; new connections are refused
curl -sS --max-time 30 --limit-rate 1M --cacert root/bundle.pem --cert client.pem --key client.key \
    "https://localhost:$port/big.bin" -o slow.bin 2> slow.err &
slow=$!
wait_for 10 test -s slow.bin
kill -TERM "$PX"
wait_for 5 grep -q '"event":"drain"' "$log" || not_ok "drain logged"
wait_for 5 sh -c "! python3 -c \"import socket; socket.create_connection(('127.0.0.1',$port),0.3)\"" \
    && ok "after SIGTERM new connections are refused" || not_ok "new connections refused after SIGTERM"
wait "$slow"; rc=$?
[ "$rc" = 0 ] && cmp -s slow.bin www/big.bin && ok "the in-flight transfer completed byte-identical" \
    || not_ok "in-flight transfer" "curl exit $rc, $(stat -c %s slow.bin) bytes: $(cat slow.err)"
for _ in $(seq 1 100); do kill -0 "$PX" 2>/dev/null || break; sleep 0.1; done
wait "$PX" 2>/dev/null; rc=$?
[ "$rc" = 0 ] && ok "the proxy exits 0 after the drain" || not_ok "exit 0 after drain" "exit $rc"
exit 0
