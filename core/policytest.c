/*
 * policytest.c - policy validation: the report, `verdict test`, the
 * structural checks, and `verdict check` as a whole (see policytest.h;
 * luacheck itself is in lint.c).
 *
 * Test files are data but still Lua, so they are loaded in a sandbox of
 * their own (the harness), never in the engine's state.  Each case becomes
 * a request line that goes through vd_engine_decide() exactly as a request
 * from a socket would; the result comes back as JSON and is decoded into
 * the harness for comparison.  Every finding goes into the caller's
 * vd_policy_report_t; nothing is printed.  Runs on the caller's thread.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/policytest.h"
#include "verdict/sandbox.h"

/* ------------------------------------------------------------------------
 * The report
 * ------------------------------------------------------------------------ */

void vd_policy_report_init(vd_policy_report_t *r) {
  memset(r, 0, sizeof *r);
  vd_buf_init(&r->store);
}

void vd_policy_report_release(vd_policy_report_t *r) {
  size_t i;
  for (i = 0; i < r->count; i++) {
    vd_finding_t *f = &r->findings[i];
    free(f->file);
    free(f->code);
    free(f->text);
    free(f->detail);
  }
  vd_buf_release(&r->store);
  vd_policy_report_init(r);
}

/* A malloc'd copy of [s, s+n), or NULL for NULL; aborts on out of memory
 * through the buffer's own handler. */
static char *save(const char *s, size_t n) {
  vd_buf_t b = VD_BUF_INIT;
  if (!s)
    return NULL;
  vd_buf_add(&b, s, n);
  return vd_buf_detach(&b, NULL);
}

static vd_finding_t *add(vd_policy_report_t *r, vd_finding_kind_t kind,
                         vd_stage_t stage, const char *file, int line,
                         int column, const char *code, const char *text) {
  vd_finding_t f, *last;
  memset(&f, 0, sizeof f);
  f.kind = kind;
  f.stage = stage;
  f.file = file ? save(file, strlen(file)) : NULL;
  f.line = line;
  f.column = column;
  f.code = code ? save(code, strlen(code)) : NULL;
  f.text = save(text ? text : "", text ? strlen(text) : 0);
  vd_buf_add(&r->store, &f, sizeof f); /* malloc'd: aligned for any type */
  r->findings = (vd_finding_t *)(void *)r->store.data;
  last = &r->findings[r->count++];
  if (kind == VD_FINDING_PROBLEM)
    r->problems++;
  return last;
}

vd_finding_t *vd_policy_report_add(vd_policy_report_t *r,
                                   vd_finding_kind_t kind, vd_stage_t stage,
                                   const char *file, int line, int column,
                                   const char *code, const char *text) {
  return add(r, kind, stage, file, line, column, code, text);
}

void vd_policy_finding_detail(vd_finding_t *f, const char *text) {
  free(f->detail);
  f->detail = save(text, strlen(text));
}

/* A Lua message about chunk "@path" reads "path:line: text": record the
 * file and line apart when msg has that form, else msg as it is. */
static vd_finding_t *add_located(vd_policy_report_t *r, vd_finding_kind_t kind,
                                 vd_stage_t stage, const char *path,
                                 const char *msg) {
  size_t n = path ? strlen(path) : 0;
  if (n && strncmp(msg, path, n) == 0 && msg[n] == ':' &&
      msg[n + 1] >= '0' && msg[n + 1] <= '9') {
    char *end;
    long line = strtol(msg + n + 1, &end, 10);
    if (end[0] == ':' && end[1] == ' ' && line > 0 && line < 1L << 30)
      return add(r, kind, stage, path, (int)line, 0, NULL, end + 2);
  }
  return add(r, kind, stage, NULL, 0, 0, NULL, msg);
}

/* Is c part of an identifier?  (A name found in a file must not be part
 * of a longer one: "tier" is not found in "tiers".) */
static int name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

/* The line of file f on which [name, name+n) is written as a whole name:
 * its only occurrence; else the first at or after line `from`; else 0. */
static int name_line(const vd_bundle_file_t *f, const char *name, size_t n,
                     int from) {
  const char *p = f->data, *end = f->data + f->len, *hit;
  int line = 1, count = 0, only = 0, after = 0;
  while (n && (hit = memmem(p, (size_t)(end - p), name, n)) != NULL) {
    for (; p < hit; p++)
      line += *p == '\n';
    if ((hit == f->data || !name_char((unsigned char)hit[-1])) &&
        (hit + n == end || !name_char((unsigned char)hit[n]))) {
      count++;
      if (count == 1)
        only = line;
      if (!after && line >= from)
        after = line;
    }
    p = hit + 1;
  }
  return count == 1 ? only : after;
}

/* A load error (from vd_engine_new()), as a finding at its file and line.
 * Errors the policy libraries raise at load read "path:line: text", the
 * line being the R.policy or R.extend call that found the problem
 * (lib/rules.lua).  Where text names something it could not accept, in
 * quotes ("unknown field 'per_dya_fen'", "the rule replacing
 * 'sla.tier.standard'"), the line given is the one that name is written
 * on in that file: its only occurrence, or the first at or after the
 * call's line; a dotted name not written whole ('approval_limits.retail.
 * team_laed') is looked for by its last part.  Where the name cannot be
 * found the call's line stays. */
