/* ms_consio_api: Consio's paging and auth protocol (DESIGN.md section 6).
 * OAuth2 client credentials:
 *   POST {base}/connect/token  grant_type=client_credentials&client_id=..
 *        &client_secret=..&scope=members.read
 *   -> {"access_token","token_type":"Bearer","expires_in":s}
 * and numbered pages from 1:
 *   GET {base}/api/v1/actors?page=P&pageSize=N
 *   -> {"totalCount":n,"page":P,"pageSize":N,"items":[...]}
 * The position handed to the connector is the page number as a decimal
 * string.  The token is reused until shortly before it expires; a 401 on a
 * data call drops it so that the gateway's single retry fetches a new one. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ms_api_proto.h"
#include "ms_gateway.h"
#include "ms_util.h"

/* Used when the token response has no expires_in. */
#define CONSIO_DEFAULT_TTL_S 300
/* Refresh this long before expiry (at most a tenth of the lifetime), so that
 * a token does not run out between the check and the server reading it. */
#define CONSIO_REFRESH_MARGIN_MS 30000

typedef struct consio_state {
        char *token;        /* access token; wiped on free */
        int64_t refresh_at; /* monotonic ms after which a new token is fetched */
} consio_state_t;

static void consio_drop_token(consio_state_t *st)
{
        if (st->token) {
                explicit_bzero(st->token, strlen(st->token));
                free(st->token);
                st->token = NULL;
        }
        st->refresh_at = 0;
}

static int ms_consio_api_state_new(const ms_gateway_conf_t *conf, void **state,
                                   char *errstr, size_t errstr_size)
{
        *state = NULL;
        if (!conf->client_id || !*conf->client_id || !conf->client_secret) {
                snprintf(errstr, errstr_size,
                         "consio: client_id and client_secret are required");
                return MS_ERR_CONFIG;
        }
        consio_state_t *st = calloc(1, sizeof(*st));
        if (!st) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        *state = st;
        return 0;
}

static void ms_consio_api_state_destroy(void *state)
{
        consio_state_t *st = state;
        if (!st)
                return;
        consio_drop_token(st);
        free(st);
}

/* Reads a position: a decimal page number >= 1.  NULL means page 1. */
static int consio_parse_pos(const char *pos, long *page)
{
        if (!pos) {
                *page = 1;
                return 0;
        }
        if (!isdigit((unsigned char)pos[0]))
                return -1;
        char *end;
        errno = 0;
        long v = strtol(pos, &end, 10);
        if (errno || *end || v < 1)
                return -1;
        *page = v;
        return 0;
}

