/*
 * buf.c - growable byte buffers (see include/verdict/buf.h).
 *
 * No global state; a buffer belongs to one thread at a time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verdict/buf.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static void vd_buf_oom(size_t want) {
  fprintf(stderr, "verdict: out of memory growing a buffer to %zu bytes\n",
          want);
  abort();
}

void vd_buf_init(vd_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void vd_buf_release(vd_buf_t *b) {
  free(b->data);
  vd_buf_init(b);
}

/* vd_buf_grow() when there is no room (buf.h). */
void vd_buf_grow_slow(vd_buf_t *b, size_t extra) {
  size_t want, cap;
  char *p;
  if (extra >= SIZE_MAX - b->len) /* len + extra + 1 would wrap */
    vd_buf_oom(SIZE_MAX);
  want = b->len + extra + 1;
  if (want <= b->cap)
    return;
  cap = b->cap ? b->cap : 64;
  while (cap < want)
    cap = cap * 2 > cap ? cap * 2 : want;
  p = realloc(b->data, cap);
  if (!p)
    vd_buf_oom(cap);
  b->data = p;
  b->cap = cap;
}

/* Two digits at a time from a table, then the digits copied as one
 * fixed-size block (room for it made first; only the digits count). */
void vd_buf_add_int(vd_buf_t *b, long long v) {
  static const char pairs[] =
      "00010203040506070809101112131415161718192021222324252627282930313233"
      "34353637383940414243444546474849505152535455565758596061626364656667"
      "6869707172737475767778798081828384858687888990919293949596979899";
  char tmp[48]; /* the text in tmp[i, 24); tmp[24, 48) only copied over */
  int i = 24;
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  while (u >= 100) {
    unsigned r = (unsigned)(u % 100);
    u /= 100;
    i -= 2;
    memcpy(tmp + i, pairs + 2 * r, 2);
  }
  if (u >= 10) {
    i -= 2;
    memcpy(tmp + i, pairs + 2 * u, 2);
  } else {
    tmp[--i] = (char)('0' + u);
  }
  if (v < 0)
    tmp[--i] = '-';
  memset(tmp + 24, 0, 24);
  vd_buf_grow(b, 24);
  memcpy(b->data + b->len, tmp + i, 24);
  b->len += (size_t)(24 - i);
  b->data[b->len] = '\0';
}

void vd_buf_vaddf(vd_buf_t *b, const char *fmt, va_list ap) {
  va_list cp;
  int n;
  vd_buf_grow(b, 64);
  va_copy(cp, ap);
  n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, cp);
  va_end(cp);
  if (n < 0)
    return;
  if ((size_t)n >= b->cap - b->len) {
    vd_buf_grow(b, (size_t)n);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  }
  b->len += (size_t)n;
}

void vd_buf_addf(vd_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vd_buf_vaddf(b, fmt, ap);
  va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t need, i;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  for (i = 1; i < need; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return need;
}

int vd_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, k;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    k = utf8_len(s + i, n - i);
    if (k == 0)
      return 0;
    i += k;
  }
  return 1;
}

