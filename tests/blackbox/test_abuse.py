"""Abusive clients (issue 11, "in the repository"): idle connections by the
thousand, a daemon out of descriptors, slowloris, rapid connect and close,
and lines at the edges of --max-line.  Pipelining without reading is
test_limits.py's Pipelining; one vanishing and one stalled client are
test_daemon.py's.

Each abuse runs with a well-behaved client beside it that must keep getting
correct answers within HANG_S (a hang guard, not a speed target), and the
daemon's memory and descriptors are checked to come back afterwards.  Every
loop is bounded in count and in time; everything is loopback.
"""
import json
import os
import resource
import socket
import time
import unittest

from harness import FIXTURES, Daemon, request

MINI = os.path.join(FIXTURES, "mini")
HANG_S = 5.0
MIB = 1 << 10  # VmRSS is in KiB


def comp(rid, charged=5000):
    return request("compensation", "GD-SZ",
                   {"charged_fen": charged, "due_fen": 3000}, rid=rid)


def comp_line(rid, charged=5000):
    return (json.dumps(comp(rid, charged)) + "\n").encode()


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_s(pid):
    """User plus system CPU seconds the process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise unittest.SkipTest("RLIMIT_NOFILE hard limit %d < %d"
                                    % (hard, want))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def nofile_of(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files limit for %d" % pid)


class Abuse(unittest.TestCase):
    """One daemon per test, stopped cleanly (exit 0) at the end."""

    args = ()
    tcp = False

    def setUp(self):
        self.d = Daemon(MINI, tcp=self.tcp, args=self.args)
        self.held = []
        self.good = self.d.connect()
        for i in range(20):  # warm: Lua heaps, caches, the history
            self.served(i)

    def tearDown(self):
        for s in self.held:
            s.close()
        self.good.close()
        rc = self.d.stop()
        self.assertEqual(rc, 0, self.d.read_log())

    def served(self, rid, charged=5000):
        """The good client's request is answered, correctly, within HANG_S."""
        t0 = time.time()
        r = self.good.call(**comp(rid, charged))
        took = time.time() - t0
        self.assertEqual(r["id"], rid, r)
        self.assertEqual(r["result"]["offer_fen"], 3 * (charged - 3000), r)
        self.assertLess(took, HANG_S, "the good client waited %.1f s" % took)
        return took

    def connections(self):
        return self.good.call(op="status")["status"]["connections"]

    def wait_connections(self, n, timeout=10):
        """Until status counts n connections (the good one included)."""
        deadline, seen = time.time() + timeout, None
        while time.time() < deadline:
            seen = self.connections()
            if seen == n:
                return
            time.sleep(0.05)
        self.fail("status counts %s connections, not %d" % (seen, n))

    def rss(self):
        return vm_rss_kib(self.d.proc.pid)

    def fds(self):
        return open_fds(self.d.proc.pid)

    def close_held(self):
        for s in self.held:
            s.close()
        self.held = []

    def rss_back(self, baseline, slack_kib, timeout=10):
        deadline, after = time.time() + timeout, None
        while time.time() < deadline:
            after = self.rss()
            if after <= baseline + slack_kib:
                break
            time.sleep(0.1)
        return after


