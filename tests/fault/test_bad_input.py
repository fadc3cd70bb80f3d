"""Stale jobs, bad events and hostile input (issue 4, points 4 to 6):
  - a connector killed for good leaves a job whose heartbeat goes stale; the
    next trigger marks it FAILED "abandoned" and starts a new job, and the
    status row never stays "running";
  - undecodable bytes and unknown schemas on sync-requests, sync-jobs and
    sync-events go to the DLQ with error headers and the consumers move on;
  - forged roles and org mismatches are FORBIDDEN, unknown or disabled
    integrations NOT_CONFIGURED;
  - hostile member records (oversized strings, escaped surrogate pairs,
    \\u0000, wrong types, non-objects, bytes that are not UTF-8) become
    record errors or warnings, never a failed sync or a PostgreSQL error;
  - the offline checker itself finds planted losses, reorderings and
    duplicates (so its "zero" elsewhere means something)."""

import base64
import http.server
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import FaultPipeline, mslib, say, sim_stats  # noqa: E402


def setup(svc, name, system="cornerstone", n=3000, page=100, latency_ms=None, extra_env=None,
          file=None, roles=True):
    p = FaultPipeline(svc, name, extra_env=extra_env)
    org = "org-" + p.tag
    sim = p.sim(system, generate=None if file else n, file=file, seed=3,
                latency_ms=latency_ms)
    p.integration(org, system, sim, page_size=page)
    if roles:
        p.start_roles(system)
    return p, org, sim


# -- stale job ----------------------------------------------------------------

def test_connector_dead_for_good_job_abandoned_on_next_trigger(svc):
    env = {"MEMBERSYNC_RATELIMIT_HEARTBEAT_TTL_S": "3",
           "MEMBERSYNC_CONNECTOR_HEARTBEAT_INTERVAL_MS": "500"}
    # The undisturbed run, for the final members.
    rp, rorg, _ = setup(svc, "staleref")
    ref = rp.trigger(rorg, "cornerstone", role="system", trigger="scheduled")
    ref_members = rp.final_state(rorg, "cornerstone", ref["job_id"])["members"]
    mslib.stop_all_procs()

    p, org, sim = setup(svc, "stale", latency_ms=200, extra_env=env)
    req = p.trigger(org, "cornerstone", role="system", trigger="scheduled", wait=False)
    old = p.job_of_request(req["request_id"])
    p.wait_pages(old, 5)
    p.kill9("connector-cornerstone")
    t_dead = time.monotonic()
    # While the heartbeat is fresh, the job still counts as running.
    dup = p.trigger(org, "cornerstone", role="system", trigger="scheduled", wait=False)
    dec = mslib.wait_for(lambda: p.query("select decision, existing_job_id from "
                                         "membersync.sync_requests where request_id = :'p1'",
                                         dup["request_id"]), 30, "decision")[0]
    assert dec == ("ALREADY_RUNNING", old), dec
    mslib.wait_for(lambda: p.query("select 1 from membersync.sync_jobs where job_id = :'p1' "
                                   "and heartbeat_at < now() - interval '3 s'", old), 30,
                   "heartbeat to go stale", 0.2)
    stale_after = time.monotonic() - t_dead
    again = p.trigger(org, "cornerstone", role="system", trigger="scheduled", wait=False)
    new = p.job_of_request(again["request_id"])
    j = p.job(old)
    assert j["state"] == "FAILED" and j["failure_reason"] == "abandoned", j
    assert j["deactivated"] == 0, j
    # The widget's row: the abandoned job completed FAILED, the new one queued.
    st = p.wait_status(org, "cornerstone", old)
    assert st["last_outcome"] == "FAILED" and st["failure_reason"] == "abandoned", st
    assert st["state"] == "QUEUED" and st["active_job_id"] == new, st
    say("connector killed at page %d; heartbeat stale after %.1fs; the next trigger marked "
        "job %s FAILED \"abandoned\" (%d records kept) and queued %s; status row %s "
        "(last outcome %s)", j["pages_done"], stale_after, old[:8], j["records_processed"],
        new[:8], st["state"], st["last_outcome"])
    # A connector comes back: it skips the abandoned job and runs the new one.
    conn = p.role("connector", "--system", "cornerstone")
    s = p.summary(again["request_id"])
    assert s["outcome"] == "SUCCEEDED", s
    assert "job %s is FAILED: skipped" % old in conn.output()
    got = p.final_state(org, "cornerstone", s["job_id"])
    assert got["members"] == ref_members, (got["members"], ref_members)
    assert got["status"]["state"] == "SUCCEEDED" and got["status"]["active_job_id"] is None
    say("new job %s: created %d, unchanged %d; members equal the undisturbed run",
        s["outcome"], s["created"], s["unchanged"])
    p.check(org)
    p.stop_roles()


