"""Tests for kube_standin.py: the kube-apiserver stand-in.

Each test starts its own stand-in on a free 127.0.0.1 port and stops it.
Admission tests run a small HTTPS webhook in-process, with a throwaway CA and
serving certificate made by certtool (gnutls-bin) once per module.
"""

import base64
import http.client
import http.server
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
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crd_schema  # noqa: E402
from kube_standin import StandIn  # noqa: E402
import required  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
NOTIF = "/apis/notification.miloapis.com/v1alpha1"
KUBECTL = shutil.which("kubectl")
CERTTOOL = shutil.which("certtool")
SVC = "contact-webhook.milo-system.svc"
CERTS = {}
OPTIMISTIC = ("the object has been modified; please apply your changes to the latest "
              "version and try again")


def setUpModule():
    if not CERTTOOL:
        return
    d = tempfile.mkdtemp(prefix="standin-certs-")
    CERTS["dir"] = d

    def run(*args):
        subprocess.run([CERTTOOL] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=20)

    def write(name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
        return os.path.join(d, name)

    for ca in ("ca", "otherca"):
        run("--generate-privkey", "--key-type=ecdsa", "--outfile", os.path.join(d, ca + ".key"))
        run("--generate-self-signed", "--load-privkey", os.path.join(d, ca + ".key"),
            "--template", write(ca + ".tmpl", 'cn = "%s"\nca\ncert_signing_key\n'
                                'expiration_days = 2\n' % ca),
            "--outfile", os.path.join(d, ca + ".crt"))
    run("--generate-privkey", "--key-type=ecdsa", "--outfile", os.path.join(d, "srv.key"))
    run("--generate-certificate", "--load-privkey", os.path.join(d, "srv.key"),
        "--load-ca-certificate", os.path.join(d, "ca.crt"),
        "--load-ca-privkey", os.path.join(d, "ca.key"),
        "--template", write("srv.tmpl", 'cn = "%s"\ndns_name = "%s"\ndns_name = "localhost"\n'
                            'ip_address = "127.0.0.1"\ntls_www_server\nsigning_key\n'
                            'encryption_key\nexpiration_days = 2\n' % (SVC, SVC)),
        "--outfile", os.path.join(d, "srv.crt"))
    for name in ("ca", "otherca"):
        with open(os.path.join(d, name + ".crt"), "rb") as f:
            CERTS[name + "_b64"] = base64.b64encode(f.read()).decode()
    CERTS["ca"] = os.path.join(d, "ca.crt")
    CERTS["crt"] = os.path.join(d, "srv.crt")
    CERTS["key"] = os.path.join(d, "srv.key")


def tearDownModule():
    if CERTS.get("dir"):
        shutil.rmtree(CERTS["dir"], ignore_errors=True)


def contact(name, ns="org-xyz", email="john@example.com", **extra):
    obj = {"apiVersion": "notification.miloapis.com/v1alpha1", "kind": "Contact",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"email": email, "subject": {"userRef": {"name": "u1"}}}}
    obj.update(extra)
    return obj


class Client:
    """Minimal JSON client for the stand-in (one keep-alive connection)."""

    def __init__(self, port, token="t"):
        self.port = port
        self.token = token
        self.conn = None

    def request(self, method, path, body=None, ctype="application/json", headers=None,
                raw=False):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if data is not None:
            h["Content-Type"] = ctype
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            try:
                self.conn.request(method, path, body=data, headers=h)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.will_close:
            self.conn.close()
            self.conn = None
        if raw:
            return resp.status, resp, payload
        try:
            return resp.status, json.loads(payload) if payload else None
        except ValueError:
            return resp.status, payload.decode()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body, ctype="application/merge-patch+json", **kw):
        return self.request("PATCH", path, body, ctype=ctype, **kw)

    def delete(self, path, body=None, **kw):
        return self.request("DELETE", path, body, **kw)

    def control(self, action, body=None, method="POST"):
        return self.request(method, "/_standin/" + action, body if body is not None else {})

    def close(self):
        if self.conn:
            self.conn.close()


class RawWatch:
    """A watch read chunk by chunk off the socket, to see the framing."""

    def __init__(self, port, path, token="t", timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                           "Accept: application/json\r\n\r\n" % (path, token)).encode())
        self.f = self.sock.makefile("rb")
        status = self.f.readline().decode()
        self.status = int(status.split()[1])
        self.headers = {}
        while True:
            line = self.f.readline().decode().strip()
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.buf = b""
        self.decoder = json.JSONDecoder()
        self.ended = False
        self.chunks = []

    def body(self):
        n = int(self.headers.get("content-length", "0"))
        return json.loads(self.f.read(n))

    def next_chunk(self):
        """A chunk's bytes; None at the terminating chunk; raises EOFError on a cut."""
        line = self.f.readline()
        if not line:
            raise EOFError("connection closed without the terminating chunk")
        size = int(line.strip(), 16)
        if size == 0:
            self.f.readline()
            self.ended = True
            return None
        data = self.f.read(size)
        self.f.readline()
        self.chunks.append(data)
        return data

    def events(self, n, deadline=10.0):
        """Reads until n more events arrived (or the stream ended)."""
        out = []
        end = time.monotonic() + deadline
        while len(out) < n and time.monotonic() < end:
            while True:
                s = self.buf.lstrip()
                if not s:
                    self.buf = b""
                    break
                try:
                    ev, idx = self.decoder.raw_decode(s.decode())
                except ValueError:
                    break
                out.append(ev)
                self.buf = s[len(s.decode()[:idx].encode()):]
                if len(out) >= n:
                    return out
            if self.ended:
                break
            chunk = self.next_chunk()
            if chunk is None:
                continue
            self.buf += chunk
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class StandInCase(unittest.TestCase):
    config = {}

    def setUp(self):
        self.s = StandIn(**self.config).start()
        self.c = Client(self.s.port)
        self.tmp = tempfile.mkdtemp(prefix="standin-test-")

    def tearDown(self):
        self.c.close()
        self.s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def create(self, obj, ns=None):
        ns = ns or obj["metadata"].get("namespace", "org-xyz")
        code, body = self.c.post("%s/namespaces/%s/contacts" % (NOTIF, ns), obj)
        self.assertEqual(code, 201, body)
        return body

    def path(self, name, ns="org-xyz", plural="contacts"):
        return "%s/namespaces/%s/%s/%s" % (NOTIF, ns, plural, name)


# ---------------------------------------------------------------------------
# CRUD, status, patches, finalizers, paging
# ---------------------------------------------------------------------------

