"""test_optouts.py -- opt-outs always win, whatever order the events arrive in.

The real contact-reconciler against the Kubernetes and Resend stand-ins.
The Kubernetes stand-in delays one kind's initial list (`latency` with
"request": "list") or delivers one kind's watch events late (`watch-delay`),
so the reconciler sees the kinds in every order; removals are also created
before their memberships, through the API directly (the webhook refuses
that order). Every scenario ends with the same two checks: no
ContactGroupMembership beside a removal from a public group, and no
opted-out contact in its provider segment.
"""

import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reconciler_harness as h  # noqa: E402
from reconciler_harness import Env, condition, wait_for  # noqa: E402

MEMBERSHIP = "ContactGroupMembership"
REMOVAL = "ContactGroupMembershipRemoval"
LIST_PREFIX = "/apis/%s/%s/" % (h.GROUP, h.VERSION)


setUpModule = h.module_setup
tearDownModule = h.cleanup_certs


def all_of(env, kind):
    """Every object of kind in every namespace."""
    return env.kube_request("GET", LIST_PREFIX + h.PLURALS[kind]).get("items") or []


def pair_of(obj):
    s = obj["spec"]
    ns = obj["metadata"]["namespace"]
    return ((s["contactRef"].get("namespace") or ns), s["contactRef"]["name"],
            (s["contactGroupRef"].get("namespace") or ns), s["contactGroupRef"]["name"])


class Base(unittest.TestCase):
    maxDiff = None

    def assertOptOutsHonoured(self, env, timeout=60):
        """Waits for every removal to settle, then checks both invariants."""
        def settled():
            for r in all_of(env, REMOVAL):
                c = condition(r, "Ready")
                if not c or c.get("observedGeneration") != r["metadata"]["generation"]:
                    return False
                if c["reason"] not in ("Removed", "Rejected"):
                    return False
            return True
        wait_for(settled, timeout, "every removal to settle")
        groups = {(g["metadata"]["namespace"], g["metadata"]["name"]): g
                  for g in all_of(env, "ContactGroup")}
        public_removals = set()
        for r in all_of(env, REMOVAL):
            p = pair_of(r)
            g = groups.get((p[2], p[3]))
            if g and g["spec"]["visibility"] == "public":
                public_removals.add(p)
        # No membership beside a public removal (the ones being deleted go soon).
        wait_for(lambda: not [m for m in all_of(env, MEMBERSHIP)
                              if pair_of(m) in public_removals],
                 timeout, "the memberships of opted-out pairs to be gone")
        # No opted-out contact in its segment.
        contacts = {(c["metadata"]["namespace"], c["metadata"]["name"]): c
                    for c in all_of(env, "Contact")}
        by_email = {pc["email"].lower(): pc["id"] for pc in env.provider_contacts()}
        segments = {s["id"]: set(s["contacts"]) for s in env.segments()}
        for p in public_removals:
            c = contacts.get((p[0], p[1]))
            g = groups.get((p[2], p[3]))
            sid = (g.get("status") or {}).get("providerID")
            cid = by_email.get(c["spec"]["email"].lower()) if c else None
            if sid and cid:
                self.assertNotIn(cid, segments.get(sid, set()),
                                 "%s/%s opted out of %s/%s but is in segment %s"
                                 % (p[0], p[1], p[2], p[3], sid))
        return public_removals

    def stop_ok(self, rec):
        self.assertEqual(rec.stop(), 0, rec.log_tail())


