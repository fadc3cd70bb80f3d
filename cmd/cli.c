/* CLI verbs: trigger, status, errors, tail, integration, schedule, topics. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ms_avro.h"
#include "ms_canon.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_trigger.h"
#include "ms_util.h"

static ms_avro_t *codec_new(const ms_conf_t *conf, char *errstr, size_t errstr_size)
{
        ms_avro_t *codec = NULL;
        if (ms_avro_new(conf->kafka_schema_registry_url[0]
                            ? conf->kafka_schema_registry_url
                            : NULL,
                        &codec, errstr, errstr_size))
                return NULL;
        return codec;
}

static void upcase(char *s)
{
        for (; *s; s++)
                if (*s >= 'a' && *s <= 'z')
                        *s = (char)(*s - 'a' + 'A');
}

/* The encoding, key and CloudEvents headers live in common/ms_trigger, shared
 * with the api role. */
int ms_cli_publish_request(const ms_conf_t *conf, json_t *req, char *errstr,
                           size_t errstr_size)
{
        return ms_trigger_publish(conf, "cli", req, errstr, errstr_size);
}

/* Counts of sync_errors by code for a job, as {"ERROR": {...}, "WARNING": {...}}. */
static json_t *issue_counts(PGconn *pg, const char *job_id)
{
        char err[512];
        PGresult *r = NULL;
        const char *p[] = {job_id};
        json_t *out = json_pack("{s:{}, s:{}}", "ERROR", "WARNING");
        if (ms_pg_exec(pg,
                       "SELECT severity, code, count(*) FROM membersync.sync_errors "
                       "WHERE job_id "
                       "= $1::uuid GROUP BY 1, 2 ORDER BY 1, 2",
                       1, p, &r, err, sizeof(err)) == 0) {
                for (int i = 0; i < PQntuples(r); i++)
                        json_object_set_new(json_object_get(out, PQgetvalue(r, i, 0)),
                                            PQgetvalue(r, i, 1),
                                            json_integer(atoll(PQgetvalue(r, i, 2))));
                PQclear(r);
        }
        return out;
}

static void progress_bar(long long done, long long total, const char *state)
{
        int width = 30;
        if (total > 0) {
                long long pct = done * 100 / total;
                if (pct > 100)
                        pct = 100;
                int fill = (int)(pct * width / 100);
                fprintf(stderr, "\r%-8s [", state);
                for (int i = 0; i < width; i++)
                        fputc(i < fill ? '#' : '.', stderr);
                fprintf(stderr, "] %3lld%% %lld/%lld ", pct, done, total);
        } else {
                fprintf(stderr, "\r%-8s %lld records ", state, done);
        }
        fflush(stderr);
}

