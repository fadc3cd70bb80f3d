/* ms_health: Prometheus metrics registry and the health/metrics listener.
 * Contract and thread rules in ms_health.h. */
#include "ms_health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <microhttpd.h>

#include "ms_log.h"
#include "ms_util.h"

/* ---- registry ---- */

typedef enum { MS_MT_COUNTER, MS_MT_GAUGE, MS_MT_HISTOGRAM } ms_mtype_t;

typedef struct ms_series {
        char *labels; /* "" for none */
        double value; /* counter/gauge */
        /* histogram: counts[i] observations <= bounds[i] (not cumulative;
         * the renderer accumulates), counts[nbounds] those above all. */
        uint64_t *counts;
        double sum;
        uint64_t count;
        struct ms_series *next;
} ms_series_t;

typedef struct ms_family {
        char *name;
        char *help;
        ms_mtype_t type;
        double bounds[MS_METRICS_MAX_BUCKETS];
        size_t nbounds;
        ms_series_t *series;
        struct ms_family *next;
} ms_family_t;

/* One mutex for the whole registry: updates are short (a list walk and an
 * add), and a single lock keeps rendering a consistent snapshot. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static ms_family_t *reg_families;

static int valid_metric_name(const char *s)
{
        if (!s || !*s)
                return 0;
        for (const char *p = s; *p; p++) {
                int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                            *p == '_' || *p == ':';
                int digit = *p >= '0' && *p <= '9';
                if (!alpha && !(digit && p != s))
                        return 0;
        }
        return 1;
}

/* Label names are metric names without ':'. */
static int valid_label_name(const char *s, size_t n)
{
        if (n == 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
                int digit = c >= '0' && c <= '9';
                if (!alpha && !(digit && i > 0))
                        return 0;
        }
        return 1;
}

/* Checks that labels is `k="v"(,k="v")*` with only \\ \" \n escapes and no
 * raw newline, so that whatever a caller passes cannot break the exposition
 * text.  Histograms may not use `le`: the renderer adds it. */
static int valid_labels(const char *labels, int histogram)
{
        const char *p = labels;
        if (!p || !*p)
                return 1;
        for (;;) {
                const char *k = p;
                while (*p && *p != '=')
                        p++;
                if (*p != '=' || !valid_label_name(k, (size_t)(p - k)))
                        return 0;
                if (histogram && p - k == 2 && k[0] == 'l' && k[1] == 'e')
                        return 0;
                p++;
                if (*p++ != '"')
                        return 0;
                while (*p && *p != '"') {
                        if (*p == '\n')
                                return 0;
                        if (*p == '\\') {
                                p++;
                                if (*p != '\\' && *p != '"' && *p != 'n')
                                        return 0;
                        }
                        p++;
                }
                if (*p++ != '"')
                        return 0;
                if (!*p)
                        return 1;
                if (*p++ != ',')
                        return 0;
        }
}

static void series_free(ms_series_t *s)
{
        while (s) {
                ms_series_t *next = s->next;
                free(s->labels);
                free(s->counts);
                free(s);
                s = next;
        }
}

static void family_free(ms_family_t *f)
{
        if (!f)
                return;
        series_free(f->series);
        free(f->name);
        free(f->help);
        free(f);
}

/* Caller holds reg_lock.  Returns the family, creating it when new; NULL
 * when the name is registered with another type or memory ran out. */
