/*
 * fuzz_http.c - libFuzzer target: verdictd's HTTP framing (vd_http_*,
 * core/daemon/http.c, over http-parser).
 *
 * Input: one byte that seeds the sizes of the feeds, then the stream.
 * The stream is parsed twice: in one piece, and in feeds of 1..64 bytes
 * with every other request answered later (VD_HTTP_PAUSE, then
 * vd_http_resume() before the next feed), as an admin request is.  Both
 * must see the same requests (method, target, body, Authorization,
 * Idempotency-Key, keep-alive), in order, and end the same way (0, or the
 * same refusal status); no body passes max_body, no request line and
 * headers pass VD_HTTP_MAX_HEADER.
 */
#include <string.h>

#include "../../core/daemon/daemon_int.h"
#include "fuzz_util.h"

#define MAX_BODY 512

/* What one parse saw: every request, serialised. */
typedef struct {
  vd_buf_t log;
  unsigned n;
  int pause_odd;
} seen_t;

static int on_request(void *arg, vd_http_req_t *req) {
  seen_t *s = arg;
  FUZZ_CHECK(req->body.len <= MAX_BODY);
  FUZZ_CHECK(req->target.len <= VD_HTTP_MAX_HEADER);
  vd_buf_addf(&s->log, "%d %d %zu:", req->method, req->keep_alive,
              req->target.len);
  vd_buf_add(&s->log, req->target.data, req->target.len);
  vd_buf_addf(&s->log, " %zu:", req->body.len);
  vd_buf_add(&s->log, req->body.data, req->body.len);
  vd_buf_addf(&s->log, " %zu:", req->auth.len);
  vd_buf_add(&s->log, req->auth.data, req->auth.len);
  vd_buf_addf(&s->log, " %zu:", req->idem.len);
  vd_buf_add(&s->log, req->idem.data, req->idem.len);
  vd_buf_addc(&s->log, '\n');
  s->n++;
  return s->pause_odd && (s->n & 1) ? VD_HTTP_PAUSE : 0;
}

/* The status the parse ended with: 0 (all taken), or a refusal. */
static int parse(const uint8_t *p, size_t n, unsigned seed, int chunked,
                 seen_t *s) {
  vd_http_t h;
  size_t pos = 0;
  int rc = 0;
  vd_http_init(&h, MAX_BODY, on_request, NULL, s);
  s->pause_odd = chunked;
  while (pos < n && rc == 0) {
    size_t k = chunked ? 1 + (seed = seed * 1103515245u + 12345u) % 64 : n;
    if (k > n - pos)
      k = n - pos;
    rc = vd_http_feed(&h, (const char *)p + pos, k);
    pos += k;
    while (rc == 0 && h.paused)
      rc = vd_http_resume(&h);
  }
  vd_http_release(&h);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  seen_t whole, pieces;
  int a, b;
  if (size < 1)
    return 0;
  memset(&whole, 0, sizeof whole);
  memset(&pieces, 0, sizeof pieces);
  vd_buf_init(&whole.log);
  vd_buf_init(&pieces.log);
  a = parse(data + 1, size - 1, data[0], 0, &whole);
  b = parse(data + 1, size - 1, data[0], 1, &pieces);
  FUZZ_CHECK(a == b);
  FUZZ_CHECK(whole.n == pieces.n);
  FUZZ_CHECK(whole.log.len == pieces.log.len);
  FUZZ_CHECK(whole.log.len == 0 ||
             memcmp(whole.log.data, pieces.log.data, whole.log.len) == 0);
  vd_buf_release(&whole.log);
  vd_buf_release(&pieces.log);
  return 0;
}
