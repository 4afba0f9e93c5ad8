"""test_reconciler_mailgun.py -- the real contact-reconciler with --provider mailgun.

The binary against the Kubernetes stand-in and the Mailgun stand-in
(test/py/mailgun_standin.py), through reconciler_harness.Env(provider=
"mailgun"): every path of the mapping (ContactGroup -> mailing list,
Contact -> its member entries, membership -> member, removal), the same
with one call in seven failing, a crash between the list's creation and
the status write, no 429 at the stand-in's rate, no calls when idle, bulk
uploads, and signed webhooks. Every wait is bounded.
"""

import base64
import http.client
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reconciler_harness as h  # noqa: E402
from reconciler_harness import Env, MEMBERSHIP, REMOVAL, condition, wait_for  # noqa: E402

NS = "org-a"
SIGNING_KEY = "mg-test-signing-key-0123456789"


setUpModule = h.module_setup
tearDownModule = h.cleanup_certs


def addr(ns, name):
    return "%s.%s@%s" % (ns, name, h.MAILGUN_DOMAIN)


def mailgun_api(env, method, path, fields=None):
    """One form request to the Mailgun stand-in's API, as another client would send it."""
    auth = base64.b64encode(("api:" + h.MAILGUN_API_KEY).encode()).decode()
    body = urllib.parse.urlencode(fields or {})
    return h.http_request(env.mailgun.url, method, urllib.parse.quote(path), body, {
        "Authorization": "Basic " + auth,
        "Content-Type": "application/x-www-form-urlencoded"})[0]


class Base(unittest.TestCase):
    maxDiff = None

    def env(self, **kw):
        return Env(self, provider="mailgun", **kw)

    def stop_ok(self, rec):
        """SIGTERM -> exit 0; JSON lines only; the API key never appears."""
        self.assertEqual(rec.stop(), 0, rec.log_tail())
        self.assertEqual([x for x in rec.logs() if "raw" in x], [])
        self.assertNotIn(rec.api_key, rec.log_text())

    def assertMember(self, env, ns, group, email, name, contact, given=None, family=None):
        m = env.members(addr(ns, group)).get(email.lower())
        self.assertIsNotNone(m, "%s not in %s: %s" % (email, group, env.members(addr(ns, group))))
        want_vars = {"contact": contact}
        if given:
            want_vars["givenName"] = given
        if family:
            want_vars["familyName"] = family
        self.assertEqual((m["address"], m["name"], m["vars"], m["subscribed"]),
                         (email, name, want_vars, True))

    def no_failed_calls_but_faults(self, env):
        """Every non-2xx answer the stand-in gave was an injected fault, or a 404 by
        design: a delete of what is gone, or a rename retried after it was made
        (the old address is gone; the new one is then updated)."""
        bad = [(c["method"], c["route"], c["status"], c.get("response"))
               for c in env.calls(log=True)["calls"]
               if c["status"] >= 300 and not c.get("fault") and
               not (c["status"] == 404 and (c["method"] in ("DELETE", "GET") or
                                            c["route"].endswith("/members/{member}")))]
        return bad


class TestFlags(unittest.TestCase):
    def run_bin(self, *args, env=None):
        e = dict(os.environ, **(env or {}))
        e.pop("KUBECONFIG", None)
        return subprocess.run([h.binary()] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=20, text=True, env=e)

    def test_refused_at_start(self):
        r = self.run_bin("--help")
        self.assertEqual(r.returncode, 0)
        for flag in ("--mailgun-domain", "--mailgun-rate-limit", "--mailgun-bulk-window",
                     "--mailgun-webhook-signing-key-file", "--mailgun-api-key-file"):
            self.assertIn(flag, r.stdout)
        self.assertIn("(default 5)", r.stdout)
        r = self.run_bin("--provider", "mailgun")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--provider mailgun needs --mailgun-domain", r.stderr)
        env = Env(self, provider="mailgun")
        kc = os.path.join(env.dir, "kc")
        env.kube.write_kubeconfig(kc, token="t")
        base = ["--kubeconfig", kc, "--cert-dir", h.cert_dir(), "--leader-elect=false"]
        r = self.run_bin(*base, "--provider", "mailgun", "--mailgun-domain", "localhost",
                         env={"MAILGUN_API_KEY": "k"})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--mailgun-domain localhost: the domain must be two or more", r.stderr)
        r = self.run_bin(*base, "--provider", "mailgun", "--mailgun-domain", "mg.example.test",
                         env={"MAILGUN_API_KEY": ""})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no Mailgun API key: set MAILGUN_API_KEY or --mailgun-api-key-file",
                      r.stderr)
        r = self.run_bin(*base, "--provider", "loops", env={"MAILGUN_API_KEY": "k"})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('unknown provider "loops": choose one of resend, mailgun', r.stderr)


