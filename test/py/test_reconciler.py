"""test_reconciler.py -- the real contact-reconciler against the Kubernetes and Resend stand-ins.

Run with: python3 -m unittest discover -s test/py -p 'test_*.py'
(MILO_RECONCILER_BIN=build/<dir>/contact-reconciler picks the binary; the
default is build/default/contact-reconciler). Each test starts its own
stand-ins (in-process) and reconciler process(es); every wait is bounded.
MILO_KEEP_LOGS=1 keeps the reconcilers' JSON-line logs.
"""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reconciler_harness as h  # noqa: E402
from reconciler_harness import Env, MEMBERSHIP, REMOVAL, condition, wait_for  # noqa: E402

NS = "org-a"


setUpModule = h.module_setup
tearDownModule = h.cleanup_certs


class Base(unittest.TestCase):
    maxDiff = None

    def env(self, **kw):
        return Env(self, **kw)

    def assertConditions(self, obj, status, reason=None):
        gen = obj["metadata"]["generation"]
        self.assertEqual(obj["status"].get("observedGeneration"), gen)
        for t in ("Ready", "ProviderSynced"):
            c = condition(obj, t)
            self.assertIsNotNone(c, "%s missing in %s" % (t, obj["status"]))
            self.assertEqual(c["status"], status, c)
            self.assertEqual(c["observedGeneration"], gen, c)
            if reason is not None:
                self.assertEqual(c["reason"], reason, c)
            self.assertTrue(c.get("lastTransitionTime"), c)

    def assertFinalizer(self, obj, kind):
        self.assertIn(h.FINALIZERS[kind], obj["metadata"].get("finalizers") or [])

    def segment(self, env, sid):
        return next((s for s in env.segments() if s["id"] == sid), None)

    def pcontact(self, env, cid):
        return next((c for c in env.provider_contacts() if c["id"] == cid), None)

    def sync_pair(self, env, ns, contact="c1", group="g1", email="c1@example.com",
                  display="Group One", visibility="public", membership="m1"):
        """A synced group, contact and (optionally) membership -> (segment id, contact id)."""
        env.group(ns, group, display, visibility)
        env.contact(ns, contact, email, "Ada", "Lovelace")
        g = env.wait_ready("ContactGroup", ns, group)
        c = env.wait_ready("Contact", ns, contact)
        if membership:
            env.membership(ns, membership, contact, group)
            env.wait_ready(MEMBERSHIP, ns, membership)
        return g["status"]["providerID"], c["status"]["providerID"]

    def stop_ok(self, rec):
        """SIGTERM -> exit 0; the log is JSON lines and never shows the API key."""
        self.assertEqual(rec.stop(), 0, rec.log_tail())
        lines = rec.logs()
        self.assertTrue(lines)
        self.assertEqual([x for x in lines if "raw" in x], [])
        self.assertTrue(all("msg" in x and "level" in x for x in lines))
        self.assertNotIn(rec.api_key, rec.log_text())


class TestFlags(unittest.TestCase):
    def run_bin(self, *args):
        return subprocess.run([h.binary()] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=10, text=True)

    def test_help_and_bad_lease_durations(self):
        r = self.run_bin("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--resend-rate-limit", "--resync-period", "--leader-elect-lease-duration",
                     "--leader-elect-renew-deadline", "--leader-elect-retry-period",
                     "--resend-webhook-secret-file"):
            self.assertIn(flag, r.stdout)
        r = self.run_bin("--leader-elect-lease-duration", "2s")   # < renew deadline 10s
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("lease-duration", r.stderr)
        r = self.run_bin("--leader-elect-retry-period", "500ms")
        self.assertEqual(r.returncode, 2, r.stderr)


