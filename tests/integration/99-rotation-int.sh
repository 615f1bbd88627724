#!/usr/bin/env bash
# Rotation in the usual layout (issue 16 §1): an offline root (root/)
# above the online intermediate ca serve issues from (int/), under traffic
# through the fleet of 99-rotation.sh (helpers/rotation_fleet.sh). First a
# new intermediate under the same root (prepare --parent root; publish
# puts it in the bundle, which agents pin the CA server by; switch;
# retire revokes the old intermediate at the root), then a new root above
# a new intermediate (prepare --parent root --new-root; the bundle holds
# both roots, the cross-certificate and the new intermediate under the
# old root; switch moves root/ to the new root too; retire drops the old
# root). Each step waits for `rotation status` to say it is safe. Then: 0
# failed requests, leaves issued after each switch chain through the new
# intermediate, a leaf of the revoked first intermediate refused as
# revoked by a proxy holding the root's CRL, and a certificate chaining
# only to the removed root refused by the inbound proxy as unknown_ca.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
. "$_root/tests/integration/helpers/rotation_fleet.sh"
. "$_root/tests/integration/helpers/ocrl.sh"
CA=int
"$MTLS" ca init root --trust-domain example.org > /dev/null
"$MTLS" ca intermediate int --parent root --name "example.org Issuing CA" > /dev/null
sed -i 's/^default_ttl = .*/default_ttl = 8s/' int/ca.conf

# ---- refusals that change nothing ----
"$MTLS" ca init other --trust-domain example.org > /dev/null
expect_exit 2 "prepare --parent with a root that did not issue the intermediate" \
    "$MTLS" ca rotation prepare --ca int --parent other
expect_exit 2 "prepare --new-root without --parent" "$MTLS" ca rotation prepare --ca int --new-root
expect_exit 2 "prepare of an intermediate without --parent" "$MTLS" ca rotation prepare --ca int
[ ! -e int/rotation.json ] && [ ! -e int/rotation ] && ok "refused prepares wrote nothing" ||
    not_ok "refused prepares wrote nothing" "$(ls int)"
# a rotation.json written before "kind" reads as a root's; an unknown
# kind is refused, naming the file
"$MTLS" ca init legacy --trust-domain example.org > /dev/null
h=$(printf '%064d' 0)
printf '{"phase":"prepared","old_root":"%s","new_root":"%s","old_issuer":"CN=x","cross_serial":"01","published_gen":"","final_gen":"","at":1}' \
    "$h" "$h" > legacy/rotation.json
chmod 600 legacy/rotation.json
"$MTLS" ca rotation status --ca legacy > legacy.txt 2>&1
expect_grep '^kind: root$' legacy.txt "a rotation.json without kind is a root's rotation"
sed -i 's/"at":1/"at":1,"kind":"bogus"/' legacy/rotation.json
expect_exit 2 "a rotation.json with an unknown kind is refused" "$MTLS" ca rotation status --ca legacy
"$MTLS" ca rotation status --ca legacy 2>&1 | grep -q "legacy/rotation.json: kind 'bogus'" &&
    ok "... naming the file and the kind" || not_ok "unknown kind message" "$("$MTLS" ca rotation status --ca legacy 2>&1)"
# a scoped intermediate: the new one has the same name constraints, scope
# and path length (read from the old certificate)
"$MTLS" ca intermediate scoped --parent root --name "Scoped CA" --permit-spiffe spiffe://example.org/ns/prod/ \
    --permit-dns prod.example.org > /dev/null
q "$MTLS" ca rotation prepare --ca scoped --parent root
exts() {
	openssl x509 -in "$1" -noout -ext basicConstraints,keyUsage,nameConstraints
	openssl x509 -in "$1" -noout -text | sed -n '/1.3.6.1.4.1.32473.6857.1/,+1p'
}
exts scoped/ca.pem > scope-old.txt; exts scoped/rotation/new.pem > scope-new.txt
grep -q 'prod.example.org' scope-new.txt && cmp -s scope-old.txt scope-new.txt &&
    ok "a new intermediate keeps the old one's name constraints, scope and path length" ||
    not_ok "scope kept" "$(diff scope-old.txt scope-new.txt)"

# stale1: a leaf of the first intermediate that outlives case 1 (not
# revoked: the root's revocation of its issuer is what refuses it)
"$MTLS" ca issue --ca int --spiffe-id "$TD/shipping" --ttl 1h --out stale1 > /dev/null
cp int/ca.pem int1.pem
cp root/ca.pem oldroot.pem
fleet_start
traffic_start

