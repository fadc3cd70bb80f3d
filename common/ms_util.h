/* ms_util: small helpers shared by every module: clocks, ISO 8601, UUIDs,
 * base64.  All functions are thread-safe and allocate nothing unless they say
 * so. */
#ifndef MS_UTIL_H
#define MS_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MS_ERR_GENERIC  (-1)
#define MS_ERR_CONFIG   (-2)
#define MS_ERR_PG       (-3)
#define MS_ERR_KAFKA    (-4)
#define MS_ERR_DECODE   (-5)
#define MS_ERR_HTTP     (-6)
#define MS_ERR_NOTFOUND (-7)

/* Wall clock, milliseconds since the epoch (UTC). */
int64_t ms_now_ms(void);
/* Monotonic clock in milliseconds, for durations and timeouts. */
int64_t ms_mono_ms(void);
void ms_sleep_ms(int64_t ms);

/* Formats epoch ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into buf (>= 25 bytes);
 * values outside years 1..9999 are clamped to that range. */
void ms_iso8601(int64_t epoch_ms, char *buf, size_t size);
/* Parses RFC 3339 (Z or +hh:mm offset, optional fraction); returns 0 or -1. */
int ms_iso8601_parse(const char *s, int64_t *epoch_ms);
/* The same for len bytes that need not be NUL-terminated (a JSON string);
 * a NUL inside them is an error rather than a hidden end. */
int ms_iso8601_parse_n(const char *s, size_t len, int64_t *epoch_ms);

/* Reads exactly n ASCII digits at s into *out; returns 0 or -1. */
int ms_digits(const char *s, size_t n, int *out);

/* New random (v4) UUID as 36 characters + NUL. */
void ms_uuid_new(char out[37]);
/* 1 when s is a canonical 36-character UUID string. */
int ms_uuid_valid(const char *s);

/* Base64 (standard alphabet, padded).  Returns a malloc'ed string the caller
 * frees. */
char *ms_base64_encode(const unsigned char *data, size_t len);

/* Days since 1970-01-01 for a proleptic Gregorian date; validate with
 * ms_date_valid first. */
int32_t ms_days_from_civil(int y, int m, int d);
void ms_civil_from_days(int32_t days, int *y, int *m, int *d);
int ms_date_valid(int y, int m, int d);

/* Reads a whole file into a malloc'ed NUL-terminated buffer; NULL on error
 * with errno set. */
char *ms_read_file(const char *path, size_t *len_out);

#endif
