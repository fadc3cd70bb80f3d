"""The status HTTP API (`membersync api`, DESIGN 8) against the real pipeline:
a real Kafka broker and PostgreSQL (tests/harness/services.sh, or the ones in
MS_KAFKA_BOOTSTRAP / MS_PG_DSN), the rate limiter, projector, relay and both
connectors, and `membersync-sim` member systems.  No browser: Python's
urllib and http.client only; JWTs are minted here with hmac/hashlib.

Isolation: a fresh database, topics and consumer groups of its own, and a
fresh org id per run, so other tests sharing the services do not matter.

`ApiStack` is also used by tests/e2e/test_widget.py."""

import base64
import hashlib
import hmac
import http.client
import json
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
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
import mslib  # noqa: E402

SOURCE_DIR = mslib.SOURCE_DIR
SAMPLE = os.path.join(SOURCE_DIR, "tests", "data", "sample")
TOPIC_KEYS = {
    "sync_requests": "sync-requests",
    "sync_jobs_cornerstone": "sync-jobs.cornerstone",
    "sync_jobs_consio": "sync-jobs.consio",
    "sync_events": "sync-events",
    "member_changes": "member-changes",
    "dlq": "dlq",
}
TOPIC_PARTITIONS = {"sync_requests": 3, "sync_jobs_cornerstone": 3, "sync_jobs_consio": 3,
                    "sync_events": 3, "member_changes": 3, "dlq": 1}
CS_KEY = "cs-test-key-" + secrets.token_hex(4)
CX_ID, CX_SECRET = "consio-client", "cx-secret-" + secrets.token_hex(4)


# ------------------------------------------------------------------ tokens

def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(secret, claims, alg="HS256", header=None, sign_key=None):
    """A compact JWT.  alg HS256/HS384/HS512 sign with sign_key or secret;
    "none" has an empty signature; anything else gets a random one."""
    hdr = {"alg": alg, "typ": "JWT"}
    hdr.update(header or {})
    signing_input = b64url(json.dumps(hdr)) + "." + b64url(json.dumps(claims))
    key = sign_key if sign_key is not None else secret
    if isinstance(key, str):
        key = key.encode()
    digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    if alg in digests:
        sig = b64url(hmac.new(key, signing_input.encode(), digests[alg]).digest())
    elif alg == "none":
        sig = ""
    else:
        sig = b64url(secrets.token_bytes(256))
    return signing_input + "." + sig


