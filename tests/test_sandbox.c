/*
 * test_sandbox.c - unit tests for core/sandbox.c: what policy code can
 * reach, and the limits it cannot get around.
 *
 * Each test runs small chunks in a fresh sandbox, the way the engine does:
 * a chunk environment over the base, armed with a budget and a memory cap.
 * Runs single-threaded from the repository root.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>

#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

#define BUDGET 1000000UL   /* instructions for one run */
#define MEMCAP (1u << 20)  /* bytes one run may add */

/* CPU seconds after which work that a bound should have stopped counts as
 * unbounded.  Not a speed target (benchmarks measure speed): each case
 * here ends in milliseconds when the charge or refusal comes before the
 * work, and in minutes or never when it does not, so the guard is set far
 * above what a sanitizer build or a loaded machine needs. */
#define HANG_GUARD_S 30.0

/* ------------------------------------------------------------------------
 * Fixture and helpers
 * ------------------------------------------------------------------------ */

typedef struct fx {
  vd_sandbox_t sb;
  vd_buf_t err;
  vd_buf_t out;   /* the chunk's first result, through tostring */
  int status;     /* lua_pcall status of the last run */
  int tripped;    /* sb.tripped at the end of the last run */
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  vd_buf_init(&f->err);
  vd_buf_init(&f->out);
  assert_int_equal(vd_sandbox_init(&f->sb, &f->err), 0);
  assert_ptr_equal(vd_sandbox_of(f->sb.L), &f->sb);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  vd_sandbox_release(&f->sb);
  assert_null(f->sb.L);
  vd_buf_release(&f->err);
  vd_buf_release(&f->out);
  free(f);
  return 0;
}

/* Run CODE as a chunk in a fresh environment, armed with budget and cap.
 * Returns the pcall status; f->out holds the first result (or the error)
 * as text, f->tripped what had tripped. */
static int run_with(fx_t *f, const char *code, unsigned long budget,
                    size_t cap) {
  lua_State *L = f->sb.L;
  int top = lua_gettop(L);
  vd_sandbox_new_env(L);
  if (vd_sandbox_load(L, "=test", code, strlen(code), -1) != LUA_OK)
    fail_msg("chunk does not compile: %s", lua_tostring(L, -1));
  lua_gc(L, LUA_GCCOLLECT);
  vd_sandbox_arm(&f->sb, budget, cap);
  f->status = lua_pcall(L, 0, 1, 0);
  f->tripped = f->sb.tripped;
  assert_int_equal(vd_sandbox_disarm(&f->sb), f->tripped);
  assert_int_equal(f->sb.tripped, 0);
  f->sb.limit = 0;
  vd_buf_reset(&f->out);
  switch (lua_type(L, -1)) {
  case LUA_TSTRING:
  case LUA_TNUMBER:
    vd_buf_adds(&f->out, lua_tostring(L, -1));
    break;
  case LUA_TBOOLEAN:
    vd_buf_adds(&f->out, lua_toboolean(L, -1) ? "true" : "false");
    break;
  case LUA_TNIL:
    vd_buf_adds(&f->out, "nil");
    break;
  default:
    vd_buf_adds(&f->out, luaL_typename(L, -1));
  }
  lua_settop(L, top);
  return f->status;
}

static int run(fx_t *f, const char *code) {
  return run_with(f, code, BUDGET, MEMCAP);
}

/* Run CODE, which must succeed, and return its result as text. */
static const char *ok(fx_t *f, const char *code) {
  if (run(f, code) != LUA_OK)
    fail_msg("chunk failed: %s\n  code: %s", f->out.data, code);
  return f->out.data;
}

/* Run CODE, which must raise; return the message. */
static const char *raises(fx_t *f, const char *code) {
  if (run(f, code) == LUA_OK)
    fail_msg("chunk did not raise (returned %s)\n  code: %s", f->out.data,
             code);
  return f->out.data;
}

static void assert_contains(const char *s, const char *sub) {
  if (!s || !strstr(s, sub))
    fail_msg("\"%s\" does not contain \"%s\"", s ? s : "(null)", sub);
}

/* ------------------------------------------------------------------------
 * What the base environment holds
 * ------------------------------------------------------------------------ */

static void forbidden_globals_absent(void **state) {
  fx_t *f = *state;
  static const char *const names[] = {
      "io", "os", "debug", "package", "dofile", "loadfile", "collectgarbage",
      "coroutine", "rawset", "next", "print", "require", "_G", "loadstring",
      "setfenv", "getfenv", "module", "unpack", "warn", NULL};
  const char *const *n;
  char code[128];
  for (n = names; *n; n++) {
    snprintf(code, sizeof code, "return %s == nil", *n);
    if (strcmp(ok(f, code), "true") != 0)
      fail_msg("global '%s' is reachable from a policy", *n);
  }
  /* and not through the environment table either */
  assert_string_equal(ok(f, "return rawget(_ENV, 'io') == nil and "
                            "_ENV.os == nil and _ENV['debug'] == nil"),
                      "true");
}

static void allowed_globals_present(void **state) {
  fx_t *f = *state;
  static const char *const names[] = {
      "assert", "error", "ipairs", "select", "tonumber", "type", "rawequal",
      "rawlen", "rawget", "getmetatable", "pcall", "xpcall", "tostring",
      "pairs", "load", "setmetatable", NULL};
  static const char *const libs[] = {"string", "table", "math", "utf8",
                                     "verdict", NULL};
  const char *const *n;
  char code[128];
  for (n = names; *n; n++) {
    snprintf(code, sizeof code, "return type(%s)", *n);
    if (strcmp(ok(f, code), "function") != 0)
      fail_msg("base function '%s' is missing", *n);
  }
  for (n = libs; *n; n++) {
    snprintf(code, sizeof code, "return type(%s)", *n);
    if (strcmp(ok(f, code), "table") != 0)
      fail_msg("library '%s' is missing", *n);
  }
  assert_string_equal(ok(f, "return _VERSION"), "Lua 5.4");
  assert_string_equal(ok(f, "return string.upper('ab') .. table.concat({1,2}"
                            ", '-') .. math.max(3, 9) .. utf8.char(72)"),
                      "AB1-29H");
  assert_string_equal(ok(f, "return math.type(1) .. math.type(1.0) .. "
                            "math.floor(2.5) .. math.maxinteger"),
                      "integerfloat29223372036854775807");
}

static void library_holes(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "return string.dump == nil"), "true");
  assert_string_equal(ok(f, "return math.random == nil and "
                            "math.randomseed == nil"), "true");
  /* through a string's methods as well */
  assert_string_equal(ok(f, "return ('').dump == nil"), "true");
  assert_string_equal(ok(f, "return ('abc'):upper() .. ('x'):rep(3)"),
                      "ABCxxx");
}

static void string_metatable_hidden(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "return getmetatable('') == false"), "true");
  assert_string_equal(ok(f, "return getmetatable('abc') == false"), "true");
  assert_contains(raises(f, "setmetatable('', {})"), "bad argument");
  assert_contains(raises(f, "local s = 'a' s.x = 1"), "index a string");
  /* libraries' metatables are hidden too */
  assert_string_equal(ok(f, "return getmetatable(string) == false and "
                            "getmetatable(math) == false and "
                            "getmetatable(verdict) == false and "
                            "getmetatable(_ENV) == false"), "true");
}

static void format_p_refused(void **state) {
  fx_t *f = *state;
  assert_contains(raises(f, "return string.format('%p', {})"),
                  "%p is not allowed");
  assert_contains(raises(f, "return string.format('x %-20p', {})"),
                  "%p is not allowed");
  assert_contains(raises(f, "return ('%5p'):format(string)"),
                  "%p is not allowed");
  /* ordinary formats still work, and "%%p" is a literal */
  assert_string_equal(ok(f, "return string.format('%%p %d %5.2f %s %q', 7, "
                            "1.5, 'x', 'y')"),
                      "%p 7  1.50 x \"y\"");
}

/* %s converts its argument with luaL_tolstring, which prints tables,
 * functions and userdata as "table: 0x55...": an address, different each
 * run, the very thing the address-free tostring exists to keep out.
 *
 * BUG (core/sandbox.c, sb_format): only %p is refused.  Fix: before
 * calling the original format, replace every argument that a %s consumes
 * and that is not a string or number by sb_tostring()'s result (or refuse
 * such arguments). */
static void format_s_has_no_address(void **state) {
  fx_t *f = *state;
  const char *s;
  s = ok(f, "return string.format('%s', {})");
  if (strstr(s, "0x"))
    fail_msg("BUG sandbox.c sb_format: string.format('%%s', {}) gives "
             "\"%s\"", s);
  s = ok(f, "return string.format('%s|%s', tostring, verdict.null)");
  if (strstr(s, "0x"))
    fail_msg("BUG sandbox.c sb_format: string.format('%%s', fn) gives "
             "\"%s\"", s);
}

static void binary_chunks_refused(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "return load(string.char(27) .. 'Lua') == nil"),
                      "true");
  assert_contains(ok(f, "return select(2, load(string.char(27) .. 'Lua'))"),
                  "attempt to load a binary chunk");
  assert_contains(raises(f, "return load('return 1', 'c', 'b')"),
                  "only text chunks");
  assert_contains(raises(f, "return load('return 1', 'c', 'bt')"),
                  "only text chunks");
  assert_contains(raises(f, "return load(function() return nil end)"),
                  "bad argument");
  /* text chunks load; their environment is read-only by default */
  assert_string_equal(ok(f, "return load('return 1 + 1', 'c', 't')()"), "2");
  assert_string_equal(ok(f, "return load('return x', 'c', 't', {x = 5})()"),
                      "5");
  assert_contains(raises(f, "load('y = 1')()"), "read-only");
  /* a syntax error comes back as nil, message */
  assert_contains(ok(f, "return select(2, load('return +'))"),
                  "unexpected symbol");
}

static void globals_locked_after_lock(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char code[] =
      "count = 1\n"
      "function bump() count = count + 1 return count end\n"
      "function fresh() brand_new = 1 end\n"
      "function read() return count end\n";
  int env;
  vd_sandbox_new_env(L);
  env = lua_gettop(L);
  assert_int_equal(vd_sandbox_load(L, "@g.lua", code, sizeof code - 1, env),
                   LUA_OK);
  vd_sandbox_arm(&f->sb, BUDGET, MEMCAP);
  assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_OK);
  vd_sandbox_lock_env(L, env);
  /* reading still works */
  lua_getfield(L, env, "read");
  assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
  assert_int_equal(lua_tointeger(L, -1), 1);
  lua_pop(L, 1);
  /* an existing name cannot change */
  lua_getfield(L, env, "bump");
  assert_int_not_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
  assert_contains(lua_tostring(L, -1), "g.lua:2: attempt to assign 'count' "
                                       "in a read-only table");
  lua_pop(L, 1);
  /* nor can a new one appear */
  lua_getfield(L, env, "fresh");
  assert_int_not_equal(lua_pcall(L, 0, 0, 0), LUA_OK);
  assert_contains(lua_tostring(L, -1), "'brand_new'");
  lua_pop(L, 1);
  /* and the value is unchanged */
  lua_getfield(L, env, "read");
  assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
  assert_int_equal(lua_tointeger(L, -1), 1);
  lua_pop(L, 1);
  /* the locked environment hides its metatable */
  lua_getfield(L, env, "getmetatable");
  lua_pushvalue(L, env);
  assert_int_equal(lua_pcall(L, 1, 1, 0), LUA_OK);
  assert_true(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
  lua_settop(L, env - 1);
  vd_sandbox_disarm(&f->sb);
  f->sb.limit = 0;
}

