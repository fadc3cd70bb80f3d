/* Fault specs of membersync-sim (see --help in sim.c for the list). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

void ms_sim_faults_init(ms_sim_faults_t *f)
{
        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->lock, NULL);
}

void ms_sim_faults_destroy(ms_sim_faults_t *f)
{
        free(f->v);
        pthread_mutex_destroy(&f->lock);
}

/* Splits spec at ':' into at most max fields (in place in buf). */
static int ms_sim_split(char *buf, char **fields, int max)
{
        int n = 0;
        char *p = buf;
        for (;;) {
                if (n == max)
                        return -1;
                fields[n++] = p;
                char *c = strchr(p, ':');
                if (!c)
                        return n;
                *c = '\0';
                p = c + 1;
        }
}

static int ms_sim_parse_i64(const char *s, int64_t min, int64_t *out)
{
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min)
                return -1;
        *out = v;
        return 0;
}

int ms_sim_faults_add(ms_sim_faults_t *f, const char *spec, char *errstr,
                      size_t errstr_size)
{
        char buf[128];
        char *fl[5];
        ms_sim_fault_t nf = {0};
        int64_t a = 0, b = 0, c = 0;

        if (strlen(spec) >= sizeof(buf)) {
                snprintf(errstr, errstr_size, "fault spec too long");
                return -1;
        }
        snprintf(buf, sizeof(buf), "%s", spec);
        int n = ms_sim_split(buf, fl, 5);
        if (n < 1)
                goto bad;
        const char *k = fl[0];
        if (strcmp(k, "status") == 0 && n == 4) {
                if (ms_sim_parse_i64(fl[1], 100, &a) || a > 599 ||
                    ms_sim_parse_i64(fl[2], 1, &b) || ms_sim_parse_i64(fl[3], 1, &c))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_STATUS, (int)a, b, c, 0};
        } else if ((strcmp(k, "429s") == 0 || strcmp(k, "429date") == 0) && n == 3) {
                if (ms_sim_parse_i64(fl[1], 1, &b) || ms_sim_parse_i64(fl[2], 0, &a))
                        goto bad;
                nf = (ms_sim_fault_t){strcmp(k, "429s") == 0 ? MS_SIM_FAULT_429S
                                                             : MS_SIM_FAULT_429DATE,
                                      429, b, 1, a};
        } else if (strcmp(k, "hang") == 0 && n == 3) {
                if (ms_sim_parse_i64(fl[1], 1, &b) || ms_sim_parse_i64(fl[2], 0, &a))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_HANG, 0, b, 1, a};
        } else if (strcmp(k, "truncate") == 0 && n == 2) {
                if (ms_sim_parse_i64(fl[1], 1, &b))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_TRUNCATE, 200, b, 1, 0};
        } else if (strcmp(k, "reset") == 0 && n == 2) {
                if (ms_sim_parse_i64(fl[1], 1, &b))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_RESET, 0, b, 1, 0};
        } else if (strcmp(k, "repeat-cursor") == 0 && n == 2) {
                if (ms_sim_parse_i64(fl[1], 1, &b))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_REPEAT, 0, b, 0, 0};
        } else if (strcmp(k, "token-expire-after") == 0 && n == 2) {
                if (ms_sim_parse_i64(fl[1], 1, &a))
                        goto bad;
                nf = (ms_sim_fault_t){MS_SIM_FAULT_TOKEN_EXPIRE, 401, 0, 0, a};
        } else if (strcmp(k, "auth-fail") == 0 && n == 1) {
                nf = (ms_sim_fault_t){MS_SIM_FAULT_AUTH_FAIL, 401, 0, 0, 0};
        } else {
                goto bad;
        }

        pthread_mutex_lock(&f->lock);
        if (f->n == f->cap) {
                size_t ncap = f->cap ? f->cap * 2 : 8;
                ms_sim_fault_t *nv = realloc(f->v, ncap * sizeof(*nv));
                if (!nv) {
                        pthread_mutex_unlock(&f->lock);
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                f->v = nv;
                f->cap = ncap;
        }
        f->v[f->n++] = nf;
        pthread_mutex_unlock(&f->lock);
        return 0;
bad:
        snprintf(errstr, errstr_size, "invalid fault spec '%s'", spec);
        return -1;
}

void ms_sim_faults_clear(ms_sim_faults_t *f)
{
        pthread_mutex_lock(&f->lock);
        f->n = 0;
        pthread_mutex_unlock(&f->lock);
}

ms_sim_fault_t ms_sim_faults_take(ms_sim_faults_t *f, int64_t page)
{
        ms_sim_fault_t out = {0};
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n; i++) {
                ms_sim_fault_t *x = &f->v[i];
                if (x->kind >= MS_SIM_FAULT_REPEAT || x->page != page ||
                    x->remaining <= 0)
                        continue;
                x->remaining--;
                out = *x;
                break;
        }
        pthread_mutex_unlock(&f->lock);
        return out;
}

static int64_t ms_sim_faults_persistent(ms_sim_faults_t *f, ms_sim_fault_kind_t kind,
                                        int want_page)
{
        int64_t v = 0;
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n; i++) {
                if (f->v[i].kind == kind) {
                        v = want_page ? f->v[i].page : (f->v[i].arg ? f->v[i].arg : 1);
                        break;
                }
        }
        pthread_mutex_unlock(&f->lock);
        return v;
}

int64_t ms_sim_faults_repeat_page(ms_sim_faults_t *f)
{
        return ms_sim_faults_persistent(f, MS_SIM_FAULT_REPEAT, 1);
}

int64_t ms_sim_faults_token_limit(ms_sim_faults_t *f)
{
        return ms_sim_faults_persistent(f, MS_SIM_FAULT_TOKEN_EXPIRE, 0);
}

int ms_sim_faults_auth_fail(ms_sim_faults_t *f)
{
        return ms_sim_faults_persistent(f, MS_SIM_FAULT_AUTH_FAIL, 0) != 0;
}