static ms_family_t *family_get(const char *name, const char *help, ms_mtype_t type,
                               const double *bounds, size_t nbounds)
{
        ms_family_t *f;
        for (f = reg_families; f; f = f->next) {
                if (strcmp(f->name, name) == 0)
                        return f->type == type ? f : NULL;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return NULL;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        if (!f->name || !f->help) {
                family_free(f);
                return NULL;
        }
        f->type = type;
        if (type == MS_MT_HISTOGRAM) {
                memcpy(f->bounds, bounds, nbounds * sizeof(double));
                f->nbounds = nbounds;
        }
        f->next = reg_families;
        reg_families = f;
        return f;
}

/* Caller holds reg_lock.  Returns the series with these labels, creating it
 * at 0 when new. */
static ms_series_t *series_get(ms_family_t *f, const char *labels)
{
        if (!labels)
                labels = "";
        for (ms_series_t *s = f->series; s; s = s->next) {
                if (strcmp(s->labels, labels) == 0)
                        return s;
        }
        ms_series_t *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->labels = strdup(labels);
        if (f->type == MS_MT_HISTOGRAM)
                s->counts = calloc(f->nbounds + 1, sizeof(uint64_t));
        if (!s->labels || (f->type == MS_MT_HISTOGRAM && !s->counts)) {
                series_free(s);
                return NULL;
        }
        s->next = f->series;
        f->series = s;
        return s;
}

static const double default_bounds[] = MS_METRICS_DEFAULT_BUCKETS;

static int valid_bounds(const double *bounds, size_t n)
{
        if (n > MS_METRICS_MAX_BUCKETS || (n > 0 && !bounds))
                return 0;
        for (size_t i = 0; i < n; i++) {
                if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
                        return 0;
        }
        return 1;
}

/* The single update path: op 0 = add, 1 = set, 2 = observe. */
static int metric_update(const char *name, const char *help, const char *labels,
                         ms_mtype_t type, int op, double v)
{
        int rc = MS_ERR_GENERIC;
        if (!valid_metric_name(name) || !valid_labels(labels, type == MS_MT_HISTOGRAM) ||
            isnan(v))
                return MS_ERR_GENERIC;
        if (type == MS_MT_COUNTER && !(v >= 0))
                return MS_ERR_GENERIC;
        pthread_mutex_lock(&reg_lock);
        ms_family_t *f = family_get(name, help, type, default_bounds,
                                    sizeof(default_bounds) / sizeof(default_bounds[0]));
        ms_series_t *s = f ? series_get(f, labels) : NULL;
        if (!s)
                goto out;
        if (op == 0) {
                s->value += v;
        } else if (op == 1) {
                s->value = v;
        } else {
                size_t i = 0;
                while (i < f->nbounds && v > f->bounds[i])
                        i++;
                s->counts[i]++;
                s->sum += v;
                s->count++;
        }
        rc = 0;
out:
        pthread_mutex_unlock(&reg_lock);
        return rc;
}

int ms_metrics_counter_add(const char *name, const char *help, const char *labels,
                           double v)
{
        return metric_update(name, help, labels, MS_MT_COUNTER, 0, v);
}

int ms_metrics_gauge_set(const char *name, const char *help, const char *labels, double v)
{
        return metric_update(name, help, labels, MS_MT_GAUGE, 1, v);
}

int ms_metrics_gauge_add(const char *name, const char *help, const char *labels, double v)
{
        return metric_update(name, help, labels, MS_MT_GAUGE, 0, v);
}

int ms_metrics_histogram_observe(const char *name, const char *help, const char *labels,
                                 double v)
{
        return metric_update(name, help, labels, MS_MT_HISTOGRAM, 2, v);
}

int ms_metrics_histogram_define(const char *name, const char *help, const double *bounds,
                                size_t nbounds)
{
        int rc = MS_ERR_GENERIC;
        if (!valid_metric_name(name) || !valid_bounds(bounds, nbounds))
                return MS_ERR_GENERIC;
        pthread_mutex_lock(&reg_lock);
        ms_family_t *f = family_get(name, help, MS_MT_HISTOGRAM, bounds, nbounds);
        if (!f)
                goto out;
        /* An existing family keeps its buckets; redefining them would make
         * the series' counts meaningless, so only the same bounds pass. */
        if (f->nbounds != nbounds ||
            (nbounds && memcmp(f->bounds, bounds, nbounds * sizeof(double)) != 0))
                goto out;
        rc = 0;
out:
        pthread_mutex_unlock(&reg_lock);
        return rc;
}

const char *ms_metrics_labels(char *buf, size_t size, ...)
{
        va_list ap;
        size_t n = 0;
        const char *k;
        if (!buf || size == 0)
                return NULL;
        buf[0] = '\0';
        va_start(ap, size);
        while ((k = va_arg(ap, const char *)) != NULL) {
                const char *v = va_arg(ap, const char *);
                size_t klen = strlen(k);
                if (!valid_label_name(k, klen))
                        goto fail;
                /* worst case: separator, key, =", value doubled by escaping, " */
                if (n + (n ? 1 : 0) + klen + 2 >= size)
                        goto fail;
                if (n)
                        buf[n++] = ',';
                memcpy(buf + n, k, klen);
                n += klen;
                buf[n++] = '=';
                buf[n++] = '"';
                for (const char *p = v ? v : ""; *p; p++) {
                        const char *esc = *p == '\\'   ? "\\\\"
                                          : *p == '"'  ? "\\\""
                                          : *p == '\n' ? "\\n"
                                                       : NULL;
                        size_t add = esc ? 2 : 1;
                        if (n + add >= size)
                                goto fail;
                        if (esc) {
                                memcpy(buf + n, esc, 2);
                        } else {
                                buf[n] = *p;
                        }
                        n += add;
                }
                if (n + 1 >= size)
                        goto fail;
                buf[n++] = '"';
                buf[n] = '\0';
        }
        va_end(ap);
        return buf;
fail:
        va_end(ap);
        buf[0] = '\0';
        return NULL;
}

/* ---- rendering ---- */

typedef struct ms_sbuf {
        char *p;
        size_t len, cap;
        int oom;
} ms_sbuf_t;

static void sb_append(ms_sbuf_t *b, const char *s, size_t n)
{
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 1024;
                while (cap < b->len + n + 1)
                        cap *= 2;
                char *np = realloc(b->p, cap);
                if (!np) {
                        b->oom = 1;
                        return;
                }
                b->p = np;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void sb_puts(ms_sbuf_t *b, const char *s)
{
        sb_append(b, s, strlen(s));
}

/* Prometheus floats: the shortest form that reads back exactly (so 0.1 is
 * "0.1", not "0.10000000000000001"), and its spellings of the specials. */
static void sb_double(ms_sbuf_t *b, double v)
{
        char tmp[64];
        if (isnan(v)) {
                sb_puts(b, "NaN");
                return;
        }
        if (isinf(v)) {
                sb_puts(b, v > 0 ? "+Inf" : "-Inf");
                return;
        }
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (strtod(tmp, NULL) == v)
                        break;
        }
        sb_puts(b, tmp);
}

static void sb_u64(ms_sbuf_t *b, uint64_t v)
{
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
        sb_puts(b, tmp);
}

/* HELP text escapes backslash and newline (and nothing else). */
static void sb_help(ms_sbuf_t *b, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        sb_puts(b, "\\\\");
                else if (*s == '\n')
                        sb_puts(b, "\\n");
                else
                        sb_append(b, s, 1);
        }
}

