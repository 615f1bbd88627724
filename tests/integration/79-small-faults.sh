#!/usr/bin/env bash
# Issue 18's smaller faults: a FIFO given as a certificate, key, CA or CRL
# is refused at once (commands exit 2, a proxy reload fails and the old
# files keep serving); doctor connect --timeout holds over a server that
# answers a byte at a time.
. "$(dirname "$0")/lib.sh"
H="$(cd "$(dirname "$0")" && pwd)/helpers"
cd "$T_DIR"
pki_pair
mkfifo fifo.pem

# ---- a FIFO instead of a PEM file: exit 2 at once, with the reason ----
fifo_refused() {	# fifo_refused NAME CMD...: exit 2 within 5 s, the message
	local rc
	timeout 5 "${@:2}" > out 2> err
	rc=$?
	if [ "$rc" = 2 ] && grep -q 'fifo.pem: not a regular file (a FIFO)' err; then ok "$1"
	else not_ok "$1" "exit $rc (124: hung), want 2: $(head -c 400 err)"; fi
}
fifo_refused "cert inspect FIFO: exit 2, 'not a regular file (a FIFO)'" "$MTLS" cert inspect fifo.pem
fifo_refused "cert verify --ca FIFO: exit 2" "$MTLS" cert verify client.pem --ca fifo.pem
fifo_refused "cert verify --crl FIFO: exit 2" "$MTLS" cert verify client.pem --ca root/bundle.pem \
    --untrusted int/ca.pem --crl fifo.pem
fifo_refused "doctor files --cert FIFO: exit 2" "$MTLS" doctor files --cert fifo.pem
fifo_refused "doctor files --key FIFO: exit 2" "$MTLS" doctor files --cert client.pem --key fifo.pem
p=$(free_port)
fifo_refused "proxy --ca FIFO: exit 2" "$MTLS" proxy --listen "127.0.0.1:$p" --target 127.0.0.1:9 \
    --cert server.pem --key server.key --ca fifo.pem --allow-any
fifo_refused "proxy --key FIFO: exit 2" "$MTLS" proxy --listen "127.0.0.1:$p" --target 127.0.0.1:9 \
    --cert server.pem --key fifo.pem --ca root/bundle.pem --allow-any

# a symlink to a regular file is still a file
ln -s client.pem link.pem
expect_exit 0 "cert inspect through a symlink to a PEM file: exit 0" "$MTLS" cert inspect link.pem

# ---- the proxy's reload: a certificate path swapped for a FIFO ----
mkdir www && echo hello > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
mkdir live && cp server.pem server.key live/
port=$(free_port)
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$port" --target "127.0.0.1:$be" --cert live/server.pem \
    --key live/server.key --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client
