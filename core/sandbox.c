/*
 * sandbox.c - the Lua state policies run in (see sandbox.h).
 *
 * Owns: the lua_State, its allocator accounting, the count hook, and the
 * base environment in the registry.  Invariant: policy code can reach only
 * what the base environment holds; every table there is either a read-only
 * proxy or a chunk environment of its own.  Runs on the thread that owns
 * the sandbox (a worker, or the CLI's main thread).
 *
 * The model is Redis's script_lua.c: an allow-list of globals, protected
 * tables, and a count hook that pcall cannot silence once it has fired.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

static const char BASE_KEY[] = "vd.base";

/* ------------------------------------------------------------------------
 * Allocator and hook
 * ------------------------------------------------------------------------ */

/* Give back block p of n bytes, to the slab pool or to malloc. */
static void sb_free(vd_sandbox_t *sb, void *p, size_t n) {
  if (n <= VD_SLAB_MAX && vd_slab_owns(&sb->slab, p))
    vd_slab_free(&sb->slab, p, n);
  else
    free(p);
}

/* The one allocator of the state (lua_Alloc): accounts every byte, applies
 * the evaluation's cap and the tests' failure injection, and serves small
 * blocks from the slab pool.  A shrink never fails, as Lua requires. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vd_sandbox_t *sb = ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    if (ptr)
      sb_free(sb, ptr, old);
    sb->used -= old;
    return NULL;
  }
  if (nsize > old) {
    if (sb->fail_countdown > 0 && --sb->fail_countdown == 0)
      sb->failing = 1; /* sticky: an emergency GC must not hide it */
    if (sb->failing)
      return NULL;
    if (sb->limit && sb->used - old + nsize > sb->limit)
      return NULL; /* Lua collects garbage and retries before it raises */
  }
  if (ptr && old <= VD_SLAB_MAX && vd_slab_owns(&sb->slab, ptr)) {
    if (nsize <= old || (nsize <= VD_SLAB_MAX &&
                         (nsize + 15) / 16 == (old + 15) / 16)) {
      sb->used = sb->used - old + nsize; /* it fits where it is */
      return ptr;
    }
  } else if (ptr || nsize > VD_SLAB_MAX) {
    /* a malloc block, or a new large one */
    p = realloc(ptr, nsize);
    if (!p)
      return nsize > old ? NULL : ptr; /* a failed shrink keeps the block */
    sb->used = sb->used - old + nsize;
    return p;
  }
  /* a new small block, or a pool block that has outgrown its class */
  p = nsize <= VD_SLAB_MAX ? vd_slab_alloc(&sb->slab, nsize) : NULL;
  if (!p && !(p = malloc(nsize)))
    return NULL; /* only when growing: shrinks returned above */
  if (ptr) {
    memcpy(p, ptr, old < nsize ? old : nsize);
    vd_slab_free(&sb->slab, ptr, old);
  }
  sb->used = sb->used - old + nsize;
  return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  (void)ar;
  sb->steps += VD_HOOK_STEP;
  if (sb->tripped == VD_EPOLICY_TIMEOUT ||
      (sb->budget && sb->steps > sb->budget)) {
    sb->tripped = VD_EPOLICY_TIMEOUT;
    luaL_where(L, 0); /* in a hook, level 0 is the running function */
    lua_pushfstring(L, "%sinstruction budget of %I exhausted",
                    lua_tostring(L, -1), (lua_Integer)sb->budget);
    lua_error(L);
  }
}

/* Set by vd_sandbox_interrupt(): the fast attempt stops at its next
 * instruction and the engine decides again with counting on. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  (void)ar;
  if (!sb->tripped)
    sb->tripped = VD_SANDBOX_RECOUNT;
  lua_pushliteral(L, "evaluation interrupted, to be counted");
  lua_error(L);
}

void vd_sandbox_count(vd_sandbox_t *sb, int on) {
  if (on)
    lua_sethook(sb->L, count_hook, LUA_MASKCOUNT, VD_HOOK_STEP);
  else
    lua_sethook(sb->L, NULL, 0, 0);
}

/* Async-signal-safe on the thread that runs sb: lua_sethook is documented
 * as callable from a signal handler, and this is all we do. */
