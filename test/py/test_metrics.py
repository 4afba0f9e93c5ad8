"""test_metrics.py -- both programs' /metrics: its protection, its exposition, and the monitoring that reads it.

The real contact-webhook and contact-reconciler run against the kube and
Resend stand-ins (reconciler_harness.py). The kube stand-in knows four
bearer tokens besides the programs' own: prom-token (user prom, which may
get /metrics), nobody-token (user nobody, which may not), and refuses any
other. Then:

* /metrics answers 401 without a valid token, 403 without the right, 200
  with it; repeated scrapes cost no TokenReview or SubjectAccessReview;
  --metrics-auth=false opens it; a failing review is a 500.
* `promtool check metrics` accepts both programs' output; the process_*
  metrics and the certificate expiry gauge hold what /proc and the
  certificate say.
* manifests/monitoring: `promtool check rules` and `promtool test rules`
  (test/monitoring/rules-test.yaml) pass, and every metric that the
  PrometheusRule and the Grafana dashboard name is one the two programs
  export (read from their real /metrics, not from a list kept here).
* The reconciler starts without its optional webhook signing secret.
"""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reconciler_harness as h  # noqa: E402
import required  # noqa: E402

TOP = h.ROOT
PROMTOOL = shutil.which("promtool")
MONITORING = os.path.join(TOP, "manifests", "monitoring")
RULES = os.path.join(MONITORING, "prometheusrule.yaml")
DASHBOARD = os.path.join(MONITORING, "dashboard.json")
RULES_TEST = os.path.join(TOP, "test", "monitoring", "rules-test.yaml")
SAMPLE = os.path.join(TOP, "test", "fixtures", "sample-review.json")
VALIDATE_CONTACT = "/validate-notification-miloapis-com-v1alpha1-contact"
TOKENS = ["reconciler-token", "webhook-token", "test-token", "prom-token", "nobody-token"]
# Series Prometheus itself adds for every target; not the programs' to export.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# Labels Prometheus attaches to every scraped series (ServiceMonitor targets).
TARGET_LABELS = {"job", "namespace", "pod", "instance", "service", "endpoint", "container"}


def webhook_binary():
    return os.environ.get("MILO_WEBHOOK_BIN") or os.path.join(
        TOP, "build", "default", "contact-webhook")


class Webhook(h.Reconciler):
    """contact-webhook, started the way the harness starts the reconciler."""

    def argv(self):
        return [webhook_binary(), "--kubeconfig", self.kubeconfig,
                "--secure-port", str(self.port), "--bind-address", "127.0.0.1",
                "--cert-dir", h.cert_dir(), "--shutdown-delay", "0s"] + self.args


ENV = {}


def setUpModule():
    if not os.access(webhook_binary(), os.X_OK):
        raise RuntimeError("no webhook binary at %s (make all)" % webhook_binary())
    h.module_setup()
    env = h.Env()
    ENV["env"] = env
    try:
        env.kube.control("users", {"tokens": {
            "prom-token": {"username": "prom", "uid": "u-prom",
                           "groups": ["system:serviceaccounts", "system:authenticated"]},
            "prom2-token": {"username": "prom", "groups": ["system:authenticated"]},
            "nobody-token": {"username": "nobody", "groups": ["system:authenticated"]}}})
        env.kube.control("token", {"tokens": TOKENS + ["prom2-token"]})
        # RBAC as manifests/monitoring binds it: only prom may get /metrics.
        env.kube.control("sar-policy", {"default": False, "rules": [
            {"user": "prom", "path": "/metrics", "verb": "get", "allowed": True}]})
        ENV["rec"] = env.reconciler(name="rec", token="reconciler-token",
                                    webhook_secret=h.new_webhook_secret())
        wh = Webhook(env, "webhook", [], h.API_KEY, "webhook-token")
        env.reconcilers.append(wh)
        wh.start()
        ENV["webhook"] = wh
    except BaseException:
        env.close()
        raise


def tearDownModule():
    env = ENV.pop("env", None)
    if env:
        env.close()
    h.cleanup_certs()


def programs():
    return [("contact-webhook", ENV["webhook"]), ("contact-reconciler", ENV["rec"])]


def scrape(p, token="prom-token"):
    code, body = p.https("GET", "/metrics", headers={"Authorization": "Bearer " + token})
    if code != 200:
        raise AssertionError("GET /metrics of %s: %d %s" % (p.name, code, body))
    return body


