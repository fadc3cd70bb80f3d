/* Small helpers every module relies on: ISO 8601 both ways, civil dates,
 * base64, UUIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ms_util.h"

static void test_util_iso8601_formats_and_parses_round_trip(void **state)
{
        (void)state;
        char buf[40];
        ms_iso8601(0, buf, sizeof(buf));
        assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
        ms_iso8601(1796302776620LL, buf, sizeof(buf));
        int64_t back;
        assert_int_equal(ms_iso8601_parse(buf, &back), 0);
        assert_int_equal(back, 1796302776620LL);
        ms_iso8601(-1, buf, sizeof(buf));
        assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

static void test_util_iso8601_clamps_extreme_values(void **state)
{
        (void)state;
        char buf[40];
        ms_iso8601(INT64_MIN, buf, sizeof(buf));
        assert_string_equal(buf, "0001-01-01T00:00:00.000Z");
        ms_iso8601(INT64_MAX, buf, sizeof(buf));
        assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}

static void test_util_iso8601_parse_offsets_and_rejects_garbage(void **state)
{
        (void)state;
        int64_t t;
        assert_int_equal(ms_iso8601_parse("2026-03-29T03:30:00+02:00", &t), 0);
        int64_t z;
        assert_int_equal(ms_iso8601_parse("2026-03-29T01:30:00Z", &z), 0);
        assert_int_equal(t, z);
        assert_int_equal(ms_iso8601_parse("2026-02-30T00:00:00Z", &t), -1);
        assert_int_equal(ms_iso8601_parse("2026-01-01T00:00:00", &t), -1);
        assert_int_equal(ms_iso8601_parse("2026-01-01T00:00:00Zjunk", &t), -1);
        assert_int_equal(ms_iso8601_parse_n("2026-01-01T00:00:00Z\0x", 22, &t), -1);
        assert_int_equal(ms_iso8601_parse_n("2026-01-01T00:00:00Zxyz", 20, &t), 0);
}

static void test_util_civil_dates_round_trip_and_validate(void **state)
{
        (void)state;
        for (int32_t d = -719000; d < 2900000; d += 997) {
                int y, m, dd;
                ms_civil_from_days(d, &y, &m, &dd);
                assert_true(ms_date_valid(y, m, dd));
                assert_int_equal(ms_days_from_civil(y, m, dd), d);
        }
        assert_true(ms_date_valid(2024, 2, 29));
        assert_false(ms_date_valid(2023, 2, 29));
        assert_false(ms_date_valid(1900, 2, 29));
        assert_true(ms_date_valid(2000, 2, 29));
}

static void test_util_base64_and_uuid(void **state)
{
        (void)state;
        char *b = ms_base64_encode((const unsigned char *)"foob", 4);
        assert_string_equal(b, "Zm9vYg==");
        free(b);
        char id[37];
        ms_uuid_new(id);
        assert_true(ms_uuid_valid(id));
        assert_false(ms_uuid_valid("not-a-uuid"));
        assert_false(ms_uuid_valid(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_util_iso8601_formats_and_parses_round_trip),
            cmocka_unit_test(test_util_iso8601_clamps_extreme_values),
            cmocka_unit_test(test_util_iso8601_parse_offsets_and_rejects_garbage),
            cmocka_unit_test(test_util_civil_dates_round_trip_and_validate),
            cmocka_unit_test(test_util_base64_and_uuid),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