class TestGroup(Base):
    def test_create_rename_delete(self):
        env = self.env()
        rec = env.reconciler()
        env.group(NS, "admins", "Organization Admins")
        g = env.wait_ready("ContactGroup", NS, "admins")
        self.assertConditions(g, "True")
        self.assertFinalizer(g, "ContactGroup")
        sid = g["status"]["providerID"]
        self.assertEqual(self.segment(env, sid)["name"], "Organization Admins [org-a/admins]")
        self.assertEqual(len(env.segments()), 1)
        env.wait_event(NS, "ContactGroup", "admins", "GroupCreated")
        ev = env.events(NS, "ContactGroup", "admins")[0]
        self.assertEqual(ev["apiVersion"], "events.k8s.io/v1")
        self.assertEqual(ev["type"], "Normal")
        self.assertEqual(ev["regarding"]["uid"], g["metadata"]["uid"])
        self.assertEqual(ev["reportingController"],
                         "notification.miloapis.com/contact-reconciler")

        # displayName change -> PATCH /segments/{id}, same id, generation observed.
        before = env.calls()["counts"]
        env.patch_spec("ContactGroup", NS, "admins", {"displayName": "Org Admins"})
        g = env.wait_condition("ContactGroup", NS, "admins")
        self.assertEqual(g["metadata"]["generation"], 2)
        self.assertConditions(g, "True")
        self.assertEqual(g["status"]["providerID"], sid)
        self.assertEqual(self.segment(env, sid)["name"], "Org Admins [org-a/admins]")
        after = env.calls()["counts"]
        self.assertEqual(after.get("PATCH /segments/{id}", 0) -
                         before.get("PATCH /segments/{id}", 0), 1)
        self.assertEqual(after.get("POST /segments"), 1)
        self.assertEqual(len(env.segments()), 1)
        env.wait_event(NS, "ContactGroup", "admins", "GroupUpdated")

        # delete -> DELETE /segments/{id}, then the finalizer comes off.
        env.delete("ContactGroup", NS, "admins")
        env.wait_gone("ContactGroup", NS, "admins")
        self.assertEqual(env.segments(), [])
        self.assertEqual(env.calls()["counts"].get("DELETE /segments/{id}"), 1)
        env.wait_event(NS, "ContactGroup", "admins", "GroupDeleted")
        self.stop_ok(rec)


class TestContact(Base):
    def test_create_update_email_change_delete(self):
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS, email="ada@example.com")
        c = env.get("Contact", NS, "c1")
        self.assertConditions(c, "True")
        self.assertFinalizer(c, "Contact")
        pc = self.pcontact(env, cid)
        self.assertEqual((pc["email"], pc["first_name"], pc["last_name"]),
                         ("ada@example.com", "Ada", "Lovelace"))
        self.assertEqual(pc["segments"], [sid])
        env.wait_event(NS, "Contact", "c1", "ContactCreated")
        counts = env.calls()["counts"]
        self.assertEqual(counts.get("POST /contacts"), 1)

        # A name change is a PATCH of the same provider contact.
        env.patch_spec("Contact", NS, "c1", {"givenName": "Augusta"})
        c = env.wait_condition("Contact", NS, "c1")
        self.assertEqual(c["metadata"]["generation"], 2)
        self.assertEqual(c["status"]["providerID"], cid)
        self.assertEqual(self.pcontact(env, cid)["first_name"], "Augusta")
        counts = env.calls()["counts"]
        self.assertEqual(counts.get("PATCH /contacts/{contact}"), 1)
        self.assertEqual(counts.get("POST /contacts"), 1)
        self.assertNotIn("DELETE /contacts/{contact}", counts)

        # An email change moves the same provider contact; its segments stay.
        env.patch_spec("Contact", NS, "c1", {"email": "ada.l@example.com"})
        c = env.wait_condition("Contact", NS, "c1")
        self.assertEqual(c["metadata"]["generation"], 3)
        self.assertEqual(c["status"]["providerID"], cid)
        pcs = env.provider_contacts()
        self.assertEqual(len(pcs), 1, pcs)
        self.assertEqual(pcs[0]["id"], cid)
        self.assertEqual(pcs[0]["email"], "ada.l@example.com")
        self.assertEqual(pcs[0]["segments"], [sid])
        self.assertEqual(env.calls()["counts"].get("POST /contacts"), 1)
        self.assertEqual(env.get(MEMBERSHIP, NS, "m1")["status"]["providerID"],
                         "%s/%s" % (cid, sid))

        # delete -> the provider contact goes, then the finalizer.
        env.delete("Contact", NS, "c1")
        env.wait_gone("Contact", NS, "c1")
        self.assertEqual(env.provider_contacts(), [])
        env.wait_event(NS, "Contact", "c1", "ContactDeleted")
        self.stop_ok(rec)

    def test_a_shared_email_keeps_the_provider_contact(self):
        """Two Contacts with one email (admitted in the same instant, or with
        the webhook bypassed) are one provider contact: deleting one keeps it
        for the other, with its unsubscribe; deleting the last deletes it."""
        env = self.env()
        rec = env.reconciler()
        env.contact(NS, "ada", "ada@example.com", "Ada")
        cid = env.wait_ready("Contact", NS, "ada")["status"]["providerID"]
        env.contact("other", "ada2", "ADA@example.com", "Ada")
        self.assertEqual(env.wait_ready("Contact", "other", "ada2")["status"]["providerID"],
                         cid)
        env.resend.control("drift", {"op": "updateContact", "contact": cid,
                                     "changes": {"unsubscribed": True}})
        env.delete("Contact", NS, "ada")
        env.wait_gone("Contact", NS, "ada")
        ev = env.wait_event(NS, "Contact", "ada", "ProviderContactKept")[0]
        self.assertIn("Contact other/ada2 has the same email", ev["note"])
        pcs = env.provider_contacts()
        self.assertEqual([(p["id"], p["unsubscribed"]) for p in pcs], [(cid, True)], pcs)
        self.assertNotIn("DELETE /contacts/{contact}", env.calls()["counts"])
        env.delete("Contact", "other", "ada2")
        env.wait_gone("Contact", "other", "ada2")
        self.assertEqual(env.provider_contacts(), [])
        self.stop_ok(rec)

    def test_existing_provider_contact_is_adopted(self):
        env = self.env()
        seeded = env.resend.control("seed", {"contacts": [
            {"email": "grace@example.com", "first_name": "G"}]})["contacts"][0]
        rec = env.reconciler()
        env.contact(NS, "grace", "Grace@Example.com", "Grace", "Hopper")
        c = env.wait_ready("Contact", NS, "grace")
        self.assertEqual(c["status"]["providerID"], seeded)
        counts = env.calls()["counts"]
        self.assertNotIn("POST /contacts", counts)
        self.assertEqual(len(env.provider_contacts()), 1)
        self.assertEqual(self.pcontact(env, seeded)["first_name"], "Grace")
        self.stop_ok(rec)


