#include "ms_trigger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_kafka.h"
#include "ms_util.h"

json_t *ms_trigger_request_new(const char *request_id, const char *org_id,
                               const char *integration, const char *trigger,
                               const char *user_id, const char *role,
                               const char *actor_org, int64_t requested_at_ms)
{
        return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s?}, s:I}", "request_id",
                         request_id, "org_id", org_id, "integration", integration,
                         "trigger", trigger, "requested_by", "user_id", user_id, "role",
                         role, "org_id", actor_org, "requested_at",
                         (json_int_t)requested_at_ms);
}

int ms_trigger_produce(rd_kafka_t *rk, ms_avro_t *codec, const ms_conf_t *conf,
                       const char *source, json_t *req, void *msg_opaque, char *errstr,
                       size_t errstr_size)
{
        unsigned char *val = NULL;
        size_t len = 0;
        const char *org = json_string_value(json_object_get(req, "org_id"));
        const char *rid = json_string_value(json_object_get(req, "request_id"));
        if (!org || !rid) {
                snprintf(errstr, errstr_size,
                         "SyncRequested without org_id or request_id");
                return MS_ERR_GENERIC;
        }
        int rc = ms_avro_encode(codec, "SyncRequested", conf->topic_sync_requests, req,
                                &val, &len, errstr, errstr_size);
        if (rc)
                return rc;
        char when[40], src[80];
        ms_iso8601(json_integer_value(json_object_get(req, "requested_at")), when,
                   sizeof(when));
        snprintf(src, sizeof(src), "membersync/%s", source);
        rd_kafka_headers_t *h = rd_kafka_headers_new(6);
        rd_kafka_header_add(h, "ce_id", -1, rid, -1);
        rd_kafka_header_add(h, "ce_type", -1, "membersync.SyncRequested", -1);
        rd_kafka_header_add(h, "ce_source", -1, src, -1);
        rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
        rd_kafka_header_add(h, "ce_time", -1, when, -1);
        rd_kafka_header_add(h, "content-type", -1, "application/avro", -1);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(conf->topic_sync_requests),
            RD_KAFKA_V_KEY(org, strlen(org)), RD_KAFKA_V_VALUE(val, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        free(val);
        if (e) {
                /* On failure the headers were not taken over by librdkafka. */
                rd_kafka_headers_destroy(h);
                snprintf(errstr, errstr_size, "kafka: produce: %s", rd_kafka_err2str(e));
                return MS_ERR_KAFKA;
        }
        return 0;
}

static void oneshot_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        (void)rk;
        (void)opaque;
        int *status = m->_private;
        *status = m->err ? -1 : 1;
}

int ms_trigger_publish(const ms_conf_t *conf, const char *source, json_t *req,
                       char *errstr, size_t errstr_size)
{
        int rc = 0, status = 0;
        ms_avro_t *codec = NULL;
        rd_kafka_t *rk = NULL;
        if ((rc = ms_avro_new(conf->kafka_schema_registry_url[0]
                                  ? conf->kafka_schema_registry_url
                                  : NULL,
                              &codec, errstr, errstr_size)))
                return rc;
        char client[80];
        snprintf(client, sizeof(client), "membersync-%s", source);
        rk = ms_kafka_producer_new(conf, client, 30000, oneshot_dr_cb, NULL, errstr,
                                   errstr_size);
        if (!rk) {
                rc = MS_ERR_KAFKA;
                goto out;
        }
        if ((rc = ms_trigger_produce(rk, codec, conf, source, req, &status, errstr,
                                     errstr_size)))
                goto out;
        rd_kafka_flush(rk, 30000);
        if (status != 1) {
                snprintf(errstr, errstr_size, "kafka: the trigger was not delivered");
                rc = MS_ERR_KAFKA;
        }
out:
        if (rk)
                rd_kafka_destroy(rk);
        ms_avro_destroy(codec);
        return rc;
}
