"""Operations: --version, file modes and groups, log lines, the
configuration file (docs/operations.md)."""
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
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


if __name__ == "__main__":
    unittest.main()
