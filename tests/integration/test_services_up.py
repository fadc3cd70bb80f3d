"""Harness self-test: the broker and PostgreSQL that tests/harness/services.sh
provides are the ones the other integration and e2e tests expect."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import mslib  # noqa: E402


def test_broker_has_exactly_the_membersync_topics(svc):
    topics = svc.describe_topics()
    membersync = {n: p for n, p in topics.items() if n.startswith("membersync.")}
    assert membersync == mslib.TOPICS, "membersync topics on the broker: %r, want %r" % (
        membersync, mslib.TOPICS)


def test_broker_settings_for_tests(svc):
    out = svc.kafka_tool("kafka.admin.ConfigCommand", "--bootstrap-server", svc.bootstrap,
                         "--describe", "--entity-type", "brokers", "--entity-name", "1", "--all").stdout
    config = dict(re.findall(r"^\s+([a-z0-9.]+)=(\S*) sensitive=", out, re.M))
    # A typo in a topic name must fail instead of creating a topic; consumer
    # groups must not wait for a rebalance delay; one broker, so RF 1.
    want = {
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
    }
    got = {k: config.get(k) for k in want}
    assert got == want, "broker config %r, want %r" % (got, want)


def test_postgres_is_15_with_membersync_database(svc):
    version = int(svc.psql("show server_version_num"))
    assert 150000 <= version < 160000, "server_version_num %d is not PostgreSQL 15" % version
    assert svc.psql("select current_database()") == "membersync"
    assert svc.query("select datname from pg_database where datname = :'p1'", "membersync") == [("membersync",)]


def test_psql_params_are_quoted_not_spliced(svc):
    tricky = "it's \"quoted\"; drop table x; -- :'p1' \\ | \n second line"
    rows = svc.query("select :'p1'::text, length(:'p1'), NULL::text", tricky)
    assert rows == [(tricky, str(len(tricky)), None)], rows
    assert svc.psql("select :'a' || :'b'", a="x|", b="y") == "x|y"


def test_fresh_database_is_separate(svc):
    dsn = svc.fresh_database()
    mslib.psql("create table only_here (v int)", dsn=dsn)
    assert mslib.query_value("select count(*) from pg_tables where tablename = 'only_here'",
                             dsn=svc.pg_dsn) == "0"


if __name__ == "__main__":
    mslib.main()
