"""`verdict schema`: the OpenAPI 3.1 document and the JSON Schemas of each
kind's input, generated from the policies (core/openapi.c), checked with
python3-jsonschema: every schema in it against the JSON Schema 2020-12
metaschema, the document's own structure (references resolve, path
parameters declared, operation ids unique), every example request in
examples/ against it, and a request it refuses is refused by the real
daemon with the same field path.  The contract follows the policies: a
region that adds a field gets its own schema, chosen by region."""
import copy
import json
import os
import re
import shutil
import tempfile
import unittest

import jsonschema

from harness import AT, POLICIES, ROOT, Daemon, request, run_cli

EXAMPLES = os.path.join(ROOT, "examples")
META = jsonschema.Draft202012Validator


def document(*args):
    if "--policies" not in args:
        args += ("--policies", POLICIES)
    rc, out, err = run_cli("schema", *args)
    if rc != 0:
        raise AssertionError("verdict schema %s: %s" % (" ".join(args), err))
    return json.loads(out)


def validator(doc, name):
    """A validator for components.schemas[NAME], its $refs resolved in DOC
    (the document is the root every "#/components/..." points into)."""
    root = {"$ref": "#/components/schemas/" + name,
            "components": doc["components"]}
    return META(root, format_checker=jsonschema.FormatChecker())


def verdict_path(error):
    """The field an error is about, as verdict names it: input.a.b, arrays
    counted from 1 (input.findings[2]).  A missing required property or an
    unknown one is named by itself, as the policy's message does."""
    parts = list(error.absolute_path)
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        parts.append(missing[0])
    elif error.validator == "additionalProperties" and \
            error.validator_value is False:
        known = error.schema.get("properties", {})
        parts.append(sorted(k for k in error.instance if k not in known)[0])
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % (p + 1)
        else:
            out += ("." if out else "") + p
    return out


def refusals(v, instance):
    return sorted({verdict_path(e) for e in v.iter_errors(instance)})


def refs(node):
    if isinstance(node, dict):
        for k, x in node.items():
            if k == "$ref":
                yield x
            else:
                yield from refs(x)
    elif isinstance(node, list):
        for x in node:
            yield from refs(x)


def resolve(doc, ref):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def example_requests():
    """Every decision request in examples/: the lines of requests.ndjson
    with a kind, and each KIND.json as the input of a request."""
    out = []
    with open(os.path.join(EXAMPLES, "requests.ndjson")) as f:
        for line in f:
            if line.strip():
                req = json.loads(line)
                if "kind" in req:
                    out.append(req)
    for name in sorted(os.listdir(EXAMPLES)):
        if name.endswith(".json"):
            with open(os.path.join(EXAMPLES, name)) as f:
                out.append(request(name[:-5], "national", json.load(f)))
    return out