static vd_finding_t *add_load_error(vd_policy_report_t *r, vd_bundle_t *b,
                                    const char *msg) {
  const char *colon = strchr(msg, ':'), *q, *e;
  const vd_bundle_file_t *f = NULL;
  vd_finding_t *fd;
  char path[512];
  if (colon && (size_t)(colon - msg) < sizeof path) {
    snprintf(path, sizeof path, "%.*s", (int)(colon - msg), msg);
    f = vd_bundle_find(b, path);
  }
  if (!f)
    return add_located(r, VD_FINDING_PROBLEM, VD_STAGE_LOAD, NULL, msg);
  fd = add_located(r, VD_FINDING_PROBLEM, VD_STAGE_LOAD, path, msg);
  if (!fd->file || fd->line <= 0 || !(q = strchr(fd->text, '\'')) ||
      !(e = strchr(q + 1, '\'')) || e == q + 1) {
    return fd;
  }
  {
    const char *name = q + 1, *last = e;
    int line = name_line(f, name, (size_t)(e - name), fd->line);
    while (!line && last > name && last[-1] != '.')
      last--;
    if (!line && last > name)
      line = name_line(f, last, (size_t)(e - last), fd->line);
    if (line)
      fd->line = line;
  }
  return fd;
}

void vd_policy_finding_format(const vd_finding_t *f, vd_buf_t *out) {
  if (f->kind == VD_FINDING_PASS) {
    vd_buf_addf(out, "ok %s case %d (%s)\n", f->file ? f->file : "?",
                f->case_no, f->text);
    return;
  }
  if (f->kind == VD_FINDING_UNFIRED) {
    vd_buf_addf(out, "not fired: %s\n", f->text);
    return;
  }
  if (f->kind == VD_FINDING_FAIL && f->case_no > 0) {
    vd_buf_addf(out, "FAIL %s", f->file ? f->file : "?");
    if (f->line > 0)
      vd_buf_addf(out, ":%d", f->line);
    vd_buf_addf(out, " case %d (%s)\n", f->case_no, f->text);
  } else {
    if (f->kind == VD_FINDING_FAIL)
      vd_buf_adds(out, "FAIL ");
    if (f->file) {
      vd_buf_adds(out, f->file);
      if (f->line > 0)
        vd_buf_addf(out, ":%d", f->line);
      if (f->line > 0 && f->column > 0)
        vd_buf_addf(out, ":%d", f->column);
      vd_buf_adds(out, ": ");
    }
    if (f->code)
      vd_buf_addf(out, "(%s) ", f->code);
    vd_buf_adds(out, f->text);
    vd_buf_addc(out, '\n');
  }
  if (f->detail)
    vd_buf_adds(out, f->detail);
}

void vd_policy_report_format(const vd_policy_report_t *r, int flags,
                             vd_buf_t *out) {
  int totals = r->tested;
  size_t i;
  for (i = 0; i < r->count; i++) {
    const vd_finding_t *f = &r->findings[i];
    if (totals && f->stage > VD_STAGE_TESTS) {
      vd_buf_addf(out, "%u passed, %u failed\n", r->passed, r->failed);
      totals = 0;
    }
    if (f->kind == VD_FINDING_UNFIRED && (flags & VD_REPORT_QUIET))
      continue;
    vd_policy_finding_format(f, out);
  }
  if (totals)
    vd_buf_addf(out, "%u passed, %u failed\n", r->passed, r->failed);
}

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
  const vd_bundle_file_t *file; /* the test file being run */
  vd_sandbox_t harness;
  vd_policy_report_t *rep; /* the caller's: counts and findings go here */
  vd_decision_t d;
  vd_buf_t line, diffs, path, err;
  int fired; /* harness registry ref: set of "kind rule" fired, and of
              * "test-file\tkind rule" fired by a case of that file */
  int coverage; /* harness registry ref: coverage.lua's table, or
                 * LUA_NOREF when the bundle has none */
  unsigned coverage_problems; /* policy files under their threshold */
  const vd_policy_filter_t *filter; /* the report's, or NULL */
  regex_t run;                  /* filter->run, compiled */
  int has_run;
  int ran; /* harness registry ref: set of the test files run */
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
    /* and by this test file, for its policy file's coverage */
    lua_pushfstring(L, "%s\t%s %s", r->file->path, kind,
                    lua_tostring(L, -1));
    lua_pushboolean(L, 1);
    lua_rawset(L, -5);
    lua_pop(L, 2);
  }
  lua_pop(L, 2);
  vd_buf_release(&err);
}

static void fail_case(runner_t *r, const char *file, int i, const char *name,
                      const char *why) {
  vd_finding_t *f = add(r->rep, VD_FINDING_FAIL, VD_STAGE_TESTS, file, 0, 0,
                        NULL, name);
  f->case_no = i;
  f->detail = save(why, strlen(why));
  r->rep->failed++;
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

/* ------------------------------------------------------------------------
 * What a case may say
 *
 * A case is { name, region, at, input, expect, expect_error, fired }, and
 * expect_error { code, path, message } (docs/policy-guide.md).  Any other
 * key is a mistake (`expcet` would make a case that asserts nothing and
 * passes), and so is a case that expects nothing.
 * ------------------------------------------------------------------------ */

static const char *const CASE_KEYS[] = {"name", "region", "at", "input",
                                        "expect", "expect_error", "fired",
                                        NULL};
static const char *const ERROR_KEYS[] = {"code", "path", "message", NULL};

/* The edit distance between a and b (at most 63 bytes each; longer names
 * count as far), a transposition of two neighbours counting as one edit,
 * as lib/rules.lua's R.nearest counts. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), i, j;
  size_t d[64][64];
  if (la >= 64 || lb >= 64)
    return (size_t)-1;
  for (i = 0; i <= la; i++)
    d[i][0] = i;
  for (j = 0; j <= lb; j++)
    d[0][j] = j;
  for (i = 1; i <= la; i++)
    for (j = 1; j <= lb; j++) {
      size_t v = d[i - 1][j] + 1, cost = a[i - 1] != b[j - 1];
      if (d[i][j - 1] + 1 < v)
        v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v)
        v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[la][lb];
}

/* The name of known[] nearest to name, if near enough to be a misspelling
 * (at most a third of its letters changed), else NULL. */
static const char *nearest_name(const char *name,
                                const char *const *known) {
  const char *best = NULL;
  size_t best_d = strlen(name) / 3 + 1, d;
  for (; *known; known++)
    if ((d = edit_distance(name, *known)) < best_d) {
      best = *known;
      best_d = d;
    }
  return best;
}

/* The first key (bytewise) of the table at idx of L that is not in
 * known[], as text in key (reset first): a string key as it is, any other
 * as "a <type> key".  Returns 0 when every key is known. */
static int stray_key(lua_State *L, int idx, const char *const *known,
                     vd_buf_t *key) {
  int found = 0;
  idx = lua_absindex(L, idx);
  vd_buf_reset(key);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *const *k;
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      if (!found) {
        vd_buf_addf(key, "a %s key", luaL_typename(L, -1));
        found = 1;
      }
      continue;
    }
    for (k = known; *k && strcmp(*k, lua_tostring(L, -1)) != 0; k++)
      ;
    if (!*k && (!found || strcmp(lua_tostring(L, -1), key->data) < 0)) {
      vd_buf_reset(key);
      vd_buf_adds(key, lua_tostring(L, -1));
      found = 1;
    }
  }
  return found;
}

