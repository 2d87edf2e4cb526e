"""Idempotency keys across a restart (docs/protocol.md, "Idempotency keys").

A key is stored with the record it answered, in the same transaction, so
a client whose first try was acknowledged and whose retry lands after a
crash and restart (kill -9) gets the recorded decision back: the same
decision_id, and one record.  On SQLite and, under pg_virtualenv (as
scripts/run-tests runs every black-box test), on PostgreSQL.
"""
import json
import sqlite3
import tempfile
import time
import unittest

from harness import request
from test_fleet import new_database, psql
from test_http import COMP_INPUT, SLA_INPUT, HttpDaemon

DAY_MS = 24 * 3600 * 1000


def keys_sqlite(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return c.execute("SELECT key, decision_id, received_ms, code"
                         " FROM idempotency ORDER BY key").fetchall()
    finally:
        c.close()


class SqliteRestart(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-idem-")
        self.d = HttpDaemon(tmp=self.tmp)

    def tearDown(self):
        self.d.stop()

    def restart(self, kill=True):
        if kill:
            self.d.kill()  # SIGKILL: no clean shutdown, no final flush
        else:
            self.d.stop()
        self.d = HttpDaemon(tmp=self.tmp)

    def test_retry_after_kill_returns_the_recorded_decision(self):
        req = request("compensation", "GD-SZ", COMP_INPUT, rid="r1")
        key = {"Idempotency-Key": "refund-8841"}
        st, _, first = self.d.call("POST", "/v1/decisions", req, key)
        self.assertEqual(st, 200)
        self.assertEqual(self.d.rows(), 1)
        # durable: the answer came after the commit, so the key is stored
        self.assertEqual([(k, i) for k, i, _, _ in keys_sqlite(self.d.db)],
                         [("\nrefund-8841", first["decision_id"])])
        self.restart()
        st, _, again = self.d.call("POST", "/v1/decisions", req, key)
        self.assertEqual(st, 200)
        self.assertEqual(again, first)  # decision_id, result, trace
        self.assertEqual(self.d.rows(), 1)
        # the same key with another body is still refused
        other = request("compensation", "GD-SZ",
                        dict(COMP_INPUT, charged_fen=1), rid="r1")
        st, _, body = self.d.call("POST", "/v1/decisions", other, key)
        self.assertEqual((st, body["error"]["code"], body["error"]["path"]),
                         (409, "bad_request", "idem"))
        self.assertEqual(self.d.rows(), 1)
        # and a request without the key is decided again
        _, _, fresh = self.d.call("POST", "/v1/decisions", req)
        self.assertNotEqual(fresh["decision_id"], first["decision_id"])
        self.assertEqual(self.d.rows(), 2)

    def test_errors_and_socket_keys_survive_too(self):
        bad = request("sla", "GD-SZ", {"x": 1})
        hk = {"Idempotency-Key": "bad-input-7"}
        st1, _, a = self.d.call("POST", "/v1/decisions", bad, hk)
        sock = dict(request("sla", "GD-SZ", SLA_INPUT, rid=9), idem="sock-7")
        c = self.d.connect()
        s1 = c.call(**sock)
        c.close()
        self.assertEqual(st1, 422)
        self.assertIn("result", s1)
        self.restart(kill=False)
        st2, _, b = self.d.call("POST", "/v1/decisions", bad, hk)
        c = self.d.connect()
        s2 = c.call(**sock)
        c.close()
        self.assertEqual((st2, b), (422, a))
        self.assertEqual(s2, s1)
        self.assertEqual(self.d.rows(), 2)
        codes = {k: code for k, _, _, code in keys_sqlite(self.d.db)}
        self.assertEqual(codes, {"\nbad-input-7": "bad_input",
                                 "\nsock-7": None})

    def test_keys_past_the_window_are_dropped(self):
        req = request("sla", "GD-SZ", SLA_INPUT, rid=1)
        key = {"Idempotency-Key": "old-1"}
        _, _, first = self.d.call("POST", "/v1/decisions", req, key)
        self.d.kill()
        # the key was received a day and a minute ago
        db = sqlite3.connect(self.d.db)
        db.execute("UPDATE idempotency SET received_ms = ?",
                   (int(time.time() * 1000) - DAY_MS - 60000,))
        db.commit()
        db.close()
        self.d = HttpDaemon(tmp=self.tmp)
        _, _, again = self.d.call("POST", "/v1/decisions", req, key)
        # not loaded: decided and recorded again, under the same key
        self.assertNotEqual(again["decision_id"], first["decision_id"])
        self.assertEqual(self.d.rows(), 2)
        rows = keys_sqlite(self.d.db)
        self.assertEqual([(k, i) for k, i, _, _ in rows],
                         [("\nold-1", again["decision_id"])])


class PostgresRestart(unittest.TestCase):
    """The same on a fleet's PostgreSQL history: each node's own keys."""

    def test_retry_after_kill(self):
        name, conninfo = new_database()
        tmp = tempfile.mkdtemp(prefix="verdict-idem-pg-")
        args = ["--db", conninfo, "--node-id", "n1"]
        d = HttpDaemon(args=args, tmp=tmp)
        try:
            req = request("compensation", "GD-SZ", COMP_INPUT, rid="p1")
            key = {"Idempotency-Key": "pg-refund-1"}
            st, _, first = d.call("POST", "/v1/decisions", req, key)
            self.assertEqual(st, 200)
            d.kill()
            stored = psql(name, "SELECT node_id, key, decision_id"
                                " FROM idempotency").strip()
            self.assertEqual(stored,
                             "n1|\npg-refund-1|" + first["decision_id"])
            d = HttpDaemon(args=args, tmp=tmp)
            st, _, again = d.call("POST", "/v1/decisions", req, key)
            self.assertEqual((st, again), (200, first))
            n = psql(name, "SELECT count(*) FROM decisions").strip()
            self.assertEqual(n, "1")
            other = request("compensation", "GD-SZ",
                            dict(COMP_INPUT, charged_fen=1), rid="p1")
            st, _, body = d.call("POST", "/v1/decisions", other, key)
            self.assertEqual((st, body["error"]["path"]), (409, "idem"))
            # another node does not answer with n1's keys
            d2 = HttpDaemon(args=["--db", conninfo, "--node-id", "n2"])
            try:
                _, _, b = d2.call("POST", "/v1/decisions", req, key)
                self.assertNotEqual(b["decision_id"], first["decision_id"])
            finally:
                d2.stop()
            self.assertEqual(
                psql(name, "SELECT count(*) FROM decisions").strip(), "2")
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
