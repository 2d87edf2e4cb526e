/*
 * grid.c - the part of `verdict check` that proves no region loosens its
 * parent, and no higher customer grade gets a looser answer than a lower
 * one (see policytest.h).
 *
 * For each kind whose national policy declares `tighter` (lib/rules.lua):
 *   - the regions decided: national, every region with a policy file of
 *     its own for the kind (vd_engine_policy_region() names itself), and
 *     the parent of each (its nearest ancestor code the bundle accepts,
 *     else national: deciding with that code is deciding as if the region
 *     had no file);
 *   - the points: lib/grid.lua's G.inputs(P, n) on the national policy,
 *     n = VD_GRID_DECISIONS / (regions x grades);
 *   - each point is decided for every grade of G.GRADES in every region,
 *     as a request line through vd_engine_decide(), the path the tests
 *     and the daemon use: no second implementation of the policies;
 *   - the answers are decoded into a Lua state of our own and compared
 *     with vd_policy_compare(): each region's against its parent's, grade
 *     by grade, and in each region each grade's against the grade's just
 *     below.  The first looser answer of each pair is a problem; later
 *     ones of the same pair are not reported again.
 * An answer one side refuses as bad_input (a deadline in a year whose
 * calendar is missing, under "error" fallback) is not compared and is
 * counted in the kind's closing note; any other error of a region is a
 * problem of its own.  Exceptions (P.loosens) excuse the fields they name
 * and are listed, with how many answers used them.
 *
 * Runs on the caller's thread, on the engine vd_policy_check() built; the
 * engine's state is entered only under lua_pcall with its budget armed.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/policytest.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"

/* ------------------------------------------------------------------------
 * Comparing two answers
 * ------------------------------------------------------------------------ */

static int absent(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ||
         (lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == vd_json_null);
}

/* Push the value at dotted path in the table at t (nil when any step is
 * missing or not a table). */
static void push_path(lua_State *L, int t, const char *path) {
  const char *p = path, *dot;
  lua_pushvalue(L, t);
  while (*p) {
    dot = strchr(p, '.');
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
      return;
    }
    lua_pushlstring(L, p, dot ? (size_t)(dot - p) : strlen(p));
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (!dot)
      break;
    p = dot + 1;
  }
}

static int time_of(lua_State *L, int idx, int64_t *ms) {
  size_t n;
  const char *s;
  int off;
  if (lua_type(L, idx) != LUA_TSTRING)
    return -1;
  s = lua_tolstring(L, idx, &n);
  return vd_time_parse(s, n, ms, &off);
}

/* Position of the string at idx in the list at lst (1-based), 0 if not. */
static lua_Integer rank_in(lua_State *L, int lst, int idx) {
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, lst);
  for (i = 1; i <= n; i++) {
    int eq;
    lua_rawgeti(L, lst, i);
    eq = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    if (eq)
      return i;
  }
  return 0;
}

/* Is value a (at ia) looser than value b (at ib) under the order at io? */
static int looser_value(lua_State *L, int io, int ia, int ib) {
  const char *order = lua_type(L, io) == LUA_TSTRING ? lua_tostring(L, io)
                                                     : NULL;
  if (order && strcmp(order, "neutral") == 0)
    return 0;
  if (absent(L, ib))
    return 0; /* b gives nothing a could fall short of */
  if (absent(L, ia))
    return 1; /* b gives it, a does not */
  if (lua_istable(L, io)) {
    int looser;
    lua_getfield(L, io, "higher");
    looser = lua_istable(L, -1) && rank_in(L, lua_gettop(L), ib) > 0 &&
             rank_in(L, lua_gettop(L), ia) < rank_in(L, lua_gettop(L), ib);
    lua_pop(L, 1);
    return looser;
  }
  if (!order)
    return 0;
  if (strcmp(order, "earlier") == 0 || strcmp(order, "later") == 0) {
    int64_t ta, tb;
    if (time_of(L, ib, &tb))
      return 0;
    if (time_of(L, ia, &ta))
      return 1;
    return order[0] == 'e' ? ta > tb : ta < tb;
  }
  if (strcmp(order, "smaller") == 0 || strcmp(order, "larger") == 0) {
    if (lua_type(L, ib) != LUA_TNUMBER)
      return 0;
    if (lua_type(L, ia) != LUA_TNUMBER)
      return 1;
    return order[0] == 's' ? lua_compare(L, ib, ia, LUA_OPLT)
                           : lua_compare(L, ia, ib, LUA_OPLT);
  }
  if (strcmp(order, "true") == 0)
    return lua_toboolean(L, ib) && !lua_toboolean(L, ia);
  if (strcmp(order, "superset") == 0) {
    lua_Integer i, n;
    if (!lua_istable(L, ib))
      return 0;
    if (!lua_istable(L, ia))
      return 1;
    n = (lua_Integer)lua_rawlen(L, ib);
    for (i = 1; i <= n; i++) {
      int missing;
      lua_rawgeti(L, ib, i);
      missing = rank_in(L, ia, lua_gettop(L)) == 0;
      lua_pop(L, 1);
      if (missing)
        return 1;
    }
    return 0;
  }
  return 0; /* "neutral" */
}

