"""Helpers of the Kafka-ecosystem interoperability tests (DESIGN sections 3
and 4; issue 5 point 8).

Everything here is deliberately independent of the membersync C code: the
Avro schemas are read from schemas/avro/*.avsc with fastavro, the
CRC-64-AVRO fingerprint is computed here from the Avro specification, both
value framings are parsed and built by hand, Kafka is spoken with
Confluent's Python client (its own librdkafka build), and the schema
registry is a real one (Apicurio Registry, Confluent-compatible API) that
runs as a child process.  Runs inside the interop venv (venv_launch.py).
"""

import atexit
import ctypes
import datetime
import glob
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

import mslib

SCHEMA_DIR = os.path.join(mslib.SOURCE_DIR, "schemas", "avro")
SAMPLE_DIR = os.path.join(mslib.SOURCE_DIR, "tests", "data", "sample")

# Pipeline topic key -> the value schema of that topic (DESIGN section 3).
TOPIC_SCHEMAS = {
    "sync_requests": "SyncRequested",
    "sync_jobs_cornerstone": "SyncJob",
    "sync_jobs_consio": "SyncJob",
    "sync_events": "SyncEvent",
    "member_changes": "MemberChanged",
}

SINGLE_OBJECT = "single-object"
CONFLUENT = "confluent"


# ------------------------------------------------------------ CRC-64-AVRO

# The Avro specification, "Schema Fingerprints": the 64-bit Rabin
# fingerprint with this empty value, computed over the UTF-8 bytes of the
# schema's Parsing Canonical Form.
CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC64_TABLE = _crc64_table()


def crc64_avro(data):
    fp = CRC64_EMPTY
    for b in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ b) & 0xFF]
    return fp


# ----------------------------------------------------------------- schemas

class Schema:
    """One Avro schema: its JSON, fastavro's parsed form, its Parsing
    Canonical Form and CRC-64-AVRO fingerprint (an int; the single-object
    header carries it little-endian)."""

    def __init__(self, obj):
        self.json = obj
        self.text = json.dumps(obj)
        name = obj["name"]
        self.fullname = name if "." in name else "%s.%s" % (obj.get("namespace", ""), name)
        self.name = name.rsplit(".", 1)[-1]
        # Each file is self-contained and redefines shared records
        # (Requester, ...): parse each with its own name table.
        self.parsed = fastavro.parse_schema(obj, named_schemas={})
        self.canonical = to_parsing_canonical_form(obj)
        self.fp = crc64_avro(self.canonical.encode("utf-8"))
        # fastavro's own fingerprint is the little-endian bytes in hex: a
        # second, independent computation of the same number.
        fa = fastavro_fingerprint(self.canonical, "CRC-64-AVRO")
        if fa != self.fp.to_bytes(8, "little").hex():
            raise AssertionError("CRC-64-AVRO of %s: ours %016x, fastavro %s" % (
                self.fullname, self.fp, fa))


def load_schema(name):
    with open(os.path.join(SCHEMA_DIR, name + ".avsc")) as f:
        return Schema(json.load(f))


def evolved_sync_requested():
    """A newer SyncRequested, as a web app a release ahead would write it:
    two added fields, both with defaults (a BACKWARD-compatible change)."""
    obj = load_schema("SyncRequested").json
    obj = json.loads(json.dumps(obj))
    obj["fields"].append({"name": "client_app", "type": ["null", "string"], "default": None,
                          "doc": "added in the test's v2: the publishing application"})
    obj["fields"].append({"name": "priority", "type": "int", "default": 0})
    return Schema(obj)


def avro_bytes(schema, value):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, value)
    return buf.getvalue()


def frame_single_object(schema, value):
    """Avro single-object encoding: C3 01, the 8-byte little-endian
    CRC-64-AVRO fingerprint, the Avro binary body."""
    return b"\xc3\x01" + schema.fp.to_bytes(8, "little") + avro_bytes(schema, value)


def frame_confluent(schema_id, schema, value):
    """Confluent wire format: 00, the 4-byte big-endian schema id, the body."""
    return b"\x00" + schema_id.to_bytes(4, "big") + avro_bytes(schema, value)