# -- bad events -----------------------------------------------------------------

# (label, hex bytes): undecodable, and well-framed but of unknown schemas.
BAD = [
    ("garbage", "deadbeef"),
    ("empty", ""),
    ("single-object, unknown fingerprint", "c301" + "0123456789abcdef" + "0a68656c6c6f"),
    ("confluent, unknown schema id", "000000002a" + "0a68656c6c6f"),
    ("single-object, truncated header", "c301aa"),
]


def test_bad_events_go_to_the_dlq_and_consumers_move_on(svc):
    p, org, sim = setup(svc, "dlq")
    targets = [("sync_requests", org), ("sync_jobs_cornerstone", org),
               ("sync_events", "%s/CORNERSTONE" % org)]
    sent = []
    for topic_key, key in targets:
        for label, hexbytes in BAD:
            p.cli("produce-raw", p.topics[topic_key], key, hexbytes, "ce_type=test.bad")
            sent.append((p.topics[topic_key], key, hexbytes, label))
        # A tombstone (null value) too.
        p.cli("produce-raw", p.topics[topic_key], key, "-")
        sent.append((p.topics[topic_key], key, "", "null value"))
    # The consumers moved on: a real sync behind the bad messages works.
    s = p.trigger(org, "cornerstone", role="system", trigger="scheduled")
    assert s["outcome"] == "SUCCEEDED" and s["created"] == 3000, s
    p.wait_status(org, "cornerstone", s["job_id"])
    p.wait_outbox_empty()
    dlq = p.tail("dlq")
    assert len(dlq) == len(sent), (len(dlq), len(sent))
    got = sorted((d["headers"]["dlq_topic"], d["key"],
                  base64.b64decode(d.get("value_base64", "")).hex()) for d in dlq)
    assert got == sorted((t, k, h) for t, k, h, _ in sent), got
    consumers = {}
    for d in dlq:
        h = d["headers"]
        for name in ("dlq_error", "dlq_topic", "dlq_partition", "dlq_offset",
                     "dlq_consumer"):
            assert h.get(name), (name, h)
        consumers.setdefault(h["dlq_topic"].split(".")[1], set()).add(
            h["dlq_consumer"].split("-", 1)[1])
        assert h["dlq_error"], h
    assert consumers == {"sync-requests": {"ratelimiter"},
                         "sync-jobs": {"connector-cornerstone"},
                         "sync-events": {"projector"}}, consumers
    say("%d bad messages (%d kinds on 3 topics) dead-lettered with error headers by %s; "
        "e.g. \"%s\"", len(dlq), len(BAD) + 1, ", ".join(sorted(
            c for v in consumers.values() for c in v)), dlq[0]["headers"]["dlq_error"][:90])
    rep = p.check(org)
    say("the checker lists the %d undecodable sync-events and counts nothing else",
        rep["undecodable"]["count"])
    assert rep["undecodable"]["count"] == len(BAD) + 1
    p.stop_roles()


