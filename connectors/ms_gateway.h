/* ms_gateway: the Member System API Gateway.  Every HTTP call to a member
 * system goes through it: TLS verified (libcurl defaults, optional CA file),
 * connect and total timeouts, retries with exponential backoff and full
 * jitter on 5xx, timeouts and connection resets, 429 honouring Retry-After
 * (delta seconds or HTTP-date, capped), a per-integration request rate cap and
 * a response size cap.  Secrets and response bodies are never logged.
 *
 * The page protocol of each system lives in cornerstone_api.c / consio_api.c
 * behind ms_gateway_fetch_page, so the connector sees one paging contract.
 *
 * Thread rules: one gateway per job/thread; not shared. */
#ifndef MS_GATEWAY_H
#define MS_GATEWAY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ms_canon.h"

#define MS_ERR_AUTH        (-20) /* credentials refused (401/403 after one refresh) */
#define MS_ERR_RETRIES     (-21) /* still failing after the last retry */
#define MS_ERR_CURSOR_LOOP (-22) /* a cursor repeated or a page did not advance */
#define MS_ERR_BAD_PAGE    (-23) /* body is not the documented page shape */
#define MS_ERR_TOO_LARGE   (-24) /* response above max_response_bytes */

typedef struct ms_gateway_conf {
        ms_system_t system;
        const char *base_url;      /* e.g. "http://127.0.0.1:8081" (no trailing /) */
        const char *api_key;       /* Cornerstone X-Api-Key */
        const char *client_id;     /* Consio OAuth2 client credentials */
        const char *client_secret;
        const char *ca_file;       /* optional extra CA bundle; NULL = system */
        int page_size;             /* records per page requested */
        double max_rps;            /* request rate cap; <= 0 = no cap */
        long connect_timeout_ms;
        long timeout_ms;           /* total per request */
        int max_retries;           /* retries after the first attempt */
        long backoff_base_ms;      /* first backoff ceiling; doubles per retry */
        long backoff_max_ms;
        long retry_after_cap_ms;   /* Retry-After longer than this is capped */
        size_t max_response_bytes;
        /* Called at least every 200 ms while the gateway waits (backoff,
         * Retry-After, rate cap) so that a Kafka consumer keeps polling; may
         * be NULL.  Returning non-zero aborts the wait and the fetch with
         * MS_ERR_GENERIC ("cancelled"), used on shutdown. */
        int (*idle_cb)(void *opaque);
        void *idle_opaque;
} ms_gateway_conf_t;

/* Notes on ms_gateway_conf_t (implementation in ms_gateway.c):
 * - Zero (or negative) fields get defaults: page_size 100, connect_timeout_ms
 *   10000, timeout_ms 60000, backoff_base_ms 500, backoff_max_ms 30000,
 *   retry_after_cap_ms 60000, max_response_bytes 64 MiB; max_retries < 0 is
 *   0; max_rps <= 0 means no cap.
 * - idle_cb also runs every 100-200 ms while a transfer is in flight, so a
 *   hanging server neither stalls the consumer nor blocks cancellation.
 * - A 503 with Retry-After is honoured like a 429.  Other 4xx than
 *   401/403/429/408 end the call with MS_ERR_HTTP (no retry); so do TLS
 *   failures.  A cancelled call returns MS_ERR_GENERIC with "cancelled".
 * - A page body that is not the documented shape (or not JSON) is retried;
 *   after the last retry it is MS_ERR_BAD_PAGE.
 * - Loop detection also fails a page whose records equal the previous
 *   page's (a page that did not advance), and a Consio body whose "page"
 *   differs from the page asked for. */

typedef struct ms_gateway_stats {
        int64_t requests;          /* HTTP requests sent, retries included */
        int64_t pages;             /* pages returned to the caller */
        int64_t retries;
        int64_t responses_by_class[6]; /* index status/100 (0 = no response) */
        int64_t last_page_ms;      /* latency of the last successful page */
} ms_gateway_stats_t;

typedef struct ms_page {
        json_t *items;       /* array of native records, owned by the page */
        int64_t total_count; /* source's reported total, -1 when unknown */
        char *next;          /* position of the next page (malloc'ed), NULL when
                              * this was the last page */
} ms_page_t;

typedef struct ms_gateway ms_gateway_t;

/* Copies every string of conf. */
int ms_gateway_new(const ms_gateway_conf_t *conf, ms_gateway_t **out, char *errstr,
                   size_t errstr_size);
void ms_gateway_destroy(ms_gateway_t *gw);

/* Fetches the page at position `pos`: NULL = first page; otherwise a value a
 * previous call returned in page->next (Cornerstone: the cursor; Consio: the
 * page number as a decimal string).  A `next` equal to `pos` or to any
 * earlier position of this gateway returns MS_ERR_CURSOR_LOOP.  On success the
 * caller owns *page and clears it with ms_page_clear. */
int ms_gateway_fetch_page(ms_gateway_t *gw, const char *pos, ms_page_t *page, char *errstr,
                          size_t errstr_size);
void ms_page_clear(ms_page_t *page);

/* Connection test: Cornerstone GET /api/v1/organization, Consio token fetch. */
int ms_gateway_ping(ms_gateway_t *gw, char *errstr, size_t errstr_size);

void ms_gateway_get_stats(const ms_gateway_t *gw, ms_gateway_stats_t *out);

#endif
