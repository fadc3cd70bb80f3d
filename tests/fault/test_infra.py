"""Infrastructure faults (issue 4, point 3): the Kafka broker killed and
restarted mid-sync, PostgreSQL restarted mid-sync, a second connector
instance joining mid-job (a consumer group rebalance), and a job longer than
max.poll.interval.ms.  Each recovers by itself: the final state equals an
undisturbed run of the same data, and the offline checker finds nothing
lost or out of order.

These tests stop and start the broker and PostgreSQL, so they never touch
the shared services: the module starts a private pair with
tests/harness/services.sh (stopped at exit; its watchdog stops it should
this process be killed)."""

import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultPipeline, mslib, say, sim_stats  # noqa: E402

SYSTEM = "cornerstone"
N, PAGE, SEED = 8000, 200, 21
PAGES = N // PAGE

_priv = {}
_ref = {}


def services():
    """The module's private broker and PostgreSQL."""
    if "svc" not in _priv:
        run_dir = tempfile.mkdtemp(prefix="membersync-fault-infra.", dir="/tmp")
        env = dict(os.environ, MS_SERVICES_OWNER_PID=str(os.getpid()))
        t0 = time.monotonic()
        subprocess.run(["bash", mslib.SERVICES_SH, "start", run_dir], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
        atexit.register(lambda: subprocess.run(["bash", mslib.SERVICES_SH, "stop", run_dir],
                                               timeout=120))
        svc = mslib.Services()
        svc.env = mslib._read_env_file(os.path.join(run_dir, "env"))
        svc.run_dir = run_dir
        _priv["svc"] = svc
        say("private broker %s and PostgreSQL %s started in %.1fs", svc.bootstrap,
            svc.env["MS_PG_PORT"], time.monotonic() - t0)
    return _priv["svc"]


def reference(n=N, page=PAGE):
    key = (n, page)
    if key not in _ref:
        p = FaultPipeline(services(), "infref")
        org = "org-" + p.tag
        sim = p.sim(SYSTEM, generate=n, seed=SEED)
        p.integration(org, SYSTEM, sim, page_size=page)
        p.start_roles(SYSTEM)
        s = p.trigger(org, SYSTEM, role="system", trigger="scheduled")
        _ref[key] = (s, p.final_state(org, SYSTEM, s["job_id"]))
        mslib.stop_all_procs()
    return _ref[key]


def setup(name, n=N, page=PAGE, latency_ms=250, extra_env=None, faults=()):
    p = FaultPipeline(services(), name, extra_env=extra_env)
    org = "org-" + p.tag
    sim = p.sim(SYSTEM, generate=n, seed=SEED, latency_ms=latency_ms, faults=faults)
    p.integration(org, SYSTEM, sim, page_size=page)
    p.start_roles(SYSTEM)
    req = p.trigger(org, SYSTEM, role="system", trigger="scheduled", wait=False)
    return p, org, sim, req["request_id"], p.job_of_request(req["request_id"])


def finish(p, org, rid, label, n=N, page=PAGE):
    ref_s, ref_final = reference(n, page)
    s = p.summary(rid, timeout=300)
    faultlib.same_counts(label, s, ref_s)
    faultlib.assert_same_final(label, p.final_state(org, SYSTEM, s["job_id"]), ref_final)
    return s, p.check(org)


# -- the broker ------------------------------------------------------------

def broker_kill():
    d = services().run_dir
    with open(os.path.join(d, "kafka.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGKILL)
    mslib.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                   open("/proc/%d/stat" % pid).read().split(") ")[1][0] in "ZX", 30,
                   "broker to die")


def broker_start():
    """Starts the broker again exactly as services.sh does: same
    configuration, same port, same log directory."""
    d = services().run_dir
    log = os.path.join(d, "kafka.log")
    started = open(log, errors="replace").read().count("Kafka Server started")
    opts = (os.environ.get("MS_KAFKA_JVM_OPTS") or
            "-Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
            "-XX:+ExitOnOutOfMemoryError").split()
    libs = services().env["MS_KAFKA_LIBS"]
    argv = ["setsid", "sh", "-c", 'echo $$ >"$0"; exec "$@"', os.path.join(d, "kafka.pid"),
            "java"] + opts + [
        "-XX:-UsePerfData", "-Djava.awt.headless=true",
        "-Dlog4j.configuration=file:%s/log4j.properties" % d,
        "-Dlog4j2.configurationFile=%s/log4j2.properties" % d,
        "-cp", "%s/*" % libs, "kafka.Kafka", os.path.join(d, "server.properties")]
    with open(log, "ab") as out:
        # Not an mslib.Proc: the runner stops those after each test, and the
        # broker must outlive the test (services.sh stop finds it by its
        # command line).
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True)
    mslib.wait_for(lambda: open(log, errors="replace").read().count(
        "Kafka Server started") > started, 120, "broker to start again", 0.2)


def test_kafka_broker_killed_and_restarted_mid_sync():
    reference()
    p, org, sim, rid, job_id = setup("infkafka")
    p.wait_pages(job_id, 5)
    t0 = time.monotonic()
    broker_kill()
    down_at = p.job(job_id)["pages_done"]
    time.sleep(3)
    during = p.job(job_id)["pages_done"]
    broker_start()
    t_up = time.monotonic()
    say("broker killed at page %d, restarted %.1fs later (the connector committed %d "
        "pages meanwhile, their events waiting in the outbox: %d rows)", down_at,
        t_up - t0, during - down_at, p.outbox_depth())
    s, rep = finish(p, org, rid, "broker restart")
    say("job ended %s %.1fs after the broker was back; %d pages fetched for %d pages",
        s["outcome"], time.monotonic() - t_up, sim_stats(sim)["pages_served"], PAGES)
    p.stop_roles()


# -- PostgreSQL ---------------------------------------------------------------

def pg_restart():
    e = services().env
    # -l: the restarted server logs to the cluster's log file; without it the
    # server would inherit (and hold open) our output pipes.  The server's
    # options come back from postmaster.opts.
    argv = [os.path.join(e["MS_PG_BIN"], "pg_ctl"), "-D", e["MS_PG_DATA"], "-w", "-t", "60",
            "-m", "fast", "-l", os.path.join(services().run_dir, "pg.log"), "restart"]
    if os.getuid() == 0:
        argv = ["runuser", "-u", "postgres", "--"] + argv
    t0 = time.monotonic()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
                   timeout=120)
    return time.monotonic() - t0


