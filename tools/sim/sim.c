/* membersync-sim: the member API simulator (DESIGN.md section 6) that tests
 * and demos run against.  It serves one member system (Cornerstone or
 * Consio) with that system's auth and paging, from a JSON array file served
 * verbatim or from a deterministic generator, and can inject faults.
 * Run `membersync-sim --help` for the flags and fault specs. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ms_log.h"
#include "ms_util.h"
#include "sim.h"

#define MS_SIM_MAX_PAGE_SIZE  1000
#define MS_SIM_MAX_UPLOAD     65536
#define MS_SIM_SLEEP_SLICE_MS 50

typedef struct ms_sim_token {
        char tok[48];
        int64_t expires_ms; /* monotonic */
        int64_t uses;       /* data requests made with it */
} ms_sim_token_t;

typedef struct ms_sim {
        ms_system_t system;
        int default_page_size;
        int latency_ms;
        const char *api_key;
        const char *client_id;
        const char *client_secret;
        int64_t token_ttl_s;
        ms_sim_data_t data;
        ms_sim_faults_t faults;

        pthread_mutex_t tok_lock;
        ms_sim_token_t *toks;
        size_t ntok;
        size_t captok;

        atomic_llong requests;
        atomic_llong pages_served;
        atomic_llong tokens_issued;
        atomic_llong connections; /* TCP connections accepted (keep-alive check) */
} ms_sim_t;

/* Per-request state across the handler's calls (POST bodies arrive in
 * pieces). */
typedef struct ms_sim_conn {
        ms_sim_buf_t body;
        int too_big;
} ms_sim_conn_t;

static atomic_int ms_sim_stop;

/* Sleeps in short slices so that SIGTERM is not held up by a long hang. */
static void ms_sim_sleep(int64_t ms)
{
        int64_t end = ms_mono_ms() + ms;
        while (!atomic_load(&ms_sim_stop)) {
                int64_t left = end - ms_mono_ms();
                if (left <= 0)
                        break;
                ms_sleep_ms(left < MS_SIM_SLEEP_SLICE_MS ? left : MS_SIM_SLEEP_SLICE_MS);
        }
}

/* ---- responses ---- */

typedef struct ms_sim_hdrs {
        const char *retry_after;
        const char *www_auth;
} ms_sim_hdrs_t;

/* Queues a JSON response; takes ownership of body->p.  send_len below the
 * body length sends a truncated body (with a matching Content-Length). */
static enum MHD_Result ms_sim_reply(struct MHD_Connection *c, unsigned status,
                                    ms_sim_buf_t *body, size_t send_len,
                                    const ms_sim_hdrs_t *h)
{
        struct MHD_Response *r;
        if (body->oom) {
                ms_sim_buf_free(body);
                return MHD_NO;
        }
        if (body->p && send_len > 0) {
                r = MHD_create_response_from_buffer(send_len, body->p,
                                                    MHD_RESPMEM_MUST_FREE);
                if (r)
                        body->p = NULL;
        } else {
                r = MHD_create_response_from_buffer(0, (void *)"",
                                                    MHD_RESPMEM_PERSISTENT);
        }
        ms_sim_buf_free(body);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (h && h->retry_after)
                MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, h->retry_after);
        if (h && h->www_auth)
                MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, h->www_auth);
        enum MHD_Result ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result ms_sim_reply_json(struct MHD_Connection *c, unsigned status,
                                         json_t *v, const ms_sim_hdrs_t *h)
{
        ms_sim_buf_t b = {0};
        ms_sim_buf_json(&b, v);
        json_decref(v);
        return ms_sim_reply(c, status, &b, b.len, h);
}

static enum MHD_Result ms_sim_reply_error(struct MHD_Connection *c, unsigned status,
                                          const char *error, const char *message)
{
        ms_sim_hdrs_t h = {0};
        /* OAuth2 bearer-token semantics (RFC 6750) for the token error. */
        if (status == MHD_HTTP_UNAUTHORIZED && strcmp(error, "invalid_token") == 0)
                h.www_auth = "Bearer error=\"invalid_token\"";
        return ms_sim_reply_json(
            c, status, json_pack("{s:s,s:s}", "error", error, "message", message), &h);
}

/* ---- request helpers ---- */

static const char *ms_sim_arg(struct MHD_Connection *c, const char *name)
{
        return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static int ms_sim_parse_i64(const char *s, int64_t *out)
{
        if (!s || !*s)
                return -1;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end)
                return -1;
        *out = v;
        return 0;
}

/* The page size a data request asks for: the client's pageSize up to the
 * maximum, else the simulator's default.  -1 when pageSize is invalid. */
