/*
 * policytest.c - `verdict test` and `verdict check` (see policytest.h).
 *
 * Test files are data but still Lua, so they are loaded in a sandbox of
 * their own (the harness), never in the engine's state.  Each case becomes
 * a request line that goes through vd_engine_decide() exactly as a request
 * from a socket would; the result comes back as JSON and is decoded into
 * the harness for comparison.  Runs on the caller's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/policytest.h"
#include "verdict/sandbox.h"

/* ------------------------------------------------------------------------
 * Comparing expected with actual (both in the harness state)
 * ------------------------------------------------------------------------ */

static void show(lua_State *L, int idx, vd_buf_t *out) {
  vd_buf_t err = VD_BUF_INIT;
  if (lua_isnone(L, idx) || lua_isnil(L, idx))
    vd_buf_adds(out, "(absent)");
  else if (vd_json_encode(L, idx, out, "value", &err))
    vd_buf_adds(out, "(unprintable)");
  vd_buf_release(&err);
}

static int is_seq(lua_State *L, int idx) {
  lua_Integer n = 0;
  if (vd_json_marker(L, idx) == 1)
    return 1;
  if (vd_json_marker(L, idx) == 2)
    return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    n++;
  }
  return n == (lua_Integer)lua_rawlen(L, idx);
}

/* Match expected (exp) against actual (act); append "path: expected X,
 * got Y" lines to diffs.  Returns the number of mismatches. */
static int match(lua_State *L, int exp, int act, vd_buf_t *path,
                 vd_buf_t *diffs) {
  int bad = 0;
  size_t mark = path->len;
  exp = lua_absindex(L, exp);
  act = lua_absindex(L, act);
  if (lua_type(L, exp) == LUA_TTABLE) {
    if (lua_type(L, act) != LUA_TTABLE) {
      bad = 1;
    } else if (is_seq(L, exp)) {
      lua_Integer i, n = (lua_Integer)lua_rawlen(L, exp);
      if (!is_seq(L, act) || (lua_Integer)lua_rawlen(L, act) != n) {
        bad = 1;
      } else {
        int sub = 0;
        for (i = 1; i <= n; i++) {
          vd_buf_addf(path, "[%lld]", (long long)i);
          lua_rawgeti(L, exp, i);
          lua_rawgeti(L, act, i);
          sub += match(L, -2, -1, path, diffs);
          lua_pop(L, 2);
          path->len = mark;
          path->data[mark] = '\0';
        }
        return sub;
      }
    } else {
      int sub = 0;
      lua_pushnil(L);
      while (lua_next(L, exp)) {
        const char *k;
        if (lua_type(L, -2) != LUA_TSTRING) {
          lua_pop(L, 1);
          continue;
        }
        k = lua_tostring(L, -2);
        vd_buf_addf(path, ".%s", k);
        lua_pushvalue(L, -2);
        lua_rawget(L, act);
        sub += match(L, -2, -1, path, diffs);
        lua_pop(L, 2);
        path->len = mark;
        path->data[mark] = '\0';
      }
      return sub;
    }
  } else if (lua_type(L, exp) == LUA_TNUMBER) {
    bad = lua_type(L, act) != LUA_TNUMBER || !lua_compare(L, exp, act, LUA_OPEQ);
  } else {
    bad = !lua_rawequal(L, exp, act);
  }
  if (bad) {
    vd_buf_addf(diffs, "      %s: expected ", path->data);
    show(L, exp, diffs);
    vd_buf_adds(diffs, ", got ");
    show(L, act, diffs);
    vd_buf_addc(diffs, '\n');
  }
  return bad;
}

/* ------------------------------------------------------------------------
 * Running cases
 * ------------------------------------------------------------------------ */

typedef struct runner {
  vd_engine_t *engine;
  vd_sandbox_t harness;
  FILE *out;
  int quiet;
  vd_test_totals_t t;
  vd_decision_t d;
  vd_buf_t line, diffs, path, err;
  int fired; /* harness registry ref: set of "kind\0rule" fired */
} runner_t;

static const char *opt_str(lua_State *L, int t, const char *k, const char *dflt) {
  const char *s;
  lua_getfield(L, t, k);
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : dflt;
  lua_pop(L, 1); /* the string stays alive in the case table */
  return s;
}

