#include "ms_conf.h"

#include <errno.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ms_util.h"

typedef enum { T_STR, T_INT } key_type_t;

typedef struct key_def {
        const char *section;
        const char *key;
        key_type_t type;
        size_t offset;
        const char *def_str;
        int def_int;
        int required; /* a string that may not end up empty */
        int min, max; /* for ints */
} key_def_t;

#define S(sec, k, field, def, req)                                                       \
        {                                                                                \
                sec, k, T_STR, offsetof(ms_conf_t, field), def, 0, req, 0, 0             \
        }
#define I(sec, k, field, def, lo, hi)                                                    \
        {                                                                                \
                sec, k, T_INT, offsetof(ms_conf_t, field), NULL, def, 0, lo, hi          \
        }

/* The whole key space in one table so that the file, the environment and the
 * documentation (config/membersync.conf) cannot drift apart silently. */
static const key_def_t keys[] = {
    S("kafka", "bootstrap_servers", kafka_bootstrap_servers, "127.0.0.1:9092", 1),
    S("kafka", "group_prefix", kafka_group_prefix, "membersync", 1),
    S("kafka", "schema_registry_url", kafka_schema_registry_url, "", 0),
    S("kafka", "security_protocol", kafka_security_protocol, "plaintext", 1),
    S("kafka", "ssl_ca_location", kafka_ssl_ca_location, "", 0),
    I("kafka", "session_timeout_ms", kafka_session_timeout_ms, 10000, 1000, 600000),
    I("kafka", "max_poll_interval_ms", kafka_max_poll_interval_ms, 300000, 5000,
      86400000),
    S("topics", "sync_requests", topic_sync_requests, "membersync.sync-requests.v1", 1),
    S("topics", "sync_jobs_cornerstone", topic_sync_jobs_cornerstone,
      "membersync.sync-jobs.cornerstone.v1", 1),
    S("topics", "sync_jobs_consio", topic_sync_jobs_consio,
      "membersync.sync-jobs.consio.v1", 1),
    S("topics", "sync_events", topic_sync_events, "membersync.sync-events.v1", 1),
    S("topics", "member_changes", topic_member_changes, "membersync.member-changes.v1",
      1),
    S("topics", "dlq", topic_dlq, "membersync.dlq.v1", 1),
    S("postgres", "dsn", pg_dsn, "postgresql:///membersync", 1),
    I("ratelimit", "manual_window_s", rl_manual_window_s, 300, 0, 86400),
    I("ratelimit", "queued_ttl_s", rl_queued_ttl_s, 900, 1, 86400),
    I("ratelimit", "heartbeat_ttl_s", rl_heartbeat_ttl_s, 120, 1, 86400),
    I("connector", "page_size", conn_page_size, 500, 1, 1000),
    I("connector", "connect_timeout_ms", conn_connect_timeout_ms, 5000, 100, 600000),
    I("connector", "timeout_ms", conn_timeout_ms, 30000, 100, 600000),
    I("connector", "max_retries", conn_max_retries, 5, 0, 100),
    I("connector", "backoff_base_ms", conn_backoff_base_ms, 250, 1, 600000),
    I("connector", "backoff_max_ms", conn_backoff_max_ms, 15000, 1, 600000),
    I("connector", "retry_after_cap_ms", conn_retry_after_cap_ms, 60000, 0, 3600000),
    I("connector", "max_response_mb", conn_max_response_mb, 32, 1, 1024),
    I("connector", "deactivation_guard_pct", conn_deactivation_guard_pct, 20, 0, 100),
    I("connector", "deactivation_guard_min", conn_deactivation_guard_min, 10, 0,
      100000000),
    I("connector", "progress_interval_ms", conn_progress_interval_ms, 250, 0, 60000),
    I("connector", "heartbeat_interval_ms", conn_heartbeat_interval_ms, 15000, 100,
      600000),
    S("connector", "ca_file", conn_ca_file, "", 0),
    I("relay", "batch_size", relay_batch_size, 2000, 1, 100000),
    I("relay", "idle_poll_ms", relay_idle_poll_ms, 50, 1, 60000),
    S("api", "listen", api_listen, "127.0.0.1:8080", 1),
    S("api", "jwt_hs256_secret_file", api_jwt_hs256_secret_file, "", 0),
    S("api", "jwt_rs256_public_key_file", api_jwt_rs256_public_key_file, "", 0),
    S("api", "cors_allow_origins", api_cors_allow_origins, "", 0),
    S("api", "widget_dir", api_widget_dir, "", 0),
    I("health", "port", health_port, 0, 0, 65535),
    I("health", "shutdown_grace_s", health_shutdown_grace_s, 25, 1, 3600),
    S("log", "level", log_level, "info", 1),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static char **str_at(ms_conf_t *c, const key_def_t *k)
{
        return (char **)((char *)c + k->offset);
}

static int *int_at(ms_conf_t *c, const key_def_t *k)
{
        return (int *)((char *)c + k->offset);
}

static int set_str(ms_conf_t *c, const key_def_t *k, const char *v)
{
        char *dup = strdup(v);
        if (!dup)
                return -1;
        free(*str_at(c, k));
        *str_at(c, k) = dup;
        return 0;
}

static int parse_int(const char *s, long *out)
{
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end != '\0')
                return -1;
        *out = v;
        return 0;
}

