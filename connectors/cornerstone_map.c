/* ms_cornerstone_map: Cornerstone member record (DESIGN.md section 6) ->
 * ms_canon_input_t.  Only field names, vocabulary and formats live here; the
 * rules are in ms_canon.c.
 *
 * Cornerstone specifics:
 * - `id` is a string; a number is accepted and becomes its decimal text.
 * - Dates are exactly YYYY-MM-DD.
 * - `lastModified` is RFC 3339 (Z or an explicit offset); anything else
 *   becomes a null source_updated_at (see ms_canon.c for why no warning). */
#include "ms_map.h"
#include "ms_util.h"

#include <string.h>

static int cs_parse_date(const char *s, size_t len, int *y, int *m, int *d)
{
        if (len != 10 || s[4] != '-' || s[7] != '-' || ms_digits(s, 4, y) ||
            ms_digits(s + 5, 2, m) || ms_digits(s + 8, 2, d))
                return -1;
        return 0;
}

static int cs_parse_time(const char *s, size_t len, int64_t *epoch_ms)
{
        return ms_iso8601_parse_n(s, len, epoch_ms);
}

const ms_canon_rules_t ms_cornerstone_map_rules = {
    .system = MS_SYSTEM_CORNERSTONE,
    .status_names = {"Active", "Lapsed", "Resigned", "Deceased"},
    .role_names = {"PeerMentor", "Coordinator", "LocalLeader", "BoardMember"},
    .parse_date = cs_parse_date,
    .parse_time = cs_parse_time,
};

static const struct {
        const char *key;
        ms_canon_field_t field;
} cs_fields[] = {
    {"memberNumber", MS_CANON_F_MEMBER_NUMBER},
    {"firstName", MS_CANON_F_GIVEN_NAME},
    {"lastName", MS_CANON_F_FAMILY_NAME},
    {"email", MS_CANON_F_EMAIL},
    {"mobilePhone", MS_CANON_F_PHONE},
    {"dateOfBirth", MS_CANON_F_BIRTH_DATE},
    {"membershipStatus", MS_CANON_F_STATUS},
    {"membershipValidFrom", MS_CANON_F_VALID_FROM},
    {"membershipValidTo", MS_CANON_F_VALID_TO},
    {"lastModified", MS_CANON_F_SOURCE_UPDATED_AT},
};

int ms_cornerstone_map_id(const json_t *rec, char *buf)
{
        int why;
        return ms_canon_in_id(json_object_get(rec, "id"), 0, buf, &why);
}

void ms_cornerstone_map_read(const json_t *rec, ms_canon_input_t *in)
{
        int why;
        in->id_state = ms_canon_in_id(json_object_get(rec, "id"), 0, in->ext_id, &why);
        in->bad_why[MS_CANON_F_EXTERNAL_ID] = (unsigned char)why;
        for (size_t i = 0; i < sizeof cs_fields / sizeof cs_fields[0]; i++)
                ms_canon_in_text(in, cs_fields[i].field,
                                 json_object_get(rec, cs_fields[i].key));
        ms_canon_in_local(in, json_object_get(rec, "localAssociation"), "id", "name", 0);
        in->roles = json_object_get(rec, "roles");
}
