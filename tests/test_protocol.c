/*
 * test_protocol.c - unit tests for the wire: core/protocol.c (line framer,
 * response lines, host:port specs).
 *
 * Pure functions except where a response is decoded back with the JSON
 * decoder, in a plain Lua state.  Runs single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "verdict/buf.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/protocol.h"

/* ------------------------------------------------------------------------
 * Framer
 * ------------------------------------------------------------------------ */

/* Take the next line and compare it with WANT (NULL: expect no line). */
static void expect_line(vd_framer_t *f, const char *want) {
  const char *line = NULL;
  size_t len = 0;
  int r = vd_framer_next(f, &line, &len);
  if (!want) {
    assert_int_equal(r, 0);
    return;
  }
  if (r != 1)
    fail_msg("expected line \"%s\", vd_framer_next gave %d", want, r);
  assert_int_equal(len, strlen(want));
  assert_memory_equal(line, want, len);
}

static void feed(vd_framer_t *f, const char *s) {
  vd_framer_feed(f, s, strlen(s));
}

static void framer_partial_lines(void **state) {
  vd_framer_t f;
  (void)state;
  vd_framer_init(&f, 1024);
  expect_line(&f, NULL); /* nothing fed yet */
  feed(&f, "{\"a\"");
  expect_line(&f, NULL);
  assert_int_equal(vd_framer_pending(&f), 4);
  feed(&f, ":1}\n{\"b\"");
  expect_line(&f, "{\"a\":1}");
  expect_line(&f, NULL);
  assert_int_equal(vd_framer_pending(&f), 4);
  feed(&f, ":2");
  expect_line(&f, NULL);
  feed(&f, "}");
  expect_line(&f, NULL);
  feed(&f, "\n");
  expect_line(&f, "{\"b\":2}");
  expect_line(&f, NULL);
  assert_int_equal(vd_framer_pending(&f), 0);
  vd_framer_release(&f);
}

static void framer_several_lines_one_feed(void **state) {
  vd_framer_t f;
  (void)state;
  vd_framer_init(&f, 1024);
  feed(&f, "one\ntwo\nthree\nfour");
  expect_line(&f, "one");
  expect_line(&f, "two");
  expect_line(&f, "three");
  expect_line(&f, NULL);
  assert_int_equal(vd_framer_pending(&f), 4);
  feed(&f, "\n");
  expect_line(&f, "four");
  expect_line(&f, NULL);
  vd_framer_release(&f);
}

static void framer_crlf_and_empty(void **state) {
  vd_framer_t f;
  (void)state;
  vd_framer_init(&f, 1024);
  feed(&f, "abc\r\n\n\r\nx\ry\n");
  expect_line(&f, "abc");
  expect_line(&f, ""); /* empty lines are lines; the caller skips them */
  expect_line(&f, "");
  expect_line(&f, "x\ry"); /* a lone CR inside a line stays */
  expect_line(&f, NULL);
  /* CR and LF in separate feeds */
  feed(&f, "def\r");
  expect_line(&f, NULL);
  feed(&f, "\n");
  expect_line(&f, "def");
  vd_framer_release(&f);
}

static void framer_max_line(void **state) {
  vd_framer_t f;
  const char *line;
  size_t len;
  (void)state;
  /* exactly max_line bytes: a line */
  vd_framer_init(&f, 8);
  feed(&f, "12345678\n");
  expect_line(&f, "12345678");
  vd_framer_release(&f);
  /* one more: too large */
  vd_framer_init(&f, 8);
  feed(&f, "123456789\n");
  assert_int_equal(vd_framer_next(&f, &line, &len), -1);
  vd_framer_release(&f);
  /* max_line counts content: "\r\n" after exactly max_line bytes is a
   * line, whole or arriving in pieces; a ninth byte that is not "\r" is not */
  vd_framer_init(&f, 8);
  feed(&f, "12345678\r\n");
  expect_line(&f, "12345678");
  feed(&f, "12345678\r");
  assert_int_equal(vd_framer_next(&f, &line, &len), 0);
  feed(&f, "\n");
  expect_line(&f, "12345678");
  feed(&f, "12345678\r\r\n");
  assert_int_equal(vd_framer_next(&f, &line, &len), -1);
  vd_framer_release(&f);
  vd_framer_init(&f, 8);
  feed(&f, "123456789\r\n");
  assert_int_equal(vd_framer_next(&f, &line, &len), -1);
  vd_framer_release(&f);
  /* a good line before a long one is still delivered */
  vd_framer_init(&f, 8);
  feed(&f, "ok\n123456789\n");
  expect_line(&f, "ok");
  assert_int_equal(vd_framer_next(&f, &line, &len), -1);
  vd_framer_release(&f);
}

