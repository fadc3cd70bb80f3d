/* ms_gateway: HTTP mechanics shared by both member systems.  See
 * ms_gateway.h for the contract and ms_api_proto.h for the split between
 * this file and the per-system protocols. */
#include "ms_gateway.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ms_api_proto.h"
#include "ms_log.h"
#include "ms_util.h"

/* Defaults for configuration fields left at zero, so that a caller who fills
 * only the essentials still gets bounded waits and sizes. */
#define GW_DEF_PAGE_SIZE       100
#define GW_DEF_CONNECT_TO_MS   10000L
#define GW_DEF_TIMEOUT_MS      60000L
#define GW_DEF_BACKOFF_BASE_MS 500L
#define GW_DEF_BACKOFF_MAX_MS  30000L
#define GW_DEF_RETRY_AFTER_CAP 60000L
#define GW_DEF_MAX_RESPONSE    (64u * 1024u * 1024u)

/* Waits are cut into slices of at most this length so that idle_cb runs
 * often enough for a Kafka consumer's poll interval. */
#define GW_WAIT_SLICE_MS 200
/* During a transfer idle_cb runs at most this often (and at least every
 * GW_WAIT_SLICE_MS thanks to the poll timeout). */
#define GW_XFER_IDLE_MS 100

struct ms_gateway {
        ms_gateway_conf_t conf; /* string fields point at the copies below */
        char *base_url;
        char *api_key;
        char *client_id;
        char *client_secret;
        char *ca_file;

        const ms_api_proto_t *proto;
        void *proto_state;

        CURLM *multi; /* owns the connection cache: keep-alive across requests */
        CURL *easy;

        /* Response of the transfer in flight. */
        char *buf;
        size_t len;
        size_t cap;
        int too_large;

        ms_gateway_stats_t stats;
        uint64_t rng;
        int64_t next_request_ms; /* rate cap: earliest start of the next request */

        /* Cursor-loop detection: 64-bit hashes of every position fetched,
         * open addressing (0 marks an empty slot), and the hash of the last
         * page's items to catch a page that does not advance. */
        uint64_t *pos_set;
        size_t pos_cap;
        size_t pos_count;
        uint64_t last_items_hash;
};

static pthread_once_t gw_curl_once = PTHREAD_ONCE_INIT;
static CURLcode gw_curl_init_rc = CURLE_OK;

static void gw_curl_global_init(void)
{
        gw_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *gw_strdup_opt(const char *s, int *oom)
{
        if (!s)
                return NULL;
        char *d = strdup(s);
        if (!d)
                *oom = 1;
        return d;
}

/* Frees a string that may hold a secret, wiping it first so that it does not
 * linger in freed heap memory (core dumps). */
static void gw_free_secret(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static uint64_t gw_splitmix64(uint64_t *state)
{
        uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
}

static uint64_t gw_fnv1a(uint64_t h, const void *data, size_t len)
{
        const unsigned char *p = data;
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001B3ull;
        }
        return h;
}

#define GW_FNV_OFFSET 0xCBF29CE484222325ull

static uint64_t gw_pos_hash(const char *pos)
{
        uint64_t h = gw_fnv1a(GW_FNV_OFFSET, pos ? pos : "", pos ? strlen(pos) : 0);
        return h ? h : 1; /* 0 marks an empty slot */
}

static int gw_pos_contains(const ms_gateway_t *gw, uint64_t h)
{
        if (!gw->pos_cap)
                return 0;
        for (size_t i = h & (gw->pos_cap - 1);; i = (i + 1) & (gw->pos_cap - 1)) {
                if (gw->pos_set[i] == 0)
                        return 0;
                if (gw->pos_set[i] == h)
                        return 1;
        }
}

static int gw_pos_add(ms_gateway_t *gw, uint64_t h)
{
        if (gw_pos_contains(gw, h))
                return 0;
        if ((gw->pos_count + 1) * 2 > gw->pos_cap) {
                size_t ncap = gw->pos_cap ? gw->pos_cap * 2 : 64;
                uint64_t *nset = calloc(ncap, sizeof(*nset));
                if (!nset)
                        return -1;
                for (size_t i = 0; i < gw->pos_cap; i++) {
                        uint64_t v = gw->pos_set[i];
                        if (!v)
                                continue;
                        size_t j = v & (ncap - 1);
                        while (nset[j])
                                j = (j + 1) & (ncap - 1);
                        nset[j] = v;
                }
                free(gw->pos_set);
                gw->pos_set = nset;
                gw->pos_cap = ncap;
        }
        size_t j = h & (gw->pos_cap - 1);
        while (gw->pos_set[j])
                j = (j + 1) & (gw->pos_cap - 1);
        gw->pos_set[j] = h;
        gw->pos_count++;
        return 0;
}

static int gw_hash_dump_cb(const char *buffer, size_t size, void *data)
{
        uint64_t *h = data;
        *h = gw_fnv1a(*h, buffer, size);
        return 0;
}

/* Fingerprint of a page for the "did not advance" check: the count and the
 * first and last records.  A page that repeats the previous one matches;
 * hashing every record cost 6% of the connector's CPU for nothing more. */
/* Length of the well-formed UTF-8 sequence at s (1..4), or 0. */
static size_t gw_utf8_len(const unsigned char *s, size_t len)
{
        unsigned c = s[0];
        size_t n = c < 0x80   ? 1
                   : c < 0xC2 ? 0
                   : c < 0xE0 ? 2
                   : c < 0xF0 ? 3
                   : c < 0xF5 ? 4
                              : 0;
        if (n == 0 || n > len)
                return 0;
        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        if (n == 3) {
                unsigned v = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
                if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))
                        return 0;
        } else if (n == 4) {
                unsigned v = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) |
                             ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
                if (v < 0x10000 || v > 0x10FFFF)
                        return 0;
        }
        return n;
}