class Document(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = document()

    def test_is_openapi_3_1_for_the_bundle(self):
        doc = self.doc
        self.assertEqual(doc["openapi"], "3.1.0")
        self.assertEqual(doc["jsonSchemaDialect"],
                         "https://json-schema.org/draft/2020-12/schema")
        self.assertRegex(doc["info"]["version"], r"^sha256:[0-9a-f]{64}$")
        for path in ("/v1/decisions", "/v1/decisions/{decision_id}",
                     "/health", "/health/ready", "/metrics",
                     "/v1/openapi.json", "/v1/admin/reload",
                     "/v1/admin/activate", "/v1/admin/revisions",
                     "/v1/admin/diff"):
            self.assertIn(path, doc["paths"])
        kinds = sorted(f[:-4] for f in os.listdir(os.path.join(POLICIES, "national"))
                       if f.endswith(".lua") and not f.endswith("_test.lua"))
        self.assertEqual(kinds, ["appeal", "compensation", "escalation", "sla"])
        for kind in kinds:
            self.assertIn("/v1/decisions/" + kind, doc["paths"])
            self.assertIn("input." + kind, doc["components"]["schemas"])
        self.assertEqual(doc["components"]["schemas"]["DecisionRequest"]
                         ["properties"]["kind"]["enum"], kinds)
        # the health checks need no credential; everything else may
        self.assertEqual(doc["paths"]["/health"]["get"]["security"], [])
        self.assertEqual(doc["paths"]["/health/ready"]["get"]["security"], [])
        self.assertNotIn("security", doc["paths"]["/metrics"]["get"])
        self.assertIn({"bearer": []}, doc["security"])

    def test_compact_and_indented_are_the_same_json(self):
        rc, out, err = run_cli("schema", "--compact", "--policies", POLICIES)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("\n"), 1)
        self.assertEqual(json.loads(out), self.doc)

    def test_every_schema_is_valid_2020_12(self):
        schemas = self.doc["components"]["schemas"]
        self.assertGreater(len(schemas), 8)
        for name, schema in schemas.items():
            with self.subTest(schema=name):
                META.check_schema(schema)
        for item in self.doc["paths"].values():
            for op in item.values():
                for p in op.get("parameters", []):
                    META.check_schema(p["schema"])

    def test_structure(self):
        doc = self.doc
        for ref in set(refs(doc)):
            with self.subTest(ref=ref):
                resolve(doc, ref)
        ids = []
        for path, item in doc["paths"].items():
            templated = set(re.findall(r"{([^}]+)}", path))
            for method, op in item.items():
                self.assertIn(method, ("get", "post"))
                self.assertIn("responses", op)
                self.assertTrue(op["responses"], path)
                ids.append(op["operationId"])
                declared = {p["name"] for p in op.get("parameters", [])
                            if p["in"] == "path"}
                self.assertEqual(declared, templated, path)
                for p in op.get("parameters", []):
                    self.assertIn(p["in"], ("path", "query", "header"))
                    if p["in"] == "path":
                        self.assertTrue(p["required"])
        self.assertEqual(len(ids), len(set(ids)))

    def test_error_codes_are_the_wire_protocols(self):
        codes = (self.doc["components"]["schemas"]["Error"]["properties"]
                 ["error"]["properties"]["code"]["enum"])
        with open(os.path.join(ROOT, "include", "verdict", "error.h")) as f:
            wire = re.findall(r'^\s*X\(\w+,\s*"(\w+)"', f.read(), re.M)
        self.assertEqual(codes, wire)
        self.assertIn("bad_input", codes)

    def test_kind_schema_is_the_documents(self):
        for kind in ("appeal", "compensation", "escalation", "sla"):
            with self.subTest(kind=kind):
                alone = document(kind)
                META.check_schema(alone)
                self.assertEqual(alone.pop("$schema"),
                                 "https://json-schema.org/draft/2020-12/schema")
                self.assertEqual(alone, self.doc["components"]["schemas"]
                                 ["input." + kind])
                # a region with no file of its own: its parent's, or national
                self.assertEqual(document(kind, "--region", "GD-GZ")["required"],
                                 alone["required"])

    def test_unknown_kind_or_region(self):
        rc, out, err = run_cli("schema", "nope", "--policies", POLICIES)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("no kind 'nope'", err)
        rc, _, err = run_cli("schema", "sla", "--region", "ZZ",
                             "--policies", POLICIES)
        self.assertEqual(rc, 1)
        self.assertIn("region 'ZZ'", err)
        rc, _, err = run_cli("schema", "--region", "GD")
        self.assertEqual(rc, 2)

    def test_every_example_request_is_valid(self):
        v = validator(self.doc, "DecisionRequest")
        examples = example_requests()
        self.assertGreaterEqual(len(examples), 8)
        for req in examples:
            with self.subTest(request=req.get("id", req["kind"])):
                self.assertEqual(refusals(v, req), [])
                # and as the body of POST /v1/decisions/KIND
                body = (self.doc["paths"]["/v1/decisions/" + req["kind"]]
                        ["post"]["requestBody"]["content"]["application/json"]
                        ["schema"])
                name = body["$ref"].rsplit("/", 1)[1]
                self.assertEqual(refusals(validator(self.doc, name),
                                          req["input"]), [])


