"""test_hardening.py -- contact-webhook against hostile clients and a hung API server.

The real binary over real sockets, as an attacker or a broken cluster would
meet it: slow and idle connections, stalled and oversized bodies, request
smuggling and control characters, an API server that stops answering, a
drain under SIGTERM, and its logs under load. Each test asserts what was
answered and, where the point is a deadline, that it came before that
deadline (with room for a loaded machine); none asserts absolute speed.
Memory is read from /proc/<pid>/status (VmHWM, VmRSS); those checks are
skipped for sanitizer builds, whose shadow memory would count.

The webhook: $MILO_WEBHOOK_BIN (make test sets it), else
build/default/contact-webhook. Certificates come from certs/dev-cert.sh.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from kube_standin import StandIn  # noqa: E402

MIB = 1024 * 1024
LIMIT_MIB = 64          # the Deployment's memory limit
SLACK = 10.0            # room on a loaded machine past a budget, seconds
WAIT = 60.0             # bound on every wait for an event
VALIDATE = "/validate-notification-miloapis-com-v1alpha1-"
MEMBERSHIP = VALIDATE + "contactgroupmembership"
GROUP = VALIDATE + "contactgroup"
CONTACT = VALIDATE + "contact"


def webhook_bin():
    return os.environ.get("MILO_WEBHOOK_BIN") or os.path.join(
        TOP, "build", "default", "contact-webhook")


def sanitized(path):
    """An ASan or TSan build (whose shadow memory would count in RSS)."""
    if os.environ.get("MILO_SANITIZE"):
        return True
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


CERTS = {}


def setUpModule():
    binary = webhook_bin()
    if not os.access(binary, os.X_OK):
        raise RuntimeError("%s is not an executable (make all)" % binary)
    if not shutil.which("certtool"):
        raise RuntimeError("certtool is missing (make deps installs gnutls-bin)")
    d = tempfile.mkdtemp(prefix="milo-harden-")
    subprocess.run(["sh", os.path.join(TOP, "certs", "dev-cert.sh"), "--client", d],
                   check=True, capture_output=True)
    CERTS.update(dir=d, ca=os.path.join(d, "ca.crt"), sanitized=sanitized(binary))


def tearDownModule():
    if CERTS.get("dir"):
        shutil.rmtree(CERTS["dir"], ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def review(kind, obj, uid="u-1", operation="CREATE"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": operation,
                        "kind": {"group": "notification.miloapis.com",
                                 "version": "v1alpha1", "kind": kind},
                        "namespace": obj["metadata"].get("namespace"),
                        "name": obj["metadata"]["name"],
                        "userInfo": {"username": "admin"}, "object": obj}}


def membership(name="m", contact="john-doe", group="admins", ns="org-xyz"):
    return {"apiVersion": "notification.miloapis.com/v1alpha1",
            "kind": "ContactGroupMembership",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"contactRef": {"name": contact, "namespace": ns},
                     "contactGroupRef": {"name": group, "namespace": ns}}}


def contact_group(name="admins", ns="org-xyz", display="Admins"):
    return {"apiVersion": "notification.miloapis.com/v1alpha1", "kind": "ContactGroup",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"displayName": display, "visibility": "public"}}


def sample_review():
    with open(os.path.join(TOP, "test", "fixtures", "sample-review.json")) as f:
        return json.load(f)


class Webhook:
    """One contact-webhook on a free loopback port, with these flags."""

    def __init__(self, *flags, kubeconfig=None):
        self.port = free_port()
        self.log_path = os.path.join(CERTS["dir"], "webhook-%d.log" % self.port)
        args = [webhook_bin(), "--bind-address=127.0.0.1",
                "--secure-port=%d" % self.port, "--cert-dir=" + CERTS["dir"],
                "--shutdown-delay=0s"] + list(flags)
        if kubeconfig:
            args.append("--kubeconfig=" + kubeconfig)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        self.ctx = ssl.create_default_context(cafile=CERTS["ca"])
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("contact-webhook exited: " + self.log_text())
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("contact-webhook never became ready: " + self.log_text())

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def log_lines(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self, sig=signal.SIGTERM):
        """Stops it; its exit status. A sanitizer's report fails the test."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        text = self.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in text:
                raise AssertionError("sanitizer report in %s:\n%s" % (self.log_path, text[-4000:]))
        return self.proc.returncode

    def status(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def https(self, timeout=WAIT):
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx,
                                           timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """One exchange (on conn if given): (status, headers dict, body bytes)."""
        c = conn or self.https()
        h = {"Content-Type": "application/json"} if body is not None else {}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if conn is None:
            c.close()
        return r.status, hdrs, data

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body, **kw):
        status, hdrs, data = self.request("POST", path, body, **kw)
        return status, hdrs, data

    def metric(self, series):
        text = self.get("/metrics")[2].decode()
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
        return None

    def tls(self, source=None, timeout=WAIT):
        """A TLS connection, handshake done, from a source address if given."""
        s = socket.socket()
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", self.port))
        return self.ctx.wrap_socket(s, server_hostname="localhost")

    def raw(self, data, timeout=WAIT):
        """Sends data over a new TLS connection, reads until the server closes."""
        t = self.tls(timeout=timeout)
        t.sendall(data)
        return read_to_close(t)


