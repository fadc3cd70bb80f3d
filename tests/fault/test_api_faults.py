"""Member API faults (issue 4, point 2), injected with membersync-sim's fault
switches: 429 with Retry-After in seconds and as an HTTP-date, bursts of
500/502/503, connection resets, a page hanging past the timeout, a truncated
JSON body, a repeating cursor, token expiry mid-sync, an auth failure, and
items inserted or removed while Consio's page-number paging runs.

Transient faults must end with the same final state as an undisturbed run of
the same data; the failures (cursor loop, auth) must end FAILED with a clear
reason, deactivate nobody, and the next undisturbed sync must then reach the
undisturbed final state.  Every test runs the offline checker."""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultPipeline, mslib, say, sim_admin, sim_stats  # noqa: E402

N = 3000
PAGE = 100
PAGES = N // PAGE
SEED = 5
# Short timeouts and backoffs keep the retries quick; the rules are the same.
GATEWAY_ENV = {
    "MEMBERSYNC_CONNECTOR_TIMEOUT_MS": "1500",
    "MEMBERSYNC_CONNECTOR_CONNECT_TIMEOUT_MS": "1000",
    "MEMBERSYNC_CONNECTOR_BACKOFF_BASE_MS": "50",
    "MEMBERSYNC_CONNECTOR_BACKOFF_MAX_MS": "400",
    "MEMBERSYNC_CONNECTOR_MAX_RETRIES": "5",
    "MEMBERSYNC_CONNECTOR_RETRY_AFTER_CAP_MS": "5000",
}

_state = {}


def pipeline(svc):
    """One pipeline (database, topics, roles) for the module; the roles are
    restarted for each test (the runner stops every process after a test)."""
    p = _state.get("p")
    if p is None:
        p = _state["p"] = FaultPipeline(svc, "api", extra_env=GATEWAY_ENV)
        p.env["MS_TEST_CS_KEY"] = "test-key"
        p.env["MS_TEST_CONSIO_CRED"] = "test-client:test-secret"
    for key, args in (("ratelimiter", ()), ("projector", ()), ("relay", ()),
                      ("connector-cornerstone", ("--system", "cornerstone")),
                      ("connector-consio", ("--system", "consio"))):
        if key not in p.procs or not p.procs[key].alive:
            p.role(key.split("-")[0], *args)
    return p


def new_org(p, system, faults=(), latency_ms=None, generate=N, file=None):
    org = "org-%s-%d" % (p.tag, len(p.sims))
    sim = p.sim(system, generate=None if file else generate, file=file, seed=SEED,
                latency_ms=latency_ms, faults=faults)
    p.integration(org, system, sim, page_size=PAGE)
    return org, sim


def sync(p, org, system):
    return p.trigger(org, system, role="system", trigger="scheduled", timeout=240)


def reference(svc, system):
    """An undisturbed sync of the same generated data."""
    if system not in _state:
        p = pipeline(svc)
        org, sim = new_org(p, system)
        s = sync(p, org, system)
        _state[system] = (s, p.final_state(org, system, s["job_id"]), sim_stats(sim))
        say("undisturbed %s: %s, %d created in %.1fs, %d requests", system, s["outcome"],
            s["created"], s["duration_ms"] / 1000.0, _state[system][2]["requests"])
    return _state[system]


def assert_like_reference(p, label, org, system, s):
    ref_s, ref_final, _ = _state[system]
    faultlib.same_counts(label, s, ref_s)
    faultlib.assert_same_final(label, p.final_state(org, system, s["job_id"]), ref_final)
    p.check(org)


def test_429_retry_after_seconds_and_http_date(svc):
    p = pipeline(svc)
    for system, spec, secs in (("cornerstone", "429s", 2), ("consio", "429date", 2)):
        reference(svc, system)
        faults = ["%s:3:%d" % (spec, secs), "%s:7:1" % spec]
        org, sim = new_org(p, system, faults)
        t0 = time.monotonic()
        s = sync(p, org, system)
        took = time.monotonic() - t0
        st = sim_stats(sim)
        say("%s %s: Retry-After honoured, sync took %.1fs (undisturbed %.1fs), %d requests "
            "for %d pages", system, spec, took, _state[system][0]["duration_ms"] / 1000.0,
            st["requests"] - st.get("tokens_issued", 0), PAGES)
        # The 2 s wait was honoured (an HTTP-date has whole seconds: >= 1 s).
        assert s["duration_ms"] >= 1000 + (1000 if spec == "429s" else 0), s
        assert_like_reference(p, "%s %s" % (system, spec), org, system, s)
    p.stop_roles()