void vd_sandbox_interrupt(vd_sandbox_t *sb) {
  lua_sethook(sb->L, interrupt_hook, LUA_MASKCOUNT, 1);
}

vd_sandbox_t *vd_sandbox_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

void vd_sandbox_arm(vd_sandbox_t *sb, unsigned long budget, size_t mem_cap) {
  sb->steps = 0;
  sb->budget = budget;
  sb->tripped = 0;
  sb->limit = mem_cap ? sb->used + mem_cap : 0;
}

int vd_sandbox_disarm(vd_sandbox_t *sb) {
  int t = sb->tripped;
  sb->tripped = 0;
  sb->steps = 0;
  return t;
}

/* ------------------------------------------------------------------------
 * Replacements for base functions
 * ------------------------------------------------------------------------ */

/* After a protected call inside the sandbox: a tripped limit, or a memory
 * error, goes on up; the policy does not get to handle it. */
static void rethrow_limits(lua_State *L, int status) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  if (status == LUA_ERRMEM && !sb->tripped)
    sb->tripped = VD_EPOLICY_MEMORY;
  if (sb->tripped)
    lua_error(L);
}

static int sb_pcall(lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  if (status != LUA_OK)
    rethrow_limits(L, status);
  lua_pushboolean(L, status == LUA_OK);
  lua_insert(L, 1);
  return lua_gettop(L);
}

/* The message handler xpcall installs: once a limit has tripped, the
 * policy's own handler must not run (hooks are off while a handler runs
 * after a hook raised, so it could loop for ever); the error passes on. */
static int xpcall_handler(lua_State *L) {
  if (vd_sandbox_of(L)->tripped)
    return 1;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int sb_xpcall(lua_State *L) {
  int n = lua_gettop(L), status;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, xpcall_handler, 1);
  lua_replace(L, 2);   /* f, guarded msgh, args... */
  lua_pushvalue(L, 1); /* f, msgh, args..., f */
  lua_rotate(L, 3, 1); /* f, msgh, f, args... */
  status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
  if (status != LUA_OK)
    rethrow_limits(L, status);
  lua_pushboolean(L, status == LUA_OK);
  lua_replace(L, 1); /* ok, msgh, results... */
  lua_remove(L, 2);
  return lua_gettop(L);
}

/* tostring that never shows an address: addresses differ between runs and
 * would make a decision impossible to replay. */
static int sb_tostring(lua_State *L) {
  luaL_checkany(L, 1);
  switch (lua_type(L, 1)) {
  case LUA_TNIL:
  case LUA_TBOOLEAN:
  case LUA_TNUMBER:
  case LUA_TSTRING:
    luaL_tolstring(L, 1, NULL);
    return 1;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, 1) == vd_json_null) {
      lua_pushliteral(L, "null");
      return 1;
    }
    break;
  case LUA_TTABLE:
    if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
      lua_pop(L, 1);
      luaL_tolstring(L, 1, NULL);
      return 1;
    }
    break;
  default:
    break;
  }
  lua_pushstring(L, luaL_typename(L, 1));
  return 1;
}

static int sb_setmetatable(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "__gc");
    if (!lua_isnil(L, -1))
      return luaL_error(L, "setmetatable: __gc is not allowed in policies");
    lua_pop(L, 1);
  } else {
    luaL_argexpected(L, lua_isnil(L, 2), 2, "nil or table");
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* Deterministic pairs: keys in a fixed order (numbers ascending, then
 * strings bytewise, then booleans), whatever the hash seed of the state.
 * The keys are collected into a table and sorted in C (a permutation kept
 * in a userdata), so a call costs one pass, one qsort and two allocations. */
typedef struct pkey {
  int rank;          /* 0 number, 1 string, 2 boolean, 3 other */
  lua_Number num;
  const char *str;   /* anchored by the table being iterated */
  size_t len;
  lua_Integer slot;  /* position in the keys table */
} pkey_t;

static int pkey_cmp(const void *x, const void *y) {
  const pkey_t *a = x, *b = y;
  if (a->rank != b->rank)
    return a->rank < b->rank ? -1 : 1;
  if (a->rank == 0)
    return a->num < b->num ? -1 : a->num > b->num;
  if (a->rank == 1) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->str, b->str, n);
    if (c)
      return c;
    return a->len < b->len ? -1 : a->len > b->len;
  }
  if (a->rank == 2)
    return (int)a->num - (int)b->num;
  return a->slot < b->slot ? -1 : a->slot > b->slot; /* no stable order */
}

