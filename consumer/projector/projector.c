/* The projector role: folds SyncEvents into one sync_status row per org and
 * integration, in the same transaction as the consumed offset, and NOTIFYs
 * `membersync_status` with "<org>/<integration>" so API streams push at once.
 *
 * Ordering rule: events of the live job apply in seq order (a replayed or
 * older seq is ignored) and an older job never overwrites a newer one; jobs
 * are ordered by queued_at from sync_jobs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_avro.h"
#include "ms_consumer.h"
#include "ms_health.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_roles.h"
#include "ms_util.h"

typedef struct proj_ctx {
        const ms_conf_t *conf;
        ms_avro_t *codec;
        long long projected;
} proj_ctx_t;

static const char *jstr(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

/* ISO text of an epoch-ms field, or NULL when absent/null. */
static const char *iso_or_null(const json_t *o, const char *k, char *buf, size_t size)
{
        json_t *v = json_object_get(o, k);
        if (!json_is_integer(v))
                return NULL;
        ms_iso8601(json_integer_value(v), buf, size);
        return buf;
}

/* Applies a job event (everything but SyncRejected).  The WHERE clause of the
 * upsert carries the ordering rule, so replays and stale jobs are no-ops. */
static int apply_job_event(PGconn *pg, const json_t *ev, const char *branch,
                           const json_t *pl, int window_s, int *changed, char *errstr,
                           size_t errstr_size)
{
        const char *job_id = jstr(ev, "job_id");
        if (!job_id)
                return 0;
        char seq[24], win[16];
        snprintf(seq, sizeof(seq), "%lld",
                 (long long)json_integer_value(json_object_get(ev, "seq")));
        snprintf(win, sizeof(win), "%d", window_s);
        char *pl_text = json_dumps(pl, JSON_COMPACT);
        const char *p[] = {jstr(ev, "org_id"),
                           jstr(ev, "integration"),
                           job_id,
                           seq,
                           branch,
                           pl_text,
                           win};
        /* One statement per event: the payload is passed as JSON and picked
         * apart in SQL, so every value stays a parameter. */
        PGresult *r = NULL;
        /* The row must exist before the UPDATE: a data-modifying CTE's insert
         * would not be visible to the UPDATE of the same statement. */
        int rc = ms_pg_exec(
            pg,
            "INSERT INTO membersync.sync_status(org_id, integration) VALUES ($1, "
            "$2) ON CONFLICT DO NOTHING",
            2, p, NULL, errstr, errstr_size);
        if (rc)
                goto out;
        rc = ms_pg_exec(
            pg,
            "WITH j AS (SELECT job_id, queued_at, trigger FROM membersync.sync_jobs "
            "WHERE "
            "job_id = $3::uuid), "
            "p AS (SELECT $6::jsonb AS d) "
            "UPDATE membersync.sync_status s SET "
            "  active_job_id = CASE WHEN $5 = 'SyncCompleted' THEN NULL ELSE j.job_id "
            "END, "
            "  active_job_queued_at = CASE WHEN $5 = 'SyncCompleted' THEN NULL ELSE "
            "j.queued_at END, "
            "  active_seq = CASE WHEN $5 = 'SyncCompleted' THEN -1 ELSE $4::bigint END, "
            "  state = CASE $5 WHEN 'SyncQueued' THEN 'QUEUED' WHEN 'SyncCompleted' THEN "
            "p.d->>'outcome' ELSE 'RUNNING' END, "
            "  trigger = j.trigger, "
            "  started_at = CASE $5 WHEN 'SyncQueued' THEN NULL WHEN 'SyncStarted' THEN "
            "to_timestamp((p.d->>'started_at')::bigint / 1000.0) ELSE s.started_at END, "
            "  records_processed = CASE $5 WHEN 'SyncProgress' THEN "
            "(p.d->>'records_processed')::bigint WHEN 'SyncCompleted' THEN "
            "(p.d->>'records_processed')::bigint WHEN 'SyncQueued' THEN 0 ELSE "
            "s.records_processed END, "
            "  total_estimate = CASE $5 WHEN 'SyncQueued' THEN NULL WHEN 'SyncCompleted' "
            "THEN s.total_estimate ELSE coalesce((p.d->>'total_estimate')::bigint, "
            "s.total_estimate) END, "
            "  errors_so_far = CASE $5 WHEN 'SyncProgress' THEN "
            "(p.d->>'errors_so_far')::bigint WHEN 'SyncQueued' THEN 0 ELSE "
            "s.errors_so_far "
            "END, "
            "  eta_at = CASE $5 WHEN 'SyncProgress' THEN to_timestamp((p.d->>'eta_at')::"
            "bigint / 1000.0) ELSE NULL END, "
            "  next_manual_allowed_at = CASE WHEN $5 = 'SyncQueued' AND j.trigger = "
            "'MANUAL' "
            "THEN greatest(s.next_manual_allowed_at, j.queued_at + make_interval(secs => "
            "$7::int)) ELSE s.next_manual_allowed_at END, "
            "  last_job_id = CASE $5 WHEN 'SyncCompleted' THEN j.job_id ELSE "
            "s.last_job_id "
            "END, "
            "  last_job_queued_at = CASE $5 WHEN 'SyncCompleted' THEN j.queued_at ELSE "
            "s.last_job_queued_at END, "
            "  last_outcome = CASE $5 WHEN 'SyncCompleted' THEN p.d->>'outcome' ELSE "
            "s.last_outcome END, "
            "  last_sync_at = CASE $5 WHEN 'SyncCompleted' THEN "
            "to_timestamp((p.d->>'finished_at')::bigint / 1000.0) ELSE s.last_sync_at "
            "END, "
            "  last_records_processed = CASE $5 WHEN 'SyncCompleted' THEN "
            "(p.d->>'records_processed')::bigint ELSE s.last_records_processed END, "
            "  records_synced = CASE $5 WHEN 'SyncCompleted' THEN "
            "(p.d->>'records_synced')::bigint ELSE s.records_synced END, "
            "  created = CASE $5 WHEN 'SyncCompleted' THEN (p.d->>'created')::bigint "
            "ELSE "
            "s.created END, "
            "  updated = CASE $5 WHEN 'SyncCompleted' THEN (p.d->>'updated')::bigint "
            "ELSE "
            "s.updated END, "
            "  deactivated = CASE $5 WHEN 'SyncCompleted' THEN "
            "(p.d->>'deactivated')::bigint ELSE s.deactivated END, "
            "  unchanged = CASE $5 WHEN 'SyncCompleted' THEN (p.d->>'unchanged')::bigint "
            "ELSE s.unchanged END, "
            "  error_count = CASE $5 WHEN 'SyncCompleted' THEN "
            "(p.d->>'error_count')::bigint ELSE s.error_count END, "
            "  warning_count = CASE $5 WHEN 'SyncCompleted' THEN "
            "(p.d->>'warning_count')::bigint ELSE s.warning_count END, "
            "  failure_reason = CASE $5 WHEN 'SyncCompleted' THEN p.d->>'failure_reason' "
            "ELSE s.failure_reason END, "
            "  updated_at = now() "
            "FROM j, p WHERE s.org_id = $1 AND s.integration = $2 AND ("
            /* the live job, a later seq */
            "  (s.active_job_id = j.job_id AND $4::bigint > s.active_seq) OR "
            /* a newer job than both the live and the last completed one */
            "  ((s.active_job_id IS NULL OR s.active_job_queued_at < j.queued_at) AND "
            "   (s.last_job_queued_at IS NULL OR s.last_job_queued_at < j.queued_at))) "
            "RETURNING 1",
            7, p, &r, errstr, errstr_size);
        if (rc)
                goto out;
        *changed = PQntuples(r) > 0;
out:
        PQclear(r);
        free(pl_text);
        return rc;
}

