#!/usr/bin/env bash
# Issue 15 (s23 item 1): OCSP while the store is down. ca serve answers an
# OCSP request it cannot look up with an OCSP response, not an HTTP error:
# tryLater (RFC 6960 2.3), unsigned, HTTP 200, application/ocsp-response,
# Cache-Control: no-store (it was 503 JSON, which no OCSP client reads).
# `openssl ocsp` prints tryLater; the proxy's stapler logs the tryLater and
# keeps stapling the good response it holds; once PostgreSQL is back the
# staple is fetched afresh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/pg.sh"
cd "$T_DIR" || exit 1
pki_root_int
openssl x509 -in int/ca.pem -out int1.pem
pg_start || exit 0
pg_ca int ca
port=$(free_port)
URL="https://localhost:$port"
# a staple refreshes at half its validity: 24 s gives a 12 s refresh and
# 12 s more of the held staple's validity to see it kept
start_bg caserve "$MTLS" ca serve --ca int --listen "127.0.0.1:$port" --url "$URL" --ocsp-ttl 24s
wait_for 20 grep -q '"event":"start"' "$T_DIR/caserve.log" || { not_ok "ca serve starts" "$(cat "$T_DIR/caserve.log")"; exit 0; }
"$MTLS" ca token create --ca int --spiffe-id spiffe://example.org/ns/st/server > srv.token
"$MTLS" agent --once --ca-url "$URL" --token-file srv.token --out-dir srv > agent.log 2>&1 \
    || { not_ok "agent enrolls the server" "$(cat agent.log)"; exit 0; }
q "$MTLS" ca issue --ca int --spiffe-id spiffe://example.org/ns/st/client --ttl 1h --out cli
mkdir www && echo "stapled hello" > www/index.html
be=$(free_port) in=$(free_port)
start_bg backend python3 -m http.server "$be" --bind 127.0.0.1 --directory www
start_bg inbound "$MTLS" proxy --listen "127.0.0.1:$in" --target "127.0.0.1:$be" --cert srv/svid.pem \
    --key srv/svid.key --ca srv/bundle.pem --allow spiffe://example.org/ns/st/client --workers 1
wait_for 10 grep -q '"event":"ocsp_staple".*"status":"good"' "$T_DIR/inbound.log" \
    && ok "the proxy staples a good status from ca serve on PostgreSQL" \
    || { not_ok "first staple" "$(cat "$T_DIR/inbound.log")"; exit 0; }
openssl ocsp -issuer int1.pem -cert srv/svid.pem -reqout req.der > /dev/null 2>&1

# ---- PostgreSQL stops ----
pg_stop_now
st=$(curl -sS --max-time 10 --cacert root/bundle.pem -D hdr.txt -o resp.der -w '%{http_code}' \
    -H 'Content-Type: application/ocsp-request' --data-binary @req.der "$URL/v1/ocsp")
[ "$st" = 200 ] && grep -qi '^content-type: application/ocsp-response' hdr.txt && grep -qi '^cache-control: no-store' hdr.txt \
    && ok "store down: POST /v1/ocsp is HTTP 200 application/ocsp-response, Cache-Control: no-store" \
    || not_ok "store down: OCSP HTTP answer" "$st $(cat hdr.txt) $(head -c 200 resp.der)"
openssl ocsp -respin resp.der -resp_text -noverify > respin.txt 2>&1
# OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED tryLater(3) }, no
# responseBytes: nothing signed
[ "$(od -An -tx1 resp.der | tr -d ' \n')" = 30030a0103 ] && grep -q 'Responder Error: trylater (3)' respin.txt \
    && ok "the body is an unsigned OCSPResponse with status tryLater" || not_ok "tryLater body" "$(head -5 respin.txt)"
# the way an operator asks: openssl ocsp against the responder
openssl ocsp -issuer int1.pem -cert srv/svid.pem -url "$URL/v1/ocsp" -CAfile root/bundle.pem \
    > ocsp.out 2>&1
rc=$?
grep -q 'Responder Error: trylater (3)' ocsp.out && ok "openssl ocsp prints 'Responder Error: trylater (3)' (exit $rc)" \
    || not_ok "openssl ocsp tryLater" "exit $rc: $(head -5 ocsp.out)"
b64=$(base64 -w0 < req.der | tr '+/' '-_')
st=$(curl -sS --max-time 10 --cacert root/bundle.pem -o get.der -w '%{http_code}' "$URL/v1/ocsp/$b64")
[ "$st" = 200 ] && cmp -s get.der resp.der && ok "GET /v1/ocsp/<base64> answers the same tryLater" \
    || not_ok "GET tryLater" "$st"
expect_grep '"event":"request".*"path":"/v1/ocsp".*"status":200.*"code":"try_later".*store unavailable \(PostgreSQL\)' \
    "$T_DIR/caserve.log" "ca serve's request line says try_later and why (the store)"
st=$(curl -sS --max-time 10 --cacert root/bundle.pem -o ready.txt -w '%{http_code}' "$URL/readyz")
[ "$st" = 503 ] && grep -q 'store unavailable (PostgreSQL)' ready.txt && ok "/readyz is 503 naming the store" \
    || not_ok "readyz" "$st $(cat ready.txt)"

# ---- the stapler: tryLater logged, the good staple kept ----
wait_for 20 grep -q '"level":"warn".*"event":"ocsp_staple".*"status":"tryLater".*kept until its nextUpdate' \
    "$T_DIR/inbound.log" && ok "the proxy logs the responder's tryLater and that it keeps its staple" \
    || not_ok "stapler tryLater log" "$(grep ocsp_staple "$T_DIR/inbound.log" | tail -3)"
openssl s_client -connect "127.0.0.1:$in" -status -cert cli.pem -key cli.key -CAfile root/bundle.pem \
    -servername localhost < /dev/null > sc.txt 2>&1
grep -q "OCSP Response Status: successful" sc.txt && grep -q "Cert Status: good" sc.txt \
    && ok "the proxy keeps stapling the good response while the store is down" \
    || not_ok "staple kept" "$(grep -A12 'OCSP' sc.txt | head -20)"

# ---- back ----
pg_run || exit 0
n=$(grep -c '"event":"ocsp_staple".*"status":"good"' "$T_DIR/inbound.log")
wait_for 40 count_gt "$T_DIR/inbound.log" '"event":"ocsp_staple".*"status":"good"' "$n" \
    && ok "PostgreSQL back: the staple is fetched afresh, good" \
    || not_ok "staple after" "$(grep ocsp_staple "$T_DIR/inbound.log" | tail -3)"
st=$(curl -sS --max-time 10 --cacert root/bundle.pem -D hdr2.txt -o resp2.der -w '%{http_code}' \
    -H 'Content-Type: application/ocsp-request' --data-binary @req.der "$URL/v1/ocsp")
openssl ocsp -respin resp2.der -resp_text -noverify 2>/dev/null | grep -q 'Cert Status: good' \
    && ! grep -qi '^cache-control' hdr2.txt && ok "and ca serve answers a signed good status again" \
    || not_ok "OCSP after" "$st"
