/* ms_prefetch: fetches a job's pages on a thread of its own, one page ahead
 * of the caller, so the member API's latency overlaps with the caller's
 * PostgreSQL work instead of adding to it.
 *
 * The fetch thread owns the gateway while it runs (the gateway is not
 * thread-safe): the caller must not touch it between start and stop.  The
 * gateway's idle callback must be ms_prefetch_idle_cb with the same cancel
 * flag, so stop interrupts a wait at once.
 *
 * Memory: at most two pages are held (one being processed by the caller, one
 * fetched ahead). */
#ifndef MS_PREFETCH_H
#define MS_PREFETCH_H

#include <stdatomic.h>

#include "ms_gateway.h"

#define MS_PREFETCH_TIMEOUT 1 /* ms_prefetch_next: no page yet */

typedef struct ms_prefetch ms_prefetch_t;

/* Gateway idle callback: opaque is the atomic_int cancel flag. */
int ms_prefetch_idle_cb(void *opaque);

/* Starts fetching at pos (NULL = first page; copied).  system labels the
 * member API metrics the fetch thread records. */
int ms_prefetch_start(ms_gateway_t *gw, const char *pos, const char *system,
                      atomic_int *cancel, ms_prefetch_t **out, char *errstr,
                      size_t errstr_size);

/* Waits up to wait_ms for the next page.  Returns 0 and moves the page into
 * *page (the caller clears it), MS_PREFETCH_TIMEOUT when none arrived yet, or
 * the fetch's negative error with its message in errstr (no more pages
 * follow an error). */
int ms_prefetch_next(ms_prefetch_t *pf, int wait_ms, ms_page_t *page, char *errstr,
                     size_t errstr_size);

/* Cancels the fetch in progress, joins the thread, frees any unread page. */
void ms_prefetch_stop(ms_prefetch_t *pf);

#endif
