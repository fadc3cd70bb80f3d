/* The rate limiter role: consumes SyncRequested, decides (authorization,
 * configuration, dedupe, the manual window), and in the same PostgreSQL
 * transaction as the consumed offset records the decision, creates the job
 * and writes SyncJob + SyncQueued (or SyncRejected) to the outbox. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_avro.h"
#include "ms_canon.h"
#include "ms_consumer.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_roles.h"
#include "ms_util.h"

/* Epoch ms of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the times
 * PostgreSQL and ms_iso8601 both handle. */
#define RL_TIME_MIN (-62135596800000LL)
#define RL_TIME_MAX 253402300799999LL

typedef struct rl_ctx {
        const ms_conf_t *conf;
        ms_avro_t *codec;
} rl_ctx_t;

static const char *jstr(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

static json_t *sync_event_new(const char *org, const char *integ, const char *job_id,
                              const char *request_id, long long seq, int64_t now,
                              const char *branch, json_t *payload /* stolen */)
{
        char id[37];
        ms_uuid_new(id);
        return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:I, s:I, s:{s:o}}", "event_id", id,
                         "org_id", org, "integration", integ, "job_id", job_id,
                         "request_id", request_id, "seq", (json_int_t)seq, "occurred_at",
                         (json_int_t)now, "payload", branch, payload);
}

static int emit_event(const rl_ctx_t *ctx, ms_outbox_t *ob, const char *org,
                      const char *integ, json_t *ev /* stolen */, const char *type,
                      char *errstr, size_t errstr_size)
{
        char key[256];
        snprintf(key, sizeof(key), "%s/%s", org, integ);
        if (!ev) {
                snprintf(errstr, errstr_size, "ratelimiter: cannot build %s", type);
                return MS_ERR_GENERIC;
        }
        int rc = ms_outbox_add(ob, ctx->conf->topic_sync_events, key, "SyncEvent", type,
                               ev, errstr, errstr_size);
        json_decref(ev);
        return rc;
}

/* Records the decision for the request and emits SyncRejected. */
static int reject(const rl_ctx_t *ctx, PGconn *pg, ms_outbox_t *ob, json_t *req,
                  const char *reason, const char *message, const char *next_allowed_iso,
                  int64_t next_allowed_ms, const char *existing_job, char *errstr,
                  size_t errstr_size)
{
        const char *org = jstr(req, "org_id"), *integ = jstr(req, "integration");
        const char *rid = jstr(req, "request_id");
        char *by = json_dumps(json_object_get(req, "requested_by"), JSON_COMPACT);
        char reqat[40];
        ms_iso8601(json_integer_value(json_object_get(req, "requested_at")), reqat,
                   sizeof(reqat));
        const char *p[] = {rid,   org,    integ,   jstr(req, "trigger"), by ? by : "{}",
                           reqat, reason, message, next_allowed_iso,     existing_job};
        int rc =
            ms_pg_exec(pg,
                       "INSERT INTO membersync.sync_requests(request_id, org_id, "
                       "integration, trigger, requested_by, requested_at, decision, "
                       "message, next_allowed_at, existing_job_id) VALUES ($1, $2, $3, "
                       "$4, $5, $6, $7, $8, $9, $10)",
                       10, p, NULL, errstr, errstr_size);
        free(by);
        if (rc)
                return rc;
        ms_log_info("request %s rejected: %s", rid, reason);
        json_t *payload = json_pack(
            "{s:s, s:s, s:o, s:o}", "reason", reason, "message", message,
            "next_allowed_at",
            next_allowed_iso ? json_integer(next_allowed_ms) : json_null(),
            "existing_job_id", existing_job ? json_string(existing_job) : json_null());
        return emit_event(ctx, ob, org, integ,
                          sync_event_new(org, integ, NULL, rid, 0, ms_now_ms(),
                                         "SyncRejected", payload),
                          "SyncRejected", errstr, errstr_size);
}

/* A live job past its bounds is failed as "abandoned" with a SyncCompleted
 * FAILED event, so the widget never shows it running forever. */
