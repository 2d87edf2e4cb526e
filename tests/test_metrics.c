/*
 * test_metrics.c - unit tests for core/metrics.c: the registry, its
 * shards, and the Prometheus text it renders (exact lines, label
 * escaping, histogram buckets, sum and count), counts from many threads
 * summing right, and the two instrumented call sites in the library: the
 * engine's decide path (a real engine on the bundled policies) and the
 * history writer (a real database in a mkdtemp() directory).  The
 * rendered text of a registry with every family filled in is checked by
 * `promtool check metrics` (Debian's prometheus package), which must
 * accept it without a word.
 *
 * Threads: the concurrency test starts its own; the rest run on one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/metrics.h"

static vd_metrics_t *new_registry(void) {
  vd_metrics_t *m = NULL;
  assert_int_equal(vd_metrics_new(&m), 0);
  assert_non_null(m);
  return m;
}

static vd_metrics_shard_t *new_shard(vd_metrics_t *m) {
  vd_metrics_shard_t *s = NULL;
  assert_int_equal(vd_metrics_shard_new(m, &s), 0);
  assert_non_null(s);
  return s;
}

/* The rendered text, in a malloc'd string. */
static char *render(vd_metrics_t *m) {
  vd_buf_t out = VD_BUF_INIT;
  vd_metrics_render(m, &out);
  assert_non_null(out.data);
  return vd_buf_detach(&out, NULL);
}

/* TEXT has LINE as one whole line. */
static void assert_line(const char *text, const char *line) {
  size_t n = strlen(line);
  const char *p = text;
  while ((p = strstr(p, line)) != NULL) {
    if ((p == text || p[-1] == '\n') && p[n] == '\n')
      return;
    p += n;
  }
  fail_msg("no line '%s' in:\n%s", line, text);
}

static void assert_no_line_starting(const char *text, const char *prefix) {
  const char *p = text;
  size_t n = strlen(prefix);
  for (; *p; p = strchr(p, '\n') + 1) {
    if (strncmp(p, prefix, n) == 0)
      fail_msg("unexpected line starting '%s' in:\n%s", prefix, text);
    if (!strchr(p, '\n'))
      break;
  }
}

/* The value on the line that starts with SERIES followed by a space. */
static double value_of(const char *text, const char *series) {
  size_t n = strlen(series);
  const char *p = text;
  for (;;) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
    p = strchr(p, '\n');
    if (!p)
      fail_msg("no series '%s' in:\n%s", series, text);
    p++;
  }
}

/* ------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------ */

static void empty_registry(void **state) {
  vd_metrics_t *m = new_registry();
  char *t = render(m);
  (void)state;
  /* every family has its help and type */
  assert_line(t, "# TYPE verdict_decisions_total counter");
  assert_line(t, "# TYPE verdict_decision_duration_seconds histogram");
  assert_line(t, "# TYPE verdict_history_queue_depth gauge");
  assert_line(t, "# TYPE verdict_policy_revision_info gauge");
  assert_line(t, "# HELP verdict_reloads_total Policy reloads and "
                 "activations, by result (ok or failed).");
  /* series without labels are there from the start */
  assert_line(t, "verdict_watchdog_recounts_total 0");
  assert_line(t, "verdict_history_queue_depth 0");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"1\"} 0");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"+Inf\"} 0");
  assert_line(t, "verdict_history_batch_records_count 0");
  assert_line(t, "verdict_history_commit_duration_seconds_sum 0");
  assert_line(t, "verdict_history_commit_duration_seconds_bucket"
                 "{le=\"0.0001\"} 0");
  /* labelled families have none yet, and no revision is active */
  assert_no_line_starting(t, "verdict_decisions_total{");
  assert_no_line_starting(t, "verdict_policy_revision_info{");
  free(t);
  vd_metrics_free(m);
}