static void libraries_read_only(void **state) {
  fx_t *f = *state;
  static const char *const writes[] = {
      "string.upper = nil", "string.evil = 1", "table.insert = nil",
      "table.x = 1", "math.pi = 3", "math.floor = nil", "utf8.char = nil",
      "verdict.null = 1", "verdict.array = nil", NULL};
  const char *const *w;
  for (w = writes; *w; w++) {
    if (run(f, *w) == LUA_OK)
      fail_msg("'%s' succeeded", *w);
    assert_contains(f->out.data, "read-only table");
  }
  assert_contains(raises(f, "setmetatable(string, {})"),
                  "cannot change a protected metatable");
  assert_contains(raises(f, "setmetatable(_ENV, {})"),
                  "cannot change a protected metatable");
  /* the libraries are unchanged afterwards */
  assert_string_equal(ok(f, "return math.pi > 3.14 and string.upper('a') == "
                            "'A' and type(table.insert) == 'function' and "
                            "string.evil == nil"),
                      "true");
}

static void gc_metamethod_refused(void **state) {
  fx_t *f = *state;
  assert_contains(raises(f, "setmetatable({}, {__gc = function() end})"),
                  "__gc is not allowed");
  assert_contains(raises(f, "setmetatable({}, {__gc = false})"),
                  "__gc is not allowed");
  /* other metamethods are fine */
  assert_string_equal(ok(f, "local t = setmetatable({}, {__index = "
                            "function(_, k) return k .. '!' end}) "
                            "return t.hi"),
                      "hi!");
  assert_contains(raises(f, "setmetatable({}, 5)"), "nil or table");
}

static void pairs_deterministic(void **state) {
  fx_t *f = *state;
  /* numbers ascending, then strings bytewise, then booleans */
  assert_string_equal(
      ok(f, "local t = { b = 1, a = 2, [3] = 3, [1] = 1, c = 3, [2.5] = 4, "
            "[true] = 5, B = 6, [-7] = 7, [false] = 8, aa = 9 } "
            "local out = {} "
            "for k, v in pairs(t) do out[#out + 1] = tostring(k) .. '=' .. "
            "tostring(v) end return table.concat(out, ' ')"),
      "-7=7 1=1 2.5=4 3=3 B=6 a=2 aa=9 b=1 c=3 false=8 true=5");
  /* many string keys, inserted in a scrambled order */
  assert_string_equal(
      ok(f, "local t = {} for i = 1, 200 do t[string.format('k%03d', "
            "(i * 37) % 200)] = i end local prev, n = '', 0 "
            "for k in pairs(t) do assert(k > prev, k) prev = k n = n + 1 end "
            "return n .. ' ' .. prev"),
      "200 k199");
  /* empty and one-element tables */
  assert_string_equal(ok(f, "local n = 0 for _ in pairs({}) do n = n + 1 end "
                            "for k, v in pairs({x = 1}) do n = n + v end "
                            "return n"),
                      "1");
  assert_contains(raises(f, "for _ in pairs(nil) do end"), "bad argument");
}

/* pairs over tables big enough to need its larger key buffers, many times
 * over, with garbage made in the loop body so that collections run while
 * iterations are being set up.  Run it under valgrind or ASan too. */
static void pairs_large_tables_stress(void **state) {
  fx_t *f = *state;
  int status = run_with(
      f, "local t = {} "
            "for i = 1, 150 do t[string.format('k%03d', (i * 7) % 150)] = i "
            "t[i * 2] = i end "
            "t[0.5] = 0 t[true] = 1 t[false] = 2 "
            "local count = 0 "
            "for rep = 1, 200 do "
            "  local lastnum, laststr, n, phase = -1, '', 0, 0 "
            "  for k, v in pairs(t) do "
            "    local junk = { k, v, rep, tostring(k) .. rep } "
            "    local ty = type(k) "
            "    if ty == 'number' then assert(phase == 0 and k > lastnum) "
            "      lastnum = k "
            "    elseif ty == 'string' then assert(phase <= 1 and k > laststr) "
            "      phase = 1 laststr = k "
            "    else assert(phase <= 2) phase = 2 end "
            "    assert(t[k] == v) n = n + 1 "
            "  end "
            "  assert(n == 303, n) count = count + n "
            "end return count",
      50000000UL, 8u << 20);
  if (status != LUA_OK)
    fail_msg("pairs stress failed: %s", f->out.data);
  assert_string_equal(f->out.data, "60600");
}

static void tostring_has_no_address(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "return tostring({})"), "table");
  assert_string_equal(ok(f, "return tostring(tostring)"), "function");
  assert_string_equal(ok(f, "return tostring(string.upper)"), "function");
  assert_string_equal(ok(f, "return tostring(verdict.null)"), "null");
  assert_string_equal(ok(f, "return tostring(verdict.array())"), "table");
  assert_string_equal(ok(f, "return tostring(1.5) .. tostring(2) .. "
                            "tostring(nil) .. tostring(true)"),
                      "1.52niltrue");
  assert_string_equal(ok(f, "return tostring(setmetatable({}, {__tostring = "
                            "function() return 'T' end}))"),
                      "T");
  assert_string_equal(ok(f, "return tostring(setmetatable({}, {__name = "
                            "'X'}))"),
                      "table");
}

static void verdict_library(void **state) {
  static const char code[] = "return verdict.object(), verdict.array({})";
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  assert_string_equal(ok(f, "return verdict.is_null(verdict.null) and not "
                            "verdict.is_null(nil) and not "
                            "verdict.is_null(false)"),
                      "true");
  assert_string_equal(ok(f, "return getmetatable(verdict.array({1})) .. "
                            "getmetatable(verdict.object()) "),
                      "arrayobject");
  assert_contains(raises(f, "verdict.array(setmetatable({}, {}))"),
                  "already has a metatable");
  assert_contains(raises(f, "setmetatable(verdict.array(), {})"),
                  "protected metatable");
  /* the table helpers the schema library uses on every request */
  assert_string_equal(ok(f, "local t = {a = 1, b = verdict.null} "
                            "return tostring(verdict.only_keys(t, {a = 1, "
                            "b = 2, c = 3})) .. tostring(verdict.only_keys(t, "
                            "{a = true})) .. tostring(verdict.only_keys({}, {})) "
                            ".. tostring(verdict.only_keys({1}, {a = 1}))"),
                      "truefalsetruefalse");
  assert_string_equal(ok(f, "return tostring(verdict.is_empty({})) .. "
                            "tostring(verdict.is_empty({false})) .. "
                            "tostring(verdict.is_empty({x = 0}))"),
                      "truefalsefalse");
  assert_string_equal(ok(f, "local t = verdict.new_table(2, 13) t.x = 1 "
                            "t[1] = 2 return t.x + t[1] + #t"),
                      "4");
  assert_contains(raises(f, "verdict.new_table(-1)"), "expected 0 to 4096");
  /* sizes other than integers read as luaL_optinteger reads them */
  assert_string_equal(ok(f, "local t = { verdict.new_table(), "
                            "verdict.new_table(nil, 2.0), verdict.new_table('3', "
                            "'4') } return #t"),
                      "3");
  assert_contains(raises(f, "verdict.new_table(2.5)"),
                  "number has no integer representation");
  assert_contains(raises(f, "verdict.new_table(0, {})"), "number expected");
  /* json_type: the marker says, not the keys nor a look-alike metatable */
  assert_string_equal(ok(f, "local j = verdict.json_type "
                            "return table.concat({tostring(j(verdict.array())), "
                            "tostring(j(verdict.object())), "
                            "tostring(j(verdict.object({1}))), tostring(j({})), "
                            "tostring(j(setmetatable({}, {__metatable = "
                            "'object'}))), tostring(j('x')), "
                            "tostring(j(verdict.null)), tostring(j())}, ' ')"),
                      "array object object nil nil nil nil nil");
  assert_contains(raises(f, "verdict.only_keys(1, {})"), "table expected");
  /* the markers are the ones the encoder knows */
  vd_sandbox_new_env(L);
  assert_int_equal(vd_sandbox_load(L, "=m", code, sizeof code - 1, -1),
                   LUA_OK);
  assert_int_equal(lua_pcall(L, 0, 2, 0), LUA_OK);
  assert_int_equal(vd_json_marker(L, -2), 2);
  assert_int_equal(vd_json_marker(L, -1), 1);
  lua_settop(L, 0);
}

/* ------------------------------------------------------------------------
 * Instruction budget
 * ------------------------------------------------------------------------ */

