#!/usr/bin/env python3
"""A verdictd client for back-office systems: standard library only.

Copy this file.  It speaks verdict's protocol (one JSON request per line,
one JSON response per line, in order) over the Unix socket or TCP, and
pipelines when asked to decide many cases at once.

    from client import Verdict, VerdictError
    v = Verdict(socket_path="var/verdictd.sock")      # or Verdict(host="127.0.0.1", port=7000)
    r = v.decide("compensation", "GD-SZ", {"category": "billing", ...})
    print(r["result"]["offer_fen"], r["decision_id"])
    answers = v.decide_many([("sla", "BJ", input1), ("sla", "BJ", input2)])

Command line:
    client.py --socket PATH KIND REGION FILE.json     decide one case
    client.py --socket PATH --raw < requests.ndjson   send request lines as they are
"""
import argparse
import itertools
import json
import socket
import sys


class VerdictError(Exception):
    """An error response: .code ("bad_input", ...), .path, .response."""

    def __init__(self, response):
        err = response.get("error", {})
        self.code = err.get("code")
        self.path = err.get("path")
        self.response = response
        where = " at %s" % self.path if self.path else ""
        super().__init__("%s%s: %s" % (self.code, where, err.get("message")))


class Verdict:
    def __init__(self, socket_path=None, host=None, port=None, timeout=30.0):
        if socket_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.ids = itertools.count(1)

    def close(self):
        self.reader.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, kind, region, input, at=None):
        req = {"id": next(self.ids), "kind": kind, "region": region, "input": input}
        if at:
            req["at"] = at
        return req

    def _read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("verdictd closed the connection")
        return json.loads(line)

    def call(self, request):
        """Send one request object; return the response object as is."""
        self.sock.sendall((json.dumps(request) + "\n").encode())
        return self._read()

    def decide(self, kind, region, input, at=None):
        """Decide one case.  Raises VerdictError on an error response."""
        r = self.call(self._request(kind, region, input, at))
        if "error" in r:
            raise VerdictError(r)
        return r

    def decide_many(self, cases, at=None):
        """Pipeline (kind, region, input) cases; returns responses in order
        (error responses included, not raised)."""
        reqs = [self._request(k, r, i, at) for k, r, i in cases]
        self.sock.sendall("".join(json.dumps(q) + "\n" for q in reqs).encode())
        return [self._read() for _ in reqs]

    def ping(self):
        return self.call({"op": "ping"})


def main():
    ap = argparse.ArgumentParser(description="Ask verdictd for a decision.")
    ap.add_argument("--socket", default="var/verdictd.sock")
    ap.add_argument("--connect", help="HOST:PORT instead of the Unix socket")
    ap.add_argument("--at", help="decision time (RFC 3339); default: now")
    ap.add_argument("--raw", action="store_true",
                    help="send request lines from stdin as they are")
    ap.add_argument("kind", nargs="?")
    ap.add_argument("region", nargs="?")
    ap.add_argument("file", nargs="?", help="input object as JSON (default stdin)")
    a = ap.parse_args()
    if a.connect:
        host, _, port = a.connect.rpartition(":")
        v = Verdict(host=host.strip("[]"), port=int(port))
    else:
        v = Verdict(socket_path=a.socket)
    with v:
        if a.raw:
            failed = False
            for line in sys.stdin:
                if line.strip():
                    r = v.call(json.loads(line))
                    failed |= "error" in r
                    print(json.dumps(r, ensure_ascii=False))
            return 1 if failed else 0
        if not a.kind or not a.region:
            ap.error("KIND and REGION are required (or --raw)")
        src = open(a.file) if a.file else sys.stdin
        try:
            r = v.decide(a.kind, a.region, json.load(src), at=a.at)
        except VerdictError as e:
            print(json.dumps(e.response, ensure_ascii=False, indent=2))
            return 1
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return 0


if __name__ == "__main__":
    sys.exit(main())
