#!/usr/bin/env python3
"""hostile_tls.py PORT CERT KEY STATUS_HEX [BODY_HEX]: a TLS server on
127.0.0.1:PORT serving CERT (leaf and chain, names chosen by the test),
asking for a client certificate (not required), that answers every request
with the bytes STATUS_HEX (hex) as its first line, then BODY_HEX (default
"no") as a JSON body, and closes. Stops after 20 connections or 60 s."""
import socket, ssl, sys, time

port, cert, key, status = int(sys.argv[1]), sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])
body = bytes.fromhex(sys.argv[5]) if len(sys.argv) > 5 else b"no"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.verify_mode = ssl.CERT_OPTIONAL
ctx.load_verify_locations(cert)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(8)
s.settimeout(1)
end = time.time() + 60
n = 0
while time.time() < end and n < 20:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    n += 1
    c.settimeout(5)
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.recv(4096)
        t.sendall(status + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % len(body) + body)
        t.close()
    except (OSError, ssl.SSLError):
        c.close()
