/*
 * test_wire.c - unit tests for the wire: core/wire.c (line framer, request
 * readers, response lines, host:port specs).
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
#include "verdict/sandbox.h"
#include "verdict/wire.h"

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
 * Request readers
 * ------------------------------------------------------------------------ */

/* A Lua state with the JSON markers, as the engine's sandbox has them. */
static lua_State *json_state(void) {
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  vd_json_setup(L);
  return L;
}

/* Decode LINE and read it as a decision-socket request into d. */
static int read_request(lua_State *L, const char *line, int64_t now_ms,
                        vd_decision_t *d) {
  vd_buf_t err = VD_BUF_INIT;
  int top = lua_gettop(L), rc;
  vd_decision_reset(d);
  if (vd_json_decode(L, line, strlen(line), 0, &err) != 0)
    fail_msg("test request is not JSON: %s\n  %s", err.data, line);
  rc = vd_wire_read_request(L, -1, now_ms, d);
  assert_int_equal(lua_gettop(L), top + 1); /* the request, and only it */
  lua_settop(L, top);
  vd_buf_release(&err);
  return rc;
}

#define REQ_INPUT ",\"input\":{}"

static void request_errors_name_their_field(void **state) {
  static const struct {
    const char *line;
    int code;
    const char *path; /* "" when the error names no field */
    const char *message_has;
  } cases[] = {
      {"[1]", VD_EBAD_REQUEST, "", "JSON object"},
      {"\"text\"", VD_EBAD_REQUEST, "", "JSON object"},
      {"{\"kind\":\"sla\",\"regoin\":\"GD\"}", VD_EBAD_REQUEST, "regoin",
       "unknown field 'regoin'"},
      {"{\"op\":7}", VD_EBAD_REQUEST, "op", "op must be"},
      {"{\"op\":\"" "0123456789012345678901234567890123" "\"}",
       VD_EBAD_REQUEST, "op", "short string"},
      {"{\"region\":\"GD\"" REQ_INPUT "}", VD_EBAD_REQUEST, "kind",
       "missing field 'kind'"},
      {"{\"kind\":[],\"region\":\"GD\"" REQ_INPUT "}", VD_EBAD_REQUEST,
       "kind", "kind must be a string"},
      {"{\"kind\":\"" "0123456789012345678901234567890123" "\"}",
       VD_EUNKNOWN_KIND, "kind", "kind must be a string"},
      {"{\"kind\":\"sla\"" REQ_INPUT "}", VD_EBAD_REQUEST, "region",
       "missing field 'region'"},
      {"{\"kind\":\"sla\",\"region\":1" REQ_INPUT "}", VD_EBAD_REQUEST,
       "region", "region must be a string"},
      {"{\"kind\":\"sla\",\"region\":\""
       "0123456789012345678901234567890123" "\"" REQ_INPUT "}",
       VD_EUNKNOWN_REGION, "region", "too long"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"at\":\"yesterday\"" REQ_INPUT
       "}", VD_EBAD_REQUEST, "at", "RFC 3339"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"at\":12" REQ_INPUT "}",
       VD_EBAD_REQUEST, "at", "RFC 3339"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"at\":\"2026-11-23T10:00:00\""
       REQ_INPUT "}", VD_EBAD_REQUEST, "at", "offset"},
      {"{\"kind\":\"sla\",\"region\":\"GD\"}", VD_EBAD_REQUEST, "input",
       "missing field 'input'"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"input\":[1]}", VD_EBAD_REQUEST,
       "input", "input must be a JSON object"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"input\":\"x\"}",
       VD_EBAD_REQUEST, "input", "input must be a JSON object"},
  };
  lua_State *L = json_state();
  vd_decision_t d;
  size_t i;
  (void)state;
  vd_decision_init(&d);
  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = read_request(L, cases[i].line, 0, &d);
    if (rc != cases[i].code || strcmp(d.path.data ? d.path.data : "",
                                      cases[i].path) != 0 ||
        !strstr(d.message.data, cases[i].message_has))
      fail_msg("%s\n  gave %s at \"%s\": %s", cases[i].line,
               vd_err_name(rc), d.path.data ? d.path.data : "",
               d.message.data);
    assert_int_equal(d.code, rc);
  }
  vd_decision_release(&d);
  lua_close(L);
}

