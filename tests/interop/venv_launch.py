"""Runs an interop test module with the interpreter of the interop venv.

The interop tests need confluent-kafka and fastavro, which live in a venv
that scripts/setup-python.sh makes (<cache>/venv-interop, <cache> being
$MEMBERSYNC_CACHE or ~/.cache/membersync; $MS_INTEROP_VENV overrides the whole
path).  CTest starts each test module with the system Python; the first thing
a module does is

    import venv_launch; venv_launch.ensure()

which re-executes the same script with the venv's Python unless it already
runs there.  A missing or broken venv is one failed test with a message that
says what to run, so the runner's closing line still reads `0 passed, 1
failed`.  Python stdlib only."""

import os
import sys

_MARK = "MS_INTEROP_REEXECED"


def venv_dir():
    if os.environ.get("MS_INTEROP_VENV"):
        return os.environ["MS_INTEROP_VENV"]
    cache = os.environ.get("MEMBERSYNC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "membersync")
    return os.path.join(cache, "venv-interop")


def _fail(why):
    print("FAIL setup: %s; run scripts/setup-python.sh (or set MS_INTEROP_VENV)" % why, flush=True)
    print("0 passed, 1 failed", flush=True)
    sys.exit(1)


def ensure():
    venv = os.path.realpath(venv_dir())
    if os.path.realpath(sys.prefix) == venv:
        try:
            import confluent_kafka  # noqa: F401
            import fastavro  # noqa: F401
        except ImportError as e:
            _fail("the interop venv %s lacks a package (%s)" % (venv, e))
        return
    py = os.path.join(venv, "bin", "python")
    if not os.access(py, os.X_OK):
        _fail("no interop venv at %s" % venv)
    if os.environ.get(_MARK):
        # We already re-executed once and still do not run in the venv: do
        # not loop.
        _fail("%s does not run inside %s" % (py, venv))
    os.environ[_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(py, [py, os.path.abspath(sys.argv[0])] + sys.argv[1:])
