"""The bundled policies served by the real daemon, through every door a
back-office team uses: the CLI, raw sockets and the example client."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import AT, POLICIES, ROOT, Daemon, run_cli

EXAMPLES = os.path.join(ROOT, "examples")


class BundledPolicies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(POLICIES, tcp=True)

    @classmethod
    def tearDownClass(cls):
        if cls.d.stop() != 0:
            raise AssertionError(cls.d.read_log())

    def decide(self, kind, region):
        rc, out, err = self.d.cli("decide", kind, "--region", region, "--at", AT,
                                  os.path.join(EXAMPLES, kind + ".json"))
        self.assertEqual(rc, 0, out + err)
        return json.loads(out)

    def test_all_four_kinds_through_the_cli(self):
        sla = self.decide("sla", "GD-SZ")
        self.assertEqual(sla["policy_region"], "GD-SZ")
        for m in ("acceptance", "first_feedback", "investigation", "solution",
                  "operator_reply", "repair"):
            self.assertIn(m, sla["result"]["deadlines"])
            self.assertIn(sla["result"]["status"][m],
                          ("met", "pending", "at_risk", "breached"))
        comp = self.decide("compensation", "GD-SZ")
        self.assertEqual(comp["policy_region"], "GD")
        self.assertEqual(comp["result"]["offer_fen"], 8000)
        self.assertIsInstance(comp["result"]["offer_fen"], int)
        self.assertIn(comp["result"]["approval_level"],
                      ("frontline", "team_lead", "district", "city", "province"))
        self.assertTrue(comp["result"]["claim_beyond_basis"])
        esc = self.decide("escalation", "BJ")
        self.assertTrue(esc["result"]["incident"])
        self.assertIn("regulator", esc["result"]["warnings"])
        app = self.decide("appeal", "national")
        self.assertEqual(app["result"]["outcome"], "enterprise_liable")
        self.assertTrue(app["result"]["counts_against_enterprise"])
        for r in (sla, comp, esc, app):
            self.assertTrue(r["trace"])
            for t in r["trace"]:
                self.assertTrue(t["rule"] and t["basis"])

    def test_bad_input_names_the_field(self):
        rc, out, err = self.d.cli("decide", "compensation", "--region", "GD",
                                  "--at", AT, "-",
                                  stdin=b'{"complaint_id":"C","category":"billing",'
                                        b'"customer_grade":"retail","cause":"carrier",'
                                        b'"charged_fen":"12.5","due_fen":1}')
        self.assertEqual(rc, 1)
        r = json.loads(out)
        self.assertEqual(r["error"]["code"], "bad_input")
        self.assertEqual(r["error"]["path"], "input.charged_fen")

    def test_bad_input_lists_every_bad_field(self):
        # unknown field, a wrong type, a missing required field and a field
        # another one requires: all in one answer, in the documented order
        rc, out, err = self.d.cli("decide", "compensation", "--region", "GD",
                                  "--at", AT, "-",
                                  stdin=b'{"complaint_id":"C","category":"billing",'
                                        b'"cause":"carrier","colour":"red",'
                                        b'"charged_fen":"12.5","fraud_established":true,'
                                        b'"goodwill_fen":-1}')
        self.assertEqual(rc, 1)
        e = json.loads(out)["error"]
        self.assertEqual(e["code"], "bad_input")
        self.assertEqual([x["path"] for x in e["errors"]],
                         ["input.colour", "input.charged_fen", "input.customer_grade",
                          "input.goodwill_fen", "input.fee_fen"])
        # the first is still path and message
        self.assertEqual(e["path"], e["errors"][0]["path"])
        self.assertEqual(e["message"], e["errors"][0]["message"])
        self.assertIn("unknown field", e["message"])
        self.assertIn("required: expected one of", e["errors"][2]["message"])
        self.assertIn("required when fraud_established is given", e["errors"][4]["message"])
        # one bad field: a list of one
        rc, out, err = self.d.cli("decide", "compensation", "--region", "GD",
                                  "--at", AT, "-",
                                  stdin=b'{"complaint_id":"C","category":"billing",'
                                        b'"customer_grade":"retail","cause":"carrier",'
                                        b'"charged_fen":"12.5","due_fen":1}')
        e = json.loads(out)["error"]
        self.assertEqual(e["errors"], [{"path": e["path"], "message": e["message"]}])
        # a policy's own check of its input (after the schema): a list of one
        rc, out, err = self.d.cli("decide", "compensation", "--region", "GD",
                                  "--at", AT, "-",
                                  stdin=b'{"complaint_id":"C","category":"broadband_fault",'
                                        b'"customer_grade":"retail","cause":"carrier",'
                                        b'"repair_overdue_hours":30,"monthly_rental_fen":100}')
        e = json.loads(out)["error"]
        self.assertEqual(e["path"], "input.fault_hours")
        self.assertEqual(e["errors"], [{"path": e["path"], "message": e["message"]}])

    def test_cli_exit_codes(self):
        rc, _, err = run_cli("--socket", "/nonexistent.sock", "ping")
        self.assertEqual(rc, 3)
        self.assertIn("/nonexistent.sock", err)
        rc, _, _ = run_cli("decide", "sla")
        self.assertEqual(rc, 2)
        rc, out, _ = self.d.cli("ping")
        self.assertEqual(rc, 0)
        self.assertTrue(json.loads(out)["pong"])

    def test_example_client_raw_and_decide(self):
        with open(os.path.join(EXAMPLES, "requests.ndjson"), "rb") as f:
            p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "client.py"),
                                "--socket", self.d.socket, "--raw"], stdin=f,
                               capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual([l["id"] for l in lines],
                         ["sla-1", "comp-1", "esc-1", "appeal-1"])
        p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "client.py"),
                            "--connect", "127.0.0.1:%d" % self.d.port, "--at", AT,
                            "compensation", "BJ",
                            os.path.join(EXAMPLES, "compensation.json")],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["policy_region"], "BJ")

    def test_example_client_library_pipelines(self):
        sys.path.insert(0, EXAMPLES)
        from client import Verdict, VerdictError
        with open(os.path.join(EXAMPLES, "sla.json")) as f:
            sla = json.load(f)
        with Verdict(socket_path=self.d.socket) as v:
            answers = v.decide_many([("sla", r, sla) for r in ("GD", "GD-SZ", "BJ")],
                                    at=AT)
            self.assertEqual([a["policy_region"] for a in answers],
                             ["GD", "GD-SZ", "national"])
            with self.assertRaises(VerdictError) as e:
                v.decide("sla", "ZZ", sla, at=AT)
            self.assertEqual(e.exception.code, "unknown_region")


class PolicyTools(unittest.TestCase):
    def test_verdict_test_and_check(self):
        rc, out, _ = run_cli("test", POLICIES)
        self.assertEqual(rc, 0, out)
        self.assertRegex(out.splitlines()[-1], r"^\d+ passed, 0 failed$")
        self.assertNotIn("not fired", out)
        rc, out, _ = run_cli("check", POLICIES)
        self.assertEqual(rc, 0, out)
        self.assertIn("ready to go live", out)

    def test_fired_names_a_whole_rule_id(self):
        # "outcome" is part of several rule ids but the id of none
        tmp = tempfile.mkdtemp(prefix="verdict-fired-")
        try:
            bundle = os.path.join(tmp, "policies")
            shutil.copytree(POLICIES, bundle)
            path = os.path.join(bundle, "national", "appeal_test.lua")
            with open(path) as f:
                text = f.read()
            self.assertIn('fired = { "appeal.window.other" }', text)
            with open(path, "w") as f:
                f.write(text.replace('fired = { "appeal.window.other" }',
                                     'fired = { "window" }', 1))
            rc, out, _ = run_cli("test", bundle)
            self.assertEqual(rc, 1, out)
            self.assertIn("fired: expected rule window", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