static void framer_long_line_without_newline(void **state) {
  vd_framer_t f;
  const char *line;
  size_t len;
  int i;
  (void)state;
  vd_framer_init(&f, 8);
  feed(&f, "12345678");
  assert_int_equal(vd_framer_next(&f, &line, &len), 0); /* may still end */
  feed(&f, "9");
  assert_int_equal(vd_framer_next(&f, &line, &len), -1); /* cannot */
  vd_framer_release(&f);
  /* byte by byte: -1 exactly when the pending line passes max_line */
  vd_framer_init(&f, 100);
  for (i = 1; i <= 100; i++) {
    vd_framer_feed(&f, "x", 1);
    assert_int_equal(vd_framer_next(&f, &line, &len), 0);
  }
  vd_framer_feed(&f, "x", 1);
  assert_int_equal(vd_framer_next(&f, &line, &len), -1);
  vd_framer_release(&f);
  /* the bound is on the pending line, not on all buffered bytes */
  vd_framer_init(&f, 8);
  feed(&f, "aaaa\nbbbb\ncccc\ndddd");
  expect_line(&f, "aaaa");
  expect_line(&f, "bbbb");
  expect_line(&f, "cccc");
  expect_line(&f, NULL);
  feed(&f, "\n");
  expect_line(&f, "dddd");
  vd_framer_release(&f);
}

/* Many lines through feeds of awkward sizes, with the buffer compacting
 * as it goes: every line comes out whole and in order. */
static void framer_stream(void **state) {
  vd_framer_t f;
  vd_buf_t all = VD_BUF_INIT;
  char want[64];
  size_t pos = 0, step = 0;
  int next = 0, i;
  (void)state;
  for (i = 0; i < 5000; i++)
    vd_buf_addf(&all, "{\"id\":%d,\"pad\":\"%.*s\"}%s", i, i % 23,
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxx", i % 3 ? "\n" : "\r\n");
  vd_framer_init(&f, 64);
  while (pos < all.len) {
    size_t n = 1 + (step++ * 7) % 97;
    const char *line;
    size_t len;
    int r;
    if (n > all.len - pos)
      n = all.len - pos;
    vd_framer_feed(&f, all.data + pos, n);
    pos += n;
    while ((r = vd_framer_next(&f, &line, &len)) == 1) {
      int w = snprintf(want, sizeof want, "{\"id\":%d,\"pad\":\"%.*s\"}", next,
                       next % 23, "xxxxxxxxxxxxxxxxxxxxxxxxxxxx");
      assert_int_equal(len, (size_t)w);
      assert_memory_equal(line, want, len);
      next++;
    }
    assert_int_equal(r, 0);
  }
  assert_int_equal(next, 5000);
  assert_int_equal(vd_framer_pending(&f), 0);
  /* and the buffer did not grow with the stream */
  assert_true(f.buf.cap < 4096);
  vd_framer_release(&f);
  vd_buf_release(&all);
}

/* ------------------------------------------------------------------------
 * Response lines
 * ------------------------------------------------------------------------ */

/* Decode a response line (minus its '\n') into a Lua value on L's stack. */
static void decode_line(lua_State *L, const vd_buf_t *line) {
  vd_buf_t err = VD_BUF_INIT;
  assert_true(line->len > 0);
  assert_int_equal(line->data[line->len - 1], '\n');
  assert_null(memchr(line->data, '\n', line->len - 1)); /* one line */
  if (vd_json_decode(L, line->data, line->len - 1, 0, &err) != 0)
    fail_msg("response is not JSON: %s\n  %s", err.data, line->data);
  assert_int_equal(vd_json_marker(L, -1), 2);
  vd_buf_release(&err);
}

static const char *field(lua_State *L, int idx, const char *path) {
  /* "error.code" style lookups; "" when absent, "null" for null, the type
   * name for tables; leaves nothing on the stack */
  static char out[256];
  char key[64];
  const char *p = path, *dot;
  int top = lua_gettop(L);
  lua_pushvalue(L, idx);
  while ((dot = strchr(p, '.')) != NULL) {
    snprintf(key, sizeof key, "%.*s", (int)(dot - p), p);
    lua_getfield(L, -1, key);
    p = dot + 1;
  }
  lua_getfield(L, -1, p);
  if (lua_isnil(L, -1))
    out[0] = '\0';
  else if (lua_touserdata(L, -1) == vd_json_null)
    snprintf(out, sizeof out, "null");
  else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
    snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
  else
    snprintf(out, sizeof out, "%s", luaL_typename(L, -1));
  lua_settop(L, top);
  return out;
}

static void response_error_line(void **state) {
  vd_buf_t out = VD_BUF_INIT;
  lua_State *L = luaL_newstate();
  (void)state;
  vd_json_setup(L);
  vd_response_error(&out, NULL, VD_EBAD_REQUEST, "bad thing", "input.x", NULL);
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"bad_request\","
                      "\"message\":\"bad thing\",\"path\":\"input.x\"}}\n");
  vd_buf_reset(&out);
  vd_response_error(&out, "\"r-1\"", VD_EPOLICY_TIMEOUT,
                    "national/x.lua: \"quoted\"\nnext", NULL,
                    "0190f3a4-0000-7000-8000-000000000000");
  assert_string_equal(out.data,
                      "{\"id\":\"r-1\",\"decision_id\":\"0190f3a4-0000-7000-"
                      "8000-000000000000\",\"error\":{\"code\":\"policy_"
                      "timeout\",\"message\":\"national/x.lua: \\\"quoted\\\""
                      "\\nnext\"}}\n");
  decode_line(L, &out);
  assert_string_equal(field(L, -1, "error.code"), "policy_timeout");
  assert_string_equal(field(L, -1, "error.message"),
                      "national/x.lua: \"quoted\"\nnext");
  assert_string_equal(field(L, -1, "error.path"), "");
  assert_string_equal(field(L, -1, "id"), "r-1");
  lua_pop(L, 1);
  /* no message: the code's description; empty path and id: omitted/null */
  vd_buf_reset(&out);
  vd_response_error(&out, "", VD_ETOO_LARGE, NULL, "", NULL);
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"too_large\","
                      "\"message\":\"the request line exceeds --max-line\"}}"
                      "\n");
  /* a message with bytes that are not UTF-8 still gives JSON */
  vd_buf_reset(&out);
  vd_response_error(&out, NULL, VD_EPOLICY_ERROR, "bad \xff byte", "p\xc3",
                    NULL);
  decode_line(L, &out);
  assert_string_equal(field(L, -1, "error.message"), "bad \xef\xbf\xbd byte");
  lua_pop(L, 1);
  lua_close(L);
  vd_buf_release(&out);
}

