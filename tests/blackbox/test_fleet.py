"""A fleet: several verdictd nodes on one PostgreSQL history.

These need a real, throwaway PostgreSQL server: scripts/run-tests runs the
black-box tests under Debian's pg_virtualenv, which starts a fresh cluster
and sets PGHOST, PGPORT, PGUSER and PGPASSWORD for it.  Each test makes a
database of its own there.  Run alone:

    pg_virtualenv python3 tests/blackbox/run.py   (all black-box tests)
    pg_virtualenv python3 -m unittest -v tests/blackbox/test_fleet.py
"""
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import unittest

from harness import (AT, FIXTURES, POLICIES, VERDICTD, Daemon, Refused,
                     free_port, request, run_cli)
from test_http import HttpDaemon
from test_admin import set_multiplier
from test_history import escalation, u77_history

MINI = os.path.join(FIXTURES, "mini")
_count = itertools.count()


def psql(db, sql):
    """Run SQL on database DB of the throwaway server; its output, unaligned."""
    p = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atq", "-d", db,
                        "-c", sql], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("psql: " + p.stderr.decode())
    return p.stdout.decode()


def new_database():
    """A fresh database: (its name, a connection string for it)."""
    name = "verdict_%d_%d" % (os.getpid(), next(_count))
    psql("postgres", "CREATE DATABASE %s" % name)
    return name, "postgresql:///%s" % name


@contextlib.contextmanager
def decisions_locked(test, name):
    """While the block runs, another session of database NAME holds
    `decisions` ACCESS EXCLUSIVE (a query on it waits: a stalled server,
    as the client sees it)."""
    locker = subprocess.Popen(["psql", "-X", "-q", "-d", name],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL)
    try:
        locker.stdin.write(b"BEGIN; LOCK TABLE decisions IN ACCESS"
                           b" EXCLUSIVE MODE; SELECT 1;\n")
        locker.stdin.flush()
        deadline = time.time() + 10
        while psql(name, "SELECT count(*) FROM pg_locks WHERE mode ="
                         " 'AccessExclusiveLock' AND relation ="
                         " 'decisions'::regclass").strip() != "1":
            test.assertLess(time.time(), deadline)
            time.sleep(0.05)
        yield
    finally:
        locker.stdin.write(b"COMMIT;\n")
        locker.stdin.close()
        locker.wait(timeout=30)


def mini_copy(name):
    """A copy of the mini bundle of its own, for a node whose policies a
    test edits."""
    b = os.path.join(os.environ.get("TMPDIR", "/tmp"), "%s-policies" % name)
    shutil.rmtree(b, ignore_errors=True)
    shutil.copytree(MINI, b)
    return b


def node(conninfo, name, policies=MINI, args_extra=(), **kw):
    return Daemon(policies, args=["--db", conninfo, "--node-id", name] +
                  list(args_extra), **kw)


def comp(rid, charged=5000):
    return request("compensation", "GD-SZ", {"charged_fen": charged,
                                             "due_fen": 3000}, rid=rid)


def verify(conninfo, *anchors):
    args = ["history", "verify", "--db", conninfo, "--format", "json"]
    for a in anchors:
        args += ["--anchor", a]
    rc, out, err = run_cli(*args)
    return rc, (json.loads(out) if out.strip() else None), err


COLUMNS = ["decision_id", "received_ms", "at", "at_ms", "kind", "region",
           "policy_region", "revision", "complaint_id", "customer_id",
           "category", "request", "result", "trace", "facts", "error_code",
           "error_message", "error_path", "elapsed_us", "client"]
INTEGERS = {"received_ms", "at_ms", "elapsed_us"}


PERSONAL = {"customer_id", "request", "facts"}


def ns(v):
    return b"-," if v is None else str(len(v)).encode() + b":" + v + b","


def node_hash(dbname, node_id, seq, form=None):
    """The hash of a node's row as docs/fleet.md says to compute it, from
    the stored bytes, and the hash the row carries.  FORM "vn1" or "vn2";
    None: as the node's node_formats row says."""
    cols = ", ".join(c if c in INTEGERS else
                     "coalesce(encode(%s, 'hex'), 'NULL')" % c for c in COLUMNS)
    if form is None:
        v2_from = psql(dbname, "SELECT v2_from FROM node_formats"
                               " WHERE node_id = '%s'" % node_id).strip()
        form = "vn2" if v2_from and seq >= int(v2_from) else "vn1"
    prev = psql(dbname, "SELECT hash FROM decisions WHERE node_id = '%s'"
                        " AND node_seq = %d" % (node_id, seq - 1)).strip()
    extra = (", coalesce(personal_salt, 'NULL'),"
             " coalesce(personal_digest, 'NULL')" if form == "vn2" else "")
    row = psql(dbname, "SELECT %s%s, hash FROM decisions WHERE node_id = '%s'"
                       " AND node_seq = %d" % (cols, extra, node_id, seq)
               ).strip()
    fields = row.split("|")
    values = {}
    for name, v in zip(COLUMNS, fields):
        if name in INTEGERS:
            values[name] = v.encode()
        else:
            values[name] = None if v == "NULL" else bytes.fromhex(v)
    data = ns(form.encode()) + ns(str(seq).encode()) + ns(node_id.encode())
    if form == "vn1":
        for name in COLUMNS:
            data += ns(values[name])
    else:
        salt, kept = fields[len(COLUMNS)], fields[len(COLUMNS) + 1]
        if salt != "NULL":   # the personal part, from its salt
            digest = hashlib.sha256(
                ns(b"vp1") + ns(salt.encode()) +
                b"".join(ns(values[c]) for c in
                         ("customer_id", "request", "facts"))).hexdigest()
        else:                # erased: the digest the erasure kept
            digest = kept
        for name in COLUMNS:
            if name not in PERSONAL:
                data += ns(values[name])
        data += ns(digest.encode())
    h = hashlib.sha256(bytes.fromhex(prev or "0" * 64) + data).hexdigest()
    return h, fields[-1]


def as_vn1(dbname, node_id):
    """Make node NODE_ID's chain what a node of a verdict before PostgreSQL
    schema 5 wrote: every row "vn1", no salt, no node_formats row."""
    psql(dbname, "DELETE FROM node_formats WHERE node_id = '%s';"
                 " UPDATE decisions SET personal_salt = NULL"
                 " WHERE node_id = '%s'" % (node_id, node_id))
    head = int(psql(dbname, "SELECT seq FROM node_heads WHERE node_id = '%s'"
                            % node_id))
    for seq in range(1, head + 1):
        h, _ = node_hash(dbname, node_id, seq, "vn1")
        psql(dbname, "UPDATE decisions SET hash = '%s' WHERE node_id = '%s'"
                     " AND node_seq = %d" % (h, node_id, seq))
    psql(dbname, "UPDATE node_heads SET hash = '%s' WHERE node_id = '%s'"
                 % (h, node_id))


def ready_within(d, status, seconds=15):
    """(status, body) of HttpDaemon D's /health/ready once it is STATUS,
    or as it is after SECONDS."""
    deadline = time.time() + seconds
    while True:
        st, _, body = d.call("GET", "/health/ready")
        if st == status or time.time() > deadline:
            return st, body
        time.sleep(0.1)


class Proxy:
    """A TCP relay to the throwaway server, which a test can cut (every
    connection closed, new ones refused, as a stopped server does) and
    mend (listening again on the same port)."""

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.socks = []
        self.listener = None
        self.mend()

    def conninfo(self, dbname):
        return "postgresql://%s@127.0.0.1:%d/%s" % (
            os.environ.get("PGUSER", "postgres"), self.port, dbname)

    def mend(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut(self):
        ls, self.listener = self.listener, None
        ls.shutdown(socket.SHUT_RDWR)
        ls.close()
        with self.lock:
            socks, self.socks = self.socks, []
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def hold_after(self, n):
        """Relay the next N new connections, then accept and hold every
        later one without an answer (a postmaster that stopped)."""
        with self.lock:
            self.relay_left = n

    def _accept(self, ls):
        while True:
            try:
                a, _ = ls.accept()
            except OSError:
                return
            with self.lock:
                left = getattr(self, "relay_left", None)
                if left is not None:
                    self.relay_left = left - 1
                if left is not None and left <= 0:
                    self.socks.append(a)   # held: never relayed
                    continue
            b = socket.create_connection((os.environ.get("PGHOST", "localhost"),
                                          int(os.environ.get("PGPORT", 5432))))
            with self.lock:
                self.socks += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y),
                                 daemon=True).start()

    @staticmethod
    def _pipe(x, y):
        try:
            while True:
                data = x.recv(65536)
                if not data:
                    break
                y.sendall(data)
        except OSError:
            pass
        for z in (x, y):
            try:
                z.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def setUpModule():
    if not os.environ.get("PGHOST"):
        raise RuntimeError("test_fleet needs a throwaway PostgreSQL server: run "
                           "it under pg_virtualenv (scripts/run-tests does)")


