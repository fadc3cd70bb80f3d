/* The SQL behind the api's JSON documents.  Every statement is
 * parameterized; times leave PostgreSQL as epoch milliseconds and are
 * formatted here as ISO 8601 UTC ("2026-12-01T10:00:00.000Z") so that every
 * document uses one spelling. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_api_int.h"
#include "ms_canon.h"
#include "ms_pg.h"
#include "ms_util.h"

/* SQL expression of a timestamptz as epoch ms (NULL stays NULL). */
#define MS(x) "(extract(epoch FROM " x ") * 1000)::bigint"

static void set_time(json_t *o, const char *key, const PGresult *r, int row,
                     const char *col)
{
        const char *v = ms_pg_str(r, row, col);
        if (!v) {
                json_object_set_new(o, key, json_null());
                return;
        }
        char iso[40];
        ms_iso8601(strtoll(v, NULL, 10), iso, sizeof(iso));
        json_object_set_new(o, key, json_string(iso));
}

static void set_int(json_t *o, const char *key, const PGresult *r, int row,
                    const char *col)
{
        const char *v = ms_pg_str(r, row, col);
        json_object_set_new(o, key, v ? json_integer(strtoll(v, NULL, 10)) : json_null());
}

static void set_str(json_t *o, const char *key, const PGresult *r, int row,
                    const char *col)
{
        const char *v = ms_pg_str(r, row, col);
        json_object_set_new(o, key, v ? json_string(v) : json_null());
}

static void set_bool(json_t *o, const char *key, const PGresult *r, int row,
                     const char *col)
{
        const char *v = ms_pg_str(r, row, col);
        json_object_set_new(o, key, json_boolean(v && strcmp(v, "t") == 0));
}

/* The URL path segment of an integration enum ("CORNERSTONE" ->
 * "cornerstone"); the enum itself when unknown. */
static const char *slug_of(const char *integ)
{
        ms_system_t sys;
        return ms_system_parse(integ, &sys) == 0 ? ms_system_slug(sys) : integ;
}

static json_t *errors_url(const char *org, const char *integ, const char *job_id)
{
        if (!job_id)
                return json_null();
        char url[512];
        snprintf(url, sizeof(url), "/api/v1/orgs/%s/integrations/%s/jobs/%s/errors", org,
                 slug_of(integ), job_id);
        return json_string(url);
}

/* Percent done, by the rule of DESIGN 5: never above 100, null when the
 * total is unknown.  A finished job (SUCCEEDED/PARTIAL) is 100. */
static json_t *percent_of(const char *state, const PGresult *r, int row)
{
        const char *tot = ms_pg_str(r, row, "total_estimate");
        long long done = ms_pg_i64(r, row, "records_processed", 0);
        if (strcmp(state, "SUCCEEDED") == 0 || strcmp(state, "PARTIAL") == 0)
                return json_integer(100);
        if (strcmp(state, "RUNNING") && strcmp(state, "FAILED"))
                return json_null();
        long long total = tot ? strtoll(tot, NULL, 10) : 0;
        if (total <= 0)
                return json_null();
        long long pct = done * 100 / total;
        return json_integer(pct > 100 ? 100 : pct < 0 ? 0 : pct);
}

