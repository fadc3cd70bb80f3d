/* Unit tests for ms_canon and the two mapping modules: the record rules of
 * DESIGN.md section 5, checked against the sample data (counts and every
 * dirty case) and against hand-made and hostile records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "ms_canon.h"
#include "ms_map.h"
#include "ms_util.h"

/* The sample's "today"; the synthetic tests use the same day. */
#define TODAY_Y 2026
#define TODAY_M 12
#define TODAY_D 1

static int32_t today(void)
{
        return ms_days_from_civil(TODAY_Y, TODAY_M, TODAY_D);
}

/* ---- sample data ----------------------------------------------------------- */

struct sample {
        json_t *expected;
        json_t *v1;
        json_t *v2;
};

static struct sample samples[2];

static json_t *load_sample(const char *sys, const char *file)
{
        const char *dir = getenv("MS_SAMPLE_DIR");
        char path[1024];
        json_error_t err;
        if (!dir)
                dir = MS_SOURCE_DIR "/tests/data/sample";
        snprintf(path, sizeof path, "%s/%s/%s", dir, sys, file);
        json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
        if (!j)
                fprintf(stderr, "cannot load %s: %s (line %d)\n", path, err.text,
                        err.line);
        return j;
}

static int group_setup(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                const char *slug = ms_system_slug((ms_system_t)s);
                samples[s].expected = load_sample(slug, "expected.json");
                samples[s].v1 = load_sample(slug, "members-v1.json");
                samples[s].v2 = load_sample(slug, "members-v2.json");
                if (!samples[s].expected || !samples[s].v1 || !samples[s].v2)
                        return -1;
        }
        return 0;
}

static int group_teardown(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                json_decref(samples[s].expected);
                json_decref(samples[s].v1);
                json_decref(samples[s].v2);
        }
        return 0;
}

static int32_t sample_today(ms_system_t sys)
{
        const char *t =
            json_string_value(json_object_get(samples[sys].expected, "today"));
        int y, m, d;
        assert_non_null(t);
        assert_int_equal(sscanf(t, "%d-%d-%d", &y, &m, &d), 3);
        return ms_days_from_civil(y, m, d);
}

/* Runs a whole sample file the way the connector does, DUPLICATE_ID
 * included, and compares the tallies with expected.json. */
static void check_sample_counts(ms_system_t sys, const char *version)
{
        const json_t *recs =
            strcmp(version, "v1") == 0 ? samples[sys].v1 : samples[sys].v2;
        const json_t *exp = json_object_get(samples[sys].expected, version);
        json_t *seen = json_object();
        json_t *errors = json_object();
        json_t *warnings = json_object();
        int error_count = 0, warning_count = 0;
        int32_t day = sample_today(sys);

        assert_non_null(exp);
        for (size_t i = 0; i < json_array_size(recs); i++) {
                ms_canon_result_t r;
                assert_int_equal(ms_canon_record(sys, json_array_get(recs, i), day, &r),
                                 0);
                if (r.external_id) {
                        if (json_object_get(seen, r.external_id))
                                ms_canon_result_set_duplicate(&r);
                        else
                                json_object_set_new(seen, r.external_id, json_true());
                }
                if (r.error.code[0]) {
                        json_int_t n =
                            json_integer_value(json_object_get(errors, r.error.code));
                        json_object_set_new(errors, r.error.code, json_integer(n + 1));
                        error_count++;
                        assert_null(r.member);
                        assert_int_equal(r.n_warnings, 0);
                } else {
                        assert_non_null(r.member);
                }
                for (int w = 0; w < r.n_warnings; w++) {
                        const char *code = r.warnings[w].code;
                        json_int_t n =
                            json_integer_value(json_object_get(warnings, code));
                        json_object_set_new(warnings, code, json_integer(n + 1));
                        warning_count++;
                }
                ms_canon_result_clear(&r);
        }
        if (!json_equal(errors, json_object_get(exp, "errors_by_code")) ||
            !json_equal(warnings, json_object_get(exp, "warnings_by_code"))) {
                char *e = json_dumps(errors, JSON_SORT_KEYS);
                char *w = json_dumps(warnings, JSON_SORT_KEYS);
                fprintf(stderr, "%s %s: errors %s warnings %s\n", ms_system_slug(sys),
                        version, e, w);
                free(e);
                free(w);
        }
        assert_true(json_equal(errors, json_object_get(exp, "errors_by_code")));
        assert_true(json_equal(warnings, json_object_get(exp, "warnings_by_code")));
        assert_int_equal(error_count,
                         json_integer_value(json_object_get(exp, "error_count")));
        assert_int_equal(warning_count,
                         json_integer_value(json_object_get(exp, "warning_count")));
        assert_int_equal(json_array_size(recs),
                         json_integer_value(json_object_get(exp, "records_processed")));
        assert_int_equal(json_array_size(recs) - (size_t)error_count,
                         json_integer_value(json_object_get(exp, "records_synced")));
        json_decref(seen);
        json_decref(errors);
        json_decref(warnings);
}

static void test_canon_cornerstone_v1_counts_match_expected(void **state)
{
        (void)state;
        check_sample_counts(MS_SYSTEM_CORNERSTONE, "v1");
}

static void test_canon_cornerstone_v2_counts_match_expected(void **state)
{
        (void)state;
        check_sample_counts(MS_SYSTEM_CORNERSTONE, "v2");
}

static void test_canon_consio_v1_counts_match_expected(void **state)
{
        (void)state;
        check_sample_counts(MS_SYSTEM_CONSIO, "v1");
}

static void test_canon_consio_v2_counts_match_expected(void **state)
{
        (void)state;
        check_sample_counts(MS_SYSTEM_CONSIO, "v2");
}

/* Index of the v1 dirty case with this note (expected.json dirty_cases). */
static size_t dirty_index(ms_system_t sys, const char *note)
{
        const json_t *cases = json_object_get(samples[sys].expected, "dirty_cases");
        for (size_t i = 0; i < json_array_size(cases); i++) {
                const json_t *c = json_array_get(cases, i);
                if (strcmp(json_string_value(json_object_get(c, "note")), note) == 0)
                        return (size_t)json_integer_value(json_object_get(c, "index"));
        }
        fail_msg("no dirty case '%s' for %s", note, ms_system_slug(sys));
        return 0;
}

static void canon_dirty(ms_system_t sys, const char *note, ms_canon_result_t *r)
{
        size_t idx = dirty_index(sys, note);
        const json_t *rec = json_array_get(samples[sys].v1, idx);
        assert_int_equal(ms_canon_record(sys, rec, sample_today(sys), r), 0);
}

static const char *mstr(const ms_canon_result_t *r, const char *key)
{
        assert_non_null(r->member);
        const json_t *v = json_object_get(r->member, key);
        assert_non_null(v);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

static int is_null_field(const ms_canon_result_t *r, const char *key)
{
        assert_non_null(r->member);
        const json_t *v = json_object_get(r->member, key);
        assert_non_null(v); /* every key is present, null or not */
        return json_is_null(v);
}

static int count_warnings(const ms_canon_result_t *r, const char *code, const char *field)
{
        int n = 0;
        for (int i = 0; i < r->n_warnings; i++)
                if (strcmp(r->warnings[i].code, code) == 0 &&
                    (!field || strcmp(r->warnings[i].field, field) == 0))
                        n++;
        return n;
}

static void assert_error(const ms_canon_result_t *r, const char *code)
{
        if (strcmp(r->error.code, code) != 0)
                fail_msg("expected error %s, got '%s' (%s: %s)", code, r->error.code,
                         r->error.field, r->error.message);
        assert_null(r->member);
        assert_int_equal(r->n_warnings, 0);
}

static void assert_ok(const ms_canon_result_t *r)
{
        if (r->error.code[0])
                fail_msg("unexpected error %s (%s: %s)", r->error.code, r->error.field,
                         r->error.message);
        assert_non_null(r->member);
}

static void test_canon_sample_missing_member_number_is_missing_field(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "missing member number", &r);
                assert_error(&r, "MISSING_FIELD");
                assert_string_equal(r.error.field, "member_number");
                assert_non_null(r.external_id);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_blank_names_are_missing_field(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "both names blank", &r);
                assert_error(&r, "MISSING_FIELD");
                assert_string_equal(r.error.field, "given_name");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_unknown_status_is_invalid_status(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "unknown status", &r);
                assert_error(&r, "INVALID_STATUS");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_invalid_email_becomes_null_with_warning(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "invalid email", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "email"));
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "INVALID_EMAIL", "email"), 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_email_is_trimmed_and_domain_lowercased(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "email needs trim + domain lowercase", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "email"), "Ola.Hansen@example.no");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_short_phone_is_invalid_phone(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "invalid phone", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "phone"));
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "INVALID_PHONE", "phone"), 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_foreign_phone_is_kept_as_e164(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "foreign phone kept", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "phone"), "+46701234567");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void check_bad_birth(const char *note)
{
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, note, &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "birth_date"));
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "INVALID_DATE", "birth_date"), 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_impossible_birth_date_is_invalid_date(void **state)
{
        (void)state;
        check_bad_birth("impossible birth date");
}

