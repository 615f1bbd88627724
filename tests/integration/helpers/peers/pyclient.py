# Python ssl client for the peer tests (the standard library only):
#   python3 pyclient.py PORT CERT KEY CA [PATH]
# Connects to 127.0.0.1:PORT as "localhost" (chain against CA and the name
# checked), sends GET PATH (default /), prints the answer. Exit 1 on any
# failure, the error on stderr.
import socket
import ssl
import sys

port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
path = sys.argv[5] if len(sys.argv) > 5 else "/"
c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
try:
    c.load_verify_locations(ca)
    c.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with c.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            out = b""
            while True:
                b = t.recv(65536)
                if not b:
                    break
                out += b
except (OSError, ssl.SSLError) as e:
    print("client:", e, file=sys.stderr)
    sys.exit(1)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(0 if out else 1)
