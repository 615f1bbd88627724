#!/usr/bin/env bash
# Two ca serve replicas sharing one PostgreSQL store (a throwaway server,
# stopped by PID): the inventory migrated from SQLite; one token sent to
# both at the same moment is spent once (one 200, one 401); 50 enrollments
# split between them get 50 distinct serials; a revocation on one is in
# the other's CRL and OCSP; a lost database connection is 503 "store
# unavailable" and the next request reconnects.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/pg.sh"
cd "$T_DIR" || exit 1
H=$(dirname "$0")/helpers
[ "${H#/}" = "$H" ] && H="$OLDPWD/$H"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --out admin
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/early > early.token
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w.key -subj /CN=w -out w.csr 2>/dev/null
openssl x509 -in int/ca.pem -out int1.pem
cat int1.pem root/bundle.pem > chain-roots.pem

pg_start || exit 0
pg_createdb ca
expect_exit 0 "ca store migrate: the SQLite inventory into PostgreSQL" "$MTLS" ca store migrate \
    --ca int --to "$PG_URL_BASE/ca" --password-file "$PG_PW"
expect_grep "copied 1 certificates, 1 tokens and 0 bundle reports" "$T_DIR/out" "the admin's certificate and the token were copied"
sed -i "/^\[ca\]/a store = $PG_URL_BASE/ca\nstore_password_file = $PG_PW" int/ca.conf
mv int/inventory.db int/inventory.db.migrated; rm -f int/inventory.db-*
# each replica has its own copy of the CA directory, as on its own host
# (ca serve keeps its server certificate in DIR/serve/)
cp -a int intB

pa=$(free_port) pb=$(free_port)
UA="https://localhost:$pa" UB="https://localhost:$pb"
start_bg ca_a "$MTLS" ca serve --ca int --listen "127.0.0.1:$pa" --url "$UA" --admin spiffe://example.org/admin
start_bg ca_b "$MTLS" ca serve --ca intB --listen "127.0.0.1:$pb" --url "$UB" --admin spiffe://example.org/admin
wait_for 20 grep -q '"event":"start"' "$T_DIR/ca_a.log" && wait_for 20 grep -q '"event":"start"' "$T_DIR/ca_b.log" \
    && ok "two ca serve replicas start on one PostgreSQL store" \
    || { not_ok "replicas start" "$(tail -n 3 "$T_DIR/ca_a.log" "$T_DIR/ca_b.log")"; exit 0; }

r=$(python3 "$H/enroll_race.py" spread root/bundle.pem w.csr . "$UB" "$UA" "$(cat early.token)")
[ "${r%% *}" = 200 ] && ok "a token made before the migration enrolls on a replica" || not_ok "migrated token" "$r"

# the same token to both replicas at the same moment, 5 times
toks=()
for i in 1 2 3 4 5; do
	toks+=("$("$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/race$i)")
done
python3 "$H/enroll_race.py" race root/bundle.pem w.csr "$UA" "$UB" "${toks[@]}" > race.txt 2>&1
[ "$(grep -c '^200 401$' race.txt)" = 5 ] \
    && ok "one token sent to both replicas at once: exactly one 200 and one 401 (5 of 5)" \
    || not_ok "token race" "$(cat race.txt)"
[ "$(pg_sql ca "SELECT count(*) FROM certs WHERE identities LIKE 'spiffe://example.org/ns/prod/race%'")" = 5 ] \
    && ok "and exactly one certificate per token was recorded" \
    || not_ok "one certificate per raced token" "$(pg_sql ca "SELECT identities FROM certs")"
[ "$(pg_sql ca "SELECT count(*) FROM tokens WHERE spiffe_id LIKE '%/race%' AND used_at IS NOT NULL AND serial IS NOT NULL")" = 5 ] \
    && ok "each raced token is burned once, naming its certificate" || not_ok "burned tokens"

# 50 enrollments split between the two
toks=()
for i in $(seq 50); do
	toks+=("$("$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/n$i)")