static int64_t ms_sim_page_size(ms_sim_t *sim, struct MHD_Connection *c)
{
        const char *s = ms_sim_arg(c, "pageSize");
        int64_t v;
        if (!s)
                return sim->default_page_size;
        if (ms_sim_parse_i64(s, &v) < 0 || v < 1)
                return -1;
        return v > MS_SIM_MAX_PAGE_SIZE ? MS_SIM_MAX_PAGE_SIZE : v;
}

static int ms_sim_b64_val(int ch)
{
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '+')
                return 62;
        if (ch == '/')
                return 63;
        return -1;
}

/* Cornerstone cursors are base64 of "o=<offset>": opaque to clients, and
 * they contain '=' (and can contain '+', '/') so that clients must escape
 * them.  Returns the offset or -1. */
static int64_t ms_sim_cursor_decode(const char *cur)
{
        char raw[48];
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (const char *p = cur; *p && *p != '='; p++) {
                int v = ms_sim_b64_val((unsigned char)*p);
                if (v < 0)
                        return -1;
                acc = (acc << 6) | (uint32_t)v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (o + 1 >= sizeof(raw))
                                return -1;
                        raw[o++] = (char)((acc >> bits) & 0xFF);
                }
        }
        raw[o] = '\0';
        int64_t off;
        if (strncmp(raw, "o=", 2) != 0 || ms_sim_parse_i64(raw + 2, &off) < 0 || off < 0)
                return -1;
        return off;
}

static char *ms_sim_cursor_encode(int64_t offset)
{
        char raw[32];
        int n = snprintf(raw, sizeof(raw), "o=%lld", (long long)offset);
        return ms_base64_encode((const unsigned char *)raw, (size_t)n);
}

/* Value of key in an x-www-form-urlencoded body, decoded into out. */
static int ms_sim_form_get(const char *body, const char *key, char *out, size_t size)
{
        size_t klen = strlen(key);
        const char *p = body;
        while (p && *p) {
                const char *amp = strchr(p, '&');
                size_t plen = amp ? (size_t)(amp - p) : strlen(p);
                if (plen > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
                        size_t o = 0;
                        for (size_t i = klen + 1; i < plen && o + 1 < size; i++) {
                                char ch = p[i];
                                if (ch == '+') {
                                        ch = ' ';
                                } else if (ch == '%' && i + 2 < plen &&
                                           isxdigit((unsigned char)p[i + 1]) &&
                                           isxdigit((unsigned char)p[i + 2])) {
                                        char hex[3] = {p[i + 1], p[i + 2], 0};
                                        ch = (char)strtol(hex, NULL, 16);
                                        i += 2;
                                }
                                out[o++] = ch;
                        }
                        out[o] = '\0';
                        return 1;
                }
                p = amp ? amp + 1 : NULL;
        }
        return 0;
}

/* ---- faults common to data requests ---- */

/* Applies a one-shot fault for `page`.  Returns 1 when the fault produced
 * the answer (*ret set), 0 to serve normally (*truncate may be set). */
static int ms_sim_apply_fault(ms_sim_t *sim, struct MHD_Connection *c, int64_t page,
                              enum MHD_Result *ret, int *truncate)
{
        ms_sim_fault_t f = ms_sim_faults_take(&sim->faults, page);
        char hv[64];
        ms_sim_hdrs_t h = {0};
        *truncate = 0;
        switch (f.kind) {
        case MS_SIM_FAULT_NONE:
                return 0;
        case MS_SIM_FAULT_RESET:
                ms_log_info("fault: reset page %lld", (long long)page);
                /* MHD_NO makes libmicrohttpd close the socket unanswered. */
                *ret = MHD_NO;
                return 1;
        case MS_SIM_FAULT_STATUS:
                ms_log_info("fault: status %d page %lld", f.code, (long long)page);
                *ret = ms_sim_reply_error(c, (unsigned)f.code, "simulated",
                                          "simulated failure");
                return 1;
        case MS_SIM_FAULT_429S:
        case MS_SIM_FAULT_429DATE:
                if (f.kind == MS_SIM_FAULT_429S) {
                        snprintf(hv, sizeof(hv), "%lld", (long long)f.arg);
                } else {
                        /* Rounded up to the next whole second so that the
                         * client waits at least the given number of seconds. */
                        time_t t = (time_t)((ms_now_ms() + 999) / 1000 + f.arg);
                        struct tm tm;
                        gmtime_r(&t, &tm);
                        strftime(hv, sizeof(hv), "%a, %d %b %Y %H:%M:%S GMT", &tm);
                }
                ms_log_info("fault: 429 page %lld", (long long)page);
                h.retry_after = hv;
                *ret =
                    ms_sim_reply_json(c, 429,
                                      json_pack("{s:s,s:s}", "error", "too_many_requests",
                                                "message", "slow down"),
                                      &h);
                return 1;
        case MS_SIM_FAULT_HANG:
                ms_log_info("fault: hang %lld ms page %lld", (long long)f.arg,
                            (long long)page);
                ms_sim_sleep(f.arg);
                return 0;
        case MS_SIM_FAULT_TRUNCATE:
                ms_log_info("fault: truncate page %lld", (long long)page);
                *truncate = 1;
                return 0;
        default:
                return 0;
        }
}