def parse_framing(raw):
    """(framing, fingerprint or id, body) of a value, by its first bytes."""
    if len(raw) >= 10 and raw[0:2] == b"\xc3\x01":
        return SINGLE_OBJECT, int.from_bytes(raw[2:10], "little"), raw[10:]
    if len(raw) >= 5 and raw[0] == 0:
        return CONFLUENT, int.from_bytes(raw[1:5], "big"), raw[5:]
    raise AssertionError("value with unknown framing (first bytes %s)" % raw[:10].hex())


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def normalize(v):
    """fastavro's Python values in the JSON-in-memory shape of
    docs/modules.md (what `membersync tail` prints): timestamp-millis as epoch
    ms, date as days since 1970-01-01, uuid as its string, the SyncEvent
    payload union as {short record name: record}."""
    if isinstance(v, datetime.datetime):
        return (v - _EPOCH) // datetime.timedelta(milliseconds=1)
    if isinstance(v, datetime.date):
        return (v - datetime.date(1970, 1, 1)).days
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return {v[0].rsplit(".", 1)[-1]: normalize(v[1])}
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


class Decoder:
    """Decodes values of either framing with fastavro: the writer schema by
    fingerprint (the .avsc files and any extra writers given) or by
    Confluent id (asked of the registry, cached), the reader schema the
    .avsc of the topic's event."""

    def __init__(self, registry=None, extra_writers=()):
        self.registry = registry
        self.readers = {n: load_schema(n) for n in set(TOPIC_SCHEMAS.values())}
        self.by_fp = {s.fp: s for s in list(self.readers.values()) + list(extra_writers)}
        self.by_id = {}

    def writer_for_id(self, schema_id):
        if schema_id not in self.by_id:
            if self.registry is None:
                raise AssertionError("Confluent framing (id %d) but no registry" % schema_id)
            self.by_id[schema_id] = Schema(json.loads(self.registry.schema_by_id(schema_id)))
        return self.by_id[schema_id]

    def decode(self, raw, reader_name):
        """(framing, writer Schema, fingerprint or id, normalized value)."""
        framing, ref, body = parse_framing(raw)
        if framing == SINGLE_OBJECT:
            writer = self.by_fp.get(ref)
            if writer is None:
                raise AssertionError("unknown fingerprint %016x" % ref)
        else:
            writer = self.writer_for_id(ref)
        reader = self.readers[reader_name]
        buf = io.BytesIO(body)
        value = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed,
                                           return_record_name=True,
                                           return_record_name_override=True)
        rest = len(body) - buf.tell()
        assert rest == 0, "%d bytes left after the %s datum" % (rest, reader_name)
        return framing, writer, ref, normalize(value)


# ---------------------------------------------------------------- registry

class RegistryError(RuntimeError):
    def __init__(self, status, body):
        super().__init__("registry answered HTTP %s: %s" % (status, body[:300]))
        self.status = status
        self.body = body


class Registry:
    """A client of the Confluent Schema Registry REST API (stdlib only)."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Accept": "application/vnd.schemaregistry.v1+json, application/json",
            "Content-Type": "application/vnd.schemaregistry.v1+json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise RegistryError(e.code, e.read().decode("utf-8", "replace")) from None

    @staticmethod
    def _q(subject):
        return urllib.parse.quote(subject, safe="")

    def subjects(self):
        return self._call("GET", "/subjects")

    def versions(self, subject):
        return self._call("GET", "/subjects/%s/versions" % self._q(subject))

    def latest(self, subject):
        return self._call("GET", "/subjects/%s/versions/latest" % self._q(subject))

    def schema_by_id(self, schema_id):
        return self._call("GET", "/schemas/ids/%d" % schema_id)["schema"]

    def register(self, subject, schema_text):
        return self._call("POST", "/subjects/%s/versions" % self._q(subject),
                          {"schema": schema_text})["id"]

    def set_compatibility(self, level):
        return self._call("PUT", "/config", {"compatibility": level})


def registry_home():
    cache = os.environ.get("MEMBERSYNC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                               "membersync")
    return os.path.join(cache, "apicurio-registry")


_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except Exception:  # noqa: BLE001 - no parent-death signal off glibc
    _prctl = None


def _die_with_parent():
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


class Apicurio:
    """Apicurio Registry (scripts/setup-python.sh installs it) as a child
    process on a free loopback port, in-memory storage, for the whole test
    module: mslib stops its Procs after every test, so this is a plain
    process of its own, stopped at exit and killed with this process.

    `url` is its Confluent-compatible API (/apis/ccompat/v7)."""

    def __init__(self):
        home = registry_home()
        jars = sorted(glob.glob(os.path.join(home, "apicurio-registry-app-*-runner.jar")))
        if not jars:
            raise RuntimeError("Apicurio Registry is not installed in %s: run "
                               "scripts/setup-python.sh" % home)
        self.jar = jars[-1]
        with open(os.path.join(home, ".version")) as f:
            self.version = f.read().strip()
        self.port = mslib.free_port()
        self.url = "http://127.0.0.1:%d/apis/ccompat/v7" % self.port
        log_dir = os.environ.get("MS_TEST_LOG_DIR") or os.path.join(
            os.environ.get("MS_BIN_DIR") or tempfile.gettempdir(), "test-logs")
        log_dir = os.path.join(log_dir, "interop")
        os.makedirs(log_dir, exist_ok=True)
        self.log = os.path.join(log_dir, "apicurio-%d.log" % self.port)
        # Serial GC and C1 only: on two cores this starts in seconds rather
        # than half a minute; throughput does not matter here.
        opts = os.environ.get("MS_REGISTRY_JVM_OPTS",
                              "-Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
                              "-XX:+ExitOnOutOfMemoryError").split()
        java = shutil.which("java")
        if not java:
            raise RuntimeError("java not found: run scripts/setup.sh")
        opts += self._cds_opts(home, java, opts)
        argv = [java] + opts + [
            "-Djava.awt.headless=true",
            "-Dquarkus.http.host=127.0.0.1", "-Dquarkus.http.port=%d" % self.port,
            "-Dquarkus.log.level=WARN",
            "-jar", self.jar]
        self._logf = open(self.log, "ab")
        t0 = time.monotonic()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, cwd=os.path.dirname(self.jar),
                                      start_new_session=True, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self.client = Registry(self.url)

        def ready():
            if self.popen.poll() is not None:
                raise mslib.GiveUp("Apicurio Registry exited with %s; see %s" % (
                    self.popen.returncode, self.log))
            return self.client.subjects() is not None
        try:
            mslib.wait_for(ready, float(os.environ.get("MS_REGISTRY_START_TIMEOUT", "120")),
                           "Apicurio Registry on port %d (log %s)" % (self.port, self.log), 0.2)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        # DESIGN section 4: schemas evolve BACKWARD-compatibly only; let the
        # registry enforce it, as a production registry would.
        self.client.set_compatibility("BACKWARD")

    def _cds_opts(self, home, java, opts):
        """A dynamic class-data-sharing archive, like the Kafka broker's in
        services.sh: the first start writes it at exit, later starts map it
        (about 3 s instead of 10 to 20 s on two busy cores).  Keyed by the
        JVM, the options and the jar, so a stale archive is never used;
        MS_REGISTRY_CDS=0 turns it off."""
        self._dump = None
        if os.environ.get("MS_REGISTRY_CDS", "1") == "0":
            return []
        real = os.path.realpath(java)
        libjvm = os.path.join(os.path.dirname(os.path.dirname(real)), "lib", "server", "libjvm.so")
        ident = [real, " ".join(opts), self.jar]
        for f in (libjvm, self.jar):
            try:
                st = os.stat(f)
                ident.append("%d %d" % (st.st_size, int(st.st_mtime)))
            except OSError:
                ident.append("-")
        key = hashlib.sha256("\n".join(ident).encode()).hexdigest()[:16]
        cds_dir = os.path.join(home, "cds")
        jsa = os.path.join(cds_dir, "apicurio-%s.jsa" % key)
        quiet = ["-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        if os.path.isfile(jsa):
            return ["-XX:SharedArchiveFile=%s" % jsa] + quiet
        try:
            os.makedirs(cds_dir, exist_ok=True)
        except OSError:
            return []
        if not os.access(cds_dir, os.W_OK):
            return []
        # A private name, renamed once complete: concurrent first starts
        # are safe.
        self._jsa = jsa
        self._dump = "%s.%d.tmp" % (jsa, os.getpid())
        return ["-XX:ArchiveClassesAtExit=%s" % self._dump] + quiet

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                # Writing the class-data archive at exit takes a few seconds.
                self.popen.wait(60 if self._dump else 15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        if self._dump:
            try:
                if self.popen.returncode in (0, 143, -signal.SIGTERM) and \
                        os.path.getsize(self._dump) > 0:
                    os.replace(self._dump, self._jsa)
            except OSError:
                pass
            finally:
                if os.path.exists(self._dump):
                    os.unlink(self._dump)
                self._dump = None
        if not self._logf.closed:
            self._logf.close()


_registry = None
_registry_error = None


def registry():
    """The module's Apicurio Registry, started on first use (a failed start
    is not retried by every later test)."""
    global _registry, _registry_error
    if _registry_error is not None:
        raise RuntimeError("Apicurio Registry unavailable: %s" % _registry_error)
    if _registry is None:
        try:
            _registry = Apicurio()
        except Exception as e:
            _registry_error = str(e)
            raise
        print("  Apicurio Registry %s ready in %.1fs at %s" % (
            _registry.version, _registry.startup_s, _registry.url), flush=True)
    return _registry


# ------------------------------------------------------------------- Kafka

class Msg:
    def __init__(self, m):
        self.topic = m.topic()
        self.partition = m.partition()
        self.offset = m.offset()
        self.key = m.key()
        self.value = m.value()
        self.header_list = m.headers() or []
        self.headers = {}
        for k, v in self.header_list:
            assert k not in self.headers, "header %s twice at %s[%d]@%d" % (
                k, self.topic, self.partition, self.offset)
            self.headers[k] = v.decode("utf-8") if v is not None else None


def read_topic(bootstrap, topic, timeout=60):
    """Every record of a topic, read with Confluent's consumer from the
    beginning up to the high watermarks taken at the start."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop-" + secrets.token_hex(6),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "enable.partition.eof": False})
    try:
        md = c.list_topics(topic, timeout=15)
        t = md.topics[topic]
        if t.error is not None:
            raise KafkaException(t.error)
        ends, parts = {}, []
        for pid in t.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, pid), timeout=15)
            if hi > lo:
                ends[pid] = hi
                parts.append(TopicPartition(topic, pid, OFFSET_BEGINNING))
        out = []
        if not parts:
            return out
        c.assign(parts)
        pos = {p.partition: -1 for p in parts}
        deadline = time.monotonic() + timeout
        while any(pos[p] + 1 < ends[p] for p in ends):
            if time.monotonic() > deadline:
                raise TimeoutError("reading %s: at %s, ends %s" % (topic, pos, ends))
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            if m.offset() < ends[m.partition()]:
                out.append(Msg(m))
                pos[m.partition()] = m.offset()
        return out
    finally:
        c.close()


