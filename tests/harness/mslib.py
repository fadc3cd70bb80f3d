"""Helpers for membersync integration and end-to-end tests (Python stdlib only).

A test module looks like this:

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
    import mslib

    def test_something(svc):          # svc: the shared Services, started lazily
        mslib.psql("create table t (v text)", dsn=svc.pg_dsn)
        mslib.psql("insert into t values (:'p1')", "it's safe", dsn=svc.pg_dsn)

    def test_without_services():
        assert mslib.free_port() > 0

    if __name__ == "__main__":
        mslib.main()

`main()` runs the module's test_* functions in definition order and prints
`PASS name` or `FAIL name: reason` for each, then the final line
`N passed, N failed`; the exit status is 1 if anything failed or nothing ran.
A test that takes one argument receives the module's `Services`: the broker
and PostgreSQL from the environment (MS_KAFKA_BOOTSTRAP and MS_PG_DSN, as
exported by scripts/test.sh), or, when those are unset, a private pair that
tests/harness/services.sh starts for this module and stops at the end, also
on failure, Ctrl-C or SIGTERM.

Isolation: under scripts/test.sh every test module (of both build trees)
shares one broker and one PostgreSQL.  Use `svc.fresh_database()` for a
database of your own, your own consumer-group prefix, and topic names of your
own (`svc.create_topics`) where leftovers from other tests would matter.
"""

import ctypes
import inspect
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HARNESS_DIR))
SERVICES_SH = os.path.join(HARNESS_DIR, "services.sh")

# DESIGN section 3: the membersync topics and their partition counts.
TOPICS = {
    "membersync.sync-requests.v1": 12,
    "membersync.sync-jobs.cornerstone.v1": 12,
    "membersync.sync-jobs.consio.v1": 12,
    "membersync.sync-events.v1": 12,
    "membersync.member-changes.v1": 24,
    "membersync.dlq.v1": 3,
}

# Separators for query(): ASCII unit/record/group separators cannot occur in
# the text we store, so they split fields and rows safely and mark NULL.
_FS, _RS, _NULL = "\x1f", "\x1e", "\x1d"


class PsqlError(RuntimeError):
    pass


class GiveUp(Exception):
    """Raised by a wait_for() predicate to stop waiting at once (the awaited
    thing can no longer happen, e.g. the process died)."""


# ---------------------------------------------------------------- small tools

def free_port():
    """A currently free TCP port on 127.0.0.1 (free until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=30.0, what="condition", interval=0.1):
    """Calls pred() until it returns a truthy value, which is returned.

    An exception from pred counts as "not yet" (a service that is still
    starting refuses connections); the last one is named in the TimeoutError
    raised after `timeout` seconds.  GiveUp from pred propagates at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %s: %s)" % (type(last_exc).__name__, last_exc)
            raise TimeoutError(msg)
        time.sleep(interval)


