/* ms_consumer: a Kafka consumer whose consumed offsets live in PostgreSQL.
 *
 * DESIGN 2, delivery rule: a consumer that writes PostgreSQL stores the
 * offset it consumed in the same transaction as its effects and, on
 * assignment, starts from the offsets stored there (not from Kafka's
 * committed offsets, which are only updated afterwards for lag monitoring).
 *
 * Two ways to handle a message:
 *  - ms_consumer_run with a tx_handler: the framework opens a transaction,
 *    calls the handler, stores the offset, flushes the outbox batch and
 *    commits.  A handler returning MS_ERR_DECODE sends the original bytes to
 *    the DLQ (through the outbox, same transaction as the offset) and the
 *    consumer moves on.  Any other error rolls back, re-reads the stored
 *    offsets and retries after a back-off (PostgreSQL down, say).
 *  - a long handler (the connector) manages its own transactions: it calls
 *    ms_consumer_store_offset inside its last one, and ms_consumer_keepalive
 *    between steps so the group membership survives jobs longer than
 *    max.poll.interval.ms (all partitions are paused while it works).
 *
 * Thread rules: one thread drives a consumer; the stop flag is ms_stop. */
#ifndef MS_CONSUMER_H
#define MS_CONSUMER_H

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "ms_avro.h"
#include "ms_conf.h"
#include "ms_outbox.h"

typedef struct ms_consumer ms_consumer_t;

/* Handler return values beyond 0 / negative MS_ERR_*. */
#define MS_CONSUMER_INTERRUPTED 1 /* stop: partition revoked or shutdown; no offset */

typedef int (*ms_consumer_handler_t)(void *opaque, ms_consumer_t *c, PGconn *pg,
                                     const rd_kafka_message_t *m, ms_outbox_t *ob,
                                     char *errstr, size_t errstr_size);

typedef struct ms_consumer_conf {
        const ms_conf_t *conf;
        const char *role;      /* log/app name, e.g. "ratelimiter" */
        const char *group;     /* full group id */
        const char *topics[4]; /* NULL-terminated */
        ms_avro_t *codec;      /* for the outbox batch; borrowed */
        /* Either tx_handler (framework-managed transaction) or long_handler. */
        ms_consumer_handler_t tx_handler;
        ms_consumer_handler_t long_handler;
        void *opaque;
        /* Called every loop iteration (about every 100 ms) with the PG
         * connection, for periodic work; may be NULL. */
        void (*tick)(void *opaque, PGconn *pg);
} ms_consumer_conf_t;

int ms_consumer_new(const ms_consumer_conf_t *cc, ms_consumer_t **out, char *errstr,
                    size_t errstr_size);
void ms_consumer_destroy(ms_consumer_t *c);

/* Runs until ms_stop is set.  Returns 0 on a clean stop. */
int ms_consumer_run(ms_consumer_t *c, char *errstr, size_t errstr_size);

/* For long handlers: stores m's next offset within the caller's open
 * transaction. */
int ms_consumer_store_offset(ms_consumer_t *c, PGconn *pg, const rd_kafka_message_t *m,
                             char *errstr, size_t errstr_size);
/* For long handlers: serves the group protocol without taking new work.
 * Returns non-zero when the handler must stop now (shutdown requested or the
 * message's partition was revoked). */
int ms_consumer_keepalive(ms_consumer_t *c);

/* Runs a consumer role until ms_stop: creates the codec (stored in
 * *codec_slot before the first message, so the handlers find it through
 * their opaque), the consumer of group "<group_prefix>-<name>" on one topic
 * (stored in *consumer_slot when non-NULL), and runs it.  cc supplies the
 * handler and opaque; its conf, role, group, topics and codec are filled
 * here. */
int ms_consumer_role_run(const ms_conf_t *conf, const char *name, const char *topic,
                         ms_consumer_conf_t cc, ms_avro_t **codec_slot,
                         ms_consumer_t **consumer_slot, char *errstr, size_t errstr_size);

/* Health: ms since the loop last polled, and whether partitions are
 * assigned. */
long long ms_consumer_poll_age_ms(const ms_consumer_t *c);
int ms_consumer_assigned_count(const ms_consumer_t *c);

#endif
