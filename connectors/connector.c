/* The connector role: one consumer group per member system.  For each
 * SyncJob it pages the member API through the gateway and, per page, in one
 * PostgreSQL transaction: applies the record rules (ms_canon), diffs against
 * the Member Sync Repository, writes member rows, error rows, the job's
 * checkpoint and counts, and MemberChanged / SyncProgress events to the
 * outbox.  The last transaction deactivates members the full sync did not
 * see (completeness check and mass-deactivation guard), emits SyncCompleted
 * and stores the job message's offset.
 *
 * A connector that dies mid-job leaves the job RUNNING with its checkpoint
 * and an uncommitted job message; whoever gets the partition next reads the
 * message again and resumes from the checkpoint.  The `owner` column fences a
 * replaced instance: its next page transaction finds it no longer owns the
 * job and stops. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_avro.h"
#include "ms_canon.h"
#include "ms_consumer.h"
#include "ms_gateway.h"
#include "ms_health.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_prefetch.h"
#include "ms_roles.h"
#include "ms_util.h"

typedef struct conn_ctx {
        const ms_conf_t *conf;
        ms_system_t sys;
        ms_avro_t *codec;
        char instance[37];
        ms_consumer_t *consumer;
} conn_ctx_t;

/* Everything the job loop tracks; mirrors the sync_jobs row so a resume
 * continues with the same numbers. */
typedef struct job {
        conn_ctx_t *ctx;
        PGconn *pg;
        ms_outbox_t *ob;
        char job_id[37];
        char request_id[37];
        char org[160];
        const char *integ;
        char status_key[300];
        char *checkpoint;
        int fetch_complete;
        long long seq, processed, created, updated, unchanged, deactivated, errors,
            warnings;
        long long source_total; /* -1 unknown; the total of the job's first page */
        /* A later page reported another total than source_total: the source
         * changed while we paged (issue 4). */
        long long total_changed_to;
        int total_changed;
        long long total_estimate;
        double rate_ewma;
        int64_t last_progress_ms;
        int64_t last_heartbeat_ms;
        int32_t today_days;
        atomic_int cancel_fetch; /* set to stop the prefetch thread */
        /* Where this run's time went (ms), logged when the job ends. */
        int64_t t_fetch, t_process, t_commit;
} job_t;

/* A small open-addressing set of strings for one page: duplicate ids within
 * the page and lookups of the ids PostgreSQL reported. */
typedef struct strset {
        const char **slots;
        size_t cap;
} strset_t;

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static int strset_init(strset_t *s, size_t n)
{
        s->cap = 16;
        while (s->cap < n * 2 + 1)
                s->cap *= 2;
        s->slots = calloc(s->cap, sizeof(char *));
        return s->slots ? 0 : -1;
}

/* Returns 1 when added, 0 when already present.  Strings are borrowed. */
static int strset_add(strset_t *s, const char *v)
{
        size_t i = hash_str(v) & (s->cap - 1);
        while (s->slots[i]) {
                if (strcmp(s->slots[i], v) == 0)
                        return 0;
                i = (i + 1) & (s->cap - 1);
        }
        s->slots[i] = v;
        return 1;
}

static int strset_has(const strset_t *s, const char *v)
{
        size_t i = hash_str(v) & (s->cap - 1);
        while (s->slots[i]) {
                if (strcmp(s->slots[i], v) == 0)
                        return 1;
                i = (i + 1) & (s->cap - 1);
        }
        return 0;
}

static void strset_free(strset_t *s)
{
        free(s->slots);
        s->slots = NULL;
}

static json_t *job_event(job_t *j, const char *branch, json_t *payload /* stolen */)
{
        char id[37];
        ms_uuid_new(id);
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:{s:o}}", "event_id", id,
                         "org_id", j->org, "integration", j->integ, "job_id", j->job_id,
                         "request_id", j->request_id, "seq", (json_int_t)++j->seq,
                         "occurred_at", (json_int_t)ms_now_ms(), "payload", branch,
                         payload);
}

static int emit(job_t *j, const char *branch, json_t *payload, char *errstr,
                size_t errstr_size)
{
        json_t *ev = job_event(j, branch, payload);
        if (!ev) {
                snprintf(errstr, errstr_size, "connector: cannot build %s", branch);
                return MS_ERR_GENERIC;
        }
        int rc = ms_outbox_add(j->ob, j->ctx->conf->topic_sync_events, j->status_key,
                               "SyncEvent", branch, ev, errstr, errstr_size);
        json_decref(ev);
        return rc;
}

static json_t *opt_int(long long v)
{
        return v >= 0 ? json_integer(v) : json_null();
}

static int emit_progress(job_t *j, char *errstr, size_t errstr_size)
{
        long long total = j->source_total >= 0 ? j->source_total : j->total_estimate;
        int64_t now = ms_now_ms();
        long long eta = -1;
        if (total > 0 && j->rate_ewma > 0) {
                long long left = total > j->processed ? total - j->processed : 0;
                eta = now + (long long)(left / j->rate_ewma * 1000.0);
        }
        j->last_progress_ms = ms_mono_ms();
        return emit(j, "SyncProgress",
                    json_pack("{s:I, s:o, s:I, s:I, s:o}", "records_processed",
                              (json_int_t)j->processed, "total_estimate", opt_int(total),
                              "errors_so_far", (json_int_t)j->errors, "warnings_so_far",
                              (json_int_t)j->warnings, "eta_at", opt_int(eta)),
                    errstr, errstr_size);
}