def run(argv, timeout=120, check=True, env=None, input=None, cwd=None):
    """Runs a command to completion and returns its CompletedProcess (text).

    check=True raises RuntimeError naming the command, status and stderr."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                        env=full_env, input=input, cwd=cwd)
    if check and cp.returncode != 0:
        raise RuntimeError("%s exited with %d: %s" % (
            " ".join(str(a) for a in argv), cp.returncode, (cp.stderr or cp.stdout).strip()[-2000:]))
    return cp


def bin_path(name="membersync"):
    """Path of a built program in the build tree under test (MS_BIN_DIR)."""
    bin_dir = os.environ.get("MS_BIN_DIR") or os.path.join(SOURCE_DIR, "build")
    return os.path.join(bin_dir, name)


# ---------------------------------------------------------------------- psql

def _psql_bin():
    pg_bin = os.environ.get("MS_PG_BIN")
    if pg_bin and os.path.exists(os.path.join(pg_bin, "psql")):
        return os.path.join(pg_bin, "psql")
    return "psql"


def _psql(sql, params, named, dsn, extra, timeout):
    dsn = dsn or os.environ.get("MS_PG_DSN")
    if not dsn:
        raise PsqlError("no DSN: pass dsn= or set MS_PG_DSN (use mslib.Services)")
    argv = [_psql_bin(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn] + extra
    variables = {"p%d" % (i + 1): v for i, v in enumerate(params)}
    variables.update(named)
    for name, value in variables.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("bad psql variable name %r" % name)
        if value is None:
            raise ValueError("psql variable %s is None: write NULL in the SQL instead" % name)
        value = str(value)
        if "\0" in value:
            raise ValueError("psql variable %s contains a NUL byte" % name)
        argv += ["-v", "%s=%s" % (name, value)]
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    # The SQL goes in on stdin: psql interpolates :'var' there, but not in -c.
    cp = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, env=env)
    if cp.returncode != 0:
        raise PsqlError("psql failed (%d): %s" % (cp.returncode, cp.stderr.strip()))
    return cp.stdout


def psql(sql, *params, dsn=None, timeout=60, **named):
    """Runs SQL with the psql CLI and returns its unaligned, tuples-only output
    (fields joined by '|', rows by newlines, trailing newline dropped).

    Values never go into the SQL text: positional params are psql variables
    p1, p2, ... and keyword params keep their names; refer to them as :'p1'
    (a quoted literal) or :"p1" (a quoted identifier).  dsn defaults to
    MS_PG_DSN.  Raises PsqlError on any error (ON_ERROR_STOP)."""
    return _psql(sql, params, named, dsn, [], timeout).rstrip("\n")


def query(sql, *params, dsn=None, timeout=60, **named):
    """Like psql() but returns the rows as a list of tuples of str (None for
    NULL), split on separators that cannot clash with the data."""
    out = _psql(sql, params, named, dsn,
                ["-F", _FS, "-R", _RS, "-P", "null=" + _NULL], timeout)
    rows = []
    for rec in out.split(_RS):
        rec = rec.strip("\n")
        if rec == "":
            continue
        rows.append(tuple(None if f == _NULL else f for f in rec.split(_FS)))
    return rows


def query_value(sql, *params, dsn=None, timeout=60, **named):
    """The single value of a one-row, one-column query (None for NULL)."""
    rows = query(sql, *params, dsn=dsn, timeout=timeout, **named)
    if len(rows) != 1 or len(rows[0]) != 1:
        raise PsqlError("expected one value, got %r" % (rows,))
    return rows[0][0]


# --------------------------------------------------------------------- Proc

_PR_SET_PDEATHSIG = 1
_procs = []   # every Proc not yet stopped, for the cleanup in main()/atexit


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # noqa: BLE001 - not Linux/glibc: no parent-death signal
    _prctl = None


def _die_with_parent():
    # In the child before exec: a SIGKILL to the test process (ctest's
    # timeout, kill -9) then takes the child along instead of orphaning it.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _log_dir():
    base = os.environ.get("MS_TEST_LOG_DIR")
    if not base:
        bin_dir = os.environ.get("MS_BIN_DIR")
        base = os.path.join(bin_dir, "test-logs") if bin_dir else os.path.join(
            tempfile.gettempdir(), "membersync-test-logs")
    mod = os.path.splitext(os.path.basename(sys.argv[0] or "python"))[0]
    d = os.path.join(base, mod)
    os.makedirs(d, exist_ok=True)
    return d


class Proc:
    """A long-running child process with stdout and stderr in a log file.

    Starts at construction, in its own process group (so stop() reaches its
    children too) and dies with the test process.  Use as a context manager
    or call stop(); main() stops whatever is left after each test."""

    def __init__(self, argv, name=None, env=None, cwd=None, log=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        if log is None:
            log = os.path.join(_log_dir(), "%s-%s.log" % (self.name, secrets.token_hex(3)))
        self.log = log
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items()})
        self._logf = open(log, "ab")
        self._logf.write(("=== %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(self.argv))).encode())
        self._logf.flush()
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.popen.pid
        _procs.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def alive(self):
        """True while the process runs (a property, not a method)."""
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def wait(self, timeout=30):
        """Waits for the exit and returns the status (negative: signal)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("%s (pid %d) still running after %.1fs" % (self.name, self.pid, timeout))

    def send_signal(self, sig):
        """Sends sig to the process group."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """sig to the group, then SIGKILL after timeout; returns the status."""
        if self.alive:
            self.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.popen.wait()
        # The leader is gone; make sure no member of its group lingers.
        self.send_signal(signal.SIGKILL)
        if self in _procs:
            _procs.remove(self)
        if not self._logf.closed:
            self._logf.close()
        return self.popen.returncode

    def kill(self):
        """SIGKILL to the group (a crash); returns the status."""
        return self.stop(signal.SIGKILL, 5)

    def output(self):
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, n=30):
        return "\n".join(self.output().splitlines()[-n:])

    def wait_log(self, pattern, timeout=30):
        """Waits until the log matches regex pattern; returns the match.
        Fails early, with the log's tail, if the process exits first."""
        rx = re.compile(pattern)

        def pred():
            m = rx.search(self.output())
            if m:
                return m
            if not self.alive:
                raise GiveUp("%s exited with %s before logging %r; last lines:\n%s" % (
                    self.name, self.returncode, pattern, self.tail()))
            return None
        try:
            return wait_for(pred, timeout, "%s to log %r" % (self.name, pattern))
        except TimeoutError as e:
            raise TimeoutError("%s; last lines of %s:\n%s" % (e, self.log, self.tail())) from None


def stop_all_procs():
    for p in list(_procs):
        try:
            p.stop(timeout=5)
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass


# ------------------------------------------------------------------ Services