static void test_canon_sample_future_birth_date_is_invalid_date(void **state)
{
        (void)state;
        check_bad_birth("future birth date");
}

static void test_canon_sample_birth_before_1900_is_invalid_date(void **state)
{
        (void)state;
        check_bad_birth("birth before 1900");
}

static void test_canon_sample_sami_letters_are_kept(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "Sami letters", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "given_name"), "\u00c1ilu");
                assert_string_equal(mstr(&r, "family_name"),
                                    "\u014auolja-S\u00e1r\u00e1");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_nfd_name_becomes_nfc(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "NFD name, must be NFC", &r);
                assert_ok(&r);
                /* "Rene" U+0301 "e" -> "Ren" U+00E9 "e" */
                assert_string_equal(mstr(&r, "given_name"), "Ren\u00e9e");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_emoji_name_is_kept(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "emoji in name", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "given_name"), "Kari \xf0\x9f\x8c\xb8");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_control_chars_in_name_become_spaces(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "control chars in name", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "family_name"), "Berg Hansen");
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

/* Code points in a UTF-8 string. */
static size_t cp_count(const char *s)
{
        size_t n = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xC0) != 0x80)
                        n++;
        return n;
}

static void test_canon_sample_300_char_name_is_truncated_to_200(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "300-char name, truncate to 200", &r);
                assert_ok(&r);
                const char *fam = mstr(&r, "family_name");
                assert_int_equal(cp_count(fam), 200);
                assert_int_equal(strncmp(fam, "\u00c5\u00c5\u00c5", 6), 0);
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "TRUNCATED", "family_name"), 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_html_name_without_number_is_missing_field(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty(
                    (ms_system_t)s,
                    "HTML in name + missing member number (shows in error details)", &r);
                assert_error(&r, "MISSING_FIELD");
                assert_string_equal(r.error.field, "member_number");
                assert_non_null(r.external_id);
                /* Error details carry no member data. */
                assert_null(strstr(r.error.message, "<img"));
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_unknown_role_is_dropped_with_warning(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                size_t idx = dirty_index((ms_system_t)s, "unknown role");
                const json_t *rec = json_array_get(samples[s].v1, idx);
                size_t native = json_array_size(json_object_get(rec, "roles"));
                canon_dirty((ms_system_t)s, "unknown role", &r);
                assert_ok(&r);
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "UNKNOWN_ROLE", "roles"), 1);
                /* Only the unknown one is dropped. */
                assert_int_equal(json_array_size(json_object_get(r.member, "roles")),
                                 native - 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_valid_to_before_valid_from_becomes_null(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "valid_to before valid_from", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "valid_to"));
                assert_int_equal(
                    json_integer_value(json_object_get(r.member, "valid_from")),
                    ms_days_from_civil(2024, 6, 1));
                assert_int_equal(r.n_warnings, 1);
                assert_int_equal(count_warnings(&r, "INVALID_DATE", "valid_to"), 1);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_numeric_member_number_is_coerced(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                size_t idx = dirty_index((ms_system_t)s, "numeric member number coerced");
                const json_t *rec = json_array_get(samples[s].v1, idx);
                const json_t *num = json_object_get(rec, s ? "memberNo" : "memberNumber");
                char want[32];
                assert_true(json_is_integer(num));
                snprintf(want, sizeof want, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(num));
                canon_dirty((ms_system_t)s, "numeric member number coerced", &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "member_number"), want);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_member_number_object_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "member number is an object: MALFORMED", &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "member_number");
                assert_non_null(r.external_id);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_null_roles_are_no_roles(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "roles null", &r);
                assert_ok(&r);
                const json_t *roles = json_object_get(r.member, "roles");
                assert_true(json_is_array(roles));
                assert_int_equal(json_array_size(roles), 0);
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_missing_external_id_is_missing_id(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "missing external id", &r);
                assert_error(&r, "MISSING_ID");
                assert_null(r.external_id);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_sample_duplicate_id_later_copy_is_duplicate(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_system_t sys = (ms_system_t)s;
                size_t idx = dirty_index(sys, "duplicate of an earlier id");
                const json_t *recs = samples[s].v1;
                char *id = ms_canon_external_id(sys, json_array_get(recs, idx));
                size_t first = idx;
                assert_non_null(id);
                for (size_t i = 0; i < idx && first == idx; i++) {
                        char *other = ms_canon_external_id(sys, json_array_get(recs, i));
                        if (other && strcmp(other, id) == 0)
                                first = i;
                        free(other);
                }
                assert_true(first < idx);
                ms_canon_result_t r;
                canon_dirty(sys, "duplicate of an earlier id", &r);
                /* On its own the record is fine; the caller's id set makes it
                 * a duplicate. */
                assert_ok(&r);
                ms_canon_result_set_duplicate(&r);
                assert_error(&r, "DUPLICATE_ID");
                assert_string_equal(r.external_id, id);
                ms_canon_result_clear(&r);
                free(id);
        }
}

static void test_canon_sample_null_entry_is_missing_id(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_dirty((ms_system_t)s, "null entry in array", &r);
                assert_error(&r, "MISSING_ID");
                assert_null(r.external_id);
                ms_canon_result_clear(&r);
        }
}

/* ---- synthetic records ------------------------------------------------------ */

static json_t *parse(const char *text)
{
        json_error_t err;
        json_t *j = json_loads(text, JSON_ALLOW_NUL, &err);
        if (!j)
                fail_msg("bad test JSON: %s", err.text);
        return j;
}

static json_t *cs_base(void)
{
        return parse(
            "{\"id\":\"cs-1\",\"memberNumber\":\"1001\",\"firstName\":\"Kari\","
            "\"lastName\":\"Nordmann\",\"email\":\"kari@example.no\","
            "\"mobilePhone\":\"48247716\",\"dateOfBirth\":\"1990-05-17\","
            "\"localAssociation\":{\"id\":\"LA-1\",\"name\":\"Bergen lokallag\"},"
            "\"membershipStatus\":\"Active\",\"membershipValidFrom\":\"2020-01-01\","
            "\"membershipValidTo\":\"2026-12-31\",\"roles\":[],"
            "\"lastModified\":\"2026-05-23T18:52:05Z\"}");
}

static json_t *cn_base(void)
{
        return parse("{\"actNo\":20000,\"memberNo\":\"100000\",\"firstName\":\"Ola\","
                     "\"lastName\":\"Hansen\",\"email\":\"ola@example.no\","
                     "\"mobile\":\"+47 473 43 565\",\"birthDate\":\"26.02.1966\","
                     "\"localBranch\":{\"no\":290,\"name\":\"Stavborg lokallag\"},"
                     "\"status\":\"Aktiv\",\"enrolledDate\":\"01.01.2006\","
                     "\"resignedDate\":null,\"roles\":[],"
                     "\"changedAt\":\"2024-11-16 05:48:14\"}");
}

static json_t *base(ms_system_t sys)
{
        return sys == MS_SYSTEM_CORNERSTONE ? cs_base() : cn_base();
}

/* Native key of a canonical field in each system. */
static const char *key(ms_system_t sys, const char *canonical)
{
        static const char *const map[][3] = {
            {"member_number", "memberNumber", "memberNo"},
            {"given_name", "firstName", "firstName"},
            {"family_name", "lastName", "lastName"},
            {"email", "email", "email"},
            {"phone", "mobilePhone", "mobile"},
            {"birth_date", "dateOfBirth", "birthDate"},
            {"status", "membershipStatus", "status"},
            {"valid_from", "membershipValidFrom", "enrolledDate"},
            {"valid_to", "membershipValidTo", "resignedDate"},
            {"roles", "roles", "roles"},
            {"local", "localAssociation", "localBranch"},
            {"id", "id", "actNo"},
            {"updated", "lastModified", "changedAt"},
        };
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
                if (strcmp(map[i][0], canonical) == 0)
                        return map[i][1 + sys];
        fail_msg("no key %s", canonical);
        return NULL;
}

/* Canonicalizes rec (consumed) into *r. */
static void canon(ms_system_t sys, json_t *rec, ms_canon_result_t *r)
{
        assert_int_equal(ms_canon_record(sys, rec, today(), r), 0);
        json_decref(rec);
}

/* Base record of sys with one native field replaced (value consumed). */
static void canon_with(ms_system_t sys, const char *canonical, json_t *value,
                       ms_canon_result_t *r)
{
        json_t *rec = base(sys);
        json_object_set_new(rec, key(sys, canonical), value);
        canon(sys, rec, r);
}

static void canon_str(ms_system_t sys, const char *canonical, const char *value,
                      ms_canon_result_t *r)
{
        canon_with(sys, canonical, json_string(value), r);
}

