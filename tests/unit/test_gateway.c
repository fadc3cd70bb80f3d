/* Tests of the member system API gateway (connectors/ms_gateway.c with
 * cornerstone_api.c and consio_api.c) against the simulator binary
 * membersync-sim (env MS_SIM_BIN), started per test as a child process whose
 * first stdout line names its port.  Every started simulator is killed in
 * the teardown, also when an assertion failed. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "ms_gateway.h"
#include "ms_util.h"

#define MAX_SIMS 4

typedef struct sim_proc {
        pid_t pid;
        int out_fd; /* kept open so the simulator's later log lines do not fail */
        int port;
} sim_proc_t;

typedef struct fixture {
        sim_proc_t sims[MAX_SIMS];
        int nsims;
        ms_gateway_t *gw[MAX_SIMS];
} fixture_t;

typedef struct fetch_result {
        int rc;
        int64_t records;
        int64_t total;
        int64_t pages;
        char err[256];
} fetch_result_t;

/* ---- simulator processes ---- */

static int sim_stop(sim_proc_t *s)
{
        int status = -1;
        if (s->pid <= 0)
                return -1;
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
                pid_t r = waitpid(s->pid, &status, WNOHANG);
                if (r == s->pid)
                        goto done;
                usleep(50000);
        }
        /* Did not stop within 5 s: make sure no process outlives the test. */
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        status = -1;
done:
        s->pid = 0;
        if (s->out_fd >= 0)
                close(s->out_fd);
        s->out_fd = -1;
        return status;
}

/* Reads the first line of fd within timeout_ms. */
static int read_line(int fd, char *buf, size_t size, int timeout_ms)
{
        size_t n = 0;
        int64_t end = ms_mono_ms() + timeout_ms;
        while (n + 1 < size) {
                int64_t left = end - ms_mono_ms();
                if (left <= 0)
                        return -1;
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int pr = poll(&p, 1, (int)left);
                if (pr < 0 && errno == EINTR)
                        continue;
                if (pr <= 0)
                        return -1;
                ssize_t r = read(fd, buf + n, 1);
                if (r <= 0)
                        return -1;
                if (buf[n] == '\n') {
                        buf[n] = '\0';
                        return 0;
                }
                n++;
        }
        return -1;
}

/* Starts membersync-sim with --system sys and the NULL-terminated extra
 * arguments; returns its index in the fixture. */
static int sim_start(fixture_t *f, const char *sys, ...)
{
        const char *bin = getenv("MS_SIM_BIN");
        const char *argv[64];
        int argc = 0;
        va_list ap;

        assert_non_null(bin);
        assert_true(f->nsims < MAX_SIMS);
        argv[argc++] = bin;
        argv[argc++] = "--system";
        argv[argc++] = sys;
        va_start(ap, sys);
        const char *a;
        while ((a = va_arg(ap, const char *)) != NULL && argc < 62)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;

        int pfd[2];
        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                dup2(pfd[1], STDOUT_FILENO);
                execv(bin, (char *const *)argv);
                _exit(127);
        }
        close(pfd[1]);
        sim_proc_t *s = &f->sims[f->nsims++];
        s->pid = pid;
        s->out_fd = pfd[0];

        char line[256];
        assert_int_equal(read_line(s->out_fd, line, sizeof(line), 10000), 0);
        const char *prefix = "membersync-sim listening on 127.0.0.1:";
        assert_true(strncmp(line, prefix, strlen(prefix)) == 0);
        s->port = atoi(line + strlen(prefix));
        assert_true(s->port > 0);
        return f->nsims - 1;
}

static const char *sample(const char *rel)
{
        static char path[4][1024];
        static int next;
        const char *dir = getenv("MS_SAMPLE_DIR");
        assert_non_null(dir);
        char *p = path[next++ % 4];
        snprintf(p, 1024, "%s/%s", dir, rel);
        return p;
}

/* ---- gateway helpers ---- */