def test_5xx_bursts_and_connection_resets(svc):
    p = pipeline(svc)
    for system in ("cornerstone", "consio"):
        reference(svc, system)
        faults = ["status:500:2:2", "status:502:5:3", "status:503:9:2", "reset:12",
                  "reset:12", "status:500:30:1"]
        org, sim = new_org(p, system, faults)
        s = sync(p, org, system)
        st = sim_stats(sim)
        say("%s: 8 5xx answers and 2 resets retried: %d pages served for %d pages", system,
            st["pages_served"], PAGES)
        assert st["pages_served"] == PAGES, st
        assert_like_reference(p, "%s 5xx/reset" % system, org, system, s)
    p.stop_roles()


def test_page_hanging_past_the_timeout_and_truncated_json(svc):
    p = pipeline(svc)
    for system in ("cornerstone", "consio"):
        reference(svc, system)
        # 1.5 s timeout: the hanging page is abandoned and fetched again; the
        # truncated bodies are unparseable and retried like transient errors.
        faults = ["hang:4:4000", "truncate:6", "truncate:6", "truncate:20"]
        org, sim = new_org(p, system, faults)
        t0 = time.monotonic()
        s = sync(p, org, system)
        st = sim_stats(sim)
        say("%s: hanging page timed out and retried, 3 truncated bodies retried: %d pages "
            "served for %d pages in %.1fs", system, st["pages_served"], PAGES,
            time.monotonic() - t0)
        assert st["pages_served"] >= PAGES + 3, st
        assert_like_reference(p, "%s hang/truncate" % system, org, system, s)
    p.stop_roles()


def follow_up_reaches_reference(p, label, org, system, sim):
    """After a FAILED job: clear the faults; the next sync reaches the
    undisturbed members and a consistent status row."""
    sim_admin(sim, "/admin/faults/clear")
    s = sync(p, org, system)
    assert s["outcome"] == "SUCCEEDED", s
    got = p.final_state(org, system, s["job_id"])
    assert got["members"] == _state[system][1]["members"], (label, got["members"])
    assert got["status"]["state"] == "SUCCEEDED" and got["status"]["created"] == s["created"]
    say("%s: the next sync after the fault SUCCEEDED (created %d, unchanged %d) and the "
        "members equal the undisturbed run", label, s["created"], s["unchanged"])


def test_repeating_cursor_fails_with_cursor_loop(svc):
    p = pipeline(svc)
    for system in ("cornerstone", "consio"):
        reference(svc, system)
        org, sim = new_org(p, system, ["repeat-cursor:5"])
        s = sync(p, org, system)
        st = sim_stats(sim)
        say("%s: %s \"%s\" after %d pages served, %d records kept, %d deactivated", system,
            s["outcome"], s["failure_reason"], st["pages_served"], s["created"],
            s["deactivated"])
        assert s["outcome"] == "FAILED", s
        assert s["failure_reason"].startswith("cursor loop"), s
        # It stopped at once instead of spinning on the repeated page.
        assert st["pages_served"] <= 6, st
        assert s["deactivated"] == 0, s
        p.check(org)
        follow_up_reaches_reference(p, "%s cursor loop" % system, org, system, sim)
    p.stop_roles()