class TestOrder(Base):
    def seed(self, env, ns, n, visibility="public"):
        env.group(ns, "news", "News " + ns, visibility)
        for i in range(n):
            env.contact(ns, "c%d" % i, "c%d@%s.example" % (i, ns))
        env.wait_ready("ContactGroup", ns, "news")
        for i in range(n):
            env.wait_ready("Contact", ns, "c%d" % i)

    def test_membership_then_removal_while_down_each_list_slow(self):
        """The issue's run: 13 of 32 opt-outs lost when the membership list was slow."""
        env = Env(self)
        rec = env.reconciler(args=["--workers", "4"])
        n = 6
        for round_, kind in enumerate(("ContactGroupMembership",
                                       "ContactGroupMembershipRemoval", "Contact",
                                       "ContactGroup")):
            ns = "slow-%d" % round_
            self.seed(env, ns, n)
            self.stop_ok(rec)
            for i in range(n):
                env.membership(ns, "m%d" % i, "c%d" % i, "news")
            for i in range(n):
                env.removal(ns, "r%d" % i, "c%d" % i, "news")
            env.kube.control("latency", {"seconds": 3, "request": "list",
                                         "pathPrefix": LIST_PREFIX + h.PLURALS[kind]})
            rec.start()
            self.assertOptOutsHonoured(env)
            env.kube.control("latency", {"seconds": 0, "request": "list",
                                         "pathPrefix": LIST_PREFIX + h.PLURALS[kind]})
            for i in range(n):
                r = env.get(REMOVAL, ns, "r%d" % i)
                self.assertEqual(r["status"].get("membershipsRemoved"), 1, r["status"])
        # While waiting for the slow list, /readyz said which cache it waited for.
        self.assertTrue(rec.log_has("caches synced"))
        self.stop_ok(rec)

    def test_readyz_names_the_cache_it_waits_for(self):
        env = Env(self)
        env.kube.control("latency", {"seconds": 4, "request": "list",
                                     "pathPrefix": LIST_PREFIX + "contactgroupmemberships"})
        rec = env.reconciler(start=False)
        rec.start(wait_ready=False)
        body = wait_for(lambda: (lambda r: r[0] == 500 and r[1])(rec.https("GET", "/readyz")),
                        10, "/readyz to answer")
        self.assertEqual(body, "not ready: waiting for the contactgroupmemberships cache "
                               "to sync")
        rec.wait_ready()
        self.stop_ok(rec)

    def test_removal_in_the_same_second_as_the_membership(self):
        env = Env(self)
        rec = env.reconciler(args=["--workers", "4"])
        n = 8
        self.seed(env, "same", n)
        for i in range(n):
            env.membership("same", "m%d" % i, "c%d" % i, "news")
            env.removal("same", "r%d" % i, "c%d" % i, "news")
        self.assertOptOutsHonoured(env)
        self.stop_ok(rec)

    def test_removal_before_membership(self):
        """The webhook refuses this order; through the API the removal still wins."""
        env = Env(self)
        rec = env.reconciler()
        self.seed(env, "first", 2)
        cid = env.get("Contact", "first", "c0")["status"]["providerID"]
        sid = env.get("ContactGroup", "first", "news")["status"]["providerID"]
        env.removal("first", "r0", "c0", "news")
        r = env.wait_condition(REMOVAL, "first", "r0", "Ready", "True", "Removed")
        self.assertEqual(r["status"].get("membershipsRemoved"), 0)
        since = env.calls()["total"]
        env.membership("first", "m0", "c0", "news")
        env.wait_gone(MEMBERSHIP, "first", "m0")
        self.assertOptOutsHonoured(env)
        r = env.wait_condition(REMOVAL, "first", "r0", "Ready", "True", "Removed")
        self.assertEqual(r["status"]["membershipsRemoved"], 1)
        # The contact was never added to the segment.
        added = [c for c in env.calls(since=since + 1, log=True)["calls"]
                 if c["method"] == "POST" and c["path"] == "/contacts/%s/segments/%s"
                 % (cid, sid)]
        self.assertEqual(added, [])
        notes = [e["note"] for e in env.events("first", REMOVAL, "r0")
                 if e["reason"] == "Removed"]
        self.assertIn("the contact opted out: 1 membership(s) deleted now, 1 in all; the "
                      "contact is out of the provider group", notes)
        # The other contact is unaffected.
        env.membership("first", "m1", "c1", "news")
        env.wait_ready(MEMBERSHIP, "first", "m1")
        self.stop_ok(rec)

    def test_removal_events_arrive_late(self):
        """The membership is added before the removal reaches the cache; it is undone."""
        env = Env(self)
        rec = env.reconciler()
        self.seed(env, "late", 3)
        env.kube.control("watch-delay", {"seconds": 2, "pathPrefix": LIST_PREFIX +
                                         "contactgroupmembershipremovals"})
        for i in range(3):
            env.membership("late", "m%d" % i, "c%d" % i, "news")
            env.removal("late", "r%d" % i, "c%d" % i, "news")
        self.assertOptOutsHonoured(env)
        env.kube.control("watch-delay", {"seconds": 0, "pathPrefix": LIST_PREFIX +
                                         "contactgroupmembershipremovals"})
        self.stop_ok(rec)

    def test_membership_events_arrive_late(self):
        env = Env(self)
        rec = env.reconciler()
        self.seed(env, "mlate", 3)
        env.kube.control("watch-delay", {"seconds": 2, "pathPrefix": LIST_PREFIX +
                                         "contactgroupmemberships"})
        for i in range(3):
            env.removal("mlate", "r%d" % i, "c%d" % i, "news")
        for i in range(3):
            env.wait_condition(REMOVAL, "mlate", "r%d" % i, "Ready", "True", "Removed")
        for i in range(3):
            env.membership("mlate", "m%d" % i, "c%d" % i, "news")
        for i in range(3):
            env.wait_gone(MEMBERSHIP, "mlate", "m%d" % i, timeout=60)
        self.assertOptOutsHonoured(env)
        self.stop_ok(rec)

    def test_pair_left_behind_by_an_older_version(self):
        """A settled removal beside a settled membership (the bug's aftermath) is repaired."""
        env = Env(self)
        rec = env.reconciler()
        self.seed(env, "old", 1)
        env.membership("old", "m0", "c0", "news")
        env.wait_ready(MEMBERSHIP, "old", "m0")
        self.stop_ok(rec)
        r = env.removal("old", "r0", "c0", "news")
        # What the older version wrote: Removed, settled, the membership left.
        r["status"] = {"observedGeneration": 1, "conditions": [
            {"type": t, "status": "True", "reason": "Removed", "message": "old",
             "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t in ("Ready", "ProviderSynced")]}
        env.kube_request("PUT", env.path(REMOVAL, "old", "r0", "status"), r)
        rec.start()
        env.wait_gone(MEMBERSHIP, "old", "m0")
        self.assertOptOutsHonoured(env)
        self.stop_ok(rec)

    def test_private_group_keeps_its_members(self):
        env = Env(self)
        rec = env.reconciler()
        self.seed(env, "priv", 1, visibility="private")
        env.membership("priv", "m0", "c0", "news")
        env.removal("priv", "r0", "c0", "news")
        env.wait_condition(REMOVAL, "priv", "r0", "Ready", "False", "Rejected")
        env.wait_ready(MEMBERSHIP, "priv", "m0")
        self.assertEqual(self.assertOptOutsHonoured(env), set())
        self.stop_ok(rec)


class TestCrashes(Base):
    def test_sigkill_during_initial_sync(self):
        """5 SIGKILLs at random moments while 200 contacts, 20 groups, 400
        memberships and 40 removals sync for the first time."""
        rng = random.Random(int(os.environ.get("MILO_TEST_SEED", "16")))
        env = Env(self)
        ns_of = ["crash-%d" % (i % 4) for i in range(200)]
        for g in range(20):
            env.group("crash-%d" % (g % 4), "g%d" % g, "Group %d" % g,
                      "public" if g % 5 else "private")
        for c in range(200):
            env.contact(ns_of[c], "c%d" % c, "c%d@crash.example" % c)
        pairs = set()
        while len(pairs) < 400:
            c = rng.randrange(200)
            g = rng.choice([g for g in range(20) if g % 4 == c % 4])
            pairs.add((c, g))
        pairs = sorted(pairs)
        for c, g in pairs:
            env.membership(ns_of[c], "c%d-g%d" % (c, g), "c%d" % c, "g%d" % g)
        public = [(c, g) for c, g in pairs if g % 5]
        for c, g in rng.sample(public, 40):
            env.removal(ns_of[c], "c%d-out-g%d" % (c, g), "c%d" % c, "g%d" % g)
        rec = env.reconciler(args=["--workers", "4"], rate=200, start=False)
        rec.start(wait_ready=False)
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 3.0))
            rec.kill()
            rec.start(wait_ready=False)
        rec.wait_ready(60)
        out = self.assertOptOutsHonoured(env, timeout=180)
        self.assertEqual(len(out), 40)
        # Everything else converged: the other memberships are Ready and in their segments.
        def members_ready():
            ms = all_of(env, MEMBERSHIP)
            return len(ms) == 360 and all(
                (condition(m, "Ready") or {}).get("status") == "True" for m in ms)
        wait_for(members_ready, 180, "the 360 other memberships to be Ready")
        in_segments = sum(len(s["contacts"]) for s in env.segments())
        self.assertEqual(in_segments, 360)
        self.stop_ok(rec)


if __name__ == "__main__":
    unittest.main()
