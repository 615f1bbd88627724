#!/usr/bin/env bash
# Peers that are not mtls through a root rotation (issue 16 §1; s24).
# ca serve issues 30-second certificates from a root; three agents keep
# certificates fresh: orders (our inbound proxy), shipping (our outbound
# proxies) and peer (the peers' own certificate and bundle). Go
# crypto/tls, Python ssl, GnuTLS, the JDK, Node and curl connect as
# CLIENTS of the inbound proxy with peer/svid.pem and peer/bundle.pem;
# a Go server (files read again at each connection) and gnutls-serv
# (started again at each phase: it reads its files once) are SERVERS
# behind outbound proxies. Each client is a new process per connection,
# so it reads the bundle the agent wrote at that moment. At each phase
# (before, published, switched, retired) every peer must get through;
# after the switch, old-root leaves on one side and new-root leaves on
# the other in both directions; a chain `leaf, cross` of a new-root leaf
# verifies for peers that know only the old root (docs/rotation.md);
# after retire, a client whose chain ends at the old root is refused
# (unknown_ca in our log when it sends that chain; Go and the JDK send
# none: no_client_cert) and the peer reports what it got.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/peers/clients.sh"
P=$(cd "$(dirname "$0")/helpers/peers" && pwd)
H=$(cd "$(dirname "$0")/helpers" && pwd)
cd "$T_DIR"
peers_need gnutls-serv certtool keytool cc
peers_clients_setup
go build -o goverify "$H/goverify.go" 2> go.err || { not_ok "goverify builds" "$(cat go.err)"; exit 0; }
cc -shared -fPIC -o bind_lo.so "$P/bind_lo.c" -ldl || { not_ok "bind_lo.so builds"; exit 0; }
TD=spiffe://example.org/ns/prod/sa
"$MTLS" ca init root --trust-domain example.org > /dev/null
# 30 s: a peer that reads the files once (the JDK's key store, gnutls-serv)
# still holds a valid certificate for 10 s after reading them (under ASan
# a JDK client at 15 s was once refused)
sed -i 's/^default_ttl = .*/default_ttl = 30s/' root/ca.conf
cp root/ca.pem oldroot.pem
# certificates of the old root that outlive the switch: an old-root
# client (peer identity) and an old-root server (orders, localhost);
# revoked before the retirement (proxies load no CRL)
q "$MTLS" ca issue --ca root --spiffe-id "$TD/peer" --ttl 1h --out stalecli
q "$MTLS" ca issue --ca root --spiffe-id "$TD/orders" --dns localhost --ttl 1h --out stalesrv
q "$MTLS" ca issue --ca root --spiffe-id "$TD/shipping" --ttl 1h --out staleship
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --url "$URL"
ca_pid=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
# each agent renews a certificate made with `ca issue` (the renewal keeps
# its names: DNS localhost for the peers' name checks)
for w in orders shipping peer; do
	q "$MTLS" ca issue --ca root --spiffe-id "$TD/$w" --dns localhost --ttl 30s --out "seed-$w"
	q timeout 20 "$MTLS" agent --ca-url "$URL" --cert "seed-$w.pem" --key "seed-$w.key" --ca-bundle root/bundle.pem \
	    --out-dir "$w" --once
	start_bg "agent-$w" "$MTLS" agent --ca-url "$URL" --cert "$w/svid.pem" --key "$w/svid.key" --out-dir "$w"
done
be=$(free_port)
start_bg backend python3 "$H/echo_backend.py" "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
# inproxy NAME CERT KEY CA: an inbound proxy in front of the backend, $IN its port
inproxy() {
	IN=$(free_port)
	start_bg "$1" "$MTLS" proxy --listen "127.0.0.1:$IN" --target "127.0.0.1:$be" --cert "$2" --key "$3" --ca "$4" \
	    --allow "$TD/peer" --log-format json --workers 1
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$1.log" || { not_ok "$1 starts" "$(cat "$T_DIR/$1.log")"; exit 0; }
}
inproxy inbound orders/svid.pem orders/svid.key orders/bundle.pem
in=$IN