static void fill_decision(vd_decision_t *d) {
  vd_decision_init(d);
  vd_decision_reset(d);
  vd_buf_reset(&d->id);
  vd_buf_adds(&d->id, "{\"n\":1}");
  snprintf(d->kind, sizeof d->kind, "compensation");
  snprintf(d->region, sizeof d->region, "GD-SZ");
  snprintf(d->policy_region, sizeof d->policy_region, "GD");
  snprintf(d->at, sizeof d->at, "2026-11-23T10:00:00+08:00");
  vd_buf_adds(&d->result, "{\"offer_fen\":6000,\"ratio\":0.5}");
  vd_buf_adds(&d->trace, "[{\"basis\":\"b\",\"rule\":\"r\"}]");
  d->elapsed_ns = 12345678;
}

static void response_decision_line(void **state) {
  vd_decision_t d;
  vd_buf_t out = VD_BUF_INIT;
  lua_State *L = luaL_newstate();
  static const char *const order[] = {
      "{\"id\":", ",\"decision_id\":", ",\"kind\":", ",\"region\":",
      ",\"policy_region\":", ",\"revision\":", ",\"at\":", ",\"result\":",
      ",\"trace\":", ",\"elapsed_us\":", NULL};
  const char *const *o;
  const char *prev;
  (void)state;
  vd_json_setup(L);
  fill_decision(&d);
  vd_response_write(&out, &d, "0190f3a4-0000-7000-8000-000000000001",
                    "sha256:abc");
  assert_string_equal(
      out.data,
      "{\"id\":{\"n\":1},\"decision_id\":\"0190f3a4-0000-7000-8000-"
      "000000000001\",\"kind\":\"compensation\",\"region\":\"GD-SZ\","
      "\"policy_region\":\"GD\",\"revision\":\"sha256:abc\",\"at\":"
      "\"2026-11-23T10:00:00+08:00\",\"result\":{\"offer_fen\":6000,"
      "\"ratio\":0.5},\"trace\":[{\"basis\":\"b\",\"rule\":\"r\"}],"
      "\"elapsed_us\":12345}\n");
  /* fields in the documented order */
  for (o = order, prev = out.data; *o; o++) {
    const char *at = strstr(out.data, *o);
    assert_non_null(at);
    assert_true(at >= prev);
    prev = at;
  }
  decode_line(L, &out);
  assert_string_equal(field(L, -1, "result.offer_fen"), "6000");
  assert_string_equal(field(L, -1, "trace"), "table");
  assert_string_equal(field(L, -1, "id.n"), "1");
  assert_string_equal(field(L, -1, "elapsed_us"), "12345");
  lua_pop(L, 1);
  /* no decision id: the field is left out */
  vd_buf_reset(&out);
  vd_response_write(&out, &d, NULL, "sha256:abc");
  assert_null(strstr(out.data, "decision_id"));
  assert_true(strncmp(out.data, "{\"id\":{\"n\":1},\"kind\":", 20) == 0);
  /* an error decision writes an error line */
  d.code = VD_EBAD_INPUT;
  vd_buf_adds(&d.message, "expected fen");
  vd_buf_adds(&d.path, "input.due_fen");
  vd_buf_reset(&out);
  vd_response_write(&out, &d, "u", "sha256:abc");
  assert_string_equal(out.data,
                      "{\"id\":{\"n\":1},\"decision_id\":\"u\",\"error\":{"
                      "\"code\":\"bad_input\",\"message\":\"expected fen\","
                      "\"path\":\"input.due_fen\"}}\n");
  vd_decision_release(&d);
  /* a new decision with only an error code: the code's description */
  vd_decision_init(&d);
  vd_decision_reset(&d);
  d.code = VD_EINTERNAL;
  vd_buf_reset(&out);
  vd_response_write(&out, &d, NULL, "r");
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"internal\","
                      "\"message\":\"the daemon failed; the request was not "
                      "decided\"}}\n");
  vd_decision_release(&d);
  lua_close(L);
  vd_buf_release(&out);
}

