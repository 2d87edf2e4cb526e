"""Black-box test harness: start the real verdictd and talk to it.

Everything here goes through the same doors a back-office system uses:
the daemon binary, its Unix and TCP sockets, and the verdict CLI.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("VERDICT_BUILD", "build"))
VERDICTD = os.path.join(BUILD, "verdictd")
VERDICT = os.path.join(BUILD, "verdict")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
POLICIES = os.path.join(ROOT, "policies")
AT = "2026-11-23T10:00:00+08:00"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


SANITIZED = bool(os.environ.get("VERDICT_TSAN") or os.environ.get("VERDICT_ASAN"))

# how long a test waits for an answer: a sanitizer build on a loaded machine
# can take many seconds over one hostile decision that a plain build stops
# in milliseconds
ANSWER_TIMEOUT = 120 if SANITIZED else 20


def _command(policies, socket_path, db, log_mode, workers, unchecked,
             args=()):
    cmd = [VERDICTD, "--policies", policies, "--socket", socket_path,
           "--db", db, "--log-mode", log_mode, "--workers", str(workers)]
    if unchecked:
        cmd.append("--unchecked")
    if SANITIZED and "--config" not in args:
        # A sanitizer build validates the bundle many times slower, and a
        # loaded machine slower still: the 30 s default would refuse a sound
        # bundle.  A test's own --validate-timeout comes later and wins; a
        # test of the configuration file gets none (the command line would
        # win over the file's).
        cmd += ["--validate-timeout", "600"]
    return cmd


def _answers(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A verdictd on a temporary socket and database.

    unchecked: start without validating the bundle (--unchecked), for the
    fixtures that are deliberately not valid bundles (hostile code, no
    decision tables); a reload is still validated.  prefix: words before
    the command (setpriv ... to start it as another user)."""

    def __init__(self, policies=POLICIES, args=(), workers=2,
                 log_mode=os.environ.get("VERDICT_LOG_MODE", "durable"),
                 tcp=False, admin=False, tmp=None, unchecked=False, prefix=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="verdict-bb-")
        self.socket = os.path.join(self.tmp, "verdictd.sock")
        self.db = os.path.join(self.tmp, "verdict.db")
        self.admin_socket = os.path.join(self.tmp, "admin.sock") if admin else None
        self.port = free_port() if tcp else None
        cmd = _command(policies, self.socket, self.db, log_mode, workers,
                       unchecked, args)
        if tcp:
            cmd += ["--listen", "127.0.0.1:%d" % self.port]
        if admin:
            cmd += ["--admin-socket", self.admin_socket]
        cmd = list(prefix) + cmd + list(args)
        self.log_path = os.path.join(self.tmp, "verdictd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        # ready once every socket it was asked for takes a connection (the
        # admin socket is bound after the decision sockets); start-up
        # validates the bundle first, which a sanitizer build does slowly
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("verdictd exited: " + self.read_log())
            if os.path.exists(self.socket) and (not tcp or self._tcp_ready()):
                try:
                    self.connect().close()
                    if self.admin_socket:
                        self.connect(admin=True).close()
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("verdictd did not start: " + self.read_log())

    def _tcp_ready(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def read_log(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def connect(self, tcp=False, admin=False):
        if tcp:
            s = socket.create_connection(("127.0.0.1", self.port),
                                         timeout=ANSWER_TIMEOUT)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(ANSWER_TIMEOUT)
            s.connect(self.admin_socket if admin else self.socket)
        return Conn(s)

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()

    def cli(self, *args, stdin=None):
        return run_cli("--socket", self.socket, *args, stdin=stdin)


class Refused:
    """A verdictd expected to refuse to start, run until it exits.

    status is its exit status, or None if it served instead (its decision
    or admin socket answered; it is then killed); log is what it printed.
    The admin socket is always asked for, so a test can check that neither
    socket is left behind."""

    def __init__(self, policies, args=(), unchecked=False, timeout=None):
        self.tmp = tempfile.mkdtemp(prefix="verdict-bb-")
        self.socket = os.path.join(self.tmp, "verdictd.sock")
        self.admin_socket = os.path.join(self.tmp, "admin.sock")
        self.db = os.path.join(self.tmp, "verdict.db")
        cmd = _command(policies, self.socket, self.db, "durable", 2, unchecked)
        cmd += ["--admin-socket", self.admin_socket] + list(args)
        log_path = os.path.join(self.tmp, "verdictd.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            # start-up validates first: minutes under ThreadSanitizer
            if timeout is None:
                timeout = 600 if os.environ.get("VERDICT_TSAN") else 60
            deadline = time.time() + timeout
            self.status = None
            while time.time() < deadline:
                if proc.poll() is not None:
                    self.status = proc.returncode
                    break
                if _answers(self.socket) or _answers(self.admin_socket):
                    break  # it serves: not refused
                time.sleep(0.02)
            if self.status is None:
                proc.kill()
                proc.wait()
        with open(log_path, "rb") as f:
            self.log = f.read().decode("utf-8", "replace")

    def sockets_left(self):
        return [p for p in (self.socket, self.admin_socket) if os.path.exists(p)]


def run_cli(*args, stdin=None):
    cmd = [VERDICT] + list(args)
    # options after the command, as a user types them
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Conn:
    """A raw protocol connection: send lines, read lines."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_request(self, **req):
        self.send(json.dumps(req) + "\n")

    def readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf[:200])
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, **req):
        self.send_request(**req)
        return self.readline()

    def closed_by_peer(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except OSError:
            return True

    def close(self):
        self.sock.close()


def request(kind, region, inp, at=AT, rid=None):
    r = {"id": rid if rid is not None else kind, "kind": kind, "region": region,
         "input": inp}
    if at is not None:
        r["at"] = at
    return r


def overlay(name):
    """A copy of policies/ with tests/fixtures/NAME laid over it: (tmp, bundle).
    The caller removes tmp."""
    tmp = tempfile.mkdtemp(prefix="verdict-overlay-")
    bundle = os.path.join(tmp, "policies")
    shutil.copytree(POLICIES, bundle)
    shutil.copytree(os.path.join(FIXTURES, name), bundle, dirs_exist_ok=True)
    return tmp, bundle


class OverlayCase(unittest.TestCase):
    """Tests that run `verdict check` on policies/ with a fixture laid over it."""

    def check(self, name):
        tmp, bundle = overlay(name)
        self.addCleanup(shutil.rmtree, tmp)
        rc, out, err = run_cli("check", bundle)
        return rc, out + err

    def refused(self, name, *fragments):
        rc, out = self.check(name)
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("ready to go live", out)
        for f in fragments:
            self.assertIn(f, out)
        return out


# Under ThreadSanitizer (`make tsan`) the daemon keeps shadow memory for all
# it touches, and under AddressSanitizer (`make asan`) freed blocks wait in
# its quarantine, so its resident size says nothing about its own memory:
# the tests still run every request and check every answer there, and
# leave the resident-size bounds to the plain build (memory_checked()).
TSAN = bool(os.environ.get("VERDICT_TSAN"))
ASAN = bool(os.environ.get("VERDICT_ASAN"))


def memory_checked():
    return not (TSAN or ASAN)


def vm_rss_kib(pid):
    """The resident size of process pid, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)
