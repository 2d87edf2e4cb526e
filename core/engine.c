/*
 * engine.c - loading a bundle's policies and deciding requests.
 *
 * Owns one sandbox per engine and, in its registry, two tables:
 *   policies[kind][region-with-file] = the table that file returned
 *   dispatch[kind][region]           = { decide function, policy region,
 *                                        region, kind, bundle revision,
 *                                        the deciding file's path }
 * for every region code the bundle accepts (regions.lua plus every
 * directory under regions/) and "national".  The dispatch table is built
 * once at load, so a request costs two table look-ups before the policy runs.
 *
 * A regional file gets a fresh copy of its parent policy from parent(): the
 * parent chain is executed again for it, so a region that changes what it
 * inherited never changes the parent's own policy.
 *
 * Runs on the thread that owns the engine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <yajl_tree.h>

#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/metrics.h"
#include "verdict/watchdog.h"
#include "verdict/wire.h"

struct vd_engine {
  vd_sandbox_t sb;
  vd_bundle_t *bundle;
  vd_limits_t lim;
  int ref_policies;
  int ref_dispatch;
  int frozen;   /* the bundle is loaded and frozen (load_all): require()
                 * keeps no module it had not loaded */
  char **regions;
  size_t nregions;
  char **kinds;
  size_t nkinds;
  vd_buf_t err; /* scratch for messages */
  /* facts from history (see engine.h) */
  vd_facts_fn facts_fn;
  void *facts_ud;
  const char *replay_facts; /* for the current decision only */
  yajl_val replay_tree;     /* replay_facts parsed, on the first question */
  int replay_parsed;        /*   (1 once tried, whether or not it parsed) */
  int replaying;
  int ref_history;          /* registry ref: the read-only ctx.history */
  vd_decision_t *current;   /* the decision being made */
  /* fast attempts (watchdog.h): NULL to always count */
  vd_watch_slot_t *watch;
  vd_metrics_shard_t *metrics; /* decide requests counted here, or NULL */
  vd_buf_t *explain;        /* vd_engine_set_explain(), or NULL */
  /* The dispatch entry evaluate() found last, for its kind and region: the
   * dispatch table does not change once loaded (it is frozen through a
   * holder and read raw only here), so the next request for the same kind
   * and region finds the same entry without two look-ups by name. */
  int have_last;            /* the three names below are set */
  char last_kind[32], last_region[32];
  char last_policy_region[32]; /* the entry's (vd_decision_t's size) */
  int ref_last_entry;       /* registry ref: the entry, its slot made at
                             * load so that a decision allocates nothing */
  const char *last_file;    /* the entry's path string (slot 6), which the
                             * entry keeps alive */
  /* While the policy's decide() runs unprotected (evaluate()): the deciding
   * file, for decide_attempt() to report the policy's error with; else
   * NULL. */
  const char *policy_file;
  /* Trace entries check_trace() found well formed at an earlier decision,
   * by address (trace_ok_slot()): only those vd_json_trace_entry_known()
   * vouched for, which are frozen tables' proxies.  A proxy lives as long
   * as the state (the freeze's map holds it) and cannot change, so an
   * address here is always that same well-formed entry.  Direct-mapped:
   * a slot taken by another entry only sends this one to the JSON cache's
   * look-up again. */
  const void *trace_ok[32];
};

/* A dispatch entry (dispatch[kind][region], load_all()): 1 decide, 2 the
 * policy region, 3 the region, 4 the kind, 5 the revision, 6 the deciding
 * file's path; from E_KEYS, the names of the context's fields evaluate()
 * sets, as strings (entry_keys). */
enum { E_KEYS = 7, E_AT = E_KEYS, E_REGION, E_POLICY_REGION, E_KIND,
       E_REVISION, E_COUNT = E_REVISION };
static const char *const entry_keys[] = {"at", "region", "policy_region",
                                         "kind", "revision"};

static unsigned trace_ok_slot(const void *p) {
  uintptr_t a = (uintptr_t)p;
  return (unsigned)((a >> 4) ^ (a >> 9)) & 31u;
}

/* ------------------------------------------------------------------------
 * Decisions
 * ------------------------------------------------------------------------ */

void vd_decision_init(vd_decision_t *d) {
  memset(d, 0, sizeof *d);
#define INIT_(name) vd_buf_init(&d->name);
  VD_DECISION_BUFS(INIT_)
#undef INIT_
}

void vd_decision_reset(vd_decision_t *d) {
  d->code = 0;
  d->op = VD_OP_DECIDE;
  d->op_name[0] = d->kind[0] = d->region[0] = d->policy_region[0] = '\0';
  d->at[0] = '\0';
  d->at_ms = 0;
  d->at_stamped = 0;
  d->facts_now = 0;
  d->recounted = 0;
  d->elapsed_ns = 0;
#define RESET_(name) vd_buf_reset(&d->name);
  VD_DECISION_BUFS(RESET_)
#undef RESET_
  vd_buf_adds(&d->id, "null");
}

void vd_decision_release(vd_decision_t *d) {
#define RELEASE_(name) vd_buf_release(&d->name);
  VD_DECISION_BUFS(RELEASE_)
#undef RELEASE_
}

