"""standin_http.py -- the HTTP plumbing the provider stand-ins share.

mailgun_standin.py and resend_standin.py each speak one provider's API and
document it in their docstrings; what is the same in both lives here:

  control_common the control endpoints both serve (healthz, state, reset,
                 seed, config, calls, counts, faults, events).
  Handler        the request handler's frame: TLS handshake per connection,
                 the request body (Content-Length or chunked, capped at
                 max_body), send(), the split between the control API under
                 /_standin/ and the provider API.
  Server         a threaded HTTP(S) server on one address.
  StandIn        the in-process stand-in: start(), url, port, control(),
                 stop(), a context manager.
  send_webhook   one webhook delivery (http:// or https://, with caFile,
                 serverName and insecure), recorded in the state's event log.
  FaultBase      one injected-fault rule: the fields both stand-ins take
                 (kind, count, every, fraction, seed, method, route, status,
                 seconds, html, afterApply), matches(), describe().
  CallsAndFaults the part of a State that holds the fault rules and the
                 call log: add_fault, take_fault, record_call, calls_view,
                 clear_calls.
  StateBase      a State's frame: lock, stopping, the config (start-up values,
                 configure, reset) and the rate limiter, on CallsAndFaults.
  Logger, write_atomic, serve and the command-line flags both take.

A stand-in subclasses Handler and StandIn and fills in their class
attributes (see each class). Python 3 standard library only.
"""

import collections
import http.client
import http.server
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

CONTROL_PREFIX = "/_standin/"
MAX_CHUNK_LINES = 100               # trailer lines read after a chunked body
CHUNK_LINE_MAX = 1024               # bytes of one chunk-size or trailer line
TLS_HANDSHAKE_TIMEOUT = 10          # seconds a client has to finish its handshake
LISTEN_BACKLOG = 128                # a burst of clients must not wait for SYN retries
POLL_INTERVAL = 0.05                # serve_forever's shutdown poll, seconds
STOP_JOIN_TIMEOUT = 5               # seconds stop() waits for the server thread
EVENT_RESPONSE_MAX = 64 * 1024      # webhook answer bytes kept
WEBHOOK_TIMEOUT = 5                 # seconds, unless the request says "timeout"


