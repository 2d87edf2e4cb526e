/*
 * replay.c - deciding recorded requests again (include/verdict/replay.h).
 *
 * Owns, for one vd_replay_run(): the ranges of the selection, and the lanes
 * (one per thread), each with its row cursor on the history
 * (history_query.c), its engines (one per
 * revision met, built on first use from the files the database stored; or
 * one of the candidate and one of the baseline, built when the lane
 * starts: lanes build theirs side by side), the outcomes each kind
 * declares, a history reader for new questions, and what it counted; then
 * the merged report.
 *
 * Invariants:
 *   - the selection is cut into ranges (vd_history_split(): seq in a
 *     SQLite file, received_ms on PostgreSQL); each lane takes the next
 *     range not taken, in order, until none is left, so every row is
 *     decided once, a lane's rows are in the history's order, and a lane
 *     slowed by the machine takes fewer ranges instead of holding up the
 *     others at the end;
 *   - the report does not depend on which lane took which range: changes
 *     and row errors are kept in seq order, rules and unloadable
 *     revisions in the order of the row that first had them;
 *   - results are compared as the canonical JSON bytes the engine writes;
 *     only a differing pair is parsed (a yajl tree, outside every Lua
 *     state) to name the fields that changed;
 *   - rule and money counts come from the parsed trace and result, never
 *     from searching their text;
 *   - what a lane keeps grows with the rules, kinds, regions and outcome
 *     values met and the first max_changes changes, never with the rows.
 *
 * Threads: vd_replay_run() on its caller's; one thread per lane, sharing
 * nothing but the read-only options, one watchdog (one slot each) and the
 * ranges, which the caller makes while the lanes build their first
 * engines (a lane waits for them before it takes one, then takes each
 * with an atomic counter; a received window's first and last ranges are
 * made after the others, which the lanes take meanwhile).
 */
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yajl_tree.h>

#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/replay.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"
#include "verdict/watchdog.h"

#define DEFAULT_MAX_CHANGES 1000
#define ROW_ERRORS_KEPT 10 /* the first, in the history's order */

/* A row's place in the selection's order, whichever lane decides it: its
 * range, then its number within the range; the low 6 bits free for the
 * position of a rule within the row's traces (count_rules()). */
#define PLACE(range, nth) (((long long)(range) << 38) | ((long long)(nth) << 6))

/* Money moved per decision, in fen: -1000, -500 ... 1000 yuan. */
const long long vd_replay_hist_edges[VD_REPLAY_HIST_BUCKETS - 1] = {
    -100000, -50000, -20000, -10000, -5000, -1000, 0,
    1000,    5000,   10000,  20000,  50000, 100000};

/* The money histogram behind p50 and p90: values below 1000 fen exactly,
 * above to three significant figures: 900 buckets a decade. */
#define QBUCKETS (1000 + 17 * 900)

const char *vd_outcome_as_name(vd_outcome_as_t as) {
  switch (as) {
  case VD_OUTCOME_MONEY: return "money";
  case VD_OUTCOME_DEADLINE: return "deadline";
  case VD_OUTCOME_LEVEL: return "level";
  default: return "value";
  }
}

/* The outcomes one kind declares: paths below "result", as declared. */
typedef struct decl {
  char kind[32];
  size_t n;
  char **path;
  vd_outcome_as_t *as;
} decl_t;

/* An engine of a recorded revision, or why there is none. */
typedef struct rev_engine {
  char revision[80];
  vd_engine_t *engine; /* NULL if it could not be rebuilt */
  char *why;
  int unloadable;      /* stored intact, refused by the present engine */
  int outcomes_read;   /* its outcomes are in the lane's declarations */
} rev_engine_t;

/* The selection's ranges, shared by the lanes.  The caller makes them
 * while the lanes build their first engines; a lane waits for them before
 * it takes one.  A received window's (vd_history_split_middle()) come in
 * two steps: all but the first and the last at once, from two seeks,
 * then those two, the rows out of the received order at either end, from
 * a pass over the time index (on a busy history, longer than an engine's
 * build), which the lanes need not wait for: they take the middle first. */
typedef struct ranges {
  pthread_mutex_t lock;
  pthread_cond_t made;
  int state;                /* 0: being made, 1: all but the ends made,
                             * 2: all made, -1: could not be */
  int ends_later;           /* made in two steps (set before state 1) */
  int64_t *bounds;          /* range i is bounds[i] <= key < bounds[i + 1] */
  int n;
  int next;                 /* the next range not taken (atomic) */
} ranges_t;

typedef struct lane {
  const vd_replay_opts_t *o;
  int index;                /* lane number: 0, 1, ... */
  ranges_t *ranges;         /* shared */
  const char *first_rev;    /* the determinism check: the revision whose
                             * engine is built while the ranges are made
                             * (the selection's, or the active one: the
                             * likeliest to decide its rows); NULL: none */
  long long place;          /* the row in hand's place in the selection's
                             * order: PLACE(range, its number there) */
  vd_history_rows_t *rows;  /* the lane's cursor: the row in hand's */
  vd_engine_t *candidate;   /* this lane's engine of o->candidate */
  vd_engine_t *baseline;    /* and of o->baseline, or NULL */
  rev_engine_t *revs;       /* engines of the recorded revisions met */
  size_t nrevs;
  decl_t *decls;            /* the outcomes of each kind, both bundles' */
  size_t ndecls;
  vd_watchdog_t *watchdog;  /* shared; NULL: always count */
  vd_decision_t d, bd;      /* the candidate's and the baseline's */
  long long max_changes;
  /* what the lane counted: the parts of a report it fills */
  vd_replay_report_t rep;
  long long *q_before, *q_after; /* QBUCKETS each */
  vd_buf_t fatal;           /* reading the database failed: why; or, with
                             * failed_side, why an engine would not load */
  int failed_side;          /* 1: the candidate would not load in this
                             * lane, 2: the baseline; fatal says why */
  int failed_rc;            /* and vd_engine_new()'s code */
  int cancelled;            /* stopped by o->cancel before its last row */
} lane_t;

/* ========================================================================
 * JSON trees
 * ====================================================================== */

/* Parse the NUL-terminated JSON text S into a tree (NULL: S is NULL or
 * not JSON).  The caller frees it with yajl_tree_free(). */
static yajl_val parse(const char *s) {
  return s ? yajl_tree_parse(s, NULL, 0) : NULL;
}

/* V as JSON text, members in document order. */
static void tree_json(vd_buf_t *out, yajl_val v) {
  size_t i;
  if (YAJL_IS_NULL(v)) {
    vd_buf_adds(out, "null");
  } else if (YAJL_IS_TRUE(v)) {
    vd_buf_adds(out, "true");
  } else if (YAJL_IS_FALSE(v)) {
    vd_buf_adds(out, "false");
  } else if (YAJL_IS_NUMBER(v)) {
    vd_buf_adds(out, v->u.number.r); /* as written: canonical already */
  } else if (YAJL_IS_STRING(v)) {
    vd_buf_add_json_str(out, v->u.string, strlen(v->u.string));
  } else if (YAJL_IS_ARRAY(v)) {
    vd_buf_addc(out, '[');
    for (i = 0; i < v->u.array.len; i++) {
      if (i)
        vd_buf_addc(out, ',');
      tree_json(out, v->u.array.values[i]);
    }
    vd_buf_addc(out, ']');
  } else {
    vd_buf_addc(out, '{');
    for (i = 0; i < v->u.object.len; i++) {
      const char *k = v->u.object.keys[i];
      if (i)
        vd_buf_addc(out, ',');
      vd_buf_add_json_str(out, k, strlen(k));
      vd_buf_addc(out, ':');
      tree_json(out, v->u.object.values[i]);
    }
    vd_buf_addc(out, '}');
  }
}

/* The member KEY of object V, or NULL. */
static yajl_val member(yajl_val v, const char *key) {
  size_t i;
  if (!YAJL_IS_OBJECT(v))
    return NULL;
  for (i = 0; i < v->u.object.len; i++)
    if (strcmp(v->u.object.keys[i], key) == 0)
      return v->u.object.values[i];
  return NULL;
}

/* ========================================================================
 * Changes
 * ====================================================================== */

