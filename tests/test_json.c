/*
 * test_json.c - unit tests for core/json.c (JSON text <-> Lua values).
 *
 * Each test decodes into, or encodes from, a plain Lua state prepared with
 * vd_json_setup(); the allocation-failure tests use a vd_sandbox_t instead,
 * for its counting allocator.  Runs single-threaded from the repository root.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

/* ------------------------------------------------------------------------
 * Fixture and helpers
 * ------------------------------------------------------------------------ */

typedef struct fx {
  lua_State *L;
  vd_buf_t out, err;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->L = luaL_newstate();
  assert_non_null(f->L);
  luaL_openlibs(f->L);
  vd_json_setup(f->L);
  vd_buf_init(&f->out);
  vd_buf_init(&f->err);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  lua_close(f->L);
  vd_buf_release(&f->out);
  vd_buf_release(&f->err);
  free(f);
  return 0;
}

/* Decode TEXT; on success the value is left on the stack. */
static int dec(fx_t *f, const char *text, int max_depth) {
  int top = lua_gettop(f->L);
  int rc;
  vd_buf_reset(&f->err);
  rc = vd_json_decode(f->L, text, strlen(text), max_depth, &f->err);
  /* the contract: exactly one value pushed on success, nothing on error */
  assert_int_equal(lua_gettop(f->L), top + (rc == 0 ? 1 : 0));
  return rc;
}

/* Encode the value on top of the stack (and pop it); returns f->out.data. */
static const char *enc_top(fx_t *f, const char *root) {
  int rc;
  vd_buf_reset(&f->out);
  vd_buf_reset(&f->err);
  rc = vd_json_encode(f->L, -1, &f->out, root, &f->err);
  if (rc != 0)
    fail_msg("encode failed: %s", f->err.data ? f->err.data : "?");
  lua_pop(f->L, 1);
  return f->out.data;
}

/* Decode IN, encode the result, compare with WANT. */
static void roundtrip(fx_t *f, const char *in, const char *want) {
  int rc = dec(f, in, 0);
  if (rc != 0)
    fail_msg("decode of %s failed: %s", in, f->err.data);
  assert_string_equal(enc_top(f, "value"), want);
}

/* Run Lua code that returns one value and leave that value on the stack. */
static void lua_value(fx_t *f, const char *code) {
  int top = lua_gettop(f->L);
  if (luaL_loadstring(f->L, code) != LUA_OK ||
      lua_pcall(f->L, 0, 1, 0) != LUA_OK)
    fail_msg("lua: %s", lua_tostring(f->L, -1));
  assert_int_equal(lua_gettop(f->L), top + 1);
}

/* Encode the value of CODE expecting a failure; returns the message. */
static const char *enc_fail(fx_t *f, const char *code, const char *root) {
  int rc;
  lua_value(f, code);
  vd_buf_reset(&f->out);
  vd_buf_reset(&f->err);
  rc = vd_json_encode(f->L, -1, &f->out, root, &f->err);
  lua_pop(f->L, 1);
  assert_int_equal(rc, VD_EINVALID);
  assert_non_null(f->err.data);
  return f->err.data;
}

/* ------------------------------------------------------------------------
 * Numbers
 * ------------------------------------------------------------------------ */

static void integers_stay_integers(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  /* up to 18 digits read by the decoder itself, longer by strtoll */
  static const lua_Integer want[] = {0, 1, -5, 4000, INT64_MAX, INT64_MIN,
                                     0, 999999999999999999LL,
                                     -999999999999999999LL,
                                     1000000000000000000LL};
  size_t i;
  assert_int_equal(dec(f, "[0, 1, -5, 4000, 9223372036854775807, "
                          "-9223372036854775808, -0, 999999999999999999, "
                          "-999999999999999999, 1000000000000000000]", 0),
                   0);
  assert_int_equal(lua_rawlen(L, -1), 10);
  for (i = 0; i < 10; i++) {
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    assert_true(lua_isinteger(L, -1));
    assert_true(lua_tointeger(L, -1) == want[i]);
    lua_pop(L, 1);
  }
  /* and as the policy sees it */
  lua_pushvalue(L, -1);
  lua_setglobal(L, "v");
  lua_value(f, "return math.type(v[1]) .. ',' .. math.type(v[5])");
  assert_string_equal(lua_tostring(L, -1), "integer,integer");
  lua_pop(L, 1);
  assert_string_equal(enc_top(f, "value"),
                      "[0,1,-5,4000,9223372036854775807,"
                      "-9223372036854775808,0,999999999999999999,"
                      "-999999999999999999,1000000000000000000]");
}

static void floats_stay_floats(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  assert_int_equal(dec(f, "[1.0, 0.1, 1e2, -2.5E-3, -0.0]", 0), 0);
  lua_rawgeti(L, -1, 1);
  assert_false(lua_isinteger(L, -1));
  assert_true(lua_tonumber(L, -1) == 1.0);
  lua_pop(L, 1);
  lua_rawgeti(L, -1, 3);
  assert_false(lua_isinteger(L, -1)); /* 1e2 has an exponent: a float */
  assert_true(lua_tonumber(L, -1) == 100.0);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setglobal(L, "v");
  lua_value(f, "return math.type(v[1]) .. ',' .. math.type(v[2])");
  assert_string_equal(lua_tostring(L, -1), "float,float");
  lua_pop(L, 1);
  assert_string_equal(enc_top(f, "value"), "[1.0,0.1,100.0,-0.0025,-0.0]");

  /* what comes back is a float again, with the same value */
  roundtrip(f, "1.0", "1.0");
  roundtrip(f, "0.1", "0.1");
  roundtrip(f, "0.30000000000000004", "0.30000000000000004");
  roundtrip(f, "1.5e300", "1.5e+300");
  roundtrip(f, "5e-324", "4.94065645841247e-324");
  assert_int_equal(dec(f, "100.0", 0), 0);
  assert_false(lua_isinteger(L, -1));
  lua_pop(L, 1);
}

static void big_integers_become_floats(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  assert_int_equal(dec(f, "9223372036854775808", 0), 0);
  assert_false(lua_isinteger(L, -1));
  assert_true(lua_tonumber(L, -1) == 9223372036854775808.0);
  assert_string_equal(enc_top(f, "value"), "9.223372036854776e+18");
  assert_int_equal(dec(f, "-9223372036854775809", 0), 0);
  assert_false(lua_isinteger(L, -1));
  lua_pop(L, 1);
  assert_int_equal(dec(f, "123456789012345678901234567890", 0), 0);
  assert_false(lua_isinteger(L, -1));
  assert_true(lua_tonumber(L, -1) == 123456789012345678901234567890.0);
  /* and read back it stays a float */
  enc_top(f, "value");
  assert_int_equal(dec(f, f->out.data, 0), 0);
  assert_false(lua_isinteger(L, -1));
  lua_pop(L, 1);
  /* a number text longer than the decoder's scratch buffer */
  assert_int_equal(dec(f, "1000000000000000000000000000000000000000000000000"
                          "000000000000000000000000000000", 0), 0);
  assert_false(lua_isinteger(L, -1));
  assert_true(lua_tonumber(L, -1) == 1e78);
  lua_pop(L, 1);
}

static void add_double_shortest(void **state) {
  static const double ds[] = {0.1, 1.0 / 3, 1e21, 1e-7, 123456.789, 2.0,
                              -1e300, 5e-324, 0.30000000000000004};
  vd_buf_t b = VD_BUF_INIT;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof ds / sizeof ds[0]; i++) {
    vd_buf_reset(&b);
    vd_json_add_double(&b, ds[i]);
    assert_true(strtod(b.data, NULL) == ds[i]);
    assert_non_null(strpbrk(b.data, ".e")); /* reads back as a float */
  }
  vd_buf_reset(&b);
  vd_json_add_double(&b, 2.0);
  assert_string_equal(b.data, "2.0");
  vd_buf_reset(&b);
  vd_json_add_double(&b, 0.1);
  assert_string_equal(b.data, "0.1");
  vd_buf_release(&b);
}

/* ------------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------------ */

static void nested_arrays(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  assert_int_equal(dec(f, "[[1,[2,[3,[]]]],[],[[]]]", 0), 0);
  assert_int_equal(lua_rawlen(L, -1), 3);
  lua_rawgeti(L, -1, 1); /* [1,[2,[3,[]]]] */
  lua_rawgeti(L, -1, 2); /* [2,[3,[]]] */
  lua_rawgeti(L, -1, 2); /* [3,[]] */
  lua_rawgeti(L, -1, 1);
  assert_int_equal(lua_tointeger(L, -1), 3);
  lua_pop(L, 4);
  assert_string_equal(enc_top(f, "value"), "[[1,[2,[3,[]]]],[],[[]]]");
  roundtrip(f, "[{\"a\":[1,{\"b\":[]}]},{}]", "[{\"a\":[1,{\"b\":[]}]},{}]");
}

static void empty_object_vs_array(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  roundtrip(f, "{}", "{}");
  roundtrip(f, "[]", "[]");
  roundtrip(f, "{\"a\":{},\"b\":[],\"c\":[{}],\"d\":{\"e\":[]}}",
            "{\"a\":{},\"b\":[],\"c\":[{}],\"d\":{\"e\":[]}}");
  assert_int_equal(dec(f, "{}", 0), 0);
  assert_int_equal(vd_json_marker(L, -1), 2);
  lua_pop(L, 1);
  assert_int_equal(dec(f, "[]", 0), 0);
  assert_int_equal(vd_json_marker(L, -1), 1);
  lua_pop(L, 1);
  /* an unmarked empty Lua table is an array; a marked one keeps its type */
  lua_newtable(L);
  assert_int_equal(vd_json_marker(L, -1), 0);
  assert_string_equal(enc_top(f, "value"), "[]");
  lua_newtable(L);
  vd_json_push_marker(L, 'o');
  lua_setmetatable(L, -2);
  assert_string_equal(enc_top(f, "value"), "{}");
  /* the marker hides itself from getmetatable */
  assert_int_equal(dec(f, "{}", 0), 0);
  lua_setglobal(L, "o");
  lua_value(f, "return getmetatable(o)");
  assert_string_equal(lua_tostring(L, -1), "object");
  lua_pop(L, 1);
}