/* name{labels[,extra]} with the braces left out when there is nothing in
 * them. */
static void sb_series_name(ms_sbuf_t *b, const char *name, const char *suffix,
                           const char *labels, const char *extra)
{
        sb_puts(b, name);
        sb_puts(b, suffix);
        int has_l = labels && *labels, has_e = extra && *extra;
        if (!has_l && !has_e)
                return;
        sb_puts(b, "{");
        if (has_l)
                sb_puts(b, labels);
        if (has_l && has_e)
                sb_puts(b, ",");
        if (has_e)
                sb_puts(b, extra);
        sb_puts(b, "}");
}

static int cmp_family(const void *a, const void *b)
{
        const ms_family_t *fa = *(const ms_family_t *const *)a;
        const ms_family_t *fb = *(const ms_family_t *const *)b;
        return strcmp(fa->name, fb->name);
}

static int cmp_series(const void *a, const void *b)
{
        const ms_series_t *sa = *(const ms_series_t *const *)a;
        const ms_series_t *sb = *(const ms_series_t *const *)b;
        return strcmp(sa->labels, sb->labels);
}

static void render_family(ms_sbuf_t *b, const ms_family_t *f, ms_series_t **ss, size_t ns)
{
        static const char *type_names[] = {"counter", "gauge", "histogram"};
        sb_puts(b, "# HELP ");
        sb_puts(b, f->name);
        sb_puts(b, " ");
        sb_help(b, f->help);
        sb_puts(b, "\n# TYPE ");
        sb_puts(b, f->name);
        sb_puts(b, " ");
        sb_puts(b, type_names[f->type]);
        sb_puts(b, "\n");
        for (size_t i = 0; i < ns; i++) {
                const ms_series_t *s = ss[i];
                if (f->type != MS_MT_HISTOGRAM) {
                        sb_series_name(b, f->name, "", s->labels, NULL);
                        sb_puts(b, " ");
                        sb_double(b, s->value);
                        sb_puts(b, "\n");
                        continue;
                }
                uint64_t cum = 0;
                for (size_t k = 0; k <= f->nbounds; k++) {
                        ms_sbuf_t le = {0};
                        cum += s->counts[k];
                        sb_puts(&le, "le=\"");
                        if (k < f->nbounds)
                                sb_double(&le, f->bounds[k]);
                        else
                                sb_puts(&le, "+Inf");
                        sb_puts(&le, "\"");
                        if (le.oom)
                                b->oom = 1;
                        sb_series_name(b, f->name, "_bucket", s->labels, le.p);
                        free(le.p);
                        sb_puts(b, " ");
                        sb_u64(b, cum);
                        sb_puts(b, "\n");
                }
                sb_series_name(b, f->name, "_sum", s->labels, NULL);
                sb_puts(b, " ");
                sb_double(b, s->sum);
                sb_puts(b, "\n");
                sb_series_name(b, f->name, "_count", s->labels, NULL);
                sb_puts(b, " ");
                sb_u64(b, s->count);
                sb_puts(b, "\n");
        }
}

