#!/usr/bin/env python3
"""raw_resp.py PORT CERT KEY CA FILE...: over one TLS connection to
127.0.0.1:PORT (CERT "-" for no client certificate), sends each FILE's
bytes as they are, waiting after each for one whole answer (head, then a
Content-Length body) or for the server to close, 5 s at most; writes every
byte received to stdout. A refused handshake prints nothing."""
import socket, ssl, sys, time

port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.check_hostname = False
if cert != "-":
    ctx.load_cert_chain(cert, key)
out = b""
try:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="localhost")
    for name in sys.argv[5:]:
        s.sendall(open(name, "rb").read())
        buf = b""
        deadline = time.time() + 5
        while time.time() < deadline:
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep and not head.startswith(b"HTTP/1.1 1"):
                n = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                if len(body) >= n:
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        out += buf
except (OSError, ssl.SSLError, ValueError):
    pass
sys.stdout.buffer.write(out)
