"""test_mailgun_standin.py -- the Mailgun stand-in speaks the documented shapes, limits and faults.

Run with: python3 -m unittest discover -s test/py -p 'test_*.py'
Every server listens on 127.0.0.1 only; every wait is bounded and waits on
state, not on the clock.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgun_standin  # noqa: E402
from mailgun_standin import StandIn  # noqa: E402
import standin_testutil as stu  # noqa: E402
from standin_testutil import make_cert, wait_for  # noqa: E402

KEY = mailgun_standin.DEFAULT_API_KEY
LIST = "devs@mg.example.test"
RFC2822_RE = r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d -0000$"
WEBHOOK_PATH = "/webhooks/mailgun"


def basic(user, key):
    return "Basic " + base64.b64encode(("%s:%s" % (user, key)).encode()).decode()


def multipart(fields):
    """fields: list of (name, value) -> (content type, body); what curl -F sends."""
    boundary = "----standin%d" % time.monotonic_ns()
    out = []
    for name, value in fields:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, name, value)).encode())
    out.append(("--%s--\r\n" % boundary).encode())
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


def call(base, method, path, fields=None, key=KEY, user="api", form="urlencoded",
         headers=None, raw=None, timeout=5):
    """One request on a fresh connection -> (status, headers (lower-case), payload).

    fields: a dict or a list of pairs, sent as form="urlencoded" | "multipart" |
    "query" (appended to the path).
    """
    h = {}
    if key is not None:
        h["Authorization"] = basic(user, key)
    data = raw
    if fields is not None:
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
        if form == "query":
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(pairs)
        elif form == "multipart":
            h["Content-Type"], data = multipart(pairs)
        else:
            h["Content-Type"] = "application/x-www-form-urlencoded"
            data = urllib.parse.urlencode(pairs).encode()
    h.update(headers or {})
    return stu.request(base, method, path, data, h, timeout)


def q(addr):
    """Path escaping as GO's url.QueryEscape does it."""
    return urllib.parse.quote(addr, safe="")


