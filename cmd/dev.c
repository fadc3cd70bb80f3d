/* `membersync dev`: the whole pipeline in one process for demos.
 *
 * Kafka is librdkafka's embedded mock cluster (no broker needed); PostgreSQL
 * is real (the quick-start script starts a throw-away one).  Two member API
 * simulators with generated members are started as child processes, an org
 * is configured for both systems, every role runs as a thread, a manual sync
 * of each system is triggered and the summaries are printed.  With --serve
 * the roles keep running (for the widget) until Ctrl-C. */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jwt.h>

#include "ms_api.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_roles.h"
#include "ms_util.h"

typedef struct role_thread {
        const char *name;
        const char *system; /* connectors only */
        const ms_conf_t *conf;
        pthread_t tid;
        int started;
        int rc;
        char err[512];
} role_thread_t;

static void *role_main(void *arg)
{
        role_thread_t *t = arg;
        ms_log_set_role(t->system ? (strcmp(t->system, "cornerstone") == 0
                                         ? "connector-cornerstone"
                                         : "connector-consio")
                                  : t->name);
        if (t->system)
                t->rc = ms_connector_run(t->conf, t->system, t->err, sizeof(t->err));
        else if (strcmp(t->name, "ratelimiter") == 0)
                t->rc = ms_ratelimiter_run(t->conf, t->err, sizeof(t->err));
        else if (strcmp(t->name, "projector") == 0)
                t->rc = ms_projector_run(t->conf, t->err, sizeof(t->err));
        else if (strcmp(t->name, "api") == 0)
                t->rc = ms_api_run(t->conf, t->err, sizeof(t->err));
        else
                t->rc = ms_relay_run(t->conf, t->err, sizeof(t->err));
        if (t->rc)
                ms_log_error("%s: %s", t->name, t->err);
        return NULL;
}

typedef struct sim_proc {
        pid_t pid;
        char url[64];
} sim_proc_t;

/* Starts membersync-sim (next to this binary) and reads its port. */
static int sim_start(const char *argv0, const char *system, int members, int seed,
                     sim_proc_t *out, char *errstr, size_t errstr_size)
{
        char self[PATH_MAX], simbin[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
        } else {
                snprintf(self, sizeof(self), "%s", argv0);
        }
        snprintf(simbin, sizeof(simbin), "%s/membersync-sim", dirname(self));
        int fds[2];
        if (pipe(fds)) {
                snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
                return MS_ERR_GENERIC;
        }
        char count[16], sd[16];
        snprintf(count, sizeof(count), "%d", members);
        snprintf(sd, sizeof(sd), "%d", seed);
        pid_t pid = fork();
        if (pid == 0) {
                dup2(fds[1], 1);
                close(fds[0]);
                close(fds[1]);
                execl(simbin, simbin, "--system", system, "--generate", count, "--seed",
                      sd, "--port", "0", "--latency-ms", "20", "--log-level", "warn",
                      (char *)NULL);
                _exit(127);
        }
        close(fds[1]);
        if (pid < 0) {
                close(fds[0]);
                snprintf(errstr, errstr_size, "fork: %s", strerror(errno));
                return MS_ERR_GENERIC;
        }
        FILE *f = fdopen(fds[0], "r");
        char line[256] = "";
        int port = 0;
        while (f && fgets(line, sizeof(line), f)) {
                char *p = strstr(line, "listening on ");
                if (p && (p = strrchr(p, ':'))) {
                        port = atoi(p + 1);
                        break;
                }
        }
        if (f)
                fclose(f);
        if (port <= 0) {
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
                snprintf(errstr, errstr_size, "cannot start %.200s", simbin);
                return MS_ERR_GENERIC;
        }
        out->pid = pid;
        snprintf(out->url, sizeof(out->url), "http://127.0.0.1:%d", port);
        return 0;
}

static void sim_stop(sim_proc_t *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
}

/* The demo's API: a random HS256 secret in a private temporary file and an
 * ORG_ADMIN token for the demo org, so a person can open the widget. */
