/* ms_cornerstone_api: Cornerstone's paging and auth protocol (DESIGN.md
 * section 6): an `X-Api-Key` header on every call and an opaque cursor:
 *   GET {base}/api/v1/members?pageSize=N&cursor=C
 *   -> {"data":[...], "nextCursor": "..."|null, "totalCount": n}
 * The position handed to the connector is the cursor itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_api_proto.h"
#include "ms_gateway.h"
#include "ms_util.h"

static int ms_cornerstone_api_state_new(const ms_gateway_conf_t *conf, void **state,
                                        char *errstr, size_t errstr_size)
{
        *state = NULL;
        if (!conf->api_key || !*conf->api_key) {
                snprintf(errstr, errstr_size, "cornerstone: api_key is required");
                return MS_ERR_CONFIG;
        }
        return 0;
}

static void ms_cornerstone_api_state_destroy(void *state)
{
        (void)state;
}

static char *ms_cornerstone_api_page_url(ms_gateway_t *gw, const char *pos, char *errstr,
                                         size_t errstr_size)
{
        const ms_gateway_conf_t *conf = ms_gateway_conf(gw);
        char *url = NULL;
        char *esc = NULL;
        int n;

        if (!pos) {
                /* The first page is asked for without a cursor. */
                n = asprintf(&url, "%s/api/v1/members?pageSize=%d", conf->base_url,
                             conf->page_size);
        } else {
                /* Cursors are opaque and may hold '+', '/' or '='. */
                esc = ms_gateway_escape(pos);
                if (!esc) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return NULL;
                }
                n = asprintf(&url, "%s/api/v1/members?pageSize=%d&cursor=%s",
                             conf->base_url, conf->page_size, esc);
        }
        free(esc);
        if (n < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        return url;
}

static int ms_cornerstone_api_parse_page(ms_gateway_t *gw, const char *pos, json_t *body,
                                         ms_page_t *page, char *errstr,
                                         size_t errstr_size)
{
        (void)gw;
        (void)pos;
        json_t *data = json_object_get(body, "data");
        json_t *next = json_object_get(body, "nextCursor");
        json_t *total = json_object_get(body, "totalCount");

        if (!json_is_object(body) || !json_is_array(data)) {
                snprintf(errstr, errstr_size, "cornerstone: page has no data array");
                return MS_ERR_BAD_PAGE;
        }
        /* nextCursor is part of the documented shape; a body without it may
         * have lost its tail, and treating that as the last page would end a
         * sync early. */
        if (!next || !(json_is_string(next) || json_is_null(next))) {
                snprintf(errstr, errstr_size, "cornerstone: page has no nextCursor");
                return MS_ERR_BAD_PAGE;
        }
        if (total && !json_is_null(total) && !json_is_integer(total)) {
                snprintf(errstr, errstr_size,
                         "cornerstone: totalCount is not an integer");
                return MS_ERR_BAD_PAGE;
        }
        page->items = json_incref(data);
        page->total_count =
            json_is_integer(total) ? (int64_t)json_integer_value(total) : -1;
        page->next = NULL;
        /* An empty cursor cannot be sent back meaningfully: treat it as the
         * end, like null. */
        if (json_is_string(next) && json_string_length(next) > 0) {
                page->next = strdup(json_string_value(next));
                if (!page->next) {
                        json_decref(page->items);
                        page->items = NULL;
                        snprintf(errstr, errstr_size, "out of memory");
                        return MS_ERR_GENERIC;
                }
        }
        return 0;
}

static int ms_cornerstone_api_add_auth(ms_gateway_t *gw, struct curl_slist **hdrs,
                                       char *errstr, size_t errstr_size)
{
        return ms_gateway_add_secret_header(
            hdrs, "X-Api-Key: ", ms_gateway_conf(gw)->api_key, errstr, errstr_size);
}

static int ms_cornerstone_api_refresh_auth(ms_gateway_t *gw, char *errstr,
                                           size_t errstr_size)
{
        (void)gw;
        /* An API key cannot be refreshed: a 401/403 is final. */
        snprintf(errstr, errstr_size, "cornerstone: API key refused");
        return MS_ERR_AUTH;
}

static int ms_cornerstone_api_accept_org(json_t *body, void *opaque, char *errstr,
                                         size_t errstr_size)
{
        (void)opaque;
        if (!json_is_object(body) || !json_is_string(json_object_get(body, "id"))) {
                snprintf(errstr, errstr_size, "cornerstone: organization has no id");
                return MS_ERR_BAD_PAGE;
        }
        return 0;
}

static int ms_cornerstone_api_ping(ms_gateway_t *gw, char *errstr, size_t errstr_size)
{
        const ms_gateway_conf_t *conf = ms_gateway_conf(gw);
        char *url = NULL;
        if (asprintf(&url, "%s/api/v1/organization", conf->base_url) < 0) {
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        ms_gw_request_t req = {
            .method = "GET",
            .url = url,
            .flags = MS_GW_AUTH,
            .accept = ms_cornerstone_api_accept_org,
        };
        int rc = ms_gateway_call(gw, &req, errstr, errstr_size);
        free(url);
        return rc;
}

const ms_api_proto_t ms_cornerstone_api_proto = {
    .name = "cornerstone",
    .state_new = ms_cornerstone_api_state_new,
    .state_destroy = ms_cornerstone_api_state_destroy,
    .page_url = ms_cornerstone_api_page_url,
    .parse_page = ms_cornerstone_api_parse_page,
    .add_auth = ms_cornerstone_api_add_auth,
    .refresh_auth = ms_cornerstone_api_refresh_auth,
    .ping = ms_cornerstone_api_ping,
};