char *ms_metrics_render(void)
{
        ms_sbuf_t b = {0};
        ms_family_t **fs = NULL;
        ms_series_t **ss = NULL;
        size_t nf = 0, ns_cap = 0;

        sb_puts(&b, "");
        pthread_mutex_lock(&reg_lock);
        for (ms_family_t *f = reg_families; f; f = f->next)
                nf++;
        fs = calloc(nf ? nf : 1, sizeof(*fs));
        if (!fs) {
                b.oom = 1;
                goto out;
        }
        nf = 0;
        for (ms_family_t *f = reg_families; f; f = f->next)
                fs[nf++] = f;
        qsort(fs, nf, sizeof(*fs), cmp_family);
        for (size_t i = 0; i < nf && !b.oom; i++) {
                size_t ns = 0;
                for (ms_series_t *s = fs[i]->series; s; s = s->next)
                        ns++;
                if (ns > ns_cap) {
                        ms_series_t **n = realloc(ss, ns * sizeof(*ss));
                        if (!n) {
                                b.oom = 1;
                                goto out;
                        }
                        ss = n;
                        ns_cap = ns;
                }
                ns = 0;
                for (ms_series_t *s = fs[i]->series; s; s = s->next)
                        ss[ns++] = s;
                qsort(ss, ns, sizeof(*ss), cmp_series);
                render_family(&b, fs[i], ss, ns);
        }
out:
        pthread_mutex_unlock(&reg_lock);
        free(fs);
        free(ss);
        if (b.oom) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

void ms_metrics_reset(void)
{
        pthread_mutex_lock(&reg_lock);
        ms_family_t *f = reg_families;
        reg_families = NULL;
        pthread_mutex_unlock(&reg_lock);
        while (f) {
                ms_family_t *next = f->next;
                family_free(f);
                f = next;
        }
}

/* ---- health object and listener ---- */

struct ms_health {
        struct MHD_Daemon *daemon; /* NULL without a listener */
        int port;
        /* Guards the checks; held while a check runs so that
         * ms_health_set_checks can promise no old check is still running. */
        pthread_mutex_t lock;
        ms_health_check_fn live;
        ms_health_check_fn ready;
        void *opaque;
};

int ms_health_new(ms_health_t **out, char *errstr, size_t errstr_size)
{
        ms_health_t *h = calloc(1, sizeof(*h));
        *out = NULL;
        if (!h) {
                snprintf(errstr, errstr_size, "health: out of memory");
                return MS_ERR_GENERIC;
        }
        pthread_mutex_init(&h->lock, NULL);
        *out = h;
        return 0;
}

void ms_health_destroy(ms_health_t *h)
{
        if (!h)
                return;
        if (h->daemon)
                MHD_stop_daemon(h->daemon);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

void ms_health_set_checks(ms_health_t *h, ms_health_check_fn live,
                          ms_health_check_fn ready, void *opaque)
{
        pthread_mutex_lock(&h->lock);
        h->live = live;
        h->ready = ready;
        h->opaque = opaque;
        pthread_mutex_unlock(&h->lock);
}

int ms_health_port(const ms_health_t *h)
{
        return h ? h->port : 0;
}

/* Runs one check; returns 1/0 and fills why.  Without a check (or without
 * h) liveness passes and readiness fails with "starting", as the header
 * promises. */
static int run_check(ms_health_t *h, int readiness, char *why, size_t why_size)
{
        int ok;
        why[0] = '\0';
        if (!h) {
                snprintf(why, why_size, "%s", readiness ? "starting" : "");
                return readiness ? 0 : 1;
        }
        pthread_mutex_lock(&h->lock);
        ms_health_check_fn fn = readiness ? h->ready : h->live;
        if (!fn) {
                ok = readiness ? 0 : 1;
                snprintf(why, why_size, "%s", readiness ? "starting" : "");
        } else {
                ok = fn(h->opaque, why, why_size) ? 1 : 0;
        }
        pthread_mutex_unlock(&h->lock);
        why[why_size - 1] = '\0';
        if (!ok && !why[0])
                snprintf(why, why_size, "%s", readiness ? "not ready" : "not live");
        return ok;
}

static char *status_json(int ok, const char *why)
{
        json_t *o = ok ? json_pack("{s:s}", "status", "ok")
                       : json_pack("{s:s,s:s}", "status", "unavailable", "reason", why);
        if (!o)
                return NULL;
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s)
                return NULL;
        /* A trailing newline makes curl output in a terminal readable. */
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (!t) {
                free(s);
                return NULL;
        }
        t[n] = '\n';
        t[n + 1] = '\0';
        return t;
}

int ms_health_answer(ms_health_t *h, const char *path, unsigned *status,
                     const char **content_type, char **body)
{
        char why[256];
        size_t plen = strcspn(path, "?");
        int live = plen == 6 && strncmp(path, "/livez", 6) == 0;
        int ready = plen == 7 && strncmp(path, "/readyz", 7) == 0;
        int metrics = plen == 8 && strncmp(path, "/metrics", 8) == 0;
        if (!live && !ready && !metrics)
                return 0;
        if (metrics) {
                *body = ms_metrics_render();
                *status = 200;
                *content_type = "text/plain; version=0.0.4; charset=utf-8";
        } else {
                int ok = run_check(h, ready, why, sizeof(why));
                *body = status_json(ok, why);
                *status = ok ? 200 : 503;
                *content_type = "application/json";
        }
        return *body ? 1 : MS_ERR_GENERIC;
}

static enum MHD_Result health_reply(struct MHD_Connection *c, unsigned status,
                                    const char *ctype, char *body)
{
        struct MHD_Response *r =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        /* Probes and scrapes must see the state now, never a cached copy. */
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        enum MHD_Result ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result health_handle(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
        ms_health_t *h = cls;
        unsigned status = 0;
        const char *ctype = NULL;
        char *body = NULL;
        (void)version;
        (void)upload_data;
        /* The first call per request carries only the headers. */
        if (*con_cls == NULL) {
                *con_cls = (void *)1;
                return MHD_YES;
        }
        /* Any request body is read and dropped; answer on the final call. */
        if (*upload_data_size) {
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
                char *b = strdup("method not allowed\n");
                if (!b)
                        return MHD_NO;
                return health_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", b);
        }
        int rc = ms_health_answer(h, url, &status, &ctype, &body);
        if (rc < 0)
                return MHD_NO;
        if (rc == 0) {
                char *b = strdup("not found\n");
                if (!b)
                        return MHD_NO;
                return health_reply(c, MHD_HTTP_NOT_FOUND, "text/plain", b);
        }
        return health_reply(c, status, ctype, body);
}

static void health_mhd_log(void *cls, const char *fmt, va_list ap)
{
        char msg[256];
        (void)cls;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        msg[strcspn(msg, "\n")] = '\0';
        ms_log_warn("health listener: %s", msg);
}

int ms_health_start(int port, const char *bind_addr, ms_health_t **out, char *errstr,
                    size_t errstr_size)
{
        ms_health_t *h = NULL;
        struct sockaddr_in sa4;
        struct sockaddr_in6 sa6;
        struct sockaddr *sa;
        unsigned flags =
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
        int rc = MS_ERR_GENERIC;

        *out = NULL;
        if (!bind_addr || !*bind_addr)
                bind_addr = "0.0.0.0";
        if (port < 0 || port > 65535) {
                snprintf(errstr, errstr_size, "health: port %d out of range", port);
                goto out;
        }
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
        } else {
                snprintf(errstr, errstr_size,
                         "health: bind address \"%s\" is not a numeric IPv4/IPv6 address",
                         bind_addr);
                goto out;
        }
        if (ms_health_new(&h, errstr, errstr_size))
                goto out;
        /* The logger goes first so that MHD reports option errors through it.
         * One internal thread is enough: every answer is small and built
         * from memory.  The connection limit and timeout keep a stuck or
         * hostile client from holding the listener. */
        errno = 0;
        h->daemon = MHD_start_daemon(
            flags, (uint16_t)port, NULL, NULL, health_handle, h,
            MHD_OPTION_EXTERNAL_LOGGER, health_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, sa,
            MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned int)10, MHD_OPTION_END);
        if (!h->daemon) {
                snprintf(errstr, errstr_size, "health: cannot listen on %s port %d: %s",
                         bind_addr, port,
                         errno ? strerror(errno) : "libmicrohttpd failed");
                goto out;
        }
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
        h->port = info && info->port ? info->port : port;
        rc = 0;
        *out = h;
        h = NULL;
out:
        ms_health_destroy(h);
        return rc;
}

void ms_health_stop(ms_health_t *h)
{
        ms_health_destroy(h);
}

/* ---- heartbeat ---- */

void ms_health_beat(ms_health_beat_t *b)
{
        int64_t now = ms_mono_ms();
        /* 0 means "never": a monotonic clock that reads 0 still counts. */
        atomic_store_explicit(&b->last_mono_ms, now > 0 ? now : 1, memory_order_relaxed);
}

int ms_health_beat_check(ms_health_beat_t *b, int64_t bound_ms, char *why,
                         size_t why_size)
{
        int64_t last = atomic_load_explicit(&b->last_mono_ms, memory_order_relaxed);
        if (last == 0) {
                snprintf(why, why_size, "loop has not polled yet");
                return 0;
        }
        int64_t age = ms_mono_ms() - last;
        if (age > bound_ms) {
                snprintf(why, why_size, "loop last polled %lld ms ago (bound %lld ms)",
                         (long long)age, (long long)bound_ms);
                return 0;
        }
        return 1;
}
