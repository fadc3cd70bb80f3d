#include "ms_consumer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_health.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_util.h"

struct ms_consumer {
        ms_consumer_conf_t cc;
        char group[160];
        rd_kafka_t *rk;
        PGconn *pg;
        ms_outbox_t *ob;
        rd_kafka_topic_partition_list_t *assigned; /* current assignment */
        int paused;
        /* The message a long handler works on: its partition being revoked
         * tells the handler to stop. */
        const rd_kafka_message_t *current;
        int current_revoked;
        int need_reseek;
        _Atomic long long last_poll_ms;
        /* Read by the health listener's thread. */
        _Atomic int assign_seen; /* the group gave us an assignment (maybe empty) */
        _Atomic int pg_ok;       /* the last PostgreSQL step worked */
        int64_t last_lag_ms;
        int last_dlq; /* the last message went to the DLQ */
};

static int load_offsets(ms_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
        char err[512];
        for (int i = 0; i < parts->cnt; i++) {
                int64_t next;
                int rc =
                    ms_pg_offset_load(c->pg, c->group, parts->elems[i].topic,
                                      parts->elems[i].partition, &next, err, sizeof(err));
                if (rc == 0) {
                        parts->elems[i].offset = next;
                } else if (rc == MS_ERR_NOTFOUND) {
                        /* A new group starts at the beginning: topics exist
                         * before any role runs, so nothing is skipped. */
                        parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
                } else {
                        ms_log_error("consumer: cannot load offsets: %s", err);
                        return rc;
                }
        }
        return 0;
}

/* Assigns parts at the offsets stored in PG, retrying while PG is away: the
 * assignment must never fall back to a guessed position. */
static void assign_from_pg(ms_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
        while (load_offsets(c, parts) != 0) {
                if (ms_stop)
                        return;
                ms_sleep_ms(1000);
                ms_pg_ensure(c->pg);
        }
        rd_kafka_resume_partitions(c->rk, parts);
        rd_kafka_assign(c->rk, parts);
        c->paused = 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        ms_consumer_t *c = opaque;
        (void)rk;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                ms_log_info("consumer %s: assigned %d partition(s)", c->group,
                            parts->cnt);
                c->assign_seen = 1;
                if (c->assigned)
                        rd_kafka_topic_partition_list_destroy(c->assigned);
                c->assigned = rd_kafka_topic_partition_list_copy(parts);
                assign_from_pg(c, c->assigned);
                /* A rebalance during a long handler re-reads every position
                 * from PG, including those paused before. */
                if (c->current)
                        c->need_reseek = 1;
        } else {
                ms_log_info("consumer %s: revoked %d partition(s)", c->group, parts->cnt);
                if (c->current) {
                        for (int i = 0; i < parts->cnt; i++)
                                if (parts->elems[i].partition == c->current->partition &&
                                    strcmp(parts->elems[i].topic,
                                           rd_kafka_topic_name(c->current->rkt)) == 0)
                                        c->current_revoked = 1;
                }
                if (c->assigned) {
                        rd_kafka_topic_partition_list_destroy(c->assigned);
                        c->assigned = NULL;
                }
                rd_kafka_assign(c->rk, NULL);
                c->paused = 0;
        }
}

int ms_consumer_new(const ms_consumer_conf_t *cc, ms_consumer_t **out, char *errstr,
                    size_t errstr_size)
{
        int rc = MS_ERR_KAFKA;
        ms_consumer_t *c = calloc(1, sizeof(*c));
        rd_kafka_conf_t *kc = NULL;
        if (!c) {
                snprintf(errstr, errstr_size, "consumer: out of memory");
                return MS_ERR_GENERIC;
        }
        c->cc = *cc;
        snprintf(c->group, sizeof(c->group), "%s", cc->group);
        c->pg = ms_pg_connect(cc->conf->pg_dsn, cc->role, errstr, errstr_size);
        if (!c->pg) {
                rc = MS_ERR_PG;
                goto fail;
        }
        c->ob = ms_outbox_new(cc->codec, cc->role);
        kc = ms_kafka_conf_new(cc->conf, cc->role, errstr, errstr_size);
        if (!c->ob || !kc)
                goto fail;
        char sto[16], mpi[16];
        snprintf(sto, sizeof(sto), "%d", cc->conf->kafka_session_timeout_ms);
        snprintf(mpi, sizeof(mpi), "%d", cc->conf->kafka_max_poll_interval_ms);
        if (ms_kafka_conf_set(kc, "group.id", c->group, errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "enable.auto.commit", "false", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "enable.auto.offset.store", "false", errstr,
                              errstr_size) ||
            ms_kafka_conf_set(kc, "auto.offset.reset", "earliest", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "session.timeout.ms", sto, errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "max.poll.interval.ms", mpi, errstr, errstr_size))
                goto fail;
        rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
        rd_kafka_conf_set_opaque(kc, c);
        char err[512];
        c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!c->rk) {
                snprintf(errstr, errstr_size, "kafka: consumer: %s", err);
                goto fail;
        }
        kc = NULL;
        rd_kafka_poll_set_consumer(c->rk);
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(4);
        for (int i = 0; i < 4 && cc->topics[i]; i++)
                rd_kafka_topic_partition_list_add(subs, cc->topics[i],
                                                  RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (e) {
                snprintf(errstr, errstr_size, "kafka: subscribe: %s",
                         rd_kafka_err2str(e));
                goto fail;
        }
        c->last_poll_ms = ms_mono_ms();
        c->pg_ok = 1;
        *out = c;
        return 0;
fail:
        if (kc)
                rd_kafka_conf_destroy(kc);
        ms_consumer_destroy(c);
        return rc;
}

