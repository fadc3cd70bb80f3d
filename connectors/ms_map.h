/* ms_map: internal contract between ms_canon.c and the per-system mapping
 * modules (cornerstone_map.c, consio_map.c).  Not for use outside
 * connectors/ms_canon.c and the *_map.c files: everybody else calls
 * ms_canon_record.
 *
 * A mapping module only knows its system's JSON field names, its status and
 * role vocabulary and its date/time formats.  It copies the native record's
 * values into an ms_canon_input_t (raw text per canonical field, numbers
 * already coerced to text, and which fields had an unusable JSON type);
 * ms_canon_finish then applies every rule of DESIGN.md section 5 the same way
 * for both systems.
 *
 * The input only borrows: text pointers point into the json_t record (or
 * into the input's own buffers), so the record must outlive the
 * ms_canon_finish call.  Nothing here allocates. */
#ifndef MS_MAP_H
#define MS_MAP_H

#include "ms_canon.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Canonical Member fields in schema order (docs/modules.md); the order fixes
 * the content hash and changed_fields, so never reorder, only append. */
typedef enum {
        MS_CANON_F_EXTERNAL_ID = 0,
        MS_CANON_F_MEMBER_NUMBER,
        MS_CANON_F_GIVEN_NAME,
        MS_CANON_F_FAMILY_NAME,
        MS_CANON_F_EMAIL,
        MS_CANON_F_PHONE,
        MS_CANON_F_BIRTH_DATE,
        MS_CANON_F_LA_ID,
        MS_CANON_F_LA_NAME,
        MS_CANON_F_STATUS,
        MS_CANON_F_VALID_FROM,
        MS_CANON_F_VALID_TO,
        MS_CANON_F_ROLES,
        MS_CANON_F_SOURCE_UPDATED_AT,
        MS_CANON_F_COUNT
} ms_canon_field_t;

/* Canonical field name ("external_id", ...). */
const char *ms_canon_field_name(ms_canon_field_t f);

/* Identifiers (external id, member number, local association id) longer
 * than this are unusable: they end up in btree index keys and Kafka keys. */
#define MS_CANON_ID_MAX 255

/* Why a field is MALFORMED (kept per field so the message can say it). */
enum {
        MS_CANON_BAD_NONE = 0,
        MS_CANON_BAD_TYPE,       /* object/array/bool/non-integral number */
        MS_CANON_BAD_UTF8,       /* string is not valid UTF-8 */
        MS_CANON_BAD_CHARS,      /* identifier holds control characters */
        MS_CANON_BAD_TOO_LONG,   /* identifier longer than MS_CANON_ID_MAX */
        MS_CANON_BAD_NOT_NUMERIC /* numeric identifier given as other text */
};

/* Flags of an ms_canon_text_t. */
#define MS_CANON_TXT_NONASCII 0x1u /* holds bytes >= 0x80 */
#define MS_CANON_TXT_NEEDNFC  0x2u /* holds code points >= U+0300 */

typedef struct ms_canon_text {
        const char *s; /* NULL: field missing or JSON null */
        size_t len;    /* bytes; s may hold NUL bytes (\u0000) */
        unsigned flags;
} ms_canon_text_t;

/* Result of reading an identifier. */
enum { MS_CANON_ID_ABSENT = 0, MS_CANON_ID_OK = 1, MS_CANON_ID_BAD = 2 };

typedef struct ms_canon_input {
        ms_canon_text_t f[MS_CANON_F_COUNT];     /* text per field (roles unused) */
        const json_t *roles;                     /* raw roles value, may be NULL */
        int id_state;                            /* MS_CANON_ID_* of the external id */
        uint32_t malformed;                      /* bit (1u << field) */
        unsigned char bad_why[MS_CANON_F_COUNT]; /* MS_CANON_BAD_* per field */
        char ext_id[MS_CANON_ID_MAX + 1];        /* external id text when OK */
        char la_id[MS_CANON_ID_MAX + 1];         /* local association id text */
        char num[MS_CANON_F_COUNT][32];          /* numbers coerced to text */
} ms_canon_input_t;

/* What differs between the systems.  Parsers get the trimmed text (not
 * NUL-terminated) and return 0 or -1; parse_date only checks the format,
 * ms_canon_finish checks that it is a calendar date. */
typedef struct ms_canon_rules {
        ms_system_t system;
        const char *status_names[4]; /* ACTIVE, LAPSED, RESIGNED, DECEASED */
        const char *role_names[4];   /* PEER_MENTOR, COORDINATOR, LOCAL_LEADER,
                                        BOARD_MEMBER */
        int (*parse_date)(const char *s, size_t len, int *y, int *m, int *d);
        int (*parse_time)(const char *s, size_t len, int64_t *epoch_ms);
} ms_canon_rules_t;

/* Resets an input before a mapping module fills it. */
void ms_canon_input_init(ms_canon_input_t *in);

/* Reads v (NULL when the key is missing) as text for field f: a string is
 * taken as is (UTF-8 validated), an integer or an integral real becomes its
 * decimal string, JSON null is "absent"; anything else marks the field
 * MALFORMED. */
void ms_canon_in_text(ms_canon_input_t *in, ms_canon_field_t f, const json_t *v);

/* Reads an identifier into buf (MS_CANON_ID_MAX + 1 bytes): a string is
 * trimmed and must be valid UTF-8 without control characters and at most
 * MS_CANON_ID_MAX bytes; an integer (or integral real) becomes its decimal
 * string.  With numeric set, a string must be an optionally signed run of
 * digits and is rewritten to the integer's canonical decimal form, so that
 * 20000 and "020000" are the same id.  Returns MS_CANON_ID_*; *why gets the
 * MS_CANON_BAD_* reason when BAD. */
int ms_canon_in_id(const json_t *v, int numeric, char *buf, int *why);

/* Reads a local association object ({idkey, namekey} or null). */
void ms_canon_in_local(ms_canon_input_t *in, const json_t *la, const char *idkey,
                       const char *namekey, int numeric_id);

/* Applies the common rules to a filled input; see ms_canon_record for the
 * result.  Returns 0, or -1 on allocation failure. */
int ms_canon_finish(const ms_canon_rules_t *rules, const ms_canon_input_t *in,
                    int32_t today_days, ms_canon_result_t *out);

/* Parses "YYYY-MM-DD" followed by a space or 'T' and "HH:MM:SS" with an
 * optional ".fff" fraction; returns the count of bytes consumed or -1.
 * *local_ms gets the wall-clock time as if it were UTC. */
int ms_canon_parse_local_datetime(const char *s, size_t len, int64_t *local_ms);

/* Cornerstone. */
extern const ms_canon_rules_t ms_cornerstone_map_rules;
void ms_cornerstone_map_read(const json_t *rec, ms_canon_input_t *in);
int ms_cornerstone_map_id(const json_t *rec, char *buf);

/* Consio. */
extern const ms_canon_rules_t ms_consio_map_rules;
void ms_consio_map_read(const json_t *rec, ms_canon_input_t *in);
int ms_consio_map_id(const json_t *rec, char *buf);
/* Europe/Oslo wall-clock milliseconds (as if UTC) -> UTC epoch ms by the EU
 * rule; gap times use +01:00, ambiguous autumn times the first (+02:00). */
int64_t ms_consio_map_oslo_to_utc(int64_t local_ms);

#endif