def produce(bootstrap, topic, key, value, headers):
    """Publishes one record the way a web app would (idempotent producer,
    acks=all) and waits for the broker's acknowledgement."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5})
    result = {}

    def on_delivery(err, msg):
        result["err"] = err
        result["msg"] = msg
    p.produce(topic, key=key.encode(), value=value, headers=headers, on_delivery=on_delivery)
    left = p.flush(30)
    assert left == 0 and result.get("err") is None, "publish failed: %s" % (result.get("err"),)
    return result["msg"].partition(), result["msg"].offset()


def now_ms():
    return int(time.time() * 1000)


def iso_ms(epoch_ms):
    return datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sync_requested(org, integration, role="ORG_ADMIN", actor_org=None, trigger="MANUAL",
                   user="web-user-1"):
    """A SyncRequested value as a web app builds it (DESIGN section 4)."""
    return {
        "request_id": str(uuid.uuid4()),
        "org_id": org,
        "integration": integration,
        "trigger": trigger,
        "requested_by": {"user_id": user, "role": role,
                         "org_id": actor_org if role == "ORG_ADMIN" else None},
        "requested_at": now_ms(),
    }


def cloudevents_headers(value, source="webapp/admin-portal"):
    """CloudEvents Kafka binding, binary mode (DESIGN section 3)."""
    return [("ce_id", value["request_id"].encode()),
            ("ce_type", b"membersync.SyncRequested"),
            ("ce_source", source.encode()),
            ("ce_specversion", b"1.0"),
            ("ce_time", iso_ms(value["requested_at"]).encode()),
            ("content-type", b"application/avro")]


# ------------------------------------------------------------ expectations

def event_label(schema_name, value):
    if schema_name == "SyncEvent":
        return "SyncEvent." + next(iter(value["payload"]))
    if schema_name == "MemberChanged":
        return "MemberChanged." + value["op"]
    return schema_name


def _parse_ce_time(s):
    assert s.endswith("Z"), "ce_time %r is not UTC" % s
    return datetime.datetime.fromisoformat(s[:-1] + "+00:00")


def check_record(msg, schema_name, value, ce_source_prefix="membersync/"):
    """The key and the CloudEvents headers of one record against its value."""
    where = "%s[%d]@%d" % (msg.topic, msg.partition, msg.offset)
    key = msg.key.decode("utf-8") if msg.key is not None else None
    if schema_name in ("SyncRequested", "SyncJob"):
        want_key, want_id = value["org_id"], value.get("request_id")
        if schema_name == "SyncJob":
            want_id = value["job_id"]
        when = value["requested_at"] if schema_name == "SyncRequested" else value["queued_at"]
        want_type = "membersync." + schema_name
    elif schema_name == "SyncEvent":
        want_key = "%s/%s" % (value["org_id"], value["integration"])
        want_id, when = value["event_id"], value["occurred_at"]
        want_type = "membersync." + next(iter(value["payload"]))
    else:
        want_key = "%s/%s/%s" % (value["org_id"], value["integration"], value["external_id"])
        want_id, when = value["event_id"], value["occurred_at"]
        want_type = "membersync.MemberChanged"
    h = msg.headers
    assert key == want_key, "%s: key %r, expected %r" % (where, key, want_key)
    assert h.get("ce_id") == want_id, "%s: ce_id %r, expected %r" % (where, h.get("ce_id"), want_id)
    assert h.get("ce_type") == want_type, "%s: ce_type %r, expected %r" % (
        where, h.get("ce_type"), want_type)
    assert (h.get("ce_source") or "").startswith(ce_source_prefix), "%s: ce_source %r" % (
        where, h.get("ce_source"))
    assert h.get("ce_specversion") == "1.0", "%s: ce_specversion %r" % (
        where, h.get("ce_specversion"))
    assert h.get("content-type") == "application/avro", "%s: content-type %r" % (
        where, h.get("content-type"))
    t = _parse_ce_time(h.get("ce_time") or "")
    assert (t - _EPOCH) // datetime.timedelta(milliseconds=1) == when, \
        "%s: ce_time %s is not the event's time %s" % (where, h.get("ce_time"), iso_ms(when))


# ----------------------------------------------------------------- pipeline

def wait_decision(p, request_id, timeout=60):
    """The rate limiter's row for a request: (decision, job_id, message)."""
    rows = mslib.wait_for(lambda: p.query(
        "select decision, job_id, message from membersync.sync_requests "
        "where request_id = :'p1'", request_id), timeout, "decision on request %s" % request_id)
    return rows[0]


