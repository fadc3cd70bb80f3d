#include "ms_prefetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ms_health.h"
#include "ms_util.h"

struct ms_prefetch {
        ms_gateway_t *gw;
        atomic_int *cancel;
        char system[32];
        ms_gateway_stats_t last_stats;
        pthread_t tid;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        char *pos;
        /* The one-page hand-over slot. */
        int full;
        int rc;
        ms_page_t page;
        char err[512];
        int done; /* thread has exited */
};

int ms_prefetch_idle_cb(void *opaque)
{
        return atomic_load((atomic_int *)opaque);
}

/* Member API metrics, taken on the fetch thread that owns the gateway. */
static void observe(ms_prefetch_t *pf, int rc)
{
        static const char *classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
        ms_gateway_stats_t st;
        char labels[160];
        ms_gateway_get_stats(pf->gw, &st);
        if (rc == 0)
                ms_metrics_histogram_observe(
                    "membersync_member_api_page_seconds",
                    "Time to fetch one page from a member API, retries included",
                    ms_metrics_labels(labels, sizeof(labels), "system", pf->system, NULL),
                    (double)st.last_page_ms / 1000.0);
        for (int i = 0; i < 6; i++) {
                int64_t d =
                    st.responses_by_class[i] - pf->last_stats.responses_by_class[i];
                if (d > 0)
                        ms_metrics_counter_add(
                            "membersync_member_api_responses_total",
                            "Member API responses by status class (none = no response)",
                            ms_metrics_labels(labels, sizeof(labels), "system",
                                              pf->system, "status", classes[i], NULL),
                            (double)d);
        }
        pf->last_stats = st;
}

static void *fetch_main(void *arg)
{
        ms_prefetch_t *pf = arg;
        char *pos = pf->pos;
        pf->pos = NULL;
        for (;;) {
                /* Fetch only once the previous page was taken: at most one
                 * page is fetched but not yet processed, so a stop costs at
                 * most one page fetched again by the next instance. */
                pthread_mutex_lock(&pf->lock);
                while (pf->full && !atomic_load(pf->cancel))
                        pthread_cond_wait(&pf->cond, &pf->lock);
                pthread_mutex_unlock(&pf->lock);
                if (atomic_load(pf->cancel))
                        break;
                ms_page_t page = {0};
                char err[512] = "";
                int rc = ms_gateway_fetch_page(pf->gw, pos, &page, err, sizeof(err));
                observe(pf, rc);
                pthread_mutex_lock(&pf->lock);
                if (atomic_load(pf->cancel)) {
                        pthread_mutex_unlock(&pf->lock);
                        ms_page_clear(&page);
                        break;
                }
                pf->full = 1;
                pf->rc = rc;
                pf->page = page;
                snprintf(pf->err, sizeof(pf->err), "%s", err);
                pthread_cond_broadcast(&pf->cond);
                pthread_mutex_unlock(&pf->lock);
                if (rc || !page.next)
                        break;
                free(pos);
                pos = strdup(page.next);
                if (!pos)
                        break;
        }
        free(pos);
        pthread_mutex_lock(&pf->lock);
        pf->done = 1;
        pthread_cond_broadcast(&pf->cond);
        pthread_mutex_unlock(&pf->lock);
        return NULL;
}

int ms_prefetch_start(ms_gateway_t *gw, const char *pos, const char *system,
                      atomic_int *cancel, ms_prefetch_t **out, char *errstr,
                      size_t errstr_size)
{
        ms_prefetch_t *pf = calloc(1, sizeof(*pf));
        if (!pf)
                goto oom;
        pf->gw = gw;
        snprintf(pf->system, sizeof(pf->system), "%s", system);
        ms_gateway_get_stats(gw, &pf->last_stats);
        pf->cancel = cancel;
        pthread_mutex_init(&pf->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&pf->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (pos && !(pf->pos = strdup(pos)))
                goto oom;
        if (pthread_create(&pf->tid, NULL, fetch_main, pf)) {
                snprintf(errstr, errstr_size, "prefetch: cannot start thread");
                free(pf->pos);
                free(pf);
                return MS_ERR_GENERIC;
        }
        *out = pf;
        return 0;
oom:
        if (pf)
                free(pf);
        snprintf(errstr, errstr_size, "prefetch: out of memory");
        return MS_ERR_GENERIC;
}

int ms_prefetch_next(ms_prefetch_t *pf, int wait_ms, ms_page_t *page, char *errstr,
                     size_t errstr_size)
{
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000;
        }
        int rc = MS_PREFETCH_TIMEOUT;
        pthread_mutex_lock(&pf->lock);
        while (!pf->full && !pf->done) {
                if (pthread_cond_timedwait(&pf->cond, &pf->lock, &until) == ETIMEDOUT)
                        break;
        }
        if (pf->full) {
                *page = pf->page;
                memset(&pf->page, 0, sizeof(pf->page));
                rc = pf->rc;
                if (rc)
                        snprintf(errstr, errstr_size, "%s", pf->err);
                pf->full = 0;
                pthread_cond_broadcast(&pf->cond);
        } else if (pf->done) {
                /* Only after a cancel: the thread ends otherwise with a last
                 * page or an error in the slot. */
                snprintf(errstr, errstr_size, "prefetch: cancelled");
                rc = MS_ERR_GENERIC;
        }
        pthread_mutex_unlock(&pf->lock);
        return rc;
}

void ms_prefetch_stop(ms_prefetch_t *pf)
{
        if (!pf)
                return;
        atomic_store(pf->cancel, 1);
        pthread_mutex_lock(&pf->lock);
        pthread_cond_broadcast(&pf->cond);
        pthread_mutex_unlock(&pf->lock);
        pthread_join(pf->tid, NULL);
        if (pf->full)
                ms_page_clear(&pf->page);
        pthread_cond_destroy(&pf->cond);
        pthread_mutex_destroy(&pf->lock);
        free(pf);
}
