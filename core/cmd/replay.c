/*
 * replay.c - `verdict replay`: decide recorded requests again, offline.
 *
 * Streams decisions out of the history database (read-only, in seq order)
 * and decides each request line again with vd_engine_decide(), the very
 * path the daemon took, against either the revision that made it
 * (`--against recorded`, the default: any difference is a determinism
 * violation, exit status 3) or a candidate policy directory (an impact
 * analysis: what would change, per-rule hit counts before and after, and
 * the compensation offers before and after).
 *
 * The rows are shared out between threads (one per core, --threads N),
 * each with its own read-only connection and engines, in contiguous ranges
 * of seq; totals are added up and the changes printed in chain
 * order at the end.  Each thread builds one engine per revision on first
 * use, from the revision's files as stored in the database, and keeps it
 * for the rest of the run; results are
 * compared as canonical JSON bytes, and only a differing pair is decoded to
 * name the fields that changed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "cmd_int.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/timefmt.h"
#include "verdict/watchdog.h"


#define MAX_REPORTED 1000 /* changed decisions printed in full */

typedef struct rev_engine {
  char revision[80];
  vd_engine_t *engine; /* NULL if it could not be rebuilt */
  char *why;
} rev_engine_t;

typedef struct counter {
  char *key;
  long long before, after;
} counter_t;

typedef struct replay {
  const char *db, *against, *format, *region, *kind;
  int64_t since_ms, until_ms;
  int has_since, has_until;
  vd_engine_t *candidate;
  rev_engine_t *revs;
  size_t nrevs;
  lua_State *L; /* for decoding what differs */
  vd_watchdog_t *watchdog; /* shared by the lanes; NULL: always count */
  vd_decision_t d;
  long long replayed, unchanged, changed, errors;
  long long asked_now; /* candidate decisions with a question not recorded */
  counter_t *rules;
  size_t nrules;
  long long offer_before, offer_after, offers;
  long long *offers_b, *offers_a;
  size_t noffers_cap;
  vd_buf_t changes; /* the changed decisions' reports, one after another */
  struct change {
    int64_t seq;     /* of the decision, to print them in chain order */
    size_t off, len; /* its report in `changes` */
  } *chg;
  size_t nchg;
  int lane;          /* this thread's number */
  int64_t seq_lo, seq_hi; /* this thread takes the rows seq_lo <= seq < seq_hi */
  vd_buf_t fatal_msg;
  vd_buf_t err;      /* scratch for decoding */
} replay_t;

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "verdict replay: %s%s%s\n", msg, arg ? " " : "",
          arg ? arg : "");
  fprintf(stderr,
          "usage: verdict replay [--db PATH] [--since T] [--until T] "
          "[--region R] [--kind K]\n"
          "                      [--against recorded|DIR] "
          "[--format text|json] [--threads N]\n"
          "                      [--always-count]\n");
  return 2;
}

