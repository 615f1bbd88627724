#!/usr/bin/env bash
# The CA's store on both backends: the same test-suite (test_store) against
# SQLite and against a throwaway PostgreSQL (initdb in a temp folder,
# stopped by PID); the PostgreSQL store's own checks: password from a file
# only, neither URL nor password in any message, a hostile answer (NULL,
# not a number) is an error and not a crash, a lost connection is "store
# unavailable" and the next call reconnects.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/pg.sh"
cd "$T_DIR" || exit 1
UNIT=$BUILD/tests/test_store
[ -x "$UNIT" ] || { not_ok "test_store is built (make $UNIT)"; exit 0; }

suite() {	# suite NAME [env...]: test_store passes with the env
	local name=$1 out
	shift
	out=$(env CMOCKA_MESSAGE_OUTPUT=TAP "$@" timeout 120 "$UNIT" 2>&1)
	if [ $? = 0 ] && ! grep -q '^not ok' <<< "$out" && [ "$(grep -c '^ok' <<< "$out")" -ge 6 ]; then
		ok "$name ($(grep -c '^ok' <<< "$out") cases)"
	else not_ok "$name" "$(grep -v '^ok' <<< "$out" | head -15)"; fi
}

suite "the store test-suite passes on SQLite" MTLS_TEST_STORE=
# SQLite: an inventory of an mtls before migrations (no schema_version)
# opens, keeps its rows and is migrated; a newer one is refused
"$MTLS" ca init sq --trust-domain example.org > /dev/null 2>&1
sqlite3 sq/inventory.db "DROP TABLE schema_version"
expect_exit 0 "SQLite: an inventory from before migrations opens" "$MTLS" ca list --ca sq
expect_grep "root" "$T_DIR/out" "and keeps its certificates"
[ "$(sqlite3 sq/inventory.db 'SELECT group_concat(version) FROM schema_version')" = 1,2,3,4,5,6 ] \
    && ok "SQLite: migrations 1 to 6 recorded once at open" || not_ok "sqlite schema_version"
# migration 4: a bundle report of 3 (per identity) is mapped to the leaf
# it was recorded for (same first identity, same notAfter); one with no
# such leaf is dropped
"$MTLS" ca init sq3 --trust-domain example.org > /dev/null 2>&1
"$MTLS" ca issue --ca sq3 --spiffe-id spiffe://example.org/web --out web > /dev/null 2>&1
web=$(serial_of web.pem)
sqlite3 sq3/inventory.db "DELETE FROM schema_version WHERE version >= 4; DROP TABLE bundle_reports;
    CREATE TABLE agent_bundles (identity TEXT PRIMARY KEY, gen TEXT NOT NULL, not_after INTEGER NOT NULL, seen_at INTEGER NOT NULL);
    INSERT INTO agent_bundles SELECT identities, 'g1', not_after, created_at FROM certs WHERE kind = 'leaf';
    INSERT INTO agent_bundles VALUES ('spiffe://example.org/gone', 'g2', 1, 1)"
expect_exit 0 "SQLite: an inventory of migration 3 opens" "$MTLS" ca list --ca sq3
got=$(sqlite3 sq3/inventory.db "SELECT group_concat(serial || ' ' || gen) FROM bundle_reports")
[ "${got,,}" = "${web,,} g1" ] && ok "migration 4 maps a report of 3 to its leaf's serial, drops the one with no leaf" ||
    not_ok "migration 4's mapping" "got '$got', want '$web g1'"
[ -z "$(sqlite3 sq3/inventory.db "SELECT name FROM sqlite_master WHERE name = 'agent_bundles'")" ] &&
    ok "migration 4 drops agent_bundles" || not_ok "agent_bundles dropped"
sqlite3 sq/inventory.db "INSERT INTO schema_version VALUES (7, 0)"
expect_exit 2 "SQLite: a schema newer than this mtls is refused" "$MTLS" ca list --ca sq
expect_grep "schema version 7; this mtls knows up to 6" "$T_DIR/err" "and the error says so"
pg_start || exit 0
ok "a throwaway PostgreSQL runs on 127.0.0.1:$PG_PORT"
pg_createdb unit
suite "the same test-suite passes on PostgreSQL (password from a file, over TCP)" \
    MTLS_TEST_STORE="$PG_URL_BASE/unit" MTLS_TEST_STORE_PASSWORD_FILE="$PG_PW"
[ "$(pg_sql unit "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")" = 1,2,3,4,5,6 ] \
    && ok "migrations recorded once in schema_version, after 8 concurrent opens" \
    || not_ok "schema_version" "$(pg_sql unit 'SELECT * FROM schema_version')"