/* The line a case is written on in file f: where its name is written as
 * a string, "name" (0 when it is not, as for a name made by
 * in_every_offset). */
static int case_line(const vd_bundle_file_t *f, const char *name) {
  vd_buf_t q = VD_BUF_INIT;
  int line;
  vd_buf_addf(&q, "\"%s\"", name);
  line = name_line(f, q.data, q.len, 1);
  vd_buf_release(&q);
  return line;
}

/* Fail case i of r->file as written wrongly: "unknown key 'k' (did you
 * mean ...)" at the line key is written on, or `why` at the case's line. */
static void misfit_case(runner_t *r, int i, const char *name,
                        const char *where, const char *key,
                        const char *const *known, const char *why) {
  const vd_bundle_file_t *f = r->file;
  int at = case_line(f, name), line = at;
  vd_finding_t *fd;
  vd_buf_reset(&r->diffs);
  if (key) {
    const char *near = nearest_name(key, known);
    const char *const *k;
    int kl = name_line(f, key, strlen(key), at ? at : 1);
    if (kl)
      line = kl;
    vd_buf_addf(&r->diffs, "      unknown key '%s'%s", key, where);
    if (near) {
      vd_buf_addf(&r->diffs, " (did you mean '%s'?)", near);
    } else {
      vd_buf_adds(&r->diffs, "; expected one of");
      for (k = known; *k; k++)
        vd_buf_addf(&r->diffs, "%s %s", k == known ? "" : ",", *k);
    }
    vd_buf_addc(&r->diffs, '\n');
  } else {
    vd_buf_addf(&r->diffs, "      %s\n", why);
  }
  fd = add(r->rep, VD_FINDING_FAIL, VD_STAGE_TESTS, f->path, line, 0, NULL,
           name);
  fd->case_no = i;
  fd->detail = save(r->diffs.data, r->diffs.len);
  r->rep->failed++;
}

/* Are the case's keys (at c) those of a case?  Fails it and returns 0 if
 * not.  (A case that expects nothing fails once its decision is made:
 * one that raises fails for that.) */
static int case_well_formed(runner_t *r, int c, int i, const char *name) {
  lua_State *L = r->harness.L;
  int ok = 1;
  if (stray_key(L, c, CASE_KEYS, &r->path)) {
    misfit_case(r, i, name, "", r->path.data, CASE_KEYS, NULL);
    return 0;
  }
  if (lua_getfield(L, c, "expect_error") == LUA_TTABLE &&
      stray_key(L, -1, ERROR_KEYS, &r->path)) {
    misfit_case(r, i, name, " in expect_error", r->path.data, ERROR_KEYS,
                NULL);
    ok = 0;
  }
  lua_pop(L, 1);
  return ok;
}

/* Does the case at c expect anything (expect, expect_error or fired)? */
static int case_expects(lua_State *L, int c) {
  int expects = lua_getfield(L, c, "expect") != LUA_TNIL;
  expects |= lua_getfield(L, c, "expect_error") != LUA_TNIL;
  expects |= lua_getfield(L, c, "fired") != LUA_TNIL;
  lua_pop(L, 3);
  return expects;
}

