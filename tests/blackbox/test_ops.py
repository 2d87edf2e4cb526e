"""Operations: --version, file modes and groups, log lines, the
configuration file (docs/operations.md)."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from harness import (FIXTURES, ROOT, VERDICT, VERDICTD, Daemon, Refused,
                     request, run_cli)

MINI = os.path.join(FIXTURES, "mini")

# Throwaway ids for the permission tests: setpriv takes numbers, so no
# account is created (none of these need a name in /etc/passwd).
DAEMON_UID, DAEMON_GID = 64601, 64601   # the service user and its group
CLIENTS_GID = 64602                     # --socket-group
ADMINS_GID = 64603                      # --admin-group
AUDITOR_UID = 64604                     # a member of DAEMON_GID
STRANGER_UID = 64605                    # a local user in no group of ours


def makefile_version():
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^VERSION\s*:=\s*(\S+)", f.read(), re.M)
    return m.group(1)


class VersionTest(unittest.TestCase):
    LIBS = ["Lua", "libuv", "SQLite", "yajl", "nettle"]

    def check(self, cmd, name, extra=()):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], "%s %s" % (name, makefile_version()))
        names = [l.split(" ", 1)[0] for l in lines[1:]]
        self.assertEqual(names, self.LIBS + list(extra))
        for l in lines[1:]:
            self.assertRegex(l, r"^\S+ \d+(\.\d+)*( \(built with \S+\))?$")
        return lines

    def test_verdictd(self):
        lines = self.check([VERDICTD, "--version"], "verdictd", ["libsystemd"])
        ldd = subprocess.run(["ldd", VERDICTD], capture_output=True,
                             text=True).stdout
        self.assertIn("libsystemd.so", ldd)
        # the run-time version is that of the library it loads
        sqlite = subprocess.run(["pkg-config", "--modversion", "sqlite3"],
                                capture_output=True, text=True).stdout.strip()
        self.assertIn("SQLite " + sqlite, lines)

    def test_verdict(self):
        self.check([VERDICT, "--version"], "verdict")
        rc, out, _ = run_cli("version")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("verdict %s\n" % makefile_version()))

    def test_usage_names_it(self):
        for b in (VERDICTD, VERDICT):
            out = subprocess.run([b, "--help"], capture_output=True,
                                 text=True).stdout
            self.assertIn("--version", out)


def as_user(uid, gid, groups=()):
    """setpriv words that run a command as UID:GID with GROUPS."""
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid,
            "--groups=" + ",".join(str(g) for g in groups) if groups
            else "--clear-groups", "--"]


def run_as(prefix, *args):
    p = subprocess.run(list(prefix) + list(args), capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def mode(path):
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def comp(rid):
    return request("compensation", "GD-SZ",
                   {"charged_fen": 5000, "due_fen": 3000}, rid=rid)


def connects(prefix, path):
    """Whether a process under PREFIX can connect to the Unix socket PATH."""
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n"
            " sys.exit(13)\n")
    rc, _, err = run_as(prefix, sys.executable, "-c", code, path)
    if rc not in (0, 13):
        raise AssertionError(err)
    return rc == 0


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"),
                     "needs root and setpriv to run the daemon and its "
                     "readers as other users (uids %d-%d)"
                     % (DAEMON_UID, STRANGER_UID))
class Permissions(unittest.TestCase):
    """The service user writes, its group (auditors) reads, others nothing;
    the sockets are opened to the groups named and no further."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-perm-")
        os.chmod(cls.tmp, 0o755)
        os.chown(cls.tmp, DAEMON_UID, DAEMON_GID)
        cls.d = Daemon(MINI, tmp=cls.tmp, admin=True,
                       prefix=as_user(DAEMON_UID, DAEMON_GID,
                                      [CLIENTS_GID, ADMINS_GID])
                       + ["sh", "-c", 'umask 077 && exec "$@"', "verdictd"],
                       args=["--socket-group", str(CLIENTS_GID)])
        c = cls.d.connect()
        for i in range(3):
            assert "decision_id" in c.call(**comp("p%d" % i))
        c.close()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        shutil.rmtree(cls.tmp)

    def test_database_wal_and_shm_are_0640_whatever_the_umask(self):
        for suffix in ("", "-wal", "-shm"):
            self.assertEqual(mode(self.d.db + suffix),
                             (0o640, DAEMON_UID, DAEMON_GID), suffix)

    def test_decision_socket_is_0660_with_its_group(self):
        self.assertEqual(mode(self.d.socket),
                         (0o660, DAEMON_UID, CLIENTS_GID))
        self.assertTrue(connects(as_user(STRANGER_UID, CLIENTS_GID),
                                 self.d.socket))
        self.assertFalse(connects(as_user(STRANGER_UID, STRANGER_UID),
                                  self.d.socket))

    def test_admin_socket_is_the_daemon_users_alone(self):
        self.assertEqual(mode(self.d.admin_socket)[0], 0o600)
        self.assertFalse(connects(as_user(STRANGER_UID, DAEMON_GID,
                                          [CLIENTS_GID, ADMINS_GID]),
                                  self.d.admin_socket))

    def test_auditors_read_the_history_without_root(self):
        auditor = as_user(AUDITOR_UID, AUDITOR_UID, [DAEMON_GID])
        rc, out, err = run_as(auditor, VERDICT, "history", "list",
                              "--db", self.d.db)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("compensation"), 3, out)
        rc, out, err = run_as(auditor, VERDICT, "history", "verify",
                              "--db", self.d.db)
        self.assertEqual(rc, 0, out + err)
        # ... and cannot write: the group reads only
        rc, _, err = run_as(auditor, sys.executable, "-c",
                            "import sys; open(sys.argv[1], 'r+b')", self.d.db)
        self.assertNotEqual(rc, 0)
        self.assertIn("PermissionError", err)
        stranger = as_user(STRANGER_UID, STRANGER_UID)
        rc, out, err = run_as(stranger, VERDICT, "history", "list",
                              "--db", self.d.db)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("not readable", err)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"),
                     "needs root and setpriv to run the daemon as a user "
                     "outside a group")
