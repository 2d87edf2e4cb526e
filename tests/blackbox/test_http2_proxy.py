"""HTTP/2 through HAProxy (docs/protocol.md, "HTTP/2"): the configuration
the document gives, taken from it as written, in front of a real
verdictd; curl speaks HTTP/2 over TLS (ALPN h2) and in cleartext (h2c,
prior knowledge) to it, and gets the decision verdictd makes over
HTTP/1.1, recorded once."""
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import ROOT, free_port, request
from test_http import SLA_INPUT, HttpDaemon
from test_http_tls import Certs


def documented_config():
    """The haproxy block under "### HTTP/2" in docs/protocol.md."""
    with open(os.path.join(ROOT, "docs", "protocol.md")) as f:
        text = f.read()
    section = text[text.index("### HTTP/2"):]
    return re.search(r"```haproxy\n(.*?)```", section, re.S).group(1)


class Http2ThroughHaproxy(unittest.TestCase):
    def setUp(self):
        self.certs = Certs()
        self.d = HttpDaemon()
        pem = self.certs.path("combined.pem")
        with open(pem, "w") as out:
            for part in ("server.pem", "server.key"):
                with open(self.certs.path(part)) as f:
                    out.write(f.read())
        self.tls_port, self.h2c_port = free_port(), free_port()
        cfg = documented_config()
        for old, new in (("0.0.0.0:8443", "127.0.0.1:%d" % self.tls_port),
                         ("127.0.0.1:8480", "127.0.0.1:%d" % self.h2c_port),
                         ("127.0.0.1:8181", "127.0.0.1:%d" % self.d.http_port),
                         ("/etc/haproxy/verdict.pem", pem)):
            self.assertIn(old, cfg)
            cfg = cfg.replace(old, new)
        path = self.certs.path("haproxy.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        check = subprocess.run(["haproxy", "-c", "-f", path],
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.proxy = subprocess.Popen(["haproxy", "-db", "-f", path],
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.h2c_port),
                                         timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    def tearDown(self):
        self.proxy.terminate()
        self.proxy.wait(30)
        self.d.stop()
        shutil.rmtree(self.certs.dir)

    def curl(self, *args):
        out = subprocess.run(
            ["curl", "-sS", "-w", "\n%{http_version} %{http_code}"]
            + list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        body, _, tail = out.stdout.rpartition("\n")
        return tail.split(), json.loads(body)

    def test_h2_and_h2c_decide_through_the_proxy(self):
        req = json.dumps(request("sla", "GD-SZ", SLA_INPUT, rid="h2"))
        (ver, code), tls = self.curl(
            "--http2", "--cacert", self.certs.path("ca.pem"),
            "-H", "Content-Type: application/json", "-d", req,
            "https://127.0.0.1:%d/v1/decisions" % self.tls_port)
        self.assertEqual((ver, code), ("2", "200"))
        (ver, code), h2c = self.curl(
            "--http2-prior-knowledge",
            "-H", "Content-Type: application/json", "-d", req,
            "http://127.0.0.1:%d/v1/decisions" % self.h2c_port)
        self.assertEqual((ver, code), ("2", "200"))
        # the decision verdictd makes over HTTP/1.1 itself
        _, _, direct = self.d.call("POST", "/v1/decisions", json.loads(req))
        for got in (tls, h2c):
            self.assertEqual(got["id"], "h2")
            self.assertEqual(got["result"], direct["result"])
            self.assertEqual(got["trace"], direct["trace"])
        self.assertEqual(self.d.rows(), 3)
        # the health check the backend runs answers through the proxy too
        (ver, code), ready = self.curl(
            "--http2-prior-knowledge",
            "http://127.0.0.1:%d/health/ready" % self.h2c_port)
        self.assertEqual((ver, code, ready["ready"]), ("2", "200", True))


if __name__ == "__main__":
    unittest.main()