def read_to_close(sock):
    """Everything until the peer closes; (bytes, closed) -- closed False on a timeout."""
    out = b""
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                return out, True
            out += d
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
            BrokenPipeError):
        return out, True
    except (socket.timeout, TimeoutError):
        return out, False
    finally:
        sock.close()


def wait_closed(sock, deadline):
    """Seconds until the server closes sock (reading, discarding), or None by deadline."""
    t0 = time.monotonic()
    sock.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - t0
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                BrokenPipeError, ssl.SSLError):
            return time.monotonic() - t0
    return None


def parse_time(text):
    """Seconds from a log line's RFC 3339 time with milliseconds."""
    t = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return time.mktime(t) + float("0" + text[19:-1])


def status_line(data):
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def header(data, name):
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    m = re.search(r"(?im)^%s:\s*(.*?)\s*$" % re.escape(name), head)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------

class TimeBudgets(unittest.TestCase):
    """Go's ReadHeaderTimeout, ReadTimeout and IdleTimeout, which trickling cannot stretch."""

    HEADER, READ, IDLE = 2.0, 3.0, 2.0

    @classmethod
    def setUpClass(cls):
        cls.w = Webhook("--read-header-timeout=2s", "--read-timeout=3s",
                        "--idle-timeout=2s")

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def test_trickled_header_closed_at_its_budget(self):
        t = self.w.tls()
        t0 = time.monotonic()
        t.sendall(b"POST " + CONTACT.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        t.settimeout(0.1)
        closed = None
        # One header byte every 0.2 s: each is activity, none may extend the budget.
        while time.monotonic() - t0 < self.HEADER + SLACK:
            try:
                t.sendall(b"X")
                if t.recv(1024) == b"":
                    closed = time.monotonic() - t0
                    break
            except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                time.sleep(0.1)
            except (OSError, ssl.SSLError):
                closed = time.monotonic() - t0
                break
        t.close()
        self.assertIsNotNone(closed, "a trickled header kept its connection")
        self.assertGreaterEqual(closed, self.HEADER - 0.05)

    def test_silent_connection_closed_at_the_header_budget(self):
        s = socket.create_connection(("127.0.0.1", self.w.port))
        took = wait_closed(s, time.monotonic() + self.HEADER + SLACK)
        s.close()
        self.assertIsNotNone(took, "an idle TCP connection was kept")
        self.assertGreaterEqual(took, self.HEADER - 0.05)

    def test_stalled_body_closed_at_the_read_budget(self):
        before = self.w.metric('milo_http_connection_timeouts_total{budget="read"}')
        t = self.w.tls()
        t0 = time.monotonic()
        t.sendall(b"POST " + CONTACT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":")
        took = wait_closed(t, t0 + self.READ + SLACK)
        t.close()
        self.assertIsNotNone(took, "a stalled body kept its connection")
        self.assertGreaterEqual(took, self.READ - 0.05)
        self.assertEqual(self.w.metric(
            'milo_http_connection_timeouts_total{budget="read"}'), before + 1)

    def test_keep_alive_until_the_idle_budget(self):
        c = self.w.https()
        self.assertEqual(self.w.request("GET", "/healthz", conn=c)[0], 200)
        time.sleep(self.IDLE / 4)
        self.assertEqual(self.w.request("GET", "/healthz", conn=c)[0], 200)
        t0 = time.monotonic()
        took = wait_closed(c.sock, t0 + self.IDLE + SLACK)
        c.close()
        self.assertIsNotNone(took, "an idle keep-alive connection was kept")
        self.assertGreaterEqual(took, self.IDLE - 0.05)


class HostileConnections(unittest.TestCase):
    """2,000 connections held by an attacker do not stop honest requests."""

    def test_honest_requests_answered_while_2000_are_held(self):
        w = Webhook()   # the shipped defaults: 10 s header budget, 2,500 connections
        hostile = []
        try:
            # 250 from each of eight addresses: under the 256 per address.
            for i in range(2000):
                s = socket.socket()
                s.bind(("127.0.0.%d" % (2 + i % 8), 0))
                s.connect(("127.0.0.1", w.port))
                hostile.append(s)
            end = time.monotonic() + WAIT
            while w.metric("milo_http_connections") < 2000 and time.monotonic() < end:
                time.sleep(0.1)
            self.assertGreaterEqual(w.metric("milo_http_connections"), 2000)
            answered = 0
            for i in range(20):
                # Every one trickles a TLS record, a byte per honest review.
                for s in hostile:
                    s.sendall(b"\x16\x03\x01\x02\x00\x01"[i % 6:i % 6 + 1])
                status, _, body = w.post(CONTACT, sample_review())
                answered += status == 200 and json.loads(body)["response"]["allowed"]
            self.assertEqual(answered, 20)
            self.assertEqual(w.get("/readyz")[0], 200)
            if not CERTS["sanitized"]:
                self.assertLess(w.status("VmRSS"), LIMIT_MIB * MIB)
            # The header budget then closes every one of them.
            deadline = time.monotonic() + 10 + SLACK
            for s in hostile:
                self.assertIsNotNone(wait_closed(s, deadline), "a hostile connection was kept")
        finally:
            for s in hostile:
                s.close()
            w.stop()

    def test_per_address_limit(self):
        w = Webhook("--max-connections-per-ip=4")
        held = []
        try:
            for _ in range(4):
                held.append(w.tls(source="127.0.0.2"))
            extra = socket.socket()
            extra.bind(("127.0.0.2", 0))
            extra.connect(("127.0.0.1", w.port))
            self.assertIsNotNone(wait_closed(extra, time.monotonic() + WAIT),
                                 "a fifth connection from one address was kept")
            extra.close()
            other = w.tls(source="127.0.0.3")
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, _ = read_to_close(other)
            self.assertEqual(status_line(data), "HTTP/1.1 200 OK")
        finally:
            for s in held:
                s.close()
            w.stop()


class MemoryBudgets(unittest.TestCase):
    """The two memory attacks of issue 15 stay under the Deployment's 64 MiB."""

    def test_stalled_bodies_capped_then_memory_returned(self):
        w = Webhook()   # 24Mi of bodies at once
        size, socks, answers = 7 * MIB, [], []
        lock = threading.Lock()

        def attack():
            t = w.tls()
            t.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n" % (CONTACT, size)).encode())
            t.settimeout(2)
            sent, chunk = 0, b" " * 65536
            try:
                while sent < size - 1:      # all but the last byte, then stall
                    n = min(len(chunk), size - 1 - sent)
                    t.sendall(chunk[:n])
                    sent += n
            except OSError:
                pass                    # refused: the server answered and closed
            t.settimeout(5)
            try:
                data = t.recv(4096)
            except (socket.timeout, TimeoutError):
                data = b""              # no answer: its body is held
            with lock:
                socks.append(t)
                answers.append(data)

        threads = [threading.Thread(target=attack) for _ in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        refused = [a for a in answers if status_line(a) == "HTTP/1.1 503 Service Unavailable"]
        held = [a for a in answers if a == b""]
        self.assertEqual(len(refused), 13, [status_line(a) for a in answers])
        self.assertEqual(len(held), 3)
        for a in refused:
            self.assertEqual(header(a, "Retry-After"), "1")
            self.assertEqual(header(a, "Connection"), "close")
        self.assertEqual(w.metric('milo_http_requests_refused_total{reason="body_budget"}'), 13)
        peak = w.status("VmHWM")
        for s in socks:
            s.close()
        try:
            if not CERTS["sanitized"]:
                self.assertLess(peak, LIMIT_MIB * MIB)
                # After the burst the memory goes back to the system.
                end = time.monotonic() + WAIT
                while w.status("VmRSS") > 24 * MIB and time.monotonic() < end:
                    time.sleep(0.2)
                self.assertLessEqual(w.status("VmRSS"), 24 * MIB)
            # And the budget is whole again.
            self.assertEqual(w.post(CONTACT, sample_review())[0], 200)
        finally:
            w.stop()

    def test_a_review_with_250000_keys_is_refused_unparsed(self):
        w = Webhook()
        try:
            obj = sample_review()
            obj["request"]["object"]["metadata"]["annotations"] = {
                "k%06d" % i: "" for i in range(250000)}
            status, _, body = w.post(CONTACT, obj)
            self.assertEqual(status, 413)
            self.assertIn(b"at most 20000 JSON members and array elements", body)
            self.assertEqual(w.metric("milo_webhook_reviews_too_complex_total"), 1)
            if not CERTS["sanitized"]:
                self.assertLess(w.status("VmHWM"), LIMIT_MIB * MIB)
            # A review within the budget is still read.
            obj["request"]["object"]["metadata"]["annotations"] = {
                "k%04d" % i: "" for i in range(5000)}
            self.assertEqual(w.post(CONTACT, obj)[0], 200)
        finally:
            w.stop()


class HungApiServer(unittest.TestCase):
    """An API server that stops answering: fail closed before kube-apiserver's timeout."""

    LATENCY = 8.0   # longer than every ?timeout= below

    @classmethod
    def setUpClass(cls):
        cls.standin = StandIn().start()
        cls.standin.control("config", {"admission": False})
        cls.kc = cls.standin.write_kubeconfig(os.path.join(CERTS["dir"], "hung.kubeconfig"))
        # One serving thread: a lookup that held it would hold everything.
        cls.w = Webhook("--threads=1", "--verify-subjects=false", "--metrics-auth=false",
                        kubeconfig=cls.kc)

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.standin.control("latency", {"seconds": 0,
                                        "pathPrefix": "/apis/notification.miloapis.com"})
        cls.standin.stop()

    def test_hung_lookups_answer_before_the_timeout_and_block_nothing(self):
        prefix = "/apis/notification.miloapis.com/v1alpha1/namespaces/org-xyz/contact"
        self.standin.control("latency", {"seconds": self.LATENCY, "pathPrefix": prefix})
        results = {}

        def hung(i):
            t0 = time.monotonic()
            status, _, body = self.w.post(MEMBERSHIP + "?timeout=3s",
                                          review("ContactGroupMembership", membership(),
                                                 uid="hung-%d" % i))
            results[i] = (time.monotonic() - t0, status, json.loads(body),
                          time.monotonic())

        threads = [threading.Thread(target=hung, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        end = time.monotonic() + WAIT
        while self.w.metric("milo_http_deferred_requests") < 4 and time.monotonic() < end:
            time.sleep(0.02)
        self.assertEqual(self.w.metric("milo_http_deferred_requests"), 4)
        # With four lookups hung: readiness within a second, and reviews the
        # cache answers while the lookups still wait.
        t0 = time.monotonic()
        self.assertEqual(self.w.get("/readyz")[0], 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        for i in range(5):
            status, _, body = self.w.post(GROUP + "?timeout=3s",
                                          review("ContactGroup", contact_group(), uid="c-%d" % i))
            self.assertEqual(status, 200)
            self.assertTrue(json.loads(body)["response"]["allowed"])
        cached_done = time.monotonic()
        for t in threads:
            t.join()
        for i, (took, status, answer, done) in results.items():
            self.assertEqual(status, 200)
            resp = answer["response"]
            self.assertFalse(resp["allowed"])
            self.assertEqual(resp["status"]["code"], 503)
            self.assertIn("cannot verify Contact org-xyz/john-doe", resp["status"]["message"])
            self.assertLess(took, 3.0, "answered after kube-apiserver's ?timeout=3s")
            self.assertGreater(done, cached_done)
        self.standin.control("latency", {"seconds": 0, "pathPrefix": prefix})


class HttpStrictness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Webhook()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()

    def assert_400_closed(self, request, text):
        data, closed = self.w.raw(request)
        self.assertEqual(status_line(data), "HTTP/1.1 400 Bad Request", data)
        self.assertIn(text.encode(), data)
        self.assertEqual(header(data, "Connection"), "close")
        self.assertTrue(closed)

    def test_control_characters_in_the_path(self):
        for target in (b"/healthz%00", b"/healthz\x00x", b"/healthz\x01",
                       b"/readyz%1f", b"/healthz%7F"):
            with self.subTest(target=target):
                self.assert_400_closed(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "control character in the request target")
        # An escaped control character in the query is data, not path.
        data, _ = self.w.raw(b"GET /healthz?x=%0a HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")
        self.assertEqual(status_line(data), "HTTP/1.1 200 OK")

    def test_conflicting_content_lengths(self):
        body = json.dumps(sample_review()).encode()
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                % CONTACT).encode()
        self.assert_400_closed(head + b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                               % (len(body), len(body) + 5) + body,
                               "conflicting Content-Length headers")
        # The same value twice is one length (RFC 9112 6.3).
        data, _ = self.w.raw(head + b"Content-Length: %d\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % (len(body), len(body)) + body)
        self.assertEqual(status_line(data), "HTTP/1.1 200 OK")

    def test_content_length_with_transfer_encoding(self):
        body = json.dumps(sample_review()).encode()
        self.assert_400_closed(
            ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" % CONTACT).encode()
            + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
            "Content-Length with Transfer-Encoding")

    def test_long_message_cut_not_500(self):
        r = sample_review()
        r["request"]["object"]["spec"]["email"] = "x" * (2 * MIB) + "@"
        status, _, body = self.w.post(CONTACT, r)
        self.assertEqual(status, 200)
        st = json.loads(body)["response"]["status"]
        self.assertEqual(st["code"], 422)
        self.assertIn('"... (2097153 bytes, cut to the first 1024)', st["message"])
        self.assertLess(len(st["message"]), 4096)


class Drain(unittest.TestCase):
    def test_sigterm_not_ready_keep_alive_then_close(self):
        w = Webhook("--shutdown-delay=3s")
        c = w.https()
        self.assertEqual(w.request("GET", "/healthz", conn=c)[0], 200)
        w.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + WAIT
        while w.get("/readyz")[0] == 200 and time.monotonic() < end:
            time.sleep(0.05)
        status, _, body = w.get("/readyz")
        self.assertEqual((status, body), (503, b"not ready: shutting down"))
        # Still serving on the same keep-alive connection, which stays open.
        status, hdrs, _ = w.request("POST", CONTACT, sample_review(), conn=c)
        self.assertEqual(status, 200)
        self.assertNotIn("connection", hdrs)
        # A request still in flight when the delay ends: its answer closes.
        t = w.tls()
        body = json.dumps(sample_review()).encode()
        t.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % (CONTACT, len(body))).encode() + body[:10])
        end = time.monotonic() + WAIT
        while not re.search('"finishing requests in flight', w.log_text()) and \
                time.monotonic() < end:
            time.sleep(0.05)
        t.sendall(body[10:])
        data, closed = read_to_close(t)
        self.assertEqual(status_line(data), "HTTP/1.1 200 OK")
        self.assertEqual(header(data, "Connection"), "close")
        self.assertTrue(closed)
        c.close()
        self.assertEqual(w.stop(), 0)


    def test_a_trickling_client_cannot_hold_the_exit(self):
        """Past the delay the stop waits for requests in flight, at most 30 s; a
        trickled body is cut by its read budget long before that."""
        w = Webhook("--read-timeout=3s")
        t = w.tls()
        t.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: 100000\r\n\r\n" % CONTACT).encode())
        end = time.monotonic() + WAIT
        while w.metric("milo_http_request_body_bytes") == 0 and time.monotonic() < end:
            time.sleep(0.05)
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        t.settimeout(0.2)
        while w.proc.poll() is None and time.monotonic() - t0 < 30:
            try:
                t.sendall(b" ")     # a byte at a time, never the whole body
            except OSError:
                pass
            time.sleep(0.2)
        took = time.monotonic() - t0
        t.close()
        self.assertEqual(w.stop(), 0)
        self.assertLess(took, 30, "the trickling request held the exit to the 30 s cap")


class Logs(unittest.TestCase):
    def test_allowed_at_debug_denials_rate_limited(self):
        w = Webhook()
        try:
            for i in range(30):
                self.assertEqual(w.post(CONTACT, sample_review())[0], 200)
            bad = sample_review()
            bad["request"]["object"]["spec"]["email"] = "john@"
            for i in range(60):
                status, _, body = w.post(CONTACT, bad)
                self.assertFalse(json.loads(body)["response"]["allowed"])
            # The 60 denials: written or counted, never more than 10 a second.
            end = time.monotonic() + WAIT
            while time.monotonic() < end:
                lines = w.log_lines()
                denials = [l for l in lines if l.get("msg") == "admission"]
                counted = sum(l.get("suppressed", 0) for l in lines
                              if l.get("msg") in ("admission",
                                                  "admission lines not logged (rate limit)"))
                if len(denials) + counted == 60:
                    break
                time.sleep(0.1)
            self.assertEqual(len(denials) + counted, 60)
            self.assertTrue(all(not l["allowed"] for l in denials), "allowed reviews at info")
            self.assertGreater(counted, 0)
            # At most 10 in each second the lines span (a span of s seconds
            # touches at most s + 2 of the limiter's one-second windows).
            span = (parse_time(denials[-1]["time"]) - parse_time(denials[0]["time"]))
            self.assertLessEqual(len(denials), 10 * (int(span) + 2))
        finally:
            w.stop()

    def test_allowed_reviews_at_debug(self):
        w = Webhook("--log-level=debug", "--log-flush-frequency=0")
        try:
            r = sample_review()
            r["request"]["uid"] = "debug-uid"
            self.assertEqual(w.post(CONTACT, r)[0], 200)
            lines = [l for l in w.log_lines() if l.get("uid") == "debug-uid"]
            self.assertEqual(len(lines), 1)
            self.assertEqual(lines[0]["level"], "debug")
            self.assertTrue(lines[0]["allowed"])
        finally:
            w.stop()


class Manifests(unittest.TestCase):
    """The Deployment's grace period and the client-CA component, as kustomize renders them."""

    def kustomize(self, overlay):
        if not shutil.which("kubectl"):
            self.skipTest("kubectl is not installed (make deps installs it)")
        p = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_grace_period_covers_the_stop(self):
        text = self.kustomize(os.path.join(TOP, "manifests", "webhook"))
        grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))
        pre_stop = int(re.search(r"preStop:\s+sleep:\s+seconds: (\d+)", text).group(1))
        delay = int(re.search(r"--shutdown-delay=(\d+)s", text).group(1))
        with open(os.path.join(TOP, "lib", "httpd.h")) as f:
            in_flight = int(re.search(r"#define HTTPD_STOP_TIMEOUT_MS (\d+)", f.read()).group(1))
        self.assertGreater(grace, pre_stop + delay + in_flight // 1000)

    def test_client_ca_component(self):
        d = tempfile.mkdtemp(dir=CERTS["dir"])
        shutil.copytree(os.path.join(TOP, "manifests", "webhook"), os.path.join(d, "base"))
        shutil.copytree(os.path.join(TOP, "manifests", "components", "client-ca"),
                        os.path.join(d, "client-ca"))
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            f.write("resources: [base]\ncomponents: [client-ca]\n")
        text = self.kustomize(d)
        self.assertIn("- --client-ca-file=/etc/contact-webhook/client-ca/ca.crt", text)
        self.assertRegex(text, r"mountPath: /etc/contact-webhook/client-ca\n\s+name: client-ca")
        self.assertRegex(text, r"name: contact-webhook-client-ca\n\s+name: client-ca")


if __name__ == "__main__":
    unittest.main()
