#!/usr/bin/env bash
# CRLs are checked before they are installed (issue 18, item 2). A proxy
# fetching its CRL by --crl-url from a swappable HTTPS server, client A
# revoked, client B not: a CRL under the issuer's name signed by another
# key, an older valid CRL (lower number, without A), an expired one and
# one not valid yet are each refused with a crl_rejected line and a count
# in mtls_crl_rejected_total, and the previous CRL stays (A refused as
# revoked, B served); a newer CRL still installs. The same for a --crl file
# rewritten under a running proxy; at start a bad CRL (file or URL) is an
# error naming the source and the reason. mtls cert verify refuses a forged
# CRL whose issuer it knows.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/ocrl.sh"
cd "$T_DIR"
pki_pair
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/a --out a
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/b --out b
q "$MTLS" ca crl --ca int --out old.pem		# CRL number n: nothing revoked
q "$MTLS" ca revoke --ca int "$(serial_of a.pem)"
q "$MTLS" ca crl --ca int --out good.pem	# n+1: A revoked
q "$MTLS" ca init other --trust-domain example.org --name "Other Root"
q "$MTLS" ca crl --ca other --out other.pem	# an issuer the proxy does not trust

# ocrl (helpers/ocrl.sh) OUT CERT KEY: an empty CRL signed with KEY under
# CERT's name, numbered above mtls ca's (so that only the flaw made on
# purpose can refuse it). Installed, it would let A in.
# a CA with int's exact name and another key: what an attacker can make
subj=$(openssl x509 -in int/ca.pem -noout -subject -nameopt compat | sed 's/^subject=//')
q openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout evil.key -subj "$subj" \
    -days 30 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out evil.pem
ocrl forged.pem evil.pem evil.key
ocrl expired.pem int/ca.pem int/ca.key -crl_lastupdate 20200101000000Z -crl_nextupdate 20200108000000Z
ocrl future.pem int/ca.pem int/ca.key -crl_lastupdate 20990101000000Z -crl_nextupdate 20990108000000Z

mkdir www && echo "hello" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }

# ---- start: a bad CRL stops it, naming the source and the reason ----
pp=$(free_port)
startup() {	# startup NAME REASON SOURCE PROXY_ARGS...: exit 2, stderr names both
	local name=$1 reason=$2 src=$3
	shift 3
	expect_exit 2 "start with $name: refused" timeout 20 "$MTLS" proxy --listen "127.0.0.1:$pp" \
	    --target "127.0.0.1:$be" --cert server.pem --key server.key --ca root/bundle.pem \
	    --allow 'spiffe://example.org/ns/prod/*' --workers 1 "$@"
	grep -q "$reason" "$T_DIR/err" && grep -qF "$src" "$T_DIR/err" && ok "start with $name: says $reason and $src" \
	    || not_ok "start with $name: says $reason and $src" "$(cat "$T_DIR/err")"
}
startup "a forged --crl file" crl_bad_signature forged.pem --crl forged.pem
startup "an expired --crl file" crl_expired expired.pem --crl expired.pem
startup "a --crl file not valid yet" crl_not_yet_valid future.pem --crl future.pem
startup "a CRL from a CA not in --ca" crl_unknown_issuer other.pem --crl other.pem
cat good.pem forged.pem > both.pem
startup "a file with a good CRL and a forged one" crl_bad_signature both.pem --crl both.pem

# ---- --crl-url: the HTTPS server serves served.crl, swapped by rename ----
cp good.pem served.crl
cp_=$(free_port)
start_bg crlsrv python3 "$_root/tests/integration/helpers/crl_server.py" "$cp_" server.pem server.key "$T_DIR/served.crl"
wait_for 10 port_open "$cp_" || { not_ok "CRL server starts" "$(cat "$T_DIR/crlsrv.log")"; exit 0; }
curl_url="https://localhost:$cp_/crl"
cp forged.pem served.crl
startup "a forged CRL at --crl-url" crl_bad_signature "$curl_url" --crl-url "$curl_url"
cp good.pem served.crl

adm=$(free_port)
start_bg px "$MTLS" proxy --listen "127.0.0.1:$pp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --crl-url "$curl_url" --crl-refresh 1s \
    --admin "127.0.0.1:$adm" --workers 1