static void show(lua_State *L, int idx, vd_buf_t *out) {
  vd_buf_t err = VD_BUF_INIT;
  vd_buf_reset(out);
  if (absent(L, idx) || vd_json_encode(L, idx, out, "value", &err)) {
    vd_buf_reset(out);
    vd_buf_adds(out, "(absent)");
  }
  vd_buf_release(&err);
}

static int excused_by(const char *key, const char *path,
                      const char *const *excused, size_t n, unsigned *used) {
  size_t i;
  for (i = 0; i < n; i++)
    if (strcmp(excused[i], key) == 0 || strcmp(excused[i], path) == 0) {
      if (used)
        used[i]++;
      return 1;
    }
  return 0;
}

static int str_cmp(const void *x, const void *y) {
  return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The string keys of the tables at i1 and i2 (either may be a non-table),
 * sorted and without repeats, as a malloc'd array of strings that live in
 * those tables; *n gets the count.  NULL when there are none. */
static const char **keys_of(lua_State *L, int i1, int i2, size_t *n) {
  const char **keys = NULL;
  size_t cap = 0, k, out;
  int t, idx[2];
  idx[0] = i1;
  idx[1] = i2;
  *n = 0;
  for (t = 0; t < 2; t++) {
    if (!lua_istable(L, idx[t]))
      continue;
    lua_pushnil(L);
    while (lua_next(L, idx[t])) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        continue;
      if (*n == cap) {
        const char **grown = realloc(keys, (cap = cap ? 2 * cap : 16) *
                                               sizeof *keys);
        if (!grown) {
          free(keys);
          lua_pop(L, 1);
          *n = 0;
          return NULL;
        }
        keys = grown;
      }
      keys[(*n)++] = lua_tostring(L, -1);
    }
  }
  if (!*n)
    return keys;
  qsort(keys, *n, sizeof *keys, str_cmp);
  for (k = 1, out = 1; k < *n; k++)
    if (strcmp(keys[k], keys[out - 1]) != 0)
      keys[out++] = keys[k];
  *n = out;
  return keys;
}

int vd_policy_compare(lua_State *L, int tighter, int a, int b,
                      const char *const *excused, size_t nexcused,
                      unsigned *used, vd_buf_t *field, vd_buf_t *va,
                      vd_buf_t *vb) {
  const char **keys;
  size_t nkeys, k, m;
  int found = 0, top = lua_gettop(L);
  vd_buf_t path = VD_BUF_INIT;
  tighter = lua_absindex(L, tighter);
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  keys = keys_of(L, tighter, 0, &nkeys);
  for (k = 0; k < nkeys && !found; k++) {
    const char *key = keys[k];
    size_t n = strlen(key);
    int io;
    lua_getfield(L, tighter, key);
    io = lua_gettop(L);
    if (n > 2 && strcmp(key + n - 2, ".*") == 0) {
      /* every key of the map at the prefix, in either answer */
      const char **sub;
      size_t nsub;
      vd_buf_reset(&path);
      vd_buf_add(&path, key, n - 2);
      push_path(L, a, path.data);
      push_path(L, b, path.data);
      sub = keys_of(L, io + 1, io + 2, &nsub);
      for (m = 0; m < nsub && !found; m++) {
        path.len = n - 2;
        path.data[path.len] = '\0';
        vd_buf_addf(&path, ".%s", sub[m]);
        lua_getfield(L, io + 1, sub[m]);
        lua_getfield(L, io + 2, sub[m]);
        if (looser_value(L, io, io + 3, io + 4) &&
            !excused_by(key, path.data, excused, nexcused, used)) {
          found = 1;
          vd_buf_reset(field);
          vd_buf_adds(field, path.data);
          show(L, io + 3, va);
          show(L, io + 4, vb);
        }
        lua_pop(L, 2);
      }
      free(sub);
    } else {
      push_path(L, a, key);
      push_path(L, b, key);
      if (looser_value(L, io, io + 1, io + 2) &&
          !excused_by(key, key, excused, nexcused, used)) {
        found = 1;
        vd_buf_reset(field);
        vd_buf_adds(field, key);
        show(L, io + 1, va);
        show(L, io + 2, vb);
      }
    }
    lua_settop(L, top);
  }
  free(keys);
  vd_buf_release(&path);
  return found;
}