def claims(sub, org, role="org_admin", ttl=3600, **extra):
    c = {"sub": sub, "role": role, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    if org is not None:
        c["org_id"] = org
    c.update(extra)
    return c


# -------------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


def request(method, url, token=None, headers=None, timeout=15):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, method=method, headers=h,
                                 data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def raw_get(base, path, timeout=10):
    """GET with the path sent exactly as given (no client normalization)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


class Sse:
    """A Server-Sent Events client on http.client (chunked decoding
    included); next() returns {"event", "id", "data"} or {"comment"}."""

    def __init__(self, url, token=None, headers=None, timeout=30):
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        h = {"Accept": "text/event-stream"}
        h.update(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        self.conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self, timeout=30):
        self.conn.sock.settimeout(timeout)
        ev = {}
        data = []
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("stream closed")
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data or "event" in ev:
                    ev["data"] = "\n".join(data)
                    return ev
                continue
            if line.startswith(":"):
                if not ev and not data:
                    return {"comment": line[1:].strip()}
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field in ("event", "id", "retry"):
                ev[field] = value

    def next_status(self, timeout=30):
        """The next `status` event's document (comments skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no status event within %ss" % timeout)
            ev = self.next(left)
            if ev.get("event") == "status":
                doc = json.loads(ev["data"])
                doc["_id"] = ev.get("id")
                return doc

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - already closed
            pass
        self.conn.close()


# ------------------------------------------------------------------- stack

class ApiStack:
    """Everything behind the widget, isolated for one test module: a fresh
    database, own topics and consumer groups, the pipeline roles, member
    system simulators and the api.  Every process dies with stop(), also when
    the test fails (and with the test process: mslib.Proc's parent-death
    signal)."""

    def __init__(self, svc, prefix):
        self.svc = svc
        self.tag = "%s%s" % (prefix, secrets.token_hex(3))
        self.procs = []
        self.dsn = svc.fresh_database("t_" + prefix)
        self.topics = {k: "%s.%s.v1" % (self.tag, v) for k, v in TOPIC_KEYS.items()}
        svc.create_topics({self.topics[k]: TOPIC_PARTITIONS[k] for k in TOPIC_KEYS})
        self.env = svc.membersync_env(dsn=self.dsn, group_prefix=self.tag, topics=self.topics)
        self.env.update({"MS_TEST_CS_KEY": CS_KEY, "MS_TEST_CX_CRED": "%s:%s" % (CX_ID, CX_SECRET),
                         "MEMBERSYNC_LOG_LEVEL": "info"})
        self.workdir = tempfile.mkdtemp(prefix="msapi-")
        self.secret = secrets.token_urlsafe(48)
        self.secret_file = os.path.join(self.workdir, "jwt-secret")
        with open(self.secret_file, "w") as f:
            f.write(self.secret + "\n")
        self.cli("migrate")
        self.base = None

    # processes ---------------------------------------------------------
    def proc(self, name, argv, env=None):
        full = dict(self.env)
        full.update(env or {})
        p = mslib.Proc(argv, name=name, env=full)
        # The module-level cleanup of mslib.main is not used here: the stack
        # outlives single tests and stop() ends its processes.
        if p in mslib._procs:
            mslib._procs.remove(p)
        self.procs.append(p)
        return p

    def cli(self, *args, timeout=60):
        return mslib.run([mslib.bin_path("membersync")] + list(args), env=self.env,
                         timeout=timeout)

    def sim(self, system, file=None, generate=None, seed=1, page_size=100, latency_ms=0):
        argv = [mslib.bin_path("membersync-sim"), "--system", system, "--port", "0",
                "--bind", "127.0.0.1", "--page-size", page_size, "--latency-ms", latency_ms,
                "--api-key", CS_KEY, "--client-id", CX_ID, "--client-secret", CX_SECRET,
                "--log-level", "warn"]
        argv += ["--file", file] if file else ["--generate", generate, "--seed", seed]
        p = self.proc("sim-%s" % system, argv)
        m = p.wait_log(r"membersync-sim listening on (\S+):(\d+)", timeout=30)
        host = m.group(1).strip("[]")
        return "http://%s:%s" % (host, m.group(2))

    def integration(self, org, system, base_url, page_size=100, name=None):
        args = ["integration", "set", "--org", org, "--system", system, "--base-url", base_url,
                "--credentials-ref", "env:MS_TEST_CS_KEY" if system == "cornerstone"
                else "env:MS_TEST_CX_CRED", "--page-size", str(page_size)]
        if name is not None:
            args += ["--name", name]
        self.cli(*args)

    def start_roles(self):
        b = mslib.bin_path("membersync")
        roles = [self.proc("ratelimiter", [b, "ratelimiter"]),
                 self.proc("projector", [b, "projector"]),
                 self.proc("relay", [b, "relay"]),
                 self.proc("connector-cornerstone", [b, "connector", "--system", "cornerstone"]),
                 self.proc("connector-consio", [b, "connector", "--system", "consio"])]
        for p in roles:
            if p.name != "relay":
                p.wait_log(r"assigned \d+ partition", timeout=60)

    def start_api(self, env=None, cors="http://allowed.example"):
        port = mslib.free_port()
        e = {"MEMBERSYNC_API_LISTEN": "127.0.0.1:%d" % port,
             "MEMBERSYNC_API_JWT_HS256_SECRET_FILE": self.secret_file,
             "MEMBERSYNC_API_CORS_ALLOW_ORIGINS": cors}
        e.update(env or {})
        p = self.proc("api", [mslib.bin_path("membersync"), "api"], env=e)
        base = "http://127.0.0.1:%d" % port
        mslib.wait_for(lambda: request("GET", base + "/readyz", timeout=2).status == 200, 30,
                       "api /readyz")
        p.base = base
        return p

    def stop(self):
        for p in reversed(self.procs):
            try:
                p.stop(timeout=10)
            except Exception:  # noqa: BLE001 - cleanup goes on
                pass
        self.procs = []
        if self.dsn:
            # The shared PostgreSQL keeps no leftovers of this module.
            m = re.findall(r"dbname=(\S+)", self.dsn)
            name = m[-1] if m else urllib.parse.urlsplit(self.dsn).path.lstrip("/")
            try:
                mslib.psql('drop database if exists :"name" with (force)', dsn=self.svc.pg_dsn,
                           name=name)
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                sys.stderr.write("dropping %s failed: %s\n" % (name, e))
            self.dsn = None

    def dump_logs(self, n=25):
        for p in self.procs:
            sys.stderr.write("--- last lines of %s (%s):\n%s\n" % (p.name, p.log, p.tail(n)))

    # api helpers ------------------------------------------------------
    def token(self, sub, org, role="org_admin", **kw):
        return mint(self.secret, claims(sub, org, role, **kw))

    def query(self, sql, *params):
        return mslib.query(sql, *params, dsn=self.dsn)


def api_path(org, integ=None, *rest):
    p = "/api/v1/orgs/%s/integrations" % org
    if integ:
        p += "/" + integ
    for r in rest:
        p += "/" + r
    return p


# ----------------------------------------------------------------- fixture

class Ctx:
    pass


CTX = Ctx()


def setup(svc, holder):
    st = ApiStack(svc, "api")
    holder["stack"] = CTX.stack = st
    CTX.org = "org-%s" % st.tag          # cornerstone (sample file) + consio
    CTX.org2 = "org2-%s" % st.tag        # cornerstone only
    CTX.cs_sim = st.sim("cornerstone", file=os.path.join(SAMPLE, "cornerstone", "members-v1.json"),
                        page_size=50)
    CTX.cx_sim = st.sim("consio", generate=300, seed=5, page_size=100, latency_ms=100)
    st.integration(CTX.org, "cornerstone", CTX.cs_sim, page_size=50, name="Cornerstone")
    st.integration(CTX.org, "consio", CTX.cx_sim, page_size=100)
    st.integration(CTX.org2, "cornerstone", CTX.cs_sim, page_size=50)
    st.start_roles()
    CTX.api = st.start_api()
    CTX.base = CTX.api.base
    CTX.admin = st.token("alice", CTX.org)
    CTX.admin2 = st.token("bob", CTX.org2)
    CTX.global_admin = st.token("root", "hq", role="global_admin")


def url(path):
    return CTX.base + path


def wait_job_done(org, integ, timeout=90):
    def done():
        r = request("GET", url(api_path(org, integ, "sync")), CTX.global_admin)
        d = r.json()
        return d if d["state"] in ("SUCCEEDED", "PARTIAL", "FAILED") and d["last_job_id"] else None
    return mslib.wait_for(done, timeout, "%s/%s to finish" % (org, integ), interval=0.3)


# ------------------------------------------------------------------- tests

def test_health_endpoints():
    r = request("GET", url("/livez"))
    assert r.status == 200 and r.json()["status"] == "ok", r
    r = request("GET", url("/readyz"))
    assert r.status == 200 and r.json()["status"] == "ok", r
    r = request("GET", url("/metrics"))
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain"), r.headers
    text = r.body.decode()
    assert re.search(r'^membersync_api_http_responses_total\{code="200"\} \d+$', text, re.M), text
    assert re.search(r"^membersync_api_sse_clients \d+$", text, re.M), text


def test_no_token_is_401_with_json_body():
    for path in (api_path(CTX.org), api_path(CTX.org, "cornerstone", "sync")):
        r = request("GET", url(path))
        assert r.status == 401, r
        assert r.json()["error"] == "unauthorized", r
        assert r.header("WWW-Authenticate", ).startswith("Bearer"), r.headers
    r = request("POST", url(api_path(CTX.org, "cornerstone", "sync")))
    assert r.status == 401, r
    r = request("GET", url(api_path(CTX.org)), headers={"Authorization": "Basic YTpi"})
    assert r.status == 401, r


def test_bad_tokens_are_401():
    st = CTX.stack
    good = claims("alice", CTX.org)
    cases = {
        "alg none": mint(st.secret, good, alg="none"),
        "alg none, capitalised": mint(st.secret, good, alg="None"),
        "wrong alg HS512": mint(st.secret, good, alg="HS512"),
        "RS256 not configured": mint(st.secret, good, alg="RS256"),
        "expired": mint(st.secret, claims("alice", CTX.org, ttl=-600)),
        "bad signature": mint("another-secret-of-sufficient-length-123456", good),
        "tampered payload": st.token("alice", CTX.org)[:-3] + "AAA",
        "missing sub": mint(st.secret, {k: v for k, v in good.items() if k != "sub"}),
        "missing exp": mint(st.secret, {k: v for k, v in good.items() if k != "exp"}),
        "missing role": mint(st.secret, {k: v for k, v in good.items() if k != "role"}),
        "org_admin without org_id": mint(st.secret, claims("alice", None)),
        "unknown role": mint(st.secret, claims("alice", CTX.org, role="superuser")),
        "not yet valid": mint(st.secret, claims("alice", CTX.org, nbf=int(time.time()) + 3600)),
        "garbage": "not-a-jwt",
        "two segments": "abc.def",
    }
    for name, tok in cases.items():
        for method, path in (("GET", api_path(CTX.org, "cornerstone", "sync")),
                             ("POST", api_path(CTX.org, "cornerstone", "sync"))):
            r = request(method, url(path), tok)
            assert r.status == 401, "%s (%s): %r" % (name, method, r)
            body = r.json()
            assert body["error"] == "unauthorized" and body["message"], (name, body)
    # The stream takes ?access_token=, and checks it the same way.
    r = request("GET", url(api_path(CTX.org, "cornerstone", "sync", "stream")) + "?access_token="
             + cases["alg none"])
    assert r.status == 401, r
    # ... but only the stream: elsewhere a query token is not a credential.
    r = request("GET", url(api_path(CTX.org, "cornerstone", "sync")) + "?access_token="
             + CTX.admin)
    assert r.status == 401, r


def test_status_idle_before_first_sync():
    r = request("GET", url(api_path(CTX.org)), CTX.admin)
    assert r.status == 200, r
    items = r.json()
    assert [i["integration"] for i in items] == ["CONSIO", "CORNERSTONE"], items
    for s in items:
        assert s["state"] == "IDLE" and s["org_id"] == CTX.org, s
        assert s["percent"] is None and s["rate_limited"] is False, s
        assert s["last_sync_at"] is None and s["active_job_id"] is None, s
        for k in ("records_processed", "total_estimate", "eta_at", "last_job_id", "last_outcome",
                  "records_synced", "created", "updated", "deactivated", "unchanged",
                  "error_count", "warning_count", "failure_reason", "next_manual_allowed_at",
                  "last_rejection", "errors_url", "updated_at"):
            assert k in s, (k, s)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s["updated_at"]), s
    assert items[1]["display_name"] == "Cornerstone", items[1]
    # The integration path segment is case-insensitive.
    for seg in ("consio", "CONSIO", "CoNsIo"):
        r = request("GET", url(api_path(CTX.org, seg, "sync")), CTX.admin)
        assert r.status == 200 and r.json()["integration"] == "CONSIO", (seg, r)


