/* The status change hub: one thread LISTENs on `membersync_status` (the
 * projector NOTIFYs "<org>/<INTEGRATION>" after every status row change) and
 * wakes the SSE streams subscribed to that key.
 *
 * A subscription is a flag, not a queue: the stream re-reads the row when
 * woken, so a burst of notifications collapses into one read of the latest
 * state and a slow client can never make the hub buffer without bound.
 * When the listener loses its connection, notifications may have been
 * missed, so every subscription is flagged once it is back. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ms_api_int.h"
#include "ms_log.h"
#include "ms_pg.h"
#include "ms_util.h"

struct ms_api_sub {
        struct ms_api_sub *next;
        char *key;
        int changed;
};

struct ms_api_hub {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        ms_api_sub_t *subs;
        int nsubs;
        int stopping;
        int listening;
        char *dsn;
        pthread_t thread;
        int started;
};

/* Flags matching subscriptions (every one when key is NULL); hub locked. */
static void flag_locked(ms_api_hub_t *hub, const char *key)
{
        for (ms_api_sub_t *s = hub->subs; s; s = s->next)
                if (!key || strcmp(s->key, key) == 0)
                        s->changed = 1;
        pthread_cond_broadcast(&hub->cv);
}

static int stopping(ms_api_hub_t *hub)
{
        pthread_mutex_lock(&hub->mu);
        int s = hub->stopping;
        pthread_mutex_unlock(&hub->mu);
        return s;
}

static void set_listening(ms_api_hub_t *hub, int on)
{
        pthread_mutex_lock(&hub->mu);
        hub->listening = on;
        if (on)
                flag_locked(hub, NULL);
        pthread_mutex_unlock(&hub->mu);
}

/* Sleeps up to ms, returning early when the hub stops. */
static void nap(ms_api_hub_t *hub, int64_t ms)
{
        int64_t until = ms_mono_ms() + ms;
        while (!stopping(hub) && ms_mono_ms() < until)
                ms_sleep_ms(100);
}

static void *listen_main(void *arg)
{
        ms_api_hub_t *hub = arg;
        char err[512];
        int64_t backoff = 500;
        while (!stopping(hub)) {
                PGconn *pg = ms_pg_connect(hub->dsn, "api-listen", err, sizeof(err));
                if (!pg || ms_pg_exec(pg, "LISTEN membersync_status", 0, NULL, NULL, err,
                                      sizeof(err))) {
                        ms_log_warn("api: status listener: %s (retrying in %lld ms)", err,
                                    (long long)backoff);
                        if (pg)
                                PQfinish(pg);
                        nap(hub, backoff);
                        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
                        continue;
                }
                backoff = 500;
                ms_log_info("api: listening for status changes");
                set_listening(hub, 1);
                while (!stopping(hub)) {
                        struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
                        int n = poll(&pfd, 1, 250);
                        if (n < 0 && errno != EINTR)
                                break;
                        if (n <= 0)
                                continue;
                        if (!PQconsumeInput(pg))
                                break;
                        PGnotify *nt;
                        pthread_mutex_lock(&hub->mu);
                        while ((nt = PQnotifies(pg)) != NULL) {
                                flag_locked(hub, nt->extra);
                                PQfreemem(nt);
                        }
                        pthread_mutex_unlock(&hub->mu);
                }
                set_listening(hub, 0);
                if (!stopping(hub))
                        ms_log_warn("api: status listener lost its connection: %s",
                                    PQerrorMessage(pg));
                PQfinish(pg);
        }
        return NULL;
}

int ms_api_hub_new(const char *dsn, ms_api_hub_t **out, char *errstr, size_t errstr_size)
{
        ms_api_hub_t *hub = calloc(1, sizeof(*hub));
        if (!hub || !(hub->dsn = strdup(dsn))) {
                free(hub);
                snprintf(errstr, errstr_size, "out of memory");
                return MS_ERR_GENERIC;
        }
        pthread_mutex_init(&hub->mu, NULL);
        /* Waits are timed on the monotonic clock: a wall-clock jump must not
         * delay keep-alives. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&hub->cv, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&hub->thread, NULL, listen_main, hub) != 0) {
                snprintf(errstr, errstr_size, "cannot start the status listener thread");
                ms_api_hub_destroy(hub);
                return MS_ERR_GENERIC;
        }
        hub->started = 1;
        *out = hub;
        return 0;
}

void ms_api_hub_stop(ms_api_hub_t *hub)
{
        if (!hub)
                return;
        pthread_mutex_lock(&hub->mu);
        hub->stopping = 1;
        pthread_cond_broadcast(&hub->cv);
        pthread_mutex_unlock(&hub->mu);
        if (hub->started) {
                pthread_join(hub->thread, NULL);
                hub->started = 0;
        }
}

void ms_api_hub_destroy(ms_api_hub_t *hub)
{
        if (!hub)
                return;
        ms_api_hub_stop(hub);
        while (hub->subs) {
                ms_api_sub_t *s = hub->subs;
                hub->subs = s->next;
                free(s->key);
                free(s);
        }
        pthread_cond_destroy(&hub->cv);
        pthread_mutex_destroy(&hub->mu);
        free(hub->dsn);
        free(hub);
}

ms_api_sub_t *ms_api_hub_subscribe(ms_api_hub_t *hub, const char *key)
{
        ms_api_sub_t *s = calloc(1, sizeof(*s));
        if (!s || !(s->key = strdup(key))) {
                free(s);
                return NULL;
        }
        pthread_mutex_lock(&hub->mu);
        s->next = hub->subs;
        hub->subs = s;
        hub->nsubs++;
        pthread_mutex_unlock(&hub->mu);
        return s;
}

void ms_api_hub_unsubscribe(ms_api_hub_t *hub, ms_api_sub_t *sub)
{
        if (!sub)
                return;
        pthread_mutex_lock(&hub->mu);
        for (ms_api_sub_t **pp = &hub->subs; *pp; pp = &(*pp)->next) {
                if (*pp == sub) {
                        *pp = sub->next;
                        hub->nsubs--;
                        break;
                }
        }
        pthread_mutex_unlock(&hub->mu);
        free(sub->key);
        free(sub);
}

int ms_api_hub_wait(ms_api_hub_t *hub, ms_api_sub_t *sub, int64_t timeout_ms)
{
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        if (timeout_ms < 0)
                timeout_ms = 0;
        deadline.tv_sec += (time_t)(timeout_ms / 1000);
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        pthread_mutex_lock(&hub->mu);
        while (!hub->stopping && !sub->changed) {
                if (pthread_cond_timedwait(&hub->cv, &hub->mu, &deadline) == ETIMEDOUT)
                        break;
        }
        if (hub->stopping) {
                rc = -1;
        } else if (sub->changed) {
                sub->changed = 0;
                rc = 1;
        }
        pthread_mutex_unlock(&hub->mu);
        return rc;
}

void ms_api_hub_poke(ms_api_hub_t *hub, ms_api_sub_t *sub)
{
        pthread_mutex_lock(&hub->mu);
        sub->changed = 1;
        pthread_cond_broadcast(&hub->cv);
        pthread_mutex_unlock(&hub->mu);
}

int ms_api_hub_clients(ms_api_hub_t *hub)
{
        pthread_mutex_lock(&hub->mu);
        int n = hub->nsubs;
        pthread_mutex_unlock(&hub->mu);
        return n;
}

int ms_api_hub_listening(ms_api_hub_t *hub)
{
        pthread_mutex_lock(&hub->mu);
        int n = hub->listening;
        pthread_mutex_unlock(&hub->mu);
        return n;
}
