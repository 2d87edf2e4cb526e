/*
 * sandbox.c - the Lua state policies run in (see sandbox.h).
 *
 * Owns: the lua_State, its allocator accounting, the count hook, and the
 * base environment in the registry.  Invariant: policy code can reach only
 * what the base environment holds; every table there is either a read-only
 * proxy or a chunk environment of its own; once a bundle is frozen, every
 * table it loaded is reached only through a read-only proxy.  Runs on the thread that owns
 * the sandbox (a worker, or the CLI's main thread).
 *
 * The model is Redis's script_lua.c: an allow-list of globals, protected
 * tables, and a count hook that pcall cannot silence once it has fired.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

static const char BASE_KEY[] = "vd.base";
/* Freezing (vd_sandbox_freeze()): registry tables from each loaded table
 * T, and from its copy T', to its proxy PT; and the key under which a
 * proxy's metatable holds T'. */
static const char FROZEN_BY_ORIG[] = "vd.frozen.orig";
static const char FROZEN_BY_COPY[] = "vd.frozen.copy";
static const char FROZEN_TAG[] = "frozen";

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

/* sb_alloc's every case (below): called for what its quick paths leave. */
static __attribute__((noinline)) void *sb_alloc_all(vd_sandbox_t *sb,
                                                    void *ptr, size_t osize,
                                                    size_t nsize) {
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
    if (sb->limit && sb->used - old + nsize > sb->limit) {
      sb->collect = 1; /* its garbage goes before the next evaluation */
      return NULL; /* Lua collects garbage and retries before it raises */
    }
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

/* The one allocator of the state (lua_Alloc): accounts every byte, applies
 * the evaluation's cap and the tests' failure injection, and serves small
 * blocks from the slab pool.  A shrink never fails, as Lua requires.  Its
 * two common cases, a pool block freed and a new small block the pool has
 * at hand with no failure injected and room under the cap, are decided
 * here without a call (a decision makes some forty of each); everything
 * else, the same checks in the same order, in sb_alloc_all. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vd_sandbox_t *sb = ud;
  void *p;
  if (nsize == 0) {
    if (!ptr) /* Lua frees a table's empty parts this way */
      return NULL;
    if (osize <= VD_SLAB_MAX && vd_slab_owns(&sb->slab, ptr)) {
      vd_slab_free(&sb->slab, ptr, osize);
      sb->used -= osize;
      return NULL;
    }
  } else if (!ptr && nsize <= VD_SLAB_MAX && sb->fail_countdown <= 0 &&
             !sb->failing && (!sb->limit || sb->used + nsize <= sb->limit) &&
             (p = vd_slab_alloc_quick(&sb->slab, nsize)) != NULL) {
    sb->used += nsize;
    return p;
  }
  return sb_alloc_all(sb, ptr, osize, nsize);
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
  sb->counting = on;
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

vd_sandbox_t *vd_sandbox_find(lua_State *L) {
  void *ud;
  return lua_getallocf(L, &ud) == sb_alloc ? ud : NULL;
}

void vd_sandbox_arm(vd_sandbox_t *sb, unsigned long budget, size_t mem_cap) {
  sb->own_input = NULL;
  /* No policy code runs in a collection (__gc is refused), so this one is
   * outside any budget.  It makes the evaluation start from the state's
   * live size, so its room, and its charges for making output (which stop
   * at the room left), do not depend on the garbage before it. */
  if (sb->collect) {
    sb->collect = 0;
    sb->limit = 0;
    lua_gc(sb->L, LUA_GCCOLLECT);
  }
  /* Past the state's cap, see first how much of it is garbage. */
  if (sb->state_cap && mem_cap && sb->used + mem_cap > sb->state_cap) {
    sb->limit = 0;
    lua_gc(sb->L, LUA_GCCOLLECT);
  }
  sb->steps = 0;
  sb->budget = budget;
  sb->tripped = 0;
  sb->limit = mem_cap ? sb->used + mem_cap : 0;
  /* Restart the hook's count too: otherwise the first hook call of this
   * evaluation comes after whatever the last one left over, and where the
   * budget runs out would depend on the decisions before. */
  if (sb->counting)
    vd_sandbox_count(sb, 1);
  if (sb->state_cap && mem_cap && sb->limit > sb->state_cap)
    sb->limit = sb->state_cap > sb->used ? sb->state_cap : sb->used;
}

void vd_sandbox_seal(vd_sandbox_t *sb, size_t mem_cap) {
  sb->state_cap = sb->used + 2 * mem_cap;
}

int vd_sandbox_disarm(vd_sandbox_t *sb) {
  int t = sb->tripped;
  sb->own_input = NULL;
  sb->tripped = 0;
  sb->steps = 0;
  return t;
}

void vd_sandbox_charge(lua_State *L, double cost) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  if (sb->tripped == VD_EPOLICY_TIMEOUT ||
      (sb->budget && cost > (double)(sb->budget - (sb->steps < sb->budget
                                                      ? sb->steps
                                                      : sb->budget)))) {
    sb->tripped = VD_EPOLICY_TIMEOUT;
    sb->steps = sb->budget + 1;
    luaL_where(L, 1); /* the Lua code that called the C function */
    lua_pushfstring(L, "%sinstruction budget of %I exhausted",
                    lua_tostring(L, -1), (lua_Integer)sb->budget);
    lua_error(L);
  }
  sb->steps += (unsigned long)cost;
  /* A fast attempt (no count hook) knows its charges but not its
   * instructions, and charged work can be quick: past a tenth of the
   * budget in charges, have it decided again with counting, so that the
   * answer is always the counted one (see vd_engine_decide()). */
  if (!sb->counting && sb->budget && sb->steps > sb->budget / 10) {
    sb->tripped = VD_SANDBOX_RECOUNT;
    lua_pushliteral(L, "evaluation interrupted, to be counted");
    lua_error(L);
  }
}

/* vd_sandbox_charge(L, n) for the library's per-call charges (a whole n):
 * the common case, room left and no recount due, without the call and its
 * arithmetic in doubles.  Anything else goes to vd_sandbox_charge, which
 * decides as it always has. */
static inline void charge_small(lua_State *L, unsigned long n) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  if (sb->tripped != VD_EPOLICY_TIMEOUT && sb->steps < sb->budget &&
      n <= sb->budget - sb->steps &&
      (sb->counting || sb->steps + n <= sb->budget / 10)) {
    sb->steps += n;
    return;
  }
  vd_sandbox_charge(L, (double)n);
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

/* Lua registers a finalizer only when setmetatable finds __gc, so this is
 * the one place to refuse it.  The look-up is raw: an ordinary one would
 * call the metatable's own __index, which could add __gc while it runs. */