def test_unknown_or_unconfigured_integration_is_404():
    r = request("GET", url(api_path(CTX.org, "nosuchsystem", "sync")), CTX.admin)
    assert r.status == 404, r
    # consio is not configured for org2.
    for method in ("GET", "POST"):
        r = request(method, url(api_path(CTX.org2, "consio", "sync")), CTX.admin2)
        assert r.status == 404 and r.json()["error"] == "not_configured", (method, r)
    r = request("GET", url(api_path(CTX.org2, "consio", "sync", "stream")), CTX.admin2)
    assert r.status == 404, r
    r = request("GET", url(api_path(CTX.org2, "consio", "jobs")), CTX.admin2)
    assert r.status == 404, r
    r = request("GET", url("/api/v1/nothing"), CTX.admin)
    assert r.status == 404, r
    r = request("DELETE", url(api_path(CTX.org, "consio", "sync")), CTX.admin)
    assert r.status == 405 and "POST" in r.header("Allow"), r


def test_org_admin_cannot_read_or_trigger_another_org():
    # alice is org_admin of CTX.org; CTX.org2 is someone else's.
    for method, path in (("GET", api_path(CTX.org2)),
                         ("GET", api_path(CTX.org2, "cornerstone", "sync")),
                         ("GET", api_path(CTX.org2, "cornerstone", "jobs")),
                         ("GET", api_path(CTX.org2, "cornerstone", "jobs",
                                          "00000000-0000-4000-8000-000000000000", "errors")),
                         ("POST", api_path(CTX.org2, "cornerstone", "sync"))):
        r = request(method, url(path), CTX.admin)
        assert r.status == 403 and r.json()["error"] == "forbidden", (method, path, r)
    r = request("GET", url(api_path(CTX.org2, "cornerstone", "sync", "stream")) + "?access_token="
             + CTX.admin)
    assert r.status == 403, r
    # No SyncRequested was published for the refused trigger.
    n = CTX.stack.query("select count(*) from membersync.sync_requests where org_id = :'p1'",
                        CTX.org2)
    assert n == [("0",)], n


