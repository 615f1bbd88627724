#!/usr/bin/env python3
"""A fake `mtls ca serve` for the agent's bootstrap tests: a man in the
middle on 127.0.0.1. It presents CHAIN/KEY in TLS, answers GET /v1/bundle
with {"bundle": <the PEM file BUNDLE>} and any other request with a 500.
Every request it receives (method, path, headers, body) and every refused
handshake is one JSON line in LOG, so a test can assert what never arrived
(the token).

With SIGN (a shell command with {csr} and {out}), POST /v1/enroll and
/v1/renew are answered like ca serve: the request's CSR is written to the
file {csr}, SIGN writes the chain to {out}, and the answer is
{"certificate": <that chain>, "bundle": <BUNDLE>}; a server that passes TLS
but answers with whatever it likes. SIGN "revoked" answers them with ca
serve's 403 {"error": "revoked"} instead.

usage: fake_ca.py PORT CHAIN KEY BUNDLE LOG [SIGN]"""
import http.server, json, os, socketserver, ssl, subprocess, sys, tempfile

PORT, CHAIN, KEY, BUNDLE, LOG = int(sys.argv[1]), *sys.argv[2:6]
SIGN = sys.argv[6] if len(sys.argv) > 6 else None
bundle = open(BUNDLE).read()


def sign(body):
    """The chain SIGN makes for the CSR in <body>, or None."""
    try:
        csr = json.loads(body)["csr"]
    except (ValueError, KeyError, TypeError):
        return None
    with tempfile.TemporaryDirectory() as d:
        cf, out = os.path.join(d, "req.csr"), os.path.join(d, "chain.pem")
        with open(cf, "w") as f:
            f.write(csr)
        r = subprocess.run(SIGN.format(csr=cf, out=out), shell=True, timeout=20,
                           capture_output=True)
        record(event="sign", exit=r.returncode, stderr=r.stderr.decode("latin-1")[-300:])
        return open(out).read() if r.returncode == 0 and os.path.exists(out) else None


def record(**kv):
    with open(LOG, "a") as f:
        f.write(json.dumps(kv) + "\n")


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError, OSError) as e:
            record(event="connection_error", error=str(e))
            self.close_connection = True

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, 1 << 20)).decode("latin-1") if n else ""
        record(event="request", method=self.command, path=self.path,
               headers=dict(self.headers), body=body)
        chain = None
        post = self.command == "POST" and self.path in ("/v1/enroll", "/v1/renew")
        if post and SIGN and SIGN != "revoked":
            chain = sign(body)
        if self.command == "GET" and self.path == "/v1/bundle":
            out, status = json.dumps({"bundle": bundle}).encode(), 200
        elif post and SIGN == "revoked":
            out, status = b'{"error":"revoked","message":"this certificate is revoked"}', 403
        elif chain is not None:
            out, status = json.dumps({"certificate": chain, "bundle": bundle}).encode(), 200
        else:
            out, status = b'{"error":"internal","message":"fake"}', 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = answer


class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def get_request(self):
        sock, addr = self.socket.accept()
        try:
            sock.settimeout(10)
            return ctx.wrap_socket(sock, server_side=True), addr
        except (ssl.SSLError, OSError) as e:
            record(event="handshake_failed", error=str(e))
            sock.close()
            raise


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CHAIN, KEY)
srv = S(("127.0.0.1", PORT), H)
record(event="start", port=PORT)
srv.serve_forever()