static vd_engine_t *engine_for(replay_t *r, const char *revision,
                               const char **why) {
  size_t i;
  rev_engine_t *re;
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  for (i = 0; i < r->nrevs; i++)
    if (strcmp(r->revs[i].revision, revision) == 0) {
      *why = r->revs[i].why;
      return r->revs[i].engine;
    }
  re = realloc(r->revs, (r->nrevs + 1) * sizeof *re);
  if (!re)
    return NULL;
  r->revs = re;
  re = &r->revs[r->nrevs++];
  memset(re, 0, sizeof *re);
  snprintf(re->revision, sizeof re->revision, "%s", revision);
  if (vd_history_load_bundle(r->db, revision, &b, &err) != 0) {
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

static void count_rules(replay_t *r, const char *trace, int after) {
  const char *p = trace;
  while (p && (p = strstr(p, "\"rule\":\"")) != NULL) {
    const char *s = p + 8, *e = strchr(s, '"');
    size_t i, n;
    if (!e)
      break;
    n = (size_t)(e - s);
    for (i = 0; i < r->nrules; i++)
      if (strlen(r->rules[i].key) == n && memcmp(r->rules[i].key, s, n) == 0)
        break;
    if (i == r->nrules) {
      counter_t *c = realloc(r->rules, (r->nrules + 1) * sizeof *c);
      if (!c)
        return;
      r->rules = c;
      c[i].key = strndup(s, n);
      c[i].before = c[i].after = 0;
      r->nrules++;
    }
    if (after)
      r->rules[i].after++;
    else
      r->rules[i].before++;
    p = e;
  }
}

static long long offer_of(const char *result) {
  const char *p = result ? strstr(result, "\"offer_fen\":") : NULL;
  return p ? strtoll(p + 12, NULL, 10) : -1;
}

/* Append the paths where decoded values a (old) and b (new) differ. */
static void field_diffs(replay_t *r, int a, int b, vd_buf_t *path,
                        vd_buf_t *out, int json, int *first) {
  lua_State *L = r->L;
  size_t mark = path->len;
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) == LUA_TTABLE && lua_type(L, b) == LUA_TTABLE &&
      vd_json_marker(L, a) == 2 && vd_json_marker(L, b) == 2) {
    int pass;
    for (pass = 0; pass < 2; pass++) { /* keys of a, then keys only in b */
      int src = pass ? b : a, other = pass ? a : b;
      lua_pushnil(L);
      while (lua_next(L, src)) { /* key, value */
        lua_pop(L, 1);
        if (pass) {
          int present;
          lua_pushvalue(L, -1);
          present = lua_rawget(L, other) != LUA_TNIL;
          lua_pop(L, 1);
          if (present)
            continue;
        }
        vd_buf_addf(path, "%s%s", path->len ? "." : "", lua_tostring(L, -1));
        lua_pushvalue(L, -1);
        lua_rawget(L, a);
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        field_diffs(r, -2, -1, path, out, json, first);
        lua_pop(L, 2);
        path->len = mark;
        path->data[mark] = '\0';
      }
    }
    return;
  }
  {
    vd_buf_t va = VD_BUF_INIT, vb = VD_BUF_INIT, e = VD_BUF_INIT;
    if (lua_isnil(L, a))
      vd_buf_adds(&va, "(absent)");
    else
      vd_json_encode(L, a, &va, "old", &e);
    if (lua_isnil(L, b))
      vd_buf_adds(&vb, "(absent)");
    else
      vd_json_encode(L, b, &vb, "new", &e);
    if (strcmp(va.data, vb.data) != 0) {
      if (json) {
        vd_buf_addf(out, "%s{\"field\":", *first ? "" : ",");
        vd_buf_add_json_str(out, path->data, path->len);
        vd_buf_adds(out, ",\"old\":");
        if (lua_isnil(L, a))
          vd_buf_adds(out, "null");
        else
          vd_buf_add(out, va.data, va.len);
        vd_buf_adds(out, ",\"new\":");
        if (lua_isnil(L, b))
          vd_buf_adds(out, "null");
        else
          vd_buf_add(out, vb.data, vb.len);
        vd_buf_addc(out, '}');
      } else {
        vd_buf_addf(out, "    %s: %s -> %s\n", path->data, va.data, vb.data);
      }
      *first = 0;
    }
    vd_buf_release(&va);
    vd_buf_release(&vb);
    vd_buf_release(&e);
  }
}

/* Old and new as one JSON object each: {"result":..,"trace":..} or
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

static void report_change(replay_t *r, int64_t seq, const char *decision_id,
                          const char *old_result, const char *old_trace,
                          const char *old_code) {
  vd_buf_t a = VD_BUF_INIT, b = VD_BUF_INIT, path = VD_BUF_INIT;
  int json = strcmp(r->format, "json") == 0, first = 1;
  int top = lua_gettop(r->L);
  struct change *c;
  if (r->changed > MAX_REPORTED) /* counted just before this call */
    return; /* each lane keeps its first ones: enough for the overall first */
  c = realloc(r->chg, (r->nchg + 1) * sizeof *c);
  if (!c)
    return;
  r->chg = c;
  c = &r->chg[r->nchg++];
  c->seq = seq;
  c->off = r->changes.len;
  outcome_json(&a, old_result, old_trace, old_code);
  outcome_json(&b, r->d.code ? NULL : r->d.result.data,
               r->d.code ? NULL : r->d.trace.data,
               r->d.code ? vd_err_name(r->d.code) : NULL);
  if (json)
    vd_buf_addf(&r->changes, "{\"decision_id\":\"%s\",\"fields\":[",
                decision_id);
  else
    vd_buf_addf(&r->changes, "  %s\n", decision_id);
  if (vd_json_decode_protected(r->L, a.data, a.len, 0, &r->err) == 0 &&
      vd_json_decode_protected(r->L, b.data, b.len, 0, &r->err) == 0)
    field_diffs(r, -2, -1, &path, &r->changes, json, &first);
  if (json)
    vd_buf_adds(&r->changes, "]}");
  c->len = r->changes.len - c->off;
  lua_settop(r->L, top);
  vd_buf_release(&a);
  vd_buf_release(&b);
  vd_buf_release(&path);
}

