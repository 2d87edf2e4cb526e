"""What no client and no bundle can do to the daemon: wedge the reload
pipeline or shutdown with a validation that never ends, fill the disk with
junk lines, or fill the memory by pipelining requests and never reading
the answers (issue 11, causes 4 and 9).

Every loop here is bounded in count and in time; everything is loopback.
"""
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
import unittest

from harness import (FIXTURES, SANITIZED, Daemon, Refused, memory_checked,
                     request, vm_rss_kib)

MINI = os.path.join(FIXTURES, "mini")
HOSTILE_LOAD = os.path.join(FIXTURES, "hostile-load")
SLOW = os.path.join(FIXTURES, "slow-validation")
LIMIT_S = 2  # --validate-timeout in these tests
# slow-validation's tests spin for billions of instructions: a budget that
# lets them run for far longer than LIMIT_S (and end on their own, later)
BIG_BUDGET = "20000000000"


def comp(rid):
    return request("compensation", "GD-SZ", {"charged_fen": 5000, "due_fen": 3000},
                   rid=rid)


def replace_bundle(dst, src):
    shutil.rmtree(dst)
    shutil.copytree(src, dst)




class Reload(unittest.TestCase):
    """Cause 4: a validation that does not come back in time is refused as
    timed out, and neither the next reload nor SIGTERM waits for it."""

    def start(self, *args):
        self.tmp = tempfile.mkdtemp(prefix="verdict-limits-")
        self.bundle = os.path.join(self.tmp, "policies")
        shutil.copytree(MINI, self.bundle)
        self.d = Daemon(self.bundle, admin=True, tmp=self.tmp,
                        args=("--validate-timeout", str(LIMIT_S)) + args)
        self.admin = self.d.connect(admin=True)

    d = None

    def tearDown(self):
        if self.d:
            self.admin.close()
        if self.d and self.d.proc.poll() is None:
            self.d.kill()
        if self.d:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def reload(self, rid):
        t0 = time.time()
        r = self.admin.call(op="reload", id=rid)
        return r, time.time() - t0

    def stop_promptly(self):
        t0 = time.time()
        rc = self.d.stop(timeout=10)
        took = time.time() - t0
        self.assertEqual(rc, 0, self.d.read_log())
        self.assertLess(took, 3.0, "SIGTERM took %.1f s" % took)

    def test_slow_validation_times_out_and_the_next_reload_succeeds(self):
        self.start("--instr-budget", BIG_BUDGET)
        c = self.d.connect()
        before = c.call(**comp(1))["revision"]
        replace_bundle(self.bundle, SLOW)
        r, took = self.reload(1)
        self.assertEqual(r["error"]["code"], "policy_timeout", r)
        self.assertIn("timed out", r["error"]["message"])
        self.assertIn("--validate-timeout", r["error"]["message"])
        self.assertGreaterEqual(took, LIMIT_S - 0.1)
        self.assertLess(took, LIMIT_S + 3)
        # decisions kept being served by the revision before
        self.assertEqual(c.call(**comp(2))["revision"], before)
        st = self.admin.call(op="status", id="s")["status"]
        self.assertIn("timed out", st["last_failure"])
        # the next reload is not held up by the thread left behind
        replace_bundle(self.bundle, MINI)
        with open(os.path.join(self.bundle, "regions", "GD", "compensation.lua"),
                  "a") as f:
            f.write("-- edited\n")
        r, took = self.reload(2)
        self.assertTrue(r.get("ok"), r)
        self.assertLess(took, LIMIT_S + 3)
        self.assertNotEqual(c.call(**comp(3))["revision"], before)
        c.close()
        self.stop_promptly()
        self.assertIn("refused", self.d.read_log())

    def test_hostile_load_is_refused_and_sigterm_does_not_wait(self):
        self.start()
        c = self.d.connect()
        before = c.call(**comp(1))["revision"]
        replace_bundle(self.bundle, HOSTILE_LOAD)
        r, took = self.reload(1)
        # timed out, or refused at once where the sandbox bounds string.rep
        self.assertIn(r["error"]["code"], ("policy_timeout", "policy_error"), r)
        self.assertLess(took, LIMIT_S + 3)
        self.assertEqual(c.call(**comp(2))["revision"], before)
        replace_bundle(self.bundle, MINI)
        r, took = self.reload(2)
        self.assertTrue(r.get("ok"), r)
        # once more, and SIGTERM while it is being validated
        replace_bundle(self.bundle, HOSTILE_LOAD)
        self.admin.send_request(op="reload", id=3)
        time.sleep(0.3)
        c.close()
        self.stop_promptly()

    def test_validations_left_behind_are_bounded(self):
        self.start("--instr-budget", BIG_BUDGET)
        replace_bundle(self.bundle, SLOW)
        for i in range(2):
            r, _ = self.reload(i)
            self.assertEqual(r["error"]["code"], "policy_timeout", r)
        # two threads still spin: the third reload is refused unread
        r, took = self.reload(3)
        self.assertEqual(r["error"]["code"], "policy_timeout", r)
        self.assertIn("restart verdictd", r["error"]["message"])
        self.assertLess(took, 1.0)
        self.stop_promptly()

    def test_startup_validation_has_the_same_limit(self):
        t0 = time.time()
        ref = Refused(SLOW, args=("--validate-timeout", str(LIMIT_S),
                                  "--instr-budget", BIG_BUDGET), timeout=20)
        took = time.time() - t0
        self.assertEqual(ref.status, 1, ref.log)
        self.assertIn("timed out", ref.log)
        self.assertIn("--validate-timeout", ref.log)
        self.assertLess(took, LIMIT_S + 4)
        self.assertEqual(ref.sockets_left(), [])
        shutil.rmtree(ref.tmp, ignore_errors=True)