static void check_phone(const char *in, const char *want)
{
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "phone", in, &r);
                assert_ok(&r);
                if (want) {
                        assert_string_equal(mstr(&r, "phone"), want);
                        assert_int_equal(r.n_warnings, 0);
                } else {
                        assert_true(is_null_field(&r, "phone"));
                        assert_int_equal(count_warnings(&r, "INVALID_PHONE", "phone"), 1);
                }
                ms_canon_result_clear(&r);
        }
}

static void test_canon_phone_eight_digits_becomes_plus47(void **state)
{
        (void)state;
        check_phone("48247716", "+4748247716");
        check_phone("482 47 716", "+4748247716");
}

static void test_canon_phone_0047_prefix_becomes_plus47(void **state)
{
        (void)state;
        check_phone("004790341553", "+4790341553");
}

static void test_canon_phone_plus47_with_spaces_becomes_e164(void **state)
{
        (void)state;
        check_phone("+47 473 43 565", "+4747343565");
}

static void test_canon_phone_00_foreign_prefix_becomes_plus(void **state)
{
        (void)state;
        check_phone("0046 70 123 45 67", "+46701234567");
        check_phone("+1 (212) 555-0100", "+12125550100");
}

static void test_canon_phone_separators_are_removed(void **state)
{
        (void)state;
        check_phone("(+47) 482-47.716", "+4748247716");
}

static void test_canon_phone_unicode_spaces_and_dashes_are_separators(void **state)
{
        (void)state;
        check_phone("\u00a0482\u00a047\u2013716\u202f", "+4748247716");
        check_phone("+47\u2212482\u201047716", "+4748247716");
        check_phone("4824\n7716", NULL); /* a control character is not a separator */
}

static void test_canon_phone_wrong_digit_count_is_invalid(void **state)
{
        (void)state;
        check_phone("12345", NULL);
        check_phone("1234567", NULL);           /* 7 digits */
        check_phone("123456789", NULL);         /* 9 digits, no prefix */
        check_phone("+1234567", NULL);          /* '+' then 7 digits */
        check_phone("+1234567890123456", NULL); /* '+' then 16 digits */
        check_phone("0012345678901234567", NULL);
        check_phone("+12345678", "+12345678"); /* '+' then 8 is the minimum */
        check_phone("+123456789012345", "+123456789012345"); /* 15 is the maximum */
}

static void test_canon_phone_letters_and_misplaced_plus_are_invalid(void **state)
{
        (void)state;
        check_phone("4824771a", NULL);
        check_phone("47+48247716", NULL);
        check_phone("++4748247716", NULL);
        check_phone("+0123456789", NULL); /* no country code starts with 0 */
}

static void test_canon_phone_blank_is_null_without_warning(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "phone", "   ", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "phone"));
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "phone", json_null(), &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "phone"));
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_phone_number_given_as_json_number_is_coerced(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "phone", json_integer(48247716), &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "phone"), "+4748247716");
                ms_canon_result_clear(&r);
        }
}

static void check_email(const char *in, const char *want)
{
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "email", in, &r);
                assert_ok(&r);
                if (want) {
                        assert_string_equal(mstr(&r, "email"), want);
                        assert_int_equal(r.n_warnings, 0);
                } else {
                        assert_true(is_null_field(&r, "email"));
                        assert_int_equal(count_warnings(&r, "INVALID_EMAIL", "email"), 1);
                }
                ms_canon_result_clear(&r);
        }
}

static void test_canon_email_domain_lowercased_local_part_kept(void **state)
{
        (void)state;
        check_email("\t Kari.Nordmann@EXAMPLE.No \n", "Kari.Nordmann@example.no");
        check_email("ola@\u00d8RSTA.no", "ola@\u00f8rsta.no");
        check_email("\u00a0kari@example.no\u2003\r\n", "kari@example.no");
}

static void test_canon_email_without_one_at_is_invalid(void **state)
{
        (void)state;
        check_email("kari.nordmann(at)example.no", NULL);
        check_email("a@b@example.no", NULL);
        check_email("@example.no", NULL);
}

static void test_canon_email_without_tld_is_invalid(void **state)
{
        (void)state;
        check_email("kari@localhost", NULL);
        check_email("kari@example.", NULL);
        check_email("kari@.no", NULL);
        check_email("kari@example..no", NULL);
        check_email("kari@", NULL);
}

static void test_canon_email_with_inner_space_is_invalid(void **state)
{
        (void)state;
        check_email("kari nordmann@example.no", NULL);
        check_email("kari@exa mple.no", NULL);
        check_email("kari\u00a0n@example.no", NULL);
}

static void test_canon_email_longer_than_254_is_invalid(void **state)
{
        (void)state;
        char buf[400];
        memset(buf, 'a', 300);
        strcpy(buf + 300, "@example.no");
        check_email(buf, NULL);
}

static void test_canon_email_blank_is_null_without_warning(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "email", " ", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "email"));
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static void check_name(const char *in, const char *want, int truncated)
{
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "given_name", in, &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "given_name"), want);
                assert_int_equal(count_warnings(&r, "TRUNCATED", "given_name"),
                                 truncated);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_name_whitespace_is_collapsed_and_trimmed(void **state)
{
        (void)state;
        check_name("  Kari \t\r\n  Anne  ", "Kari Anne", 0);
}

static void test_canon_name_unicode_spaces_and_c1_become_space(void **state)
{
        (void)state;
        check_name("Kari\u00a0Anne\u2003Berit\xc2\x85Lise\x7f", "Kari Anne Berit Lise",
                   0);
}

static void test_canon_name_exactly_200_is_not_truncated(void **state)
{
        (void)state;
        char in[201], want[201];
        memset(in, 'x', 200);
        in[200] = '\0';
        strcpy(want, in);
        check_name(in, want, 0);
}

static void test_canon_name_truncation_never_leaves_trailing_space(void **state)
{
        (void)state;
        /* 199 letters, a space, then more: the cut lands on the space. */
        char in[300], want[300];
        memset(in, 'y', 199);
        strcpy(in + 199, " zzzz");
        memset(want, 'y', 199);
        want[199] = '\0';
        check_name(in, want, 1);
}

static void test_canon_name_trailing_spaces_past_200_are_not_truncation(void **state)
{
        (void)state;
        char in[300], want[300];
        memset(in, 'q', 200);
        strcpy(in + 200, "     \t");
        memset(want, 'q', 200);
        want[200] = '\0';
        check_name(in, want, 0);
}

static void test_canon_one_empty_name_is_accepted(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "given_name", json_null(), &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "given_name"), "");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_names_of_only_controls_are_missing_field(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                json_t *rec = base((ms_system_t)s);
                ms_canon_result_t r;
                json_object_set_new(rec, "firstName", json_string("\t\n\x01"));
                json_object_del(rec, "lastName");
                canon((ms_system_t)s, rec, &r);
                assert_error(&r, "MISSING_FIELD");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_local_association_name_is_normalized_and_truncated(void **state)
{
        (void)state;
        char name[400];
        memset(name, 'n', 250);
        name[250] = '\0';
        for (int s = 0; s < 2; s++) {
                ms_system_t sys = (ms_system_t)s;
                ms_canon_result_t r;
                json_t *la = json_pack("{s:s,s:s}", s ? "no" : "id", "7", "name",
                                       "  Bergen \t lokallag ");
                canon_with(sys, "local", la, &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "local_association_name"),
                                    "Bergen lokallag");
                assert_string_equal(mstr(&r, "local_association_id"), "7");
                ms_canon_result_clear(&r);

                la = json_pack("{s:s,s:s}", s ? "no" : "id", "7", "name", name);
                canon_with(sys, "local", la, &r);
                assert_ok(&r);
                assert_int_equal(strlen(mstr(&r, "local_association_name")), 200);
                assert_int_equal(
                    count_warnings(&r, "TRUNCATED", "local_association_name"), 1);
                ms_canon_result_clear(&r);

                la = json_pack("{s:s,s:n}", s ? "no" : "id", "7", "name");
                canon_with(sys, "local", la, &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "local_association_name"));
                ms_canon_result_clear(&r);
        }
}

static void test_canon_local_association_null_gives_both_null(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "local", json_null(), &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "local_association_id"));
                assert_true(is_null_field(&r, "local_association_name"));
                ms_canon_result_clear(&r);
        }
}

static void test_canon_consio_branch_number_becomes_string(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(MS_SYSTEM_CONSIO, cn_base(), &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "local_association_id"), "290");
        assert_string_equal(mstr(&r, "local_association_name"), "Stavborg lokallag");
        ms_canon_result_clear(&r);
}

static void test_canon_local_association_array_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "local", json_array(), &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "local_association_id");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "local", json_string("LA-1"), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
        }
}

/* ---- dates ---------------------------------------------------------------- */