static void note_fired(runner_t *r, const char *kind) {
  lua_State *L = r->harness.L;
  lua_Integer i, n;
  vd_buf_t err = VD_BUF_INIT;
  if (vd_json_decode_protected(L, r->d.trace.data, r->d.trace.len, 0, &err)) {
    vd_buf_release(&err);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fired);
  n = (lua_Integer)lua_rawlen(L, -2);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_getfield(L, -1, "rule");
    lua_pushfstring(L, "%s %s", kind, lua_tostring(L, -1));
    lua_pushboolean(L, 1);
    lua_rawset(L, -5);
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  vd_buf_release(&err);
}

static void fail_case(runner_t *r, const char *file, int i, const char *name,
                      const char *why) {
  r->t.failed++;
  fprintf(r->out, "FAIL %s case %d (%s)\n%s", file, i, name, why);
}

/* Decide the case's request again: the result must be the same bytes.
 * A policy that keeps state between decisions (Lua cannot stop a policy
 * from changing its own upvalues or tables) fails here, before it goes
 * live, instead of at replay. */
static int reproduces(runner_t *r) {
  vd_buf_t first = VD_BUF_INIT;
  int same;
  vd_buf_add(&first, r->d.result.data, r->d.result.len);
  vd_buf_add(&first, r->d.trace.data, r->d.trace.len);
  vd_engine_decide(r->engine, r->line.data, r->line.len, 0, &r->d);
  same = r->d.code == 0 && first.len == r->d.result.len + r->d.trace.len &&
         memcmp(first.data, r->d.result.data, r->d.result.len) == 0 &&
         memcmp(first.data + r->d.result.len, r->d.trace.data,
                r->d.trace.len) == 0;
  vd_buf_release(&first);
  return same;
}

/* Case table at top of harness stack. */
static void run_case(runner_t *r, const char *file, const char *kind,
                     const char *dregion, int i) {
  lua_State *L = r->harness.L;
  int c = lua_gettop(L), rc;
  const char *name = opt_str(L, c, "name", "unnamed");
  const char *region = opt_str(L, c, "region", dregion);
  const char *at = opt_str(L, c, "at", NULL);

  vd_buf_reset(&r->diffs);
  if (!at) {
    fail_case(r, file, i, name,
              "      the case has no 'at' (decisions depend on their time)\n");
    return;
  }
  vd_buf_reset(&r->line);
  vd_buf_addf(&r->line, "{\"id\":%d,\"kind\":", i);
  vd_buf_add_json_str(&r->line, kind, strlen(kind));
  vd_buf_adds(&r->line, ",\"region\":");
  vd_buf_add_json_str(&r->line, region, strlen(region));
  vd_buf_adds(&r->line, ",\"at\":");
  vd_buf_add_json_str(&r->line, at, strlen(at));
  vd_buf_adds(&r->line, ",\"input\":");
  lua_getfield(L, c, "input");
  if (lua_istable(L, -1) && !lua_getmetatable(L, -1)) {
    vd_json_push_marker(L, 'o'); /* an object, so {} is not written as [] */
    lua_setmetatable(L, -2);
  }
  if (!lua_istable(L, -1) ||
      vd_json_encode(L, -1, &r->line, "input", &r->err)) {
    lua_pop(L, 1);
    fail_case(r, file, i, name, "      'input' must be a table of JSON values\n");
    return;
  }
  lua_pop(L, 1);
  vd_buf_addc(&r->line, '}');

  rc = vd_engine_decide(r->engine, r->line.data, r->line.len, 0, &r->d);
  if (lua_getfield(L, c, "expect_error") == LUA_TTABLE) {
    const char *code = opt_str(L, -1, "code", "");
    const char *path = opt_str(L, -1, "path", NULL);
    if (strcmp(code, vd_err_name(rc)) != 0)
      vd_buf_addf(&r->diffs, "      error: expected %s, got %s%s%s\n", code,
                  vd_err_name(rc), rc ? ": " : "", rc ? r->d.message.data : "");
    else if (path && strcmp(path, r->d.path.data ? r->d.path.data : "") != 0)
      vd_buf_addf(&r->diffs, "      error path: expected %s, got %s\n", path,
                  r->d.path.len ? r->d.path.data : "(none)");
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    if (rc) {
      vd_buf_addf(&r->diffs, "      error %s: %s%s%s\n", vd_err_name(rc),
                  r->d.message.data, r->d.path.len ? " at " : "",
                  r->d.path.len ? r->d.path.data : "");
    } else if (!reproduces(r)) {
      vd_buf_addf(&r->diffs,
                  "      the same case decided twice gave two results: the "
                  "policy keeps state between decisions (a file-level local "
                  "or a field of its own table changed by decide), so "
                  "decisions could not be replayed\n");
    } else if (vd_json_decode_protected(L, r->d.result.data, r->d.result.len,
                                        0, &r->err) == 0) {
      int res = lua_gettop(L);
      note_fired(r, kind);
      if (lua_getfield(L, c, "expect") == LUA_TTABLE) {
        vd_buf_reset(&r->path);
        vd_buf_adds(&r->path, "result");
        match(L, -1, res, &r->path, &r->diffs);
      }
      lua_pop(L, 1);
      if (lua_getfield(L, c, "fired") == LUA_TTABLE) {
        lua_Integer k, n = (lua_Integer)lua_rawlen(L, -1);
        vd_buf_t entry = VD_BUF_INIT;
        for (k = 1; k <= n; k++) {
          size_t len;
          const char *id;
          lua_rawgeti(L, -1, k);
          id = lua_tolstring(L, -1, &len);
          /* the whole id, as the trace writes it: "rule":"<id>" (a
           * substring would let "outcome" pass for any outcome rule) */
          vd_buf_reset(&entry);
          if (id) {
            vd_buf_adds(&entry, "\"rule\":");
            vd_buf_add_json_str(&entry, id, len);
          }
          if (id && !strstr(r->d.trace.data, entry.data))
            vd_buf_addf(&r->diffs, "      fired: expected rule %s in the "
                                   "trace %s\n", id, r->d.trace.data);
          lua_pop(L, 1);
        }
        vd_buf_release(&entry);
      }
      lua_pop(L, 2);
    }
  }
  if (r->diffs.len)
    fail_case(r, file, i, name, r->diffs.data);
  else
    r->t.passed++;
  lua_settop(L, c);
}