/* ---- Cornerstone ---- */

static int ms_sim_cornerstone_authorized(ms_sim_t *sim, struct MHD_Connection *c)
{
        if (ms_sim_faults_auth_fail(&sim->faults))
                return 0;
        const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
        return key && strcmp(key, sim->api_key) == 0;
}

static enum MHD_Result ms_sim_cornerstone_members(ms_sim_t *sim, struct MHD_Connection *c)
{
        enum MHD_Result ret;
        int truncate = 0;
        char *next = NULL;
        ms_sim_buf_t b = {0};

        if (!ms_sim_cornerstone_authorized(sim, c))
                return ms_sim_reply_error(c, 401, "unauthorized", "invalid API key");
        int64_t size = ms_sim_page_size(sim, c);
        if (size < 0)
                return ms_sim_reply_error(c, 400, "invalid_request", "invalid pageSize");
        const char *cur = ms_sim_arg(c, "cursor");
        int64_t offset = 0;
        if (cur && *cur) {
                offset = ms_sim_cursor_decode(cur);
                if (offset < 0)
                        return ms_sim_reply_error(c, 400, "invalid_cursor",
                                                  "invalid cursor");
        }
        int64_t page = offset / size + 1;
        if (sim->latency_ms > 0)
                ms_sim_sleep(sim->latency_ms);
        if (ms_sim_apply_fault(sim, c, page, &ret, &truncate))
                return ret;

        int64_t served;
        ms_sim_buf_puts(&b, "{\"data\":[");
        int64_t total = ms_sim_data_append_range(&sim->data, offset, size, &b, &served);
        ms_sim_buf_puts(&b, "],\"nextCursor\":");
        int64_t repeat = ms_sim_faults_repeat_page(&sim->faults);
        if (repeat > 0 && page >= repeat)
                /* Paging stuck: from page `repeat` on, the next cursor is
                 * that page's own cursor. */
                next = ms_sim_cursor_encode((repeat - 1) * size);
        else if (offset + served < total)
                next = ms_sim_cursor_encode(offset + served);
        if (next)
                ms_sim_buf_printf(&b, "\"%s\"", next);
        else
                ms_sim_buf_puts(&b, "null");
        free(next);
        ms_sim_buf_printf(&b, ",\"totalCount\":%lld}", (long long)total);
        atomic_fetch_add(&sim->pages_served, 1);
        return ms_sim_reply(c, 200, &b, truncate ? b.len / 2 : b.len, NULL);
}

static enum MHD_Result ms_sim_cornerstone_org(ms_sim_t *sim, struct MHD_Connection *c)
{
        if (!ms_sim_cornerstone_authorized(sim, c))
                return ms_sim_reply_error(c, 401, "unauthorized", "invalid API key");
        return ms_sim_reply_json(
            c, 200, json_pack("{s:s,s:s}", "id", "org-sim", "name", "Simulated Org"),
            NULL);
}

/* ---- Consio ---- */

/* 1 when the request carries a live token, counting the use. */
static int ms_sim_consio_authorized(ms_sim_t *sim, struct MHD_Connection *c)
{
        if (ms_sim_faults_auth_fail(&sim->faults))
                return 0;
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return 0;
        const char *tok = h + 7;
        int64_t limit = ms_sim_faults_token_limit(&sim->faults);
        int64_t now = ms_mono_ms();
        int ok = 0;
        pthread_mutex_lock(&sim->tok_lock);
        for (size_t i = 0; i < sim->ntok; i++) {
                ms_sim_token_t *t = &sim->toks[i];
                if (strcmp(t->tok, tok) != 0)
                        continue;
                if (now < t->expires_ms && (limit == 0 || t->uses < limit)) {
                        t->uses++;
                        ok = 1;
                }
                break;
        }
        pthread_mutex_unlock(&sim->tok_lock);
        return ok;
}

