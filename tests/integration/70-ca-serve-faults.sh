#!/usr/bin/env bash
# ca serve answers a failed enrollment by the kind of its failure, never
# by the words of its message (issue 14): a refusal whose message happens
# to say "token" (the role is named token-clients) is a 403 "refused", not
# a 401 "bad_token", and it burns nothing; the same token then enrolls.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
q "$MTLS" ca init root --trust-domain example.org
cat > root/ca.conf <<'CONF'
[ca]
trust_domain = example.org
[role "token-clients"]
allow = spiffe://example.org/job/* dns:*
key_types = ec-p256
CONF

port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --url "$URL"
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }

"$MTLS" ca token create --ca root --spiffe-id spiffe://example.org/job/a > a.token
openssl req -new -newkey rsa:2048 -nodes -keyout rsa.key -subj /CN=a -out rsa.csr 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -subj /CN=a \
    -out ec.csr 2>/dev/null
python3 - <<'PY'
import json
tok = open("a.token").read().strip()
json.dump({"token": tok, "csr": open("rsa.csr").read()}, open("rsa.json", "w"))
json.dump({"token": tok, "csr": open("ec.csr").read()}, open("ec.json", "w"))
PY
post() {	# post NAME BODY WANT_STATUS WANT_CODE
	local got
	got=$(curl -sS --max-time 10 --cacert root/bundle.pem -o resp.json -w '%{http_code}' \
	    -H 'Content-Type: application/json' --data-binary @"$2" "$URL/v1/enroll" 2>&1)
	if [ "$got" = "$3" ] && js resp.json 'd.get("error", "")' | grep -qx -- "$4"; then
		ok "$1: $3 $4"
	else
		not_ok "$1: want $3 $4" "$got $(head -c 300 resp.json 2>/dev/null)"
	fi
}
post "a key type the role refuses, in a message that says token" rsa.json 403 refused
grep -q "token-clients" resp.json && ok "the refusal names the role" || not_ok "refusal text" "$(cat resp.json)"
[ "$(sqlite3 root/inventory.db "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL")" = 0 ] \
    && ok "the refused request burned no token" || not_ok "token burned by a refusal"
post "the same token with a key the role allows" ec.json 200 ""
post "the token a second time" ec.json 401 bad_token