/* Case table at top of harness stack. */
static void run_case(runner_t *r, const char *file, const char *kind,
                     const char *dregion, int i) {
  lua_State *L = r->harness.L;
  int c = lua_gettop(L), rc;
  const char *name = opt_str(L, c, "name", "unnamed");
  const char *region = opt_str(L, c, "region", dregion);
  const char *at = opt_str(L, c, "at", NULL);

  if (!case_well_formed(r, c, i, name))
    return;
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
    const char *msg;
    if (strcmp(code, vd_err_name(rc)) != 0)
      vd_buf_addf(&r->diffs, "      error: expected %s, got %s%s%s\n", code,
                  vd_err_name(rc), rc ? ": " : "", rc ? r->d.message.data : "");
    else if (path && strcmp(path, r->d.path.data ? r->d.path.data : "") != 0)
      vd_buf_addf(&r->diffs, "      error path: expected %s, got %s\n", path,
                  r->d.path.len ? r->d.path.data : "(none)");
    else if ((msg = opt_str(L, -1, "message", NULL)) != NULL &&
             !strstr(r->d.message.data ? r->d.message.data : "", msg))
      vd_buf_addf(&r->diffs, "      error message: expected it to contain \"%s\", got %s\n",
                  msg, r->d.message.data ? r->d.message.data : "(none)");
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
    if (rc) {
      vd_buf_addf(&r->diffs, "      error %s: %s%s%s\n", vd_err_name(rc),
                  r->d.message.data, r->d.path.len ? " at " : "",
                  r->d.path.len ? r->d.path.data : "");
    } else if (!case_expects(L, c)) {
      misfit_case(r, i, name, "", NULL, NULL,
                  "the case expects nothing, so it would pass whatever the "
                  "policy decides: give it expect, expect_error or fired");
      lua_settop(L, c);
      return;
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
  if (r->diffs.len) {
    fail_case(r, file, i, name, r->diffs.data);
  } else {
    r->rep->passed++;
    if (r->filter && r->filter->verbose)
      add(r->rep, VD_FINDING_PASS, VD_STAGE_TESTS, file,
          case_line(r->file, name), 0, NULL, name)->case_no = i;
  }
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

/* input(overrides) made by with_defaults: a new table with the defaults'
 * fields (upvalue 1), then the overrides'.  A shallow copy, as a case's
 * input is never changed once built. */
static int input_with_defaults(lua_State *L) {
  int i;
  lua_settop(L, 1);
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TTABLE);
  lua_newtable(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  for (i = 0; i < 2; i++) {
    int from = i == 0 ? 3 : 1;
    if (lua_isnil(L, from))
      continue;
    lua_pushnil(L);
    while (lua_next(L, from)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, 2);
    }
  }
  lua_settop(L, 2);
  return 1;
}

/* with_defaults(t): the function that builds a case's input from t's
 * fields and the case's own, e.g. in a test file
 *     local input = with_defaults{ complaint_id = "C-1", category = "billing" }
 *     ... input = input{ category = "network" } ...
 * Test files find it in their environment (run_file); lint.c lets
 * luacheck know they may read it. */
static int with_defaults(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushcclosure(L, input_with_defaults, 1);
  return 1;
}

/* in_every_offset(cases, name, variants, make): for each variant v (a
 * table with an `offset` string), append make(v) to cases, named
 * "NAME (written in OFFSET)".  The same instant written in several offsets
 * must decide alike; test files use this to say so once per case.  Test
 * files find it in their environment beside with_defaults. */
static int in_every_offset(lua_State *L) {
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  n = (lua_Integer)lua_rawlen(L, 3);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, 4);
    lua_rawgeti(L, 3, i); /* v */
    lua_call(L, 1, 1);    /* case = make(v) */
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_rawgeti(L, 3, i);
    lua_getfield(L, -1, "offset");
    if (!lua_isstring(L, -1))
      return luaL_error(L, "in_every_offset: variant %d has no offset string",
                        (int)i);
    lua_pushfstring(L, "%s (written in %s)", lua_tostring(L, 2),
                    lua_tostring(L, -1));
    lua_setfield(L, -4, "name"); /* case.name = ... */
    lua_pop(L, 2);               /* offset, v */
    lua_rawseti(L, 1, (lua_Integer)lua_rawlen(L, 1) + 1);
  }
  return 0;
}

static void run_file(runner_t *r, const vd_bundle_file_t *f, const char *kind,
                     const char *region) {
  lua_State *L = r->harness.L;
  lua_Integer i, n;
  int top = lua_gettop(L);
  vd_sandbox_new_env(L);
  lua_pushcfunction(L, with_defaults);
  lua_setfield(L, -2, "with_defaults");
  lua_pushcfunction(L, in_every_offset);
  lua_setfield(L, -2, "in_every_offset");
  lua_pushfstring(L, "@%s", f->path);
  vd_sandbox_arm(&r->harness, 100000000UL, 256u << 20);
  if (vd_sandbox_load(L, lua_tostring(L, -1), f->data, f->len, top + 1) !=
          LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    vd_sandbox_disarm(&r->harness);
    r->rep->failed++;
    add_located(r->rep, VD_FINDING_FAIL, VD_STAGE_TESTS, f->path,
                msg ? msg : "the test file raised a non-string error");
    lua_settop(L, top);
    return;
  }
  vd_sandbox_disarm(&r->harness);
  r->harness.limit = 0;
  r->file = f;
  if (!lua_istable(L, -1)) {
    r->rep->failed++;
    add(r->rep, VD_FINDING_FAIL, VD_STAGE_TESTS, f->path, 0, 0, NULL,
        "must return a list of cases");
    lua_settop(L, top);
    return;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (r->has_run && (!lua_istable(L, -1) ||
                       regexec(&r->run, opt_str(L, -1, "name", "unnamed"), 0,
                               NULL, 0) != 0)) {
      lua_settop(L, top + 3);
      continue;
    }
    if (lua_istable(L, -1))
      run_case(r, f->path, kind, region, (int)i);
    else
      fail_case(r, f->path, (int)i, "?", "      a case must be a table\n");
    lua_settop(L, top + 3);
  }
  lua_settop(L, top);
}

/* Record the rules of every policy that no case fired. */
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
                char file[VD_PATH_MAX];
                vd_buf_reset(&r->path);
                vd_buf_addf(&r->path, "%s rule %s (%s)", kind, id, region);
                vd_engine_policy_path(file, region, kind);
                add(r->rep, VD_FINDING_UNFIRED, VD_STAGE_TESTS, file, 0, 0,
                    NULL, r->path.data);
                r->rep->unfired++;
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

/* ------------------------------------------------------------------------
 * Choosing the tests (vd_policy_filter_t)
 * ------------------------------------------------------------------------ */

