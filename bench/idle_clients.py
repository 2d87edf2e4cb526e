#!/usr/bin/env python3
"""idle_clients.py - hold N idle connections open to verdictd, for the
memory row of `make bench`.

    python3 bench/idle_clients.py SOCKET N

Opens N connections to the Unix socket, sends one {"op":"ping"} on each and
reads its answer (so the daemon has accepted each one and handed it to a
worker), prints "ready N" and then sleeps until it is killed.  Standard
library only.  scripts/bench reads the daemon's VmRSS while this waits, and
then stops it by its process id.
"""
import socket
import sys
import time


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: idle_clients.py SOCKET N\n")
        return 2
    path, n = sys.argv[1], int(sys.argv[2])
    conns = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b'{"id":%d,"op":"ping"}\n' % i)
        conns.append(s)
    for s in conns:
        got = b""
        while not got.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                sys.stderr.write("idle_clients: the daemon closed a connection\n")
                return 1
            got += chunk
        if b'"pong":true' not in got:
            sys.stderr.write("idle_clients: unexpected answer: %r\n" % got[:200])
            return 1
    print("ready %d" % len(conns), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
