#!/usr/bin/env python3
"""Fills a CA's inventory with N synthetic certificate rows, fast, for
the inventory views of ca serve (/v1/inventory, /ui): one transaction.

  bench/gen_inventory.py --sqlite DIR/inventory.db --count 100000
  bench/gen_inventory.py --sql --count 100000 | psql -q postgres://...

Rows are what store_add records (serial, kind, subject, issuer,
identities, validity, created_at) with a placeholder DER (these
certificates were never signed: they cannot be presented, OCSP answers
for their serials, a CRL lists the revoked ones). Identities repeat, so
each has a history of renewals: about 4 certificates per identity, the
first issued, the later ones renewals. Created over the last 30 days,
lifetimes of 1, 7, 30 or 90 days (some expired, many expiring within
the week), about 1 % revoked with a reason. --seed makes it repeatable.
Only for a test or bench inventory: never on a CA in use.
"""
import argparse
import random
import sqlite3
import sys
import time

REASONS = [0, 1, 3, 4, 5, 9]    # RFC 5280 CRLReason codes mtls names


def rows(n, seed, now):
    rnd = random.Random(seed)
    n_ids = max(1, n // 4)
    for i in range(n):
        k = rnd.randrange(n_ids)
        ns, sa = k % 97, k
        ids = "spiffe://example.org/ns/ns%d/sa/svc%d\ndns:svc%d.ns%d.svc" % (
            ns, sa, sa, ns)
        created = now - rnd.randrange(30 * 86400)
        ttl = rnd.choice([86400, 7 * 86400, 30 * 86400, 90 * 86400])
        serial = "%X" % (rnd.getrandbits(124) | (1 << 124))
        revoked = rnd.random() < 0.01
        yield (serial, "leaf", "CN=svc%d.ns%d.svc" % (sa, ns),
               "CN=example.org issuing CA", ids, created, created + ttl,
               "revoked" if revoked else "valid",
               created + 60 if revoked else None,
               rnd.choice(REASONS) if revoked else None, created,
               b"\x30\x00synthetic")


def sql_lit(v):
    if v is None:
        return "NULL"
    if isinstance(v, bytes):
        return "'\\x%s'::bytea" % v.hex()
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("'", "''") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sqlite", help="inventory.db to fill")
    ap.add_argument("--sql", action="store_true",
                    help="print PostgreSQL INSERTs instead")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--now", type=int, default=int(time.time()))
    a = ap.parse_args()
    if a.count < 0 or a.count > 10000000 or (a.sqlite is None) == (not a.sql):
        ap.error("give --sqlite FILE or --sql, and a --count of 0..10^7")
    cols = ("serial, kind, subject, issuer, identities, not_before, "
            "not_after, status, revoked_at, reason, created_at, der")
    gen = rows(a.count, a.seed, a.now)
    if a.sql:
        out = sys.stdout
        out.write("BEGIN;\n")
        batch = []
        for r in gen:
            batch.append("(" + ",".join(sql_lit(v) for v in r) + ")")
            if len(batch) == 1000:
                out.write("INSERT INTO certs (%s) VALUES %s;\n" %
                          (cols, ",".join(batch)))
                batch = []
        if batch:
            out.write("INSERT INTO certs (%s) VALUES %s;\n" %
                      (cols, ",".join(batch)))
        out.write("COMMIT;\n")
        return
    db = sqlite3.connect(a.sqlite, timeout=10)
    with db:
        db.executemany("INSERT INTO certs (%s) VALUES (%s)" %
                       (cols, ",".join("?" * 12)), gen)
    db.close()


if __name__ == "__main__":
    main()