def test_postgresql_restarted_mid_sync():
    reference()
    p, org, sim, rid, job_id = setup("infpg")
    # A standby relay too: after the restart exactly one may publish, so the
    # holder must take the publish lock again on its new connection.
    holder = p.procs["relay"]
    holder.wait_log("holding the publish lock")
    p.role("relay")
    at = p.wait_pages(job_id, 8)["pages_done"]
    took = pg_restart()
    t_up = time.monotonic()
    s, rep = finish(p, org, rid, "PostgreSQL restart")
    assert "the publish lock must be taken again" in holder.output(), holder.tail()
    relays = [pr.output() for k, pr in p.procs.items() if k.startswith("relay")]
    takes = sum(o.count("holding the publish lock") for o in relays)
    say("publish lock: taken %d times by 2 relays (once before, once after the restart)",
        takes)
    assert takes == 2, takes
    logs = "".join(pr.output() for pr in p.procs.values())
    say("PostgreSQL restarted (fast, every connection cut) at page %d in %.1fs; job ended "
        "%s %.1fs later; %d pages fetched for %d pages; %d role log lines about PG errors",
        at, took, s["outcome"], time.monotonic() - t_up, sim_stats(sim)["pages_served"], PAGES,
        logs.count("terminating connection") + logs.count("server closed the connection"))
    assert sim_stats(sim)["pages_served"] <= PAGES + 2
    p.stop_roles()


# -- consumer group ---------------------------------------------------------

def test_second_connector_joins_mid_job_rebalance():
    reference()
    p, org, sim, rid, job_id = setup("infreb", latency_ms=150)
    p.wait_pages(job_id, 6)
    t0 = time.monotonic()
    second = p.role("connector", "--system", SYSTEM)
    second.wait_log(r"assigned \d+ partition", timeout=60)
    say("second connector joined at page %d; rebalance done in %.1fs", p.job(job_id)[
        "pages_done"], time.monotonic() - t0)
    p.wait_pages(job_id, 20)
    # And the other way: the newcomer leaves gracefully mid-job.
    second.stop()
    s, rep = finish(p, org, rid, "rebalance")
    served = sim_stats(sim)["pages_served"]
    owners = sum("job %s resumed" % job_id in pr.output() for pr in p.procs.values())
    say("%d pages fetched for %d pages across 2 rebalances; the job resumed %d time(s) "
        "from its checkpoint", served, PAGES, owners)
    assert served <= PAGES + 2 * 2, served
    p.stop_roles()


def test_job_longer_than_max_poll_interval():
    n, page = 3000, 100
    reference(n, page)
    # 30 pages at 350 ms plus one page that hangs 7 s: well past the 6 s
    # max.poll.interval.ms, both in total and within a single page.
    p, org, sim, rid, job_id = setup(
        "infpoll", n=n, page=page, latency_ms=350, faults=["hang:12:7000"],
        extra_env={"MEMBERSYNC_KAFKA_MAX_POLL_INTERVAL_MS": "6000",
                   "MEMBERSYNC_CONNECTOR_TIMEOUT_MS": "15000"})
    t0 = time.monotonic()
    s, rep = finish(p, org, rid, "max.poll.interval", n, page)
    took = time.monotonic() - t0
    conn = p.procs["connector-%s" % SYSTEM].output()
    served = sim_stats(sim)["pages_served"]
    say("job of %.1fs with max.poll.interval.ms=6000 (one page took 7 s): %d pages fetched "
        "for %d, revocations %d, interruptions %d", took, served, n // page,
        conn.count("revoked"), conn.count("interrupted"))
    assert took > 12, took
    assert served == n // page, served
    assert conn.count("revoked") == 0 and conn.count("interrupted") == 0
    p.stop_roles()


if __name__ == "__main__":
    faultlib.main()