/* Append to C the fields where A (old) and B (new) differ, below PATH;
 * NULL is an absent value.  Objects are compared member by member,
 * anything else as a whole. */
static void diff_values(vd_replay_change_t *c, yajl_val a, yajl_val b,
                        vd_buf_t *path) {
  vd_buf_t va = VD_BUF_INIT, vb = VD_BUF_INIT;
  size_t mark = path->len, i;
  if (a && b && YAJL_IS_OBJECT(a) && YAJL_IS_OBJECT(b)) {
    int pass;
    for (pass = 0; pass < 2; pass++) { /* keys of a, then keys only in b */
      yajl_val src = pass ? b : a;
      for (i = 0; i < src->u.object.len; i++) {
        const char *k = src->u.object.keys[i];
        if (pass && member(a, k))
          continue;
        vd_buf_addf(path, "%s%s", path->len ? "." : "", k);
        diff_values(c, pass ? NULL : src->u.object.values[i],
                    pass ? src->u.object.values[i] : member(b, k), path);
        path->len = mark;
        path->data[mark] = '\0';
      }
    }
    return;
  }
  if (a)
    tree_json(&va, a);
  if (b)
    tree_json(&vb, b);
  if (!a != !b || (a && strcmp(va.data, vb.data) != 0)) {
    vd_replay_diff_t *d = realloc(c->diffs, (c->ndiffs + 1) * sizeof *d);
    if (d) {
      c->diffs = d;
      d = &c->diffs[c->ndiffs++];
      d->field = strdup(path->data ? path->data : "");
      d->old_json = a ? vd_buf_detach(&va, NULL) : NULL;
      d->new_json = b ? vd_buf_detach(&vb, NULL) : NULL;
      d->recorded_json = NULL;
      d->outcome = 0;
    }
  }
  vd_buf_release(&va);
  vd_buf_release(&vb);
}

/* An outcome as one JSON object: {"result":..,"trace":..} or
 * {"error":code}. */
static void outcome_json(vd_buf_t *o, const char *result, const char *trace,
                         const char *code) {
  vd_buf_reset(o);
  if (code) {
    vd_buf_adds(o, "{\"error\":");
    vd_buf_add_json_str(o, code, strlen(code));
    vd_buf_addc(o, '}');
  } else {
    vd_buf_addf(o, "{\"result\":%s,\"trace\":%s}", result ? result : "null",
                trace ? trace : "null");
  }
}

/* The value at the dotted PATH below V ("result.offer_fen"), or NULL. */
static yajl_val at_path(yajl_val v, const char *path) {
  char key[128];
  while (v && *path) {
    size_t n = strcspn(path, ".");
    if (n >= sizeof key)
      return NULL;
    memcpy(key, path, n);
    key[n] = '\0';
    v = member(v, key);
    path += n + (path[n] == '.');
  }
  return v;
}

/* ========================================================================
 * Declared outcomes
 * ====================================================================== */

typedef struct outcomes_call {
  vd_engine_t *e;
  const char *kind;
  vd_buf_t *json;
} outcomes_call_t;

/* Under pcall in the engine's state: the national policy of the kind's
 * `outcomes` table as JSON in call->json (left empty when there is
 * none).  Argument 1: the call. */
static int outcomes_k(lua_State *L) {
  outcomes_call_t *c = lua_touserdata(L, 1);
  vd_buf_t err = VD_BUF_INIT;
  lua_settop(L, 1);
  if (vd_engine_push_policy(c->e, c->kind, "national"))
    return 0;
  if (lua_getfield(L, -1, "outcomes") != LUA_TTABLE)
    return 0;
  if (vd_json_encode(L, -1, c->json, "outcomes", &err)) {
    lua_pushstring(L, err.data ? err.data : "cannot encode outcomes");
    vd_buf_release(&err);
    return lua_error(L);
  }
  return 0;
}

static decl_t *decl_find(lane_t *l, const char *kind) {
  size_t i;
  for (i = 0; i < l->ndecls; i++)
    if (strcmp(l->decls[i].kind, kind) == 0)
      return &l->decls[i];
  return NULL;
}

/* Add to the lane's declarations what engine E's kinds declare (a path
 * declared by both bundles counts once, as the first declares it). */
static int read_outcomes(lane_t *l, vd_engine_t *e, vd_buf_t *err) {
  vd_sandbox_t *sb = vd_engine_sandbox(e);
  size_t k, i;
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    const char *kind = vd_engine_kind(e, k);
    vd_buf_t json = VD_BUF_INIT;
    outcomes_call_t c = {e, kind, &json};
    yajl_val t;
    decl_t *d = decl_find(l, kind);
    if (!d) {
      d = realloc(l->decls, (l->ndecls + 1) * sizeof *d);
      if (!d)
        return VD_ENOMEM;
      l->decls = d;
      d = &d[l->ndecls++];
      memset(d, 0, sizeof *d);
      snprintf(d->kind, sizeof d->kind, "%s", kind);
    }
    vd_sandbox_arm(sb, 100000000UL, 64u << 20);
    lua_pushcfunction(sb->L, outcomes_k);
    lua_pushlightuserdata(sb->L, &c);
    if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
      vd_buf_addf(err, "%s: outcomes: %s", kind,
                  lua_type(sb->L, -1) == LUA_TSTRING ? lua_tostring(sb->L, -1)
                                                     : "a non-string error");
      lua_pop(sb->L, 1);
      vd_sandbox_disarm(sb);
      sb->limit = 0;
      vd_buf_release(&json);
      return VD_EINVALID;
    }
    vd_sandbox_disarm(sb);
    sb->limit = 0;
    t = parse(json.data);
    for (i = 0; t && YAJL_IS_OBJECT(t) && i < t->u.object.len; i++) {
      const char *path = t->u.object.keys[i];
      const char *as = YAJL_GET_STRING(t->u.object.values[i]);
      size_t j;
      char **np;
      vd_outcome_as_t *na;
      for (j = 0; j < d->n; j++)
        if (strcmp(d->path[j], path) == 0)
          break;
      if (j < d->n)
        continue;
      np = realloc(d->path, (d->n + 1) * sizeof *np);
      if (np)
        d->path = np;
      na = realloc(d->as, (d->n + 1) * sizeof *na);
      if (na)
        d->as = na;
      if (!np || !na || !(d->path[d->n] = strdup(path))) {
        yajl_tree_free(t);
        vd_buf_release(&json);
        return VD_ENOMEM;
      }
      d->as[d->n++] = !as                          ? VD_OUTCOME_VALUE
                      : strcmp(as, "money") == 0    ? VD_OUTCOME_MONEY
                      : strcmp(as, "deadline") == 0 ? VD_OUTCOME_DEADLINE
                      : strcmp(as, "level") == 0    ? VD_OUTCOME_LEVEL
                                                    : VD_OUTCOME_VALUE;
    }
    yajl_tree_free(t);
    vd_buf_release(&json);
  }
  return 0;
}

/* The declared outcome of D that FIELD ("result.deadlines.solution") is
 * at or below, or -1. */
static int outcome_of(const decl_t *d, const char *field) {
  size_t i, n;
  if (!d || strncmp(field, "result.", 7) != 0)
    return -1;
  field += 7;
  for (i = 0; i < d->n; i++) {
    n = strlen(d->path[i]);
    if (strncmp(field, d->path[i], n) == 0 &&
        (field[n] == '\0' || field[n] == '.'))
      return (int)i;
  }
  return -1;
}

/* The money of result R (a tree): the sum of the kind's money outcomes
 * present, whole fen; -1 when there is none. */
static long long money_of(const decl_t *d, yajl_val r) {
  long long sum = -1;
  size_t i;
  for (i = 0; d && r && i < d->n; i++) {
    yajl_val v;
    if (d->as[i] != VD_OUTCOME_MONEY || !(v = at_path(r, d->path[i])))
      continue;
    if (sum < 0)
      sum = 0;
    sum += YAJL_IS_INTEGER(v)  ? YAJL_GET_INTEGER(v)
           : YAJL_IS_DOUBLE(v) ? (long long)YAJL_GET_DOUBLE(v)
                               : 0;
  }
  return sum;
}

/* ========================================================================
 * Counting: rules, money, fields, groups
 * ====================================================================== */

