"""runner.py -- runs the Python suites and ends with one count line.

    python3 test/py/runner.py [pattern]      (default test_*.py)

Each test module runs in its own process (unittest, verbose), several at a
time: the suites mostly wait on sockets, sleeps and rate limits, so two
cores run three or four of them side by side. A module named in SERIAL
(timing comparisons) runs alone afterwards. Every module's output is
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
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SERIAL = {"test_robustness"}	# compares the durations of two runs
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


def start(module):
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--one", module],
                            stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
    return {"module": module, "proc": proc, "out": out, "t0": time.monotonic()}


def finish(job):
    job["proc"].wait()
    job["out"].seek(0)
    text = job["out"].read().decode("utf-8", "replace")
    job["out"].close()
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
    pattern = argv[1] if len(argv) > 1 else "test_*.py"
    modules = sorted(f[:-3] for f in os.listdir(HERE)
                     if fnmatch.fnmatch(f, pattern) and f.endswith(".py"))
    jobs = int(os.environ.get("MILO_TEST_JOBS") or max(2, 2 * (os.cpu_count() or 1)))
    parallel = [m for m in modules if m not in SERIAL]
    serial = [m for m in modules if m in SERIAL]
    done, running = {}, []
    while parallel or running:
        while parallel and len(running) < jobs:
            running.append(start(parallel.pop(0)))
        time.sleep(0.1)
        for job in [j for j in running if j["proc"].poll() is not None]:
            running.remove(job)
            done[job["module"]] = finish(job)
    for m in serial:
        done[m] = finish(start(m))
    total = {"passed": 0, "failed": 0, "skipped": []}
    for m in modules:
        job = done[m]
        sys.stderr.write("==== %s (%.0f s)\n%s\n" % (m, job["took"], job["text"]))
        c = job["counts"]
        total["failed"] += c["failed"]
        total["skipped"] += c["skipped"]
        total["passed"] += c["run"] - c["failed"] - len(c["skipped"])
    sys.stderr.flush()
    for test, reason in total["skipped"]:
        print("skipped: %s: %s" % (test, reason))
    print("python: %d passed, %d failed, %d skipped" % (
        total["passed"], total["failed"], len(total["skipped"])))
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        sys.exit(run_one(sys.argv[2]))
    sys.exit(main(sys.argv))
