/* ms_health: process-wide Prometheus metrics and the /livez /readyz /metrics
 * HTTP listener every role runs (DESIGN 8, 10).
 *
 * Metrics (ms_metrics_*)
 * ----------------------
 * One registry per process, created on first use; a metric family is
 * registered by the first call that names it, with that call's help text and
 * type.  A family is identified by its name, a series inside it by its label
 * string.  Label strings use the exposition syntax without braces,
 * `key="value",key2="value2"`, already escaped; build them from dynamic
 * values with ms_metrics_labels(), which escapes.  Use one label order per
 * family: `a="1",b="2"` and `b="2",a="1"` are different series here.
 * NULL or "" means no labels.
 *
 * Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]*, no `le` label on histograms); suffix counters with
 * `_total` and put units in names (`_seconds`, `_bytes`).  Every update
 * returns 0, or MS_ERR_GENERIC and changes nothing when the name or labels
 * are malformed, the name is already registered with another type, a counter
 * would go down, or memory ran out: metrics never abort the caller, so roles
 * may ignore the return value.
 *
 * Thread rules: every ms_metrics_* function may be called from any thread
 * at any time (one mutex guards the registry; updates are a lookup and an
 * add, cheap enough per record).  ms_metrics_reset is for tests only.
 *
 * Health listener (ms_health_*)
 * -----------------------------
 * ms_health_start opens a libmicrohttpd listener with its own thread serving
 *   GET /livez   200 {"status":"ok"} when the liveness check passes (or none is
 *                set: a process that answers HTTP is alive), else 503
 *                {"status":"unavailable","reason":"..."}
 *   GET /readyz  200 {"status":"ok"} when the readiness check passes, else
 *                503 with the reason; with no check set yet the answer is
 *                503 "starting", so a pod is not ready before its role has
 *                connected and registered its check
 *   GET /metrics ms_metrics_render() as text/plain; version=0.0.4
 * and 404 for other paths, 405 for methods other than GET and HEAD.
 * The roles call it only when the configured health.port is > 0 (0 means no
 * listener); tests pass port 0 to get an ephemeral port (ms_health_port).
 * The api role answers the same paths on its own server through
 * ms_health_answer on an ms_health_new object, without a second listener. */
#ifndef MS_HEALTH_H
#define MS_HEALTH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- metrics ---- */

/* Adds v (>= 0) to a counter. */
int ms_metrics_counter_add(const char *name, const char *help, const char *labels,
                           double v);
/* Sets a gauge, or adds v (may be negative) to it. */
int ms_metrics_gauge_set(const char *name, const char *help, const char *labels,
                         double v);
int ms_metrics_gauge_add(const char *name, const char *help, const char *labels,
                         double v);
/* Records one observation in a histogram.  Its buckets are the ones given to
 * ms_metrics_histogram_define before the first observation, else
 * MS_METRICS_DEFAULT_BUCKETS (seconds, Prometheus' client defaults). */
int ms_metrics_histogram_observe(const char *name, const char *help, const char *labels,
                                 double v);
/* Registers a histogram with explicit upper bounds (strictly increasing,
 * finite, at most MS_METRICS_MAX_BUCKETS; +Inf is implicit).  Fails when the
 * family exists with other bounds; the same bounds again are fine, so every
 * caller may define before use. */
int ms_metrics_histogram_define(const char *name, const char *help, const double *bounds,
                                size_t nbounds);

#define MS_METRICS_MAX_BUCKETS 32
#define MS_METRICS_DEFAULT_BUCKETS                                                       \
        {                                                                                \
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10                  \
        }

/* Writes `k1="v1",k2="v2"` for a NULL-terminated list of key, value string
 * pairs into buf, escaping backslash, double quote and newline in values.
 * Returns buf, or NULL (buf set to "") when it does not fit or a key is not a
 * valid label name.  Example:
 *   char l[128];
 *   ms_metrics_labels(l, sizeof(l), "outcome", "SUCCEEDED", NULL); */
const char *ms_metrics_labels(char *buf, size_t size, ...) __attribute__((sentinel));

/* The whole registry in Prometheus text exposition format 0.0.4: families
 * sorted by name, each with # HELP and # TYPE lines, series sorted by label
 * string, histograms as cumulative _bucket{le=...} lines ending in +Inf,
 * then _sum and _count.  Malloc'ed; the caller frees.  NULL when out of
 * memory. */
char *ms_metrics_render(void);

/* Forgets every family (tests only: callers must not race with it). */
void ms_metrics_reset(void);

/* ---- health checks ---- */

typedef struct ms_health ms_health_t;

/* A check returns 1 when the process is live (resp. ready) and 0 when it is
 * not, then with a short reason for people in why (NUL-terminated, no
 * secrets).  Note: 1 means healthy, unlike the 0-on-success convention of
 * functions returning MS_ERR_*.  Checks run on the listener's thread, must be
 * thread-safe and should take well under a second (probes time out): read
 * atomics or flags the role maintains, do not do I/O. */
typedef int (*ms_health_check_fn)(void *opaque, char *why, size_t why_size);

/* New health object without a listener (for ms_health_answer).  Returns 0 or
 * MS_ERR_GENERIC.  Release with ms_health_destroy. */
int ms_health_new(ms_health_t **out, char *errstr, size_t errstr_size);
void ms_health_destroy(ms_health_t *h);

/* New health object listening on bind_addr (numeric IPv4 or IPv6; NULL means
 * 0.0.0.0, what probes from the kubelet need) and port (0 = ephemeral, for
 * tests).  Returns 0, or MS_ERR_GENERIC with the reason in errstr (port in
 * use, bad address).  Release with ms_health_stop, which closes the listener,
 * waits for requests in flight and frees h. */
int ms_health_start(int port, const char *bind_addr, ms_health_t **out, char *errstr,
                    size_t errstr_size);
void ms_health_stop(ms_health_t *h);

/* The port actually bound (the ephemeral one for port 0); 0 without a
 * listener. */
int ms_health_port(const ms_health_t *h);

/* Sets or replaces the checks (any may be NULL: see the file comment).  When
 * this returns, no request is still running an older check, so the caller
 * may then free the old opaque.  Thread-safe. */
void ms_health_set_checks(ms_health_t *h, ms_health_check_fn live,
                          ms_health_check_fn ready, void *opaque);

/* Answers a GET for path ("/livez", "/readyz", "/metrics"; a query string is
 * ignored) without a listener.  Returns 1 with *status, *content_type (static
 * string) and *body (malloc'ed, the caller frees) set; 0 when path is not a
 * health path (nothing set); MS_ERR_GENERIC when out of memory. */
int ms_health_answer(ms_health_t *h, const char *path, unsigned *status,
                     const char **content_type, char **body);

/* ---- liveness heartbeat helper ----
 * A role's poll loop calls ms_health_beat after every poll; its liveness
 * check calls ms_health_beat_check with a bound a little above the longest
 * time one loop iteration may block (e.g. poll timeout + a page fetch).
 * Zero-initialise (or call ms_health_beat once) before use; lock-free. */
typedef struct ms_health_beat {
        _Atomic int64_t last_mono_ms; /* 0 = never beat */
} ms_health_beat_t;

void ms_health_beat(ms_health_beat_t *b);
/* 1 when the last beat is at most bound_ms old; else 0 with the age in why. */
int ms_health_beat_check(ms_health_beat_t *b, int64_t bound_ms, char *why,
                         size_t why_size);

#endif