static char *ms_consio_api_page_url(ms_gateway_t *gw, const char *pos, char *errstr,
                                    size_t errstr_size)
{
        const ms_gateway_conf_t *conf = ms_gateway_conf(gw);
        long page;
        char *url = NULL;

        if (consio_parse_pos(pos, &page) < 0) {
                snprintf(errstr, errstr_size, "consio: position is not a page number");
                return NULL;
        }
        if (asprintf(&url, "%s/api/v1/actors?page=%ld&pageSize=%d", conf->base_url, page,
                     conf->page_size) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        return url;
}

static int ms_consio_api_parse_page(ms_gateway_t *gw, const char *pos, json_t *body,
                                    ms_page_t *page, char *errstr, size_t errstr_size)
{
        const ms_gateway_conf_t *conf = ms_gateway_conf(gw);
        json_t *items = json_object_get(body, "items");
        json_t *total = json_object_get(body, "totalCount");
        json_t *jpage = json_object_get(body, "page");
        json_t *jsize = json_object_get(body, "pageSize");
        long req_page = 1;

        (void)consio_parse_pos(pos, &req_page); /* validated in page_url */
        if (!json_is_object(body) || !json_is_array(items) || !json_is_integer(total)) {
                snprintf(errstr, errstr_size,
                         "consio: page has no items array or totalCount");
                return MS_ERR_BAD_PAGE;
        }
        if ((jpage && !json_is_integer(jpage)) || (jsize && !json_is_integer(jsize))) {
                snprintf(errstr, errstr_size,
                         "consio: page or pageSize is not an integer");
                return MS_ERR_BAD_PAGE;
        }
        /* A server that answers another page than asked would have us read
         * the same records again or skip some. */
        if (jpage && json_integer_value(jpage) != req_page) {
                snprintf(errstr, errstr_size, "consio: asked for page %ld, got page %lld",
                         req_page, (long long)json_integer_value(jpage));
                return MS_ERR_CURSOR_LOOP;
        }
        /* The server may cap pageSize; its own figure says where pages end. */
        int64_t size = jsize && json_integer_value(jsize) > 0 ? json_integer_value(jsize)
                                                              : conf->page_size;
        int64_t tc = json_integer_value(total);

        page->items = json_incref(items);
        page->total_count = tc >= 0 ? tc : -1;
        page->next = NULL;
        if (json_array_size(items) > 0 && (int64_t)req_page * size < tc) {
                if (asprintf(&page->next, "%ld", req_page + 1) < 0) {
                        page->next = NULL;
                        json_decref(page->items);
                        page->items = NULL;
                        snprintf(errstr, errstr_size, "out of memory");
                        return MS_ERR_GENERIC;
                }
        }
        return 0;
}

typedef struct consio_token_ctx {
        char *token;
        int64_t ttl_ms;
} consio_token_ctx_t;

static int consio_accept_token(json_t *body, void *opaque, char *errstr,
                               size_t errstr_size)
{
        consio_token_ctx_t *ctx = opaque;
        json_t *tok = json_object_get(body, "access_token");
        json_t *type = json_object_get(body, "token_type");
        json_t *exp = json_object_get(body, "expires_in");

        if (!json_is_object(body) || !json_is_string(tok) ||
            json_string_length(tok) == 0) {
                snprintf(errstr, errstr_size,
                         "consio: token response has no access_token");
                return MS_ERR_BAD_PAGE;
        }
        if (type && (!json_is_string(type) ||
                     strcasecmp(json_string_value(type), "Bearer") != 0)) {
                snprintf(errstr, errstr_size, "consio: token_type is not Bearer");
                return MS_ERR_AUTH;
        }
        double ttl_s =
            json_is_number(exp) ? json_number_value(exp) : CONSIO_DEFAULT_TTL_S;
        if (ttl_s < 0)
                ttl_s = 0;
        free(ctx->token);
        ctx->token = strdup(json_string_value(tok));
        if (!ctx->token) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        ctx->ttl_ms = (int64_t)(ttl_s * 1000.0);
        return 0;
}

/* Fetches a new token into the state.  A 400/401/403 from the token endpoint
 * means the client credentials are wrong: MS_ERR_AUTH. */
static int consio_fetch_token(ms_gateway_t *gw, consio_state_t *st, char *errstr,
                              size_t errstr_size)
{
        const ms_gateway_conf_t *conf = ms_gateway_conf(gw);
        char *url = NULL;
        char *id = NULL;
        char *secret = NULL;
        char *form = NULL;
        consio_token_ctx_t ctx = {NULL, 0};
        int rc = MS_ERR_GENERIC;

        consio_drop_token(st);
        id = ms_gateway_escape(conf->client_id);
        secret = ms_gateway_escape(conf->client_secret);
        if (!id || !secret)
                goto oom;
        if (asprintf(&url, "%s/connect/token", conf->base_url) < 0) {
                url = NULL;
                goto oom;
        }
        if (asprintf(&form,
                     "grant_type=client_credentials&client_id=%s&client_secret=%s"
                     "&scope=members.read",
                     id, secret) < 0) {
                form = NULL;
                goto oom;
        }
        ms_gw_request_t req = {
            .method = "POST",
            .url = url,
            .form_body = form,
            .flags = MS_GW_400_IS_AUTH,
            .accept = consio_accept_token,
            .accept_opaque = &ctx,
        };
        rc = ms_gateway_call(gw, &req, errstr, errstr_size);
        if (rc)
                goto out;
        int64_t margin = ctx.ttl_ms / 10;
        if (margin > CONSIO_REFRESH_MARGIN_MS)
                margin = CONSIO_REFRESH_MARGIN_MS;
        st->token = ctx.token;
        ctx.token = NULL;
        st->refresh_at = ms_mono_ms() + ctx.ttl_ms - margin;
        goto out;
oom:
        snprintf(errstr, errstr_size, "out of memory");
        rc = MS_ERR_GENERIC;
out:
        if (ctx.token) {
                explicit_bzero(ctx.token, strlen(ctx.token));
                free(ctx.token);
        }
        if (secret) {
                explicit_bzero(secret, strlen(secret));
                free(secret);
        }
        if (form) {
                explicit_bzero(form, strlen(form));
                free(form);
        }
        free(id);
        free(url);
        return rc;
}

static int ms_consio_api_add_auth(ms_gateway_t *gw, struct curl_slist **hdrs,
                                  char *errstr, size_t errstr_size)
{
        consio_state_t *st = ms_gateway_proto_state(gw);
        int rc;

        if (!st->token || ms_mono_ms() >= st->refresh_at) {
                rc = consio_fetch_token(gw, st, errstr, errstr_size);
                if (rc)
                        return rc;
        }
        return ms_gateway_add_secret_header(hdrs, "Authorization: Bearer ", st->token,
                                            errstr, errstr_size);
}

static int ms_consio_api_refresh_auth(ms_gateway_t *gw, char *errstr, size_t errstr_size)
{
        (void)errstr;
        (void)errstr_size;
        /* The next add_auth fetches a new token; if that one is refused as
         * well the gateway reports MS_ERR_AUTH. */
        consio_drop_token(ms_gateway_proto_state(gw));
        return 0;
}

static int ms_consio_api_ping(ms_gateway_t *gw, char *errstr, size_t errstr_size)
{
        return consio_fetch_token(gw, ms_gateway_proto_state(gw), errstr, errstr_size);
}

const ms_api_proto_t ms_consio_api_proto = {
    .name = "consio",
    .state_new = ms_consio_api_state_new,
    .state_destroy = ms_consio_api_state_destroy,
    .page_url = ms_consio_api_page_url,
    .parse_page = ms_consio_api_parse_page,
    .add_auth = ms_consio_api_add_auth,
    .refresh_auth = ms_consio_api_refresh_auth,
    .ping = ms_consio_api_ping,
};
