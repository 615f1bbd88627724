#!/usr/bin/env bash
# Peers that are not mtls parse and verify what PKCS#11-made CA keys sign
# (issue 16 §1; s24): `ca init --key-uri` and `ca intermediate --key-uri`
# in SoftHSM2, two chains with the key types crossed: a P-384 root over an
# RSA-3072 intermediate, an RSA-3072 root over a P-384 intermediate (each
# CA signs with the token's key: ECDSA-SHA384 or RSA PKCS#1 v1.5 SHA-256).
# Per chain: Go x509 verify, GnuTLS certtool, Java keytool -printcert,
# Node crypto.X509Certificate, Python ssl load; then a handshake of every
# client peer (Go, Python, GnuTLS, JDK, Node, curl) with a leaf of that
# intermediate to an inbound proxy serving a leaf of it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/peers/clients.sh"
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
peers_need softhsm2-util certtool keytool
MOD=${MTLS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -f "$MOD" ] || { not_ok "SoftHSM2 module $MOD (scripts/deps.sh check)"; exit 0; }
peers_clients_setup
go build -o goverify "$H/goverify.go" 2> go.err || { not_ok "goverify builds" "$(cat go.err)"; exit 0; }
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$T_DIR" > softhsm2.conf
export SOFTHSM2_CONF=$T_DIR/softhsm2.conf
q softhsm2-util --init-token --free --label ca --pin 4321 --so-pin 8765
printf '4321\n' > pin && chmod 600 pin
uri() { echo "pkcs11:token=ca;object=$1?pin-source=file:$T_DIR/pin"; }
TD=spiffe://example.org/ns/prod

be=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
for combo in ec-p384:rsa-3072 rsa-3072:ec-p384; do
	rt=${combo%%:*} it=${combo#*:} r=r-${combo%%:*} i=i-${combo#*:}
	what="$rt root, $it intermediate (token keys)"
	q "$MTLS" ca init "$r" --trust-domain example.org --key-uri "$(uri "$r")" --key-type "$rt"
	q "$MTLS" ca intermediate "$i" --parent "$r" --name "$i" --key-uri "$(uri "$i")" --key-type "$it"
	q "$MTLS" ca issue --ca "$i" --spiffe-id "$TD/server" --dns localhost --out "$i-srv"
	q "$MTLS" ca issue --ca "$i" --spiffe-id "$TD/client" --out "$i-cli"
	cat "$i-srv.pem" "$i/ca.pem" > chain.pem
	./goverify "$r/ca.pem" chain.pem localhost > gv.out 2>&1
	expect_grep '^ok' gv.out "$what: Go x509 verifies leaf, intermediate to the root"
	certtool --verify --load-ca-certificate "$r/ca.pem" --infile chain.pem > ct.out 2>&1
	expect_grep 'Chain verification output: Verified' ct.out "$what: GnuTLS certtool verifies the chain"
	for c in "$r/ca.pem" "$i/ca.pem"; do
		keytool -printcert -file "$c" > kt.out 2>&1
		expect_grep 'Signature algorithm name: (SHA384withECDSA|SHA256withRSA)' kt.out "$what: Java keytool parses $c"
	done
	node -e 'const X=require("crypto").X509Certificate, f=require("fs").readFileSync;
const r=new X(f(process.argv[1])), i=new X(f(process.argv[2]));
console.log(r.ca && i.ca && r.verify(r.publicKey) && i.verify(r.publicKey) ? "ok" : "fail")' "$r/ca.pem" "$i/ca.pem" > nd.out 2>&1
	expect_grep '^ok' nd.out "$what: Node X509Certificate parses both and checks their signatures"
	cat "$r/ca.pem" "$i/ca.pem" > both.pem
	python3 -c 'import ssl,sys; c=ssl.create_default_context(cafile=sys.argv[1]); print("ok", len(c.get_ca_certs()))' \
	    both.pem > py.out 2>&1
	expect_grep '^ok 2' py.out "$what: Python ssl loads both"
	in=$(free_port)
	start_bg "inbound-$i" "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert "$i-srv.pem" \
	    --key "$i-srv.key" --ca "$r/ca.pem" --allow "$TD/client" --log-format json --workers 1
	wait_for 10 grep -q '"event":"start"' "$T_DIR/inbound-$i.log" ||
	    { not_ok "$what: proxy starts" "$(cat "$T_DIR/inbound-$i.log")"; continue; }
	peers_clients_ok "$what: handshake" "$in" "$i-cli.pem" "$i-cli.key" "$r/ca.pem"
done
exit 0