int ms_cli_wait_job(const ms_conf_t *conf, const char *request_id, int json_out,
                    int timeout_s)
{
        char err[1024];
        PGconn *pg = ms_pg_connect(conf->pg_dsn, "cli", err, sizeof(err));
        if (!pg) {
                fprintf(stderr, "membersync trigger: %s\n", err);
                return 1;
        }
        int rc = 1, tty = isatty(2);
        int64_t deadline = ms_mono_ms() + (int64_t)timeout_s * 1000, t0 = ms_now_ms();
        char job_id[40] = "";
        PGresult *r = NULL;
        const char *p[] = {request_id};
        /* 1. The rate limiter's decision. */
        while (ms_mono_ms() < deadline && !ms_stop) {
                if (ms_pg_exec(
                        pg,
                        "SELECT decision, job_id, message, to_char(next_allowed_at AT "
                        "TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS "
                        "next_allowed_at, existing_job_id FROM membersync.sync_requests "
                        "WHERE request_id "
                        "= $1::uuid",
                        1, p, &r, err, sizeof(err)) == 0 &&
                    PQntuples(r) > 0)
                        break;
                PQclear(r);
                r = NULL;
                ms_sleep_ms(100);
        }
        if (!r) {
                fprintf(stderr, "membersync trigger: no decision within %d s\n",
                        timeout_s);
                goto out;
        }
        if (strcmp(ms_pg_str(r, 0, "decision"), "QUEUED") != 0) {
                json_t *o = json_pack(
                    "{s:s, s:s, s:s, s:s?, s:s?}", "request_id", request_id, "decision",
                    ms_pg_str(r, 0, "decision"), "message",
                    ms_pg_str(r, 0, "message") ? ms_pg_str(r, 0, "message") : "",
                    "next_allowed_at", ms_pg_str(r, 0, "next_allowed_at"),
                    "existing_job_id", ms_pg_str(r, 0, "existing_job_id"));
                if (json_out) {
                        json_dumpf(o, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                } else {
                        printf("rejected: %s: %s\n", ms_pg_str(r, 0, "decision"),
                               ms_pg_str(r, 0, "message") ? ms_pg_str(r, 0, "message")
                                                          : "");
                }
                json_decref(o);
                rc = 3;
                goto out;
        }
        snprintf(job_id, sizeof(job_id), "%s", ms_pg_str(r, 0, "job_id"));
        PQclear(r);
        r = NULL;
        /* 2. The job until it ends. */
        const char *pj[] = {job_id};
        for (;;) {
                if (ms_mono_ms() > deadline || ms_stop) {
                        fprintf(stderr,
                                "\nmembersync trigger: job %s still running after %d s\n",
                                job_id, timeout_s);
                        goto out;
                }
                if (ms_pg_exec(
                        pg,
                        "SELECT *, (extract(epoch FROM finished_at) * 1000)::bigint AS "
                        "finished_ms FROM membersync.sync_jobs WHERE job_id = $1::uuid",
                        1, pj, &r, err, sizeof(err)) == 0 &&
                    PQntuples(r) > 0) {
                        const char *state = ms_pg_str(r, 0, "state");
                        long long total = ms_pg_i64(
                            r, 0, "source_total", ms_pg_i64(r, 0, "total_estimate", -1));
                        if (tty && !json_out)
                                progress_bar(ms_pg_i64(r, 0, "records_processed", 0),
                                             total, state);
                        if (strcmp(state, "QUEUED") != 0 && strcmp(state, "RUNNING") != 0)
                                break;
                }
                PQclear(r);
                r = NULL;
                ms_sleep_ms(200);
        }
        if (tty && !json_out)
                fputc('\n', stderr);
        json_t *counts = issue_counts(pg, job_id);
        long long created = ms_pg_i64(r, 0, "created", 0),
                  updated = ms_pg_i64(r, 0, "updated", 0),
                  unchanged = ms_pg_i64(r, 0, "unchanged", 0);
        json_t *sum = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:O, "
            "s:O, "
            "s:s?, s:I}",
            "request_id", request_id, "job_id", job_id, "org_id",
            ms_pg_str(r, 0, "org_id"), "integration", ms_pg_str(r, 0, "integration"),
            "outcome", ms_pg_str(r, 0, "state"), "records_processed",
            (json_int_t)ms_pg_i64(r, 0, "records_processed", 0), "records_synced",
            (json_int_t)(created + updated + unchanged), "created", (json_int_t)created,
            "updated", (json_int_t)updated, "unchanged", (json_int_t)unchanged,
            "deactivated", (json_int_t)ms_pg_i64(r, 0, "deactivated", 0), "error_count",
            (json_int_t)ms_pg_i64(r, 0, "error_count", 0), "warning_count",
            (json_int_t)ms_pg_i64(r, 0, "warning_count", 0), "total_count",
            ms_pg_str(r, 0, "source_total")
                ? json_integer(ms_pg_i64(r, 0, "source_total", 0))
                : json_null(),
            "errors_by_code", json_object_get(counts, "ERROR"), "warnings_by_code",
            json_object_get(counts, "WARNING"), "failure_reason",
            ms_pg_str(r, 0, "failure_reason"), "duration_ms",
            (json_int_t)(ms_pg_i64(r, 0, "finished_ms", t0) - t0));
        json_decref(counts);
        if (json_out) {
                json_dumpf(sum, stdout, JSON_COMPACT);
                fputc('\n', stdout);
        } else {
                json_dumpf(sum, stdout, JSON_INDENT(2));
                fputc('\n', stdout);
        }
        rc = strcmp(ms_pg_str(r, 0, "state"), "FAILED") == 0 ? 1 : 0;
        json_decref(sum);
out:
        PQclear(r);
        PQfinish(pg);
        return rc;
}