COMP = {"complaint_id": "C-1", "category": "billing",
        "customer_grade": "retail", "cause": "carrier",
        "charged_fen": 12800, "due_fen": 8800}
ESC = {"complaint_id": "C-3", "customer_id": "U-1", "category": "network",
       "customer_grade": "retail", "received_at": "2026-11-20T10:00:00+08:00",
       "handled_by": "frontline", "signals": ["media"]}
SLA = {"complaint_id": "C-1", "category": "broadband_fault",
       "channel": "hotline", "customer_grade": "retail",
       "received_at": "2026-09-30T16:20:00+08:00"}


def changed(base, **fields):
    out = copy.deepcopy(base)
    for k, v in fields.items():
        if v is KeyError:
            del out[k]
        else:
            out[k] = v
    return out


# (request, the path both must name); each has exactly one problem
REFUSED = [
    (request("compensation", "GD-SZ", changed(COMP, charged_fen="lots")),
     "input.charged_fen"),
    (request("compensation", "GD-SZ", changed(COMP, charged_fen=1.5)),
     "input.charged_fen"),
    (request("compensation", "BJ", changed(COMP, cause=KeyError)),
     "input.cause"),
    (request("compensation", "national", changed(COMP, colour="red")),
     "input.colour"),
    (request("compensation", "national", changed(COMP, category="weather")),
     "input.category"),
    (request("compensation", "national", changed(COMP, speed_percent=5000,
                                                 monthly_rental_fen=100)),
     "input.speed_percent"),
    (request("compensation", "national", changed(COMP, due_fen=KeyError)),
     "input.due_fen"),  # charged_fen requires due_fen
    (request("compensation", "national", changed(COMP, due_fen=None)),
     "input.due_fen"),  # null counts as absent
    (request("compensation", "national", changed(COMP, complaint_id="")),
     "input.complaint_id"),
    (request("compensation", "national", changed(COMP, complaint_id="x" * 65)),
     "input.complaint_id"),
    (request("escalation", "BJ", changed(ESC, signals=["media", "tv"])),
     "input.signals[2]"),
    (request("escalation", "BJ", changed(ESC, signals={})),
     "input.signals"),
    (request("escalation", "BJ", changed(ESC, sla_status={"acceptance": "late"})),
     "input.sla_status.acceptance"),
    (request("escalation", "BJ", changed(ESC, sla_status={"typo": "met"})),
     "input.sla_status.typo"),
    (request("sla", "GD", changed(SLA, received_at="yesterday")),
     "input.received_at"),
    (request("sla", "GD", changed(SLA, received_at="2026-09-30T16:20:00")),
     "input.received_at"),
    (request("sla", "GD", SLA) | {"colour": "red"}, "colour"),
    (request("sla", "GD", SLA) | {"at": "soon"}, "at"),
    (request("sla", "GD", SLA) | {"input": []}, "input"),
    (request("weather", "GD", SLA), "kind"),
    (request("sla", "ZZ", SLA), "region"),
]

ACCEPTED = [
    request("compensation", "national", changed(COMP, claimed_fen=None)),
    request("compensation", "GD-SZ", changed(COMP, charged_fen=None,
                                             due_fen=None)),
    request("compensation", "national", changed(COMP, fraud_established=False)),
    request("escalation", "GD-GZ", changed(ESC, sla_status={})),
    request("sla", "GD-SZ", SLA, at=None),
    request("sla", "GD", changed(SLA, area=None, done=None)),
    request("sla", "national", changed(SLA, received_at="2026-09-30T08:20:00Z")),
]


