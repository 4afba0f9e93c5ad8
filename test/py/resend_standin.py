#!/usr/bin/env python3
"""resend_standin.py -- a stand-in for the Resend API (contacts and segments), for tests.

The reconciler's tests and `make run` point the provider client here instead
of https://api.resend.com. It speaks the shapes recorded in
shared/reference/resend-and-svix.md (section 1), keeps its state in memory,
can be told to fail, and can send Svix-signed webhooks the way Resend does.
Python 3 standard library only; it listens on 127.0.0.1 only.

Starting it
===========
    python3 test/py/resend_standin.py --port 0 --port-file F [--api-key K ...]
        [--any-key] [--rate 2] [--rate-window 1] [--rate-mode sliding|bucket]
        [--no-user-agent-check] [--tls-cert C --tls-key K] [-v]

It writes the chosen port to F (atomically), logs to stderr and exits 0 on
SIGTERM or SIGINT. The default accepted API key is "re_standin_key".

In-process use:
    from resend_standin import StandIn
    s = StandIn(rateLimit=20).start()    # s.url, s.port
    s.control("faults", {"kind": "error", "count": 1})
    s.stop()                             # also a context manager

The API (base URL = s.url; no /v1 prefix, as Resend)
====================================================
Every request needs `User-Agent` (else 403, plain text "error code: 1010",
as Cloudflare answers Resend requests without one) and
`Authorization: Bearer <key>` (missing or not Bearer: 401 missing_api_key;
unknown key: 403 invalid_api_key; a key listed in restrictedKeys: 401
restricted_api_key). Then the rate limit (429 rate_limit_exceeded with
`retry-after`), then injected faults, then the route:

  POST   /segments                       {name} -> 201 {object:"segment", id, name}
  GET    /segments                       -> {object:"list", has_more, data:[{id, name, created_at}]}
  GET    /segments/{id}                  -> {object:"segment", id, name, created_at}
  PATCH  /segments/{id}                  {name} -> {object:"segment", id}   (in the docs,
                                         not in the OpenAPI spec)
  DELETE /segments/{id}                  -> {object:"segment", id, deleted:true}, also when absent
  GET    /segments/{id}/contacts         -> list of contacts in the segment
  POST   /contacts                       {email, first_name, last_name, unsubscribed,
                                         properties, segments:[{id}|id], topics} ->
                                         201 {object:"contact", id}; an existing email
                                         answers 201 with the existing id (see createExisting)
  GET    /contacts                       ?segment_id= -> list of {id, email, first_name,
                                         last_name, created_at, unsubscribed}
  GET    /contacts/{id_or_email}         -> {object:"contact", id, email, first_name,
                                         last_name, created_at, unsubscribed,
                                         properties:{k:{value, type}}}
  PATCH  /contacts/{id_or_email}         {first_name, last_name, unsubscribed,
                                         properties (null clears a key), email} ->
                                         {object:"contact", id}
  DELETE /contacts/{id_or_email}         -> {object:"contact", contact:<as passed>,
                                         deleted:true}, also when absent
  GET    /contacts/{c}/segments          -> list of {id, name, created_at (when added)}
  POST   /contacts/{c}/segments/{s}      -> {object:"contact_segment", id:s, contact_id,
                                         segment_id}
  DELETE /contacts/{c}/segments/{s}      -> {object:"contact_segment", id:c, contact_id,
                                         segment_id, deleted:true}, also when absent

Lists: `limit` 1..100 (else 422 validation_error with Resend's message),
`after`/`before` cursors (ids; both at once or an unknown id: 422
validation_error). Without `limit`, /segments and /contacts return
everything (Resend's "existing" endpoints); the two membership lists page by
20. Order: newest first (the reference does not say; do not rely on it).

Errors are {statusCode, message, name}: 400 validation_error (body not JSON
or not an object), 401/403 as above, 404 not_found ("Contact not found";
segments say "Audience not found", as observed; unknown paths "The requested
endpoint does not exist."), 405 method_not_allowed, 413 validation_error
(body over 1 MiB), 422 missing_required_field ("Missing `email` field."),
validation_error (wrong field types, bad email, pagination), invalid_parameter
("The `id` must be a valid UUID." for segment ids), 429
rate_limit_exceeded, 500 application_error.

Choices where the reference is silent (stated so tests do not over-fit):
emails are matched case-insensitively; duplicate segment names are allowed;
a PATCH to an email another contact has is 422 validation_error;
properties need no prior /contact-properties definition; the conflicting
bodies of the membership calls are answered with the union of the
documented fields. Contact topics, properties, imports and audiences are
not served (404).

Rate limit: `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`
(seconds) and `ratelimit-policy` ("2;w=1") are on every API response except
the 1010 page; a 429 adds `retry-after` (whole seconds, >= 1). Mode
"sliding" (default): at most rateLimit accepted requests in any rateWindow
seconds (the window is shortened by rateGraceMs to absorb scheduling
jitter), so a client spacing requests 1/rate apart never sees a 429, while
a token bucket whose burst equals the rate can. Mode "bucket": a token
bucket of rateBurst tokens refilled at rateLimit per rateWindow. Rejected
requests do not count. rateLimit 0 turns limiting (and the headers) off.
Requests rejected for the key or the User-Agent are not counted either.

Control API (plain HTTP on the same port, under /_standin/, never
authenticated, never rate-limited, not in the call log). JSON in and out.
=========================================================================
  GET    /_standin/healthz       "ok"
  GET    /_standin/state         {segments:[{id, name, created_at, contacts:[ids]}],
                                 contacts:[{id, email, first_name, last_name,
                                 unsubscribed, properties, created_at, updated_at,
                                 segments:[ids]}], config, faults, calls}
  POST   /_standin/reset         forget objects, calls, faults and events; config back
                                 to the start-up values ({"keepConfig": true} keeps it)
  POST   /_standin/seed          {segments:[{id?, name}], contacts:[{id?, email,
                                 first_name?, last_name?, unsubscribed?, properties?,
                                 segments:[ids]?}]} -> {segments:[ids], contacts:[ids]}
                                 (no limits, no call log)
  GET    /_standin/config        the current config
  POST   /_standin/config        set any of: apiKeys ([keys] | null = any key),
                                 restrictedKeys ([]), requireUserAgent (true),
                                 rateLimit (2; 0 = off), rateWindow (1 s),
                                 rateMode ("sliding" | "bucket"), rateBurst (null =
                                 rateLimit), rateGraceMs (50), createExisting ("keep":
                                 POST of an existing email changes nothing | "update":
                                 it applies the given fields), allowEmailChange (true),
                                 rateHeaders (true; false: no ratelimit-* headers, a
                                 quota enforced but not stated).
                                 Rate settings reset the limiter.
  GET    /_standin/calls         ?since=N&log=0 -> {total, next, counts:{"POST
                                 /segments": n}, countsByStatus:{"POST /segments":
                                 {"201": n}}, calls:[{seq, time, method, path, route,
                                 query, headers:{authorization, user-agent,
                                 content-type, accept, idempotency-key}, body, status,
                                 response, fault, durationMs}]}; routes are templates
                                 ("PATCH /contacts/{contact}"), unknown paths count as
                                 "<METHOD> (unknown)". Every API request is counted,
                                 whatever its answer.
  GET    /_standin/counts        the same without the log
  DELETE /_standin/calls         clear the log and the counts
  GET    /_standin/faults        the active fault rules (with remaining, seen: the
                                 matching calls, fired)
  POST   /_standin/faults        add a rule -> {"id": n}. Fields: kind ("error" |
                                 "rate_limit" | "delay" | "drop"), every (N: fire on
                                 the Nth, 2Nth, ... matching call), fraction (0..1:
                                 then fire on that share of those calls, drawn from
                                 random.Random(seed)), count (fire N times; omitted =
                                 until cleared; a call not fired on does not use it
                                 up), seed (0), method, route
                                 (template such as "/contacts/{contact}"), and per kind:
                                   error: status (500), name (application_error for
                                     500, service_unavailable for 503, ...), message,
                                     html (true: a text/html body, as an edge proxy
                                     sends), afterApply (true: do the operation, then
                                     answer the error: a lost reply)
                                   rate_limit: retryAfter (1): a 429 rate_limit_exceeded
                                     whatever the real limiter says
                                   delay: seconds: wait, then answer normally (a client
                                     timeout shorter than this is a timeout)
                                   drop: close the connection without an answer
                                     (afterApply as for error)
                                 {"clear": true} removes every rule.
  DELETE /_standin/faults        remove every rule
  POST   /_standin/events        send one Svix-signed webhook, as Resend does:
                                 {url (required; http or https), secret ("whsec_<b64>";
                                 required unless signature is given), type
                                 ("contact.updated"), contact (id or email: the data is
                                 the stored contact, after applying changes:{first_name,
                                 last_name, unsubscribed, email}; contact.deleted also
                                 deletes it), data (merged over the generated data),
                                 body (raw text sent as is instead of an envelope), id
                                 ("msg_..." generated), timestamp (now), timestampOffset
                                 (0 s), signature (header sent verbatim),
                                 extraSignatures ([entries] put before ours),
                                 headers ({name: value | null to omit}), caFile,
                                 insecure (false: verify TLS), serverName (TLS name to
                                 check when url has an address), timeout (5 s)}
                                 -> {delivered (2xx), status, responseBody,
                                 responseHeaders, error, request:{url, headers, body}}
  GET    /_standin/events        every event sent so far (the same records)
  POST   /_standin/drift         change the state as someone using Resend's dashboard
                                 would (no call log, no rate limit), to make drift:
                                 {op: "deleteSegment" | "renameSegment" (name) |
                                 "addMember" | "removeMember" (contact, segment) |
                                 "updateContact" (contact, changes:{email, first_name,
                                 last_name, unsubscribed}) | "deleteContact" (contact)};
                                 segment is an id, contact an id or email; 404 when
                                 either is unknown -> {op, segment, contact} (ids)

Envelopes are {type, created_at (ISO 8601, ms), data}; contact.* data is
{id, audience_id (first segment, legacy), segment_ids, created_at,
updated_at, email, first_name, last_name, unsubscribed}; email.* data is
{email_id, from, to, subject, created_at} (minimal: the reference quotes
no email payload). Signatures: "v1," + base64(HMAC-SHA256(base64-decoded
secret, "<svix-id>.<svix-timestamp>.<body>")); see sign() below.
"""