def test_sse_snapshot_then_updates_after_trigger():
    path = api_path(CTX.org, "cornerstone", "sync", "stream")
    sse = Sse(url(path) + "?access_token=" + CTX.admin)
    try:
        assert sse.status == 200, sse.status
        assert sse.resp.getheader("Content-Type").startswith("text/event-stream")
        first = sse.next_status(10)
        assert first["state"] == "IDLE" and first["integration"] == "CORNERSTONE", first
        assert first["_id"] and first["_id"].isdigit(), first

        r = request("POST", url(api_path(CTX.org, "cornerstone", "sync")), CTX.admin)
        assert r.status == 202, r
        body = r.json()
        assert re.fullmatch(r"[0-9a-f-]{36}", body["request_id"]), body
        assert body["status_url"] == api_path(CTX.org, "cornerstone", "sync"), body
        CTX.first_request = body["request_id"]

        states = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            doc = sse.next_status(deadline - time.monotonic())
            states.append(doc["state"])
            if doc["state"] in ("SUCCEEDED", "PARTIAL", "FAILED"):
                break
        assert states and states[-1] == "PARTIAL", states
        assert "QUEUED" in states or "RUNNING" in states, states
        final = doc
        assert final["records_synced"] == 394 and final["created"] == 394, final
        assert final["error_count"] == 8 and final["warning_count"] == 8, final
        assert final["percent"] == 100 and final["last_sync_at"], final
        assert final["errors_url"].endswith("/jobs/%s/errors" % final["last_job_id"]), final
        assert int(final["_id"]) >= int(first["_id"]), (first["_id"], final["_id"])
        CTX.cs_job = final["last_job_id"]
    finally:
        sse.close()
    # The trigger went out as the DESIGN's SyncRequested: MANUAL, by alice as
    # ORG_ADMIN of her own org.
    rows = CTX.stack.query("select trigger, requested_by->>'user_id', requested_by->>'role', "
                           "requested_by->>'org_id', decision from membersync.sync_requests "
                           "where request_id = :'p1'", CTX.first_request)
    assert rows == [("MANUAL", "alice", "ORG_ADMIN", CTX.org, "QUEUED")], rows