static const key_def_t *find_key(const char *section, const char *key)
{
        for (size_t i = 0; i < NKEYS; i++)
                if (strcmp(keys[i].section, section) == 0 &&
                    strcmp(keys[i].key, key) == 0)
                        return &keys[i];
        return NULL;
}

static int section_known(const char *section)
{
        for (size_t i = 0; i < NKEYS; i++)
                if (strcmp(keys[i].section, section) == 0)
                        return 1;
        return 0;
}

/* Walks the file and rejects anything the table does not know, so that a
 * typo in a key is an error instead of a silently ignored setting. */
static int apply_file(ms_conf_t *c, config_t *cfg, const char *path, char *errstr,
                      size_t errstr_size)
{
        config_setting_t *root = config_root_setting(cfg);
        int nsec = config_setting_length(root);
        for (int i = 0; i < nsec; i++) {
                config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
                const char *sname = config_setting_name(sec);
                if (!sname || !section_known(sname) || !config_setting_is_group(sec)) {
                        snprintf(errstr, errstr_size,
                                 "config: %s: unknown section (or not a group) in %s",
                                 sname ? sname : "?", path);
                        return MS_ERR_CONFIG;
                }
                int nkeys = config_setting_length(sec);
                for (int j = 0; j < nkeys; j++) {
                        config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
                        const char *kname = config_setting_name(s);
                        const key_def_t *k = kname ? find_key(sname, kname) : NULL;
                        if (!k) {
                                snprintf(errstr, errstr_size,
                                         "config: %s.%s: unknown key in %s", sname,
                                         kname ? kname : "?", path);
                                return MS_ERR_CONFIG;
                        }
                        int t = config_setting_type(s);
                        if (k->type == T_STR) {
                                if (t != CONFIG_TYPE_STRING) {
                                        snprintf(errstr, errstr_size,
                                                 "config: %s.%s: expected a string in %s",
                                                 sname, kname, path);
                                        return MS_ERR_CONFIG;
                                }
                                if (set_str(c, k, config_setting_get_string(s)))
                                        goto oom;
                        } else {
                                if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
                                        snprintf(
                                            errstr, errstr_size,
                                            "config: %s.%s: expected an integer in %s",
                                            sname, kname, path);
                                        return MS_ERR_CONFIG;
                                }
                                long long v = config_setting_get_int64(s);
                                if (t == CONFIG_TYPE_INT)
                                        v = config_setting_get_int(s);
                                if (v < k->min || v > k->max) {
                                        snprintf(errstr, errstr_size,
                                                 "config: %s.%s: %lld out of range [%d, "
                                                 "%d] in %s",
                                                 sname, kname, v, k->min, k->max, path);
                                        return MS_ERR_CONFIG;
                                }
                                *int_at(c, k) = (int)v;
                        }
                }
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "config: out of memory");
        return MS_ERR_CONFIG;
}

static int apply_env(ms_conf_t *c, char *errstr, size_t errstr_size)
{
        for (size_t i = 0; i < NKEYS; i++) {
                const key_def_t *k = &keys[i];
                char name[128];
                int n =
                    snprintf(name, sizeof(name), "MEMBERSYNC_%s_%s", k->section, k->key);
                for (int j = 0; j < n; j++)
                        if (name[j] >= 'a' && name[j] <= 'z')
                                name[j] = (char)(name[j] - 'a' + 'A');
                const char *v = getenv(name);
                if (!v)
                        continue;
                if (k->type == T_STR) {
                        if (set_str(c, k, v)) {
                                snprintf(errstr, errstr_size, "config: out of memory");
                                return MS_ERR_CONFIG;
                        }
                } else {
                        long iv;
                        if (parse_int(v, &iv) || iv < k->min || iv > k->max) {
                                snprintf(
                                    errstr, errstr_size,
                                    "config: %s.%s: environment %s=\"%.40s\" is not an "
                                    "integer in [%d, %d]",
                                    k->section, k->key, name, v, k->min, k->max);
                                return MS_ERR_CONFIG;
                        }
                        *int_at(c, k) = (int)iv;
                }
        }
        return 0;
}

