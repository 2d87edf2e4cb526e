/*
 * test_policytest.c - unit tests for policy validation: the report
 * (core/policytest.c), luacheck in process (core/lint.c) and the grid's
 * comparison of two answers (core/grid.c).
 *
 * Fixtures (paths relative to the repository root, the working directory):
 *   tests/fixtures/mini/               a clean bundle
 *   tests/fixtures/lintwarn/           a failing case and two luacheck
 *                                      warnings
 *   tests/fixtures/lintwarn.expected   its report, as `verdict check`
 *                                      prints it (tests/blackbox/
 *                                      test_validate.py holds the CLI to it)
 *   policies/                          the shipped bundle, for its grid
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
#include <lauxlib.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/json.h"
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

/* ------------------------------------------------------------------------
 * The grid's comparison (core/grid.c): vd_policy_compare() on decoded JSON
 * ------------------------------------------------------------------------ */

typedef struct cmp {
  lua_State *L;
  vd_buf_t field, va, vb;
} cmp_t;

static void push_json(lua_State *L, const char *json) {
  vd_buf_t err = VD_BUF_INIT;
  if (vd_json_decode_protected(L, json, strlen(json), 0, &err))
    fail_msg("bad JSON in a test: %s: %s", json, err.data);
  vd_buf_release(&err);
}

/* Is answer a looser than answer b under tighter?  (JSON texts) */
static int looser(cmp_t *c, const char *tighter, const char *a,
                  const char *b) {
  int rc, top = lua_gettop(c->L);
  push_json(c->L, tighter);
  push_json(c->L, a);
  push_json(c->L, b);
  rc = vd_policy_compare(c->L, top + 1, top + 2, top + 3, NULL, 0, NULL,
                         &c->field, &c->va, &c->vb);
  assert_int_equal(lua_gettop(c->L), top + 3); /* leaves its arguments */
  lua_settop(c->L, top);
  return rc;
}

static int cmp_setup(void **state) {
  cmp_t *c = calloc(1, sizeof *c);
  c->L = luaL_newstate();
  vd_json_setup(c->L);
  *state = c;
  return 0;
}

static int cmp_teardown(void **state) {
  cmp_t *c = *state;
  lua_close(c->L);
  vd_buf_release(&c->field);
  vd_buf_release(&c->va);
  vd_buf_release(&c->vb);
  free(c);
  return 0;
}

/* Deadlines: a later one is looser, so is a missing one; an earlier one,
 * or one the baseline lacks, is not.  Each key of a "name.*" map. */
static void compare_deadlines(void **state) {
  cmp_t *c = *state;
  const char *t = "{\"deadlines.*\":\"earlier\",\"tier\":\"neutral\"}";
  assert_int_equal(looser(c, t,
      "{\"deadlines\":{\"acceptance\":\"2026-11-25T23:59:59+08:00\"}}",
      "{\"deadlines\":{\"acceptance\":\"2026-11-24T23:59:59+08:00\"}}"), 1);
  assert_string_equal(c->field.data, "deadlines.acceptance");
  assert_string_equal(c->va.data, "\"2026-11-25T23:59:59+08:00\"");
  assert_string_equal(c->vb.data, "\"2026-11-24T23:59:59+08:00\"");
  /* the same instant in another offset is not later */
  assert_int_equal(looser(c, t,
      "{\"deadlines\":{\"acceptance\":\"2026-11-24T15:59:59Z\"}}",
      "{\"deadlines\":{\"acceptance\":\"2026-11-24T23:59:59+08:00\"}}"), 0);
  /* missing where the baseline has one: looser than any deadline */
  assert_int_equal(looser(c, t,
      "{\"deadlines\":{\"solution\":\"2026-11-30T23:59:59+08:00\"}}",
      "{\"deadlines\":{\"acceptance\":\"2026-11-24T23:59:59+08:00\","
      "\"solution\":\"2026-12-01T23:59:59+08:00\"}}"), 1);
  assert_string_equal(c->field.data, "deadlines.acceptance");
  assert_string_equal(c->va.data, "(absent)");
  /* one more deadline than the baseline, the rest earlier: tighter */
  assert_int_equal(looser(c, t,
      "{\"tier\":\"a\",\"deadlines\":{\"repair\":\"2026-11-24T10:00:00+08:00\","
      "\"solution\":\"2026-11-30T23:59:59+08:00\"}}",
      "{\"tier\":\"b\",\"deadlines\":{\"solution\":\"2026-11-30T23:59:59+08:00\"}}"),
      0);
  /* keys in sorted order: the first looser one is named */
  assert_int_equal(looser(c, t,
      "{\"deadlines\":{}}",
      "{\"deadlines\":{\"solution\":\"2026-11-30T23:59:59+08:00\","
      "\"acceptance\":\"2026-11-24T23:59:59+08:00\"}}"), 1);
  assert_string_equal(c->field.data, "deadlines.acceptance");
  /* null is absent */
  assert_int_equal(looser(c, "{\"next.at\":\"earlier\"}", "{\"next\":null}",
                          "{\"next\":{\"at\":\"2026-11-24T23:59:59+08:00\"}}"),
                   1);
  assert_string_equal(c->field.data, "next.at");
}