/* ------------------------------------------------------------------------
 * The grid of one kind
 * ------------------------------------------------------------------------ */

typedef struct exception {
  char *field, *reason, *grade; /* grade NULL: against the parent */
  unsigned used;
} exception_t;

typedef struct region {
  const char *code;   /* lives in the engine's region list, or "national" */
  int parent;         /* index of its parent, -1 for national */
  int own;            /* has a policy file of its own for the kind */
  char file[VD_PATH_MAX]; /* the file that decides it */
  exception_t *exc;   /* the deciding policy's P.loosens */
  size_t nexc;
  int looser_reported, grade_reported, error_reported;
} region_t;

typedef struct slot {
  int code;               /* 0 or the decision's error */
  vd_buf_t result, trace, message, line;
  int at;                 /* its decoded result's index in the harness */
} slot_t;

typedef struct grid {
  vd_engine_t *e;
  vd_policy_report_t *rep;
  const char *kind;
  unsigned problems;
  region_t *reg;
  size_t nreg;
  char **grades;          /* G.GRADES, highest first; none: one decision */
  size_t ngrades;
  char grade_field[64];
  int has_tighter;
  vd_buf_t tighter;       /* the national P.tighter as JSON */
  vd_buf_t inputs;        /* the points: at '\0' input-JSON '\0', ... */
  size_t npoints;
  unsigned refused, compared;
  slot_t *slots;          /* nreg x max(ngrades, 1) */
  const char **ex;        /* scratch for compare_slots: the excused */
  size_t *exi;            /* fields, their index in the region's exc */
  unsigned *used;         /* and how often each excused an answer */
  vd_decision_t d;
  vd_buf_t text, field, va, vb, err;
} grid_t;

static size_t per_point(const grid_t *g) {
  return g->ngrades ? g->ngrades : 1;
}

static void grid_problem(grid_t *g, const char *file, const char *detail) {
  vd_finding_t *f = vd_policy_report_add(g->rep, VD_FINDING_PROBLEM,
                                         VD_STAGE_GRID, file, 0, 0, NULL,
                                         g->text.data);
  if (detail)
    vd_policy_finding_detail(f, detail);
  g->problems++;
}

static char *dup_str(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  char *c = malloc(n + 1);
  if (!c)
    luaL_error(L, "out of memory");
  memcpy(c, s, n + 1);
  return c;
}

/* Read P.loosens of the policy table at top into reg (under pcall). */
static void read_loosens(lua_State *L, region_t *reg) {
  lua_Integer i, n;
  if (lua_getfield(L, -1, "loosens") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  n = (lua_Integer)luaL_len(L, -1);
  reg->exc = calloc(n ? (size_t)n : 1, sizeof *reg->exc);
  if (!reg->exc)
    luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    exception_t *x = &reg->exc[reg->nexc];
    int top = lua_gettop(L);
    /* lib/rules.lua checked each entry when the policy loaded */
    if (lua_geti(L, -1, i) == LUA_TTABLE &&
        lua_getfield(L, top + 1, "field") == LUA_TSTRING &&
        lua_getfield(L, top + 1, "reason") == LUA_TSTRING) {
      x->field = dup_str(L, top + 2);
      reg->nexc++; /* owned by reg from here, should the next copy raise */
      x->reason = dup_str(L, top + 3);
      if (lua_getfield(L, top + 1, "grade") == LUA_TSTRING)
        x->grade = dup_str(L, -1);
    }
    lua_settop(L, top);
  }
  lua_pop(L, 1);
}