static json_t *status_row(const char *org, const PGresult *r, int row)
{
        json_t *o = json_object();
        const char *integ = ms_pg_str(r, row, "integration");
        const char *state = ms_pg_str(r, row, "state");
        int running = strcmp(state, "RUNNING") == 0;
        json_object_set_new(o, "org_id", json_string(org));
        json_object_set_new(o, "integration", json_string(integ));
        set_str(o, "display_name", r, row, "display_name");
        set_bool(o, "enabled", r, row, "enabled");
        json_object_set_new(o, "state", json_string(state));
        set_str(o, "trigger", r, row, "trigger");
        set_str(o, "active_job_id", r, row, "active_job_id");
        set_time(o, "started_at", r, row, "started_at");
        set_int(o, "records_processed", r, row, "records_processed");
        set_int(o, "total_estimate", r, row, "total_estimate");
        json_object_set_new(o, "percent", percent_of(state, r, row));
        if (running)
                set_time(o, "eta_at", r, row, "eta_at");
        else
                json_object_set_new(o, "eta_at", json_null());
        set_int(o, "errors_so_far", r, row, "errors_so_far");
        set_str(o, "last_job_id", r, row, "last_job_id");
        set_str(o, "last_outcome", r, row, "last_outcome");
        set_time(o, "last_sync_at", r, row, "last_sync_at");
        set_int(o, "last_records_processed", r, row, "last_records_processed");
        set_int(o, "records_synced", r, row, "records_synced");
        set_int(o, "created", r, row, "created");
        set_int(o, "updated", r, row, "updated");
        set_int(o, "deactivated", r, row, "deactivated");
        set_int(o, "unchanged", r, row, "unchanged");
        set_int(o, "error_count", r, row, "error_count");
        set_int(o, "warning_count", r, row, "warning_count");
        set_str(o, "failure_reason", r, row, "failure_reason");
        set_time(o, "next_manual_allowed_at", r, row, "next_manual_allowed_at");
        set_bool(o, "rate_limited", r, row, "rate_limited");
        const char *rej = ms_pg_str(r, row, "last_rejection");
        json_t *rj = rej ? json_loads(rej, 0, NULL) : NULL;
        json_object_set_new(o, "last_rejection", rj ? rj : json_null());
        json_object_set_new(o, "errors_url",
                            errors_url(org, integ, ms_pg_str(r, row, "last_job_id")));
        set_time(o, "updated_at", r, row, "updated_at");
        set_time(o, "server_time", r, row, "now");
        return o;
}

