/* The relay role: publishes the transactional outbox to Kafka.
 *
 * Rows are read in id order and produced with the idempotent producer, so
 * per-key (per-partition) order is the order the writers committed them in;
 * a row is deleted only after its delivery report says the broker has it.  A
 * crash between delivery and delete republishes the row: duplicates are
 * possible, loss is not, and every event carries a stable event id.
 *
 * The producer never gives up on a message (message.timeout.ms=0): with the
 * idempotent producer that keeps every partition's order even through a
 * long broker outage, where a timed-out message retried later would land
 * behind its successors.  The outbox simply waits meanwhile.
 *
 * Only one relay publishes at a time (a PostgreSQL advisory lock), because
 * two would interleave rows of the same key; others wait as hot standbys. */
#include <arpa/inet.h>
#include <endian.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_health.h"
#include "ms_kafka.h"
#include "ms_outbox.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_roles.h"
#include "ms_util.h"

#define RELAY_LOCK_KEY "72010002"

typedef struct relay_batch {
        int n;
        int *delivered; /* per row: 0 pending, 1 delivered, -1 failed */
        int64_t *ids;
        int pending;
} relay_batch_t;

typedef struct row_ref {
        relay_batch_t *batch;
        int index;
} row_ref_t;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        row_ref_t *ref = m->_private;
        ref->batch->delivered[ref->index] = m->err ? -1 : 1;
        ref->batch->pending--;
        if (m->err)
                ms_log_error("relay: delivery failed: %s", rd_kafka_err2str(m->err));
}

static int add_headers(rd_kafka_headers_t *hdrs, const char *json_text)
{
        json_error_t jerr;
        json_t *h = json_loads(json_text, 0, &jerr);
        if (!json_is_object(h)) {
                json_decref(h);
                return -1;
        }
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
                const char *s = json_string_value(v);
                if (s)
                        rd_kafka_header_add(hdrs, k, -1, s, -1);
        }
        json_decref(h);
        return 0;
}

/* Publishes one batch; returns rows published (>= 0) or a negative error. */
/* beat: kept alive while deliveries are awaited, which may be long when the
 * broker is away (the process is then healthy, only waiting). */