class TestMembership(Base):
    def test_add_and_delete(self):
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS)
        m = env.get(MEMBERSHIP, NS, "m1")
        self.assertConditions(m, "True", "Added")
        self.assertFinalizer(m, MEMBERSHIP)
        self.assertEqual(self.segment(env, sid)["contacts"], [cid])
        env.wait_event(NS, MEMBERSHIP, "m1", "AddedToGroup")

        env.delete(MEMBERSHIP, NS, "m1")
        env.wait_gone(MEMBERSHIP, NS, "m1")
        self.assertEqual(self.segment(env, sid)["contacts"], [])
        self.assertEqual(self.pcontact(env, cid)["segments"], [])
        self.assertEqual(env.calls()["counts"].get(
            "DELETE /contacts/{contact}/segments/{segment}"), 1)
        env.wait_event(NS, MEMBERSHIP, "m1", "RemovedFromGroup")
        # The contact and the group are untouched.
        self.assertIsNotNone(self.segment(env, sid))
        self.assertIsNotNone(self.pcontact(env, cid))
        self.stop_ok(rec)

    def test_deleting_the_contact_deletes_its_memberships_first(self):
        # Before this, the Contact went away and its memberships stayed
        # Ready=True, naming a provider contact that no longer existed.
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS)
        env.group(NS, "g2", "Group Two")
        sid2 = env.wait_ready("ContactGroup", NS, "g2")["status"]["providerID"]
        env.membership(NS, "m2", "c1", "g2")
        env.wait_ready(MEMBERSHIP, NS, "m2")
        env.group(NS, "g3", "Group Three")
        env.wait_ready("ContactGroup", NS, "g3")
        env.removal(NS, "leave3", "c1", "g3")
        env.wait_condition(REMOVAL, NS, "leave3", "Ready", "True", "Removed")
        # another contact's membership of the same group stays
        env.contact(NS, "c2", "c2@example.com")
        cid2 = env.wait_ready("Contact", NS, "c2")["status"]["providerID"]
        env.membership(NS, "other", "c2", "g1")
        env.wait_ready(MEMBERSHIP, NS, "other")

        before = env.calls()["counts"].get("DELETE /contacts/{contact}/segments/{segment}", 0)
        env.delete("Contact", NS, "c1")
        env.wait_gone("Contact", NS, "c1", timeout=30)
        for name in ("m1", "m2"):
            self.assertIsNone(env.get(MEMBERSHIP, NS, name))
        self.assertIsNone(env.get(REMOVAL, NS, "leave3"))
        self.assertEqual(self.segment(env, sid)["contacts"], [cid2])
        self.assertEqual(self.segment(env, sid2)["contacts"], [])
        self.assertIsNone(self.pcontact(env, cid))
        self.assertEqual(env.calls()["counts"].get(
            "DELETE /contacts/{contact}/segments/{segment}") - before, 2)
        env.wait_ready(MEMBERSHIP, NS, "other")
        env.wait_event(NS, MEMBERSHIP, "m2", "RemovedFromGroup")
        env.wait_event(NS, "Contact", "c1", "ContactDeleted")
        self.stop_ok(rec)

    def test_deleting_the_group_deletes_its_memberships_first(self):
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS)
        env.contact(NS, "c2", "c2@example.com")
        env.wait_ready("Contact", NS, "c2")
        env.membership(NS, "m2", "c2", "g1")
        env.wait_ready(MEMBERSHIP, NS, "m2")

        env.delete("ContactGroup", NS, "g1")
        env.wait_gone("ContactGroup", NS, "g1", timeout=30)
        for name in ("m1", "m2"):
            self.assertIsNone(env.get(MEMBERSHIP, NS, name))
        self.assertIsNone(self.segment(env, sid))
        self.assertEqual(self.pcontact(env, cid)["segments"], [])
        self.assertIsNotNone(env.get("Contact", NS, "c2"))
        self.stop_ok(rec)

    def test_waits_for_its_contact_and_group(self):
        env = self.env()
        rec = env.reconciler()
        env.membership(NS, "early", "c9", "g9")
        m = env.wait_condition(MEMBERSHIP, NS, "early", "Ready", "False", "Waiting")
        self.assertIn("does not exist", condition(m, "Ready")["message"])
        env.group(NS, "g9", "Nine")
        env.contact(NS, "c9", "nine@example.com")
        m = env.wait_ready(MEMBERSHIP, NS, "early", timeout=30)
        g = env.get("ContactGroup", NS, "g9")
        self.assertEqual(self.segment(env, g["status"]["providerID"])["contacts"],
                         [env.get("Contact", NS, "c9")["status"]["providerID"]])
        self.stop_ok(rec)


