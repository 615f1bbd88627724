#!/usr/bin/env bash
# The HTTP gateway against nginx doing the same mTLS termination and
# proxy_pass (keep-alive upstream pool), in the same run, through the
# shared harness's pair scenario (../shared/bench/pair.sh): wrk -> an
# outbound proxy -> the inbound under test -> nginx backend. The `nginx`
# row is nginx on both sides (L7, access_log off); the `cmd` row is the
# same nginx outbound (bench/nginx-outbound.sh, the harness's settings)
# then `mtls proxy --http` (the gateway): only the inbound differs, so
# req/s, p99 and the inbound's CPU per request compare like for like.
# OUTBOUND=mtls puts `mtls proxy --outbound` (L4) in front instead
# (OUTBOUND_MTLS=/path/to/another/mtls for it: an A/B of the L4 proxy alone).
#   bench/gateway.sh              access log off in the gateway (as nginx)
#   ACCESS_LOG=1 bench/gateway.sh with the gateway's per-request log line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
m=$(dirname "$here")/build/mtls
log=--no-access-log
[ "${ACCESS_LOG:-0}" = 1 ] && log=
export CMD_INBOUND="$m proxy --http --listen {LISTEN} --target {TARGET} --cert {CERT} --key {KEY} --ca {CA} --allow {ALLOW} --workers {WORKERS} $log"
export CMD_OUTBOUND="$here/nginx-outbound.sh {PORT} {TARGET} {CERT} {KEY} {CA} {SERVERNAME} {WORK}"
[ "${OUTBOUND:-nginx}" = mtls ] && export CMD_OUTBOUND="${OUTBOUND_MTLS:-$m} proxy --outbound --listen {LISTEN} --target {TARGET} --cert {CERT} --key {KEY} --ca {CA} --expect {EXPECT} --servername {SERVERNAME} --workers {WORKERS}"
export PAIR_PEERS=${PAIR_PEERS:-"nginx cmd"}
export PAIR_CASES=${PAIR_CASES:-"keepalive:/ keepalive:/1m"}
exec "$here/run.sh" pair
