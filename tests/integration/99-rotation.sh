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
# the overlap's SPIFFE bundle: the two roots, never the cross-certificate
# that bundle.pem also holds (a consumer trusts every x509-svid key as a root)
curl -sS --cacert root/bundle.pem --resolve "localhost:$port:127.0.0.1" "$URL/v1/bundle?format=spiffe" > spiffe.json
"$MTLS" ca bundle --ca root --format spiffe > spiffe-cli.json
python3 - spiffe.json spiffe-cli.json oldroot.pem root/bundle.pem > spiffe.check 2>&1 <<'PY'
import base64, json, subprocess, sys
def pem(der):
    return subprocess.run(["openssl", "x509", "-inform", "DER"], input=der, capture_output=True, check=True).stdout.decode()
def subj_iss(p):
    o = subprocess.run(["openssl", "x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253"], input=p.encode(), capture_output=True, check=True).stdout.decode().splitlines()
    return o[0].split("=", 1)[1], o[1].split("=", 1)[1]
bundle = open(sys.argv[4]).read().count("BEGIN CERTIFICATE")
assert bundle == 3, "bundle.pem holds old root, new root, cross: %d" % bundle
old = open(sys.argv[3]).read()
for f in sys.argv[1:3]:
    d = json.load(open(f))
    certs = [pem(base64.b64decode(k["x5c"][0])) for k in d["keys"]]
    assert len(certs) == 2, "%s: %d authorities, want the 2 roots" % (f, len(certs))
    for c in certs:
        s, i = subj_iss(c)
        assert s == i, "%s: %s issued by %s" % (f, s, i)
    assert any(subj_iss(c) == subj_iss(old) and c.split("-----")[2] == old.split("-----")[2] for c in certs), f + ": old root missing"
print("ok")
PY
expect_grep '^ok' spiffe.check "overlap: the SPIFFE bundle (served and ca bundle) lists the 2 roots, not the cross-certificate"
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
# the same leaf sent alone, as a root's leaves are: no intermediate is
# missing, its root was rotated out: unknown_ca, and the fix is to renew
openssl s_client -connect "127.0.0.1:$in" -cert stale.pem -key stale.key \
    -CAfile orders/bundle.pem < /dev/null > sclient-alone.out 2>&1
serial=$(openssl x509 -in stale.pem -noout -serial | cut -d= -f2)
wait_for 5 grep -q "\"serial\":\"$serial\".*\"result\":\"unknown_ca\".*renew it from the current CA" "$T_DIR/inbound.log"
expect_grep "\"serial\":\"$serial\".*\"result\":\"unknown_ca\".*renew it from the current CA; its issuer 'CN=example.org Root CA,O=example.org' is a root rotated out" \
    "$T_DIR/inbound.log" "an old-root leaf sent alone after retire: unknown_ca, 'renew it from the current CA' (not chain_incomplete)"
# the doctor's fix says the same: renew; never "add that root"
"$MTLS" doctor files --cert stale.pem --key stale.key --ca orders/bundle.pem --json > doctor-stale.json 2> doctor-stale.err
echo "rc=$?" >> doctor-stale.err
python3 - doctor-stale.json > doctor-stale.check <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fs = [f for f in d["findings"] if f.get("code") == "unknown_ca"]
assert fs, d["findings"]
fix = fs[0]["fix"] or ""
assert "rotated out of this trust bundle" in fix and "renew the certificate from the current CA" in fix, fix
assert "add that root to" not in fix and "in the trust bundle;" not in fix, fix
print("ok")
PY
grep -q '^rc=1$' doctor-stale.err && expect_grep '^ok' doctor-stale.check \
    "doctor files on an old-root leaf after retire: exit 1, unknown_ca, the fix is to renew (not to add the old root back)"
grep -q '^rc=1$' doctor-stale.err || not_ok "doctor files exit 1" "$(cat doctor-stale.err)"