/* A member system that sends one record with bytes that are not UTF-8
 * (Latin-1 "ø", say) makes the whole body unparseable for jansson, which
 * would fail every retry and the job.  Replacing each bad byte with U+FFFD
 * lets the page parse; the record rules treat U+FFFD as the invalid text it
 * stands for (MALFORMED, or MISSING_ID in the id), so only that record is
 * skipped.  Returns NULL when the body was valid UTF-8 or still does not
 * parse (then it is a truncated or broken body, retried as before). */
static json_t *gw_load_repaired(const char *buf, size_t len, json_error_t *jerr)
{
        const unsigned char *p = (const unsigned char *)buf;
        size_t bad = 0;
        for (size_t i = 0; i < len;) {
                size_t n = gw_utf8_len(p + i, len - i);
                if (n == 0) {
                        bad++;
                        i++;
                } else {
                        i += n;
                }
        }
        if (bad == 0)
                return NULL;
        char *fixed = malloc(len + bad * 2 + 1);
        if (!fixed)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < len;) {
                size_t n = gw_utf8_len(p + i, len - i);
                if (n == 0) {
                        memcpy(fixed + o, "\xEF\xBF\xBD", 3);
                        o += 3;
                        i++;
                } else {
                        memcpy(fixed + o, p + i, n);
                        o += n;
                        i += n;
                }
        }
        json_t *body = json_loadb(fixed, o, JSON_ALLOW_NUL, jerr);
        free(fixed);
        if (body)
                ms_log_warn(
                    "member API body had %zu byte(s) that are not UTF-8; replaced so "
                    "the page parses (those records become MALFORMED)",
                    bad);
        return body;
}

static uint64_t gw_items_hash(const json_t *items)
{
        uint64_t h = GW_FNV_OFFSET;
        size_t n = json_array_size(items);
        char count[24];
        int len = snprintf(count, sizeof(count), "%zu:", n);
        gw_hash_dump_cb(count, (size_t)len, &h);
        if (n > 0) {
                json_dump_callback(json_array_get(items, 0), gw_hash_dump_cb, &h,
                                   JSON_COMPACT | JSON_ENCODE_ANY);
                json_dump_callback(json_array_get(items, n - 1), gw_hash_dump_cb, &h,
                                   JSON_COMPACT | JSON_ENCODE_ANY);
        }
        return h;
}

static size_t gw_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        ms_gateway_t *gw = userdata;
        size_t n = size * nmemb;
        if (gw->len + n > gw->conf.max_response_bytes) {
                /* Returning a short count makes libcurl abort the transfer
                 * (CURLE_WRITE_ERROR): a body over the cap is never buffered. */
                gw->too_large = 1;
                return 0;
        }
        if (gw->len + n + 1 > gw->cap) {
                size_t ncap = gw->cap ? gw->cap : 16384;
                while (ncap < gw->len + n + 1)
                        ncap *= 2;
                char *nb = realloc(gw->buf, ncap);
                if (!nb)
                        return 0;
                gw->buf = nb;
                gw->cap = ncap;
        }
        memcpy(gw->buf + gw->len, ptr, n);
        gw->len += n;
        gw->buf[gw->len] = '\0';
        return n;
}

