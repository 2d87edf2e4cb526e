/*
 * lint.c - luacheck on a bundle, in process: vd_policy_luacheck() (see
 * policytest.h).
 *
 * luacheck is Lua code.  Debian's lua-check package (a dependency that
 * scripts/install-deps installs) puts it under /usr/share/lua/5.1/luacheck/
 * as pure-Lua modules that run unchanged on Lua 5.4.  They are loaded into
 * a Lua state of their own, never a policy's, made by vd_sandbox_init() so
 * that its memory goes through the one allocator (tests can fail its n-th
 * allocation).  That code is trusted, so the state gets back what the
 * sandbox takes from policies and luacheck needs: the full string library
 * (the pattern guards are for policies), package.config,
 * debug.getmetatable and debug.traceback, and a `require` that loads text
 * chunks from one directory and nothing else: no io, no os, no C modules.
 *
 * luacheck never reads a file: luacheck.check_strings() gets the text of
 * every .lua file of the bundle as it was loaded, so what is checked is
 * exactly what goes live, from a directory or from the history alike.
 * The options: the sandbox's own globals as the std (push_sandbox_std:
 * what policies/.luacheckrc declares for plain luacheck and editors) and
 * no line length limit.  A module that cannot be loaded, or a
 * luacheck that raises, is a problem of the bundle: the check fails, the
 * same on every host.  Each call makes and closes its state on the
 * caller's thread.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "verdict/policytest.h"
#include "verdict/sandbox.h"

typedef struct lint {
  vd_bundle_t *bundle;
  const char *dir;        /* where luacheck/init.lua is looked for */
  vd_policy_report_t *rep;
  unsigned problems;      /* added to rep */
  const char **paths;     /* the n-th checked file's path (1-based in Lua) */
  size_t npaths;
} lint_t;

/* require(name): the loaded value, else DIR/name.lua or DIR/name/init.lua
 * (dots in name become slashes), run once with name as its argument.
 * Upvalues: 1 DIR, 2 the table of loaded modules. */
static int lint_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *dir = lua_tostring(L, lua_upvalueindex(1));
  const char *rel;
  int status;
  if (lua_getfield(L, lua_upvalueindex(2), name) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  rel = luaL_gsub(L, name, ".", "/");                 /* +1 */
  lua_pushfstring(L, "%s/%s.lua", dir, rel);          /* +1 */
  status = luaL_loadfilex(L, lua_tostring(L, -1), "t"); /* +1 */
  if (status == LUA_ERRFILE) {
    lua_pop(L, 1);
    lua_pushfstring(L, "%s/%s/init.lua", dir, rel);
    status = luaL_loadfilex(L, lua_tostring(L, -1), "t");
    if (status == LUA_ERRFILE)
      return luaL_error(L, "module '%s' not found (no %s/%s.lua, no %s)",
                        name, dir, rel, lua_tostring(L, -2));
  }
  if (status != LUA_OK)
    return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, lua_upvalueindex(2), name);
  return 1;
}

/* Give the state what luacheck needs beyond the sandbox's globals. */
static void open_for_luacheck(lua_State *L, const char *dir) {
  lua_pushliteral(L, "");                 /* the strings' metatable */
  lua_getmetatable(L, -1);
  lua_getglobal(L, LUA_STRLIBNAME);       /* the full library, in _G */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 2);

  lua_newtable(L);                        /* package */
  lua_pushliteral(L, "/\n;\n?\n!\n-\n"); /* as Lua's own on POSIX */
  lua_setfield(L, -2, "config");
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "loaded");
  lua_pushstring(L, dir);
  lua_insert(L, -2);
  lua_pushcclosure(L, lint_require, 2);
  lua_setglobal(L, "require");
  lua_setglobal(L, LUA_LOADLIBNAME);

  luaL_requiref(L, LUA_DBLIBNAME, luaopen_debug, 0); /* not a global */
  lua_newtable(L);
  lua_getfield(L, -2, "getmetatable");
  lua_setfield(L, -2, "getmetatable");
  lua_getfield(L, -2, "traceback");
  lua_setfield(L, -2, "traceback");
  lua_setglobal(L, LUA_DBLIBNAME);
  lua_pop(L, 1);
}

