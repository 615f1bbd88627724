#!/usr/bin/env bash
# ca serve's inventory: the JSON endpoints (/v1/inventory, .../summary,
# .../identity) with curl, and the page /ui in a real browser (headless
# Chromium from Debian) holding the admin's PKCS#12 in its NSS database.
# Every figure is checked against a count made here, in Python, from the
# inventory's rows; --admin only (a non-admin certificate is refused, in
# curl and in the browser); hostile query parameters are 400s. A PNG of
# each view is written to $ARTIFACTS/99-ui/ (default build/artifacts/).
. "$(dirname "$0")/lib.sh"
cd "$T_DIR"
ART=${ARTIFACTS:-$BUILD/artifacts}/99-ui
case "$ART" in /*) ;; *) ART="$_root/$ART" ;; esac
mkdir -p "$ART" && rm -f "$ART"/*.png "$ART"/*.html

q "$MTLS" ca init root --trust-domain example.org
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/admin --out admin
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/ops/sa/viewer --out viewer
# known rows: web twice (a renewal), api within 7 d, db revoked
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/prod/sa/web --ttl 12h --out web1
t0=$(date +%s)	# web2 is newer: made in a later second (created_at)
wait_for 3 bash -c "[ \$(date +%s) -gt $t0 ]"
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/prod/sa/web --ttl 60h --out web2
q "$MTLS" ca issue --ca root --dns api.example.org --ttl 120h --out api
q "$MTLS" ca issue --ca root --spiffe-id spiffe://example.org/ns/prod/sa/db --ttl 720h --out db
q "$MTLS" ca revoke --ca root "$(serial_of db.pem)" --reason keyCompromise
# and 1,200 synthetic rows (pages, histograms, renewals, reasons)
q python3 "$_root/bench/gen_inventory.py" --sqlite root/inventory.db --count 1200 --seed 7

port=$(free_port)
URL="https://127.0.0.1:$port"
start_bg caserve "$MTLS" ca serve --ca root --listen "127.0.0.1:$port" --admin spiffe://example.org/admin
log="$T_DIR/caserve.log"
wait_for 10 grep -q '"event":"start"' "$log" || { not_ok "ca serve starts" "$(cat "$log")"; exit 0; }

c() { curl -sS --cacert root/bundle.pem "$@"; }
A=(--cert admin.pem --key admin.key)
# get NAME PATH WANT_STATUS PATTERN [curl args]: body in $T_DIR/body
get() {
	local name=$1 path=$2 want=$3 pat=$4 code
	shift 4
	code=$(c -o "$T_DIR/body" -w '%{http_code}' "$@" "$URL$path")
	if [ "$code" = "$want" ] && grep -qE -- "$pat" "$T_DIR/body"; then ok "$name"
	else not_ok "$name" "status $code, want $want /$pat/: $(head -c 400 "$T_DIR/body")"; fi
}

# ---- the admin rule, on every route of the inventory ----
for p in /v1/inventory /v1/inventory/summary "/v1/inventory/identity?id=x" /ui /ui/app.js; do
	get "$p: no client certificate: 401" "$p" 401 client_cert_required
	get "$p: a certificate of this CA matching no --admin: 403" "$p" 403 not_admin \
	    --cert viewer.pem --key viewer.key
done
get "summary: the admin: 200" /v1/inventory/summary 200 '"counts"' "${A[@]}"
cp "$T_DIR/body" summary.json

# ---- every figure against a count from the rows, at the answer's now ----
cat > expect.py <<'PY'
import json, sqlite3, sys
s = json.load(open(sys.argv[2]))
now = s["now"]
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT serial, kind, identities, not_after, status, "
                  "reason, created_at FROM certs").fetchall()
valid = [r for r in rows if r[4] == "valid" and r[3] > now]
e = {"total": len(rows), "revoked": sum(r[4] == "revoked" for r in rows),
     "expired": sum(r[4] == "valid" and r[3] <= now for r in rows),
     "valid": len(valid)}
for k, d in (("1d", 1), ("3d", 3), ("7d", 7)):
    e[k] = sum(r[3] <= now + d * 86400 for r in valid)
first = {}	# identities -> the serial of their first leaf (one, in a tie)
for r in sorted((r for r in rows if r[1] == "leaf"), key=lambda r: (r[6], r[0])):
    first.setdefault(r[2], r[0])
def rate(w, n):
    iss, ren = [0] * n, [0] * n
    for r in rows:
        if r[1] != "leaf" or not (now - w * n < r[6] <= now):
            continue
        i = (r[6] - (now - w * n + 1)) // w
        if first[r[2]] == r[0]:
            iss[i] += 1
        else:
            ren[i] += 1
    return iss, ren
def hist(w, n):
    h = [0] * n
    for r in valid:
        if r[3] <= now + w * n:
            h[(r[3] - now - 1) // w] += 1
    return h
names = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged",
         4: "superseded", 5: "cessationOfOperation", 9: "privilegeWithdrawn"}
reasons = {}
for r in rows:
    if r[4] == "revoked":
        reasons[names[r[5] or 0]] = reasons.get(names[r[5] or 0], 0) + 1
bad = []
def same(what, got, want):
    if got != want:
        bad.append("%s: got %s, want %s" % (what, got, want))
for k in ("total", "valid", "revoked", "expired"):
    same(k, s["counts"][k], e[k])
for k in ("1d", "3d", "7d"):
    same("expiring_within " + k, s["expiring_within"][k], e[k])
same("expiry hours", s["expiry"]["hours"]["counts"], hist(3600, 48))
same("expiry days", s["expiry"]["days"]["counts"], hist(86400, 30))
same("expiry weeks", s["expiry"]["weeks"]["counts"], hist(604800, 12))
for k, w, n in (("hours", 3600, 48), ("days", 86400, 30)):
    iss, ren = rate(w, n)
    same("issued " + k, s["issuance"][k]["issued"], iss)
    same("renewed " + k, s["issuance"][k]["renewed"], ren)
same("revocations", s["revocations"], reasons)
e["renewed_days"] = sum(rate(86400, 30)[1])
e["issued_days"] = sum(rate(86400, 30)[0])
e["reasons"] = reasons
e["days_sum"] = sum(hist(86400, 30))
json.dump(e, open("expect.json", "w"))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
expect_exit 0 "summary: counts, thresholds, histograms, issuance and renewals, reasons equal a count of the rows" \
    python3 expect.py root/inventory.db summary.json
ex() { python3 -c "import json; print(json.load(open('expect.json'))$1)"; }
[ "$(ex "['renewed_days']")" -ge 1 ] && ok "the inventory has renewals to show ($(ex "['renewed_days']"))" \
    || not_ok "renewals in the fixture"

# ---- pages: every row once, in order, whatever the page size ----
cat > walk.py <<'PY'
import json, subprocess, sys
url, limit, query = sys.argv[1], sys.argv[2], sys.argv[3]
seen, cur, pages = [], None, 0
while pages < 1000:
    u = url + "/v1/inventory?limit=" + limit + query + ("&cursor=" + cur if cur else "")
    d = json.loads(subprocess.run(["curl", "-sS", "--cacert", "root/bundle.pem",
        "--cert", "admin.pem", "--key", "admin.key", u], capture_output=True,
        check=True).stdout)
    seen += [(i["not_after"], i["serial"]) for i in d["items"]]
    pages += 1
    cur = d["next_cursor"]
    if not cur:
        break
ok = seen == sorted(seen) and len(set(seen)) == len(seen)
print(len(seen), pages, "ordered" if ok else "NOT ORDERED OR REPEATED")
PY
total=$(ex "['total']")
get "limit=500 is the largest page" "/v1/inventory?limit=500" 200 '"next_cursor":"' "${A[@]}"
python3 walk.py "$URL" 500 "" > walk.out
[ "$(cat walk.out)" = "$total $(( (total + 499) / 500 )) ordered" ] && ok "pages of 500 walk all $total rows in (not_after, serial) order" \
    || not_ok "walk of pages" "$(cat walk.out), want $total rows"
python3 walk.py "$URL" 7 "&state=revoked" > walk.out
[ "$(cut -d' ' -f1,3 walk.out)" = "$(ex "['revoked']") ordered" ] && ok "state=revoked in pages of 7: every revoked row" \
    || not_ok "revoked walk" "$(cat walk.out)"
python3 walk.py "$URL" 100 "&state=expiring&expiring_within=3d" > walk.out
[ "$(cut -d' ' -f1 walk.out)" = "$(ex "['3d']")" ] && ok "state=expiring&expiring_within=3d: the 3 d count" \
    || not_ok "expiring walk" "$(cat walk.out) want $(ex "['3d']")"

# ---- identity history and search ----
web1=$(serial_of web1.pem) web2=$(serial_of web2.pem) db=$(serial_of db.pem)
get "identity history: both certificates of web, newest first" \
    "/v1/inventory/identity?id=spiffe%3A%2F%2Fexample.org%2Fns%2Fprod%2Fsa%2Fweb" 200 \
    "\"items\":\\[\\{\"serial\":\"$web2\".*\"serial\":\"$web1\".*\"truncated\":false" "${A[@]}"
[ "$(grep -o '"serial"' "$T_DIR/body" | wc -l)" = 2 ] && ok "and nothing else (an identity is a whole line)" \
    || not_ok "identity rows" "$(head -c 300 "$T_DIR/body")"
get "search by serial prefix (lower case) finds db, revoked with its reason" \
    "/v1/inventory?q=$(echo "${db:0:10}" | tr A-F a-f)" 200 "\"serial\":\"$db\".*\"status\":\"revoked\".*\"reason\":\"keyCompromise\"" "${A[@]}"
get "search by DNS name" "/v1/inventory?q=api.example" 200 '"dns:api.example.org"' "${A[@]}"
get "search finds nothing: an empty page" "/v1/inventory?q=nosuchname" 200 '"items":\[\],"next_cursor":null' "${A[@]}"

# ---- hostile parameters: 400 bad_query, naming what is wrong ----
long=$(head -c 300 /dev/zero | tr '\0' a)
while IFS='|' read -r name qs pat; do
	get "400: $name" "/v1/inventory?$qs" 400 "\"bad_query\".*$pat" "${A[@]}"
done <<EOF
an unknown parameter|order=serial|unknown query parameter 'order'
a parameter twice|limit=5&limit=6|given twice
a bad state|state=valid%27--|state: give
limit 0|limit=0|limit: a number from 1 to 500
limit 501|limit=501|limit: a number
limit with a leading zero|limit=0500|limit: a number from 1 to 500
limit with a plus|limit=%2B5|limit: a number
limit after a space|limit=%205|limit
limit before a space|limit=5%20|limit
limit in hex|limit=0x10|limit: a number
a cursor with a leading zero|cursor=01.01|cursor: give
a negative limit|limit=-1|limit
expiring_within over 366 days|expiring_within=400d|at most 366d
expiring_within with state=revoked|state=revoked&expiring_within=1d|state=expiring only
a cursor we did not make|cursor=1;DROP-TABLE|cursor: give
a NUL byte|q=a%00b|visible ASCII
a control byte|q=%0a|visible ASCII
non-ASCII|q=%C3%A9|visible ASCII
a broken escape|q=%zz|two hex digits
a cut escape|q=ab%4|two hex digits
a space|q=a+b|visible ASCII
a search of 300 bytes|q=$long|too long
EOF
get "400: summary takes no parameter" "/v1/inventory/summary?x=1" 400 bad_query "${A[@]}"
get "400: identity without id" "/v1/inventory/identity" 400 "id: give" "${A[@]}"
get "400: identity limit with a leading zero" "/v1/inventory/identity?id=x&limit=0500" 400 "limit: a number from 1 to 500" "${A[@]}"
get "404: no such inventory route" "/v1/inventory/other" 404 not_found "${A[@]}"
get "404: no such file of the page" "/ui/secret" 404 not_found "${A[@]}"
get "405: POST" "/v1/inventory" 405 method_not_allowed "${A[@]}" -X POST -d x
get "the store is unchanged by all of it" /v1/inventory/summary 200 "\"total\":$total," "${A[@]}"

# ---- the page's files: types and headers ----
csp="Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
for f in "/ui|text/html; charset=utf-8" "/ui/app.js|text/javascript; charset=utf-8" "/ui/app.css|text/css; charset=utf-8"; do
	p=${f%%|*} t=${f#*|}
	c -D hdr -o /dev/null "${A[@]}" "$URL$p"
	tr -d '\r' < hdr > hdr.txt
	if grep -qxF "Content-Type: $t" hdr.txt && grep -qxF "$csp" hdr.txt && grep -qxF "X-Content-Type-Options: nosniff" hdr.txt \
	    && grep -qxF "Cache-Control: no-store" hdr.txt; then ok "$p: $t, the strict CSP, nosniff, no-store"
	else not_ok "$p headers" "$(cat hdr.txt)"; fi
done
c -D hdr -o /dev/null --cert viewer.pem --key viewer.key "$URL/ui"
tr -d '\r' < hdr > hdr.txt
grep -qxF "$csp" hdr.txt && ok "a refused /ui carries the CSP too" || not_ok "refusal headers" "$(cat hdr.txt)"
c "${A[@]}" -o page.html "$URL/ui"
inline='<script>|<script [^>]*>[^<]|<style|[[:space:]]style=|[[:space:]]on[a-z]+=|https?://'
if grep -qiE "$inline" page.html; then
	not_ok "the page has no inline script or style and names no other origin" "$(grep -iE "$inline" page.html | head -3)"
else ok "the page has no inline script or style and names no other origin"; fi
if grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|https?://' "$_root/ui/app.js" \
    | grep -vE 'www.w3.org/2000/svg|^[0-9]+:[[:space:]]*(/?\*|//)' > js.bad; then
	not_ok "app.js builds the DOM by its API only" "$(head -3 js.bad)"
else ok "app.js builds the DOM by its API only (no innerHTML, eval, other origin)"; fi

# ---- the page in Chromium ----
if ! command -v chromium >/dev/null || ! command -v pk12util >/dev/null; then
	not_ok "chromium and libnss3-tools installed (scripts/deps.sh check)"
	exit 0
fi
# Client certificate selection without a prompt: Chromium's
# AutoSelectCertificateForUrls policy, read only from this folder; a file
# of our own, for this URL alone, removed on exit.
pol=/etc/chromium/policies/managed/mtls-test-99-ui-$$.json
mkdir -p /etc/chromium/policies/managed
printf '{"AutoSelectCertificateForUrls": ["{\\"pattern\\":\\"%s\\",\\"filter\\":{}}"]}\n' "$URL" > "$pol"
trap 'rm -f "$pol"; _cleanup' EXIT
echo pass > p12.pw
# nssdb NAME CERT KEY: $T_DIR/NAME/.pki/nssdb with the certificate and
# key (from our PKCS#12) and our root trusted for TLS servers
nssdb() {
	q "$MTLS" cert export --cert "$2.pem" --key "$2.key" --format p12 --out "$2.p12" --password-file p12.pw
	mkdir -p "$1/.pki/nssdb"
	q certutil -N -d "sql:$1/.pki/nssdb" --empty-password
	q pk12util -i "$2.p12" -d "sql:$1/.pki/nssdb" -W pass
	q certutil -A -n mtls-test-root -t "C,," -i root/bundle.pem -d "sql:$1/.pki/nssdb"
}
nssdb "$T_DIR/h-admin" admin
nssdb "$T_DIR/h-viewer" viewer
# browse HOME NAME FRAGMENT: the DOM after the page settled into
# $T_DIR/NAME.html, a screenshot into $ART/NAME.png (once more when
# Chromium gave nothing: on a loaded machine it may miss its deadline)
browse() {
	_browse "$@"
	[ -s "$T_DIR/$2.html" ] || _browse "$@"
	cp "$T_DIR/$2.html" "$ART/$2.html"
}
_browse() {
	HOME=$1 timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
	    --disable-extensions --disable-background-networking --disable-component-update \
	    --user-data-dir="$T_DIR/prof-$2" --virtual-time-budget=10000 --window-size=1280,1400 \
	    --hide-scrollbars --screenshot="$ART/$2.png" --dump-dom "$URL/ui$3" \
	    > "$T_DIR/$2.html" 2> "$T_DIR/chromium-$2.err"
}
# dom NAME PYTHON-EXPR NAME: the expression holds over d (the DOM text)
# and e (expect.json)
dom() {
	if python3 - "$T_DIR/$1.html" <<PY
import json, re, sys
d = open(sys.argv[1]).read()
e = json.load(open("expect.json"))
def num(i):
    m = re.search(r'id="%s"[^>]*>([^<]*)<' % i, d)
    return int(m.group(1)) if m and m.group(1).isdigit() else None
def rows(table):
    m = re.search(r'id="%s".*?<tbody>(.*?)</tbody>' % table, d, re.S)
    return re.findall(r'<tr[^>]*data-serial="([0-9A-F]+)"', m.group(1)) if m else []
sys.exit(0 if ($2) else 1)
PY
	then ok "$3"; else not_ok "$3" "$(grep -o 'data-state="[a-z]*">[^<]*' "$T_DIR/$1.html") $(head -c 300 "$T_DIR/$1.html")"; fi
}
browse "$T_DIR/h-admin" timeline "#timeline"
dom timeline "'data-state=\"ready\"' in d" "browser: /ui loads with the admin's certificate from its NSS database"
dom timeline "num('n-total') == e['total'] and num('n-valid') == e['valid'] and num('n-revoked') == e['revoked'] and num('n-expired') == e['expired']" \
    "timeline: the counts"
dom timeline "num('n-1d') == e['1d'] and num('n-3d') == e['3d'] and num('n-7d') == e['7d']" "timeline: expiring within 1 d, 3 d, 7 d"
dom timeline "len(re.findall(r'class=\"mark d[137]\"', d)) == 5 and all('>%s</text>' % m in d for m in ('1 d', '3 d', '7 d'))" \
    "timeline: the 7 d / 3 d / 1 d thresholds are marked on the charts"
dom timeline "sum(int(x) for x in re.findall(r'data-count=\"(\\d+)\"', re.search(r'id=\"chart-days\".*?</svg>', d, re.S).group(0))) == e['days_sum']" \
    "timeline: the 30-day chart's bars hold the summary's counts"
dom timeline "re.search(r'<section id=\"rotation\"[^>]*hidden', d) is not None" "rotation panel hidden while /v1/rotation answers 404"
for w in 1d 7d; do
	browse "$T_DIR/h-admin" "expiring-$w" "#expiring=$w"
	dom "expiring-$w" "len(rows('exp-table')) == min(e['$w'], 100) and num('exp-count') == e['$w']" \
	    "expiring within $w: $(ex "['$w']") certificates, the first page's rows"
done
browse "$T_DIR/h-admin" rate "#rate"
dom rate "num('rate-d-issued') == e['issued_days'] and num('rate-d-renewed') == e['renewed_days']" \
    "issuance and renewal: $(ex "['issued_days']") issued, $(ex "['renewed_days']") renewed in 30 days"
browse "$T_DIR/h-admin" revocations "#revocations"
dom revocations "all(re.search(r'data-reason=\"%s\"><td>%s</td><td>%d</td>' % (k, k, v), d) for k, v in e['reasons'].items()) and '$db' in rows('rev-table') and len(rows('rev-table')) == min(e['revoked'], 100)" \
    "revocations: each reason with its count, and the revoked certificates"
browse "$T_DIR/h-admin" identity "#identity=spiffe%3A%2F%2Fexample.org%2Fns%2Fprod%2Fsa%2Fweb"
dom identity "rows('id-table') == ['$web2', '$web1']" "identity history of web: its two certificates, newest first"
browse "$T_DIR/h-admin" search "#search=${db:0:12}"
dom search "rows('q-table') == ['$db'] and 'revoked (keyCompromise)' in d" "search by serial: db, revoked (keyCompromise)"
browse "$T_DIR/h-viewer" refused ""
dom refused "'not_admin' in d and 'n-total' not in d" "browser: the page is refused to a certificate matching no --admin rule"
rm -f "$pol"
n=$(ls "$ART"/*.png 2>/dev/null | wc -l)
[ "$n" -ge 8 ] && ok "a screenshot of each view in $ART ($n PNG)" || not_ok "screenshots" "$(ls "$ART")"
kill -0 "$BG_PID" 2>/dev/null && ok "ca serve still runs" || not_ok "ca serve survived"

# ---- the same views from PostgreSQL (the store's other backend) ----
. "$_root/tests/integration/helpers/pg.sh"
pg_start || exit 0
sqlite3 root/inventory.db ".backup rows.db"	# what expect.py counts
cp -a root rootpg
pg_ca rootpg inv
port2=$(free_port)
URL="https://127.0.0.1:$port2"
start_bg caserve-pg "$MTLS" ca serve --ca rootpg --listen "127.0.0.1:$port2" --admin spiffe://example.org/admin
wait_for 10 grep -q '"event":"start"' "$T_DIR/caserve-pg.log" || { not_ok "ca serve on PostgreSQL starts" "$(cat "$T_DIR/caserve-pg.log")"; exit 0; }
get "PostgreSQL: summary" /v1/inventory/summary 200 '"counts"' "${A[@]}"
cp "$T_DIR/body" summary-pg.json
expect_exit 0 "PostgreSQL: every figure of the summary equals the count of the rows" \
    python3 expect.py rows.db summary-pg.json
python3 walk.py "$URL" 500 "" > walk.out
[ "$(cat walk.out)" = "$total $(( (total + 499) / 500 )) ordered" ] && ok "PostgreSQL: pages of 500 walk all $total rows in order" \
    || not_ok "PostgreSQL: walk of pages" "$(cat walk.out), want $total rows"
python3 walk.py "$URL" 7 "&state=revoked" > walk.out
[ "$(cut -d' ' -f1,3 walk.out)" = "$(ex "['revoked']") ordered" ] && ok "PostgreSQL: state=revoked in pages of 7" \
    || not_ok "PostgreSQL: revoked walk" "$(cat walk.out)"
get "PostgreSQL: identity history of web" \
    "/v1/inventory/identity?id=spiffe%3A%2F%2Fexample.org%2Fns%2Fprod%2Fsa%2Fweb" 200 \
    "\"items\":\\[\\{\"serial\":\"$web2\".*\"serial\":\"$web1\".*\"truncated\":false" "${A[@]}"
get "PostgreSQL: search by serial prefix" "/v1/inventory?q=${db:0:10}" 200 "\"serial\":\"$db\".*\"reason\":\"keyCompromise\"" "${A[@]}"
get "PostgreSQL: search by DNS name" "/v1/inventory?q=api.example" 200 '"dns:api.example.org"' "${A[@]}"
get "PostgreSQL: a quote is data, not SQL" "/v1/inventory?q=%27%29%3B--" 200 '"items":\[\]' "${A[@]}"
get "PostgreSQL: not for a non-admin" /v1/inventory/summary 403 not_admin --cert viewer.pem --key viewer.key