def independent_signature(key, timestamp, token):
    """Mailgun's algorithm written out again, without the stand-in's helpers."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


class StandInCase(stu.StandInCase):
    standin = StandIn
    call = staticmethod(call)

    def assertError(self, resp, status, message=None):
        code, hdrs, body = resp
        self.assertEqual(code, status, body)
        self.assertEqual(hdrs["content-type"], "application/json")
        self.assertEqual(set(body), {"message"})
        if message is not None:
            self.assertEqual(body["message"], message)

    def make_list(self, address=LIST, **fields):
        return self.ok("POST", "/v3/lists", dict(fields, address=address), want=201)["list"]

    def add(self, email, lst=LIST, **fields):
        return self.ok("POST", "/v3/lists/%s/members" % q(lst),
                       dict(fields, address=email))["member"]

    def state_list(self, address=LIST):
        return self.s.control("lists/" + address, method="GET")


class TestLists(StandInCase):
    def test_lifecycle(self):
        made = self.ok("POST", "/v3/lists", {"address": LIST, "name": "Developers",
                                             "description": "Team"}, want=201)
        self.assertEqual(made["message"], "Mailing list has been created")
        lst = made["list"]
        self.assertEqual(set(lst), {"address", "name", "description", "access_level",
                                    "reply_preference", "created_at", "members_count"})
        self.assertEqual((lst["address"], lst["name"], lst["description"], lst["access_level"],
                          lst["reply_preference"], lst["members_count"]),
                         (LIST, "Developers", "Team", "readonly", "list", 0))
        self.assertRegex(lst["created_at"], RFC2822_RE)
        self.assertEqual(self.ok("GET", "/v3/lists/" + q(LIST)), {"list": lst})
        # The path may carry '@' unescaped, and any case.
        self.assertEqual(self.ok("GET", "/v3/lists/" + LIST.upper())["list"]["address"], LIST)
        up = self.ok("PUT", "/v3/lists/" + q(LIST), {"name": "Devs", "access_level": "members",
                                                     "reply_preference": "sender"},
                     form="multipart")
        self.assertEqual(up["message"], "Mailing list has been updated")
        self.assertEqual((up["list"]["name"], up["list"]["description"],
                          up["list"]["access_level"], up["list"]["reply_preference"]),
                         ("Devs", "Team", "members", "sender"))
        # The OpenAPI spells the update field reply_reference; both are read.
        up = self.ok("PUT", "/v3/lists/" + q(LIST), {"reply_reference": "list"})
        self.assertEqual(up["list"]["reply_preference"], "list")
        gone = self.ok("DELETE", "/v3/lists/" + q(LIST))
        self.assertEqual(gone, {"address": LIST, "message": "Mailing list has been removed"})
        for method in ("GET", "PUT", "DELETE"):
            self.assertError(self.api(method, "/v3/lists/" + q(LIST)), 404,
                             "Mailing list %s not found" % LIST)

    def test_create_errors(self):
        self.assertError(self.api("POST", "/v3/lists", {"name": "x"}), 400,
                         "'address' parameter is missing")
        self.assertError(self.api("POST", "/v3/lists", {"address": "not-an-address"}), 400,
                         "'address' parameter is not a valid address. please check "
                         "documentation")
        self.assertError(self.api("POST", "/v3/lists", {"address": LIST,
                                                        "access_level": "fake_access_level"}),
                         400, "Invalid access level 'fake_access_level'. It can be any of: "
                         "'readonly', 'members', 'everyone'.")
        self.assertError(self.api("POST", "/v3/lists", {"address": LIST,
                                                        "reply_preference": "wrong_preference"}),
                         400, "Invalid reply preference 'wrong_preference'. It can be any of: "
                         "'sender', 'list'")
        self.assertEqual(self.s.control("state", method="GET")["lists"], [])
        self.make_list()
        self.assertError(self.api("POST", "/v3/lists", {"address": LIST.upper()}), 400,
                         "Duplicate object")
        # A JSON body is not read: Mailgun's v3 endpoints take form fields.
        self.assertError(self.api("POST", "/v3/lists", raw=b'{"address": "j@mg.example.test"}',
                                  headers={"Content-Type": "application/json"}), 400,
                         "'address' parameter is missing")

    def test_display_name_address_and_create_status(self):
        lst = self.make_list("Developers <dev2@mg.example.test>")
        self.assertEqual((lst["address"], lst["name"]), ("dev2@mg.example.test", "Developers"))
        lst = self.make_list("Other <dev3@mg.example.test>", name="Given")
        self.assertEqual(lst["name"], "Given")
        self.s.control("config", {"listCreateStatus": 200})
        self.assertEqual(self.api("POST", "/v3/lists", {"address": "dev4@mg.example.test"})[0],
                         200)

    def test_rename(self):
        self.make_list()
        self.make_list("other@mg.example.test")
        self.add("a@example.com")
        self.assertError(self.api("PUT", "/v3/lists/" + q(LIST),
                                  {"address": "other@mg.example.test"}), 400, "Duplicate object")
        up = self.ok("PUT", "/v3/lists/" + q(LIST), {"address": "new@mg.example.test"})
        self.assertEqual((up["list"]["address"], up["list"]["members_count"]),
                         ("new@mg.example.test", 1))
        self.assertEqual(self.api("GET", "/v3/lists/" + q(LIST))[0], 404)
        self.ok("GET", "/v3/lists/new@mg.example.test/members/a@example.com")

    def test_listing_and_pages(self):
        addrs = ["l%02d@mg.example.test" % i for i in range(7)]
        for a in reversed(addrs):
            self.make_list(a)
        got = self.ok("GET", "/v3/lists")
        self.assertEqual(got["total_count"], 7)
        self.assertEqual([i["address"] for i in got["items"]], addrs)
        got = self.ok("GET", "/v3/lists?limit=2&skip=3")
        self.assertEqual((got["total_count"], [i["address"] for i in got["items"]]),
                         (7, addrs[3:5]))
        got = self.ok("GET", "/v3/lists?address=" + q(addrs[4]))
        self.assertEqual((got["total_count"], got["items"][0]["address"]), (1, addrs[4]))
        self.assertError(self.api("GET", "/v3/lists?limit=101"), 400,
                         "The 'limit' parameter can't be larger than 100")
        self.assertEqual(self.api("GET", "/v3/lists?limit=x")[0], 400)
        self.assertEqual(self.api("GET", "/v3/lists?skip=-1")[0], 400)
        # /v3/lists/pages: follow "next" as a client does until an empty page.
        seen = []
        url = self.s.url + "/v3/lists/pages?limit=3"
        for _ in range(10):
            u = urllib.parse.urlsplit(url)
            page = self.ok("GET", u.path + "?" + u.query)
            self.assertEqual(set(page), {"items", "paging"})
            self.assertEqual(set(page["paging"]), {"first", "last", "next", "previous"})
            for link in page["paging"].values():
                self.assertTrue(link.startswith(self.s.url + "/v3/lists/pages?"), link)
            if not page["items"]:
                break
            seen += [i["address"] for i in page["items"]]
            url = page["paging"]["next"]
        self.assertEqual(seen, addrs)
        last = self.ok("GET", "/v3/lists/pages?page=last&limit=3")
        self.assertEqual([i["address"] for i in last["items"]], addrs[4:])
        u = urllib.parse.urlsplit(last["paging"]["previous"])
        prev = self.ok("GET", u.path + "?" + u.query)
        self.assertEqual([i["address"] for i in prev["items"]], addrs[1:4])
        self.assertEqual(self.api("GET", "/v3/lists/pages?page=sideways")[0], 400)


class TestMembers(StandInCase):
    def setUp(self):
        super().setUp()
        self.make_list()
        self.base = "/v3/lists/%s/members" % q(LIST)

    def test_add_get_update_delete(self):
        out = self.ok("POST", self.base, {"address": "Alice <alice@example.com>",
                                          "vars": '{"gender": "female", "age": 27}'},
                      form="multipart")
        self.assertEqual(out, {"member": {"address": "alice@example.com", "name": "Alice",
                                          "vars": {"gender": "female", "age": 27},
                                          "subscribed": True},
                               "message": "Mailing list member has been created"})
        self.assertEqual(self.ok("GET", self.base + "/" + q("alice@example.com")),
                         {"member": out["member"]})
        self.assertEqual(self.ok("GET", "/v3/lists/" + q(LIST))["list"]["members_count"], 1)
        up = self.ok("PUT", self.base + "/alice@example.com", {"subscribed": "no"})
        self.assertEqual(up["message"], "Mailing list member has been updated")
        # Fields not given are kept.
        self.assertEqual(up["member"], dict(out["member"], subscribed=False))
        up = self.ok("PUT", self.base + "/ALICE@example.com",
                     {"name": "Alice B", "vars": '{"age": 28}', "subscribed": "True"})
        self.assertEqual(up["member"], {"address": "alice@example.com", "name": "Alice B",
                                        "vars": {"age": 28}, "subscribed": True})
        gone = self.ok("DELETE", self.base + "/" + q("alice@example.com"))
        self.assertEqual(gone, {"member": {"address": "alice@example.com"},
                                "message": "Mailing list member has been deleted"})
        msg = "Member alice@example.com of mailing list %s not found" % LIST
        for method in ("GET", "PUT", "DELETE"):
            self.assertError(self.api(method, self.base + "/alice@example.com"), 404, msg)
        self.assertError(self.api("POST", "/v3/lists/nope@mg.example.test/members",
                                  {"address": "a@example.com"}), 404,
                         "Mailing list nope@mg.example.test not found")

    def test_booleans_and_vars(self):
        for i, (word, want) in enumerate((("yes", True), ("no", False), ("true", True),
                                          ("False", False), ("TRUE", True), ("NO", False))):
            addr = "b%d@example.com" % i
            self.assertIs(self.add(addr, subscribed=word)["subscribed"], want, word)
        self.assertError(self.api("POST", self.base, {"address": "b@example.com",
                                                      "subscribed": "1"}), 400)
        self.assertError(self.api("POST", self.base, {"address": "b@example.com",
                                                      "upsert": "maybe"}), 400)
        self.assertError(self.api("POST", self.base, {"address": "b@example.com",
                                                      "vars": "{not json"}), 400)
        self.assertError(self.api("POST", self.base, {"address": "b@example.com",
                                                      "vars": "[1, 2]"}), 400)
        # mailgun-go sends vars "null" and name "" when it has none.
        m = self.add("go@example.com", vars="null", name="", upsert="no")
        self.assertEqual((m["vars"], m["name"]), ({}, ""))
        self.assertError(self.api("POST", self.base, {"name": "x"}), 400,
                         "'address' parameter is missing")
        self.assertError(self.api("POST", self.base, {"address": "a b@example.com"}), 400,
                         "'address' parameter is not a valid address. please check "
                         "documentation")
        long_local = "x" * 65 + "@example.com"
        self.assertEqual(self.api("POST", self.base, {"address": long_local})[0], 400)

    def test_duplicate_and_upsert(self):
        self.add("bob@example.com", name="Bob", vars='{"a": 1}', subscribed="no")
        self.assertError(self.api("POST", self.base, {"address": "BOB@example.com"}), 400,
                         "Address already exists 'bob@example.com'")
        out = self.ok("POST", self.base, {"address": "bob@example.com", "upsert": "yes",
                                          "name": "Robert"})
        # An upsert applies the fields given; the rest is kept.
        self.assertEqual(out["member"], {"address": "bob@example.com", "name": "Robert",
                                         "vars": {"a": 1}, "subscribed": False})
        out = self.ok("POST", self.base, {"address": "bob@example.com", "upsert": "true",
                                          "subscribed": "yes", "vars": '{"b": 2}'})
        self.assertEqual(out["member"], {"address": "bob@example.com", "name": "Robert",
                                         "vars": {"b": 2}, "subscribed": True})
        self.assertEqual(len(self.state_list()["members"]), 1)

    def test_rename_member(self):
        self.add("old@example.com", name="Old")
        self.add("taken@example.com")
        self.assertError(self.api("PUT", self.base + "/old@example.com",
                                  {"address": "taken@example.com"}), 400,
                         "Address already exists 'taken@example.com'")
        up = self.ok("PUT", self.base + "/old@example.com", {"address": "New <new@example.com>"})
        self.assertEqual((up["member"]["address"], up["member"]["name"]),
                         ("new@example.com", "New"))
        self.assertEqual(self.api("GET", self.base + "/old@example.com")[0], 404)
        self.assertEqual([m["address"] for m in self.state_list()["members"]],
                         ["new@example.com", "taken@example.com"])

    def test_plus_and_escaped_paths(self):
        self.add("a+tag@example.com")
        # GO escapes '+' as %2B; a literal '+' in a path is a plus too.
        self.ok("GET", self.base + "/" + q("a+tag@example.com"))
        self.ok("GET", "/v3/lists/%s/members/a+tag@example.com" % LIST)
        self.ok("DELETE", "/v3/lists/%s/members/%s" % (q(LIST), q("a+tag@example.com")))

    def test_listing(self):
        addrs = ["m%02d@example.com" % i for i in range(12)]
        for i, a in enumerate(reversed(addrs)):
            self.add(a, subscribed="no" if i % 3 == 0 else "yes")
        unsub = sorted(a for i, a in enumerate(reversed(addrs)) if i % 3 == 0)
        got = self.ok("GET", self.base)
        self.assertEqual((got["total_count"], [m["address"] for m in got["items"]]),
                         (12, addrs))
        self.assertEqual(set(got["items"][0]), {"address", "name", "vars", "subscribed"})
        got = self.ok("GET", self.base + "?limit=5&skip=10")
        self.assertEqual([m["address"] for m in got["items"]], addrs[10:])
        got = self.ok("GET", self.base, {"subscribed": "no"}, form="query")
        self.assertEqual((got["total_count"], [m["address"] for m in got["items"]]),
                         (len(unsub), unsub))
        got = self.ok("GET", self.base, {"address": addrs[3]}, form="query")
        self.assertEqual([m["address"] for m in got["items"]], [addrs[3]])
        self.assertError(self.api("GET", self.base + "?limit=101"), 400,
                         "The 'limit' parameter can't be larger than 100")
        self.assertEqual(self.api("GET", self.base + "?subscribed=perhaps")[0], 400)
        # /members/pages in ascending order, forward then backward.
        seen, url = [], self.s.url + self.base + "/pages?limit=5"
        for _ in range(10):
            u = urllib.parse.urlsplit(url)
            page = self.ok("GET", u.path + "?" + u.query)
            if not page["items"]:
                break
            seen += [m["address"] for m in page["items"]]
            url = page["paging"]["next"]
        self.assertEqual(seen, addrs)
        last = self.ok("GET", self.base + "/pages?page=last&limit=5")
        self.assertEqual([m["address"] for m in last["items"]], addrs[7:])
        u = urllib.parse.urlsplit(last["paging"]["previous"])
        prev = self.ok("GET", u.path + "?" + u.query)
        self.assertEqual([m["address"] for m in prev["items"]], addrs[2:7])
        sub = self.ok("GET", self.base + "/pages?subscribed=no&limit=2")
        self.assertEqual([m["address"] for m in sub["items"]], unsub[:2])
        self.assertIn("subscribed=no", sub["paging"]["next"])
        u = urllib.parse.urlsplit(sub["paging"]["next"])
        self.assertEqual([m["address"] for m in self.ok("GET", u.path + "?" + u.query)["items"]],
                         unsub[2:4])
        self.assertEqual(self.ok("GET", "/v3/lists/" + q(LIST))["list"]["members_count"], 12)


class TestBulk(StandInCase):
    def setUp(self):
        super().setUp()
        self.make_list()
        self.path = "/v3/lists/%s/members.json" % q(LIST)

    def bulk(self, members, want=200, **fields):
        f = dict(fields, members=json.dumps(members))
        return self.ok("POST", self.path, f, want=want, form="multipart")

    def members(self):
        return {m["address"]: m for m in self.state_list()["members"]}

    def test_small_upload_is_synchronous(self):
        out = self.bulk(["a@example.com", "Bob <b@example.com>",
                         {"address": "c@example.com", "name": "C", "vars": {"k": 1},
                          "subscribed": False},
                         {"address": "d@example.com", "vars": '{"s": "x"}', "subscribed": "yes"}])
        self.assertEqual(set(out), {"list", "message", "task-id"})
        self.assertEqual(out["message"], "Mailing list has been updated")
        self.assertEqual(out["task-id"], "0" * 32)
        self.assertEqual(out["list"]["members_count"], 4)
        ms = self.members()
        self.assertEqual((ms["a@example.com"]["name"], ms["a@example.com"]["subscribed"]),
                         ("", True))
        self.assertEqual(ms["b@example.com"]["name"], "Bob")
        self.assertEqual((ms["c@example.com"]["vars"], ms["c@example.com"]["subscribed"]),
                         ({"k": 1}, False))
        self.assertEqual(ms["d@example.com"]["vars"], {"s": "x"})
        # Exactly 100 entries is still "not more than 100": applied before the answer.
        self.s.control("config", {"bulkAsyncHold": True})
        out = self.bulk(["n%03d@example.com" % i for i in range(100)])
        self.assertEqual((out["message"], out["task-id"], out["list"]["members_count"]),
                         ("Mailing list has been updated", "0" * 32, 104))

    def test_upsert_semantics(self):
        self.add("keep@example.com", name="Keep", vars='{"v": 1}', subscribed="no")
        # Without upsert an existing member is left as it is, and no error.
        out = self.bulk([{"address": "keep@example.com", "name": "Changed",
                          "subscribed": True}, "fresh@example.com"])
        self.assertEqual(out["list"]["members_count"], 2)
        ms = self.members()
        self.assertEqual((ms["keep@example.com"]["name"], ms["keep@example.com"]["subscribed"]),
                         ("Keep", False))
        self.bulk([{"address": "keep@example.com", "name": "Changed"}], upsert="yes")
        ms = self.members()
        self.assertEqual((ms["keep@example.com"]["name"], ms["keep@example.com"]["vars"],
                          ms["keep@example.com"]["subscribed"]), ("Changed", {"v": 1}, False))
        # `subscribed` as a default for the entries without one (mailgun-go's old client).
        self.bulk(["keep@example.com", "new@example.com"], upsert="true", subscribed="no")
        ms = self.members()
        self.assertIs(ms["new@example.com"]["subscribed"], False)
        self.assertIs(ms["keep@example.com"]["subscribed"], False)
        self.bulk([{"address": "keep@example.com", "subscribed": "yes"}], upsert="yes")
        self.assertIs(self.members()["keep@example.com"]["subscribed"], True)
        # The fields may also come in the query string, as the OpenAPI puts them.
        status, _, body = self.api("POST", self.path, {"members": '["q@example.com"]',
                                                       "upsert": "yes"}, form="query")
        self.assertEqual((status, body["list"]["members_count"]), (200, 4))

    def test_errors(self):
        self.assertError(self.api("POST", "/v3/lists/nope@mg.example.test/members.json",
                                  {"members": "[]"}), 404,
                         "Mailing list 'nope@mg.example.test' not found")
        self.assertError(self.api("POST", self.path, {"upsert": "yes"}), 400,
                         "'members' parameter is missing")
        self.assertError(self.api("POST", self.path, {"members": "[oops"}), 400)
        self.assertError(self.api("POST", self.path, {"members": '{"a": 1}'}), 400)
        self.assertError(self.api("POST", self.path,
                                  {"members": json.dumps(["x%d@example.com" % i
                                                          for i in range(1001)])}),
                         400, "Too many members, max is 1000")
        self.assertEqual(self.state_list()["members"], [])
        # Bad entries fail alone.
        out = self.bulk(["good@example.com", "not an address", {"name": "no address"},
                         {"address": "v@example.com", "vars": "[1]"}, 42,
                         {"address": "s@example.com", "subscribed": "perhaps"}])
        self.assertEqual(out["list"]["members_count"], 1)
        task = [t for t in self.s.control("tasks", method="GET")["tasks"]
                if t["id"] == "0" * 32][-1]
        self.assertEqual((task["status"], task["upserted-count"], task["failed-count"]),
                         ("done", 1, 5))
        errors = [e for e in task["events"] if e["event"] == "list_member_upload_error"]
        self.assertEqual(len(errors), 5)
        self.assertEqual(errors[0]["member-description"], "not an address")

    def test_large_upload_is_asynchronous(self):
        self.s.control("config", {"bulkAsyncHold": True})
        self.add("old@example.com")
        entries = ["u%03d@example.com" % i for i in range(101)]
        out = self.bulk(entries)
        self.assertEqual(out["message"], "Mailing list upload started in background")
        self.assertRegex(out["task-id"], r"^[0-9a-f]{32}$")
        # The answer shows the list as it was; nothing is visible yet.
        self.assertEqual(out["list"]["members_count"], 1)
        self.assertEqual(self.ok("GET", "/v3/lists/" + q(LIST))["list"]["members_count"], 1)
        self.assertError(self.api("GET", "/v3/lists/%s/members/u000@example.com" % q(LIST)),
                         404)
        self.assertEqual(self.ok("GET", "/v3/lists/%s/members" % q(LIST))["total_count"], 1)
        tasks = self.s.control("tasks", method="GET")["tasks"]
        self.assertEqual([(t["id"], t["status"], t["entries"]) for t in tasks],
                         [(out["task-id"], "pending", 101)])
        done = self.s.control("tasks/complete", {"id": out["task-id"]})
        self.assertEqual(done, {"completed": [out["task-id"]]})
        self.assertEqual(self.ok("GET", "/v3/lists/" + q(LIST))["list"]["members_count"], 102)
        self.ok("GET", "/v3/lists/%s/members/u100@example.com" % q(LIST))
        t = self.s.control("tasks", method="GET")["tasks"][0]
        self.assertEqual((t["status"], t["upserted-count"], t["failed-count"]), ("done", 101, 0))
        ev = t["events"][-1]
        self.assertEqual((ev["event"], ev["task-id"], ev["is-upsert"], ev["format"],
                          ev["upserted-count"], ev["mailing-list"]["address"]),
                         ("list_uploaded", out["task-id"], False, "json", 101, LIST))
        self.assertEqual(ev["mailing-list"]["list-id"], self.state_list()["id"])
        # Completing twice does nothing.
        self.assertEqual(self.s.control("tasks/complete", {})["completed"], [])
        with self.assertRaises(RuntimeError):
            self.s.control("tasks/complete", {"id": "nope"})

    def test_async_completes_by_itself(self):
        self.s.control("config", {"bulkAsyncDelay": 0.2, "bulkSyncMax": 2})
        out = self.bulk(["a@example.com", "b@example.com", "c@example.com"], upsert="yes")
        self.assertEqual(out["message"], "Mailing list upload started in background")
        wait_for(lambda: self.ok("GET", "/v3/lists/" + q(LIST))["list"]["members_count"] == 3,
                 "the upload to be applied")
        t = self.s.control("tasks", method="GET")["tasks"][0]
        self.assertEqual((t["status"], t["upsert"]), ("done", True))

    def test_list_deleted_before_task_runs(self):
        self.s.control("config", {"bulkAsyncHold": True, "bulkSyncMax": 1})
        tid = self.bulk(["a@example.com", "b@example.com"])["task-id"]
        self.ok("DELETE", "/v3/lists/" + q(LIST))
        self.make_list()          # the same address again is another list
        self.s.control("tasks/complete", {})
        t = self.s.control("tasks", method="GET")["tasks"][0]
        self.assertEqual((t["id"], t["status"], t["failed-count"]), (tid, "failed", 2))
        self.assertEqual(self.state_list()["members"], [])

    def test_limits_are_configurable(self):
        self.s.control("config", {"bulkMax": 3})
        self.assertError(self.api("POST", self.path, {"members": json.dumps(["a@x.com"] * 4)}),
                         400, "Too many members, max is 3")


class TestAuth(StandInCase):
    def test_basic_auth(self):
        for kw in ({"key": None}, {"key": "wrong"}, {"user": "apx"}, {"user": "api", "key": ""}):
            code, hdrs, body = self.api("GET", "/v3/lists", **kw)
            self.assertEqual((code, body), (401, "Forbidden"), kw)
            self.assertTrue(hdrs["content-type"].startswith("text/plain"))
            self.assertEqual(hdrs["www-authenticate"], 'Basic realm="MG API"')
        for header in ("Bearer " + KEY, "Basic !!!", "Basic " + base64.b64encode(
                b"api").decode()):
            code, _, _ = self.api("GET", "/v3/lists", key=None,
                                  headers={"Authorization": header})
            self.assertEqual(code, 401, header)
        self.ok("GET", "/v3/lists")
        self.s.control("config", {"authErrorBody": "json"})
        self.assertError(self.api("GET", "/v3/lists", key="wrong"), 401, "Invalid private key")
        self.s.control("config", {"apiKeys": None})
        self.ok("GET", "/v3/lists", key="anything")
        self.assertEqual(self.api("GET", "/v3/lists", key="anything", user="bob")[0], 401)
        counts = self.s.control("counts", method="GET")
        self.assertEqual(counts["counters"]["unauthorized"], 9)
        self.assertEqual(counts["counters"]["byStatus"]["401"], 9)


class TestRateLimit(StandInCase):
    def test_above_rate(self):
        self.s.control("config", {"rateLimit": 3, "rateWindow": 30})
        codes = [self.api("GET", "/v3/lists")[0] for _ in range(5)]
        self.assertEqual(codes, [200, 200, 200, 429, 429])
        self.assertError(self.api("GET", "/v3/lists"), 429, "Too Many Requests")
        self.assertNotIn("retry-after", self.api("GET", "/v3/lists")[1])
        self.s.control("config", {"retryAfter": 1, "rateLimit": 3})   # resets the limiter
        self.assertEqual(self.api("GET", "/v3/lists")[0], 200)
        self.api("GET", "/v3/lists")
        self.api("GET", "/v3/lists")
        code, hdrs, _ = self.api("GET", "/v3/lists")
        self.assertEqual(code, 429)
        self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
        # Unauthorized requests are not counted against the limit.
        self.assertEqual(self.api("GET", "/v3/lists", key="bad")[0], 401)
        self.assertGreaterEqual(self.s.control("counts", method="GET")["counters"]["rateLimited"],
                                4)

    def test_spaced_requests_never_429(self):
        self.s.control("config", {"rateLimit": 5})
        for _ in range(12):
            self.assertEqual(self.api("GET", "/v3/lists")[0], 200)
            time.sleep(0.2)

    def test_off_by_default(self):
        for _ in range(30):
            self.assertEqual(self.api("GET", "/v3/lists")[0], 200)


class TestFaults(StandInCase):
    def test_every_nth(self):
        self.make_list()
        self.s.control("faults", {"kind": "error", "every": 7})
        codes = [self.api("GET", "/v3/lists/" + q(LIST))[0] for _ in range(21)]
        self.assertEqual([i + 1 for i, c in enumerate(codes) if c != 200], [7, 14, 21])
        self.s.control("faults", {"clear": True})
        self.s.control("faults", {"kind": "error", "every": 2, "count": 1, "status": 503,
                                  "message": "Service Unavailable"})
        self.assertEqual(self.api("GET", "/v3/lists")[0], 200)
        self.assertError(self.api("GET", "/v3/lists"), 503, "Service Unavailable")
        self.assertEqual([self.api("GET", "/v3/lists")[0] for _ in range(4)], [200] * 4)
        self.assertEqual(self.s.control("faults", method="GET")["faults"], [])

    def test_default_error_and_html(self):
        self.s.control("faults", {"kind": "error", "count": 1})
        self.assertError(self.api("GET", "/v3/lists"), 500, "Internal Server Error")
        self.s.control("faults", {"kind": "error", "count": 1, "status": 502, "html": True})
        code, hdrs, body = self.api("GET", "/v3/lists")
        self.assertEqual(code, 502)
        self.assertTrue(hdrs["content-type"].startswith("text/html"))
        self.assertIn("<h1>502</h1>", body)

    def test_route_method_and_fraction(self):
        self.make_list()
        self.s.control("faults", {"kind": "error", "method": "POST",
                                  "route": "/v3/lists/{list}/members"})
        self.assertEqual(self.api("POST", "/v3/lists/%s/members" % q(LIST),
                                  {"address": "a@example.com"})[0], 500)
        self.assertEqual(self.api("GET", "/v3/lists/%s/members" % q(LIST))[0], 200)
        self.s.control("faults", {"clear": True})
        self.s.control("faults", {"kind": "error", "fraction": 0.5, "seed": 3})
        first = [self.api("GET", "/v3/lists")[0] for _ in range(20)]
        self.s.control("reset")
        self.s.control("faults", {"kind": "error", "fraction": 0.5, "seed": 3})
        second = [self.api("GET", "/v3/lists")[0] for _ in range(20)]
        self.assertEqual(first, second)
        self.assertTrue(0 < first.count(500) < 20)

    def test_after_apply_is_a_lost_reply(self):
        self.s.control("faults", {"kind": "error", "count": 1, "afterApply": True})
        self.assertEqual(self.api("POST", "/v3/lists", {"address": LIST})[0], 500)
        # The list was made: the retry finds it.
        self.assertError(self.api("POST", "/v3/lists", {"address": LIST}), 400,
                         "Duplicate object")

    def test_rate_limit_delay_drop(self):
        self.s.control("faults", {"kind": "rate_limit", "count": 1, "retryAfter": 2})
        code, hdrs, body = self.api("GET", "/v3/lists")
        self.assertEqual((code, body, hdrs["retry-after"]), (429, {"message": "Too Many Requests"},
                                                              "2"))
        self.s.control("faults", {"kind": "delay", "count": 1, "seconds": 1.5})
        with self.assertRaises(socket.timeout):
            self.api("GET", "/v3/lists", timeout=0.3)
        self.s.control("faults", {"kind": "drop", "count": 1})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.api("GET", "/v3/lists")
        self.assertEqual(self.api("GET", "/v3/lists")[0], 200)
        # The delayed call is logged when it is answered, after the others.
        wait_for(lambda: self.s.control("counts", method="GET")["total"] == 4, "4 calls")
        calls = self.s.control("calls", method="GET")["calls"]
        self.assertEqual([c["fault"] for c in calls], ["rate_limit", "drop", None, "delay"])
        self.assertEqual(self.s.control("counts", method="GET")["counters"]["faults"], 3)

    def test_bad_rules(self):
        for spec in ({"kind": "boom"}, {"every": 0}, {"count": -1}, {"fraction": 2},
                     {"status": 42}, {"fraction": "x"}):
            with self.assertRaises(RuntimeError, msg=spec):
                self.s.control("faults", spec)


class TestCalls(StandInCase):
    def test_log_counts_and_state(self):
        self.make_list()
        self.add("a@example.com", subscribed="yes")
        self.api("GET", "/v3/lists/nope@mg.example.test")
        self.api("GET", "/v3/nothing/here")
        self.api("PATCH", "/v3/lists/" + q(LIST))
        view = self.s.control("calls", method="GET")
        self.assertEqual(view["total"], 5)
        self.assertEqual(view["counts"], {"POST /v3/lists": 1, "POST /v3/lists/{list}/members": 1,
                                          "GET /v3/lists/{list}": 1, "GET (unknown)": 1,
                                          "PATCH /v3/lists/{list}": 1})
        self.assertEqual(view["countsByStatus"]["GET /v3/lists/{list}"], {"404": 1})
        self.assertEqual(view["counters"]["byStatus"], {"201": 1, "200": 1, "404": 2, "405": 1})
        c = view["calls"][1]
        self.assertEqual((c["method"], c["path"], c["route"], c["status"], c["authUser"]),
                         ("POST", "/v3/lists/%s/members" % q(LIST),
                          "/v3/lists/{list}/members", 200, "api"))
        self.assertEqual(c["form"], {"address": "a@example.com", "subscribed": "yes"})
        self.assertEqual(c["headers"]["content-type"], "application/x-www-form-urlencoded")
        self.assertEqual(c["response"]["member"]["address"], "a@example.com")
        self.assertEqual(view["calls"][3]["response"], {"message": "Not Found"})
        self.assertEqual(view["calls"][4]["response"], {"message": "Method Not Allowed"})
        since = self.s.control("calls", method="GET", query={"since": "4"})
        self.assertEqual([r["seq"] for r in since["calls"]], [4, 5])
        self.assertNotIn("calls", self.s.control("counts", method="GET"))
        self.s.control("calls", method="DELETE")
        view = self.s.control("calls", method="GET")
        self.assertEqual((view["calls"], view["counts"], view["counters"]["byStatus"]),
                         ([], {}, {}))
        st = self.s.control("state", method="GET")
        self.assertEqual([(lst["address"], lst["members_count"]) for lst in st["lists"]],
                         [(LIST, 1)])
        self.assertRegex(st["lists"][0]["id"], r"^[0-9a-f]{24}$")
        self.assertRegex(st["lists"][0]["members"][0]["sid"], r"^[0-9a-f]{24}$")
        with self.assertRaises(RuntimeError):
            self.s.control("lists/nope@x.com", method="GET")

    def test_control_over_http_is_not_logged_nor_authenticated(self):
        base = self.s.url
        self.s.control("config", {"rateLimit": 1, "rateWindow": 30})
        for _ in range(3):
            code, _, body = call(base, "GET", "/_standin/healthz", key=None)
            self.assertEqual((code, body), (200, "ok"))
        code, _, body = call(base, "POST", "/_standin/faults", key=None,
                             raw=json.dumps({"kind": "error", "every": 3}).encode(),
                             headers={"Content-Type": "application/json"})
        self.assertEqual(code, 200)
        self.assertIn("id", body)
        self.assertEqual(call(base, "GET", "/_standin/nope", key=None)[0], 404)
        self.assertEqual(call(base, "POST", "/_standin/config", key=None, raw=b"[1]")[0], 400)
        self.assertEqual(self.s.control("counts", method="GET")["total"], 0)

    def test_seed_config_reset(self):
        out = self.s.control("seed", {"lists": [{"address": "Team <team@mg.example.test>",
                                                 "members": [{"address": "x@example.com",
                                                              "vars": {"k": "v"},
                                                              "subscribed": False},
                                                             {"address": "y@example.com"}]}]})
        self.assertEqual(out, {"lists": ["team@mg.example.test"]})
        lst = self.ok("GET", "/v3/lists/team@mg.example.test")["list"]
        self.assertEqual((lst["name"], lst["members_count"]), ("Team", 2))
        self.assertEqual(self.s.control("counts", method="GET")["total"], 1)
        for bad in ({"lists": [{"address": "bad"}]},
                    {"lists": [{"address": "team@mg.example.test"}]},
                    {"lists": [{"address": "z@mg.example.test", "access_level": "no"}]}):
            with self.assertRaises(RuntimeError):
                self.s.control("seed", bad)
        with self.assertRaises(RuntimeError):
            self.s.control("config", {"nope": 1})
        with self.assertRaises(RuntimeError):
            self.s.control("config", {"listCreateStatus": 202})
        self.s.control("config", {"domain": "other.test"})
        self.s.control("reset", {"keepConfig": True})
        self.assertEqual(self.s.control("config", method="GET")["domain"], "other.test")
        self.assertEqual(self.s.control("state", method="GET")["lists"], [])
        self.s.control("reset")
        self.assertEqual(self.s.control("config", method="GET")["domain"],
                         mailgun_standin.DEFAULT_DOMAIN)


class TestEvents(StandInCase):
    key = "whk-0123456789abcdef"

    def setUp(self):
        super().setUp()
        self.rx = stu.Receiver(WEBHOOK_PATH)
        self.addCleanup(self.rx.close)

    def check_signed(self, got, key=None):
        self.assertEqual(got["headers"]["content-type"], "application/json")
        body = json.loads(got["body"])
        self.assertEqual(set(body), {"signature", "event-data"})
        sig = body["signature"]
        self.assertEqual(set(sig), {"timestamp", "token", "signature"})
        self.assertRegex(sig["timestamp"], r"^\d+$")
        self.assertRegex(sig["token"], r"^[0-9a-f]{50}$")
        self.assertLessEqual(abs(int(sig["timestamp"]) - time.time()), 5)
        self.assertEqual(sig["signature"], independent_signature(
            key or self.key, sig["timestamp"], sig["token"]))
        return body["event-data"]

    def send(self, **req):
        req.setdefault("url", self.rx.url)
        req.setdefault("signingKey", self.key)
        return self.s.control("events", req)

    def test_signature_helper(self):
        # mailgun-go's TestVerifyWebhookSignature fields (timestamp "123456789", token
        # "token"); the hex digest was computed with `openssl dgst -sha256 -hmac key`.
        want = "8c56daabdf5b1e84b50766e6bde638e2cc4249c3a8fdaa7079a03cb84b63b73f"
        self.assertEqual(mailgun_standin.sign("key", "123456789", "token"), want)
        self.assertEqual(independent_signature("key", "123456789", "token"), want)

    def test_unsubscribed_from_a_list(self):
        self.make_list()
        self.add("u@example.com", name="U")
        out = self.send(event="unsubscribed", recipient="u@example.com", list=LIST)
        self.assertEqual((out["delivered"], out["status"], out["error"]), (True, 200, None))
        self.assertEqual(self.rx.got[0]["path"], "/webhooks/mailgun")
        d = self.check_signed(self.rx.got[0])
        st = self.state_list()
        self.assertEqual(d["mailing-list"], {"address": LIST, "list-id": st["id"],
                                             "sid": st["members"][0]["sid"]})
        self.assertEqual((d["event"], d["recipient"], d["recipient-domain"], d["log-level"]),
                         ("unsubscribed", "u@example.com", "example.com", "info"))
        self.assertRegex(d["id"], r"^[A-Za-z0-9_-]{22}$")
        self.assertIsInstance(d["timestamp"], float)
        self.assertEqual(d["message"]["headers"]["to"], LIST)
        self.assertRegex(d["message"]["headers"]["message-id"],
                         r"^\d{14}\.[0-9a-f]{16}@mg\.example\.test$")
        for k in ("ip", "geolocation", "client-info", "tags", "campaigns", "user-variables",
                  "account", "domain"):
            self.assertIn(k, d)
        self.assertEqual(d["domain"], {"name": mailgun_standin.DEFAULT_DOMAIN})
        # The member clicked %mailing_list_unsubscribe_url%: unsubscribed in the list.
        m = self.ok("GET", "/v3/lists/%s/members/u@example.com" % q(LIST))["member"]
        self.assertIs(m["subscribed"], False)
        self.assertEqual(self.s.control("events", method="GET")["events"][0]["status"], 200)

    def test_complained_failed_and_suppressions(self):
        self.make_list()
        self.add("c@example.com")
        self.send(event="complained", recipient="c@example.com", list=LIST)
        self.send(event="failed", recipient="c@example.com", list=LIST)
        self.send(event="failed", recipient="t@example.com", severity="temporary")
        self.send(event="unsubscribed", recipient="d@example.com")
        self.send(event="delivered", recipient="c@example.com", apply=False)
        comp, perm, temp, unsub, delivered = (self.check_signed(g) for g in self.rx.got)
        self.assertEqual((comp["event"], comp["log-level"], comp["mailing-list"]["address"]),
                         ("complained", "warn", LIST))
        self.assertNotIn("ip", comp)
        self.assertEqual((perm["severity"], perm["reason"], perm["log-level"],
                          perm["delivery-status"]["code"]), ("permanent", "bounce", "error", 550))
        self.assertEqual(perm["envelope"]["targets"], "c@example.com")
        self.assertEqual((temp["severity"], temp["log-level"], temp["delivery-status"]["code"]),
                         ("temporary", "warn", 421))
        self.assertNotIn("mailing-list", temp)
        self.assertNotIn("mailing-list", unsub)
        self.assertEqual(delivered["delivery-status"]["code"], 250)
        sup = self.s.control("state", method="GET")["suppressions"]
        self.assertEqual([r["address"] for r in sup["complaints"]], ["c@example.com"])
        self.assertEqual([(r["address"], r["code"]) for r in sup["bounces"]],
                         [("c@example.com", "550")])
        self.assertEqual([(r["address"], r["tags"]) for r in sup["unsubscribes"]],
                         [("d@example.com", ["*"])])
        # A complaint does not change the list membership.
        self.assertIs(self.state_list()["members"][0]["subscribed"], True)

    def test_overrides(self):
        self.rx.status = 406
        out = self.send(event="unsubscribed", recipient="o@example.com", token="t" * 50,
                        timestamp=1614265330, data={"tags": ["news"], "ip": None,
                                                    "user-variables": {"contact": "ns/c"}},
                        envelope={"extra": 1}, headers={"user-agent": None, "X-Test": "1"})
        self.assertEqual((out["delivered"], out["status"]), (False, 406))
        got = self.rx.got[0]
        body = json.loads(got["body"])
        self.assertEqual(body["signature"], {"timestamp": "1614265330", "token": "t" * 50,
                                             "signature": independent_signature(
                                                 self.key, "1614265330", "t" * 50)})
        self.assertEqual(body["extra"], 1)
        d = body["event-data"]
        self.assertEqual((d["tags"], d["user-variables"]), (["news"], {"contact": "ns/c"}))
        self.assertNotIn("ip", d)
        self.assertNotIn("user-agent", got["headers"])
        self.assertEqual(got["headers"]["x-test"], "1")
        self.rx.status = 200
        self.send(event="opened", recipient="o@example.com", signature="bogus",
                  timestampOffset=-600, envelope={"signature": None})
        body = json.loads(self.rx.got[1]["body"])
        self.assertNotIn("signature", body)
        self.send(event="clicked", recipient="o@example.com", signature="bogus",
                  timestampOffset=-600)
        sig = json.loads(self.rx.got[2]["body"])["signature"]
        self.assertEqual(sig["signature"], "bogus")
        self.assertLess(abs(int(sig["timestamp"]) - (time.time() - 600)), 5)
        self.assertEqual(json.loads(self.rx.got[2]["body"])["event-data"]["url"],
                         "https://milo.example.test/news")
        self.send(body='{"not": "signed"}')
        self.assertEqual(self.rx.got[3]["body"], b'{"not": "signed"}')
        # The configured key is the default.
        self.s.control("config", {"webhookSigningKey": "cfg-key"})
        self.s.control("events", {"url": self.rx.url, "recipient": "o@example.com"})
        self.check_signed(self.rx.got[4], key="cfg-key")

    def test_errors(self):
        for req in ({"recipient": "a@example.com"},
                    {"url": "ftp://x", "recipient": "a@example.com"},
                    {"url": self.rx.url},
                    {"url": self.rx.url, "recipient": "not-an-address"},
                    {"url": self.rx.url, "recipient": "a@example.com", "list": "no@x.com"},
                    {"url": self.rx.url, "recipient": "a@example.com", "event": "failed",
                     "severity": "mild"},
                    {"url": self.rx.url, "recipient": "a@example.com",
                     "timestampOffset": "soon"}):
            with self.assertRaises(RuntimeError, msg=req):
                self.s.control("events", req)
        self.assertEqual(self.rx.got, [])
        out = self.s.control("events", {"url": "http://127.0.0.1:%d/" % stu.unused_port(),
                                        "recipient": "a@example.com", "timeout": 1})
        self.assertFalse(out["delivered"])
        self.assertIsNotNone(out["error"])


class TestTLS(StandInCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)
        self.pair = make_cert(self.tmp, "hooks.test")
        if self.pair is None:
            self.skipTest("openssl cannot make a test certificate")

    def test_https_webhook_delivery(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.pair)
        rx = stu.Receiver(WEBHOOK_PATH, ctx)
        self.addCleanup(rx.close)
        base = {"url": rx.url, "recipient": "a@example.com"}
        self.assertTrue(self.s.control("events", dict(base, caFile=self.pair[0]))["delivered"])
        ok = self.s.control("events", dict(base, caFile=self.pair[0], serverName="hooks.test"))
        self.assertTrue(ok["delivered"])
        wrong = self.s.control("events", dict(base, caFile=self.pair[0], serverName="x.test"))
        self.assertFalse(wrong["delivered"])
        self.assertIn("SSL", wrong["error"])
        self.assertFalse(self.s.control("events", dict(base))["delivered"])
        self.assertTrue(self.s.control("events", dict(base, insecure=True))["delivered"])
        self.assertEqual(len(rx.got), 3)

    def test_https_api(self):
        with StandIn(tls_cert=self.pair[0], tls_key=self.pair[1]) as s:
            self.assertTrue(s.url.startswith("https://127.0.0.1:"))
            ctx = ssl.create_default_context(cafile=self.pair[0])
            conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=5)
            h = {"Authorization": basic("api", KEY),
                 "Content-Type": "application/x-www-form-urlencoded"}
            try:
                conn.request("POST", "/v3/lists", body=b"address=t%40mg.example.test", headers=h)
                r = conn.getresponse()
                self.assertEqual(r.status, 201)
                self.assertEqual(json.loads(r.read())["list"]["address"], "t@mg.example.test")
                # Keep-alive: a second request on the same connection; links are https.
                conn.request("GET", "/v3/lists/pages", headers=h)
                r = conn.getresponse()
                page = json.loads(r.read())
                self.assertTrue(page["paging"]["next"].startswith("https://127.0.0.1:"))
            finally:
                conn.close()


class TestCommandLine(unittest.TestCase):
    def test_port_file_and_sigterm(self):
        p = stu.Program("mailgun_standin.py", [
            "--api-key", "key-cli", "--rate", "2", "--rate-window", "30",
            "--domain", "cli.test", "--webhook-signing-key", "cli-sign"])
        try:
            base = p.base
            self.assertEqual(call(base, "GET", "/v3/lists", key="key-cli")[0], 200)
            self.assertEqual(call(base, "GET", "/v3/lists", key=KEY)[0], 401)
            self.assertEqual(call(base, "GET", "/v3/lists", key="key-cli")[0], 200)
            self.assertEqual(call(base, "GET", "/v3/lists", key="key-cli")[0], 429)
            cfg = call(base, "GET", "/_standin/config", key=None)[2]
            self.assertEqual((cfg["domain"], cfg["webhookSigningKey"], cfg["rateLimit"]),
                             ("cli.test", "cli-sign", 2))
        finally:
            rc = p.stop()
        self.assertEqual(rc, 0)


class TestRouting(unittest.TestCase):
    def test_match_route(self):
        m = mailgun_standin.match_route
        self.assertEqual(m("/v3/lists/pages", "GET")[0], "/v3/lists/pages")
        self.assertEqual(m("/v3/lists/a%40b.c", "GET")[:2], ("/v3/lists/{list}", {"list": "a@b.c"}))
        self.assertEqual(m("/v3/lists/a@b.c/members/pages", "GET")[0],
                         "/v3/lists/{list}/members/pages")
        self.assertEqual(m("/v3/lists/a@b.c/members.json", "POST")[0],
                         "/v3/lists/{list}/members.json")
        t, p, h = m("/v3/lists/a@b.c/members/x%2By@z.c", "DELETE")
        self.assertEqual((t, p["member"]), ("/v3/lists/{list}/members/{member}", "x+y@z.c"))
        self.assertIsNone(m("/v3/lists/a@b.c/members.json", "GET")[2])
        self.assertEqual(m("/v3/lists//members", "GET"), (None, None, None))
        self.assertEqual(m("/v4/lists", "GET"), (None, None, None))
        self.assertTrue(re.match(RFC2822_RE, mailgun_standin.rfc2822(0)))
        self.assertEqual(mailgun_standin.rfc2822(0), "Thu, 01 Jan 1970 00:00:00 -0000")


if __name__ == "__main__":
    unittest.main()