/* Is path a test file?  Fills kind and default region. */
static int test_file(const char *path, char kind[32], char region[32]) {
  const char *slash = strrchr(path, '/');
  size_t n;
  if (!slash || strlen(slash + 1) <= 9)
    return 0;
  n = strlen(slash + 1);
  if (strcmp(slash + 1 + n - 9, "_test.lua") != 0 || n - 9 >= 32)
    return 0;
  snprintf(kind, 32, "%.*s", (int)(n - 9), slash + 1);
  if (strncmp(path, "national/", 9) == 0 && slash == path + 8) {
    snprintf(region, 32, "national");
    return 1;
  }
  if (strncmp(path, "regions/", 8) == 0 && strchr(path + 8, '/') == slash) {
    snprintf(region, 32, "%.*s", (int)(slash - path - 8), path + 8);
    return 1;
  }
  return 0;
}

static void run_file(runner_t *r, const vd_bundle_file_t *f, const char *kind,
                     const char *region) {
  lua_State *L = r->harness.L;
  lua_Integer i, n;
  int top = lua_gettop(L);
  vd_sandbox_new_env(L);
  lua_pushfstring(L, "@%s", f->path);
  vd_sandbox_arm(&r->harness, 100000000UL, 256u << 20);
  if (vd_sandbox_load(L, lua_tostring(L, -1), f->data, f->len, top + 1) !=
          LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    vd_sandbox_disarm(&r->harness);
    r->t.failed++;
    fprintf(r->out, "FAIL %s\n", lua_tostring(L, -1));
    lua_settop(L, top);
    return;
  }
  vd_sandbox_disarm(&r->harness);
  r->harness.limit = 0;
  if (!lua_istable(L, -1)) {
    r->t.failed++;
    fprintf(r->out, "FAIL %s: must return a list of cases\n", f->path);
    lua_settop(L, top);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_istable(L, -1))
      run_case(r, f->path, kind, region, (int)i);
    else
      fail_case(r, f->path, (int)i, "?", "      a case must be a table\n");
    lua_settop(L, top + 3);
  }
  lua_settop(L, top);
}