static vd_replay_rule_t *rule_slot(vd_replay_report_t *rep, const char *rule) {
  vd_replay_rule_t *r;
  size_t j;
  for (j = 0; j < rep->nrules; j++)
    if (strcmp(rep->rules[j].rule, rule) == 0)
      return &rep->rules[j];
  r = realloc(rep->rules, (j + 1) * sizeof *r);
  if (!r)
    return NULL;
  rep->rules = r;
  if (!(r[j].rule = strdup(rule)))
    return NULL;
  r[j].before = r[j].after = 0;
  r[j].order = 0;
  rep->nrules++;
  return &r[j];
}

/* Count each entry's rule of TRACE (a parsed array of {rule, basis}), as
 * before (the baseline's) or after (the candidate's).  A rule met for the
 * first time is placed after the row's place: the baseline's entries
 * before the candidate's, each trace's in its order (the first 31). */
static void count_rules(lane_t *l, yajl_val t, int after) {
  size_t i;
  for (i = 0; t && YAJL_IS_ARRAY(t) && i < t->u.array.len; i++) {
    yajl_val rule = member(t->u.array.values[i], "rule");
    vd_replay_rule_t *r;
    if (!rule || !YAJL_IS_STRING(rule) || !(r = rule_slot(&l->rep, rule->u.string)))
      continue;
    if (!r->before && !r->after) /* new */
      r->order = l->place | (after ? 32 : 0) | (long long)(i < 31 ? i : 31);
    if (after)
      r->after++;
    else
      r->before++;
  }
}

static int has_rule(yajl_val t, const char *rule) {
  size_t i;
  for (i = 0; t && YAJL_IS_ARRAY(t) && i < t->u.array.len; i++) {
    yajl_val r = member(t->u.array.values[i], "rule");
    if (r && YAJL_IS_STRING(r) && strcmp(r->u.string, rule) == 0)
      return 1;
  }
  return 0;
}

/* The rules of A that B does not have, each once, appended to *OUT. */
static void rules_only(yajl_val a, yajl_val b, char ***out, size_t *n) {
  size_t i, j;
  for (i = 0; a && YAJL_IS_ARRAY(a) && i < a->u.array.len; i++) {
    yajl_val r = member(a->u.array.values[i], "rule");
    char **no;
    if (!r || !YAJL_IS_STRING(r) || has_rule(b, r->u.string))
      continue;
    for (j = 0; j < *n; j++)
      if (strcmp((*out)[j], r->u.string) == 0)
        break;
    if (j < *n || !(no = realloc(*out, (*n + 1) * sizeof *no)))
      continue;
    *out = no;
    if ((no[*n] = strdup(r->u.string)))
      (*n)++;
  }
}

static size_t qbucket(long long v) {
  long long scale = 1;
  size_t e = 0;
  if (v < 1000)
    return v < 0 ? 0 : (size_t)v;
  while (v / scale >= 1000)
    scale *= 10, e++;
  return 1000 + (e - 1) * 900 + (size_t)(v / scale - 100);
}

static long long qvalue(size_t b) {
  long long scale = 1;
  size_t e;
  if (b < 1000)
    return (long long)b;
  b -= 1000;
  for (e = 0; e <= b / 900; e++)
    scale *= 10;
  return (long long)(b % 900 + 100) * scale;
}

static void add_offer(vd_replay_offers_t *s, long long *q, long long v) {
  s->count++;
  s->total += v;
  if (v > s->max)
    s->max = v;
  q[qbucket(v)]++;
}

/* p50 and p90 of S from its histogram Q. */
static void offer_quantiles(vd_replay_offers_t *s, const long long *q) {
  long long seen = 0, want50 = s->count / 2, want90 = (s->count * 9) / 10;
  size_t b;
  int have50 = 0;
  if (s->count == 0)
    return;
  if (want90 >= s->count)
    want90 = s->count - 1;
  for (b = 0; b < QBUCKETS; b++) {
    seen += q[b];
    if (!have50 && seen > want50)
      s->p50 = qvalue(b), have50 = 1;
    if (seen > want90) {
      s->p90 = qvalue(b);
      break;
    }
  }
}

static int hist_bucket(long long delta) {
  int i;
  for (i = 0; i < VD_REPLAY_HIST_BUCKETS - 1; i++)
    if (delta < vd_replay_hist_edges[i])
      return i;
  return VD_REPLAY_HIST_BUCKETS - 1;
}

static vd_replay_group_t *group_for(vd_replay_report_t *rep, const char *kind,
                                    const char *region) {
  vd_replay_group_t *g;
  size_t i;
  kind = kind ? kind : "";
  region = region ? region : "";
  for (i = 0; i < rep->ngroups; i++)
    if (strcmp(rep->groups[i].kind, kind) == 0 &&
        strcmp(rep->groups[i].region, region) == 0)
      return &rep->groups[i];
  g = realloc(rep->groups, (rep->ngroups + 1) * sizeof *g);
  if (!g)
    return NULL;
  rep->groups = g;
  g = &g[rep->ngroups++];
  memset(g, 0, sizeof *g);
  snprintf(g->kind, sizeof g->kind, "%s", kind);
  snprintf(g->region, sizeof g->region, "%s", region);
  return g;
}

static vd_replay_field_t *field_for(vd_replay_report_t *rep, const char *kind,
                                    const char *field, vd_outcome_as_t as) {
  vd_replay_field_t *f;
  size_t i;
  for (i = 0; i < rep->nfields; i++)
    if (strcmp(rep->fields[i].kind, kind) == 0 &&
        strcmp(rep->fields[i].field, field) == 0)
      return &rep->fields[i];
  f = realloc(rep->fields, (rep->nfields + 1) * sizeof *f);
  if (!f)
    return NULL;
  rep->fields = f;
  f = &f[rep->nfields];
  memset(f, 0, sizeof *f);
  f->kind = strdup(kind);
  f->field = strdup(field);
  f->as = as;
  if (!f->kind || !f->field) {
    free(f->kind);
    free(f->field);
    return NULL;
  }
  rep->nfields++;
  return f;
}

static vd_replay_move_t *move_for(vd_replay_report_t *rep, const char *kind,
                                  const char *field, const char *from,
                                  const char *to) {
  vd_replay_move_t *m;
  size_t i;
  for (i = 0; i < rep->nmoves; i++)
    if (strcmp(rep->moves[i].kind, kind) == 0 &&
        strcmp(rep->moves[i].field, field) == 0 &&
        strcmp(rep->moves[i].from, from) == 0 &&
        strcmp(rep->moves[i].to, to) == 0)
      return &rep->moves[i];
  m = realloc(rep->moves, (rep->nmoves + 1) * sizeof *m);
  if (!m)
    return NULL;
  rep->moves = m;
  m = &m[rep->nmoves];
  m->kind = strdup(kind);
  m->field = strdup(field);
  m->from = strdup(from);
  m->to = strdup(to);
  m->count = 0;
  if (!m->kind || !m->field || !m->from || !m->to) {
    free(m->kind), free(m->field), free(m->from), free(m->to);
    return NULL;
  }
  rep->nmoves++;
  return m;
}

/* An RFC 3339 time in JSON text ("\"2026-...\""), as unix ms; 0 if it is
 * not one. */
static int json_time(const char *json, int64_t *ms) {
  int off;
  size_t n;
  if (!json || json[0] != '"')
    return 0;
  n = strlen(json);
  return n >= 2 && vd_time_parse(json + 1, n - 2, ms, &off) == 0;
}

/* ========================================================================
 * Changes
 * ====================================================================== */

static void change_release(vd_replay_change_t *c) {
  size_t j;
  for (j = 0; j < c->ndiffs; j++) {
    free(c->diffs[j].field);
    free(c->diffs[j].old_json);
    free(c->diffs[j].new_json);
    free(c->diffs[j].recorded_json);
  }
  free(c->diffs);
  for (j = 0; j < c->ngained; j++)
    free(c->gained[j]);
  free(c->gained);
  for (j = 0; j < c->nlost; j++)
    free(c->lost[j]);
  free(c->lost);
  free(c->decision_id);
  free(c->complaint_id);
  memset(c, 0, sizeof *c);
}