class CrudTests(StandInCase):
    def test_discovery(self):
        code, v = self.c.get("/version")
        self.assertEqual((code, v["major"], v["minor"]), (200, "1", "35"))
        code, api = self.c.get("/api")
        self.assertEqual(api["versions"], ["v1"])
        code, groups = self.c.get("/apis")
        names = [g["name"] for g in groups["groups"]]
        for g in ("notification.miloapis.com", "iam.miloapis.com",
                  "resourcemanager.miloapis.com", "apiextensions.k8s.io",
                  "admissionregistration.k8s.io", "authorization.k8s.io",
                  "events.k8s.io", "coordination.k8s.io"):
            self.assertIn(g, names)
        code, rl = self.c.get(NOTIF)
        res = {r["name"]: r for r in rl["resources"]}
        self.assertEqual(rl["groupVersion"], "notification.miloapis.com/v1alpha1")
        for p in ("contacts", "contactgroups", "contactgroupmemberships",
                  "contactgroupmembershipremovals"):
            self.assertTrue(res[p]["namespaced"])
            self.assertEqual(res[p + "/status"]["verbs"], ["get", "patch", "update"])
        self.assertEqual(res["contacts"]["kind"], "Contact")
        code, rl = self.c.get("/apis/iam.miloapis.com/v1alpha1")
        self.assertFalse(rl["resources"][0]["namespaced"])
        code, rl = self.c.get("/api/v1")
        self.assertIn("namespaces", [r["name"] for r in rl["resources"]])
        self.assertEqual(self.c.get("/openapi/v2")[0], 404)
        code, st = self.c.get("/apis/nope.example.com/v1/things")
        self.assertEqual((code, st["reason"]), (404, "NotFound"))

    def test_create_get_list(self):
        obj = contact("john-doe", status={"providerID": "ignored"})
        out = self.create(obj)
        m = out["metadata"]
        self.assertEqual(m["generation"], 1)
        self.assertTrue(m["uid"] and m["creationTimestamp"].endswith("Z"))
        self.assertNotIn("status", out)     # status is dropped on create
        code, got = self.c.get(self.path("john-doe"))
        self.assertEqual((code, got), (200, out))
        code, lst = self.c.get(NOTIF + "/namespaces/org-xyz/contacts")
        self.assertEqual(lst["kind"], "ContactList")
        self.assertEqual([i["metadata"]["name"] for i in lst["items"]], ["john-doe"])
        self.assertGreaterEqual(int(lst["metadata"]["resourceVersion"]),
                                int(m["resourceVersion"]))
        code, lst = self.c.get(NOTIF + "/contacts")   # all namespaces
        self.assertEqual(len(lst["items"]), 1)
        # The namespace was auto-created with its name label.
        code, ns = self.c.get("/api/v1/namespaces/org-xyz")
        self.assertEqual(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "org-xyz")

    def test_resource_versions_are_one_counter(self):
        a = self.create(contact("a"))
        b = self.create(contact("b", ns="other"))
        self.assertGreater(int(b["metadata"]["resourceVersion"]),
                           int(a["metadata"]["resourceVersion"]))

    def test_generate_name(self):
        obj = contact("x")
        obj["metadata"] = {"generateName": "john-"}
        out = self.create(obj, ns="org-xyz")
        self.assertRegex(out["metadata"]["name"], r"^john-[a-z0-9]{5}$")

    def test_errors_are_kube_statuses(self):
        self.create(contact("john-doe"))
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("john-doe"))
        self.assertEqual(code, 409)
        self.assertEqual(st, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure",
                              "message": 'contacts.notification.miloapis.com "john-doe" '
                                         'already exists',
                              "reason": "AlreadyExists",
                              "details": {"name": "john-doe",
                                          "group": "notification.miloapis.com",
                                          "kind": "contacts"},
                              "code": 409})
        code, st = self.c.get(self.path("x"))
        self.assertEqual((code, st["reason"], st["message"]),
                         (404, "NotFound", 'contacts.notification.miloapis.com "x" not found'))
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("Bad_Name"))
        self.assertEqual((code, st["reason"]), (422, "Invalid"))
        self.assertTrue(st["message"].startswith(
            'Contact.notification.miloapis.com "Bad_Name" is invalid: metadata.name: '
            'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'), st["message"])
        self.assertEqual(st["details"]["causes"][0]["reason"], "FieldValueInvalid")
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", b"{nope")
        self.assertEqual((code, st["reason"]), (400, "BadRequest"))
        code, st = self.c.post(self.path("john-doe"), contact("y"))
        self.assertEqual((code, st["reason"]), (405, "MethodNotAllowed"))
        obj = contact("z", ns="elsewhere")
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", obj)
        self.assertEqual(code, 400)
        self.assertIn("does not match the namespace", st["message"])

    def test_update_conflict_and_generation(self):
        out = self.create(contact("john-doe"))
        rv1 = out["metadata"]["resourceVersion"]
        out["metadata"]["labels"] = {"a": "b"}
        code, upd = self.c.put(self.path("john-doe"), out)
        self.assertEqual(code, 200, upd)
        self.assertEqual(upd["metadata"]["generation"], 1)     # metadata only
        self.assertNotEqual(upd["metadata"]["resourceVersion"], rv1)
        out["spec"]["givenName"] = "John"                        # stale RV
        code, st = self.c.put(self.path("john-doe"), out)
        self.assertEqual((code, st["reason"]), (409, "Conflict"))
        self.assertEqual(st["message"], 'Operation cannot be fulfilled on '
                         'contacts.notification.miloapis.com "john-doe": ' + OPTIMISTIC)
        upd["spec"]["givenName"] = "John"
        code, upd2 = self.c.put(self.path("john-doe"), upd)
        self.assertEqual(upd2["metadata"]["generation"], 2)
        # A no-op update writes nothing: same resourceVersion.
        code, upd3 = self.c.put(self.path("john-doe"), upd2)
        self.assertEqual(upd3["metadata"]["resourceVersion"],
                         upd2["metadata"]["resourceVersion"])
        # No resourceVersion: unconditional.
        del upd2["metadata"]["resourceVersion"]
        upd2["spec"]["familyName"] = "Doe"
        code, upd4 = self.c.put(self.path("john-doe"), upd2)
        self.assertEqual((code, upd4["metadata"]["generation"]), (200, 3))
        code, st = self.c.put(self.path("nobody"), contact("nobody"))
        self.assertEqual(code, 404)

    def test_status_subresource(self):
        out = self.create(contact("john-doe"))
        out["status"] = {"providerID": "p-1", "observedGeneration": 1}
        out["spec"]["givenName"] = "Ignored"
        code, st = self.c.put(self.path("john-doe") + "/status", out)
        self.assertEqual(code, 200, st)
        self.assertEqual(st["status"]["providerID"], "p-1")
        self.assertNotIn("givenName", st["spec"])           # only status changed
        self.assertEqual(st["metadata"]["generation"], 1)
        code, st2 = self.c.patch(self.path("john-doe"), {"status": {"providerID": "x"},
                                                         "spec": {"givenName": "J"}})
        self.assertEqual(st2["status"]["providerID"], "p-1")  # main resource ignores status
        self.assertEqual(st2["spec"]["givenName"], "J")
        code, st3 = self.c.patch(self.path("john-doe") + "/status",
                                 {"status": {"conditions": [{"type": "Ready"}]}})
        self.assertEqual(st3["status"]["conditions"], [{"type": "Ready"}])
        self.assertEqual(st3["metadata"]["generation"], 2)
        code, g = self.c.get(self.path("john-doe") + "/status")
        self.assertEqual(g["status"]["providerID"], "p-1")

    def test_patches(self):
        self.create(contact("john-doe"))
        code, o = self.c.patch(self.path("john-doe"), {"spec": {"givenName": "John",
                                                                "subject": None}})
        self.assertEqual(code, 200)
        self.assertEqual(o["spec"], {"email": "john@example.com", "givenName": "John"})
        ops = [{"op": "add", "path": "/metadata/labels", "value": {"a/b": "1"}},
               {"op": "add", "path": "/spec/tags", "value": ["x"]},
               {"op": "add", "path": "/spec/tags/-", "value": "z"},
               {"op": "add", "path": "/spec/tags/1", "value": "y"},
               {"op": "replace", "path": "/spec/givenName", "value": "Jo"},
               {"op": "copy", "from": "/spec/givenName", "path": "/spec/familyName"},
               {"op": "move", "from": "/spec/familyName", "path": "/spec/nick"},
               {"op": "remove", "path": "/spec/tags/0"},
               {"op": "test", "path": "/spec/nick", "value": "Jo"}]
        code, o = self.c.patch(self.path("john-doe"), ops, ctype="application/json-patch+json")
        self.assertEqual(code, 200, o)
        self.assertEqual(o["spec"]["tags"], ["y", "z"])
        self.assertEqual(o["spec"]["nick"], "Jo")
        self.assertNotIn("familyName", o["spec"])
        self.assertEqual(o["metadata"]["labels"], {"a/b": "1"})
        code, st = self.c.patch(self.path("john-doe"),
                                [{"op": "test", "path": "/spec/nick", "value": "X"}],
                                ctype="application/json-patch+json")
        self.assertEqual((code, st["reason"]), (422, "Invalid"))
        code, st = self.c.patch(self.path("john-doe"),
                                [{"op": "remove", "path": "/spec/missing"}],
                                ctype="application/json-patch+json")
        self.assertEqual(code, 422)
        code, st = self.c.patch(self.path("john-doe"), {"spec": {}},
                                ctype="application/strategic-merge-patch+json")
        self.assertEqual((code, st["reason"]), (415, "UnsupportedMediaType"))
        code, st = self.c.patch(self.path("john-doe"), {"spec": {}},
                                ctype="application/apply-patch+yaml")
        self.assertEqual(code, 415)
        code, st = self.c.patch(self.path("john-doe"),
                                {"metadata": {"resourceVersion": "1"}, "spec": {"a": 1}})
        self.assertEqual((code, st["reason"]), (409, "Conflict"))
        code, st = self.c.patch(self.path("ghost"), {"spec": {}})
        self.assertEqual(code, 404)
        # Strategic merge for built-ins: merge lists by key.
        code, ns = self.c.patch("/api/v1/namespaces/org-xyz", {"metadata": {"labels": {"x": "y"}}},
                                ctype="application/strategic-merge-patch+json")
        self.assertEqual(ns["metadata"]["labels"]["x"], "y")

    def test_finalizers_and_deletion_timestamp(self):
        obj = contact("john-doe")
        obj["metadata"]["finalizers"] = ["notification.miloapis.com/provider"]
        self.create(obj)
        code, o = self.c.delete(self.path("john-doe"))
        self.assertEqual(code, 200)
        self.assertTrue(o["metadata"]["deletionTimestamp"])
        self.assertEqual(o["metadata"]["generation"], 2)
        code, again = self.c.delete(self.path("john-doe"))
        self.assertEqual(again["metadata"]["resourceVersion"], o["metadata"]["resourceVersion"])
        code, st = self.c.patch(self.path("john-doe"),
                                {"metadata": {"finalizers": ["notification.miloapis.com/provider",
                                                             "example.com/more"]}})
        self.assertEqual((code, st["reason"]), (422, "Invalid"))
        self.assertIn("no new finalizers can be added if the object is being deleted",
                      st["message"])
        code, o2 = self.c.patch(self.path("john-doe"), {"metadata": {"finalizers": None}})
        self.assertEqual(code, 200)
        self.assertEqual(self.c.get(self.path("john-doe"))[0], 404)
        # Without finalizers: gone at once, Status Success.
        self.create(contact("jane"))
        code, st = self.c.delete(self.path("jane"))
        self.assertEqual((code, st["kind"], st["status"]), (200, "Status", "Success"))
        self.assertEqual(st["details"]["name"], "jane")
        self.assertEqual(self.c.delete(self.path("jane"))[0], 404)
        # Preconditions.
        out = self.create(contact("p"))
        code, st = self.c.delete(self.path("p"), {"preconditions": {"uid": "nope"}})
        self.assertEqual((code, st["reason"]), (409, "Conflict"))
        code, st = self.c.delete(self.path("p"), {"preconditions": {
            "resourceVersion": out["metadata"]["resourceVersion"]}})
        self.assertEqual(code, 200)

    def test_finalizer_name_checks(self):
        obj = contact("f")
        obj["metadata"]["finalizers"] = ["bad name!"]
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", obj)
        self.assertEqual(code, 422)
        obj["metadata"]["finalizers"] = ["plain"]
        code, st, raw = self.c.request("POST", NOTIF + "/namespaces/org-xyz/contacts",
                                       obj, raw=True)
        self.assertEqual(code, 201)
        self.assertIn("prefer a domain-qualified finalizer name", st.getheader("Warning"))

    def test_dry_run(self):
        code, o = self.c.post(NOTIF + "/namespaces/org-xyz/contacts?dryRun=All",
                              contact("dry"))
        self.assertEqual(code, 201)
        self.assertEqual(self.c.get(self.path("dry"))[0], 404)
        self.create(contact("real"))
        code, o = self.c.patch(self.path("real") + "?dryRun=All", {"spec": {"givenName": "Z"}})
        self.assertEqual(o["spec"]["givenName"], "Z")
        self.assertNotIn("givenName", self.c.get(self.path("real"))[1]["spec"])
        code, o = self.c.delete(self.path("real"), {"dryRun": ["All"]})
        self.assertEqual(code, 200)
        code, o = self.c.delete(self.path("real") + "?dryRun=All")
        self.assertEqual(self.c.get(self.path("real"))[0], 200)
        self.assertEqual(self.c.post(NOTIF + "/namespaces/org-xyz/contacts?dryRun=Bad",
                                     contact("x"))[0], 400)

    def test_paging_and_continue(self):
        for i in range(7):
            self.create(contact("c%d" % i))
        names, cont, pages = [], "", 0
        code, page = self.c.get(NOTIF + "/namespaces/org-xyz/contacts?limit=3")
        self.assertEqual(page["metadata"]["remainingItemCount"], 4)
        list_rv = page["metadata"]["resourceVersion"]
        self.create(contact("c9"))      # after the first page: not in this list
        while True:
            pages += 1
            names += [i["metadata"]["name"] for i in page["items"]]
            cont = page["metadata"].get("continue")
            if not cont:
                break
            self.assertEqual(page["metadata"]["resourceVersion"], list_rv)
            code, page = self.c.get(NOTIF + "/namespaces/org-xyz/contacts?limit=3&continue="
                                    + cont)
            self.assertEqual(code, 200, page)
        self.assertEqual(names, ["c%d" % i for i in range(7)])
        self.assertEqual(pages, 3)
        code, page = self.c.get(NOTIF + "/namespaces/org-xyz/contacts?limit=2")
        cont = page["metadata"]["continue"]
        self.create(contact("later"))
        self.c.control("compact")
        code, st = self.c.get(NOTIF + "/namespaces/org-xyz/contacts?limit=2&continue=" + cont)
        self.assertEqual((code, st["reason"], st["code"]), (410, "Expired", 410))
        self.assertEqual(self.c.get(NOTIF + "/namespaces/org-xyz/contacts?continue=zz!")[0],
                         400)

    def test_selectors(self):
        for name, team in (("a", "red"), ("b", "blue"), ("c", None)):
            obj = contact(name)
            if team:
                obj["metadata"]["labels"] = {"team": team}
            self.create(obj)

        def names(q):
            code, lst = self.c.get(NOTIF + "/namespaces/org-xyz/contacts?" + q)
            self.assertEqual(code, 200, lst)
            return [i["metadata"]["name"] for i in lst["items"]]
        self.assertEqual(names("labelSelector=team%3Dred"), ["a"])
        self.assertEqual(names("labelSelector=team"), ["a", "b"])
        self.assertEqual(names("labelSelector=!team"), ["c"])
        self.assertEqual(names("labelSelector=team+in+(red,blue)"), ["a", "b"])
        self.assertEqual(names("labelSelector=team!%3Dred"), ["b", "c"])
        self.assertEqual(names("fieldSelector=metadata.name%3Db"), ["b"])
        self.assertEqual(self.c.get(NOTIF + "/contacts?fieldSelector=spec.x%3D1")[0], 400)

    def test_cluster_scoped_and_leases_and_events(self):
        user = {"apiVersion": "iam.miloapis.com/v1alpha1", "kind": "User",
                "metadata": {"name": "332926980888461588", "namespace": "ignored"},
                "spec": {"email": "u@example.com"}}
        code, u = self.c.post("/apis/iam.miloapis.com/v1alpha1/users", user)
        self.assertEqual(code, 201, u)
        self.assertNotIn("namespace", u["metadata"])
        self.assertEqual(self.c.get("/apis/iam.miloapis.com/v1alpha1/users/332926980888461588")[0],
                         200)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "reconciler"},
                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
        code, l1 = self.c.post("/apis/coordination.k8s.io/v1/namespaces/milo-system/leases", lease)
        self.assertEqual(code, 201)
        l1["spec"]["holderIdentity"] = "b"
        p = "/apis/coordination.k8s.io/v1/namespaces/milo-system/leases/reconciler"
        self.assertEqual(self.c.put(p, l1)[0], 200)
        self.assertEqual(self.c.put(p, l1)[0], 409)   # the loser of a race
        ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
              "metadata": {"generateName": "john-doe."}, "reason": "Synced",
              "action": "Sync", "type": "Normal", "note": "ok",
              "eventTime": "2025-01-01T00:00:00.000000Z",
              "reportingController": "x/y", "reportingInstance": "i",
              "regarding": {"kind": "Contact", "name": "john-doe"}}
        code, e = self.c.post("/apis/events.k8s.io/v1/namespaces/org-xyz/events", ev)
        self.assertEqual(code, 201, e)

    def test_namespaces_lifecycle_and_gc(self):
        user = {"apiVersion": "iam.miloapis.com/v1alpha1", "kind": "User",
                "metadata": {"name": "u1"}}
        code, u = self.c.post("/apis/iam.miloapis.com/v1alpha1/users", user)
        obj = contact("owned")
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "iam.miloapis.com/v1alpha1",
                                               "kind": "User", "name": "u1",
                                               "uid": u["metadata"]["uid"]}]
        self.create(obj)
        self.c.delete("/apis/iam.miloapis.com/v1alpha1/users/u1")
        self.assertEqual(self.c.get(self.path("owned"))[0], 404)   # garbage-collected
        fin = contact("held", ns="doomed")
        fin["metadata"]["finalizers"] = ["example.com/hold"]
        self.create(fin)
        self.create(contact("free", ns="doomed"))
        code, ns = self.c.delete("/api/v1/namespaces/doomed")
        self.assertEqual((code, ns["status"]["phase"]), (200, "Terminating"))
        self.assertEqual(self.c.get(self.path("free", ns="doomed"))[0], 404)
        code, st = self.c.post(NOTIF + "/namespaces/doomed/contacts", contact("new", ns="doomed"))
        self.assertEqual((code, st["reason"]), (403, "Forbidden"))
        self.assertIn("because it is being terminated", st["message"])
        self.c.patch(self.path("held", ns="doomed"), {"metadata": {"finalizers": None}})
        self.assertEqual(self.c.get("/api/v1/namespaces/doomed")[0], 404)
        self.c.control("config", {"autoCreateNamespaces": False})
        code, st = self.c.post(NOTIF + "/namespaces/nowhere/contacts", contact("x", ns="nowhere"))
        self.assertEqual((code, st["message"]), (404, 'namespaces "nowhere" not found'))

    def test_crds_are_stored_and_served(self):
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": True, "storage": True,
                                      "subresources": {"status": {}},
                                      "additionalPrinterColumns": [
                                          {"name": "Size", "type": "integer",
                                           "jsonPath": ".spec.size"}]}]}}
        p = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        code, out = self.c.post(p, crd)
        self.assertEqual(code, 201, out)
        conds = {c["type"]: c["status"] for c in out["status"]["conditions"]}
        self.assertEqual(conds["Established"], "True")
        code, w = self.c.post("/apis/example.com/v1/namespaces/a/widgets",
                              {"apiVersion": "example.com/v1", "kind": "Widget",
                               "metadata": {"name": "w"}, "spec": {"size": 3}})
        self.assertEqual(code, 201, w)
        code, t = self.c.get("/apis/example.com/v1/namespaces/a/widgets",
                             headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        self.assertEqual([c["name"] for c in t["columnDefinitions"]], ["Name", "Size"])
        self.assertEqual(t["rows"][0]["cells"], ["w", 3])
        self.c.delete(p + "/widgets.example.com")
        self.assertEqual(self.c.get("/apis/example.com/v1/namespaces/a/widgets")[0], 404)

    def test_webhook_configuration_defaults_and_validation(self):
        vwc = {"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "v"},
               "webhooks": [{"name": "bad", "clientConfig": {"url": "http://x/"},
                             "rules": [{"operations": ["CREATE"], "apiGroups": ["*"],
                                        "apiVersions": ["*"], "resources": ["*"]}]}]}
        p = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        code, st = self.c.post(p, vwc)
        self.assertEqual(code, 422)
        fields = [c["field"] for c in st["details"]["causes"]]
        self.assertIn("webhooks[0].name", fields)
        self.assertIn("webhooks[0].sideEffects", fields)
        self.assertIn("webhooks[0].admissionReviewVersions", fields)
        self.assertIn("webhooks[0].clientConfig.url", fields)
        vwc["webhooks"][0].update({"name": "v.example.com", "sideEffects": "None",
                                   "admissionReviewVersions": ["v1"],
                                   "clientConfig": {"service": {"name": "s", "namespace": "n"}}})
        code, out = self.c.post(p, vwc)
        self.assertEqual(code, 201, out)
        wh = out["webhooks"][0]
        self.assertEqual((wh["failurePolicy"], wh["matchPolicy"], wh["timeoutSeconds"],
                          wh["namespaceSelector"], wh["objectSelector"],
                          wh["rules"][0]["scope"], wh["clientConfig"]["service"]["port"]),
                         ("Fail", "Equivalent", 10, {}, {}, "*", 443))

    def test_table_output(self):
        self.create(contact("a"))
        code, t = self.c.get(NOTIF + "/namespaces/org-xyz/contacts",
                             headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,"
                                                "application/json"})
        self.assertEqual((t["kind"], [c["name"] for c in t["columnDefinitions"]]),
                         ("Table", ["Name", "Age"]))
        self.assertEqual(t["rows"][0]["object"]["kind"], "PartialObjectMetadata")


