"""A membersync pipeline for tests: its own database, topics and consumer
groups on the shared broker and PostgreSQL, the roles as child processes,
and member API simulators.  Python stdlib only; builds on mslib.

    p = Pipeline(svc)                  # fresh DB, topics, groups; migrated
    sim = p.sim("cornerstone", file=...)   # membersync-sim child
    p.integration("org-1", "cornerstone", sim)
    p.start_roles("cornerstone")       # ratelimiter, projector, relay, connector
    summary = p.trigger("org-1", "cornerstone", role="org_admin")
"""

import json
import os
import re
import secrets
import subprocess

import mslib


class Pipeline:
    def __init__(self, svc, name="e2e", extra_env=None):
        self.svc = svc
        self.tag = "%s%s" % (name, secrets.token_hex(4))
        self.dsn = svc.fresh_database(self.tag)
        self.topics = {
            "sync_requests": "%s.sync-requests" % self.tag,
            "sync_jobs_cornerstone": "%s.sync-jobs.cornerstone" % self.tag,
            "sync_jobs_consio": "%s.sync-jobs.consio" % self.tag,
            "sync_events": "%s.sync-events" % self.tag,
            "member_changes": "%s.member-changes" % self.tag,
            "dlq": "%s.dlq" % self.tag,
        }
        self.env = dict(os.environ)
        self.env.update(svc.membersync_env(dsn=self.dsn, group_prefix=self.tag,
                                           topics=self.topics))
        self.env.update(extra_env or {})
        self.env.setdefault("MEMBERSYNC_LOG_LEVEL", "info")
        self.procs = {}
        self.sims = []
        self.cli("migrate")
        self.cli("topics", "create")

    # -- processes ---------------------------------------------------------
    def cli(self, *args, check=True, timeout=600):
        return mslib.run([mslib.bin_path()] + list(args), env=self.env, check=check,
                         timeout=timeout)

    def role(self, name, *args):
        key = name if not args else "%s-%s" % (name, args[-1])
        p = mslib.Proc([mslib.bin_path(), name] + list(args), name="%s-%s" % (self.tag, key),
                       env=self.env)
        self.procs[key] = p
        return p

    def start_roles(self, *systems):
        for r in ("ratelimiter", "projector", "relay"):
            if r not in self.procs or not self.procs[r].alive:
                self.role(r)
        for s in systems:
            self.role("connector", "--system", s)

    def sim(self, system, file=None, generate=None, seed=1, page_size=None, latency_ms=None,
            faults=()):
        argv = [mslib.bin_path("membersync-sim"), "--system", system, "--port", "0"]
        if file:
            argv += ["--file", file]
        if generate:
            argv += ["--generate", str(generate), "--seed", str(seed)]
        if page_size:
            argv += ["--page-size", str(page_size)]
        if latency_ms:
            argv += ["--latency-ms", str(latency_ms)]
        for f in faults:
            argv += ["--fault", f]
        p = mslib.Proc(argv, name="%s-sim-%s-%d" % (self.tag, system, len(self.sims)),
                       env=self.env)
        m = p.wait_log(r"listening on [0-9.]+:(\d+)")
        p.url = "http://127.0.0.1:%s" % m.group(1)
        self.sims.append(p)
        return p

    def integration(self, org, system, sim, page_size=100, max_rps=0):
        """Configures org's integration against a simulator; the simulator's
        default credentials are passed by environment reference."""
        if system == "cornerstone":
            self.env["MS_TEST_CS_KEY"] = "test-key"
            ref = "env:MS_TEST_CS_KEY"
        else:
            self.env["MS_TEST_CONSIO_CRED"] = "test-client:test-secret"
            ref = "env:MS_TEST_CONSIO_CRED"
        self.cli("integration", "set", "--org", org, "--system", system, "--base-url", sim.url,
                 "--credentials-ref", ref, "--page-size", str(page_size), "--max-rps",
                 str(max_rps))

    @staticmethod
    def reload(sim, path):
        import urllib.request
        req = urllib.request.Request("%s/admin/reload?file=%s" % (sim.url, path), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    # -- triggers and reads ------------------------------------------------
    def trigger(self, org, system, role="org_admin", trigger="manual", actor_org=None,
                wait=True, timeout=600, request_id=None):
        args = ["trigger", "--org", org, "--integration", system, "--role", role,
                "--trigger", trigger, "--json", "--timeout", str(timeout)]
        if actor_org:
            args += ["--actor-org", actor_org]
        if request_id:
            args += ["--request-id", request_id]
        if wait:
            args.append("--wait")
        cp = self.cli(*args, check=False, timeout=timeout + 30)
        if cp.returncode not in (0, 1, 3):
            raise AssertionError("trigger failed (%d): %s" % (cp.returncode, cp.stderr))
        return json.loads(cp.stdout.strip().splitlines()[-1])

    def query(self, sql, *params):
        return mslib.query(sql, *params, dsn=self.dsn)

    def status_row(self, org, integration):
        rows = self.query(
            "select row_to_json(s)::text from membersync.sync_status s "
            "where org_id = :'p1' and integration = :'p2'", org, integration.upper())
        return json.loads(rows[0][0]) if rows else None

    def wait_status(self, org, integration, job_id, timeout=60):
        def done():
            s = self.status_row(org, integration)
            return s if s and s.get("last_job_id") == job_id else None
        return mslib.wait_for(done, timeout, "status row of job %s" % job_id)

    def tail(self, topic_key, idle_ms=3000):
        """Every event on one of this pipeline's topics, decoded."""
        cp = self.cli("tail", self.topics[topic_key], "--timeout-ms", str(idle_ms))
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def outbox_depth(self):
        return int(mslib.query_value("select count(*) from membersync.outbox", dsn=self.dsn))

    def wait_outbox_empty(self, timeout=120):
        mslib.wait_for(lambda: self.outbox_depth() == 0, timeout, "outbox to drain")