static void null_sentinel(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  assert_int_equal(dec(f, "null", 0), 0);
  assert_int_equal(lua_type(L, -1), LUA_TLIGHTUSERDATA);
  assert_ptr_equal(lua_touserdata(L, -1), vd_json_null);
  assert_string_equal(enc_top(f, "value"), "null");
  /* a null element keeps its place; a null member keeps its key */
  assert_int_equal(dec(f, "[null,null,1]", 0), 0);
  assert_int_equal(lua_rawlen(L, -1), 3);
  assert_string_equal(enc_top(f, "value"), "[null,null,1]");
  assert_int_equal(dec(f, "{\"a\":null}", 0), 0);
  lua_getfield(L, -1, "a");
  assert_ptr_equal(lua_touserdata(L, -1), vd_json_null);
  lua_pop(L, 1);
  assert_string_equal(enc_top(f, "value"), "{\"a\":null}");
  /* a Lua nil encodes as null too */
  lua_pushnil(L);
  assert_string_equal(enc_top(f, "value"), "null");
}

static void scalars_and_booleans(void **state) {
  fx_t *f = *state;
  roundtrip(f, "true", "true");
  roundtrip(f, "false", "false");
  roundtrip(f, " 42 ", "42");
  roundtrip(f, "[true,false,\"x\",-1]", "[true,false,\"x\",-1]");
  /* a duplicated key: the last one wins */
  roundtrip(f, "{\"a\":1,\"a\":2}", "{\"a\":2}");
}

static void keys_sorted_on_output(void **state) {
  fx_t *f = *state;
  roundtrip(f, "{\"b\":1,\"a\":2,\"ab\":3,\"B\":4,\"\":5,\"a\\u0000\":6}",
            "{\"\":5,\"B\":4,\"a\":2,\"a\\u0000\":6,\"ab\":3,\"b\":1}");
  /* the same for tables built in Lua, whatever their insertion order */
  lua_value(f, "local t = {} for i = 20, 1, -1 do t['k' .. i] = i end "
               "t.z = { y = 1, x = 2 } return t");
  assert_string_equal(
      enc_top(f, "value"),
      "{\"k1\":1,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,"
      "\"k15\":15,\"k16\":16,\"k17\":17,\"k18\":18,\"k19\":19,\"k2\":2,"
      "\"k20\":20,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,"
      "\"k9\":9,\"z\":{\"x\":2,\"y\":1}}");
  /* bytewise: UTF-8 sorts after ASCII */
  roundtrip(f, "{\"\\u00e9\":1,\"z\":2}", "{\"z\":2,\"\xc3\xa9\":1}");
}

/* ------------------------------------------------------------------------
 * Strings
 * ------------------------------------------------------------------------ */

static void strings_escapes_unicode(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  size_t n;
  const char *s;
  assert_int_equal(dec(f, "\"a\\\"b\\\\c\\/d\\n\\t\\r\\b\\f\\u00e9\\u4e2d"
                          "\\ud83d\\ude00\"", 0), 0);
  s = lua_tolstring(L, -1, &n);
  assert_int_equal(n, strlen("a\"b\\c/d\n\t\r\b\f\xc3\xa9\xe4\xb8\xad"
                             "\xf0\x9f\x98\x80"));
  assert_memory_equal(s, "a\"b\\c/d\n\t\r\b\f\xc3\xa9\xe4\xb8\xad"
                         "\xf0\x9f\x98\x80", n);
  assert_string_equal(enc_top(f, "value"),
                      "\"a\\\"b\\\\c/d\\n\\t\\r\\u0008\\u000c\xc3\xa9"
                      "\xe4\xb8\xad\xf0\x9f\x98\x80\"");
  /* raw UTF-8 passes through unchanged */
  roundtrip(f, "\"\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\"",
            "\"\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\"");
  /* an embedded NUL survives both ways */
  assert_int_equal(dec(f, "\"a\\u0000b\"", 0), 0);
  s = lua_tolstring(L, -1, &n);
  assert_int_equal(n, 3);
  assert_memory_equal(s, "a\0b", 3);
  assert_string_equal(enc_top(f, "value"), "\"a\\u0000b\"");
  roundtrip(f, "\"\\u001f\\u007f\"", "\"\\u001f\x7f\"");
}

/* A byte-at-a-time statement of what vd_buf_add_json_str must write, for
 * comparing with its word-at-a-time scanning. */
static size_t ref_utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0], cp;
  size_t need, i;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    need = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    need = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    need = 4, cp = c & 0x07;
  else
    return 0;
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

static size_t ref_json_str(vd_buf_t *b, const unsigned char *s, size_t n) {
  size_t i = 0, bad = 0, k;
  vd_buf_addc(b, '"');
  while (i < n) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      vd_buf_addc(b, '\\');
      vd_buf_addc(b, (char)c);
    } else if (c == '\n') {
      vd_buf_adds(b, "\\n");
    } else if (c == '\r') {
      vd_buf_adds(b, "\\r");
    } else if (c == '\t') {
      vd_buf_adds(b, "\\t");
    } else if (c < 0x20) {
      vd_buf_addf(b, "\\u%04x", c);
    } else if (c < 0x80) {
      vd_buf_addc(b, (char)c);
    } else if ((k = ref_utf8_len(s + i, n - i)) > 0) {
      vd_buf_add(b, s + i, k);
      i += k;
      continue;
    } else {
      vd_buf_adds(b, "\xEF\xBF\xBD");
      bad++;
    }
    i++;
  }
  vd_buf_addc(b, '"');
  return bad;
}

/* Random strings over pieces that each need different care, at every
 * alignment and length around the 8-byte words the encoder skips. */
static void string_escaping_matches_reference(void **state) {
  static const char *const pieces[] = {
      "a", "Z", " ", "~", "\"", "\\", "\n", "\t", "\x01", "\x1f", "\x7f",
      "\x80", "\xff", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x98\x80",
      "\xe4\xb8", "\xed\xa0\x80", "\xc0\xaf", "0123456789abcdef", "\0"};
  unsigned long seed = 12345;
  unsigned char str[256];
  vd_buf_t got = VD_BUF_INIT, want = VD_BUF_INIT;
  int round;
  (void)state;
  for (round = 0; round < 20000; round++) {
    size_t n = 0, bad_got, bad_want;
    int parts;
    seed = seed * 6364136223846793005UL + 1442695040888963407UL;
    parts = (int)((seed >> 33) % 24);
    while (parts-- > 0) {
      const char *p;
      size_t len;
      seed = seed * 6364136223846793005UL + 1442695040888963407UL;
      p = pieces[(seed >> 33) % (sizeof pieces / sizeof pieces[0])];
      len = *p ? strlen(p) : 1; /* "\0" is one NUL byte */
      if (n + len > sizeof str)
        break;
      memcpy(str + n, p, len);
      n += len;
    }
    vd_buf_reset(&got);
    vd_buf_reset(&want);
    bad_got = vd_buf_add_json_str(&got, (const char *)str, n);
    bad_want = ref_json_str(&want, str, n);
    if (got.len != want.len || memcmp(got.data, want.data, got.len) != 0 ||
        bad_got != bad_want)
      fail_msg("round %d: %zu bytes encoded differently:\n got %s\nwant %s",
               round, n, got.data, want.data);
  }
  vd_buf_release(&got);
  vd_buf_release(&want);
}

static void invalid_utf8_rejected(void **state) {
  fx_t *f = *state;
  static const char *const bad[] = {
      "\"\xff\"",                 /* never valid */
      "\"ab\xc3\"",               /* truncated sequence */
      "\"\xe4\xb8\"",             /* truncated three-byte sequence */
      "[\"ok\",\"\x80\"]",        /* lone continuation byte */
      "{\"\xfe\":1}",             /* in a key */
  };
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (dec(f, bad[i], 0) != VD_EBAD_REQUEST)
      fail_msg("accepted invalid UTF-8 in case %zu", i);
    assert_non_null(strstr(f->err.data, "invalid JSON at byte "));
  }
  /* encoding refuses it too, naming the path */
  assert_string_equal(enc_fail(f, "return { s = 'a\\xff' }", "result"),
                      "result.s: string is not valid UTF-8");
}

/* Byte sequences that have the shape of UTF-8 but are not UTF-8 (RFC 3629):
 * an overlong form, an encoded UTF-16 surrogate, a code point past
 * U+10FFFF.  json.h promises invalid UTF-8 is rejected on input, and the
 * encoder (vd_buf_add_json_str) does reject these, so a request carrying
 * one is accepted and then cannot be echoed back.
 *
 * BUG (core/json.c, on_string/on_map_key): yajl 2.1's lexer checks only
 * lead and continuation bytes, so these decode without error.  Fix: check
 * each decoded string with the same validator vd_buf_add_json_str uses
 * (utf8_len in core/buf.c, exported) and cancel the parse when it fails. */
static void invalid_utf8_strict_forms_rejected(void **state) {
  fx_t *f = *state;
  static const char *const bad[] = {
      "\"\xc0\xaf\"",         /* overlong '/' */
      "\"\xed\xa0\x80\"",     /* U+D800 written as UTF-8 */
      "\"\xf4\x90\x80\x80\"", /* U+110000 */
      "{\"\xc1\xbf\":1}",      /* overlong, in a key */
  };
  size_t i;
  int accepted = 0;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = dec(f, bad[i], 0);
    if (rc == 0) {
      accepted++;
      lua_pop(f->L, 1);
    } else {
      assert_int_equal(rc, VD_EBAD_REQUEST);
    }
  }
  if (accepted)
    fail_msg("BUG json.c: %d of %zu invalid UTF-8 strings were decoded "
             "(overlong / surrogate / > U+10FFFF)", accepted,
             sizeof bad / sizeof bad[0]);
}

/* ------------------------------------------------------------------------
 * Syntax errors
 * ------------------------------------------------------------------------ */

static void trailing_comma_rejected(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  int top = lua_gettop(L);
  assert_int_equal(dec(f, "[1,2,]", 0), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "invalid JSON at byte "));
  assert_int_equal(dec(f, "{\"a\":1,}", 0), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "invalid JSON at byte "));
  assert_int_equal(lua_gettop(L), top); /* nothing left behind */
}

