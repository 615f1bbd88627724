#!/usr/bin/env bash
# Who ca serve believes (issue 18, control plane), and whose CA directory
# it uses.
# 1. /v1/renew and /v1/revoke callers: only a certificate this CA issued,
#    byte for byte the one in its inventory. A sibling intermediate under
#    the same root signs a leaf with the serial of a genuine int leaf
#    (serials are public: every CRL, every leaf) and the identity it wants
#    (ns/prod/payments, or the --admin ID); a "twin" intermediate with
#    int's very name signs one with the genuine leaf's serial, subject,
#    names. Each chains to the root; each is a 403
#    unknown_certificate with a log line, and records nothing. The old
#    code (serial lookup only) issued ns/prod/payments and revoked for the
#    forged admin. Genuine renew and revoke still work.
# 2. ca_open refuses a CA directory, ca.key, ca.conf, inventory.db (and
#    the certificates it trusts) that another user owns or that group or
#    others can write: exit 2 naming the file and the fix, nothing issued.
#    ca init makes the directory 0700 and no file writable by others even
#    under umask 000.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca intermediate sib --parent root --name sib
q "$MTLS" ca intermediate twin --parent root --name int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/web --out web
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/victim --out victim
web_serial=$(serial_of web.pem)
victim_serial=$(serial_of victim.pem)
[ "$(openssl x509 -in twin/ca.pem -noout -subject)" = "$(openssl x509 -in int/ca.pem -noout -subject)" ] \
    && ok "setup: the twin intermediate has int's subject name" || not_ok "twin subject" \
    "$(openssl x509 -in twin/ca.pem -noout -subject) vs $(openssl x509 -in int/ca.pem -noout -subject)"

# forge NAME CA_DIR SERIAL SUBJECT SAN: NAME.pem (leaf, then CA_DIR's
# certificate) and NAME.key, signed by CA_DIR's key with SERIAL
forge() {
	local name=$1 ca=$2 serial=$3 subj=$4 san=$5
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
	    -subj "$subj" -out "$name.csr" 2>/dev/null || { echo "setup: csr $name"; exit 1; }
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=%s\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=keyid\n' \
	    "$san" > "$name.ext"
	openssl x509 -req -in "$name.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -set_serial "0x$serial" -days 1 \
	    -extfile "$name.ext" -out "$name.leaf" 2>/dev/null || { echo "setup: sign $name"; exit 1; }
	openssl x509 -in "$ca/ca.pem" > "$name.ca"
	cat "$name.leaf" "$name.ca" > "$name.pem"
}
forge pay sib "$web_serial" /CN=payments URI:spiffe://example.org/ns/prod/payments
forge fadmin sib "$web_serial" /CN=admin URI:spiffe://example.org/admin
forge twinweb twin "$web_serial" "$(openssl x509 -in web.pem -noout -subject -nameopt compat | sed 's/^subject=//')" \
    URI:spiffe://example.org/ns/prod/web
forge twinadmin twin "$victim_serial" /CN=admin URI:spiffe://example.org/admin
# signed with int's own key outside the CA (openssl by hand): never recorded
forge handweb int "$web_serial" /CN=web URI:spiffe://example.org/ns/prod/payments
forge handnew int 7E57AB1E0000000000000000000001 /CN=web URI:spiffe://example.org/ns/prod/payments
[ "$(serial_of pay.leaf)" = "$web_serial" ] && [ "$(serial_of twinweb.leaf)" = "$web_serial" ] \
    && ok "setup: the forgeries carry the serial of a genuine int leaf" || not_ok "forged serial" "$(serial_of pay.leaf)"
[ "$(openssl x509 -in twinweb.leaf -noout -issuer)" = "$(openssl x509 -in web.pem -noout -issuer)" ] \
    && ok "setup: the twin's leaf names int as its issuer" || not_ok "twin issuer" "$(openssl x509 -in twinweb.leaf -noout -issuer)"
expect_exit 0 "setup: the sibling's forgery chains to the root (what the TLS layer accepts)" \
    "$MTLS" cert verify pay.leaf --untrusted pay.ca --ca root/bundle.pem --purpose client

port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --admin spiffe://example.org/admin
log="$T_DIR/caserve.log"
wait_for 20 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
ok "ca serve starts"

