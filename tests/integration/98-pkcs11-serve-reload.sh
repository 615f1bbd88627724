#!/usr/bin/env bash
# `ca serve` with its CA key in a PKCS#11 token (SoftHSM2) reloads its CA
# snapshot on SIGHUP: a PIN file replaced since the login has its PIN
# checked without logging out (C_SetPIN to itself, keystore.c), as the
# proxy's reload does. The right PIN: the reload succeeds and the new
# snapshot signs in the token. A wrong PIN: the reload fails with one log
# line naming the file (never the PIN) and the old snapshot keeps issuing;
# the refused file is not tried again until it changes (each try counts
# toward the token's lockout). The right PIN back: the reload succeeds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/softhsm.sh"
cd "$T_DIR"
softhsm_setup
softhsm_token ca 1234
mkdir pins
pinfile pins/pin 1234
KURI="pkcs11:token=ca;object=int?pin-source=file:$T_DIR/pins/pin"

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca intermediate int --parent root --name int --key-uri "$KURI"
[ -e int/ca.keyuri ] && [ ! -e int/ca.key ] || { not_ok "the intermediate's key is in the token" "$(ls int)"; exit 0; }
port=$(free_port)
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "https://localhost:$port"
SPID=$BG_PID
LOG=$T_DIR/caserve.log
wait_for 10 grep -q '"event":"start"' "$LOG" || { not_ok "ca serve starts" "$(cat "$LOG")"; exit 0; }
reloads() { grep -c "\"event\":\"reload\".*\"result\":\"$1\"" "$LOG"; }
more() { [ "$(reloads "$1")" -gt "$2" ]; }	# more RESULT N: counted at each wait_for poll
n=0
# an enrollment: a certificate signed by the snapshot serving now (in the token)
issues() {
	n=$((n + 1))
	"$MTLS" ca token create --ca int --spiffe-id "spiffe://example.org/ns/prod/w$n" > "w$n.token" 2>/dev/null &&
	"$MTLS" agent --ca-url "https://localhost:$port" --token-file "w$n.token" --out-dir "w$n" --once >/dev/null 2>&1 &&
	openssl verify -CAfile root/ca.pem -untrusted int/ca.pem "w$n/svid.pem" >/dev/null 2>&1
}
issues && ok "ca serve issues, signing in the token" || not_ok "first enrollment" "$(tail -3 "$LOG")"

# the PIN file replaced with the same PIN: checked, the reload succeeds
ok0=$(reloads ok)
pinfile pins/pin 1234
kill -HUP "$SPID"
wait_for 20 more ok "$ok0" && ok "a replaced PIN file: the reload checks its PIN and succeeds" \
    || not_ok "reload after a PIN file change" "$(grep '"reload"' "$LOG" | tail -3)"
issues && ok "the new snapshot signs in the token" || not_ok "enrollment after the reload" "$(tail -3 "$LOG")"

# a wrong PIN: the reload fails with one line, the old snapshot issues on
f0=$(reloads failed)
pinfile pins/pin 9999
kill -HUP "$SPID"
wait_for 20 more failed "$f0" && ok "a wrong PIN at reload: the reload fails" \
    || not_ok "reload with a wrong PIN" "$(grep '"reload"' "$LOG" | tail -3)"
[ "$(reloads failed)" = $((f0 + 1)) ] && ok "one failed line" || not_ok "failed lines" "$(grep '"reload"' "$LOG")"
expect_grep '"event":"reload".*"result":"failed".*PIN refused \(CKR_PIN_INCORRECT\) - check pin-source file .*/pins/pin' \
    "$LOG" "the line names the PIN file"
grep -q 9999 "$LOG" && not_ok "the PIN is never logged" "$(grep 9999 "$LOG")" || ok "the PIN is never logged"
issues && ok "the old snapshot keeps issuing" || not_ok "enrollment after a wrong PIN" "$(tail -3 "$LOG")"
# the same refused file: not tried again (the token's lockout counts tries)
f1=$(reloads failed)
kill -HUP "$SPID"
wait_for 20 more failed "$f1" && expect_grep '"result":"failed".*refused before; not tried again until it changes' "$LOG" \
    "a second SIGHUP with the same wrong file does not try its PIN again" || not_ok "second reload with a wrong PIN"

# the right PIN back
ok1=$(reloads ok)
pinfile pins/pin 1234
kill -HUP "$SPID"
wait_for 20 more ok "$ok1" && ok "the right PIN back: the reload succeeds" \
    || not_ok "reload after the fix" "$(grep '"reload"' "$LOG" | tail -3)"
issues && ok "issuing after the fix" || not_ok "enrollment after the fix" "$(tail -3 "$LOG")"