# the peers as servers: Go reads its files at each connection; gnutls-serv
# is started again at each phase
gp=$(free_port)
start_bg goserver ./gopeer server -listen "127.0.0.1:$gp" -cert peer/svid.pem -key peer/svid.key -ca peer/bundle.pem \
    -mode require -seconds 400 -reload
wait_for 30 grep -q listening "$T_DIR/goserver.out" || { not_ok "Go server starts" "$(cat "$T_DIR/goserver.log")"; exit 0; }
gnutls_pid=
tp=$(free_port)
# gnutls_start FILE [KEY]: (re)starts gnutls-serv on $tp with the peer's
# bundle. FILE alone is an agent's svid.key: its key and chain, copied
# once, are a pair whatever the agent renews meanwhile (docs/interop.md);
# with KEY, FILE is a certificate that no agent replaces.
gnutls_start() {
	[ -n "$gnutls_pid" ] && kill "$gnutls_pid" 2>/dev/null && wait "$gnutls_pid" 2>/dev/null
	cp peer/bundle.pem gnutls-ca.pem
	if [ $# = 1 ]; then
		svid_split "$1" g.pem g.key
	else
		cp "$1" g.pem && cp "$2" g.key
	fi
	[ "$(openssl x509 -in g.pem -noout -pubkey)" = "$(openssl pkey -in g.key -pubout)" ] ||
	    not_ok "a matching certificate and key from $*"
	LD_PRELOAD="$T_DIR/bind_lo.so" start_bg "gnutlsserver" timeout 400 gnutls-serv -p "$tp" --x509certfile g.pem \
	    --x509keyfile g.key --x509cafile gnutls-ca.pem --require-client-cert --verify-client-cert --http
	gnutls_pid=$BG_PID
	wait_for 15 port_open "$tp" || not_ok "gnutls-serv starts" "$(cat "$T_DIR/gnutlsserver.log")"
}
# outproxy NAME TARGET CERT KEY: an outbound proxy to TARGET, $OUT its port
outproxy() {
	OUT=$(free_port)
	start_bg "$1" "$MTLS" proxy --outbound --listen "127.0.0.1:$OUT" --target "127.0.0.1:$2" --cert "$3" --key "$4" \
	    --ca shipping/bundle.pem --expect "$TD/peer" --log-format json --workers 1
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$1.log" || { not_ok "$1 starts" "$(cat "$T_DIR/$1.log")"; exit 0; }
}
outproxy outgo "$gp" shipping/svid.pem shipping/svid.key
outgo=$OUT
outproxy outgnutls "$tp" shipping/svid.pem shipping/svid.key
outgnutls=$OUT

# servers_ok LABEL [GO_OUT GNUTLS_OUT]: curl through the outbound proxies
# reaches the Go and the GnuTLS server
servers_ok() {
	local o1=${2:-$outgo} o2=${3:-$outgnutls}
	curl -sS --max-time 20 "http://127.0.0.1:$o1/" > s-go.out 2>&1
	grep -q "hello from go, client $TD/" s-go.out && ok "$1: outbound proxy -> Go server" ||
	    not_ok "$1: outbound proxy -> Go server" "$(head -c 300 s-go.out; tail -2 "$T_DIR/goserver.out")"
	[ -z "$o2" ] && return
	curl -sS --max-time 20 "http://127.0.0.1:$o2/" > s-gnutls.out 2>&1
	grep -qE 'HTTP/1\.[01] 200|GnuTLS' s-gnutls.out && ok "$1: outbound proxy -> gnutls-serv" ||
	    not_ok "$1: outbound proxy -> gnutls-serv" "$(head -c 300 s-gnutls.out; tail -3 "$T_DIR/gnutlsserver.log"
	        grep -h '"event":"handshake"' "$T_DIR"/outgnutls*.log | tail -2)"
}
ncerts() { grep -c 'BEGIN CERTIFICATE' "$1"; }
all_hold() { local w; for w in orders shipping peer; do [ "$(ncerts "$w/bundle.pem")" = "$1" ] || return 1; done; }
status() { "$MTLS" ca rotation status --ca root > status.txt 2>&1; }
hup() {	# hup PHASE: reload ca serve, wait for the reload that took PHASE
	kill -HUP "$ca_pid"
	wait_for 10 grep -q "\"event\":\"reload\",\"result\":\"ok\".*\"rotation\":\"$1\"" "$T_DIR/caserve.log"
}
# nreload PROXY: its reloads so far (on each file the agents rewrite)
nreload() { grep -c '"event":"reload"' "$T_DIR/$1.log"; }

