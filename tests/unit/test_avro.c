/* Unit tests for ms_avro: canonical form, fingerprints, JSON<->Avro round
 * trips of every event shape, both framings (a fake schema registry runs in
 * a thread), schema evolution, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ms_avro.h"
#include "ms_schemas.h"
#include "ms_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UUID1 "7d1f1c1e-2b8a-4c55-9a53-8f2f0e6d9b01"
#define UUID2 "0b6c4d8e-1f2a-4b3c-8d9e-0a1b2c3d4e5f"
#define UUID3 "c3a2e1f0-9b8a-4c7d-8e6f-5a4b3c2d1e0f"

/* ------------------------------------------------------------------------
 * helpers
 */

static ms_avro_t *new_codec(const char *registry)
{
        ms_avro_t *c = NULL;
        char err[256] = "";
        int rc = ms_avro_new(registry, &c, err, sizeof(err));
        if (rc != 0)
                fail_msg("ms_avro_new: %s", err);
        return c;
}

static json_t *js(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);
        if (!j)
                fail_msg("bad test JSON: %s: %s", e.text, text);
        return j;
}

static void assert_json_equal(json_t *want, json_t *got)
{
        if (!json_equal(want, got)) {
                char *a = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
                char *b = got ? json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
                print_error("want %s\n got %s\n", a, b ? b : "(null)");
                free(a);
                free(b);
                fail();
        }
}

/* Encodes `text` as `name`, decodes it again and compares with `expect`
 * (or with the input when expect is NULL). */
static void roundtrip(ms_avro_t *c, const char *name, const char *text,
                      const char *expect)
{
        json_t *in = js(text), *want = expect ? js(expect) : json_incref(in), *out = NULL;
        unsigned char *buf = NULL;
        size_t len = 0;
        char err[512] = "";

        if (ms_avro_encode(c, name, "membersync.test.v1", in, &buf, &len, err,
                           sizeof(err)))
                fail_msg("encode %s: %s", name, err);
        if (ms_avro_decode(c, name, buf, len, &out, err, sizeof(err)))
                fail_msg("decode %s: %s", name, err);
        assert_json_equal(want, out);
        json_decref(in);
        json_decref(want);
        json_decref(out);
        free(buf);
}

static void encode_ok(ms_avro_t *c, const char *name, const char *text,
                      unsigned char **buf, size_t *len)
{
        json_t *in = js(text);
        char err[512] = "";
        if (ms_avro_encode(c, name, "membersync.test.v1", in, buf, len, err, sizeof(err)))
                fail_msg("encode %s: %s", name, err);
        json_decref(in);
}

