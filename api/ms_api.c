/* The api role: libmicrohttpd with one thread per connection, so that a
 * Server-Sent Events stream can simply block in its content reader until the
 * hub (ms_api_hub.c) says its status row changed.  Reads go to PostgreSQL
 * through a small pool; the manual trigger is published to Kafka with one
 * long-lived idempotent producer (creating a producer per request would cost
 * a broker round trip and a thread each time).
 *
 * Routes (DESIGN 8):
 *   GET  /api/v1/orgs/{org}/integrations
 *   GET  /api/v1/orgs/{org}/integrations/{integration}/sync
 *   POST /api/v1/orgs/{org}/integrations/{integration}/sync
 *   GET  /api/v1/orgs/{org}/integrations/{integration}/sync/stream
 *   GET  /api/v1/orgs/{org}/integrations/{integration}/jobs?limit=
 *   GET  /api/v1/orgs/{org}/integrations/{integration}/jobs/{job}/errors?cursor=&limit=
 *   GET  /widget/...   GET /livez /readyz /metrics
 *
 * Tokens never reach the log: the access log line has the method, the path
 * (without the query string, which may carry ?access_token=) and the status. */
#include "ms_api.h"

#include <arpa/inet.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ms_api_int.h"
#include "ms_canon.h"
#include "ms_health.h"
#include "ms_kafka.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_trigger.h"
#include "ms_util.h"

#define POOL_SIZE        16
#define POOL_WAIT_MS     5000
#define KEEPALIVE_MS     15000
#define SSE_RETRY_MS     2000
#define DELIVERY_WAIT_MS 10000
#define MAX_BODY         65536
#define MAX_SEGMENTS     12
#define DEFAULT_JOBS     20
#define MAX_JOBS         100
#define DEFAULT_ERRORS   50
#define MAX_ERRORS       500

typedef struct ms_api {
        const ms_conf_t *conf;
        ms_api_auth_t *auth;
        ms_api_pool_t *pool;
        ms_api_hub_t *hub;
        ms_avro_t *codec;
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt; /* the sync-requests topic, with our delivery timeout */
        pthread_t poll_thread;
        int poll_started;
        atomic_int stopping;
        char widget_dir[PATH_MAX]; /* "" = no widget files */
        char **origins;            /* CORS allow-list */
        int norigins;
        int any_origin;      /* "*" in the list */
        ms_health_t *health; /* /livez /readyz /metrics answers */
} ms_api_t;

/* Per-request state (MHD's con_cls). */
typedef struct req {
        int64_t t0;
        size_t body;
        int status;
        int quiet; /* probes and 2xx reads log at debug */
        int cors;  /* the Origin is allowed: echo it */
        char origin[256];
        char method[12];
        char path[512];
} req_t;

/* ------------------------------------------------------------ responses */

static void add_common_headers(req_t *rq, struct MHD_Response *resp)
{
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        if (rq->cors) {
                MHD_add_response_header(resp, "Access-Control-Allow-Origin", rq->origin);
                MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                        "Retry-After, Location");
        }
        /* Responses differ by Origin, so caches must key on it. */
        MHD_add_response_header(resp, "Vary", "Origin");
}

static void count(const char *name, const char *help, const char *key, const char *value)
{
        char labels[96];
        ms_metrics_counter_add(
            name, help, ms_metrics_labels(labels, sizeof(labels), key, value, NULL), 1);
}

static enum MHD_Result queue(struct MHD_Connection *c, req_t *rq, int status,
                             struct MHD_Response *resp)
{
        if (!resp)
                return MHD_NO;
        add_common_headers(rq, resp);
        rq->status = status;
        char code[8];
        snprintf(code, sizeof(code), "%d", status);
        count("membersync_api_http_responses_total",
              "HTTP responses of the api by status code.", "code", code);
        enum MHD_Result r = MHD_queue_response(c, (unsigned)status, resp);
        MHD_destroy_response(resp);
        return r;
}

/* A JSON response (doc is consumed), never cached; NULL when out of memory. */
static struct MHD_Response *json_response(json_t *doc)
{
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!text)
                return NULL;
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return NULL;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        return resp;
}

static enum MHD_Result send_json(struct MHD_Connection *c, req_t *rq, int status,
                                 json_t *doc)
{
        return queue(c, rq, status, json_response(doc));
}

static enum MHD_Result send_error(struct MHD_Connection *c, req_t *rq, int status,
                                  const char *code, const char *message)
{
        return send_json(c, rq, status,
                         json_pack("{s:s, s:s}", "error", code, "message", message));
}

static enum MHD_Result send_unauthorized(struct MHD_Connection *c, req_t *rq,
                                         const char *why)
{
        struct MHD_Response *resp = json_response(
            json_pack("{s:s, s:s}", "error", "unauthorized", "message", why));
        if (resp)
                MHD_add_response_header(
                    resp, "WWW-Authenticate",
                    "Bearer realm=\"membersync\", error=\"invalid_token\"");
        return queue(c, rq, 401, resp);
}

