/* ms_log: JSON log lines on stdout.
 *
 * One line per call: {"ts","level","role","job_id","org_id","msg"}.  The role
 * is process-wide (set once at start-up); job_id/org_id are per thread so a
 * role that works on one job at a time can tag every line.  Callers must never
 * pass secrets or member data (names, emails, phones) into a message: the log
 * is read by people without access to member data.  Thread-safe. */
#ifndef MS_LOG_H
#define MS_LOG_H

typedef enum { MS_LOG_DEBUG = 0, MS_LOG_INFO, MS_LOG_WARN, MS_LOG_ERROR } ms_log_level_t;

void ms_log_set_role(const char *role);
void ms_log_set_level(ms_log_level_t level);
/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int ms_log_level_parse(const char *s, ms_log_level_t *out);
/* Per-thread context; NULL clears.  Strings are copied. */
void ms_log_ctx_set(const char *job_id, const char *org_id);

void ms_log(ms_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define ms_log_debug(...) ms_log(MS_LOG_DEBUG, __VA_ARGS__)
#define ms_log_info(...)  ms_log(MS_LOG_INFO, __VA_ARGS__)
#define ms_log_warn(...)  ms_log(MS_LOG_WARN, __VA_ARGS__)
#define ms_log_error(...) ms_log(MS_LOG_ERROR, __VA_ARGS__)

#endif
