#!/usr/bin/env python3
"""A CRL distribution point on 127.0.0.1 for the proxy's --crl-url tests:
HTTPS with CHAIN/KEY, GET /crl answers the bytes of FILE as they are at
that request (swap FILE with a rename to serve another CRL), anything else
404. Each answered GET appends one line to FILE.log, so a test can wait for
the next fetch.

usage: crl_server.py PORT CHAIN KEY FILE"""
import http.server, socketserver, ssl, sys

PORT, CHAIN, KEY, FILE = int(sys.argv[1]), *sys.argv[2:5]


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path != "/crl":
            out, status = b"not found\n", 404
        else:
            with open(FILE, "rb") as f:
                out, status = f.read(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if status == 200:
            with open(FILE + ".log", "a") as f:
                f.write("GET /crl %d\n" % len(out))


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CHAIN, KEY)
srv = S(("127.0.0.1", PORT), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