/* The message names the byte where the parse stopped. */
static void error_names_byte_offset(void **state) {
  fx_t *f = *state;
  assert_int_equal(dec(f, "{\"a\":1,}", 0), VD_EBAD_REQUEST);
  assert_string_equal(f->err.data,
                      "invalid JSON at byte 8: parse error: invalid object "
                      "key (must be a string)");
  assert_int_equal(dec(f, "{\"kind\": tru}", 0), VD_EBAD_REQUEST);
  assert_string_equal(f->err.data, "invalid JSON at byte 12: lexical error: "
                                   "invalid string in json text.");
  assert_int_equal(dec(f, "[1] [2]", 0), VD_EBAD_REQUEST);
  assert_string_equal(f->err.data, "invalid JSON at byte 5: parse error: "
                                   "trailing garbage");
  /* an error deep in a long line names a large offset */
  {
    vd_buf_t line = VD_BUF_INIT;
    size_t i;
    vd_buf_adds(&line, "{\"a\":[");
    for (i = 0; i < 1000; i++)
      vd_buf_adds(&line, "1,");
    vd_buf_adds(&line, "x]}");
    assert_int_equal(dec(f, line.data, 0), VD_EBAD_REQUEST);
    /* yajl counts the bytes it consumed, the bad one included */
    assert_string_equal(f->err.data, "invalid JSON at byte 2007: lexical "
                                     "error: invalid char in json text.");
    vd_buf_release(&line);
  }
}

static void blank_and_garbage_rejected(void **state) {
  fx_t *f = *state;
  static const char *const bad[] = {"", "   ", "{", "[1", "\"abc", "nul",
                                    "{'a':1}", "{a:1}", "01", "1.", ".5",
                                    "+1", "NaN", "Infinity", "[1]]",
                                    "\"tab\there\""};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (dec(f, bad[i], 0) != VD_EBAD_REQUEST)
      fail_msg("accepted bad JSON %s", bad[i]);
    assert_true(strncmp(f->err.data, "invalid JSON at byte ", 21) == 0);
  }
}

static void nesting_limit(void **state) {
  fx_t *f = *state;
  lua_State *L = f->L;
  char buf[256];
  int i;
  /* exactly at the limit: accepted */
  assert_int_equal(dec(f, "[[[[1]]]]", 4), 0);
  lua_pop(L, 1);
  assert_int_equal(dec(f, "{\"a\":{\"b\":[{\"c\":1}]}}", 4), 0);
  lua_pop(L, 1);
  /* one deeper: refused with a message that says so */
  assert_int_equal(dec(f, "[[[[[1]]]]]", 4), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "nested deeper than 4 levels"));
  assert_non_null(strstr(f->err.data, "at byte "));
  assert_int_equal(dec(f, "{\"a\":{\"b\":[{\"c\":[]}]}}", 4), VD_EBAD_REQUEST);
  /* 0 means the built-in limit, and nothing can raise it */
  for (i = 0; i < VD_JSON_MAX_DEPTH; i++)
    buf[i] = '[';
  for (i = 0; i < VD_JSON_MAX_DEPTH; i++)
    buf[VD_JSON_MAX_DEPTH + i] = ']';
  buf[2 * VD_JSON_MAX_DEPTH] = '\0';
  assert_int_equal(dec(f, buf, 0), 0);
  lua_pop(L, 1);
  memmove(buf + 1, buf, strlen(buf) + 1);
  buf[0] = '[';
  strcat(buf, "]");
  assert_int_equal(dec(f, buf, 0), VD_EBAD_REQUEST);
  assert_int_equal(dec(f, buf, 1000), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "nested deeper than 64 levels"));
}

/* ------------------------------------------------------------------------
 * Encoding errors
 * ------------------------------------------------------------------------ */

/* "[10,20,...,N*10]" into WANT (CAP bytes). */
static void tens(char *want, size_t cap, int n) {
  size_t w = (size_t)snprintf(want, cap, "[");
  int i;
  for (i = 1; i <= n; i++)
    w += (size_t)snprintf(want + w, cap - w, "%s%d", i > 1 ? "," : "",
                          i * 10);
  snprintf(want + w, cap - w, "]");
}

/* A list is encoded as its walk meets its elements while the keys come
 * as 1, 2, 3... (json.c, encode_keyed); any other order, a key after
 * them, an element that fails, and the text and the message are what
 * reading it again by index gives: the elements in index order, the
 * path of the element that fails, "mixes" at the table itself. */
static void lists_encoded_as_walked(void **state) {
  fx_t *f = *state;
  char code[512], want[512];
  int n, i, taken_back = 0;
  /* keys made in the hash part, in every order the hash gives */
  for (n = 1; n <= 40; n++) {
    snprintf(code, sizeof code,
             "local t = {} for i = %d, 1, -1 do t[i] = i * 10 end "
             "return t", n);
    tens(want, sizeof want, n);
    lua_value(f, code);
    assert_string_equal(enc_top(f, "value"), want);
  }
  /* 1 in the array part, the others in a hash part that string keys
   * made (then removed): the walk meets 1 first, then not always 2, and
   * what was written as it went is taken back */
  for (n = 2; n <= 12; n++) {
    int m;
    for (m = 1; m <= 8; m++) {
      snprintf(code, sizeof code,
               "local t, s = {10}, {'a','b','c','d','e','f','g','h'} "
               "for j = 1, %d do t[s[j]] = j end "
               "for j = 1, %d do t[s[j]] = nil end "
               "for i = 2, %d do t[i] = i * 10 end return t", m, m, n);
      tens(want, sizeof want, n);
      lua_value(f, code);
      lua_pushnil(f->L); /* the walk's first two keys */
      assert_true(lua_next(f->L, -2));
      lua_pop(f->L, 1);
      if (lua_tointeger(f->L, -1) == 1) {
        assert_true(lua_next(f->L, -2));
        if (lua_tointeger(f->L, -2) != 2)
          taken_back++;
        lua_pop(f->L, 2);
      } else {
        lua_pop(f->L, 1);
      }
      assert_string_equal(enc_top(f, "value"), want);
    }
  }
  assert_true(taken_back > 0);
  lua_value(f, "local t = {} t[3] = 'c' t[1] = 'a' t[2] = {1, {2}} "
               "return {t, {}, {{}}}");
  assert_string_equal(enc_top(f, "value"),
                      "[[\"a\",[1,[2]],\"c\"],[],[[]]]");
  /* a key after the elements: "mixes", at the table */
  assert_string_equal(enc_fail(f, "local t = {1, {2, {3}}} t.k = 1 "
                                  "return {t}", "r"),
                      "r[1]: table mixes array and object keys, or has a "
                      "non-string key; cannot encode it as JSON");
  /* an element that fails before a key that makes the table mixed */
  assert_string_equal(enc_fail(f, "local t = {1, {f = print}} t.k = 1 "
                                  "return t", "r"),
                      "r: table mixes array and object keys, or has a "
                      "non-string key; cannot encode it as JSON");
  /* an element that fails deep inside, after ones that did not */
  assert_string_equal(enc_fail(f, "return {1, {2, {x = {3, print}}}, 4}",
                               "r"),
                      "r[2][2].x[2]: cannot encode a function as JSON");
  /* a sparse list after elements encoded */
  assert_non_null(strstr(enc_fail(f, "return {1, 2, [4] = 4}", "t"),
                         "t: table mixes"));
  /* a key neither a string nor a positive integer after the elements, and
   * after one that failed */
  assert_non_null(strstr(enc_fail(f, "local t = {1, {2}} t[true] = 1 "
                                     "return t", "t"),
                         "t: table mixes"));
  assert_non_null(strstr(enc_fail(f, "local t = {1, {print}} t[0] = 1 "
                                     "return t", "t"),
                         "t: table mixes"));
  /* lists of lists sharing their elements: too large, found once (each
   * element written at most once a walk; twice would be 2^30 walks) */
  assert_non_null(strstr(enc_fail(f, "local t = {1} for i = 1, 30 do "
                                     "t = {t, t} end return t", "t"),
                         "larger than"));
  /* lists met 1, 3, 2 (the way the search above finds), inside one
   * another 30 deep: the first element written once at every level, the
   * rest by index (written again at each level would be 2^30 times) */
  lua_value(f, "local t = 'x' for i = 1, 30 do local u = {t} "
               "for _, k in ipairs{'a', 'b', 'c'} do u[k] = 1 end "
               "for _, k in ipairs{'a', 'b', 'c'} do u[k] = nil end "
               "u[2] = 2 u[3] = 3 t = u end return t");
  lua_pushnil(f->L);
  assert_true(lua_next(f->L, -2));
  lua_pop(f->L, 1);
  assert_true(lua_next(f->L, -2));
  if (lua_tointeger(f->L, -2) != 3) /* this Lua orders them otherwise */
    print_message("lists met in order: not the case meant\n");
  lua_pop(f->L, 2);
  for (n = 0, i = 0; i < 30; i++)
    n += snprintf(want + n, sizeof want - (size_t)n, "[");
  n += snprintf(want + n, sizeof want - (size_t)n, "\"x\"");
  for (i = 0; i < 30; i++)
    n += snprintf(want + n, sizeof want - (size_t)n, ",2,3]");
  assert_string_equal(enc_top(f, "value"), want);
}

static void encode_errors_name_path(void **state) {
  fx_t *f = *state;
  assert_string_equal(enc_fail(f, "return { a = { b = print } }", "result"),
                      "result.a.b: cannot encode a function as JSON");
  assert_string_equal(enc_fail(f, "return { x = 0/0 }", "result"),
                      "result.x: cannot encode NaN or infinity as JSON");
  assert_string_equal(enc_fail(f, "return { { y = math.huge } }", "result"),
                      "result[1].y: cannot encode NaN or infinity as JSON");
  assert_string_equal(enc_fail(f, "return { 1, 2, x = 3 }", "result"),
                      "result: table mixes array and object keys, or has a "
                      "non-string key; cannot encode it as JSON");
  assert_string_equal(enc_fail(f, "return { d = { [true] = 1 } }", "result"),
                      "result.d: table mixes array and object keys, or has "
                      "a non-string key; cannot encode it as JSON");
  /* a sparse list is not an array */
  assert_non_null(strstr(enc_fail(f, "return { [1] = 1, [3] = 3 }", "trace"),
                         "trace: table mixes"));
  /* the path is restored after siblings that encoded fine */
  assert_string_equal(
      enc_fail(f, "return { a = { 1, 2, { q = 1 } }, b = { c = 1 }, "
                  "z = { io.stdout } }", "result"),
      "result.z[1]: cannot encode this value as JSON");
  /* a table that contains itself stops at the depth bound */
  assert_non_null(strstr(enc_fail(f, "local t = {} t.t = t return t", "r"),
                         "nested too deeply"));
  /* no root: "value" */
  assert_string_equal(enc_fail(f, "return print", NULL),
                      "value: cannot encode a function as JSON");
  /* number keys: only integers from 1 make a list (a float key with an
   * integral value is stored as that integer; any other is not one) */
  assert_non_null(strstr(enc_fail(f, "return { [1.5] = 1 }", "r"),
                         "r: table mixes"));
  assert_non_null(strstr(enc_fail(f, "return { 1, [2.5] = 2 }", "r"),
                         "r: table mixes"));
  assert_non_null(strstr(enc_fail(f, "return { [0] = 1 }", "r"),
                         "r: table mixes"));
  assert_non_null(strstr(enc_fail(f, "return { [-1] = 1, 2 }", "r"),
                         "r: table mixes"));
  assert_non_null(strstr(enc_fail(f, "return { [2^63] = 1 }", "r"),
                         "r: table mixes"));
  assert_non_null(strstr(enc_fail(f, "return { [math.huge] = 1 }", "r"),
                         "r: table mixes"));
  lua_value(f, "local t = {} t[2.0] = 'b' t[1.0] = 'a' t[3] = 'c' return t");
  assert_string_equal(enc_top(f, "r"), "[\"a\",\"b\",\"c\"]");
}

