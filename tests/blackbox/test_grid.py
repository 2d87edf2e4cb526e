"""`verdict check` decides a grid of inputs and refuses a region that is
looser than its parent, or a grade looser than the one below it.

Each fixture under tests/fixtures/grid-*/ is an overlay: the region files a
policy administrator would add (Shanghai, SH, which ships no file of its
own).  A test copies the shipped policies/ to a temporary directory, lays
the overlay over it and runs `verdict check` on it, as an administrator
does before going live and as every reload and start-up does."""
import os
import shutil
import unittest

from harness import POLICIES, OverlayCase, overlay, run_cli


class Grid(OverlayCase):
    def test_shipped_bundle_passes_with_a_line_per_kind(self):
        rc, out, err = run_cli("check", POLICIES)
        self.assertEqual(rc, 0, out + err)
        for kind in ("sla", "compensation", "escalation"):
            self.assertIn("grid: %s: " % kind, out)
        self.assertIn("in national, GD, GD-SZ;", out)
        self.assertIn("in national, BJ, GD;", out)
        self.assertNotIn("looser than", out)

    def test_the_same_bundle_gives_the_same_report(self):
        _, first, _ = run_cli("check", POLICIES)
        _, second, _ = run_cli("check", POLICIES)
        self.assertEqual(first, second)

    def test_a_replaced_tier_that_drops_the_acceptance_deadline(self):
        out = self.refused(
            "grid-drops-acceptance",
            "regions/SH/sla.lua: sla: SH is looser than national: "
            "deadlines.acceptance: SH (absent), national \"",
            "rules SH: sh.sla.tier.standard", "national: sla.tier.standard",
            "input (SH): {\"kind\":\"sla\",\"region\":\"SH\"")
        self.assertIn("\"customer_grade\":\"retail\"", out)

    def test_a_later_deadline(self):
        self.refused(
            "grid-later-solution",
            "regions/SH/sla.lua: sla: SH is looser than national: "
            "deadlines.solution: SH \"2025-01-15T23:59:59+08:00\", "
            "national \"2025-01-10T23:59:59+08:00\"",
            "rules SH: sh.sla.tier.standard", "national: sla.tier.standard")

    def test_a_smaller_offer(self):
        self.refused(
            "grid-smaller-offer",
            "regions/SH/compensation.lua: compensation: SH is looser than "
            "national: offer_fen: SH ", ", national ",
            "sh.comp.repair.late", "; national: ", "comp.repair.late")

    def test_a_lower_escalation_level(self):
        self.refused(
            "grid-lower-level",
            "regions/SH/escalation.lua: escalation: SH is looser than "
            "national: level: SH \"district\", national \"city\"",
            "sh.esc.signal.regulator", "national: esc.owner.first_contact, "
            "esc.signal.regulator", "\"signals\":[\"regulator\"]")

    def test_an_enterprise_grade_looser_than_retail(self):
        out = self.refused(
            "grid-enterprise-looser",
            "regions/SH/sla.lua: sla: in SH, grade local_c gets a looser "
            "answer than retail: deadlines.acceptance: local_c \"",
            "rules local_c: sla.tier.enterprise",
            "retail: sh.sla.tier.standard",
            "input (local_c): ", "input (retail): ")
        self.assertNotIn("SH is looser than national", out)

    def test_an_exception_with_its_reason_is_honoured_and_listed(self):
        rc, out = self.check("grid-excepted")
        self.assertEqual(rc, 0, out)
        self.assertIn("ready to go live", out)
        self.assertIn(
            "regions/SH/sla.lua: sla: exception: deadlines.first_feedback may "
            "be looser in SH than in national (", out)
        self.assertIn("grid answers): example: the provincial administration "
                      "agreed 96 h", out)

    def test_an_exception_without_a_reason_does_not_load(self):
        tmp, bundle = overlay("grid-excepted")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(bundle, "regions", "SH", "sla.lua")
        with open(path) as f:
            text = f.read()
        start = text.index("reason = ")
        end = text.index("\n", start)
        with open(path, "w") as f:
            f.write(text[:start] + "reason = \"\" }," + text[end:])
        rc, out, err = run_cli("check", bundle)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("regions/SH/sla.lua:", out + err)
        self.assertIn("needs a reason", out + err)


if __name__ == "__main__":
    unittest.main()