# ==== case 1: a new intermediate, the same root ====
expect_exit 0 "int: rotation prepare --parent" "$MTLS" ca rotation prepare --ca int --parent root
status; grep -q '^kind: intermediate' status.txt && ok "status: kind intermediate" || not_ok "kind" "$(cat status.txt)"
expect_exit 0 "int: rotation publish" "$MTLS" ca rotation publish --ca int
hup published && ok "int: ca serve reloaded: published" || not_ok "int: reload published" "$(grep reload "$T_DIR/caserve.log")"
status; grep -q '^next: switch: blocked: 2 of 2 agents' status.txt && ok "int: status: switch blocked by 2 agents" ||
    not_ok "int: status blocks the switch" "$(cat status.txt)"
expect_exit 1 "int: rotation switch refused while blocked" "$MTLS" ca rotation switch --ca int
wait_for 40 both_hold 2 && ok "int: both agents installed the bundle with the new intermediate" ||
    not_ok "int: published bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
wait_for 40 status && ok "int: status: switch is safe once both agents reported it" || not_ok "int: agents report" "$(cat status.txt)"
expect_exit 0 "int: rotation switch" "$MTLS" ca rotation switch --ca int
hup switched && ok "int: ca serve reloaded: switched" || not_ok "int: reload switched" "$(grep reload "$T_DIR/caserve.log")"
status; grep -q '^next: retire: blocked: [1-9][0-9]* unexpired.*old intermediate' status.txt &&
    ok "int: status: retire blocked by the old intermediate's certificates" || not_ok "int: status blocks the retirement" "$(cat status.txt)"
int2sub=$(openssl x509 -in int/ca.pem -noout -subject | sed 's/^subject=//')
wait_for 40 on_issuer orders/svid.pem "$int2sub" && wait_for 40 on_issuer shipping/svid.pem "$int2sub" &&
    ok "int: both agents renewed under the new intermediate" || not_ok "int: renewed" "$(tail -n 3 "$T_DIR"/agent-*.log)"
openssl verify -CAfile root/ca.pem -untrusted orders/svid.pem orders/svid.pem > v1.txt 2>&1 &&
    ! openssl verify -CAfile root/ca.pem -untrusted int1.pem orders/svid.pem > /dev/null 2>&1 &&
    ok "int: a leaf issued after the switch chains to the root through the new intermediate" || not_ok "int: chain" "$(cat v1.txt)"
# stale1 blocks until the inventory says otherwise: revoked there (the
# proxies load no CRL of the intermediate: stale1 still verifies alone)
stale1=$(openssl x509 -in stale1.pem -noout -serial | cut -d= -f2)
q "$MTLS" ca revoke --ca int "$stale1"
wait_for 40 status && ok "int: status: retire is safe once the old intermediate's certificates are gone" || not_ok "int: drain" "$(cat status.txt)"
expect_exit 2 "int: retire without --parent refused" "$MTLS" ca rotation retire --ca int
expect_exit 0 "int: rotation retire --parent" "$MTLS" ca rotation retire --ca int --parent root
hup retired && ok "int: ca serve reloaded: retired" || not_ok "int: reload retired" "$(grep reload "$T_DIR/caserve.log")"
wait_for 40 both_hold 1 && ok "int: both agents back on the root alone" || not_ok "int: final bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
int1serial=$(openssl x509 -in int1.pem -noout -serial | cut -d= -f2)
"$MTLS" ca list --ca root --revoked > revoked.txt
expect_grep "^$int1serial .*revoked" revoked.txt "int: the old intermediate is revoked in the root's inventory"

# a proxy holding the root's CRL (and an empty one of the old
# intermediate: CRL_CHECK wants one for the leaf) refuses stale1 as revoked
q "$MTLS" ca crl --ca root --out root.crl
ocrl int1.crl int/rotation/old.pem int/rotation/old.key
cat root.crl int1.crl > crls.pem
cat root/bundle.pem int1.pem > refuse-ca.pem
rp=$(free_port)
start_bg refuser "$MTLS" proxy --listen "127.0.0.1:$rp" --target "127.0.0.1:$app" --cert orders/svid.pem \
    --key orders/svid.key --ca refuse-ca.pem --crl crls.pem --allow "$TD/shipping" --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/refuser.log" || not_ok "refusing proxy starts" "$(cat "$T_DIR/refuser.log")"
openssl s_client -connect "127.0.0.1:$rp" -cert stale1.pem -key stale1.key -cert_chain int1.pem \
    -CAfile orders/bundle.pem < /dev/null > sclient1.out 2>&1
wait_for 5 grep -q "\"serial\":\"$stale1\".*\"result\":\"revoked\"" "$T_DIR/refuser.log"
expect_grep "\"serial\":\"$stale1\".*\"result\":\"revoked\"" "$T_DIR/refuser.log" \
    "int: a leaf of the revoked old intermediate is refused as revoked"
expect_grep "CA certificate.*is revoked" "$T_DIR/refuser.log" "int: ... because its CA certificate is revoked"
"$MTLS" ca rotation status --ca int --json > st1.json
expect_grep '"kind": "intermediate"' st1.json "int: status --json names the kind"

