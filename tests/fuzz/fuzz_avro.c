/* libFuzzer target: the Avro event decoders (issue 4, point 7).
 *
 * Input layout: byte 0 picks the reader schema (bits 0-1: SyncRequested,
 * SyncJob, SyncEvent, MemberChanged) and how the rest is framed (bits 2-3):
 *   0, 3  the rest as it is: ms_avro_decode picks the framing by its bytes;
 *   1     single-object header with the schema's real fingerprint + the rest;
 *   2     Confluent header with the schema's registered id + the rest.
 * Modes 1 and 2 let the fuzzer spend its time in the Avro body decoder of
 * both framings instead of guessing 8-byte fingerprints.
 *
 * Whatever decodes must encode again and decode to the same JSON (a decoder
 * that accepts what the encoder cannot write back, or reads it differently,
 * is a bug); anything else must fail cleanly with MS_ERR_DECODE.
 *
 * With MS_FUZZ_SEED_DIR set, LLVMFuzzerInitialize writes seed inputs (valid
 * events of every schema and payload branch, in both framings) there. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_avro.h"
#include "ms_schemas.h"
#include "ms_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[4] = {"SyncRequested", "SyncJob", "SyncEvent",
                                     "MemberChanged"};
static ms_avro_t *codec;

static const char *schema_text(const char *name)
{
        for (const ms_schema_src_t *s = ms_schema_srcs; s->name; s++)
                if (strcmp(s->name, name) == 0)
                        return s->json;
        return NULL;
}

/* Valid events, one per schema and SyncEvent payload branch. */
static const char *const seeds_json[][2] = {
    {"SyncRequested",
     "{\"request_id\":\"9b2f6c1e-7a39-4f1e-8d3c-2a5b6c7d8e9f\",\"org_id\":\"org-1\","
     "\"integration\":\"CORNERSTONE\",\"trigger\":\"MANUAL\",\"requested_by\":{\"user_"
     "id\":"
     "\"u1\",\"role\":\"ORG_ADMIN\",\"org_id\":\"org-1\"},\"requested_at\":"
     "1764000000000}"},
    {"SyncJob",
     "{\"job_id\":\"1b2f6c1e-7a39-4f1e-8d3c-2a5b6c7d8e9f\",\"request_id\":"
     "\"9b2f6c1e-7a39-4f1e-8d3c-2a5b6c7d8e9f\",\"org_id\":\"org-1\",\"integration\":"
     "\"CONSIO\",\"trigger\":\"SCHEDULED\",\"mode\":\"FULL\",\"since\":null,\"queued_"
     "at\":"
     "1764000000000,\"requested_by\":{\"user_id\":\"s\",\"role\":\"SYSTEM\",\"org_id\":"
     "null}}"},
    {"SyncEvent",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CONSIO\",\"job_id\":null,"
     "\"request_id\":\"r\",\"seq\":0,\"occurred_at\":1,\"payload\":{\"SyncRejected\":{"
     "\"reason\":\"RATE_LIMITED\",\"message\":\"m\",\"next_allowed_at\":5,"
     "\"existing_job_id\":null}}}"},
    {"SyncEvent",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CORNERSTONE\",\"job_id\":"
     "\"j\","
     "\"request_id\":\"r\",\"seq\":0,\"occurred_at\":1,\"payload\":{\"SyncQueued\":{"
     "\"trigger\":\"MANUAL\",\"requested_by\":{\"user_id\":\"u\",\"role\":\"GLOBAL_"
     "ADMIN\","
     "\"org_id\":null},\"queued_at\":3}}}"},
    {"SyncEvent",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CORNERSTONE\",\"job_id\":"
     "\"j\","
     "\"request_id\":\"r\",\"seq\":1,\"occurred_at\":1,\"payload\":{\"SyncStarted\":{"
     "\"started_at\":2,\"total_estimate\":100}}}"},
    {"SyncEvent",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CORNERSTONE\",\"job_id\":"
     "\"j\","
     "\"request_id\":\"r\",\"seq\":2,\"occurred_at\":1,\"payload\":{\"SyncProgress\":{"
     "\"records_processed\":50,\"total_estimate\":null,\"errors_so_far\":1,"
     "\"warnings_so_far\":2,\"eta_at\":9}}}"},
    {"SyncEvent",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CORNERSTONE\",\"job_id\":"
     "\"j\","
     "\"request_id\":null,\"seq\":3,\"occurred_at\":1,\"payload\":{\"SyncCompleted\":{"
     "\"outcome\":\"PARTIAL\",\"finished_at\":4,\"records_processed\":10,\"records_"
     "synced\":"
     "9,\"created\":1,\"updated\":2,\"deactivated\":3,\"unchanged\":6,\"error_count\":1,"
     "\"warning_count\":0,\"failure_reason\":\"x\"}}}"},
    {"MemberChanged",
     "{\"event_id\":\"e\",\"org_id\":\"o\",\"integration\":\"CONSIO\",\"job_id\":\"j\","
     "\"op\":"
     "\"UPDATED\",\"external_id\":\"20000\",\"before\":{\"external_id\":\"20000\","
     "\"member_number\":\"1\",\"given_name\":\"Kari\",\"family_name\":\"N\",\"email\":"
     "null,"
     "\"phone\":\"+4748247716\",\"birth_date\":3000,\"local_association_id\":\"290\","
     "\"local_association_name\":\"Lag\",\"status\":\"ACTIVE\",\"valid_from\":null,"
     "\"valid_to\":null,\"roles\":[\"COORDINATOR\",\"PEER_MENTOR\"],\"source_updated_"
     "at\":"
     "7},\"after\":{\"external_id\":\"20000\",\"member_number\":\"1\",\"given_name\":"
     "\"Kári\",\"family_name\":\"N\",\"email\":\"k@x.no\",\"phone\":null,\"birth_date\":"
     "null,"
     "\"local_association_id\":null,\"local_association_name\":null,\"status\":"
     "\"LAPSED\","
     "\"valid_from\":1,\"valid_to\":2,\"roles\":[],\"source_updated_at\":null},"
     "\"changed_fields\":[\"given_name\",\"email\"],\"occurred_at\":8}"},
};