class AgainstTheDaemon(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.conn = cls.daemon.connect()
        cls.doc = document()
        cls.v = validator(cls.doc, "DecisionRequest")

    @classmethod
    def tearDownClass(cls):
        cls.conn.close()
        cls.daemon.stop()
        shutil.rmtree(cls.daemon.tmp, ignore_errors=True)

    def test_refused_with_the_same_path(self):
        for req, path in REFUSED:
            with self.subTest(path=path, request=req):
                self.assertEqual(refusals(self.v, req), [path])
                resp = self.conn.call(**req)
                self.assertIn("error", resp, resp)
                self.assertIn(resp["error"]["code"],
                              ("bad_input", "bad_request", "unknown_kind",
                               "unknown_region"))
                self.assertEqual(resp["error"].get("path"), path, resp)

    def test_accepted_by_both(self):
        for req in ACCEPTED + example_requests():
            with self.subTest(request=req):
                self.assertEqual(refusals(self.v, req), [])
                resp = self.conn.call(**req)
                self.assertNotIn("error", resp, resp)

    def test_revision_is_the_daemons(self):
        pong = self.conn.call(op="ping")
        self.assertEqual(self.doc["info"]["version"], pong["revision"])


BJ_FIELD = '''  fields = {
    bj_case_ref = S.string{ max_len = 16, doc = "the Beijing branch's case number" },
  },
'''


class FollowsThePolicies(unittest.TestCase):
    """A region that adds an input field: its own schema, chosen by region,
    and the daemon agrees on both sides of the choice."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="verdict-schema-")
        cls.bundle = os.path.join(cls.tmp, "policies")
        shutil.copytree(POLICIES, cls.bundle)
        path = os.path.join(cls.bundle, "regions", "BJ", "compensation.lua")
        with open(path) as f:
            text = f.read()
        text = text.replace('local R = require("lib.rules")\n',
                            'local R = require("lib.rules")\n'
                            'local S = require("lib.schema")\n')
        text = text.replace("  params = {", BJ_FIELD + "  params = {", 1)
        with open(path, "w") as f:
            f.write(text)
        cls.doc = document("--policies", cls.bundle)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_region_schema_of_its_own(self):
        schemas = self.doc["components"]["schemas"]
        self.assertIn("input.compensation.BJ", schemas)
        self.assertNotIn("input.compensation.GD", schemas)  # adds nothing
        self.assertIn("bj_case_ref", schemas["input.compensation.BJ"]["properties"])
        self.assertNotIn("bj_case_ref", schemas["input.compensation"]["properties"])
        self.assertNotEqual(self.doc["info"]["version"], document()["info"]["version"])
        body = (self.doc["paths"]["/v1/decisions/compensation"]["post"]
                ["requestBody"]["content"]["application/json"]["schema"])
        self.assertEqual(sorted(r["$ref"] for r in body["anyOf"]),
                         ["#/components/schemas/input.compensation",
                          "#/components/schemas/input.compensation.BJ"])
        alone = document("compensation", "--region", "BJ", "--policies",
                         self.bundle)
        self.assertIn("bj_case_ref", alone["properties"])

    def test_chosen_by_region_as_the_daemon_chooses(self):
        v = validator(self.doc, "DecisionRequest")
        with_ref = changed(COMP, bj_case_ref="BJ-7")
        daemon = Daemon(policies=self.bundle)
        try:
            conn = daemon.connect()
            for region in ("BJ", "national", "GD"):
                req = request("compensation", region, with_ref)
                resp = conn.call(**req)
                with self.subTest(region=region):
                    if region == "BJ":
                        self.assertEqual(refusals(v, req), [])
                        self.assertNotIn("error", resp, resp)
                    else:
                        self.assertEqual(refusals(v, req), ["input.bj_case_ref"])
                        self.assertEqual(resp["error"]["path"], "input.bj_case_ref")
            conn.close()
        finally:
            daemon.stop()
            shutil.rmtree(daemon.tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