/* A real decision from the engine, written and read back. */
static void response_from_engine(void **state) {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_decision_t d;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  lua_State *L = luaL_newstate();
  static const char req[] =
      "{\"id\":42,\"kind\":\"compensation\",\"region\":\"GD-SZ\",\"at\":"
      "\"2026-11-23T10:00:00+08:00\",\"input\":{\"charged_fen\":5000,"
      "\"due_fen\":3000}}";
  (void)state;
  vd_json_setup(L);
  assert_int_equal(vd_bundle_load("tests/fixtures/mini", &b, &err), 0);
  assert_int_equal(vd_engine_new(b, NULL, &e, &err), 0);
  vd_decision_init(&d);
  assert_int_equal(vd_engine_decide(e, req, sizeof req - 1, 0, &d), 0);
  vd_response_write(&out, &d, "id-1", vd_bundle_revision(b));
  decode_line(L, &out);
  assert_string_equal(field(L, -1, "id"), "42");
  assert_string_equal(field(L, -1, "policy_region"), "GD");
  assert_string_equal(field(L, -1, "revision"), vd_bundle_revision(b));
  assert_string_equal(field(L, -1, "result.offer_fen"), "6000");
  assert_string_equal(field(L, -1, "result.nothing"), "null");
  assert_string_equal(field(L, -1, "result.absent"), "");
  lua_pop(L, 1);
  /* and an error from the engine */
  assert_int_equal(vd_engine_decide(e, "{\"id\":[1],\"kind\":1}",
                                    strlen("{\"id\":[1],\"kind\":1}"), 0, &d),
                   VD_EBAD_REQUEST);
  vd_buf_reset(&out);
  vd_response_write(&out, &d, NULL, vd_bundle_revision(b));
  decode_line(L, &out);
  assert_string_equal(field(L, -1, "error.code"), "bad_request");
  assert_string_equal(field(L, -1, "error.path"), "kind");
  assert_string_equal(field(L, -1, "id"), "table");
  lua_pop(L, 1);
  vd_decision_release(&d);
  vd_engine_free(e);
  vd_bundle_unref(b);
  lua_close(L);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

static void hostport_split(void **state) {
  char host[16];
  const char *port;
  (void)state;
  assert_int_equal(vd_hostport_split("127.0.0.1:7000", host, sizeof host, &port), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_string_equal(port, "7000");
  assert_int_equal(vd_hostport_split("[::1]:80", host, sizeof host, &port), 0);
  assert_string_equal(host, "::1");
  assert_string_equal(port, "80");
  assert_int_equal(vd_hostport_split("localhost", host, sizeof host, &port), -1);
  assert_int_equal(vd_hostport_split(":80", host, sizeof host, &port), -1);
  assert_int_equal(vd_hostport_split("h:", host, sizeof host, &port), -1);
  assert_int_equal(vd_hostport_split("[]:80", host, sizeof host, &port), -1);
  assert_int_equal(vd_hostport_split("[::1:80", host, sizeof host, &port), -1);
  assert_int_equal(vd_hostport_split("a-very-long-host-name:80", host,
                                     sizeof host, &port), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(framer_partial_lines),
      cmocka_unit_test(framer_several_lines_one_feed),
      cmocka_unit_test(framer_crlf_and_empty),
      cmocka_unit_test(framer_max_line),
      cmocka_unit_test(hostport_split),
      cmocka_unit_test(framer_long_line_without_newline),
      cmocka_unit_test(framer_stream),
      cmocka_unit_test(response_error_line),
      cmocka_unit_test(response_decision_line),
      cmocka_unit_test(response_from_engine),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