class _Terminated(BaseException):
    """Raised in the main thread when SIGTERM/SIGHUP arrives, so that every
    `with`/`finally` runs and the services are stopped."""


def _raise_terminated(signum, _frame):
    raise _Terminated("terminated by signal %d" % signum)


class Services:
    """The Kafka broker and PostgreSQL for a test (context manager).

    If MS_KAFKA_BOOTSTRAP and MS_PG_DSN are set they are used as they are;
    otherwise services.sh starts a private pair and __exit__ (also on an
    exception, Ctrl-C or SIGTERM) stops it.  While active, the MS_* variables
    of services.sh's env file are in os.environ, so child processes and the
    module-level psql() see them."""

    def __init__(self):
        self.owned = False
        self.run_dir = None
        self.env = {}
        self._saved_env = None
        self._saved_handlers = {}

    @property
    def bootstrap(self):
        return self.env["MS_KAFKA_BOOTSTRAP"]

    @property
    def pg_dsn(self):
        return self.env["MS_PG_DSN"]

    def __enter__(self):
        if os.environ.get("MS_KAFKA_BOOTSTRAP") and os.environ.get("MS_PG_DSN"):
            self.env = {k: v for k, v in os.environ.items() if k.startswith("MS_")}
            self.run_dir = self.env.get("MS_RUN_DIR")
            return self
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                self._saved_handlers[sig] = signal.signal(sig, _raise_terminated)
        try:
            self.run_dir = tempfile.mkdtemp(prefix="membersync-services.", dir="/tmp")
            self.owned = True
            # The watchdog stops the services should this process be killed
            # with no chance to run __exit__.
            env = dict(os.environ, MS_SERVICES_OWNER_PID=str(os.getpid()))
            # Not subprocess.run: on an exception it would SIGKILL services.sh
            # half-way; a TERM lets its trap tear down what it started.
            start = subprocess.Popen(["bash", SERVICES_SH, "start", self.run_dir], env=env,
                                     stdout=subprocess.DEVNULL)
            try:
                rc = start.wait(300)
            except BaseException:
                start.terminate()
                start.wait(120)
                raise
            if rc != 0:
                raise RuntimeError("services.sh start failed with status %d (its log is above)" % rc)
            self.env = _read_env_file(os.path.join(self.run_dir, "env"))
            self._saved_env = {k: os.environ.get(k) for k in self.env}
            os.environ.update(self.env)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.owned:
            self.owned = False
            # A signal now must not cut the stop short (that would leave the
            # services running): hold TERM/INT/HUP until it is done; the
            # pending signal is then delivered as usual.
            held = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
            try:
                subprocess.run(["bash", SERVICES_SH, "stop", self.run_dir], timeout=120,
                               preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, old_mask))
            finally:
                self._restore()
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            return False
        self._restore()
        return False

    def _restore(self):
        if self._saved_env is not None:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._saved_env = None
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)
        self._saved_handlers = {}

    # PostgreSQL ------------------------------------------------------------
    def psql(self, sql, *params, **named):
        return psql(sql, *params, dsn=named.pop("dsn", self.pg_dsn), **named)

    def query(self, sql, *params, **named):
        return query(sql, *params, dsn=named.pop("dsn", self.pg_dsn), **named)

    def fresh_database(self, prefix="t"):
        """Creates an empty database with a unique name; returns its DSN."""
        name = "%s_%s" % (prefix, secrets.token_hex(6))
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError("bad database name %r" % name)
        psql('create database :"name"', dsn=self.pg_dsn, name=name)
        return dsn_with_dbname(self.pg_dsn, name)

    # Kafka -----------------------------------------------------------------
    def kafka_tool(self, cls, *args, timeout=120, check=True):
        """Runs a Kafka command-line class (for example
        org.apache.kafka.tools.GetOffsetShell) on the broker's classpath."""
        return run(["bash", SERVICES_SH, "tool", cls] + [str(a) for a in args],
                   timeout=timeout, check=check)

    def create_topics(self, topics):
        """Creates topics {name: partitions} (idempotent)."""
        specs = ["%s:%d" % (n, p) for n, p in topics.items()]
        run(["bash", SERVICES_SH, "topics", "--bootstrap", self.bootstrap] + specs, timeout=300)

    def describe_topics(self):
        """{topic: partition count} of every topic on the broker, internal
        ones (names starting with "__") left out."""
        out = self.kafka_tool("org.apache.kafka.tools.TopicCommand",
                              "--bootstrap-server", self.bootstrap, "--describe",
                              "--exclude-internal").stdout
        topics = {}
        for line in out.splitlines():
            m = re.match(r"Topic:\s*(\S+)\s+TopicId:.*?\sPartitionCount:\s*(\d+)", line)
            if m:
                topics[m.group(1)] = int(m.group(2))
        return topics

    def end_offsets(self, topic):
        """{partition: end offset} of a topic (the count of records written
        to a partition that was never truncated)."""
        out = self.kafka_tool("org.apache.kafka.tools.GetOffsetShell",
                              "--bootstrap-server", self.bootstrap, "--topic", topic).stdout
        offsets = {}
        for line in out.splitlines():
            name, part, off = line.rsplit(":", 2)
            if name == topic:
                offsets[int(part)] = int(off)
        return offsets

    # membersync ------------------------------------------------------------
    def membersync_env(self, dsn=None, group_prefix=None, topics=None):
        """Environment overrides (common/ms_conf: MEMBERSYNC_<SECTION>_<KEY>)
        that point a membersync process at these services.  topics maps the
        ms_conf key (sync_requests, sync_jobs_cornerstone, sync_jobs_consio,
        sync_events, member_changes, dlq) to a topic name."""
        env = {
            "MEMBERSYNC_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "MEMBERSYNC_POSTGRES_DSN": dsn or self.pg_dsn,
        }
        if group_prefix:
            env["MEMBERSYNC_KAFKA_GROUP_PREFIX"] = group_prefix
        for key, name in (topics or {}).items():
            env["MEMBERSYNC_TOPICS_%s" % key.upper()] = name
        return env