static void test_canon_dates_are_days_since_epoch(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(MS_SYSTEM_CORNERSTONE, cs_base(), &r);
        assert_ok(&r);
        assert_int_equal(json_integer_value(json_object_get(r.member, "birth_date")),
                         ms_days_from_civil(1990, 5, 17));
        assert_int_equal(json_integer_value(json_object_get(r.member, "valid_from")),
                         ms_days_from_civil(2020, 1, 1));
        assert_int_equal(json_integer_value(json_object_get(r.member, "valid_to")),
                         ms_days_from_civil(2026, 12, 31));
        ms_canon_result_clear(&r);

        canon(MS_SYSTEM_CONSIO, cn_base(), &r);
        assert_ok(&r);
        assert_int_equal(json_integer_value(json_object_get(r.member, "birth_date")),
                         ms_days_from_civil(1966, 2, 26));
        assert_int_equal(json_integer_value(json_object_get(r.member, "valid_from")),
                         ms_days_from_civil(2006, 1, 1));
        assert_true(is_null_field(&r, "valid_to"));
        ms_canon_result_clear(&r);
}

static void check_date(ms_system_t sys, const char *field, const char *in, int valid)
{
        ms_canon_result_t r;
        canon_str(sys, field, in, &r);
        assert_ok(&r);
        if (valid) {
                assert_false(is_null_field(&r, field));
                assert_int_equal(r.n_warnings, 0);
        } else {
                assert_true(is_null_field(&r, field));
                assert_int_equal(count_warnings(&r, "INVALID_DATE", field), 1);
        }
        ms_canon_result_clear(&r);
}

static void test_canon_date_in_the_other_systems_format_is_invalid_date(void **state)
{
        (void)state;
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "17.05.1990", 0);
        check_date(MS_SYSTEM_CONSIO, "birth_date", "1990-05-17", 0);
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "1990-5-17", 0);
        check_date(MS_SYSTEM_CORNERSTONE, "valid_from", "2020-01-01T00:00:00Z", 0);
        check_date(MS_SYSTEM_CONSIO, "valid_from", "1.1.2020", 1);
}

static void test_canon_leap_days_follow_the_calendar(void **state)
{
        (void)state;
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "2000-02-29", 1);
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "1900-02-29", 0);
        check_date(MS_SYSTEM_CONSIO, "birth_date", "29.02.2024", 1);
        check_date(MS_SYSTEM_CONSIO, "birth_date", "29.02.2023", 0);
        check_date(MS_SYSTEM_CONSIO, "valid_from", "31.04.2020", 0);
        check_date(MS_SYSTEM_CORNERSTONE, "valid_to", "2026-13-01", 0);
}

static void test_canon_birth_date_bounds_are_inclusive(void **state)
{
        (void)state;
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "1900-01-01", 1);
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "2026-12-01", 1); /* today */
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "2026-12-02", 0);
        check_date(MS_SYSTEM_CONSIO, "birth_date", "01.01.1900", 1);
        check_date(MS_SYSTEM_CONSIO, "birth_date", "31.12.1899", 0);
}

static void test_canon_valid_to_equal_to_valid_from_is_kept(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "membershipValidFrom", json_string("2024-06-01"));
        json_object_set_new(rec, "membershipValidTo", json_string("2024-06-01"));
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_ok(&r);
        assert_false(is_null_field(&r, "valid_to"));
        assert_int_equal(r.n_warnings, 0);
        ms_canon_result_clear(&r);
}

static void test_canon_each_bad_date_gets_its_own_warning(void **state)
{
        (void)state;
        json_t *rec = cn_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "birthDate", json_string("30.02.1978"));
        json_object_set_new(rec, "enrolledDate", json_string("32.01.2020"));
        json_object_set_new(rec, "resignedDate", json_string("soon"));
        canon(MS_SYSTEM_CONSIO, rec, &r);
        assert_ok(&r);
        assert_int_equal(count_warnings(&r, "INVALID_DATE", NULL), 3);
        assert_int_equal(r.n_warnings, 3);
        ms_canon_result_clear(&r);
}

static void test_canon_date_object_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "birth_date", json_object(), &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "birth_date");
                ms_canon_result_clear(&r);
        }
}

/* ---- status and roles ------------------------------------------------------ */

static void test_canon_statuses_map_to_the_enum(void **state)
{
        (void)state;
        static const char *const cs[] = {"Active", "Lapsed", "Resigned", "Deceased"};
        static const char *const cn[] = {"Aktiv", "Ikke betalt", "Utmeldt", "D\u00f8d"};
        static const char *const want[] = {"ACTIVE", "LAPSED", "RESIGNED", "DECEASED"};
        for (int i = 0; i < 4; i++) {
                ms_canon_result_t r;
                canon_str(MS_SYSTEM_CORNERSTONE, "status", cs[i], &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "status"), want[i]);
                ms_canon_result_clear(&r);
                canon_str(MS_SYSTEM_CONSIO, "status", cn[i], &r);
                assert_ok(&r);
                assert_string_equal(mstr(&r, "status"), want[i]);
                ms_canon_result_clear(&r);
        }
}

static void test_canon_status_is_trimmed_but_case_sensitive(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CONSIO, "status", "  Ikke betalt ", &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "status"), "LAPSED");
        ms_canon_result_clear(&r);
        canon_str(MS_SYSTEM_CORNERSTONE, "status", "ACTIVE", &r);
        assert_error(&r, "INVALID_STATUS");
        ms_canon_result_clear(&r);
        /* The other system's vocabulary is not accepted. */
        canon_str(MS_SYSTEM_CORNERSTONE, "status", "Aktiv", &r);
        assert_error(&r, "INVALID_STATUS");
        ms_canon_result_clear(&r);
}

static void test_canon_missing_status_is_invalid_status(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "status", json_null(), &r);
                assert_error(&r, "INVALID_STATUS");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_roles_are_mapped_sorted_and_deduplicated(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_with(MS_SYSTEM_CORNERSTONE, "roles",
                   json_pack("[s,s,s,s,s]", "PeerMentor", "LocalLeader", "BoardMember",
                             "Coordinator", "PeerMentor"),
                   &r);
        assert_ok(&r);
        json_t *want = json_pack("[s,s,s,s]", "BOARD_MEMBER", "COORDINATOR",
                                 "LOCAL_LEADER", "PEER_MENTOR");
        assert_true(json_equal(json_object_get(r.member, "roles"), want));
        assert_int_equal(r.n_warnings, 0);
        ms_canon_result_clear(&r);

        canon_with(MS_SYSTEM_CONSIO, "roles",
                   json_pack("[s,s,s,s]", "Styremedlem", "Likeperson", "Koordinator",
                             "Lokallagsleder"),
                   &r);
        assert_ok(&r);
        assert_true(json_equal(json_object_get(r.member, "roles"), want));
        ms_canon_result_clear(&r);
        json_decref(want);
}

static void test_canon_roles_missing_is_no_roles(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_del(rec, "roles");
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_ok(&r);
        assert_int_equal(json_array_size(json_object_get(r.member, "roles")), 0);
        ms_canon_result_clear(&r);
}

static void test_canon_each_unknown_role_gets_a_warning(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_with(MS_SYSTEM_CONSIO, "roles",
                   json_pack("[s,i,n,s,s]", "Kasserer", 7, "Likeperson", "likeperson"),
                   &r);
        assert_ok(&r);
        assert_int_equal(count_warnings(&r, "UNKNOWN_ROLE", "roles"), 4);
        json_t *want = json_pack("[s]", "PEER_MENTOR");
        assert_true(json_equal(json_object_get(r.member, "roles"), want));
        json_decref(want);
        ms_canon_result_clear(&r);
}

static void test_canon_many_unknown_roles_are_capped_not_lost(void **state)
{
        (void)state;
        json_t *roles = json_array();
        ms_canon_result_t r;
        for (int i = 0; i < 1000; i++)
                json_array_append_new(roles, json_string("Treasurer"));
        canon_with(MS_SYSTEM_CORNERSTONE, "roles", roles, &r);
        assert_ok(&r);
        assert_int_equal(r.n_warnings, MS_CANON_MAX_WARNINGS);
        assert_non_null(
            strstr(r.warnings[MS_CANON_MAX_WARNINGS - 1].message, "984 later"));
        ms_canon_result_clear(&r);
}

static void test_canon_roles_not_an_array_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "roles", json_string("PeerMentor"), &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "roles");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "roles", json_object(), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
        }
}

/* ---- ids and member numbers ------------------------------------------------ */

static void test_canon_cornerstone_numeric_id_is_coerced(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_with(MS_SYSTEM_CORNERSTONE, "id", json_integer(12345), &r);
        assert_ok(&r);
        assert_string_equal(r.external_id, "12345");
        assert_string_equal(mstr(&r, "external_id"), "12345");
        ms_canon_result_clear(&r);
        canon_with(MS_SYSTEM_CORNERSTONE, "id", json_string("  cs-9  "), &r);
        assert_ok(&r);
        assert_string_equal(r.external_id, "cs-9");
        ms_canon_result_clear(&r);
}

static void test_canon_consio_actno_integer_and_numeric_string_agree(void **state)
{
        (void)state;
        const char *spellings[] = {"20000", " 020000 ", "+20000"};
        json_t *rec = cn_base();
        char *want = ms_canon_external_id(MS_SYSTEM_CONSIO, rec);
        assert_string_equal(want, "20000");
        json_decref(rec);
        for (size_t i = 0; i < 3; i++) {
                ms_canon_result_t r;
                canon_str(MS_SYSTEM_CONSIO, "id", spellings[i], &r);
                assert_ok(&r);
                assert_string_equal(r.external_id, want);
                ms_canon_result_clear(&r);
        }
        ms_canon_result_t r;
        canon_with(MS_SYSTEM_CONSIO, "id", json_real(20000.0), &r);
        assert_ok(&r);
        assert_string_equal(r.external_id, want);
        ms_canon_result_clear(&r);
        free(want);
}

static void test_canon_consio_non_numeric_actno_is_missing_id(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CONSIO, "id", "A-20000", &r);
        assert_error(&r, "MISSING_ID");
        assert_null(r.external_id);
        ms_canon_result_clear(&r);
}

static void test_canon_unusable_external_id_is_missing_id(void **state)
{
        (void)state;
        json_t *bad[] = {json_object(),   json_array(),       json_true(), json_real(1.5),
                         json_string(""), json_string("   "), json_null()};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                for (int s = 0; s < 2; s++) {
                        ms_canon_result_t r;
                        canon_with((ms_system_t)s, "id", json_incref(bad[i]), &r);
                        assert_error(&r, "MISSING_ID");
                        assert_null(r.external_id);
                        ms_canon_result_clear(&r);
                }
                json_decref(bad[i]);
        }
}

static void test_canon_external_id_is_set_even_with_an_error(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CORNERSTONE, "status", "Suspended", &r);
        assert_error(&r, "INVALID_STATUS");
        assert_string_equal(r.external_id, "cs-1");
        ms_canon_result_clear(&r);
}

static void test_canon_member_number_is_trimmed(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CONSIO, "member_number", "  A-100 ", &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "member_number"), "A-100");
        ms_canon_result_clear(&r);
        canon_str(MS_SYSTEM_CONSIO, "member_number", "   ", &r);
        assert_error(&r, "MISSING_FIELD");
        ms_canon_result_clear(&r);
}

static void test_canon_member_number_array_or_bool_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "member_number", json_pack("[i]", 1), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "member_number", json_false(), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "member_number", json_real(12.5), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_external_id_function_matches_record(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        char *id = ms_canon_external_id(MS_SYSTEM_CORNERSTONE, rec);
        assert_string_equal(id, "cs-1");
        free(id);
        assert_null(ms_canon_external_id(MS_SYSTEM_CORNERSTONE, json_null()));
        json_object_del(rec, "id");
        assert_null(ms_canon_external_id(MS_SYSTEM_CORNERSTONE, rec));
        json_decref(rec);
}

/* ---- error precedence ---------------------------------------------------------- */

static void test_canon_malformed_beats_missing_field_and_status(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "email", json_object());
        json_object_del(rec, "memberNumber");
        json_object_set_new(rec, "membershipStatus", json_string("Suspended"));
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_error(&r, "MALFORMED");
        assert_string_equal(r.error.field, "email");
        ms_canon_result_clear(&r);
}

static void test_canon_missing_field_beats_invalid_status(void **state)
{
        (void)state;
        json_t *rec = cn_base();
        ms_canon_result_t r;
        json_object_del(rec, "memberNo");
        json_object_set_new(rec, "status", json_string("Suspendert"));
        canon(MS_SYSTEM_CONSIO, rec, &r);
        assert_error(&r, "MISSING_FIELD");
        ms_canon_result_clear(&r);
}

static void test_canon_record_with_error_has_no_warnings(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "email", json_string("bad"));
        json_object_set_new(rec, "mobilePhone", json_string("1"));
        json_object_del(rec, "memberNumber");
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_error(&r, "MISSING_FIELD");
        ms_canon_result_clear(&r);
}

static void test_canon_duplicate_does_not_override_missing_id(void **state)
{
        (void)state;
        ms_canon_result_t r;
        assert_int_equal(ms_canon_record(MS_SYSTEM_CONSIO, NULL, today(), &r), 0);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_set_duplicate(&r);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_clear(&r);
}

/* ---- timestamps ------------------------------------------------------------- */

static int64_t updated_at(const ms_canon_result_t *r)
{
        const json_t *v = json_object_get(r->member, "source_updated_at");
        assert_true(json_is_integer(v));
        return json_integer_value(v);
}

static void test_canon_cornerstone_last_modified_becomes_epoch_ms(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(MS_SYSTEM_CORNERSTONE, cs_base(), &r);
        assert_ok(&r);
        assert_int_equal(updated_at(&r),
                         INT64_C(1779562325000)); /* 2026-05-23T18:52:05Z */
        ms_canon_result_clear(&r);
        canon_str(MS_SYSTEM_CORNERSTONE, "updated", "2026-05-23T20:52:05.250+02:00", &r);
        assert_ok(&r);
        assert_int_equal(updated_at(&r), INT64_C(1779562325250));
        ms_canon_result_clear(&r);
}

static void test_canon_unparseable_timestamp_is_null_without_warning(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_str((ms_system_t)s, "updated", "yesterday", &r);
                assert_ok(&r);
                assert_true(is_null_field(&r, "source_updated_at"));
                assert_int_equal(r.n_warnings, 0);
                ms_canon_result_clear(&r);
        }
}

static int64_t consio_changed_at(const char *text)
{
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CONSIO, "updated", text, &r);
        assert_ok(&r);
        int64_t v = updated_at(&r);
        ms_canon_result_clear(&r);
        return v;
}

/* Expected values were computed with Python's zoneinfo Europe/Oslo (fold=0). */
static void test_canon_consio_changed_at_winter_uses_plus1(void **state)
{
        (void)state;
        assert_int_equal(consio_changed_at("2025-01-15 12:00:00"),
                         INT64_C(1736938800000));
        assert_int_equal(consio_changed_at("2024-11-16 05:48:14"),
                         INT64_C(1731732494000));
}

static void test_canon_consio_changed_at_summer_uses_plus2(void **state)
{
        (void)state;
        assert_int_equal(consio_changed_at("2025-07-15 12:00:00"),
                         INT64_C(1752573600000));
}

static void test_canon_consio_changed_at_spring_gap_uses_winter_offset(void **state)
{
        (void)state;
        assert_int_equal(consio_changed_at("2025-03-30 01:59:59"),
                         INT64_C(1743296399000));
        assert_int_equal(consio_changed_at("2025-03-30 02:00:00"),
                         INT64_C(1743296400000));
        assert_int_equal(consio_changed_at("2025-03-30 02:30:00"),
                         INT64_C(1743298200000));
        assert_int_equal(consio_changed_at("2024-03-31 02:15:00"),
                         INT64_C(1711847700000));
        /* 03:00 is the first summer-time instant, the same as 02:00 +01:00. */
        assert_int_equal(consio_changed_at("2025-03-30 03:00:00"),
                         INT64_C(1743296400000));
}

static void
test_canon_consio_changed_at_autumn_ambiguity_is_first_occurrence(void **state)
{
        (void)state;
        assert_int_equal(consio_changed_at("2025-10-26 01:59:59"),
                         INT64_C(1761436799000));
        assert_int_equal(consio_changed_at("2025-10-26 02:00:00"),
                         INT64_C(1761436800000));
        assert_int_equal(consio_changed_at("2025-10-26 02:30:00"),
                         INT64_C(1761438600000));
        assert_int_equal(consio_changed_at("2025-10-26 02:59:59"),
                         INT64_C(1761440399000));
        assert_int_equal(consio_changed_at("2025-10-26 03:00:00"),
                         INT64_C(1761444000000));
        assert_int_equal(consio_changed_at("2024-10-27 02:15:00"),
                         INT64_C(1729988100000));
}

static void test_canon_consio_changed_at_with_explicit_zone_is_honoured(void **state)
{
        (void)state;
        assert_int_equal(consio_changed_at("2025-07-15 12:00:00Z"),
                         INT64_C(1752580800000));
        assert_int_equal(consio_changed_at("2025-07-15T12:00:00.5"),
                         INT64_C(1752573600500));
}

/* ---- hostile input ------------------------------------------------------------ */

static void test_canon_invalid_utf8_in_a_field_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "given_name", json_string_nocheck("Ka\xffri"),
                           &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "given_name");
                ms_canon_result_clear(&r);
                /* Overlong encoding and a lone surrogate, in other fields. */
                canon_with((ms_system_t)s, "email",
                           json_string_nocheck("a\xc0\xaf"
                                               "b@x.no"),
                           &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "status", json_string_nocheck("\xed\xa0\x80"),
                           &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "roles",
                           json_pack("[o]", json_string_nocheck("\xf8")), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                /* Truncated sequence at the very end. */
                canon_with((ms_system_t)s, "family_name",
                           json_string_nocheck("Hansen\xe2\x82"), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_invalid_utf8_in_id_is_missing_id(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon_with(MS_SYSTEM_CORNERSTONE, "id", json_string_nocheck("cs-\xff"), &r);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_clear(&r);
}

static void test_canon_nul_escape_in_name_becomes_space(void **state)
{
        (void)state;
        json_t *rec =
            parse("{\"id\":\"cs-1\",\"memberNumber\":\"1\",\"firstName\":"
                  "\"Ka\\u0000ri\",\"lastName\":\"\\u0000\",\"membershipStatus\":"
                  "\"Active\"}");
        ms_canon_result_t r;
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "given_name"), "Ka ri");
        assert_string_equal(mstr(&r, "family_name"), "");
        assert_int_equal(json_string_length(json_object_get(r.member, "given_name")), 5);
        ms_canon_result_clear(&r);
}

static void test_canon_nul_escape_in_identifiers_is_rejected(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(MS_SYSTEM_CORNERSTONE,
              parse("{\"id\":\"cs-1\",\"memberNumber\":\"1\\u00002\",\"firstName\":\"A\","
                    "\"membershipStatus\":\"Active\"}"),
              &r);
        assert_error(&r, "MALFORMED");
        assert_string_equal(r.error.field, "member_number");
        ms_canon_result_clear(&r);
        canon(MS_SYSTEM_CORNERSTONE,
              parse("{\"id\":\"cs\\u00001\",\"memberNumber\":\"1\",\"firstName\":\"A\","
                    "\"membershipStatus\":\"Active\"}"),
              &r);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_clear(&r);
        canon(MS_SYSTEM_CONSIO,
              parse("{\"actNo\":1,\"memberNo\":\"1\",\"firstName\":\"A\",\"status\":"
                    "\"Aktiv\","
                    "\"localBranch\":{\"no\":\"1\\u00002\",\"name\":\"x\"}}"),
              &r);
        assert_error(&r, "MALFORMED");
        assert_string_equal(r.error.field, "local_association_id");
        ms_canon_result_clear(&r);
}

static void test_canon_nul_escape_elsewhere_is_a_warning_not_a_crash(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(MS_SYSTEM_CORNERSTONE,
              parse("{\"id\":\"cs-1\",\"memberNumber\":\"1\",\"firstName\":\"A\","
                    "\"membershipStatus\":\"Active\",\"email\":\"a\\u0000@x.no\","
                    "\"mobilePhone\":\"4824\\u00007716\",\"dateOfBirth\":\"1990-01-"
                    "01\\u0000\","
                    "\"lastModified\":\"2026-05-23T18:52:05Z\\u0000junk\"}"),
              &r);
        assert_ok(&r);
        assert_int_equal(count_warnings(&r, "INVALID_EMAIL", "email"), 1);
        assert_int_equal(count_warnings(&r, "INVALID_PHONE", "phone"), 1);
        assert_int_equal(count_warnings(&r, "INVALID_DATE", "birth_date"), 1);
        assert_true(is_null_field(&r, "source_updated_at"));
        ms_canon_result_clear(&r);
        canon(MS_SYSTEM_CORNERSTONE,
              parse("{\"id\":\"cs-1\",\"memberNumber\":\"1\",\"firstName\":\"A\","
                    "\"membershipStatus\":\"Active\\u0000\"}"),
              &r);
        assert_error(&r, "INVALID_STATUS");
        ms_canon_result_clear(&r);
}

static void test_canon_surrogate_pair_emoji_survives(void **state)
{
        (void)state;
        ms_canon_result_t r;
        canon(
            MS_SYSTEM_CONSIO,
            parse("{\"actNo\":1,\"memberNo\":\"1\",\"firstName\":\"\\ud83d\\ude00 Ola\","
                  "\"lastName\":\"\\ud83d\\udc68\\u200d\\ud83d\\udc69\",\"status\":"
                  "\"Aktiv\"}"),
            &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "given_name"), "\xf0\x9f\x98\x80 Ola");
        assert_string_equal(mstr(&r, "family_name"),
                            "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9");
        ms_canon_result_clear(&r);
        /* jansson refuses a lone surrogate escape outright. */
        json_error_t err;
        assert_null(json_loads("{\"firstName\":\"\\ud83d\"}", 0, &err));
}

static void test_canon_huge_strings_are_bounded(void **state)
{
        (void)state;
        size_t n = 4 * 1024 * 1024;
        char *big = malloc(n + 1);
        assert_non_null(big);
        memset(big, 'a', n);
        big[n] = '\0';
        for (int s = 0; s < 2; s++) {
                ms_system_t sys = (ms_system_t)s;
                ms_canon_result_t r;
                json_t *rec = base(sys);
                json_object_set_new(rec, "firstName", json_string(big));
                json_object_set_new(rec, "email", json_string(big));
                json_object_set_new(rec, key(sys, "phone"), json_string(big));
                json_object_set_new(rec, key(sys, "birth_date"), json_string(big));
                json_object_set_new(rec, key(sys, "updated"), json_string(big));
                json_object_set_new(rec, "roles", json_pack("[s]", big));
                canon(sys, rec, &r);
                assert_ok(&r);
                assert_int_equal(strlen(mstr(&r, "given_name")), 200);
                assert_int_equal(r.n_warnings, 5);
                ms_canon_result_clear(&r);

                canon_str(sys, "member_number", big, &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "member_number");
                ms_canon_result_clear(&r);

                canon_str(sys, "status", big, &r);
                assert_error(&r, "INVALID_STATUS");
                ms_canon_result_clear(&r);
        }
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "id", json_string(big));
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_clear(&r);
        free(big);
}

static void test_canon_huge_nfd_name_goes_through_the_heap_path(void **state)
{
        (void)state;
        /* 100k times "e" U+0301: NFC makes 100k "é", cut to 200. */
        size_t reps = 100000;
        char *s = malloc(reps * 3 + 1);
        assert_non_null(s);
        for (size_t i = 0; i < reps; i++)
                memcpy(s + 3 * i, "e\xcc\x81", 3);
        s[reps * 3] = '\0';
        ms_canon_result_t r;
        canon_str(MS_SYSTEM_CORNERSTONE, "family_name", s, &r);
        assert_ok(&r);
        const char *fam = mstr(&r, "family_name");
        assert_int_equal(cp_count(fam), 200);
        assert_int_equal(strlen(fam), 400);
        assert_int_equal(memcmp(fam, "\xc3\xa9", 2), 0);
        assert_int_equal(count_warnings(&r, "TRUNCATED", "family_name"), 1);
        ms_canon_result_clear(&r);
        free(s);
}

static void test_canon_non_object_records_are_missing_id(void **state)
{
        (void)state;
        json_t *vals[] = {json_array(),    json_string("cs-1"),
                          json_integer(5), json_true(),
                          json_null(),     json_pack("[{s:s}]", "id", "cs-1")};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
                for (int s = 0; s < 2; s++) {
                        ms_canon_result_t r;
                        assert_int_equal(
                            ms_canon_record((ms_system_t)s, vals[i], today(), &r), 0);
                        assert_error(&r, "MISSING_ID");
                        assert_null(r.external_id);
                        ms_canon_result_clear(&r);
                }
                json_decref(vals[i]);
        }
        ms_canon_result_t r;
        assert_int_equal(ms_canon_record(MS_SYSTEM_CORNERSTONE, NULL, today(), &r), 0);
        assert_error(&r, "MISSING_ID");
        ms_canon_result_clear(&r);
}

static void test_canon_numbers_for_string_fields_are_coerced(void **state)
{
        (void)state;
        json_t *rec = cs_base();
        ms_canon_result_t r;
        json_object_set_new(rec, "firstName", json_integer(42));
        json_object_set_new(rec, "lastName", json_real(7.0));
        json_object_set_new(rec, "memberNumber", json_integer(-3));
        canon(MS_SYSTEM_CORNERSTONE, rec, &r);
        assert_ok(&r);
        assert_string_equal(mstr(&r, "given_name"), "42");
        assert_string_equal(mstr(&r, "family_name"), "7");
        assert_string_equal(mstr(&r, "member_number"), "-3");
        ms_canon_result_clear(&r);
        /* A number where a date string is expected is not a date. */
        check_date(MS_SYSTEM_CORNERSTONE, "birth_date", "19900517", 0);
        canon_with(MS_SYSTEM_CORNERSTONE, "birth_date", json_integer(19900517), &r);
        assert_ok(&r);
        assert_int_equal(count_warnings(&r, "INVALID_DATE", "birth_date"), 1);
        ms_canon_result_clear(&r);
}

static void test_canon_fractional_or_bool_for_string_is_malformed(void **state)
{
        (void)state;
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon_with((ms_system_t)s, "given_name", json_real(1.5), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "phone", json_true(), &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "phone");
                ms_canon_result_clear(&r);
                canon_with((ms_system_t)s, "updated", json_array(), &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
        }
}

static void test_canon_arrays_where_objects_are_expected_are_handled(void **state)
{
        (void)state;
        /* The record itself an array: MISSING_ID; a nested object an array:
         * MALFORMED; an array inside the local association: MALFORMED. */
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                json_t *la = json_pack("{s:[],s:s}", s ? "no" : "id", "name", "x");
                canon_with((ms_system_t)s, "local", la, &r);
                assert_error(&r, "MALFORMED");
                ms_canon_result_clear(&r);
                la = json_pack("{s:s,s:{}}", s ? "no" : "id", "1", "name");
                canon_with((ms_system_t)s, "local", la, &r);
                assert_error(&r, "MALFORMED");
                assert_string_equal(r.error.field, "local_association_name");
                ms_canon_result_clear(&r);
        }
}

/* ---- member shape, hash, changed fields ----------------------------------- */

static void test_canon_member_has_exactly_the_contract_keys(void **state)
{
        (void)state;
        static const char *const keys[] = {"external_id",
                                           "member_number",
                                           "given_name",
                                           "family_name",
                                           "email",
                                           "phone",
                                           "birth_date",
                                           "local_association_id",
                                           "local_association_name",
                                           "status",
                                           "valid_from",
                                           "valid_to",
                                           "roles",
                                           "source_updated_at"};
        for (int s = 0; s < 2; s++) {
                ms_canon_result_t r;
                canon((ms_system_t)s, base((ms_system_t)s), &r);
                assert_ok(&r);
                assert_int_equal(json_object_size(r.member), 14);
                for (size_t i = 0; i < 14; i++)
                        assert_non_null(json_object_get(r.member, keys[i]));
                ms_canon_result_clear(&r);
        }
}

static json_t *member_of(ms_system_t sys, json_t *rec)
{
        ms_canon_result_t r;
        canon(sys, rec, &r);
        assert_ok(&r);
        json_t *m = json_incref(r.member);
        ms_canon_result_clear(&r);
        return m;
}

static void test_canon_hash_is_equal_for_equal_members(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        json_t *b = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        json_t *c = json_deep_copy(a);
        assert_true(ms_canon_member_hash(a) == ms_canon_member_hash(b));
        /* Key order does not matter. */
        json_t *d = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) json_object_set(d, k, v);
        assert_true(ms_canon_member_hash(a) == ms_canon_member_hash(d));
        json_object_set_new(c, "source_updated_at", json_integer(1));
        assert_true(ms_canon_member_hash(a) == ms_canon_member_hash(c));
        json_decref(a);
        json_decref(b);
        json_decref(c);
        json_decref(d);
}

static void test_canon_hash_changes_with_every_field(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        uint64_t h = ms_canon_member_hash(a);
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v)
        {
                if (strcmp(k, "source_updated_at") == 0)
                        continue;
                json_t *c = json_deep_copy(a);
                if (json_is_string(v))
                        json_object_set_new(c, k, json_string("changed"));
                else if (json_is_integer(v))
                        json_object_set_new(c, k,
                                            json_integer(json_integer_value(v) + 1));
                else if (json_is_array(v))
                        json_object_set_new(c, k, json_pack("[s]", "PEER_MENTOR"));
                assert_true(ms_canon_member_hash(c) != h);
                json_decref(c);
        }
        json_decref(a);
}

static void test_canon_hash_distinguishes_null_from_empty_string(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        json_t *b = json_deep_copy(a);
        json_object_set_new(a, "email", json_null());
        json_object_set_new(b, "email", json_string(""));
        assert_true(ms_canon_member_hash(a) != ms_canon_member_hash(b));
        /* Moving text between adjacent fields changes the hash too. */
        json_object_set_new(a, "given_name", json_string("ab"));
        json_object_set_new(a, "family_name", json_string("c"));
        json_object_set_new(b, "email", json_null());
        json_object_set_new(b, "given_name", json_string("a"));
        json_object_set_new(b, "family_name", json_string("bc"));
        assert_true(ms_canon_member_hash(a) != ms_canon_member_hash(b));
        json_decref(a);
        json_decref(b);
}

static void test_canon_hash_and_diff_treat_roles_as_a_set(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        json_t *b = json_deep_copy(a);
        json_object_set_new(a, "roles", json_pack("[s,s]", "COORDINATOR", "PEER_MENTOR"));
        json_object_set_new(b, "roles", json_pack("[s,s]", "PEER_MENTOR", "COORDINATOR"));
        assert_true(ms_canon_member_hash(a) == ms_canon_member_hash(b));
        json_t *diff = ms_canon_changed_fields(a, b);
        assert_int_equal(json_array_size(diff), 0);
        json_decref(diff);
        json_decref(a);
        json_decref(b);
}

static void test_canon_changed_fields_lists_fields_in_schema_order(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CORNERSTONE, cs_base());
        json_t *b = json_deep_copy(a);
        json_object_set_new(b, "status", json_string("LAPSED"));
        json_object_set_new(b, "email", json_null());
        json_object_set_new(b, "roles", json_pack("[s]", "BOARD_MEMBER"));
        json_object_set_new(b, "source_updated_at", json_integer(7));
        json_t *diff = ms_canon_changed_fields(a, b);
        json_t *want = json_pack("[s,s,s]", "email", "status", "roles");
        assert_true(json_equal(diff, want));
        json_decref(diff);
        json_decref(want);
        json_t *same = json_deep_copy(a);
        diff = ms_canon_changed_fields(a, same);
        assert_int_equal(json_array_size(diff), 0);
        json_decref(diff);
        json_decref(same);
        json_decref(a);
        json_decref(b);
}

static void test_canon_changed_fields_with_no_before_lists_all(void **state)
{
        (void)state;
        json_t *a = member_of(MS_SYSTEM_CONSIO, cn_base());
        json_t *diff = ms_canon_changed_fields(NULL, a);
        assert_int_equal(json_array_size(diff), 13);
        assert_string_equal(json_string_value(json_array_get(diff, 0)), "external_id");
        assert_string_equal(json_string_value(json_array_get(diff, 12)), "roles");
        json_decref(diff);
        json_decref(a);
}

static void test_canon_system_enum_slug_and_parse(void **state)
{
        (void)state;
        ms_system_t s;
        assert_string_equal(ms_system_enum(MS_SYSTEM_CORNERSTONE), "CORNERSTONE");
        assert_string_equal(ms_system_enum(MS_SYSTEM_CONSIO), "CONSIO");
        assert_string_equal(ms_system_slug(MS_SYSTEM_CORNERSTONE), "cornerstone");
        assert_string_equal(ms_system_slug(MS_SYSTEM_CONSIO), "consio");
        assert_int_equal(ms_system_parse("CONSIO", &s), 0);
        assert_int_equal(s, MS_SYSTEM_CONSIO);
        assert_int_equal(ms_system_parse("cornerstone", &s), 0);
        assert_int_equal(s, MS_SYSTEM_CORNERSTONE);
        assert_int_equal(ms_system_parse("CornerStone", &s), 0);
        assert_int_equal(s, MS_SYSTEM_CORNERSTONE);
        assert_int_equal(ms_system_parse("other", &s), -1);
        assert_int_equal(ms_system_parse("", &s), -1);
        assert_int_equal(ms_system_parse(NULL, &s), -1);
}

/* Not a benchmark gate (sanitizer builds are slow); it prints the per-record
 * cost and only fails on something pathological. */
static void test_canon_throughput_is_a_few_microseconds_per_record(void **state)
{
        (void)state;
        struct timespec t0, t1;
        size_t n = 0;
        int rounds = 20;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int k = 0; k < rounds; k++) {
                for (int s = 0; s < 2; s++) {
                        const json_t *recs = samples[s].v1;
                        for (size_t i = 0; i < json_array_size(recs); i++) {
                                ms_canon_result_t r;
                                ms_canon_record((ms_system_t)s, json_array_get(recs, i),
                                                today(), &r);
                                if (r.member)
                                        (void)ms_canon_member_hash(r.member);
                                ms_canon_result_clear(&r);
                                n++;
                        }
                }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 +
                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
                    (double)n;
        fprintf(stderr, "ms_canon_record + hash: %.2f us/record over %zu records\n", us,
                n);
        assert_true(us < 500.0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_canon_cornerstone_v1_counts_match_expected),
            cmocka_unit_test(test_canon_cornerstone_v2_counts_match_expected),
            cmocka_unit_test(test_canon_consio_v1_counts_match_expected),
            cmocka_unit_test(test_canon_consio_v2_counts_match_expected),
            cmocka_unit_test(test_canon_sample_missing_member_number_is_missing_field),
            cmocka_unit_test(test_canon_sample_blank_names_are_missing_field),
            cmocka_unit_test(test_canon_sample_unknown_status_is_invalid_status),
            cmocka_unit_test(test_canon_sample_invalid_email_becomes_null_with_warning),
            cmocka_unit_test(test_canon_sample_email_is_trimmed_and_domain_lowercased),
            cmocka_unit_test(test_canon_sample_short_phone_is_invalid_phone),
            cmocka_unit_test(test_canon_sample_foreign_phone_is_kept_as_e164),
            cmocka_unit_test(test_canon_sample_impossible_birth_date_is_invalid_date),
            cmocka_unit_test(test_canon_sample_future_birth_date_is_invalid_date),
            cmocka_unit_test(test_canon_sample_birth_before_1900_is_invalid_date),
            cmocka_unit_test(test_canon_sample_sami_letters_are_kept),
            cmocka_unit_test(test_canon_sample_nfd_name_becomes_nfc),
            cmocka_unit_test(test_canon_sample_emoji_name_is_kept),
            cmocka_unit_test(test_canon_sample_control_chars_in_name_become_spaces),
            cmocka_unit_test(test_canon_sample_300_char_name_is_truncated_to_200),
            cmocka_unit_test(test_canon_sample_html_name_without_number_is_missing_field),
            cmocka_unit_test(test_canon_sample_unknown_role_is_dropped_with_warning),
            cmocka_unit_test(test_canon_sample_valid_to_before_valid_from_becomes_null),
            cmocka_unit_test(test_canon_sample_numeric_member_number_is_coerced),
            cmocka_unit_test(test_canon_sample_member_number_object_is_malformed),
            cmocka_unit_test(test_canon_sample_null_roles_are_no_roles),
            cmocka_unit_test(test_canon_sample_missing_external_id_is_missing_id),
            cmocka_unit_test(test_canon_sample_duplicate_id_later_copy_is_duplicate),
            cmocka_unit_test(test_canon_sample_null_entry_is_missing_id),
            cmocka_unit_test(test_canon_phone_eight_digits_becomes_plus47),
            cmocka_unit_test(test_canon_phone_0047_prefix_becomes_plus47),
            cmocka_unit_test(test_canon_phone_plus47_with_spaces_becomes_e164),
            cmocka_unit_test(test_canon_phone_00_foreign_prefix_becomes_plus),
            cmocka_unit_test(test_canon_phone_separators_are_removed),
            cmocka_unit_test(test_canon_phone_unicode_spaces_and_dashes_are_separators),
            cmocka_unit_test(test_canon_phone_wrong_digit_count_is_invalid),
            cmocka_unit_test(test_canon_phone_letters_and_misplaced_plus_are_invalid),
            cmocka_unit_test(test_canon_phone_blank_is_null_without_warning),
            cmocka_unit_test(test_canon_phone_number_given_as_json_number_is_coerced),
            cmocka_unit_test(test_canon_email_domain_lowercased_local_part_kept),
            cmocka_unit_test(test_canon_email_without_one_at_is_invalid),
            cmocka_unit_test(test_canon_email_without_tld_is_invalid),
            cmocka_unit_test(test_canon_email_with_inner_space_is_invalid),
            cmocka_unit_test(test_canon_email_longer_than_254_is_invalid),
            cmocka_unit_test(test_canon_email_blank_is_null_without_warning),
            cmocka_unit_test(test_canon_name_whitespace_is_collapsed_and_trimmed),
            cmocka_unit_test(test_canon_name_unicode_spaces_and_c1_become_space),
            cmocka_unit_test(test_canon_name_exactly_200_is_not_truncated),
            cmocka_unit_test(test_canon_name_truncation_never_leaves_trailing_space),
            cmocka_unit_test(test_canon_name_trailing_spaces_past_200_are_not_truncation),
            cmocka_unit_test(test_canon_one_empty_name_is_accepted),
            cmocka_unit_test(test_canon_names_of_only_controls_are_missing_field),
            cmocka_unit_test(
                test_canon_local_association_name_is_normalized_and_truncated),
            cmocka_unit_test(test_canon_local_association_null_gives_both_null),
            cmocka_unit_test(test_canon_consio_branch_number_becomes_string),
            cmocka_unit_test(test_canon_local_association_array_is_malformed),
            cmocka_unit_test(test_canon_dates_are_days_since_epoch),
            cmocka_unit_test(test_canon_date_in_the_other_systems_format_is_invalid_date),
            cmocka_unit_test(test_canon_leap_days_follow_the_calendar),
            cmocka_unit_test(test_canon_birth_date_bounds_are_inclusive),
            cmocka_unit_test(test_canon_valid_to_equal_to_valid_from_is_kept),
            cmocka_unit_test(test_canon_each_bad_date_gets_its_own_warning),
            cmocka_unit_test(test_canon_date_object_is_malformed),
            cmocka_unit_test(test_canon_statuses_map_to_the_enum),
            cmocka_unit_test(test_canon_status_is_trimmed_but_case_sensitive),
            cmocka_unit_test(test_canon_missing_status_is_invalid_status),
            cmocka_unit_test(test_canon_roles_are_mapped_sorted_and_deduplicated),
            cmocka_unit_test(test_canon_roles_missing_is_no_roles),
            cmocka_unit_test(test_canon_each_unknown_role_gets_a_warning),
            cmocka_unit_test(test_canon_many_unknown_roles_are_capped_not_lost),
            cmocka_unit_test(test_canon_roles_not_an_array_is_malformed),
            cmocka_unit_test(test_canon_cornerstone_numeric_id_is_coerced),
            cmocka_unit_test(test_canon_consio_actno_integer_and_numeric_string_agree),
            cmocka_unit_test(test_canon_consio_non_numeric_actno_is_missing_id),
            cmocka_unit_test(test_canon_unusable_external_id_is_missing_id),
            cmocka_unit_test(test_canon_external_id_is_set_even_with_an_error),
            cmocka_unit_test(test_canon_member_number_is_trimmed),
            cmocka_unit_test(test_canon_member_number_array_or_bool_is_malformed),
            cmocka_unit_test(test_canon_external_id_function_matches_record),
            cmocka_unit_test(test_canon_malformed_beats_missing_field_and_status),
            cmocka_unit_test(test_canon_missing_field_beats_invalid_status),
            cmocka_unit_test(test_canon_record_with_error_has_no_warnings),
            cmocka_unit_test(test_canon_duplicate_does_not_override_missing_id),
            cmocka_unit_test(test_canon_cornerstone_last_modified_becomes_epoch_ms),
            cmocka_unit_test(test_canon_unparseable_timestamp_is_null_without_warning),
            cmocka_unit_test(test_canon_consio_changed_at_winter_uses_plus1),
            cmocka_unit_test(test_canon_consio_changed_at_summer_uses_plus2),
            cmocka_unit_test(test_canon_consio_changed_at_spring_gap_uses_winter_offset),
            cmocka_unit_test(
                test_canon_consio_changed_at_autumn_ambiguity_is_first_occurrence),
            cmocka_unit_test(test_canon_consio_changed_at_with_explicit_zone_is_honoured),
            cmocka_unit_test(test_canon_invalid_utf8_in_a_field_is_malformed),
            cmocka_unit_test(test_canon_invalid_utf8_in_id_is_missing_id),
            cmocka_unit_test(test_canon_nul_escape_in_name_becomes_space),
            cmocka_unit_test(test_canon_nul_escape_in_identifiers_is_rejected),
            cmocka_unit_test(test_canon_nul_escape_elsewhere_is_a_warning_not_a_crash),
            cmocka_unit_test(test_canon_surrogate_pair_emoji_survives),
            cmocka_unit_test(test_canon_huge_strings_are_bounded),
            cmocka_unit_test(test_canon_huge_nfd_name_goes_through_the_heap_path),
            cmocka_unit_test(test_canon_non_object_records_are_missing_id),
            cmocka_unit_test(test_canon_numbers_for_string_fields_are_coerced),
            cmocka_unit_test(test_canon_fractional_or_bool_for_string_is_malformed),
            cmocka_unit_test(test_canon_arrays_where_objects_are_expected_are_handled),
            cmocka_unit_test(test_canon_member_has_exactly_the_contract_keys),
            cmocka_unit_test(test_canon_hash_is_equal_for_equal_members),
            cmocka_unit_test(test_canon_hash_changes_with_every_field),
            cmocka_unit_test(test_canon_hash_distinguishes_null_from_empty_string),
            cmocka_unit_test(test_canon_hash_and_diff_treat_roles_as_a_set),
            cmocka_unit_test(test_canon_changed_fields_lists_fields_in_schema_order),
            cmocka_unit_test(test_canon_changed_fields_with_no_before_lists_all),
            cmocka_unit_test(test_canon_system_enum_slug_and_parse),
            cmocka_unit_test(test_canon_throughput_is_a_few_microseconds_per_record),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
