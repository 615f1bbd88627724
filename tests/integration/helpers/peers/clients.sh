# The client side of the peer tests, sourced after lib.sh, run in $T_DIR.
# One connection per call, a new process each time (so each reads its
# files then), to a server on 127.0.0.1 that answers HTTP as "localhost":
#   peers_clients_setup                  ./gopeer, the JDK client in jcls/
#   peer_client PEER PORT CERT KEY CA    PEER's client with CERT (the leaf,
#                                        then its chain) and KEY, trusting
#                                        CA; the answer on stdout
#   peers_clients_ok LABEL PORT CERT KEY CA [SERVER_LOG]
#                                        every peer of $PEERS gets the
#                                        backend's answer (echo_backend.py);
#                                        on a failure, SERVER_LOG's last
#                                        handshake line is shown. A KEY
#                                        holding certificates (an agent's
#                                        svid.key) is read once per peer:
#                                        svid_split gives CERT and KEY
#   svid_split FILE PEM KEY              one copy of FILE (an agent's
#                                        svid.key: key, then chain) split
#                                        into PEM and KEY, always a pair
# Peers: Go crypto/tls, Python ssl, GnuTLS (gnutls-cli), JDK 17 (PKCS#12
# from `mtls cert export`), Node tls, curl (OpenSSL).
PEERS="go python gnutls java node curl"
_peers_dir=$_root/tests/integration/helpers/peers

peers_clients_setup() {
	peers_need go java javac node gnutls-cli curl
	peers_gopeer
	# compiled once: a second per connection, not five
	javac -d jcls "$_peers_dir/Client.java" 2> javac.err || { not_ok "Client.java compiles" "$(cat javac.err)"; exit 0; }
	echo changeit > p12.pw
}

peer_client() {
	local peer=$1 p=$2 cert=$3 key=$4 ca=$5
	case "$peer" in
	go) timeout 20 ./gopeer client -connect "127.0.0.1:$p" -name localhost -cert "$cert" -key "$key" -ca "$ca" ;;
	python) timeout 20 python3 "$_peers_dir/pyclient.py" "$p" "$cert" "$key" "$ca" ;;
	gnutls) printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
		timeout 20 gnutls-cli --x509cafile "$ca" --x509certfile "$cert" --x509keyfile "$key" -p "$p" localhost ;;
	java) "$MTLS" cert export --cert "$cert" --key "$key" --format p12 --password-file p12.pw --out cli.p12 \
		    --force > /dev/null 2>&1 || rm -f cli.p12
		timeout 40 java -cp jcls Client localhost "$p" cli.p12 changeit "$ca" ;;
	node) timeout 20 node "$_peers_dir/peer.js" client "$p" "$cert" "$key" "$ca" ;;
	curl) curl -sS --max-time 20 --cacert "$ca" --cert "$cert" --key "$key" \
		    --resolve "localhost:$p:127.0.0.1" "https://localhost:$p/" ;;
	*) echo "peer_client: unknown peer $peer" >&2; return 2 ;;
	esac
}

svid_split() {
	cp "$1" "$2.all" || return 1
	awk '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/' "$2.all" > "$2"
	awk '/-----BEGIN .*PRIVATE KEY-----/,/-----END .*PRIVATE KEY-----/' "$2.all" > "$3"
	rm -f "$2.all"
}

peers_clients_ok() {
	local peer cert=$3 key=$4
	for peer in $PEERS; do
		# svid.pem and svid.key read one after the other may be of two
		# renewals (docs/interop.md): one read of svid.key cannot
		if grep -q 'BEGIN CERTIFICATE' "$4"; then
			svid_split "$4" c-pair.pem c-pair.key
			cert=c-pair.pem key=c-pair.key
		fi
		peer_client "$peer" "$2" "$cert" "$key" "$5" > "c-$peer.out" 2> "c-$peer.err"
		if grep -q '"path": *"/"' "c-$peer.out"; then ok "$1: $peer client gets the app's answer"
		else not_ok "$1: $peer client gets the app's answer" "$(tail -3 "c-$peer.out"; tail -4 "c-$peer.err"
		    [ -n "${6:-}" ] && grep '"event":"handshake"' "$6" | tail -1)"; fi
	done
}