static int fail(vd_decision_t *d, int code, const char *path, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

static int fail(vd_decision_t *d, int code, const char *path, const char *fmt,
                ...) {
  va_list ap;
  va_start(ap, fmt);
  vd_decision_vfail(d, code, path, fmt, ap);
  va_end(ap);
  return code;
}

int vd_decision_vfail(vd_decision_t *d, int code, const char *path,
                      const char *fmt, va_list ap) {
  d->code = code;
  vd_buf_reset(&d->message);
  vd_buf_vaddf(&d->message, fmt, ap);
  vd_buf_reset(&d->path);
  if (path)
    vd_buf_adds(&d->path, path);
  return code;
}

int vd_decision_fail(vd_decision_t *d, int code, const char *path,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vd_decision_vfail(d, code, path, fmt, ap);
  va_end(ap);
  return code;
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

static vd_engine_t *engine_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static int valid_region(const char *r) {
  size_t n = strlen(r), i;
  int seg = 0;
  if (n == 0 || n > 31)
    return 0;
  for (i = 0; i < n; i++) {
    char c = r[i];
    if (c == '-') {
      if (seg == 0)
        return 0;
      seg = 0;
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      seg++;
    } else {
      return 0;
    }
  }
  return seg > 0;
}

/* Append NUL-terminated s at *p, never past end (which stays for NUL). */
static void put(char **p, char *end, const char *s) {
  while (*s && *p < end)
    *(*p)++ = *s++;
}

/* Every decision names its file (for messages), so no snprintf here; on
 * the caller's stack, it cannot leak when Lua raises. */
void vd_engine_policy_path(char out[VD_PATH_MAX], const char *region,
                           const char *kind) {
  char *p = out, *end = out + VD_PATH_MAX - 1;
  if (strcmp(region, "national") == 0) {
    put(&p, end, "national/");
  } else {
    put(&p, end, "regions/");
    put(&p, end, region);
    put(&p, end, "/");
  }
  put(&p, end, kind);
  put(&p, end, ".lua");
  *p = '\0';
}

static int has_policy(vd_engine_t *e, const char *region, const char *kind) {
  char p[VD_PATH_MAX];
  vd_engine_policy_path(p, region, kind);
  return vd_bundle_find(e->bundle, p) != NULL;
}

/* The nearest ancestor of REGION (exclusive) with a file for KIND, written
 * into out; "national" when none has. */
static void parent_region(vd_engine_t *e, const char *region, const char *kind,
                          char out[32]) {
  char tmp[32];
  char *dash;
  if (strcmp(region, "national") == 0) {
    out[0] = '\0';
    return;
  }
  snprintf(tmp, sizeof tmp, "%s", region);
  while ((dash = strrchr(tmp, '-')) != NULL) {
    *dash = '\0';
    if (has_policy(e, tmp, kind)) {
      snprintf(out, 32, "%s", tmp);
      return;
    }
  }
  snprintf(out, 32, "national");
}

/* The region whose file decides KIND for REGION (itself included). */
static void deciding_region(vd_engine_t *e, const char *region,
                            const char *kind, char out[32]) {
  if (strcmp(region, "national") == 0 || has_policy(e, region, kind))
    snprintf(out, 32, "%s", region);
  else
    parent_region(e, region, kind, out);
}

/* Run bundle file PATH as a chunk with its own environment, which gets
 * `parent` when parent_region is given.  Pushes the chunk's first result;
 * raises on any error.  The environment is locked afterwards. */
static void run_file(lua_State *L, vd_engine_t *e, const char *path,
                     int with_parent, const char *kind, const char *parent_r);

static int l_parent(lua_State *L) {
  vd_engine_t *e = engine_of(L);
  const char *region = lua_tostring(L, lua_upvalueindex(2));
  const char *kind = lua_tostring(L, lua_upvalueindex(3));
  char pr[32], path[VD_PATH_MAX];
  if (!region || !*region)
    return luaL_error(L, "the national policy has no parent");
  vd_engine_policy_path(path, region, kind);
  parent_region(e, region, kind, pr);
  run_file(L, e, path, 1, kind, pr);
  return 1;
}

static void run_file(lua_State *L, vd_engine_t *e, const char *path,
                     int with_parent, const char *kind, const char *parent_r) {
  const vd_bundle_file_t *f = vd_bundle_find(e->bundle, path);
  int env;
  if (!f)
    luaL_error(L, "%s: no such file in the bundle", path);
  vd_sandbox_new_env(L);
  env = lua_gettop(L);
  if (with_parent) {
    lua_pushlightuserdata(L, e);
    lua_pushstring(L, parent_r ? parent_r : "");
    lua_pushstring(L, kind);
    lua_pushcclosure(L, l_parent, 3);
    lua_setfield(L, env, "parent");
  }
  lua_pushfstring(L, "@%s", path);
  if (vd_sandbox_load(L, lua_tostring(L, -1), f->data, f->len, env) !=
      LUA_OK)
    lua_error(L);
  lua_remove(L, -2); /* the name */
  lua_call(L, 0, 1);
  vd_sandbox_lock_env(L, env);
  lua_remove(L, env);
}

/* require(name): modules of the bundle only; "lib.rules" is lib/rules.lua. */
static int l_require(lua_State *L) {
  vd_engine_t *e = engine_of(L);
  size_t n, i;
  const char *name = luaL_checklstring(L, 1, &n);
  char path[216];
  lua_settop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "vd.loaded");
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 2) != LUA_TNIL) {
    if (lua_type(L, -1) == LUA_TLIGHTUSERDATA)
      return luaL_error(L, "module '%s' requires itself (a require loop)",
                        name);
    return 1;
  }
  lua_pop(L, 1);
  if (n == 0 || n > 200)
    return luaL_error(L, "require: bad module name");
  for (i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          (c == '.' && i > 0 && i + 1 < n && name[i - 1] != '.')))
      return luaL_error(L, "require: bad module name '%s'", name);
  }
  for (i = 0; i < n; i++)
    path[i] = name[i] == '.' ? '/' : name[i];
  memcpy(path + n, ".lua", 5);
  lua_pushstring(L, path);
  if (!vd_bundle_find(e->bundle, lua_tostring(L, -1)))
    return luaL_error(L, "module '%s' not found in the bundle (no file %s)",
                      name, lua_tostring(L, -1));
  /* Once the bundle is loaded and frozen, a module no file required as
   * it loaded (lib/calendar.lua probes a region's files while deciding)
   * runs afresh for each require and is not kept: kept, it would be a
   * writable table the next decision's require() returns, and the first
   * decision to ask would pay for everyone's load.  (A require loop here
   * ends at Lua's C stack limit, a policy_error.) */
  if (e->frozen) {
    run_file(L, e, lua_tostring(L, 3), 0, NULL, NULL);
    if (lua_isnil(L, -1))
      lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushvalue(L, 1);
  lua_pushlightuserdata(L, e); /* marks "loading" */
  lua_rawset(L, 2);
  run_file(L, e, lua_tostring(L, 3), 0, NULL, NULL);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, 2);
  return 1;
}

