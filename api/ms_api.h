/* ms_api: the status HTTP API role (`membersync api`, DESIGN 8).
 *
 * Serves the sync status of an organization's integrations to the member
 * sync widget: JSON reads, the manual trigger (published as SyncRequested),
 * a Server-Sent Events stream per integration driven by PostgreSQL
 * LISTEN/NOTIFY from the projector, error details and job history, the
 * widget's static files, and /livez /readyz /metrics. */
#ifndef MS_API_H
#define MS_API_H

#include <stddef.h>

#include "ms_conf.h"

/* Runs until ms_stop is set (SIGTERM/SIGINT).  Returns 0 on a clean stop,
 * MS_ERR_CONFIG for unusable settings (no JWT key, bad listen address, a
 * missing widget folder) or another negative MS_ERR_* with errstr. */
int ms_api_run(const ms_conf_t *conf, char *errstr, size_t errstr_size);

#endif
