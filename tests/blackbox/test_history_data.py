"""The history as an operations team keeps it: backups taken while the
daemon writes under durable load, each a consistent, verified copy whose
anchor the live database still proves; a customer's personal data erased
on request while the chain still verifies; old decisions archived into a
file that verifies on its own while the live chain goes on verifying;
personal fields recorded only as keyed pseudonyms, with which the
history's questions, replay and a look-up by the key holder still work."""
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import unittest

from harness import AT, FIXTURES, POLICIES, Daemon, Refused, request, run_cli
from test_history import pipeline_clients

MINI = os.path.join(FIXTURES, "mini")


def backup(db, dest, *extra):
    return run_cli("history", "backup", "--db", db, *extra, dest)


class Backup(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-backup-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_backups_under_durable_load_are_consistent_and_verified(self):
        d = Daemon(MINI, tmp=self.tmp, log_mode="durable")
        stop = threading.Event()
        received, errors = [], []
        threads = pipeline_clients(d, 3, stop, received, errors)
        anchors = []
        try:
            deadline = time.time() + 20
            while len(received) < 200 and time.time() < deadline:
                time.sleep(0.05)
            for i in range(3):
                dest = os.path.join(self.tmp, "backup-%d.db" % i)
                before = len(received)
                rc, out, err = backup(d.db, dest, "--format", "json")
                self.assertEqual(rc, 0, out + err)
                rep = json.loads(out)
                self.assertTrue(rep["ok"])
                # the daemon kept answering while the copy was taken
                time.sleep(0.2)
                self.assertGreater(len(received), before)
                # the copy holds whole batches: its records are 1..N, its
                # head verifies, and it is one file in rollback mode
                self.assertGreater(rep["records"], 0)
                self.assertFalse(os.path.exists(dest + "-wal"))
                self.assertEqual(stat.S_IMODE(os.stat(dest).st_mode), 0o640)
                con = sqlite3.connect(dest)
                mode = con.execute("PRAGMA journal_mode").fetchone()[0]
                n, top = con.execute(
                    "SELECT count(*), max(seq) FROM decisions").fetchone()
                con.close()
                self.assertEqual(mode, "delete")
                self.assertEqual((n, top), (rep["records"], rep["records"]))
                # the copy verifies on its own...
                rc, vout, verr = run_cli("history", "verify", "--db", dest)
                self.assertEqual(rc, 0, vout + verr)
                self.assertIn("anchor: " + rep["anchor"], vout)
                anchors.append(rep["anchor"])
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertEqual(d.stop(), 0, d.read_log())
        # ...and the live database, which went on growing, still holds
        # every anchor a backup reported
        counts = [int(a.split(":")[0]) for a in anchors]
        self.assertEqual(counts, sorted(counts))
        for a in anchors:
            rc, out, err = run_cli("history", "verify", "--db", d.db,
                                   "--anchor", a)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("anchor %s holds" % a.split(":")[0], out)

    def test_refuses_to_overwrite_without_force(self):
        d = Daemon(MINI, tmp=self.tmp)
        c = d.connect()
        c.call(id=1, kind="compensation", region="GD",
               input={"charged_fen": 5000, "due_fen": 3000})
        c.close()
        dest = os.path.join(self.tmp, "b.db")
        with open(dest, "w") as f:
            f.write("keep me")
        rc, out, err = backup(d.db, dest)
        self.assertEqual(rc, 2)
        self.assertIn("exists; give --force", err)
        with open(dest) as f:
            self.assertEqual(f.read(), "keep me")
        rc, out, err = backup(d.db, dest, "--force")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("1 records verified", out)
        # the database itself is never a destination
        rc, out, err = backup(d.db, d.db, "--force")
        self.assertEqual(rc, 2)
        self.assertIn("the database itself", err)
        # no temporary file is left beside the copy
        self.assertEqual(sorted(f for f in os.listdir(self.tmp)
                                if f.startswith("b.db")), ["b.db"])
        self.assertEqual(d.stop(), 0, d.read_log())

    def test_a_tampered_database_gives_no_backup(self):
        d = Daemon(MINI, tmp=self.tmp)
        c = d.connect()
        for i in range(3):
            c.call(id=i, kind="compensation", region="GD",
                   input={"charged_fen": 5000 + i, "due_fen": 3000})
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        con = sqlite3.connect(d.db)
        con.execute("UPDATE decisions SET elapsed_us = 1 WHERE seq = 2")
        con.commit()
        con.close()
        dest = os.path.join(self.tmp, "b.db")
        rc, out, err = backup(d.db, dest)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("does not verify", err)
        self.assertIn("seq 2", err)
        self.assertFalse(os.path.exists(dest))
        self.assertEqual([f for f in os.listdir(self.tmp)
                          if f.startswith("b.db")], [])


def escalation(rid, customer, complaint, at=AT):
    return request("escalation", "BJ", {
        "complaint_id": complaint, "customer_id": customer,
        "category": "network", "customer_grade": "retail",
        "received_at": "2026-11-20T10:00:00+08:00", "handled_by": "frontline"},
        rid=rid, at=at)


class Erase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-erase-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def rows(self, db, sql, *args):
        con = sqlite3.connect(db)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def test_erase_a_customer_while_the_daemon_writes(self):
        d = Daemon(POLICIES, tmp=self.tmp)
        c = d.connect()
        for i in range(3):
            for who in ("U-ERASE", "U-KEEP"):
                r = c.call(**escalation("%s%d" % (who[2], i), who,
                                        "C-%s%d" % (who[2], i)))
                self.assertNotIn("error", r, r)
        # a compensation naming the customer too
        r = c.call(**request("compensation", "GD-SZ", {
            "complaint_id": "C-E0", "customer_id": "U-ERASE",
            "category": "billing", "customer_grade": "retail",
            "cause": "carrier", "charged_fen": 12800, "due_fen": 8800}))
        self.assertNotIn("error", r, r)
        # the daemon keeps writing while the erasure runs
        rc, out, err = run_cli("history", "erase", "--customer", "U-ERASE",
                               "--who", "dpo: ticket 42", "--db", d.db)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("erased: the personal data of 4 records", out)
        self.assertIn("by dpo: ticket 42", out)
        self.assertIn("fields: customer_id", out)
        self.assertIn("ok: 7 records verified (4 with personal data erased)",
                      out)
        after = c.call(**escalation("after", "U-KEEP", "C-after"))
        self.assertNotIn("error", after, after)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())

        # nothing of the customer is left in any column
        for col in ("customer_id", "request", "facts", "result", "trace"):
            n = self.rows(d.db, "SELECT count(*) FROM decisions WHERE "
                          "instr(coalesce(%s, ''), 'U-ERASE') > 0" % col)
            self.assertEqual(n, [(0,)], col)
        erased = self.rows(d.db, "SELECT request, facts, personal_salt,"
                           " length(personal_digest) FROM decisions"
                           " WHERE personal_digest IS NOT NULL")
        self.assertEqual(len(erased), 4)
        for req, facts, salt, dlen in erased:
            self.assertIsNone(salt)
            self.assertEqual(dlen, 64)
            self.assertNotIn("customer_id", json.loads(req)["input"])
            # the rest of the request is kept
            self.assertIn("complaint_id", json.loads(req)["input"])
        # the other customer's records are untouched and still counted
        kept = self.rows(d.db, "SELECT count(*) FROM decisions WHERE"
                         " customer_id = 'U-KEEP' AND personal_salt IS NOT"
                         " NULL AND personal_digest IS NULL")
        self.assertEqual(kept, [(4,)])
        # the erasure is recorded: who, when, how many, never whose
        log = self.rows(d.db, "SELECT who, records, fields, at FROM erasures")
        self.assertEqual(len(log), 1)
        self.assertEqual(log[0][:3], ("dpo: ticket 42", 4, "customer_id"))
        self.assertNotIn("U-ERASE", json.dumps(self.rows(
            d.db, "SELECT * FROM erasures")))
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("8 records verified (4 with personal data erased)", out)
        # erasing again finds nothing
        rc, out, err = run_cli("history", "erase", "--customer", "U-ERASE",
                               "--db", d.db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no record names customer 'U-ERASE'", err)

    def test_personal_data_removed_behind_verdicts_back_shows(self):
        d = Daemon(POLICIES, tmp=self.tmp)
        c = d.connect()
        for i in range(2):
            self.assertNotIn("error", c.call(**escalation(i, "U-1", "C-%d" % i)))
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        # an edit of a personal column is still a change...
        con = sqlite3.connect(d.db)
        con.execute("UPDATE decisions SET customer_id = 'U-2' WHERE seq = 1")
        con.commit()
        con.close()
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("row seq 1", out)
        self.assertIn("was changed", out)
        # ...and an erasure not made by verdict (no erasures row) is named
        con = sqlite3.connect(d.db)
        con.execute("UPDATE decisions SET customer_id = 'U-1' WHERE seq = 1")
        con.commit()
        con.close()
        rc, out, err = run_cli("history", "erase", "--customer", "U-1",
                               "--db", d.db, "--format", "json")
        self.assertEqual(rc, 0, out + err)
        rep = json.loads(out)
        self.assertEqual((rep["erased"], rep["verified"]), (2, True))
        con = sqlite3.connect(d.db)
        con.execute("DELETE FROM erasures")
        con.commit()
        con.close()
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("the erasures table accounts for 0", out)

    def test_usage(self):
        d = Daemon(MINI, tmp=self.tmp)
        self.assertEqual(d.stop(), 0, d.read_log())
        rc, out, err = run_cli("history", "erase", "--db", d.db)
        self.assertEqual(rc, 2)
        self.assertIn("give --customer ID", err)
        rc, out, err = run_cli("history", "erase", "--customer", "",
                               "--db", d.db)
        self.assertEqual(rc, 2)
        self.assertIn("--customer: empty customer id", err)
        rc, out, err = run_cli("history", "erase", "--customer", "X",
                               "--policies", os.path.join(self.tmp, "nope"),
                               "--db", d.db)
        self.assertEqual(rc, 2)
        self.assertIn("which fields are personal", err)


def anchor_of(out):
    for line in out.splitlines():
        if line.startswith("anchor: "):
            return line.split()[1]
    raise AssertionError("no anchor in %r" % out)


class Archive(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-archive-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def cut_after(self, db, seq):
        """An RFC 3339 time between record seq and the one after it."""
        con = sqlite3.connect(db)
        a, b = [r[0] for r in con.execute(
            "SELECT received_ms FROM decisions WHERE seq IN (?, ?)"
            " ORDER BY seq", (seq, seq + 1))]
        con.close()
        self.assertLess(a, b)
        ms = b
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
            ".%03dZ" % (ms % 1000)

    def test_archive_while_the_daemon_writes(self):
        d = Daemon(MINI, tmp=self.tmp)
        c = d.connect()
        ids = []
        for i in range(30):
            r = c.call(id=i, kind="compensation", region="GD",
                       input={"charged_fen": 5000 + i, "due_fen": 3000})
            ids.append(r["decision_id"])
            if i in (9, 19):
                time.sleep(0.05)  # distinct received times at the cuts
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 0, out + err)
        before = anchor_of(out)  # an anchor kept from before the archiving
        stop = threading.Event()
        received, errors = [], []
        threads = pipeline_clients(d, 2, stop, received, errors)
        try:
            time.sleep(0.3)
            a1 = os.path.join(self.tmp, "a1.db")
            rc, out, err = run_cli("history", "archive", "--db", d.db,
                                   "--before", self.cut_after(d.db, 10),
                                   "--to", a1, "--who", "ops")
            self.assertEqual(rc, 0, out + err)
            self.assertIn("archived: records 1..10 to %s, by ops" % a1, out)
            a2 = os.path.join(self.tmp, "a2.db")
            rc, out, err = run_cli("history", "archive", "--db", d.db,
                                   "--before", self.cut_after(d.db, 20),
                                   "--to", a2, "--format", "json")
            self.assertEqual(rc, 0, out + err)
            rep = json.loads(out)
            self.assertEqual((rep["first_seq"], rep["last_seq"]), (11, 20))
            n = len(received)
            time.sleep(0.3)
            self.assertGreater(len(received), n)  # it kept answering
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        # each archive verifies on its own, one file, the range it says
        edges = []
        for path, first, last in ((a1, 1, 10), (a2, 11, 20)):
            self.assertFalse(os.path.exists(path + "-wal"))
            rc, out, err = run_cli("history", "verify", "--db", path)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("%d records verified" % (last - first + 1), out)
            self.assertIn("an archive of records %d..%d" % (first, last), out)
            edges.append(anchor_of(out).split("/")[0])
            self.assertTrue(edges[-1].startswith("%d:" % last))
        # the live database verifies from the second archive's edge; the
        # anchor kept from before the archivings still holds, so does the
        # edge, and an anchor inside an archive is sent there
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("records 1..20 archived", out)
        for a in (before, edges[1]):
            rc, out, err = run_cli("history", "verify", "--db", d.db,
                                   "--anchor", a)
            self.assertEqual(rc, 0, out + err)
        rc, out, err = run_cli("history", "verify", "--db", d.db, "--anchor",
                               edges[0])
        self.assertEqual(rc, 1, out + err)
        self.assertIn("archived out of this database", out)
        # the archivings are recorded: who, when, range, anchor, file
        con = sqlite3.connect(d.db)
        rows = con.execute("SELECT role, who, first_seq, last_seq, file,"
                           " length(anchor) FROM archives ORDER BY id").fetchall()
        first_live = con.execute("SELECT min(seq) FROM decisions").fetchone()
        con.close()
        self.assertEqual(rows[0], ("moved", "ops", 1, 10, a1, 64))
        self.assertEqual(rows[1][0::2], ("moved", 11, a2))
        self.assertEqual(first_live, (21,))
        # the history commands say where the range went
        rc, out, err = run_cli("history", "show", ids[3], "--db", d.db)
        self.assertEqual(rc, 1)
        self.assertIn("records 1..20", err)
        self.assertIn("archived", err)
        rc, out, err = run_cli("history", "show", ids[3], "--db", a1)
        self.assertEqual(rc, 0, err)
        rc, out, err = run_cli("history", "list", "--db", d.db)
        self.assertEqual(rc, 0, err)
        self.assertIn("were archived", err)
        # nothing left that old: exit 1, and no file
        a3 = os.path.join(self.tmp, "a3.db")
        rc, out, err = run_cli("history", "archive", "--db", d.db,
                               "--before", "2020-01-01T00:00:00Z", "--to", a3)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("no decision received before", err)
        self.assertFalse(os.path.exists(a3))
        # an existing file is never an archive
        rc, out, err = run_cli("history", "archive", "--db", d.db,
                               "--before", "2030-01-01T00:00:00Z", "--to", a1)
        self.assertEqual(rc, 2, out + err)
        self.assertIn("the file exists", err)

    def test_removing_the_archive_record_shows(self):
        d = Daemon(MINI, tmp=self.tmp)
        c = d.connect()
        for i in range(6):
            c.call(id=i, kind="compensation", region="GD",
                   input={"charged_fen": 5000, "due_fen": 3000})
            time.sleep(0.01)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        a = os.path.join(self.tmp, "a.db")
        rc, out, err = run_cli("history", "archive", "--db", d.db, "--before",
                               self.cut_after(d.db, 3), "--to", a)
        self.assertEqual(rc, 0, out + err)
        con = sqlite3.connect(d.db)
        con.execute("DELETE FROM archives")
        con.commit()
        con.close()
        rc, out, err = run_cli("history", "verify", "--db", d.db)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("rows seq 1..3 were deleted", out)


class Pseudonyms(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-pseudo-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key = os.path.join(self.tmp, "pseudonymise.key")
        with open(self.key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(self.key, 0o600)

    def test_raw_values_never_written_and_questions_still_answered(self):
        d = Daemon(POLICIES, tmp=self.tmp,
                   args=["--pseudonymise-key", self.key])
        c = d.connect()
        answers = [c.call(**escalation("e%d" % i, "U-SECRET-1", "C-%d" % i,
                                       at="2026-11-23T10:0%d:00+08:00" % i))
                   for i in range(3)]
        answers.append(c.call(**escalation("other", "U-SECRET-2", "C-9")))
        for a in answers:
            self.assertNotIn("error", a, a)
        c.close()
        self.assertEqual(d.stop(), 0, d.read_log())
        con = sqlite3.connect(d.db)
        rows = con.execute("SELECT customer_id, request, facts FROM decisions"
                           " ORDER BY seq").fetchall()
        con.close()
        # the raw value is nowhere; equal values have equal pseudonyms
        for row in rows:
            for col in row:
                self.assertNotIn("SECRET", col or "")
        self.assertRegex(rows[0][0], r"^p1-[0-9a-f]{32}$")
        self.assertEqual(rows[0][0], rows[2][0])
        self.assertNotEqual(rows[0][0], rows[3][0])
        self.assertEqual(json.loads(rows[1][1])["input"]["customer_id"],
                         rows[0][0])
        # the history's questions were asked by pseudonym: the third
        # complaint saw the customer's two earlier ones
        facts = {f["query"]: f for f in json.loads(rows[2][2])}
        self.assertEqual(facts["repeat_complaints"]["value"], 2)
        self.assertEqual(facts["repeat_complaints"]["args"][0], rows[0][0])
        # replay decides the stored (pseudonymised) requests the same way
        rc, out, err = run_cli("replay", "--db", d.db)
        self.assertEqual(rc, 0, out + err)
        # the key holder looks the customer up; without the key, nothing
        rc, out, err = run_cli("history", "list", "--db", d.db, "--customer",
                               "U-SECRET-1", "--pseudonymise-key", self.key,
                               "--format", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(json.loads(out)), 3)
        rc, out, err = run_cli("history", "list", "--db", d.db, "--customer",
                               "U-SECRET-1", "--format", "json")
        self.assertEqual((rc, json.loads(out)), (0, []))
        rc, out, err = run_cli("history", "show", "--db", d.db, "--customer",
                               "U-SECRET-2", "--pseudonymise-key", self.key,
                               "--format", "json")
        self.assertEqual(rc, 0, err)
        shown = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([r["decision_id"] for r in shown],
                         [answers[3]["decision_id"]])
        rc, out, err = run_cli("history", "show", "--db", d.db, "--customer",
                               "U-SECRET-2")
        self.assertEqual(rc, 1)
        self.assertIn("no decision of that customer", err)
        # and can have the customer erased
        rc, out, err = run_cli("history", "erase", "--db", d.db, "--customer",
                               "U-SECRET-1", "--pseudonymise-key", self.key)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("erased: the personal data of 3 records", out)
        self.assertIn("ok: 4 records verified (3 with personal data erased)",
                      out)

    def test_a_key_others_can_read_is_refused(self):
        os.chmod(self.key, 0o644)
        r = Refused(POLICIES, args=["--pseudonymise-key", self.key])
        self.assertEqual(r.status, 1, r.log)
        self.assertIn("readable by others", r.log)
        self.assertIn("chmod o-rwx", r.log)
        short = os.path.join(self.tmp, "short.key")
        with open(short, "wb") as f:
            f.write(b"0123")
        os.chmod(short, 0o600)
        r = Refused(POLICIES, args=["--pseudonymise-key", short])
        self.assertEqual(r.status, 1, r.log)
        self.assertIn("too short", r.log)


if __name__ == "__main__":
    unittest.main()