def test_token_expiry_mid_sync_refreshes_once(svc):
    p = pipeline(svc)
    reference(svc, "consio")
    org, sim = new_org(p, "consio", ["token-expire-after:10"])
    s = sync(p, org, "consio")
    st = sim_stats(sim)
    say("consio: token refused after 10 data requests: %d tokens issued for %d pages, "
        "%d pages served", st["tokens_issued"], PAGES, st["pages_served"])
    # One token at the start, then exactly one refresh per expiry.
    assert st["tokens_issued"] == -(-PAGES // 10), st
    assert_like_reference(p, "consio token expiry", org, "consio", s)
    p.stop_roles()


def test_auth_failure_fails_clearly_and_deactivates_nobody(svc):
    p = pipeline(svc)
    for system in ("cornerstone", "consio"):
        reference(svc, system)
        org, sim = new_org(p, system)
        first = sync(p, org, system)
        before = p.members_state(org, system)
        # Credentials refused, and a source that would look empty: a job
        # that deactivated on failure would deactivate everybody.
        sim_admin(sim, "/admin/fault?spec=auth-fail")
        sim_admin(sim, "/admin/reload?generate=0")
        s = sync(p, org, system)
        say("%s: %s \"%s\"; %d deactivated", system, s["outcome"], s["failure_reason"],
            s["deactivated"])
        assert s["outcome"] == "FAILED", s
        assert s["failure_reason"].startswith("authentication failed"), s
        assert s["deactivated"] == 0 and p.members_state(org, system) == before
        status = p.wait_status(org, system, s["job_id"])
        assert status["state"] == "FAILED" and status["failure_reason"] == s["failure_reason"]
        p.check(org)
        sim_admin(sim, "/admin/reload?generate=%d&seed=%d" % (N, SEED))
        follow_up_reaches_reference(p, "%s auth failure" % system, org, system, sim)
        assert first["created"] == N
    p.stop_roles()


# -- Consio page-number paging while the source changes ---------------------

def consio_records(sim):
    """Every record the simulator serves, in order (through its own API)."""
    form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "client_id": "test-client", "client_secret": "test-secret",
                                   "scope": "members.read"}).encode()
    with urllib.request.urlopen(sim.url + "/connect/token", form, timeout=10) as r:
        tok = json.load(r)["access_token"]
    out, page = [], 1
    while True:
        req = urllib.request.Request("%s/api/v1/actors?page=%d&pageSize=1000" % (
            sim.url, page), headers={"Authorization": "Bearer " + tok})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.load(r)
        out += body["items"]
        if len(out) >= body["totalCount"] or not body["items"]:
            return out
        page += 1


def write_json(p, name, records):
    path = os.path.join(mslib._log_dir(), "%s-%s.json" % (p.tag, name))
    with open(path, "w") as f:
        json.dump(records, f, ensure_ascii=False)
    return path


def test_items_removed_or_inserted_while_paging_deactivate_nobody_wrongly(svc):
    p = pipeline(svc)
    org0, sim0 = new_org(p, "consio")
    base = consio_records(sim0)
    assert len(base) == N
    # Removed: 30 records of page 2 disappear while the sync is at page 5,
    # so every later page shifts by 30 and 30 unremoved records are never
    # served.  Inserted: 30 new records at the front shift the rest back.
    removed_ids = {str(r["actNo"]) for r in base[110:140]}
    files = {
        "base": write_json(p, "base", base),
        "removed": write_json(p, "removed", base[:110] + base[140:]),
        "inserted": write_json(p, "inserted", [dict(r, actNo=9000000 + i) for i, r in
                                               enumerate(base[:30])] + base),
    }
    for change in ("removed", "inserted"):
        org, sim = new_org(p, "consio", latency_ms=60, file=files["base"])
        first = sync(p, org, "consio")
        assert first["created"] == N, first
        req = p.trigger(org, "consio", role="system", trigger="scheduled", wait=False)
        job_id = p.job_of_request(req["request_id"])
        at_page = p.wait_pages(job_id, 5)["pages_done"]
        faultlib.Pipeline.reload(sim, files[change])
        s = p.summary(req["request_id"])
        wrongly = int(p.query(
            "select count(*) from membersync.members where org_id = :'p1' and not active",
            org)[0][0])
        say("consio, %d records %s at page %d: %s, total %s, processed %d, deactivated %d, "
            "issues %s", 30, change, at_page, s["outcome"],
            s["total_count"], s["records_processed"], s["deactivated"],
            json.dumps(p.query("select code, count(*) from membersync.sync_errors where "
                               "job_id = :'p1' group by 1", job_id)))
        # The completeness check saw the source change under it: nobody is
        # deactivated (not even the 30 really removed: the next sync does it).
        assert s["deactivated"] == 0 and wrongly == 0, s
        codes = [r[0] for r in p.query("select code from membersync.sync_errors where "
                                       "job_id = :'p1'", job_id)]
        assert "DEACTIVATION_SKIPPED" in codes, codes
        p.check(org)
        # The next, undisturbed sync deactivates exactly the removed records.
        s2 = sync(p, org, "consio")
        gone = {r[0] for r in p.query("select external_id from membersync.members where "
                                      "org_id = :'p1' and not active", org)}
        if change == "removed":
            assert gone == removed_ids, sorted(gone ^ removed_ids)[:10]
        else:
            assert not gone and s2["created"] == 30, (s2, sorted(gone)[:10])
        say("consio %s: next sync %s, created %d, deactivated %d (%s)", change, s2["outcome"],
            s2["created"], s2["deactivated"], "exactly the removed ones" if change ==
            "removed" else "the inserted ones created, nobody deactivated")
        p.check(org)
    p.stop_roles()


if __name__ == "__main__":
    faultlib.main()