/* One side's outcome: a result and trace, or an error code. */
typedef struct side {
  const char *result, *trace, *code;
} side_t;

/* Who the row in hand is (history.h, vd_history_rows_more()): read only
 * for a row that changed or could not be decided, not with every row.  A
 * read that fails stops the run as a failed read of the history does. */
#define WHO ((uint64_t)1 << VD_HISTORY_DECISION_ID | \
             (uint64_t)1 << VD_HISTORY_AT | (uint64_t)1 << VD_HISTORY_KIND | \
             (uint64_t)1 << VD_HISTORY_REGION | \
             (uint64_t)1 << VD_HISTORY_COMPLAINT_ID)

static void read_who(lane_t *l) {
  if (vd_history_rows_more(l->rows, WHO) != 0 && !l->fatal.len)
    vd_buf_addf(&l->fatal, "reading %s", vd_history_rows_errmsg(l->rows));
}

/* Count a changed row of kind DECL (NULL: nothing declared) and, while
 * the lane keeps changes, keep it: B (the baseline) and C (the
 * candidate) differ; R is the recorded outcome (candidate runs).
 * Returns 1 when the change is material. */
static int count_change(lane_t *l, const vd_history_value_t *row,
                         const decl_t *decl, const side_t *b,
                         const side_t *c, const side_t *r) {
  vd_buf_t ja = VD_BUF_INIT, jb = VD_BUF_INIT, jr = VD_BUF_INIT,
           path = VD_BUF_INIT;
  vd_replay_change_t ch;
  yajl_val ta, tb, tr = NULL;
  const char *kind;
  size_t i;
  int seen_field[64], material; /* the declared outcomes counted (a kind
                                 * declares a few; any past 64 count their
                                 * deadlines and levels only) */

  read_who(l);
  kind = row[VD_HISTORY_KIND].text;
  memset(&ch, 0, sizeof ch);
  ch.seq = row[VD_HISTORY_SEQ].i;
  ch.order = l->place;
  ch.offer_before = ch.offer_after = -1;
  outcome_json(&ja, b->result, b->trace, b->code);
  outcome_json(&jb, c->result, c->trace, c->code);
  ta = parse(ja.data);
  tb = parse(jb.data);
  if (ta && tb)
    diff_values(&ch, ta, tb, &path);
  if (r) {
    outcome_json(&jr, r->result, r->trace, r->code);
    tr = parse(jr.data);
  }
  memset(seen_field, 0, sizeof seen_field);
  for (i = 0; i < ch.ndiffs; i++) {
    vd_replay_diff_t *d = &ch.diffs[i];
    int o = outcome_of(decl, d->field);
    yajl_val rv = tr ? at_path(tr, d->field) : NULL;
    vd_buf_t v = VD_BUF_INIT;
    if (rv) {
      tree_json(&v, rv);
      d->recorded_json = vd_buf_detach(&v, NULL);
    }
    vd_buf_release(&v);
    /* the error, a whole result that came or went, or a declared
     * outcome; a kind that declares none: any field of its result */
    d->outcome = strcmp(d->field, "error") == 0 ||
                 strcmp(d->field, "result") == 0 || o >= 0 ||
                 ((!decl || decl->n == 0) &&
                  strncmp(d->field, "result.", 7) == 0);
    ch.material |= d->outcome;
    if (o < 0 || !c->trace)
      continue;
    if (o < 64 && !seen_field[o]) {
      vd_replay_field_t *f =
          field_for(&l->rep, kind ? kind : "", decl->path[o], decl->as[o]);
      seen_field[o] = 1;
      if (f)
        f->changed++;
    }
    if (decl->as[o] == VD_OUTCOME_DEADLINE) {
      vd_replay_field_t *f =
          field_for(&l->rep, kind ? kind : "", decl->path[o], decl->as[o]);
      int64_t t0, t1;
      int h0 = json_time(d->old_json, &t0), h1 = json_time(d->new_json, &t1);
      if (f && h0 && h1 && t1 < t0)
        f->earlier++;
      else if (f && h0 && h1 && t1 > t0)
        f->later++;
    } else if (decl->as[o] == VD_OUTCOME_LEVEL) {
      vd_replay_move_t *m =
          move_for(&l->rep, kind ? kind : "", decl->path[o],
                   d->old_json ? d->old_json : "null",
                   d->new_json ? d->new_json : "null");
      if (m)
        m->count++;
    }
  }
  material = ch.material;
  if (material)
    l->rep.material++;
  else
    l->rep.immaterial++;

  if ((long long)l->rep.nchanges < l->max_changes) {
    vd_replay_change_t *kept;
    const char *id = row[VD_HISTORY_DECISION_ID].text;
    const char *cid = row[VD_HISTORY_COMPLAINT_ID].text;
    ch.decision_id = strdup(id ? id : "?");
    ch.complaint_id = cid ? strdup(cid) : NULL;
    snprintf(ch.kind, sizeof ch.kind, "%s", kind ? kind : "");
    snprintf(ch.region, sizeof ch.region, "%s",
             row[VD_HISTORY_REGION].text ? row[VD_HISTORY_REGION].text : "");
    snprintf(ch.at, sizeof ch.at, "%s",
             row[VD_HISTORY_AT].text ? row[VD_HISTORY_AT].text : "");
    rules_only(member(tb, "trace"), member(ta, "trace"), &ch.gained,
               &ch.ngained);
    rules_only(member(ta, "trace"), member(tb, "trace"), &ch.lost,
               &ch.nlost);
    ch.offer_before = money_of(decl, member(ta, "result"));
    ch.offer_after = money_of(decl, member(tb, "result"));
    kept = realloc(l->rep.changes, (l->rep.nchanges + 1) * sizeof *kept);
    if (kept && ch.decision_id) {
      l->rep.changes = kept;
      kept[l->rep.nchanges++] = ch;
      memset(&ch, 0, sizeof ch);
    }
  }
  change_release(&ch);
  yajl_tree_free(ta);
  yajl_tree_free(tb);
  yajl_tree_free(tr);
  vd_buf_release(&ja);
  vd_buf_release(&jb);
  vd_buf_release(&jr);
  vd_buf_release(&path);
  return material;
}

/* ========================================================================
 * A lane
 * ====================================================================== */

/* The engine of REVISION, built on first use; NULL with *re set if it
 * cannot be rebuilt. */
static vd_engine_t *engine_for(lane_t *l, const char *revision,
                               rev_engine_t **out) {
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  rev_engine_t *re;
  size_t i;
  *out = NULL;
  for (i = 0; i < l->nrevs; i++)
    if (strcmp(l->revs[i].revision, revision) == 0) {
      *out = &l->revs[i];
      return l->revs[i].engine;
    }
  re = realloc(l->revs, (l->nrevs + 1) * sizeof *re);
  if (!re)
    return NULL;
  l->revs = re;
  re = &l->revs[l->nrevs++];
  memset(re, 0, sizeof *re);
  snprintf(re->revision, sizeof re->revision, "%s", revision);
  if (vd_history_load_bundle(l->o->db, revision, &b, &err) != 0) {
    vd_buf_t msg = VD_BUF_INIT;
    vd_buf_addf(&msg, "cannot rebuild %s: %s", revision, err.data);
    vd_buf_release(&err);
    err = msg;
  } else if (vd_engine_new(b, NULL, &re->engine, &err) != 0) {
    re->unloadable = 1; /* its files are intact: the engine refuses them */
  }
  if (b)
    vd_bundle_unref(b);
  if (!re->engine)
    re->why = vd_buf_detach(&err, NULL);
  vd_buf_release(&err);
  *out = re;
  return re->engine;
}

static void keep_row_error(lane_t *l, const char *id, const char *why) {
  vd_replay_error_t *e;
  if (l->rep.errors > ROW_ERRORS_KEPT)
    return;
  e = realloc(l->rep.row_errors, (l->rep.nrow_errors + 1) * sizeof *e);
  if (!e)
    return;
  l->rep.row_errors = e;
  e = &e[l->rep.nrow_errors];
  e->decision_id = strdup(id ? id : "?");
  e->why = strdup(why ? why : "no revision recorded");
  e->order = l->place;
  if (!e->decision_id || !e->why) {
    free(e->decision_id);
    free(e->why);
    return;
  }
  l->rep.nrow_errors++;
}