# ---------------------------------------------------------------------------
# Watch
# ---------------------------------------------------------------------------

class WatchTests(StandInCase):
    def watch(self, query, ns="org-xyz"):
        base = NOTIF + ("/namespaces/%s/contacts" % ns if ns else "/contacts")
        w = RawWatch(self.s.port, base + "?watch=1&" + query)
        self.addCleanup(w.close)
        return w

    def test_events_namespaced_and_cluster_wide(self):
        start = self.create(contact("pre"))["metadata"]["resourceVersion"]
        w = self.watch("resourceVersion=%s&timeoutSeconds=10" % start)
        wall = self.watch("resourceVersion=%s&timeoutSeconds=10" % start, ns=None)
        self.assertEqual(w.status, 200)
        self.assertEqual(w.headers["transfer-encoding"], "chunked")
        a = self.create(contact("a"))
        self.create(contact("other", ns="elsewhere"))
        self.c.patch(self.path("a"), {"spec": {"givenName": "A"}})
        self.c.delete(self.path("a"))
        evs = w.events(3)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "MODIFIED", "DELETED"])
        self.assertEqual(evs[0]["object"]["metadata"]["uid"], a["metadata"]["uid"])
        self.assertEqual(evs[1]["object"]["spec"]["givenName"], "A")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        self.assertEqual(rvs, sorted(rvs))
        names = [(e["type"], e["object"]["metadata"]["name"]) for e in wall.events(4)]
        self.assertEqual(names, [("ADDED", "a"), ("ADDED", "other"), ("MODIFIED", "a"),
                                 ("DELETED", "a")])

    def test_initial_state_without_resource_version(self):
        self.create(contact("x"))
        self.create(contact("y"))
        w = self.watch("timeoutSeconds=5")
        evs = w.events(2)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in evs],
                         [("ADDED", "x"), ("ADDED", "y")])

    def test_bookmarks_and_resume(self):
        self.c.control("bookmarks", {"interval": 0.2})
        rv = self.create(contact("a"))["metadata"]["resourceVersion"]
        w = self.watch("resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=10" % rv)
        self.create(contact("b"))
        evs = w.events(2)
        self.assertEqual(evs[0]["type"], "ADDED")
        self.assertEqual(evs[1]["type"], "BOOKMARK")
        bm = evs[1]["object"]
        self.assertEqual(set(bm["metadata"]), {"resourceVersion"})
        self.assertEqual(bm["kind"], "Contact")
        last = evs[1]["object"]["metadata"]["resourceVersion"]
        w.close()
        self.create(contact("c"))
        w2 = self.watch("resourceVersion=%s&timeoutSeconds=10" % last)
        evs = w2.events(1)
        self.assertEqual(evs[0]["object"]["metadata"]["name"], "c")
        # No bookmarks unless asked.
        w3 = self.watch("resourceVersion=%s&timeoutSeconds=1" % last)
        self.assertEqual([e["type"] for e in w3.events(5, deadline=3)], ["ADDED"])

    def test_gone_http_and_event_modes(self):
        rv = self.create(contact("a"))["metadata"]["resourceVersion"]
        self.create(contact("b"))
        self.c.control("compact")
        w = self.watch("resourceVersion=%s" % rv)
        self.assertEqual(w.status, 410)
        st = w.body()
        self.assertEqual((st["kind"], st["reason"], st["code"]), ("Status", "Expired", 410))
        self.assertTrue(st["message"].startswith("too old resource version: %s" % rv))
        self.c.control("watch-mode", {"goneMode": "event", "goneReason": "Gone"})
        w = self.watch("resourceVersion=%s" % rv)
        self.assertEqual(w.status, 200)
        evs = w.events(1)
        self.assertEqual(evs[0]["type"], "ERROR")
        self.assertEqual((evs[0]["object"]["code"], evs[0]["object"]["reason"]), (410, "Gone"))
        self.assertIsNone(w.next_chunk())     # then the stream ends cleanly

    def test_history_window_expires_mid_stream(self):
        self.c.control("config", {"historySize": 3})
        rv = self.create(contact("a"))["metadata"]["resourceVersion"]
        w = self.watch("resourceVersion=%s&timeoutSeconds=10" % rv)
        w.events(0)
        self.c.control("compact", {"expireOpenWatches": True})
        evs = w.events(1)
        self.assertEqual(evs[0]["type"], "ERROR")
        self.assertEqual((evs[0]["object"]["code"], evs[0]["object"]["reason"]),
                         (410, "Expired"))
        # A small window: old RVs fall out of it.
        for i in range(5):
            self.create(contact("n%d" % i))
        self.assertEqual(self.watch("resourceVersion=%s" % rv).status, 410)

    def test_cut_streams(self):
        w1 = self.watch("timeoutSeconds=30")
        w2 = self.watch("timeoutSeconds=30")
        time.sleep(0.1)
        code, out = self.c.control("cut-watches", {"mode": "abort"})
        self.assertEqual(out["cut"], 2)
        for w in (w1, w2):
            with self.assertRaises((EOFError, ConnectionError)):
                for _ in range(10):
                    w.next_chunk()
        w3 = self.watch("timeoutSeconds=30")
        time.sleep(0.1)
        self.c.control("cut-watches", {"mode": "clean"})
        self.assertIsNone(w3.next_chunk())

    def test_timeout_seconds_ends_stream(self):
        w = self.watch("timeoutSeconds=1")
        t0 = time.monotonic()
        self.assertIsNone(w.next_chunk())
        self.assertLess(time.monotonic() - t0, 3)

    def test_chunk_framing_modes(self):
        rv = self.create(contact("seed"))["metadata"]["resourceVersion"]
        for i in range(3):
            self.create(contact("p%d" % i))
        self.c.control("watch-mode", {"chunking": "pack"})
        w = self.watch("resourceVersion=%s&timeoutSeconds=5" % rv)
        first = w.next_chunk()
        self.assertEqual(first.count(b"\n"), 3)          # three events, one chunk
        self.c.control("watch-mode", {"chunking": "split", "chunkSize": 5})
        w = self.watch("resourceVersion=%s&timeoutSeconds=5" % rv)
        evs = w.events(3)
        self.assertEqual([e["object"]["metadata"]["name"] for e in evs], ["p0", "p1", "p2"])
        self.assertTrue(all(len(c) <= 5 for c in w.chunks))
        self.c.control("watch-mode", {"chunking": "mixed", "chunkSize": 64})
        w = self.watch("resourceVersion=%s&timeoutSeconds=5" % rv)
        evs = w.events(3)
        self.assertEqual(len(evs), 3)
        straddle = [c for c in w.chunks if b"\n" in c[:-1]]
        self.assertTrue(straddle, "some chunk should hold the end of one event and the "
                                  "start of the next")

    def test_label_selector_transitions(self):
        rv = self.create(contact("a"))["metadata"]["resourceVersion"]
        w = self.watch("resourceVersion=%s&labelSelector=team%%3Dred&timeoutSeconds=10" % rv)
        self.c.patch(self.path("a"), {"metadata": {"labels": {"team": "red"}}})
        self.c.patch(self.path("a"), {"metadata": {"labels": {"team": "blue"}}})
        evs = w.events(2)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "DELETED"])

    def test_watch_faults_apply(self):
        self.c.control("fail", {"count": 1, "code": 503, "pathPrefix": NOTIF})
        w = self.watch("timeoutSeconds=1")
        self.assertEqual(w.status, 503)
        self.assertEqual(w.body()["reason"], "ServiceUnavailable")