/* Under pcall in the engine's state: everything the grid needs from the
 * policies.  Argument 1: the grid. */
static int prepare_k(lua_State *L) {
  grid_t *g = lua_touserdata(L, 1);
  vd_buf_t err = VD_BUF_INIT;
  size_t r;
  lua_Integer i, n;
  int P, G;
  lua_settop(L, 1);
  if (vd_engine_push_policy(g->e, g->kind, "national"))
    return 0;
  P = lua_gettop(L);
  if (lua_getfield(L, P, "tighter") != LUA_TTABLE ||
      lua_getfield(L, P, "fields") != LUA_TTABLE)
    return 0; /* a policy not written with lib/rules.lua: nothing to order */
  lua_pop(L, 1);
  if (vd_json_encode(L, -1, &g->tighter, "tighter", &err)) {
    lua_pushstring(L, err.data);
    vd_buf_release(&err);
    return lua_error(L);
  }
  lua_pop(L, 1);
  g->has_tighter = 1;

  /* require("lib.grid") as a policy would */
  lua_getfield(L, LUA_REGISTRYINDEX, "vd.base");
  lua_getfield(L, -1, "require");
  lua_pushliteral(L, "lib.grid");
  lua_call(L, 1, 1);
  G = lua_gettop(L);
  if (lua_getfield(L, G, "GRADE_FIELD") == LUA_TSTRING &&
      lua_getfield(L, P, "fields") == LUA_TTABLE &&
      lua_getfield(L, -1, lua_tostring(L, -2)) != LUA_TNIL) {
    snprintf(g->grade_field, sizeof g->grade_field, "%s",
             lua_tostring(L, -3));
    lua_pop(L, 2);
    if (lua_getfield(L, G, "GRADES") == LUA_TTABLE) {
      n = (lua_Integer)luaL_len(L, -1);
      g->grades = calloc(n ? (size_t)n : 1, sizeof *g->grades);
      if (!g->grades)
        return luaL_error(L, "out of memory");
      for (i = 1; i <= n; i++) {
        if (lua_geti(L, -1, i) != LUA_TSTRING)
          return luaL_error(L, "lib/grid.lua: GRADES must list strings");
        g->grades[g->ngrades++] = dup_str(L, -1);
        lua_pop(L, 1);
      }
    }
  }
  lua_settop(L, G);
  if (g->nreg == 1 && g->ngrades < 2)
    return 0; /* one region and no grades: nothing to compare */

  /* exceptions, from the policy that decides each region */
  for (r = 0; r < g->nreg; r++) {
    const char *pr = vd_engine_policy_region(g->e, g->kind, g->reg[r].code);
    if (!pr || vd_engine_push_policy(g->e, g->kind, pr))
      continue;
    vd_engine_policy_path(g->reg[r].file, pr, g->kind);
    read_loosens(L, &g->reg[r]);
    lua_pop(L, 1);
  }

  /* the points */
  lua_getfield(L, G, "inputs");
  lua_pushvalue(L, P);
  lua_pushinteger(L, (lua_Integer)(VD_GRID_DECISIONS /
                                   (g->nreg * per_point(g))));
  lua_call(L, 2, 1);
  if (!lua_istable(L, -1))
    return luaL_error(L, "lib/grid.lua: G.inputs must return a list");
  n = (lua_Integer)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    lua_geti(L, -1, i);
    if (!lua_istable(L, -1) || lua_getfield(L, -1, "at") != LUA_TSTRING ||
        lua_getfield(L, -2, "input") != LUA_TTABLE)
      return luaL_error(L, "lib/grid.lua: point %d needs at and input",
                        (int)i);
    vd_buf_adds(&g->inputs, lua_tostring(L, -2));
    vd_buf_addc(&g->inputs, '\0');
    vd_json_push_marker(L, 'o'); /* an object, even if it were empty */
    lua_setmetatable(L, -2);
    if (vd_json_encode(L, -1, &g->inputs, "input", &err)) {
      lua_pushstring(L, err.data);
      vd_buf_release(&err);
      return lua_error(L);
    }
    vd_buf_addc(&g->inputs, '\0');
    g->npoints++;
    lua_pop(L, 3);
  }
  return 0;
}