class TestRemoval(Base):
    def test_public_group(self):
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS)
        env.removal(NS, "leave", "c1", "g1")
        r = env.wait_condition(REMOVAL, NS, "leave", "Ready", "True", "Removed")
        self.assertConditions(r, "True", "Removed")
        env.wait_gone(MEMBERSHIP, NS, "m1")
        self.assertEqual(self.segment(env, sid)["contacts"], [])
        env.wait_event(NS, REMOVAL, "leave", "Removed")

        # No membership at all, but the provider has the contact in the segment.
        env.group(NS, "g2", "Group Two")
        sid2 = env.wait_ready("ContactGroup", NS, "g2")["status"]["providerID"]
        code = self.provider_add(env, cid, sid2)
        self.assertEqual(code, 200)
        self.assertEqual(self.segment(env, sid2)["contacts"], [cid])
        env.removal(NS, "leave2", "c1", "g2")
        env.wait_condition(REMOVAL, NS, "leave2", "Ready", "True", "Removed")
        self.assertEqual(self.segment(env, sid2)["contacts"], [])
        self.stop_ok(rec)

    @staticmethod
    def provider_add(env, cid, sid):
        return h.http_request(env.resend.url, "POST", "/contacts/%s/segments/%s" % (cid, sid),
                              headers={"Authorization": "Bearer " + h.API_KEY,
                                       "User-Agent": "test/1"}, timeout=5)[0]

    def test_private_group_is_rejected(self):
        env = self.env()
        rec = env.reconciler()
        sid, cid = self.sync_pair(env, NS, display="Staff", visibility="private")
        env.removal(NS, "leave", "c1", "g1")
        r = env.wait_condition(REMOVAL, NS, "leave", "Ready", "False", "Rejected")
        self.assertIn("private", condition(r, "Ready")["message"])
        self.assertEqual(r["status"]["observedGeneration"], 1)
        env.wait_event(NS, REMOVAL, "leave", "Rejected")
        self.assertIsNotNone(env.get(MEMBERSHIP, NS, "m1"))
        self.assertEqual(self.segment(env, sid)["contacts"], [cid])
        self.assertNotIn("DELETE /contacts/{contact}/segments/{segment}",
                         env.calls()["counts"])
        self.stop_ok(rec)


class TestStatusFitsTheCRDs(Base):
    def test_every_status_write_passes_the_schema_and_rules(self):
        """With the project's CRDs stored, the stand-in checks every status the
        reconciler writes against their schemas and CEL rules (as a cluster
        does): a whole life cycle gets no 422."""
        env = self.env()
        env.store_crds()
        rec = env.reconciler()
        self.sync_pair(env, NS)
        self.sync_pair(env, NS, contact="c2", group="g2", email="c2@example.com",
                       display="Staff", visibility="private", membership="m2")
        env.removal(NS, "leave", "c1", "g1")
        env.wait_condition(REMOVAL, NS, "leave", "Ready", "True", "Removed")
        env.removal(NS, "stay", "c2", "g2")
        env.wait_condition(REMOVAL, NS, "stay", "Ready", "False", "Rejected")
        env.delete("Contact", NS, "c2")
        env.wait_gone("Contact", NS, "c2")
        self.assertEqual(env.kube_refusals(), [])
        self.stop_ok(rec)