int ms_cli_trigger(const ms_conf_t *conf, int argc, char **argv)
{
        static const struct option opts[] = {{"org", required_argument, 0, 'o'},
                                             {"integration", required_argument, 0, 'i'},
                                             {"trigger", required_argument, 0, 't'},
                                             {"user", required_argument, 0, 'u'},
                                             {"role", required_argument, 0, 'r'},
                                             {"actor-org", required_argument, 0, 'a'},
                                             {"request-id", required_argument, 0, 'q'},
                                             {"wait", no_argument, 0, 'w'},
                                             {"json", no_argument, 0, 'j'},
                                             {"timeout", required_argument, 0, 'T'},
                                             {0, 0, 0, 0}};
        const char *org = NULL, *integ = NULL, *user = "cli", *actor_org = NULL,
                   *rid = NULL;
        char trigger[16] = "MANUAL", role[16] = "GLOBAL_ADMIN";
        int wait = 0, json_out = 0, timeout = 600, c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'o':
                        org = optarg;
                        break;
                case 'i':
                        integ = optarg;
                        break;
                case 't':
                        snprintf(trigger, sizeof(trigger), "%s", optarg);
                        upcase(trigger);
                        break;
                case 'u':
                        user = optarg;
                        break;
                case 'r':
                        snprintf(role, sizeof(role), "%s", optarg);
                        upcase(role);
                        break;
                case 'a':
                        actor_org = optarg;
                        break;
                case 'q':
                        rid = optarg;
                        break;
                case 'w':
                        wait = 1;
                        break;
                case 'j':
                        json_out = 1;
                        break;
                case 'T':
                        timeout = atoi(optarg);
                        break;
                default:
                        fprintf(stderr,
                                "usage: membersync trigger --org ORG --integration "
                                "cornerstone|consio [--trigger manual|scheduled] [--user "
                                "ID] [--role org_admin|global_admin|system] [--actor-org "
                                "ORG] [--request-id UUID] [--wait] [--json] [--timeout "
                                "S]\n");
                        return 2;
                }
        }
        ms_system_t sys;
        if (!org || !integ || ms_system_parse(integ, &sys)) {
                fprintf(stderr, "membersync trigger: --org and --integration "
                                "cornerstone|consio are required\n");
                return 2;
        }
        if (strcmp(trigger, "MANUAL") && strcmp(trigger, "SCHEDULED")) {
                fprintf(stderr,
                        "membersync trigger: --trigger must be manual or scheduled\n");
                return 2;
        }
        if (strcmp(role, "ORG_ADMIN") == 0 && !actor_org)
                actor_org = org;
        char id[37];
        if (!rid) {
                ms_uuid_new(id);
                rid = id;
        } else if (!ms_uuid_valid(rid)) {
                fprintf(stderr, "membersync trigger: --request-id must be a UUID\n");
                return 2;
        }
        json_t *req =
            json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s?}, s:I}", "request_id", rid,
                      "org_id", org, "integration", ms_system_enum(sys), "trigger",
                      trigger, "requested_by", "user_id", user, "role", role, "org_id",
                      actor_org, "requested_at", (json_int_t)ms_now_ms());
        char err[1024];
        int rc = ms_cli_publish_request(conf, req, err, sizeof(err));
        json_decref(req);
        if (rc) {
                fprintf(stderr, "membersync trigger: %s\n", err);
                return 1;
        }
        if (!wait) {
                if (json_out)
                        printf("{\"request_id\":\"%s\"}\n", rid);
                else
                        printf("request %s published\n", rid);
                return 0;
        }
        return ms_cli_wait_job(conf, rid, json_out, timeout);
}