def test_second_manual_trigger_within_window_is_429_with_retry_after():
    r = request("POST", url(api_path(CTX.org, "cornerstone", "sync")), CTX.admin)
    assert r.status == 429, r
    body = r.json()
    retry = int(r.header("Retry-After"))
    assert 200 < retry <= 300, r.headers
    assert body["error"] == "rate_limited" and body["retry_after"] == retry, body
    assert body["next_allowed_at"] in body["message"], body
    # next_allowed_at = accepted trigger's queued_at + 300 s.
    queued = CTX.stack.query(
        "select to_char((queued_at + interval '300 seconds') at time zone 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') from membersync.sync_jobs where request_id = :'p1'",
        CTX.first_request)[0][0]
    assert body["next_allowed_at"] == queued, (body, queued)
    s = request("GET", url(api_path(CTX.org, "cornerstone", "sync")), CTX.admin).json()
    assert s["rate_limited"] is True and s["next_manual_allowed_at"] == queued, s
    # A global admin is rate-limited too.
    r = request("POST", url(api_path(CTX.org, "CORNERSTONE", "sync")), CTX.global_admin)
    assert r.status == 429, r


def test_global_admin_can_trigger_any_org():
    r = request("POST", url(api_path(CTX.org2, "cornerstone", "sync")), CTX.global_admin)
    assert r.status == 202, r
    rid = r.json()["request_id"]
    rows = mslib.wait_for(lambda: CTX.stack.query(
        "select requested_by->>'user_id', requested_by->>'role', "
        "coalesce(requested_by->>'org_id', 'null'), decision from membersync.sync_requests "
        "where request_id = :'p1'", rid), 30, "the request to be decided")
    assert rows == [("root", "GLOBAL_ADMIN", "null", "QUEUED")], rows
    # And read it.
    r = request("GET", url(api_path(CTX.org2)), CTX.global_admin)
    assert r.status == 200 and r.json()[0]["org_id"] == CTX.org2, r
    wait_job_done(CTX.org2, "cornerstone")