static int pairs_iter(lua_State *L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(4));
  lua_Integer n = (lua_Integer)lua_rawlen(L, lua_upvalueindex(2));
  const lua_Integer *perm = lua_touserdata(L, lua_upvalueindex(3));
  if (i >= n)
    return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(4));
  lua_rawgeti(L, lua_upvalueindex(2), perm ? perm[i] : i + 1);
  lua_pushvalue(L, -1);
  lua_rawget(L, lua_upvalueindex(1));
  return 2;
}

static int sb_pairs(lua_State *L) {
  lua_Integer n = 0, i;
  pkey_t small[32], *keys = small;
  size_t cap = 32;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L); /* 2: keys, in table order */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    pkey_t *k;
    lua_pop(L, 1);
    if ((size_t)n == cap) {
      pkey_t *grown = (pkey_t *)lua_newuserdatauv(L, cap * 2 * sizeof *grown, 0);
      memcpy(grown, keys, (size_t)n * sizeof *grown);
      keys = grown;
      cap *= 2;
      lua_insert(L, 3); /* keep the buffer alive below the key */
    }
    k = &keys[n];
    k->slot = n + 1;
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      k->rank = 0;
      k->num = lua_tonumber(L, -1);
      break;
    case LUA_TSTRING:
      k->rank = 1;
      k->str = lua_tolstring(L, -1, &k->len);
      break;
    case LUA_TBOOLEAN:
      k->rank = 2;
      k->num = lua_toboolean(L, -1);
      break;
    default:
      k->rank = 3;
      break;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, ++n);
  }
  if (n > 1) {
    lua_Integer *perm;
    qsort(keys, (size_t)n, sizeof *keys, pkey_cmp);
    /* the grown key buffers are still on the stack, so keys stays valid */
    perm = lua_newuserdatauv(L, (size_t)n * sizeof *perm, 0);
    for (i = 0; i < n; i++)
      perm[i] = keys[i].slot;
  } else {
    lua_pushnil(L); /* identity */
  }
  lua_rotate(L, 3, 1); /* 3: perm (or nil); drops the buffers below */
  lua_settop(L, 3);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, pairs_iter, 4); /* upvalues: t, keys, perm, index */
  lua_pushnil(L);
  lua_pushnil(L);
  return 3;
}

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only, given as a
 * string; the environment defaults to a fresh read-only one. */
