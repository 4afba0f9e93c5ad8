"""test_audit.py -- the provider audit (--provider-audit-period) through the real reconciler.

Drift is made in the Resend stand-in the way a dashboard user or another
team would (POST /_standin/drift: no call log, no rate limit), then the
audits are followed through the reconciler's log lines ("provider audit
started" / "provider audit finished" with counts), the provider's state,
the objects' status and their Events. Run with:
python3 -m unittest discover -s test/py -p 'test_audit.py'
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reconciler_harness as h  # noqa: E402
from reconciler_harness import Env, MEMBERSHIP, REMOVAL, condition, wait_for  # noqa: E402

NS = "org-a"
PERIOD = ["--provider-audit-period", "2s"]


setUpModule = h.module_setup
tearDownModule = h.cleanup_certs


def audits(rec, msg="provider audit finished"):
    return [x for x in rec.logs() if x.get("msg") == msg]


class Base(unittest.TestCase):
    maxDiff = None

    def converge(self, env, groups, contacts, memberships, removals=()):
        """groups: {name: (display, visibility)}; contacts: {name: (email, given, family)}."""
        for g, (display, vis) in groups.items():
            env.group(NS, g, display, vis)
        for c, (email, given, family) in contacts.items():
            env.contact(NS, c, email, given, family)
        for g in groups:
            env.wait_ready("ContactGroup", NS, g)
        for c in contacts:
            env.wait_ready("Contact", NS, c)
        for m, (c, g) in memberships.items():
            env.membership(NS, m, c, g)
        for m in memberships:
            env.wait_ready(MEMBERSHIP, NS, m)
        for r, (c, g) in removals:
            env.removal(NS, r, c, g)
            env.wait_condition(REMOVAL, NS, r, "Ready", "True", "Removed")

    def pid(self, env, kind, name):
        """The object's providerID; None while a repair has cleared it."""
        return env.get(kind, NS, name).get("status", {}).get("providerID")

    def next_audit(self, rec, timeout=30):
        """Waits for an audit that starts after now to finish; returns its log line."""
        started = len(audits(rec, "provider audit started"))
        wait_for(lambda: len(audits(rec, "provider audit started")) > started, timeout,
                 "an audit to start")

        def finished():
            done = [x for x in rec.logs() if x.get("msg", "").startswith("provider audit finished")]
            return len(done) > started and done[started]
        return wait_for(finished, timeout, "the audit to finish")

    def members(self, env, sid):
        seg = next((s for s in env.segments() if s["id"] == sid), None)
        return None if seg is None else set(seg["contacts"])

    def drift_events(self, env, kind, name):
        return [e for e in env.events(NS, kind, name) if e.get("reason") == "ProviderDriftRepaired"]

    def assertRepaired(self, env, kind, name, found, done):
        """A Warning ProviderDriftRepaired Event saying what was found and done; drift closed."""
        evs = self.drift_events(env, kind, name)
        self.assertTrue(evs, "no ProviderDriftRepaired Event on %s %s" % (kind, name))
        self.assertTrue(all(e["type"] == "Warning" for e in evs), evs)
        notes = " | ".join(e["note"] for e in evs)
        self.assertRegex(notes, found)
        self.assertRegex(notes, done)
        obj = env.get(kind, NS, name)
        c = condition(obj, "ProviderDrift")
        if c is not None:
            self.assertEqual((c["status"], c["reason"]), ("False", "Repaired"), c)
            self.assertEqual(condition(obj, "Ready")["status"], "True")

    def metric_values(self, rec, name):
        code, body = rec.https("GET", "/metrics", headers={"Authorization": "Bearer any-token"})
        self.assertEqual(code, 200)
        out = {}
        for line in body.splitlines():
            if line.startswith(name):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out