# --- before the rotation
peers_clients_ok "before" "$in" peer/svid.pem peer/svid.key peer/bundle.pem "$T_DIR/inbound.log"
gnutls_start peer/svid.key
servers_ok "before"

# --- prepare: what the new root and the cross-certificate look like
expect_exit 0 "rotation prepare" "$MTLS" ca rotation prepare --ca root
cp root/rotation/cross.pem cross.pem
cp root/rotation/new.pem newroot.pem
oldsub=$(openssl x509 -in oldroot.pem -noout -subject -nameopt RFC2253)
newsub=$(openssl x509 -in newroot.pem -noout -subject -nameopt RFC2253)
[ "$oldsub" != "$newsub" ] && ok "the new root's subject differs from the old one's ($newsub)" ||
    not_ok "two roots of one subject name" "$oldsub"
# each peer parses the cross-certificate
./goverify oldroot.pem cross.pem > gv.out 2>&1; expect_grep '^ok' gv.out "Go x509: parses the cross-certificate and verifies it to the old root"
certtool --verify --load-ca-certificate oldroot.pem --infile cross.pem > ct.out 2>&1
expect_grep 'Chain verification output: Verified' ct.out "GnuTLS certtool: verifies the cross-certificate to the old root"
keytool -printcert -file cross.pem > kt.out 2>&1
expect_grep 'PathLen|BasicConstraints' kt.out "Java keytool: prints the cross-certificate"
node -e 'const c=new (require("crypto").X509Certificate)(require("fs").readFileSync(process.argv[1]));
const r=new (require("crypto").X509Certificate)(require("fs").readFileSync(process.argv[2]));
console.log(c.ca && c.verify(r.publicKey) ? "ok" : "fail")' cross.pem oldroot.pem > nd.out 2>&1
expect_grep '^ok' nd.out "Node crypto.X509Certificate: parses the cross-certificate, CA, signed by the old root"
python3 -c 'import ssl,sys; c=ssl.create_default_context(cafile=sys.argv[1]); print("ok", len(c.get_ca_certs()))' \
    cross.pem > py.out 2>&1
expect_grep '^ok 1' py.out "Python ssl: loads the cross-certificate"

# --- publish: the overlap bundle (old root, new root, cross) everywhere
r0=$(nreload inbound)
expect_exit 0 "rotation publish" "$MTLS" ca rotation publish --ca root
hup published && ok "ca serve reloaded: published" || not_ok "reload published" "$(grep reload "$T_DIR/caserve.log")"
wait_for 60 all_hold 3 && ok "the three agents installed the overlap bundle" ||
    not_ok "overlap bundle" "$(tail -n 2 "$T_DIR"/agent-*.log)"
wait_for 40 count_gt "$T_DIR/inbound.log" '"event":"reload"' "$r0" || not_ok "the inbound proxy reloads after the bundle changed"
peers_clients_ok "published" "$in" peer/svid.pem peer/svid.key peer/bundle.pem "$T_DIR/inbound.log"
gnutls_start peer/svid.key
servers_ok "published"
wait_for 60 status && ok "status: switch is safe once the agents reported the overlap bundle" ||
    not_ok "agents report" "$(cat status.txt)"

