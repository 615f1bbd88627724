#!/usr/bin/env bash
# Issue 16 §1: "the CA counts agents still on the old" bundle, per agent
# (per certificate), not per identity. Two replicas share one SPIFFE ID
# (two agents enrolled with two tokens for .../sa/web). After publish,
# replica b renews twice (reporting the bundle it holds: the old one, then
# the overlap one); replica a does not renew, it still lacks the new root.
# A report per identity said "0 of 1" (b's last renewal won) and let the
# switch through; per certificate it is 1 of 2 and the switch is blocked.
# A renewal replaces only its own certificate's report; a revoked
# replica's report no longer counts.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR" || exit 1
TD=spiffe://example.org/ns/prod/sa
"$MTLS" ca init root --trust-domain example.org > /dev/null
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --url "$URL"
ca_pid=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
for r in a b; do
	"$MTLS" ca token create --ca root --spiffe-id "$TD/web" > "$r.token"
	expect_exit 0 "replica $r enrolls as $TD/web" "$MTLS" agent --once --ca-url "$URL" --token-file "$r.token" --out-dir "$r"
done
[ "$(openssl x509 -in a/svid.pem -noout -ext subjectAltName | tail -n 1)" = \
    "$(openssl x509 -in b/svid.pem -noout -ext subjectAltName | tail -n 1)" ] &&
    ok "both replicas hold a certificate for the same identity" || not_ok "same identity"
status() { "$MTLS" ca rotation status --ca root > status.txt 2>&1; }
renew() { "$MTLS" agent --once --ca-url "$URL" --cert "$1/svid.pem" --key "$1/svid.key" --out-dir "$1" > "renew-$1.log" 2>&1; }
expect_exit 0 "rotation prepare" "$MTLS" ca rotation prepare --ca root
expect_exit 0 "rotation publish" "$MTLS" ca rotation publish --ca root
kill -HUP "$ca_pid"
wait_for 10 grep -q '"event":"reload","result":"ok".*"rotation":"published"' "$T_DIR/caserve.log" &&
    ok "ca serve reloaded: published" || not_ok "reload published" "$(grep reload "$T_DIR/caserve.log")"
status
grep -q '^agents on a bundle without the new root: 2 of 2$' status.txt &&
    ok "status: 2 of 2 agents on the old bundle (both enrollments handed it out)" || not_ok "2 of 2" "$(cat status.txt)"
# replica b: the first renewal reports the old bundle (and takes the
# overlap one), the second reports the overlap one
renew b && ok "replica b renews (reporting the old bundle)" || not_ok "renew b" "$(cat renew-b.log)"
[ "$(grep -c 'BEGIN CERTIFICATE' b/bundle.pem)" = 3 ] && ok "replica b holds the overlap bundle" ||
    not_ok "overlap bundle" "$(grep -c 'BEGIN CERTIFICATE' b/bundle.pem) certificates"
renew b && ok "replica b renews again (reporting the overlap bundle)" || not_ok "renew b again" "$(cat renew-b.log)"
expect_exit 1 "rotation status: exit 1, blocked: replica a lacks the new root" "$MTLS" ca rotation status --ca root
expect_grep '^agents on a bundle without the new root: 1 of 2$' "$T_DIR/out" "status counts each replica: 1 of 2 on the old bundle"
expect_grep '^next: switch: blocked: 1 of 2 agents' "$T_DIR/out" "and says the switch is blocked by 1 agent"
expect_exit 1 "rotation switch refused while replica a is on the old bundle" "$MTLS" ca rotation switch --ca root
# a revoked replica's report no longer counts
expect_exit 0 "replica a's certificate revoked" "$MTLS" ca revoke --ca root "$(serial_of a/svid.pem)"
expect_exit 0 "rotation status: exit 0 once replica a is revoked" "$MTLS" ca rotation status --ca root
expect_grep '^agents on a bundle without the new root: 0 of 1$' "$T_DIR/out" "status: 0 of 1 (the revoked replica drops out)"
