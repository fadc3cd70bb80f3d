/* Hidden CLI verb for fault tests (issue 4): `membersync produce-raw TOPIC
 * KEY HEXBYTES [NAME=VALUE ...]` produces one message with exactly the given
 * bytes, so a test can put undecodable or unknown-schema messages on an
 * input topic and watch them go to the DLQ.  KEY "-" means no key; HEXBYTES
 * "-" means a null value (a tombstone), "" an empty one.  HEXBYTES may also
 * be "avro:SCHEMA:JSON": the JSON encoded as that event schema with the
 * configured framing, for events that decode but carry values no real
 * producer writes (a job id that is no UUID, a time far out of range).
 * Further arguments are headers.  Waits for the broker's acknowledgement; exit status 0
 * when delivered, 1 when not, 2 on usage errors.  Not in --help on purpose: it is a test
 * tool, not an operation. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_avro.h"
#include "ms_conf.h"
#include "ms_kafka.h"
#include "ms_util.h"

/* "SCHEMA:JSON" -> Avro bytes (malloc'ed) in the configured framing. */
static int encode_json(const ms_conf_t *conf, const char *topic, const char *spec,
                       unsigned char **out, size_t *len, char *errstr, size_t errstr_size)
{
        const char *colon = strchr(spec, ':');
        if (!colon) {
                snprintf(errstr, errstr_size, "expected avro:SCHEMA:JSON");
                return -1;
        }
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(colon - spec), spec);
        json_error_t jerr;
        json_t *v = json_loads(colon + 1, 0, &jerr);
        if (!v) {
                snprintf(errstr, errstr_size, "JSON: %s", jerr.text);
                return -1;
        }
        ms_avro_t *codec = NULL;
        int rc = ms_avro_new(
            conf->kafka_schema_registry_url[0] ? conf->kafka_schema_registry_url : NULL,
            &codec, errstr, errstr_size);
        if (!rc)
                rc = ms_avro_encode(codec, name, topic, v, out, len, errstr, errstr_size);
        ms_avro_destroy(codec);
        json_decref(v);
        return rc;
}

int ms_cli_produce_raw(const ms_conf_t *conf, int argc, char **argv);

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        int *status = m->_private;
        *status = m->err ? -1 : 1;
}

static int hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = tolower(c);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes hex text into a malloc'ed buffer; -1 on bad input. */
static int unhex(const char *s, unsigned char **out, size_t *len)
{
        size_t n = strlen(s);
        if (n % 2)
                return -1;
        *out = malloc(n / 2 + 1);
        if (!*out)
                return -1;
        for (size_t i = 0; i < n; i += 2) {
                int hi = hexval((unsigned char)s[i]),
                    lo = hexval((unsigned char)s[i + 1]);
                if (hi < 0 || lo < 0) {
                        free(*out);
                        *out = NULL;
                        return -1;
                }
                (*out)[i / 2] = (unsigned char)(hi << 4 | lo);
        }
        *len = n / 2;
        return 0;
}

int ms_cli_produce_raw(const ms_conf_t *conf, int argc, char **argv)
{
        if (argc < 4) {
                fprintf(stderr, "usage: membersync produce-raw TOPIC KEY|- "
                                "HEXBYTES|-|avro:SCHEMA:JSON [NAME=VALUE ...]\n");
                return 2;
        }
        const char *topic = argv[1], *key = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
        unsigned char *val = NULL;
        size_t len = 0;
        int null_value = strcmp(argv[3], "-") == 0;
        char err[512];
        if (strncmp(argv[3], "avro:", 5) == 0) {
                if (encode_json(conf, topic, argv[3] + 5, &val, &len, err, sizeof(err))) {
                        fprintf(stderr, "membersync produce-raw: %s\n", err);
                        return 2;
                }
        } else if (!null_value && unhex(argv[3], &val, &len)) {
                fprintf(stderr, "membersync produce-raw: HEXBYTES is not hex\n");
                return 2;
        }
        int status = 0, rc = 1;
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        for (int a = 4; a < argc; a++) {
                const char *eq = strchr(argv[a], '=');
                if (!eq) {
                        fprintf(stderr,
                                "membersync produce-raw: header %s is not NAME=VALUE\n",
                                argv[a]);
                        rd_kafka_headers_destroy(h);
                        free(val);
                        return 2;
                }
                rd_kafka_header_add(h, argv[a], eq - argv[a], eq + 1, -1);
        }
        rd_kafka_t *rk = ms_kafka_producer_new(conf, "membersync-produce-raw", 30000,
                                               dr_cb, NULL, err, sizeof(err));
        if (!rk) {
                fprintf(stderr, "membersync produce-raw: %s\n", err);
                rd_kafka_headers_destroy(h);
                free(val);
                return 1;
        }
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE(null_value ? NULL : (val ? (void *)val : (void *)""),
                             null_value ? 0 : len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(&status), RD_KAFKA_V_END);
        if (e) {
                rd_kafka_headers_destroy(h);
                fprintf(stderr, "membersync produce-raw: %s\n", rd_kafka_err2str(e));
                goto out;
        }
        rd_kafka_flush(rk, 30000);
        if (status == 1)
                rc = 0;
        else
                fprintf(stderr, "membersync produce-raw: not delivered\n");
out:
        rd_kafka_destroy(rk);
        free(val);
        return rc;
}