class IdleConnections(Abuse):
    """1,000 idle connections on the Unix socket and 200 over TCP are held,
    counted and closed cleanly; the good client is served meanwhile."""

    tcp = True
    UNIX = 1000
    TCP = 200

    def hold(self, n, tcp):
        for _ in range(n):
            if tcp:
                s = socket.create_connection(("127.0.0.1", self.d.port),
                                             timeout=20)
            else:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(20)
                s.connect(self.d.socket)
            self.held.append(s)

    def test_idle_connections(self):
        raise_nofile(self.UNIX + self.TCP + 256)
        pid = self.d.proc.pid
        # the daemon inherits our limit: it must have room for them all
        self.assertGreater(nofile_of(pid), self.UNIX + self.TCP + 64)
        base_rss, base_fds = self.rss(), self.fds()
        self.hold(self.UNIX, tcp=False)
        self.wait_connections(1 + self.UNIX)
        self.served("unix-held")
        unix_rss = self.rss()
        self.hold(self.TCP, tcp=True)
        self.wait_connections(1 + self.UNIX + self.TCP)
        self.served("all-held")
        held_rss, held_fds = self.rss(), self.fds()
        self.assertEqual(held_fds - base_fds, self.UNIX + self.TCP)
        per_conn = (held_rss - base_rss) * 1024 / (self.UNIX + self.TCP)
        print("\n  idle connections: RSS %d KiB -> %d (1,000 Unix) -> %d "
              "(+200 TCP): %.0f bytes each; fds %d -> %d"
              % (base_rss, unix_rss, held_rss, per_conn, base_fds, held_fds),
              end=" ", flush=True)
        # a connection costs its handle and an empty framer: a few KiB
        self.assertLess(per_conn, 16 * 1024)
        # held, not merely accepted: every 50th still answers
        for i, s in enumerate(self.held[::50]):
            s.sendall(b'{"id":%d,"op":"ping"}\n' % i)
            got = s.recv(4096)
            self.assertIn(b'"pong":true', got)
        self.close_held()
        self.wait_connections(1)
        self.served("after")
        deadline = time.time() + 5
        while self.fds() != base_fds and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.fds(), base_fds)
        after = self.rss_back(base_rss, 4 * MIB)
        self.assertLessEqual(after, base_rss + 4 * MIB,
                             "RSS %d KiB before, %d after" % (base_rss, after))
        self.assertNotIn("accept:", self.d.read_log())


class OutOfDescriptors(Abuse):
    """A daemon out of descriptors pauses accepting (it does not spin or
    crash), and serves again once some connections close."""

    SPARE = 32  # descriptors the daemon has left for connections
    EXTRA = 40  # connections beyond what it can accept

    def test_accept_pauses_when_out_of_descriptors(self):
        pid = self.d.proc.pid
        limit = self.fds() + self.SPARE
        # as `ulimit -n` would have set it at start, but after the start-up
        # (which opens and closes the bundle's files, luacheck, the history)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        self.assertEqual(nofile_of(pid), limit)
        for _ in range(self.SPARE + self.EXTRA):  # the rest wait in the backlog
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            s.connect(self.d.socket)
            self.held.append(s)
        deadline = time.time() + 10
        while "Too many open files" not in self.d.read_log():
            self.assertLess(time.time(), deadline, self.d.read_log())
            time.sleep(0.05)
        # out of descriptors: no spinning on accept, and the connection
        # already open is served
        cpu0, t0 = cpu_s(pid), time.time()
        time.sleep(1.0)
        busy = (cpu_s(pid) - cpu0) / (time.time() - t0)
        self.served("while-full")
        self.assertLess(busy, 0.3, "verdictd used %.0f%% CPU while out of "
                        "descriptors" % (100 * busy))
        self.assertLessEqual(self.fds(), limit)
        self.assertEqual(self.d.proc.poll(), None)
        # some close: the backlog is accepted, and a new client is served
        for s in self.held[:self.EXTRA + 4]:
            s.close()
        self.held = self.held[self.EXTRA + 4:]
        c = self.d.connect()
        t0 = time.time()
        r = c.call(**comp("new"))
        self.assertEqual(r["result"]["offer_fen"], 6000)
        self.assertLess(time.time() - t0, HANG_S)
        c.close()
        for i, s in enumerate(self.held):  # the rest were all accepted
            s.sendall(b'{"id":%d,"op":"ping"}\n' % i)
            self.assertIn(b'"pong":true', s.recv(4096))
        pauses = self.d.read_log().count("pausing accepts")
        print("\n  out of descriptors: limit %d, %.1f%% CPU while full, "
              "%d pauses logged" % (limit, 100 * busy, pauses),
              end=" ", flush=True)
        self.close_held()
        self.wait_connections(1)