static void expect_encode_error(const char *name, const char *text, const char *needle)
{
        ms_avro_t *c = new_codec(NULL);
        json_t *in = js(text);
        unsigned char *buf = NULL;
        size_t len = 0;
        char err[512] = "";
        int rc = ms_avro_encode(c, name, NULL, in, &buf, &len, err, sizeof(err));

        assert_int_equal(rc, MS_ERR_GENERIC);
        assert_null(buf);
        if (!strstr(err, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
        json_decref(in);
        ms_avro_destroy(c);
}

static void expect_decode_error(ms_avro_t *c, const char *name, const unsigned char *buf,
                                size_t len, const char *needle)
{
        json_t *out = NULL;
        char err[512] = "";
        int rc = ms_avro_decode(c, name, buf, len, &out, err, sizeof(err));

        if (rc != MS_ERR_DECODE)
                fail_msg("decode returned %d (%s), want MS_ERR_DECODE", rc, err);
        assert_null(out);
        if (needle && !strstr(err, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static const char *schema_src(const char *name)
{
        for (size_t i = 0; ms_schema_srcs[i].name; i++)
                if (strcmp(ms_schema_srcs[i].name, name) == 0)
                        return ms_schema_srcs[i].json;
        fail_msg("no compiled-in schema %s", name);
        return NULL;
}

static uint64_t fingerprint_of(const char *schema_json)
{
        char *canon = NULL, err[256] = "";
        uint64_t fp;
        if (ms_avro_canonical_form(schema_json, &canon, err, sizeof(err)))
                fail_msg("canonical form: %s", err);
        fp = ms_avro_crc64(canon, strlen(canon));
        free(canon);
        return fp;
}

static void put_soe_header(unsigned char *b, uint64_t fp)
{
        b[0] = 0xC3;
        b[1] = 0x01;
        for (int i = 0; i < 8; i++)
                b[2 + i] = (unsigned char)(fp >> (8 * i));
}

/* Appends a zigzag varint. */
static size_t put_long(unsigned char *b, int64_t v)
{
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        size_t n = 0;
        while (z >= 0x80) {
                b[n++] = (unsigned char)(z | 0x80);
                z >>= 7;
        }
        b[n++] = (unsigned char)z;
        return n;
}

static const char *PROGRESS_EVENT =
    "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\",\"integration\":\"CONSIO\","
    "\"job_id\":\"" UUID2 "\",\"request_id\":\"" UUID3 "\",\"seq\":7,"
    "\"occurred_at\":1717171717171,\"payload\":{\"SyncProgress\":{\"records_processed\":"
    "500,"
    "\"total_estimate\":1200,\"errors_so_far\":2,\"warnings_so_far\":3,"
    "\"eta_at\":1717171777000}}}";

/* ------------------------------------------------------------------------
 * canonical form and fingerprints
 */

static void test_avro_crc64_matches_spec_test_vectors(void **state)
{
        (void)state;
        assert_true(ms_avro_crc64("\"null\"", 6) == UINT64_C(0x63dd24e7cc258f8a));
        assert_true(ms_avro_crc64("\"int\"", 5) == UINT64_C(0x7275d51a3f395c8f));
        assert_true(ms_avro_crc64("\"string\"", 8) == UINT64_C(0x8f014872634503c7));
        assert_true(ms_avro_crc64("\"boolean\"", 9) ==
                    (uint64_t)INT64_C(-6970731678124411036));
        /* Empty input is the Rabin EMPTY constant. */
        assert_true(ms_avro_crc64("", 0) == UINT64_C(0xc15d213aa4d7a795));
}

/* Vectors from the Avro project's share/test/data/schema-tests.txt. */
static const struct {
        const char *in, *canon;
        int64_t fp;
} spec_pcf[] = {
    {"\"null\"", "\"null\"", INT64_C(7195948357588979594)},
    {"{\"type\":\"null\"}", "\"null\"", INT64_C(7195948357588979594)},
    {"{\"type\":\"boolean\"}", "\"boolean\"", INT64_C(-6970731678124411036)},
    {"{\"type\":\"int\"}", "\"int\"", INT64_C(8247732601305521295)},
    {"{\"type\":\"long\"}", "\"long\"", INT64_C(-3434872931120570953)},
    {"{\"type\":\"float\"}", "\"float\"", INT64_C(5583340709985441680)},
    {"{\"type\":\"double\"}", "\"double\"", INT64_C(-8181574048448539266)},
    {"{\"type\":\"bytes\"}", "\"bytes\"", INT64_C(5746618253357095269)},
    {"{\"type\":\"string\"}", "\"string\"", INT64_C(-8142146995180207161)},
    {"[  ]", "[]", INT64_C(-1241056759729112623)},
    {"[ \"int\"  ]", "[\"int\"]", INT64_C(-5232228896498058493)},
    {"[ \"int\" , {\"type\":\"boolean\"} ]", "[\"int\",\"boolean\"]",
     INT64_C(5392556393470105090)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"x.y.foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(5916914534497305771)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"a.b.foo\", \"namespace\":\"x.y\"}",
     "{\"name\":\"a.b.foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4616218487480524110)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", \"doc\":\"Useful info\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[], \"type\":\"record\", \"name\":\"foo\", "
     "\"aliases\":[\"foo\",\"bar\"]}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[]}",
     INT64_C(-4824392279771201922)},
    {"{\"fields\":[{\"type\":{\"type\":\"boolean\"}, \"name\":\"f1\"}], "
     "\"type\":\"record\", "
     "\"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":"
     "\"boolean\"}]}",
     INT64_C(7843277075252814651)},
    {"{ \"fields\":[{\"type\":\"boolean\", \"aliases\":[], \"name\":\"f1\", "
     "\"default\":true},\n"
     "{\"order\":\"descending\",\"name\":\"f2\",\"doc\":\"Hello\",\"type\":\"int\"}],"
     "\"type\":\"record\", \"name\":\"foo\"}",
     "{\"name\":\"foo\",\"type\":\"record\",\"fields\":[{\"name\":\"f1\",\"type\":"
     "\"boolean\"},"
     "{\"name\":\"f2\",\"type\":\"int\"}]}",
     INT64_C(-4860222112080293046)},
    {"{\"type\":\"enum\", \"name\":\"foo\", \"symbols\":[\"A1\"]}",
     "{\"name\":\"foo\",\"type\":\"enum\",\"symbols\":[\"A1\"]}",
     INT64_C(-6342190197741309591)},
    {"{\"namespace\":\"x.y.z\", \"type\":\"enum\", \"name\":\"foo\", \"doc\":\"foo "
     "bar\", "
     "\"symbols\":[\"A1\", \"A2\"]}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"enum\",\"symbols\":[\"A1\",\"A2\"]}",
     INT64_C(-4448647247586288245)},
    {"{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}",
     "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}", INT64_C(1756455273707447556)},
    {"{\"namespace\":\"x.y.z\", \"type\":\"fixed\", \"name\":\"foo\", \"doc\":\"foo "
     "bar\", "
     "\"size\":32}",
     "{\"name\":\"x.y.z.foo\",\"type\":\"fixed\",\"size\":32}",
     INT64_C(-3064184465700546786)},
    {"{ \"items\":{\"type\":\"null\"}, \"type\":\"array\"}",
     "{\"type\":\"array\",\"items\":\"null\"}", INT64_C(-589620603366471059)},
    {"{ \"values\":\"string\", \"type\":\"map\"}",
     "{\"type\":\"map\",\"values\":\"string\"}", INT64_C(-8732877298790414990)},
    {"{\"name\":\"PigValue\",\"type\":\"record\",\n   \"fields\":[{\"name\":\"value\", "
     "\"type\":[\"null\", \"int\", \"long\", \"PigValue\"]}]}",
     "{\"name\":\"PigValue\",\"type\":\"record\",\"fields\":[{\"name\":\"value\","
     "\"type\":[\"null\","
     "\"int\",\"long\",\"PigValue\"]}]}",
     INT64_C(-1759257747318642341)},
};

static void test_avro_canonical_form_matches_spec_test_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(spec_pcf) / sizeof(spec_pcf[0]); i++) {
                char *canon = NULL, err[256] = "";
                if (ms_avro_canonical_form(spec_pcf[i].in, &canon, err, sizeof(err)))
                        fail_msg("case %zu: %s", i, err);
                if (strcmp(canon, spec_pcf[i].canon) != 0)
                        fail_msg("case %zu: got %s want %s", i, canon, spec_pcf[i].canon);
                assert_true(ms_avro_crc64(canon, strlen(canon)) ==
                            (uint64_t)spec_pcf[i].fp);
                free(canon);
        }
}

static void test_avro_canonical_form_uses_full_names_and_strips_attributes(void **state)
{
        static const char *in =
            "{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a.b\",\"doc\":\"x\","
            "\"fields\":["
            "{\"name\":\"e\",\"doc\":\"d\",\"default\":\"X\",\"type\":{\"type\":\"enum\","
            "\"name\":\"E\",\"symbols\":[\"X\"]}},"
            "{\"name\":\"e2\",\"type\":\"E\"},"
            "{\"name\":\"t\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-"
            "millis\"}},"
            "{\"name\":\"n\",\"type\":[\"null\",{\"type\":\"string\",\"logicalType\":"
            "\"uuid\"}],"
            "\"default\":null},"
            "{\"name\":\"o\",\"type\":{\"type\":\"record\",\"name\":\"c.O\",\"fields\":["
            "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}},"
            "{\"name\":\"g\",\"type\":{\"type\":\"enum\",\"name\":\"G\",\"namespace\":"
            "\"\","
            "\"symbols\":[\"\\u00e6\"]}}]}}]}";
        static const char *want =
            "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":["
            "{\"name\":\"e\",\"type\":{\"name\":\"a.b.E\",\"type\":\"enum\",\"symbols\":["
            "\"X\"]}},"
            "{\"name\":\"e2\",\"type\":\"a.b.E\"},"
            "{\"name\":\"t\",\"type\":\"long\"},"
            "{\"name\":\"n\",\"type\":[\"null\",\"string\"]},"
            "{\"name\":\"o\",\"type\":{\"name\":\"c.O\",\"type\":\"record\",\"fields\":["
            "{\"name\":\"f\",\"type\":{\"name\":\"c.F\",\"type\":\"fixed\",\"size\":2}},"
            "{\"name\":\"g\",\"type\":{\"name\":\"G\",\"type\":\"enum\","
            "\"symbols\":[\"\xc3\xa6\"]}}]}}]}";
        char *canon = NULL, err[256] = "";
        (void)state;

        assert_int_equal(ms_avro_canonical_form(in, &canon, err, sizeof(err)), 0);
        assert_string_equal(canon, want);
        free(canon);

        assert_int_equal(
            ms_avro_canonical_form("{\"type\":\"int\",\"logicalType\":\"date\"}", &canon,
                                   err, sizeof(err)),
            0);
        assert_string_equal(canon, "\"int\"");
        free(canon);

        assert_int_equal(ms_avro_canonical_form("{not json", &canon, err, sizeof(err)),
                         MS_ERR_GENERIC);
        assert_null(canon);
        assert_int_equal(ms_avro_canonical_form("{\"type\":\"record\",\"fields\":[]}",
                                                &canon, err, sizeof(err)),
                         MS_ERR_GENERIC);
        assert_null(canon);
}

static void test_avro_compiled_in_schemas_have_distinct_fingerprints(void **state)
{
        static const char *names[] = {"SyncRequested", "SyncJob", "SyncEvent",
                                      "MemberChanged"};
        ms_avro_t *c = new_codec(NULL);
        uint64_t fps[4];
        (void)state;

        for (int i = 0; i < 4; i++) {
                fps[i] = ms_avro_fingerprint(c, names[i]);
                assert_true(fps[i] != 0);
                assert_true(fps[i] == fingerprint_of(schema_src(names[i])));
                for (int j = 0; j < i; j++)
                        assert_true(fps[i] != fps[j]);
        }
        assert_true(ms_avro_fingerprint(c, "NoSuchSchema") == 0);
        /* The full name works as well as the file name. */
        assert_true(ms_avro_fingerprint(c, "membersync.v1.SyncEvent") == fps[2]);
        ms_avro_destroy(c);
}

/* ------------------------------------------------------------------------
 * round trips
 */

static void test_avro_single_object_header_carries_le_fingerprint(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char *buf = NULL;
        size_t len = 0;
        uint64_t fp = ms_avro_fingerprint(c, "SyncEvent"), got = 0;
        (void)state;

        encode_ok(c, "SyncEvent", PROGRESS_EVENT, &buf, &len);
        assert_true(len > 10);
        assert_int_equal(buf[0], 0xC3);
        assert_int_equal(buf[1], 0x01);
        for (int i = 0; i < 8; i++)
                got |= (uint64_t)buf[2 + i] << (8 * i);
        assert_true(got == fp);
        free(buf);
        ms_avro_destroy(c);
}

static void test_avro_roundtrips_sync_requested(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        (void)state;
        roundtrip(c, "SyncRequested",
                  "{\"request_id\":\"" UUID1 "\",\"org_id\":\"org-1\",\"integration\":"
                  "\"CORNERSTONE\",\"trigger\":\"MANUAL\",\"requested_by\":{\"user_id\":"
                  "\"u-1\","
                  "\"role\":\"ORG_ADMIN\",\"org_id\":\"org-1\"},\"requested_at\":"
                  "1717171717171}",
                  NULL);
        roundtrip(
            c, "SyncRequested",
            "{\"request_id\":\"" UUID1 "\",\"org_id\":\"org-2\",\"integration\":"
            "\"CONSIO\",\"trigger\":\"SCHEDULED\",\"requested_by\":{\"user_id\":\"cron\","
            "\"role\":\"SYSTEM\",\"org_id\":null},\"requested_at\":0}",
            NULL);
        ms_avro_destroy(c);
}

static void test_avro_roundtrips_sync_job_with_since_null_and_set(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        (void)state;
        roundtrip(
            c, "SyncJob",
            "{\"job_id\":\"" UUID2 "\",\"request_id\":\"" UUID1 "\",\"org_id\":\"org-1\","
            "\"integration\":\"CONSIO\",\"trigger\":\"MANUAL\",\"mode\":\"FULL\","
            "\"since\":null,\"queued_at\":1717171717171,\"requested_by\":{\"user_id\":"
            "\"u-9\",\"role\":\"GLOBAL_ADMIN\",\"org_id\":null}}",
            NULL);
        roundtrip(
            c, "SyncJob",
            "{\"job_id\":\"" UUID2 "\",\"request_id\":\"" UUID1 "\",\"org_id\":\"org-1\","
            "\"integration\":\"CORNERSTONE\",\"trigger\":\"SCHEDULED\",\"mode\":"
            "\"INCREMENTAL\",\"since\":1700000000000,\"queued_at\":1717171717171,"
            "\"requested_by\":{\"user_id\":\"u-1\",\"role\":\"ORG_ADMIN\",\"org_id\":"
            "\"org-1\"}}",
            NULL);
        ms_avro_destroy(c);
}

static void test_avro_roundtrips_sync_event_every_payload_branch(void **state)
{
        static const char *payloads[] = {
            "{\"SyncQueued\":{\"trigger\":\"MANUAL\",\"requested_by\":{\"user_id\":\"u\","
            "\"role\":\"ORG_ADMIN\",\"org_id\":\"org-1\"},\"queued_at\":1}}",
            "{\"SyncQueued\":{\"trigger\":\"SCHEDULED\",\"requested_by\":{\"user_id\":"
            "\"s\","
            "\"role\":\"SYSTEM\",\"org_id\":null},\"queued_at\":2}}",
            "{\"SyncRejected\":{\"reason\":\"RATE_LIMITED\",\"message\":\"Next manual "
            "sync at "
            "12:05\",\"next_allowed_at\":1717171999000,\"existing_job_id\":null}}",
            "{\"SyncRejected\":{\"reason\":\"ALREADY_RUNNING\",\"message\":\"running\","
            "\"next_allowed_at\":null,\"existing_job_id\":\"" UUID3 "\"}}",
            "{\"SyncRejected\":{\"reason\":\"INVALID\",\"message\":\"\\u00f8 \\u2603\","
            "\"next_allowed_at\":null,\"existing_job_id\":null}}",
            "{\"SyncStarted\":{\"started_at\":5,\"total_estimate\":null}}",
            "{\"SyncStarted\":{\"started_at\":5,\"total_estimate\":12345}}",
            "{\"SyncProgress\":{\"records_processed\":0,\"total_estimate\":null,"
            "\"errors_so_far\":0,\"warnings_so_far\":0,\"eta_at\":null}}",
            "{\"SyncProgress\":{\"records_processed\":9007199254740993,\"total_"
            "estimate\":"
            "9007199254740995,\"errors_so_far\":1,\"warnings_so_far\":-1,\"eta_at\":"
            "-62135596800000}}",
            "{\"SyncCompleted\":{\"outcome\":\"SUCCEEDED\",\"finished_at\":9,"
            "\"records_processed\":10,\"records_synced\":10,\"created\":1,\"updated\":2,"
            "\"deactivated\":3,\"unchanged\":7,\"error_count\":0,\"warning_count\":4,"
            "\"failure_reason\":null}}",
            "{\"SyncCompleted\":{\"outcome\":\"FAILED\",\"finished_at\":9,"
            "\"records_processed\":10,\"records_synced\":5,\"created\":0,\"updated\":0,"
            "\"deactivated\":0,\"unchanged\":5,\"error_count\":1,\"warning_count\":0,"
            "\"failure_reason\":\"auth failure\"}}",
        };
        ms_avro_t *c = new_codec(NULL);
        (void)state;

        for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
                char text[2048];
                /* job_id/request_id null for the queue-side events, set
                 * otherwise, so both forms go through every branch. */
                if (i % 2)
                        snprintf(text, sizeof(text),
                                 "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\","
                                 "\"integration\":\"CORNERSTONE\",\"job_id\":null,"
                                 "\"request_id\":null,\"seq\":0,\"occurred_at\":1,"
                                 "\"payload\":%s}",
                                 payloads[i]);
                else
                        snprintf(text, sizeof(text),
                                 "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\","
                                 "\"integration\":\"CONSIO\",\"job_id\":\"" UUID2 "\","
                                 "\"request_id\":\"" UUID3 "\",\"seq\":%zu,"
                                 "\"occurred_at\":1717171717171,\"payload\":%s}",
                                 i, payloads[i]);
                roundtrip(c, "SyncEvent", text, NULL);
        }
        ms_avro_destroy(c);
}

static void test_avro_roundtrips_sync_event_progress_single_object(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        (void)state;
        roundtrip(c, "SyncEvent", PROGRESS_EVENT, NULL);
        ms_avro_destroy(c);
}

static void test_avro_missing_nullable_fields_encode_as_null(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        (void)state;
        roundtrip(
            c, "SyncEvent",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
            "\"seq\":0,\"occurred_at\":1,\"payload\":{\"SyncStarted\":{\"started_at\":1}}"
            "}",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
            "\"job_id\":null,\"request_id\":null,\"seq\":0,\"occurred_at\":1,"
            "\"payload\":{\"SyncStarted\":{\"started_at\":1,\"total_estimate\":null}}}");
        /* The payload branch may also be named by its full name. */
        roundtrip(
            c, "SyncEvent",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
            "\"seq\":0,\"occurred_at\":1,\"payload\":{\"membersync.v1.SyncStarted\":"
            "{\"started_at\":1}}}",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
            "\"job_id\":null,\"request_id\":null,\"seq\":0,\"occurred_at\":1,"
            "\"payload\":{\"SyncStarted\":{\"started_at\":1,\"total_estimate\":null}}}");
        ms_avro_destroy(c);
}

#define MEMBER_FULL                                                                      \
        "{\"external_id\":\"42\",\"member_number\":\"M-0042\",\"given_name\":"           \
        "\"\\u00c5se\","                                                                 \
        "\"family_name\":\"Berg\",\"email\":\"ase@example.no\",\"phone\":\"+"            \
        "4791234567\","                                                                  \
        "\"birth_date\":-3653,\"local_association_id\":\"7\",\"local_association_"       \
        "name\":"                                                                        \
        "\"Oslo\",\"status\":\"ACTIVE\",\"valid_from\":18000,\"valid_to\":20000,"        \
        "\"roles\":"                                                                     \
        "[\"COORDINATOR\",\"PEER_MENTOR\"],\"source_updated_at\":1717171717171}"
#define MEMBER_MIN                                                                       \
        "{\"external_id\":\"42\",\"member_number\":\"M-0042\",\"given_name\":\"\","      \
        "\"family_name\":\"Berg\",\"email\":null,\"phone\":null,\"birth_date\":null,"    \
        "\"local_association_id\":null,\"local_association_name\":null,\"status\":"      \
        "\"DECEASED\",\"valid_from\":null,\"valid_to\":null,\"roles\":[],"               \
        "\"source_updated_at\":null}"

static void test_avro_roundtrips_member_changed_all_ops(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        (void)state;
        roundtrip(c, "MemberChanged",
                  "{\"event_id\":\"" UUID1
                  "\",\"org_id\":\"org-1\",\"integration\":\"CONSIO\","
                  "\"job_id\":\"" UUID2 "\",\"op\":\"CREATED\",\"external_id\":\"42\","
                  "\"before\":null,\"after\":" MEMBER_FULL ",\"changed_fields\":[],"
                  "\"occurred_at\":1}",
                  NULL);
        roundtrip(c, "MemberChanged",
                  "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\",\"integration\":"
                  "\"CORNERSTONE\",\"job_id\":\"" UUID2
                  "\",\"op\":\"UPDATED\",\"external_id\":"
                  "\"42\",\"before\":" MEMBER_MIN ",\"after\":" MEMBER_FULL
                  ",\"changed_fields\":"
                  "[\"email\",\"given_name\",\"roles\"],\"occurred_at\":2}",
                  NULL);
        roundtrip(
            c, "MemberChanged",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\",\"integration\":\"CONSIO\","
            "\"job_id\":\"" UUID2 "\",\"op\":\"DEACTIVATED\",\"external_id\":\"42\","
            "\"before\":" MEMBER_FULL ",\"after\":null,\"changed_fields\":[\"status\"],"
            "\"occurred_at\":3}",
            NULL);
        ms_avro_destroy(c);
}

/* ------------------------------------------------------------------------
 * Confluent framing
 */

static void test_avro_decodes_confluent_framing_with_registered_id(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char *soe = NULL, *conf;
        size_t len = 0;
        json_t *out = NULL, *want = js(PROGRESS_EVENT);
        char err[512] = "";
        (void)state;

        encode_ok(c, "SyncEvent", PROGRESS_EVENT, &soe, &len);
        conf = malloc(len - 10 + 5);
        conf[0] = 0x00;
        conf[1] = 0x00;
        conf[2] = 0x01;
        conf[3] = 0x02;
        conf[4] = 0x03; /* id 0x010203 */
        memcpy(conf + 5, soe + 10, len - 10);

        /* Unknown id without a registry is a decode error. */
        expect_decode_error(c, "SyncEvent", conf, len - 5, "unknown schema id 66051");

        assert_int_equal(
            ms_avro_register_id(c, 0x010203, schema_src("SyncEvent"), err, sizeof(err)),
            0);
        assert_int_equal(
            ms_avro_decode(c, "SyncEvent", conf, len - 5, &out, err, sizeof(err)), 0);
        assert_json_equal(want, out);

        /* Truncated Confluent header. */
        expect_decode_error(c, "SyncEvent", conf, 4, "truncated Confluent header");

        json_decref(out);
        json_decref(want);
        free(conf);
        free(soe);
        ms_avro_destroy(c);
}

/* A minimal schema registry: POST /subjects/{s}/versions and GET
 * /schemas/ids/{id}, one request per connection. */
typedef struct fake_registry {
        int lfd;
        int port;
        pthread_t thread;
        volatile int stop;
        pthread_mutex_t mu;
        int posts, gets;
        char *schemas[16];
        int n;
} fake_registry_t;

static void reg_respond(int fd, int status, const char *body)
{
        char hdr[256];
        int n = snprintf(
            hdr, sizeof(hdr),
            "HTTP/1.1 %d X\r\nContent-Type: application/vnd.schemaregistry.v1+json"
            "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, strlen(body));
        if (write(fd, hdr, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
                return;
}

static void reg_handle(fake_registry_t *r, int fd)
{
        char req[65536];
        size_t len = 0;
        char *hdr_end = NULL, *body;
        long clen = 0;

        while (len < sizeof(req) - 1) {
                ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
                if (n <= 0)
                        return;
                len += (size_t)n;
                req[len] = '\0';
                if (!hdr_end && (hdr_end = strstr(req, "\r\n\r\n"))) {
                        char *cl = strcasestr(req, "Content-Length:");
                        clen = cl && cl < hdr_end ? strtol(cl + 15, NULL, 10) : 0;
                }
                if (hdr_end && len >= (size_t)(hdr_end + 4 - req) + (size_t)clen)
                        break;
        }
        if (!hdr_end)
                return;
        body = hdr_end + 4;
        pthread_mutex_lock(&r->mu);
        if (strncmp(req, "POST /subjects/", 15) == 0) {
                json_t *j = json_loads(body, 0, NULL);
                const char *s = json_string_value(json_object_get(j, "schema"));
                int id = -1;
                char out[64];
                r->posts++;
                for (int i = 0; s && i < r->n; i++)
                        if (strcmp(r->schemas[i], s) == 0)
                                id = i;
                if (s && id < 0 && r->n < 16) {
                        r->schemas[r->n] = strdup(s);
                        id = r->n++;
                }
                snprintf(out, sizeof(out), "{\"id\":%d}", 100 + id);
                reg_respond(fd, s ? 200 : 422, out);
                json_decref(j);
        } else if (strncmp(req, "GET /schemas/ids/", 17) == 0) {
                int id = atoi(req + 17) - 100;
                r->gets++;
                if (id >= 0 && id < r->n) {
                        json_t *j = json_pack("{s:s}", "schema", r->schemas[id]);
                        char *out = json_dumps(j, JSON_COMPACT);
                        reg_respond(fd, 200, out);
                        free(out);
                        json_decref(j);
                } else {
                        reg_respond(
                            fd, 404,
                            "{\"error_code\":40403,\"message\":\"Schema not found\"}");
                }
        } else {
                reg_respond(fd, 404, "{\"error_code\":404,\"message\":\"no route\"}");
        }
        pthread_mutex_unlock(&r->mu);
}

static void *reg_main(void *arg)
{
        fake_registry_t *r = arg;
        while (!r->stop) {
                struct pollfd p = {.fd = r->lfd, .events = POLLIN};
                if (poll(&p, 1, 50) == 1) {
                        int fd = accept(r->lfd, NULL, NULL);
                        if (fd >= 0) {
                                reg_handle(r, fd);
                                close(fd);
                        }
                }
        }
        return NULL;
}

static void reg_start(fake_registry_t *r)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t al = sizeof(a);

        memset(r, 0, sizeof(*r));
        pthread_mutex_init(&r->mu, NULL);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        r->lfd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(r->lfd >= 0);
        assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(r->lfd, 16), 0);
        assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&a, &al), 0);
        r->port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&r->thread, NULL, reg_main, r), 0);
}