static int dev_api_setup(ms_conf_t *conf, const char *org, const char *listen,
                         char secret_path[64], char *token, size_t token_size,
                         char *errstr, size_t errstr_size)
{
        unsigned char key[32];
        char hex[65];
        FILE *ur = fopen("/dev/urandom", "rb");
        if (!ur || fread(key, 1, sizeof(key), ur) != sizeof(key)) {
                if (ur)
                        fclose(ur);
                snprintf(errstr, errstr_size, "cannot read /dev/urandom");
                return MS_ERR_GENERIC;
        }
        fclose(ur);
        for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", key[i]);
        snprintf(secret_path, 64, "/tmp/membersync-dev-jwt.XXXXXX");
        int fd = mkstemp(secret_path);
        if (fd < 0 || write(fd, hex, 64) != 64) {
                if (fd >= 0)
                        close(fd);
                snprintf(errstr, errstr_size, "cannot write the demo JWT secret");
                return MS_ERR_GENERIC;
        }
        close(fd);
        free(conf->api_jwt_hs256_secret_file);
        conf->api_jwt_hs256_secret_file = strdup(secret_path);
        if (listen) {
                free(conf->api_listen);
                conf->api_listen = strdup(listen);
        }
        jwt_t *jwt = NULL;
        int rc = MS_ERR_GENERIC;
        if (jwt_new(&jwt) == 0 &&
            jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)hex, 64) == 0 &&
            jwt_add_grant(jwt, "sub", "demo-admin") == 0 &&
            jwt_add_grant(jwt, "org_id", org) == 0 &&
            jwt_add_grant(jwt, "role", "org_admin") == 0 &&
            jwt_add_grant_int(jwt, "exp", (long)(ms_now_ms() / 1000 + 12 * 3600)) == 0) {
                char *enc = jwt_encode_str(jwt);
                if (enc && strlen(enc) < token_size) {
                        snprintf(token, token_size, "%s", enc);
                        rc = 0;
                }
                free(enc);
        }
        jwt_free(jwt);
        if (rc)
                snprintf(errstr, errstr_size, "cannot mint the demo token");
        return rc;
}

