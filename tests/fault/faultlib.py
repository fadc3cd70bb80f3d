"""Shared helpers of the fault tests (issue 4), on top of mslib and pipeline.

A fault test runs a sync with a fault injected, then proves three things:
  1. the final state equals an undisturbed run of the same data
     (`final_state`: a hash of the members rows (external_id, data, active)
     in external_id order, and the status row's counts);
  2. the offline checker (`membersync-check --pg`) finds nothing lost, out of
     order, applied twice or mismatched (`check`);
  3. whatever the fault itself must show (pages fetched after a crash, the
     failure reason, the DLQ record, ...).
Figures go to stdout as "  name: value" lines so the CTest log keeps them.
"""

import json
import os
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import mslib  # noqa: E402
from pipeline import Pipeline  # noqa: E402

STATUS_KEYS = ("state", "last_outcome", "last_records_processed", "records_synced", "created",
               "updated", "unchanged", "deactivated", "error_count", "warning_count",
               "active_job_id", "failure_reason")
JOB_KEYS = ("outcome", "records_processed", "records_synced", "created", "updated",
            "unchanged", "deactivated", "error_count", "warning_count", "total_count")


def say(fmt, *args):
    print("  " + (fmt % args if args else fmt), flush=True)


def sim_stats(sim):
    with urllib.request.urlopen(sim.url + "/admin/stats", timeout=10) as r:
        return json.load(r)