static void budget_trips(void **state) {
  fx_t *f = *state;
  assert_int_not_equal(run_with(f, "while true do end", 100000, MEMCAP),
                       LUA_OK);
  assert_int_equal(f->tripped, VD_EPOLICY_TIMEOUT);
  /* something well inside the budget is not stopped */
  assert_int_equal(run_with(f, "local n = 0 for i = 1, 1000 do n = n + i end "
                               "return n", 100000, MEMCAP), LUA_OK);
  assert_int_equal(f->tripped, 0);
  assert_string_equal(f->out.data, "500500");
  /* no budget (0) means no limit */
  assert_int_equal(run_with(f, "local n = 0 for i = 1, 300000 do n = n + 1 "
                               "end return n", 0, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "300000");
}

/* The error a timeout raises says what happened, and where: it is what a
 * policy's pcall sees and what vd_engine_new() puts in its load error
 * ("file:line: message").
 *
 * BUG (core/sandbox.c, count_hook): luaL_error(L, "instruction budget of
 * %lu exhausted", ...) -- lua_pushfstring knows no %lu, so the message is
 * "invalid option '%l' to 'lua_pushfstring'".  Fix: luaL_where(L, 0) (in a
 * hook, level 0 is the function that ran over; luaL_error's level 1 is its
 * caller, which gives no position), then lua_pushfstring(L, "%sinstruction
 * budget of %I exhausted", where, (lua_Integer)sb->budget) and lua_error. */
static void budget_message(void **state) {
  fx_t *f = *state;
  assert_int_not_equal(run_with(f, "local x = 0\nwhile true do x = x + 1 end",
                                100000, MEMCAP),
                       LUA_OK);
  assert_int_equal(f->tripped, VD_EPOLICY_TIMEOUT);
  if (strcmp(f->out.data, "test:2: instruction budget of 100000 exhausted"))
    fail_msg("BUG sandbox.c count_hook: the timeout error reads \"%s\"",
             f->out.data);
}

static void pcall_cannot_swallow_timeout(void **state) {
  fx_t *f = *state;
  static const char *const hostile[] = {
      "pcall(function() while true do end end) return 'swallowed'",
      "while true do pcall(function() while true do end end) end",
      "local ok = pcall(pcall, function() while true do end end) "
      "return 'swallowed'",
      "xpcall(function() while true do end end, function(m) return m end) "
      "return 'swallowed'",
      /* a handler that itself pcalls */
      "xpcall(function() while true do end end, function() "
      "return pcall(function() return 1 end) end) return 'swallowed'",
      /* a loop inside a metamethod inside pcall */
      "local t = setmetatable({}, {__index = function() while true do end "
      "end}) pcall(function() return t.x end) return 'swallowed'",
      /* a loop in a sort comparator */
      "pcall(table.sort, {3, 2, 1}, function(a, b) while true do end end) "
      "return 'swallowed'",
      NULL};
  const char *const *h;
  for (h = hostile; *h; h++) {
    if (run_with(f, *h, 100000, MEMCAP) == LUA_OK)
      fail_msg("timeout swallowed (result %s) by: %s", f->out.data, *h);
    if (f->tripped != VD_EPOLICY_TIMEOUT)
      fail_msg("tripped = %d, not VD_EPOLICY_TIMEOUT, for: %s", f->tripped,
               *h);
  }
}

/* A message handler runs while Lua still has hooks switched off for the
 * count hook that raised the timeout (lua_Debug hooks do not nest), so a
 * handler that loops is never stopped: the worker hangs for ever.  Each
 * case runs in a child process with a 3 s alarm (the budget takes
 * milliseconds) so that the test fails instead of hanging.
 *
 * BUG (core/sandbox.c, sb_xpcall / count_hook): the user's message handler
 * is called for the error raised inside count_hook, with hooks disabled.
 * Fix: have sb_xpcall pass lua_pcall a C message handler that returns the
 * message unchanged when sb->tripped is set and otherwise calls the
 * policy's handler (kept as an upvalue), so no policy code runs once a
 * limit has tripped. */
static void xpcall_handler_cannot_escape_budget(void **state) {
  fx_t *f = *state;
  static const char *const hostile[] = {
      "xpcall(function() while true do end end, function() while true do "
      "end end) return 'swallowed'",
      "xpcall(error, function() while true do end end) return 'swallowed'",
      NULL};
  const char *const *h;
  int hung = 0;
  for (h = hostile; *h; h++) {
    pid_t pid = fork();
    int wst;
    assert_true(pid >= 0);
    if (pid == 0) {
      alarm(3);
      run_with(f, *h, 100000, MEMCAP);
      _exit(f->status != LUA_OK && f->tripped == VD_EPOLICY_TIMEOUT ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    if (WIFSIGNALED(wst) && WTERMSIG(wst) == SIGALRM) {
      print_error("still running after 3 s: %s\n", *h);
      hung++;
    } else {
      assert_true(WIFEXITED(wst));
      if (WEXITSTATUS(wst) != 0)
        fail_msg("timeout swallowed or not reported by: %s", *h);
    }
  }
  if (hung)
    fail_msg("BUG sandbox.c sb_xpcall: %d looping message handler(s) ran "
             "without the instruction budget", hung);
}

/* ------------------------------------------------------------------------
 * Memory cap
 * ------------------------------------------------------------------------ */

static void memory_cap_trips(void **state) {
  fx_t *f = *state;
  assert_int_equal(run_with(f, "local t = {} for i = 1, 1e8 do "
                               "t[i] = string.rep('x', 100) .. i end",
                            50000000UL, MEMCAP), LUA_ERRMEM);
  assert_int_equal(run_with(f, "return #string.rep('x', 1 << 29)",
                            BUDGET, MEMCAP), LUA_ERRMEM);
  /* a string a little under the cap is fine */
  assert_int_equal(run_with(f, "return #string.rep('x', 500000)",
                            BUDGET, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "500000");
}

static void pcall_cannot_swallow_memory(void **state) {
  fx_t *f = *state;
  static const char *const hostile[] = {
      "pcall(function() local t = {} for i = 1, 1e8 do "
      "t[i] = string.rep('x', 100) .. i end end) return 'swallowed'",
      "local ok = pcall(string.rep, 'x', 1 << 29) return 'swallowed'",
      "xpcall(string.rep, function(m) return m end, 'x', 1 << 29) "
      "return 'swallowed'",
      "local t = {} while true do pcall(function() for i = 1, 1e9 do "
      "t[#t + 1] = string.rep('y', 4096) .. i end end) end",
      NULL};
  const char *const *h;
  for (h = hostile; *h; h++) {
    if (run_with(f, *h, 50000000UL, MEMCAP) == LUA_OK)
      fail_msg("memory error swallowed (result %s) by: %s", f->out.data, *h);
    if (f->tripped != VD_EPOLICY_MEMORY)
      fail_msg("tripped = %d, not VD_EPOLICY_MEMORY, for: %s", f->tripped,
               *h);
  }
}

/* load() parses in protected mode and returns (nil, "not enough memory")
 * when the parser runs out: a policy sees its memory error as an ordinary
 * value and carries on, and whether it does depends on how much memory the
 * state happened to hold -- a decision that depends on the heap.
 *
 * BUG (core/sandbox.c, sb_load): a LUA_ERRMEM status from
 * vd_sandbox_load() is turned into a return value.  Fix: call
 * rethrow_limits(L, status) when status == LUA_ERRMEM (and whenever
 * sb->tripped is set) before returning fail, message. */
static void load_cannot_swallow_memory(void **state) {
  fx_t *f = *state;
  run_with(f, "local src = string.rep('x=1\\n', 100000) "
              "local fn, e = load(src) return 'swallowed: ' .. tostring(e)",
           BUDGET, MEMCAP);
  if (f->status == LUA_OK)
    fail_msg("BUG sandbox.c sb_load: the policy caught its memory error and "
             "went on (%s)", f->out.data);
  assert_int_equal(f->tripped, VD_EPOLICY_MEMORY);
}

/* ------------------------------------------------------------------------
 * Pattern cost guard
 * ------------------------------------------------------------------------ */

static void pattern_guard(void **state) {
  fx_t *f = *state;
  static const char *const costly[] = {
      "return string.rep('a', 50000):find('.-.-.-b')",
      "local s = string.rep('a', 50000) return s:find('.-.-.-b')",
      "return string.rep('a', 50000):match('(.-)(.-)(.-)b')",
      "return string.rep('a', 50000):gsub('.-.-.-b', '')",
      "for m in string.rep('a', 50000):gmatch('a*a*a*b') do end",
      "return string.find(string.rep('a', 50000), '.*.*.*b')",
      NULL};
  const char *const *c;
  clock_t t0 = clock();
  for (c = costly; *c; c++) {
    if (run(f, *c) == LUA_OK)
      fail_msg("costly pattern allowed: %s", *c);
    assert_contains(f->out.data, "pattern too costly for a subject of 50000 "
                                 "bytes");
  }
  /* refused up front, not after seconds of backtracking */
  assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < HANG_GUARD_S);
  /* a plain find is linear and allowed */
  assert_string_equal(ok(f, "return tostring(string.rep('a', 50000):find("
                            "'.-.-.-b', 1, true))"),
                      "nil");
  assert_string_equal(ok(f, "return (string.rep('a', 50000) .. '.-b'):find("
                            "'.-b', 1, true)"),
                      "50001");
  /* ordinary patterns on ordinary subjects */
  assert_string_equal(ok(f, "local y, m, d = ('2026-11-23'):match("
                            "'^(%d+)-(%d+)-(%d+)$') return y .. m .. d"),
                      "20261123");
  assert_string_equal(ok(f, "return (('a, b,  c'):gsub(',%s*', ';'))"),
                      "a;b;c");
  assert_string_equal(ok(f, "local n = 0 for w in ('one two three'):gmatch("
                            "'%a+') do n = n + 1 end return n"),
                      "3");
  assert_string_equal(ok(f, "return ('hello world'):find('o w')"), "5");
  assert_string_equal(ok(f, "return ('GD-SZ'):match('^(%u+)%-')"), "GD");
  /* no repetition on a long subject is linear too */
  assert_string_equal(ok(f, "return tostring(string.rep('a', 50000):find("
                            "'b'))"),
                      "nil");
}

/* ------------------------------------------------------------------------
 * After a trip
 * ------------------------------------------------------------------------ */

static void next_evaluation_after_trip(void **state) {
  fx_t *f = *state;
  run_with(f, "while true do pcall(function() while true do end end) end",
           100000, MEMCAP);
  assert_int_equal(f->tripped, VD_EPOLICY_TIMEOUT);
  assert_int_equal(f->sb.tripped, 0); /* disarm cleared it */
  assert_int_equal(run_with(f, "local n = 0 for i = 1, 5000 do n = n + 1 end "
                               "local ok, e = pcall(error, 'x', 0) "
                               "return n .. tostring(ok) .. e",
                            100000, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "5000falsex");
  assert_int_equal(f->tripped, 0);

  run_with(f, "local t = {} while true do pcall(function() for i = 1, 1e9 "
              "do t[#t + 1] = string.rep('y', 4096) .. i end end) end",
           50000000UL, MEMCAP);
  assert_int_equal(f->tripped, VD_EPOLICY_MEMORY);
  assert_int_equal(run_with(f, "local ok, e = pcall(error, 'y', 0) "
                               "return #string.rep('z', 100000) .. e",
                            BUDGET, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "100000y");
  assert_int_equal(f->tripped, 0);
  /* the memory the bomb took is collected: the state is back near where
   * it started */
  lua_gc(f->sb.L, LUA_GCCOLLECT);
  assert_true(f->sb.used < 4u << 20);
}

static void arm_and_disarm(void **state) {
  fx_t *f = *state;
  vd_sandbox_arm(&f->sb, 1234, 100);
  assert_int_equal(f->sb.budget, 1234);
  assert_int_equal(f->sb.steps, 0);
  assert_int_equal(f->sb.limit, f->sb.used + 100);
  assert_int_equal(f->sb.tripped, 0);
  f->sb.tripped = VD_EPOLICY_MEMORY;
  assert_int_equal(vd_sandbox_disarm(&f->sb), VD_EPOLICY_MEMORY);
  assert_int_equal(vd_sandbox_disarm(&f->sb), 0);
  vd_sandbox_arm(&f->sb, 0, 0);
  assert_int_equal(f->sb.limit, 0); /* no cap */
  vd_sandbox_disarm(&f->sb);
}

/* set_base adds to what every chunk environment sees. */
static void set_base_visible(void **state) {
  fx_t *f = *state;
  lua_pushinteger(f->sb.L, 99);
  vd_sandbox_set_base(f->sb.L, "answer");
  assert_int_equal(lua_gettop(f->sb.L), 0);
  assert_string_equal(ok(f, "return answer"), "99");
  /* a chunk's own global shadows it in that chunk only */
  assert_string_equal(ok(f, "answer = 1 return answer"), "1");
  assert_string_equal(ok(f, "return answer"), "99");
}

/* ------------------------------------------------------------------------
 * Issue 11, cause 1: library functions in C are bounded and charged
 * ------------------------------------------------------------------------ */

/* Every wrapped function still answers as Lua's own does. */
static void wrapped_functions_keep_semantics(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "return ('hello'):find('l', 1, true)"), "3");
  assert_string_equal(ok(f, "return select(2, ('hello'):find('lo', -3, "
                            "true))"), "5");
  assert_string_equal(ok(f, "return tostring(('hello'):find('x', 1, true))"),
                      "nil");
  assert_string_equal(ok(f, "return tostring(('abc'):find('', 10, true))"),
                      "nil");
  assert_string_equal(ok(f, "return ('abc'):find('', 4)"), "4");
  assert_string_equal(ok(f, "return ('abc'):find('b')"), "2");
  assert_string_equal(ok(f, "return ('a(b)c'):match('%b()')"), "(b)");
  assert_string_equal(ok(f, "return ('aXbXc'):gsub('X', '-')"), "a-b-c");
  assert_string_equal(ok(f, "return ('ab'):rep(3, ',')"), "ab,ab,ab");
  assert_string_equal(ok(f, "return #(''):rep(1000)"), "0");
  assert_string_equal(ok(f, "return ('abc'):upper() .. ('ABC'):lower() .. "
                            "('abc'):reverse()"), "ABCabccba");
  assert_string_equal(ok(f, "return ('hello'):sub(2, -2) .. ('hello'):sub(-3)"
                            " .. ('hello'):sub(4, 100)"), "ellllolo");
  assert_string_equal(ok(f, "return select('#', ('hello'):byte(1, -1))"), "5");
  assert_string_equal(ok(f, "return ('A'):byte()"), "65");
  assert_string_equal(ok(f, "return #string.pack('i4c3', 7, 'ab')"), "7");
  assert_string_equal(ok(f, "return string.unpack('i4', "
                            "string.pack('i4', 42))"), "42");
  assert_string_equal(ok(f, "return string.format('%5.1f|%s', 2.25, 'x')"),
                      "  2.2|x");
  assert_string_equal(ok(f, "local t = {1, 2, 3} table.insert(t, 4) "
                            "table.insert(t, 1, 0) table.remove(t, 2) "
                            "return table.concat(t, ',')"), "0,2,3,4");
  assert_string_equal(ok(f, "return table.concat(table.move({1, 2, 3}, 1, 3, "
                            "2, {9}), ',')"), "9,1,2,3");
  assert_string_equal(ok(f, "local t = {3, 1, 2} table.sort(t) "
                            "return table.concat(t) .. select('#', "
                            "table.unpack(t))"), "1233");
  assert_string_equal(ok(f, "return table.concat({1, 'a', 2.5}, '-', 2)"),
                      "a-2.5");
  assert_string_equal(ok(f, "return utf8.len('h\\u{e9}') .. utf8.offset("
                            "'h\\u{e9}x', 3)"), "24");
  assert_string_equal(ok(f, "return tonumber(' 0x10 ') + tonumber('z', 36)"),
                      "51");
  /* a marker metatable (JSON arrays) is not an access metamethod */
  assert_string_equal(ok(f, "return table.concat(verdict.array({'a', 'b'}))"),
                      "ab");
}

/* Each way into unbounded C work ends as a timeout or a refusal, fast. */
static void c_functions_bounded(void **state) {
  fx_t *f = *state;
  static const char *const timeouts[] = {
      "return #string.rep('', math.maxinteger)",
      "return #string.rep('', math.maxinteger, '')",
      "return table.move({}, 1, 1e15, 1)",
      "return table.unpack({}, 1, 1e15)",
      "return table.concat({}, '', 1, 1e15)",
      "local s = string.rep('a', 1 << 18) local n = s:sub(1, -2) .. 'b' "
      "for _ = 1, 1e9 do s:find(n, 1, true) end",
      "local s = string.rep('a', 1 << 18) for _ = 1, 1e9 do s:upper() end",
      "local s = string.rep('a', 1 << 18) for _ = 1, 1e9 do s:sub(2) end",
      "local s = string.rep('a', 1 << 16) for _ = 1, 1e9 do "
      "s:rep(2) end",
      "local s = string.rep('a', 1 << 16) for _ = 1, 1e9 do "
      "table.concat({s, s}) end",
      "local f = string.rep('!', 1 << 18) for _ = 1, 1e9 do "
      "string.packsize(f) end",
      "local s = string.rep('a', 1 << 18) for _ = 1, 1e9 do "
      "verdict.only_keys({[s] = 1}, {[s] = 1}) end",
      "local src = 'return ' .. string.rep('1+', 1 << 16) .. '1' "
      "for _ = 1, 1e9 do load(src) end",
      "local s = string.rep('a', 1 << 18) for _ = 1, 1e9 do "
      "utf8.codepoint(s, 1, 1000) end",
      NULL};
  static const char *const refused[] = {
      "return string.rep('(', 1 << 17):match('%b()')",
      "return string.rep('(', 1 << 17):find('%b()')",
      "return string.rep('a', 1 << 16):match('a-' .. string.rep('a', 4096) "
      ".. 'b')",
      "return string.rep('a', 1 << 16):match(string.rep('a', 40000) .. 'b')",
      "return string.rep('a', 1 << 16):gsub('(a)%1', '')",
      NULL};
  const char *const *c;
  for (c = timeouts; *c; c++) {
    clock_t t0 = clock();
    if (run(f, *c) == LUA_OK)
      fail_msg("unbounded C work allowed: %s", *c);
    if (f->tripped != VD_EPOLICY_TIMEOUT)
      fail_msg("no timeout (tripped %d, %s) for: %s", f->tripped,
               f->out.data, *c);
    assert_contains(f->out.data, "instruction budget of 1000000 exhausted");
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < HANG_GUARD_S);
  }
  for (c = refused; *c; c++) {
    clock_t t0 = clock();
    if (run(f, *c) == LUA_OK)
      fail_msg("costly pattern allowed: %s", *c);
    assert_contains(f->out.data, "pattern too costly");
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < HANG_GUARD_S);
  }
  /* pcall cannot swallow a charge that tripped */
  assert_int_not_equal(run(f, "pcall(string.rep, '', math.maxinteger) "
                              "return 'swallowed'"), LUA_OK);
  assert_int_equal(f->tripped, VD_EPOLICY_TIMEOUT);
  /* a string too big for the cap is a memory error, not a timeout */
  run(f, "return #string.rep('x', 1 << 22)");
  assert_int_equal(f->status, LUA_ERRMEM);
  assert_int_not_equal(f->tripped, VD_EPOLICY_TIMEOUT);
}

/* The table library takes plain tables: no metamethod can lie about the
 * length or turn element access into C calls. */
static void table_library_plain_tables(void **state) {
  fx_t *f = *state;
  static const char *const hostile[] = {
      "local t = setmetatable({}, {__len = function() return 1 << 62 end}) "
      "table.insert(t, 1, 'x')",
      "local t = setmetatable({}, {__index = rawlen}) "
      "return table.concat(t, '', 1, 1 << 40)",
      "table.move({1}, 1, 1, 1, setmetatable({}, {__newindex = rawequal}))",
      "table.sort(setmetatable({}, {__len = function() return 1 << 30 end}))",
      "table.remove(setmetatable({}, {__len = function() return 1 << 62 "
      "end}), 1)",
      "return table.unpack(setmetatable({}, {__index = rawlen}), 1, 100)",
      NULL};
  const char *const *h;
  for (h = hostile; *h; h++)
    assert_contains(raises(f, *h), "takes plain tables in policies");
}

/* Issue 11, cause 5: vd_sandbox_freeze() gives policy code read-only
 * proxies of everything reachable, one per table (sharing and cycles
 * kept), and leaves the originals as they were for C. */
static void freeze_graph(void **state) {
  static const char src[] =
      "local shared = { n = 1 }\n"
      "local t = { shared, shared, name = 't' }\n"
      "t.self = t\n"
      "local Class = {}\n"
      "Class.__index = Class\n"
      "function Class.get(o) return o.v end\n"
      "local kept = {}\n"
      "return { t = t, Class = Class,\n"
      "         keep = function(v) kept.v = v end,\n"
      "         kept = function() return kept.v end }\n";
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  int g, holder, proxy;
  vd_sandbox_new_env(L);
  assert_int_equal(vd_sandbox_load(L, "=graph", src, sizeof src - 1, -1),
                   LUA_OK);
  assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
  g = lua_gettop(L); /* the original */
  lua_createtable(L, 1, 0);
  holder = lua_gettop(L);
  lua_pushvalue(L, g);
  lua_rawseti(L, holder, 1);
  vd_sandbox_freeze(L, holder);
  assert_int_equal(lua_gettop(L), holder);
  lua_rawgeti(L, holder, 1);
  proxy = lua_gettop(L);
  assert_false(lua_rawequal(L, g, proxy));
  lua_pushvalue(L, proxy);
  vd_sandbox_set_base(L, "G");

  /* reads see through; identity and cycles are kept */
  assert_string_equal(ok(f, "return G.t.self == G.t and G.t[1] == G.t[2] "
                            "and #G.t == 2 and G.t[1].n == 1"),
                      "true");
  assert_string_equal(ok(f, "return getmetatable(G.t)"), "false");
  assert_string_equal(ok(f, "local o = setmetatable({ v = 3 }, G.Class) "
                            "return o:get() == 3 and getmetatable(o) == "
                            "G.Class"),
                      "true");
  /* writes raise, directly or through a kept closure */
  assert_contains(raises(f, "G.t.name = 'x'"),
                  "test:1: cannot assign 'name': policies cannot change a "
                  "table loaded with the bundle");
  assert_contains(raises(f, "G.t[1].n = 2"), "cannot assign 'n'");
  assert_contains(raises(f, "G.t[3] = 1"), "cannot assign a number key");
  assert_contains(raises(f, "G.keep('secret')"), "cannot assign 'v'");
  assert_string_equal(ok(f, "return G.kept()"), "nil");
  assert_contains(raises(f, "G.Class.get = nil"), "cannot assign 'get'");

  /* the original is untouched and still plain: its cycle is to itself */
  lua_getfield(L, g, "t");
  lua_getfield(L, -1, "self");
  assert_true(lua_rawequal(L, -1, -2));
  assert_false(vd_sandbox_unfreeze(L, -1));
  lua_pop(L, 2);
  /* the proxy reads from a copy, whose tables are proxies */
  lua_pushvalue(L, proxy);
  assert_true(vd_sandbox_unfreeze(L, -1));
  assert_false(lua_rawequal(L, -1, g));
  lua_getfield(L, -1, "t");
  assert_true(vd_sandbox_unfreeze(L, -1)); /* a proxy in the copy */
  lua_pop(L, 2);
  /* a second walk reaching the same tables gives the same proxies */
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, g);
  lua_rawseti(L, -2, 1);
  vd_sandbox_freeze(L, -1);
  lua_rawgeti(L, -1, 1);
  assert_true(lua_rawequal(L, -1, proxy));
  lua_settop(L, g - 1);
}

