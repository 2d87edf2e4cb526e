/*
 * sandbox.h - a Lua 5.4 state fit to run policy code.
 *
 * A sandbox is one lua_State with:
 *   - one allocator that accounts every byte and can refuse past a limit
 *     (the per-evaluation memory cap) or fail the n-th allocation (tests);
 *   - a count hook that stops code past an instruction budget; pcall and
 *     xpcall inside the sandbox re-raise once a limit has tripped, so a
 *     policy cannot swallow its own timeout or memory error;
 *   - an allow-listed base environment (registry "vd.base") holding only
 *     string (no dump; format without %p; pattern functions bounded by
 *     subject and pattern length), table (plain tables only; sort is a
 *     stable merge sort, so equal elements keep one order), math (no
 *     random), utf8, pairs in one fixed key order (numbers exactly, then
 *     strings bytewise, false, true, verdict.null; a table or function
 *     key, which only an address could order, is refused), address-free
 *     tostring, text-only load, setmetatable without __gc (looked up raw),
 *     and the `verdict` library (null, array, object).  Library tables are
 *     read-only proxies; the string metatable is hidden.
 *
 * Work done in C.  No hook fires inside a C function, so every library
 * function policy code can reach costs O(1), or has its cost bounded by
 * its arguments and charged to the instruction budget before it runs
 * (vd_sandbox_charge(): bytes walked at 16 a step, bytes made at 64 a
 * step, elements moved, a pattern's worst-case matcher steps), or is
 * refused (a pattern whose bound passes 10^9 steps; the table library on a
 * table with __index, __newindex or __len).  A timeout from a charge is
 * the same policy_timeout as a Lua loop's, and pcall cannot catch it.
 * Charges depend on the arguments only, so a budget stays exact.
 *
 * What the budget cannot see: operators the VM runs in C on values of any
 * size (`..`, comparison of long strings) cost up to the memory cap's
 * worth of bytes for one instruction.  The last resort for those is a
 * wall clock, which belongs to the daemon, not here: a decision that
 * overruns it would make its worker stop taking connections and be
 * replaced, and be reported.  A wall clock can stop any evaluation but
 * only by giving up the worker; it cannot give a deterministic answer.
 *
 * State between decisions.  Globals are locked (vd_sandbox_lock_env());
 * no function reachable from a loaded bundle may assign to a variable that
 * outlives a decision, nor may the bundle keep an iterator with state
 * (vd_sandbox_refuse_state(), at load, from the functions' bytecode);
 * every table the loaded policies can reach is frozen: policy code holds
 * only read-only proxies of them (vd_sandbox_freeze()), so an assignment
 * into one, table.insert/remove/sort/move into one, or setmetatable on one
 * raises, naming the file and line; and the state's total size is capped
 * (vd_sandbox_seal()).  Together: nothing a decision can write outlives
 * it.  Reads see through a proxy: indexing, #, ipairs, and the sandbox's
 * pairs, rawget, rawlen, table.concat/unpack, verdict.*, and the result
 * encoder (vd_sandbox_unfreeze()).  What a proxy changes: getmetatable of
 * a loaded table answers its __metatable field, or false; rawequal and ==
 * compare proxies, one per table, so identity is kept.
 *
 * Each chunk runs in an environment of its own whose misses fall through to
 * the base; vd_sandbox_lock_env() then makes that environment read-only, so
 * globals a file defined cannot be changed by a later evaluation.
 *
 * A sandbox belongs to one thread.  Ownership: the vd_sandbox_t is the
 * caller's (embedded); vd_sandbox_release() closes the state.
 */
#ifndef VERDICT_SANDBOX_H
#define VERDICT_SANDBOX_H

#include <stddef.h>

#include <lua.h>

#include "verdict/buf.h"
#include "verdict/slab.h"

