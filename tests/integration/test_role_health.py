"""Every role serves /livez, /readyz and /metrics on health.port (issue 5,
point 4), and its JSON log lines carry the role and no secrets or member
data."""

import json
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
import mslib  # noqa: E402
from pipeline import Pipeline  # noqa: E402


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def test_roles_serve_probes_and_metrics_and_log_no_secrets(svc):
    p = Pipeline(svc, "health")
    org = "org-%s" % p.tag
    sample = os.path.join(mslib.SOURCE_DIR, "tests", "data", "sample", "cornerstone",
                          "members-v1.json")
    sim = p.sim("cornerstone", file=sample)
    p.integration(org, "cornerstone", sim, page_size=50)
    ports = {}
    for role, args in (("ratelimiter", ()), ("projector", ()), ("relay", ()),
                       ("connector", ("--system", "cornerstone"))):
        ports[role] = mslib.free_port()
        p.env["MEMBERSYNC_HEALTH_PORT"] = str(ports[role])
        p.role(role, *args)
    p.env.pop("MEMBERSYNC_HEALTH_PORT")
    for role, port in ports.items():
        mslib.wait_for(lambda: get(port, "/livez")[0] == 200, 30, "%s /livez" % role)
        mslib.wait_for(lambda: get(port, "/readyz")[0] == 200, 60, "%s /readyz" % role)
    s = p.trigger(org, "cornerstone", role="org_admin")
    assert s["outcome"] == "PARTIAL" and s["created"] == 394, s
    p.wait_status(org, "cornerstone", s["job_id"])
    p.wait_outbox_empty()
    expected = {
        "connector": ['membersync_jobs_total{system="cornerstone",outcome="PARTIAL"} 1',
                      'membersync_records_processed_total{system="cornerstone"} 402',
                      "membersync_member_api_page_seconds_bucket",
                      'membersync_member_api_responses_total{system="cornerstone",status="2xx"}',
                      "membersync_consumer_lag"],
        "ratelimiter": ['membersync_messages_total{role="ratelimiter",result="ok"} 1'],
        "projector": ["membersync_events_projected_total"],
        "relay": ["membersync_events_published_total", "membersync_outbox_depth"],
    }
    for role, needles in expected.items():
        def has_all():
            status, ctype, body = get(ports[role], "/metrics")
            return status == 200 and ctype.startswith("text/plain") and \
                all(n in body for n in needles)
        mslib.wait_for(has_all, 20, "%s metrics %s" % (role, needles))
    # Logs: JSON lines tagged with the role; never the API key or a name.
    names = [r["firstName"] for r in json.load(open(sample))[:50]
             if isinstance(r, dict) and isinstance(r.get("firstName"), str)]
    for key, proc in p.procs.items():
        lines = [l for l in proc.output().splitlines() if l.startswith("{")]
        assert lines, "%s logged nothing" % key
        for line in lines:
            rec = json.loads(line)
            assert rec["role"] and rec["level"] and rec["msg"], line
            assert "test-key" not in line, "%s logged the API key" % key
            for n in names:
                assert '"%s' % n not in line and " %s " % n not in line, \
                    "%s logged a member name: %s" % (key, line)


if __name__ == "__main__":
    mslib.main()
