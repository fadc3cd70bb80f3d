/* membersync: one binary, many roles (DESIGN 2).  `membersync --help`. */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ms_api.h"
#include "ms_conf.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_roles.h"
#include "ms_util.h"

int ms_cli_produce_raw(const ms_conf_t *conf, int argc, char **argv);

static void usage(FILE *f)
{
        fputs("usage: membersync [--config FILE] COMMAND [ARGS]\n"
              "\n"
              "roles (run until SIGTERM):\n"
              "  ratelimiter                 decide SyncRequested -> SyncJob / SyncRejected\n"
              "  connector --system S        sync jobs of member system S (cornerstone|consio)\n"
              "  projector                   SyncEvents -> sync_status rows\n"
              "  relay                       publish the outbox to Kafka\n"
              "  api                         status HTTP API, SSE stream and the widget\n"
              "  dev                         every role in one process on a mock Kafka cluster\n"
              "\n"
              "operations:\n"
              "  migrate                     apply database migrations\n"
              "  topics create               create the Kafka topics\n"
              "  integration set ...         configure an org's member system\n"
              "  schedule                    trigger SCHEDULED syncs for every enabled integration\n"
              "  trigger --org ORG --integration S [--wait] [--json] ...\n"
              "  status [--org ORG] [--json]\n"
              "  errors JOB_ID [--json]\n"
              "  tail TOPIC [--count N] [--timeout-ms MS]\n"
              "\n"
              "configuration: --config FILE or $MEMBERSYNC_CONFIG (libconfig), every key\n"
              "overridable as MEMBERSYNC_<SECTION>_<KEY>.\n",
              f);
}

static int run_role(const char *name, int rc, const char *err)
{
        if (rc) {
                ms_log_error("%s: %s", name, err);
                return 1;
        }
        ms_log_info("%s: stopped", name);
        return 0;
}

int main(int argc, char **argv)
{
        const char *config = getenv("MEMBERSYNC_CONFIG");
        int i = 1;
        while (i < argc && argv[i][0] == '-') {
                if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
                        config = argv[i + 1];
                        i += 2;
                } else if (strncmp(argv[i], "--config=", 9) == 0) {
                        config = argv[i] + 9;
                        i++;
                } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(stdout);
                        return 0;
                } else {
                        fprintf(stderr, "membersync: unknown option %s\n", argv[i]);
                        usage(stderr);
                        return 2;
                }
        }
        if (i >= argc) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[i];
        int cargc = argc - i;
        char **cargv = argv + i;
        if (config && !*config)
                config = NULL;

        ms_conf_t conf;
        char err[1024];
        if (ms_conf_load(config, &conf, err, sizeof(err))) {
                fprintf(stderr, "membersync: %s\n", err);
                return 2;
        }
        ms_log_level_t lvl;
        if (ms_log_level_parse(conf.log_level, &lvl)) {
                fprintf(stderr, "membersync: config: log.level: \"%s\" is not one of "
                                "debug|info|warn|error (%s)\n",
                        conf.log_level, config ? config : "environment");
                ms_conf_clear(&conf);
                return 2;
        }
        ms_log_set_level(lvl);
        ms_signals_install(conf.health_shutdown_grace_s);
        /* JSON parsing and building make millions of small allocations
         * mixed with growing buffers; every large request then makes glibc
         * consolidate its fast bins, which took 13% of the connector's CPU
         * in a profile.  Without fast bins (the per-thread cache still serves
         * small sizes) that cost goes away. */
        mallopt(M_MXFAST, 0);

        int rc = 2;
        if (strcmp(cmd, "ratelimiter") == 0 || strcmp(cmd, "projector") == 0 ||
            strcmp(cmd, "relay") == 0) {
                ms_log_set_role(cmd);
                int r = strcmp(cmd, "ratelimiter") == 0 ? ms_ratelimiter_run(&conf, err, sizeof(err))
                        : strcmp(cmd, "projector") == 0 ? ms_projector_run(&conf, err, sizeof(err))
                                                        : ms_relay_run(&conf, err, sizeof(err));
                rc = run_role(cmd, r, err);
        } else if (strcmp(cmd, "connector") == 0) {
                const char *sys = NULL;
                for (int a = 1; a < cargc; a++) {
                        if (strcmp(cargv[a], "--system") == 0 && a + 1 < cargc)
                                sys = cargv[++a];
                        else if (strncmp(cargv[a], "--system=", 9) == 0)
                                sys = cargv[a] + 9;
                }
                if (!sys) {
                        fprintf(stderr, "membersync connector: --system cornerstone|consio is "
                                        "required\n");
                } else {
                        char role[64];
                        snprintf(role, sizeof(role), "connector-%s", sys);
                        ms_log_set_role(role);
                        int r = ms_connector_run(&conf, sys, err, sizeof(err));
                        rc = r == MS_ERR_CONFIG ? (fprintf(stderr, "membersync: %s\n", err), 2)
                                                : run_role(role, r, err);
                }
        } else if (strcmp(cmd, "api") == 0) {
                ms_log_set_role("api");
                int r = ms_api_run(&conf, err, sizeof(err));
                rc = r == MS_ERR_CONFIG ? (fprintf(stderr, "membersync: %s\n", err), 2)
                                        : run_role("api", r, err);
        } else if (strcmp(cmd, "migrate") == 0) {
                ms_log_set_role("migrate");
                PGconn *pg = ms_pg_connect(conf.pg_dsn, "migrate", err, sizeof(err));
                int applied = 0;
                if (!pg) {
                        fprintf(stderr, "membersync migrate: %s\n", err);
                        rc = 1;
                } else if (ms_pg_migrate(pg, &applied, err, sizeof(err))) {
                        fprintf(stderr, "membersync migrate: %s\n", err);
                        rc = 1;
                } else {
                        ms_log_info("migrate: %d migration(s) applied", applied);
                        rc = 0;
                }
                if (pg)
                        PQfinish(pg);
        } else if (strcmp(cmd, "trigger") == 0) {
                rc = ms_cli_trigger(&conf, cargc, cargv);
        } else if (strcmp(cmd, "status") == 0) {
                rc = ms_cli_status(&conf, cargc, cargv);
        } else if (strcmp(cmd, "tail") == 0) {
                rc = ms_cli_tail(&conf, cargc, cargv);
        } else if (strcmp(cmd, "errors") == 0) {
                rc = ms_cli_errors(&conf, cargc, cargv);
        } else if (strcmp(cmd, "integration") == 0) {
                rc = ms_cli_integration(&conf, cargc, cargv);
        } else if (strcmp(cmd, "schedule") == 0) {
                ms_log_set_role("schedule");
                rc = ms_cli_schedule(&conf, cargc, cargv);
        } else if (strcmp(cmd, "topics") == 0) {
                rc = ms_cli_topics(&conf, cargc, cargv);
        } else if (strcmp(cmd, "produce-raw") == 0) { /* hidden: cmd/produce_raw.c */
                rc = ms_cli_produce_raw(&conf, cargc, cargv);
        } else if (strcmp(cmd, "dev") == 0) {
                ms_log_set_role("dev");
                rc = ms_cli_dev(&conf, cargc, cargv, argv[0]);
        } else {
                fprintf(stderr, "membersync: unknown command \"%s\"\n", cmd);
                usage(stderr);
        }
        ms_conf_clear(&conf);
        return rc;
}