static void counters_and_gauges(void **state) {
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *a = new_shard(m), *b = new_shard(m);
  const char *gd_ok[] = {"sla", "GD", "ok"};
  const char *bj_ok[] = {"sla", "BJ", "ok"};
  const char *gd_bad[] = {"sla", "GD", "bad_input"};
  const char *unix_[] = {"unix"}, *http[] = {"http"};
  char *t;
  (void)state;
  vd_metrics_inc(a, VD_M_DECISIONS, gd_ok, 2);
  vd_metrics_inc(b, VD_M_DECISIONS, gd_ok, 3);
  vd_metrics_inc(b, VD_M_DECISIONS, bj_ok, 1);
  vd_metrics_inc(a, VD_M_DECISIONS, gd_bad, 1);
  vd_metrics_gauge_add(a, VD_M_CONNECTIONS, unix_, 1);
  vd_metrics_gauge_add(b, VD_M_CONNECTIONS, unix_, 1);
  vd_metrics_gauge_add(b, VD_M_CONNECTIONS, http, 1);
  vd_metrics_gauge_add(b, VD_M_CONNECTIONS, http, -1);
  vd_metrics_gauge_add(a, VD_M_CONNECTIONS, http, -1); /* may go below 0 */
  vd_metrics_count(m, VD_M_RELOADS, (const char *[]){"ok"}, 1);
  vd_metrics_count(m, VD_M_RELOADS, (const char *[]){"failed"}, 2);
  vd_metrics_count(m, VD_M_RELOADS, (const char *[]){"ok"}, 1);
  vd_metrics_set_revision(m, "sha256:abc");
  t = render(m);
  /* summed over shards, sorted by label values bytewise */
  assert_non_null(strstr(t,
      "verdict_decisions_total{kind=\"sla\",region=\"BJ\",code=\"ok\"} 1\n"
      "verdict_decisions_total{kind=\"sla\",region=\"GD\",code=\"bad_input\"} 1\n"
      "verdict_decisions_total{kind=\"sla\",region=\"GD\",code=\"ok\"} 5\n"));
  assert_line(t, "verdict_open_connections{transport=\"http\"} -1");
  assert_line(t, "verdict_open_connections{transport=\"unix\"} 2");
  assert_line(t, "verdict_reloads_total{result=\"failed\"} 2");
  assert_line(t, "verdict_reloads_total{result=\"ok\"} 2");
  assert_line(t, "verdict_policy_revision_info{revision=\"sha256:abc\"} 1");
  free(t);
  vd_metrics_set_revision(m, "sha256:def");
  t = render(m);
  assert_line(t, "verdict_policy_revision_info{revision=\"sha256:def\"} 1");
  assert_null(strstr(t, "sha256:abc"));
  free(t);
  vd_metrics_set_revision(m, NULL);
  t = render(m);
  assert_no_line_starting(t, "verdict_policy_revision_info{");
  free(t);
  vd_metrics_free(m);
}

static void series_handles(void **state) {
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *s = new_shard(m);
  const char *w0[] = {"0"};
  vd_metrics_series_t *x = vd_metrics_series(s, VD_M_LUA_MEMORY, w0);
  char *t;
  (void)state;
  assert_non_null(x);
  /* the same labels give the same series, however they are spelt */
  assert_ptr_equal(vd_metrics_series(s, VD_M_LUA_MEMORY,
                                     (const char *[]){"0"}), x);
  assert_ptr_not_equal(vd_metrics_series(s, VD_M_LUA_MEMORY,
                                         (const char *[]){"1"}), x);
  vd_metrics_series_set(x, 1000);
  vd_metrics_series_set(x, 4096);
  vd_metrics_series_move(x, -96);
  /* a family with labels given none: no series, no crash */
  assert_null(vd_metrics_series(s, VD_M_LUA_MEMORY, NULL));
  vd_metrics_inc(s, VD_M_DECISIONS, NULL, 1);
  vd_metrics_series_add(NULL, 1); /* a failed allocation's NULL: ignored */
  vd_metrics_series_observe(NULL, 1);
  t = render(m);
  assert_line(t, "verdict_lua_memory_bytes{worker=\"0\"} 4000");
  assert_line(t, "verdict_lua_memory_bytes{worker=\"1\"} 0");
  free(t);
  /* many series: the shard's table grows and keeps every one */
  {
    char name[16];
    const char *l[] = {name};
    int i;
    for (i = 0; i < 1000; i++) {
      snprintf(name, sizeof name, "w%d", i);
      vd_metrics_gauge_set(s, VD_M_LUA_MEMORY, l, i);
    }
    t = render(m);
    assert_line(t, "verdict_lua_memory_bytes{worker=\"w0\"} 0");
    assert_line(t, "verdict_lua_memory_bytes{worker=\"w517\"} 517");
    assert_line(t, "verdict_lua_memory_bytes{worker=\"w999\"} 999");
    free(t);
  }
  vd_metrics_free(m);
}

