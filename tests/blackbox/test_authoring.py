"""Mistakes a policy administrator makes while writing a region, and what
`verdict check` says about each: the file and line of the mistake, and,
for a misspelt name, the name that was meant (issue #13).

Each fixture under tests/fixtures/ is an overlay laid over a copy of the
shipped policies/ (harness.overlay)."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

from harness import POLICIES, OverlayCase, overlay, run_cli


class MisspeltNames(OverlayCase):
    def test_misspelt_field_in_a_replaced_rule(self):
        out = self.refused("misspelt-rule-field", "regions/SH/compensation.lua:13:",
                           "unknown field 'per_dya_fen'", "did you mean 'per_day_fen'?")
        self.assertIn("comp.repair.late", out)

    def test_misspelt_param(self):
        self.refused("misspelt-param", "regions/SH/compensation.lua:9:",
                     "unknown param 'approval_limits.retail.frontlnie'",
                     "did you mean 'approval_limits.retail.frontline'?")


class ConditionsReadOnlyTheSchema(OverlayCase):
    def test_misspelt_input_field_in_a_condition(self):
        self.refused("misspelt-input-field", "regions/SH/compensation.lua:15:",
                     "rule sh.comp.network.late: when reads unknown input field 'categroy'",
                     "did you mean 'category'?")


class StructuralErrorsNameTheirLine(OverlayCase):
    def test_replacement_without_its_own_id(self):
        self.refused("replaced-without-id", "regions/SH/sla.lua:9:",
                     "the rule replacing 'sla.tier.standard' needs its own id and basis")

    def test_unknown_milestone(self):
        self.refused("unknown-milestone", "regions/SH/sla.lua:13:",
                     "unknown milestone 'soluton'", "did you mean 'solution'?")


class TestCases(unittest.TestCase):
    def run_test(self, name, *args):
        tmp, bundle = overlay(name)
        self.addCleanup(shutil.rmtree, tmp)
        rc, out, err = run_cli("test", *args, bundle)
        return rc, out + err

    def test_misspelt_key_and_no_expectation_fail(self):
        rc, out = self.run_test("misspelt-case-key")
        self.assertEqual(rc, 1, out)
        self.assertIn("FAIL regions/SH/compensation_test.lua:11 case 1 "
                      "(double refund of an overcharge)\n"
                      "      unknown key 'expcet' (did you mean 'expect'?)\n", out)
        self.assertIn("FAIL regions/SH/compensation_test.lua:12 case 2 "
                      "(late repair of two days)\n"
                      "      the case expects nothing", out)
        self.assertNotIn("case 3", out)
        self.assertTrue(out.rstrip().endswith(" passed, 2 failed"), out)


class RuleCoverage(OverlayCase):
    def test_a_region_whose_tests_miss_its_own_rule(self):
        self.refused("untested-region",
                     "regions/SH/sla.lua: its tests (regions/SH/sla_test.lua) fire 0 of "
                     "its 1 own rules (0%), under the bundle's 100% (coverage.lua): "
                     "not fired: sh.sla.tier.standard")

    def test_a_region_without_tests(self):
        tmp, bundle = overlay("untested-region")
        self.addCleanup(shutil.rmtree, tmp)
        os.remove(os.path.join(bundle, "regions", "SH", "sla_test.lua"))
        rc, out, err = run_cli("check", bundle)
        self.assertEqual(rc, 1, out)
        self.assertIn("regions/SH/sla.lua: no tests: a policy file needs its own tests "
                      "beside it (regions/SH/sla_test.lua) that fire its 1 rule "
                      "(sh.sla.tier.standard)\n", out)

    def test_coverage_per_file(self):
        rc, out, err = run_cli("test", "--coverage", POLICIES)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("national/compensation.lua: coverage 20/20 own rules fired by "
                      "national/compensation_test.lua (100%)\n", out)
        self.assertIn("regions/GD/compensation.lua: coverage 0/0 own rules fired by "
                      "regions/GD/compensation_test.lua (100%)\n", out)
        self.assertIn("regions/GD-SZ/sla.lua: coverage 2/2 own rules", out)
        self.assertRegex(out.splitlines()[-1], r"^\d+ passed, 0 failed$")
        rc, out, err = run_cli("test", POLICIES)
        self.assertNotIn("coverage", out)


class ChoosingTests(unittest.TestCase):
    """`verdict test [PATH...] [--run PATTERN] [-v] [--format json|junit]`."""

    def cli(self, *args):
        rc, out, err = run_cli("test", *args)
        return rc, out, err

    def cases(self, out):
        return [l for l in out.splitlines() if l.startswith("ok ")]

    def test_a_region_directory_runs_its_own_files_only(self):
        rc, out, err = self.cli("-v", os.path.join(POLICIES, "regions", "GD"))
        self.assertEqual(rc, 0, out + err)
        ran = self.cases(out)
        self.assertTrue(ran)
        for line in ran:
            self.assertTrue(line.startswith("ok regions/GD/"), line)
            self.assertNotIn("regions/GD-SZ/", line)
        self.assertEqual(out.splitlines()[-1], "%d passed, 0 failed" % len(ran))
        self.assertNotIn("not fired", out)

    def test_region_codes_and_files_relative_to_the_bundle(self):
        rc, out, err = self.cli("-v", POLICIES, "GD-SZ", "national/appeal.lua")
        self.assertEqual(rc, 0, out + err)
        files = {l.split()[1] for l in self.cases(out)}
        self.assertEqual(files, {"regions/GD-SZ/sla_test.lua", "national/appeal_test.lua"})

    def test_run_pattern(self):
        rc, out, err = self.cli("-v", "--run", "^overcharge caused by the carrier", POLICIES)
        self.assertEqual(rc, 0, out + err)
        ran = self.cases(out)
        self.assertEqual(len(ran), 1, out)
        self.assertIn("national/compensation_test.lua case 1 "
                      "(overcharge caused by the carrier: double refund)", ran[0])
        self.assertEqual(out.splitlines()[-1], "1 passed, 0 failed")
        rc, out, err = self.cli("--run", "(", POLICIES)
        self.assertEqual(rc, 1)
        self.assertIn("--run (: not a regular expression", out)

    def test_a_path_that_names_nothing(self):
        rc, out, err = self.cli(POLICIES, "regions/ZZ")
        self.assertEqual(rc, 1)
        self.assertIn("regions/ZZ: names no test file of the bundle", out)

    def test_json(self):
        rc, out, err = self.cli("--format", "json", POLICIES, "BJ")
        self.assertEqual(rc, 0, out + err)
        doc = json.loads(out)
        self.assertEqual(doc["failed"], 0)
        self.assertEqual(doc["passed"], len(doc["cases"]))
        self.assertTrue(all(c["file"] == "regions/BJ/compensation_test.lua"
                            and c["result"] == "pass" for c in doc["cases"]))
        self.assertEqual(err.splitlines()[-1], "%d passed, 0 failed" % doc["passed"])
        tmp, bundle = overlay("misspelt-case-key")
        self.addCleanup(shutil.rmtree, tmp)
        rc, out, err = self.cli("--format", "json", bundle, "SH")
        self.assertEqual(rc, 1)
        doc = json.loads(out)
        self.assertEqual([c["result"] for c in doc["cases"]], ["fail", "fail", "pass"])
        self.assertEqual(doc["cases"][0]["line"], 11)
        self.assertIn("did you mean 'expect'?", doc["cases"][0]["detail"])

    def test_junit(self):
        tmp, bundle = overlay("misspelt-case-key")
        self.addCleanup(shutil.rmtree, tmp)
        rc, out, err = self.cli("--format", "junit", bundle, "SH", "BJ")
        self.assertEqual(rc, 1)
        root = ET.fromstring(out)
        self.assertEqual(root.tag, "testsuites")
        suites = {s.get("name"): s for s in root.findall("testsuite")}
        self.assertEqual(set(suites), {"regions/SH/compensation_test.lua",
                                       "regions/BJ/compensation_test.lua"})
        sh = suites["regions/SH/compensation_test.lua"]
        self.assertEqual((sh.get("tests"), sh.get("failures")), ("3", "2"))
        failure = sh.find("testcase/failure")
        self.assertIn("unknown key 'expcet'", failure.text)
        self.assertEqual(root.get("failures"), "2")
        self.assertEqual(err.splitlines()[-1], "%s passed, 2 failed"
                         % (int(root.get("tests")) - 2))

    def test_bad_usage(self):
        rc, out, err = self.cli("--format", "yaml", POLICIES)
        self.assertEqual(rc, 2)
        self.assertIn("--format is text, json or junit", err)
        rc, out, err = self.cli("--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: verdict test", out)


LUACHECK_LINE = re.compile(r"^(?:\./)?(\S+?):(\d+):(\d+): \((\w\d+)\)")


def warnings(text):
    """The (file, line, column, code) of each luacheck line in text."""
    return {m.groups() for m in map(LUACHECK_LINE.match, text.splitlines()) if m}


class EditorsSeeTheSandbox(unittest.TestCase):
    """policies/.luacheckrc declares the sandbox's globals: plain luacheck
    gives the warnings `verdict check` gives."""

    def test_plain_luacheck_agrees_with_verdict_check(self):
        tmp, bundle = overlay("sandbox-globals")
        self.addCleanup(shutil.rmtree, tmp)
        rc, out, err = run_cli("check", bundle)
        ours = warnings(out)
        p = subprocess.run(["luacheck", "--formatter", "plain", "--codes", "."],
                           cwd=bundle, capture_output=True, text=True, timeout=120)
        theirs = warnings(p.stdout)
        self.assertEqual(theirs, ours, p.stdout + p.stderr + "\n----\n" + out)
        probe = {w[1:] for w in ours if w[0] == "lib/probe.lua"}
        # what the sandbox leaves out is flagged, once each, where it is read
        self.assertEqual(len(probe), 8 + 1 + 2 + 1 + 6, sorted(probe))
        for line, col, code in probe:
            self.assertIn(code, ("W113", "W143"))

    def test_the_shipped_bundle_from_the_repository(self):
        # from the repository: the paths in the config are the working
        # directory's
        root = os.path.dirname(POLICIES)
        p = subprocess.run(["luacheck", "--config", "policies/.luacheckrc",
                            "--formatter", "plain", "--codes", "policies"],
                           cwd=root, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rc, out, err = run_cli("check", POLICIES)
        self.assertEqual(warnings(out), set())

    # Fields of `verdict` that lib/*.lua reads where a binary may lack
    # them: a node on an older binary (a fleet mid-upgrade) checks a new
    # revision with its own sandbox's std, and a read of a field it does
    # not know (W143) would keep the revision from going live there.
    FIELDS_AN_OLDER_BINARY_LACKS = ("rule_runner",)

    def test_the_shipped_bundle_on_an_older_binary(self):
        with open(os.path.join(POLICIES, ".luacheckrc")) as f:
            rc = f.read()
        for field in self.FIELDS_AN_OLDER_BINARY_LACKS:
            self.assertIn('"%s", ' % field, rc)
            rc = rc.replace('"%s", ' % field, "", 1)
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        config = os.path.join(tmp, "older.luacheckrc")
        with open(config, "w") as f:
            f.write(rc)
        root = os.path.dirname(POLICIES)
        p = subprocess.run(["luacheck", "--config", config, "--formatter",
                            "plain", "--codes", "policies"],
                           cwd=root, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_luarc_json_is_json(self):
        with open(os.path.join(POLICIES, ".luarc.json")) as f:
            rc = json.load(f)
        self.assertEqual(rc["runtime"]["version"], "Lua 5.4")
        self.assertIn("verdict", rc["diagnostics"]["globals"])


if __name__ == "__main__":
    unittest.main()
