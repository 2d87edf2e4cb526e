"""verdict eval: trying a case offline, nothing recorded (issue 13)."""
import json
import os
import re
import shutil
import sqlite3
import tempfile
import unittest

from harness import AT, FIXTURES, POLICIES, ROOT, Daemon, request, run_cli

MINI = os.path.join(FIXTURES, "mini")

EXEMPT = {"complaint_id": "C-1", "category": "broadband_fault",
          "customer_grade": "retail", "cause": "customer",
          "repair_overdue_hours": 50}
LATE = dict(EXEMPT, cause="carrier", repair_overdue_hours=300)


def eval_cli(*args, stdin=None):
    return run_cli("eval", *args, stdin=stdin)


def decisions(db):
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    try:
        return c.execute("SELECT count(*) FROM decisions").fetchone()[0]
    finally:
        c.close()


class Eval(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="verdict-eval-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_the_daemons_response_and_nothing_recorded(self):
        d = Daemon(POLICIES, tmp=self.tmp, admin=True)
        try:
            c = d.connect()
            live = c.call(**request("compensation", "GD", LATE, rid="x"))
            c.close()
            before = decisions(d.db)
            rc, out, err = eval_cli("compensation", "--region", "GD", "--at", AT,
                                    "--id", "x", "--policies", POLICIES,
                                    "--db", d.db, stdin=json.dumps(LATE).encode())
            self.assertEqual(rc, 0, err)
            self.assertEqual(len(out.splitlines()), 1, out)
            got = json.loads(out)
            # the same response, but no decision_id: nothing was recorded
            self.assertNotIn("decision_id", got)
            for r in (got, live):
                r.pop("elapsed_us")
                r.pop("decision_id", None)
            self.assertEqual(got, live)
            self.assertGreater(got["result"]["offer_fen"], 0)
            # the same against the revision the daemon stored, by a prefix
            prefix = live["revision"][len("sha256:"):][:8]
            rc, out2, err = eval_cli("compensation", "--region", "GD", "--at", AT,
                                     "--id", "x", "--revision", prefix, "--db", d.db,
                                     stdin=json.dumps(LATE).encode())
            self.assertEqual(rc, 0, err)
            got2 = json.loads(out2)
            got2.pop("elapsed_us")
            self.assertEqual(got2, got)
            self.assertEqual(decisions(d.db), before)
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
        self.assertEqual(decisions(d.db), before)

    def test_history_questions_are_answered_from_the_database(self):
        def esc(cid):
            return {"complaint_id": cid, "customer_id": "U-77",
                    "category": "network", "customer_grade": "retail",
                    "received_at": "2026-11-20T10:00:00+08:00",
                    "handled_by": "frontline"}
        d = Daemon(POLICIES, tmp=self.tmp)
        try:
            c = d.connect()
            for cid in ("C-71", "C-72"):  # decided the day before
                r = c.call(**request("escalation", "BJ", esc(cid),
                                     at="2026-11-22T10:00:00+08:00"))
                self.assertNotIn("error", r)
            c.close()
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
        before = decisions(d.db)
        case = json.dumps(esc("C-73")).encode()
        rc, out, err = eval_cli("escalation", "--region", "BJ", "--at", AT,
                                "--policies", POLICIES, "--db", d.db, stdin=case)
        self.assertEqual(rc, 0, err)
        self.assertIn("repeat_complaints", json.loads(out)["result"]["warnings"])
        # no database: the questions are not asked, as in verdict test
        rc, out, err = eval_cli("escalation", "--region", "BJ", "--at", AT,
                                "--policies", POLICIES, "--db",
                                os.path.join(self.tmp, "none.db"), stdin=case)
        self.assertEqual(rc, 0, err)
        self.assertIn("ctx.history is absent", err)
        self.assertNotIn("repeat_complaints", json.loads(out)["result"]["warnings"])
        self.assertEqual(decisions(d.db), before)

    def test_explain_names_each_rule_and_what_it_read(self):
        path = self.write("case.json", json.dumps(EXEMPT, indent=2))
        rc, plain, err = eval_cli("compensation", "--region", "GD", "--at", AT,
                                  "--policies", POLICIES, path)
        self.assertEqual(rc, 0, err)
        rc, out, err = eval_cli("compensation", "--region", "GD", "--at", AT,
                                "--policies", POLICIES, "--explain", path)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        # the response first, the same decision as without --explain
        first, plain = json.loads(lines[0]), json.loads(plain)
        first.pop("elapsed_us"), plain.pop("elapsed_us")
        self.assertEqual(first, plain)
        self.assertEqual(first["result"]["offer_fen"], 0)
        text = "\n".join(lines[1:])
        self.assertRegex(lines[1], r"^explain: \d+ rules considered$")
        # fired, with the fact its condition read
        i = lines.index("  fired  exemption/comp.exempt.customer")
        self.assertEqual(lines[i + 1].strip(), 'read cause = "customer"')
        # not fired, and why: the value that made the condition false
        i = lines.index("  -      components/comp.repair.late")
        self.assertEqual(lines[i + 1].strip(), "false: exempt = true")
        self.assertIn("approval/comp.approval.frontline", text)
        # the late repair fires when the carrier caused it
        rc, out, err = eval_cli("compensation", "--region", "GD", "--at", AT,
                                "--policies", POLICIES, "--explain",
                                stdin=json.dumps(LATE).encode())
        self.assertEqual(rc, 0, err)
        self.assertIn("  fired  components/comp.repair.late", out.splitlines())
        self.assertNotIn("  fired  exemption/comp.exempt.customer", out)

    def test_explaining_changes_no_decision(self):
        # every kind of the bundled policies, each decided through the
        # explaining tables and through the daemon's own: the same answers
        reqs = os.path.join(ROOT, "examples", "requests.ndjson")
        rc, plain, err = eval_cli("--batch", "--policies", POLICIES, reqs)
        self.assertEqual(rc, 0, err)
        rc, out, err = eval_cli("--batch", "--policies", POLICIES, "--explain", reqs)
        self.assertEqual(rc, 0, err)
        responses = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        plain = [json.loads(l) for l in plain.splitlines()]
        self.assertEqual(len(responses), 4)
        for a, b in zip(responses, plain):
            a.pop("elapsed_us"), b.pop("elapsed_us")
            self.assertEqual(a, b)
        self.assertEqual({r["kind"] for r in responses},
                         {"sla", "compensation", "escalation", "appeal"})
        counts = re.findall(r"^explain: (\d+) rules considered$", out, re.M)
        self.assertEqual(len(counts), 4)
        self.assertTrue(all(int(n) > 0 for n in counts), counts)

    def test_batch_and_compare(self):
        other = os.path.join(self.tmp, "mini5")
        shutil.copytree(MINI, other)
        gd = os.path.join(other, "regions", "GD", "compensation.lua")
        with open(gd) as f:
            text = f.read()
        self.assertIn("P.multiplier = 3", text)
        with open(gd, "w") as f:
            f.write(text.replace("P.multiplier = 3", "P.multiplier = 5"))
        cases = self.write("cases.ndjson", "\n".join([
            json.dumps({"charged_fen": 5000, "due_fen": 3000}),
            json.dumps({"id": 7, "kind": "compensation", "region": "BJ", "at": AT,
                        "input": {"charged_fen": 5000, "due_fen": 3000}}),
            "",
            json.dumps({"charged_fen": 4000, "due_fen": 3000}),
        ]) + "\n")
        rc, out, err = eval_cli("compensation", "--region", "GD-SZ", "--at", AT,
                                "--policies", MINI, "--batch", cases)
        self.assertEqual(rc, 0, err)
        got = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([r["result"]["offer_fen"] for r in got], [6000, 4000, 3000])
        self.assertEqual([r["id"] for r in got], ["eval", 7, "eval"])
        self.assertEqual(got[1]["policy_region"], "national")
        # compared with the directory where GD pays five times: BJ is the same
        rc, out, err = eval_cli("compensation", "--region", "GD-SZ", "--at", AT,
                                "--policies", MINI, "--batch", "--compare", other,
                                cases)
        self.assertEqual(rc, 1, out + err)
        lines = out.splitlines()
        self.assertEqual(lines[0], 'line 1, id "eval" differs:')
        self.assertEqual(lines[1], "  result.offer_fen: 6000 -> 10000")
        self.assertEqual(lines[2], 'line 4, id "eval" differs:')
        self.assertEqual(lines[3], "  result.offer_fen: 3000 -> 5000")
        self.assertRegex(lines[4], r"^3 cases, 2 differ between sha256:\w+ and sha256:\w+$")
        # compared with itself: no difference, exit 0
        rc, out, err = eval_cli("compensation", "--region", "GD-SZ", "--at", AT,
                                "--policies", MINI, "--compare", MINI,
                                stdin=b'{"charged_fen": 5000, "due_fen": 3000}')
        self.assertEqual(rc, 0, out + err)
        self.assertIn("no difference between", out)

    def test_errors(self):
        rc, out, err = eval_cli("compensation", "--region", "GD", "--policies",
                                MINI, stdin=b"{not json")
        self.assertEqual(rc, 2)
        self.assertIn("verdict eval: stdin:", err)
        # an error response is printed as the daemon would, exit 1
        rc, out, err = eval_cli("compensation", "--region", "XX", "--policies",
                                MINI, stdin=b"{}")
        self.assertEqual(rc, 1, err)
        self.assertEqual(json.loads(out)["error"]["code"], "unknown_region")
        rc, out, err = eval_cli("compensation", "--region", "GD", "--policies",
                                MINI, "--revision", "active", stdin=b"{}")
        self.assertEqual(rc, 2)
        self.assertIn("give one", err)
        rc, out, err = eval_cli("compensation", "--policies", MINI, stdin=b"{}")
        self.assertEqual(rc, 2)
        self.assertIn("KIND and --region are required", err)
        rc, out, err = eval_cli("compensation", "--region", "GD", "--revision",
                                "beefbeef", "--db", os.path.join(self.tmp, "no.db"),
                                stdin=b"{}")
        self.assertEqual(rc, 2, err)
        self.assertIn("no.db': no such file", err)
        bad = self.write("bad.ndjson", '{"charged_fen": 1, "due_fen": 1}\n[1]\n')
        rc, out, err = eval_cli("compensation", "--region", "GD", "--policies",
                                MINI, "--batch", bad)
        self.assertEqual(rc, 2)
        self.assertIn("bad.ndjson:2: expected a JSON object", err)


class Help(unittest.TestCase):
    def test_every_command_answers_help(self):
        # every entry of the dispatch table, read from the source, so that
        # a command added later is held to it too
        with open(os.path.join(ROOT, "core", "cmd", "verdict.c")) as f:
            src = f.read()
        table = src[src.index("} commands[] = {"):]
        names = re.findall(r'\{"([a-z-]+)", vd_cli_\w+\}', table[:table.index("};")])
        self.assertGreaterEqual(len(names), 16, names)
        for name in ("eval", "tag", "export", "diff", "revisions", "decide"):
            self.assertIn(name, names)
        for name in names:
            for flag in ("--help", "-h"):
                rc, out, err = run_cli(name, flag)
                self.assertEqual((rc, err), (0, ""), "%s %s" % (name, flag))
                first = out.splitlines()[0]
                self.assertTrue(first.startswith("usage: verdict"), (name, out))
                self.assertIn(name, first, (name, out))
        # after other options too, and with the options a command takes
        rc, out, err = run_cli("eval", "sla", "--region", "GD", "--help")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("--explain", out)
        rc, out, err = run_cli("--admin-socket", "/nonexistent", "activate", "-h")
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("rollback", out)


if __name__ == "__main__":
    unittest.main()