/* Issue 17: the encoder keeps the JSON of a frozen table (json.h,
 * vd_json_cache_t) and copies it the next time: the same bytes as the
 * full walk, in any place; a table met deeper than where it was first
 * encoded is still refused past VD_JSON_MAX_DEPTH, and an encoding that
 * failed is not kept. */
static void frozen_json_kept(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  vd_buf_t a = VD_BUF_INIT, b = VD_BUF_INIT, err = VD_BUF_INIT;
  int holder, note, deep, bad, i;
  lua_createtable(L, 3, 0);
  holder = lua_gettop(L);
  lua_createtable(L, 0, 2); /* a trace entry: escaped text */
  lua_pushliteral(L, "a.rule");
  lua_setfield(L, -2, "rule");
  lua_pushliteral(L, "a basis \"quoted\", with a tab\t and \xe9\x80\x9a");
  lua_setfield(L, -2, "basis");
  lua_rawseti(L, holder, 1);
  lua_newtable(L); /* { { { ... } } }: 8 levels of tables */
  for (i = 1; i < 8; i++) {
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
  }
  lua_rawseti(L, holder, 2);
  lua_createtable(L, 0, 1); /* cannot be encoded */
  lua_pushcfunction(L, lua_gettop);
  lua_setfield(L, -2, "f");
  lua_rawseti(L, holder, 3);
  vd_sandbox_freeze(L, holder);
  lua_rawgeti(L, holder, 1);
  note = lua_gettop(L);
  lua_rawgeti(L, holder, 2);
  deep = lua_gettop(L);
  lua_rawgeti(L, holder, 3);
  bad = lua_gettop(L);

  assert_null(f->sb.encoded);
  assert_int_equal(vd_json_encode(L, note, &a, "trace", &err), 0);
  assert_non_null(f->sb.encoded); /* kept */
  assert_int_equal(vd_json_encode(L, note, &b, "trace", &err), 0);
  assert_string_equal(a.data, b.data);
  assert_string_equal(a.data, "{\"basis\":\"a basis \\\"quoted\\\", with a "
                              "tab\\t and \xe9\x80\x9a\",\"rule\":\"a.rule\"}");
  /* inside a fresh table: the kept bytes in their place */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, note);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, note);
  lua_rawseti(L, -2, 2);
  vd_buf_reset(&b);
  assert_int_equal(vd_json_encode(L, -1, &b, "trace", &err), 0);
  lua_pop(L, 1);
  vd_buf_reset(&a);
  vd_buf_addc(&a, '[');
  assert_int_equal(vd_json_encode(L, note, &a, "trace", &err), 0);
  vd_buf_addc(&a, ',');
  assert_int_equal(vd_json_encode(L, note, &a, "trace", &err), 0);
  vd_buf_addc(&a, ']');
  assert_string_equal(a.data, b.data);

  /* the 8-level table, kept at the top, then met at depth 57 (fits: 56
   * levels above it, 64 in all) and at depth 58 (65 levels: refused, as
   * the full walk refuses it, with the path of the walk) */
  vd_buf_reset(&a);
  assert_int_equal(vd_json_encode(L, deep, &a, "result", &err), 0);
  assert_string_equal(a.data, "[[[[[[[[]]]]]]]]");
  for (i = 56; i <= 57; i++) {
    int j;
    lua_pushvalue(L, deep);
    for (j = 0; j < i; j++) {
      lua_createtable(L, 1, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
    }
    vd_buf_reset(&b);
    vd_buf_reset(&err);
    if (i == 56) {
      assert_int_equal(vd_json_encode(L, -1, &b, "result", &err), 0);
      assert_int_equal(b.len, 2 * (56 + 8));
    } else {
      assert_int_equal(vd_json_encode(L, -1, &b, "result", &err),
                       VD_EINVALID);
      assert_contains(err.data, "nested too deeply");
    }
    lua_pop(L, 1);
  }

  /* a failed encoding is not kept: it fails again, with its path */
  for (i = 0; i < 2; i++) {
    vd_buf_reset(&b);
    vd_buf_reset(&err);
    assert_int_equal(vd_json_encode(L, bad, &b, "result", &err), VD_EINVALID);
    assert_string_equal(err.data, "result.f: cannot encode a function as JSON");
  }
  lua_settop(L, holder - 1);
  vd_buf_release(&a);
  vd_buf_release(&b);
  vd_buf_release(&err);
}