class Fleet(unittest.TestCase):
    def test_a_customers_complaints_count_on_every_node(self):
        # test_history's customer U-77, decided across nodes a and b; the
        # counted escalation goes to node c.  The counts are those one
        # node gives (test_history.py: 2 repeats, 1 over the head, 3
        # refunds, 1 similar customer).
        _, db = new_database()
        nodes = [node(db, n, POLICIES) for n in ("a", "b", "c")]
        conns = [d.connect() for d in nodes]

        esc = escalation
        history = u77_history()
        for i, req in enumerate(history):
            r = conns[i % 2].call(**req)   # nodes a and b, in turn
            self.assertNotIn("error", r, r)
        counted = conns[2].call(**esc("C-74", "U-77", AT))
        self.assertNotIn("error", counted, counted)
        self.assertEqual(counted["result"]["warnings"],
                         ["repeat_complaints", "over_head_complaints",
                          "frequent_refunds", "pay_within_basis"])
        for c in conns:
            c.close()
        for d in nodes:
            self.assertEqual(d.stop(), 0, d.read_log())
        facts = json.loads(psql(db.rsplit("/", 1)[1],
            "SELECT convert_from(facts, 'UTF8') FROM decisions"
            " WHERE decision_id = convert_to('%s', 'UTF8')"
            % counted["decision_id"]))
        asked = {f["query"]: f["value"] for f in facts}
        self.assertEqual(asked, {"similar_customers": 1, "repeat_complaints": 2,
                                 "over_head_complaints": 1,
                                 "refunded_complaints": 3})
        # the whole fleet verifies: three chains, one anchor each
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        self.assertEqual([n["node"] for n in rep["nodes"]], ["a", "b", "c"])
        self.assertEqual([n["seq"] for n in rep["nodes"]], [7, 6, 1])
        self.assertEqual(rep["records"], 14)
        # and replay reproduces every decision from the shared history
        rc, out, err = run_cli("replay", "--db", db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(json.loads(out)["unchanged"], 14)

    def test_replay_in_parallel_on_a_fleet(self):
        # 120 decisions, nodes a and b in turn: node_seqs 1..60 on each,
        # so seq ranges could not split them; received_ms ranges do
        dbname, db = new_database()
        nodes = [node(db, n) for n in ("a", "b")]
        conns = [d.connect() for d in nodes]
        for i in range(120):
            r = conns[i % 2].call(**comp("r%d" % i, 5000 + i))
            self.assertNotIn("error", r, r)
        for c in conns:
            c.close()
        for d in nodes:
            self.assertEqual(d.stop(), 0, d.read_log())
        order = psql(dbname, "SELECT convert_from(decision_id, 'UTF8')"
                     " FROM decisions ORDER BY received_ms, node_id,"
                     " node_seq").split()
        self.assertEqual(len(order), 120)
        # against a candidate whose GD multiplies by 4 instead of 3: every
        # decision changes; the first 50 changes, in the history's order,
        # whatever the threads
        cand = mini_copy("replay-threads")
        path = os.path.join(cand, "regions", "GD", "compensation.lua")
        with open(path) as f:
            src = f.read()
        with open(path, "w") as f:
            f.write(src.replace("P.multiplier = 3", "P.multiplier = 4", 1))
        reports = {}
        # a thread takes the ranges nobody has taken, four a thread on
        # PostgreSQL: one thread reads four in turn, each whole
        for t in (1, 4, 8):
            rc, out, err = run_cli("replay", "--db", db, "--against", cand,
                                   "--threads", str(t), "--max-changes",
                                   "50", "--format", "json")
            self.assertEqual(rc, 0, err)
            reports[t] = json.loads(out)
            self.assertEqual(reports[t]["replayed"], 120)
            self.assertEqual(reports[t]["changed"], 120)
            self.assertEqual([c["decision_id"]
                              for c in reports[t]["changes"]], order[:50])
        for r in reports.values():  # what a run took
            del r["seconds"], r["decisions_per_second"]
        self.assertEqual(reports[1], reports[4])
        self.assertEqual(reports[1], reports[8])
        # every decision's revision made unloadable (its files gone): the
        # first ten of the history are reported, whatever the threads
        psql(dbname, "DELETE FROM revision_files")
        for t in (1, 4):
            rc, out, err = run_cli("replay", "--db", db, "--threads",
                                   str(t), "--format", "json")
            self.assertEqual(json.loads(out)["errors"], 120, err)
            kept = [ln.split(":")[1].strip() for ln in err.splitlines()
                    if ln.startswith("verdict replay: ") and
                    ln.split(":")[1].strip() in order]
            self.assertEqual(kept, order[:10], err)

    def test_a_second_daemon_with_the_same_node_id_is_refused(self):
        _, db = new_database()
        a = node(db, "a")
        r = Refused(MINI, args=["--db", db, "--node-id", "a"])
        self.assertEqual(r.status, 1, r.log)
        self.assertIn("another verdictd is writing as node 'a'", r.log)
        b = node(db, "b")   # another name is welcome
        self.assertEqual(b.stop(), 0, b.read_log())
        self.assertEqual(a.stop(), 0, a.read_log())

    def test_node_id_is_required_and_checked(self):
        _, db = new_database()
        r = Refused(MINI, args=["--db", db])
        self.assertEqual(r.status, 2, r.log)
        self.assertIn("--node-id", r.log)
        r = Refused(MINI, args=["--db", db, "--node-id", "a b"])
        self.assertEqual(r.status, 2, r.log)
        r = Refused(MINI, args=["--node-id", "a"])   # a SQLite file
        self.assertEqual(r.status, 2, r.log)
        self.assertIn("PostgreSQL", r.log)

    def test_kill9_under_pipelined_durable_load_loses_nothing(self):
        name, db = new_database()
        a, b = node(db, "a"), node(db, "b")
        stop = threading.Event()
        received, errors = [], []

        def run(d, k):
            try:
                c = d.connect()
                i = 0
                while not stop.is_set():
                    c.send("".join(json.dumps(comp([k, i + j])) + "\n"
                                   for j in range(16)))
                    for _ in range(16):
                        r = c.readline()
                        if "error" in r:
                            errors.append(r)
                        received.append(r["decision_id"])
                    i += 16
            except (EOFError, OSError):
                pass   # killed under us
        threads = [threading.Thread(target=run, args=(d, k))
                   for k, d in enumerate((a, a, b, b))]
        for t in threads:
            t.start()
        time.sleep(2)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        a.log.close()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(b.stop(), 0, b.read_log())
        self.assertEqual(errors, [])
        self.assertGreater(len(received), 100)
        stored = set(psql(name, "SELECT convert_from(decision_id, 'UTF8')"
                                " FROM decisions").split())
        self.assertEqual([x for x in received if x not in stored], [])
        # node a restarts on its chain, which continues and verifies
        a2 = node(db, "a")
        c = a2.connect()
        self.assertNotIn("error", c.call(**comp("after")))
        c.close()
        self.assertEqual(a2.stop(), 0, a2.read_log())
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        self.assertEqual(rep["records"], len(stored) + 1)

    def test_verify_catches_edit_delete_insert_on_any_node(self):
        name, db = new_database()
        for n in ("a", "b"):
            d = node(db, n)
            c = d.connect()
            for i in range(5):
                self.assertNotIn("error", c.call(**comp("%s%d" % (n, i))))
            c.close()
            self.assertEqual(d.stop(), 0, d.read_log())
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        anchors = [x["anchor"] for x in rep["nodes"]]
        # the rule docs/fleet.md gives, computed here from the stored bytes
        for n, seq in (("a", 1), ("b", 3)):
            mine, stored = node_hash(name, n, seq)
            self.assertEqual(mine, stored)
        fleet = rep["fleet_anchor"]
        # the same history verifies to the same fleet anchor
        self.assertEqual(verify(db)[1]["fleet_anchor"], fleet)

        def tampered(sql, problem, where):
            copy = "%s_t%d" % (name, next(_count))
            psql("postgres", "CREATE DATABASE %s TEMPLATE %s" % (copy, name))
            psql(copy, sql)
            rc, rep, err = verify("postgresql:///" + copy)
            self.assertEqual(rc, 1, (sql, rep, err))
            self.assertIn(problem, rep["message"])
            self.assertIn(where, rep["message"])
            return copy

        tampered("UPDATE decisions SET result = convert_to('{\"offer_fen\":1}',"
                 " 'UTF8') WHERE node_id = 'b' AND node_seq = 3",
                 "changed", "node b")
        tampered("DELETE FROM decisions WHERE node_id = 'a' AND node_seq = 2",
                 "deleted", "node a")
        tampered("INSERT INTO decisions SELECT node_id, 6, decision_id,"
                 " received_ms, at, at_ms, kind, region, policy_region,"
                 " revision, complaint_id, customer_id, category, request,"
                 " result, trace, facts, error_code, error_message,"
                 " error_path, elapsed_us, client, hash FROM decisions"
                 " WHERE node_id = 'b' AND node_seq = 5",
                 "inserted", "node b")
        tampered("UPDATE decisions SET node_id = 'z' WHERE node_id = 'b'"
                 " AND node_seq = 5", "inserted", "'z'")
        # a cut tail with its head moved back verifies on its own; the
        # anchor kept outside shows it
        cut = tampered("DELETE FROM decisions WHERE node_id = 'a'"
                       " AND node_seq = 5;"
                       "UPDATE node_heads SET seq = 4, hash = (SELECT hash"
                       " FROM decisions WHERE node_id = 'a' AND node_seq = 4)"
                       " WHERE node_id = 'a';"
                       "UPDATE node_heads SET seq = 9 WHERE node_id = 'b'",
                       "deleted", "node b")
        psql(cut, "UPDATE node_heads SET seq = 5 WHERE node_id = 'b'")
        rc, rep, err = verify("postgresql:///" + cut)
        self.assertEqual(rc, 0, (rep, err))
        self.assertNotEqual(rep["fleet_anchor"], fleet)
        rc, rep, err = verify("postgresql:///" + cut, *anchors)
        self.assertEqual(rc, 1, (rep, err))
        self.assertIn("anchor a:5", rep["message"])
        # the untouched original holds every anchor
        rc, rep, err = verify(db, *anchors)
        self.assertEqual(rc, 0, (rep, err))
        # retention: node a's first two rows dropped; the kept rows verify
        # from the anchor kept for row 2, and from nothing else
        h2 = psql(name, "SELECT hash FROM decisions WHERE node_id = 'a'"
                        " AND node_seq = 2").strip()
        kept = tampered("DELETE FROM decisions WHERE node_id = 'a'"
                        " AND node_seq <= 2", "deleted", "node a")
        rc, rep, err = verify("postgresql:///" + kept, "a:2:" + h2)
        self.assertEqual(rc, 0, (rep, err))
        self.assertEqual([(n["node"], n["start"], n["seq"]) for n in rep["nodes"]],
                         [("a", 2, 5), ("b", 0, 5)])
        rc, rep, err = verify("postgresql:///" + kept, "a:2:" + "0" * 63 + "1")
        self.assertEqual(rc, 1, (rep, err))
        self.assertIn("node a", rep["message"])

    def test_erase_a_customer_on_every_node(self):
        name, db = new_database()
        # a and b on this verdict ("vn2"); c as a node of the verdict before
        # schema 5 left it ("vn1": its records are left)
        for n in ("c", "b", "a"):
            d = node(db, n, policies=POLICIES)
            c = d.connect()
            for i in range(2):
                for who in ("U-ERASE", "U-KEEP"):
                    r = c.call(**escalation("C-%s%s%d" % (n, who[2], i), who,
                                            AT))
                    self.assertNotIn("error", r, r)
            c.close()
            if n == "a":
                break    # a goes on writing through the erasure
            self.assertEqual(d.stop(), 0, d.read_log())
            if n == "c":
                as_vn1(name, "c")
        try:
            rc, out, err = run_cli("history", "erase", "--customer", "U-ERASE",
                                   "--who", "dpo: ticket 42", "--db", db)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("erased: the personal data of 4 records (a:1..3, "
                          "b:1..3), erasure 1 by dpo: ticket 42", out)
            self.assertIn("left: 2 records stored before their node's first "
                          "start on PostgreSQL schema 5", out)
            self.assertIn("ok: 3 nodes, 12 records (4 with personal data "
                          "erased) and ", out)
            c = d.connect()
            r = c.call(**escalation("C-after", "U-KEEP", AT))
            self.assertNotIn("error", r, r)
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
        # nothing of the customer is left on a and b; c's old rows keep it
        for col in ("customer_id", "request", "facts", "result", "trace"):
            left = psql(name, "SELECT node_id FROM decisions WHERE position("
                              "'U-ERASE'::bytea IN coalesce(%s, ''::bytea))"
                              " > 0 ORDER BY node_id" % col).split()
            self.assertEqual(set(left) - {"c"}, set(), col)
        erased = psql(name, "SELECT node_id, node_seq,"
                            " convert_from(request, 'UTF8'),"
                            " coalesce(personal_salt, '-'),"
                            " length(personal_digest) FROM decisions"
                            " WHERE personal_digest IS NOT NULL"
                            " ORDER BY node_id, node_seq").splitlines()
        self.assertEqual([tuple(l.split("|")[:2]) for l in erased],
                         [("a", "1"), ("a", "3"), ("b", "1"), ("b", "3")])
        for line in erased:
            _, _, req, salt, dlen = line.split("|")
            self.assertEqual((salt, dlen), ("-", "64"))
            self.assertNotIn("customer_id", json.loads(req)["input"])
            self.assertIn("complaint_id", json.loads(req)["input"])
        # the rule docs/fleet.md gives holds for an erased row and a salted one
        for n, seq in (("a", 3), ("b", 2), ("c", 1)):
            mine, stored = node_hash(name, n, seq)
            self.assertEqual(mine, stored, (n, seq))
        # the erasure is recorded: who, how many, where, never whose
        log = psql(name, "SELECT who, records, nodes, fields FROM erasures")
        self.assertEqual(log.strip(),
                         "dpo: ticket 42|4|a:1..3, b:1..3|customer_id")
        self.assertNotIn("U-ERASE", psql(name, "SELECT e::text FROM erasures e"))
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        self.assertIn("13 records (4 with personal data erased)",
                      rep["message"])
        self.assertEqual((rep["records"], rep["erased"]), (13, 4))
        # erasing again: nothing on a and b, c's left as they are
        rc, out, err = run_cli("history", "erase", "--customer", "U-ERASE",
                               "--db", db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        got = json.loads(out)
        self.assertEqual((got["erased"], got["old_form"], got["verified"]),
                         (0, 2, True))
        rc, out, err = run_cli("history", "erase", "--customer", "U-NONE",
                               "--db", db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no record names customer 'U-NONE'", err)

        def tampered(sql, *says):
            copy = "%s_t%d" % (name, next(_count))
            psql("postgres", "CREATE DATABASE %s TEMPLATE %s" % (copy, name))
            psql(copy, sql)
            rc, rep, err = verify("postgresql:///" + copy)
            self.assertEqual(rc, 1, (sql, rep, err))
            for want in says:
                self.assertIn(want, rep["message"])

        # an erased row is still chained: its other columns, its kept digest
        tampered("UPDATE decisions SET result = convert_to('{}', 'UTF8')"
                 " WHERE node_id = 'a' AND node_seq = 3",
                 "node a", "node_seq 3", "was changed")
        tampered("UPDATE decisions SET personal_digest = repeat('0', 64)"
                 " WHERE node_id = 'b' AND node_seq = 1",
                 "node b", "node_seq 1", "was changed")
        # a kept row's personal part is too, through its salt
        tampered("UPDATE decisions SET customer_id = 'U-OTHER'::bytea"
                 " WHERE node_id = 'b' AND node_seq = 2",
                 "node b", "node_seq 2", "was changed")
        tampered("UPDATE decisions SET personal_salt = NULL"
                 " WHERE node_id = 'a' AND node_seq = 2",
                 "node a", "neither a personal_salt nor a personal_digest")
        # an erasure not made by verdict, or its record removed, shows
        tampered("DELETE FROM erasures", "the erasures table accounts for 0")
        tampered("UPDATE decisions SET personal_digest = ("
                 " SELECT personal_digest FROM decisions WHERE node_id = 'a'"
                 " AND node_seq = 1) WHERE node_id = 'a' AND node_seq = 2",
                 "node a", "node_seq 2", "its personal_digest says")

    def test_durable_answers_internal_while_the_database_is_gone(self):
        name, db = new_database()
        a = node(db, "a")
        c = a.connect()
        self.assertNotIn("error", c.call(**comp("before")))
        # every connection of the node dropped, as a restart of the
        # server does: nothing acknowledged is unrecorded, and the node
        # reconnects by itself
        # (requests keep flowing meanwhile, so the writer is never idle
        # long enough to find the loss by its own check first:
        # test_ready_follows_the_database is that case)
        answers, flowing = [], threading.Event()
        more = itertools.count()

        def load():
            while not flowing.is_set():
                answers.append(c.call(**comp("during%d" % next(more))))
        t = threading.Thread(target=load)
        t.start()
        time.sleep(0.1)
        psql(name, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE datname = current_database()"
                   " AND pid <> pg_backend_pid()")
        after = len(answers)
        while len(answers) < after + 20:
            time.sleep(0.01)
        flowing.set()
        t.join()
        ok = [r["decision_id"] for r in answers if "error" not in r]
        failed = [r for r in answers if "error" in r]
        for r in failed:
            self.assertEqual(r["error"]["code"], "internal", r)
        self.assertGreater(len(ok), 0, answers)
        self.assertGreater(len(failed), 0, answers)  # the lost connection
        self.assertEqual(answers[-1].get("error"), None, answers)
        c.close()
        self.assertEqual(a.stop(), 0, a.read_log())
        stored = set(psql(name, "SELECT convert_from(decision_id, 'UTF8')"
                                " FROM decisions").split())
        self.assertEqual([x for x in ok if x not in stored], [])
        self.assertEqual(verify(db)[0], 0)

    def test_async_answers_while_the_database_is_gone_and_says_what_it_lost(self):
        # --log-mode async: answers never wait for the database, so while
        # it is gone they keep going out, and the records of the batches
        # the writer cannot commit are lost: the log says so, and how
        # many, once writing works again; the chain stays whole
        name, _ = new_database()
        proxy = Proxy()
        a = node(proxy.conninfo(name), "a", args_extra=["--log-mode", "async"])
        try:
            c = a.connect()
            for i in range(20):
                self.assertNotIn("error", c.call(**comp("before%d" % i)))
            time.sleep(0.5)  # committed
            proxy.cut()
            during = [c.call(**comp("during%d" % i)) for i in range(50)]
            self.assertEqual([r for r in during if "error" in r], [])
            deadline = time.time() + 20
            while "was not stored" not in a.read_log():
                self.assertLess(time.time(), deadline, a.read_log())
                c.call(**comp("more"))
                time.sleep(0.1)
            self.assertIn("their answers went out already (--log-mode "
                          "async): the records are lost", a.read_log())
            proxy.mend()
            deadline = time.time() + 30
            while "history_write_recovered" not in a.read_log():
                self.assertLess(time.time(), deadline, a.read_log())
                self.assertNotIn("error", c.call(**comp("after")))
                time.sleep(0.2)
            m = re.search(r"writing works again after (\d+) failed batches "
                          r"\((\d+) records not stored\)", a.read_log())
            self.assertIsNotNone(m, a.read_log())
            lost = int(m.group(2))
            self.assertGreater(lost, 0)
            c.close()
            self.assertEqual(a.stop(), 0, a.read_log())
        finally:
            a.stop()
            proxy.cut()
        stored = [json.loads(x)["id"] for x in psql(
            name, "SELECT convert_from(request, 'UTF8') FROM decisions"
        ).splitlines() if x.strip()]
        # what was committed before the cut is there; what was lost is not
        self.assertEqual(len([x for x in stored if x.startswith("before")]),
                         20)
        self.assertLess(len([x for x in stored if x.startswith("during")]),
                        50)
        self.assertEqual(verify("postgresql:///%s" % name)[0], 0)

    def test_ready_follows_the_database(self):
        # /health/ready says 503, naming the history's problem, while the
        # server cannot be reached, without a request to find it out, and
        # 200 again once it can, without one either (a balancer sends
        # nothing to a node that is not ready)
        name, _ = new_database()
        proxy = Proxy()
        a = HttpDaemon(args=["--db", proxy.conninfo(name), "--node-id", "a"],
                       policies=MINI)
        try:
            self.assertEqual(ready_within(a, 200)[0], 200)
            proxy.cut()
            st, body = ready_within(a, 503)
            self.assertEqual((st, body["error"]["code"]), (503, "internal"),
                             body)
            msg = body["error"]["message"]
            self.assertIn("not accepting records", msg)
            self.assertIn("PostgreSQL history '%s' on 127.0.0.1:%d"
                          % (name, proxy.port), msg)
            self.assertIn("connect", msg)  # libpq's reason
            self.assertEqual(a.call("GET", "/health")[0], 200)  # it answers
            st, _, body = a.call("POST", "/v1/decisions", comp("gone"))
            self.assertEqual((st, body["error"]["code"]), (503, "internal"))
            proxy.mend()
            st, body = ready_within(a, 200)
            self.assertEqual(st, 200, body)
            st, _, body = a.call("POST", "/v1/decisions", comp("back"))
            self.assertEqual(st, 200, body)
            log = a.read_log()
            self.assertIn("history_unavailable", log)
            self.assertIn("history_available", log)
        finally:
            self.assertEqual(a.stop(), 0, a.read_log())
            proxy.cut()
        self.assertEqual(verify("postgresql:///" + name)[0], 0)

    def test_a_stalled_server_is_answered_within_the_deadline(self):
        # the server processes serving the node stopped (SIGSTOP): up,
        # connections open, no answer, which keepalives cannot tell from
        # a slow query.  Durable decisions fail `internal` within
        # --db-timeout, never hang and are never answered unrecorded;
        # /health/ready is 503 naming why; SIGCONT, and the node is back
        # by itself
        name, db = new_database()
        a = HttpDaemon(args=["--db", db, "--node-id", "a", "--db-timeout",
                             "1000"], policies=MINI)
        stopped = []
        try:
            st, _, body = a.call("POST", "/v1/decisions", comp("before"))
            self.assertEqual(st, 200, body)
            stopped = [int(p) for p in psql(
                name, "SELECT pid FROM pg_stat_activity WHERE application_name"
                      " = 'verdictd a' AND datname = current_database()"
                ).split()]
            self.assertEqual(len(stopped), 2)  # the writer's, the main's
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            for i in range(3):
                t0 = time.time()
                st, _, body = a.call("POST", "/v1/decisions",
                                     comp("stalled%d" % i))
                took = time.time() - t0
                self.assertEqual((st, body["error"]["code"]),
                                 (503, "internal"), body)
                self.assertLess(took, 3.0, body)  # 1 s, and scheduling
            st, body = ready_within(a, 503)
            self.assertEqual(st, 503, body)
            msg = body["error"]["message"]
            self.assertIn("not accepting records", msg)
            # the stopped process still holds the node's lock, and the
            # message says whose it is
            self.assertRegex(msg, r"lock is still held by this node's previous"
                                  r" connection \(server process (%s)\)"
                             % "|".join(map(str, stopped)))
            log = a.read_log()
            self.assertIn("no answer within 1000 ms (--db-timeout)", log)
            self.assertEqual(a.call("GET", "/health")[0], 200)
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped = []
            st, body = ready_within(a, 200)
            self.assertEqual(st, 200, body)
            st, _, body = a.call("POST", "/v1/decisions", comp("after"))
            self.assertEqual(st, 200, body)
            self.assertIn("history_write_recovered", a.read_log())
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            self.assertEqual(a.stop(), 0, a.read_log())
        stored = psql(name, "SELECT convert_from(decision_id, 'UTF8')"
                            " FROM decisions ORDER BY node_seq").split()
        self.assertEqual(len(stored), 2, stored)  # before, after
        self.assertEqual(verify(db)[0], 0)

    def test_a_cursor_closed_early_never_waits_on_the_postmaster(self):
        # the console's decisions page reads 51 rows and closes the cursor
        # with the query's end unread; closing it must not wait for the
        # server (PQcancel() would open a connection to the postmaster and
        # wait for it with no deadline: here one that never answers)
        name, _ = new_database()
        proxy = Proxy()
        a = HttpDaemon(args=["--db", proxy.conninfo(name), "--node-id", "a"],
                       policies=MINI)
        try:
            c = a.connect()
            for i in range(60):
                self.assertNotIn("error", c.call(**comp("p%d" % i)))
            c.close()
            proxy.hold_after(1)       # the page's cursor, and nothing after
            conn = a.http(timeout=60)
            conn.request("GET", "/console/decisions")
            r = conn.getresponse()
            page = r.read().decode()
            conn.close()
            self.assertEqual(r.status, 200, page)
            self.assertIn("Older decisions", page)   # it stopped early
            self.assertEqual(a.call("GET", "/health")[0], 200)
        finally:
            self.assertEqual(a.stop(), 0, a.read_log())
            proxy.cut()

    def test_a_batch_waiting_on_a_lock_is_answered_within_the_deadline(self):
        # the server answers, but the batch's insert waits on a lock that
        # another session holds: `internal` within --db-timeout, the
        # waiting server process ends (client_connection_check_interval)
        # rather than holding the node's lock, and once the lock goes the
        # node records again without a restart
        name, db = new_database()
        a = Daemon(MINI, args=["--db", db, "--node-id", "a", "--db-timeout",
                               "1000"])
        c = a.connect()
        self.assertNotIn("error", c.call(**comp("before")))
        with decisions_locked(self, name):
            t0 = time.time()
            r = c.call(**comp("locked"))
            self.assertEqual(r.get("error", {}).get("code"), "internal", r)
            self.assertLess(time.time() - t0, 3.0)
            # no process of the node's is left waiting on the lock
            deadline = time.time() + 10
            while psql(name, "SELECT count(*) FROM pg_stat_activity WHERE"
                             " application_name = 'verdictd a' AND"
                             " wait_event_type = 'Lock'").strip() != "0":
                self.assertLess(time.time(), deadline, "still waiting")
                time.sleep(0.1)
        deadline = time.time() + 15
        while True:  # the writer, idle, takes its lock again by itself
            r = c.call(**comp("after%d" % int(time.time() * 1000)))
            if "error" not in r or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertNotIn("error", r)
        c.close()
        self.assertEqual(a.stop(), 0, a.read_log())
        self.assertIn("no answer within 1000 ms", a.read_log())
        self.assertEqual(psql(name, "SELECT count(*) FROM decisions WHERE"
                                    " decision_id = convert_to('%s', 'UTF8')"
                                    % r["decision_id"]).strip(), "1")
        self.assertEqual(verify(db)[0], 0)

    def test_the_cli_gives_up_within_db_timeout(self):
        # an auditor's command against a server that does not answer (a
        # query waiting on a lock another session holds): with
        # --db-timeout it fails, naming the deadline, instead of waiting
        # forever; once the lock goes the same command works
        name, db = new_database()
        a = Daemon(MINI, args=["--db", db, "--node-id", "a"])
        c = a.connect()
        self.assertNotIn("error", c.call(**comp("before")))
        c.close()
        self.assertEqual(a.stop(), 0, a.read_log())
        with decisions_locked(self, name):
            for args in (["history", "verify", "--db", db, "--db-timeout",
                          "1000"],
                         ["--db-timeout", "1000", "history", "list", "--db",
                          db]):
                rc, out, err = run_cli(*args)
                self.assertNotEqual(rc, 0, out)
                self.assertIn("no answer within 1000 ms (--db-timeout)", err)
        self.assertEqual(verify(db)[0], 0)
        rc, out, err = run_cli("--db-timeout", "soon", "history", "verify",
                               "--db", db)
        self.assertEqual(rc, 2)
        self.assertIn("--db-timeout: 'soon' is not a number", err)

    def test_a_version_1_database_is_migrated_on_start(self):
        # version 1 (before node_status.verdict): what a node of the
        # previous verdict left, decisions and all
        # (the version this verdict writes, as a new database gets it: a
        # step appended later keeps this test as it is)
        name, db = new_database()
        a = node(db, "a")
        c = a.connect()
        ids = [c.call(**comp("v1-%d" % i))["decision_id"] for i in range(3)]
        c.close()
        self.assertEqual(a.stop(), 0, a.read_log())
        current = psql(name, "SELECT value FROM verdict_meta"
                             " WHERE key = 'schema'").strip()
        self.assertGreaterEqual(int(current), 2)
        # what steps 2 and later add goes, as version 1 had it (a step
        # appended to core/history_pg.c's migrations[] is undone here too):
        # the rows as "vn1", without the personal part's columns
        as_vn1(name, "a")
        psql(name, "ALTER TABLE node_status DROP COLUMN verdict;"
                   " DROP TABLE idempotency; DROP TABLE revision_tags;"
                   " ALTER TABLE decisions DROP COLUMN personal_salt,"
                   "  DROP COLUMN personal_digest;"
                   " DROP TABLE node_formats; DROP TABLE erasures;"
                   " UPDATE verdict_meta SET value = '1' WHERE key = 'schema'")
        # a reader of the new verdict says what to do
        rc, out, err = run_cli("history", "list", "--db", db)
        self.assertEqual(rc, 2, out)  # cannot read the history
        self.assertIn("schema version 1, this verdict reads version %s"
                      % current, err)
        self.assertIn("once to migrate it", err)
        # a node of the new verdict migrates it, and goes on with its chain
        a = node(db, "a")
        c = a.connect()
        ids.append(c.call(**comp("v2"))["decision_id"])
        c.close()
        self.assertEqual(psql(name, "SELECT value FROM verdict_meta"
                                    " WHERE key = 'schema'").strip(), current)
        deadline = time.time() + 10
        while time.time() < deadline and not psql(
                name, "SELECT verdict FROM node_status WHERE node_id = 'a'"
                ).strip():
            time.sleep(0.1)  # the next heartbeat says it
        self.assertEqual(a.stop(), 0, a.read_log())
        rc, out, err = run_cli("fleet", "status", "--db", db, "--format", "json")
        self.assertEqual(rc, 0, err)
        version = run_cli("version")[1].split()[1]
        self.assertEqual([(s["node"], s["verdict"], s["decisions"])
                          for s in json.loads(out)], [("a", version, 4)])
        rc, out, err = run_cli("fleet", "status", "--db", db)
        self.assertIn(" %s " % version, out)
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        self.assertEqual(psql(name, "SELECT convert_from(decision_id, 'UTF8')"
                                    " FROM decisions ORDER BY node_seq"
                          ).split(), ids)
        # the old rows stay "vn1"; the node's first under schema 5 on are
        # "vn2", salted
        self.assertEqual(psql(name, "SELECT v2_from FROM node_formats"
                                    " WHERE node_id = 'a'").strip(), "4")
        self.assertEqual(psql(name, "SELECT node_seq FROM decisions WHERE"
                                    " personal_salt IS NOT NULL").split(),
                         ["4"])
        for seq in (3, 4):
            mine, stored = node_hash(name, "a", seq)
            self.assertEqual(mine, stored)

    def test_a_newer_schema_is_refused(self):
        name, db = new_database()
        node(db, "a").stop()
        current = psql(name, "SELECT value FROM verdict_meta"
                             " WHERE key = 'schema'").strip()
        psql(name, "UPDATE verdict_meta SET value = '99' WHERE key = 'schema'")
        r = Refused(MINI, args=["--db", db, "--node-id", "a"])
        self.assertNotEqual(r.status, None)
        self.assertIn("schema version 99 is newer than this verdict knows (%s)"
                      % current, r.log)

    def test_a_password_in_the_connection_string_is_never_shown(self):
        # the server's real password (pg_virtualenv's, in PGPASSWORD), in
        # the URL form and in the keyword form
        name, _ = new_database()
        secret = os.environ["PGPASSWORD"]
        user = os.environ.get("PGUSER", "postgres")
        host, port = os.environ["PGHOST"], os.environ.get("PGPORT", "5432")
        url = "postgresql://%s:%s@%s:%s/%s" % (user, secret, host, port, name)
        kw = "host=%s port=%s dbname=%s user=%s password=%s" % (
            host, port, name, user, secret)
        for i, db in enumerate((url, kw)):
            a = node(db, "n%d" % i)
            c = a.connect()
            self.assertNotIn("error", c.call(**comp("p%d" % i)))
            c.close()
            self.assertEqual(a.stop(), 0, a.read_log())
            log = a.read_log()
            self.assertIn("password='********'", log)
            self.assertIn("dbname='%s'" % name, log)
            # on the command line, where ps shows it: a warning at start
            self.assertIn("warning password_in_argv: the --db connection "
                          "string holds a password", log)
            # what the commands print, found or not, or failing to connect
            broken = db.replace(port, "1", 1) if i else \
                url.replace(":%s/" % port, ":1/")
            outs = [log]
            for args in (["history", "show", "nosuch", "--db", db],
                         ["history", "list", "--db", db],
                         ["fleet", "status", "--db", db],
                         ["fleet", "status", "--db", broken],
                         ["history", "verify", "--db", broken]):
                rc, out, err = run_cli(*args)
                outs.append(out + err)
            self.assertIn("no decision 'nosuch' in", outs[1])
            self.assertIn("(while connecting)", outs[4])
            for text in outs:
                self.assertNotIn(secret, text)
        # none without a password there (libpq takes PGPASSWORD)
        a = node("postgresql:///%s" % name, "w")
        self.assertEqual(a.stop(), 0, a.read_log())
        self.assertIn("serving", a.read_log())
        self.assertNotIn("password_in_argv", a.read_log())

    def test_a_reload_on_one_node_reaches_every_node(self):
        name, db = new_database()
        nodes, bundles = [], []
        for n in ("a", "b", "c"):
            b = mini_copy("%s-%s" % (name, n))
            bundles.append(b)
            nodes.append(node(db, n, b, admin=True))
        conns = [d.connect() for d in nodes]
        first = {c.call(**comp("before"))["revision"] for c in conns}
        self.assertEqual(len(first), 1)
        # node a reloads from its own directory; b and c, whose directories
        # are unchanged, follow from the database
        set_multiplier(bundles[0], 5)
        rc, out, err = run_cli("--admin-socket", nodes[0].admin_socket,
                               "reload", "--who", "ops")
        self.assertEqual(rc, 0, out + err)
        new = out.split()[-1]
        self.assertNotIn(new, first)
        deadline = time.time() + 30
        seen = []
        while time.time() < deadline:
            seen = [c.call(**comp("after")) for c in conns]
            if all(r["revision"] == new for r in seen):
                break
            time.sleep(0.1)
        self.assertEqual([r["revision"] for r in seen], [new] * 3, seen)
        self.assertEqual([r["result"]["offer_fen"] for r in seen], [10000] * 3)
        # each node recorded its own activation; the followers as "fleet"
        acts = psql(name, "SELECT node_id || ' ' || cause FROM activations"
                          " WHERE revision = '%s' AND ok = 1"
                          " ORDER BY node_id" % new).split("\n")
        self.assertEqual(acts[:3], ["a admin", "b fleet", "c fleet"])
        # a node that was down follows when it comes back
        for c in conns:
            c.close()
        self.assertEqual(nodes[2].stop(), 0, nodes[2].read_log())
        set_multiplier(bundles[0], 7)
        rc, out, err = run_cli("--admin-socket", nodes[0].admin_socket,
                               "reload")
        self.assertEqual(rc, 0, out + err)
        newer = out.split()[-1]
        late = node(db, "c", bundles[2])
        deadline = time.time() + 30
        r = None
        while time.time() < deadline:
            c = late.connect()
            r = c.call(**comp("late"))
            c.close()
            if r["revision"] == newer:
                break
            time.sleep(0.1)
        self.assertEqual(r["revision"], newer, r)
        rc, out, err = run_cli("fleet", "status", "--db", db, "--format", "json")
        self.assertEqual(rc, 0, err)
        status = json.loads(out)
        self.assertEqual({s["revision"] for s in status}, {newer}, status)
        for d in (nodes[0], nodes[1], late):
            self.assertEqual(d.stop(), 0, d.read_log())
        for b in bundles:
            shutil.rmtree(b, ignore_errors=True)
        self.assertEqual(verify(db)[0], 0)

    def test_a_restarted_node_comes_back_on_the_fleets_revision(self):
        name, db = new_database()
        b = mini_copy(name + "-a")
        a = node(db, "a", b, admin=True)
        other = node(db, "b", admin=True)
        try:
            c = a.connect()
            first = c.call(**comp("r0"))["revision"]
            c.close()
            # a reloads its edited directory; then b rolls the fleet back
            set_multiplier(b, 5)
            rc, out, err = run_cli("--admin-socket", a.admin_socket, "reload")
            self.assertEqual(rc, 0, out + err)
            second = out.split()[-1]
            self.assertNotEqual(second, first)
            rc, out, err = run_cli("--admin-socket", other.admin_socket,
                                   "activate", first)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(psql(name, "SELECT revision FROM fleet_desired"
                                  ).strip(), first)
            self.assertEqual(a.stop(), 0, a.read_log())
            # a's directory still holds the second; restarted, a serves the
            # fleet's from its first request, and records so once
            a = node(db, "a", b, admin=True)
            c = a.connect()
            r = c.call(**comp("r1"))
            c.close()
            self.assertEqual(r["revision"], first, r)
            self.assertIn("start-up: the fleet's revision %s, not %s in"
                          % (first, second), a.read_log())
            self.assertEqual(a.stop(), 0, a.read_log())
            acts = psql(name, "SELECT cause || ' ' || revision FROM"
                              " activations WHERE node_id = 'a' AND ok = 1"
                              " ORDER BY id").splitlines()
            self.assertEqual(acts[-1], "startup-fleet " + first, acts)
            self.assertNotIn("startup " + second, acts[-2:], acts)
            # --policies-win: a starts on its directory (and then follows
            # the fleet, as a node whose directory differs does)
            a = node(db, "a", b, admin=True, args_extra=["--policies-win"])
            self.assertEqual(a.stop(), 0, a.read_log())
            acts = psql(name, "SELECT cause || ' ' || revision FROM"
                              " activations WHERE node_id = 'a' AND ok = 1"
                              " ORDER BY id").splitlines()
            self.assertIn("startup " + second, acts, acts)
            # the fleet's revision is unchanged: a start-up never sets it
            self.assertEqual(psql(name, "SELECT revision FROM fleet_desired"
                                  ).strip(), first)
        finally:
            a.stop()
            other.stop()
            shutil.rmtree(b, ignore_errors=True)
        self.assertEqual(verify(db)[0], 0)

    def test_a_node_that_refuses_the_fleets_revision_still_starts(self):
        # the fleet's revision has a test case that costs about 3 M VM
        # instructions: node b (the default budget of 10 M) takes it,
        # node a, restarted with a budget of 1 M, refuses it at start-up
        name, db = new_database()
        heavy = mini_copy(name + "-heavy")
        path = os.path.join(heavy, "national", "compensation.lua")
        with open(path) as f:
            src = f.read()
        with open(path, "w") as f:
            f.write(src.replace(
                "function P.decide(input, ctx)\n",
                "function P.decide(input, ctx)\n"
                "  if input.heavy then\n"
                "    local x = 0\n"
                "    for i = 1, 1000000 do x = x + i end\n"
                "  end\n", 1))
        path = os.path.join(heavy, "national", "compensation_test.lua")
        with open(path) as f:
            src = f.read()
        with open(path, "w") as f:
            f.write(src.replace("return {\n", "return {\n"
                "  { name = \"heavy\", at = \"2026-11-23T10:00:00+08:00\",\n"
                "    input = { charged_fen = 5000, due_fen = 3000,"
                " heavy = true },\n"
                "    expect = { offer_fen = 4000 } },\n", 1))
        a = node(db, "a", admin=True)
        b = node(db, "b", heavy, admin=True)
        try:
            c = a.connect()
            own = c.call(**comp("r0"))["revision"]
            c.close()
            rc, out, err = run_cli("--admin-socket", b.admin_socket,
                                   "reload")
            self.assertEqual(rc, 0, out + err)
            fleet = out.split()[-1]
            self.assertNotEqual(fleet, own)
            self.assertEqual(a.stop(), 0, a.read_log())
            a = node(db, "a", admin=True,
                     args_extra=["--instr-budget", "1000000"])
            c = a.connect()
            r = c.call(**comp("r1"))
            st = c.call(op="status")["status"]
            c.close()
            # it serves its directory, says why, and does not try the
            # fleet's revision again while that stays the fleet's
            self.assertEqual(r["revision"], own, r)
            log = a.read_log()
            self.assertIn("this node refused the fleet's revision %s" % fleet,
                          log)
            self.assertIn("heavy", st["last_failure"])
            time.sleep(2.5)  # two of the fleet thread's polls
            self.assertEqual(a.stop(), 0, a.read_log())
            acts = psql(name, "SELECT cause || ' ' || ok || ' ' || revision"
                              " FROM activations WHERE node_id = 'a'"
                              " ORDER BY id").splitlines()
            self.assertEqual(acts[-2:], ["startup 1 " + own,
                                         "startup-fleet 0 " + fleet], acts)
            self.assertIn("heavy", psql(name, "SELECT last_error FROM"
                                              " node_status WHERE node_id"
                                              " = 'a'"))
        finally:
            a.stop()
            b.stop()
            shutil.rmtree(heavy, ignore_errors=True)
        self.assertEqual(verify(db)[0], 0)

    def test_a_refused_reload_is_recorded_on_a_fleet(self):
        # a broken edit on one node: refused there, recorded in its
        # activations (ok 0, with the reason) and in its node_status, and
        # no node leaves the revision in force
        name, db = new_database()
        b = mini_copy(name)
        a = node(db, "a", b, admin=True)
        c = a.connect()
        before = c.call(**comp("before"))["revision"]
        set_multiplier(b, 5, break_it=True)
        rc, out, err = run_cli("--admin-socket", a.admin_socket, "reload",
                               "--who", "ops")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("regions/GD/compensation.lua:", err)
        self.assertEqual(c.call(**comp("after"))["revision"], before)
        c.close()
        refused = psql(name, "SELECT cause, who, error FROM activations"
                             " WHERE node_id = 'a' AND ok = 0").strip()
        self.assertEqual(len(refused.split("\n")), 1, refused)
        cause, who, error = refused.split("|", 2)
        self.assertEqual(cause, "admin")
        self.assertIn("ops", who)
        self.assertIn("regions/GD/compensation.lua", error)
        rc, out, err = run_cli("fleet", "status", "--db", db, "--format",
                               "json")
        self.assertEqual(rc, 0, err)
        status = json.loads(out)
        self.assertEqual(status[0]["revision"], before, status)
        self.assertIn("regions/GD/compensation.lua", status[0]["last_error"],
                      status)
        self.assertNotIn("database error", a.read_log())
        self.assertEqual(a.stop(), 0, a.read_log())
        shutil.rmtree(b, ignore_errors=True)
        self.assertEqual(verify(db)[0], 0)

    def test_a_start_whose_activation_cannot_be_recorded_does_not_serve(self):
        # writes to `activations` held off by another session: the node's
        # start-up activation gets no answer within --db-timeout, and the
        # node stops rather than decide under a revision whose activation
        # the history lacks
        name, db = new_database()
        self.assertEqual(node(db, "a").stop(), 0)
        lock = subprocess.Popen(["psql", "-X", "-q", "-d", name],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), name + "-start")
        os.makedirs(tmp, exist_ok=True)
        try:
            lock.stdin.write("BEGIN; LOCK TABLE activations IN EXCLUSIVE"
                             " MODE;\n")
            lock.stdin.flush()
            deadline = time.time() + 30
            while time.time() < deadline and psql(
                    name, "SELECT count(*) FROM pg_locks l JOIN pg_class c"
                          " ON c.oid = l.relation WHERE c.relname ="
                          " 'activations' AND l.mode = 'ExclusiveLock'"
                          " AND l.granted").strip() != "1":
                time.sleep(0.1)
            with open(os.path.join(tmp, "log"), "wb") as log:
                p = subprocess.run(
                    [VERDICTD, "--policies", MINI, "--socket",
                     os.path.join(tmp, "s.sock"), "--db", db, "--node-id",
                     "a", "--db-timeout", "1000"],
                    stdout=log, stderr=subprocess.STDOUT, timeout=120)
            with open(os.path.join(tmp, "log")) as f:
                text = f.read()
            self.assertEqual(p.returncode, 1, text)
            self.assertIn("could not be recorded in the history", text)
            self.assertIn("no answer within 1000 ms", text)
            self.assertNotIn("notice serving:", text)
        finally:
            lock.stdin.write("ROLLBACK;\n")
            lock.stdin.close()
            lock.wait(timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)
        self.assertEqual(psql(name, "SELECT count(*) FROM activations WHERE"
                                    " node_id = 'a' AND ok = 1").strip(), "1")
        self.assertEqual(verify(db)[0], 0)

    def test_revisions_tags_export_and_eval_on_a_fleet(self):
        # the revision commands read (and tag writes) the fleet's history:
        # active, previous and @-N are the fleet's revisions, a node
        # following the fleet is no change of its own
        name, db = new_database()
        b = mini_copy(name)
        a = node(db, "a", b, admin=True)
        follower = node(db, "b", MINI)
        try:
            first = a.connect().call(**comp("one"))["revision"]
            set_multiplier(b, 5)
            rc, out, err = run_cli("--admin-socket", a.admin_socket, "reload")
            self.assertEqual(rc, 0, out + err)
            second = out.split()[-1]
            self.assertNotEqual(first, second)
            deadline = time.time() + 30
            while follower.connect().call(**comp("f"))["revision"] != second:
                self.assertLess(time.time(), deadline)
                time.sleep(0.1)

            def cli(*args):
                return run_cli(*(args + ("--db", db)))
            # tag by prefix, by name; a taken tag is refused
            rc, out, err = cli("tag", first[7:15], "golden", "--who", "alice")
            self.assertEqual((rc, out.strip()), (0, "tagged %s golden" % first),
                             err)
            rc, out, err = cli("tag", "active", "live")
            self.assertEqual((rc, out.strip()), (0, "tagged %s live" % second),
                             err)
            rc, out, err = cli("tag", "previous", "golden")
            self.assertEqual(rc, 1)
            self.assertIn("tag 'golden' already names %s (given by alice"
                          % first, err)
            rc, out, err = cli("tag", "@-2", "older")
            self.assertEqual(rc, 1)
            self.assertIn("only 1 earlier revision went live in the fleet", err)
            rc, out, err = cli("tag", "nosuch", "x1")
            self.assertEqual(rc, 1)
            self.assertIn("no revision named 'nosuch'", err)
            rc, out, err = cli("tag", "ffff", "x1")
            self.assertEqual(rc, 1)
            self.assertIn("no revision ffff", err)
            self.assertEqual(psql(name, "SELECT name || ' ' || revision FROM"
                                        " revision_tags ORDER BY at_ms, name")
                             .split("\n")[:2],
                             ["golden " + first, "live " + second])
            # revisions: both, and the tags
            rc, out, err = cli("revisions")
            self.assertEqual(rc, 0, err)
            for want in (first, second, "golden", "live"):
                self.assertIn(want, out)
            # diff: the two revisions, by tag and by @-N
            rc, out, err = cli("diff", "golden", "@-0")
            self.assertEqual(rc, 0, err)
            self.assertIn("-P.multiplier", out)
            self.assertIn("+P.multiplier = 5", out)
            # export a tag's files; they are the revision's
            dest = b + "-export"
            shutil.rmtree(dest, ignore_errors=True)
            rc, out, err = cli("export", "golden", dest)
            self.assertEqual(rc, 0, err)
            self.assertIn("exported %s" % first, out)
            with open(os.path.join(dest, "regions", "GD", "compensation.lua")) as f:
                exported = f.read()
            with open(os.path.join(MINI, "regions", "GD", "compensation.lua")) as f:
                self.assertEqual(exported, f.read())
            shutil.rmtree(dest, ignore_errors=True)
            # eval against either revision, by tag and by @-1: the
            # multiplier each had
            inp = json.dumps(comp("e")["input"]).encode()
            offers = []
            for rev in ("live", "@-1", "golden", "active"):
                rc, out, err = run_cli("eval", "compensation", "--region",
                                       "GD-SZ", "--at", AT, "--revision", rev,
                                       "--db", db, stdin=inp)
                self.assertEqual(rc, 0, err)
                got = json.loads(out)
                offers.append((got["revision"], got["result"]["offer_fen"]))
            self.assertEqual([r for r, _ in offers],
                             [second, first, first, second])
            self.assertEqual(offers[0], offers[3])
            self.assertNotEqual(offers[0][1], offers[1][1])
            # what a fleet's history does not do, and what to do instead
            for args, says in ((("history", "backup", "/tmp/x.db"), "pg_dump"),
                               (("history", "archive", "--before", AT,
                                 "--to", "/tmp/x.db"),
                                "partition")):
                rc, out, err = cli(*args)
                self.assertEqual(rc, 2, out + err)
                self.assertIn("not on a PostgreSQL history: ", err)
                self.assertIn(says, err)
        finally:
            for d in (a, follower):
                self.assertEqual(d.stop(), 0, d.read_log())
            shutil.rmtree(b, ignore_errors=True)
        self.assertEqual(verify(db)[0], 0)

    def test_import_moves_a_single_nodes_file_into_the_fleet(self):
        name, db = new_database()
        single = Daemon(MINI)   # a SQLite file, as one machine keeps it
        c = single.connect()
        ids = [c.call(**comp("old%d" % i))["decision_id"] for i in range(7)]
        c.close()
        self.assertEqual(single.stop(), 0, single.read_log())
        # started again: a second activation on the file's chain
        self.assertEqual(Daemon(MINI, tmp=single.tmp).stop(), 0)
        with sqlite3.connect(single.db) as f:
            acts = f.execute("SELECT id, at_ms, at, revision, cause, who,"
                             " source_dir, ok, error FROM activations"
                             " ORDER BY id").fetchall()
        self.assertEqual(len(acts), 2)
        rc, out, err = run_cli("history", "import", "--from", single.db,
                               "--db", db, "--node-id", "legacy")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("imported 7 decisions and 1 revisions as node legacy", out)
        self.assertIn("with its 2 activations", out)
        # the node's activation history, as it was, on its own chain there
        moved = psql(name, "SELECT id, at_ms, at, revision, cause,"
                           " coalesce(who, '-'), coalesce(source_dir, '-'),"
                           " ok, coalesce(error, '-') FROM activations"
                           " WHERE node_id = 'legacy' ORDER BY id")
        self.assertEqual([tuple(l.split("|")) for l in moved.splitlines()],
                         [tuple("-" if v is None else str(v) for v in a)
                          for a in acts])
        # nothing of it says what the fleet runs
        self.assertEqual(psql(name, "SELECT count(*) FROM fleet_desired"
                                    " UNION ALL SELECT count(*) FROM"
                                    " node_status").split(), ["0", "0"])
        # the fleet goes on beside it, and everything verifies
        a = node(db, "a")
        c = a.connect()
        self.assertNotIn("error", c.call(**comp("new")))
        c.close()
        self.assertEqual(a.stop(), 0, a.read_log())
        rc, rep, err = verify(db)
        self.assertEqual(rc, 0, (rep, err))
        self.assertEqual({n["node"]: n["seq"] for n in rep["nodes"]},
                         {"a": 1, "legacy": 7})
        self.assertEqual({n["node"]: n["activations"] for n in rep["nodes"]},
                         {"a": 1, "legacy": 2})
        # and they are verified: an imported activation edited is caught
        psql(name, "UPDATE activations SET cause = 'reload'"
                   " WHERE node_id = 'legacy' AND id = 2")
        rc, rep, err = verify(db)
        self.assertEqual(rc, 1, (rep, err))
        self.assertIn("legacy", rep["message"])
        psql(name, "UPDATE activations SET cause = '%s'"
                   " WHERE node_id = 'legacy' AND id = 2" % acts[1][4])
        self.assertEqual(verify(db)[0], 0)
        stored = psql(name, "SELECT convert_from(decision_id, 'UTF8') FROM"
                            " decisions WHERE node_id = 'legacy'"
                            " ORDER BY node_seq").split()
        self.assertEqual(stored, ids)
        # a second import under the same name is refused
        rc, out, err = run_cli("history", "import", "--from", single.db,
                               "--db", db, "--node-id", "legacy")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("already has 7 decisions", err)

    def test_history_list_and_fleet_status(self):
        name, db = new_database()
        a, b = node(db, "a"), node(db, "b")
        for d in (a, b):
            c = d.connect()
            self.assertNotIn("error", c.call(**comp("x")))
            c.close()
        rc, out, err = run_cli("fleet", "status", "--db", db, "--format", "json")
        self.assertEqual(rc, 0, err)
        status = json.loads(out)
        self.assertEqual([s["node"] for s in status], ["a", "b"])
        self.assertEqual(len({s["revision"] for s in status}), 1)
        self.assertTrue(status[0]["revision"].startswith("sha256:"))
        self.assertEqual([s["decisions"] for s in status], [1, 1])
        rc, out, err = run_cli("fleet", "status", "--db", db)
        self.assertEqual(rc, 0, err)
        self.assertIn("NODE", out)
        rc, out, err = run_cli("history", "list", "--db", db, "--format", "json")
        self.assertEqual(rc, 0, err)
        rows = json.loads(out)
        self.assertEqual(sorted(r["seq"] for r in rows), [1, 1])
        # each record names its node and its place on the node's chain
        self.assertEqual(sorted((r["node_id"], r["node_seq"]) for r in rows),
                         [("a", 1), ("b", 1)])
        c = a.connect()
        did = c.call(**comp("y"))["decision_id"]
        c.close()
        rc, out, err = run_cli("history", "show", did, "--db", db,
                               "--format", "json")
        self.assertEqual(rc, 0, err)
        shown = json.loads(out)
        self.assertEqual((shown["node_id"], shown["node_seq"], shown["seq"]),
                         ("a", 2, 2))
        rc, out, err = run_cli("history", "show", did, "--db", db)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^node +a$")
        self.assertRegex(out, r"(?m)^node seq +2$")
        rc, out, err = run_cli("history", "list", "--db", db)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[:2], ["NODE", "SEQ"])
        self.assertEqual(sorted(tuple(l.split()[:2]) for l in lines[1:]),
                         [("a", "1"), ("a", "2"), ("b", "1")])
        rc, out, err = run_cli("history", "list", "--db", db, "--format", "csv")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("node_id,seq,decision_id,"))
        self.assertIn("a,2,%s," % did, out)
        for d in (a, b):
            self.assertEqual(d.stop(), 0, d.read_log())


if __name__ == "__main__":
    unittest.main()