static void request_fields(void **state) {
  lua_State *L = json_state();
  vd_decision_t d;
  (void)state;
  vd_decision_init(&d);
  /* everything a decision needs, and the input's indexed strings */
  assert_int_equal(
      read_request(L,
                   "{\"id\":{\"b\":[1,2],\"a\":\"x\"},\"op\":\"decide\","
                   "\"kind\":\"sla\",\"region\":\"GD-SZ\",\"at\":"
                   "\"2026-11-23T10:00:00+08:00\",\"input\":{\"complaint_id\":"
                   "\"C-1\",\"customer_id\":\"U-9\",\"category\":7}}",
                   0, &d),
      0);
  assert_int_equal(d.op, VD_OP_DECIDE);
  assert_string_equal(d.id.data, "{\"a\":\"x\",\"b\":[1,2]}"); /* re-encoded */
  assert_string_equal(d.kind, "sla");
  assert_string_equal(d.region, "GD-SZ");
  assert_string_equal(d.at, "2026-11-23T10:00:00+08:00");
  assert_true(d.at_ms == INT64_C(1795399200000));
  assert_int_equal(d.at_stamped, 0);
  assert_string_equal(d.complaint_id.data, "C-1");
  assert_string_equal(d.customer_id.data, "U-9");
  assert_int_equal(d.category.len, 0); /* not a string: not indexed */
  /* no "at": stamped to the second, in +08:00 */
  assert_int_equal(read_request(L,
                                "{\"kind\":\"sla\",\"region\":\"GD\","
                                "\"input\":{}}",
                                INT64_C(1795399200789), &d),
                   0);
  assert_int_equal(d.at_stamped, 1);
  assert_true(d.at_ms == INT64_C(1795399200000));
  assert_string_equal(d.at, "2026-11-23T10:00:00+08:00");
  assert_string_equal(d.id.data, "null");
  /* other ops stop after op: nothing else is required */
  assert_int_equal(read_request(L, "{\"op\":\"ping\",\"id\":3}", 0, &d), 0);
  assert_int_equal(d.op, VD_OP_PING);
  assert_string_equal(d.id.data, "3");
  assert_int_equal(read_request(L, "{\"op\":\"status\"}", 0, &d), 0);
  assert_int_equal(d.op, VD_OP_STATUS);
  assert_int_equal(read_request(L, "{\"op\":\"reload\",\"kind\":1}", 0, &d),
                   0);
  assert_int_equal(d.op, VD_OP_OTHER);
  assert_string_equal(d.op_name, "reload");
  /* an error after the id still answers with the id */
  assert_int_equal(read_request(L, "{\"id\":\"r\",\"kind\":\"sla\"}", 0, &d),
                   VD_EBAD_REQUEST);
  assert_string_equal(d.id.data, "\"r\"");
  vd_decision_release(&d);
  lua_close(L);
}

/* The request's fields are read in one walk over its keys (wire.c): an
 * unknown field still answers with the id wherever the walk meets the two
 * (many names, so both orders come), and the unknown field named is the
 * first one the walk meets, as lua_next orders them. */
static void request_unknown_field_keeps_id(void **state) {
  static const char *const unknown[] = {"x", "zz", "regoin", "Kind", "ids",
                                        "input2", "a", "qqq", "idem_", "o"};
  lua_State *L = json_state();
  vd_decision_t d;
  vd_buf_t err = VD_BUF_INIT;
  char line[256];
  size_t i;
  (void)state;
  vd_decision_init(&d);
  for (i = 0; i < sizeof unknown / sizeof *unknown; i++) {
    const char *first = NULL;
    int order;
    for (order = 0; order < 2; order++) {
      if (order == 0)
        snprintf(line, sizeof line,
                 "{\"%s\":1,\"id\":\"r-%zu\",\"kind\":\"sla\"}",
                 unknown[i], i);
      else
        snprintf(line, sizeof line,
                 "{\"id\":\"r-%zu\",\"kind\":\"sla\",\"%s\":1,"
                 "\"region\":\"GD\"}",
                 i, unknown[i]);
      assert_int_equal(read_request(L, line, 0, &d), VD_EBAD_REQUEST);
      assert_string_equal(d.path.data, unknown[i]);
      snprintf(line, sizeof line, "\"r-%zu\"", i);
      assert_string_equal(d.id.data, line);
    }
    /* two unknown ones: the walk's first */
    snprintf(line, sizeof line, "{\"%s\":1,\"kind\":\"sla\",\"%s\":2}",
             unknown[i], unknown[(i + 1) % 10]);
    assert_int_equal(vd_json_decode(L, line, strlen(line), 0, &err), 0);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      const char *k = lua_tostring(L, -2);
      lua_pop(L, 1);
      if (!first && strcmp(k, "kind") != 0)
        first = k;
    }
    assert_int_equal(read_request(L, line, 0, &d), VD_EBAD_REQUEST);
    assert_string_equal(d.path.data, first);
    lua_pop(L, 1);
  }
  vd_buf_release(&err);
  vd_decision_release(&d);
  lua_close(L);
}