def wait_job_done(p, job_id, timeout=120):
    rows = mslib.wait_for(lambda: p.query(
        "select state from membersync.sync_jobs where job_id = :'p1' "
        "and state not in ('QUEUED', 'RUNNING')", job_id), timeout, "job %s to end" % job_id)
    return rows[0][0]


# ---------------------------------------------------------------- scenarios

# What a real sync produces (DESIGN section 4): every event type, each
# SyncEvent payload branch and each MemberChanged op.
ALL_LABELS = {"SyncRequested", "SyncJob", "SyncEvent.SyncQueued", "SyncEvent.SyncRejected",
              "SyncEvent.SyncStarted", "SyncEvent.SyncProgress", "SyncEvent.SyncCompleted",
              "MemberChanged.CREATED", "MemberChanged.UPDATED", "MemberChanged.DEACTIVATED"}


def registry_env(reg):
    return {"MEMBERSYNC_KAFKA_SCHEMA_REGISTRY_URL": reg.url} if reg else {}


def c_view(p, topic_key, count):
    """The same topic as membersync's own decoder sees it (`membersync
    tail`), by (partition, offset)."""
    cp = p.cli("tail", p.topics[topic_key], "--count", str(count), "--timeout-ms", "8000")
    out = {}
    for line in cp.stdout.splitlines():
        if line.strip():
            e = json.loads(line)
            out[(e["partition"], e["offset"])] = e
    return out


