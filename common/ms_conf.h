/* ms_conf: the configuration every role reads.
 *
 * Source order: built-in default, then the libconfig file, then environment
 * variables MEMBERSYNC_<SECTION>_<KEY> (upper case).  A key in the file that
 * is unknown or of the wrong type, an environment value that does not parse,
 * or a required key left empty is an error whose one-line message names the
 * key and where it came from; callers exit with status 2.
 *
 * Secrets are never stored here in clear by default: keys ending in `_file`
 * name files that ms_conf_secret() reads on demand.
 *
 * Ownership: ms_conf_load fills a caller-owned ms_conf_t whose strings are
 * malloc'ed; release with ms_conf_clear.  Read-only after loading, so threads
 * may share it. */
#ifndef MS_CONF_H
#define MS_CONF_H

#include <stddef.h>

typedef struct ms_conf {
        char *source; /* file path the values came from ("" = defaults only) */

        /* kafka */
        char *kafka_bootstrap_servers;
        char *kafka_group_prefix;
        char *kafka_schema_registry_url; /* "" = single-object encoding */
        char *kafka_security_protocol;
        char *kafka_ssl_ca_location;
        int kafka_session_timeout_ms;
        int kafka_max_poll_interval_ms;

        /* topics */
        char *topic_sync_requests;
        char *topic_sync_jobs_cornerstone;
        char *topic_sync_jobs_consio;
        char *topic_sync_events;
        char *topic_member_changes;
        char *topic_dlq;

        /* postgres */
        char *pg_dsn;

        /* ratelimit */
        int rl_manual_window_s;
        int rl_queued_ttl_s;
        int rl_heartbeat_ttl_s;

        /* connector */
        int conn_page_size;
        int conn_connect_timeout_ms;
        int conn_timeout_ms;
        int conn_max_retries;
        int conn_backoff_base_ms;
        int conn_backoff_max_ms;
        int conn_retry_after_cap_ms;
        int conn_max_response_mb;
        int conn_deactivation_guard_pct;
        int conn_deactivation_guard_min;
        int conn_progress_interval_ms;
        int conn_heartbeat_interval_ms;
        char *conn_ca_file;

        /* relay */
        int relay_batch_size;
        int relay_idle_poll_ms;

        /* api */
        char *api_listen;
        char *api_jwt_hs256_secret_file;
        char *api_jwt_rs256_public_key_file;
        char *api_cors_allow_origins;
        char *api_widget_dir;

        /* health (every role) */
        int health_port; /* 0 = no health/metrics listener */
        int health_shutdown_grace_s;

        /* log */
        char *log_level;
} ms_conf_t;

/* path may be NULL: defaults + environment only.  Returns 0 or MS_ERR_CONFIG
 * with the one-line message in errstr. */
int ms_conf_load(const char *path, ms_conf_t *out, char *errstr, size_t errstr_size);
void ms_conf_clear(ms_conf_t *conf);

/* Topic of the sync-jobs stream of a system slug ("cornerstone"/"consio"). */
const char *ms_conf_jobs_topic(const ms_conf_t *conf, const char *system_slug);

/* Resolves a credentials reference: "env:NAME" reads the environment
 * variable, "file:/path" the file (trailing newline dropped).  *out is
 * malloc'ed; the caller frees it (and should wipe it). */
int ms_conf_secret(const char *ref, char **out, char *errstr, size_t errstr_size);

#endif