static enum MHD_Result ms_sim_consio_token(ms_sim_t *sim, struct MHD_Connection *c,
                                           ms_sim_conn_t *cc)
{
        char grant[64], id[256], secret[256], scope[256];
        const char *body = cc->body.p ? cc->body.p : "";

        if (cc->too_big)
                return ms_sim_reply_error(c, 413, "invalid_request", "body too large");
        if (!ms_sim_form_get(body, "grant_type", grant, sizeof(grant)) ||
            strcmp(grant, "client_credentials") != 0)
                return ms_sim_reply_error(c, 400, "unsupported_grant_type",
                                          "grant_type must be client_credentials");
        if (ms_sim_faults_auth_fail(&sim->faults) ||
            !ms_sim_form_get(body, "client_id", id, sizeof(id)) ||
            !ms_sim_form_get(body, "client_secret", secret, sizeof(secret)) ||
            strcmp(id, sim->client_id) != 0 || strcmp(secret, sim->client_secret) != 0)
                return ms_sim_reply_error(c, 401, "invalid_client", "unknown client");
        if (ms_sim_form_get(body, "scope", scope, sizeof(scope)) &&
            !strstr(scope, "members.read"))
                return ms_sim_reply_error(c, 400, "invalid_scope", "scope not granted");

        unsigned char rnd[16];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                return ms_sim_reply_error(c, 500, "server_error", "no randomness");
        ms_sim_token_t t = {0};
        size_t o = (size_t)snprintf(t.tok, sizeof(t.tok), "sim.");
        for (size_t i = 0; i < sizeof(rnd); i++)
                o += (size_t)snprintf(t.tok + o, sizeof(t.tok) - o, "%02x", rnd[i]);
        int64_t now = ms_mono_ms();
        t.expires_ms = now + sim->token_ttl_s * 1000;

        pthread_mutex_lock(&sim->tok_lock);
        /* Drop expired tokens so a long benchmark does not grow the table. */
        size_t w = 0;
        for (size_t i = 0; i < sim->ntok; i++)
                if (sim->toks[i].expires_ms > now)
                        sim->toks[w++] = sim->toks[i];
        sim->ntok = w;
        if (sim->ntok == sim->captok) {
                size_t ncap = sim->captok ? sim->captok * 2 : 16;
                ms_sim_token_t *nt = realloc(sim->toks, ncap * sizeof(*nt));
                if (!nt) {
                        pthread_mutex_unlock(&sim->tok_lock);
                        return ms_sim_reply_error(c, 500, "server_error",
                                                  "out of memory");
                }
                sim->toks = nt;
                sim->captok = ncap;
        }
        sim->toks[sim->ntok++] = t;
        pthread_mutex_unlock(&sim->tok_lock);
        atomic_fetch_add(&sim->tokens_issued, 1);

        return ms_sim_reply_json(c, 200,
                                 json_pack("{s:s,s:s,s:I}", "access_token", t.tok,
                                           "token_type", "Bearer", "expires_in",
                                           (json_int_t)sim->token_ttl_s),
                                 NULL);
}

static enum MHD_Result ms_sim_consio_actors(ms_sim_t *sim, struct MHD_Connection *c)
{
        enum MHD_Result ret;
        int truncate = 0;
        ms_sim_buf_t items = {0};
        ms_sim_buf_t b = {0};

        if (!ms_sim_consio_authorized(sim, c))
                return ms_sim_reply_error(c, 401, "invalid_token",
                                          "token missing or expired");
        int64_t size = ms_sim_page_size(sim, c);
        if (size < 0)
                return ms_sim_reply_error(c, 400, "invalid_request", "invalid pageSize");
        int64_t page = 1;
        const char *ps = ms_sim_arg(c, "page");
        if (ps &&
            (ms_sim_parse_i64(ps, &page) < 0 || page < 1 || page > INT64_MAX / 2000))
                return ms_sim_reply_error(c, 400, "invalid_request", "invalid page");
        if (sim->latency_ms > 0)
                ms_sim_sleep(sim->latency_ms);
        if (ms_sim_apply_fault(sim, c, page, &ret, &truncate))
                return ret;