/* The request line of point (at, input) for region r and grade index gi
 * (-1: no grade field). */
static void make_line(grid_t *g, vd_buf_t *line, const char *at,
                      const char *input, const char *region, int gi) {
  vd_buf_reset(line);
  vd_buf_adds(line, "{\"kind\":");
  vd_buf_add_json_str(line, g->kind, strlen(g->kind));
  vd_buf_adds(line, ",\"region\":");
  vd_buf_add_json_str(line, region, strlen(region));
  vd_buf_adds(line, ",\"at\":");
  vd_buf_add_json_str(line, at, strlen(at));
  vd_buf_adds(line, ",\"input\":");
  if (gi < 0) {
    vd_buf_adds(line, input);
  } else {
    vd_buf_adds(line, "{");
    vd_buf_add_json_str(line, g->grade_field, strlen(g->grade_field));
    vd_buf_addc(line, ':');
    vd_buf_add_json_str(line, g->grades[gi], strlen(g->grades[gi]));
    if (strcmp(input, "{}") != 0)
      vd_buf_addc(line, ',');
    vd_buf_adds(line, input + 1);
  }
  vd_buf_addc(line, '}');
}

/* The rule ids of a trace (JSON), as "a, b, c", appended to out. */
static void rules_of(lua_State *H, const vd_buf_t *trace, vd_buf_t *out) {
  vd_buf_t err = VD_BUF_INIT;
  lua_Integer i, n;
  if (vd_json_decode_protected(H, trace->data, trace->len, 0, &err)) {
    vd_buf_adds(out, "?");
    vd_buf_release(&err);
    return;
  }
  n = lua_istable(H, -1) ? (lua_Integer)lua_rawlen(H, -1) : 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(H, -1, i);
    if (lua_istable(H, -1)) {
      if (lua_getfield(H, -1, "rule") == LUA_TSTRING) {
        vd_buf_adds(out, i > 1 ? ", " : "");
        vd_buf_adds(out, lua_tostring(H, -1));
      }
      lua_pop(H, 1);
    }
    lua_pop(H, 1);
  }
  if (n == 0)
    vd_buf_adds(out, "none");
  lua_pop(H, 1);
}

/* Report that slot sa (who) is looser than slot sb (than): the field,
 * both values, the rules each fired, and the input. */
static void report_looser(grid_t *g, lua_State *H, const char *file,
                          const char *what, const char *who,
                          const char *than, const slot_t *sa,
                          const slot_t *sb) {
  vd_buf_t detail = VD_BUF_INIT;
  vd_buf_reset(&g->text);
  vd_buf_addf(&g->text, "%s: %s: %s: %s %s, %s %s (rules %s: ", g->kind,
              what, g->field.data, who, g->va.data, than, g->vb.data, who);
  rules_of(H, &sa->trace, &g->text);
  vd_buf_addf(&g->text, "; %s: ", than);
  rules_of(H, &sb->trace, &g->text);
  vd_buf_adds(&g->text, ")");
  vd_buf_addf(&detail, "      input (%s): %s\n      input (%s): %s\n", who,
              sa->line.data, than, sb->line.data);
  grid_problem(g, file, detail.data);
  vd_buf_release(&detail);
}

/* The excused fields of region r: its exceptions against its parent
 * (grade NULL) or for grade. */
static size_t excused_list(const region_t *r, const char *grade,
                           const char **out, size_t *index) {
  size_t i, n = 0;
  for (i = 0; i < r->nexc; i++) {
    const exception_t *x = &r->exc[i];
    if (grade ? (x->grade && strcmp(x->grade, grade) == 0)
              : (!x->grade && r->own)) {
      out[n] = x->field;
      index[n++] = i;
    }
  }
  return n;
}

static int compare_slots(grid_t *g, lua_State *H, int tighter, region_t *r,
                         const char *grade, const slot_t *sa,
                         const slot_t *sb) {
  size_t n = excused_list(r, grade, g->ex, g->exi), i;
  int looser;
  memset(g->used, 0, (n ? n : 1) * sizeof *g->used);
  looser = vd_policy_compare(H, tighter, sa->at, sb->at, g->ex, n, g->used,
                             &g->field, &g->va, &g->vb);
  for (i = 0; i < n; i++)
    r->exc[g->exi[i]].used += g->used[i];
  g->compared++;
  return looser;
}

