#!/usr/bin/env bash
# SIGKILL in the middle of a loop of `mtls ca issue`: the inventory still
# opens and holds every certificate whose file exists; no serial twice.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
"$MTLS" ca init root --trust-domain example.org > /dev/null || { not_ok "setup"; exit 0; }
"$MTLS" ca intermediate int --parent root --name int > /dev/null || { not_ok "setup"; exit 0; }

kills=0
for i in $(seq 1 40); do
	"$MTLS" ca issue --ca int --spiffe-id "spiffe://example.org/w/$i" --out "w$i" > /dev/null 2>&1 &
	pid=$!
	# every fourth issuance dies at a varying point of its work
	if [ $((i % 4)) = 0 ]; then
		sleep "0.00$((i % 9))"
		kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
	fi
	wait "$pid" 2>/dev/null
done
[ "$kills" -gt 0 ] && ok "killed $kills issuances with SIGKILL" || not_ok "killed some issuances"

ic=$(sqlite3 int/inventory.db 'PRAGMA integrity_check' 2>&1)
[ "$ic" = ok ] && ok "inventory integrity_check ok" || not_ok "inventory integrity_check ok" "$ic"
expect_exit 0 "ca list --json still works" "$MTLS" ca list --ca int --json
cp "$T_DIR/out" list.json
missing=0 n=0
for f in w*.pem; do
	[ -f "$f" ] || continue
	n=$((n + 1))
	s=$(serial_of "$f")
	grep -q "\"$s\"" list.json || { missing=$((missing + 1)); echo "    not in inventory: $f $s"; }
done
[ "$missing" = 0 ] && ok "all $n written certificates are in the inventory" || not_ok "written certificates in the inventory" "$missing missing"
dups=$(sqlite3 int/inventory.db 'SELECT serial FROM certs GROUP BY serial HAVING count(*) > 1')
[ -z "$dups" ] && ok "no serial twice" || not_ok "no serial twice" "$dups"
expect_exit 0 "issuing still works after the kills" "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/after --out after
exit 0