class TestDrift(Base):
    def test_each_kind_of_drift_is_repaired_within_one_audit(self):
        env = Env(self)
        env.store_crds()
        rec = env.reconciler(args=PERIOD)
        foreign = env.resend.control("seed", {
            "segments": [{"name": "Newsletter (marketing team)"},
                         {"name": "Old list [org-a/deleted-long-ago]"}]})["segments"]
        strangers = env.resend.control("seed", {"contacts": [
            {"email": "stranger@elsewhere.io", "first_name": "Not", "segments": [foreign[0]]},
            {"email": "reader@elsewhere.io", "segments": [foreign[0], foreign[1]]}]})["contacts"]
        self.converge(
            env,
            {"g1": ("Group One", "public"), "g2": ("Group Two", "public"),
             "g3": ("Staff", "private")},
            {"c1": ("c1@example.com", "Ada", "Lovelace"), "c2": ("c2@example.com", "Bo", None),
             "c3": ("c3@example.com", "Cy", "Young"), "c4": ("c4@example.com", None, None),
             "c5": ("c5@example.com", "Di", None)},
            {"m11": ("c1", "g1"), "m12": ("c1", "g2"), "m21": ("c2", "g1"),
             "m23": ("c2", "g3"), "m31": ("c3", "g1"), "m41": ("c4", "g1"),
             "m51": ("c5", "g1"), "m53": ("c5", "g3")},
            removals=[("leave", ("c4", "g1"))])
        g1, g2, g3 = (self.pid(env, "ContactGroup", g) for g in ("g1", "g2", "g3"))
        c1, c2, c3, c4, c5 = (self.pid(env, "Contact", c) for c in ("c1", "c2", "c3", "c4", "c5"))
        self.assertEqual(self.members(env, g1), {c1, c2, c3, c5})
        quiet = self.next_audit(rec)
        self.assertEqual((quiet["driftMarked"], quiet["membersRemoved"]), (0, 0), quiet)
        self.assertEqual((quiet["groupsOwned"], quiet["groupsForeign"],
                          quiet["groupsOrphaned"]), (3, 1, 1), quiet)
        foreign_before = [s for s in env.segments() if s["id"] in foreign]
        strangers_before = [c for c in env.provider_contacts() if c["id"] in strangers]

        # Everything at once, between two audits.
        drift = env.resend.control
        drift("drift", {"op": "deleteSegment", "segment": g2})
        drift("drift", {"op": "renameSegment", "segment": g3, "name": "Staff (renamed by hand)"})
        drift("drift", {"op": "removeMember", "contact": c2, "segment": g1})
        drift("drift", {"op": "addMember", "contact": strangers[0], "segment": g1})
        drift("drift", {"op": "addMember", "contact": c4, "segment": g1})
        drift("drift", {"op": "addMember", "contact": c3, "segment": g3})
        drift("drift", {"op": "updateContact", "contact": c3,
                        "changes": {"first_name": "Cyrus", "email": "cy@evil.example"}})
        drift("drift", {"op": "deleteContact", "contact": c5})
        drift("drift", {"op": "updateContact", "contact": c1, "changes": {"unsubscribed": True}})
        found = self.next_audit(rec)
        # 2 for g2 (group, member), 1 rename, 1 missing member, 1 opt-out, 1 changed contact,
        # c5's contact and its 2 memberships, c1's unsubscribe; 2 extra members removed.
        self.assertEqual((found["driftMarked"], found["membersRemoved"], found["failures"]),
                         (10, 2, 0), found)

        def repaired():
            ok = [self.members(env, self.pid(env, "ContactGroup", "g2")) == {c1},
                  self.pid(env, "Contact", "c5") != c5]
            for kind, names in (("ContactGroup", ("g1", "g2", "g3")),
                                ("Contact", ("c1", "c2", "c3", "c5")),
                                (MEMBERSHIP, ("m11", "m12", "m21", "m23", "m31", "m51", "m53"))):
                for n in names:
                    c = condition(env.get(kind, NS, n), "Ready")
                    ok.append(c and c["status"] == "True")
            return all(ok)
        wait_for(repaired, 30, "every repair")
        after = self.next_audit(rec)
        self.assertEqual((after["driftMarked"], after["membersRemoved"], after["failures"]),
                         (0, 0, 0), after)

        # The provider matches the cluster again.
        g2new = self.pid(env, "ContactGroup", "g2")
        c5new = self.pid(env, "Contact", "c5")
        self.assertNotEqual(g2new, g2)
        self.assertEqual(self.pid(env, "ContactGroup", "g3"), g3)
        self.assertEqual(self.members(env, g1), {c1, c2, c3, c5new})
        self.assertEqual(self.members(env, g2new), {c1})
        self.assertEqual(self.members(env, g3), {c2, c5new})
        seg3 = next(s for s in env.segments() if s["id"] == g3)
        self.assertEqual(seg3["name"], "Staff [org-a/g3]")
        pc3 = next(c for c in env.provider_contacts() if c["id"] == c3)
        self.assertEqual((pc3["email"], pc3["first_name"], pc3["last_name"]),
                         ("c3@example.com", "Cy", "Young"))
        pc1 = next(c for c in env.provider_contacts() if c["id"] == c1)
        self.assertIs(pc1["unsubscribed"], True)     # never overridden
        self.assertEqual(self.pid(env, MEMBERSHIP, "m51"), "%s/%s" % (c5new, g1))
        self.assertEqual(self.pid(env, MEMBERSHIP, "m12"), "%s/%s" % (c1, g2new))

        # Foreign and orphaned segments and contacts: untouched.
        self.assertEqual([s for s in env.segments() if s["id"] in foreign], foreign_before)
        self.assertEqual([c for c in env.provider_contacts() if c["id"] in strangers],
                         [dict(strangers_before[0], segments=[foreign[0]]), strangers_before[1]])
        calls = env.calls(log=True)["calls"]
        touched = [c for c in calls if c["method"] != "GET" and
                   any(x in c["path"] for x in foreign + [strangers[1]])]
        self.assertEqual(touched, [])

        # Each repair says what was found and what was done, on the object concerned.
        self.assertRepaired(env, "ContactGroup", "g2", "provider group %s .* is gone" % g2,
                            "created provider group %s" % g2new)
        self.assertRepaired(env, "ContactGroup", "g3", 'named "Staff \\(renamed by hand\\)"',
                            "updated provider group %s" % g3)
        self.assertRepaired(env, MEMBERSHIP, "m12", "is gone", "added provider contact %s to "
                            "group %s" % (c1, g2new))
        self.assertRepaired(env, MEMBERSHIP, "m21", "is not in provider group %s" % g1,
                            "added provider contact %s" % c2)
        self.assertRepaired(env, "ContactGroup", "g1", "stranger@elsewhere.io, not a Contact "
                            "of this cluster", "removed it from the group")
        self.assertRepaired(env, "ContactGroup", "g3", "cy@evil.example, Contact org-a/c3",
                            "removed it from the group")
        self.assertRepaired(env, REMOVAL, "leave", "although this opt-out exists",
                            "removed provider contact %s from group %s" % (c4, g1))
        self.assertRepaired(env, "Contact", "c3", 'first name "Cyrus"',
                            "updated provider contact %s" % c3)
        self.assertRepaired(env, "Contact", "c5", "is in none of the 2 provider group",
                            "created provider contact %s" % c5new)
        for m in ("m51", "m53"):
            self.assertRepaired(env, MEMBERSHIP, m, "gone from provider group .* with its "
                                "contact", "added provider contact %s" % c5new)
        self.assertRepaired(env, "Contact", "c1", "unsubscribed at the provider; not "
                            "overridden", ".")
        c1obj = env.get("Contact", NS, "c1")
        self.assertEqual(condition(c1obj, "ProviderUnsubscribed")["status"], "True")
        self.assertEqual(condition(c1obj, "Ready")["status"], "True")
        # Objects without drift got no such Event.
        for kind, name in (("Contact", "c2"), (MEMBERSHIP, "m11"), (MEMBERSHIP, "m31")):
            self.assertEqual(self.drift_events(env, kind, name), [])

        m = self.metric_values(rec, "milo_provider_drift_repaired_total")
        counts = {re.search(r'kind="([a-z_]+)"', k).group(1): v for k, v in m.items()}
        self.assertEqual(counts, {"segment_missing": 1, "segment_renamed": 1,
                                  "member_missing": 4, "member_extra": 2,
                                  "member_opted_out": 1, "contact_changed": 1,
                                  "contact_missing": 1, "contact_unsubscribed": 1})
        last = self.metric_values(rec, "milo_provider_audit_last_success_timestamp_seconds")
        self.assertGreater(list(last.values())[0], time.time() - 60)
        hist = self.metric_values(rec, "milo_provider_audit_duration_seconds_count")
        self.assertGreaterEqual(list(hist.values())[0], 3)
        # Every status write passed the CRDs' schemas and rules.
        self.assertEqual(env.kube_refusals(), [])
        self.assertEqual(rec.stop(), 0, rec.log_tail())

    def test_unsubscribed_is_recorded_once(self):
        """Not overridden, not recorded again by the next audits."""
        env = Env(self)
        rec = env.reconciler(args=PERIOD)
        self.converge(env, {"g1": ("G", "public")}, {"c1": ("c1@example.com", None, None)},
                      {"m1": ("c1", "g1")})
        c1 = self.pid(env, "Contact", "c1")
        env.resend.control("drift", {"op": "updateContact", "contact": c1,
                                     "changes": {"unsubscribed": True}})
        since = env.calls()["next"]
        self.assertEqual(self.next_audit(rec)["driftMarked"], 1)
        env.wait_condition("Contact", NS, "c1", "ProviderUnsubscribed", "True", "Unsubscribed",
                           current=False)
        for _ in range(2):
            self.assertEqual(self.next_audit(rec)["driftMarked"], 0)
        self.assertEqual(len(self.drift_events(env, "Contact", "c1")), 1)
        writes = [c for c in env.calls(since, log=True)["calls"] if c["method"] != "GET"]
        self.assertEqual(writes, [])
        self.assertEqual(rec.stop(), 0, rec.log_tail())


