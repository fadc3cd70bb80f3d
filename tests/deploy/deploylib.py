"""Shared bits of the deploy checks (tests/deploy/test_*.py): paths, tool
locations and a tiny stdlib test runner.

The runner runs every module-level function named test_*, in file order,
prints one PASS/FAIL line per test and closes with the line
`N passed, N failed`; the exit status is non-zero when a test failed or none
ran, so a broken collection can never look green.
"""

import os
import subprocess
import sys
import traceback

SOURCE_DIR = os.environ.get("MS_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN_DIR = os.environ.get("MS_BIN_DIR") or os.path.join(SOURCE_DIR, "build")
CACHE = os.environ.get("MEMBERSYNC_CACHE") or os.path.join(
    os.path.expanduser("~"), ".cache", "membersync")
HELM = os.path.join(CACHE, "bin", "helm")
VENV_PYTHON = os.path.join(CACHE, "venv", "bin", "python")
CHART = os.path.join(SOURCE_DIR, "helm", "membersync")


class Prerequisite(Exception):
    """A tool the checks need is missing: a failure with a how-to-fix."""


def need_tools():
    missing = [p for p in (HELM, VENV_PYTHON) if not os.access(p, os.X_OK)]
    if missing:
        raise Prerequisite("missing %s: run scripts/setup-helm.sh (MEMBERSYNC_CACHE=%s)"
                           % (", ".join(missing), CACHE))


def run(cmd, check=True, **kw):
    """Runs cmd; returns CompletedProcess with text stdout/stderr.  With check,
    a non-zero exit raises AssertionError carrying the command's output."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(cmd), p.returncode, p.stdout[-4000:], p.stderr[-4000:]))
    return p


def main(namespace, setup=None):
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    try:
        if setup:
            setup()
    except Exception as e:  # noqa: BLE001 - report, do not crash
        print("FAIL setup: %s" % e, flush=True)
        print("0 passed, %d failed" % max(1, len(tests)))
        sys.exit(1)
    for name, fn in tests:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            failed += 1
            detail = str(e) if isinstance(e, (AssertionError, Prerequisite)) else \
                traceback.format_exc()
            print("FAIL %s: %s" % (name, detail), flush=True)
        else:
            passed += 1
            print("PASS %s" % name, flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or passed == 0 else 0)