def sync_everything(svc, reg=None):
    """A real sync that makes every event type: the Cornerstone sample v1
    (an org admin's manual trigger), a second manual trigger inside the
    window (SyncRejected), the v2 export (scheduled: updates and
    deactivations), and a Consio sync (its own jobs topic).  Then reads every
    topic with the independent client and checks each record.

    Returns (pipeline, labels Counter, {topic: {(framing, fp or id)}})."""
    import collections
    from pipeline import Pipeline

    p = Pipeline(svc, "iop", extra_env=registry_env(reg))
    org = "org-%s" % p.tag
    cs = p.sim("cornerstone", file=os.path.join(SAMPLE_DIR, "cornerstone", "members-v1.json"))
    p.integration(org, "cornerstone", cs, page_size=50)
    co = p.sim("consio", generate=30, seed=11)
    p.integration(org, "consio", co, page_size=10)
    p.start_roles("cornerstone", "consio")

    first = p.trigger(org, "cornerstone", role="org_admin")
    assert first.get("outcome") in ("SUCCEEDED", "PARTIAL"), first
    again = p.trigger(org, "cornerstone", role="org_admin")
    assert again.get("decision") == "RATE_LIMITED", again
    p.reload(cs, os.path.join(SAMPLE_DIR, "cornerstone", "members-v2.json"))
    second = p.trigger(org, "cornerstone", role="system", trigger="scheduled")
    assert second.get("updated") and second.get("deactivated"), second
    third = p.trigger(org, "consio", role="global_admin")
    assert third.get("outcome") == "SUCCEEDED", third
    p.wait_outbox_empty()

    dec = Decoder(registry=reg.client if reg else None)
    confluent = confluent_deserializer(reg) if reg else None
    labels = collections.Counter()
    refs = collections.defaultdict(set)
    for key, schema_name in TOPIC_SCHEMAS.items():
        topic = p.topics[key]
        msgs = read_topic(svc.bootstrap, topic)
        assert msgs, "no records on %s" % topic
        theirs = c_view(p, key, len(msgs))
        for m in msgs:
            where = "%s[%d]@%d" % (topic, m.partition, m.offset)
            framing, writer, ref, value = dec.decode(m.value, schema_name)
            if confluent:
                # A downstream consumer using Confluent's own deserializer
                # (writer schema from the registry) reads the same values;
                # it gives the payload union without the branch name.
                got = normalize(confluent(topic, m.value))
                want = dict(value)
                if "payload" in want:
                    want["payload"] = next(iter(want["payload"].values()))
                assert got == want, "%s: Confluent's deserializer read %s, fastavro %s" % (
                    where, got, want)
            refs[topic].add((framing, ref))
            # The writer schema is exactly the one in schemas/avro.
            assert writer.fp == dec.readers[schema_name].fp, "%s: writer %s is not %s.avsc" % (
                where, writer.fullname, schema_name)
            # Two independent decoders agree on every field.
            c = theirs.get((m.partition, m.offset))
            assert c is not None and "value" in c, "%s: membersync tail did not decode it: %s" % (
                where, c)
            assert c["value"] == value, "%s: fastavro %s, membersync %s" % (where, value, c["value"])
            check_record(m, schema_name, value)
            labels[event_label(schema_name, value)] += 1
    missing = ALL_LABELS - set(labels)
    assert not missing, "event types never seen: %s (seen %s)" % (sorted(missing), dict(labels))
    print("  decoded %d records: %s" % (sum(labels.values()), ", ".join(
        "%s=%d" % kv for kv in sorted(labels.items()))), flush=True)
    return p, labels, refs