/* Sleeps ms in slices, calling idle_cb before each slice.  Returns 0 or
 * MS_ERR_GENERIC when idle_cb asked to cancel. */
static int gw_wait(ms_gateway_t *gw, int64_t ms, char *errstr, size_t errstr_size)
{
        if (ms <= 0)
                return 0;
        int64_t end = ms_mono_ms() + ms;
        for (;;) {
                if (gw->conf.idle_cb && gw->conf.idle_cb(gw->conf.idle_opaque)) {
                        snprintf(errstr, errstr_size, "cancelled");
                        return MS_ERR_GENERIC;
                }
                int64_t now = ms_mono_ms();
                if (now >= end)
                        return 0;
                int64_t slice = end - now;
                ms_sleep_ms(slice < GW_WAIT_SLICE_MS ? slice : GW_WAIT_SLICE_MS);
        }
}

/* Enforces max_rps as a minimum interval between request starts (a token
 * bucket with a burst of one), which is what a member system's rate limit
 * expects from a single sequential client. */
static int gw_rate_wait(ms_gateway_t *gw, char *errstr, size_t errstr_size)
{
        if (gw->conf.max_rps <= 0)
                return 0;
        int64_t now = ms_mono_ms();
        if (now < gw->next_request_ms) {
                int rc = gw_wait(gw, gw->next_request_ms - now, errstr, errstr_size);
                if (rc)
                        return rc;
                now = ms_mono_ms();
        }
        int64_t interval = (int64_t)(1000.0 / gw->conf.max_rps + 0.5);
        gw->next_request_ms = now + interval;
        return 0;
}

/* Runs the prepared easy handle on the gateway's multi handle so that
 * idle_cb keeps running (and can cancel) while a slow server answers. */
static CURLcode gw_perform(ms_gateway_t *gw, int *cancelled)
{
        CURLcode res = CURLE_OK;
        *cancelled = 0;
        if (curl_multi_add_handle(gw->multi, gw->easy) != CURLM_OK)
                return CURLE_FAILED_INIT;
        int64_t last_idle = ms_mono_ms();
        int running = 1;
        for (;;) {
                if (curl_multi_perform(gw->multi, &running) != CURLM_OK) {
                        res = CURLE_FAILED_INIT;
                        break;
                }
                if (!running)
                        break;
                if (curl_multi_poll(gw->multi, NULL, 0, GW_XFER_IDLE_MS, NULL) !=
                    CURLM_OK) {
                        res = CURLE_FAILED_INIT;
                        break;
                }
                int64_t now = ms_mono_ms();
                if (gw->conf.idle_cb && now - last_idle >= GW_XFER_IDLE_MS) {
                        last_idle = now;
                        if (gw->conf.idle_cb(gw->conf.idle_opaque)) {
                                *cancelled = 1;
                                break;
                        }
                }
        }
        if (!*cancelled && running == 0) {
                CURLMsg *msg;
                int queued;
                while ((msg = curl_multi_info_read(gw->multi, &queued))) {
                        if (msg->msg == CURLMSG_DONE && msg->easy_handle == gw->easy)
                                res = msg->data.result;
                }
        }
        curl_multi_remove_handle(gw->multi, gw->easy);
        return res;
}

/* Transport failures worth another attempt: the server or the path to it
 * may recover.  TLS verification failures and malformed URLs are not. */
static int gw_curl_retryable(CURLcode res)
{
        switch (res) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_BAD_CONTENT_ENCODING:
                return 1;
        default:
                return 0;
        }
}

/* Retry-After as milliseconds from now (delta-seconds or HTTP-date), or -1
 * when absent or unreadable. */
