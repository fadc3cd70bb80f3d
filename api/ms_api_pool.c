/* A small PostgreSQL connection pool for the api role's request threads.
 *
 * Connections are opened lazily up to `size`, so an idle api holds none
 * beyond the listener's; a connection that went bad (server restart) is
 * dropped when it is returned and a fresh one is opened on the next get. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ms_api_int.h"
#include "ms_pg.h"
#include "ms_util.h"

struct ms_api_pool {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        char *dsn;
        int size;
        int open;  /* connections that exist (idle + lent) */
        int nidle; /* entries of idle[] in use */
        PGconn **idle;
};

ms_api_pool_t *ms_api_pool_new(const char *dsn, int size)
{
        ms_api_pool_t *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->dsn = strdup(dsn);
        p->idle = calloc((size_t)size, sizeof(PGconn *));
        if (!p->dsn || !p->idle) {
                free(p->dsn);
                free(p->idle);
                free(p);
                return NULL;
        }
        p->size = size;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        return p;
}

void ms_api_pool_destroy(ms_api_pool_t *pool)
{
        if (!pool)
                return;
        for (int i = 0; i < pool->nidle; i++)
                PQfinish(pool->idle[i]);
        pthread_cond_destroy(&pool->cv);
        pthread_mutex_destroy(&pool->mu);
        free(pool->idle);
        free(pool->dsn);
        free(pool);
}

PGconn *ms_api_pool_get(ms_api_pool_t *pool, int wait_ms, char *errstr,
                        size_t errstr_size)
{
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += wait_ms / 1000;
        deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&pool->mu);
        for (;;) {
                if (pool->nidle > 0) {
                        PGconn *pg = pool->idle[--pool->nidle];
                        pthread_mutex_unlock(&pool->mu);
                        return pg;
                }
                if (pool->open < pool->size)
                        break;
                if (pthread_cond_timedwait(&pool->cv, &pool->mu, &deadline) ==
                    ETIMEDOUT) {
                        pthread_mutex_unlock(&pool->mu);
                        snprintf(errstr, errstr_size,
                                 "postgres: every pooled connection is busy");
                        return NULL;
                }
        }
        /* Reserve the slot, then connect without holding the lock: a slow
         * connect must not stall the threads returning connections. */
        pool->open++;
        pthread_mutex_unlock(&pool->mu);
        PGconn *pg = ms_pg_connect(pool->dsn, "api", errstr, errstr_size);
        if (!pg) {
                pthread_mutex_lock(&pool->mu);
                pool->open--;
                pthread_cond_signal(&pool->cv);
                pthread_mutex_unlock(&pool->mu);
        }
        return pg;
}

void ms_api_pool_put(ms_api_pool_t *pool, PGconn *pg)
{
        if (!pg)
                return;
        /* A connection left inside a transaction or broken is not reused. */
        int bad =
            PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) != PQTRANS_IDLE;
        if (bad)
                PQfinish(pg);
        pthread_mutex_lock(&pool->mu);
        if (bad)
                pool->open--;
        else
                pool->idle[pool->nidle++] = pg;
        pthread_cond_signal(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
}

int ms_api_pool_in_use(ms_api_pool_t *pool)
{
        pthread_mutex_lock(&pool->mu);
        int n = pool->open - pool->nidle;
        pthread_mutex_unlock(&pool->mu);
        return n;
}