static int add_name(char ***list, size_t *n, const char *s) {
  size_t i;
  char **l;
  for (i = 0; i < *n; i++)
    if (strcmp((*list)[i], s) == 0)
      return 0;
  l = realloc(*list, (*n + 1) * sizeof *l);
  if (!l)
    return VD_ENOMEM;
  *list = l;
  l[*n] = strdup(s);
  if (!l[*n])
    return VD_ENOMEM;
  (*n)++;
  return 0;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_policy_shape(lua_State *L, const char *path) {
  if (!lua_istable(L, -1))
    luaL_error(L, "%s: must return a policy table, got %s", path,
               luaL_typename(L, -1));
  lua_getfield(L, -1, "decide");
  if (!lua_isfunction(L, -1))
    luaL_error(L, "%s: the policy table has no decide function", path);
  lua_pop(L, 1);
}

/* The whole load, under lua_pcall: upvalue 1 is the engine. */
static int load_all(lua_State *L) {
  vd_engine_t *e = engine_of(L);
  vd_bundle_t *b = e->bundle;
  size_t i, k, r;
  char path[VD_PATH_MAX];
  int policies, dispatch, listed;

  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "vd.loaded");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_require, 1);
  vd_sandbox_set_base(L, "require");

  /* Kinds and region directories, from the file list. */
  for (i = 0; i < vd_bundle_count(b); i++) {
    const char *p = vd_bundle_file(b, i)->path;
    const char *s, *dot;
    char name[64];
    if (strncmp(p, "national/", 9) == 0 && !strchr(p + 9, '/')) {
      s = p + 9;
      dot = strrchr(s, '.');
      if (!dot || strcmp(dot, ".lua") != 0 || (size_t)(dot - s) >= 32 ||
          dot == s)
        continue;
      if (dot - s > 5 && strncmp(dot - 5, "_test", 5) == 0)
        continue;
      snprintf(name, sizeof name, "%.*s", (int)(dot - s), s);
      if (add_name(&e->kinds, &e->nkinds, name))
        return luaL_error(L, "out of memory");
    } else if (strncmp(p, "regions/", 8) == 0 && strchr(p + 8, '/')) {
      s = p + 8;
      dot = strchr(s, '/');
      snprintf(name, sizeof name, "%.*s", (int)(dot - s), s);
      if (!valid_region(name))
        return luaL_error(L, "regions/%s: '%s' is not a region code "
                             "(like GD or GD-SZ: capitals and digits, "
                             "segments joined by '-')", name, name);
      if (add_name(&e->regions, &e->nregions, name))
        return luaL_error(L, "out of memory");
    }
  }
  if (e->nkinds == 0)
    return luaL_error(L, "national/: no policy files (national/<kind>.lua)");

  /* regions.lua: every code the bundle accepts; listed[code] = true. */
  lua_newtable(L);
  listed = lua_gettop(L);
  if (vd_bundle_find(b, "regions.lua")) {
    lua_Integer j, n;
    run_file(L, e, "regions.lua", 0, NULL, NULL);
    if (!lua_istable(L, -1))
      return luaL_error(L, "regions.lua: must return a list of region codes");
    n = (lua_Integer)lua_rawlen(L, -1);
    for (j = 1; j <= n; j++) {
      const char *code;
      lua_rawgeti(L, -1, j);
      code = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      if (!code || !valid_region(code))
        return luaL_error(L, "regions.lua: entry %d is not a region code",
                          (int)j);
      if (add_name(&e->regions, &e->nregions, code))
        return luaL_error(L, "out of memory");
      lua_pushboolean(L, 1);
      lua_rawset(L, listed);
    }
    lua_pop(L, 1);
  }
  /* A directory of a code regions.lua does not list is a region by its
   * policy files alone: the libraries give it nothing else (no calendar,
   * no settings), so any other file there would be silently ignored.
   * Refuse it instead. */
  for (i = 0; i < vd_bundle_count(b); i++) {
    const char *p = vd_bundle_file(b, i)->path, *s, *slash;
    if (strncmp(p, "regions/", 8) != 0 || !(slash = strchr(p + 8, '/')))
      continue;
    s = slash + 1;
    lua_pushlstring(L, p + 8, (size_t)(slash - (p + 8)));
    if (strchr(s, '/') && lua_rawget(L, listed) == LUA_TNIL) {
      lua_pushlstring(L, p + 8, (size_t)(slash - (p + 8)));
      return luaL_error(L, "%s: region %s is not in regions.lua, so this "
                           "file would be ignored; list %s there",
                        p, lua_tostring(L, -1), lua_tostring(L, -1));
    }
    lua_settop(L, listed);
  }
  lua_pop(L, 1); /* listed */
  qsort(e->kinds, e->nkinds, sizeof *e->kinds, str_cmp);
  if (e->nregions)
    qsort(e->regions, e->nregions, sizeof *e->regions, str_cmp);

  /* Load each file once, then resolve every region. */
  lua_newtable(L);
  policies = lua_gettop(L);
  lua_newtable(L);
  dispatch = lua_gettop(L);
  for (k = 0; k < e->nkinds; k++) {
    const char *kind = e->kinds[k];
    lua_newtable(L); /* policies[kind] */
    for (r = 0; r <= e->nregions; r++) {
      const char *region = r == 0 ? "national" : e->regions[r - 1];
      char pr[32];
      if (r > 0 && !has_policy(e, region, kind))
        continue;
      vd_engine_policy_path(path, region, kind);
      parent_region(e, region, kind, pr);
      run_file(L, e, path, 1, kind, r == 0 ? NULL : pr);
      check_policy_shape(L, path);
      lua_setfield(L, -2, region);
    }
    lua_newtable(L); /* dispatch[kind] */
    for (r = 0; r <= e->nregions; r++) {
      const char *region = r == 0 ? "national" : e->regions[r - 1];
      char pr[32];
      deciding_region(e, region, kind, pr);
      lua_createtable(L, E_COUNT, 0);
      lua_getfield(L, -3, pr);
      lua_getfield(L, -1, "decide");
      lua_rawseti(L, -3, 1);
      lua_pop(L, 1);
      lua_pushstring(L, pr);
      lua_rawseti(L, -2, 2);
      /* the context's strings, made once rather than per decision */
      lua_pushstring(L, region);
      lua_rawseti(L, -2, 3);
      lua_pushstring(L, kind);
      lua_rawseti(L, -2, 4);
      lua_pushstring(L, vd_bundle_revision(e->bundle));
      lua_rawseti(L, -2, 5);
      vd_engine_policy_path(path, pr, kind); /* for its errors */
      lua_pushstring(L, path);
      lua_rawseti(L, -2, 6);
      /* the keys evaluate() reads and writes raw (no string looked up by
       * its C text per decision) */
      for (i = 0; i < E_COUNT - E_KEYS + 1; i++) {
        lua_pushstring(L, entry_keys[i]);
        lua_rawseti(L, -2, E_KEYS + i);
      }
      lua_setfield(L, -2, region);
    }
    lua_setfield(L, dispatch, kind);
    lua_setfield(L, policies, kind);
  }
  vd_sandbox_refuse_state(L, policies);
  /* Freeze what the policies can reach.  The modules require() returns
   * at decision time are frozen in place; the policies and dispatch
   * tables through a holder, so that they stay as loaded for the callers
   * that read them raw (vd_engine_push_policy()). */
  lua_getfield(L, LUA_REGISTRYINDEX, "vd.loaded");
  vd_sandbox_freeze(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, policies);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, dispatch);
  lua_rawseti(L, -2, 2);
  vd_sandbox_freeze(L, -1);
  lua_pop(L, 1);
  e->frozen = 1;
  lua_pushvalue(L, policies);
  e->ref_policies = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, dispatch);
  e->ref_dispatch = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0); /* the slot of evaluate()'s last entry */
  e->ref_last_entry = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int vd_engine_new(vd_bundle_t *b, const vd_limits_t *lim, vd_engine_t **out,
                  vd_buf_t *err) {
  static const vd_limits_t defaults = VD_LIMITS_DEFAULT;
  vd_engine_t *e;
  lua_State *L;
  int rc, status, tripped;

  *out = NULL;
  e = calloc(1, sizeof *e);
  if (!e)
    return VD_ENOMEM;
  e->lim = lim ? *lim : defaults;
  e->bundle = b;
  vd_bundle_ref(b);
  vd_buf_init(&e->err);
  rc = vd_sandbox_init(&e->sb, err);
  if (rc)
    goto fail_sandbox;
  L = e->sb.L;
  vd_sandbox_arm(&e->sb, e->lim.load_budget, e->lim.load_mem);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, load_all, 1);
  status = lua_pcall(L, 0, 0, 0);
  tripped = vd_sandbox_disarm(&e->sb);
  e->sb.limit = 0;
  if (status != LUA_OK) {
    vd_buf_reset(err);
    if (tripped == VD_EPOLICY_TIMEOUT)
      vd_buf_addf(err, "%s (loading the bundle ran past %lu instructions)",
                  lua_tostring(L, -1), e->lim.load_budget);
    else if (status == LUA_ERRMEM)
      vd_buf_addf(err, "loading the bundle ran out of memory (limit %zu MiB)",
                  e->lim.load_mem >> 20);
    else
      vd_buf_adds(err, lua_type(L, -1) == LUA_TSTRING
                           ? lua_tostring(L, -1)
                           : "loading the bundle raised a non-string error");
    rc = status == LUA_ERRMEM ? VD_EPOLICY_MEMORY : VD_EPOLICY_ERROR;
    goto fail_load;
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  vd_sandbox_seal(&e->sb, e->lim.mem_cap);
  *out = e;
  return 0;

fail_load:
  vd_sandbox_release(&e->sb);
fail_sandbox:
  e->sb.L = NULL;
  vd_engine_free(e);
  return rc;
}