/* Load CHUNK (named NAME) in a fresh environment, run it, freeze what it
 * returns as a loaded table is frozen, and make it the global BASE. */
static void load_frozen(lua_State *L, const char *name, const char *chunk,
                        size_t n, const char *base) {
  int holder;
  vd_sandbox_new_env(L);
  assert_int_equal(vd_sandbox_load(L, name, chunk, n, -1), LUA_OK);
  assert_int_equal(lua_pcall(L, 0, 1, 0), LUA_OK);
  lua_createtable(L, 1, 0);
  lua_insert(L, -2);
  lua_rawseti(L, -2, 1);
  holder = lua_gettop(L);
  vd_sandbox_freeze(L, holder);
  lua_rawgeti(L, holder, 1);
  vd_sandbox_set_base(L, base);
  lua_settop(L, holder - 1);
}

/* Issue 17: verdict.run_rules(P, name, f, tr), lib/rules.lua's loop over
 * a frozen decision table in C: the same rules held, in the same order,
 * with the same arguments (f, the rule, P.params), each noted once in
 * tr.seen and tr.list; the rule handed out is the read-only proxy; the
 * plan kept after the first call answers the same; any table it cannot
 * run as the Lua loop would (not frozen, not found, a rule with a
 * metatable, an id that is not a string, a tracer that explains or is not
 * plain tables) is refused (false) before anything is called. */
static void rule_tables_run_in_c(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char tables[] =
      "local function rule(id, n)\n"
      "  return { id = id, n = n, when = function(f, r, p)\n"
      "    return f.x >= r.n and p.on end }\n"
      "end\n"
      "local function tbl(hit, rules)\n"
      "  local t = { hit = hit, first = hit == 'first', rules = rules,\n"
      "    notes = {} }\n"
      "  for i, r in ipairs(rules) do\n"
      "    t.notes[i] = { rule = r.id, basis = 'b' .. i } end\n"
      "  return t\n"
      "end\n"
      "return { params = { on = true }, by_name = {\n"
      "  first = tbl('first', { rule('a', 5), rule('b', 2), rule('c', 0) }),\n"
      "  collect = tbl('collect', { rule('a', 5), rule('b', 2),\n"
      "    { id = 'always' }, rule('c', 0) }),\n"
      "  none = tbl('first', { rule('a', 5) }),\n"
      "  meta = tbl('first', { setmetatable(rule('a', 0), {}) }),\n"
      "  badid = tbl('first', { rule(7, 0) }),\n"
      "  raising = tbl('collect', { { id = 'e', when = function(f)\n"
      "    return f.x.y end } }),\n"
      "} }\n";
  int i;
  load_frozen(L, "=tables", tables, sizeof tables - 1, "P");

#define RUN(t, x) "local tr = { seen = {}, list = {} } " \
  "local ran, r = verdict.run_rules(P, '" t "', { x = " x " }, tr) " \
  "local ids = {} " \
  "if type(r) == 'table' and r.id == nil then " \
  "  for i = 1, #r do ids[i] = r[i].id end " \
  "elseif r then ids[1] = r.id end " \
  "local notes = {} for i = 1, #tr.list do notes[i] = tr.list[i].rule " \
  "  .. ':' .. tr.list[i].basis .. (tr.seen[tr.list[i].rule] and '' " \
  "  or '?') end " \
  "return tostring(ran) .. ' ' .. table.concat(ids, ',') .. ' [' " \
  "  .. table.concat(notes, ',') .. ']'"
  /* twice each: the plan made, then the plan kept */
  for (i = 0; i < 2; i++) {
    assert_string_equal(ok(f, RUN("first", "6")), "true a [a:b1]");
    assert_string_equal(ok(f, RUN("first", "3")), "true b [b:b2]");
    assert_string_equal(ok(f, RUN("first", "0")), "true c [c:b3]");
    assert_string_equal(ok(f, RUN("collect", "3")),
                        "true b,always,c [b:b2,always:b3,c:b4]");
    assert_string_equal(ok(f, RUN("none", "1")), "true  []");
  }
  /* noted once per decision: an id already seen is not listed again */
  assert_string_equal(ok(f, "local tr = { seen = { b = true }, list = {} } "
                            "verdict.run_rules(P, 'collect', { x = 3 }, tr) "
                            "return #tr.list .. tr.list[1].rule"),
                      "2always");
  /* the rules handed out are the read-only proxies */
  assert_contains(raises(f, "local _, r = verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = {}, list = {} }) r.n = 0"),
                  "cannot assign 'n'");
  /* refused, nothing called: the Lua loop runs these */
  assert_string_equal(ok(f, RUN("meta", "1")), "false  []");
  assert_string_equal(ok(f, RUN("badid", "1")), "false  []");
  assert_string_equal(ok(f, RUN("nothing", "1")), "false  []");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules({ by_name = "
                            "{ t = { rules = {}, notes = {} } } }, 't', {}, "
                            "{ seen = {}, list = {} }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = {}, list = {}, "
                            "explain = {} }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = P, list = {} }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = 1, list = {} }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = {}, list = 'x' }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { list = {} }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, { seen = {}, list = setmetatable("
                            "{}, {}) }))"),
                      "false");
  assert_string_equal(ok(f, "return tostring(verdict.run_rules(P, 'first', "
                            "{ x = 9 }, setmetatable({ seen = {}, list = {} "
                            "}, {})))"),
                      "false");
  /* a condition's error is the policy's, with its place */
  assert_contains(raises(f, RUN("raising", "1")),
                  "tables:20: attempt to index a number value");
#undef RUN
  /* more tables than the plans found by address have slots (64): each
   * call still gets its own table's plan, through verdict.run_rules and
   * through a runner (verdict.rule_runner) alike */
  static const char many[] =
      "local by_name = {}\n"
      "for i = 1, 100 do\n"
      "  local r = { id = 'r' .. i, when = function(f) return f.x == i end }\n"
      "  by_name['t' .. i] = { hit = 'first', first = true, rules = { r },\n"
      "    notes = { { rule = r.id, basis = 'b' } } }\n"
      "end\n"
      "return { params = {}, by_name = by_name,\n"
      "  run = verdict.rule_runner(function() return 'lua' end) }\n";
  load_frozen(L, "=many", many, sizeof many - 1, "Q");
  assert_string_equal(
      ok(f, "local out = {}\n"
            "for round = 1, 3 do for i = 1, 100 do\n"
            "  local tr = { seen = {}, list = {} }\n"
            "  local ran, r = verdict.run_rules(Q, 't' .. i, { x = i }, tr)\n"
            "  local r2 = Q.run(Q, 't' .. i, { x = i }, tr)\n"
            "  local r3 = Q.run(Q, 't' .. i, { x = i + 1 }, tr)\n"
            "  if not ran or r.id ~= 'r' .. i or r2 ~= r or r3 ~= nil\n"
            "    or #tr.list ~= 1 then out[#out + 1] = i end\n"
            "end end\n"
            "out[#out + 1] = Q.run(Q, 'none', {}, { seen = {}, list = {} })\n"
            "return table.concat(out, ' ')"),
      "lua");
}

/* A plan keeps a boolean or integer default in the field itself (PD_*,
 * core/sandbox.c) and pushes it without reading its user value; any other
 * default is read as before.  Each default comes back as the very value
 * the schema gave, its subtype included (1 and 1.0, 0 and -0.0, math's
 * extremes, true and false, a string, a float); a default that is set
 * (true, 3) still brings in its `requires`.  It fails if a float is kept
 * as an integer or a value is kept for the wrong kind. */
static void plan_defaults_kinds(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char schema[] =
      "local R = {}\n"
      "local defaults = { b1 = true, b0 = false, i1 = 1, f1 = 1.0, i0 = 0,\n"
      "  fz = -0.0, imax = math.maxinteger, imin = math.mininteger,\n"
      "  fh = 0.5, s = 'x', rq = true, rz = 3 }\n"
      "local names, fields, absent, quick = {}, {}, {}, {}\n"
      "for k in pairs(defaults) do names[#names + 1] = k end\n"
      "names[#names + 1] = 'n'\n"
      "table.sort(names)\n"
      "for i, k in ipairs(names) do\n"
      "  fields[k] = { type = k == 'n' and 'integer' or 'any' }\n"
      "  absent[i] = defaults[k]\n"
      "  quick[k] = function(v) return v end\n"
      "end\n"
      "local c = { fields = fields, names = names, quick = quick,\n"
      "  absent = absent, conditional = { 'rq', 'rz' },\n"
      "  requires = { { 'n' }, { 'n' } } }\n"
      "return { plan = verdict.schema_plan(c, R), defaults = defaults,\n"
      "  obj = verdict.object{ n = 2 }, arr = verdict.array{} }\n";
  load_frozen(L, "=defaults", schema, sizeof schema - 1, "D");
  assert_string_equal(
      ok(f, "local out = {}\n"
            "local v = verdict.check_input(D.plan, { n = 1 })\n"
            "for k, want in pairs(D.defaults) do\n"
            "  local got = v[k]\n"
            "  if got ~= want or math.type(got) ~= math.type(want)\n"
            "    or (want == 0 and 1 / got ~= 1 / want) then\n"
            "    out[#out + 1] = k .. '=' .. tostring(got) end end\n"
            "if verdict.check_input(D.plan, {}) ~= nil then\n"
            "  out[#out + 1] = 'requires not applied' end\n"
            "return #out == 0 and 'ok' or table.concat(out, ' ')"),
      "ok");
  /* verdict.check_object: nil for whatever json_type does not call an
   * object, the facts for what it does (a loaded one too, through its
   * proxy); check_input checks a plain table and refuses a value that is
   * not a table, as before */
  assert_string_equal(
      ok(f, "local C, I = verdict.check_object, verdict.check_input\n"
            "local out = {}\n"
            "for i, v in ipairs({ 7, 'x', true, { n = 1 }, D.arr,\n"
            "                     verdict.array{ 1 } }) do\n"
            "  if C(D.plan, v) ~= nil then out[#out + 1] = i end end\n"
            "if C(D.plan, nil) ~= nil then out[#out + 1] = 'nil' end\n"
            "local o = C(D.plan, verdict.object{ n = 3 })\n"
            "if not o or o.n ~= 3 or o.b1 ~= true then out[#out + 1] = 'object' end\n"
            "local l = C(D.plan, D.obj)\n"
            "if not l or l.n ~= 2 then out[#out + 1] = 'loaded' end\n"
            "if C(D.plan, verdict.object{}) ~= nil then\n"
            "  out[#out + 1] = 'requires not applied' end\n"
            "local p = I(D.plan, { n = 4 })\n"
            "if not p or p.n ~= 4 then out[#out + 1] = 'plain' end\n"
            "if pcall(I, D.plan, 7) then out[#out + 1] = 'not refused' end\n"
            "if pcall(C, {}, verdict.object{}) then out[#out + 1] = 'no plan' end\n"
            "return #out == 0 and 'ok' or table.concat(out, ' ')"),
      "ok");
}

