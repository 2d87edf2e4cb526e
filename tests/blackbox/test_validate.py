"""verdict check and verdict test print the library's validation report,
and validation does not depend on the host: without luacheck's modules
the check fails instead of being skipped."""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import FIXTURES, POLICIES, VERDICT, run_cli

LINTWARN = os.path.join(FIXTURES, "lintwarn")


def expected_report():
    with open(os.path.join(FIXTURES, "lintwarn.expected")) as f:
        return f.read()


class Validate(unittest.TestCase):
    def test_check_prints_the_report(self):
        # tests/test_policytest.c holds the library's report to the same text
        rc, out, err = run_cli("check", LINTWARN)
        self.assertEqual(rc, 1, err)
        self.assertEqual(out, expected_report() +
                         "check: 3 problems in %s\n" % LINTWARN)

    def test_test_prints_the_tests_part(self):
        rc, out, _ = run_cli("test", LINTWARN)
        self.assertEqual(rc, 1, out)
        report = expected_report().splitlines(True)
        self.assertEqual(out, "".join(report[:3]))  # up to the totals line

    def test_luacheck_warning_names_file_and_line(self):
        rc, out, _ = run_cli("check", LINTWARN)
        self.assertIn("national/compensation.lua:22:9: (W211) unused "
                      "variable 'unused'\n", out)

    def test_check_fails_without_luacheck(self):
        empty = tempfile.mkdtemp(prefix="verdict-noluacheck-")
        try:
            env = dict(os.environ, VERDICT_LUACHECK_DIR=empty)
            p = subprocess.run([VERDICT, "check", POLICIES], env=env,
                               capture_output=True, timeout=60)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 1, out)
            self.assertIn("luacheck: module 'luacheck' not found", out)
            self.assertIn("check: 1 problem in", out)
            self.assertNotIn("ready to go live", out)
            self.assertNotIn("skipped", out)
        finally:
            shutil.rmtree(empty, ignore_errors=True)
        # the same bundle, with luacheck where Debian puts it
        rc, out, _ = run_cli("check", POLICIES)
        self.assertEqual(rc, 0, out)
        self.assertIn("ready to go live", out)


if __name__ == "__main__":
    unittest.main()