static enum MHD_Result send_redirect(struct MHD_Connection *c, req_t *rq, const char *to)
{
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, "Location", to);
        return queue(c, rq, 301, resp);
}

/* ------------------------------------------------------------------ CORS */

static int origin_allowed(const ms_api_t *api, const char *origin)
{
        if (api->any_origin)
                return 1;
        for (int i = 0; i < api->norigins; i++)
                if (strcmp(api->origins[i], origin) == 0)
                        return 1;
        return 0;
}

static int parse_origins(ms_api_t *api, const char *list, char *errstr,
                         size_t errstr_size)
{
        char *copy = strdup(list), *save = NULL;
        if (!copy)
                return MS_ERR_GENERIC;
        for (char *tok = strtok_r(copy, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                while (*tok == ' ' || *tok == '\t')
                        tok++;
                size_t n = strlen(tok);
                while (n > 0 &&
                       (tok[n - 1] == ' ' || tok[n - 1] == '\t' || tok[n - 1] == '/'))
                        tok[--n] = '\0';
                if (!n)
                        continue;
                if (strcmp(tok, "*") == 0) {
                        api->any_origin = 1;
                        continue;
                }
                if (strncmp(tok, "http://", 7) && strncmp(tok, "https://", 8)) {
                        snprintf(
                            errstr, errstr_size,
                            "config: api.cors_allow_origins: \"%s\" is not an origin "
                            "(scheme://host[:port]) or *",
                            tok);
                        free(copy);
                        return MS_ERR_CONFIG;
                }
                char **grown =
                    realloc(api->origins, sizeof(char *) * (size_t)(api->norigins + 1));
                if (!grown) {
                        free(copy);
                        return MS_ERR_GENERIC;
                }
                api->origins = grown;
                if (!(api->origins[api->norigins] = strdup(tok))) {
                        free(copy);
                        return MS_ERR_GENERIC;
                }
                api->norigins++;
        }
        free(copy);
        return 0;
}

static enum MHD_Result preflight(struct MHD_Connection *c, req_t *rq)
{
        const char *want = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                       "Access-Control-Request-Method");
        if (!rq->origin[0] || !want)
                return send_error(c, rq, 400, "bad_request", "not a CORS preflight");
        if (!rq->cors)
                return send_error(c, rq, 403, "origin_not_allowed",
                                  "this origin is not in api.cors_allow_origins");
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Last-Event-ID");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        return queue(c, rq, 204, resp);
}

/* --------------------------------------------------------------- metrics */

/* Liveness: the process answers HTTP.  Readiness: PostgreSQL is reachable,
 * as the status listener's connection shows (checks must not do I/O). */
static int check_live(void *opaque, char *why, size_t why_size)
{
        (void)opaque;
        (void)why;
        (void)why_size;
        return 1;
}

static int check_ready(void *opaque, char *why, size_t why_size)
{
        ms_api_t *api = opaque;
        if (ms_api_hub_listening(api->hub))
                return 1;
        snprintf(why, why_size, "postgres not reachable (status listener down)");
        return 0;
}

static enum MHD_Result health(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                              const char *url)
{
        /* Gauges are sampled when scraped rather than tracked on every change. */
        ms_metrics_gauge_set("membersync_api_sse_clients", "Open status streams (SSE).",
                             NULL, ms_api_hub_clients(api->hub));
        ms_metrics_gauge_set("membersync_api_status_listener_up",
                             "1 while LISTEN membersync_status is active.", NULL,
                             ms_api_hub_listening(api->hub));
        ms_metrics_gauge_set("membersync_api_pg_connections_in_use",
                             "Pooled PostgreSQL connections lent out.", NULL,
                             ms_api_pool_in_use(api->pool));
        unsigned status = 0;
        const char *type = NULL;
        char *body = NULL;
        if (ms_health_answer(api->health, url, &status, &type, &body) != 1)
                return MHD_NO;
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", type);
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        return queue(c, rq, (int)status, resp);
}

/* ---------------------------------------------------------- static files */

static enum MHD_Result widget_file(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                                   const char *rel)
{
        uint64_t size = 0;
        const char *type = NULL;
        int fd = api->widget_dir[0]
                     ? ms_api_static_open(api->widget_dir, rel, &size, &type)
                     : -1;
        if (fd < 0)
                return send_error(c, rq, 404, "not_found", "no such file");
        struct MHD_Response *resp = MHD_create_response_from_fd((size_t)size, fd);
        if (!resp) {
                close(fd);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", type);
        /* Revalidate every time: the widget is small and must not run stale
         * code against a newer api. */
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        if (strncmp(type, "text/html", 9) == 0) {
                /* The demo page loads nothing but its own scripts and styles
                 * and talks only to this api. */
                MHD_add_response_header(
                    resp, "Content-Security-Policy",
                    "default-src 'self'; script-src 'self'; style-src "
                    "'self'; img-src 'self' data:; connect-src 'self'; "
                    "object-src 'none'; base-uri 'none'; frame-ancestors "
                    "'none'; form-action 'self'");
                MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
                MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        }
        return queue(c, rq, 200, resp);
}

/* ------------------------------------------------------------- publishing */

/* Shared by the request thread waiting for the broker's acknowledgement and
 * the delivery-report callback; whoever lets go last frees it, so a request
 * that gave up waiting never leaves the callback a dangling pointer. */
typedef struct waiter {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int done;
        int refs;
        rd_kafka_resp_err_t err;
} waiter_t;

static waiter_t *waiter_new(void)
{
        waiter_t *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        w->refs = 2;
        return w;
}

static void waiter_release(waiter_t *w)
{
        pthread_mutex_lock(&w->mu);
        int left = --w->refs;
        pthread_mutex_unlock(&w->mu);
        if (left == 0) {
                pthread_cond_destroy(&w->cv);
                pthread_mutex_destroy(&w->mu);
                free(w);
        }
}

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        waiter_t *w = m->_private;
        if (!w)
                return;
        pthread_mutex_lock(&w->mu);
        w->done = 1;
        w->err = m->err;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        waiter_release(w);
}