static int apply_rejection(PGconn *pg, const json_t *ev, const json_t *pl, int *changed,
                           char *errstr, size_t errstr_size)
{
        char nb[40], at[40];
        const char *next = iso_or_null(pl, "next_allowed_at", nb, sizeof(nb));
        const char *when = iso_or_null(ev, "occurred_at", at, sizeof(at));
        json_t *rej = json_pack("{s:O, s:O, s:s?, s:O, s:s?, s:s?}", "reason",
                                json_object_get(pl, "reason"), "message",
                                json_object_get(pl, "message"), "next_allowed_at", next,
                                "existing_job_id", json_object_get(pl, "existing_job_id"),
                                "at", when, "request_id", jstr(ev, "request_id"));
        char *text = json_dumps(rej, JSON_COMPACT);
        json_decref(rej);
        const char *p[] = {jstr(ev, "org_id"), jstr(ev, "integration"), text, next};
        int rc =
            ms_pg_exec(pg,
                       "INSERT INTO membersync.sync_status AS s(org_id, integration, "
                       "last_rejection, next_manual_allowed_at) VALUES ($1, $2, $3, $4) "
                       "ON CONFLICT (org_id, integration) DO UPDATE SET last_rejection = "
                       "EXCLUDED.last_rejection, next_manual_allowed_at = "
                       "greatest(s.next_manual_allowed_at, "
                       "EXCLUDED.next_manual_allowed_at), updated_at = now()",
                       4, p, NULL, errstr, errstr_size);
        free(text);
        *changed = rc == 0;
        return rc;
}

