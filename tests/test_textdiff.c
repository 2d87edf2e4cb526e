/*
 * test_textdiff.c - unit tests for core/textdiff.c: unified line diffs.
 *
 * Every expected output below is what GNU `diff -u --label a --label b`
 * prints for the same two texts (checked when the tests were written), so
 * a patch tool reads ours as it reads diff's.  Pure functions; runs
 * single-threaded.
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
#include "verdict/textdiff.h"

/* Diff A against B (named "a" and "b") and compare the whole output with
 * WANT; NULL: the texts are equal and nothing may be written. */
static void check(const char *a, const char *b, const char *want) {
  vd_buf_t out = VD_BUF_INIT;
  int r = vd_text_diff("a", a, strlen(a), "b", b, strlen(b), &out);
  if (!want) {
    assert_int_equal(r, 0);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
  } else {
    assert_int_equal(r, 1);
    if (!out.data || strcmp(out.data, want) != 0)
      fail_msg("diff of\n%s\nagainst\n%s\ngave\n%s\nwanted\n%s", a, b,
               out.data ? out.data : "(nothing)", want);
  }
  vd_buf_release(&out);
}

static void identical(void **state) {
  vd_buf_t out = VD_BUF_INIT;
  (void)state;
  check("a\nb\nc\n", "a\nb\nc\n", NULL);
  check("", "", NULL);
  check("no newline", "no newline", NULL);
  /* equal texts append nothing to what the buffer already holds */
  vd_buf_adds(&out, "before\n");
  assert_int_equal(vd_text_diff("x", "same\n", 5, "y", "same\n", 5, &out), 0);
  assert_string_equal(out.data, "before\n");
  /* and a diff is appended after it, the names as given */
  assert_int_equal(vd_text_diff("a/p.lua", "1\n", 2, "b/p.lua", "2\n", 2, &out),
                   1);
  assert_string_equal(out.data, "before\n"
                                "--- a/p.lua\n+++ b/p.lua\n"
                                "@@ -1 +1 @@\n-1\n+2\n");
  vd_buf_release(&out);
}

static void insert(void **state) {
  (void)state;
  check("a\nb\nc\n", "a\nb\nX\nc\n",
        "--- a\n+++ b\n@@ -1,3 +1,4 @@\n a\n b\n+X\n c\n");
  /* at the very start and the very end */
  check("a\nb\n", "X\na\nb\n", "--- a\n+++ b\n@@ -1,2 +1,3 @@\n+X\n a\n b\n");
  check("a\nb\n", "a\nb\nX\n", "--- a\n+++ b\n@@ -1,2 +1,3 @@\n a\n b\n+X\n");
  /* context is three lines: the lines beyond it are not shown */
  check("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nd\nX\ne\nf\ng\nh\n",
        "--- a\n+++ b\n@@ -2,6 +2,7 @@\n b\n c\n d\n+X\n e\n f\n g\n");
}

static void delete(void **state) {
  (void)state;
  check("a\nb\nX\nc\n", "a\nb\nc\n",
        "--- a\n+++ b\n@@ -1,4 +1,3 @@\n a\n b\n-X\n c\n");
  check("a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nd\nf\ng\nh\n",
        "--- a\n+++ b\n@@ -2,7 +2,6 @@\n b\n c\n d\n-e\n f\n g\n h\n");
}

