"""verdict reference: the field reference generated from the policies'
schemas (core/cmd/reference.c), which docs/policy-reference.md is."""
import os
import shutil
import tempfile
import unittest

from harness import POLICIES, run_cli

# A region file that adds input fields: a list of objects, so the nested
# rows are named with "[].".
BJ_SLA = '''-- regions/BJ/sla.lua - a test region that adds two input fields.
local R = require("lib.rules")
local S = require("lib.schema")
return R.extend(parent(), {
  fields = {
    visits = S.list{ max = 3, doc = "site visits | so far",
      of = S.object{ fields = { at = S.time{ required = true, doc = "when" } } } },
    zone = S.enum{ "in", "out", default = "in", requires = { "visits" } },
  },
})
'''


class Reference(unittest.TestCase):
    def test_bundled_policies(self):
        rc, out, err = run_cli("reference", POLICIES)
        self.assertEqual(rc, 0, err)
        for kind in ("appeal", "compensation", "escalation", "sla"):
            self.assertIn("\n## `%s`\n" % kind, out)
        self.assertIn("| `complaint_id` | string | required | "
                      "a non-empty string of at most 64 bytes | "
                      "the carrier's complaint number |", out)
        self.assertIn("| `charged_fen` | integer | optional; needs `due_fen` |", out)
        self.assertIn("| `done.repair` | time | optional |", out)
        self.assertIn("| `area` | enum | default `\"urban\"` | one of urban, rural |", out)
        self.assertNotIn("adds:", out)  # no shipped region adds a field

    def test_fields_a_region_adds(self):
        tmp = tempfile.mkdtemp(prefix="verdict-ref-")
        try:
            bundle = os.path.join(tmp, "policies")
            shutil.copytree(POLICIES, bundle)
            with open(os.path.join(bundle, "regions", "BJ", "sla.lua"), "w") as f:
                f.write(BJ_SLA)
            rc, out, err = run_cli("reference", bundle)
            self.assertEqual(rc, 0, err)
            section = out[out.index("Fields `regions/BJ/sla.lua` adds:"):]
            rows = [l for l in section.splitlines() if l.startswith("| `")]
            self.assertEqual(rows, [
                "| `visits` | list | optional | an array (at most 3) of an object "
                "| site visits \\| so far |",
                "| `visits[].at` | time | required | an RFC 3339 time with offset, "
                "such as 2026-11-23T10:00:00+08:00 | when |",
                "| `zone` | enum | default `\"in\"`; needs `visits` | one of in, out |  |",
            ])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_errors(self):
        rc, _, err = run_cli("reference", "/nonexistent/verdict-bundle")
        self.assertEqual(rc, 1)
        self.assertIn("verdict reference:", err)
        rc, _, err = run_cli("reference", POLICIES, "extra")
        self.assertEqual(rc, 2)
        self.assertIn("unexpected argument extra", err)


if __name__ == "__main__":
    unittest.main()
