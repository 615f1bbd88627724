#!/usr/bin/env bash
# Faults that must cost only their own connection, all against one inbound
# proxy: bytes that are not TLS, a real ClientHello cut in half and other
# stalls (--handshake-timeout 2s), a flood of 200 connections opened and
# dropped, a target that is down (inbound and outbound); after all of them a
# good request still gets 200 from the same process, and every failure line
# names its listener. --max-conns refuses past its limit.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
mkdir www && echo "hello" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
BE_PID=$BG_PID
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
port=$(free_port) admin=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --workers 2 --handshake-timeout 2s \
    --connect-timeout 2s --admin "127.0.0.1:$admin"
PX=$BG_PID
log="$T_DIR/inbound.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "proxy starts" "$(cat "$log")"; exit 0; }
n() { grep '"event":"handshake"' "$log" | grep -c "\"result\":\"$1\""; }
n_gt() { [ "$(n "$1")" -gt "$2" ]; }
good() {	# good NAME: a request with a good certificate gets 200 and the body
	local out
	out=$(curl -sS --max-time 10 -w ' %{http_code}' --cacert root/bundle.pem --cert client.pem --key client.key \
	    "https://localhost:$port/hello.txt" 2>&1)
	[ "$out" = "hello
 200" ] && ok "$1" || not_ok "$1" "$out"
}
good "a good request before the faults: 200"

# bytes that are not TLS: not_tls, the connection is closed, and no reason
# text goes back to the peer
before=$(n not_tls)
python3 - "$port" > nottls.out <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n"); s.settimeout(5)
got, how = b"", "closed"
try:
    while True:
        b = s.recv(4096)
        if not b: break
        got += b
except (socket.timeout, TimeoutError):
    how = "open"
except OSError:
    pass
open("nottls.reply", "wb").write(got)
print(how)
PY
wait_for 5 n_gt not_tls "$before" && ok "non-TLS bytes: not_tls logged" || not_ok "not_tls logged" "$(tail -2 "$log")"
[ "$(cat nottls.out)" = closed ] && ok "non-TLS bytes: the connection is closed" || not_ok "not_tls closes" "$(cat nottls.out)"
reply=$(tr -cd '[:alpha:]' < nottls.reply)
[[ "$reply" != *TLS* && "$reply" != *tls* && "$reply" != *speak* ]] && ok "non-TLS bytes: no failure detail sent to the peer" \
    || not_ok "no detail to the peer" "$reply"

# stalls: half of a real ClientHello, a bare record header, nothing at all;
# each must be closed after about --handshake-timeout 2s
cat > stall.py <<'PY'
import socket, ssl, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, outg, server_hostname="localhost")
try: obj.do_handshake()
except ssl.SSLWantReadError: pass
hello = outg.read()
send = {"half": hello[:len(hello) // 2], "header": hello[:5], "silent": b""}[mode]
s = socket.create_connection(("127.0.0.1", port)); s.sendall(send); s.settimeout(8); t = time.time()
try:
    while s.recv(4096): pass
    print("%s closed after %.1f s (sent %d of %d bytes)" % (mode, time.time() - t, len(send), len(hello)))
except (socket.timeout, TimeoutError):
    print("%s still open after 8 s" % mode)
except OSError as e:
    print("%s closed after %.1f s (%s)" % (mode, time.time() - t, e))
PY
before=$(n handshake_timeout)
pids=()
for mode in half header silent; do
	python3 stall.py "$port" "$mode" > "stall-$mode.out" 2>&1 &
	pids+=($!)
done
wait "${pids[@]}"
for mode in half header silent; do
	read -r _ how _ secs _ < "stall-$mode.out"
	if [ "$how" = closed ] && python3 -c "import sys; sys.exit(not 1.5 <= float('$secs') <= 5)"; then
		ok "a stalled handshake ($mode) is closed after --handshake-timeout 2s (${secs} s)"
	else
		not_ok "stalled handshake ($mode) closed after ~2 s" "$(cat "stall-$mode.out")"
	fi
done
wait_for 5 n_gt handshake_timeout $((before + 1)) && ok "each started stall is logged as handshake_timeout" \
    || not_ok "handshake_timeout logged twice" "$(( $(n handshake_timeout) - before )) lines: $(grep -v '"result":"ok"' "$log" | tail -3)"
# the silent one never began a handshake: a conn_limit line (at most one a
# second, whatever the number of silent connections), not a handshake line
grep -q '"event":"conn_limit".*"reason":"first_byte_timeout"' "$log" && ok "the silent one is logged as first_byte_timeout" \
    || not_ok "first_byte_timeout logged" "$(grep conn_limit "$log" | tail -2)"

# a flood: 200 connections open at once, then dropped (FIN, RST, or after a
# few bytes of a record header)
python3 - "$port" > flood.out <<'PY'
import socket, struct, sys
port = int(sys.argv[1]); socks = []
for i in range(200):
    try:
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError as e:
        print("connect failed:", e)
for i, s in enumerate(socks):
    if i % 3 == 1:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif i % 3 == 2:
        s.sendall(b"\x16\x03\x01")
    s.close()
print("opened", len(socks))
PY
grep -q '^opened 200$' flood.out && ok "a flood of 200 connections is accepted" || not_ok "200 connections accepted" "$(cat flood.out)"
active() { curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics" | grep -q '^mtls_connections_active 0$'; }
wait_for 10 active && ok "after the flood no connection is left open (mtls_connections_active 0)" \
    || not_ok "connections released after the flood" "$(curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics" | grep connections_active)"
good "after the flood: 200"
# the flood's silent closes are port probes, not TLS failures: counted and
# logged apart, so not_tls keeps meaning "bytes that were not TLS"
probes() { curl -sS --max-time 5 "http://127.0.0.1:$admin/metrics" | awk '/^mtls_probes_total /{print $2}'; }
[ "$(probes)" -ge 100 ] 2>/dev/null && ok "silent connections count as mtls_probes_total ($(probes))" \
    || not_ok "silent connections counted as probes" "$(probes)"
grep -q '"event":"probe".*"result":"no_data"' "$log" && ok "a silent connection is logged as a probe (no_data)" \
    || not_ok "probe logged" "$(tail -2 "$log")"

# the target is down: connect_failed, the client gets no reply; back up: served
kill "$BE_PID"
wait "$BE_PID" 2>/dev/null
wait_for 5 sh -c "! python3 -c \"import socket; socket.create_connection(('127.0.0.1',$be),0.3)\"" || not_ok "backend stops"
before=$(grep -c '"connect_failed"' "$log")
curl -sS -o /dev/null --max-time 10 --cacert root/bundle.pem --cert client.pem --key client.key \
    "https://localhost:$port/hello.txt" 2>/dev/null && not_ok "target down: the request fails" || ok "target down: the request fails"
wait_for 5 count_gt "$log" '"connect_failed"' "$before" && ok "target down: connect_failed logged" \
    || not_ok "connect_failed logged" "$(tail -2 "$log")"
start_bg backend2 python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || not_ok "backend restarts"

# an outbound proxy whose upstream is down: connect_failed too
ob=$(free_port) dead=$(free_port)
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$ob" --target "127.0.0.1:$dead" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server --workers 1 --connect-timeout 2s
wait_for 10 grep -q '"event":"start"' "$T_DIR/outbound.log" || not_ok "outbound proxy starts" "$(cat "$T_DIR/outbound.log")"
curl -sS -o /dev/null --max-time 10 "http://127.0.0.1:$ob/hello.txt" 2>/dev/null \
    && not_ok "upstream down: the outbound request fails" || ok "upstream down: the outbound request fails"
wait_for 5 grep -q '"connect_failed"' "$T_DIR/outbound.log" && ok "upstream down: the outbound proxy logs connect_failed" \
    || not_ok "outbound connect_failed" "$(tail -2 "$T_DIR/outbound.log")"

kill -0 "$PX" 2>/dev/null && ok "after every fault the proxy is the same process" || not_ok "proxy survived the faults" "$(tail -3 "$log")"
good "after every fault a good request still gets 200"

# every failure line says which listener it is about (with --config there are several)
python3 - "$log" > unnamed.txt <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("event") in ("handshake", "connect") and "listener" not in d:
        print(line.strip())
PY
[ ! -s unnamed.txt ] && ok "every handshake and connect line names its listener" \
    || not_ok "every handshake and connect line names its listener" "$(sort -u -t'"' -k20,20 unnamed.txt | head -3)"

# --max-conns: with every connection authorized, the one past the limit is
# closed at once and logged (silent ones would be closed for it instead:
# 75-listener-limits.sh)
mp=$(free_port) admin2=$(free_port)
start_bg limited "$MTLS" proxy --listen "127.0.0.1:$mp" --target "127.0.0.1:$be" --cert server.pem \
    --key server.key --ca root/bundle.pem --allow-any --max-conns 2 --workers 1 --admin "127.0.0.1:$admin2"
wait_for 10 grep -q '"event":"start"' "$T_DIR/limited.log" || not_ok "limited proxy starts" "$(cat "$T_DIR/limited.log")"
# two connections held; once the proxy counts them, a third
cat > maxconns.py <<'PY'
import os, socket, ssl, sys, time
port = int(sys.argv[1])
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("client.pem", "client.key")
held = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        for _ in range(2)]
open("held", "w").write("2")
for _ in range(100):		# until the test says the proxy counts both (10 s at most)
    if os.path.exists("go"): break
    time.sleep(0.1)
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(3)
try:
    print("third:", "closed" if s.recv(1) == b"" else "open")
except ConnectionResetError:
    print("third: closed")
except socket.timeout:
    print("third: open")
PY
python3 maxconns.py "$mp" > maxconns.txt &
mc=$!
two_active() { curl -sS --max-time 5 "http://127.0.0.1:$admin2/metrics" | grep -q '^mtls_connections_active 2$'; }
wait_for 10 test -e held && wait_for 10 two_active || not_ok "the limited proxy holds two connections"
touch go
wait "$mc"
grep -q 'third: closed' maxconns.txt && ok "--max-conns 2: the third connection is closed" || not_ok "--max-conns" "$(cat maxconns.txt)"
wait_for 5 grep -q '"event":"conn_limit".*"reason":"max_conns"' "$T_DIR/limited.log" && ok "--max-conns: refused is logged" \
    || not_ok "refused logged" "$(grep conn_limit "$T_DIR/limited.log")"
exit 0