# ---------------------------------------------------------------------------
# Auth, SAR, faults, logs, CLI
# ---------------------------------------------------------------------------

class ControlTests(StandInCase):
    def sar(self, user, verb, resource, ns="b", groups=None):
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups or [],
                         "resourceAttributes": {"namespace": ns, "verb": verb,
                                                "group": "notification.miloapis.com",
                                                "resource": resource}}}
        code, out = self.c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        self.assertEqual(code, 201, out)
        return out["status"]["allowed"]

    def test_sar_policy(self):
        self.assertTrue(self.sar("alice", "get", "contacts"))
        self.c.control("sar-policy", {"rules": [
            {"user": "alice", "namespace": "b", "verb": "get", "resource": "contacts",
             "allowed": False},
            {"group": "admins", "allowed": True}], "default": False})
        self.assertFalse(self.sar("alice", "get", "contacts"))
        self.assertFalse(self.sar("alice", "get", "contacts", ns="c"))    # default now
        self.assertTrue(self.sar("bob", "get", "contacts", groups=["admins"]))
        code, st = self.c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews",
                               {"kind": "SubjectAccessReview", "spec": {"user": "x"}})
        self.assertEqual((code, st["reason"]), (422, "Invalid"))

    def test_enforced_policy(self):
        self.c.control("users", {"tokens": {"alice-token": {"username": "alice",
                                                             "groups": ["system:authenticated"]}}})
        self.c.control("sar-policy", {"enforce": True, "rules": [
            {"user": "alice", "verb": "create", "allowed": False}]})
        alice = Client(self.s.port, token="alice-token")
        self.addCleanup(alice.close)
        code, st = alice.post(NOTIF + "/namespaces/b/contacts", contact("x", ns="b"))
        self.assertEqual((code, st["reason"]), (403, "Forbidden"))
        self.assertEqual(st["message"], 'contacts.notification.miloapis.com is forbidden: User '
                         '"alice" cannot create resource "contacts" in API group '
                         '"notification.miloapis.com" in the namespace "b"')
        self.assertEqual(alice.get(NOTIF + "/namespaces/b/contacts")[0], 200)

    def token_review(self, token, client=None):
        code, out = (client or self.c).post("/apis/authentication.k8s.io/v1/tokenreviews",
                                            {"apiVersion": "authentication.k8s.io/v1",
                                             "kind": "TokenReview", "spec": {"token": token}})
        return code, out

    def test_token_review(self):
        # Any token is the default user while no tokens are required.
        code, out = self.token_review("whatever")
        self.assertEqual(code, 201, out)
        self.assertEqual(out["kind"], "TokenReview")
        self.assertTrue(out["status"]["authenticated"])
        self.assertEqual(out["status"]["user"]["username"], "admin")
        self.assertEqual(out["status"]["audiences"], ["https://kubernetes.default.svc"])
        # Mapped tokens are their users; with required tokens, others are refused.
        self.c.control("users", {"tokens": {"prom-token": {
            "username": "system:serviceaccount:monitoring:prometheus", "uid": "7",
            "groups": ["system:serviceaccounts", "system:authenticated"]}}})
        self.c.control("token", {"tokens": ["standin-token", "prom-token"]})
        self.c.token = "standin-token"
        code, out = self.token_review("prom-token")
        self.assertEqual(out["status"]["user"], {
            "username": "system:serviceaccount:monitoring:prometheus", "uid": "7",
            "groups": ["system:serviceaccounts", "system:authenticated"]})
        code, out = self.token_review("stolen")
        self.assertEqual(code, 201)
        self.assertNotIn("authenticated", out["status"])
        self.assertEqual(out["status"]["error"], "invalid bearer token")
        code, out = self.token_review("")
        self.assertEqual((code, out["reason"], out["message"]), (
            400, "BadRequest", "token is required for TokenReview in authentication"))
        self.assertEqual(self.c.get("/apis/authentication.k8s.io/v1/tokenreviews")[0], 405)

    def test_non_resource_sar(self):
        def sar(user, path, verb="get"):
            code, out = self.c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                "kind": "SubjectAccessReview", "spec": {
                    "user": user, "nonResourceAttributes": {"path": path, "verb": verb}}})
            self.assertEqual(code, 201, out)
            return out["status"]
        self.c.control("sar-policy", {"default": False, "rules": [
            {"user": "prom", "path": "/metrics", "verb": "get", "allowed": True,
             "reason": "RBAC: allowed by ClusterRoleBinding"}]})
        self.assertEqual(sar("prom", "/metrics"), {
            "allowed": True, "reason": "RBAC: allowed by ClusterRoleBinding"})
        self.assertFalse(sar("prom", "/metrics", "post")["allowed"])
        self.assertFalse(sar("prom", "/healthz")["allowed"])
        self.assertFalse(sar("eve", "/metrics")["allowed"])

    def test_enforced_reviews(self):
        """With enforce, creating a review needs create on it, as RBAC has it."""
        self.c.control("users", {"tokens": {"sa-token": {"username": "sa",
                                                          "groups": ["system:authenticated"]}}})
        self.c.control("sar-policy", {"enforce": True, "rules": [
            {"user": "sa", "verb": "create", "resource": "tokenreviews", "allowed": False}]})
        sa = Client(self.s.port, token="sa-token")
        self.addCleanup(sa.close)
        code, st = self.token_review("x", client=sa)
        self.assertEqual((code, st["reason"]), (403, "Forbidden"))
        self.assertIn('cannot create resource "tokenreviews" in API group '
                      '"authentication.k8s.io" at the cluster scope', st["message"])
        code, out = self.c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "kind": "SubjectAccessReview", "spec": {
                "user": "sa", "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}})
        self.assertEqual(code, 201, out)

    def test_token_switch(self):
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)      # any token
        self.c.control("token", {"tokens": ["new-token"]})
        code, st = self.c.get(NOTIF + "/contacts")
        self.assertEqual((code, st["reason"], st["message"]), (401, "Unauthorized",
                                                               "Unauthorized"))
        self.c.token = "new-token"
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)
        self.c.control("token", {"tokens": ["rotated", "new-token"]})
        self.c.token = "rotated"
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)
        self.c.token = None
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 401)
        self.c.control("token", {"tokens": None})
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)

    def test_faults_and_latency(self):
        self.c.control("fail", {"count": 2})
        self.assertEqual(self.c.get("/version")[0], 500)
        code, st = self.c.get(NOTIF + "/contacts")
        self.assertEqual((code, st["reason"]), (500, "InternalError"))
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)
        self.c.control("fail", {"code": 429, "retryAfter": 2, "pathPrefix": NOTIF + "/namespaces"})
        code, resp, payload = self.c.request("GET", NOTIF + "/namespaces/a/contacts", raw=True)
        self.assertEqual((code, resp.getheader("Retry-After")), (429, "2"))
        self.assertEqual(json.loads(payload)["details"]["retryAfterSeconds"], 2)
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)    # other prefix
        self.c.control("fail", {"clear": True})
        self.assertEqual(self.c.get(NOTIF + "/namespaces/a/contacts")[0], 200)
        self.c.control("fail", {"count": 1, "drop": True})
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            c2 = Client(self.s.port)
            try:
                c2.conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=5)
                c2.conn.request("GET", "/version")
                c2.conn.getresponse().read()
            finally:
                c2.close()
        self.c.control("latency", {"seconds": 0.3, "pathPrefix": "/version"})
        t0 = time.monotonic()
        self.assertEqual(self.c.get("/version")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_latency_for_lists_only_and_late_watch_events(self):
        # An informer's initial list delayed, its watch not; a bad request kind refused.
        self.c.control("latency", {"seconds": 0.5, "request": "list",
                                   "pathPrefix": NOTIF + "/contacts"})
        t0 = time.monotonic()
        self.assertEqual(self.c.get(NOTIF + "/contacts")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        t0 = time.monotonic()
        w = RawWatch(self.s.port, NOTIF + "/contacts?watch=1&timeoutSeconds=5")
        self.addCleanup(w.close)
        self.assertEqual(w.status, 200)
        self.assertLess(time.monotonic() - t0, 0.5)
        code, body = self.c.control("latency", {"seconds": 1, "request": "lists"})
        self.assertEqual(code, 400, body)
        self.c.control("latency", {"seconds": 0, "request": "list",
                                   "pathPrefix": NOTIF + "/contacts"})
        self.assertEqual(self.c.get("/_standin/state")[1]["latency"], [])
        # Watch events of one kind arrive late; another kind's do not.
        self.c.control("watch-delay", {"seconds": 0.8, "pathPrefix": NOTIF + "/contacts"})
        late = RawWatch(self.s.port, NOTIF + "/contacts?watch=1&timeoutSeconds=5")
        self.addCleanup(late.close)
        t0 = time.monotonic()
        self.create(contact("slow"))
        evs = late.events(1)
        self.assertEqual([e["object"]["metadata"]["name"] for e in evs], ["slow"])
        self.assertGreaterEqual(time.monotonic() - t0, 0.8)
        self.c.control("watch-delay", {"seconds": 0, "pathPrefix": NOTIF + "/contacts"})
        t0 = time.monotonic()
        self.create(contact("quick"))
        self.assertEqual([e["object"]["metadata"]["name"] for e in late.events(1)], ["quick"])
        self.assertLess(time.monotonic() - t0, 0.8)

    def test_request_log_has_the_code_once_answered(self):
        # The code was filled in after the answer was sent: a client that
        # read the log right after its answer could see code 0 (check_kube's
        # token rotation test did, under ASan).
        # The log is read on another connection (another server thread).
        other = Client(self.s.port)
        try:
            for _ in range(300):
                code, log = self.c.control("requests", method="GET")
                self.assertEqual(other.get(NOTIF + "/contacts?limit=1")[0], 200)
                code, later = self.c.get("/_standin/requests?since=%d" % log["next"])
                self.assertEqual([r.get("code") for r in later["items"]], [200])
        finally:
            other.close()

    def test_request_log_and_reset(self):
        self.c.get(NOTIF + "/contacts?limit=5", headers={"User-Agent": "milo-test"})
        code, log = self.c.control("requests", method="GET")
        rec = [r for r in log["items"] if r["path"] == NOTIF + "/contacts"][-1]
        self.assertEqual((rec["method"], rec["query"]["limit"], rec["code"]), ("GET", "5", 200))
        self.assertEqual(rec["headers"]["User-Agent"], "milo-test")
        self.assertEqual(rec["headers"]["Authorization"], "Bearer t")
        code, later = self.c.get("/_standin/requests?since=%d" % log["next"])
        self.assertEqual(later["items"], [])
        self.create(contact("a"))
        self.c.control("reset")
        self.assertEqual(self.c.get(self.path("a"))[0], 404)
        self.assertEqual(self.c.get("/api/v1/namespaces/default")[0], 200)
        code, st = self.c.control("state", method="GET")
        self.assertEqual(st["config"]["bookmarkInterval"], 60.0)

    def test_cli_process(self):
        pf = os.path.join(self.tmp, "port")
        kc = os.path.join(self.tmp, "kubeconfig")
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "kube_standin.py"),
                              "--port", "0", "--port-file", pf, "--kubeconfig-out", kc,
                              "--service-host", "a.b.svc=127.0.0.1:1"],
                             stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(pf) and time.monotonic() < deadline:
                time.sleep(0.05)
            with open(pf) as f:
                port = int(f.read())
            with open(kc) as f:
                self.assertIn("server: http://127.0.0.1:%d" % port, f.read())
            c = Client(port)
            self.assertEqual(c.get("/version")[0], 200)
            code, st = c.control("state", method="GET")
            self.assertEqual(st["config"]["serviceHosts"], {"a.b.svc": "127.0.0.1:1"})
            c.close()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            p.stderr.close()