static void count_unloadable(lane_t *l, const rev_engine_t *re) {
  vd_replay_unloadable_t *u;
  size_t i;
  l->rep.unloadable_rows++;
  for (i = 0; i < l->rep.nunloadable; i++)
    if (strcmp(l->rep.unloadable[i].revision, re->revision) == 0) {
      l->rep.unloadable[i].rows++;
      return;
    }
  u = realloc(l->rep.unloadable, (i + 1) * sizeof *u);
  if (!u)
    return;
  l->rep.unloadable = u;
  u[i].revision = strdup(re->revision);
  u[i].why = strdup(re->why ? re->why : "?");
  u[i].rows = 1;
  u[i].activated = 0;
  u[i].order = l->place;
  if (u[i].revision && u[i].why)
    l->rep.nunloadable++;
  else
    free(u[i].revision), free(u[i].why);
}

/* A question the record does not hold: ask the history now, over the
 * same window before the decision time. */
static int answer_now(void *ud, const char *query, const char *a,
                      const char *b, int64_t since_ms, int64_t until_ms,
                      int64_t *count) {
  return vd_history_answer(ud, query, a, b, since_ms, until_ms, count);
}

static void decide(vd_engine_t *e, const vd_history_value_t *row,
                   vd_watch_slot_t *slot, vd_decision_t *d) {
  /* the policy sees exactly the history facts it saw then */
  vd_engine_replay_facts(e, row[VD_HISTORY_FACTS].text);
  vd_engine_set_watch(e, slot); /* fast attempts, the same answers */
  vd_engine_decide(e, row[VD_HISTORY_REQUEST].text,
                   row[VD_HISTORY_REQUEST].len,
                   row[VD_HISTORY_RECEIVED_MS].i, d);
  vd_engine_set_watch(e, NULL);
}

static side_t side_of(const vd_decision_t *d) {
  side_t s;
  s.result = d->code ? NULL : d->result.data;
  s.trace = d->code ? NULL : d->trace.data;
  s.code = d->code ? vd_err_name(d->code) : NULL;
  return s;
}

static int same_side(const side_t *a, const side_t *b) {
  if (a->code || b->code)
    return a->code && b->code && strcmp(a->code, b->code) == 0;
  return a->result && b->result && a->trace && b->trace &&
         strcmp(a->result, b->result) == 0 && strcmp(a->trace, b->trace) == 0;
}

/* The determinism check of one row: against the revision that made it. */
static void check_row(lane_t *l, const vd_history_value_t *row,
                      vd_watch_slot_t *slot) {
  const char *rev = row[VD_HISTORY_REVISION].text;
  rev_engine_t *re = NULL;
  vd_engine_t *e = rev ? engine_for(l, rev, &re) : NULL;
  side_t rec, now;
  l->rep.replayed++;
  if (!e && re && re->unloadable) {
    count_unloadable(l, re);
    return;
  }
  if (!e) {
    l->rep.errors++;
    if (l->rep.errors <= ROW_ERRORS_KEPT)
      read_who(l);
    keep_row_error(l, row[VD_HISTORY_DECISION_ID].text,
                   re ? re->why : rev ? "out of memory" : NULL);
    return;
  }
  decide(e, row, slot, &l->d);
  rec.result = row[VD_HISTORY_RESULT].text;
  rec.trace = row[VD_HISTORY_TRACE].text;
  rec.code = row[VD_HISTORY_ERROR_CODE].text;
  now = side_of(&l->d);
  if (same_side(&rec, &now)) {
    l->rep.unchanged++;
    return;
  }
  l->rep.changed++;
  count_change(l, row, NULL, &rec, &now, NULL);
}

/* The impact of one row: the baseline's outcome (decided, or recorded)
 * against the candidate's. */
static void impact_row(lane_t *l, const vd_history_value_t *row,
                       vd_watch_slot_t *slot) {
  const char *kind = row[VD_HISTORY_KIND].text;
  const char *rev = row[VD_HISTORY_REVISION].text;
  const decl_t *decl;
  vd_replay_group_t *g = group_for(&l->rep, kind, row[VD_HISTORY_REGION].text);
  side_t rec, base, cand;
  yajl_val rb, rc, tb, tc;
  long long mb, mc;
  int same;
  l->rep.replayed++;
  /* against the recorded outcomes, the revisions that made them declare
   * their outcomes too: read once per revision met */
  if (!l->baseline && rev) {
    rev_engine_t *re = NULL;
    vd_engine_t *e = engine_for(l, rev, &re);
    vd_buf_t ignored = VD_BUF_INIT;
    if (e && !re->outcomes_read) {
      re->outcomes_read = 1;
      read_outcomes(l, e, &ignored);
      vd_engine_free(e); /* never decides here: keep what it declared */
      re->engine = NULL;
    }
    vd_buf_release(&ignored);
  }
  decl = decl_find(l, kind ? kind : "");
  rec.result = row[VD_HISTORY_RESULT].text;
  rec.trace = row[VD_HISTORY_TRACE].text;
  rec.code = row[VD_HISTORY_ERROR_CODE].text;
  if (l->baseline) {
    decide(l->baseline, row, slot, &l->bd);
    if (l->bd.facts_now)
      l->rep.baseline_asked_now++;
    base = side_of(&l->bd);
  } else {
    base = rec;
  }
  decide(l->candidate, row, slot, &l->d);
  if (l->d.facts_now)
    l->rep.asked_now++;
  cand = side_of(&l->d);
  if (g)
    g->replayed++;

  /* rules and money, over every row; a side the same as the other, byte
   * for byte, is parsed once */
  same = same_side(&base, &cand);
  tb = parse(base.trace);
  tc = same ? tb : parse(cand.trace);
  count_rules(l, tb, 0);
  count_rules(l, tc, 1);
  rb = parse(base.result);
  rc = same ? rb : parse(cand.result);
  mb = money_of(decl, rb);
  mc = money_of(decl, rc);
  if (!same) {
    yajl_tree_free(tc);
    yajl_tree_free(rc);
  }
  yajl_tree_free(tb);
  yajl_tree_free(rb);
  if (mb >= 0 || mc >= 0) {
    mb = mb > 0 ? mb : 0;
    mc = mc > 0 ? mc : 0;
    add_offer(&l->rep.offers_before, l->q_before, mb);
    add_offer(&l->rep.offers_after, l->q_after, mc);
    if (g) {
      g->offers++;
      g->before_fen += mb;
      g->after_fen += mc;
      g->up += mc > mb;
      g->down += mc < mb;
    }
    if (mc != mb)
      l->rep.hist[hist_bucket(mc - mb)]++;
  }

  if (same) {
    l->rep.unchanged++;
    return;
  }
  l->rep.changed++;
  if (g)
    g->changed++;
  if (count_change(l, row, decl, &base, &cand, &rec) && g)
    g->material++;
}

/* The lane's engines of the candidate and the baseline, built on its own
 * thread (lanes build theirs side by side, not one after another on the
 * caller's): 0, or failed_side, failed_rc and fatal set. */
static int lane_engines(lane_t *l) {
  const vd_replay_opts_t *o = l->o;
  int rc;
  if ((rc = vd_engine_new(o->candidate, NULL, &l->candidate, &l->fatal)) != 0 ||
      (rc = read_outcomes(l, l->candidate, &l->fatal)) != 0) {
    l->failed_side = 1;
  } else if (o->baseline &&
             ((rc = vd_engine_new(o->baseline, NULL, &l->baseline,
                                  &l->fatal)) != 0 ||
              (rc = read_outcomes(l, l->baseline, &l->fatal)) != 0)) {
    l->failed_side = 2;
  }
  l->failed_rc = rc;
  return rc;
}

/* Wait until the caller has made the ranges up to STATE: 1, or 0 if it
 * could not (it reports why). */
static int ranges_wait(ranges_t *r, int state) {
  int now;
  pthread_mutex_lock(&r->lock);
  while (r->state >= 0 && r->state < state)
    pthread_cond_wait(&r->made, &r->lock);
  now = r->state;
  pthread_mutex_unlock(&r->lock);
  return now >= state;
}

