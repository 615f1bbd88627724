#!/usr/bin/env bash
# Issue 16 (s23 item 3): ca serve starting while its PostgreSQL store is
# down. It used to exit ("store unavailable (PostgreSQL): cannot connect").
# Now it starts on the certificate an earlier run left in DIR/serve/
# (unchecked against the inventory, logged), is not ready (/readyz 503
# naming the kind, a not_ready line), and becomes ready by itself when the
# store comes back (the running case's 2 s probe): it then checks its
# certificate against the inventory and enrolls. A first start, with no
# certificate to reuse, still cannot serve: it says why and exits.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/pg.sh"
cd "$T_DIR" || exit 1
pki_root_int
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w.key -subj /CN=w -out w.csr 2>/dev/null
pg_start || exit 0
pg_ca int ca
port=$(free_port)
URL="https://localhost:$port"
serve() { start_bg "$1" "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"; }
readyz() { curl -sS --max-time 5 --cacert root/bundle.pem -o ready.txt -w '%{http_code}' "$URL/readyz"; }

# a first run with the store up leaves its certificate in int/serve/
serve first
wait_for 20 grep -q '"event":"start"' "$T_DIR/first.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/first.log")"; exit 0; }
kill "$BG_PID"
wait_for 20 gone "$BG_PID" || not_ok "the first run stops"
cp -a int intnew && rm -rf intnew/serve

# ---- PostgreSQL down, then ca serve starts ----
pg_stop_now
serve down
pid=$BG_PID
wait_for 30 grep -q '"event":"start"' "$T_DIR/down.log" && ok "ca serve starts while its store is down" \
    || { not_ok "ca serve starts with the store down" "$(tail -5 "$T_DIR/down.log")"; exit 0; }
expect_grep '"level":"warn".*"event":"server_cert_reused".*"unchecked":"store unavailable \(PostgreSQL\)' "$T_DIR/down.log" \
    "it serves the certificate of the earlier run, logged as unchecked (the store is down)"
expect_grep '"event":"not_ready".*store unavailable \(PostgreSQL\)' "$T_DIR/down.log" "a not_ready line names the store"
st=$(readyz)
[ "$st" = 503 ] && grep -q '"error": *"not_ready"' ready.txt && grep -q 'store unavailable (PostgreSQL)' ready.txt \
    && ! grep -qF "$PG_URL_BASE" ready.txt && ok "/readyz is 503 with the kind, never the URL" \
    || not_ok "readyz while down" "$st $(cat ready.txt)"
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/late > late.token 2> token.err \
    && not_ok "ca token create must fail while the store is down" || ok "(the CLI still fails at once: ca token create)"
st=$(curl -sS --max-time 5 --cacert root/bundle.pem -o h.txt -w '%{http_code}' "$URL/healthz")
[ "$st" = 200 ] && ok "/healthz is 200: alive, only not ready" || not_ok "healthz" "$st"

# a first start has nothing to serve with: a clear error, exit
other=$(free_port)
expect_exit 2 "a first start with the store down exits" timeout 30 "$MTLS" ca serve --ca intnew \
    --listen "127.0.0.1:$other" --url "https://localhost:$other"
grep -q 'nothing to reuse.*store is down.*start ca serve once with its store up' "$T_DIR/err" \
    && ok "and says why: nothing to reuse, the store is down" || not_ok "first start message" "$(cat "$T_DIR/err")"

# ---- back: ready by itself ----
pg_run || exit 0
t0=$(ms)
ready() { [ "$(readyz)" = 200 ]; }
wait_for 20 ready && ok "the store back: /readyz 200 after $(( $(ms) - t0 )) ms, without a restart" \
    || not_ok "ready after the store is back" "$(cat ready.txt; tail -3 "$T_DIR/down.log")"
expect_grep '"event":"ready"' "$T_DIR/down.log" "a ready line"
wait_for 10 grep -q '"level":"info".*"event":"server_cert_reused"' "$T_DIR/down.log" \
    && ok "its certificate is checked against the inventory once the store answers" \
    || not_ok "recheck" "$(grep server_cert "$T_DIR/down.log")"
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/late > late.token
python3 -c 'import json,sys; print(json.dumps({"token": open(sys.argv[1]).read().strip(), "csr": open(sys.argv[2]).read()}))' \
    late.token w.csr > enroll.json
st=$(curl -sS --max-time 10 --cacert root/bundle.pem -o resp.json -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @enroll.json "$URL/v1/enroll")
[ "$st" = 200 ] && ok "and enrolls" || not_ok "enroll after" "$st $(head -c 300 resp.json)"
kill -0 "$pid" && ok "the same process throughout" || not_ok "ca serve alive"