done
mkdir -p many
python3 "$H/enroll_race.py" spread root/bundle.pem w.csr many "$UA" "$UB" "${toks[@]}" > many.txt 2>&1
[ "$(grep -c '^200 ' many.txt)" = 50 ] && ok "50 enrollments over both replicas: all 200" \
    || not_ok "50 enrollments" "$(grep -v '^200 ' many.txt | head -5)"
[ "$(grep '^200 ' many.txt | grep -c "$UA")" = 25 ] && [ "$(grep '^200 ' many.txt | grep -c "$UB")" = 25 ] \
    && ok "25 issued by each replica" || not_ok "split" "$(cut -d' ' -f3 many.txt | sort | uniq -c)"
[ "$(grep '^200 ' many.txt | cut -d' ' -f2 | sort -u | wc -l)" = 50 ] \
    && ok "50 distinct serials across the replicas" || not_ok "distinct serials" "$(cut -d' ' -f2 many.txt | sort | uniq -d)"
[ "$(pg_sql ca "SELECT count(*) FROM certs WHERE identities LIKE 'spiffe://example.org/ns/prod/n%'")" = 50 ] \
    && ok "all 50 recorded in PostgreSQL" || not_ok "50 rows"

# a revocation on A, seen by B's CRL and OCSP
victim=many/0.pem	# issued by A (token 0 went to A)
vs=$(serial_of "$victim")
# B signs (and caches) its CRL before the revocation: the revocation on A
# must still reach it, not wait for B's next scheduled re-sign
curl -sS --max-time 10 --cacert root/bundle.pem -o crl0.der "$UB/v1/crl"
openssl crl -inform DER -in crl0.der -noout -text 2>/dev/null | grep -q "$vs" \
    && not_ok "B's CRL lists the victim before the revocation" || ok "B's CRL is cached before the revocation"
echo "{\"serial\":\"$vs\",\"reason\":\"keyCompromise\"}" > rev.json
got=$(curl -sS --max-time 10 --cacert root/bundle.pem --cert admin.pem --key admin.key -o resp.json -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @rev.json "$UA/v1/revoke")
[ "$got" = 200 ] && ok "an admin revokes on replica A" || not_ok "revoke on A" "$got $(cat resp.json)"
# (B counts revocations at most once a second: the bound is 1 s)
b_crl_lists() {
	curl -sS --max-time 10 --cacert root/bundle.pem -o crl.der "$UB/v1/crl" &&
	    openssl crl -inform DER -in crl.der -CAfile chain-roots.pem -noout -text > crl.txt 2>&1 &&
	    grep -q "verify OK" crl.txt && grep -q "$vs" crl.txt
}
wait_for 5 b_crl_lists && ok "replica B's CRL lists it" || not_ok "B's CRL" "$(head -20 crl.txt)"
openssl ocsp -issuer int1.pem -cert "$victim" -url "$UB/v1/ocsp" -CAfile root/bundle.pem > ocsp.txt 2>&1
grep -q "$victim: revoked" ocsp.txt && ok "replica B's OCSP says revoked" || not_ok "B's OCSP" "$(cat ocsp.txt)"
"$MTLS" ca list --ca int --revoked > list.txt 2>&1 && grep -q "$vs" list.txt \
    && ok "mtls ca list --revoked shows it (same store)" || not_ok "ca list" "$(cat list.txt)"

