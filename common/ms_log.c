#include "ms_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char g_role[32] = "membersync";
static ms_log_level_t g_level = MS_LOG_INFO;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char t_job[40];
static _Thread_local char t_org[64];

static const char *level_names[] = {"debug", "info", "warn", "error"};

void ms_log_set_role(const char *role)
{
        snprintf(g_role, sizeof(g_role), "%s", role);
}

void ms_log_set_level(ms_log_level_t level)
{
        g_level = level;
}

int ms_log_level_parse(const char *s, ms_log_level_t *out)
{
        for (int i = 0; i < 4; i++) {
                if (strcmp(s, level_names[i]) == 0) {
                        *out = (ms_log_level_t)i;
                        return 0;
                }
        }
        return -1;
}

void ms_log_ctx_set(const char *job_id, const char *org_id)
{
        snprintf(t_job, sizeof(t_job), "%s", job_id ? job_id : "");
        snprintf(t_org, sizeof(t_org), "%s", org_id ? org_id : "");
}

/* Writes s as the inside of a JSON string. */
static void put_escaped(FILE *f, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
}

void ms_log(ms_log_level_t level, const char *fmt, ...)
{
        if (level < g_level)
                return;
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char tbuf[32];
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);

        pthread_mutex_lock(&g_lock);
        fprintf(stdout, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"role\":\"", tbuf,
                ts.tv_nsec / 1000000, level_names[level]);
        put_escaped(stdout, g_role);
        fputc('"', stdout);
        if (t_job[0]) {
                fputs(",\"job_id\":\"", stdout);
                put_escaped(stdout, t_job);
                fputc('"', stdout);
        }
        if (t_org[0]) {
                fputs(",\"org_id\":\"", stdout);
                put_escaped(stdout, t_org);
                fputc('"', stdout);
        }
        fputs(",\"msg\":\"", stdout);
        put_escaped(stdout, msg);
        fputs("\"}\n", stdout);
        fflush(stdout);
        pthread_mutex_unlock(&g_lock);
}
