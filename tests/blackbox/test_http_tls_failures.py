"""Failed TLS handshakes are counted and logged (docs/protocol.md, "TLS and
mutual TLS"): verdict_tls_handshake_failures_total by a reason of a few
fixed words, and a tls_handshake_failed line, at most one a second
whatever a scanner sends."""
import http.client
import socket
import ssl
import subprocess
import time
import unittest

from test_http import metric
from test_http_tls import TlsCase


def failures(text, reason):
    return metric(text, "verdict_tls_handshake_failures_total",
                  reason=reason) or 0


class HandshakeFailures(TlsCase):
    @classmethod
    def extra(cls, certs):
        # mutual TLS on both listeners; no token file, so a client
        # certificate of the CA is the credential and loopback scrapes
        return ["--tls-client-ca", certs.path("ca.pem")]

    def scrape(self):
        c = http.client.HTTPSConnection(
            "127.0.0.1", self.d.http_port, timeout=20,
            context=self.certs.client_ctx("crm"))
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        self.assertEqual(r.status, 200, text)
        return text

    def handshake(self, port, cert):
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        try:
            s = self.certs.client_ctx(cert).wrap_socket(
                raw, server_hostname="localhost")
            # TLS 1.3: the server's verdict on the client certificate
            # comes after the client's side of the handshake
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(65536):
                raise OSError("closed")
            s.close()
        finally:
            raw.close()

    def plain(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()

    def test_counted_by_reason_and_promtool_clean(self):
        before = self.scrape()
        self.plain(self.d.http_port)
        self.plain(self.d.port)  # the NDJSON TCP listener too
        for cert in ("intruder", None):
            with self.assertRaises((ssl.SSLError, OSError)):
                self.handshake(self.d.http_port, cert)
        after = self.scrape()
        self.assertEqual(failures(after, "not_tls"),
                         failures(before, "not_tls") + 2)
        self.assertEqual(failures(after, "bad_client_certificate"),
                         failures(before, "bad_client_certificate") + 1)
        self.assertEqual(failures(after, "no_client_certificate"),
                         failures(before, "no_client_certificate") + 1)
        # a good client is not counted
        self.handshake(self.d.http_port, "crm")
        self.assertEqual(
            sum(failures(self.scrape(), r) for r in
                ("not_tls", "bad_client_certificate",
                 "no_client_certificate", "no_common_protocol",
                 "client_alert", "other")),
            sum(failures(after, r) for r in
                ("not_tls", "bad_client_certificate",
                 "no_client_certificate", "no_common_protocol",
                 "client_alert", "other")))
        out = subprocess.run(["promtool", "check", "metrics"], input=after,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("# TYPE verdict_tls_handshake_failures_total counter",
                      after)

    def test_logged_but_rate_limited(self):
        time.sleep(1.1)  # past the last line another test made
        self.plain(self.d.http_port)
        log = self.d.read_log()
        first = log.count("tls_handshake_failed")
        self.assertGreaterEqual(first, 1)
        line = [ln for ln in log.splitlines()
                if "tls_handshake_failed" in ln][-1]
        self.assertIn("not_tls", line)
        self.assertIn("127.0.0.1", line)
        # a scanner: 40 failures at once make at most a couple of lines
        t0 = time.time()
        for _ in range(40):
            self.plain(self.d.http_port)
        spent = time.time() - t0
        log = self.d.read_log()
        self.assertLessEqual(log.count("tls_handshake_failed") - first,
                             int(spent) + 1)
        # the lines after them say how many were left out: every failure
        # not logged is counted into the next line (this one, at the
        # latest, a second later)
        time.sleep(1.1)
        self.plain(self.d.http_port)
        lines = [ln for ln in self.d.read_log().splitlines()
                 if "tls_handshake_failed" in ln][first:]
        self.assertTrue(lines)
        self.assertTrue(any("more since the last line" in ln
                            for ln in lines), lines)


if __name__ == "__main__":
    unittest.main()
