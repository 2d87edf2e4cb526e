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
static void record(vd_history_t *h, vd_engine_t *e, const char *revision,
                   const char *line, int i) {
  vd_decision_t d;
  vd_record_t r;
  char id[40];
  uint64_t seq;
  vd_decision_init(&d);
  vd_engine_decide(e, line, strlen(line), 1795392000000, &d);
  snprintf(id, sizeof id, "01900000-0000-7000-8000-%012d", i);
  memset(&r, 0, sizeof r);
  r.decision_id = id;
  r.received_ms = 1795392000000 + i;
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

/* A history of every request of `requests`, decided by the bundle at
 * BUNDLE_DIR and filed under REVISION (NULL: the bundle's own, stored;
 * "": none), then the request of MORE, if any, filed under its own
 * revision. */
static void write_history(const char *bundle_dir, const char *revision,
                          const char *more, const char *more_revision) {
  vd_bundle_t *b = load(bundle_dir);
  vd_history_t *h;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
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

static void replay(vd_replay_report_t *rep, vd_bundle_t *candidate,
                   int threads) {
  vd_replay_opts_t o;
  vd_buf_t err = VD_BUF_INIT;
  memset(&o, 0, sizeof o);
  o.db = db;
  o.candidate = candidate;
  o.threads = threads;
  if (vd_replay_run(&o, rep, &err) != 0)
    fail_msg("replay: %s", err.data);
  vd_buf_release(&err);
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

  /* seq 1, national: the offer is gone, ok is new */
  assert_string_equal(rep.changes[0].decision_id,
                      "01900000-0000-7000-8000-000000000000");
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_replay_reproduces, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_candidate_changes,
                                      setup_candidate, teardown_candidate),
      cmocka_unit_test_setup_teardown(test_replay_counts_per_rule,
                                      setup_candidate, teardown_candidate),
      cmocka_unit_test_setup_teardown(test_replay_missing_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_no_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_recorded_facts, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_replay_no_database, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