def confluent_serializer(reg, schema):
    """Confluent's own AvroSerializer, as a Python web app uses it:
    TopicNameStrategy subjects, schemas registered on first use."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    ser = AvroSerializer(SchemaRegistryClient({"url": reg.url}), schema.text,
                         conf={"auto.register.schemas": True})
    return lambda topic, value: ser(value, SerializationContext(topic, MessageField.VALUE))


def confluent_deserializer(reg):
    """Confluent's AvroDeserializer, as a downstream consumer uses it."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    de = AvroDeserializer(SchemaRegistryClient({"url": reg.url}))
    return lambda topic, raw: de(raw, SerializationContext(topic, MessageField.VALUE))


def webapp_publish(svc, reg=None, framing=None):
    """A web app publishes two SyncRequested to the requests topic itself:
    one by the org's own admin (accepted, the job runs to completion) and one
    by an admin of another org (FORBIDDEN).  membersync runs with the
    registry reg (or none); the web app frames its values in `framing`:
    single-object by hand, or Confluent's serializer with reg (the default
    follows reg).  Then follows what comes back on sync-events, as the web
    app would."""
    from pipeline import Pipeline

    framing = framing or (SINGLE_OBJECT if reg is None else CONFLUENT)

    p = Pipeline(svc, "iopweb", extra_env=registry_env(reg))
    org = "org-%s" % p.tag
    sim = p.sim("consio", generate=40, seed=5)
    p.integration(org, "consio", sim, page_size=10)
    p.start_roles("consio")
    topic = p.topics["sync_requests"]
    schema = load_schema("SyncRequested")
    if framing == SINGLE_OBJECT:
        encode = lambda topic, v: frame_single_object(schema, v)  # noqa: E731
    else:
        encode = confluent_serializer(reg, schema)

    ok = sync_requested(org, "CONSIO", role="ORG_ADMIN", actor_org=org)
    other = sync_requested(org, "CONSIO", role="ORG_ADMIN", actor_org="another-org")
    for v in (ok, other):
        raw = encode(topic, v)
        assert parse_framing(raw)[0] == framing
        produce(svc.bootstrap, topic, v["org_id"], raw, cloudevents_headers(v))

    decision, job_id, message = wait_decision(p, ok["request_id"])
    assert decision == "QUEUED" and job_id, (decision, message)
    state = wait_job_done(p, job_id)
    assert state == "SUCCEEDED", state
    decision2, _, message2 = wait_decision(p, other["request_id"])
    assert decision2 == "FORBIDDEN", (decision2, message2)
    p.wait_outbox_empty()

    # What comes back: the web app follows its request id to the job id,
    # then the job's events to SyncCompleted.
    dec = Decoder(registry=reg.client if reg else None)
    events = []
    for m in read_topic(svc.bootstrap, p.topics["sync_events"]):
        _, _, _, v = dec.decode(m.value, "SyncEvent")
        check_record(m, "SyncEvent", v)
        events.append(v)
    mine = [e for e in events if e["request_id"] == ok["request_id"] or e["job_id"] == job_id]
    mine.sort(key=lambda e: e["seq"])
    kinds = [next(iter(e["payload"])) for e in mine]
    assert kinds[0] == "SyncQueued" and mine[0]["seq"] == 0 and mine[0]["job_id"] == job_id, kinds
    assert kinds[-1] == "SyncCompleted", kinds
    assert "SyncStarted" in kinds, kinds
    done = mine[-1]["payload"]["SyncCompleted"]
    assert done["outcome"] == "SUCCEEDED" and done["created"] == 40, done
    assert mine[0]["payload"]["SyncQueued"]["requested_by"] == ok["requested_by"], mine[0]
    rejected = [e for e in events if e["request_id"] == other["request_id"]]
    assert len(rejected) == 1 and "SyncRejected" in rejected[0]["payload"], rejected
    assert rejected[0]["payload"]["SyncRejected"]["reason"] == "FORBIDDEN", rejected
    assert rejected[0]["job_id"] is None and rejected[0]["seq"] == 0, rejected
    print("  web app request (%s) %s -> job %s: %s; the other org's admin: FORBIDDEN" % (
        framing, ok["request_id"], job_id, " ".join(kinds)), flush=True)
    return p