typedef struct vd_limits {
  size_t mem_cap;             /* bytes one evaluation may add to the state */
  unsigned long instr_budget; /* VM instructions per evaluation */
  unsigned long load_budget;  /* VM instructions to load a whole bundle */
  size_t load_mem;            /* bytes the state may hold while loading */
  int max_depth;              /* JSON nesting bound for requests */
} vd_limits_t;

#define VD_LIMITS_DEFAULT { 32u << 20, 10000000UL, 200000000UL, 512u << 20, 32 }

/* Slabs a state may hold for its small blocks (beyond: malloc). */
#define VD_SANDBOX_SLAB_BYTES (16u << 20)

/* Instructions between two calls of the count hook. */
#define VD_HOOK_STEP 1000

typedef struct vd_sandbox {
  lua_State *L;
  size_t used;          /* bytes the state holds now */
  size_t limit;         /* refuse allocations that would pass this (0: none) */
  unsigned long steps;  /* instructions counted since vd_sandbox_arm() */
  unsigned long budget; /* instructions allowed since vd_sandbox_arm() */
  int tripped;          /* 0, VD_EPOLICY_TIMEOUT, VD_EPOLICY_MEMORY or
                         * VD_SANDBOX_RECOUNT */
  long fail_countdown;  /* tests: the n-th allocation from now fails (0 off) */
  int failing;          /* tests: set when the countdown hit; every later
                         * allocation fails until the test clears it */
  int counting;         /* the count hook is set (vd_sandbox_count()) */
  size_t state_cap;     /* the most the state may ever hold once sealed
                         * (0: no cap; see vd_sandbox_seal()) */
  int collect;          /* an allocation hit the cap: the next arm
                         * collects the garbage it left */
  vd_slab_t slab;       /* small blocks (slab.h) */
  struct vd_json_cache *encoded; /* the JSON of frozen tables (json.h),
                                  * made by the encoder on first use */
  const void *json_mt[2]; /* the JSON markers' metatables, array and
                           * object (json.c, vd_json_setup()): the state
                           * holds them in its registry for its whole life,
                           * so their addresses identify them */
  const void *own_input; /* the input table the engine decoded for the
                          * decision running now, which nothing else holds
                          * (engine.c sets it around the policy's call;
                          * arm and disarm clear it): verdict.check_input
                          * may make it the facts in place, once */
  const void *plan_mt;   /* the schema plans' metatable (sandbox.c), held
                          * in the registry for the state's life: a plan is
                          * known by its metatable's address */
} vd_sandbox_t;

/* Create the state and its base environment.  Returns 0, or VD_ENOMEM. */
int vd_sandbox_init(vd_sandbox_t *sb, vd_buf_t *err);
void vd_sandbox_release(vd_sandbox_t *sb);

/* Start an evaluation: count `budget` instructions and allow `mem_cap`
 * bytes above what the state holds now.  Clears `tripped`. */
void vd_sandbox_arm(vd_sandbox_t *sb, unsigned long budget, size_t mem_cap);
/* Cap the state's total size, once what it holds for good is loaded: at
 * what it holds now plus twice `mem_cap` (one evaluation's garbage not yet
 * collected, and the next evaluation's room).  The per-evaluation cap
 * bounds one evaluation's growth; this bounds what evaluations can leave
 * behind, together.  At the cap, vd_sandbox_arm() collects garbage first;
 * an evaluation then gets only the room left under the cap, so a state
 * that kept data past it makes evaluations fail with a memory error (the
 * engine's policy_memory) while the state stays under the cap, until it
 * is replaced (a reload).  Call with no evaluation armed. */
void vd_sandbox_seal(vd_sandbox_t *sb, size_t mem_cap);
/* End it: returns the limit that tripped (0 if none). */
int vd_sandbox_disarm(vd_sandbox_t *sb);

/* Counting (the default) sets the count hook that enforces the budget; a
 * fast attempt turns it off and relies on a watchdog (watchdog.h). */
