/* membersync-check: the offline delivery checker (issue 4, point 6).
 *
 * Reads the sync-events and member-changes topics from the beginning up to
 * their current end and reports, per key, what the delivery rule of
 * DESIGN 2 forbids:
 *   - lost: a gap in the seq of a job's SyncEvents (0 = SyncQueued, then 1..
 *     from the connector); with PostgreSQL (--pg / --dsn) also a job whose
 *     recorded seq, outcome or counts have no matching events, a decided
 *     request without its SyncQueued/SyncRejected, and a member the members
 *     table says changed in a job without a MemberChanged of that job;
 *   - out of order: on one partition and key, a new (not duplicate) SyncEvent
 *     whose seq is below one already seen for the same job, or a new
 *     MemberChanged of an older job after one of a newer job;
 *   - applied twice: two different events (event ids) for the same job seq,
 *     or for the same member in the same job;
 *   - mismatched: an event that contradicts PostgreSQL (a member's stored
 *     data differs from the last event's `after`, a count differs) or whose
 *     key / ce_id header does not fit its value;
 *   - duplicates by event_id (allowed by the rule, counted per key).
 * Prints one JSON document; exit status 0 when clean, 1 when anything was
 * lost, out of order, applied twice or mismatched, 2 on usage or
 * configuration errors, 3 when Kafka or PostgreSQL could not be read.
 *
 * Everything is held in jansson objects used as hash maps: a fault test has
 * tens of thousands of events, far below what that costs. */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms_avro.h"
#include "ms_conf.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_util.h"

/* Items listed per category; the counts are always complete. */
#define MAX_ITEMS 50

typedef struct report {
        json_t *cat[5]; /* {"count": n, "items": [...]} per category below */
        json_t *dup_by_key;
        long long dups;
} report_t;

enum { LOST = 0, OUT_OF_ORDER, APPLIED_TWICE, MISMATCHED, UNDECODABLE };
static const char *const cat_names[] = {"lost", "out_of_order", "applied_twice",
                                        "mismatched", "undecodable"};

/* One event read from a topic, with where it was. */
typedef struct event {
        const char *topic;
        int32_t partition;
        int64_t offset;
        const char *key; /* NUL-terminated copy */
        const char *ce_id;
        json_t *value; /* decoded, NULL when undecodable */
        const char *decode_error;
} event_t;

typedef int (*event_fn)(void *opaque, const event_t *ev);

static void add_item(report_t *rep, int cat, json_t *item /* stolen */)
{
        json_t *c = rep->cat[cat];
        json_object_set_new(
            c, "count",
            json_integer(json_integer_value(json_object_get(c, "count")) + 1));
        json_t *items = json_object_get(c, "items");
        if (json_array_size(items) < MAX_ITEMS)
                json_array_append(items, item);
        json_decref(item);
}

static long long cat_count(const report_t *rep, int cat)
{
        return json_integer_value(json_object_get(rep->cat[cat], "count"));
}