# ---------------------------------------------------------------------------
# Admission: a real HTTPS webhook
# ---------------------------------------------------------------------------

class Webhook:
    """HTTPS webhook; per-path behaviours: fn(review) -> (http_status, body)."""

    def __init__(self):
        self.calls = []
        self.routes = {}
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                review = json.loads(self.rfile.read(n))
                path, _, query = self.path.partition("?")
                with outer.lock:
                    outer.calls.append({"path": path, "query": query, "review": review,
                                        "headers": dict(self.headers),
                                        "peer": self.client_address[1]})
                fn = outer.routes.get(path, allow)
                status, body = fn(review)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self._headers_buffer.append(b"\r\n" + data)    # one write, no Nagle stall
                self.flush_headers()

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CERTS["crt"], CERTS["key"])

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass        # the stand-in hung up first (timeout tests)

            def finish_request(self, request, client_address):
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                try:
                    H(tls, client_address, self)
                finally:
                    tls.close()

        self.httpd = S(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def review_response(review, **resp):
    r = {"uid": review["request"]["uid"], "allowed": True}
    r.update(resp)
    return 200, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r}


def allow(review):
    return review_response(review)


def deny_invalid(review):
    name = review["request"]["name"]
    return review_response(review, allowed=False, status={
        "code": 422, "reason": "Invalid",
        "message": 'Contact.notification.miloapis.com "%s" is invalid: spec.email: Invalid '
                   'value: "john@": an email address needs a domain' % name,
        "details": {"name": name, "group": "notification.miloapis.com", "kind": "Contact",
                    "causes": [{"reason": "FieldValueInvalid", "field": "spec.email",
                                "message": 'Invalid value: "john@": an email address needs '
                                           'a domain'}]}})


def add_label(review):
    obj = review["request"]["object"]
    ops = []
    if not obj["metadata"].get("labels"):
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    ops.append({"op": "add", "path": "/metadata/labels/mutated", "value": "yes"})
    return review_response(review, patchType="JSONPatch",
                           patch=base64.b64encode(json.dumps(ops).encode()).decode())


def hook(name, path, port=None, service=True, ops=("CREATE", "UPDATE"),
         resources=("contacts",), ca="ca_b64", **extra):
    cc = {"caBundle": CERTS.get(ca, "")}
    if service:
        cc["service"] = {"name": "contact-webhook", "namespace": "milo-system", "path": path,
                         "port": 443}
    else:
        cc["url"] = "https://localhost:%d%s" % (port, path)
    wh = {"name": name, "clientConfig": cc, "sideEffects": "None",
          "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
          "rules": [{"operations": list(ops), "apiGroups": ["notification.miloapis.com"],
                     "apiVersions": ["v1alpha1"], "resources": list(resources)}]}
    wh.update(extra)
    return wh


