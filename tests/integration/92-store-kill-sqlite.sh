#!/usr/bin/env bash
# Issue 15 §2: group commit on SQLite (WAL, synchronous=FULL). 32 clients
# renew at once against one ca serve: requests share commits (the
# /metrics counters: fewer commits than certificates) and each answer
# goes out only after its own commit. ca serve is killed with SIGKILL
# mid-stream and started again: every certificate a client got a 200 for
# is in the inventory (mtls ca list), integrity_check passes, no row lacks
# its certificate.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR" || exit 1
H=$(dirname "$0")/helpers
[ "${H#/}" = "$H" ] && H="$OLDPWD/$H"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/renewer --out r
for i in $(seq 0 39); do
	"$MTLS" ca token create --ca int --spiffe-id "spiffe://example.org/ns/prod/s$i"
done > toks.txt
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout w.key -subj /CN=w -out w.csr 2>/dev/null
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
pid=$BG_PID
wait_for 20 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(tail -3 "$T_DIR/caserve.log")"; exit 0; }

mkdir -p got
start_bg load python3 "$H/issue_load.py" root/bundle.pem w.csr got "$URL" --tokens toks.txt \
    --renew r.pem r.key --workers 32 --until "$T_DIR/stop-load"
load_pid=$BG_PID
L=$T_DIR/load.out
wait_for 60 count_gt "$L" ' 200 ' 59 || not_ok "60 answers 200 before the kill" "$(head -3 "$L") $(tail -3 "$T_DIR/load.log")"
curl -sS --max-time 10 --cacert root/bundle.pem -o metrics.txt "$URL/metrics"
kill -9 "$pid"; wait "$pid" 2>/dev/null
touch "$T_DIR/stop-load"
wait_for 60 gone "$load_pid" || not_ok "the load ends"
commits=$(awk '$1 == "mtls_ca_store_commits_total" { print $2 }' metrics.txt)
certs=$(awk '$1 == "mtls_ca_store_committed_certs_total" { print $2 }' metrics.txt)
[ -n "$commits" ] && [ -n "$certs" ] && [ "$certs" -gt 0 ] && [ "$commits" -lt "$certs" ] \
    && ok "32 clients at once: $certs certificates in $commits commits (group commit)" \
    || not_ok "fewer commits than certificates" "commits=$commits certs=$certs"
n200=$(grep -c ' 200 ' "$L")
[ "$(awk '$3 != 200 && $3 != 0' "$L" | wc -l)" = 0 ] && ok "$n200 answers 200 before the kill, nothing else but lost connections" \
    || not_ok "answers" "$(awk '$3 != 200 && $3 != 0 { print $2, $3, $7 }' "$L" | sort | uniq -c)"

# started again: every 200 is there
start_bg caserve2 "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL"
wait_for 20 grep -q '"event":"start"' "$T_DIR/caserve2.log" || not_ok "ca serve restarts" "$(tail -3 "$T_DIR/caserve2.log")"
"$MTLS" ca list --ca int --json > list.json 2> list.err || not_ok "mtls ca list" "$(cat list.err)"
awk '$3 == 200 { print $5 }' "$L" | sort > acked.txt
python3 "$H/acked_in_list.py" acked.txt list.json > inv.txt
read -r n_rows n_distinct n_missing rest < inv.txt
[ "${n_missing:-x}" = 0 ] && [ "$n_rows" = "$n_distinct" ] \
    && ok "after SIGKILL and restart every one of the $n200 answers 200 is in mtls ca list, once ($n_rows rows)" \
    || not_ok "answered certificates after the kill" "$(cat inv.txt)"
[ "$(sqlite3 int/inventory.db "PRAGMA integrity_check")" = ok ] && ok "integrity_check: ok" \
    || not_ok "integrity_check" "$(sqlite3 int/inventory.db "PRAGMA integrity_check" | head -3)"
[ "$(sqlite3 int/inventory.db "SELECT count(*) FROM certs WHERE der IS NULL OR length(der) < 100")" = 0 ] \
    && [ "$(sqlite3 int/inventory.db "SELECT count(*) FROM tokens t WHERE used_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM certs c WHERE c.serial = t.serial)")" = 0 ] \
    && ok "no row without its certificate, no spent token without one" || not_ok "partial rows"
bad=0
for f in got/*.tok; do
	[ -f "$f" ] || continue
	i=${f%.tok}; i=${i#got/}
	h=$(printf %s "$(cat "$f")" | sha256sum | cut -c1-64)
	[ "$(sqlite3 int/inventory.db "SELECT serial FROM tokens WHERE hash = '$h'")" = "$(awk -v i="$i" '$1 == i { print $5 }' "$L")" ] \
	    || bad=$((bad + 1))
done
[ "$bad" = 0 ] && ok "each token answered 200 is spent for the certificate answered" || not_ok "$bad tokens"
