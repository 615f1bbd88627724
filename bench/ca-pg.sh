#!/usr/bin/env bash
# Renewals of `mtls ca serve` on a PostgreSQL store (issue 15 §2): a
# throwaway cluster (tests/integration/helpers/pg.sh, but durable here:
# fsync=on, synchronous_commit=on), then issuebench against one replica
# (CLIENTS keep-alive clients, 64 by default) and against two replicas on
# the same database (two issuebench processes, half the clients each).
# CPU per renewal of ca serve (each replica's /proc/PID/stat) and of
# PostgreSQL (the postmaster and its backends, exited ones included)
# separately, and `openssl speed ecdsap256` from the same run.
#   bench/ca-pg.sh [SECONDS]        needs make bench; prints Markdown rows
set -uo pipefail
secs=${1:-10}
clients=${CLIENTS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
ib=$root/build/bench/issuebench
[ -x "$ib" ] || { echo "build/bench/issuebench missing: make bench" >&2; exit 2; }
. "$root/tests/integration/lib.sh"
. "$root/tests/integration/helpers/pg.sh"
cd "$T_DIR" || exit 1
PG_OPTS=(-c fsync=on -c synchronous_commit=on -c max_connections=60)
pki_root_int
pg_start >/dev/null || { echo "cannot start PostgreSQL" >&2; exit 1; }
pg_ca int ca
cp -a int intB
tick=$(getconf CLK_TCK)
# CPU ticks of a process (utime + stime)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of PostgreSQL: the postmaster (with its exited children's)
# and every live child
pg_ticks() {
	local t c
	t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PG_PID/stat")
	for c in $(cat "/proc/$PG_PID/task/$PG_PID/children" 2>/dev/null); do
		t=$(( t + $(ticks "$c" 2>/dev/null || echo 0) ))
	done
	echo "$t"
}
serve() {	# serve NAME DIR: starts a replica, sets PORT_<NAME>, PID_<NAME>
	local p
	p=$(free_port)
	start_bg "$1" "$MTLS" ca serve --ca "$2" --listen "127.0.0.1:$p" \
	    --url "https://localhost:$p" --max-conns-per-ip 1024
	wait_for 20 grep -q '"event":"start"' "$T_DIR/$1.log" ||
	    { echo "ca serve $1 does not start: $(tail -2 "$T_DIR/$1.log")" >&2; exit 1; }
	eval "PORT_$1=$p PID_$1=$BG_PID"
	"$MTLS" ca token create --ca "$2" --spiffe-id "spiffe://example.org/bench/$1" > "$1.token"
	"$MTLS" agent --ca-url "https://127.0.0.1:$p" --token-file "$1.token" \
	    --out-dir "a_$1" --once 2>/dev/null ||
	    { echo "cannot enroll on $1" >&2; exit 1; }
}
bench() {	# bench NAME CLIENTS
	local p pid
	eval "p=\$PORT_$1 pid=\$PID_$1"
	"$ib" --port "$p" --cert "a_$1/svid.pem" --key "a_$1/svid.key" \
	    --bundle "a_$1/bundle.pem" --pid "$pid" --clients "$2" \
	    --seconds "$secs"
}
field() { tr ' ' '\n' <<< "$1" | sed -n "s/^$2=//p"; }
# ca serve's per-phase counters (/metrics): "phase calls cpu_seconds" lines
snap() {	# snap NAME FILE
	local p
	eval "p=\$PORT_$1"
	curl -sS --max-time 5 --cacert "a_$1/bundle.pem" \
	    "https://127.0.0.1:$p/metrics" | awk -F'[{}\" ]+' '
	    /^mtls_ca_phase_cpu_seconds_total/ {u[$3]=$4}
	    /^mtls_ca_phase_seconds_total/ {w[$3]=$4}
	    /^mtls_ca_phase_calls_total/ {c[$3]=$4}
	    /^mtls_ca_store_commits_total/ {b=$2}
	    /^mtls_ca_store_committed_certs_total/ {n=$2}
	    END {for (k in c) print k, c[k], u[k], w[k]
		print "~batch", b, n, 0}' | sort > "$2"
}
# CPU us per call of each phase between snapshots (of one or two replicas)
phases() {	# phases BEFORE AFTER [BEFORE2 AFTER2]
	awk 'FILENAME != f { f = FILENAME; i++ }
	    { s = (i % 2) ? -1 : 1; c[$1] += s * $2; u[$1] += s * $3
	      w[$1] += s * $4 }
	    END { for (k in c) if (c[k] > 0 && k != "~batch")
		printf "%s %.0f, ", k, u[k] / c[k] * 1e6
		printf "commit wall %.0f, ", w["commit"] / c["commit"] * 1e6
		if (c["~batch"] > 0)
		    printf "%.1f renewals per commit", u["~batch"] / c["~batch"]
	    }' "$@" | sed 's/, $//'
}
serve A int
serve B intB
sign=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1); exit}')
sign_us=$(awk -v s="$sign" 'BEGIN {printf "%.1f", 1e6 / s}')
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; one P-256 sign ${sign_us} us"
echo "| PostgreSQL (fsync on) | renewals/s | ca serve CPU us each | postgres CPU us each | vs one sign (ca serve + postgres) | errors |"
echo "|---|---|---|---|---|---|"
row() {	# row WHAT RENEWALS SERVE_TICKS PG_TICKS ERRORS
	awk -v w="$1" -v n="$2" -v st="$3" -v pt="$4" -v e="$5" -v t="$tick" \
	    -v s="$secs" -v su="$sign_us" 'BEGIN {
		a = st / t * 1e6 / n; b = pt / t * 1e6 / n
		printf "| %s | %.0f | %.0f | %.0f | %.1fx | %s |\n", w, n / s, a, b, (a + b) / su, e }'
}
# one replica, 1 client and $clients clients
ph=
for n in 1 "$clients"; do
	snap A m0
	p0=$(pg_ticks) s0=$(ticks "$PID_A")
	out=$(bench A "$n")
	p1=$(pg_ticks) s1=$(ticks "$PID_A")
	snap A m1
	row "1 replica, $n client(s), keep-alive" "$(field "$out" renewals)" \
	    $((s1 - s0)) $((p1 - p0)) "$(field "$out" errors)"
	ph+="1 replica, $n client(s): $(phases m0 m1)"$'\n'
done
# two replicas, half the clients each, at the same time
half=$((clients / 2))
snap A m0; snap B n0
p0=$(pg_ticks) a0=$(ticks "$PID_A") b0=$(ticks "$PID_B")
bench A "$half" > outA & ja=$!
bench B "$half" > outB & jb=$!
wait "$ja" "$jb"
p1=$(pg_ticks) a1=$(ticks "$PID_A") b1=$(ticks "$PID_B")
snap A m1; snap B n1
ph+="2 replicas: $(phases m0 m1 n0 n1)"$'\n'
na=$(field "$(cat outA)" renewals) nb=$(field "$(cat outB)" renewals)
row "2 replicas, $half+$half clients, keep-alive" $((na + nb)) \
    $((a1 - a0 + b1 - b0)) $((p1 - p0)) \
    $(( $(field "$(cat outA)" errors) + $(field "$(cat outB)" errors) ))
echo "rows in the database: $(pg_sql ca 'SELECT count(*) FROM certs'), distinct serials: $(pg_sql ca 'SELECT count(DISTINCT serial) FROM certs')"
echo "ca serve's CPU us per renewal by phase (/metrics):"
printf '%s' "$ph"
