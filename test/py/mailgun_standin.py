#!/usr/bin/env python3
"""mailgun_standin.py -- a stand-in for Mailgun's mailing-list API, for tests.

The reconciler's tests and `make run` point the Mailgun client here instead
of https://api.mailgun.net. It speaks the shapes recorded in
shared/reference/resend-and-svix.md (section 3) and in Mailgun's OpenAPI
document (the copy in mailgun/mailgun-mcp-server src/openapi.yaml, the
"Mailing Lists" paths), keeps its state in memory, can be told to fail, and
sends webhooks signed the way Mailgun signs them. Python 3 standard library
only; it listens on 127.0.0.1 only.

Starting it
===========
    python3 test/py/mailgun_standin.py --port 0 --port-file F [--api-key K ...]
        [--any-key] [--rate 10] [--rate-window 1] [--domain D]
        [--webhook-signing-key S] [--bulk-delay 0.5] [--tls-cert C --tls-key K] [-v]

It writes the chosen port to F (atomically), logs to stderr and exits 0 on
SIGTERM or SIGINT. The default accepted API key is "key-standin-mailgun".

In-process use:
    from mailgun_standin import StandIn
    s = StandIn(rateLimit=20).start()    # s.url, s.port
    s.control("faults", {"kind": "error", "every": 7})
    s.stop()                             # also a context manager

The API (base URL = s.url; paths carry /v3 as Mailgun's do)
============================================================
Every request needs HTTP Basic auth with user "api" and an accepted key as
password (Mailgun: `curl --user 'api:KEY'`). Anything else is 401 with the
plain-text body "Forbidden" and `WWW-Authenticate: Basic realm="MG API"`
(what clients report: mailgun.js#359 and #393 "status: 401, details:
'Forbidden'", django-anymail#237 "401 (UNAUTHORIZED): 'Forbidden'"; the
realm as recorded by ephes/mailgun-relay). Config authErrorBody "json"
answers {"message": "Invalid private key"} instead, as some Mailgun
endpoints do (mailgun.js#227). Then the rate limit (429 {"message": "Too
Many Requests"}, the OpenAPI example), then injected faults, then the route.

Request fields are form fields: application/x-www-form-urlencoded or
multipart/form-data bodies (file parts are read as fields), and query
parameters (the OpenAPI puts members.json's `members` and `upsert` in the
query); a body field wins over a query field of the same name, and the last
of repeated fields wins. Any other body (JSON included) is not read, so its
fields count as missing. Booleans are yes/no/true/false in any case (GO
`yesNo()`, docs curl `True`); anything else is 400. Addresses may be given as
"Name <addr>"; the name then fills `name` when that field is absent. List
and member addresses in paths are URL-decoded (GO escapes them with
url.QueryEscape) and matched case-insensitively; the case first given is
kept.

  POST   /v3/lists                      address (required), name, description,
                                        access_level (readonly|members|everyone;
                                        readonly), reply_preference (list|sender;
                                        list) -> 201 {list:{address, name,
                                        description, access_level, reply_preference,
                                        created_at (RFC 2822, "-0000"), members_count},
                                        message: "Mailing list has been created"}
  GET    /v3/lists                      limit (100), skip (0), address ->
                                        {total_count, items:[list]}
  GET    /v3/lists/pages                limit (100), page (first|last|next|prev),
                                        address (pivot) -> {items, paging:{first,
                                        last, next, previous}} (absolute URLs here)
  GET    /v3/lists/{list}               -> {list}
  PUT    /v3/lists/{list}               address (renames), name, description,
                                        access_level, reply_preference (also read as
                                        reply_reference, the OpenAPI's spelling) ->
                                        {list, message: "Mailing list has been updated"}
  DELETE /v3/lists/{list}               -> {address, message: "Mailing list has been
                                        removed"} (OpenAPI; the old docs said "deleted")
  GET    /v3/lists/{list}/members       limit (100, at most 100), skip, address,
                                        subscribed -> {total_count, items:[member]}
  GET    /v3/lists/{list}/members/pages limit, page, address (pivot), subscribed ->
                                        {items, paging} in ascending address order
  POST   /v3/lists/{list}/members       address (required), name, vars (JSON object
                                        string; "null" = none, as mailgun-go sends),
                                        subscribed (yes), upsert (no) -> 200 {member:
                                        {address, name, vars, subscribed}, message:
                                        "Mailing list member has been created"}
  GET    /v3/lists/{list}/members/{m}   -> {member}
  PUT    /v3/lists/{list}/members/{m}   address (renames), name, vars, subscribed;
                                        fields not given are kept -> {member,
                                        message: "Mailing list member has been updated"}
  DELETE /v3/lists/{list}/members/{m}   -> {member:{address}, message: "Mailing list
                                        member has been deleted"}
  POST   /v3/lists/{list}/members.json  members (JSON array of addresses or member
                                        objects, at most 1000), upsert (no), subscribed
                                        (the default for entries without one, as
                                        mailgun-go's old CreateMemberList sends) -> 200

Bulk upload (members.json). Mailgun: "If the request includes more than 100
entries, the mailing list will be updated asynchronously." Up to
bulkSyncMax (100) entries are applied before the answer: {list (counts
after), message: "Mailing list has been updated" (old docs sample), "task-id":
"000...0" (32 zeros, as in mailgun.js's test fixture)}. Above that the
answer is {list (counts before), message: "Mailing list upload started in
background", "task-id": <32 hex>} (OpenAPI "Async update" example) and no
entry is visible until the task completes: bulkAsyncDelay seconds later, or,
with bulkAsyncHold, when the control API completes it. A completed task
records a `list_uploaded` event (mailgun-go events.ListUploaded: is-upsert,
format, upserted-count, failed-count, task-id) and one
`list_member_upload_error` per bad entry. Without upsert an existing member
is left as it is ("no (default) to ignore duplicates", old docs); with it
the fields the entry gives are applied. A bad entry (no valid address, bad
vars or subscribed) fails alone.

Errors are {"message": ...} (Content-Type application/json):
  400 "'address' parameter is missing"; "'address' parameter is not a valid
      address. please check documentation" (the messages API's wording,
      fastlane#8568); "Invalid access level 'x'. It can be any of: 'readonly',
      'members', 'everyone'." and "Invalid reply preference 'x'. It can be any
      of: 'sender', 'list'" (OpenAPI); "Duplicate object" (a list address in
      use, as a public Slack-to-Mailgun script relies on); "Address already
      exists 'a@x'" (OpenAPI); "The 'limit' parameter can't be larger than 100"
      (routes' wording; mailgun-php#40 saw a 400 above 100); "Too many members,
      max is 1000" (messages' "Too many recipients, max is 1000",
      mailgun-ruby#87); the wording of the other 400s (bad booleans, vars,
      members JSON, limit/skip/page values) is ours.
  401 as above. 404 "Mailing list L not found" (OpenAPI, list routes);
      "Mailing list 'L' not found" (OpenAPI, members.json, with quotes);
      "Member M of mailing list L not found" (OpenAPI); unknown paths
      {"message": "Not Found"}. 405 {"message": "Method Not Allowed"}.
  413 {"message": "Request Entity Too Large"} past 4 MiB. 429 as above.
  500 (injected) {"message": "Internal Server Error"}.

Choices where the sources are silent (so tests do not over-fit): lists are
listed in ascending address order; /members (skip) uses the /pages order;
total_count counts what the filters match; members_count counts subscribed
and unsubscribed members; an upsert through POST /members applies only the
fields given (send `subscribed` to be sure) and answers "...has been
created"; PUT renaming to an address in use is 400 "Duplicate object" for a
list and "Address already exists 'x'" for a member; the limit cap of 100
applies to every listing; lists and members carry an internal id / sid used
in event-data only.

Rate limit: at most rateLimit accepted requests in any rateWindow seconds
(sliding window, shortened by rateGraceMs to absorb scheduling jitter), so a
client spacing requests 1/rate apart never sees a 429. rateLimit 0 (the
default: Mailgun publishes no per-second figure for these endpoints) turns it
off. Rejected requests (401, 429) do not count. Mailgun documents no
rate-limit headers; config retryAfter N adds `Retry-After: N` to 429s.

Control API (plain HTTP on the same port, under /_standin/, never
authenticated, never rate-limited, not in the call log). JSON in and out.
=========================================================================
  GET    /_standin/healthz       "ok"
  GET    /_standin/state         {lists:[{address, name, description, access_level,
                                 reply_preference, created_at, id, members_count,
                                 members:[{address, name, vars, subscribed, sid}]}],
                                 tasks, suppressions:{unsubscribes, complaints,
                                 bounces}, config, faults, calls}
  GET    /_standin/lists/{addr}  one list as in state (404 if none)
  POST   /_standin/reset         forget lists, tasks, calls, faults, events and
                                 suppressions; config back to the start-up values
                                 ({"keepConfig": true} keeps it)
  POST   /_standin/seed          {lists:[{address, name?, description?, access_level?,
                                 reply_preference?, members:[{address, name?, vars?,
                                 subscribed?}]}]} -> {lists:[addresses]} (no limits,
                                 no call log)
  GET    /_standin/config        the current config
  POST   /_standin/config        set any of: apiKeys ([keys] | null = any key),
                                 authErrorBody ("text" | "json"), rateLimit (0 = off),
                                 rateWindow (1 s), rateGraceMs (50), retryAfter (null
                                 | seconds), listCreateStatus (201 | 200), bulkSyncMax
                                 (100), bulkMax (1000), bulkAsyncDelay (0.5 s),
                                 bulkAsyncHold (false), domain, webhookSigningKey.
                                 Rate settings reset the limiter.
  GET    /_standin/calls         ?since=N&log=0 -> {total, next, counts:{"POST
                                 /v3/lists": n}, countsByStatus:{"POST /v3/lists":
                                 {"201": n}}, counters:{byStatus:{"200": n},
                                 unauthorized, rateLimited, faults}, calls:[{seq, time,
                                 method, path, route, query, form (fields read, last
                                 value each), headers:{authorization, user-agent,
                                 content-type, accept}, authUser, body (text, first 64
                                 KiB), status, response, fault, durationMs}]}; routes
                                 are templates ("PUT /v3/lists/{list}/members/{member}"),
                                 unknown paths count as "<METHOD> (unknown)". Every API
                                 request is counted, whatever its answer.
  GET    /_standin/counts        the same without the log
  DELETE /_standin/calls         clear the log, the counts and the counters
  GET    /_standin/faults        the active fault rules (with remaining, seen: the
                                 matching calls, fired)
  POST   /_standin/faults        add a rule -> {"id": n}. Fields: kind ("error" |
                                 "rate_limit" | "delay" | "drop"), every (N: fire on
                                 the Nth, 2Nth, ... matching call), fraction (0..1:
                                 then fire on that share of those calls, drawn from
                                 random.Random(seed)), count (fire N times; omitted =
                                 until cleared; a call not fired on does not use it
                                 up), seed (0), method, route
                                 (template such as "/v3/lists/{list}/members"), and per
                                 kind:
                                   error: status (500), message, html (true: a
                                     text/html page, as an edge proxy sends),
                                     afterApply (true: do the operation, then answer
                                     the error: a lost reply)
                                   rate_limit: a 429 whatever the limiter says
                                     (retryAfter: add that Retry-After header)
                                   delay: seconds: wait, then answer normally
                                   drop: close the connection without an answer
                                     (afterApply as for error)
                                 {"clear": true} removes every rule.
  DELETE /_standin/faults        remove every rule
  GET    /_standin/tasks         {tasks:[{id, list, status (pending|done|failed),
                                 entries, upsert, createdAt, completedAt,
                                 "upserted-count", "failed-count", events}]}
  POST   /_standin/tasks/complete  {id?} complete that pending bulk task now (every
                                 pending one without id) -> {completed:[ids]}
  POST   /_standin/events        send one signed webhook, as Mailgun does:
                                 {url (required; http or https), event
                                 ("unsubscribed" | "complained" | "failed" |
                                 "delivered" | "opened" | "clicked" | ...), recipient
                                 (required unless body), list (a list address: adds
                                 event-data "mailing-list":{address, list-id, sid}
                                 and sends the message to the list), severity
                                 ("permanent" | "temporary", failed only), data
                                 (merged over event-data; null removes a key),
                                 envelope (merged over the top-level object),
                                 apply (true: unsubscribed with a list marks the
                                 member subscribed=false, as
                                 %mailing_list_unsubscribe_url% does; without a list,
                                 and complained, and permanent failed, add to the
                                 domain's suppressions), signingKey (config
                                 webhookSigningKey), timestamp (now), timestampOffset
                                 (0 s), token (50 hex), signature (sent verbatim),
                                 body (raw text sent as is), headers ({name: value |
                                 null to omit}), caFile, insecure (false),
                                 serverName, timeout (5 s)}
                                 -> {delivered (2xx), status, responseBody,
                                 responseHeaders, error, request:{url, headers, body}}
  GET    /_standin/events        every webhook sent so far (the same records)

Webhook bodies are JSON {"signature": {"timestamp", "token", "signature"},
"event-data": {...}} with signature = hex(HMAC-SHA256(signing key,
timestamp + token)) (GO VerifyWebhookSignature; Mailgun docs "Securing
Webhooks"); see sign() below. Event-data follows Mailgun's "Webhook
Payloads" page and mailgun-go's events package: event, id, timestamp
(float), log-level, recipient, recipient-domain, account.id, domain.name,
message.headers{to, message-id, from, subject}, tags, campaigns,
user-variables, plus per event: opened/clicked/unsubscribed ip, geolocation,
client-info (clicked: url); failed severity, reason, delivery-status{code,
message, description, attempt-no}, envelope; delivered delivery-status and
envelope. mailgun-go models "mailing-list" on opened, clicked and
unsubscribed; this stand-in adds it to any event sent with a list.
"""