class TestCost(Base):
    def test_a_converged_audit_only_lists_in_pages_of_100(self):
        env = Env(self)
        rec = env.reconciler(args=PERIOD, rate=500)
        foreign = env.resend.control("seed", {"segments": [{"name": "Marketing"},
                                                            {"name": "X [org-a/orphan]"}]})
        env.resend.control("seed", {"contacts": [
            {"email": "f%03d@elsewhere.io" % i, "segments": foreign["segments"]}
            for i in range(130)]})
        contacts = {"c%03d" % i: ("c%03d@example.com" % i, "N%d" % i, None) for i in range(150)}
        memberships = {"m%03d" % i: ("c%03d" % i, "big") for i in range(150)}
        memberships.update({"s%03d" % i: ("c%03d" % i, "small") for i in range(5)})
        self.converge(env, {"big": ("Big", "public"), "small": ("Small", "public"),
                            "empty": ("Empty", "private")}, contacts, memberships)
        self.next_audit(rec)
        state = env.provider()
        since = env.calls()["next"]
        kube_since = env.kube_requests()["next"]
        for _ in range(2):
            a = self.next_audit(rec)
            self.assertEqual((a["driftMarked"], a["membersRemoved"], a["membersRead"]),
                             (0, 0, 155), a)
        calls = env.calls(since, log=True)["calls"]
        self.assertEqual({c["method"] for c in calls}, {"GET"})
        ours = {self.pid(env, "ContactGroup", g) for g in ("big", "small", "empty")}
        per_audit = {}
        for c in calls:
            self.assertEqual(c["query"].get("limit"), "100", c)
            key = c["route"] + ("?segment_id=" + c["query"]["segment_id"]
                                if "segment_id" in c["query"] else "")
            per_audit[key] = per_audit.get(key, 0) + 1
            self.assertIn(c["route"], ("/segments", "/contacts"))
            if c["route"] == "/contacts":
                self.assertIn(c["query"]["segment_id"], ours)   # never a foreign one
        # Two audits: 5 segments in one page; 150 members in two pages, the others one.
        big, small, empty = (self.pid(env, "ContactGroup", g) for g in ("big", "small", "empty"))
        self.assertEqual(per_audit, {"/segments": 2, "/contacts?segment_id=" + big: 4,
                                     "/contacts?segment_id=" + small: 2,
                                     "/contacts?segment_id=" + empty: 2})
        # No API server writes either.
        writes = [r for r in env.kube_requests(kube_since)["items"]
                  if r["method"] in ("PUT", "PATCH", "POST", "DELETE")]
        self.assertEqual(writes, [])
        self.assertEqual(env.provider()["segments"], state["segments"])
        self.assertEqual(rec.stop(), 0, rec.log_tail())

    def test_reconciles_go_first(self):
        """While keys are queued or being worked on, the audit sends nothing."""
        env = Env(self)
        rec = env.reconciler(args=["--provider-audit-period", "500ms", "--workers", "1"])
        self.converge(env, {"g1": ("G", "public")}, {"c0": ("c0@example.com", None, None)},
                      {"m0": ("c0", "g1")})
        self.next_audit(rec)
        env.resend.control("faults", {"kind": "delay", "seconds": 0.25, "method": "POST",
                                      "route": "/contacts"})
        since = env.calls()["next"]
        for i in range(1, 13):
            env.contact(NS, "c%d" % i, "c%d@example.com" % i)
        for i in range(1, 13):
            env.wait_ready("Contact", NS, "c%d" % i)
        calls = env.calls(since, log=True)["calls"]
        posts = [c["seq"] for c in calls if c["method"] == "POST"]
        self.assertEqual(len(posts), 12)
        audit_calls = [c["seq"] for c in calls if c["method"] == "GET" and
                       c["route"] in ("/segments", "/contacts")]
        during = [s for s in audit_calls if posts[0] < s < posts[-1]]
        # Three seconds of reconciles with an audit due every 0.5 s: at most the one
        # request an audit had already decided to send when the first key arrived.
        self.assertLessEqual(len(during), 1, (posts, audit_calls))
        self.next_audit(rec)     # and audits go on once the queue is empty
        self.assertEqual(rec.stop(), 0, rec.log_tail())


