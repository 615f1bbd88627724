#!/usr/bin/env bash
# Issue 15's issuance table in one run: `openssl speed ecdsap256` before,
# then ROUNDS rounds of bench/ca.sh (SQLite: 1 client keep-alive, 64
# keep-alive, 64 new connection each) and bench/ca-pg.sh (PostgreSQL: 1
# replica 1 and 64 clients, 2 replicas 32+32), each build of BUILDS
# ("name=path/to/mtls ...", alternated in every round), then openssl speed
# again. The load average is printed with every run (the machine is
# shared). Needs make bench (build/bench/issuebench).
#   BUILDS="main=/tmp/old/build/mtls branch=build/mtls" bench/issuance-table.sh [SECONDS] [ROUNDS]
set -uo pipefail
secs=${1:-5}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
builds=${BUILDS:-branch=$root/build/mtls}
speed() { openssl speed -seconds 3 ecdsap256 2>/dev/null |
    awk '/256 bits ecdsa \(nistp256\)/ {printf "%.1f us (%s sign/s)", 1e6 / $(NF-1), $(NF-1); exit}'; }
echo "sign before: $(speed); load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%H:%M:%S) UTC"
for r in $(seq "$rounds"); do
	for b in $builds; do
		echo "## round $r, ${b%%=*}: SQLite, $(date -u +%H:%M:%S) UTC"
		MTLS=${b#*=} CLIENTS="1 64" "$root/bench/ca.sh" "$secs"
		echo "## round $r, ${b%%=*}: PostgreSQL, $(date -u +%H:%M:%S) UTC"
		MTLS=${b#*=} CLIENTS=64 "$root/bench/ca-pg.sh" "$secs"
	done
done
echo "sign after: $(speed); load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%H:%M:%S) UTC"
