"""GET /v1/decisions/{id} on a kept read-only connection (docs/protocol.md,
"HTTP"): a worker opens it on its first lookup and keeps it, on SQLite and
PostgreSQL alike; one that breaks is opened again without the client
seeing an error."""
import os
import unittest

from harness import request
from test_fleet import new_database, psql
from test_http import SLA_INPUT, HttpDaemon


def open_on(pid, path):
    """How many of process PID's descriptors are open on PATH."""
    n = 0
    fds = "/proc/%d/fd" % pid
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)) == path:
                n += 1
        except OSError:
            pass
    return n


class SqliteLookups(unittest.TestCase):
    def test_one_connection_kept(self):
        d = HttpDaemon(workers=1)
        try:
            _, _, dec = d.call("POST", "/v1/decisions",
                               request("sla", "GD-SZ", SLA_INPUT))
            db = os.path.realpath(d.db)
            before = open_on(d.proc.pid, db)
            st, _, rec = d.call("GET", "/v1/decisions/" + dec["decision_id"])
            self.assertEqual((st, rec["decision_id"]),
                             (200, dec["decision_id"]))
            kept = open_on(d.proc.pid, db)
            self.assertEqual(kept, before + 1)  # opened, and still open
            conn = d.http()
            for i in range(20):
                st, _, rec = d.call("GET", "/v1/decisions/"
                                    + dec["decision_id"], conn=conn)
                self.assertEqual((st, rec["kind"]), (200, "sla"))
                st, _, body = d.call(
                    "GET", "/v1/decisions/01900000-0000-7000-8000-%012d" % i,
                    conn=conn)
                self.assertEqual((st, body["error"]["code"]),
                                 (404, "not_found"))
            conn.close()
            self.assertEqual(open_on(d.proc.pid, db), kept)  # none more
            # a record committed after the connection opened is seen
            _, _, later = d.call("POST", "/v1/decisions",
                                 request("sla", "GD-SZ", SLA_INPUT))
            st, _, rec = d.call("GET", "/v1/decisions/" + later["decision_id"])
            self.assertEqual((st, rec["decision_id"]),
                             (200, later["decision_id"]))
        finally:
            d.stop()


class PostgresLookups(unittest.TestCase):
    def test_kept_and_reopened(self):
        name, conninfo = new_database()
        d = HttpDaemon(args=["--db", conninfo, "--node-id", "n1"], workers=1)

        def lookups():
            return psql(name, "SELECT count(*) FROM pg_stat_activity WHERE"
                              " application_name = 'verdictd lookup'"
                        ).strip()
        try:
            _, _, dec = d.call("POST", "/v1/decisions",
                               request("sla", "GD-SZ", SLA_INPUT))
            self.assertEqual(lookups(), "0")
            for _ in range(5):
                st, _, rec = d.call("GET",
                                    "/v1/decisions/" + dec["decision_id"])
                self.assertEqual((st, rec["decision_id"]),
                                 (200, dec["decision_id"]))
            self.assertEqual(lookups(), "1")
            # the server drops it: the next lookup opens a new one
            psql(name, "SELECT pg_terminate_backend(pid) FROM"
                       " pg_stat_activity WHERE"
                       " application_name = 'verdictd lookup'")
            st, _, rec = d.call("GET", "/v1/decisions/" + dec["decision_id"])
            self.assertEqual((st, rec["decision_id"]),
                             (200, dec["decision_id"]))
            self.assertEqual(lookups(), "1")
            st, _, _ = d.call("GET", "/v1/decisions/"
                              "01900000-0000-7000-8000-000000000000")
            self.assertEqual(st, 404)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main()