/* Does selection sel name test file `path` of region `region`? */
static int selects(const char *sel, const char *path, const char *region) {
  size_t n = strlen(sel), pl = strlen(path);
  while (n > 1 && sel[n - 1] == '/')
    n--;
  if (strlen(region) == n && strncmp(sel, region, n) == 0)
    return 1; /* a region code, or "national" */
  if (pl == n && strncmp(sel, path, n) == 0)
    return 1; /* the test file */
  if (pl > n && strncmp(sel, path, n) == 0 && path[n] == '/' &&
      !strchr(path + n + 1, '/'))
    return 1; /* its directory */
  /* its policy file: "x.lua" for "x_test.lua" */
  return n > 4 && pl == n + 5 && strncmp(sel, path, n - 4) == 0 &&
         strcmp(sel + n - 4, ".lua") == 0 &&
         strcmp(path + n - 4, "_test.lua") == 0;
}

/* Is test file `path` (of region `region`) to run?  Marks the selections
 * that named it in used[] (may be NULL). */
static int selected(const vd_policy_filter_t *flt, const char *path,
                    const char *region, unsigned char *used) {
  size_t i;
  int any = 0;
  if (!flt || !flt->npaths)
    return 1;
  for (i = 0; i < flt->npaths; i++)
    if (selects(flt->paths[i], path, region)) {
      any = 1;
      if (used)
        used[i] = 1;
    }
  return any;
}

/* ------------------------------------------------------------------------
 * Rule coverage
 *
 * Every policy file's own tests (the <kind>_test.lua beside it) must fire
 * its own rules: those of its policy whose ids its parent's policy does
 * not have (the national file: all of them; a region: its replacements
 * and additions).  A policy file with rules of its own and no test file
 * beside it fails, and so does one whose tests fire less than the
 * bundle's threshold of its own rules, naming those not fired.  (A file
 * with none, one that only changes params, needs no tests of its own.)
 * The threshold is coverage.lua's min_percent (default 100), or its
 * files["<path>"] for one file.  Each file's coverage is a NOTE, when the
 * report asks (r->coverage).
 * ------------------------------------------------------------------------ */

static const char *const COVERAGE_KEYS[] = {"min_percent", "files", NULL};

/* Run coverage.lua, if the bundle has one, in the harness and keep its
 * table in r->coverage.  Returns 0, or 1 with a problem added. */
static int load_coverage(runner_t *r) {
  lua_State *L = r->harness.L;
  const vd_bundle_file_t *f =
      vd_bundle_find(vd_engine_bundle(r->engine), "coverage.lua");
  int top = lua_gettop(L), bad = 0;
  r->coverage = LUA_NOREF;
  if (!f)
    return 0;
  vd_buf_reset(&r->diffs);
  vd_sandbox_new_env(L);
  vd_sandbox_arm(&r->harness, 10000000UL, 16u << 20);
  if (vd_sandbox_load(L, "@coverage.lua", f->data, f->len, top + 1) !=
          LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    vd_buf_adds(&r->diffs, lua_type(L, -1) == LUA_TSTRING
                               ? lua_tostring(L, -1)
                               : "coverage.lua: raised a non-string error");
  } else if (!lua_istable(L, -1)) {
    vd_buf_adds(&r->diffs, "coverage.lua: must return { min_percent = N, "
                           "files = { [\"path\"] = N } }");
  } else if (stray_key(L, -1, COVERAGE_KEYS, &r->path)) {
    const char *near = nearest_name(r->path.data, COVERAGE_KEYS);
    vd_buf_addf(&r->diffs, "coverage.lua: unknown key '%s' %s%s%s",
                r->path.data, near ? "(did you mean '" : "(expected ",
                near ? near : "min_percent or files",
                near ? "'?)" : ")");
  } else {
    lua_getfield(L, -1, "min_percent");
    if (!lua_isnil(L, -1) &&
        (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
         lua_tointeger(L, -1) > 100))
      vd_buf_adds(&r->diffs, "coverage.lua: min_percent must be an "
                             "integer from 0 to 100");
    lua_pop(L, 1);
    if (lua_getfield(L, -1, "files") != LUA_TNIL && !lua_istable(L, -1))
      vd_buf_adds(&r->diffs, "coverage.lua: files must map policy files "
                             "to percents");
    lua_pop(L, 1);
  }
  vd_sandbox_disarm(&r->harness);
  r->harness.limit = 0;
  if (r->diffs.len) {
    add_located(r->rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, "coverage.lua",
                r->diffs.data);
    bad = 1;
  } else {
    r->coverage = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(L, top);
  return bad;
}

/* The threshold for policy file `file`: coverage.lua's files[file], else
 * its min_percent, else 100.  Raises (in the harness) on a bad entry. */
static lua_Integer coverage_threshold(runner_t *r, const char *file) {
  lua_State *L = r->harness.L;
  lua_Integer pct = 100;
  int top = lua_gettop(L);
  if (r->coverage == LUA_NOREF)
    return pct;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->coverage);
  if (lua_getfield(L, top + 1, "min_percent") == LUA_TNUMBER)
    pct = lua_tointeger(L, -1);
  if (lua_getfield(L, top + 1, "files") == LUA_TTABLE &&
      lua_getfield(L, -1, file) != LUA_TNIL) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
        lua_tointeger(L, -1) > 100)
      pct = -1;
    else
      pct = lua_tointeger(L, -1);
  }
  lua_settop(L, top);
  return pct;
}

/* Append to the array at `out` the rule ids of the policy at `policy`
 * that are not keys of the set at `parent`, in table order. */
