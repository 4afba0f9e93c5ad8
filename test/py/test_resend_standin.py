"""test_resend_standin.py -- the Resend stand-in speaks the documented shapes, limits and faults.

Run with: python3 -m unittest discover -s test/py -p 'test_*.py'
Every server listens on 127.0.0.1 only; every wait is bounded.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resend_standin  # noqa: E402
from resend_standin import StandIn  # noqa: E402
import required  # noqa: E402
import standin_testutil as stu  # noqa: E402
from standin_testutil import make_cert  # noqa: E402

KEY = resend_standin.DEFAULT_API_KEY
UA = "milo-contacts-test/1"
WEBHOOK_PATH = "/hooks/resend"

# The published Svix vector (svix/svix-webhooks go/webhook_test.go,
# shared/reference/resend-and-svix.md 2.4).
SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SVIX_TS = "1614265330"
SVIX_BODY = b'{"test": 2432232314}'
SVIX_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

RL_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


def call(base, method, path, body=None, key=KEY, ua=UA, headers=None, timeout=5, raw=None):
    """One request on a fresh connection -> (status, headers (lower-case), payload)."""
    h = {}
    if ua is not None:
        h["User-Agent"] = ua
    if key is not None:
        h["Authorization"] = "Bearer " + key
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    return stu.request(base, method, path, data, h, timeout)


def independent_signature(secret, msg_id, ts, body):
    """Svix's algorithm written out again, without the stand-in's helpers."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, msg_id.encode() + b"." + ts.encode() + b"." + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class StandInCase(stu.StandInCase):
    standin = StandIn
    call = staticmethod(call)
    config = {"rateLimit": 0}

    def assertError(self, resp, status, name, message=None):
        code, hdrs, body = resp
        self.assertEqual(code, status, body)
        self.assertTrue(hdrs["content-type"].startswith("application/json"))
        self.assertEqual(set(body), {"statusCode", "message", "name"})
        self.assertEqual(body["statusCode"], status)
        self.assertEqual(body["name"], name)
        if message is not None:
            self.assertEqual(body["message"], message)