static void reg_stop(fake_registry_t *r)
{
        r->stop = 1;
        pthread_join(r->thread, NULL);
        close(r->lfd);
        for (int i = 0; i < r->n; i++)
                free(r->schemas[i]);
        pthread_mutex_destroy(&r->mu);
}

static void test_avro_registry_registers_once_and_peers_fetch_by_id(void **state)
{
        fake_registry_t reg;
        ms_avro_t *prod, *cons, *c2;
        unsigned char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        char url[64], err[512] = "";
        json_t *out = NULL, *want = js(PROGRESS_EVENT), *v = js(PROGRESS_EVENT);
        (void)state;

        reg_start(&reg);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", reg.port);
        prod = new_codec(url);
        cons = new_codec(url);

        /* A topic is required to name the subject. */
        assert_int_equal(
            ms_avro_encode(prod, "SyncEvent", NULL, v, &a, &alen, err, sizeof(err)),
            MS_ERR_GENERIC);

        encode_ok(prod, "SyncEvent", PROGRESS_EVENT, &a, &alen);
        encode_ok(prod, "SyncEvent", PROGRESS_EVENT, &b, &blen);
        assert_int_equal(reg.posts, 1); /* id cached per subject+schema */
        assert_int_equal(a[0], 0x00);
        assert_int_equal((a[1] << 24) | (a[2] << 16) | (a[3] << 8) | a[4], 100);
        assert_int_equal(alen, blen);
        assert_memory_equal(a, b, alen);

        /* The producer knows its own id without asking. */
        assert_int_equal(
            ms_avro_decode(prod, "SyncEvent", a, alen, &out, err, sizeof(err)), 0);
        assert_json_equal(want, out);
        json_decref(out);
        assert_int_equal(reg.gets, 0);

        /* A consumer looks the id up once, then uses its cache. */
        assert_int_equal(
            ms_avro_decode(cons, "SyncEvent", a, alen, &out, err, sizeof(err)), 0);
        assert_json_equal(want, out);
        json_decref(out);
        assert_int_equal(
            ms_avro_decode(cons, "SyncEvent", b, blen, &out, err, sizeof(err)), 0);
        json_decref(out);
        assert_int_equal(reg.gets, 1);

        /* An id the registry does not know is undecodable. */
        a[4] = 99;
        expect_decode_error(cons, "SyncEvent", a, alen, "not found in registry");

        reg_stop(&reg);

        /* With the registry gone, an unknown id is a transient error, not a
         * poison message. */
        c2 = new_codec(url);
        a[4] = 100;
        assert_int_equal(ms_avro_decode(c2, "SyncEvent", a, alen, &out, err, sizeof(err)),
                         MS_ERR_HTTP);
        assert_null(out);
        free(b);
        assert_int_equal(
            ms_avro_encode(c2, "SyncJob", "t", v, &b, &blen, err, sizeof(err)),
            MS_ERR_GENERIC); /* wrong shape is caught before HTTP */

        json_decref(want);
        json_decref(v);
        free(a);
        free(b);
        ms_avro_destroy(prod);
        ms_avro_destroy(cons);
        ms_avro_destroy(c2);
}