/* ------------------------------------------------------------------------
 * Allocation failure
 * ------------------------------------------------------------------------ */

static const char FAIL_DOC[] =
    "{\"id\":\"r-1\",\"kind\":\"compensation\",\"region\":\"GD-SZ\","
    "\"input\":{\"charged_fen\":5000,\"due_fen\":3000,\"ratio\":0.25,"
    "\"tags\":[\"a\",\"b\",{\"c\":[1,2,3,null]}],\"note\":\"\xe4\xb8\xad\","
    "\"a_key_that_is_longer_than_forty_bytes_so_not_interned\":true}}";
static const char FAIL_DOC_CANON[] =
    "{\"id\":\"r-1\",\"input\":{\"a_key_that_is_longer_than_forty_bytes_so_"
    "not_interned\":true,\"charged_fen\":5000,\"due_fen\":3000,\"note\":"
    "\"\xe4\xb8\xad\",\"ratio\":0.25,\"tags\":[\"a\",\"b\",{\"c\":[1,2,3,null]"
    "}]},\"kind\":\"compensation\",\"region\":\"GD-SZ\"}";

/* Fail the n-th allocation for n = 1, 2, ... until a decode no longer
 * reaches it.  Every run gives 0 (with the whole value) or VD_ENOMEM
 * (with nothing pushed); the state stays usable. */
static void decode_under_fail_countdown(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  long n;
  int done = 0;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  for (n = 1; n < 100000 && !done; n++) {
    int top = lua_gettop(sb.L), rc;
    sb.fail_countdown = n;
    rc = vd_json_decode_protected(sb.L, FAIL_DOC, sizeof FAIL_DOC - 1, 0,
                                  &err);
    done = sb.fail_countdown > 0; /* the n-th allocation never came */
    sb.fail_countdown = 0;
    sb.failing = 0;
    if (rc == 0) {
      assert_int_equal(lua_gettop(sb.L), top + 1);
      vd_buf_reset(&out);
      assert_int_equal(vd_json_encode(sb.L, -1, &out, "value", &err), 0);
      assert_string_equal(out.data, FAIL_DOC_CANON);
      lua_pop(sb.L, 1);
    } else {
      assert_int_equal(rc, VD_ENOMEM);
      assert_int_equal(lua_gettop(sb.L), top);
    }
  }
  assert_true(done);
  assert_true(n > 10); /* the decode did allocate */
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* Lua retries a failed allocation after an emergency collection, so the
 * countdown above mostly exercises that retry.  A persistent cap makes
 * every allocation past it fail: sweep the cap up from nothing. */
static void decode_under_memory_cap(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  size_t cap;
  int nomem = 0, ok = 0;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  lua_gc(sb.L, LUA_GCCOLLECT);
  for (cap = 0; cap < 16384; cap += 16) {
    int top = lua_gettop(sb.L), rc;
    vd_sandbox_arm(&sb, 0, cap ? cap : 1);
    rc = vd_json_decode_protected(sb.L, FAIL_DOC, sizeof FAIL_DOC - 1, 0,
                                  &err);
    sb.limit = 0;
    vd_sandbox_disarm(&sb);
    if (rc == 0) {
      ok++;
      vd_buf_reset(&out);
      assert_int_equal(vd_json_encode(sb.L, -1, &out, "value", &err), 0);
      assert_string_equal(out.data, FAIL_DOC_CANON);
      lua_pop(sb.L, 1);
    } else {
      nomem++;
      assert_int_equal(rc, VD_ENOMEM);
      assert_string_equal(err.data, "not enough memory to decode the request");
      assert_int_equal(lua_gettop(sb.L), top);
    }
    lua_gc(sb.L, LUA_GCCOLLECT);
  }
  assert_true(nomem > 0); /* small caps did fail */
  assert_true(ok > 0);    /* and big enough ones did not */
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* "Encoding never raises" (json.h).  Run the encoder under a memory cap
 * inside lua_pcall and check it never raised: every run returns normally
 * with 0 and the whole text.
 *
 * BUG (core/json.c, encode_object): to read each member it pushes the key
 * again with lua_pushlstring(), commented "interned: no new memory"; Lua
 * 5.4 interns only strings of up to 40 bytes, so a longer key allocates a
 * new string, which can raise a memory error out of vd_json_encode() --
 * leaking the encoder's path buffer (and its key array past 16 keys), and
 * aborting the process where the caller has no pcall. */
static int in_encode; /* 1 while encode_k is inside vd_json_encode */

static int encode_k(lua_State *L) {
  vd_buf_t *out = lua_touserdata(L, 1);
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  in_encode = 1;
  rc = vd_json_encode(L, 2, out, "value", &err);
  in_encode = 0;
  vd_buf_release(&err);
  /* running out of memory may be reported as an error code, not a raise */
  if (rc == 0)
    assert_string_equal(out->data, FAIL_DOC_CANON);
  else
    assert_int_equal(rc, VD_EINVALID);
  return 0;
}

static void encode_never_raises(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  int raised = 0, runs = 0;
  size_t extra;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  assert_int_equal(vd_json_decode_protected(sb.L, FAIL_DOC,
                                            sizeof FAIL_DOC - 1, 0, &err), 0);
  for (extra = 0; extra < 4096; extra += 8) {
    int status;
    lua_pushcfunction(sb.L, encode_k);
    lua_pushlightuserdata(sb.L, &out);
    lua_pushvalue(sb.L, -3);
    vd_buf_reset(&out);
    lua_gc(sb.L, LUA_GCCOLLECT);
    in_encode = 0;
    vd_sandbox_arm(&sb, 0, extra ? extra : 1);
    status = lua_pcall(sb.L, 2, 0, 0);
    sb.limit = 0;
    vd_sandbox_disarm(&sb);
    runs++;
    if (status != LUA_OK) {
      if (in_encode) /* the error came out of vd_json_encode itself */
        raised++;
      lua_pop(sb.L, 1);
    }
  }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
  if (raised)
    fail_msg("BUG json.c encode_object: vd_json_encode raised a Lua memory "
             "error in %d of %d runs (re-pushing a key longer than 40 bytes "
             "allocates)", raised, runs);
}

/* Found by tests/fuzz/fuzz_json.c (corpus/json/number-overflow): a number
 * beyond a double's range decoded to an infinity, which the encoder then
 * refuses, so a request's value could not be written back.  It is bad
 * JSON now; a number that underflows still reads as zero. */
static void out_of_range_numbers_rejected(void **state) {
  fx_t *f = *state;
  static const char *const bad[] = {"1e400", "-1e400", "[0,1.8e308]",
                                    "{\"fen\":-2e308}", "1E+99999"};
  vd_buf_t big = VD_BUF_INIT;
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (dec(f, bad[i], 0) != VD_EBAD_REQUEST)
      fail_msg("accepted out-of-range number %s", bad[i]);
    assert_non_null(strstr(f->err.data, "number out of range"));
  }
  /* 400 digits: the long-text path */
  for (i = 0; i < 400; i++)
    vd_buf_addc(&big, '9');
  assert_int_equal(dec(f, big.data, 0), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "number out of range"));
  vd_buf_release(&big);
  /* the largest double, and underflow to zero, still decode */
  assert_int_equal(dec(f, "[1.7976931348623157e308,1e-400]", 0), 0);
  assert_string_equal(enc_top(f, "value"), "[1.7976931348623157e+308,0.0]");
}

/* ------------------------------------------------------------------------
 * The quick pass (core/json.c): the same answer as yajl alone
 * ------------------------------------------------------------------------ */

/* Whether the values at a and b are the same as a decoder makes them:
 * types, integer or float, bytes, the null sentinel, the marker, and for
 * tables the same keys in the same order of lua_next (the same table,
 * slot for slot). */
static int same_value(lua_State *L, int a, int b) {
  int ta = lua_type(L, a), ok = 1;
  if (ta != lua_type(L, b))
    return 0;
  switch (ta) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, a) != lua_isinteger(L, b))
      return 0;
    return lua_isinteger(L, a)
               ? lua_tointeger(L, a) == lua_tointeger(L, b)
               : memcmp(&(lua_Number){lua_tonumber(L, a)},
                        &(lua_Number){lua_tonumber(L, b)},
                        sizeof(lua_Number)) == 0;
  case LUA_TTABLE:
    break;
  default:
    return lua_rawequal(L, a, b);
  }
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_getmetatable(L, a) + lua_getmetatable(L, b) == 1)
    return 0;
  if (lua_gettop(L) >= 2 && lua_istable(L, -1) && lua_istable(L, -2)) {
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok)
    return 0;
  lua_pushnil(L);
  lua_pushnil(L);
  for (;;) { /* ..., ka, kb */
    int na, nb;
    lua_pushvalue(L, -2);
    na = lua_next(L, a); /* ..., ka, kb, ka', va */
    if (na) {
      lua_pushvalue(L, -3); /* kb */
      nb = lua_next(L, b);  /* ..., ka, kb, ka', va, kb', vb */
    } else {
      lua_pushvalue(L, -1);
      nb = lua_next(L, b);
      if (nb)
        lua_pop(L, 2);
      lua_pop(L, 2);
      return !nb;
    }
    if (!nb || !lua_rawequal(L, -4, -2) || !same_value(L, -3, -1)) {
      lua_pop(L, nb ? 6 : 4);
      return 0;
    }
    lua_pop(L, 1);           /* ..., ka, kb, ka', va, kb' */
    lua_replace(L, -4);      /* ..., ka, kb', ka', va */
    lua_pop(L, 1);
    lua_replace(L, -3);      /* ..., ka', kb' */
  }
}