static void add_offer(replay_t *r, long long before, long long after) {
  if ((size_t)r->offers == r->noffers_cap) {
    size_t cap = r->noffers_cap ? r->noffers_cap * 2 : 1024;
    long long *nb = realloc(r->offers_b, cap * sizeof *nb);
    long long *na;
    if (!nb)
      return;
    r->offers_b = nb;
    na = realloc(r->offers_a, cap * sizeof *na);
    if (!na)
      return;
    r->offers_a = na;
    r->noffers_cap = cap;
  }
  r->offers_b[r->offers] = before;
  r->offers_a[r->offers] = after;
  r->offers++;
  r->offer_before += before;
  r->offer_after += after;
}

static int cmp_ll(const void *x, const void *y) {
  long long a = *(const long long *)x, b = *(const long long *)y;
  return (a > b) - (a < b);
}

static void offer_stats(long long *v, long long n, long long *p50,
                        long long *p90, long long *max) {
  if (n == 0) {
    *p50 = *p90 = *max = 0;
    return;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_ll);
  *p50 = v[n / 2];
  *p90 = v[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
  *max = v[n - 1];
}

static int print_report(replay_t *r, int recorded) {
  size_t i;
  long long b50, b90, bmax, a50, a90, amax;
  offer_stats(r->offers_b, r->offers, &b50, &b90, &bmax);
  offer_stats(r->offers_a, r->offers, &a50, &a90, &amax);
  if (strcmp(r->format, "json") == 0) {
    vd_buf_t against = VD_BUF_INIT;
    vd_buf_add_json_str(&against, recorded ? "recorded" : r->against,
                        strlen(recorded ? "recorded" : r->against));
    printf("{\"against\":%s,\"replayed\":%lld,\"unchanged\":%lld,"
           "\"changed\":%lld,\"errors\":%lld,\"asked_now\":%lld,"
           "\"changes\":[%s]",
           against.data, r->replayed, r->unchanged, r->changed, r->errors,
           r->asked_now, r->changes.data ? r->changes.data : "");
    vd_buf_release(&against);
    if (!recorded) {
      printf(",\"rules\":{");
      for (i = 0; i < r->nrules; i++)
        printf("%s\"%s\":{\"before\":%lld,\"after\":%lld}", i ? "," : "",
               r->rules[i].key, r->rules[i].before, r->rules[i].after);
      printf("},\"offers\":{\"count\":%lld,\"before\":{\"total_fen\":%lld,"
             "\"p50\":%lld,\"p90\":%lld,\"max\":%lld},\"after\":{"
             "\"total_fen\":%lld,\"p50\":%lld,\"p90\":%lld,\"max\":%lld}}",
             r->offers, r->offer_before, b50, b90, bmax, r->offer_after, a50,
             a90, amax);
    }
    printf("}\n");
  } else {
    printf("replayed %lld against %s: %lld unchanged, %lld changed, %lld "
           "errors\n",
           r->replayed, recorded ? "the recorded revisions" : r->against,
           r->unchanged, r->changed, r->errors);
    if (r->asked_now)
      printf("%lld decision%s asked history a question %s record did not "
             "hold; answered from the history as it is now\n",
             r->asked_now, r->asked_now == 1 ? "" : "s",
             r->asked_now == 1 ? "its" : "their");
    if (r->changed)
      printf("changed:\n%s", r->changes.data ? r->changes.data : "");
    if (r->changed > MAX_REPORTED)
      printf("  (%lld more not shown)\n", r->changed - MAX_REPORTED);
    if (!recorded) {
      printf("rule hits (before -> after):\n");
      for (i = 0; i < r->nrules; i++)
        printf("  %-40s %8lld -> %-8lld%s\n", r->rules[i].key,
               r->rules[i].before, r->rules[i].after,
               r->rules[i].before != r->rules[i].after ? " *" : "");
      if (r->offers)
        printf("compensation offers (%lld): total %lld -> %lld fen; p50 %lld "
               "-> %lld; p90 %lld -> %lld; max %lld -> %lld\n",
               r->offers, r->offer_before, r->offer_after, b50, a50, b90, a90,
               bmax, amax);
    }
  }
  if (recorded && r->changed)
    fprintf(stderr, "verdict replay: %lld decision%s did not reproduce "
                    "(a determinism violation)\n",
            r->changed, r->changed == 1 ? "" : "s");
  return r->errors ? 1 : (recorded && r->changed) ? 3 : 0;
}

static int parse_time_opt(const char *opt, const char *v, int64_t *ms) {
  int off;
  if (vd_time_parse(v, strlen(v), ms, &off) != 0)
    return usage("expects an RFC 3339 time with an offset:", opt);
  return 0;
}

/* The rows the options select. */
static vd_history_filter_t filter_of(const replay_t *r) {
  vd_history_filter_t f;
  memset(&f, 0, sizeof f);
  f.has_since = r->has_since;
  f.since_ms = r->since_ms;
  f.has_until = r->has_until;
  f.until_ms = r->until_ms;
  f.region = r->region;
  f.kind = r->kind;
  return f;
}

/* Cut the selected rows into nlanes contiguous seq ranges holding about as
 * many rows each: bounds[0..nlanes], lane i takes [bounds[i], bounds[i+1]).
 * Returns 0, or -1 with the message in r->fatal_msg. */
static int split_lanes(replay_t *r, int nlanes, int64_t *bounds) {
  vd_history_filter_t f = filter_of(r);
  return vd_history_split(r->db, &f, nlanes, bounds, &r->fatal_msg) ? -1 : 0;
}

/* A candidate's question the record does not hold: ask the history now,
 * over the same window before the decision time. */
static int answer_now(void *ud, const char *query, const char *a,
                      const char *b, int64_t since_ms, int64_t until_ms,
                      int64_t *count) {
  return vd_history_answer(ud, query, a, b, since_ms, until_ms, count);
}

/* Decide again every row of this lane: a contiguous range of seq, so that
 * each thread reads only its own pages of the table. */
static void *lane_run(void *arg) {
  replay_t *r = arg;
  vd_history_filter_t f = filter_of(r);
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  int rc, recorded = strcmp(r->against, "recorded") == 0;
  vd_watch_slot_t *slot = r->watchdog ? vd_watchdog_attach(r->watchdog, r->lane)
                                      : NULL;
  vd_history_reader_t *now = NULL;
  char *why_not = NULL;

  /* against a candidate, a question the recorded decision never asked
   * (a new rule's) is answered from the history as it is now */
  if (!recorded && r->candidate) {
    if (vd_history_reader_open(&now, r->db, &why_not) == 0)
      vd_engine_set_facts(r->candidate, answer_now, now);
    else if (r->lane == 0)
      fprintf(stderr, "verdict replay: new questions of the candidate "
                      "cannot be answered: %s\n", why_not ? why_not : "?");
    free(why_not);
  }

  f.has_seq = 1;
  f.seq_lo = r->seq_lo;
  f.seq_hi = r->seq_hi;
  if (vd_history_rows_open(&rows, r->db, &f, &r->err) != 0) {
    vd_buf_addf(&r->fatal_msg, "%s", r->err.data);
    goto out;
  }

  while ((rc = vd_history_rows_next(rows, &row)) == 1) {
    const char *id = row[VD_HISTORY_DECISION_ID].text;
    int64_t received = row[VD_HISTORY_RECEIVED_MS].i;
    const char *rev = row[VD_HISTORY_REVISION].text;
    const char *req = row[VD_HISTORY_REQUEST].text;
    size_t reqlen = row[VD_HISTORY_REQUEST].len;
    const char *res = row[VD_HISTORY_RESULT].text;
    const char *trace = row[VD_HISTORY_TRACE].text;
    const char *code = row[VD_HISTORY_ERROR_CODE].text;
    int64_t seq = row[VD_HISTORY_SEQ].i;
    const char *why = NULL;
    vd_engine_t *e;
    int same;
    if (!req || (code && strcmp(code, "too_large") == 0))
      continue; /* nothing decidable was recorded */
    e = recorded ? (rev ? engine_for(r, rev, &why) : NULL) : r->candidate;
    r->replayed++;
    if (!e) {
      r->errors++;
      if (r->errors <= 10)
        fprintf(stderr, "verdict replay: %s: %s\n", id ? id : "?",
                why ? why : "no revision recorded");
      continue;
    }
    /* the policy sees exactly the history facts it saw then */
    vd_engine_replay_facts(e, row[VD_HISTORY_FACTS].text);
    vd_engine_set_watch(e, slot); /* fast attempts, the same answers */
    vd_engine_decide(e, req, reqlen, received, &r->d);
    vd_engine_set_watch(e, NULL);
    if (r->d.facts_now)
      r->asked_now++;
    if (code)
      same = r->d.code && strcmp(code, vd_err_name(r->d.code)) == 0;
    else
      same = r->d.code == 0 && res && trace &&
             strcmp(res, r->d.result.data) == 0 &&
             strcmp(trace, r->d.trace.data) == 0;
    if (same) {
      r->unchanged++;
    } else {
      r->changed++;
      report_change(r, seq, id ? id : "?", res, trace, code);
    }
    if (!recorded) {
      long long ob = offer_of(res), oa = r->d.code ? -1 : offer_of(r->d.result.data);
      count_rules(r, trace, 0);
      if (!r->d.code)
        count_rules(r, r->d.trace.data, 1);
      if (ob >= 0 || oa >= 0)
        add_offer(r, ob > 0 ? ob : 0, oa > 0 ? oa : 0);
    }
  }
  if (rc < 0)
    vd_buf_addf(&r->fatal_msg, "reading %s", vd_history_rows_errmsg(rows));
out:
  if (now) {
    vd_engine_set_facts(r->candidate, NULL, NULL);
    vd_history_reader_close(now);
  }
  vd_watchdog_detach(slot);
  vd_history_rows_close(rows);
  return NULL;
}

static void lane_release(replay_t *r) {
  size_t i;
  for (i = 0; i < r->nrevs; i++) {
    vd_engine_free(r->revs[i].engine);
    free(r->revs[i].why);
  }
  free(r->revs);
  for (i = 0; i < r->nrules; i++)
    free(r->rules[i].key);
  free(r->rules);
  free(r->offers_a);
  free(r->offers_b);
  free(r->chg);
  vd_engine_free(r->candidate);
  vd_decision_release(&r->d);
  vd_buf_release(&r->changes);
  vd_buf_release(&r->err);
  vd_buf_release(&r->fatal_msg);
  if (r->L)
    lua_close(r->L);
}

/* Fold lane b's counts into a. */
static void merge_lane(replay_t *a, replay_t *b) {
  size_t i;
  a->replayed += b->replayed;
  a->unchanged += b->unchanged;
  a->changed += b->changed;
  a->errors += b->errors;
  a->asked_now += b->asked_now;
  for (i = 0; i < b->nrules; i++) {
    size_t j;
    for (j = 0; j < a->nrules; j++)
      if (strcmp(a->rules[j].key, b->rules[i].key) == 0)
        break;
    if (j == a->nrules) {
      counter_t *c = realloc(a->rules, (a->nrules + 1) * sizeof *c);
      if (!c)
        continue;
      a->rules = c;
      c[j].key = strdup(b->rules[i].key);
      c[j].before = c[j].after = 0;
      a->nrules++;
    }
    a->rules[j].before += b->rules[i].before;
    a->rules[j].after += b->rules[i].after;
  }
  for (i = 0; i < (size_t)b->offers; i++)
    add_offer(a, b->offers_b[i], b->offers_a[i]);
}

/* The first MAX_REPORTED changes of all lanes, in chain order, into out. */
static long long merge_changes(replay_t *lanes, int n, int json,
                               vd_buf_t *out) {
  size_t *next = calloc((size_t)n, sizeof *next);
  long long shown = 0;
  if (!next)
    return 0;
  while (shown < MAX_REPORTED) {
    int best = -1, k;
    for (k = 0; k < n; k++)
      if (next[k] < lanes[k].nchg &&
          (best < 0 || lanes[k].chg[next[k]].seq <
                           lanes[best].chg[next[best]].seq))
        best = k;
    if (best < 0)
      break;
    {
      struct change *c = &lanes[best].chg[next[best]++];
      if (json && shown)
        vd_buf_addc(out, ',');
      vd_buf_add(out, lanes[best].changes.data + c->off, c->len);
      shown++;
    }
  }
  free(next);
  return shown;
}

int vd_cli_replay(int argc, char **argv) {
  replay_t opt, *lanes = NULL;
  pthread_t *threads = NULL;
  vd_bundle_t *cand = NULL;
  vd_buf_t err = VD_BUF_INIT, merged = VD_BUF_INIT;
  vd_watchdog_t wd;
  int64_t *bounds = NULL;
  int i, rc = 0, recorded, nlanes, always_count = 0;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

  memset(&opt, 0, sizeof opt);
  opt.db = VD_DEFAULT_DB;
  opt.against = "recorded";
  opt.format = "text";
  nlanes = ncpu > 0 ? (int)(ncpu < 8 ? ncpu : 8) : 1;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--always-count") == 0) {
      always_count = 1;
      continue;
    }
    if (!v || a[0] != '-')
      return usage("unexpected argument", a);
    if (strcmp(a, "--db") == 0)
      opt.db = v;
    else if (strcmp(a, "--against") == 0)
      opt.against = v;
    else if (strcmp(a, "--format") == 0) {
      if (strcmp(v, "text") && strcmp(v, "json"))
        return usage("--format takes text or json, not", v);
      opt.format = v;
    } else if (strcmp(a, "--region") == 0)
      opt.region = v;
    else if (strcmp(a, "--kind") == 0)
      opt.kind = v;
    else if (strcmp(a, "--threads") == 0) {
      nlanes = atoi(v);
      if (nlanes < 1 || nlanes > 64)
        return usage("--threads takes 1 to 64, not", v);
    } else if (strcmp(a, "--since") == 0) {
      if (parse_time_opt(a, v, &opt.since_ms))
        return 2;
      opt.has_since = 1;
    } else if (strcmp(a, "--until") == 0) {
      if (parse_time_opt(a, v, &opt.until_ms))
        return 2;
      opt.has_until = 1;
    } else
      return usage("unknown option", a);
    i++;
  }
  recorded = strcmp(opt.against, "recorded") == 0;
  if (!recorded && vd_bundle_load(opt.against, &cand, &err) != 0) {
    fprintf(stderr, "verdict replay: --against %s: %s\n", opt.against,
            err.data);
    vd_buf_release(&err);
    return 2;
  }
  bounds = calloc((size_t)nlanes + 1, sizeof *bounds);
  if (!bounds || split_lanes(&opt, nlanes, bounds) != 0) {
    fprintf(stderr, "verdict replay: %s\n",
            opt.fatal_msg.data ? opt.fatal_msg.data : "out of memory");
    vd_buf_release(&opt.fatal_msg);
    free(bounds);
    if (cand)
      vd_bundle_unref(cand);
    return 2;
  }
  lanes = calloc((size_t)nlanes, sizeof *lanes);
  threads = calloc((size_t)nlanes, sizeof *threads);
  if (!lanes || !threads) {
    rc = 2;
    goto out;
  }
  for (i = 0; i < nlanes; i++) {
    replay_t *r = &lanes[i];
    *r = opt;
    r->lane = i;
    r->seq_lo = bounds[i];
    r->seq_hi = bounds[i + 1];
    vd_decision_init(&r->d);
    r->L = luaL_newstate();
    if (!r->L) {
      rc = 2;
      goto out;
    }
    vd_json_setup(r->L);
    if (cand && vd_engine_new(cand, NULL, &r->candidate, &err) != 0) {
      fprintf(stderr, "verdict replay: --against %s: %s\n", opt.against,
              err.data);
      rc = 2;
      goto out;
    }
  }
  /* one thread a lane; each has its own connection, engines and state, and
   * a slot of one watchdog, so that decisions are tried hook-free first */
  memset(&wd, 0, sizeof wd);
  if (!always_count && vd_watchdog_start(&wd, nlanes, VD_WATCH_TICK_NS) == 0)
    for (i = 0; i < nlanes; i++)
      lanes[i].watchdog = &wd;
  for (i = 0; i < nlanes; i++)
    if (pthread_create(&threads[i], NULL, lane_run, &lanes[i]) != 0)
      lane_run(&lanes[i]), threads[i] = 0;
  for (i = 0; i < nlanes; i++)
    if (threads[i])
      pthread_join(threads[i], NULL);
  vd_watchdog_stop(&wd);
  for (i = 0; i < nlanes; i++)
    if (lanes[i].fatal_msg.len) { /* reading the database failed */
      fprintf(stderr, "verdict replay: %s\n", lanes[i].fatal_msg.data);
      rc = 2;
      goto out;
    }
  merge_changes(lanes, nlanes, strcmp(opt.format, "json") == 0, &merged);
  for (i = 1; i < nlanes; i++) {
    merge_lane(&lanes[0], &lanes[i]);
  }
  vd_buf_release(&lanes[0].changes);
  lanes[0].changes = merged;
  vd_buf_init(&merged);
  rc = print_report(&lanes[0], recorded);
out:
  for (i = 0; lanes && i < nlanes; i++)
    lane_release(&lanes[i]);
  free(lanes);
  free(threads);
  free(bounds);
  if (cand)
    vd_bundle_unref(cand);
  vd_buf_release(&err);
  vd_buf_release(&merged);
  return rc;
}
