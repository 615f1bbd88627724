#!/usr/bin/env python3
"""evil_backend.py PORT: an upstream that breaks the rules, for the
gateway's attack tests. Reads request heads (no bodies) on keep-alive
connections and answers by path:
  /evil/twice     a response ("first"), then 100 ms later a second one
                  nobody asked for ("POISON!"); logs "poison sent"
  /evil/longhdr   X-Long: 4100 x 'A', then Content-Length: 5, "hello"
  /evil/longchunk X-Long: 4100 x 'A', then a chunked "hello"
  anything else   200 "ok" (Content-Length: 2)
Each request line is logged to stderr."""
import socket, socketserver, sys, time

PORT = int(sys.argv[1])
LONG = b"X-Long: " + b"A" * 4100 + b"\r\n"


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                try:
                    d = s.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n")[0].decode(errors="replace")
            log("request " + line)
            path = line.split(" ")[1] if " " in line else ""
            if path.endswith("/evil/twice"):
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
                time.sleep(0.1)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nPOISON!")
                log("poison sent")
            elif path.endswith("/evil/longhdr"):
                s.sendall(b"HTTP/1.1 200 OK\r\n" + LONG + b"Content-Length: 5\r\n\r\nhello")
            elif path.endswith("/evil/longchunk"):
                s.sendall(b"HTTP/1.1 200 OK\r\n" + LONG +
                          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            else:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


S(("127.0.0.1", PORT), H).serve_forever()
