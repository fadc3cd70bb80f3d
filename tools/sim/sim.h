/* membersync-sim internals: the member API simulator of DESIGN.md section 6.
 * sim.c holds the CLI and the HTTP server, sim_data.c the dataset (file or
 * generator) and page bodies, sim_gen.c the deterministic generator,
 * sim_faults.c the fault specs.  Internal to tools/sim. */
#ifndef MS_SIM_H
#define MS_SIM_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ms_canon.h"

/* Growable byte buffer for response bodies. */
typedef struct ms_sim_buf {
        char *p;
        size_t len;
        size_t cap;
        int oom; /* set once an append failed; later appends do nothing */
} ms_sim_buf_t;

void ms_sim_buf_append(ms_sim_buf_t *b, const char *s, size_t n);
void ms_sim_buf_puts(ms_sim_buf_t *b, const char *s);
void ms_sim_buf_printf(ms_sim_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends the compact JSON text of v (any value, null included). */
void ms_sim_buf_json(ms_sim_buf_t *b, const json_t *v);
void ms_sim_buf_free(ms_sim_buf_t *b);

/* ---- generator (sim_gen.c) ---- */

/* Appends the native JSON record number `index` (0-based) of the dataset
 * defined by (sys, seed, variant).  The same arguments always give the same
 * bytes; variant 0 is the base dataset and any other variant changes about
 * one record in ten. */
void ms_sim_gen_record(ms_system_t sys, uint64_t seed, int64_t variant, int64_t index,
                       ms_sim_buf_t *out);

/* ---- dataset (sim_data.c) ---- */

typedef struct ms_sim_data {
        pthread_rwlock_t lock;
        ms_system_t system;
        json_t *records; /* file mode: the array as loaded; NULL in generator mode */
        int64_t gen_n;   /* generator mode: number of records */
        uint64_t seed;
        int64_t variant;
} ms_sim_data_t;

int ms_sim_data_init(ms_sim_data_t *d, ms_system_t sys);
void ms_sim_data_destroy(ms_sim_data_t *d);
/* Replace the dataset with the JSON array in path (loaded with
 * JSON_ALLOW_NUL so that broken records survive) or with a generator. */
int ms_sim_data_load_file(ms_sim_data_t *d, const char *path, char *errstr,
                          size_t errstr_size);
void ms_sim_data_set_generator(ms_sim_data_t *d, int64_t n, uint64_t seed,
                               int64_t variant);

/* Appends records [offset, offset+count) (clipped to the dataset) separated
 * by commas, without brackets; returns the total number of records and sets
 * *served to how many were appended.  Takes the read lock. */
int64_t ms_sim_data_append_range(ms_sim_data_t *d, int64_t offset, int64_t count,
                                 ms_sim_buf_t *out, int64_t *served);
int64_t ms_sim_data_count(ms_sim_data_t *d);

/* ---- faults (sim_faults.c) ---- */

typedef enum {
        MS_SIM_FAULT_NONE = 0,
        MS_SIM_FAULT_STATUS,       /* answer `code` */
        MS_SIM_FAULT_429S,         /* 429, Retry-After: seconds */
        MS_SIM_FAULT_429DATE,      /* 429, Retry-After: HTTP-date */
        MS_SIM_FAULT_HANG,         /* sleep arg ms, then answer normally */
        MS_SIM_FAULT_TRUNCATE,     /* first half of the body */
        MS_SIM_FAULT_RESET,        /* close without a response */
        MS_SIM_FAULT_REPEAT,       /* persistent: paging does not advance */
        MS_SIM_FAULT_TOKEN_EXPIRE, /* persistent: token dies after arg uses */
        MS_SIM_FAULT_AUTH_FAIL,    /* persistent: every call 401 */
} ms_sim_fault_kind_t;

typedef struct ms_sim_fault {
        ms_sim_fault_kind_t kind;
        int code;          /* STATUS */
        int64_t page;      /* 1-based page index the fault applies to */
        int64_t remaining; /* one-shot faults: answers left */
        int64_t arg;       /* seconds (429*), ms (HANG), N (TOKEN_EXPIRE) */
} ms_sim_fault_t;

typedef struct ms_sim_faults {
        pthread_mutex_t lock;
        ms_sim_fault_t *v;
        size_t n;
        size_t cap;
} ms_sim_faults_t;

void ms_sim_faults_init(ms_sim_faults_t *f);
void ms_sim_faults_destroy(ms_sim_faults_t *f);
/* Parses one --fault SPEC and adds it.  Returns 0 or -1 with errstr. */
int ms_sim_faults_add(ms_sim_faults_t *f, const char *spec, char *errstr,
                      size_t errstr_size);
void ms_sim_faults_clear(ms_sim_faults_t *f);
/* Consumes the first one-shot fault (in the order given) that still applies
 * to a data request for `page`; returns it by value (kind NONE if none). */
ms_sim_fault_t ms_sim_faults_take(ms_sim_faults_t *f, int64_t page);
/* Persistent faults: the repeat page (0 = none), the token use limit (0 =
 * none), and whether every call fails. */
int64_t ms_sim_faults_repeat_page(ms_sim_faults_t *f);
int64_t ms_sim_faults_token_limit(ms_sim_faults_t *f);
int ms_sim_faults_auth_fail(ms_sim_faults_t *f);

#endif