/* Decode TEXT (n bytes) with and without the quick pass: the same code,
 * the same message, the same value. */
static void decodes_as_yajl(lua_State *L, const char *text, size_t n,
                            int max_depth) {
  vd_buf_t e1 = VD_BUF_INIT, e2 = VD_BUF_INIT;
  int top = lua_gettop(L);
  int r1 = vd_json_decode(L, text, n, max_depth, &e1);
  int r2 = vd_json_decode_yajl(L, text, n, max_depth, &e2);
  if (r1 != r2 || (r1 && strcmp(e1.data, e2.data) != 0))
    fail_msg("%.*s: quick %d (%s), yajl %d (%s)", (int)n, text, r1,
             r1 ? e1.data : "", r2, r2 ? e2.data : "");
  assert_int_equal(lua_gettop(L), top + (r1 ? 0 : 2));
  if (!r1 && !same_value(L, -2, -1))
    fail_msg("%.*s: the quick pass decoded another value", (int)n, text);
  lua_settop(L, top);
  vd_buf_release(&e1);
  vd_buf_release(&e2);
}

static const char *const quick_docs[] = {
    "{\"kind\":\"compensation\",\"region\":\"national\","
    "\"at\":\"2026-11-23T10:00:00+08:00\",\"input\":{"
    "\"complaint_id\":\"C-2026-110002\",\"category\":\"billing\","
    "\"customer_grade\":\"retail\",\"cause\":\"carrier\","
    "\"charged_fen\":12800,\"due_fen\":8800,\"claimed_fen\":50000}}",
    " { \"a\" : [ 1 , -2 , 0 , -0 , 3.5 , -0.25e+3 , 1E2 , 2e-2 ] ,\n"
    "\t\"b\" : { } , \"c\" : [ ] , \"d\" : [ [ ] , { } , [ [ 1 ] ] ] ,\r\n"
    "\"e\" : true , \"f\" : false , \"g\" : null , \"\" : \"\" } ",
    "{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\",\"u\":\"\\u00e9\\u4e2d"
    "\\uD83D\\uDE00\\u0041\",\"raw\":\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\","
    "\"k\\u00e9y\":1,\"a\":1,\"a\":2}",
    "[123456789012345678,1234567890123456789,99999999999999999999,"
    "-9223372036854775808,1.7976931348623157e308,1e-400,0.1]",
    "\"a string alone\"",
    "-12",
    "{\"x\":\"\\u0000\",\"lone\":\"\\uDE00\",\"high\":\"\\uD83D\\u0041\"}",
    "{\"deep\":[[[[{\"a\":[[[1]]]}]]]]}",
};

/* Every document above, every prefix of it and every one of it with one
 * byte replaced or removed: the quick pass answers as yajl does, values
 * and error messages alike, whatever the depth limit. */
static void quick_pass_matches_yajl(void **state) {
  fx_t *f = *state;
  static const char subst[] = "\"\\{}[],: 0-+e.ux\x01\x7f\x80\xc3\f\v\nt";
  char buf[512];
  size_t d, i, j, n;
  int depth;
  for (d = 0; d < sizeof quick_docs / sizeof *quick_docs; d++) {
    const char *doc = quick_docs[d];
    n = strlen(doc);
    assert_true(n < sizeof buf);
    for (depth = 0; depth <= 4; depth += 4) {
      for (i = 0; i <= n; i++)
        decodes_as_yajl(f->L, doc, i, depth);
      for (i = 0; i < n; i++) {
        memcpy(buf, doc, n);
        memmove(buf + i, buf + i + 1, n - i - 1);
        decodes_as_yajl(f->L, buf, n - 1, depth);
        for (j = 0; j < sizeof subst - 1; j++) {
          memcpy(buf, doc, n);
          buf[i] = subst[j];
          decodes_as_yajl(f->L, buf, n, depth);
        }
      }
    }
  }
}

/* The escapes the quick pass decodes itself, and those it leaves to yajl,
 * as values. */
static void quick_pass_escapes(void **state) {
  fx_t *f = *state;
  roundtrip(f, "[\"\\u00e9\\u4e2d\\uD83D\\uDE00\"]",
            "[\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"]");
  roundtrip(f, "[\"a\\\"b\\\\c\\/d\\te\"]", "[\"a\\\"b\\\\c/d\\te\"]");
  roundtrip(f, "[\"\\u0000\"]", "[\"\\u0000\"]"); /* yajl's */
  assert_int_equal(dec(f, "[\"\\uDE00\"]", 0), VD_EBAD_REQUEST);
  assert_non_null(strstr(f->err.data, "invalid UTF-8"));
}

/* In a sandbox's state the markers are known by the addresses the
 * sandbox keeps (json.c, markers_of): the same answers as the registry's,
 * and a look-alike metatable is not a marker. */