static int add_issue_row(json_t *rows, job_t *j, const char *severity,
                         const ms_canon_issue_t *is, const char *ext_id, long long index)
{
        long long seq = j->errors + j->warnings + (long long)json_array_size(rows);
        return json_array_append_new(
            rows,
            json_pack("{s:I, s:s, s:s, s:s?, s:s, s:s, s:I}", "seq", (json_int_t)seq,
                      "sev", severity, "code", is->code, "ext", ext_id, "field",
                      is->field, "msg", is->message, "idx", (json_int_t)index));
}

static int insert_issue_rows(job_t *j, json_t *rows, char *errstr, size_t errstr_size)
{
        if (json_array_size(rows) == 0)
                return 0;
        char *doc = json_dumps(rows, JSON_COMPACT);
        const char *p[] = {j->job_id, doc};
        int rc = ms_pg_exec(
            j->pg,
            "INSERT INTO membersync.sync_errors(job_id, seq, severity, code, "
            "external_id, field, message, record_index) SELECT $1::uuid, x.seq, "
            "x.sev, x.code, x.ext, nullif(x.field, ''), x.msg, x.idx FROM "
            "jsonb_to_recordset($2::jsonb) AS x(seq bigint, sev text, code text, "
            "ext text, field text, msg text, idx bigint)",
            2, p, NULL, errstr, errstr_size);
        free(doc);
        return rc;
}

static int member_event(job_t *j, const char *op, const char *ext_id, json_t *before,
                        json_t *after, json_t *changed /* stolen */, char *errstr,
                        size_t errstr_size)
{
        char id[37], key[512];
        ms_uuid_new(id);
        snprintf(key, sizeof(key), "%s/%s/%s", j->org, j->integ, ext_id);
        json_t *ev = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:O?, s:O?, s:o, s:I}", "event_id", id,
            "org_id", j->org, "integration", j->integ, "job_id", j->job_id, "op", op,
            "external_id", ext_id, "before", before, "after", after, "changed_fields",
            changed ? changed : json_array(), "occurred_at", (json_int_t)ms_now_ms());
        if (!ev) {
                snprintf(errstr, errstr_size, "connector: cannot build MemberChanged");
                return MS_ERR_GENERIC;
        }
        int rc = ms_outbox_add(j->ob, j->ctx->conf->topic_member_changes, key,
                               "MemberChanged", "MemberChanged", ev, errstr, errstr_size);
        json_decref(ev);
        return rc;
}

