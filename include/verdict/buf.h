/*
 * buf.h - a growable byte buffer, in the manner of git's strbuf.
 *
 * Invariants: after vd_buf_init() (which does not allocate) `data` is either
 * NULL with len == cap == 0, or points to `cap` bytes of which the first
 * `len` are used and data[len] == '\0' (there is always room for the NUL),
 * so `data` can be handed to C string functions when the contents are text.
 *
 * Ownership: the buffer owns `data`.  vd_buf_release() frees it and leaves
 * an initialised empty buffer; vd_buf_detach() hands it to the caller.
 *
 * Allocation failure aborts the process through vd_buf_oom(): a buffer that
 * cannot grow has no sensible partial state to return to.  Buffers are not
 * thread-safe; each belongs to one thread at a time.
 */
#ifndef VERDICT_BUF_H
#define VERDICT_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

typedef struct vd_buf {
  char *data;   /* contents, NUL-terminated when non-NULL */
  size_t len;   /* bytes used, not counting the NUL */
  size_t cap;   /* bytes allocated */
} vd_buf_t;

#define VD_BUF_INIT { NULL, 0, 0 }

void vd_buf_init(vd_buf_t *b);
void vd_buf_release(vd_buf_t *b);
/* Make room for `extra` more bytes (plus the NUL).  Inline: the encoders
 * call it for every piece they add, and it almost always has room. */
void vd_buf_grow_slow(vd_buf_t *b, size_t extra);
static inline void vd_buf_grow(vd_buf_t *b, size_t extra) {
  if (extra >= b->cap - b->len) /* cap 0: always */
    vd_buf_grow_slow(b, extra);
}
/* Inline: a response line is some sixty of these, most of a few bytes
 * (a constant string's length is then known where it is called; a short
 * one's bytes are copied here, by loads that stay inside them, rather
 * than by a call). */
static inline void vd_buf_add(vd_buf_t *b, const void *p, size_t n) {
  const char *s = p;
  char *d;
  vd_buf_grow(b, n);
  d = b->data + b->len;
  if (n > 16) {
    memcpy(d, s, n);
  } else if (n >= 8) { /* the first 8 and the last 8, overlapping */
    char t[8], u[8];
    memcpy(t, s, 8);
    memcpy(u, s + n - 8, 8);
    memcpy(d, t, 8);
    memcpy(d + n - 8, u, 8);
  } else if (n >= 4) {
    char t[4], u[4];
    memcpy(t, s, 4);
    memcpy(u, s + n - 4, 4);
    memcpy(d, t, 4);
    memcpy(d + n - 4, u, 4);
  } else if (n) {
    char x = s[0], y = s[n / 2], z = s[n - 1];
    d[0] = x;
    d[n / 2] = y;
    d[n - 1] = z;
  }
  b->len += n;
  b->data[b->len] = '\0';
}
static inline void vd_buf_adds(vd_buf_t *b, const char *s) {
  vd_buf_add(b, s, strlen(s));
}
static inline void vd_buf_addc(vd_buf_t *b, char c) {
  vd_buf_grow(b, 1);
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
}
/* Append the decimal text of v (no printf on the hot path). */
void vd_buf_add_int(vd_buf_t *b, long long v);
void vd_buf_addf(vd_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void vd_buf_vaddf(vd_buf_t *b, const char *fmt, va_list ap);
/* Append S as a JSON string literal, quotes included.  Bytes that are not
 * valid UTF-8 are replaced by U+FFFD so the output is always valid JSON;
 * returns how many were replaced (0 for valid UTF-8). */
size_t vd_buf_add_json_str(vd_buf_t *b, const char *s, size_t n);
/* 1 if [s, s+n) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF), else 0. */
int vd_utf8_valid(const char *s, size_t n);
/* Empty the buffer, keeping its allocation. */
void vd_buf_reset(vd_buf_t *b);
/* Drop the first n bytes, moving the rest to the front. */
void vd_buf_consume(vd_buf_t *b, size_t n);
/* Give the contents to the caller (free() them); the buffer becomes empty. */
char *vd_buf_detach(vd_buf_t *b, size_t *len);

#endif