static void admin_request(void **state) {
  lua_State *L = json_state();
  vd_wire_admin_t req;
  vd_buf_t err = VD_BUF_INIT;
  static const char line[] =
      "{\"id\":[7],\"op\":\"diff\",\"from\":\"sha256:a\",\"to\":2,"
      "\"who\":\"alice\"}";
  (void)state;
  vd_wire_admin_init(&req);
  assert_int_equal(vd_wire_read_admin(L, line, sizeof line - 1, &req, &err),
                   0);
  assert_int_equal(lua_gettop(L), 1); /* the request stays: the strings */
  assert_string_equal(req.id.data, "[7]");
  assert_string_equal(req.op, "diff");
  assert_string_equal(req.from, "sha256:a");
  assert_null(req.to); /* not a string */
  assert_null(req.revision);
  assert_string_equal(req.who, "alice");
  lua_settop(L, 0);
  vd_wire_admin_release(&req);
  /* not JSON, and not an object: bad_request, nothing pushed, id null */
  vd_wire_admin_init(&req);
  assert_int_equal(vd_wire_read_admin(L, "{\"op\":", 6, &req, &err),
                   VD_EBAD_REQUEST);
  assert_true(err.len > 0);
  assert_int_equal(vd_wire_read_admin(L, "[\"ping\"]", 8, &req, &err),
                   VD_EBAD_REQUEST);
  assert_string_equal(err.data, "a request must be a JSON object");
  assert_int_equal(lua_gettop(L), 0);
  assert_string_equal(req.id.data, "null");
  vd_wire_admin_release(&req);
  vd_buf_release(&err);
  lua_close(L);
}

/* The lines both sockets answer with, byte for byte. */
static void reply_lines(void **state) {
  vd_buf_t out = VD_BUF_INIT;
  vd_wire_status_t s;
  (void)state;
  vd_wire_write_pong(&out, "1", "sha256:ab");
  assert_string_equal(out.data,
                      "{\"id\":1,\"pong\":true,\"revision\":\"sha256:ab\"}\n");
  vd_buf_reset(&out);
  vd_wire_write_pong(&out, NULL, "sha256:ab");
  assert_string_equal(out.data, "{\"id\":null,\"pong\":true,\"revision\":"
                                "\"sha256:ab\"}\n");
  vd_buf_reset(&out);
  vd_wire_write_activated(&out, "\"x\"", "sha256:b", "sha256:a");
  assert_string_equal(out.data,
                      "{\"id\":\"x\",\"ok\":true,\"revision\":\"sha256:b\","
                      "\"previous\":\"sha256:a\",\"unchanged\":false}\n");
  vd_buf_reset(&out);
  vd_wire_write_activated(&out, NULL, "sha256:a", "sha256:a");
  assert_string_equal(out.data,
                      "{\"id\":null,\"ok\":true,\"revision\":\"sha256:a\","
                      "\"previous\":\"sha256:a\",\"unchanged\":true}\n");
  vd_buf_reset(&out);
  /* a client's "from" is a string like any other: escaped */
  vd_wire_write_diff(&out, "2", "a\"b", "sha256:c", "-x\n+y\n", 6);
  assert_string_equal(out.data,
                      "{\"id\":2,\"from\":\"a\\\"b\",\"to\":\"sha256:c\","
                      "\"diff\":\"-x\\n+y\\n\"}\n");
  vd_buf_reset(&out);
  vd_wire_write_diff(&out, "2", "a", "b", NULL, 0);
  assert_string_equal(out.data,
                      "{\"id\":2,\"from\":\"a\",\"to\":\"b\",\"diff\":\"\"}\n");
  vd_buf_reset(&out);
  vd_wire_write_revisions(&out, "3", ",\"revisions\":[]", 15);
  assert_string_equal(out.data, "{\"id\":3,\"revisions\":[]}\n");
  /* status: every field in its documented place */
  memset(&s, 0, sizeof s);
  s.revision = "sha256:ab";
  s.source = "pol\"icies";
  s.activated_ms = INT64_C(1795399200000);
  s.activated_by = "startup";
  s.started_ms = INT64_C(1795399200000);
  s.now_ms = INT64_C(1795399261999);
  s.workers = 2;
  s.connections = 1;
  s.heap_bytes = 1048576;
  s.log_mode = "durable";
  s.decisions = 10;
  s.errors[vd_err_index(VD_EBAD_INPUT)] = 2;
  s.errors[vd_err_index(VD_EINTERNAL)] = 1;
  s.budget_mode = "count";
  s.instructions = 10000000;
  s.recounted = 4;
  vd_buf_reset(&out);
  vd_wire_write_status(&out, "5", &s);
  assert_string_equal(
      out.data,
      "{\"id\":5,\"status\":{\"revision\":\"sha256:ab\",\"source\":"
      "\"pol\\\"icies\",\"activated_at\":\"2026-11-23T10:00:00+08:00\","
      "\"activated_by\":\"startup\",\"started_at\":"
      "\"2026-11-23T10:00:00+08:00\",\"uptime_s\":61,\"workers\":2,"
      "\"connections\":1,\"heap_in_use_bytes\":1048576,\"log_mode\":\"durable\","
      "\"decisions\":10,"
      "\"errors\":{\"bad_input\":2,\"internal\":1},\"errors_total\":3,"
      "\"budget\":{\"mode\":\"count\",\"instructions\":10000000,"
      "\"recounted\":4,\"interrupts\":0}}}\n");
  /* a C library that cannot count its heap: the field is left out */
  s.heap_bytes = -1;
  vd_buf_reset(&out);
  vd_wire_write_status(&out, "5", &s);
  assert_null(strstr(out.data, "heap_in_use_bytes"));
  s.last_failure = "x.lua:1: no";
  s.history_check = "damaged";
  s.history_check_error = "page 4";
  s.in_force = "{\"national\":{}}";
  s.in_force_len = strlen(s.in_force);
  vd_buf_reset(&out);
  vd_wire_write_status(&out, NULL, &s);
  assert_non_null(strstr(out.data,
                         "\"activated_by\":\"startup\",\"last_failure\":"
                         "\"x.lua:1: no\",\"history_check\":\"damaged\","
                         "\"history_check_error\":\"page 4\",\"in_force\":"
                         "{\"national\":{}},\"started_at\":"));
  vd_buf_release(&out);
}

