#!/usr/bin/env bash
# Issuance takes no lock in ca serve (issue 15): what it could race.
# 24 tokens, each sent twice at once (48 enrollments in parallel): each
# token gives exactly one certificate, every serial is distinct and in the
# inventory. Then 16 clients renew in parallel for 8 s while ca serve
# renews its own server certificate (--server-ttl 6s): every renewal is
# answered 200, serials stay distinct, the own certificate was renewed.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" \
    --server-ttl 6s
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
n=24
for i in $(seq $n); do
	"$MTLS" ca token create --ca int --spiffe-id "spiffe://example.org/race/$i" > "t$i"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "k$i.key" \
	    -subj "/CN=r$i" -out "k$i.csr" 2>/dev/null
done
python3 - "$port" "$n" > enroll.txt <<'PY'
import http.client, json, ssl, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(cafile="int/bundle.pem")
ctx.check_hostname = False
out, lock, go = [], threading.Lock(), threading.Barrier(2 * n)
def enroll(i):
    body = json.dumps({"token": open("t%d" % i).read().strip(), "csr": open("k%d.csr" % i).read()})
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    c.connect(); go.wait()
    c.request("POST", "/v1/enroll", body, {"Content-Type": "application/json"})
    r = c.getresponse(); d = json.loads(r.read())
    with lock:
        out.append((i, r.status, d.get("serial", d.get("error", ""))))
        if r.status == 200:
            open("c%d.pem" % i, "w").write(d["certificate"])
ts = [threading.Thread(target=enroll, args=(i,)) for i in range(1, n + 1) for _ in (0, 1)]
[t.start() for t in ts]; [t.join() for t in ts]
for i, st, s in out: print(i, st, s)
PY
oks=$(awk '$2 == 200' enroll.txt | wc -l)
once=$(awk '$2 == 200 {print $1}' enroll.txt | sort | uniq -d | wc -l)
refused=$(awk '$2 == 401 && $3 == "bad_token"' enroll.txt | wc -l)
[ "$oks" = $n ] && [ "$once" = 0 ] && [ "$refused" = $n ] &&
    ok "48 parallel enrollments, each token twice: $n certificates, one per token, $n refused as bad_token" ||
    not_ok "each token once" "200s $oks, tokens twice $once, refused $refused: $(sort -n enroll.txt | head -6)"
sers=$(awk '$2 == 200 {print $3}' enroll.txt | sort -u | wc -l)
"$MTLS" ca list --ca int --json > list.json
inv=$(awk '$2 == 200 {print $3}' enroll.txt | python3 -c '
import json, sys
rows = json.load(open("list.json"))
have = {str(r.get("serial", "")).upper().lstrip("0") for r in (rows if isinstance(rows, list) else rows.get("certificates", []))}
print(sum(1 for s in sys.stdin if s.strip().upper().lstrip("0") in have))')
[ "$sers" = $n ] && [ "$inv" = $n ] && ok "their $n serials are distinct and all in the inventory" ||
    not_ok "distinct recorded serials" "distinct $sers, in inventory $inv"

r0=$(grep -c '"event":"server_cert_renewed"' "$T_DIR/caserve.log" || true)
python3 - "$port" 16 8 > renew.txt <<'PY'
import http.client, json, ssl, sys, threading, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
res, lock = {"ok": 0, "bad": [], "serials": set()}, threading.Lock()
def renew(i):
    ctx = ssl.create_default_context(cafile="int/bundle.pem")
    ctx.check_hostname = False
    ctx.load_cert_chain("c%d.pem" % i, "k%d.key" % i)
    body = json.dumps({"csr": open("k%d.csr" % i).read()})
    end = time.time() + secs
    while time.time() < end:
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("POST", "/v1/renew", body, {"Content-Type": "application/json"})
            r = c.getresponse(); d = json.loads(r.read()); c.close()
        except Exception as e:
            with lock: res["bad"].append(str(e)); continue
        with lock:
            if r.status == 200:
                res["ok"] += 1; res["serials"].add(d["serial"])
            else:
                res["bad"].append("%d %s" % (r.status, d.get("error")))
ts = [threading.Thread(target=renew, args=(i,)) for i in range(1, n + 1)]
[t.start() for t in ts]; [t.join() for t in ts]
print(res["ok"], len(res["serials"]), len(res["bad"]), "; ".join(res["bad"][:3]))
PY
read -r rok rser rbad rest < renew.txt
r1=$(grep -c '"event":"server_cert_renewed"' "$T_DIR/caserve.log" || true)
[ "$rok" -gt 16 ] && [ "$rbad" = 0 ] && [ "$rser" = "$rok" ] &&
    ok "16 clients renewed $rok times in parallel (new connection each), all 200, all serials distinct" ||
    not_ok "parallel renewals" "ok $rok distinct $rser failed $rbad: $rest"
[ "$r1" -gt "$r0" ] && ok "ca serve renewed its own certificate $((r1 - r0)) time(s) meanwhile" ||
    not_ok "own renewal during the load" "$(grep server_cert "$T_DIR/caserve.log" | tail -2)"
grep -q '"level":"error"' "$T_DIR/caserve.log" && not_ok "no error line" "$(grep '"level":"error"' "$T_DIR/caserve.log" | head -2)" ||
    ok "ca serve logged no error"
