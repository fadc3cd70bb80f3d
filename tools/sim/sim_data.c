/* Dataset of membersync-sim: a JSON array file served verbatim, or the
 * deterministic generator, behind one read-write lock so that
 * POST /admin/reload can swap it while requests are served. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void ms_sim_buf_append(ms_sim_buf_t *b, const char *s, size_t n)
{
        if (b->oom)
                return;
        if (b->len + n + 1 > b->cap) {
                size_t ncap = b->cap ? b->cap : 4096;
                while (ncap < b->len + n + 1)
                        ncap *= 2;
                char *np = realloc(b->p, ncap);
                if (!np) {
                        b->oom = 1;
                        return;
                }
                b->p = np;
                b->cap = ncap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

void ms_sim_buf_puts(ms_sim_buf_t *b, const char *s)
{
        ms_sim_buf_append(b, s, strlen(s));
}

void ms_sim_buf_printf(ms_sim_buf_t *b, const char *fmt, ...)
{
        char tmp[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n < sizeof(tmp)) {
                ms_sim_buf_append(b, tmp, (size_t)n);
                return;
        }
        char *big = malloc((size_t)n + 1);
        if (!big) {
                b->oom = 1;
                return;
        }
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        ms_sim_buf_append(b, big, (size_t)n);
        free(big);
}

static int ms_sim_buf_dump_cb(const char *buffer, size_t size, void *data)
{
        ms_sim_buf_append(data, buffer, size);
        return 0;
}

void ms_sim_buf_json(ms_sim_buf_t *b, const json_t *v)
{
        if (!v) {
                ms_sim_buf_puts(b, "null");
                return;
        }
        json_dump_callback(v, ms_sim_buf_dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY);
}

void ms_sim_buf_free(ms_sim_buf_t *b)
{
        free(b->p);
        memset(b, 0, sizeof(*b));
}

int ms_sim_data_init(ms_sim_data_t *d, ms_system_t sys)
{
        memset(d, 0, sizeof(*d));
        d->system = sys;
        return pthread_rwlock_init(&d->lock, NULL) == 0 ? 0 : -1;
}

void ms_sim_data_destroy(ms_sim_data_t *d)
{
        json_decref(d->records);
        d->records = NULL;
        pthread_rwlock_destroy(&d->lock);
}

int ms_sim_data_load_file(ms_sim_data_t *d, const char *path, char *errstr,
                          size_t errstr_size)
{
        json_error_t jerr;
        /* JSON_ALLOW_NUL: broken records with \u0000 in strings are part of
         * what the simulator must be able to serve. */
        json_t *arr = json_load_file(path, JSON_ALLOW_NUL, &jerr);
        if (!arr) {
                snprintf(errstr, errstr_size, "%s: line %d: %s", path, jerr.line,
                         jerr.text);
                return -1;
        }
        if (!json_is_array(arr)) {
                snprintf(errstr, errstr_size, "%s: not a JSON array", path);
                json_decref(arr);
                return -1;
        }
        pthread_rwlock_wrlock(&d->lock);
        json_t *old = d->records;
        d->records = arr;
        d->gen_n = 0;
        pthread_rwlock_unlock(&d->lock);
        json_decref(old);
        return 0;
}

void ms_sim_data_set_generator(ms_sim_data_t *d, int64_t n, uint64_t seed,
                               int64_t variant)
{
        pthread_rwlock_wrlock(&d->lock);
        json_t *old = d->records;
        d->records = NULL;
        d->gen_n = n;
        d->seed = seed;
        d->variant = variant;
        pthread_rwlock_unlock(&d->lock);
        json_decref(old);
}

static int64_t ms_sim_data_count_locked(const ms_sim_data_t *d)
{
        return d->records ? (int64_t)json_array_size(d->records) : d->gen_n;
}

int64_t ms_sim_data_count(ms_sim_data_t *d)
{
        pthread_rwlock_rdlock(&d->lock);
        int64_t n = ms_sim_data_count_locked(d);
        pthread_rwlock_unlock(&d->lock);
        return n;
}

int64_t ms_sim_data_append_range(ms_sim_data_t *d, int64_t offset, int64_t count,
                                 ms_sim_buf_t *out, int64_t *served)
{
        pthread_rwlock_rdlock(&d->lock);
        int64_t total = ms_sim_data_count_locked(d);
        int64_t end = offset + count;
        if (offset < 0)
                offset = 0;
        if (end > total)
                end = total;
        *served = end > offset ? end - offset : 0;
        for (int64_t i = offset; i < end; i++) {
                if (i > offset)
                        ms_sim_buf_append(out, ",", 1);
                if (d->records)
                        ms_sim_buf_json(out, json_array_get(d->records, (size_t)i));
                else
                        ms_sim_gen_record(d->system, d->seed, d->variant, i, out);
        }
        pthread_rwlock_unlock(&d->lock);
        return total;
}