# a CA on PostgreSQL, set in ca.conf
"$MTLS" ca init ca --trust-domain example.org > /dev/null 2>&1 || not_ok "ca init"
"$MTLS" ca issue --ca ca --spiffe-id spiffe://example.org/w1 --out w1 > /dev/null 2>&1 || not_ok "ca issue"
pg_createdb inv
# an agent's bundle report (a rotation under way): migrate must carry it, or
# the count of agents on the old bundle drops to 0 and switch would pass
sqlite3 ca/inventory.db "INSERT INTO bundle_reports SELECT serial, '$(printf 'a%.0s' {1..64})', not_after, 1 FROM certs WHERE kind = 'leaf'"
expect_exit 0 "ca store migrate copies the SQLite inventory" "$MTLS" ca store migrate --ca ca \
    --to "$PG_URL_BASE/inv" --password-file "$PG_PW"
expect_grep "copied 2 certificates, 0 tokens and 1 bundle reports" "$T_DIR/out" "migrate says what it copied"
got=$(pg_sql inv "SELECT count(*) FROM bundle_reports b JOIN certs c ON c.serial = b.serial WHERE b.gen = '$(printf 'a%.0s' {1..64})'")
[ "$got" = 1 ] && ok "the agent's bundle report is in PostgreSQL, on its certificate" ||
    not_ok "bundle report migrated" "got '$got'"
sed -i "/^\[ca\]/a store = $PG_URL_BASE/inv\nstore_password_file = $PG_PW" ca/ca.conf
rm ca/inventory.db*	# from here on, only PostgreSQL holds the inventory
expect_exit 0 "ca list reads the PostgreSQL store" "$MTLS" ca list --ca ca
expect_grep "spiffe://example.org/w1" "$T_DIR/out" "the migrated certificate is listed"
serial=$(serial_of w1.pem)
expect_exit 0 "ca revoke on PostgreSQL" "$MTLS" ca revoke --ca ca "$serial"
expect_exit 0 "ca crl on PostgreSQL" "$MTLS" ca crl --ca ca --out crl.pem
openssl crl -in crl.pem -noout -text | grep -qi "serial number: *0*$serial" \
    && ok "the CRL lists the revocation recorded in PostgreSQL" || not_ok "CRL" "$(openssl crl -in crl.pem -noout -text | head -20)"
expect_exit 0 "ca issue on PostgreSQL" "$MTLS" ca issue --ca ca --spiffe-id spiffe://example.org/w2 --out w2
[ "$(pg_sql inv 'SELECT count(*) FROM certs')" = 3 ] && ok "the new certificate is in PostgreSQL" \
    || not_ok "issued into PostgreSQL" "$(pg_sql inv 'SELECT serial, kind FROM certs')"
# migration 4 on PostgreSQL: w2's report of 3 mapped to its serial, the
# one with no leaf dropped
pg_sql inv "DELETE FROM schema_version WHERE version >= 4; DROP TABLE bundle_reports;
    CREATE TABLE agent_bundles (identity text PRIMARY KEY, gen text NOT NULL, not_after bigint NOT NULL, seen_at bigint NOT NULL);
    INSERT INTO agent_bundles SELECT identities, 'g1', not_after, created_at FROM certs WHERE identities = 'spiffe://example.org/w2';
    INSERT INTO agent_bundles VALUES ('spiffe://example.org/gone', 'g2', 1, 1)"
expect_exit 0 "PostgreSQL: a store of migration 3 opens" "$MTLS" ca list --ca ca
got=$(pg_sql inv "SELECT string_agg(serial || ' ' || gen, ',') FROM bundle_reports")
w2=$(serial_of w2.pem)
[ "${got,,}" = "${w2,,} g1" ] && [ -z "$(pg_sql inv "SELECT to_regclass('agent_bundles')")" ] &&
    ok "PostgreSQL: migration 4 maps a report of 3 to its leaf's serial, drops the rest and agent_bundles" ||
    not_ok "PostgreSQL: migration 4's mapping" "got '$got', want '$w2 g1'"

# the password: from a file only, never printed
pw=$(cat "$PG_PW")
echo wrong-password > badpw && chmod 600 badpw
sed -i "s|^store_password_file = .*|store_password_file = $T_DIR/badpw|" ca/ca.conf
expect_exit 2 "a wrong password is refused" "$MTLS" ca list --ca ca
expect_grep "store unavailable.*password authentication failed" "$T_DIR/err" "the error says the store refused the password"
grep -q wrong-password "$T_DIR/err" && not_ok "the password must not be printed" || ok "the (wrong) password is not printed"
sed -i "s|^store = .*|store = postgres://mtls:$pw@127.0.0.1:$PG_PORT/inv|" ca/ca.conf
expect_exit 2 "a password in the URL is refused" "$MTLS" ca list --ca ca
expect_grep "store_password_file" "$T_DIR/err" "and the error says where the password goes"
grep -qF "$pw" "$T_DIR/err" && not_ok "the URL's password must not be printed" || ok "the URL's password is not printed"
"$MTLS" ca init ca3 --trust-domain example.org > /dev/null 2>&1
expect_exit 2 "migrate refuses a password in --to" "$MTLS" ca store migrate --ca ca3 --to "postgres://mtls:$pw@127.0.0.1:$PG_PORT/inv"
grep -qF "$pw" "$T_DIR/err" && not_ok "migrate must not print the password" || ok "migrate does not print it either"
sed -i "s|^store = .*|store = $PG_URL_BASE/inv|; s|^store_password_file = .*|store_password_file = $PG_PW|" ca/ca.conf
chmod 666 "$PG_PW"
expect_exit 2 "a password file writable by others is refused" "$MTLS" ca list --ca ca
chmod 600 "$PG_PW"
sed -i "s|^store = .*|store = mysql://secret@h/db|" ca/ca.conf
expect_exit 2 "a store URL of another kind is refused" "$MTLS" ca list --ca ca
grep -q secret "$T_DIR/err" && not_ok "the bad URL must not be echoed" || ok "the bad URL is not echoed"
sed -i "s|^store = .*|store = $PG_URL_BASE/inv|" ca/ca.conf

