"""The web console (/console/ on verdictd --http; docs/console.md).

Opened as a person would, in headless Chromium (Debian's chromium and
chromium-driver, driven by python3-selenium): log in with a token, search,
open a decision, read the Health chart.  Screenshots of each page are
saved under the test's temporary folder (printed) for a failure to be
looked at.
"""
import http.client
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

from harness import AT, POLICIES, request, run_cli
from test_http import COMP_INPUT, SLA_INPUT, HttpDaemon, write_tokens

try:
    import selenium  # noqa: F401
except ImportError:  # a Python of its own: Debian's python3-selenium
    sys.path.append("/usr/lib/python3/dist-packages")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException, WebDriverException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TOKENS = {"auditor": ("audit", "tok-aud-console"),
          "crm": ("decide", "tok-crm-console")}
CRM = {"Authorization": "Bearer " + TOKENS["crm"][1]}


def submit(driver, button):
    """Click BUTTON and wait for the page it loads: the old page's root
    gone.  chromedriver says so either as a stale element or, when it
    asks in the middle of the navigation, as "Node with given id does not
    belong to the document": both mean gone."""
    old = driver.find_element(By.TAG_NAME, "html")
    button.click()

    def gone(_):
        try:
            old.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
    WebDriverWait(driver, 20).until(gone)


def browser():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1366,900"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                            options=o)


class ConsoleCase(unittest.TestCase):
    """A class of console tests sharing one daemon (cls.d, an HttpDaemon)
    and one browser (cls.b), both made by its setUpClass."""

    @classmethod
    def start_daemon(cls, name, tokens=None):
        """cls.tmp (a new folder, "verdict-NAME-..."), cls.policies (a copy
        of the bundled policies there, for a test to edit) and cls.d, a
        daemon on them; with TOKENS ({name: (role, token)}) a tokens file
        and --tokens, else no credentials (loopback: no login)."""
        cls.tmp = tempfile.mkdtemp(prefix="verdict-%s-" % name)
        print("\ntest_%s: screenshots in" % name.replace("-", "_"), cls.tmp,
              file=sys.stderr)
        args = []
        if tokens:
            path = os.path.join(cls.tmp, "tokens")
            write_tokens(path, tokens)
            args = ["--tokens", path]
        cls.policies = os.path.join(cls.tmp, "policies")
        shutil.copytree(POLICIES, cls.policies)
        cls.d = HttpDaemon(policies=cls.policies, args=args, tmp=cls.tmp)

    @classmethod
    def tearDownClass(cls):
        cls.b.quit()
        cls.d.stop()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.d.http_port, path)