import argparse
import base64
import collections
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import hmac
import json
import math
import re
import secrets
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from datetime import datetime, timezone

import standin_http
from standin_http import ControlError, last_values

DEFAULT_API_KEY = "key-standin-mailgun"
DEFAULT_SIGNING_KEY = "standin-webhook-signing-key"
DEFAULT_DOMAIN = "mg.example.test"
API_USER = "api"                    # Basic auth user (GO basicAuthUser)
ACCOUNT_ID = "5f1d6c2a9b8e7d0012345678"
ZERO_TASK_ID = "0" * 32

MAX_BODY = 4 * 1024 * 1024          # request body cap (413 past it)
LOGGED_BODY_MAX = 64 * 1024         # request body bytes kept in the call log
CALL_LOG_MAX = 20000
EVENT_LOG_MAX = 1000
PAGE_DEFAULT = 100                  # docs: "Defaults to 100"
PAGE_MAX = 100                      # docs (members): "Max is 100"
BULK_MAX = 1000                     # docs: "up to 1000 per call"
BULK_SYNC_MAX = 100                 # docs: "more than 100 entries ... asynchronously"
ADDRESS_MAX = 254
LOCAL_PART_MAX = 64
TOKEN_HEX_BYTES = 25                # Mailgun webhook tokens are 50 characters

