#!/usr/bin/env python3
"""POSTs enrollments to ca serve replicas, several at the same moment.
  enroll_race.py race CAFILE CSR URL1 URL2 TOKEN...
      each TOKEN sent to both URLs at once (a barrier); prints per token
      the two statuses, sorted ("200 401")
  enroll_race.py spread CAFILE CSR OUTDIR URL1 URL2 TOKEN...
      token i to URL (i % 2), 8 at a time; writes OUTDIR/i.pem and prints
      "status serial url" per token"""
import http.client, json, ssl, sys, threading, urllib.parse
from concurrent.futures import ThreadPoolExecutor

def post(ctx, url, token, csr):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
    try:
        c.request("POST", "/v1/enroll", json.dumps({"token": token, "csr": csr}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()

def main():
    mode, cafile, csrf = sys.argv[1:4]
    ctx = ssl.create_default_context(cafile=cafile)
    csr = open(csrf).read()
    if mode == "race":
        urls, toks = sys.argv[4:6], sys.argv[6:]
        for t in toks:
            bar = threading.Barrier(2)
            res = [None, None]
            def go(i):
                bar.wait()
                res[i] = post(ctx, urls[i], t, csr)[0]
            th = [threading.Thread(target=go, args=(i,)) for i in (0, 1)]
            [x.start() for x in th]
            [x.join() for x in th]
            print(*sorted(res))
    else:
        out, urls, toks = sys.argv[4], sys.argv[5:7], sys.argv[7:]
        def one(i):
            st, body = post(ctx, urls[i % 2], toks[i], csr)
            serial = "-"
            if st == 200:
                d = json.loads(body)
                serial = d["serial"]
                open("%s/%d.pem" % (out, i), "w").write(d["certificate"])
            return "%d %s %s" % (st, serial, urls[i % 2])
        with ThreadPoolExecutor(8) as ex:
            for line in ex.map(one, range(len(toks))):
                print(line)

main()
