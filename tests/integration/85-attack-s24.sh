#!/usr/bin/env bash
# Attack session s24 (an outside attacker with the docs and the binary).
# ca serve's admin API from a browser: docs/api.md tells admins to open
# /ui in a browser holding their PKCS#12. A page of any other site can then
# make that browser POST /v1/revoke: fetch(url, {method: 'POST', mode:
# 'no-cors', credentials: 'include', body: new Blob([json])}) sends no
# Content-Type (a Blob without a type), so no CORS preflight, and the
# browser presents the admin's certificate (headless Chromium with the
# admin's p12 revoked a certificate this way on main). A browser marks
# every POST with Origin (and Sec-Fetch-Site); agents and scripts send
# neither: the writes refuse such a request, and curl still works.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/prod/sa/web --out web
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/prod/sa/db --out db

port=$(free_port)
URL="https://127.0.0.1:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --admin spiffe://example.org/admin
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }

# post NAME WANT_STATUS PATTERN PATH BODY [curl args]: body in $T_DIR/body
post() {
	local name=$1 want=$2 pat=$3 path=$4 body=$5 code
	shift 5
	code=$(curl -sS --cacert root/bundle.pem -o "$T_DIR/body" -w '%{http_code}' -H 'Content-Type:' \
	    --data-binary "$body" "$@" "$URL$path")
	if [ "$code" = "$want" ] && grep -qE -- "$pat" "$T_DIR/body"; then ok "$name"
	else not_ok "$name" "status $code, want $want /$pat/: $(head -c 400 "$T_DIR/body")"; fi
}
A=(--cert admin.pem --key admin.key)
web=$(serial_of web.pem)
rev="{\"serial\": \"$web\", \"reason\": \"keyCompromise\"}"

# what Chromium sends for the no-cors fetch of another site's page
post "revoke from another site's page (Origin, Sec-Fetch-Site, no Content-Type): 403 cross_origin" \
    403 cross_origin /v1/revoke "$rev" "${A[@]}" -H 'Origin: http://evil.example' \
    -H 'Sec-Fetch-Site: cross-site' -H 'Sec-Fetch-Mode: no-cors'
post "revoke with Origin alone: 403 cross_origin" 403 cross_origin /v1/revoke "$rev" "${A[@]}" \
    -H 'Origin: null'
post "revoke with Sec-Fetch-Site alone: 403 cross_origin" 403 cross_origin /v1/revoke "$rev" "${A[@]}" \
    -H 'Sec-Fetch-Site: same-site'
post "renew from a browser: 403 cross_origin (no certificate for the page's key)" 403 cross_origin \
    /v1/renew '{"csr": "x"}' --cert web.pem --key web.key -H 'Origin: http://evil.example'
expect_exit 0 "nothing was revoked by the refused requests" "$MTLS" ca list --ca root --revoked --json
if grep -q "$web" "$T_DIR/out"; then not_ok "web is still valid after the browser requests" "$(cat "$T_DIR/out")"
else ok "web is still valid after the browser requests"; fi
# agents and scripts: no Origin, Content-Type absent or JSON
post "revoke by curl, no Content-Type: 200" 200 '"already": ?false' /v1/revoke "$rev" "${A[@]}"
post "revoke by curl, application/json: 200" 200 '"revoked": ?true' /v1/revoke \
    "{\"serial\": \"$(serial_of db.pem)\"}" "${A[@]}" -H 'Content-Type: application/json'
expect_grep '"code":"cross_origin"' "$log" "the refusal is in the request log with its code"

# Root rotation: publish puts rotation/new.pem and cross.pem in bundle.pem,
# which every client of /v1/bundle takes. On main it took whatever the files
# held: a self-signed root of anyone's key, no cross-certificate, while
# rotation.json and `status` still named the root prepare made. It must
# publish only what prepare wrote (docs/rotation.md: a file that does not
# hold what the state says is refused, not acted on).
q "$MTLS" ca init rot --trust-domain example.org
q "$MTLS" ca rotation prepare --ca rot
cp -a rot rot.clean
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout evil.key \
    -subj "/O=example.org/CN=example.org Root CA" -days 30 -out evil.pem 2>/dev/null ||
    { echo "setup failed: openssl req"; exit 1; }
cp rot/bundle.pem bundle.before
cp evil.pem rot/rotation/new.pem && cp evil.pem rot/rotation/cross.pem
expect_exit 2 "publish refuses a new.pem that is not the root rotation.json names" \
    "$MTLS" ca rotation publish --ca rot
expect_grep 'rotation/new.pem is not the certificate rotation.json names' "$T_DIR/err" "its message says which file and why"
cmp -s bundle.before rot/bundle.pem && ok "bundle.pem is unchanged" || not_ok "bundle.pem is unchanged"
grep -q '"phase": "prepared"' rot/rotation.json && ok "the phase stays prepared" ||
    not_ok "the phase stays prepared" "$(cat rot/rotation.json)"
rm -rf rot && cp -a rot.clean rot && cp evil.pem rot/rotation/cross.pem
expect_exit 2 "publish refuses a cross.pem that is not the old root's cross-certificate of the new root" \
    "$MTLS" ca rotation publish --ca rot