/* ------------------------------------------------------------------------
 * schema evolution
 */

static json_t *payload_branch(json_t *schema, const char *name)
{
        json_t *fields = json_object_get(schema, "fields"), *f, *b;
        size_t i, k;
        json_array_foreach(fields, i, f)
        {
                if (strcmp(json_string_value(json_object_get(f, "name")), "payload") != 0)
                        continue;
                json_array_foreach(json_object_get(f, "type"), k, b)
                {
                        if (strcmp(json_string_value(json_object_get(b, "name")), name) ==
                            0)
                                return b;
                }
        }
        fail_msg("no payload branch %s", name);
        return NULL;
}

static void test_avro_newer_writer_with_added_defaulted_fields_decodes(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        json_t *schema = js(schema_src("SyncEvent")), *out = NULL,
               *want = js(PROGRESS_EVENT);
        char *newer, err[512] = "";
        unsigned char *old = NULL, *msg;
        size_t oldlen = 0, n;
        (void)state;

        /* Newer writer: a field appended to SyncProgress and one to the
         * top-level record, both with defaults. */
        json_array_append_new(
            json_object_get(payload_branch(schema, "SyncProgress"), "fields"),
            js("{\"name\":\"pages_done\",\"type\":\"long\",\"default\":0}"));
        json_array_append_new(json_object_get(schema, "fields"),
                              js("{\"name\":\"trace\",\"type\":[\"null\",\"string\"],"
                                 "\"default\":null}"));
        newer = json_dumps(schema, JSON_COMPACT);

        /* Its bytes are the old body followed by the two new fields, since
         * both were appended at the end of the datum. */
        encode_ok(c, "SyncEvent", PROGRESS_EVENT, &old, &oldlen);
        msg = malloc(oldlen + 64);
        memcpy(msg, old, oldlen);
        put_soe_header(msg, fingerprint_of(newer));
        n = oldlen;
        n += put_long(msg + n, 77); /* pages_done */
        n += put_long(msg + n, 1);  /* trace: branch string */
        n += put_long(msg + n, 3);  /* length */
        memcpy(msg + n, "abc", 3);
        n += 3;

        expect_decode_error(c, "SyncEvent", msg, n, "unknown schema fingerprint");
        if (ms_avro_add_writer_schema(c, newer, err, sizeof(err)))
                fail_msg("add_writer_schema: %s", err);
        if (ms_avro_decode(c, "SyncEvent", msg, n, &out, err, sizeof(err)))
                fail_msg("decode: %s", err);
        assert_json_equal(want, out);
        json_decref(out);

        /* Registering the same schema again is harmless. */
        assert_int_equal(ms_avro_add_writer_schema(c, newer, err, sizeof(err)), 0);

        /* A writer schema for a type we do not compile in is refused. */
        assert_int_equal(
            ms_avro_add_writer_schema(c,
                                      "{\"type\":\"record\",\"name\":\"Other\","
                                      "\"fields\":[]}",
                                      err, sizeof(err)),
            MS_ERR_GENERIC);

        free(newer);
        free(old);
        free(msg);
        json_decref(schema);
        json_decref(want);
        ms_avro_destroy(c);
}