void vd_engine_free(vd_engine_t *e) {
  size_t i;
  if (!e)
    return;
  vd_sandbox_release(&e->sb);
  yajl_tree_free(e->replay_tree);
  for (i = 0; i < e->nregions; i++)
    free(e->regions[i]);
  free(e->regions);
  for (i = 0; i < e->nkinds; i++)
    free(e->kinds[i]);
  free(e->kinds);
  vd_buf_release(&e->err);
  vd_bundle_unref(e->bundle);
  free(e);
}

vd_bundle_t *vd_engine_bundle(const vd_engine_t *e) { return e->bundle; }
vd_sandbox_t *vd_engine_sandbox(vd_engine_t *e) { return &e->sb; }
size_t vd_engine_region_count(const vd_engine_t *e) { return e->nregions; }
const char *vd_engine_region(const vd_engine_t *e, size_t i) {
  return i < e->nregions ? e->regions[i] : NULL;
}
size_t vd_engine_kind_count(const vd_engine_t *e) { return e->nkinds; }
const char *vd_engine_kind(const vd_engine_t *e, size_t i) {
  return i < e->nkinds ? e->kinds[i] : NULL;
}

const char *vd_engine_policy_region(vd_engine_t *e, const char *kind,
                                    const char *region) {
  lua_State *L = e->sb.L;
  const char *pr = NULL;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref_dispatch);
  if (lua_getfield(L, -1, kind) == LUA_TTABLE &&
      lua_getfield(L, -1, region) == LUA_TTABLE) {
    size_t i;
    lua_rawgeti(L, -1, 2);
    /* return a pointer that outlives the stack: the kinds/regions lists */
    for (i = 0; i < e->nregions; i++)
      if (strcmp(e->regions[i], lua_tostring(L, -1)) == 0)
        pr = e->regions[i];
    if (!pr && strcmp(lua_tostring(L, -1), "national") == 0)
      pr = "national";
  }
  lua_settop(L, top);
  return pr;
}

int vd_engine_push_policy(vd_engine_t *e, const char *kind,
                          const char *region_with_file) {
  lua_State *L = e->sb.L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref_policies);
  if (lua_getfield(L, -1, kind) != LUA_TTABLE ||
      lua_getfield(L, -1, region_with_file) != LUA_TTABLE) {
    lua_settop(L, top);
    return VD_ENOT_FOUND;
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
  return 0;
}

/* ------------------------------------------------------------------------
 * Deciding
 * ------------------------------------------------------------------------ */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Push t[name] of the table at idx, read raw: the policy's values are
 * inspected without running any of its metamethods (which could raise, or
 * answer differently the second time). */
static int raw_field(lua_State *L, int idx, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, idx);
}

/* The string at idx, or NULL for any other type (no number is turned
 * into a string in place, no __tostring runs). */
static const char *raw_str(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
}

/* The `errors` list of the error object at idx ({path, message} each,
 * read raw; entries of another shape are left out), as JSON in
 * d->errors. */