static void decide_point(grid_t *g, const char *at, const char *input) {
  size_t r, k, per = per_point(g);
  for (r = 0; r < g->nreg; r++)
    for (k = 0; k < per; k++) {
      slot_t *s = &g->slots[r * per + k];
      make_line(g, &s->line, at, input, g->reg[r].code,
                g->ngrades ? (int)k : -1);
      s->code = vd_engine_decide(g->e, s->line.data, s->line.len, 0, &g->d);
      vd_buf_reset(&s->result);
      vd_buf_reset(&s->trace);
      vd_buf_reset(&s->message);
      if (s->code == 0) {
        vd_buf_add(&s->result, g->d.result.data, g->d.result.len);
        vd_buf_add(&s->trace, g->d.trace.data, g->d.trace.len);
      } else if (g->d.message.len) {
        vd_buf_add(&s->message, g->d.message.data, g->d.message.len);
      }
    }
}

static void compare_point(grid_t *g, lua_State *H, int tighter) {
  size_t r, k, per = per_point(g);
  int base = lua_gettop(H);
  for (r = 0; r < g->nreg * per; r++) {
    slot_t *s = &g->slots[r];
    s->at = 0;
    if (s->code == 0 &&
        vd_json_decode_protected(H, s->result.data, s->result.len, 0,
                                 &g->err) == 0)
      s->at = lua_gettop(H);
  }
  for (r = 0; r < g->nreg; r++) {
    region_t *reg = &g->reg[r];
    /* errors other than bad_input are problems of the region's file */
    for (k = 0; k < per && !reg->error_reported; k++) {
      slot_t *s = &g->slots[r * per + k];
      /* where the parent fails too, the fault is reported there */
      if (s->code && s->code != VD_EBAD_INPUT &&
          (reg->parent < 0 ||
           g->slots[(size_t)reg->parent * per + k].code == 0)) {
        vd_buf_t detail = VD_BUF_INIT;
        reg->error_reported = 1;
        vd_buf_reset(&g->text);
        vd_buf_addf(&g->text, "%s: %s fails on a grid input: %s: %s",
                    g->kind, reg->code, vd_err_name(s->code),
                    s->message.len ? s->message.data : "");
        vd_buf_addf(&detail, "      input: %s\n", s->line.data);
        grid_problem(g, reg->file, detail.data);
        vd_buf_release(&detail);
      }
    }
    /* against the parent, grade by grade */
    if (reg->parent >= 0 && reg->own)
      for (k = 0; k < per && !reg->looser_reported; k++) {
        slot_t *sa = &g->slots[r * per + k];
        slot_t *sb = &g->slots[(size_t)reg->parent * per + k];
        if (!sa->at || !sb->at) {
          if (sa->at || sb->at)
            g->refused++;
          continue;
        }
        if (compare_slots(g, H, tighter, reg, NULL, sa, sb)) {
          vd_buf_t what = VD_BUF_INIT;
          reg->looser_reported = 1;
          vd_buf_addf(&what, "%s is looser than %s", reg->code,
                      g->reg[reg->parent].code);
          report_looser(g, H, reg->file, what.data, reg->code,
                        g->reg[reg->parent].code, sa, sb);
          vd_buf_release(&what);
        }
      }
    /* each grade against the one just below it */
    for (k = 0; k + 1 < g->ngrades && !reg->grade_reported; k++) {
      slot_t *sa = &g->slots[r * per + k];
      slot_t *sb = &g->slots[r * per + k + 1];
      if (!sa->at || !sb->at) {
        if (sa->at || sb->at)
          g->refused++;
        continue;
      }
      if (compare_slots(g, H, tighter, reg, g->grades[k], sa, sb)) {
        vd_buf_t what = VD_BUF_INIT;
        reg->grade_reported = 1;
        vd_buf_addf(&what, "in %s, grade %s gets a looser answer than %s",
                    reg->code, g->grades[k], g->grades[k + 1]);
        report_looser(g, H, reg->file, what.data, g->grades[k],
                      g->grades[k + 1], sa, sb);
        vd_buf_release(&what);
      }
    }
  }
  lua_settop(H, base);
}

