#!/usr/bin/env bash
# Runs the shared benchmark harness (../shared/bench, see its README) with
# this tree's build/mtls as the `mtls` row, next to nginx, HAProxy and
# stunnel in the same run. Results go to bench/results/<UTC time>/ (not
# committed); summarize them into RESULTS.md with `bench/run.sh report DIR`.
#   bench/run.sh handshake        PEERS="nginx haproxy stunnel mtls" by default
#   bench/run.sh pair | idle | crypto | all
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
harness=${BENCH_HARNESS:-$root/../shared/bench}
[ -x "$harness/run.sh" ] || { echo "bench: harness not found at $harness (set BENCH_HARNESS)" >&2; exit 2; }
make -C "$root" --no-print-directory all >&2
export MTLS_BIN=$root/build/mtls
if [ "${1:-}" != report ]; then
	export RESULTS_DIR=${RESULTS_DIR:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}
	mkdir -p "$RESULTS_DIR"
fi
if [ "${1:-}" = report ] && [ -n "${2:-}" ]; then
	set -- report "$(cd "$2" && pwd)"
fi
cd "$harness"
exec ./run.sh "$@"