rows() { sqlite3 int/inventory.db "SELECT count(*) FROM certs"; }
status_of() { sqlite3 int/inventory.db "SELECT status FROM certs WHERE serial = '$1'"; }
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout new.key -subj /CN=x -out new.csr 2>/dev/null
python3 -c "import json; print(json.dumps({'csr': open('new.csr').read()}))" > renew.json
echo "{\"serial\":\"$victim_serial\"}" > revoke.json
call() {	# call NAME PATH BODY WANT_STATUS WANT_WORD CERT: curl with CERT.pem/CERT.key
	local name=$1 path=$2 body=$3 want=$4 word=$5 cert=$6 got
	got=$(curl -sS --max-time 10 --cacert root/bundle.pem -o resp.json -w '%{http_code}' \
	    --cert "$cert.pem" --key "$cert.key" -H 'Content-Type: application/json' \
	    --data-binary @"$body" "$URL$path" 2>&1)
	if [ "$got" = "$want" ] && grep -q -- "$word" resp.json; then ok "$name: $want $word"
	else not_ok "$name: want $want and '$word'" "$got $(head -c 400 resp.json 2>/dev/null)"; fi
}

# ---- 1. forgeries: 403 unknown_certificate, nothing recorded ----
before=$(rows)
call "renew with the sibling's leaf for ns/prod/payments (a genuine int serial)" /v1/renew renew.json 403 \
    unknown_certificate pay
grep -q 'BEGIN CERTIFICATE' resp.json && not_ok "the forgery got a certificate" "$(head -c 300 resp.json)"
expect_grep '"path":"/v1/renew","status":403.*"code":"unknown_certificate".*not issued by this CA' "$log" \
    "the refusal is a request log line with the code and why"
call "renew with the twin's copy of the web leaf (same serial, subject, names, issuer name)" /v1/renew \
    renew.json 403 unknown_certificate twinweb
call "revoke by the sibling's leaf for the admin ID" /v1/revoke revoke.json 403 unknown_certificate fadmin
call "revoke by the twin's leaf for the admin ID (the victim's serial)" /v1/revoke revoke.json 403 \
    unknown_certificate twinadmin
call "renew with a leaf int's key signed outside the CA, a recorded serial" /v1/renew renew.json 403 \
    "inventory holds another certificate with that serial" handweb
call "renew with a leaf int's key signed outside the CA, an unrecorded serial" /v1/renew renew.json 403 \
    "serial 7E57AB1E0000000000000000000001 was not issued by this CA (not in its inventory)" handnew
[ "$(rows)" = "$before" ] && ok "the forgeries recorded no certificate" || not_ok "inventory rows" "$before -> $(rows)"
[ "$(status_of "$victim_serial")" = valid ] && ok "the forged admin revoked nothing" \
    || not_ok "victim status" "$(status_of "$victim_serial")"
grep -q '"event":"issue"' "$log" && grep '"event":"issue"' "$log" | grep -q payments \
    && not_ok "an issue line for payments" "$(grep payments "$log")" || ok "no certificate was issued for ns/prod/payments"
grep -q '"event":"revoke"' "$log" && not_ok "a revoke line" "$(grep '"event":"revoke"' "$log")" \
    || ok "no revocation was logged"

# ---- genuine callers still work ----
call "the genuine web leaf renews" /v1/renew renew.json 200 certificate web
[ "$(rows)" = $((before + 1)) ] && ok "the renewal recorded one certificate" || not_ok "one more row" "$(rows)"
python3 -c "import json; print(json.load(open('resp.json'))['certificate'])" > renewed.pem 2>/dev/null
openssl x509 -in renewed.pem -noout -ext subjectAltName 2>/dev/null | grep -q 'URI:spiffe://example.org/ns/prod/web' \
    && ok "the renewal is for the presented identity" || not_ok "renewed identity" "$(head -c 300 resp.json)"
call "the genuine admin revokes the victim" /v1/revoke revoke.json 200 '"revoked":true' admin
[ "$(status_of "$victim_serial")" = revoked ] && ok "the victim is revoked" || not_ok "victim" "$(status_of "$victim_serial")"
call "a genuine leaf that is not an admin still gets not_admin" /v1/revoke revoke.json 403 not_admin web
kill -0 "$BG_PID" 2>/dev/null && ok "ca serve still runs" || not_ok "ca serve exited" "$(tail -5 "$log")"