class TestCrash(Base):
    def test_an_audit_killed_midway_is_finished_after_restart(self):
        env = Env(self)
        rec = env.reconciler(args=PERIOD, rate=200)
        groups = {"g%d" % i: ("Group %d" % i, "public") for i in range(3)}
        contacts = {"c%02d" % i: ("c%02d@example.com" % i, None, None) for i in range(20)}
        memberships = {"m%d-%02d" % (g, i): ("c%02d" % i, "g%d" % g)
                       for g in range(3) for i in range(20)}
        self.converge(env, groups, contacts, memberships)
        gids = {g: self.pid(env, "ContactGroup", g) for g in groups}
        cids = {c: self.pid(env, "Contact", c) for c in contacts}
        self.next_audit(rec)
        # g0 is deleted, ten members leave g1 and g2 each: every member listing is slow,
        # so the audit is killed between its first marks and its last.
        env.resend.control("drift", {"op": "deleteSegment", "segment": gids["g0"]})
        for i in range(10):
            for g in ("g1", "g2"):
                env.resend.control("drift", {"op": "removeMember", "contact": cids["c%02d" % i],
                                             "segment": gids[g]})
        env.resend.control("faults", {"kind": "delay", "seconds": 1.0, "method": "GET",
                                      "route": "/contacts"})
        started = len(audits(rec, "provider audit started"))
        wait_for(lambda: [x for x in rec.logs() if x.get("msg") == "provider drift found"
                          and x.get("drift") == "SegmentMissing"], 30, "the first mark")
        rec.kill()
        self.assertEqual(len(audits(rec, "provider audit started")), started + 1)
        self.assertEqual(len(audits(rec)), started)      # killed before it finished
        env.resend.control("faults", method="DELETE")
        rec.start()

        def whole():
            g0 = env.get("ContactGroup", NS, "g0")["status"].get("providerID")
            if not g0 or g0 == gids["g0"]:
                return False
            want = set(cids.values())
            return all(self.members(env, sid) == want
                       for sid in (g0, gids["g1"], gids["g2"]))
        wait_for(whole, 60, "every member back in every group")
        after = self.next_audit(rec)
        self.assertEqual((after["driftMarked"], after["membersRemoved"]), (0, 0), after)
        for g in groups:
            env.wait_ready("ContactGroup", NS, g)
        for m in memberships:
            obj = env.wait_ready(MEMBERSHIP, NS, m)
            c = condition(obj, "ProviderDrift")
            self.assertTrue(c is None or c["status"] == "False", obj["status"])
        self.assertEqual(rec.stop(), 0, rec.log_tail())


    LEASE = ["--leader-elect-lease-duration", "6s", "--leader-elect-renew-deadline", "4s",
             "--leader-elect-retry-period", "1s", "--provider-audit-period", "1s"]

    def test_only_the_leader_audits_and_a_new_leader_takes_over(self):
        env = Env(self)
        env.resend.control("config", {"apiKeys": ["re_key_a", "re_key_b"]})
        recs = {"a": env.reconciler("a", leader_elect=True, args=self.LEASE, api_key="re_key_a",
                                    token="token-a"),
                "b": env.reconciler("b", leader_elect=True, args=self.LEASE, api_key="re_key_b",
                                    token="token-b")}

        def holder():
            spec = (env.lease() or {}).get("spec") or {}
            for name, r in recs.items():
                ident = [x.get("identity") for x in r.logs()
                         if x.get("msg") == "contact-reconciler started"]
                if ident and spec.get("holderIdentity") == ident[-1]:
                    return name
            return None
        leader = recs[wait_for(holder, 15, "a leader")]
        follower = recs["b" if leader is recs["a"] else "a"]
        self.converge(env, {"g1": ("G", "public")},
                      {"c%d" % i: ("c%d@example.com" % i, None, None) for i in range(5)},
                      {"m%d" % i: ("c%d" % i, "g1") for i in range(5)})
        self.next_audit(leader)
        self.assertEqual(audits(follower, "provider audit started"), [])
        keys = {c["headers"]["authorization"] for c in env.calls(log=True)["calls"]}
        self.assertEqual(keys, {"Bearer " + leader.api_key})
        # The segment goes, and so does the leader: the new one audits and repairs.
        sid = self.pid(env, "ContactGroup", "g1")
        env.resend.control("drift", {"op": "deleteSegment", "segment": sid})
        leader.kill()
        since = env.calls()["next"]
        wait_for(lambda: holder() is not None and recs[holder()] is follower, 20,
                 "the follower to lead")
        found = self.next_audit(follower, 20)
        self.assertEqual(found["driftMarked"], 6, found)     # the group and its 5 members
        wait_for(lambda: (self.pid(env, "ContactGroup", "g1") or sid) != sid and
                 len(self.members(env, self.pid(env, "ContactGroup", "g1")) or ()) == 5,
                 20, "the segment and its members back")
        keys = {c["headers"]["authorization"] for c in env.calls(since, log=True)["calls"]}
        self.assertEqual(keys, {"Bearer " + follower.api_key})
        self.assertEqual(follower.stop(), 0, follower.log_tail())