/* Every other order. */
static void compare_orders(void **state) {
  cmp_t *c = *state;
  assert_int_equal(looser(c, "{\"o\":\"larger\"}", "{\"o\":2717}",
                          "{\"o\":5217}"), 1);
  assert_string_equal(c->va.data, "2717");
  assert_int_equal(looser(c, "{\"o\":\"larger\"}", "{\"o\":6000}",
                          "{\"o\":5217}"), 0);
  assert_int_equal(looser(c, "{\"u\":\"smaller\"}", "{}", "{\"u\":60}"), 1);
  assert_int_equal(looser(c, "{\"u\":\"smaller\"}", "{\"u\":30}",
                          "{\"u\":60}"), 0);
  assert_int_equal(looser(c, "{\"u\":\"smaller\"}", "{\"u\":90}",
                          "{\"u\":60}"), 1);
  assert_int_equal(looser(c, "{\"w\":\"later\"}",
                          "{\"w\":\"2026-11-01T23:59:59+08:00\"}",
                          "{\"w\":\"2026-11-02T23:59:59+08:00\"}"), 1);
  assert_int_equal(looser(c, "{\"i\":\"true\"}", "{\"i\":false}",
                          "{\"i\":true}"), 1);
  assert_int_equal(looser(c, "{\"i\":\"true\"}", "{\"i\":true}",
                          "{\"i\":false}"), 0);
  assert_int_equal(looser(c, "{\"n\":\"superset\"}",
                          "{\"n\":[\"district\",\"compliance\"]}",
                          "{\"n\":[\"compliance\",\"city\",\"district\"]}"), 1);
  assert_string_equal(c->field.data, "n");
  assert_int_equal(looser(c, "{\"n\":\"superset\"}",
                          "{\"n\":[\"city\",\"district\",\"compliance\"]}",
                          "{\"n\":[\"compliance\"]}"), 0);
  assert_int_equal(looser(c, "{\"level\":{\"higher\":[\"frontline\","
                          "\"team_lead\",\"district\",\"city\"]}}",
                          "{\"level\":\"district\"}", "{\"level\":\"city\"}"), 1);
  assert_string_equal(c->va.data, "\"district\"");
  assert_string_equal(c->vb.data, "\"city\"");
  assert_int_equal(looser(c, "{\"level\":{\"higher\":[\"frontline\","
                          "\"team_lead\",\"district\",\"city\"]}}",
                          "{\"level\":\"city\"}", "{\"level\":\"team_lead\"}"),
                   0);
  /* neutral: never compared, not even when missing */
  assert_int_equal(looser(c, "{\"tier\":\"neutral\"}", "{}",
                          "{\"tier\":\"standard\"}"), 0);
}

/* An exception names a tighter key or a concrete path; it excuses that
 * field only, and counts how often it did. */
static void compare_exceptions(void **state) {
  cmp_t *c = *state;
  const char *t = "{\"deadlines.*\":\"earlier\",\"offer\":\"larger\"}";
  const char *a = "{\"offer\":1,\"deadlines\":{\"first_feedback\":"
                  "\"2026-11-27T10:00:00+08:00\"}}";
  const char *b = "{\"offer\":2,\"deadlines\":{\"first_feedback\":"
                  "\"2026-11-26T10:00:00+08:00\"}}";
  const char *by_path[] = {"deadlines.first_feedback"};
  const char *both[] = {"deadlines.*", "offer"};
  unsigned used[2] = {0, 0};
  int top = lua_gettop(c->L);
  push_json(c->L, t);
  push_json(c->L, a);
  push_json(c->L, b);
  assert_int_equal(vd_policy_compare(c->L, top + 1, top + 2, top + 3, by_path,
                                     1, used, &c->field, &c->va, &c->vb),
                   1);
  assert_string_equal(c->field.data, "offer"); /* the next one still counts */
  assert_int_equal(used[0], 1);
  used[0] = 0;
  assert_int_equal(vd_policy_compare(c->L, top + 1, top + 2, top + 3, both, 2,
                                     used, &c->field, &c->va, &c->vb),
                   0);
  assert_int_equal(used[0], 1);
  assert_int_equal(used[1], 1);
  lua_settop(c->L, top);
}

