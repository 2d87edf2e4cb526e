/*
 * http.c - HTTP/1.1 framing of a worker's connection (verdictd --http).
 *
 * Owns one vd_http_t per HTTP connection: the http-parser state and the
 * request being read (its target, the headers verdictd reads, its body).
 * Bytes go in with vd_http_feed(); each complete request comes out
 * through the on_request callback, in the order the client sent them
 * (pipelining), while vd_http_feed() runs.  What to answer, and when, is
 * the worker's (worker.c): a decision over HTTP takes the socket's path.
 * vd_http_write() frames an answer.
 *
 * Limits: the request line and headers together at most
 * VD_HTTP_MAX_HEADER bytes (431), a body at most max_body bytes (413,
 * counted as it arrives, chunked or not); both close the connection after
 * the answer, as does a request http-parser refuses (400).  The worker
 * enforces the time limits (VD_HTTP_REQUEST_MS, VD_HTTP_IDLE_MS).
 *
 * Runs on the worker thread that owns the connection; no state shared.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "daemon_int.h"
#include "verdict/timefmt.h"

/* Which header the parser is in the middle of. */
enum { H_NONE, H_AUTH, H_IDEM, H_EXPECT, H_COOKIE };

static int http_of(http_parser *p, vd_http_t **h) {
  *h = p->data;
  return 0;
}

static int fail(vd_http_t *h, int status, int code, const char *msg) {
  h->error_status = status;
  h->error_code = code;
  h->error_msg = msg;
  /* any other value than 0 stops http_parser_execute() with an error;
   * on_headers_complete's 1 would only mean "no body" */
  return -1;
}

static int count_header(vd_http_t *h, size_t n) {
  h->header_bytes += n;
  if (h->header_bytes > VD_HTTP_MAX_HEADER)
    return fail(h, 431, VD_ETOO_LARGE,
                "the request line and headers pass 16384 bytes");
  return 0;
}

static int on_message_begin(http_parser *p) {
  vd_http_t *h;
  http_of(p, &h);
  vd_buf_reset(&h->req.target);
  vd_buf_reset(&h->req.body);
  vd_buf_reset(&h->req.auth);
  vd_buf_reset(&h->req.idem);
  vd_buf_reset(&h->req.cookie);
  h->req.expect_continue = 0;
  h->header_bytes = 0;
  h->which = H_NONE;
  h->name_len = 0;
  h->in_value = 0;
  h->expect_len = 0;
  h->in_message = 1;
  h->started_ms = vd_now_ms();
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  vd_http_t *h;
  http_of(p, &h);
  if (count_header(h, n))
    return -1;
  vd_buf_add(&h->req.target, at, n);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  vd_http_t *h;
  http_of(p, &h);
  if (count_header(h, n))
    return -1;
  /* a name comes in pieces where a read ends inside it: gather them
   * (the names verdictd reads are short; a longer one is none of them) */
  if (h->in_value) {
    h->in_value = 0;
    h->name_len = 0;
  }
  if (h->name_len + n < sizeof h->name)
    memcpy(h->name + h->name_len, at, n);
  h->name_len += n;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  vd_http_t *h;
  http_of(p, &h);
  if (count_header(h, n))
    return -1;
  if (!h->in_value) { /* the first piece of the value: the name is whole */
    size_t k = h->name_len;
    h->in_value = 1;
    h->which = k == 13 && strncasecmp(h->name, "authorization", k) == 0 ? H_AUTH
               : k == 15 && strncasecmp(h->name, "idempotency-key", k) == 0
                   ? H_IDEM
               : k == 6 && strncasecmp(h->name, "expect", k) == 0 ? H_EXPECT
               : k == 6 && strncasecmp(h->name, "cookie", k) == 0 ? H_COOKIE
                                                                  : H_NONE;
  }
  switch (h->which) {
  case H_AUTH: vd_buf_add(&h->req.auth, at, n); break;
  case H_IDEM: vd_buf_add(&h->req.idem, at, n); break;
  case H_COOKIE: vd_buf_add(&h->req.cookie, at, n); break;
  case H_EXPECT:
    /* gathered like a name: "100-continue" may come in pieces */
    if (h->expect_len + n < sizeof h->expect)
      memcpy(h->expect + h->expect_len, at, n);
    h->expect_len += n;
    h->req.expect_continue =
        h->expect_len == 12 && strncasecmp(h->expect, "100-continue", 12) == 0;
    break;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  vd_http_t *h;
  http_of(p, &h);
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > h->max_body)
    return fail(h, 413, VD_ETOO_LARGE, NULL);
  h->req.method = (int)p->method;
  if (h->req.expect_continue && h->on_continue)
    h->on_continue(h->arg);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  vd_http_t *h;
  http_of(p, &h);
  if (h->req.body.len + n > h->max_body)
    return fail(h, 413, VD_ETOO_LARGE, NULL);
  vd_buf_add(&h->req.body, at, n);
  return 0;
}

