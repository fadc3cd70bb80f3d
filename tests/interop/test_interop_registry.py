"""Interoperability with the Kafka ecosystem with a schema registry (issue
5, point 8): membersync configured with kafka.schema_registry_url pointing
at a real registry (Apicurio Registry's Confluent-compatible API, installed
by scripts/setup-python.sh) registers its schemas under TopicNameStrategy
subjects `<topic>-value` and frames values in the Confluent wire format.

An independent client (Confluent's Python client and its AvroSerializer,
fastavro, schema ids resolved through the registry's REST API) decodes every
event type, publishes a SyncRequested the way a web app would, and
publishes one with a newer writer schema (added defaulted fields), which the
rate limiter resolves through the registry by id and accepts."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import venv_launch  # noqa: E402

venv_launch.ensure()
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))

import interop  # noqa: E402
import mslib  # noqa: E402
from interop import CONFLUENT  # noqa: E402


def test_every_event_type_decodes_from_confluent_records_and_subjects_exist(svc):
    reg = interop.registry()
    p, labels, refs = interop.sync_everything(svc, reg=reg)
    subjects = reg.client.subjects()
    for key, name in interop.TOPIC_SCHEMAS.items():
        topic = p.topics[key]
        subject = topic + "-value"
        assert subject in subjects, "no subject %s in %s" % (subject, subjects)
        latest = reg.client.latest(subject)
        registered = json.loads(latest["schema"])
        with open(os.path.join(interop.SCHEMA_DIR, name + ".avsc")) as f:
            want = json.load(f)
        # The full schema (docs and logical types included), not a stripped
        # form: consumers that generate code from the registry see it all.
        assert registered == want, "%s: registered schema differs from %s.avsc" % (subject, name)
        assert latest.get("schemaType", "AVRO") == "AVRO", latest
        assert refs[topic] == {(CONFLUENT, latest["id"])}, "%s: ids %s, latest %s" % (
            topic, refs[topic], latest["id"])
    assert p.topics["dlq"] + "-value" not in subjects, "the DLQ carries raw bytes, no subject"
    print("  subjects: %s" % ", ".join(sorted(s for s in subjects if s.startswith(p.tag))))


def test_webapp_publishes_with_confluent_serializer(svc):
    interop.webapp_publish(svc, reg=interop.registry())


def test_webapp_single_object_records_are_accepted_with_a_registry_too(svc):
    # A publisher that does not use the registry (yet): decoders accept
    # both framings, whatever membersync itself writes.
    interop.webapp_publish(svc, reg=interop.registry(), framing=interop.SINGLE_OBJECT)


def test_newer_writer_schema_is_resolved_through_the_registry(svc):
    from pipeline import Pipeline

    reg = interop.registry()
    p = Pipeline(svc, "iopevo", extra_env=interop.registry_env(reg))
    org = "org-%s" % p.tag
    sim = p.sim("cornerstone", generate=25, seed=4)
    p.integration(org, "cornerstone", sim, page_size=10)
    p.start_roles("cornerstone")
    topic = p.topics["sync_requests"]
    subject = topic + "-value"
    current, newer = interop.load_schema("SyncRequested"), interop.evolved_sync_requested()

    # The subject holds the current schema (as after membersync's first
    # trigger); the registry enforces BACKWARD: a field without a default is
    # refused, the newer schema with defaulted fields is a new version.
    first_id = reg.client.register(subject, current.text)
    breaking = json.loads(current.text)
    breaking["fields"].append({"name": "tenant", "type": "string"})
    try:
        reg.client.register(subject, json.dumps(breaking))
        raise AssertionError("the registry accepted a field without a default")
    except interop.RegistryError as e:
        assert e.status == 409, e

    v = interop.sync_requested(org, "CORNERSTONE", role="GLOBAL_ADMIN")
    v.update(client_app="admin-portal 2.0", priority=5)
    raw = interop.confluent_serializer(reg, newer)(topic, v)
    framing, new_id, _ = interop.parse_framing(raw)
    assert framing == CONFLUENT and new_id != first_id, (framing, new_id, first_id)
    assert len(reg.client.versions(subject)) == 2, reg.client.versions(subject)
    interop.produce(svc.bootstrap, topic, org, raw, interop.cloudevents_headers(v))

    decision, job_id, message = interop.wait_decision(p, v["request_id"])
    assert decision == "QUEUED", (decision, message)
    assert interop.wait_job_done(p, job_id) == "SUCCEEDED"

    # Both decoders read the record with today's reader schema: the added
    # fields are dropped, everything else is as written.
    base = {k: v[k] for k in v if k not in ("client_app", "priority")}
    theirs = interop.c_view(p, "sync_requests", 1)
    assert [e.get("value") for e in theirs.values()] == [base], theirs
    _, writer, ref, ours = interop.Decoder(registry=reg.client).decode(raw, "SyncRequested")
    assert ours == base and writer.fp == newer.fp and ref == new_id, (ours, ref)
    print("  id %d (newer SyncRequested, version 2 of %s) accepted: job %s" % (
        new_id, subject, job_id))


def test_unknown_schema_id_is_dead_lettered_and_the_next_request_accepted(svc):
    """A record framed with an id this registry does not have (a producer
    pointed at another registry) is a poison message: the registry answers
    404, the rate limiter sends it to the DLQ unchanged with the reason and
    takes the next request."""
    from pipeline import Pipeline

    reg = interop.registry()
    p = Pipeline(svc, "iopid", extra_env=interop.registry_env(reg))
    org = "org-%s" % p.tag
    sim = p.sim("consio", generate=10, seed=9)
    p.integration(org, "consio", sim, page_size=10)
    p.start_roles("consio")
    topic = p.topics["sync_requests"]
    schema = interop.load_schema("SyncRequested")
    v = interop.sync_requested(org, "CONSIO", role="SYSTEM", trigger="SCHEDULED")
    raw = interop.frame_confluent(987654, schema, v)
    interop.produce(svc.bootstrap, topic, org, raw, interop.cloudevents_headers(v))
    dlq = mslib.wait_for(lambda: interop.read_topic(svc.bootstrap, p.topics["dlq"]), 60,
                         "the record on the DLQ")
    assert len(dlq) == 1 and dlq[0].value == raw, dlq
    assert "987654" in dlq[0].headers.get("dlq_error", ""), dlq[0].headers
    print("  dead-lettered: %s" % dlq[0].headers["dlq_error"])

    v2 = interop.sync_requested(org, "CONSIO", role="SYSTEM", trigger="SCHEDULED")
    interop.produce(svc.bootstrap, topic, org, interop.confluent_serializer(reg, schema)(topic, v2),
                    interop.cloudevents_headers(v2))
    decision, job_id, message = interop.wait_decision(p, v2["request_id"])
    assert decision == "QUEUED", (decision, message)
    assert interop.wait_job_done(p, job_id) == "SUCCEEDED"


if __name__ == "__main__":
    mslib.main()
