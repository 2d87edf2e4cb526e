"""Mistakes a policy administrator makes while writing a region, and what
`verdict check` says about each: the file and line of the mistake, and,
for a misspelt name, the name that was meant (issue #13).

Each fixture under tests/fixtures/ is an overlay laid over a copy of the
shipped policies/ (harness.overlay)."""
import os
import shutil
import unittest

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


if __name__ == "__main__":
    unittest.main()
