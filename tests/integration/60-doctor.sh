#!/usr/bin/env bash
# mtls doctor against deliberately broken setups on real servers (mtls
# proxy, nginx, openssl s_server, a plain HTTP server): each case asserts
# the exit code, the taxonomy code and the key words of the fix. Then
# `doctor files` offline and `doctor serve` with curl clients.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_pair
pki_bad_clients
backdated srvexpired DNS:localhost 20200101000000Z 20200201000000Z
backdated srvfuture DNS:localhost 20400101000000Z 20410101000000Z
openssl x509 -in server.pem -out server_leaf.pem
openssl x509 -in client.pem -out client_leaf.pem
openssl x509 -in int/ca.pem -out int1.pem

# has_words WORDS: adds to $miss the words of WORDS (|-separated, each an
# extended regex, any case) that out.txt lacks, its lines joined into one
has_words() {
	local w flat
	flat=$(tr -s ' \n' '  ' < out.txt)
	IFS='|' read -ra ws <<< "$1"
	for w in "${ws[@]}"; do
		[ -n "$w" ] && ! grep -Eiq -- "$w" <<< "$flat" && miss="$miss [$w]"
	done
}
# doc SUB NAME EXIT CODE WORDS ARGS...: `mtls doctor SUB ARGS` exits EXIT,
# its result line is CODE, and its output has every word of WORDS
doc() {
	local sub=$1 name=$2 want=$3 code=$4 words=$5 rc miss="" extra=()
	shift 5
	[ "$sub" = connect ] && extra=(--timeout 5s)
	"$MTLS" doctor "$sub" "${extra[@]}" "$@" > out.txt 2>&1
	rc=$?
	has_words "$words"
	if [ "$rc" = "$want" ] && grep -q "^result: $code\$" out.txt && [ -z "$miss" ]; then
		ok "doctor $sub: $name ($code)"
	else
		not_ok "doctor $sub: $name: want exit $want, $code${miss:+, missing$miss}" "exit $rc; $(tail -12 out.txt)"
	fi
}

# servers: a backend, an mtls inbound proxy, nginx, s_server variants
mkdir www && echo hello > www/index.html
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
px=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$px" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --workers 1
wait_for 10 grep -q '"event":"start"' "$T_DIR/proxy.log" || { not_ok "proxy starts" "$(cat "$T_DIR/proxy.log")"; exit 0; }
ng=$(free_port)
start_nginx_mtls "$ng" 'return 200 "ok\n";' "ssl_crl $T_DIR/crl.pem;"
sserver() {	# sserver NAME PORT ARGS...: openssl s_server -www on 127.0.0.1:PORT
	local name=$1 port=$2
	shift 2
	start_bg "$name" openssl s_server -accept "127.0.0.1:$port" -www -quiet "$@"
	wait_for 10 port_open "$port" || not_ok "s_server $name starts" "$(cat "$T_DIR/$name.log")"
}
tlsonly=$(free_port); sserver tlsonly "$tlsonly" -cert server_leaf.pem -key server.key -cert_chain int1.pem
leafonly=$(free_port); sserver leafonly "$leafonly" -cert server_leaf.pem -key server.key -Verify 2 -CAfile root/bundle.pem
expsrv=$(free_port); sserver expsrv "$expsrv" -cert srvexpired.pem -key srvexpired.key
futsrv=$(free_port); sserver futsrv "$futsrv" -cert srvfuture.pem -key srvfuture.key
p384=$(free_port); sserver p384 "$p384" -cert server_leaf.pem -key server.key -cert_chain int1.pem -groups P-384
tls12=$(free_port); sserver tls12 "$tls12" -cert server_leaf.pem -key server.key -cert_chain int1.pem -tls1_2
mine=(--cert client.pem --key client.key --ca root/bundle.pem)

# healthy
doc connect "a healthy mTLS server" 0 ok "CertificateRequest|accepted by the server: yes|verifies to the root" \
    "localhost:$px" "${mine[@]}"
doc connect "a healthy TLS-only server" 0 ok "does not request a client certificate" "localhost:$tlsonly" \
    --ca root/bundle.pem
grep -q -- "-> ClientHello" out.txt && grep -q -- "<- ServerHello" out.txt && grep -q -- "<- Finished" out.txt \
    && ok "doctor: the trace shows the messages both ways" || not_ok "trace" "$(head -20 out.txt)"
doc connect "the TLS 1.2 flow is traced" 0 ok "ServerKeyExchange|ServerHelloDone|ClientKeyExchange|ChangeCipherSpec" \
    "localhost:$tls12" --ca root/bundle.pem
# with --cert the question is mTLS: a server that never asks fails it
doc connect "--cert and a server that never requests one" 1 no_client_cert \
    "mutual TLS is not happening|RequireAndVerifyClientCert" "localhost:$tlsonly" "${mine[@]}"

