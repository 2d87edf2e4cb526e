/*
 * test_policytest.c - unit tests for policy validation: the report
 * (core/policytest.c) and luacheck in process (core/lint.c).
 *
 * Fixtures (paths relative to the repository root, the working directory):
 *   tests/fixtures/mini/               a clean bundle
 *   tests/fixtures/lintwarn/           a failing case and two luacheck
 *                                      warnings
 *   tests/fixtures/lintwarn.expected   its report, as `verdict check`
 *                                      prints it (tests/blackbox/
 *                                      test_validate.py holds the CLI to it)
 * Runs single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/policytest.h"

#define MINI "tests/fixtures/mini"
#define LINTWARN "tests/fixtures/lintwarn"

static vd_bundle_t *load_bundle(const char *dir) {
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  if (vd_bundle_load(dir, &b, &err))
    fail_msg("vd_bundle_load(%s): %s", dir, err.data);
  vd_buf_release(&err);
  return b;
}

static void read_file(const char *path, vd_buf_t *out) {
  FILE *f = fopen(path, "rb");
  char chunk[4096];
  size_t n;
  if (!f)
    fail_msg("cannot open %s", path);
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    vd_buf_add(out, chunk, n);
  fclose(f);
}

static const vd_finding_t *find_code(const vd_policy_report_t *r,
                                     const char *code) {
  size_t i;
  for (i = 0; i < r->count; i++)
    if (r->findings[i].code && strcmp(r->findings[i].code, code) == 0)
      return &r->findings[i];
  return NULL;
}

/* A luacheck warning comes back as a finding with its file, line, column
 * and code, counted as a problem, after the tests. */
static void luacheck_warning_has_file_and_line(void **state) {
  vd_bundle_t *b = load_bundle(LINTWARN);
  vd_policy_report_t r;
  const vd_finding_t *f;
  (void)state;
  vd_policy_report_init(&r);
  assert_int_equal(vd_policy_check(b, NULL, NULL, &r), VD_EINVALID);
  f = find_code(&r, "W211");
  assert_non_null(f);
  assert_int_equal(f->kind, VD_FINDING_PROBLEM);
  assert_int_equal(f->stage, VD_STAGE_LUACHECK);
  assert_string_equal(f->file, "national/compensation.lua");
  assert_int_equal(f->line, 22);
  assert_int_equal(f->column, 9);
  assert_string_equal(f->text, "unused variable 'unused'");
  f = find_code(&r, "W113");
  assert_non_null(f);
  assert_string_equal(f->file, "national/compensation_test.lua");
  assert_int_equal(f->line, 16);
  /* with_defaults, which the harness gives test files, is no warning */
  assert_null(strstr(f->text, "with_defaults"));
  assert_int_equal(r.count, 3);
  assert_int_equal(r.passed, 2);
  assert_int_equal(r.failed, 1);
  assert_int_equal(r.problems, 3); /* two warnings and the failed tests */
  assert_int_equal(r.findings[0].kind, VD_FINDING_FAIL);
  assert_int_equal(r.findings[0].case_no, 2);
  assert_string_equal(r.findings[0].detail,
                      "      result.offer_fen: expected 2000, got 3000\n");
  vd_policy_report_release(&r);
  assert_int_equal(r.count, 0);
  vd_bundle_unref(b);
}

/* The report's text is what `verdict check` prints before its closing
 * line, and what a refused reload records (quiet: without "not fired"). */
static void report_text_is_what_the_cli_prints(void **state) {
  vd_bundle_t *b = load_bundle(LINTWARN);
  vd_policy_report_t r;
  vd_buf_t text = VD_BUF_INIT, expected = VD_BUF_INIT, err = VD_BUF_INIT;
  (void)state;
  read_file("tests/fixtures/lintwarn.expected", &expected);
  vd_policy_report_init(&r);
  vd_policy_check(b, NULL, NULL, &r);
  vd_policy_report_format(&r, 0, &text);
  assert_string_equal(text.data, expected.data);
  assert_int_equal(vd_policy_validate(b, NULL, &err), VD_EINVALID);
  assert_string_equal(err.data, expected.data);
  vd_policy_report_release(&r);
  vd_buf_release(&text);
  vd_buf_release(&expected);
  vd_buf_release(&err);
  vd_bundle_unref(b);
}