static int sb_setmetatable(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (vd_sandbox_unfreeze(L, 1))
    return luaL_error(L, "setmetatable: policies cannot change a table "
                         "loaded with the bundle");
  /* a loaded metatable: its copy, which getmetatable() maps back */
  vd_sandbox_unfreeze(L, 2);
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
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

/* getmetatable as Lua's, except that a metatable that is the copy of a
 * loaded table (sb_setmetatable() set it) is answered with its proxy. */
static int sb_getmetatable(lua_State *L) {
  luaL_checkany(L, 1);
  if (!lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable"); /* raw, like Lua's */
  if (lua_type(L, -1) == LUA_TTABLE) {
    int r = lua_gettop(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_COPY) == LUA_TTABLE) {
      lua_pushvalue(L, r);
      if (lua_rawget(L, -2) != LUA_TNIL)
        return 1;
    }
    lua_settop(L, r);
  }
  return 1;
}

/* rawget and rawlen read a loaded table's contents, not its empty proxy. */
static int sb_rawget(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  vd_sandbox_unfreeze(L, 1);
  lua_rawget(L, 1);
  return 1;
}

static int sb_rawlen(lua_State *L) {
  int t = lua_type(L, 1);
  luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1,
                   "table or string");
  vd_sandbox_unfreeze(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
  return 1;
}

/* Deterministic pairs: keys in a fixed order (numbers ascending, then
 * strings bytewise, then false before true, then verdict.null), whatever
 * the hash seed of the state or the addresses of its objects.  A key that
 * has no such order (a table or a function: only its address tells it
 * from another) is refused rather than visited in an order that changes
 * from run to run.  The keys are collected into a table and sorted in C
 * (a permutation kept in a userdata), so a call costs one pass, one qsort
 * and two allocations. */
typedef struct pkey {
  int rank;          /* 0 number, 1 string, 2 boolean, 3 verdict.null */
  int isint;         /* rank 0: the key is an integer (ival), else fval */
  lua_Integer ival;
  lua_Number fval;
  const char *str;   /* anchored by the table being iterated */
  size_t len;
  lua_Integer slot;  /* position in the keys table */
} pkey_t;

/* Integer i against float f, exactly (no rounding of i to a double). */
static int int_float_cmp(lua_Integer i, lua_Number f) {
  lua_Number fl;
  if (f >= -(lua_Number)LUA_MININTEGER) /* 2^63 and above */
    return -1;
  if (f < (lua_Number)LUA_MININTEGER)
    return 1;
  fl = floor(f);
  if (i != (lua_Integer)fl)
    return i < (lua_Integer)fl ? -1 : 1;
  return f > fl ? -1 : 0; /* equal keys cannot both be in a table */
}

static int pkey_cmp(const void *x, const void *y) {
  const pkey_t *a = x, *b = y;
  if (a->rank != b->rank)
    return a->rank < b->rank ? -1 : 1;
  if (a->rank == 0) {
    if (a->isint && b->isint)
      return a->ival < b->ival ? -1 : a->ival > b->ival;
    if (a->isint)
      return int_float_cmp(a->ival, b->fval);
    if (b->isint)
      return -int_float_cmp(b->ival, a->fval);
    return a->fval < b->fval ? -1 : a->fval > b->fval;
  }
  if (a->rank == 1) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->str, b->str, n);
    if (c)
      return c;
    return a->len < b->len ? -1 : a->len > b->len;
  }
  if (a->rank == 2)
    return (int)a->ival - (int)b->ival;
  return 0; /* verdict.null: only one such key */
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
  vd_sandbox_unfreeze(L, 1); /* the copy's values are proxies */
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
      k->isint = lua_isinteger(L, -1);
      if (k->isint)
        k->ival = lua_tointeger(L, -1);
      else
        k->fval = lua_tonumber(L, -1);
      break;
    case LUA_TSTRING:
      k->rank = 1;
      k->str = lua_tolstring(L, -1, &k->len);
      break;
    case LUA_TBOOLEAN:
      k->rank = 2;
      k->ival = lua_toboolean(L, -1);
      break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, -1) == vd_json_null) {
        k->rank = 3;
        break;
      }
      /* fall through */
    default:
      return luaL_error(L, "pairs: a table with a %s key has no fixed "
                           "order (keys must be numbers, strings, booleans "
                           "or verdict.null)", luaL_typename(L, -1));
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, 2, ++n);
  }
  /* the walk was paid for by the keys table's growth; the sort is not */
  vd_sandbox_charge(L, n > 1 ? (double)n * log2((double)n) : 1);
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
  vd_sandbox_charge(L, (double)len); /* the parser's pass over the text */
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
 * Library functions with a bounded, charged cost
 *
 * No hook fires inside a C function, so each one a policy can reach either
 * costs O(1), or is paid for by the allocator (its work is the bytes it
 * makes: string.upper, string.sub, table.pack...), or is wrapped here: the
 * wrapper works out from the arguments an upper bound on the work the
 * original will do, charges it with vd_sandbox_charge() (which raises the
 * budget's error when it cannot be paid) and only then calls the original,
 * kept as the closure's upvalue 1.
 * ------------------------------------------------------------------------ */

/* Bytes per instruction charged: of input walked a byte at a time, and of
 * output made (copied, mostly).  Charges are functions of the arguments
 * only, never of the state's history (which strings exist already, how
 * far the stack has grown), so the same decision always costs the same
 * and a budget stays exact. */
#define SCAN_STEP_BYTES 16.0
#define MAKE_STEP_BYTES 64.0

/* Charge for making up to `bytes` of output.  What cannot fit under the
 * memory cap is never made (the allocation fails first), so no more than
 * the room left is charged: a string too big for the cap gets the memory
 * error, not a timeout. */
static void charge_output(lua_State *L, double bytes) {
  vd_sandbox_t *sb = vd_sandbox_of(L);
  if (sb->limit) {
    double room = sb->limit > sb->used ? (double)(sb->limit - sb->used) : 0;
    if (bytes > room)
      bytes = room;
  }
  vd_sandbox_charge(L, bytes / MAKE_STEP_BYTES);
}

/* Call the original (upvalue 1) with the arguments as they are now. */
static int call_original(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Lua's string positions: negative counts from the end, as lstrlib.c's
 * posrelatI does; the result is >= 1. */
static lua_Integer pos_from(lua_Integer pos, size_t len) {
  if (pos > 0)
    return pos;
  if (pos == 0 || pos < -(lua_Integer)len)
    return 1;
  return (lua_Integer)len + pos + 1;
}

/* Charge a scan of the string arguments from `first` on. */
static int charge_scan(lua_State *L, int first) {
  int i, top = lua_gettop(L);
  double bytes = 0;
  for (i = first; i <= top; i++)
    if (lua_type(L, i) == LUA_TSTRING)
      bytes += (double)lua_rawlen(L, i);
  vd_sandbox_charge(L, bytes / SCAN_STEP_BYTES);
  return call_original(L);
}

/* string.pack, unpack and packsize walk their format (an item like "!"
 * makes no output); utf8.len, offset and codepoint walk their subject;
 * tonumber walks its text. */
static int sb_scanning(lua_State *L) { return charge_scan(L, 1); }

/* string.rep(s, n [, sep]) makes its whole result before its n rounds,
 * so the allocator charges (and the memory cap bounds) them; all but when
 * s and sep are empty, where n rounds make nothing. */
static int sb_rep(lua_State *L) {
  size_t l, lsep = 0;
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_checklstring(L, 1, &l);
  luaL_optlstring(L, 3, "", &lsep);
  if (n > 0) {
    if (l == 0 && lsep == 0)
      vd_sandbox_charge(L, (double)n);
    else
      charge_output(L, (double)n * ((double)l + (double)lsep));
  }
  return call_original(L);
}

/* string.upper, lower, reverse: a pass over s, making as much. */
static int sb_bytewise(lua_State *L) {
  size_t l;
  luaL_checklstring(L, 1, &l);
  vd_sandbox_charge(L, (double)l / SCAN_STEP_BYTES);
  charge_output(L, (double)l);
  return call_original(L);
}

/* string.sub: copies the slice. */
static int sb_sub(lua_State *L) {
  size_t l;
  lua_Integer i, j;
  luaL_checklstring(L, 1, &l);
  i = pos_from(luaL_checkinteger(L, 2), l);
  j = luaL_optinteger(L, 3, -1);
  if (j > (lua_Integer)l)
    j = (lua_Integer)l;
  else if (j < 0)
    j = j < -(lua_Integer)l ? 0 : (lua_Integer)l + j + 1;
  if (j >= i)
    charge_output(L, (double)j - (double)i + 1);
  return call_original(L);
}

/* string.pack: its output is at most the sizes its format names (every
 * number in it, and 16 bytes an item otherwise) plus the strings given. */
static int sb_pack(lua_State *L) {
  size_t lf, i;
  const char *f = luaL_checklstring(L, 1, &lf);
  double out = 16.0 * (double)lf, num = 0;
  for (i = 0; i < lf; i++) {
    if (f[i] >= '0' && f[i] <= '9') {
      num = num * 10 + (f[i] - '0');
    } else {
      out += num;
      num = 0;
    }
  }
  out += num;
  for (i = 2; i <= (size_t)lua_gettop(L); i++)
    if (lua_type(L, (int)i) == LUA_TSTRING)
      out += (double)lua_rawlen(L, (int)i);
  charge_output(L, out);
  return charge_scan(L, 1);
}

/* A plain search, linear in subject and needle (glibc's memmem is the
 * Two-Way algorithm); string.find uses it when asked to (`plain`) and for a
 * pattern with no special characters, where Lua's own search would compare
 * the needle at every position (O(n*m)). */
static int find_plain(lua_State *L, const char *s, size_t ls, const char *p,
                      size_t lp) {
  lua_Integer init = pos_from(luaL_optinteger(L, 3, 1), ls);
  const char *hit;
  if (init > (lua_Integer)ls + 1) {
    luaL_pushfail(L);
    return 1;
  }
  vd_sandbox_charge(L, (double)(ls - (size_t)init + 1 + lp) / SCAN_STEP_BYTES);
  hit = memmem(s + init - 1, ls - (size_t)(init - 1), p, lp);
  if (!hit) {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
  lua_pushinteger(L, (lua_Integer)(hit - s + lp));
  return 2;
}

/* The matcher backtracks, inside C.  An upper bound on its steps for a
 * pattern on a subject of n bytes: every repetition item ('*', '+', '-')
 * tries up to n + 1 lengths and every '?' two, and for each such choice
 * the pattern is walked once, at a cost of its own length (a set costs its
 * length per test) plus n for each scan that can run the whole subject: a
 * repetition's greedy count, a %b balance, a back-reference %1-%9.  Search
 * functions add a factor n + 1 for the start positions, unless anchored.
 * Returns the bound (a double: it can be astronomically large). */
static double pattern_bound(const char *p, size_t lp, size_t ls,
                            int anchorable) {
  size_t i = 0;
  double n1 = (double)ls + 1, choices = 1, scans = 0;
  if (anchorable && lp && p[0] == '^')
    i = 1;
  else
    choices = n1;
  while (i < lp) {
    char c = p[i];
    int item = 1; /* can take a suffix */
    if (c == '%') {
      char d = i + 1 < lp ? p[i + 1] : '\0';
      if (d == 'b') {
        i += 4;
        scans++;
        item = 0;
      } else if (d == 'f') {
        i += 2;
        if (i < lp && p[i] == '[') {
          i++;
          if (i < lp && p[i] == '^') i++;
          if (i < lp && p[i] == ']') i++;
          while (i < lp && p[i] != ']') i += p[i] == '%' ? 2 : 1;
          i++;
        }
        item = 0;
      } else {
        if (d >= '1' && d <= '9') {
          scans++;
          item = 0;
        }
        i += 2;
      }
    } else if (c == '[') {
      i++;
      if (i < lp && p[i] == '^') i++;
      if (i < lp && p[i] == ']') i++;
      while (i < lp && p[i] != ']') i += p[i] == '%' ? 2 : 1;
      i++;
    } else {
      i++;
      item = c != '(' && c != ')';
    }
    if (item && i < lp) {
      if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
        choices *= n1;
        scans++;
        i++;
      } else if (p[i] == '?') {
        choices *= 2;
        i++;
      }
    }
  }
  return choices * ((double)lp + 1 + scans * (double)ls);
}

/* Steps past which a pattern is refused outright, with a message that
 * says why, rather than charged: 10^9 is a few seconds of matching. */
#define PATTERN_LIMIT 1e9

static int no_specials(const char *p, size_t lp) {
  size_t i;
  for (i = 0; i < lp; i++)
    if (strchr("^$*+?.([%-", p[i]) && p[i] != '\0')
      return 0;
  return 1;
}

static int guarded(lua_State *L, int anchorable, const char *fname) {
  size_t ls, lp;
  double bound;
  const char *p;
  luaL_checklstring(L, 1, &ls);
  p = luaL_checklstring(L, 2, &lp);
  bound = pattern_bound(p, lp, ls, anchorable);
  if (bound > PATTERN_LIMIT)
    return luaL_error(L,
                      "%s: pattern too costly for a subject of %d bytes "
                      "(simplify the pattern or shorten the subject)",
                      fname, (int)ls);
  vd_sandbox_charge(L, bound);
  return call_original(L);
}

static int sb_find(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  if (lua_toboolean(L, 4) || no_specials(p, lp))
    return find_plain(L, s, ls, p, lp);
  return guarded(L, 1, "string.find");
}
static int sb_match(lua_State *L) { return guarded(L, 1, "string.match"); }
static int sb_gmatch(lua_State *L) { return guarded(L, 0, "string.gmatch"); }

/* gsub: the matching as above, and the replacement string is walked once
 * per match (at most n + 1 of them), even where it adds nothing. */
static int sb_gsub(lua_State *L) {
  double ls = (double)(luaL_checkstring(L, 1), lua_rawlen(L, 1));
  double lr = lua_type(L, 3) == LUA_TSTRING ? (double)lua_rawlen(L, 3) : 0;
  /* the subject is copied once, and a replacement string per match */
  charge_output(L, ls + (ls + 1) * lr);
  return guarded(L, 1, "string.gsub");
}

/* string.byte(s, i, j): one value pushed per byte asked for. */
static int sb_byte(lua_State *L) {
  size_t ls;
  lua_Integer i, j;
  luaL_checklstring(L, 1, &ls);
  i = pos_from(luaL_optinteger(L, 2, 1), ls);
  j = luaL_optinteger(L, 3, i);
  if (j > (lua_Integer)ls)
    j = (lua_Integer)ls;
  else if (j < 0)
    j = pos_from(j, ls);
  if (j >= i)
    vd_sandbox_charge(L, (double)j - (double)i + 1);
  return call_original(L);
}

/* ------------------------------------------------------------------------
 * The table library, on plain tables
 *
 * ltablib.c reads lengths with __len and elements with __index/__newindex,
 * so a metatable could make `#t` say 2^62 and every access a C function:
 * table.insert would then loop for ever inside C.  The sandbox's table
 * functions take only tables whose metatable (if any) has none of those
 * three fields (looked up raw): then the length is the raw one and every
 * element access is raw, and the cost is known from the arguments.
 * ------------------------------------------------------------------------ */

static void check_plain(lua_State *L, int arg, const char *fname,
                        int writes) {
  luaL_checktype(L, arg, LUA_TTABLE);
  /* a loaded table: read its contents (the copy), never write them */
  if (vd_sandbox_unfreeze(L, arg) && writes)
    luaL_error(L, "%s: policies cannot change a table loaded with the "
                  "bundle (argument #%d; copy it into a local table)", fname,
               arg);
  if (lua_getmetatable(L, arg)) {
    static const char *const fields[] = {"__index", "__newindex", "__len",
                                         NULL};
    const char *const *f;
    for (f = fields; *f; f++) {
      lua_pushstring(L, *f);
      if (lua_rawget(L, -2) != LUA_TNIL)
        luaL_error(L, "%s: argument #%d has a metatable with %s; the table "
                      "library takes plain tables in policies", fname, arg,
                   *f);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

/* Elements moved: from one past the end down to the position. */
static int sb_tinsert(lua_State *L) {
  check_plain(L, 1, "table.insert", 1);
  vd_sandbox_charge(L, (double)lua_rawlen(L, 1) + 1);
  return call_original(L);
}

static int sb_tremove(lua_State *L) {
  check_plain(L, 1, "table.remove", 1);
  vd_sandbox_charge(L, (double)lua_rawlen(L, 1) + 1);
  return call_original(L);
}

/* The number of elements in [i, j], j defaulting to the raw length. */
static double span(lua_State *L, int iarg, int jarg, lua_Integer i0) {
  lua_Integer i = luaL_optinteger(L, iarg, i0);
  lua_Integer j = luaL_opt(L, luaL_checkinteger, jarg,
                           (lua_Integer)lua_rawlen(L, 1));
  return j >= i ? (double)j - (double)i + 1 : 0;
}

static int sb_tmove(lua_State *L) {
  if (lua_isnoneornil(L, 5)) {
    check_plain(L, 1, "table.move", 1); /* moves within a1 */
  } else {
    check_plain(L, 1, "table.move", 0);
    check_plain(L, 5, "table.move", 1);
  }
  vd_sandbox_charge(L, span(L, 2, 3, 1));
  return call_original(L);
}

/* The walk and the result: the elements' lengths (read raw; the original
 * refuses what is not a string or number) and a separator between. */
static int sb_tconcat(lua_State *L) {
  lua_Integer i, j, k;
  double n, bytes = 0;
  size_t lsep = 0;
  check_plain(L, 1, "table.concat", 0);
  luaL_optlstring(L, 2, "", &lsep);
  n = span(L, 3, 4, 1);
  vd_sandbox_charge(L, n);
  if (n == 0)
    return call_original(L);
  i = luaL_optinteger(L, 3, 1);
  j = i + (lua_Integer)n - 1;
  for (k = i; k <= j; k++) {
    if (lua_rawgeti(L, 1, k) == LUA_TSTRING)
      bytes += (double)lua_rawlen(L, -1);
    else
      bytes += 44; /* a number's text, at most */
    lua_pop(L, 1);
  }
  charge_output(L, bytes + (n - 1) * (double)lsep);
  return call_original(L);
}

static int sb_tunpack(lua_State *L) {
  check_plain(L, 1, "table.unpack", 0);
  vd_sandbox_charge(L, span(L, 2, 3, 1));
  return call_original(L);
}

/* table.sort(t [, comp]) as a merge sort.  Lua's own quicksort picks
 * pivots from the clock once a partition goes bad (many equal keys do
 * that), so elements that compare equal came out in an order that changed
 * from run to run; a merge sort is stable, so the same input always gives
 * the same order, and it makes n log2 n comparisons at most.  Elements are
 * read and written raw (check_plain() made sure that is what they are). */

/* Whether the value at a sorts before the one at b: comp(a, b), or a < b.
 * Two strings compare with strcoll, in C: charged by their lengths. */
static int sort_less(lua_State *L, int has_comp, int a, int b) {
  int r;
  if (has_comp) {
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
  }
  if (lua_type(L, a) == LUA_TSTRING && lua_type(L, b) == LUA_TSTRING)
    vd_sandbox_charge(L, ((double)lua_rawlen(L, a) + (double)lua_rawlen(L, b))
                             / SCAN_STEP_BYTES);
  return lua_compare(L, a, b, LUA_OPLT);
}

/* Merge src[lo..mid] and src[mid+1..hi] into dst[lo..hi] (tables at the
 * stack indices src and dst); ties keep the left run's element first. */
static void sort_merge(lua_State *L, int has_comp, int src, int dst,
                       lua_Integer lo, lua_Integer mid, lua_Integer hi) {
  lua_Integer i = lo, j = mid + 1, k;
  for (k = lo; k <= hi; k++) {
    int take_right;
    if (i > mid) {
      take_right = 1;
    } else if (j > hi) {
      take_right = 0;
    } else {
      lua_rawgeti(L, src, j);
      lua_rawgeti(L, src, i);
      take_right = sort_less(L, has_comp, lua_gettop(L) - 1, lua_gettop(L));
      lua_pop(L, 2);
    }
    lua_rawgeti(L, src, take_right ? j++ : i++);
    lua_rawseti(L, dst, k);
  }
}

static int sb_tsort(lua_State *L) {
  lua_Integer n, width, lo;
  int has_comp, src, dst;
  double cost;
  check_plain(L, 1, "table.sort", 1);
  has_comp = !lua_isnoneornil(L, 2);
  if (has_comp)
    luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 2)
    return 0;
  cost = (double)n * (ceil(log2((double)n)) + 1);
  vd_sandbox_charge(L, cost);
  luaL_checkstack(L, 8, "table.sort");
  lua_createtable(L, (int)(n < INT_MAX ? n : INT_MAX), 0); /* 3: scratch */
  src = 1;
  dst = 3;
  for (width = 1; width < n; width *= 2) {
    for (lo = 1; lo <= n; lo += 2 * width) {
      lua_Integer mid = lo + width - 1, hi = lo + 2 * width - 1;
      if (mid > n)
        mid = n;
      if (hi > n)
        hi = n;
      sort_merge(L, has_comp, src, dst, lo, mid, hi);
    }
    src = src == 1 ? 3 : 1;
    dst = dst == 1 ? 3 : 1;
  }
  if (src != 1) { /* the sorted run is in the scratch table */
    for (lo = 1; lo <= n; lo++) {
      lua_rawgeti(L, 3, lo);
      lua_rawseti(L, 1, lo);
    }
  }
  return 0;
}

static int sb_format(lua_State *L) {
  size_t n, i;
  const char *f = luaL_checklstring(L, 1, &n);
  double made = (double)n;
  vd_sandbox_charge(L, (double)n / SCAN_STEP_BYTES);
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
      /* %q writes a byte as up to 4; a number is at most 418 bytes */
      made += lua_type(L, a) == LUA_TSTRING ? 4.0 * (double)lua_rawlen(L, a)
                                             : 420;
    }
  }
  charge_output(L, made);
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
  if (vd_sandbox_unfreeze(L, 1))
    return luaL_error(L, "policies cannot change a table loaded with the "
                         "bundle");
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
  lua_Integer seen = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  vd_sandbox_unfreeze(L, 1);
  vd_sandbox_unfreeze(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    seen++;
    if (lua_rawget(L, 2) == LUA_TNIL) {
      lua_pushboolean(L, 0);
      break;
    }
    lua_pop(L, 1);
  }
  /* a walk is bounded by the table's size; the next one is paid for */
  vd_sandbox_charge(L, (double)seen);
  if (lua_gettop(L) == 2)
    lua_pushboolean(L, 1);
  return 1;
}

/* luaL_optinteger(L, arg, 0), its common case (an integer) without the
 * call: verdict.new_table is called on every decision. */
static lua_Integer opt_size(lua_State *L, int arg) {
  return lua_isinteger(L, arg) ? lua_tointeger(L, arg)
                               : luaL_optinteger(L, arg, 0);
}

/* verdict.new_table(narray, nhash): an empty table with room for that many
 * elements, so that filling it does not rehash it at 1, 2, 4, 8... keys. */
static int v_new_table(lua_State *L) {
  lua_Integer na = opt_size(L, 1), nh = opt_size(L, 2);
  luaL_argcheck(L, na >= 0 && na <= 4096, 1, "expected 0 to 4096");
  luaL_argcheck(L, nh >= 0 && nh <= 4096, 2, "expected 0 to 4096");
  lua_createtable(L, (int)na, (int)nh);
  return 1;
}

/* verdict.is_empty(t): whether t has no key at all. */
static int v_is_empty(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  vd_sandbox_unfreeze(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, lua_next(L, 1) == 0);
  return 1;
}

/* ------------------------------------------------------------------------
 * Schema plans: lib/schema.lua's quick walk, in C
 *
 * verdict.schema_plan(c, REQUIRED) turns a compiled object schema c (what
 * lib/schema.lua's compile_fields returns: names, sorted; quick[name],
 * each field's Lua checker; absent[i], names[i]'s default, nil, or
 * REQUIRED; conditional and requires; fields, the specs) into a flat plan,
 * once per schema when the policy loads.  verdict.check_input(plan, v)
 * then does, for the object v, what lib/schema.lua's quick walk did in
 * Lua: it returns the facts (a new table: each field checked, defaults
 * filled in) or nil at the first problem, leaving the reporting walk
 * (lib/schema.lua's check_object) to find and name every problem.  The
 * four scalar kinds are checked here from the spec's numbers (string:
 * max_len; integer: min, max; enum: its set; boolean); any other field
 * (time, set, list, object, map, or numbers that are not integers) calls
 * the field's Lua checker, which returns nil for "not valid".
 *
 * A plan is a full userdata (no metatable a policy can reach) with one
 * user value, a table only C reads: names at 1..n, each field's enum set
 * or checker at n+1..2n, its default at 2n+1..3n, the `requires` names
 * after.  Its tables are read raw (a proxy, when the schema was built
 * after the freeze, is read through its copy); a default that is a table
 * is handed out as its read-only proxy once the bundle is frozen, as the
 * Lua walk read it through the frozen `absent`.  Nothing a policy gives
 * check_input is changed; what it returns is new, or the input's own
 * values, or proxies.
 *
 * One table is made the facts in place instead of copied: the request's
 * input object the engine decoded for the decision running now (sandbox.h,
 * own_input; engine.c's evaluate sets it around the call of the policy's
 * decide), the first time it is checked, when it is valid.  No policy
 * table can be it: it was made by the decoder for this request, and the
 * pointer is cleared when the call returns.  Its defaults are filled in,
 * nulls dropped, values of the other types replaced by their checker's,
 * and its JSON marker removed: the same keys and values as the copy, one
 * table fewer a decision.  lib/rules.lua's decide reads only the facts
 * after the check; a policy that keeps its `input` sees the facts there.
 * ------------------------------------------------------------------------ */

static const char PLAN_MT[] = "vd.schema.plan";

enum { PF_CALL, PF_STRING, PF_INTEGER, PF_ENUM, PF_BOOLEAN };

typedef struct plan_field {
  int kind;            /* PF_* */
  int required;        /* absent: the object is not valid */
  int has_default;     /* absent: the default (user value 2n+i); PD_* */
  lua_Integer def;     /* a PD_BOOLEAN or PD_INTEGER default's value */
  int has_min, has_max;
  lua_Integer min, max; /* PF_INTEGER */
  size_t max_len;      /* PF_STRING */
  int req_first, nreq; /* its `requires`: user value 3n+req_first.. */
  /* PF_ENUM: its set's string keys by address (enum_settle), in
   * enum_mask + 1 slots from p->eslot[enum_at]; enum_ready 0: not yet
   * (the set may still change), 1: made, -1: never (read by value) */
  unsigned enum_at, enum_mask, enum_room;
  int enum_ready;
} plan_field_t;

/* The fields' names by address (check_keys): Lua interns short strings
 * (up to 40 bytes), so a key with a field's short name is the very string
 * object the name is, and lua_topointer() gives its address; the plan's
 * user value holds the names, so no other string can have it.  An
 * open-addressed table of 2 to 4 slots a field; a key not found there (a
 * long string, which is not interned, or not a field) is looked up by
 * value in the name map as before. */
typedef struct plan_slot {
  const void *name; /* NULL: empty */
  int i;            /* the field, 0-based */
} plan_slot_t;

/* has_default: none, a default read from the user value, or a boolean or
 * an integer (immutable values) kept in the field itself, pushed without
 * a table read (check_keys' defaults, six a compensation decision) */
enum { PD_NONE, PD_VALUE, PD_BOOLEAN, PD_INTEGER };

typedef struct plan {
  int n;
  unsigned mask;     /* slots - 1 (a power of two), 0: no slots */
  plan_slot_t *slot; /* after f[], in the same block */
  const void **eslot; /* the enum sets' slots: user value 3, or NULL */
  plan_field_t f[];
} plan_t;

static unsigned plan_hash(const void *name, unsigned mask) {
  uintptr_t a = (uintptr_t)name;
  return (unsigned)((a >> 4) ^ (a >> 12)) & mask;
}

/* Field i's name, the short string at idx, into p's slots. */
static void plan_index(lua_State *L, plan_t *p, int idx, int i) {
  const void *name = lua_topointer(L, idx);
  unsigned h = plan_hash(name, p->mask);
  while (p->slot[h].name != NULL)
    h = (h + 1) & p->mask;
  p->slot[h].name = name;
  p->slot[h].i = i;
}

/* The field whose name is the string object at `name`, or -1. */
static int plan_find(const plan_t *p, const void *name) {
  unsigned h = plan_hash(name, p->mask);
  while (p->slot[h].name != NULL) {
    if (p->slot[h].name == name)
      return p->slot[h].i;
    h = (h + 1) & p->mask;
  }
  return -1;
}

/* t[k] raw, for a table t at idx that may be a proxy (read its copy). */
static int plan_rawget(lua_State *L, int idx, const char *k) {
  lua_pushvalue(L, idx);
  vd_sandbox_unfreeze(L, -1);
  lua_pushstring(L, k);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return lua_type(L, -1);
}

/* An integer spec number at the top (popped): 1 and *out if it is one,
 * 0 if nil; -1 for anything else (the field is checked in Lua). */
static int plan_int(lua_State *L, lua_Integer *out) {
  int rc = lua_isnil(L, -1) ? 0 : lua_isinteger(L, -1) ? 1 : -1;
  if (rc == 1)
    *out = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return rc;
}

static int v_schema_plan(lua_State *L) {
  int c = 1, req = 2, uv, names, quick, absent, fields, cond, reqs;
  lua_Integer n, i, nreq = 0, ncond;
  unsigned eslots = 0; /* the enum sets' slots, all fields' */
  plan_t *p;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  names = (plan_rawget(L, c, "names"), lua_gettop(L));
  quick = (plan_rawget(L, c, "quick"), lua_gettop(L));
  absent = (plan_rawget(L, c, "absent"), lua_gettop(L));
  fields = (plan_rawget(L, c, "fields"), lua_gettop(L));
  cond = (plan_rawget(L, c, "conditional"), lua_gettop(L));
  reqs = (plan_rawget(L, c, "requires"), lua_gettop(L));
  for (i = names; i <= reqs; i++) {
    luaL_argcheck(L, lua_type(L, (int)i) == LUA_TTABLE, 1,
                  "expected a compiled schema (lib/schema.lua)");
    vd_sandbox_unfreeze(L, (int)i);
  }
  n = (lua_Integer)lua_rawlen(L, names);
  ncond = (lua_Integer)lua_rawlen(L, cond);
  luaL_argcheck(L, n <= 4096, 1, "a schema has at most 4096 fields");
  vd_sandbox_charge(L, (double)n);
  {
    size_t fsize = sizeof *p + (size_t)n * sizeof p->f[0], nslot = 4;
    while (nslot < 2 * (size_t)n)
      nslot *= 2;
    fsize = (fsize + sizeof(void *) - 1) / sizeof(void *) * sizeof(void *);
    p = lua_newuserdatauv(L, fsize + nslot * sizeof(plan_slot_t), 3);
    memset(p, 0, fsize + nslot * sizeof(plan_slot_t));
    p->n = (int)n;
    p->mask = (unsigned)(nslot - 1);
    p->slot = (plan_slot_t *)(void *)((char *)p + fsize);
  }
  lua_createtable(L, (int)(3 * n), 0);
  uv = lua_gettop(L);
  for (i = 1; i <= n; i++) {
    plan_field_t *f = &p->f[i - 1];
    int sp, ty;
    if (lua_rawgeti(L, names, i) != LUA_TSTRING)
      return luaL_argerror(L, 1, "a schema's field names are strings");
    lua_pushvalue(L, -1);
    lua_rawseti(L, uv, i);
    plan_index(L, p, lua_gettop(L), (int)(i - 1));
    lua_pushvalue(L, -1);
    lua_rawget(L, fields);
    sp = lua_gettop(L);
    if (!lua_istable(L, sp))
      return luaL_argerror(L, 1, "a field without a spec");
    vd_sandbox_unfreeze(L, sp);
    lua_rawgeti(L, absent, i);
    if (lua_rawequal(L, -1, req))
      f->required = 1;
    else if (lua_isboolean(L, -1)) {
      f->has_default = PD_BOOLEAN;
      f->def = lua_toboolean(L, -1);
    } else if (lua_isinteger(L, -1)) {
      f->has_default = PD_INTEGER;
      f->def = lua_tointeger(L, -1);
    } else if (!lua_isnil(L, -1)) {
      f->has_default = PD_VALUE;
    }
    lua_rawseti(L, uv, 2 * n + i);
    f->kind = PF_CALL;
    lua_getfield(L, sp, "type");
    ty = lua_type(L, -1) == LUA_TSTRING;
    if (ty && strcmp(lua_tostring(L, -1), "string") == 0) {
      lua_Integer ml;
      lua_getfield(L, sp, "max_len");
      if (plan_int(L, &ml) == 1 && ml >= 0) {
        f->kind = PF_STRING;
        f->max_len = (size_t)ml;
      }
    } else if (ty && strcmp(lua_tostring(L, -1), "integer") == 0) {
      int a, b;
      lua_getfield(L, sp, "min");
      a = plan_int(L, &f->min);
      lua_getfield(L, sp, "max");
      b = plan_int(L, &f->max);
      if (a >= 0 && b >= 0) {
        f->kind = PF_INTEGER;
        f->has_min = a;
        f->has_max = b;
      }
    } else if (ty && strcmp(lua_tostring(L, -1), "boolean") == 0) {
      f->kind = PF_BOOLEAN;
    } else if (ty && strcmp(lua_tostring(L, -1), "enum") == 0) {
      lua_getfield(L, sp, "set");
      if (lua_istable(L, -1)) {
        unsigned m = 0, ns = 4;
        vd_sandbox_unfreeze(L, -1);
        f->kind = PF_ENUM;
        lua_pushnil(L); /* room for its keys by address, as it is now */
        while (lua_next(L, -2)) {
          lua_pop(L, 1);
          if (m < 4096)
            m++;
        }
        vd_sandbox_charge(L, (double)m);
        while (ns < 2 * m)
          ns *= 2;
        f->enum_room = m;
        f->enum_mask = ns - 1;
        f->enum_at = eslots;
        eslots += ns;
        lua_rawseti(L, uv, n + i);
      } else {
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1); /* type */
    if (f->kind == PF_CALL) {
      lua_pushvalue(L, sp - 1); /* the name */
      if (lua_rawget(L, quick) != LUA_TFUNCTION)
        return luaL_argerror(L, 1, "a field without its quick checker");
      lua_rawseti(L, uv, n + i);
    }
    lua_settop(L, uv);
  }
  /* requires: the conditional fields' lists, after the three blocks */
  for (i = 1; i <= ncond; i++) {
    lua_Integer j, k, m;
    lua_rawgeti(L, cond, i);
    for (j = 1; j <= n; j++) {
      lua_rawgeti(L, uv, j);
      if (lua_rawequal(L, -1, -2))
        break;
      lua_pop(L, 1);
    }
    if (j > n)
      return luaL_argerror(L, 1, "a conditional field that is not a field");
    lua_pop(L, 2);
    lua_rawgeti(L, reqs, i);
    if (!lua_istable(L, -1))
      return luaL_argerror(L, 1, "a conditional field without requires");
    vd_sandbox_unfreeze(L, -1);
    m = (lua_Integer)lua_rawlen(L, -1);
    p->f[j - 1].req_first = (int)(3 * n + nreq + 1);
    p->f[j - 1].nreq = (int)m;
    for (k = 1; k <= m; k++) {
      lua_rawgeti(L, -1, k);
      lua_rawseti(L, uv, 3 * n + ++nreq);
    }
    lua_pop(L, 1);
  }
  lua_createtable(L, 0, (int)n); /* name -> its position */
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, uv, i);
    lua_pushinteger(L, i);
    lua_rawset(L, -3);
  }
  lua_setiuservalue(L, uv - 1, 2);
  lua_setiuservalue(L, uv - 1, 1);
  if (eslots) { /* kept alive as the plan's third user value */
    p->eslot = lua_newuserdatauv(L, eslots * sizeof(void *), 0);
    memset((void *)p->eslot, 0, eslots * sizeof(void *));
    lua_setiuservalue(L, -2, 3);
  }
  if (luaL_newmetatable(L, PLAN_MT)) {
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  return 1;
}

/* Whether the value at idx is set, as `requires` means it: present and
 * not false, 0 or "". */
static int plan_is_set(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return 0;
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx);
  case LUA_TNUMBER:
    return lua_tonumber(L, idx) != 0;
  case LUA_TSTRING:
    return lua_rawlen(L, idx) != 0;
  default:
    return 1;
  }
}