static void label_escaping(void **state) {
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *s = new_shard(m);
  const char *odd[] = {"a\"b", "c\\d", "e\nf"};
  char *t;
  (void)state;
  vd_metrics_inc(s, VD_M_DECISIONS, odd, 7);
  vd_metrics_set_revision(m, "x\"y\\z");
  t = render(m);
  assert_line(t, "verdict_decisions_total{kind=\"a\\\"b\",region=\"c\\\\d\","
                 "code=\"e\\nf\"} 7");
  assert_line(t, "verdict_policy_revision_info{revision=\"x\\\"y\\\\z\"} 1");
  free(t);
  vd_metrics_free(m);
}

static void histogram_buckets(void **state) {
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *s = new_shard(m);
  const char *sla[] = {"sla"};
  char *t;
  (void)state;
  /* bounds are inclusive (le): 10 us lands in the first bucket */
  vd_metrics_observe(s, VD_M_DECISION_SECONDS, sla, 10000);
  vd_metrics_observe(s, VD_M_DECISION_SECONDS, sla, 10001);
  vd_metrics_observe(s, VD_M_DECISION_SECONDS, sla, 40000);
  vd_metrics_observe(s, VD_M_DECISION_SECONDS, sla, 1500000);
  vd_metrics_observe(s, VD_M_DECISION_SECONDS, sla, 3000000000u); /* +Inf */
  vd_metrics_observe(s, VD_M_BATCH_RECORDS, NULL, 3);
  vd_metrics_observe(s, VD_M_BATCH_RECORDS, NULL, 100000);
  t = render(m);
  assert_non_null(strstr(t,
      "verdict_decision_duration_seconds_bucket{kind=\"sla\",le=\"0.00001\"} 1\n"
      "verdict_decision_duration_seconds_bucket{kind=\"sla\",le=\"0.000025\"} 2\n"
      "verdict_decision_duration_seconds_bucket{kind=\"sla\",le=\"0.00005\"} 3\n"
      "verdict_decision_duration_seconds_bucket{kind=\"sla\",le=\"0.0001\"} 3\n"));
  assert_line(t, "verdict_decision_duration_seconds_bucket{kind=\"sla\","
                 "le=\"0.001\"} 3");
  assert_line(t, "verdict_decision_duration_seconds_bucket{kind=\"sla\","
                 "le=\"0.0025\"} 4");
  assert_line(t, "verdict_decision_duration_seconds_bucket{kind=\"sla\","
                 "le=\"1\"} 4");
  assert_line(t, "verdict_decision_duration_seconds_bucket{kind=\"sla\","
                 "le=\"+Inf\"} 5");
  /* the sum, exact in seconds: 3.001560001 */
  assert_line(t, "verdict_decision_duration_seconds_sum{kind=\"sla\"} "
                 "3.001560001");
  assert_line(t, "verdict_decision_duration_seconds_count{kind=\"sla\"} 5");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"2\"} 0");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"4\"} 1");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"65536\"} 1");
  assert_line(t, "verdict_history_batch_records_bucket{le=\"+Inf\"} 2");
  assert_line(t, "verdict_history_batch_records_sum 100003");
  assert_line(t, "verdict_history_batch_records_count 2");
  free(t);
  vd_metrics_free(m);
}

static void retired_shard(void **state) {
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *old = new_shard(m), *now = new_shard(m);
  const char *w[] = {"0"}, *k[] = {"sla", "GD", "ok"};
  char *t;
  (void)state;
  vd_metrics_gauge_set(old, VD_M_LUA_MEMORY, w, 100);
  vd_metrics_inc(old, VD_M_DECISIONS, k, 4);
  vd_metrics_shard_retire(old); /* its worker was replaced */
  vd_metrics_gauge_set(now, VD_M_LUA_MEMORY, w, 30);
  vd_metrics_inc(now, VD_M_DECISIONS, k, 1);
  t = render(m);
  assert_line(t, "verdict_lua_memory_bytes{worker=\"0\"} 30");
  assert_line(t, "verdict_decisions_total{kind=\"sla\",region=\"GD\","
                 "code=\"ok\"} 5");
  free(t);
  vd_metrics_free(m);
}