/* Epoch ms of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z. */
#define PROJ_TIME_MIN (-62135596800000LL)
#define PROJ_TIME_MAX 253402300799999LL

/* An event that decodes can still carry values PostgreSQL refuses: a job id
 * that is not a UUID, a time outside the years 1..9999.  Retrying those can
 * never succeed and would stall every event behind them on the partition,
 * so they are refused here as undecodable and dead-lettered (issue 4). */
static int event_valid(const json_t *ev, const json_t *pl, char *errstr,
                       size_t errstr_size)
{
        static const char *const times[] = {"started_at", "eta_at", "finished_at",
                                            "next_allowed_at", "queued_at"};
        const char *job_id = jstr(ev, "job_id");
        if (job_id && !ms_uuid_valid(job_id)) {
                snprintf(errstr, errstr_size, "SyncEvent job_id is not a UUID");
                return MS_ERR_DECODE;
        }
        json_int_t at = json_integer_value(json_object_get(ev, "occurred_at"));
        if (at < PROJ_TIME_MIN || at > PROJ_TIME_MAX) {
                snprintf(errstr, errstr_size, "SyncEvent occurred_at out of range");
                return MS_ERR_DECODE;
        }
        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                json_t *v = json_object_get(pl, times[i]);
                if (json_is_integer(v) && (json_integer_value(v) < PROJ_TIME_MIN ||
                                           json_integer_value(v) > PROJ_TIME_MAX)) {
                        snprintf(errstr, errstr_size, "SyncEvent %s out of range",
                                 times[i]);
                        return MS_ERR_DECODE;
                }
        }
        return 0;
}

static int handle(void *opaque, ms_consumer_t *c, PGconn *pg, const rd_kafka_message_t *m,
                  ms_outbox_t *ob, char *errstr, size_t errstr_size)
{
        proj_ctx_t *ctx = opaque;
        (void)c;
        (void)ob;
        json_t *ev = NULL;
        int rc = ms_avro_decode(ctx->codec, "SyncEvent", m->payload, m->len, &ev, errstr,
                                errstr_size);
        if (rc)
                return rc;
        const char *branch = NULL;
        json_t *pl = NULL;
        json_object_foreach(json_object_get(ev, "payload"), branch, pl) break;
        int changed = 0;
        if (!branch) {
                snprintf(errstr, errstr_size, "SyncEvent without payload");
                rc = MS_ERR_DECODE;
        } else if ((rc = event_valid(ev, pl, errstr, errstr_size))) {
                /* dead-lettered by the framework */
        } else if (strcmp(branch, "SyncRejected") == 0) {
                rc = apply_rejection(pg, ev, pl, &changed, errstr, errstr_size);
        } else {
                rc = apply_job_event(pg, ev, branch, pl, ctx->conf->rl_manual_window_s,
                                     &changed, errstr, errstr_size);
        }
        if (!rc && changed) {
                char chan[300];
                snprintf(chan, sizeof(chan), "%s/%s", jstr(ev, "org_id"),
                         jstr(ev, "integration"));
                const char *p[] = {chan};
                rc = ms_pg_exec(pg, "SELECT pg_notify('membersync_status', $1)", 1, p,
                                NULL, errstr, errstr_size);
                ctx->projected++;
                ms_metrics_counter_add("membersync_events_projected_total",
                                       "SyncEvents that changed a status row", NULL, 1);
        }
        json_decref(ev);
        return rc;
}

int ms_projector_run(const ms_conf_t *conf, char *errstr, size_t errstr_size)
{
        proj_ctx_t ctx = {conf, NULL, 0};
        ms_consumer_conf_t cc = {.tx_handler = handle, .opaque = &ctx};
        return ms_consumer_role_run(conf, "projector", conf->topic_sync_events, cc,
                                    &ctx.codec, NULL, errstr, errstr_size);
}
