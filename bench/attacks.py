#!/usr/bin/env python3
"""attacks.py -- issue 15's attacks on a running contact-webhook, for bench/hardening.sh.

    python3 bench/attacks.py --port P --pid PID --cacert CA ATTACK
    python3 bench/attacks.py --port P --pid PID --cacert CA --requests N reviews

ATTACK is one of
  bodies    16 connections each send a 7 MiB review and stall before its
            last byte (held until the server closes them or 10 s pass)
  keys      one review whose object carries 250,000 annotation keys
  slowloris 2,000 connections from 127.0.0.2-9, each sending a TLS record
            byte once a second (half of them every 0.5 s), for 12 s, while
            20 honest reviews are sent
  reviews   not an attack: N allowed reviews over 8 keep-alive connections,
            one at a time (a fixed amount of work, for callgrind)
It prints one line: the attack, the server's peak RSS (VmHWM) in KiB, and
what it answered. Python standard library only; a benchmark helper, not a test.
"""

import argparse
import collections
import http.client
import json
import os
import socket
import ssl
import sys
import threading
import time

CONTACT = "/validate-notification-miloapis-com-v1alpha1-contact"
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def sample_review():
    with open(os.path.join(TOP, "test", "fixtures", "sample-review.json")) as f:
        return json.load(f)


class Target:
    def __init__(self, port, cacert):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=cacert)

    def tls(self, timeout=30):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.ctx.wrap_socket(s, server_hostname="localhost")

    def status(self, body, timeout=30):
        """POSTs a review on a new connection; the status line's code, or an error name."""
        try:
            t = self.tls(timeout)
            t.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: %d\r\nConnection: close\r\n\r\n"
                       % (CONTACT, len(body))).encode() + body)
            data = b""
            while b"\r\n" not in data:
                d = t.recv(4096)
                if not d:
                    break
                data += d
            t.close()
            return data.split(b" ", 2)[1].decode() if data else "closed"
        except OSError as e:
            return type(e).__name__


def bodies(tg):
    size, answers, socks, lock = 7 * 1024 * 1024, [], [], threading.Lock()

    def one():
        t = tg.tls()
        t.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n" % (CONTACT, size)).encode())
        t.settimeout(2)
        sent, chunk = 0, b" " * 65536
        try:
            while sent < size - 1:
                n = min(len(chunk), size - 1 - sent)
                t.sendall(chunk[:n])
                sent += n
        except OSError:
            pass
        t.settimeout(10)
        try:
            data = t.recv(4096)
            answer = data.split(b" ", 2)[1].decode() if data else "closed"
        except OSError:
            answer = "held"
        with lock:
            answers.append(answer)
            socks.append(t)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in socks:
        s.close()
    return collections.Counter(answers)


def keys(tg):
    r = sample_review()
    r["request"]["object"]["metadata"]["annotations"] = {
        "k%06d" % i: "" for i in range(250000)}
    body = json.dumps(r).encode()
    return collections.Counter([tg.status(body, timeout=120)])


def slowloris(tg):
    hostile = []
    for i in range(2000):
        s = socket.socket()
        s.bind(("127.0.0.%d" % (2 + i % 8), 0))
        try:
            s.connect(("127.0.0.1", tg.port))
            hostile.append(s)
        except OSError:
            s.close()
    body = json.dumps(sample_review()).encode()
    answers = []
    end = time.monotonic() + 12
    i = 0
    while time.monotonic() < end:
        for s in hostile[i % 2::2]:
            try:
                s.send(b"\x16")
            except OSError:
                pass
        if len(answers) < 20:
            answers.append(tg.status(body, timeout=10))
        i += 1
        time.sleep(0.5)
    for s in hostile:
        s.close()
    c = collections.Counter(answers)
    c["held"] = len(hostile)
    return c


def reviews(tg, n):
    body = json.dumps(sample_review()).encode()
    conns = []
    for _ in range(8):
        c = http.client.HTTPSConnection("localhost", tg.port, context=tg.ctx, timeout=600)
        c.connect()
        conns.append(c)
    answers = collections.Counter()
    for i in range(n):
        c = conns[i % len(conns)]
        c.request("POST", CONTACT, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        answers[str(r.status)] += 1
    for c in conns:
        c.close()
    return answers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--cacert", required=True)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("attack", choices=["bodies", "keys", "slowloris", "reviews"])
    a = ap.parse_args()
    tg = Target(a.port, a.cacert)
    if a.attack == "reviews":
        answers = reviews(tg, a.requests)
    else:
        answers = globals()[a.attack](tg)
    print("%s %d %s" % (a.attack, hwm_kib(a.pid),
                        ",".join("%s:%d" % kv for kv in sorted(answers.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
