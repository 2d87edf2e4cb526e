/*
 * replay.c - deciding recorded requests again (include/verdict/replay.h).
 *
 * Owns, for one vd_replay_run(): the lanes (one per thread), each with its
 * row cursor on the history (history_query.c), its engines (one per
 * revision met, built on first use from the files the database stored,
 * or one of the candidate), a history reader for a candidate's new
 * questions, and what it counted; then the merged report.
 *
 * Invariants:
 *   - lane i decides exactly the selected rows with bounds[i] <= seq <
 *     bounds[i + 1] (vd_history_split()), so every row once;
 *   - results are compared as the canonical JSON bytes the engine writes;
 *     only a differing pair is parsed (a yajl tree, outside every Lua
 *     state) to name the fields that changed;
 *   - rule and offer counts come from the parsed trace and result, never
 *     from searching their text.
 *
 * Threads: vd_replay_run() on its caller's; one thread per lane, sharing
 * nothing but the read-only options and one watchdog (one slot each).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl_tree.h>

#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/replay.h"
#include "verdict/watchdog.h"

#define DEFAULT_MAX_CHANGES 1000
#define ROW_ERRORS_KEPT 10 /* per lane */

/* An engine of a recorded revision, or why there is none. */
typedef struct rev_engine {
  char revision[80];
  vd_engine_t *engine; /* NULL if it could not be rebuilt */
  char *why;
} rev_engine_t;