def history_bytes(d):
    return sum(os.path.getsize(d.db + ext) for ext in ("", "-wal")
               if os.path.exists(d.db + ext))


class JunkLines(unittest.TestCase):
    """Cause 9a: a line that is not a request costs the history at most
    VD_BAD_REQUEST_RECORD_BYTES (4 KiB) of request text, however long."""

    LINES = 24
    KEEP = 4096

    def test_junk_lines_are_recorded_as_a_bounded_prefix(self):
        d = Daemon(MINI)
        try:
            c = d.connect()
            c.call(**comp(0))
            before = history_bytes(d)
            junk = ("\u00e9" * 300 + "x" * ((1 << 20) - 1000)).encode()
            for i in range(self.LINES):
                c.send(junk + b"\n")
                r = c.readline()
                self.assertEqual(r["error"]["code"], "bad_request", r)
            # valid JSON that is not a request is cut too
            big = ('{"id":1,"kind":"compensation","junk":"%s"}'
                   % ("y" * 100000)).encode()
            c.send(big + b"\n")
            self.assertEqual(c.readline()["error"]["code"], "bad_request")
            self.assertIn("result", c.call(**comp(1)))
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
        grown = history_bytes(d) - before  # checkpointed into one file
        db = sqlite3.connect(d.db)
        rows = db.execute("SELECT length(CAST(request AS BLOB)) FROM decisions "
                          "WHERE error_code = 'bad_request'").fetchall()
        db.close()
        self.assertEqual(len(rows), self.LINES + 1)
        self.assertTrue(all(n <= self.KEEP for (n,) in rows), rows)
        self.assertTrue(all(n > self.KEEP - 4 for (n,) in rows), rows)
        # 25 MiB of junk; pages and indexes besides: under 16 KiB a line
        self.assertLess(grown, (self.LINES + 1) * 16 * 1024, grown)
        shutil.rmtree(d.tmp, ignore_errors=True)


