/* libFuzzer target: the member-record canonicalizer of one member system
 * (issue 4, point 7); built twice, with -DFUZZ_SYSTEM=MS_SYSTEM_CORNERSTONE
 * and -DFUZZ_SYSTEM=MS_SYSTEM_CONSIO.
 *
 * The input is JSON text as a member API would send it (\u0000 allowed, as
 * the gateway allows it); a top-level array is treated as a page of records,
 * anything else as one record.  Each record goes through ms_canon_record and
 * what the connector does with the result: the external id, the content
 * hash, changed fields against itself (must be none) and the JSON dump the
 * repository stores (must parse back to the same member). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_canon.h"

#ifndef FUZZ_SYSTEM
#define FUZZ_SYSTEM MS_SYSTEM_CORNERSTONE
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const json_t *rec)
{
        ms_canon_result_t res;
        /* 2026-12-03: a fixed "today" keeps runs reproducible. */
        if (ms_canon_record(FUZZ_SYSTEM, rec, 20425, &res))
                return;
        char *id = ms_canon_external_id(FUZZ_SYSTEM, rec);
        if ((id == NULL) != (res.external_id == NULL) ||
            (id && strcmp(id, res.external_id) != 0)) {
                fprintf(stderr,
                        "fuzz_canon: external id differs between the two calls\n");
                abort();
        }
        if (res.member) {
                if (res.error.code[0]) {
                        fprintf(stderr, "fuzz_canon: member and error %s\n",
                                res.error.code);
                        abort();
                }
                (void)ms_canon_member_hash(res.member);
                json_t *cf = ms_canon_changed_fields(res.member, res.member);
                if (json_array_size(cf) != 0) {
                        fprintf(stderr, "fuzz_canon: a member differs from itself\n");
                        abort();
                }
                json_decref(cf);
                char *text = json_dumps(res.member, JSON_COMPACT | JSON_ENSURE_ASCII);
                json_t *back = text ? json_loads(text, JSON_ALLOW_NUL, NULL) : NULL;
                if (!back || !json_equal(back, res.member) ||
                    ms_canon_member_hash(back) != ms_canon_member_hash(res.member)) {
                        fprintf(stderr,
                                "fuzz_canon: member does not survive a JSON trip\n");
                        abort();
                }
                json_decref(back);
                free(text);
                ms_canon_result_set_duplicate(&res);
        }
        free(id);
        ms_canon_result_clear(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *v =
            json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
        if (!v)
                return 0;
        if (json_is_array(v)) {
                size_t i;
                json_t *rec;
                json_array_foreach(v, i, rec) one(rec);
        } else {
                one(v);
        }
        json_decref(v);
        return 0;
}
