#!/usr/bin/env python3
"""A server on 127.0.0.1:PORT that answers every connection with TEXT, one
byte every GAP seconds, then closes (a non-TLS answer arriving slowly).
Usage: slow_answer.py PORT GAP TEXT"""
import socket
import sys
import threading
import time

port, gap, text = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)


def answer(c):
    try:
        for b in text:
            c.sendall(bytes([b]))
            time.sleep(gap)
    except OSError:
        pass
    c.close()


while True:
    c, _ = srv.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