static int on_message_complete(http_parser *p) {
  vd_http_t *h;
  http_of(p, &h);
  h->in_message = 0;
  h->req.keep_alive = http_should_keep_alive(p);
  h->nrequests++;
  switch (h->on_request(h->arg, &h->req)) {
  case 0:
    return 0;
  case VD_HTTP_PAUSE: /* vd_http_feed() keeps the bytes after this one */
    h->paused = 1;
    http_parser_pause(p, 1);
    return 0;
  default:
    h->stopped = 1;
    return 1;
  }
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void vd_http_init(vd_http_t *h, size_t max_body, vd_http_request_cb on_request,
                  void (*on_continue)(void *), void *arg) {
  memset(h, 0, sizeof *h);
  http_parser_init(&h->parser, HTTP_REQUEST);
  h->parser.data = h;
  h->max_body = max_body;
  h->on_request = on_request;
  h->on_continue = on_continue;
  h->arg = arg;
  vd_buf_init(&h->req.target);
  vd_buf_init(&h->req.body);
  vd_buf_init(&h->req.auth);
  vd_buf_init(&h->req.idem);
  vd_buf_init(&h->req.cookie);
  vd_buf_init(&h->rest);
}

void vd_http_release(vd_http_t *h) {
  vd_buf_release(&h->rest);
  vd_buf_release(&h->req.target);
  vd_buf_release(&h->req.body);
  vd_buf_release(&h->req.auth);
  vd_buf_release(&h->req.idem);
  vd_buf_release(&h->req.cookie);
}

int vd_http_feed(vd_http_t *h, const char *p, size_t n) {
  size_t done;
  if (h->stopped || h->error_status)
    return h->error_status ? h->error_status : -1;
  if (h->paused) { /* behind what waits already */
    vd_buf_add(&h->rest, p, n);
    return 0;
  }
  done = http_parser_execute(&h->parser, &settings, p, n);
  if (h->stopped)
    return -1;
  if (h->error_status)
    return h->error_status;
  if (h->paused) {
    vd_buf_add(&h->rest, p + done, n - done);
    return 0;
  }
  if (HTTP_PARSER_ERRNO(&h->parser) != HPE_OK || done != n) {
    enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
    h->error_status = 400;
    h->error_code = VD_EBAD_REQUEST;
    h->error_msg = e != HPE_OK ? http_errno_description(e)
                               : "bytes after the request";
    return 400;
  }
  return 0;
}

int vd_http_resume(vd_http_t *h) {
  vd_buf_t rest = h->rest;
  int rc;
  if (!h->paused)
    return 0;
  h->paused = 0;
  http_parser_pause(&h->parser, 0);
  vd_buf_init(&h->rest);
  rc = rest.len ? vd_http_feed(h, rest.data, rest.len) : 0;
  vd_buf_release(&rest);
  return rc;
}

size_t vd_http_held(const vd_http_t *h) {
  return h->rest.len + h->req.target.len + h->req.body.len + h->req.auth.len +
         h->req.idem.len;
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 303: return "See Other";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 422: return "Unprocessable Content";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* Every response, once per request: appended piece by piece rather than
 * through a printf, whose format parsing cost more than the rest of the
 * framing (3,400 instructions a response under callgrind). */
void vd_http_write(vd_buf_t *out, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len,
                   int keep_alive) {
  char num[24], *p = num + sizeof num;
  size_t n = len;
  vd_buf_adds(out, "HTTP/1.1 ");
  if (status >= 100 && status <= 999) {
    char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    vd_buf_add(out, code, sizeof code);
  } else {
    vd_buf_addf(out, "%d ", status);
  }
  vd_buf_adds(out, reason(status));
  vd_buf_adds(out, "\r\nContent-Type: ");
  vd_buf_adds(out, content_type);
  vd_buf_adds(out, "\r\nContent-Length: ");
  do
    *--p = (char)('0' + n % 10);
  while ((n /= 10) != 0);
  vd_buf_add(out, p, (size_t)(num + sizeof num - p));
  vd_buf_add(out, "\r\n", 2);
  if (!keep_alive)
    vd_buf_adds(out, "Connection: close\r\n");
  if (extra_headers)
    vd_buf_adds(out, extra_headers);
  vd_buf_add(out, "\r\n", 2);
  vd_buf_add(out, body, len);
}