int ms_api_query_status(PGconn *pg, const char *org, const char *integ, json_t **out,
                        char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {org, integ};
        /* An integration without a status row yet is IDLE.  The manual window
         * is read from both the projector's row and the rate limiter's own
         * table, so it shows as closed as soon as the trigger was accepted,
         * before the projector caught up. */
        int rc = ms_pg_exec(
            pg,
            "SELECT i.integration, i.enabled, i.display_name, coalesce(s.state, 'IDLE') "
            "AS "
            "state, s.trigger, s.active_job_id, " MS(
                "s.started_at") " AS started_at, "
                                "coalesce(s.records_processed, 0) AS records_processed, "
                                "s.total_estimate, "
                                "coalesce(s.errors_so_far, 0) AS errors_so_far, " MS(
                                    "s.eta_at") " AS eta_at, "
                                                "s.last_job_id, s.last_outcome, " MS(
                                                    "s.last_sync_at") " AS last_sync_at, "
                                                                      "s.last_records_"
                                                                      "processed, "
                                                                      "s.records_synced, "
                                                                      "s.created, "
                                                                      "s.updated, "
                                                                      "s.deactivated, "
                                                                      "s.unchanged, "
                                                                      "s.error_count, "
                                                                      "s.warning_count, "
                                                                      "s.failure_reason,"
                                                                      " " MS(
                                                                          "greatest(s."
                                                                          "next_"
                                                                          "manual_"
                                                                          "allowed_at,"
                                                                          " w.next_"
                                                                          "allowed_"
                                                                          "at)") " AS "
                                                                                 "next"
                                                                                 "_man"
                                                                                 "ual_"
                                                                                 "allo"
                                                                                 "wed_"
                                                                                 "at, "
                                                                                 "coal"
                                                                                 "esce"
                                                                                 "(gre"
                                                                                 "ates"
                                                                                 "t(s."
                                                                                 "next"
                                                                                 "_man"
                                                                                 "ual_"
                                                                                 "allo"
                                                                                 "wed_"
                                                                                 "at, "
                                                                                 "w."
                                                                                 "next"
                                                                                 "_all"
                                                                                 "owed"
                                                                                 "_at)"
                                                                                 " > "
                                                                                 "now("
                                                                                 "), "
                                                                                 "fals"
                                                                                 "e) "
                                                                                 "AS "
                                                                                 "rate"
                                                                                 "_lim"
                                                                                 "ited"
                                                                                 ", "
                                                                                 "s."
                                                                                 "last"
                                                                                 "_rej"
                                                                                 "ecti"
                                                                                 "on::"
                                                                                 "text"
                                                                                 " AS "
                                                                                 "last"
                                                                                 "_rej"
                                                                                 "ecti"
                                                                                 "on,"
                                                                                 " " MS("coalesce(s.updated_at, i.created_at)") " AS updated_at, " MS(
                                                                                     "now"
                                                                                     "()") " AS "
                                                                                           "now "
                                                                                           "FROM membersync.integrations i "
                                                                                           "LEFT JOIN membersync.sync_status s ON s.org_id = i.org_id AND s.integration = "
                                                                                           "i.integration "
                                                                                           "LEFT JOIN membersync.manual_windows w ON w.org_id = i.org_id AND w.integration "
                                                                                           "= i.integration "
                                                                                           "WHERE i.org_id = $1 AND ($2::text IS NULL OR i.integration = $2) "
                                                                                           "ORDER BY i.integration",
            2, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        if (integ) {
                if (PQntuples(r) == 0) {
                        snprintf(errstr, errstr_size, "integration not configured");
                        rc = MS_ERR_NOTFOUND;
                } else {
                        *out = status_row(org, r, 0);
                }
        } else {
                json_t *arr = json_array();
                for (int i = 0; i < PQntuples(r); i++)
                        json_array_append_new(arr, status_row(org, r, i));
                *out = arr;
        }
        PQclear(r);
        return rc;
}

int ms_api_query_trigger_check(PGconn *pg, const char *org, const char *integ,
                               int *configured, int64_t *next_allowed_ms, int64_t *now_ms,
                               char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {org, integ};
        int rc = ms_pg_exec(
            pg,
            "SELECT i.enabled, " MS(
                "greatest(s.next_manual_allowed_at, "
                "w.next_allowed_at)") " AS next_allowed, " MS("now()") " "
                                                                       "AS "
                                                                       "now"
                                                                       " "
                                                                       "FROM "
                                                                       "membersync."
                                                                       "integrations i "
                                                                       "LEFT JOIN "
                                                                       "membersync.sync_"
                                                                       "status s ON "
                                                                       "s.org_id = "
                                                                       "i.org_id AND "
                                                                       "s.integration = "
                                                                       "i.integration "
                                                                       "LEFT JOIN "
                                                                       "membersync."
                                                                       "manual_windows w "
                                                                       "ON w.org_id = "
                                                                       "i.org_id AND "
                                                                       "w.integration "
                                                                       "= i.integration "
                                                                       "WHERE i.org_id = "
                                                                       "$1 AND "
                                                                       "i.integration = "
                                                                       "$2",
            2, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        *configured = PQntuples(r) > 0 && strcmp(ms_pg_str(r, 0, "enabled"), "t") == 0;
        *next_allowed_ms = PQntuples(r) > 0 ? ms_pg_i64(r, 0, "next_allowed", 0) : 0;
        *now_ms = PQntuples(r) > 0 ? ms_pg_i64(r, 0, "now", 0) : ms_now_ms();
        PQclear(r);
        return 0;
}

int ms_api_query_jobs(PGconn *pg, const char *org, const char *integ, int limit,
                      json_t **out, char *errstr, size_t errstr_size)
{
        PGresult *r = NULL;
        char lim[16];
        snprintf(lim, sizeof(lim), "%d", limit);
        const char *p[] = {org, integ, lim};
        int rc = ms_pg_exec(
            pg,
            "SELECT job_id, request_id, trigger, mode, state, requested_by::text AS "
            "requested_by, " MS("queued_at") " AS queued_at, " MS(
                "started_at") " AS started_at, " MS("finished_at") " AS finished_at, "
                                                                   "records_processed, "
                                                                   "total_estimate, "
                                                                   "created, updated, "
                                                                   "unchanged, "
                                                                   "deactivated, "
                                                                   "created + updated + "
                                                                   "unchanged AS "
                                                                   "records_synced, "
                                                                   "error_count, "
                                                                   "warning_count, "
                                                                   "failure_reason FROM "
                                                                   "membersync.sync_jobs "
                                                                   "WHERE org_id = $1 "
                                                                   "AND integration = "
                                                                   "$2 ORDER BY "
                                                                   "queued_at DESC, "
                                                                   "job_id LIMIT $3::int",
            3, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(r); i++) {
                json_t *o = json_object();
                const char *state = ms_pg_str(r, i, "state");
                int done = strcmp(state, "QUEUED") && strcmp(state, "RUNNING");
                set_str(o, "job_id", r, i, "job_id");
                set_str(o, "request_id", r, i, "request_id");
                json_object_set_new(o, "integration", json_string(integ));
                set_str(o, "trigger", r, i, "trigger");
                set_str(o, "mode", r, i, "mode");
                set_str(o, "state", r, i, "state");
                json_object_set_new(o, "outcome",
                                    done ? json_string(state) : json_null());
                const char *rb = ms_pg_str(r, i, "requested_by");
                json_t *rbj = rb ? json_loads(rb, 0, NULL) : NULL;
                json_object_set_new(o, "requested_by", rbj ? rbj : json_null());
                set_time(o, "queued_at", r, i, "queued_at");
                set_time(o, "started_at", r, i, "started_at");
                set_time(o, "finished_at", r, i, "finished_at");
                set_int(o, "records_processed", r, i, "records_processed");
                set_int(o, "total_estimate", r, i, "total_estimate");
                set_int(o, "records_synced", r, i, "records_synced");
                set_int(o, "created", r, i, "created");
                set_int(o, "updated", r, i, "updated");
                set_int(o, "deactivated", r, i, "deactivated");
                set_int(o, "unchanged", r, i, "unchanged");
                set_int(o, "error_count", r, i, "error_count");
                set_int(o, "warning_count", r, i, "warning_count");
                set_str(o, "failure_reason", r, i, "failure_reason");
                json_object_set_new(o, "errors_url",
                                    errors_url(org, integ, ms_pg_str(r, i, "job_id")));
                json_array_append_new(items, o);
        }
        PQclear(r);
        *out = json_pack("{s:o, s:i}", "items", items, "limit", limit);
        return 0;
}

int ms_api_query_errors(PGconn *pg, const char *org, const char *integ,
                        const char *job_id, int64_t cursor, int limit,
                        const char *severity, json_t **out, char *errstr,
                        size_t errstr_size)
{
        PGresult *r = NULL;
        const char *p[] = {job_id, org, integ};
        int rc = ms_pg_exec(
            pg,
            "SELECT error_count, warning_count, state FROM membersync.sync_jobs "
            "WHERE job_id = $1::uuid AND org_id = $2 AND integration = $3",
            3, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        if (PQntuples(r) == 0) {
                PQclear(r);
                snprintf(errstr, errstr_size, "no such job for this integration");
                return MS_ERR_NOTFOUND;
        }
        json_t *doc = json_object();
        json_object_set_new(doc, "job_id", json_string(job_id));
        set_str(doc, "state", r, 0, "state");
        set_int(doc, "error_count", r, 0, "error_count");
        set_int(doc, "warning_count", r, 0, "warning_count");
        PQclear(r);
        r = NULL;

        char cur[24], lim[16];
        snprintf(cur, sizeof(cur), "%" PRId64, cursor);
        /* One row more than asked tells whether another page exists. */
        snprintf(lim, sizeof(lim), "%d", limit + 1);
        const char *q[] = {job_id, cur, lim, severity};
        rc = ms_pg_exec(
            pg,
            "SELECT seq, severity, code, external_id, field, message, record_index "
            "FROM membersync.sync_errors WHERE job_id = $1::uuid AND seq > "
            "$2::bigint AND ($4::text IS NULL OR severity = $4) ORDER BY seq "
            "LIMIT $3::int",
            4, q, &r, errstr, errstr_size);
        if (rc) {
                json_decref(doc);
                return rc;
        }
        int n = PQntuples(r);
        int more = n > limit;
        if (more)
                n = limit;
        json_t *items = json_array();
        for (int i = 0; i < n; i++) {
                json_t *o = json_object();
                set_int(o, "seq", r, i, "seq");
                set_str(o, "severity", r, i, "severity");
                set_str(o, "code", r, i, "code");
                set_str(o, "external_id", r, i, "external_id");
                set_str(o, "field", r, i, "field");
                set_str(o, "message", r, i, "message");
                set_int(o, "record_index", r, i, "record_index");
                json_array_append_new(items, o);
        }
        json_object_set_new(doc, "items", items);
        json_object_set_new(doc, "next_cursor",
                            more ? json_string(ms_pg_str(r, n - 1, "seq")) : json_null());
        PQclear(r);
        *out = doc;
        return 0;
}