import argparse
import base64
import collections
import hashlib
import hmac
import json
import math
import random
import re
import sys
import time
import traceback
import urllib.parse
import uuid
from datetime import datetime, timezone

import standin_http
from standin_http import ControlError

DEFAULT_API_KEY = "re_standin_key"
MAX_BODY = 1024 * 1024              # request body cap (413 past it)
CALL_LOG_MAX = 20000
EVENT_LOG_MAX = 1000
PAGE_MIN, PAGE_MAX, PAGE_DEFAULT = 1, 100, 20
EMAIL_MAX = 254

PAGINATION_MESSAGE = ("The pagination limit must be a number between 1 and 100. "
                      "See https://resend.com/docs/pagination for more information.")
SEGMENT_NOT_FOUND = "Audience not found"
CONTACT_NOT_FOUND = "Contact not found"

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")

ERROR_NAMES = {400: "validation_error", 401: "missing_api_key", 403: "invalid_api_key",
               404: "not_found", 405: "method_not_allowed", 409: "resource_locked",
               422: "validation_error", 429: "rate_limit_exceeded",
               500: "application_error", 503: "service_unavailable"}
ERROR_MESSAGES = {"application_error": "An unexpected error occurred.",
                  "service_unavailable": "API is temporarily unavailable",
                  "resource_locked": "Another request is already updating this resource."}

