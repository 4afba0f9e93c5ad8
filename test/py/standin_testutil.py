"""standin_testutil.py -- helpers the provider stand-ins' own tests share.

test_mailgun_standin.py and test_resend_standin.py: one request on a fresh
connection, bounded waits, a test class around one in-process stand-in, a
webhook receiver, a self-signed certificate, a port nobody listens on, and
a stand-in run as a program. Every server listens on 127.0.0.1 only.
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = 10.0             # seconds any wait here may take
POLL = 0.02             # seconds between two looks at a condition
STOP_WAIT = 10          # seconds a program has to exit after SIGTERM
KILL_WAIT = 5           # and after SIGKILL


def request(base, method, path, data, headers, timeout):
    """One request on a fresh connection -> (status, headers (lower-case), payload):
    the payload is parsed when the answer is JSON, text otherwise."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read()
    finally:
        conn.close()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if hdrs.get("content-type", "").startswith("application/json") and text:
        return r.status, hdrs, json.loads(text)
    return r.status, hdrs, text.decode()


def wait_for(pred, what, timeout=WAIT):
    """pred()'s first true value; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(POLL)
    raise AssertionError("timed out waiting for " + what)


class StandInCase(unittest.TestCase):
    """One in-process stand-in (self.s) for all tests of a class, reset before
    each. A subclass sets standin (the StandIn class), call (a staticmethod:
    (base, method, path, body, **kw) -> (status, headers, payload)) and config."""

    config = {}

    @classmethod
    def setUpClass(cls):
        cls.s = cls.standin(**cls.config).start()

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def setUp(self):
        self.s.control("reset")

    def api(self, method, path, body=None, **kw):
        return self.call(self.s.url, method, path, body, **kw)

    def ok(self, method, path, body=None, want=200, **kw):
        status, _, payload = self.api(method, path, body, **kw)
        self.assertEqual(status, want, payload)
        return payload


class Receiver:
    """A webhook endpoint at `path` that records what arrives and answers `status`."""

    def __init__(self, path, tls_ctx=None):
        self.got = []
        self.status = 200
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                outer.got.append({"path": self.path, "headers": {k.lower(): v for k, v in
                                                                 self.headers.items()},
                                  "body": self.rfile.read(n)})
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        if tls_ctx is not None:
            self.httpd.socket = tls_ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        scheme = "https" if tls_ctx is not None else "http"
        self.url = "%s://127.0.0.1:%d%s" % (scheme, self.httpd.server_address[1], path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def make_cert(tmp, name):
    """A self-signed certificate for `name` and 127.0.0.1 -> (cert, key), or None."""
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
    cmd = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=" + name,
           "-addext", "subjectAltName=DNS:%s,IP:127.0.0.1" % name]
    r = subprocess.run(cmd, capture_output=True, timeout=30)
    return (cert, key) if r.returncode == 0 else None


def unused_port():
    """A loopback port that was free a moment ago: nobody listens on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class Program:
    """A stand-in run as a program (`script` in test/py) on a port of its
    choosing: .base is its URL once it wrote its port file; .stop() sends
    SIGTERM and returns the exit status."""

    def __init__(self, script, args):
        self.tmp = tempfile.mkdtemp()
        port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, script), "--port", "0",
                                      "--port-file", port_file] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.exists(port_file), "the port file")
            with open(port_file) as f:
                self.base = "http://127.0.0.1:%d" % int(f.read())
        except BaseException:
            self.stop()
            raise

    def stop(self):
        p = self.proc
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait(KILL_WAIT)
        p.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc
