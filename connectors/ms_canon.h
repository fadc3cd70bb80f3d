/* ms_canon: the record rules of DESIGN.md section 5, common to both member
 * systems.  A system's mapping module (cornerstone_map, consio_map) reads its
 * native JSON record and fills an ms_canon_input_t; ms_canon_finish applies
 * validation and normalization and yields the canonical Member (JSON shape of
 * docs/modules.md) or one record error, plus warnings.
 *
 * Pure functions, no I/O, thread-safe. */
#ifndef MS_CANON_H
#define MS_CANON_H

#include <jansson.h>
#include <stdint.h>

typedef enum { MS_SYSTEM_CORNERSTONE = 0, MS_SYSTEM_CONSIO = 1 } ms_system_t;

/* "CORNERSTONE"/"CONSIO" and "cornerstone"/"consio". */
const char *ms_system_enum(ms_system_t s);
const char *ms_system_slug(ms_system_t s);
/* Accepts either spelling, any case; returns 0 or -1. */
int ms_system_parse(const char *s, ms_system_t *out);

#define MS_CANON_MAX_WARNINGS 16

typedef struct ms_canon_issue {
        char code[24];     /* e.g. "MISSING_FIELD", "INVALID_EMAIL" */
        char field[40];    /* canonical field name, e.g. "email"; may be "" */
        char message[160]; /* English, no member data beyond the external id */
} ms_canon_issue_t;

typedef struct ms_canon_result {
        char *external_id;        /* malloc'ed; NULL when the record has none */
        json_t *member;           /* new reference, NULL when error is set */
        ms_canon_issue_t error;   /* error.code[0] == '\0' when no error */
        ms_canon_issue_t warnings[MS_CANON_MAX_WARNINGS];
        int n_warnings;
} ms_canon_result_t;

/* Maps and validates one native record (any JSON value: null entries and
 * non-objects give MISSING_ID).  today_days is "today" as days since the
 * epoch (birth dates after it are INVALID_DATE).  DUPLICATE_ID is not decided
 * here: the caller knows which ids the job has seen, and checks it between
 * MISSING_ID and the other errors using ms_canon_external_id.  Always fills
 * *out (clear it with ms_canon_result_clear); returns 0, or -1 only on
 * allocation failure. */
int ms_canon_record(ms_system_t sys, const json_t *rec, int32_t today_days,
                    ms_canon_result_t *out);
void ms_canon_result_clear(ms_canon_result_t *r);

/* Marks a result DUPLICATE_ID: the caller saw its external id earlier in the
 * same job (a record with an error but a valid id counts as seen).  Drops the
 * member and the warnings, keeps external_id.  A MISSING_ID result is left
 * as it is, since MISSING_ID comes first. */
void ms_canon_result_set_duplicate(ms_canon_result_t *r);

/* The record's external id as the canonical string, or NULL (malloc'ed). */
char *ms_canon_external_id(ms_system_t sys, const json_t *rec);

/* 64-bit content hash of a canonical Member over every field except
 * source_updated_at (roles as a sorted set): equal hash == UNCHANGED. */
uint64_t ms_canon_member_hash(const json_t *member);

/* Names of the Member fields that differ between before and after (except
 * source_updated_at), in schema order, as a new JSON array of strings. */
json_t *ms_canon_changed_fields(const json_t *before, const json_t *after);

#endif