/* Push the default of field i (0-based) of plan p, whose user value is at
 * uv: a table as its read-only proxy once the bundle is frozen. */
static void plan_default(lua_State *L, const plan_t *p, int uv, int i) {
  if (p->f[i].has_default == PD_BOOLEAN) {
    lua_pushboolean(L, (int)p->f[i].def);
    return;
  }
  if (p->f[i].has_default == PD_INTEGER) {
    lua_pushinteger(L, p->f[i].def);
    return;
  }
  lua_rawgeti(L, uv, 2 * p->n + i + 1);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_ORIG);
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, -2) == LUA_TTABLE)
        lua_replace(L, -3);
      else
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

/* Enum sets by address.  A value checked against an enum is nearly
 * always a short string, which Lua interns: the very string object that is
 * a key of the set.  Once the set cannot change any more, its string keys
 * with a true value are kept by address in the field's slots, and a value
 * found there is valid without a look-up; any other value (not found: a
 * long string, which is not interned, or not in the set) is looked up by
 * value as before.  A set can change until it is frozen (the policy's load
 * still running may write it), and not after: then only the sandbox holds
 * the table itself, and policy code reaches only its read-only proxy.  So
 * the slots are made at the first check that finds the set frozen (in
 * FROZEN_BY_ORIG, or a copy in FROZEN_BY_COPY); a set never frozen once
 * a freeze has been made, or grown past the room the plan made for it, is
 * read by value for good.  The set's keys stay alive in it, so no other
 * object can take an address kept here. */