/* Print the rules of every policy that no case fired. */
static int list_unfired(lua_State *EL) {
  runner_t *r = lua_touserdata(EL, 1);
  lua_State *HL = r->harness.L;
  size_t k, g;
  for (k = 0; k < vd_engine_kind_count(r->engine); k++) {
    const char *kind = vd_engine_kind(r->engine, k);
    for (g = 0; g <= vd_engine_region_count(r->engine); g++) {
      const char *region = g ? vd_engine_region(r->engine, g - 1) : "national";
      lua_Integer t, nt, j, nr;
      if (vd_engine_push_policy(r->engine, kind, region))
        continue;
      if (lua_getfield(EL, -1, "tables") != LUA_TTABLE) {
        lua_pop(EL, 2);
        continue;
      }
      nt = (lua_Integer)luaL_len(EL, -1);
      for (t = 1; t <= nt; t++) {
        lua_geti(EL, -1, t);
        if (lua_istable(EL, -1) && lua_getfield(EL, -1, "rules") == LUA_TTABLE) {
          nr = (lua_Integer)luaL_len(EL, -1);
          for (j = 1; j <= nr; j++) {
            lua_geti(EL, -1, j);
            if (lua_istable(EL, -1) &&
                lua_getfield(EL, -1, "id") == LUA_TSTRING) {
              const char *id = lua_tostring(EL, -1);
              lua_rawgeti(HL, LUA_REGISTRYINDEX, r->fired);
              lua_pushfstring(HL, "%s %s", kind, id);
              if (lua_rawget(HL, -2) == LUA_TNIL) {
                if (!r->quiet) /* counted all the same */
                  fprintf(r->out, "not fired: %s rule %s (%s)\n", kind, id,
                          region);
                r->t.unfired++;
                lua_pop(HL, 1);
                lua_pushfstring(HL, "%s %s", kind, id);
                lua_pushboolean(HL, 1); /* report each rule once */
                lua_rawset(HL, -3);
                lua_pushnil(HL);
              }
              lua_pop(HL, 2);
            }
            lua_pop(EL, 2);
          }
        }
        lua_pop(EL, 2);
      }
      lua_pop(EL, 2);
    }
  }
  return 0;
}

int vd_policy_run_tests(vd_engine_t *e, FILE *out, int quiet,
                        vd_test_totals_t *totals) {
  runner_t r;
  vd_bundle_t *b = vd_engine_bundle(e);
  vd_sandbox_t *esb = vd_engine_sandbox(e);
  size_t i;
  memset(&r, 0, sizeof r);
  r.engine = e;
  r.out = out;
  r.quiet = quiet;
  vd_decision_init(&r.d);
  if (vd_sandbox_init(&r.harness, &r.err)) {
    fprintf(out, "cannot create the test harness: %s\n", r.err.data);
    return -1;
  }
  lua_newtable(r.harness.L);
  r.fired = luaL_ref(r.harness.L, LUA_REGISTRYINDEX);
  for (i = 0; i < vd_bundle_count(b); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(b, i);
    char kind[32], region[32];
    if (test_file(f->path, kind, region))
      run_file(&r, f, kind, region);
  }
  /* list the rules no case fired, reading the engine's policies under a
   * protected call (their tables may have metamethods) */
  vd_sandbox_arm(esb, 100000000UL, 0);
  lua_pushcfunction(esb->L, list_unfired);
  lua_pushlightuserdata(esb->L, &r);
  if (lua_pcall(esb->L, 1, 0, 0) != LUA_OK) {
    fprintf(out, "cannot list the rules: %s\n", lua_tostring(esb->L, -1));
    lua_pop(esb->L, 1);
  }
  vd_sandbox_disarm(esb);
  fprintf(out, "%u passed, %u failed\n", r.t.passed, r.t.failed);
  if (totals)
    *totals = r.t;
  vd_sandbox_release(&r.harness);
  vd_decision_release(&r.d);
  vd_buf_release(&r.line);
  vd_buf_release(&r.diffs);
  vd_buf_release(&r.path);
  vd_buf_release(&r.err);
  return r.t.failed ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------------ */

typedef struct check_args {
  vd_engine_t *e;
  FILE *out;
  unsigned problems;
} check_args_t;

/* Where was the rule at top defined?  The first function among its fields
 * tells (file and line); else the policy file. */
static void rule_where(lua_State *L, const char *dflt, vd_buf_t *out) {
  lua_Debug ar;
  vd_buf_reset(out);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_isfunction(L, -1)) {
      lua_getinfo(L, ">S", &ar);
      if (ar.source[0] == '@' && ar.linedefined > 0) {
        vd_buf_addf(out, "%s:%d", ar.source + 1, ar.linedefined);
        lua_pop(L, 1);
        return;
      }
      continue;
    }
    lua_pop(L, 1);
  }
  vd_buf_adds(out, dflt);
}