/* Without luacheck's modules validation fails: never "skipped".  The same
 * bundle passes where they are. */
static void luacheck_missing_fails(void **state) {
  vd_bundle_t *b = load_bundle(MINI);
  vd_policy_report_t r;
  const vd_finding_t *f;
  vd_buf_t err = VD_BUF_INIT;
  (void)state;
  vd_policy_report_init(&r);
  /* a directory that exists and holds no luacheck/ */
  assert_int_equal(vd_policy_check(b, NULL, "tests/fixtures", &r),
                   VD_EINVALID);
  assert_int_equal(r.problems, 1);
  assert_int_equal(r.failed, 0);
  f = &r.findings[r.count - 1];
  assert_int_equal(f->kind, VD_FINDING_PROBLEM);
  assert_int_equal(f->stage, VD_STAGE_LUACHECK);
  assert_null(f->file);
  assert_non_null(strstr(f->text, "luacheck: module 'luacheck' not found"));
  assert_non_null(strstr(f->text, "tests/fixtures/luacheck/init.lua"));
  vd_policy_report_release(&r);

  assert_int_equal(vd_policy_check(b, NULL, NULL, &r), 0);
  assert_int_equal(r.problems, 0);
  assert_int_equal(r.passed, 3);
  vd_policy_report_release(&r);
  assert_int_equal(vd_policy_validate(b, NULL, &err), 0);
  assert_int_equal(err.len, 0);
  vd_buf_release(&err);
  vd_bundle_unref(b);
}

/* Each finding's line, in each form. */
static void finding_formats(void **state) {
  vd_policy_report_t r;
  vd_buf_t text = VD_BUF_INIT;
  (void)state;
  vd_policy_report_init(&r);
  vd_policy_report_add(&r, VD_FINDING_PROBLEM, VD_STAGE_SYNTAX, "a.lua", 3, 0,
                       NULL, "unexpected symbol near 'x'");
  vd_policy_report_add(&r, VD_FINDING_PROBLEM, VD_STAGE_LOAD, NULL, 0, 0, NULL,
                       "no regions.lua");
  vd_policy_report_add(&r, VD_FINDING_FAIL, VD_STAGE_TESTS, "b_test.lua", 0,
                       0, NULL, "must return a list of cases");
  vd_policy_report_add(&r, VD_FINDING_UNFIRED, VD_STAGE_TESTS, "national/b.lua",
                       0, 0, NULL, "b rule b.one (national)");
  vd_policy_report_add(&r, VD_FINDING_PROBLEM, VD_STAGE_LUACHECK, "c.lua", 4,
                       7, "W211", "unused variable 'y'");
  r.tested = 1;
  r.passed = 5;
  vd_policy_report_format(&r, 0, &text);
  assert_string_equal(text.data, "a.lua:3: unexpected symbol near 'x'\n"
                                 "no regions.lua\n"
                                 "FAIL b_test.lua: must return a list of cases\n"
                                 "not fired: b rule b.one (national)\n"
                                 "5 passed, 0 failed\n"
                                 "c.lua:4:7: (W211) unused variable 'y'\n");
  vd_buf_reset(&text);
  vd_policy_report_format(&r, VD_REPORT_QUIET, &text);
  assert_null(strstr(text.data, "not fired"));
  assert_int_equal(r.problems, 3); /* PROBLEM findings only */
  vd_policy_report_release(&r);
  vd_buf_release(&text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(luacheck_warning_has_file_and_line),
      cmocka_unit_test(report_text_is_what_the_cli_prints),
      cmocka_unit_test(luacheck_missing_fails),
      cmocka_unit_test(finding_formats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
