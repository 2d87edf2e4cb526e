"""The decision history as auditors rely on it: nothing a client received
is lost, tampering is detected, readers never disturb the writer, and a
bad database is refused clearly at start-up."""
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from harness import AT, FIXTURES, POLICIES, Daemon, request, run_cli

MINI = os.path.join(FIXTURES, "mini")


def comp(rid, charged=5000):
    return request("compensation", "GD-SZ", {"charged_fen": charged, "due_fen": 3000},
                   rid=rid)


def escalation(complaint, customer, at, **counts):
    """An escalation of COMPLAINT by CUSTOMER at AT; COUNTS given in its
    input are not asked of the history."""
    inp = {"complaint_id": complaint, "customer_id": customer,
           "category": "billing", "customer_grade": "retail",
           "received_at": at, "handled_by": "frontline"}
    inp.update(counts)
    return request("escalation", "GD", inp, at=at, rid=complaint)


def u77_history():
    """Customer U-77's complaints C-71, C-72 (this month), C-73 (October)
    and C-74, decided before AT (2026-11-23 10:00), with U-78's C-81
    beside them, oldest first.  Only escalations name the customer;
    compensations and appeals name the complaint, and are tied to U-77
    through it.  An escalation of C-74 at AT then counts 2 repeats, 1
    over the head, 3 refunds and 1 similar customer."""
    def comp(complaint, at, overcharged=True):
        inp = {"complaint_id": complaint, "category": "billing",
               "customer_grade": "retail", "cause": "carrier"}
        if overcharged:
            inp.update(charged_fen=12800, due_fen=8800)
        return request("compensation", "GD", inp, at=at, rid=complaint)

    def appeal(complaint, at, **extra):
        inp = {"complaint_id": complaint, "category": "billing",
               "event_at": "2026-07-01T10:00:00+08:00", "appealed_at": at,
               "complained_first": True}
        inp.update(extra)
        return request("appeal", "GD", inp, at=at, rid=complaint)
    esc = escalation
    return [
        esc("C-73", "U-77", "2026-10-01T09:00:00+08:00"),
        comp("C-73", "2026-10-02T09:00:00+08:00"),             # refund
        esc("C-71", "U-77", "2026-11-10T09:00:00+08:00"),        # repeat
        comp("C-71", "2026-11-12T09:00:00+08:00"),             # refund
        comp("C-71", "2026-11-13T09:00:00+08:00"),             # same one
        esc("C-72", "U-77", "2026-11-15T09:00:00+08:00"),        # repeat
        comp("C-72", "2026-11-16T09:00:00+08:00", overcharged=False),
        appeal("C-72", "2026-11-20T09:00:00+08:00"),           # over head
        appeal("C-71", "2026-11-21T09:00:00+08:00",
               appellant_is_party=False),                     # not U-77's
        comp("C-74", "2026-11-22T09:00:00+08:00"),             # refund
        esc("C-81", "U-78", "2026-11-22T12:00:00+08:00"),      # similar
        appeal("C-81", "2026-11-22T13:00:00+08:00"),
        comp("C-81", "2026-11-22T14:00:00+08:00"),
    ]


def pipeline_clients(d, n, stop, received, errors, batch=16):
    def run(k):
        try:
            c = d.connect()
            i = 0
            while not stop.is_set():
                c.send("".join(json.dumps(comp([k, i + j])) + "\n"
                               for j in range(batch)))
                for _ in range(batch):
                    r = c.readline()
                    if "error" in r:
                        errors.append(r)
                    received.append(r["decision_id"])
                i += batch
        except (EOFError, OSError):
            pass  # the daemon was killed under us
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    return threads


def verify(db):
    return run_cli("history", "verify", "--db", db)


