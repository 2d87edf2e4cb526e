"""Bundles that break a domain rule are refused, naming the file and why.

Each fixture under tests/fixtures/ is a small overlay: the files a policy
administrator would add or change.  A test copies the shipped policies/ to
a temporary directory, lays the overlay over it, and checks the result
through the same door an administrator uses before going live
(`verdict check DIR`), or through the daemon for what only a decision can
find."""
import json
import os
import shutil
import tempfile
import unittest

from harness import AT, FIXTURES, POLICIES, ROOT, Daemon, run_cli


def overlay(name):
    """A copy of policies/ with tests/fixtures/NAME laid over it."""
    tmp = tempfile.mkdtemp(prefix="verdict-domain-")
    bundle = os.path.join(tmp, "policies")
    shutil.copytree(POLICIES, bundle)
    shutil.copytree(os.path.join(FIXTURES, name), bundle, dirs_exist_ok=True)
    return tmp, bundle


class Overlay(unittest.TestCase):
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


class Calendars(Overlay):
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
        tmp, bundle = overlay("calendar-unlisted-region")
        self.addCleanup(shutil.rmtree, tmp)
        d = Daemon(bundle, tmp=tmp)
        try:
            with open(os.path.join(ROOT, "examples", "sla.json")) as f:
                body = f.read()
            rc, out, _ = d.cli("decide", "sla", "--region", "ZZ", "--at", AT, "-",
                               stdin=body.encode())
            self.assertNotEqual(rc, 0, out)
            self.assertIn("regions/ZZ/calendar/2026.lua", out)
            self.assertIn("regions.lua", out)
            rc, out, _ = d.cli("decide", "sla", "--region", "GX", "--at", AT, "-",
                               stdin=body.encode())
            self.assertEqual(rc, 0, out)
            self.assertEqual(json.loads(out)["policy_region"], "national")
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())

class Compensation(Overlay):
    def test_a_cap_on_a_promise(self):
        self.refused("caps-a-promise", "regions/SH/compensation.lua:7",
                     "sh.comp.repair.late", "only discretionary amounts")


if __name__ == "__main__":
    unittest.main()