static ms_gateway_conf_t test_conf(ms_system_t sys)
{
        ms_gateway_conf_t c = {
            .system = sys,
            .api_key = "test-key",
            .client_id = "test-client",
            .client_secret = "test-secret",
            .page_size = 100,
            .connect_timeout_ms = 2000,
            .timeout_ms = 5000,
            .max_retries = 4,
            .backoff_base_ms = 10,
            .backoff_max_ms = 50,
            .retry_after_cap_ms = 5000,
        };
        return c;
}

/* Creates gateway `slot` for simulator `si` with conf (base_url filled in). */
static ms_gateway_t *gw_new(fixture_t *f, int slot, int si, ms_gateway_conf_t conf)
{
        char base[64], err[256] = "";
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", f->sims[si].port);
        conf.base_url = base;
        int rc = ms_gateway_new(&conf, &f->gw[slot], err, sizeof(err));
        if (rc)
                print_error("ms_gateway_new: %s\n", err);
        assert_int_equal(rc, 0);
        return f->gw[slot];
}

/* Pages through everything from position start; appends items to collect
 * when given. */
static fetch_result_t fetch_all(ms_gateway_t *gw, const char *start, json_t *collect)
{
        fetch_result_t r = {0};
        char *pos = start ? strdup(start) : NULL;
        r.total = -1;
        for (int guard = 0; guard < 100000; guard++) {
                ms_page_t page;
                r.rc = ms_gateway_fetch_page(gw, pos, &page, r.err, sizeof(r.err));
                if (r.rc)
                        break;
                r.pages++;
                r.records += (int64_t)json_array_size(page.items);
                r.total = page.total_count;
                if (collect)
                        json_array_extend(collect, page.items);
                free(pos);
                pos = page.next ? strdup(page.next) : NULL;
                ms_page_clear(&page);
                if (!pos)
                        break;
        }
        free(pos);
        return r;
}

static size_t body_cb(char *p, size_t s, size_t n, void *ud)
{
        json_t **out = ud;
        json_error_t e;
        json_decref(*out);
        *out = json_loadb(p, s * n, 0, &e);
        return s * n;
}

/* GET or POST on the simulator's admin API; returns the parsed body. */
static json_t *sim_admin(fixture_t *f, int si, const char *method, const char *path)
{
        char url[1024];
        json_t *body = NULL;
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->sims[si].port, path);
        CURL *c = curl_easy_init();
        assert_non_null(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        if (strcmp(method, "POST") == 0)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        CURLcode res = curl_easy_perform(c);
        curl_easy_cleanup(c);
        assert_int_equal(res, CURLE_OK);
        assert_non_null(body);
        return body;
}

static int64_t sim_stat(fixture_t *f, int si, const char *key)
{
        json_t *s = sim_admin(f, si, "GET", "/admin/stats");
        int64_t v = json_integer_value(json_object_get(s, key));
        json_decref(s);
        return v;
}

typedef struct idle_state {
        int calls;
        int cancel_at; /* 0 = never cancel */
} idle_state_t;

static int idle_count(void *opaque)
{
        idle_state_t *st = opaque;
        st->calls++;
        return st->cancel_at && st->calls >= st->cancel_at;
}

/* ---- fixture ---- */

static int setup(void **state)
{
        fixture_t *f = calloc(1, sizeof(*f));
        if (!f)
                return -1;
        for (int i = 0; i < MAX_SIMS; i++)
                f->sims[i].out_fd = -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture_t *f = *state;
        for (int i = 0; i < MAX_SIMS; i++)
                ms_gateway_destroy(f->gw[i]);
        for (int i = 0; i < f->nsims; i++)
                sim_stop(&f->sims[i]);
        free(f);
        return 0;
}

/* ---- tests: paging ---- */