static int check_k(lua_State *L) {
  check_args_t *a = lua_touserdata(L, 1);
  size_t k, g;
  char file[VD_PATH_MAX];
  vd_buf_t where = VD_BUF_INIT;
  for (k = 0; k < vd_engine_kind_count(a->e); k++) {
    const char *kind = vd_engine_kind(a->e, k);
    for (g = 0; g <= vd_engine_region_count(a->e); g++) {
      const char *region = g ? vd_engine_region(a->e, g - 1) : "national";
      lua_Integer t, nt, j, nr;
      int ids;
      if (vd_engine_push_policy(a->e, kind, region))
        continue;
      vd_engine_policy_path(file, region, kind);
      lua_newtable(L);
      ids = lua_gettop(L);
      if (lua_getfield(L, -2, "tables") != LUA_TTABLE ||
          luaL_len(L, -1) == 0) {
        fprintf(a->out, "%s: the policy declares no decision tables "
                        "(policy.tables)\n", file);
        a->problems++;
        lua_pop(L, 3);
        continue;
      }
      nt = (lua_Integer)luaL_len(L, -1);
      for (t = 1; t <= nt; t++) {
        const char *hit, *tname;
        lua_geti(L, -1, t);
        if (!lua_istable(L, -1)) {
          fprintf(a->out, "%s: tables[%d] is not a table\n", file, (int)t);
          a->problems++;
          lua_pop(L, 1);
          continue;
        }
        lua_getfield(L, -1, "name");
        tname = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
        lua_getfield(L, -2, "hit");
        hit = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
        if (!hit || (strcmp(hit, "first") != 0 && strcmp(hit, "collect") != 0)) {
          fprintf(a->out, "%s: table '%s' must declare hit = \"first\" or "
                          "\"collect\"\n", file, tname);
          a->problems++;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, -2, "rules") != LUA_TTABLE) {
          fprintf(a->out, "%s: table '%s' has no rules list\n", file,
                  tname);
          a->problems++;
          lua_pop(L, 3);
          continue;
        }
        nr = (lua_Integer)luaL_len(L, -1);
        for (j = 1; j <= nr; j++) {
          const char *id;
          size_t blen = 0;
          lua_geti(L, -1, j);
          if (!lua_istable(L, -1)) {
            fprintf(a->out, "%s: table '%s' rule %d is not a table\n",
                    file, tname, (int)j);
            a->problems++;
            lua_pop(L, 1);
            continue;
          }
          rule_where(L, file, &where);
          lua_getfield(L, -1, "id");
          id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
          lua_getfield(L, -2, "basis");
          if (lua_type(L, -1) == LUA_TSTRING)
            lua_tolstring(L, -1, &blen);
          if (!id || !*id) {
            fprintf(a->out, "%s: table '%s' rule %d has no id\n", where.data,
                    tname, (int)j);
            a->problems++;
          } else {
            if (blen == 0) {
              fprintf(a->out, "%s: rule '%s' cites no basis\n", where.data, id);
              a->problems++;
            }
            lua_pushvalue(L, -2);
            if (lua_rawget(L, ids) != LUA_TNIL) {
              fprintf(a->out, "%s: rule id '%s' is used twice in %s\n",
                      where.data, id, file);
              a->problems++;
            }
            lua_pop(L, 1);
            lua_pushvalue(L, -2);
            lua_pushboolean(L, 1);
            lua_rawset(L, ids);
          }
          lua_pop(L, 3);
        }
        lua_pop(L, 3);
      }
      lua_pop(L, 3);
    }
  }
  vd_buf_release(&where);
  return 0;
}

