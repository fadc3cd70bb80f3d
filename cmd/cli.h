/* CLI verbs of the membersync binary (cmd/).  Each returns the process exit
 * code: 0 ok, 1 failure, 2 usage or configuration error, 3 rejected. */
#ifndef MS_CLI_H
#define MS_CLI_H

#include <jansson.h>
#include <stddef.h>

#include "ms_conf.h"

int ms_cli_trigger(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_status(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_tail(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_errors(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_integration(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_schedule(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_topics(const ms_conf_t *conf, int argc, char **argv);
int ms_cli_dev(ms_conf_t *conf, int argc, char **argv, const char *argv0);

/* Follows a published request until its job ends; prints the summary (JSON
 * with json_out).  Returns the exit code as for `trigger --wait`. */
int ms_cli_wait_job(const ms_conf_t *conf, const char *request_id, int json_out,
                    int timeout_s);

/* Publishes one SyncRequested (value borrowed) keyed by its org_id. */
int ms_cli_publish_request(const ms_conf_t *conf, json_t *req, char *errstr,
                           size_t errstr_size);

#endif
