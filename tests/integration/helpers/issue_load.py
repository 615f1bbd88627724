#!/usr/bin/env python3
"""Issuance load on ca serve replicas: enrollments (one token each) and
renewals (a client certificate), from several threads at once.
  issue_load.py CAFILE CSR OUTDIR URLS [options]
    URLS        comma-separated; job i goes to URLS[k % n], k = i (i / 2
                with both --tokens and --renew: both kinds to each)
    --tokens F  one token a line: a job enrolls with the next token
    --renew C K the client certificate and key renewals present; with
                --tokens, even jobs enroll and odd ones renew (once the
                tokens are all used, every job renews)
    --jobs N    total jobs (default: the tokens, twice with --renew)
    --until F   instead of --jobs: run until file F exists
    --workers N threads (default 8)
Prints one line per job as it ends, flushed:
    "i kind status ms serial url error"
(status 0: no HTTP answer, e.g. the replica died; serial "-" unless 200;
error: the JSON "error" code or "-"); writes OUTDIR/i.pem for every 200
and OUTDIR/i.tok, the token that paid for it."""
import http.client, json, os, ssl, sys, threading, time, urllib.parse


def post(ctx, url, path, body):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                    timeout=30)
    try:
        c.request("POST", path, json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def main():
    a = sys.argv[1:]
    cafile, csrf, out, urls = a[0], a[1], a[2], a[3].split(",")
    toks, renew, jobs, until, workers = [], None, None, None, 8
    i = 4
    while i < len(a):
        if a[i] == "--tokens":
            toks = [t.strip() for t in open(a[i + 1]) if t.strip()]
            i += 2
        elif a[i] == "--renew":
            renew = (a[i + 1], a[i + 2])
            i += 3
        elif a[i] == "--jobs":
            jobs = int(a[i + 1])
            i += 2
        elif a[i] == "--until":
            until = a[i + 1]
            i += 2
        elif a[i] == "--workers":
            workers = int(a[i + 1])
            i += 2
        else:
            sys.exit("unknown option " + a[i])
    if jobs is None and until is None:
        jobs = len(toks) * (2 if renew else 1)
    csr = open(csrf).read()
    plain = ssl.create_default_context(cafile=cafile)
    withcert = ssl.create_default_context(cafile=cafile)
    if renew:
        withcert.load_cert_chain(renew[0], renew[1])
    lock = threading.Lock()
    nxt = [0]

    def take():
        with lock:
            if until is not None and os.path.exists(until):
                return None
            if jobs is not None and nxt[0] >= jobs:
                return None
            n = nxt[0]
            nxt[0] += 1
            return n

    def one(n):
        k = n // 2 if renew else n
        url = urls[k % len(urls)]
        if k < len(toks) and (not renew or n % 2 == 0):
            kind, ctx, path = "enroll", plain, "/v1/enroll"
            body = {"token": toks[k], "csr": csr}
        elif renew:
            kind, ctx, path = "renew", withcert, "/v1/renew"
            body = {"csr": csr}
        else:
            return
        t0 = time.monotonic()
        serial, code = "-", "-"
        try:
            st, resp = post(ctx, url, path, body)
        except Exception:
            st, resp = 0, b""
        ms = int((time.monotonic() - t0) * 1000)
        try:
            d = json.loads(resp) if resp else {}
        except ValueError:
            d = {}
        if st == 200:
            serial = d["serial"]
            open("%s/%d.pem" % (out, n), "w").write(d["certificate"])
            if kind == "enroll":
                open("%s/%d.tok" % (out, n), "w").write(toks[k])
        elif isinstance(d, dict) and "error" in d:
            code = d["error"]
        with lock:
            print(n, kind, st, ms, serial, url, code, flush=True)

    def worker():
        while True:
            n = take()
            if n is None:
                return
            one(n)

    th = [threading.Thread(target=worker) for _ in range(workers)]
    for t in th:
        t.start()
    for t in th:
        t.join()


main()
