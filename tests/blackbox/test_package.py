"""The Debian package (`make deb`, debian/): what it installs and where,
its maintainer scripts and conffiles, lintian, the service's sandbox
(systemd-analyze security) and the packaged daemon on its own
configuration file.

It builds the package once (about a minute: a copy of the tree, compiled
with Debian's flags) and looks at it unpacked into a throwaway root with
dpkg-deb -x: installing it for real would need a root of its own that
dpkg, adduser and systemd run in, which this machine does not offer
without network or containers (piuparts is not installed here for the
same reason)."""
import glob
import os
import re
import shutil
import stat
import subprocess
import socket
import tempfile
import time
import unittest

from harness import ROOT, SANITIZED, Conn, request

TOOLS = ("dpkg-buildpackage", "dh", "lintian", "fakeroot", "systemd-analyze")


def read(path):
    with open(path) as f:
        return f.read()


def makefile_version():
    with open(os.path.join(ROOT, "Makefile")) as f:
        return re.search(r"^VERSION\s*:=\s*(\S+)", f.read(), re.M).group(1)


class Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [t for t in TOOLS if not shutil.which(t)]
        if missing:
            raise AssertionError("make deps installs %s" % " ".join(missing))
        p = subprocess.run(["make", "-s", "deb"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise AssertionError("make deb failed:\n" + p.stdout[-4000:] +
                                 p.stderr[-4000:])
        cls.build_log = p.stdout + p.stderr
        debs = glob.glob(os.path.join(ROOT, "build-deb",
                                      "verdict_%s_*.deb" % makefile_version()))
        assert len(debs) == 1, debs
        cls.deb = debs[0]
        cls.root = tempfile.mkdtemp(prefix="verdict-pkg-")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True)
        cls.control = os.path.join(cls.root, "DEBIAN")
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def test_version_is_the_makefiles(self):
        with open(os.path.join(ROOT, "debian", "changelog")) as f:
            first = f.readline()
        self.assertEqual(first.split()[1], "(%s)" % makefile_version())
        out = subprocess.run(["dpkg-deb", "-f", self.deb, "Version"],
                             capture_output=True, text=True).stdout.strip()
        self.assertEqual(out, makefile_version())
        out = subprocess.run([self.path("/usr/sbin/verdictd"), "--version"],
                             capture_output=True, text=True).stdout
        self.assertTrue(out.startswith("verdictd %s\n" % makefile_version()))

    def test_file_list_and_modes(self):
        want = {
            "/usr/sbin/verdictd": 0o755,
            "/usr/bin/verdict": 0o755,
            "/usr/share/man/man1/verdict.1.gz": 0o644,
            "/usr/share/man/man5/verdict-policies.5.gz": 0o644,
            "/usr/share/man/man8/verdictd.8.gz": 0o644,
            "/etc/verdict/verdictd.conf": 0o644,
            "/lib/systemd/system/verdictd.service": 0o644,
            "/usr/share/doc/verdict/copyright": 0o644,
        }
        for p, m in want.items():
            st = os.lstat(self.path(p))
            self.assertTrue(stat.S_ISREG(st.st_mode), p)
            self.assertEqual(stat.S_IMODE(st.st_mode), m, p)
        # every file is root's (the package's files; the verdict user owns
        # only what the service creates)
        listing = subprocess.run(["dpkg-deb", "-c", self.deb],
                                 capture_output=True, text=True).stdout
        for line in listing.splitlines():
            self.assertEqual(line.split()[1], "root/root", line)
        # the bundled policies, all of them, under /etc/verdict/policies
        bundled = sorted(os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "policies"))
                         for d, _, fs in os.walk(os.path.join(ROOT, "policies"))
                         for f in fs)
        shipped = sorted(os.path.relpath(os.path.join(d, f),
                                         self.path("/etc/verdict/policies"))
                         for d, _, fs in os.walk(self.path("/etc/verdict/policies"))
                         for f in fs)
        self.assertEqual(shipped, bundled)
        print("\n  %s: %d files" % (os.path.basename(self.deb),
                                    len(listing.splitlines())),
              end=" ", flush=True)

    def test_everything_under_etc_is_a_conffile(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            conffiles = sorted(l.strip() for l in f if l.strip())
        under_etc = sorted("/" + os.path.relpath(os.path.join(d, f), self.root)
                           for d, _, fs in os.walk(self.path("/etc"))
                           for f in fs)
        self.assertEqual(conffiles, under_etc)
        self.assertIn("/etc/verdict/verdictd.conf", conffiles)
        self.assertIn("/etc/verdict/policies/regions.lua", conffiles)

    def test_maintainer_scripts(self):
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        # the system user and its group, once
        self.assertRegex(postinst, r"getent passwd verdict")
        self.assertRegex(postinst, r"adduser --system --group .*verdict")
        # the service is enabled and started by debhelper's snippets
        self.assertIn("deb-systemd-helper enable 'verdictd.service'", postinst)
        self.assertIn("deb-systemd-invoke $_dh_action 'verdictd.service'",
                      postinst)
        for script in ("postinst", "prerm", "postrm"):
            p = subprocess.run(["sh", "-n", os.path.join(self.control, script)])
            self.assertEqual(p.returncode, 0, script)
        depends = subprocess.run(["dpkg-deb", "-f", self.deb, "Depends"],
                                 capture_output=True, text=True).stdout
        for dep in ("adduser", "lua-check", "libsystemd0", "libuv1"):
            self.assertIn(dep, depends)
        # Lua is linked from its static archive: no liblua5.4-0 to depend
        # on, and the package names the Lua source it carries
        self.assertNotIn("liblua5.4", depends)
        built_using = subprocess.run(
            ["dpkg-deb", "-f", self.deb, "Built-Using"],
            capture_output=True, text=True).stdout
        self.assertRegex(built_using, r"^lua5\.4 \(= [^)]+\)$")

    def test_lintian_clean(self):
        changes = glob.glob(os.path.join(ROOT, "build-deb", "*.changes"))
        p = subprocess.run(["lintian", "--fail-on", "error,warning"] + changes,
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotRegex(p.stdout, r"(?m)^[EW]: ")

    def test_unit(self):
        unit = self.path("/lib/systemd/system/verdictd.service")
        with open(unit) as f:
            text = f.read()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID",
                     "RuntimeDirectory=verdict", "StateDirectory=verdict",
                     "User=verdict", "ProtectSystem=strict",
                     "ProtectHome=yes", "NoNewPrivileges=yes",
                     "PrivateTmp=yes", "MemoryDenyWriteExecute=yes",
                     "SystemCallFilter=@system-service",
                     "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                     "ExecStart=/usr/sbin/verdictd --config "
                     "/etc/verdict/verdictd.conf"):
            self.assertIn("\n" + line + "\n", text)
        p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            "--no-pager", "verdictd.service"],
                           cwd=os.path.dirname(unit), capture_output=True,
                           text=True, timeout=120)
        m = re.search(r"Overall exposure level for verdictd.service: "
                      r"([0-9.]+)", p.stdout)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        print("\n  systemd-analyze security: exposure %s" % m.group(1),
              end=" ", flush=True)
        self.assertLessEqual(float(m.group(1)), 2.0, p.stdout)

    def test_packaged_daemon_reads_its_default_configuration(self):
        verdictd = self.path("/usr/sbin/verdictd")
        out = subprocess.run([verdictd, "--help"], capture_output=True,
                             text=True).stdout
        self.assertIn("default: /etc/verdict/verdictd.conf", out)
        # the shipped configuration and policies serve, its paths replaced
        # by the command line's (the throwaway root has no /run/verdict)
        tmp = tempfile.mkdtemp(prefix="verdict-pkg-run-")
        self.addCleanup(shutil.rmtree, tmp)
        conf = self.path("/etc/verdict/verdictd.conf")
        sock = os.path.join(tmp, "verdictd.sock")
        log_path = os.path.join(tmp, "verdictd.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [verdictd, "--config", conf,
                 "--policies", self.path("/etc/verdict/policies"),
                 "--socket", sock,
                 "--admin-socket", os.path.join(tmp, "admin.sock"),
                 "--db", os.path.join(tmp, "verdict.db"), "--workers", "1"]
                # a sanitizer build validates many times slower than the
                # file's 30 s allow (the command line wins over the file)
                + (["--validate-timeout", "600"] if SANITIZED else []),
                stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.time() + (600 if SANITIZED else 60)
                while not os.path.exists(sock):
                    self.assertIsNone(proc.poll(), read(log_path))
                    self.assertLess(time.time(), deadline)
                    time.sleep(0.05)
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(20)
                s.connect(sock)
                c = Conn(s)
                r = c.call(**request("compensation", "GD-SZ",
                                     {"charged_fen": 5000, "due_fen": 3000},
                                     rid="pkg"))
                c.close()
                # the bundled policies decide (a full complaint is their
                # tests' business: this one is answered and recorded)
                self.assertIn("decision_id", r)
                self.assertEqual(r["error"]["path"], "input.category")
            finally:
                proc.terminate()
                self.assertEqual(proc.wait(30), 0, read(log_path))
        log = read(log_path)
        # the shipped file's log-format (text) and log-mode (durable)
        self.assertRegex(log, r"notice serving: .*\(durable\)")

if __name__ == "__main__":
    unittest.main()