def test_error_details_paged_by_cursor():
    base = url(api_path(CTX.org, "cornerstone", "jobs", CTX.cs_job, "errors"))
    seen, cursor, pages = [], None, 0
    while True:
        r = request("GET", base + "?limit=5" + ("&cursor=" + cursor if cursor else ""), CTX.admin)
        assert r.status == 200, r
        doc = r.json()
        assert len(doc["items"]) <= 5, doc
        seen += doc["items"]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str), doc
    assert pages == 4 and len(seen) == 16, (pages, len(seen))
    seqs = [i["seq"] for i in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == 16, seqs
    assert sum(1 for i in seen if i["severity"] == "ERROR") == 8, seen
    assert doc["error_count"] == 8 and doc["warning_count"] == 8, doc
    for i in seen:
        assert set(i) == {"seq", "severity", "code", "external_id", "field", "message",
                          "record_index"}, i
    codes = sorted(i["code"] for i in seen if i["severity"] == "ERROR")
    assert codes == sorted(["MISSING_FIELD"] * 3 + ["INVALID_STATUS", "MALFORMED", "MISSING_ID",
                                                     "MISSING_ID", "DUPLICATE_ID"]), codes
    # The record with markup in its name (index 160) is listed by id only.
    hit = [i for i in seen if i["record_index"] == 160]
    assert hit and hit[0]["external_id"] == "cs-235560", hit
    assert "<" not in json.dumps(seen), "member data leaked into error details"
    r = request("GET", base + "?severity=ERROR&limit=500", CTX.admin)
    assert r.status == 200 and len(r.json()["items"]) == 8, r
    for bad in ("?cursor=abc", "?limit=0", "?limit=501", "?severity=INFO"):
        r = request("GET", base + bad, CTX.admin)
        assert r.status == 400, (bad, r)
    # A job of another integration / org, or none at all, is 404.
    for path in (api_path(CTX.org, "consio", "jobs", CTX.cs_job, "errors"),
                 api_path(CTX.org, "cornerstone", "jobs", "00000000-0000-4000-8000-000000000000",
                          "errors"),
                 api_path(CTX.org, "cornerstone", "jobs", "not-a-uuid", "errors")):
        r = request("GET", url(path), CTX.admin)
        assert r.status == 404, (path, r)
    r = request("GET", url(api_path(CTX.org2, "cornerstone", "jobs", CTX.cs_job, "errors")),
             CTX.global_admin)
    assert r.status == 404, r


def test_jobs_history():
    r = request("GET", url(api_path(CTX.org, "cornerstone", "jobs") + "?limit=10"), CTX.admin)
    assert r.status == 200, r
    items = r.json()["items"]
    assert len(items) == 1, items
    j = items[0]
    assert j["job_id"] == CTX.cs_job and j["state"] == "PARTIAL" and j["outcome"] == "PARTIAL", j
    assert j["trigger"] == "MANUAL" and j["requested_by"]["user_id"] == "alice", j
    assert (j["created"], j["records_synced"], j["error_count"]) == (394, 394, 8), j
    assert j["finished_at"] and j["queued_at"] <= j["finished_at"], j
    r = request("GET", url(api_path(CTX.org, "consio", "jobs")), CTX.admin)
    assert r.status == 200 and r.json()["items"] == [], r
    r = request("GET", url(api_path(CTX.org, "consio", "jobs") + "?limit=0"), CTX.admin)
    assert r.status == 400, r


def test_sse_last_event_id_gets_fresh_snapshot_and_keepalive():
    path = api_path(CTX.org, "cornerstone", "sync", "stream")
    sse = Sse(url(path), token=CTX.admin, headers={"Last-Event-ID": "1"})
    try:
        doc = sse.next_status(10)
        assert doc["state"] == "PARTIAL" and doc["last_job_id"] == CTX.cs_job, doc
        m = request("GET", url("/metrics")).body.decode()
        assert re.search(r"^membersync_api_sse_clients [1-9]", m, re.M), m
        # Nothing changes now: within 15 s a keep-alive comment arrives.
        t0 = time.monotonic()
        ev = sse.next(20)
        assert "comment" in ev, ev
        assert 10 < time.monotonic() - t0 < 19, time.monotonic() - t0
    finally:
        sse.close()


def test_cors_preflight_and_simple_requests():
    path = url(api_path(CTX.org, "cornerstone", "sync"))
    good = {"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"}
    r = request("OPTIONS", path, headers=good)
    assert r.status == 204, r
    assert r.header("Access-Control-Allow-Origin") == "http://allowed.example", r.headers
    assert "POST" in r.header("Access-Control-Allow-Methods"), r.headers
    assert "authorization" in r.header("Access-Control-Allow-Headers").lower(), r.headers
    bad = dict(good, Origin="http://evil.example")
    r = request("OPTIONS", path, headers=bad)
    assert r.status == 403 and r.header("Access-Control-Allow-Origin") is None, r
    r = request("GET", path, CTX.admin, headers={"Origin": "http://allowed.example"})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") == "http://allowed.example"
    assert "Retry-After" in r.header("Access-Control-Expose-Headers"), r.headers
    r = request("GET", path, CTX.admin, headers={"Origin": "http://evil.example"})
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") is None, r.headers


def test_widget_files_and_no_traversal():
    r = request("GET", url("/widget/"))
    assert r.status == 200 and r.header("Content-Type").startswith("text/html"), r
    assert "default-src 'self'" in r.header("Content-Security-Policy"), r.headers
    r = request("GET", url("/widget/member-sync-widget.js"))
    assert r.status == 200 and r.header("Content-Type").startswith("text/javascript"), r
    assert b"customElements.define" in r.body
    r = request("GET", url("/widget/member-sync-widget.css"))
    assert r.status == 200 and r.header("Content-Type").startswith("text/css"), r
    r = raw_get(CTX.base, "/widget")
    assert r.status == 301 and r.header("Location") == "/widget/", r
    for p in ("/widget/../CMakeLists.txt", "/widget/..%2fCMakeLists.txt",
              "/widget/%2e%2e/CMakeLists.txt", "/widget/../../../../etc/passwd",
              "/widget//etc/passwd", "/widget/.hidden", "/widget/nope.js",
              "/widget/..\\CMakeLists.txt", "/widget/index.html%00.js"):
        r = raw_get(CTX.base, p)
        assert r.status == 404, (p, r)
        assert b"cmake_minimum_required" not in r.body and b"root:" not in r.body, p


def test_rs256_tokens_with_a_public_key():
    st = CTX.stack
    key = os.path.join(st.workdir, "rs.key")
    pub = os.path.join(st.workdir, "rs.pub")
    mslib.run(["openssl", "genrsa", "-out", key, "2048"])
    mslib.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub])
    api = st.start_api(env={"MEMBERSYNC_API_JWT_HS256_SECRET_FILE": "",
                            "MEMBERSYNC_API_JWT_RS256_PUBLIC_KEY_FILE": pub})

    def rs256(c):
        signing_input = b64url(json.dumps({"alg": "RS256", "typ": "JWT"})) + "." + \
            b64url(json.dumps(c))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                             capture_output=True, check=True).stdout
        return signing_input + "." + b64url(sig)
    p = api.base + api_path(CTX.org)
    r = request("GET", p, rs256(claims("alice", CTX.org)))
    assert r.status == 200, r
    r = request("GET", p, rs256(claims("alice", CTX.org, ttl=-600)))
    assert r.status == 401, r
    r = request("GET", p, st.token("alice", CTX.org))
    assert r.status == 401, r
    # Algorithm confusion: HS256 "signed" with the public key as secret.
    with open(pub, "rb") as f:
        pem = f.read()
    r = request("GET", p, mint(None, claims("alice", CTX.org), sign_key=pem))
    assert r.status == 401, r
    api.stop()