unsigned vd_policy_check_structure(vd_engine_t *e, FILE *out) {
  vd_sandbox_t *sb = vd_engine_sandbox(e);
  check_args_t a = {e, out, 0};
  vd_sandbox_arm(sb, 100000000UL, 0);
  lua_pushcfunction(sb->L, check_k);
  lua_pushlightuserdata(sb->L, &a);
  if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
    fprintf(out, "%s\n", lua_tostring(sb->L, -1));
    lua_pop(sb->L, 1);
    a.problems++;
  }
  vd_sandbox_disarm(sb);
  return a.problems;
}

/* Syntax of every .lua file, so an unused file with an error is found too. */
static unsigned check_syntax(vd_bundle_t *b, FILE *out) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT;
  unsigned problems = 0;
  size_t i;
  if (vd_sandbox_init(&sb, &err)) {
    fprintf(out, "%s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  for (i = 0; i < vd_bundle_count(b); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(b, i);
    size_t n = strlen(f->path);
    if (n < 4 || strcmp(f->path + n - 4, ".lua") != 0)
      continue;
    lua_pushfstring(sb.L, "@%s", f->path);
    if (luaL_loadbufferx(sb.L, f->data, f->len, lua_tostring(sb.L, -1), "t") !=
        LUA_OK) {
      fprintf(out, "%s\n", lua_tostring(sb.L, -1));
      problems++;
    }
    lua_settop(sb.L, 0);
  }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  return problems;
}

int vd_policy_test_main(const char *dir, int quiet) {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  if (vd_bundle_load(dir, &b, &err))
    b = NULL;
  if (!b || vd_engine_new(b, NULL, &e, &err)) {
    fprintf(stdout, "%s\n0 passed, 1 failed\n", err.data);
    vd_buf_release(&err);
    if (b)
      vd_bundle_unref(b);
    return 1;
  }
  vd_bundle_unref(b);
  rc = vd_policy_run_tests(e, stdout, quiet, NULL);
  vd_engine_free(e);
  vd_buf_release(&err);
  return rc ? 1 : 0;
}

/* ------------------------------------------------------------------------
 * luacheck, on the bundle as it was loaded
 *
 * The files are written to a private temporary directory and luacheck runs
 * there (posix_spawnp, no shell), so what it reads is exactly the bundle
 * being validated, whether it came from a directory that may have changed
 * since, or from the history (activate).  Without luacheck installed this
 * check is skipped.
 * ------------------------------------------------------------------------ */

extern char **environ;

/* Remove the temporary tree: each file, then its directories, deepest
 * first (paths are relative and at most VD_BUNDLE_MAX_FILES). */
static void remove_tree(const char *root, vd_bundle_t *b) {
  vd_buf_t path = VD_BUF_INIT;
  size_t i;
  for (i = 0; i < vd_bundle_count(b); i++) {
    char *slash;
    vd_buf_reset(&path);
    vd_buf_addf(&path, "%s/%s", root, vd_bundle_file(b, i)->path);
    unlink(path.data);
    while ((slash = strrchr(path.data, '/')) && slash > path.data + strlen(root)) {
      *slash = '\0';
      if (rmdir(path.data) != 0)
        break; /* not empty yet, or gone already */
    }
  }
  rmdir(root);
  vd_buf_release(&path);
}

/* Write every file of B under ROOT; 0 or -1. */
static int write_tree(const char *root, vd_bundle_t *b) {
  vd_buf_t path = VD_BUF_INIT;
  size_t i;
  int rc = 0;
  for (i = 0; rc == 0 && i < vd_bundle_count(b); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(b, i);
    char *p;
    int fd;
    vd_buf_reset(&path);
    vd_buf_addf(&path, "%s/%s", root, f->path);
    for (p = path.data + strlen(root) + 1; (p = strchr(p, '/')); p++) {
      *p = '\0';
      if (mkdir(path.data, 0700) != 0 && errno != EEXIST)
        rc = -1;
      *p = '/';
    }
    fd = open(path.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, f->data, f->len) != (ssize_t)f->len)
      rc = -1;
    if (fd >= 0)
      close(fd);
  }
  vd_buf_release(&path);
  return rc;
}