wait_for 15 grep -q '"event":"start"' "$T_DIR/px.log" || { not_ok "proxy with --crl-url starts" "$(cat "$T_DIR/px.log")"; exit 0; }
ok "proxy with --crl-url starts"

get() {	# get CLIENT PORT: the body through the proxy, or nothing
	curl -sS --max-time 10 --cacert root/bundle.pem --cert "$1.pem" --key "$1.key" \
	    "https://localhost:$2/hello.txt" 2>/dev/null
}
# state LOG PORT WHAT: A refused and logged revoked, B served
state() {
	local log=$1 port=$2 what=$3 before
	before=$(grep -c '"result":"revoked"' "$log")
	[ -z "$(get a "$port")" ] && wait_for 5 count_gt "$log" '"result":"revoked"' "$before" && ok "$what: A still refused as revoked" \
	    || not_ok "$what: A still refused as revoked" "$(grep '"event":"handshake"' "$log" | tail -2)"
	[ "$(get b "$port")" = hello ] && ok "$what: B still served" \
	    || not_ok "$what: B still served" "$(grep '"event":"handshake"' "$log" | tail -2)"
}
state "$T_DIR/px.log" "$pp" "the first CRL"

swap() { cp "$1" swap.tmp && mv swap.tmp "$2"; }
metric() {	# metric ADMIN_PORT REASON: mtls_crl_rejected_total for REASON
	curl -sS --max-time 5 "http://127.0.0.1:$1/metrics" | sed -n "s/^mtls_crl_rejected_total{reason=\"$2\"} //p"
}
# refused_url FILE REASON WHAT: serve FILE; a crl_rejected line with REASON
# and the URL, counted; the previous CRL stays
refused_url() {
	local file=$1 reason=$2 what=$3 n
	swap "$file" served.crl
	if wait_for 20 count_gt "$T_DIR/px.log" "\"event\":\"crl_rejected\".*\"reason\":\"$reason\"" 0; then
		grep '"event":"crl_rejected"' "$T_DIR/px.log" | grep "\"reason\":\"$reason\"" | grep -qF "\"url\":\"$curl_url\"" \
		    && ok "$what: crl_rejected reason $reason, with the URL" || not_ok "$what: line names the URL" \
		    "$(grep crl_rejected "$T_DIR/px.log" | tail -1)"
	else
		not_ok "$what: crl_rejected reason $reason" "$(grep -E 'crl_|reload' "$T_DIR/px.log" | tail -3)"
	fi
	n=$(metric "$adm" "$reason")
	[ "${n:-0}" -ge 1 ] 2>/dev/null && ok "$what: mtls_crl_rejected_total{reason=\"$reason\"} $n" \
	    || not_ok "$what: metric $reason" "$(curl -sS --max-time 5 "http://127.0.0.1:$adm/metrics" | grep crl)"
	state "$T_DIR/px.log" "$pp" "$what"
}
refused_url forged.pem crl_bad_signature "a forged CRL at the URL"
refused_url old.pem crl_rollback "an older CRL at the URL"
refused_url expired.pem crl_expired "an expired CRL at the URL"
refused_url future.pem crl_not_yet_valid "a CRL not valid yet at the URL"
refused_url other.pem crl_unknown_issuer "a CRL from an unknown CA at the URL"

# a newer valid CRL still installs: B revoked too
q "$MTLS" ca revoke --ca int "$(serial_of b.pem)"
q "$MTLS" ca crl --ca int --out newer.pem
reloads=$(grep -c '"event":"reload".*"result":"ok"' "$T_DIR/px.log")
swap newer.pem served.crl
wait_for 20 count_gt "$T_DIR/px.log" '"event":"reload".*"result":"ok"' "$reloads" && [ -z "$(get b "$pp")" ] \
    && ok "a newer CRL from the URL installs: B refused" || not_ok "newer CRL installs" "$(tail -3 "$T_DIR/px.log")"

