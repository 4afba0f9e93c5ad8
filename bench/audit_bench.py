#!/usr/bin/env python3
"""audit_bench.py -- the provider audit of 10,000 memberships in 50 groups (bench/audit.sh runs it).

A converged cluster is laid down on both sides at once: the Resend stand-in
(test/py/resend_standin.py --rate R) is seeded with G segments named as the
reconciler names them and C contacts, each contact in K of the segments
(C*K memberships; 1,000 x 10 over 50 groups = 10,000 by default); the kube
stand-in gets the matching ContactGroups, Contacts and
ContactGroupMemberships, each with the reconciler's finalizer and a Ready
status for its generation carrying the provider ids, as a synced cluster
holds them. The real contact-reconciler then starts with
--resend-rate-limit R and --provider-audit-period P: it lists the cluster,
has nothing to reconcile, and audits P after it leads.

Reported, for the first audit (converged): provider calls by route and
method (target: only GETs, about one per 100 provider objects read), the
audit's time from its log line beside calls / R, and the reconciler's RSS
before and during it (sampled every 50 ms, the peak). Then drift is made
(one segment deleted, BENCH_DRIFT members taken out of other segments) and
the next audit is measured the same way, with the time until every object
is Ready again and the writes the repairs took.

Environment: MILO_RECONCILER_BIN, BENCH_AUDIT_GROUPS (50), BENCH_AUDIT_CONTACTS
(1000), BENCH_AUDIT_PER_CONTACT (10), BENCH_RATE (10), BENCH_AUDIT_PERIOD (15s),
BENCH_DRIFT (100; 0 skips the drift part), MILO_KEEP_LOGS.
Python 3 standard library only. Prints Markdown to stdout.
"""

import os
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kube_load  # noqa: E402
import reconciler_bench as rb  # noqa: E402

API = kube_load.API
NS = "org-bench"
FIN = kube_load.FINALIZERS
STAMP = "2026-01-01T00:00:00Z"


def settled_status(pid, reason):
    conds = [{"type": t, "status": "True", "observedGeneration": 1,
              "lastTransitionTime": STAMP, "reason": reason,
              "message": "the provider matches"} for t in ("Ready", "ProviderSynced")]
    return {"status": {"observedGeneration": 1, "providerID": pid, "conditions": conds}}