# ---- 2. the CA directory's owner and modes ----
issued() { sqlite3 "$1/inventory.db" "SELECT count(*) FROM certs"; }
refused() {	# refused NAME DIR PATTERN: ca issue and ca serve exit 2 naming it, nothing issued
	local name=$1 dir=$2 pat=$3 n
	n=$(issued "$dir")
	expect_exit 2 "$name: ca issue refuses" "$MTLS" ca issue --ca "$dir" \
	    --spiffe-id spiffe://example.org/ns/prod/x --out "out-$dir"
	expect_grep "$pat" "$T_DIR/err" "$name: ca issue says what and how to fix it"
	[ ! -e "out-$dir.pem" ] && [ ! -e "out-$dir.key" ] && [ "$(issued "$dir")" = "$n" ] \
	    && ok "$name: nothing issued" || not_ok "$name: issued" "$(ls out-* 2>&1) $(issued "$dir")"
	expect_exit 2 "$name: ca serve refuses to start" timeout 20 "$MTLS" ca serve --ca "$dir" \
	    --listen "127.0.0.1:$(free_port)"
	expect_grep "$pat" "$T_DIR/err" "$name: ca serve says what and how to fix it"
	[ ! -e "$dir/serve/server.pem" ] && [ "$(issued "$dir")" = "$n" ] \
	    && ok "$name: ca serve issued nothing" || not_ok "$name: ca serve issued" "$(issued "$dir")"
}
fresh() { rm -rf "$1" && cp -a int "$1" && rm -rf "$1/serve"; }
fresh d777 && chmod 777 d777
refused "CA directory mode 0777" d777 "d777 is writable by others \(mode 777\): chmod go-w d777"
fresh dgrp && chmod 770 dgrp
refused "CA directory mode 0770" dgrp "dgrp is writable by its group \(mode 770\): chmod go-w dgrp"
fresh conf666 && chmod 666 conf666/ca.conf
refused "ca.conf mode 0666" conf666 "conf666/ca.conf is writable by others \(mode 666\): chmod go-w conf666/ca.conf"
fresh key660 && chmod 660 key660/ca.key
refused "ca.key mode 0660" key660 "key660/ca.key is writable by its group"
fresh bundle666 && chmod 666 bundle666/bundle.pem
refused "bundle.pem (whom ca serve trusts) mode 0666" bundle666 "bundle666/bundle.pem is writable by others"
if [ "$(id -u)" = 0 ]; then
	fresh confnobody && chown 65534 confnobody/ca.conf && chmod 666 confnobody/ca.conf
	refused "ca.conf owned by nobody, mode 0666" confnobody \
	    "confnobody/ca.conf belongs to uid 65534, not to this user \(uid 0\): chown 0 confnobody/ca.conf"
	fresh dbnobody && chown 65534 dbnobody/inventory.db
	refused "inventory.db owned by nobody" dbnobody "dbnobody/inventory.db belongs to uid 65534"
	fresh dirnobody && chown 65534 dirnobody
	refused "CA directory owned by nobody" dirnobody "dirnobody belongs to uid 65534"
else
	ok "# skip: files of another user need root to make"
fi
n=$(issued int)
expect_exit 0 "the genuine directory (0700) still issues" "$MTLS" ca issue --ca int \
    --spiffe-id spiffe://example.org/ns/prod/x --out x
[ "$(issued int)" = $((n + 1)) ] && ok "and records it" || not_ok "int issue" "$(issued int)"
expect_exit 2 "ca list refuses a directory writable by others too" "$MTLS" ca list --ca d777
expect_exit 2 "ca intermediate refuses a parent writable by others" "$MTLS" ca intermediate child --parent d777 --name child
[ ! -e child ] && ok "and makes no child directory" || not_ok "child made" "$(ls -la child)"

# ---- ca init under umask 000: still nothing writable by others ----
(umask 000 && "$MTLS" ca init u0 --trust-domain example.org > /dev/null 2> u0.err \
    && "$MTLS" ca intermediate u0int --parent u0 --name u0int > /dev/null 2>> u0.err) \
    || not_ok "ca init/intermediate under umask 000" "$(cat u0.err)"
modes=$(stat -c '%n %a' u0 u0/* u0int u0int/*)
[ "$(stat -c %a u0)" = 700 ] && [ "$(stat -c %a u0int)" = 700 ] && ok "ca init/intermediate make the directory 0700" \
    || not_ok "dir modes" "$modes"
[ "$(stat -c %a u0/ca.key)" = 600 ] && [ "$(stat -c %a u0int/ca.key)" = 600 ] && ok "ca.key is 0600" \
    || not_ok "key modes" "$modes"
bad=$(find u0 u0int \( -perm -020 -o -perm -002 \) -print)
[ -z "$bad" ] && ok "under umask 000 no file is writable by group or others" || not_ok "writable files" "$modes"
expect_exit 0 "and the new CA is usable" "$MTLS" ca issue --ca u0int --spiffe-id spiffe://example.org/ns/prod/u \
    --out u0leaf
exit 0
