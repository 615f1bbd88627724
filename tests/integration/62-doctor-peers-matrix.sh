#!/usr/bin/env bash
# mtls doctor connect against each peer as a server (issue 13, section 2):
# Go (RequireAndVerifyClientCert, TLS 1.3), Java (needClientAuth), Node
# (requestCert + rejectUnauthorized), gnutls-serv, and openssl s_server as
# the reference; PKI from mtls ca under a scoped intermediate. For each:
#   healthy: exit 0, result ok, our certificate accepted;
#   the server sends only its leaf: exit 1, chain_incomplete naming the
#       missing intermediate, with the fix;
#   the server never requests a client certificate while we give --cert:
#       exit 1, no_client_cert, "mutual TLS is not happening";
#   we send no certificate to a server that requires one: exit 1,
#       no_client_cert;
#   our client certificate expired: exit 1, the headline is cert_expired
#       with the fix (renew), not the peer's alert, and the refusal is seen
#       (accepted: false, peer_rejected_our_cert), also from Node, which
#       closes without an alert.
# Asserted on `doctor connect --json`.
. "$(dirname "$0")/lib.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
cd "$T_DIR"
peers_need go java node gnutls-serv cc
peers_gopeer
cc -shared -fPIC -o bind_lo.so "$P/bind_lo.c" -ldl || { not_ok "bind_lo.so builds"; exit 0; }

pki_scoped
q "$MTLS" ca issue --ca prod --spiffe-id spiffe://example.org/ns/prod/client --out client
backdated expired URI:spiffe://example.org/ns/prod/client 20200101000000Z 20200201000000Z prod
openssl x509 -in server.pem -out leaf.pem
q openssl pkcs12 -export -in server.pem -inkey server.key -out server.p12 -passout pass:changeit
q openssl pkcs12 -export -in leaf.pem -inkey server.key -out leaf.p12 -passout pass:changeit
ca=root/bundle.pem
secs=150

# three servers per peer: full chain requiring client certificates (R),
# leaf only requiring them (L), full chain never requesting one (N)
declare -A port
for p in go java node gnutls openssl; do for v in R L N; do port[$p$v]=$(free_port); done; done
start_bg goR timeout $secs ./gopeer server -listen "127.0.0.1:${port[goR]}" -cert server.pem -key server.key -ca $ca \
    -mode require -seconds $((secs - 5))
start_bg goL timeout $secs ./gopeer server -listen "127.0.0.1:${port[goL]}" -cert leaf.pem -key server.key -ca $ca \
    -mode require -seconds $((secs - 5))
start_bg goN timeout $secs ./gopeer server -listen "127.0.0.1:${port[goN]}" -cert server.pem -key server.key -ca $ca \
    -mode none -seconds $((secs - 5))
start_bg javaRN timeout $secs java "$P/Server.java" server.p12 changeit $ca $((secs - 5)) "need:${port[javaR]}" \
    "none:${port[javaN]}"
start_bg javaL timeout $secs java "$P/Server.java" leaf.p12 changeit $ca $((secs - 5)) "need:${port[javaL]}"
start_bg nodeR timeout $secs node "$P/peer.js" server "${port[nodeR]}" server.pem server.key $ca $((secs - 5))
start_bg nodeL timeout $secs node "$P/peer.js" server "${port[nodeL]}" leaf.pem server.key $ca $((secs - 5))
start_bg nodeN timeout $secs node "$P/peer.js" server "${port[nodeN]}" server.pem server.key $ca $((secs - 5)) none
gs() {	# gs NAME PORT CERT ARGS...: gnutls-serv on loopback (bind_lo.so)
	local n=$1 p=$2 c=$3
	shift 3
	LD_PRELOAD="$T_DIR/bind_lo.so" start_bg "$n" timeout $secs gnutls-serv -p "$p" --x509certfile "$c" \
	    --x509keyfile server.key --x509cafile $ca --http "$@"
}
gs gnutlsR "${port[gnutlsR]}" server.pem --require-client-cert --verify-client-cert
gs gnutlsL "${port[gnutlsL]}" leaf.pem --require-client-cert --verify-client-cert
gs gnutlsN "${port[gnutlsN]}" server.pem --disable-client-cert
os() {	# os NAME PORT ARGS...: openssl s_server, TLS 1.3 (-cert reads only
	# the leaf of a file: the intermediate is -cert_chain)
	local n=$1 p=$2
	shift 2
	start_bg "$n" timeout $secs openssl s_server -accept "127.0.0.1:$p" -cert leaf.pem -key server.key -CAfile $ca \
	    -tls1_3 -www -naccept 100 "$@"
}
openssl x509 -in prod/ca.pem -out int.pem
os opensslR "${port[opensslR]}" -cert_chain int.pem -Verify 2 -verify_return_error
os opensslL "${port[opensslL]}" -Verify 2 -verify_return_error
os opensslN "${port[opensslN]}" -cert_chain int.pem
for s in goR goL goN javaRN javaL nodeR nodeL nodeN; do
	wait_for 40 grep -q listening "$T_DIR/$s.out" || { not_ok "$s starts" "$(cat "$T_DIR/$s.log")"; exit 0; }
