#!/usr/bin/env bash
# The parse memo's switches and lifetime (src/svc/proxy/x509memo.c): the
# proxy says in one log line whether it is on; MTLS_PARSE_MEMO=0 turns it
# off (and anything but 0 or 1 too); on and off, the same handshakes give the
# same peer, version, cipher and resumption in the log and to the client
# (TLS 1.2 and 1.3, full and ticket-resumed); a ticket key rotation leaves no
# entry behind (/metrics).
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
mkdir www && echo "scope body" > www/index.html
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
common=(--target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem
    --allow spiffe://example.org/ns/prod/client --workers 2 --min-tls 1.2)
pon=$(free_port) aon=$(free_port) poff=$(free_port) aoff=$(free_port) pbad=$(free_port)
start_bg on "$MTLS" proxy --listen "127.0.0.1:$pon" --admin "127.0.0.1:$aon" "${common[@]}"
start_bg off env MTLS_PARSE_MEMO=0 "$MTLS" proxy --listen "127.0.0.1:$poff" --admin "127.0.0.1:$aoff" "${common[@]}"
start_bg bad env MTLS_PARSE_MEMO=yes "$MTLS" proxy --listen "127.0.0.1:$pbad" "${common[@]}"
for n in on off bad; do
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$n.log" || { not_ok "$n starts" "$(cat "$T_DIR/$n.log")"; exit 0; }
done
ok "three proxies start"

memo_line() { grep '"event":"parse_memo"' "$T_DIR/$1.log"; }
[ "$(memo_line on | wc -l)" = 1 ] && memo_line on | grep -q '"state":"on"' &&
    ok "by default the memo is on, said in one log line" || not_ok "memo on line" "$(memo_line on)"
[ "$(memo_line off | wc -l)" = 1 ] && memo_line off | grep -q '"state":"off"' &&
    memo_line off | grep -q '"reason":"MTLS_PARSE_MEMO=0"' &&
    ok "MTLS_PARSE_MEMO=0 turns it off, said in one log line" || not_ok "memo off line" "$(memo_line off)"
memo_line bad | grep -q '"state":"off"' && ok "MTLS_PARSE_MEMO=yes (not 0 or 1) is off too" \
    || not_ok "unclear value" "$(memo_line bad)"

metric() {	# metric ADMIN_PORT LINE_PREFIX: the value of the first matching line
	curl -sS --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v p="$2" 'index($0, p) == 1 { print $NF; exit }'
}
sc() {	# sc PORT [s_client args...]: one request, all output
	local port=$1
	shift
	printf 'GET /index.html HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
	    -CAfile root/bundle.pem -cert client.pem -cert_chain client.pem -key client.key -ign_eof "$@" 2>&1
}
# run NAME PORT: full then two resumed handshakes with TLS 1.2 and 1.3;
# prints what the client saw, one line a handshake
run() {
	local v
	for v in -tls1_2 -tls1_3; do
		for s in out in in; do
			# "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
			sc "$2" "$v" "-sess_$s" "$1$v.sess" | awk '
			    /^(New|Reused), / { r = $0 } /scope body/ { b = "body" } END { print r, b }'
		done
	done
}
run on "$pon" > client-on.txt
run off "$poff" > client-off.txt
# the server's view: the handshake lines' fields that must not depend on the memo
fields() {
	python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try: o = json.loads(line)
    except ValueError: continue
    if o.get("event") == "handshake":
        print(" ".join(str(o.get(k)) for k in ("result", "peer_id", "serial", "tls_version", "cipher", "group", "resumed")))
' "$T_DIR/$1.log"
}
n_hs() { [ "$(fields "$1" | wc -l)" -ge 6 ]; }
wait_for 5 n_hs on && wait_for 5 n_hs off
fields on > server-on.txt
fields off > server-off.txt
[ "$(grep -c '^Reused, TLSv1.[23], .* body$' client-on.txt)" = 4 ] && [ "$(grep -c '^New, TLSv1.[23], .* body$' client-on.txt)" = 2 ] &&
    ok "TLS 1.2 and 1.3 tickets resume twice each" || not_ok "resumption" "$(cat client-on.txt)"
cmp -s client-on.txt client-off.txt && ok "the client sees the same sessions with the memo on and off" \
    || not_ok "client view on/off" "$(diff client-on.txt client-off.txt)"
[ "$(wc -l < server-on.txt)" = 6 ] && cmp -s server-on.txt server-off.txt &&
    ok "the handshake log has the same peer, serial, version, cipher, group and resumption on and off" \
    || not_ok "server view on/off" "$(diff server-on.txt server-off.txt; cat server-on.txt)"
[ "$(grep -c ' True$' server-on.txt)" = 4 ] || not_ok "resumed handshakes logged" "$(cat server-on.txt)"

[ "$(metric "$aon" mtls_parse_memo_enabled)" = 1 ] && [ "$(metric "$aoff" mtls_parse_memo_enabled)" = 0 ] &&
    ok "/metrics says which is on" || not_ok "enabled gauge" "on $(metric "$aon" mtls_parse_memo_enabled) off $(metric "$aoff" mtls_parse_memo_enabled)"
hon=$(metric "$aon" 'mtls_parse_memo_total{kind="session",result="hit"}')
hoff=$(curl -sS --max-time 5 "http://127.0.0.1:$aoff/metrics" | awk 'index($0, "mtls_parse_memo_total{") == 1 { s += $NF } END { print s + 0 }')
[ "${hon:-0}" -ge 2 ] && [ "$hoff" = 0 ] && ok "only the proxy with the memo on answers from it ($hon session hits; off: $hoff)" \
    || not_ok "memo use on/off" "on $hon off $hoff"

# rotation: entries made after one rotation are gone after the next
pr=$(free_port) ar=$(free_port)
start_bg rot "$MTLS" proxy --listen "127.0.0.1:$pr" --admin "127.0.0.1:$ar" "${common[@]}" --ticket-rotate 4s
wait_for 10 grep -q '"event":"start"' "$T_DIR/rot.log" || { not_ok "rot starts" "$(cat "$T_DIR/rot.log")"; exit 0; }
rlog=$T_DIR/rot.log
wait_for 10 count_gt "$rlog" '"event":"ticket_rotate"' 0 || not_ok "a first rotation" "$(tail -3 "$rlog")"
nrot=$(grep -c '"event":"ticket_rotate"' "$rlog")
sc "$pr" -sess_out r.sess > /dev/null
sc "$pr" -sess_in r.sess > /dev/null
sc "$pr" -sess_in r.sess > /dev/null
ce=$(metric "$ar" 'mtls_parse_memo_entries{kind="certificate"}')
se=$(metric "$ar" 'mtls_parse_memo_entries{kind="session"}')
c0=$(metric "$ar" mtls_parse_memo_cleansed_total)
[ "$(grep -c '"event":"ticket_rotate"' "$rlog")" = "$nrot" ] && [ "${ce:-0}" -ge 1 ] && [ "${se:-0}" -ge 1 ] &&
    ok "handshakes fill the memo ($ce certificates, $se sessions)" || not_ok "memo entries before rotation" "cert $ce session $se"
wait_for 10 count_gt "$rlog" '"event":"ticket_rotate"' "$nrot" || not_ok "the next rotation" "$(tail -3 "$rlog")"
ce=$(metric "$ar" 'mtls_parse_memo_entries{kind="certificate"}')
se=$(metric "$ar" 'mtls_parse_memo_entries{kind="session"}')
c1=$(metric "$ar" mtls_parse_memo_cleansed_total)
[ "$ce" = 0 ] && [ "$se" = 0 ] && [ "$((c1 - c0))" -ge 2 ] &&
    ok "after the ticket keys rotate no memo entry is left ($((c1 - c0)) cleansed)" \
    || not_ok "memo entries after rotation" "cert $ce session $se cleansed $c0 -> $c1"
out=$(sc "$pr" -sess_in r.sess)
[[ "$out" == *Reused* && "$out" == *"scope body"* ]] && ok "and the ticket still resumes (the previous key opens it)" \
    || not_ok "resumption after rotation" "$(echo "$out" | grep -E 'Reused|New')"