static int enum_has(const plan_t *p, const plan_field_t *f, const void *s) {
  const void **slot = p->eslot + f->enum_at;
  unsigned h = plan_hash(s, f->enum_mask);
  while (slot[h] != NULL) {
    if (slot[h] == s)
      return 1;
    h = (h + 1) & f->enum_mask;
  }
  return 0;
}

/* Whether the table at idx is a key of the registry map `name`. */
static int frozen_in(lua_State *L, int idx, const char *name) {
  int in = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, name) == LUA_TTABLE) {
    lua_pushvalue(L, idx);
    in = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return in;
}

/* Make field i's slots if its set (user value n+i+1) is frozen now. */
static void enum_settle(lua_State *L, plan_t *p, int uv, int i) {
  plan_field_t *f = &p->f[i];
  int top = lua_gettop(L), set = top + 1;
  unsigned m = 0;
  lua_rawgeti(L, uv, p->n + i + 1);
  if (!frozen_in(L, set, FROZEN_BY_ORIG) && !frozen_in(L, set, FROZEN_BY_COPY)) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_ORIG) == LUA_TTABLE)
      f->enum_ready = -1; /* a freeze has been made, without it */
    lua_settop(L, top);
    return;
  }
  memset((void *)(p->eslot + f->enum_at), 0,
         (f->enum_mask + 1) * sizeof(void *));
  lua_pushnil(L);
  while (lua_next(L, set)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_toboolean(L, -1)) {
      const void **slot = p->eslot + f->enum_at;
      const void *s = lua_topointer(L, -2);
      unsigned h = plan_hash(s, f->enum_mask);
      if (++m > f->enum_room) { /* grown since the plan: by value */
        f->enum_ready = -1;
        lua_settop(L, top);
        return;
      }
      while (slot[h] != NULL)
        h = (h + 1) & f->enum_mask;
      slot[h] = s;
    }
    lua_pop(L, 1);
  }
  f->enum_ready = 1;
  lua_settop(L, top);
}

/* Check the value at idx against scalar field f (0-based i) of plan p;
 * 1 if valid.  PF_CALL fields are not checked here. */
static int plan_scalar_ok(lua_State *L, plan_t *p, int uv, int i,
                          int idx) {
  plan_field_t *f = &p->f[i];
  int ok;
  switch (f->kind) {
  case PF_STRING: {
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING)
      return 0;
    len = lua_rawlen(L, idx);
    return len != 0 && len <= f->max_len;
  }
  case PF_INTEGER: {
    lua_Integer x;
    if (!lua_isinteger(L, idx))
      return 0;
    x = lua_tointeger(L, idx);
    return !((f->has_min && x < f->min) || (f->has_max && x > f->max));
  }
  case PF_BOOLEAN:
    return lua_type(L, idx) == LUA_TBOOLEAN;
  case PF_ENUM:
    if (f->enum_ready > 0 && lua_type(L, idx) == LUA_TSTRING &&
        enum_has(p, f, lua_topointer(L, idx)))
      return 1;
    if (f->enum_ready == 0)
      enum_settle(L, p, uv, i);
    lua_rawgeti(L, uv, p->n + i + 1); /* by value */
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    ok = lua_toboolean(L, -1);
    lua_pop(L, 2);
    return ok;
  default:
    return 1;
  }
}

/* Whether v (at idx) lacks one of the names field i `requires`: absent
 * or null. */