def test_decodable_but_impossible_events_go_to_the_dlq(svc):
    """Events that decode but carry what no producer writes: a job id that
    is no UUID, times far outside any calendar.  Retrying them can never
    succeed, so they must be dead-lettered, not retried forever (which
    would stall every event behind them on the partition)."""
    p, org, sim = setup(svc, "dlq2", n=500, page=100)
    key = "%s/CORNERSTONE" % org
    far = 2 ** 62
    rid = "0b7f6c1e-7a39-4f1e-8d3c-2a5b6c7d8e90"
    forged = [
        ("sync_requests", org, "SyncRequested", {
            "request_id": rid, "org_id": org, "integration": "CORNERSTONE",
            "trigger": "SCHEDULED", "requested_by": {"user_id": "x", "role": "SYSTEM",
                                                     "org_id": None},
            "requested_at": far}),
        ("sync_requests", org, "SyncRequested", {
            "request_id": rid.replace("0b7f", "1b7f"), "org_id": org,
            "integration": "CORNERSTONE", "trigger": "SCHEDULED",
            "requested_by": {"user_id": "x", "role": "SYSTEM", "org_id": None},
            "requested_at": -far}),
        ("sync_events", key, "SyncEvent", {
            "event_id": "forged-1", "org_id": org, "integration": "CORNERSTONE",
            "job_id": "not-a-uuid", "request_id": None, "seq": 5, "occurred_at": 1,
            "payload": {"SyncProgress": {"records_processed": 1, "total_estimate": None,
                                         "errors_so_far": 0, "warnings_so_far": 0,
                                         "eta_at": None}}}),
        ("sync_events", key, "SyncEvent", {
            "event_id": "forged-2", "org_id": org, "integration": "CORNERSTONE",
            "job_id": None, "request_id": "r", "seq": 0, "occurred_at": 1,
            "payload": {"SyncRejected": {"reason": "RATE_LIMITED", "message": "m",
                                         "next_allowed_at": far,
                                         "existing_job_id": None}}}),
    ]
    for topic_key, k, schema, value in forged:
        p.cli("produce-raw", p.topics[topic_key], k, "avro:%s:%s" % (schema, json.dumps(value)),
              "ce_id=%s" % value.get("event_id", value.get("request_id")))
    # Real work behind them on the same partitions completes.
    s = p.trigger(org, "cornerstone", role="system", trigger="scheduled", timeout=120)
    assert s["outcome"] == "SUCCEEDED", s
    st = p.wait_status(org, "cornerstone", s["job_id"])
    assert st["state"] == "SUCCEEDED", st
    p.wait_outbox_empty()
    # The impossible SyncEvents are dead-lettered by the projector ...
    dlq = p.tail("dlq")
    errors = sorted(d["headers"]["dlq_error"] for d in dlq)
    say("%d impossible SyncEvents dead-lettered by %s: %s", len(dlq),
        ", ".join(sorted({d["headers"]["dlq_consumer"].split("-", 1)[1] for d in dlq})),
        "; ".join(errors))
    assert len(dlq) == 2 and all(d["headers"]["dlq_topic"] == p.topics["sync_events"]
                                 for d in dlq), errors
    # ... and the impossible requests answered INVALID (the org learns of
    # it), with no decision row: there is nothing valid to record.
    invalid = [e["value"] for e in p.tail("sync_events")
               if e["value"]["request_id"] in (rid, rid.replace("0b7f", "1b7f"))]
    assert sorted(v["payload"]["SyncRejected"]["reason"] for v in invalid) == [
        "INVALID", "INVALID"], invalid
    say("2 requests with requested_at out of range answered INVALID: \"%s\"",
        invalid[0]["payload"]["SyncRejected"]["message"])
    assert not p.query("select 1 from membersync.sync_requests where request_id in "
                       "(:'p1', :'p2')", rid, rid.replace("0b7f", "1b7f"))
    p.check(org)
    p.stop_roles()


def test_forged_roles_and_unknown_integrations_are_rejected(svc):
    p, org, sim = setup(svc, "authz", n=100)
    p.cli("integration", "set", "--org", org + "-off", "--system", "cornerstone",
          "--base-url", sim.url, "--credentials-ref", "env:MS_TEST_CS_KEY", "--enabled",
          "false")
    cases = [
        ("org_admin of another org", dict(org=org, role="org_admin", actor_org="other"),
         "FORBIDDEN"),
        ("global_admin naming an org", dict(org=org, role="global_admin", actor_org=org),
         "FORBIDDEN"),
        ("system naming an org", dict(org=org, role="system", actor_org="x"), "FORBIDDEN"),
        ("unknown org", dict(org="no-such-" + p.tag, role="global_admin"), "NOT_CONFIGURED"),
        ("disabled integration", dict(org=org + "-off", role="global_admin"),
         "NOT_CONFIGURED"),
        ("unconfigured system", dict(org=org, system="consio", role="global_admin"),
         "NOT_CONFIGURED"),
    ]
    for label, kw, want in cases:
        system = kw.pop("system", "cornerstone")
        r = p.trigger(kw.pop("org"), system, **kw)
        assert r["decision"] == want, (label, r)
        say("%s: %s (%s)", label, r["decision"], r.get("message", ""))
    assert p.query("select count(*) from membersync.sync_jobs") == [("0",)]
    st = mslib.wait_for(lambda: (lambda s: s if s and s.get("last_rejection") else None)(
        p.status_row(org, "consio")), 30, "rejection on the status row")
    assert st["last_rejection"]["reason"] == "NOT_CONFIGURED", st
    ok = p.trigger(org, "cornerstone", role="org_admin")
    assert ok["outcome"] == "SUCCEEDED", ok
    p.check()
    p.stop_roles()