# the server's side is wrong
doc connect "server sends its leaf without the intermediate" 1 chain_incomplete "CN=int|intermediate|full chain" \
    "localhost:$leafonly" "${mine[@]}"
doc connect "server certificate from a CA we do not trust" 1 unknown_ca "example.org Root CA|needs the root|trust bundle" \
    "localhost:$px" --cert client.pem --key client.key --ca other/bundle.pem
doc connect "server certificate expired" 1 cert_expired "expired .* ago|renew" "localhost:$expsrv" --ca root/bundle.pem
doc connect "server certificate not yet valid" 1 cert_not_yet_valid "not valid for another|clock" "localhost:$futsrv" \
    --ca root/bundle.pem
doc connect "server identity is not the expected one" 1 identity_mismatch "ns/prod/other|ns/prod/server" \
    "localhost:$px" "${mine[@]}" --expect spiffe://example.org/ns/prod/other
doc connect "server answers another name than the one dialled" 1 identity_mismatch "dns:wrong.example|localhost" \
    "127.0.0.1:$px" "${mine[@]}" --servername wrong.example

# nothing in common
doc connect "no shared group" 1 no_shared_algorithm "group P-384|offer that group" "localhost:$p384" "${mine[@]}" \
    --groups X25519:P-256
doc connect "RSA-only client against an ECDSA-only server" 1 no_shared_algorithm "signature algorithm ECDSA" \
    "localhost:$px" "${mine[@]}" --sigalgs rsa_pss_rsae_sha256:RSA+SHA256
doc connect "no shared version" 1 protocol_version "TLS 1.2|--min-tls" "localhost:$tls12" "${mine[@]}" --min-tls 1.3

# the server refuses us
doc connect "mTLS server, no client certificate given" 1 no_client_cert "requires a client certificate|--cert" \
    "localhost:$px" --ca root/bundle.pem
doc connect "nginx, no client certificate given (it answers 400)" 1 no_client_cert "No required SSL certificate" \
    "localhost:$ng" --ca root/bundle.pem
doc connect "nginx refuses a certificate from another CA (400)" 1 peer_rejected_our_cert "SSL certificate error|error log" \
    "localhost:$ng" --cert foreign.pem --key foreign.key --ca root/bundle.pem
doc connect "nginx refuses an expired certificate, and we say ours expired" 1 cert_expired \
    "SSL certificate error|our leaf .* expired|because of the finding above" "localhost:$ng" --cert expired.pem --key expired.key --ca root/bundle.pem
# a server that says why with its alert (openssl s_server -verify_return_error)
strict=$(free_port)
sserver strict "$strict" -cert server_leaf.pem -key server.key -cert_chain int1.pem -Verify 2 -verify_return_error \
    -CAfile root/bundle.pem -crl_check -CRLform PEM -CRL crl.pem
doc connect "the server's alert: unknown_ca" 1 peer_rejected_our_cert "alert unknown_ca|does not trust the CA" \
    "localhost:$strict" --cert foreign.pem --key foreign.key --ca root/bundle.pem
doc connect "the server's alert: certificate_expired" 1 cert_expired "alert certificate_expired|renew" \
    "localhost:$strict" --cert expired.pem --key expired.key --ca root/bundle.pem
doc connect "the server's alert: certificate_revoked" 1 peer_rejected_our_cert "alert certificate_revoked|revoked" \
    "localhost:$strict" --cert revoked.pem --key revoked.key --ca root/bundle.pem
doc connect "the server's alert: certificate_required" 1 no_client_cert "certificate_required|--cert" \
    "localhost:$strict" --ca root/bundle.pem
doc connect "mtls proxy refuses an identity it does not allow (bad_certificate)" 1 peer_rejected_our_cert \
    "alert bad_certificate|does not authorize" "localhost:$px" --cert intruder.pem --key intruder.key --ca root/bundle.pem

# not TLS, nothing there
doc connect "plain HTTP on the port" 1 not_tls "plain HTTP|http://" "localhost:$be"
dead=$(free_port)
doc connect "nothing listens" 1 connect_failed "refused|start the server" "127.0.0.1:$dead"
doc connect "the name does not resolve" 1 connect_failed "resolve|host name" "nosuch.invalid:443"
silent=$(free_port)
start_bg silent python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $silent)); s.listen(8)
c = [s.accept()[0] for _ in range(2)]
time.sleep(30)"
wait_for 10 port_open "$silent"
doc connect "a server that never answers" 1 handshake_timeout "no complete answer" "127.0.0.1:$silent" --timeout 2s