# --- switch: the agents renew onto the new root
expect_exit 0 "rotation switch" "$MTLS" ca rotation switch --ca root
hup switched && ok "ca serve reloaded: switched" || not_ok "reload switched" "$(grep reload "$T_DIR/caserve.log")"
on_new() { openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 | grep -qF "${newsub#subject=}"; }
wait_for 40 on_new orders/svid.pem && wait_for 40 on_new shipping/svid.pem && wait_for 40 on_new peer/svid.pem &&
    ok "the three agents renewed onto the new root" || not_ok "renewed onto the new root" "$(tail -n 3 "$T_DIR"/agent-*.log)"
peers_clients_ok "switched (new-root leaves both sides)" "$in" peer/svid.pem peer/svid.key peer/bundle.pem "$T_DIR/inbound.log"
gnutls_start peer/svid.key
servers_ok "switched (new-root leaves both sides)"
# an old-root leaf on their side, a new-root leaf on ours
peers_clients_ok "switched (old-root client -> new-root proxy)" "$in" stalecli.pem stalecli.key peer/bundle.pem "$T_DIR/inbound.log"
gnutls_start stalecli.pem stalecli.key
servers_ok "switched (new-root outbound -> old-root servers)" "$outgo" "$outgnutls"
# and the other way round
inproxy inbound-old stalesrv.pem stalesrv.key orders/bundle.pem
peers_clients_ok "switched (new-root client -> old-root proxy)" "$IN" peer/svid.pem peer/svid.key peer/bundle.pem
outproxy outgo-old "$gp" staleship.pem staleship.key
outgo_old=$OUT
outproxy outgnutls-old "$tp" staleship.pem staleship.key
gnutls_start peer/svid.key
servers_ok "switched (old-root outbound -> new-root servers)" "$outgo_old" "$OUT"

# a new-root leaf sent with the cross-certificate: a peer that knows only
# the old root verifies it (docs/rotation.md, "Cross-signing")
q "$MTLS" ca issue --ca root --spiffe-id "$TD/orders" --dns localhost --ttl 10m --out xleaf
cat xleaf.pem cross.pem > xchain.pem
./goverify oldroot.pem xchain.pem localhost > gv.out 2>&1
expect_grep '^ok' gv.out "Go x509: leaf, cross verifies to the old root alone"
certtool --verify --load-ca-certificate oldroot.pem --infile xchain.pem > ct.out 2>&1
expect_grep 'Chain verification output: Verified' ct.out "GnuTLS certtool: leaf, cross verifies to the old root alone"
expect_exit 0 "openssl verify: leaf, cross verifies to the old root alone" openssl verify -CAfile oldroot.pem \
    -untrusted cross.pem xleaf.pem
inproxy inbound-cross xchain.pem xleaf.key orders/bundle.pem
peers_clients_ok "leaf, cross to a peer trusting only the old root" "$IN" peer/svid.pem peer/svid.key oldroot.pem

# an intermediate under the new root: `leaf, intermediate, cross` to a
# peer that knows the old root alone (the cross-certificate had
# pathlen:0: OpenSSL, Go and GnuTLS refused this path)
q "$MTLS" ca intermediate newint --parent root --name newint
q "$MTLS" ca issue --ca newint --spiffe-id "$TD/orders" --dns localhost --ttl 10m --out ileaf
cat ileaf.pem cross.pem > ichain.pem	# ileaf.pem: the leaf, then newint
./goverify oldroot.pem ichain.pem localhost > gv.out 2>&1
expect_grep '^ok' gv.out "Go x509: leaf, intermediate, cross verifies to the old root alone"
certtool --verify --load-ca-certificate oldroot.pem --infile ichain.pem > ct.out 2>&1
expect_grep 'Chain verification output: Verified' ct.out "GnuTLS certtool: leaf, intermediate, cross verifies to the old root alone"
cat newint/ca.pem cross.pem > iuntrusted.pem
expect_exit 0 "openssl verify: leaf, intermediate, cross verifies to the old root alone" openssl verify \
    -CAfile oldroot.pem -untrusted iuntrusted.pem ileaf.pem