static int print_rows_json(PGresult *r)
{
        json_t *arr = json_array();
        for (int i = 0; i < PQntuples(r); i++) {
                json_t *o = json_object();
                for (int c = 0; c < PQnfields(r); c++)
                        json_object_set_new(o, PQfname(r, c),
                                            PQgetisnull(r, i, c)
                                                ? json_null()
                                                : json_string(PQgetvalue(r, i, c)));
                json_array_append_new(arr, o);
        }
        json_dumpf(arr, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(arr);
        return 0;
}

int ms_cli_status(const ms_conf_t *conf, int argc, char **argv)
{
        const char *org = NULL;
        int json_out = 0;
        for (int a = 1; a < argc; a++) {
                if (strcmp(argv[a], "--org") == 0 && a + 1 < argc)
                        org = argv[++a];
                else if (strcmp(argv[a], "--json") == 0)
                        json_out = 1;
        }
        char err[1024];
        PGconn *pg = ms_pg_connect(conf->pg_dsn, "cli", err, sizeof(err));
        if (!pg) {
                fprintf(stderr, "membersync status: %s\n", err);
                return 1;
        }
        PGresult *r = NULL;
        const char *p[] = {org};
        int rc = ms_pg_exec(
            pg,
            "SELECT org_id, integration, state, active_job_id, records_processed, "
            "total_estimate, to_char(eta_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS eta_at, last_job_id, "
            "last_outcome, to_char(last_sync_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS last_sync_at, "
            "last_records_processed, records_synced, created, updated, "
            "deactivated, unchanged, error_count, warning_count, failure_reason, "
            "to_char(next_manual_allowed_at AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS next_manual_allowed_at, "
            "last_rejection::text AS last_rejection FROM membersync.sync_status "
            "WHERE $1::text IS NULL OR org_id = $1 ORDER BY 1, 2",
            1, p, &r, err, sizeof(err));
        if (rc) {
                fprintf(stderr, "membersync status: %s\n", err);
                PQfinish(pg);
                return 1;
        }
        if (json_out) {
                print_rows_json(r);
        } else {
                printf("%-20s %-12s %-9s %-9s %-25s %8s %8s %8s %8s %6s\n", "ORG",
                       "INTEGRATION", "STATE", "OUTCOME", "LAST SYNC", "SYNCED",
                       "CREATED", "UPDATED", "DEACT", "ERRORS");
                for (int i = 0; i < PQntuples(r); i++)
                        printf("%-20.20s %-12s %-9s %-9s %-25s %8s %8s %8s %8s %6s\n",
                               PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                               PQgetvalue(r, i, 2), PQgetvalue(r, i, 8),
                               PQgetvalue(r, i, 9), PQgetvalue(r, i, 11),
                               PQgetvalue(r, i, 12), PQgetvalue(r, i, 13),
                               PQgetvalue(r, i, 14), PQgetvalue(r, i, 16));
        }
        PQclear(r);
        PQfinish(pg);
        return 0;
}

int ms_cli_errors(const ms_conf_t *conf, int argc, char **argv)
{
        if (argc < 2 || !ms_uuid_valid(argv[1])) {
                fprintf(stderr, "usage: membersync errors JOB_ID [--json]\n");
                return 2;
        }
        int json_out = argc > 2 && strcmp(argv[2], "--json") == 0;
        char err[1024];
        PGconn *pg = ms_pg_connect(conf->pg_dsn, "cli", err, sizeof(err));
        if (!pg) {
                fprintf(stderr, "membersync errors: %s\n", err);
                return 1;
        }
        PGresult *r = NULL;
        const char *p[] = {argv[1]};
        if (ms_pg_exec(
                pg,
                "SELECT seq, severity, code, external_id, field, message, record_index "
                "FROM membersync.sync_errors WHERE job_id = $1::uuid ORDER BY seq",
                1, p, &r, err, sizeof(err))) {
                fprintf(stderr, "membersync errors: %s\n", err);
                PQfinish(pg);
                return 1;
        }
        if (json_out) {
                print_rows_json(r);
        } else {
                for (int i = 0; i < PQntuples(r); i++)
                        printf("%-7s %-20s %-14s %-16s %s\n", PQgetvalue(r, i, 1),
                               PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                               PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
        }
        PQclear(r);
        PQfinish(pg);
        return 0;
}

int ms_cli_integration(const ms_conf_t *conf, int argc, char **argv)
{
        const char *org = NULL, *sys_s = NULL, *url = NULL, *cred = NULL, *page = "500",
                   *rps = "20", *enabled = "true", *name = NULL;
        int ok = argc >= 2 && strcmp(argv[1], "set") == 0;
        for (int a = 2; ok && a + 1 < argc; a += 2) {
                if (strcmp(argv[a], "--org") == 0)
                        org = argv[a + 1];
                else if (strcmp(argv[a], "--system") == 0)
                        sys_s = argv[a + 1];
                else if (strcmp(argv[a], "--base-url") == 0)
                        url = argv[a + 1];
                else if (strcmp(argv[a], "--credentials-ref") == 0)
                        cred = argv[a + 1];
                else if (strcmp(argv[a], "--page-size") == 0)
                        page = argv[a + 1];
                else if (strcmp(argv[a], "--max-rps") == 0)
                        rps = argv[a + 1];
                else if (strcmp(argv[a], "--enabled") == 0)
                        enabled = argv[a + 1];
                else if (strcmp(argv[a], "--name") == 0)
                        name = argv[a + 1];
                else
                        ok = 0;
        }
        ms_system_t sys;
        if (!ok || !org || !sys_s || !url || !cred || ms_system_parse(sys_s, &sys)) {
                fprintf(stderr,
                        "usage: membersync integration set --org ORG --system "
                        "cornerstone|consio --base-url URL --credentials-ref "
                        "env:NAME|file:/path [--page-size N] [--max-rps R] [--enabled "
                        "true|false] [--name TEXT]\n");
                return 2;
        }
        char err[1024];
        PGconn *pg = ms_pg_connect(conf->pg_dsn, "cli", err, sizeof(err));
        if (!pg) {
                fprintf(stderr, "membersync integration: %s\n", err);
                return 1;
        }
        const char *p[] = {org, ms_system_enum(sys), url, cred, enabled, page, rps, name};
        int rc = ms_pg_exec(
            pg,
            "INSERT INTO membersync.integrations(org_id, integration, base_url, "
            "credentials_ref, enabled, page_size, max_rps, display_name) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org_id, integration) "
            "DO UPDATE SET base_url = EXCLUDED.base_url, credentials_ref = "
            "EXCLUDED.credentials_ref, enabled = EXCLUDED.enabled, page_size = "
            "EXCLUDED.page_size, max_rps = EXCLUDED.max_rps, display_name = "
            "EXCLUDED.display_name",
            8, p, NULL, err, sizeof(err));
        PQfinish(pg);
        if (rc) {
                fprintf(stderr, "membersync integration: %s\n", err);
                return 1;
        }
        return 0;
}

int ms_cli_schedule(const ms_conf_t *conf, int argc, char **argv)
{
        (void)argc;
        (void)argv;
        char err[1024];
        PGconn *pg = ms_pg_connect(conf->pg_dsn, "schedule", err, sizeof(err));
        if (!pg) {
                ms_log_error("schedule: %s", err);
                return 1;
        }
        PGresult *r = NULL;
        if (ms_pg_exec(
                pg,
                "SELECT org_id, integration FROM membersync.integrations WHERE enabled "
                "ORDER BY 1, 2",
                0, NULL, &r, err, sizeof(err))) {
                ms_log_error("schedule: %s", err);
                PQfinish(pg);
                return 1;
        }
        int failed = 0;
        for (int i = 0; i < PQntuples(r); i++) {
                char id[37];
                ms_uuid_new(id);
                json_t *req = json_pack(
                    "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:n}, s:I}", "request_id", id,
                    "org_id", PQgetvalue(r, i, 0), "integration", PQgetvalue(r, i, 1),
                    "trigger", "SCHEDULED", "requested_by", "user_id", "scheduler",
                    "role", "SYSTEM", "org_id", "requested_at", (json_int_t)ms_now_ms());
                if (ms_cli_publish_request(conf, req, err, sizeof(err))) {
                        ms_log_error("schedule: %s", err);
                        failed++;
                } else {
                        ms_log_info("schedule: requested %s sync for org %s (request %s)",
                                    PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), id);
                }
                json_decref(req);
        }
        ms_log_info("schedule: %d trigger(s) published, %d failed", PQntuples(r) - failed,
                    failed);
        PQclear(r);
        PQfinish(pg);
        return failed ? 1 : 0;
}

static const char *schema_for_topic(const ms_conf_t *conf, const char *topic)
{
        if (strcmp(topic, conf->topic_sync_requests) == 0)
                return "SyncRequested";
        if (strcmp(topic, conf->topic_sync_jobs_cornerstone) == 0 ||
            strcmp(topic, conf->topic_sync_jobs_consio) == 0)
                return "SyncJob";
        if (strcmp(topic, conf->topic_sync_events) == 0)
                return "SyncEvent";
        if (strcmp(topic, conf->topic_member_changes) == 0)
                return "MemberChanged";
        return NULL;
}

int ms_cli_tail(const ms_conf_t *conf, int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr,
                        "usage: membersync tail TOPIC [--count N] [--timeout-ms MS]\n");
                return 2;
        }
        const char *topic = argv[1];
        long long count = -1;
        int idle_ms = 3000;
        for (int a = 2; a + 1 < argc; a += 2) {
                if (strcmp(argv[a], "--count") == 0)
                        count = atoll(argv[a + 1]);
                else if (strcmp(argv[a], "--timeout-ms") == 0)
                        idle_ms = atoi(argv[a + 1]);
        }
        char err[1024];
        int rc = 1;
        ms_avro_t *codec = codec_new(conf, err, sizeof(err));
        rd_kafka_conf_t *kc =
            ms_kafka_conf_new(conf, "membersync-tail", err, sizeof(err));
        rd_kafka_t *rk = NULL;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        if (!codec || !kc)
                goto out;
        char group[64];
        ms_uuid_new(group + 0);
        /* A throw-away group: tail reads, it never commits. */
        if (ms_kafka_conf_set(kc, "group.id", group, err, sizeof(err)) ||
            ms_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err)))
                goto out;
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!rk)
                goto out;
        kc = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (e || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(err, sizeof(err), "cannot read metadata of %s: %s", topic,
                         rd_kafka_err2str(e ? e : md->topics[0].err));
                goto out;
        }
        parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(parts, topic,
                                                  md->topics[0].partitions[i].id)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, parts);
        const char *schema = schema_for_topic(conf, topic);
        long long seen = 0;
        int64_t last = ms_mono_ms();
        while (!ms_stop && (count < 0 || seen < count) && ms_mono_ms() - last < idle_ms) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (!m)
                        continue;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                last = ms_mono_ms();
                json_t *o = json_pack(
                    "{s:s, s:i, s:I, s:s%}", "topic", topic, "partition", m->partition,
                    "offset", (json_int_t)m->offset, "key",
                    m->key ? (const char *)m->key : "", m->key ? m->key_len : 0);
                json_t *hdrs = json_object();
                rd_kafka_headers_t *h = NULL;
                if (rd_kafka_message_headers(m, &h) == 0) {
                        const char *name;
                        const void *val;
                        size_t len;
                        for (size_t i = 0;
                             rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++)
                                json_object_set_new(
                                    hdrs, name,
                                    json_stringn(val ? val : "", val ? len : 0));
                }
                json_object_set_new(o, "headers", hdrs);
                json_t *v = NULL;
                char derr[512];
                if (schema && ms_avro_decode(codec, schema, m->payload, m->len, &v, derr,
                                             sizeof(derr)) == 0) {
                        json_object_set_new(o, "value", v);
                } else {
                        char *b64 = ms_base64_encode(m->payload ? m->payload : (void *)"",
                                                     m->payload ? m->len : 0);
                        json_object_set_new(o, "value_base64", json_string(b64));
                        if (schema)
                                json_object_set_new(o, "decode_error", json_string(derr));
                        free(b64);
                }
                json_dumpf(o, stdout, JSON_COMPACT);
                fputc('\n', stdout);
                json_decref(o);
                rd_kafka_message_destroy(m);
                seen++;
        }
        fflush(stdout);
        rc = 0;
