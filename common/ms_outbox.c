#include "ms_outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_pg.h"
#include "ms_util.h"

struct ms_outbox {
        ms_avro_t *codec;
        char source[64];
        json_t *rows; /* array of {t, k, v (base64), h} */
};

ms_outbox_t *ms_outbox_new(ms_avro_t *codec, const char *source_role)
{
        ms_outbox_t *ob = calloc(1, sizeof(*ob));
        if (!ob)
                return NULL;
        ob->codec = codec;
        snprintf(ob->source, sizeof(ob->source), "membersync/%s", source_role);
        ob->rows = json_array();
        if (!ob->rows) {
                free(ob);
                return NULL;
        }
        return ob;
}

void ms_outbox_destroy(ms_outbox_t *ob)
{
        if (!ob)
                return;
        json_decref(ob->rows);
        free(ob);
}

static int push_row(ms_outbox_t *ob, const char *topic, const char *key,
                    const void *value, size_t len, json_t *headers, char *errstr,
                    size_t errstr_size)
{
        char *b64 = ms_base64_encode(value, len);
        if (!b64) {
                snprintf(errstr, errstr_size, "outbox: out of memory");
                return MS_ERR_GENERIC;
        }
        json_t *row = json_pack("{s:s, s:s, s:s, s:O}", "t", topic, "k", key, "v", b64,
                                "h", headers);
        free(b64);
        if (!row || json_array_append_new(ob->rows, row)) {
                snprintf(errstr, errstr_size, "outbox: cannot build row");
                return MS_ERR_GENERIC;
        }
        return 0;
}

int ms_outbox_add(ms_outbox_t *ob, const char *topic, const char *key, const char *schema,
                  const char *type, json_t *event, char *errstr, size_t errstr_size)
{
        unsigned char *val = NULL;
        size_t len = 0;
        int rc = ms_avro_encode(ob->codec, schema, topic, event, &val, &len, errstr,
                                errstr_size);
        if (rc)
                return rc;
        const char *id = json_string_value(json_object_get(event, "event_id"));
        if (!id)
                id = json_string_value(json_object_get(event, "job_id"));
        if (!id)
                id = json_string_value(json_object_get(event, "request_id"));
        json_t *t = json_object_get(event, "occurred_at");
        if (!t)
                t = json_object_get(event, "queued_at");
        if (!t)
                t = json_object_get(event, "requested_at");
        char when[40], ce_type[80];
        ms_iso8601(json_is_integer(t) ? json_integer_value(t) : ms_now_ms(), when,
                   sizeof(when));
        snprintf(ce_type, sizeof(ce_type), "membersync.%s", type);
        json_t *h =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ce_id", id ? id : "", "ce_type",
                      ce_type, "ce_source", ob->source, "ce_specversion", "1.0",
                      "ce_time", when, "content-type", "application/avro");
        if (!h) {
                free(val);
                snprintf(errstr, errstr_size, "outbox: cannot build headers");
                return MS_ERR_GENERIC;
        }
        rc = push_row(ob, topic, key, val, len, h, errstr, errstr_size);
        json_decref(h);
        free(val);
        return rc;
}

int ms_outbox_add_raw(ms_outbox_t *ob, const char *topic, const char *key,
                      const void *value, size_t len, json_t *headers, char *errstr,
                      size_t errstr_size)
{
        return push_row(ob, topic, key ? key : "", value ? value : "", value ? len : 0,
                        headers, errstr, errstr_size);
}

size_t ms_outbox_count(const ms_outbox_t *ob)
{
        return json_array_size(ob->rows);
}

int ms_outbox_flush(ms_outbox_t *ob, PGconn *pg, char *errstr, size_t errstr_size)
{
        if (json_array_size(ob->rows) == 0)
                return 0;
        char *doc = json_dumps(ob->rows, JSON_COMPACT);
        if (!doc) {
                snprintf(errstr, errstr_size, "outbox: out of memory");
                return MS_ERR_GENERIC;
        }
        const char *p[] = {doc};
        /* WITH ORDINALITY + ORDER BY keeps the ids in the order the events
         * were added, which is the order the relay publishes them in. */
        int rc = ms_pg_exec(pg,
                            "INSERT INTO membersync.outbox(topic, key, value, headers) "
                            "SELECT x.t, x.k, decode(x.v, 'base64'), x.h FROM ROWS FROM ("
                            "jsonb_to_recordset($1::jsonb) AS (t text, k text, v text, h "
                            "jsonb)) WITH ORDINALITY AS x(t, k, v, h, n) ORDER BY x.n",
                            1, p, NULL, errstr, errstr_size);
        free(doc);
        if (rc == 0)
                json_array_clear(ob->rows);
        return rc;
}

void ms_outbox_reset(ms_outbox_t *ob)
{
        json_array_clear(ob->rows);
}

long long ms_outbox_depth(PGconn *pg)
{
        char err[256];
        PGresult *r = NULL;
        if (ms_pg_exec(pg, "SELECT count(*) FROM membersync.outbox", 0, NULL, &r, err,
                       sizeof(err)))
                return -1;
        long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return n;
}
