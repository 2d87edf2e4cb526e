"""Impact analysis as an auditor runs it: a real daemon fills a history,
then `verdict replay --against CANDIDATE` compares a changed policy
directory with a baseline (the active revision by default), reports only
their difference, tells material changes from immaterial ones, totals the
money in yuan, and writes the same figures as JSON, CSV and one HTML file
that opens with no server."""
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import tempfile
import unittest

from harness import AT, POLICIES, Daemon, request, run_cli

EARLY = "2026-11-20T10:00:00+08:00"
CHART_JS = "/usr/share/javascript/chart.js/chart.min.js"

# (region, grade, charged, due, at): billing complaints caused by the
# carrier; an overcharge is refunded double (the national rule the
# candidate changes), none when charged <= due.
COMPENSATIONS = [
    ("GD-SZ", "retail", 12800, 8800, AT),
    ("GD-SZ", "local_a", 50000, 10000, AT),
    ("GD", "retail", 9000, 9000, AT),
    ("BJ", "retail", 30000, 20000, EARLY),
    ("BJ", "province", 700000, 100000, AT),
    ("national", "retail", 5000, 4000, EARLY),
    ("GX", "group", 100, 300, AT),
]


def compensation(n, region, grade, charged, due, at):
    return request("compensation", region, {
        "complaint_id": "C-%d" % n, "category": "billing",
        "customer_grade": grade, "cause": "carrier",
        "charged_fen": charged, "due_fen": due}, at=at, rid=n)


def requests():
    out = [compensation(n, *c) for n, c in enumerate(COMPENSATIONS)]
    with open(os.path.join(os.path.dirname(POLICIES), "examples",
                           "requests.ndjson")) as f:
        out += [json.loads(line) for line in f if line.strip()]
    # national SLA clocks for retail customers
    for n in range(2):
        out.append(request("sla", "national", {
            "complaint_id": "S-%d" % n, "category": "network",
            "channel": "hotline", "customer_grade": "retail",
            "received_at": "2026-11-2%dT09:00:00+08:00" % (1 + n)}, rid="sla-%d" % n))
    # refused: a negative amount
    out.append(request("compensation", "GD", {
        "complaint_id": "C-bad", "category": "billing",
        "customer_grade": "retail", "cause": "carrier",
        "charged_fen": -1, "due_fen": 0}, rid="bad"))
    return out


def edited(tmp, name, old, new, kind="compensation", more=()):
    """A copy of the policies with an edit in national/KIND.lua, and
    MORE: (kind, old, new) edits."""
    d = os.path.join(tmp, name)
    shutil.copytree(POLICIES, d)
    for kind, old, new in ((kind, old, new),) + tuple(more):
        path = os.path.join(d, "national", kind + ".lua")
        with open(path) as f:
            text = f.read()
        assert text.count(old) == 1, old
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))
    return d


def decide_all(d, reqs):
    c = d.connect()
    out = [c.call(**r) for r in reqs]
    c.close()
    assert d.stop() == 0, d.read_log()
    return out