static void test_avro_enum_symbols_appended_by_writer_decode_or_fail_cleanly(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        json_t *schema = js(schema_src("SyncRequested")), *out = NULL, *f = NULL, *syms;
        char *newer, *reordered, err[512] = "";
        unsigned char *buf = NULL;
        size_t len = 0, i;
        static const char *req =
            "{\"request_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
            "\"trigger\":\"MANUAL\",\"requested_by\":{\"user_id\":\"u\",\"role\":"
            "\"SYSTEM\","
            "\"org_id\":null},\"requested_at\":5}";
        (void)state;

        json_array_foreach(json_object_get(schema, "fields"), i, f)
        {
                if (strcmp(json_string_value(json_object_get(f, "name")),
                           "integration") == 0)
                        break;
        }
        assert_non_null(f);
        syms = json_object_get(json_object_get(f, "type"), "symbols");
        assert_non_null(syms);
        json_array_append_new(syms, json_string("NEWSYSTEM"));
        newer = json_dumps(schema, JSON_COMPACT);
        assert_int_equal(ms_avro_add_writer_schema(c, newer, err, sizeof(err)), 0);

        encode_ok(c, "SyncRequested", req, &buf, &len);
        put_soe_header(buf, fingerprint_of(newer));
        /* Known symbol (CONSIO, index 1): decodes. */
        assert_int_equal(
            ms_avro_decode(c, "SyncRequested", buf, len, &out, err, sizeof(err)), 0);
        assert_string_equal(json_string_value(json_object_get(out, "integration")),
                            "CONSIO");
        json_decref(out);
        /* The appended symbol (index 2, zigzag 4) is unknown to this reader.
         * integration follows request_id (1+36 bytes) and org_id (1+1). */
        assert_int_equal(buf[10 + 37 + 2], 2);
        buf[10 + 37 + 2] = 4;
        expect_decode_error(c, "SyncRequested", buf, len, "enum symbol unknown");

        /* Reordering symbols would make avro-c decode the wrong symbol, so
         * such a writer is refused. */
        json_array_clear(syms);
        json_array_append_new(syms, json_string("CONSIO"));
        json_array_append_new(syms, json_string("CORNERSTONE"));
        reordered = json_dumps(schema, JSON_COMPACT);
        assert_int_equal(ms_avro_add_writer_schema(c, reordered, err, sizeof(err)),
                         MS_ERR_GENERIC);
        assert_non_null(strstr(err, "may only be appended"));

        free(newer);
        free(reordered);
        free(buf);
        json_decref(schema);
        ms_avro_destroy(c);
}