static int64_t gw_retry_after_ms(ms_gateway_t *gw)
{
        struct curl_header *h = NULL;
        if (curl_easy_header(gw->easy, "Retry-After", 0, CURLH_HEADER, -1, &h) !=
                CURLHE_OK ||
            !h || !h->value)
                return -1;
        const char *v = h->value;
        while (*v == ' ' || *v == '\t')
                v++;
        if (*v >= '0' && *v <= '9') {
                char *end;
                errno = 0;
                long long secs = strtoll(v, &end, 10);
                while (*end == ' ' || *end == '\t')
                        end++;
                if (errno || *end)
                        return -1;
                if (secs > 86400LL * 365)
                        secs = 86400LL * 365;
                return (int64_t)secs * 1000;
        }
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1)
                return -1;
        int64_t ms = (int64_t)t * 1000 - ms_now_ms();
        return ms < 0 ? 0 : ms;
}

static int64_t gw_backoff_ms(ms_gateway_t *gw, int attempt)
{
        /* Full jitter: uniform in [0, min(max, base * 2^attempt)], which
         * spreads clients that failed together (AWS architecture blog). */
        int64_t ceil_ms = gw->conf.backoff_base_ms;
        for (int i = 0; i < attempt && ceil_ms < gw->conf.backoff_max_ms; i++)
                ceil_ms *= 2;
        if (ceil_ms > gw->conf.backoff_max_ms)
                ceil_ms = gw->conf.backoff_max_ms;
        if (ceil_ms <= 0)
                return 0;
        return (int64_t)(gw_splitmix64(&gw->rng) % (uint64_t)(ceil_ms + 1));
}

int ms_gateway_call(ms_gateway_t *gw, const ms_gw_request_t *req, char *errstr,
                    size_t errstr_size)
{
        int attempt = 0;   /* retries used so far */
        int refreshed = 0; /* credentials refreshed once during this call */
        int rc = 0;
        struct curl_slist *hdrs = NULL;
        json_t *body = NULL;

        for (;;) {
                char reason[96] = "";
                long status = 0;
                int64_t wait_ms = -1;
                int fail_rc = MS_ERR_RETRIES; /* code if this was the last try */

                curl_slist_free_all(hdrs);
                hdrs = curl_slist_append(NULL, "Accept: application/json");
                if (!hdrs) {
                        snprintf(errstr, errstr_size, "out of memory");
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
                /* Credentials first: a token fetch is a request of its own
                 * and must not reuse this call's prepared handle. */
                if (req->flags & MS_GW_AUTH) {
                        rc = gw->proto->add_auth(gw, &hdrs, errstr, errstr_size);
                        if (rc)
                                goto out;
                }
                rc = gw_rate_wait(gw, errstr, errstr_size);
                if (rc)
                        goto out;

                CURL *e = gw->easy;
                curl_easy_setopt(e, CURLOPT_URL, req->url);
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
                if (req->form_body) {
                        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->form_body);
                        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
                                         (long)strlen(req->form_body));
                } else {
                        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
                }
                gw->len = 0;
                gw->too_large = 0;
                if (gw->buf)
                        gw->buf[0] = '\0';

                int cancelled = 0;
                CURLcode res = gw_perform(gw, &cancelled);
                gw->stats.requests++;
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                gw->stats.responses_by_class[status >= 100 && status < 600 ? status / 100
                                                                           : 0]++;

                if (cancelled) {
                        snprintf(errstr, errstr_size, "cancelled");
                        rc = MS_ERR_GENERIC;
                        goto out;
                }
                if (gw->too_large || res == CURLE_FILESIZE_EXCEEDED) {
                        snprintf(errstr, errstr_size,
                                 "%s: response larger than %zu bytes", gw->proto->name,
                                 gw->conf.max_response_bytes);
                        rc = MS_ERR_TOO_LARGE;
                        goto out;
                }
                if (res != CURLE_OK) {
                        if (!gw_curl_retryable(res)) {
                                snprintf(errstr, errstr_size, "%s: transport error: %s",
                                         gw->proto->name, curl_easy_strerror(res));
                                rc = MS_ERR_HTTP;
                                goto out;
                        }
                        snprintf(reason, sizeof(reason), "%s (no response)",
                                 curl_easy_strerror(res));
                } else if (status >= 200 && status < 300) {
                        json_error_t jerr;
                        json_decref(body);
                        body = json_loadb(gw->buf ? gw->buf : "", gw->len, JSON_ALLOW_NUL,
                                          &jerr);
                        if (!body && gw->buf)
                                body = gw_load_repaired(gw->buf, gw->len, &jerr);
                        if (!body) {
                                /* Most likely a body cut off on the way. */
                                snprintf(reason, sizeof(reason),
                                         "HTTP %ld, unparseable JSON body", status);
                                fail_rc = MS_ERR_BAD_PAGE;
                        } else {
                                rc = req->accept ? req->accept(body, req->accept_opaque,
                                                               errstr, errstr_size)
                                                 : 0;
                                if (rc == 0)
                                        goto out;
                                if (rc != MS_ERR_BAD_PAGE)
                                        goto out;
                                rc = 0;
                                snprintf(reason, sizeof(reason),
                                         "HTTP %ld, body is not the documented shape",
                                         status);
                                fail_rc = MS_ERR_BAD_PAGE;
                        }
                } else if (status == 401 || status == 403 ||
                           (status == 400 && (req->flags & MS_GW_400_IS_AUTH))) {
                        if ((req->flags & MS_GW_AUTH) && !refreshed) {
                                refreshed = 1;
                                rc = gw->proto->refresh_auth(gw, errstr, errstr_size);
                                if (rc)
                                        goto out;
                                ms_log_info("gateway %s: HTTP %ld, credentials refreshed",
                                            gw->proto->name, status);
                                continue; /* not a retry: new credentials */
                        }
                        snprintf(errstr, errstr_size,
                                 "%s: credentials refused (HTTP %ld)", gw->proto->name,
                                 status);
                        rc = MS_ERR_AUTH;
                        goto out;
                } else if (status == 429) {
                        snprintf(reason, sizeof(reason), "HTTP 429");
                        wait_ms = gw_retry_after_ms(gw);
                        if (wait_ms > gw->conf.retry_after_cap_ms)
                                wait_ms = gw->conf.retry_after_cap_ms;
                } else if (status >= 500 || status == 408) {
                        snprintf(reason, sizeof(reason), "HTTP %ld", status);
                        /* A 503 may say when to come back (RFC 9110). */
                        if (status == 503) {
                                wait_ms = gw_retry_after_ms(gw);
                                if (wait_ms > gw->conf.retry_after_cap_ms)
                                        wait_ms = gw->conf.retry_after_cap_ms;
                        }
                } else {
                        snprintf(errstr, errstr_size, "%s: unexpected HTTP %ld",
                                 gw->proto->name, status);
                        rc = MS_ERR_HTTP;
                        goto out;
                }

                /* A retryable failure. */
                if (attempt >= gw->conf.max_retries) {
                        snprintf(errstr, errstr_size,
                                 "%s: giving up after %d retries: %s", gw->proto->name,
                                 attempt, reason);
                        rc = fail_rc;
                        goto out;
                }
                if (wait_ms < 0)
                        wait_ms = gw_backoff_ms(gw, attempt);
                attempt++;
                gw->stats.retries++;
                ms_log_warn("gateway %s: %s, retry %d/%d in %lld ms", gw->proto->name,
                            reason, attempt, gw->conf.max_retries, (long long)wait_ms);
                rc = gw_wait(gw, wait_ms, errstr, errstr_size);
                if (rc)
                        goto out;
        }
