#!/usr/bin/env bash
# Issue 15 §1: SIGKILL of a replica during issuance loses nothing and
# duplicates nothing. Two ca serve replicas on one PostgreSQL store take
# concurrent enrollments (a token each) and renewals; replica B is killed
# with SIGKILL mid-stream. Then: every certificate a client got a 200 for
# is in the inventory (mtls ca list) exactly once, no serial twice, every
# token is spent at most once and names a recorded certificate, no row
# lacks its certificate; each token whose answer was lost is sent again to
# A: 200 (it had not committed) or 401 (it had: its certificate is there),
# and in the end every token paid for exactly one certificate.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/pg.sh"
cd "$T_DIR" || exit 1
H=$(dirname "$0")/helpers
[ "${H#/}" = "$H" ] && H="$OLDPWD/$H"
pki_root_int
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w.key -subj /CN=w -out w.csr 2>/dev/null

pg_start || exit 0
pg_ca int ca
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/renewer --out r
N=60
for i in $(seq 0 $((N - 1))); do
	"$MTLS" ca token create --ca int --spiffe-id "spiffe://example.org/ns/prod/k$i"
done > toks.txt
[ "$(wc -l < toks.txt)" = $N ] || { not_ok "$N tokens made" "$(tail -3 toks.txt)"; exit 0; }
cp -a int intB

pa=$(free_port) pb=$(free_port)
UA="https://localhost:$pa" UB="https://localhost:$pb"
start_bg ca_a "$MTLS" ca serve --ca int --listen "127.0.0.1:$pa" --url "$UA"
start_bg ca_b "$MTLS" ca serve --ca intB --listen "127.0.0.1:$pb" --url "$UB"
pid_b=$BG_PID
wait_for 20 grep -q '"event":"start"' "$T_DIR/ca_a.log" && wait_for 20 grep -q '"event":"start"' "$T_DIR/ca_b.log" \
    && ok "two ca serve replicas start on one PostgreSQL store" \
    || { not_ok "replicas start" "$(tail -n 3 "$T_DIR/ca_a.log" "$T_DIR/ca_b.log")"; exit 0; }

# 60 enrollments and 60 renewals, 8 at a time, alternating replicas; B is
# killed once 20 answers are in
mkdir -p got
start_bg load python3 "$H/issue_load.py" root/bundle.pem w.csr got "$UA,$UB" --tokens toks.txt \
    --renew r.pem r.key --workers 8
load_pid=$BG_PID
wait_for 60 count_gt "$T_DIR/load.out" . 19 || not_ok "20 answers before the kill" "$(cat "$T_DIR/load.log")"
killed_at=$(wc -l < "$T_DIR/load.out")
kill -9 "$pid_b"; wait "$pid_b" 2>/dev/null
wait_for 120 gone "$load_pid" || not_ok "the load ends" "$(wc -l < "$T_DIR/load.out") answers"
L=$T_DIR/load.out
ok "replica B killed with SIGKILL after $killed_at of $((2 * N)) answers"
[ "$(wc -l < "$L")" = $((2 * N)) ] && ok "every job ended (a status or no answer)" || not_ok "jobs ended" "$(wc -l < "$L")"
[ "$(awk -v u="$UB" '$6 == u && $3 == 200' "$L" | wc -l)" -gt 0 ] && [ "$(awk -v u="$UB" '$6 == u && $3 == 0' "$L" | wc -l)" -gt 0 ] \
    && ok "B answered 200s before the kill and nothing after (mid-stream)" \
    || not_ok "the kill was mid-stream" "$(awk '{print $3, $6}' "$L" | sort | uniq -c)"
[ "$(awk -v u="$UA" '$6 == u && $3 != 200' "$L" | wc -l)" = 0 ] && ok "A answered every one of its jobs 200" \
    || not_ok "A's answers" "$(awk -v u="$UA" '$6 == u && $3 != 200' "$L" | head -5)"

# what clients were given, against the inventory
awk '$3 == 200 { print $5 }' "$L" | sort > acked.txt
[ -z "$(uniq -d acked.txt)" ] && ok "no serial was answered twice ($(wc -l < acked.txt) answers 200)" \
    || not_ok "serial answered twice" "$(uniq -d acked.txt | head -3)"
