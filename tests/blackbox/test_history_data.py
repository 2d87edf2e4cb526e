"""The history as an operations team keeps it: backups taken while the
daemon writes under durable load, each a consistent, verified copy whose
anchor the live database still proves."""
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import unittest

from harness import FIXTURES, Daemon, run_cli
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


if __name__ == "__main__":
    unittest.main()
