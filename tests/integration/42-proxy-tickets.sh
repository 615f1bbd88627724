#!/usr/bin/env bash
# Session ticket keys: two replicas sharing --ticket-key-file resume each
# other's sessions; timed rotation keeps the previous key for one period.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
mkdir www && echo hello > www/index.html
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
openssl rand 80 > tickets.key && chmod 600 tickets.key
a=$(free_port) b=$(free_port) r=$(free_port)
common=(--target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem
    --allow spiffe://example.org/ns/prod/client --workers 1)
start_bg repA "$MTLS" proxy --listen "127.0.0.1:$a" "${common[@]}" --ticket-key-file tickets.key
start_bg repB "$MTLS" proxy --listen "127.0.0.1:$b" "${common[@]}" --ticket-key-file tickets.key
start_bg rot "$MTLS" proxy --listen "127.0.0.1:$r" "${common[@]}" --ticket-rotate 2s
for n in repA repB rot; do
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$n.log" || { not_ok "$n starts" "$(cat "$T_DIR/$n.log")"; exit 0; }
done
ok "replicas start"

sc() {	# sc PORT [s_client args...]: one request, all output
	local port=$1
	shift
	printf 'GET /index.html HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile root/bundle.pem \
	    -cert client.pem -cert_chain client.pem -key client.key -ign_eof "$@" 2>&1
}
sc "$b" > /dev/null	# replica B has now verified this client's chain once
sc "$a" -sess_out a.sess > /dev/null
out=$(sc "$b" -sess_in a.sess)
[[ "$out" == *Reused* && "$out" == *hello* ]] && ok "a ticket from replica A resumes on replica B" \
    || not_ok "cross-replica resumption" "$(echo "$out" | grep -E 'Reused|New')"

# rotating our own certificate (what the agent does) keeps sessions: the
# generation depends only on what decides authorization
sc "$a" -sess_out a2.sess > /dev/null
n=$(grep -c '"result":"ok"' <(grep '"event":"reload"' "$T_DIR/repA.log"))
"$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --out next --force > /dev/null
mv next.key server.key.new && mv next.pem server.pem.new && mv server.key.new server.key && mv server.pem.new server.pem
reload_ok_gt() { [ "$(grep '"event":"reload"' "$T_DIR/repA.log" | grep -c '"result":"ok"')" -gt "$1" ]; }
wait_for 10 reload_ok_gt "$n" && ok "replica A reloads its new certificate" || not_ok "reload" "$(grep reload "$T_DIR/repA.log")"
out=$(sc "$a" -sess_in a2.sess)
[[ "$out" == *Reused* && "$out" == *hello* ]] && ok "a session survives our own certificate's rotation" \
    || not_ok "session survives own-cert rotation" "$(echo "$out" | grep -E 'Reused|New')"

openssl rand 40 > short.key
expect_exit 2 "a ticket key file of the wrong size is refused" "$MTLS" proxy --listen 127.0.0.1:1 "${common[@]}" \
    --ticket-key-file short.key
expect_grep '80' "$T_DIR/err" "the error says 80 bytes"

rotations() { grep -c '"event":"ticket_rotate"' "$T_DIR/rot.log"; }
sc "$r" -sess_out r.sess > /dev/null
n0=$(rotations)
wait_for 10 count_gt "$T_DIR/rot.log" '"event":"ticket_rotate"' "$n0" || not_ok "a rotation happens"
out=$(sc "$r" -sess_in r.sess)
[[ "$out" == *Reused* ]] && ok "after one rotation the previous key still opens the ticket" \
    || not_ok "previous key opens" "$(echo "$out" | grep -E 'Reused|New')"
n1=$(rotations)
wait_for 10 count_gt "$T_DIR/rot.log" '"event":"ticket_rotate"' $((n1 + 1)) || not_ok "two more rotations"
out=$(sc "$r" -sess_in r.sess)
[[ "$out" != *Reused* && "$out" == *hello* ]] && ok "two rotations later the old ticket gives a full handshake" \
    || not_ok "old ticket refused" "$(echo "$out" | grep -E 'Reused|New')"
exit 0