done
for p in gnutls openssl; do for v in R L N; do
	wait_for 15 port_open "${port[$p$v]}" || { not_ok "$p$v starts" "$(cat "$T_DIR/$p$v.log")"; exit 0; }
done; done

# doc NAME PORT WANT_EXIT CHECK ARGS...: doctor connect --json to PORT;
# CHECK is a Python expression over d (the report) and f (the first error
# finding, or {})
doc() {
	local name=$1 p=$2 want=$3 check=$4 rc
	shift 4
	"$MTLS" doctor connect "localhost:$p" --json --timeout 8s "$@" > doc.json 2> doc.err
	rc=$?
	if [ "$rc" = "$want" ] && python3 - doc.json "$check" <<'PY' 2> check.err
import json, sys
d = json.load(open(sys.argv[1]))
f = next((x for x in d.get("findings", []) if x.get("severity") == "error"), {})
# and we never send a fatal alert of our own (OpenSSL 3's decode_error on
# a close without close_notify read as ours)
ours = [x for x in d.get("trace", []) if x.get("dir") == "out" and x.get("msg") == "Alert"
        and "fatal" in x.get("detail", "")]
sys.exit(0 if eval(sys.argv[2]) and not ours else 1)
PY
	then ok "doctor connect: $name"
	else not_ok "doctor connect: $name: want exit $want and $check" "exit $rc: $(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("result", d.get("result"), "client_cert", json.dumps(d.get("client_cert", {}).get("accepted")))
for x in d.get("findings", []): print(x.get("severity"), x.get("code"), x.get("text"), "| fix:", x.get("fix"))
print([x for x in d.get("trace", []) if x.get("msg") == "Alert"])
' doc.json 2>&1 | head -8) $(head -c 300 doc.err)"
	fi
}
mine=(--cert client.pem --key client.key --ca $ca)
for p in go java node gnutls openssl; do
	doc "$p healthy: ok, our certificate accepted" "${port[${p}R]}" 0 \
	    'd["result"] == "ok" and d["client_cert"]["accepted"] is True' "${mine[@]}"
	doc "$p sends only its leaf: chain_incomplete names the intermediate, with the fix" "${port[${p}L]}" 1 \
	    'd["result"] == "chain_incomplete" and f["code"] == "chain_incomplete" and "CN=prod" in f["text"] and "intermediate" in f["fix"]' \
	    "${mine[@]}"
	doc "$p never requests a client certificate while we give --cert: no_client_cert" "${port[${p}N]}" 1 \
	    'd["result"] == "no_client_cert" and f["code"] == "no_client_cert" and "mutual TLS is not happening" in f["text"]' \
	    "${mine[@]}"
	doc "$p requires a client certificate and we send none: no_client_cert" "${port[${p}R]}" 1 \
	    'd["result"] == "no_client_cert" and f["code"] == "no_client_cert"' --ca $ca
	doc "$p and our expired certificate: the headline is cert_expired, with the fix" "${port[${p}R]}" 1 \
	    'd["result"] == "cert_expired" and f["code"] == "cert_expired" and "renew" in f["fix"] and d["client_cert"]["accepted"] is False and any(x["code"] == "peer_rejected_our_cert" for x in d["findings"])' \
	    --cert expired.pem --key expired.key --ca $ca
done
exit 0
