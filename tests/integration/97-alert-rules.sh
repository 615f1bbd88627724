#!/usr/bin/env bash
# The alert rules (dist/prometheus/mtls.rules.yml, issue 17 §2) against a
# real fleet: ca serve, an inbound proxy with a 12 h certificate and a
# --crl made with --ttl 40s, an outbound proxy with a 30 d certificate,
# a third proxy whose certificate (enrolled from ca serve) gets an OCSP
# staple. Prometheus itself (Debian's prometheus, on 127.0.0.1) scrapes
# them every second and evaluates the rules file every second, with the
# `for:` lines removed (they delay firing, they are not the expression);
# the test reads GET /api/v1/alerts.
# - promtool check rules passes;
# - every metric a rule names is in the fleet's /metrics;
# - MtlsCertExpiringIn1d fires for the 12 h certificate, not the 30 d one;
# - MtlsCrlStale fires once the CRL is past nextUpdate, not before;
# - MtlsHandshakeFailuresRising fires after 60 refused handshakes, with
#   the taxonomy code as its result label;
# - no CA-certificate or staple alert fires on this fresh fleet.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
RULES="$_root/dist/prometheus/mtls.rules.yml"
command -v promtool > /dev/null && command -v prometheus > /dev/null \
    || { not_ok "prometheus and promtool are installed (scripts/deps.sh check)"; exit 0; }
expect_exit 0 "promtool check rules dist/prometheus/mtls.rules.yml" promtool check rules "$RULES"

pki_root_int
cp=$(free_port)
URL="https://localhost:$cp"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$cp" --url "$URL"
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/server --dns localhost --ttl 12h --out server
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/client --ttl 30d --out client
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/prod/stapled > st.token
"$MTLS" agent --once --ca-url "$URL" --token-file st.token --out-dir st > agent.log 2>&1 \
    || { not_ok "agent enrolls" "$(cat agent.log)"; exit 0; }

mkdir www && echo hello > www/hello.txt
be=$(free_port) in=$(free_port) out=$(free_port) sp=$(free_port) a1=$(free_port) a2=$(free_port) a3=$(free_port)
start_bg backend python3 -m http.server --bind 127.0.0.1 --directory www "$be"
wait_for 10 port_open "$be" || { not_ok "backend starts"; exit 0; }
q "$MTLS" ca crl --ca int --ttl 40s --out crl.pem
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert server.pem --key server.key \
    --ca root/bundle.pem --allow spiffe://example.org/ns/prod/client --crl crl.pem --admin "127.0.0.1:$a1" --workers 1
start_bg outbound "$MTLS" proxy --outbound --listen "127.0.0.1:$out" --target "127.0.0.1:$in" --cert client.pem \
    --key client.key --ca root/bundle.pem --expect spiffe://example.org/ns/prod/server --admin "127.0.0.1:$a2" --workers 1
start_bg stapler "$MTLS" proxy --listen "127.0.0.1:$sp" --target "127.0.0.1:$be" --cert st/svid.pem --key st/svid.key \
    --ca st/bundle.pem --allow-any --admin "127.0.0.1:$a3" --workers 1
for n in inbound outbound stapler; do
	wait_for 10 grep -q '"event":"start"' "$T_DIR/$n.log" || { not_ok "$n starts" "$(cat "$T_DIR/$n.log")"; exit 0; }
done
scrape() { curl -sS --max-time 5 "http://127.0.0.1:$1/metrics"; }
wait_for 15 sh -c "curl -sS --max-time 2 http://127.0.0.1:$a3/metrics | grep -q ^mtls_ocsp_staple_next_update" \
    || not_ok "the stapler staples" "$(tail -5 "$T_DIR/stapler.log")"
curl -sS --max-time 5 "http://127.0.0.1:$out/hello.txt" > got.txt 2>&1
grep -qx hello got.txt && ok "the pair relays" || not_ok "the pair relays" "$(cat got.txt; tail -n 3 "$T_DIR/outbound.log" "$T_DIR/inbound.log")"

# every metric the rules name is in our /metrics
{ scrape "$a1"; scrape "$a2"; scrape "$a3"; curl -sS --max-time 5 --cacert root/bundle.pem "$URL/metrics"; } > all.prom
miss=""
for m in $(grep -o 'mtls_[a-z_]*' "$RULES" | sort -u); do
	grep -q "^$m[{ ]" all.prom || miss="$miss $m"
done
[ -z "$miss" ] && ok "every metric the rules use is in the fleet's /metrics ($(grep -o 'mtls_[a-z_]*' "$RULES" | sort -u | wc -l) names)" \
    || not_ok "metrics missing from /metrics:$miss"

# prometheus: scrape every 1 s, rules without for:
pp=$(free_port)
grep -v '^ *for: ' "$RULES" > rules.yml
cat > prom.yml <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
scrape_configs:
  - job_name: proxy
    static_configs: [{targets: ["127.0.0.1:$a1", "127.0.0.1:$a2", "127.0.0.1:$a3"]}]
  - job_name: ca
    scheme: https
    tls_config: {ca_file: $T_DIR/root/bundle.pem, server_name: localhost}
    static_configs: [{targets: ["127.0.0.1:$cp"]}]
YML
start_bg prom prometheus --config.file=prom.yml --storage.tsdb.path="$T_DIR/tsdb" \
    --web.listen-address="127.0.0.1:$pp" --storage.tsdb.retention.time=1h
