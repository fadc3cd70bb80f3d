/* Entry points of the roles.  Each runs until ms_stop is set (SIGTERM) and
 * returns 0 on a clean stop or a negative MS_ERR_* with errstr.  They only
 * read conf, so `membersync dev` runs them as threads of one process. */
#ifndef MS_ROLES_H
#define MS_ROLES_H

#include <stddef.h>

#include "ms_conf.h"

int ms_ratelimiter_run(const ms_conf_t *conf, char *errstr, size_t errstr_size);
int ms_projector_run(const ms_conf_t *conf, char *errstr, size_t errstr_size);
int ms_relay_run(const ms_conf_t *conf, char *errstr, size_t errstr_size);
/* system_slug: "cornerstone" or "consio". */
int ms_connector_run(const ms_conf_t *conf, const char *system_slug, char *errstr,
                     size_t errstr_size);

#endif