/* The files in force, from a real engine. */
static void in_force_object(void **state) {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  lua_State *L = json_state();
  (void)state;
  assert_int_equal(vd_bundle_load("tests/fixtures/mini", &b, &err), 0);
  assert_int_equal(vd_engine_new(b, NULL, &e, &err), 0);
  vd_buf_adds(&out, "old contents");
  vd_wire_in_force(&out, e);
  if (vd_json_decode(L, out.data, out.len, 0, &err) != 0)
    fail_msg("in_force is not JSON: %s\n  %s", err.data, out.data);
  lua_getfield(L, -1, "GD-SZ");
  lua_getfield(L, -1, "compensation");
  assert_string_equal(lua_tostring(L, -1), "regions/GD/compensation.lua");
  lua_settop(L, 1);
  lua_getfield(L, -1, "national");
  lua_getfield(L, -1, "compensation");
  assert_string_equal(lua_tostring(L, -1), "national/compensation.lua");
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  vd_buf_release(&out);
  lua_close(L);
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
  vd_wire_write_error(&out, NULL, VD_EBAD_REQUEST, "bad thing", "input.x", NULL);
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"bad_request\","
                      "\"message\":\"bad thing\",\"path\":\"input.x\"}}\n");
  vd_buf_reset(&out);
  vd_wire_write_error(&out, "\"r-1\"", VD_EPOLICY_TIMEOUT,
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
  vd_wire_write_error(&out, "", VD_ETOO_LARGE, NULL, "", NULL);
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"too_large\","
                      "\"message\":\"the request line exceeds --max-line\"}}"
                      "\n");
  /* a message with bytes that are not UTF-8 still gives JSON */
  vd_buf_reset(&out);
  vd_wire_write_error(&out, NULL, VD_EPOLICY_ERROR, "bad \xff byte", "p\xc3",
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
  vd_wire_write_decision(&out, &d, "0190f3a4-0000-7000-8000-000000000001",
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
  vd_wire_write_decision(&out, &d, NULL, "sha256:abc");
  assert_null(strstr(out.data, "decision_id"));
  assert_true(strncmp(out.data, "{\"id\":{\"n\":1},\"kind\":", 20) == 0);
  /* an error decision writes an error line */
  d.code = VD_EBAD_INPUT;
  vd_buf_adds(&d.message, "expected fen");
  vd_buf_adds(&d.path, "input.due_fen");
  vd_buf_reset(&out);
  vd_wire_write_decision(&out, &d, "u", "sha256:abc");
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
  vd_wire_write_decision(&out, &d, NULL, "r");
  assert_string_equal(out.data,
                      "{\"id\":null,\"error\":{\"code\":\"internal\","
                      "\"message\":\"the daemon failed; the request was not "
                      "decided\"}}\n");
  vd_decision_release(&d);
  lua_close(L);
  vd_buf_release(&out);
}

/* A real decision from the engine, written and read back. */
/* The line's kind, region, policy_region and at, read from their arrays
 * 16 bytes at a time (wire.c, add_arr_at): each array holding a string of
 * every length that fits, plain or with a byte that needs care (a quote,
 * a backslash, a control byte, UTF-8, a byte that is not UTF-8) at every
 * offset, and after its NUL bytes that would need care (a quote, a control
 * byte), gives the line add_str() writes: each value as
 * vd_buf_add_json_str() escapes it.  It fails if a byte after the NUL is
 * read as the string's, or a byte that needs care before it is not. */
static void response_fields_every_length(void **state) {
  static const char care[] = {'"', '\\', '\n', '\x01', '\x1f', '\xff'};
  vd_decision_t d;
  vd_buf_t out = VD_BUF_INIT, want = VD_BUF_INIT;
  char *fields[4];
  size_t caps[4], f, len, at, c;
  (void)state;
  fill_decision(&d);
  fields[0] = d.kind, caps[0] = sizeof d.kind;
  fields[1] = d.region, caps[1] = sizeof d.region;
  fields[2] = d.policy_region, caps[2] = sizeof d.policy_region;
  fields[3] = d.at, caps[3] = sizeof d.at;
  for (f = 0; f < 4; f++)
    for (len = 0; len < caps[f]; len++)
      for (at = 0; at <= len; at++) /* at == len: plain */
        for (c = 0; c < (at < len ? sizeof care + 1 : 1); c++) {
          char keep[48];
          size_t k;
          memcpy(keep, fields[f], caps[f]);
          for (k = 0; k < caps[f]; k++) /* after the NUL: needs care */
            fields[f][k] = k % 2 ? '"' : '\x02';
          for (k = 0; k < len; k++)
            fields[f][k] = (char)('a' + k % 26);
          if (at < len && c < sizeof care)
            fields[f][at] = care[c];
          else if (at < len && at + 1 < len) { /* é, two bytes */
            fields[f][at] = '\xc3';
            fields[f][at + 1] = '\xa9';
          }
          fields[f][len] = '\0';
          vd_buf_reset(&out);
          vd_wire_write_decision(&out, &d, "u", "r");
          vd_buf_reset(&want);
          vd_buf_adds(&want, "{\"id\":{\"n\":1},\"decision_id\":\"u\","
                             "\"kind\":");
          vd_buf_add_json_str(&want, d.kind, strlen(d.kind));
          vd_buf_adds(&want, ",\"region\":");
          vd_buf_add_json_str(&want, d.region, strlen(d.region));
          vd_buf_adds(&want, ",\"policy_region\":");
          vd_buf_add_json_str(&want, d.policy_region,
                              strlen(d.policy_region));
          vd_buf_adds(&want, ",\"revision\":\"r\",\"at\":");
          vd_buf_add_json_str(&want, d.at, strlen(d.at));
          vd_buf_adds(&want, ",\"result\":{\"offer_fen\":6000,\"ratio\":0.5},"
                             "\"trace\":[{\"basis\":\"b\",\"rule\":\"r\"}],"
                             "\"elapsed_us\":12345}\n");
          if (out.len != want.len || memcmp(out.data, want.data, want.len))
            fail_msg("field %zu, length %zu, byte %zu (%zu):\n  %s  want %s",
                     f, len, at, c, out.data, want.data);
          assert_int_equal(out.data[out.len], '\0');
          memcpy(fields[f], keep, caps[f]);
        }
  vd_decision_release(&d);
  vd_buf_release(&out);
  vd_buf_release(&want);
}

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
  vd_wire_write_decision(&out, &d, "id-1", vd_bundle_revision(b));
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
  vd_wire_write_decision(&out, &d, NULL, vd_bundle_revision(b));
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

/* Found triaging tests/fuzz/fuzz_request.c, which now checks for it, as
 * fuzz_admin.c does (corpus request/nul-* and admin/nul-op): a string with
 * a NUL in it passed as its prefix, so "sla\u0000x" was decided as sla,
 * "id\u0000x" was taken for the id field, and "reload\u0000x" on the
 * admin socket reloaded.  Such a string is not the field's value: refused,
 * or NULL for the admin. */
static void nul_in_fields_refused(void **state) {
  static const struct {
    const char *line;
    const char *path;
  } cases[] = {
      {"{\"op\":\"ping\\u0000x\"}", "op"},
      {"{\"kind\":\"sla\\u0000x\",\"region\":\"GD\"" REQ_INPUT "}", "kind"},
      {"{\"kind\":\"sla\",\"region\":\"GD\\u0000\"" REQ_INPUT "}", "region"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"at\":"
       "\"2026-11-23T10:00:00+08:00\\u0000\"" REQ_INPUT "}", "at"},
      {"{\"kind\":\"sla\",\"region\":\"GD\",\"id\\u0000x\":1" REQ_INPUT "}",
       "id"},
  };
  static const char admin[] =
      "{\"op\":\"reload\\u0000x\",\"who\":\"al\\u0000ice\","
      "\"revision\":\"sha256:a\"}";
  lua_State *L = json_state();
  vd_decision_t d;
  vd_wire_admin_t req;
  vd_buf_t err = VD_BUF_INIT;
  size_t i;
  (void)state;
  vd_decision_init(&d);
  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = read_request(L, cases[i].line, 0, &d);
    if (rc != VD_EBAD_REQUEST ||
        strcmp(d.path.data ? d.path.data : "", cases[i].path) != 0)
      fail_msg("%s\n  gave %s at \"%s\": %s", cases[i].line,
               vd_err_name(rc), d.path.data ? d.path.data : "",
               d.message.data ? d.message.data : "");
  }
  vd_decision_release(&d);
  vd_wire_admin_init(&req);
  assert_int_equal(vd_wire_read_admin(L, admin, sizeof admin - 1, &req, &err),
                   0);
  assert_null(req.op);
  assert_null(req.who);
  assert_string_equal(req.revision, "sha256:a");
  lua_settop(L, 0);
  vd_wire_admin_release(&req);
  vd_buf_release(&err);
  lua_close(L);
}