def _read_env_file(path):
    """Parses services.sh's env file (lines `export NAME=VALUE`, VALUE quoted
    by bash's printf %q) with bash itself, so quoting is never misread."""
    script = 'set -a; . "$1"; for n in ${!MS_*}; do printf "%s=%s\\0" "$n" "${!n}"; done'
    out = subprocess.run(["bash", "-c", script, "bash", path], capture_output=True,
                         check=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).stdout
    env = {}
    for item in out.decode().split("\0"):
        if item:
            k, _, v = item.partition("=")
            env[k] = v
    return env


def dsn_with_dbname(dsn, dbname):
    """The DSN with its database replaced (URI or keyword/value form)."""
    if dsn.startswith(("postgresql://", "postgres://")):
        parts = urllib.parse.urlsplit(dsn)
        return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))
    return "%s dbname=%s" % (dsn, dbname)


# -------------------------------------------------------------------- runner

def _reason(exc):
    text = str(exc).strip()
    if isinstance(exc, AssertionError) and not text:
        frames = traceback.extract_tb(exc.__traceback__)
        text = "assertion failed: %s (line %d)" % (frames[-1].line, frames[-1].lineno) if frames else "assertion failed"
    text = "%s: %s" % (type(exc).__name__, text) if not isinstance(exc, AssertionError) else text
    return " ".join(text.split())[:500] or type(exc).__name__


def main(module_globals=None):
    """Runs the calling module's test_* functions; see the module docstring.

    Command-line arguments, if any, select tests by name."""
    if module_globals is None:
        module_globals = inspect.stack()[1].frame.f_globals
    mod_name = module_globals.get("__name__")
    tests = [(n, f) for n, f in module_globals.items()
             if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == mod_name]
    wanted = sys.argv[1:]
    if wanted:
        tests = [(n, f) for n, f in tests if n in wanted]

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_terminated)

    passed = failed = 0
    svc = None
    svc_error = None
    interrupted = False
    try:
        for name, fn in tests:
            try:
                takes_svc = len(inspect.signature(fn).parameters) > 0
                if takes_svc and svc is None:
                    if svc_error:
                        raise RuntimeError("services unavailable: %s" % svc_error)
                    try:
                        svc = Services().__enter__()
                    except Exception as e:
                        svc_error = str(e)
                        raise
                t0 = time.monotonic()
                fn(svc) if takes_svc else fn()
                passed += 1
                print("PASS %s" % name, flush=True)
                sys.stderr.write("  (%s: %.1fs)\n" % (name, time.monotonic() - t0))
            except (KeyboardInterrupt, _Terminated) as e:
                failed += 1
                print("FAIL %s: interrupted (%s)" % (name, type(e).__name__ if str(e) == "" else e), flush=True)
                break
            except Exception as e:  # noqa: BLE001 - a failed test
                failed += 1
                sys.stdout.flush()
                traceback.print_exc(file=sys.stderr)
                for p in list(_procs):
                    sys.stderr.write("--- last lines of %s (%s):\n%s\n" % (p.name, p.log, p.tail()))
                sys.stderr.flush()
                print("FAIL %s: %s" % (name, _reason(e)), flush=True)
            finally:
                stop_all_procs()
    finally:
        stop_all_procs()
        if svc is not None:
            try:
                svc.__exit__(None, None, None)
            except BaseException as e:  # noqa: BLE001 - report, then summarise
                sys.stderr.write("while stopping the services: %s\n" % (e or type(e).__name__))
                interrupted = True
        sys.stderr.flush()
        print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or passed == 0 or interrupted else 0)
