#!/usr/bin/env bash
# SIGHUP reloads ca serve's CA directory (issue 16): a whole new snapshot
# is swapped in while renewals run. 8 clients renew in parallel for 8 s
# while the directory is reloaded again and again: a good one (ok), a
# broken ca.conf (refused with a reload failed line, the old snapshot
# keeps serving), the rotation's publish (/v1/bundle then serves both roots
# and the cross-certificate) and its switch (new certificates come from
# the new root; clients holding the old root's certificates still renew).
# Every renewal is answered 200.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
"$MTLS" ca init root --trust-domain example.org > /dev/null
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --url "$URL"
ca_pid=$BG_PID
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
n=8
for i in $(seq $n); do
	"$MTLS" ca issue --ca root --spiffe-id "spiffe://example.org/r/$i" --out "c$i" > /dev/null
	openssl req -new -key "c$i.key" -subj "/CN=r$i" -out "c$i.csr" 2>/dev/null
done
"$MTLS" ca rotation prepare --ca root > /dev/null
# the clients trust what the fleet trusts during the overlap: both roots
cat root/bundle.pem root/rotation/new.pem > trust.pem
reloads() {
	hup() { kill -HUP "$ca_pid"; local want=$1; wait_for 5 test "$(grep -c '"event":"reload"' "$T_DIR/caserve.log")" -ge "$want"; }
	sleep 1; hup 1
	cp root/ca.conf conf.bak; echo "bogus_key = 1" >> root/ca.conf
	sleep 1; hup 2
	cp conf.bak root/ca.conf
	"$MTLS" ca rotation publish --ca root > /dev/null
	sleep 1; hup 3
	"$MTLS" ca rotation switch --ca root > /dev/null
	sleep 1; hup 4
	sleep 2; touch stop	# renewals under the new root too
}
reloads > reloads.out 2>&1 &
rl=$!
python3 - "$port" "$n" 30 > renew.txt <<'PY'
import http.client, json, os, ssl, sys, threading, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
res, lock = {"ok": 0, "bad": []}, threading.Lock()
def renew(i):
    ctx = ssl.create_default_context(cafile="trust.pem")
    ctx.check_hostname = False
    ctx.load_cert_chain("c%d.pem" % i, "c%d.key" % i)
    body = json.dumps({"csr": open("c%d.csr" % i).read()})
    end = time.time() + secs
    while time.time() < end and not os.path.exists("stop"):
        try:
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("POST", "/v1/renew", body, {"Content-Type": "application/json"})
            r = c.getresponse(); d = json.loads(r.read()); c.close()
        except Exception as e:
            with lock: res["bad"].append(str(e)); continue
        with lock:
            if r.status == 200:
                res["ok"] += 1
                open("last.pem", "w").write(d["certificate"])
            else:
                res["bad"].append("%d %s %s" % (r.status, d.get("error"), d.get("message")))
ts = [threading.Thread(target=renew, args=(i,)) for i in range(1, n + 1)]
[t.start() for t in ts]; [t.join() for t in ts]
print(res["ok"], len(res["bad"]), "; ".join(res["bad"][:3]))
PY
wait "$rl"
read -r rok rbad rest < renew.txt
[ "$rok" -gt 16 ] && [ "$rbad" = 0 ] &&
    ok "8 clients renewed $rok times through 4 reloads, all 200" ||
    not_ok "renewals through the reloads" "ok $rok failed $rbad: $rest"
grep '"event":"reload"' "$T_DIR/caserve.log" > reload.lines
[ "$(grep -c '"result":"ok"' reload.lines)" = 3 ] && [ "$(grep -c '"result":"failed"' reload.lines)" = 1 ] &&
    ok "3 reloads taken, 1 refused" || not_ok "reload results" "$(cat reload.lines) $(cat reloads.out)"
expect_grep '"result":"failed".*bogus_key' reload.lines "the broken ca.conf is refused, naming the key"
expect_grep '"result":"ok".*"rotation":"switched"' reload.lines "the switch was taken by a reload"
issuer=$(openssl x509 -in last.pem -noout -issuer)
newsub=$(openssl x509 -in root/rotation/new.pem -noout -subject | sed 's/^subject=//')
case "$issuer" in *"$newsub"*) ok "after the switch, renewals are issued by the new root";;
	*) not_ok "issued by the new root" "$issuer vs $newsub";; esac
curl -sS --cacert trust.pem "$URL/v1/bundle" --resolve "localhost:$port:127.0.0.1" > bundle.json
nb=$(python3 -c 'import json; print(json.load(open("bundle.json"))["bundle"].count("BEGIN CERTIFICATE"))')
[ "$nb" = 3 ] && ok "/v1/bundle serves the overlap bundle (2 roots and the cross-certificate)" ||
    not_ok "overlap bundle" "$nb certificates: $(head -c 300 bundle.json)"
old=$(grep -o '"event":"server_cert_reused","serial":"[0-9A-F]*"' "$T_DIR/caserve.log" | head -1 | grep -o '[0-9A-F]\{16,\}')
"$MTLS" ca list --ca root --revoked > revoked.txt 2>&1
expect_grep "$old" revoked.txt "the switch revoked ca serve's previous certificate (superseded)"
kill -0 "$ca_pid" && ok "ca serve still runs" || not_ok "ca serve still runs" "$(tail -5 "$T_DIR/caserve.log")"