/* The nearest ancestor of code the engine accepts, else "national". */
static const char *parent_code(vd_engine_t *e, const char *code) {
  char tmp[32];
  char *dash;
  size_t i;
  snprintf(tmp, sizeof tmp, "%s", code);
  while ((dash = strrchr(tmp, '-')) != NULL) {
    *dash = '\0';
    for (i = 0; i < vd_engine_region_count(e); i++)
      if (strcmp(vd_engine_region(e, i), tmp) == 0)
        return vd_engine_region(e, i);
  }
  return "national";
}

static int find_region(const grid_t *g, const char *code) {
  size_t i;
  for (i = 0; i < g->nreg; i++)
    if (strcmp(g->reg[i].code, code) == 0)
      return (int)i;
  return -1;
}

static int add_region(grid_t *g, const char *code, int own) {
  int i = find_region(g, code);
  if (i >= 0) {
    g->reg[i].own |= own;
    return i;
  }
  memset(&g->reg[g->nreg], 0, sizeof g->reg[g->nreg]);
  g->reg[g->nreg].code = code;
  g->reg[g->nreg].parent = -1;
  g->reg[g->nreg].own = own;
  vd_engine_policy_path(g->reg[g->nreg].file, "national", g->kind);
  return (int)g->nreg++;
}

static void list_exceptions(grid_t *g) {
  size_t r, i;
  for (r = 0; r < g->nreg; r++) {
    region_t *reg = &g->reg[r];
    if (!reg->own && reg->parent >= 0)
      continue; /* its exceptions are listed with its deciding file */
    for (i = 0; i < reg->nexc; i++) {
      exception_t *x = &reg->exc[i];
      vd_buf_reset(&g->text);
      if (x->grade)
        vd_buf_addf(&g->text, "%s: exception: %s may be looser for grade %s "
                              "than for the grade below it",
                    g->kind, x->field, x->grade);
      else if (reg->parent >= 0)
        vd_buf_addf(&g->text, "%s: exception: %s may be looser in %s than in "
                              "%s", g->kind, x->field, reg->code,
                    g->reg[reg->parent].code);
      else
        continue;
      vd_buf_addf(&g->text, " (%u grid answer%s): %s", x->used,
                  x->used == 1 ? "" : "s", x->reason);
      vd_policy_report_add(g->rep, VD_FINDING_NOTE, VD_STAGE_GRID, reg->file,
                           0, 0, NULL, g->text.data);
    }
  }
}