static void sandbox_knows_markers(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  lua_State *L;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  L = sb.L;
  assert_non_null(sb.json_mt[0]);
  assert_non_null(sb.json_mt[1]);
  assert_int_equal(vd_json_decode(L, "[[],{},{\"a\":[]}]", 16, 0, &err), 0);
  lua_rawgeti(L, -1, 1);
  assert_int_equal(vd_json_marker(L, -1), 1);
  lua_rawgeti(L, -2, 2);
  assert_int_equal(vd_json_marker(L, -1), 2);
  lua_newtable(L); /* a metatable of its own that says "array" */
  lua_newtable(L);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  assert_int_equal(vd_json_marker(L, -1), 0);
  lua_newtable(L);
  assert_int_equal(vd_json_marker(L, -1), 0);
  lua_pop(L, 4);
  assert_int_equal(vd_json_encode(L, -1, &out, "value", &err), 0);
  assert_string_equal(out.data, "[[],{},{\"a\":[]}]");
  lua_pop(L, 1);
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* Frozen tables' JSON (json.h): kept by their proxies' metatables, one
 * entry a table, and the engine's note that a trace entry is well-formed
 * (vd_json_trace_entry_note), which only the noted table answers to: not
 * a table of the same text, not one encoded but never noted, not one
 * noted before it was encoded, not a plain table or a number. */
static void frozen_json_and_trace_notes(void **state) {
  static const char *const names[] = {"good", "same", "bad", "other"};
  static const char *const json[] = {
      "{\"basis\":\"b1\",\"rule\":\"r1\"}",
      "{\"basis\":\"b1\",\"rule\":\"r1\"}",
      "{\"basis\":7,\"rule\":\"r2\"}",
      "{\"basis\":[\"b\",3],\"rule\":\"r3\"}"};
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  lua_State *L;
  int g, i, round;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  L = sb.L;
  assert_int_equal(luaL_dostring(L,
                                 "return {good = {rule = 'r1', basis = 'b1'},"
                                 " same = {rule = 'r1', basis = 'b1'},"
                                 " bad = {rule = 'r2', basis = 7},"
                                 " other = {rule = 'r3', basis = {'b', 3}}}"),
                   LUA_OK);
  g = lua_gettop(L);
  vd_sandbox_freeze(L, g); /* its fields are proxies now */
  lua_getfield(L, g, "good");
  vd_json_trace_entry_note(L, -1); /* not encoded yet: not kept */
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pop(L, 1);
  for (round = 0; round < 3; round++) {
    for (i = 0; i < 4; i++) { /* the same text each time, kept or not */
      lua_getfield(L, g, names[i]);
      lua_pushvalue(L, -1);
      assert_int_equal(vd_sandbox_unfreeze(L, -1), 1); /* a proxy */
      lua_pop(L, 1);
      vd_buf_reset(&out);
      assert_int_equal(vd_json_encode(L, -1, &out, "value", &err), 0);
      if (strcmp(out.data, json[i]) != 0)
        fail_msg("round %d, %s: %s, wanted %s", round, names[i], out.data,
                 json[i]);
      lua_pop(L, 1);
    }
    lua_getfield(L, g, "good");
    assert_int_equal(vd_json_trace_entry_known(L, -1), round > 0);
    vd_json_trace_entry_note(L, -1);
    assert_int_equal(vd_json_trace_entry_known(L, -1), 1);
    lua_pop(L, 1);
    for (i = 1; i < 4; i++) {
      lua_getfield(L, g, names[i]);
      if (vd_json_trace_entry_known(L, -1))
        fail_msg("round %d: %s known, never noted", round, names[i]);
      lua_pop(L, 1);
    }
  }
  /* a noted entry is known by its address too (json.c, the memo): its
   * copy is not, nor a light userdata at that address, nor any table made
   * later (the entry is held while the state is) */
  lua_getfield(L, g, "good");
  assert_int_equal(vd_json_trace_entry_known(L, -1), 1);
  lua_pushlightuserdata(L, (void *)lua_topointer(L, -1));
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pop(L, 1);
  assert_int_equal(vd_sandbox_unfreeze(L, -1), 1);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pop(L, 1);
  /* ...and encoded from the memo inside lists (json.c, encode_element) as
   * its copy is encoded in full: the same text, the same refusal at the
   * depth limit, at every depth around it; "other", noted here, nests a
   * table (it fails with the entry's depth counted one level short) */
  lua_getfield(L, g, "other");
  vd_json_trace_entry_note(L, -1);
  lua_pop(L, 1);
  for (round = 0; round < 2; round++) {
    lua_State *P = L;
    vd_buf_t a = VD_BUF_INIT, b = VD_BUF_INIT, ea = VD_BUF_INIT,
             eb = VD_BUF_INIT;
    int depth, k, ra = 0, rb = 0;
    for (depth = 1; depth <= VD_JSON_MAX_DEPTH + 1; depth++) {
      for (k = 0; k < 2; k++) { /* the entry (k 0) or its copy (k 1) */
        int j;
        lua_getfield(P, g, round ? "other" : "good"); /* [x, entry, "s",
                                                          entry] nested */
        if (k)
          vd_sandbox_unfreeze(P, -1);
        lua_createtable(P, 4, 0);
        lua_pushliteral(P, "x");
        lua_rawseti(P, -2, 1);
        lua_pushvalue(P, -2);
        lua_rawseti(P, -2, 2);
        lua_pushliteral(P, "s");
        lua_rawseti(P, -2, 3);
        lua_pushvalue(P, -2);
        lua_rawseti(P, -2, 4);
        lua_remove(P, -2);
        for (j = 1; j < depth; j++) {
          lua_createtable(P, 1, 0);
          lua_insert(P, -2);
          lua_rawseti(P, -2, 1);
        }
        vd_buf_reset(k ? &b : &a);
        vd_buf_reset(k ? &eb : &ea);
        if (k)
          rb = vd_json_encode(P, -1, &b, "value", &eb);
        else
          ra = vd_json_encode(P, -1, &a, "value", &ea);
        lua_pop(P, 1);
      }
      assert_int_equal(ra, rb);
      if (ra == 0)
        assert_string_equal(a.data, b.data);
      else
        assert_string_equal(ea.data, eb.data);
      if (depth == VD_JSON_MAX_DEPTH + 1)
        assert_int_not_equal(ra, 0);
      if (depth == 1 && !round)
        assert_string_equal(a.data, "[\"x\",{\"basis\":\"b1\",\"rule\":"
                                    "\"r1\"},\"s\",{\"basis\":\"b1\","
                                    "\"rule\":\"r1\"}]");
    }
    vd_buf_release(&a);
    vd_buf_release(&b);
    vd_buf_release(&ea);
    vd_buf_release(&eb);
  }
  for (i = 0; i < 5000; i++) {
    lua_newtable(L);
    if (vd_json_trace_entry_known(L, -1))
      fail_msg("a new table known (%d)", i);
    lua_pop(L, 1);
    if (i % 1000 == 0)
      lua_gc(L, LUA_GCCOLLECT);
  }
  lua_newtable(L);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pushinteger(L, 1);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  /* values that are not tables, one with a metatable (a string's), are
   * never known, and a note on them keeps nothing */
  lua_pushliteral(L, "r1");
  vd_json_trace_entry_note(L, -1);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pushboolean(L, 1);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_pushlightuserdata(L, vd_json_null);
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_getglobal(L, "print");
  assert_int_equal(vd_json_trace_entry_known(L, -1), 0);
  lua_settop(L, 0);
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* Key strings (json.c) packed as words that cover every byte: a string
 * of every length to 23 with one byte changed at every offset (a letter
 * or a digit; strings with a digit are kept as keys, not as values) is
 * read as itself, key and value, after its neighbours were kept, twice
 * over. */
static void key_strings_every_byte(void **state) {
  static const char changes[] = "bc5";
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT;
  char str[32], doc[128];
  size_t n, at, c, round;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  for (round = 0; round < 2; round++)
    for (n = 1; n <= 23; n++)
      for (at = 0; at < n; at++)
        for (c = 0; c < 3; c++) {
          size_t len;
          const char *got;
          memset(str, 'a', n);
          str[n] = '\0';
          str[at] = changes[c];
          len = (size_t)snprintf(doc, sizeof doc, "{\"%s\":\"%s\"}", str, str);
          assert_int_equal(vd_json_decode(sb.L, doc, len, 0, &err), 0);
          lua_pushnil(sb.L);
          assert_true(lua_next(sb.L, -2));
          got = lua_tolstring(sb.L, -2, &len);
          if (len != n || memcmp(got, str, n) != 0)
            fail_msg("%s: key read as %s", doc, got);
          got = lua_tolstring(sb.L, -1, &len);
          if (len != n || memcmp(got, str, n) != 0)
            fail_msg("%s: value read as %s", doc, got);
          lua_pop(sb.L, 1);
          assert_false(lua_next(sb.L, -2)); /* one key */
          lua_pop(sb.L, 1);
        }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
}

/* The values on top of PLAIN (a plain state) and SB (a sandbox's) encode
 * as the same text, A and B (reset first); DOC names the case. */
static void same_text(lua_State *plain, lua_State *sb, const char *doc,
                      vd_buf_t *a, vd_buf_t *b) {
  vd_buf_t err = VD_BUF_INIT;
  vd_buf_reset(a);
  vd_buf_reset(b);
  assert_int_equal(vd_json_encode(plain, -1, a, "value", &err), 0);
  assert_int_equal(vd_json_encode(sb, -1, b, "value", &err), 0);
  if (strcmp(a->data, b->data) != 0)
    fail_msg("%s: plain %s, sandbox %s", doc, a->data, b->data);
  vd_buf_release(&err);
}

/* Key shapes (json.c): in a sandbox's state an object's keys are sorted
 * and escaped once per shape, then copied.  The text is the same as a
 * plain state's (no cache) every time: for the same shape again, for
 * shapes that replace each other in the cache, for keys that need
 * escaping, and for a key freed and another made, perhaps at its address,
 * with other bytes. */
static void key_shapes_same_text(void **state) {
  fx_t *f = *state; /* the plain state */
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, a = VD_BUF_INIT, b = VD_BUF_INIT;
  char doc[512];
  int i, round;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  for (round = 0; round < 3; round++) {
    for (i = 0; i < 400; i++) {
      size_t n;
      /* two-letter keys, new each time (the old ones collected), then
       * shapes of 1 to 20 keys, escapes and non-ASCII among them */
      if (i < 100)
        n = (size_t)snprintf(doc, sizeof doc, "{\"%c%c\":%d,\"z\":[{\"%c\":1}]}",
                             'a' + i % 26, 'a' + (i * 7 + round) % 26, i,
                             'a' + i % 13);
      else if (i < 200)
        n = (size_t)snprintf(doc, sizeof doc,
                             "{\"k%d\":1,\"q\\\"%d\":2,\"\\u00e9%d\":3,"
                             "\"\\u0001\":4,\"k%d\":{\"b\":1,\"a\":2}}",
                             i % 40, i % 3, i % 5, i % 7 + 100);
      else if (i >= 300) { /* objects inside objects, shapes of their own:
                            * an inner one may map to the outer's slot */
        int j;
        n = (size_t)snprintf(doc, sizeof doc, "{");
        for (j = 0; j < 8; j++)
          n += (size_t)snprintf(doc + n, sizeof doc - n,
                                "%s\"o%d\":{\"i%d_%d\":%d,\"x\":0}", j ? "," : "",
                                (i + j) % 11, i % 50, j, j);
        n += (size_t)snprintf(doc + n, sizeof doc - n, "}");
      } else {
        int j, m = i % 20 + 1;
        n = (size_t)snprintf(doc, sizeof doc, "{");
        for (j = 0; j < m; j++)
          n += (size_t)snprintf(doc + n, sizeof doc - n, "%s\"f%d\":%d",
                                j ? "," : "", (j * 37 + i) % 23, j);
        n += (size_t)snprintf(doc + n, sizeof doc - n, "}");
      }
      assert_int_equal(vd_json_decode(f->L, doc, n, 0, &err), 0);
      assert_int_equal(vd_json_decode(sb.L, doc, n, 0, &err), 0);
      same_text(f->L, sb.L, doc, &a, &b);
      vd_buf_reset(&b);
      assert_int_equal(vd_json_encode(sb.L, -1, &b, "value", &err), 0);
      assert_string_equal(a.data, b.data); /* the shape kept */
      lua_pop(f->L, 1);
      lua_pop(sb.L, 1);
      lua_gc(sb.L, LUA_GCCOLLECT); /* the keys freed: addresses reused */
    }
  }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&a);
  vd_buf_release(&b);
}

/* Key shapes (json.c) are found by their keys' addresses and used only
 * when the bytes there are still the kept ones: a key of every length to
 * 24 is encoded, collected, and another of its length made, one byte
 * changed at each offset (the allocator often gives it the freed
 * address); each encodes as itself. */
static void key_shapes_same_address(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  char code[160], want[64];
  int n, at, round;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  for (n = 1; n <= 24; n++)
    for (at = 0; at < n; at++)
      for (round = 0; round < 2; round++) {
        /* made at run time: not a constant the chunk keeps */
        snprintf(code, sizeof code,
                 "local k = string.rep('a', %d) if %d == 1 then "
                 "k = k:sub(1, %d) .. 'b' .. k:sub(%d) end "
                 "return {[k] = 1}", n, round, at, at + 2);
        assert_int_equal(luaL_dostring(sb.L, code), LUA_OK);
        vd_buf_reset(&out);
        assert_int_equal(vd_json_encode(sb.L, -1, &out, "value", &err), 0);
        memset(want, 'a', (size_t)n + 2);
        want[0] = '{';
        want[1] = '"';
        if (round)
          want[2 + at] = 'b';
        snprintf(want + 2 + n, sizeof want - 2 - (size_t)n, "\":1}");
        if (strcmp(out.data, want) != 0)
          fail_msg("length %d, byte %d, round %d: %s, wanted %s", n, at,
                   round, out.data, want);
        lua_settop(sb.L, 0);
        lua_gc(sb.L, LUA_GCCOLLECT);
      }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* Key shapes are kept two to a set (json.c): any two objects written in
 * turn, as a decision's result and its trace entries are, keep their
 * shapes, whatever addresses their keys have.  40 one-key objects, every
 * pair written twice in turn: the second time, no object misses its
 * shape.  Direct-mapped, the pairs whose keys fall in one slot evicted
 * each other every time (with 40 keys in 64 slots, some do). */
static void key_shapes_two_a_set(void **state) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  int i, j, round, side;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  /* keys made at run time, kept alive (their addresses stay) */
  assert_int_equal(luaL_dostring(sb.L, "local t = {} for i = 1, 40 do "
                                       "t[i] = {[('k'):rep(i % 7 + 1) .. i] = i} "
                                       "end return t"),
                   LUA_OK);
  for (i = 1; i <= 40; i++)
    for (j = i + 1; j <= 40; j++)
      for (round = 0; round < 2; round++) {
        unsigned long before = vd_json_shape_misses(sb.L);
        for (side = 0; side < 2; side++) {
          lua_rawgeti(sb.L, 1, side ? j : i);
          vd_buf_reset(&out);
          assert_int_equal(vd_json_encode(sb.L, -1, &out, "value", &err), 0);
          lua_pop(sb.L, 1);
        }
        if (round == 1 && vd_json_shape_misses(sb.L) != before)
          fail_msg("objects %d and %d evicted each other's shapes", i, j);
      }
  assert_true(vd_json_shape_misses(sb.L) > 0); /* it counts */
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&out);
}

/* Key strings (json.c): a sandbox's decoder keeps the strings of short
 * plain keys and pushes a kept one when its bytes come again.  600 keys
 * of 1 to 30 bytes (22, the longest kept, and 23 among them; keys that
 * are prefixes of others; keys with escapes), eight to an object, three
 * rounds, a full collection after each: every object has exactly its
 * keys with their values, encodes as a plain state's does, and the
 * registry holds at most 128 more references than before (and the two
 * markers'), however many keys came. */