static int sb_load(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  int status;
  if (!lua_isnoneornil(L, 3)) {
    const char *mode = luaL_checkstring(L, 3);
    if (strcmp(mode, "t") != 0)
      return luaL_error(L, "load: only text chunks (mode \"t\") are allowed");
  }
  if (lua_isnoneornil(L, 4)) {
    vd_sandbox_new_env(L);
    vd_sandbox_lock_env(L, -1);
  } else {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_pushvalue(L, 4);
  }
  status = vd_sandbox_load(L, name, s, len, lua_gettop(L));
  if (status == LUA_ERRMEM)
    rethrow_limits(L, status); /* never hand a memory error back as a value */
  if (status != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

/* ------------------------------------------------------------------------
 * Bounded string functions
 * ------------------------------------------------------------------------ */

/* Lua's matcher backtracks: with q repetition items a subject of n bytes
 * can cost about n^(q+1) steps, all inside C where no hook fires.  Refuse
 * calls whose bound passes 10^8 steps (a few tenths of a second). */
#define PATTERN_LOG_LIMIT 18.42 /* ln(1e8) */

static int pattern_too_costly(const char *p, size_t lp, size_t ls,
                              int anchorable) {
  size_t i = 0;
  int reps = 0, opts = 0, anchored = 0;
  double cost;
  if (anchorable && lp && p[0] == '^') {
    anchored = 1;
    i = 1;
  }
  while (i < lp) {
    char c = p[i];
    if (c == '%') {
      if (i + 1 < lp && p[i + 1] == 'b')
        i += 4;
      else if (i + 1 < lp && p[i + 1] == 'f') {
        i += 2;
        if (i < lp && p[i] == '[') {
          i++;
          if (i < lp && p[i] == '^') i++;
          if (i < lp && p[i] == ']') i++;
          while (i < lp && p[i] != ']') i += p[i] == '%' ? 2 : 1;
          i++;
        }
      } else
        i += 2;
    } else if (c == '[') {
      i++;
      if (i < lp && p[i] == '^') i++;
      if (i < lp && p[i] == ']') i++;
      while (i < lp && p[i] != ']') i += p[i] == '%' ? 2 : 1;
      i++;
    } else {
      i++;
    }
    if (i < lp) {
      if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
        reps++;
        i++;
      } else if (p[i] == '?') {
        opts++;
        i++;
      }
    }
  }
  cost = log((double)(ls < 2 ? 2 : ls)) * (reps + (anchored ? 0 : 1)) +
         log(2.0) * opts;
  return cost > PATTERN_LOG_LIMIT;
}

static int guarded(lua_State *L, int anchorable, const char *fname) {
  size_t ls, lp;
  const char *s, *p;
  s = luaL_checklstring(L, 1, &ls);
  p = luaL_checklstring(L, 2, &lp);
  (void)s;
  if (pattern_too_costly(p, lp, ls, anchorable))
    return luaL_error(L,
                      "%s: pattern too costly for a subject of %d bytes "
                      "(simplify the pattern or shorten the subject)",
                      fname, (int)ls);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int sb_find(lua_State *L) {
  if (lua_toboolean(L, 4)) { /* plain find: linear */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  return guarded(L, 1, "string.find");
}
static int sb_match(lua_State *L) { return guarded(L, 1, "string.match"); }
static int sb_gmatch(lua_State *L) { return guarded(L, 0, "string.gmatch"); }
static int sb_gsub(lua_State *L) { return guarded(L, 1, "string.gsub"); }

static int sb_format(lua_State *L) {
  size_t n, i;
  const char *f = luaL_checklstring(L, 1, &n);
  for (i = 0; i + 1 < n; i++) {
    if (f[i] != '%')
      continue;
    i++;
    if (f[i] == '%')
      continue;
    while (i < n && strchr("-+ #0123456789.", f[i]))
      i++;
    if (i < n && f[i] == 'p')
      return luaL_error(L, "string.format: %%p is not allowed in policies");
  }
  /* %s of a table or function would show an address: use our tostring */
  {
    int a, top = lua_gettop(L);
    for (a = 2; a <= top; a++) {
      int t = lua_type(L, a);
      if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        lua_pushcfunction(L, sb_tostring);
        lua_pushvalue(L, a);
        lua_call(L, 1, 1);
        lua_replace(L, a);
      }
    }
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* ------------------------------------------------------------------------
 * The verdict library
 * ------------------------------------------------------------------------ */

static int mark(lua_State *L, int kind) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1)) {
    if (!vd_json_marker(L, 1))
      return luaL_error(L, "table already has a metatable");
    lua_pop(L, 1);
  }
  vd_json_push_marker(L, kind);
  lua_setmetatable(L, 1);
  return 1;
}

static int v_array(lua_State *L) { return mark(L, 'a'); }
static int v_object(lua_State *L) { return mark(L, 'o'); }

static int v_is_null(lua_State *L) {
  lua_pushboolean(L, lua_touserdata(L, 1) == vd_json_null);
  return 1;
}

/* verdict.only_keys(t, allowed): whether every key of t has a value in
 * the plain table `allowed` (raw lookups).  The answer does not depend on
 * the order keys are visited in, so the raw, unordered walk is safe here
 * and costs no sorting; the schema's quick check runs it on every request. */
static int v_only_keys(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, 2) == LUA_TNIL) {
      lua_pushboolean(L, 0);
      return 1;
    }
    lua_pop(L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* verdict.new_table(narray, nhash): an empty table with room for that many
 * elements, so that filling it does not rehash it at 1, 2, 4, 8... keys. */
static int v_new_table(lua_State *L) {
  lua_Integer na = luaL_optinteger(L, 1, 0), nh = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, na >= 0 && na <= 4096, 1, "expected 0 to 4096");
  luaL_argcheck(L, nh >= 0 && nh <= 4096, 2, "expected 0 to 4096");
  lua_createtable(L, (int)na, (int)nh);
  return 1;
}

