"""Interoperability with the Kafka ecosystem without a schema registry
(issue 5, point 8): values in Avro single-object encoding.

An independent client (Confluent's Python consumer and producer, fastavro,
a CRC-64-AVRO fingerprint computed here from the Avro specification) decodes
every event type a real sync writes, checks keys and CloudEvents headers,
and publishes a SyncRequested the way a web app would.  A newer writer
schema cannot be resolved in this framing (the pipeline knows only the
fingerprints of schemas compiled into it), so such a record is
dead-lettered, not lost: tested here, documented in
docs/publishing-triggers.md."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_launch  # noqa: E402

venv_launch.ensure()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))

import interop  # noqa: E402
import mslib  # noqa: E402
from interop import SINGLE_OBJECT  # noqa: E402


def test_crc64_avro_fingerprints_follow_the_spec():
    # The empty input gives the algorithm's empty value; "int" and "null"
    # have known fingerprints (fastavro's and the Avro reference's).
    assert interop.crc64_avro(b"") == interop.CRC64_EMPTY
    assert interop.crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"
    assert interop.crc64_avro(b'"null"') == 7195948357588979594
    fps = {}
    for name in ("SyncRequested", "SyncJob", "SyncEvent", "MemberChanged"):
        s = interop.load_schema(name)   # also cross-checks against fastavro
        assert s.canonical.startswith('{"name":"membersync.v1.%s","type":"record"' % name), \
            s.canonical[:80]
        fps[name] = s.fp
    assert len(set(fps.values())) == 4, fps
    print("  fingerprints: %s" % ", ".join("%s=%016x" % kv for kv in fps.items()))


def test_every_event_type_decodes_from_single_object_records(svc):
    p, labels, refs = interop.sync_everything(svc, reg=None)
    for topic, seen in refs.items():
        framings = {f for f, _ in seen}
        assert framings == {SINGLE_OBJECT}, "%s: framings %s" % (topic, framings)
        assert len(seen) == 1, "%s: more than one writer schema: %s" % (topic, seen)


def test_webapp_publishes_single_object_sync_requested(svc):
    interop.webapp_publish(svc, reg=None)


def test_newer_writer_schema_without_registry_is_dead_lettered_not_lost(svc):
    """A web app that writes single-object records with a newer SyncRequested
    (an added field with a default) needs the pipeline to know that writer
    schema by fingerprint.  Nothing registers it (ms_avro_add_writer_schema
    is a library call with no configuration behind it), so the rate limiter
    sends the record to the DLQ unchanged, with the reason, and goes on."""
    from pipeline import Pipeline

    p = Pipeline(svc, "iopdlq")
    org = "org-%s" % p.tag
    sim = p.sim("consio", generate=10, seed=2)
    p.integration(org, "consio", sim, page_size=10)
    p.start_roles("consio")
    topic = p.topics["sync_requests"]
    newer = interop.evolved_sync_requested()
    v = interop.sync_requested(org, "CONSIO", role="ORG_ADMIN", actor_org=org)
    v_newer = dict(v, client_app="admin-portal 2.0", priority=1)
    raw = interop.frame_single_object(newer, v_newer)
    interop.produce(svc.bootstrap, topic, org, raw, interop.cloudevents_headers(v))

    dlq = mslib.wait_for(lambda: interop.read_topic(svc.bootstrap, p.topics["dlq"]), 60,
                         "the record on the DLQ")
    assert len(dlq) == 1, len(dlq)
    d = dlq[0]
    assert d.value == raw and d.key == org.encode(), (d.key, d.value[:12].hex())
    assert d.headers.get("dlq_topic") == topic, d.headers
    assert "%016x" % newer.fp in d.headers.get("dlq_error", ""), d.headers
    assert not p.query("select 1 from membersync.sync_requests where request_id = :'p1'",
                       v["request_id"])
    print("  dead-lettered: %s (headers: %s)" % (d.headers["dlq_error"], sorted(d.headers)))

    # The same request written with the current schema is accepted.
    v2 = dict(v, request_id=interop.sync_requested(org, "CONSIO")["request_id"])
    interop.produce(svc.bootstrap, topic, org,
                    interop.frame_single_object(interop.load_schema("SyncRequested"), v2),
                    interop.cloudevents_headers(v2))
    decision, job_id, message = interop.wait_decision(p, v2["request_id"])
    assert decision == "QUEUED", (decision, message)
    assert interop.wait_job_done(p, job_id) == "SUCCEEDED"


if __name__ == "__main__":
    mslib.main()
