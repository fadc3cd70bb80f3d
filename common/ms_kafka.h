/* ms_kafka: librdkafka set-up shared by every role: client configuration
 * from ms_conf, log routing into ms_log, the idempotent producer, and the
 * process-wide stop flag that SIGTERM/SIGINT set.
 *
 * Thread rules: librdkafka handles are thread-safe; ms_stop is read by every
 * loop and written by the signal handler only. */
#ifndef MS_KAFKA_H
#define MS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "ms_conf.h"

extern volatile sig_atomic_t ms_stop;
/* Installs SIGTERM/SIGINT handlers that set ms_stop (and arm an alarm of
 * grace_s seconds that ends a process which does not stop in time), and
 * ignores SIGPIPE. */
void ms_signals_install(int grace_s);

/* New client configuration with bootstrap servers, security and logging set.
 * The caller owns the result (rd_kafka_conf_destroy, or pass it to
 * rd_kafka_new which takes it). */
rd_kafka_conf_t *ms_kafka_conf_new(const ms_conf_t *conf, const char *client_id,
                                   char *errstr, size_t errstr_size);
/* Sets a property, copying librdkafka's error into errstr. */
int ms_kafka_conf_set(rd_kafka_conf_t *kc, const char *name, const char *value,
                      char *errstr, size_t errstr_size);

/* An idempotent producer (acks=all, ordered per partition).  dr_cb may be
 * NULL.  message_timeout_ms: how long a message may wait for delivery before
 * it fails (0 = never, -1 = librdkafka's default of 300 s). */
rd_kafka_t *ms_kafka_producer_new(const ms_conf_t *conf, const char *client_id,
                                  int message_timeout_ms,
                                  void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *,
                                                void *),
                                  void *opaque, char *errstr, size_t errstr_size);

/* Header value as a NUL-terminated copy in buf ("" when absent). */
void ms_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf,
                     size_t size);

#endif
