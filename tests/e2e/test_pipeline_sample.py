"""End to end on real input (issue 2, point 9): for each dataset folder, the
v1 export then the v2 export through the whole pipeline on the real broker
and PostgreSQL, compared with the folder's expected.json; plus the rate
limit, dedupe and authorization decisions.

Dataset folders come from MEMBERSYNC_E2E_DATASET (folders separated by ':'),
default: the project's copy of the sample (tests/data/sample/*)."""

import collections
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import mslib  # noqa: E402
from pipeline import Pipeline  # noqa: E402

COUNT_KEYS = ("records_processed", "created", "updated", "unchanged", "deactivated",
              "error_count", "warning_count", "records_synced", "total_count", "outcome",
              "errors_by_code", "warnings_by_code")


def datasets():
    raw = os.environ.get("MEMBERSYNC_E2E_DATASET", "")
    if raw.strip():
        return [d for d in raw.split(":") if d]
    base = os.path.join(mslib.SOURCE_DIR, "tests", "data", "sample")
    return [os.path.join(base, d) for d in sorted(os.listdir(base))]


def compare(label, summary, expected):
    got = {k: summary.get(k) for k in COUNT_KEYS}
    want = {k: expected.get(k) for k in COUNT_KEYS}
    if got != want:
        diff = {k: (got[k], want[k]) for k in COUNT_KEYS if got[k] != want[k]}
        raise AssertionError("%s: counts differ (got, expected): %s" % (label, diff))
    print("  %s: %s" % (label, ", ".join("%s=%s" % (k, got[k]) for k in COUNT_KEYS
                                           if not k.endswith("_by_code"))), flush=True)


def check_status_row(p, org, system, summary):
    row = p.wait_status(org, system, summary["job_id"])
    for k in ("created", "updated", "unchanged", "deactivated", "error_count",
              "warning_count", "records_synced"):
        assert row[k] == summary[k], "status row %s=%s, job says %s" % (k, row[k], summary[k])
    assert row["state"] == summary["outcome"] and row["last_outcome"] == summary["outcome"]
    assert row["last_records_processed"] == summary["records_processed"]
    assert row["last_sync_at"], "status row has no last_sync_at"
    assert row["active_job_id"] is None


def member_changes_by_job(p):
    p.wait_outbox_empty()
    events = p.tail("member_changes")
    by_job = collections.defaultdict(list)
    for e in events:
        v = e["value"]
        assert e["key"] == "%s/%s/%s" % (v["org_id"], v["integration"], v["external_id"])
        assert e["headers"]["ce_id"] == v["event_id"]
        assert e["headers"]["ce_type"] == "membersync.MemberChanged"
        by_job[v["job_id"]].append(v)
    return by_job


def check_changes(events, summary):
    ops = collections.Counter(e["op"] for e in events)
    want = {"CREATED": summary["created"], "UPDATED": summary["updated"],
            "DEACTIVATED": summary["deactivated"]}
    assert dict(ops) == {k: v for k, v in want.items() if v}, \
        "MemberChanged ops %s, expected %s" % (dict(ops), want)
    ids = [e["external_id"] for e in events]
    assert len(ids) == len(set(ids)), "more than one MemberChanged for a member in one job"
    for e in events:
        if e["op"] == "CREATED":
            assert e["before"] is None and e["after"]["external_id"] == e["external_id"]
        elif e["op"] == "UPDATED":
            assert e["before"] and e["after"] and e["changed_fields"], e["external_id"]
            for f in e["changed_fields"]:
                assert e["before"][f] != e["after"][f], (e["external_id"], f)
        else:
            assert e["before"] and e["after"] is None


def iso_ms(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_sample_datasets_v1_then_v2_match_expected(svc):
    for folder in datasets():
        with open(os.path.join(folder, "expected.json")) as f:
            expected = json.load(f)
        system = expected["system"]
        print("dataset %s (%s)" % (os.path.basename(os.path.normpath(folder)), system),
              flush=True)
        p = Pipeline(svc, "samp")
        org = "org-%s" % p.tag
        sim = p.sim(system, file=os.path.join(folder, "members-v1.json"))
        p.integration(org, system, sim, page_size=50)
        p.start_roles(system)

        first = p.trigger(org, system, role="org_admin")
        compare("v1", first, expected["v1"])
        check_status_row(p, org, system, first)

        # A second manual trigger inside the window is refused and names the
        # time the window opens: the accepted trigger's time + 300 s.
        again = p.trigger(org, system, role="org_admin")
        assert again["decision"] == "RATE_LIMITED", again
        queued_at = p.query("select to_char(queued_at at time zone 'UTC', "
                            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') from membersync.sync_jobs "
                            "where job_id = :'p1'", first["job_id"])[0][0]
        delta = iso_ms(again["next_allowed_at"]) - iso_ms(queued_at)
        assert delta == datetime.timedelta(seconds=300), delta
        print("  rate limited until %s (accepted at %s)" % (again["next_allowed_at"],
                                                              queued_at), flush=True)

        Pipeline.reload(sim, os.path.join(folder, "members-v2.json"))
        second = p.trigger(org, system, role="system", trigger="scheduled")
        compare("v2", second, expected["v2"])
        check_status_row(p, org, system, second)

        changes = member_changes_by_job(p)
        check_changes(changes[first["job_id"]], first)
        check_changes(changes[second["job_id"]], second)
        print("  member-changes: v1 %d events, v2 %d events" % (
            len(changes[first["job_id"]]), len(changes[second["job_id"]])), flush=True)


def test_trigger_while_running_is_already_running_and_other_org_admin_forbidden(svc):
    p = Pipeline(svc, "dedupe")
    org = "org-%s" % p.tag
    # Slow enough to still be running when the second trigger arrives.
    sim = p.sim("consio", generate=2000, seed=3, latency_ms=150)
    p.integration(org, "consio", sim, page_size=50)
    p.start_roles("consio")
    first = p.trigger(org, "consio", role="system", trigger="scheduled", wait=False)
    job = mslib.wait_for(lambda: p.query(
        "select job_id from membersync.sync_jobs where request_id = :'p1' "
        "and state = 'RUNNING'", first["request_id"]), 60, "job to run")[0][0]
    dup = p.trigger(org, "consio", role="global_admin")
    assert dup["decision"] == "ALREADY_RUNNING", dup
    assert dup["existing_job_id"] == job, (dup, job)
    forbidden = p.trigger(org, "consio", role="org_admin", actor_org="another-org")
    assert forbidden["decision"] == "FORBIDDEN", forbidden
    unknown = p.trigger("no-such-org", "consio", role="global_admin")
    assert unknown["decision"] == "NOT_CONFIGURED", unknown
    # Neither refusal moved the manual window: the job finishes, and a manual
    # trigger is then accepted.
    mslib.wait_for(lambda: p.query("select 1 from membersync.sync_jobs where job_id = :'p1' "
                                   "and state in ('SUCCEEDED', 'PARTIAL')", job), 120,
                   "first job to finish")
    manual = p.trigger(org, "consio", role="org_admin")
    assert manual["outcome"] == "SUCCEEDED" and manual["unchanged"] == 2000, manual
    print("  ALREADY_RUNNING named job %s; FORBIDDEN and NOT_CONFIGURED refused" % job)


if __name__ == "__main__":
    mslib.main()
