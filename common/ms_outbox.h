/* ms_outbox: a batch of events to write into the transactional outbox.
 *
 * A PG-writing role collects the events its current transaction emits, then
 * ms_outbox_flush inserts them all with one parameterized statement inside
 * that transaction.  Values are Avro-encoded here (ms_avro) and carry
 * CloudEvents headers (Kafka binary binding); the relay publishes them as is.
 *
 * Ownership: the batch borrows the codec (which must outlive it) and copies
 * everything it is given.  One thread at a time. */
#ifndef MS_OUTBOX_H
#define MS_OUTBOX_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "ms_avro.h"

typedef struct ms_outbox ms_outbox_t;

/* source_role names ce_source "membersync/<role>". */
ms_outbox_t *ms_outbox_new(ms_avro_t *codec, const char *source_role);
void ms_outbox_destroy(ms_outbox_t *ob);

/* Encodes event (borrowed; its "event_id" is ce_id, its "occurred_at" or now
 * is ce_time) as Avro schema `schema` and queues it for topic/key.  ce_type is
 * "membersync.<type>". */
int ms_outbox_add(ms_outbox_t *ob, const char *topic, const char *key, const char *schema,
                  const char *type, json_t *event, char *errstr, size_t errstr_size);
/* Queues raw bytes with the given headers (object of string values,
 * borrowed): used for dead letters, which keep the original bytes. */
int ms_outbox_add_raw(ms_outbox_t *ob, const char *topic, const char *key,
                      const void *value, size_t len, json_t *headers, char *errstr,
                      size_t errstr_size);

size_t ms_outbox_count(const ms_outbox_t *ob);
/* Inserts the queued events (in order) within the caller's transaction and
 * empties the batch.  On error the batch is kept; call ms_outbox_reset after
 * rolling back. */
int ms_outbox_flush(ms_outbox_t *ob, PGconn *pg, char *errstr, size_t errstr_size);
void ms_outbox_reset(ms_outbox_t *ob);

/* Current outbox depth (rows not yet published), -1 on error. */
long long ms_outbox_depth(PGconn *pg);

#endif
