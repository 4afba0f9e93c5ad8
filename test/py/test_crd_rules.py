"""test_crd_rules.py -- every CEL rule of every CRD in manifests/crds, run by a
real CEL implementation (test/cel, @bufbuild/cel) on objects that must pass
and objects that must fail (test/fixtures/crd-rules.json), transition rules
with oldSelf included; and the CRDs' selectableFields name scalar fields of
their schemas. The objects go through crd_schema.validate_object, the code
the kube stand-in serves custom resources with, so each case also checks the
exact text kube-apiserver reports.
"""
import glob
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("MILO_TOP") or os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import crd_schema  # noqa: E402
from kube_standin import FieldError  # noqa: E402


def load_crds():
    out = {}
    for path in sorted(glob.glob(os.path.join(TOP, "manifests", "crds", "*.yaml"))):
        with open(path) as f:
            for doc in crd_schema.CelHelper.yaml(f.read()):
                if doc.get("kind") == "CustomResourceDefinition":
                    out[doc["spec"]["names"]["kind"]] = doc
    return out


def rule_object_path(path):
    """A rule's schema path as the object path it validates ([*] for items)."""
    out, it = "", iter(path)
    for p in it:
        if p == "properties":
            name = next(it)
            out = name if not out else out + "." + name
        elif p == "items":
            out += "[*]"
        else:
            out += ".*"
    return out


class CRDRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crds = load_crds()
        with open(os.path.join(TOP, "test", "fixtures", "crd-rules.json")) as f:
            cls.cases = json.load(f)["kinds"]

    def served(self, kind):
        crd = self.crds[kind]
        return [crd_schema.CRDSchema(crd, v) for v in crd["spec"]["versions"]
                if v.get("served")]

    def obj(self, cs, spec, status=None):
        o = {"apiVersion": "%s/%s" % (cs.group, cs.version), "kind": cs.kind,
             "metadata": {"name": "x", "namespace": "n"}, "spec": spec}
        if status is not None:
            o["status"] = status
        return o

    def test_every_kind_has_cases(self):
        self.assertEqual(sorted(self.crds), sorted(self.cases))

    def test_rules_compile(self):
        for kind, crd in sorted(self.crds.items()):
            for cs in self.served(kind):
                exprs = [r["rule"] for _, _, r in cs.rules]
                exprs += [r["messageExpression"] for _, _, r in cs.rules
                          if "messageExpression" in r]
                for expr, res in zip(exprs, crd_schema.CelHelper.compile(exprs)):
                    self.assertNotIn("error", res, "%s: %s" % (kind, expr))

    def test_cases(self):
        """Each case gives exactly its errors; every rule holds in one case and
        fails in another (a transition rule only runs with an old object)."""
        for kind in sorted(self.crds):
            for cs in self.served(kind):
                seen = {}
                for case in self.cases[kind]:
                    with self.subTest(kind=kind, case=case["description"]):
                        obj = self.obj(cs, case["spec"], case.get("status"))
                        old = None
                        if "old" in case:
                            old = self.obj(cs, case["old"]["spec"], case["old"].get("status"))
                        trace = []
                        errs, warns = crd_schema.validate_object(cs, obj, old, trace=trace)
                        self.assertEqual([FieldError(*e).message() for e in errs],
                                         case["errors"])
                        self.assertEqual(warns, [])
                        for path, text, result in trace:
                            self.assertNotEqual(result, "error", "%s: %s" % (path, text))
                            seen.setdefault((path, text), set()).add(result)
                for path, _, rule in cs.rules:
                    key = (rule_object_path(path), rule["rule"].strip())
                    self.assertEqual(seen.get(key), {True, False},
                                     "%s: rule %r at %s needs a case where it holds and "
                                     "one where it fails" % (kind, key[1], key[0]))

    def test_transition_rules_skip_creates(self):
        """kube runs a rule that names oldSelf only when there is an old value."""
        for kind in sorted(self.crds):
            for cs in self.served(kind):
                creates = [c for c in self.cases[kind] if "old" not in c]
                self.assertTrue(creates, kind)
                trace = []
                crd_schema.validate_object(cs, self.obj(cs, creates[0]["spec"]), None,
                                           trace=trace)
                self.assertFalse([t for t in trace if "oldSelf" in t[1]], kind)

    def test_selectable_fields(self):
        """Milo's API server and portal select on these (issue 10); kube allows
        at most 8, each a path to a string, integer or boolean in the schema."""
        want = {
            "Contact": [".spec.email", ".spec.subject.userRef.name"],
            "ContactGroup": [".spec.visibility"],
            "ContactGroupMembership": [".spec.contactRef.name", ".spec.contactGroupRef.name",
                                       ".status.username"],
            "ContactGroupMembershipRemoval": [".spec.contactRef.name",
                                              ".spec.contactGroupRef.name",
                                              ".status.username"],
        }
        for kind, crd in sorted(self.crds.items()):
            for v in crd["spec"]["versions"]:
                paths = [sf["jsonPath"] for sf in v.get("selectableFields") or []]
                self.assertEqual(paths, want[kind], kind)
                self.assertLessEqual(len(paths), 8)
                schema = v["schema"]["openAPIV3Schema"]
                for p in paths:
                    s = schema
                    for part in p.lstrip(".").split("."):
                        s = (s.get("properties") or {}).get(part)
                        self.assertIsNotNone(s, "%s: %s is not in the schema" % (kind, p))
                    self.assertIn(s.get("type"), ("string", "integer", "boolean"), p)


if __name__ == "__main__":
    unittest.main()
