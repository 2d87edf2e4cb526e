"""The metrics as documented: docs/protocol.md's table names every family
include/verdict/metrics.h defines (and no other), and the Prometheus rules
in docs/operations.md pass `promtool check rules` (Debian's prometheus
package).  The exposition itself is checked by promtool in
tests/test_metrics.c."""
import os
import re
import subprocess
import tempfile
import unittest

from harness import ROOT


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


class MetricsDocs(unittest.TestCase):
    def test_table_names_every_family(self):
        header = read("include", "verdict", "metrics.h")
        defined = set(re.findall(r'^\s*X\(\w+, \w+, "(verdict_\w+)"', header, re.M))
        self.assertGreaterEqual(len(defined), 9)
        defined.add("verdict_policy_revision_info")  # vd_metrics_set_revision
        doc = read("docs", "protocol.md")
        section = doc.split("## Metrics\n", 1)[1].split("\n## ", 1)[0]
        documented = set(re.findall(r"^\| `(verdict_\w+)` \|", section, re.M))
        self.assertEqual(documented, defined)

    def test_rules_example_passes_promtool(self):
        doc = read("docs", "operations.md")
        section = doc.split("## Monitoring with Prometheus\n", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
        rules = [b for b in blocks if b.startswith("groups:")]
        self.assertEqual(len(rules), 1)
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            f.write(rules[0])
            f.flush()
            p = subprocess.run(["promtool", "check", "rules", f.name],
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 5 rules found", p.stdout)


if __name__ == "__main__":
    unittest.main()