/* The shipped bundle: no region looser than its parent, no grade looser
 * than the one below; a closing note per kind with a grid, and the same
 * report on every run. */
static void shipped_grid_passes_and_repeats(void **state) {
  vd_bundle_t *b = load_bundle("policies");
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT, t1 = VD_BUF_INIT, t2 = VD_BUF_INIT;
  vd_policy_report_t r;
  int run;
  (void)state;
  assert_int_equal(vd_engine_new(b, NULL, &e, &err), 0);
  for (run = 0; run < 2; run++) {
    vd_policy_report_init(&r);
    assert_int_equal(vd_policy_check_grid(e, &r), 0);
    assert_int_equal(r.problems, 0);
    vd_policy_report_format(&r, 0, run ? &t2 : &t1);
    vd_policy_report_release(&r);
  }
  assert_non_null(strstr(t1.data, "grid: sla: "));
  assert_non_null(strstr(t1.data, " in national, GD, GD-SZ;"));
  assert_non_null(strstr(t1.data, "grid: compensation: "));
  assert_non_null(strstr(t1.data, "grid: escalation: "));
  assert_string_equal(t1.data, t2.data);
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  vd_buf_release(&t1);
  vd_buf_release(&t2);
}

/* ------------------------------------------------------------------------
 * Strict loading: a bundle of the shipped libraries and one small policy
 * (and a region), built in memory.
 * ------------------------------------------------------------------------ */

/* A national compensation policy on lib/rules.lua: one table whose rules
 * carry `per_day_fen` (declared in `data`); TABLE_EXTRA and RULE_EXTRA
 * are written into the table and its rule (each a line of its own,
 * line 7 and line 9). */
#define STRICT_POLICY(TABLE_EXTRA, RULE_EXTRA)                                \
  "local R = require(\"lib.rules\")\n"                                         \
  "local S = require(\"lib.schema\")\n"                                        \
  "return R.policy{\n"                                                        \
  "  kind = \"compensation\",\n"                                              \
  "  fields = { days = S.integer{ default = 0 } },\n"                        \
  "  tables = { { name = \"late\", hit = \"first\", data = { \"per_day_fen\" },\n" \
  "    " TABLE_EXTRA "\n"                                                      \
  "    rules = { { id = \"late.pay\", basis = \"a published promise\",\n"      \
  "      " RULE_EXTRA "\n"                                                     \
  "      per_day_fen = 1000 } } } },\n"                                        \
  "  evaluate = function(P, f, _, tr)\n"                                      \
  "    local r = R.decide(P, \"late\", f, tr)\n"                               \
  "    return { offer_fen = f.days * r.per_day_fen }\n"                        \
  "  end,\n"                                                                  \
  "}\n"

/* Build a bundle of the shipped lib/rules.lua, schema.lua and time.lua,
 * national/compensation.lua = national and, unless NULL, regions/SH/
 * compensation.lua = region (with regions.lua listing SH), and the
 * files of extra (path, text pairs, NULL-terminated; may be NULL). */
static vd_bundle_t *strict_bundle_with(const char *national,
                                       const char *region,
                                       const char *const *extra) {
  static const char *const libs[] = {"lib/rules.lua", "lib/schema.lua",
                                     "lib/time.lua"};
  vd_buf_t text[3] = {VD_BUF_INIT, VD_BUF_INIT, VD_BUF_INIT};
  vd_bundle_file_t files[16];
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT, path = VD_BUF_INIT;
  size_t n = 0, i;
  for (i = 0; i < 3; i++) {
    vd_buf_reset(&path);
    vd_buf_addf(&path, "policies/%s", libs[i]);
    read_file(path.data, &text[i]);
    files[n].path = (char *)libs[i];
    files[n].data = text[i].data;
    files[n++].len = text[i].len;
  }
  files[n].path = "national/compensation.lua";
  files[n].data = (char *)national;
  files[n++].len = strlen(national);
  files[n].path = "regions.lua";
  files[n].data = "return { \"SH\" }\n";
  files[n].len = strlen(files[n].data);
  n++;
  if (region) {
    files[n].path = "regions/SH/compensation.lua";
    files[n].data = (char *)region;
    files[n++].len = strlen(region);
  }
  for (; extra && extra[0] && n < 16; extra += 2) {
    files[n].path = (char *)extra[0];
    files[n].data = (char *)extra[1];
    files[n++].len = strlen(extra[1]);
  }
  if (vd_bundle_from_files(files, n, "test", &b, &err))
    fail_msg("vd_bundle_from_files: %s", err.data);
  for (i = 0; i < 3; i++)
    vd_buf_release(&text[i]);
  vd_buf_release(&err);
  vd_buf_release(&path);
  return b;
}

