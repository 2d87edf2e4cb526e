"""TLS and mutual TLS on verdictd's TCP listeners (--tls-cert, --tls-key,
--tls-client-ca), HTTP and NDJSON alike.  The certificates are made here
with `openssl req`, in a temporary directory, for each run."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import unittest

from harness import Daemon, free_port, request
from test_http import SLA_INPUT, HttpDaemon, read_responses


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=%s" % name, "-keyout", name + ".key",
            "-out", name + ".pem", cwd=d)


def make_cert(d, ca, name, server=False):
    """A key and a certificate for NAME signed by CA."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % name,
            "-keyout", name + ".key", "-out", name + ".csr", cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
                else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
            "-CAkey", ca + ".key", "-CAcreateserial", "-days", "2",
            "-extfile", ext, "-out", name + ".pem", cwd=d)


class Certs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="verdict-tls-")
        make_ca(self.dir, "ca")
        make_ca(self.dir, "otherca")
        make_cert(self.dir, "ca", "server", server=True)
        make_cert(self.dir, "ca", "crm")
        make_cert(self.dir, "otherca", "intruder")

    def path(self, name):
        return os.path.join(self.dir, name)

    def client_ctx(self, cert=None):
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        if cert:
            ctx.load_cert_chain(self.path(cert + ".pem"),
                                self.path(cert + ".key"))
        return ctx


class TlsCase(unittest.TestCase):
    """A daemon with TLS on its TCP and HTTP listeners, certificates made
    for the class; extra() adds to its options."""

    @classmethod
    def extra(cls, certs):
        return []

    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        c = cls.certs
        cls.d = HttpDaemon(tcp=True, args=[
            "--tls-cert", c.path("server.pem"),
            "--tls-key", c.path("server.key")] + cls.extra(c))

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.certs.dir)


class Tls(TlsCase):

    def https(self, ctx=None):
        return http.client.HTTPSConnection(
            "127.0.0.1", self.d.http_port, timeout=20,
            context=ctx or self.certs.client_ctx())

    def test_https_keepalive(self):
        c = self.https()
        for i in range(3):
            st, _, body = self.d.call(
                "POST", "/v1/decisions",
                request("sla", "GD-SZ", SLA_INPUT, rid=i), conn=c)
            self.assertEqual((st, body["id"]), (200, i))
        c.close()
        # the same answer as over the Unix socket
        s = self.d.connect()
        plain = s.call(**request("sla", "GD-SZ", SLA_INPUT, rid=0))
        s.close()
        c = self.https()
        _, _, body = self.d.call("POST", "/v1/decisions",
                                 request("sla", "GD-SZ", SLA_INPUT, rid=0),
                                 conn=c)
        c.close()
        self.assertEqual(body["result"], plain["result"])
        self.assertEqual(body["trace"], plain["trace"])

    def test_curl(self):
        out = subprocess.run(
            ["curl", "-sS", "--cacert", self.certs.path("ca.pem"),
             "https://127.0.0.1:%d/health" % self.d.http_port],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(json.loads(out.stdout), {"status": "ok"}, out.stderr)

    def test_plain_http_refused(self):
        c = http.client.HTTPConnection("127.0.0.1", self.d.http_port,
                                       timeout=20)
        with self.assertRaises((OSError, http.client.HTTPException)):
            c.request("GET", "/health")
            c.getresponse().read()
        c.close()
        # and the server goes on serving
        c = self.https()
        self.assertEqual(self.d.call("GET", "/health", conn=c)[0], 200)
        c.close()

    def test_ndjson_over_tls(self):
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=20)
        s = self.certs.client_ctx().wrap_socket(raw, server_hostname="localhost")
        s.sendall((json.dumps(request("sla", "GD-SZ", SLA_INPUT, rid="t"))
                   + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        self.assertEqual(json.loads(buf)["id"], "t")
        # an HTTP client on the NDJSON listener: one 400 naming --http
        s.sendall(b"")
        s.close()
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=20)
        s = self.certs.client_ctx().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        (st, _, body), = read_responses(s, 1)
        self.assertEqual(st, 400)
        self.assertIn("--http", json.loads(body)["error"]["message"])
        s.close()


class MutualTls(TlsCase):
    @classmethod
    def extra(cls, certs):
        cls.tokens = certs.path("tokens")
        with open(cls.tokens, "w") as f:
            f.write("crm decide -\n")
        return ["--tls-client-ca", certs.path("ca.pem"), "--tokens", cls.tokens]

    def https(self, cert):
        return http.client.HTTPSConnection(
            "127.0.0.1", self.d.http_port, timeout=20,
            context=self.certs.client_ctx(cert))

    def test_client_certificate_is_the_credential(self):
        c = self.https("crm")
        st, _, body = self.d.call("POST", "/v1/decisions",
                                  request("sla", "GD-SZ", SLA_INPUT), conn=c)
        self.assertEqual(st, 200, body)
        # the role comes from the token file's line for its CN: decide only
        st, _, got = self.d.call("GET", "/v1/decisions/" + body["decision_id"],
                                 conn=c)
        self.assertEqual((st, got["error"]["code"]), (403, "forbidden"))
        c.close()
        rows = subprocess.run(
            ["sqlite3", self.d.db, "SELECT client FROM decisions WHERE "
             "decision_id = '%s'" % body["decision_id"]],
            capture_output=True, text=True).stdout.strip()
        self.assertTrue(rows.startswith("crm@127.0.0.1:"), rows)

    def test_wrong_or_no_client_certificate_refused(self):
        for cert in ("intruder", None):
            c = self.https(cert)
            with self.assertRaises((ssl.SSLError, OSError,
                                    http.client.HTTPException)):
                c.request("GET", "/health")
                c.getresponse().read()
            c.close()
        # the NDJSON listener alike
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=20)
        with self.assertRaises((ssl.SSLError, OSError)):
            s = self.certs.client_ctx("intruder").wrap_socket(
                raw, server_hostname="localhost")
            s.sendall((json.dumps(request("sla", "GD-SZ", SLA_INPUT)) +
                       "\n").encode())
            if not s.recv(65536):
                raise OSError("closed")
        raw.close()
        c = self.https("crm")
        self.assertEqual(self.d.call("GET", "/health", conn=c)[0], 200)
        c.close()

    def test_ndjson_records_the_subject(self):
        raw = socket.create_connection(("127.0.0.1", self.d.port), timeout=20)
        s = self.certs.client_ctx("crm").wrap_socket(
            raw, server_hostname="localhost")
        s.sendall((json.dumps(request("sla", "GD-SZ", SLA_INPUT)) + "\n")
                  .encode())
        buf = b""
        while b"\n" not in buf:
            buf += s.recv(65536)
        s.close()
        did = json.loads(buf)["decision_id"]
        rows = subprocess.run(
            ["sqlite3", self.d.db, "SELECT client FROM decisions WHERE "
             "decision_id = '%s'" % did], capture_output=True,
            text=True).stdout.strip()
        self.assertTrue(rows.startswith("crm@127.0.0.1:"), rows)


class Options(unittest.TestCase):
    def test_bad_files_refused(self):
        tmp = tempfile.mkdtemp(prefix="verdict-tls-")
        try:
            missing = os.path.join(tmp, "nothing.pem")
            with self.assertRaises(RuntimeError) as cm:
                HttpDaemon(args=["--tls-cert", missing, "--tls-key", missing])
            self.assertIn("--tls-cert " + missing, str(cm.exception))
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