/* The engine's own input object (sandbox.h, own_input) is made the facts
 * in place when it is valid: the same table back, with the copy's keys
 * and values (defaults in, nulls out) and no JSON marker; an invalid one
 * is left exactly as it came, for the reporting walk; only once, and
 * never past the evaluation.  Runs CHECK_OWN on each input (as `...`)
 * with S.plan from schema_plan_checks. */
static const char *check_own(fx_t *f, const char *json) {
  static const char code[] =
      "local i = ... local marked = verdict.json_type(i)\n"
      "local v = verdict.check_input(S.plan, i)\n"
      "local function show(t) local k = {}\n"
      "  for name, x in pairs(t) do k[#k + 1] = name .. '=' ..\n"
      "    (type(x) == 'table' and (x == S.tags and 'default' or 'seen' ..\n"
      "    tostring(x.seen)) or tostring(x)) end\n"
      "  return table.concat(k, ' ') end\n"
      "if v == nil then return 'nil ' .. tostring(marked) .. ' '\n"
      "  .. tostring(verdict.json_type(i)) .. ' ' .. show(i) end\n"
      "local again = verdict.check_input(S.plan, i)\n"
      "return tostring(rawequal(v, i)) .. ' ' .. tostring(verdict.json_type(v))\n"
      "  .. ' ' .. show(v) .. ' again:' .. tostring(rawequal(again, i))\n";
  lua_State *L = f->sb.L;
  int top = lua_gettop(L);
  vd_buf_reset(&f->err);
  assert_int_equal(vd_json_decode(L, json, strlen(json), 0, &f->err), 0);
  vd_sandbox_new_env(L);
  assert_int_equal(vd_sandbox_load(L, "=own", code, sizeof code - 1, -1),
                   LUA_OK);
  lua_remove(L, -2); /* the environment */
  lua_insert(L, -2); /* the chunk, then its argument */
  vd_sandbox_arm(&f->sb, BUDGET, MEMCAP);
  f->sb.own_input = lua_topointer(L, -1);
  f->status = lua_pcall(L, 1, 1, 0);
  vd_sandbox_disarm(&f->sb);
  assert_null(f->sb.own_input);
  f->sb.limit = 0;
  vd_buf_reset(&f->out);
  vd_buf_adds(&f->out, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  assert_int_equal(f->status, LUA_OK);
  lua_settop(L, top);
  return f->out.data;
}

static void own_input_made_facts(fx_t *f) {
  assert_string_equal(check_own(f, "{\"id\":\"c1\",\"n\":null,"
                                   "\"tags\":[1,2],\"on\":null}"),
                      "true nil id=c1 kind=a on=false tags=seen2 again:false");
  assert_string_equal(check_own(f, "{\"id\":\"c1\",\"n\":3,\"on\":true,"
                                   "\"x\":4}"),
                      "true nil id=c1 kind=a n=3 on=true tags=default x=8 "
                      "again:false");
  /* invalid: nothing written (tags still the array, not its checked
   * value), the marker kept */
  assert_string_equal(check_own(f, "{\"id\":\"c1\",\"n\":11,"
                                   "\"tags\":[1]}"),
                      "nil object object id=c1 n=11 tags=seennil");
  assert_string_equal(check_own(f, "{\"id\":\"c1\",\"on\":true,"
                                   "\"tags\":[1]}"),
                      "nil object object id=c1 on=true tags=seennil");
  assert_string_equal(check_own(f, "{\"id\":\"c1\",\"other\":1}"),
                      "nil object object id=c1 other=1");
}

/* Issue 17: verdict.check_input(plan, v), lib/schema.lua's quick walk in
 * C over a plan verdict.schema_plan made once: the facts of a valid object
 * (defaults filled in, in name order), nil at any problem (the Lua
 * reporting walk then names it); a table default is handed out read-only
 * once frozen; the plan is opaque to policies. */
static void schema_plan_checks(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  /* a compiled schema as lib/schema.lua's compile_fields makes it */
  static const char schema[] =
      "local R = {}\n"
      "local fields = {\n"
      "  id = { type = 'string', max_len = 4, required = true },\n"
      "  n = { type = 'integer', min = 0, max = 10 },\n"
      "  x = { type = 'integer', min = 0.5 },\n"
      "  kind = { type = 'enum', set = { a = true, b = true }, default = 'a' },\n"
      "  on = { type = 'boolean', default = false, requires = { 'n' } },\n"
      "  tags = { type = 'set', default = {} },\n"
      "}\n"
      "local names = { 'id', 'kind', 'n', 'on', 'tags', 'x' }\n"
      "local quick = {\n"
      "  id = function() error('not called') end,\n"
      "  kind = function() error('not called') end,\n"
      "  n = function() error('not called') end,\n"
      "  on = function() error('not called') end,\n"
      "  tags = function(v) if type(v) ~= 'table' then return nil end\n"
      "    return { seen = #v } end,\n"
      "  x = function(v) if math.type(v) == 'integer' and v >= 1 then\n"
      "    return v * 2 end return nil end,\n"
      "}\n"
      "local absent = { R, 'a', nil, false, fields.tags.default, nil }\n"
      "local c = { fields = fields, names = names, quick = quick,\n"
      "  absent = absent, conditional = { 'on' }, requires = { { 'n' } } }\n"
      "return { plan = verdict.schema_plan(c, R), tags = fields.tags.default }\n";
  load_frozen(L, "=schema", schema, sizeof schema - 1, "S");

#define CHECK(input) "local v = verdict.check_input(S.plan, " input ") " \
  "if v == nil then return 'nil' end local k = {} " \
  "for name, x in pairs(v) do k[#k + 1] = name .. '=' .. " \
  "(type(x) == 'table' and (x == S.tags and 'default' or 'seen' .. " \
  "tostring(x.seen)) or tostring(x)) end return table.concat(k, ' ')"
  /* valid: defaults in, a checker's value for a type C does not check */
  assert_string_equal(ok(f, CHECK("{ id = 'c1' }")),
                      "id=c1 kind=a on=false tags=default");
  assert_string_equal(ok(f, CHECK("{ id = 'c1', n = 3, kind = 'b', on = true, "
                                  "tags = { 1, 2 }, x = 4 }")),
                      "id=c1 kind=b n=3 on=true tags=seen2 x=8");
  assert_string_equal(ok(f, CHECK("{ id = 'c1', n = verdict.null, "
                                  "kind = verdict.null }")),
                      "id=c1 kind=a on=false tags=default");
  /* on = false is not set: its requires do not apply */
  assert_string_equal(ok(f, CHECK("{ id = 'c1', on = false }")),
                      "id=c1 kind=a on=false tags=default");
  /* each problem: nil */
  static const char *const bad[] = {
      "{}", "{ id = verdict.null }", "{ id = '' }", "{ id = 'c12345' }",
      "{ id = 5 }", "{ id = 'c1', other = 1 }", "{ id = 'c1', [1] = 1 }",
      "{ id = 'c1', n = 11 }", "{ id = 'c1', n = -1 }", "{ id = 'c1', n = 2.0 }",
      "{ id = 'c1', n = '2' }", "{ id = 'c1', kind = 'c' }",
      "{ id = 'c1', kind = true }", "{ id = 'c1', on = 1 }",
      "{ id = 'c1', on = true }", "{ id = 'c1', on = true, n = verdict.null }",
      "{ id = 'c1', tags = 'x' }", "{ id = 'c1', x = 0 }", NULL};
  const char *const *b;
  char code[512];
  for (b = bad; *b; b++) {
    snprintf(code, sizeof code, CHECK("%s"), *b);
    if (strcmp(ok(f, code), "nil") != 0)
      fail_msg("check_input accepted %s: %s", *b, f->out.data);
  }
#undef CHECK
  /* the default table is the frozen one: read-only */
  assert_contains(raises(f, "local v = verdict.check_input(S.plan, "
                            "{ id = 'c1' }) v.tags.x = 1"),
                  "cannot assign 'x'");
  /* what is given is not changed */
  assert_string_equal(ok(f, "local i = { id = 'c1', n = 1 } "
                            "verdict.check_input(S.plan, i) "
                            "return tostring(i.kind) .. #verdict.field_reads("
                            "function() end)"),
                      "nil0");
  /* only a plan is a plan, and a plan shows nothing */
  assert_contains(raises(f, "verdict.check_input({}, {})"),
                  "vd.schema.plan expected");
  assert_contains(raises(f, "verdict.check_input(verdict.null, {})"),
                  "vd.schema.plan expected");
  assert_contains(raises(f, "verdict.check_input(nil, {})"),
                  "vd.schema.plan expected");
  assert_contains(raises(f, "verdict.check_input(S.plan, 'x')"),
                  "table expected");
  assert_string_equal(ok(f, "return tostring(getmetatable(S.plan))"), "false");
  assert_contains(raises(f, "S.plan.x = 1"), "attempt to index");
  assert_contains(raises(f, "verdict.schema_plan({}, 1)"),
                  "expected a compiled schema");
  own_input_made_facts(f);
  /* a schema of more than 256 fields is walked field by field: the same
   * answers */
  assert_string_equal(
      ok(f, "local R, fields, names, quick, absent = {}, {}, {}, {}, {}\n"
            "for i = 1, 300 do local name = string.format('f%03d', i)\n"
            "  fields[name] = { type = 'integer', min = 0, max = 9 }\n"
            "  names[i] = name\n"
            "  quick[name] = function() error('not called') end end\n"
            "absent[1], absent[2] = R, 5\n"
            "fields.f003 = { type = 'string', max_len = 2 }\n"
            "fields.f004 = { type = 'enum', set = { a = true } }\n"
            "fields.f005 = { type = 'boolean', requires = { 'f006' } }\n"
            "local plan = verdict.schema_plan({ fields = fields, names = "
            "names, quick = quick, absent = absent, conditional = "
            "{ 'f005' }, requires = { { 'f006' } } }, R)\n"
            "local function show(v) if v == nil then return 'nil' end\n"
            "  local k = {} for name, x in pairs(v) do\n"
            "  k[#k + 1] = name .. '=' .. tostring(x) end\n"
            "  return table.concat(k, ' ') end\n"
            "local out = {}\n"
            "for _, v in ipairs({ { f001 = 1, f003 = 'ab', f004 = 'a', "
            "f300 = verdict.null }, { f002 = 1 }, { f001 = 1, f010 = 10 }, "
            "{ f001 = 1, x = 1 }, { f001 = 1, f004 = 'b' }, { f001 = 1, "
            "f005 = true }, { f001 = 1, f005 = true, f006 = 0 } }) do\n"
            "  out[#out + 1] = show(verdict.check_input(plan, v)) end\n"
            "return table.concat(out, ' | ')"),
      "f001=1 f002=5 f003=ab f004=a | nil | nil | nil | nil | nil | "
      "f001=1 f002=5 f005=true f006=0");
  assert_contains(raises(f, "verdict.schema_plan({ names = { 'a' }, "
                            "quick = {}, absent = {}, fields = { a = { type "
                            "= 'time' } }, conditional = {}, requires = {} "
                            "}, 1)"),
                  "a field without its quick checker");
}

/* Issue 17: check_keys finds a key's field by the key's address (short
 * strings are interned), else by value: each of 60 fields is checked
 * against its own spec (field i: an integer at most i), including names
 * whose addresses share slots, names of 41 to 60 bytes (long strings, not
 * interned: found by value) and keys made at run time; an unknown key,
 * short or long, is refused. */
static void plan_names_by_address(void **state) {
  fx_t *f = *state;
  assert_string_equal(
      ok(f, "local R, fields, names, quick, absent = {}, {}, {}, {}, {}\n"
            "local function name(i)\n"
            "  if i % 3 == 0 then return 'long_' .. string.rep('n', 30 + i // 3) "
            ".. i end\n"
            "  return 'f' .. i end\n"
            "for i = 1, 60 do local n = name(i)\n"
            "  fields[n] = { type = 'integer', min = 0, max = i }\n"
            "  names[i] = n\n"
            "  quick[n] = function() error('not called') end end\n"
            "local plan = verdict.schema_plan({ fields = fields, names = "
            "names, quick = quick, absent = absent, conditional = {}, "
            "requires = {} }, R)\n"
            "local out = {}\n"
            "for i = 1, 60 do\n"
            "  local good, bad = {}, {}\n"
            "  good[name(i)], bad[name(i)] = i, i + 1\n"
            "  local g, b = verdict.check_input(plan, good), "
            "verdict.check_input(plan, bad)\n"
            "  if not g or g[name(i)] ~= i or b ~= nil then out[#out + 1] = "
            "name(i) end\n"
            "end\n"
            "local all = {}\n"
            "for i = 1, 60 do all[name(i)] = i end\n"
            "local a = verdict.check_input(plan, all)\n"
            "if not a or a[name(60)] ~= 60 then out[#out + 1] = 'all' end\n"
            "all[name(61)] = 1\n"
            "if verdict.check_input(plan, all) ~= nil then out[#out + 1] = "
            "'unknown long' end\n"
            "all[name(61)], all.f62 = nil, 1\n"
            "if verdict.check_input(plan, all) ~= nil then out[#out + 1] = "
            "'unknown short' end\n"
            "return #out == 0 and 'ok' or table.concat(out, ' ')"),
      "ok");
}

/* run_loop leaves what each `when` returned on the stack and cuts it back
 * every few rules (core/sandbox.c): long tables, with rules that hold and
 * rules without a condition at every position, give what the Lua loop
 * gives (written out here), through run_rules and a runner, first and
 * collect, a condition returning nothing, several values or a table; it
 * fails if a cut reaches below the loop's own slots. */
static void rule_tables_long(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char tables[] =
      "local by_name = {}\n"
      "for _, hit in ipairs({ 'first', 'collect' }) do\n"
      "  for len = 1, 40, 3 do\n"
      "    local rules, notes = {}, {}\n"
      "    for i = 1, len do\n"
      "      local r = { id = hit .. len .. '.' .. i }\n"
      "      if i % 7 ~= 0 then r.when = function(f)\n"
      "        if i % 5 == 1 then return end\n"
      "        if i % 5 == 2 then return f[i], 1, 2 end\n"
      "        if i % 5 == 3 then return f[i] and {} end\n"
      "        return f[i] end end\n"
      "      rules[i], notes[i] = r, { rule = r.id, basis = 'b' }\n"
      "    end\n"
      "    by_name[hit .. len] = { hit = hit, first = hit == 'first',\n"
      "      rules = rules, notes = notes }\n"
      "  end\n"
      "end\n"
      "return { params = {}, by_name = by_name,\n"
      "  run = verdict.rule_runner(function() return 'lua' end, false) }\n";
  load_frozen(L, "=long", tables, sizeof tables - 1, "P");
  assert_string_equal(
      ok(f, "local out = {}\n"
            "local function lua_loop(t, f)\n"
            "  local hits = {}\n"
            "  for i = 1, #t.rules do local r = t.rules[i]\n"
            "    if r.when == nil or r.when(f) then\n"
            "      if t.first then return { r.id } end\n"
            "      hits[#hits + 1] = r.id end end\n"
            "  return hits end\n"
            "local function ids(r)\n"
            "  if r == nil then return {} end\n"
            "  if r.id then return { r.id } end\n"
            "  local o = {} for i = 1, #r do o[i] = r[i].id end return o end\n"
            "for _, hit in ipairs({ 'first', 'collect' }) do\n"
            "  for len = 1, 40, 3 do for seed = 1, 6 do\n"
            "    local name, fx = hit .. len, {}\n"
            "    for i = 1, len do fx[i] = (i * seed) % 4 == 0 end\n"
            "    local want = table.concat(lua_loop(P.by_name[name], fx), ',')\n"
            "    local tr = { seen = {}, list = {} }\n"
            "    local ran, r = verdict.run_rules(P, name, fx, tr)\n"
            "    local r2 = P.run(P, name, fx, { seen = {}, list = {} })\n"
            "    local got = table.concat(ids(r), ',')\n"
            "    if not ran or got ~= want or table.concat(ids(r2), ',') ~= want\n"
            "      or #tr.list ~= #ids(r) then\n"
            "      out[#out + 1] = name .. '/' .. seed .. ': ' .. got .. ' not ' .. want\n"
            "    end end end end\n"
            "return #out == 0 and 'ok' or table.concat(out, '; ')"),
      "ok");
}

/* A `when` of at most one parameter, not vararg, is called with the facts
 * alone (core/sandbox.c, rp_one): it cannot tell.  Every other condition
 * still gets (f, r, p): two and three parameters, varargs (which count
 * their arguments), a C function (rawequal, which raises given one); at
 * every position of 70 rules, past the 64 the plan keeps a bit for, in a
 * collect and a first table, through run_rules and a runner, the plan made
 * and then kept.  It fails if a condition that can see r or p is called
 * with the facts alone (a bit off by one, varargs or a C function taken
 * for one parameter, a position past 64 read from the mask), or if
 * P.params is left out of a table of 1 to 66 rules whose last condition
 * alone reads it; a runner called with more than its four arguments
 * answers the same. */
static void rule_conditions_arguments(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char tables[] =
      "local P = { params = { on = true }, by_name = {} }\n"
      "local function make(i)\n"
      "  local id, k = 'r' .. i, i % 5\n"
      "  if k == 0 then return { id = id, when = function(f) return f.x end } end\n"
      "  if k == 1 then return { id = id, when = function(f, r, p)\n"
      "    return f.x and r.id == id and p.on end } end\n"
      "  if k == 2 then return { id = id, when = function(...)\n"
      "    return select('#', ...) == 3 and (select(3, ...)).on end } end\n"
      "  if k == 3 then return { id = id, when = function(f, ...)\n"
      "    return select('#', ...) == 2 and (...).id == id end } end\n"
      "  return { id = id, when = function(f, r) return r.id == id end }\n"
      "end\n"
      "for _, hit in ipairs({ 'first', 'collect' }) do\n"
      "  local rules, notes = { { id = 'c', when = rawequal } }, { { rule = 'c', basis = 'b' } }\n"
      "  for i = 1, 70 do rules[i + 1] = make(i)\n"
      "    notes[i + 1] = { rule = 'r' .. i, basis = 'b' } end\n"
      "  P.by_name[hit] = { hit = hit, first = hit == 'first', rules = rules, notes = notes }\n"
      "  for i = 1, 70 do\n"
      "    P.by_name[hit .. i] = { hit = hit, first = hit == 'first',\n"
      "      rules = { rules[1], rules[i + 1] }, notes = { notes[1], notes[i + 1] } }\n"
      "  end\n"
      "end\n"
      "-- only conditions of one parameter but the last (P.params read\n"
      "-- only where one needs it), 1 to 66 rules\n"
      "for len = 1, 66 do\n"
      "  local rules, notes = {}, {}\n"
      "  for i = 1, len do\n"
      "    local id = 'o' .. i\n"
      "    rules[i] = { id = id, when = i < len and function(f) return false end\n"
      "      or function(f, r, p) return p.on and r.id == id end }\n"
      "    notes[i] = { rule = id, basis = 'b' }\n"
      "  end\n"
      "  P.by_name['last' .. len] = { hit = 'first', first = true, rules = rules,\n"
      "    notes = notes }\n"
      "  local one = {}\n"
      "  for i = 1, len do one[i] = { id = 'o' .. i, when = function(f) return true end } end\n"
      "  P.by_name['one' .. len] = { hit = 'collect', first = false, rules = one,\n"
      "    notes = notes }\n"
      "end\n"
      "P.run = verdict.rule_runner(function() return 'lua' end, false)\n"
      "return P\n";
  int round;
  load_frozen(L, "=args", tables, sizeof tables - 1, "P");
  for (round = 0; round < 2; round++)
    assert_string_equal(
        ok(f, "local out = {}\n"
              "local function ids(r)\n"
              "  if r == nil then return '' end\n"
              "  if r.id then return r.id end\n"
              "  local o = {} for i = 1, #r do o[i] = r[i].id end\n"
              "  return table.concat(o, ',') end\n"
              "local all = {} for i = 1, 70 do all[i] = 'r' .. i end\n"
              "all = table.concat(all, ',')\n"
              "local function check(name, want)\n"
              "  local tr = { seen = {}, list = {} }\n"
              "  local ran, r = verdict.run_rules(P, name, { x = true }, tr)\n"
              "  local r2 = P.run(P, name, { x = true }, { seen = {}, list = {} })\n"
              "  local r3 = P.run(P, name, { x = true }, { seen = {}, list = {} },\n"
              "    'more', 'arguments')\n"
              "  if not ran or ids(r) ~= want or ids(r2) ~= want or ids(r3) ~= want then\n"
              "    out[#out + 1] = name .. ': ' .. ids(r) .. ' / ' .. ids(r2)\n"
              "  end end\n"
              "check('collect', all)\n"
              "check('first', 'r1')\n"
              "for i = 1, 70 do\n"
              "  check('collect' .. i, 'r' .. i) check('first' .. i, 'r' .. i)\n"
              "end\n"
              "for len = 1, 66 do\n"
              "  check('last' .. len, 'o' .. len)\n"
              "  local o = {} for i = 1, len do o[i] = 'o' .. i end\n"
              "  check('one' .. len, table.concat(o, ','))\n"
              "end\n"
              "return #out == 0 and 'ok' or table.concat(out, '; ')"),
        "ok");
}

/* check_input finds an enum value by its string's address once the set is
 * frozen (core/sandbox.c, "Enum sets by address"); until then, and for
 * any value not found that way, by value: the answers are the set's as it
 * is when checked.  The set changes after the plan is made (a value taken
 * out, one added), before the freeze; it holds a key whose value is false,
 * and a long key (not interned: a string made at run time with its bytes
 * is another object).  It fails if the slots are made before the freeze,
 * if a key with a false value is kept, or if a value not found by address
 * is not then looked up by value.  The set is frozen with the schema's
 * fields, as a policy's is with its P.fields. */
static void plan_enums_by_address(void **state) {
  fx_t *f = *state;
  lua_State *L = f->sb.L;
  static const char chunk[] =
      "local long = string.rep('l', 50)\n"
      "local set = { billing = true, network = true, gone = true, no = false,\n"
      "  [long] = true }\n"
      "local fields = { c = { type = 'enum', set = set } }\n"
      "local plan = verdict.schema_plan({ fields = fields,\n"
      "  names = { 'c' }, quick = { c = function() error('not called') end },\n"
      "  absent = {}, conditional = {}, requires = {} }, {})\n"
      "local before = verdict.check_input(plan, { c = 'gone' }) ~= nil and\n"
      "  verdict.check_input(plan, { c = 'added' }) == nil\n"
      "set.gone, set.added = nil, true\n"
      "return { plan = plan, before = before, fields = fields }\n";
  int round;
  load_frozen(L, "=enums", chunk, sizeof chunk - 1, "E");
  for (round = 0; round < 3; round++)
    assert_string_equal(
        ok(f, "local out = {}\n"
              "local function valid(v)\n"
              "  return verdict.check_input(E.plan, { c = v }) ~= nil end\n"
              "for _, v in ipairs({ 'billing', 'network', 'added',\n"
              "  string.rep('l', 50), 'net' .. 'work' }) do\n"
              "  if not valid(v) then out[#out + 1] = 'refused ' .. v end end\n"
              "for _, v in ipairs({ 'gone', 'no', 'other', string.rep('l', 49),\n"
              "  string.rep('m', 50), 5, true }) do\n"
              "  if valid(v) then out[#out + 1] = 'took ' .. tostring(v) end end\n"
              "if not E.before then out[#out + 1] = 'before the freeze' end\n"
              "return #out == 0 and 'ok' or table.concat(out, '; ')"),
        "ok");
}

/* The state's allocator decides its two common cases (a pool block freed,
 * a new small block) on a quick path: it must keep the cap, the failure
 * injection and the accounting exactly as its full path does.  Called
 * directly, as Lua calls it. */
static void allocator_quick_paths(void **state) {
  fx_t *f = *state;
  void *ud, *p, *q, *big;
  lua_Alloc a = lua_getallocf(f->sb.L, &ud);
  size_t used = f->sb.used;
  assert_ptr_equal(ud, &f->sb);
  assert_null(a(ud, NULL, LUA_TTABLE, 0)); /* nothing asked, nothing counted */
  assert_int_equal(f->sb.used, used);
  vd_sandbox_arm(&f->sb, 0, 64); /* room for 64 bytes */
  used = f->sb.used;
  p = a(ud, NULL, LUA_TTABLE, 64); /* exactly the room */
  assert_non_null(p);
  assert_int_equal(f->sb.used, used + 64);
  assert_null(a(ud, NULL, LUA_TSTRING, 1)); /* one byte past it */
  assert_int_equal(f->sb.collect, 1);
  assert_int_equal(f->sb.used, used + 64);
  assert_null(a(ud, p, 64, 0));
  assert_int_equal(f->sb.used, used);
  f->sb.collect = 0;
  f->sb.limit = 0;
  big = a(ud, NULL, LUA_TTABLE, VD_SLAB_MAX + 1); /* malloc's */
  assert_non_null(big);
  assert_int_equal(f->sb.used, used + VD_SLAB_MAX + 1);
  assert_null(a(ud, big, VD_SLAB_MAX + 1, 0));
  assert_int_equal(f->sb.used, used);
  f->sb.fail_countdown = 2; /* the second allocation fails, and every one after */
  p = a(ud, NULL, LUA_TTABLE, 32);
  assert_non_null(p);
  assert_null(a(ud, NULL, LUA_TTABLE, 32));
  assert_null(a(ud, NULL, LUA_TTABLE, 16));
  assert_int_equal(f->sb.failing, 1);
  assert_null(a(ud, p, 32, 0)); /* a free still works */
  assert_int_equal(f->sb.used, used);
  f->sb.failing = 0;
  f->sb.fail_countdown = 0;
  q = a(ud, NULL, LUA_TTABLE, 32); /* the freed block, from the pool again */
  assert_non_null(q);
  assert_null(a(ud, q, 32, 0));
  assert_int_equal(f->sb.used, used);
  vd_sandbox_disarm(&f->sb);
}

/* The charges of check_input and run_rules take a quick path when there is
 * room (charge_small, core/sandbox.c): at the edges it must decide as
 * vd_sandbox_charge does.  A plan of 60 fields charges 60 when it is made
 * and 60 a check; these chunks run fewer VM instructions than one hook
 * step, so the charges are all the steps counted.  Counting: a budget of
 * 120 holds the plan and one check exactly, and a second check runs out.
 * A fast attempt (no count hook): past a tenth of the budget in charges
 * it is to be counted again; exactly a tenth is not past it. */
static void library_charge_edges(void **state) {
  fx_t *f = *state;
  static const char make[] =
      "local fields, names, quick = {}, {}, {}\n"
      "for i = 1, 60 do local n = 'f' .. i\n"
      "  fields[n] = { type = 'integer' }; names[i] = n\n"
      "  quick[n] = function(v) return v end end\n"
      "local plan = verdict.schema_plan({ fields = fields, names = names, "
      "quick = quick, absent = {}, conditional = {}, requires = {} }, {})\n";
  char code[1024];
  snprintf(code, sizeof code, "%sreturn verdict.check_input(plan, {}) and 'one'",
           make);
  assert_int_equal(run_with(f, code, 120, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "one");
  snprintf(code, sizeof code, "%sverdict.check_input(plan, {})\n"
           "return verdict.check_input(plan, {}) and 'two'", make);
  assert_int_not_equal(run_with(f, code, 120, MEMCAP), LUA_OK);
  assert_int_equal(f->tripped, VD_EPOLICY_TIMEOUT);
  assert_contains(f->out.data, "instruction budget of 120 exhausted");
  assert_int_equal(run_with(f, code, 180, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "two");
  vd_sandbox_count(&f->sb, 0);
  snprintf(code, sizeof code, "%sreturn verdict.check_input(plan, {}) and 'one'",
           make);
  assert_int_equal(run_with(f, code, 1200, MEMCAP), LUA_OK);
  assert_string_equal(f->out.data, "one");
  assert_int_not_equal(run_with(f, code, 1199, MEMCAP), LUA_OK);
  assert_int_equal(f->tripped, VD_SANDBOX_RECOUNT);
  vd_sandbox_count(&f->sb, 1);
}

/* Issue 11, cause 2: the __gc check is raw, so a metatable's __index
 * cannot add __gc during it; and no finalizer ever runs. */
static void gc_check_is_raw(void **state) {
  fx_t *f = *state;
  assert_string_equal(ok(f, "local mt = setmetatable({}, {__index = "
                            "function(t, k) t[k] = function() "
                            "while true do end end end}) "
                            "setmetatable({}, mt) return rawget(mt, '__gc') "
                            "== nil"),
                      "true");
  lua_gc(f->sb.L, LUA_GCCOLLECT); /* no finalizer was registered */
  assert_contains(raises(f, "local mt = {__gc = true} "
                            "setmetatable({}, setmetatable(mt, {}))"),
                  "__gc is not allowed");
  /* an __index that only answers (without adding) is no __gc either */
  assert_string_equal(ok(f, "local mt = setmetatable({}, {__index = "
                            "function() return function() end end}) "
                            "return type(getmetatable(setmetatable({}, mt)))"),
                      "table");
  /* __gc added after setmetatable is never registered as a finalizer */
  assert_string_equal(ok(f, "local mt = {} local t = setmetatable({}, mt) "
                            "mt.__gc = function() while true do end "
                            "end t = nil return 'ok'"),
                      "ok");
  lua_gc(f->sb.L, LUA_GCCOLLECT); /* would hang if it had been */
}

/* table.sort gives one order for one input: equal elements keep their
 * order (it is stable), even where Lua's quicksort would have chosen
 * pivots from the clock (many equal keys, more than 100 elements). */
static void sort_is_stable(void **state) {
  fx_t *f = *state;
  const char *first;
  int i;
  static const char code[] =
      "local t = {} for i = 1, 500 do t[i] = { k = i % 3, id = i } end "
      "table.sort(t, function(a, b) return a.k < b.k end) "
      "local out = {} for i = 1, #t do out[i] = t[i].id end "
      "for i = 2, #t do assert(t[i - 1].k < t[i].k or "
      "(t[i - 1].k == t[i].k and t[i - 1].id < t[i].id)) end "
      "return table.concat(out, ',')";
  first = ok(f, code);
  assert_true(strncmp(first, "3,6,9,", 6) == 0);
  {
    char *copy = strdup(first);
    for (i = 0; i < 5; i++)
      assert_string_equal(ok(f, code), copy);
    free(copy);
  }
  assert_string_equal(ok(f, "local t = {5, 3, 9, 1, 7, 3} table.sort(t) "
                            "return table.concat(t, ' ')"), "1 3 3 5 7 9");
  assert_string_equal(ok(f, "local t = {'b', 'a', 'c'} table.sort(t, "
                            "function(x, y) return x > y end) "
                            "return table.concat(t)"), "cba");
  assert_string_equal(ok(f, "local t = {} table.sort(t) table.sort({1}) "
                            "return #t"), "0");
  assert_contains(raises(f, "table.sort({1, 'a'})"), "attempt to compare");
  assert_contains(raises(f, "table.sort({2, 1}, 5)"), "bad argument #2");
}

/* verdict.field_reads: the constant fields a function reads from its
 * first parameter, once each, in bytecode order; not from locals, other
 * parameters, upvalues or the functions it defines. */
static void field_reads(void **state) {
  fx_t *f = *state;
  assert_string_equal(
      ok(f, "return table.concat(verdict.field_reads(function(f, r) "
            "return f.category == 'x' and f[\"area\"] ~= nil and "
            "f.category ~= r.tier and f.signals.media end), ',')"),
      "category,area,signals");
  assert_string_equal(
      ok(f, "local up = {} return table.concat(verdict.field_reads("
            "function(f, r) local g = r; local k = 'x' "
            "return g.a or up.b or f[k] or (function(h) return h.c end)(f) "
            "end), ',')"),
      "");
  assert_string_equal(
      ok(f, "return #verdict.field_reads(function() return 1 end) + "
            "#verdict.field_reads(print or type)"),
      "0");
  assert_contains(raises(f, "verdict.field_reads({})"), "function expected");
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(forbidden_globals_absent),
      T(allowed_globals_present),
      T(library_holes),
      T(string_metatable_hidden),
      T(format_p_refused),
      T(format_s_has_no_address),
      T(binary_chunks_refused),
      T(globals_locked_after_lock),
      T(libraries_read_only),
      T(gc_metamethod_refused),
      T(pairs_deterministic),
      T(pairs_large_tables_stress),
      T(tostring_has_no_address),
      T(verdict_library),
      T(budget_trips),
      T(budget_message),
      T(pcall_cannot_swallow_timeout),
      T(xpcall_handler_cannot_escape_budget),
      T(memory_cap_trips),
      T(pcall_cannot_swallow_memory),
      T(load_cannot_swallow_memory),
      T(pattern_guard),
      T(next_evaluation_after_trip),
      T(arm_and_disarm),
      T(set_base_visible),
      T(wrapped_functions_keep_semantics),
      T(gc_check_is_raw),
      T(sort_is_stable),
      T(freeze_graph),
      T(frozen_json_kept),
      T(schema_plan_checks),
      T(plan_names_by_address),
      T(library_charge_edges),
      T(allocator_quick_paths),
      T(plan_enums_by_address),
      T(rule_tables_run_in_c),
      T(rule_tables_long),
      T(rule_conditions_arguments),
      T(plan_defaults_kinds),
      T(c_functions_bounded),
      T(table_library_plain_tables),
      T(field_reads),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
