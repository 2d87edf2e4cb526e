/*
 * test_openapi.c - unit tests for core/openapi.c on bundles built in
 * memory: what each lib/schema.lua spec becomes, a policy without a
 * schema, a schema that is not made of specs (a clear error, no crash),
 * unknown kinds and regions, the same bytes from two engines, and the Lua
 * stack left as it was.  The document as a whole, against the bundled
 * policies, the JSON Schema metaschema and the daemon, is checked by
 * tests/blackbox/test_schema.py.  Runs single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/openapi.h"
#include "verdict/sandbox.h"

#define DECIDE "decide = function() return {}, {} end"

static vd_engine_t *engine_of_files(const vd_bundle_file_t *files, size_t n) {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  if (vd_bundle_from_files(files, n, "test", &b, &err))
    fail_msg("bundle: %s", err.data);
  if (vd_engine_new(b, NULL, &e, &err))
    fail_msg("engine: %s", err.data);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  return e;
}

static vd_bundle_file_t file(const char *path, const char *data) {
  vd_bundle_file_t f;
  f.path = (char *)path;
  f.data = (char *)data;
  f.len = strlen(data);
  return f;
}

/* The bundled lib/schema.lua, read from the source tree. */
static char *schema_lua(void) {
  vd_bundle_t *b;
  vd_buf_t err = VD_BUF_INIT;
  const vd_bundle_file_t *f;
  char *copy;
  if (vd_bundle_load("policies", &b, &err))
    fail_msg("policies: %s", err.data);
  f = vd_bundle_find(b, "lib/schema.lua");
  assert_non_null(f);
  copy = strdup(f->data);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  return copy;
}

static char *time_lua(void) {
  vd_bundle_t *b;
  vd_buf_t err = VD_BUF_INIT;
  char *copy;
  if (vd_bundle_load("policies", &b, &err))
    fail_msg("policies: %s", err.data);
  copy = strdup(vd_bundle_find(b, "lib/time.lua")->data);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  return copy;
}

static void assert_has(const char *text, const char *part) {
  if (!strstr(text, part))
    fail_msg("no '%s' in:\n%s", part, text);
}

static const char specs_policy[] =
    "local S = require('lib.schema')\n"
    "return { fields = {\n"
    "  name = S.string{ required = true, max_len = 8, doc = 'who' },\n"
    "  n = S.integer{ min = 0, max = 9, default = 3 },\n"
    "  fen = S.fen{},\n"
    "  flag = S.boolean{ default = false, requires = { 'n' } },\n"
    "  colour = S.enum{ 'red', 'blue', required = true },\n"
    "  when = S.time{},\n"
    "  tags = S.set{ of = S.enum{ 'a', 'b' }, default = {} },\n"
    "  items = S.list{ of = S.integer{}, max = 4 },\n"
    "  sub = S.object{ fields = { x = S.boolean{ required = true } } },\n"
    "  extra = S.map{ values = S.string{} },\n"
    "}, " DECIDE " }\n";

static void each_spec(void **state) {
  char *schema = schema_lua(), *tlua = time_lua();
  vd_bundle_file_t files[3];
  vd_engine_t *e;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  int top;
  (void)state;
  files[0] = file("lib/schema.lua", schema);
  files[1] = file("lib/time.lua", tlua);
  files[2] = file("national/k.lua", specs_policy);
  e = engine_of_files(files, 3);
  top = lua_gettop(vd_engine_sandbox(e)->L);
  assert_int_equal(vd_openapi_input_schema(e, "k", NULL, &out, &err), 0);
  assert_int_equal(lua_gettop(vd_engine_sandbox(e)->L), top);
  assert_has(out.data, "{\"$schema\":\"https://json-schema.org/draft/"
                       "2020-12/schema\",\"title\":\"k input "
                       "(national/k.lua)\",\"type\":\"object\"");
  assert_has(out.data, "\"name\":{\"type\":\"string\",\"minLength\":1,"
                       "\"maxLength\":8,\"description\":\"who; at most 8 "
                       "bytes of UTF-8\"}");
  assert_has(out.data, "\"n\":{\"type\":[\"integer\",\"null\"],\"minimum\":"
                       "0,\"maximum\":9,\"default\":3}");
  assert_has(out.data, "\"fen\":{\"type\":[\"integer\",\"null\"],\"minimum\":"
                       "0,\"maximum\":100000000000000}");
  assert_has(out.data, "\"colour\":{\"enum\":[\"red\",\"blue\"]}");
  assert_has(out.data, "\"flag\":{\"type\":[\"boolean\",\"null\"],"
                       "\"default\":false}");
  assert_has(out.data, "\"when\":{\"type\":[\"string\",\"null\"],\"format\":"
                       "\"date-time\"");
  assert_has(out.data, "\"tags\":{\"type\":[\"array\",\"null\"],\"items\":"
                       "{\"enum\":[\"a\",\"b\"]},\"default\":[]}");
  assert_has(out.data, "\"items\":{\"type\":[\"array\",\"null\"],\"items\":"
                       "{\"type\":\"integer\"},\"maxItems\":4}");
  assert_has(out.data, "\"sub\":{\"type\":[\"object\",\"null\"],"
                       "\"properties\":{\"x\":{\"type\":\"boolean\"}},"
                       "\"required\":[\"x\"],\"additionalProperties\":false}");
  assert_has(out.data, "\"extra\":{\"type\":[\"object\",\"null\"],"
                       "\"additionalProperties\":{\"type\":[\"string\","
                       "\"null\"]");
  assert_has(out.data, "\"required\":[\"colour\",\"name\"],"
                       "\"additionalProperties\":false,\"allOf\":[{\"if\":"
                       "{\"required\":[\"flag\"],\"properties\":{\"flag\":"
                       "{\"not\":{\"enum\":[false,0,\"\",null]}}}},\"then\":"
                       "{\"required\":[\"n\"],\"properties\":{\"n\":{\"not\":"
                       "{\"type\":\"null\"}}}}}]}");
  /* properties in name order */
  assert_true(strstr(out.data, "\"colour\"") < strstr(out.data, "\"extra\""));
  assert_true(strstr(out.data, "\"when\"") > strstr(out.data, "\"tags\""));
  vd_buf_release(&out);
  vd_buf_release(&err);
  vd_engine_free(e);
  free(schema);
  free(tlua);
}