class Pipelining(unittest.TestCase):
    """Cause 9b and 9c: clients that pipeline and never read hold at most
    --max-pending each and --max-pending-total together (pending responses,
    records waiting for their commit, and read buffers all counted); the
    memory comes back once they leave, and a client that reads its answers
    keeps getting them meanwhile."""

    CLIENTS = 20
    BUDGET = 16 << 20
    FLOOD_S = 4

    def _flooded(self, d, t0):
        """FLOOD_S seconds have passed; a sanitizer build answers so slowly
        that its pending answers may take longer to reach the budget, so
        there the flood goes on (up to two minutes) until the log says so."""
        if time.time() - t0 < self.FLOOD_S:
            return False
        return (not SANITIZED or time.time() - t0 > 120
                or "over --max-pending-total" in d.read_log())

    def test_non_reading_clients_are_bounded_and_memory_comes_back(self):
        mib = 1 << 10  # VmRSS is in KiB
        d = Daemon(MINI, args=("--max-pending-total", str(self.BUDGET),
                               "--max-pending", str(2 << 20)))
        flood = []
        try:
            good = d.connect()
            line = (json.dumps(comp(1)) + "\n").encode()
            for _ in range(20):  # warm: caches, Lua heaps, the history
                good.send(line * 500)
                for _ in range(500):
                    self.assertIn("result", good.readline())
            baseline = vm_rss_kib(d.proc.pid)
            for _ in range(self.CLIENTS):
                s = socket.socket(socket.AF_UNIX)
                s.connect(d.socket)
                s.setblocking(False)
                flood.append(s)
            batch = line * 200
            peak, slowest, sent = 0, 0.0, 0
            t0 = time.time()
            while not self._flooded(d, t0):
                _, writable, _ = select.select([], flood, [], 0.1)
                for s in writable:
                    try:
                        sent += s.send(batch)
                    except BlockingIOError:
                        pass
                peak = max(peak, vm_rss_kib(d.proc.pid))
                t1 = time.time()
                self.assertIn("result", good.call(**comp(2)))
                slowest = max(slowest, time.time() - t1)
            during = vm_rss_kib(d.proc.pid)
            for s in flood:
                s.close()
            flood = []
            deadline, after = time.time() + 10, None
            while time.time() < deadline:
                after = vm_rss_kib(d.proc.pid)
                if after <= baseline + 8 * mib:
                    break
                time.sleep(0.2)
            self.assertIn("result", good.call(**comp(3)))
            good.close()
        finally:
            for s in flood:
                s.close()
            rc = d.stop()
        log = d.read_log()
        self.assertEqual(rc, 0, log)
        report = ("baseline %d KiB, peak %d, during %d, after %d; sent %d MiB; "
                  "slowest answer %.3f s" % (baseline, peak, during, after,
                                             sent >> 20, slowest))
        # they sent more than the budget's worth of answers and records...
        self.assertGreater(sent, 1 << 20, report)
        self.assertIn("over --max-pending-total", log)
        # ...and the daemon held about the budget, with malloc's overhead
        if memory_checked():
            self.assertLess(peak, baseline + 2 * self.BUDGET // 1024 + 8 * mib,
                            report)
        if memory_checked():
            self.assertLessEqual(after, baseline + 8 * mib, report)
        # the others are answered promptly; a sanitizer build answers each
        # several times slower, so its bound is too
        self.assertLess(slowest, 20.0 if SANITIZED else 2.0, report)
        shutil.rmtree(d.tmp, ignore_errors=True)


class DecideOverrun(unittest.TestCase):
    """Cause 1's last resort: a decision still running after
    --decide-timeout has its worker given up on and replaced.  Here the
    decision spins in Lua under an instruction budget far too large to stop
    it, which stands for one stuck in C: the daemon cannot tell them apart
    and does the same for both."""

    def spin(self, d):
        c = d.connect()
        c.send_request(**request("compensation", "GD", {
            "charged_fen": 5000, "due_fen": 3000, "spin": 4000000000},
            rid="spin"))
        return c

    def test_overrun_replaces_the_worker_and_closes_its_connections(self):
        d = Daemon(SLOW, unchecked=True, workers=2,
                   args=("--instr-budget", BIG_BUDGET,
                         "--decide-timeout", "1000"))
        try:
            t0 = time.time()
            stuck = self.spin(d)
            r = stuck.readline()  # the error line, then the close
            took = time.time() - t0
            self.assertEqual(r["error"]["code"], "internal", r)
            self.assertIn("--decide-timeout", r["error"]["message"])
            self.assertTrue(stuck.closed_by_peer())
            self.assertLess(took, 1.0 + 2.0)
            stuck.close()
            # every new connection is served, by the replacement or the other
            for i in range(4):
                c = d.connect()
                self.assertIn("result", c.call(**comp(i)))
                c.close()
            c = d.connect()
            st = c.call(op="status", id="s")["status"]
            c.close()
            self.assertEqual(st["budget"]["overruns"], 1)
            t0 = time.time()
            rc = d.stop(timeout=15)
            self.assertEqual(rc, 0, d.read_log())
            self.assertLess(time.time() - t0, 3.0)
        finally:
            d.kill()
        log = d.read_log()
        self.assertIn("past --decide-timeout", log)
        self.assertIn("replaces worker", log)
        shutil.rmtree(d.tmp, ignore_errors=True)

    def test_too_many_stuck_workers_stop_the_daemon(self):
        d = Daemon(SLOW, unchecked=True, workers=1,
                   args=("--instr-budget", BIG_BUDGET,
                         "--decide-timeout", "500"))
        try:
            for _ in range(2):  # replaced twice
                c = self.spin(d)
                self.assertEqual(c.readline()["error"]["code"], "internal")
                c.close()
            c = self.spin(d)  # the third: no more replacements
            self.assertEqual(c.readline()["error"]["code"], "internal")
            c.close()
            rc = d.proc.wait(timeout=10)
            self.assertEqual(rc, 1, d.read_log())
        finally:
            d.kill()
        self.assertIn("too many workers stuck", d.read_log())
        shutil.rmtree(d.tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