def reviews():
    """TokenReviews and SubjectAccessReviews the stand-in has answered so far."""
    items = ENV["env"].kube_requests()["items"]
    return sum(1 for r in items if r["path"].endswith(("/tokenreviews",
                                                       "/subjectaccessreviews")))


def value(text, series):
    """The value of the line `series value` in an exposition, or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line[len(series) + 1:])
    return None


def families(text):
    """{family: type} from the # TYPE lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = kind
    return out


def sample_names(text):
    """{sample name: set of label names} over every series line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
        out.setdefault(m.group(1), set()).update(labels)
    return out


def exercise():
    """An admission review and a few provider calls, so labelled series exist."""
    env = ENV["env"]
    with open(SAMPLE, "rb") as f:
        body = f.read()
    code, _ = ENV["webhook"].https("POST", VALIDATE_CONTACT + "?timeout=10s", body=body,
                                   headers={"Content-Type": "application/json"})
    assert code == 200, code
    if not ENV.get("exercised"):
        env.group("metrics", "g1", "Metrics Group")
        env.contact("metrics", "c1", "metrics@example.com")
        env.membership("metrics", "m1", "c1", "g1")
        env.wait_ready("ContactGroupMembership", "metrics", "m1")
        ENV["exercised"] = True


# -- PromQL: the metric and label names an expression uses ---------------------

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "group", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset", "rate",
    "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets",
    "changes", "histogram_quantile", "abs", "absent", "absent_over_time", "ceil",
    "floor", "round", "clamp_min", "clamp_max", "clamp", "time", "vector", "scalar",
    "label_replace", "label_join", "sort", "sort_desc", "min_over_time",
    "max_over_time", "avg_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "present_over_time", "timestamp", "exp", "ln", "log2", "log10",
    "sqrt", "day_of_month", "day_of_week", "hour", "minute", "month", "year", "inf",
    "nan",
}


def grouping_labels(expr):
    """Label names in the by/without/on/ignoring/group_* clauses of an expression."""
    out = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                         expr):
        out.update(x.strip() for x in m.group(1).split(",") if x.strip())
    return out


def promql_names(expr):
    """(metric names, {metric: label names in its selector}) of a PromQL expression.

    Strings, label lists after by/without/on/ignoring/group_*, durations,
    numbers, functions and keywords are left out; Grafana's $variables too.
    """
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\$\{?[a-zA-Z_]+\}?", "1", e)
    e = re.sub(r"\[[^\]]*\]", "", e)            # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names, labels = set(), {}
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", e):
        word, sel = m.group(1), m.group(2)
        if word in PROMQL_WORDS or re.fullmatch(r"\d.*", word):
            continue
        rest = e[m.end():].lstrip()
        if rest.startswith("(") and not sel:
            continue                           # a function call
        names.add(word)
        if sel:
            labels.setdefault(word, set()).update(
                re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", sel))
    return names, labels


def rule_exprs():
    """Every (alert or record name, expr) of the PrometheusRule."""
    out, name = [], None
    with open(RULES) as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("- alert:") or s.startswith("- record:"):
            name = s.split(":", 1)[1].strip()
        if s.startswith("expr:"):
            rest = s[5:].strip()
            if rest in ("|", ">", "|-", ">-"):
                indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          len(lines[i]) - len(lines[i].lstrip()) >= indent):
                    body.append(lines[i].strip())
                    i += 1
                out.append((name, " ".join(body)))
                continue
            out.append((name, rest))
        i += 1
    return out


def dashboard_exprs():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []

    def walk(o, where):
        if isinstance(o, dict):
            if isinstance(o.get("expr"), str):
                out.append((where, o["expr"]))
            q = o.get("query")
            if isinstance(q, str) and q.startswith("label_values("):
                # label_values(<series selector>, <label>): the selector is PromQL
                out.append((where + " (variable)", q[len("label_values("):].rsplit(",", 1)[0]))
            for k, v in o.items():
                walk(v, o.get("title", where) if isinstance(o.get("title"), str) else where)
        elif isinstance(o, list):
            for v in o:
                walk(v, where)
    walk(d, "dashboard")
    return out


def rules_file(tmp):
    """The PrometheusRule's spec as a plain rules file for promtool."""
    with open(RULES) as f:
        lines = f.read().splitlines()
    start = lines.index("spec:")
    body = [ln[2:] if ln.startswith("  ") else ln for ln in lines[start + 1:]]
    path = os.path.join(tmp, "rules.yaml")
    with open(path, "w") as f:
        f.write("\n".join(body) + "\n")
    return path