typedef struct lane {
  const vd_replay_opts_t *o;
  int index;                /* lane number: 0, 1, ... */
  int64_t seq_lo, seq_hi;   /* the rows seq_lo <= seq < seq_hi */
  vd_engine_t *candidate;   /* this lane's engine of o->candidate */
  rev_engine_t *revs;       /* engines of the recorded revisions met */
  size_t nrevs;
  vd_watchdog_t *watchdog;  /* shared; NULL: always count */
  vd_decision_t d;
  long long max_changes;
  /* what the lane counted: the parts of a report it fills */
  vd_replay_report_t rep;
  long long *offers_b, *offers_a; /* per offer, before and after */
  size_t noffers, offers_cap;
  vd_buf_t fatal;           /* reading the database failed: why */
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

/* Keep the change of row SEQ (the old outcome given, the new in l->d),
 * unless the lane has kept enough: each lane keeps its first ones, which
 * is enough for the first ones overall. */
static void keep_change(lane_t *l, int64_t seq, const char *decision_id,
                        const char *old_result, const char *old_trace,
                        const char *old_code) {
  vd_buf_t a = VD_BUF_INIT, b = VD_BUF_INIT, path = VD_BUF_INIT;
  vd_replay_change_t *c;
  yajl_val ta, tb;
  if (l->rep.changed > l->max_changes) /* counted just before this call */
    return;
  c = realloc(l->rep.changes, (l->rep.nchanges + 1) * sizeof *c);
  if (!c)
    return;
  l->rep.changes = c;
  c = &l->rep.changes[l->rep.nchanges];
  c->decision_id = strdup(decision_id);
  if (!c->decision_id)
    return;
  l->rep.nchanges++;
  c->seq = seq;
  c->diffs = NULL;
  c->ndiffs = 0;
  outcome_json(&a, old_result, old_trace, old_code);
  outcome_json(&b, l->d.code ? NULL : l->d.result.data,
               l->d.code ? NULL : l->d.trace.data,
               l->d.code ? vd_err_name(l->d.code) : NULL);
  ta = parse(a.data);
  tb = parse(b.data);
  if (ta && tb)
    diff_values(c, ta, tb, &path);
  yajl_tree_free(ta);
  yajl_tree_free(tb);
  vd_buf_release(&a);
  vd_buf_release(&b);
  vd_buf_release(&path);
}

/* ========================================================================
 * Rules and offers
 * ====================================================================== */

/* Count each trace entry's rule of TRACE (a JSON array of {rule, basis}),
 * as before (recorded) or after (the candidate's). */
static void count_rules(lane_t *l, const char *trace, int after) {
  yajl_val t = parse(trace);
  size_t i, j;
  for (i = 0; t && YAJL_IS_ARRAY(t) && i < t->u.array.len; i++) {
    yajl_val rule = member(t->u.array.values[i], "rule");
    vd_replay_rule_t *r;
    if (!rule || !YAJL_IS_STRING(rule))
      continue;
    for (j = 0; j < l->rep.nrules; j++)
      if (strcmp(l->rep.rules[j].rule, rule->u.string) == 0)
        break;
    if (j == l->rep.nrules) {
      r = realloc(l->rep.rules, (j + 1) * sizeof *r);
      if (!r)
        break;
      l->rep.rules = r;
      if (!(r[j].rule = strdup(rule->u.string)))
        break;
      r[j].before = r[j].after = 0;
      l->rep.nrules++;
    }
    if (after)
      l->rep.rules[j].after++;
    else
      l->rep.rules[j].before++;
  }
  yajl_tree_free(t);
}

/* RESULT's offer_fen: its whole part, 0 if it is not a number, -1 if
 * there is none (or no result). */
static long long offer_of(const char *result) {
  yajl_val r = parse(result), v = member(r, "offer_fen");
  long long fen = -1;
  if (v)
    fen = YAJL_IS_INTEGER(v)  ? YAJL_GET_INTEGER(v)
          : YAJL_IS_DOUBLE(v) ? (long long)YAJL_GET_DOUBLE(v)
                              : 0;
  yajl_tree_free(r);
  return fen;
}

static void add_offer(lane_t *l, long long before, long long after) {
  if (l->noffers == l->offers_cap) {
    size_t cap = l->offers_cap ? l->offers_cap * 2 : 1024;
    long long *nb = realloc(l->offers_b, cap * sizeof *nb), *na;
    if (!nb)
      return;
    l->offers_b = nb;
    na = realloc(l->offers_a, cap * sizeof *na);
    if (!na)
      return;
    l->offers_a = na;
    l->offers_cap = cap;
  }
  l->offers_b[l->noffers] = before;
  l->offers_a[l->noffers] = after;
  l->noffers++;
}

static int cmp_ll(const void *x, const void *y) {
  long long a = *(const long long *)x, b = *(const long long *)y;
  return (a > b) - (a < b);
}

/* Count, total and percentiles of V[0..n) (sorted here). */
static void offer_stats(long long *v, size_t n, vd_replay_offers_t *s) {
  size_t i;
  memset(s, 0, sizeof *s);
  s->count = (long long)n;
  if (n == 0)
    return;
  for (i = 0; i < n; i++)
    s->total += v[i];
  qsort(v, n, sizeof *v, cmp_ll);
  s->p50 = v[n / 2];
  s->p90 = v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
  s->max = v[n - 1];
}

/* ========================================================================
 * A lane
 * ====================================================================== */

/* The engine of REVISION, built on first use; NULL with *why set if it
 * cannot be rebuilt. */
static vd_engine_t *engine_for(lane_t *l, const char *revision,
                               const char **why) {
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  rev_engine_t *re;
  size_t i;
  for (i = 0; i < l->nrevs; i++)
    if (strcmp(l->revs[i].revision, revision) == 0) {
      *why = l->revs[i].why;
      return l->revs[i].engine;
    }
  *why = "out of memory";
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
  } else {
    vd_engine_new(b, NULL, &re->engine, &err); /* else err says why */
  }
  if (b)
    vd_bundle_unref(b);
  if (!re->engine)
    re->why = vd_buf_detach(&err, NULL);
  vd_buf_release(&err);
  *why = re->why;
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
  if (!e->decision_id || !e->why) {
    free(e->decision_id);
    free(e->why);
    return;
  }
  l->rep.nrow_errors++;
}

/* A candidate's question the record does not hold: ask the history now,
 * over the same window before the decision time. */
static int answer_now(void *ud, const char *query, const char *a,
                      const char *b, int64_t since_ms, int64_t until_ms,
                      int64_t *count) {
  return vd_history_answer(ud, query, a, b, since_ms, until_ms, count);
}