/* vd_metrics_decided() remembers recent label sets: many of them, in
 * turn and colliding, still count each under its own. */
static void decided_counts(void **state) {
  static const char *const kinds[] = {"sla", "compensation", "escalation"};
  static const char *const regions[] = {"GD", "GD-SZ", "BJ", "national",
                                        "GX"};
  static const int codes[] = {0, VD_EBAD_INPUT, VD_EPOLICY_ERROR};
  vd_metrics_t *m = new_registry();
  vd_metrics_shard_t *s = new_shard(m);
  vd_decision_t d;
  char *t, line[160];
  int round, k, r, c;
  (void)state;
  vd_decision_init(&d);
  for (round = 0; round < 7; round++)
    for (k = 0; k < 3; k++)
      for (r = 0; r < 5; r++)
        for (c = 0; c < 3; c++) {
          vd_decision_reset(&d);
          snprintf(d.kind, sizeof d.kind, "%s", kinds[k]);
          snprintf(d.region, sizeof d.region, "%s", regions[r]);
          snprintf(d.policy_region, sizeof d.policy_region, "national");
          d.code = codes[c];
          d.elapsed_ns = 1000 * (uint64_t)(c + 1);
          d.recounted = c == 2;
          vd_metrics_decided(s, &d);
        }
  vd_decision_release(&d);
  t = render(m);
  for (k = 0; k < 3; k++)
    for (r = 0; r < 5; r++)
      for (c = 0; c < 3; c++) {
        snprintf(line, sizeof line,
                 "verdict_decisions_total{kind=\"%s\",region=\"%s\","
                 "code=\"%s\"} 7",
                 kinds[k], regions[r], c ? vd_err_name(codes[c]) : "ok");
        assert_line(t, line);
      }
  assert_line(t, "verdict_decision_duration_seconds_count{kind=\"sla\"} 105");
  assert_line(t, "verdict_decision_duration_seconds_sum{kind=\"sla\"} "
                 "0.00021"); /* 7 rounds x 5 regions x (1+2+3) us */
  assert_line(t, "verdict_watchdog_recounts_total 105");
  free(t);
  vd_metrics_free(m);
}

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */

#define THREADS 8
#define ROUNDS 20000

typedef struct worker_arg {
  vd_metrics_t *m;
  int index;
} worker_arg_t;

static void *worker_main(void *p) {
  worker_arg_t *a = p;
  vd_metrics_shard_t *s = NULL;
  const char *ok[] = {"sla", "GD", "ok"}, *bad[] = {"sla", "GD", "bad_input"};
  const char *unix_[] = {"unix"};
  char idx[8];
  const char *w[] = {idx};
  int i;
  snprintf(idx, sizeof idx, "%d", a->index);
  if (vd_metrics_shard_new(a->m, &s))
    return NULL;
  for (i = 0; i < ROUNDS; i++) {
    vd_metrics_inc(s, VD_M_DECISIONS, i % 4 ? ok : bad, 1);
    vd_metrics_observe(s, VD_M_DECISION_SECONDS, ok, 20000);
    vd_metrics_gauge_add(s, VD_M_CONNECTIONS, unix_, i % 2 ? -1 : 1);
    vd_metrics_gauge_set(s, VD_M_LUA_MEMORY, w, i);
    if (i % 1000 == 0)
      vd_metrics_count(a->m, VD_M_RELOADS, (const char *[]){"ok"}, 1);
  }
  vd_metrics_gauge_add(s, VD_M_CONNECTIONS, unix_, 1); /* one stays open */
  return s;
}

/* Renders race the writers and must always parse; the totals once they
 * are done are exact. */