def layout(groups, contacts, per_contact):
    """Provider seed and cluster objects: contact c is in groups (c + k * step) % groups."""
    step = max(1, groups // per_contact)
    seg_ids = [str(uuid.uuid4()) for _ in range(groups)]
    con_ids = [str(uuid.uuid4()) for _ in range(contacts)]
    segs = [{"id": seg_ids[g], "name": "Group %02d [%s/group-%02d]" % (g, NS, g)}
            for g in range(groups)]
    pairs = [(c, (c + k * step) % groups) for c in range(contacts) for k in range(per_contact)]
    member_of = {}
    for c, g in pairs:
        member_of.setdefault(c, []).append(seg_ids[g])
    cons = [{"id": con_ids[c], "email": "person.%04d@example.com" % c, "first_name": "Person",
             "last_name": "%04d" % c, "segments": member_of.get(c, [])}
            for c in range(contacts)]
    objs = []
    for g in range(groups):
        objs.append(({"apiVersion": API, "kind": "ContactGroup",
                      "metadata": {"name": "group-%02d" % g, "namespace": NS,
                                   "finalizers": [FIN["ContactGroup"]]},
                      "spec": {"displayName": "Group %02d" % g, "visibility": "public"}},
                     settled_status(seg_ids[g], "Synced")))
    for c in range(contacts):
        objs.append(({"apiVersion": API, "kind": "Contact",
                      "metadata": {"name": "contact-%04d" % c, "namespace": NS,
                                   "finalizers": [FIN["Contact"]]},
                      "spec": {"email": "person.%04d@example.com" % c, "givenName": "Person",
                               "familyName": "%04d" % c,
                               "subject": {"userRef": {"name": "u-%04d" % c}}}},
                     settled_status(con_ids[c], "Synced")))
    for c, g in pairs:
        objs.append(({"apiVersion": API, "kind": "ContactGroupMembership",
                      "metadata": {"name": "contact-%04d-group-%02d" % (c, g), "namespace": NS,
                                   "finalizers": [FIN["ContactGroupMembership"]]},
                      "spec": {"contactRef": {"name": "contact-%04d" % c, "namespace": NS},
                               "contactGroupRef": {"name": "group-%02d" % g,
                                                   "namespace": NS}}},
                     settled_status("%s/%s" % (con_ids[c], seg_ids[g]), "Added")))
    return segs, cons, objs, pairs, seg_ids, con_ids


def load(url, objs, threads=4):
    """POSTs every object, then its status (the stand-in ignores status on create)."""
    nxt, lock, errors = [0], threading.Lock(), []

    def worker():
        cl = kube_load.Client(url)
        while True:
            with lock:
                i = nxt[0]
                if i >= len(objs) or errors:
                    return
                nxt[0] += 1
            obj, status = objs[i]
            path = kube_load.collection(obj["kind"], NS)
            code, raw = cl.request("POST", path, obj)
            if code != 201:
                errors.append("POST %s: %d %s" % (obj["metadata"]["name"], code, raw[:200]))
                return
            code, raw = cl.request("PATCH", "%s/%s/status" % (path, obj["metadata"]["name"]),
                                   status, "application/merge-patch+json")
            if code != 200:
                errors.append("PATCH status: %d %s" % (code, raw[:200]))
                return
    # Groups and contacts before their memberships, so the order is a real cluster's.
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        sys.exit("audit_bench: " + errors[0])


def audit_windows(procs, name):
    """(start, end) wall-clock seconds of every finished audit, from its log line."""
    return [(iso_time(x["time"]) - x["seconds"], iso_time(x["time"]))
            for x in audit_lines(procs, name, "provider audit finished")]


def audit_lines(procs, name, msg):
    return [x for x in rb.log_lines(procs, name) if x.get("msg", "").startswith(msg)]


def follow_audit(procs, name, proc, done_before, timeout):
    """Samples RSS until audit number done_before+1 finishes; -> (log line, peak KiB, start KiB)."""
    deadline = time.monotonic() + timeout
    started = len(audit_lines(procs, name, "provider audit started"))
    peak, at_start = 0, None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("audit_bench: the reconciler exited %s" % proc.returncode)
        rss = rb.kib(proc.pid, "VmRSS")
        if len(audit_lines(procs, name, "provider audit started")) > done_before:
            if at_start is None:
                at_start = rss
            peak = max(peak, rss)
            done = audit_lines(procs, name, "provider audit finished")
            if len(done) > done_before:
                return done[done_before], peak, at_start
        time.sleep(0.05)
    sys.exit("audit_bench: no audit finished within %ds (%d started)" % (timeout, started))


def calls_between(calls, t0, t1):
    return [c for c in calls if t0 <= c["time"] <= t1]


def by_route(calls):
    out = {}
    for c in calls:
        k = "%s %s" % (c["method"], c["route"])
        out[k] = out.get(k, 0) + 1
    return out


def iso_time(s):
    from datetime import datetime
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=__import__("datetime").timezone.utc).timestamp()


def report(title, line, calls, rate, rss0, peak, extra=""):
    routes = by_route(calls)
    total = sum(routes.values())
    print("### %s" % title)
    print()
    print("| route | calls |")
    print("|---|---:|")
    for r in sorted(routes, key=lambda k: (-routes[k], k)):
        print("| `%s` | %d |" % (r, routes[r]))
    print("| **total** | **%d** (writes: %d) |" % (
        total, sum(v for k, v in routes.items() if not k.startswith("GET "))))
    print()
    read = line["membersRead"] + line["groupsListed"]
    print("Provider objects read: %d (%d groups, %d members): %.1f objects per call. "
          "Audit time %.1f s (log), calls / rate = %.1f s. Marked for repair: %d, removed "
          "directly: %d. Reconciler VmRSS %d KiB before, %d KiB peak during the audit "
          "(+%d KiB).%s" % (
              read, line["groupsListed"], line["membersRead"], read / max(1, total),
              line["seconds"], total / rate, line["driftMarked"], line["membersRemoved"],
              rss0, peak, peak - rss0, extra))
    print()