static void *poll_main(void *arg)
{
        ms_api_t *api = arg;
        /* Fetching the topic's metadata once up front means the first trigger
         * does not wait for it. */
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(api->rk, 0, api->rkt, &md, 5000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_metadata_destroy(md);
        while (!atomic_load(&api->stopping))
                rd_kafka_poll(api->rk, 200);
        return NULL;
}

/* Publishes the SyncRequested and waits until the broker has it, so a 202
 * means the trigger is durable. */
static int publish(ms_api_t *api, json_t *req, char *errstr, size_t errstr_size)
{
        waiter_t *w = waiter_new();
        if (!w) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        int rc = ms_trigger_produce(api->rk, api->codec, api->conf, "api", req, w, errstr,
                                    errstr_size);
        if (rc) {
                /* No delivery report will come: drop the callback's share too. */
                waiter_release(w);
                waiter_release(w);
                return rc;
        }
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += DELIVERY_WAIT_MS / 1000;
        pthread_mutex_lock(&w->mu);
        while (!w->done)
                if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) != 0)
                        break;
        if (!w->done) {
                snprintf(errstr, errstr_size, "kafka: no acknowledgement within %d ms",
                         DELIVERY_WAIT_MS);
                rc = MS_ERR_KAFKA;
        } else if (w->err) {
                snprintf(errstr, errstr_size, "kafka: %s", rd_kafka_err2str(w->err));
                rc = MS_ERR_KAFKA;
        }
        pthread_mutex_unlock(&w->mu);
        waiter_release(w);
        return rc;
}

/* ---------------------------------------------------------------- routing */

static int org_valid(const char *org)
{
        size_t n = strlen(org);
        if (n == 0 || n > 128)
                return 0;
        for (const char *p = org; *p; p++) {
                char ch = *p;
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
                      ch == ':' || ch == '@'))
                        return 0;
        }
        return 1;
}

/* Parses a decimal query parameter in [lo, hi]; dflt when absent. */
static int int_param(struct MHD_Connection *c, const char *name, long long dflt,
                     long long lo, long long hi, long long *out)
{
        const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
        if (!v || !*v) {
                *out = dflt;
                return 0;
        }
        if (strlen(v) > 18)
                return -1;
        long long x = 0;
        for (const char *p = v; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -1;
                x = x * 10 + (*p - '0');
        }
        if (x < lo || x > hi)
                return -1;
        *out = x;
        return 0;
}

static const char *bearer_token(struct MHD_Connection *c, int allow_query)
{
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (h) {
                if (strncasecmp(h, "Bearer ", 7) != 0)
                        return NULL;
                h += 7;
                while (*h == ' ')
                        h++;
                return h;
        }
        /* EventSource cannot send headers, so the stream alone also takes
         * the token as ?access_token= (RFC 6750 2.3). */
        if (allow_query)
                return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
                                                   "access_token");
        return NULL;
}

static PGconn *pool_get(ms_api_t *api, char *err, size_t size)
{
        PGconn *pg = ms_api_pool_get(api->pool, POOL_WAIT_MS, err, size);
        if (!pg)
                ms_log_warn("api: %s", err);
        return pg;
}

static enum MHD_Result unavailable(struct MHD_Connection *c, req_t *rq, const char *err)
{
        ms_log_error("api: %s %s: %s", rq->method, rq->path, err);
        return send_error(c, rq, 503, "unavailable",
                          "the status store is not reachable; try again shortly");
}

/* ------------------------------------------------------------------ SSE */

typedef struct stream {
        ms_api_t *api;
        ms_api_sub_t *sub;
        char org[256];
        char integ[32];
        char *buf;
        size_t len, off, cap;
        char *last; /* last snapshot sent, without server_time */
        int64_t next_keepalive;
        int64_t retry_at; /* 0 = no read to retry */
        int ended;
} stream_t;

