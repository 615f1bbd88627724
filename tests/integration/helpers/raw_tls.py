#!/usr/bin/env python3
"""raw_tls.py PORT CERT KEY CA: sends stdin's bytes as they are over one
mTLS connection to 127.0.0.1:PORT (CERT "-" for none), then prints each
HTTP status line received before the server closes or 5 s pass."""
import socket, ssl, sys, time

port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.check_hostname = False
if cert != "-":
    ctx.load_cert_chain(cert, key)
data = sys.stdin.buffer.read()
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost")
s.sendall(data)
buf = b""
deadline = time.time() + 5
try:
    while time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        if buf.count(b"HTTP/1.1 ") and b"Connection: close" in buf:
            break
except (socket.timeout, ssl.SSLError, ConnectionError):
    pass
for line in buf.split(b"\n"):
    if line.startswith(b"HTTP/1."):
        print(line.rstrip(b"\r").decode())