static int plan_requires_missing(lua_State *L, const plan_t *p, int uv,
                                 int v, int i) {
  const plan_field_t *f = &p->f[i];
  int j;
  for (j = 0; j < f->nreq; j++) {
    int t;
    lua_rawgeti(L, uv, f->req_first + j);
    t = lua_rawget(L, v);
    if (t == LUA_TNIL ||
        (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == vd_json_null)) {
      lua_pop(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* A schema of more fields than this is walked field by field (check_all);
 * a smaller one key by key (check_keys), which can also make the engine's
 * own input the facts in place. */
#define PLAN_SMALL_MAX 256

/* The walk of a large schema: every field of the plan looked up in v (at
 * 2), the facts a new table.  Stack: plan, v, user value 1. */
static int check_all(lua_State *L, plan_t *p) {
  const int v = 2, uv = 3, out = 4;
  int i, present = 0;
  lua_Integer keys = 0;
  lua_createtable(L, 0, p->n);
  for (i = 0; i < p->n; i++) {
    const plan_field_t *f = &p->f[i];
    int t;
    lua_rawgeti(L, uv, i + 1); /* 5: the name */
    lua_pushvalue(L, 5);
    t = lua_rawget(L, v);      /* 6: v[name] */
    if (t != LUA_TNIL)
      present++;
    if (t == LUA_TNIL ||
        (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, 6) == vd_json_null)) {
      if (f->required)
        return 0;
      if (f->has_default) {
        plan_default(L, p, uv, i);
        lua_replace(L, 6);
        lua_rawset(L, out);
      }
      lua_settop(L, out);
      continue;
    }
    if (f->kind == PF_CALL) { /* the field's Lua checker: the value, or nil */
      lua_rawgeti(L, uv, p->n + i + 1);
      lua_insert(L, 6);
      lua_call(L, 1, 1);
      if (lua_isnil(L, 6))
        return 0;
    } else if (!plan_scalar_ok(L, p, uv, i, 6)) {
      return 0;
    }
    lua_rawset(L, out);
  }
  /* an unknown field: v has more keys than the schema's found there */
  lua_pushnil(L);
  while (lua_next(L, v)) {
    lua_pop(L, 1);
    if (++keys > present)
      return 0;
  }
  for (i = 0; i < p->n; i++) {
    if (!p->f[i].nreq)
      continue;
    lua_rawgeti(L, uv, i + 1);
    lua_rawget(L, out);
    if (plan_is_set(L, -1) && plan_requires_missing(L, p, uv, v, i))
      return 0;
    lua_pop(L, 1);
  }
  lua_settop(L, out);
  return 1;
}

/* The walk of a small schema: v's own keys, each found by name (user
 * value 2), then the fields v lacks.  own: v is the engine's own input,
 * made the facts in place once every check has passed (what changes is
 * kept on the stack until then, as (name, value) pairs), else the facts
 * are a new table.  Stack: plan, v, user value 1. */
enum { ST_ABSENT, ST_SET, ST_NULL, ST_CALL,
       ST_DEFAULT, /* own: absent or null, its default written at the end */
       ST_DROP };  /* own: null, without a default: its key taken out */

static int check_keys(lua_State *L, plan_t *p, int own) {
  const int v = 2, uv = 3, map = 4;
  unsigned char st[PLAN_SMALL_MAX];  /* each field: ST_* */
  unsigned char set[PLAN_SMALL_MAX]; /* each field with requires: its fact
                                      * is set */
  int out = 0, i, k;
  lua_getiuservalue(L, 1, 2);
  if (!own) {
    lua_createtable(L, 0, p->n);
    out = 5;
  }
  memset(st, ST_ABSENT, (size_t)p->n);
  k = lua_gettop(L) + 1;
  lua_pushnil(L);
  while (lua_next(L, v)) { /* k: the key, k+1: its value */
    int t = lua_type(L, k + 1);
    i = lua_type(L, k) == LUA_TSTRING ? plan_find(p, lua_topointer(L, k)) : -1;
    if (i < 0) { /* not a short string of a field's: by value */
      lua_pushvalue(L, k);
      if (lua_rawget(L, map) != LUA_TNUMBER) /* an unknown field */
        return 0;
      i = (int)lua_tointeger(L, -1) - 1;
      lua_pop(L, 1);
    }
    if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, k + 1) == vd_json_null) {
      st[i] = ST_NULL;
    } else if (p->f[i].kind == PF_CALL) {
      st[i] = ST_CALL; /* checked below: its checker is Lua */
    } else {
      if (!plan_scalar_ok(L, p, uv, i, k + 1))
        return 0;
      st[i] = ST_SET;
      if (p->f[i].nreq)
        set[i] = (unsigned char)plan_is_set(L, k + 1);
      if (!own) {
        lua_pushvalue(L, k);
        lua_pushvalue(L, k + 1);
        lua_rawset(L, out);
      }
    }
    lua_pop(L, 1);
  }
  /* the checkers' values, and the fields v lacks */
  for (i = 0; i < p->n; i++) {
    const plan_field_t *f = &p->f[i];
    if (st[i] == ST_SET)
      continue;
    if (st[i] == ST_CALL) {
      lua_rawgeti(L, uv, i + 1);
      lua_rawgeti(L, uv, p->n + i + 1);
      lua_pushvalue(L, -2);
      lua_rawget(L, v);
      lua_call(L, 1, 1);
      if (lua_isnil(L, -1))
        return 0;
    } else if (f->required) {
      return 0;
    } else if (f->has_default && own) {
      /* written into v at the end (nothing staged), as the staged pairs
       * are, in field order */
      st[i] = ST_DEFAULT;
      if (f->nreq) {
        if (f->has_default == PD_VALUE) {
          plan_default(L, p, uv, i);
          set[i] = (unsigned char)plan_is_set(L, -1);
          lua_pop(L, 1);
        } else { /* plan_is_set of a boolean or an integer */
          set[i] = f->def != 0;
        }
      }
      continue;
    } else if (f->has_default) {
      lua_rawgeti(L, uv, i + 1);
      plan_default(L, p, uv, i);
    } else {
      if (f->nreq)
        set[i] = 0;
      if (st[i] == ST_NULL && own) { /* the facts do not have the key */
        st[i] = ST_DROP;
        lua_rawgeti(L, uv, i + 1);
        lua_pushnil(L);
      }
      continue;
    }
    if (f->nreq)
      set[i] = (unsigned char)plan_is_set(L, -1);
    if (!own)
      lua_rawset(L, out);
  }
  for (i = 0; i < p->n; i++)
    if (p->f[i].nreq && set[i] && plan_requires_missing(L, p, uv, v, i))
      return 0;
  if (own) { /* valid: in field order, the defaults and the pairs left,
               * then no JSON marker, as a copy */
    int at = map + 1;
    for (i = 0; i < p->n; i++) {
      if (st[i] == ST_DEFAULT) {
        lua_rawgeti(L, uv, i + 1);
        plan_default(L, p, uv, i);
        lua_rawset(L, v);
      } else if (st[i] == ST_CALL || st[i] == ST_DROP) {
        lua_pushvalue(L, at);
        lua_pushvalue(L, at + 1);
        lua_rawset(L, v);
        at += 2;
      }
    }
    lua_pushnil(L);
    lua_setmetatable(L, v);
    lua_settop(L, v);
    return 1;
  }
  lua_settop(L, out);
  return 1;
}

/* verdict.check_input(plan, v), and with OBJECTS verdict.check_object(
 * plan, v): nil as well for anything json_type() would not call
 * "object", so that lib/schema.lua asks json_type only when this says
 * nil, not before every check.  A function of its own rather than an
 * argument: an older binary, which has no check_object, leaves
 * lib/schema.lua its own way (json_type, then check_input) instead of
 * ignoring the argument.  A plan is known by its metatable's address,
 * kept in the sandbox (push_check_input): no look-up in the registry, no
 * comparison through the API. */
static int check_input_(lua_State *L, int objects) {
  plan_t *p = lua_touserdata(L, 1);
  vd_sandbox_t *sb = vd_sandbox_of(L);
  int own, is_plan;
  is_plan = p && lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1) &&
            lua_topointer(L, -1) == sb->plan_mt;
  if (!is_plan)
    return luaL_typeerror(L, 1, PLAN_MT);
  if (objects && lua_type(L, 2) != LUA_TTABLE) {
    lua_pushnil(L);
    return 1;
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* The engine's own decoded input (sandbox.h, own_input) becomes the
   * facts itself.  Once only: a second call gets a copy, as any other
   * table does. */
  own = sb->own_input != NULL && lua_topointer(L, 2) == sb->own_input;
  if (own) {
    sb->own_input = NULL; /* the decoder's: never a proxy, an object (the
                           * wire read it so) */
  } else {
    vd_sandbox_unfreeze(L, 2); /* a loaded table: its copy, as json_type */
    if (objects && vd_json_marker(L, 2) != 2) {
      lua_pushnil(L);
      return 1;
    }
  }
  charge_small(L, (unsigned long)p->n);
  lua_getiuservalue(L, 1, 1);
  if (p->n > PLAN_SMALL_MAX)
    return check_all(L, p);
  if (!lua_checkstack(L, 2 * p->n + 8))
    return luaL_error(L, "stack overflow (a schema of %d fields)", p->n);
  return check_keys(L, p, own);
}

static int v_check_input(lua_State *L) { return check_input_(L, 0); }
static int v_check_object(lua_State *L) { return check_input_(L, 1); }

/* Push verdict.check_input: v_check_input with the plans' metatable (made
 * here, before any plan) as its upvalue. */
static void push_check_input(lua_State *L) {
  if (luaL_newmetatable(L, PLAN_MT)) {
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  vd_sandbox_of(L)->plan_mt = lua_topointer(L, -1);
  lua_pushcclosure(L, v_check_input, 1);
}

/* ------------------------------------------------------------------------
 * Rule tables: lib/rules.lua's loop, in C
 *
 * verdict.run_rules(P, name, f, tr) runs decision table `name` of policy P
 * (lib/rules.lua: P.by_name[name], with rules, notes and first; P.params)
 * on facts f, as R.run's loop does with tracer tr ({ list, seen }): for
 * each rule r in order, when(f, r, P.params) (a rule without `when`
 * always holds); a rule that holds has its id noted in tr.seen and its
 * trace entry notes[i] appended to tr.list, once per decision; a `first`
 * table stops at it.  Returns true and the rule (first; nil if none held)
 * or the array of rules that held (collect); or false, having called
 * nothing, when it cannot do exactly what the Lua loop does: P or the
 * table not frozen (before the freeze) or not found, a table or rule with
 * a metatable of its own, a `when` that is not a function, an id that is
 * not a string, a tracer that explains (tr.explain) or is not plain
 * tables.  lib/rules.lua then runs its own loop, so every answer is the
 * Lua loop's.
 *
 * The reads through the freeze's proxies (P.by_name[name], P.params,
 * rules[i], r.when, r.id, t.notes[i]) are what the Lua loop spends most
 * on.  A frozen table cannot change, so what the loop reads of a table is
 * read once per state and kept, flat, in a table only C reads (the
 * closure's upvalue RK_PLANS: policy proxy -> table name -> { n,
 * first, params, then when, rule, id, note for each rule }; RK_FOUND
 * finds a plan found before by address, with its n and first): a plan
 * depends on the loaded bundle alone, never on a request.  The keys it
 * reads are the closure's other upvalues, strings, so no string is made
 * per call.  No policy can reach the closure's upvalues, and the plans
 * are what the frozen tables say: vd_sandbox_refuse_state() lets it be.
 * ------------------------------------------------------------------------ */

/* The plans: a plan a slot RP_* then 4 slots a rule (when or false, the
 * rule's proxy, its id, its trace entry).  RP_ONE: the rules (the first
 * 64) whose `when` is called with the facts alone, a bit each (rp_one). */
enum { RP_N = 1, RP_FIRST, RP_PARAMS, RP_ONE, RP_RULES };

/* Whether the function at idx takes the facts alone: a Lua function of
 * at most one parameter, not vararg.  when(f, r, p) and when(f) are then
 * the same call: the callee cannot reach arguments past its parameters
 * (no `...`, and the sandbox has no debug library), so r and p need not
 * be pushed (two stack copies and a table read a rule). */
static int rp_one(lua_State *L, int idx) {
  lua_Debug ar; /* a C function's is vararg */
  lua_pushvalue(L, idx);
  if (!lua_getinfo(L, ">u", &ar))
    return 0;
  return !ar.isvararg && ar.nparams <= 1;
}

/* run_rules's upvalues: the keys it reads (strings, which cannot change) */
enum { RK_BY_NAME = 1, RK_PARAMS, RK_EXPLAIN, RK_SEEN, RK_LIST, RK_RULES,
       RK_NOTES, RK_FIRST, RK_WHEN, RK_ID, RK_COUNT = RK_ID,
       RK_PLANS, /* the plans, by policy (its proxy) and table name */
       RK_FOUND, /* the plans found before, by address (rp_found_t) */
       RK_FPLANS /* their plans, at the slot's index + 1: a table made with
                  * an array part of RP_FOUND_SLOTS, holding nothing else,
                  * so a read is an array read */ };

/* The plans found before, by the addresses of the policy's proxy and of
 * the table's name (a string): plans[P][name] without the two look-ups.
 * Both are keys in the plans table (P of plans, name of plans[P]), which
 * keeps them alive, so no other object can have either address while the
 * entry is here; its plan is plans[at] (an integer key, beside the
 * proxies).  Open addressing; when every slot is taken, a plan is looked
 * up by value as before. */
#define RP_FOUND_SLOTS 64

typedef struct rp_found {
  const void *p[RP_FOUND_SLOTS], *name[RP_FOUND_SLOTS];
  lua_Integer n[RP_FOUND_SLOTS];      /* the plan's RP_N */
  lua_Integer one[RP_FOUND_SLOTS];    /* its RP_ONE */
  unsigned char first[RP_FOUND_SLOTS]; /* and RP_FIRST */
  int must; /* a runner's (R.decide's): no rule held is an error */
} rp_found_t;

static unsigned rp_found_hash(const void *p, const void *name) {
  uintptr_t a = (uintptr_t)p ^ ((uintptr_t)name >> 3);
  return (unsigned)((a >> 4) ^ (a >> 11)) & (RP_FOUND_SLOTS - 1);
}
static const char *const rule_keys[RK_COUNT] = {
    "by_name", "params", "explain", "seen", "list",
    "rules", "notes", "first", "when", "id"};

/* Push t[key] raw, key an upvalue of run_rules; returns its type. */
static int rk_get(lua_State *L, int t, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  return lua_rawget(L, t);
}

/* The copy behind the proxy at idx, pushed, if it is a frozen table whose
 * copy has no metatable of its own; else pushes nothing and returns 0. */
static int rp_copy(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
    return 0;
  if (lua_rawgetp(L, -1, FROZEN_TAG) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  lua_remove(L, -2);
  if (lua_getmetatable(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  return 1;
}

/* No metatable on the value at idx. */
static int rp_nometa(lua_State *L, int idx) {
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* A plain table at idx: a table without a metatable. */
static int rp_plain(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TTABLE && rp_nometa(L, idx);
}

/* Make the plan of table `name` (at name) of the policy whose proxy is at
 * p, keep it in plans (at plans), and push it; or push nothing and return
 * 0 if the policy or the table is not frozen, not found, or not of the
 * usual shape.  Only a frozen policy's plan is kept, so the proxy
 * identifies what was read. */
static int rp_make(lua_State *L, int p, int name, int plans) {
  int base = lua_gettop(L), tc, plan, rules, notes;
  lua_Integer i, n;
  lua_Unsigned one = 0;
  if (!rp_copy(L, p))
    goto refuse;
  rk_get(L, base + 1, RK_BY_NAME);
  if (!rp_copy(L, base + 2))
    goto refuse;
  lua_pushvalue(L, name);
  lua_rawget(L, base + 3);
  if (!rp_copy(L, base + 4))
    goto refuse;
  tc = base + 5;
  rk_get(L, tc, RK_RULES);
  if (!rp_copy(L, tc + 1))
    goto refuse;
  rules = tc + 2;
  rk_get(L, tc, RK_NOTES);
  if (!rp_copy(L, rules + 1))
    goto refuse;
  notes = rules + 2;
  n = (lua_Integer)lua_rawlen(L, rules);
  vd_sandbox_charge(L, (double)n);
  lua_createtable(L, (int)(RP_RULES - 1 + 4 * n), 0);
  plan = lua_gettop(L);
  lua_pushinteger(L, n);
  lua_rawseti(L, plan, RP_N);
  rk_get(L, tc, RK_FIRST);
  lua_pushboolean(L, lua_toboolean(L, -1));
  lua_rawseti(L, plan, RP_FIRST);
  lua_pop(L, 1);
  rk_get(L, base + 1, RK_PARAMS);
  lua_rawseti(L, plan, RP_PARAMS);
  for (i = 1; i <= n; i++) {
    lua_Integer at = RP_RULES + 4 * (i - 1);
    int r = lua_gettop(L) + 1;
    lua_rawgeti(L, rules, i); /* r: the rule's proxy */
    if (!rp_copy(L, r))
      goto refuse;
    if (rk_get(L, r + 1, RK_WHEN) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushboolean(L, 0);
    } else if (lua_type(L, -1) != LUA_TFUNCTION) {
      goto refuse;
    } else if (i <= 64 && rp_one(L, -1)) {
      one |= (lua_Unsigned)1 << (i - 1);
    }
    lua_rawseti(L, plan, at);
    lua_pushvalue(L, r);
    lua_rawseti(L, plan, at + 1);
    if (rk_get(L, r + 1, RK_ID) != LUA_TSTRING)
      goto refuse;
    lua_rawseti(L, plan, at + 2);
    lua_rawgeti(L, notes, i);
    lua_rawseti(L, plan, at + 3);
    lua_settop(L, plan);
  }
  lua_pushinteger(L, (lua_Integer)one);
  lua_rawseti(L, plan, RP_ONE);
  /* plans[P][name] = plan */
  lua_pushvalue(L, p);
  if (lua_rawget(L, plans) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, p);
    lua_pushvalue(L, -2);
    lua_rawset(L, plans);
  }
  lua_pushvalue(L, name);
  lua_pushvalue(L, plan);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 1;
refuse:
  lua_settop(L, base);
  return 0;
}

/* The loop of run_rules and of the runners (below), on (P, name, f, tr) at
 * 1..4 and the closure's RK_* upvalues: pushes the result and returns 1,
 * or returns 0 with the stack cut back to tr when it cannot run the table
 * (nothing called). */
static int run_loop(lua_State *L, rp_found_t *found) {
  enum { P = 1, NAME, F, TR, PLAN, PARAMS, EXPLAIN, SEEN, LIST, HITS };
  const int PLANS = lua_upvalueindex(RK_PLANS);
  int first, base, left = 0;
  lua_Integer i, n, nhits = 0;
  lua_Unsigned one;
  const void *pp = NULL, *np = NULL;
  unsigned h = 0, probe;
  if (lua_gettop(L) != TR)
    lua_settop(L, TR);
  /* the plan found before, by address */
  if (lua_type(L, P) == LUA_TTABLE && lua_type(L, NAME) == LUA_TSTRING) {
    pp = lua_topointer(L, P);
    np = lua_topointer(L, NAME);
    h = rp_found_hash(pp, np);
    for (probe = 0; probe < RP_FOUND_SLOTS && found->p[h]; probe++) {
      if (found->p[h] == pp && found->name[h] == np) {
        lua_rawgeti(L, lua_upvalueindex(RK_FPLANS), (lua_Integer)h + 1);
        n = found->n[h];
        one = (lua_Unsigned)found->one[h];
        first = found->first[h];
        goto planned;
      }
      h = (h + 1) & (RP_FOUND_SLOTS - 1);
    }
  }
  /* else by value, made the first time: plans[P][name] */
  lua_pushvalue(L, P);
  if (lua_type(L, P) == LUA_TTABLE && lua_rawget(L, PLANS) == LUA_TTABLE &&
      lua_type(L, NAME) != LUA_TNIL) {
    lua_pushvalue(L, NAME);
    if (lua_rawget(L, -2) == LUA_TTABLE)
      lua_remove(L, -2);
    else
      lua_settop(L, TR);
  } else {
    lua_settop(L, TR);
  }
  if (lua_gettop(L) == TR && !(lua_type(L, NAME) != LUA_TNIL &&
                               rp_make(L, P, NAME, PLANS)))
    goto refuse;
  lua_rawgeti(L, PLAN, RP_N);
  n = lua_tointeger(L, -1);
  lua_rawgeti(L, PLAN, RP_FIRST);
  first = lua_toboolean(L, -1);
  lua_rawgeti(L, PLAN, RP_ONE);
  one = (lua_Unsigned)lua_tointeger(L, -1);
  lua_settop(L, PLAN);
  if (pp && !found->p[h]) { /* a free slot: found by address next time */
    found->p[h] = pp;
    found->name[h] = np;
    found->n[h] = n;
    found->one[h] = (lua_Integer)one;
    found->first[h] = (unsigned char)first;
    lua_pushvalue(L, PLAN);
    lua_rawseti(L, lua_upvalueindex(RK_FPLANS), (lua_Integer)h + 1);
  }
planned:
  /* P.params, unless every condition is called with the facts alone */
  if (n <= 64 && one == (n == 64 ? ~(lua_Unsigned)0
                                 : ((lua_Unsigned)1 << n) - 1))
    lua_pushnil(L);
  else
    lua_rawgeti(L, PLAN, RP_PARAMS);
  /* the tracer: plain tables, not explaining (EXPLAIN: its nil, left) */
  if (!rp_plain(L, TR) || rk_get(L, TR, RK_EXPLAIN) != LUA_TNIL)
    goto refuse;
  /* rk_get's type, so that rp_plain's is not asked again */
  if (rk_get(L, TR, RK_SEEN) != LUA_TTABLE ||
      rk_get(L, TR, RK_LIST) != LUA_TTABLE || !rp_nometa(L, SEEN) ||
      !rp_nometa(L, LIST))
    goto refuse;
  charge_small(L, (unsigned long)n);
  if (!first)
    lua_createtable(L, 4, 0); /* HITS */
  base = lua_gettop(L);
  for (i = 0; i < n; i++) {
    lua_Integer at = RP_RULES + 4 * i;
    int holds;
    if (lua_rawgeti(L, PLAN, at) == LUA_TFUNCTION) {
      lua_pushvalue(L, F);
      if (i < 64 && (one >> i & 1)) { /* when(f): rp_one */
        lua_call(L, 1, 1);
      } else {
        lua_rawgeti(L, PLAN, at + 1);
        lua_pushvalue(L, PARAMS);
        lua_call(L, 3, 1);
      }
      holds = lua_toboolean(L, -1);
    } else {
      holds = 1;
    }
    /* what `when` returned is left on the stack (a pop is a call, some 25
     * instructions): at most 4, then cut back (base, at most 10, + 3 + a
     * call's 4 stay within the LUA_MINSTACK a C function gets) */
    if (++left == 4) {
      lua_settop(L, base);
      left = 0;
    }
    if (!holds)
      continue;
    lua_rawgeti(L, PLAN, at + 2); /* id */
    lua_pushvalue(L, -1);
    if (lua_rawget(L, SEEN) == LUA_TNIL ||
        !lua_toboolean(L, -1)) { /* `not seen[id]`, as the Lua loop */
      lua_pop(L, 1);
      lua_pushboolean(L, 1);
      lua_rawset(L, SEEN);
      lua_rawgeti(L, PLAN, at + 3);
      lua_rawseti(L, LIST, (lua_Integer)lua_rawlen(L, LIST) + 1);
    } else {
      lua_pop(L, 2);
    }
    lua_rawgeti(L, PLAN, at + 1);
    if (first)
      return 1;
    lua_rawseti(L, HITS, ++nhits);
  }
  if (first)
    lua_pushnil(L);
  else
    lua_pushvalue(L, HITS);
  return 1;
refuse:
  lua_settop(L, TR);
  return 0;
}

static int v_run_rules(lua_State *L) {
  if (run_loop(L, lua_touserdata(L, lua_upvalueindex(RK_FOUND)))) {
    lua_pushboolean(L, 1); /* true, then what run_loop pushed */
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* Push verdict.run_rules: v_run_rules with the keys it reads and the
 * table of plans, empty, as its upvalues (RK_*). */
static void push_run_rules(lua_State *L) {
  int i;
  for (i = 0; i < RK_COUNT; i++)
    lua_pushstring(L, rule_keys[i]);
  lua_newtable(L);
  memset(lua_newuserdatauv(L, sizeof(rp_found_t), 0), 0, sizeof(rp_found_t));
  lua_createtable(L, RP_FOUND_SLOTS, 0);
  lua_pushcclosure(L, v_run_rules, RK_FPLANS);
}

/* verdict.rule_runner(loop, must) -> a function(P, name, f, tr) that is
 * lib/rules.lua's R.run (must false) or R.decide (must true) itself, so a
 * decision's call of a table goes from the policy straight to C, without
 * a Lua frame between: run_rules's loop, returning the rule (first) or
 * the rules (collect); with `must`, a first table where no rule held is
 * an error at the policy's line (the caller's), as R.decide's
 * error(..., 2).  Where run_rules would say it cannot run the table, it
 * calls `loop` (the Lua loop, which explains) with the same four
 * arguments and returns what it returns; `loop` raises its own errors at
 * level 3, the policy's line, this function sitting between them.  Its
 * upvalues: run_rules's (RK_*; `must` kept in RK_FOUND's block), then
 * `loop` (RR_LOOP); the freeze
 * and the state check look only at `loop`, a policy's function like any
 * other.  Older binaries have no rule_runner: lib/rules.lua then keeps
 * its own R.run and R.decide around verdict.run_rules. */
enum { RR_LOOP = RK_FPLANS + 1, RR_COUNT = RR_LOOP };

static int v_rule_runner_call(lua_State *L) {
  rp_found_t *found = lua_touserdata(L, lua_upvalueindex(RK_FOUND));
  if (run_loop(L, found)) { /* it makes the top 4 first */
    if (found->must && lua_isnil(L, -1)) {
      luaL_where(L, 1);
      lua_pushliteral(L, "no rule in table ");
      luaL_tolstring(L, 2, NULL);
      lua_pushliteral(L, " matched; it needs a default rule");
      lua_concat(L, 4);
      return lua_error(L);
    }
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(RR_LOOP));
  lua_insert(L, 1);
  lua_call(L, 4, LUA_MULTRET);
  return lua_gettop(L);
}

static int v_rule_runner(lua_State *L) {
  int i;
  rp_found_t *found;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 2);
  for (i = 0; i < RK_COUNT; i++)
    lua_pushstring(L, rule_keys[i]);
  lua_newtable(L);
  found = lua_newuserdatauv(L, sizeof(rp_found_t), 0);
  memset(found, 0, sizeof(rp_found_t));
  found->must = lua_toboolean(L, 2);
  lua_createtable(L, RP_FOUND_SLOTS, 0);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, v_rule_runner_call, RR_COUNT);
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
  if (lua_getmetatable(L, 1)) { /* a string's is no marker either */
    mt = lua_topointer(L, -1);
    /* a loaded table: the marker is its copy's */
    if (mt != lua_topointer(L, lua_upvalueindex(1)) &&
        mt != lua_topointer(L, lua_upvalueindex(2)) &&
        vd_sandbox_unfreeze(L, 1)) {
      mt = lua_getmetatable(L, 1) ? lua_topointer(L, -1) : NULL;
    }
  }
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
 * No state between decisions
 *
 * What a policy can change between two decisions: a variable captured by
 * a function that outlives the load (an upvalue: written only by the
 * SETUPVAL instruction), a table it can reach, or the hidden state of a
 * C iterator it kept (string.gmatch's, pairs's).  Globals are locked
 * already (vd_sandbox_lock_env()).  vd_sandbox_refuse_state() walks
 * everything reachable from the loaded policies and refuses the bundle
 * if any function it reaches can assign to such an upvalue, or if a C
 * function with mutable upvalues (a kept iterator) is reachable.  The
 * function's own bytecode says so: lua_dump() writes it, and the walk
 * reads the instructions (Lua 5.4's dump format, lundump.c).  The tables
 * are frozen next (vd_sandbox_freeze(), below).
 * ------------------------------------------------------------------------ */

#define OP_SETUPVAL 10 /* lopcodes.h, Lua 5.4: UpValue[B] := R[A] */

typedef struct dump_reader {
  const unsigned char *p, *end;
  int bad;
} dump_reader_t;

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  vd_buf_add(ud, p, n);
  return 0;
}

static unsigned char rd_byte(dump_reader_t *r) {
  if (r->p >= r->end) {
    r->bad = 1;
    return 0;
  }
  return *r->p++;
}

/* lundump.c's loadUnsigned: 7 bits a byte, most significant first, the
 * last byte marked by its high bit. */
static size_t rd_size(dump_reader_t *r) {
  size_t x = 0;
  unsigned char b;
  do {
    b = rd_byte(r);
    x = (x << 7) | (b & 0x7f);
  } while (!(b & 0x80) && !r->bad);
  return x;
}

static void rd_skip(dump_reader_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    r->bad = 1;
    r->p = r->end;
  } else {
    r->p += n;
  }
}

/* A string: size + 1 (0 for none), then the bytes. */
static const char *rd_string(dump_reader_t *r, size_t *len) {
  size_t n = rd_size(r);
  const char *s = (const char *)r->p;
  *len = n ? n - 1 : 0;
  rd_skip(r, *len);
  return n ? s : NULL;
}

/* What the walk found wrong in one function's dump. */
typedef struct state_hit {
  const char *name; /* upvalue name (inside the dump buffer), or NULL */
  size_t name_len;
  long line;        /* the line where the writing function starts */
} state_hit_t;

/* Read one function prototype.  `outer` says, for each upvalue of the
 * enclosing prototype, whether it outlives a decision (NULL: this is the
 * reachable function itself, all of whose upvalues do).  Stops at the
 * first hit.  Returns 0, 1 for a hit, -1 for a dump it cannot read. */
static int read_proto(dump_reader_t *r, const unsigned char *outer,
                      state_hit_t *hit) {
  size_t ncode, nk, nup, nproto, i, len;
  const unsigned char *code;
  unsigned char lasting[256];
  long line;
  int writes = -1, rc = 0;

  rd_string(r, &len); /* source */
  line = (long)rd_size(r);
  rd_size(r);     /* lastlinedefined */
  rd_skip(r, 3);  /* numparams, is_vararg, maxstacksize */
  ncode = rd_size(r);
  code = r->p;
  rd_skip(r, ncode * 4);
  nk = rd_size(r);
  for (i = 0; i < nk && !r->bad; i++) {
    switch (rd_byte(r)) {
    case 3:  /* integer */
    case 19: /* float */
      rd_skip(r, 8);
      break;
    case 4:  /* short string */
    case 20: /* long string */
      rd_string(r, &len);
      break;
    default: /* nil, false, true */
      break;
    }
  }
  nup = rd_size(r);
  if (nup > sizeof lasting || r->bad)
    return -1;
  for (i = 0; i < nup; i++) {
    unsigned char instack = rd_byte(r), idx = rd_byte(r);
    rd_byte(r); /* kind */
    lasting[i] = outer ? (!instack && outer[idx]) : 1;
  }
  if (r->bad)
    return -1;
  for (i = 0; i < ncode && writes < 0; i++) {
    uint32_t ins;
    memcpy(&ins, code + 4 * i, 4);
    if ((ins & 0x7f) == OP_SETUPVAL && (ins >> 16 & 0xff) < nup &&
        lasting[ins >> 16 & 0xff])
      writes = (int)(ins >> 16 & 0xff);
  }
  nproto = rd_size(r);
  for (i = 0; i < nproto && !rc && !r->bad; i++)
    rc = read_proto(r, lasting, hit);
  if (rc)
    return rc;
  /* debug: line info, absolute line info, local names, upvalue names */
  rd_skip(r, rd_size(r));
  for (i = rd_size(r); i > 0 && !r->bad; i--) {
    rd_size(r);
    rd_size(r);
  }
  for (i = rd_size(r); i > 0 && !r->bad; i--) {
    rd_string(r, &len);
    rd_size(r);
    rd_size(r);
  }
  nk = rd_size(r); /* upvalue names: as many as upvalues, or none */
  hit->name = NULL;
  for (i = 0; i < nk && !r->bad; i++) {
    const char *s = rd_string(r, &len);
    if ((int)i == writes) {
      hit->name = s;
      hit->name_len = len;
    }
  }
  if (r->bad)
    return -1;
  if (writes >= 0) {
    hit->line = line;
    return 1;
  }
  return 0;
}

/* verdict.field_reads(fn): the names fn reads from its first parameter
 * as constant fields (`f.category`, `f["category"]`), each once, in the
 * order of the bytecode; {} for a C function or one without parameters.
 * Only fn's own code is read (not the functions it defines), and only
 * reads straight from the parameter: `f.signals.media` gives "signals",
 * `local g = f; g.x` and `f[name]` give nothing.  lib/rules.lua asks it,
 * at load, about every rule's `when`, to refuse a read of an input field
 * the kind's schema does not define.  The walk is charged by the size of
 * the function's dump. */
#define OP_GETFIELD 14 /* lopcodes.h, Lua 5.4: R[A] := R[B][K[C]:string] */

/* lua_dump's writer into a luaL_Buffer begun on the first call, once the
 * function is at the top of the stack (as lstrlib.c's string.dump). */
typedef struct dump_box {
  int init;
  luaL_Buffer b;
} dump_box_t;

static int box_writer(lua_State *L, const void *p, size_t n, void *ud) {
  dump_box_t *box = ud;
  if (!box->init) {
    box->init = 1;
    luaL_buffinit(L, &box->b);
  }
  luaL_addlstring(&box->b, p, n);
  return 0;
}

static int v_field_reads(lua_State *L) {
  dump_box_t box;
  dump_reader_t r;
  size_t ncode, nk, i, n = 0, len;
  const unsigned char *code;
  unsigned numparams;
  const char *kstr[256];
  size_t klen[256];
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  if (lua_iscfunction(L, 1)) {
    lua_newtable(L);
    return 1;
  }
  box.init = 0;
  lua_dump(L, box_writer, &box, 1);
  luaL_pushresult(&box.b);                            /* 2: the dump */
  r.p = (const unsigned char *)lua_tolstring(L, 2, &len);
  r.end = r.p + len;
  r.bad = 0;
  vd_sandbox_charge(L, (double)len / SCAN_STEP_BYTES);
  lua_newtable(L);                                    /* 3: the names */
  lua_newtable(L);                                    /* 4: those seen */
  /* the header (as check_function() reads it), then the function */
  rd_skip(&r, 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number) +
                  1);
  rd_string(&r, &i); /* source */
  rd_size(&r);       /* linedefined */
  rd_size(&r);       /* lastlinedefined */
  numparams = rd_byte(&r);
  rd_skip(&r, 2);    /* is_vararg, maxstacksize */
  ncode = rd_size(&r);
  code = r.p;
  rd_skip(&r, ncode * 4);
  nk = rd_size(&r);
  for (i = 0; i < nk && !r.bad; i++) {
    const char *str = NULL;
    size_t sl = 0;
    switch (rd_byte(&r)) {
    case 3:  /* integer */
    case 19: /* float */
      rd_skip(&r, 8);
      break;
    case 4:  /* short string */
    case 20: /* long string */
      str = rd_string(&r, &sl);
      break;
    default: /* nil, false, true */
      break;
    }
    if (i < 256) {
      kstr[i] = str;
      klen[i] = sl;
    }
  }
  if (r.bad || numparams == 0) {
    lua_settop(L, 3);
    return 1;
  }
  for (i = 0; i < ncode; i++) {
    uint32_t ins;
    unsigned b, c;
    memcpy(&ins, code + 4 * i, 4);
    b = ins >> 16 & 0xff;
    c = ins >> 24 & 0xff;
    if ((ins & 0x7f) != OP_GETFIELD || b != 0 || c >= nk || c >= 256 ||
        !kstr[c])
      continue;
    lua_pushlstring(L, kstr[c], klen[c]);
    if (lua_rawget(L, 4) == LUA_TNIL) {
      lua_pushlstring(L, kstr[c], klen[c]);
      lua_pushboolean(L, 1);
      lua_rawset(L, 4);
      lua_pushlstring(L, kstr[c], klen[c]);
      lua_rawseti(L, 3, (lua_Integer)++n);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 3);
  return 1;
}

/* Refuse (raise) if the Lua function at idx can write an upvalue that
 * outlives a decision. */
static void check_function(lua_State *L, int idx) {
  vd_buf_t dump = VD_BUF_INIT;
  dump_reader_t r;
  state_hit_t hit = {NULL, 0, 0};
  lua_Debug ar;
  int rc;
  char name[64];

  lua_pushvalue(L, idx);
  lua_dump(L, dump_writer, &dump, 0);
  lua_getinfo(L, ">S", &ar); /* pops the function */
  r.p = (const unsigned char *)dump.data;
  r.end = r.p + dump.len;
  r.bad = 0;
  /* header: signature, version, format, data, 3 sizes, an integer and a
   * float to check against, then the main function's upvalue count */
  rd_skip(&r, 4 + 1 + 1 + 6 + 3 + sizeof(lua_Integer) + sizeof(lua_Number) +
                  1);
  rc = read_proto(&r, NULL, &hit);
  snprintf(name, sizeof name, "%.*s", (int)(hit.name ? hit.name_len : 1),
           hit.name ? hit.name : "?");
  vd_buf_release(&dump);
  if (rc < 0)
    luaL_error(L, "%s:%d: cannot read this function's bytecode", ar.short_src,
               ar.linedefined);
  if (rc > 0)
    luaL_error(L, "%s:%d: a function assigns to '%s', a variable that "
                  "outlives the decision (policies cannot carry state from "
                  "one decision to the next: make it a local of the "
                  "function that uses it)", ar.short_src, (int)hit.line, name);
}

/* The values still to visit are a stack, taken from its top: a table
 * whose array part stays dense (a queue emptied from its front left its
 * live keys to the hash part, and every push then rehashed: 200
 * instructions a push, a tenth of an engine's build). */
void vd_sandbox_refuse_state(lua_State *L, int idx) {
  int seen, stack;
  lua_Integer top = 0;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 8, "checking the policies for state");
  lua_newtable(L);
  seen = lua_gettop(L);
  lua_newtable(L);
  stack = lua_gettop(L);
  lua_pushvalue(L, idx);
  lua_rawseti(L, stack, ++top);
  while (top > 0) {
    int v, t, i;
    lua_rawgeti(L, stack, top);
    lua_pushnil(L);
    lua_rawseti(L, stack, top--);
    v = lua_gettop(L);
    t = lua_type(L, v);
    if (t != LUA_TTABLE && t != LUA_TFUNCTION) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, v);
    if (lua_rawget(L, seen) != LUA_TNIL) {
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, v);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    if (t == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, v)) {
        lua_rawseti(L, stack, ++top);
        lua_pushvalue(L, -1);
        lua_rawseti(L, stack, ++top);
      }
      if (lua_getmetatable(L, v))
        lua_rawseti(L, stack, ++top);
    } else {
      int c = lua_iscfunction(L, v);
      if (!c)
        check_function(L, v);
      else if (lua_tocfunction(L, v) == v_rule_runner_call) {
        /* a runner: its Lua loop is checked as any function; its other
         * upvalues are run_rules's */
        if (lua_getupvalue(L, v, RR_LOOP))
          lua_rawseti(L, stack, ++top);
        lua_pop(L, 1);
        continue;
      } else if (lua_tocfunction(L, v) == v_json_type ||
               lua_tocfunction(L, v) == v_check_input ||
               lua_tocfunction(L, v) == v_run_rules) {
        /* the sandbox's own closures: their upvalues are the decoder's
         * markers and two strings, the plans' metatable, or run_rules's
         * keys and plans (read from frozen tables), which no policy can
         * reach or change */
        lua_pop(L, 1);
        continue;
      }
      for (i = 1; lua_getupvalue(L, v, i); i++) {
        int ut = lua_type(L, -1);
        if (c && (ut == LUA_TTABLE || ut == LUA_TUSERDATA))
          luaL_error(L, "a policy keeps a function with state of its own "
                        "(an iterator from string.gmatch or pairs, made "
                        "while loading); policies cannot carry state from "
                        "one decision to the next");
        lua_rawseti(L, stack, ++top);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
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

/* ------------------------------------------------------------------------
 * Freezing what a bundle loaded
 *
 * After the load, every table a policy can reach is replaced, for policy
 * code, by a read-only proxy (vd_sandbox_freeze()).  For each table T
 * reached from the roots (through table keys and values, metatables, and
 * functions' upvalues) the walk makes:
 *   - T', a copy of T whose table keys and values are the proxies of the
 *     tables T held (so a read through a proxy only ever returns proxies),
 *     whose metatable is the copy of T's (metamethods are looked up raw, so
 *     a metatable must stay a full table; only proxies hide from policy
 *     code, and a copy's own metatable is never handed out); and
 *   - PT, an empty table whose metatable FM is
 *       { __index = T', __newindex = frozen_write, __len = frozen_len,
 *         __metatable = <T's __metatable, or false>, [FROZEN_KEY] = T' }
 *     plus T's other metamethods (__call, __eq, __tostring...), which are
 *     called with PT, never T'.
 * One proxy per table, so identity and sharing are kept.  Every Lua
 * function's table upvalues are set to the proxies (lua_setupvalue), and
 * the tables only read-only proxies lead to (a chunk's locked
 * environment, the libraries: see vd_sandbox_push_proxy()) have their
 * table fields set to proxies in place.  The originals are left as they
 * were: the engine's callers that read a policy's tables raw from C (the
 * region grid, `verdict test`, the reference) still see plain tables.
 *
 * What a policy holds afterwards is a proxy or a decision's own table; a
 * proxy is empty, so every assignment to it runs __newindex and raises,
 * and the policy has no rawset, next or debug to reach T' another way.  A
 * function-valued __index in a copied metatable is wrapped so that it is
 * called with the proxy (frozen_index), not with T'.  Readers the sandbox
 * gives (pairs, rawget, rawlen, the table library's reads, verdict.*) and
 * the engine's inspection of results (the encoder) read through
 * vd_sandbox_unfreeze(); the table library's writes refuse a proxy.  A
 * read through a proxy costs one more table look-up than before.
 * ------------------------------------------------------------------------ */


static int frozen_write(lua_State *L) {
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k)
    return luaL_error(L, "cannot assign '%s': policies cannot change a "
                         "table loaded with the bundle (policies cannot "
                         "carry state from one decision to the next; "
                         "copy it into a local table)", k);
  return luaL_error(L, "cannot assign a %s key: policies cannot change a "
                       "table loaded with the bundle (policies cannot carry "
                       "state from one decision to the next; copy it into "
                       "a local table)", luaL_typename(L, 2));
}

int vd_sandbox_unfreeze(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
    return 0;
  if (lua_rawgetp(L, -1, FROZEN_TAG) != LUA_TTABLE) {
    lua_pop(L, 2);
    return 0;
  }
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? idx - 2 : idx;
  lua_replace(L, idx);
  lua_pop(L, 1);
  return 1;
}

/* #PT: the copy's length, raw (the proxy itself is empty).  The copy is
 * the closure's upvalue: `#` is common in loops, and this is its cost. */
static int frozen_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
  return 1;
}

/* A copied metatable's function __index (upvalue 1), called with the
 * proxy of the table it was called for, so it never holds the copy. */
static int frozen_index(lua_State *L) {
  lua_settop(L, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_COPY);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL)
    lua_replace(L, 1);
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 2, 1);
  return 1;
}

/* Whether the table at idx is a read-only proxy vd_sandbox_push_proxy()
 * or vd_sandbox_lock_env() made; if so, pushes the table it reads from
 * (or nil) and returns 1. */
static int ro_target(lua_State *L, int idx) {
  int ro;
  if (!lua_getmetatable(L, idx))
    return 0;
  lua_pushliteral(L, "__newindex");
  lua_rawget(L, -2);
  ro = lua_tocfunction(L, -1) == refuse_write;
  lua_pop(L, 1);
  if (!ro) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushliteral(L, "__index");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return 1;
}

typedef struct freezer {
  int orig;  /* stack: registry's T -> PT */
  int copy;  /* stack: registry's T' -> PT */
  int seen;  /* stack: functions and sealed tables already queued */
  int queue; /* stack: work, as (value, kind) pairs */
  lua_Integer head, tail;
} freezer_t;

enum { FZ_FILL = 1, FZ_SEAL, FZ_FUNC };

static void fz_push(lua_State *L, freezer_t *z, int kind) {
  lua_rawseti(L, z->queue, ++z->tail);
  lua_pushinteger(L, kind);
  lua_rawseti(L, z->queue, ++z->tail);
}

/* Queue the value at top once under `kind` (pops it). */
static void fz_once(lua_State *L, freezer_t *z, int kind) {
  lua_pushvalue(L, -1);
  if (lua_rawget(L, z->seen) != LUA_TNIL) {
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, z->seen);
  fz_push(L, z, kind);
}

/* Replace the value at top by what the frozen graph holds instead: a
 * table's proxy (made, and its copy queued, the first time), the table
 * itself if it is read-only already (a proxy; the table behind it is
 * queued to be sealed) or a JSON marker; any other value as it is
 * (functions are queued so their upvalues are frozen). */
static void fz_convert(lua_State *L, freezer_t *z) {
  int v = lua_gettop(L);
  if (lua_type(L, v) == LUA_TFUNCTION) {
    lua_pushvalue(L, v);
    fz_once(L, z, FZ_FUNC);
    return;
  }
  if (lua_type(L, v) != LUA_TTABLE)
    return;
  lua_pushvalue(L, v);
  if (lua_rawget(L, z->orig) != LUA_TNIL) { /* frozen already */
    lua_replace(L, v);
    return;
  }
  lua_pop(L, 1);
  if (ro_target(L, v)) {
    if (lua_type(L, -1) == LUA_TTABLE)
      fz_once(L, z, FZ_SEAL);
    else
      lua_pop(L, 1);
    return;
  }
  if (lua_getmetatable(L, v)) {
    int proxy = lua_rawgetp(L, -1, FROZEN_TAG) != LUA_TNIL;
    lua_pop(L, 2);
    if (proxy) /* made by an earlier walk */
      return;
  }
  lua_newtable(L);           /* v+1: PT */
  lua_createtable(L, 0, 5);  /* v+2: FM */
  lua_newtable(L);           /* v+3: T', filled later */
  lua_pushvalue(L, v + 3);
  lua_setfield(L, v + 2, "__index");
  lua_pushvalue(L, v + 3);
  lua_rawsetp(L, v + 2, FROZEN_TAG);
  lua_pushcfunction(L, frozen_write);
  lua_setfield(L, v + 2, "__newindex");
  lua_pushvalue(L, v + 3);
  lua_pushcclosure(L, frozen_len, 1);
  lua_setfield(L, v + 2, "__len");
  lua_pushboolean(L, 0);
  lua_setfield(L, v + 2, "__metatable");
  lua_pushvalue(L, v + 2);
  lua_setmetatable(L, v + 1);
  lua_pushvalue(L, v + 3);   /* T' -> PT */
  lua_pushvalue(L, v + 1);
  lua_rawset(L, z->copy);
  lua_pushvalue(L, v);       /* T -> PT */
  lua_pushvalue(L, v + 1);
  lua_rawset(L, z->orig);
  lua_pushvalue(L, v);
  fz_push(L, z, FZ_FILL);
  lua_settop(L, v + 1);
  lua_replace(L, v);
}

/* Fill T' from T (at idx; its proxy's metatable FM at fm). */
static void fz_fill(lua_State *L, freezer_t *z, int t, int fm) {
  int copy;
  lua_rawgetp(L, fm, FROZEN_TAG);
  copy = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pushvalue(L, -2); /* key, value, key */
    fz_convert(L, z);
    lua_insert(L, -2);    /* key, key', value */
    fz_convert(L, z);
    if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION &&
        strcmp(lua_tostring(L, -2), "__index") == 0) {
      lua_pushcclosure(L, frozen_index, 1);
    }
    lua_rawset(L, copy);
  }
  if (lua_getmetatable(L, t)) {
    int mt = lua_gettop(L);
    /* FM: T's metamethods other than those FM has (converted) */
    lua_pushnil(L);
    while (lua_next(L, mt)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                     : "";
      if (strncmp(k, "__", 2) != 0 || strcmp(k, "__index") == 0 ||
          strcmp(k, "__newindex") == 0 || strcmp(k, "__gc") == 0 ||
          strcmp(k, "__mode") == 0 || strcmp(k, "__close") == 0) {
        lua_pop(L, 1);
        continue;
      }
      fz_convert(L, z);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, fm);
    }
    /* T' reads on from the copy of T's metatable (filled in its turn);
     * a JSON marker is read-only already and is what json_type compares */
    if (!vd_json_marker(L, t)) {
      fz_convert(L, z);
      lua_getmetatable(L, -1);
      lua_rawgetp(L, -1, FROZEN_TAG);
      lua_replace(L, mt);
      lua_settop(L, mt);
    }
    lua_setmetatable(L, copy);
  }
  lua_settop(L, copy - 1);
}

