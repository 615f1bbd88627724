#!/usr/bin/env bash
# Cost of a key in a PKCS#11 token (SoftHSM2) against the same key type in a
# file: `mtls ca issue` per command (process start, module load, login,
# one signature) and the proxy's server handshake (handshake_us from its
# log, one ECDSA P-256 signature per full handshake), N of each; then
# `ca serve` renewals (issue + fsync'd record, one keep-alive client, SECS
# seconds) on an intermediate whose key is a file or was generated in the
# token, with `openssl speed ecdsap256` from the same run; then `mtls agent
# --once` renewals (process start, mTLS, CSR, install) with a file key (a
# new key file each) and a token key (a new pair made in the token, the old
# one deleted, each), N/10 of each. The load average is printed at the
# start and the end (the machine is shared).
#   bench/pkcs11.sh [N] [SECS]   prints tables; nothing is written to the tree
set -euo pipefail
N=${1:-200}
SECS=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
M=$root/build/mtls
MOD=${MTLS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
d=$(mktemp -d /tmp/mtls-bench-p11.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$d"' EXIT
cd "$d"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$d" > softhsm2.conf
export SOFTHSM2_CONF=$d/softhsm2.conf
softhsm2-util --init-token --free --label b --pin 1234 --so-pin 5678 >/dev/null
id=0; for l in root server; do id=$((id + 1))
	pkcs11-tool --module "$MOD" --token-label b --login --pin 1234 --keypairgen --key-type EC:prime256v1 --label $l --id 0$id >/dev/null 2>&1
done
printf '1234\n' > pin && chmod 600 pin
uri() { echo "pkcs11:token=b;object=$1?pin-source=file:$d/pin"; }
"$M" ca init froot --trust-domain example.org >/dev/null
"$M" ca init troot --trust-domain example.org --key-uri "$(uri root)" --existing-key >/dev/null
ms() { echo $(( $(date +%s%N) / 1000000 )); }
issue() {	# issue CA: mean ms per `ca issue` over N/10 runs
	local n=$(( N / 10 )) t0 i
	t0=$(ms)
	for i in $(seq "$n"); do "$M" ca issue --ca "$1" --spiffe-id spiffe://example.org/b$i --out "$1-l$i" >/dev/null || echo "bench: $1 issue $i failed" >&2; done
	echo "scale=1; ($(ms) - $t0) / $n" | bc
}
fi=$(issue froot) ti=$(issue troot)

OPENSSL_CONF=/dev/null openssl req -new -engine pkcs11 -keyform engine -key "pkcs11:token=b;object=server;type=private?pin-value=1234" \
    -subj /CN=s -out server.csr 2>/dev/null
"$M" ca issue --ca froot --spiffe-id spiffe://example.org/s --dns localhost --out fserver >/dev/null
"$M" ca issue --ca froot --csr server.csr --spiffe-id spiffe://example.org/s --dns localhost --out tserver >/dev/null
"$M" ca issue --ca froot --spiffe-id spiffe://example.org/c --out client >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
be=$(port)
python3 -m http.server "$be" --bind 127.0.0.1 >/dev/null 2>&1 & pids+=($!)
hs() {	# hs NAME KEY: mean and median handshake_us over N connections
	local p pid log=$d/$1.log
	p=$(port)
	"$M" proxy --listen "127.0.0.1:$p" --target "127.0.0.1:$be" --cert "$1.pem" --key "$2" --ca froot/bundle.pem \
	    --allow-any --workers 1 2> "$log" & pid=$!	# in a subshell: stopped here, not by the trap
	for _ in $(seq 100); do grep -q '"event":"start"' "$log" && break; sleep 0.05; done
	for _ in $(seq "$N"); do
		curl -s -o /dev/null --max-time 5 --cacert froot/bundle.pem --cert client.pem --key client.key "https://localhost:$p/" || true
	done
	kill "$pid"; wait "$pid" 2>/dev/null || true
	grep '"event":"handshake"' "$log" | python3 -c 'import json,sys,statistics as s; v=[json.loads(l)["handshake_us"] for l in sys.stdin]; print("%d %.0f %.0f" % (len(v), s.mean(v), s.median(v)))'
}
read -r fn fmean fmed < <(hs fserver fserver.key)
read -r tn tmean tmed < <(hs tserver "$(uri server)")
printf '| key | ca issue, ms per command (n=%d) | proxy handshake_us mean / median (n) |\n|---|---|---|\n' $(( N / 10 ))
printf '| file (EC P-256) | %s | %s / %s (%s) |\n' "$fi" "$fmean" "$fmed" "$fn"
printf '| SoftHSM2 (EC P-256) | %s | %s / %s (%s) |\n' "$ti" "$tmean" "$tmed" "$tn"

# ca serve: renewals on an intermediate with a file key / a token key
"$M" ca intermediate fint --parent froot --name fint >/dev/null
"$M" ca intermediate tint --parent froot --name tint --key-uri "$(uri tint)" >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.key -subj /CN=b -out k.csr 2>/dev/null
renew() {	# renew CA: "renewals/s server_cpu_us_each"
	local p pid c0 n
	p=$(port)
	"$M" ca serve --ca "$1" --listen "127.0.0.1:$p" 2> "$1.serve.log" & pid=$!; pids+=($pid)
	for _ in $(seq 100); do grep -q '"event":"start"' "$1.serve.log" && break; sleep 0.05; done
	"$M" ca token create --ca "$1" --spiffe-id spiffe://example.org/bench > "$1.t"
	"$M" agent --ca-url "https://127.0.0.1:$p" --token-file "$1.t" --out-dir "$1-a" --once 2>/dev/null
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	n=$(python3 - "$1-a" "$p" "$SECS" <<'PY'
import http.client, json, ssl, sys, time
d, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.create_default_context(cafile=d + "/bundle.pem")
ctx.load_cert_chain(d + "/svid.pem", d + "/svid.key")
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
body = json.dumps({"csr": open("k.csr").read()})
n, t_end = 0, time.time() + secs
while time.time() < t_end:
    c.request("POST", "/v1/renew", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("HTTP %d" % r.status)
    n += 1
print(n)
PY
)
	echo "$n $(( $(awk '{print $14 + $15}' "/proc/$pid/stat") - c0 ))"
	kill "$pid"; wait "$pid" 2>/dev/null || true
}
read -r frn frt < <(renew fint)
read -r trn trt < <(renew tint)
tick=$(getconf CLK_TCK)
sign=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1); exit}')
echo
echo "load: $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) cores; openssl speed ecdsap256: $sign sign/s ($(echo "scale=1; 1000000 / $sign" | bc) us each)"
printf '| ca serve intermediate key | renewals/s (%ss, 1 keep-alive client) | server CPU us per renewal |\n|---|---|---|\n' "$SECS"
printf '| file (EC P-256) | %s | %s |\n' "$(echo "scale=1; $frn / $SECS" | bc)" "$(echo "scale=0; $frt * 1000000 / $tick / $frn" | bc)"
printf '| SoftHSM2 (EC P-256, made by ca intermediate --key-uri) | %s | %s |\n' "$(echo "scale=1; $trn / $SECS" | bc)" "$(echo "scale=0; $trt * 1000000 / $tick / $trn" | bc)"

# mtls agent --once renewals against ca serve on the file intermediate:
# a file key (a new key per renewal) and a token key (a new pair in the
# token per renewal, the old one deleted once the certificate is installed)
agents() {	# agents: "file_ms token_ms" mean per renewal over N/10 each
	local p pid n=$(( N / 10 )) t0 fm tm i
	p=$(port)
	"$M" ca serve --ca fint --listen "127.0.0.1:$p" 2> agents.serve.log & pid=$!; pids+=($pid)
	for _ in $(seq 100); do grep -q '"event":"start"' agents.serve.log && break; sleep 0.05; done
	"$M" ca token create --ca fint --spiffe-id spiffe://example.org/af > af.t
	"$M" ca token create --ca fint --spiffe-id spiffe://example.org/at > at.t
	"$M" agent --ca-url "https://127.0.0.1:$p" --token-file af.t --out-dir af --once 2>/dev/null
	"$M" agent --ca-url "https://127.0.0.1:$p" --token-file at.t --key "$(uri agent)" --out-dir at --once 2>/dev/null
	t0=$(ms)
	for i in $(seq "$n"); do "$M" agent --ca-url "https://127.0.0.1:$p" --token-file af.t --out-dir af --once 2>/dev/null || echo "bench: file renewal $i failed" >&2; done
	fm=$(echo "scale=1; ($(ms) - $t0) / $n" | bc)
	t0=$(ms)
	for i in $(seq "$n"); do "$M" agent --ca-url "https://127.0.0.1:$p" --key "$(uri agent)" --out-dir at --once 2>/dev/null || echo "bench: token renewal $i failed" >&2; done
	tm=$(echo "scale=1; ($(ms) - $t0) / $n" | bc)
	echo "$fm $tm $(pkcs11-tool --module "$MOD" --token-label b --login --pin 1234 --list-objects 2>/dev/null | grep -c 'label: *agent$')"
	kill "$pid"; wait "$pid" 2>/dev/null || true
}
read -r afm atm aobj < <(agents)
echo
printf '| agent key | mtls agent --once renewal, ms each (n=%d) |\n|---|---|\n' $(( N / 10 ))
printf '| file (a new key file each) | %s |\n' "$afm"
printf '| SoftHSM2 (a new pair each, the old deleted; %s objects left under the label) | %s |\n' "$aobj" "$atm"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