class TestCrashRestart(Base):
    def test_crash_between_provider_create_and_status_write(self):
        env = self.env()
        # Every status write of this group and contact fails: the provider objects are
        # made, the status never says so.
        for kind, name in (("ContactGroup", "g1"), ("Contact", "c1")):
            env.kube.control("fail", {"pathPrefix": Env.path(kind, NS, name, "status"),
                                      "method": "PUT", "code": 500,
                                      "message": "etcd is on fire"})
        rec = env.reconciler()
        env.group(NS, "g1", "Group One")
        env.contact(NS, "c1", "c1@example.com", "Ada")
        wait_for(lambda: env.calls()["counts"].get("POST /segments") == 1 and
                 env.calls()["counts"].get("POST /contacts") == 1, 20,
                 "the provider creates")
        # Let the retry look again at least once (it must adopt, not create).
        wait_for(lambda: env.calls()["counts"].get("GET /segments", 0) >= 2 and
                 env.calls()["counts"].get("GET /contacts/{contact}", 0) >= 2, 20,
                 "a retry of both")
        rec.kill()
        self.assertFalse(env.get("ContactGroup", NS, "g1").get("status", {}).get("providerID"))
        env.kube.control("fail", {"clear": True})
        rec.start()
        g = env.wait_ready("ContactGroup", NS, "g1")
        c = env.wait_ready("Contact", NS, "c1")
        segs = env.segments_named(" [org-a/g1]")
        self.assertEqual([s["id"] for s in segs], [g["status"]["providerID"]])
        pcs = env.provider_contacts("c1@example.com")
        self.assertEqual([p["id"] for p in pcs], [c["status"]["providerID"]])
        counts = env.calls()["counts"]
        self.assertEqual(counts.get("POST /segments"), 1, counts)
        self.assertEqual(counts.get("POST /contacts"), 1, counts)
        self.stop_ok(rec)

    def test_lost_reply_on_create_makes_no_duplicate(self):
        env = self.env()
        # The provider makes the segment and the contact, then the reply is lost.
        env.resend.control("faults", {"kind": "error", "status": 503, "afterApply": True,
                                      "method": "POST", "route": "/segments", "count": 1})
        env.resend.control("faults", {"kind": "drop", "afterApply": True,
                                      "method": "POST", "route": "/contacts", "count": 1})
        rec = env.reconciler()
        env.group(NS, "g1", "Group One")
        env.contact(NS, "c1", "c1@example.com")
        g = env.wait_ready("ContactGroup", NS, "g1")
        c = env.wait_ready("Contact", NS, "c1")
        self.assertEqual([s["id"] for s in env.segments()], [g["status"]["providerID"]])
        self.assertEqual([p["id"] for p in env.provider_contacts()],
                         [c["status"]["providerID"]])
        self.assertEqual(env.calls()["countsByStatus"]["POST /segments"], {"503": 1})
        env.wait_event(NS, "ContactGroup", "g1", "GroupAdopted")
        self.stop_ok(rec)

    def test_seeded_segment_is_adopted(self):
        env = self.env()
        sid = env.resend.control("seed", {"segments": [
            {"name": "Old Name [org-a/g2]"}, {"name": "Someone else [org-b/g2]"}]})["segments"][0]
        rec = env.reconciler()
        env.group(NS, "g2", "New Name")
        g = env.wait_ready("ContactGroup", NS, "g2")
        self.assertEqual(g["status"]["providerID"], sid)
        self.assertEqual(self.segment(env, sid)["name"], "New Name [org-a/g2]")
        self.assertEqual(len(env.segments()), 2)
        self.assertNotIn("POST /segments", env.calls()["counts"])
        env.wait_event(NS, "ContactGroup", "g2", "GroupAdopted")
        self.stop_ok(rec)


