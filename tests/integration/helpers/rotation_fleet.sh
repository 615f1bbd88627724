# The fleet of the rotation tests (99-rotation.sh, 99-rotation-int.sh),
# sourced after lib.sh, in $T_DIR. fleet_start: ca serve issuing from
# the CA directory $CA (whose ca.conf gives 8-second certificates), two
# agents (orders, shipping) feeding an inbound and an outbound proxy
# (orders <- shipping) and an HTTP gateway (orders' files, reached through
# a second outbound proxy of shipping). traffic_start / traffic_stop: curl
# through both paths, counting failures. The steps' helpers: status, hup,
# both_hold, on_issuer.
TD=spiffe://example.org/ns/prod/sa

fleet_start() {
	port=$(free_port) app=$(free_port) in=$(free_port) out=$(free_port) gw=$(free_port) out2=$(free_port)
	URL="https://localhost:$port"
	start_bg caserve "$MTLS" ca serve --ca "$CA" --listen "127.0.0.1:$port" --url "$URL" --admin "$TD/admin"
	ca_pid=$BG_PID
	wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
	for w in orders shipping; do
		"$MTLS" ca token create --ca "$CA" --spiffe-id "$TD/$w" > "$w.token"
		start_bg "agent-$w" "$MTLS" agent --ca-url "$URL" --token-file "$w.token" --out-dir "$w"
	done
	wait_for 20 test -s orders/svid.pem -a -s shipping/svid.pem || { not_ok "agents enroll" "$(cat "$T_DIR"/agent-*.log)"; exit 0; }
	mkdir www && echo hello > www/index.html
	start_bg app python3 -m http.server "$app" --bind 127.0.0.1 --directory www
	start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$app" --cert orders/svid.pem \
	    --key orders/svid.key --ca orders/bundle.pem --allow "$TD/shipping" --workers 1
	start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$out" --target "127.0.0.1:$in" \
	    --cert shipping/svid.pem --key shipping/svid.key --ca shipping/bundle.pem --expect "$TD/orders" --workers 1
	cat > gw.conf <<CONF
[listener "gw"]
mode = http
listen = 127.0.0.1:$gw
cert = orders/svid.pem
key = orders/svid.key
ca = orders/bundle.pem
[route "all"]
path = /
upstream = 127.0.0.1:$app
allow = $TD/shipping
CONF
	start_bg gateway "$MTLS" proxy --config gw.conf --workers 1
	start_bg outbound2 "$MTLS" proxy --outbound --listen "127.0.0.1:$out2" --target "127.0.0.1:$gw" \
	    --cert shipping/svid.pem --key shipping/svid.key --ca shipping/bundle.pem --expect "$TD/orders" --workers 1
	for p in inbound outbound gateway outbound2; do
		wait_for 10 grep -q '"event":"start"' "$T_DIR/$p.log" || { not_ok "$p starts" "$(cat "$T_DIR/$p.log")"; exit 0; }
	done
	wait_for 10 port_open "$app"
}

# curl through the pair and through the gateway, one each per round,
# until told to stop (at most 2000 rounds): "OK BAD" in traffic.txt,
# replaced after each round
traffic() {
	local i okn=0 bad=0 u
	for i in $(seq 2000); do
		[ -e stop ] || [ ! -d "$T_DIR" ] && break
		for u in "http://127.0.0.1:$out/index.html" "http://127.0.0.1:$out2/index.html"; do
			if curl -sf -o /dev/null --max-time 5 "$u"; then okn=$((okn + 1))
			else bad=$((bad + 1)); echo "$(date +%T.%N) $u" >> failed.txt; fi
		done
		echo "$okn $bad" > traffic.tmp && mv traffic.tmp traffic.txt
		sleep 0.1
	done
	echo "$okn $bad" > traffic.tmp && mv traffic.tmp traffic.txt
}
traffic_start() { rm -f traffic.txt; traffic & tr=$!; }
# _traffic_past N: traffic.txt counts more than N requests, or traffic
# has ended (its 2000 rounds)
_traffic_past() {
	local o=0 b=0
	! kill -0 "$tr" 2>/dev/null && return 0
	read -r o b < traffic.txt 2>/dev/null || return 1
	[ $((o + b)) -gt "$1" ]
}
# traffic_stop: okn and bad set, once requests made after the last step
# are counted: a round (2 requests) may be under way at the call, so the
# count must pass its value then by more than 2 (deadline 30 s)
traffic_stop() {
	local o=0 b=0
	read -r o b < traffic.txt 2>/dev/null
	wait_for 30 _traffic_past $((o + b + 2))
	touch stop
	wait "$tr"
	read -r okn bad < traffic.txt
	[ $((okn + bad)) -gt $((o + b + 2)) ] ||
	    not_ok "requests after the last step" "$okn $bad, $o $b at the last step"
}

