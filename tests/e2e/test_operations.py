"""Operations behaviour on the real broker and PostgreSQL: graceful shutdown
of a connector mid-job (issue 5, point 5) and the nightly `schedule` verb
(point 6)."""

import collections
import os
import signal
import sys
import time
import urllib.request
import json

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import mslib  # noqa: E402
from pipeline import Pipeline  # noqa: E402


def sim_stats(sim):
    with urllib.request.urlopen(sim.url + "/admin/stats", timeout=10) as r:
        return json.load(r)


def test_sigterm_mid_job_checkpoints_and_next_instance_resumes(svc):
    members, page = 20000, 200
    pages = members // page
    p = Pipeline(svc, "term")
    org = "org-%s" % p.tag
    sim = p.sim("cornerstone", generate=members, seed=5, latency_ms=80)
    p.integration(org, "cornerstone", sim, page_size=page)
    p.start_roles("cornerstone")
    first = p.trigger(org, "cornerstone", role="system", trigger="scheduled", wait=False)
    job = mslib.wait_for(lambda: p.query(
        "select job_id from membersync.sync_jobs where request_id = :'p1' and "
        "records_processed >= 4000", first["request_id"]), 120, "job to be under way")[0][0]
    conn = p.procs["connector-cornerstone"]
    t0 = time.monotonic()
    rc = conn.stop(signal.SIGTERM, timeout=25)
    took = time.monotonic() - t0
    assert rc == 0, "connector exited with %s after SIGTERM" % rc
    assert took < 25, "shutdown took %.1fs" % took
    state, processed, cp = p.query("select state, records_processed, checkpoint from "
                                   "membersync.sync_jobs where job_id = :'p1'", job)[0]
    assert state == "RUNNING" and cp, (state, cp)
    print("  SIGTERM after %s records: exited 0 in %.1fs, checkpoint kept" % (processed, took))
    p.role("connector", "--system", "cornerstone")
    done = mslib.wait_for(lambda: p.query(
        "select state, created, records_processed from membersync.sync_jobs "
        "where job_id = :'p1' and state not in ('QUEUED', 'RUNNING')", job), 180,
        "resumed job to finish")[0]
    assert done == ("SUCCEEDED", str(members), str(members)), done
    served = sim_stats(sim)["pages_served"]
    # The page that was prefetched but not yet processed at SIGTERM is fetched
    # again by the new instance; no page is processed twice.
    assert served <= pages + 1, "pages served %d for %d pages" % (served, pages)
    p.wait_outbox_empty()
    changes = p.tail("member_changes")
    ids = collections.Counter(e["value"]["external_id"] for e in changes)
    assert len(ids) == members and max(ids.values()) == 1, (len(ids), max(ids.values()))
    print("  resumed: %d pages served for %d pages, %d MemberChanged, none twice" % (
        served, pages, len(changes)))


def test_schedule_triggers_every_enabled_integration_and_is_deduplicated(svc):
    p = Pipeline(svc, "sched")
    orgs = ["a-%s" % p.tag, "b-%s" % p.tag]
    cs = p.sim("cornerstone", generate=300, seed=8)
    co = p.sim("consio", generate=200, seed=9, latency_ms=200)
    p.integration(orgs[0], "cornerstone", cs, page_size=100)
    p.integration(orgs[0], "consio", co, page_size=20)
    p.integration(orgs[1], "cornerstone", cs, page_size=100)
    p.cli("integration", "set", "--org", orgs[1], "--system", "consio", "--base-url", co.url,
          "--credentials-ref", "env:MS_TEST_CONSIO_CRED", "--enabled", "false")
    p.start_roles("cornerstone", "consio")
    p.cli("schedule")
    # A second schedule run while the slow Consio job still runs is deduped
    # like every trigger: ALREADY_RUNNING, no second job.
    mslib.wait_for(lambda: p.query("select 1 from membersync.sync_jobs where org_id = :'p1' "
                                   "and integration = 'CONSIO' and state = 'RUNNING'",
                                   orgs[0]), 60, "consio job to run")
    p.cli("schedule")

    def settled():
        rows = p.query("select org_id, integration, decision from membersync.sync_requests "
                       "where trigger = 'SCHEDULED' order by 1, 2, 3")
        return rows if len(rows) == 6 else None
    rows = mslib.wait_for(settled, 60, "six scheduled decisions")
    decisions = collections.Counter((o[:1], i, d) for o, i, d in rows)
    assert decisions[("a", "CORNERSTONE", "QUEUED")] >= 1
    assert decisions[("a", "CONSIO", "QUEUED")] == 1
    assert decisions[("a", "CONSIO", "ALREADY_RUNNING")] == 1
    assert decisions[("b", "CORNERSTONE", "QUEUED")] >= 1
    assert not any(i == "CONSIO" and o == "b" for o, i, _ in decisions), \
        "a disabled integration was triggered"
    mslib.wait_for(lambda: not p.query("select 1 from membersync.sync_jobs where state in "
                                       "('QUEUED', 'RUNNING')"), 120, "jobs to finish")
    jobs = p.query("select org_id, integration, trigger, state, created from "
                   "membersync.sync_jobs order by queued_at")
    assert all(t == "SCHEDULED" and s == "SUCCEEDED" for _, _, t, s, _ in jobs), jobs
    print("  schedule: %d jobs, decisions %s" % (len(jobs), dict(decisions)))


if __name__ == "__main__":
    mslib.main()