        /* repeat-cursor for Consio: page `repeat` (>= 2) carries the records
         * of the page before it, as a server whose paging is stuck would. */
        int64_t from_page = page;
        int64_t repeat = ms_sim_faults_repeat_page(&sim->faults);
        if (repeat >= 2 && page == repeat)
                from_page = page - 1;
        int64_t served;
        int64_t total = ms_sim_data_append_range(&sim->data, (from_page - 1) * size, size,
                                                 &items, &served);
        ms_sim_buf_printf(
            &b, "{\"totalCount\":%lld,\"page\":%lld,\"pageSize\":%lld,\"items\":[",
            (long long)total, (long long)page, (long long)size);
        if (items.p)
                ms_sim_buf_append(&b, items.p, items.len);
        if (items.oom)
                b.oom = 1;
        ms_sim_buf_puts(&b, "]}");
        ms_sim_buf_free(&items);
        atomic_fetch_add(&sim->pages_served, 1);
        return ms_sim_reply(c, 200, &b, truncate ? b.len / 2 : b.len, NULL);
}

/* ---- admin ---- */

static enum MHD_Result ms_sim_admin(ms_sim_t *sim, struct MHD_Connection *c,
                                    const char *url, const char *method)
{
        char err[256];
        int is_post = strcmp(method, "POST") == 0;
        if (strcmp(url, "/admin/stats") == 0 && strcmp(method, "GET") == 0) {
                return ms_sim_reply_json(
                    c, 200,
                    json_pack("{s:I,s:I,s:I,s:I,s:I}", "requests",
                              (json_int_t)atomic_load(&sim->requests), "pages_served",
                              (json_int_t)atomic_load(&sim->pages_served),
                              "tokens_issued",
                              (json_int_t)atomic_load(&sim->tokens_issued), "records",
                              (json_int_t)ms_sim_data_count(&sim->data), "connections",
                              (json_int_t)atomic_load(&sim->connections)),
                    NULL);
        }
        if (strcmp(url, "/admin/reload") == 0 && is_post) {
                const char *file = ms_sim_arg(c, "file");
                const char *gen = ms_sim_arg(c, "generate");
                if (file) {
                        if (ms_sim_data_load_file(&sim->data, file, err, sizeof(err)) < 0)
                                return ms_sim_reply_error(c, 400, "reload_failed", err);
                } else if (gen) {
                        int64_t n, seed = 1, variant = 0;
                        const char *s = ms_sim_arg(c, "seed");
                        const char *v = ms_sim_arg(c, "variant");
                        if (ms_sim_parse_i64(gen, &n) < 0 || n < 0 ||
                            (s && ms_sim_parse_i64(s, &seed) < 0) ||
                            (v && ms_sim_parse_i64(v, &variant) < 0))
                                return ms_sim_reply_error(
                                    c, 400, "reload_failed",
                                    "invalid generate/seed/variant");
                        ms_sim_data_set_generator(&sim->data, n, (uint64_t)seed, variant);
                } else {
                        return ms_sim_reply_error(c, 400, "reload_failed",
                                                  "need file= or generate=");
                }
                ms_log_info("dataset reloaded: %lld records",
                            (long long)ms_sim_data_count(&sim->data));
                return ms_sim_reply_json(
                    c, 200,
                    json_pack("{s:b,s:I}", "ok", 1, "records",
                              (json_int_t)ms_sim_data_count(&sim->data), "connections",
                              (json_int_t)atomic_load(&sim->connections)),
                    NULL);
        }
        if (strcmp(url, "/admin/fault") == 0 && is_post) {
                const char *spec = ms_sim_arg(c, "spec");
                if (!spec || ms_sim_faults_add(&sim->faults, spec, err, sizeof(err)) < 0)
                        return ms_sim_reply_error(c, 400, "invalid_fault",
                                                  spec ? err : "need spec=");
                return ms_sim_reply_json(c, 200, json_pack("{s:b}", "ok", 1), NULL);
        }
        if (strcmp(url, "/admin/faults/clear") == 0 && is_post) {
                ms_sim_faults_clear(&sim->faults);
                return ms_sim_reply_json(c, 200, json_pack("{s:b}", "ok", 1), NULL);
        }
        return ms_sim_reply_error(c, 404, "not_found", "no such admin resource");
}

/* ---- dispatch ---- */