class ControlError(Exception):
    """A control API request refused: status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class BodyTooLarge(Exception):
    pass


class Logger:
    """log(msg, *args) writes "<name>: msg" to stderr; .verbose adds a line a request."""

    def __init__(self, name):
        self.name = name
        self.verbose = False

    def __call__(self, msg, *args):
        if args:
            msg = msg % args
        sys.stderr.write("%s: %s\n" % (self.name, msg))
        sys.stderr.flush()


def last_values(multi):
    """{name: [values]} (parse_qs) -> {name: last value}."""
    return {k: v[-1] for k, v in multi.items() if v}


# ---- control API -------------------------------------------------------------------

def control_common(st, method, action, body, query, seed, send_event):
    """The control endpoints both stand-ins serve -> (status, payload); ControlError
    404 for any other. st: the stand-in's State (dump, reset, configure, config,
    calls_view, clear_calls, faults, add_fault, events, lock); seed and
    send_event: (st, body) -> payload, for POST seed and POST events."""
    if action == "healthz" and method == "GET":
        return 200, "ok"
    if action == "state" and method == "GET":
        return 200, st.dump()
    if action == "reset" and method == "POST":
        st.reset(keep_config=bool(body.get("keepConfig")))
        return 200, {"reset": True}
    if action == "seed" and method == "POST":
        return 200, seed(st, body)
    if action == "config":
        if method == "GET":
            return 200, dict(st.config)
        if method == "POST":
            return 200, st.configure(body)
    if action == "calls":
        if method == "GET":
            since = int(query.get("since", "0") or 0)
            return 200, st.calls_view(since, query.get("log", "1") not in ("0", "false"))
        if method == "DELETE":
            st.clear_calls()
            return 200, {"cleared": True}
    if action == "counts" and method == "GET":
        return 200, st.calls_view(0, False)
    if action == "faults":
        if method == "GET":
            with st.lock:
                return 200, {"faults": [f.describe() for f in st.faults]}
        if method == "DELETE" or (method == "POST" and body.get("clear")):
            with st.lock:
                st.faults = []
            return 200, {"cleared": True}
        if method == "POST":
            return 200, {"id": st.add_fault(body)}
    if action == "events":
        if method == "GET":
            with st.lock:
                return 200, {"events": list(st.events)}
        if method == "POST":
            return 200, send_event(st, body)
    raise ControlError(404, "no control endpoint %s %s" % (method, action))


# ---- faults and the call log ------------------------------------------------------

FAULT_KINDS = ("error", "rate_limit", "delay", "drop")


class FaultBase:
    """One fault rule from a POST /_standin/faults body (spec); ControlError 400
    for a bad field. A stand-in's Fault extends it for its own fields (error
    name, message, retryAfter) and checks."""

    def __init__(self, fid, spec):
        self.id = fid
        self.spec = dict(spec)
        self.kind = spec.get("kind", "error")
        if self.kind not in FAULT_KINDS:
            raise ControlError(400, "kind must be one of %s" % ", ".join(FAULT_KINDS))
        self.count = spec.get("count")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ControlError(400, "count must be a positive integer")
        self.every = spec.get("every")
        if self.every is not None and (not isinstance(self.every, int) or self.every < 1):
            raise ControlError(400, "every must be a positive integer")
        try:
            self.fraction = float(spec.get("fraction", 1.0))
            self.status = int(spec.get("status", 500 if self.kind == "error" else 429))
            self.seconds = float(spec.get("seconds", 0))
        except (TypeError, ValueError):
            raise ControlError(400, "fraction, status and seconds must be numbers")
        if not 0.0 <= self.fraction <= 1.0:
            raise ControlError(400, "fraction must be within 0..1")
        self.rng = random.Random(spec.get("seed", 0))
        self.method = spec.get("method")
        self.route = spec.get("route")
        self.html = bool(spec.get("html", False))
        self.after = bool(spec.get("afterApply", False))
        self.seen = 0
        self.fired = 0

    def matches(self, method, template):
        if self.method and self.method.upper() != method:
            return False
        if self.route and self.route != template:
            return False
        return True

    def describe(self):
        d = dict(self.spec)
        d.update({"id": self.id, "remaining": self.count, "seen": self.seen,
                  "fired": self.fired})
        return d


class CallsAndFaults:
    """The part of a stand-in's State that holds the fault rules (faults, a
    list of fault_class) and the call log (calls, at most call_log_max, and
    the counts by route and by status). The class sets fault_class and
    call_log_max and has lock (an RLock); its _clear() calls
    clear_calls_and_faults()."""

    def clear_calls_and_faults(self):
        self.faults = []
        self.next_fault = 1
        self.calls = collections.deque(maxlen=self.call_log_max)
        self.seq = 0
        self.counts = collections.Counter()
        self.counts_by_status = collections.defaultdict(collections.Counter)

    def add_fault(self, spec):
        with self.lock:
            f = self.fault_class(self.next_fault, spec)
            self.next_fault += 1
            self.faults.append(f)
            return f.id

    def take_fault(self, method, template):
        """The first rule that fires on this call, or None. A rule sees every
        call it matches; with every N it fires on the Nth, 2Nth, ... of them,
        then fraction draws; count is used up only when it fires."""
        with self.lock:
            for f in self.faults:
                if not f.matches(method, template):
                    continue
                f.seen += 1
                if f.every is not None and f.seen % f.every != 0:
                    continue
                if f.fraction < 1.0 and f.rng.random() >= f.fraction:
                    continue
                f.fired += 1
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                return f
            return None

    def record_call(self, rec):
        """Logs rec (method, route, status, ...) under the next seq and counts it."""
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            self.calls.append(rec)
            key = "%s %s" % (rec["method"], rec["route"] or "(unknown)")
            self.counts[key] += 1
            self.counts_by_status[key][str(rec["status"])] += 1

    def calls_view(self, since=0, with_log=True):
        with self.lock:
            out = {"total": self.seq, "next": self.seq + 1, "counts": dict(self.counts),
                   "countsByStatus": {k: dict(v) for k, v in self.counts_by_status.items()}}
            if with_log:
                out["calls"] = [dict(r) for r in self.calls if r["seq"] >= since]
            return out

    def clear_calls(self):
        with self.lock:
            self.calls.clear()
            self.counts.clear()
            self.counts_by_status.clear()


class StateBase(CallsAndFaults):
    """A stand-in's State: lock (an RLock), stopping (an Event that delay
    faults wait on), config (default_config updated with the start-up
    values; reset goes back to them) and limiter. The class sets
    default_config, fault_class and call_log_max and defines _check_config
    (changes; ControlError for a bad one), _new_limiter() and _clear()
    (forget every object, call, fault and event)."""

    def __init__(self, config=None):
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.initial = dict(self.default_config)
        if config:
            self._check_config(config)
            self.initial.update(config)
        self.config = dict(self.initial)
        self.limiter = self._new_limiter()
        self._clear()

    def configure(self, changes):
        with self.lock:
            self._check_config(changes)
            self.config.update(changes)
            if any(k.startswith("rate") for k in changes):
                self.limiter = self._new_limiter()
            return dict(self.config)

    def reset(self, keep_config=False):
        with self.lock:
            if not keep_config:
                self.config = dict(self.initial)
            self.limiter = self._new_limiter()
            self._clear()


# ---- HTTP server -------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    """A subclass sets server_version, logger (a Logger), max_body (bytes),
    json_type (send()'s default Content-Type), too_large_text (the 413's
    message), dispatch (staticmethod: (state, method, action, body, query) ->
    (status, payload), raising ControlError), and defines api_error(code, text)
    (the provider's error body) and handle_api(u, query_multi, raw)."""

    protocol_version = "HTTP/1.1"
    json_type = "application/json"

    def version_string(self):
        return self.server_version

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(TLS_HANDSHAKE_TIMEOUT)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.request.close()
                raise
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        if self.logger.verbose:
            self.logger("%s %s", self.address_string(), fmt % args)

    @property
    def st(self):
        return self.server.state

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(CHUNK_LINE_MAX)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(MAX_CHUNK_LINES):
                        if self.rfile.readline(CHUNK_LINE_MAX) in (b"\r\n", b"\n", b""):
                            break
                    return bytes(out)
                if len(out) + size > self.max_body:
                    raise BodyTooLarge()
                out += self.rfile.read(size)
                self.rfile.readline(CHUNK_LINE_MAX)
        n = int(self.headers.get("Content-Length") or 0)
        if n > self.max_body:
            raise BodyTooLarge()
        return self.rfile.read(n) if n > 0 else b""

    def send(self, status, payload, headers=None, ctype=None):
        if ctype is None:
            ctype = self.json_type
        if isinstance(payload, (bytes, bytearray)):
            data = bytes(payload)
        elif isinstance(payload, str) and not ctype.startswith("application/json"):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def answer_and_record(self, rec, started, *args):
        """Answers a provider call with self.answer(*args), records it in the
        call log with its status, response and duration, then sends it (or
        drops the connection, for a fault that says so)."""
        status, payload, headers, ctype, drop = self.answer(*args)
        rec["status"] = status
        rec["response"] = payload
        rec["durationMs"] = round((time.monotonic() - started) * 1000, 1)
        self.st.record_call(rec)
        if drop:
            self.close_connection = True
            return
        self.send(status, payload, headers, ctype)

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        parsed = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        control = u.path.startswith(CONTROL_PREFIX)
        try:
            raw = self.read_body()
        except (BodyTooLarge, ValueError) as e:
            # The rest of the body is unread: this connection cannot go on.
            self.close_connection = True
            code = 413 if isinstance(e, BodyTooLarge) else 400
            text = self.too_large_text if code == 413 else "Bad request framing."
            if control:
                return self.send(code, {"error": text})
            return self.send(code, self.api_error(code, text))
        if control:
            return self.handle_control(u.path[len(CONTROL_PREFIX):], last_values(parsed), raw)
        self.handle_api(u, parsed, raw)

    def do_GET(self):
        self.handle_any()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_GET

    def handle_control(self, action, query, raw):
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ControlError(400, "control bodies are JSON objects")
            code, payload = self.dispatch(self.st, self.command, action, body, query)
        except ControlError as e:
            code, payload = e.status, {"error": str(e)}
        except ValueError as e:   # the body, or a number in the query
            code, payload = 400, {"error": "bad request: %s" % e}
        self.send(code, payload)


class Server(http.server.ThreadingHTTPServer):
    """Serves handler_class on addr (TLS when tls, an ssl.SSLContext, is given);
    handlers reach the stand-in's state as self.server.state."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request, client_address):
        # A client that gave up (timeouts, dropped connections) is routine here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, ssl.SSLError)):
            logger = self.RequestHandlerClass.logger
            if logger.verbose:
                logger("%s: %s", client_address[0], exc)
            return
        super().handle_error(request, client_address)

    def __init__(self, addr, handler_class, state, tls=None):
        super().__init__(addr, handler_class)
        self.state = state
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)


class StandIn:
    """In-process stand-in: StandIn(**config).start(); .url; .control(...); .stop().

    A subclass sets state_class (built from the config; it has .stopping, a
    threading.Event) and handler_class (a Handler subclass)."""

    def __init__(self, port=0, tls_cert=None, tls_key=None, **config):
        self.req_port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.state = self.state_class(config)
        self.httpd = None
        self.thread = None

    def start(self):
        tls = None
        if self.tls_cert:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(self.tls_cert, self.tls_key)
        self.httpd = Server(("127.0.0.1", self.req_port), self.handler_class, self.state, tls)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": POLL_INTERVAL},
                                       name=self.handler_class.logger.name, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls_cert else "http", self.port)

    def control(self, action, body=None, method="POST", query=None):
        """The control API without HTTP; an error raises RuntimeError."""
        try:
            code, payload = self.handler_class.dispatch(self.state, method, action,
                                                        body or {}, query or {})
        except ControlError as e:
            code, payload = e.status, {"error": str(e)}
        if code >= 400:
            raise RuntimeError("control %s: %s" % (action, payload))
        return payload

    def stop_state(self):
        """Tells the state to stop waiting (delay faults); a subclass may add to it."""
        self.state.stopping.set()

    def stop(self):
        self.stop_state()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.thread is not None:
            self.thread.join(STOP_JOIN_TIMEOUT)
            self.thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---- webhook delivery --------------------------------------------------------------

class NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to host:port but checks the certificate for another name."""

    def __init__(self, host, port, server_name, context, timeout):
        super().__init__(host, port, context=context, timeout=timeout)
        self._server_name = server_name
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self._server_name)