rm -rf rot && cp -a rot.clean rot
expect_exit 0 "publish of what prepare wrote works" "$MTLS" ca rotation publish --ca rot
[ "$(grep -c BEGIN rot/bundle.pem)" = 3 ] && ok "the bundle holds the old root, the new root and the cross" ||
    not_ok "the bundle holds the old root, the new root and the cross" "$(grep -c BEGIN rot/bundle.pem)"

# switch keeps the old root as rotation/old.pem, once (a run again after a
# crash must not copy the new root over it), and after the switch that file
# decides whose leaves still renew. On main a rotation/old.pem already there
# was kept whatever it held: the switch went ahead, and ca serve loaded it.
cp -a rot rot.pub
cp evil.pem rot/rotation/old.pem
cp rot/ca.pem ca.before
expect_exit 2 "switch refuses a rotation/old.pem that is not the old root" \
    "$MTLS" ca rotation switch --ca rot --force
expect_grep 'rotation/old.pem: not the old CA rotation.json names' "$T_DIR/err" "its message names the file"
cmp -s ca.before rot/ca.pem && ok "ca.pem is unchanged" || not_ok "ca.pem is unchanged"
rm -rf rot && cp -a rot.pub rot
expect_exit 0 "switch works with the files it wrote" "$MTLS" ca rotation switch --ca rot --force
cp evil.pem rot/rotation/old.pem
expect_exit 2 "after the switch, a CA whose rotation/old.pem is not the old root does not open" \
    "$MTLS" ca rotation status --ca rot

# The inventory's views run on ca serve's 16 workers and queue on one store
# connection. On main an admin, or another site's page making the admin's
# browser load <img src=".../v1/inventory?q=a&limit=500">, ran as many
# searches over every row as it liked: 48 at once on 100,000 rows held every
# worker for 40 s and GET /v1/bundle waited 29 s. Now a request of another
# site is refused, and at most 4 views run at once (503 busy beyond).
q python3 "$_root/bench/gen_inventory.py" --sqlite root/inventory.db --count 20000 --seed 24
get() {	# get NAME WANT_STATUS PATTERN PATH [curl args]
	local name=$1 want=$2 pat=$3 path=$4 code
	shift 4
	code=$(curl -sS --cacert root/bundle.pem -o "$T_DIR/body" -w '%{http_code}' "$@" "$URL$path")
	if [ "$code" = "$want" ] && grep -qE -- "$pat" "$T_DIR/body"; then ok "$name"
	else not_ok "$name" "status $code, want $want /$pat/: $(head -c 400 "$T_DIR/body")"; fi
}
get "an inventory search from another site's page (Sec-Fetch-Site: cross-site): 403 cross_origin" 403 \
    cross_origin "/v1/inventory?q=a&limit=500" "${A[@]}" -H 'Sec-Fetch-Site: cross-site'
get "the page's own fetch (same-origin): 200" 200 '"items"' "/v1/inventory?limit=1" "${A[@]}" \
    -H 'Sec-Fetch-Site: same-origin'
get "the page itself, opened from a link of another site: 200" 200 '<html' /ui "${A[@]}" \
    -H 'Sec-Fetch-Site: cross-site'
pids=()
for i in $(seq 1 24); do
	curl -sS -m 100 --cacert root/bundle.pem "${A[@]}" -o /dev/null -w '%{http_code}\n' \
	    "$URL/v1/inventory?q=a&limit=500" > "flood.$i" 2>&1 &
	pids+=($!)
done
get "GET /v1/bundle during 24 searches over every row: 200" 200 '"bundle"' /v1/bundle -m 20
wait "${pids[@]}"
n503=$(cat flood.* | grep -c '^503$')
n200=$(cat flood.* | grep -c '^200$')
[ "$n503" -gt 0 ] && [ $((n503 + n200)) = 24 ] && ok "24 searches at once: $n200 answered, $n503 refused 503 busy" ||
    not_ok "24 searches at once: some refused 503 busy, the rest answered" "200: $n200, 503: $n503, $(cat flood.* | sort | uniq -c)"
expect_grep '"code":"busy"' "$log" "the refusal is in the request log with its code"
get "after the flood a search answers again" 200 '"items"' "/v1/inventory?q=a&limit=5" "${A[@]}"

# A request not whole in time is 408: its status line said "408 Status"
# (no reason phrase for 408 or 414 in http_reason, shared by the gateway).
cat > partial.py <<'PY'
import socket, ssl, sys
c = ssl.create_default_context(cafile="root/bundle.pem")
c.check_hostname = False
s = c.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30))
s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}")
d = b""
while True:
    x = s.recv(4096)
    if not x:
        break
    d += x
print(d.split(b"\r\n")[0].decode())
PY
expect_exit 0 "a body that never completes is answered" timeout 40 python3 partial.py "$port"
expect_grep '^HTTP/1.1 408 Request Timeout$' "$T_DIR/out" "its status line is '408 Request Timeout'"

# GET /v1/rotation is admin data the page shows, like the inventory's: it
# was sent without Cache-Control: no-store and nosniff.
curl -sS --cacert root/bundle.pem "${A[@]}" -D rot.h -o /dev/null "$URL/v1/rotation"
grep -qi '^Cache-Control: no-store' rot.h && grep -qi '^X-Content-Type-Options: nosniff' rot.h &&
    ok "/v1/rotation: Cache-Control: no-store, nosniff" || not_ok "/v1/rotation: Cache-Control: no-store, nosniff" "$(cat rot.h)"