def main():
    groups = rb.env_int("BENCH_AUDIT_GROUPS", 50)
    contacts = rb.env_int("BENCH_AUDIT_CONTACTS", 1000)
    per_contact = rb.env_int("BENCH_AUDIT_PER_CONTACT", 10)
    rate = float(os.environ.get("BENCH_RATE") or 10)
    period = os.environ.get("BENCH_AUDIT_PERIOD") or "15s"
    n_drift = rb.env_int("BENCH_DRIFT", 100)
    tmp = tempfile.mkdtemp(prefix="milo-bench-audit-")
    procs = rb.Procs(tmp)
    try:
        segs, cons, objs, pairs, seg_ids, con_ids = layout(groups, contacts, per_contact)
        kube_url, kubeconfig = rb.start_kube(procs, "kube")
        resend_url = rb.start_resend(procs, rate)
        t = time.monotonic()
        load(kube_url, objs)
        rb.http_json(resend_url + "/_standin/seed", "POST", {"segments": segs})
        for i in range(0, len(cons), 500):
            rb.http_json(resend_url + "/_standin/seed", "POST", {"contacts": cons[i:i + 500]})
        seed_s = time.monotonic() - t
        rb.http_json(resend_url + "/_standin/calls", "DELETE")
        name = "reconciler"
        rec = rb.start_reconciler(procs, name, kubeconfig, resend_url, rate, None,
                                  ["--provider-audit-period", period])
        rb.wait_listed(procs, name, rec, "contactgroupmemberships", len(pairs))
        rss0 = rb.kib(rec.pid, "VmRSS")
        line, peak, _ = follow_audit(procs, name, rec, 0, 600)
        _, log = rb.http_json(resend_url + "/_standin/calls?since=0")
        calls = log["calls"]
        t1 = iso_time(line["time"])
        first = calls_between(calls, t1 - line["seconds"] - 1, t1 + 1)
        print("## Provider audit: %d memberships (%d ContactGroups, %d Contacts, %d groups "
              "each), --resend-rate-limit %g, Resend stand-in --rate %g" % (
                  len(pairs), groups, contacts, per_contact, rate, rate))
        print()
        print("Seeding both stand-ins took %.0f s; before the audit the reconciler made %d "
              "provider calls (target 0)." % (
                  seed_s, len([c for c in calls if c["time"] < t1 - line["seconds"] - 1])))
        print()
        report("Converged: the first audit", line, first, rate, rss0, peak)
        if n_drift:
            before = len(calls)
            gone = seg_ids[0]
            rb.http_json(resend_url + "/_standin/drift", "POST",
                         {"op": "deleteSegment", "segment": gone})
            taken = [p for p in pairs if p[1] != 0][:n_drift]
            for c, g in taken:
                rb.http_json(resend_url + "/_standin/drift", "POST", {
                    "op": "removeMember", "contact": con_ids[c], "segment": seg_ids[g]})
            rss1 = rb.kib(rec.pid, "VmRSS")
            t0 = time.time()
            line2, peak2, _ = follow_audit(procs, name, rec, 1, 600)
            # Repaired when the next audit finds nothing.
            line3, _, _ = follow_audit(procs, name, rec, 2, 900)
            while line3["driftMarked"] or line3["membersRemoved"]:
                n = len(audit_lines(procs, name, "provider audit finished"))
                line3, _, _ = follow_audit(procs, name, rec, n, 900)
            _, log = rb.http_json(resend_url + "/_standin/calls?since=0")
            all_calls = log["calls"]
            t2 = iso_time(line2["time"])
            windows = audit_windows(procs, name)

            def audit_read(c):
                return c["method"] == "GET" and c["route"] in ("/segments", "/contacts") and \
                    any(a - 0.2 <= c["time"] <= b + 0.2 for a, b in windows)
            audit2 = [c for c in calls_between(all_calls, t2 - line2["seconds"] - 0.2, t2 + 0.2)
                      if audit_read(c)]
            repairs = [c for c in all_calls[before:] if c["time"] > t0 and not audit_read(c)]
            last = max((c["time"] for c in repairs), default=t2)
            members = len([p for p in pairs if p[1] == 0]) + len(taken)
            report("Drift: one segment deleted (%d members), %d members taken out of others"
                   % (members - len(taken), len(taken)), line2, audit2, rate, rss1, peak2,
                   " Repairs: %d calls (%s), the last %.1f s after the audit ended; the "
                   "audit after them found nothing." % (
                       len(repairs), ", ".join("%s: %d" % kv for kv in sorted(
                           by_route(repairs).items())), last - t2))
        procs.stop(rec)
    finally:
        procs.close()


if __name__ == "__main__":
    main()