status() { "$MTLS" ca rotation status --ca "$CA" > status.txt 2>&1; }
_reloads() { grep -c "\"event\":\"reload\",\"result\":\"ok\".*\"rotation\":\"$1\"" "$T_DIR/caserve.log"; }
_more_reloads() { [ "$(_reloads "$1")" -gt "$2" ]; }
hup() {	# hup PHASE: reload ca serve, wait for a new reload that took PHASE
	local n
	n=$(_reloads "$1")
	kill -HUP "$ca_pid"
	wait_for 10 _more_reloads "$1" "$n"
}
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
# both_hold N: both agents' bundle.pem hold N certificates
both_hold() { [ "$(ncerts orders/bundle.pem)" = "$1" ] && [ "$(ncerts shipping/bundle.pem)" = "$1" ]; }
# on_issuer FILE SUBJECT: FILE's certificate was issued by SUBJECT
on_issuer() { openssl x509 -in "$1" -noout -issuer | grep -qF "$2"; }

# ---- the checks at the end of a rotation ----
# check_traffic: traffic stopped, at least 20 requests, none failed
check_traffic() {
	traffic_stop
	[ "$bad" = 0 ] && [ "$okn" -gt 20 ] && ok "traffic through the pair and the gateway: $okn requests, 0 failed" ||
	    not_ok "0 failed requests" "$okn ok, $bad failed: $(head -5 failed.txt 2>/dev/null)"
}
# check_old_root_gone FILE...: oldroot.pem's DER (as base64 lines) in none
check_old_root_gone() {
	local f inb=0 old_b64
	old_b64=$(sed -n '2p' oldroot.pem)
	for f in "$@"; do
		grep -qF "$old_b64" "$f" && inb=1
	done
	[ "$inb" = 0 ] && ok "the old root is in no bundle ($*)" || not_ok "old root removed" "still in a bundle"
}
# check_metrics_retired: /metrics says retired, no agent on the old bundle
check_metrics_retired() {
	curl -sS --cacert "$CA/bundle.pem" --resolve "localhost:$port:127.0.0.1" "$URL/metrics" > metrics.txt
	expect_grep '^mtls_ca_rotation_phase 4$' metrics.txt "/metrics: mtls_ca_rotation_phase 4 (retired)"
	expect_grep '^mtls_ca_rotation_agents_on_old_bundle 0$' metrics.txt "/metrics: no agent on the old bundle"
}
# check_unknown_ca PREFIX CHAIN: a client with PREFIX.pem/.key and the
# certificates CHAIN, ending only at the removed root, is refused by the
# inbound proxy as unknown_ca
check_unknown_ca() {
	local serial
	openssl s_client -connect "127.0.0.1:$in" -cert "$1.pem" -key "$1.key" -cert_chain "$2" \
	    -CAfile orders/bundle.pem < /dev/null > "sclient-$1.out" 2>&1
	serial=$(openssl x509 -in "$1.pem" -noout -serial | cut -d= -f2)
	wait_for 5 grep -q "\"serial\":\"$serial\".*\"result\":\"unknown_ca\"" "$T_DIR/inbound.log"
	expect_grep "\"serial\":\"$serial\".*\"result\":\"unknown_ca\"" "$T_DIR/inbound.log" \
	    "a certificate chaining only to the removed root is refused as unknown_ca"
}
