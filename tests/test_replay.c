/*
 * test_replay.c - the replay library (core/replay.c) on real history
 * databases.
 *
 * Each test writes a history as the daemon does: the bundle's revision
 * stored with vd_history_store_revision(), each request decided by an
 * engine of that bundle and submitted with vd_history_submit().  Then
 * vd_replay_run() decides the rows again, against the recorded revisions
 * or a candidate bundle from tests/fixtures, and the tests read its report.
 *
 *   tests/fixtures/mini/      national + GD compensation: double (GD:
 *                             triple) refund, rule comp.double_refund
 *   tests/fixtures/badrules/  national compensation: {ok = true}, rule
 *                             comp.ok; no regions besides national
 */
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/replay.h"
#include "verdict/report.h"
#include "verdict/timefmt.h"

#include <yajl_tree.h>

#define AT "2026-11-23T10:00:00+08:00"
#define REQ(region, charged, due)                                            \
  "{\"kind\":\"compensation\",\"region\":\"" region "\",\"at\":\"" AT        \
  "\",\"input\":{\"charged_fen\":" #charged ",\"due_fen\":" #due "}}"

/* Every request the tests record, in seq order.  Offers with mini:
 * national 2 x (charged - due), GD 3 x. */
static const char *const requests[] = {
    REQ("national", 5000, 3000), /* 4000 */
    REQ("GD", 5000, 3000),       /* 6000 */
    REQ("national", 100, 300),   /* 0 */
    REQ("national", 9000, 1000), /* 16000 */
    "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":\"" AT
    "\",\"input\":{\"charged_fen\":-1,\"due_fen\":0}}", /* bad_input */
};
#define NREQ (sizeof requests / sizeof requests[0])