/* verdict.is_empty(t): whether t has no key at all. */
static int v_is_empty(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, lua_next(L, 1) == 0);
  return 1;
}

/* verdict.json_type(v): "array" or "object" for a table that carries the
 * JSON decoder's marker (core/json.c; also set by verdict.array and
 * verdict.object), nil for any other value.  It compares the metatable
 * itself, which policy code cannot reach or forge (the markers hide from
 * getmetatable() and refuse setmetatable()), so no key, length or
 * __metatable field can fool it, and `[]` and `{}` differ although both
 * are empty.  lib/schema.lua asks it about every table-valued field of
 * every request, so what it needs is in its upvalues (push_json_type): no
 * registry lookup, no string made. */
static int v_json_type(lua_State *L) {
  const void *mt = NULL;
  if (lua_getmetatable(L, 1)) /* a string's is no marker either */
    mt = lua_topointer(L, -1);
  if (mt && mt == lua_topointer(L, lua_upvalueindex(2)))
    lua_pushvalue(L, lua_upvalueindex(4));
  else if (mt && mt == lua_topointer(L, lua_upvalueindex(1)))
    lua_pushvalue(L, lua_upvalueindex(3));
  else
    lua_pushnil(L);
  return 1;
}

/* Push verdict.json_type: v_json_type with upvalues 1 and 2 the array and
 * object markers, 3 and 4 its answers "array" and "object". */
static void push_json_type(lua_State *L) {
  vd_json_push_marker(L, 'a');
  vd_json_push_marker(L, 'o');
  lua_pushliteral(L, "array");
  lua_pushliteral(L, "object");
  lua_pushcclosure(L, v_json_type, 4);
}

/* ------------------------------------------------------------------------
 * Environments
 * ------------------------------------------------------------------------ */

static int refuse_write(lua_State *L) {
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  return luaL_error(L, "attempt to assign '%s' in a read-only table "
                       "(policies may not change globals or libraries; "
                       "use a local)", k);
}

void vd_sandbox_push_proxy(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);          /* proxy */
  lua_createtable(L, 0, 3); /* its metatable */
  lua_pushvalue(L, idx);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

void vd_sandbox_new_env(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

void vd_sandbox_lock_env(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newtable(L); /* holder: receives the env's contents */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  /* holder falls through to the base */
  lua_createtable(L, 0, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  /* empty the env itself; it now only reads from the holder */
  for (;;) {
    lua_pushnil(L);
    if (!lua_next(L, idx))
      break;
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawset(L, idx);
  }
  lua_createtable(L, 0, 3);
  lua_insert(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, refuse_write);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, idx);
}

int vd_sandbox_load(lua_State *L, const char *name, const char *buf,
                    size_t len, int env_idx) {
  int status;
  env_idx = lua_absindex(L, env_idx);
  status = luaL_loadbufferx(L, buf, len, name, "t");
  if (status != LUA_OK)
    return status;
  lua_pushvalue(L, env_idx);
  if (!lua_setupvalue(L, -2, 1))
    lua_pop(L, 1);
  return LUA_OK;
}

void vd_sandbox_set_base(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  lua_insert(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Copy the fields of the library table at top into a new table, leaving
 * out `drop`, and replacing the named functions by guarded closures over
 * the originals.  Pushes the copy. */
typedef struct wrap {
  const char *name;
  lua_CFunction fn;
} wrap_t;

static void copy_lib(lua_State *L, const char *const *drop,
                     const wrap_t *wraps) {
  int src = lua_gettop(L);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, src)) {
    const char *k = lua_tostring(L, -2);
    const char *const *d;
    const wrap_t *w;
    int skip = 0;
    for (d = drop; d && *d; d++)
      if (strcmp(*d, k) == 0)
        skip = 1;
    for (w = wraps; !skip && w && w->name; w++)
      if (strcmp(w->name, k) == 0) {
        lua_pushcclosure(L, w->fn, 1); /* upvalue: the original */
        break;
      }
    if (skip) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, src + 1);
  }
  lua_remove(L, src);
}