/* ------------------------------------------------------------------------
 * hostile input
 */

static void test_avro_truncated_input_is_decode_error(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char *buf = NULL;
        size_t len = 0;
        (void)state;

        encode_ok(
            c, "MemberChanged",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"org-1\",\"integration\":\"CONSIO\","
            "\"job_id\":\"" UUID2 "\",\"op\":\"UPDATED\",\"external_id\":\"42\","
            "\"before\":" MEMBER_MIN ",\"after\":" MEMBER_FULL ",\"changed_fields\":"
            "[\"email\"],\"occurred_at\":2}",
            &buf, &len);
        /* Every proper prefix fails cleanly (ASan would flag any overread). */
        for (size_t n = 0; n < len; n++) {
                unsigned char *copy = malloc(n ? n : 1);
                memcpy(copy, buf, n);
                expect_decode_error(c, "MemberChanged", copy, n, NULL);
                free(copy);
        }
        /* Trailing garbage is refused too. */
        buf = realloc(buf, len + 1);
        buf[len] = 0;
        expect_decode_error(c, "MemberChanged", buf, len + 1, "trailing bytes");
        free(buf);
        ms_avro_destroy(c);
}

static void test_avro_wrong_magic_and_unknown_fingerprint_are_decode_errors(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char *buf = NULL;
        size_t len = 0;
        (void)state;

        encode_ok(c, "SyncEvent", PROGRESS_EVENT, &buf, &len);
        buf[0] = 0x01;
        expect_decode_error(c, "SyncEvent", buf, len, "unknown framing");
        buf[0] = 0xC3;
        buf[1] = 0x02;
        expect_decode_error(c, "SyncEvent", buf, len, "unknown framing");
        buf[1] = 0x01;
        buf[5] ^= 0xFF;
        expect_decode_error(c, "SyncEvent", buf, len, "unknown schema fingerprint");
        buf[5] ^= 0xFF;
        expect_decode_error(c, "SyncEvent", buf, 0, "empty message");
        expect_decode_error(c, "SyncEvent", buf, 9, "truncated single-object header");
        expect_decode_error(c, "SyncEvent", buf, 1, "truncated single-object header");
        /* A valid message of another type does not decode as SyncEvent. */
        free(buf);
        encode_ok(c, "SyncRequested",
                  "{\"request_id\":\"" UUID1
                  "\",\"org_id\":\"o\",\"integration\":\"CONSIO\","
                  "\"trigger\":\"MANUAL\",\"requested_by\":{\"user_id\":\"u\",\"role\":"
                  "\"SYSTEM\"},\"requested_at\":5}",
                  &buf, &len);
        expect_decode_error(c, "SyncEvent", buf, len, "cannot be read as");
        free(buf);
        ms_avro_destroy(c);
}

