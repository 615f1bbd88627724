#!/usr/bin/env bash
# Times ca serve's inventory endpoints on a synthetic inventory:
#   bench/inventory.sh [COUNT]      (default 100000; SQLite)
#   STORE=pg bench/inventory.sh [COUNT]   the same rows in a throwaway
#                                   PostgreSQL (tests/integration/helpers)
# A throwaway CA in a temp folder, COUNT rows from gen_inventory.py, then
# each endpoint 5 times; prints the server's own time ("ms" of its
# request log line: wall clock, which a busy machine stretches), the
# median and the slowest, and the CPU time ca serve spent per request
# (/proc: user + system, all threads), which it does not.
set -eu
cd "$(dirname "$0")/.."
M=${MTLS:-$PWD/build/mtls}
N=${1:-100000}
pid=
D=$(mktemp -d /tmp/mtls-inv.XXXXXX)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$D"' EXIT
cd "$D"
"$M" ca init root --trust-domain example.org >/dev/null 2>&1
"$M" ca issue --ca root --spiffe-id spiffe://example.org/admin --out admin >/dev/null 2>&1
t0=$(date +%s%N)
python3 "$OLDPWD/bench/gen_inventory.py" --sqlite root/inventory.db --count "$N"
echo "generated $N rows in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
if [ "${STORE:-sqlite}" = pg ]; then
	R=$OLDPWD
	. "$R/tests/integration/lib.sh"
	. "$R/tests/integration/helpers/pg.sh"
	pg_start || exit 1
	trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; _pg_stop; rm -rf "$D"' EXIT
	cd "$D"
	t0=$(date +%s%N)
	pg_ca root inv
	pg_sql inv "VACUUM ANALYZE certs"
	echo "migrated to PostgreSQL in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	cp root/inventory.db.migrated root/inventory.db.rows
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$M" ca serve --ca root --listen "127.0.0.1:$port" --admin spiffe://example.org/admin 2> serve.log &
pid=$!
for _ in $(seq 100); do grep -q '"event":"start"' serve.log && break; sleep 0.1; done
rows=root/inventory.db
[ -f "$rows" ] || rows=root/inventory.db.rows
sid=$(sqlite3 "$rows" "SELECT identities FROM certs WHERE kind='leaf' LIMIT 1 OFFSET 5000" | head -1)
ser=$(sqlite3 "$rows" "SELECT substr(serial,1,10) FROM certs LIMIT 1 OFFSET 7000")
enc=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$sid")
for u in "summary" "?limit=500" "?state=valid&limit=500" "?state=expiring&expiring_within=1d&limit=500" \
    "?state=revoked&limit=500" "?state=expired&limit=500" "?q=svc123&limit=500" "?q=$ser" \
    "/identity?id=$enc"; do
	case "$u" in summary) path="/v1/inventory/summary" ;; /*) path="/v1/inventory$u" ;; *) path="/v1/inventory$u" ;; esac
	cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
	for _ in 1 2 3 4 5; do
		curl -sS -o /dev/null --cacert root/bundle.pem --cert admin.pem --key admin.key "https://localhost:$port$path"
	done
	ms=$(grep '"event":"request"' serve.log | tail -5 | python3 -c 'import sys,json; v=sorted(json.loads(l)["ms"] for l in sys.stdin); print(v[2], v[-1])')
	cpu=$(( ($(awk '{print $14 + $15}' /proc/$pid/stat) - cpu0) * 1000 / $(getconf CLK_TCK) / 5 ))
	printf '%-60s median %s ms, max %s ms, cpu %s ms\n' "${path:0:60}" ${ms% *} ${ms#* } "$cpu"
done
