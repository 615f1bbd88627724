#!/usr/bin/env bash
# Renewals over one kept-alive connection (issue 15): ca serve checks the
# client certificate's issuer and signature once per connection, but its
# inventory record, and so its revocation, on every request. A revocation
# made while the connection is open refuses the next renewal on it.
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
pki_root_int
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/prod/web --out web
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout n.key -subj /CN=n -out n.csr 2>/dev/null
port=$(free_port)
URL="https://localhost:$port"
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --admin spiffe://example.org/admin
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }
serial=$(openssl x509 -in web.pem -noout -serial | cut -d= -f2)
printf '{"serial": "%s", "reason": "keyCompromise"}' "$serial" > rev.json
# One connection: renew twice, let an admin revoke (another connection),
# renew again on the first; each answer's status on a line.
timeout 60 python3 - "$port" "$URL" > statuses.txt 2> py.err <<'PY'
import http.client, json, ssl, subprocess, sys
port, url = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile="root/bundle.pem")
ctx.load_cert_chain("web.pem", "web.key")
c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
body = json.dumps({"csr": open("n.csr").read()})
def renew():
    c.request("POST", "/v1/renew", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    d = r.read().decode()
    print(r.status, json.loads(d).get("error", "-"))
renew()
renew()
rc = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", "root/bundle.pem",
    "--cert", "admin.pem", "--key", "admin.key", "-H", "Content-Type: application/json",
    "--data-binary", "@rev.json", "-o", "/dev/null", "-w", "%{http_code}", url + "/v1/revoke"],
    capture_output=True, text=True).stdout
print("revoke", rc)
renew()
PY
mapfile -t st < statuses.txt
[ "${st[0]:-}" = "200 -" ] && [ "${st[1]:-}" = "200 -" ] \
    && ok "two renewals on one kept-alive connection: 200, 200" || not_ok "keep-alive renewals" "$(cat statuses.txt py.err)"
[ "${st[2]:-}" = "revoke 200" ] && ok "an admin revokes the client's certificate meanwhile" || not_ok "revoke" "$(cat statuses.txt py.err)"
[ "${st[3]:-}" = "403 revoked" ] \
    && ok "the next renewal on the same connection is refused: 403 revoked (nothing stale)" \
    || not_ok "renewal after revocation on the same connection" "$(cat statuses.txt py.err)"
n=$(sqlite3 int/inventory.db "SELECT count(*) FROM certs" 2>/dev/null || echo "?")
[ "$n" = 5 ] && ok "the inventory holds the 2 renewals and nothing for the refused one" \
    || not_ok "inventory count" "$n rows"