void ms_consumer_destroy(ms_consumer_t *c)
{
        if (!c)
                return;
        if (c->rk) {
                /* Leaves the group at once so partitions move without waiting
                 * for the session timeout. */
                rd_kafka_consumer_close(c->rk);
                rd_kafka_destroy(c->rk);
        }
        if (c->assigned)
                rd_kafka_topic_partition_list_destroy(c->assigned);
        ms_outbox_destroy(c->ob);
        if (c->pg)
                PQfinish(c->pg);
        free(c);
}

int ms_consumer_store_offset(ms_consumer_t *c, PGconn *pg, const rd_kafka_message_t *m,
                             char *errstr, size_t errstr_size)
{
        return ms_pg_offset_store(pg, c->group, rd_kafka_topic_name(m->rkt), m->partition,
                                  m->offset + 1, errstr, errstr_size);
}

static void commit_to_kafka(ms_consumer_t *c, const rd_kafka_message_t *m)
{
        /* Informational only (lag dashboards): PG holds the truth. */
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)
            ->offset = m->offset + 1;
        rd_kafka_commit(c->rk, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
}

static void reseek(ms_consumer_t *c)
{
        if (c->assigned)
                assign_from_pg(c, c->assigned);
        c->need_reseek = 0;
}

int ms_consumer_keepalive(ms_consumer_t *c)
{
        if (!c->paused && c->assigned) {
                rd_kafka_pause_partitions(c->rk, c->assigned);
                c->paused = 1;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        c->last_poll_ms = ms_mono_ms();
        if (m) {
                /* Pre-fetched before the pause: dropped here and read again
                 * after the handler, since positions are re-read from PG. */
                c->need_reseek = 1;
                rd_kafka_message_destroy(m);
        }
        return ms_stop || c->current_revoked;
}

static int dead_letter(ms_consumer_t *c, const rd_kafka_message_t *m, const char *why)
{
        char err[512], part[16], off[24];
        snprintf(part, sizeof(part), "%d", m->partition);
        snprintf(off, sizeof(off), "%lld", (long long)m->offset);
        json_t *h = json_pack("{s:s, s:s, s:s, s:s, s:s}", "dlq_error", why, "dlq_topic",
                              rd_kafka_topic_name(m->rkt), "dlq_partition", part,
                              "dlq_offset", off, "dlq_consumer", c->group);
        if (!h) /* the reason quoted bytes that are not UTF-8 */
                h = json_pack("{s:s, s:s, s:s, s:s, s:s}", "dlq_error",
                              "undecodable message (reason not printable)", "dlq_topic",
                              rd_kafka_topic_name(m->rkt), "dlq_partition", part,
                              "dlq_offset", off, "dlq_consumer", c->group);
        /* The original headers travel along (ce_id and the rest, for
         * tracing); a header that is not valid UTF-8 text is left out, the
         * value bytes themselves are kept whole. */
        rd_kafka_headers_t *orig = NULL;
        if (h && rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                const char *name;
                const void *val;
                size_t len;
                for (size_t i = 0;
                     rd_kafka_header_get_all(orig, i, &name, &val, &len) == 0; i++) {
                        /* A NUL would not survive jsonb (the outbox's
                         * headers column): such a header is left out. */
                        json_t *v = val && memchr(val, 0, len)
                                        ? NULL
                                        : json_stringn(val ? val : "", val ? len : 0);
                        if (v && strncmp(name, "dlq_", 4) != 0)
                                json_object_set_new(h, name, v);
                        else
                                json_decref(v);
                }
        }
        char *key = NULL;
        if (m->key) {
                key = strndup(m->key, m->key_len);
        }
        int rc = ms_pg_begin(c->pg, err, sizeof(err));
        if (!rc)
                rc = ms_outbox_add_raw(c->ob, c->cc.conf->topic_dlq, key ? key : "",
                                       m->payload, m->len, h, err, sizeof(err));
        if (!rc)
                rc = ms_outbox_flush(c->ob, c->pg, err, sizeof(err));
        if (!rc)
                rc = ms_consumer_store_offset(c, c->pg, m, err, sizeof(err));
        if (!rc)
                rc = ms_pg_commit(c->pg, err, sizeof(err));
        if (rc) {
                ms_pg_rollback(c->pg);
                ms_outbox_reset(c->ob);
                ms_log_error("consumer: cannot dead-letter %s[%d]@%lld: %s",
                             rd_kafka_topic_name(m->rkt), m->partition,
                             (long long)m->offset, err);
        } else {
                c->last_dlq = 1;
                ms_log_warn("consumer: %s[%d]@%lld sent to the DLQ: %s",
                            rd_kafka_topic_name(m->rkt), m->partition,
                            (long long)m->offset, why);
        }
        free(key);
        json_decref(h);
        return rc;
}

static int handle_tx(ms_consumer_t *c, const rd_kafka_message_t *m)
{
        char err[1024] = "";
        int rc = ms_pg_begin(c->pg, err, sizeof(err));
        if (!rc)
                rc = c->cc.tx_handler(c->cc.opaque, c, c->pg, m, c->ob, err, sizeof(err));
        if (rc == MS_ERR_DECODE) {
                ms_pg_rollback(c->pg);
                ms_outbox_reset(c->ob);
                return dead_letter(c, m, err);
        }
        if (!rc)
                rc = ms_consumer_store_offset(c, c->pg, m, err, sizeof(err));
        if (!rc)
                rc = ms_outbox_flush(c->ob, c->pg, err, sizeof(err));
        if (!rc)
                rc = ms_pg_commit(c->pg, err, sizeof(err));
        if (rc) {
                ms_pg_rollback(c->pg);
                ms_outbox_reset(c->ob);
                ms_log_error("consumer: %s[%d]@%lld failed, will retry: %s",
                             rd_kafka_topic_name(m->rkt), m->partition,
                             (long long)m->offset, err);
        }
        return rc;
}

static void count_message(ms_consumer_t *c, const char *result)
{
        char labels[256];
        ms_metrics_counter_add("membersync_messages_total",
                               "Messages consumed by a role, by result (ok, dlq, retry, "
                               "interrupted)",
                               ms_metrics_labels(labels, sizeof(labels), "role",
                                                 c->cc.role, "result", result, NULL),
                               1);
}

/* Consumer lag from librdkafka's cached high watermarks (no broker round
 * trip): what KEDA and alerts look at. */
static void update_lag(ms_consumer_t *c)
{
        c->last_lag_ms = c->last_poll_ms;
        if (!c->assigned)
                return;
        rd_kafka_topic_partition_list_t *pos =
            rd_kafka_topic_partition_list_copy(c->assigned);
        rd_kafka_position(c->rk, pos);
        long long lag = 0;
        for (int i = 0; i < pos->cnt; i++) {
                int64_t lo, hi;
                if (pos->elems[i].offset < 0 ||
                    rd_kafka_get_watermark_offsets(c->rk, pos->elems[i].topic,
                                                   pos->elems[i].partition, &lo,
                                                   &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                    hi < pos->elems[i].offset)
                        continue;
                lag += hi - pos->elems[i].offset;
        }
        char labels[256];
        ms_metrics_gauge_set(
            "membersync_consumer_lag",
            "Messages not yet consumed on the role's assigned partitions",
            ms_metrics_labels(labels, sizeof(labels), "group", c->group, "topic",
                              c->cc.topics[0], NULL),
            (double)lag);
        rd_kafka_topic_partition_list_destroy(pos);
}

int ms_consumer_run(ms_consumer_t *c, char *errstr, size_t errstr_size)
{
        int backoff_ms = 100;
        (void)errstr;
        (void)errstr_size;
        while (!ms_stop) {
                if (c->cc.tick)
                        c->cc.tick(c->cc.opaque, c->pg);
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
                c->last_poll_ms = ms_mono_ms();
                if (c->last_poll_ms - c->last_lag_ms >= 5000)
                        update_lag(c);
                if (!m)
                        continue;
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                ms_log_warn("consumer %s: %s", c->group,
                                            rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                int rc;
                c->last_dlq = 0;
                if (c->cc.tx_handler) {
                        rc = handle_tx(c, m);
                } else {
                        char err[1024] = "";
                        c->current = m;
                        c->current_revoked = 0;
                        rc = c->cc.long_handler(c->cc.opaque, c, c->pg, m, c->ob, err,
                                                sizeof(err));
                        c->current = NULL;
                        if (rc == MS_ERR_DECODE)
                                rc = dead_letter(c, m, err);
                        else if (rc < 0)
                                ms_log_error(
                                    "consumer: %s[%d]@%lld failed, will retry: %s",
                                    rd_kafka_topic_name(m->rkt), m->partition,
                                    (long long)m->offset, err);
                        if (c->paused || c->need_reseek || c->current_revoked)
                                c->need_reseek = 1;
                }
                c->pg_ok = PQstatus(c->pg) == CONNECTION_OK;
                count_message(c, rc == 0 ? (c->last_dlq ? "dlq" : "ok")
                                 : rc == MS_CONSUMER_INTERRUPTED ? "interrupted"
                                                                 : "retry");
                if (rc == 0) {
                        commit_to_kafka(c, m);
                        backoff_ms = 100;
                } else {
                        /* Effects were rolled back: read the message again
                         * from the stored position after a pause. */
                        c->need_reseek = 1;
                        if (rc < 0) {
                                ms_sleep_ms(backoff_ms);
                                backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
                                ms_pg_ensure(c->pg);
                        }
                }
                rd_kafka_message_destroy(m);
                if (c->need_reseek)
                        reseek(c);
        }
        return 0;
}

long long ms_consumer_poll_age_ms(const ms_consumer_t *c)
{
        return ms_mono_ms() - c->last_poll_ms;
}

int ms_consumer_assigned_count(const ms_consumer_t *c)
{
        return c->assigned ? c->assigned->cnt : 0;
}

/* Live: the loop polled recently.  Every loop step is bounded: poll 100 ms, a
 * page transaction, or a long handler that keeps polling between pages. */
static int live_check(void *opaque, char *why, size_t why_size)
{
        ms_consumer_t *c = opaque;
        long long age = ms_consumer_poll_age_ms(c);
        if (age <= 60000)
                return 1;
        snprintf(why, why_size, "consumer loop last polled %lld ms ago", age);
        return 0;
}

/* Ready: joined the group (an assignment arrived, possibly empty when there
 * are more instances than partitions) and PostgreSQL answers. */
static int ready_check(void *opaque, char *why, size_t why_size)
{
        ms_consumer_t *c = opaque;
        if (!c->assign_seen) {
                snprintf(why, why_size, "waiting for a partition assignment");
                return 0;
        }
        if (!c->pg_ok) {
                snprintf(why, why_size, "PostgreSQL is not reachable");
                return 0;
        }
        return 1;
}

int ms_consumer_role_run(const ms_conf_t *conf, const char *name, const char *topic,
                         ms_consumer_conf_t cc, ms_avro_t **codec_slot,
                         ms_consumer_t **consumer_slot, char *errstr, size_t errstr_size)
{
        ms_consumer_t *c = NULL;
        ms_health_t *health = NULL;
        int rc = ms_avro_new(
            conf->kafka_schema_registry_url[0] ? conf->kafka_schema_registry_url : NULL,
            codec_slot, errstr, errstr_size);
        if (rc)
                return rc;
        char group[160];
        snprintf(group, sizeof(group), "%s-%s", conf->kafka_group_prefix, name);
        cc.conf = conf;
        cc.role = name;
        cc.group = group;
        cc.topics[0] = topic;
        cc.topics[1] = NULL;
        cc.codec = *codec_slot;
        if ((rc = ms_consumer_new(&cc, &c, errstr, errstr_size)))
                goto out;
        if (consumer_slot)
                *consumer_slot = c;
        if (conf->health_port > 0 &&
            (rc = ms_health_start(conf->health_port, NULL, &health, errstr, errstr_size)))
                goto out;
        if (health)
                ms_health_set_checks(health, live_check, ready_check, c);
        ms_log_info("%s: consuming %s as group %s", name, topic, group);
        rc = ms_consumer_run(c, errstr, errstr_size);
out:
        if (consumer_slot)
                *consumer_slot = NULL;
        ms_health_stop(health);
        ms_consumer_destroy(c);
        ms_avro_destroy(*codec_slot);
        *codec_slot = NULL;
        return rc;
}