static void grid_kind(grid_t *g) {
  vd_sandbox_t *esb = vd_engine_sandbox(g->e);
  vd_sandbox_t h;
  size_t i, r, per, most;
  const char *p;
  int tighter;

  /* the regions: national, each with a file of its own, their parents */
  add_region(g, "national", 0);
  for (i = 0; i < vd_engine_region_count(g->e); i++) {
    const char *code = vd_engine_region(g->e, i);
    const char *pr = vd_engine_policy_region(g->e, g->kind, code);
    if (pr && strcmp(pr, code) == 0) {
      int ri = add_region(g, code, 1);
      int pi = add_region(g, parent_code(g->e, code), 0);
      g->reg[ri].parent = pi;
    }
  }
  for (r = 0; r < g->nreg; r++)
    if (g->reg[r].parent < 0 && strcmp(g->reg[r].code, "national") != 0)
      g->reg[r].parent = add_region(g, parent_code(g->e, g->reg[r].code), 0);

  vd_sandbox_arm(esb, 1000000000UL, 256u << 20);
  lua_pushcfunction(esb->L, prepare_k);
  lua_pushlightuserdata(esb->L, g);
  if (lua_pcall(esb->L, 1, 0, 0) != LUA_OK) {
    vd_buf_reset(&g->text);
    vd_buf_addf(&g->text, "%s: cannot build the grid: %s", g->kind,
                lua_type(esb->L, -1) == LUA_TSTRING ? lua_tostring(esb->L, -1)
                                                    : "a non-string error");
    grid_problem(g, NULL, NULL);
    lua_pop(esb->L, 1);
    vd_sandbox_disarm(esb);
    esb->limit = 0;
    return;
  }
  vd_sandbox_disarm(esb);
  esb->limit = 0;
  if (!g->has_tighter || (g->nreg == 1 && g->ngrades < 2))
    return; /* no order declared, or nothing to compare */

  if (vd_sandbox_init(&h, &g->err)) {
    vd_buf_reset(&g->text);
    vd_buf_addf(&g->text, "%s: cannot create the grid's state: %s", g->kind,
                g->err.data);
    grid_problem(g, NULL, NULL);
    return;
  }
  if (vd_json_decode_protected(h.L, g->tighter.data, g->tighter.len, 0,
                               &g->err)) {
    vd_buf_reset(&g->text);
    vd_buf_addf(&g->text, "%s: tighter cannot be read back", g->kind);
    grid_problem(g, NULL, NULL);
    vd_sandbox_release(&h);
    return;
  }
  tighter = lua_gettop(h.L);
  per = per_point(g);
  for (r = 0, most = 1; r < g->nreg; r++)
    if (g->reg[r].nexc > most)
      most = g->reg[r].nexc;
  g->slots = calloc(g->nreg * per, sizeof *g->slots);
  g->ex = calloc(most, sizeof *g->ex);
  g->exi = calloc(most, sizeof *g->exi);
  g->used = calloc(most, sizeof *g->used);
  if (!g->slots || !g->ex || !g->exi || !g->used) {
    vd_buf_reset(&g->text);
    vd_buf_addf(&g->text, "%s: out of memory for the grid", g->kind);
    grid_problem(g, NULL, NULL);
    goto done;
  }
  for (i = 0, p = g->inputs.data; i < g->npoints; i++) {
    const char *at = p, *input = p + strlen(p) + 1;
    p = input + strlen(input) + 1;
    decide_point(g, at, input);
    compare_point(g, h.L, tighter);
  }
  list_exceptions(g);

  vd_buf_reset(&g->text);
  vd_buf_addf(&g->text, "grid: %s: %zu inputs x %zu grade%s in", g->kind,
              g->npoints, per, per == 1 ? "" : "s");
  for (r = 0; r < g->nreg; r++)
    vd_buf_addf(&g->text, "%s %s", r ? "," : "", g->reg[r].code);
  vd_buf_addf(&g->text, "; %u pairs of answers compared, %u not (bad_input "
                        "on one side)", g->compared, g->refused);
  vd_policy_report_add(g->rep, VD_FINDING_NOTE, VD_STAGE_GRID, NULL, 0, 0,
                       NULL, g->text.data);

done:
  for (r = 0; g->slots && r < g->nreg * per; r++) {
    vd_buf_release(&g->slots[r].result);
    vd_buf_release(&g->slots[r].trace);
    vd_buf_release(&g->slots[r].message);
    vd_buf_release(&g->slots[r].line);
  }
  free(g->slots);
  free(g->ex);
  free(g->exi);
  free(g->used);
  g->slots = NULL;
  g->ex = NULL;
  g->exi = NULL;
  g->used = NULL;
  vd_sandbox_release(&h);
}

unsigned vd_policy_check_grid(vd_engine_t *e, vd_policy_report_t *rep) {
  size_t k, r, i, nregions = vd_engine_region_count(e);
  unsigned problems = 0;
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    grid_t g;
    memset(&g, 0, sizeof g);
    g.e = e;
    g.rep = rep;
    g.kind = vd_engine_kind(e, k);
    /* national, each region, and a parent for each: at most 2n + 1 */
    g.reg = calloc(2 * nregions + 1, sizeof *g.reg);
    if (!g.reg)
      return problems;
    vd_decision_init(&g.d);
    grid_kind(&g);
    problems += g.problems;
    for (r = 0; r < g.nreg; r++) {
      for (i = 0; i < g.reg[r].nexc; i++) {
        free(g.reg[r].exc[i].field);
        free(g.reg[r].exc[i].reason);
        free(g.reg[r].exc[i].grade);
      }
      free(g.reg[r].exc);
    }
    free(g.reg);
    for (i = 0; i < g.ngrades; i++)
      free(g.grades[i]);
    free(g.grades);
    vd_decision_release(&g.d);
    vd_buf_release(&g.tighter);
    vd_buf_release(&g.inputs);
    vd_buf_release(&g.text);
    vd_buf_release(&g.field);
    vd_buf_release(&g.va);
    vd_buf_release(&g.vb);
    vd_buf_release(&g.err);
  }
  return problems;
}