static unsigned run_luacheck(vd_bundle_t *b, FILE *out) {
  static char *const argv[] = {
      "luacheck", "--no-color", "--codes", "--formatter", "plain",
      "--std", "lua54", "--globals", "parent", "verdict",
      "--no-max-line-length", "--", ".", NULL};
  const char *tmp = getenv("TMPDIR");
  vd_buf_t dir = VD_BUF_INIT;
  posix_spawn_file_actions_t fa;
  int pipefd[2], status = 0, src;
  pid_t pid;
  unsigned n = 0;
  FILE *p;
  char line[1024];

  vd_buf_addf(&dir, "%s/verdict-luacheck-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir.data)) {
    fprintf(out, "luacheck: cannot make a temporary directory %s: %s\n",
            dir.data, strerror(errno));
    vd_buf_release(&dir);
    return 1;
  }
  if (write_tree(dir.data, b) != 0 || pipe2(pipefd, O_CLOEXEC) != 0) {
    fprintf(out, "luacheck: cannot write the bundle to %s\n", dir.data);
    remove_tree(dir.data, b);
    vd_buf_release(&dir);
    return 1;
  }
  /* no shell, no system(): a daemon calls this from a thread, and system()
   * would ignore SIGINT process-wide while it runs */
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawn_file_actions_addchdir_np(&fa, dir.data);
  src = posix_spawnp(&pid, "luacheck", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  p = fdopen(pipefd[0], "r");
  while (p && fgets(line, sizeof line, p)) {
    /* "./national/x.lua:3:7: ..." -> "national/x.lua:3:7: ..." */
    fputs(strncmp(line, "./", 2) == 0 ? line + 2 : line, out);
    n++;
  }
  if (p)
    fclose(p);
  else
    close(pipefd[0]);
  if (src == 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  remove_tree(dir.data, b);
  vd_buf_release(&dir);
  if (src != 0)
    return 0; /* luacheck is not installed: skipped, as documented */
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : (n ? n : 1);
}

/* Everything check does, with output to out; returns problems found. */
static unsigned check_all(vd_bundle_t *b, const vd_limits_t *lim,
                          FILE *out, int quiet) {
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  unsigned problems = check_syntax(b, out);
  if (problems) {
    vd_buf_release(&err);
    return problems;
  }
  if (vd_engine_new(b, lim, &e, &err)) {
    fprintf(out, "%s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  problems += vd_policy_check_structure(e, out);
  if (vd_policy_run_tests(e, out, quiet, NULL) != 0)
    problems++;
  problems += run_luacheck(b, out);
  vd_engine_free(e);
  vd_buf_release(&err);
  return problems;
}

int vd_policy_check_main(const char *dir) {
  vd_bundle_t *b;
  vd_buf_t err = VD_BUF_INIT;
  unsigned problems;
  if (vd_bundle_load(dir, &b, &err)) {
    fprintf(stdout, "%s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  problems = check_all(b, NULL, stdout, 0);
  vd_bundle_unref(b);
  vd_buf_release(&err);
  if (problems)
    fprintf(stdout, "check: %u problem%s in %s\n", problems,
            problems == 1 ? "" : "s", dir);
  else
    fprintf(stdout, "check: %s is ready to go live\n", dir);
  return problems ? 1 : 0;
}

int vd_policy_validate(vd_bundle_t *b, const vd_limits_t *lim,
                       vd_buf_t *err) {
  char *text = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&text, &len);
  unsigned problems;
  if (!mem) {
    vd_buf_reset(err);
    vd_buf_adds(err, "out of memory: cannot hold the validation report");
    return VD_ENOMEM;
  }
  problems = check_all(b, lim, mem, 1);
  fclose(mem);
  vd_buf_reset(err);
  if (problems)
    vd_buf_add(err, text, len);
  free(text);
  return problems ? VD_EINVALID : 0;
}
