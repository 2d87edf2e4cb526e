"""Policy administration while back-office systems keep querying."""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import FIXTURES, VERDICTD, Daemon, request, run_cli

MINI = os.path.join(FIXTURES, "mini")


def comp(rid):
    return request("compensation", "GD-SZ", {"charged_fen": 5000, "due_fen": 3000},
                   rid=rid)


def set_multiplier(bundle, m, break_it=False):
    """Edit the GD policy and its test so the bundle stays valid (or not)."""
    path = os.path.join(bundle, "regions", "GD", "compensation.lua")
    with open(path, "w") as f:
        f.write("-- GD extends the national policy.\nlocal P = parent()\n"
                "P.multiplier = %d\n%sreturn P\n"
                % (m, "this is not lua\n" if break_it else ""))
    tpath = os.path.join(bundle, "national", "compensation_test.lua")
    with open(tpath) as f:
        text = f.read()
    import re
    text = re.sub(r"offer_fen = \d+, policy_region", "offer_fen = %d, policy_region"
                  % (2000 * m), text)
    with open(tpath, "w") as f:
        f.write(text)


class Admin(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-admin-")
        self.bundle = os.path.join(self.tmp, "policies")
        shutil.copytree(MINI, self.bundle)
        self.d = Daemon(self.bundle, admin=True, tmp=self.tmp)

    def tearDown(self):
        rc = self.d.stop()
        self.assertEqual(rc, 0, self.d.read_log())
        shutil.rmtree(self.tmp, ignore_errors=True)

    def admin(self, *args):
        return run_cli("--admin-socket", self.d.admin_socket, *args)

    def test_admin_socket_mode_and_decision_socket_refuses(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.d.admin_socket).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.d.socket).st_mode), 0o660)
        c = self.d.connect()
        for op in ("reload", "activate", "revisions", "diff"):
            r = c.call(op=op, id=op)
            self.assertEqual(r["error"]["code"], "forbidden", r)
        c.close()
        a = self.d.connect(admin=True)
        self.assertTrue(a.call(op="ping")["pong"])
        a.close()

    def test_ping_answers_alike_on_both_sockets(self):
        # docs/protocol.md, "ping and status": one pong, naming the active revision
        c = self.d.connect()
        a = self.d.connect(admin=True)
        pong = c.call(op="ping", id=7)
        self.assertEqual(pong["revision"][:7], "sha256:")
        self.assertEqual(a.call(op="ping", id=7), pong)
        c.close()
        a.close()

    def test_pipelined_admin_requests_answer_in_order(self):
        # revisions, diff and activate read the history on the thread pool;
        # a connection still gets one answer per request, in request order
        a = self.d.connect(admin=True)
        rev = a.call(op="ping")["revision"]
        reqs = [{"op": "revisions", "id": 1}, {"op": "ping", "id": 2},
                {"op": "diff", "from": rev, "id": 3},
                {"op": "activate", "revision": "sha256:" + "0" * 64, "id": 4},
                {"op": "activate", "revision": rev, "id": 5, "who": "t"},
                {"op": "status", "id": 6}]
        a.send("".join(json.dumps(r) + "\n" for r in reqs))
        got = [a.readline() for _ in reqs]
        self.assertEqual([r["id"] for r in got], [1, 2, 3, 4, 5, 6], got)
        self.assertEqual(got[0]["revisions"][0]["revision"], rev)
        self.assertTrue(got[1]["pong"])
        self.assertEqual((got[2]["from"], got[2]["to"], got[2]["diff"]),
                         (rev, rev, ""))
        self.assertEqual(got[3]["error"]["code"], "not_found")
        self.assertEqual(got[3]["error"]["path"], "revision")
        self.assertEqual((got[4]["ok"], got[4]["unchanged"]), (True, True))
        self.assertEqual(got[5]["status"]["activated_by"], "admin")
        a.close()

    def test_a_live_admin_socket_is_not_taken(self):
        # a second daemon pointed at the same admin socket is refused, as
        # for the decision socket, and leaves the first one's in place
        other = os.path.join(self.tmp, "other")
        os.mkdir(other)
        p = subprocess.run(
            [VERDICTD, "--policies", self.bundle,
             "--socket", os.path.join(other, "s.sock"),
             "--db", os.path.join(other, "v.db"),
             "--admin-socket", self.d.admin_socket],
            capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"another daemon is listening", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(other, "s.sock")))
        a = self.d.connect(admin=True)
        self.assertTrue(a.call(op="ping")["pong"])
        a.close()

    def test_reloads_under_load_drop_nothing(self):
        c0 = self.d.connect()
        first = c0.call(**comp("first"))["revision"]
        c0.close()
        good = {first}
        stop = threading.Event()
        results, problems = [], []

        def client(n):
            try:
                c = self.d.connect()
                i = 0
                while not stop.is_set():
                    batch = [comp([n, i + k]) for k in range(20)]
                    c.send("".join(json.dumps(b) + "\n" for b in batch))
                    for k in range(20):
                        r = c.readline()
                        if "error" in r or r["id"] != [n, i + k]:
                            problems.append(r)
                        else:
                            results.append((r["revision"], r["result"]["offer_fen"]))
                    i += 20
                c.close()
            except Exception as e:  # noqa: BLE001
                problems.append(repr(e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        bad = set()
        for step in range(10):
            broken = step % 2 == 1
            set_multiplier(self.bundle, 3 + step, break_it=broken)
            rc, out, err = self.admin("reload", "--who", "test")
            if broken:
                self.assertEqual(rc, 1, out + err)
                self.assertIn("regions/GD/compensation.lua:", err)
                st = self.d.connect(admin=True).call(op="status")["status"]
                self.assertIn("regions/GD/compensation.lua", st["last_failure"])
            else:
                self.assertEqual(rc, 0, out + err)
                rev = out.split()[-1]
                good.add(rev)
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(problems, [])
        self.assertGreater(len(results), 100)
        revisions = {r for r, _ in results}
        self.assertTrue(revisions <= good, revisions - good)
        self.assertGreater(len(revisions), 1)
        # each revision decided with its own multiplier, never a broken one
        offers = {o for _, o in results}
        self.assertTrue(offers <= {2000 * m for m in (3, 5, 7, 9, 11)} | {6000},
                        offers)
        # revisions and activations are recorded
        rc, out, err = self.admin("revisions")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()[1:]
        why = out + self.d.read_log()[-3000:]
        self.assertEqual(sum(1 for l in lines if " NO " in l), 5, why)
        self.assertEqual(sum(1 for l in lines if " yes " in l), 6, why)

    def test_an_activation_the_history_cannot_record_is_refused(self):
        # the activation is recorded before the revision serves: with the
        # database's write lock held elsewhere past the busy timeout (5 s)
        # the reload is refused as the daemon's failure, and the revision
        # in force keeps serving
        import sqlite3
        c = self.d.connect()
        before = c.call(op="ping")["revision"]
        set_multiplier(self.bundle, 5)
        lock = sqlite3.connect(self.d.db, isolation_level=None, timeout=30)
        lock.execute("BEGIN IMMEDIATE")
        try:
            rc, out, err = self.admin("reload", "--who", "test")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        self.assertEqual(rc, 1, out + err)
        self.assertIn("cannot record the activation", err)
        self.assertIn("internal", err)
        self.assertEqual(c.call(op="ping")["revision"], before)
        self.assertEqual(c.call(**comp(1))["result"]["offer_fen"], 6000)
        # once the database takes writes again, the same edit goes live
        rc, out, err = self.admin("reload", "--who", "test")
        self.assertEqual(rc, 0, out + err)
        after = out.split()[-1]
        self.assertNotEqual(after, before)
        self.assertEqual(c.call(**comp(2))["result"]["offer_fen"], 10000)
        rc, out, err = self.admin("revisions")
        self.assertEqual(rc, 0, err)
        rows = [l for l in out.splitlines()[1:] if l.strip()]
        self.assertIn(after, rows[0])
        self.assertIn(" yes ", rows[0])
        c.close()

    def test_diff_and_activate(self):
        c = self.d.connect()
        old = c.call(**comp(1))["revision"]
        set_multiplier(self.bundle, 5)
        rc, out, err = self.admin("reload")
        self.assertEqual(rc, 0, err)
        new = out.split()[-1]
        self.assertEqual(c.call(**comp(2))["result"]["offer_fen"], 10000)
        rc, out, err = self.admin("diff", old, new)
        self.assertEqual(rc, 0, err)
        self.assertIn("--- a/regions/GD/compensation.lua", out)
        self.assertIn("-P.multiplier = 3", out)
        self.assertIn("+P.multiplier = 5", out)
        rc, out, err = self.admin("activate", old, "--who", "rollback")
        self.assertEqual(rc, 0, err)
        r = c.call(**comp(3))
        self.assertEqual(r["revision"], old)
        self.assertEqual(r["result"]["offer_fen"], 6000)
        rc, out, err = self.admin("activate", "sha256:" + "0" * 64)
        self.assertEqual(rc, 1)
        self.assertIn("not_found", err)
        c.close()

    def test_sighup_and_status(self):
        set_multiplier(self.bundle, 4)
        self.d.proc.send_signal(1)  # SIGHUP
        c = self.d.connect()
        deadline = time.time() + 10
        while time.time() < deadline:
            if c.call(**comp(1))["result"]["offer_fen"] == 8000:
                break
            time.sleep(0.05)
        self.assertEqual(c.call(**comp(2))["result"]["offer_fen"], 8000)
        st = self.d.connect(admin=True).call(op="status")["status"]
        self.assertEqual(st["activated_by"], "sighup")
        self.assertEqual(st["in_force"]["GD-SZ"]["compensation"],
                         "regions/GD/compensation.lua")
        self.assertEqual(st["in_force"]["BJ"]["compensation"],
                         "national/compensation.lua")
        c.close()


class Watch(unittest.TestCase):
    def test_watch_reloads_once_per_burst(self):
        tmp = tempfile.mkdtemp(prefix="verdict-watch-")
        bundle = os.path.join(tmp, "policies")
        shutil.copytree(MINI, bundle)
        d = Daemon(bundle, admin=True, tmp=tmp, args=["--watch"])
        try:
            set_multiplier(bundle, 6)  # two files written in a burst
            c = d.connect()
            deadline = time.time() + 10
            while time.time() < deadline:
                if c.call(**comp(1))["result"]["offer_fen"] == 12000:
                    break
                time.sleep(0.1)
            self.assertEqual(c.call(**comp(2))["result"]["offer_fen"], 12000)
            time.sleep(0.5)
            rc, out, err = run_cli("--admin-socket", d.admin_socket, "revisions")
            self.assertEqual(sum(1 for l in out.splitlines() if " watch " in l), 1, out)
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