ACCESS_LEVELS = ("readonly", "members", "everyone")
REPLY_PREFERENCES = ("list", "sender")
TRUE_WORDS = ("yes", "true")
FALSE_WORDS = ("no", "false")

MSG_LIST_CREATED = "Mailing list has been created"
MSG_LIST_UPDATED = "Mailing list has been updated"
MSG_LIST_REMOVED = "Mailing list has been removed"
MSG_MEMBER_CREATED = "Mailing list member has been created"
MSG_MEMBER_UPDATED = "Mailing list member has been updated"
MSG_MEMBER_DELETED = "Mailing list member has been deleted"
MSG_BULK_SYNC = "Mailing list has been updated"
MSG_BULK_ASYNC = "Mailing list upload started in background"
MSG_DUPLICATE = "Duplicate object"
MSG_TOO_MANY = "Too Many Requests"
MSG_FORBIDDEN = "Forbidden"
MSG_INVALID_KEY = "Invalid private key"
MSG_SERVER_ERROR = "Internal Server Error"

EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+@[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+"
                      r"\.[^@\s\x00-\x1f\x7f<>(),;:\"\[\]]+$")

DEFAULT_CONFIG = {
    "apiKeys": [DEFAULT_API_KEY],
    "authErrorBody": "text",
    "rateLimit": 0,
    "rateWindow": 1.0,
    "rateGraceMs": 50,
    "retryAfter": None,
    "listCreateStatus": 201,
    "bulkSyncMax": BULK_SYNC_MAX,
    "bulkMax": BULK_MAX,
    "bulkAsyncDelay": 0.5,
    "bulkAsyncHold": False,
    "domain": DEFAULT_DOMAIN,
    "webhookSigningKey": DEFAULT_SIGNING_KEY,
}

log = standin_http.Logger("mailgun-standin")


def rfc2822(t):
    """Mailgun's REST timestamps: 'Tue, 09 Aug 2011 20:50:27 -0000' (OpenAPI examples)."""
    naive = datetime.fromtimestamp(int(t), timezone.utc).replace(tzinfo=None)
    return email.utils.format_datetime(naive)


def new_hex_id(nbytes=12):
    return secrets.token_hex(nbytes)


