"""Crash anywhere (issue 4, point 1): kill -9 of each role in the middle of a
sync of 20 000 generated members, and more than once.  Each test ends with
the same members rows and status row as an undisturbed run of the same data
(computed once per module), the offline checker finds nothing lost or out of
order, and the connector shows it resumed from its checkpoint: pages fetched
in total <= pages + 2 per crash."""

import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultPipeline, mslib, say, sim_admin, sim_stats  # noqa: E402

N = 20000
PAGE = 500
SEED = 11
LATENCY_MS = 120  # per page: a kill lands inside a fetch about half the time
SYSTEM = "cornerstone"
# The second sync of the connector test: 100 members gone, ~10% changed.
N2, VARIANT2 = N - 100, 1

_ref = {}


def reference(svc):
    """Undisturbed runs: the base data, then the changed data."""
    if not _ref:
        p = FaultPipeline(svc, "crref")
        org = "org-" + p.tag
        sim = p.sim(SYSTEM, generate=N, seed=SEED)
        p.integration(org, SYSTEM, sim, page_size=PAGE)
        p.start_roles(SYSTEM)
        s1 = p.trigger(org, SYSTEM, role="system", trigger="scheduled")
        _ref["base"] = (s1, p.final_state(org, SYSTEM, s1["job_id"]))
        sim_admin(sim, "/admin/reload?generate=%d&seed=%d&variant=%d" % (N2, SEED, VARIANT2))
        s2 = p.trigger(org, SYSTEM, role="system", trigger="scheduled")
        _ref["changed"] = (s2, p.final_state(org, SYSTEM, s2["job_id"]))
        say("undisturbed: base %s created=%d; changed %s created=%d updated=%d "
            "deactivated=%d unchanged=%d (%.1fs)", s1["outcome"], s1["created"],
            s2["outcome"], s2["created"], s2["updated"], s2["deactivated"], s2["unchanged"],
            s2["duration_ms"] / 1000.0)
        mslib.stop_all_procs()
    return _ref


def setup(svc, name, **extra_env):
    p = FaultPipeline(svc, name, extra_env=extra_env)
    org = "org-" + p.tag
    sim = p.sim(SYSTEM, generate=N, seed=SEED, latency_ms=LATENCY_MS)
    p.integration(org, SYSTEM, sim, page_size=PAGE)
    p.start_roles(SYSTEM)
    return p, org, sim


def start_sync(p, org):
    req = p.trigger(org, SYSTEM, role="system", trigger="scheduled", wait=False)
    return req["request_id"], p.job_of_request(req["request_id"])


def finish(p, org, request_id, ref_key, label):
    ref_summary, ref_final = reference(None)[ref_key]
    s = p.summary(request_id)
    faultlib.same_counts(label, s, ref_summary)
    faultlib.assert_same_final(label, p.final_state(org, SYSTEM, s["job_id"]), ref_final)
    return s, p.check(org)


def test_kill_connector_mid_page_twice_resumes_from_checkpoint(svc):
    reference(svc)
    p, org, sim = setup(svc, "crconn")
    first = p.trigger(org, SYSTEM, role="system", trigger="scheduled")
    faultlib.same_counts("first sync", first, _ref["base"][0])
    # The crashes hit the second sync, which updates, creates and
    # deactivates, so every kind of change crosses a crash.
    sim_admin(sim, "/admin/reload?generate=%d&seed=%d&variant=%d" % (N2, SEED, VARIANT2))
    pages = math.ceil(N2 / PAGE)
    before = sim_stats(sim)["pages_served"]
    rid, job_id = start_sync(p, org)
    recoveries = []
    for crash, at_page in enumerate((8, 24)):
        p.wait_pages(job_id, at_page)
        # Somewhere inside the next page: its fetch, its transaction, or
        # between its commit and the relay publishing its events.
        time.sleep(random.uniform(0, LATENCY_MS * 1.5) / 1000.0)
        t_kill = p.kill9("connector-%s" % SYSTEM)
        done = p.job(job_id)["pages_done"]
        new = p.role("connector", "--system", SYSTEM)
        new.wait_log(r"job %s resumed \(checkpoint set, %d records so far\)" % (
            job_id, done * PAGE), timeout=60)
        recoveries.append(time.monotonic() - t_kill)
        say("crash %d: connector killed at page %d; resumed from its checkpoint after "
            "%.1fs", crash + 1, done, recoveries[-1])
    s, rep = finish(p, org, rid, "changed", "connector crashes")
    fetched = sim_stats(sim)["pages_served"] - before
    say("pages fetched %d for %d pages with 2 crashes (limit %d)", fetched, pages, pages + 4)
    assert fetched <= pages + 2 * 2, (fetched, pages)
    assert s["pages_done"] == pages, s
    p.stop_roles()