out:
        json_decref(body);
        curl_slist_free_all(hdrs);
        /* Detach the header list that was just freed and the caller's form
         * body (it may hold a secret and is about to be freed). */
        curl_easy_setopt(gw->easy, CURLOPT_HTTPHEADER, NULL);
        if (req->form_body) {
                curl_easy_setopt(gw->easy, CURLOPT_POSTFIELDS, NULL);
                curl_easy_setopt(gw->easy, CURLOPT_HTTPGET, 1L);
        }
        return rc;
}

const ms_gateway_conf_t *ms_gateway_conf(const ms_gateway_t *gw)
{
        return &gw->conf;
}

void *ms_gateway_proto_state(ms_gateway_t *gw)
{
        return gw->proto_state;
}

char *ms_gateway_escape(const char *s)
{
        /* The handle argument is unused by libcurl >= 7.82. */
        char *esc = curl_easy_escape(NULL, s, 0);
        if (!esc)
                return NULL;
        char *out = strdup(esc);
        curl_free(esc);
        return out;
}

int ms_gateway_new(const ms_gateway_conf_t *conf, ms_gateway_t **out, char *errstr,
                   size_t errstr_size)
{
        int rc = MS_ERR_GENERIC;
        int oom = 0;
        ms_gateway_t *gw = NULL;

        *out = NULL;
        pthread_once(&gw_curl_once, gw_curl_global_init);
        if (gw_curl_init_rc != CURLE_OK) {
                snprintf(errstr, errstr_size, "curl_global_init failed: %s",
                         curl_easy_strerror(gw_curl_init_rc));
                goto out;
        }
        if (!conf->base_url || !*conf->base_url) {
                snprintf(errstr, errstr_size, "gateway: base_url is required");
                rc = MS_ERR_CONFIG;
                goto out;
        }
        gw = calloc(1, sizeof(*gw));
        if (!gw) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
        }
        gw->conf = *conf;
        gw->base_url = gw_strdup_opt(conf->base_url, &oom);
        /* A trailing slash would double up in every path. */
        if (gw->base_url) {
                size_t n = strlen(gw->base_url);
                while (n > 0 && gw->base_url[n - 1] == '/')
                        gw->base_url[--n] = '\0';
        }
        gw->api_key = gw_strdup_opt(conf->api_key, &oom);
        gw->client_id = gw_strdup_opt(conf->client_id, &oom);
        gw->client_secret = gw_strdup_opt(conf->client_secret, &oom);
        gw->ca_file = gw_strdup_opt(conf->ca_file, &oom);
        if (oom) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
        }
        gw->conf.base_url = gw->base_url;
        gw->conf.api_key = gw->api_key;
        gw->conf.client_id = gw->client_id;
        gw->conf.client_secret = gw->client_secret;
        gw->conf.ca_file = gw->ca_file;
        if (gw->conf.page_size <= 0)
                gw->conf.page_size = GW_DEF_PAGE_SIZE;
        if (gw->conf.connect_timeout_ms <= 0)
                gw->conf.connect_timeout_ms = GW_DEF_CONNECT_TO_MS;
        if (gw->conf.timeout_ms <= 0)
                gw->conf.timeout_ms = GW_DEF_TIMEOUT_MS;
        if (gw->conf.max_retries < 0)
                gw->conf.max_retries = 0;
        if (gw->conf.backoff_base_ms <= 0)
                gw->conf.backoff_base_ms = GW_DEF_BACKOFF_BASE_MS;
        if (gw->conf.backoff_max_ms <= 0)
                gw->conf.backoff_max_ms = GW_DEF_BACKOFF_MAX_MS;
        if (gw->conf.backoff_max_ms < gw->conf.backoff_base_ms)
                gw->conf.backoff_max_ms = gw->conf.backoff_base_ms;
        if (gw->conf.retry_after_cap_ms <= 0)
                gw->conf.retry_after_cap_ms = GW_DEF_RETRY_AFTER_CAP;
        if (gw->conf.max_response_bytes == 0)
                gw->conf.max_response_bytes = GW_DEF_MAX_RESPONSE;

        switch (conf->system) {
        case MS_SYSTEM_CORNERSTONE:
                gw->proto = &ms_cornerstone_api_proto;
                break;
        case MS_SYSTEM_CONSIO:
                gw->proto = &ms_consio_api_proto;
                break;
        default:
                snprintf(errstr, errstr_size, "gateway: unknown system %d",
                         (int)conf->system);
                rc = MS_ERR_CONFIG;
                goto out;
        }

        uint64_t seed = (uint64_t)ms_now_ms() ^ (uint64_t)(uintptr_t)gw;
        gw->rng = gw_splitmix64(&seed);

        gw->multi = curl_multi_init();
        gw->easy = curl_easy_init();
        if (!gw->multi || !gw->easy) {
                snprintf(errstr, errstr_size, "curl init failed");
                goto out;
        }
        CURL *e = gw->easy;
        /* No signals: the gateway runs in threads of a multi-threaded role. */
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, gw_write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, gw);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, gw->conf.connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, gw->conf.timeout_ms);
        /* TLS verification is libcurl's default; set it explicitly so that no
         * later edit can quietly turn it off. */
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (gw->ca_file && *gw->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, gw->ca_file);
        /* Credentials ride on every request: no redirects (they could carry
         * the API key to another host) and no protocol but HTTP(S). */
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_USERAGENT, "membersync/1");
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        /* Lets libcurl refuse early when Content-Length already says too big;
         * chunked bodies are caught by the write callback. */
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                         (curl_off_t)gw->conf.max_response_bytes);

        rc = gw->proto->state_new(&gw->conf, &gw->proto_state, errstr, errstr_size);
        if (rc)
                goto out;
        *out = gw;
        gw = NULL;
        rc = 0;
