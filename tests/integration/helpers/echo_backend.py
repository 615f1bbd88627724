#!/usr/bin/env python3
"""A small HTTP/1.1 keep-alive backend for the gateway tests: answers every
request with JSON naming the method, path, the headers it received, the
request body's length and SHA-256, and which of its connections carried it.
A path containing /big/N answers N bytes; ending in /chunked, a chunked
body; ending in /eof, a body delimited by closing the connection;
containing /slow/MS, after MS milliseconds; ending in /emptyhdr, with an
empty X-Empty header before X-After: yes; containing /drip/N, N chunks
0.3 s apart. Each request's line and header names and values are also
written to stderr (the test's backend.log), so a test can assert what the
upstream never saw. An optional second argument is a socket timeout in
seconds: a kept-alive connection that stays silent that long (also in the
middle of a request body) is closed without an answer."""
import hashlib, http.server, itertools, json, sys, time

PORT = int(sys.argv[1])
TIMEOUT = float(sys.argv[2]) if len(sys.argv) > 2 else None
conn_ids = itertools.count(1)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def setup(self):
        super().setup()
        self.conn_id = next(conn_ids)

    def log_message(self, *a):
        pass

    def log_error(self, fmt, *a):
        # the socket timeout closing an idle connection: one line, so a
        # test can wait for it instead of sleeping
        if "timed out" in fmt:
            sys.stderr.write("timed_out conn %d\n" % self.conn_id)
            sys.stderr.flush()

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                n = int(self.rfile.readline().strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def handle_any(self):
        data = self.body()
        p = self.path
        sys.stderr.write("request %s %r %r\n" % (self.command, p, list(self.headers.items())))
        sys.stderr.flush()
        if "/big/" in p:
            out = b"x" * int(p.split("/big/")[1])
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        if "/drip/" in p:
            # N chunks, 0.3 s apart: slow in all, never silent for long
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(p.split("/drip/")[1])):
                self.wfile.write(b"6\r\nchunk\n\r\n")
                self.wfile.flush()
                time.sleep(0.3)
            self.wfile.write(b"0\r\n\r\n")
            return
        if "/slow/" in p:
            sys.stderr.write("slow request started\n")
            sys.stderr.flush()
            time.sleep(int(p.split("/slow/")[1]) / 1000)
        doc = {"method": self.command, "path": p, "conn": self.conn_id,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body_len": len(data), "body_sha256": hashlib.sha256(data).hexdigest()}
        out = json.dumps(doc).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if p.endswith("/emptyhdr"):
            self.send_header("X-Empty", "")
            self.send_header("X-After", "yes")
        if p.endswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(out), 7):
                part = out[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif p.endswith("/eof"):
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(out)
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class S(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a timeout closes the connection, quietly (what the test wants)
        sys.stderr.write("closed %s: %s\n" % (client_address, sys.exc_info()[1]))
        sys.stderr.flush()


S(("127.0.0.1", PORT), H).serve_forever()
