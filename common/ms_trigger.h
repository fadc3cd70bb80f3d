/* ms_trigger: publishing SyncRequested triggers (DESIGN 3, 4) from the CLI
 * (`membersync trigger`, `schedule`) and from the HTTP API.
 *
 * The Avro encoding, the key (org_id) and the CloudEvents headers live here
 * once, so every publisher sends byte-for-byte the same shape.
 *
 * Thread rules: ms_trigger_produce may be called from any thread with a
 * shared producer and codec (both are thread-safe). */
#ifndef MS_TRIGGER_H
#define MS_TRIGGER_H

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "ms_avro.h"
#include "ms_conf.h"

/* A new SyncRequested (JSON shape of docs/modules.md).  integration is the
 * enum spelling ("CORNERSTONE"), trigger "MANUAL"/"SCHEDULED", role
 * "ORG_ADMIN"/"GLOBAL_ADMIN"/"SYSTEM"; actor_org may be NULL.  The caller
 * owns the result (json_decref); NULL on out of memory. */
json_t *ms_trigger_request_new(const char *request_id, const char *org_id,
                               const char *integration, const char *trigger,
                               const char *user_id, const char *role,
                               const char *actor_org, int64_t requested_at_ms);

/* Encodes req (borrowed) and hands it to the producer for
 * conf->topic_sync_requests, keyed by its org_id, with ce_source
 * "membersync/<source>".  msg_opaque is the message's delivery-report opaque
 * (rd_kafka_message_t._private).  Does not wait for delivery. */
int ms_trigger_produce(rd_kafka_t *rk, ms_avro_t *codec, const ms_conf_t *conf,
                       const char *source, json_t *req, void *msg_opaque, char *errstr,
                       size_t errstr_size);

/* One-shot: creates a producer, produces req (borrowed) and waits for the
 * broker's acknowledgement (at most 30 s).  For short-lived processes. */
int ms_trigger_publish(const ms_conf_t *conf, const char *source, json_t *req,
                       char *errstr, size_t errstr_size);

#endif