void vd_sandbox_count(vd_sandbox_t *sb, int on);
/* Make the running evaluation stop at its next instruction with `tripped`
 * set to VD_SANDBOX_RECOUNT.  Async-signal-safe; call it only on the thread
 * that runs sb (from a signal handler there). */
void vd_sandbox_interrupt(vd_sandbox_t *sb);
#define VD_SANDBOX_RECOUNT (-1000)

/* Charge `cost` instructions of work a C function is about to do; raises
 * the instruction-budget error (tripped = VD_EPOLICY_TIMEOUT) instead if
 * the budget cannot pay for it.  Call before the work, from C functions
 * policy code calls (it may longjmp). */
void vd_sandbox_charge(lua_State *L, double cost);

/* The sandbox that owns L. */
vd_sandbox_t *vd_sandbox_of(lua_State *L);
/* The same, or NULL when L is not a sandbox's state (its allocator is not
 * the sandbox's). */
vd_sandbox_t *vd_sandbox_find(lua_State *L);

/* Push a new, writable chunk environment that falls through to the base. */
void vd_sandbox_new_env(lua_State *L);

/* Push a new sequence of the string keys of the table at IDX, sorted
 * bytewise (the OpenAPI document's and the field reference's stable
 * order). */
void vd_sandbox_push_sorted_keys(lua_State *L, int idx);
/* Make the environment at idx read-only: its contents move behind a proxy
 * so that every later assignment, to a new or an existing name, raises. */
void vd_sandbox_lock_env(lua_State *L, int idx);
/* Load text chunk [buf, len) named `name` ("@national/sla.lua") with the
 * environment at env_idx as its _ENV.  Pushes the function and returns
 * LUA_OK, or pushes the message and returns the load status. */
int vd_sandbox_load(lua_State *L, const char *name, const char *buf,
                    size_t len, int env_idx);
/* Raise unless everything reachable from the value at idx (through
 * tables, metatables and functions' upvalues, all read raw) is free of
 * state a decision could leave for the next one: no Lua function there
 * may assign to an upvalue that outlives a call of it (a file-level local,
 * or a variable captured at load; the function's bytecode says), and no C
 * function there may hold a table or userdata (a kept iterator).  Run once
 * after a bundle is loaded, under its load budget (the walk is linear in
 * what it reaches).  Tables are frozen next (vd_sandbox_freeze()). */
void vd_sandbox_refuse_state(lua_State *L, int idx);
/* Freeze everything reachable from the table at idx (through table keys
 * and values, metatables and functions' upvalues): each table T reached
 * gets one read-only proxy PT, reading from a copy T' of T whose tables
 * are proxies in turn, and every function's table upvalues and the table
 * at idx's own table fields are set to the proxies, so that no path from
 * it leads to a writable table.  The originals are not changed (C code
 * that read them raw still may), except the table at idx and the tables
 * behind read-only proxies (locked environments, the libraries), whose
 * table fields now hold proxies.  May be called more than once (each
 * table keeps its one proxy).  Run once a bundle is loaded, after
 * vd_sandbox_refuse_state(), under the load budget (linear in what it
 * reaches; it can raise a memory error). */
void vd_sandbox_freeze(lua_State *L, int idx);
/* If the value at idx is a frozen proxy, replace it there by the copy it
 * reads from and return 1; else leave it and return 0.  For C code that
 * reads a policy's value raw (the encoder, the engine's checks); what it
 * reads is the copy, whose tables are proxies too.  Never hand the copy
 * to policy code.  Stack-neutral. */
int vd_sandbox_unfreeze(lua_State *L, int idx);
/* Push a read-only proxy of the table at idx: reads pass through, writes
 * raise, the metatable is hidden. */
void vd_sandbox_push_proxy(lua_State *L, int idx);
/* Put a value from the top of the stack into the base environment under
 * `name` (pops it).  Only for the engine's own functions (require). */
void vd_sandbox_set_base(lua_State *L, const char *name);

#endif