static int abandon_job(const rl_ctx_t *ctx, PGconn *pg, ms_outbox_t *ob,
                       const PGresult *job, char *errstr, size_t errstr_size)
{
        const char *job_id = ms_pg_str(job, 0, "job_id");
        const char *p[] = {job_id};
        PGresult *r = NULL;
        int rc = ms_pg_exec(
            pg,
            "UPDATE membersync.sync_jobs SET state = 'FAILED', finished_at = "
            "now(), failure_reason = 'abandoned', seq = seq + 1, owner = NULL "
            "WHERE job_id = $1 RETURNING org_id, integration, request_id, seq, "
            "records_processed, created, updated, unchanged, deactivated, "
            "error_count, warning_count",
            1, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        const char *org = ms_pg_str(r, 0, "org_id"),
                   *integ = ms_pg_str(r, 0, "integration");
        int64_t now = ms_now_ms();
        long long created = ms_pg_i64(r, 0, "created", 0),
                  updated = ms_pg_i64(r, 0, "updated", 0),
                  unchanged = ms_pg_i64(r, 0, "unchanged", 0);
        json_t *payload = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "outcome",
            "FAILED", "finished_at", (json_int_t)now, "records_processed",
            (json_int_t)ms_pg_i64(r, 0, "records_processed", 0), "records_synced",
            (json_int_t)(created + updated + unchanged), "created", (json_int_t)created,
            "updated", (json_int_t)updated, "deactivated",
            (json_int_t)ms_pg_i64(r, 0, "deactivated", 0), "unchanged",
            (json_int_t)unchanged, "error_count",
            (json_int_t)ms_pg_i64(r, 0, "error_count", 0), "warning_count",
            (json_int_t)ms_pg_i64(r, 0, "warning_count", 0), "failure_reason",
            "abandoned");
        json_t *ev =
            sync_event_new(org, integ, job_id, ms_pg_str(r, 0, "request_id"),
                           ms_pg_i64(r, 0, "seq", 1), now, "SyncCompleted", payload);
        ms_log_warn("job %s abandoned (no heartbeat), marked FAILED", job_id);
        rc = emit_event(ctx, ob, org, integ, ev, "SyncCompleted", errstr, errstr_size);
        PQclear(r);
        return rc;
}

static int authorize(const json_t *req, char *why, size_t why_size)
{
        const json_t *by = json_object_get(req, "requested_by");
        const char *role = jstr(by, "role"), *actor_org = jstr(by, "org_id");
        const char *org = jstr(req, "org_id");
        if (!role) {
                snprintf(why, why_size, "the requester has no role");
                return -1;
        }
        if (strcmp(role, "ORG_ADMIN") == 0) {
                if (!actor_org || strcmp(actor_org, org) != 0) {
                        snprintf(why, why_size,
                                 "an organization administrator may only sync their own "
                                 "organization");
                        return -1;
                }
                return 0;
        }
        if (strcmp(role, "GLOBAL_ADMIN") == 0 || strcmp(role, "SYSTEM") == 0) {
                /* The contract says these carry no org: one that does is a
                 * forged or confused requester, and is refused. */
                if (actor_org) {
                        snprintf(why, why_size,
                                 "a %s requester must not name an organization", role);
                        return -1;
                }
                return 0;
        }
        snprintf(why, why_size, "unknown role");
        return -1;
}