class AdminGroup(unittest.TestCase):
    def test_admin_group_opens_the_admin_socket_to_it(self):
        tmp = tempfile.mkdtemp(prefix="verdict-perm-")
        self.addCleanup(shutil.rmtree, tmp)
        os.chmod(tmp, 0o755)
        os.chown(tmp, DAEMON_UID, DAEMON_GID)
        d = Daemon(MINI, tmp=tmp, admin=True,
                   prefix=as_user(DAEMON_UID, DAEMON_GID, [ADMINS_GID]),
                   args=["--admin-group", str(ADMINS_GID)])
        try:
            self.assertEqual(mode(d.admin_socket),
                             (0o660, DAEMON_UID, ADMINS_GID))
            self.assertEqual(mode(d.socket), (0o660, DAEMON_UID, DAEMON_GID))
            admin = as_user(STRANGER_UID, ADMINS_GID)
            self.assertTrue(connects(admin, d.admin_socket))
            rc, out, err = run_as(admin, VERDICT, "revisions",
                                  "--admin-socket", d.admin_socket)
            self.assertEqual(rc, 0, out + err)
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())

    def test_a_group_the_daemon_is_not_in_is_refused(self):
        tmp = tempfile.mkdtemp(prefix="verdict-perm-")
        self.addCleanup(shutil.rmtree, tmp)
        os.chmod(tmp, 0o755)
        os.chown(tmp, DAEMON_UID, DAEMON_GID)
        sock = os.path.join(tmp, "verdictd.sock")
        p = subprocess.run(as_user(DAEMON_UID, DAEMON_GID) + [
            VERDICTD, "--policies", MINI, "--socket", sock,
            "--db", os.path.join(tmp, "verdict.db"),
            "--socket-group", str(CLIENTS_GID)],
            capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--socket %s: cannot give it group %d" % (sock, CLIENTS_GID),
                      p.stderr)
        self.assertFalse(os.path.exists(sock))