DEFAULT_CONFIG = {
    "apiKeys": [DEFAULT_API_KEY],
    "restrictedKeys": [],
    "requireUserAgent": True,
    "rateLimit": 2,
    "rateWindow": 1.0,
    "rateMode": "sliding",
    "rateBurst": None,
    "rateGraceMs": 50,
    "createExisting": "keep",
    "allowEmailChange": True,
    "rateHeaders": True,
}

log = standin_http.Logger("resend-standin")


def rest_time(t):
    """Resend's REST timestamps are Postgres text: '2025-11-30 20:39:59.540771+00'."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def event_time(t):
    """Webhook timestamps are ISO 8601 with milliseconds: '2026-11-17T19:32:22.980Z'."""
    d = datetime.fromtimestamp(t, timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


# ---- Svix signatures ---------------------------------------------------------

def secret_key(secret):
    """The HMAC key of a "whsec_<base64>" secret (the prefix is optional)."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    key = base64.b64decode(secret, validate=True)
    if not key:
        raise ValueError("empty signing key")
    return key


def sign(secret, msg_id, timestamp, body):
    """The svix-signature entry "v1,<base64>" for one delivery; body is bytes."""
    signed = ("%s.%s." % (msg_id, timestamp)).encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def new_msg_id():
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    rng = random.SystemRandom()
    return "msg_" + "".join(rng.choice(alphabet) for _ in range(27))


# ---- errors ------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status, message, name=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name or ERROR_NAMES.get(status, "application_error")

    def body(self):
        return {"statusCode": self.status, "message": self.message, "name": self.name}


# ---- rate limiter --------------------------------------------------------------