# ==== case 2: a new root above a new intermediate ====
# stale2: a certificate of the intermediate about to be replaced, revoked
# before the retirement; afterwards it chains only to the removed root
"$MTLS" ca issue --ca int --spiffe-id "$TD/shipping" --ttl 1h --out stale2 > /dev/null
cp int/ca.pem int2.pem
expect_exit 0 "root: rotation prepare --parent --new-root" "$MTLS" ca rotation prepare --ca int --parent root --new-root
cp "$T_DIR/err" prep2.err
# the scoped intermediate and the successor prepared for it chain to the
# old root too, from root/'s inventory, which status does not read
expect_grep "warning: 2 other unexpired, unrevoked certificates of the old root" prep2.err \
    "root: prepare says how many other CAs of the old root there are"
[ -s root/rotation/new.key ] && [ ! -e int/rotation/root.key ] && [ -s int/rotation/intcross.pem ] &&
    ok "root: the new root's key is in the offline root's directory, not the intermediate's" || not_ok "root: key placement" "$(ls root/rotation int/rotation)"
expect_exit 0 "root: rotation publish" "$MTLS" ca rotation publish --ca int
hup published && ok "root: ca serve reloaded: published" || not_ok "root: reload published" "$(grep reload "$T_DIR/caserve.log")"
status; grep -q '^next: switch: blocked: 2 of 2 agents' status.txt && ok "root: status: switch blocked by 2 agents" ||
    not_ok "root: status blocks the switch" "$(cat status.txt)"
wait_for 40 both_hold 4 && ok "root: both agents installed the overlap bundle (2 roots, cross, new intermediate)" ||
    not_ok "root: overlap bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
wait_for 40 status && ok "root: status: switch is safe once both agents reported it" || not_ok "root: agents report" "$(cat status.txt)"
expect_exit 2 "root: switch without --parent refused" "$MTLS" ca rotation switch --ca int
expect_exit 0 "root: rotation switch --parent" "$MTLS" ca rotation switch --ca int --parent root
hup switched && ok "root: ca serve reloaded: switched" || not_ok "root: reload switched" "$(grep reload "$T_DIR/caserve.log")"
newroot=$(openssl x509 -in root/ca.pem -noout -subject | sed 's/^subject=//')
cmp -s root/rotation/old.pem oldroot.pem && [ "$newroot" != "$(openssl x509 -in oldroot.pem -noout -subject | sed 's/^subject=//')" ] &&
    ok "root: root/ holds the new root, the old one in root/rotation/old.pem" || not_ok "root: root/ switched" "$newroot"
int3sub=$(openssl x509 -in int/ca.pem -noout -subject | sed 's/^subject=//')
wait_for 40 on_issuer orders/svid.pem "$int3sub" && wait_for 40 on_issuer shipping/svid.pem "$int3sub" &&
    ok "root: both agents renewed under the new intermediate" || not_ok "root: renewed" "$(tail -n 3 "$T_DIR"/agent-*.log)"
openssl verify -CAfile root/ca.pem -untrusted orders/svid.pem orders/svid.pem > v2.txt 2>&1 &&
    ok "root: a leaf issued after the switch chains to the new root through the new intermediate" || not_ok "root: chain" "$(cat v2.txt)"
q "$MTLS" ca revoke --ca int "$(openssl x509 -in stale2.pem -noout -serial | cut -d= -f2)"
wait_for 40 status && ok "root: status: retire is safe once the old root's certificates are gone" || not_ok "root: drain" "$(cat status.txt)"
expect_exit 0 "root: rotation retire" "$MTLS" ca rotation retire --ca int
hup retired && ok "root: ca serve reloaded: retired" || not_ok "root: reload retired" "$(grep reload "$T_DIR/caserve.log")"
wait_for 40 both_hold 1 && ok "root: both agents dropped the old root" || not_ok "root: final bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
wait_for 10 test "$(grep -c '"event":"reload"' "$T_DIR/inbound.log")" -ge 1 || true
check_traffic
check_old_root_gone int/bundle.pem root/bundle.pem orders/bundle.pem shipping/bundle.pem
q "$MTLS" ca issue --ca int --spiffe-id "$TD/admin" --ttl 5m --out admin
curl -sS --cacert int/bundle.pem --cert admin.pem --key admin.key --resolve "localhost:$port:127.0.0.1" \
    "$URL/v1/rotation" > rot.json
python3 - rot.json > rot.check <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["phase"] == "retired" and d["kind"] == "root-and-intermediate", d
assert d["old_root"] != d["new_root"] and len(d["new_ca"]) == 64 and d["agents_total"] == 2, d
print("ok")
PY
expect_grep '^ok' rot.check "/v1/rotation: phase retired, kind root-and-intermediate"
check_metrics_retired
check_unknown_ca stale2 int2.pem