# ---- --crl file rewritten under a running proxy (watch and SIGHUP) ----
mkdir live && cp good.pem live/crl.pem
fp=$(free_port) fadm=$(free_port)
start_bg pf "$MTLS" proxy --listen "127.0.0.1:$fp" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow 'spiffe://example.org/ns/prod/*' --crl live/crl.pem --admin "127.0.0.1:$fadm" \
    --workers 1
PF=$BG_PID
wait_for 15 grep -q '"event":"start"' "$T_DIR/pf.log" || { not_ok "proxy with --crl starts" "$(cat "$T_DIR/pf.log")"; exit 0; }
state "$T_DIR/pf.log" "$fp" "--crl file at start"
refused_file() {	# refused_file FILE REASON WHAT
	local file=$1 reason=$2 what=$3 before n
	before=$(grep -c "\"event\":\"crl_rejected\".*\"reason\":\"$reason\"" "$T_DIR/pf.log")
	swap "$file" live/crl.pem
	kill -HUP "$PF"
	if wait_for 20 count_gt "$T_DIR/pf.log" "\"event\":\"crl_rejected\".*\"reason\":\"$reason\"" "$before"; then
		grep '"event":"crl_rejected"' "$T_DIR/pf.log" | tail -1 | grep -q '"file":"live/crl.pem"' \
		    && ok "$what: crl_rejected reason $reason, with the file" || not_ok "$what: line names the file" \
		    "$(grep crl_rejected "$T_DIR/pf.log" | tail -1)"
	else
		not_ok "$what: crl_rejected reason $reason" "$(grep -E 'crl_|reload' "$T_DIR/pf.log" | tail -3)"
	fi
	n=$(metric "$fadm" "$reason")
	[ "${n:-0}" -ge 1 ] 2>/dev/null && ok "$what: counted ($n)" || not_ok "$what: counted"
	state "$T_DIR/pf.log" "$fp" "$what"
}
refused_file old.pem crl_rollback "an older --crl file"
refused_file forged.pem crl_bad_signature "a forged --crl file"
refused_file expired.pem crl_expired "an expired --crl file"
echo "not a CRL" > garbage.pem
refused_file garbage.pem crl_malformed "a --crl file that is no CRL"
reloads=$(grep -c '"event":"reload".*"result":"ok"' "$T_DIR/pf.log")
swap newer.pem live/crl.pem
kill -HUP "$PF"
wait_for 20 count_gt "$T_DIR/pf.log" '"event":"reload".*"result":"ok"' "$reloads" && [ -z "$(get b "$fp")" ] \
    && ok "a newer --crl file installs: B refused" || not_ok "newer --crl file" "$(tail -3 "$T_DIR/pf.log")"

# ---- mtls cert verify: a forged CRL of a CA it knows is an input error ----
expect_exit 2 "cert verify --crl forged (issuer known by --untrusted): refused" "$MTLS" cert verify b.pem \
    --ca root/bundle.pem --untrusted int/ca.pem --crl forged.pem
expect_grep 'forged.pem: CRL signature does not verify' "$T_DIR/err" "cert verify names the file and the signature"
expect_exit 1 "cert verify --crl expired: revoked" "$MTLS" cert verify a.pem --ca root/bundle.pem --crl expired.pem
expect_grep 'revocation status .* is unknown \(CRL has expired\)' "$T_DIR/out" \
    "an expired CRL in use refuses as revoked, saying the status is unknown because the CRL expired"
# the skew (300 s either way, as for OCSP) holds in verification too: a CRL
# the proxy would admit is honoured, not refused as expired or not yet valid
ago() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
ocrl lapsed.pem int/ca.pem int/ca.key -crl_lastupdate "$(ago '-1 day')" -crl_nextupdate "$(ago '-100 sec')"
ocrl early.pem int/ca.pem int/ca.key -crl_lastupdate "$(ago '+100 sec')" -crl_nextupdate "$(ago '+1 day')"
expect_exit 0 "cert verify: a CRL 100 s past its nextUpdate is still current (skew)" "$MTLS" cert verify b.pem \
    --ca root/bundle.pem --crl lapsed.pem
expect_exit 0 "cert verify: a CRL whose thisUpdate is 100 s ahead is current (skew)" "$MTLS" cert verify b.pem \
    --ca root/bundle.pem --crl early.pem
