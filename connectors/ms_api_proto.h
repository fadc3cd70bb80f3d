/* ms_api_proto: internal contract between the gateway (ms_gateway.c) and the
 * per-system page/auth protocols (cornerstone_api.c, consio_api.c).  Not for
 * use outside connectors/.
 *
 * The gateway owns the HTTP mechanics (retries, backoff, 429, rate cap, size
 * cap, TLS); a protocol only knows how to build URLs, add credentials and read
 * the body of its system.  A protocol calls back into the gateway with
 * ms_gateway_call for any request it needs of its own (the Consio token).
 *
 * Thread rules: as for the gateway: everything runs on the gateway's thread. */
#ifndef MS_API_PROTO_H
#define MS_API_PROTO_H

#include <curl/curl.h>
#include <jansson.h>
#include <stddef.h>

#include "ms_gateway.h"

/* Flags of ms_gw_request_t. */
#define MS_GW_AUTH                                                                       \
        0x1                   /* add the system's credentials; a 401/403 asks the        \
                               * protocol to refresh them once per call */
#define MS_GW_400_IS_AUTH 0x2 /* a 400 means refused credentials (token endpoint) */

typedef struct ms_gw_request {
        const char *method;    /* "GET" or "POST" */
        const char *url;       /* full URL, already escaped */
        const char *form_body; /* POST body (x-www-form-urlencoded), may hold
                                * secrets: never logged; NULL for GET */
        unsigned flags;
        /* Checks and takes the parsed JSON body of a 2xx answer (borrowed
         * reference: take json_incref to keep it).  Returns 0, or
         * MS_ERR_BAD_PAGE when the body is not the documented shape: the
         * gateway then retries like a truncated body.  Any other negative
         * code ends the call with that code. */
        int (*accept)(json_t *body, void *opaque, char *errstr, size_t errstr_size);
        void *accept_opaque;
} ms_gw_request_t;

typedef struct ms_api_proto {
        const char *name; /* "cornerstone" / "consio", for messages */
        /* Allocates the protocol's per-gateway state (may set *state NULL). */
        int (*state_new)(const ms_gateway_conf_t *conf, void **state, char *errstr,
                         size_t errstr_size);
        void (*state_destroy)(void *state);
        /* The data URL for position pos (NULL = first page), malloc'ed;
         * NULL with errstr set when pos is not a position of this system. */
        char *(*page_url)(ms_gateway_t *gw, const char *pos, char *errstr,
                          size_t errstr_size);
        /* Reads a page body of the documented shape into *page (items as a
         * new reference, next as a malloc'ed position or NULL).  Returns 0,
         * MS_ERR_BAD_PAGE (retried like a truncated body) or
         * MS_ERR_CURSOR_LOOP (the server answered another page than asked),
         * leaving *page empty on error. */
        int (*parse_page)(ms_gateway_t *gw, const char *pos, json_t *body,
                          ms_page_t *page, char *errstr, size_t errstr_size);
        /* Appends the credential headers of a data call to *hdrs; may fetch a
         * token first (through ms_gateway_call). */
        int (*add_auth)(ms_gateway_t *gw, struct curl_slist **hdrs, char *errstr,
                        size_t errstr_size);
        /* Called after a 401/403 on a data call: drop the credentials and get
         * new ones.  0 = retry the call once; MS_ERR_AUTH = nothing to refresh. */
        int (*refresh_auth)(ms_gateway_t *gw, char *errstr, size_t errstr_size);
        /* Connection test. */
        int (*ping)(ms_gateway_t *gw, char *errstr, size_t errstr_size);
} ms_api_proto_t;

extern const ms_api_proto_t ms_cornerstone_api_proto;
extern const ms_api_proto_t ms_consio_api_proto;

/* Runs one logical request with the gateway's retry rules.  Returns 0 after
 * req->accept took a 2xx body, MS_ERR_AUTH, MS_ERR_TOO_LARGE, MS_ERR_RETRIES,
 * MS_ERR_BAD_PAGE, MS_ERR_HTTP (a non-retryable status or transport error)
 * or MS_ERR_GENERIC (cancelled by idle_cb). */
int ms_gateway_call(ms_gateway_t *gw, const ms_gw_request_t *req, char *errstr,
                    size_t errstr_size);

/* The gateway's own copy of its configuration (strings stay valid for the
 * gateway's lifetime). */
const ms_gateway_conf_t *ms_gateway_conf(const ms_gateway_t *gw);
/* The state the protocol's state_new returned. */
void *ms_gateway_proto_state(ms_gateway_t *gw);
/* URL-escapes s (RFC 3986 unreserved characters kept); malloc'ed, NULL on
 * allocation failure. */
char *ms_gateway_escape(const char *s);

/* Appends the header line "<prefix><secret>" (prefix e.g. "X-Api-Key: ") to *hdrs.
 * libcurl copies it; the formatted line is wiped before it is freed, so the secret is not
 * left in freed memory.  Returns 0 or MS_ERR_GENERIC (out of memory). */
int ms_gateway_add_secret_header(struct curl_slist **hdrs, const char *prefix,
                                 const char *secret, char *errstr, size_t errstr_size);
#endif
