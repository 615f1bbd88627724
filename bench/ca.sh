#!/usr/bin/env bash
# Issuance and OCSP throughput of `mtls ca serve` on this machine, next to
# the cost of one ECDSA P-256 signature (openssl speed) measured in the same
# run. One keep-alive client connection per phase (Python's ssl), renewals
# with a client certificate, each durably recorded (WAL, synchronous=FULL).
# Then, when build/bench/issuebench is built (make bench), renewals from
# bench/issuebench.c (C on libmtls, a fresh CSR per renewal made before the
# timed phase): CLIENTS keep-alive clients for each count in $CLIENTS, and
# the largest count again with a new connection per renewal.
#   bench/ca.sh [SECONDS]      prints a Markdown table (and the load)
#   CLIENTS="1 64" by default
set -euo pipefail
secs=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
MTLS=${MTLS:-$root/build/mtls}	# MTLS=/old/mtls for an A/B in one run
w=$(mktemp -d /tmp/mtls-cabench.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$w"' EXIT
cd "$w"
"$MTLS" ca init root --trust-domain example.org >/dev/null
"$MTLS" ca intermediate int --parent root --name int >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --max-conns-per-ip 1024 \
    2> serve.log &
pid=$!
for i in $(seq 100); do grep -q '"event":"start"' serve.log && break; sleep 0.1; done
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/bench > t
"$MTLS" agent --ca-url "https://127.0.0.1:$port" --token-file t --out-dir a --once 2>/dev/null
openssl x509 -in int/ca.pem -out int1.pem
openssl ocsp -issuer int1.pem -cert a/svid.pem -reqout req.der -no_nonce >/dev/null 2>&1
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.key -subj /CN=b -out k.csr 2>/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
tick=$(getconf CLK_TCK)
phase() {	# phase renew|ocsp: prints "requests cpu_ticks"
	local c0 out
	c0=$(cpu)
	out=$(python3 - "$1" "$port" "$secs" <<'PY'
import http.client, json, ssl, sys, time
what, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.create_default_context(cafile="a/bundle.pem")
ctx.load_cert_chain("a/svid.pem", "a/svid.key")
c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
body = json.dumps({"csr": open("k.csr").read()}) if what == "renew" else open("req.der", "rb").read()
path, ctype = ("/v1/renew", "application/json") if what == "renew" else ("/v1/ocsp", "application/ocsp-request")
n, t_end = 0, time.time() + secs
while time.time() < t_end:
    c.request("POST", path, body, {"Content-Type": ctype})
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit("HTTP %d" % r.status)
    n += 1
print(n)
PY
)
	echo "$out $(( $(cpu) - c0 ))"
}
read -r rn rt <<< "$(phase renew)"
read -r on ot <<< "$(phase ocsp)"
ib=$root/build/bench/issuebench
rows=
if [ -x "$ib" ]; then
	last=
	for n in ${CLIENTS:-1 64}; do
		rows+="$("$ib" --port "$port" --cert a/svid.pem --key a/svid.key \
		    --bundle a/bundle.pem --pid "$pid" --clients "$n" \
		    --seconds "$secs")"$'\n'
		last=$n
	done
	rows+="$("$ib" --port "$port" --cert a/svid.pem --key a/svid.key \
	    --bundle a/bundle.pem --pid "$pid" --clients "$last" --new-conn \
	    --seconds "$secs")"$'\n'
fi
# per-phase cost of all the renewals above (ca serve's /metrics, issue 15)
phases=$(curl -sS --max-time 5 --cacert a/bundle.pem "https://127.0.0.1:$port/metrics" |
    awk -F'[{}" ]+' '/^mtls_ca_phase_seconds_total/ {s[$3]=$4}
	/^mtls_ca_phase_cpu_seconds_total/ {u[$3]=$4} /^mtls_ca_phase_calls_total/ {c[$3]=$4}
	END {for (k in s) if (c[k] > 0) printf "%s %.0f/%.0f, ", k, s[k]/c[k]*1e6, u[k]/c[k]*1e6}' || true)
sign=$(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1); exit}')
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
[ -n "$phases" ] && echo "per renewal, us wall/CPU: ${phases%, }"
python3 - "$rn" "$rt" "$on" "$ot" "$secs" "$tick" "$sign" "$rows" <<'PY'
import sys
rows = sys.argv[8]
rn, rt, on, ot, secs, tick, sign = map(float, sys.argv[1:8])
us = lambda t, n: t / tick * 1e6 / n
sign_us = 1e6 / sign
print("| what | per second | server CPU us each | vs one P-256 sign (%.0f us) |" % sign_us)
print("|---|---|---|---|")
print("| renew (issue + fsync'd record) | %.0f | %.0f | %.1fx |" % (rn / secs, us(rt, rn), us(rt, rn) / sign_us))
print("| OCSP response (signed) | %.0f | %.0f | %.1fx |" % (on / secs, us(ot, on), us(ot, on) / sign_us))
for line in rows.splitlines():
    f = dict(kv.split("=") for kv in line.split())
    cpu = float(f["server_cpu_us"])
    print("| renew, issuebench, %s client(s), %s | %s | %.0f | %.1fx |" % (
        f["clients"], "keep-alive" if f["mode"] == "keepalive" else
        "new connection each", f["per_s"], cpu, cpu / sign_us))
PY