/* The ranges made (STATE 2), all but the ends (1), or not (-1): the lanes
 * go on, or stop. */
static void ranges_done(ranges_t *r, int state) {
  pthread_mutex_lock(&r->lock);
  r->state = state;
  pthread_cond_broadcast(&r->made);
  pthread_mutex_unlock(&r->lock);
}

/* The next range not taken (n: none is left): in order, or, where the
 * ends come later, ranges 1 to n - 2 first, then 0 and n - 1.  A range's
 * number, not the order taken, places its rows in the report. */
static int range_take(ranges_t *r) {
  int t = __atomic_fetch_add(&r->next, 1, __ATOMIC_RELAXED);
  if (!r->ends_later || t >= r->n)
    return t;
  return t < r->n - 2 ? t + 1 : t == r->n - 2 ? 0 : r->n - 1;
}

/* Decide again every row of this lane: one range of the history's order, so
 * that each thread reads only its own pages of the table. */
static void *lane_run(void *arg) {
  lane_t *l = arg;
  const vd_replay_opts_t *o = l->o;
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_history_reader_t *now = NULL;
  vd_watch_slot_t *slot =
      l->watchdog ? vd_watchdog_attach(l->watchdog, l->index) : NULL;
  char *why_not = NULL;
  long long nth;
  int rc, k;

  if (o->candidate) {
    if (lane_engines(l) != 0)
      goto out;
  } else if (l->first_rev) { /* built now, kept for its rows */
    rev_engine_t *re;
    engine_for(l, l->first_rev, &re);
  }
  if (!ranges_wait(l->ranges, 1))
    goto out;
  /* against a candidate, a question the recorded decision never asked
   * (a new rule's) is answered from the history as it is now */
  if (l->candidate) {
    if (vd_history_reader_open(&now, o->db, &why_not) == 0) {
      vd_engine_set_facts(l->candidate, answer_now, now);
      if (l->baseline)
        vd_engine_set_facts(l->baseline, answer_now, now);
    } else {
      l->rep.facts_warning = why_not ? why_not : strdup("?");
    }
  }

  f = o->select;
  f.has_seq = f.has_limit = 0;
  /* the columns deciding a row again needs, and impact_row's groups: not
   * the hash, salts, client, errors' texts (a SQLite file then skips them,
   * about 6% of a replayed row's instructions), nor who the row is (WHO:
   * read for the rows that change, 3% more) */
#define COL_(c) ((uint64_t)1 << VD_HISTORY_##c)
  f.columns = COL_(SEQ) | COL_(RECEIVED_MS) | COL_(REVISION) |
              COL_(REQUEST) | COL_(RESULT) | COL_(TRACE) | COL_(FACTS) |
              COL_(ERROR_CODE);
  if (l->candidate)
    f.columns |= COL_(KIND) | COL_(REGION);
#undef COL_
  /* take ranges in order until none is left; one cursor, moved from range
   * to range (vd_history_rows_range()) */
  while (!l->cancelled &&
         (k = range_take(l->ranges)) < l->ranges->n) {
    int64_t lo, hi;
    if (l->ranges->ends_later && (k == 0 || k == l->ranges->n - 1) &&
        !ranges_wait(l->ranges, 2))
      break; /* the caller reports why */
    lo = l->ranges->bounds[k];
    hi = l->ranges->bounds[k + 1];
    if (lo >= hi)
      continue; /* empty: fewer rows than ranges */
    if (!rows) {
      if (vd_history_rows_open_range(&rows, o->db, &f, lo, hi,
                                     &l->fatal) != 0)
        goto out;
    } else if (vd_history_rows_range(rows, lo, hi) != 0) {
      vd_buf_addf(&l->fatal, "reading %s", vd_history_rows_errmsg(rows));
      goto out;
    }
    l->rows = rows;
    for (nth = 0; (rc = vd_history_rows_next(rows, &row)) == 1; nth++) {
      const char *code = row[VD_HISTORY_ERROR_CODE].text;
      l->place = PLACE(k, nth);
      if (o->cancel && __atomic_load_n(o->cancel, __ATOMIC_RELAXED)) {
        l->cancelled = 1;
        break;
      }
      if (o->progress)
        __atomic_add_fetch(o->progress, 1, __ATOMIC_RELAXED);
      if (!row[VD_HISTORY_REQUEST].text ||
          (code && strcmp(code, "too_large") == 0))
        continue; /* nothing decidable was recorded */
      if (l->candidate)
        impact_row(l, row, slot);
      else
        check_row(l, row, slot);
      if (l->fatal.len)
        break; /* read_who() failed */
    }
    if (rc < 0 && !l->fatal.len)
      vd_buf_addf(&l->fatal, "reading %s", vd_history_rows_errmsg(rows));
    if (rc < 0 || l->fatal.len)
      break;
  }
out:
  if (now) {
    vd_engine_set_facts(l->candidate, NULL, NULL);
    if (l->baseline)
      vd_engine_set_facts(l->baseline, NULL, NULL);
    vd_history_reader_close(now);
  }
  vd_watchdog_detach(slot);
  vd_history_rows_close(rows);
  l->rows = NULL;
  return NULL;
}

static void lane_release(lane_t *l) {
  size_t i, j;
  for (i = 0; i < l->nrevs; i++) {
    vd_engine_free(l->revs[i].engine);
    free(l->revs[i].why);
  }
  free(l->revs);
  for (i = 0; i < l->ndecls; i++) {
    for (j = 0; j < l->decls[i].n; j++)
      free(l->decls[i].path[j]);
    free(l->decls[i].path);
    free(l->decls[i].as);
  }
  free(l->decls);
  vd_engine_free(l->candidate);
  vd_engine_free(l->baseline);
  vd_decision_release(&l->d);
  vd_decision_release(&l->bd);
  vd_replay_report_release(&l->rep);
  free(l->q_before);
  free(l->q_after);
  vd_buf_release(&l->fatal);
}

/* ========================================================================
 * The run
 * ====================================================================== */

/* Move lane L's counts, tables and row errors into REP (the changes are
 * merged apart, in seq order). */
static void merge_lane(vd_replay_report_t *rep, lane_t *l) {
  size_t i, j;
  int b;
  rep->replayed += l->rep.replayed;
  rep->unchanged += l->rep.unchanged;
  rep->changed += l->rep.changed;
  rep->material += l->rep.material;
  rep->immaterial += l->rep.immaterial;
  rep->errors += l->rep.errors;
  rep->unloadable_rows += l->rep.unloadable_rows;
  rep->asked_now += l->rep.asked_now;
  rep->baseline_asked_now += l->rep.baseline_asked_now;
  for (i = 0; i < l->rep.nrules; i++) {
    vd_replay_rule_t *r = rule_slot(rep, l->rep.rules[i].rule);
    if (r) {
      if ((!r->before && !r->after) || l->rep.rules[i].order < r->order)
        r->order = l->rep.rules[i].order;
      r->before += l->rep.rules[i].before;
      r->after += l->rep.rules[i].after;
    }
  }
  for (i = 0; i < l->rep.ngroups; i++) {
    const vd_replay_group_t *s = &l->rep.groups[i];
    vd_replay_group_t *g = group_for(rep, s->kind, s->region);
    if (!g)
      continue;
    g->replayed += s->replayed;
    g->changed += s->changed;
    g->material += s->material;
    g->offers += s->offers;
    g->before_fen += s->before_fen;
    g->after_fen += s->after_fen;
    g->up += s->up;
    g->down += s->down;
  }
  for (i = 0; i < l->rep.nfields; i++) {
    const vd_replay_field_t *s = &l->rep.fields[i];
    vd_replay_field_t *f = field_for(rep, s->kind, s->field, s->as);
    if (f) {
      f->changed += s->changed;
      f->earlier += s->earlier;
      f->later += s->later;
    }
  }
  for (i = 0; i < l->rep.nmoves; i++) {
    const vd_replay_move_t *s = &l->rep.moves[i];
    vd_replay_move_t *m = move_for(rep, s->kind, s->field, s->from, s->to);
    if (m)
      m->count += s->count;
  }
  for (b = 0; b < VD_REPLAY_HIST_BUCKETS; b++)
    rep->hist[b] += l->rep.hist[b];
  rep->offers_before.count += l->rep.offers_before.count;
  rep->offers_before.total += l->rep.offers_before.total;
  if (l->rep.offers_before.max > rep->offers_before.max)
    rep->offers_before.max = l->rep.offers_before.max;
  rep->offers_after.count += l->rep.offers_after.count;
  rep->offers_after.total += l->rep.offers_after.total;
  if (l->rep.offers_after.max > rep->offers_after.max)
    rep->offers_after.max = l->rep.offers_after.max;
  for (i = 0; i < l->rep.nunloadable; i++) {
    vd_replay_unloadable_t *s = &l->rep.unloadable[i], *u;
    for (j = 0; j < rep->nunloadable; j++)
      if (strcmp(rep->unloadable[j].revision, s->revision) == 0)
        break;
    if (j < rep->nunloadable) {
      rep->unloadable[j].rows += s->rows;
      if (s->order < rep->unloadable[j].order)
        rep->unloadable[j].order = s->order;
      continue;
    }
    u = realloc(rep->unloadable, (j + 1) * sizeof *u);
    if (!u)
      continue;
    rep->unloadable = u;
    u[j] = *s;
    s->revision = s->why = NULL; /* moved */
    rep->nunloadable++;
  }
  for (i = 0; i < l->rep.nrow_errors; i++) {
    vd_replay_error_t *e =
        realloc(rep->row_errors, (rep->nrow_errors + 1) * sizeof *e);
    if (!e)
      break;
    rep->row_errors = e;
    e[rep->nrow_errors++] = l->rep.row_errors[i];
    l->rep.row_errors[i].decision_id = l->rep.row_errors[i].why = NULL;
  }
  if (!rep->facts_warning) {
    rep->facts_warning = l->rep.facts_warning;
    l->rep.facts_warning = NULL;
  }
}