class TestProviderFailures(Base):
    def test_thirty_percent_failures_converge(self):
        env = self.env()
        # 30% of calls fail: half of them after the provider did the work (a lost
        # reply), the others before.
        env.resend.control("faults", {"kind": "error", "status": 503, "afterApply": True,
                                      "fraction": 0.15, "seed": 11})
        env.resend.control("faults", {"kind": "error", "status": 500,
                                      "fraction": 0.1765, "seed": 12})
        rec = env.reconciler(args=["--workers", "4"])
        groups, contacts, pairs = env.grid(NS)
        for g in groups:
            env.wait_ready("ContactGroup", NS, g, timeout=60)
        for c in contacts:
            env.wait_ready("Contact", NS, c, timeout=60)
        for c, g in pairs:
            env.wait_ready(MEMBERSHIP, NS, "%s-%s" % (c, g), timeout=60)
        # Now changes under the same faults: removals, a delete, a rename.
        env.removal(NS, "c0-leaves-g0", "c0", "g0")
        env.removal(NS, "c1-leaves-g1", "c1", "g1")
        env.delete(MEMBERSHIP, NS, "c2-g0")
        env.patch_spec("ContactGroup", NS, "g2", {"displayName": "Renamed"})
        env.wait_condition(REMOVAL, NS, "c0-leaves-g0", "Ready", "True", "Removed", timeout=60)
        env.wait_condition(REMOVAL, NS, "c1-leaves-g1", "Ready", "True", "Removed", timeout=60)
        env.wait_gone(MEMBERSHIP, NS, "c0-g0", timeout=60)
        env.wait_gone(MEMBERSHIP, NS, "c1-g1", timeout=60)
        env.wait_gone(MEMBERSHIP, NS, "c2-g0", timeout=60)
        env.wait_condition("ContactGroup", NS, "g2", timeout=60)

        counts = env.calls()["countsByStatus"]
        failed = sum(n for by in counts.values() for code, n in by.items() if code >= "500")
        self.assertGreater(failed, 3, counts)

        # Exactly one segment per group, one contact per address, memberships as wanted.
        segs = env.segments()
        self.assertEqual(sorted(s["name"] for s in segs),
                         ["Group g0 [org-a/g0]", "Group g1 [org-a/g1]", "Renamed [org-a/g2]"])
        seg_of = {g: env.get("ContactGroup", NS, g)["status"]["providerID"] for g in groups}
        cid_of = {c: env.get("Contact", NS, c)["status"]["providerID"] for c in contacts}
        self.assertEqual(sorted(p["email"] for p in env.provider_contacts()),
                         sorted("%s@example.com" % c for c in contacts))
        want = {(c, g) for c, g in pairs} - {("c0", "g0"), ("c1", "g1"), ("c2", "g0")}
        have = set()
        for s in env.segments():
            for pc in s["contacts"]:
                have.add((next(c for c in contacts if cid_of[c] == pc),
                          next(g for g in groups if seg_of[g] == s["id"])))
        self.assertEqual(have, want)
        self.stop_ok(rec)


class TestRateLimit(Base):
    def test_burst_never_exceeds_the_provider_limit(self):
        env = self.env(resend_config={"rateLimit": 5, "rateWindow": 1, "rateMode": "sliding"})
        rec = env.reconciler(rate=5)
        n = 10
        env.one_to_one(NS, n)
        view = env.calls(log=True)
        statuses = [c["status"] for c in view["calls"]]
        self.assertNotIn(429, statuses, view["countsByStatus"])
        self.assertGreaterEqual(len(statuses), 3 * n)
        # The client paced them (no bursts): at most 5 arrive within 0.9 s, allowing
        # for scheduling jitter on the way in.
        times = sorted(c["time"] for c in view["calls"])
        worst = max(sum(1 for t in times[i:] if t - times[i] < 0.9) for i in range(len(times)))
        self.assertLessEqual(worst, 5)
        self.assertEqual(len(env.segments()), n)
        self.assertEqual(len(env.provider_contacts()), n)
        self.stop_ok(rec)


class TestSteadyState(Base):
    def test_resync_makes_no_provider_calls(self):
        env = self.env()
        rec = env.reconciler(resync="1s")
        self.sync_pair(env, NS)
        env.removal(NS, "gone", "c1", "g1")
        env.wait_condition(REMOVAL, NS, "gone", "Ready", "True", "Removed")
        env.group(NS, "priv", "Private", "private")
        env.wait_ready("ContactGroup", NS, "priv")
        env.contact(NS, "c2", "c2@example.com")
        env.wait_ready("Contact", NS, "c2")
        env.membership(NS, "m2", "c2", "priv")
        env.wait_ready(MEMBERSHIP, NS, "m2")
        env.removal(NS, "rejected", "c2", "priv")
        env.wait_condition(REMOVAL, NS, "rejected", "Ready", "False", "Rejected")
        total = env.quiet(0.5)
        kube_before = env.kube_requests()["next"]
        rec.wait_resyncs(3)
        env.quiet(0.5)
        self.assertEqual(env.call_total(), total, env.calls()["counts"])
        # Nor does it write to the API server (reads of the Lease etc. aside;
        # the token and access reviews of the /metrics scrapes store nothing).
        writes = [r for r in env.kube_requests(kube_before)["items"]
                  if r["method"] in ("PUT", "PATCH", "POST", "DELETE") and not
                  r["path"].startswith(("/apis/authentication.k8s.io/",
                                        "/apis/authorization.k8s.io/"))]
        self.assertEqual(writes, [])
        # A restart (a fresh cache) makes none either.
        self.stop_ok(rec)
        rec.start()
        rec.wait_resyncs(2)    # the one on leading, then a periodic one
        env.quiet(0.5)
        self.assertEqual(env.call_total(), total, env.calls()["counts"])
        # Metrics and no provider webhook route without a secret.
        code, body = rec.https("GET", "/metrics",
                               headers={"Authorization": "Bearer any-token"})
        self.assertEqual(code, 200)
        self.assertIn("controller_runtime_reconcile_total", body)
        code, _ = rec.https("POST", "/webhooks/resend", body=b"{}",
                            headers={"Content-Type": "application/json"})
        self.assertEqual(code, 404)
        self.stop_ok(rec)


