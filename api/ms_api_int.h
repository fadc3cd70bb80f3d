/* Internals of the api role, shared by the files of api/ only.
 *
 *   ms_api.c         daemon set-up, routing, CORS, responses, metrics
 *   ms_api_auth.c    bearer JWT verification (HS256 / RS256, libjwt)
 *   ms_api_pool.c    a small PostgreSQL connection pool
 *   ms_api_hub.c     LISTEN membersync_status and the SSE subscribers
 *   ms_api_query.c   the SQL behind the JSON documents
 *   ms_api_static.c  the widget's files */
#ifndef MS_API_INT_H
#define MS_API_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "ms_conf.h"

/* ---- auth ------------------------------------------------------------ */

typedef struct ms_api_auth ms_api_auth_t;

/* Who a verified token speaks for. */
typedef struct ms_api_principal {
        char sub[256];
        char org_id[256]; /* "" for a global admin without an org_id claim */
        int global;       /* role global_admin */
} ms_api_principal_t;

/* Reads the configured keys (at least one of HS256 secret file and RS256
 * public key file).  Returns 0 or MS_ERR_CONFIG. */
int ms_api_auth_new(const ms_conf_t *conf, ms_api_auth_t **out, char *errstr,
                    size_t errstr_size);
void ms_api_auth_destroy(ms_api_auth_t *auth);
/* Verifies a compact JWT.  Returns 0 and fills *who, or -1 with a short
 * client-safe reason in why (never the token).  Thread-safe. */
int ms_api_auth_verify(const ms_api_auth_t *auth, const char *token,
                       ms_api_principal_t *who, char *why, size_t why_size);

/* ---- PostgreSQL pool -------------------------------------------------- */

typedef struct ms_api_pool ms_api_pool_t;

ms_api_pool_t *ms_api_pool_new(const char *dsn, int size);
void ms_api_pool_destroy(ms_api_pool_t *pool);
/* A connection for this thread's exclusive use, or NULL (with errstr) when
 * PostgreSQL cannot be reached or every connection stays busy for
 * wait_ms.  Return it with ms_api_pool_put. */
PGconn *ms_api_pool_get(ms_api_pool_t *pool, int wait_ms, char *errstr,
                        size_t errstr_size);
void ms_api_pool_put(ms_api_pool_t *pool, PGconn *pg);
int ms_api_pool_in_use(ms_api_pool_t *pool);

/* ---- status change hub (LISTEN/NOTIFY -> SSE) -------------------------- */

typedef struct ms_api_hub ms_api_hub_t;
typedef struct ms_api_sub ms_api_sub_t;

/* Starts the listener thread (its own connection; reconnects by itself). */
int ms_api_hub_new(const char *dsn, ms_api_hub_t **out, char *errstr, size_t errstr_size);
/* Wakes every waiting subscriber with "stopping" and joins the listener. */
void ms_api_hub_stop(ms_api_hub_t *hub);
void ms_api_hub_destroy(ms_api_hub_t *hub);
/* key: "<org>/<INTEGRATION>", the projector's NOTIFY payload. */
ms_api_sub_t *ms_api_hub_subscribe(ms_api_hub_t *hub, const char *key);
void ms_api_hub_unsubscribe(ms_api_hub_t *hub, ms_api_sub_t *sub);
/* Waits for a change of the subscription's key: 1 changed (the flag is
 * consumed), 0 timeout, -1 the hub is stopping. */
int ms_api_hub_wait(ms_api_hub_t *hub, ms_api_sub_t *sub, int64_t timeout_ms);
/* Marks a subscription changed (a retry after a failed read). */
void ms_api_hub_poke(ms_api_hub_t *hub, ms_api_sub_t *sub);
int ms_api_hub_clients(ms_api_hub_t *hub);
/* 1 while the listener holds a LISTENing connection. */
int ms_api_hub_listening(ms_api_hub_t *hub);

/* ---- queries ----------------------------------------------------------- */

/* Status objects (DESIGN 8) of an org's configured integrations; integ (enum
 * spelling) NULL = all, as an array.  With integ set, *out is the single
 * object, or the call returns MS_ERR_NOTFOUND when it is not configured. */
int ms_api_query_status(PGconn *pg, const char *org, const char *integ, json_t **out,
                        char *errstr, size_t errstr_size);
/* Whether org+integ is configured and enabled, and the end of its manual
 * window (epoch ms, 0 = open) with the database's now. */
int ms_api_query_trigger_check(PGconn *pg, const char *org, const char *integ,
                               int *configured, int64_t *next_allowed_ms, int64_t *now_ms,
                               char *errstr, size_t errstr_size);
/* {items: [...]} of the latest `limit` jobs. */
int ms_api_query_jobs(PGconn *pg, const char *org, const char *integ, int limit,
                      json_t **out, char *errstr, size_t errstr_size);
/* A page of a job's errors/warnings after seq `cursor` (-1: from the first);
 * severity NULL = both.
 * MS_ERR_NOTFOUND when the job is not the org's and integration's. */
int ms_api_query_errors(PGconn *pg, const char *org, const char *integ,
                        const char *job_id, int64_t cursor, int limit,
                        const char *severity, json_t **out, char *errstr,
                        size_t errstr_size);

/* ---- static files ------------------------------------------------------ */

/* Resolves rel (the path after "/widget/", "" = index.html) inside dir.
 * Returns an open fd (caller closes) with its size and content type, or -1
 * when the name is not allowed or no such regular file exists. */
int ms_api_static_open(const char *dir, const char *rel, uint64_t *size,
                       const char **content_type);

#endif
