#!/usr/bin/env bash
# A proxy whose key is in a PKCS#11 token watches the key's PIN file: the
# file replaced, the next reload (SIGHUP, or the file watch) checks its PIN
# and succeeds; a wrong PIN in the file
# fails that reload with a clear log line (never the PIN) and the key
# loaded before keeps serving, and the same file is not tried again (each
# try counts toward the token's lockout); the right PIN back, the reload
# succeeds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/softhsm.sh"
cd "$T_DIR"
softhsm_setup
mkdir pins
softhsm_token wl 1234
setpin() { pinfile pins/pin "$1"; }
setpin 1234
URI="pkcs11:token=wl;object=server?pin-source=file:$T_DIR/pins/pin"

pki_root_int
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/server > s.token
port=$(free_port)
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "https://localhost:$port"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
# the server's key made in the token by the agent, its certificate enrolled
q "$MTLS" agent --ca-url "https://localhost:$port" --token-file s.token --key "$URI" --out-dir srv --once
kill "$BG_PID"
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --out client

mkdir www && echo "token key serving" > www/hello.txt
be=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
pport=$(free_port)
start_bg proxy "$MTLS" proxy --listen "127.0.0.1:$pport" --target "127.0.0.1:$be" --cert srv/svid.pem --key "$URI" \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --workers 1
PPID_=$BG_PID
LOG=$T_DIR/proxy.log
wait_for 10 grep -q '"event":"start"' "$LOG" || { not_ok "the proxy starts" "$(cat "$LOG")"; exit 0; }
# a handshake needs the server's signature (TLS 1.3 CertificateVerify): made in the token
get() { "$MTLS" doctor connect "127.0.0.1:$pport" --ca root/bundle.pem --cert client.pem --key client.key \
    --expect spiffe://example.org/ns/prod/server > /dev/null 2>&1 && echo "token key serving"; }
reloads() { grep -c "\"event\":\"reload\".*\"result\":\"$1\"" "$LOG"; }
more() { [ "$(reloads "$1")" -gt "$2" ]; }	# more RESULT N: counted at each wait_for poll

# the PIN file replaced (the same PIN: SoftHSM2 checks a PIN against the
# state it loaded, so a PIN changed by another process is only seen by a
# new one): the reload checks the file's PIN and succeeds
ok0=$(reloads ok)
setpin 1234
kill -HUP "$PPID_"
wait_for 10 more ok "$ok0" && ok "a replaced PIN file: the reload checks its PIN and succeeds" \
    || not_ok "reload after a PIN file change" "$(grep '"reload"' "$LOG" | tail -3)"
[ "$(get)" = "token key serving" ] && ok "still serving after the reload" || not_ok "GET after the reload"

# a wrong PIN in the file: the reload fails, says why, the old key serves on
f0=$(reloads failed)
setpin 9999
kill -HUP "$PPID_"
wait_for 10 more failed "$f0" && ok "a wrong PIN at reload: the reload fails" \
    || not_ok "reload with a wrong PIN" "$(grep '"reload"' "$LOG" | tail -3)"
expect_grep '"event":"reload".*"result":"failed".*PIN refused \(CKR_PIN_INCORRECT\) - check pin-source file .*/pins/pin.*keeps serving' \
    "$LOG" "the log line names the PIN file and says the old key keeps serving"
grep -q 9999 "$LOG" && not_ok "the PIN is never logged" "$(grep 9999 "$LOG")" || ok "the PIN is never logged"
[ "$(get)" = "token key serving" ] && ok "the key loaded before keeps serving" || not_ok "GET after a wrong PIN"
# each try counts toward the token's lockout: the same file is not tried again
f1=$(reloads failed)
kill -HUP "$PPID_"
wait_for 10 more failed "$f1" && expect_grep '"result":"failed".*refused before; not tried again until it changes' "$LOG" \
    "a second reload with the same wrong file does not try its PIN again" || not_ok "second reload with a wrong PIN"

# the right PIN back
ok1=$(reloads ok)
setpin 1234
kill -HUP "$PPID_"
wait_for 10 more ok "$ok1" && ok "the right PIN back: the reload succeeds" \
    || not_ok "reload after the fix" "$(grep '"reload"' "$LOG" | tail -3)"
[ "$(get)" = "token key serving" ] && ok "serving" || not_ok "GET after the fix"