/* Processes one fetched page inside the caller's open transaction. */
static int process_page(job_t *j, json_t *items, char *errstr, size_t errstr_size)
{
        int rc = 0;
        size_t n = json_array_size(items);
        char **ids = calloc(n ? n : 1, sizeof(char *));
        int *dup = calloc(n ? n : 1, sizeof(int));
        strset_t page_ids = {0}, fresh = {0}, valid_set = {0};
        json_t *seen_arr = json_array(), *issues = json_array(), *lookup = json_array();
        json_t *upserts = json_array();
        ms_canon_result_t *res = calloc(n ? n : 1, sizeof(ms_canon_result_t));
        PGresult *r = NULL;
        long long base_index = j->processed;
        if (!ids || !dup || !res || strset_init(&page_ids, n) || strset_init(&fresh, n) ||
            strset_init(&valid_set, n) || !seen_arr || !issues || !lookup || !upserts) {
                snprintf(errstr, errstr_size, "connector: out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        /* 1. External ids and duplicates within the page. */
        for (size_t i = 0; i < n; i++) {
                ids[i] = ms_canon_external_id(j->ctx->sys, json_array_get(items, i));
                if (ids[i] && !strset_add(&page_ids, ids[i]))
                        dup[i] = 1;
                else if (ids[i])
                        json_array_append_new(seen_arr, json_string(ids[i]));
        }
        /* 2. Duplicates of earlier pages: job_seen answers with the ids that
         * were new to the job. */
        if (json_array_size(seen_arr) > 0) {
                char *doc = json_dumps(seen_arr, JSON_COMPACT);
                const char *p[] = {j->job_id, doc};
                rc = ms_pg_exec(
                    j->pg,
                    "INSERT INTO membersync.job_seen(job_id, external_id) SELECT "
                    "$1::uuid, x FROM jsonb_array_elements_text($2::jsonb) x ON "
                    "CONFLICT DO NOTHING RETURNING external_id",
                    2, p, &r, errstr, errstr_size);
                free(doc);
                if (rc)
                        goto out;
        }
        int nfresh = r ? PQntuples(r) : 0;
        for (int i = 0; i < nfresh; i++)
                strset_add(&fresh, PQgetvalue(r, i, 0));
        /* 3. Record rules. */
        for (size_t i = 0; i < n; i++) {
                json_t *rec = json_array_get(items, i);
                long long idx = base_index + (long long)i;
                if (ids[i] && (dup[i] || !strset_has(&fresh, ids[i]))) {
                        ms_canon_issue_t is = {"DUPLICATE_ID", "external_id", ""};
                        snprintf(
                            is.message, sizeof(is.message),
                            "external id seen earlier in this sync; later copy skipped");
                        add_issue_row(issues, j, "ERROR", &is, ids[i], idx);
                        continue;
                }
                if (ms_canon_record(j->ctx->sys, rec, j->today_days, &res[i])) {
                        snprintf(errstr, errstr_size, "connector: out of memory");
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
                if (res[i].error.code[0])
                        add_issue_row(issues, j, "ERROR", &res[i].error,
                                      res[i].external_id, idx);
                for (int w = 0; w < res[i].n_warnings; w++)
                        add_issue_row(issues, j, "WARNING", &res[i].warnings[w],
                                      res[i].external_id, idx);
                if (!res[i].error.code[0] && res[i].member) {
                        char h[24];
                        snprintf(h, sizeof(h), "%lld",
                                 (long long)ms_canon_member_hash(res[i].member));
                        json_array_append_new(
                            lookup,
                            json_pack("{s:s, s:s}", "id", res[i].external_id, "h", h));
                        strset_add(&valid_set, res[i].external_id);
                }
        }
        PQclear(r);
        r = NULL;
        /* 4. Diff against the repository: one round trip returns, per known
         * id, whether it is active and unchanged, and the stored member only
         * where it is needed (changed or reactivated).  The lateral subquery
         * (OFFSET 0 keeps it from being flattened) makes every id a probe on
         * the full primary key: as a plain join the planner, whose statistics
         * lag far behind during a large first sync, scanned the org's whole
         * key range per page instead (quadratic: 100k took 61 s, not 24). */
        json_t *stored = json_object(); /* id -> {active, same, data} */
        if (json_array_size(lookup) > 0) {
                char *doc = json_dumps(lookup, JSON_COMPACT);
                const char *p[] = {j->org, j->integ, doc};
                rc = ms_pg_exec(
                    j->pg,
                    "SELECT m.external_id, m.active, m.content_hash = x.h AS same, "
                    "CASE WHEN m.content_hash <> x.h AND m.active THEN m.data::text "
                    "END AS data FROM jsonb_to_recordset($3::jsonb) AS x(id text, h "
                    "bigint) CROSS JOIN LATERAL (SELECT * FROM membersync.members m "
                    "WHERE m.org_id = $1 AND m.integration = $2 AND m.external_id = "
                    "x.id OFFSET 0) m",
                    3, p, &r, errstr, errstr_size);
                free(doc);
                if (rc) {
                        json_decref(stored);
                        goto out;
                }
                for (int i = 0; i < PQntuples(r); i++) {
                        json_t *data = NULL;
                        if (!PQgetisnull(r, i, 3))
                                data =
                                    json_loads(PQgetvalue(r, i, 3), JSON_ALLOW_NUL, NULL);
                        json_object_set_new(
                            stored, PQgetvalue(r, i, 0),
                            json_pack("{s:b, s:b, s:o?}", "active",
                                      PQgetvalue(r, i, 1)[0] == 't', "same",
                                      PQgetvalue(r, i, 2)[0] == 't', "data", data));
                }
                PQclear(r);
                r = NULL;
        }
        for (size_t i = 0; i < n; i++) {
                if (!res[i].member || res[i].error.code[0])
                        continue;
                const char *id = res[i].external_id;
                json_t *st = json_object_get(stored, id);
                const char *op;
                json_t *before = NULL, *changed = NULL;
                if (!st || !json_is_true(json_object_get(st, "active"))) {
                        op = "CREATED";
                        j->created++;
                } else if (json_is_true(json_object_get(st, "same"))) {
                        j->unchanged++;
                        continue;
                } else {
                        op = "UPDATED";
                        j->updated++;
                        before = json_object_get(st, "data");
                        changed = ms_canon_changed_fields(before, res[i].member);
                }
                char h[24];
                snprintf(h, sizeof(h), "%lld",
                         (long long)ms_canon_member_hash(res[i].member));
                json_array_append_new(upserts, json_pack("{s:s, s:O, s:s}", "id", id, "d",
                                                         res[i].member, "h", h));
                if ((rc = member_event(j, op, id, before, res[i].member, changed, errstr,
                                       errstr_size))) {
                        json_decref(stored);
                        goto out;
                }
        }
        json_decref(stored);
        if (json_array_size(upserts) > 0) {
                char *doc = json_dumps(upserts, JSON_COMPACT);
                const char *p[] = {j->org, j->integ, j->job_id, doc};
                rc = ms_pg_exec(
                    j->pg,
                    "INSERT INTO membersync.members AS m(org_id, integration, "
                    "external_id, data, content_hash, active, last_job_id) SELECT "
                    "$1, $2, x.id, x.d, x.h, true, $3::uuid FROM "
                    "jsonb_to_recordset($4::jsonb) AS x(id text, d jsonb, h bigint) "
                    "ON CONFLICT (org_id, integration, external_id) DO UPDATE SET "
                    "data = EXCLUDED.data, content_hash = EXCLUDED.content_hash, "
                    "active = true, deactivated_at = NULL, last_job_id = "
                    "EXCLUDED.last_job_id, updated_at = now()",
                    4, p, NULL, errstr, errstr_size);
                free(doc);
                if (rc)
                        goto out;
        }
        if ((rc = insert_issue_rows(j, issues, errstr, errstr_size)))
                goto out;
        for (size_t i = 0; i < json_array_size(issues); i++) {
                const char *sev =
                    json_string_value(json_object_get(json_array_get(issues, i), "sev"));
                if (strcmp(sev, "ERROR") == 0)
                        j->errors++;
                else
                        j->warnings++;
        }
        j->processed += (long long)n;
out:
        for (size_t i = 0; i < n && res; i++)
                ms_canon_result_clear(&res[i]);
        for (size_t i = 0; i < n && ids; i++)
                free(ids[i]);
        free(res);
        free(ids);
        free(dup);
        strset_free(&page_ids);
        strset_free(&fresh);
        strset_free(&valid_set);
        json_decref(seen_arr);
        json_decref(issues);
        json_decref(lookup);
        json_decref(upserts);
        PQclear(r);
        return rc;
}

/* Writes the job's in-memory counters back; 0 rows means another instance
 * owns the job now (or it was abandoned), so this one must stop. */
static int save_job(job_t *j, const char *state, const char *failure, char *errstr,
                    size_t errstr_size)
{
        char seq[24], proc[24], cr[24], up[24], un[24], de[24], er[24], wa[24], st[24],
            te[24], ew[40], fc[2];
        snprintf(seq, sizeof(seq), "%lld", j->seq);
        snprintf(proc, sizeof(proc), "%lld", j->processed);
        snprintf(cr, sizeof(cr), "%lld", j->created);
        snprintf(up, sizeof(up), "%lld", j->updated);
        snprintf(un, sizeof(un), "%lld", j->unchanged);
        snprintf(de, sizeof(de), "%lld", j->deactivated);
        snprintf(er, sizeof(er), "%lld", j->errors);
        snprintf(wa, sizeof(wa), "%lld", j->warnings);
        snprintf(st, sizeof(st), "%lld", j->source_total);
        snprintf(te, sizeof(te), "%lld", j->total_estimate);
        snprintf(ew, sizeof(ew), "%.3f", j->rate_ewma);
        snprintf(fc, sizeof(fc), "%s", j->fetch_complete ? "t" : "f");
        const char *p[] = {j->job_id,
                           j->ctx->instance,
                           j->checkpoint,
                           seq,
                           proc,
                           cr,
                           up,
                           un,
                           de,
                           er,
                           wa,
                           st,
                           te,
                           ew,
                           fc,
                           state,
                           failure};
        PGresult *r = NULL;
        int rc = ms_pg_exec(
            j->pg,
            "UPDATE membersync.sync_jobs SET checkpoint = $3, seq = $4, "
            "records_processed = "
            "$5, created = $6, updated = $7, unchanged = $8, deactivated = $9, "
            "error_count = "
            "$10, warning_count = $11, source_total = nullif($12::bigint, -1), "
            "total_estimate = nullif($13::bigint, -1), rate_ewma = $14, fetch_complete = "
            "$15, pages_done = pages_done + CASE WHEN $16 = 'RUNNING' THEN 1 ELSE 0 END, "
            "heartbeat_at = now(), state = $16, failure_reason = $17, finished_at = CASE "
            "WHEN $16 = 'RUNNING' THEN NULL ELSE now() END, owner = CASE WHEN $16 = "
            "'RUNNING' THEN owner END WHERE job_id = $1::uuid AND owner = $2 AND state = "
            "'RUNNING' RETURNING 1",
            17, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        int ok = PQntuples(r) == 1;
        PQclear(r);
        if (!ok) {
                snprintf(errstr, errstr_size, "job is no longer owned by this connector");
                return MS_CONSUMER_INTERRUPTED;
        }
        j->last_heartbeat_ms = ms_mono_ms();
        return 0;
}

/* Deactivation after a complete FULL fetch, with the mass-deactivation
 * guard.  Sets *guard when the guard refused. */
static int deactivate_unseen(job_t *j, int *guard, json_t *issues, char *errstr,
                             size_t errstr_size)
{
        const char *p[] = {j->org, j->integ, j->job_id};
        PGresult *r = NULL;
        int rc = ms_pg_exec(
            j->pg,
            "SELECT count(*) AS active, count(*) FILTER (WHERE NOT EXISTS "
            "(SELECT 1 FROM membersync.job_seen s WHERE s.job_id = $3::uuid AND "
            "s.external_id = m.external_id)) AS gone FROM membersync.members m "
            "WHERE m.org_id = $1 AND m.integration = $2 AND m.active",
            3, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        long long active = ms_pg_i64(r, 0, "active", 0),
                  gone = ms_pg_i64(r, 0, "gone", 0);
        PQclear(r);
        r = NULL;
        if (gone == 0)
                return 0;
        long long limit_pct = (long long)j->ctx->conf->conn_deactivation_guard_pct;
        if (gone * 100 > active * limit_pct &&
            gone > j->ctx->conf->conn_deactivation_guard_min) {
                ms_canon_issue_t is = {"DEACTIVATION_GUARD", "", ""};
                snprintf(is.message, sizeof(is.message),
                         "would deactivate %lld of %lld members (over %lld%%): none "
                         "deactivated",
                         gone, active, limit_pct);
                add_issue_row(issues, j, "ERROR", &is, NULL, -1);
                *guard = 1;
                ms_log_warn("deactivation guard: %lld of %lld members unseen", gone,
                            active);
                return 0;
        }
        rc = ms_pg_exec(
            j->pg,
            "UPDATE membersync.members m SET active = false, deactivated_at = now(), "
            "last_job_id = $3::uuid, updated_at = now() WHERE m.org_id = $1 AND "
            "m.integration = $2 AND m.active AND NOT EXISTS (SELECT 1 FROM "
            "membersync.job_seen s WHERE s.job_id = $3::uuid AND s.external_id = "
            "m.external_id) RETURNING m.external_id, m.data::text",
            3, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
                json_t *before = json_loads(PQgetvalue(r, i, 1), JSON_ALLOW_NUL, NULL);
                rc = member_event(j, "DEACTIVATED", PQgetvalue(r, i, 0), before, NULL,
                                  NULL, errstr, errstr_size);
                json_decref(before);
                j->deactivated++;
        }
        PQclear(r);
        return rc;
}

/* The job's last transaction: deactivation, SyncCompleted, final state,
 * job_seen cleanup and the job message's offset. */
static int finish_job(job_t *j, const rd_kafka_message_t *m, const char *failure,
                      char *errstr, size_t errstr_size)
{
        int rc, guard = 0;
        json_t *issues = json_array();
        if ((rc = ms_pg_begin(j->pg, errstr, errstr_size)))
                goto out;
        if (!failure) {
                if (j->total_changed) {
                        ms_canon_issue_t is = {"DEACTIVATION_SKIPPED", "", ""};
                        snprintf(is.message, sizeof(is.message),
                                 "the source's total changed from %lld to %lld during "
                                 "the sync: nobody deactivated",
                                 j->source_total, j->total_changed_to);
                        add_issue_row(issues, j, "WARNING", &is, NULL, -1);
                } else if (j->source_total >= 0 && j->processed == j->source_total) {
                        if ((rc = deactivate_unseen(j, &guard, issues, errstr,
                                                    errstr_size)))
                                goto out;
                } else {
                        ms_canon_issue_t is = {"DEACTIVATION_SKIPPED", "", ""};
                        snprintf(is.message, sizeof(is.message),
                                 "received %lld records but the source reported %lld: "
                                 "nobody deactivated",
                                 j->processed, j->source_total);
                        add_issue_row(issues, j, "WARNING", &is, NULL, -1);
                }
        }
        if ((rc = insert_issue_rows(j, issues, errstr, errstr_size)))
                goto out;
        for (size_t i = 0; i < json_array_size(issues); i++)
                if (strcmp(json_string_value(
                               json_object_get(json_array_get(issues, i), "code")),
                           "DEACTIVATION_SKIPPED") == 0)
                        j->warnings++;
        const char *outcome = failure                    ? "FAILED"
                              : (j->errors > 0 || guard) ? "PARTIAL"
                                                         : "SUCCEEDED";
        char reason[720] = "";
        if (failure)
                snprintf(reason, sizeof(reason), "%s", failure);
        else if (guard)
                snprintf(reason, sizeof(reason), "deactivation guard");
        json_t *pl = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "outcome",
            outcome, "finished_at", (json_int_t)ms_now_ms(), "records_processed",
            (json_int_t)j->processed, "records_synced",
            (json_int_t)(j->created + j->updated + j->unchanged), "created",
            (json_int_t)j->created, "updated", (json_int_t)j->updated, "deactivated",
            (json_int_t)j->deactivated, "unchanged", (json_int_t)j->unchanged,
            "error_count", (json_int_t)j->errors, "warning_count",
            (json_int_t)j->warnings, "failure_reason", reason[0] ? reason : NULL);
        if ((rc = emit(j, "SyncCompleted", pl, errstr, errstr_size)))
                goto out;
        if ((rc = save_job(j, outcome, reason[0] ? reason : NULL, errstr, errstr_size)))
                goto out;
        const char *p[] = {j->job_id};
        if ((rc = ms_pg_exec(j->pg,
                             "DELETE FROM membersync.job_seen WHERE job_id = $1::uuid", 1,
                             p, NULL, errstr, errstr_size)))
                goto out;
        if ((rc = ms_consumer_store_offset(j->ctx->consumer, j->pg, m, errstr,
                                           errstr_size)))
                goto out;
        if ((rc = ms_outbox_flush(j->ob, j->pg, errstr, errstr_size)))
                goto out;
        rc = ms_pg_commit(j->pg, errstr, errstr_size);
        if (!rc) {
                char labels[160];
                ms_metrics_counter_add("membersync_jobs_total",
                                       "Sync jobs finished, by outcome",
                                       ms_metrics_labels(labels, sizeof(labels), "system",
                                                         ms_system_slug(j->ctx->sys),
                                                         "outcome", outcome, NULL),
                                       1);
        }
        if (!rc)
                ms_log_info(
                    "job finished %s: processed %lld, created %lld, updated %lld, "
                    "unchanged %lld, deactivated %lld, errors %lld, warnings %lld%s%s",
                    outcome, j->processed, j->created, j->updated, j->unchanged,
                    j->deactivated, j->errors, j->warnings, reason[0] ? ": " : "",
                    reason);
out:
        if (rc) {
                ms_pg_rollback(j->pg);
                ms_outbox_reset(j->ob);
        }
        json_decref(issues);
        return rc;
}

/* The gateway calls this while it waits; it keeps the group membership and
 * the job's heartbeat alive, and cancels the wait on shutdown/revocation. */
static int idle_cb(void *opaque)
{
        job_t *j = opaque;
        if (ms_mono_ms() - j->last_heartbeat_ms >=
            j->ctx->conf->conn_heartbeat_interval_ms) {
                char err[256];
                const char *p[] = {j->job_id, j->ctx->instance};
                if (ms_pg_exec(
                        j->pg,
                        "UPDATE membersync.sync_jobs SET heartbeat_at = now() WHERE "
                        "job_id = $1::uuid AND owner = $2",
                        2, p, NULL, err, sizeof(err)) == 0)
                        j->last_heartbeat_ms = ms_mono_ms();
        }
        return ms_consumer_keepalive(j->ctx->consumer);
}

static int load_secret(PGresult *jr, ms_system_t sys, ms_gateway_conf_t *gc,
                       char **secret, size_t *secret_len, char *errstr,
                       size_t errstr_size)
{
        int rc = ms_conf_secret(ms_pg_str(jr, 0, "credentials_ref"), secret, errstr,
                                errstr_size);
        if (rc)
                return rc;
        *secret_len = strlen(*secret);
        if (sys == MS_SYSTEM_CORNERSTONE) {
                gc->api_key = *secret;
                return 0;
        }
        /* Consio secrets hold "client_id:client_secret". */
        char *colon = strchr(*secret, ':');
        if (!colon) {
                snprintf(errstr, errstr_size,
                         "credentials for Consio must be \"client_id:client_secret\"");
                return MS_ERR_CONFIG;
        }
        *colon = '\0';
        gc->client_id = *secret;
        gc->client_secret = colon + 1;
        return 0;
}

/* Claims the job (QUEUED -> RUNNING, or takes over a RUNNING one) and loads
 * its state.  Returns 1 when the job must be skipped (offset stored). */
static int claim(job_t *j, const rd_kafka_message_t *m, PGresult **jr_out, char *errstr,
                 size_t errstr_size)
{
        PGresult *r = NULL;
        int rc;
        if ((rc = ms_pg_begin(j->pg, errstr, errstr_size)))
                return rc;
        const char *p[] = {j->job_id};
        if ((rc = ms_pg_exec(
                 j->pg,
                 "SELECT j.*, i.base_url, i.credentials_ref, i.page_size, i.max_rps, "
                 "i.enabled, (SELECT p.records_processed FROM membersync.sync_jobs p "
                 "WHERE p.org_id = j.org_id AND p.integration = j.integration AND "
                 "p.state IN ('SUCCEEDED', 'PARTIAL') AND p.job_id <> j.job_id ORDER "
                 "BY p.queued_at DESC LIMIT 1) AS last_total FROM "
                 "membersync.sync_jobs j LEFT JOIN membersync.integrations i ON "
                 "i.org_id = j.org_id AND i.integration = j.integration WHERE "
                 "j.job_id = $1::uuid FOR UPDATE OF j",
                 1, p, &r, errstr, errstr_size)))
                goto fail;
        const char *state = PQntuples(r) ? ms_pg_str(r, 0, "state") : NULL;
        if (!state || (strcmp(state, "QUEUED") != 0 && strcmp(state, "RUNNING") != 0)) {
                ms_log_info("job %s is %s: skipped", j->job_id,
                            state ? state : "unknown");
                if ((rc = ms_consumer_store_offset(j->ctx->consumer, j->pg, m, errstr,
                                                   errstr_size)) ||
                    (rc = ms_pg_commit(j->pg, errstr, errstr_size)))
                        goto fail;
                PQclear(r);
                return 1;
        }
        int fresh = strcmp(state, "QUEUED") == 0;
        const char *cp = ms_pg_str(r, 0, "checkpoint");
        j->checkpoint = cp ? strdup(cp) : NULL;
        j->fetch_complete = strcmp(ms_pg_str(r, 0, "fetch_complete"), "t") == 0;
        j->seq = ms_pg_i64(r, 0, "seq", 0);
        j->processed = ms_pg_i64(r, 0, "records_processed", 0);
        j->created = ms_pg_i64(r, 0, "created", 0);
        j->updated = ms_pg_i64(r, 0, "updated", 0);
        j->unchanged = ms_pg_i64(r, 0, "unchanged", 0);
        j->deactivated = ms_pg_i64(r, 0, "deactivated", 0);
        j->errors = ms_pg_i64(r, 0, "error_count", 0);
        j->warnings = ms_pg_i64(r, 0, "warning_count", 0);
        j->source_total = ms_pg_i64(r, 0, "source_total", -1);
        j->total_estimate =
            ms_pg_i64(r, 0, "total_estimate", ms_pg_i64(r, 0, "last_total", -1));
        const char *ew = ms_pg_str(r, 0, "rate_ewma");
        j->rate_ewma = ew ? atof(ew) : 0;
        snprintf(j->request_id, sizeof(j->request_id), "%s",
                 ms_pg_str(r, 0, "request_id"));
        const char *p2[] = {j->job_id, j->ctx->instance};
        if ((rc = ms_pg_exec(
                 j->pg,
                 "UPDATE membersync.sync_jobs SET state = 'RUNNING', owner = $2, "
                 "started_at = coalesce(started_at, now()), heartbeat_at = now() "
                 "WHERE job_id = $1::uuid",
                 2, p2, NULL, errstr, errstr_size)))
                goto fail;
        if (fresh) {
                if ((rc = emit(j, "SyncStarted",
                               json_pack("{s:I, s:o}", "started_at",
                                         (json_int_t)ms_now_ms(), "total_estimate",
                                         opt_int(j->total_estimate)),
                               errstr, errstr_size)))
                        goto fail;
                const char *p3[] = {j->job_id};
                char sq[24];
                snprintf(sq, sizeof(sq), "%lld", j->seq);
                const char *p4[] = {p3[0], sq};
                if ((rc = ms_pg_exec(
                         j->pg,
                         "UPDATE membersync.sync_jobs SET seq = $2 WHERE job_id = "
                         "$1::uuid",
                         2, p4, NULL, errstr, errstr_size)))
                        goto fail;
        }
        if ((rc = ms_outbox_flush(j->ob, j->pg, errstr, errstr_size)) ||
            (rc = ms_pg_commit(j->pg, errstr, errstr_size)))
                goto fail;
        ms_log_info("job %s %s (checkpoint %s, %lld records so far)", j->job_id,
                    fresh ? "started" : "resumed", j->checkpoint ? "set" : "none",
                    j->processed);
        j->last_heartbeat_ms = ms_mono_ms();
        *jr_out = r;
        return 0;
fail:
        ms_pg_rollback(j->pg);
        ms_outbox_reset(j->ob);
        PQclear(r);
        return rc;
}

static const char *failure_text(int rc, const char *err, char *buf, size_t size)
{
        switch (rc) {
        case MS_ERR_AUTH:
                snprintf(buf, size, "authentication failed: %s", err);
                break;
        case MS_ERR_CURSOR_LOOP:
                snprintf(buf, size, "cursor loop: %s", err);
                break;
        case MS_ERR_RETRIES:
                snprintf(buf, size, "page still failing after retries: %s", err);
                break;
        default:
                snprintf(buf, size, "%s", err);
        }
        return buf;
}

static int handle_job(void *opaque, ms_consumer_t *c, PGconn *pg,
                      const rd_kafka_message_t *m, ms_outbox_t *ob, char *errstr,
                      size_t errstr_size)
{
        conn_ctx_t *ctx = opaque;
        ctx->consumer = c;
        json_t *msg = NULL;
        PGresult *jr = NULL;
        ms_gateway_t *gw = NULL;
        ms_prefetch_t *pf = NULL;
        char *secret = NULL;
        size_t secret_len = 0;
        int rc = ms_avro_decode(ctx->codec, "SyncJob", m->payload, m->len, &msg, errstr,
                                errstr_size);
        if (rc)
                return rc;
        job_t j;
        memset(&j, 0, sizeof(j));
        j.ctx = ctx;
        j.pg = pg;
        j.ob = ob;
        j.integ = ms_system_enum(ctx->sys);
        const char *jid = json_string_value(json_object_get(msg, "job_id"));
        const char *org = json_string_value(json_object_get(msg, "org_id"));
        const char *integ = json_string_value(json_object_get(msg, "integration"));
        if (!ms_uuid_valid(jid) || !org || !integ || strcmp(integ, j.integ) != 0) {
                snprintf(errstr, errstr_size,
                         "SyncJob with a bad job id or another system");
                rc = MS_ERR_DECODE;
                goto out;
        }
        snprintf(j.job_id, sizeof(j.job_id), "%s", jid);
        snprintf(j.org, sizeof(j.org), "%s", org);
        snprintf(j.status_key, sizeof(j.status_key), "%s/%s", j.org, j.integ);
        j.today_days = (int32_t)(ms_now_ms() / 86400000);
        ms_log_ctx_set(j.job_id, j.org);

        rc = claim(&j, m, &jr, errstr, errstr_size);
        if (rc == 1) {
                rc = 0;
                goto out;
        }
        if (rc)
                goto out;

        char failure[700] = "";
        ms_gateway_conf_t gc = {
            .system = ctx->sys,
            .base_url = ms_pg_str(jr, 0, "base_url"),
            .ca_file = ctx->conf->conn_ca_file[0] ? ctx->conf->conn_ca_file : NULL,
            .page_size = (int)ms_pg_i64(jr, 0, "page_size", ctx->conf->conn_page_size),
            .max_rps =
                ms_pg_str(jr, 0, "max_rps") ? atof(ms_pg_str(jr, 0, "max_rps")) : 0,
            .connect_timeout_ms = ctx->conf->conn_connect_timeout_ms,
            .timeout_ms = ctx->conf->conn_timeout_ms,
            .max_retries = ctx->conf->conn_max_retries,
            .backoff_base_ms = ctx->conf->conn_backoff_base_ms,
            .backoff_max_ms = ctx->conf->conn_backoff_max_ms,
            .retry_after_cap_ms = ctx->conf->conn_retry_after_cap_ms,
            .max_response_bytes = (size_t)ctx->conf->conn_max_response_mb << 20,
            .idle_cb = ms_prefetch_idle_cb,
            .idle_opaque = &j.cancel_fetch};
        char gerr[512] = "";
        if (!gc.base_url || ms_pg_str(jr, 0, "enabled")[0] != 't') {
                snprintf(failure, sizeof(failure),
                         "integration is not configured or disabled");
        } else if ((rc = load_secret(jr, ctx->sys, &gc, &secret, &secret_len, gerr,
                                     sizeof(gerr))) ||
                   (rc = ms_gateway_new(&gc, &gw, gerr, sizeof(gerr)))) {
                snprintf(failure, sizeof(failure), "%s", gerr);
        }
        if (!failure[0] && !j.fetch_complete &&
            ms_prefetch_start(gw, j.checkpoint, ms_system_slug(ctx->sys), &j.cancel_fetch,
                              &pf, gerr, sizeof(gerr)))
                snprintf(failure, sizeof(failure), "%s", gerr);
        int64_t t0 = ms_mono_ms();
        while (!failure[0] && !j.fetch_complete) {
                ms_page_t page = {0};
                /* Stop (shutdown, partition revoked) is checked before a page
                 * is taken: a page taken is processed, so that at most the
                 * one page fetched ahead is fetched again after a stop. */
                rc = ms_consumer_keepalive(c) ? MS_PREFETCH_TIMEOUT : 0;
                /* Wait for the prefetched page in short slices, serving the
                 * consumer group and the job's heartbeat meanwhile. */
                while (rc == 0 &&
                       (rc = ms_prefetch_next(pf, 100, &page, gerr, sizeof(gerr))) ==
                           MS_PREFETCH_TIMEOUT) {
                        if (idle_cb(&j))
                                break;
                        rc = 0;
                }
                if (rc == MS_PREFETCH_TIMEOUT) {
                        ms_page_clear(&page);
                        rc = MS_CONSUMER_INTERRUPTED;
                        ms_log_info("job %s interrupted; it resumes from its checkpoint",
                                    j.job_id);
                        goto out;
                }
                if (rc) {
                        failure_text(rc, gerr, failure, sizeof(failure));
                        ms_page_clear(&page);
                        break;
                }
                size_t n = json_array_size(page.items);
                int64_t t1 = ms_mono_ms();
                j.t_fetch += t1 - t0;
                if ((rc = ms_pg_begin(pg, errstr, errstr_size)) == 0) {
                        /* The completeness check compares with the total
                         * the source reported for the job's first page, kept
                         * in sync_jobs so a resumed run compares with it
                         * too.  A total that moves while we page means
                         * members were inserted or removed under
                         * page-number paging: the pages after the change
                         * are shifted, some members are never served, and
                         * "received == total" no longer proves that everyone
                         * was seen, so deactivation is skipped (issue 4). */
                        if (page.total_count >= 0 && j.source_total < 0) {
                                j.source_total = page.total_count;
                        } else if (page.total_count >= 0 &&
                                   page.total_count != j.source_total &&
                                   !j.total_changed) {
                                j.total_changed = 1;
                                j.total_changed_to = page.total_count;
                                ms_log_warn(
                                    "job %s: the source's total changed from %lld "
                                    "to %lld during the sync",
                                    j.job_id, j.source_total,
                                    (long long)page.total_count);
                        }
                        rc = process_page(&j, page.items, errstr, errstr_size);
                        if (!rc) {
                                /* Rate over a whole page cycle (wait + work):
                                 * what the ETA needs. */
                                double took = (double)(ms_mono_ms() - t0) / 1000.0;
                                double rate = took > 0 ? (double)n / took : 0;
                                j.rate_ewma = j.rate_ewma > 0
                                                  ? 0.3 * rate + 0.7 * j.rate_ewma
                                                  : rate;
                                free(j.checkpoint);
                                j.checkpoint = page.next ? strdup(page.next) : NULL;
                                j.fetch_complete = page.next == NULL;
                                if (j.fetch_complete ||
                                    ms_mono_ms() - j.last_progress_ms >=
                                        ctx->conf->conn_progress_interval_ms)
                                        rc = emit_progress(&j, errstr, errstr_size);
                        }
                        int64_t t2 = ms_mono_ms();
                        j.t_process += t2 - t1;
                        if (!rc)
                                rc = save_job(&j, "RUNNING", NULL, errstr, errstr_size);
                        if (!rc)
                                rc = ms_outbox_flush(ob, pg, errstr, errstr_size);
                        if (!rc)
                                rc = ms_pg_commit(pg, errstr, errstr_size);
                        j.t_commit += ms_mono_ms() - t2;
                        if (!rc) {
                                char labels[96];
                                ms_metrics_counter_add(
                                    "membersync_records_processed_total",
                                    "Member records processed by the connector",
                                    ms_metrics_labels(labels, sizeof(labels), "system",
                                                      ms_system_slug(ctx->sys), NULL),
                                    (double)n);
                        }
                        if (rc) {
                                ms_pg_rollback(pg);
                                ms_outbox_reset(ob);
                        }
                }
                ms_page_clear(&page);
                if (rc)
                        goto out; /* PG trouble or fenced: resume from checkpoint */
                t0 = ms_mono_ms();
        }
        ms_prefetch_stop(pf);
        pf = NULL;
        if (failure[0])
                ms_log_warn("job %s failed: %s", j.job_id, failure);
        ms_log_info("job %s time: fetch %lld ms, process %lld ms, commit %lld ms",
                    j.job_id, (long long)j.t_fetch, (long long)j.t_process,
                    (long long)j.t_commit);
        rc = finish_job(&j, m, failure[0] ? failure : NULL, errstr, errstr_size);
out:
        ms_log_ctx_set(NULL, NULL);
        ms_prefetch_stop(pf);
        if (secret) {
                /* Wipe the whole buffer: a Consio secret has a NUL where
                 * its colon was. */
                memset(secret, 0, secret_len);
                free(secret);
        }
        ms_gateway_destroy(gw);
        PQclear(jr);
        free(j.checkpoint);
        json_decref(msg);
        return rc;
}

int ms_connector_run(const ms_conf_t *conf, const char *system_slug, char *errstr,
                     size_t errstr_size)
{
        conn_ctx_t ctx;
        memset(&ctx, 0, sizeof(ctx));
        ctx.conf = conf;
        if (ms_system_parse(system_slug, &ctx.sys)) {
                snprintf(errstr, errstr_size, "connector: unknown system \"%s\"",
                         system_slug);
                return MS_ERR_CONFIG;
        }
        ms_uuid_new(ctx.instance);
        char name[48];
        snprintf(name, sizeof(name), "connector-%s", ms_system_slug(ctx.sys));
        ms_log_info("%s: instance %s", name, ctx.instance);
        ms_consumer_conf_t cc = {.long_handler = handle_job, .opaque = &ctx};
        return ms_consumer_role_run(conf, name,
                                    ms_conf_jobs_topic(conf, ms_system_slug(ctx.sys)), cc,
                                    &ctx.codec, &ctx.consumer, errstr, errstr_size);
}