static void own_rules(lua_State *L, int policy, int parent, int out) {
  lua_Integer t, nt, j, nr;
  if (lua_getfield(L, policy, "tables") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  nt = (lua_Integer)luaL_len(L, -1);
  for (t = 1; t <= nt; t++) {
    lua_geti(L, -1, t);
    if (lua_istable(L, -1) && lua_getfield(L, -1, "rules") == LUA_TTABLE) {
      nr = (lua_Integer)luaL_len(L, -1);
      for (j = 1; j <= nr; j++) {
        lua_geti(L, -1, j);
        if (lua_istable(L, -1) && lua_getfield(L, -1, "id") == LUA_TSTRING) {
          lua_pushvalue(L, -1);
          if (lua_rawget(L, parent) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
            lua_pushvalue(L, -2); /* once, if the id is used twice */
            lua_pushboolean(L, 1);
            lua_rawset(L, parent);
          }
          lua_pop(L, 1);
        }
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* The parent code of region ("GD" for "GD-SZ", "national" for "GD"). */
static void parent_code(const char *region, char out[32]) {
  const char *dash = strrchr(region, '-');
  if (dash && dash - region < 32)
    snprintf(out, 32, "%.*s", (int)(dash - region), region);
  else
    snprintf(out, 32, "national");
}

/* Under lua_pcall in the engine's state: the coverage of every policy
 * file, as notes, and a problem for each one under its threshold. */
static int coverage_k(lua_State *EL) {
  runner_t *r = lua_touserdata(EL, 1);
  lua_State *HL = r->harness.L;
  vd_bundle_t *b = vd_engine_bundle(r->engine);
  vd_buf_t test = VD_BUF_INIT, missed = VD_BUF_INIT;
  size_t k, g;
  for (k = 0; k < vd_engine_kind_count(r->engine); k++) {
    const char *kind = vd_engine_kind(r->engine, k);
    for (g = 0; g <= vd_engine_region_count(r->engine); g++) {
      const char *region = g ? vd_engine_region(r->engine, g - 1)
                             : "national";
      char file[VD_PATH_MAX], pcode[32];
      int policy, parent, own;
      lua_Integer i, n, fired = 0, pct;
      if (vd_engine_push_policy(r->engine, kind, region))
        continue;
      policy = lua_gettop(EL);
      lua_newtable(EL);
      parent = policy + 1;
      if (g) {
        const char *pr;
        parent_code(region, pcode);
        pr = vd_engine_policy_region(r->engine, kind, pcode);
        if (vd_engine_push_policy(r->engine, kind, pr ? pr : "national") ==
            0) {
          int pp = lua_gettop(EL); /* the parent's ids, as a set */
          lua_newtable(EL);          /* pp + 1: none excluded */
          lua_newtable(EL);          /* pp + 2: all its ids */
          own_rules(EL, pp, pp + 1, pp + 2);
          n = (lua_Integer)lua_rawlen(EL, pp + 2);
          for (i = 1; i <= n; i++) {
            lua_rawgeti(EL, pp + 2, i);
            lua_pushboolean(EL, 1);
            lua_rawset(EL, parent);
          }
          lua_settop(EL, parent);
        }
      }
      lua_newtable(EL);
      own = policy + 2;
      own_rules(EL, policy, parent, own);
      vd_engine_policy_path(file, region, kind);
      vd_buf_reset(&test);
      vd_buf_addf(&test, "%.*s_test.lua", (int)(strlen(file) - 4), file);
      vd_buf_reset(&missed);
      n = (lua_Integer)lua_rawlen(EL, own);
      for (i = 1; i <= n; i++) {
        lua_rawgeti(EL, own, i);
        lua_rawgeti(HL, LUA_REGISTRYINDEX, r->fired);
        lua_pushfstring(HL, "%s\t%s %s", test.data, kind,
                        lua_tostring(EL, -1));
        if (lua_rawget(HL, -2) != LUA_TNIL)
          fired++;
        else
          vd_buf_addf(&missed, "%s%s", missed.len ? ", " : "",
                      lua_tostring(EL, -1));
        lua_pop(HL, 2);
        lua_pop(EL, 1);
      }
      if (r->filter && (r->filter->run ||
                        !selected(r->filter, test.data, region, NULL))) {
        lua_settop(EL, policy - 1);
        continue; /* its tests did not all run */
      }
      pct = coverage_threshold(r, file);
      vd_buf_reset(&r->path);
      if (pct == 0) {
        /* the bundle asks nothing of this file's tests */
      } else if (n && !vd_bundle_find(b, test.data)) {
        vd_buf_addf(&r->path, "no tests: a policy file needs its own "
                              "tests beside it (%s)", test.data);
        if (n)
          vd_buf_addf(&r->path, " that fire its %lld rule%s (%s)",
                      (long long)n, n == 1 ? "" : "s", missed.data);
      } else if (pct < 0) {
        vd_buf_addf(&r->path, "coverage.lua: files[\"%s\"] must be an "
                              "integer from 0 to 100", file);
      } else if (fired * 100 < pct * n) {
        vd_buf_addf(&r->path, "its tests (%s) fire %lld of its %lld own "
                              "rules (%lld%%), under the bundle's %lld%% "
                              "(coverage.lua): not fired: %s", test.data,
                    (long long)fired, (long long)n,
                    (long long)(fired * 100 / n), (long long)pct,
                    missed.data);
      }
      if (r->path.len) {
        add(r->rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, file, 0, 0, NULL,
            r->path.data);
        r->coverage_problems++;
      }
      vd_buf_reset(&r->path);
      vd_buf_addf(&r->path, "coverage %lld/%lld own rules fired by %s "
                            "(%lld%%)", (long long)fired, (long long)n,
                  test.data, (long long)(n ? fired * 100 / n : 100));
      if (r->rep->coverage)
        add(r->rep, VD_FINDING_NOTE, VD_STAGE_TESTS, file, 0, 0, NULL,
            r->path.data);
      lua_settop(EL, policy - 1);
    }
  }
  vd_buf_release(&test);
  vd_buf_release(&missed);
  return 0;
}

int vd_policy_run_tests(vd_engine_t *e, vd_policy_report_t *rep) {
  runner_t r;
  vd_bundle_t *b = vd_engine_bundle(e);
  vd_sandbox_t *esb = vd_engine_sandbox(e);
  unsigned failed = rep->failed;
  unsigned char *used = NULL; /* filter->paths[i] named a test file */
  int coverage_bad;
  size_t i;
  memset(&r, 0, sizeof r);
  r.engine = e;
  r.rep = rep;
  r.filter = rep->filter;
  rep->tested = 1;
  if (r.filter && r.filter->run) {
    int rc = regcomp(&r.run, r.filter->run, REG_EXTENDED | REG_NOSUB);
    if (rc) {
      char why[128];
      regerror(rc, &r.run, why, sizeof why);
      vd_buf_addf(&r.path, "--run %s: not a regular expression: %s",
                  r.filter->run, why);
      add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
          r.path.data);
      vd_buf_release(&r.path);
      rep->failed++;
      return 1;
    }
    r.has_run = 1;
  }
  if (r.filter && r.filter->npaths &&
      !(used = calloc(r.filter->npaths, 1))) {
    add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
        "out of memory");
    if (r.has_run)
      regfree(&r.run);
    return 1;
  }
  if (vd_sandbox_init(&r.harness, &r.err)) {
    vd_buf_addf(&r.path, "cannot create the test harness: %s", r.err.data);
    add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
        r.path.data);
    vd_buf_release(&r.path);
    vd_buf_release(&r.err);
    if (r.has_run)
      regfree(&r.run);
    free(used);
    return 1;
  }
  vd_decision_init(&r.d);
  lua_newtable(r.harness.L);
  r.fired = luaL_ref(r.harness.L, LUA_REGISTRYINDEX);
  coverage_bad = load_coverage(&r);
  for (i = 0; i < vd_bundle_count(b); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(b, i);
    char kind[32], region[32];
    if (test_file(f->path, kind, region) &&
        selected(r.filter, f->path, region, used))
      run_file(&r, f, kind, region);
  }
  for (i = 0; used && i < r.filter->npaths; i++)
    if (!used[i]) {
      vd_buf_reset(&r.path);
      vd_buf_addf(&r.path, "%s: names no test file of the bundle (a test "
                           "file, a policy file, a region's directory, "
                           "\"national\" or a region code)",
                  r.filter->paths[i]);
      add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
          r.path.data);
      rep->failed++;
    }
  free(used);
  /* list the rules no case fired, reading the engine's policies under a
   * protected call (their tables may have metamethods) */
  vd_sandbox_arm(esb, 100000000UL, 0);
  lua_pushcfunction(esb->L, list_unfired);
  lua_pushlightuserdata(esb->L, &r);
  if (r.filter && (r.filter->npaths || r.filter->run)) {
    lua_pop(esb->L, 2); /* only some cases ran: no list of rules unfired */
  } else if (lua_pcall(esb->L, 1, 0, 0) != LUA_OK) {
    vd_buf_reset(&r.path);
    vd_buf_addf(&r.path, "cannot list the rules: %s", lua_tostring(esb->L, -1));
    add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
        r.path.data);
    lua_pop(esb->L, 1);
  }
  /* and the coverage of each policy file by its own tests */
  if (!coverage_bad) {
    lua_pushcfunction(esb->L, coverage_k);
    lua_pushlightuserdata(esb->L, &r);
    if (lua_pcall(esb->L, 1, 0, 0) != LUA_OK) {
      vd_buf_reset(&r.path);
      vd_buf_addf(&r.path, "cannot measure the rules' coverage: %s",
                  lua_tostring(esb->L, -1));
      add(rep, VD_FINDING_PROBLEM, VD_STAGE_TESTS, NULL, 0, 0, NULL,
          r.path.data);
      lua_pop(esb->L, 1);
      coverage_bad = 1;
    }
  }
  vd_sandbox_disarm(esb);
  vd_sandbox_release(&r.harness);
  if (r.has_run)
    regfree(&r.run);
  vd_decision_release(&r.d);
  vd_buf_release(&r.line);
  vd_buf_release(&r.diffs);
  vd_buf_release(&r.path);
  vd_buf_release(&r.err);
  if (rep->failed == failed)
    return coverage_bad || r.coverage_problems ? 1 : 0;
  rep->problems++; /* the failed cases count as one problem of the bundle */
  return 1;
}