static void test_gateway_cornerstone_pages_sample_v1_completely(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--file",
                           sample("cornerstone/members-v1.json"), NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.page_size = 50; /* 9 pages: cursors with '=' must be escaped */
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        json_t *all = json_array();
        fetch_result_t r = fetch_all(gw, NULL, all);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 402);
        assert_int_equal(r.total, 402);
        assert_int_equal(r.pages, 9);
        /* Served verbatim in array order, null entries included. */
        json_t *file =
            json_load_file(sample("cornerstone/members-v1.json"), JSON_ALLOW_NUL, NULL);
        assert_true(json_equal(file, all));
        json_decref(file);
        json_decref(all);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.pages, 9);
        assert_int_equal(st.requests, 9);
        assert_int_equal(st.retries, 0);
        assert_int_equal(st.responses_by_class[2], 9);
        /* One keep-alive connection carried every page (the second one is
         * this stats query's own). */
        assert_int_equal(sim_stat(f, si, "connections"), 2);
}

static void test_gateway_consio_pages_sample_v1_with_one_token(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--file", sample("consio/members-v1.json"), NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 302);
        assert_int_equal(r.total, 302);
        assert_int_equal(r.pages, 4);
        assert_int_equal(sim_stat(f, si, "tokens_issued"), 1);
        assert_int_equal(sim_stat(f, si, "pages_served"), 4);
}

static void test_gateway_resumes_from_a_saved_position(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--file",
                           sample("cornerstone/members-v1.json"), NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        char err[256];
        ms_page_t page;
        assert_int_equal(ms_gateway_fetch_page(gw, NULL, &page, err, sizeof(err)), 0);
        assert_non_null(page.next);
        /* A new gateway (a replaced connector) continues from the cursor. */
        ms_gateway_t *gw2 = gw_new(f, 1, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw2, page.next, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records + (int64_t)json_array_size(page.items), 402);
        ms_page_clear(&page);

        int sc = sim_start(f, "consio", "--file", sample("consio/members-v1.json"), NULL);
        ms_gateway_t *gw3 = gw_new(f, 2, sc, test_conf(MS_SYSTEM_CONSIO));
        r = fetch_all(gw3, "3", NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 102);
        assert_int_equal(ms_gateway_fetch_page(gw3, "abc", &page, err, sizeof(err)),
                         MS_ERR_GENERIC);
}

static void test_gateway_ping_checks_both_systems(void **state)
{
        fixture_t *f = *state;
        char err[256];
        int cs = sim_start(f, "cornerstone", "--generate", "10", NULL);
        int cx = sim_start(f, "consio", "--generate", "10", NULL);
        assert_int_equal(
            ms_gateway_ping(gw_new(f, 0, cs, test_conf(MS_SYSTEM_CORNERSTONE)), err,
                            sizeof(err)),
            0);
        assert_int_equal(ms_gateway_ping(gw_new(f, 1, cx, test_conf(MS_SYSTEM_CONSIO)),
                                         err, sizeof(err)),
                         0);
        assert_int_equal(sim_stat(f, cx, "tokens_issued"), 1);
        ms_gateway_conf_t bad = test_conf(MS_SYSTEM_CORNERSTONE);
        bad.api_key = "wrong";
        assert_int_equal(ms_gateway_ping(gw_new(f, 2, cs, bad), err, sizeof(err)),
                         MS_ERR_AUTH);
}

/* ---- tests: auth ---- */

static void test_gateway_cornerstone_wrong_api_key_is_auth_error(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "10", "--api-key", "right-key",
                           NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_AUTH);
        /* The key must not show up in the message. */
        assert_null(strstr(r.err, "test-key"));
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.responses_by_class[4], 1);
}

static void test_gateway_consio_wrong_client_secret_is_auth_error(void **state)
{
        fixture_t *f = *state;
        int si =
            sim_start(f, "consio", "--generate", "10", "--client-secret", "other", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_AUTH);
        assert_null(strstr(r.err, "test-secret"));
        assert_int_equal(sim_stat(f, si, "tokens_issued"), 0);
}