out:
        if (rc)
                fprintf(stderr, "membersync tail: %s\n", err);
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (md)
                rd_kafka_metadata_destroy(md);
        if (kc)
                rd_kafka_conf_destroy(kc);
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        ms_avro_destroy(codec);
        return rc;
}

int ms_cli_topics(const ms_conf_t *conf, int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "create") != 0) {
                fprintf(stderr, "usage: membersync topics create [--replication N]\n");
                return 2;
        }
        int repl = argc > 3 && strcmp(argv[2], "--replication") == 0 ? atoi(argv[3]) : 1;
        struct {
                const char *name;
                int parts;
        } topics[] = {
            {conf->topic_sync_requests, 12},    {conf->topic_sync_jobs_cornerstone, 12},
            {conf->topic_sync_jobs_consio, 12}, {conf->topic_sync_events, 12},
            {conf->topic_member_changes, 24},   {conf->topic_dlq, 3}};
        char err[1024];
        int rc = 1;
        rd_kafka_conf_t *kc =
            ms_kafka_conf_new(conf, "membersync-topics", err, sizeof(err));
        rd_kafka_t *rk =
            kc ? rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err)) : NULL;
        if (!rk) {
                if (kc)
                        rd_kafka_conf_destroy(kc);
                fprintf(stderr, "membersync topics: %s\n", err);
                return 1;
        }
        rd_kafka_NewTopic_t *nt[6];
        for (int i = 0; i < 6; i++)
                nt[i] = rd_kafka_NewTopic_new(topics[i].name, topics[i].parts, repl, err,
                                              sizeof(err));
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, nt, 6, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        const rd_kafka_CreateTopics_result_t *res =
            ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        if (res) {
                size_t n;
                const rd_kafka_topic_result_t **tr =
                    rd_kafka_CreateTopics_result_topics(res, &n);
                rc = 0;
                for (size_t i = 0; i < n; i++) {
                        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
                        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                                fprintf(stderr, "membersync topics: %s: %s\n",
                                        rd_kafka_topic_result_name(tr[i]),
                                        rd_kafka_topic_result_error_string(tr[i]));
                                rc = 1;
                        } else {
                                printf("%s: %s\n", rd_kafka_topic_result_name(tr[i]),
                                       e ? "exists" : "created");
                        }
                }
        } else {
                fprintf(stderr, "membersync topics: no answer from the cluster\n");
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        for (int i = 0; i < 6; i++)
                rd_kafka_NewTopic_destroy(nt[i]);
        rd_kafka_destroy(rk);
        return rc;
}