/* Set the table fields of a table only read-only proxies lead to (a
 * locked environment's contents, a library) to their proxies, in place;
 * then seal the table its metatable reads from (the base environment). */
static void fz_seal(lua_State *L, freezer_t *z, int h) {
  int keys;
  lua_Integer nk = 0, i;
  lua_newtable(L); /* table keys to move: key, key' pairs */
  keys = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, h)) {
    int k = lua_gettop(L) - 1;
    fz_convert(L, z);
    lua_pushvalue(L, k);
    lua_insert(L, -2);
    lua_rawset(L, h); /* an existing key: allowed during the walk */
    if (lua_type(L, k) == LUA_TTABLE) {
      lua_pushvalue(L, k);
      fz_convert(L, z);
      if (!lua_rawequal(L, k, -1)) {
        lua_pushvalue(L, k);
        lua_rawseti(L, keys, ++nk);
        lua_rawseti(L, keys, ++nk);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  for (i = 1; i < nk; i += 2) { /* keys[i] the old key, i+1 its proxy */
    lua_rawgeti(L, keys, i + 1);
    lua_rawgeti(L, keys, i);
    lua_rawget(L, h);
    lua_rawset(L, h);
    lua_rawgeti(L, keys, i);
    lua_pushnil(L);
    lua_rawset(L, h);
  }
  lua_pop(L, 1);
  if (lua_getmetatable(L, h)) {
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) == LUA_TTABLE && !ro_target(L, -1))
      fz_once(L, z, FZ_SEAL);
    lua_settop(L, h);
  }
}