/* Decide one row again and count the outcome. */
static void replay_row(lane_t *l, const vd_history_value_t *row,
                       vd_watch_slot_t *slot) {
  const char *id = row[VD_HISTORY_DECISION_ID].text;
  const char *rev = row[VD_HISTORY_REVISION].text;
  const char *req = row[VD_HISTORY_REQUEST].text;
  const char *res = row[VD_HISTORY_RESULT].text;
  const char *trace = row[VD_HISTORY_TRACE].text;
  const char *code = row[VD_HISTORY_ERROR_CODE].text;
  const char *why = NULL;
  vd_engine_t *e;
  int same;
  if (!req || (code && strcmp(code, "too_large") == 0))
    return; /* nothing decidable was recorded */
  e = l->candidate ? l->candidate : rev ? engine_for(l, rev, &why) : NULL;
  l->rep.replayed++;
  if (!e) {
    l->rep.errors++;
    keep_row_error(l, id, why);
    return;
  }
  /* the policy sees exactly the history facts it saw then */
  vd_engine_replay_facts(e, row[VD_HISTORY_FACTS].text);
  vd_engine_set_watch(e, slot); /* fast attempts, the same answers */
  vd_engine_decide(e, req, row[VD_HISTORY_REQUEST].len,
                   row[VD_HISTORY_RECEIVED_MS].i, &l->d);
  vd_engine_set_watch(e, NULL);
  if (l->d.facts_now)
    l->rep.asked_now++;
  if (code)
    same = l->d.code && strcmp(code, vd_err_name(l->d.code)) == 0;
  else
    same = l->d.code == 0 && res && trace &&
           strcmp(res, l->d.result.data) == 0 &&
           strcmp(trace, l->d.trace.data) == 0;
  if (same) {
    l->rep.unchanged++;
  } else {
    l->rep.changed++;
    keep_change(l, row[VD_HISTORY_SEQ].i, id ? id : "?", res, trace, code);
  }
  if (l->candidate) {
    long long ob = offer_of(res);
    long long oa = l->d.code ? -1 : offer_of(l->d.result.data);
    count_rules(l, trace, 0);
    if (!l->d.code)
      count_rules(l, l->d.trace.data, 1);
    if (ob >= 0 || oa >= 0)
      add_offer(l, ob > 0 ? ob : 0, oa > 0 ? oa : 0);
  }
}

/* Decide again every row of this lane: a contiguous range of seq, so that
 * each thread reads only its own pages of the table. */
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
  int rc;

  /* against a candidate, a question the recorded decision never asked
   * (a new rule's) is answered from the history as it is now */
  if (l->candidate) {
    if (vd_history_reader_open(&now, o->db, &why_not) == 0)
      vd_engine_set_facts(l->candidate, answer_now, now);
    else
      l->rep.facts_warning = why_not ? why_not : strdup("?");
  }

  f = o->select;
  f.has_seq = 1;
  f.has_limit = 0;
  f.seq_lo = l->seq_lo;
  f.seq_hi = l->seq_hi;
  if (vd_history_rows_open(&rows, o->db, &f, &l->fatal) != 0)
    goto out;
  while ((rc = vd_history_rows_next(rows, &row)) == 1)
    replay_row(l, row, slot);
  if (rc < 0)
    vd_buf_addf(&l->fatal, "reading %s", vd_history_rows_errmsg(rows));
out:
  if (now) {
    vd_engine_set_facts(l->candidate, NULL, NULL);
    vd_history_reader_close(now);
  }
  vd_watchdog_detach(slot);
  vd_history_rows_close(rows);
  return NULL;
}

static void lane_release(lane_t *l) {
  size_t i;
  for (i = 0; i < l->nrevs; i++) {
    vd_engine_free(l->revs[i].engine);
    free(l->revs[i].why);
  }
  free(l->revs);
  vd_engine_free(l->candidate);
  vd_decision_release(&l->d);
  vd_replay_report_release(&l->rep);
  free(l->offers_a);
  free(l->offers_b);
  vd_buf_release(&l->fatal);
}

/* ========================================================================
 * The run
 * ====================================================================== */

/* Move lane L's counts, rules, offers and row errors into REP (the
 * changes are merged apart, in seq order). */
