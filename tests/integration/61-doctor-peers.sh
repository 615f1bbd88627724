#!/usr/bin/env bash
# mtls doctor connect against peers that are not OpenSSL (issue 13, section
# 3): a healthy JDK TLS 1.3 server that closes with user_canceled then
# close_notify is healthy; a JDK server that never requests a client
# certificate fails the mTLS check when --cert is given; gnutls-serv, which
# answers access_denied to any verification failure, with our certificate
# expired: the headline is our cert_expired.
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
cd "$T_DIR"
for t in java gnutls-serv cc; do
	command -v "$t" >/dev/null || { not_ok "peer $t installed (scripts/deps.sh check)"; exit 0; }
done
pki_pair
q "$MTLS" ca init other --trust-domain other.org
q "$MTLS" ca issue --ca other --spiffe-id spiffe://other.org/x --out foreign
backdated expired URI:spiffe://example.org/ns/prod/client 20200101000000Z 20200201000000Z
q openssl pkcs12 -export -in server.pem -inkey server.key -out server.p12 -passout pass:changeit

# doc NAME WANT_EXIT WANT_RESULT PATTERN ARGS...: mtls doctor connect
doc() {
	local name=$1 want=$2 code=$3 words=$4 rc
	shift 4
	"$MTLS" doctor connect --timeout 5s "$@" > out.txt 2>&1
	rc=$?
	if [ "$rc" = "$want" ] && grep -q "^result: $code\$" out.txt && grep -qE -- "$words" out.txt; then
		ok "doctor connect: $name ($code)"
	else
		not_ok "doctor connect: $name: want exit $want, $code, /$words/" "exit $rc; $(tail -14 out.txt)"
	fi
}
mine=(--cert client.pem --key client.key --ca root/bundle.pem)

# the JDK
jneed=$(free_port) jnone=$(free_port)
start_bg java timeout 60 java "$P/Server.java" server.p12 changeit root/bundle.pem 55 "need:$jneed" "none:$jnone"
wait_for 30 grep -q listening "$T_DIR/java.out" || { not_ok "java server starts" "$(cat "$T_DIR/java.log")"; exit 0; }
doc "healthy JDK TLS 1.3 server (user_canceled then close_notify)" 0 ok \
    "Alert +warning user_canceled" "localhost:$jneed" "${mine[@]}"
grep -q "accepted by the server: yes" out.txt && ok "doctor says the JDK accepted our certificate" \
    || not_ok "doctor says the JDK accepted our certificate" "$(cat out.txt)"
doc "healthy JDK server, no GET" 0 ok "accepted by the server: yes" "localhost:$jneed" "${mine[@]}" --no-http
doc "the JDK refuses a certificate from another CA" 1 peer_rejected_our_cert "alert" \
    "localhost:$jneed" --cert foreign.pem --key foreign.key --ca root/bundle.pem
doc "--cert and a JDK server that never requests one" 1 no_client_cert \
    "mutual TLS is not happening.*|setNeedClientAuth" "localhost:$jnone" "${mine[@]}"
doc "no --cert and a JDK server that never requests one" 0 ok \
    "this is TLS, not" "localhost:$jnone" --ca root/bundle.pem

# GnuTLS: gnutls-serv cannot be given an address; bind_lo.so keeps it on loopback
cc -shared -fPIC -o bind_lo.so "$P/bind_lo.c" -ldl || { not_ok "build bind_lo.so"; exit 0; }
g=$(free_port)
LD_PRELOAD="$T_DIR/bind_lo.so" start_bg gnutls timeout 60 gnutls-serv -p "$g" --x509certfile server.pem \
    --x509keyfile server.key --x509cafile root/bundle.pem --require-client-cert --verify-client-cert --http
wait_for 15 port_open "$g" || { not_ok "gnutls-serv starts" "$(cat "$T_DIR/gnutls.log")"; exit 0; }
if ss -ltn 2>/dev/null | grep -E ":$g\b" | grep -vqE '127\.0\.0\.1:|\[::1\]:'; then
	not_ok "gnutls-serv listens on loopback only" "$(ss -ltn | grep ":$g")"
else
	ok "gnutls-serv listens on loopback only"
fi
doc "healthy gnutls-serv" 0 ok "accepted by the server: yes" "localhost:$g" "${mine[@]}"
doc "gnutls-serv and our expired certificate: ours is the headline" 1 cert_expired \
    "alert access_denied" "localhost:$g" --cert expired.pem --key expired.key --ca root/bundle.pem
grep -A3 "ERROR cert_expired" out.txt | grep -q "fix: renew" && ok "the headline has the fix (renew)" \
    || not_ok "the headline has the fix (renew)" "$(cat out.txt)"
grep -q "because of the finding above (cert_expired)" out.txt && ok "the refusal points at our finding" \
    || not_ok "the refusal points at our finding" "$(cat out.txt)"
exit 0