# -- the tests -------------------------------------------------------------------

class MetricsAuth(unittest.TestCase):
    def test_tokens(self):
        for name, p in programs():
            with self.subTest(program=name):
                code, body = p.https("GET", "/metrics")
                self.assertEqual((code, body.strip()), (401, "Unauthorized"))
                code, body = p.https("GET", "/metrics", headers={"Authorization": "Basic eDp5"})
                self.assertEqual(code, 401)
                code, body = p.https("GET", "/metrics",
                                     headers={"Authorization": "Bearer stolen"})
                self.assertEqual((code, body.strip()), (401, "Unauthorized"))
                code, body = p.https("GET", "/metrics",
                                     headers={"Authorization": "Bearer nobody-token"})
                self.assertEqual((code, body.strip()),
                                 (403, "Authorization denied for user nobody"))
                self.assertIn("# TYPE process_cpu_seconds_total counter\n", scrape(p))
                # Health and readiness stay open (the kubelet has no token).
                self.assertEqual(p.https("GET", "/healthz")[0], 200)
                self.assertEqual(p.https("GET", "/readyz")[0], 200)

    def test_cached(self):
        for name, p in programs():
            with self.subTest(program=name):
                scrape(p)
                p.https("GET", "/metrics", headers={"Authorization": "Bearer nobody-token"})
                p.https("GET", "/metrics", headers={"Authorization": "Bearer stolen"})
                before = reviews()
                for _ in range(10):
                    scrape(p)
                    self.assertEqual(p.https("GET", "/metrics", headers={
                        "Authorization": "Bearer nobody-token"})[0], 403)
                    self.assertEqual(p.https("GET", "/metrics", headers={
                        "Authorization": "Bearer stolen"})[0], 401)
                self.assertEqual(reviews(), before)
                text = scrape(p)
                self.assertGreaterEqual(value(text, 'milo_metrics_auth_decisions_total'
                                                    '{decision="allowed"}'), 11)
                self.assertGreaterEqual(value(text, 'milo_metrics_auth_decisions_total'
                                                    '{decision="forbidden"}'), 11)
                # Tokens never reach the log.
                self.assertNotIn("prom-token", p.log_text())
                self.assertNotIn("nobody-token", p.log_text())

    def test_review_fails(self):
        env = ENV["env"]
        for name, p in programs():
            with self.subTest(program=name):
                env.kube.control("fail", {"count": 1, "code": 500,
                                          "pathPrefix": "/apis/authentication.k8s.io"})
                code, body = p.https("GET", "/metrics",
                                     headers={"Authorization": "Bearer prom2-token"})
                env.kube.control("fail", {"clear": True})
                self.assertEqual((code, body.strip()), (500, "Authentication failed"))
                self.assertTrue(p.log_has("metrics authentication: TokenReview failed"))
                # Not remembered: the next scrape is reviewed again and allowed.
                self.assertEqual(scrape(p, "prom2-token")[:6], "# HELP")

    def test_switched_off(self):
        env = ENV["env"]
        rec = env.reconciler(name="open-rec", token="reconciler-token",
                             args=["--metrics-auth=false"])
        wh = Webhook(env, "open-webhook", ["--metrics-auth=false"], h.API_KEY,
                     "webhook-token")
        env.reconcilers.append(wh)
        wh.start()
        for p in (rec, wh):
            code, body = p.https("GET", "/metrics")
            self.assertEqual(code, 200, body)
            self.assertIn("process_open_fds", body)
            self.assertEqual(p.stop(), 0)