static enum MHD_Result ms_sim_handle(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
        ms_sim_t *sim = cls;
        ms_sim_conn_t *cc = *con_cls;
        (void)version;

        /* First call: headers only.  Keep state for the body to come. */
        if (!cc) {
                cc = calloc(1, sizeof(*cc));
                if (!cc)
                        return MHD_NO;
                *con_cls = cc;
                return MHD_YES;
        }
        if (*upload_data_size) {
                if (cc->body.len + *upload_data_size > MS_SIM_MAX_UPLOAD)
                        cc->too_big = 1;
                else
                        ms_sim_buf_append(&cc->body, upload_data, *upload_data_size);
                *upload_data_size = 0;
                return MHD_YES;
        }

        if (strncmp(url, "/admin/", 7) == 0)
                return ms_sim_admin(sim, c, url, method);

        atomic_fetch_add(&sim->requests, 1);
        ms_log_debug("%s %s", method, url);
        int get = strcmp(method, "GET") == 0;
        int post = strcmp(method, "POST") == 0;
        if (sim->system == MS_SYSTEM_CORNERSTONE) {
                if (strcmp(url, "/api/v1/members") == 0 && get)
                        return ms_sim_cornerstone_members(sim, c);
                if (strcmp(url, "/api/v1/organization") == 0 && get)
                        return ms_sim_cornerstone_org(sim, c);
        } else {
                if (strcmp(url, "/connect/token") == 0 && post)
                        return ms_sim_consio_token(sim, c, cc);
                if (strcmp(url, "/api/v1/actors") == 0 && get)
                        return ms_sim_consio_actors(sim, c);
        }
        return ms_sim_reply_error(c, 404, "not_found", "no such resource");
}

static void ms_sim_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
        (void)cls;
        (void)c;
        (void)toe;
        ms_sim_conn_t *cc = *con_cls;
        if (cc) {
                ms_sim_buf_free(&cc->body);
                free(cc);
                *con_cls = NULL;
        }
}

static void ms_sim_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe)
{
        ms_sim_t *sim = cls;
        (void)c;
        (void)socket_context;
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                atomic_fetch_add(&sim->connections, 1);
}

/* libmicrohttpd's own messages (e.g. the closed connection of a reset
 * fault) go to the JSON log at info level instead of raw stderr. */
static void ms_sim_mhd_log(void *cls, const char *fmt, va_list ap)
{
        char msg[512];
        (void)cls;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
                msg[--n] = '\0';
        ms_log_info("microhttpd: %s", msg);
}

/* ---- CLI ---- */

static void ms_sim_usage(FILE *f)
{
        fputs(
            "usage: membersync-sim --system cornerstone|consio\n"
            "         (--file F.json | --generate N [--seed S] [--generate-variant V])\n"
            "         [--port P] [--bind ADDR] [--page-size N] [--latency-ms MS]\n"
            "         [--api-key K] [--client-id ID] [--client-secret S] [--token-ttl "
            "SEC]\n"
            "         [--fault SPEC]... [--log-level debug|info|warn|error]\n"
            "         [--tls-cert CERT.pem --tls-key KEY.pem]\n"
            "\n"
            "Prints 'membersync-sim listening on ADDR:PORT' once the port is open\n"
            "(--port 0, the default, picks a free port).  Stops on SIGTERM/SIGINT.\n"
            "\n"
            "Fault specs (PAGE is the 1-based page index of a data request):\n"
            "  status:CODE:PAGE:COUNT  first COUNT requests for PAGE answer CODE\n"
            "  429s:PAGE:SECONDS       once: 429 with Retry-After: SECONDS\n"
            "  429date:PAGE:SECONDS    once: 429 with Retry-After as an HTTP-date\n"
            "  hang:PAGE:MS            once: sleep MS before answering\n"
            "  truncate:PAGE           once: send the first half of the body\n"
            "  reset:PAGE              once: close the connection without answering\n"
            "  repeat-cursor:PAGE      cornerstone: from PAGE on, nextCursor is PAGE's "
            "own\n"
            "                          cursor; consio: page PAGE (>= 2) carries the\n"
            "                          records of page PAGE-1\n"
            "  token-expire-after:N    consio: each token is refused after N data "
            "requests\n"
            "  auth-fail               every call answers 401\n"
            "One-shot faults for the same page are used up in the order given.\n"
            "\n"
            "Admin (no auth): GET /admin/stats (requests, pages_served, tokens_issued,\n"
            "  records, connections), POST /admin/reload?file=PATH\n"
            "  (or ?generate=N&seed=S&variant=V), POST /admin/fault?spec=SPEC,\n"
            "  POST /admin/faults/clear\n",
            f);
}

enum {
        OPT_SEED = 1000,
        OPT_VARIANT,
        OPT_PAGE_SIZE,
        OPT_LATENCY,
        OPT_API_KEY,
        OPT_CLIENT_ID,
        OPT_CLIENT_SECRET,
        OPT_TOKEN_TTL,
        OPT_FAULT,
        OPT_LOG_LEVEL,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
};