def test_trigger_is_503_when_kafka_cannot_take_it():
    # An api whose broker is unreachable: the trigger is refused with 503
    # within the delivery timeout instead of hanging, reads still work.
    api = CTX.stack.start_api(env={"MEMBERSYNC_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:%d"
                                   % mslib.free_port()})
    try:
        t0 = time.monotonic()
        r = request("POST", api.base + api_path(CTX.org, "consio", "sync"), CTX.admin,
                    timeout=30)
        took = time.monotonic() - t0
        assert r.status == 503 and r.json()["error"] == "unavailable", r
        assert took < 15, took
        r = request("GET", api.base + api_path(CTX.org, "consio", "sync"), CTX.admin)
        assert r.status == 200 and r.json()["state"] == "IDLE", r
    finally:
        api.stop()


def test_metrics_count_responses_by_status():
    text = request("GET", url("/metrics")).body.decode()
    for code in ("200", "202", "401", "403", "404", "429"):
        assert re.search(r'^membersync_api_http_responses_total\{code="%s"\} [1-9]' % code, text,
                         re.M), (code, text)
    assert re.search(r'^membersync_api_triggers_total\{result="accepted"\} [2-9]', text, re.M), text
    assert re.search(r'^membersync_api_triggers_total\{result="rate_limited"\} [1-9]', text, re.M)


