"""Bundles that break a domain rule are refused, naming the file and why.

Each fixture under tests/fixtures/ is a small overlay: the files a policy
administrator would add or change.  A test copies the shipped policies/ to
a temporary directory, lays the overlay over it, and checks the result
through the same door an administrator uses before going live
(`verdict check DIR`), or through the daemon for what only a decision can
find."""
import json
import shutil
import unittest

from harness import AT, Daemon, OverlayCase, overlay




class Calendars(OverlayCase):
    def test_shipped_bundle_passes(self):
        rc, out = self.check("calendar-empty-overlay")
        self.assertEqual(rc, 0, out)
        self.assertIn("ready to go live", out)

    def test_regional_year_without_a_national_file(self):
        self.refused("calendar-year-without-national",
                     "regions/GX/calendar/2030.lua", "no calendar/2030.lua")

    def test_year_file_without_its_civil_time(self):
        self.refused("calendar-no-offset", "calendar/2026.lua", "utc_offset")

    def test_calendar_of_a_region_not_in_regions_lua(self):
        # refused when the bundle loads, not at the region's first decision:
        # a file the libraries would ignore never goes live
        self.refused("calendar-unlisted-region", "regions/ZZ/calendar/2026.lua",
                     "region ZZ is not in regions.lua")

class Compensation(OverlayCase):
    def test_a_cap_on_a_promise(self):
        self.refused("caps-a-promise", "regions/SH/compensation.lua:7",
                     "sh.comp.repair.late", "only discretionary amounts")


class PublishedLimits(OverlayCase):
    """A rule that encodes a published rule carries its limit: a region may
    tighten it, and one that loosens it fails to load with file:line, the
    rule and the published basis, whatever inputs the tests try."""

    def test_miit_reply_in_30_days(self):
        self.refused("loosens-miit", "regions/SH/sla.lua:6:", "sh.sla.operator_reply",
                     "at most { days = 15 }", "MIIT order no. 35")

    def test_urban_repair_in_96_hours(self):
        self.refused("loosens-repair", "regions/SH/sla.lua:6:", "sh.sla.repair.urban",
                     "at most { hours = 48 }", "Telecom Regulations")

    def test_published_rule_that_never_applies(self):
        self.refused("hides-repair", "regions/SH/sla.lua:7:", "sla.repair.urban",
                     "Telecom Regulations", "not when")

    def test_refund_once_instead_of_double(self):
        self.refused("loosens-double-refund", "regions/SH/compensation.lua:5:",
                     "sh.comp.billing.refund", "at least 2", "双倍返还")

    def test_fraud_damages_below_500_yuan(self):
        self.refused("loosens-fraud", "regions/SH/compensation.lua:6:", "sh.comp.fraud",
                     "at least 50000", "Consumer Rights Protection Law art. 55")

    def test_half_refund_of_void_sp_charges(self):
        self.refused("halves-sp-refund", "regions/SH/compensation.lua:6:",
                     "comp.sp.void_refund", "not amount")

    def test_billing_appeal_bar_of_3_months(self):
        self.refused("loosens-appeal-bar", "regions/SH/appeal.lua:6:",
                     "sh.appeal.window.billing", "at least { months = 5 }",
                     "MIIT appeal rules")

    def test_tightening_goes_live(self):
        rc, out = self.check("tightens-published")
        self.assertEqual(rc, 0, out)
        self.assertIn("ready to go live", out)

    def test_an_added_looser_rule_does_not_loosen(self):
        rc, out = self.check("adds-looser-repair")
        self.assertEqual(rc, 0, out)
        tmp, bundle = overlay("adds-looser-repair")
        self.addCleanup(shutil.rmtree, tmp)
        d = Daemon(bundle, tmp=tmp)
        try:
            body = json.dumps({"complaint_id": "SH-1", "category": "broadband_fault",
                               "channel": "hotline", "customer_grade": "retail",
                               "received_at": "2026-11-23T10:00:00+08:00"}).encode()
            rc, out, _ = d.cli("decide", "sla", "--region", "SH", "--at", AT, "-",
                               stdin=body)
            self.assertEqual(rc, 0, out)
            r = json.loads(out)
            self.assertEqual(r["result"]["deadlines"]["repair"],
                             "2026-11-25T10:00:00+08:00")
            fired = [t["rule"] for t in r["trace"]]
            self.assertIn("sh.sla.repair.slow", fired)
            self.assertIn("sla.repair.urban", fired)
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())


if __name__ == "__main__":
    unittest.main()
