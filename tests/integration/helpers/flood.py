#!/usr/bin/env python3
"""Idle and slow connections against a server, from one process.

usage: flood.py PORT OUT [--idle N] [--addrs K] [--first-addr A]
                [--slow-tls M] [--slow-raw M] [--burst-addr IP --burst N]
                [--hold-s S] [--open-s S] [--drip-s S]

  --idle N       N TCP connections that never send a byte, spread over K
                 source addresses 127.0.0.A, 127.0.0.A+1, ... (loopback
                 answers for all of 127/8), so a per-address limit does not
                 refuse them; each one the server closes is opened again
                 while the hold lasts
  --slow-tls M   M TLS connections (handshake done, certificate not
                 checked) sending "GET / HTTP/1.1\\r\\n..." one byte a second
  --slow-raw M   M connections sending a TLS record header, then one byte
                 of a never-finished ClientHello a second
  --burst N      N idle connections from --burst-addr, opened last (the
                 per-address limit)
  --hold-s S     how long to keep the flood up at most; it also ends when
                 OUT.stop exists; closed idle ones are opened again at most
                 300 a second
  --open-s S     stop opening after S seconds (a server that does not
                 accept; default 20); what was not opened counts as failed
  --drip-s S     the slow ones send a byte every S seconds (default 1)
The slow ones are opened first, then the idle ones, then the burst.
Writes OUT.ready once everything is open (with the counts), then after the
hold waits up to 20 s for the server to close what is left and writes OUT:
one JSON object with, per kind, how many were opened, how many the server
closed (and how many of those within 1 s of connect), and the shortest and
longest time from connect to that close.
Bounded: every loop has a deadline; nothing listens.
"""
import json
import os
import resource
import select
import socket
import ssl
import sys
import time


def arg(name, default):
    if name in sys.argv:
        return type(default)(sys.argv[sys.argv.index(name) + 1])
    return default


port, out = int(sys.argv[1]), sys.argv[2]
n_idle, n_addrs, first = arg("--idle", 0), arg("--addrs", 1), arg("--first-addr", 2)
n_tls, n_raw = arg("--slow-tls", 0), arg("--slow-raw", 0)
burst_addr, n_burst = arg("--burst-addr", "127.0.0.250"), arg("--burst", 0)
hold = arg("--hold-s", 30.0)
open_s, drip = arg("--open-s", 20.0), arg("--drip-s", 1.0)

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

conns = {}      # fd -> dict(kind, sock, t0, src, left)
stats = {}      # kind -> dict(opened, closed, min, max)
head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)


def st(kind):
    return stats.setdefault(kind, {"opened": 0, "closed": 0, "under_1s": 0, "min": None,
                                   "max": None, "failed": 0})


open_end = time.monotonic() + open_s


def open_one(kind, src):
    if time.monotonic() >= open_end:
        st(kind)["failed"] += 1
        return
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        if kind == "slow_tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        st(kind)["failed"] += 1
        s.close()
        return
    s.setblocking(False)
    payload = head if kind == "slow_tls" else hello if kind == "slow_raw" else b""
    conns[s.fileno()] = {"kind": kind, "sock": s, "t0": time.monotonic(), "src": src,
                         "left": payload}
    st(kind)["opened"] += 1


def closed(fd, why_t):
    c = conns.pop(fd)
    life = why_t - c["t0"]
    s = st(c["kind"])
    s["closed"] += 1
    s["under_1s"] += life < 1
    s["min"] = life if s["min"] is None else min(s["min"], life)
    s["max"] = life if s["max"] is None else max(s["max"], life)
    try:
        c["sock"].close()
    except OSError:
        pass
    return c


for i in range(n_raw):
    open_one("slow_raw", "127.0.0.%d" % (first + i % n_addrs))
for i in range(n_tls):
    open_one("slow_tls", "127.0.0.%d" % (first + i % n_addrs))
for i in range(n_idle):
    open_one("idle", "127.0.0.%d" % (first + i % n_addrs))
for i in range(n_burst):
    open_one("burst", burst_addr)
with open(out + ".ready.tmp", "w") as f:
    json.dump({k: v["opened"] for k, v in stats.items()}, f)
os.rename(out + ".ready.tmp", out + ".ready")

t_start = time.monotonic()
hold_end = t_start + hold
next_drip = t_start + drip
final_end = None
reopen = []             # sources to open again, at most 300 a second
budget, budget_t = 30, t_start
while conns:
    now = time.monotonic()
    holding = now < hold_end and not os.path.exists(out + ".stop")
    if not holding and final_end is None:
        final_end = now + 20
    if final_end is not None and now >= final_end:
        break
    socks = [c["sock"] for c in conns.values()]
    readable = []
    # select() has an fd limit; poll() does not
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN)
    for fd, ev in p.poll(100):
        readable.append(fd)
    now = time.monotonic()
    for fd in readable:
        c = conns.get(fd)
        if c is None:
            continue
        try:
            data = c["sock"].recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        except (OSError, ssl.SSLError):
            data = b""
        if data:
            continue        # an answer (408): the close follows
        c = closed(fd, now)
        if holding and c["kind"] == "idle":
            reopen.append(c["src"])
    if now - budget_t >= 0.1:
        budget, budget_t = 30, now
    while holding and reopen and budget > 0:
        open_end = now + 5
        open_one("idle", reopen.pop(0))
        budget -= 1
    if now >= next_drip:    # slowloris: one byte each --drip-s
        next_drip = now + drip
        for fd, c in list(conns.items()):
            if c["left"]:
                try:
                    c["sock"].send(c["left"][:1])
                    c["left"] = c["left"][1:]
                except (ssl.SSLWantWriteError, BlockingIOError):
                    pass
                except (OSError, ssl.SSLError):
                    closed(fd, now)

stats["still_open"] = {k: sum(1 for c in conns.values() if c["kind"] == k) for k in stats}
with open(out + ".tmp", "w") as f:
    json.dump(stats, f)
os.rename(out + ".tmp", out)