class TestOff(Base):
    def test_flag(self):
        import subprocess

        def run(*args):
            return subprocess.run([h.binary()] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=10, text=True)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"--provider-audit-period duration .*\n(.*\n)*.*"
                         r"\(default 1h\)")
        for bad in ("-1s", "soon", "8d", ""):
            r = run("--provider-audit-period", bad)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn("--provider-audit-period", r.stderr)

    def test_period_zero_turns_audits_off(self):
        env = Env(self)
        rec = env.reconciler(args=["--provider-audit-period", "0"])
        self.converge(env, {"g1": ("G", "public")}, {"c1": ("c1@example.com", None, None)},
                      {"m1": ("c1", "g1")})
        sid = self.pid(env, "ContactGroup", "g1")
        env.resend.control("drift", {"op": "deleteSegment", "segment": sid})
        since = env.calls()["next"]
        time.sleep(2.5)
        self.assertEqual(env.calls(since)["total"], since - 1)
        self.assertEqual(audits(rec, "provider audit started"), [])
        self.assertFalse(rec.log_has("provider audits on"))
        # The metrics exist all the same (an alert on the last success sees 0).
        self.assertEqual(list(self.metric_values(
            rec, "milo_provider_audit_last_success_timestamp_seconds").values()), [0.0])
        self.assertEqual(rec.stop(), 0, rec.log_tail())


if __name__ == "__main__":
    unittest.main()