static void test_gateway_auth_fail_is_auth_error_for_both_systems(void **state)
{
        fixture_t *f = *state;
        int cs =
            sim_start(f, "cornerstone", "--generate", "10", "--fault", "auth-fail", NULL);
        int cx = sim_start(f, "consio", "--generate", "10", "--fault", "auth-fail", NULL);
        fetch_result_t r =
            fetch_all(gw_new(f, 0, cs, test_conf(MS_SYSTEM_CORNERSTONE)), NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_AUTH);
        r = fetch_all(gw_new(f, 1, cx, test_conf(MS_SYSTEM_CONSIO)), NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_AUTH);
}

static void test_gateway_consio_token_expiry_refreshes_once(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--file", sample("consio/members-v1.json"),
                           "--fault", "token-expire-after:3", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 302);
        assert_int_equal(sim_stat(f, si, "tokens_issued"), 2);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 0); /* a refresh is not a retry */
        assert_int_equal(st.responses_by_class[4], 1);
}

static void test_gateway_consio_refreshes_token_before_expiry(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--generate", "300", "--token-ttl", "1", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        char err[256];
        ms_page_t page;
        assert_int_equal(ms_gateway_fetch_page(gw, NULL, &page, err, sizeof(err)), 0);
        ms_page_clear(&page);
        ms_sleep_ms(1000);
        assert_int_equal(ms_gateway_fetch_page(gw, "2", &page, err, sizeof(err)), 0);
        ms_page_clear(&page);
        assert_int_equal(sim_stat(f, si, "tokens_issued"), 2);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        /* The token was replaced before it ran out, not after a 401. */
        assert_int_equal(st.responses_by_class[4], 0);
}

/* ---- tests: retries ---- */

static void test_gateway_retries_503_burst_then_succeeds(void **state)
{
        fixture_t *f = *state;
        int si =
            sim_start(f, "cornerstone", "--file", sample("cornerstone/members-v1.json"),
                      "--fault", "status:503:2:3", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 402);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 3);
        assert_int_equal(st.responses_by_class[5], 3);
        assert_int_equal(st.requests, 5 + 3);
}

static void test_gateway_gives_up_after_max_retries(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--generate", "50", "--fault", "status:500:1:10",
                           NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CONSIO);
        c.max_retries = 2;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_RETRIES);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.responses_by_class[5], 3);
        assert_int_equal(st.retries, 2);
        assert_int_equal(st.pages, 0);
}

static void test_gateway_unexpected_4xx_is_not_retried(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "50", "--fault",
                           "status:404:1:1", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_HTTP);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.requests, 1);
}

static void check_retry_after(void **state, const char *sys, const char *fault)
{
        fixture_t *f = *state;
        idle_state_t idle = {0};
        ms_system_t s =
            strcmp(sys, "consio") == 0 ? MS_SYSTEM_CONSIO : MS_SYSTEM_CORNERSTONE;
        int si = sim_start(f, sys, "--generate", "150", "--fault", fault, NULL);
        ms_gateway_conf_t c = test_conf(s);
        c.idle_cb = idle_count;
        c.idle_opaque = &idle;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        int64_t t0 = ms_mono_ms();
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        int64_t elapsed = ms_mono_ms() - t0;
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 150);
        /* A one-second Retry-After must be waited out (backoff alone would
         * be at most 50 ms here). */
        assert_true(elapsed >= 900);
        assert_true(elapsed < 4000);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 1);
        assert_int_equal(st.responses_by_class[4], 1);
        /* The wait ran in slices of at most 200 ms with idle_cb between. */
        assert_true(idle.calls >= 5);
}

static void test_gateway_honours_retry_after_seconds(void **state)
{
        check_retry_after(state, "cornerstone", "429s:2:1");
}

static void test_gateway_honours_retry_after_http_date(void **state)
{
        check_retry_after(state, "consio", "429date:1:1");
}

static void test_gateway_caps_long_retry_after(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "10", "--fault", "429s:1:3600",
                           NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.retry_after_cap_ms = 300;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        int64_t t0 = ms_mono_ms();
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        int64_t elapsed = ms_mono_ms() - t0;
        assert_int_equal(r.rc, 0);
        assert_true(elapsed >= 250);
        assert_true(elapsed < 3000);
}