/* The first MAX changes of all lanes, in the selection's order, moved into
 * REP.  A lane keeps its first max changes in its rows' order, which is the
 * selection's (it takes ranges in order): one among the first MAX of all
 * has fewer than MAX before it in its own lane, so it was kept, and taking
 * the lowest place at the head of the lanes' lists, MAX times, finds them. */
static void merge_changes(vd_replay_report_t *rep, lane_t *lanes, int n,
                          long long max) {
  size_t *at = calloc((size_t)n, sizeof *at);
  while (at && (long long)rep->nchanges < max) {
    vd_replay_change_t *c, *head;
    int k, best = -1;
    for (k = 0; k < n; k++)
      if (at[k] < lanes[k].rep.nchanges &&
          (best < 0 || lanes[k].rep.changes[at[k]].order <
                           lanes[best].rep.changes[at[best]].order))
        best = k;
    if (best < 0)
      break;
    c = realloc(rep->changes, (rep->nchanges + 1) * sizeof *c);
    if (!c)
      break;
    rep->changes = c;
    head = &lanes[best].rep.changes[at[best]++];
    rep->changes[rep->nchanges++] = *head;
    memset(head, 0, sizeof *head); /* moved */
  }
  free(at);
}

static int cmp_rule(const void *x, const void *y) {
  const vd_replay_rule_t *a = x, *b = y;
  return (a->order > b->order) - (a->order < b->order);
}

static int cmp_unloadable(const void *x, const void *y) {
  const vd_replay_unloadable_t *a = x, *b = y;
  return (a->order > b->order) - (a->order < b->order);
}

static int cmp_row_error(const void *x, const void *y) {
  const vd_replay_error_t *a = x, *b = y;
  return (a->order > b->order) - (a->order < b->order);
}

static int cmp_group(const void *x, const void *y) {
  const vd_replay_group_t *a = x, *b = y;
  int c = strcmp(a->kind, b->kind);
  return c ? c : strcmp(a->region, b->region);
}

static int cmp_field(const void *x, const void *y) {
  const vd_replay_field_t *a = x, *b = y;
  int c = strcmp(a->kind, b->kind);
  return c ? c : strcmp(a->field, b->field);
}

static int cmp_move(const void *x, const void *y) {
  const vd_replay_move_t *a = x, *b = y;
  int c = strcmp(a->kind, b->kind);
  if (!c)
    c = strcmp(a->field, b->field);
  if (!c)
    c = (a->count < b->count) - (a->count > b->count);
  if (!c)
    c = strcmp(a->from, b->from);
  return c ? c : strcmp(a->to, b->to);
}

/* Mark the unloadable revisions that an activation once made live. */
static void mark_activated(const char *db, vd_replay_report_t *rep) {
  vd_buf_t json = VD_BUF_INIT, err = VD_BUF_INIT;
  yajl_val t, acts;
  size_t i, j;
  if (rep->nunloadable == 0)
    return;
  vd_buf_addc(&json, '{');
  if (vd_history_revisions_json(db, &json, &err) == 0) {
    vd_buf_addc(&json, '}');
    t = parse(json.data);
    acts = member(t, "activations");
    for (i = 0; acts && YAJL_IS_ARRAY(acts) && i < acts->u.array.len; i++) {
      yajl_val a = acts->u.array.values[i];
      const char *r = YAJL_GET_STRING(member(a, "revision"));
      if (!r || !YAJL_IS_TRUE(member(a, "ok")))
        continue;
      for (j = 0; j < rep->nunloadable; j++)
        if (strcmp(rep->unloadable[j].revision, r) == 0)
          rep->unloadable[j].activated = 1;
    }
    yajl_tree_free(t);
  }
  vd_buf_release(&json);
  vd_buf_release(&err);
}

