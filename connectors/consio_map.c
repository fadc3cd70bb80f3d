/* ms_consio_map: Consio actor record (DESIGN.md section 6) ->
 * ms_canon_input_t.  Only field names, vocabulary and formats live here; the
 * rules are in ms_canon.c.
 *
 * Consio specifics:
 * - `actNo` and `localBranch.no` are integers; a string of digits is
 *   accepted too and rewritten to the integer's canonical text ("020000" ->
 *   "20000"), so either spelling names the same actor.  Other text is not an
 *   actor number (MISSING_ID for actNo, MALFORMED for the branch number).
 * - Dates are DD.MM.YYYY; one-digit day or month (1.1.2020) is accepted.
 * - `changedAt` is "YYYY-MM-DD HH:MM:SS" (a 'T' separator and a fraction
 *   are accepted) in Europe/Oslo wall-clock time, converted with the EU
 *   summer-time rule computed here, without the TZ database.  The EU rule is
 *   applied to every year (Norway has followed it since 1996; changedAt
 *   values are recent).  A value that carries its own zone (Z or +hh:mm) is
 *   taken as that instant. */
#include "ms_map.h"
#include "ms_util.h"

#include <string.h>

static int cn_parse_date(const char *s, size_t len, int *y, int *m, int *d)
{
        const char *dot1 = memchr(s, '.', len);
        if (!dot1)
                return -1;
        size_t dl = (size_t)(dot1 - s);
        const char *rest = dot1 + 1;
        size_t rlen = len - dl - 1;
        const char *dot2 = memchr(rest, '.', rlen);
        if (!dot2)
                return -1;
        size_t ml = (size_t)(dot2 - rest);
        size_t yl = rlen - ml - 1;
        if (dl < 1 || dl > 2 || ml < 1 || ml > 2 || yl != 4 || ms_digits(s, dl, d) ||
            ms_digits(rest, ml, m) || ms_digits(dot2 + 1, yl, y))
                return -1;
        return 0;
}

/* Days since the epoch of the last Sunday of a 31-day month. */
static int32_t cn_last_sunday(int y, int m)
{
        int32_t last = ms_days_from_civil(y, m, 31);
        /* 1970-01-01 (day 0) was a Thursday; weekday 0 is Sunday. */
        int wd = (int)(((last + 4) % 7 + 7) % 7);
        return last - wd;
}

int64_t ms_consio_map_oslo_to_utc(int64_t local_ms)
{
        const int64_t hour = 3600 * 1000, day = 24 * hour;
        int64_t days = local_ms >= 0 ? local_ms / day : -((-local_ms + day - 1) / day);
        int y, m, d;
        ms_civil_from_days((int32_t)days, &y, &m, &d);
        /* Summer time runs from 01:00 UTC on the last Sunday of March to 01:00
         * UTC on the last Sunday of October, i.e. in wall-clock terms from
         * 03:00 (after the spring jump) to 03:00 summer time in October.
         * Comparing wall clock against those bounds gives +01:00 to the spring
         * gap 02:00-02:59 (the offset before the change) and +02:00 to the
         * ambiguous autumn hour 02:00-02:59 (its first occurrence). */
        int64_t start = (int64_t)cn_last_sunday(y, 3) * day + 3 * hour;
        int64_t end = (int64_t)cn_last_sunday(y, 10) * day + 3 * hour;
        int64_t offset = local_ms >= start && local_ms < end ? 2 * hour : hour;
        return local_ms - offset;
}

static int cn_parse_time(const char *s, size_t len, int64_t *epoch_ms)
{
        int64_t local;
        int n = ms_canon_parse_local_datetime(s, len, &local);
        if (n < 0)
                return -1;
        if ((size_t)n == len) {
                *epoch_ms = ms_consio_map_oslo_to_utc(local);
                return 0;
        }
        return ms_iso8601_parse_n(s, len, epoch_ms);
}

const ms_canon_rules_t ms_consio_map_rules = {
    .system = MS_SYSTEM_CONSIO,
    .status_names = {"Aktiv", "Ikke betalt", "Utmeldt", "D\u00f8d"},
    .role_names = {"Likeperson", "Koordinator", "Lokallagsleder", "Styremedlem"},
    .parse_date = cn_parse_date,
    .parse_time = cn_parse_time,
};

static const struct {
        const char *key;
        ms_canon_field_t field;
} cn_fields[] = {
    {"memberNo", MS_CANON_F_MEMBER_NUMBER}, {"firstName", MS_CANON_F_GIVEN_NAME},
    {"lastName", MS_CANON_F_FAMILY_NAME},   {"email", MS_CANON_F_EMAIL},
    {"mobile", MS_CANON_F_PHONE},           {"birthDate", MS_CANON_F_BIRTH_DATE},
    {"status", MS_CANON_F_STATUS},          {"enrolledDate", MS_CANON_F_VALID_FROM},
    {"resignedDate", MS_CANON_F_VALID_TO},  {"changedAt", MS_CANON_F_SOURCE_UPDATED_AT},
};

int ms_consio_map_id(const json_t *rec, char *buf)
{
        int why;
        return ms_canon_in_id(json_object_get(rec, "actNo"), 1, buf, &why);
}

void ms_consio_map_read(const json_t *rec, ms_canon_input_t *in)
{
        int why;
        in->id_state = ms_canon_in_id(json_object_get(rec, "actNo"), 1, in->ext_id, &why);
        in->bad_why[MS_CANON_F_EXTERNAL_ID] = (unsigned char)why;
        for (size_t i = 0; i < sizeof cn_fields / sizeof cn_fields[0]; i++)
                ms_canon_in_text(in, cn_fields[i].field,
                                 json_object_get(rec, cn_fields[i].key));
        ms_canon_in_local(in, json_object_get(rec, "localBranch"), "no", "name", 1);
        in->roles = json_object_get(rec, "roles");
}