out:
        ms_gateway_destroy(gw);
        return rc;
}

void ms_gateway_destroy(ms_gateway_t *gw)
{
        if (!gw)
                return;
        if (gw->proto && gw->proto_state)
                gw->proto->state_destroy(gw->proto_state);
        if (gw->easy)
                curl_easy_cleanup(gw->easy);
        if (gw->multi)
                curl_multi_cleanup(gw->multi);
        free(gw->base_url);
        gw_free_secret(gw->api_key);
        free(gw->client_id);
        gw_free_secret(gw->client_secret);
        free(gw->ca_file);
        free(gw->buf);
        free(gw->pos_set);
        free(gw);
}

typedef struct gw_page_ctx {
        ms_gateway_t *gw;
        const char *pos;
        ms_page_t page;
} gw_page_ctx_t;

static int gw_accept_page(json_t *body, void *opaque, char *errstr, size_t errstr_size)
{
        gw_page_ctx_t *ctx = opaque;
        /* A retry after a bad shape starts from an empty page again. */
        ms_page_clear(&ctx->page);
        return ctx->gw->proto->parse_page(ctx->gw, ctx->pos, body, &ctx->page, errstr,
                                          errstr_size);
}

int ms_gateway_fetch_page(ms_gateway_t *gw, const char *pos, ms_page_t *page,
                          char *errstr, size_t errstr_size)
{
        int rc;
        char *url = NULL;
        gw_page_ctx_t ctx = {.gw = gw, .pos = NULL, .page = {NULL, -1, NULL}};

        memset(page, 0, sizeof(*page));
        page->total_count = -1;
        if (pos && !*pos)
                pos = NULL;
        ctx.pos = pos;

        url = gw->proto->page_url(gw, pos, errstr, errstr_size);
        if (!url) {
                rc = MS_ERR_GENERIC;
                goto out;
        }
        ms_gw_request_t req = {
            .method = "GET",
            .url = url,
            .flags = MS_GW_AUTH,
            .accept = gw_accept_page,
            .accept_opaque = &ctx,
        };
        int64_t t0 = ms_mono_ms();
        rc = ms_gateway_call(gw, &req, errstr, errstr_size);
        if (rc)
                goto out;

        uint64_t ph = gw_pos_hash(pos);
        if (gw_pos_add(gw, ph) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                rc = MS_ERR_GENERIC;
                goto out;
        }
        if (ctx.page.next && gw_pos_contains(gw, gw_pos_hash(ctx.page.next))) {
                snprintf(errstr, errstr_size,
                         "%s: next position repeats the current or an earlier one",
                         gw->proto->name);
                rc = MS_ERR_CURSOR_LOOP;
                goto out;
        }
        if (json_array_size(ctx.page.items) > 0) {
                uint64_t ih = gw_items_hash(ctx.page.items);
                if (gw->stats.pages > 0 && ih == gw->last_items_hash) {
                        snprintf(errstr, errstr_size,
                                 "%s: page did not advance (same records as the previous "
                                 "page)",
                                 gw->proto->name);
                        rc = MS_ERR_CURSOR_LOOP;
                        goto out;
                }
                gw->last_items_hash = ih;
        }
        gw->stats.pages++;
        gw->stats.last_page_ms = ms_mono_ms() - t0;
        *page = ctx.page;
        memset(&ctx.page, 0, sizeof(ctx.page));
out:
        ms_page_clear(&ctx.page);
        free(url);
        return rc;
}

void ms_page_clear(ms_page_t *page)
{
        if (!page)
                return;
        json_decref(page->items);
        free(page->next);
        page->items = NULL;
        page->next = NULL;
        page->total_count = -1;
}

int ms_gateway_ping(ms_gateway_t *gw, char *errstr, size_t errstr_size)
{
        return gw->proto->ping(gw, errstr, errstr_size);
}

void ms_gateway_get_stats(const ms_gateway_t *gw, ms_gateway_stats_t *out)
{
        *out = gw->stats;
}

int ms_gateway_add_secret_header(struct curl_slist **hdrs, const char *prefix,
                                 const char *secret, char *errstr, size_t errstr_size)
{
        char *line = NULL;
        if (asprintf(&line, "%s%s", prefix, secret) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        struct curl_slist *n = curl_slist_append(*hdrs, line);
        explicit_bzero(line, strlen(line));
        free(line);
        if (!n) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        *hdrs = n;
        return 0;
}
