/*
 * textdiff.h - unified diffs of two texts, for `verdict diff`.
 *
 * A longest-common-subsequence line diff written as `diff -u` would: a
 * "--- a" / "+++ b" header, then hunks "@@ -l,n +l,n @@" with three lines
 * of context, and "\ No newline at end of file" after a last line that
 * has none.  Quadratic in lines, so inputs whose product of line counts
 * passes VD_DIFF_MAX_CELLS are summarised instead of diffed.  Pure; any
 * thread.
 */
#ifndef VERDICT_TEXTDIFF_H
#define VERDICT_TEXTDIFF_H

#include <stddef.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"

#define VD_DIFF_MAX_CELLS (16u << 20)

/* Append the unified diff of a (named name_a) against b to out.  Nothing is
 * appended when the texts are equal.  Returns 1 if they differ. */
int vd_text_diff(const char *name_a, const char *a, size_t alen,
                 const char *name_b, const char *b, size_t blen,
                 vd_buf_t *out);

/* Append the unified diff of every file that differs between bundles A
 * and B, in path order: "a/PATH" against "b/PATH", /dev/null for a file
 * one of them lacks.  Returns 1 if any differs. */
int vd_text_diff_bundles(const vd_bundle_t *a, const vd_bundle_t *b,
                         vd_buf_t *out);

#endif
