/*
 * protocol.c - response lines and line framing (see protocol.h).
 * No state of its own; any thread.
 */
#include <string.h>

#include "verdict/error.h"
#include "verdict/protocol.h"

/* ,"key":"value" -- with plain appends: vfprintf was 6% of a decision. */
static void add_str(vd_buf_t *out, const char *key, const char *val) {
  vd_buf_add(out, ",\"", 2);
  vd_buf_adds(out, key);
  vd_buf_add(out, "\":", 2);
  vd_buf_add_json_str(out, val, strlen(val));
}


void vd_response_error(vd_buf_t *out, const char *id_json, int code,
                       const char *message, const char *path,
                       const char *decision_id) {
  vd_buf_adds(out, "{\"id\":");
  vd_buf_adds(out, id_json && *id_json ? id_json : "null");
  if (decision_id)
    add_str(out, "decision_id", decision_id);
  vd_buf_adds(out, ",\"error\":{\"code\":");
  vd_buf_add_json_str(out, vd_err_name(code), strlen(vd_err_name(code)));
  add_str(out, "message", message ? message : vd_err_desc(code));
  if (path && *path)
    add_str(out, "path", path);
  vd_buf_adds(out, "}}\n");
}

void vd_response_write(vd_buf_t *out, const vd_decision_t *d,
                       const char *decision_id, const char *revision) {
  if (d->code) {
    vd_response_error(out, d->id.data, d->code, d->message.data,
                      d->path.data, decision_id);
    return;
  }
  vd_buf_adds(out, "{\"id\":");
  vd_buf_add(out, d->id.data, d->id.len);
  if (decision_id)
    add_str(out, "decision_id", decision_id);
  add_str(out, "kind", d->kind);
  add_str(out, "region", d->region);
  add_str(out, "policy_region", d->policy_region);
  add_str(out, "revision", revision);
  add_str(out, "at", d->at);
  vd_buf_adds(out, ",\"result\":");
  vd_buf_add(out, d->result.data, d->result.len);
  vd_buf_adds(out, ",\"trace\":");
  vd_buf_add(out, d->trace.data, d->trace.len);
  vd_buf_adds(out, ",\"elapsed_us\":");
  vd_buf_add_int(out, (long long)(d->elapsed_ns / 1000));
  vd_buf_add(out, "}\n", 2);
}

void vd_framer_init(vd_framer_t *f, size_t max_line) {
  vd_buf_init(&f->buf);
  f->start = 0;
  f->scanned = 0;
  f->max_line = max_line;
}

void vd_framer_release(vd_framer_t *f) { vd_buf_release(&f->buf); }

void vd_framer_feed(vd_framer_t *f, const char *p, size_t n) {
  if (f->start > 0 && (f->start == f->buf.len || f->start > f->buf.cap / 2)) {
    vd_buf_consume(&f->buf, f->start);
    f->start = 0;
  }
  vd_buf_add(&f->buf, p, n);
}

int vd_framer_next(vd_framer_t *f, const char **line, size_t *len) {
  char *base = f->buf.data + f->start;
  size_t avail = f->buf.len - f->start;
  char *nl;
  if (avail == 0)
    return 0;
  nl = memchr(base + f->scanned, '\n', avail - f->scanned);
  if (!nl) {
    f->scanned = avail;
    /* max_line counts the line's content: a '\r' that may be the first
     * half of "\r\n" is not content yet */
    if (avail == f->max_line + 1 && base[avail - 1] == '\r')
      return 0;
    return avail > f->max_line ? -1 : 0;
  }
  *len = (size_t)(nl - base);
  if (*len && base[*len - 1] == '\r')
    (*len)--;
  if (*len > f->max_line)
    return -1;
  *line = base;
  f->start += (size_t)(nl - base) + 1;
  f->scanned = 0;
  return 1;
}

size_t vd_framer_pending(const vd_framer_t *f) {
  return f->buf.len - f->start;
}

int vd_hostport_split(const char *spec, char *host, size_t cap,
                      const char **port) {
  const char *colon = strrchr(spec, ':'), *h = spec;
  size_t n;
  if (!colon || !colon[1])
    return -1;
  if (spec[0] == '[') { /* [::1]:7000 */
    if (colon < spec + 2 || colon[-1] != ']')
      return -1;
    h = spec + 1;
    n = (size_t)(colon - 1 - h);
  } else {
    n = (size_t)(colon - h);
  }
  if (n == 0 || n >= cap)
    return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  *port = colon + 1;
  return 0;
}