class Exposition(unittest.TestCase):
    @required.tool(PROMTOOL, "promtool is not installed (Debian package prometheus)")
    def test_promtool_check_metrics(self):
        exercise()
        for name, p in programs():
            with self.subTest(program=name):
                r = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(p),
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_process_metrics(self):
        env = ENV["env"]
        started = time.time()
        p = env.reconciler(name="fresh-rec", token="reconciler-token")
        try:
            for _, q in programs() + [("fresh", p)]:
                text = scrape(q)
                self.assertGreater(value(text, "process_resident_memory_bytes"), 1 << 20)
                self.assertGreaterEqual(value(text, "process_virtual_memory_bytes"),
                                        value(text, "process_resident_memory_bytes"))
                self.assertGreaterEqual(value(text, "process_open_fds"), 3)
                with open("/proc/self/limits") as f:
                    soft = re.search(r"Max open files\s+(\d+)", f.read()).group(1)
                self.assertEqual(value(text, "process_max_fds"), float(soft))
                self.assertGreaterEqual(value(text, "process_cpu_seconds_total"), 0)
            text = scrape(p)
            self.assertGreaterEqual(value(text, "process_start_time_seconds"), started - 2)
            self.assertLessEqual(value(text, "process_start_time_seconds"), time.time() + 1)
        finally:
            self.assertEqual(p.stop(), 0)

    def test_certificate_expiry(self):
        path = os.path.join(h.cert_dir(), "tls.crt")
        r = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in", path],
                           capture_output=True, text=True, timeout=30, check=True)
        not_after = ssl.cert_time_to_seconds(r.stdout.strip().split("=", 1)[1])
        for name, p in programs():
            with self.subTest(program=name):
                self.assertEqual(value(scrape(p), "milo_tls_certificate_expiration_"
                                                  "timestamp_seconds"), float(not_after))


class Monitoring(unittest.TestCase):
    @required.tool(PROMTOOL, "promtool is not installed (Debian package prometheus)")
    def test_rules(self):
        tmp = tempfile.mkdtemp(prefix="milo-rules-")
        self.addCleanup(shutil.rmtree, tmp)
        rules = rules_file(tmp)
        r = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        shutil.copy(RULES_TEST, os.path.join(tmp, "rules-test.yaml"))
        r = subprocess.run([PROMTOOL, "test", "rules", "rules-test.yaml"], cwd=tmp,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Every alert has a unit test and a runbook note in README.md.
        with open(RULES_TEST) as f:
            tested = set(re.findall(r"alertname: (\w+)", f.read()))
        with open(os.path.join(TOP, "README.md")) as f:
            readme = f.read()
        for name, _ in rule_exprs():
            self.assertIn(name, tested, "%s has no promtool test" % name)
            self.assertTrue("`%s`" % name in readme, "%s has no runbook note in README.md"
                            % name)

    def test_names_are_exported(self):
        """Every metric and selector label the rules and the dashboard use exists."""
        self.maxDiff = None
        exercise()
        exported, labels = {}, {}
        for _, p in programs():
            text = scrape(p)
            exported.update(families(text))
            for k, v in sample_names(text).items():
                labels.setdefault(k, set()).update(v)
        exprs = rule_exprs() + dashboard_exprs()
        self.assertGreater(len(rule_exprs()), 8)
        self.assertGreater(len(dashboard_exprs()), 10)
        missing, bad_labels = set(), set()
        for where, expr in exprs:
            names, sel = promql_names(expr)
            for n in names - PROMETHEUS_OWN:
                if n not in labels:
                    missing.add(n)
            for n, ls in sel.items():
                if n in labels:
                    for lbl in ls - TARGET_LABELS - {"__name__"}:
                        if lbl not in labels[n] and not (lbl == "le" and n.endswith("_bucket")):
                            bad_labels.add("%s{%s} (%s)" % (n, lbl, where))
            # by (...) and on (...) name labels one of the expression's metrics has.
            known = set().union(*[labels.get(n, set()) for n in names]) | TARGET_LABELS
            for lbl in grouping_labels(expr) - known - {"le"}:
                if all(n in labels for n in names - PROMETHEUS_OWN):
                    bad_labels.add("by/on (%s) over %s (%s)" % (lbl, ", ".join(sorted(names)),
                                                                where))
        self.assertEqual((sorted(missing), sorted(bad_labels)), ([], []),
                         "metrics, then selector labels, that the rules or the dashboard use "
                         "and neither program exports")

    def test_dashboard_shape(self):
        with open(DASHBOARD) as f:
            d = json.load(f)
        self.assertEqual(d["uid"], "milo-contacts")
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in d["panels"]:
            if p.get("type") != "row":
                self.assertTrue(p.get("targets"), p["title"])
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})


class WebhookSecretOptional(unittest.TestCase):
    def test_starts_without_the_secret_file(self):
        env = ENV["env"]
        rec = env.reconciler(name="no-secret", token="reconciler-token", args=[
            "--resend-webhook-secret-file", os.path.join(env.dir, "absent", "webhook-secret")])
        self.assertTrue(rec.log_has("provider events off"))
        code, _ = rec.https("POST", "/webhooks/resend", body=b"{}",
                            headers={"Content-Type": "application/json"})
        self.assertEqual(code, 404)
        self.assertEqual(rec.stop(), 0)


if __name__ == "__main__":
    unittest.main()