/* Whether any of the 8 bytes in w is a control byte, '"', '\\' or not
 * ASCII: the classic "has a byte less than n" and "has a zero byte" word
 * tests (exact as yes/no answers for the whole word). */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static int word_needs_care(uint64_t w) {
  uint64_t q = w ^ (ONES * '"'), bs = w ^ (ONES * '\\');
  return (((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((bs - ONES) & ~bs) |
          w) & HIGHS ? 1 : 0;
}

/* vd_buf_add_json_str() from byte i on, its opening quote and s[0, i)
 * (plain) already added: the general loop, which escapes. */
static size_t json_str_rest(vd_buf_t *b, const unsigned char *s, size_t n,
                            size_t i) {
  static const char hex[] = "0123456789abcdef";
  size_t start = i, bad = 0;
  /* Copy runs of bytes that need no escaping (valid UTF-8 included) in one
   * go; stop only at a quote, a backslash, a control byte or a byte that
   * is not UTF-8.  Plain ASCII is skipped a word at a time. */
  while (i < n) {
    unsigned char c;
    size_t k;
    if (n - i >= 8) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!word_needs_care(w)) {
        i += 8;
        continue;
      }
    } else if (n >= 8) { /* the tail: the last 8 bytes, overlapping */
      uint64_t w;
      memcpy(&w, s + n - 8, 8);
      if (!word_needs_care(w)) {
        i = n;
        break;
      }
    }
    c = s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0x80 && (k = utf8_len(s + i, n - i)) > 0) {
      i += k;
      continue;
    }
    vd_buf_add(b, s + start, i - start);
    if (c >= 0x80) {
      vd_buf_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD for a byte not UTF-8 */
      bad++;
    } else {
      char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
      switch (c) {
      case '"': vd_buf_add(b, "\\\"", 2); break;
      case '\\': vd_buf_add(b, "\\\\", 2); break;
      case '\n': vd_buf_add(b, "\\n", 2); break;
      case '\r': vd_buf_add(b, "\\r", 2); break;
      case '\t': vd_buf_add(b, "\\t", 2); break;
      default: vd_buf_add(b, esc, 6); break;
      }
    }
    i++;
    start = i;
  }
  vd_buf_add(b, s + start, i - start);
  vd_buf_addc(b, '"');
  return bad;
}

/* A string that needs no escaping (plain ASCII, no quote, backslash or
 * control byte: most keys, ids, times and revisions) is checked and
 * copied in one pass, a word at a time, into room made once; at the
 * first byte that needs care the rest goes to json_str_rest(). */
size_t vd_buf_add_json_str(vd_buf_t *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  char *o;
  size_t i = 0;
  vd_buf_grow(b, n + 2);
  o = b->data + b->len + 1; /* the string's first byte */
  o[-1] = '"';
#if defined(__SSE2__)
  /* 16 bytes at a time: a byte below 0x20 as a signed byte is a control
   * byte or one above ASCII; then the quote and the backslash */
  if (n >= 16) {
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                  bslash = _mm_set1_epi8('\\');
    __m128i v;
    for (;;) {
      int last = n - i < 16;
      if (last)
        i = n - 16; /* the tail: the last 16 bytes, overlapping */
      v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
      if (_mm_movemask_epi8(_mm_or_si128(
              _mm_cmplt_epi8(v, space),
              _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                           _mm_cmpeq_epi8(v, bslash)))))
        goto rest;
      _mm_storeu_si128((__m128i *)(void *)(o + i), v);
      i += 16;
      if (last || i == n)
        goto done;
    }
  }
#endif
  while (n - i >= 8) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if (word_needs_care(w))
      goto rest;
    memcpy(o + i, &w, 8);
    i += 8;
  }
  if (n >= 8) { /* the tail: the last 8 bytes, overlapping */
    uint64_t w;
    memcpy(&w, s + n - 8, 8);
    if (word_needs_care(w))
      goto rest;
    memcpy(o + n - 8, &w, 8);
  } else {
    for (; i < n; i++) {
      unsigned char c = s[i];
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
        goto rest;
      o[i] = (char)c;
    }
  }
#if defined(__SSE2__)
done:
#endif
  o[n] = '"';
  b->len += n + 2;
  b->data[b->len] = '\0';
  return 0;
rest: /* s[0, i) are plain and in place */
  b->len += i + 1;
  return json_str_rest(b, s, n, i);
}

void vd_buf_reset(vd_buf_t *b) {
  b->len = 0;
  if (b->data)
    b->data[0] = '\0';
}

void vd_buf_consume(vd_buf_t *b, size_t n) {
  if (n >= b->len) {
    vd_buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *vd_buf_detach(vd_buf_t *b, size_t *len) {
  char *p = b->data;
  if (len)
    *len = b->len;
  if (!p) {
    p = malloc(1);
    if (!p)
      vd_buf_oom(1);
    p[0] = '\0';
  }
  vd_buf_init(b);
  return p;
}