static const char *jstr(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

/* Reads every partition of topic from its low to its high watermark (the
 * end when we looked), calling fn per message in offset order per
 * partition. */
static int read_topic(const ms_conf_t *conf, ms_avro_t *codec, const char *topic,
                      const char *schema, int timeout_ms, event_fn fn, void *opaque,
                      long long *messages, char *errstr, size_t errstr_size)
{
        int rc = MS_ERR_KAFKA;
        char err[512], group[37];
        rd_kafka_t *rk = NULL;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        int64_t *high = NULL;
        int *done = NULL;
        rd_kafka_conf_t *kc =
            ms_kafka_conf_new(conf, "membersync-check", errstr, errstr_size);
        if (!kc)
                return MS_ERR_KAFKA;
        ms_uuid_new(group);
        /* A throw-away group that never commits: the checker only reads. */
        if (ms_kafka_conf_set(kc, "group.id", group, errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "enable.auto.commit", "false", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "enable.partition.eof", "true", errstr, errstr_size)) {
                rd_kafka_conf_destroy(kc);
                return MS_ERR_KAFKA;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!rk) {
                rd_kafka_conf_destroy(kc);
                snprintf(errstr, errstr_size, "kafka: %s", err);
                return MS_ERR_KAFKA;
        }
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
        rd_kafka_topic_destroy(rkt);
        if (e || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(errstr, errstr_size, "cannot read metadata of %s: %s", topic,
                         rd_kafka_err2str(e ? e : md->topics[0].err));
                goto out;
        }
        int np = md->topics[0].partition_cnt;
        parts = rd_kafka_topic_partition_list_new(np > 0 ? np : 1);
        high = calloc((size_t)(np > 0 ? np : 1), sizeof(*high));
        done = calloc((size_t)(np > 0 ? np : 1), sizeof(*done));
        if (!high || !done) {
                snprintf(errstr, errstr_size, "out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        int pending = 0;
        for (int i = 0; i < np; i++) {
                int32_t p = md->topics[0].partitions[i].id;
                int64_t lo = 0, hi = 0;
                e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
                if (e) {
                        snprintf(errstr, errstr_size, "watermarks of %s[%d]: %s", topic,
                                 p, rd_kafka_err2str(e));
                        goto out;
                }
                high[i] = hi;
                done[i] = hi <= lo;
                if (!done[i]) {
                        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = lo;
                        pending++;
                }
        }
        if (pending && (e = rd_kafka_assign(rk, parts))) {
                snprintf(errstr, errstr_size, "assign %s: %s", topic,
                         rd_kafka_err2str(e));
                goto out;
        }
        int64_t deadline = ms_mono_ms() + timeout_ms;
        while (pending > 0) {
                if (ms_mono_ms() > deadline) {
                        snprintf(errstr, errstr_size,
                                 "%s: %d partition(s) not read to their end within %d ms",
                                 topic, pending, timeout_ms);
                        goto out;
                }
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                int idx = -1;
                for (int i = 0; i < np; i++)
                        if (md->topics[0].partitions[i].id == m->partition)
                                idx = i;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (idx >= 0 && !done[idx] && m->offset >= high[idx]) {
                                done[idx] = 1;
                                pending--;
                        }
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (m->err) {
                        ms_log_warn("check: %s: %s", topic, rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (idx < 0 || done[idx] || m->offset >= high[idx]) {
                        /* Written after we looked: not part of this check. */
                        if (idx >= 0 && !done[idx]) {
                                done[idx] = 1;
                                pending--;
                        }
                        rd_kafka_message_destroy(m);
                        continue;
                }
                char key[1024] = "", ce_id[128] = "", derr[512] = "";
                if (m->key) {
                        size_t kl =
                            m->key_len < sizeof(key) - 1 ? m->key_len : sizeof(key) - 1;
                        memcpy(key, m->key, kl);
                        key[kl] = '\0';
                }
                ms_kafka_header(m, "ce_id", ce_id, sizeof(ce_id));
                json_t *v = NULL;
                if (ms_avro_decode(codec, schema, m->payload ? m->payload : (void *)"",
                                   m->payload ? m->len : 0, &v, derr, sizeof(derr)))
                        v = NULL;
                event_t ev = {topic, m->partition, m->offset, key, ce_id, v, derr};
                (*messages)++;
                int frc = fn(opaque, &ev);
                json_decref(v);
                if (m->offset >= high[idx] - 1) {
                        done[idx] = 1;
                        pending--;
                }
                rd_kafka_message_destroy(m);
                if (frc) {
                        snprintf(errstr, errstr_size, "out of memory");
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
        }
        rc = 0;
out:
        free(high);
        free(done);
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return rc;
}

/* ---- analysis state ---- */

typedef struct check {
        const ms_conf_t *conf;
        const char *org; /* filter, NULL = all */
        report_t rep;
        /* sync-events */
        json_t *se_ids;     /* event_id -> true */
        json_t *jobs;       /* job_id -> {seqs: {seq: event_id}, org, integration, key,
                               completed: payload|null, completed_seq} */
        json_t *se_order;   /* "partition|key|job" -> last seq */
        json_t *req_events; /* request_id -> seq-0 decision branch */
        long long se_msgs, se_unique, se_dups;
        /* member-changes */
        json_t *mc_ids;   /* event_id -> true */
        json_t *mc_jobs;  /* job_id -> {ext_id: {event_id, op, after}} */
        json_t *mc_order; /* "partition|key" -> {job_id, occurred_at} */
        json_t *job_rank; /* job_id -> queued_at ms (from PG), when known */
        long long mc_msgs, mc_unique, mc_dups;
        long long pg_jobs, pg_members, pg_requests, outbox_pending;
        int used_pg;
} check_t;

static int wanted(const check_t *ck, const json_t *v)
{
        return !ck->org || (jstr(v, "org_id") && strcmp(jstr(v, "org_id"), ck->org) == 0);
}

static void count_dup(check_t *ck, const char *key)
{
        ck->rep.dups++;
        json_t *n = json_object_get(ck->rep.dup_by_key, key);
        json_object_set_new(ck->rep.dup_by_key, key,
                            json_integer(n ? json_integer_value(n) + 1 : 1));
}

static json_t *where(const event_t *ev)
{
        return json_pack("{s:s, s:i, s:I}", "key", ev->key, "partition",
                         (int)ev->partition, "offset", (json_int_t)ev->offset);
}

/* Checks that the key and the ce_id header fit the value. */
static void check_envelope(check_t *ck, const event_t *ev, const char *want_key)
{
        const char *id = jstr(ev->value, "event_id");
        if (strcmp(ev->key, want_key) != 0 || !id || strcmp(ev->ce_id, id) != 0) {
                json_t *it = where(ev);
                json_object_set_new(
                    it, "problem",
                    json_string(strcmp(ev->key, want_key) != 0
                                    ? "key does not fit the value"
                                    : "ce_id header differs from event_id"));
                add_item(&ck->rep, MISMATCHED, it);
        }
}

static int on_sync_event(void *opaque, const event_t *ev)
{
        check_t *ck = opaque;
        json_t *v = ev->value;
        if (!v) {
                json_t *it = where(ev);
                json_object_set_new(it, "error", json_string(ev->decode_error));
                add_item(&ck->rep, UNDECODABLE, it);
                return 0;
        }
        if (!wanted(ck, v))
                return 0;
        ck->se_msgs++;
        const char *id = jstr(v, "event_id");
        if (!id)
                return 0;
        if (json_object_get(ck->se_ids, id)) {
                ck->se_dups++;
                count_dup(ck, ev->key);
                return 0;
        }
        json_object_set_new(ck->se_ids, id, json_true());
        ck->se_unique++;
        char want_key[512];
        snprintf(want_key, sizeof(want_key), "%s/%s", jstr(v, "org_id"),
                 jstr(v, "integration"));
        check_envelope(ck, ev, want_key);

        const char *branch = NULL;
        json_t *pl = NULL;
        json_object_foreach(json_object_get(v, "payload"), branch, pl) break;
        long long seq = json_integer_value(json_object_get(v, "seq"));
        const char *rid = jstr(v, "request_id");
        if (rid && seq == 0 && branch)
                json_object_set_new(ck->req_events, rid, json_string(branch));
        const char *job_id = jstr(v, "job_id");
        if (!job_id)
                return 0; /* a rejection: no job, nothing to order */

        json_t *job = json_object_get(ck->jobs, job_id);
        if (!job) {
                job = json_pack("{s:{}, s:s, s:s, s:s, s:n, s:I}", "seqs", "org_id",
                                jstr(v, "org_id"), "integration", jstr(v, "integration"),
                                "key", want_key, "completed", "completed_seq",
                                (json_int_t)-1);
                if (!job)
                        return -1;
                json_object_set_new(ck->jobs, job_id, job);
        }
        char seqs[24];
        snprintf(seqs, sizeof(seqs), "%lld", seq);
        json_t *prev = json_object_get(json_object_get(job, "seqs"), seqs);
        if (prev) {
                /* Two different events claim the same place in the job. */
                json_t *it = where(ev);
                json_object_set_new(it, "job_id", json_string(job_id));
                json_object_set_new(it, "seq", json_integer(seq));
                json_object_set_new(it, "event_ids",
                                    json_pack("[s, s]", json_string_value(prev), id));
                add_item(&ck->rep, APPLIED_TWICE, it);
        } else {
                json_object_set_new(json_object_get(job, "seqs"), seqs, json_string(id));
        }
        if (branch && strcmp(branch, "SyncCompleted") == 0) {
                json_object_set(job, "completed", pl);
                json_object_set_new(job, "completed_seq", json_integer(seq));
        }
        /* Order: per partition and key, a job's new events never go back. */
        char ok[1200];
        snprintf(ok, sizeof(ok), "%d|%s|%s", (int)ev->partition, ev->key, job_id);
        json_t *last = json_object_get(ck->se_order, ok);
        if (last && seq < json_integer_value(last)) {
                json_t *it = where(ev);
                json_object_set_new(it, "job_id", json_string(job_id));
                json_object_set_new(it, "seq", json_integer(seq));
                json_object_set_new(it, "after_seq",
                                    json_integer(json_integer_value(last)));
                add_item(&ck->rep, OUT_OF_ORDER, it);
        } else {
                json_object_set_new(ck->se_order, ok, json_integer(seq));
        }
        return 0;
}

static int on_member_changed(void *opaque, const event_t *ev)
{
        check_t *ck = opaque;
        json_t *v = ev->value;
        if (!v) {
                json_t *it = where(ev);
                json_object_set_new(it, "error", json_string(ev->decode_error));
                add_item(&ck->rep, UNDECODABLE, it);
                return 0;
        }
        if (!wanted(ck, v))
                return 0;
        ck->mc_msgs++;
        const char *id = jstr(v, "event_id"), *job_id = jstr(v, "job_id");
        const char *ext = jstr(v, "external_id");
        if (!id || !job_id || !ext)
                return 0;
        if (json_object_get(ck->mc_ids, id)) {
                ck->mc_dups++;
                count_dup(ck, ev->key);
                return 0;
        }
        json_object_set_new(ck->mc_ids, id, json_true());
        ck->mc_unique++;
        char want_key[1024];
        snprintf(want_key, sizeof(want_key), "%s/%s/%s", jstr(v, "org_id"),
                 jstr(v, "integration"), ext);
        check_envelope(ck, ev, want_key);

        json_t *per_job = json_object_get(ck->mc_jobs, job_id);
        if (!per_job) {
                per_job = json_object();
                if (!per_job)
                        return -1;
                json_object_set_new(ck->mc_jobs, job_id, per_job);
        }
        json_t *prev = json_object_get(per_job, ext);
        if (prev) {
                /* One job changes a member once: a second event means the
                 * change was applied (and emitted) twice. */
                json_t *it = where(ev);
                json_object_set_new(it, "job_id", json_string(job_id));
                json_object_set_new(it, "event_ids",
                                    json_pack("[s, s]", jstr(prev, "event_id"), id));
                add_item(&ck->rep, APPLIED_TWICE, it);
        } else {
                json_object_set_new(per_job, ext,
                                    json_pack("{s:s, s:s?, s:O}", "event_id", id, "op",
                                              jstr(v, "op"), "after",
                                              json_object_get(v, "after")));
        }
        /* Order per partition and key: never an older job's change after a
         * newer job's.  Jobs are ranked by queued_at from PostgreSQL when we
         * have it, else by the events' occurred_at. */
        char ok[1100];
        snprintf(ok, sizeof(ok), "%d|%s", (int)ev->partition, ev->key);
        json_t *rank = json_object_get(ck->job_rank, job_id);
        long long r = rank ? json_integer_value(rank)
                           : json_integer_value(json_object_get(v, "occurred_at"));
        json_t *last = json_object_get(ck->mc_order, ok);
        if (last && strcmp(jstr(last, "job_id"), job_id) != 0 &&
            r < json_integer_value(json_object_get(last, "rank"))) {
                json_t *it = where(ev);
                json_object_set_new(it, "job_id", json_string(job_id));
                json_object_set_new(it, "after_job_id",
                                    json_string(jstr(last, "job_id")));
                add_item(&ck->rep, OUT_OF_ORDER, it);
        } else {
                json_object_set_new(
                    ck->mc_order, ok,
                    json_pack("{s:s, s:I}", "job_id", job_id, "rank", (json_int_t)r));
        }
        return 0;
}

/* ---- SyncEvents alone: gaps in each job's seq ---- */

static void check_job_gaps(check_t *ck, const char *job_id, json_t *job, long long upto)
{
        json_t *seqs = json_object_get(job, "seqs");
        json_t *missing = json_array();
        long long n_missing = 0;
        for (long long s = 0; s <= upto; s++) {
                char k[24];
                snprintf(k, sizeof(k), "%lld", s);
                if (!json_object_get(seqs, k)) {
                        n_missing++;
                        if (json_array_size(missing) < 20)
                                json_array_append_new(missing, json_integer(s));
                }
        }
        if (n_missing) {
                json_t *it =
                    json_pack("{s:s, s:s, s:s, s:I, s:o}", "what", "sync_event_seq",
                              "key", jstr(job, "key"), "job_id", job_id, "missing_count",
                              (json_int_t)n_missing, "missing", missing);
                add_item(&ck->rep, LOST, it);
        } else {
                json_decref(missing);
        }
}

static long long max_seq(json_t *job)
{
        long long m = -1;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(job, "seqs"), k, v)
        {
                long long s = strtoll(k, NULL, 10);
                if (s > m)
                        m = s;
        }
        return m;
}

/* ---- with PostgreSQL ---- */

static const char *const count_keys[] = {
    "records_processed", "created",     "updated",      "unchanged",
    "deactivated",       "error_count", "warning_count"};

static int pg_load_job_ranks(check_t *ck, PGconn *pg, char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {ck->org};
        int rc = ms_pg_exec(
            pg,
            "SELECT job_id::text, (extract(epoch FROM queued_at) * 1000)::bigint "
            "AS q FROM membersync.sync_jobs WHERE $1::text IS NULL OR org_id = "
            "$1",
            1, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        for (int i = 0; i < PQntuples(r); i++)
                json_object_set_new(ck->job_rank, PQgetvalue(r, i, 0),
                                    json_integer(ms_pg_i64(r, i, "q", 0)));
        PQclear(r);
        return 0;
}

static int pg_check_jobs(check_t *ck, PGconn *pg, char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {ck->org};
        int rc =
            ms_pg_exec(pg,
                       "SELECT job_id::text AS job_id, org_id, integration, state, seq, "
                       "records_processed, created, updated, unchanged, deactivated, "
                       "error_count, warning_count FROM membersync.sync_jobs WHERE "
                       "$1::text IS NULL OR org_id = $1 ORDER BY queued_at",
                       1, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        ck->pg_jobs = PQntuples(r);
        for (int i = 0; i < PQntuples(r); i++) {
                const char *job_id = ms_pg_str(r, i, "job_id");
                const char *state = ms_pg_str(r, i, "state");
                long long seq = ms_pg_i64(r, i, "seq", 0);
                char key[300];
                snprintf(key, sizeof(key), "%s/%s", ms_pg_str(r, i, "org_id"),
                         ms_pg_str(r, i, "integration"));
                json_t *job = json_object_get(ck->jobs, job_id);
                if (!job) {
                        add_item(&ck->rep, LOST,
                                 json_pack("{s:s, s:s, s:s, s:s}", "what",
                                           "sync_job_events", "key", key, "job_id",
                                           job_id, "detail",
                                           "no SyncEvent at all for a job in sync_jobs"));
                        continue;
                }
                /* Every seq PostgreSQL recorded for the job was emitted. */
                long long seen = max_seq(job);
                check_job_gaps(ck, job_id, job, seq > seen ? seq : seen);
                if (seen > seq)
                        add_item(&ck->rep, MISMATCHED,
                                 json_pack("{s:s, s:s, s:s, s:I, s:I}", "what",
                                           "sync_job_seq", "key", key, "job_id", job_id,
                                           "pg_seq", (json_int_t)seq, "event_seq",
                                           (json_int_t)seen));
                if (strcmp(state, "QUEUED") == 0 || strcmp(state, "RUNNING") == 0)
                        continue;
                json_t *done = json_object_get(job, "completed");
                if (!json_is_object(done)) {
                        add_item(&ck->rep, LOST,
                                 json_pack("{s:s, s:s, s:s, s:s}", "what",
                                           "sync_completed", "key", key, "job_id", job_id,
                                           "state", state));
                        continue;
                }
                json_t *diff = json_object();
                if (strcmp(jstr(done, "outcome") ? jstr(done, "outcome") : "", state) !=
                    0)
                        json_object_set_new(
                            diff, "outcome",
                            json_pack("[s?, s]", jstr(done, "outcome"), state));
                for (size_t k = 0; k < sizeof(count_keys) / sizeof(count_keys[0]); k++) {
                        long long ev =
                            json_integer_value(json_object_get(done, count_keys[k]));
                        long long db = ms_pg_i64(r, i, count_keys[k], 0);
                        if (ev != db)
                                json_object_set_new(
                                    diff, count_keys[k],
                                    json_pack("[I, I]", (json_int_t)ev, (json_int_t)db));
                }
                if (json_object_size(diff))
                        add_item(&ck->rep, MISMATCHED,
                                 json_pack("{s:s, s:s, s:s, s:o}", "what",
                                           "sync_completed", "key", key, "job_id", job_id,
                                           "event_vs_pg", diff));
                else
                        json_decref(diff);
                /* MemberChanged per op matches the job's counts. */
                json_t *per_job = json_object_get(ck->mc_jobs, job_id);
                long long got[3] = {0, 0, 0};
                const char *ext;
                json_t *e;
                json_object_foreach(per_job, ext, e)
                {
                        const char *op = jstr(e, "op");
                        if (!op)
                                continue;
                        got[strcmp(op, "CREATED") == 0   ? 0
                            : strcmp(op, "UPDATED") == 0 ? 1
                                                         : 2]++;
                }
                const char *ops[] = {"created", "updated", "deactivated"};
                for (int k = 0; k < 3; k++) {
                        long long want = ms_pg_i64(r, i, ops[k], 0);
                        if (got[k] == want)
                                continue;
                        add_item(&ck->rep, got[k] < want ? LOST : APPLIED_TWICE,
                                 json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "what",
                                           "member_changed_count", "key", key, "job_id",
                                           job_id, "op", ops[k], "events",
                                           (json_int_t)got[k], "job_count",
                                           (json_int_t)want));
                }
        }
        PQclear(r);
        return 0;
}

static int pg_check_requests(check_t *ck, PGconn *pg, char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {ck->org};
        int rc =
            ms_pg_exec(pg,
                       "SELECT request_id::text AS request_id, org_id, integration, "
                       "decision FROM membersync.sync_requests WHERE $1::text IS NULL OR "
                       "org_id = $1",
                       1, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        ck->pg_requests = PQntuples(r);
        for (int i = 0; i < PQntuples(r); i++) {
                const char *rid = ms_pg_str(r, i, "request_id");
                const char *dec = ms_pg_str(r, i, "decision");
                const char *branch = jstr(ck->req_events, rid);
                const char *want =
                    strcmp(dec, "QUEUED") == 0 ? "SyncQueued" : "SyncRejected";
                if (!branch || strcmp(branch, want) != 0) {
                        char key[300];
                        snprintf(key, sizeof(key), "%s/%s", ms_pg_str(r, i, "org_id"),
                                 ms_pg_str(r, i, "integration"));
                        add_item(&ck->rep, branch ? MISMATCHED : LOST,
                                 json_pack("{s:s, s:s, s:s, s:s, s:s?}", "what",
                                           "decision", "key", key, "request_id", rid,
                                           "decision", dec, "event", branch));
                }
        }
        PQclear(r);
        return 0;
}

/* Every member the repository says changed in a job has that job's event,
 * with the op and the data the row holds. */
static int pg_check_members(check_t *ck, PGconn *pg, char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {ck->org};
        int rc = ms_pg_exec(
            pg,
            "SELECT org_id, integration, external_id, last_job_id::text AS job, "
            "active, data::text AS data FROM membersync.members WHERE "
            "last_job_id IS NOT NULL AND ($1::text IS NULL OR org_id = $1)",
            1, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        ck->pg_members = PQntuples(r);
        for (int i = 0; i < PQntuples(r); i++) {
                const char *ext = ms_pg_str(r, i, "external_id");
                const char *job = ms_pg_str(r, i, "job");
                int active = ms_pg_str(r, i, "active")[0] == 't';
                char key[1024];
                snprintf(key, sizeof(key), "%s/%s/%s", ms_pg_str(r, i, "org_id"),
                         ms_pg_str(r, i, "integration"), ext);
                json_t *e = json_object_get(json_object_get(ck->mc_jobs, job), ext);
                if (!e) {
                        add_item(&ck->rep, LOST,
                                 json_pack("{s:s, s:s, s:s, s:s}", "what",
                                           "member_changed", "key", key, "job_id", job,
                                           "detail",
                                           active ? "created or updated in the job"
                                                  : "deactivated in the job"));
                        continue;
                }
                const char *op = jstr(e, "op");
                int op_ok = active ? (op && strcmp(op, "DEACTIVATED") != 0)
                                   : (op && strcmp(op, "DEACTIVATED") == 0);
                int data_ok = 1;
                if (op_ok && active) {
                        json_t *data =
                            json_loads(ms_pg_str(r, i, "data"), JSON_ALLOW_NUL, NULL);
                        data_ok = data && json_equal(data, json_object_get(e, "after"));
                        json_decref(data);
                }
                if (!op_ok || !data_ok)
                        add_item(&ck->rep, MISMATCHED,
                                 json_pack("{s:s, s:s, s:s, s:s?, s:b, s:s}", "what",
                                           "member_changed", "key", key, "job_id", job,
                                           "op", op, "active", active, "detail",
                                           op_ok ? "after differs from the stored member"
                                                 : "op does not fit the stored member"));
        }
        PQclear(r);
        return 0;
}

static int pg_checks(check_t *ck, const char *dsn, int phase, char *errstr,
                     size_t errstr_size)
{
        PGconn *pg = ms_pg_connect(dsn, "check", errstr, errstr_size);
        if (!pg)
                return MS_ERR_PG;
        int rc;
        if (phase == 0) {
                rc = pg_load_job_ranks(ck, pg, errstr, errstr_size);
        } else {
                PGresult *r = NULL;
                rc = ms_pg_exec(pg, "SELECT count(*) FROM membersync.outbox", 0, NULL, &r,
                                errstr, errstr_size);
                if (!rc) {
                        ck->outbox_pending = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
                        PQclear(r);
                }
                if (!rc)
                        rc = pg_check_jobs(ck, pg, errstr, errstr_size);
                if (!rc)
                        rc = pg_check_requests(ck, pg, errstr, errstr_size);
                if (!rc)
                        rc = pg_check_members(ck, pg, errstr, errstr_size);
        }
        PQfinish(pg);
        return rc;
}

static void usage(FILE *f)
{
        fputs("usage: membersync-check [--config FILE] [--org ORG] [--pg | --dsn DSN]\n"
              "                        [--timeout-ms MS] [--pretty]\n"
              "\n"
              "Reads the sync-events and member-changes topics (names, brokers and the\n"
              "configured DSN from the membersync configuration: --config FILE or\n"
              "$MEMBERSYNC_CONFIG, and MEMBERSYNC_<SECTION>_<KEY>) up to their current\n"
              "end and prints a JSON report of lost, out-of-order, applied-twice,\n"
              "mismatched and duplicate events.  --pg compares with PostgreSQL at the\n"
              "configured DSN, --dsn at another one.  Exit status: 0 clean, 1 lost,\n"
              "out of order, applied twice or mismatched, 2 usage, 3 cannot read.\n",
              f);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                             {"org", required_argument, 0, 'o'},
                                             {"pg", no_argument, 0, 'p'},
                                             {"dsn", required_argument, 0, 'd'},
                                             {"timeout-ms", required_argument, 0, 't'},
                                             {"pretty", no_argument, 0, 'P'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
        const char *config = getenv("MEMBERSYNC_CONFIG"), *org = NULL, *dsn = NULL;
        int use_pg = 0, timeout_ms = 60000, pretty = 0, c;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'o':
                        org = optarg;
                        break;
                case 'p':
                        use_pg = 1;
                        break;
                case 'd':
                        dsn = optarg;
                        use_pg = 1;
                        break;
                case 't':
                        timeout_ms = atoi(optarg);
                        break;
                case 'P':
                        pretty = 1;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc || timeout_ms <= 0) {
                usage(stderr);
                return 2;
        }
        if (config && !*config)
                config = NULL;
        /* ms_log writes to stdout, which is the report's: the report gets a
         * private copy of the descriptor and fd 1 becomes stderr, so log
         * lines (librdkafka's included) never mix into the JSON. */
        int report_fd = dup(1);
        FILE *report = report_fd >= 0 ? fdopen(report_fd, "w") : NULL;
        if (!report || dup2(2, 1) < 0) {
                perror("membersync-check");
                return 2;
        }
        ms_conf_t conf;
        char err[1024];
        if (ms_conf_load(config, &conf, err, sizeof(err))) {
                fprintf(stderr, "membersync-check: %s\n", err);
                return 2;
        }
        ms_log_set_role("check");
        ms_log_set_level(MS_LOG_ERROR);
        if (use_pg && !dsn)
                dsn = conf.pg_dsn;

        int rc = 3;
        ms_avro_t *codec = NULL;
        check_t ck;
        memset(&ck, 0, sizeof(ck));
        ck.conf = &conf;
        ck.org = org;
        for (int i = 0; i < 5; i++)
                ck.rep.cat[i] = json_pack("{s:i, s:[]}", "count", 0, "items");
        ck.rep.dup_by_key = json_object();
        ck.se_ids = json_object();
        ck.jobs = json_object();
        ck.se_order = json_object();
        ck.req_events = json_object();
        ck.mc_ids = json_object();
        ck.mc_jobs = json_object();
        ck.mc_order = json_object();
        ck.job_rank = json_object();
        if (ms_avro_new(conf.kafka_schema_registry_url[0] ? conf.kafka_schema_registry_url
                                                          : NULL,
                        &codec, err, sizeof(err)))
                goto out;
        long long msgs = 0;
        /* Job ranks first: the member-changes order check uses them. */
        if (use_pg && pg_checks(&ck, dsn, 0, err, sizeof(err)))
                goto out;
        if (read_topic(&conf, codec, conf.topic_sync_events, "SyncEvent", timeout_ms,
                       on_sync_event, &ck, &msgs, err, sizeof(err)) ||
            read_topic(&conf, codec, conf.topic_member_changes, "MemberChanged",
                       timeout_ms, on_member_changed, &ck, &msgs, err, sizeof(err)))
                goto out;
        if (use_pg) {
                if (pg_checks(&ck, dsn, 1, err, sizeof(err)))
                        goto out;
        } else {
                /* Without PostgreSQL: every seq up to the highest seen. */
                const char *job_id;
                json_t *job;
                json_object_foreach(ck.jobs, job_id, job)
                    check_job_gaps(&ck, job_id, job, max_seq(job));
        }
        ck.used_pg = use_pg;

        /* The keys with the most duplicates, for the report. */
        json_t *top = json_object();
        const char *k;
        json_t *v;
        for (int n = 0; n < 20; n++) {
                const char *best = NULL;
                long long bn = 0;
                json_object_foreach(ck.rep.dup_by_key, k, v)
                {
                        if (!json_object_get(top, k) && json_integer_value(v) > bn) {
                                best = k;
                                bn = json_integer_value(v);
                        }
                }
                if (!best)
                        break;
                json_object_set_new(top, best, json_integer(bn));
        }
        int bad = cat_count(&ck.rep, LOST) || cat_count(&ck.rep, OUT_OF_ORDER) ||
                  cat_count(&ck.rep, APPLIED_TWICE) || cat_count(&ck.rep, MISMATCHED);
        json_t *out = json_pack(
            "{s:b, s:s?, s:{s:s, s:I, s:I, s:I, s:I}, s:{s:s, s:I, s:I, s:I, s:I}, "
            "s:{s:I, s:o}}",
            "ok", !bad, "org", org, "sync_events", "topic", conf.topic_sync_events,
            "messages", (json_int_t)ck.se_msgs, "unique", (json_int_t)ck.se_unique,
            "duplicates", (json_int_t)ck.se_dups, "jobs",
            (json_int_t)json_object_size(ck.jobs), "member_changes", "topic",
            conf.topic_member_changes, "messages", (json_int_t)ck.mc_msgs, "unique",
            (json_int_t)ck.mc_unique, "duplicates", (json_int_t)ck.mc_dups, "keys",
            (json_int_t)json_object_size(ck.mc_order), "duplicates", "count",
            (json_int_t)ck.rep.dups, "top_keys", top);
        for (int i = 0; i < 5; i++)
                json_object_set(out, cat_names[i], ck.rep.cat[i]);
        if (use_pg)
                json_object_set_new(
                    out, "pg",
                    json_pack("{s:I, s:I, s:I, s:I}", "jobs", (json_int_t)ck.pg_jobs,
                              "requests", (json_int_t)ck.pg_requests, "members_checked",
                              (json_int_t)ck.pg_members, "outbox_pending",
                              (json_int_t)ck.outbox_pending));
        json_dumpf(out, report, pretty ? JSON_INDENT(2) | JSON_SORT_KEYS : JSON_COMPACT);
        fputc('\n', report);
        json_decref(out);
        rc = bad ? 1 : 0;
out:
        if (rc == 3)
                fprintf(stderr, "membersync-check: %s\n", err);
        for (int i = 0; i < 5; i++)
                json_decref(ck.rep.cat[i]);
        json_decref(ck.rep.dup_by_key);
        json_decref(ck.se_ids);
        json_decref(ck.jobs);
        json_decref(ck.se_order);
        json_decref(ck.req_events);
        json_decref(ck.mc_ids);
        json_decref(ck.mc_jobs);
        json_decref(ck.mc_order);
        json_decref(ck.job_rank);
        ms_avro_destroy(codec);
        ms_conf_clear(&conf);
        fclose(report);
        return rc;
}