def yuan(fen):
    return "%s%d.%02d" % ("-" if fen < 0 else "", abs(fen) // 100, abs(fen) % 100)


class Impact(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-impact-")
        cls.reqs = requests()
        # the history: every request decided by the policies as they are,
        # then by a candidate that refunds triple, which is active since
        cls.double = decide_all(Daemon(POLICIES, tmp=cls.tmp), cls.reqs)
        cls.triple_dir = edited(cls.tmp, "triple", "multiplier = 2,",
                                "multiplier = 3,")
        # its own tests expect double, so it starts unchecked
        cls.triple = decide_all(Daemon(cls.triple_dir, tmp=cls.tmp,
                                       unchecked=True), cls.reqs)
        cls.db = os.path.join(cls.tmp, "verdict.db")
        with sqlite3.connect(cls.db) as con:
            revs = [r for (r,) in con.execute(
                "SELECT revision FROM decisions GROUP BY revision "
                "ORDER BY min(seq)")]
        assert len(revs) == 2, revs
        cls.rev_double, cls.rev_triple = revs
        # an echoed value only: the goodwill cap (no goodwill is proposed)
        cls.cap_dir = edited(cls.tmp, "cap", "retail = 40000,",
                             "retail = 45000,")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def replay(self, *args, rc=0):
        code, out, err = run_cli("replay", "--db", self.db, *args)
        self.assertEqual(code, rc, out + err)
        return out

    def json(self, *args):
        return json.loads(self.replay(*args, "--format", "json"))

    def offers(self, answers, region=None):
        return [a["result"]["offer_fen"] for r, a in zip(self.reqs, answers)
                if r["kind"] == "compensation" and "result" in a and
                (region is None or r["region"] == region)]

    def test_the_active_revision_is_the_default_baseline(self):
        # the candidate is already live: against it nothing changes, though
        # every triple refund differs from what was recorded before it
        r = self.json("--against", self.triple_dir, "--revision", self.rev_double)
        self.assertEqual(r["baseline"], "active (%s)" % self.rev_triple)
        self.assertEqual(r["replayed"], len(self.reqs))
        self.assertEqual((r["changed"], r["material"]), (0, 0), r)
        rec = self.json("--against", self.triple_dir, "--revision",
                        self.rev_double, "--baseline", "recorded")
        moved = sum(1 for a, b in zip(self.offers(self.double),
                                      self.offers(self.triple)) if a != b)
        self.assertGreater(moved, 3)
        self.assertEqual(rec["material"], moved)
        self.assertEqual(rec["baseline"], "recorded")

    def test_material_changes_and_money_in_yuan(self):
        for baseline in ("recorded", self.rev_double, POLICIES):
            r = self.json("--against", self.triple_dir, "--baseline", baseline,
                          "--revision", self.rev_double)
            before, after = self.offers(self.double), self.offers(self.triple)
            moved = sum(1 for a, b in zip(before, after) if a != b)
            self.assertEqual((r["changed"], r["material"], r["immaterial"]),
                             (moved, moved, 0), r)
            self.assertEqual(r["offers"]["before"]["total_fen"], sum(before))
            self.assertEqual(r["offers"]["after"]["total_fen"], sum(after))
            self.assertEqual(r["offers"]["moved_yuan"],
                             float(yuan(sum(after) - sum(before))))
            for g in r["by_region"]:
                if g["region"] == "BJ":
                    self.assertEqual(g["before_yuan"],
                                     float(yuan(sum(self.offers(self.double, "BJ")))))
                    self.assertEqual(g["after_yuan"],
                                     float(yuan(sum(self.offers(self.triple, "BJ")))))
            self.assertEqual(sum(r["histogram"]["counts"]), moved)
            self.assertEqual(r["rules"]["comp.billing.double_refund"],
                             {"before": moved, "after": moved})
            self.assertIn({"kind": "compensation", "field": "offer_fen",
                           "as": "money", "changed": moved}, r["outcomes"])
        # each changed decision names its complaint, region, kind and values
        c = next(c for c in r["changes"] if c["complaint_id"] == "C-1")
        self.assertEqual((c["kind"], c["region"], c["material"]),
                         ("compensation", "GD-SZ", True))
        self.assertEqual((c["offer_before_yuan"], c["offer_after_yuan"]),
                         (800.0, 1200.0))
        f = {x["field"]: x for x in c["fields"]}
        self.assertEqual((f["result.offer_fen"]["old"], f["result.offer_fen"]["new"],
                          f["result.offer_fen"]["recorded"]), (80000, 120000, 80000))
        self.assertTrue(f["result.offer_fen"]["outcome"])
        self.assertNotIn("trace", f)  # in full only on request
        t = self.json("--against", self.triple_dir, "--baseline", "recorded",
                      "--revision", self.rev_double, "--traces")
        self.assertIn("trace", [x["field"] for x in t["changes"][0]["fields"]])
        # an approval level that moves is counted from -> to
        self.assertTrue(any(m["field"] == "approval_level" for m in r["level_moves"]),
                        r["level_moves"])

    def test_an_echoed_value_is_an_immaterial_change(self):
        r = self.json("--against", self.cap_dir, "--baseline", POLICIES,
                      "--revision", self.rev_double)
        # the decisions whose cap was the national retail one (BJ sets its
        # own)
        retail = sum(1 for q, a in zip(self.reqs, self.double)
                     if q["kind"] == "compensation" and "result" in a and
                     a["result"]["cap_fen"] == 40000)
        self.assertGreater(retail, 2)
        self.assertEqual((r["changed"], r["material"], r["immaterial"]),
                         (retail, 0, retail), r)
        self.assertEqual(r["offers"]["before"]["total_fen"],
                         r["offers"]["after"]["total_fen"])
        for c in r["changes"]:
            self.assertFalse(c["material"])
            self.assertEqual([x["field"] for x in c["fields"]], ["result.cap_fen"])

    def test_deadlines_and_levels(self):
        # a stricter candidate: standard first feedback within 48 h, not 72;
        # a high-risk escalation reviewed after 2 h, not 4; media exposure
        # goes to the province, not the city
        stricter = edited(self.tmp, "stricter",
                          "first_feedback = { hours = 72 }",
                          "first_feedback = { hours = 48 }", "sla",
                          (("escalation", 'id = "esc.review.high_risk", hours = 4',
                            'id = "esc.review.high_risk", hours = 2'),
                           ("escalation", 'id = "esc.signal.media", level = "city"',
                            'id = "esc.signal.media", level = "province"')))
        r = self.json("--against", stricter, "--baseline", POLICIES,
                      "--revision", self.rev_double)
        national_sla = sum(1 for q in self.reqs
                           if q["kind"] == "sla" and q["region"] == "national")
        media = sum(1 for q in self.reqs if q["kind"] == "escalation" and
                    "media" in q["input"].get("signals", []))
        self.assertEqual((national_sla, media), (2, 1))
        self.assertEqual((r["changed"], r["material"]), (3, 3), r)
        out = {(o["kind"], o["field"]): o for o in r["outcomes"]}
        self.assertEqual(out[("sla", "deadlines")],
                         {"kind": "sla", "field": "deadlines", "as": "deadline",
                          "changed": 2, "earlier": 2, "later": 0})
        self.assertEqual(out[("escalation", "next_review_at")]["earlier"], 1)
        self.assertEqual(r["level_moves"], [
            {"kind": "escalation", "field": "level", "from": "city",
             "to": "province", "count": 1}])
        c = next(c for c in r["changes"] if c["kind"] == "sla")
        f = {x["field"]: x for x in c["fields"]}
        self.assertIn("result.deadlines.first_feedback", f)
        self.assertEqual(c["rules_gained"], [])  # the same rules, other values

    def test_filters(self):
        against = ("--against", self.triple_dir, "--baseline", "recorded")
        by = lambda pred: sum(1 for q in self.reqs if pred(q))
        r = self.json(*against, "--region", "BJ", "--revision", self.rev_double)
        self.assertEqual(r["replayed"], by(lambda q: q["region"] == "BJ"))
        self.assertEqual(r["selection"],
                         "region BJ, decided by %s" % self.rev_double)
        r = self.json(*against, "--error", "bad_input")
        self.assertEqual(r["replayed"], 2)  # one a revision
        r = self.json(*against, "--error", "none", "--revision", self.rev_double,
                      "--kind", "compensation")
        self.assertEqual(r["replayed"], by(lambda q: q["kind"] == "compensation") - 1)
        r = self.json(*against, "--revision", self.rev_double,
                      "--at-until", "2026-11-21T00:00:00+08:00")
        self.assertEqual(r["replayed"], by(lambda q: q.get("at") == EARLY))
        r = self.json(*against, "--revision", self.rev_double,
                      "--at-since", "2026-11-21T00:00:00+08:00")
        self.assertEqual(r["replayed"], by(lambda q: q.get("at") != EARLY))

    def test_csv_lists_the_changed_decisions(self):
        out = self.replay("--against", self.triple_dir, "--baseline", "recorded",
                          "--revision", self.rev_double, "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(out)))
        r = self.json("--against", self.triple_dir, "--baseline", "recorded",
                      "--revision", self.rev_double)
        self.assertEqual(len(rows), r["changed"])
        self.assertEqual(list(rows[0].keys()), [
            "seq", "decision_id", "complaint_id", "kind", "region", "at",
            "material", "baseline_offer_yuan", "candidate_offer_yuan",
            "moved_yuan", "changed_fields", "baseline", "candidate",
            "recorded", "rules_gained", "rules_lost"])
        c1 = next(x for x in rows if x["complaint_id"] == "C-1")
        self.assertEqual((c1["baseline_offer_yuan"], c1["candidate_offer_yuan"],
                          c1["moved_yuan"], c1["material"]),
                         ("800.00", "1200.00", "400.00", "yes"))
        self.assertIn("result.offer_fen", c1["changed_fields"].split("; "))

    def test_html_is_one_self_contained_file(self):
        path = os.path.join(self.tmp, "report.html")
        self.replay("--against", self.triple_dir, "--baseline", "recorded",
                    "--revision", self.rev_double, "--format", "html",
                    "--output", path)
        with open(path, encoding="utf-8") as f:
            html = f.read()
        with open(CHART_JS, encoding="utf-8") as f:
            lib = f.read()
        self.assertIn(lib, html)  # the chart library inlined, whole
        self.assertNotRegex(html, r"<script[^>]+src=|<link[^>]+href=")
        data = re.search(r'<script type="application/json" id=impact-data>'
                         r'(.*?)</script>', html, re.S).group(1)
        data = json.loads(data)
        r = self.json("--against", self.triple_dir, "--baseline", "recorded",
                      "--revision", self.rev_double)
        for k in ("changed", "material", "immaterial", "offers", "by_region",
                  "by_kind", "rules", "histogram"):
            self.assertEqual(data[k], r[k], k)
        for canvas in ("chart-groups", "chart-money", "chart-rules"):
            self.assertIn('<canvas id=%s' % canvas, html)
        self.assertIn("C-1", html)
        self.assertIn("Decisions selected: decided by %s." % self.rev_double, html)
        self.assertIn("comp.billing.double_refund", html)

    def test_html_draws_its_charts_in_chromium(self):
        try:
            import selenium  # noqa: F401
        except ImportError:  # Debian's python3-selenium, from another python3
            import sys
            sys.path.append("/usr/lib/python3/dist-packages")
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        path = os.path.join(self.tmp, "browser.html")
        self.replay("--against", self.triple_dir, "--baseline", "recorded",
                    "--revision", self.rev_double, "--format", "html",
                    "--output", path)
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage"):
            opts.add_argument(a)
        drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                               options=opts)
        try:
            drv.set_window_size(1280, 2000)
            drv.get("file://" + path)
            drv.save_screenshot(os.path.join(self.tmp, "report.png"))
            for canvas in ("chart-groups", "chart-money", "chart-rules"):
                drawn = drv.execute_script(
                    "var c=document.getElementById(arguments[0]);"
                    "if(!c.chartInstance)return -1;"
                    "var d=c.getContext('2d').getImageData(0,0,c.width,c.height).data;"
                    "var n=0;for(var i=3;i<d.length;i+=4)if(d[i])n++;return n;",
                    canvas)
                self.assertGreater(drawn, 100, canvas)
            self.assertEqual(drv.execute_script(
                "return JSON.parse(document.getElementById('impact-data')"
                ".textContent).changed"),
                self.json("--against", self.triple_dir, "--baseline", "recorded",
                          "--revision", self.rev_double)["changed"])
        finally:
            drv.quit()

    def test_revisions_by_any_name(self):
        # a hash prefix and a tag name the same revisions as their full
        # names, for the candidate, the baseline and the --revision filter
        code, out, err = run_cli("tag", self.rev_double, "before-triple",
                                 "--db", self.db, "--who", "test")
        self.assertEqual(code, 0, out + err)
        full = self.json("--against", self.triple_dir,
                         "--baseline", self.rev_double,
                         "--revision", self.rev_double)
        short = self.json("--against", self.triple_dir,
                          "--baseline", "before-triple",
                          "--revision", self.rev_double[7:19])
        self.assertEqual(short["baseline"],
                         "before-triple (%s)" % self.rev_double)
        self.assertGreater(full["material"], 3)
        for k in ("replayed", "changed", "material"):
            self.assertEqual(short[k], full[k], k)
        code, out, err = run_cli("replay", "--db", self.db, "--revision",
                                 "no-such-tag")
        self.assertEqual(code, 2)
        self.assertIn("--revision no-such-tag", err)

    def test_a_bad_candidate_or_baseline_is_named(self):
        code, out, err = run_cli("replay", "--db", self.db, "--against",
                                 os.path.join(self.tmp, "missing"))
        self.assertEqual(code, 2)
        self.assertIn("--against", err)
        code, out, err = run_cli("replay", "--db", self.db, "--against",
                                 self.triple_dir, "--baseline", "sha256:" + "0" * 64)
        self.assertEqual(code, 2)
        self.assertIn("--baseline", err)
        code, out, err = run_cli("replay", "--db", self.db, "--baseline", POLICIES)
        self.assertEqual(code, 2)
        self.assertIn("--baseline needs a candidate", err)
        code, out, err = run_cli("replay", "--db", self.db, "--format", "pdf")
        self.assertEqual(code, 2)
        self.assertIn("--format", err)


if __name__ == "__main__":
    unittest.main()