inproxy inbound-icross ichain.pem ileaf.key orders/bundle.pem
peers_clients_ok "leaf, intermediate, cross to a peer trusting only the old root" "$IN" peer/svid.pem peer/svid.key oldroot.pem

# --- retire: the old root leaves every bundle
for c in stalecli stalesrv staleship; do q "$MTLS" ca revoke --ca root "$(serial_of "$c.pem")"; done
wait_for 60 status && ok "status: retire is safe once the old root's certificates expired" || not_ok "old certificates drain" "$(cat status.txt)"
r0=$(nreload inbound)
expect_exit 0 "rotation retire" "$MTLS" ca rotation retire --ca root
hup retired && ok "ca serve reloaded: retired" || not_ok "reload retired" "$(grep reload "$T_DIR/caserve.log")"
wait_for 60 all_hold 1 && ok "the three agents dropped the old root from their bundle" ||
    not_ok "final bundle" "$(tail -n 2 "$T_DIR"/agent-*.log)"
# the inbound proxy took the final bundle: a reload after the agents wrote it
wait_for 40 count_gt "$T_DIR/inbound.log" '"event":"reload"' "$r0" || not_ok "the inbound proxy reloads after the final bundle"
peers_clients_ok "retired" "$in" peer/svid.pem peer/svid.key peer/bundle.pem "$T_DIR/inbound.log"
gnutls_start peer/svid.key
servers_ok "retired"
# a client whose certificate chains only to the old root (sent with it):
# Python, GnuTLS, Node and curl send it and our log says unknown_ca; Go
# and the JDK send no certificate at all, since none of theirs is issued
# by a CA our CertificateRequest names (the new root alone): no_client_cert
cat stalecli.pem oldroot.pem > stalechain.pem
stale=$(serial_of stalecli.pem)
for peer in $PEERS; do
	case "$peer" in
	go|java) want='"serial":null.*"result":"no_client_cert"' ;;
	*) want="\"serial\":\"$stale\".*\"result\":\"unknown_ca\"" ;;
	esac
	before=$(grep -c "$want" "$T_DIR/inbound.log")
	peer_client "$peer" "$in" stalechain.pem stalecli.key peer/bundle.pem > "r-$peer.out" 2> "r-$peer.err"
	grep -q '"path"' "r-$peer.out" && not_ok "retired: $peer client with an old-root certificate gets no answer" "$(cat "r-$peer.out")"
	wait_for 10 count_gt "$T_DIR/inbound.log" "$want" "$before" &&
	    ok "retired: $peer client with an old-root chain: refused, $(echo "$want" | sed 's/.*"result":"\([a-z_]*\)"/\1/') in our log" ||
	    not_ok "retired: $peer old-root client refused as $want" "$(tail -2 "$T_DIR/inbound.log")"
	# what the peer itself says: an alert, named
	alert=$(grep -hioE 'fatal alert: [a-z_]+|alert [a-z ]*certificate[a-z ]*|alert \[[0-9]+\]: [a-z ]+|tls: [a-z ]+|bad certificate|broken pipe' \
	    "r-$peer.err" "r-$peer.out" | head -1)
	[ -n "$alert" ] && ok "retired: $peer reports: $alert" || not_ok "retired: $peer reports the refusal" "$(tail -3 "r-$peer.err")"
done
old_b64=$(sed -n '2p' oldroot.pem)
inb=0
for f in root/bundle.pem orders/bundle.pem shipping/bundle.pem peer/bundle.pem; do grep -qF "$old_b64" "$f" && inb=1; done
[ "$inb" = 0 ] && ok "the old root is in no bundle" || not_ok "old root removed" "still in a bundle"
exit 0