static void test_avro_crafted_lengths_and_indexes_are_decode_errors(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char msg[64];
        size_t n;
        (void)state;

        /* Negative string length for event_id. */
        put_soe_header(msg, ms_avro_fingerprint(c, "SyncEvent"));
        n = 10 + put_long(msg + 10, -5);
        expect_decode_error(c, "SyncEvent", msg, n, "negative length");
        /* Huge string length. */
        n = 10 + put_long(msg + 10, INT64_MAX);
        expect_decode_error(c, "SyncEvent", msg, n, "truncated data");
        /* Over-long varint. */
        memset(msg + 10, 0xFF, 12);
        expect_decode_error(c, "SyncEvent", msg, 22, "varint");
        /* Enum index out of range: event_id "", org_id "", integration 9. */
        n = 10;
        n += put_long(msg + n, 0);
        n += put_long(msg + n, 0);
        n += put_long(msg + n, 9);
        expect_decode_error(c, "SyncEvent", msg, n, "enum index out of range");
        /* Union branch out of range for job_id. */
        n = 10;
        n += put_long(msg + n, 0);
        n += put_long(msg + n, 0);
        n += put_long(msg + n, 0);
        n += put_long(msg + n, 5);
        expect_decode_error(c, "SyncEvent", msg, n, "union branch out of range");
        /* Array count far beyond the data (changed_fields of MemberChanged). */
        put_soe_header(msg, ms_avro_fingerprint(c, "MemberChanged"));
        n = 10;
        for (int i = 0; i < 6; i++)
                n += put_long(msg + n, 0);     /* empty strings, first enum symbols */
        n += put_long(msg + n, 0);             /* before: null */
        n += put_long(msg + n, 0);             /* after: null */
        n += put_long(msg + n, 1000000000000); /* changed_fields count */
        expect_decode_error(c, "MemberChanged", msg, n, "block count exceeds data");
        ms_avro_destroy(c);
}

static void test_avro_random_bytes_never_crash_decoder(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        unsigned char *good = NULL, buf[512];
        size_t glen = 0;
        uint64_t x = 0x9E3779B97F4A7C15u;
        (void)state;

        json_t *schema = js(schema_src("SyncEvent"));
        char *newer, err0[256] = "";
        uint64_t newer_fp;
        int ok[2] = {0, 0};

        /* Half of the inputs claim a newer writer schema, so that the avro-c
         * resolver path sees hostile data too. */
        json_array_append_new(json_object_get(schema, "fields"),
                              js("{\"name\":\"trace\",\"type\":[\"null\",\"string\"],"
                                 "\"default\":null}"));
        newer = json_dumps(schema, JSON_COMPACT);
        newer_fp = fingerprint_of(newer);
        assert_int_equal(ms_avro_add_writer_schema(c, newer, err0, sizeof(err0)), 0);

        encode_ok(c, "SyncEvent", PROGRESS_EVENT, &good, &glen);
        assert_true(glen < sizeof(buf) - 1);
        for (int iter = 0; iter < 20000; iter++) {
                size_t len;
                json_t *out = NULL;
                char err[256];
                int rc;

                memcpy(buf, good, glen);
                len = glen;
                /* Mutate a few bytes after the header, sometimes cut. */
                for (int k = 0; k < 1 + iter % 4; k++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        buf[10 + x % (glen - 10)] = (unsigned char)(x >> 32);
                }
                if (iter % 3 == 0)
                        len = 10 + (size_t)(x >> 40) % (glen - 9);
                if (iter % 2) {
                        put_soe_header(buf, newer_fp);
                        buf[len++] = 0; /* trace: null */
                }
                rc = ms_avro_decode(c, "SyncEvent", buf, len, &out, err, sizeof(err));
                assert_true(rc == 0 || rc == MS_ERR_DECODE);
                if (rc == 0) {
                        assert_non_null(out);
                        ok[iter % 2]++;
                } else {
                        assert_null(out);
                }
                json_decref(out);
        }
        /* Some mutations (inside strings, numbers) still decode, on both
         * paths. */
        assert_true(ok[0] > 0 && ok[1] > 0);
        free(good);
        free(newer);
        json_decref(schema);
        ms_avro_destroy(c);
}

/* ------------------------------------------------------------------------
 * encode errors
 */

static void test_avro_encode_missing_required_field_is_error(void **state)
{
        (void)state;
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":0,\"occurred_at\":1,\"payload\":{"
                            "\"SyncRejected\":{\"reason\":\"FORBIDDEN\"}}}",
                            "payload.SyncRejected.message: missing required field");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":0,\"payload\":{\"SyncStarted\":{"
                            "\"started_at\":1}}}",
                            "occurred_at: missing required field");
}