static void no_schema_and_bad_schema(void **state) {
  vd_bundle_file_t files[2];
  vd_engine_t *e;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  int top;
  (void)state;
  files[0] = file("national/free.lua", "return { " DECIDE " }\n");
  files[1] = file("national/odd.lua",
                  "return { fields = { x = 5 }, " DECIDE " }\n");
  e = engine_of_files(files, 2);
  top = lua_gettop(vd_engine_sandbox(e)->L);
  assert_int_equal(vd_openapi_input_schema(e, "free", NULL, &out, &err), 0);
  assert_has(out.data, "\"type\":\"object\",\"description\":\"The policy "
                       "declares no input schema");
  assert_null(strstr(out.data, "additionalProperties"));
  vd_buf_reset(&out);
  assert_int_equal(vd_openapi_input_schema(e, "odd", NULL, &out, &err),
                   VD_EPOLICY_ERROR);
  assert_has(err.data, "national/odd.lua: input field 'x' is a number, not "
                       "a spec made by lib/schema.lua");
  assert_int_equal(vd_openapi_document(e, &out, &err), VD_EPOLICY_ERROR);
  assert_int_equal(lua_gettop(vd_engine_sandbox(e)->L), top);
  /* unknown names */
  assert_int_equal(vd_openapi_input_schema(e, "nope", NULL, &out, &err),
                   VD_ENOT_FOUND);
  assert_has(err.data, "no kind 'nope'");
  assert_int_equal(vd_openapi_input_schema(e, "free", "ZZ", &out, &err),
                   VD_ENOT_FOUND);
  assert_has(err.data, "region 'ZZ'");
  vd_buf_release(&out);
  vd_buf_release(&err);
  vd_engine_free(e);
}

/* The bundled policies: the same bytes from two engines and from
 * vd_openapi_write(); the engine still decides afterwards. */
static void same_bytes(void **state) {
  vd_bundle_t *b;
  vd_engine_t *e1, *e2;
  vd_buf_t a = VD_BUF_INIT, c = VD_BUF_INIT, w = VD_BUF_INIT,
           err = VD_BUF_INIT;
  vd_decision_t d;
  static const char req[] =
      "{\"kind\":\"sla\",\"region\":\"GD\",\"input\":{\"complaint_id\":"
      "\"C-1\",\"category\":\"network\",\"channel\":\"hotline\","
      "\"customer_grade\":\"retail\",\"received_at\":"
      "\"2026-11-20T10:00:00+08:00\"}}";
  (void)state;
  assert_int_equal(vd_bundle_load("policies", &b, &err), 0);
  assert_int_equal(vd_engine_new(b, NULL, &e1, &err), 0);
  assert_int_equal(vd_engine_new(b, NULL, &e2, &err), 0);
  assert_int_equal(vd_openapi_document(e1, &a, &err), 0);
  assert_int_equal(vd_openapi_document(e2, &c, &err), 0);
  assert_int_equal(vd_openapi_write(b, &w, &err), 0);
  assert_int_equal(a.len, c.len);
  assert_memory_equal(a.data, c.data, a.len);
  assert_int_equal(a.len, w.len);
  assert_memory_equal(a.data, w.data, a.len);
  assert_has(a.data, vd_bundle_revision(b));
  assert_has(a.data, "\"/v1/decisions/sla\":{\"post\"");
  vd_decision_init(&d);
  assert_int_equal(vd_engine_decide(e1, req, sizeof req - 1,
                                    1795000000000LL, &d), 0);
  vd_decision_release(&d);
  vd_engine_free(e1);
  vd_engine_free(e2);
  vd_bundle_unref(b);
  vd_buf_release(&a);
  vd_buf_release(&c);
  vd_buf_release(&w);
  vd_buf_release(&err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(each_spec),
      cmocka_unit_test(no_schema_and_bad_schema),
      cmocka_unit_test(same_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
