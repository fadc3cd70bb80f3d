/* Tests of common/ms_health.c: the metrics registry's exposition text, its
 * thread safety, and the /livez /readyz /metrics listener, exercised with
 * libcurl against an ephemeral port on 127.0.0.1. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "ms_health.h"
#include "ms_util.h"

/* ---- helpers ---- */

static int reset_metrics(void **state)
{
        (void)state;
        ms_metrics_reset();
        return 0;
}

/* Asserts that line (a whole line, without the newline) occurs in text. */
static void assert_has_line(const char *text, const char *line)
{
        size_t n = strlen(line);
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                if (len == n && strncmp(p, line, n) == 0)
                        return;
                p = nl ? nl + 1 : NULL;
        }
        fail_msg("line not found: %s\n--- in ---\n%s", line, text);
}

typedef struct http_res {
        long status;
        char ctype[128];
        char *body;
        size_t len;
} http_res_t;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
        http_res_t *r = ud;
        size_t n = size * nmemb;
        char *p = realloc(r->body, r->len + n + 1);
        if (!p)
                return 0;
        memcpy(p + r->len, data, n);
        r->body = p;
        r->len += n;
        r->body[r->len] = '\0';
        return n;
}

/* One request to 127.0.0.1:port; fails the test on transport errors. */
static void http_do(int port, const char *method, const char *path, http_res_t *r)
{
        char url[256];
        char *ct = NULL;
        memset(r, 0, sizeof(*r));
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
        CURL *c = curl_easy_init();
        assert_non_null(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        /* HEAD needs NOBODY, else curl waits for the announced body. */
        if (strcmp(method, "HEAD") == 0)
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        if (strcmp(method, "POST") == 0)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
        CURLcode cc = curl_easy_perform(c);
        if (cc != CURLE_OK) {
                curl_easy_cleanup(c);
                fail_msg("GET %s: %s", url, curl_easy_strerror(cc));
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r->ctype, sizeof(r->ctype), "%s", ct ? ct : "");
        curl_easy_cleanup(c);
        if (!r->body)
                r->body = strdup("");
}

/* ---- metrics rendering ---- */

static void test_counter_with_labels(void **state)
{
        (void)state;
        assert_int_equal(ms_metrics_counter_add("membersync_jobs_total", "Jobs finished.",
                                                "outcome=\"SUCCEEDED\"", 1),
                         0);
        assert_int_equal(ms_metrics_counter_add("membersync_jobs_total",
                                                "ignored later help",
                                                "outcome=\"SUCCEEDED\"", 2),
                         0);
        assert_int_equal(ms_metrics_counter_add("membersync_jobs_total", NULL,
                                                "outcome=\"FAILED\"", 1),
                         0);
        assert_int_equal(
            ms_metrics_counter_add("membersync_plain_total", "No labels.", NULL, 0.5), 0);
        char *t = ms_metrics_render();
        assert_non_null(t);
        /* Families sorted by name; series sorted by labels; HELP from the
         * first registration. */
        const char *want = "# HELP membersync_jobs_total Jobs finished.\n"
                           "# TYPE membersync_jobs_total counter\n"
                           "membersync_jobs_total{outcome=\"FAILED\"} 1\n"
                           "membersync_jobs_total{outcome=\"SUCCEEDED\"} 3\n"
                           "# HELP membersync_plain_total No labels.\n"
                           "# TYPE membersync_plain_total counter\n"
                           "membersync_plain_total 0.5\n";
        assert_string_equal(t, want);
        free(t);
}

static void test_gauge_set_add_and_values(void **state)
{
        (void)state;
        assert_int_equal(ms_metrics_gauge_set("membersync_outbox_depth",
                                              "Rows in the outbox.", NULL, 42),
                         0);
        assert_int_equal(ms_metrics_gauge_add("membersync_outbox_depth", NULL, NULL, -2),
                         0);
        assert_int_equal(ms_metrics_gauge_set("membersync_ratio", "A ratio.", NULL, 0.1),
                         0);
        assert_int_equal(
            ms_metrics_gauge_set("membersync_big", "Large.", "p=\"0\"", 1234567890123.0),
            0);
        assert_int_equal(
            ms_metrics_gauge_set("membersync_big", NULL, "p=\"1\"", -INFINITY), 0);
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_has_line(t, "# TYPE membersync_outbox_depth gauge");
        assert_has_line(t, "membersync_outbox_depth 40");
        /* Shortest exact form, not 0.10000000000000001. */
        assert_has_line(t, "membersync_ratio 0.1");
        assert_has_line(t, "membersync_big{p=\"0\"} 1234567890123");
        assert_has_line(t, "membersync_big{p=\"1\"} -Inf");
        free(t);
}

static void test_histogram_buckets_cumulative(void **state)
{
        (void)state;
        const double b[] = {0.125, 0.5, 1};
        assert_int_equal(ms_metrics_histogram_define("membersync_page_seconds",
                                                     "Page fetch latency.", b, 3),
                         0);
        /* Defining again with the same buckets is fine; other ones are not. */
        assert_int_equal(
            ms_metrics_histogram_define("membersync_page_seconds", NULL, b, 3), 0);
        assert_int_equal(
            ms_metrics_histogram_define("membersync_page_seconds", NULL, b, 2),
            MS_ERR_GENERIC);
        const char *l = "system=\"consio\"";
        /* Binary-exact values so that _sum is exact. */
        double obs[] = {0.0625, 0.125, 0.25, 0.75, 2, 5};
        for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
                assert_int_equal(ms_metrics_histogram_observe("membersync_page_seconds",
                                                              NULL, l, obs[i]),
                                 0);
        assert_int_equal(
            ms_metrics_histogram_observe("membersync_page_seconds", NULL, NULL, 0.25), 0);
        char *t = ms_metrics_render();
        assert_non_null(t);
        const char *want =
            "# HELP membersync_page_seconds Page fetch latency.\n"
            "# TYPE membersync_page_seconds histogram\n"
            "membersync_page_seconds_bucket{le=\"0.125\"} 0\n"
            "membersync_page_seconds_bucket{le=\"0.5\"} 1\n"
            "membersync_page_seconds_bucket{le=\"1\"} 1\n"
            "membersync_page_seconds_bucket{le=\"+Inf\"} 1\n"
            "membersync_page_seconds_sum 0.25\n"
            "membersync_page_seconds_count 1\n"
            "membersync_page_seconds_bucket{system=\"consio\",le=\"0.125\"} 2\n"
            "membersync_page_seconds_bucket{system=\"consio\",le=\"0.5\"} 3\n"
            "membersync_page_seconds_bucket{system=\"consio\",le=\"1\"} 4\n"
            "membersync_page_seconds_bucket{system=\"consio\",le=\"+Inf\"} 6\n"
            "membersync_page_seconds_sum{system=\"consio\"} 8.1875\n"
            "membersync_page_seconds_count{system=\"consio\"} 6\n";
        assert_string_equal(t, want);
        free(t);
}

static void test_histogram_default_buckets(void **state)
{
        (void)state;
        assert_int_equal(ms_metrics_histogram_observe("membersync_x_seconds",
                                                      "Default buckets.", NULL, 3),
                         0);
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_has_line(t, "membersync_x_seconds_bucket{le=\"0.005\"} 0");
        assert_has_line(t, "membersync_x_seconds_bucket{le=\"2.5\"} 0");
        assert_has_line(t, "membersync_x_seconds_bucket{le=\"5\"} 1");
        assert_has_line(t, "membersync_x_seconds_bucket{le=\"10\"} 1");
        assert_has_line(t, "membersync_x_seconds_bucket{le=\"+Inf\"} 1");
        assert_has_line(t, "membersync_x_seconds_count 1");
        free(t);
}

static void test_label_escaping_and_help_escaping(void **state)
{
        (void)state;
        char l[128];
        assert_non_null(
            ms_metrics_labels(l, sizeof(l), "path", "/a\"b\\c\nd", "code", "200", NULL));
        assert_string_equal(l, "path=\"/a\\\"b\\\\c\\nd\",code=\"200\"");
        assert_int_equal(ms_metrics_counter_add("membersync_http_total",
                                                "Line one\nback\\slash", l, 1),
                         0);
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_has_line(t, "# HELP membersync_http_total Line one\\nback\\\\slash");
        assert_has_line(
            t, "membersync_http_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 1");
        free(t);

        /* Too small a buffer or a bad label name gives NULL and "". */
        char small[8];
        assert_null(
            ms_metrics_labels(small, sizeof(small), "outcome", "SUCCEEDED", NULL));
        assert_string_equal(small, "");
        assert_null(ms_metrics_labels(l, sizeof(l), "bad-name", "x", NULL));
        assert_non_null(ms_metrics_labels(l, sizeof(l), NULL));
        assert_string_equal(l, "");
}

static void test_rejects_malformed_updates(void **state)
{
        (void)state;
        assert_int_equal(ms_metrics_counter_add("1bad", "h", NULL, 1), MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("bad-name", "h", NULL, 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add(NULL, "h", NULL, 1), MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=\"unterminated", 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=unquoted", 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=\"x\",", 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=\"bad\\escape\"", 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=\"raw\nnewline\"", 1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", NULL, -1),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", NULL, NAN),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_histogram_observe("h_seconds", "h", "le=\"1\"", 1),
                         MS_ERR_GENERIC);
        const double unsorted[] = {1, 0.5};
        assert_int_equal(ms_metrics_histogram_define("h2_seconds", "h", unsorted, 2),
                         MS_ERR_GENERIC);
        /* A name keeps its first type. */
        assert_int_equal(ms_metrics_counter_add("ok_total", "h", "a=\"1\",b=\"2\"", 1),
                         0);
        assert_int_equal(ms_metrics_gauge_set("ok_total", "h", NULL, 1), MS_ERR_GENERIC);
        assert_int_equal(ms_metrics_histogram_observe("ok_total", "h", NULL, 1),
                         MS_ERR_GENERIC);
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_string_equal(t, "# HELP ok_total h\n# TYPE ok_total counter\n"
                               "ok_total{a=\"1\",b=\"2\"} 1\n");
        free(t);
}

static void test_empty_registry_renders_empty(void **state)
{
        (void)state;
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_string_equal(t, "");
        free(t);
}

/* ---- thread safety ---- */

#define THREAD_ITERS 50000

static void *bump(void *arg)
{
        const char *labels = arg;
        for (int i = 0; i < THREAD_ITERS; i++) {
                ms_metrics_counter_add("membersync_race_total", "Race.", NULL, 1);
                ms_metrics_counter_add("membersync_race_by_total", "Race.", labels, 1);
                ms_metrics_histogram_observe("membersync_race_seconds", "Race.", NULL,
                                             0.2);
                ms_metrics_gauge_add("membersync_race_gauge", "Race.", NULL, 1);
                if (i % 5000 == 0)
                        free(ms_metrics_render());
        }
        return NULL;
}

static void test_two_threads_increment(void **state)
{
        (void)state;
        pthread_t a, b;
        assert_int_equal(pthread_create(&a, NULL, bump, "t=\"a\""), 0);
        assert_int_equal(pthread_create(&b, NULL, bump, "t=\"b\""), 0);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        char *t = ms_metrics_render();
        assert_non_null(t);
        assert_has_line(t, "membersync_race_total 100000");
        assert_has_line(t, "membersync_race_by_total{t=\"a\"} 50000");
        assert_has_line(t, "membersync_race_by_total{t=\"b\"} 50000");
        assert_has_line(t, "membersync_race_gauge 100000");
        assert_has_line(t, "membersync_race_seconds_count 100000");
        assert_has_line(t, "membersync_race_seconds_bucket{le=\"0.1\"} 0");
        assert_has_line(t, "membersync_race_seconds_bucket{le=\"0.25\"} 100000");
        free(t);
}

/* ---- HTTP listener ---- */

typedef struct checks {
        int live;
        int ready;
        const char *why;
        int calls;
} checks_t;

static int check_live(void *opaque, char *why, size_t size)
{
        checks_t *c = opaque;
        c->calls++;
        if (!c->live)
                snprintf(why, size, "loop stalled");
        return c->live;
}

static int check_ready(void *opaque, char *why, size_t size)
{
        checks_t *c = opaque;
        c->calls++;
        if (!c->ready)
                snprintf(why, size, "%s", c->why);
        return c->ready;
}

static const char *json_reason(const char *body)
{
        static char buf[256];
        json_error_t e;
        json_t *o = json_loads(body, 0, &e);
        if (!o)
                fail_msg("not JSON: %s (%s)", body, e.text);
        snprintf(buf, sizeof(buf), "%s/%s",
                 json_string_value(json_object_get(o, "status")),
                 json_string_value(json_object_get(o, "reason"))
                     ? json_string_value(json_object_get(o, "reason"))
                     : "-");
        json_decref(o);
        return buf;
}

static void test_http_endpoints(void **state)
{
        (void)state;
        ms_health_t *h = NULL;
        char err[256];
        http_res_t r;
        checks_t c = {.live = 1, .ready = 0, .why = "kafka: \"no\" partitions assigned"};

        assert_int_equal(ms_health_start(0, "127.0.0.1", &h, err, sizeof(err)), 0);
        int port = ms_health_port(h);
        assert_true(port > 0 && port < 65536);

        /* No checks yet: alive, but not ready ("starting"). */
        http_do(port, "GET", "/livez", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_reason(r.body), "ok/-");
        free(r.body);
        http_do(port, "GET", "/readyz", &r);
        assert_int_equal(r.status, 503);
        assert_string_equal(json_reason(r.body), "unavailable/starting");
        free(r.body);

        ms_health_set_checks(h, check_live, check_ready, &c);
        http_do(port, "GET", "/livez", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/json");
        free(r.body);

        c.live = 0;
        http_do(port, "GET", "/livez", &r);
        assert_int_equal(r.status, 503);
        assert_string_equal(json_reason(r.body), "unavailable/loop stalled");
        free(r.body);
        c.live = 1;
        http_do(port, "GET", "/livez?verbose=1", &r);
        assert_int_equal(r.status, 200);
        free(r.body);

        /* The reason is JSON-escaped (it carries quotes here). */
        http_do(port, "GET", "/readyz", &r);
        assert_int_equal(r.status, 503);
        assert_string_equal(json_reason(r.body),
                            "unavailable/kafka: \"no\" partitions assigned");
        free(r.body);
        c.ready = 1;
        http_do(port, "GET", "/readyz", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(json_reason(r.body), "ok/-");
        free(r.body);

        assert_int_equal(ms_metrics_counter_add("membersync_jobs_total", "Jobs.",
                                                "outcome=\"PARTIAL\"", 7),
                         0);
        http_do(port, "GET", "/metrics", &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
        assert_has_line(r.body, "# TYPE membersync_jobs_total counter");
        assert_has_line(r.body, "membersync_jobs_total{outcome=\"PARTIAL\"} 7");
        free(r.body);

        http_do(port, "HEAD", "/metrics", &r);
        assert_int_equal(r.status, 200);
        free(r.body);
        http_do(port, "GET", "/nope", &r);
        assert_int_equal(r.status, 404);
        free(r.body);
        http_do(port, "POST", "/readyz", &r);
        assert_int_equal(r.status, 405);
        free(r.body);

        /* After clearing the checks, c is no longer used. */
        int calls = c.calls;
        ms_health_set_checks(h, NULL, NULL, NULL);
        http_do(port, "GET", "/readyz", &r);
        assert_int_equal(r.status, 503);
        free(r.body);
        assert_int_equal(c.calls, calls);

        ms_health_stop(h);
}

static void test_start_errors(void **state)
{
        (void)state;
        ms_health_t *h = NULL, *h2 = NULL;
        char err[256];
        assert_int_equal(ms_health_start(0, "localhost", &h, err, sizeof(err)),
                         MS_ERR_GENERIC);
        assert_null(h);
        assert_non_null(strstr(err, "numeric"));
        assert_int_equal(ms_health_start(70000, "127.0.0.1", &h, err, sizeof(err)),
                         MS_ERR_GENERIC);
        assert_int_equal(ms_health_start(0, "127.0.0.1", &h, err, sizeof(err)), 0);
        /* The same port twice: the second listener must fail, not steal it. */
        err[0] = '\0';
        assert_int_equal(
            ms_health_start(ms_health_port(h), "127.0.0.1", &h2, err, sizeof(err)),
            MS_ERR_GENERIC);
        assert_null(h2);
        assert_non_null(strstr(err, "cannot listen"));
        ms_health_stop(h);
        ms_health_stop(NULL);

        /* IPv6 loopback, where the machine has it. */
        if (ms_health_start(0, "::1", &h, err, sizeof(err)) == 0) {
                assert_true(ms_health_port(h) > 0);
                ms_health_stop(h);
        }
}

static void test_answer_without_listener(void **state)
{
        (void)state;
        ms_health_t *h = NULL;
        char err[64];
        unsigned status = 0;
        const char *ctype = NULL;
        char *body = NULL;
        checks_t c = {.live = 1, .ready = 1};
        assert_int_equal(ms_health_new(&h, err, sizeof(err)), 0);
        assert_int_equal(ms_health_port(h), 0);
        assert_int_equal(ms_health_answer(h, "/api/v1/orgs", &status, &ctype, &body), 0);
        assert_null(body);
        assert_int_equal(ms_health_answer(h, "/readyzz", &status, &ctype, &body), 0);
        assert_int_equal(ms_health_answer(h, "/readyz", &status, &ctype, &body), 1);
        assert_int_equal(status, 503);
        free(body);
        ms_health_set_checks(h, check_live, check_ready, &c);
        assert_int_equal(ms_health_answer(h, "/readyz", &status, &ctype, &body), 1);
        assert_int_equal(status, 200);
        assert_string_equal(ctype, "application/json");
        free(body);
        assert_int_equal(ms_health_answer(h, "/metrics", &status, &ctype, &body), 1);
        assert_int_equal(status, 200);
        assert_string_equal(ctype, "text/plain; version=0.0.4; charset=utf-8");
        free(body);
        ms_health_destroy(h);
}

static void test_heartbeat(void **state)
{
        (void)state;
        ms_health_beat_t b = {0};
        char why[128];
        assert_int_equal(ms_health_beat_check(&b, 1000, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "not polled"));
        ms_health_beat(&b);
        assert_int_equal(ms_health_beat_check(&b, 1000, why, sizeof(why)), 1);
        ms_sleep_ms(30);
        assert_int_equal(ms_health_beat_check(&b, 10, why, sizeof(why)), 0);
        assert_non_null(strstr(why, "bound 10 ms"));
}

static int group_setup(void **state)
{
        (void)state;
        return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
        (void)state;
        ms_metrics_reset();
        curl_global_cleanup();
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_counter_with_labels, reset_metrics),
            cmocka_unit_test_setup(test_gauge_set_add_and_values, reset_metrics),
            cmocka_unit_test_setup(test_histogram_buckets_cumulative, reset_metrics),
            cmocka_unit_test_setup(test_histogram_default_buckets, reset_metrics),
            cmocka_unit_test_setup(test_label_escaping_and_help_escaping, reset_metrics),
            cmocka_unit_test_setup(test_rejects_malformed_updates, reset_metrics),
            cmocka_unit_test_setup(test_empty_registry_renders_empty, reset_metrics),
            cmocka_unit_test_setup(test_two_threads_increment, reset_metrics),
            cmocka_unit_test_setup(test_http_endpoints, reset_metrics),
            cmocka_unit_test_setup(test_start_errors, reset_metrics),
            cmocka_unit_test_setup(test_answer_without_listener, reset_metrics),
            cmocka_unit_test_setup(test_heartbeat, reset_metrics),
        };
        return cmocka_run_group_tests_name("health", tests, group_setup, group_teardown);
}