@required.tool(CERTTOOL, "certtool (gnutls-bin) is needed for the webhook certificate")
class AdmissionTests(StandInCase):
    def setUp(self):
        super().setUp()
        self.wh = Webhook()
        self.addCleanup(self.wh.stop)
        self.c.control("service-hosts", {SVC + ":443": "127.0.0.1:%d" % self.wh.port})

    def register(self, kind, name, *hooks):
        plural = kind.lower() + "s"
        body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                "metadata": {"name": name}, "webhooks": list(hooks)}
        code, out = self.c.post("/apis/admissionregistration.k8s.io/v1/" + plural, body)
        self.assertEqual(code, 201, out)

    def vhook(self, *hooks):
        self.register("ValidatingWebhookConfiguration", "v-%d" % len(self.wh.routes), *hooks)

    def test_review_contents(self):
        self.vhook(hook("vcontact.notification.miloapis.com", "/validate"))
        self.c.control("users", {"tokens": {"t": {"username": "alice", "uid": "u-1",
                                                  "groups": ["g1"], "extra": {"k": ["v"]}}}})
        created = self.create(contact("john-doe"))
        call = self.wh.calls[-1]
        self.assertEqual((call["path"], call["query"]), ("/validate", "timeout=5s"))
        self.assertEqual(call["headers"]["Host"], SVC + ":443")
        self.assertEqual(call["headers"]["User-Agent"], "kube-apiserver-admission")
        rv = call["review"]
        self.assertEqual((rv["apiVersion"], rv["kind"]), ("admission.k8s.io/v1", "AdmissionReview"))
        req = rv["request"]
        gvk = {"group": "notification.miloapis.com", "version": "v1alpha1", "kind": "Contact"}
        gvr = {"group": "notification.miloapis.com", "version": "v1alpha1",
               "resource": "contacts"}
        self.assertEqual((req["kind"], req["resource"], req["requestKind"],
                          req["requestResource"]), (gvk, gvr, gvk, gvr))
        self.assertNotIn("subResource", req)
        self.assertEqual((req["name"], req["namespace"], req["operation"], req["dryRun"]),
                         ("john-doe", "org-xyz", "CREATE", False))
        self.assertEqual(req["userInfo"], {"username": "alice", "uid": "u-1", "groups": ["g1"],
                                           "extra": {"k": ["v"]}})
        self.assertIsNone(req["oldObject"])
        self.assertEqual(req["object"]["metadata"]["uid"], created["metadata"]["uid"])
        self.assertEqual(req["options"]["kind"], "CreateOptions")
        self.assertEqual(req["options"]["apiVersion"], "meta.k8s.io/v1")
        self.assertEqual(list(req)[:3], ["uid", "kind", "resource"])
        # UPDATE: oldObject, UpdateOptions, a fresh uid; status needs contacts/status.
        self.c.patch(self.path("john-doe"), {"spec": {"givenName": "J"}},
                     headers={"Impersonate-User": "bob"})
        req2 = self.wh.calls[-1]["review"]["request"]
        self.assertEqual((req2["operation"], req2["options"]["kind"]), ("UPDATE", "UpdateOptions"))
        self.assertEqual(req2["oldObject"]["spec"].get("givenName"), None)
        self.assertEqual(req2["object"]["spec"]["givenName"], "J")
        self.assertNotEqual(req2["uid"], req["uid"])
        self.assertEqual(req2["userInfo"], {"username": "bob", "groups": ["system:authenticated"]})
        n = len(self.wh.calls)
        self.c.patch(self.path("john-doe") + "/status", {"status": {"providerID": "p"}})
        self.assertEqual(len(self.wh.calls), n)   # rule lists only "contacts"
        # DELETE is not in the rule's operations either.
        self.c.delete(self.path("john-doe"))
        self.assertEqual(len(self.wh.calls), n)

    def test_keep_alive_and_call_back_into_the_api(self):
        seen = []

        def look_around(review):
            # A webhook reading cluster state while the request is in flight.
            c = Client(self.s.port)
            try:
                seen.append(c.get(NOTIF + "/namespaces/org-xyz/contacts")[0])
                seen.append(c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                    "kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                    "spec": {"user": review["request"]["userInfo"]["username"],
                             "resourceAttributes": {"verb": "get", "resource": "contacts",
                                                    "namespace": "other"}}})[0])
            finally:
                c.close()
            return allow(review)
        self.wh.routes["/v"] = look_around
        self.vhook(hook("look.example.com", "/v"))
        for i in range(3):
            self.create(contact("c%d" % i))
        self.assertEqual(seen, [200, 201] * 3)
        self.assertEqual(len({c["peer"] for c in self.wh.calls}), 1)   # one pooled connection

    def test_status_subresource_and_delete_rules(self):
        self.vhook(hook("status.example.com", "/s", resources=("contacts/status",),
                        ops=("*",)),
                   hook("del.example.com", "/d", ops=("DELETE",)))
        self.create(contact("a"))
        self.assertEqual(self.wh.calls, [])
        self.c.patch(self.path("a") + "/status", {"status": {"providerID": "p"}})
        req = self.wh.calls[-1]["review"]["request"]
        self.assertEqual((req["subResource"], req["requestSubResource"], req["resource"]["resource"]),
                         ("status", "status", "contacts"))
        self.c.delete(self.path("a"))
        req = self.wh.calls[-1]["review"]["request"]
        self.assertEqual((self.wh.calls[-1]["path"], req["operation"]), ("/d", "DELETE"))
        self.assertIsNone(req["object"])
        self.assertEqual(req["oldObject"]["metadata"]["name"], "a")
        self.assertEqual(req["options"]["kind"], "DeleteOptions")

    def test_denial_status_rewritten(self):
        self.wh.routes["/validate"] = deny_invalid
        self.vhook(hook("vcontact.notification.miloapis.com", "/validate"))
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("john-doe"))
        self.assertEqual((code, st["reason"], st["code"], st["status"]), (422, "Invalid", 422,
                                                                          "Failure"))
        self.assertEqual(st["message"], 'admission webhook "vcontact.notification.miloapis.com" '
                         'denied the request: Contact.notification.miloapis.com "john-doe" is '
                         'invalid: spec.email: Invalid value: "john@": an email address needs '
                         'a domain')
        self.assertEqual(st["details"]["causes"][0]["field"], "spec.email")
        self.assertEqual(self.c.get(self.path("john-doe"))[0], 404)
        # No status: "without explanation", code 400.
        self.wh.routes["/validate"] = lambda r: review_response(r, allowed=False)
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("x"))
        self.assertEqual((code, st["message"]), (400, 'admission webhook '
                         '"vcontact.notification.miloapis.com" denied the request without '
                         'explanation'))
        self.wh.routes["/validate"] = lambda r: review_response(
            r, allowed=False, status={"code": 200, "reason": "Forbidden"})
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("x"))
        self.assertEqual((code, st["message"]), (400, 'admission webhook '
                         '"vcontact.notification.miloapis.com" denied the request: Forbidden'))

    def test_mutating_then_validating(self):
        self.wh.routes["/mutate"] = add_label
        self.register("MutatingWebhookConfiguration", "m",
                      hook("mcontact.notification.miloapis.com", "/mutate"))
        self.vhook(hook("vcontact.notification.miloapis.com", "/validate"))
        out = self.create(contact("john-doe"))
        self.assertEqual(out["metadata"]["labels"], {"mutated": "yes"})
        self.assertEqual([c["path"] for c in self.wh.calls], ["/mutate", "/validate"])
        seen = self.wh.calls[1]["review"]["request"]["object"]
        self.assertEqual(seen["metadata"]["labels"], {"mutated": "yes"})
        self.assertNotIn("uid", self.wh.calls[0]["review"]["request"]["object"]["metadata"])
        # A patch on DELETE is refused.
        self.register("MutatingWebhookConfiguration", "m2",
                      hook("mdelete.example.com", "/mutate", ops=("DELETE",)))
        self.wh.routes["/mutate"] = lambda r: review_response(
            r, patchType="JSONPatch", patch=base64.b64encode(
                b'[{"op":"add","path":"/x","value":1}]').decode())
        code, st = self.c.delete(self.path("john-doe"))
        self.assertEqual(code, 500)
        self.assertIn("attempted to modify the object", st["message"])

    def test_failure_policy_and_transport_errors(self):
        self.c.control("service-hosts", {SVC + ":443": "127.0.0.1:1"})
        self.vhook(hook("fail.example.com", "/v"))
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
        self.assertEqual((code, st["reason"]), (500, "InternalError"))
        self.assertEqual(st["message"], 'Internal error occurred: failed calling webhook '
                         '"fail.example.com": failed to call webhook: Post "https://%s:443/v'
                         '?timeout=5s": dial tcp 127.0.0.1:1: connect: connection refused' % SVC)
        self.c.delete("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v-0")
        self.vhook(hook("ignore.example.com", "/v", failurePolicy="Ignore"))
        code, out = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
        self.assertEqual(code, 201)
        code, log = self.c.control("admission-log", method="GET")
        self.assertEqual(log["items"][-1]["outcome"], "ignored")

    def test_timeout(self):
        def slow(review):
            time.sleep(1.6)
            return allow(review)
        self.wh.routes["/slow"] = slow
        self.vhook(hook("slow.example.com", "/slow", timeoutSeconds=1))
        t0 = time.monotonic()
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertEqual(code, 500)
        self.assertTrue(st["message"].endswith('/slow?timeout=1s": context deadline exceeded'),
                        st["message"])

    def test_invalid_responses(self):
        self.vhook(hook("check.example.com", "/r"))
        cases = [
            (lambda r: (200, dict(review_response(r)[1], response={"uid": "nope",
                                                                   "allowed": True})),
             'expected response.uid="%s", got "nope"'),
            (lambda r: (200, {"response": {"uid": r["request"]["uid"], "allowed": True}}),
             "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, "
             "Kind="),
            (lambda r: review_response(r, patch="W10=", patchType="JSONPatch"),
             "validating webhook may not return response.patch"),
            (lambda r: (200, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
             "webhook response was absent"),
            (lambda r: (500, b"boom"), 'an error on the server ("boom") has prevented'),
            (lambda r: (200, b"not json"), "couldn't get version/kind"),
        ]
        for fn, want in cases:
            self.wh.routes["/r"] = fn
            code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
            self.assertEqual(code, 500, st)
            uid = self.wh.calls[-1]["review"]["request"]["uid"]
            self.assertIn('failed calling webhook "check.example.com": ', st["message"])
            self.assertIn(want.replace("%s", uid), st["message"])

    def test_tls_checks(self):
        self.vhook(hook("tls.example.com", "/v", ca="otherca_b64"))
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
        self.assertEqual(code, 500)
        self.assertIn("x509: certificate signed by unknown authority", st["message"])
        self.assertEqual(self.wh.calls, [])
        # The name checked is <svc>.<ns>.svc, whatever address it is mapped to.
        self.c.delete("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v-0")
        wrong = hook("name.example.com", "/v")
        wrong["clientConfig"]["service"]["name"] = "other"
        self.c.control("service-hosts", {"other.milo-system.svc": "127.0.0.1:%d" % self.wh.port})
        self.vhook(wrong)
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("a"))
        self.assertEqual(code, 500)
        self.assertIn("x509: certificate is not valid", st["message"])
        # url clientConfig works too.
        self.c.delete("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v-0")
        self.vhook(hook("url.example.com", "/u", port=self.wh.port, service=False))
        self.assertEqual(self.c.post(NOTIF + "/namespaces/org-xyz/contacts",
                                     contact("a"))[0], 201)
        self.assertEqual(self.wh.calls[-1]["path"], "/u")

    def test_selectors(self):
        self.vhook(hook("ns.example.com", "/v", namespaceSelector={
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                  "values": ["kube-system"]}]}, objectSelector={
            "matchLabels": {"check": "yes"}}))
        self.create(contact("a", ns="kube-system",
                            metadata={"name": "a", "namespace": "kube-system",
                                      "labels": {"check": "yes"}}))
        self.create(contact("b"))
        self.assertEqual(self.wh.calls, [])
        self.create(contact("c", metadata={"name": "c", "labels": {"check": "yes"}}))
        self.assertEqual(len(self.wh.calls), 1)

    def test_warnings_and_dry_run(self):
        self.wh.routes["/w"] = lambda r: review_response(r, warnings=['contact is not a "member"',
                                                                      "second"])
        self.vhook(hook("warn.example.com", "/w"))
        code, resp, _ = self.c.request("POST", NOTIF + "/namespaces/org-xyz/contacts?dryRun=All",
                                       contact("a"), raw=True)
        self.assertEqual(code, 201)
        self.assertEqual(resp.headers.get_all("Warning"),
                         ['299 - "contact is not a \\"member\\""', '299 - "second"'])
        self.assertTrue(self.wh.calls[-1]["review"]["request"]["dryRun"])
        self.assertEqual(self.wh.calls[-1]["review"]["request"]["options"]["dryRun"], ["All"])
        self.assertEqual(self.c.get(self.path("a"))[0], 404)
        self.register("ValidatingWebhookConfiguration", "side", hook("side.example.com", "/w"))
        self.c.patch("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/side",
                     [{"op": "replace", "path": "/webhooks/0/sideEffects", "value": "NoneOnDryRun"}],
                     ctype="application/json-patch+json")
        # NoneOnDryRun is fine; stored "Some" (from older API versions) refuses dry run.
        with self.s.state.lock:
            key = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
            self.s.state.objects[key][("", "side")]["webhooks"][0]["sideEffects"] = "Some"
        n = len(self.wh.calls)
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts?dryRun=All", contact("a"))
        self.assertEqual((code, st["reason"], st["message"]),
                         (400, "BadRequest",
                          'admission webhook "side.example.com" does not support dry run'))

    def test_reinvocation_if_needed(self):
        self.wh.routes["/m1"] = lambda r: review_response(r)
        self.wh.routes["/m2"] = add_label
        self.register("MutatingWebhookConfiguration", "a-first",
                      hook("m1.example.com", "/m1", reinvocationPolicy="IfNeeded"))
        self.register("MutatingWebhookConfiguration", "b-second", hook("m2.example.com", "/m2"))
        self.create(contact("a"))
        self.assertEqual([c["path"] for c in self.wh.calls], ["/m1", "/m2", "/m1"])


@required.tool(CERTTOOL, "certtool (gnutls-bin) is needed for the certificate")
class TlsListenerTests(unittest.TestCase):
    def test_https_listener_shares_state(self):
        s = StandIn(tls_cert=CERTS["crt"], tls_key=CERTS["key"]).start()
        self.addCleanup(s.stop)
        ctx = ssl.create_default_context(cafile=CERTS["ca"])
        conn = http.client.HTTPSConnection("localhost", s.tls_port, context=ctx, timeout=10)
        self.addCleanup(conn.close)
        body = json.dumps(contact("tls")).encode()
        conn.request("POST", NOTIF + "/namespaces/org-xyz/contacts", body=body,
                     headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 201, resp.read())
        resp.read()
        c = Client(s.port)
        self.addCleanup(c.close)
        self.assertEqual(c.get(NOTIF + "/namespaces/org-xyz/contacts/tls")[0], 200)
        self.assertTrue(s.tls_url.startswith("https://127.0.0.1:"))
        if KUBECTL:
            tmp = tempfile.mkdtemp(prefix="standin-tls-")
            self.addCleanup(shutil.rmtree, tmp, True)
            kc = os.path.join(tmp, "kc")
            with open(kc, "w") as f:
                f.write(s.kubeconfig(tls=True, ca_file=CERTS["ca"]).replace("127.0.0.1",
                                                                             "localhost"))
            p = subprocess.run([KUBECTL, "--kubeconfig", kc, "--cache-dir", tmp + "/c", "get",
                                "contacts", "-n", "org-xyz", "-o", "name"],
                               capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, HOME=tmp))
            self.assertEqual(p.stdout.strip(), "contact.notification.miloapis.com/tls", p.stderr)


# ---------------------------------------------------------------------------
# Custom resources served with their CRD: selectable fields, schema, CEL
# ---------------------------------------------------------------------------

def project_crds():
    out = []
    for name in ("contacts", "contactgroups", "contactgroupmemberships",
                 "contactgroupmembershipremovals"):
        with open(os.path.join(TOP, "manifests", "crds", name + ".yaml")) as f:
            out += [d for d in crd_schema.CelHelper.yaml(f.read())
                    if d.get("kind") == "CustomResourceDefinition"]
    return out


# A CRD of our own for what the project's CRDs do not use: defaults, nulls,
# numbers, list-type map keys, messageExpression, fieldPath and reason.
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "selectableFields": [{"jsonPath": ".spec.size"},
                                                {"jsonPath": ".spec.ready"}],
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "properties": {
                                   "spec": {
                                       "type": "object",
                                       "required": ["name"],
                                       "properties": {
                                           "name": {"type": "string", "minLength": 2,
                                                    "pattern": "^[a-z]+$"},
                                           "size": {"type": "integer", "default": 3,
                                                    "minimum": 1, "maximum": 10},
                                           "ready": {"type": "boolean"},
                                           "color": {"type": "string", "nullable": True},
                                           "ports": {"type": "array", "maxItems": 2,
                                                     "x-kubernetes-list-type": "map",
                                                     "x-kubernetes-list-map-keys": ["port"],
                                                     "items": {"type": "object",
                                                               "properties": {
                                                                   "port": {"type": "integer"},
                                                                   "name": {"type": "string"}}}},
                                           "labels": {"type": "object",
                                                      "additionalProperties": {"type": "string"}},
                                       },
                                       "x-kubernetes-validations": [
                                           {"rule": "self.size <= 5 || self.name != 'small'",
                                            "messageExpression":
                                                "'size ' + string(self.size) + ' is too big'",
                                            "fieldPath": ".size"},
                                           {"rule": "!has(self.ready) || self.ready",
                                            "message": "must be ready when set",
                                            "reason": "FieldValueForbidden",
                                            "fieldPath": ".ready"},
                                           {"rule": "!has(oldSelf.name) || self.name == oldSelf.name",
                                            "message": "name is immutable"},
                                       ]},
                                   "status": {"type": "object",
                                              "properties": {"phase": {"type": "string",
                                                                       "enum": ["Up", "Down"]}}},
                               }}}}]}}


