/*
 * h2o_hello.c - the HTTP library evaluation of docs/protocol.md ("Why
 * http-parser"): the smallest libh2o (libuv build) server that answers
 * every request with a fixed JSON body, on one uv loop that a connection
 * is handed to as verdictd's workers are handed theirs (uv_tcp_open of an
 * accepted descriptor).  Build and run: bench/http-eval/run.
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <h2o.h>
#include <uv.h>

static h2o_globalconf_t config;
static h2o_context_t ctx;
static h2o_accept_ctx_t accept_ctx;

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
  static h2o_generator_t gen = {NULL, NULL};
  static h2o_iovec_t body = {"{\"ok\":true}\n", 12};
  (void)self;
  req->res.status = 200;
  req->res.reason = "OK";
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 H2O_STRLIT("application/json"));
  h2o_start_response(req, &gen);
  h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
  return 0;
}

static void on_connection(uv_stream_t *listener, int status) {
  uv_tcp_t *conn;
  h2o_socket_t *sock;
  if (status != 0)
    return;
  conn = h2o_mem_alloc(sizeof *conn);
  uv_tcp_init(listener->loop, conn);
  if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
    uv_close((uv_handle_t *)conn, (uv_close_cb)free);
    return;
  }
  uv_tcp_nodelay(conn, 1);
  sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
  h2o_accept(&accept_ctx, sock);
}

int main(int argc, char **argv) {
  static uv_loop_t loop;
  static uv_tcp_t listener;
  struct sockaddr_in sa;
  h2o_hostconf_t *host;
  h2o_pathconf_t *path;
  h2o_handler_t *handler;
  h2o_config_init(&config);
  host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")),
                                  65535);
  path = h2o_config_register_path(host, "/", 0);
  handler = h2o_create_handler(path, sizeof *handler);
  handler->on_req = on_req;
  uv_loop_init(&loop);
  h2o_context_init(&ctx, &loop, &config);
  accept_ctx.ctx = &ctx;
  accept_ctx.hosts = config.hosts;
  uv_tcp_init(&loop, &listener);
  uv_ip4_addr("127.0.0.1", argc > 1 ? atoi(argv[1]) : 8301, &sa);
  if (uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)&listener, 128, on_connection) != 0)
    return 1;
  return uv_run(&loop, UV_RUN_DEFAULT);
}