class TestShapes(StandInCase):
    def test_segment_lifecycle(self):
        made = self.ok("POST", "/segments", {"name": "Registered Users"}, want=201)
        self.assertEqual(set(made), {"object", "id", "name"})
        self.assertEqual(made["object"], "segment")
        self.assertEqual(made["name"], "Registered Users")
        sid = made["id"]
        self.assertRegex(sid, resend_standin.UUID_RE)
        got = self.ok("GET", "/segments/" + sid)
        self.assertEqual(set(got), {"object", "id", "name", "created_at"})
        # Postgres text timestamps, as the REST API returns them.
        self.assertRegex(got["created_at"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00$")
        listed = self.ok("GET", "/segments")
        self.assertEqual(listed["object"], "list")
        self.assertIs(listed["has_more"], False)
        self.assertEqual(listed["data"], [{"id": sid, "name": "Registered Users",
                                           "created_at": got["created_at"]}])
        self.assertEqual(self.ok("PATCH", "/segments/" + sid, {"name": "Admins"}),
                         {"object": "segment", "id": sid})
        self.assertEqual(self.ok("GET", "/segments/" + sid)["name"], "Admins")
        self.assertEqual(self.ok("DELETE", "/segments/" + sid),
                         {"object": "segment", "id": sid, "deleted": True})
        self.assertError(self.api("GET", "/segments/" + sid), 404, "not_found",
                         "Audience not found")
        # Deleting what is not there is still a 200 (observed).
        self.assertEqual(self.ok("DELETE", "/segments/" + sid)["deleted"], True)

    def test_segment_errors(self):
        self.assertError(self.api("POST", "/segments", {}), 422, "missing_required_field",
                         "Missing `name` field.")
        self.assertError(self.api("POST", "/segments", {"name": 5}), 422, "validation_error")
        self.assertError(self.api("POST", "/segments", raw=b"{nope"), 400, "validation_error")
        self.assertError(self.api("POST", "/segments", [1]), 422, "validation_error")
        self.assertError(self.api("GET", "/segments/not-a-uuid"), 422, "invalid_parameter",
                         "The `id` must be a valid UUID.")
        self.assertError(self.api("PATCH", "/segments/78261eea-8f8b-4381-83c6-79fa7120f1cf",
                                  {"name": "x"}), 404, "not_found")

    def test_contact_lifecycle(self):
        sid = self.ok("POST", "/segments", {"name": "S"}, want=201)["id"]
        made = self.ok("POST", "/contacts", {
            "email": "Steve.Wozniak@example.com", "first_name": "Steve", "last_name": "Wozniak",
            "properties": {"company_name": "Acme", "seats": 3}, "segments": [{"id": sid}],
            "topics": [{"id": "c7a931cb-4507-46de-a3c1-e1b7efd274c2", "subscription": "opt_in"}],
        }, want=201)
        self.assertEqual(set(made), {"object", "id"})
        self.assertEqual(made["object"], "contact")
        cid = made["id"]
        got = self.ok("GET", "/contacts/" + cid)
        self.assertEqual(set(got), {"object", "id", "email", "first_name", "last_name",
                                    "created_at", "unsubscribed", "properties"})
        self.assertEqual(got["email"], "Steve.Wozniak@example.com")
        self.assertIs(got["unsubscribed"], False)
        self.assertEqual(got["properties"], {"company_name": {"value": "Acme", "type": "string"},
                                             "seats": {"value": 3, "type": "number"}})
        # By email too: as passed, lower-cased, percent-encoded.
        for key in ("Steve.Wozniak@example.com", "steve.wozniak@example.com",
                    "steve.wozniak%40example.com"):
            self.assertEqual(self.ok("GET", "/contacts/" + key)["id"], cid, key)
        self.assertEqual(self.ok("PATCH", "/contacts/" + cid, {
            "unsubscribed": True, "first_name": None, "properties": {"seats": None}}),
            {"object": "contact", "id": cid})
        got = self.ok("GET", "/contacts/steve.wozniak@example.com")
        self.assertIs(got["unsubscribed"], True)
        self.assertIsNone(got["first_name"])
        self.assertEqual(list(got["properties"]), ["company_name"])
        listed = self.ok("GET", "/contacts")
        self.assertEqual(listed["object"], "list")
        self.assertEqual(set(listed["data"][0]), {"id", "email", "first_name", "last_name",
                                                  "created_at", "unsubscribed"})
        self.assertEqual(self.ok("DELETE", "/contacts/steve.wozniak@example.com"),
                         {"object": "contact", "contact": "steve.wozniak@example.com",
                          "deleted": True})
        self.assertError(self.api("GET", "/contacts/" + cid), 404, "not_found",
                         "Contact not found")
        self.assertEqual(self.ok("DELETE", "/contacts/00000000-0000-0000-0000-000000000000"),
                         {"object": "contact", "contact": "00000000-0000-0000-0000-000000000000",
                          "deleted": True})

    def test_create_existing_email(self):
        cid = self.ok("POST", "/contacts", {"email": "a@example.com", "first_name": "A"},
                      want=201)["id"]
        # Resend answers success with the same contact (resend-node#494) ...
        again = self.ok("POST", "/contacts", {"email": "A@example.com", "first_name": "B"},
                        want=201)
        self.assertEqual(again["id"], cid)
        self.assertEqual(self.ok("GET", "/contacts/" + cid)["first_name"], "A")
        # ... and whether it overwrites is a setting, since nobody documents it.
        self.s.control("config", {"createExisting": "update"})
        self.ok("POST", "/contacts", {"email": "a@example.com", "first_name": "B"}, want=201)
        self.assertEqual(self.ok("GET", "/contacts/" + cid)["first_name"], "B")
        self.assertEqual(len(self.s.control("state", method="GET")["contacts"]), 1)

    def test_contact_errors(self):
        self.assertError(self.api("POST", "/contacts", {}), 422, "missing_required_field",
                         "Missing `email` field.")
        self.assertError(self.api("POST", "/contacts", {"email": "John <j@x.io>"}), 422,
                         "validation_error")
        self.assertError(self.api("POST", "/contacts", {"email": "a@b.io", "unsubscribed": "no"}),
                         422, "validation_error")
        self.assertError(self.api("POST", "/contacts", {"email": "a@b.io", "first_name": 1}),
                         422, "validation_error")
        self.assertError(self.api("POST", "/contacts", {
            "email": "a@b.io", "segments": [{"id": "78261eea-8f8b-4381-83c6-79fa7120f1cf"}]}),
            404, "not_found")
        self.assertError(self.api("PATCH", "/contacts/nobody@example.com", {"first_name": "x"}),
                         404, "not_found")

    def test_email_change(self):
        a = self.ok("POST", "/contacts", {"email": "a@example.com"}, want=201)["id"]
        self.ok("POST", "/contacts", {"email": "b@example.com"}, want=201)
        self.ok("PATCH", "/contacts/" + a, {"email": "c@example.com"})
        self.assertEqual(self.ok("GET", "/contacts/c@example.com")["id"], a)
        self.assertError(self.api("GET", "/contacts/a@example.com"), 404, "not_found")
        self.assertError(self.api("PATCH", "/contacts/" + a, {"email": "B@example.com"}),
                         422, "validation_error")
        self.s.control("config", {"allowEmailChange": False})
        self.assertError(self.api("PATCH", "/contacts/" + a, {"email": "d@example.com"}),
                         422, "validation_error")

    def test_memberships(self):
        sid = self.ok("POST", "/segments", {"name": "S"}, want=201)["id"]
        other = self.ok("POST", "/segments", {"name": "T"}, want=201)["id"]
        cid = self.ok("POST", "/contacts", {"email": "m@example.com"}, want=201)["id"]
        added = self.ok("POST", "/contacts/%s/segments/%s" % (cid, sid))
        self.assertEqual(added, {"object": "contact_segment", "id": sid, "contact_id": cid,
                                 "segment_id": sid})
        # Adding twice is harmless; by email works as by id.
        self.ok("POST", "/contacts/m@example.com/segments/" + sid)
        segs = self.ok("GET", "/contacts/%s/segments" % cid)
        self.assertEqual(segs["object"], "list")
        self.assertEqual([(d["id"], d["name"]) for d in segs["data"]], [(sid, "S")])
        self.assertEqual(set(segs["data"][0]), {"id", "name", "created_at"})
        members = self.ok("GET", "/segments/%s/contacts" % sid)
        self.assertEqual([d["id"] for d in members["data"]], [cid])
        self.assertEqual(self.ok("GET", "/contacts?segment_id=" + other)["data"], [])
        self.assertEqual([d["id"] for d in self.ok("GET", "/contacts?segment_id=" + sid)["data"]],
                         [cid])
        removed = self.ok("DELETE", "/contacts/%s/segments/%s" % (cid, sid))
        self.assertEqual(removed, {"object": "contact_segment", "id": cid, "contact_id": cid,
                                   "segment_id": sid, "deleted": True})
        self.assertEqual(self.ok("GET", "/contacts/%s/segments" % cid)["data"], [])
        again = self.ok("DELETE", "/contacts/%s/segments/%s" % (cid, sid))
        self.assertIs(again["deleted"], True)
        # Deleting a segment takes its memberships with it.
        self.ok("POST", "/contacts/%s/segments/%s" % (cid, other))
        self.ok("DELETE", "/segments/" + other)
        self.assertEqual(self.ok("GET", "/contacts/%s/segments" % cid)["data"], [])
        self.assertError(self.api("POST", "/contacts/nobody@example.com/segments/" + sid),
                         404, "not_found", "Contact not found")
        self.assertError(self.api("POST", "/contacts/%s/segments/%s" % (cid, other)),
                         404, "not_found", "Audience not found")
        self.assertError(self.api("POST", "/contacts/%s/segments/x" % cid), 422,
                         "invalid_parameter")
        self.assertError(self.api("GET", "/segments/%s/contacts" % other), 404, "not_found")

    def test_pagination(self):
        ids = [self.ok("POST", "/segments", {"name": "s%d" % i}, want=201)["id"] for i in range(5)]
        newest_first = list(reversed(ids))
        self.assertEqual([d["id"] for d in self.ok("GET", "/segments")["data"]], newest_first)
        page = self.ok("GET", "/segments?limit=2")
        self.assertEqual([d["id"] for d in page["data"]], newest_first[:2])
        self.assertIs(page["has_more"], True)
        seen, after, pages = [], None, 0
        while pages < 10:
            q = "/segments?limit=2" + ("&after=" + after if after else "")
            page = self.ok("GET", q)
            seen += [d["id"] for d in page["data"]]
            pages += 1
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        self.assertEqual(seen, newest_first)
        self.assertEqual(pages, 3)
        back = self.ok("GET", "/segments?limit=2&before=" + newest_first[3])
        self.assertEqual([d["id"] for d in back["data"]], newest_first[1:3])
        self.assertIs(back["has_more"], True)
        for bad in ("0", "101", "x", "-1"):
            self.assertError(self.api("GET", "/segments?limit=" + bad), 422, "validation_error",
                             resend_standin.PAGINATION_MESSAGE)
        self.assertError(self.api("GET", "/segments?after=%s&before=%s" % (ids[0], ids[1])),
                         422, "validation_error")
        self.assertError(self.api("GET", "/segments?after=78261eea-8f8b-4381-83c6-79fa7120f1cf"),
                         422, "validation_error")

    def test_segment_members_in_pages_of_100(self):
        """The audit's read: GET /contacts?segment_id=X&limit=100&after=<last id>."""
        sid = self.ok("POST", "/segments", {"name": "big"}, want=201)["id"]
        other = self.ok("POST", "/segments", {"name": "other"}, want=201)["id"]
        contacts = [{"email": "p%03d@example.com" % i, "segments": [sid]} for i in range(250)]
        contacts.append({"email": "elsewhere@example.com", "segments": [other]})
        ids = self.s.control("seed", {"contacts": contacts})["contacts"]
        seen, after, sizes = [], None, []
        while len(sizes) < 10:
            page = self.ok("GET", "/contacts?segment_id=%s&limit=100%s" % (
                sid, "&after=" + after if after else ""))
            self.assertEqual(page["object"], "list")
            sizes.append(len(page["data"]))
            seen += [d["id"] for d in page["data"]]
            self.assertEqual(set(page["data"][0]), {"id", "email", "first_name", "last_name",
                                                    "created_at", "unsubscribed"})
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        self.assertEqual(sizes, [100, 100, 50])
        self.assertEqual(sorted(seen), sorted(ids[:250]))
        # The always-paginated list defaults to 20; the "existing" one gives everything.
        self.assertEqual(len(self.ok("GET", "/segments/%s/contacts" % sid)["data"]), 20)
        self.assertEqual(len(self.ok("GET", "/contacts?segment_id=" + sid)["data"]), 250)
        for bad in ("0", "101", "1.5", ""):
            self.assertError(self.api("GET", "/contacts?segment_id=%s&limit=%s" % (sid, bad)),
                             422, "validation_error", resend_standin.PAGINATION_MESSAGE)
        self.assertError(self.api("GET", "/contacts?segment_id=%s&limit=100&after=%s" % (
            sid, ids[-1])), 422, "validation_error")    # a contact of another segment
        self.assertError(self.api("GET", "/contacts?segment_id=78261eea-8f8b-4381-83c6-"
                                  "79fa7120f1cf&limit=100"), 404, "not_found")

    def test_drift_controls(self):
        sid = self.ok("POST", "/segments", {"name": "g [ns/g]"}, want=201)["id"]
        cid = self.ok("POST", "/contacts", {"email": "a@example.com", "first_name": "A"},
                      want=201)["id"]
        self.s.control("calls", method="DELETE")
        self.assertEqual(self.s.control("drift", {"op": "addMember", "contact": "a@example.com",
                                                  "segment": sid}),
                         {"op": "addMember", "segment": sid, "contact": cid})
        self.assertEqual(self.ok("GET", "/contacts/%s/segments" % cid)["data"][0]["id"], sid)
        self.s.control("drift", {"op": "removeMember", "contact": cid, "segment": sid})
        self.assertEqual(self.ok("GET", "/contacts/%s/segments" % cid)["data"], [])
        self.s.control("drift", {"op": "updateContact", "contact": cid,
                                 "changes": {"first_name": "B", "unsubscribed": True,
                                             "email": "b@example.com"}})
        c = self.ok("GET", "/contacts/" + cid)
        self.assertEqual((c["first_name"], c["unsubscribed"], c["email"]),
                         ("B", True, "b@example.com"))
        self.s.control("drift", {"op": "renameSegment", "segment": sid, "name": "renamed"})
        self.assertEqual(self.ok("GET", "/segments/" + sid)["name"], "renamed")
        self.s.control("drift", {"op": "deleteContact", "contact": "b@example.com"})
        self.assertEqual(self.api("GET", "/contacts/" + cid)[0], 404)
        self.s.control("drift", {"op": "deleteSegment", "segment": sid})
        self.assertEqual(self.api("GET", "/segments/" + sid)[0], 404)
        # None of it is an API call: the call log has only the test's own GETs.
        counts = self.s.control("counts", method="GET")["counts"]
        self.assertEqual(set(counts), {"GET /contacts/{contact}/segments",
                                       "GET /contacts/{contact}", "GET /segments/{id}"})
        fresh = self.ok("POST", "/segments", {"name": "x"}, want=201)["id"]
        for bad, why in (({"op": "explode"}, "op must be one of"),
                         ({"op": "deleteSegment", "segment": sid}, "no segment"),
                         ({"op": "deleteContact", "contact": "nobody@example.com"}, "no contact"),
                         ({"op": "renameSegment", "segment": fresh}, "name must be")):
            with self.assertRaises(RuntimeError) as ctx:
                self.s.control("drift", bad)
            self.assertIn(why, str(ctx.exception))
        # Over HTTP an unknown object is a 404.
        u = urllib.parse.urlsplit(self.s.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conn.request("POST", "/_standin/drift", body=json.dumps(
            {"op": "deleteSegment", "segment": sid}))
        self.assertEqual(conn.getresponse().status, 404)
        conn.close()

    def test_unknown_routes(self):
        self.assertError(self.api("GET", "/nope"), 404, "not_found")
        self.assertError(self.api("GET", "/segments/"), 404, "not_found")
        self.assertError(self.api("GET", "/audiences"), 404, "not_found")
        self.assertError(self.api("PUT", "/segments", {}), 405, "method_not_allowed")
        self.assertError(self.api("POST", "/contacts/x@y.io", {}), 405, "method_not_allowed")

    def test_body_limit(self):
        # Refused from Content-Length alone, before any of the body is read.
        big = {"Content-Length": str(resend_standin.MAX_BODY + 1)}
        self.assertError(self.api("POST", "/segments", raw=b"{}", headers=big), 413,
                         "validation_error")
        code, hdrs, _ = self.api("POST", "/segments", raw=b"{}", headers=big)
        self.assertEqual(hdrs.get("connection"), "close")
        fits = b'{"name":"' + b"a" * (resend_standin.MAX_BODY - 11) + b'"}'
        self.assertEqual(len(fits), resend_standin.MAX_BODY)
        self.assertEqual(self.api("POST", "/segments", raw=fits)[0], 201)

    def test_seed_state_reset(self):
        sid = "78261eea-8f8b-4381-83c6-79fa7120f1cf"
        out = self.s.control("seed", {"segments": [{"id": sid, "name": "ns/admins"}],
                                      "contacts": [{"email": "x@example.com", "segments": [sid]}]})
        self.assertEqual(out["segments"], [sid])
        cid = out["contacts"][0]
        self.assertEqual(self.ok("GET", "/segments/" + sid)["name"], "ns/admins")
        state = self.s.control("state", method="GET")
        self.assertEqual(state["segments"][0]["contacts"], [cid])
        self.assertEqual(state["contacts"][0]["segments"], [sid])
        self.s.control("config", {"rateLimit": 7})
        self.s.control("reset")
        state = self.s.control("state", method="GET")
        self.assertEqual((state["segments"], state["contacts"], state["calls"]), ([], [], 0))
        self.assertEqual(state["config"]["rateLimit"], 0)


class TestAuth(StandInCase):
    config = {"rateLimit": 100, "restrictedKeys": ["re_sending_only"]}

    def test_keys(self):
        self.assertError(self.api("GET", "/segments", key=None), 401, "missing_api_key",
                         "Missing API key in the authorization header.")
        self.assertError(self.api("GET", "/segments", key=None,
                                  headers={"Authorization": "Basic YTpi"}), 401, "missing_api_key")
        self.assertError(self.api("GET", "/segments", key="re_wrong"), 403, "invalid_api_key")
        self.assertError(self.api("GET", "/segments", key="re_sending_only"), 401,
                         "restricted_api_key")
        code, hdrs, _ = self.api("GET", "/segments", key="re_wrong")
        for h in RL_HEADERS:
            self.assertIn(h, hdrs)
        self.s.control("config", {"apiKeys": None})
        self.ok("GET", "/segments", key="re_anything")
        self.s.control("config", {"apiKeys": ["re_a", "re_b"]})
        self.ok("GET", "/segments", key="re_b")
        self.assertError(self.api("GET", "/segments", key=KEY), 403, "invalid_api_key")

    def test_user_agent(self):
        code, hdrs, body = self.api("GET", "/segments", ua=None)
        self.assertEqual(code, 403)
        self.assertTrue(hdrs["content-type"].startswith("text/plain"))
        self.assertEqual(body, "error code: 1010")
        self.s.control("config", {"requireUserAgent": False})
        self.ok("GET", "/segments", ua=None)


class TestRateLimit(StandInCase):
    config = {"rateLimit": 2}

    def paced(self, n, rate):
        """n requests spaced 1/rate apart on the monotonic clock -> statuses."""
        start, out = time.monotonic(), []
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            out.append(self.api("GET", "/segments")[0])
        return out

    def test_default_rate_no_429(self):
        self.assertEqual(self.s.control("config", method="GET")["rateLimit"], 2)
        self.assertEqual(self.paced(5, 2), [200] * 5)

    def test_fast_rate_no_429(self):
        self.s.control("config", {"rateLimit": 20})
        self.assertEqual(self.paced(30, 20), [200] * 30)

    def test_above_rate(self):
        results = [self.api("GET", "/segments") for _ in range(5)]
        self.assertEqual([r[0] for r in results], [200, 200, 429, 429, 429])
        self.assertEqual([r[1]["ratelimit-remaining"] for r in results[:2]], ["1", "0"])
        for code, hdrs, body in results:
            self.assertEqual(hdrs["ratelimit-limit"], "2")
            self.assertEqual(hdrs["ratelimit-policy"], "2;w=1")
            self.assertGreaterEqual(int(hdrs["ratelimit-reset"]), 0)
        self.assertError(results[2], 429, "rate_limit_exceeded",
                         "Too many requests. You can only make 2 requests per second.")
        retry = int(results[2][1]["retry-after"])
        self.assertEqual(retry, 1)
        self.assertNotIn("retry-after", results[0][1])
        self.assertEqual(results[2][1]["ratelimit-remaining"], "0")
        time.sleep(retry)
        self.assertEqual(self.api("GET", "/segments")[0], 200)
        counts = self.s.control("calls", method="GET", query={"log": "0"})["countsByStatus"]
        self.assertEqual(counts["GET /segments"], {"200": 3, "429": 3})

    def test_concurrent_burst(self):
        self.s.control("config", {"rateLimit": 3})
        codes, lock = [], threading.Lock()

        def one():
            c = self.api("GET", "/segments")[0]
            with lock:
                codes.append(c)

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(sorted(codes), [200] * 3 + [429] * 7)

    def test_bucket_mode(self):
        self.s.control("config", {"rateMode": "bucket", "rateLimit": 4, "rateBurst": 4})
        codes = [self.api("GET", "/segments")[0] for _ in range(5)]
        self.assertEqual(codes, [200] * 4 + [429])
        time.sleep(0.3)   # 4/s refills one token in 0.25 s
        self.assertEqual(self.api("GET", "/segments")[0], 200)

    def test_headers_on_errors_and_off(self):
        code, hdrs, _ = self.api("GET", "/segments/not-a-uuid")
        self.assertEqual(code, 422)
        for h in RL_HEADERS:
            self.assertIn(h, hdrs)
        self.s.control("config", {"rateLimit": 0})
        codes = [self.api("GET", "/segments") for _ in range(10)]
        self.assertEqual([c[0] for c in codes], [200] * 10)
        self.assertNotIn("ratelimit-limit", codes[0][1])


class TestFaults(StandInCase):
    def test_error_next_n(self):
        fid = self.s.control("faults", {"kind": "error", "count": 2})["id"]
        self.assertEqual(self.s.control("faults", method="GET")["faults"][0]["id"], fid)
        self.assertError(self.api("GET", "/segments"), 500, "application_error",
                         "An unexpected error occurred.")
        self.assertError(self.api("POST", "/segments", {"name": "x"}), 500, "application_error")
        self.assertEqual(self.api("GET", "/segments")[0], 200)
        self.assertEqual(self.s.control("faults", method="GET")["faults"], [])
        log = self.s.control("calls", method="GET")["calls"]
        self.assertEqual([c["fault"] for c in log], ["error", "error", None])
        self.assertEqual(self.ok("GET", "/segments")["data"], [])

    def test_error_variants(self):
        self.s.control("faults", {"kind": "error", "status": 503, "count": 1})
        self.assertError(self.api("GET", "/segments"), 503, "service_unavailable")
        self.s.control("faults", {"kind": "error", "status": 502, "html": True, "count": 1})
        code, hdrs, body = self.api("GET", "/segments")
        self.assertEqual(code, 502)
        self.assertTrue(hdrs["content-type"].startswith("text/html"))
        self.s.control("faults", {"kind": "error", "status": 429, "name": "daily_quota_exceeded",
                                  "message": "quota", "count": 1})
        self.assertError(self.api("GET", "/segments"), 429, "daily_quota_exceeded", "quota")

    def test_fraction_is_seeded(self):
        self.s.control("faults", {"kind": "error", "fraction": 0.3, "seed": 42})
        got = [self.api("GET", "/segments")[0] == 500 for _ in range(40)]
        rng = random.Random(42)
        want = [rng.random() < 0.3 for _ in range(40)]
        self.assertEqual(got, want)
        self.assertTrue(0 < sum(got) < 40)

    def test_forced_429(self):
        self.s.control("faults", {"kind": "rate_limit", "count": 2, "retryAfter": 3})
        for _ in range(2):
            code, hdrs, body = self.api("GET", "/segments")
            self.assertError((code, hdrs, body), 429, "rate_limit_exceeded")
            self.assertEqual(hdrs["retry-after"], "3")
        self.assertEqual(self.api("GET", "/segments")[0], 200)

    def test_delay_and_timeout(self):
        self.s.control("faults", {"kind": "delay", "seconds": 0.3, "count": 1})
        t0 = time.monotonic()
        self.assertEqual(self.api("GET", "/segments")[0], 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.29)
        t0 = time.monotonic()
        self.api("GET", "/segments")
        self.assertLess(time.monotonic() - t0, 0.25)
        self.s.control("faults", {"kind": "delay", "seconds": 3, "count": 1})
        with self.assertRaises(socket.timeout):
            self.api("GET", "/segments", timeout=0.3)

    def test_drop(self):
        self.s.control("faults", {"kind": "drop", "count": 1})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.api("GET", "/segments")
        self.assertEqual(self.api("GET", "/segments")[0], 200)

    def test_after_apply(self):
        # The write happens, the answer is lost: the client must adopt, not duplicate.
        self.s.control("faults", {"kind": "error", "count": 1, "afterApply": True,
                                  "method": "POST", "route": "/segments"})
        self.assertEqual(self.api("POST", "/segments", {"name": "ns/g"})[0], 500)
        self.assertEqual([d["name"] for d in self.ok("GET", "/segments")["data"]], ["ns/g"])

    def test_route_filter_and_clear(self):
        self.s.control("faults", {"kind": "error", "method": "GET", "route": "/contacts/{contact}"})
        self.ok("POST", "/contacts", {"email": "f@example.com"}, want=201)
        self.assertEqual(self.api("GET", "/contacts/f@example.com")[0], 500)
        self.assertEqual(self.api("GET", "/contacts/f@example.com")[0], 500)
        self.ok("GET", "/contacts")
        self.s.control("faults", {"clear": True})
        self.ok("GET", "/contacts/f@example.com")

    def test_every_then_fraction(self):
        # Every matching call is seen; each 3rd one is drawn, and only a fired
        # call uses up count.
        self.s.control("faults", {"kind": "error", "every": 3, "fraction": 0.5, "seed": 7,
                                  "count": 4, "route": "/segments"})
        got = [self.api("GET", "/segments")[0] == 500 for _ in range(30)]
        rng = random.Random(7)
        want, left = [], 4
        for n in range(1, 31):
            fire = left > 0 and n % 3 == 0 and rng.random() < 0.5
            left -= fire
            want.append(fire)
        self.assertEqual(got, want)
        faults = self.s.control("faults", method="GET")["faults"]
        if left:
            self.assertEqual((faults[0]["seen"], faults[0]["fired"]), (30, 4 - left))
        else:
            self.assertEqual(faults, [])

    def test_bad_fault(self):
        for spec in ({"kind": "explode"}, {"count": 0}, {"every": 0}, {"fraction": 2},
                     {"fraction": "x"}, {"status": "x"}):
            with self.assertRaises(RuntimeError, msg=spec):
                self.s.control("faults", spec)


class TestCalls(StandInCase):
    def test_counts_and_log(self):
        sid = self.ok("POST", "/segments", {"name": "a"}, want=201)["id"]
        self.ok("GET", "/segments/" + sid)
        self.ok("GET", "/segments/" + sid)
        cid = self.ok("POST", "/contacts", {"email": "c@example.com"}, want=201)["id"]
        self.ok("POST", "/contacts/%s/segments/%s" % (cid, sid))
        self.api("GET", "/nowhere")
        self.api("GET", "/segments", key=None)
        view = self.s.control("calls", method="GET")
        self.assertEqual(view["counts"], {
            "POST /segments": 1, "GET /segments/{id}": 2, "POST /contacts": 1,
            "POST /contacts/{contact}/segments/{segment}": 1, "GET (unknown)": 1,
            "GET /segments": 1})
        self.assertEqual(view["countsByStatus"]["GET /segments"], {"401": 1})
        self.assertEqual(view["total"], 7)
        first = view["calls"][0]
        self.assertEqual((first["seq"], first["method"], first["path"], first["route"],
                          first["status"]), (1, "POST", "/segments", "/segments", 201))
        self.assertEqual(first["body"], {"name": "a"})
        self.assertEqual(first["response"]["id"], sid)
        self.assertEqual(first["headers"]["user-agent"], UA)
        self.assertEqual(first["headers"]["authorization"], "Bearer " + KEY)
        self.assertEqual(first["headers"]["content-type"], "application/json")
        later = self.s.control("calls", method="GET", query={"since": "6"})["calls"]
        self.assertEqual([c["seq"] for c in later], [6, 7])
        # Control calls are not API calls.
        call(self.s.url, "GET", "/_standin/state", key=None, ua=None)
        self.assertEqual(self.s.control("calls", method="GET")["total"], 7)
        self.s.control("calls", method="DELETE")
        self.assertEqual(self.s.control("calls", method="GET", query={"log": "0"})["counts"], {})

    def test_control_over_http(self):
        base = self.s.url
        self.assertEqual(call(base, "GET", "/_standin/healthz", key=None, ua=None)[2], "ok")
        code, _, body = call(base, "POST", "/_standin/config", {"rateLimit": -1}, key=None)
        self.assertEqual(code, 400)
        code, _, body = call(base, "POST", "/_standin/nothing", {}, key=None)
        self.assertEqual(code, 404)
        code, _, body = call(base, "POST", "/_standin/faults", key=None, raw=b"[")
        self.assertEqual(code, 400)
        code, _, body = call(base, "POST", "/_standin/faults", {"kind": "error", "count": 1},
                             key=None)
        self.assertEqual(code, 200)
        self.assertIn("id", body)


class TestEvents(StandInCase):
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

    def setUp(self):
        super().setUp()
        self.rx = stu.Receiver(WEBHOOK_PATH)
        self.addCleanup(self.rx.close)

    def check_signed(self, got):
        h = got["headers"]
        for name in ("svix-id", "svix-timestamp", "svix-signature"):
            self.assertIn(name, h)
        self.assertTrue(h["svix-id"].startswith("msg_"))
        self.assertLessEqual(abs(int(h["svix-timestamp"]) - time.time()), 5)
        entries = h["svix-signature"].split(" ")
        want = independent_signature(self.secret, h["svix-id"], h["svix-timestamp"], got["body"])
        self.assertIn("v1," + want, entries)
        self.assertEqual(h["content-type"], "application/json")
        return json.loads(got["body"])

    def test_published_vector(self):
        self.assertEqual(resend_standin.sign(SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_BODY), SVIX_SIG)
        self.assertEqual("v1," + independent_signature(SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_BODY),
                         SVIX_SIG)

    def test_contact_unsubscribed(self):
        sid = self.ok("POST", "/segments", {"name": "S"}, want=201)["id"]
        cid = self.ok("POST", "/contacts", {"email": "u@example.com", "first_name": "U",
                                            "segments": [sid]}, want=201)["id"]
        out = self.s.control("events", {"url": self.rx.url, "secret": self.secret,
                                        "type": "contact.updated", "contact": "u@example.com",
                                        "changes": {"unsubscribed": True}})
        self.assertEqual((out["delivered"], out["status"], out["error"]), (True, 200, None))
        self.assertEqual(len(self.rx.got), 1)
        self.assertEqual(self.rx.got[0]["path"], "/hooks/resend")
        ev = self.check_signed(self.rx.got[0])
        self.assertEqual(ev["type"], "contact.updated")
        self.assertRegex(ev["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        d = ev["data"]
        self.assertEqual((d["id"], d["email"], d["unsubscribed"], d["segment_ids"],
                          d["audience_id"], d["first_name"], d["last_name"]),
                         (cid, "u@example.com", True, [sid], sid, "U", None))
        for k in ("created_at", "updated_at"):
            self.assertIn(k, d)
        # The provider's state changed too, as when a user unsubscribes at Resend.
        self.assertIs(self.ok("GET", "/contacts/" + cid)["unsubscribed"], True)
        self.assertEqual(self.s.control("events", method="GET")["events"][0]["status"], 200)

    def test_other_types(self):
        cid = self.ok("POST", "/contacts", {"email": "n@example.com"}, want=201)["id"]
        self.s.control("events", {"url": self.rx.url, "secret": self.secret,
                                  "type": "contact.created", "contact": cid})
        self.s.control("events", {"url": self.rx.url, "secret": self.secret,
                                  "type": "email.delivered", "data": {"to": ["n@example.com"]}})
        self.s.control("events", {"url": self.rx.url, "secret": self.secret,
                                  "type": "contact.deleted", "contact": cid})
        created, delivered, deleted = (self.check_signed(g) for g in self.rx.got)
        self.assertEqual((created["type"], created["data"]["id"], created["data"]["unsubscribed"]),
                         ("contact.created", cid, False))
        self.assertNotIn("audience_id", created["data"])
        self.assertEqual(delivered["type"], "email.delivered")
        self.assertEqual(delivered["data"]["to"], ["n@example.com"])
        self.assertIn("email_id", delivered["data"])
        self.assertEqual(deleted["type"], "contact.deleted")
        self.assertEqual(self.api("GET", "/contacts/" + cid)[0], 404)

    def test_overrides(self):
        out = self.s.control("events", {
            "url": self.rx.url, "secret": self.secret, "body": '{"type": "x"}',
            "id": "msg_fixed", "timestampOffset": -600,
            "extraSignatures": ["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,abc"],
            "headers": {"webhook-id": "msg_fixed", "user-agent": None}})
        self.assertTrue(out["delivered"])
        got = self.rx.got[0]
        h = got["headers"]
        self.assertEqual(got["body"], b'{"type": "x"}')
        self.assertEqual(h["svix-id"], "msg_fixed")
        self.assertEqual(h["webhook-id"], "msg_fixed")
        self.assertNotIn("user-agent", h)
        self.assertLess(abs(int(h["svix-timestamp"]) - (time.time() - 600)), 5)
        entries = h["svix-signature"].split(" ")
        self.assertEqual(len(entries), 3)
        self.assertEqual(entries[2], "v1," + independent_signature(
            self.secret, "msg_fixed", h["svix-timestamp"], got["body"]))
        self.rx.status = 401
        out = self.s.control("events", {"url": self.rx.url, "signature": "v1,bogus",
                                        "type": "email.delivered", "timestamp": 1614265330,
                                        "headers": {"svix-id": None}})
        self.assertEqual((out["delivered"], out["status"]), (False, 401))
        h = self.rx.got[1]["headers"]
        self.assertEqual((h["svix-signature"], h["svix-timestamp"]), ("v1,bogus", "1614265330"))
        self.assertNotIn("svix-id", h)

    def test_errors(self):
        with self.assertRaises(RuntimeError):
            self.s.control("events", {"secret": self.secret})
        with self.assertRaises(RuntimeError):
            self.s.control("events", {"url": self.rx.url})
        with self.assertRaises(RuntimeError):
            self.s.control("events", {"url": self.rx.url, "secret": "whsec_!!"})
        with self.assertRaises(RuntimeError):
            self.s.control("events", {"url": self.rx.url, "secret": self.secret,
                                      "contact": "nobody@example.com"})
        # Nobody listening: reported, not raised.
        out = self.s.control("events", {"url": "http://127.0.0.1:%d/" % stu.unused_port(),
                                        "secret": self.secret, "type": "email.delivered",
                                        "timeout": 1})
        self.assertFalse(out["delivered"])
        self.assertIsNotNone(out["error"])


class TestEventsTLS(StandInCase):
    secret = TestEvents.secret

    def test_https_delivery(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        pair = make_cert(tmp, "webhook.test")
        if pair is None:
            required.missing("openssl cannot make a test certificate")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*pair)
        rx = stu.Receiver(WEBHOOK_PATH, ctx)
        self.addCleanup(rx.close)
        base = {"url": rx.url, "secret": self.secret, "type": "email.delivered"}
        self.assertTrue(self.s.control("events", dict(base, caFile=pair[0]))["delivered"])
        self.assertTrue(self.s.control("events", dict(base, caFile=pair[0],
                                                       serverName="webhook.test"))["delivered"])
        wrong = self.s.control("events", dict(base, caFile=pair[0], serverName="other.test"))
        self.assertFalse(wrong["delivered"])
        self.assertIn("SSL", wrong["error"])
        untrusted = self.s.control("events", dict(base))
        self.assertFalse(untrusted["delivered"])
        self.assertTrue(self.s.control("events", dict(base, insecure=True))["delivered"])
        self.assertEqual(len(rx.got), 3)
        for g in rx.got:
            h = g["headers"]
            self.assertIn("v1," + independent_signature(self.secret, h["svix-id"],
                                                        h["svix-timestamp"], g["body"]),
                          h["svix-signature"].split(" "))


class TestServeTLS(unittest.TestCase):
    def test_https_api(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        pair = make_cert(tmp, "api.resend.test")
        if pair is None:
            required.missing("openssl cannot make a test certificate")
        with StandIn(tls_cert=pair[0], tls_key=pair[1]) as s:
            self.assertTrue(s.url.startswith("https://127.0.0.1:"))
            ctx = ssl.create_default_context(cafile=pair[0])
            conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=5)
            try:
                conn.request("POST", "/segments", body=b'{"name":"t"}', headers={
                    "User-Agent": UA, "Authorization": "Bearer " + KEY,
                    "Content-Type": "application/json"})
                r = conn.getresponse()
                self.assertEqual(r.status, 201)
                self.assertEqual(json.loads(r.read())["object"], "segment")
                # Keep-alive: a second request on the same connection.
                conn.request("GET", "/segments", headers={"User-Agent": UA,
                                                          "Authorization": "Bearer " + KEY})
                r = conn.getresponse()
                self.assertEqual(len(json.loads(r.read())["data"]), 1)
            finally:
                conn.close()


class TestCommandLine(unittest.TestCase):
    def test_port_file_and_sigterm(self):
        p = stu.Program("resend_standin.py", ["--api-key", "re_cli", "--rate", "5"])
        try:
            base = p.base
            code, hdrs, _ = call(base, "GET", "/segments", key="re_cli")
            self.assertEqual((code, hdrs["ratelimit-limit"]), (200, "5"))
            self.assertEqual(call(base, "GET", "/segments", key=KEY)[0], 403)
        finally:
            rc = p.stop()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