static void error_list(lua_State *L, int idx, vd_decision_t *d) {
  lua_Integer i, n;
  int first = 1;
  if (raw_field(L, idx, "errors") == LUA_TTABLE) {
    int list = lua_gettop(L);
    vd_sandbox_unfreeze(L, list);
    n = (lua_Integer)lua_rawlen(L, list);
    vd_buf_addc(&d->errors, '[');
    for (i = 1; i <= n; i++) {
      const char *path, *msg;
      lua_rawgeti(L, list, i);
      if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        continue;
      }
      vd_sandbox_unfreeze(L, -1);
      raw_field(L, lua_gettop(L), "path");
      raw_field(L, lua_gettop(L) - 1, "message");
      path = raw_str(L, -2);
      msg = raw_str(L, -1);
      if (path && msg) {
        vd_buf_adds(&d->errors, first ? "{\"path\":" : ",{\"path\":");
        vd_buf_add_json_str(&d->errors, path, strlen(path));
        vd_buf_adds(&d->errors, ",\"message\":");
        vd_buf_add_json_str(&d->errors, msg, strlen(msg));
        vd_buf_addc(&d->errors, '}');
        first = 0;
      }
      lua_pop(L, 3);
    }
    vd_buf_addc(&d->errors, ']');
    if (first)
      vd_buf_reset(&d->errors);
  }
  lua_pop(L, 1);
}

/* A table raised as {code="bad_input", path=..., message=...[, errors=
 * {{path=..., message=...}, ...}]}. */
static int error_object(lua_State *L, int idx, vd_decision_t *d,
                        const char *file) {
  const char *code, *path, *msg;
  idx = lua_absindex(L, idx);
  vd_sandbox_unfreeze(L, idx); /* a table loaded with the bundle */
  raw_field(L, idx, "code");
  raw_field(L, idx, "path");
  raw_field(L, idx, "message");
  code = raw_str(L, -3);
  path = raw_str(L, -2);
  msg = raw_str(L, -1);
  if (code && strcmp(code, "bad_input") == 0) {
    fail(d, VD_EBAD_INPUT, path, "%s", msg ? msg : "invalid input");
    error_list(L, idx, d);
  } else
    fail(d, VD_EPOLICY_ERROR, NULL, "%s: the policy raised an error object%s%s",
         file, msg ? ": " : "", msg ? msg : "");
  lua_pop(L, 3);
  return d->code;
}

