"""Revisions by name, tags, diff, export, and a rollback that lasts
(issue 13): a real daemon and its real history file."""
import filecmp
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import unittest

from harness import FIXTURES, VERDICT, Daemon, request, run_cli
from test_admin import comp, set_multiplier

MINI = os.path.join(FIXTURES, "mini")


class Revisions(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-revs-")
        self.bundle = os.path.join(self.tmp, "policies")
        shutil.copytree(MINI, self.bundle)
        self.d = None

    def tearDown(self):
        if self.d:
            self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, *args):
        self.d = Daemon(self.bundle, admin=True, tmp=self.tmp, args=list(args))
        self.db = self.d.db

    def stop(self):
        rc = self.d.stop()
        self.assertEqual(rc, 0, self.d.read_log())
        log = self.d.read_log()
        self.d = None
        return log

    def admin(self, *args):
        return run_cli("--admin-socket", self.d.admin_socket, *args)

    def offline(self, *args):
        return run_cli(*args, "--db", self.db)

    def offer(self):
        c = self.d.connect()
        r = c.call(**comp(1))
        c.close()
        return r["revision"], r["result"]["offer_fen"]

    def activations(self, out):
        """The rows of `verdict revisions`: (mark, trigger, ok, revision)."""
        rows = []
        for line in out.splitlines()[1:]:
            if not line.strip():
                break
            f = line[2:].split()
            rows.append((line[0], f[1], f[2], f[3]))
        return rows

    def test_names_tags_diff_export_and_a_rollback_that_lasts(self):
        self.start()
        rev1, offer = self.offer()
        self.assertEqual(offer, 6000)
        set_multiplier(self.bundle, 5)
        rc, out, err = self.admin("reload")
        self.assertEqual(rc, 0, err)
        rev2 = out.split()[-1]
        self.assertNotEqual(rev1, rev2)

        # the auditor's view, from the file: the reload is in force
        rc, out, err = self.offline("revisions")
        self.assertEqual(rc, 0, err)
        rows = self.activations(out)
        self.assertEqual(rows[0], ("*", "reload", "yes", rev2))
        self.assertEqual(rows[1], (" ", "startup", "yes", rev1))
        # the same through the daemon
        rc, out2, err = self.admin("revisions")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.activations(out2), rows)

        # names: prefixes with and without sha256:, previous, @-N, tags
        hex1 = rev1[len("sha256:"):]
        for name in (hex1[:4], "sha256:" + hex1[:10], hex1.upper()[:12],
                     "previous", "@-1"):
            rc, out, err = self.offline("diff", name, "active")
            self.assertEqual(rc, 0, name + ": " + err)
            self.assertIn("-P.multiplier = 3", out, name)
            self.assertIn("+P.multiplier = 5", out, name)
        rc, out, err = self.offline("diff", "@-0", rev2)
        self.assertEqual((rc, out), (0, ""), err)
        rc, out, err = self.offline("diff", "@-2")
        self.assertEqual(rc, 1)
        self.assertIn("only 1 earlier revision went live", err)
        rc, out, err = self.offline("tag", hex1[:6], "golden", "--who", "alice")
        self.assertEqual((rc, out), (0, "tagged %s golden\n" % rev1), err)
        rc, out, err = self.offline("tag", "active", "golden")
        self.assertEqual(rc, 1)
        self.assertIn("tag 'golden' already names %s (given by alice at " % rev1,
                      err)
        for bad in ("cafe", "active", "9lives", "a b"):
            rc, out, err = self.offline("tag", "active", bad)
            self.assertEqual(rc, 1, bad)
            self.assertIn("tag", err)
        rc, out, err = self.offline("tag", "nosuchtag", "x1")
        self.assertEqual(rc, 1)
        self.assertIn("no revision named 'nosuchtag'", err)
        rc, out, err = self.offline("revisions")
        self.assertIn("tags:\n  golden", out)
        self.assertIn(rev1 + " alice, ", out)
        # a revision against a directory, and a directory against one
        other = os.path.join(self.tmp, "edited")
        shutil.copytree(self.bundle, other)
        set_multiplier(other, 7)
        rc, out, err = self.offline("diff", "golden", other)
        self.assertEqual(rc, 0, err)
        self.assertIn("-P.multiplier = 3", out)
        self.assertIn("+P.multiplier = 7", out)
        rc, out, err = self.offline("diff", self.bundle, "active")
        self.assertEqual((rc, out), (0, ""), err)

        # export: the live revision back into a directory, byte for byte
        exported = os.path.join(self.tmp, "exported")
        rc, out, err = self.offline("export", "active", exported)
        self.assertEqual(rc, 0, err)
        self.assertIn("exported %s" % rev2, out)
        cmp = filecmp.dircmp(self.bundle, exported)
        self.assertEqual((cmp.left_only, cmp.right_only, cmp.diff_files),
                         ([], [], []))
        for sub in ("national", "regions/GD"):
            c = filecmp.dircmp(os.path.join(self.bundle, sub),
                               os.path.join(exported, sub))
            self.assertEqual((c.left_only, c.right_only, c.diff_files),
                             ([], [], []), sub)
        rc, out, err = self.offline("export", "golden", exported)
        self.assertEqual(rc, 2)
        self.assertIn("not empty", err)

        # roll back by tag, through the daemon, which resolves the name
        rc, out, err = self.admin("activate", "golden", "--who", "bob")
        self.assertEqual((rc, out), (0, "activated %s\n" % rev1), err)
        self.assertEqual(self.offer(), (rev1, 6000))
        rc, out, err = self.offline("revisions")
        self.assertEqual(self.activations(out)[0], ("*", "rollback", "yes", rev1))

        # the rollback survives a restart, and says so
        log = self.stop()
        self.start()
        self.assertEqual(self.offer(), (rev1, 6000))
        self.assertIn("start-up: keeping %s, the revision last activated (a "
                      "rollback), not %s in %s" % (rev1, rev2, self.bundle),
                      self.d.read_log())
        a = self.d.connect(admin=True)
        st = a.call(op="status")["status"]
        a.close()
        self.assertEqual(st["activated_by"], "startup-rollback")
        self.assertEqual(st["revision"], rev1)
        rc, out, err = self.offline("revisions")
        self.assertEqual(self.activations(out)[0],
                         ("*", "startup-rollback", "yes", rev1))
        # ... and another: still the rollback
        self.stop()
        self.start()
        self.assertEqual(self.offer(), (rev1, 6000))
        # the admin's next reload takes the directory, for good
        rc, out, err = self.admin("reload")
        self.assertEqual((rc, out), (0, "activated %s\n" % rev2), err)
        self.stop()
        self.start()
        self.assertEqual(self.offer(), (rev2, 10000))
        # --policies-win: the directory, whatever the history says
        rc, out, err = self.admin("activate", "previous")
        self.assertEqual((rc, out), (0, "activated %s\n" % rev1), err)
        self.stop()
        self.start("--policies-win")
        self.assertEqual(self.offer(), (rev2, 10000))
        self.assertNotIn("keeping", self.d.read_log())
        rc, out, err = self.offline("revisions")
        self.assertEqual(self.activations(out)[0], ("*", "startup", "yes", rev2))

    def test_an_ambiguous_prefix_lists_the_candidates(self):
        self.start()
        rev1, _ = self.offer()
        self.stop()
        # a second revision row sharing rev1's first 6 hex digits
        twin = rev1[:13] + ("0" if rev1[13] != "0" else "1") * 58
        c = sqlite3.connect(self.db)
        c.execute("INSERT INTO revisions (revision, stored_ms, files, bytes)"
                  " VALUES (?, 0, 0, 0)", (twin,))
        c.commit()
        c.close()
        rc, out, err = self.offline("diff", rev1[7:13], rev1)
        self.assertEqual(rc, 2, err)
        self.assertIn("revision '%s' is ambiguous; it starts:" % rev1[7:13], err)
        self.assertIn("\n  " + rev1, err)
        self.assertIn("\n  " + twin, err)
        rc, out, err = self.offline("diff", rev1[7:10], rev1)
        self.assertEqual(rc, 2)
        self.assertIn("4 to 64 hex digits", err)
        rc, out, err = self.offline("diff", rev1[7:14], rev1)
        self.assertEqual((rc, out), (0, ""), err)

    def test_auditors_read_the_file_and_hear_of_permissions(self):
        self.start()
        rev1, _ = self.offer()
        sock = self.d.admin_socket
        # a user the socket keeps out is told so, not "is verdictd running?"
        if os.geteuid() == 0:
            cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup",
                   "--clear-groups", VERDICT, "--admin-socket", sock,
                   "revisions"]
        else:
            os.chmod(sock, 0)
            cmd = [VERDICT, "--admin-socket", sock, "revisions"]
        p = subprocess.run(cmd, capture_output=True, timeout=60)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 3, err)
        self.assertIn("permission denied", err)
        self.assertNotIn("is verdictd running", err)
        os.chmod(sock, stat.S_IRUSR | stat.S_IWUSR)
        self.stop()
        # no daemon: revisions, diff and export from the file alone
        rc, out, err = self.offline("revisions")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.activations(out), [("*", "startup", "yes", rev1)])
        rc, out, err = self.offline("diff", rev1[7:15], "active")
        self.assertEqual((rc, out), (0, ""), err)
        rc, out, err = run_cli("revisions", "--admin-socket",
                               os.path.join(self.tmp, "gone.sock"))
        self.assertEqual(rc, 3)
        self.assertIn("is verdictd running?", err)


if __name__ == "__main__":
    unittest.main()
