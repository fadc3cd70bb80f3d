#include "ms_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_log.h"
#include "ms_schemas.h"
#include "ms_util.h"

/* libpq prints notices to stderr by default; route them through our JSON log
 * at debug level so the output stays one JSON object per line. */
static void notice_cb(void *arg, const char *msg)
{
        (void)arg;
        ms_log_debug("postgres notice: %.200s", msg);
}

PGconn *ms_pg_connect(const char *dsn, const char *role, char *errstr, size_t errstr_size)
{
        char app[64];
        snprintf(app, sizeof(app), "membersync-%s", role ? role : "cli");
        const char *kw[] = {"dbname", "application_name", "connect_timeout", NULL};
        const char *vals[] = {dsn, app, "10", NULL};
        PGconn *pg = PQconnectdbParams(kw, vals, 1);
        if (!pg) {
                snprintf(errstr, errstr_size, "postgres: out of memory");
                return NULL;
        }
        if (PQstatus(pg) != CONNECTION_OK) {
                /* The DSN may hold a password: report libpq's message only. */
                snprintf(errstr, errstr_size, "postgres: cannot connect: %s",
                         PQerrorMessage(pg));
                size_t n = strlen(errstr);
                while (n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == ' '))
                        errstr[--n] = '\0';
                PQfinish(pg);
                return NULL;
        }
        PQsetNoticeProcessor(pg, notice_cb, NULL);
        return pg;
}

int ms_pg_exec(PGconn *pg, const char *sql, int nparams, const char *const *params,
               PGresult **res, char *errstr, size_t errstr_size)
{
        PGresult *r = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(pg);
                snprintf(errstr, errstr_size, "postgres: %s",
                         msg && *msg ? msg : "error");
                size_t n = strlen(errstr);
                while (n > 0 && (errstr[n - 1] == '\n' || errstr[n - 1] == ' '))
                        errstr[--n] = '\0';
                PQclear(r);
                if (res)
                        *res = NULL;
                return MS_ERR_PG;
        }
        if (res)
                *res = r;
        else
                PQclear(r);
        return 0;
}

int ms_pg_begin(PGconn *pg, char *errstr, size_t errstr_size)
{
        return ms_pg_exec(pg, "BEGIN", 0, NULL, NULL, errstr, errstr_size);
}

int ms_pg_commit(PGconn *pg, char *errstr, size_t errstr_size)
{
        return ms_pg_exec(pg, "COMMIT", 0, NULL, NULL, errstr, errstr_size);
}

void ms_pg_rollback(PGconn *pg)
{
        if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
                PQclear(PQexec(pg, "ROLLBACK"));
}

int ms_pg_ensure(PGconn *pg)
{
        if (PQstatus(pg) == CONNECTION_OK)
                return 1;
        PQreset(pg);
        return PQstatus(pg) == CONNECTION_OK;
}

int ms_pg_migrate(PGconn *pg, int *applied, char *errstr, size_t errstr_size)
{
        int rc, n = 0;
        /* A session-level advisory lock: two migrate jobs started together by
         * a rolling deploy wait for each other instead of racing. */
        if ((rc = ms_pg_exec(pg, "SELECT pg_advisory_lock(72010001)", 0, NULL, NULL,
                             errstr, errstr_size)))
                return rc;
        if ((rc = ms_pg_exec(pg, "CREATE SCHEMA IF NOT EXISTS membersync", 0, NULL, NULL,
                             errstr, errstr_size)) ||
            (rc = ms_pg_exec(pg,
                             "CREATE TABLE IF NOT EXISTS membersync.schema_migrations ("
                             "version text PRIMARY KEY, applied_at timestamptz NOT NULL "
                             "DEFAULT now())",
                             0, NULL, NULL, errstr, errstr_size)))
                goto out;
        for (const ms_schema_src_t *m = ms_migration_srcs; m->name; m++) {
                PGresult *r = NULL;
                const char *p[] = {m->name};
                if ((rc = ms_pg_exec(pg,
                                     "SELECT 1 FROM membersync.schema_migrations WHERE "
                                     "version = $1",
                                     1, p, &r, errstr, errstr_size)))
                        goto out;
                int done = PQntuples(r) > 0;
                PQclear(r);
                if (done)
                        continue;
                if ((rc = ms_pg_begin(pg, errstr, errstr_size)))
                        goto out;
                /* Migration files hold several statements: simple query
                 * protocol, no parameters, trusted text compiled into us. */
                PGresult *mr = PQexec(pg, m->json);
                if (PQresultStatus(mr) != PGRES_COMMAND_OK &&
                    PQresultStatus(mr) != PGRES_TUPLES_OK) {
                        snprintf(errstr, errstr_size, "migration %s: %s", m->name,
                                 PQresultErrorMessage(mr));
                        PQclear(mr);
                        ms_pg_rollback(pg);
                        rc = MS_ERR_PG;
                        goto out;
                }
                PQclear(mr);
                if ((rc = ms_pg_exec(pg,
                                     "INSERT INTO membersync.schema_migrations(version) "
                                     "VALUES ($1)",
                                     1, p, NULL, errstr, errstr_size)) ||
                    (rc = ms_pg_commit(pg, errstr, errstr_size))) {
                        ms_pg_rollback(pg);
                        goto out;
                }
                ms_log_info("applied migration %s", m->name);
                n++;
        }
out:
        PQclear(PQexec(pg, "SELECT pg_advisory_unlock(72010001)"));
        if (applied)
                *applied = n;
        return rc;
}

int ms_pg_offset_load(PGconn *pg, const char *group, const char *topic, int32_t partition,
                      int64_t *next_offset, char *errstr, size_t errstr_size)
{
        char part[16];
        snprintf(part, sizeof(part), "%d", partition);
        const char *p[] = {group, topic, part};
        PGresult *r = NULL;
        int rc = ms_pg_exec(pg,
                            "SELECT next_offset FROM membersync.consumer_offsets WHERE "
                            "group_id = $1 AND topic = $2 AND partition = $3",
                            3, p, &r, errstr, errstr_size);
        if (rc)
                return rc;
        if (PQntuples(r) == 0) {
                PQclear(r);
                return MS_ERR_NOTFOUND;
        }
        *next_offset = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return 0;
}

int ms_pg_offset_store(PGconn *pg, const char *group, const char *topic,
                       int32_t partition, int64_t next_offset, char *errstr,
                       size_t errstr_size)
{
        char part[16], off[24];
        snprintf(part, sizeof(part), "%d", partition);
        snprintf(off, sizeof(off), "%lld", (long long)next_offset);
        const char *p[] = {group, topic, part, off};
        return ms_pg_exec(
            pg,
            "INSERT INTO membersync.consumer_offsets(group_id, topic, partition, "
            "next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, "
            "partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, "
            "updated_at = now()",
            4, p, NULL, errstr, errstr_size);
}

const char *ms_pg_str(const PGresult *res, int row, const char *col)
{
        int c = PQfnumber(res, col);
        if (c < 0 || row >= PQntuples(res) || PQgetisnull(res, row, c))
                return NULL;
        return PQgetvalue(res, row, c);
}

int64_t ms_pg_i64(const PGresult *res, int row, const char *col, int64_t dflt)
{
        const char *s = ms_pg_str(res, row, col);
        return s ? strtoll(s, NULL, 10) : dflt;
}