static void write_seed(const char *dir, int n, unsigned char mode, const unsigned char *b,
                       size_t len)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%02d-%u", dir, n, mode);
        FILE *f = fopen(path, "wb");
        if (!f)
                return;
        fwrite(&mode, 1, 1, f);
        fwrite(b, 1, len, f);
        fclose(f);
}

static void write_seeds(const char *dir)
{
        for (size_t i = 0; i < sizeof(seeds_json) / sizeof(seeds_json[0]); i++) {
                char err[512];
                json_t *v = json_loads(seeds_json[i][1], 0, NULL);
                unsigned char *buf = NULL;
                size_t len = 0;
                int si = 0;
                while (strcmp(names[si], seeds_json[i][0]) != 0)
                        si++;
                if (!v || ms_avro_encode(codec, seeds_json[i][0], NULL, v, &buf, &len,
                                         err, sizeof(err))) {
                        fprintf(stderr, "fuzz_avro: seed %zu: %s\n", i, err);
                        abort();
                }
                /* The framed message as is, its body behind each header
                 * mode, and the Confluent framing spelled out. */
                write_seed(dir, (int)i, (unsigned char)si, buf, len);
                write_seed(dir, (int)i, (unsigned char)(si | 4), buf + 10, len - 10);
                write_seed(dir, (int)i, (unsigned char)(si | 8), buf + 10, len - 10);
                unsigned char *cf = malloc(len - 10 + 5);
                cf[0] = 0;
                cf[1] = cf[2] = cf[3] = 0;
                cf[4] = (unsigned char)(si + 1);
                memcpy(cf + 5, buf + 10, len - 10);
                write_seed(dir, (int)i + 50, (unsigned char)si, cf, len - 10 + 5);
                free(cf);
                free(buf);
                json_decref(v);
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void)argc;
        (void)argv;
        char err[512];
        if (ms_avro_new(NULL, &codec, err, sizeof(err))) {
                fprintf(stderr, "fuzz_avro: %s\n", err);
                abort();
        }
        /* Confluent ids 1..4 name the four schemas, as a registry would. */
        for (int i = 0; i < 4; i++)
                if (ms_avro_register_id(codec, i + 1, schema_text(names[i]), err,
                                        sizeof(err))) {
                        fprintf(stderr, "fuzz_avro: %s\n", err);
                        abort();
                }
        const char *dir = getenv("MS_FUZZ_SEED_DIR");
        if (dir && *dir)
                write_seeds(dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        const char *name = names[data[0] & 3];
        int mode = (data[0] >> 2) & 3;
        size_t hdr = mode == 1 ? 10 : mode == 2 ? 5 : 0;
        unsigned char *buf = malloc(size - 1 + hdr + 1);
        if (!buf)
                return 0;
        if (mode == 1) {
                uint64_t fp = ms_avro_fingerprint(codec, name);
                buf[0] = 0xC3;
                buf[1] = 0x01;
                for (int i = 0; i < 8; i++)
                        buf[2 + i] = (unsigned char)(fp >> (8 * i));
        } else if (mode == 2) {
                buf[0] = 0;
                buf[1] = buf[2] = buf[3] = 0;
                buf[4] = (unsigned char)((data[0] & 3) + 1);
        }
        memcpy(buf + hdr, data + 1, size - 1);
        size_t len = size - 1 + hdr;
        char err[512];
        json_t *v = NULL;
        int rc = ms_avro_decode(codec, name, buf, len, &v, err, sizeof(err));
        if (rc == 0) {
                unsigned char *enc = NULL;
                size_t enc_len = 0;
                json_t *again = NULL;
                if (ms_avro_encode(codec, name, NULL, v, &enc, &enc_len, err,
                                   sizeof(err)) ||
                    ms_avro_decode(codec, name, enc, enc_len, &again, err, sizeof(err)) ||
                    !json_equal(v, again)) {
                        fprintf(stderr,
                                "fuzz_avro: %s decoded but does not round-trip: %s\n",
                                name, err);
                        abort();
                }
                free(enc);
                json_decref(again);
        } else if (rc != MS_ERR_DECODE) {
                fprintf(stderr, "fuzz_avro: unexpected return %d: %s\n", rc, err);
                abort();
        }
        json_decref(v);
        free(buf);
        return 0;
}
