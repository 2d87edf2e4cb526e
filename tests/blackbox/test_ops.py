"""Operations: --version, file modes and groups, log lines, the
configuration file (docs/operations.md)."""
import os
import re
import subprocess
import unittest

from harness import ROOT, VERDICT, VERDICTD, run_cli


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


if __name__ == "__main__":
    unittest.main()