static int check_trace(vd_engine_t *e, lua_State *L, int idx,
                       vd_decision_t *d, const char *file) {
  lua_Integer i, n;
  if (lua_type(L, idx) != LUA_TTABLE)
    return fail(d, VD_EPOLICY_ERROR, NULL,
                "%s: decide() must return a trace list as its second "
                "value, got %s", file, luaL_typename(L, idx));
  vd_sandbox_unfreeze(L, idx);
  n = (lua_Integer)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    int ok;
    const void *p;
    unsigned slot;
    lua_rawgeti(L, idx, i);
    /* a rule's entry loaded with the bundle, checked at an earlier
     * decision (json.h): frozen, so as it was; found by address first */
    p = lua_topointer(L, -1);
    slot = trace_ok_slot(p);
    if (p && e->trace_ok[slot] == p) {
      lua_pop(L, 1);
      continue;
    }
    if (vd_json_trace_entry_known(L, -1)) {
      e->trace_ok[slot] = p;
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -1);
    vd_sandbox_unfreeze(L, -1); /* a rule's own entry, say */
    ok = lua_istable(L, -1);
    if (ok) {
      /* raw, as the encoder will read them: a metatable cannot make an
       * entry look right here and encode as something else */
      ok = raw_field(L, lua_gettop(L), "rule") == LUA_TSTRING &&
           raw_field(L, lua_gettop(L) - 1, "basis") == LUA_TSTRING;
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (ok)
      vd_json_trace_entry_note(L, -1);
    lua_pop(L, 1);
    if (!ok)
      return fail(d, VD_EPOLICY_ERROR, NULL,
                  "%s: trace[%d] must be {rule = <id>, basis = <text>}", file,
                  (int)i);
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * ctx.history
 * ------------------------------------------------------------------------ */

/* Drop the parsed facts of the decision replayed last. */
static void replay_facts_release(vd_engine_t *e) {
  yajl_tree_free(e->replay_tree);
  e->replay_tree = NULL;
  e->replay_parsed = 0;
}

/* The answer the decision being replayed recorded for (QUERY, A, B, SPAN):
 * 1 with *count set, or 0 when its facts do not hold it.  The facts are
 * the array history_query() writes, [{"args":[a,b,span],"query":q,
 * "value":n},...], parsed once per decision into a C tree. */
static int recorded_fact(vd_engine_t *e, const char *query, const char *a,
                         const char *b, lua_Integer span, int64_t *count) {
  static const char *args_key[] = {"args", NULL};
  static const char *query_key[] = {"query", NULL};
  static const char *value_key[] = {"value", NULL};
  size_t i;
  if (!e->replay_parsed && e->replay_facts) {
    e->replay_tree = yajl_tree_parse(e->replay_facts, NULL, 0);
    e->replay_parsed = 1;
  }
  if (!e->replay_tree || !YAJL_IS_ARRAY(e->replay_tree))
    return 0;
  for (i = 0; i < e->replay_tree->u.array.len; i++) {
    yajl_val f = e->replay_tree->u.array.values[i];
    yajl_val args = yajl_tree_get(f, args_key, yajl_t_array);
    yajl_val q = yajl_tree_get(f, query_key, yajl_t_string);
    yajl_val v = yajl_tree_get(f, value_key, yajl_t_number);
    yajl_val *x;
    if (!args || !q || !v || !YAJL_IS_INTEGER(v) || args->u.array.len != 3)
      continue;
    x = args->u.array.values;
    if (strcmp(q->u.string, query) == 0 && YAJL_IS_STRING(x[0]) &&
        strcmp(x[0]->u.string, a) == 0 && YAJL_IS_STRING(x[1]) &&
        strcmp(x[1]->u.string, b) == 0 && YAJL_IS_INTEGER(x[2]) &&
        YAJL_GET_INTEGER(x[2]) == span) {
      *count = YAJL_GET_INTEGER(v);
      return 1;
    }
  }
  return 0;
}

/* Answer one query, live or from the recorded facts, and note it. */
static int history_query(lua_State *L, const char *query, lua_Integer unit_ms,
                         lua_Integer max_span) {
  vd_engine_t *e = engine_of(L);
  vd_decision_t *d = e->current;
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  lua_Integer span = luaL_checkinteger(L, 3);
  int64_t count = 0;
  vd_buf_t entry = VD_BUF_INIT;
  luaL_argcheck(L, span >= 1 && span <= max_span, 3, "span out of range");
  vd_buf_adds(&entry, "{\"args\":[");
  vd_buf_add_json_str(&entry, a, strlen(a));
  vd_buf_addc(&entry, ',');
  vd_buf_add_json_str(&entry, b, strlen(b));
  vd_buf_addf(&entry, ",%lld],\"query\":\"%s\",\"value\":", (long long)span,
              query);
  if (e->replaying) {
    if (recorded_fact(e, query, a, b, span, &count)) {
      /* as recorded */
    } else if (!e->facts_fn || !d) {
      vd_buf_release(&entry);
      return luaL_error(L, "ctx.history.%s: this question was not asked when "
                           "the decision was made (no recorded fact)", query);
    } else if (e->facts_fn(e->facts_ud, query, a, b,
                           d->at_ms - span * unit_ms, d->at_ms, &count) != 0) {
      vd_buf_release(&entry);
      return luaL_error(L, "ctx.history.%s: not recorded, and the history "
                           "database did not answer", query);
    } else {
      d->facts_now = 1; /* a candidate's new question, answered today */
    }
  } else if (!d || e->facts_fn(e->facts_ud, query, a, b,
                               d->at_ms - span * unit_ms, d->at_ms,
                               &count) != 0) {
    vd_buf_release(&entry);
    return luaL_error(L, "ctx.history.%s: the history database did not "
                         "answer", query);
  }
  if (d) {
    vd_buf_addf(&entry, "%lld}", (long long)count);
    vd_buf_addc(&d->facts, d->facts.len ? ',' : '[');
    vd_buf_add(&d->facts, entry.data, entry.len);
  }
  vd_buf_release(&entry);
  lua_pushinteger(L, (lua_Integer)count);
  return 1;
}

/* One Lua function per question of VD_HISTORY_FACTS (history.h):
 * (a, b, span) -> count. */
#define FACT_FN_(E, name, unit_ms, max_span)                                 \
  static int l_##name(lua_State *L) {                                        \
    return history_query(L, #name, unit_ms, max_span);                       \
  }
VD_HISTORY_FACTS(FACT_FN_)
#undef FACT_FN_

static int make_history_table(lua_State *L) {
  static const luaL_Reg fns[] = {
#define FACT_REG_(E, name, unit_ms, max_span) {#name, l_##name},
      VD_HISTORY_FACTS(FACT_REG_)
#undef FACT_REG_
      {NULL, NULL},
  };
  vd_engine_t *e = lua_touserdata(L, 1);
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, fns, 1); /* each a closure over e */
  vd_sandbox_push_proxy(L, -1);
  e->ref_history = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static void ensure_history_table(vd_engine_t *e) {
  lua_State *L = e->sb.L;
  if (e->ref_history)
    return;
  lua_pushcfunction(L, make_history_table);
  lua_pushlightuserdata(L, e);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    e->ref_history = 0;
  }
}

void vd_engine_set_facts(vd_engine_t *e, vd_facts_fn fn, void *ud) {
  e->facts_fn = fn;
  e->facts_ud = ud;
  if (fn)
    ensure_history_table(e);
}

void vd_engine_replay_facts(vd_engine_t *e, const char *facts) {
  ensure_history_table(e);
  replay_facts_release(e);
  e->replaying = 1;
  e->replay_facts = facts;
}

/* Push ctx.at: the request's own string where the decoder made one (AT:
 * its index; a flat request's "at" written plainly stays in the text) and
 * d->at is a copy of it (core/wire.c copies it verbatim), rather than
 * interning the same bytes again; else d->at. */
static void push_at(lua_State *L, int at, const vd_decision_t *d) {
  size_t n;
  const char *s;
  if (!d->at_stamped && at) { /* the request's string (at: its index) */
    s = lua_tolstring(L, at, &n);
    if (n == strlen(d->at) && memcmp(s, d->at, n) == 0) {
      lua_pushvalue(L, at);
      return;
    }
  }
  lua_pushstring(L, d->at);
}

/* The policy's decide() raised (status), its error at the top: the
 * answer, by the limit that tripped or by what was raised. */
static void policy_failed(vd_engine_t *e, lua_State *L, vd_decision_t *d,
                          int status, const char *file) {
  int tripped;
  if (d->facts.len)
    vd_buf_addc(&d->facts, ']');
  tripped = e->sb.tripped;
  if (tripped == VD_EPOLICY_TIMEOUT) {
    fail(d, VD_EPOLICY_TIMEOUT, NULL,
         "%s: the policy ran past its budget of %lu instructions",
         file, e->lim.instr_budget);
  } else if (tripped == VD_EPOLICY_MEMORY || status == LUA_ERRMEM) {
    fail(d, VD_EPOLICY_MEMORY, NULL,
         "%s: the policy passed its memory cap of %zu KiB", file,
         e->lim.mem_cap >> 10);
  } else if (lua_type(L, -1) == LUA_TTABLE) {
    error_object(L, lua_gettop(L), d, file);
  } else if (lua_type(L, -1) == LUA_TSTRING &&
             strstr(lua_tostring(L, -1), ".lua:")) {
    fail(d, VD_EPOLICY_ERROR, NULL, "%s", lua_tostring(L, -1));
  } else if (lua_type(L, -1) == LUA_TSTRING) { /* error(msg, 0): no position */
    fail(d, VD_EPOLICY_ERROR, NULL, "%s: %s", file, lua_tostring(L, -1));
  } else {
    fail(d, VD_EPOLICY_ERROR, NULL, "%s: the policy raised a %s error",
         file, luaL_typename(L, -1));
  }
}

typedef struct policy_failed_args {
  vd_engine_t *e;
  vd_decision_t *d;
  const char *file;
  int status;
} policy_failed_args_t;

/* policy_failed() under lua_pcall (it reads the error raw and can
 * allocate, as it did inside evaluate()'s protected call).  Stack: args,
 * the error. */
static int policy_failed_k(lua_State *L) {
  policy_failed_args_t *a = lua_touserdata(L, 1);
  policy_failed(a->e, L, a->d, a->status, a->file);
  return 0;
}

/* INPUT, AT: the stack indexes of the request's input and "at" string
 * (vd_wire_read_decoded()). */
static int evaluate(vd_engine_t *e, lua_State *L, int input, int at,
                    vd_decision_t *d) {
  int top = lua_gettop(L), status, tripped, explain = 0, entry;
  const char *file; /* the deciding file's path, the entry's string */

  if (e->have_last && strcmp(d->kind, e->last_kind) == 0 &&
      strcmp(d->region, e->last_region) == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref_last_entry);
    entry = lua_gettop(L);
    memcpy(d->policy_region, e->last_policy_region, sizeof d->policy_region);
    file = e->last_file;
    goto found;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref_dispatch);
  if (lua_getfield(L, -1, d->kind) != LUA_TTABLE) {
    lua_settop(L, top);
    return fail(d, VD_EUNKNOWN_KIND, "kind",
                "unknown kind '%s' (this bundle decides %s%s%s%s%s%s%s)",
                d->kind, e->kinds[0], e->nkinds > 1 ? ", " : "",
                e->nkinds > 1 ? e->kinds[1] : "", e->nkinds > 2 ? ", " : "",
                e->nkinds > 2 ? e->kinds[2] : "", e->nkinds > 3 ? ", " : "",
                e->nkinds > 3 ? e->kinds[3] : "");
  }
  if (lua_getfield(L, -1, d->region) != LUA_TTABLE) {
    lua_settop(L, top);
    return fail(d, VD_EUNKNOWN_REGION, "region",
                "unknown region '%s' (not in regions.lua, and no regions/%s/ "
                "directory in the bundle)", d->region, d->region);
  }
  entry = lua_gettop(L);
  lua_rawgeti(L, entry, 2);
  {
    char *p = d->policy_region;
    put(&p, d->policy_region + sizeof d->policy_region - 1,
        lua_tostring(L, -1));
    *p = '\0';
  }
  lua_pop(L, 1);
  lua_rawgeti(L, entry, 6);
  file = lua_tostring(L, -1); /* kept alive by the entry */
  lua_pop(L, 1);
  if (strlen(d->kind) < sizeof e->last_kind &&
      strlen(d->region) < sizeof e->last_region) {
    lua_pushvalue(L, entry);
    lua_rawseti(L, LUA_REGISTRYINDEX, e->ref_last_entry);
    strcpy(e->last_kind, d->kind);
    strcpy(e->last_region, d->region);
    memcpy(e->last_policy_region, d->policy_region,
           sizeof e->last_policy_region);
    e->last_file = file;
    e->have_last = 1;
  }
found:
  lua_rawgeti(L, -1, 1); /* decide */
  lua_pushvalue(L, input);
  /* ctx: its keys and values the entry's strings, stored raw in the order
   * lua_setfield stored them (the same table, slot for slot) */
  lua_createtable(L, 0, 6);
  lua_rawgeti(L, entry, E_AT);
  push_at(L, at, d);
  lua_rawset(L, -3);
  lua_rawgeti(L, entry, E_REGION);
  lua_rawgeti(L, entry, 3);
  lua_rawset(L, -3);
  lua_rawgeti(L, entry, E_POLICY_REGION);
  lua_rawgeti(L, entry, 2);
  lua_rawset(L, -3);
  lua_rawgeti(L, entry, E_KIND);
  lua_rawgeti(L, entry, 4);
  lua_rawset(L, -3);
  lua_rawgeti(L, entry, E_REVISION);
  lua_rawgeti(L, entry, 5);
  lua_rawset(L, -3);
  if ((e->facts_fn || e->replaying) && e->ref_history) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref_history);
    lua_setfield(L, -2, "history");
  }

  if (e->explain) { /* ctx.explain, kept below decide for after the call */
    lua_createtable(L, 32, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "explain");
    lua_rotate(L, -4, 1);
    explain = entry + 1;
  }

  e->current = d;
  /* the input the decoder made for this request: check_input may make
   * it the facts in place (core/sandbox.c, "Schema plans") */
  e->sb.own_input = lua_istable(L, -2) ? lua_topointer(L, -2) : NULL;
  if (explain) {
    status = lua_pcall(L, 2, 2, 0);
  } else {
    /* Unprotected: decide_attempt()'s lua_pcall is the one protected
     * call a decision makes; an error of the policy's reaches it with
     * policy_file set, and it reports it as below (policy_failed()). */
    e->policy_file = file;
    lua_call(L, 2, 2);
    e->policy_file = NULL;
    status = LUA_OK;
  }
  e->sb.own_input = NULL;
  e->current = NULL;
  if (explain) {
    vd_buf_reset(e->explain);
    if (vd_json_encode(L, explain, e->explain, "explain", &e->err) != 0) {
      vd_buf_reset(e->explain);
      vd_buf_adds(e->explain, "[]");
    }
  }
  if (status != LUA_OK) {
    policy_failed(e, L, d, status, file);
    lua_settop(L, top);
    return d->code;
  }
  if (d->facts.len)
    vd_buf_addc(&d->facts, ']');
  tripped = e->sb.tripped;
  /* a result or trace loaded with the bundle */
  vd_sandbox_unfreeze(L, -2);
  vd_sandbox_unfreeze(L, -1);
  if (tripped == VD_EPOLICY_TIMEOUT) {
    fail(d, VD_EPOLICY_TIMEOUT, NULL,
         "%s: the policy ran past its budget of %lu instructions",
         file, e->lim.instr_budget);
  } else if (tripped == VD_EPOLICY_MEMORY) {
    fail(d, VD_EPOLICY_MEMORY, NULL,
         "%s: the policy passed its memory cap of %zu KiB", file,
         e->lim.mem_cap >> 10);
  } else if (!lua_istable(L, -2) || vd_json_marker(L, -2) == 1) {
    fail(d, VD_EPOLICY_ERROR, NULL,
         "%s: decide() must return a result table, got %s", file,
         luaL_typename(L, -2));
  } else if (check_trace(e, L, lua_gettop(L), d, file) == 0) {
    if (vd_json_encode(L, -2, &d->result, "result", &e->err) ||
        vd_json_encode(L, -1, &d->trace, "trace", &e->err)) {
      vd_buf_reset(&d->result); /* no partial result on an error */
      vd_buf_reset(&d->trace);
      fail(d, VD_EPOLICY_ERROR, NULL, "%s: %s", file, e->err.data);
    }
  }
  lua_settop(L, top);
  return d->code;
}