class TestGroup(Base):
    def test_list_created_updated_deleted(self):
        env = self.env()
        rec = env.reconciler()
        env.create("ContactGroup", NS, "admins", {"displayName": "Organization Admins",
                                                  "visibility": "public",
                                                  "description": "Who runs the org"})
        env.group(NS, "plain", "Plain")
        g = env.wait_ready("ContactGroup", NS, "admins")
        self.assertEqual(g["status"]["providerID"], addr(NS, "admins"))
        self.assertEqual(condition(g, "Ready")["reason"], "GroupCreated")
        lst = env.mailing_list(addr(NS, "admins"))
        self.assertEqual((lst["name"], lst["description"], lst["access_level"]),
                         ("Organization Admins", "Who runs the org [org-a/admins]", "readonly"))
        env.wait_ready("ContactGroup", NS, "plain")
        self.assertEqual(env.mailing_list(addr(NS, "plain"))["description"], "[org-a/plain]")
        env.wait_event(NS, "ContactGroup", "admins", "GroupCreated")
        self.assertEqual(env.calls()["counts"], {"POST /v3/lists": 2})

        # A displayName change updates the list in place (one PUT, same address).
        env.patch_spec("ContactGroup", NS, "admins", {"displayName": "Admins"})
        g = env.wait_condition("ContactGroup", NS, "admins")
        self.assertEqual(g["status"]["providerID"], addr(NS, "admins"))
        self.assertEqual(env.mailing_list(addr(NS, "admins"))["name"], "Admins")
        self.assertEqual(env.calls()["counts"].get("PUT /v3/lists/{list}"), 1)

        # A long name gets a hashed address: valid, at most 64 octets before the @.
        long_name = "a-very-long-group-name-" + "x" * 60
        env.group(NS, long_name, "Long")
        g = env.wait_ready("ContactGroup", NS, long_name)
        a = g["status"]["providerID"]
        local, domain = a.rsplit("@", 1)
        self.assertEqual(domain, h.MAILGUN_DOMAIN)
        self.assertLessEqual(len(local), 64)
        self.assertRegex(local, r"^org-a\.a-very-long-group-name-x+_[0-9a-f]{16}$")
        self.assertIsNotNone(env.mailing_list(a))

        # Deleting the group deletes its list.
        env.delete("ContactGroup", NS, "admins")
        env.wait_gone("ContactGroup", NS, "admins")
        self.assertIsNone(env.mailing_list(addr(NS, "admins")))
        self.assertEqual(sorted(x["address"] for x in env.lists()), sorted([addr(NS, "plain"), a]))
        self.assertEqual(self.no_failed_calls_but_faults(env), [])
        self.stop_ok(rec)

    def test_seeded_list_is_adopted(self):
        env = self.env()
        env.mailgun.control("seed", {"lists": [{"address": addr(NS, "g2"), "name": "Old",
                                                 "description": "old [org-a/g2]"}]})
        rec = env.reconciler()
        env.group(NS, "g2", "New Name")
        g = env.wait_ready("ContactGroup", NS, "g2")
        self.assertEqual(g["status"]["providerID"], addr(NS, "g2"))
        lst = env.mailing_list(addr(NS, "g2"))
        self.assertEqual((lst["name"], lst["description"]), ("New Name", "[org-a/g2]"))
        self.assertEqual(len(env.lists()), 1)
        self.assertEqual(env.calls()["countsByStatus"], {"POST /v3/lists": {"400": 1},
                                                        "PUT /v3/lists/{list}": {"200": 1}})
        env.wait_event(NS, "ContactGroup", "g2", "GroupAdopted")
        self.stop_ok(rec)