static int build_base(lua_State *L) {
  static const char *const base_fns[] = {
      "assert", "error", "ipairs", "select", "tonumber", "type",
      "rawequal", "rawlen", "rawget", "getmetatable", NULL};
  static const char *const string_drop[] = {"dump", NULL};
  static const char *const math_drop[] = {"random", "randomseed", NULL};
  static const wrap_t string_wraps[] = {
      {"find", sb_find},   {"match", sb_match}, {"gmatch", sb_gmatch},
      {"gsub", sb_gsub},   {"format", sb_format}, {NULL, NULL}};
  static const luaL_Reg replaced[] = {
      {"pcall", sb_pcall},       {"xpcall", sb_xpcall},
      {"tostring", sb_tostring}, {"pairs", sb_pairs},
      {"load", sb_load},         {"setmetatable", sb_setmetatable},
      {NULL, NULL}};
  static const luaL_Reg vlib[] = {{"array", v_array},
                                  {"object", v_object},
                                  {"is_null", v_is_null},
                                  {"only_keys", v_only_keys},
                                  {"is_empty", v_is_empty},
                                  {"new_table", v_new_table},
                                  {NULL, NULL}};
  static const struct lib_copy {
    const char *name;
    const char *const *drop;
  } libs[] = {{LUA_TABLIBNAME, NULL},
              {LUA_MATHLIBNAME, math_drop},
              {LUA_UTF8LIBNAME, NULL},
              {NULL, NULL}};
  const struct lib_copy *lib;
  const char *const *f;
  int base;

  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  lua_settop(L, 0);
  vd_json_setup(L);

  lua_newtable(L);
  base = lua_gettop(L);
  lua_pushglobaltable(L);
  for (f = base_fns; *f; f++) {
    lua_getfield(L, -1, *f);
    lua_setfield(L, base, *f);
  }
  lua_pop(L, 1); /* the global table */
  luaL_setfuncs(L, replaced, 0);
  lua_pushliteral(L, LUA_VERSION);
  lua_setfield(L, base, "_VERSION");

  /* string: a sanitized copy, which also becomes the strings' __index */
  lua_getglobal(L, LUA_STRLIBNAME);
  copy_lib(L, string_drop, string_wraps);
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1); /* string metatable */
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 2);
  vd_sandbox_push_proxy(L, -1);
  lua_setfield(L, base, LUA_STRLIBNAME);
  lua_pop(L, 1);

  /* table, math (without random), utf8: read-only copies */
  for (lib = libs; lib->name; lib++) {
    lua_getglobal(L, lib->name);
    copy_lib(L, lib->drop, NULL);
    vd_sandbox_push_proxy(L, -1);
    lua_setfield(L, base, lib->name);
    lua_pop(L, 1);
  }

  luaL_newlib(L, vlib);
  lua_pushlightuserdata(L, vd_json_null);
  lua_setfield(L, -2, "null");
  push_json_type(L);
  lua_setfield(L, -2, "json_type");
  vd_sandbox_push_proxy(L, -1);
  lua_setfield(L, base, "verdict");
  lua_pop(L, 1);

  lua_pushvalue(L, base);
  lua_setfield(L, LUA_REGISTRYINDEX, BASE_KEY);
  return 0;
}

int vd_sandbox_init(vd_sandbox_t *sb, vd_buf_t *err) {
  lua_State *L;
  memset(sb, 0, sizeof *sb);
  vd_slab_init(&sb->slab, VD_SANDBOX_SLAB_BYTES);
  L = lua_newstate(sb_alloc, sb);
  if (!L) {
    vd_slab_release(&sb->slab);
    vd_buf_reset(err);
    vd_buf_adds(err, "cannot create a Lua state: out of memory");
    return VD_ENOMEM;
  }
  sb->L = L;
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_pushcfunction(L, build_base);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    vd_buf_reset(err);
    vd_buf_addf(err, "cannot set up the sandbox: %s", lua_tostring(L, -1));
    lua_close(L);
    vd_slab_release(&sb->slab);
    sb->L = NULL;
    return VD_ENOMEM;
  }
  vd_sandbox_count(sb, 1);
  return 0;
}

void vd_sandbox_release(vd_sandbox_t *sb) {
  if (sb->L) {
    sb->limit = 0;
    sb->budget = 0;
    lua_close(sb->L);
    vd_slab_release(&sb->slab);
  }
  sb->L = NULL;
}
