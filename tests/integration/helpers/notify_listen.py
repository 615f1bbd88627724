#!/usr/bin/env python3
"""A service manager's notify socket for tests: notify_listen.py ADDR OUT
[PORT] [FILE]. Binds an AF_UNIX datagram socket at ADDR (a path, or
'@name' for an abstract one) and appends one line per message to OUT:
the message's fields joined by ',' then, checked when it arrived,
'port=open|closed' (PORT on 127.0.0.1 accepts a connection) and
'file=yes|no' (FILE exists, non-empty). Ends after 120 s."""
import os, socket, sys, time

addr, out = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else 0
path = sys.argv[4] if len(sys.argv) > 4 else ""
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
s.settimeout(0.5)
with open(out + ".bound", "w"):
    pass
end = time.time() + 120
while time.time() < end:
    try:
        m = s.recv(4096).decode("utf-8", "replace")
    except socket.timeout:
        continue
    st = "closed"
    if port:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            st = "open"
        except OSError:
            pass
    f = "yes" if path and os.path.isfile(path) and os.path.getsize(path) > 0 else "no"
    with open(out, "a") as o:
        o.write(",".join(m.split("\n")) + " port=" + st + " file=" + f + "\n")