static int ms_sim_opt_i64(const char *name, const char *s, int64_t min, int64_t *out)
{
        if (ms_sim_parse_i64(s, out) < 0 || *out < min) {
                fprintf(stderr, "membersync-sim: invalid --%s '%s'\n", name, s);
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"system", required_argument, NULL, 's'},
            {"file", required_argument, NULL, 'f'},
            {"generate", required_argument, NULL, 'g'},
            {"seed", required_argument, NULL, OPT_SEED},
            {"generate-variant", required_argument, NULL, OPT_VARIANT},
            {"port", required_argument, NULL, 'p'},
            {"bind", required_argument, NULL, 'b'},
            {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
            {"latency-ms", required_argument, NULL, OPT_LATENCY},
            {"api-key", required_argument, NULL, OPT_API_KEY},
            {"client-id", required_argument, NULL, OPT_CLIENT_ID},
            {"client-secret", required_argument, NULL, OPT_CLIENT_SECRET},
            {"token-ttl", required_argument, NULL, OPT_TOKEN_TTL},
            {"fault", required_argument, NULL, OPT_FAULT},
            {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
            {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
            {"tls-key", required_argument, NULL, OPT_TLS_KEY},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        ms_sim_t sim;
        const char *system = NULL, *file = NULL, *bind_addr = "127.0.0.1";
        int64_t gen_n = -1, seed = 1, variant = 0, port = 0, v;
        int rc = 2, data_ok = 0;
        char err[512];
        const char *tls_cert_path = NULL, *tls_key_path = NULL;
        char *tls_cert = NULL, *tls_key = NULL;
        struct MHD_Daemon *d = NULL;
        ms_log_level_t level = MS_LOG_WARN;

        memset(&sim, 0, sizeof(sim));
        sim.default_page_size = 100;
        sim.api_key = "test-key";
        sim.client_id = "test-client";
        sim.client_secret = "test-secret";
        sim.token_ttl_s = 3600;
        ms_sim_faults_init(&sim.faults);
        pthread_mutex_init(&sim.tok_lock, NULL);

        int ch;
        while ((ch = getopt_long(argc, argv, "s:f:g:p:b:h", opts, NULL)) != -1) {
                switch (ch) {
                case 's':
                        system = optarg;
                        break;
                case 'f':
                        file = optarg;
                        break;
                case 'g':
                        if (ms_sim_opt_i64("generate", optarg, 0, &gen_n) < 0)
                                goto out;
                        break;
                case OPT_SEED:
                        if (ms_sim_opt_i64("seed", optarg, INT64_MIN, &seed) < 0)
                                goto out;
                        break;
                case OPT_VARIANT:
                        if (ms_sim_opt_i64("generate-variant", optarg, INT64_MIN,
                                           &variant) < 0)
                                goto out;
                        break;
                case 'p':
                        if (ms_sim_opt_i64("port", optarg, 0, &port) < 0 || port > 65535)
                                goto out;
                        break;
                case 'b':
                        bind_addr = optarg;
                        break;
                case OPT_PAGE_SIZE:
                        if (ms_sim_opt_i64("page-size", optarg, 1, &v) < 0)
                                goto out;
                        sim.default_page_size =
                            v > MS_SIM_MAX_PAGE_SIZE ? MS_SIM_MAX_PAGE_SIZE : (int)v;
                        break;
                case OPT_LATENCY:
                        if (ms_sim_opt_i64("latency-ms", optarg, 0, &v) < 0 || v > 600000)
                                goto out;
                        sim.latency_ms = (int)v;
                        break;
                case OPT_API_KEY:
                        sim.api_key = optarg;
                        break;
                case OPT_CLIENT_ID:
                        sim.client_id = optarg;
                        break;
                case OPT_CLIENT_SECRET:
                        sim.client_secret = optarg;
                        break;
                case OPT_TOKEN_TTL:
                        if (ms_sim_opt_i64("token-ttl", optarg, 1, &sim.token_ttl_s) < 0)
                                goto out;
                        break;
                case OPT_FAULT:
                        if (ms_sim_faults_add(&sim.faults, optarg, err, sizeof(err)) <
                            0) {
                                fprintf(stderr, "membersync-sim: %s\n", err);
                                goto out;
                        }
                        break;
                case OPT_TLS_CERT:
                        tls_cert_path = optarg;
                        break;
                case OPT_TLS_KEY:
                        tls_key_path = optarg;
                        break;
                case OPT_LOG_LEVEL:
                        if (ms_log_level_parse(optarg, &level) < 0) {
                                fprintf(stderr, "membersync-sim: invalid --log-level\n");
                                goto out;
                        }
                        break;
                case 'h':
                        ms_sim_usage(stdout);
                        rc = 0;
                        goto out;
                default:
                        ms_sim_usage(stderr);
                        goto out;
                }
        }
        if (optind < argc || !system) {
                ms_sim_usage(stderr);
                goto out;
        }
        if (strcasecmp(system, "cornerstone") == 0) {
                sim.system = MS_SYSTEM_CORNERSTONE;
        } else if (strcasecmp(system, "consio") == 0) {
                sim.system = MS_SYSTEM_CONSIO;
        } else {
                fprintf(stderr, "membersync-sim: unknown --system '%s'\n", system);
                goto out;
        }
        if ((file != NULL) == (gen_n >= 0)) {
                fprintf(stderr,
                        "membersync-sim: give exactly one of --file or --generate\n");
                goto out;
        }
        if ((tls_cert_path != NULL) != (tls_key_path != NULL)) {
                fprintf(stderr, "membersync-sim: --tls-cert and --tls-key go together\n");
                goto out;
        }
        if (tls_cert_path) {
                tls_cert = ms_read_file(tls_cert_path, NULL);
                tls_key = ms_read_file(tls_key_path, NULL);
                if (!tls_cert || !tls_key) {
                        fprintf(stderr, "membersync-sim: cannot read TLS cert/key: %s\n",
                                strerror(errno));
                        goto out;
                }
        }
        ms_log_set_role("membersync-sim");
        ms_log_set_level(level);

        if (ms_sim_data_init(&sim.data, sim.system) < 0) {
                fprintf(stderr, "membersync-sim: cannot init dataset\n");
                goto out;
        }
        data_ok = 1;
        if (file) {
                if (ms_sim_data_load_file(&sim.data, file, err, sizeof(err)) < 0) {
                        fprintf(stderr, "membersync-sim: %s\n", err);
                        goto out;
                }
        } else {
                ms_sim_data_set_generator(&sim.data, gen_n, (uint64_t)seed, variant);
        }

        /* Block the stop signals before libmicrohttpd starts its threads so
         * that only sigwait below receives them. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        struct sockaddr_in sa4;
        struct sockaddr_in6 sa6;
        struct sockaddr *sa;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_AUTO | MHD_USE_ERROR_LOG;
        int v6 = 0;
        memset(&sa4, 0, sizeof(sa4));
        memset(&sa6, 0, sizeof(sa6));
        if (inet_pton(AF_INET, bind_addr, &sa4.sin_addr) == 1) {
                sa4.sin_family = AF_INET;
                sa4.sin_port = htons((uint16_t)port);
                sa = (struct sockaddr *)&sa4;
        } else if (inet_pton(AF_INET6, bind_addr, &sa6.sin6_addr) == 1) {
                sa6.sin6_family = AF_INET6;
                sa6.sin6_port = htons((uint16_t)port);
                sa = (struct sockaddr *)&sa6;
                flags |= MHD_USE_IPv6;
                v6 = 1;
        } else {
                fprintf(stderr, "membersync-sim: --bind needs a numeric address\n");
                goto out;
        }
        /* TLS options ride in an option array so that plain HTTP needs no
         * second MHD_start_daemon call. */
        struct MHD_OptionItem tls_opts[] = {
            {MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key},
            {MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert},
            {MHD_OPTION_END, 0, NULL},
        };
        if (tls_cert)
                flags |= MHD_USE_TLS;
        else
                tls_opts[0].option = MHD_OPTION_END;
        d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, ms_sim_handle, &sim,
                             MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_NOTIFY_COMPLETED,
                             ms_sim_completed, NULL, MHD_OPTION_NOTIFY_CONNECTION,
                             ms_sim_conn_notify, &sim, MHD_OPTION_EXTERNAL_LOGGER,
                             ms_sim_mhd_log, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned int)60, MHD_OPTION_ARRAY, tls_opts,
                             MHD_OPTION_END);
        if (!d) {
                fprintf(stderr, "membersync-sim: cannot listen on %s:%lld: %s\n",
                        bind_addr, (long long)port, strerror(errno));
                goto out;
        }
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        unsigned bound = info ? info->port : (unsigned)port;
        if (v6)
                printf("membersync-sim listening on [%s]:%u\n", bind_addr, bound);
        else
                printf("membersync-sim listening on %s:%u\n", bind_addr, bound);
        fflush(stdout);

        int sig = 0;
        sigwait(&set, &sig);
        ms_log_info("signal %d: stopping", sig);
        rc = 0;
out:
        atomic_store(&ms_sim_stop, 1);
        if (d)
                MHD_stop_daemon(d);
        if (data_ok)
                ms_sim_data_destroy(&sim.data);
        ms_sim_faults_destroy(&sim.faults);
        free(tls_cert);
        free(tls_key);
        free(sim.toks);
        pthread_mutex_destroy(&sim.tok_lock);
        return rc;
}