int ms_cli_dev(ms_conf_t *conf, int argc, char **argv, const char *argv0)
{
        int members = 20000, serve = 0, rc = 1;
        const char *listen = NULL;
        const char *org = "demo-org";
        for (int a = 1; a < argc; a++) {
                if (strcmp(argv[a], "--members") == 0 && a + 1 < argc)
                        members = atoi(argv[++a]);
                else if (strcmp(argv[a], "--org") == 0 && a + 1 < argc)
                        org = argv[++a];
                else if (strcmp(argv[a], "--serve") == 0)
                        serve = 1;
                else if (strcmp(argv[a], "--listen") == 0 && a + 1 < argc)
                        listen = argv[++a];
                else {
                        fprintf(stderr, "usage: membersync dev [--members N] [--org ORG] "
                                        "[--serve] [--listen HOST:PORT]\n");
                        return 2;
                }
        }
        if (listen && !serve)
                fprintf(stderr,
                        "membersync dev: note: --listen matters with --serve (the API "
                        "stops with the demo otherwise)\n");
        char err[1024];
        char secret_path[64] = "";
        rd_kafka_mock_cluster_t *mc = NULL;
        sim_proc_t sims[2] = {{0}, {0}};
        role_thread_t roles[] = {{.name = "ratelimiter"},
                                 {.name = "projector"},
                                 {.name = "relay"},
                                 {.name = "connector", .system = "cornerstone"},
                                 {.name = "connector", .system = "consio"},
                                 {.name = "api"}};
        const int nroles = (int)(sizeof(roles) / sizeof(roles[0]));

        /* The mock cluster lives inside a client handle of ours; every role
         * reaches it through the bootstrap address it reports. */
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        /* This handle only hosts the mock cluster: it has no bootstrap
         * servers of its own, which librdkafka would warn about. */
        rd_kafka_conf_set(kc, "log_level", "4", err, sizeof(err));
        rd_kafka_t *mk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!mk) {
                fprintf(stderr, "membersync dev: %s\n", err);
                return 1;
        }
        mc = rd_kafka_mock_cluster_new(mk, 1);
        if (!mc) {
                fprintf(stderr, "membersync dev: cannot create the mock cluster\n");
                goto out;
        }
        const char *topics[] = {
            conf->topic_sync_requests,    conf->topic_sync_jobs_cornerstone,
            conf->topic_sync_jobs_consio, conf->topic_sync_events,
            conf->topic_member_changes,   conf->topic_dlq};
        const int parts[] = {12, 12, 12, 12, 24, 3};
        for (int i = 0; i < 6; i++)
                rd_kafka_mock_topic_create(mc, topics[i], parts[i], 1);
        free(conf->kafka_bootstrap_servers);
        conf->kafka_bootstrap_servers = strdup(rd_kafka_mock_cluster_bootstraps(mc));
        /* The mock cluster's group coordinator is quick to rebalance but a
         * short session keeps the demo snappy when roles stop. */
        conf->kafka_session_timeout_ms = 6000;
        ms_log_info("dev: mock Kafka cluster at %s", conf->kafka_bootstrap_servers);

        PGconn *pg = ms_pg_connect(conf->pg_dsn, "dev", err, sizeof(err));
        if (!pg) {
                fprintf(stderr,
                        "membersync dev: %s\n(the demo needs a PostgreSQL: "
                        "scripts/demo.sh starts a throw-away one)\n",
                        err);
                goto out;
        }
        int applied = 0;
        if (ms_pg_migrate(pg, &applied, err, sizeof(err))) {
                fprintf(stderr, "membersync dev: %s\n", err);
                PQfinish(pg);
                goto out;
        }
        const char *systems[] = {"cornerstone", "consio"};
        setenv("MEMBERSYNC_DEV_CORNERSTONE_KEY", "test-key", 1);
        setenv("MEMBERSYNC_DEV_CONSIO_CREDENTIALS", "test-client:test-secret", 1);
        const char *refs[] = {"env:MEMBERSYNC_DEV_CORNERSTONE_KEY",
                              "env:MEMBERSYNC_DEV_CONSIO_CREDENTIALS"};
        for (int i = 0; i < 2; i++) {
                if (sim_start(argv0, systems[i], members, 7 + i, &sims[i], err,
                              sizeof(err))) {
                        fprintf(stderr, "membersync dev: %s\n", err);
                        PQfinish(pg);
                        goto out;
                }
                const char *p[] = {org, i == 0 ? "CORNERSTONE" : "CONSIO", sims[i].url,
                                   refs[i]};
                if (ms_pg_exec(
                        pg,
                        "INSERT INTO membersync.integrations(org_id, integration, "
                        "base_url, credentials_ref, page_size, max_rps) VALUES ($1, $2, "
                        "$3, $4, 500, 0) ON CONFLICT (org_id, integration) DO UPDATE SET "
                        "base_url = EXCLUDED.base_url, credentials_ref = "
                        "EXCLUDED.credentials_ref, enabled = true",
                        4, p, NULL, err, sizeof(err))) {
                        fprintf(stderr, "membersync dev: %s\n", err);
                        PQfinish(pg);
                        goto out;
                }
                ms_log_info("dev: %s simulator with %d members at %s", systems[i],
                            members, sims[i].url);
        }
        /* Consumer offsets of an earlier demo refer to an earlier mock
         * cluster: start this one's groups from scratch. */
        ms_pg_exec(pg, "DELETE FROM membersync.consumer_offsets", 0, NULL, NULL, err,
                   sizeof(err));
        ms_pg_exec(pg, "DELETE FROM membersync.outbox", 0, NULL, NULL, err, sizeof(err));
        ms_pg_exec(
            pg,
            "UPDATE membersync.sync_jobs SET state = 'FAILED', failure_reason = "
            "'abandoned (dev restart)', finished_at = now() WHERE state IN ('QUEUED', "
            "'RUNNING')",
            0, NULL, NULL, err, sizeof(err));
        ms_pg_exec(pg, "DELETE FROM membersync.manual_windows WHERE org_id = $1", 1,
                   (const char *[]){org}, NULL, err, sizeof(err));
        PQfinish(pg);

        char token[2048] = "";
        if (dev_api_setup(conf, org, listen, secret_path, token, sizeof(token), err,
                          sizeof(err))) {
                fprintf(stderr, "membersync dev: %s\n", err);
                goto out;
        }
        for (int i = 0; i < nroles; i++) {
                roles[i].conf = conf;
                if (pthread_create(&roles[i].tid, NULL, role_main, &roles[i]) == 0)
                        roles[i].started = 1;
        }
        /* Give the consumer groups a moment to get their partitions so the
         * first trigger does not wait for a rebalance. */
        ms_sleep_ms(3000);
        rc = 0;
        for (int i = 0; i < 2 && !ms_stop; i++) {
                char rid[37];
                ms_uuid_new(rid);
                /* Without --serve the demo shows Sync Now itself (MANUAL, as
                 * the org's admin).  With --serve a person presses Sync Now in
                 * the widget next, so the first syncs run as the nightly
                 * schedule would and leave the manual window open. */
                json_t *req = json_pack(
                    "{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s?}, s:I}", "request_id", rid,
                    "org_id", org, "integration", i == 0 ? "CORNERSTONE" : "CONSIO",
                    "trigger", serve ? "SCHEDULED" : "MANUAL", "requested_by", "user_id",
                    serve ? "scheduler" : "demo-admin", "role",
                    serve ? "SYSTEM" : "ORG_ADMIN", "org_id", serve ? NULL : org,
                    "requested_at", (json_int_t)ms_now_ms());
                int prc = ms_cli_publish_request(conf, req, err, sizeof(err));
                json_decref(req);
                if (prc) {
                        fprintf(stderr, "membersync dev: %s\n", err);
                        rc = 1;
                        continue;
                }
                fprintf(stderr, "dev: %s sync of %s (%d members)...\n",
                        serve ? "scheduled" : "Sync Now (manual)", systems[i], members);
                int wrc = ms_cli_wait_job(conf, rid, 0, 600);
                if (wrc != 0)
                        rc = 1;
        }
        /* The summaries come from the job rows; give the relay and the
         * projector a moment to bring the status rows level before stopping,
         * so `membersync status` afterwards shows the finished syncs. */
        PGconn *wpg = ms_pg_connect(conf->pg_dsn, "dev", err, sizeof(err));
        for (int i = 0; wpg && i < 100 && !ms_stop; i++) {
                PGresult *r = NULL;
                const char *p[] = {org};
                if (ms_pg_exec(
                        wpg,
                        "SELECT (SELECT count(*) FROM membersync.outbox) + (SELECT "
                        "count(*) FROM membersync.sync_status WHERE org_id = $1 AND "
                        "state IN ('QUEUED', 'RUNNING'))",
                        1, p, &r, err, sizeof(err)) == 0 &&
                    strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
                        PQclear(r);
                        break;
                }
                PQclear(r);
                ms_sleep_ms(100);
        }
        if (wpg)
                PQfinish(wpg);
        if (serve && !ms_stop) {
                fprintf(stderr,
                        "dev: the widget: http://%s/widget/?org=%s&token=%s\n"
                        "dev: roles keep running; Ctrl-C to stop\n",
                        conf->api_listen, org, token);
                while (!ms_stop)
                        ms_sleep_ms(200);
        }
out:
        ms_stop = 1;
        for (int i = 0; i < nroles; i++)
                if (roles[i].started)
                        pthread_join(roles[i].tid, NULL);
        for (int i = 0; i < 2; i++)
                sim_stop(&sims[i]);
        if (secret_path[0])
                unlink(secret_path);
        if (mc)
                rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mk);
        return rc;
}