static int handle(void *opaque, ms_consumer_t *c, PGconn *pg, const rd_kafka_message_t *m,
                  ms_outbox_t *ob, char *errstr, size_t errstr_size)
{
        rl_ctx_t *ctx = opaque;
        (void)c;
        json_t *req = NULL;
        PGresult *r = NULL;
        int rc;
        if ((rc = ms_avro_decode(ctx->codec, "SyncRequested", m->payload, m->len, &req,
                                 errstr, errstr_size)))
                return rc; /* MS_ERR_DECODE: dead-lettered by the framework */

        const char *rid = jstr(req, "request_id"), *org = jstr(req, "org_id");
        const char *integ = jstr(req, "integration"), *trigger = jstr(req, "trigger");
        ms_log_ctx_set(NULL, org);
        if (!org || !*org || strlen(org) > 128) {
                /* Without a usable org there is nobody to answer (sync-events
                 * are keyed by org): treat it as undecodable. */
                snprintf(errstr, errstr_size, "SyncRequested without a valid org_id");
                rc = MS_ERR_DECODE;
                goto out;
        }
        /* requested_at goes into a timestamptz column: a value outside the
         * years 1..9999 makes PostgreSQL refuse the decision, and a retry
         * could never succeed, stalling the partition for good (issue 4). */
        json_int_t req_at = json_integer_value(json_object_get(req, "requested_at"));
        const char *invalid =
            !ms_uuid_valid(rid) ? "the request_id is not a UUID"
            : req_at < RL_TIME_MIN || req_at > RL_TIME_MAX
                ? "requested_at is not a time between the years 1 and 9999"
                : NULL;
        if (invalid) {
                /* The org can be told, but there is no usable request to
                 * record the decision under (or to dedupe a replay by):
                 * answer INVALID and keep no row. */
                json_t *payload =
                    json_pack("{s:s, s:s, s:n, s:n}", "reason", "INVALID", "message",
                              invalid, "next_allowed_at", "existing_job_id");
                ms_log_warn("request rejected: INVALID: %s", invalid);
                rc = emit_event(ctx, ob, org, integ,
                                sync_event_new(org, integ, NULL,
                                               ms_uuid_valid(rid) ? rid : NULL, 0,
                                               ms_now_ms(), "SyncRejected", payload),
                                "SyncRejected", errstr, errstr_size);
                goto out;
        }

        /* Idempotence: a replayed request gets its recorded decision, never a
         * second job. */
        const char *p1[] = {rid};
        if ((rc = ms_pg_exec(pg,
                             "SELECT decision FROM membersync.sync_requests WHERE "
                             "request_id = $1",
                             1, p1, &r, errstr, errstr_size)))
                goto out;
        if (PQntuples(r) > 0) {
                ms_log_info("request %s replayed: decision %s stands", rid,
                            PQgetvalue(r, 0, 0));
                goto out;
        }
        PQclear(r);
        r = NULL;

        char why[200];
        if (authorize(req, why, sizeof(why))) {
                rc = reject(ctx, pg, ob, req, "FORBIDDEN", why, NULL, 0, NULL, errstr,
                            errstr_size);
                goto out;
        }
        const char *p2[] = {org, integ};
        /* Serialize decisions per org+integration across rate-limiter
         * instances (partitions are by org, but a rebalance can overlap). */
        if ((rc =
                 ms_pg_exec(pg, "SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))",
                            2, p2, NULL, errstr, errstr_size)))
                goto out;
        if ((rc = ms_pg_exec(pg,
                             "SELECT enabled FROM membersync.integrations WHERE org_id = "
                             "$1 AND integration = $2",
                             2, p2, &r, errstr, errstr_size)))
                goto out;
        int configured = PQntuples(r) > 0 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        r = NULL;
        if (!configured) {
                rc = reject(ctx, pg, ob, req, "NOT_CONFIGURED",
                            "this integration is not configured or not enabled for the "
                            "organization",
                            NULL, 0, NULL, errstr, errstr_size);
                goto out;
        }

        /* Dedupe against the live job, expiring it when past its bounds. */
        char qttl[16], httl[16];
        snprintf(qttl, sizeof(qttl), "%d", ctx->conf->rl_queued_ttl_s);
        snprintf(httl, sizeof(httl), "%d", ctx->conf->rl_heartbeat_ttl_s);
        const char *p3[] = {org, integ, qttl, httl};
        if ((rc = ms_pg_exec(
                 pg,
                 "SELECT job_id, state, (CASE WHEN state = 'QUEUED' THEN queued_at > "
                 "now() - make_interval(secs => $3::int) ELSE coalesce(heartbeat_at, "
                 "started_at, queued_at) > now() - make_interval(secs => $4::int) "
                 "END) AS fresh FROM membersync.sync_jobs WHERE org_id = $1 AND "
                 "integration = $2 AND state IN ('QUEUED', 'RUNNING') FOR UPDATE",
                 4, p3, &r, errstr, errstr_size)))
                goto out;
        if (PQntuples(r) > 0) {
                if (strcmp(ms_pg_str(r, 0, "fresh"), "t") == 0) {
                        char *existing = strdup(ms_pg_str(r, 0, "job_id"));
                        PQclear(r);
                        r = NULL;
                        rc = reject(
                            ctx, pg, ob, req, "ALREADY_RUNNING",
                            "a sync for this integration is already queued or running",
                            NULL, 0, existing, errstr, errstr_size);
                        free(existing);
                        goto out;
                }
                if ((rc = abandon_job(ctx, pg, ob, r, errstr, errstr_size)))
                        goto out;
        }
        PQclear(r);
        r = NULL;

        int manual = strcmp(trigger, "MANUAL") == 0;
        if (manual) {
                if ((rc = ms_pg_exec(
                         pg,
                         "SELECT next_allowed_at, (extract(epoch FROM "
                         "next_allowed_at) * 1000)::bigint AS ms, next_allowed_at > "
                         "now() AS closed FROM membersync.manual_windows WHERE "
                         "org_id = $1 AND integration = $2",
                         2, p2, &r, errstr, errstr_size)))
                        goto out;
                if (PQntuples(r) > 0 && strcmp(ms_pg_str(r, 0, "closed"), "t") == 0) {
                        int64_t next_ms = ms_pg_i64(r, 0, "ms", 0);
                        char iso[40], msg[200];
                        ms_iso8601(next_ms, iso, sizeof(iso));
                        snprintf(
                            msg, sizeof(msg),
                            "manual sync is limited to one per %d seconds; next allowed "
                            "at %s",
                            ctx->conf->rl_manual_window_s, iso);
                        rc = reject(ctx, pg, ob, req, "RATE_LIMITED", msg, iso, next_ms,
                                    NULL, errstr, errstr_size);
                        goto out;
                }
                PQclear(r);
                r = NULL;
        }

        /* Accepted: job row, window, decision, SyncJob and SyncQueued. */
        char job_id[37], now_iso[40], win[16];
        ms_uuid_new(job_id);
        int64_t now = ms_now_ms();
        ms_iso8601(now, now_iso, sizeof(now_iso));
        snprintf(win, sizeof(win), "%d", ctx->conf->rl_manual_window_s);
        char *by = json_dumps(json_object_get(req, "requested_by"), JSON_COMPACT);
        char reqat[40];
        ms_iso8601(json_integer_value(json_object_get(req, "requested_at")), reqat,
                   sizeof(reqat));
        const char *p4[] = {job_id,         rid,     org,  integ, trigger,
                            by ? by : "{}", now_iso, reqat};
        rc = ms_pg_exec(
            pg,
            "WITH j AS (INSERT INTO membersync.sync_jobs(job_id, request_id, org_id, "
            "integration, trigger, mode, state, requested_by, queued_at) VALUES ($1, "
            "$2, $3, $4, $5, 'FULL', 'QUEUED', $6, $7)) INSERT INTO "
            "membersync.sync_requests(request_id, org_id, integration, trigger, "
            "requested_by, requested_at, decision, job_id) VALUES ($2, $3, $4, $5, "
            "$6, $8, 'QUEUED', $1)",
            8, p4, NULL, errstr, errstr_size);
        free(by);
        if (rc)
                goto out;
        if (manual) {
                const char *p5[] = {org, integ, now_iso, win, rid};
                if ((rc = ms_pg_exec(
                         pg,
                         "INSERT INTO membersync.manual_windows(org_id, integration, "
                         "next_allowed_at, request_id) VALUES ($1, $2, "
                         "$3::timestamptz + make_interval(secs => $4::int), $5) ON "
                         "CONFLICT (org_id, integration) DO UPDATE SET "
                         "next_allowed_at = EXCLUDED.next_allowed_at, request_id = "
                         "EXCLUDED.request_id",
                         5, p5, NULL, errstr, errstr_size)))
                        goto out;
        }
        json_t *job =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:n, s:I, s:O}", "job_id", job_id,
                      "request_id", rid, "org_id", org, "integration", integ, "trigger",
                      trigger, "mode", "FULL", "since", "queued_at", (json_int_t)now,
                      "requested_by", json_object_get(req, "requested_by"));
        ms_system_t sys;
        const char *jobs_topic = NULL;
        if (ms_system_parse(integ, &sys) == 0)
                jobs_topic = ms_conf_jobs_topic(ctx->conf, ms_system_slug(sys));
        if (!job || !jobs_topic) {
                json_decref(job);
                snprintf(errstr, errstr_size, "ratelimiter: cannot build SyncJob");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        rc = ms_outbox_add(ob, jobs_topic, org, "SyncJob", "SyncJob", job, errstr,
                           errstr_size);
        json_decref(job);
        if (rc)
                goto out;
        json_t *payload =
            json_pack("{s:s, s:O, s:I}", "trigger", trigger, "requested_by",
                      json_object_get(req, "requested_by"), "queued_at", (json_int_t)now);
        rc = emit_event(
            ctx, ob, org, integ,
            sync_event_new(org, integ, job_id, rid, 0, now, "SyncQueued", payload),
            "SyncQueued", errstr, errstr_size);
        if (!rc)
                ms_log_info("request %s accepted as job %s (%s %s)", rid, job_id, integ,
                            trigger);
out:
        ms_log_ctx_set(NULL, NULL);
        PQclear(r);
        json_decref(req);
        return rc;
}

int ms_ratelimiter_run(const ms_conf_t *conf, char *errstr, size_t errstr_size)
{
        rl_ctx_t ctx = {conf, NULL};
        ms_consumer_conf_t cc = {.tx_handler = handle, .opaque = &ctx};
        return ms_consumer_role_run(conf, "ratelimiter", conf->topic_sync_requests, cc,
                                    &ctx.codec, NULL, errstr, errstr_size);
}
