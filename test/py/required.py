"""required.py -- a test that needs a tool the machine lacks: skipped, or failed under `make test`.

`make test` installs every tool the suites use (test/deps.sh) and sets
MILO_REQUIRE_TOOLS=1, so there a missing tool is a failure that says what to
install, never a silent skip. Run by hand without it, the test is skipped
with the same reason (and test/py/runner.py counts the skips in its closing
line).
"""

import os
import unittest


def strict():
    return os.environ.get("MILO_REQUIRE_TOOLS") == "1"


def missing(reason):
    """Raises SkipTest(reason), or under make test an AssertionError."""
    if strict():
        raise AssertionError("%s (make test needs it: test/deps.sh installs it)" % reason)
    raise unittest.SkipTest(reason)


def tool(found, reason):
    """A decorator for a test or a class: runs only when `found` is truthy."""
    def wrap(obj):
        if found:
            return obj
        if strict():
            if isinstance(obj, type):
                def setUpClass(cls):
                    missing(reason)
                obj.setUpClass = classmethod(setUpClass)
                return obj

            def failing(*args, **kwargs):
                missing(reason)
            failing.__name__ = obj.__name__
            return failing
        return unittest.skip(reason)(obj)
    return wrap
