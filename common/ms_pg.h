/* ms_pg: thin libpq helpers.  Every statement is parameterized; no value is
 * ever formatted into SQL text.
 *
 * Thread rules: a PGconn belongs to one thread at a time (libpq rule). */
#ifndef MS_PG_H
#define MS_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Connects and checks the server answers.  application_name is set to
 * membersync-<role>.  Returns NULL with errstr on failure. */
PGconn *ms_pg_connect(const char *dsn, const char *role, char *errstr,
                      size_t errstr_size);

/* Runs a parameterized statement (text parameters, NULL = SQL NULL).  When res
 * is non-NULL the caller owns *res (PQclear); otherwise it is cleared here.
 * Returns 0 or MS_ERR_PG with the server's message. */
int ms_pg_exec(PGconn *pg, const char *sql, int nparams, const char *const *params,
               PGresult **res, char *errstr, size_t errstr_size);

int ms_pg_begin(PGconn *pg, char *errstr, size_t errstr_size);
int ms_pg_commit(PGconn *pg, char *errstr, size_t errstr_size);
/* Best effort; never fails loudly (used on error paths). */
void ms_pg_rollback(PGconn *pg);

/* 1 when the connection is usable (re-connects with PQreset otherwise and
 * returns whether that worked). */
int ms_pg_ensure(PGconn *pg);

/* Applies the embedded migrations (schemas/sql) not applied yet, in order,
 * each in its own transaction, under an advisory lock so that concurrent
 * migrate jobs are safe.  *applied (may be NULL) gets how many ran. */
int ms_pg_migrate(PGconn *pg, int *applied, char *errstr, size_t errstr_size);

/* Consumer offsets kept in PG (DESIGN 2, delivery rule).  load returns
 * MS_ERR_NOTFOUND when the group never stored one for the partition. */
int ms_pg_offset_load(PGconn *pg, const char *group, const char *topic, int32_t partition,
                      int64_t *next_offset, char *errstr, size_t errstr_size);
int ms_pg_offset_store(PGconn *pg, const char *group, const char *topic,
                       int32_t partition, int64_t next_offset, char *errstr,
                       size_t errstr_size);

/* Helpers for reading results: NULL-safe getters. */
const char *ms_pg_str(const PGresult *res, int row,
                      const char *col); /* NULL when SQL NULL */
int64_t ms_pg_i64(const PGresult *res, int row, const char *col, int64_t dflt);

#endif