static vd_bundle_t *strict_bundle(const char *national, const char *region) {
  return strict_bundle_with(national, region, NULL);
}

/* The one load problem `verdict test` reports for the bundle: its file,
 * line and text. */
static void expect_load_error(const char *national, const char *region,
                              const char *file, int line, const char *text) {
  vd_bundle_t *b = strict_bundle(national, region);
  vd_policy_report_t r;
  vd_policy_report_init(&r);
  assert_int_not_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.findings[0].stage, VD_STAGE_LOAD);
  if (!r.findings[0].file || strcmp(r.findings[0].file, file) != 0 ||
      r.findings[0].line != line || !strstr(r.findings[0].text, text))
    fail_msg("expected %s:%d: ...%s..., got %s:%d: %s", file, line, text,
             r.findings[0].file ? r.findings[0].file : "(no file)",
             r.findings[0].line, r.findings[0].text);
  vd_policy_report_release(&r);
  vd_bundle_unref(b);
}

/* The policy as written loads; each misspelt name is refused where it is
 * written, with the name meant. */
static void strict_policy_names(void **state) {
  vd_bundle_t *b = strict_bundle(STRICT_POLICY("", ""), NULL);
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  (void)state;
  if (vd_engine_new(b, NULL, &e, &err))
    fail_msg("the well-formed policy: %s", err.data);
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  /* a rule's field, a table's key, R.policy's own key */
  expect_load_error(STRICT_POLICY("", "per_dya_fen = 2,"), NULL,
                    "national/compensation.lua", 9,
                    "rule late.pay: unknown field 'per_dya_fen' (did you "
                    "mean 'per_day_fen'?)");
  expect_load_error(STRICT_POLICY("hti = \"first\",", ""), NULL,
                    "national/compensation.lua", 7,
                    "table late: unknown key 'hti' (did you mean 'hit'?)");
  expect_load_error(STRICT_POLICY("", "bassi = \"x\","), NULL,
                    "national/compensation.lua", 9,
                    "unknown field 'bassi' (did you mean 'basis'?)");
  /* nothing near: the valid names are listed */
  expect_load_error(STRICT_POLICY("", "zzzzzzzz = 1,"), NULL,
                    "national/compensation.lua", 9,
                    "unknown field 'zzzzzzzz'; expected one of basis, id, "
                    "limits, per_day_fen, when");
}

/* What a region writes in R.extend: its keys, params, replacements and
 * additions. */
static void strict_region_names(void **state) {
  const char *national = STRICT_POLICY("", "");
  (void)state;
  expect_load_error(national,
                    "local R = require(\"lib.rules\")\n"
                    "return R.extend(parent(), {\n"
                    "  replace = { [\"late.pay\"] = {\n"
                    "    id = \"sh.late.pay\", basis = \"Shanghai's promise\",\n"
                    "    per_day_fne = 2000 } },\n"
                    "})\n",
                    "regions/SH/compensation.lua", 5,
                    "the rule replacing late.pay (table late): unknown field "
                    "'per_day_fne' (did you mean 'per_day_fen'?)");
  expect_load_error(national,
                    "local R = require(\"lib.rules\")\n"
                    "return R.extend(parent(), {\n"
                    "  replace = { [\"late.pya\"] = {\n"
                    "    id = \"sh.late.pay\", basis = \"Shanghai's promise\" } },\n"
                    "})\n",
                    "regions/SH/compensation.lua", 3,
                    "unknown rule 'late.pya' (did you mean 'late.pay'?)");
  expect_load_error(national,
                    "local R = require(\"lib.rules\")\n"
                    "return R.extend(parent(), {\n"
                    "  add = { { table = \"late\", rule = {\n"
                    "    id = \"sh.late.more\", basis = \"Shanghai's promise\",\n"
                    "    when = function(f) return f.days > 9 end,\n"
                    "    pre_day_fen = 3000 } } },\n"
                    "})\n",
                    "regions/SH/compensation.lua", 6,
                    "rule sh.late.more: unknown field 'pre_day_fen' (did you "
                    "mean 'per_day_fen'?)");
  expect_load_error(national,
                    "local R = require(\"lib.rules\")\n"
                    "return R.extend(parent(), {\n"
                    "  add = { { tabel = \"late\", rule = {} } },\n"
                    "})\n",
                    "regions/SH/compensation.lua", 3,
                    "unknown key 'tabel' (did you mean 'table'?)");
  expect_load_error(national,
                    "local R = require(\"lib.rules\")\n"
                    "return R.extend(parent(), {\n"
                    "  parms = {},\n"
                    "})\n",
                    "regions/SH/compensation.lua", 3,
                    "unknown key 'parms' (did you mean 'params'?)");
}