def sim_admin(sim, path):
    req = urllib.request.Request(sim.url + path, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


class FaultPipeline(Pipeline):
    """A Pipeline with the fault tests' probes.  Extra environment for every
    role (and the CLI) comes from extra_env; role_env() starts one role with
    more."""

    def __init__(self, svc, name="fault", extra_env=None):
        env = {
            # A killed member leaves the group after this, not after 10 s.
            "MEMBERSYNC_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "MEMBERSYNC_LOG_LEVEL": "info",
        }
        env.update(extra_env or {})
        super().__init__(svc, name, extra_env=env)

    # -- roles -------------------------------------------------------------
    def role(self, name, *args, env=None):
        key = name if not args else "%s-%s" % (name, args[-1])
        full = dict(self.env)
        full.update(env or {})
        n = sum(1 for k in self.procs if k == key or k.startswith(key + "#"))
        p = mslib.Proc([mslib.bin_path(), name] + list(args),
                       name="%s-%s-%d" % (self.tag, key, n), env=full)
        # The live process of a role under its key; earlier (killed) ones
        # stay reachable under key#n for their logs.
        if key in self.procs:
            self.procs["%s#%d" % (key, n)] = self.procs[key]
        self.procs[key] = p
        return p

    def kill9(self, key):
        """kill -9 of a role's live process; returns the time of the kill."""
        p = self.procs[key]
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        return time.monotonic()

    def stop_roles(self):
        """SIGTERM to every live role after a fault test: each must stop by
        itself and exit 0.  Under ASan/LeakSanitizer a leak on the normal
        shutdown path, after whatever the fault did, makes the exit status
        non-zero (issue 4, point 8)."""
        bad, n = [], 0
        for key, proc in list(self.procs.items()):
            if not proc.alive:
                continue
            rc = proc.stop(signal.SIGTERM, timeout=60)
            n += 1
            if rc != 0:
                bad.append("%s exited %s: %s" % (key, rc, proc.tail(15)))
        assert not bad, "roles did not stop cleanly:\n" + "\n".join(bad)
        say("%d roles stopped on SIGTERM with exit status 0", n)

    # -- state -------------------------------------------------------------
    def job(self, job_id):
        rows = self.query("select row_to_json(j)::text from membersync.sync_jobs j "
                          "where job_id = :'p1'", job_id)
        return json.loads(rows[0][0]) if rows else None

    def job_of_request(self, request_id, timeout=60):
        return mslib.wait_for(lambda: self.query(
            "select job_id from membersync.sync_jobs where request_id = :'p1'",
            request_id), timeout, "job of request %s" % request_id)[0][0]

    def wait_pages(self, job_id, pages, timeout=120):
        """Waits until the job committed at least `pages` pages."""
        def pred():
            j = self.job(job_id)
            if j and j["state"] not in ("QUEUED", "RUNNING"):
                raise AssertionError("job ended (%s) before page %d" % (j["state"], pages))
            return j if j and j["pages_done"] >= pages else None
        return mslib.wait_for(pred, timeout, "job %s at page %d" % (job_id, pages), 0.02)

    def wait_job_end(self, job_id, timeout=300):
        return mslib.wait_for(lambda: (lambda j: j if j and j["state"] not in (
            "QUEUED", "RUNNING") else None)(self.job(job_id)), timeout,
            "job %s to end" % job_id, 0.2)

    def summary(self, request_id, timeout=300):
        """The same summary `trigger --wait --json` prints, for a request
        published earlier (waits for its job to end)."""
        job_id = self.job_of_request(request_id, timeout)
        j = self.wait_job_end(job_id, timeout)
        total = j["source_total"]
        return {"request_id": request_id, "job_id": job_id, "outcome": j["state"],
                "records_processed": j["records_processed"],
                "records_synced": j["created"] + j["updated"] + j["unchanged"],
                "created": j["created"], "updated": j["updated"], "unchanged": j["unchanged"],
                "deactivated": j["deactivated"], "error_count": j["error_count"],
                "warning_count": j["warning_count"], "total_count": total,
                "failure_reason": j["failure_reason"], "pages_done": j["pages_done"]}

    def members_state(self, org, integration):
        """(row count, active count, md5 over (external_id, data, active) in
        external_id order) of an org's members."""
        row = self.query(
            "select count(*), count(*) filter (where active), coalesce(md5(string_agg("
            "external_id || chr(31) || data::text || chr(31) || active::text, chr(30) "
            "order by external_id collate \"C\")), '') from membersync.members "
            "where org_id = :'p1' and integration = :'p2'", org, integration.upper())[0]
        return int(row[0]), int(row[1]), row[2]

    def final_state(self, org, integration, job_id):
        """Members hash and status row counts after job_id (waits for the
        projector and the relay)."""
        self.wait_outbox_empty()
        status = self.wait_status(org, integration, job_id, timeout=120)
        return {"members": self.members_state(org, integration),
                "status": {k: status.get(k) for k in STATUS_KEYS}}

    # -- the offline checker ----------------------------------------------
    def check(self, org=None, expect_clean=True):
        """Runs membersync-check --pg on this pipeline's topics (after the
        outbox drained); asserts nothing lost, out of order, applied twice or
        mismatched unless expect_clean is False; returns the report."""
        self.wait_outbox_empty()
        argv = [mslib.bin_path("membersync-check"), "--pg"]
        if org:
            argv += ["--org", org]
        cp = mslib.run(argv, env=self.env, check=False, timeout=180)
        if cp.returncode not in (0, 1):
            raise AssertionError("membersync-check failed (%d): %s" % (cp.returncode,
                                                                       cp.stderr[-2000:]))
        rep = json.loads(cp.stdout)
        se, mc = rep["sync_events"], rep["member_changes"]
        say("checker: sync-events %d (%d unique, %d duplicates), member-changes %d (%d "
            "unique, %d duplicates); lost %d, out of order %d, applied twice %d, "
            "mismatched %d", se["messages"], se["unique"], se["duplicates"], mc["messages"],
            mc["unique"], mc["duplicates"], rep["lost"]["count"], rep["out_of_order"]["count"],
            rep["applied_twice"]["count"], rep["mismatched"]["count"])
        if expect_clean:
            bad = {k: rep[k] for k in ("lost", "out_of_order", "applied_twice", "mismatched")
                   if rep[k]["count"]}
            assert not bad and cp.returncode == 0, "checker: %s" % json.dumps(bad)[:3000]
            assert rep["pg"]["members_checked"] > 0 or mc["unique"] == 0, rep["pg"]
        return rep


def assert_same_final(label, got, ref):
    """Compares two final_state() results (the status row's job ids differ
    by nature and are not compared)."""
    assert got["members"] == ref["members"], "%s: members differ: %s vs undisturbed %s" % (
        label, got["members"], ref["members"])
    assert got["status"] == ref["status"], "%s: status row differs: %s vs undisturbed %s" % (
        label, got["status"], ref["status"])
    say("%s: final state equals the undisturbed run (%d members, %d active, hash %s; "
        "status %s %s)", label, got["members"][0], got["members"][1], got["members"][2][:12],
        got["status"]["state"], ", ".join("%s=%s" % (k, got["status"][k]) for k in (
            "created", "updated", "unchanged", "deactivated", "error_count", "warning_count")))


def same_counts(label, got, ref):
    a = {k: got.get(k) for k in JOB_KEYS}
    b = {k: ref.get(k) for k in JOB_KEYS}
    assert a == b, "%s: job counts differ: %s vs undisturbed %s" % (label, a, b)


def main():
    mslib.main(sys.modules["__main__"].__dict__)
