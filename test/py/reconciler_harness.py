"""reconciler_harness.py -- the real contact-reconciler against the stand-ins, for tests.

    from reconciler_harness import Env
    env = Env(self)                      # the kube and Resend stand-ins in-process, a temp dir
    env = Env(self, provider="mailgun")  # ... with the Mailgun stand-in instead
    rec = env.reconciler()               # the binary, started and ready (/readyz)
    env.create("ContactGroup", "ns", "g", {"displayName": "G", "visibility": "public"})
    env.wait_ready("ContactGroup", "ns", "g")
    rec.stop()                           # SIGTERM; asserts exit status 0
    env.close()                          # stops whatever is still running

The binary is $MILO_RECONCILER_BIN, else build/default/contact-reconciler.
It runs with --kubeconfig (the kube stand-in, plain HTTP), --resend-base-url
(the Resend stand-in) or --provider mailgun --mailgun-base-url (the Mailgun
stand-in) --mailgun-domain MAILGUN_DOMAIN, --secure-port on a free port, --bind-address
127.0.0.1, --cert-dir (certs/dev-cert.sh, made once per process), a short
--resync-period and --leader-elect=false unless told otherwise; its stderr
(JSON lines) goes to a file that rec.logs() parses. Every wait is bounded.
Python 3 standard library only.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import kube_standin  # noqa: E402
import mailgun_standin  # noqa: E402
import resend_standin  # noqa: E402

GROUP = "notification.miloapis.com"
VERSION = "v1alpha1"
API_VERSION = GROUP + "/" + VERSION
PLURALS = {
    "Contact": "contacts",
    "ContactGroup": "contactgroups",
    "ContactGroupMembership": "contactgroupmemberships",
    "ContactGroupMembershipRemoval": "contactgroupmembershipremovals",
}
MEMBERSHIP = "ContactGroupMembership"
REMOVAL = "ContactGroupMembershipRemoval"
CRD_FILES = ("contacts", "contactgroups", "contactgroupmemberships",
             "contactgroupmembershipremovals")   # manifests/crds/<name>.yaml
REFUSAL_BODY_MAX = 300      # characters of a refused request's body shown
FINALIZERS = {
    "Contact": GROUP + "/contact",
    "ContactGroup": GROUP + "/contactgroup",
    "ContactGroupMembership": GROUP + "/contactgroupmembership",
}
API_KEY = resend_standin.DEFAULT_API_KEY
MAILGUN_API_KEY = mailgun_standin.DEFAULT_API_KEY
MAILGUN_DOMAIN = mailgun_standin.DEFAULT_DOMAIN
DEFAULT_TIMEOUT = 30.0
POLL = 0.05

_CERTS = {"dir": None, "lock": threading.Lock()}


def binary():
    return os.environ.get("MILO_RECONCILER_BIN") or os.path.join(
        ROOT, "build", "default", "contact-reconciler")


def cert_dir():
    """tls.crt, tls.key and ca.crt for 127.0.0.1, made once per process."""
    with _CERTS["lock"]:
        if _CERTS["dir"] is None:
            d = tempfile.mkdtemp(prefix="milo-rec-certs-")
            subprocess.run(["sh", os.path.join(ROOT, "certs", "dev-cert.sh"), d], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            _CERTS["dir"] = d
        return _CERTS["dir"]


def cleanup_certs():
    with _CERTS["lock"]:
        if _CERTS["dir"]:
            shutil.rmtree(_CERTS["dir"], ignore_errors=True)
            _CERTS["dir"] = None


def module_setup():
    """A test module's setUpModule: fails without the binary (make test must
    never skip a suite for a build it did not make), makes the certificates
    (its tearDownModule is cleanup_certs)."""
    if not os.access(binary(), os.X_OK):
        raise RuntimeError("no reconciler binary at %s (set MILO_RECONCILER_BIN)" % binary())
    cert_dir()


def http_request(base, method, path, data=None, headers=None, timeout=10):
    """One plain-HTTP request on a fresh connection to base -> (status, body bytes)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(pred, timeout=DEFAULT_TIMEOUT, what="condition", interval=POLL):
    """Polls pred() until it returns something truthy (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except (OSError, http.client.HTTPException) as e:
            last = None
            err = e
        else:
            err = None
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %s)" % err if err else ""))
        time.sleep(interval)


def new_webhook_secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def condition(obj, ctype):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


class KubeError(Exception):
    def __init__(self, code, body):
        super().__init__("HTTP %d: %s" % (code, body))
        self.code = code
        self.body = body


class Reconciler:
    """One contact-reconciler process."""

    def __init__(self, env, name, args, api_key, token):
        self.env = env
        self.name = name
        self.args = list(args)
        self.api_key = api_key
        self.token = token
        self.kubeconfig = os.path.join(env.dir, "kubeconfig-%s" % name)
        env.kube.write_kubeconfig(self.kubeconfig, token=token)
        self.log_path = os.path.join(env.dir, "reconciler-%s.log" % name)
        self.proc = None
        self.port = None
        self.starts = 0

    def argv(self):
        if self.env.provider_name == "mailgun":
            provider = ["--provider", "mailgun", "--mailgun-base-url", self.env.mailgun.url,
                        "--mailgun-domain", MAILGUN_DOMAIN]
        else:
            provider = ["--resend-base-url", self.env.resend.url]
        return [binary(), "--kubeconfig", self.kubeconfig] + provider + [
                "--secure-port", str(self.port), "--bind-address", "127.0.0.1",
                "--cert-dir", cert_dir()] + self.args

    def start(self, wait_ready=True, timeout=DEFAULT_TIMEOUT):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            self.port = free_port()
            env = dict(os.environ)
            env["MAILGUN_API_KEY" if self.env.provider_name == "mailgun" else
                "RESEND_API_KEY"] = self.api_key
            env.pop("KUBECONFIG", None)
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, env=env)
            finally:
                log.close()
            self.starts += 1
            if not wait_ready:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except _Exited:
                # Another process took the port between free_port() and bind: again.
                if attempt == 2 or "address already in use" not in self.log_tail(3).lower():
                    raise AssertionError("the reconciler exited with %s:\n%s" % (
                        self.proc.returncode, self.log_tail()))
        return self

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=os.path.join(cert_dir(), "ca.crt"))
        return ctx

    def https(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                           context=self.ssl_context())
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def metric(self, series):
        """The value of one series ('name' or 'name{labels}') on /metrics, or None."""
        code, body = self.https("GET", "/metrics", headers={"Authorization": "Bearer any"})
        if code != 200:
            raise AssertionError("/metrics answered %d: %s" % (code, body[:200]))
        for line in body.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_resyncs(self, n, timeout=DEFAULT_TIMEOUT):
        """Waits until n more resyncs have run than when called (an event to
        wait on, rather than sleeping for n resync periods)."""
        start = self.metric("milo_reconciler_resyncs_total") or 0
        wait_for(lambda: (self.metric("milo_reconciler_resyncs_total") or 0) >= start + n,
                 timeout, "%d resyncs" % n, interval=0.1)

    def wait_ready(self, timeout=DEFAULT_TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise _Exited()
            try:
                code, _ = self.https("GET", "/readyz", timeout=2)
            except (OSError, ssl.SSLError, http.client.HTTPException):
                return False
            return code == 200
        wait_for(ready, timeout, "%s /readyz" % self.name)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=DEFAULT_TIMEOUT):
        """SIGTERM; waits; returns the exit status (the caller asserts 0)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("%s did not stop within %ss of SIGTERM:\n%s" % (
                    self.name, timeout, self.log_tail()))
        return self.proc.returncode

    def kill(self):
        """SIGKILL, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def logs(self):
        """Every JSON log line as a dict (non-JSON lines as {"raw": line})."""
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def log_has(self, text):
        return text in self.log_text()


class _Exited(Exception):
    pass


class Env:
    """The kube stand-in and one provider's stand-in in-process, a temp dir, the
    reconcilers started from it, helpers. provider: "resend" (the default) or
    "mailgun"; the provider's stand-in is self.resend or self.mailgun (the
    other is None) and self.standin."""

    def __init__(self, test=None, resend_config=None, kube_config=None, provider="resend",
                 mailgun_config=None):
        assert provider in ("resend", "mailgun"), provider
        self.dir = tempfile.mkdtemp(prefix="milo-rec-")
        self.provider_name = provider
        self.kube = kube_standin.StandIn(**(kube_config or {})).start()
        cfg = {"rateLimit": 0}
        self.resend = self.mailgun = None
        if provider == "mailgun":
            cfg.update(mailgun_config or {})
            self.mailgun = self.standin = mailgun_standin.StandIn(**cfg).start()
        else:
            cfg.update(resend_config or {})
            self.resend = self.standin = resend_standin.StandIn(**cfg).start()
        self.reconcilers = []
        self.test = test
        if test is not None:
            test.addCleanup(self.close)

    # ---- processes

    def reconciler(self, name=None, args=None, leader_elect=False, resync="2s", rate=50,
                   api_key=None, token="reconciler-token", start=True,
                   webhook_secret=None, lease_namespace="default"):
        """webhook_secret: Resend's whsec_ secret, or Mailgun's signing key."""
        name = name or "r%d" % len(self.reconcilers)
        mailgun = self.provider_name == "mailgun"
        if api_key is None:
            api_key = MAILGUN_API_KEY if mailgun else API_KEY
        a = ["--resync-period", resync,
             "--mailgun-rate-limit" if mailgun else "--resend-rate-limit", str(rate)]
        if leader_elect:
            a += ["--leader-elect=true", "--leader-election-namespace", lease_namespace]
        else:
            a += ["--leader-elect=false"]
        if webhook_secret:
            path = os.path.join(self.dir, "whsec-%s" % name)
            with open(path, "w") as f:
                f.write(webhook_secret + "\n")
            a += ["--mailgun-webhook-signing-key-file" if mailgun else
                  "--resend-webhook-secret-file", path]
        a += list(args or [])
        r = Reconciler(self, name, a, api_key, token)
        self.reconcilers.append(r)
        if start:
            r.start()
        return r

    def close(self):
        failures = []
        for r in self.reconcilers:
            if r.running():
                try:
                    rc = r.stop()
                    if rc != 0:
                        failures.append("%s exited %s" % (r.name, rc))
                except AssertionError as e:
                    failures.append(str(e))
        self.standin.stop()
        self.kube.stop()
        if os.environ.get("MILO_KEEP_LOGS"):
            sys.stderr.write("reconciler logs kept in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if failures:
            raise AssertionError("; ".join(failures))

    # ---- the Kubernetes API (plain HTTP to the stand-in)

    def kube_request(self, method, path, body=None, content_type="application/json",
                     token="test-token"):
        headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        status, raw = http_request(self.kube.url, method, path, data, headers)
        payload = json.loads(raw) if raw else None
        if status >= 400:
            raise KubeError(status, payload)
        return payload

    @staticmethod
    def path(kind, ns, name=None, sub=None):
        p = "/apis/%s/%s/namespaces/%s/%s" % (GROUP, VERSION, ns, PLURALS[kind])
        if name:
            p += "/" + name
        if sub:
            p += "/" + sub
        return p

    def create(self, kind, ns, name, spec, finalizers=None):
        meta = {"name": name, "namespace": ns}
        if finalizers:
            meta["finalizers"] = finalizers
        return self.kube_request("POST", self.path(kind, ns), {
            "apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec})

    def get(self, kind, ns, name):
        try:
            return self.kube_request("GET", self.path(kind, ns, name))
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    def patch_spec(self, kind, ns, name, spec):
        return self.kube_request("PATCH", self.path(kind, ns, name), {"spec": spec},
                                 content_type="application/merge-patch+json")

    def delete(self, kind, ns, name):
        return self.kube_request("DELETE", self.path(kind, ns, name))

    def list(self, kind, ns):
        return self.kube_request("GET", self.path(kind, ns)).get("items") or []

    def events(self, ns, kind=None, name=None):
        items = self.kube_request(
            "GET", "/apis/events.k8s.io/v1/namespaces/%s/events" % ns).get("items") or []
        out = []
        for e in items:
            reg = e.get("regarding") or {}
            if kind and reg.get("kind") != kind:
                continue
            if name and reg.get("name") != name:
                continue
            out.append(e)
        return out

    def lease(self, ns="default", name="contact-reconciler"):
        try:
            return self.kube_request(
                "GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s" % (ns, name))
        except KubeError as e:
            if e.code == 404:
                return None
            raise

    def kube_requests(self, since=0):
        return self.kube.control("requests", method="GET", query={"since": str(since)})

    def store_crds(self):
        """The project's CRDs in the kube stand-in: from then on it checks every
        object and status written against their schemas and CEL rules, as a
        cluster does."""
        import crd_schema
        for name in CRD_FILES:
            with open(os.path.join(ROOT, "manifests", "crds", name + ".yaml")) as f:
                for crd in crd_schema.CelHelper.yaml(f.read()):
                    if crd.get("kind") == "CustomResourceDefinition":
                        self.kube_request("POST", "/apis/apiextensions.k8s.io/v1/"
                                          "customresourcedefinitions", crd)

    def kube_refusals(self, code=422):
        """[(method, path, start of the body)] of the requests the kube stand-in
        answered with `code` (422: a write the CRDs refused)."""
        return [(r["method"], r["path"], r.get("body", "")[:REFUSAL_BODY_MAX])
                for r in self.kube_requests()["items"] if r.get("code") == code]

    # ---- objects of the four kinds

    def group(self, ns, name, display, visibility="public"):
        return self.create("ContactGroup", ns, name,
                           {"displayName": display, "visibility": visibility})

    def contact(self, ns, name, email, given=None, family=None):
        spec = {"email": email, "subject": {"userRef": {"name": "u-" + name}}}
        if given is not None:
            spec["givenName"] = given
        if family is not None:
            spec["familyName"] = family
        return self.create("Contact", ns, name, spec)

    def membership(self, ns, name, contact, group):
        return self.create("ContactGroupMembership", ns, name, {
            "contactRef": {"name": contact, "namespace": ns},
            "contactGroupRef": {"name": group, "namespace": ns}})

    def removal(self, ns, name, contact, group):
        return self.create("ContactGroupMembershipRemoval", ns, name, {
            "contactRef": {"name": contact, "namespace": ns},
            "contactGroupRef": {"name": group, "namespace": ns}})

    def grid(self, ns):
        """Groups g0..g2 ("Group g<i>"), contacts c0..c3 (c<i>@example.com, given
        name "Name c<i>") and a membership "<c>-<g>" of every contact in g0 and
        g1 -> (groups, contacts, [(contact, group)]); waits for nothing."""
        groups = ["g%d" % i for i in range(3)]
        contacts = ["c%d" % i for i in range(4)]
        for g in groups:
            self.group(ns, g, "Group " + g)
        for c in contacts:
            self.contact(ns, c, "%s@example.com" % c, "Name " + c)
        pairs = [(c, g) for c in contacts for g in groups[:2]]
        for c, g in pairs:
            self.membership(ns, "%s-%s" % (c, g), c, g)
        return groups, contacts, pairs

    def one_to_one(self, ns, n, timeout=60):
        """n groups g<i> ("Group <i>"), contacts c<i> (c<i>@example.com) and
        memberships m<i> of c<i> in g<i>; waits until every membership is Ready."""
        for i in range(n):
            self.group(ns, "g%d" % i, "Group %d" % i)
            self.contact(ns, "c%d" % i, "c%d@example.com" % i)
            self.membership(ns, "m%d" % i, "c%d" % i, "g%d" % i)
        for i in range(n):
            self.wait_ready(MEMBERSHIP, ns, "m%d" % i, timeout=timeout)

    # ---- waits

    def wait_condition(self, kind, ns, name, ctype="Ready", status="True", reason=None,
                       timeout=DEFAULT_TIMEOUT, current=True):
        """Waits for a condition on the current generation; returns the object."""
        def check():
            o = self.get(kind, ns, name)
            c = condition(o, ctype)
            if not c or c.get("status") != status:
                return None
            if reason is not None and c.get("reason") != reason:
                return None
            gen = o["metadata"].get("generation")
            if current and (c.get("observedGeneration") != gen or
                            o["status"].get("observedGeneration") != gen):
                return None
            return o
        return wait_for(check, timeout, "%s %s/%s %s=%s%s" % (
            kind, ns, name, ctype, status, " (%s)" % reason if reason else ""))

    def wait_ready(self, kind, ns, name, timeout=DEFAULT_TIMEOUT):
        return self.wait_condition(kind, ns, name, "Ready", "True", timeout=timeout)

    def wait_gone(self, kind, ns, name, timeout=DEFAULT_TIMEOUT):
        wait_for(lambda: self.get(kind, ns, name) is None, timeout,
                 "%s %s/%s to be gone" % (kind, ns, name))

    def wait_event(self, ns, kind, name, reason, timeout=DEFAULT_TIMEOUT):
        return wait_for(lambda: [e for e in self.events(ns, kind, name)
                                 if e.get("reason") == reason],
                        timeout, "an Event %s on %s %s/%s" % (reason, kind, ns, name))

    # ---- the provider (either stand-in: same control API for state and calls)

    def provider(self):
        return self.standin.control("state", method="GET")

    def segments(self):
        return self.provider()["segments"]

    def segments_named(self, suffix):
        return [s for s in self.segments() if s["name"].endswith(suffix)]

    def provider_contacts(self, email=None):
        cs = self.provider()["contacts"]
        if email is not None:
            cs = [c for c in cs if c["email"].lower() == email.lower()]
        return cs

    def calls(self, since=None, log=False):
        q = {"log": "1" if log else "0"}
        if since is not None:
            q["since"] = str(since)
        return self.standin.control("calls", method="GET", query=q)

    def call_total(self):
        return self.calls()["total"]

    def quiet(self, seconds=1.0, timeout=DEFAULT_TIMEOUT):
        """Waits until the provider has seen no call for `seconds`; returns the total."""
        last = [self.call_total(), time.monotonic()]

        def still():
            n = self.call_total()
            now = time.monotonic()
            if n != last[0]:
                last[0], last[1] = n, now
                return None
            return now - last[1] >= seconds and (n,)
        return wait_for(still, timeout, "the provider to go quiet")[0]

    # ---- the Mailgun stand-in

    def lists(self):
        return self.provider()["lists"]

    def mailing_list(self, address):
        """One list as the stand-in holds it (members included), or None."""
        for lst in self.lists():
            if lst["address"].lower() == address.lower():
                return lst
        return None

    def members(self, address):
        """{member address (lower case): member} of one list; {} when there is no such list."""
        lst = self.mailing_list(address)
        return {m["address"].lower(): m for m in (lst or {}).get("members") or []}

    def list_address(self, ns, name):
        """The address a ContactGroup's list gets when both parts are short and plain."""
        return "%s.%s@%s" % (ns, name, MAILGUN_DOMAIN)