/* Rule coverage: each policy file's own tests must fire its own rules
 * (the national file: all; a region: what it replaces or adds), at least
 * the bundle's coverage.lua threshold of them (default 100%). */
#define COVERAGE_NATIONAL                                                     \
  "local R = require(\"lib.rules\")\n"                                         \
  "local S = require(\"lib.schema\")\n"                                        \
  "return R.policy{\n"                                                        \
  "  kind = \"compensation\",\n"                                              \
  "  fields = { days = S.integer{ default = 0 } },\n"                        \
  "  tables = { { name = \"late\", hit = \"first\", data = { \"per_day_fen\" },\n" \
  "    rules = {\n"                                                           \
  "      { id = \"late.long\", basis = \"a published promise\",\n"             \
  "        when = function(f) return f.days > 9 end, per_day_fen = 2000 },\n"  \
  "      { id = \"late.pay\", basis = \"a published promise\",\n"              \
  "        per_day_fen = 1000 } } } },\n"                                      \
  "  evaluate = function(P, f, _, tr)\n"                                      \
  "    local r = R.decide(P, \"late\", f, tr)\n"                               \
  "    return { offer_fen = f.days * r.per_day_fen }\n"                        \
  "  end,\n"                                                                  \
  "}\n"
#define COVERAGE_CASE(DAYS, OFFER)                                            \
  "  { name = \"late " #DAYS " days\", at = \"2026-11-23T10:00:00+08:00\",\n"  \
  "    input = { days = " #DAYS " }, expect = { offer_fen = " #OFFER " } },\n"

static void coverage_report(const char *const *extra, const char *region,
                            int rc, unsigned problems, const char *text) {
  vd_bundle_t *b = strict_bundle_with(COVERAGE_NATIONAL, region, extra);
  vd_policy_report_t r;
  vd_buf_t out = VD_BUF_INIT;
  vd_policy_report_init(&r);
  r.coverage = 1;
  assert_int_equal(vd_policy_test(b, NULL, &r) != 0, rc);
  assert_int_equal(r.problems, problems);
  vd_policy_report_format(&r, 0, &out);
  if (!strstr(out.data, text))
    fail_msg("expected \"%s\" in:\n%s", text, out.data);
  vd_policy_report_release(&r);
  vd_bundle_unref(b);
  vd_buf_release(&out);
}

static void rule_coverage(void **state) {
  static const char *const half[] = {
      "national/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 2000) "}\n", NULL};
  static const char *const half_allowed[] = {
      "national/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 2000) "}\n",
      "coverage.lua", "return { min_percent = 50 }\n", NULL};
  static const char *const full[] = {
      "national/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 2000) COVERAGE_CASE(10, 20000) "}\n",
      NULL};
  static const char *const region_tested[] = {
      "national/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 2000) COVERAGE_CASE(10, 20000) "}\n",
      "regions/SH/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 3000) "}\n", NULL};
  static const char region[] =
      "local R = require(\"lib.rules\")\n"
      "return R.extend(parent(), { replace = { [\"late.pay\"] = {\n"
      "  id = \"sh.late.pay\", basis = \"Shanghai's promise\",\n"
      "  per_day_fen = 1500 } } })\n";
  (void)state;
  coverage_report(half, NULL, 1, 1,
                  "national/compensation.lua: its tests "
                  "(national/compensation_test.lua) fire 1 of its 2 own rules "
                  "(50%), under the bundle's 100% (coverage.lua): not fired: "
                  "late.long\n");
  coverage_report(half_allowed, NULL, 0, 0,
                  "national/compensation.lua: coverage 1/2 own rules fired by "
                  "national/compensation_test.lua (50%)\n");
  coverage_report(full, NULL, 0, 0,
                  "national/compensation.lua: coverage 2/2 own rules fired by "
                  "national/compensation_test.lua (100%)\n");
  /* a region's own rules are its replacement: the national tests do not
   * count for it, and a region file without tests fails */
  coverage_report(full, region, 1, 1,
                  "regions/SH/compensation.lua: no tests: a policy file needs "
                  "its own tests beside it (regions/SH/compensation_test.lua) "
                  "that fire its 1 rule (sh.late.pay)\n");
  coverage_report(region_tested, region, 0, 0,
                  "regions/SH/compensation.lua: coverage 1/1 own rules fired "
                  "by regions/SH/compensation_test.lua (100%)\n");
}