/* ------------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------------ */

typedef struct check_args {
  vd_engine_t *e;
  vd_policy_report_t *rep;
  unsigned problems; /* added to rep by this check */
  vd_buf_t text;     /* the message being written */
} check_args_t;

/* Record a structural problem at file[:line] (line 0: the whole file). */
static void problem(check_args_t *a, const char *file, int line,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void problem(check_args_t *a, const char *file, int line,
                    const char *fmt, ...) {
  va_list ap;
  vd_buf_reset(&a->text);
  va_start(ap, fmt);
  vd_buf_vaddf(&a->text, fmt, ap);
  va_end(ap);
  add(a->rep, VD_FINDING_PROBLEM, VD_STAGE_STRUCTURE, file, line, 0, NULL,
      a->text.data);
  a->problems++;
}

/* Where was the rule at top defined?  The first function among its fields
 * tells (file and line); else the policy file, line 0. */
static int rule_where(lua_State *L, const char *dflt, vd_buf_t *file) {
  lua_Debug ar;
  vd_buf_reset(file);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_isfunction(L, -1)) {
      lua_getinfo(L, ">S", &ar);
      if (ar.source[0] == '@' && ar.linedefined > 0) {
        vd_buf_adds(file, ar.source + 1);
        lua_pop(L, 1);
        return ar.linedefined;
      }
      continue;
    }
    lua_pop(L, 1);
  }
  vd_buf_adds(file, dflt);
  return 0;
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
        problem(a, file, 0, "the policy declares no decision tables "
                            "(policy.tables)");
        lua_pop(L, 3);
        continue;
      }
      nt = (lua_Integer)luaL_len(L, -1);
      for (t = 1; t <= nt; t++) {
        const char *hit, *tname;
        lua_geti(L, -1, t);
        if (!lua_istable(L, -1)) {
          problem(a, file, 0, "tables[%d] is not a table", (int)t);
          lua_pop(L, 1);
          continue;
        }
        lua_getfield(L, -1, "name");
        tname = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
        lua_getfield(L, -2, "hit");
        hit = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
        if (!hit || (strcmp(hit, "first") != 0 && strcmp(hit, "collect") != 0)) {
          problem(a, file, 0, "table '%s' must declare hit = \"first\" or "
                              "\"collect\"", tname);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, -2, "rules") != LUA_TTABLE) {
          problem(a, file, 0, "table '%s' has no rules list", tname);
          lua_pop(L, 3);
          continue;
        }
        nr = (lua_Integer)luaL_len(L, -1);
        for (j = 1; j <= nr; j++) {
          const char *id;
          size_t blen = 0;
          int line;
          lua_geti(L, -1, j);
          if (!lua_istable(L, -1)) {
            problem(a, file, 0, "table '%s' rule %d is not a table", tname,
                    (int)j);
            lua_pop(L, 1);
            continue;
          }
          line = rule_where(L, file, &where);
          lua_getfield(L, -1, "id");
          id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
          lua_getfield(L, -2, "basis");
          if (lua_type(L, -1) == LUA_TSTRING)
            lua_tolstring(L, -1, &blen);
          if (!id || !*id) {
            problem(a, where.data, line, "table '%s' rule %d has no id", tname,
                    (int)j);
          } else {
            if (blen == 0)
              problem(a, where.data, line, "rule '%s' cites no basis", id);
            lua_pushvalue(L, -2);
            if (lua_rawget(L, ids) != LUA_TNIL) {
              problem(a, where.data, line, "rule id '%s' is used twice in %s",
                      id, file);
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

unsigned vd_policy_check_structure(vd_engine_t *e, vd_policy_report_t *r) {
  vd_sandbox_t *sb = vd_engine_sandbox(e);
  check_args_t a;
  memset(&a, 0, sizeof a);
  a.e = e;
  a.rep = r;
  vd_sandbox_arm(sb, 100000000UL, 0);
  lua_pushcfunction(sb->L, check_k);
  lua_pushlightuserdata(sb->L, &a);
  if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
    add_located(r, VD_FINDING_PROBLEM, VD_STAGE_STRUCTURE, NULL,
                lua_tostring(sb->L, -1));
    lua_pop(sb->L, 1);
    a.problems++;
  }
  vd_sandbox_disarm(sb);
  vd_buf_release(&a.text);
  return a.problems;
}

/* Syntax of every .lua file, so an unused file with an error is found too. */
static unsigned check_syntax(vd_bundle_t *b, vd_policy_report_t *r) {
  vd_sandbox_t sb;
  vd_buf_t err = VD_BUF_INIT;
  unsigned problems = 0;
  size_t i;
  if (vd_sandbox_init(&sb, &err)) {
    add(r, VD_FINDING_PROBLEM, VD_STAGE_SYNTAX, NULL, 0, 0, NULL, err.data);
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
      add_located(r, VD_FINDING_PROBLEM, VD_STAGE_SYNTAX, f->path,
                  lua_tostring(sb.L, -1));
      problems++;
    }
    lua_settop(sb.L, 0);
  }
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  return problems;
}

/* ------------------------------------------------------------------------
 * test and check as a whole
 * ------------------------------------------------------------------------ */

int vd_policy_test(vd_bundle_t *b, const vd_limits_t *lim,
                   vd_policy_report_t *r) {
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  if (vd_engine_new(b, lim, &e, &err)) {
    add_load_error(r, b, err.data);
    r->tested = 1; /* "0 passed, 1 failed": nothing could be tested */
    r->failed++;
    vd_buf_release(&err);
    return 1;
  }
  rc = vd_policy_run_tests(e, r);
  vd_engine_free(e);
  vd_buf_release(&err);
  return rc;
}

int vd_policy_check(vd_bundle_t *b, const vd_limits_t *lim,
                    const char *luacheck_dir, vd_policy_report_t *r) {
  vd_engine_t *e;
  vd_buf_t err = VD_BUF_INIT;
  if (check_syntax(b, r))
    return VD_EINVALID; /* nothing more can be loaded */
  if (vd_engine_new(b, lim, &e, &err)) {
    add_load_error(r, b, err.data);
    vd_buf_release(&err);
    return VD_EINVALID;
  }
  vd_policy_check_structure(e, r);
  vd_policy_run_tests(e, r);
  vd_policy_check_grid(e, r);
  vd_engine_free(e);
  vd_policy_luacheck(b, luacheck_dir, r);
  vd_buf_release(&err);
  return r->problems ? VD_EINVALID : 0;
}

int vd_policy_validate(vd_bundle_t *b, const vd_limits_t *lim,
                       vd_buf_t *err) {
  vd_policy_report_t r;
  int rc;
  vd_policy_report_init(&r);
  rc = vd_policy_check(b, lim, NULL, &r);
  vd_buf_reset(err);
  if (rc)
    vd_policy_report_format(&r, VD_REPORT_QUIET, err);
  vd_policy_report_release(&r);
  return rc;
}