class TestPermanentProviderError(Base):
    def test_422_is_surfaced_and_not_retried(self):
        env = self.env()
        rec = env.reconciler(resync="1s")
        env.resend.control("faults", {"kind": "error", "status": 422,
                                      "name": "validation_error", "method": "POST",
                                      "route": "/contacts",
                                      "message": "Invalid `email` field: domain refused."})
        env.contact(NS, "bad", "bad@refused.example")
        c = env.wait_condition("Contact", NS, "bad", "ProviderSynced", "False",
                               "ProviderRejected")
        msg = condition(c, "ProviderSynced")["message"]
        self.assertIn("Invalid `email` field: domain refused.", msg)
        self.assertIn("422", msg)
        self.assertEqual(condition(c, "Ready")["status"], "False")
        self.assertEqual(c["status"]["observedGeneration"], 1)
        ev = env.wait_event(NS, "Contact", "bad", "ProviderRejected")[0]
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(env.calls()["counts"].get("POST /contacts"), 1)
        total = env.quiet(0.5)
        rec.wait_resyncs(3)
        env.quiet(0.5)
        self.assertEqual(env.call_total(), total, env.calls()["counts"])
        self.assertEqual(env.calls()["counts"].get("POST /contacts"), 1)
        # A change to the object is tried again.
        env.resend.control("faults", {"clear": True})
        env.patch_spec("Contact", NS, "bad", {"givenName": "Fixed"})
        c = env.wait_condition("Contact", NS, "bad")
        self.assertConditions(c, "True")
        self.assertEqual(len(env.provider_contacts("bad@refused.example")), 1)
        self.stop_ok(rec)


class TestLeaderElection(Base):
    LEASE = ["--leader-elect-lease-duration", "6s", "--leader-elect-renew-deadline", "4s",
             "--leader-elect-retry-period", "1s"]
    LEASE_S = 6
    RETRY_S = 1

    def identity(self, rec):
        """The replica's Lease identity, from its start line (written just after /readyz)."""
        started = wait_for(lambda: [line for line in rec.logs()
                                    if line.get("msg") == "contact-reconciler started"],
                           10, "%s's start line" % rec.name)
        return started[-1].get("identity")

    def holder(self, env):
        lease = env.lease()
        return ((lease or {}).get("spec") or {}).get("holderIdentity")

    def test_failover(self):
        env = self.env()
        env.resend.control("config", {"apiKeys": ["re_key_a", "re_key_b", "re_key_c"]})
        a = env.reconciler("a", leader_elect=True, args=self.LEASE, api_key="re_key_a",
                           token="token-a")
        b = env.reconciler("b", leader_elect=True, args=self.LEASE, api_key="re_key_b",
                           token="token-b")
        ids = {self.identity(a): a, self.identity(b): b}
        leader = ids[wait_for(lambda: self.holder(env) in ids and self.holder(env), 15,
                              "a leader")]
        follower = b if leader is a else a
        kube_seq = env.kube_requests()["next"]
        self.sync_pair(env, NS)
        env.removal(NS, "leave", "c1", "g1")
        env.wait_condition(REMOVAL, NS, "leave", "Ready", "True", "Removed")

        def keys(since=0):
            return {c["headers"].get("authorization") for c in env.calls(since, True)["calls"]}
        self.assertEqual(keys(), {"Bearer " + leader.api_key})
        writers = {r["headers"].get("Authorization") for r in env.kube_requests(kube_seq)["items"]
                   if r["method"] in ("PUT", "POST", "PATCH", "DELETE") and
                   "/notification.miloapis.com/" in r["path"] and
                   r["headers"].get("Authorization") != "Bearer test-token"}
        self.assertEqual(writers, {"Bearer " + leader.token})

        # kill -9: the follower takes over once the lease runs out.
        t0 = time.monotonic()
        leader.kill()
        fid = self.identity(follower)
        wait_for(lambda: self.holder(env) == fid, self.LEASE_S + 4 * self.RETRY_S + 3,
                 "the follower to take the lease")
        took = time.monotonic() - t0
        self.assertLessEqual(took, self.LEASE_S + 2.2 * self.RETRY_S + 2, took)
        since = env.calls()["next"]
        env.group(NS, "g2", "After Failover")
        env.wait_ready("ContactGroup", NS, "g2")
        self.assertEqual(keys(since), {"Bearer " + follower.api_key})

        # SIGTERM on the leader releases the lease: a new replica takes over at once.
        c = env.reconciler("c", leader_elect=True, args=self.LEASE, api_key="re_key_c",
                           token="token-c")
        cid = self.identity(c)
        time.sleep(0.5)
        self.assertEqual(self.holder(env), fid)
        t0 = time.monotonic()
        self.stop_ok(follower)
        wait_for(lambda: self.holder(env) == cid, self.LEASE_S, "the new replica to lead")
        took = time.monotonic() - t0
        self.assertLess(took, 2.2 * self.RETRY_S + 1.5, took)
        since = env.calls()["next"]
        env.contact(NS, "c3", "c3@example.com")
        env.wait_ready("Contact", NS, "c3")
        self.assertEqual(keys(since), {"Bearer re_key_c"})
        self.stop_ok(c)


