"""The console's Health page in a fleet: each node's state as the
fleet's node_status holds it (revision, last activation, last error,
heartbeat, decisions), in headless Chromium.  Needs the throwaway
PostgreSQL server scripts/run-tests starts (pg_virtualenv), like
test_fleet.py:

    pg_virtualenv python3 -m unittest -v tests/blackbox/test_console_fleet.py
"""
import os
import re
import unittest

from test_console import By, browser
from test_fleet import MINI, comp, new_database, node
from test_http import HttpDaemon
from harness import request


def setUpModule():
    if not os.environ.get("PGHOST"):
        raise unittest.SkipTest("no PostgreSQL server (run under "
                                "pg_virtualenv, as scripts/run-tests does)")


class FleetHealth(unittest.TestCase):
    def test_each_node_on_the_health_page(self):
        _, db = new_database()
        a = HttpDaemon(policies=MINI, args=["--db", db, "--node-id", "a"])
        self.addCleanup(a.stop)
        b = node(db, "b")
        self.addCleanup(b.stop)
        for d, n in ((a, 3), (b, 1)):
            c = d.connect()
            for i in range(n):
                self.assertNotIn("error", c.call(**comp("%d" % i)))
            c.close()
        browser_ = browser()
        self.addCleanup(browser_.quit)
        browser_.get("http://127.0.0.1:%d/console/health" % a.http_port)
        browser_.save_screenshot(os.path.join(a.tmp, "health-fleet.png"))
        rows = {}
        for r in browser_.find_elements(By.CSS_SELECTOR, "#nodes tbody tr"):
            cells = {c.get_attribute("data-key"): c.text
                     for c in r.find_elements(By.TAG_NAME, "td")}
            rows[cells["node"]] = cells
        self.assertEqual(sorted(rows), ["a", "b"])
        self.assertIn("2 nodes share this history",
                      browser_.find_element(By.CSS_SELECTOR,
                                            "#nodes caption").text)
        active = re.search(r"Active revision\n(sha256:[0-9a-f]+)",
                           browser_.find_element(By.TAG_NAME, "main").text)
        for name, n in (("a", 3), ("b", 1)):
            self.assertEqual(rows[name]["revision"], active.group(1))
            self.assertEqual(rows[name]["decisions"], str(n))
            self.assertEqual(rows[name]["last_error"], "-")
            self.assertRegex(rows[name]["activated"], r"^2\d{3}-\d\d-\d\d \d\d:\d\d")
            self.assertRegex(rows[name]["heartbeat"], r"^2\d{3}-\d\d-\d\d \d\d:\d\d")
            self.assertLess(int(rows[name]["age"]), 120)


class FleetSearch(unittest.TestCase):
    def ids_on(self, b, path):
        b.get(path)
        return [a.get_attribute("href").rsplit("/", 1)[1]
                for a in b.find_elements(By.CSS_SELECTOR,
                                         "#decisions tbody tr a[href*='/console/decisions/']")]

    def test_searches_read_every_node_newest_first_with_their_filters(self):
        # a PostgreSQL history answers the console's searches as a SQLite
        # file does: every filter applied, newest first, paged by cursor
        _, db = new_database()
        a = HttpDaemon(policies=MINI, args=["--db", db, "--node-id", "a"])
        self.addCleanup(a.stop)
        b = node(db, "b")
        self.addCleanup(b.stop)
        made = []
        for d, n in ((a, 40), (b, 15)):
            c = d.connect()
            for i in range(n):
                r = c.call(**comp("%s-%d" % (d is a and "a" or "b", i)))
                self.assertNotIn("error", r)
                made.append(r["decision_id"])
            c.close()
        c = b.connect()
        bad = c.call(**request("compensation", "XX-NO", {"charged_fen": 1,
                                                        "due_fen": 0}))
        c.close()
        self.assertEqual(bad["error"]["code"], "unknown_region")
        br = browser()
        self.addCleanup(br.quit)
        base = "http://127.0.0.1:%d/console/decisions" % a.http_port
        first = self.ids_on(br, base + "?kind=compensation&error_code=none")
        self.assertEqual(len(first), 50)
        # newest first: the last decisions made are on the first page
        self.assertEqual(first[0], made[-1])
        br.find_element(By.LINK_TEXT, "Older decisions").click()
        rest = [x.get_attribute("href").rsplit("/", 1)[1]
                for x in br.find_elements(
                    By.CSS_SELECTOR,
                    "#decisions tbody tr a[href*='/console/decisions/']")]
        self.assertEqual(sorted(first + rest), sorted(made))
        self.assertEqual(self.ids_on(br, base + "?error_code=unknown_region"),
                         [bad["decision_id"]])
        self.assertEqual(self.ids_on(br, base + "?revision=sha256:"
                                     + "0" * 64), [])


if __name__ == "__main__":
    unittest.main()