static void merge_lane(vd_replay_report_t *rep, lane_t *all, lane_t *l) {
  size_t i, j;
  rep->replayed += l->rep.replayed;
  rep->unchanged += l->rep.unchanged;
  rep->changed += l->rep.changed;
  rep->errors += l->rep.errors;
  rep->asked_now += l->rep.asked_now;
  for (i = 0; i < l->rep.nrules; i++) {
    vd_replay_rule_t *r = &l->rep.rules[i];
    for (j = 0; j < rep->nrules; j++)
      if (strcmp(rep->rules[j].rule, r->rule) == 0)
        break;
    if (j == rep->nrules) {
      vd_replay_rule_t *nr = realloc(rep->rules, (j + 1) * sizeof *nr);
      if (!nr)
        continue;
      rep->rules = nr;
      nr[j] = *r;
      r->rule = NULL; /* moved */
      nr[j].before = nr[j].after = 0;
      rep->nrules++;
    }
    rep->rules[j].before += r->before;
    rep->rules[j].after += r->after;
  }
  if (l != all)
    for (i = 0; i < l->noffers; i++)
      add_offer(all, l->offers_b[i], l->offers_a[i]);
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

/* The first MAX changes of all lanes, in seq order, moved into REP. */
static void merge_changes(vd_replay_report_t *rep, lane_t *lanes, int n,
                          long long max) {
  size_t *next = calloc((size_t)n, sizeof *next);
  if (!next)
    return;
  while ((long long)rep->nchanges < max) {
    vd_replay_change_t *c;
    int best = -1, k;
    for (k = 0; k < n; k++)
      if (next[k] < lanes[k].rep.nchanges &&
          (best < 0 || lanes[k].rep.changes[next[k]].seq <
                           lanes[best].rep.changes[next[best]].seq))
        best = k;
    if (best < 0)
      break;
    c = realloc(rep->changes, (rep->nchanges + 1) * sizeof *c);
    if (!c)
      break;
    rep->changes = c;
    c = &lanes[best].rep.changes[next[best]++];
    rep->changes[rep->nchanges++] = *c;
    memset(c, 0, sizeof *c); /* moved */
  }
  free(next);
}

int vd_replay_run(const vd_replay_opts_t *o, vd_replay_report_t *rep,
                  vd_buf_t *err) {
  vd_history_filter_t f;
  lane_t *lanes = NULL;
  pthread_t *threads = NULL;
  int64_t *bounds = NULL;
  vd_watchdog_t wd;
  int n = o->threads > 0 ? o->threads : 1, i, rc = 0, has_wd = 0;

  memset(rep, 0, sizeof *rep);
  vd_buf_reset(err);
  f = o->select;
  f.has_seq = f.has_limit = 0;
  bounds = calloc((size_t)n + 1, sizeof *bounds);
  lanes = calloc((size_t)n, sizeof *lanes);
  threads = calloc((size_t)n, sizeof *threads);
  if (!bounds || !lanes || !threads) {
    vd_buf_adds(err, "out of memory");
    rc = VD_ENOMEM;
    goto out;
  }
  rc = vd_history_split(o->db, &f, n, bounds, err);
  if (rc)
    goto out;
  for (i = 0; i < n; i++) {
    lane_t *l = &lanes[i];
    l->o = o;
    l->index = i;
    l->seq_lo = bounds[i];
    l->seq_hi = bounds[i + 1];
    l->max_changes = o->max_changes > 0 ? o->max_changes
                                        : DEFAULT_MAX_CHANGES;
    vd_decision_init(&l->d);
    if (o->candidate &&
        (rc = vd_engine_new(o->candidate, NULL, &l->candidate, err)) != 0) {
      rep->candidate_failed = 1;
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
  for (i = 0; i < n; i++)
    if (pthread_create(&threads[i], NULL, lane_run, &lanes[i]) != 0)
      lane_run(&lanes[i]), threads[i] = 0;
  for (i = 0; i < n; i++)
    if (threads[i])
      pthread_join(threads[i], NULL);
  if (has_wd)
    vd_watchdog_stop(&wd);
  for (i = 0; i < n; i++)
    if (lanes[i].fatal.len) { /* reading the database failed */
      vd_buf_add(err, lanes[i].fatal.data, lanes[i].fatal.len);
      rc = VD_EIO;
      goto out;
    }
  merge_changes(rep, lanes, n,
                o->max_changes > 0 ? o->max_changes : DEFAULT_MAX_CHANGES);
  for (i = 0; i < n; i++)
    merge_lane(rep, &lanes[0], &lanes[i]);
  offer_stats(lanes[0].offers_b, lanes[0].noffers, &rep->offers_before);
  offer_stats(lanes[0].offers_a, lanes[0].noffers, &rep->offers_after);
out:
  for (i = 0; lanes && i < n; i++)
    lane_release(&lanes[i]);
  free(lanes);
  free(threads);
  free(bounds);
  return rc;
}

void vd_replay_report_release(vd_replay_report_t *rep) {
  size_t i, j;
  for (i = 0; i < rep->nchanges; i++) {
    for (j = 0; j < rep->changes[i].ndiffs; j++) {
      free(rep->changes[i].diffs[j].field);
      free(rep->changes[i].diffs[j].old_json);
      free(rep->changes[i].diffs[j].new_json);
    }
    free(rep->changes[i].diffs);
    free(rep->changes[i].decision_id);
  }
  free(rep->changes);
  for (i = 0; i < rep->nrules; i++)
    free(rep->rules[i].rule);
  free(rep->rules);
  for (i = 0; i < rep->nrow_errors; i++) {
    free(rep->row_errors[i].decision_id);
    free(rep->row_errors[i].why);
  }
  free(rep->row_errors);
  free(rep->facts_warning);
  memset(rep, 0, sizeof *rep);
}