int ms_conf_load(const char *path, ms_conf_t *out, char *errstr, size_t errstr_size)
{
        int rc = MS_ERR_CONFIG;
        config_t cfg;
        int cfg_init = 0;
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < NKEYS; i++) {
                if (keys[i].type == T_STR) {
                        if (set_str(out, &keys[i], keys[i].def_str))
                                goto oom;
                } else {
                        *int_at(out, &keys[i]) = keys[i].def_int;
                }
        }
        out->source = strdup(path ? path : "");
        if (!out->source)
                goto oom;
        if (path) {
                config_init(&cfg);
                cfg_init = 1;
                if (!config_read_file(&cfg, path)) {
                        if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
                                snprintf(errstr, errstr_size, "config: cannot read %s",
                                         path);
                        else
                                snprintf(errstr, errstr_size, "config: %s:%d: %s", path,
                                         config_error_line(&cfg),
                                         config_error_text(&cfg));
                        goto out;
                }
                if ((rc = apply_file(out, &cfg, path, errstr, errstr_size)))
                        goto out;
        }
        if ((rc = apply_env(out, errstr, errstr_size)))
                goto out;
        for (size_t i = 0; i < NKEYS; i++) {
                if (keys[i].required && **str_at(out, &keys[i]) == '\0') {
                        snprintf(errstr, errstr_size,
                                 "config: %s.%s: required but empty (%s)",
                                 keys[i].section, keys[i].key,
                                 path ? path : "defaults and environment");
                        rc = MS_ERR_CONFIG;
                        goto out;
                }
        }
        rc = 0;
        goto out;
oom:
        snprintf(errstr, errstr_size, "config: out of memory");
        rc = MS_ERR_CONFIG;
out:
        if (cfg_init)
                config_destroy(&cfg);
        if (rc)
                ms_conf_clear(out);
        return rc;
}

void ms_conf_clear(ms_conf_t *conf)
{
        for (size_t i = 0; i < NKEYS; i++) {
                if (keys[i].type == T_STR) {
                        free(*str_at(conf, &keys[i]));
                        *str_at(conf, &keys[i]) = NULL;
                }
        }
        free(conf->source);
        conf->source = NULL;
}

const char *ms_conf_jobs_topic(const ms_conf_t *conf, const char *system_slug)
{
        if (strcasecmp(system_slug, "cornerstone") == 0)
                return conf->topic_sync_jobs_cornerstone;
        if (strcasecmp(system_slug, "consio") == 0)
                return conf->topic_sync_jobs_consio;
        return NULL;
}

int ms_conf_secret(const char *ref, char **out, char *errstr, size_t errstr_size)
{
        *out = NULL;
        if (!ref) {
                snprintf(errstr, errstr_size, "credentials reference is empty");
                return MS_ERR_CONFIG;
        }
        if (strncmp(ref, "env:", 4) == 0) {
                const char *v = getenv(ref + 4);
                if (!v || !*v) {
                        snprintf(errstr, errstr_size,
                                 "credentials: environment variable %.64s is not set",
                                 ref + 4);
                        return MS_ERR_CONFIG;
                }
                *out = strdup(v);
        } else if (strncmp(ref, "file:", 5) == 0) {
                size_t len;
                char *v = ms_read_file(ref + 5, &len);
                if (!v) {
                        snprintf(errstr, errstr_size,
                                 "credentials: cannot read %.200s: %s", ref + 5,
                                 strerror(errno));
                        return MS_ERR_CONFIG;
                }
                while (len > 0 && (v[len - 1] == '\n' || v[len - 1] == '\r'))
                        v[--len] = '\0';
                *out = v;
        } else {
                snprintf(errstr, errstr_size,
                         "credentials reference must start with env: or file: (the value "
                         "is not shown: "
                         "it may be a secret put there by mistake)");
                return MS_ERR_CONFIG;
        }
        if (!*out) {
                snprintf(errstr, errstr_size, "credentials: out of memory");
                return MS_ERR_CONFIG;
        }
        return 0;
}
