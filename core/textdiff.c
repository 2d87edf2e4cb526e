/*
 * textdiff.c - unified line diffs (see textdiff.h), of two texts or of
 * every file of two bundles.  No state; any thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "verdict/textdiff.h"

typedef struct line {
  const char *s;
  size_t n;  /* without the newline */
  int nl;    /* 1: ends with '\n'; 0: the text's last line, unterminated */
} line_t;

static size_t split(const char *t, size_t len, line_t **out) {
  size_t n = 0, cap = 64, i, start = 0;
  line_t *v = malloc(cap * sizeof *v);
  if (!v)
    return (size_t)-1;
  for (i = 0; i <= len; i++) {
    if (i == len ? i > start : t[i] == '\n') {
      if (n == cap) {
        line_t *w = realloc(v, (cap *= 2) * sizeof *v);
        if (!w) {
          free(v);
          return (size_t)-1;
        }
        v = w;
      }
      v[n].s = t + start;
      v[n].n = i - start;
      v[n].nl = i < len;
      n++;
      start = i + 1;
    }
  }
  *out = v;
  return n;
}

/* A last line without its newline differs from the same text with one,
 * as in diff -u. */
static int same(const line_t *a, const line_t *b) {
  return a->n == b->n && a->nl == b->nl && memcmp(a->s, b->s, a->n) == 0;
}

/* One edit: ' ' keep, '-' from a, '+' from b. */
typedef struct op {
  char kind;
  size_t ai, bi;
} op_t;

/* A hunk's range "l,n" from its first line (0-based) and count, as diff -u
 * writes it: ",1" is left out; an empty range names the line before it. */
static void add_range(vd_buf_t *out, size_t first, size_t count) {
  if (count == 1)
    vd_buf_addf(out, "%zu", first + 1);
  else
    vd_buf_addf(out, "%zu,%zu", count ? first + 1 : first, count);
}

static void emit_hunks(const op_t *ops, size_t nops, const line_t *a,
                       const line_t *b, vd_buf_t *out) {
  const size_t ctx = 3;
  size_t i = 0;
  while (i < nops) {
    size_t start, end, j, la = 0, lb = 0, a0, b0;
    while (i < nops && ops[i].kind == ' ')
      i++;
    if (i == nops)
      break;
    start = i > ctx ? i - ctx : 0;
    /* extend while the next change is within 2*ctx of this one */
    end = i;
    for (j = i; j < nops; j++) {
      if (ops[j].kind != ' ')
        end = j;
      else if (j - end > 2 * ctx)
        break;
    }
    end = end + ctx + 1 < nops ? end + ctx + 1 : nops;
    a0 = ops[start].ai;
    b0 = ops[start].bi;
    for (j = start; j < end; j++) {
      if (ops[j].kind != '+')
        la++;
      if (ops[j].kind != '-')
        lb++;
    }
    vd_buf_adds(out, "@@ -");
    add_range(out, a0, la);
    vd_buf_adds(out, " +");
    add_range(out, b0, lb);
    vd_buf_adds(out, " @@\n");
    for (j = start; j < end; j++) {
      const line_t *l = ops[j].kind == '+' ? &b[ops[j].bi] : &a[ops[j].ai];
      vd_buf_addc(out, ops[j].kind);
      vd_buf_add(out, l->s, l->n);
      vd_buf_addc(out, '\n');
      if (!l->nl)
        vd_buf_adds(out, "\\ No newline at end of file\n");
    }
    i = end;
  }
}

int vd_text_diff(const char *name_a, const char *at, size_t alen,
                 const char *name_b, const char *bt, size_t blen,
                 vd_buf_t *out) {
  line_t *a = NULL, *b = NULL;
  size_t na, nb, i, j, nops = 0;
  uint32_t *lcs = NULL;
  op_t *ops = NULL;
  if (alen == blen && (alen == 0 || memcmp(at, bt, alen) == 0))
    return 0;
  vd_buf_addf(out, "--- %s\n+++ %s\n", name_a, name_b);
  na = split(at, alen, &a);
  nb = split(bt, blen, &b);
  if (na == (size_t)-1 || nb == (size_t)-1 ||
      (double)(na + 1) * (double)(nb + 1) > VD_DIFF_MAX_CELLS)
    goto summary;
  lcs = calloc((na + 1) * (nb + 1), sizeof *lcs);
  ops = malloc((na + nb + 1) * sizeof *ops);
  if (!lcs || !ops)
    goto summary;
  /* lcs[i][j]: length of the LCS of a[i..] and b[j..] */
  for (i = na; i-- > 0;)
    for (j = nb; j-- > 0;)
      lcs[i * (nb + 1) + j] =
          same(&a[i], &b[j])
              ? lcs[(i + 1) * (nb + 1) + j + 1] + 1
              : (lcs[(i + 1) * (nb + 1) + j] > lcs[i * (nb + 1) + j + 1]
                     ? lcs[(i + 1) * (nb + 1) + j]
                     : lcs[i * (nb + 1) + j + 1]);
  i = j = 0;
  while (i < na || j < nb) {
    op_t o;
    o.ai = i;
    o.bi = j;
    if (i < na && j < nb && same(&a[i], &b[j])) {
      o.kind = ' ';
      i++;
      j++;
    } else if (i < na && (j == nb || lcs[(i + 1) * (nb + 1) + j] >=
                                         lcs[i * (nb + 1) + j + 1])) {
      o.kind = '-'; /* removals first, as diff -u writes them */
      i++;
    } else {
      o.kind = '+';
      j++;
    }
    ops[nops++] = o;
  }
  emit_hunks(ops, nops, a, b, out);
  goto done;
summary:
  vd_buf_addf(out, "@@ files differ (%zu and %zu bytes; too large to diff) @@\n",
              alen, blen);
done:
  free(a);
  free(b);
  free(lcs);
  free(ops);
  return 1;
}

int vd_text_diff_bundles(const vd_bundle_t *a, const vd_bundle_t *b,
                         vd_buf_t *out) {
  size_t i = 0, j = 0, na_ = vd_bundle_count(a), nb_ = vd_bundle_count(b);
  int differ = 0;
  while (i < na_ || j < nb_) {
    const vd_bundle_file_t *fa = i < na_ ? vd_bundle_file(a, i) : NULL;
    const vd_bundle_file_t *fb = j < nb_ ? vd_bundle_file(b, j) : NULL;
    int c = !fa ? 1 : !fb ? -1 : strcmp(fa->path, fb->path);
    vd_buf_t na = VD_BUF_INIT, nb = VD_BUF_INIT;
    vd_buf_addf(&na, "a/%s", c <= 0 ? fa->path : fb->path);
    vd_buf_addf(&nb, "b/%s", c >= 0 ? fb->path : fa->path);
    differ |= vd_text_diff(c <= 0 ? na.data : "/dev/null",
                           c <= 0 ? fa->data : "", c <= 0 ? fa->len : 0,
                           c >= 0 ? nb.data : "/dev/null",
                           c >= 0 ? fb->data : "", c >= 0 ? fb->len : 0, out);
    vd_buf_release(&na);
    vd_buf_release(&nb);
    if (c <= 0)
      i++;
    if (c >= 0)
      j++;
  }
  return differ;
}
