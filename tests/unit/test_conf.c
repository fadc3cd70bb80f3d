/* Configuration loading: defaults, file, environment overrides, and the
 * one-line errors that name the key and where it came from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ms_conf.h"
#include "ms_util.h"

static char *write_conf(const char *text)
{
        char *path = strdup("/tmp/ms-test-conf-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

static void test_conf_defaults_without_file(void **state)
{
        (void)state;
        ms_conf_t c;
        char err[256];
        assert_int_equal(ms_conf_load(NULL, &c, err, sizeof(err)), 0);
        assert_string_equal(c.topic_sync_requests, "membersync.sync-requests.v1");
        assert_int_equal(c.rl_manual_window_s, 300);
        assert_int_equal(c.conn_deactivation_guard_pct, 20);
        ms_conf_clear(&c);
}

static void test_conf_file_values_and_env_override(void **state)
{
        (void)state;
        char *path = write_conf("kafka = { bootstrap_servers = \"k1:9092\"; };\n"
                                "ratelimit = { manual_window_s = 60; };\n");
        setenv("MEMBERSYNC_RATELIMIT_MANUAL_WINDOW_S", "120", 1);
        ms_conf_t c;
        char err[256];
        assert_int_equal(ms_conf_load(path, &c, err, sizeof(err)), 0);
        assert_string_equal(c.kafka_bootstrap_servers, "k1:9092");
        assert_int_equal(c.rl_manual_window_s, 120);
        assert_string_equal(c.source, path);
        ms_conf_clear(&c);
        unsetenv("MEMBERSYNC_RATELIMIT_MANUAL_WINDOW_S");
        unlink(path);
        free(path);
}

static void test_conf_unknown_key_names_key_and_file(void **state)
{
        (void)state;
        char *path = write_conf("kafka = { bootstrap_server = \"typo\"; };\n");
        ms_conf_t c;
        char err[256];
        assert_int_equal(ms_conf_load(path, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "kafka.bootstrap_server"));
        assert_non_null(strstr(err, path));
        assert_null(strchr(err, '\n'));
        unlink(path);
        free(path);
}

static void test_conf_wrong_type_and_range_are_errors(void **state)
{
        (void)state;
        char err[256];
        ms_conf_t c;
        char *p1 = write_conf("connector = { page_size = \"big\"; };\n");
        assert_int_equal(ms_conf_load(p1, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "connector.page_size"));
        char *p2 = write_conf("connector = { page_size = 5000; };\n");
        assert_int_equal(ms_conf_load(p2, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "out of range"));
        char *p3 = write_conf("nosuch = { a = 1; };\n");
        assert_int_equal(ms_conf_load(p3, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "nosuch"));
        char *p4 = write_conf("kafka = { bootstrap_servers = ; };\n");
        assert_int_equal(ms_conf_load(p4, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, p4));
        char *files[] = {p1, p2, p3, p4};
        for (int i = 0; i < 4; i++) {
                unlink(files[i]);
                free(files[i]);
        }
}

static void test_conf_bad_env_integer_names_variable(void **state)
{
        (void)state;
        setenv("MEMBERSYNC_CONNECTOR_TIMEOUT_MS", "soon", 1);
        ms_conf_t c;
        char err[256];
        assert_int_equal(ms_conf_load(NULL, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "connector.timeout_ms"));
        assert_non_null(strstr(err, "MEMBERSYNC_CONNECTOR_TIMEOUT_MS"));
        unsetenv("MEMBERSYNC_CONNECTOR_TIMEOUT_MS");
}

static void test_conf_required_key_left_empty_is_error(void **state)
{
        (void)state;
        setenv("MEMBERSYNC_POSTGRES_DSN", "", 1);
        ms_conf_t c;
        char err[256];
        assert_int_equal(ms_conf_load(NULL, &c, err, sizeof(err)), MS_ERR_CONFIG);
        assert_non_null(strstr(err, "postgres.dsn"));
        unsetenv("MEMBERSYNC_POSTGRES_DSN");
}

static void test_conf_missing_file_is_error(void **state)
{
        (void)state;
        ms_conf_t c;
        char err[256];
        assert_int_equal(
            ms_conf_load("/nonexistent/membersync.conf", &c, err, sizeof(err)),
            MS_ERR_CONFIG);
        assert_non_null(strstr(err, "/nonexistent/membersync.conf"));
}

static void test_conf_shipped_file_loads(void **state)
{
        (void)state;
        ms_conf_t c;
        char err[256];
        assert_int_equal(
            ms_conf_load(MS_SOURCE_DIR "/config/membersync.conf", &c, err, sizeof(err)),
            0);
        ms_conf_clear(&c);
}

static void test_conf_secret_from_env_and_file(void **state)
{
        (void)state;
        char err[256], *v = NULL;
        setenv("MS_TEST_SECRET", "s3cret", 1);
        assert_int_equal(ms_conf_secret("env:MS_TEST_SECRET", &v, err, sizeof(err)), 0);
        assert_string_equal(v, "s3cret");
        free(v);
        char *path = write_conf("from-file\n");
        char ref[128];
        snprintf(ref, sizeof(ref), "file:%s", path);
        assert_int_equal(ms_conf_secret(ref, &v, err, sizeof(err)), 0);
        assert_string_equal(v, "from-file");
        free(v);
        assert_int_equal(ms_conf_secret("env:MS_TEST_NOT_SET_X", &v, err, sizeof(err)),
                         MS_ERR_CONFIG);
        assert_int_equal(ms_conf_secret("plain-secret", &v, err, sizeof(err)),
                         MS_ERR_CONFIG);
        /* The message must not echo the secret-like value back whole. */
        assert_null(strstr(err, "plain-secret"));
        unlink(path);
        free(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_conf_defaults_without_file),
            cmocka_unit_test(test_conf_file_values_and_env_override),
            cmocka_unit_test(test_conf_unknown_key_names_key_and_file),
            cmocka_unit_test(test_conf_wrong_type_and_range_are_errors),
            cmocka_unit_test(test_conf_bad_env_integer_names_variable),
            cmocka_unit_test(test_conf_required_key_left_empty_is_error),
            cmocka_unit_test(test_conf_missing_file_is_error),
            cmocka_unit_test(test_conf_shipped_file_loads),
            cmocka_unit_test(test_conf_secret_from_env_and_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
