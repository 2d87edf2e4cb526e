/*
 * hp_hello.c - the other half of the HTTP library evaluation (see
 * h2o_hello.c): the same fixed answer from http-parser under our own
 * libuv connection code, as verdictd's workers do it (one parser per
 * connection, answers appended to one output buffer per read, written
 * with uv_try_write).  Build and run: bench/http-eval/run.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>
#include <uv.h>

typedef struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  char out[65536];
  size_t nout;
} conn_t;

static http_parser_settings settings;
static char readbuf[65536];

static int on_message_complete(http_parser *p) {
  static const char resp[] = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 12\r\n\r\n{\"ok\":true}\n";
  conn_t *c = p->data;
  if (c->nout + sizeof resp - 1 <= sizeof c->out) {
    memcpy(c->out + c->nout, resp, sizeof resp - 1);
    c->nout += sizeof resp - 1;
  }
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  (void)n;
  *b = uv_buf_init(readbuf, sizeof readbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn_t *c = s->data;
  uv_buf_t w;
  if (n < 0) {
    uv_close((uv_handle_t *)s, (uv_close_cb)free);
    return;
  }
  if (http_parser_execute(&c->parser, &settings, b->base, (size_t)n) !=
      (size_t)n) {
    uv_close((uv_handle_t *)s, (uv_close_cb)free);
    return;
  }
  w = uv_buf_init(c->out, (unsigned)c->nout);
  if (c->nout)
    uv_try_write(s, &w, 1); /* an evaluation: small answers fit */
  c->nout = 0;
}

static void on_connection(uv_stream_t *listener, int status) {
  conn_t *c;
  if (status != 0)
    return;
  c = calloc(1, sizeof *c);
  uv_tcp_init(listener->loop, &c->tcp);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->tcp.data = c;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  static uv_tcp_t listener;
  struct sockaddr_in sa;
  uv_loop_t *loop = uv_default_loop();
  settings.on_message_complete = on_message_complete;
  uv_tcp_init(loop, &listener);
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 8302, &sa);
  if (uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)&listener, 128, on_connection) != 0)
    return 1;
  return uv_run(loop, UV_RUN_DEFAULT);
}