static void test_gateway_retries_after_timeout_on_hang(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "120", "--fault",
                           "hang:1:3000", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.timeout_ms = 400;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        int64_t t0 = ms_mono_ms();
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        int64_t elapsed = ms_mono_ms() - t0;
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 120);
        assert_true(elapsed < 2500);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 1);
        assert_int_equal(st.responses_by_class[0], 1);
}

static void test_gateway_retries_truncated_body(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--file", sample("consio/members-v1.json"),
                           "--fault", "truncate:2", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 302);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 1);
}

static void test_gateway_truncated_body_every_time_is_bad_page(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "50", "--fault", "truncate:1",
                           "--fault", "truncate:1", "--fault", "truncate:1", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.max_retries = 2;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_BAD_PAGE);
}

static void test_gateway_retries_connection_reset(void **state)
{
        fixture_t *f = *state;
        int si =
            sim_start(f, "cornerstone", "--generate", "50", "--fault", "reset:1", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 50);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.retries, 1);
        assert_int_equal(st.responses_by_class[0], 1);
}

/* ---- tests: loops, caps, idle ---- */

static void test_gateway_cornerstone_repeat_cursor_is_loop(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "500", "--fault",
                           "repeat-cursor:2", NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_CURSOR_LOOP);
        assert_int_equal(r.pages, 1);
}

static void test_gateway_consio_repeated_page_is_loop(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--generate", "500", "--fault", "repeat-cursor:3",
                           NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CONSIO));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_CURSOR_LOOP);
        assert_int_equal(r.pages, 2);
}

static void test_gateway_response_size_cap_is_too_large(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "100", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.max_response_bytes = 2000;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.rc, MS_ERR_TOO_LARGE);
        ms_gateway_stats_t st;
        ms_gateway_get_stats(gw, &st);
        assert_int_equal(st.requests, 1);
        assert_int_equal(st.retries, 0);
}

static void test_gateway_idle_cb_runs_in_backoff_and_cancels(void **state)
{
        fixture_t *f = *state;
        idle_state_t idle = {.cancel_at = 3};
        int si =
            sim_start(f, "cornerstone", "--generate", "10", "--fault", "429s:1:5", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.idle_cb = idle_count;
        c.idle_opaque = &idle;
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        int64_t t0 = ms_mono_ms();
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        int64_t elapsed = ms_mono_ms() - t0;
        /* Cancelled on the third idle call, long before the 5 s wait ends. */
        assert_int_equal(r.rc, MS_ERR_GENERIC);
        assert_int_equal(idle.calls, 3);
        assert_true(elapsed < 1500);
        assert_non_null(strstr(r.err, "cancel"));
}

static void test_gateway_rate_cap_spaces_requests(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--generate", "500", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.max_rps = 20; /* 50 ms apart: 5 pages take at least 200 ms */
        ms_gateway_t *gw = gw_new(f, 0, si, c);
        int64_t t0 = ms_mono_ms();
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        int64_t elapsed = ms_mono_ms() - t0;
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.pages, 5);
        assert_true(elapsed >= 190);
}

/* ---- tests: TLS ---- */