# a hostile or broken database answer is an error, not a crash
pg_sql inv "ALTER TABLE certs ALTER COLUMN not_after DROP NOT NULL; UPDATE certs SET not_after = NULL WHERE serial = (SELECT min(serial) FROM certs)"
expect_exit 2 "a NULL where a number belongs: ca list fails cleanly" "$MTLS" ca list --ca ca
expect_grep "unexpected NULL" "$T_DIR/err" "and says what was wrong"
pg_sql inv "ALTER TABLE certs ALTER COLUMN not_after TYPE text; UPDATE certs SET not_after = '12abc' WHERE not_after IS NULL"
expect_exit 2 "text where a number belongs: ca list fails cleanly" "$MTLS" ca list --ca ca
expect_grep "not an integer" "$T_DIR/err" "and says what was wrong"
pg_sql inv "UPDATE certs SET not_after = '99999999999999999999999' WHERE not_after = '12abc'"
expect_exit 2 "an integer out of range: ca list fails cleanly" "$MTLS" ca list --ca ca
pg_sql inv "UPDATE certs SET not_after = '4102444800' WHERE not_after LIKE '9999%'; ALTER TABLE certs ALTER COLUMN not_after TYPE bigint USING not_after::bigint; ALTER TABLE certs ALTER COLUMN not_after SET NOT NULL"
expect_exit 0 "repaired, ca list works again" "$MTLS" ca list --ca ca

# a database newer than this mtls
pg_sql inv "INSERT INTO schema_version VALUES (99, 0)"
expect_exit 2 "a schema newer than this mtls is refused" "$MTLS" ca list --ca ca
expect_grep "schema version 99; this mtls knows up to 6" "$T_DIR/err" "and the error says so"
pg_sql inv "DELETE FROM schema_version WHERE version = 99"

# migrate refuses a target that is not empty, and changes nothing
before=$(pg_sql inv 'SELECT count(*) FROM certs')
expect_exit 2 "migrate into a non-empty database is refused" "$MTLS" ca store migrate --ca ca3 \
    --to "$PG_URL_BASE/inv" --password-file "$PG_PW"
expect_grep "not empty" "$T_DIR/err" "the refusal says the target is not empty"
[ "$(pg_sql inv 'SELECT count(*) FROM certs')" = "$before" ] && ok "the target is unchanged" || not_ok "target changed"

# TLS to PostgreSQL, verified with its own CA file (store_sslrootcert)
sqlite3 sq/inventory.db "DELETE FROM schema_version WHERE version = 7"
"$MTLS" ca issue --ca sq --ip 127.0.0.1 --out pgsrv > /dev/null 2>&1 || not_ok "issue the server's certificate"
cp pgsrv.pem pgsrv.key "$PG_DIR/" && chmod 600 "$PG_DIR/pgsrv.key"
[ "$(id -u)" = 0 ] && chown postgres: "$PG_DIR/pgsrv.pem" "$PG_DIR/pgsrv.key"
pg_stop_now
PG_OPTS=(-c ssl=on -c "ssl_cert_file=$PG_DIR/pgsrv.pem" -c "ssl_key_file=$PG_DIR/pgsrv.key")
pg_run || exit 0
sed -i "/^store_password_file/a store_sslmode = verify-full\nstore_sslrootcert = $T_DIR/sq/bundle.pem" ca/ca.conf
expect_exit 0 "TLS to PostgreSQL, verify-full with its CA file: ca list works" "$MTLS" ca list --ca ca
"$MTLS" ca init other --trust-domain example.org > /dev/null 2>&1
sed -i "s|^store_sslrootcert = .*|store_sslrootcert = $T_DIR/other/bundle.pem|" ca/ca.conf
expect_exit 2 "a PostgreSQL server certificate from another CA is refused" "$MTLS" ca list --ca ca
expect_grep "store unavailable.*certificate verify failed" "$T_DIR/err" "the error says the server's certificate did not verify"
sed -i '/^store_ssl/d' ca/ca.conf
grep -rqF "$pw" "$T_DIR"/*.log 2>/dev/null && not_ok "no log holds the password" || ok "no log holds the password"