static void change(void **state) {
  (void)state;
  /* removals before additions */
  check("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n",
        "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
  check("x\n", "y\n", "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n");
  /* two changes six lines apart share one hunk ... */
  check("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
        "1\n2\nthree\n4\n5\n6\n7\n8\nnine\n10\n11\n12\n",
        "--- a\n+++ b\n@@ -1,12 +1,12 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n"
        " 7\n 8\n-9\n+nine\n 10\n 11\n 12\n");
  /* ... seven apart, still one (the contexts touch) */
  check("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
        "1\n2\nthree\n4\n5\n6\n7\n8\n9\nten\n11\n12\n",
        "--- a\n+++ b\n@@ -1,12 +1,12 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n"
        " 7\n 8\n 9\n-10\n+ten\n 11\n 12\n");
  /* far apart: two hunks */
  check("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n"
        "20\n",
        "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n17\n18\n"
        "19\n20\n21\n",
        "--- a\n+++ b\n@@ -1,3 +1,4 @@\n+0\n 1\n 2\n 3\n"
        "@@ -18,3 +19,4 @@\n 18\n 19\n 20\n+21\n");
}

static void empty_files(void **state) {
  (void)state;
  /* an empty side's range is "0,0" */
  check("", "x\ny\n", "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n");
  check("x\ny\n", "", "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n");
  check("", "\n", "--- a\n+++ b\n@@ -0,0 +1 @@\n+\n");
  /* empty lines are lines */
  check("\n\n", "\n", "--- a\n+++ b\n@@ -1,2 +1 @@\n \n-\n");
}

static void no_trailing_newline(void **state) {
  (void)state;
  check("a\nb", "a\nc",
        "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n");
  /* only the final newline differs: the last line is shown changed */
  check("a\nb", "a\nb\n",
        "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+b\n");
  check("a\nb\n", "a\nb",
        "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n"
        "\\ No newline at end of file\n");
  check("x", "", "--- a\n+++ b\n@@ -1 +0,0 @@\n-x\n"
                 "\\ No newline at end of file\n");
  /* an unterminated last line that is only context */
  check("a\nb\nc", "A\nb\nc",
        "--- a\n+++ b\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n"
        "\\ No newline at end of file\n");
}

/* Text of lines first..last, one number a line, with line CHANGED (if in
 * range) spelled differently. */
static void numbers(vd_buf_t *b, int first, int last, int changed) {
  int i;
  for (i = first; i <= last; i++)
    if (i == changed)
      vd_buf_addf(b, "line %d changed\n", i);
    else
      vd_buf_addf(b, "line %d\n", i);
}

static void large_inputs(void **state) {
  vd_buf_t a = VD_BUF_INIT, b = VD_BUF_INIT, out = VD_BUF_INIT;
  (void)state;
  /* 3,000 lines a side (9 million cells, under the limit): one hunk */
  numbers(&a, 1, 3000, 0);
  numbers(&b, 1, 3000, 1500);
  assert_int_equal(
      vd_text_diff("a", a.data, a.len, "b", b.data, b.len, &out), 1);
  assert_string_equal(out.data, "--- a\n+++ b\n@@ -1497,7 +1497,7 @@\n"
                                " line 1497\n line 1498\n line 1499\n"
                                "-line 1500\n+line 1500 changed\n"
                                " line 1501\n line 1502\n line 1503\n");
  /* past VD_DIFF_MAX_CELLS: a summary line with both sizes instead */
  vd_buf_reset(&a);
  vd_buf_reset(&b);
  vd_buf_reset(&out);
  numbers(&a, 1, 5000, 0);
  numbers(&b, 1, 5000, 2500);
  assert_true((double)5001 * 5001 > VD_DIFF_MAX_CELLS);
  assert_int_equal(
      vd_text_diff("a", a.data, a.len, "b", b.data, b.len, &out), 1);
  {
    char want[160];
    snprintf(want, sizeof want,
             "--- a\n+++ b\n@@ files differ (%zu and %zu bytes; too large "
             "to diff) @@\n",
             a.len, b.len);
    assert_string_equal(out.data, want);
  }
  /* equal large texts are found equal without a table */
  vd_buf_reset(&out);
  assert_int_equal(
      vd_text_diff("a", a.data, a.len, "b", a.data, a.len, &out), 0);
  assert_int_equal(out.len, 0);
  vd_buf_release(&a);
  vd_buf_release(&b);
  vd_buf_release(&out);
}

/* Two bundles: a file changed, one only in each, one the same. */
static void bundles(void **state) {
  static const vd_bundle_file_t fa[] = {
      {(char *)"national/a.lua", (char *)"x = 1\n", 6},
      {(char *)"national/gone.lua", (char *)"old\n", 4},
      {(char *)"regions.lua", (char *)"same\n", 5},
  };
  static const vd_bundle_file_t fb[] = {
      {(char *)"national/a.lua", (char *)"x = 2\n", 6},
      {(char *)"national/new.lua", (char *)"new\n", 4},
      {(char *)"regions.lua", (char *)"same\n", 5},
  };
  vd_bundle_t *a, *b;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  (void)state;
  assert_int_equal(vd_bundle_from_files(fa, 3, "a", &a, &err), 0);
  assert_int_equal(vd_bundle_from_files(fb, 3, "b", &b, &err), 0);
  assert_int_equal(vd_text_diff_bundles(a, a, &out), 0);
  assert_int_equal(out.len, 0);
  assert_int_equal(vd_text_diff_bundles(a, b, &out), 1);
  assert_string_equal(out.data,
                      "--- a/national/a.lua\n+++ b/national/a.lua\n"
                      "@@ -1 +1 @@\n-x = 1\n+x = 2\n"
                      "--- a/national/gone.lua\n+++ /dev/null\n"
                      "@@ -1 +0,0 @@\n-old\n"
                      "--- /dev/null\n+++ b/national/new.lua\n"
                      "@@ -0,0 +1 @@\n+new\n");
  vd_bundle_unref(a);
  vd_bundle_unref(b);
  vd_buf_release(&out);
  vd_buf_release(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(identical),
      cmocka_unit_test(insert),
      cmocka_unit_test(delete),
      cmocka_unit_test(change),
      cmocka_unit_test(empty_files),
      cmocka_unit_test(no_trailing_newline),
      cmocka_unit_test(large_inputs),
      cmocka_unit_test(bundles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