class TestProviderWebhook(Base):
    def test_signed_events(self):
        env = self.env()
        secret = h.new_webhook_secret()
        rec = env.reconciler(webhook_secret=secret)
        env.contact(NS, "ada", "ada@example.com", "Ada")
        cid = env.wait_ready("Contact", NS, "ada")["status"]["providerID"]
        url = "https://127.0.0.1:%d/webhooks/resend" % rec.port
        ca = os.path.join(h.cert_dir(), "ca.crt")

        def send(**kw):
            body = {"url": url, "secret": secret, "type": "contact.updated",
                    "contact": cid, "caFile": ca}
            body.update(kw)
            return env.resend.control("events", body)

        def provider_events():
            return [e for e in env.events(NS, "Contact", "ada")
                    if e.get("reason") == "ProviderContactUpdated"]

        r = send(changes={"unsubscribed": True}, id="msg_unsub_1")
        self.assertEqual(r["status"], 200, r)
        evs = wait_for(provider_events, 10, "the provider Event")
        self.assertEqual(len(evs), 1)
        self.assertEqual(evs[0]["type"], "Warning")
        self.assertIn("unsubscribed", evs[0]["note"])
        c = env.wait_condition("Contact", NS, "ada", "ProviderUnsubscribed", "True")
        self.assertEqual(condition(c, "Ready")["status"], "True")

        # The same svix-id again: 200, and no second Event.
        r = send(changes={"unsubscribed": True}, id="msg_unsub_1")
        self.assertEqual(r["status"], 200, r)
        # A bad signature, a wrong secret, a stale timestamp: 401.
        r = send(id="msg_bad_sig", signature="v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")
        self.assertEqual(r["status"], 401, r)
        r = send(id="msg_wrong_secret", secret=h.new_webhook_secret())
        self.assertEqual(r["status"], 401, r)
        r = send(id="msg_stale", timestampOffset=-400)
        self.assertEqual(r["status"], 401, r)
        # A later, good event still counts (the refused ids were not remembered).
        r = send(id="msg_bad_sig", changes={"unsubscribed": False})
        self.assertEqual(r["status"], 200, r)
        evs = wait_for(lambda: len(provider_events()) == 2 and provider_events(), 10,
                       "the second provider Event")
        self.assertEqual(sorted(e["type"] for e in evs), ["Normal", "Warning"])
        env.wait_condition("Contact", NS, "ada", "ProviderUnsubscribed", "False")
        time.sleep(0.3)
        self.assertEqual(len(provider_events()), 2)
        # Signed but not a Resend event: 400, and the id is not remembered, so
        # the provider's redelivery of a good body under it is recorded.
        r = send(id="msg_bad_body", body="not an event")
        self.assertEqual(r["status"], 400, r)
        r = send(id="msg_bad_body", changes={"unsubscribed": True})
        self.assertEqual(r["status"], 200, r)
        wait_for(lambda: len(provider_events()) == 3, 10, "the redelivered Event")
        self.stop_ok(rec)

    def test_event_reaches_the_memberships_of_its_segments(self):
        env = self.env()
        secret = h.new_webhook_secret()
        rec = env.reconciler(webhook_secret=secret)
        sid, cid = self.sync_pair(env, NS)
        # A second group the contact is not in: its membership-less segment is not named.
        env.group(NS, "g2", "Group Two")
        env.wait_ready("ContactGroup", NS, "g2")
        url = "https://127.0.0.1:%d/webhooks/resend" % rec.port
        r = env.resend.control("events", {
            "url": url, "secret": secret, "type": "contact.updated", "contact": cid,
            "caFile": os.path.join(h.cert_dir(), "ca.crt"), "id": "msg_members_1"})
        self.assertEqual(r["status"], 200, r)
        env.wait_event(NS, "Contact", "c1", "ProviderContactUpdated")
        env.wait_event(NS, MEMBERSHIP, "m1", "ProviderContactUpdated")
        self.stop_ok(rec)


if __name__ == "__main__":
    unittest.main()
