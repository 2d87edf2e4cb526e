"""The HTTP/1.1 API (verdictd --http; docs/protocol.md, "HTTP").

Driven as integrators would: curl, Python's http.client, and raw bytes
where a client misbehaves.  A decision over HTTP must be the decision the
socket gives, recorded the same way.
"""
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

from harness import (ANSWER_TIMEOUT, AT, FIXTURES, POLICIES, SANITIZED, TSAN,
                     Daemon, free_port, request, run_cli)

HOSTILE = os.path.join(FIXTURES, "hostile")

SLA_INPUT = {"complaint_id": "C-1", "category": "broadband_fault",
             "channel": "hotline", "customer_grade": "retail",
             "received_at": "2026-09-30T16:20:00+08:00"}
COMP_INPUT = {"complaint_id": "C-2", "category": "billing",
              "customer_grade": "retail", "cause": "carrier",
              "charged_fen": 12800, "due_fen": 8800}


class HttpDaemon(Daemon):
    """A verdictd with --http on a free loopback port, ready once the HTTP
    listener takes a connection."""

    def __init__(self, args=(), host="127.0.0.1", **kw):
        self.http_port = free_port()
        super().__init__(args=["--http", "%s:%d" % (host, self.http_port)]
                         + list(args), **kw)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("verdictd exited: " + self.read_log())
            try:
                socket.create_connection(("127.0.0.1", self.http_port),
                                         timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the HTTP listener did not open: " +
                           self.read_log())

    def http(self, timeout=ANSWER_TIMEOUT):
        return http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=timeout)

    def call(self, method, path, body=None, headers=None, conn=None):
        """(status, headers dict, decoded JSON body) of one request."""
        own = conn is None
        c = conn or self.http()
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if own:
            c.close()
        return r.status, hdrs, json.loads(data) if data else None

    def raw(self):
        return socket.create_connection(("127.0.0.1", self.http_port),
                                        timeout=ANSWER_TIMEOUT)

    def rows(self):
        db = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True)
        try:
            return db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        finally:
            db.close()


def read_responses(sock, n):
    """Read N HTTP/1.1 responses (Content-Length framed) from SOCK:
    [(status, headers, body bytes)], then whether the peer closed after."""
    buf = b""
    out = []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("closed after %d responses: %r" % (len(out), buf))
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        length = int(hdrs.get("content-length", "0"))
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("closed inside a body")
            buf += chunk
        body, buf = buf[:length], buf[length:]
        if status != 100:
            out.append((status, hdrs, body))
    return out


def closed(sock):
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except OSError:
        return True


def same_decision(a, b):
    """The parts of two answers that must agree (ids and timings differ)."""
    keys = ("kind", "region", "policy_region", "revision", "at", "result",
            "trace", "error")
    return {k: a.get(k) for k in keys}, {k: b.get(k) for k in keys}


class Endpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = HttpDaemon(tcp=True)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_health(self):
        st, h, body = self.d.call("GET", "/health")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "application/json")
        self.assertEqual(body, {"status": "ok"})
        st, _, body = self.d.call("GET", "/health/ready")
        self.assertEqual(st, 200)
        self.assertTrue(body["ready"])
        self.assertTrue(body["revision"].startswith("sha256:"))
        st, h, body = self.d.call("POST", "/health", body="{}")
        self.assertEqual(st, 405)
        self.assertEqual(h["allow"], "GET, HEAD")
        # HEAD, as load balancers send it: the head alone, and the
        # connection goes on
        c = self.d.http()
        for path in ("/health", "/health/ready"):
            c.request("HEAD", path)
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b""))
            self.assertGreater(int(r.getheader("Content-Length")), 0)
        self.assertEqual(self.d.call("GET", "/health", conn=c)[2],
                         {"status": "ok"})
        c.close()
        self.assertEqual(body["error"]["code"], "bad_request")

    def test_decision_same_as_socket(self):
        for kind, inp in (("sla", SLA_INPUT), ("compensation", COMP_INPUT)):
            req = request(kind, "GD-SZ", inp, rid=kind + "-http")
            st, _, over_http = self.d.call("POST", "/v1/decisions", req)
            self.assertEqual(st, 200, over_http)
            c = self.d.connect()
            over_socket = c.call(**req)
            c.close()
            self.assertEqual(over_http["id"], kind + "-http")
            self.assertIn("result", over_http)
            a, b = same_decision(over_http, over_socket)
            self.assertEqual(a, b)

    def test_decision_by_kind(self):
        st, _, by_kind = self.d.call(
            "POST", "/v1/decisions/compensation?region=GD-SZ&at=" + AT,
            COMP_INPUT)
        self.assertEqual(st, 200, by_kind)
        # the offset's '+' escaped as %2B reads the same
        st, _, escaped = self.d.call(
            "POST", "/v1/decisions/compensation?region=GD-SZ&at="
            + AT.replace("+", "%2B"), COMP_INPUT)
        self.assertEqual(st, 200, escaped)
        st, _, whole = self.d.call(
            "POST", "/v1/decisions",
            request("compensation", "GD-SZ", COMP_INPUT))
        a, b = same_decision(by_kind, whole)
        self.assertEqual(a, b)
        a, b = same_decision(escaped, whole)
        self.assertEqual(a, b)

    def test_body_cannot_add_fields(self):
        # a second "kind" after the input would override the path's
        st, _, body = self.d.call(
            "POST", "/v1/decisions/compensation?region=GD-SZ",
            '{"charged_fen":1,"due_fen":1},"kind":"sla"')
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "bad_request")

    def test_error_statuses(self):
        cases = [
            ("/v1/decisions", "{not json", 400, "bad_request"),
            ("/v1/decisions", request("sla", "GD-SZ", {"x": 1}), 422,
             "bad_input"),
            ("/v1/decisions", request("nope", "GD-SZ", {}), 404,
             "unknown_kind"),
            ("/v1/decisions", request("sla", "ZZ", SLA_INPUT), 404,
             "unknown_region"),
            ("/v1/decisions", {"op": "reload"}, 403, "forbidden"),
            ("/v1/decisions", "", 400, "bad_request"),
            ("/v1/decisions/sla?region=GD-SZ", {"x": 1}, 422, "bad_input"),
            ("/v1/decisions/sla?region=%zz", SLA_INPUT, 400, "bad_request"),
            ("/v2/nothing", "{}", 404, "not_found"),
        ]
        c = self.d.http()
        for path, body, status, code in cases:
            st, h, got = self.d.call("POST", path, body, conn=c)
            self.assertEqual((st, got["error"]["code"]), (status, code),
                             (path, body, got))
            self.assertNotIn("connection", h)  # the connection stays usable
        c.close()
        st, h, got = self.d.call("DELETE", "/v1/decisions")
        self.assertEqual(st, 405)
        self.assertEqual(h["allow"], "POST")

    def test_lookup(self):
        st, _, made = self.d.call("POST", "/v1/decisions",
                                  request("sla", "GD-SZ", SLA_INPUT, rid=7))
        self.assertEqual(st, 200)
        st, _, rec = self.d.call("GET", "/v1/decisions/" + made["decision_id"])
        self.assertEqual(st, 200, rec)
        self.assertEqual(rec["decision_id"], made["decision_id"])
        self.assertEqual(rec["result"], made["result"])
        self.assertEqual(rec["trace"], made["trace"])
        self.assertEqual(rec["request"]["input"], SLA_INPUT)
        self.assertTrue(rec["client"].startswith("127.0.0.1:"))
        # what the auditors' command shows of it
        rc, out, err = run_cli("history", "show", made["decision_id"],
                               "--db", self.d.db, "--format", "json")
        self.assertEqual(rc, 0, err)
        shown = json.loads(out)
        for k in ("seq", "hash", "revision", "kind", "region", "at"):
            self.assertEqual(rec[k], shown[k], k)
        st, _, got = self.d.call("GET", "/v1/decisions/0000-nothing")
        self.assertEqual((st, got["error"]["code"]), (404, "not_found"))

    def test_keepalive_and_pipelining(self):
        s = self.d.raw()
        reqs = b""
        for i in range(5):
            body = json.dumps(request("sla", "GD-SZ", SLA_INPUT, rid=i)).encode()
            reqs += (b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body)) + body
        reqs += b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(reqs)  # all at once: pipelined
        got = read_responses(s, 6)
        self.assertEqual([g[0] for g in got], [200] * 6)
        self.assertEqual([json.loads(g[2]).get("id") for g in got[:5]],
                         list(range(5)))
        # still open: one more, then Connection: close ends it
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (st, h, _), = read_responses(s, 1)
        self.assertEqual((st, h.get("connection")), (200, "close"))
        self.assertTrue(closed(s))
        s.close()

    def test_chunked_and_expect_continue(self):
        body = json.dumps(request("sla", "GD-SZ", SLA_INPUT, rid="ch")).encode()
        s = self.d.raw()
        s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  + b"%x\r\n" % 10 + body[:10] + b"\r\n"
                  + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n0\r\n\r\n")
        (st, _, data), = read_responses(s, 1)
        self.assertEqual((st, json.loads(data)["id"]), (200, "ch"))
        s.close()
        # curl sends Expect: 100-continue for larger bodies
        big = json.dumps(request("sla", "GD-SZ", SLA_INPUT, rid="big"),
                         indent=200)
        self.assertGreater(len(big), 2000)
        out = subprocess.run(
            ["curl", "-sS", "-H", "Expect: 100-continue",
             "-H", "Content-Type: application/json", "--data-binary", big,
             "-w", "\n%{http_code}",
             "http://127.0.0.1:%d/v1/decisions" % self.d.http_port],
            capture_output=True, text=True, timeout=30)
        text, code = out.stdout.rsplit("\n", 1)
        self.assertEqual(code, "200", out.stderr)
        self.assertEqual(json.loads(text)["id"], "big")

    def test_curl(self):
        out = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_code}", "--data-binary",
             json.dumps(SLA_INPUT), "http://127.0.0.1:%d/v1/decisions/sla"
             "?region=GD-SZ&at=2026-11-23T10:00:00%%2B08:00" % self.d.http_port],
            capture_output=True, text=True, timeout=30)
        text, code = out.stdout.rsplit("\n", 1)
        self.assertEqual(code, "200", out.stderr)
        self.assertEqual(json.loads(text)["kind"], "sla")

    def test_recorded_once(self):
        before = self.d.rows()
        for i in range(3):
            self.d.call("POST", "/v1/decisions",
                        request("sla", "GD-SZ", SLA_INPUT, rid=i))
        self.d.call("POST", "/v1/decisions", "{bad")
        self.d.call("GET", "/health")
        self.d.call("GET", "/v2/none")
        # durable: each answer came after its record committed
        self.assertEqual(self.d.rows(), before + 4)

    def test_ndjson_listener_refuses_http(self):
        before = self.d.rows()
        for tcp in (True, False):
            if tcp:
                s = socket.create_connection(("127.0.0.1", self.d.port),
                                             timeout=20)
            else:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(20)
                s.connect(self.d.socket)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            (st, h, body), = read_responses(s, 1)
            self.assertEqual(st, 400)
            self.assertEqual(h["connection"], "close")
            self.assertIn("--http", json.loads(body)["error"]["message"])
            self.assertTrue(closed(s))
            s.close()
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                              "%{http_code}",
                              "http://127.0.0.1:%d/health" % self.d.port],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.stdout, "400")
        self.assertEqual(self.d.rows(), before)  # at most one: none
        # a JSON line is still served on the same listener
        c = self.d.connect(tcp=True)
        self.assertIn("result", c.call(**request("sla", "GD-SZ", SLA_INPUT)))
        c.close()


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = HttpDaemon(args=["--max-line", "4096"])

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_body_too_large(self):
        big = json.dumps(request("sla", "GD-SZ", SLA_INPUT), indent=1000)
        st, h, body = self.d.call("POST", "/v1/decisions", big)
        self.assertEqual((st, body["error"]["code"]), (413, "too_large"))
        self.assertEqual(h["connection"], "close")
        # the same, chunked: counted as it arrives
        s = self.d.raw()
        s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            s.sendall(b"800\r\n" + b"x" * 2048 + b"\r\n")
        (st, _, _), = read_responses(s, 1)
        self.assertEqual(st, 413)
        self.assertTrue(closed(s))
        s.close()

    def test_headers_too_large(self):
        s = self.d.raw()
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n"
                  + b"X-Junk: " + b"j" * 20000 + b"\r\n\r\n")
        (st, _, body), = read_responses(s, 1)
        self.assertEqual((st, json.loads(body)["error"]["code"]),
                         (431, "too_large"))
        self.assertTrue(closed(s))
        s.close()

    def test_malformed(self):
        s = self.d.raw()
        s.sendall(b"BREW /pot HTCPCP/1.0\r\n\r\n")
        (st, _, body), = read_responses(s, 1)
        self.assertEqual((st, json.loads(body)["error"]["code"]),
                         (400, "bad_request"))
        self.assertTrue(closed(s))
        s.close()

    def test_slow_client_hurts_only_itself(self):
        slow = self.d.raw()
        slow.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n")
        t0 = time.time()
        # the others are served meanwhile
        for _ in range(5):
            st, _, _ = self.d.call("GET", "/health")
            self.assertEqual(st, 200)
        self.assertLess(time.time() - t0, 5)
        (st, _, body), = read_responses(slow, 1)  # within 10 s and a sweep
        self.assertEqual(st, 408)
        self.assertLess(time.time() - t0, 15)
        self.assertTrue(closed(slow))
        slow.close()

    def test_never_reading_client(self):
        # sends many pipelined requests and reads nothing: held to
        # --max-pending, the others served
        s = self.d.raw()
        s.setblocking(False)
        body = json.dumps(request("sla", "GD-SZ", SLA_INPUT)).encode()
        one = (b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
        sent = 0
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                sent += s.send(one * 50)
            except BlockingIOError:
                break
        for _ in range(3):
            st, _, _ = self.d.call("GET", "/health")
            self.assertEqual(st, 200)
        s.close()


class PolicyFailures(unittest.TestCase):
    def test_policy_errors(self):
        # sanitized decisions are slow: none may be taken for stuck
        # (--decide-timeout, answered `internal`) for being slow
        # and under TSan the watchdog's timing cannot stop a loop: counting
        # does (--always-count), as in test_daemon's hostile tests
        d = HttpDaemon(policies=HOSTILE, unchecked=True,
                       args=(["--decide-timeout", "0"] if SANITIZED else [])
                       + (["--always-count"] if TSAN else []))
        try:
            for kind, status, code in (("boom", 500, "policy_error"),
                                       ("bomb", 503, "policy_memory"),
                                       ("loop", 503, "policy_timeout")):
                st, _, body = d.call("POST", "/v1/decisions",
                                     request(kind, "national", {}))
                self.assertEqual((st, body["error"]["code"]), (status, code))
            st, _, body = d.call("POST", "/v1/decisions",
                                 request("ok", "national", {}))
            self.assertEqual((st, body["result"]), (200, {"ok": True}))
        finally:
            d.stop()


class ReloadUnderLoad(unittest.TestCase):
    def test_no_failed_request(self):
        d = HttpDaemon(workers=2)
        stop = threading.Event()
        failures = []
        counts = [0]

        def client():
            c = d.http()
            while not stop.is_set():
                try:
                    st, _, body = d.call(
                        "POST", "/v1/decisions/sla?region=GD-SZ", SLA_INPUT,
                        conn=c)
                    if st != 200 or "result" not in body:
                        failures.append((st, body))
                    counts[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure counts
                    failures.append(repr(e))
                    c.close()
                    c = d.http()
            c.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        try:
            for t in threads:
                t.start()
            for _ in range(3):
                time.sleep(0.5)
                d.proc.send_signal(1)  # SIGHUP: reload
            time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
            d.stop()
        self.assertEqual(failures, [])
        self.assertGreater(counts[0], 20)
        self.assertIn("sighup", d.read_log().lower())


if __name__ == "__main__":
    unittest.main()


def sha256hex(token):
    import hashlib
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = {"crm": ("decide", "tok-crm-1"), "auditor": ("audit", "tok-aud-2"),
          "ops": ("admin", "tok-ops-3")}


def write_tokens(path, tokens):
    with open(path, "w") as f:
        f.write("# name role sha256(token)\n\n")
        for name, (role, tok) in tokens.items():
            f.write("%s %s %s\n" % (name, role, sha256hex(tok)))


def bearer(name):
    return {"Authorization": "Bearer " + TOKENS[name][1]}


class Credentials(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.tmp = tempfile.mkdtemp(prefix="verdict-http-")
        cls.tokens = os.path.join(cls.tmp, "tokens")
        write_tokens(cls.tokens, TOKENS)
        cls.d = HttpDaemon(args=["--tokens", cls.tokens], admin=True,
                           tmp=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_roles(self):
        req = request("sla", "GD-SZ", SLA_INPUT)
        st, h, body = self.d.call("POST", "/v1/decisions", req)
        self.assertEqual((st, body["error"]["code"]), (401, "unauthorized"))
        self.assertIn("Bearer", h["www-authenticate"])
        st, _, body = self.d.call("POST", "/v1/decisions", req,
                                  {"Authorization": "Bearer wrong"})
        self.assertEqual(st, 401)
        st, _, made = self.d.call("POST", "/v1/decisions", req, bearer("crm"))
        self.assertEqual(st, 200, made)
        path = "/v1/decisions/" + made["decision_id"]
        for who, status in (("crm", 403), ("ops", 403), ("auditor", 200)):
            st, _, body = self.d.call("GET", path, headers=bearer(who))
            self.assertEqual(st, status, (who, body))
        self.assertEqual(body["client"].split("@")[0], "crm")
        for who in ("auditor", "ops"):
            st, _, body = self.d.call("POST", "/v1/decisions", req, bearer(who))
            self.assertEqual((st, body["error"]["code"]), (403, "forbidden"))
            self.assertIn("decide", body["error"]["message"])
        # health stays open to load balancers
        self.assertEqual(self.d.call("GET", "/health/ready")[0], 200)
        self.assertIn("1 credential" if False else "3 credentials",
                      self.d.read_log())

    def test_admin(self):
        st, _, body = self.d.call("POST", "/v1/admin/reload",
                                  headers=bearer("crm"))
        self.assertEqual(st, 403)
        st, _, body = self.d.call("POST", "/v1/admin/reload",
                                  headers=bearer("ops"))
        self.assertEqual(st, 200, body)
        self.assertTrue(body["ok"])
        rev = body["revision"]
        st, _, body = self.d.call("GET", "/v1/admin/revisions",
                                  headers=bearer("ops"))
        self.assertEqual(st, 200, body)
        self.assertEqual(body["revisions"][0]["revision"], rev)
        self.assertIn("http:ops", body["activations"][0]["who"])
        st, _, body = self.d.call(
            "POST", "/v1/admin/activate?revision=" + rev, headers=bearer("ops"))
        self.assertEqual(st, 200, body)
        st, _, body = self.d.call(
            "GET", "/v1/admin/diff?from=" + rev, headers=bearer("ops"))
        self.assertEqual(st, 200, body)
        self.assertEqual(body["diff"], "")
        st, _, body = self.d.call(
            "POST", "/v1/admin/activate?revision=sha256:0000",
            headers=bearer("ops"))
        self.assertEqual((st, body["error"]["code"]), (404, "not_found"))
        st, _, body = self.d.call("GET", "/v1/admin/nothing",
                                  headers=bearer("ops"))
        self.assertEqual(st, 404)

    def test_admin_answers_keep_order(self):
        # pipelined behind a reload: answered after it, in order
        s = self.d.raw()
        tok = TOKENS["ops"][1].encode()
        s.sendall(b"POST /v1/admin/reload HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + tok + b"\r\n"
                  b"Content-Length: 0\r\n\r\n"
                  b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_responses(s, 2)
        self.assertEqual([g[0] for g in got], [200, 200])
        self.assertIn(b'"ok":true', got[0][2])
        self.assertEqual(json.loads(got[1][2]), {"status": "ok"})
        s.close()

    def test_sighup_rereads_tokens(self):
        extra = dict(TOKENS, late=("decide", "tok-late-4"))
        write_tokens(self.tokens, extra)
        try:
            self.d.proc.send_signal(1)
            deadline = time.time() + 10
            st = None
            while time.time() < deadline:
                st, _, _ = self.d.call(
                    "POST", "/v1/decisions",
                    request("sla", "GD-SZ", SLA_INPUT),
                    {"Authorization": "Bearer tok-late-4"})
                if st == 200:
                    break
                time.sleep(0.1)
            self.assertEqual(st, 200)
            # a bad file keeps the tokens in force
            with open(self.tokens, "a") as f:
                f.write("broken line\n")
            self.d.proc.send_signal(1)
            deadline = time.time() + 10
            while "expected NAME ROLE SHA256HEX" not in self.d.read_log():
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            st, _, _ = self.d.call("POST", "/v1/decisions",
                                   request("sla", "GD-SZ", SLA_INPUT),
                                   {"Authorization": "Bearer tok-late-4"})
            self.assertEqual(st, 200)
        finally:
            write_tokens(self.tokens, TOKENS)


class NoCredentials(unittest.TestCase):
    def test_loopback_only(self):
        # this host's own non-loopback address reaches the listener as a
        # client from elsewhere would
        out = subprocess.run(["hostname", "-I"], capture_output=True,
                             text=True).stdout.split()
        addrs = [a for a in out if "." in a and not a.startswith("127.")]
        self.assertTrue(addrs, "no non-loopback IPv4 address to test from")
        d = HttpDaemon(host="0.0.0.0")
        try:
            self.assertIn("serving loopback clients only", d.read_log())
            self.assertEqual(d.call("GET", "/health")[0], 200)
            st, _, body = d.call("POST", "/v1/decisions",
                                 request("sla", "GD-SZ", SLA_INPUT))
            self.assertEqual(st, 200, body)
            c = http.client.HTTPConnection(addrs[0], d.http_port, timeout=20)
            st, _, body = d.call("POST", "/v1/decisions",
                                 request("sla", "GD-SZ", SLA_INPUT), conn=c)
            c.close()
            self.assertEqual((st, body["error"]["code"]), (403, "forbidden"))
            self.assertIn("loopback", body["error"]["message"])
        finally:
            d.stop()

    def test_ndjson_listener_loopback_only(self):
        out = subprocess.run(["hostname", "-I"], capture_output=True,
                             text=True).stdout.split()
        addrs = [a for a in out if "." in a and not a.startswith("127.")]
        self.assertTrue(addrs, "no non-loopback IPv4 address to test from")
        port = free_port()
        d = Daemon(args=["--listen", "0.0.0.0:%d" % port])
        try:
            self.assertIn("--listen 0.0.0.0:%d has no credentials" % port,
                          d.read_log())
            s = socket.create_connection((addrs[0], port), timeout=20)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            s.close()
            err = json.loads(buf)["error"]
            self.assertEqual(err["code"], "forbidden")
            self.assertIn("loopback", err["message"])
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            s.sendall((json.dumps(request("sla", "GD-SZ", SLA_INPUT)) +
                       "\n").encode())
            buf = b""
            while b"\n" not in buf:
                buf += s.recv(65536)
            s.close()
            self.assertIn("result", json.loads(buf))
        finally:
            d.stop()

    def test_bad_token_file_refused(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="verdict-http-")
        path = os.path.join(tmp, "tokens")
        with open(path, "w") as f:
            f.write("crm decide %s\nops root %s\n" % (sha256hex("a"),
                                                     sha256hex("b")))
        with self.assertRaises(RuntimeError) as cm:
            HttpDaemon(args=["--tokens", path])
        self.assertIn("tokens:2: role 'root'", str(cm.exception))


class Idempotency(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = HttpDaemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_http_retry_recorded_once(self):
        req = request("compensation", "GD-SZ", COMP_INPUT, rid="r1")
        before = self.d.rows()
        key = {"Idempotency-Key": "order-4711-refund"}
        st1, _, first = self.d.call("POST", "/v1/decisions", req, key)
        st2, _, again = self.d.call("POST", "/v1/decisions", req, key)
        self.assertEqual((st1, st2), (200, 200))
        self.assertEqual(first, again)  # the recorded decision, its id too
        self.assertEqual(self.d.rows(), before + 1)
        # the same key with another body is refused, not decided
        other = request("compensation", "GD-SZ",
                        dict(COMP_INPUT, charged_fen=99999), rid="r1")
        st, _, body = self.d.call("POST", "/v1/decisions", other, key)
        self.assertEqual((st, body["error"]["code"], body["error"]["path"]),
                         (409, "bad_request", "idem"))
        self.assertEqual(self.d.rows(), before + 1)
        # without the key: decided and recorded again
        _, _, fresh = self.d.call("POST", "/v1/decisions", req)
        self.assertNotEqual(fresh["decision_id"], first["decision_id"])
        self.assertEqual(self.d.rows(), before + 2)
        # the kind form takes the header too
        path = "/v1/decisions/sla?region=GD-SZ&at=" + AT.replace("+", "%2B")
        k2 = {"Idempotency-Key": "sla-C-1"}
        _, _, a = self.d.call("POST", path, SLA_INPUT, k2)
        _, _, b = self.d.call("POST", path, SLA_INPUT, k2)
        self.assertEqual(a["decision_id"], b["decision_id"])
        self.assertEqual(self.d.rows(), before + 3)
        st, _, body = self.d.call("POST", path, SLA_INPUT,
                                  {"Idempotency-Key": "has space"})
        self.assertEqual(st, 400)

    def test_errors_are_remembered_too(self):
        req = request("sla", "GD-SZ", {"x": 1})
        before = self.d.rows()
        key = {"Idempotency-Key": "bad-input-1"}
        st1, _, a = self.d.call("POST", "/v1/decisions", req, key)
        st2, _, b = self.d.call("POST", "/v1/decisions", req, key)
        self.assertEqual((st1, st2), (422, 422))
        self.assertEqual(a, b)
        self.assertEqual(self.d.rows(), before + 1)

    def test_socket_idem(self):
        before = self.d.rows()
        req = dict(request("sla", "GD-SZ", SLA_INPUT, rid=5), idem="sock-1")
        c = self.d.connect()
        a = c.call(**req)
        b = c.call(**req)
        c.close()
        self.assertIn("result", a)
        self.assertEqual(a, b)
        self.assertEqual(self.d.rows(), before + 1)
        c = self.d.connect()
        bad = c.call(**dict(req, idem=""))
        c.close()
        self.assertEqual((bad["error"]["code"], bad["error"]["path"]),
                         ("bad_request", "idem"))
        # keys are scoped by credential, not by transport: no credentials
        # here, so the socket's key is HTTP's too
        st, _, h = self.d.call("POST", "/v1/decisions", req,
                               {"Idempotency-Key": "sock-1"})
        # the header's key with the same body gives the same answer
        self.assertEqual((st, h["decision_id"]), (200, a["decision_id"]))


def metric(text, name, **labels):
    """The value of the series NAME{LABELS} in exposition TEXT, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        got = {}
        if "{" in head:
            for part in head[head.index("{") + 1:-1].split('",'):
                if part:
                    k, v = part.split("=", 1)
                    got[k] = v.strip('"')
        if all(got.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


class MetricsAndSchema(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = HttpDaemon(tcp=True, admin=True)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def scrape(self):
        c = self.d.http()
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith(
            "text/plain; version=0.0.4"))
        c.close()
        return text

    def test_promtool_clean_and_counts(self):
        for _ in range(3):
            self.d.call("POST", "/v1/decisions",
                        request("sla", "GD-SZ", SLA_INPUT))
        self.d.call("POST", "/v1/decisions", request("sla", "GD-SZ", {"x": 1}))
        held = self.d.connect()  # a Unix connection held open
        tcp = self.d.connect(tcp=True)
        held.call(**request("sla", "GD-SZ", SLA_INPUT))
        tcp.call(**request("sla", "GD-SZ", SLA_INPUT))
        keep = self.d.http()     # and an HTTP one, kept alive
        self.d.call("GET", "/health", conn=keep)
        text = self.scrape()
        out = subprocess.run(["promtool", "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertGreaterEqual(metric(text, "verdict_decisions_total",
                                       kind="sla", region="GD-SZ", code="ok"),
                                5)
        self.assertGreaterEqual(metric(text, "verdict_decisions_total",
                                       kind="sla", code="bad_input"), 1)
        self.assertGreaterEqual(metric(text, "verdict_open_connections",
                                       transport="unix"), 1)
        self.assertGreaterEqual(metric(text, "verdict_open_connections",
                                       transport="tcp"), 1)
        self.assertGreaterEqual(metric(text, "verdict_open_connections",
                                       transport="http"), 2)
        self.assertGreater(metric(text, "verdict_lua_memory_bytes",
                                  worker="0"), 0)
        self.assertIsNotNone(metric(text, "verdict_watchdog_recounts_total"))
        self.assertGreaterEqual(metric(
            text, "verdict_history_commit_duration_seconds_count"), 1)
        _, _, ready = self.d.call("GET", "/health/ready")
        self.assertEqual(metric(text, "verdict_policy_revision_info",
                                revision=ready["revision"]), 1)
        held.close()
        tcp.close()
        keep.close()

    def test_reloads_counted(self):
        before = metric(self.scrape(), "verdict_reloads_total",
                        result="ok") or 0
        st, _, body = self.d.call("POST", "/v1/admin/reload")
        self.assertEqual(st, 200, body)
        after = metric(self.scrape(), "verdict_reloads_total", result="ok")
        self.assertEqual(after, before + 1)

    def test_openapi(self):
        import jsonschema
        st, _, doc = self.d.call("GET", "/v1/openapi.json")
        self.assertEqual(st, 200)
        self.assertTrue(doc["openapi"].startswith("3.1"))
        _, _, ready = self.d.call("GET", "/health/ready")
        self.assertEqual(doc["info"]["version"], ready["revision"])
        self.assertIn("/v1/decisions/sla", doc["paths"])
        # the kind's input schema accepts what the daemon decides, and
        # refuses what it refuses, at the same path
        op = doc["paths"]["/v1/decisions/sla"]["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        schema = dict(schema, components=doc.get("components", {}))
        resolver = jsonschema.validators.validator_for(schema)(schema)
        resolver.validate(SLA_INPUT)
        bad = dict(SLA_INPUT, channel=17)
        errors = list(resolver.iter_errors(bad))
        self.assertTrue(errors)
        st, _, body = self.d.call("POST", "/v1/decisions/sla?region=national",
                                  bad)
        self.assertEqual((st, body["error"]["path"]), (422, "input.channel"))


class OpenApiPerRevision(unittest.TestCase):
    """The document is built once per revision and kept: it must change
    with the policies on every worker, never be served stale."""

    def test_rebuilt_on_activation(self):
        import shutil
        import tempfile
        pol = os.path.join(tempfile.mkdtemp(prefix="verdict-oa-"), "p")
        shutil.copytree(POLICIES, pol)
        d = HttpDaemon(policies=pol, workers=2, admin=True)
        try:
            def docs():
                # several connections: each worker answers some of them
                return [d.call("GET", "/v1/openapi.json")[2]
                        for _ in range(6)]

            def n48(doc):
                # sla's complaint_id is the one field of max_len 48 below
                return json.dumps(doc).count('"maxLength": 48')

            first = docs()
            rev1 = d.call("GET", "/health/ready")[2]["revision"]
            self.assertTrue(all(x == first[0] for x in first))
            self.assertEqual(first[0]["info"]["version"], rev1)
            self.assertEqual(n48(first[0]), 0)
            path = os.path.join(pol, "national", "sla.lua")
            with open(path) as f:
                src = f.read()
            old = "complaint_id = S.string{ required = true, max_len = 64"
            self.assertIn(old, src)
            with open(path, "w") as f:
                f.write(src.replace(old, old.replace("64", "48")))
            st, _, body = d.call("POST", "/v1/admin/reload")
            self.assertEqual(st, 200, body)
            rev2 = d.call("GET", "/health/ready")[2]["revision"]
            self.assertNotEqual(rev1, rev2)
            for doc in docs():
                self.assertEqual(doc["info"]["version"], rev2)
                self.assertEqual(n48(doc), 1)
        finally:
            d.stop()


class Readiness(unittest.TestCase):
    def test_not_ready_while_the_history_refuses_records(self):
        import resource
        d = HttpDaemon()
        try:
            req = request("sla", "GD-SZ", SLA_INPUT)
            self.assertEqual(d.call("POST", "/v1/decisions", req)[0], 200)
            # a file-size limit on the running daemon stands in for a full
            # disk (as test_history.FullDisk does)
            size = os.path.getsize(d.db + "-wal")
            resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                             (size + 4096, resource.RLIM_INFINITY))
            seen = None
            c = d.http()
            for i in range(300):
                st, _, body = d.call("POST", "/v1/decisions",
                                     request("sla", "GD-SZ", SLA_INPUT, rid=i),
                                     conn=c)
                if st != 200:
                    seen = (st, body["error"]["code"])
                    break
            c.close()
            self.assertEqual(seen, (503, "internal"))
            st, _, body = d.call("GET", "/health/ready")
            self.assertEqual((st, body["error"]["code"]), (503, "internal"))
            self.assertIn("not accepting records", body["error"]["message"])
            self.assertEqual(d.call("GET", "/health")[0], 200)  # it answers
            resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            self.assertEqual(d.call("POST", "/v1/decisions", req)[0], 200)
            self.assertEqual(d.call("GET", "/health/ready")[0], 200)
        finally:
            d.stop()


class StuckWorker(unittest.TestCase):
    def test_http_client_gets_a_503(self):
        from test_limits import BIG_BUDGET, SLOW
        d = HttpDaemon(policies=SLOW, unchecked=True, workers=2,
                       args=["--instr-budget", BIG_BUDGET,
                             "--decide-timeout", "1000"])
        try:
            s = d.raw()
            body = json.dumps(request("compensation", "GD", {
                "charged_fen": 5000, "due_fen": 3000, "spin": 4000000000},
                rid="spin")).encode()
            s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            (st, h, data), = read_responses(s, 1)
            self.assertEqual((st, h["connection"]), (503, "close"))
            self.assertEqual(json.loads(data)["error"]["code"], "internal")
            self.assertTrue(closed(s))
            s.close()
            self.assertEqual(d.call("GET", "/health")[0], 200)
        finally:
            d.stop()


class Dribble(unittest.TestCase):
    def test_request_byte_by_byte(self):
        # every header arrives in pieces: names and values are gathered
        d = HttpDaemon()
        try:
            body = json.dumps(request("sla", "GD-SZ", SLA_INPUT)).encode()
            msg = (b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n"
                   b"Idempotency-Key: dribble-1\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
            ids = []
            for _ in range(2):
                s = d.raw()
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(0, len(msg) - len(body)):
                    s.send(msg[i:i + 1])
                    time.sleep(0.001)
                s.sendall(body)
                (st, _, data), = read_responses(s, 1)
                s.close()
                self.assertEqual(st, 200)
                ids.append(json.loads(data)["decision_id"])
            self.assertEqual(ids[0], ids[1])
        finally:
            d.stop()


class AdminRefusal(unittest.TestCase):
    def test_refused_bundle_is_422(self):
        import shutil
        import tempfile
        from test_admin import MINI, set_multiplier
        tmp = tempfile.mkdtemp(prefix="verdict-http-")
        bundle = os.path.join(tmp, "bundle")
        shutil.copytree(MINI, bundle)
        d = HttpDaemon(policies=bundle, admin=True, tmp=tmp)
        try:
            set_multiplier(bundle, 3, break_it=True)
            st, _, body = d.call("POST", "/v1/admin/reload")
            self.assertEqual((st, body["error"]["code"]),
                             (422, "policy_error"), body)
            set_multiplier(bundle, 3)
            st, _, body = d.call("POST", "/v1/admin/reload")
            self.assertEqual(st, 200, body)
            self.assertIn("http:loopback", d.read_log() + json.dumps(
                d.call("GET", "/v1/admin/revisions")[2]))
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)
