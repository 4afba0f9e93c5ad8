#!/usr/bin/env python3
"""reconciler_bench.py -- contact-reconciler: provider calls, time and memory (bench/reconciler.sh runs it).

Part 1, sync: G ContactGroups, C Contacts and every (contact, group) pair as
a ContactGroupMembership (C*G of them; 50 x 100 = 5,000 by default) are
created in the kube stand-in (test/py/kube_standin.py), then the real
contact-reconciler starts against it and the Resend stand-in
(test/py/resend_standin.py --rate R, sliding window) with
--resend-rate-limit R. Reported: the provider calls by route from the
stand-in's /_standin/calls, beside the changes that were needed (one
segment per group, one contact per Contact, one contact-segment per
membership); the time from the reconciler's start until every object is
Ready for its generation, and from the first provider call to the last,
beside calls / R; 429s. Then one resync period in steady state: calls made
(target: none).

Part 2, memory: N settled memberships (finalizer on, Ready for generation
1, bench/kube_load.py --settled) in a fresh kube stand-in; a reconciler
started on it lists them, queues none and calls the provider for none; its
RSS beside a reconciler's on an empty stand-in.

With BENCH_PROVIDER=mailgun, part 1 runs against the Mailgun stand-in
(test/py/mailgun_standin.py --rate R) with --provider mailgun
--mailgun-rate-limit R, twice: with bulk uploads (--mailgun-bulk-window,
BENCH_BULK_WINDOW, default the reconciler's) and without
(--mailgun-bulk-window 0). The changes needed there are one list per group
and one member per membership (a Contact makes no call of its own).

Environment: MILO_RECONCILER_BIN, BENCH_PROVIDER (resend), BENCH_GROUPS (50),
BENCH_CONTACTS (100), BENCH_RATE (10), BENCH_RESYNC (20s), BENCH_OBJECTS
(100000; 0 skips part 2), BENCH_WORKERS (the reconciler's default),
BENCH_SERVER_RATE (the provider stand-in's limit; BENCH_RATE: the same as
the client's), BENCH_BULK_WINDOW.
Python 3 standard library only. Prints Markdown to stdout.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import kube_load  # noqa: E402

API = kube_load.API
NS = "org-bench"
API_KEY = "re_standin_key"
MAILGUN_API_KEY = "key-standin-mailgun"
MAILGUN_DOMAIN = "lists.bench.test"
PROVIDER = os.environ.get("BENCH_PROVIDER") or "resend"
PY = sys.executable


def env_int(name, default):
    return int(os.environ.get(name) or default)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Procs:
    """The processes a bench starts, their logs in tmp; close() stops them
    and removes tmp unless MILO_KEEP_LOGS is set."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self):
        for p in reversed(self.procs):
            self.stop(p)
        if os.environ.get("MILO_KEEP_LOGS"):
            sys.stderr.write("logs kept in %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def wait_file(path, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and os.path.getsize(path)):
        if time.monotonic() > deadline:
            sys.exit("reconciler_bench: %s did not start" % what)
        time.sleep(0.05)
    with open(path) as f:
        return f.read().strip()


def http_json(url, method="GET", body=None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, u.path + ("?" + u.query if u.query else ""), body=data,
                 headers={"Content-Type": "application/json", "Authorization": "Bearer bench"})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, json.loads(raw) if raw else None


def start_kube(procs, name):
    d = os.path.join(procs.tmp, name)
    os.makedirs(d)
    procs.start(name, [PY, os.path.join(TOP, "test/py/kube_standin.py"), "--port", "0",
                       "--port-file", d + "/port", "--kubeconfig-out", d + "/kubeconfig"])
    port = wait_file(d + "/port", name)
    wait_file(d + "/kubeconfig", name)
    url = "http://127.0.0.1:%s" % port
    http_json(url + "/_standin/config", "POST", {"admission": False})
    return url, d + "/kubeconfig"


def start_resend(procs, rate):
    """The provider's stand-in (BENCH_PROVIDER): its URL."""
    rate = os.environ.get("BENCH_SERVER_RATE") or rate
    name = "%s-%d" % (PROVIDER, len(procs.procs))
    pf = os.path.join(procs.tmp, name + ".port")
    argv = [PY, os.path.join(TOP, "test/py/%s_standin.py" % PROVIDER), "--port", "0",
            "--port-file", pf, "--rate", str(rate)]
    if PROVIDER == "mailgun":
        argv += ["--domain", MAILGUN_DOMAIN]
    procs.start(name, argv)
    return "http://127.0.0.1:%s" % wait_file(pf, "the %s stand-in" % PROVIDER)


def start_reconciler(procs, name, kubeconfig, resend_url, rate, resync, extra=()):
    """contact-reconciler on the kube stand-in and the provider's (BENCH_PROVIDER)
    at rate; resync None leaves the reconciler's default; extra: more flags."""
    binary = os.environ.get("MILO_RECONCILER_BIN") or os.path.join(
        TOP, "build/default/contact-reconciler")
    port = free_port()
    if PROVIDER == "mailgun":
        provider = ["--provider", "mailgun", "--mailgun-base-url", resend_url,
                    "--mailgun-domain", MAILGUN_DOMAIN, "--mailgun-rate-limit", str(rate)]
    else:
        provider = ["--resend-base-url", resend_url, "--resend-rate-limit", str(rate)]
    argv = [binary, "--kubeconfig", kubeconfig] + provider + ["--leader-elect=false",
            "--secure-port", str(port), "--bind-address", "127.0.0.1",
            "--cert-dir", os.path.join(TOP, "certs/dev"), "--metrics-auth=false"]
    if resync is not None:
        argv += ["--resync-period", resync]
    argv += list(extra)
    if os.environ.get("BENCH_WORKERS"):
        argv += ["--workers", os.environ["BENCH_WORKERS"]]
    env = dict(os.environ, RESEND_API_KEY=API_KEY, MAILGUN_API_KEY=MAILGUN_API_KEY)
    env.pop("KUBECONFIG", None)
    proc = procs.start(name, argv, env)
    proc.bench_port = port
    return proc


def metrics(proc, prefixes):
    """The reconciler's /metrics samples whose names start with one of prefixes."""
    import ssl
    ctx = ssl.create_default_context(cafile=os.path.join(TOP, "certs/dev/ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", proc.bench_port, timeout=10, context=ctx)
    # The kube stand-in takes any token as an admin (--metrics-auth reviews it).
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer bench"})
    text = conn.getresponse().read().decode()
    conn.close()
    return [line for line in text.splitlines()
            if not line.startswith("#") and line.startswith(tuple(prefixes))]


def log_lines(procs, name):
    out = []
    with open(os.path.join(procs.tmp, name + ".log"), errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_listed(procs, name, proc, plural, count, timeout=600):
    """Until the reconciler's log says it listed `count` objects of plural."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("reconciler_bench: %s exited %s" % (name, proc.returncode))
        for line in log_lines(procs, name):
            if (line.get("msg") == "cache: listed" and line.get("resource") == plural
                    and line.get("count") == count):
                return
        time.sleep(0.25)
    sys.exit("reconciler_bench: %s never listed %d %s" % (name, count, plural))


def ready(obj):
    gen = obj["metadata"].get("generation")
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True" and c.get("observedGeneration") == gen
    return False


def objects(groups, contacts):
    out = []
    for g in range(groups):
        out.append({"apiVersion": API, "kind": "ContactGroup",
                    "metadata": {"name": "group-%02d" % g, "namespace": NS},
                    "spec": {"displayName": "Group %02d" % g, "visibility": "public"}})
    for c in range(contacts):
        out.append({"apiVersion": API, "kind": "Contact",
                    "metadata": {"name": "contact-%04d" % c, "namespace": NS},
                    "spec": {"email": "person.%04d@example.com" % c, "givenName": "Person",
                             "familyName": "%04d" % c}})
    for c in range(contacts):
        for g in range(groups):
            out.append({"apiVersion": API, "kind": "ContactGroupMembership",
                        "metadata": {"name": "contact-%04d-group-%02d" % (c, g),
                                     "namespace": NS},
                        "spec": {"contactRef": {"name": "contact-%04d" % c, "namespace": NS},
                                 "contactGroupRef": {"name": "group-%02d" % g,
                                                     "namespace": NS}}})
    return out


def sync(procs, groups, contacts, rate, resync, extra=(), tag=""):
    kube_url, kubeconfig = start_kube(procs, "kube-sync" + tag)
    resend_url = start_resend(procs, rate)
    objs = objects(groups, contacts)
    path = os.path.join(procs.tmp, "objects.json")
    with open(path, "w") as f:
        json.dump(objs, f)
    subprocess.run([PY, os.path.join(HERE, "kube_load.py"), "objects", "--url", kube_url, path],
                   check=True, stderr=subprocess.DEVNULL)
    http_json(resend_url + "/_standin/calls", "DELETE")
    if PROVIDER == "mailgun":
        needed = {"POST /v3/lists": groups, "POST /v3/lists/{list}/members": groups * contacts}
    else:
        needed = {"POST /segments": groups, "POST /contacts": contacts,
                  "POST /contacts/{contact}/segments/{segment}": groups * contacts}
    n_objs = len(objs)

    t0 = time.time()
    rec = start_reconciler(procs, "reconciler-sync" + tag, kubeconfig, resend_url, rate,
                           resync, extra)
    plurals = ["contactgroups", "contacts", "contactgroupmemberships"]
    done_at = None
    deadline = time.monotonic() + 3 * (sum(needed.values()) * 1.2 / rate) + 120
    while time.monotonic() < deadline:
        if rec.poll() is not None:
            sys.exit("reconciler_bench: the reconciler exited %s" % rec.returncode)
        n_ready = 0
        for p in plurals:
            _, lst = http_json("%s/apis/%s/namespaces/%s/%s" % (kube_url, API, NS, p))
            n_ready += sum(1 for o in lst["items"] if ready(o))
        if n_ready == n_objs:
            done_at = time.time()
            break
        time.sleep(1.0)
    if done_at is None:
        sys.exit("reconciler_bench: not every object became Ready (%d of %d)" % (n_ready, n_objs))
    rss_synced = kib(rec.pid, "VmRSS")
    cpu_synced = cpu_s(rec.pid)
    _, calls = http_json(resend_url + "/_standin/calls?since=0")
    # Steady state: one resync period and a bit more, then count again.
    resync_s = float(resync.rstrip("s"))
    time.sleep(resync_s * 1.5 + 2)
    _, after = http_json(resend_url + "/_standin/counts")
    rec_metrics = metrics(rec, ["controller_runtime_reconcile_total",
                                "milo_provider_rate_limiter_wait_seconds_total",
                                "milo_provider_rate_limited_total",
                                "milo_provider_bulk_members_total"])
    procs.stop(rec)
    return {"t0": t0, "done": done_at, "calls": calls, "after": after, "needed": needed,
            "rss": rss_synced, "cpu": cpu_synced, "objects": n_objs, "resync": resync_s,
            "metrics": rec_metrics, "groups": groups, "contacts": contacts,
            "extra": " ".join(extra)}


def memory(procs, n, rate):
    # Baseline: an empty cluster.
    resend_url = start_resend_again(procs, rate)
    url0, kc0 = start_kube(procs, "kube-empty")
    r0 = start_reconciler(procs, "reconciler-empty", kc0, resend_url, rate, "10m")
    wait_listed(procs, "reconciler-empty", r0, "contactgroupmemberships", 0)
    time.sleep(2)
    rss0, anon0 = kib(r0.pid, "VmRSS"), kib(r0.pid, "RssAnon")
    procs.stop(r0)
    # N settled memberships.
    url1, kc1 = start_kube(procs, "kube-big")
    t = time.monotonic()
    subprocess.run([PY, os.path.join(HERE, "kube_load.py"), "memberships", "--url", url1,
                    "--count", str(n), "--settled"], check=True)
    seed_s = time.monotonic() - t
    http_json(resend_url + "/_standin/calls", "DELETE")
    t = time.monotonic()
    r1 = start_reconciler(procs, "reconciler-big", kc1, resend_url, rate, "10m")
    wait_listed(procs, "reconciler-big", r1, "contactgroupmemberships", n)
    list_s = time.monotonic() - t
    time.sleep(3)
    rss1, anon1, hwm1 = kib(r1.pid, "VmRSS"), kib(r1.pid, "RssAnon"), kib(r1.pid, "VmHWM")
    _, counts = http_json(resend_url + "/_standin/counts")
    procs.stop(r1)
    return {"n": n, "rss0": rss0, "anon0": anon0, "rss1": rss1, "anon1": anon1, "hwm1": hwm1,
            "calls": sum(counts.get("counts", {}).values()), "seed_s": seed_s, "list_s": list_s}


_resend = {}


def start_resend_again(procs, rate):
    if "url" not in _resend:
        _resend["url"] = start_resend(procs, rate)
    return _resend["url"]


def report_sync(s, rate):
    """Prints the tables; returns (calls, seconds to every object Ready)."""
    calls = s["calls"]
    counts = calls.get("counts", {})
    by_status = calls.get("countsByStatus", {})
    total = sum(counts.values())
    needed_total = sum(s["needed"].values())
    times = [c["time"] for c in calls.get("calls", [])]
    first, last = (min(times), max(times)) if times else (s["t0"], s["t0"])
    ideal = total / rate
    wall = s["done"] - s["t0"]
    window = last - first
    n429 = sum(v.get("429", 0) for v in by_status.values())
    print("### Sync: %d objects (%d ContactGroups, %d Contacts, %d ContactGroupMemberships), "
          "--%s-rate-limit %g%s, %s stand-in --rate %s" % (
              s["objects"], s["groups"], s["contacts"], s["groups"] * s["contacts"], PROVIDER,
              rate, " " + s["extra"] if s["extra"] else "", PROVIDER.capitalize(),
              os.environ.get("BENCH_SERVER_RATE") or "%g" % rate))
    print()
    print("| route | calls | statuses | needed changes | beyond one per change |")
    print("|---|---:|---|---:|---:|")
    for route in sorted(counts, key=lambda r: (-counts[r], r)):
        need = s["needed"].get(route, 0)
        st = ", ".join("%s: %d" % kv for kv in sorted(by_status.get(route, {}).items()))
        print("| `%s` | %d | %s | %d | %d |" % (route, counts[route], st, need,
                                             counts[route] - need))
    print("| **total** | **%d** | 429s: %d | **%d** | **%d** |" % (
        total, n429, needed_total, total - needed_total))
    print()
    print("| time | seconds | vs calls / rate (%.1f s) |" % ideal)
    print("|---|---:|---:|")
    print("| reconciler start -> every object Ready | %.1f | %+.1f%% |" % (
        wall, 100 * (wall - ideal) / ideal))
    print("| first provider call -> last | %.1f | %+.1f%% |" % (
        window, 100 * (window - ideal) / ideal))
    print("| needed changes / rate | %.1f | |" % (needed_total / rate))
    print()
    extra = sum(s["after"].get("counts", {}).values()) - total
    print("Steady state: %d provider calls in the %.0f s after every object was Ready "
          "(resync period %.0f s; target: none)." % (extra, s["resync"] * 1.5 + 2, s["resync"]))
    print("Reconciler after the sync: VmRSS %d KiB, CPU %.2f s in all." % (s["rss"], s["cpu"]))
    print()
    print("Its metrics at the end:")
    print()
    print("```")
    for line in s["metrics"]:
        if not line.endswith(" 0"):
            print(line)
    print("```")
    print()
    return total, wall


def report_memory(m):
    print("### Memory: %d settled memberships cached by the reconciler" % m["n"])
    print()
    print("| reconciler state | VmRSS KiB | RssAnon KiB |")
    print("|---|---:|---:|")
    print("| synced, empty cluster | %d | %d |" % (m["rss0"], m["anon0"]))
    print("| synced, %d memberships | %d | %d |" % (m["n"], m["rss1"], m["anon1"]))
    print()
    print("Growth: %.0f bytes per object (RSS), %.0f (anonymous); peak VmHWM %d KiB; "
          "list of %d took %.1f s after start; %d provider calls for them (target 0). "
          "Seeding them took %.0f s." % (
              (m["rss1"] - m["rss0"]) * 1024 / m["n"], (m["anon1"] - m["anon0"]) * 1024 / m["n"],
              m["hwm1"], m["n"], m["list_s"], m["calls"], m["seed_s"]))
    print()


def main():
    groups = env_int("BENCH_GROUPS", 50)
    contacts = env_int("BENCH_CONTACTS", 100)
    rate = float(os.environ.get("BENCH_RATE") or 10)
    resync = os.environ.get("BENCH_RESYNC") or "20s"
    n = env_int("BENCH_OBJECTS", 100000)
    tmp = tempfile.mkdtemp(prefix="milo-bench-rec-")
    procs = Procs(tmp)
    try:
        if not os.environ.get("BENCH_SKIP_SYNC") and PROVIDER == "mailgun":
            window = os.environ.get("BENCH_BULK_WINDOW")
            bulk = report_sync(sync(procs, groups, contacts, rate, resync,
                                    ["--mailgun-bulk-window", window] if window else [],
                                    "-bulk"), rate)
            alone = report_sync(sync(procs, groups, contacts, rate, resync,
                                     ["--mailgun-bulk-window", "0"], "-alone"), rate)
            print("Bulk uploads: %d calls, %.1f s to every object Ready; each member alone: "
                  "%d calls, %.1f s (%.1fx the calls, %.1fx the time)." % (
                      bulk[0], bulk[1], alone[0], alone[1], alone[0] / max(bulk[0], 1),
                      alone[1] / max(bulk[1], 0.1)))
            print()
        elif not os.environ.get("BENCH_SKIP_SYNC"):
            report_sync(sync(procs, groups, contacts, rate, resync), rate)
        if n:
            report_memory(memory(procs, n, rate))
    finally:
        procs.close()


if __name__ == "__main__":
    main()
