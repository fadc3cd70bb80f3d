#include "ms_kafka.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ms_log.h"
#include "ms_util.h"

volatile sig_atomic_t ms_stop = 0;
static unsigned g_grace_s = 25;

static void on_signal(int sig)
{
        (void)sig;
        /* The first signal asks every loop to finish its step, checkpoint
         * and leave its group; if that takes longer than the grace period,
         * SIGALRM's default action ends the process (Kubernetes would send
         * SIGKILL soon after anyway). */
        if (!ms_stop && g_grace_s > 0)
                alarm(g_grace_s);
        ms_stop = 1;
}

void ms_signals_install(int grace_s)
{
        g_grace_s = grace_s > 0 ? (unsigned)grace_s : 0;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
        (void)rk;
        /* syslog levels: 0-3 errors, 4 warning, 5-6 info, 7 debug. */
        ms_log_level_t l = level <= 3   ? MS_LOG_ERROR
                           : level == 4 ? MS_LOG_WARN
                                        : MS_LOG_DEBUG;
        ms_log(l, "kafka %s: %s", fac, buf);
}

int ms_kafka_conf_set(rd_kafka_conf_t *kc, const char *name, const char *value,
                      char *errstr, size_t errstr_size)
{
        char err[256];
        if (rd_kafka_conf_set(kc, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "kafka: %s: %s", name, err);
                return MS_ERR_KAFKA;
        }
        return 0;
}

rd_kafka_conf_t *ms_kafka_conf_new(const ms_conf_t *conf, const char *client_id,
                                   char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        if (ms_kafka_conf_set(kc, "bootstrap.servers", conf->kafka_bootstrap_servers,
                              errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "client.id", client_id, errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "security.protocol", conf->kafka_security_protocol,
                              errstr, errstr_size) ||
            (conf->kafka_ssl_ca_location[0] &&
             ms_kafka_conf_set(kc, "ssl.ca.location", conf->kafka_ssl_ca_location, errstr,
                               errstr_size))) {
                rd_kafka_conf_destroy(kc);
                return NULL;
        }
        rd_kafka_conf_set_log_cb(kc, log_cb);
        return kc;
}

rd_kafka_t *ms_kafka_producer_new(const ms_conf_t *conf, const char *client_id,
                                  int message_timeout_ms,
                                  void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *,
                                                void *),
                                  void *opaque, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *kc = ms_kafka_conf_new(conf, client_id, errstr, errstr_size);
        if (!kc)
                return NULL;
        /* Idempotence gives acks=all, retries without duplicates and per
         * partition order, which the outbox relay's ordering relies on. */
        if (ms_kafka_conf_set(kc, "enable.idempotence", "true", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "linger.ms", "5", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "compression.type", "lz4", errstr, errstr_size) ||
            ms_kafka_conf_set(kc, "partitioner", "murmur2_random", errstr, errstr_size)) {
                rd_kafka_conf_destroy(kc);
                return NULL;
        }
        char mt[24];
        snprintf(mt, sizeof(mt), "%d", message_timeout_ms);
        if (message_timeout_ms >= 0 &&
            ms_kafka_conf_set(kc, "message.timeout.ms", mt, errstr, errstr_size)) {
                rd_kafka_conf_destroy(kc);
                return NULL;
        }
        if (dr_cb)
                rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
        if (opaque)
                rd_kafka_conf_set_opaque(kc, opaque);
        char err[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk) {
                snprintf(errstr, errstr_size, "kafka: producer: %s", err);
                return NULL;
        }
        return rk;
}

void ms_kafka_header(const rd_kafka_message_t *m, const char *name, char *buf,
                     size_t size)
{
        rd_kafka_headers_t *hdrs = NULL;
        const void *val = NULL;
        size_t len = 0;
        buf[0] = '\0';
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return;
        if (rd_kafka_header_get_last(hdrs, name, &val, &len) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            !val)
                return;
        if (len >= size)
                len = size - 1;
        memcpy(buf, val, len);
        buf[len] = '\0';
}