class Durability(unittest.TestCase):
    def test_sigkill_loses_nothing_a_client_received(self):
        tmp = tempfile.mkdtemp(prefix="verdict-kill-")
        d = Daemon(MINI, tmp=tmp)
        stop = threading.Event()
        received, errors = [], []
        threads = pipeline_clients(d, 4, stop, received, errors)
        time.sleep(1.5)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        d.log.close()
        self.assertEqual(errors, [])
        self.assertGreater(len(received), 100)
        db = sqlite3.connect(d.db)
        stored = {r[0] for r in db.execute("SELECT decision_id FROM decisions")}
        db.close()
        missing = [x for x in received if x not in stored]
        self.assertEqual(missing, [])
        # the daemon restarts on the same database and the chain continues
        d2 = Daemon(MINI, tmp=tmp)
        c = d2.connect()
        self.assertNotIn("error", c.call(**comp("after")))
        c.close()
        self.assertEqual(d2.stop(), 0, d2.read_log())
        rc, out, err = verify(d.db)
        self.assertEqual(rc, 0, out + err)
        shutil.rmtree(tmp, ignore_errors=True)


class Audit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-audit-")
        d = Daemon(POLICIES, tmp=cls.tmp)
        c = d.connect()
        with open(os.path.join(os.path.dirname(POLICIES), "examples",
                               "requests.ndjson")) as f:
            lines = f.read()
        for _ in range(5):
            c.send(lines)
            for _ in range(4):
                c.readline()
        c.send(b"{not json}\n")
        cls.bad = c.readline()
        c.close()
        assert d.stop() == 0, d.read_log()
        cls.db = d.db

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def copy(self):
        dst = os.path.join(self.tmp, "copy-%d.db" % time.monotonic_ns())
        shutil.copy(self.db, dst)
        return dst

    def sql(self, db, statement):
        p = subprocess.run(["sqlite3", db, statement], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    def test_every_response_recorded_errors_included(self):
        rows = self.sql(self.db, "SELECT count(*), count(error_code) FROM decisions")
        self.assertEqual(rows.strip(), "21|1")
        rc, out, err = run_cli("history", "show", self.bad["decision_id"], "--db",
                               self.db)
        self.assertEqual(rc, 0, err)
        self.assertIn("bad_request", out)
        rc, out, err = run_cli("history", "list", "--kind", "compensation",
                               "--format", "json", "--db", self.db)
        self.assertEqual(rc, 0, err)
        rows = json.loads(out)
        self.assertEqual(len(rows), 5)
        self.assertTrue(all(r["kind"] == "compensation" for r in rows))
        views = self.sql(self.db, "SELECT kind, region, decisions FROM "
                                  "decisions_per_day ORDER BY kind, region")
        self.assertIn("compensation|GD-SZ|5", views.replace(" ", ""))

    def test_verify_detects_edit_delete_insert(self):
        rc, out, err = verify(self.db)
        self.assertEqual(rc, 0, out + err)
        db = self.copy()
        self.sql(db, "UPDATE decisions SET result = replace(result, '8000', '9000') "
                     "WHERE seq = 6")
        rc, out, err = verify(db)
        self.assertEqual(rc, 1)
        self.assertIn("6", out + err)
        db = self.copy()
        self.sql(db, "DELETE FROM decisions WHERE seq = 3")
        rc, out, err = verify(db)
        self.assertEqual(rc, 1, out + err)
        db = self.copy()
        self.sql(db, "INSERT INTO decisions (seq, decision_id, request, hash) "
                     "SELECT max(seq) + 1, 'forged', '{}', 'ab' FROM decisions")
        rc, out, err = verify(db)
        self.assertEqual(rc, 1, out + err)

    def test_an_anchor_kept_outside_shows_a_cut_tail(self):
        # Cutting the tail and moving chain_head back to the new last row
        # leaves a chain that verifies on its own; the anchor an earlier
        # verify printed does not hold any more.
        rc, out, err = run_cli("history", "verify", "--db", self.db,
                               "--format", "json")
        self.assertEqual(rc, 0, out + err)
        anchor = json.loads(out)["anchor"]
        self.assertEqual(anchor.split(":")[0], "21")
        rc, out, err = run_cli("history", "verify", "--db", self.db,
                               "--anchor", anchor)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("anchor 21 holds", out)
        db = self.copy()
        self.sql(db, "DELETE FROM decisions WHERE seq > 19; "
                     "UPDATE chain_head SET seq = 19, hash = "
                     "(SELECT hash FROM decisions WHERE seq = 19)")
        rc, out, err = verify(db)
        self.assertEqual(rc, 0, out + err)  # the file cannot vouch for itself
        rc, out, err = run_cli("history", "verify", "--db", db,
                               "--anchor", anchor)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("cut from its tail", out)
        # a row rewritten with a consistent new hash: the anchor differs
        db = self.copy()
        self.sql(db, "UPDATE decisions SET hash = '%s' WHERE seq = 21; "
                     "UPDATE chain_head SET hash = '%s'" % ("0" * 64, "0" * 64))
        rc, out, err = run_cli("history", "verify", "--db", db,
                               "--anchor", anchor)
        self.assertEqual(rc, 1, out + err)
        rc, out, err = run_cli("history", "verify", "--db", self.db,
                               "--anchor", "21:xyz")
        self.assertEqual(rc, 2, out + err)
        self.assertIn("SEQ:HASH", err)

    def test_replay_reproduces_and_measures_a_candidate(self):
        rc, out, err = run_cli("replay", "--db", self.db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        self.assertEqual(r["replayed"], 21)
        self.assertEqual(r["unchanged"], 21)
        cand = os.path.join(self.tmp, "candidate")
        shutil.copytree(POLICIES, cand)
        path = os.path.join(cand, "regions", "GD", "compensation.lua")
        with open(path) as f:
            text = f.read()
        # a candidate that doubles GD's goodwill-free refund: change the
        # national multiplier the GD file inherits
        npath = os.path.join(cand, "national", "compensation.lua")
        with open(npath) as f:
            ntext = f.read()
        self.assertIn("multiplier = 2", ntext)
        with open(npath, "w") as f:
            f.write(ntext.replace("multiplier = 2", "multiplier = 3", 1))
        rc, out, err = run_cli("replay", "--db", self.db, "--against", cand,
                               "--kind", "compensation", "--format", "json")
        self.assertEqual(rc, 0, err)
        r = json.loads(out)
        self.assertEqual(r["replayed"], 5)
        self.assertEqual(r["changed"], 5)
        self.assertEqual(r["offers"]["before"]["total_fen"], 5 * 8000)
        self.assertEqual(r["offers"]["after"]["total_fen"], 5 * 12000)
        fields = {f["field"]: (f["old"], f["new"]) for f in r["changes"][0]["fields"]}
        self.assertEqual(fields["result.offer_fen"], (8000, 12000))
        self.assertIn("offers", r)
        self.assertIn("rules", r)


class Readers(unittest.TestCase):
    def test_readers_never_block_the_writer(self):
        tmp = tempfile.mkdtemp(prefix="verdict-read-")
        d = Daemon(MINI, tmp=tmp)
        stop = threading.Event()
        received, errors = [], []
        threads = pipeline_clients(d, 2, stop, received, errors)
        counts = []
        deadline = time.time() + 2
        while time.time() < deadline:
            p = subprocess.run(["sqlite3", d.db, "SELECT count(*) FROM decisions"],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            counts.append(int(p.stdout))
            rc, out, err = run_cli("history", "list", "--limit", "5", "--db", d.db)
            self.assertEqual(rc, 0, err)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(counts, sorted(counts))
        self.assertGreater(counts[-1], counts[0])
        self.assertEqual(d.stop(), 0, d.read_log())
        rc, out, err = verify(d.db)
        self.assertEqual(rc, 0, out + err)
        shutil.rmtree(tmp, ignore_errors=True)


class BadDatabase(unittest.TestCase):
    def start_fails(self, db, expect):
        with self.assertRaises(RuntimeError) as e:
            Daemon(MINI, args=["--db", db])
        self.assertIn(expect, str(e.exception))

    def test_missing_directory(self):
        self.start_fails("/nonexistent/dir/verdict.db", "/nonexistent/dir")

    def test_corrupt_file(self):
        tmp = tempfile.mkdtemp(prefix="verdict-bad-")
        path = os.path.join(tmp, "garbage.db")
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 1000)
        self.start_fails(path, "garbage.db")

    def test_locked_by_another_writer(self):
        tmp = tempfile.mkdtemp(prefix="verdict-lock-")
        d = Daemon(MINI, tmp=tmp)
        self.assertEqual(d.stop(), 0, d.read_log())
        holder = sqlite3.connect(d.db, timeout=0, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            self.start_fails(d.db, "verdict.db")
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    def test_second_daemon_refused(self):
        tmp = tempfile.mkdtemp(prefix="verdict-two-")
        d = Daemon(MINI, tmp=tmp)
        try:
            self.start_fails(d.db, "another verdictd")
        finally:
            self.assertEqual(d.stop(), 0)


class WholeFileCheck(unittest.TestCase):
    """The history's whole-file check (PRAGMA quick_check) runs on a thread
    of its own after start-up: the daemon serves at once, and status and
    the log say what the check found."""

    def wait_check(self, d):
        c = d.connect()
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                st = c.call(op="status")["status"]
                if st["history_check"] != "running":
                    return st
                time.sleep(0.05)
            self.fail("the check did not finish")
        finally:
            c.close()

    def test_sound_history(self):
        d = Daemon(MINI)
        try:
            st = self.wait_check(d)
            self.assertEqual(st["history_check"], "ok", st)
            self.assertNotIn("history_check_error", st)
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
        self.assertIn("is sound (quick_check", d.read_log())

    def test_damage_is_reported_while_serving(self):
        tmp = tempfile.mkdtemp(prefix="verdict-damaged-")
        d = Daemon(MINI, tmp=tmp)
        c = d.connect()
        for i in range(400):
            r = c.call(**request("compensation", "national",
                                 {"charged_fen": 5000 + i, "due_fen": 3000},
                                 rid=i))
            self.assertNotIn("error", r, r)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        # scribble over a page in the middle of the file: a b-tree leaf
        size = os.path.getsize(d.db)
        self.assertGreater(size, 40 * 4096)
        with open(d.db, "r+b") as f:
            f.seek((size // 4096 // 2) * 4096)
            f.write(b"\x5a" * 4096)
        d2 = Daemon(MINI, tmp=tmp)  # starts: opening reads no such page
        try:
            p = d2.connect()
            self.assertTrue(p.call(op="ping")["pong"])
            p.close()
            st = self.wait_check(d2)
            self.assertEqual(st["history_check"], "damaged", st)
            self.assertIn("corrupt", st["history_check_error"])
        finally:
            d2.stop()
        self.assertIn("history check damaged", d2.read_log())
        shutil.rmtree(tmp, ignore_errors=True)


class FullDisk(unittest.TestCase):
    def test_full_disk_fails_requests_then_recovers(self):
        tmp = tempfile.mkdtemp(prefix="verdict-full-")
        d = Daemon(MINI, tmp=tmp)
        c = d.connect()
        self.assertNotIn("error", c.call(**comp(0)))
        # a file-size limit on the running daemon stands in for a full disk
        size = os.path.getsize(d.db + "-wal")
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (size + 4096, resource.RLIM_INFINITY))
        codes = set()
        for i in range(300):
            r = c.call(**comp(i + 1, charged=5000 + i))
            codes.add(r["error"]["code"] if "error" in r else "ok")
            if "internal" in codes:
                break
        self.assertIn("internal", codes)
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        r = c.call(**comp("recovered"))
        self.assertNotIn("error", r, r)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        self.assertIn("internal", " ".join(codes))
        rc, out, err = verify(d.db)
        self.assertEqual(rc, 0, out + err)
        shutil.rmtree(tmp, ignore_errors=True)


class HistoryFacts(unittest.TestCase):
    def test_escalation_counts_similar_complaints_from_history(self):
        tmp = tempfile.mkdtemp(prefix="verdict-facts-")
        d = Daemon(POLICIES, tmp=tmp)
        c = d.connect()
        results = []
        for k in range(6):
            inp = {"complaint_id": "C-%d" % k, "customer_id": "U-%d" % k,
                   "category": "network", "customer_grade": "retail",
                   "received_at": "2026-11-23T09:00:00+08:00",
                   "handled_by": "frontline"}
            at = "2026-11-23T10:%02d:00+08:00" % k
            r = c.call(**request("escalation", "GD-SZ", inp, at=at, rid=k))
            self.assertNotIn("error", r, r)
            results.append(r)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        # the fifth earlier customer makes it a systemic fault
        self.assertFalse(results[4]["result"]["incident"])
        self.assertTrue(results[5]["result"]["incident"])
        self.assertIn("systemic_fault", results[5]["result"]["warnings"])
        db = sqlite3.connect(d.db)
        facts = [json.loads(f) for (f,) in db.execute(
            "SELECT facts FROM decisions WHERE kind = 'escalation' ORDER BY seq")]
        db.close()
        self.assertEqual([f[0]["value"] for f in facts], [0, 1, 2, 3, 4, 5])
        self.assertEqual(facts[5][0]["query"], "similar_customers")
        self.assertEqual(facts[5][0]["args"], ["GD-SZ", "network", 24])
        # replay answers from the recorded facts, so it reproduces
        rc, out, err = run_cli("replay", "--db", d.db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(json.loads(out)["unchanged"], 6)
        shutil.rmtree(tmp, ignore_errors=True)

    def test_escalation_counts_the_customers_complaints_from_history(self):
        # Customer U-77's history, decided before AT (2026-11-23 10:00):
        # complaints C-71, C-72 (this month), C-73 (October) and C-74, the
        # one escalated at AT.  Only escalation requests name the customer;
        # compensations and appeals name the complaint, and are tied to
        # U-77 through it.  U-78's complaint is beside them.
        tmp = tempfile.mkdtemp(prefix="verdict-complaints-")
        d = Daemon(POLICIES, tmp=tmp)
        c = d.connect()

        esc = escalation
        history = u77_history()
        offers = []
        for req in history:
            r = c.call(**req)
            self.assertNotIn("error", r, r)
            if req["kind"] == "compensation":
                offers.append(r["result"]["offer_fen"])
        self.assertEqual(offers, [8000, 8000, 8000, 0, 8000, 8000])

        counted = c.call(**esc("C-74", "U-77", AT))
        given = c.call(**esc("C-74", "U-77", AT, repeat_30d=0, over_head_30d=0,
                             refunds_90d=0, similar_recent=0))
        partly = c.call(**esc("C-74", "U-77", AT, repeat_30d=0, similar_recent=0))
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())

        # counted: 2 other complaints this month (C-71, C-72; C-73 is
        # older), 1 over the head (C-72; C-71's appeal was not by the
        # customer), 3 refunds in 90 days (C-73, C-71 once, C-74 itself;
        # C-72's offer was 0)
        for r in (counted, given, partly):
            self.assertNotIn("error", r, r)
        res = counted["result"]
        self.assertEqual(res["level"], "district")
        self.assertEqual(res["warnings"], ["repeat_complaints", "over_head_complaints",
                                           "frequent_refunds", "pay_within_basis"])
        rules = [t["rule"] for t in counted["trace"]]
        for rule in ("esc.repeat.customer", "esc.repeat.over_head",
                     "esc.repeat.refunds", "esc.pattern.within_basis"):
            self.assertIn(rule, rules)
        # given: the input wins, nothing is asked
        self.assertEqual(given["result"]["warnings"], [])
        self.assertEqual(given["result"]["level"], "frontline")
        # partly given: the other two are still counted
        self.assertEqual(partly["result"]["warnings"],
                         ["over_head_complaints", "frequent_refunds"])

        db = sqlite3.connect(d.db)
        facts = {did: json.loads(f) if f else None for did, f in db.execute(
            "SELECT decision_id, facts FROM decisions")}
        db.close()
        asked = {f["query"]: (f["args"], f["value"])
                 for f in facts[counted["decision_id"]]}
        self.assertEqual(asked, {
            "similar_customers": (["GD", "billing", 24], 1),
            "repeat_complaints": (["U-77", "C-74", 30], 2),
            "over_head_complaints": (["U-77", "C-74", 30], 1),
            "refunded_complaints": (["U-77", "C-74", 90], 3),
        })
        self.assertIsNone(facts[given["decision_id"]])
        self.assertEqual(sorted(f["query"] for f in facts[partly["decision_id"]]),
                         ["over_head_complaints", "refunded_complaints"])

        # replay answers from the recorded facts, so it reproduces every one
        rc, out, err = run_cli("replay", "--db", d.db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        summary = json.loads(out)
        self.assertEqual(summary["changed"], 0, out)
        self.assertEqual(summary["unchanged"], len(history) + 3, out)
        shutil.rmtree(tmp, ignore_errors=True)

    def test_replay_answers_a_candidates_new_questions_from_history(self):
        # Recorded escalations gave every count, so they asked history
        # nothing.  A candidate that always counts from history asks
        # questions their records do not hold: replay asks the history now,
        # over the same window before each decision time, and says so.
        tmp = tempfile.mkdtemp(prefix="verdict-newq-")
        d = Daemon(POLICIES, tmp=tmp)
        c = d.connect()
        days = ["2026-11-21T10:00:00+08:00", "2026-11-22T10:00:00+08:00", AT]
        for n, at in enumerate(days):
            r = c.call(**request("escalation", "GD", {
                "complaint_id": "C-%d" % n, "customer_id": "U-5",
                "category": "billing", "customer_grade": "retail",
                "received_at": at, "handled_by": "frontline",
                "repeat_30d": 0, "over_head_30d": 0, "refunds_90d": 0,
                "similar_recent": 0}, at=at, rid=n))
            self.assertEqual(r["result"]["warnings"], [], r)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())

        cand = os.path.join(tmp, "candidate")
        shutil.copytree(POLICIES, cand)
        esc = os.path.join(cand, "national", "escalation.lua")
        with open(esc) as f:
            text = f.read()
        self.assertIn("    if f[c.field] == nil then\n", text)
        with open(esc, "w") as f:
            f.write(text.replace("    if f[c.field] == nil then\n",
                                 "    if true then\n", 1))
        rc, out, err = run_cli("replay", "--db", d.db, "--against", cand,
                               "--format", "json")
        self.assertEqual(rc, 0, out + err)
        summary = json.loads(out)
        self.assertEqual((summary["replayed"], summary["errors"],
                          summary["asked_now"]), (3, 0, 3), out)
        # counted before each decision time: C-0 has no other complaint,
        # C-1 one, C-2 two, which is a repeat complainant: C-2 changes
        self.assertEqual(summary["changed"], 1, out)
        self.assertEqual(summary["rules"]["esc.repeat.customer"],
                         {"before": 0, "after": 1}, out)
        rc, out, err = run_cli("replay", "--db", d.db, "--against", cand)
        self.assertIn("3 decisions asked history a question their record "
                      "did not hold", out)
        shutil.rmtree(tmp, ignore_errors=True)

    def test_compensations_that_name_the_customer_count_without_escalation(self):
        # Compensation (like sla and appeal) may name the customer: its
        # complaints then count for that customer without ever having been
        # escalated.
        tmp = tempfile.mkdtemp(prefix="verdict-named-")
        d = Daemon(POLICIES, tmp=tmp)
        c = d.connect()
        for n, day in ((91, 10), (92, 12), (93, 14)):
            r = c.call(**request("compensation", "GD", {
                "complaint_id": "C-%d" % n, "customer_id": "U-90",
                "category": "billing", "customer_grade": "retail",
                "cause": "carrier", "charged_fen": 12800, "due_fen": 8800},
                at="2026-11-%02dT09:00:00+08:00" % day, rid=n))
            self.assertEqual(r["result"]["offer_fen"], 8000, r)
        r = c.call(**request("escalation", "GD", {
            "complaint_id": "C-94", "customer_id": "U-90", "category": "billing",
            "customer_grade": "retail", "received_at": AT,
            "handled_by": "frontline", "similar_recent": 0}, at=AT))
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        self.assertEqual(r["result"]["warnings"],
                         ["repeat_complaints", "frequent_refunds",
                          "pay_within_basis"], r)
        shutil.rmtree(tmp, ignore_errors=True)


class Activations(unittest.TestCase):
    """Every activation is in a hash chain of its own: an edited `who` or
    a deleted activation fails `verify`, naming the row; the printed
    anchor carries both heads and still accepts the old form."""

    def sql(self, db, statement):
        p = subprocess.run(["sqlite3", db, statement], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode()

    def copy(self, db, name):
        dst = os.path.join(self.tmp, name)
        shutil.copy(db, dst)
        return dst

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-acts-")
        d = Daemon(MINI, admin=True, tmp=self.tmp)
        for who in ("alice", "bob"):
            rc, out, err = run_cli("--admin-socket", d.admin_socket, "reload",
                                   "--who", who)
            self.assertEqual(rc, 0, out + err)
        c = d.connect()
        self.assertNotIn("error", c.call(**comp("acts")))
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        self.db = d.db

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_edited_or_deleted_activation_fails_verify(self):
        rows = self.sql(self.db, "SELECT id, cause, who LIKE '% alice' FROM "
                                 "activations ORDER BY id")
        self.assertEqual(rows.split(), ["1|startup|", "2|admin|1", "3|admin|0"])
        rc, out, err = verify(self.db)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("1 records verified", out)
        self.assertIn("; 3 activations verified, chain head ", out)
        db = self.copy(self.db, "who.db")
        self.sql(db, "UPDATE activations SET who = 'mallory' WHERE id = 2")
        rc, out, err = verify(db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("FAILED (changed): activation 2 (admin by mallory at ", out)
        self.assertIn("the 1 records verify", out)
        db = self.copy(self.db, "del.db")
        self.sql(db, "DELETE FROM activations WHERE id = 2")
        rc, out, err = run_cli("history", "verify", "--db", db, "--format", "json")
        self.assertEqual(rc, 1, out + err)
        r = json.loads(out)
        self.assertEqual((r["problem"], r["activation"]), ("deleted", 2))

    def test_anchor_carries_both_heads(self):
        rc, out, err = run_cli("history", "verify", "--db", self.db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        r = json.loads(out)
        self.assertEqual(r["activations"], 3)
        anchor = r["anchor"]
        self.assertEqual(anchor, "1:%s/3:%s" % (r["head"], r["activations_head"]))
        rc, out, err = run_cli("history", "verify", "--db", self.db, "--anchor", anchor)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("anchor 1 holds\nanchor activation 3 holds\n", out)
        # the tail cut and activation_head moved back: only the anchor knows
        db = self.copy(self.db, "cut.db")
        self.sql(db, "DELETE FROM activations WHERE id = 3; UPDATE activation_head "
                     "SET last_id = 2, hash = (SELECT hash FROM activations WHERE id = 2)")
        rc, out, err = verify(db)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = run_cli("history", "verify", "--db", db, "--anchor", anchor)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("activations were cut from its tail", out)
        # an anchor of the old form still checks the decisions
        rc, out, err = run_cli("history", "verify", "--db", db, "--anchor",
                               anchor.split("/")[0])
        self.assertEqual(rc, 0, out + err)
        self.assertIn("anchor 1 holds\n", out)


if __name__ == "__main__":
    unittest.main()