void vd_sandbox_freeze(lua_State *L, int idx) {
  freezer_t z;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 16, "freezing the bundle's tables");
  if (lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_ORIG) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, FROZEN_BY_ORIG);
  }
  z.orig = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, FROZEN_BY_COPY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, FROZEN_BY_COPY);
  }
  z.copy = lua_gettop(L);
  lua_newtable(L);
  z.seen = lua_gettop(L);
  lua_newtable(L);
  z.queue = lua_gettop(L);
  z.head = 1;
  z.tail = 0;
  lua_pushvalue(L, idx);
  fz_once(L, &z, FZ_SEAL);
  while (z.head <= z.tail) {
    int v, kind, i;
    lua_rawgeti(L, z.queue, z.head);
    lua_rawgeti(L, z.queue, z.head + 1);
    kind = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, z.queue, z.head);
    z.head += 2;
    v = lua_gettop(L);
    if (kind == FZ_FILL) {
      lua_pushvalue(L, v);
      lua_rawget(L, z.orig);
      lua_getmetatable(L, -1);
      fz_fill(L, &z, v, lua_gettop(L));
    } else if (kind == FZ_SEAL) {
      fz_seal(L, &z, v);
    } else if (lua_tocfunction(L, v) == v_rule_runner_call) {
      /* a runner: its Lua loop is frozen as any function; its other
       * upvalues are run_rules's */
      if (lua_getupvalue(L, v, RR_LOOP))
        fz_convert(L, &z);
    } else if (!lua_iscfunction(L, v) ||
               (lua_tocfunction(L, v) != v_json_type &&
                lua_tocfunction(L, v) != v_check_input &&
                lua_tocfunction(L, v) != v_run_rules)) {
      /* v_json_type's upvalues are the markers and two strings,
       * v_check_input's the plans' metatable, v_run_rules's strings and
       * its plans: the sandbox's own, which no policy can reach */
      for (i = 1; lua_getupvalue(L, v, i); i++) {
        int before = lua_gettop(L);
        fz_convert(L, &z);
        if (lua_type(L, before) == LUA_TTABLE)
          lua_setupvalue(L, v, i);
        else
          lua_pop(L, 1);
      }
    }
    lua_settop(L, z.queue);
  }
  lua_settop(L, top);
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
      "assert", "error", "ipairs", "select", "type",
      "rawequal", NULL};
  static const char *const string_drop[] = {"dump", NULL};
  static const char *const math_drop[] = {"random", "randomseed", NULL};
  static const wrap_t string_wraps[] = {
      {"find", sb_find},       {"match", sb_match},
      {"gmatch", sb_gmatch},   {"gsub", sb_gsub},
      {"format", sb_format},   {"rep", sb_rep},
      {"byte", sb_byte},       {"pack", sb_pack},
      {"unpack", sb_scanning}, {"packsize", sb_scanning},
      {"upper", sb_bytewise},  {"lower", sb_bytewise},
      {"reverse", sb_bytewise}, {"sub", sb_sub},
      {NULL, NULL}};
  static const wrap_t table_wraps[] = {
      {"insert", sb_tinsert}, {"remove", sb_tremove},
      {"move", sb_tmove},     {"concat", sb_tconcat},
      {"unpack", sb_tunpack},
      {NULL, NULL}};
  static const wrap_t utf8_wraps[] = {
      {"len", sb_scanning},       {"offset", sb_scanning},
      {"codepoint", sb_scanning}, {NULL, NULL}};
  static const luaL_Reg replaced[] = {
      {"pcall", sb_pcall},       {"xpcall", sb_xpcall},
      {"tostring", sb_tostring}, {"pairs", sb_pairs},
      {"load", sb_load},         {"setmetatable", sb_setmetatable},
      {"getmetatable", sb_getmetatable}, {"rawget", sb_rawget},
      {"rawlen", sb_rawlen},     {NULL, NULL}};
  static const luaL_Reg vlib[] = {{"array", v_array},
                                  {"object", v_object},
                                  {"is_null", v_is_null},
                                  {"only_keys", v_only_keys},
                                  {"is_empty", v_is_empty},
                                  {"new_table", v_new_table},
                                  {"field_reads", v_field_reads},
                                  {"schema_plan", v_schema_plan},
                                  {"rule_runner", v_rule_runner},
                                  {NULL, NULL}};
  static const struct lib_copy {
    const char *name;
    const char *const *drop;
    const wrap_t *wraps;
  } libs[] = {{LUA_TABLIBNAME, NULL, table_wraps},
              {LUA_MATHLIBNAME, math_drop, NULL},
              {LUA_UTF8LIBNAME, NULL, utf8_wraps},
              {NULL, NULL, NULL}};
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
  lua_getfield(L, -1, "tonumber");
  lua_pushcclosure(L, sb_scanning, 1);
  lua_setfield(L, base, "tonumber");
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
    copy_lib(L, lib->drop, lib->wraps);
    if (strcmp(lib->name, LUA_TABLIBNAME) == 0) {
      lua_pushcfunction(L, sb_tsort); /* our own, not a wrapper */
      lua_setfield(L, -2, "sort");
    }
    vd_sandbox_push_proxy(L, -1);
    lua_setfield(L, base, lib->name);
    lua_pop(L, 1);
  }

  luaL_newlib(L, vlib);
  lua_pushlightuserdata(L, vd_json_null);
  lua_setfield(L, -2, "null");
  push_json_type(L);
  lua_setfield(L, -2, "json_type");
  push_run_rules(L);
  lua_setfield(L, -2, "run_rules");
  push_check_input(L);
  lua_setfield(L, -2, "check_input");
  lua_pushcfunction(L, v_check_object); /* after check_input: plan_mt set */
  lua_setfield(L, -2, "check_object");
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
  /* Generational, with a major multiplier of 300 (Lua's default: 100): a
   * full collection waits until the state has grown to four times what
   * the last one left instead of twice.  A decision's garbage dies young,
   * so minor collections keep the state where it was: over 100,000
   * decisions (bench/decide_loop.c, DECIDE_MEMORY) it peaks at the same
   * 2.75 MB as with 100 after start-up, and the sealed cap
   * (vd_sandbox_seal()) still bounds it; about 1,200 instructions a
   * decision fewer (docs/performance.md, session 7, fourth round). */
  lua_gc(L, LUA_GCGEN, 0, 300);
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
  vd_json_cache_free(sb->encoded);
  sb->encoded = NULL;
  sb->L = NULL;
}

/* Tens of keys (a schema's fields, a bundle's files): insertion sort. */
void vd_sandbox_push_sorted_keys(lua_State *L, int idx) {
  lua_Integer n = 0, i, j;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, -3, ++n);
    }
  }
  for (i = 2; i <= n; i++) {
    for (j = i; j > 1; j--) {
      lua_rawgeti(L, -1, j - 1);
      lua_rawgeti(L, -2, j);
      if (strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) <= 0) {
        lua_pop(L, 2);
        break;
      }
      lua_rawseti(L, -3, j - 1);
      lua_rawseti(L, -2, j);
    }
  }
}