int vd_replay_run(const vd_replay_opts_t *o, vd_replay_report_t *rep,
                  vd_buf_t *err) {
  vd_history_filter_t f;
  lane_t *lanes = NULL;
  pthread_t *threads = NULL;
  int64_t *bounds = NULL, total = -1;
  long long *q_before = NULL, *q_after = NULL;
  vd_watchdog_t wd;
  ranges_t ranges;
  char active[VD_REVISION_NAME_MAX];
  const char *first_rev = NULL;
  int n = o->threads > 0 ? o->threads : 1, i, rc = 0, has_wd = 0;
  int nranges, split_rc, middle;
  size_t b;

  memset(rep, 0, sizeof *rep);
  vd_buf_reset(err);
  if (o->candidate) {
    const char *cn = o->candidate_name ? o->candidate_name
                                       : vd_bundle_revision(o->candidate);
    const char *bn = o->baseline_name ? o->baseline_name
                     : o->baseline   ? vd_bundle_revision(o->baseline)
                                     : "recorded";
    rep->candidate = strdup(cn);
    rep->baseline = strdup(bn);
  }
  f = o->select;
  f.has_seq = f.has_limit = 0;
  nranges = vd_history_split_count(o->db, &f, n);
  bounds = calloc((size_t)nranges + 1, sizeof *bounds);
  lanes = calloc((size_t)n, sizeof *lanes);
  threads = calloc((size_t)n, sizeof *threads);
  q_before = calloc(QBUCKETS, sizeof *q_before);
  q_after = calloc(QBUCKETS, sizeof *q_after);
  if (!bounds || !lanes || !threads || !q_before || !q_after ||
      (o->candidate && (!rep->candidate || !rep->baseline))) {
    vd_buf_adds(err, "out of memory");
    rc = VD_ENOMEM;
    goto out;
  }
  memset(&ranges, 0, sizeof ranges);
  ranges.bounds = bounds;
  ranges.n = nranges;
  /* the determinism check's likeliest revision, built while the ranges
   * are made: the selection's, else the one active now (a guess: a lane
   * builds the others as its rows name them) */
  if (!o->candidate && o->select.revision)
    first_rev = o->select.revision;
  else if (!o->candidate && vd_history_resolve(o->db, "active", active,
                                               NULL) == 0)
    first_rev = active;
  for (i = 0; i < n; i++) {
    lane_t *l = &lanes[i];
    l->o = o;
    l->index = i;
    l->ranges = &ranges;
    l->first_rev = first_rev;
    l->max_changes = o->max_changes > 0 ? o->max_changes
                                        : DEFAULT_MAX_CHANGES;
    vd_decision_init(&l->d);
    vd_decision_init(&l->bd);
    if (!o->candidate)
      continue;
    if (!(l->q_before = calloc(QBUCKETS, sizeof *l->q_before)) ||
        !(l->q_after = calloc(QBUCKETS, sizeof *l->q_after))) {
      vd_buf_adds(err, "out of memory");
      rc = VD_ENOMEM;
      goto out;
    }
  }
  /* one thread a lane; each has its own connection, engines and state, and
   * a slot of one watchdog, so that decisions are tried hook-free first */
  memset(&wd, 0, sizeof wd);
  if (!o->always_count && vd_watchdog_start(&wd, n, VD_WATCH_TICK_NS) == 0) {
    has_wd = 1;
    for (i = 0; i < n; i++)
      lanes[i].watchdog = &wd;
  }
  /* the lanes start on their engines while the ranges are made here; one
   * whose thread could not start runs here once they are */
  pthread_mutex_init(&ranges.lock, NULL);
  pthread_cond_init(&ranges.made, NULL);
  for (i = 0; i < n; i++)
    if (pthread_create(&threads[i], NULL, lane_run, &lanes[i]) != 0)
      threads[i] = 0;
  middle = vd_history_split_middle(o->db, &f, nranges, bounds, err);
  if (middle == 1) { /* the lanes start on it; the ends follow */
    ranges.ends_later = 1;
    ranges_done(&ranges, 1);
    split_rc = vd_history_split_ends(o->db, &f, nranges, bounds,
                                     o->total ? &total : NULL, err);
  } else {
    split_rc = middle ? middle
                      : vd_history_split(o->db, &f, nranges, bounds,
                                         o->total ? &total : NULL, err);
  }
  if (split_rc == 0 && o->total)
    __atomic_store_n(o->total, (long long)total, __ATOMIC_RELAXED);
  ranges_done(&ranges, split_rc ? -1 : 2);
  for (i = 0; i < n; i++)
    if (!threads[i])
      lane_run(&lanes[i]);
  for (i = 0; i < n; i++)
    if (threads[i])
      pthread_join(threads[i], NULL);
  if (has_wd)
    vd_watchdog_stop(&wd);
  pthread_cond_destroy(&ranges.made);
  pthread_mutex_destroy(&ranges.lock);
  if (split_rc) { /* err says why; what the lanes counted (a received
                   * window's middle, made before the failure) is dropped */
    rc = split_rc;
    goto out;
  }
  for (i = 0; i < n; i++)
    rep->cancelled |= lanes[i].cancelled;
  for (i = 0; i < n; i++)
    if (lanes[i].failed_side) { /* the candidate or baseline would not load
                                 * (in every lane: the first lane's why) */
      rep->candidate_failed = lanes[i].failed_side == 1;
      rep->baseline_failed = lanes[i].failed_side == 2;
      vd_buf_add(err, lanes[i].fatal.data, lanes[i].fatal.len);
      rc = lanes[i].failed_rc;
      goto out;
    }
  for (i = 0; i < n; i++)
    if (lanes[i].fatal.len) { /* reading the database failed */
      vd_buf_add(err, lanes[i].fatal.data, lanes[i].fatal.len);
      rc = VD_EIO;
      goto out;
    }
  merge_changes(rep, lanes, n,
                o->max_changes > 0 ? o->max_changes : DEFAULT_MAX_CHANGES);
  for (i = 0; i < n; i++) {
    merge_lane(rep, &lanes[i]);
    for (b = 0; lanes[i].q_before && b < QBUCKETS; b++) {
      q_before[b] += lanes[i].q_before[b];
      q_after[b] += lanes[i].q_after[b];
    }
  }
  offer_quantiles(&rep->offers_before, q_before);
  offer_quantiles(&rep->offers_after, q_after);
  /* qsort's array may not be NULL, even with no elements */
  if (rep->ngroups)
    qsort(rep->groups, rep->ngroups, sizeof *rep->groups, cmp_group);
  if (rep->nfields)
    qsort(rep->fields, rep->nfields, sizeof *rep->fields, cmp_field);
  if (rep->nmoves)
    qsort(rep->moves, rep->nmoves, sizeof *rep->moves, cmp_move);
  /* the lanes took ranges as they came: into the selection's order */
  if (rep->nrules)
    qsort(rep->rules, rep->nrules, sizeof *rep->rules, cmp_rule);
  if (rep->nunloadable)
    qsort(rep->unloadable, rep->nunloadable, sizeof *rep->unloadable,
          cmp_unloadable);
  if (rep->nrow_errors) {
    qsort(rep->row_errors, rep->nrow_errors, sizeof *rep->row_errors,
          cmp_row_error);
    while (rep->nrow_errors > ROW_ERRORS_KEPT) {
      vd_replay_error_t *e = &rep->row_errors[--rep->nrow_errors];
      free(e->decision_id);
      free(e->why);
    }
  }
  mark_activated(o->db, rep);
out:
  for (i = 0; lanes && i < n; i++)
    lane_release(&lanes[i]);
  free(lanes);
  free(threads);
  free(bounds);
  free(q_before);
  free(q_after);
  return rc;
}

/* ========================================================================
 * Naming what to replay
 * ====================================================================== */

int vd_replay_resolve(const char *db, const char *spec, vd_bundle_t **out,
                      vd_buf_t *name, vd_buf_t *err) {
  struct stat st;
  int rc;
  *out = NULL;
  vd_buf_reset(name);
  vd_buf_reset(err);
  if (strcmp(spec, "active") == 0) {
    /* the revision of the last successful activation */
    char full[VD_REVISION_NAME_MAX], *msg = NULL;
    rc = vd_history_resolve(db, spec, full, &msg);
    if (rc != 0) {
      vd_buf_adds(err, msg ? msg : "no active revision");
      /* a history that was never activated, not a missing file */
      if (rc == VD_ENOT_FOUND &&
          (vd_history_is_postgres(db) || access(db, F_OK) == 0))
        vd_buf_adds(err, ": name a revision, or --baseline recorded");
      free(msg);
    } else {
      rc = vd_history_load_bundle(db, full, out, err);
      if (rc == 0)
        vd_buf_addf(name, "active (%s)", full);
    }
  } else if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode)) {
    /* an existing directory is a directory, as for `verdict diff` */
    rc = vd_bundle_load(spec, out, err);
    if (rc == 0)
      vd_buf_adds(name, spec);
  } else {
    /* a revision by any name the history knows: a hash or a prefix of
     * one, previous, @-N, a tag (vd_history_resolve()) */
    char full[VD_REVISION_NAME_MAX], *msg = NULL;
    rc = vd_history_resolve(db, spec, full, &msg);
    if (rc != 0) {
      vd_buf_addf(err, "%s: %s", spec,
                  msg ? msg : "neither a directory nor a revision");
      free(msg);
    } else {
      rc = vd_history_load_bundle(db, full, out, err);
      if (rc == 0 && strcmp(spec, full) != 0)
        vd_buf_addf(name, "%s (%s)", spec, full);
      else if (rc == 0)
        vd_buf_adds(name, full);
    }
  }
  return rc;
}

void vd_replay_report_release(vd_replay_report_t *rep) {
  size_t i;
  for (i = 0; i < rep->nchanges; i++)
    change_release(&rep->changes[i]);
  free(rep->changes);
  for (i = 0; i < rep->nrules; i++)
    free(rep->rules[i].rule);
  free(rep->rules);
  free(rep->groups);
  for (i = 0; i < rep->nfields; i++) {
    free(rep->fields[i].kind);
    free(rep->fields[i].field);
  }
  free(rep->fields);
  for (i = 0; i < rep->nmoves; i++) {
    free(rep->moves[i].kind);
    free(rep->moves[i].field);
    free(rep->moves[i].from);
    free(rep->moves[i].to);
  }
  free(rep->moves);
  for (i = 0; i < rep->nunloadable; i++) {
    free(rep->unloadable[i].revision);
    free(rep->unloadable[i].why);
  }
  free(rep->unloadable);
  for (i = 0; i < rep->nrow_errors; i++) {
    free(rep->row_errors[i].decision_id);
    free(rep->row_errors[i].why);
  }
  free(rep->row_errors);
  free(rep->facts_warning);
  free(rep->candidate);
  free(rep->baseline);
  memset(rep, 0, sizeof *rep);
}