typedef struct decide_args {
  vd_engine_t *e;
  vd_decision_t *d;
  int64_t now_ms;
  const char *line;
  size_t len;
  int decoding; /* the decoder runs: a raise is the request's memory */
  void *parser; /* the decoder's parser, to free after such a raise */
} decide_args_t;

/* The whole decision runs here, under decide_attempt()'s lua_pcall, the
 * decoding of the request included (one protected call a decision, not
 * one for the decoder and one for the rest): decoding, reading the
 * request and building the context can each hit the memory cap.  A raise
 * while decoding is told apart by a->decoding (decide_attempt() answers
 * too_large, as for a request that cannot be decoded within the cap).
 * Stack: args. */
static int decide_k(lua_State *L) {
  decide_args_t *a = lua_touserdata(L, 1);
  const vd_json_notes_t *flat;
  int rc, input, at;
  a->decoding = 1;
  rc = vd_wire_decode_request_in(L, a->line, a->len, a->e->lim.max_depth,
                                 &a->d->message, &a->parser, &flat);
  a->decoding = 0;
  if (rc) { /* bad JSON: the message is the decoder's */
    a->d->code = VD_EBAD_REQUEST;
    return 0;
  }
  /* the request's members are left on the stack, not made a table
   * (json.h, vd_json_decode_flat()): evaluate() gets the input and the
   * time by their stack indexes */
  if (vd_wire_read_decoded(L, flat, a->now_ms, a->d, &input, &at) == 0 &&
      a->d->op == VD_OP_DECIDE)
    evaluate(a->e, L, input, at, a->d); /* its stack: the room the decoder
                                          * made for a flat object's
                                          * values (json.c decode()), of
                                          * which at most half are used */
  return 0;
}

