"""test_manifests.py -- every kustomization under manifests/ builds with `kubectl kustomize`, as a cluster admin wants it.

Checked on what kustomize renders (documents split at `---`, fields matched
as text: kustomize's output is block YAML with two-space indents):

* manifests/, manifests/webhook, manifests/reconciler,
  manifests/cert-manager, manifests/monitoring and an overlay with the
  priority-class component all build;
* every image is the release named in the source (MILO_VERSION), never
  :latest;
* both Deployments spread over zones and nodes; the reconciler has a
  PodDisruptionBudget; each program has a NetworkPolicy that opens exactly
  its container port; the component sets priorityClassName on both;
* the reconciler mounts its Resend Secret whole (webhook-secret may be
  missing) and points --resend-webhook-secret-file into it;
* RBAC: both programs may create TokenReviews and SubjectAccessReviews,
  ClusterRole milo-contacts-metrics-reader may get /metrics, and the
  monitoring kustomization binds it to the token its ServiceMonitors use;
* manifests/kustomization.yaml lists what manifests/webhook does.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import required  # noqa: E402

KUBECTL = shutil.which("kubectl")
IMAGE = "ghcr.io/milo-os/contact-webhook"
KUSTOMIZATIONS = ["manifests", "manifests/webhook", "manifests/reconciler",
                  "manifests/cert-manager", "manifests/monitoring"]


def version():
    with open(os.path.join(TOP, "webhook", "webhook.h")) as f:
        return re.search(r'#define MILO_VERSION "([^"]+)"', f.read()).group(1)


def build(path):
    r = subprocess.run([KUBECTL, "kustomize", path], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (path, r.stderr))
    return r.stdout


def docs(text):
    """[(kind, name, text)] of a kustomize build."""
    out = []
    for d in re.split(r"^---\n", text, flags=re.M):
        kind = re.search(r"^kind: (\S+)", d, re.M)
        name = re.search(r"^metadata:\n(?:  .*\n)*?  name: (\S+)", d, re.M)
        if kind:
            out.append((kind.group(1), name.group(1) if name else "", d))
    return out


def doc(built, kind, name):
    for k, n, d in docs(built):
        if (k, n) == (kind, name):
            return d
    raise AssertionError("no %s %s in the build" % (kind, name))


@required.tool(KUBECTL, "kubectl is not installed (make deps installs one)")
class Kustomizations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.built = {k: build(os.path.join(TOP, k)) for k in KUSTOMIZATIONS}
        tmp = tempfile.mkdtemp(prefix="milo-kustomize-")
        cls.tmp = tmp
        rel = os.path.relpath(os.path.join(TOP, "manifests"), tmp)
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                    "resources:\n  - %s/webhook\n  - %s/reconciler\n"
                    "components:\n  - %s/components/priority-class\n" % (rel, rel, rel))
        cls.priority = build(tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def all_builds(self):
        return list(self.built.items()) + [("priority overlay", self.priority)]

    def test_images_are_the_release(self):
        want = "%s:%s" % (IMAGE, version())
        for name, text in self.all_builds():
            images = re.findall(r"^\s+image: (\S+)$", text, re.M)
            if name in ("manifests/monitoring",):
                self.assertEqual(images, [])
                continue
            self.assertTrue(images, name)
            self.assertEqual(set(images), {want}, name)
            self.assertNotIn(":latest", text, name)

    def test_spread_disruption_budget_network_policy(self):
        both = self.built["manifests/webhook"] + "---\n" + self.built["manifests/reconciler"]
        for prog, port in (("contact-webhook", "9443"), ("contact-reconciler", "9444")):
            d = doc(both, "Deployment", prog)
            self.assertIn("topologyKey: topology.kubernetes.io/zone", d)
            self.assertIn("topologyKey: kubernetes.io/hostname", d)
            self.assertIn("containerPort: %s" % port, d)
            self.assertIn("minAvailable: 1", doc(both, "PodDisruptionBudget", prog))
            np = doc(both, "NetworkPolicy", prog)
            self.assertEqual(re.findall(r"port: (\S+)", np), [port])
            self.assertIn("policyTypes:\n  - Ingress", np)
            self.assertIn("app.kubernetes.io/name: %s" % prog, np)

    def test_priority_class_component(self):
        self.assertIn("value: 1000000", doc(self.priority, "PriorityClass", "milo-contacts"))
        for prog in ("contact-webhook", "contact-reconciler"):
            self.assertIn("priorityClassName: milo-contacts",
                          doc(self.priority, "Deployment", prog))
            self.assertNotIn("priorityClassName", doc(self.built["manifests"] + "---\n" +
                                                      self.built["manifests/reconciler"],
                                                      "Deployment", prog))

    def test_reconciler_secret_is_optional_per_key(self):
        d = doc(self.built["manifests/reconciler"], "Deployment", "contact-reconciler")
        self.assertIn("--resend-webhook-secret-file=/etc/contact-reconciler/resend/"
                      "webhook-secret", d)
        vol = re.search(r"- name: resend\n\s+secret:\n((?:\s{10,}.*\n)*)", d)
        self.assertIsNotNone(vol, d)
        self.assertIn("secretName: contact-reconciler-resend", vol.group(1))
        self.assertNotIn("items:", vol.group(1))    # a listed key must exist

    def test_rbac(self):
        webhook = doc(self.built["manifests"], "ClusterRole", "milo-contacts:contact-webhook")
        reconciler = doc(self.built["manifests/reconciler"], "ClusterRole",
                         "milo-contacts:contact-reconciler")
        for role in (webhook, reconciler):
            self.assertRegex(role, r"- authentication\.k8s\.io\n\s+resources:\n\s+- "
                                   r"tokenreviews\n\s+verbs:\n\s+- create")
            self.assertRegex(role, r"- authorization\.k8s\.io\n\s+resources:\n\s+- "
                                   r"subjectaccessreviews\n\s+verbs:\n\s+- create")
        reader = doc(self.built["manifests"], "ClusterRole", "milo-contacts-metrics-reader")
        self.assertRegex(reader, r"nonResourceURLs:\n\s+- /metrics\n\s+verbs:\n\s+- get\n")
        mon = self.built["manifests/monitoring"]
        binding = doc(mon, "ClusterRoleBinding", "milo-contacts-metrics-reader")
        self.assertIn("name: milo-contacts-metrics-reader", binding)
        self.assertIn("name: milo-contacts-metrics-scraper", binding)
        token = doc(mon, "Secret", "milo-contacts-metrics-scraper-token")
        self.assertIn("type: kubernetes.io/service-account-token", token)
        self.assertIn("kubernetes.io/service-account.name: milo-contacts-metrics-scraper",
                      token)
        for prog in ("contact-webhook", "contact-reconciler"):
            sm = doc(mon, "ServiceMonitor", prog)
            self.assertIn("name: milo-contacts-metrics-scraper-token", sm)
            self.assertIn("serverName: %s.milo-contacts.svc" % prog, sm)
            self.assertIn("scheme: https", sm)
            self.assertNotIn("insecureSkipVerify", sm)
        self.assertIn("grafana_dashboard: \"1\"", doc(mon, "ConfigMap",
                                                      "milo-contacts-dashboard"))

    def test_top_lists_the_webhook_files(self):
        def resources(path):
            with open(path) as f:
                return re.findall(r"^  - (\S+)$", f.read().split("resources:", 1)[1]
                                  .split("\n\n", 1)[0], re.M)
        top = resources(os.path.join(TOP, "manifests", "kustomization.yaml"))
        webhook = resources(os.path.join(TOP, "manifests", "webhook", "kustomization.yaml"))
        self.assertEqual([r[len("webhook/"):] for r in top if r.startswith("webhook/")],
                         webhook)

    def test_own_namespace_not_admitted(self):
        cfg = doc(self.built["manifests"], "ValidatingWebhookConfiguration", "contact-webhook")
        self.assertEqual(cfg.count("- milo-contacts\n"), 4)


if __name__ == "__main__":
    unittest.main()