static void test_gateway_verifies_tls_certificates(void **state)
{
        fixture_t *f = *state;
        char dir[] = "/tmp/ms_gw_tls_XXXXXX";
        char cmd[1024], cert[128], key[128], base[64], err[256];

        assert_non_null(mkdtemp(dir));
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(key, sizeof(key), "%s/key.pem", dir);
        snprintf(
            cmd, sizeof(cmd),
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
            "-keyout %s -out %s -days 2 -subj /CN=127.0.0.1 "
            "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
            key, cert);
        if (system(cmd) != 0) {
                unlink(cert);
                unlink(key);
                rmdir(dir);
                skip(); /* no openssl tool: nothing to make a certificate with */
        }
        int si = sim_start(f, "cornerstone", "--generate", "10", "--tls-cert", cert,
                           "--tls-key", key, NULL);
        snprintf(base, sizeof(base), "https://127.0.0.1:%d", f->sims[si].port);

        /* Self-signed and not trusted: refused, and not retried. */
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.base_url = base;
        assert_int_equal(ms_gateway_new(&c, &f->gw[0], err, sizeof(err)), 0);
        int rc_untrusted = ms_gateway_ping(f->gw[0], err, sizeof(err));
        ms_gateway_stats_t st;
        ms_gateway_get_stats(f->gw[0], &st);

        /* Trusted through ca_file: accepted. */
        c.ca_file = cert;
        assert_int_equal(ms_gateway_new(&c, &f->gw[1], err, sizeof(err)), 0);
        int rc = ms_gateway_ping(f->gw[1], err, sizeof(err));
        unlink(cert);
        unlink(key);
        rmdir(dir);
        assert_int_equal(rc_untrusted, MS_ERR_HTTP);
        assert_int_equal(st.requests, 1);
        if (rc)
                print_error("ping over TLS: %s\n", err);
        assert_int_equal(rc, 0);
}

/* ---- tests: simulator ---- */

static json_t *first_pages(ms_gateway_t *gw, int n)
{
        json_t *all = json_array();
        char err[256];
        char *pos = NULL;
        for (int i = 0; i < n; i++) {
                ms_page_t page;
                assert_int_equal(ms_gateway_fetch_page(gw, pos, &page, err, sizeof(err)),
                                 0);
                json_array_extend(all, page.items);
                free(pos);
                pos = page.next ? strdup(page.next) : NULL;
                ms_page_clear(&page);
        }
        free(pos);
        return all;
}

static void test_sim_generator_same_seed_gives_identical_pages(void **state)
{
        fixture_t *f = *state;
        int a = sim_start(f, "cornerstone", "--generate", "500", "--seed", "42", NULL);
        int b = sim_start(f, "cornerstone", "--generate", "500", "--seed", "42", NULL);
        int other =
            sim_start(f, "cornerstone", "--generate", "500", "--seed", "43", NULL);
        int var = sim_start(f, "cornerstone", "--generate", "500", "--seed", "42",
                            "--generate-variant", "1", NULL);
        ms_gateway_conf_t c = test_conf(MS_SYSTEM_CORNERSTONE);
        c.page_size = 250;
        json_t *pa = first_pages(gw_new(f, 0, a, c), 2);
        json_t *pb = first_pages(gw_new(f, 1, b, c), 2);
        json_t *po = first_pages(gw_new(f, 2, other, c), 2);
        json_t *pv = first_pages(gw_new(f, 3, var, c), 2);
        assert_int_equal(json_array_size(pa), 500);
        assert_true(json_equal(pa, pb));
        assert_false(json_equal(pa, po));
        /* A variant keeps every id and changes about one record in ten. */
        int changed = 0;
        for (size_t i = 0; i < 500; i++) {
                json_t *x = json_array_get(pa, i), *y = json_array_get(pv, i);
                assert_true(
                    json_equal(json_object_get(x, "id"), json_object_get(y, "id")));
                if (!json_equal(x, y))
                        changed++;
        }
        assert_true(changed >= 25 && changed <= 80);
        json_decref(pa);
        json_decref(pb);
        json_decref(po);
        json_decref(pv);
}