# -- hostile member records -------------------------------------------------------

def hostile_records():
    """Cornerstone records that try every way of breaking a sync.  Returns
    (records, expected error codes by id, ids expected to sync)."""
    def rec(i, **kw):
        r = {"id": "h-%d" % i, "memberNumber": "9%05d" % i, "firstName": "Kari",
             "lastName": "Nordmann", "email": "kari%d@example.no" % i,
             "mobilePhone": "48247716", "dateOfBirth": "1980-02-03",
             "localAssociation": {"id": "LA-1", "name": "Lokallag"},
             "membershipStatus": "Active", "membershipValidFrom": "2019-01-01",
             "membershipValidTo": None, "roles": ["PeerMentor"],
             "lastModified": "2026-05-23T18:52:05Z"}
        r.update(kw)
        return r
    big = "Å" * 100000
    records = [
        rec(1),
        rec(2, firstName=big, lastName="x" * 5000),                  # TRUNCATED x2
        rec(3, firstName="\U0001F600 Smile", lastName="Ha\u0301kon"),   # surrogate pair, NFC
        rec(4, firstName="Ka\u0000ri", lastName="\u0000", email="a\u0000b@example.no"),
        rec(5, memberNumber="\u0000"),                               # MALFORMED (control)
        {"id": "h-6\u0000x", "memberNumber": "1"},                    # MALFORMED id
        rec(7, memberNumber="9" * 5000),                             # MALFORMED (too long)
        {"id": "i" * 300, "memberNumber": "1", "firstName": "A"},    # MALFORMED id (too long)
        rec(9, email="x" * 100000 + "@example.no", mobilePhone="1" * 10000,
            dateOfBirth="\u0000" * 10),                              # warnings
        rec(10, roles=["PeerMentor", "\u0000", "x" * 10000, {"a": 1}]),
        rec(11, firstName={"nested": [1, 2, {"deep": True}]}),     # MALFORMED type
        rec(12, membershipStatus="Activ\u0000e"),                    # INVALID_STATUS
        rec(13, localAssociation={"id": "\u0000", "name": "N\u0000"}),
        "just a string", None, 42, [1, 2],                           # MISSING_ID
        rec(14, lastModified="\u0000"),
        rec(1),                                                      # DUPLICATE_ID
        rec(15, firstName="\ud83d\ude00", lastName=""),              # a name of one emoji
    ]
    return records


def test_hostile_member_records_become_errors_and_warnings(svc):
    p, org, sim = setup(svc, "hostile", file=os.path.join(
        mslib.SOURCE_DIR, "tests", "data", "sample", "cornerstone", "members-v1.json"),
        page=7)
    path = os.path.join(mslib._log_dir(), "%s-hostile.json" % p.tag)
    with open(path, "w") as f:
        json.dump(hostile_records(), f)
    faultlib.Pipeline.reload(sim, path)
    s = p.trigger(org, "cornerstone", role="system", trigger="scheduled")
    say("hostile records: %s, processed %d, synced %d, errors %s, warnings %s",
        s["outcome"], s["records_processed"], s["records_synced"],
        json.dumps(s["errors_by_code"]), json.dumps(s["warnings_by_code"]))
    assert s["outcome"] == "PARTIAL", s
    assert s["records_processed"] == len(hostile_records()), s
    # Ids with control characters or over 255 bytes are unusable ids
    # (MISSING_ID), like the four records that are not objects.
    assert s["errors_by_code"] == {"DUPLICATE_ID": 1, "INVALID_STATUS": 1, "MALFORMED": 4,
                                   "MISSING_ID": 6}, s
    assert s["warnings_by_code"] == {"INVALID_DATE": 1, "INVALID_EMAIL": 2,
                                     "INVALID_PHONE": 1, "TRUNCATED": 2,
                                     "UNKNOWN_ROLE": 3}, s
    assert s["records_synced"] == 8, s
    rows = dict(p.query("select external_id, data->>'given_name' from membersync.members "
                        "where org_id = :'p1'", org))
    assert rows["h-3"] == "\U0001F600 Smile", rows["h-3"]
    assert rows["h-4"] == "Ka ri", rows["h-4"]
    assert len(rows["h-2"]) == 200, len(rows["h-2"])
    p.check(org)
    # Bytes that are not UTF-8 (a Latin-1 "ø" from an old system) can only
    # come on the wire: a minimal Cornerstone server serves them.
    body = (b'{"data":[' + json.dumps(hostile_records()[0]).encode() + b',' +
            json.dumps(dict(hostile_records()[0], id="h-latin1")).encode().replace(
                b'"Nordmann"', b'"Nordm\xf8nn"') + b'],"nextCursor":null,"totalCount":2}')

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        org2 = org + "-latin1"
        p.cli("integration", "set", "--org", org2, "--system", "cornerstone", "--base-url",
              "http://127.0.0.1:%d" % srv.server_address[1], "--credentials-ref",
              "env:MS_TEST_CS_KEY", "--page-size", "10", "--max-rps", "0")
        s2 = p.trigger(org2, "cornerstone", role="system", trigger="scheduled")
    finally:
        srv.shutdown()
    say("a page with non-UTF-8 bytes in one record: %s, synced %d, errors %s, reason %s",
        s2["outcome"], s2["records_synced"], json.dumps(s2["errors_by_code"]),
        s2["failure_reason"])
    p.check(org2)
    # The gateway replaces the bad bytes so the page parses, and the record
    # rules make that one record MALFORMED; the other record syncs.
    assert s2["outcome"] == "PARTIAL", s2
    assert s2["records_synced"] == 1, s2
    assert s2["errors_by_code"].get("MALFORMED") == 1, s2
    assert p.query("select count(*) from membersync.sync_errors e join membersync.sync_jobs j "
                   "using (job_id) where j.org_id = :'p1' and e.code = 'MALFORMED' and "
                   "e.external_id = 'h-latin1'", org2)[0][0] == "1"
    p.stop_roles()