/* ------------------------------------------------------------------------
 * HTTP: statuses, the kind form's request, idempotency keys
 * ------------------------------------------------------------------------ */

static void http_statuses(void **state) {
  (void)state;
  assert_int_equal(vd_wire_http_status(0), 200);
  assert_int_equal(vd_wire_http_status(VD_EBAD_REQUEST), 400);
  assert_int_equal(vd_wire_http_status(VD_EBAD_INPUT), 422);
  assert_int_equal(vd_wire_http_status(VD_EUNKNOWN_KIND), 404);
  assert_int_equal(vd_wire_http_status(VD_EUNKNOWN_REGION), 404);
  assert_int_equal(vd_wire_http_status(VD_ETOO_LARGE), 413);
  assert_int_equal(vd_wire_http_status(VD_EFORBIDDEN), 403);
  assert_int_equal(vd_wire_http_status(VD_EPOLICY_ERROR), 500);
  assert_int_equal(vd_wire_http_status(VD_EPOLICY_TIMEOUT), 503);
  assert_int_equal(vd_wire_http_status(VD_EPOLICY_MEMORY), 503);
  assert_int_equal(vd_wire_http_status(VD_EINTERNAL), 503);
}

static void kind_request(void **state) {
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  (void)state;
  assert_int_equal(vd_wire_kind_request(&out, "sla", "GD-SZ", NULL, NULL,
                                        "{\"a\":1}", 7, &err), 0);
  assert_string_equal(out.data,
                      "{\"kind\":\"sla\",\"region\":\"GD-SZ\",\"input\":{\"a\":1}}");
  vd_buf_reset(&out);
  /* strings are escaped; at given */
  assert_int_equal(vd_wire_kind_request(&out, "s\"x", NULL, "T", NULL,
                                        " [] ", 4, &err), 0);
  assert_string_equal(out.data,
                      "{\"kind\":\"s\\\"x\",\"at\":\"T\",\"input\": [] }");
  vd_buf_reset(&out);
  /* a body that would add a member of its own, or is no JSON at all */
  assert_int_equal(vd_wire_kind_request(&out, "sla", "GD", NULL, NULL,
                                        "{},\"kind\":\"x\"", 13, &err),
                   VD_EBAD_REQUEST);
  assert_int_equal(out.len, 0);
  assert_non_null(strstr(err.data, "not one JSON value"));
  vd_buf_reset(&err);
  assert_int_equal(vd_wire_kind_request(&out, "sla", "GD", NULL, NULL, "{", 1,
                                        &err), VD_EBAD_REQUEST);
  vd_buf_release(&out);
  vd_buf_release(&err);
}