static int stream_append(stream_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int stream_append(stream_t *s, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -1;
        if (s->len + (size_t)n + 1 > s->cap) {
                size_t cap = (s->len + (size_t)n + 1) * 2;
                char *b = realloc(s->buf, cap);
                if (!b)
                        return -1;
                s->buf = b;
                s->cap = cap;
        }
        va_start(ap, fmt);
        vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        s->len += (size_t)n;
        return 0;
}

/* Appends a `status` event for doc (borrowed) unless nothing but the server
 * time changed since the last one. */
static void stream_event(stream_t *s, json_t *doc, int first)
{
        json_t *cmp = json_copy(doc);
        json_object_del(cmp, "server_time");
        char *key = json_dumps(cmp, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(cmp);
        if (!key)
                return;
        if (s->last && strcmp(s->last, key) == 0) {
                free(key);
                return;
        }
        free(s->last);
        s->last = key;
        char *text = json_dumps(doc, JSON_COMPACT);
        if (!text)
                return;
        int64_t id = 0;
        const char *upd = json_string_value(json_object_get(doc, "updated_at"));
        if (upd)
                ms_iso8601_parse(upd, &id);
        /* The id is the row's updated_at in epoch ms: a reconnecting
         * EventSource sends it back as Last-Event-ID, and we answer with a
         * fresh snapshot anyway, which is always newer or equal. */
        if (first)
                stream_append(s, "retry: %d\n", SSE_RETRY_MS);
        stream_append(s, "id: %lld\nevent: status\ndata: %s\n\n", (long long)id, text);
        free(text);
        s->next_keepalive = ms_mono_ms() + KEEPALIVE_MS;
}

static void stream_refresh(stream_t *s)
{
        char err[512];
        json_t *doc = NULL;
        PGconn *pg = ms_api_pool_get(s->api->pool, POOL_WAIT_MS, err, sizeof(err));
        int rc = pg ? ms_api_query_status(pg, s->org, s->integ, &doc, err, sizeof(err))
                    : MS_ERR_PG;
        ms_api_pool_put(s->api->pool, pg);
        if (rc == MS_ERR_NOTFOUND) {
                /* The integration was removed while the stream was open. */
                stream_append(s, "event: gone\ndata: {\"error\":\"not_found\"}\n\n");
                s->ended = 1;
                return;
        }
        if (rc) {
                ms_log_warn("api: stream %s/%s: %s (retrying)", s->org, s->integ, err);
                s->retry_at = ms_mono_ms() + SSE_RETRY_MS;
                return;
        }
        s->retry_at = 0;
        stream_event(s, doc, 0);
        json_decref(doc);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
        stream_t *s = cls;
        (void)pos;
        for (;;) {
                if (s->off < s->len) {
                        size_t n = s->len - s->off < max ? s->len - s->off : max;
                        memcpy(out, s->buf + s->off, n);
                        s->off += n;
                        return (ssize_t)n;
                }
                s->off = s->len = 0;
                if (s->ended || atomic_load(&s->api->stopping))
                        return MHD_CONTENT_READER_END_OF_STREAM;
                int64_t now = ms_mono_ms();
                int64_t until = s->next_keepalive;
                if (s->retry_at && s->retry_at < until)
                        until = s->retry_at;
                /* Thread per connection: blocking here only holds this
                 * client's own thread. */
                int w = ms_api_hub_wait(s->api->hub, s->sub, until - now);
                if (w < 0)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                now = ms_mono_ms();
                if (w > 0 || (s->retry_at && now >= s->retry_at)) {
                        stream_refresh(s);
                } else if (now >= s->next_keepalive) {
                        stream_append(s, ": keep-alive\n\n");
                        s->next_keepalive = now + KEEPALIVE_MS;
                }
        }
}

static void stream_free(void *cls)
{
        stream_t *s = cls;
        ms_api_hub_unsubscribe(s->api->hub, s->sub);
        free(s->buf);
        free(s->last);
        free(s);
}

static enum MHD_Result open_stream(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                                   const char *org, const char *integ)
{
        char err[512], key[300];
        json_t *doc = NULL;
        stream_t *s = calloc(1, sizeof(*s));
        if (!s)
                return MHD_NO;
        s->api = api;
        snprintf(s->org, sizeof(s->org), "%s", org);
        snprintf(s->integ, sizeof(s->integ), "%s", integ);
        snprintf(key, sizeof(key), "%s/%s", org, integ);
        /* Subscribe before the snapshot is read, so that a change landing
         * between the two is not lost (it only causes one extra read). */
        s->sub = ms_api_hub_subscribe(api->hub, key);
        if (!s->sub) {
                free(s);
                return MHD_NO;
        }
        PGconn *pg = pool_get(api, err, sizeof(err));
        int rc =
            pg ? ms_api_query_status(pg, org, integ, &doc, err, sizeof(err)) : MS_ERR_PG;
        ms_api_pool_put(api->pool, pg);
        if (rc) {
                stream_free(s);
                if (rc == MS_ERR_NOTFOUND)
                        return send_error(
                            c, rq, 404, "not_configured",
                            "this integration is not configured for the org");
                return unavailable(c, rq, err);
        }
        stream_event(s, doc, 1);
        json_decref(doc);
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
        if (!resp) {
                stream_free(s);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        /* Tells reverse proxies (nginx) not to buffer the stream. */
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        ms_metrics_counter_add("membersync_api_sse_streams_total",
                               "Status streams opened.", NULL, 1);
        return queue(c, rq, 200, resp);
}

/* -------------------------------------------------------------- triggers */

static enum MHD_Result trigger(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                               const ms_api_principal_t *who, const char *org,
                               ms_system_t sys)
{
        char err[512];
        int configured = 0;
        int64_t next_ms = 0, now_ms = 0;
        const char *integ = ms_system_enum(sys);
        PGconn *pg = pool_get(api, err, sizeof(err));
        int rc = pg ? ms_api_query_trigger_check(pg, org, integ, &configured, &next_ms,
                                                 &now_ms, err, sizeof(err))
                    : MS_ERR_PG;
        ms_api_pool_put(api->pool, pg);
        if (rc)
                return unavailable(c, rq, err);
        if (!configured)
                return send_error(
                    c, rq, 404, "not_configured",
                    "this integration is not configured (or not enabled) for "
                    "the org");
        if (next_ms > now_ms) {
                /* The rate limiter stays the authority (it decides again on
                 * the request); this only answers at once what it would say. */
                char iso[40], msg[200], retry[24];
                ms_iso8601(next_ms, iso, sizeof(iso));
                long long secs = (next_ms - now_ms + 999) / 1000;
                snprintf(retry, sizeof(retry), "%lld", secs);
                snprintf(
                    msg, sizeof(msg),
                    "a manual sync was started less than %d seconds ago; the next manual "
                    "sync is allowed at %s",
                    api->conf->rl_manual_window_s, iso);
                count("membersync_api_triggers_total", "Manual triggers by result.",
                      "result", "rate_limited");
                struct MHD_Response *resp = json_response(json_pack(
                    "{s:s, s:s, s:s, s:I}", "error", "rate_limited", "message", msg,
                    "next_allowed_at", iso, "retry_after", (json_int_t)secs));
                if (resp)
                        MHD_add_response_header(resp, "Retry-After", retry);
                return queue(c, rq, 429, resp);
        }
        char rid[37];
        ms_uuid_new(rid);
        json_t *req =
            ms_trigger_request_new(rid, org, integ, "MANUAL", who->sub,
                                   who->global ? "GLOBAL_ADMIN" : "ORG_ADMIN",
                                   who->global ? NULL : who->org_id, ms_now_ms());
        rc = req ? publish(api, req, err, sizeof(err)) : MS_ERR_GENERIC;
        json_decref(req);
        if (rc) {
                count("membersync_api_triggers_total", "Manual triggers by result.",
                      "result", "failed");
                ms_log_error("api: trigger %s/%s: %s", org, integ, err);
                return send_error(c, rq, 503, "unavailable",
                                  "the trigger could not be queued; try again shortly");
        }
        count("membersync_api_triggers_total", "Manual triggers by result.", "result",
              "accepted");
        ms_log_info("api: manual trigger %s for %s/%s by %s", rid, org, integ,
                    who->global ? "global_admin" : "org_admin");
        char url[512];
        snprintf(url, sizeof(url), "/api/v1/orgs/%s/integrations/%s/sync", org,
                 ms_system_slug(sys));
        struct MHD_Response *resp = json_response(
            json_pack("{s:s, s:s, s:s, s:s}", "request_id", rid, "status_url", url,
                      "org_id", org, "integration", integ));
        if (resp)
                MHD_add_response_header(resp, "Location", url);
        return queue(c, rq, 202, resp);
}

/* ------------------------------------------------------------ /api/v1/... */

static enum MHD_Result method_not_allowed(struct MHD_Connection *c, req_t *rq,
                                          const char *allow)
{
        struct MHD_Response *resp = json_response(
            json_pack("{s:s, s:s}", "error", "method_not_allowed", "message", allow));
        if (resp)
                MHD_add_response_header(resp, "Allow", allow);
        return queue(c, rq, 405, resp);
}

/* seg[0..n) are the path segments after /api/v1/. */
static enum MHD_Result api_route(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                                 char **seg, int n)
{
        int get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
        int post = strcmp(rq->method, "POST") == 0;
        if (n < 3 || strcmp(seg[0], "orgs") || strcmp(seg[2], "integrations"))
                return send_error(c, rq, 404, "not_found", "no such resource");
        const char *org = seg[1];
        /* What the route is, before anything is checked, so that a wrong
         * method is 405 whoever asks. */
        enum { R_LIST, R_SYNC, R_STREAM, R_JOBS, R_ERRORS } route;
        if (n == 3)
                route = R_LIST;
        else if (n == 5 && strcmp(seg[4], "sync") == 0)
                route = R_SYNC;
        else if (n == 6 && strcmp(seg[4], "sync") == 0 && strcmp(seg[5], "stream") == 0)
                route = R_STREAM;
        else if (n == 5 && strcmp(seg[4], "jobs") == 0)
                route = R_JOBS;
        else if (n == 7 && strcmp(seg[4], "jobs") == 0 && strcmp(seg[6], "errors") == 0)
                route = R_ERRORS;
        else
                return send_error(c, rq, 404, "not_found", "no such resource");
        if (route == R_SYNC ? !(get || post) : !get)
                return method_not_allowed(c, rq, route == R_SYNC ? "GET, POST" : "GET");
        /* A stream never ends by itself: HEAD would hold a thread for nothing. */
        if (route == R_STREAM && strcmp(rq->method, "GET") != 0)
                return method_not_allowed(c, rq, "GET");
        rq->quiet = get;

        const char *token = bearer_token(c, route == R_STREAM);
        if (!token || !*token)
                return send_unauthorized(c, rq, "missing bearer token");
        ms_api_principal_t who;
        char why[128];
        if (ms_api_auth_verify(api->auth, token, &who, why, sizeof(why))) {
                ms_log_info("api: %s %s: token refused: %s", rq->method, rq->path, why);
                return send_unauthorized(c, rq, why);
        }
        if (!org_valid(org))
                return send_error(c, rq, 404, "not_found", "no such organization");
        if (!who.global && strcmp(who.org_id, org) != 0)
                return send_error(
                    c, rq, 403, "forbidden",
                    "an org_admin may only see and sync their own organization");

        char err[512];
        json_t *doc = NULL;
        PGconn *pg = NULL;
        int rc;
        if (route == R_LIST) {
                if (!(pg = pool_get(api, err, sizeof(err))))
                        return unavailable(c, rq, err);
                rc = ms_api_query_status(pg, org, NULL, &doc, err, sizeof(err));
                ms_api_pool_put(api->pool, pg);
                return rc ? unavailable(c, rq, err) : send_json(c, rq, 200, doc);
        }
        ms_system_t sys;
        if (ms_system_parse(seg[3], &sys))
                return send_error(c, rq, 404, "not_found",
                                  "no such integration (cornerstone or consio)");
        const char *integ = ms_system_enum(sys);
        if (route == R_SYNC && post)
                return trigger(api, c, rq, &who, org, sys);
        if (route == R_STREAM)
                return open_stream(api, c, rq, org, integ);

        long long limit = 0, cursor = 0;
        const char *severity = NULL;
        if (route == R_JOBS && int_param(c, "limit", DEFAULT_JOBS, 1, MAX_JOBS, &limit))
                return send_error(c, rq, 400, "bad_request", "limit must be 1..100");
        if (route == R_ERRORS) {
                if (int_param(c, "limit", DEFAULT_ERRORS, 1, MAX_ERRORS, &limit))
                        return send_error(c, rq, 400, "bad_request",
                                          "limit must be 1..500");
                if (int_param(c, "cursor", -1, 0, INT64_MAX / 2, &cursor))
                        return send_error(c, rq, 400, "bad_request",
                                          "cursor must be a next_cursor value");
                severity =
                    MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "severity");
                if (severity && !*severity)
                        severity = NULL;
                if (severity && strcmp(severity, "ERROR") && strcmp(severity, "WARNING"))
                        return send_error(c, rq, 400, "bad_request",
                                          "severity must be ERROR or WARNING");
                if (!ms_uuid_valid(seg[5]))
                        return send_error(c, rq, 404, "not_found", "no such job");
        }
        if (!(pg = pool_get(api, err, sizeof(err))))
                return unavailable(c, rq, err);
        if (route == R_SYNC)
                rc = ms_api_query_status(pg, org, integ, &doc, err, sizeof(err));
        else if (route == R_JOBS) {
                /* The status read only tells a configured integration (404
                 * otherwise) from one without history. */
                rc = ms_api_query_status(pg, org, integ, &doc, err, sizeof(err));
                json_decref(doc);
                doc = NULL;
                if (!rc)
                        rc = ms_api_query_jobs(pg, org, integ, (int)limit, &doc, err,
                                               sizeof(err));
        } else
                rc = ms_api_query_errors(pg, org, integ, seg[5], cursor, (int)limit,
                                         severity, &doc, err, sizeof(err));
        ms_api_pool_put(api->pool, pg);
        if (rc == MS_ERR_NOTFOUND)
                return send_error(
                    c, rq, 404, route == R_ERRORS ? "not_found" : "not_configured",
                    route == R_ERRORS ? "no such job for this org and integration"
                                      : "this integration is not configured for the org");
        if (rc)
                return unavailable(c, rq, err);
        return send_json(c, rq, 200, doc);
}

static enum MHD_Result route(ms_api_t *api, struct MHD_Connection *c, req_t *rq,
                             const char *url)
{
        int get = strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0;
        if (strncmp(url, "/api/", 5) == 0 && strcmp(rq->method, "OPTIONS") == 0)
                return preflight(c, rq);
        if (strcmp(url, "/livez") == 0 || strcmp(url, "/readyz") == 0 ||
            strcmp(url, "/metrics") == 0) {
                rq->quiet = 1;
                if (!get)
                        return method_not_allowed(c, rq, "GET");
                return health(api, c, rq, url);
        }
        if (strcmp(url, "/") == 0 || strcmp(url, "/widget") == 0)
                return get ? send_redirect(c, rq, "/widget/")
                           : method_not_allowed(c, rq, "GET");
        if (strncmp(url, "/widget/", 8) == 0) {
                rq->quiet = 1;
                if (!get)
                        return method_not_allowed(c, rq, "GET");
                return widget_file(api, c, rq, url + 8);
        }
        if (strncmp(url, "/api/v1/", 8) != 0)
                return send_error(c, rq, 404, "not_found", "no such resource");
        char buf[512];
        if (strlen(url + 8) >= sizeof(buf))
                return send_error(c, rq, 404, "not_found", "no such resource");
        snprintf(buf, sizeof(buf), "%s", url + 8);
        char *seg[MAX_SEGMENTS];
        int n = 0;
        char *p = buf;
        /* Split on '/'; an empty segment ("//", trailing "/") never matches a
         * route, so it is kept and fails the match. */
        for (;;) {
                if (n == MAX_SEGMENTS)
                        return send_error(c, rq, 404, "not_found", "no such resource");
                seg[n++] = p;
                char *slash = strchr(p, '/');
                if (!slash)
                        break;
                *slash = '\0';
                p = slash + 1;
        }
        for (int i = 0; i < n; i++)
                if (!*seg[i])
                        return send_error(c, rq, 404, "not_found", "no such resource");
        return api_route(api, c, rq, seg, n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
        ms_api_t *api = cls;
        (void)version;
        (void)upload_data;
        req_t *rq = *con_cls;
        if (!rq) {
                rq = calloc(1, sizeof(*rq));
                if (!rq)
                        return MHD_NO;
                rq->t0 = ms_mono_ms();
                snprintf(rq->method, sizeof(rq->method), "%s", method);
                snprintf(rq->path, sizeof(rq->path), "%s", url);
                const char *origin =
                    MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
                if (origin && strlen(origin) < sizeof(rq->origin)) {
                        snprintf(rq->origin, sizeof(rq->origin), "%s", origin);
                        rq->cors = origin_allowed(api, origin);
                }
                *con_cls = rq;
                return MHD_YES;
        }
        if (*upload_data_size) {
                /* No route reads a body; it is counted and dropped. */
                rq->body += *upload_data_size;
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (rq->body > MAX_BODY)
                return send_error(c, rq, 413, "too_large", "request body too large");
        return route(api, c, rq, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        (void)cls;
        (void)c;
        (void)toe;
        req_t *rq = *con_cls;
        if (!rq)
                return;
        long long ms = (long long)(ms_mono_ms() - rq->t0);
        if (rq->quiet && rq->status < 400)
                ms_log_debug("api: %s %s %d %lldms", rq->method, rq->path, rq->status,
                             ms);
        else
                ms_log_info("api: %s %s %d %lldms", rq->method, rq->path, rq->status, ms);
        free(rq);
        *con_cls = NULL;
}

static int hexval(char ch)
{
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

/* Percent-decoding of the path and query values, as MHD's own, except that
 * "%00" stays as it is: a decoded NUL would silently cut the C string, so
 * "/widget/index.html%00.js" would be served as index.html. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
        (void)cls;
        (void)c;
        char *w = s;
        for (const char *r = s; *r;) {
                int hi, lo;
                if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 &&
                    (hi | lo) != 0) {
                        *w++ = (char)(hi * 16 + lo);
                        r += 3;
                } else {
                        *w++ = *r++;
                }
        }
        *w = '\0';
        return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        (void)cls;
        char msg[512];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                msg[--n] = '\0';
        ms_log_warn("api: http: %s", msg);
}

/* ---------------------------------------------------------------- set-up */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len,
                        char *errstr, size_t errstr_size)
{
        char host[256], port[16];
        const char *colon = strrchr(listen, ':');
        if (!colon || colon[1] == '\0' || strlen(colon + 1) >= sizeof(port) ||
            (size_t)(colon - listen) >= sizeof(host))
                goto bad;
        snprintf(port, sizeof(port), "%s", colon + 1);
        snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
        if (host[0] == '[') {
                size_t n = strlen(host);
                if (n < 2 || host[n - 1] != ']')
                        goto bad;
                memmove(host, host + 1, n - 2);
                host[n - 2] = '\0';
        }
        struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                                 .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0 || !res)
                goto bad;
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
bad:
        snprintf(errstr, errstr_size,
                 "config: api.listen: \"%s\" is not HOST:PORT (e.g. 0.0.0.0:8080 or "
                 "[::]:8080)",
                 listen);
        return MS_ERR_CONFIG;
}

static int resolve_widget_dir(ms_api_t *api, char *errstr, size_t errstr_size)
{
        const char *dir = api->conf->api_widget_dir;
        int configured = dir[0] != '\0';
        if (!configured)
                dir = MS_SOURCE_DIR "/widget";
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                if (configured) {
                        snprintf(errstr, errstr_size,
                                 "config: api.widget_dir: %s is not a folder", dir);
                        return MS_ERR_CONFIG;
                }
                /* A container image carries no source tree: the api then
                 * serves no widget files rather than refusing to start. */
                ms_log_warn("api: no widget folder at %s: /widget/ disabled (set "
                            "api.widget_dir)",
                            dir);
                api->widget_dir[0] = '\0';
                return 0;
        }
        snprintf(api->widget_dir, sizeof(api->widget_dir), "%s", dir);
        return 0;
}

int ms_api_run(const ms_conf_t *conf, char *errstr, size_t errstr_size)
{
        int rc = 0;
        struct MHD_Daemon *d = NULL;
        ms_api_t *api = calloc(1, sizeof(*api));
        if (!api) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        api->conf = conf;
        struct sockaddr_storage ss;
        socklen_t sslen = 0;
        if ((rc = parse_listen(conf->api_listen, &ss, &sslen, errstr, errstr_size)) ||
            (rc = ms_api_auth_new(conf, &api->auth, errstr, errstr_size)) ||
            (rc =
                 parse_origins(api, conf->api_cors_allow_origins, errstr, errstr_size)) ||
            (rc = resolve_widget_dir(api, errstr, errstr_size)))
                goto out;
        if (!(api->pool = ms_api_pool_new(conf->pg_dsn, POOL_SIZE))) {
                snprintf(errstr, errstr_size, "out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        if ((rc = ms_avro_new(conf->kafka_schema_registry_url[0]
                                  ? conf->kafka_schema_registry_url
                                  : NULL,
                              &api->codec, errstr, errstr_size)))
                goto out;
        api->rk = ms_kafka_producer_new(conf, "membersync-api", -1, delivery_cb, NULL,
                                        errstr, errstr_size);
        if (!api->rk) {
                rc = MS_ERR_KAFKA;
                goto out;
        }
        /* A trigger that cannot be delivered in time must fail for good, not
         * turn up minutes after the client was told 503: the topic handle
         * (which producev finds by name) carries a message timeout below
         * the time a request waits for the acknowledgement. */
        rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
        char tmo[16], kerr[256];
        snprintf(tmo, sizeof(tmo), "%d", DELIVERY_WAIT_MS - 1000);
        if (rd_kafka_topic_conf_set(tc, "message.timeout.ms", tmo, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "kafka: message.timeout.ms: %s", kerr);
                rd_kafka_topic_conf_destroy(tc);
                rc = MS_ERR_KAFKA;
                goto out;
        }
        /* rd_kafka_topic_new takes tc, also when it fails. */
        if (!(api->rkt = rd_kafka_topic_new(api->rk, conf->topic_sync_requests, tc))) {
                snprintf(errstr, errstr_size, "kafka: topic %s: %s",
                         conf->topic_sync_requests,
                         rd_kafka_err2str(rd_kafka_last_error()));
                rc = MS_ERR_KAFKA;
                goto out;
        }
        if (pthread_create(&api->poll_thread, NULL, poll_main, api) != 0) {
                snprintf(errstr, errstr_size, "cannot start the producer poll thread");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        api->poll_started = 1;
        if ((rc = ms_api_hub_new(conf->pg_dsn, &api->hub, errstr, errstr_size)))
                goto out;
        if ((rc = ms_health_new(&api->health, errstr, errstr_size)))
                goto out;
        ms_health_set_checks(api->health, check_live, check_ready, api);

        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_ERROR_LOG;
        if (ss.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        uint16_t port = ss.ss_family == AF_INET6
                            ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        d = MHD_start_daemon(
            flags, port, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
            api, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_UNESCAPE_CALLBACK,
            unescape, api, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1000,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120, MHD_OPTION_END);
        if (!d) {
                snprintf(errstr, errstr_size, "cannot listen on %s (in use?)",
                         conf->api_listen);
                rc = MS_ERR_GENERIC;
                goto out;
        }
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        char host[INET6_ADDRSTRLEN] = "";
        if (ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
                          sizeof(host));
        else
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
                          sizeof(host));
        ms_log_info("api: listening on %s:%u (widget %s, cors %s)", host,
                    info ? info->port : port,
                    api->widget_dir[0] ? api->widget_dir : "off",
                    api->any_origin ? "any origin"
                    : api->norigins ? "allow-list"
                                    : "off");
        while (!ms_stop)
                ms_sleep_ms(100);
        ms_log_info("api: stopping");
out:
        atomic_store(&api->stopping, 1);
        /* Streams end first (they block on the hub), then the daemon joins
         * its connection threads. */
        ms_api_hub_stop(api->hub);
        if (d)
                MHD_stop_daemon(d);
        if (api->poll_started)
                pthread_join(api->poll_thread, NULL);
        if (api->rkt)
                rd_kafka_topic_destroy(api->rkt);
        if (api->rk) {
                rd_kafka_flush(api->rk, 5000);
                rd_kafka_destroy(api->rk);
        }
        ms_health_destroy(api->health);
        ms_api_hub_destroy(api->hub);
        ms_api_pool_destroy(api->pool);
        ms_avro_destroy(api->codec);
        ms_api_auth_destroy(api->auth);
        for (int i = 0; i < api->norigins; i++)
                free(api->origins[i]);
        free(api->origins);
        free(api);
        return rc;
}