def test_logs_hold_no_tokens():
    logs = CTX.api.output()
    assert CTX.admin not in logs and CTX.admin.split(".")[2] not in logs, "a token was logged"
    assert CTX.stack.secret not in logs
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # JSON log lines only


# ------------------------------------------------------------------ runner

def run_module(module_globals, setup_fn):
    """Runs the module's test_* functions in order against one stack that
    setup_fn(svc, holder) builds (storing it in holder["stack"] as soon as it
    exists), torn down at the end, also on failure or SIGTERM; prints
    `N passed, N failed`; exit 1 on failure or when nothing ran."""
    tests = [(n, f) for n, f in module_globals.items()
             if n.startswith("test_") and callable(f)
             and getattr(f, "__module__", None) == module_globals["__name__"]]
    wanted = sys.argv[1:]
    if wanted:
        tests = [(n, f) for n, f in tests if n in wanted]

    def on_term(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    holder = {}

    def dump():
        if holder.get("stack"):
            holder["stack"].dump_logs()
    passed = failed = 0
    try:
        with mslib.Services() as svc:
            try:
                t0 = time.monotonic()
                setup_fn(svc, holder)
                sys.stderr.write("  (setup: %.1fs)\n" % (time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001 - every test fails then
                traceback.print_exc()
                dump()
                msg = " ".join(str(e).split())[:300]
                for name, _ in tests:
                    print("FAIL %s: setup failed: %s" % (name, msg), flush=True)
                failed = len(tests)
                tests = []
            for name, fn in tests:
                t0 = time.monotonic()
                try:
                    fn()
                    passed += 1
                    print("PASS %s" % name, flush=True)
                except KeyboardInterrupt:
                    failed += 1
                    print("FAIL %s: interrupted" % name, flush=True)
                    break
                except Exception as e:  # noqa: BLE001 - a failed test
                    failed += 1
                    traceback.print_exc()
                    dump()
                    msg = " ".join(str(e).split())[:500] or type(e).__name__
                    print("FAIL %s: %s" % (name, msg), flush=True)
                sys.stderr.write("  (%s: %.1fs)\n" % (name, time.monotonic() - t0))
            if holder.get("stack"):
                holder["stack"].stop()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        failed += 1
    finally:
        if holder.get("stack"):
            holder["stack"].stop()
        mslib.stop_all_procs()
        print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    run_module(globals(), setup)