"$MTLS" ca list --ca int --json > list.json 2> list.err || not_ok "mtls ca list" "$(cat list.err)"
python3 "$H/acked_in_list.py" acked.txt list.json > inv.txt
read -r n_rows n_distinct n_missing rest < inv.txt
[ "${n_missing:-x}" = 0 ] && ok "every certificate answered 200 is in mtls ca list exactly once" \
    || not_ok "answered certificates in the inventory" "$(cat inv.txt) $(head -c 300 list.json)"
[ -n "$n_rows" ] && [ "$n_rows" = "$n_distinct" ] && ok "no serial twice in the inventory ($n_rows rows)" \
    || not_ok "distinct serials" "$(cat inv.txt)"
[ "$(pg_sql ca "SELECT count(*) FROM certs WHERE der IS NULL OR length(der) < 100 OR identities = ''")" = 0 ] \
    && ok "no row without its certificate" || not_ok "rows without DER"
[ "$(pg_sql ca "SELECT count(*) FROM tokens t WHERE used_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM certs c WHERE c.serial = t.serial)")" = 0 ] \
    && ok "every spent token names a recorded certificate" || not_ok "spent tokens without a certificate"
bad=0
for f in got/*.tok; do
	[ -f "$f" ] || continue
	i=${f%.tok}; i=${i#got/}
	h=$(printf %s "$(cat "$f")" | sha256sum | cut -c1-64)
	s=$(awk -v i="$i" '$1 == i { print $5 }' "$L")
	[ "$(pg_sql ca "SELECT serial FROM tokens WHERE hash = '$h' AND used_at IS NOT NULL")" = "$s" ] || bad=$((bad + 1))
done
[ "$bad" = 0 ] && ok "each token answered 200 is spent, for the certificate answered" || not_ok "$bad tokens not spent for their answer"

# the enrollments whose answer was lost, sent again to A
awk '$2 == "enroll" && $3 != 200 { print $1 }' "$L" > lost.txt
: > retry.txt
while read -r i; do
	tok=$(sed -n "$((i / 2 + 1))p" toks.txt)
	python3 -c 'import json,sys; print(json.dumps({"token": sys.argv[1], "csr": open(sys.argv[2]).read()}))' "$tok" w.csr > rq.json
	st=$(curl -sS --max-time 20 --cacert root/bundle.pem -o rs.json -w '%{http_code}' \
	    -H 'Content-Type: application/json' --data-binary @rq.json "$UA/v1/enroll")
	echo "$i $st" >> retry.txt
done < lost.txt
[ -s lost.txt ] && [ "$(awk '$2 != 200 && $2 != 401' retry.txt | wc -l)" = 0 ] \
    && ok "$(wc -l < lost.txt) lost enrollments sent again to A: $(grep -c ' 200$' retry.txt) enroll, $(grep -c ' 401$' retry.txt) were spent already" \
    || not_ok "lost enrollments again" "$(cat lost.txt | head -3) $(cat retry.txt | head -5)"
[ "$(pg_sql ca "SELECT count(*) FROM tokens WHERE spiffe_id LIKE 'spiffe://example.org/ns/prod/k%' AND used_at IS NOT NULL")" = $N ] \
    && [ "$(pg_sql ca "SELECT count(DISTINCT identities) FROM certs WHERE identities LIKE 'spiffe://example.org/ns/prod/k%'")" = $N ] \
    && [ "$(pg_sql ca "SELECT count(*) FROM certs WHERE identities LIKE 'spiffe://example.org/ns/prod/k%'")" = $N ] \
    && ok "in the end each of the $N tokens paid for exactly one certificate" \
    || not_ok "one certificate per token" "$(pg_sql ca "SELECT identities, count(*) FROM certs WHERE identities LIKE '%/k%' GROUP BY 1 HAVING count(*) <> 1")"

# B restarted on its directory serves again
start_bg ca_b2 "$MTLS" ca serve --ca intB --listen "127.0.0.1:$pb" --url "$UB"
wait_for 20 grep -q '"event":"start"' "$T_DIR/ca_b2.log" || not_ok "B restarts" "$(tail -3 "$T_DIR/ca_b2.log")"
st=$(curl -sS --max-time 20 --cacert root/bundle.pem --cert r.pem --key r.key -o rs.json -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    --data-binary "$(python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read()}))' w.csr)" "$UB/v1/renew")
[ "$st" = 200 ] && ok "B restarted renews again" || not_ok "B after restart" "$st $(head -c 300 rs.json)"