static void concurrent_updates(void **state) {
  vd_metrics_t *m = new_registry();
  pthread_t th[THREADS];
  worker_arg_t args[THREADS];
  char *t;
  int i, renders = 0;
  (void)state;
  for (i = 0; i < THREADS; i++) {
    args[i].m = m;
    args[i].index = i;
    assert_int_equal(pthread_create(&th[i], NULL, worker_main, &args[i]), 0);
  }
  for (i = 0; i < 20; i++, renders++) {
    t = render(m);
    assert_non_null(strstr(t, "# TYPE verdict_decisions_total counter"));
    free(t);
  }
  for (i = 0; i < THREADS; i++) {
    void *s;
    pthread_join(th[i], &s);
    assert_non_null(s);
  }
  t = render(m);
  assert_true(value_of(t, "verdict_decisions_total{kind=\"sla\",region=\"GD\","
                          "code=\"ok\"}") == THREADS * ROUNDS * 3 / 4);
  assert_true(value_of(t, "verdict_decisions_total{kind=\"sla\",region=\"GD\","
                          "code=\"bad_input\"}") == THREADS * ROUNDS / 4);
  assert_true(value_of(t, "verdict_decision_duration_seconds_count"
                          "{kind=\"sla\"}") == THREADS * ROUNDS);
  assert_true(value_of(t, "verdict_decision_duration_seconds_bucket"
                          "{kind=\"sla\",le=\"0.000025\"}") ==
              THREADS * ROUNDS);
  assert_line(t, "verdict_decision_duration_seconds_sum{kind=\"sla\"} 3.2");
  assert_true(value_of(t, "verdict_open_connections{transport=\"unix\"}") ==
              THREADS);
  assert_true(value_of(t, "verdict_reloads_total{result=\"ok\"}") ==
              THREADS * (ROUNDS / 1000));
  assert_true(value_of(t, "verdict_lua_memory_bytes{worker=\"7\"}") ==
              ROUNDS - 1);
  free(t);
  vd_metrics_free(m);
}

/* ------------------------------------------------------------------------
 * The library's call sites
 * ------------------------------------------------------------------------ */

static vd_engine_t *engine_on(const char *dir) {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  if (vd_bundle_load(dir, &b, &err))
    fail_msg("vd_bundle_load(%s): %s", dir, err.data);
  if (vd_engine_new(b, NULL, &e, &err))
    fail_msg("vd_engine_new(%s): %s", dir, err.data);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  return e;
}

static void decide(vd_engine_t *e, vd_decision_t *d, const char *line) {
  vd_engine_decide(e, line, strlen(line), 1795000000000LL, d);
}

