/*
 * fuzz_framer.c - libFuzzer target: the line framer (vd_framer_*, wire.h).
 *
 * Input: two bytes of max_line (0..1023, little-endian), one byte that
 * seeds the sizes of the feeds, then the stream.  The stream goes to the
 * framer in feeds of 1..64 bytes; after each feed every line is taken,
 * as the daemon does, until 0 or -1.  A plain reference framer (a buffer,
 * memchr, no compaction and no scan cache) says what must come out: the
 * same lines, in order, and -1 exactly when a line's content, or the
 * pending bytes that cannot become a line of at most max_line, pass
 * max_line.  vd_framer_pending() must equal the reference's pending count.
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/wire.h"

/* The reference: the pending bytes, and what the framer must say next. */
typedef struct {
  vd_buf_t pend;
  size_t max_line;
} ref_t;

/* 1 with the line, 0 for none yet, -1 for too large. */
static int ref_next(ref_t *r, size_t *off, const char **line, size_t *len) {
  const char *base = r->pend.data + *off;
  size_t avail = r->pend.len - *off, n;
  const char *nl = avail ? memchr(base, '\n', avail) : NULL;
  if (!nl) {
    if (avail == r->max_line + 1 && base[avail - 1] == '\r')
      return 0; /* "\r" may be the start of "\r\n" */
    return avail > r->max_line ? -1 : 0;
  }
  n = (size_t)(nl - base);
  *line = base;
  *len = n && base[n - 1] == '\r' ? n - 1 : n;
  if (*len > r->max_line)
    return -1; /* not consumed: the caller closes */
  *off += n + 1;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vd_framer_t f;
  ref_t r;
  size_t pos = 3, off = 0;
  unsigned seed;
  int done = 0;
  if (size < 3)
    return 0;
  r.max_line = (size_t)(data[0] | data[1] << 8) % 1024;
  seed = data[2];
  vd_buf_init(&r.pend);
  vd_framer_init(&f, r.max_line);
  while (pos < size && !done) {
    size_t n;
    seed = seed * 1103515245u + 12345u;
    n = 1 + (seed >> 16) % 64;
    if (n > size - pos)
      n = size - pos;
    vd_framer_feed(&f, (const char *)data + pos, n);
    vd_buf_add(&r.pend, data + pos, n);
    pos += n;
    for (;;) {
      const char *line = NULL, *want = NULL;
      size_t len = 0, want_len = 0;
      int got = vd_framer_next(&f, &line, &len);
      int exp = ref_next(&r, &off, &want, &want_len);
      FUZZ_CHECK(got == exp);
      if (got == 1) {
        FUZZ_CHECK(len == want_len);
        FUZZ_CHECK(memcmp(line, want, len) == 0);
        FUZZ_CHECK(vd_framer_pending(&f) == r.pend.len - off);
        continue;
      }
      FUZZ_CHECK(vd_framer_pending(&f) == r.pend.len - off);
      done = got < 0; /* the caller answers too_large and closes */
      break;
    }
  }
  vd_framer_release(&f);
  vd_buf_release(&r.pend);
  return 0;
}