class RateLimiter:
    """Per-team limit: a sliding window log or a token bucket (see the docstring)."""

    def __init__(self, limit, window, mode, burst, grace_ms):
        self.limit = limit
        self.window = float(window)
        self.mode = mode
        self.burst = burst if burst is not None else limit
        self.span = max(0.001, self.window - grace_ms / 1000.0)
        self.log = collections.deque()
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    @property
    def enabled(self):
        return self.limit > 0

    def policy(self):
        w = self.window
        return "%d;w=%s" % (self.limit, int(w) if w == int(w) else w)

    def _refill(self, now):
        rate = self.limit / self.window
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now

    def _expire(self, now):
        while self.log and self.log[0] <= now - self.span:
            self.log.popleft()

    def _state(self, now):
        """(remaining, reset seconds, seconds until one more request fits)."""
        if self.mode == "bucket":
            rate = self.limit / self.window
            remaining = int(math.floor(self.tokens))
            reset = math.ceil(max(0.0, self.burst - self.tokens) / rate)
            wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / rate
            return remaining, reset, wait
        remaining = max(0, self.limit - len(self.log))
        reset = math.ceil(self.log[0] + self.span - now) if self.log else 0
        wait = 0.0 if remaining > 0 else self.log[0] + self.span - now
        return remaining, max(0, reset), wait

    def headers(self, remaining, reset):
        return {"ratelimit-limit": str(self.limit), "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(max(0, reset)), "ratelimit-policy": self.policy()}

    def acquire(self):
        """(allowed, headers, retry_after); an allowed request is counted."""
        if not self.enabled:
            return True, {}, 0
        now = time.monotonic()
        if self.mode == "bucket":
            self._refill(now)
            if self.tokens >= 1:
                self.tokens -= 1
                rem, reset, _ = self._state(now)
                return True, self.headers(rem, max(1, reset)), 0
        else:
            self._expire(now)
            if len(self.log) < self.limit:
                self.log.append(now)
                rem, reset, _ = self._state(now)
                return True, self.headers(rem, max(1, reset)), 0
        _, reset, wait = self._state(now)
        retry = max(1, math.ceil(wait))
        return False, self.headers(0, max(retry, reset)), retry

    def peek(self):
        if not self.enabled:
            return {}
        now = time.monotonic()
        if self.mode == "bucket":
            self._refill(now)
        else:
            self._expire(now)
        rem, reset, _ = self._state(now)
        return self.headers(rem, reset)


# ---- faults ------------------------------------------------------------------

class Fault(standin_http.FaultBase):
    """standin_http.FaultBase with Resend's error name, message and retryAfter."""

    def __init__(self, fid, spec):
        super().__init__(fid, spec)
        self.name = spec.get("name") or ERROR_NAMES.get(self.status, "application_error")
        self.message = spec.get("message") or ERROR_MESSAGES.get(self.name, "Injected fault.")
        self.retry_after = int(spec.get("retryAfter", 1))


# ---- state -------------------------------------------------------------------

class State(standin_http.StateBase):
    default_config = DEFAULT_CONFIG
    fault_class = Fault
    call_log_max = CALL_LOG_MAX

    def _clear(self):
        self.segments = collections.OrderedDict()   # id -> {id, name, created_at}
        self.contacts = collections.OrderedDict()   # id -> contact record
        self.by_email = {}                          # lower-case email -> id
        self.clear_calls_and_faults()
        self.events = collections.deque(maxlen=EVENT_LOG_MAX)

    def _new_limiter(self):
        c = self.config
        return RateLimiter(c["rateLimit"], c["rateWindow"], c["rateMode"], c["rateBurst"],
                           c["rateGraceMs"])

    @staticmethod
    def _check_config(changes):
        for k, v in changes.items():
            if k not in DEFAULT_CONFIG:
                raise ControlError(400, "unknown config key %r" % k)
            if k == "rateMode" and v not in ("sliding", "bucket"):
                raise ControlError(400, "rateMode must be sliding or bucket")
            if k == "createExisting" and v not in ("keep", "update"):
                raise ControlError(400, "createExisting must be keep or update")
            if k in ("rateLimit", "rateGraceMs") and (not isinstance(v, (int, float)) or v < 0):
                raise ControlError(400, "%s must be a number >= 0" % k)
            if k == "rateWindow" and (not isinstance(v, (int, float)) or v <= 0):
                raise ControlError(400, "rateWindow must be a number > 0")
            if k == "rateBurst" and v is not None and (not isinstance(v, int) or v < 1):
                raise ControlError(400, "rateBurst must be a positive integer or null")
            if k in ("apiKeys",) and v is not None and not isinstance(v, list):
                raise ControlError(400, "apiKeys must be a list or null")
            if k == "restrictedKeys" and not isinstance(v, list):
                raise ControlError(400, "restrictedKeys must be a list")
            if k == "rateHeaders" and not isinstance(v, bool):
                raise ControlError(400, "rateHeaders must be true or false")

    # -- objects

    def segment_view(self, s):
        return {"id": s["id"], "name": s["name"], "created_at": rest_time(s["created_at"])}

    def contact_find(self, key):
        """A contact by id or (case-insensitive) email, or None."""
        c = self.contacts.get(key)
        if c is None:
            cid = self.by_email.get(key.lower())
            c = self.contacts.get(cid) if cid else None
        return c

    def contact_summary(self, c):
        return {"id": c["id"], "email": c["email"], "first_name": c["first_name"],
                "last_name": c["last_name"], "created_at": rest_time(c["created_at"]),
                "unsubscribed": c["unsubscribed"]}

    def contact_view(self, c):
        v = {"object": "contact"}
        v.update(self.contact_summary(c))
        v["properties"] = {k: {"value": val, "type": "number" if isinstance(val, (int, float))
                               else "string"} for k, val in c["properties"].items()}
        return v

    def segment_add(self, name, sid=None, now=None):
        sid = sid or str(uuid.uuid4())
        self.segments[sid] = {"id": sid, "name": name, "created_at": now or time.time()}
        return sid

    def segment_remove(self, sid):
        self.segments.pop(sid, None)
        for c in self.contacts.values():
            c["segments"].pop(sid, None)

    def contact_add(self, fields, cid=None):
        now = time.time()
        cid = cid or str(uuid.uuid4())
        c = {"id": cid, "email": fields["email"], "first_name": None, "last_name": None,
             "unsubscribed": False, "properties": {}, "created_at": now, "updated_at": now,
             "segments": collections.OrderedDict()}
        apply_contact_fields(c, fields)
        for sid in fields.get("_segments", ()):
            c["segments"][sid] = now
        self.contacts[cid] = c
        self.by_email[c["email"].lower()] = cid
        return c

    def contact_remove(self, c):
        self.contacts.pop(c["id"], None)
        self.by_email.pop(c["email"].lower(), None)

    def dump(self):
        with self.lock:
            segs = []
            for s in self.segments.values():
                v = self.segment_view(s)
                v["contacts"] = [c["id"] for c in self.contacts.values()
                                 if s["id"] in c["segments"]]
                segs.append(v)
            contacts = []
            for c in self.contacts.values():
                v = self.contact_summary(c)
                v.update({"properties": dict(c["properties"]),
                          "updated_at": rest_time(c["updated_at"]),
                          "segments": list(c["segments"])})
                contacts.append(v)
            return {"segments": segs, "contacts": contacts, "config": dict(self.config),
                    "faults": [f.describe() for f in self.faults], "calls": self.seq}


# ---- request validation helpers ------------------------------------------------

def need_object(body):
    if not isinstance(body, dict):
        raise ApiError(422, "The request body must be a JSON object.", "validation_error")
    return body


def optional_name(body, field):
    v = body.get(field)
    if v is not None and not isinstance(v, str):
        raise ApiError(422, "The `%s` field must be a string." % field, "validation_error")
    return v


def check_email(v, field="email"):
    if not isinstance(v, str) or len(v) > EMAIL_MAX or not EMAIL_RE.match(v):
        raise ApiError(422, "Invalid `%s` field." % field, "validation_error")
    return v


def contact_fields(body, creating):
    """Validated contact fields from a POST or PATCH body (present keys only)."""
    out = {}
    if creating:
        if "email" not in body or body["email"] in (None, ""):
            raise ApiError(422, "Missing `email` field.", "missing_required_field")
    if "email" in body and body["email"] is not None:
        out["email"] = check_email(body["email"])
    for f in ("first_name", "last_name"):
        if f in body:
            out[f] = optional_name(body, f)
    if "unsubscribed" in body:
        if not isinstance(body["unsubscribed"], bool):
            raise ApiError(422, "The `unsubscribed` field must be a boolean.", "validation_error")
        out["unsubscribed"] = body["unsubscribed"]
    if "properties" in body:
        props = body["properties"]
        if not isinstance(props, dict) or not all(
                v is None or (isinstance(v, (str, int, float)) and not isinstance(v, bool))
                for v in props.values()):
            raise ApiError(422, "The `properties` field must map keys to strings or numbers.",
                           "validation_error")
        out["properties"] = props
    return out


def apply_contact_fields(c, fields):
    for f in ("email", "first_name", "last_name", "unsubscribed"):
        if f in fields:
            c[f] = fields[f]
    for k, v in fields.get("properties", {}).items():
        if v is None:
            c["properties"].pop(k, None)
        else:
            c["properties"][k] = v
    c["updated_at"] = time.time()


def segment_ids_from(body):
    segs = body.get("segments", [])
    if not isinstance(segs, list):
        raise ApiError(422, "The `segments` field must be an array.", "validation_error")
    out = []
    for s in segs:
        sid = s.get("id") if isinstance(s, dict) else s
        if not isinstance(sid, str) or not UUID_RE.match(sid):
            raise ApiError(422, "The `segments` field must hold segment ids.", "validation_error")
        out.append(sid)
    return out


def check_segment_id(sid):
    if not UUID_RE.match(sid):
        raise ApiError(422, "The `id` must be a valid UUID.", "invalid_parameter")
    return sid


def paginate(items, query, always):
    """items newest first; query values are strings. -> (page, has_more)."""
    limit, after, before = query.get("limit"), query.get("after"), query.get("before")
    if after is not None and before is not None:
        raise ApiError(422, "The `after` and `before` parameters cannot be used together.",
                       "validation_error")
    if limit is None:
        n = PAGE_DEFAULT if always else len(items)
    else:
        try:
            n = int(limit, 10)
        except ValueError:
            n = 0
        if not PAGE_MIN <= n <= PAGE_MAX:
            raise ApiError(422, PAGINATION_MESSAGE, "validation_error")
    ids = [it["id"] for it in items]
    if after is not None:
        if after not in ids:
            raise ApiError(422, "The `after` cursor is invalid.", "validation_error")
        start = ids.index(after) + 1
        return items[start:start + n], start + n < len(items)
    if before is not None:
        if before not in ids:
            raise ApiError(422, "The `before` cursor is invalid.", "validation_error")
        end = ids.index(before)
        start = max(0, end - n)
        return items[start:end], start > 0
    return items[:n], n < len(items)


def list_body(page, has_more):
    return {"object": "list", "has_more": has_more, "data": page}


# ---- API handlers (called with the state lock held) ------------------------------

def h_segments_create(st, p, q, body):
    body = need_object(body)
    name = body.get("name")
    if name is None or name == "":
        raise ApiError(422, "Missing `name` field.", "missing_required_field")
    if not isinstance(name, str):
        raise ApiError(422, "The `name` field must be a string.", "validation_error")
    sid = st.segment_add(name)
    return 201, {"object": "segment", "id": sid, "name": name}


def h_segments_list(st, p, q, body):
    items = [st.segment_view(s) for s in reversed(st.segments.values())]
    return 200, list_body(*paginate(items, q, False))


def segment_get(st, sid):
    s = st.segments.get(check_segment_id(sid))
    if s is None:
        raise ApiError(404, SEGMENT_NOT_FOUND)
    return s


def h_segment_get(st, p, q, body):
    v = {"object": "segment"}
    v.update(st.segment_view(segment_get(st, p["id"])))
    return 200, v


def h_segment_patch(st, p, q, body):
    body = need_object(body)
    s = segment_get(st, p["id"])
    name = body.get("name")
    if name is None or name == "":
        raise ApiError(422, "Missing `name` field.", "missing_required_field")
    if not isinstance(name, str):
        raise ApiError(422, "The `name` field must be a string.", "validation_error")
    s["name"] = name
    return 200, {"object": "segment", "id": s["id"]}


def h_segment_delete(st, p, q, body):
    sid = check_segment_id(p["id"])
    st.segment_remove(sid)
    return 200, {"object": "segment", "id": sid, "deleted": True}


def h_segment_contacts(st, p, q, body):
    s = segment_get(st, p["id"])
    items = [st.contact_summary(c) for c in reversed(st.contacts.values())
             if s["id"] in c["segments"]]
    return 200, list_body(*paginate(items, q, True))


def h_contacts_create(st, p, q, body):
    body = need_object(body)
    fields = contact_fields(body, creating=True)
    sids = segment_ids_from(body)
    for sid in sids:
        if sid not in st.segments:
            raise ApiError(404, SEGMENT_NOT_FOUND)
    existing = st.contact_find(fields["email"])
    if existing is not None:
        # Resend answers success for an existing email (resend-node#494).
        if st.config["createExisting"] == "update":
            apply_contact_fields(existing, fields)
            for sid in sids:
                existing["segments"].setdefault(sid, time.time())
        return 201, {"object": "contact", "id": existing["id"]}
    fields["_segments"] = sids
    c = st.contact_add(fields)
    return 201, {"object": "contact", "id": c["id"]}


def h_contacts_list(st, p, q, body):
    seg = q.get("segment_id")
    if seg is not None:
        segment_get(st, seg)
    items = [st.contact_summary(c) for c in reversed(st.contacts.values())
             if seg is None or seg in c["segments"]]
    return 200, list_body(*paginate(items, q, False))


def contact_get(st, key):
    c = st.contact_find(key)
    if c is None:
        raise ApiError(404, CONTACT_NOT_FOUND)
    return c


def h_contact_get(st, p, q, body):
    return 200, st.contact_view(contact_get(st, p["contact"]))


def h_contact_patch(st, p, q, body):
    body = need_object(body)
    c = contact_get(st, p["contact"])
    fields = contact_fields(body, creating=False)
    new = fields.get("email")
    if new is not None and new.lower() != c["email"].lower():
        if not st.config["allowEmailChange"]:
            raise ApiError(422, "Updating the email address is not supported.", "validation_error")
        if new.lower() in st.by_email:
            raise ApiError(422, "A contact with this email already exists.", "validation_error")
    st.by_email.pop(c["email"].lower(), None)
    apply_contact_fields(c, fields)
    st.by_email[c["email"].lower()] = c["id"]
    return 200, {"object": "contact", "id": c["id"]}


def h_contact_delete(st, p, q, body):
    c = st.contact_find(p["contact"])
    if c is not None:
        st.contact_remove(c)
    return 200, {"object": "contact", "contact": p["contact"], "deleted": True}


def h_contact_segments(st, p, q, body):
    c = contact_get(st, p["contact"])
    items = []
    for sid, added in reversed(list(c["segments"].items())):
        s = st.segments.get(sid)
        if s is not None:
            items.append({"id": sid, "name": s["name"], "created_at": rest_time(added)})
    return 200, list_body(*paginate(items, q, True))


def h_contact_segment_add(st, p, q, body):
    sid = check_segment_id(p["segment"])
    c = contact_get(st, p["contact"])
    if sid not in st.segments:
        raise ApiError(404, SEGMENT_NOT_FOUND)
    c["segments"].setdefault(sid, time.time())
    return 200, {"object": "contact_segment", "id": sid, "contact_id": c["id"],
                 "segment_id": sid}


def h_contact_segment_remove(st, p, q, body):
    sid = check_segment_id(p["segment"])
    c = st.contact_find(p["contact"])
    cid = c["id"] if c is not None else p["contact"]
    if c is not None:
        c["segments"].pop(sid, None)
    return 200, {"object": "contact_segment", "id": cid, "contact_id": cid,
                 "segment_id": sid, "deleted": True}


ROUTES = [
    ("/segments", {"POST": h_segments_create, "GET": h_segments_list}),
    ("/segments/{id}", {"GET": h_segment_get, "PATCH": h_segment_patch,
                        "DELETE": h_segment_delete}),
    ("/segments/{id}/contacts", {"GET": h_segment_contacts}),
    ("/contacts", {"POST": h_contacts_create, "GET": h_contacts_list}),
    ("/contacts/{contact}", {"GET": h_contact_get, "PATCH": h_contact_patch,
                             "DELETE": h_contact_delete}),
    ("/contacts/{contact}/segments", {"GET": h_contact_segments}),
    ("/contacts/{contact}/segments/{segment}", {"POST": h_contact_segment_add,
                                                "DELETE": h_contact_segment_remove}),
]
# Literal path words that must not be read as a contact id ("imports" etc.).
RESERVED = {"imports"}


def match_route(path):
    """(template, params, methods) or (None, None, None)."""
    parts = path.split("/")[1:]
    if not parts or any(p == "" for p in parts):
        return None, None, None
    for template, methods in ROUTES:
        tparts = template.split("/")[1:]
        if len(tparts) != len(parts):
            continue
        params = {}
        for t, p in zip(tparts, parts):
            if t.startswith("{"):
                value = urllib.parse.unquote(p)
                if value in RESERVED:
                    break
                params[t[1:-1]] = value
            elif t != p:
                break
        else:
            return template, params, methods
    return None, None, None


# ---- control API ---------------------------------------------------------------

def control_dispatch(st, method, action, body, query):
    """-> (status, payload). action is the path after /_standin/."""
    if action == "drift" and method == "POST":
        return 200, control_drift(st, body)
    return standin_http.control_common(st, method, action, body, query, control_seed,
                                       send_event)


def control_seed(st, body):
    out = {"segments": [], "contacts": []}
    with st.lock:
        for s in body.get("segments", []):
            if s.get("id") is not None and not UUID_RE.match(s["id"]):
                raise ControlError(400, "segment id must be a UUID")
            out["segments"].append(st.segment_add(s.get("name", ""), s.get("id")))
        for c in body.get("contacts", []):
            try:
                fields = contact_fields(c, creating=True)
            except ApiError as e:
                raise ControlError(400, e.message)
            if st.contact_find(fields["email"]) is not None:
                raise ControlError(400, "contact %s exists" % fields["email"])
            fields["_segments"] = [sid for sid in c.get("segments", []) if sid in st.segments]
            if c.get("id") is not None and not UUID_RE.match(c["id"]):
                raise ControlError(400, "contact id must be a UUID")
            out["contacts"].append(st.contact_add(fields, c.get("id"))["id"])
    return out


DRIFT_OPS = ("deleteSegment", "renameSegment", "addMember", "removeMember", "updateContact",
             "deleteContact")


def control_drift(st, body):
    """Changes the state as a dashboard user or another team would: no call log, no limit."""
    op = body.get("op")
    if op not in DRIFT_OPS:
        raise ControlError(400, "op must be one of %s" % ", ".join(DRIFT_OPS))
    with st.lock:
        seg = None
        if op in ("deleteSegment", "renameSegment", "addMember", "removeMember"):
            seg = st.segments.get(str(body.get("segment")))
            if seg is None:
                raise ControlError(404, "no segment %s" % body.get("segment"))
        c = None
        if op in ("addMember", "removeMember", "updateContact", "deleteContact"):
            c = st.contact_find(str(body.get("contact")))
            if c is None:
                raise ControlError(404, "no contact %s" % body.get("contact"))
        if op == "deleteSegment":
            st.segment_remove(seg["id"])
        elif op == "renameSegment":
            if not isinstance(body.get("name"), str) or not body["name"]:
                raise ControlError(400, "name must be a non-empty string")
            seg["name"] = body["name"]
        elif op == "addMember":
            c["segments"].setdefault(seg["id"], time.time())
        elif op == "removeMember":
            c["segments"].pop(seg["id"], None)
        elif op == "updateContact":
            try:
                fields = contact_fields(body.get("changes") or {}, creating=False)
            except ApiError as e:
                raise ControlError(400, e.message)
            new = fields.get("email")
            if new is not None and new.lower() != c["email"].lower() and new.lower() in st.by_email:
                raise ControlError(400, "another contact has %s" % new)
            st.by_email.pop(c["email"].lower(), None)
            apply_contact_fields(c, fields)
            st.by_email[c["email"].lower()] = c["id"]
        elif op == "deleteContact":
            st.contact_remove(c)
        return {"op": op, "segment": seg["id"] if seg else None,
                "contact": c["id"] if c else None}


# ---- webhooks (provider -> us) -----------------------------------------------------

def contact_event_data(c):
    segs = list(c["segments"])
    data = {"id": c["id"]}
    if segs:
        data["audience_id"] = segs[0]
    data.update({"segment_ids": segs, "created_at": event_time(c["created_at"]),
                 "updated_at": event_time(c["updated_at"]), "email": c["email"],
                 "first_name": c["first_name"], "last_name": c["last_name"],
                 "unsubscribed": c["unsubscribed"]})
    return data


def event_body(st, req, now):
    if "body" in req:
        raw = req["body"]
        return raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
    etype = req.get("type", "contact.updated")
    data = {}
    if "contact" in req:
        if not etype.startswith("contact."):
            raise ControlError(400, "contact is only for contact.* events")
        with st.lock:
            c = st.contact_find(str(req["contact"]))
            if c is None:
                raise ControlError(404, "no contact %s" % req["contact"])
            changes = req.get("changes") or {}
            if changes:
                try:
                    fields = contact_fields(changes, creating=False)
                except ApiError as e:
                    raise ControlError(400, e.message)
                st.by_email.pop(c["email"].lower(), None)
                apply_contact_fields(c, fields)
                st.by_email[c["email"].lower()] = c["id"]
            data = contact_event_data(c)
            if etype == "contact.deleted":
                st.contact_remove(c)
    elif etype.startswith("email."):
        data = {"email_id": str(uuid.uuid4()), "from": "Acme <onboarding@resend.dev>",
                "to": ["delivered@resend.dev"], "subject": "Hello from the stand-in",
                "created_at": event_time(now)}
    data.update(req.get("data") or {})
    envelope = {"type": etype, "created_at": event_time(now), "data": data}
    return json.dumps(envelope, separators=(",", ":")).encode()


def send_event(st, req):
    u = standin_http.webhook_url(req)
    now = time.time()
    body = event_body(st, req, now)
    msg_id = req.get("id") or new_msg_id()
    ts = str(req.get("timestamp", int(now) + int(req.get("timestampOffset", 0))))
    if "signature" in req:
        signature = req["signature"]
    else:
        if not req.get("secret"):
            raise ControlError(400, "secret (whsec_...) is required")
        try:
            ours = sign(req["secret"], msg_id, ts, body)
        except (ValueError, TypeError) as e:
            raise ControlError(400, "bad secret: %s" % e)
        signature = " ".join(list(req.get("extraSignatures", [])) + [ours])
    headers = {"content-type": "application/json",
               "user-agent": "Svix-Webhooks/1.0 (resend-standin)",
               "svix-id": msg_id, "svix-timestamp": ts, "svix-signature": signature}
    return standin_http.send_webhook(st, req, u, now, body, headers)


# ---- HTTP server -------------------------------------------------------------------

class Handler(standin_http.Handler):
    server_version = "resend-standin"
    logger = log
    max_body = MAX_BODY
    json_type = "application/json; charset=utf-8"
    too_large_text = "The request body is too large."
    dispatch = staticmethod(control_dispatch)

    @staticmethod
    def api_error(code, text):
        return ApiError(code, text, "validation_error").body()

    def handle_api(self, u, query_multi, raw):
        query = standin_http.last_values(query_multi)
        started = time.monotonic()
        template, params, methods = match_route(u.path)
        method = self.command
        rec = {"time": time.time(), "method": method, "path": u.path, "route": template,
               "query": query, "headers": {k: self.headers.get(k) for k in (
                   "authorization", "user-agent", "content-type", "accept", "idempotency-key")},
               "body": None, "status": None, "response": None, "fault": None}
        try:
            rec["body"] = json.loads(raw) if raw else None
        except ValueError:
            rec["body"] = raw.decode("utf-8", "replace")
        self.answer_and_record(rec, started, method, template, params, methods, query,
                               raw, rec)

    def answer(self, method, template, params, methods, query, raw, rec):
        """-> (status, payload, headers, content type, drop)."""
        status, payload, headers, ctype, drop = self._answer(method, template, params,
                                                             methods, query, raw, rec)
        if not self.st.config["rateHeaders"]:
            # A provider that enforces a quota it does not state (retry-after stays).
            headers = {k: v for k, v in headers.items() if not k.startswith("ratelimit-")}
        return status, payload, headers, ctype, drop

    def _answer(self, method, template, params, methods, query, raw, rec):
        st = self.st
        json_type = "application/json; charset=utf-8"
        if st.config["requireUserAgent"] and not self.headers.get("User-Agent"):
            return 403, "error code: 1010", {}, "text/plain; charset=UTF-8", False
        with st.lock:
            rl_headers = st.limiter.peek()
        err = self.auth_error()
        if err is not None:
            return err.status, err.body(), rl_headers, json_type, False
        with st.lock:
            allowed, rl_headers, retry = st.limiter.acquire()
        if not allowed:
            w = st.config["rateWindow"]
            per = "second" if w == 1 else "%s seconds" % w
            err = ApiError(429, "Too many requests. You can only make %s requests per %s."
                           % (st.config["rateLimit"], per), "rate_limit_exceeded")
            h = dict(rl_headers, **{"retry-after": str(retry)})
            return 429, err.body(), h, json_type, False
        fault = st.take_fault(method, template)
        if fault is not None:
            rec["fault"] = fault.kind
            if fault.kind == "delay":
                st.stopping.wait(fault.seconds)
            elif fault.kind == "rate_limit":
                err = ApiError(429, "Too many requests. Please limit the number of requests "
                               "per second.", "rate_limit_exceeded")
                h = dict(rl_headers, **{"ratelimit-remaining": "0",
                                        "retry-after": str(fault.retry_after)})
                return 429, err.body(), h, json_type, False
            elif not fault.after:
                return self.fault_answer(fault, rl_headers)
        status, payload = self.route(method, template, params, methods, query, raw)
        if fault is not None and fault.after and fault.kind in ("error", "drop"):
            return self.fault_answer(fault, rl_headers)
        return status, payload, rl_headers, json_type, False

    @staticmethod
    def fault_answer(fault, rl_headers):
        if fault.kind == "drop":
            return 0, None, {}, "", True
        if fault.html:
            page = "<html><body><h1>%d</h1><p>%s</p></body></html>" % (fault.status, fault.message)
            return fault.status, page, rl_headers, "text/html; charset=UTF-8", False
        err = ApiError(fault.status, fault.message, fault.name)
        return fault.status, err.body(), rl_headers, "application/json; charset=utf-8", False

    def auth_error(self):
        cfg = self.st.config
        auth = self.headers.get("Authorization") or ""
        scheme, _, key = auth.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return ApiError(401, "Missing API key in the authorization header.", "missing_api_key")
        if key in cfg["restrictedKeys"]:
            return ApiError(401, "This API key is restricted to only send emails.",
                            "restricted_api_key")
        if cfg["apiKeys"] is not None and key not in cfg["apiKeys"]:
            return ApiError(403, "API key is invalid", "invalid_api_key")
        return None

    def route(self, method, template, params, methods, query, raw):
        if template is None:
            return 404, ApiError(404, "The requested endpoint does not exist.").body()
        handler = methods.get(method)
        if handler is None:
            return 405, ApiError(405, "Method not allowed.", "method_not_allowed").body()
        body = None
        if method in ("POST", "PATCH") and raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return 400, ApiError(400, "Invalid JSON in the request body.",
                                     "validation_error").body()
        elif method in ("POST", "PATCH"):
            body = {}
        try:
            with self.st.lock:
                return handler(self.st, params, query, body)
        except ApiError as e:
            return e.status, e.body()
        except Exception:  # our bug: answer as Resend would, keep serving
            log("handler error:\n%s", traceback.format_exc())
            return 500, ApiError(500, "An unexpected error occurred.").body()


class StandIn(standin_http.StandIn):
    """In-process stand-in: StandIn(**config).start(); .url; .control(...); .stop()."""

    state_class = State
    handler_class = Handler


def main(argv=None):
    ap = argparse.ArgumentParser(description="Resend API stand-in (see the module docstring)")
    standin_http.add_server_args(ap, DEFAULT_API_KEY, "accept any bearer key",
                                 DEFAULT_CONFIG["rateLimit"], DEFAULT_CONFIG["rateWindow"])
    ap.add_argument("--rate-mode", choices=("sliding", "bucket"), default="sliding")
    ap.add_argument("--no-user-agent-check", action="store_true")
    standin_http.add_closing_args(ap)
    a = ap.parse_args(argv)
    log.verbose = a.verbose
    config = standin_http.server_config(a, DEFAULT_API_KEY)
    config.update({"rateMode": a.rate_mode, "requireUserAgent": not a.no_user_agent_check})
    s = StandIn(port=a.port, tls_cert=a.tls_cert, tls_key=a.tls_key or a.tls_cert, **config)
    return standin_http.serve(s, a.port_file)


if __name__ == "__main__":
    sys.exit(main())
