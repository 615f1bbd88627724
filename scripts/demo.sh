#!/usr/bin/env bash
# make demo: the main job end to end, on this machine only (127.0.0.1).
# A private PKI with a scoped intermediate, two workload identities,
# inspection and verification; then a local app behind an inbound mtls
# proxy, a client talking to it through an outbound mtls proxy, the
# handshake log lines, a client with a disallowed identity refused with its
# code; a revocation that `mtls cert verify` rejects; the online CA
# (`mtls ca serve`) with two agents rotating 20-second certificates under
# a proxy pair carrying traffic; a broken server that `mtls doctor`
# diagnoses; the HTTP gateway with a rule per route and the caller's
# identity passed to the app; last, the online CA's root rotated end to end
# under traffic (docs/rotation.md).
set -euo pipefail
BUILD=${BUILD:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
MTLS=$SRC/$BUILD/mtls
work=$(mktemp -d "${TMPDIR:-/tmp}/mtls-demo.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most)
wait_port() {
	local i
	for i in $(seq 1 100); do
		python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: nothing listens on port $1" >&2; return 1
}
# wait_log FILE PATTERN: until the log has the line (10 s at most)
wait_log() {
	local i
	for i in $(seq 1 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: no '$2' in $1" >&2; cat "$1" >&2; return 1
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. An offline root and an intermediate scoped to spiffe://example.org/ns/prod/"
run "$MTLS" ca init root --trust-domain example.org
run "$MTLS" ca intermediate prod-ca --parent root --name "prod issuing CA" \
    --permit-spiffe spiffe://example.org/ns/prod/ --permit-dns prod.example.org

step "2. Two workload identities (24 h certificates, keys generated here, 0600)"
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/api \
    --dns api.prod.example.org --out api
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/billing --out billing
ls -l api.pem api.key billing.pem billing.key

step "3. What is in a certificate"
run "$MTLS" cert inspect api.pem

step "4. Verify: mtls policy and, for comparison, openssl"
run "$MTLS" cert verify api.pem --ca root/bundle.pem --purpose server --dns api.prod.example.org
run "$MTLS" cert verify billing.pem --ca root/bundle.pem --purpose client \
    --spiffe-id spiffe://example.org/ns/prod/sa/billing
run openssl verify -CAfile root/bundle.pem -untrusted prod-ca/ca.pem -purpose sslclient billing.pem

step "5. The intermediate refuses to issue outside its scope"
if "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/dev/sa/x --out dev; then
	echo "demo: expected a refusal" >&2; exit 1
fi

step "6. A local app behind an inbound proxy; billing calls it through an outbound proxy"
app=$(free_port) in_port=$(free_port) out_port=$(free_port)
mkdir www && echo "hello from the api app" > www/index.html
python3 -m http.server "$app" --bind 127.0.0.1 --directory www >/dev/null 2>&1 &
pids+=($!)
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/intruder --out intruder
echo '$ mtls proxy --listen 127.0.0.1:'"$in_port"' --target 127.0.0.1:'"$app"' --cert api.pem --key api.key --ca root/bundle.pem --allow spiffe://example.org/ns/prod/sa/billing &'
"$MTLS" proxy --listen "127.0.0.1:$in_port" --target "127.0.0.1:$app" --cert api.pem --key api.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/sa/billing --workers 1 2> inbound.log &
pids+=($!)
echo '$ mtls proxy --outbound --listen 127.0.0.1:'"$out_port"' --target 127.0.0.1:'"$in_port"' --cert billing.pem --key billing.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/sa/api &'
"$MTLS" proxy --outbound --listen "127.0.0.1:$out_port" --target "127.0.0.1:$in_port" --cert billing.pem \
    --key billing.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/sa/api --workers 1 2> outbound.log &
pids+=($!)
wait_port "$app"
wait_log inbound.log '"event":"start"'; wait_log outbound.log '"event":"start"'
run curl -sS "http://127.0.0.1:$out_port/index.html"
echo "-- inbound proxy log:"; grep '"event":"handshake"' inbound.log
echo "-- outbound proxy log:"; grep '"event":"handshake"' outbound.log

step "7. The same call with a certificate the inbound proxy does not allow"
set +e
run curl -sS --cacert root/bundle.pem --cert intruder.pem --key intruder.key \
    --resolve "api.prod.example.org:$in_port:127.0.0.1" "https://api.prod.example.org:$in_port/index.html"
set -e
wait_log inbound.log not_authorized
echo "-- inbound proxy log:"; grep not_authorized inbound.log
grep -q '"result":"not_authorized"' inbound.log

step "8. Revoke billing, publish a CRL, and verify again"
serial=$(openssl x509 -in billing.pem -noout -serial | cut -d= -f2)
run "$MTLS" ca revoke --ca prod-ca "$serial" --reason keyCompromise
run "$MTLS" ca crl --ca prod-ca --out crl.pem
set +e
run "$MTLS" cert verify billing.pem --ca root/bundle.pem --crl crl.pem
rc=$?
set -e
echo "(exit $rc: 1 means invalid, with its taxonomy code above)"
[ "$rc" = 1 ]

step "9. The inventory, and what expires within 7 days"
run "$MTLS" ca list --ca prod-ca
set +e
run "$MTLS" ca list --ca prod-ca --expiring 7d
set -e

step "10. The online CA: mtls ca serve, and mtls agent rotating 20-second certificates under traffic"
run "$MTLS" ca intermediate online-ca --parent root --name "online issuing CA"
sed -i 's/^default_ttl = .*/default_ttl = 20s/' online-ca/ca.conf
ca_port=$(free_port)
echo '$ mtls ca serve --ca online-ca --listen 127.0.0.1:'"$ca_port"' &'
"$MTLS" ca serve --ca online-ca --listen "127.0.0.1:$ca_port" 2> caserve.log &
pids+=($!)
wait_log caserve.log '"event":"start"'
"$MTLS" ca token create --ca online-ca --spiffe-id spiffe://example.org/ns/prod/sa/orders > orders.token
"$MTLS" ca token create --ca online-ca --spiffe-id spiffe://example.org/ns/prod/sa/shipping > shipping.token
echo '$ mtls ca token create --ca online-ca --spiffe-id spiffe://example.org/ns/prod/sa/orders > orders.token'
echo "  $(cut -c1-40 orders.token)...  (pins the root's and the serving CA's SHA-256; stored only hashed)"
for who in orders shipping; do
	echo '$ mtls agent --ca-url https://127.0.0.1:'"$ca_port"' --token-file '"$who"'.token --out-dir '"$who"' &'
	"$MTLS" agent --ca-url "https://127.0.0.1:$ca_port" --token-file "$who.token" --out-dir "$who" 2> "agent-$who.log" &
	pids+=($!)
done
wait_log agent-orders.log '"event":"enroll"'; wait_log agent-shipping.log '"event":"enroll"'
grep '"event":"enroll"' agent-orders.log
o_in=$(free_port); o_out=$(free_port)
"$MTLS" proxy --listen "127.0.0.1:$o_in" --target "127.0.0.1:$app" --cert orders/svid.pem --key orders/svid.key \
    --ca orders/bundle.pem --allow spiffe://example.org/ns/prod/sa/shipping \
    --crl-url "https://127.0.0.1:$ca_port/v1/crl" --workers 1 2> orders-proxy.log &
pids+=($!)
"$MTLS" proxy --outbound --listen "127.0.0.1:$o_out" --target "127.0.0.1:$o_in" --cert shipping/svid.pem \
    --key shipping/svid.key --ca shipping/bundle.pem --expect spiffe://example.org/ns/prod/sa/orders \
    --workers 1 2> shipping-proxy.log &
pids+=($!)
wait_log orders-proxy.log '"event":"start"'; wait_log shipping-proxy.log '"event":"start"'
echo "(requests through the pair while both agents renew at 2/3 of the lifetime ...)"
ok_n=0 fail_n=0
for i in $(seq 1 400); do
	if curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$o_out/index.html" 2>/dev/null; then
		ok_n=$((ok_n + 1))
	else
		fail_n=$((fail_n + 1))
	fi
	[ "$(grep -c '"event":"renew"' agent-shipping.log)" -ge 2 ] && break
	sleep 0.1
done
echo "-- agent log (shipping):"; grep '"event":"renew"' agent-shipping.log
echo "-- client serials the orders proxy saw:"
grep '"event":"handshake"' orders-proxy.log | grep -o '"serial":"[0-9A-F]*"' | uniq
echo "$ok_n requests, $fail_n failed, during the rotations"
[ "$fail_n" = 0 ]

step "11. Break one thing on purpose: a server that sends its leaf without the intermediate"
openssl x509 -in api.pem -out api-leaf-only.pem
bad_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "(mtls proxy refuses to start with such a file; a hand-configured server does not)"
echo '$ openssl s_server -accept 127.0.0.1:'"$bad_port"' -cert api-leaf-only.pem -key api.key -Verify 2 -CAfile root/bundle.pem -www &'
openssl s_server -accept "127.0.0.1:$bad_port" -cert api-leaf-only.pem -key api.key -Verify 2 \
    -CAfile root/bundle.pem -www -quiet > broken.log 2>&1 &
pids+=($!)
wait_port "$bad_port"
set +e
run "$MTLS" doctor connect "127.0.0.1:$bad_port" --cert billing.pem --key billing.key --ca root/bundle.pem \
    --expect spiffe://example.org/ns/prod/sa/api
rc=$?
set -e
echo "(exit $rc: mtls doctor names the missing intermediate and the fix)"
[ "$rc" = 1 ]

step "12. The HTTP gateway: a rule per route, the caller's identity passed to the app"
run "$MTLS" ca issue --ca prod-ca --spiffe-id spiffe://example.org/ns/prod/sa/ops --out ops
echo_port=$(free_port) gw_port=$(free_port)
python3 "$SRC/tests/integration/helpers/echo_backend.py" "$echo_port" >/dev/null 2>&1 &
pids+=($!)
cat > gw.conf <<CONF
[listener "gw"]
mode = http
listen = 127.0.0.1:$gw_port
cert = api.pem
key = api.key
ca = root/bundle.pem
crl = crl.pem
[route "admin"]
path = /admin
upstream = 127.0.0.1:$echo_port
allow = spiffe://example.org/ns/prod/sa/ops
[route "public"]
path = /
upstream = 127.0.0.1:$echo_port
client_cert = optional
CONF
run cat gw.conf
echo '$ mtls proxy --config gw.conf &'
"$MTLS" proxy --config gw.conf --workers 1 2> gw.log &
pids+=($!)
wait_port "$echo_port"; wait_log gw.log '"event":"start"'
gw() { curl -sS --cacert root/bundle.pem --resolve "api.prod.example.org:$gw_port:127.0.0.1" "$@"; }
echo "(ops calls /admin; the app sees who called, the spoofed header is gone)"
echo "\$ curl --cert ops.pem --key ops.key -H 'X-Client-Spiffe-Id: spiffe://example.org/ns/prod/sa/root' https://api.prod.example.org:$gw_port/admin/users"
gw --cert ops.pem --key ops.key -H 'X-Client-Spiffe-Id: spiffe://example.org/ns/prod/sa/root' \
    "https://api.prod.example.org:$gw_port/admin/users" | python3 -c \
    'import json,sys; h=json.load(sys.stdin)["headers"]; print("x-client-spiffe-id:", h["x-client-spiffe-id"]); print("x-forwarded-client-cert:", h["x-forwarded-client-cert"])'
echo "(intruder is refused on /admin, with the route and the rule; anyone may read /)"
echo "\$ curl --cert intruder.pem --key intruder.key https://api.prod.example.org:$gw_port/admin/users"
gw --cert intruder.pem --key intruder.key "https://api.prod.example.org:$gw_port/admin/users"
echo "\$ curl -w '%{http_code}' https://api.prod.example.org:$gw_port/hello   (no certificate)"
gw -o /dev/null -w '%{http_code}\n' "https://api.prod.example.org:$gw_port/hello"
echo "-- gateway access log:"; grep '"event":"request"' gw.log
grep -q '"route":"admin".*"status":403' gw.log

step "13. Rotate the root of an online CA under traffic: prepare, publish, switch, retire"
# a root served directly, 8-second certificates, two agents and a proxy pair
run "$MTLS" ca init rot-ca --trust-domain example.org
sed -i 's/^default_ttl = .*/default_ttl = 8s/' rot-ca/ca.conf
r_port=$(free_port)
"$MTLS" ca serve --ca rot-ca --listen "127.0.0.1:$r_port" 2> rotserve.log &
rot_ca=$!; pids+=($rot_ca)
wait_log rotserve.log '"event":"start"'
for who in orders shipping; do
	"$MTLS" ca token create --ca rot-ca --spiffe-id "spiffe://example.org/ns/prod/sa/$who" > "r-$who.token"
	"$MTLS" agent --ca-url "https://127.0.0.1:$r_port" --token-file "r-$who.token" --out-dir "r-$who" 2> "ragent-$who.log" &
	pids+=($!)
done
wait_log ragent-orders.log '"event":"enroll"'; wait_log ragent-shipping.log '"event":"enroll"'
r_in=$(free_port); r_out=$(free_port)
"$MTLS" proxy --listen "127.0.0.1:$r_in" --target "127.0.0.1:$app" --cert r-orders/svid.pem --key r-orders/svid.key \
    --ca r-orders/bundle.pem --allow spiffe://example.org/ns/prod/sa/shipping --workers 1 2> rorders-proxy.log &
pids+=($!)
"$MTLS" proxy --outbound --listen "127.0.0.1:$r_out" --target "127.0.0.1:$r_in" --cert r-shipping/svid.pem \
    --key r-shipping/svid.key --ca r-shipping/bundle.pem --expect spiffe://example.org/ns/prod/sa/orders \
    --workers 1 2> rshipping-proxy.log &
pids+=($!)
wait_log rorders-proxy.log '"event":"start"'; wait_log rshipping-proxy.log '"event":"start"'
( n=0 f=0; while [ ! -e rot-stop ] && [ "$n" -lt 3000 ]; do
	if curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$r_out/index.html"; then n=$((n + 1)); else f=$((f + 1)); fi
	sleep 0.1
  done; echo "$n $f" > rot-traffic.txt ) &
rot_tr=$!
# wait_status SECONDS: until rotation status says the next step is safe
wait_status() {
	local i
	for i in $(seq 1 $(($1 * 2))); do
		"$MTLS" ca rotation status --ca rot-ca > rot-status.txt && return 0
		sleep 0.5
	done
	cat rot-status.txt >&2; return 1
}
reload_ca() { kill -HUP "$rot_ca"; wait_log rotserve.log "\"rotation\":\"$1\""; }
run "$MTLS" ca rotation prepare --ca rot-ca
run "$MTLS" ca rotation publish --ca rot-ca
reload_ca published
set +e
run "$MTLS" ca rotation status --ca rot-ca
set -e
echo "(the agents take the bundle with both roots at their next renewal and report it at the one after)"
wait_status 40
run "$MTLS" ca rotation status --ca rot-ca
run "$MTLS" ca rotation switch --ca rot-ca
reload_ca switched
echo "(the agents renew under the new root; the old root's certificates expire)"
wait_status 40
run "$MTLS" ca rotation status --ca rot-ca
run "$MTLS" ca rotation retire --ca rot-ca
reload_ca retired
for i in $(seq 1 80); do
	[ "$(grep -c 'BEGIN CERTIFICATE' r-orders/bundle.pem)" = 1 ] &&
	    [ "$(grep -c 'BEGIN CERTIFICATE' r-shipping/bundle.pem)" = 1 ] && break
	sleep 0.5
done
touch rot-stop; wait "$rot_tr"
read -r rn rf < rot-traffic.txt
echo "-- the agents' bundles now hold the new root only:"
grep -c 'BEGIN CERTIFICATE' r-orders/bundle.pem r-shipping/bundle.pem
echo "$rn requests through the pair during the rotation, $rf failed"
[ "$rf" = 0 ]
step "14. The inventory page: ca serve's /ui, for --admin identities only"
run "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/admin --out admin
ui_port=$(free_port)
echo '$ mtls ca serve --ca root --listen 127.0.0.1:'"$ui_port"' --admin spiffe://example.org/admin &'
"$MTLS" ca serve --ca root --listen "127.0.0.1:$ui_port" --admin spiffe://example.org/admin 2> uiserve.log &
pids+=($!)
wait_log uiserve.log '"event":"start"'
echo "\$ curl --cert admin.pem --key admin.key https://127.0.0.1:$ui_port/v1/inventory/summary"
curl -sS --cacert root/bundle.pem --cert admin.pem --key admin.key "https://127.0.0.1:$ui_port/v1/inventory/summary" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("counts:", d["counts"], "expiring within:", d["expiring_within"])'
echo "The page: https://127.0.0.1:$ui_port/ui (served while the demo runs; open it in a browser holding"
echo "  the admin's PKCS#12: mtls cert export --cert admin.pem --key admin.key --format p12 ...)"
echo "Screenshots of each view: $SRC/$BUILD/artifacts/99-ui/ (written by make check T=99-ui)"

printf '\n\033[1mdemo ok\033[0m\n'