def webhook_url(req):
    """The split URL of a send-event request; ControlError unless http:// or https://."""
    url = req.get("url")
    if not url:
        raise ControlError(400, "url is required")
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ControlError(400, "url must be http:// or https://")
    return u


def send_webhook(st, req, u, now, body, headers, fields=None):
    """POSTs body (bytes) to u (from webhook_url(req)) with headers, after
    req["headers"] (a null value removes a header), and records the delivery
    in st.events: {time, <fields>, request:{url, headers, body}, delivered,
    status, responseBody, responseHeaders, error}, which it returns.
    req: timeout (seconds), and for https caFile, serverName, insecure."""
    for k, v in (req.get("headers") or {}).items():
        headers.pop(k.lower(), None)
        if v is not None:
            headers[k.lower()] = v
    rec = {"time": now}
    rec.update(fields or {})
    rec.update({"request": {"url": req["url"], "headers": headers,
                            "body": body.decode("utf-8", "replace")},
                "delivered": False, "status": None, "responseBody": None,
                "responseHeaders": None, "error": None})
    timeout = float(req.get("timeout", WEBHOOK_TIMEOUT))
    port = u.port or (443 if u.scheme == "https" else 80)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    conn = None
    try:
        if u.scheme == "https":
            if req.get("insecure"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=req.get("caFile"))
            conn = NamedHTTPSConnection(u.hostname, port, req.get("serverName") or u.hostname,
                                        ctx, timeout)
        else:
            conn = http.client.HTTPConnection(u.hostname, port, timeout=timeout)
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(EVENT_RESPONSE_MAX)
        rec.update({"status": resp.status, "delivered": 200 <= resp.status < 300,
                    "responseBody": data.decode("utf-8", "replace"),
                    "responseHeaders": {k.lower(): v for k, v in resp.getheaders()}})
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if conn is not None:
            conn.close()
    with st.lock:
        st.events.append(rec)
    return rec


