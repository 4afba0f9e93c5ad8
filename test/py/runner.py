"""runner.py -- runs the test suites side by side and ends with count lines.

    python3 test/py/runner.py [pattern]      (default test_*.py)
    python3 test/py/runner.py --check BIN [pattern]

With --check, every Check suite of BIN (the runner built from
test/check_<name>.c; CK_RUN_SUITE picks one) runs as a job too, and a line

    check: N checks, N failures, N errors

comes before the Python one.

Each test module runs in its own process (unittest, verbose), several at a
time: the suites mostly wait on sockets, sleeps and rate limits, so two
cores run three or four of them side by side. A module named in SERIAL
(timing comparisons) runs alone afterwards; the others start longest
first (LONGEST, measured), so the run does not end on one long suite. Every module's output is
printed whole, in name order, then every skipped test with its reason,
and the closing line

    python: N passed, N failed, N skipped

so a suite that did not run shows in the last line (errors count as
failed). Exit status 1 when anything failed. MILO_TEST_JOBS sets how many
modules run at once (default: 2 per CPU, at least 2).
"""

import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SERIAL = set()		# modules that must run alone (none today)
# Seconds each took in one `make test` (2 cores, 4 jobs): the longest start
# first. A module not listed starts after these, in name order.
LONGEST = {"test_reconciler_mailgun": 96, "test_optouts": 88, "test_reconciler": 84,
           "test_robustness": 73, "test_audit": 69, "check:webhook": 52,
           "test_hardening": 42, "test_e2e": 35, "check:lease": 35,
           "check:provider_http": 29, "test_kube_standin": 25, "check:kube": 13}
RESULT_TAG = "@@runner-result@@ "


def run_one(module):
    """In the child: one module, verbose, then its counts as a tagged JSON line."""
    sys.path.insert(0, HERE)
    suite = unittest.defaultTestLoader.loadTestsFromName(module)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = [[str(t), r] for t, r in result.skipped]
    sys.stderr.flush()
    print(RESULT_TAG + json.dumps({"run": result.testsRun, "failed": failed,
                                   "skipped": skipped}), flush=True)
    return 0


def start(module, check_bin=None):
    out = tempfile.TemporaryFile()
    if module.startswith("check:"):
        env = dict(os.environ, CK_RUN_SUITE=module[len("check:"):])
        proc = subprocess.Popen([check_bin], stdout=out, stderr=subprocess.STDOUT, env=env)
    else:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--one", module],
                                stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
    return {"module": module, "proc": proc, "out": out, "t0": time.monotonic()}


CHECK_LINE = re.compile(r"^\d+%: Checks: (\d+), Failures: (\d+), Errors: (\d+)$", re.M)


def check_counts(job):
    """A Check suite's counts from its summary line; a crash counts as an error."""
    m = CHECK_LINE.search(job["text"])
    if not m:
        return {"checks": 0, "failures": 0, "errors": 1}
    n, f, e = (int(x) for x in m.groups())
    if job["proc"].returncode and not (f or e):
        e = 1
    return {"checks": n, "failures": f, "errors": e}


def finish(job):
    job["proc"].wait()
    job["out"].seek(0)
    text = job["out"].read().decode("utf-8", "replace")
    job["out"].close()
    if job["module"].startswith("check:"):
        job.update(text=text.rstrip("\n"), took=time.monotonic() - job["t0"])
        job["counts"] = check_counts(job)
        return job
    counts = None
    lines = []
    for line in text.splitlines():
        if line.startswith(RESULT_TAG):
            counts = json.loads(line[len(RESULT_TAG):])
        else:
            lines.append(line)
    if counts is None:	# the module crashed or did not import
        counts = {"run": 1, "failed": 1, "skipped": []}
        lines.append("runner: %s ended with status %s and no result"
                     % (job["module"], job["proc"].returncode))
    job.update(text="\n".join(lines), counts=counts, took=time.monotonic() - job["t0"])
    return job


def main(argv):
    check_bin = None
    if len(argv) > 2 and argv[1] == "--check":
        check_bin = argv[2]
        argv = argv[:1] + argv[3:]
    pattern = argv[1] if len(argv) > 1 else "test_*.py"
    modules = sorted(f[:-3] for f in os.listdir(HERE)
                     if fnmatch.fnmatch(f, pattern) and f.endswith(".py"))
    suites = []
    if check_bin:
        tests = os.path.join(os.path.dirname(HERE))
        suites = sorted("check:" + f[len("check_"):-2] for f in os.listdir(tests)
                        if f.startswith("check_") and f.endswith(".c"))
    jobs = int(os.environ.get("MILO_TEST_JOBS") or max(2, 2 * (os.cpu_count() or 1)))
    # The longest first, so the tail is short.
    parallel = sorted(suites + [m for m in modules if m not in SERIAL],
                      key=lambda m: -LONGEST.get(m, 0))
    serial = [m for m in modules if m in SERIAL]
    done, running = {}, []
    while parallel or running:
        while parallel and len(running) < jobs:
            running.append(start(parallel.pop(0), check_bin))
        time.sleep(0.1)
        for job in [j for j in running if j["proc"].poll() is not None]:
            running.remove(job)
            done[job["module"]] = finish(job)
    for m in serial:
        done[m] = finish(start(m, check_bin))
    check = {"checks": 0, "failures": 0, "errors": 0}
    for m in suites:
        job = done[m]
        sys.stderr.write("==== %s (%.0f s)\n%s\n" % (m, job["took"], job["text"]))
        for k in check:
            check[k] += job["counts"][k]
    total = {"passed": 0, "failed": 0, "skipped": []}
    for m in modules:
        job = done[m]
        sys.stderr.write("==== %s (%.0f s)\n%s\n" % (m, job["took"], job["text"]))
        c = job["counts"]
        total["failed"] += c["failed"]
        total["skipped"] += c["skipped"]
        total["passed"] += c["run"] - c["failed"] - len(c["skipped"])
    sys.stderr.flush()
    if check_bin:
        print("check: %d checks, %d failures, %d errors (%d suites)" % (
            check["checks"], check["failures"], check["errors"], len(suites)))
    for test, reason in total["skipped"]:
        print("skipped: %s: %s" % (test, reason))
    print("python: %d passed, %d failed, %d skipped" % (
        total["passed"], total["failed"], len(total["skipped"])))
    return 1 if total["failed"] or check["failures"] or check["errors"] else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        sys.exit(run_one(sys.argv[2]))
    sys.exit(main(sys.argv))
