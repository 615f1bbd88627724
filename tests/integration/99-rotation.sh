#!/usr/bin/env bash
# The root rotated end to end under traffic (issue 16 §1). ca serve issues
# 8-second certificates from a root; two agents feed an inbound and an
# outbound proxy (orders <- shipping) and an HTTP gateway (orders' files,
# reached through a second outbound proxy of shipping). While curl loops
# through both paths, the root is rotated: prepare, publish (reload; the
# agents take the overlap bundle, report it, the proxies reload), switch
# (reload; the agents renew onto the new root), retire (reload; the old
# root leaves every bundle). Each step waits for `rotation status` to say
# it is safe. Then: 0 failed requests, the old root in no bundle, and a
# certificate chaining only to it refused by the inbound proxy as unknown_ca.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
. "$_root/tests/integration/helpers/rotation_fleet.sh"
CA=root
"$MTLS" ca init root --trust-domain example.org > /dev/null
sed -i 's/^default_ttl = .*/default_ttl = 8s/' root/ca.conf
# a certificate of the old root that outlives the rotation (revoked
# before the retirement, so it does not block it; proxies load no CRL)
"$MTLS" ca issue --ca root --spiffe-id "$TD/shipping" --ttl 1h --out stale > /dev/null
cp root/ca.pem oldroot.pem
fleet_start
traffic_start

expect_exit 0 "rotation prepare" "$MTLS" ca rotation prepare --ca root
expect_exit 0 "rotation publish" "$MTLS" ca rotation publish --ca root
hup published && ok "ca serve reloaded: published" || not_ok "reload published" "$(grep reload "$T_DIR/caserve.log")"
status; grep -q '^next: switch: blocked: 2 of 2 agents' status.txt && ok "status: switch blocked by 2 agents on the old bundle" ||
    not_ok "status blocks the switch" "$(cat status.txt)"
expect_exit 1 "rotation switch refused while blocked" "$MTLS" ca rotation switch --ca root
wait_for 40 both_hold 3 &&
    ok "both agents installed the overlap bundle" || not_ok "overlap bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
wait_for 40 status && ok "status: switch is safe once both agents reported it" || not_ok "agents report" "$(cat status.txt)"
expect_exit 0 "rotation switch" "$MTLS" ca rotation switch --ca root
hup switched && ok "ca serve reloaded: switched" || not_ok "reload switched" "$(grep reload "$T_DIR/caserve.log")"
status; grep -q '^next: retire: blocked: [1-9][0-9]* unexpired' status.txt && ok "status: retire blocked by the old root's certificates" ||
    not_ok "status blocks the retirement" "$(cat status.txt)"
newsub=$(openssl x509 -in root/ca.pem -noout -subject | sed 's/^subject=//')
on_new() { on_issuer "$1" "$newsub"; }
wait_for 40 on_new orders/svid.pem && wait_for 40 on_new shipping/svid.pem &&
    ok "both agents renewed onto the new root" || not_ok "renewed onto the new root" "$(tail -n 3 "$T_DIR"/agent-*.log)"
q "$MTLS" ca revoke --ca root "$(openssl x509 -in stale.pem -noout -serial | cut -d= -f2)"
wait_for 40 status && ok "status: retire is safe once the old root's certificates expired" || not_ok "old certificates drain" "$(cat status.txt)"
expect_exit 0 "rotation retire" "$MTLS" ca rotation retire --ca root
hup retired && ok "ca serve reloaded: retired" || not_ok "reload retired" "$(grep reload "$T_DIR/caserve.log")"
wait_for 40 both_hold 1 &&
    ok "both agents dropped the old root from their bundle" || not_ok "final bundle" "$(tail -n 3 "$T_DIR"/agent-*.log)"
# the proxies took the final bundle (a reload after it was written)
wait_for 10 test "$(grep -c '"event":"reload"' "$T_DIR/inbound.log")" -ge 1 || true
check_traffic
check_old_root_gone root/bundle.pem orders/bundle.pem shipping/bundle.pem
curl -sS --cacert root/bundle.pem --resolve "localhost:$port:127.0.0.1" "$URL/v1/rotation" > rot-anon.json
expect_grep '"client_cert_required"' rot-anon.json "/v1/rotation needs a client certificate"
q "$MTLS" ca issue --ca root --spiffe-id "$TD/admin" --ttl 5m --out admin
curl -sS --cacert root/bundle.pem --cert admin.pem --key admin.key --resolve "localhost:$port:127.0.0.1" \
    "$URL/v1/rotation" > rot.json
python3 - rot.json > rot.check <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ["phase", "old_root", "new_root", "blocking_certs", "agents_on_old_bundle", "agents_total", "next_step"]
assert list(d)[:len(keys)] == keys, list(d)  # fields are only added
assert d["phase"] == "retired" and len(d["old_root"]) == 64 and d["agents_total"] == 2, d
print("ok")
PY
expect_grep '^ok' rot.check "/v1/rotation (admin): the status as JSON, phase retired, 2 agents"
check_metrics_retired
check_unknown_ca stale oldroot.pem