/* A filter runs only the test files and cases it names, records passed
 * cases when verbose, and measures coverage only where every case ran. */
static void filtered_tests(void **state) {
  static const char *const files[] = {
      "national/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 2000) COVERAGE_CASE(10, 20000) "}\n",
      "regions/SH/compensation_test.lua",
      "return {\n" COVERAGE_CASE(2, 3000) "}\n", NULL};
  static const char region[] =
      "local R = require(\"lib.rules\")\n"
      "return R.extend(parent(), { replace = { [\"late.pay\"] = {\n"
      "  id = \"sh.late.pay\", basis = \"Shanghai's promise\",\n"
      "  per_day_fen = 1500 } } })\n";
  const char *sh[] = {"SH"}, *policy[] = {"regions/SH/compensation.lua"},
             *dir[] = {"national/"}, *none[] = {"regions/SH/sla.lua"};
  vd_policy_filter_t flt = {NULL, 0, NULL, 1};
  vd_bundle_t *b = strict_bundle_with(COVERAGE_NATIONAL, region, files);
  vd_policy_report_t r;
  (void)state;
#define RUN(PATHS, N, RUNPAT)                                                 \
  do {                                                                        \
    vd_policy_report_release(&r);                                             \
    flt.paths = PATHS;                                                        \
    flt.npaths = N;                                                           \
    flt.run = RUNPAT;                                                         \
    r.filter = &flt;                                                          \
    r.coverage = 1;                                                           \
  } while (0)
  vd_policy_report_init(&r);
  RUN(sh, 1, NULL);
  assert_int_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.passed, 1);
  assert_int_equal(r.findings[0].kind, VD_FINDING_PASS);
  assert_string_equal(r.findings[0].file, "regions/SH/compensation_test.lua");
  assert_int_equal(r.findings[0].line, 2);
  assert_int_equal(r.findings[1].kind, VD_FINDING_NOTE); /* SH's coverage */
  assert_string_equal(r.findings[1].file, "regions/SH/compensation.lua");
  assert_int_equal(r.count, 2); /* no national coverage, no "not fired" */
  RUN(policy, 1, NULL);
  assert_int_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.passed, 1);
  RUN(dir, 1, NULL);
  assert_int_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.passed, 2);
  /* --run: one case, no coverage measured */
  RUN(NULL, 0, "late 1[0-9] days");
  assert_int_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.passed, 1);
  assert_int_equal(r.count, 1);
  assert_int_equal(r.findings[0].case_no, 2);
  /* a path that names no test file */
  RUN(none, 1, NULL);
  assert_int_not_equal(vd_policy_test(b, NULL, &r), 0);
  assert_int_equal(r.passed, 0);
  assert_non_null(strstr(r.findings[0].text, "regions/SH/sla.lua: names no "
                                             "test file of the bundle"));
#undef RUN
  vd_policy_report_release(&r);
  vd_bundle_unref(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(luacheck_warning_has_file_and_line),
      cmocka_unit_test(report_text_is_what_the_cli_prints),
      cmocka_unit_test(luacheck_missing_fails),
      cmocka_unit_test(finding_formats),
      cmocka_unit_test_setup_teardown(compare_deadlines, cmp_setup,
                                      cmp_teardown),
      cmocka_unit_test_setup_teardown(compare_orders, cmp_setup, cmp_teardown),
      cmocka_unit_test_setup_teardown(compare_exceptions, cmp_setup,
                                      cmp_teardown),
      cmocka_unit_test(shipped_grid_passes_and_repeats),
      cmocka_unit_test(strict_policy_names),
      cmocka_unit_test(strict_region_names),
      cmocka_unit_test(rule_coverage),
      cmocka_unit_test(filtered_tests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