/* Fill M from a real engine and a real history. */
static void fill_from_library(vd_metrics_t *m) {
  vd_engine_t *e = engine_on("policies");
  vd_metrics_shard_t *s = new_shard(m);
  vd_decision_t d;
  vd_history_t *h = NULL;
  char dir[] = "/tmp/vd-metrics-XXXXXX", path[64], *err = NULL;
  int i;
  vd_decision_init(&d);
  vd_engine_set_metrics(e, s);
  decide(e, &d,
         "{\"kind\":\"compensation\",\"region\":\"GD-SZ\",\"input\":{"
         "\"complaint_id\":\"C-1\",\"category\":\"billing\","
         "\"customer_grade\":\"retail\",\"cause\":\"carrier\","
         "\"charged_fen\":12800,\"due_fen\":8800}}");
  assert_int_equal(d.code, 0);
  decide(e, &d,
         "{\"kind\":\"compensation\",\"region\":\"GD-SZ\",\"input\":{"
         "\"complaint_id\":\"C-1\",\"category\":\"billing\","
         "\"customer_grade\":\"retail\",\"cause\":\"carrier\","
         "\"charged_fen\":\"lots\",\"due_fen\":8800}}");
  assert_int_equal(d.code, VD_EBAD_INPUT);
  /* made-up names are not copied into series */
  decide(e, &d, "{\"kind\":\"nope\",\"region\":\"GD\",\"input\":{}}");
  assert_int_equal(d.code, VD_EUNKNOWN_KIND);
  decide(e, &d, "{\"kind\":\"sla\",\"region\":\"ZZ-TOP\",\"input\":{}}");
  assert_int_equal(d.code, VD_EUNKNOWN_REGION);
  decide(e, &d, "not json");
  assert_int_equal(d.code, VD_EBAD_REQUEST);
  decide(e, &d, "{\"op\":\"ping\"}"); /* not a decision */
  vd_decision_release(&d);
  vd_engine_free(e);

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/h.db", dir);
  assert_int_equal(vd_history_open(&h, path, VD_LOG_DURABLE, 1, NULL, NULL,
                                   &err), 0);
  assert_int_equal(vd_history_set_metrics(h, m), 0);
  for (i = 0; i < 3; i++) {
    vd_record_t r;
    char id[40];
    uint64_t seq;
    memset(&r, 0, sizeof r);
    snprintf(id, sizeof id, "019ab5e2-0000-7000-8000-%012d", i);
    r.decision_id = id;
    r.kind = "sla";
    r.region = "GD";
    r.request = "{}";
    r.request_len = 2;
    r.error_code = "bad_request";
    r.error_message = "test";
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  vd_history_close(h); /* commits what is queued */
  remove(path);
  snprintf(path, sizeof path, "%s/h.db-wal", dir);
  remove(path);
  snprintf(path, sizeof path, "%s/h.db-shm", dir);
  remove(path);
  rmdir(dir);
  vd_metrics_set_revision(m, "sha256:0123abcd");
  vd_metrics_count(m, VD_M_RELOADS, (const char *[]){"ok"}, 1);
  vd_metrics_gauge_add(s, VD_M_CONNECTIONS, (const char *[]){"unix"}, 2);
  vd_metrics_gauge_set(s, VD_M_LUA_MEMORY, (const char *[]){"0"}, 123456);
}

static void library_call_sites(void **state) {
  vd_metrics_t *m = new_registry();
  char *t;
  (void)state;
  fill_from_library(m);
  t = render(m);
  assert_line(t, "verdict_decisions_total{kind=\"compensation\","
                 "region=\"GD-SZ\",code=\"bad_input\"} 1");
  assert_line(t, "verdict_decisions_total{kind=\"compensation\","
                 "region=\"GD-SZ\",code=\"ok\"} 1");
  assert_line(t, "verdict_decisions_total{kind=\"sla\",region=\"unknown\","
                 "code=\"unknown_region\"} 1");
  assert_line(t, "verdict_decisions_total{kind=\"unknown\","
                 "region=\"unknown\",code=\"bad_request\"} 1");
  assert_line(t, "verdict_decisions_total{kind=\"unknown\","
                 "region=\"unknown\",code=\"unknown_kind\"} 1");
  assert_null(strstr(t, "nope"));
  assert_null(strstr(t, "ZZ-TOP"));
  assert_true(value_of(t, "verdict_decision_duration_seconds_count"
                          "{kind=\"compensation\"}") == 2);
  assert_true(value_of(t, "verdict_decision_duration_seconds_sum"
                          "{kind=\"compensation\"}") > 0);
  /* the history writer: 3 records in one or more batches */
  assert_true(value_of(t, "verdict_history_batch_records_sum") == 3);
  assert_true(value_of(t, "verdict_history_batch_records_count") >= 1);
  assert_true(value_of(t, "verdict_history_commit_duration_seconds_count") ==
              value_of(t, "verdict_history_batch_records_count"));
  assert_true(value_of(t, "verdict_history_commit_duration_seconds_sum") > 0);
  assert_line(t, "verdict_history_queue_depth 0");
  free(t);
  vd_metrics_free(m);
}

/* promtool reads the exposition on stdin and says nothing, exit 0, when
 * it has no complaint. */
static void promtool_accepts(void **state) {
  vd_metrics_t *m = new_registry();
  char *t, tmp[] = "/tmp/vd-promtool-XXXXXX", cmd[128], said[4096];
  FILE *f, *p;
  size_t n;
  int fd, status;
  (void)state;
  fill_from_library(m);
  vd_metrics_inc(new_shard(m), VD_M_DECISIONS,
                 (const char *[]){"a\"b", "c\\d", "e\nf"}, 1);
  t = render(m);
  fd = mkstemp(tmp);
  assert_true(fd >= 0);
  f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(t, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "promtool check metrics <%s 2>&1", tmp);
  p = popen(cmd, "r");
  assert_non_null(p);
  n = fread(said, 1, sizeof said - 1, p);
  said[n] = '\0';
  status = pclose(p);
  remove(tmp);
  if (status != 0 || n != 0)
    fail_msg("promtool check metrics (exit status %d): %s\non:\n%s",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1, said, t);
  free(t);
  vd_metrics_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(empty_registry),
      cmocka_unit_test(counters_and_gauges),
      cmocka_unit_test(series_handles),
      cmocka_unit_test(label_escaping),
      cmocka_unit_test(histogram_buckets),
      cmocka_unit_test(retired_shard),
      cmocka_unit_test(decided_counts),
      cmocka_unit_test(concurrent_updates),
      cmocka_unit_test(library_call_sites),
      cmocka_unit_test(promtool_accepts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