# -- the checker finds what it must ------------------------------------------------

def test_checker_finds_planted_loss_reordering_and_duplicates(svc):
    p, org, sim = setup(svc, "chk", n=600, page=50, latency_ms=150,
                        extra_env={"MEMBERSYNC_CONNECTOR_PROGRESS_INTERVAL_MS": "0"})
    req = p.trigger(org, "cornerstone", role="system", trigger="scheduled", wait=False)
    job_id = p.job_of_request(req["request_id"])
    # Once the job runs, the relay goes: the job's later events wait in the
    # outbox, where the test plants the faults the checker must find.
    p.wait_pages(job_id, 1)
    p.kill9("relay")
    s = p.summary(req["request_id"])
    ev = p.query("select id from membersync.outbox where headers->>'ce_type' like "
                 "'membersync.Sync%' and key = :'p1' order by id", "%s/CORNERSTONE" % org)
    mc = p.query("select id from membersync.outbox where headers->>'ce_type' = "
                 "'membersync.MemberChanged' order by id")
    assert len(ev) >= 5 and len(mc) >= 30, (len(ev), len(mc))
    p.query("begin; update membersync.outbox set id = -1 where id = :'p1'; "
            "update membersync.outbox set id = :'p1' where id = :'p2'; "
            "update membersync.outbox set id = :'p2' where id = -1; "
            "delete from membersync.outbox where id = :'p3'; "
            "delete from membersync.outbox where id = :'p4'; "
            "insert into membersync.outbox(topic, key, value, headers) select topic, key, "
            "value, headers from membersync.outbox where id = :'p5'; commit; select 1",
            ev[1][0], ev[3][0], ev[2][0], mc[10][0], mc[20][0])
    p.role("relay")
    rep = p.check(org, expect_clean=False)
    say("planted: two SyncEvents swapped, one SyncEvent and one MemberChanged deleted, one "
        "MemberChanged duplicated -> lost %d, out of order %d, duplicates %d",
        rep["lost"]["count"], rep["out_of_order"]["count"], rep["duplicates"]["count"])
    whats = sorted({i["what"] for i in rep["lost"]["items"]})
    assert "sync_event_seq" in whats and "member_changed" in whats, rep["lost"]
    assert "member_changed_count" in whats, rep["lost"]
    assert rep["out_of_order"]["count"] >= 1, rep["out_of_order"]
    # At least the planted one (killing the relay may add real duplicates).
    assert rep["member_changes"]["duplicates"] >= 1, rep
    cp = mslib.run([mslib.bin_path("membersync-check"), "--pg", "--org", org], env=p.env,
                   check=False)
    assert cp.returncode == 1, cp.returncode
    assert s["created"] == 600
    p.stop_roles()


if __name__ == "__main__":
    faultlib.main()