static void push_strings(lua_State *L, const char *const *s) {
  int i;
  lua_newtable(L);
  for (i = 0; s[i]; i++) {
    lua_pushstring(L, s[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* luacheck's std for a bundle: exactly the globals the sandbox gives
 * policies (its base environment, the registry's "vd.base" table that
 * vd_sandbox_init() made in this state too; each library table with its
 * fields), plus what the engine adds to it: require, and parent (each
 * policy file's own; core/engine.c).  All read-only, as the sandbox
 * makes them.  policies/.luacheckrc declares the same for plain luacheck
 * and editors (tests/blackbox/test_authoring.py holds the two together).
 * Pushes { read_globals = { name = {} | { fields = { name = {} } } } }. */
static void push_sandbox_std(lua_State *L) {
  int rg, base;
  lua_newtable(L); /* the std */
  lua_newtable(L); /* its read_globals */
  rg = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "vd.base");
  base = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, base)) {
    int v = lua_gettop(L);
    if (lua_type(L, v - 1) != LUA_TSTRING) {
      lua_pop(L, 1);
      continue;
    }
    lua_newtable(L); /* the global's definition */
    /* a library: a read-only proxy whose metatable's __index holds it */
    if (lua_istable(L, v) && lua_getmetatable(L, v)) {
      if (lua_getfield(L, -1, "__index") == LUA_TTABLE) {
        int lib = lua_gettop(L);
        lua_newtable(L); /* fields */
        lua_pushnil(L);
        while (lua_next(L, lib)) {
          lua_pop(L, 1);
          if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_newtable(L);
            lua_rawset(L, lib + 1);
          }
        }
        lua_setfield(L, v + 1, "fields");
      }
      lua_settop(L, v + 1);
    }
    lua_pushvalue(L, v - 1);
    lua_insert(L, -2);
    lua_rawset(L, rg);
    lua_settop(L, v - 1);
  }
  lua_pop(L, 1); /* the base */
  lua_newtable(L);
  lua_setfield(L, rg, "require");
  lua_newtable(L);
  lua_setfield(L, rg, "parent");
  lua_setfield(L, -2, "read_globals");
}

/* The options every bundle is checked with: the sandbox's globals
 * (push_sandbox_std), no line length limit; then per file (options[i])
 * what a test file may read besides: with_defaults and in_every_offset,
 * which the test harness gives it (policytest.c). */
static void push_options(lua_State *L, lint_t *t) {
  static const char *const test_globals[] = {"with_defaults",
                                              "in_every_offset", NULL};
  size_t i;
  lua_newtable(L);
  push_sandbox_std(L);
  lua_setfield(L, -2, "std");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "max_line_length");
  for (i = 0; i < t->npaths; i++) {
    size_t n = strlen(t->paths[i]);
    if (n < 9 || strcmp(t->paths[i] + n - 9, "_test.lua") != 0)
      continue;
    lua_newtable(L);
    push_strings(L, test_globals);
    lua_setfield(L, -2, "read_globals");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void add_problem(lint_t *t, const char *file, int line, int column,
                        const char *code, const char *text) {
  vd_policy_report_add(t->rep, VD_FINDING_PROBLEM, VD_STAGE_LUACHECK, file,
                       line, column, code, text);
  t->problems++;
}

/* Under lua_pcall: check every .lua file, record every warning. */
static int lint_k(lua_State *L) {
  lint_t *t = lua_touserdata(L, 1);
  size_t i;
  lua_Integer k, n;
  int luacheck, report;

  open_for_luacheck(L, t->dir);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luacheck");
  lua_call(L, 1, 1);
  luacheck = lua_gettop(L);

  lua_getfield(L, luacheck, "check_strings");
  lua_newtable(L); /* sources */
  for (i = 0; i < vd_bundle_count(t->bundle); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(t->bundle, i);
    size_t len = strlen(f->path);
    if (len < 4 || strcmp(f->path + len - 4, ".lua") != 0)
      continue;
    t->paths[t->npaths++] = f->path;
    lua_pushlstring(L, f->data, f->len);
    lua_rawseti(L, -2, (lua_Integer)t->npaths);
  }
  push_options(L, t);
  lua_call(L, 2, 1);
  report = lua_gettop(L);

  n = (lua_Integer)lua_rawlen(L, report);
  for (k = 1; k <= n && (size_t)k <= t->npaths; k++) {
    const char *file = t->paths[k - 1];
    lua_Integer e, ne;
    lua_rawgeti(L, report, k);
    if (lua_getfield(L, -1, "fatal") == LUA_TSTRING) {
      /* as luacheck's plain formatter writes it */
      const char *fatal = lua_tostring(L, -1), *msg;
      lua_getfield(L, -2, "msg");
      msg = luaL_tolstring(L, -1, NULL);
      lua_pushfstring(L, "%c%s error (%s)",
                      fatal[0] >= 'a' && fatal[0] <= 'z' ? fatal[0] - 'a' + 'A'
                                                         : fatal[0],
                      fatal[0] ? fatal + 1 : "", msg);
      add_problem(t, file, 0, 0, NULL, lua_tostring(L, -1));
      lua_pop(L, 5);
      continue;
    }
    lua_pop(L, 1);
    ne = (lua_Integer)lua_rawlen(L, -1);
    for (e = 1; e <= ne; e++) {
      const char *code;
      lua_rawgeti(L, -1, e);             /* event */
      lua_getfield(L, -1, "code");
      code = lua_tostring(L, -1);
      lua_pushfstring(L, "%s%s", code && code[0] == '0' ? "E" : "W",
                      code ? code : "???");
      lua_getfield(L, luacheck, "get_message");
      lua_pushvalue(L, -4);
      lua_call(L, 1, 1);
      lua_getfield(L, -4, "line");
      lua_getfield(L, -5, "column");
      add_problem(t, file, (int)lua_tointeger(L, -2),
                  (int)lua_tointeger(L, -1), lua_tostring(L, -4),
                  lua_tostring(L, -3) ? lua_tostring(L, -3) : "?");
      lua_pop(L, 6);
    }
    lua_pop(L, 1);
  }
  return 0;
}

unsigned vd_policy_luacheck(vd_bundle_t *b, const char *dir,
                            vd_policy_report_t *r) {
  lint_t t;
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT;
  const char **paths;

  memset(&t, 0, sizeof t);
  t.bundle = b;
  t.dir = dir ? dir : VD_LUACHECK_DIR;
  t.rep = r;
  paths = calloc(vd_bundle_count(b) + 1, sizeof *paths);
  if (!paths || vd_sandbox_init(&sb, &err) != 0) {
    vd_buf_addf(&err, "%sluacheck: cannot make its Lua state",
                err.len ? ": " : "");
    add_problem(&t, NULL, 0, 0, NULL, err.data);
    free(paths);
    vd_buf_release(&err);
    return t.problems;
  }
  t.paths = paths;
  vd_sandbox_count(&sb, 0); /* trusted code, bounded by the bundle's size */
  lua_pushcfunction(sb.L, lint_k);
  lua_pushlightuserdata(sb.L, &t);
  if (lua_pcall(sb.L, 1, 0, 0) != LUA_OK) {
    vd_buf_reset(&err);
    vd_buf_addf(&err, "luacheck: %s (luacheck comes from Debian's "
                      "lua-check, which scripts/install-deps installs)",
                lua_tostring(sb.L, -1) ? lua_tostring(sb.L, -1)
                                       : "an error that is not a string");
    add_problem(&t, NULL, 0, 0, NULL, err.data);
  }
  vd_sandbox_release(&sb);
  free(paths);
  vd_buf_release(&err);
  return t.problems;
}
