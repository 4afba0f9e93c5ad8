#!/usr/bin/env python3
"""kube_load.py -- fills test/py/kube_standin.py with many objects, fast, for the benchmarks.

    python3 bench/kube_load.py memberships --url http://127.0.0.1:PORT --count 100000 \
        [--namespaces 10] [--groups 10] [--threads 4] [--settled] [--prefix m]
    python3 bench/kube_load.py objects --url URL FILE     # a JSON list of objects
    python3 bench/kube_load.py metric --url https://127.0.0.1:PORT --cacert CA NAME [LABEL=V]

`memberships` creates ContactGroupMemberships contact-NNNNNN-group-GG in
namespaces org-00.. (contact c, group g: every pair distinct), POSTed over
keep-alive connections from several threads. --settled also gives each one
the reconciler's finalizer and, through the status subresource, a Ready
condition for generation 1, so a reconciler treats it as done and makes no
call for it (the way 100,000 synced memberships look in a real cluster).

`objects` creates each object of the list in order (one connection).
`metric` prints the value of one Prometheus sample of an HTTPS /metrics.

Python 3 standard library only. Prints one summary line to stderr.
"""

import argparse
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

GROUP = "notification.miloapis.com"
API = GROUP + "/v1alpha1"
PLURALS = {
    "Contact": "contacts",
    "ContactGroup": "contactgroups",
    "ContactGroupMembership": "contactgroupmemberships",
    "ContactGroupMembershipRemoval": "contactgroupmembershipremovals",
}
FINALIZERS = {
    "Contact": GROUP + "/contact",
    "ContactGroup": GROUP + "/contactgroup",
    "ContactGroupMembership": GROUP + "/contactgroupmembership",
}
HEADERS = {"Authorization": "Bearer bench", "Accept": "application/json",
           "Content-Type": "application/json"}


class Client:
    """One keep-alive connection to the stand-in (plain HTTP)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, content_type="application/json"):
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = dict(HEADERS, **{"Content-Type": content_type})
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, raw
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def collection(kind, ns):
    return "/apis/%s/namespaces/%s/%s" % (API, ns, PLURALS[kind])


def membership(i, namespaces, groups, settled):
    c, g = divmod(i, groups)
    ns = "org-%02d" % (c % namespaces)
    meta = {"name": "contact-%06d-group-%02d" % (c, g), "namespace": ns}
    if settled:
        meta["finalizers"] = [FINALIZERS["ContactGroupMembership"]]
    return ns, {
        "apiVersion": API, "kind": "ContactGroupMembership", "metadata": meta,
        "spec": {"contactRef": {"name": "contact-%06d" % c, "namespace": ns},
                 "contactGroupRef": {"name": "group-%02d" % g, "namespace": ns}},
    }


SETTLED_STATUS = {"status": {
    "observedGeneration": 1,
    "providerID": "00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000001",
    "conditions": [
        {"type": "Ready", "status": "True", "observedGeneration": 1,
         "lastTransitionTime": "2025-11-25T17:05:24Z", "reason": "Added",
         "message": "the contact is in the provider segment"},
        {"type": "ProviderSynced", "status": "True", "observedGeneration": 1,
         "lastTransitionTime": "2025-11-25T17:05:24Z", "reason": "Added",
         "message": "the contact is in the provider segment"}]}}


def create_memberships(args):
    nxt = [0]
    lock = threading.Lock()
    errors = []

    def worker():
        cl = Client(args.url)
        while True:
            with lock:
                i = nxt[0]
                if i >= args.count or errors:
                    return
                nxt[0] += 1
            ns, obj = membership(args.start + i, args.namespaces, args.groups, args.settled)
            code, raw = cl.request("POST", collection("ContactGroupMembership", ns), obj)
            if code not in (201, 409):
                errors.append("POST %s: %d %s" % (obj["metadata"]["name"], code, raw[:300]))
                return
            if args.settled:
                path = "%s/%s/status" % (collection("ContactGroupMembership", ns),
                                         obj["metadata"]["name"])
                code, raw = cl.request("PATCH", path, SETTLED_STATUS,
                                       "application/merge-patch+json")
                if code != 200:
                    errors.append("PATCH status: %d %s" % (code, raw[:300]))
                    return

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    if errors:
        sys.exit("kube_load: " + errors[0])
    sys.stderr.write("kube_load: %d memberships%s in %.1f s (%.0f/s)\n" % (
        args.count, " (settled)" if args.settled else "", dt, args.count / dt))


def create_objects(args):
    with open(args.file) as f:
        objs = json.load(f)
    cl = Client(args.url)
    for obj in objs:
        ns = obj["metadata"]["namespace"]
        code, raw = cl.request("POST", collection(obj["kind"], ns), obj)
        if code not in (201, 409):
            sys.exit("kube_load: POST %s %s: %d %s" % (obj["kind"], obj["metadata"]["name"],
                                                     code, raw[:300]))
    sys.stderr.write("kube_load: %d objects\n" % len(objs))


def metric(args):
    u = urllib.parse.urlsplit(args.url)
    ctx = ssl.create_default_context(cafile=args.cacert)
    conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=10, context=ctx)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    want = ",".join('%s="%s"' % tuple(kv.split("=", 1)) for kv in args.labels)
    for line in text.splitlines():
        if line.startswith(args.name + "{" + want + "}") or (
                not want and line.startswith(args.name + " ")):
            print(line.rsplit(" ", 1)[1])
            return
    print("0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("memberships")
    m.add_argument("--url", required=True)
    m.add_argument("--count", type=int, default=100000)
    m.add_argument("--start", type=int, default=0)
    m.add_argument("--namespaces", type=int, default=10)
    m.add_argument("--groups", type=int, default=10)
    m.add_argument("--threads", type=int, default=4)
    m.add_argument("--settled", action="store_true")
    o = sub.add_parser("objects")
    o.add_argument("--url", required=True)
    o.add_argument("file")
    q = sub.add_parser("metric")
    q.add_argument("--url", required=True)
    q.add_argument("--cacert", required=True)
    q.add_argument("name")
    q.add_argument("labels", nargs="*")
    args = ap.parse_args()
    {"memberships": create_memberships, "objects": create_objects, "metric": metric}[args.cmd](args)


if __name__ == "__main__":
    main()