static char dir[64], db[96];

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/vd-replay-XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  snprintf(db, sizeof db, "%s/history.db", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static vd_bundle_t *load(const char *path) {
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  if (vd_bundle_load(path, &b, &err) != 0)
    fail_msg("%s: %s", path, err.data);
  vd_buf_release(&err);
  return b;
}

/* Decide LINE with E and submit it to H as the daemon records it, naming
 * REVISION (NULL: none) as the revision that decided. */
static void record_at(vd_history_t *h, vd_engine_t *e,
                      const char *revision, const char *line, int i,
                      int64_t received_ms) {
  vd_decision_t d;
  vd_record_t r;
  char id[40];
  uint64_t seq;
  vd_decision_init(&d);
  vd_engine_decide(e, line, strlen(line), 1795392000000, &d);
  snprintf(id, sizeof id, "01900000-0000-7000-8000-%012d", i);
  memset(&r, 0, sizeof r);
  r.decision_id = id;
  r.received_ms = received_ms;
  r.at = d.at;
  r.at_ms = d.at_ms;
  r.kind = d.kind;
  r.region = d.region;
  r.policy_region = d.policy_region;
  r.revision = revision;
  r.complaint_id = d.complaint_id.len ? d.complaint_id.data : NULL;
  r.customer_id = d.customer_id.len ? d.customer_id.data : NULL;
  r.request = line;
  r.request_len = strlen(line);
  r.facts = d.facts.len ? d.facts.data : NULL;
  r.facts_len = d.facts.len;
  if (d.code) {
    r.error_code = vd_err_name(d.code);
    r.error_message = d.message.data ? d.message.data : "";
  } else {
    r.result = d.result.data;
    r.result_len = d.result.len;
    r.trace = d.trace.data;
    r.trace_len = d.trace.len;
  }
  r.elapsed_us = 1;
  r.client = "test";
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  vd_decision_release(&d);
}

/* Row I (seq I + 1), received I ms after the test's epoch. */
static void record(vd_history_t *h, vd_engine_t *e, const char *revision,
                   const char *line, int i) {
  record_at(h, e, revision, line, i, 1795392000000 + i);
}

/* The history at db, opened as the daemon opens it, with B's revision
 * stored (its files). */
static vd_history_t *open_storing(vd_bundle_t *b) {
  vd_history_t *h;
  char *msg = NULL;
  size_t i, n = vd_bundle_count(b);
  vd_bundle_file_t *files = calloc(n, sizeof *files);
  assert_non_null(files);
  for (i = 0; i < n; i++)
    files[i] = *vd_bundle_file(b, i);
  if (vd_history_open(&h, db, VD_LOG_DURABLE, 1, NULL, NULL, &msg) != 0)
    fail_msg("%s", msg);
  assert_int_equal(vd_history_store_revision(h, vd_bundle_revision(b), files,
                                             n, NULL),
                   0);
  free(files);
  return h;
}

/* A history of every request of `requests`, decided by the bundle at
 * BUNDLE_DIR and filed under REVISION (NULL: the bundle's own, stored;
 * "": none), then the request of MORE, if any, filed under its own
 * revision. */
static void write_history(const char *bundle_dir, const char *revision,
                          const char *more, const char *more_revision) {
  vd_bundle_t *b = load(bundle_dir);
  vd_history_t *h = open_storing(b);
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  size_t i;
  if (!revision)
    revision = vd_bundle_revision(b);
  if (vd_engine_new(b, NULL, &e, &err) != 0)
    fail_msg("%s", err.data);
  for (i = 0; i < NREQ; i++)
    record(h, e, *revision ? revision : NULL, requests[i], (int)i);
  if (more)
    record(h, e, *more_revision ? more_revision : NULL, more, (int)NREQ);
  vd_history_close(h); /* commits what is queued */
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
}

/* A history decided by mini, and the candidate badrules in *state. */
static int setup_candidate(void **state) {
  if (setup(state) != 0)
    return -1;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  *state = load("tests/fixtures/badrules");
  return 0;
}

/* An empty history, and the candidate badrules in *state. */
static int setup_candidate_only(void **state) {
  if (setup(state) != 0)
    return -1;
  *state = load("tests/fixtures/badrules");
  return 0;
}

static int teardown_candidate(void **state) {
  vd_bundle_unref(*state);
  return teardown(state);
}

/* A bundle of one national compensation policy whose result is
 * { n = <EXPR> }, EXPR asking ctx.history. */
static vd_bundle_t *asking(const char *expr) {
  vd_bundle_file_t f;
  vd_bundle_t *b = NULL;
  vd_buf_t src = VD_BUF_INIT, err = VD_BUF_INIT;
  vd_buf_addf(&src,
              "local P = {}\n"
              "function P.decide(input, ctx)\n"
              "  return { n = %s },\n"
              "         { { rule = \"t.asks\", basis = \"a test\" } }\n"
              "end\n"
              "return P\n",
              expr);
  f.path = "national/compensation.lua";
  f.data = src.data;
  f.len = src.len;
  if (vd_bundle_from_files(&f, 1, "test", &b, &err) != 0)
    fail_msg("%s", err.data);
  vd_buf_release(&src);
  vd_buf_release(&err);
  return b;
}

static int answer(void *ud, const char *query, const char *a, const char *b,
                  int64_t since_ms, int64_t until_ms, int64_t *count) {
  return vd_history_answer(ud, query, a, b, since_ms, until_ms, count);
}

/* Record each of LINES decided by B, each one committed before the next
 * is decided, with ctx.history answered by a reader of the database as
 * the daemon's workers answer it. */
static void write_history_asking(vd_bundle_t *b, const char *const *lines,
                                 size_t n) {
  vd_bundle_file_t *files;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  size_t i, k;
  if (vd_engine_new(b, NULL, &e, &err) != 0)
    fail_msg("%s", err.data);
  for (i = 0; i < n; i++) {
    vd_history_t *h;
    vd_history_reader_t *rd;
    char *msg = NULL;
    if (vd_history_open(&h, db, VD_LOG_DURABLE, 1, NULL, NULL, &msg) != 0)
      fail_msg("%s", msg);
    if (i == 0) {
      files = calloc(vd_bundle_count(b), sizeof *files);
      assert_non_null(files);
      for (k = 0; k < vd_bundle_count(b); k++)
        files[k] = *vd_bundle_file(b, k);
      assert_int_equal(vd_history_store_revision(h, vd_bundle_revision(b),
                                                 files, k, NULL),
                       0);
      free(files);
    }
    if (vd_history_reader_open(&rd, db, &msg) != 0)
      fail_msg("%s", msg);
    vd_engine_set_facts(e, answer, rd);
    record(h, e, vd_bundle_revision(b), lines[i], (int)i);
    vd_engine_set_facts(e, NULL, NULL);
    vd_history_reader_close(rd);
    vd_history_close(h);
  }
  vd_engine_free(e);
  vd_buf_release(&err);
}

static void impact(vd_replay_report_t *rep, vd_bundle_t *candidate,
                   vd_bundle_t *baseline, const vd_history_filter_t *f,
                   int threads);

/* Every recorded decision against CANDIDATE, each compared with its
 * recorded result. */
static void replay(vd_replay_report_t *rep, vd_bundle_t *candidate,
                   int threads) {
  impact(rep, candidate, NULL, NULL, threads);
}

static const vd_replay_rule_t *rule(const vd_replay_report_t *rep,
                                    const char *name) {
  size_t i;
  for (i = 0; i < rep->nrules; i++)
    if (strcmp(rep->rules[i].rule, name) == 0)
      return &rep->rules[i];
  fail_msg("no rule %s in the report", name);
  return NULL;
}

static const vd_replay_diff_t *diff(const vd_replay_change_t *c,
                                    const char *field) {
  size_t i;
  for (i = 0; i < c->ndiffs; i++)
    if (strcmp(c->diffs[i].field, field) == 0)
      return &c->diffs[i];
  return NULL;
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */

/* Against the recorded revision every decision, error included, comes out
 * the same, whatever the number of threads. */
static void test_replay_reproduces(void **state) {
  vd_replay_report_t rep;
  int threads;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  for (threads = 1; threads <= 4; threads += 3) {
    replay(&rep, NULL, threads);
    assert_int_equal(rep.replayed, NREQ);
    assert_int_equal(rep.unchanged, NREQ);
    assert_int_equal(rep.changed, 0);
    assert_int_equal(rep.errors, 0);
    assert_int_equal(rep.nchanges, 0);
    assert_int_equal(rep.nrules, 0); /* counted for candidates only */
    assert_null(rep.facts_warning);
    vd_replay_report_release(&rep);
  }
}

/* A reader that names its columns (vd_history_filter_t.columns, as
 * replay's lanes do) gets those exactly as a full read has them, the
 * trace from its table included, and the others as SQL NULL; a text
 * value is not converted to a number, nor an integer printed as text.  It can read more of them for the
 * row in hand (vd_history_rows_more()). */
static void test_rows_named_columns(void **state) {
  vd_history_filter_t all, some;
  vd_history_rows_t *ra = NULL, *rs = NULL;
  const vd_history_value_t *a, *s;
  vd_buf_t err = VD_BUF_INIT;
  size_t rows = 0, traces = 0;
  int rc, i;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  memset(&all, 0, sizeof all);
  some = all;
  some.columns = (uint64_t)1 << VD_HISTORY_SEQ |
                 (uint64_t)1 << VD_HISTORY_TRACE |
                 (uint64_t)1 << VD_HISTORY_REQUEST |
                 (uint64_t)1 << VD_HISTORY_RECEIVED_MS;
  assert_int_equal(vd_history_rows_open(&ra, db, &all, &err), 0);
  assert_int_equal(vd_history_rows_open(&rs, db, &some, &err), 0);
  while ((rc = vd_history_rows_next(ra, &a)) == 1) {
    assert_int_equal(vd_history_rows_next(rs, &s), 1);
    rows++;
    for (i = 0; i < VD_HISTORY_NCOLUMNS; i++) {
      if (!(some.columns & ((uint64_t)1 << i))) {
        assert_null(s[i].text);
        assert_int_equal(s[i].i, 0);
        continue;
      }
      assert_int_equal(s[i].is_int, a[i].is_int);
      if (a[i].is_int) { /* its value in i, not printed */
        assert_null(s[i].text);
        assert_int_equal(s[i].len, 0);
      } else if (a[i].text) {
        assert_non_null(s[i].text);
        assert_int_equal(s[i].len, a[i].len);
        assert_memory_equal(s[i].text, a[i].text, a[i].len);
      } else {
        assert_null(s[i].text);
      }
      assert_int_equal(s[i].i, a[i].is_int ? a[i].i : 0);
    }
    traces += a[VD_HISTORY_TRACE].text != NULL;
    assert_non_null(a[VD_HISTORY_HASH].text); /* read in full only */
    assert_true(a[VD_HISTORY_RECEIVED_MS].is_int);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(vd_history_rows_next(rs, &s), 0);
  assert_int_equal(rows, NREQ);
  assert_int_equal(traces, NREQ - 1); /* the bad_input has none */
  vd_history_rows_close(ra);
  vd_history_rows_close(rs);

  /* more columns for a row in hand, by its seq: as a full read has them,
   * and for that row only; the trace is not among them */
  assert_int_equal(vd_history_rows_open(&ra, db, &all, &err), 0);
  assert_int_equal(vd_history_rows_open(&rs, db, &some, &err), 0);
  for (rows = 0; vd_history_rows_next(ra, &a) == 1; rows++) {
    const uint64_t more = (uint64_t)1 << VD_HISTORY_DECISION_ID |
                          (uint64_t)1 << VD_HISTORY_REGION;
    assert_int_equal(vd_history_rows_next(rs, &s), 1);
    assert_null(s[VD_HISTORY_DECISION_ID].text);
    if (rows % 2)
      continue; /* every other row: left as read */
    assert_int_equal(vd_history_rows_more(rs, more), 0);
    assert_string_equal(s[VD_HISTORY_DECISION_ID].text,
                        a[VD_HISTORY_DECISION_ID].text);
    assert_string_equal(s[VD_HISTORY_REGION].text, a[VD_HISTORY_REGION].text);
    /* asked again, and for one more: the first ones stay */
    assert_int_equal(vd_history_rows_more(rs, (uint64_t)1 << VD_HISTORY_KIND),
                     0);
    assert_string_equal(s[VD_HISTORY_KIND].text, a[VD_HISTORY_KIND].text);
    assert_string_equal(s[VD_HISTORY_REGION].text, a[VD_HISTORY_REGION].text);
    assert_int_equal(s[VD_HISTORY_REQUEST].len, a[VD_HISTORY_REQUEST].len);
  }
  assert_int_equal(rows, NREQ);
  assert_int_equal(vd_history_rows_next(rs, &s), 0);
  assert_int_not_equal(vd_history_rows_more(rs, (uint64_t)1 << VD_HISTORY_AT),
                       0); /* no row in hand */
  vd_history_rows_close(ra);
  vd_history_rows_close(rs);
  /* the trace is read with the row or not at all */
  some.columns = (uint64_t)1 << VD_HISTORY_SEQ;
  assert_int_equal(vd_history_rows_open(&rs, db, &some, &err), 0);
  assert_int_equal(vd_history_rows_next(rs, &s), 1);
  assert_int_equal(vd_history_rows_more(rs, (uint64_t)1 << VD_HISTORY_TRACE),
                   VD_EINVALID);
  assert_null(s[VD_HISTORY_TRACE].text);
  vd_history_rows_close(rs);
  vd_buf_release(&err);
}

/* Against a candidate: each changed decision names the fields that
 * changed, old and new, in seq order. */
static void test_replay_candidate_changes(void **state) {
  vd_replay_report_t rep;
  const vd_replay_diff_t *d;
  size_t i;
  replay(&rep, *state, 2);
  assert_int_equal(rep.replayed, NREQ);
  /* every decision changes: {ok = true} for national (the bad input
   * included, which badrules does not read), an error for GD */
  assert_int_equal(rep.changed, NREQ);
  assert_int_equal(rep.unchanged, 0);
  assert_int_equal(rep.errors, 0);
  assert_int_equal(rep.nchanges, NREQ);
  for (i = 1; i < rep.nchanges; i++)
    assert_true(rep.changes[i - 1].seq < rep.changes[i].seq);

  /* seq 1, national: the offer is gone, ok is new; who it was, read for
   * the changed row only (vd_history_rows_more()) */
  assert_string_equal(rep.changes[0].decision_id,
                      "01900000-0000-7000-8000-000000000000");
  assert_string_equal(rep.changes[0].kind, "compensation");
  assert_string_equal(rep.changes[0].region, "national");
  assert_string_equal(rep.changes[0].at, AT);
  assert_string_equal(rep.changes[1].region, "GD");
  assert_string_equal(rep.changes[1].decision_id,
                      "01900000-0000-7000-8000-000000000001");
  d = diff(&rep.changes[0], "result.offer_fen");
  assert_non_null(d);
  assert_string_equal(d->old_json, "4000");
  assert_null(d->new_json);
  d = diff(&rep.changes[0], "result.ok");
  assert_non_null(d);
  assert_null(d->old_json);
  assert_string_equal(d->new_json, "true");
  d = diff(&rep.changes[0], "trace");
  assert_non_null(d);
  assert_non_null(strstr(d->new_json, "\"comp.ok\""));
  assert_null(diff(&rep.changes[0], "error"));

  /* seq 2, GD: badrules has no such region, so the whole result went */
  d = diff(&rep.changes[1], "error");
  assert_non_null(d);
  assert_null(d->old_json);
  assert_non_null(d->new_json);
  d = diff(&rep.changes[1], "result");
  assert_non_null(d);
  assert_non_null(strstr(d->old_json, "\"offer_fen\":6000"));
  assert_null(d->new_json);

  /* seq 5: the recorded error became a decision */
  d = diff(&rep.changes[4], "error");
  assert_non_null(d);
  assert_string_equal(d->old_json, "\"bad_input\"");
  assert_null(d->new_json);
  vd_replay_report_release(&rep);
}

/* Rule hits are counted per rule, before and after, over all threads;
 * offers before and after over the rows where either side made one. */
static void test_replay_counts_per_rule(void **state) {
  vd_replay_report_t rep;
  const vd_replay_rule_t *r;
  int threads;
  for (threads = 1; threads <= 3; threads++) {
    replay(&rep, *state, threads);
    assert_int_equal(rep.nrules, 2);
    /* mini's rule, in first place: the four decisions it made */
    assert_string_equal(rep.rules[0].rule, "comp.double_refund");
    r = rule(&rep, "comp.double_refund");
    assert_int_equal(r->before, 4);
    assert_int_equal(r->after, 0);
    /* badrules' rule: the four national requests, not GD */
    r = rule(&rep, "comp.ok");
    assert_int_equal(r->before, 0);
    assert_int_equal(r->after, 4);
    /* offers: 4000, 6000, 0, 16000 before; none after */
    assert_int_equal(rep.offers_before.count, 4);
    assert_int_equal(rep.offers_before.total, 26000);
    assert_int_equal(rep.offers_before.max, 16000);
    assert_int_equal(rep.offers_before.p50, 6000);
    assert_int_equal(rep.offers_after.count, 4);
    assert_int_equal(rep.offers_after.total, 0);
    vd_replay_report_release(&rep);
  }
}

/* MANY rows decided by mini: the first 40 offer nothing (charged below
 * due), the rest alternate national and GD double refunds; every ninth
 * (i % 9 == 4) is filed under no revision, so a determinism check cannot
 * decide it again.  Seq is i + 1. */
#define MANY 400
static void write_many(void) {
  vd_bundle_t *b = load("tests/fixtures/mini");
  vd_history_t *h = open_storing(b);
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  char line[256];
  int i;
  if (vd_engine_new(b, NULL, &e, &err) != 0)
    fail_msg("%s", err.data);
  for (i = 0; i < MANY; i++) {
    if (i < 40)
      snprintf(line, sizeof line,
               "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":"
               "\"" AT "\",\"input\":{\"charged_fen\":100,\"due_fen\":300}}");
    else
      snprintf(line, sizeof line,
               "{\"kind\":\"compensation\",\"region\":\"%s\",\"at\":"
               "\"" AT "\",\"input\":{\"charged_fen\":%d,\"due_fen\":3000}}",
               i % 2 ? "GD" : "national", 5000 + i);
    record(h, e, i % 9 == 4 ? NULL : vd_bundle_revision(b), line, i);
  }
  vd_history_close(h);
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
}

/* A SQLite selection by time alone is cut into equal spans of seq from its
 * lowest to its highest (the window's own, not the table's), counted only
 * when asked; one cursor moved from range to range reads each row once, in
 * order.  A selection by equality is cut into ranges of as many rows.  Only
 * a cursor opened on a range moves. */
static void test_split_ranges(void **state) {
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_buf_t err = VD_BUF_INIT;
  int64_t bounds[8], total = -1, next = 1;
  int k, pass, n;
  (void)state;
  write_many();
  for (pass = 0; pass < 2; pass++) {
    memset(&f, 0, sizeof f);
    if (pass) { /* received from row 41 (seq 42) on */
      f.has_since = 1;
      f.since_ms = 1795392000000 + 41;
    }
    assert_int_equal(vd_history_split_count(db, &f, 2), 2 * 128);
    assert_int_equal(vd_history_split(db, &f, 7, bounds, NULL, &err), 0);
    assert_int_equal(bounds[0], pass ? 42 : 1);
    assert_int_equal(bounds[7], MANY + 1);
    for (k = 1; k < 7; k++) /* spans of 400 / 7 or 359 / 7 */
      assert_int_equal(bounds[k] - bounds[0],
                       (pass ? 359 : 400) * (int64_t)k / 7);
    assert_int_equal(vd_history_split(db, &f, 7, bounds, &total, &err), 0);
    assert_int_equal(total, pass ? 359 : MANY);
    next = pass ? 42 : 1;
    for (k = 0; k < 7; k++) {
      if (k == 0) {
        assert_int_equal(vd_history_rows_open_range(&rows, db, &f, bounds[0],
                                                    bounds[1], &err),
                         0);
      } else {
        assert_int_equal(vd_history_rows_range(rows, bounds[k], bounds[k + 1]),
                         0);
      }
      while (vd_history_rows_next(rows, &row) == 1) {
        assert_int_equal(row[VD_HISTORY_SEQ].i, next);
        assert_true(row[VD_HISTORY_SEQ].i >= bounds[k]);
        assert_true(row[VD_HISTORY_SEQ].i < bounds[k + 1]);
        next++;
      }
    }
    assert_int_equal(next, MANY + 1);
    vd_history_rows_close(rows);
    rows = NULL;
  }
  /* by region: one range a lane, of as many rows each (GD: seq 42, 44 ...
   * 400, 180 rows; ranges of 60) */
  memset(&f, 0, sizeof f);
  f.region = "GD";
  assert_int_equal(vd_history_split_count(db, &f, 2), 2);
  assert_int_equal(vd_history_split(db, &f, 3, bounds, NULL, &err), 0);
  assert_int_equal(bounds[0], 42);
  assert_int_equal(bounds[1], 42 + 2 * 60);
  assert_int_equal(bounds[2], 42 + 2 * 120);
  assert_int_equal(bounds[3], INT64_MAX);
  for (k = 0, n = 0; k < 3; k++) {
    assert_int_equal(vd_history_rows_open_range(&rows, db, &f, bounds[k],
                                                bounds[k + 1], &err),
                     0);
    while (vd_history_rows_next(rows, &row) == 1) {
      assert_string_equal(row[VD_HISTORY_REGION].text, "GD");
      n++;
    }
    vd_history_rows_close(rows);
  }
  assert_int_equal(n, 180);
  /* a cursor opened on the whole selection has no range to move from */
  assert_int_equal(vd_history_rows_open(&rows, db, &f, &err), 0);
  assert_int_equal(vd_history_rows_range(rows, bounds[0], bounds[1]),
                   VD_EINVALID);
  assert_non_null(strstr(vd_history_rows_errmsg(rows), "range"));
  vd_history_rows_close(rows);
  /* a selection of nothing: every range empty */
  memset(&f, 0, sizeof f);
  f.has_since = 1;
  f.since_ms = 1795392000000 + MANY;
  assert_int_equal(vd_history_split(db, &f, 3, bounds, &total, &err), 0);
  assert_int_equal(total, 0);
  for (k = 0; k <= 3; k++)
    assert_int_equal(bounds[k], INT64_MAX);
  vd_buf_release(&err);
}

/* Read ranges 0 to NRANGES - 1 of BOUNDS, F's cut, with one cursor moved
 * from range to range as a lane moves it: every row within its range, in
 * seq order, its seq (at most MAX) counted in SEEN.  The rows read. */
static int read_ranges(const vd_history_filter_t *f, const int64_t *bounds,
                       int nranges, int *seen, int64_t max) {
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_buf_t err = VD_BUF_INIT;
  int64_t last = 0;
  int k, n = 0;
  for (k = 0; k < nranges; k++) {
    if (!rows)
      assert_int_equal(vd_history_rows_open_range(&rows, db, f, bounds[k],
                                                  bounds[k + 1], &err),
                       0);
    else
      assert_int_equal(vd_history_rows_range(rows, bounds[k], bounds[k + 1]),
                       0);
    while (vd_history_rows_next(rows, &row) == 1) {
      int64_t seq = row[VD_HISTORY_SEQ].i;
      assert_true(seq > last && seq <= max);
      assert_true(seq >= bounds[k] && seq < bounds[k + 1]);
      last = seq;
      seen[seq]++;
      n++;
    }
  }
  vd_history_rows_close(rows);
  vd_buf_release(&err);
  return n;
}

/* Replay F's rows on LANES lanes: WANT replayed, every one unchanged. */
static void replay_unchanged(const vd_history_filter_t *f, int lanes,
                             long long want) {
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_buf_t err = VD_BUF_INIT;
  memset(&o, 0, sizeof o);
  o.db = db;
  o.threads = lanes;
  o.select = *f;
  assert_int_equal(vd_replay_run(&o, &rep, &err), 0);
  assert_int_equal(rep.replayed, want);
  assert_int_equal(rep.unchanged, want);
  vd_replay_report_release(&rep);
  vd_buf_release(&err);
}

/* N rows of mini's national decisions offering nothing: row seq decided
 * at 10:00 on day DAY[seq] of November 2026 (DAY NULL: at AT), received
 * MS[seq] ms after the test's epoch (MS NULL: seq - 1). */
static void write_rows(int n, const int *day, const int64_t *ms) {
  vd_bundle_t *b = load("tests/fixtures/mini");
  vd_history_t *h = open_storing(b);
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  char line[256];
  int seq;
  if (vd_engine_new(b, NULL, &e, &err) != 0)
    fail_msg("%s", err.data);
  for (seq = 1; seq <= n; seq++) {
    char at[40] = AT;
    if (day)
      snprintf(at, sizeof at, "2026-11-%02dT10:00:00+08:00", day[seq]);
    snprintf(line, sizeof line,
             "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":"
             "\"%s\",\"input\":{\"charged_fen\":100,\"due_fen\":300}}",
             at);
    record_at(h, e, vd_bundle_revision(b), line, seq - 1,
              1795392000000 + (ms ? ms[seq] : seq - 1));
  }
  vd_history_close(h);
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
}

/* A selection by decision time (at_ms, which leads no index) is cut over
 * the span an index gives, the whole table's, or the received window's,
 * not narrowed first by reading every row on one thread; the ranges'
 * readers keep exactly the rows the decision time selects.  Rows 1-10
 * decided on 1 November, 51-60 on the 28th, those between on days spread
 * over the month; the selection is 10 to 19 November. */
static void test_split_by_decision_time(void **state) {
  enum { N = 60, LANES = 2 };
  vd_history_filter_t f;
  vd_buf_t err = VD_BUF_INIT;
  int64_t bounds[2 * 128 + 1], since, until;
  int i, in_window = 0, nranges, day[N + 1], seen[N + 1] = {0}, offset;
  (void)state;
  for (i = 0; i < N; i++) {
    day[i + 1] = i < 10 ? 1 : i >= 50 ? 28 : 1 + (i * 7) % 28;
    in_window += day[i + 1] >= 10 && day[i + 1] < 20;
  }
  write_rows(N, day, NULL);
  assert_true(in_window > 0 && in_window < N - 20);
  assert_int_equal(vd_time_parse("2026-11-10T10:00:00+08:00", 25, &since,
                                 &offset),
                   0);
  assert_int_equal(vd_time_parse("2026-11-20T10:00:00+08:00", 25, &until,
                                 &offset),
                   0);
  memset(&f, 0, sizeof f);
  f.has_at_since = f.has_at_until = 1;
  f.at_since_ms = since;
  f.at_until_ms = until;
  nranges = vd_history_split_count(db, &f, LANES);
  assert_int_equal(nranges, 2 * 128);
  assert_int_equal(vd_history_split(db, &f, nranges, bounds, NULL, &err), 0);
  assert_int_equal(bounds[0], 1);          /* the table's first row, */
  assert_int_equal(bounds[nranges], N + 1); /* to its last */
  assert_int_equal(read_ranges(&f, bounds, nranges, seen, N), in_window);
  for (i = 1; i <= N; i++)
    assert_int_equal(seen[i], day[i] >= 10 && day[i] < 20);
  /* with a received window, its span from the time index */
  f.has_since = 1;
  f.since_ms = 1795392000000 + 4; /* seq 5 on */
  assert_int_equal(vd_history_split(db, &f, nranges, bounds, NULL, &err), 0);
  assert_int_equal(bounds[0], 5);
  assert_int_equal(bounds[nranges], N + 1);
  /* and replayed on two lanes: the same rows */
  f.has_since = 0;
  replay_unchanged(&f, LANES, in_window);
  vd_buf_release(&err);
}

/* A received window is cut in two steps: the middle at once, from the
 * window's first and last rows in received order, then the ends, from the
 * pass over the time index, holding the rows recorded out of the order
 * they were received in.  Rows 1-60, seq i + 1 received at i ms, except
 * 3 (received at 30 ms: after the window's first, recorded before it),
 * 58 (received at 15 ms: recorded after the window's last), 59
 * (received at 70 ms: outside the window), and 56 and 57, received at 201
 * and 200 ms, the other way round; the window is 10 to 50 ms. */
static void test_split_in_two_steps(void **state) {
  enum { N = 60, LANES = 2 };
  vd_history_filter_t f;
  vd_buf_t err = VD_BUF_INIT;
  int64_t bounds[2 * 128 + 1], ms[N + 1], exact[2 * 128 + 1], total = -1;
  int i, k, nranges, seen[N + 1] = {0}, in_window = 0;
  (void)state;
  for (i = 1; i <= N; i++) {
    ms[i] = i == 3    ? 30
            : i == 58 ? 15
            : i == 59 ? 70
            : i == 56 ? 201
            : i == 57 ? 200
                      : i - 1;
    in_window += ms[i] >= 10 && ms[i] < 50;
  }
  write_rows(N, NULL, ms);
  memset(&f, 0, sizeof f);
  f.has_since = f.has_until = 1;
  f.since_ms = 1795392000000 + 10;
  f.until_ms = 1795392000000 + 50;
  nranges = vd_history_split_count(db, &f, LANES);
  assert_int_equal(vd_history_split_middle(db, &f, nranges, bounds, &err), 1);
  /* the middle: the first received (seq 11, at 10 ms) to the last (seq
   * 50, at 49 ms) */
  assert_int_equal(bounds[1], 11);
  assert_int_equal(bounds[nranges - 1], 51);
  for (k = 1; k < nranges - 1; k++)
    assert_true(bounds[k] <= bounds[k + 1]);
  assert_int_equal(vd_history_split_ends(db, &f, nranges, bounds, &total,
                                         &err),
                   0);
  assert_int_equal(total, in_window);
  assert_int_equal(bounds[0], 3);        /* seq 3, received inside */
  assert_int_equal(bounds[nranges], 59); /* to seq 58 */
  /* vd_history_split() in one step: the same ends */
  assert_int_equal(vd_history_split(db, &f, nranges, exact, NULL, &err), 0);
  assert_int_equal(exact[0], bounds[0]);
  assert_int_equal(exact[nranges], bounds[nranges]);
  /* every row of the window once, in seq order, none other */
  assert_int_equal(read_ranges(&f, bounds, nranges, seen, N), in_window);
  for (i = 1; i <= N; i++)
    assert_int_equal(seen[i], ms[i] >= 10 && ms[i] < 50);
  /* the first received (seq 57) recorded after the last (56): no middle;
   * the ends hold them */
  f.since_ms = 1795392000000 + 200;
  f.until_ms = 1795392000000 + 202;
  assert_int_equal(vd_history_split_middle(db, &f, 5, bounds, &err), 1);
  for (k = 1; k < 5; k++)
    assert_int_equal(bounds[k], 57);
  assert_int_equal(vd_history_split_ends(db, &f, 5, bounds, NULL, &err), 0);
  assert_int_equal(bounds[0], 56);
  assert_int_equal(bounds[5], 58);
  /* a window of nothing: every range empty */
  f.since_ms = f.until_ms = 1795392000000 + 1000;
  assert_int_equal(vd_history_split_middle(db, &f, 5, bounds, &err), 1);
  assert_int_equal(vd_history_split_ends(db, &f, 5, bounds, &total, &err), 0);
  assert_int_equal(total, 0);
  for (k = 0; k < 5; k++)
    assert_true(bounds[k] >= bounds[k + 1]);
  /* no pass to wait for: no two steps (vd_history_split() alone) */
  assert_int_equal(vd_history_split_middle(db, &f, 2, bounds, &err), 0);
  f.region = "national";
  assert_int_equal(vd_history_split_middle(db, &f, 5, bounds, &err), 0);
  memset(&f, 0, sizeof f);
  assert_int_equal(vd_history_split_middle(db, &f, 5, bounds, &err), 0);
  f.has_at_since = 1;
  assert_int_equal(vd_history_split_middle(db, &f, 5, bounds, &err), 0);
  /* replayed on two lanes: every row of the window once */
  memset(&f, 0, sizeof f);
  f.has_since = f.has_until = 1;
  f.since_ms = 1795392000000 + 10;
  f.until_ms = 1795392000000 + 50;
  replay_unchanged(&f, LANES, in_window);
  vd_buf_release(&err);
}

/* The lanes take ranges as they come (many a lane), yet the report is the
 * one a single thread makes: the changes kept are the first max_changes
 * in seq order, the row errors the first ten, the rules in the order the
 * history first has them (the first row's: mini's recorded trace before
 * badrules' new one). */
static void test_replay_any_lane_same_report(void **state) {
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_buf_t err = VD_BUF_INIT;
  int threads, i, errors_seen;
  write_many();
  for (threads = 1; threads <= 5; threads += 2) {
    memset(&o, 0, sizeof o);
    o.db = db;
    o.threads = threads;
    o.max_changes = 25;
    if (vd_replay_run(&o, &rep, &err) != 0) /* the determinism check */
      fail_msg("replay: %s", err.data);
    assert_int_equal(rep.replayed, MANY);
    assert_int_equal(rep.errors, 44); /* i % 9 == 4 below 400 */
    assert_int_equal(rep.unchanged, MANY - 44);
    assert_int_equal(rep.nrow_errors, 10);
    for (i = 0, errors_seen = 0; i < 10; i++) {
      char id[40];
      snprintf(id, sizeof id, "01900000-0000-7000-8000-%012d", 9 * i + 4);
      assert_string_equal(rep.row_errors[i].decision_id, id);
      errors_seen++;
    }
    assert_int_equal(errors_seen, 10);
    vd_replay_report_release(&rep);

    o.candidate = *state;
    if (vd_replay_run(&o, &rep, &err) != 0)
      fail_msg("replay: %s", err.data);
    assert_int_equal(rep.replayed, MANY);
    assert_int_equal(rep.nchanges, 25);
    for (i = 0; i < 25; i++) /* every decision changes: seq 1..25 */
      assert_int_equal(rep.changes[i].seq, i + 1);
    assert_int_equal(rep.nrules, 2);
    assert_string_equal(rep.rules[0].rule, "comp.double_refund");
    assert_string_equal(rep.rules[1].rule, "comp.ok");
    vd_replay_report_release(&rep);
  }
  vd_buf_release(&err);
}

/* A row whose revision is not stored, or that names none, cannot be
 * decided again: counted as an error with the reason, the rest replays. */
static void test_replay_missing_revision(void **state) {
  static const char missing[] =
      "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  vd_replay_report_t rep;
  (void)state;
  write_history("tests/fixtures/mini", NULL, REQ("BJ", 300, 100), missing);
  replay(&rep, NULL, 1);
  assert_int_equal(rep.replayed, NREQ + 1);
  assert_int_equal(rep.unchanged, NREQ);
  assert_int_equal(rep.errors, 1);
  assert_int_equal(rep.changed, 0);
  assert_int_equal(rep.nrow_errors, 1);
  assert_string_equal(rep.row_errors[0].decision_id,
                      "01900000-0000-7000-8000-000000000005");
  assert_non_null(strstr(rep.row_errors[0].why, "cannot rebuild"));
  assert_non_null(strstr(rep.row_errors[0].why, missing));
  vd_replay_report_release(&rep);
}

static void test_replay_no_revision(void **state) {
  vd_replay_report_t rep;
  (void)state;
  write_history("tests/fixtures/mini", "", NULL, NULL);
  replay(&rep, NULL, 2);
  assert_int_equal(rep.errors, NREQ);
  assert_int_equal(rep.nrow_errors, NREQ);
  assert_string_equal(rep.row_errors[0].why, "no revision recorded");
  vd_replay_report_release(&rep);
}

/* A decision that read history replays from the facts it recorded, not
 * from the history as it is now (which holds more decisions since). */
static void test_replay_recorded_facts(void **state) {
  static const char *const lines[] = {
      "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":\""
      "2026-11-23T10:00:00+08:00\",\"input\":{\"customer_id\":\"U-1\"}}",
      "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":\""
      "2026-11-24T10:00:00+08:00\",\"input\":{\"customer_id\":\"U-1\"}}",
      "{\"kind\":\"compensation\",\"region\":\"national\",\"at\":\""
      "2026-11-25T10:00:00+08:00\",\"input\":{\"customer_id\":\"U-1\"}}",
  };
  vd_bundle_t *b = asking(
      "ctx.history.customer_decisions(input.customer_id, 'compensation', 30)");
  vd_bundle_t *cand = asking(
      "ctx.history.customer_decisions(input.customer_id, 'compensation', 30)"
      " + ctx.history.customer_decisions(input.customer_id, 'appeal', 7)");
  vd_replay_report_t rep;
  (void)state;
  write_history_asking(b, lines, 3);

  /* recorded: 0, 1, 2 earlier decisions; now every one would see more */
  replay(&rep, NULL, 2);
  assert_int_equal(rep.replayed, 3);
  assert_int_equal(rep.unchanged, 3);
  assert_int_equal(rep.changed, 0);
  assert_int_equal(rep.asked_now, 0);
  vd_replay_report_release(&rep);

  /* a candidate asking one question more: the old one answered as
   * recorded, the new one from the history now (no appeals: 0), so
   * nothing changes but each decision counts as asked now */
  replay(&rep, cand, 1);
  assert_int_equal(rep.replayed, 3);
  assert_int_equal(rep.unchanged, 3);
  assert_int_equal(rep.asked_now, 3);
  assert_null(rep.facts_warning);
  vd_replay_report_release(&rep);
  vd_bundle_unref(cand);
  vd_bundle_unref(b);
}

/* A database that is not there: an error that names it, no report. */
static void test_replay_no_database(void **state) {
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_buf_t err = VD_BUF_INIT;
  (void)state;
  memset(&o, 0, sizeof o);
  o.db = db;
  o.threads = 2;
  assert_int_equal(vd_replay_run(&o, &rep, &err), VD_ENOT_FOUND);
  assert_non_null(strstr(err.data, db));
  assert_int_equal(rep.candidate_failed, 0);
  assert_int_equal(rep.replayed, 0);
  vd_replay_report_release(&rep);
  vd_buf_release(&err);
}

/* ------------------------------------------------------------------------
 * Impact: a candidate against a chosen baseline
 * ---------------------------------------------------------------------- */

/* mini with OLD replaced by NEW in national/compensation.lua. */
static vd_bundle_t *mini_with(const char *old, const char *new) {
  vd_bundle_t *m = load("tests/fixtures/mini"), *b = NULL;
  vd_buf_t err = VD_BUF_INIT, text = VD_BUF_INIT;
  size_t i, n = vd_bundle_count(m);
  vd_bundle_file_t *files = calloc(n, sizeof *files);
  assert_non_null(files);
  for (i = 0; i < n; i++) {
    files[i] = *vd_bundle_file(m, i);
    if (strcmp(files[i].path, "national/compensation.lua") == 0) {
      const char *at = strstr(files[i].data, old);
      assert_non_null(at);
      vd_buf_add(&text, files[i].data, (size_t)(at - files[i].data));
      vd_buf_adds(&text, new);
      vd_buf_adds(&text, at + strlen(old));
      files[i].data = text.data;
      files[i].len = text.len;
    }
  }
  if (vd_bundle_from_files(files, n, "test", &b, &err) != 0)
    fail_msg("%s", err.data);
  free(files);
  vd_buf_release(&text);
  vd_buf_release(&err);
  vd_bundle_unref(m);
  return b;
}

/* The recorded decisions (those F selects, every one without F) against
 * CANDIDATE, each compared with BASELINE's answer, or with its recorded
 * result without BASELINE. */
static void impact(vd_replay_report_t *rep, vd_bundle_t *candidate,
                   vd_bundle_t *baseline, const vd_history_filter_t *f,
                   int threads) {
  vd_replay_opts_t o;
  vd_buf_t err = VD_BUF_INIT;
  memset(&o, 0, sizeof o);
  o.db = db;
  o.candidate = candidate;
  o.baseline = baseline;
  o.threads = threads;
  if (f)
    o.select = *f;
  if (vd_replay_run(&o, rep, &err) != 0)
    fail_msg("replay: %s", err.data);
  vd_buf_release(&err);
}

static const vd_replay_group_t *group(const vd_replay_report_t *rep,
                                      const char *region) {
  size_t i;
  for (i = 0; i < rep->ngroups; i++)
    if (strcmp(rep->groups[i].region, region) == 0)
      return &rep->groups[i];
  fail_msg("no group for %s", region);
  return NULL;
}

/* Each row decided by both; only their difference counts, money per
 * region and in the histogram, the recorded value beside it. */
static void test_impact_against_a_baseline(void **state) {
  vd_bundle_t *mini = load("tests/fixtures/mini");
  vd_bundle_t *triple = mini_with("multiplier = 2", "multiplier = 3");
  vd_replay_report_t rep;
  const vd_replay_diff_t *d;
  int threads;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  for (threads = 1; threads <= 3; threads += 2) {
    impact(&rep, triple, mini, NULL, threads);
    assert_string_equal(rep.baseline, vd_bundle_revision(mini));
    assert_string_equal(rep.candidate, vd_bundle_revision(triple));
    assert_int_equal(rep.replayed, NREQ);
    /* national 4000 and 16000 become 6000 and 24000; GD triples
     * already; 0 and the error stay */
    assert_int_equal(rep.changed, 2);
    assert_int_equal(rep.material, 2);
    assert_int_equal(rep.immaterial, 0);
    assert_int_equal(rep.offers_before.total, 26000);
    assert_int_equal(rep.offers_after.total, 36000);
    assert_int_equal(rep.offers_after.p50, 6000);
    assert_int_equal(group(&rep, "national")->before_fen, 20000);
    assert_int_equal(group(&rep, "national")->after_fen, 30000);
    assert_int_equal(group(&rep, "national")->material, 2);
    assert_int_equal(group(&rep, "national")->up, 2);
    assert_int_equal(group(&rep, "GD")->after_fen, 6000);
    assert_int_equal(group(&rep, "GD")->changed, 0);
    /* moved 20 yuan (10 to 50) and 80 yuan (50 to 100) */
    assert_int_equal(rep.hist[8], 1);
    assert_int_equal(rep.hist[9], 1);
    assert_int_equal(rep.nfields, 1);
    assert_string_equal(rep.fields[0].field, "offer_fen");
    assert_int_equal(rep.fields[0].changed, 2);
    assert_int_equal(rep.nchanges, 2);
    assert_string_equal(rep.changes[0].kind, "compensation");
    assert_string_equal(rep.changes[1].region, "national");
    assert_int_equal(rep.changes[1].offer_before, 16000);
    assert_int_equal(rep.changes[1].offer_after, 24000);
    d = diff(&rep.changes[1], "result.offer_fen");
    assert_non_null(d);
    assert_true(d->outcome);
    assert_string_equal(d->old_json, "16000");
    assert_string_equal(d->new_json, "24000");
    assert_string_equal(d->recorded_json, "16000");
    assert_null(diff(&rep.changes[1], "trace")); /* the same rule fired */
    vd_replay_report_release(&rep);
  }
  /* the baseline is chosen: the candidate against itself changes nothing,
   * though it differs from what was recorded; every row read is counted
   * as progress */
  {
    vd_replay_opts_t o;
    vd_buf_t err = VD_BUF_INIT;
    long long progress = 0;
    memset(&o, 0, sizeof o);
    o.db = db;
    o.candidate = o.baseline = triple;
    o.threads = 2;
    o.progress = &progress;
    assert_int_equal(vd_replay_run(&o, &rep, &err), 0);
    assert_int_equal(progress, NREQ);
    vd_buf_release(&err);
  }
  assert_int_equal(rep.changed, 0);
  assert_int_equal(rep.unchanged, NREQ);
  vd_replay_report_release(&rep);
  vd_bundle_unref(triple);
  vd_bundle_unref(mini);
}

/* A change only in a field no outcome declares (mini: offer_fen only) is
 * immaterial; the rules that fire differently are named. */
static void test_impact_immaterial(void **state) {
  vd_bundle_t *mini = load("tests/fixtures/mini");
  vd_bundle_t *ratio = mini_with("ratio = 0.5", "ratio = 0.25");
  vd_bundle_t *rule = mini_with("{ rule = \"comp.double_refund\"",
                                "{ rule = \"comp.twice\"");
  vd_replay_report_t rep;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  impact(&rep, ratio, mini, NULL, 2);
  assert_int_equal(rep.changed, 4);
  assert_int_equal(rep.material, 0);
  assert_int_equal(rep.immaterial, 4);
  assert_false(rep.changes[0].material);
  assert_false(diff(&rep.changes[0], "result.ratio")->outcome);
  vd_replay_report_release(&rep);

  impact(&rep, rule, NULL, NULL, 1); /* against the recorded outcomes */
  assert_string_equal(rep.baseline, "recorded");
  assert_int_equal(rep.changed, 4);
  assert_int_equal(rep.immaterial, 4);
  assert_int_equal(rep.changes[0].ngained, 1);
  assert_string_equal(rep.changes[0].gained[0], "comp.twice");
  assert_int_equal(rep.changes[0].nlost, 1);
  assert_string_equal(rep.changes[0].lost[0], "comp.double_refund");
  vd_replay_report_release(&rep);
  vd_bundle_unref(rule);
  vd_bundle_unref(ratio);
  vd_bundle_unref(mini);
}

/* Rows chosen by decision time, revision and error code. */
static void test_impact_filters(void **state) {
  vd_bundle_t *mini = load("tests/fixtures/mini");
  vd_history_filter_t f;
  vd_replay_report_t rep;
  int64_t at_ms;
  int off;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  assert_int_equal(vd_time_parse(AT, strlen(AT), &at_ms, &off), 0);
#define COUNT(expected)                                                      \
  do {                                                                       \
    impact(&rep, mini, mini, &f, 2);                                         \
    assert_int_equal(rep.replayed, (expected));                              \
    vd_replay_report_release(&rep);                                          \
  } while (0)
  memset(&f, 0, sizeof f);
  f.error_code = "bad_input";
  COUNT(1);
  f.error_code = "none";
  COUNT(NREQ - 1);
  memset(&f, 0, sizeof f);
  f.revision = vd_bundle_revision(mini);
  COUNT(NREQ);
  f.revision = "sha256:other";
  COUNT(0);
  memset(&f, 0, sizeof f);
  f.has_at_since = 1;
  f.at_since_ms = at_ms;
  COUNT(NREQ);
  f.at_since_ms = at_ms + 1;
  COUNT(0);
  memset(&f, 0, sizeof f);
  f.has_at_until = 1;
  f.at_until_ms = at_ms;
  COUNT(0);
#undef COUNT
  vd_bundle_unref(mini);
}

/* "active" is the revision of the last successful activation. */
static void test_impact_resolve(void **state) {
  vd_bundle_t *b = NULL, *mini = load("tests/fixtures/mini");
  vd_buf_t name = VD_BUF_INIT, err = VD_BUF_INIT, want = VD_BUF_INIT;
  vd_history_t *h;
  char *msg = NULL;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  assert_int_equal(vd_replay_resolve(db, "active", &b, &name, &err),
                   VD_ENOT_FOUND);
  assert_non_null(strstr(err.data, "no revision has been activated"));
  assert_non_null(strstr(err.data, "--baseline recorded"));
  if (vd_history_open(&h, db, VD_LOG_DURABLE, 1, NULL, NULL, &msg) != 0)
    fail_msg("%s", msg);
  assert_int_equal(vd_history_record_activation(h, vd_bundle_revision(mini),
                                                "startup", NULL, NULL, 1,
                                                NULL, NULL),
                   0);
  assert_int_equal(vd_history_record_activation(h, "sha256:failed", "reload",
                                                NULL, NULL, 0, "broken",
                                                NULL),
                   0);
  vd_history_close(h);
  assert_int_equal(vd_replay_resolve(db, "active", &b, &name, &err), 0);
  vd_buf_addf(&want, "active (%s)", vd_bundle_revision(mini));
  assert_string_equal(name.data, want.data);
  assert_string_equal(vd_bundle_revision(b), vd_bundle_revision(mini));
  vd_bundle_unref(b);
  assert_int_equal(
      vd_replay_resolve(db, vd_bundle_revision(mini), &b, &name, &err), 0);
  vd_bundle_unref(b);
  assert_int_equal(vd_replay_resolve(db, "tests/fixtures/badrules", &b,
                                     &name, &err),
                   0);
  assert_string_equal(name.data, "tests/fixtures/badrules");
  vd_bundle_unref(b);
  assert_int_not_equal(vd_replay_resolve(db, "sha256:0000", &b, &name, &err),
                       0);
  assert_null(b);
  vd_buf_release(&name);
  vd_buf_release(&err);
  vd_buf_release(&want);
  vd_bundle_unref(mini);
}

/* A revision stored intact that the present sandbox refuses at load (a
 * function assigning to a file-level local, as lib/calendar.lua once
 * did): its rows are counted under it, once, not reported one by one. */
static void test_replay_unloadable_revision(void **state) {
  static const char old[] =
      "local P = { outcomes = { offer_fen = \"money\" } }\n"
      "local calls = 0\n"
      "function P.decide(input, ctx)\n"
      "  calls = calls + 1\n"
      "  return { offer_fen = 0 }, { { rule = \"old\", basis = \"old\" } }\n"
      "end\n"
      "return P\n";
  vd_bundle_file_t f = {"national/compensation.lua", (char *)old,
                        sizeof old - 1};
  vd_bundle_t *b = NULL;
  vd_engine_t *e = NULL;
  vd_buf_t err = VD_BUF_INIT;
  vd_history_t *h;
  vd_replay_report_t rep;
  char *msg = NULL, rev[80];
  (void)state;
  if (vd_bundle_from_files(&f, 1, "test", &b, &err) != 0)
    fail_msg("%s", err.data);
  /* the fixture keeps its meaning only while the engine refuses it */
  assert_int_not_equal(vd_engine_new(b, NULL, &e, &err), 0);
  snprintf(rev, sizeof rev, "%s", vd_bundle_revision(b));
  if (vd_history_open(&h, db, VD_LOG_DURABLE, 1, NULL, NULL, &msg) != 0)
    fail_msg("%s", msg);
  assert_int_equal(vd_history_store_revision(h, rev, &f, 1, NULL), 0);
  assert_int_equal(vd_history_record_activation(h, rev, "startup", NULL,
                                                NULL, 1, NULL, NULL),
                   0);
  vd_history_close(h);
  /* rows decided then, filed under that revision */
  write_history("tests/fixtures/mini", rev, NULL, NULL);
  replay(&rep, NULL, 2);
  assert_int_equal(rep.replayed, NREQ);
  assert_int_equal(rep.errors, 0);
  assert_int_equal(rep.nrow_errors, 0);
  assert_int_equal(rep.unloadable_rows, NREQ);
  assert_int_equal(rep.nunloadable, 1);
  assert_string_equal(rep.unloadable[0].revision, rev);
  assert_int_equal(rep.unloadable[0].rows, NREQ);
  assert_true(rep.unloadable[0].activated);
  assert_non_null(rep.unloadable[0].why);
  vd_replay_report_release(&rep);
  vd_bundle_unref(b);
  vd_buf_release(&err);
}

/* A candidate or a baseline that the engine refuses: each lane builds its
 * own engines, and the run fails with the engine's reason and which side
 * would not load, whatever the number of lanes; nothing is reported. */
static void test_replay_side_refused(void **state) {
  static const char refused[] =
      "local calls = 0\n"
      "return { decide = function() calls = calls + 1 end }\n";
  vd_bundle_file_t f = {"national/compensation.lua", (char *)refused,
                        sizeof refused - 1};
  vd_bundle_t *bad = NULL, *mini = load("tests/fixtures/mini");
  vd_engine_t *e = NULL;
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_buf_t err = VD_BUF_INIT, why = VD_BUF_INIT;
  int side, threads;
  (void)state;
  if (vd_bundle_from_files(&f, 1, "test", &bad, &err) != 0)
    fail_msg("%s", err.data);
  assert_int_not_equal(vd_engine_new(bad, NULL, &e, &why), 0);
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  for (side = 1; side <= 2; side++)
    for (threads = 1; threads <= 3; threads += 2) {
      memset(&o, 0, sizeof o);
      o.db = db;
      o.threads = threads;
      o.candidate = side == 1 ? bad : mini;
      o.baseline = side == 2 ? bad : NULL;
      assert_int_not_equal(vd_replay_run(&o, &rep, &err), 0);
      assert_int_equal(rep.candidate_failed, side == 1);
      assert_int_equal(rep.baseline_failed, side == 2);
      assert_int_equal(rep.replayed, 0);
      assert_string_equal(err.data, why.data); /* the engine's own words */
      vd_replay_report_release(&rep);
    }
  vd_bundle_unref(bad);
  vd_bundle_unref(mini);
  vd_buf_release(&err);
  vd_buf_release(&why);
}

/* The report's forms: JSON that parses with the figures, CSV with a row
 * per changed decision, HTML with the data and the chart library inlined
 * (a library that could end its script element is refused). */
static void test_report_formats(void **state) {
  vd_bundle_t *mini = load("tests/fixtures/mini");
  vd_bundle_t *triple = mini_with("multiplier = 2", "multiplier = 3");
  vd_replay_report_t rep;
  vd_report_opts_t ro;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  char lib[128];
  const char *p;
  FILE *fp;
  yajl_val t;
  int lines = 0;
  (void)state;
  write_history("tests/fixtures/mini", NULL, NULL, NULL);
  impact(&rep, triple, mini, NULL, 2);
  memset(&ro, 0, sizeof ro);

  assert_int_equal(vd_report_write(&rep, VD_REPORT_JSON, &ro, &out, &err), 0);
  t = yajl_tree_parse(out.data, NULL, 0);
  assert_non_null(t);
  {
    const char *pm[] = {"material", NULL}, *pt[] = {"offers", "after",
                                                    "total_yuan", NULL};
    assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(t, pm, yajl_t_number)), 2);
    assert_true(YAJL_GET_DOUBLE(yajl_tree_get(t, pt, yajl_t_number)) == 360.0);
  }
  yajl_tree_free(t);
  vd_buf_reset(&out);

  assert_int_equal(vd_report_write(&rep, VD_REPORT_CSV, &ro, &out, &err), 0);
  for (p = out.data; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 1 + 2);
  assert_non_null(strstr(out.data, ",160.00,240.00,80.00,"));
  vd_buf_reset(&out);

  snprintf(lib, sizeof lib, "%s/chart.js", dir);
  fp = fopen(lib, "w");
  assert_non_null(fp);
  fputs("/* a chart library */", fp);
  fclose(fp);
  ro.chart_js = lib;
  assert_int_equal(vd_report_write(&rep, VD_REPORT_HTML, &ro, &out, &err), 0);
  assert_non_null(strstr(out.data, "/* a chart library */"));
  assert_non_null(strstr(out.data, "id=impact-data>{\"against\":"));
  assert_non_null(strstr(out.data, "<canvas id=chart-money"));
  assert_null(strstr(out.data, "src="));
  vd_buf_reset(&out);
  fp = fopen(lib, "w");
  assert_non_null(fp);
  fputs("x = '</script>';", fp);
  fclose(fp);
  assert_int_equal(vd_report_write(&rep, VD_REPORT_HTML, &ro, &out, &err),
                   VD_EINVALID);
  vd_buf_reset(&err);
  ro.chart_js = "/nonexistent/chart.js";
  assert_int_equal(vd_report_write(&rep, VD_REPORT_HTML, &ro, &out, &err),
                   VD_EIO);
  assert_non_null(strstr(err.data, "libjs-chart.js"));
  vd_replay_report_release(&rep);
  vd_buf_release(&out);
  vd_buf_release(&err);
  vd_bundle_unref(triple);
  vd_bundle_unref(mini);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_replay_reproduces, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_rows_named_columns, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_candidate_changes,
                                      setup_candidate, teardown_candidate),
      cmocka_unit_test_setup_teardown(test_replay_counts_per_rule,
                                      setup_candidate, teardown_candidate),
      cmocka_unit_test_setup_teardown(test_split_ranges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replay_any_lane_same_report,
                                      setup_candidate_only, teardown_candidate),
      cmocka_unit_test_setup_teardown(test_replay_missing_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_no_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_recorded_facts, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_no_database, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_impact_against_a_baseline, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_impact_immaterial, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_impact_filters, setup, teardown),
      cmocka_unit_test_setup_teardown(test_impact_resolve, setup, teardown),
      cmocka_unit_test_setup_teardown(test_replay_unloadable_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_side_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_split_in_two_steps, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_split_by_decision_time, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_report_formats, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