class TestMembership(Base):
    def sync(self, env, contacts=("ada",), groups=("g1",)):
        for g in groups:
            env.group(NS, g, "Group " + g)
        for c in contacts:
            env.contact(NS, c, "%s@example.com" % c, c.capitalize(), "Test")
        for g in groups:
            env.wait_ready("ContactGroup", NS, g)
        for c in contacts:
            env.wait_ready("Contact", NS, c)

    def test_member_added_removed_and_opt_outs(self):
        env = self.env()
        rec = env.reconciler()
        self.sync(env, ("ada", "bob"), ("g1",))
        env.group(NS, "priv", "Private", "private")
        env.wait_ready("ContactGroup", NS, "priv")
        # A Contact alone makes no call at Mailgun: it is only its list entries.
        self.assertEqual(set(env.calls()["counts"]), {"POST /v3/lists"})
        self.assertEqual([e for e in env.events(NS, "Contact", "ada")
                          if e["reason"].startswith("Contact")], [])
        c = env.get("Contact", NS, "ada")
        self.assertEqual(c["status"]["providerID"], "ada@example.com")
        self.assertEqual(condition(c, "Ready")["reason"], "Synced")

        env.membership(NS, "ada-g1", "ada", "g1")
        m = env.wait_ready(MEMBERSHIP, NS, "ada-g1")
        self.assertEqual(m["status"]["providerID"], "ada@example.com/" + addr(NS, "g1"))
        self.assertMember(env, NS, "g1", "ada@example.com", "Ada Test", "org-a/ada", "Ada",
                          "Test")
        env.membership(NS, "bob-g1", "bob", "g1")
        env.membership(NS, "bob-priv", "bob", "priv")
        env.wait_ready(MEMBERSHIP, NS, "bob-g1")
        env.wait_ready(MEMBERSHIP, NS, "bob-priv")

        # Deleting a membership removes the member.
        env.delete(MEMBERSHIP, NS, "ada-g1")
        env.wait_gone(MEMBERSHIP, NS, "ada-g1")
        self.assertNotIn("ada@example.com", env.members(addr(NS, "g1")))

        # An opt-out from a public group: the member removed, the membership deleted.
        env.removal(NS, "bob-leaves-g1", "bob", "g1")
        env.wait_condition(REMOVAL, NS, "bob-leaves-g1", "Ready", "True", "Removed")
        env.wait_gone(MEMBERSHIP, NS, "bob-g1")
        self.assertEqual(env.members(addr(NS, "g1")), {})
        # From a private group: refused, nothing changed.
        before = env.calls()["total"]
        env.removal(NS, "bob-leaves-priv", "bob", "priv")
        env.wait_condition(REMOVAL, NS, "bob-leaves-priv", "Ready", "False", "Rejected")
        self.assertIn("bob@example.com", env.members(addr(NS, "priv")))
        self.assertIsNotNone(env.get(MEMBERSHIP, NS, "bob-priv"))
        self.assertEqual(env.calls()["total"], before)
        self.assertEqual(self.no_failed_calls_but_faults(env), [])
        self.stop_ok(rec)

    def unsubscribe_at_mailgun(self, env, list_addr, email):
        """What the list's unsubscribe link does: the member stays, subscribed=no."""
        u = urllib.parse.urlsplit(env.mailgun.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        auth = base64.b64encode(("api:" + h.MAILGUN_API_KEY).encode()).decode()
        try:
            conn.request("PUT", "/v3/lists/%s/members/%s" % (list_addr, email),
                         body="subscribed=no", headers={
                             "Authorization": "Basic " + auth,
                             "Content-Type": "application/x-www-form-urlencoded"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200, r.read())
            r.read()
        finally:
            conn.close()
        self.assertFalse(env.members(list_addr)[email]["subscribed"])

    def resync(self, env, name):
        """Makes a settled membership look unsettled, so it is reconciled again."""
        m = env.get(MEMBERSHIP, NS, name)
        for c in m["status"]["conditions"]:
            if c["type"] == "Ready":
                c["status"], c["reason"] = "False", "Waiting"
        env.kube_request("PUT", env.path(MEMBERSHIP, NS, name, "status"), m)

    def test_membership_reconciled_again_keeps_a_list_unsubscribe(self):
        """Someone who unsubscribed through the list's link stays unsubscribed when
        their membership is reconciled again, alone or in a bulk upload (an
        upsert with subscribed=yes would undo the opt-out)."""
        for window in ("0", "250ms"):
            env = self.env()
            rec = env.reconciler(args=["--mailgun-bulk-window", window])
            self.sync(env, ("ada", "bob", "cy", "dee"), ("g1",))
            env.membership(NS, "ada-g1", "ada", "g1")
            env.wait_ready(MEMBERSHIP, NS, "ada-g1")
            self.unsubscribe_at_mailgun(env, addr(NS, "g1"), "ada@example.com")
            self.resync(env, "ada-g1")
            for c in ("bob", "cy", "dee"):	# a burst: with a window, one bulk upload
                env.membership(NS, c + "-g1", c, "g1")
            for c in ("ada", "bob", "cy", "dee"):
                env.wait_ready(MEMBERSHIP, NS, c + "-g1")
            members = env.members(addr(NS, "g1"))
            self.assertFalse(members["ada@example.com"]["subscribed"], (window, members))
            for c in ("bob", "cy", "dee"):
                self.assertTrue(members["%s@example.com" % c]["subscribed"], members)
            self.stop_ok(rec)

    def test_email_and_name_changes_reach_every_list(self):
        env = self.env()
        rec = env.reconciler()
        self.sync(env, ("ada", "bob"), ("g1", "g2", "g3"))
        for g in ("g1", "g2"):
            env.membership(NS, "ada-" + g, "ada", g)
            env.wait_ready(MEMBERSHIP, NS, "ada-" + g)
        env.membership(NS, "bob-g3", "bob", "g3")
        env.wait_ready(MEMBERSHIP, NS, "bob-g3")

        # A new email: the entry is renamed in both lists, none left behind.
        env.patch_spec("Contact", NS, "ada", {"email": "ada.lovelace@example.com"})
        c = env.wait_condition("Contact", NS, "ada")
        self.assertEqual(c["status"]["providerID"], "ada.lovelace@example.com")
        for g in ("g1", "g2"):
            self.assertEqual(list(env.members(addr(NS, g))), ["ada.lovelace@example.com"])
            self.assertMember(env, NS, g, "ada.lovelace@example.com", "Ada Test", "org-a/ada",
                              "Ada", "Test")
        self.assertEqual(list(env.members(addr(NS, "g3"))), ["bob@example.com"])
        env.wait_event(NS, "Contact", "ada", "ContactUpdated")

        # New names: rewritten in both lists; a name removed is cleared.
        env.patch_spec("Contact", NS, "ada", {"givenName": "Augusta", "familyName": None})
        env.wait_condition("Contact", NS, "ada")
        for g in ("g1", "g2"):
            self.assertMember(env, NS, g, "ada.lovelace@example.com", "Augusta", "org-a/ada",
                              "Augusta")
        counts = env.calls()["counts"]
        self.assertEqual(counts.get("PUT /v3/lists/{list}/members/{member}"), 4, counts)

        # Deleting the Contact: its memberships first, then no entry is left anywhere.
        env.delete("Contact", NS, "ada")
        env.wait_gone("Contact", NS, "ada")
        for g in ("g1", "g2"):
            self.assertEqual(env.members(addr(NS, g)), {})
            self.assertIsNone(env.get(MEMBERSHIP, NS, "ada-" + g))
        self.assertEqual(self.no_failed_calls_but_faults(env), [])
        self.stop_ok(rec)

    def test_email_change_after_a_partial_rename(self):
        """What a crash leaves: one list renamed, the new address beside the old in another."""
        env = self.env()
        rec = env.reconciler()
        self.sync(env, ("ada",), ("g1", "g2"))
        for g in ("g1", "g2"):
            env.membership(NS, "ada-" + g, "ada", g)
            env.wait_ready(MEMBERSHIP, NS, "ada-" + g)
        rec.stop()
        self.assertEqual(mailgun_api(env, "PUT", "/v3/lists/%s/members/ada@example.com"
                                     % addr(NS, "g1"), {"address": "ada2@example.com"}), 200)
        self.assertEqual(mailgun_api(env, "POST", "/v3/lists/%s/members" % addr(NS, "g2"),
                                     {"address": "ada2@example.com", "name": "By Hand"}), 200)
        env.patch_spec("Contact", NS, "ada", {"email": "ada2@example.com"})
        rec.start()
        env.wait_condition("Contact", NS, "ada")
        for g in ("g1", "g2"):
            self.assertEqual(list(env.members(addr(NS, g))), ["ada2@example.com"], g)
            self.assertMember(env, NS, g, "ada2@example.com", "Ada Test", "org-a/ada", "Ada",
                              "Test")
        self.stop_ok(rec)


class TestStatusFitsTheCRDs(Base):
    def test_longest_addresses_pass_the_schema(self):
        """With the CRDs stored, every status write is checked as a cluster checks it:
        a 254-character email in a list with a 64-octet local part makes a
        membership providerID of 254 + 1 + 82 characters, and still no 422."""
        env = self.env()
        env.store_crds()
        rec = env.reconciler()
        email = "l" * 64 + "@" + ".".join(["d" * 61, "d" * 61, "d" * 61, "com"])
        self.assertEqual(len(email), 254)
        group = "g" * 200
        env.group(NS, group, "Long")
        env.contact(NS, "long", email, "G" * 256, "F" * 256)
        g = env.wait_ready("ContactGroup", NS, group)
        env.wait_ready("Contact", NS, "long")
        env.membership(NS, "m", "long", group)
        m = env.wait_ready(MEMBERSHIP, NS, "m")
        self.assertEqual(m["status"]["providerID"], email + "/" + g["status"]["providerID"])
        self.assertGreater(len(m["status"]["providerID"]), 256)
        self.assertIn(email, env.members(g["status"]["providerID"]))
        env.delete("Contact", NS, "long")
        env.wait_gone("Contact", NS, "long")
        self.assertEqual(env.kube_refusals(), [])
        self.stop_ok(rec)


class TestFaults(Base):
    def test_one_call_in_seven_failing_converges(self):
        self.converge_under_faults([])

    def test_one_call_in_seven_failing_converges_without_bulk(self):
        self.converge_under_faults(["--mailgun-bulk-window", "0"])

    def converge_under_faults(self, args):
        env = self.env()
        env.mailgun.control("faults", {"kind": "error", "every": 7})
        rec = env.reconciler(args=["--workers", "3"] + args)
        groups, contacts, pairs = env.grid(NS)
        for c, g in pairs:
            env.wait_ready(MEMBERSHIP, NS, "%s-%s" % (c, g), timeout=90)
        # Changes under the same faults: removals, a delete, a rename, an email change,
        # a group deleted.
        env.removal(NS, "c0-leaves-g0", "c0", "g0")
        env.delete(MEMBERSHIP, NS, "c2-g0")
        env.patch_spec("ContactGroup", NS, "g1", {"displayName": "Renamed"})
        env.patch_spec("Contact", NS, "c3", {"email": "c3.new@example.com"})
        env.delete("ContactGroup", NS, "g2")
        env.wait_condition(REMOVAL, NS, "c0-leaves-g0", "Ready", "True", "Removed", timeout=90)
        env.wait_gone(MEMBERSHIP, NS, "c0-g0", timeout=90)
        env.wait_gone(MEMBERSHIP, NS, "c2-g0", timeout=90)
        env.wait_gone("ContactGroup", NS, "g2", timeout=90)
        env.wait_condition("ContactGroup", NS, "g1", timeout=90)
        env.wait_condition("Contact", NS, "c3", timeout=90)

        by_status = env.calls()["countsByStatus"]
        failed = sum(n for by in by_status.values() for code, n in by.items() if code == "500")
        self.assertEqual(failed, env.call_total() // 7, by_status)
        self.assertGreaterEqual(failed, 2, by_status)
        # One list per group, named as wanted; members exactly as wanted.
        self.assertEqual(sorted((x["address"], x["name"]) for x in env.lists()),
                         [(addr(NS, "g0"), "Group g0"), (addr(NS, "g1"), "Renamed")])
        email = {c: "%s@example.com" % c for c in contacts}
        email["c3"] = "c3.new@example.com"
        want = {g: sorted(email[c] for c, gg in pairs if gg == g) for g in ("g0", "g1")}
        want["g0"] = sorted(set(want["g0"]) - {email["c0"], email["c2"]})
        have = {g: sorted(env.members(addr(NS, g))) for g in ("g0", "g1")}
        self.assertEqual(have, want)
        self.assertEqual(self.no_failed_calls_but_faults(env), [])
        self.stop_ok(rec)


class TestCrashRestart(Base):
    def test_crash_between_list_create_and_status_write(self):
        env = self.env()
        env.kube.control("fail", {"pathPrefix": Env.path("ContactGroup", NS, "g1", "status"),
                                  "method": "PUT", "code": 500, "message": "etcd is on fire"})
        rec = env.reconciler()
        env.group(NS, "g1", "Group One")
        # Made, then at least one retry that finds the address taken and adopts.
        wait_for(lambda: env.calls()["countsByStatus"].get("POST /v3/lists", {}).get("400", 0)
                 >= 1, 20, "a retry of the create")
        rec.kill()
        self.assertFalse(env.get("ContactGroup", NS, "g1").get("status", {}).get("providerID"))
        env.kube.control("fail", {"clear": True})
        rec.start()
        g = env.wait_ready("ContactGroup", NS, "g1")
        self.assertEqual(g["status"]["providerID"], addr(NS, "g1"))
        self.assertEqual([x["address"] for x in env.lists()], [addr(NS, "g1")])
        self.assertEqual(env.calls()["countsByStatus"]["POST /v3/lists"].get("201"), 1)
        self.stop_ok(rec)

    def test_lost_reply_on_create_makes_no_second_list(self):
        env = self.env()
        env.mailgun.control("faults", {"kind": "error", "status": 503, "afterApply": True,
                                       "method": "POST", "route": "/v3/lists", "count": 1})
        rec = env.reconciler()
        env.group(NS, "g1", "Group One")
        g = env.wait_ready("ContactGroup", NS, "g1")
        self.assertEqual([x["address"] for x in env.lists()], [g["status"]["providerID"]])
        self.assertEqual(env.calls()["countsByStatus"]["POST /v3/lists"],
                         {"503": 1, "400": 1})
        env.wait_event(NS, "ContactGroup", "g1", "GroupAdopted")
        self.stop_ok(rec)

    def test_group_deleted_before_its_status_was_written(self):
        env = self.env()
        env.kube.control("fail", {"pathPrefix": Env.path("ContactGroup", NS, "g1", "status"),
                                  "method": "PUT", "code": 500, "message": "etcd is on fire"})
        rec = env.reconciler()
        env.group(NS, "g1", "Group One")
        wait_for(lambda: env.mailing_list(addr(NS, "g1")), 20, "the list")
        self.stop_ok(rec)
        # Deleted while no reconciler runs: g1 with its list but no providerID, and g9,
        # never reconciled, whose address someone else's list already has.
        env.mailgun.control("seed", {"lists": [{"address": addr(NS, "g9"),
                                                 "description": "by hand"}]})
        env.create("ContactGroup", NS, "g9", {"displayName": "G9", "visibility": "public"},
                   finalizers=[h.FINALIZERS["ContactGroup"]])
        env.delete("ContactGroup", NS, "g9")
        env.delete("ContactGroup", NS, "g1")
        env.kube.control("fail", {"clear": True})
        rec.start()
        env.wait_gone("ContactGroup", NS, "g1")
        env.wait_gone("ContactGroup", NS, "g9")
        # Ours is deleted; the other is left as it was.
        self.assertEqual([(x["address"], x["description"]) for x in env.lists()],
                         [(addr(NS, "g9"), "by hand")])
        self.stop_ok(rec)


class TestRateLimit(Base):
    def test_no_429_at_the_configured_rate(self):
        env = self.env(mailgun_config={"rateLimit": 5, "rateWindow": 1})
        rec = env.reconciler(rate=5, args=["--mailgun-bulk-window", "0"])
        n = 8
        env.one_to_one(NS, n)
        view = env.calls(log=True)
        self.assertNotIn(429, [c["status"] for c in view["calls"]], view["countsByStatus"])
        self.assertEqual(view["counts"], {"POST /v3/lists": n,
                                          "POST /v3/lists/{list}/members": n})
        self.stop_ok(rec)


class TestSteadyState(Base):
    def test_no_calls_when_idle(self):
        env = self.env()
        rec = env.reconciler(resync="1s")
        env.group(NS, "g1", "G1")
        env.group(NS, "priv", "Private", "private")
        for c in ("ada", "bob"):
            env.contact(NS, c, "%s@example.com" % c, c)
        for g in ("g1", "priv"):
            env.wait_ready("ContactGroup", NS, g)
        for c in ("ada", "bob"):
            env.wait_ready("Contact", NS, c)
            env.membership(NS, c + "-g1", c, "g1")
        env.membership(NS, "bob-priv", "bob", "priv")
        for m in ("ada-g1", "bob-g1", "bob-priv"):
            env.wait_ready(MEMBERSHIP, NS, m)
        env.removal(NS, "ada-out", "ada", "g1")
        env.wait_condition(REMOVAL, NS, "ada-out", "Ready", "True", "Removed")
        env.removal(NS, "bob-priv-out", "bob", "priv")
        env.wait_condition(REMOVAL, NS, "bob-priv-out", "Ready", "False", "Rejected")
        total = env.quiet(0.5)
        time.sleep(3.5)     # more than three resync periods
        self.assertEqual(env.call_total(), total, [
            (round(c["time"] % 100, 2), c["method"], c["path"], c["status"])
            for c in env.calls(log=True)["calls"]])
        self.stop_ok(rec)
        rec.start()         # a fresh cache makes none either
        time.sleep(2.5)
        self.assertEqual(env.call_total(), total, env.calls()["counts"])
        code, _ = rec.https("POST", "/webhooks/mailgun", body=b"{}",
                            headers={"Content-Type": "application/json"})
        self.assertEqual(code, 404)     # no signing key: no route
        self.stop_ok(rec)


class TestRefusedRemovalMakesNoCall(Base):
    """A membership of a private group beside a refused removal is settled: being
    reconciled again (its group changed) makes no provider call (both providers)."""

    def run_case(self, provider, add_routes):
        env = Env(self, provider=provider)
        rec = env.reconciler()
        env.group(NS, "priv", "Private", "private")
        env.contact(NS, "bob", "bob@example.com")
        env.wait_ready("ContactGroup", NS, "priv")
        env.wait_ready("Contact", NS, "bob")
        env.membership(NS, "bob-priv", "bob", "priv")
        env.wait_ready(MEMBERSHIP, NS, "bob-priv")
        env.removal(NS, "bob-out", "bob", "priv")
        env.wait_condition(REMOVAL, NS, "bob-out", "Ready", "False", "Rejected")
        def adds():
            counts = env.calls()["counts"]
            return sum(counts.get(r, 0) for r in add_routes)
        self.assertEqual(adds(), 1)
        # The group's sync queues its memberships again.
        env.patch_spec("ContactGroup", NS, "priv", {"displayName": "Private Two"})
        env.wait_condition("ContactGroup", NS, "priv")
        env.quiet(1.0)
        self.assertEqual(adds(), 1, env.calls()["counts"])
        self.stop_ok(rec)

    def test_resend(self):
        self.run_case("resend", ["POST /contacts/{contact}/segments/{segment}"])

    def test_mailgun(self):
        self.run_case("mailgun", ["POST /v3/lists/{list}/members",
                                  "POST /v3/lists/{list}/members.json"])


class TestBulk(Base):
    N = 150

    def prepare(self, env):
        env.group(NS, "big", "Big")
        env.wait_ready("ContactGroup", NS, "big")
        for i in range(self.N):
            env.contact(NS, "p%03d" % i, "p%03d@example.com" % i, "P", "%03d" % i)
        wait_for(lambda: sum(1 for c in env.list("Contact", NS)
                             if condition(c, "Ready") and
                             condition(c, "Ready")["status"] == "True") == self.N,
                 60, "every Contact")

    def add_all(self, env):
        for i in range(self.N):
            env.membership(NS, "p%03d-big" % i, "p%03d" % i, "big")
        wait_for(lambda: sum(1 for m in env.list(MEMBERSHIP, NS)
                             if condition(m, "Ready") and
                             condition(m, "Ready")["status"] == "True") == self.N,
                 90, "every membership Ready")
        members = env.members(addr(NS, "big"))
        self.assertEqual(sorted(members), ["p%03d@example.com" % i for i in range(self.N)])
        m = members["p007@example.com"]
        self.assertEqual((m["name"], m["vars"], m["subscribed"]),
                         ("P 007", {"contact": "org-a/p007", "givenName": "P",
                                    "familyName": "007"}, True))

    def test_many_members_at_once_go_in_bulk(self):
        env = self.env()
        rec = env.reconciler(rate=20, args=["--workers", "4"])
        self.prepare(env)
        env.standin.control("calls", method="DELETE")
        self.add_all(env)
        view = env.calls(log=True)
        bulk = [c for c in view["calls"]
                if (c["method"], c["route"]) == ("POST", "/v3/lists/{list}/members.json")]
        single = view["counts"].get("POST /v3/lists/{list}/members", 0)
        self.assertTrue(bulk, view["counts"])
        sizes = [len(json.loads(c["form"]["members"])) for c in bulk]
        self.assertLessEqual(max(sizes), 100)      # applied before Mailgun answers
        self.assertEqual(sum(sizes) + single, self.N)
        self.assertLess(len(bulk) + single, self.N / 3, view["counts"])
        # Never an upsert: members already there (unsubscribed ones too) stay as they are.
        self.assertEqual([c["form"]["upsert"] for c in bulk], ["no"] * len(bulk))
        # Each membership's Event says it was added.
        env.wait_event(NS, MEMBERSHIP, "p042-big", "AddedToGroup")
        code, text = rec.https("GET", "/metrics", headers={"Authorization": "Bearer t"})
        self.assertEqual(code, 200)
        self.assertIn('milo_provider_bulk_members_total{provider="mailgun"} %d' % sum(sizes),
                      text)
        self.assertTrue(any(x.get("msg") == "provider bulk upload" for x in rec.logs()))
        self.stop_ok(rec)

    def test_bulk_off_sends_each_alone(self):
        env = self.env()
        rec = env.reconciler(rate=50, args=["--mailgun-bulk-window", "0", "--workers", "4"])
        self.prepare(env)
        env.standin.control("calls", method="DELETE")
        self.add_all(env)
        self.assertEqual(env.calls()["counts"], {"POST /v3/lists/{list}/members": self.N})
        self.stop_ok(rec)

    def test_failed_bulk_requests_are_retried(self):
        env = self.env()
        rec = env.reconciler(rate=20, args=["--workers", "4"])
        self.prepare(env)
        env.mailgun.control("faults", {"kind": "error", "every": 2,
                                       "route": "/v3/lists/{list}/members.json"})
        self.add_all(env)
        by_status = env.calls()["countsByStatus"].get("POST /v3/lists/{list}/members.json", {})
        self.assertGreaterEqual(by_status.get("500", 0), 1, by_status)
        self.stop_ok(rec)


class TestProviderWebhook(Base):
    def setUp(self):
        self.env_ = self.env()
        self.rec = self.env_.reconciler(webhook_secret=SIGNING_KEY)
        self.url = "https://127.0.0.1:%d/webhooks/mailgun" % self.rec.port
        self.ca = os.path.join(h.cert_dir(), "ca.crt")

    def send(self, **kw):
        body = {"url": self.url, "signingKey": SIGNING_KEY, "caFile": self.ca,
                "event": "delivered", "recipient": "ada@example.com"}
        body.update(kw)
        return self.env_.mailgun.control("events", body)

    def events(self, kind, name, reason):
        return [e for e in self.env_.events(NS, kind, name) if e.get("reason") == reason]

    def test_signed_events(self):
        env = self.env_
        env.group(NS, "g1", "G1")
        env.group(NS, "g2", "G2")
        env.contact(NS, "ada", "ada@example.com", "Ada")
        env.wait_ready("Contact", NS, "ada")
        for g in ("g1", "g2"):
            env.wait_ready("ContactGroup", NS, g)
            env.membership(NS, "ada-" + g, "ada", g)
            env.wait_ready(MEMBERSHIP, NS, "ada-" + g)

        # A delivery: a Normal Event on the Contact.
        r = self.send(token="tok-delivered-1")
        self.assertEqual(r["status"], 200, r)
        ev = wait_for(lambda: self.events("Contact", "ada", "ProviderDelivered"), 10,
                      "the delivered Event")
        self.assertEqual(ev[0]["type"], "Normal")
        self.assertIn("delivered from mailgun", ev[0]["note"])

        # An unsubscribe from g1's list: a Warning on the Contact and on that membership
        # only, and ProviderUnsubscribed=True.
        r = self.send(event="unsubscribed", list=addr(NS, "g1"), token="tok-unsub-1")
        self.assertEqual(r["status"], 200, r)
        ev = wait_for(lambda: self.events("Contact", "ada", "ProviderUnsubscribed"), 10,
                      "the unsubscribe Event")
        self.assertEqual(ev[0]["type"], "Warning")
        self.assertIn("the recipient unsubscribed", ev[0]["note"])
        c = env.wait_condition("Contact", NS, "ada", "ProviderUnsubscribed", "True")
        self.assertEqual(condition(c, "Ready")["status"], "True")
        wait_for(lambda: self.events(MEMBERSHIP, "ada-g1", "ProviderUnsubscribed"), 10,
                 "the membership's Event")
        self.assertEqual(self.events(MEMBERSHIP, "ada-g2", "ProviderUnsubscribed"), [])

        # The same token again: 200, and no second Event.
        r = self.send(event="unsubscribed", list=addr(NS, "g1"), token="tok-unsub-1")
        self.assertEqual(r["status"], 200, r)
        time.sleep(0.5)
        self.assertEqual(len(self.events("Contact", "ada", "ProviderUnsubscribed")), 1)

        # A wrong key, a forged signature, an old or a future timestamp: 401, not recorded.
        for kw in ({"signingKey": "another-key"}, {"signature": "0" * 64},
                   {"signature": "not hex"}, {"timestampOffset": -301},
                   {"timestampOffset": 400}):
            r = self.send(token="tok-refused", **kw)
            self.assertEqual(r["status"], 401, (kw, r))
        r = self.send(body={"event-data": {"event": "delivered"}})
        self.assertEqual(r["status"], 401, r)
        # Signed but not an event: 400; the token is not remembered, so a good
        # delivery under it is recorded.
        r = self.send(token="tok-later", envelope={"event-data": None})
        self.assertEqual(r["status"], 400, r)
        r = self.send(body="not json")
        self.assertEqual(r["status"], 400, r)
        r = self.send(token="tok-later", event="opened")
        self.assertEqual(r["status"], 200, r)
        wait_for(lambda: self.events("Contact", "ada", "ProviderOpened"), 10, "opened")
        self.assertEqual(self.events("Contact", "ada", "ProviderDelivered")[0]["type"],
                         "Normal")
        # Refusals are logged with their reason.
        self.assertTrue(any(x.get("msg") == "provider webhook refused" and
                            "5 minutes" in x.get("reason", "") for x in self.rec.logs()))
        self.stop_ok(self.rec)


if __name__ == "__main__":
    unittest.main()