# --json has the same facts
"$MTLS" doctor connect --json "localhost:$leafonly" "${mine[@]}" > doc.json
python3 - doc.json <<'PY' && ok "doctor --json: result, trace, chain and findings" || not_ok "doctor --json" "$(head -c 600 doc.json)"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["result"] == "chain_incomplete", r["result"]
assert any(t["msg"] == "ServerHello" and t["dir"] == "in" for t in r["trace"])
assert len(r["server_chain"]) == 1 and r["client_cert"]["requested"] is True
assert any(f["code"] == "chain_incomplete" and "intermediate" in f["fix"] for f in r["findings"])
PY
expect_exit 2 "doctor connect: a bad target is a usage error" "$MTLS" doctor connect nocolon
expect_exit 2 "doctor connect: an unreadable --cert is a usage error" "$MTLS" doctor connect "localhost:$px" \
    --cert /nonexistent --key client.key

# ---- doctor files ----
doc files "a good chain and key" 0 ok "key matches|verifies to the root" --cert client.pem --key client.key \
    --ca root/bundle.pem --purpose client
doc files "a key that does not match" 1 problem "does not match" --cert client.pem --key server.key
doc files "a leaf without its intermediate" 1 chain_incomplete "intermediate" --cert server_leaf.pem --ca root/bundle.pem
cat int1.pem server_leaf.pem > reversed.pem
doc files "a chain out of order" 0 ok "out of order|leaf first" --cert reversed.pem
cat server.pem int1.pem > dup.pem
doc files "a duplicate certificate" 0 ok "twice|remove" --cert dup.pem
doc files "an expired certificate" 1 cert_expired "expired" --cert expired.pem --ca root/bundle.pem
doc files "a certificate from another CA" 1 unknown_ca "Other Root|trust" --cert foreign.pem --ca root/bundle.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out weak.key 2>/dev/null
openssl req -new -key weak.key -subj /CN=weak -out weak.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:weak.example.org\n' > weak.ext
openssl x509 -req -in weak.csr -CA int1.pem -CAkey int/ca.key -CAcreateserial -days 2 -extfile weak.ext -out weak1.pem 2>/dev/null
cat weak1.pem int1.pem > weak.pem
doc files "a 1024-bit RSA key" 1 weak_key_or_signature "1024-bit|P-256" --cert weak.pem
openssl req -new -key client.key -subj /CN=cli -out cli.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:cli.example.org\n' > cli.ext
openssl x509 -req -in cli.csr -CA int1.pem -CAkey int/ca.key -CAcreateserial -days 2 -extfile cli.ext -out cli1.pem 2>/dev/null
cat cli1.pem int1.pem > cli.pem
doc files "clientAuth only, checked as a server" 1 bad_key_usage "serverAuth" --cert cli.pem --purpose server
doc files "clientAuth only, checked as a client" 0 ok "" --cert cli.pem --purpose client --ca root/bundle.pem
openssl req -new -key client.key -subj /CN=long -out long.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=DNS:long.example.org\n' > long.ext
openssl x509 -req -in long.csr -CA int1.pem -CAkey int/ca.key -CAcreateserial -days 3650 -extfile long.ext -out long1.pem 2>/dev/null
cat long1.pem int1.pem > long.pem
doc files "a certificate that outlives its issuer" 0 ok "outlives its issuer" --cert long.pem
expect_exit 2 "doctor files: an unreadable file is a usage error" "$MTLS" doctor files --cert /nonexistent

# ---- doctor serve: point clients at it, read what is wrong ----
ds=$(free_port)
start_bg dserve "$MTLS" doctor serve --listen "127.0.0.1:$ds" --ca root/bundle.pem --cert server.pem --key server.key
wait_for 10 grep -q '"event":"start"' "$T_DIR/dserve.log" || not_ok "doctor serve starts" "$(cat "$T_DIR/dserve.log")"
served() {	# served NAME RESULT WORDS CURL_ARGS...
	local name=$1 code=$2 words=$3 body
	shift 3
	body=$(curl -sS --max-time 10 --cacert root/bundle.pem "$@" "https://localhost:$ds/" 2>&1)
	if grep -q "^result: $code\$" <<< "$body" && grep -Eiq -- "$words" <<< "$body"; then
		ok "doctor serve: $name ($code)"
	else
		not_ok "doctor serve: $name: want $code and '$words'" "$(tail -8 <<< "$body")"
	fi
}
served "a good chain" ok "verifies to the root" --cert client.pem --key client.key
served "a leaf without its intermediate" chain_incomplete "intermediate" --cert client_leaf.pem --key client.key
served "an expired certificate" cert_expired "expired" --cert expired.pem --key expired.key
served "no certificate" no_client_cert "sent no certificate"
json=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert foreign.pem --key foreign.key "https://localhost:$ds/json")
python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert r['result']=='unknown_ca', r['result']" "$json" \
    && ok "doctor serve: /json gives the report (unknown_ca)" || not_ok "doctor serve /json" "$json"
wait_for 5 count_gt "$T_DIR/dserve.log" '"event":"doctor"' 4 && grep -q '"result":"cert_expired"' "$T_DIR/dserve.log" \
    && ok "doctor serve: each client is logged with its result" || not_ok "doctor serve log" "$(tail -3 "$T_DIR/dserve.log")"
exit 0