/* One attempt at the whole decision, decoding included; returns the limit
 * that tripped (0 if none), so that a fast attempt can be told apart. */
static int decide_attempt(vd_engine_t *e, const char *line, size_t len,
                          int64_t now_ms, vd_decision_t *d) {
  lua_State *L = e->sb.L;
  int top = lua_gettop(L), status, tripped;
  decide_args_t args;

  vd_decision_reset(d);
  if (!lua_checkstack(L, 32))
    return fail(d, VD_EINTERNAL, NULL, "Lua stack exhausted");
  vd_sandbox_arm(&e->sb, e->lim.instr_budget, e->lim.mem_cap);
  args.e = e;
  args.d = d;
  args.now_ms = now_ms;
  args.line = line;
  args.len = len;
  args.decoding = 0;
  args.parser = NULL;
  lua_pushcfunction(L, decide_k);
  lua_pushlightuserdata(L, &args);
  status = lua_pcall(L, 1, 0, 0);
  if (status != LUA_OK && args.decoding) { /* raised mid-parse */
    vd_json_parser_free(args.parser);
    fail(d, VD_ETOO_LARGE, NULL,
         "the request needs more than the %zu KiB memory cap to decode",
         e->lim.mem_cap >> 10);
  }
  if (status != LUA_OK && e->policy_file) { /* never set while decoding */
    /* the policy's decide() raised (evaluate(): not a protected call) */
    policy_failed_args_t pf;
    pf.e = e;
    pf.d = d;
    pf.file = e->policy_file;
    pf.status = status;
    e->policy_file = NULL;
    e->sb.own_input = NULL;
    e->current = NULL;
    lua_pushcfunction(L, policy_failed_k);
    lua_pushlightuserdata(L, &pf);
    lua_pushvalue(L, -3);
    status = lua_pcall(L, 2, 0, 0);
  }
  if (status != LUA_OK && d->code == 0) {
    if (status == LUA_ERRMEM || e->sb.tripped == VD_EPOLICY_MEMORY)
      fail(d, VD_EPOLICY_MEMORY, NULL,
           "the request and its policy passed the memory cap of %zu KiB",
           e->lim.mem_cap >> 10);
    else if (e->sb.tripped == VD_EPOLICY_TIMEOUT)
      fail(d, VD_EPOLICY_TIMEOUT, NULL,
           "the request ran past its budget of %lu instructions",
           e->lim.instr_budget);
    else
      fail(d, VD_EINTERNAL, NULL, "%s",
           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                          : "engine error");
  }
  tripped = vd_sandbox_disarm(&e->sb);
  e->sb.limit = 0;
  lua_settop(L, top);
  return tripped;
}

/* Fast attempt first when a watchdog watches this engine: no count hook.
 * It is decided again, from the start and counted, if the watchdog
 * interrupted it or if it simply took longer than the budget would at ten
 * instructions a nanosecond (budget / 10 ns), a rate no Lua VM comes near,
 * so an evaluation that would exhaust the budget cannot finish fast; every
 * answer, policy_timeout included, is the counted one. */
int vd_engine_decide(vd_engine_t *e, const char *line, size_t len,
                     int64_t now_ms, vd_decision_t *d) {
  uint64_t t0 = mono_ns();
  int tripped;
  if (e->watch) {
    vd_sandbox_count(&e->sb, 0);
    vd_watch_begin(e->watch, &e->sb);
    tripped = decide_attempt(e, line, len, now_ms, d);
    vd_watch_end(e->watch);
    vd_sandbox_count(&e->sb, 1);
    if (tripped == VD_SANDBOX_RECOUNT ||
        mono_ns() - t0 > e->lim.instr_budget / 10) {
      decide_attempt(e, line, len, now_ms, d);
      d->recounted = 1;
    }
  } else {
    decide_attempt(e, line, len, now_ms, d);
  }
  e->replaying = 0;
  e->replay_facts = NULL;
  replay_facts_release(e);
  d->elapsed_ns = mono_ns() - t0;
  if (e->metrics && d->op == VD_OP_DECIDE)
    vd_metrics_decided(e->metrics, d);
  return d->code;
}

void vd_engine_set_watch(vd_engine_t *e, vd_watch_slot_t *slot) {
  e->watch = slot;
}

void vd_engine_set_metrics(vd_engine_t *e, vd_metrics_shard_t *shard) {
  e->metrics = shard;
}
void vd_engine_set_explain(vd_engine_t *e, vd_buf_t *out) { e->explain = out; }