static void key_strings_same_keys(void **state) {
  fx_t *f = *state; /* the plain state */
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, a = VD_BUF_INIT, b = VD_BUF_INIT;
  char keys[600][40], doc[1024];
  size_t refs;
  int i, j, round;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  refs = lua_rawlen(sb.L, LUA_REGISTRYINDEX);
  for (i = 0; i < 600; i++) {
    int len = i % 30 + 1, k, p;
    if (i % 97 == 5) { /* one with an escape: left to the plain path */
      snprintf(keys[i], sizeof keys[i], "e\\\\%d", i);
      continue;
    }
    p = snprintf(keys[i], sizeof keys[i], "%d_", i);
    for (k = p; k < len; k++)
      keys[i][k] = (char)('a' + (i + k) % 26);
    keys[i][len > p ? len : p] = '\0';
  }
  memcpy(keys[1], "abcdefghijklmnopqrstuv", 23);   /* 22 bytes: kept */
  memcpy(keys[2], "abcdefghijklmnopqrstuvw", 24);  /* 23: not kept */
  memcpy(keys[3], "abcdefghijklmnopqrstu", 22);    /* 21: a prefix */
  for (round = 0; round < 3; round++) {
    for (i = 0; i < 600; i += 8) {
      size_t n = (size_t)snprintf(doc, sizeof doc, "{");
      for (j = 0; j < 8 && i + j < 600; j++)
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%s\"%s\":%d",
                              j ? "," : "", keys[(i + j + round * 3) % 600],
                              (i + j + round * 3) % 600);
      n += (size_t)snprintf(doc + n, sizeof doc - n, "}");
      if (vd_json_decode(sb.L, doc, n, 0, &err) != 0)
        fail_msg("%s: %s", doc, err.data);
      for (j = 0; j < 8 && i + j < 600; j++) {
        int x = (i + j + round * 3) % 600;
        if (strchr(keys[x], '\\'))
          continue;
        if (lua_getfield(sb.L, -1, keys[x]) != LUA_TNUMBER ||
            lua_tointeger(sb.L, -1) != x)
          fail_msg("%s: key %s lost", doc, keys[x]);
        lua_pop(sb.L, 1);
      }
      lua_pushnil(sb.L);
      for (j = 0; lua_next(sb.L, -2); j++)
        lua_pop(sb.L, 1);
      assert_int_equal(j, i + 8 <= 600 ? 8 : 600 - i);
      assert_int_equal(vd_json_decode(f->L, doc, n, 0, &err), 0);
      same_text(f->L, sb.L, doc, &a, &b);
      lua_pop(f->L, 1);
      lua_pop(sb.L, 1);
    }
    lua_gc(sb.L, LUA_GCCOLLECT); /* the kept strings stay, held */
  }
  /* 128 references, the two markers' (json.c: for the decoder), and the
   * entry where luaL_ref keeps its free list */
  assert_true(lua_rawlen(sb.L, LUA_REGISTRYINDEX) <= refs + 128 + 2 + 1);
  assert_true(lua_rawlen(sb.L, LUA_REGISTRYINDEX) > refs); /* some kept */
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  vd_buf_release(&a);
  vd_buf_release(&b);
}

/* Foretold strings (json.c, key_foretold): a sandbox's decoder first
 * tries, for the n-th string of a document, the kept string the n-th was
 * last time.  Documents whose n-th string is that string's bytes and then
 * something else (a longer string, an escape, a byte above ASCII, the end
 * of the text, a string with a digit, a key where a value was, bytes
 * that differ only past the first word or only in the first), one after
 * the other in both orders and three rounds, each decode as a plain
 * state's do: the same code, the same message, the same text; a text
 * that is not JSON is refused however its strings begin. */
static void foretold_strings_same_values(void **state) {
  fx_t *f = *state; /* the plain state */
  static const char *const docs[] = {
      "{\"kind\":\"billing\",\"cat\":\"retail\"}",
      "{\"kindx\":\"billingx\",\"cat\":\"retailer\"}",
      "{\"kind\\\"\":\"billing\\n\",\"cat\":\"retail\\u0041\"}",
      "{\"kind\xc3\xa9\":\"billing\xc3\xa9\",\"cat\":\"retail\"}",
      "{\"kind\":\"billing",
      "{\"kind\":\"billing\"",
      "{\"kind\":\"billing\" ,\"cat\" : \"retail\" }",
      "{\"kind\":\"kind\",\"billing\":\"cat\"}",
      "{\"kind\":\"billing2\",\"cat\":\"r2\"}",
      "{\"kin\":\"billin\",\"ca\":\"retai\"}",
      "{\"kind\":[\"billing\",\"retail\"],\"cat\":{\"retail\":\"kind\"}}",
      "[\"kind\",\"billing\",\"cat\",\"retail\"]",
      "{\"kind\":\"bi\x01ling\",\"cat\":\"retail\"}",
      "{\"kind\":\"billing\",\"cat\":\"retail\",\"cat\":\"billing\"}",
      "{\"abcdefghijklmnopqrstuv\":\"abcdefghijklmnopqrstuv\"}",
      "{\"abcdefghijklmnopqrstuvw\":\"abcdefghijklmnopqrstuvw\"}",
      "{\"abcdefghijklmnopqrstuv\":\"abcdefghijklmnopqrstu\"}",
      "{\"kind\":\"billingX,\"cat\":\"retail\"}", /* not JSON */
      "{\"kind\":\"customer_grade\",\"cat\":\"retail\"}",
      "{\"kind\":\"customer_grady\",\"cat\":\"retail\"}",
      "{\"kind\":\"dustomer_grade\",\"cat\":\"retail\"}",
      "{\"kind\":\"customer_grade_level\",\"cat\":\"retail\"}",
      "{\"kind\":\"customer_grXde_level\",\"cat\":\"retail\"}",
  };
  const size_t ndocs = sizeof docs / sizeof *docs;
  vd_sandbox_t sb;
  vd_buf_t e1 = VD_BUF_INIT, e2 = VD_BUF_INIT, a = VD_BUF_INIT,
           b = VD_BUF_INIT;
  size_t i, j, round;
  assert_int_equal(vd_sandbox_init(&sb, &e1), 0);
  for (round = 0; round < 3; round++)
    for (i = 0; i < ndocs; i++)
      for (j = 0; j < ndocs; j++) {
        const char *pair[2];
        int k;
        pair[0] = docs[round == 1 ? j : i];
        pair[1] = docs[round == 1 ? i : j];
        for (k = 0; k < 2; k++) {
          size_t n = strlen(pair[k]);
          int r1 = vd_json_decode(f->L, pair[k], n, 0, &e1);
          int r2 = vd_json_decode(sb.L, pair[k], n, 0, &e2);
          if (r1 != r2 || (r1 && strcmp(e1.data, e2.data) != 0))
            fail_msg("%s after %s: plain %d (%s), sandbox %d (%s)", pair[k],
                     pair[!k], r1, r1 ? e1.data : "", r2, r2 ? e2.data : "");
          if (r1)
            continue;
          same_text(f->L, sb.L, pair[k], &a, &b);
          lua_pop(f->L, 1);
          lua_pop(sb.L, 1);
        }
        if (round == 2)
          lua_gc(sb.L, LUA_GCCOLLECT);
      }
  vd_sandbox_release(&sb);
  vd_buf_release(&e1);
  vd_buf_release(&e2);
  vd_buf_release(&a);
  vd_buf_release(&b);
}

/* vd_json_decode_flat(): a top-level object's members left flat and
 * noted: keys and plain string values in the text, never pushed; other
 * values pushed in order, each at its note's slot; the members of its
 * "input" object noted, from the text where it has them plainly, from
 * the Lua strings where it has escapes.  Only for an object whose keys
 * are plain, in a sandbox's state, of as many members as the notes hold,
 * read by the quick pass: else the table a plain decode makes, slot for
 * slot, as vd_json_flat_table() makes of flat members.  It fails if a
 * member or note is missing, in the wrong order or slot, or if a table
 * made differs from the plain decode's in its walk. */
static void walk_text(lua_State *L, int idx, vd_buf_t *out) {
  idx = lua_absindex(L, idx);
  vd_buf_reset(out);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    vd_buf_addf(out, "%s=", lua_tostring(L, -2));
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
      vd_buf_adds(out, lua_tostring(L, -1));
    else
      vd_buf_adds(out, luaL_typename(L, -1));
    vd_buf_addc(out, ',');
    lua_pop(L, 1);
  }
}

/* Decode TEXT flat on L (empty), then its table (vd_json_flat_table() of
 * the flat members, or the table it pushed) walked beside the plain
 * decode's; the notes, or NULL. */
static const vd_json_notes_t *flat_same_table(lua_State *L, const char *text,
                                              size_t n) {
  vd_buf_t err = VD_BUF_INIT, want = VD_BUF_INIT, got = VD_BUF_INIT;
  const vd_json_notes_t *nt;
  assert_int_equal(vd_json_decode_flat(L, text, n, 0, &err, "input", &nt), 0);
  if (nt)
    vd_json_flat_table(L, nt);
  assert_int_equal(lua_gettop(L), 1);
  assert_int_equal(vd_json_marker(L, 1), 2);
  walk_text(L, 1, &got);
  assert_int_equal(vd_json_decode_protected(L, text, n, 0, &err), 0);
  walk_text(L, 2, &want);
  assert_string_equal(got.data, want.data);
  lua_settop(L, 0);
  vd_buf_release(&err);
  vd_buf_release(&want);
  vd_buf_release(&got);
  return nt;
}