def new_event_id():
    """Event ids look like 'CCXMjJ7nQi2N3BPigGOdgQ' (22 characters, URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


# ---- webhook signatures -------------------------------------------------------

def sign(signing_key, timestamp, token):
    """hex(HMAC-SHA256(key, timestamp + token)), as GO VerifyWebhookSignature checks."""
    msg = (str(timestamp) + str(token)).encode()
    return hmac.new(signing_key.encode(), msg, hashlib.sha256).hexdigest()


# ---- errors ------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self):
        return {"message": self.message}


def list_not_found(address, quoted=False):
    if quoted:
        return ApiError(404, "Mailing list '%s' not found" % address)
    return ApiError(404, "Mailing list %s not found" % address)


def member_not_found(member, address):
    return ApiError(404, "Member %s of mailing list %s not found" % (member, address))


# ---- request fields ---------------------------------------------------------------

def parse_form(ctype_header, raw):
    """Form fields of a body -> {name: [values]}; other content types give {}."""
    if not raw:
        return {}
    m = email.message.Message()
    m["content-type"] = ctype_header or "application/octet-stream"
    ctype = m.get_content_type()
    if ctype == "application/x-www-form-urlencoded":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "The request body is not valid UTF-8.")
        return urllib.parse.parse_qs(text, keep_blank_values=True)
    if ctype == "multipart/form-data":
        if not m.get_param("boundary"):
            raise ApiError(400, "The multipart body has no boundary.")
        head = ("Content-Type: %s\r\n\r\n" % ctype_header).encode("latin-1", "replace")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        if not msg.is_multipart():
            raise ApiError(400, "The multipart body cannot be read.")
        out = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            data = part.get_payload(decode=True) or b""
            out.setdefault(name, []).append(data.decode("utf-8", "replace"))
        return out
    return {}


def parse_bool(name, value):
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise ApiError(400, "Invalid value '%s' for '%s' parameter: use yes, no, true or false"
                   % (value, name))


def bool_field(fields, name, default):
    if name not in fields:
        return default
    return parse_bool(name, fields[name])


def valid_address(addr):
    if not addr or len(addr) > ADDRESS_MAX or not EMAIL_RE.match(addr):
        return False
    return len(addr.rsplit("@", 1)[0]) <= LOCAL_PART_MAX


def parse_address(spec, field="address"):
    """'Name <a@x>' or 'a@x' -> (display name, address); 400 when it is no address."""
    name, addr = email.utils.parseaddr(spec or "")
    if not valid_address(addr):
        raise ApiError(400, "'%s' parameter is not a valid address. please check documentation"
                       % field)
    return name, addr


def parse_vars(value):
    """The `vars` field: a JSON object as a string; "null" or "" means none."""
    if value is None or value.strip() in ("", "null"):
        return {}
    try:
        v = json.loads(value)
    except ValueError:
        raise ApiError(400, "The 'vars' parameter is not valid JSON.")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ApiError(400, "The 'vars' parameter must be a JSON object.")
    return v


def int_param(fields, name, default, low, high=None):
    raw = fields.get(name)
    if raw is None or raw == "":
        return default
    try:
        n = int(raw, 10)
    except ValueError:
        raise ApiError(400, "The '%s' parameter must be an integer." % name)
    if n < low:
        raise ApiError(400, "The '%s' parameter can't be less than %d" % (name, low))
    if high is not None and n > high:
        raise ApiError(400, "The '%s' parameter can't be larger than %d" % (name, high))
    return n


# ---- rate limiter --------------------------------------------------------------

class RateLimiter:
    """At most `limit` accepted requests in any `window` seconds (sliding window log)."""

    def __init__(self, limit, window, grace_ms):
        self.limit = limit
        self.window = float(window)
        self.span = max(0.001, self.window - grace_ms / 1000.0)
        self.log = collections.deque()

    def acquire(self):
        """(allowed, seconds until one more would fit); an allowed request is counted."""
        if self.limit <= 0:
            return True, 0.0
        now = time.monotonic()
        while self.log and self.log[0] <= now - self.span:
            self.log.popleft()
        if len(self.log) < self.limit:
            self.log.append(now)
            return True, 0.0
        return False, max(0.0, self.log[0] + self.span - now)


# ---- faults ------------------------------------------------------------------

class Fault(standin_http.FaultBase):
    """standin_http.FaultBase with Mailgun's message and retryAfter; status
    must be an HTTP status."""

    def __init__(self, fid, spec):
        super().__init__(fid, spec)
        if not 100 <= self.status <= 599:
            raise ControlError(400, "status must be an HTTP status")
        self.message = spec.get("message") or (
            MSG_TOO_MANY if self.status == 429 else MSG_SERVER_ERROR)
        self.retry_after = spec.get("retryAfter")


# ---- state -------------------------------------------------------------------

class State(standin_http.StateBase):
    default_config = DEFAULT_CONFIG
    fault_class = Fault
    call_log_max = CALL_LOG_MAX

    def __init__(self, config=None):
        self.timers = {}
        super().__init__(config)

    def _clear(self):
        self.lists = {}                             # lower-case address -> list record
        self.tasks = collections.OrderedDict()      # task id -> bulk task
        self.suppressions = {"unsubscribes": [], "complaints": [], "bounces": []}
        self.clear_calls_and_faults()
        self.counters = collections.Counter()
        self.by_status = collections.Counter()
        self.events = collections.deque(maxlen=EVENT_LOG_MAX)

    def _new_limiter(self):
        c = self.config
        return RateLimiter(c["rateLimit"], c["rateWindow"], c["rateGraceMs"])

    @staticmethod
    def _check_config(changes):
        for k, v in changes.items():
            if k not in DEFAULT_CONFIG:
                raise ControlError(400, "unknown config key %r" % k)
            if k == "apiKeys" and v is not None and not isinstance(v, list):
                raise ControlError(400, "apiKeys must be a list or null")
            if k == "authErrorBody" and v not in ("text", "json"):
                raise ControlError(400, "authErrorBody must be text or json")
            if k in ("rateLimit", "rateGraceMs", "bulkAsyncDelay") and (
                    not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
                raise ControlError(400, "%s must be a number >= 0" % k)
            if k == "rateWindow" and (not isinstance(v, (int, float)) or v <= 0):
                raise ControlError(400, "rateWindow must be a number > 0")
            if k == "retryAfter" and v is not None and (not isinstance(v, int) or v < 0):
                raise ControlError(400, "retryAfter must be null or seconds >= 0")
            if k == "listCreateStatus" and v not in (200, 201):
                raise ControlError(400, "listCreateStatus must be 200 or 201")
            if k in ("bulkSyncMax", "bulkMax") and (not isinstance(v, int) or v < 1):
                raise ControlError(400, "%s must be a positive integer" % k)
            if k == "bulkAsyncHold" and not isinstance(v, bool):
                raise ControlError(400, "bulkAsyncHold must be a boolean")
            if k in ("domain", "webhookSigningKey") and (not isinstance(v, str) or not v):
                raise ControlError(400, "%s must be a non-empty string" % k)

    def cancel_timers(self):
        with self.lock:
            for t in self.timers.values():
                t.cancel()
            self.timers.clear()

    def reset(self, keep_config=False):
        with self.lock:
            self.cancel_timers()
            super().reset(keep_config)

    # -- lists and members

    def list_find(self, address):
        return self.lists.get(address.lower())

    def list_get(self, address, quoted=False):
        lst = self.list_find(address)
        if lst is None:
            raise list_not_found(address, quoted)
        return lst

    def list_add(self, address, name="", description="", access_level="readonly",
                 reply_preference="list"):
        lst = {"address": address, "name": name, "description": description,
               "access_level": access_level, "reply_preference": reply_preference,
               "created_at": time.time(), "id": new_hex_id(),
               "members": collections.OrderedDict()}
        self.lists[address.lower()] = lst
        return lst

    @staticmethod
    def list_view(lst):
        return {"address": lst["address"], "name": lst["name"],
                "description": lst["description"], "access_level": lst["access_level"],
                "reply_preference": lst["reply_preference"],
                "created_at": rfc2822(lst["created_at"]),
                "members_count": len(lst["members"])}

    @staticmethod
    def member_add(lst, address, name="", vars_=None, subscribed=True):
        m = {"address": address, "name": name, "vars": dict(vars_ or {}),
             "subscribed": subscribed, "sid": new_hex_id(), "created_at": time.time()}
        lst["members"][address.lower()] = m
        return m

    @staticmethod
    def member_view(m):
        return {"address": m["address"], "name": m["name"], "vars": m["vars"],
                "subscribed": m["subscribed"]}

    def list_dump(self, lst):
        v = self.list_view(lst)
        v["id"] = lst["id"]
        v["members"] = [dict(self.member_view(m), sid=m["sid"])
                        for _, m in sorted(lst["members"].items())]
        return v

    def dump(self):
        with self.lock:
            return {"lists": [self.list_dump(lst) for _, lst in sorted(self.lists.items())],
                    "tasks": [task_view(t) for t in self.tasks.values()],
                    "suppressions": json.loads(json.dumps(self.suppressions)),
                    "config": dict(self.config),
                    "faults": [f.describe() for f in self.faults], "calls": self.seq}

    def suppress(self, kind, record):
        with self.lock:
            self.suppressions[kind].append(record)

    # -- the call log (standin_http.CallsAndFaults) and Mailgun's counters

    def record_call(self, rec):
        with self.lock:
            super().record_call(rec)
            self.by_status[str(rec["status"])] += 1
            if rec["fault"]:
                self.counters["faults"] += 1

    def calls_view(self, since=0, with_log=True):
        with self.lock:
            out = super().calls_view(since, with_log)
            out["counters"] = {"byStatus": dict(self.by_status),
                               "unauthorized": self.counters["unauthorized"],
                               "rateLimited": self.counters["rateLimited"],
                               "faults": self.counters["faults"]}
            return out

    def clear_calls(self):
        with self.lock:
            super().clear_calls()
            self.counters.clear()
            self.by_status.clear()


# ---- bulk tasks --------------------------------------------------------------------

def parse_bulk_entry(item, default_subscribed):
    """One members.json entry -> member fields, or {"error": ...} for a bad entry."""
    desc = item if isinstance(item, str) else json.dumps(item, sort_keys=True)
    try:
        if isinstance(item, str):
            name, addr = parse_address(item)
            given = {"name"} if name else set()
            if default_subscribed is not None:
                given.add("subscribed")
            return {"address": addr, "name": name, "subscribed": default_subscribed,
                    "_given": given}
        if not isinstance(item, dict):
            raise ApiError(400, "an entry must be an address or a member object")
        if not isinstance(item.get("address"), str):
            raise ApiError(400, "'address' parameter is missing")
        name, addr = parse_address(item["address"])
        given = set()
        out = {"address": addr, "name": name, "subscribed": default_subscribed}
        if name:
            given.add("name")
        if "name" in item:
            if not isinstance(item["name"], str):
                raise ApiError(400, "'name' must be a string")
            out["name"] = item["name"]
            given.add("name")
        if "vars" in item:
            v = item["vars"]
            out["vars"] = parse_vars(v) if isinstance(v, str) else v
            if out["vars"] is None:
                out["vars"] = {}
            if not isinstance(out["vars"], dict):
                raise ApiError(400, "The 'vars' parameter must be a JSON object.")
            given.add("vars")
        if "subscribed" in item:
            s = item["subscribed"]
            out["subscribed"] = s if isinstance(s, bool) else parse_bool("subscribed", str(s))
        if "subscribed" in item or default_subscribed is not None:
            given.add("subscribed")
        out["_given"] = given
        return out
    except ApiError as e:
        return {"error": e.message, "description": desc}


def bulk_apply(st, lst, entries, upsert):
    """Apply parsed entries to a list -> (upserted, failed, error records)."""
    upserted = failed = 0
    errors = []
    for e in entries:
        if "error" in e:
            failed += 1
            errors.append({"member-description": e["description"], "error": {"message":
                                                                              e["error"]}})
            continue
        key = e["address"].lower()
        m = lst["members"].get(key)
        subscribed = e["subscribed"] if e["subscribed"] is not None else True
        if m is None:
            st.member_add(lst, e["address"], e.get("name", ""), e.get("vars"), subscribed)
            upserted += 1
        elif upsert:
            if "name" in e["_given"]:
                m["name"] = e["name"]
            if "vars" in e["_given"]:
                m["vars"] = dict(e["vars"])
            if "subscribed" in e["_given"]:
                m["subscribed"] = subscribed
            upserted += 1
    return upserted, failed, errors


def task_view(t):
    return {"id": t["id"], "list": t["list"], "status": t["status"],
            "entries": len(t["entries"]), "upsert": t["upsert"],
            "createdAt": t["created"], "completedAt": t["completed"],
            "upserted-count": t["upserted"], "failed-count": t["failed"],
            "events": list(t["events"])}


def task_finish(st, t, lst, now):
    """Apply a task's entries and record Mailgun's list events for it (lock held)."""
    t["completed"] = now
    mlist = {"address": t["list"], "list-id": t["listId"]}
    if lst is None or lst["id"] != t["listId"]:
        t["status"] = "failed"
        t["failed"] = len(t["entries"])
        t["events"].append({"event": "list_member_upload_error", "id": new_event_id(),
                            "timestamp": now, "mailing-list": mlist, "task-id": t["id"],
                            "format": "json", "member-description": "",
                            "error": {"message": "mailing list no longer exists"}})
        return
    upserted, failed, errors = bulk_apply(st, lst, t["entries"], t["upsert"])
    t.update({"status": "done", "upserted": upserted, "failed": failed})
    for err in errors:
        ev = {"event": "list_member_upload_error", "id": new_event_id(), "timestamp": now,
              "mailing-list": mlist, "task-id": t["id"], "format": "json"}
        ev.update(err)
        t["events"].append(ev)
    t["events"].append({"event": "list_uploaded", "id": new_event_id(), "timestamp": now,
                        "mailing-list": mlist, "is-upsert": t["upsert"], "format": "json",
                        "upserted-count": upserted, "failed-count": failed,
                        "task-id": t["id"]})


def task_complete(st, tid):
    """Run a pending task now (a timer or the control API); True when it ran."""
    with st.lock:
        t = st.tasks.get(tid)
        if t is None or t["status"] != "pending":
            return False
        timer = st.timers.pop(tid, None)
        if timer is not None:
            timer.cancel()
        task_finish(st, t, st.list_find(t["list"]), time.time())
        return True


def task_start(st, lst, entries, upsert, synchronous):
    """Record a bulk task; run it now when synchronous, else later -> task id (lock held)."""
    tid = ZERO_TASK_ID if synchronous else new_hex_id(16)
    t = {"id": tid, "list": lst["address"], "listId": lst["id"], "status": "pending",
         "entries": entries, "upsert": upsert, "created": time.time(), "completed": None,
         "upserted": 0, "failed": 0, "events": []}
    # Synchronous tasks all share the zero id; they are kept under a key of their own.
    st.tasks["sync-%d" % (len(st.tasks) + 1) if synchronous else tid] = t
    if synchronous:
        task_finish(st, t, lst, time.time())
    elif not st.config["bulkAsyncHold"]:
        timer = threading.Timer(st.config["bulkAsyncDelay"], task_complete, (st, tid))
        timer.daemon = True
        st.timers[tid] = timer
        timer.start()
    return tid


# ---- API handlers (called with the state lock held) ------------------------------

def h_lists_create(st, p, f, ctx):
    if not f.get("address"):
        raise ApiError(400, "'address' parameter is missing")
    display, addr = parse_address(f["address"])
    access = f.get("access_level") or "readonly"
    if access not in ACCESS_LEVELS:
        raise ApiError(400, "Invalid access level '%s'. It can be any of: 'readonly', "
                       "'members', 'everyone'." % access)
    reply = f.get("reply_preference") or "list"
    if reply not in REPLY_PREFERENCES:
        raise ApiError(400, "Invalid reply preference '%s'. It can be any of: 'sender', "
                       "'list'" % reply)
    if st.list_find(addr) is not None:
        raise ApiError(400, MSG_DUPLICATE)
    name = f["name"] if "name" in f else display
    lst = st.list_add(addr, name, f.get("description", ""), access, reply)
    return st.config["listCreateStatus"], {"list": st.list_view(lst),
                                           "message": MSG_LIST_CREATED}


def sorted_lists(st):
    return [lst for _, lst in sorted(st.lists.items())]


def h_lists_get(st, p, f, ctx):
    limit = int_param(f, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    skip = int_param(f, "skip", 0, 0)
    items = sorted_lists(st)
    if f.get("address"):
        want = (email.utils.parseaddr(f["address"])[1] or f["address"]).lower()
        items = [lst for lst in items if lst["address"].lower() == want]
    return 200, {"total_count": len(items),
                 "items": [st.list_view(lst) for lst in items[skip:skip + limit]]}


def page_slice(keys, f):
    """keys ascending; -> (start, end) of the page the `page`/`address`/`limit` ask for."""
    limit = int_param(f, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    page = (f.get("page") or "first").lower()
    pivot = (f.get("address") or "").lower()
    if page == "first":
        return 0, min(limit, len(keys)), limit
    if page == "last":
        return max(0, len(keys) - limit), len(keys), limit
    if page == "next":
        start = sum(1 for k in keys if k <= pivot) if pivot else 0
        return start, min(len(keys), start + limit), limit
    if page in ("prev", "previous"):
        end = sum(1 for k in keys if k < pivot) if pivot else 0
        return max(0, end - limit), end, limit
    raise ApiError(400, "The 'page' parameter must be first, last, next or prev.")


def paging_links(ctx, path, f, items_keys, limit):
    """Absolute URLs a client follows as they are (mailgun-go's iterators do)."""
    extra = []
    if f.get("subscribed"):
        extra.append(("subscribed", f["subscribed"]))

    def link(page, pivot=None):
        q = [("page", page)]
        if pivot is not None:
            q.append(("address", pivot))
        q.append(("limit", str(limit)))
        return "%s%s?%s" % (ctx["base"], path, urllib.parse.urlencode(q + extra))
    pivot = f.get("address") or ""
    return {"first": link("first"), "last": link("last"),
            "next": link("next", items_keys[-1] if items_keys else pivot),
            "previous": link("prev", items_keys[0] if items_keys else pivot)}


def h_lists_pages(st, p, f, ctx):
    lists = sorted_lists(st)
    keys = [lst["address"].lower() for lst in lists]
    start, end, limit = page_slice(keys, f)
    page = lists[start:end]
    return 200, {"items": [st.list_view(lst) for lst in page],
                 "paging": paging_links(ctx, "/v3/lists/pages", f,
                                        [lst["address"] for lst in page], limit)}


def h_list_get(st, p, f, ctx):
    return 200, {"list": st.list_view(st.list_get(p["list"]))}


def h_list_update(st, p, f, ctx):
    lst = st.list_get(p["list"])
    if "access_level" in f and f["access_level"] not in ACCESS_LEVELS:
        raise ApiError(400, "Invalid access level '%s'. It can be any of: 'readonly', "
                       "'members', 'everyone'." % f["access_level"])
    reply = f.get("reply_preference", f.get("reply_reference"))
    if reply is not None and reply not in REPLY_PREFERENCES:
        raise ApiError(400, "Invalid reply preference '%s'. It can be any of: 'sender', "
                       "'list'" % reply)
    new_addr = None
    if f.get("address"):
        _, new_addr = parse_address(f["address"])
        other = st.list_find(new_addr)
        if other is not None and other is not lst:
            raise ApiError(400, MSG_DUPLICATE)
    for k in ("name", "description", "access_level"):
        if k in f:
            lst[k] = f[k]
    if reply is not None:
        lst["reply_preference"] = reply
    if new_addr is not None:
        del st.lists[lst["address"].lower()]
        lst["address"] = new_addr
        st.lists[new_addr.lower()] = lst
    return 200, {"list": st.list_view(lst), "message": MSG_LIST_UPDATED}


def h_list_delete(st, p, f, ctx):
    lst = st.list_get(p["list"])
    del st.lists[lst["address"].lower()]
    return 200, {"address": lst["address"], "message": MSG_LIST_REMOVED}


def filtered_members(lst, f):
    members = [m for _, m in sorted(lst["members"].items())]
    if f.get("subscribed"):
        want = parse_bool("subscribed", f["subscribed"])
        members = [m for m in members if m["subscribed"] == want]
    return members


def h_members_get(st, p, f, ctx):
    lst = st.list_get(p["list"])
    limit = int_param(f, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    skip = int_param(f, "skip", 0, 0)
    members = filtered_members(lst, f)
    if f.get("address"):
        want = email.utils.parseaddr(f["address"])[1].lower()
        members = [m for m in members if m["address"].lower() == want]
    return 200, {"total_count": len(members),
                 "items": [st.member_view(m) for m in members[skip:skip + limit]]}


def h_members_pages(st, p, f, ctx):
    lst = st.list_get(p["list"])
    members = filtered_members(lst, f)
    keys = [m["address"].lower() for m in members]
    start, end, limit = page_slice(keys, f)
    page = members[start:end]
    path = "/v3/lists/%s/members/pages" % urllib.parse.quote(lst["address"], safe="@")
    return 200, {"items": [st.member_view(m) for m in page],
                 "paging": paging_links(ctx, path, f, [m["address"] for m in page], limit)}


def h_member_add(st, p, f, ctx):
    lst = st.list_get(p["list"])
    if not f.get("address"):
        raise ApiError(400, "'address' parameter is missing")
    display, addr = parse_address(f["address"])
    vars_ = parse_vars(f.get("vars")) if "vars" in f else None
    subscribed = bool_field(f, "subscribed", None)
    upsert = bool_field(f, "upsert", False)
    name = f["name"] if "name" in f else (display or None)
    m = lst["members"].get(addr.lower())
    if m is not None:
        if not upsert:
            raise ApiError(400, "Address already exists '%s'" % m["address"])
        if name is not None:
            m["name"] = name
        if vars_ is not None:
            m["vars"] = vars_
        if subscribed is not None:
            m["subscribed"] = subscribed
    else:
        m = st.member_add(lst, addr, name or "", vars_,
                          True if subscribed is None else subscribed)
    return 200, {"member": st.member_view(m), "message": MSG_MEMBER_CREATED}


def member_get(st, p):
    lst = st.list_get(p["list"])
    addr = email.utils.parseaddr(p["member"])[1] or p["member"]
    m = lst["members"].get(addr.lower())
    if m is None:
        raise member_not_found(p["member"], lst["address"])
    return lst, m


def h_member_get(st, p, f, ctx):
    _, m = member_get(st, p)
    return 200, {"member": st.member_view(m)}


def h_member_update(st, p, f, ctx):
    lst, m = member_get(st, p)
    vars_ = parse_vars(f.get("vars")) if "vars" in f else None
    subscribed = bool_field(f, "subscribed", None)
    new_addr, display = None, ""
    if f.get("address"):
        display, new_addr = parse_address(f["address"])
        other = lst["members"].get(new_addr.lower())
        if other is not None and other is not m:
            raise ApiError(400, "Address already exists '%s'" % other["address"])
    if "name" in f:
        m["name"] = f["name"]
    elif display:
        m["name"] = display
    if vars_ is not None:
        m["vars"] = vars_
    if subscribed is not None:
        m["subscribed"] = subscribed
    if new_addr is not None:
        del lst["members"][m["address"].lower()]
        m["address"] = new_addr
        lst["members"][new_addr.lower()] = m
    return 200, {"member": st.member_view(m), "message": MSG_MEMBER_UPDATED}


def h_member_delete(st, p, f, ctx):
    lst, m = member_get(st, p)
    del lst["members"][m["address"].lower()]
    return 200, {"member": {"address": m["address"]}, "message": MSG_MEMBER_DELETED}


def h_members_bulk(st, p, f, ctx):
    lst = st.list_get(p["list"], quoted=True)
    raw = f.get("members")
    if raw is None or raw.strip() == "":
        raise ApiError(400, "'members' parameter is missing")
    try:
        items = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The 'members' parameter is not valid JSON.")
    if not isinstance(items, list):
        raise ApiError(400, "The 'members' parameter must be a JSON array.")
    if len(items) > st.config["bulkMax"]:
        raise ApiError(400, "Too many members, max is %d" % st.config["bulkMax"])
    upsert = bool_field(f, "upsert", False)
    default_sub = bool_field(f, "subscribed", None)
    entries = [parse_bulk_entry(item, default_sub) for item in items]
    if len(items) <= st.config["bulkSyncMax"]:
        tid = task_start(st, lst, entries, upsert, True)
        return 200, {"list": st.list_view(lst), "message": MSG_BULK_SYNC, "task-id": tid}
    before = st.list_view(lst)
    tid = task_start(st, lst, entries, upsert, False)
    return 200, {"list": before, "message": MSG_BULK_ASYNC, "task-id": tid}


ROUTES = [
    ("/v3/lists", {"POST": h_lists_create, "GET": h_lists_get}),
    ("/v3/lists/pages", {"GET": h_lists_pages}),
    ("/v3/lists/{list}", {"GET": h_list_get, "PUT": h_list_update, "DELETE": h_list_delete}),
    ("/v3/lists/{list}/members", {"GET": h_members_get, "POST": h_member_add}),
    ("/v3/lists/{list}/members/pages", {"GET": h_members_pages}),
    ("/v3/lists/{list}/members.json", {"POST": h_members_bulk}),
    ("/v3/lists/{list}/members/{member}", {"GET": h_member_get, "PUT": h_member_update,
                                           "DELETE": h_member_delete}),
]


def match_route(path, method):
    """(template, params, handler or None); (None, None, None) for an unknown path.

    The first template that matches and serves the method wins, so the literal
    "pages" routes come before an address parameter of the same shape.
    """
    parts = path.split("/")[1:]
    if not parts or any(p == "" for p in parts):
        return None, None, None
    first = None
    for template, methods in ROUTES:
        tparts = template.split("/")[1:]
        if len(tparts) != len(parts):
            continue
        params = {}
        for t, p in zip(tparts, parts):
            if t.startswith("{"):
                params[t[1:-1]] = urllib.parse.unquote(p)
            elif t != p:
                break
        else:
            if method in methods:
                return template, params, methods[method]
            if first is None:
                first = (template, params, None)
    return first if first is not None else (None, None, None)


# ---- control API ---------------------------------------------------------------

def control_dispatch(st, method, action, body, query):
    """-> (status, payload). action is the path after /_standin/."""
    if action.startswith("lists/") and method == "GET":
        addr = urllib.parse.unquote(action[len("lists/"):])
        with st.lock:
            lst = st.list_find(addr)
            if lst is None:
                raise ControlError(404, "no list %s" % addr)
            return 200, st.list_dump(lst)
    if action == "tasks" and method == "GET":
        with st.lock:
            return 200, {"tasks": [task_view(t) for t in st.tasks.values()]}
    if action == "tasks/complete" and method == "POST":
        with st.lock:
            if body.get("id") is not None:
                if body["id"] not in st.tasks:
                    raise ControlError(404, "no task %s" % body["id"])
                ids = [body["id"]]
            else:
                ids = [tid for tid, t in st.tasks.items() if t["status"] == "pending"]
            return 200, {"completed": [tid for tid in ids if task_complete(st, tid)]}
    return standin_http.control_common(st, method, action, body, query, control_seed,
                                       send_event)


def control_seed(st, body):
    out = {"lists": []}
    with st.lock:
        for spec in body.get("lists", []):
            try:
                display, addr = parse_address(spec.get("address"))
                if st.list_find(addr) is not None:
                    raise ControlError(400, "list %s exists" % addr)
                access = spec.get("access_level", "readonly")
                reply = spec.get("reply_preference", "list")
                if access not in ACCESS_LEVELS or reply not in REPLY_PREFERENCES:
                    raise ControlError(400, "bad access_level or reply_preference")
                lst = st.list_add(addr, spec.get("name", display), spec.get("description", ""),
                                  access, reply)
                for m in spec.get("members", []):
                    mname, maddr = parse_address(m.get("address"))
                    vars_ = m.get("vars") or {}
                    if not isinstance(vars_, dict):
                        raise ControlError(400, "member vars must be an object")
                    st.member_add(lst, maddr, m.get("name", mname), vars_,
                                  bool(m.get("subscribed", True)))
            except ApiError as e:
                raise ControlError(400, e.message)
            out["lists"].append(addr)
    return out


# ---- webhooks (provider -> us) -----------------------------------------------------

GEO = {"country": "US", "region": "CA", "city": "San Francisco"}
CLIENT = {"client-type": "browser", "client-os": "Linux", "device-type": "desktop",
          "client-name": "Firefox", "user-agent": "Mozilla/5.0 (X11; Linux x86_64; "
                                                  "rv:128.0) Gecko/20100101 Firefox/128.0"}
LOG_LEVELS = {"accepted": "info", "delivered": "info", "opened": "info", "clicked": "info",
              "unsubscribed": "info", "complained": "warn", "stored": "info",
              "rejected": "warn"}


def event_data(st, req, now):
    """The event-data object for a control request (lock held)."""
    etype = req.get("event", "unsubscribed")
    if not isinstance(etype, str) or not etype:
        raise ControlError(400, "event must be a string")
    recipient = req.get("recipient")
    if not isinstance(recipient, str) or not valid_address(recipient):
        raise ControlError(400, "recipient (an email address) is required")
    domain = st.config["domain"]
    lst = member = None
    if req.get("list") is not None:
        lst = st.list_find(str(req["list"]))
        if lst is None:
            raise ControlError(404, "no list %s" % req["list"])
        member = lst["members"].get(recipient.lower())
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    data = {
        "event": etype,
        "id": new_event_id(),
        "timestamp": round(now, 6),
        "log-level": LOG_LEVELS.get(etype, "info"),
        "recipient": recipient,
        "recipient-domain": recipient.rsplit("@", 1)[1],
        "account": {"id": ACCOUNT_ID},
        "domain": {"name": domain},
        "message": {"headers": {"to": lst["address"] if lst else recipient,
                                "message-id": "%s.%s@%s" % (stamp, new_hex_id(8), domain),
                                "from": "Milo <notifications@%s>" % domain,
                                "subject": "News from Milo"},
                    "attachments": [], "size": 4096},
        "tags": [], "campaigns": [], "user-variables": {},
    }
    if etype in ("opened", "clicked", "unsubscribed"):
        data.update({"ip": "203.0.113.7", "geolocation": dict(GEO),
                     "client-info": dict(CLIENT)})
    if etype == "clicked":
        data["url"] = "https://milo.example.test/news"
    envelope = {"transport": "smtp", "sender": "bounce@%s" % domain,
                "sending-ip": "198.51.100.25", "targets": recipient}
    if etype == "failed":
        severity = req.get("severity", "permanent")
        if severity not in ("permanent", "temporary"):
            raise ControlError(400, "severity must be permanent or temporary")
        permanent = severity == "permanent"
        data.update({
            "log-level": "error" if permanent else "warn",
            "severity": severity,
            "reason": "bounce" if permanent else "generic",
            "delivery-status": {
                "code": 550 if permanent else 421,
                "message": ("5.1.1 The email account that you tried to reach does not exist"
                            if permanent else "4.4.2 Connection timed out"),
                "description": "", "attempt-no": 1, "session-seconds": 0.42},
            "envelope": envelope,
            "flags": {"is-authenticated": True, "is-test-mode": False,
                      "is-delayed-bounce": False}})
    if etype == "delivered":
        data.update({"delivery-status": {"code": 250, "message": "OK", "description": "",
                                         "attempt-no": 1, "session-seconds": 0.31},
                     "envelope": envelope,
                     "flags": {"is-authenticated": True, "is-test-mode": False}})
    if lst is not None:
        data["mailing-list"] = {"address": lst["address"], "list-id": lst["id"],
                                "sid": member["sid"] if member else new_hex_id()}
    for k, v in (req.get("data") or {}).items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    if req.get("apply", True):
        apply_event(st, etype, data, lst, member, recipient, now)
    return data


def apply_event(st, etype, data, lst, member, recipient, now):
    """What the recipient's action changes at Mailgun (lock held)."""
    when = rfc2822(now)
    if etype == "unsubscribed":
        if lst is not None:
            if member is not None:
                member["subscribed"] = False
        else:
            st.suppressions["unsubscribes"].append({"address": recipient, "tags": ["*"],
                                                    "created_at": when})
    elif etype == "complained":
        st.suppressions["complaints"].append({"address": recipient, "created_at": when})
    elif etype == "failed" and data.get("severity") == "permanent":
        ds = data.get("delivery-status") or {}
        st.suppressions["bounces"].append({"address": recipient,
                                           "code": str(ds.get("code", 550)),
                                           "error": ds.get("message", ""),
                                           "created_at": when})


def event_body(st, req, now):
    """-> (body bytes, signature object or None)."""
    if "body" in req:
        raw = req["body"]
        return (raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()), None
    ts = str(req.get("timestamp", int(now) + int(req.get("timestampOffset", 0))))
    token = str(req.get("token") or secrets.token_hex(TOKEN_HEX_BYTES))
    with st.lock:
        key = req.get("signingKey") or st.config["webhookSigningKey"]
        if "signature" in req:
            signature = req["signature"]
        else:
            if not isinstance(key, str) or not key:
                raise ControlError(400, "signingKey must be a non-empty string")
            signature = sign(key, ts, token)
        data = event_data(st, req, now)
    sig = {"timestamp": ts, "token": token, "signature": signature}
    envelope = {"signature": sig, "event-data": data}
    for k, v in (req.get("envelope") or {}).items():
        if v is None:
            envelope.pop(k, None)
        else:
            envelope[k] = v
    return json.dumps(envelope).encode(), sig


def send_event(st, req):
    u = standin_http.webhook_url(req)
    now = time.time()
    try:
        body, _ = event_body(st, req, now)
    except (TypeError, ValueError) as e:
        raise ControlError(400, "bad event request: %s" % e)
    headers = {"content-type": "application/json", "user-agent": "mailgun-standin/1"}
    return standin_http.send_webhook(st, req, u, now, body, headers,
                                     {"event": req.get("event", "unsubscribed")})


# ---- HTTP server -------------------------------------------------------------------

class Handler(standin_http.Handler):
    server_version = "mailgun-standin"
    logger = log
    max_body = MAX_BODY
    too_large_text = "Request Entity Too Large"
    dispatch = staticmethod(control_dispatch)

    @staticmethod
    def api_error(code, text):
        return {"message": text}

    def base_url(self):
        scheme = "https" if isinstance(self.request, ssl.SSLSocket) else "http"
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        return "%s://%s" % (scheme, host)

    def handle_api(self, u, query_multi, raw):
        started = time.monotonic()
        method = self.command
        template, params, handler = match_route(u.path, method)
        rec = {"time": time.time(), "method": method, "path": u.path, "route": template,
               "query": last_values(query_multi), "form": None,
               "headers": {k: self.headers.get(k) for k in (
                   "authorization", "user-agent", "content-type", "accept")},
               "authUser": None,
               "body": raw[:LOGGED_BODY_MAX].decode("utf-8", "replace") if raw else None,
               "status": None, "response": None, "fault": None}
        self.answer_and_record(rec, started, method, template, params, handler,
                               query_multi, raw, rec)

    def answer(self, method, template, params, handler, query_multi, raw, rec):
        """-> (status, payload, headers, content type, drop)."""
        st = self.st
        json_type = "application/json"
        user, ok = self.check_auth()
        rec["authUser"] = user
        if not ok:
            with st.lock:
                st.counters["unauthorized"] += 1
                style = st.config["authErrorBody"]
            h = {"WWW-Authenticate": 'Basic realm="MG API"'}
            if style == "json":
                return 401, {"message": MSG_INVALID_KEY}, h, json_type, False
            return 401, MSG_FORBIDDEN, h, "text/plain; charset=utf-8", False
        with st.lock:
            allowed, wait = st.limiter.acquire()
            retry_after = st.config["retryAfter"]
            if not allowed:
                st.counters["rateLimited"] += 1
        if not allowed:
            h = {}
            if retry_after is not None:
                h["Retry-After"] = str(max(retry_after, math.ceil(wait)))
            return 429, {"message": MSG_TOO_MANY}, h, json_type, False
        fault = st.take_fault(method, template)
        if fault is not None:
            rec["fault"] = fault.kind
            if fault.kind == "delay":
                st.stopping.wait(fault.seconds)
            elif fault.kind == "rate_limit":
                h = {}
                if fault.retry_after is not None:
                    h["Retry-After"] = str(fault.retry_after)
                return 429, {"message": MSG_TOO_MANY}, h, json_type, False
            elif not fault.after:
                return self.fault_answer(fault)
        status, payload = self.route(method, template, params, handler, query_multi, raw, rec)
        if fault is not None and fault.after and fault.kind in ("error", "drop"):
            return self.fault_answer(fault)
        return status, payload, {}, json_type, False

    @staticmethod
    def fault_answer(fault):
        if fault.kind == "drop":
            return 0, None, {}, "", True
        if fault.html:
            page = "<html><body><h1>%d</h1><p>%s</p></body></html>" % (fault.status, fault.message)
            return fault.status, page, {}, "text/html; charset=utf-8", False
        return fault.status, {"message": fault.message}, {}, "application/json", False

    def check_auth(self):
        """(user or None, accepted)."""
        auth = self.headers.get("Authorization") or ""
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "basic" or not cred.strip():
            return None, False
        try:
            decoded = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None, False
        user, sep, key = decoded.partition(":")
        if not sep or user != API_USER or not key:
            return user, False
        keys = self.st.config["apiKeys"]
        return user, keys is None or key in keys

    def route(self, method, template, params, handler, query_multi, raw, rec):
        if template is None:
            return 404, {"message": "Not Found"}
        if handler is None:
            return 405, {"message": "Method Not Allowed"}
        try:
            multi = {k: list(v) for k, v in query_multi.items()}
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                for k, v in parse_form(self.headers.get("Content-Type"), raw).items():
                    multi[k] = v
            fields = last_values(multi)
            rec["form"] = fields
            ctx = {"base": self.base_url()}
            with self.st.lock:
                return handler(self.st, params, fields, ctx)
        except ApiError as e:
            return e.status, e.body()
        except Exception:  # our bug: answer as a server would, keep serving
            log("handler error:\n%s", traceback.format_exc())
            return 500, {"message": MSG_SERVER_ERROR}


class StandIn(standin_http.StandIn):
    """In-process stand-in: StandIn(**config).start(); .url; .control(...); .stop()."""

    state_class = State
    handler_class = Handler

    def stop_state(self):
        super().stop_state()
        self.state.cancel_timers()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Mailgun mailing-list API stand-in "
                                             "(see the module docstring)")
    standin_http.add_server_args(ap, DEFAULT_API_KEY, "accept any key (user still api)",
                                 DEFAULT_CONFIG["rateLimit"], DEFAULT_CONFIG["rateWindow"])
    ap.add_argument("--domain", default=DEFAULT_DOMAIN, help="domain named in event-data")
    ap.add_argument("--webhook-signing-key", default=DEFAULT_SIGNING_KEY)
    ap.add_argument("--bulk-delay", type=float, default=DEFAULT_CONFIG["bulkAsyncDelay"],
                    help="seconds before an asynchronous bulk upload is applied")
    standin_http.add_closing_args(ap)
    a = ap.parse_args(argv)
    log.verbose = a.verbose
    config = standin_http.server_config(a, DEFAULT_API_KEY)
    config.update({"domain": a.domain, "webhookSigningKey": a.webhook_signing_key,
                   "bulkAsyncDelay": a.bulk_delay})
    try:
        s = StandIn(port=a.port, tls_cert=a.tls_cert, tls_key=a.tls_key or a.tls_cert,
                    **config)
    except ControlError as e:
        ap.error(str(e))
    return standin_http.serve(s, a.port_file)


if __name__ == "__main__":
    sys.exit(main())