api() { curl -sS --max-time 5 "http://127.0.0.1:$pp/api/v1/$1"; }
# firing NAME FILTER: an alert NAME is firing whose labels match the
# python expression FILTER over l (its labels)
firing() {
	api alerts | python3 -c "
import json, sys
a = json.load(sys.stdin)['data']['alerts']
sys.exit(0 if any(x['labels']['alertname'] == '$1' and x['state'] == 'firing' and ($2)
    for l in [None] for x in a for l in [x['labels']]) else 1)"
}
wait_for 30 sh -c "curl -sS --max-time 2 'http://127.0.0.1:$pp/api/v1/query?query=up' | grep -q '\"value\"'" \
    || { not_ok "prometheus starts" "$(tail -5 "$T_DIR/prom.log")"; exit 0; }
wait_for 20 firing MtlsCertExpiringIn1d "l['id'] == 'spiffe://example.org/ns/prod/server'" \
    && ok "MtlsCertExpiringIn1d fires for the 12 h certificate" || not_ok "1d alert for the 12 h certificate" "$(api alerts)"
wait_for 5 sh -c "curl -sS --max-time 2 'http://127.0.0.1:$pp/api/v1/query?query=mtls_crl_next_update_timestamp_seconds' | grep -q '\"value\"'" || true
now=$(date +%s) nu=$(date -d "$(openssl crl -in crl.pem -noout -nextupdate | cut -d= -f2)" +%s)
if [ "$now" -lt $((nu - 3)) ]; then
	firing MtlsCrlStale "True" && not_ok "MtlsCrlStale fired before nextUpdate" || ok "MtlsCrlStale quiet while the CRL is current"
else
	not_ok "the CRL went stale before the first check (slow start: $((now - nu)) s past)"
fi
firing MtlsCertExpiringIn1d "l['id'] == 'spiffe://example.org/ns/prod/client'" \
    && not_ok "MtlsCertExpiringIn1d fired for the 30 d certificate" || ok "MtlsCertExpiringIn1d quiet for the 30 d certificate"
firing MtlsCertExpiringIn7d "l['id'] == 'spiffe://example.org/ns/prod/client'" \
    && not_ok "MtlsCertExpiringIn7d fired for the 30 d certificate" || ok "MtlsCertExpiringIn7d quiet for the 30 d certificate"

# refused handshakes: no client certificate
refuse() {
	python3 - "$in" "$1" <<'PY'
import socket, ssl, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.check_hostname = False
for _ in range(n):
    try:
        with socket.create_connection(("127.0.0.1", port), 3) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.settimeout(3)
                t.sendall(b"GET / HTTP/1.0\r\n\r\n")
                t.recv(10)
    except (OSError, ssl.SSLError):
        pass
PY
}
refuse 1
wait_for 10 sh -c "curl -sS --max-time 2 'http://127.0.0.1:$pp/api/v1/query?query=mtls_handshakes_total%7Bresult!=\"ok\"%7D' | grep -q '\"value\"'" \
    || not_ok "prometheus sees the first refused handshake" "$(scrape "$a1" | grep handshakes_total)"
firing MtlsHandshakeFailuresRising "True" && not_ok "handshake alert before the burst" || ok "MtlsHandshakeFailuresRising quiet before the burst"
refuse 60
code=$(scrape "$a1" | sed -n 's/^mtls_handshakes_total{role="server",result="\([a-z_]*\)".*/\1/p' | grep -v '^ok$' | head -n 1)
wait_for 15 firing MtlsHandshakeFailuresRising "l['result'] == '$code' and l['role'] == 'server'" \
    && ok "MtlsHandshakeFailuresRising fires after 60 refused handshakes (result=$code)" \
    || not_ok "handshake failures alert" "$(scrape "$a1" | grep handshakes_total; api alerts)"
wait_for 60 firing MtlsCrlStale "l['listener'] != ''" && ok "MtlsCrlStale fires once the CRL is past nextUpdate" \
    || not_ok "stale CRL alert" "$(scrape "$a1" | grep crl_next; api alerts)"
firing 'MtlsCaCertExpiringIn7d' "True" || firing MtlsOcspStapleStale "True" || firing MtlsCertNotRenewed "True" \
    && not_ok "a CA, staple or renewal alert fired on a fresh fleet" "$(api alerts)" \
    || ok "no CA-certificate, staple or 2/3-life alert on a fresh fleet"

# the dashboard (dist/grafana/mtls.json): every panel query parses and
# runs in Prometheus ($instance as .*), every metric it names is printed
# by our code
DASH="$_root/dist/grafana/mtls.json"
python3 - "$DASH" "http://127.0.0.1:$pp/api/v1/query" > dash.txt 2>&1 <<'PY'
import json, sys, urllib.parse, urllib.request
d = json.load(open(sys.argv[1]))
bad, n = [], 0
for p in d["panels"]:
    for t in p.get("targets", []):
        e = t["expr"].replace("$instance", ".*")
        n += 1
        try:
            r = json.load(urllib.request.urlopen(sys.argv[2] + "?" + urllib.parse.urlencode({"query": e}), timeout=5))
            if r.get("status") != "success":
                bad.append(e)
        except Exception as x:
            bad.append(e + ": " + str(x))
print(n, "queries")
for b in bad:
    print("BAD", b)
sys.exit(1 if bad or n == 0 else 0)
PY
[ $? = 0 ] && ok "the dashboard's $(head -n 1 dash.txt) run in Prometheus" || not_ok "dashboard queries" "$(cat dash.txt)"
miss=""
for m in $(grep -o 'mtls_[a-z_]*' "$DASH" | sed 's/_\(bucket\|sum\|count\)$//' | sort -u); do
	grep -rqF "$m" "$_root/src/svc" || miss="$miss $m"
done
[ -z "$miss" ] && ok "every metric the dashboard names is in the code" || not_ok "dashboard metrics not in src/svc:$miss"