class CustomResourceTests(StandInCase):
    def setUp(self):
        super().setUp()
        for crd in project_crds() + [WIDGET_CRD]:
            code, out = self.c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                    crd)
            self.assertEqual(code, 201, out)

    def membership(self, name, contact, group, username=None, ns="org-xyz"):
        obj = {"apiVersion": "notification.miloapis.com/v1alpha1",
               "kind": "ContactGroupMembership", "metadata": {"name": name, "namespace": ns},
               "spec": {"contactRef": {"name": contact, "namespace": ns},
                        "contactGroupRef": {"name": group, "namespace": ns}}}
        code, out = self.c.post("%s/namespaces/%s/contactgroupmemberships" % (NOTIF, ns), obj)
        self.assertEqual(code, 201, out)
        if username is not None:
            out["status"] = {"username": username}
            code, out = self.c.put(self.path(name, ns, "contactgroupmemberships") + "/status",
                                   out)
            self.assertEqual(code, 200, out)
        return out

    def widget(self, spec, name="w", expect=201, query=""):
        obj = {"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": name, "namespace": "default"}, "spec": spec}
        code, out = self.c.post("/apis/example.com/v1/namespaces/default/widgets" + query, obj)
        self.assertEqual(code, expect, out)
        return out

    def names(self, path):
        code, lst = self.c.get(path)
        self.assertEqual(code, 200, lst)
        return [i["metadata"]["name"] for i in lst["items"]]

    # ---- field selectors ----------------------------------------------------

    def test_field_selectors_on_declared_fields(self):
        self.membership("m1", "john", "admins", "u1")
        self.membership("m2", "jane", "admins", "u2")
        self.membership("m3", "john", "news")
        self.membership("m4", "john", "admins", "u1", ns="other")
        base = NOTIF + "/namespaces/org-xyz/contactgroupmemberships?fieldSelector="
        self.assertEqual(self.names(base + "status.username%3Du1"), ["m1"])
        self.assertEqual(self.names(base + "status.username%3D%3Du2"), ["m2"])
        self.assertEqual(self.names(base + "status.username!%3Du1"), ["m2", "m3"])
        self.assertEqual(self.names(base + "status.username%3D"), ["m3"])     # absent: ""
        self.assertEqual(self.names(base + "spec.contactRef.name%3Djohn,"
                                           "spec.contactGroupRef.name%3Dadmins"), ["m1"])
        self.assertEqual(self.names(base + "metadata.name%3Dm2"), ["m2"])
        self.assertEqual(self.names(NOTIF + "/contactgroupmemberships?fieldSelector="
                                    "metadata.namespace!%3Dorg-xyz,status.username%3Du1"),
                         ["m4"])
        code, st = self.c.get(base + "spec.contactRef.namespace%3Dorg-xyz")
        self.assertEqual((code, st["reason"], st["message"]),
                         (400, "BadRequest",
                          "field label not supported: spec.contactRef.namespace"))
        # terms are checked in sorted order, as apimachinery sorts them
        code, st = self.c.get(base + "zz%3D1,aa%3D2")
        self.assertEqual(st["message"], "field label not supported: aa")
        code, st = self.c.get(base + "status.username%3Da%3Db")
        self.assertEqual((code, st["message"]),
                         (400, "invalid field selector: unescaped character in value: 61"))
        code, st = self.c.get(base + "status.username")
        self.assertEqual(st["message"], "invalid selector: 'status.username'; can't "
                                        "understand 'status.username'")
        # Contact and ContactGroup select on what Milo's API server selects on
        c = contact("john", email="john@example.com")
        self.create(c)
        self.assertEqual(self.names(NOTIF + "/namespaces/org-xyz/contacts?fieldSelector="
                                    "spec.subject.userRef.name%3Du1,spec.email%3D"
                                    "john@example.com"), ["john"])
        self.assertEqual(self.c.get(NOTIF + "/contactgroups?fieldSelector="
                                    "spec.visibility%3Dpublic")[0], 200)
        self.assertEqual(self.c.get(NOTIF + "/contactgroups?fieldSelector="
                                    "spec.displayName%3Dx")[0], 400)

    def test_field_selector_scalars_and_watch(self):
        self.widget({"name": "abc", "size": 4, "ready": True}, "a")
        self.widget({"name": "abc", "ready": True}, "b")         # size defaulted to 3
        path = "/apis/example.com/v1/namespaces/default/widgets"
        self.assertEqual(self.names(path + "?fieldSelector=spec.size%3D3"), ["b"])
        self.assertEqual(self.names(path + "?fieldSelector=spec.ready%3Dtrue"), ["a", "b"])
        w = RawWatch(self.s.port, path + "?watch=1&fieldSelector=spec.size%3D4")
        try:
            self.assertEqual(w.status, 200)
            self.assertEqual([e["object"]["metadata"]["name"] for e in w.events(1)], ["a"])
            code, b = self.c.patch(path + "/b", {"spec": {"size": 4}})
            self.assertEqual(code, 200, b)
            ev = w.events(1)
            self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev],
                             [("ADDED", "b")])
            code, b = self.c.patch(path + "/b", {"spec": {"size": 5}})
            ev = w.events(1)
            self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev],
                             [("DELETED", "b")])
        finally:
            w.close()
        code, st = self.c.get(path + "?watch=1&fieldSelector=spec.name%3Dabc")
        self.assertEqual((code, st["message"]), (400, "field label not supported: spec.name"))

    # ---- schema ---------------------------------------------------------------

    def test_schema_errors_as_kube_apiserver_reports_them(self):
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contactgroups", {
            "apiVersion": "notification.miloapis.com/v1alpha1", "kind": "ContactGroup",
            "metadata": {"name": "x"},
            "spec": {"displayName": "", "visibility": "secret", "description": "d" * 1025}})
        self.assertEqual(code, 422, st)
        blocked = ("<nil>: Invalid value: null: some validation rules were not checked "
                   "because the object was invalid; correct the existing errors to complete "
                   "validation")
        self.assertEqual(st["message"], (
            'ContactGroup.notification.miloapis.com "x" is invalid: ['
            'spec.description: Too long: may not be more than 1024 bytes, '
            'spec.displayName: Invalid value: "": spec.displayName in body should be at least '
            '1 chars long, '
            'spec.visibility: Unsupported value: "secret": supported values: "public", '
            '"private", ' + blocked + ']'))
        self.assertEqual(st["details"]["causes"][0],
                         {"reason": "FieldValueTooLong", "field": "spec.description",
                          "message": "Too long: may not be more than 1024 bytes"})
        self.assertEqual(st["details"]["causes"][3]["field"], "<nil>")
        # wrong types, required fields, metadata errors first
        code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", {
            "apiVersion": "notification.miloapis.com/v1alpha1", "kind": "Contact",
            "metadata": {"name": "Bad_Name"},
            "spec": {"email": 5, "subject": {"userRef": {}}}})
        self.assertEqual(code, 422, st)
        msgs = [c["field"] + ": " + c["message"] for c in st["details"]["causes"]]
        self.assertTrue(msgs[0].startswith('metadata.name: Invalid value: "Bad_Name"'), msgs)
        self.assertEqual(msgs[1:], [
            'spec.email: Invalid value: "integer": spec.email in body must be of type '
            'string: "integer"',
            "spec.subject.userRef.name: Required value", blocked])
        self.assertEqual(st["details"]["causes"][1]["reason"], "FieldValueTypeInvalid")

    def test_pruning_defaults_and_field_validation(self):
        out = self.widget({"name": "abc", "extra": 1, "color": None, "labels": {"a": "b"}},
                          query="?fieldValidation=Ignore")
        self.assertEqual(out["spec"], {"name": "abc", "size": 3, "color": None,
                                       "labels": {"a": "b"}})
        code, resp, _ = self.c.request("POST", "/apis/example.com/v1/namespaces/default/widgets",
                                       {"apiVersion": "example.com/v1", "kind": "Widget",
                                        "metadata": {"name": "w2"},
                                        "spec": {"name": "abc", "extra": 1, "size": None}},
                                       raw=True)
        self.assertEqual(code, 201)
        self.assertEqual(resp.headers.get_all("Warning"), ['299 - "unknown field \\"spec.extra\\""'])
        code, st = self.c.post("/apis/example.com/v1/namespaces/default/widgets"
                               "?fieldValidation=Strict",
                               {"apiVersion": "example.com/v1", "kind": "Widget",
                                "metadata": {"name": "w3"},
                                "spec": {"name": "abc", "extra": 1, "more": {"x": 1}}})
        self.assertEqual((code, st["message"]), (400, 'Widget in version "v1" cannot be '
                                                 'handled as a Widget: strict decoding error: '
                                                 'unknown field "spec.extra", unknown field '
                                                 '"spec.more"'))

    def test_numbers_lists_and_status(self):
        code, st = self.c.post("/apis/example.com/v1/namespaces/default/widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"name": "ABC", "size": 0,
                     "ports": [{"port": 80}, {"port": 80, "name": "b"}, {"port": 81}]}})
        self.assertEqual(code, 422, st)
        self.assertEqual([c["field"] + ": " + c["message"] for c in st["details"]["causes"]], [
            'spec.name: Invalid value: "ABC": spec.name in body should match \'^[a-z]+$\'',
            "spec.ports: Too many: 3: must have at most 2 items",
            "spec.size: Invalid value: 0: spec.size in body should be greater than or "
            "equal to 1",
            'spec.ports[1]: Duplicate value: {"port":80}',
            "<nil>: Invalid value: null: some validation rules were not checked because the "
            "object was invalid; correct the existing errors to complete validation"])
        w = self.widget({"name": "abc"})
        w["status"] = {"phase": "Sideways"}
        code, st = self.c.put("/apis/example.com/v1/namespaces/default/widgets/w/status", w)
        # the CRD has rules, so kube adds its note that they did not run
        self.assertEqual((code, st["message"]), (422, 'Widget.example.com "w" is invalid: ['
                                                 'status.phase: Unsupported value: "Sideways": '
                                                 'supported values: "Up", "Down", <nil>: '
                                                 'Invalid value: null: some validation rules '
                                                 'were not checked because the object was '
                                                 'invalid; correct the existing errors to '
                                                 'complete validation]'))

    # ---- CEL ------------------------------------------------------------------

    def test_cel_rules_message_expression_field_path_reason(self):
        code, st = self.c.post("/apis/example.com/v1/namespaces/default/widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"name": "small", "size": 7, "ready": False}})
        self.assertEqual(code, 422, st)
        # 1.35 shows no value for a rule on an object (1.32-1.34: "object")
        self.assertEqual(st["message"], 'Widget.example.com "w" is invalid: ['
                         'spec.size: Invalid value: size 7 is too big, '
                         'spec.ready: Forbidden: must be ready when set]')
        self.assertEqual(st["details"]["causes"][1]["reason"], "FieldValueForbidden")

    def test_cel_transition_rules_and_ratcheting(self):
        self.widget({"name": "abc"})
        path = "/apis/example.com/v1/namespaces/default/widgets/w"
        code, st = self.c.patch(path, {"spec": {"name": "abd"}})
        self.assertEqual((code, st.get("message")),
                         (422, 'Widget.example.com "w" is invalid: spec: Invalid value: name '
                               'is immutable'))
        # project CRDs: the transition rules
        c = self.create(contact("john"))
        code, st = self.c.patch(self.path("john"),
                                {"spec": {"subject": {"userRef": {"name": "u2"}}}})
        self.assertEqual((code, st["message"]), (422, 'Contact.notification.miloapis.com '
                                                 '"john" is invalid: spec.subject: Invalid '
                                                 'value: subject is immutable once set'))
        code, _ = self.c.patch(self.path("john"), {"spec": {"email": "j@example.com"}})
        self.assertEqual(code, 200)
        self.assertEqual(c["metadata"]["name"], "john")
        # An object stored before a stricter rule keeps its unchanged values.
        code, crd = self.c.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                               "widgets.example.com")
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["name"]["maxLength"] = 2
        spec["x-kubernetes-validations"].append({"rule": "self.name.size() < 3",
                                                 "message": "short names only"})
        code, out = self.c.put("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                               "widgets.example.com", crd)
        self.assertEqual(code, 200, out)
        code, resp, body = self.c.request("PATCH", path, {"metadata": {"labels": {"a": "b"}}},
                                          ctype="application/merge-patch+json", raw=True)
        self.assertEqual(code, 200, body)
        self.assertEqual(resp.headers.get_all("Warning"),
                         ['299 - "spec: Invalid value: short names only"'])
        code, st = self.c.patch(path, {"spec": {"size": 4}})
        self.assertEqual((code, st["message"]), (422, 'Widget.example.com "w" is invalid: '
                                                 'spec: Invalid value: short names only'))
        st = self.widget({"name": "xyz"}, "w2", expect=422)
        self.assertEqual(st["message"], 'Widget.example.com "w2" is invalid: [spec.name: Too '
                         'long: may not be more than 2 bytes, <nil>: Invalid value: null: some '
                         'validation rules were not checked because the object was invalid; '
                         'correct the existing errors to complete validation]')

    def test_cel_evaluator_missing_is_a_500(self):
        saved = crd_schema.CEL_DIR
        crd_schema.CelHelper._proc, proc = None, crd_schema.CelHelper._proc
        try:
            crd_schema.CEL_DIR = os.path.join(self.tmp, "nowhere")
            code, st = self.c.post(NOTIF + "/namespaces/org-xyz/contacts", contact("x"))
            self.assertEqual(code, 500, st)
            self.assertIn("CEL evaluator unavailable", st["message"])
            self.assertIn("make deps", st["message"])
        finally:
            crd_schema.CEL_DIR = saved
            crd_schema.CelHelper._proc = proc


# ---------------------------------------------------------------------------
# kubectl end to end
# ---------------------------------------------------------------------------

@required.tool(KUBECTL, "kubectl is not installed")
class KubectlTests(StandInCase):
    def setUp(self):
        super().setUp()
        self.kc = self.s.write_kubeconfig(os.path.join(self.tmp, "kubeconfig"))

    def kubectl(self, *args, stdin=None, ok=True):
        env = dict(os.environ, KUBECONFIG=self.kc, HOME=self.tmp)
        p = subprocess.run([KUBECTL, "--cache-dir", os.path.join(self.tmp, "cache")]
                           + list(args), input=stdin, capture_output=True, text=True,
                           env=env, timeout=30)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    CONTACT = """apiVersion: notification.miloapis.com/v1alpha1
kind: Contact
metadata:
  name: john-doe
  namespace: org-xyz
spec:
  email: %s
  subject:
    userRef: {name: "332926980888461588"}
"""

    def test_get_apply_patch_delete(self):
        f = self.write("c.yaml", self.CONTACT % "john@example.com")
        out = self.kubectl("apply", "--validate=false", "-f", f).stdout
        self.assertEqual(out.strip(), "contact.notification.miloapis.com/john-doe created")
        out = self.kubectl("apply", "--validate=false", "-f", f).stdout
        self.assertIn("unchanged", out)
        f = self.write("c.yaml", self.CONTACT % "john.doe@example.com")
        self.assertIn("configured", self.kubectl("apply", "--validate=false", "-f", f).stdout)
        out = self.kubectl("get", "contacts", "-n", "org-xyz").stdout
        self.assertRegex(out, r"NAME\s+AGE\njohn-doe\s+\d+s")
        got = json.loads(self.kubectl("get", "contact", "john-doe", "-n", "org-xyz",
                                      "-o", "json").stdout)
        self.assertEqual((got["spec"]["email"], got["metadata"]["generation"]),
                         ("john.doe@example.com", 2))
        self.kubectl("patch", "contact", "john-doe", "-n", "org-xyz", "--type", "merge",
                     "-p", '{"spec":{"givenName":"John"}}')
        self.kubectl("patch", "contact", "john-doe", "-n", "org-xyz", "--type", "json",
                     "-p", '[{"op":"add","path":"/spec/familyName","value":"Doe"}]')
        self.kubectl("patch", "contact", "john-doe", "-n", "org-xyz", "--subresource", "status",
                     "--type", "merge", "-p", '{"status":{"providerID":"re_1"}}')
        got = json.loads(self.kubectl("get", "contact", "john-doe", "-n", "org-xyz",
                                      "-o", "json").stdout)
        self.assertEqual((got["spec"]["givenName"], got["spec"]["familyName"],
                          got["status"]["providerID"]), ("John", "Doe", "re_1"))
        p = self.kubectl("patch", "contact", "john-doe", "-n", "org-xyz", "-p", "{}", ok=False)
        self.assertIn("application/strategic-merge-patch+json is not supported", p.stderr)
        out = self.kubectl("delete", "-f", f, "--dry-run=server").stdout
        self.assertIn('"john-doe" deleted (server dry run)', out)
        self.kubectl("get", "contact", "john-doe", "-n", "org-xyz")
        out = self.kubectl("delete", "-f", f).stdout
        self.assertIn('contact.notification.miloapis.com "john-doe" deleted', out)
        p = self.kubectl("get", "contact", "john-doe", "-n", "org-xyz", ok=False)
        self.assertEqual(p.stderr.strip(), 'Error from server (NotFound): '
                         'contacts.notification.miloapis.com "john-doe" not found')
        out = self.kubectl("create", "--validate=false", "--dry-run=server", "-f", f,
                           "-o", "name").stdout
        self.assertEqual(out.strip(), "contact.notification.miloapis.com/john-doe")
        self.assertNotEqual(self.kubectl("get", "contact", "john-doe", "-n", "org-xyz",
                                         ok=False).returncode, 0)
        self.kubectl("create", "namespace", "milo-system")
        self.assertIn("milo-system", self.kubectl("get", "ns").stdout)
        self.c.control("sar-policy", {"rules": [{"user": "alice", "verb": "get",
                                                 "allowed": False}]})
        p = self.kubectl("auth", "can-i", "get", "contacts", "-n", "b", "--as", "alice", ok=False)
        self.assertEqual(p.stdout.strip(), "no")

    def test_field_selector_with_kubectl(self):
        self.kubectl("apply", "--validate=false", "-k", os.path.join(TOP, "manifests", "crds"))
        for name, user in (("m1", "u1"), ("m2", "u2")):
            obj = {"apiVersion": "notification.miloapis.com/v1alpha1",
                   "kind": "ContactGroupMembership",
                   "metadata": {"name": name, "namespace": "org-xyz"},
                   "spec": {"contactRef": {"name": "john", "namespace": "org-xyz"},
                            "contactGroupRef": {"name": "admins", "namespace": "org-xyz"}}}
            code, out = self.c.post(NOTIF + "/namespaces/org-xyz/contactgroupmemberships", obj)
            self.assertEqual(code, 201, out)
            out["status"] = {"username": user}
            code, out = self.c.put(self.path(name, plural="contactgroupmemberships") + "/status",
                                   out)
            self.assertEqual(code, 200, out)
        out = self.kubectl("get", "contactgroupmemberships", "-n", "org-xyz",
                           "--field-selector", "status.username=u2", "-o", "name").stdout
        self.assertEqual(out, "contactgroupmembership.notification.miloapis.com/m2\n")
        out = self.kubectl("get", "contactgroupmemberships", "-A", "--field-selector",
                           "status.username!=u2,spec.contactGroupRef.name==admins",
                           "-o", "name").stdout
        self.assertEqual(out, "contactgroupmembership.notification.miloapis.com/m1\n")
        p = self.kubectl("get", "contactgroupmemberships", "-n", "org-xyz",
                         "--field-selector", "spec.contactRef.namespace=org-xyz", ok=False)
        self.assertEqual((p.returncode, p.stdout), (1, ""))
        self.assertEqual(p.stderr, 'Error from server (BadRequest): Unable to find '
                         '"notification.miloapis.com/v1alpha1, Resource=contactgroupmemberships"'
                         ' that match label selector "", field selector '
                         '"spec.contactRef.namespace=org-xyz": field label not supported: '
                         'spec.contactRef.namespace\n')

    def test_webhook_denial_as_kubectl_prints_it(self):
        if not CERTTOOL:
            required.missing("certtool is needed")
        wh = Webhook()
        self.addCleanup(wh.stop)
        self.c.control("service-hosts", {SVC: "127.0.0.1:%d" % wh.port})

        def deny_bad_email(review):
            email = review["request"]["object"]["spec"]["email"]
            if "@" in email and email.split("@")[1]:
                return allow(review)
            name = review["request"]["name"]
            return review_response(review, allowed=False, status={
                "code": 422, "reason": "Invalid",
                "message": 'Contact.notification.miloapis.com "%s" is invalid: spec.email: '
                           'Invalid value: "%s": an email address needs a domain'
                           % (name, email),
                "details": {"name": name, "group": "notification.miloapis.com",
                            "kind": "Contact", "causes": [{
                                "reason": "FieldValueInvalid", "field": "spec.email",
                                "message": 'Invalid value: "%s": an email address needs a '
                                           'domain' % email}]}})
        wh.routes["/validate-contact"] = deny_bad_email
        reg = self.write("vwc.yaml", """apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: contact-webhook
webhooks:
- name: vcontact.notification.miloapis.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    caBundle: %s
    service: {name: contact-webhook, namespace: milo-system, path: /validate-contact}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [notification.miloapis.com]
    apiVersions: [v1alpha1]
    resources: [contacts]
""" % CERTS["ca_b64"])
        self.kubectl("apply", "--validate=false", "-f", reg)
        self.kubectl("apply", "--validate=false", "-f", reg)      # strategic merge, unchanged
        bad = self.write("x.yaml", self.CONTACT % "john@")
        p = self.kubectl("apply", "--validate=false", "-f", bad, ok=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.strip(),
                         'The Contact "john-doe" is invalid: spec.email: Invalid value: '
                         '"john@": an email address needs a domain')
        p = self.kubectl("create", "--validate=false", "-f", bad, ok=False)
        self.assertEqual(p.stderr.strip(),
                         'The Contact "john-doe" is invalid: spec.email: Invalid value: '
                         '"john@": an email address needs a domain')
        # A denial without details prints the rewritten message with kubectl's prefix.
        wh.routes["/validate-contact"] = lambda r: review_response(r, allowed=False, status={
            "code": 403, "reason": "Forbidden", "message": "contacts are frozen"})
        good = self.write("g.yaml", self.CONTACT % "john@example.com")
        p = self.kubectl("apply", "--validate=false", "-f", good, ok=False)
        self.assertEqual(p.stderr.strip(),
                         'Error from server (Forbidden): error when creating "%s": admission '
                         'webhook "vcontact.notification.miloapis.com" denied the request: '
                         'contacts are frozen' % good)
        wh.routes["/validate-contact"] = lambda r: review_response(
            r, warnings=["contact john-doe is not a member of any group"])
        p = self.kubectl("apply", "--validate=false", "-f", good)
        self.assertIn("created", p.stdout)
        self.assertEqual(p.stderr.strip(), "Warning: contact john-doe is not a member of any group")
        wh.routes["/validate-contact"] = deny_bad_email
        bad2 = self.write("y.yaml", (self.CONTACT % "jane@").replace("john-doe", "jane"))
        p = self.kubectl("apply", "--validate=false", "--dry-run=server", "-f", bad2, ok=False)
        self.assertIn('The Contact "jane" is invalid', p.stderr)
        self.assertTrue(wh.calls[-1]["review"]["request"]["dryRun"])


if __name__ == "__main__":
    unittest.main()