class ReadableDatabase(unittest.TestCase):
    def test_a_database_others_can_read_is_refused_with_the_chmod(self):
        tmp = tempfile.mkdtemp(prefix="verdict-perm-")
        self.addCleanup(shutil.rmtree, tmp)
        d = Daemon(MINI, tmp=tmp)
        self.assertEqual(d.stop(), 0, d.read_log())
        os.chmod(d.db, 0o644)
        r = Refused(MINI, args=["--db", d.db])
        self.assertEqual(r.status, 1, r.log)
        self.assertIn("can be read by every local user", r.log)
        self.assertIn("run: chmod o-rwx '%s'" % d.db, r.log)
        self.assertEqual(r.sockets_left(), [])
        # the command it names mends it
        subprocess.run(["chmod", "o-rwx", d.db], check=True)
        d = Daemon(MINI, tmp=tmp)
        self.assertEqual(d.stop(), 0, d.read_log())

    def test_so_is_a_wal_file_others_can_read(self):
        tmp = tempfile.mkdtemp(prefix="verdict-perm-")
        self.addCleanup(shutil.rmtree, tmp)
        d = Daemon(MINI, tmp=tmp)
        c = d.connect()
        c.call(**comp("w"))
        c.close()
        os.chmod(d.db + "-wal", 0o644)
        d.kill()  # the -wal stays behind
        r = Refused(MINI, args=["--db", d.db])
        self.assertEqual(r.status, 1, r.log)
        self.assertIn("run: chmod o-rwx '%s-wal'" % d.db, r.log)

    def test_unknown_group(self):
        p = subprocess.run([VERDICTD, "--socket-group", "no-such-group-vd"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--socket-group no-such-group-vd: no such group",
                      p.stderr)


TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?[+-]\d\d:\d\d"
TEXT_LINE = re.compile(r"^(%s) (error|warning|notice|info) ([a-z][a-z_]*): "
                       r"(.*)$" % TS)
LEVELS = {"error": 3, "warning": 4, "notice": 5, "info": 6}


def wait_for(d, needle, timeout=30):
    deadline = time.time() + timeout
    while needle not in d.read_log():
        if time.time() > deadline:
            raise AssertionError("no %r in:\n%s" % (needle, d.read_log()))
        time.sleep(0.05)


def mini_copy(tmp):
    bundle = os.path.join(tmp, "policies")
    shutil.copytree(MINI, bundle)
    return bundle


def break_gd(bundle):
    """An edit whose own test fails: a multi-line report."""
    with open(os.path.join(bundle, "regions", "GD", "compensation.lua"),
              "w") as f:
        f.write("local P = parent()\nP.multiplier = 7\nreturn P\n")


class LogFormat(unittest.TestCase):
    """One event per line, always: a refused reload's report included."""

    def run_daemon(self, fmt, env=None):
        tmp = tempfile.mkdtemp(prefix="verdict-log-")
        self.addCleanup(shutil.rmtree, tmp)
        bundle = mini_copy(tmp)
        args = ["--log-format", fmt] if fmt else []
        old = os.environ.copy()
        if env:
            os.environ.update(env)
        try:
            d = Daemon(bundle, tmp=tmp, args=args)
        finally:
            os.environ.clear()
            os.environ.update(old)
        break_gd(bundle)
        d.proc.send_signal(signal.SIGHUP)
        wait_for(d, "reload_refused")
        self.assertEqual(d.stop(), 0, d.read_log())
        return d.read_log()

    def test_json_every_line_an_object_with_ts_level_event(self):
        log = self.run_daemon("json")
        events = []
        for line in log.splitlines():
            ev = json.loads(line)  # raises on a line that is not JSON
            self.assertRegex(ev["ts"], "^%s$" % TS)
            self.assertIn(ev["level"], LEVELS)
            self.assertRegex(ev["event"], r"^[a-z][a-z_]*$")
            self.assertIsInstance(ev["msg"], str)
            self.assertNotIn("\n", ev["msg"])
            events.append(ev)
        names = [e["event"] for e in events]
        for want in ("serving", "reload_refused", "stopping", "stopped"):
            self.assertIn(want, names, log)
        refused = events[names.index("reload_refused")]
        self.assertEqual(refused["level"], "warning")
        self.assertIn("sighup: refused", refused["msg"])
        # the report, expected and actual values, in one field
        self.assertIn("\n", refused["detail"])
        self.assertIn("expected", refused["detail"])
        self.assertEqual(events[names.index("serving")]["level"], "notice")

    def test_text_one_event_per_line_detail_escaped(self):
        for log in (self.run_daemon("text"), self.run_daemon(None)):
            lines = log.splitlines()
            for line in lines:
                self.assertRegex(line, TEXT_LINE)
            refused = [l for l in lines if " reload_refused: " in l]
            self.assertEqual(len(refused), 1, log)
            msg, detail = refused[0].split(" | ", 1)
            self.assertIn("warning reload_refused: sighup: refused", msg)
            self.assertIn("\\n", detail)
            self.assertIn("expected", detail)

    def test_journal_gets_levels_as_prefixes(self):
        # systemd names the stream it gave as stderr in JOURNAL_STREAM
        tmp = tempfile.mkdtemp(prefix="verdict-log-")
        self.addCleanup(shutil.rmtree, tmp)
        log_path = os.path.join(tmp, "verdictd.log")
        with open(log_path, "wb") as log:
            st = os.fstat(log.fileno())
            env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev,
                                                             st.st_ino))
            p = subprocess.run([VERDICTD, "--policies", MINI, "--db",
                                os.path.join(tmp, "none", "verdict.db"),
                                "--socket", os.path.join(tmp, "s.sock")],
                               stderr=log, env=env, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        with open(log_path) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines)
        for line in lines:
            m = re.match(r"^<(\d)>(.*)$", line)
            self.assertIsNotNone(m, line)
            t = TEXT_LINE.match(m.group(2))
            self.assertIsNotNone(t, line)
            self.assertEqual(int(m.group(1)), LEVELS[t.group(3)])
        self.assertTrue(any(" error history_open_failed: " in l
                            for l in lines), lines)
        # a JOURNAL_STREAM left behind by a redirection is not believed
        env["JOURNAL_STREAM"] = "1:1"
        p = subprocess.run([VERDICTD, "--policies", MINI, "--db",
                            os.path.join(tmp, "none", "verdict.db"),
                            "--socket", os.path.join(tmp, "s.sock")],
                           capture_output=True, text=True, env=env,
                           timeout=60)
        self.assertRegex(p.stderr.splitlines()[0], TEXT_LINE)

    def test_start_refused_json(self):
        tmp = tempfile.mkdtemp(prefix="verdict-log-")
        self.addCleanup(shutil.rmtree, tmp)
        bundle = mini_copy(tmp)
        break_gd(bundle)
        r = Refused(bundle, args=["--log-format", "json"])
        self.assertEqual(r.status, 1, r.log)
        events = [json.loads(l) for l in r.log.splitlines()]
        refused = [e for e in events if e["event"] == "start_refused"]
        self.assertEqual(len(refused), 1, r.log)
        self.assertEqual(refused[0]["level"], "error")
        self.assertIn("fails its checks", refused[0]["msg"])
        self.assertIn("expected", refused[0]["detail"])

    def test_bad_format(self):
        p = subprocess.run([VERDICTD, "--log-format", "xml"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--log-format xml: expected text or json", p.stderr)


class ConfigFile(unittest.TestCase):
    """--config FILE: the options by the same names; the command line wins;
    errors name FILE:LINE; SIGHUP applies what can change live."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-conf-")
        self.addCleanup(shutil.rmtree, self.tmp)
        self.conf = os.path.join(self.tmp, "verdictd.conf")

    def write(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def test_file_sets_what_the_command_line_does_not(self):
        # the harness gives --socket and --db: the file's are not used (a
        # socket in a directory that does not exist would fail)
        self.write("# verdictd.conf\n\n"
                   "socket = /nonexistent/verdictd.sock\n"
                   "db = /nonexistent/verdict.db\n"
                   "log-format = json\n"
                   "  workers   =   3  \n"
                   "watch = yes\n")
        d = Daemon(MINI, tmp=self.tmp, workers=1, args=["--config", self.conf])
        self.assertEqual(d.stop(), 0, d.read_log())
        events = [json.loads(l) for l in d.read_log().splitlines()]
        serving = [e for e in events if e["event"] == "serving"]
        # --workers 1 from the command line wins over the file's 3
        self.assertIn("with 1 workers", serving[0]["msg"])
        self.assertIn(d.socket, serving[0]["msg"])

    def test_errors_name_file_and_line(self):
        cases = [
            ("policies = x\nfoo = 1\n", ":2: unknown option 'foo'"),
            ("workers = 0\n", ":1: workers 0: expected a whole number "
                               "from 1 to 256"),
            ("\n\nsocket\n", ":3: expected NAME = VALUE"),
            ("db = a\ndb = b\n", ":2: db is set already, on line 1"),
            ("watch = maybe\n", ":1: watch maybe: expected yes or no"),
            ("log-format = xml\n", ":1: log-format xml: expected text or "
                                    "json"),
            ("socket-group = no-such-group-vd\n",
             ":1: socket-group no-such-group-vd: no such group"),
            ("config = other.conf\n", ":1: unknown option 'config'"),
            ("db =\n", ":1: db: no value"),
        ]
        for text, want in cases:
            self.write(text)
            p = subprocess.run([VERDICTD, "--config", self.conf],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 2, text)
            self.assertIn("verdictd: " + self.conf + want, p.stderr)
        p = subprocess.run([VERDICTD, "--config", self.conf + ".missing"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("configuration file %s.missing: No such file"
                      % self.conf, p.stderr)

    def test_command_line_errors_come_first(self):
        # a bad command-line value is reported even with a good file
        self.write("workers = 2\n")
        p = subprocess.run([VERDICTD, "--config", self.conf, "--workers",
                            "999"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("--workers 999: expected a whole number from 1 to 256",
                      p.stderr)

    def test_sighup_applies_live_options_and_names_the_rest(self):
        bundle = mini_copy(self.tmp)
        self.write("decide-timeout = 4000\nmax-line = 65536\n")
        d = Daemon(bundle, tmp=self.tmp, args=["--config", self.conf,
                                               "--mem-cap", "20000000"])
        self.write("decide-timeout = 3000\nmax-line = 4096\n"
                   "instr-budget = 5000000\nvalidate-timeout = 20\n"
                   "mem-cap = 30000000\n")
        def budget():
            c = d.connect()
            try:
                return c.call(op="status")["status"]["budget"]["instructions"]
            finally:
                c.close()
        self.assertEqual(budget(), 10000000)  # the default
        d.proc.send_signal(signal.SIGHUP)
        wait_for(d, "reload_activated")
        self.assertEqual(budget(), 5000000)
        # a file with an error changes nothing, and says where
        self.write("validate-timeout = 10\ninstr-budget = lots\n")
        d.proc.send_signal(signal.SIGHUP)
        wait_for(d, "config_refused")
        deadline = time.time() + 30
        while d.read_log().count("reload_activated") < 2:
            self.assertLess(time.time(), deadline, d.read_log())
            time.sleep(0.05)
        self.assertEqual(budget(), 5000000)
        self.assertEqual(d.stop(), 0, d.read_log())
        log = d.read_log()
        self.assertIn("config_changed: %s: instr-budget" % self.conf, log)
        self.assertIn("config_needs_restart: %s: decide-timeout changed"
                      % self.conf, log)
        self.assertIn("config_changed: %s: validate-timeout is now 20"
                      % self.conf, log)
        self.assertIn("config_needs_restart: %s: max-line changed" % self.conf,
                      log)
        # the command line's --mem-cap still wins
        self.assertNotIn("mem-cap is now", log)
        self.assertIn("config_refused: %s:2: instr-budget lots" % self.conf,
                      log)
        self.assertNotIn("validate-timeout is now 10", log)
        # the reload after it went ahead
        self.assertEqual(log.count("reload_activated"), 2, log)


class Notify(unittest.TestCase):
    """Type=notify: what systemd hears on NOTIFY_SOCKET (sd_notify(3))."""

    def test_ready_reloading_stopping(self):
        tmp = tempfile.mkdtemp(prefix="verdict-notify-")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(30)
        bundle = mini_copy(tmp)
        old = os.environ.copy()
        os.environ["NOTIFY_SOCKET"] = path
        try:
            d = Daemon(bundle, tmp=tmp)
        finally:
            os.environ.clear()
            os.environ.update(old)

        def receive():
            msg = sock.recv(4096).decode()
            return dict(l.split("=", 1) for l in msg.splitlines())

        ready = receive()
        self.assertEqual(ready["READY"], "1")
        # by then it answers, and the history is open
        c = d.connect()
        self.assertIn("result", c.call(**comp("n1")))
        c.close()
        rc, out, _ = run_cli("history", "list", "--db", d.db)
        self.assertEqual(rc, 0)
        rev = re.search(r"sha256:[0-9a-f]{64}", d.read_log()).group(0)
        self.assertEqual(ready["STATUS"], "serving %s (started)" % rev)

        d.proc.send_signal(signal.SIGHUP)
        self.assertEqual(receive()["RELOADING"], "1")
        again = receive()
        self.assertEqual(again["READY"], "1")
        self.assertEqual(again["STATUS"], "serving %s (activated)" % rev)

        break_gd(bundle)
        d.proc.send_signal(signal.SIGHUP)
        self.assertEqual(receive()["RELOADING"], "1")
        self.assertEqual(receive()["STATUS"], "serving %s (refused)" % rev)

        d.proc.send_signal(signal.SIGTERM)
        stopping = receive()
        self.assertEqual(stopping["STOPPING"], "1")
        self.assertEqual(stopping["STATUS"], "stopping: SIGTERM")
        # it is stopping on its own: wait, rather than d.stop(), whose
        # second SIGTERM could land after the handler is gone
        rc = d.proc.wait(60)
        self.assertEqual(rc, 0, d.read_log())
        d.log.close()


if __name__ == "__main__":
    unittest.main()