# ---- command line ------------------------------------------------------------------

def add_server_args(ap, default_key, any_key_help, default_rate, default_window):
    """--port, --port-file, --api-key, --any-key, --rate, --rate-window."""
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--api-key", action="append", help="accepted key (repeatable); "
                    "default %s" % default_key)
    ap.add_argument("--any-key", action="store_true", help=any_key_help)
    ap.add_argument("--rate", type=float, default=default_rate,
                    help="requests per window; 0 = unlimited")
    ap.add_argument("--rate-window", type=float, default=default_window)


def add_closing_args(ap):
    """--tls-cert, --tls-key and -v: the flags after a stand-in's own."""
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("-v", "--verbose", action="store_true")


def server_config(a, default_key):
    """The config that add_server_args' flags set."""
    return {"rateLimit": int(a.rate) if a.rate == int(a.rate) else a.rate,
            "rateWindow": a.rate_window,
            "apiKeys": None if a.any_key else (a.api_key or [default_key])}


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def serve(s, port_file):
    """Starts s, writes its port to port_file (when given), serves until
    SIGTERM or SIGINT, stops; -> exit status 0."""
    s.start()
    if port_file:
        write_atomic(port_file, "%d\n" % s.port)
    s.handler_class.logger("listening on %s", s.url)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(1):
        pass
    s.stop()
    return 0