static void check_generate_1000(fixture_t *f, const char *sys, ms_system_t s, int slot,
                                const char *id_key)
{
        int si = sim_start(f, sys, "--generate", "1000", "--seed", "7", NULL);
        json_t *all = json_array();
        fetch_result_t r = fetch_all(gw_new(f, slot, si, test_conf(s)), NULL, all);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 1000);
        assert_int_equal(r.total, 1000);
        assert_int_equal(r.pages, 10);
        json_t *ids = json_object();
        size_t i;
        json_t *rec;
        json_array_foreach(all, i, rec)
        {
                json_t *id = json_object_get(rec, id_key);
                assert_non_null(id);
                char key[64];
                if (json_is_string(id))
                        snprintf(key, sizeof(key), "%s", json_string_value(id));
                else
                        snprintf(key, sizeof(key), "%lld",
                                 (long long)json_integer_value(id));
                json_object_set_new(ids, key, json_true());
                assert_non_null(json_object_get(rec, "firstName"));
                assert_non_null(json_object_get(rec, "roles"));
        }
        assert_int_equal(json_object_size(ids), 1000);
        json_decref(ids);
        json_decref(all);
}

static void test_sim_generate_1000_pages_through_completely(void **state)
{
        fixture_t *f = *state;
        check_generate_1000(f, "cornerstone", MS_SYSTEM_CORNERSTONE, 0, "id");
        check_generate_1000(f, "consio", MS_SYSTEM_CONSIO, 1, "actNo");
}

static void test_sim_reload_switches_dataset(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "cornerstone", "--file",
                           sample("cornerstone/members-v1.json"), NULL);
        ms_gateway_t *gw = gw_new(f, 0, si, test_conf(MS_SYSTEM_CORNERSTONE));
        fetch_result_t r = fetch_all(gw, NULL, NULL);
        assert_int_equal(r.records, 402);
        char path[1200];
        char *esc = curl_easy_escape(NULL, sample("cornerstone/members-v2.json"), 0);
        snprintf(path, sizeof(path), "/admin/reload?file=%s", esc);
        curl_free(esc);
        json_t *res = sim_admin(f, si, "POST", path);
        assert_int_equal(json_integer_value(json_object_get(res, "records")), 412);
        json_decref(res);
        ms_gateway_t *gw2 = gw_new(f, 1, si, test_conf(MS_SYSTEM_CORNERSTONE));
        r = fetch_all(gw2, NULL, NULL);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.records, 412);
        assert_int_equal(r.total, 412);
}

static void test_sim_stops_cleanly_on_sigterm(void **state)
{
        fixture_t *f = *state;
        int si = sim_start(f, "consio", "--generate", "10", "--latency-ms", "10", NULL);
        assert_int_equal(sim_stat(f, si, "requests"), 0);
        int status = sim_stop(&f->sims[si]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup_teardown(
                test_gateway_cornerstone_pages_sample_v1_completely, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_consio_pages_sample_v1_with_one_token, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_resumes_from_a_saved_position,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_ping_checks_both_systems, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_cornerstone_wrong_api_key_is_auth_error, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_consio_wrong_client_secret_is_auth_error, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_auth_fail_is_auth_error_for_both_systems, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_consio_token_expiry_refreshes_once, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_consio_refreshes_token_before_expiry, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_retries_503_burst_then_succeeds,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_gives_up_after_max_retries,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_unexpected_4xx_is_not_retried,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_honours_retry_after_seconds,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_honours_retry_after_http_date,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_caps_long_retry_after, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_gateway_retries_after_timeout_on_hang,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_retries_truncated_body, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_truncated_body_every_time_is_bad_page, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_retries_connection_reset, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_cornerstone_repeat_cursor_is_loop, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_consio_repeated_page_is_loop,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_response_size_cap_is_too_large,
                                            setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_gateway_idle_cb_runs_in_backoff_and_cancels, setup, teardown),
            cmocka_unit_test_setup_teardown(test_gateway_rate_cap_spaces_requests, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_gateway_verifies_tls_certificates, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(
                test_sim_generator_same_seed_gives_identical_pages, setup, teardown),
            cmocka_unit_test_setup_teardown(
                test_sim_generate_1000_pages_through_completely, setup, teardown),
            cmocka_unit_test_setup_teardown(test_sim_reload_switches_dataset, setup,
                                            teardown),
            cmocka_unit_test_setup_teardown(test_sim_stops_cleanly_on_sigterm, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