static void decode_flat(void **state) {
  static const char doc[] =
      "{\"kind\":\"sla\",\"id\":{\"input\":1},\"input\":{\"a\":1,"
      "\"b\":\"x\\ty\",\"c\":[2],\"d\":{\"e\":\"f\"},\"b\":\"z\"},\"n\":null,"
      "\"s\":\"a\\tb\",\"kind\":\"again\"}";
  static const char escaped_key[] =
      "{\"kind\":\"sla\",\"id\":7,\"\\u0069nput\":{\"a\":1},\"n\":null}";
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT, big = VD_BUF_INIT;
  const vd_json_notes_t *nt;
  lua_State *plain = luaL_newstate();
  int i, round;
  (void)state;
  assert_int_equal(vd_sandbox_init(&sb, &err), 0);
  vd_json_setup(plain);
  for (round = 0; round < 2; round++) { /* the second: strings foretold */
    assert_int_equal(vd_json_decode_flat(sb.L, doc, sizeof doc - 1, 0, &err,
                                         "input", &nt), 0);
    assert_non_null(nt);
    assert_int_equal(nt->ntop, 6);
    /* pushed: id, input, null, the escaped string */
    assert_int_equal(lua_gettop(sb.L), 4);
    for (i = 0; i < 6; i++)
      assert_true(nt->top[i].k > doc && nt->top[i].k < doc + sizeof doc);
    assert_int_equal(nt->top[0].kn, 4);
    assert_memory_equal(nt->top[0].k, "kind", 4);
    assert_int_equal(nt->top[0].type, LUA_TSTRING);
    assert_int_equal(nt->top[0].slot, 0);
    assert_int_equal(nt->top[0].n, 3);
    assert_memory_equal(nt->top[0].s, "sla", 3);
    assert_true(nt->top[0].s > doc && nt->top[0].s < doc + sizeof doc);
    assert_int_equal(nt->top[1].type, LUA_TTABLE);
    assert_int_equal(nt->top[1].array, 0);
    assert_int_equal(nt->top[1].slot, 1);
    assert_int_equal(nt->top[2].kn, 5);
    assert_memory_equal(nt->top[2].k, "input", 5);
    assert_int_equal(nt->top[2].type, LUA_TTABLE);
    assert_int_equal(nt->top[2].slot, 2);
    assert_int_equal(vd_json_marker(sb.L, 2), 2);
    assert_int_equal(nt->top[3].type, LUA_TLIGHTUSERDATA);
    assert_int_equal(nt->top[3].slot, 3);
    assert_int_equal(nt->top[4].type, LUA_TSTRING); /* escaped: pushed */
    assert_int_equal(nt->top[4].slot, 4);
    assert_int_equal(nt->top[4].n, 3);
    assert_ptr_equal(nt->top[4].s, lua_tostring(sb.L, 4));
    assert_int_equal(nt->top[5].slot, 0); /* the repeated key, noted too */
    assert_memory_equal(nt->top[5].s, "again", 5);
    /* the input's members, not the id's object's */
    assert_int_equal(nt->nsub, 5);
    for (i = 0; i < 5; i++)
      assert_int_equal(nt->sub[i].kn, 1);
    assert_int_equal(nt->sub[0].type, LUA_TNUMBER);
    assert_int_equal(nt->sub[1].type, LUA_TSTRING);
    assert_int_equal(nt->sub[1].n, 3);
    assert_memory_equal(nt->sub[1].s, "x\ty", 3);
    assert_int_equal(nt->sub[2].type, LUA_TTABLE);
    assert_int_equal(nt->sub[2].array, 1);
    assert_int_equal(nt->sub[3].array, 0);
    assert_memory_equal(nt->sub[4].k, "b", 1);
    assert_memory_equal(nt->sub[4].s, "z", 1);
    assert_true(nt->sub[4].s > doc && nt->sub[4].s < doc + sizeof doc);
    lua_settop(sb.L, 0);
    /* the table of them: the plain decode's, walked in the same order */
    assert_non_null(flat_same_table(sb.L, doc, sizeof doc - 1));
    /* a key with an escape: a table from there on, the same table */
    assert_null(flat_same_table(sb.L, escaped_key, sizeof escaped_key - 1));
  }
  /* empty: flat, no member */
  assert_int_equal(vd_json_decode_flat(sb.L, " {} ", 4, 0, &err, "input",
                                       &nt), 0);
  assert_non_null(nt);
  assert_int_equal(nt->ntop, 0);
  assert_int_equal(lua_gettop(sb.L), 0);
  vd_json_flat_table(sb.L, nt);
  assert_int_equal(vd_json_marker(sb.L, 1), 2);
  lua_settop(sb.L, 0);
  /* only strings: nothing pushed */
  assert_non_null(flat_same_table(sb.L, "{\"a\":\"1\",\"b\":\"2\"}", 17));
  /* a decode that fails: nothing; a list, a string: the value */
  nt = (const vd_json_notes_t *)&err;
  assert_int_equal(vd_json_decode_flat(sb.L, "{\"a\":", 5, 0, &err, "input",
                                       &nt), VD_EBAD_REQUEST);
  assert_null(nt);
  assert_int_equal(lua_gettop(sb.L), 0);
  assert_int_equal(vd_json_decode_flat(sb.L, "[{\"a\":1}]", 9, 0, &err,
                                       "input", &nt), 0);
  assert_null(nt);
  assert_int_equal(lua_gettop(sb.L), 1);
  assert_int_equal(vd_json_decode_flat(sb.L, "\"s\"", 3, 0, &err, "input",
                                       &nt), 0);
  assert_null(nt);
  assert_int_equal(lua_gettop(sb.L), 2);
  lua_settop(sb.L, 0);
  /* a string of escapes longer than the quick pass unescapes: read by
   * yajl, whose keys are not the text's: a table */
  vd_buf_reset(&big);
  vd_buf_adds(&big, "{\"a\":\"");
  for (i = 0; i < 300; i++)
    vd_buf_adds(&big, "\\t");
  vd_buf_adds(&big, "\",\"b\":[]}");
  assert_null(flat_same_table(sb.L, big.data, big.len));
  /* not a sandbox's state: no notes, a table */
  assert_int_equal(vd_json_decode_flat(plain, doc, sizeof doc - 1, 0, &err,
                                       "input", &nt), 0);
  assert_null(nt);
  assert_int_equal(lua_gettop(plain), 1);
  /* as many top-level members as the notes hold, then one more: the last
   * a number (pushed), a plain string, an escaped key; each a table the
   * same as the plain decode's, with members after it too */
  for (round = 0; round < 3; round++) {
    static const char *const last[] = {",\"last\":0", ",\"last\":\"s\"",
                                       ",\"l\\u0061st\":0"};
    vd_buf_reset(&big);
    vd_buf_adds(&big, "{\"input\":{}");
    for (i = 1; i < VD_JSON_NOTES_TOP; i++)
      vd_buf_addf(&big, i % 2 ? ",\"k%d\":%d" : ",\"k%d\":\"%d\"", i, i);
    vd_buf_addc(&big, '}');
    assert_int_equal(vd_json_decode_flat(sb.L, big.data, big.len, 0, &err,
                                         "input", &nt), 0);
    assert_non_null(nt);
    assert_int_equal(nt->ntop, VD_JSON_NOTES_TOP);
    assert_int_equal(lua_gettop(sb.L), 1 + VD_JSON_NOTES_TOP / 2);
    lua_settop(sb.L, 0);
    assert_non_null(flat_same_table(sb.L, big.data, big.len));
    big.len--;
    vd_buf_adds(&big, last[round]);
    vd_buf_adds(&big, ",\"k1\":\"again\",\"more\":[1]}");
    assert_null(flat_same_table(sb.L, big.data, big.len));
    assert_int_equal(vd_json_decode_flat(sb.L, big.data, big.len, 0, &err,
                                         "input", &nt), 0);
    assert_null(nt);
    lua_getfield(sb.L, 1, "k1");
    assert_string_equal(lua_tostring(sb.L, -1), "again");
    lua_getfield(sb.L, 1, "input");
    assert_int_equal(vd_json_marker(sb.L, -1), 2);
    lua_settop(sb.L, 0);
  }
  /* an escaped key past the first: the members before it in the table */
  assert_null(flat_same_table(sb.L, "{\"a\":1,\"b\":\"x\",\"c\":[],\"\\u0064\":2}",
                              33));
  /* an input of as many members as they hold, then one more */
  vd_buf_reset(&big);
  vd_buf_adds(&big, "{\"input\":{\"k0\":0");
  for (i = 1; i < VD_JSON_NOTES_SUB; i++)
    vd_buf_addf(&big, ",\"k%d\":%d", i, i);
  vd_buf_adds(&big, "}}");
  assert_int_equal(vd_json_decode_flat(sb.L, big.data, big.len, 0, &err,
                                       "input", &nt), 0);
  assert_non_null(nt);
  assert_int_equal(nt->nsub, VD_JSON_NOTES_SUB);
  lua_settop(sb.L, 0);
  big.len -= 2;
  vd_buf_adds(&big, ",\"last\":0}}");
  assert_int_equal(vd_json_decode_flat(sb.L, big.data, big.len, 0, &err,
                                       "input", &nt), 0);
  assert_non_null(nt);
  assert_int_equal(nt->nsub, -1);
  lua_settop(sb.L, 0);
  vd_sandbox_release(&sb);
  lua_close(plain);
  vd_buf_release(&err);
  vd_buf_release(&big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(integers_stay_integers, setup, teardown),
      cmocka_unit_test_setup_teardown(floats_stay_floats, setup, teardown),
      cmocka_unit_test_setup_teardown(big_integers_become_floats, setup,
                                      teardown),
      cmocka_unit_test(add_double_shortest),
      cmocka_unit_test_setup_teardown(nested_arrays, setup, teardown),
      cmocka_unit_test_setup_teardown(empty_object_vs_array, setup, teardown),
      cmocka_unit_test_setup_teardown(null_sentinel, setup, teardown),
      cmocka_unit_test_setup_teardown(scalars_and_booleans, setup, teardown),
      cmocka_unit_test_setup_teardown(keys_sorted_on_output, setup, teardown),
      cmocka_unit_test_setup_teardown(strings_escapes_unicode, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(invalid_utf8_rejected, setup, teardown),
      cmocka_unit_test_setup_teardown(invalid_utf8_strict_forms_rejected,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(trailing_comma_rejected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(error_names_byte_offset, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(blank_and_garbage_rejected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(nesting_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(lists_encoded_as_walked, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(encode_errors_name_path, setup,
                                      teardown),
      cmocka_unit_test(decode_under_fail_countdown),
      cmocka_unit_test(decode_under_memory_cap),
      cmocka_unit_test(encode_never_raises),
      cmocka_unit_test(string_escaping_matches_reference),
      cmocka_unit_test_setup_teardown(out_of_range_numbers_rejected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(quick_pass_matches_yajl, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(quick_pass_escapes, setup, teardown),
      cmocka_unit_test(sandbox_knows_markers),
      cmocka_unit_test(frozen_json_and_trace_notes),
      cmocka_unit_test(key_strings_every_byte),
      cmocka_unit_test(key_shapes_same_address),
      cmocka_unit_test(key_shapes_two_a_set),
      cmocka_unit_test(decode_flat),
      cmocka_unit_test_setup_teardown(foretold_strings_same_values, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(key_strings_same_keys, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(key_shapes_same_text, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
