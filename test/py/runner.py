"""runner.py -- runs the Python suites (unittest discovery) and ends with one count line.

    python3 test/py/runner.py [pattern]      (default test_*.py)

Like `python3 -m unittest discover -s test/py -p PATTERN -v`, then lists
every skipped test with its reason and closes with

    python: N passed, N failed, N skipped

so a suite that did not run shows in the last line (errors count as
failed). Exit status 1 when anything failed.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    pattern = argv[1] if len(argv) > 1 else "test_*.py"
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    sys.stderr.flush()
    for test, reason in result.skipped:
        print("skipped: %s: %s" % (test, reason))
    print("python: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