def test_kill_relay_before_and_during_publishing(svc):
    reference(svc)
    p, org, sim = setup(svc, "crrelay")
    rid, job_id = start_sync(p, org)
    p.wait_pages(job_id, 2)
    # Dead while pages commit: their events wait in the outbox.
    t_kill = p.kill9("relay")
    p.wait_pages(job_id, 20)
    depth = p.outbox_depth()
    # Back with small batches, and killed again while it works through the
    # backlog: rows delivered but not yet deleted are published twice.
    p.role("relay", env={"MEMBERSYNC_RELAY_BATCH_SIZE": "100"})
    mslib.wait_for(lambda: p.outbox_depth() < depth - 300, 60, "relay to publish", 0.01)
    time.sleep(random.uniform(0, 0.02))
    p.kill9("relay")
    left = p.outbox_depth()
    t_restart = time.monotonic()
    p.role("relay")
    p.wait_outbox_empty()
    say("relay killed with %d events pending, then again mid-publish with %d left; "
        "outbox drained %.1fs after the restart (%.1fs after the first kill)", depth, left,
        time.monotonic() - t_restart, time.monotonic() - t_kill)
    s, rep = finish(p, org, rid, "base", "relay crashes")
    say("duplicates published by the relay crash: %d sync-events, %d member-changes",
        rep["sync_events"]["duplicates"], rep["member_changes"]["duplicates"])
    p.stop_roles()


def test_kill_projector_during_projection(svc):
    reference(svc)
    p, org, sim = setup(svc, "crproj")
    rid, job_id = start_sync(p, org)
    p.wait_pages(job_id, 6)
    t_kill = p.kill9("projector")
    p.wait_pages(job_id, 20)
    # Restarted with a backlog of progress events, and killed again while
    # it projects them.
    p.role("projector").wait_log(r"assigned \d+ partition", timeout=60)
    time.sleep(random.uniform(0.0, 0.05))
    p.kill9("projector")
    t_restart = time.monotonic()
    p.role("projector")
    s, rep = finish(p, org, rid, "base", "projector crashes")
    say("status row final %.1fs after the last restart (%.1fs after the first kill)",
        time.monotonic() - t_restart, time.monotonic() - t_kill)
    p.stop_roles()


def test_kill_ratelimiter_while_deciding(svc):
    reference(svc)
    p, org, sim = setup(svc, "crrl")
    p.kill9("ratelimiter")
    # A backlog of decisions: the sync, replays of its request id (same
    # decision, never a second job), unconfigured orgs, a forbidden actor.
    req = p.trigger(org, SYSTEM, role="system", trigger="scheduled", wait=False)
    rid = req["request_id"]
    for _ in range(2):
        p.trigger(org, SYSTEM, role="system", trigger="scheduled", wait=False, request_id=rid)
    others = [p.trigger("nocfg-%d-%s" % (i, p.tag), SYSTEM, role="global_admin",
                        wait=False)["request_id"] for i in range(4)]
    others.append(p.trigger(org, SYSTEM, role="org_admin", actor_org="other-org",
                            wait=False)["request_id"])
    # Hold the lock the rate limiter takes per org+integration inside its
    # decision transaction, so the kill lands mid-decision for sure.
    holder = mslib.Proc([mslib._psql_bin(), "-X", "-q", "-d", p.dsn, "-c",
                         "select pg_advisory_lock(hashtext('%s/CORNERSTONE')); "
                         "select pg_sleep(120)" % org], name="%s-lockholder" % p.tag,
                        env={"PGAPPNAME": "fault-lockholder"})
    mslib.wait_for(lambda: p.query("select 1 from pg_locks l join pg_database d on d.oid = "
                                   "l.database where l.locktype = 'advisory' and l.granted "
                                   "and d.datname = current_database()"), 30, "lock holder")
    p.role("ratelimiter")
    mslib.wait_for(lambda: p.query(
        "select 1 from pg_stat_activity where application_name = 'membersync-ratelimiter' "
        "and wait_event_type = 'Lock' and datname = current_database()"), 60, "rate limiter blocked inside its decision")
    t_kill = p.kill9("ratelimiter")
    decided = int(mslib.query_value("select count(*) from membersync.sync_requests",
                                    dsn=p.dsn))
    # The holder's backend sleeps on even when psql goes: end it in the server.
    p.query("select pg_terminate_backend(pid) from pg_stat_activity where "
            "application_name = 'fault-lockholder' and datname = current_database()")
    holder.stop()
    p.role("ratelimiter")
    job_id = p.job_of_request(rid)
    say("ratelimiter killed inside the decision transaction of the sync request, with %d "
        "of %d decisions committed; job queued %.1fs after the kill", decided, 1 + len(others), time.monotonic() - t_kill)
    s, rep = finish(p, org, rid, "base", "ratelimiter crashes")
    rows = p.query("select request_id, decision, count(*) over () from "
                   "membersync.sync_requests order by decision")
    assert len(rows) == 1 + len(others), rows
    assert sorted(r[1] for r in rows) == ["FORBIDDEN"] + ["NOT_CONFIGURED"] * 4 + ["QUEUED"], \
        rows
    jobs = p.query("select job_id from membersync.sync_jobs")
    assert jobs == [(job_id,)], jobs
    # Exactly one decision event per request, whatever the replays and
    # crashes: one SyncQueued or SyncRejected (unique by event_id).
    decisions = {}
    for e in p.tail("sync_events"):
        v = e["value"]
        if v["seq"] == 0:
            decisions.setdefault(v["request_id"], set()).add(v["event_id"])
    counts = {r: len(ids) for r, ids in decisions.items()}
    assert counts == {r: 1 for r in [rid] + others}, counts
    say("one decision per request (%d requests, 2 replays), one job", len(counts))
    p.stop_roles()


if __name__ == "__main__":
    faultlib.main()