PX=$BG_PID
log="$T_DIR/inbound.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "proxy starts" "$(cat "$log")"; exit 0; }
good() {
	local out
	out=$(curl -sS --max-time 10 -w ' %{http_code}' --cacert root/bundle.pem --cert client.pem --key client.key \
	    "https://localhost:$port/hello.txt" 2>&1)
	[ "$out" = "hello
 200" ] && ok "$1" || not_ok "$1" "$out"
}
good "proxy serves before the swap"
failed_fifo() { grep '"event":"reload"' "$log" | grep '"result":"failed"' | grep -q 'not a regular file (a FIFO)'; }
mkfifo live/server.pem.new && mv -f live/server.pem.new live/server.pem
kill -HUP "$PX"
wait_for 10 failed_fifo && ok "reload with server.pem a FIFO: a failed reload line naming it" \
    || not_ok "reload names the FIFO" "$(grep '"event":"reload"' "$log" | tail -3)"
kill -0 "$PX" 2>/dev/null && ok "the proxy is still running" || not_ok "proxy still running" "$(tail -3 "$log")"
good "the old certificate keeps serving after the failed reload"

# ---- doctor connect --timeout: one deadline over everything ----
sp=$(free_port)
start_bg slow python3 "$H/slow_answer.py" "$sp" 0.25 \
    "HTTP/1.1 400 Bad Request, this server speaks no TLS at all, not even slowly"
wait_for 10 port_open "$sp" || { not_ok "slow server starts"; exit 0; }
t0=$(ms)
timeout 30 "$MTLS" doctor connect "127.0.0.1:$sp" --timeout 3s --json > slow.json 2> slow.err
rc=$? dt=$(( $(ms) - t0 ))
[ "$rc" = 1 ] && [ "$dt" -lt 4500 ] && ok "doctor connect --timeout 3s, a byte every 250 ms: done in ${dt} ms" \
    || not_ok "doctor --timeout holds" "exit $rc after $dt ms (want 1 within 4500 ms)"
expect_grep '"result": "not_tls"' slow.json "the slow non-TLS answer is not_tls"
sp2=$(free_port)
start_bg slow2 python3 "$H/slow_answer.py" "$sp2" 1 "SSH-2.0-OpenSSH_9.2p1 a banner, one byte a second"
wait_for 10 port_open "$sp2" || { not_ok "slow server 2 starts"; exit 0; }
t0=$(ms)
timeout 30 "$MTLS" doctor connect "127.0.0.1:$sp2" --timeout 3s --json > slow2.json 2> slow2.err
rc=$? dt=$(( $(ms) - t0 ))
[ "$rc" = 1 ] && [ "$dt" -lt 4500 ] && ok "doctor connect --timeout 3s, a byte a second: done in ${dt} ms" \
    || not_ok "doctor --timeout holds (1 byte/s)" "exit $rc after $dt ms"
expect_grep '"result": "not_tls"' slow2.json "the 1 byte/s answer is not_tls"

# ---- a certificate chain over OpenSSL's 100 KiB Certificate message ----
python3 - <<'PY'
with open("big.cnf", "w") as f:
    f.write("[req]\ndistinguished_name=dn\nprompt=no\nx509_extensions=ext\n[dn]\nCN=big.example\n"
            "[ext]\nsubjectAltName=@alt\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n[alt]\n")
    for i in range(1800):   # 1,800 DNS names of 70 bytes: a 121 KB certificate
        f.write("DNS.%d=host-%05d.a-rather-long-name-for-a-certificate-chain.example.org\n" % (i + 1, i))
PY
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout big.key -out big.pem -days 2 -config big.cnf
expect_exit 1 "doctor files on a 121 KB chain: exit 1" "$MTLS" doctor files --cert big.pem --key big.key
expect_grep 'chain_too_large: .*-byte Certificate message' "$T_DIR/out" "doctor files names it chain_too_large, offline"
bp=$(free_port)
start_bg bigserver openssl s_server -accept "127.0.0.1:$bp" -cert big.pem -key big.key -www -quiet
wait_for 10 port_open "$bp" || { not_ok "s_server with the big chain starts"; exit 0; }
expect_exit 1 "doctor connect to a server whose chain is over 100 KiB: exit 1" "$MTLS" doctor connect "127.0.0.1:$bp" --json --timeout 10s
expect_grep '"result": "chain_too_large"' "$T_DIR/out" "the doctor names it chain_too_large (not no_shared_algorithm)"
expect_grep '102400-byte' "$T_DIR/out" "the doctor's finding gives the limit"
# the inbound proxy (the one from the reload test) gets a client chain that big
hs_big() { grep '"event":"handshake"' "$log" | grep -q '"result":"chain_too_large"'; }
timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost -cert big.pem -key big.key \
    -CAfile root/bundle.pem < /dev/null > sclient.out 2>&1
wait_for 10 hs_big && ok "inbound proxy: a client chain over 100 KiB is logged chain_too_large" \
    || not_ok "proxy names chain_too_large" "$(grep '"event":"handshake"' "$log" | tail -2)"
# the outbound proxy gets a server chain that big
op=$(free_port)
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$op" --target "127.0.0.1:$bp" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect dns:big.example
olog="$T_DIR/outbound.log"
wait_for 10 grep -q '"event":"start"' "$olog" || { not_ok "outbound proxy starts" "$(cat "$olog")"; exit 0; }
curl -sS --max-time 10 "http://127.0.0.1:$op/" > /dev/null 2>&1
ohs_big() { grep '"event":"handshake"' "$olog" | grep -q '"result":"chain_too_large"'; }
wait_for 10 ohs_big && ok "outbound proxy: a server chain over 100 KiB is logged chain_too_large" \
    || not_ok "outbound proxy names chain_too_large" "$(grep '"event":"handshake"' "$olog" | tail -2)"

# ---- ca serve: restarts reuse its certificate; a full disk is a 503 ----
rows() { sqlite3 "$1/inventory.db" "SELECT count(*) FROM certs"; }
base=$(rows int)
cport=$(free_port)
URL="https://localhost:$cport"
for i in 1 2 3 4; do
	start_bg "caserve$i" "$MTLS" ca serve --ca int --listen "127.0.0.1:$cport" --url "$URL"
	cpid=$BG_PID
	wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve$i.log" || { not_ok "ca serve start $i" "$(cat "$T_DIR/caserve$i.log")"; exit 0; }
	h=$(curl -sS --max-time 5 --cacert root/bundle.pem "$URL/healthz")
	[ "$h" = ok ] || not_ok "ca serve start $i: /healthz over TLS" "$h"
	kill "$cpid"
	wait_for 10 gone "$cpid" || not_ok "ca serve $i stops"
done
[ "$(rows int)" = $((base + 1)) ] && ok "ca serve started 4 times: one inventory row for its own certificate" \
    || not_ok "one row for 4 starts" "$(( $(rows int) - base )) rows"
expect_grep '"event":"server_cert_reused"' "$T_DIR/caserve4.log" "the 4th start logs server_cert_reused"
# other names: a new certificate (the old one does not fit)
start_bg caserve5 "$MTLS" ca serve --ca int --listen "127.0.0.1:$cport" --url "$URL" --dns localhost --dns ca.example
cpid=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve5.log" || { not_ok "ca serve start 5" "$(cat "$T_DIR/caserve5.log")"; exit 0; }
kill "$cpid"; wait_for 10 gone "$cpid"
[ "$(rows int)" = $((base + 2)) ] && grep -q '"event":"server_cert_not_reused".*other names' "$T_DIR/caserve5.log" \
    && ok "with other --dns names: a new certificate, and the log says why" \
    || not_ok "new names reissue" "$(rows int) rows; $(grep server_cert "$T_DIR/caserve5.log")"

# a full disk under the CA directory (LD_PRELOAD shim, switched by a file)
cc -shared -fPIC -o enospc.so "$H/enospc.c" -ldl || { not_ok "enospc.so builds"; exit 0; }
# under make asan the sanitizer runtime must come first in LD_PRELOAD
san=$(ldd "$MTLS" | awk '/libasan|libubsan/ { printf "%s ", $3 }')
start_bg caservefull env LD_PRELOAD="$san$T_DIR/enospc.so" ENOSPC_DIR="$T_DIR/int" ENOSPC_FLAG="$T_DIR/disk-full" \
    "$MTLS" ca serve --ca int --listen "127.0.0.1:$cport" --url "$URL"
flog="$T_DIR/caservefull.log"
wait_for 10 grep -q '"event":"start"' "$flog" || { not_ok "ca serve (shim) starts" "$(cat "$flog")"; exit 0; }
code() { curl -sS --max-time 10 --cacert root/bundle.pem -o "$2" -w '%{http_code}' "$URL$1" 2>&1; }
enroll() {	# enroll ID OUT: POST /v1/enroll with a new token for ID; prints the status
	"$MTLS" ca token create --ca int --spiffe-id "$1" > "$2.token" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$2.key" -subj /CN=x -out "$2.csr" 2>/dev/null
	python3 -c 'import json,sys; print(json.dumps({"token": open(sys.argv[1]).read().strip(), "csr": open(sys.argv[2]).read()}))' \
	    "$2.token" "$2.csr" > "$2.req"
	curl -sS --max-time 10 --cacert root/bundle.pem -o "$2.json" -w '%{http_code}' -H 'Content-Type: application/json' \
	    --data-binary @"$2.req" "$URL/v1/enroll" 2>&1
}
[ "$(code /readyz ready.txt)" = 200 ] && ok "/readyz: 200 while the disk has room" || not_ok "/readyz 200" "$(cat ready.txt)"
before=$(sqlite3 int/inventory.db "SELECT count(*) FROM certs")
touch disk-full
st=$(enroll spiffe://example.org/ns/prod/full full)
[ "$st" = 503 ] && grep -q '"error": *"unavailable"' full.json && grep -q 'disk full' full.json \
    && ok "enroll on a full disk: 503 unavailable naming 'disk full'" || not_ok "enroll 503" "$st $(cat full.json)"
[ "$(code /healthz h.txt)" = 200 ] && ok "/healthz (liveness) stays 200" || not_ok "/healthz 200" "$(cat h.txt)"
st=$(code /readyz ready.json)
[ "$st" = 503 ] && grep -q 'cannot issue: disk full' ready.json && ok "/readyz: 503 'cannot issue: disk full ...'" \
    || not_ok "/readyz 503" "$st $(cat ready.json)"
expect_grep '"event":"not_ready".*disk full' "$flog" "a not_ready line with the cause"
rm -f disk-full
[ "$(sqlite3 int/inventory.db "SELECT count(*) FROM certs")" = "$before" ] && ok "nothing was recorded while full" \
    || not_ok "nothing recorded" "$before before, $(sqlite3 int/inventory.db "SELECT count(*) FROM certs") after"
sqlite3 int/inventory.db "SELECT used_at IS NULL FROM tokens ORDER BY created_at DESC LIMIT 1" | grep -q 1 \
    && ok "the token of the refused enrollment is not burned" || not_ok "token not burned"
ready_again() { [ "$(code /readyz r2.txt)" = 200 ]; }
wait_for 15 ready_again && ok "/readyz back to 200 once the disk has room (write probe)" || not_ok "ready again" "$(cat r2.txt)"
expect_grep '"event":"ready"' "$flog" "a ready line when it recovers"
st=$(enroll spiffe://example.org/ns/prod/full full2)
[ "$st" = 200 ] && ok "enroll after the disk has room: 200" || not_ok "enroll 200 after" "$st $(cat full2.json)"