static void idem_keys(void **state) {
  char key[VD_IDEM_KEY_MAX + 1];
  static const char a[] = "{\"id\":1,\"idem\":\"k-1\",\"input\":{}}";
  static const char nested[] = "{\"input\":{\"idem\":\"inner\"}}";
  static const char blank[] = "{\"idem\":\"two words\"}";
  static const char number[] = "{\"idem\":7}";
  static const char broken[] = "{\"idem\":\"k\"";
  (void)state;
  assert_int_equal(vd_wire_peek_idem(a, sizeof a - 1, key, sizeof key), 1);
  assert_string_equal(key, "k-1");
  assert_int_equal(vd_wire_peek_idem(nested, sizeof nested - 1, key,
                                     sizeof key), 0);
  assert_int_equal(vd_wire_peek_idem(blank, sizeof blank - 1, key,
                                     sizeof key), 0);
  assert_int_equal(vd_wire_peek_idem(number, sizeof number - 1, key,
                                     sizeof key), 0);
  assert_int_equal(vd_wire_peek_idem(broken, sizeof broken - 1, key,
                                     sizeof key), 0);
  assert_true(vd_wire_idem_valid("x", 1));
  assert_false(vd_wire_idem_valid("", 0));
  assert_false(vd_wire_idem_valid("a b", 3));
}

/* ------------------------------------------------------------------------
 * A request decoded flat and read from the decoder's notes
 * (vd_wire_decode_request(), vd_wire_read_decoded())
 * ------------------------------------------------------------------------ */

/* Requests whose every field and input's fields the notes must give as the
 * walk does: each kind of error, fields that repeat (the last one counts,
 * whatever its type), keys and values with escapes (read by the Lua
 * strings, not the text), a key with a NUL, unknown fields (named in the
 * walk's order), more top-level members than the notes hold, an input
 * with more members than they hold, an input that is an array, a string,
 * an input that repeats, an object under another field after the input,
 * texts the quick pass leaves to yajl. */