# a database that stops answering (another client holds the certificates
# table) must not hold ca serve: the server's lock timeout ends the wait,
# the answer is 503 and the token is not spent; the same token works after
tl=$("$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/locked)
python3 -c 'import json,sys; print(json.dumps({"token": sys.argv[1], "csr": open(sys.argv[2]).read()}))' \
    "$tl" w.csr > locked.json
start_bg pglock pg_sql ca "BEGIN; LOCK TABLE certs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT"
locked() { [ "$(pg_sql ca "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'certs' AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ]; }
wait_for 10 locked || not_ok "the test could not lock the certs table"
t0=$(ms)
got=$(curl -sS --max-time 40 --cacert root/bundle.pem -o resp.txt -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @locked.json "$UA/v1/enroll")
t=$(( $(ms) - t0 ))
[ "$got" = 503 ] && [ "$t" -lt 20000 ] && ok "a locked table: enroll is 503 after ${t} ms (lock_timeout 10 s), not a hang" \
    || not_ok "enroll against a locked table: $got after $t ms" "$(head -c 300 resp.txt)"
pg_sql ca "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" > /dev/null
got=$(curl -sS --max-time 20 --cacert root/bundle.pem -o resp.txt -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @locked.json "$UA/v1/enroll")
[ "$got" = 200 ] && ok "the lock gone, the same token enrolls (it was not spent)" || not_ok "enroll after the lock" "$got $(head -c 300 resp.txt)"

# the database drops B's connection: B reconnects before its next query
pg_sql ca "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'mtls-ca' AND datname = 'ca'" > /dev/null
no_backend() { [ "$(pg_sql ca "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mtls-ca'")" = 0 ]; }
wait_for 10 no_backend || not_ok "the server closed the replicas' connections"
openssl ocsp -issuer int1.pem -cert "$victim" -url "$UB/v1/ocsp" -CAfile root/bundle.pem > ocsp2.txt 2>&1
grep -q "$victim: revoked" ocsp2.txt && ok "its connections closed by the server, B reconnects and answers OCSP" \
    || not_ok "reconnect after pg_terminate_backend" "$(cat ocsp2.txt)"
# the database is down: 503 "store unavailable"; up again: served again
tdown=$("$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/down)
python3 -c 'import json,sys; print(json.dumps({"token": sys.argv[1], "csr": open(sys.argv[2]).read()}))' \
    "$tdown" w.csr > down.json
pg_stop_now
got=$(curl -sS --max-time 20 --cacert root/bundle.pem -o resp.txt -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @down.json "$UB/v1/enroll")
[ "$got" = 503 ] && grep -q '"store_unavailable"' resp.txt && ok "database down: enroll is 503 store_unavailable, not 401 bad_token" \
    || not_ok "enroll while the database is down" "$got $(head -c 300 resp.txt)"
got=$(curl -sS --max-time 20 --cacert root/bundle.pem -o resp.txt -w '%{http_code}' "$UA/v1/crl")
[ "$got" = 503 ] && grep -q "store unavailable" resp.txt && ok "database down: a new CRL is 503 store unavailable" \
    || not_ok "503 when the database is down" "$got $(head -c 300 resp.txt)"
got=$(curl -sS --max-time 20 --cacert root/bundle.pem -o resp.txt -w '%{http_code}' "$UA/readyz")
[ "$got" = 503 ] && ok "and /readyz says not ready (503)" || not_ok "readyz while down" "$got $(head -c 300 resp.txt)"
grep -qF "$PG_URL_BASE" resp.txt && not_ok "the 503 must not name the store URL" || ok "the 503 does not name the store URL"
pg_run || exit 0
got=$(curl -sS --max-time 20 --cacert root/bundle.pem -o crl3.der -w '%{http_code}' "$UA/v1/crl")
[ "$got" = 200 ] && ok "database up again: the next request reconnects (200)" || not_ok "reconnect after restart" "$got"
kill -0 "${_bg_pids[0]}" && kill -0 "${_bg_pids[1]}" && ok "both replicas still run" || not_ok "replicas alive"
pw=$(cat "$PG_PW")
grep -qF "$pw" "$T_DIR"/*.log && not_ok "the password must not be in any log" || ok "no log holds the database password"
grep -qF "$PG_URL_BASE" "$T_DIR"/ca_*.log && not_ok "the store URL must not be in ca serve's log" \
    || ok "ca serve's log does not hold the store URL"