static int publish_batch(rd_kafka_t *rk, PGconn *pg, int batch_size,
                         ms_health_beat_t *beat, char *errstr, size_t errstr_size)
{
        char lim[16];
        snprintf(lim, sizeof(lim), "%d", batch_size);
        const char *p[] = {lim};
        /* Binary results so the bytea value arrives as raw bytes. */
        PGresult *r = PQexecParams(pg,
                                   "SELECT id, topic, key, value, headers::text FROM "
                                   "membersync.outbox ORDER BY id LIMIT $1::int",
                                   1, NULL, p, NULL, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                snprintf(errstr, errstr_size, "relay: %s", PQresultErrorMessage(r));
                PQclear(r);
                return MS_ERR_PG;
        }
        int n = PQntuples(r);
        if (n == 0) {
                PQclear(r);
                return 0;
        }
        relay_batch_t b = {n, calloc((size_t)n, sizeof(int)),
                           calloc((size_t)n, sizeof(int64_t)), 0};
        row_ref_t *refs = calloc((size_t)n, sizeof(row_ref_t));
        int rc = 0, published = 0;
        if (!b.delivered || !b.ids || !refs) {
                snprintf(errstr, errstr_size, "relay: out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        for (int i = 0; i < n; i++) {
                uint64_t be;
                memcpy(&be, PQgetvalue(r, i, 0), 8);
                b.ids[i] = (int64_t)be64toh(be);
                char *topic = strndup(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
                char *hdr_text =
                    strndup(PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4));
                rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
                if (!topic || !hdr_text || add_headers(hdrs, hdr_text)) {
                        ms_log_error("relay: outbox row %lld has bad headers; kept",
                                     (long long)b.ids[i]);
                        free(topic);
                        free(hdr_text);
                        rd_kafka_headers_destroy(hdrs);
                        b.delivered[i] = -1;
                        continue;
                }
                refs[i].batch = &b;
                refs[i].index = i;
                rd_kafka_resp_err_t e;
                for (;;) {
                        e = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_KEY(PQgetvalue(r, i, 2),
                                           (size_t)PQgetlength(r, i, 2)),
                            RD_KAFKA_V_VALUE(PQgetvalue(r, i, 3),
                                             (size_t)PQgetlength(r, i, 3)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&refs[i]),
                            RD_KAFKA_V_END);
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 50);
                }
                free(topic);
                free(hdr_text);
                if (e) {
                        /* Not enqueued: headers still ours. */
                        rd_kafka_headers_destroy(hdrs);
                        b.delivered[i] = -1;
                        ms_log_error("relay: produce failed: %s", rd_kafka_err2str(e));
                        continue;
                }
                b.pending++;
        }
        /* Wait for every delivery report of the batch. */
        while (b.pending > 0 && !ms_stop) {
                rd_kafka_poll(rk, 100);
                ms_health_beat(beat);
        }
        if (b.pending > 0) {
                /* Shutting down: let librdkafka finish what is in flight. */
                rd_kafka_flush(rk, 10000);
        }
        /* Delete what the broker acknowledged; failures stay for a retry. */
        size_t cap = (size_t)n * 21 + 3;
        char *arr = malloc(cap);
        if (!arr) {
                snprintf(errstr, errstr_size, "relay: out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        size_t len = 0;
        arr[len++] = '{';
        for (int i = 0; i < n; i++) {
                if (b.delivered[i] != 1)
                        continue;
                len += (size_t)snprintf(arr + len, cap - len, "%s%lld",
                                        published ? "," : "", (long long)b.ids[i]);
                published++;
        }
        arr[len++] = '}';
        arr[len] = '\0';
        if (published > 0) {
                const char *dp[] = {arr};
                rc = ms_pg_exec(
                    pg, "DELETE FROM membersync.outbox WHERE id = ANY($1::bigint[])", 1,
                    dp, NULL, errstr, errstr_size);
        }
        free(arr);
        if (published < n && rc == 0) {
                snprintf(errstr, errstr_size, "relay: %d of %d rows not delivered",
                         n - published, n);
                rc = MS_ERR_KAFKA;
        }
out:
        free(b.delivered);
        free(b.ids);
        free(refs);
        PQclear(r);
        return rc ? rc : published;
}

typedef struct relay_health {
        ms_health_beat_t beat;
        _Atomic int pg_ok;
} relay_health_t;

static int relay_live(void *opaque, char *why, size_t why_size)
{
        relay_health_t *h = opaque;
        return ms_health_beat_check(&h->beat, 60000, why, why_size);
}

/* A standby relay (not holding the lock) is ready too: it serves as soon as
 * the active one goes away. */
static int relay_ready(void *opaque, char *why, size_t why_size)
{
        relay_health_t *h = opaque;
        if (h->pg_ok)
                return 1;
        snprintf(why, why_size, "PostgreSQL is not reachable");
        return 0;
}

int ms_relay_run(const ms_conf_t *conf, char *errstr, size_t errstr_size)
{
        int rc = 0;
        PGconn *pg = NULL;
        ms_health_t *health = NULL;
        relay_health_t hs;
        memset(&hs, 0, sizeof(hs));
        ms_health_beat(&hs.beat);
        if (conf->health_port > 0) {
                if ((rc = ms_health_start(conf->health_port, NULL, &health, errstr,
                                          errstr_size)))
                        return rc;
                ms_health_set_checks(health, relay_live, relay_ready, &hs);
        }
        int64_t last_depth_ms = 0;
        rd_kafka_t *rk =
            ms_kafka_producer_new(conf, "relay", 0, dr_msg_cb, NULL, errstr, errstr_size);
        if (!rk)
                return MS_ERR_KAFKA;
        int have_lock = 0;
        int backoff = 100;
        while (!ms_stop) {
                char err[512];
                ms_health_beat(&hs.beat);
                hs.pg_ok = pg && PQstatus(pg) == CONNECTION_OK;
                if (pg && hs.pg_ok && ms_mono_ms() - last_depth_ms >= 5000) {
                        last_depth_ms = ms_mono_ms();
                        long long depth = ms_outbox_depth(pg);
                        if (depth >= 0)
                                ms_metrics_gauge_set("membersync_outbox_depth",
                                                     "Outbox rows not yet published",
                                                     NULL, (double)depth);
                }
                if (pg && have_lock && PQstatus(pg) != CONNECTION_OK) {
                        /* ms_pg_ensure reconnects with PQreset, which opens a
                         * new session: the session-level publish lock died
                         * with the old one.  Take it again before publishing,
                         * or this relay and a standby that took the lock
                         * meanwhile would both publish (issue 4). */
                        have_lock = 0;
                        ms_log_warn("relay: connection to PostgreSQL lost; the publish "
                                    "lock must be taken again");
                }
                if (!pg || !ms_pg_ensure(pg)) {
                        if (!pg)
                                pg = ms_pg_connect(conf->pg_dsn, "relay", err,
                                                   sizeof(err));
                        if (!pg || PQstatus(pg) != CONNECTION_OK) {
                                ms_log_error("relay: %s", pg ? PQerrorMessage(pg) : err);
                                ms_sleep_ms(1000);
                                have_lock = 0;
                                continue;
                        }
                        have_lock = 0;
                }
                if (!have_lock) {
                        PGresult *r = NULL;
                        if (ms_pg_exec(pg,
                                       "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")",
                                       0, NULL, &r, err, sizeof(err)) == 0) {
                                have_lock = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
                                PQclear(r);
                        }
                        if (!have_lock) {
                                ms_sleep_ms(1000);
                                continue;
                        }
                        ms_log_info("relay: holding the publish lock");
                }
                int n = publish_batch(rk, pg, conf->relay_batch_size, &hs.beat, err,
                                      sizeof(err));
                if (n < 0) {
                        ms_log_error("%s", err);
                        ms_sleep_ms(backoff);
                        backoff = backoff < 5000 ? backoff * 2 : 5000;
                        continue;
                }
                backoff = 100;
                if (n > 0)
                        ms_metrics_counter_add("membersync_events_published_total",
                                               "Outbox events published to Kafka", NULL,
                                               n);
                rd_kafka_poll(rk, 0);
                if (n < conf->relay_batch_size)
                        ms_sleep_ms(conf->relay_idle_poll_ms);
        }
        rd_kafka_flush(rk, 10000);
        rd_kafka_destroy(rk);
        if (pg)
                PQfinish(pg);
        ms_health_stop(health);
        return rc;
}