static void test_avro_encode_wrong_enum_symbol_is_error(void **state)
{
        (void)state;
        expect_encode_error(
            "SyncRequested",
            "{\"request_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":"
            "\"SALESFORCE\",\"trigger\":\"MANUAL\",\"requested_by\":{"
            "\"user_id\":\"u\",\"role\":\"SYSTEM\"},\"requested_at\":5}",
            "integration: \"SALESFORCE\" is not a symbol of enum Integration");
        expect_encode_error("SyncRequested",
                            "{\"request_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"trigger\":\"MANUAL\",\"requested_by\":{"
                            "\"user_id\":\"u\",\"role\":\"admin\"},\"requested_at\":5}",
                            "requested_by.role");
}

static void test_avro_encode_wrong_types_and_shapes_are_errors(void **state)
{
        (void)state;
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":\"7\",\"occurred_at\":1,\"payload\":{"
                            "\"SyncStarted\":{\"started_at\":1}}}",
                            "seq: expected long, got string");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":1.5,\"occurred_at\":1,\"payload\":{"
                            "\"SyncStarted\":{\"started_at\":1}}}",
                            "seq: expected long, got number");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":1,\"occurred_at\":1,\"payload\":{"
                            "\"SyncBogus\":{}}}",
                            "payload: unknown union branch \"SyncBogus\"");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":1,\"occurred_at\":1,\"payload\":{"
                            "\"SyncStarted\":{\"started_at\":1},\"SyncQueued\":{}}}",
                            "payload: expected an object with exactly one key");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":1,\"occurred_at\":1,\"payload\":null}",
                            "payload: null not allowed");
        expect_encode_error("SyncEvent",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"seq\":1,\"occurred_at\":1,\"jobid\":\"x\","
                            "\"payload\":{\"SyncStarted\":{\"started_at\":1}}}",
                            "jobid: unknown field");
        expect_encode_error(
            "MemberChanged",
            "{\"event_id\":\"" UUID1 "\",\"org_id\":\"o\",\"integration\":"
            "\"CONSIO\",\"job_id\":\"" UUID2 "\",\"op\":\"CREATED\","
            "\"external_id\":\"1\",\"after\":{\"external_id\":\"1\","
            "\"member_number\":\"1\",\"given_name\":\"a\",\"family_name\":\"b\","
            "\"status\":\"ACTIVE\",\"birth_date\":4294967296,\"roles\":[]},"
            "\"changed_fields\":[],\"occurred_at\":1}",
            "after.birth_date: 4294967296 out of int range");
        expect_encode_error("MemberChanged",
                            "{\"event_id\":\"" UUID1
                            "\",\"org_id\":\"o\",\"integration\":"
                            "\"CONSIO\",\"job_id\":\"" UUID2 "\",\"op\":\"CREATED\","
                            "\"external_id\":\"1\",\"changed_fields\":[\"a\",3],"
                            "\"occurred_at\":1}",
                            "changed_fields[1]: expected string, got integer");
        expect_encode_error("SyncEvent", "[]", "(root): expected object");
        expect_encode_error("NoSuchSchema", "{}", "unknown schema");
}

/* ------------------------------------------------------------------------
 * threads
 */

static void *worker(void *arg)
{
        ms_avro_t *c = arg;
        json_t *want = json_loads(PROGRESS_EVENT, 0, NULL);
        for (int i = 0; i < 300; i++) {
                unsigned char *buf = NULL;
                size_t len = 0;
                json_t *out = NULL;
                char err[256];
                if (ms_avro_encode(c, "SyncEvent", NULL, want, &buf, &len, err,
                                   sizeof(err)) ||
                    ms_avro_decode(c, "SyncEvent", buf, len, &out, err, sizeof(err)) ||
                    !json_equal(want, out)) {
                        free(buf);
                        json_decref(out);
                        json_decref(want);
                        return (void *)1;
                }
                free(buf);
                json_decref(out);
        }
        json_decref(want);
        return NULL;
}

static void test_avro_codec_is_shared_safely_by_threads(void **state)
{
        ms_avro_t *c = new_codec(NULL);
        pthread_t t[4];
        (void)state;
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, worker, c), 0);
        for (int i = 0; i < 4; i++) {
                void *rv;
                pthread_join(t[i], &rv);
                assert_null(rv);
        }
        ms_avro_destroy(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_avro_crc64_matches_spec_test_vectors),
            cmocka_unit_test(test_avro_canonical_form_matches_spec_test_vectors),
            cmocka_unit_test(
                test_avro_canonical_form_uses_full_names_and_strips_attributes),
            cmocka_unit_test(test_avro_compiled_in_schemas_have_distinct_fingerprints),
            cmocka_unit_test(test_avro_single_object_header_carries_le_fingerprint),
            cmocka_unit_test(test_avro_roundtrips_sync_requested),
            cmocka_unit_test(test_avro_roundtrips_sync_job_with_since_null_and_set),
            cmocka_unit_test(test_avro_roundtrips_sync_event_every_payload_branch),
            cmocka_unit_test(test_avro_roundtrips_sync_event_progress_single_object),
            cmocka_unit_test(test_avro_missing_nullable_fields_encode_as_null),
            cmocka_unit_test(test_avro_roundtrips_member_changed_all_ops),
            cmocka_unit_test(test_avro_decodes_confluent_framing_with_registered_id),
            cmocka_unit_test(test_avro_registry_registers_once_and_peers_fetch_by_id),
            cmocka_unit_test(test_avro_newer_writer_with_added_defaulted_fields_decodes),
            cmocka_unit_test(
                test_avro_enum_symbols_appended_by_writer_decode_or_fail_cleanly),
            cmocka_unit_test(test_avro_truncated_input_is_decode_error),
            cmocka_unit_test(
                test_avro_wrong_magic_and_unknown_fingerprint_are_decode_errors),
            cmocka_unit_test(test_avro_crafted_lengths_and_indexes_are_decode_errors),
            cmocka_unit_test(test_avro_random_bytes_never_crash_decoder),
            cmocka_unit_test(test_avro_encode_missing_required_field_is_error),
            cmocka_unit_test(test_avro_encode_wrong_enum_symbol_is_error),
            cmocka_unit_test(test_avro_encode_wrong_types_and_shapes_are_errors),
            cmocka_unit_test(test_avro_codec_is_shared_safely_by_threads),
        };
        /* The fake registry is on loopback; a proxy from the environment
         * must not intercept it. */
        setenv("no_proxy", "*", 1);
        setenv("NO_PROXY", "*", 1);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
