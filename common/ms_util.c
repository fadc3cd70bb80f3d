#include "ms_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

int64_t ms_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ms_mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ms_sleep_ms(int64_t ms)
{
        if (ms <= 0)
                return;
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
                ;
}

int32_t ms_days_from_civil(int y, int m, int d)
{
        /* Howard Hinnant's algorithm: exact for the proleptic Gregorian
         * calendar without any time zone involvement. */
        y -= m <= 2;
        const int era = (y >= 0 ? y : y - 399) / 400;
        const unsigned yoe = (unsigned)(y - era * 400);
        const unsigned doy =
            (153 * (unsigned)(m + (m > 2 ? -3 : 9)) + 2) / 5 + (unsigned)d - 1;
        const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int32_t)doe - 719468;
}

void ms_civil_from_days(int32_t z, int *y, int *m, int *d)
{
        z += 719468;
        const int era = (z >= 0 ? z : z - 146096) / 146097;
        const unsigned doe = (unsigned)(z - era * 146097);
        const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        const int yy = (int)yoe + era * 400;
        const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        const unsigned mp = (5 * doy + 2) / 153;
        *d = (int)(doy - (153 * mp + 2) / 5 + 1);
        *m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *y = yy + (*m <= 2);
}

int ms_date_valid(int y, int m, int d)
{
        static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1)
                return 0;
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        int max = mdays[m - 1] + (m == 2 && leap);
        return d <= max;
}

void ms_iso8601(int64_t epoch_ms, char *buf, size_t size)
{
        /* Clamped to years 1..9999, the range ISO 8601 and PostgreSQL agree
         * on; also keeps the arithmetic below from overflowing. */
        if (epoch_ms < -62135596800000LL)
                epoch_ms = -62135596800000LL;
        if (epoch_ms > 253402300799999LL)
                epoch_ms = 253402300799999LL;
        int64_t secs = epoch_ms >= 0 ? epoch_ms / 1000 : (epoch_ms - 999) / 1000;
        int ms = (int)(epoch_ms - secs * 1000);
        int32_t days = (int32_t)(secs >= 0 ? secs / 86400 : (secs - 86399) / 86400);
        int64_t rem = secs - (int64_t)days * 86400;
        int y, m, d;
        ms_civil_from_days(days, &y, &m, &d);
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d,
                 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), ms);
}

int ms_digits(const char *s, size_t n, int *out)
{
        int v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        *out = v;
        return 0;
}

static int parse_digits(const char **p, int n, int *out)
{
        if (ms_digits(*p, (size_t)n, out))
                return -1;
        *p += n;
        return 0;
}

int ms_iso8601_parse_n(const char *s, size_t len, int64_t *epoch_ms)
{
        char buf[64];
        if (len >= sizeof(buf) || memchr(s, '\0', len))
                return -1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        return ms_iso8601_parse(buf, epoch_ms);
}

int ms_iso8601_parse(const char *s, int64_t *epoch_ms)
{
        const char *p = s;
        int y, mo, d, h, mi, se, frac = 0;
        if (parse_digits(&p, 4, &y) || *p++ != '-' || parse_digits(&p, 2, &mo) ||
            *p++ != '-' || parse_digits(&p, 2, &d) ||
            (*p != 'T' && *p != 't' && *p != ' '))
                return -1;
        p++;
        if (parse_digits(&p, 2, &h) || *p++ != ':' || parse_digits(&p, 2, &mi) ||
            *p++ != ':' || parse_digits(&p, 2, &se))
                return -1;
        if (!ms_date_valid(y, mo, d) || h > 23 || mi > 59 || se > 60)
                return -1;
        if (*p == '.') {
                p++;
                int digits = 0;
                while (*p >= '0' && *p <= '9') {
                        if (digits < 3)
                                frac = frac * 10 + (*p - '0');
                        digits++;
                        p++;
                }
                if (digits == 0)
                        return -1;
                for (; digits < 3; digits++)
                        frac *= 10;
        }
        int offset_min = 0;
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (parse_digits(&p, 2, &oh) || *p++ != ':' || parse_digits(&p, 2, &om))
                        return -1;
                offset_min = sign * (oh * 60 + om);
        } else {
                return -1;
        }
        if (*p != '\0')
                return -1;
        int64_t secs = (int64_t)ms_days_from_civil(y, mo, d) * 86400 + h * 3600 +
                       mi * 60 + se - (int64_t)offset_min * 60;
        *epoch_ms = secs * 1000 + frac;
        return 0;
}

void ms_uuid_new(char out[37])
{
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, out);
}

int ms_uuid_valid(const char *s)
{
        if (!s || strlen(s) != 36)
                return 0;
        uuid_t u;
        return uuid_parse(s, u) == 0;
}

char *ms_base64_encode(const unsigned char *data, size_t len)
{
        static const char tbl[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t olen = 4 * ((len + 2) / 3);
        char *out = malloc(olen + 1);
        if (!out)
                return NULL;
        size_t i, o = 0;
        for (i = 0; i + 2 < len; i += 3) {
                uint32_t v =
                    (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
                out[o++] = tbl[v >> 18];
                out[o++] = tbl[(v >> 12) & 63];
                out[o++] = tbl[(v >> 6) & 63];
                out[o++] = tbl[v & 63];
        }
        if (i < len) {
                uint32_t v = (uint32_t)data[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)data[i + 1] << 8;
                out[o++] = tbl[v >> 18];
                out[o++] = tbl[(v >> 12) & 63];
                out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
                out[o++] = '=';
        }
        out[o] = '\0';
        return out;
}

char *ms_read_file(const char *path, size_t *len_out)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        char *buf = NULL;
        size_t cap = 0, len = 0;
        for (;;) {
                if (len + 65536 + 1 > cap) {
                        cap = (len + 65536 + 1) * 2;
                        char *nb = realloc(buf, cap);
                        if (!nb) {
                                free(buf);
                                fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        buf = nb;
                }
                size_t n = fread(buf + len, 1, 65536, f);
                len += n;
                if (n < 65536)
                        break;
        }
        int err = ferror(f);
        fclose(f);
        if (err) {
                free(buf);
                errno = EIO;
                return NULL;
        }
        buf[len] = '\0';
        if (len_out)
                *len_out = len;
        return buf;
}