static const char *const noted_lines[] = {
    "{\"kind\":\"sla\",\"region\":\"GD-SZ\",\"at\":\"2026-11-23T10:00:00+08:00\","
    "\"input\":{\"complaint_id\":\"C-1\",\"customer_id\":\"U-9\","
    "\"category\":\"billing\",\"n\":3}}",
    "{\"id\":7,\"op\":\"decide\",\"kind\":\"sla\",\"region\":\"GD\","
    "\"idem\":\"k-1\",\"input\":{\"category\":\"a\"}}",
    "{\"id\":{\"x\":[1,{\"y\":2}]},\"kind\":\"sla\",\"region\":\"GD\","
    "\"input\":{}}",
    "{\"kind\":\"sla\",\"kind\":\"comp\",\"region\":\"GD\",\"region\":\"SZ\","
    "\"input\":{\"category\":\"x\",\"category\":\"y\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\","
    "\"category\":5}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\"},"
    "\"input\":{\"complaint_id\":\"C-2\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\"},"
    "\"id\":{\"category\":\"not the input's\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\"},"
    "\"input\":[{\"category\":\"y\"}]}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":[{\"category\":\"y\"}],"
    "\"input\":{\"category\":\"z\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":\"x\"}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":[1]}",
    "{\"kind\":\"sla\",\"region\":\"GD\"}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{},\"input\":null}",
    "{\"k\\u0069nd\":\"s\\u006ca\",\"region\":\"G\\u0044\",\"\\u0069nput\":"
    "{\"c\\u0061tegory\":\"b\\u00e9\",\"customer_id\":\"\\u4e2d\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"a\\u0000b\"}}",
    "{\"kind\":\"sla\\u0000x\",\"region\":\"GD\",\"input\":{}}",
    "{\"id\\u0000x\":1,\"kind\":\"sla\",\"region\":\"GD\",\"input\":{}}",
    "{\"kind\":\"sla\",\"regoin\":\"GD\",\"zzz\":1,\"input\":{}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"at\":\"yesterday\",\"input\":{}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"at\":12,\"input\":{}}",
    "{\"kind\":[],\"region\":\"GD\",\"input\":{}}",
    "{\"kind\":\"0123456789012345678901234567890123\",\"input\":{}}",
    "{\"kind\":\"sla\",\"region\":\"0123456789012345678901234567890123\","
    "\"input\":{}}",
    "{\"op\":\"ping\",\"id\":\"p\"}",
    "{\"op\":\"status\"}",
    "{\"op\":7}",
    "{\"idem\":\"bad key\",\"kind\":\"sla\"}",
    "{\"id\":1,\"id\":2,\"id\":3,\"kind\":\"sla\",\"kind\":\"sla\","
    "\"region\":\"GD\",\"region\":\"GD\",\"input\":{},\"at\":"
    "\"2026-11-23T10:00:00Z\"}",
    "{\"id\":1,\"id\":2,\"id\":3,\"kind\":\"sla\",\"kind\":\"sla\","
    "\"region\":\"GD\",\"region\":\"GD\",\"input\":{},\"zz\":1}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"a\":1,\"b\":2,\"c\":3,"
    "\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":11,"
    "\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"category\":\"late\","
    "\"complaint_id\":\"C-3\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\","
    "\"complaint_id\":\"" /* longer than the 256 bytes kept */
    "0123456789012345678901234567890123456789012345678901234567890123"
    "0123456789012345678901234567890123456789012345678901234567890123"
    "0123456789012345678901234567890123456789012345678901234567890123"
    "0123456789012345678901234567890123456789012345678901234567890123"
    "x\"}}",
    " { \"kind\" : \"sla\" , \"region\" : \"GD\" , \"input\" : { \"category\""
    " : \"spaced\" } } ",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"n\":1e400}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"n\":123456789012345678901"
    ",\"category\":\"after a long number\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"s\":\"\\ud83d\\ude00\","
    "\"category\":\"after a pair\"}}",
    "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"category\":\"x\"}} x",
    "[{\"kind\":\"sla\"}]",
    "\"text\"",
    "{}",
    /* as many members as the notes hold, all of them a request's */
    "{\"id\":1,\"id\":2,\"kind\":\"sla\",\"kind\":\"sla\",\"region\":\"GD\","
    "\"region\":\"GD\",\"input\":{\"category\":\"x\"},\"at\":"
    "\"2026-11-23T10:00:00Z\"}",
    /* an at with an escape: its string the decoder's, not the text's */
    "{\"kind\":\"sla\",\"region\":\"GD\",\"at\":\"2026-11-23T10:00:00\\u002b08:00\","
    "\"input\":{\"category\":\"x\"}}",
};

/* The decision D as a line of its fields, for comparing two readings. */
static void decision_text(const vd_decision_t *d, int rc, vd_buf_t *out) {
  vd_buf_reset(out);
  vd_buf_addf(out, "rc=%d code=%d op=%d op_name=%s kind=%s region=%s at=%s "
              "at_ms=%lld stamped=%d message=%s path=%s id=%s cid=%s "
              "cust=%s cat=%s", rc, d->code, (int)d->op, d->op_name, d->kind,
              d->region, d->at, (long long)d->at_ms, d->at_stamped,
              d->message.data ? d->message.data : "",
              d->path.data ? d->path.data : "",
              d->id.data ? d->id.data : "",
              d->complaint_id.data ? d->complaint_id.data : "",
              d->customer_id.data ? d->customer_id.data : "",
              d->category.data ? d->category.data : "");
}

/* Decode LINE on L, flat and read from the notes when NOTED, else into a
 * table walked; the reading as text, with the input the engine is given
 * (flat: by its index; else the table's).  An at given by its index is
 * the string read (the engine's ctx.at is that string's text either
 * way). */
static void read_line(lua_State *L, const char *line, int noted,
                      vd_buf_t *text) {
  vd_decision_t d;
  const vd_json_notes_t *flat = NULL;
  vd_buf_t in = VD_BUF_INIT, err = VD_BUF_INIT;
  int top = lua_gettop(L), rc, input = 0, at = 0;
  vd_decision_init(&d);
  vd_decision_reset(&d);
  rc = noted ? vd_wire_decode_request(L, line, strlen(line), 32, &d.message,
                                      &flat)
             : vd_json_decode_protected(L, line, strlen(line), 32,
                                        &d.message);
  if (rc == 0 && noted) {
    int i, pushed = 0;
    for (i = 0; flat && i < flat->ntop; i++)
      pushed += flat->top[i].slot != 0;
    assert_int_equal(lua_gettop(L), top + (flat ? pushed : 1));
    rc = vd_wire_read_decoded(L, flat, 1795399200123LL, &d, &input, &at);
    assert_true(input <= lua_gettop(L) && at <= lua_gettop(L));
  } else if (rc == 0) {
    rc = vd_wire_read_request(L, -1, 1795399200123LL, &d);
    assert_int_equal(lua_gettop(L), top + 1);
    if (rc == 0 && d.op == VD_OP_DECIDE) {
      lua_getfield(L, top + 1, "input");
      input = lua_gettop(L);
      if (lua_getfield(L, top + 1, "at") == LUA_TSTRING)
        at = lua_gettop(L);
    }
  }
  if (rc == 0 && d.op == VD_OP_DECIDE) {
    assert_true(input > top);
    assert_int_equal(vd_json_encode(L, input, &in, "input", &err), 0);
    if (at)
      assert_string_equal(lua_tostring(L, at), d.at);
  }
  lua_settop(L, top);
  decision_text(&d, rc, text);
  vd_buf_addf(text, " input=%s", in.data ? in.data : "");
  vd_decision_release(&d);
  vd_buf_release(&in);
  vd_buf_release(&err);
}

/* Each line decoded flat and read from the notes (in a sandbox, whose
 * decoder keeps them) answers as the walk over the table does in that
 * same state (whose string hashes, and so the walk's order, are its own),
 * field for field and message for message, and gives the engine the same
 * input and at; three rounds, so that the sandbox's strings are foretold
 * (json.c) in the second and third, after every other line.  It fails if
 * the notes keep the first of two members with one key, find the input's
 * members under another key, or point at another member's value. */
static void request_from_notes_same_answers(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, want = VD_BUF_INIT, got = VD_BUF_INIT;
  size_t i, round;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  for (round = 0; round < 3; round++)
    for (i = 0; i < sizeof noted_lines / sizeof *noted_lines; i++) {
      read_line(sb.L, noted_lines[i], 0, &want);
      read_line(sb.L, noted_lines[i], 1, &got);
      if (strcmp(want.data, got.data) != 0)
        fail_msg("%s\n  walk:  %s\n  notes: %s", noted_lines[i], want.data,
                 got.data);
    }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&want);
  vd_buf_release(&got);
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
      cmocka_unit_test(request_errors_name_their_field),
      cmocka_unit_test(request_fields),
      cmocka_unit_test(request_unknown_field_keeps_id),
      cmocka_unit_test(request_from_notes_same_answers),
      cmocka_unit_test(admin_request),
      cmocka_unit_test(reply_lines),
      cmocka_unit_test(in_force_object),
      cmocka_unit_test(response_error_line),
      cmocka_unit_test(response_decision_line),
      cmocka_unit_test(response_fields_every_length),
      cmocka_unit_test(response_from_engine),
      cmocka_unit_test(nul_in_fields_refused),
      cmocka_unit_test(http_statuses),
      cmocka_unit_test(kind_request),
      cmocka_unit_test(idem_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