class Console(ConsoleCase):
    @classmethod
    def setUpClass(cls):
        # cls.policies: the copy the Impact test edits, "the policy
        # directory as it is now"
        cls.start_daemon("console", TOKENS)
        cls.ids = {}
        try:
            # 60 compensation decisions C-100..C-159 (the first 20 a day
            # earlier), one SLA, one refused
            for i in range(60):
                cid = "C-%d" % (100 + i)
                at = "2026-11-22T10:00:00+08:00" if i < 20 else AT
                st, _, body = cls.d.call(
                    "POST", "/v1/decisions",
                    request("compensation", "GD-SZ",
                            dict(COMP_INPUT, complaint_id=cid), at=at),
                    headers=CRM)
                assert st == 200, body
                cls.ids[cid] = body["decision_id"]
            st, _, body = cls.d.call("POST", "/v1/decisions",
                                     request("sla", "GD-SZ", SLA_INPUT),
                                     headers=CRM)
            assert st == 200, body
            cls.ids["sla"] = body["decision_id"]
            st, _, body = cls.d.call("POST", "/v1/decisions",
                                     request("sla", "XX-NO", SLA_INPUT),
                                     headers=CRM)
            assert st == 404, body
            cls.b = browser()
        except BaseException:
            cls.d.stop()
            raise

    def shot(self, name):
        self.b.save_screenshot(os.path.join(self.tmp, name + ".png"))

    def submit(self, button):
        """Click BUTTON and wait for the page it loads."""
        submit(self.b, button)

    def login(self, token):
        self.b.delete_all_cookies()
        self.b.get(self.url("/console/login"))
        self.b.find_element(By.ID, "token").send_keys(token)
        self.submit(self.b.find_element(By.CSS_SELECTOR,
                                        "main form button[type=submit]"))

    def h1(self):
        return self.b.find_element(By.TAG_NAME, "h1").text

    def test_refused_without_login(self):
        self.b.delete_all_cookies()
        self.b.get(self.url("/console/decisions"))
        self.shot("refused-no-login")
        self.assertEqual(self.h1(), "Log in")
        self.assertIn("audit role", self.b.page_source)
        self.assertEqual(self.b.find_elements(By.ID, "decisions"), [])
        self.assertNotIn(self.ids["C-100"], self.b.page_source)
        self.b.get(self.url("/console/decisions/" + self.ids["C-100"]))
        self.assertEqual(self.h1(), "Log in")
        self.assertNotIn("comp.billing", self.b.page_source)

    def test_refused_without_the_role(self):
        self.login(TOKENS["crm"][1])
        self.shot("refused-no-role")
        self.assertEqual(self.h1(), "Refused")
        self.assertIn("'crm' lacks the audit role", self.b.page_source)
        self.assertEqual(self.b.find_elements(By.ID, "decisions"), [])
        self.login("not-a-token")
        self.assertEqual(self.h1(), "Log in")
        self.assertIn("not known", self.b.page_source)

    def test_search_and_decision(self):
        self.login(TOKENS["auditor"][1])
        self.assertEqual(self.h1(), "Decisions")
        # the token is in an HttpOnly cookie: no script can read it
        self.assertNotIn("tok-aud", self.b.execute_script(
            "return document.cookie"))
        cookie = self.b.get_cookie("verdict_token")
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Strict")
        box = self.b.find_element(By.ID, "complaint_id")
        box.send_keys("C-137")
        self.submit(self.b.find_element(By.CSS_SELECTOR,
                                        "form.search button"))
        self.shot("search")
        rows = self.b.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
        self.assertEqual(len(rows), 1)
        self.assertIn(self.ids["C-137"], rows[0].text)
        self.assertIn("compensation", rows[0].text)
        self.submit(rows[0].find_element(By.LINK_TEXT, self.ids["C-137"]))
        self.shot("decision")
        self.assertEqual(self.h1(), "Decision")
        text = self.b.find_element(By.TAG_NAME, "main").text
        self.assertIn("comp.billing.double_refund", text)
        self.assertIn("overcharging caused by the carrier is refunded "
                      "double, (charged - due) x 2", text)
        self.assertIn("2026-11-23 10:00:00+08:00", text)
        self.assertIn("Previous record's hash", text)
        self.assertIn("Sequence number\n38", text)  # 37 decisions before it
        # the revision links to its decisions
        self.submit(self.b.find_element(By.PARTIAL_LINK_TEXT, "sha256:"))
        self.assertEqual(len(self.b.find_elements(
            By.CSS_SELECTOR, "#decisions tbody tr")), 50)

    def test_replay_decision(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/decisions/" + self.ids["C-142"]))
        self.submit(self.b.find_element(By.ID, "replay"))
        self.shot("replay-decision")
        self.assertEqual(self.h1(), "Replay of a decision")
        verdict = self.b.find_element(By.ID, "verdict")
        self.assertEqual(verdict.get_attribute("class"), "same")
        self.assertIn("Reproduces", verdict.text)
        self.assertEqual(self.b.find_elements(By.ID, "differences"), [])
        self.submit(self.b.find_element(By.LINK_TEXT, self.ids["C-142"]))
        self.assertEqual(self.h1(), "Decision")

    def test_replay_refuses_a_cross_site_form(self):
        cookie = {"Cookie": "verdict_token=" + TOKENS["auditor"][1],
                  "Content-Type": "application/x-www-form-urlencoded"}
        target = "/console/decisions/%s/replay" % self.ids["C-142"]

        def post(body, headers):
            c = http.client.HTTPConnection("127.0.0.1", self.d.http_port,
                                           timeout=20)
            c.request("POST", target, body=body, headers=headers)
            r = c.getresponse()
            text = r.read().decode()
            c.close()
            return r.status, text

        for body in ("", "csrf=" + "0" * 64):
            st, text = post(body, cookie)
            self.assertEqual(st, 403, body)
            self.assertIn("csrf field is missing or wrong", text)
            self.assertNotIn("Reproduces", text)
        # the token a console page carries is the one that works...
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/decisions/" + self.ids["C-142"]))
        csrf = self.b.find_element(
            By.CSS_SELECTOR, "form.replay input[name=csrf]"
        ).get_attribute("value")
        st, text = post("csrf=" + csrf, cookie)
        self.assertEqual(st, 200)
        self.assertIn("Reproduces", text)
        # ...for its own credential only
        st, _ = post("csrf=" + csrf,
                     dict(cookie, Cookie="verdict_token="
                          + TOKENS["crm"][1]))
        self.assertEqual(st, 403)
        st, _ = post("csrf=" + csrf, {"Content-Type": cookie["Content-Type"]})
        self.assertEqual(st, 401)

    def test_filters_and_paging(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/decisions?error_code=unknown_region"))
        rows = self.b.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
        self.assertEqual(len(rows), 1)
        self.assertIn("XX-NO", rows[0].text)
        self.b.get(self.url("/console/decisions?kind=sla&error_code=none"))
        rows = self.b.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
        self.assertEqual([r.text.split()[0] for r in rows], ["61"])
        # newest first, 50 a page, then the rest
        self.b.get(self.url("/console/decisions?kind=compensation"))
        seqs = [int(r.text.split()[0]) for r in self.b.find_elements(
            By.CSS_SELECTOR, "#decisions tbody tr")]
        self.assertEqual(seqs, list(range(60, 10, -1)))
        self.submit(self.b.find_element(By.LINK_TEXT, "Older decisions"))
        seqs = [int(r.text.split()[0]) for r in self.b.find_elements(
            By.CSS_SELECTOR, "#decisions tbody tr")]
        self.assertEqual(seqs, list(range(10, 0, -1)))
        self.b.get(self.url("/console/decisions?since=yesterday"))
        self.assertIn("The field since is not valid", self.b.page_source)

    def test_sort_and_csv(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/decisions?kind=compensation"))
        self.b.find_element(By.CSS_SELECTOR,
                            "#decisions th:first-child button").click()
        first = self.b.find_element(By.CSS_SELECTOR,
                                    "#decisions tbody tr").text.split()[0]
        self.assertEqual(first, "11")
        csv = self.b.execute_script(
            "return csvOf(document.getElementById('decisions'))")
        lines = csv.strip().split("\r\n")
        self.assertEqual(len(lines), 51)
        self.assertTrue(lines[0].startswith("Seq,Received"))
        self.assertIn(self.ids["C-110"], lines[1])
        self.assertEqual(len(self.b.find_elements(By.CSS_SELECTOR,
                                                  "button.csv")), 1)

    def test_health_chart(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/health"))
        drawn = WebDriverWait(self.b, 20).until(lambda b: b.execute_script(
            "var c = document.getElementById('rate');"
            "var ch = window.Chart && Chart.getChart(c);"
            "return ch ? ch.data.datasets[0].data : null;"))
        self.shot("health")
        self.assertEqual(len(drawn), 30)
        # 62 decisions in the window (the refused one counts as one)
        self.assertAlmostEqual(sum(drawn) * 10, 62, places=3)
        painted = self.b.execute_script(
            "var c = document.getElementById('rate');"
            "var d = c.getContext('2d').getImageData(0, 0, c.width,"
            " c.height).data, n = 0;"
            "for (var i = 3; i < d.length; i += 4) if (d[i]) n++;"
            "return n;")
        self.assertGreater(painted, 1000)
        text = self.b.find_element(By.TAG_NAME, "main").text
        self.assertIn("Active revision\nsha256:", text)
        # a SQLite history: one node (a fleet's are test_console_fleet's)
        self.assertTrue(self.b.find_element(By.ID, "nodes").text
                        .startswith("One node: this verdictd"))

    def test_revisions(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/health"))
        active = self.b.find_element(By.CSS_SELECTOR, "dl.facts dd").text
        self.assertTrue(active.startswith("sha256:"), active)
        self.submit(self.b.find_element(By.LINK_TEXT, "Revisions"))
        self.shot("revisions")
        acts = self.b.find_elements(By.CSS_SELECTOR, "#activations tbody tr")
        self.assertEqual(len(acts), 1)
        self.assertIn(active, acts[0].text)
        self.assertIn("startup", acts[0].text)
        self.assertIn("activated", acts[0].text)
        revs = self.b.find_elements(By.CSS_SELECTOR, "#revisions tbody tr")
        self.assertEqual(len(revs), 1)
        self.assertIn(active, revs[0].text)
        self.submit(revs[0].find_element(By.PARTIAL_LINK_TEXT, "sha256:"))
        self.assertEqual(len(self.b.find_elements(
            By.CSS_SELECTOR, "#decisions tbody tr")), 50)

    def test_reads_without_javascript(self):
        c = http.client.HTTPConnection("127.0.0.1", self.d.http_port,
                                       timeout=20)
        c.request("GET", "/console/decisions?complaint_id=C-101",
                  headers={"Cookie": "verdict_token=" + TOKENS["auditor"][1]})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Cache-Control"), "no-store")
        self.assertIn(self.ids["C-101"], body)
        self.assertNotIn(self.ids["C-102"], body)

    def test_impact(self):
        """The Impact page's figures are `verdict replay --format json`'s
        on the same window and filters."""
        path = os.path.join(self.policies, "national", "compensation.lua")
        with open(path) as f:
            src = f.read()

        def restore():
            with open(path, "w") as f:
                f.write(src)
        self.addCleanup(restore)
        self.assertIn("multiplier = 2,", src)
        with open(path, "w") as f:  # double refunds made triple
            f.write(src.replace("multiplier = 2,", "multiplier = 3,", 1))
        since, until = "2026-11-23T00:00:00+08:00", "2026-11-24T00:00"
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/impact"))
        self.assertEqual(self.b.find_element(By.ID, "candidate")
                         .get_attribute("value"), "directory")
        self.assertEqual(self.b.find_element(By.ID, "baseline")
                         .get_attribute("value"), "active")
        for field, value in (("at_since", since), ("at_until", until),
                             ("kind", "compensation")):
            self.b.find_element(By.ID, field).send_keys(value)
        self.submit(self.b.find_element(By.ID, "run"))
        state = WebDriverWait(self.b, 60).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#impact-state.done"))
        self.shot("impact")
        self.assertEqual(self.b.find_elements(By.CSS_SELECTOR, ".refused"),
                         [], self.b.find_element(By.TAG_NAME, "main").text)
        self.assertIn("auditor", state[0].text)

        def cell(table, key, row=0):
            return self.b.find_elements(
                By.CSS_SELECTOR, "#%s td[data-key=%s]" % (table, key))[row].text

        rc, out, err = run_cli(
            "replay", "--db", self.d.db, "--against", self.policies,
            "--baseline", "active", "--kind", "compensation",
            "--at-since", since, "--at-until", "2026-11-24T00:00:00+08:00",
            "--format", "json")
        self.assertEqual(rc, 0, err)
        cli = json.loads(out)
        self.assertEqual(cli["replayed"], 40)  # the window leaves 20 out
        self.assertGreater(cli["material"], 0)
        for key in ("replayed", "unchanged", "changed", "material",
                    "immaterial", "errors"):
            self.assertEqual(int(cell("impact-summary", key)), cli[key], key)
        self.assertEqual(float(cell("impact-money", "moved_yuan")),
                         cli["offers"]["moved_yuan"])
        self.assertGreater(cli["offers"]["moved_yuan"], 0)
        self.assertEqual(float(cell("impact-money", "before")),
                         cli["offers"]["before"]["total_yuan"])
        for table, key in (("by-kind", "by_kind"), ("by-region", "by_region"),
                           ("by-kind-region", "by_kind_region")):
            rows = self.b.find_elements(By.CSS_SELECTOR,
                                        "#%s tbody tr" % table)
            self.assertEqual(len(rows), len(cli[key]), table)
            for i, g in enumerate(cli[key]):
                for k in ("replayed", "changed", "material"):
                    self.assertEqual(int(cell(table, k, i)), g[k], table)
                self.assertEqual(float(cell(table, "moved_yuan", i)),
                                 g["moved_yuan"], table)
        self.assertEqual(len(self.b.find_elements(
            By.CSS_SELECTOR, "#impact-outcomes tbody tr")),
            len(cli["outcomes"]))
        # the histogram of money moved, drawn from the same figures
        drawn = WebDriverWait(self.b, 20).until(lambda b: b.execute_script(
            "var c = document.getElementById('hist');"
            "var ch = window.Chart && Chart.getChart(c);"
            "return ch ? ch.data.datasets[0].data : null;"))
        self.assertEqual(drawn, cli["histogram"]["counts"])
        self.assertEqual(sum(drawn), sum(g["up"] + g["down"]
                                         for g in cli["by_kind"]))
        self.assertGreater(sum(drawn), 0)
        # the rules that fire differently, and each changed decision
        rules = {r.find_element(By.TAG_NAME, "code").text
                 for r in self.b.find_elements(By.CSS_SELECTOR,
                                               "#impact-rules tbody tr")}
        self.assertEqual(rules, {r for r, n in cli["rules"].items()
                                 if n["before"] != n["after"]})
        ids = [a.text for a in self.b.find_elements(
            By.CSS_SELECTOR, "#impact-changes td[data-key=decision_id] a")]
        self.assertEqual(ids, [c["decision_id"] for c in cli["changes"]])
        self.assertIn(self.ids["C-150"], ids)
        self.assertNotIn(self.ids["C-110"], ids)  # a day before the window
        self.submit(self.b.find_element(By.LINK_TEXT, self.ids["C-150"]))
        self.assertEqual(self.h1(), "Decision")
        self.assertIn("C-150", self.b.find_element(By.TAG_NAME, "main").text)

    def test_impact_downloads(self):
        """The Impact page's downloads are the files `verdict replay
        --format csv|html` writes for the same window, byte for byte:
        one computation, one writer (core/report.c)."""
        path = os.path.join(self.policies, "national", "compensation.lua")
        with open(path) as f:
            src = f.read()

        def restore():
            with open(path, "w") as f:
                f.write(src)
        self.addCleanup(restore)
        with open(path, "w") as f:  # double refunds made triple
            f.write(src.replace("multiplier = 2,", "multiplier = 3,", 1))
        since, until = "2026-11-23T00:00:00+08:00", "2026-11-24T00:00:00+08:00"
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/impact"))
        for field, value in (("at_since", since), ("at_until", until),
                             ("kind", "compensation")):
            self.b.find_element(By.ID, field).clear()  # the last run's
            self.b.find_element(By.ID, field).send_keys(value)
        self.submit(self.b.find_element(By.ID, "run"))
        WebDriverWait(self.b, 60).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, "#impact-state.done"))
        links = {a.get_attribute("href").rsplit("/", 1)[1]: a
                 for a in self.b.find_elements(By.CSS_SELECTOR,
                                               "#downloads a")}
        self.assertEqual(sorted(links), ["report.csv", "report.html"])
        for fmt in ("csv", "html"):
            c = http.client.HTTPConnection("127.0.0.1", self.d.http_port,
                                           timeout=20)
            c.request("GET", "/console/impact/report." + fmt, headers={
                "Authorization": "Bearer " + TOKENS["auditor"][1]})
            r = c.getresponse()
            got = r.read().decode()
            c.close()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Disposition"),
                             'attachment; filename="impact-report.%s"' % fmt)
            # the options in the order the page describes its selection
            rc, out, err = run_cli(
                "replay", "--db", self.d.db, "--against", self.policies,
                "--baseline", "active", "--at-since", since,
                "--at-until", until, "--kind", "compensation",
                "--format", fmt)
            self.assertEqual(rc, 0, err)
            # the two replays took their own time: the report's data
            # says how long; everything else is the same bytes
            timing = re.compile(r'"seconds":[0-9.]+,'
                                r'"decisions_per_second":[0-9]+')
            self.assertEqual(len(timing.findall(got)),
                             1 if fmt == "html" else 0)
            self.assertEqual(timing.sub("TIMING", got),
                             timing.sub("TIMING", out), fmt)
            self.assertIn(self.ids["C-150"], got)
            self.assertNotIn(self.ids["C-110"], got)  # outside the window
        # each changed decision links to both versions, side by side
        rc, out, err = run_cli(
            "replay", "--db", self.d.db, "--against", self.policies,
            "--baseline", "active", "--at-since", since,
            "--at-until", until, "--kind", "compensation", "--format", "json")
        self.assertEqual(rc, 0, err)
        change = [c for c in json.loads(out)["changes"]
                  if c["decision_id"] == self.ids["C-150"]][0]
        row = [r for r in self.b.find_elements(By.CSS_SELECTOR,
                                               "#impact-changes tbody tr")
               if self.ids["C-150"] in r.text][0]
        self.submit(row.find_element(By.LINK_TEXT, "baseline and candidate"))
        self.shot("impact-versions")
        self.assertEqual(self.h1(), "Baseline and candidate")
        self.assertTrue(self.b.find_element(By.ID, "recorded").get_attribute(
            "href").endswith("/console/decisions/" + self.ids["C-150"]))
        shown = {r.find_element(By.TAG_NAME, "th").text:
                 [r.find_element(By.CSS_SELECTOR, "td[data-key=%s]" % k).text
                  for k in ("old", "new", "recorded")]
                 for r in self.b.find_elements(By.CSS_SELECTOR,
                                               "#versions tbody tr")}
        self.assertEqual(sorted(shown), sorted(f["field"]
                                               for f in change["fields"]))
        offer = [f for f in change["fields"]
                 if f["field"] == "result.offer_fen"][0]
        self.assertEqual(shown["result.offer_fen"],
                         [str(offer["old"]), str(offer["new"]),
                          str(offer["recorded"])])
        self.assertEqual(offer["new"], offer["old"] * 3 // 2)
        self.assertEqual(self.b.find_element(By.ID, "gained").text,
                         ", ".join(change["rules_gained"]) or "-")
        self.b.get(self.url("/console/impact/decision/" + self.ids["C-110"]))
        self.assertIn("is not among the changed decisions",
                      self.b.find_element(By.TAG_NAME, "main").text)
        # no report to download for a credential without the audit role
        c = http.client.HTTPConnection("127.0.0.1", self.d.http_port,
                                       timeout=20)
        c.request("GET", "/console/impact/report.csv", headers=CRM)
        r = c.getresponse()
        self.assertNotIn(self.ids["C-150"], r.read().decode())
        self.assertEqual(r.status, 403)
        c.close()

    def test_impact_refuses_bad_input(self):
        self.login(TOKENS["auditor"][1])
        self.b.get(self.url("/console/impact"))
        box = self.b.find_element(By.ID, "candidate")
        box.clear()
        box.send_keys("sha256:ffff")
        self.submit(self.b.find_element(By.ID, "run"))
        self.assertIn("candidate: no stored revision 'sha256:ffff'",
                      self.b.find_element(By.CSS_SELECTOR, ".refused").text)
        self.b.find_element(By.ID, "at_since").send_keys("yesterday")
        self.submit(self.b.find_element(By.ID, "run"))
        self.assertIn("The field at_since is not valid",
                      self.b.find_element(By.CSS_SELECTOR, ".refused").text)

    def test_logout(self):
        self.login(TOKENS["auditor"][1])
        self.submit(self.b.find_element(By.CSS_SELECTOR, ".logout button"))
        self.assertEqual(self.h1(), "Log in")
        self.assertIsNone(self.b.get_cookie("verdict_token"))
        self.b.get(self.url("/console/health"))
        self.assertEqual(self.h1(), "Log in")



class Revisions(ConsoleCase):
    """Two revisions side by side, and a revision's files, on a console
    without --tokens (loopback: no login)."""

    @classmethod
    def setUpClass(cls):
        cls.start_daemon("console-rev")
        try:
            path = os.path.join(cls.policies, "national", "compensation.lua")
            with open(path) as f:
                src = f.read()
            # a basis reworded: the bundle's tests still pass, so SIGHUP
            # activates it
            assert "refunded double," in src
            with open(path, "w") as f:
                f.write(src.replace("refunded double,", "refunded twice,", 1))
            _, _, ready = cls.d.call("GET", "/health/ready")
            cls.d.proc.send_signal(signal.SIGHUP)  # reload: a new revision
            deadline = time.time() + 30
            while cls.d.call("GET", "/health/ready")[2]["revision"] == \
                    ready["revision"]:
                assert time.time() < deadline, cls.d.read_log()
                time.sleep(0.05)
            cls.b = browser()
        except BaseException:
            cls.d.stop()
            raise

    def submit(self, button):
        submit(self.b, button)

    def test_side_by_side(self):
        self.b.get(self.url("/console/revisions"))
        revs = [r.find_element(By.TAG_NAME, "code").text
                for r in self.b.find_elements(By.CSS_SELECTOR,
                                              "#revisions tbody tr")]
        self.assertEqual(len(revs), 2)
        # previous against active: the defaults
        self.submit(self.b.find_element(By.CSS_SELECTOR,
                                        "#compare button"))
        self.b.save_screenshot(os.path.join(self.tmp, "diff.png"))
        tables = self.b.find_elements(By.CSS_SELECTOR, "#diff table.diff")
        self.assertEqual(len(tables), 1)
        self.assertIn("a/national/compensation.lua",
                      tables[0].find_element(By.TAG_NAME, "caption").text)
        old = [c.text for c in tables[0].find_elements(By.CSS_SELECTOR,
                                                       "td.del")]
        new = [c.text for c in tables[0].find_elements(By.CSS_SELECTOR,
                                                       "td.add")]
        self.assertEqual(len(old), 1)
        self.assertEqual(len(new), 1)
        self.assertIn("refunded double,", old[0])
        self.assertIn("refunded twice,", new[0])
        self.assertEqual(old[0].replace("double", "twice", 1), new[0])
        # on the same row, each with its line number in its file
        row = tables[0].find_element(By.XPATH, ".//tr[td[@class='del']]")
        nos = [int(c.text) for c in row.find_elements(By.CSS_SELECTOR,
                                                      "td.no")]
        with open(os.path.join(POLICIES, "national",
                               "compensation.lua")) as f:
            line = next(i for i, text in enumerate(f, 1)
                        if "refunded double," in text)
        self.assertEqual(nos, [line, line])
        # a revision against itself, by two of its names
        self.b.get(self.url("/console/revisions/diff?a=active&b="
                            + revs[0][7:19]))
        self.assertTrue(self.b.find_elements(By.ID, "same"))
        self.b.get(self.url("/console/revisions/diff?a=nothing&b=active"))
        self.assertIn("a: 'nothing'", self.b.find_element(
            By.CSS_SELECTOR, ".refused").text)

    def test_files(self):
        self.b.get(self.url("/console/revisions"))
        row = self.b.find_elements(By.CSS_SELECTOR, "#revisions tbody tr")[0]
        count = int(row.find_elements(By.TAG_NAME, "td")[2].text)
        self.submit(row.find_elements(By.TAG_NAME, "td")[2]
                    .find_element(By.TAG_NAME, "a"))
        paths = [a.text for a in self.b.find_elements(
            By.CSS_SELECTOR, "#files tbody td a")]
        self.assertEqual(len(paths), count)
        self.assertIn("national/compensation.lua", paths)
        self.assertEqual(paths, sorted(paths))
        self.submit(self.b.find_element(By.LINK_TEXT,
                                        "national/compensation.lua"))
        text = self.b.find_element(By.ID, "file").text
        self.assertIn("refunded twice,", text)  # the newest: the reload's
        self.b.get(self.url("/console/revisions/files?revision=active"
                            "&path=no/such.lua"))
        self.assertIn("not a file of", self.b.find_element(
            By.CSS_SELECTOR, ".refused").text)

if __name__ == "__main__":
    unittest.main()
