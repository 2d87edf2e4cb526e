/*
 * eval.c - `verdict eval`: try a case offline, in this process, against a
 * policy directory or a revision stored in the history, and print the
 * response exactly as verdictd would write it (wire.h), with nothing
 * recorded anywhere:
 *
 *   verdict eval KIND --region R [--at T] [--id ID]
 *                [--policies DIR | --revision REV] [--db PATH]
 *                [--explain] [--compare DIR|REV] [--batch] [FILE|-]
 *
 * The decision is vd_engine_decide()'s, the daemon's own path, on an
 * engine of the chosen bundle; the response has no decision_id, since no
 * decision is recorded.  History questions (ctx.history) are answered from
 * the database at --db, read-only, as it is now; without one they are
 * absent, as in `verdict test`.
 *
 * --explain prints, after the response, every rule the policy considered
 * (lib/rules.lua's explain mode, vd_engine_set_explain()): fired or not,
 * the facts its condition read in the order read (for a rule that did not
 * fire, the last of them is, in `a and b`, the condition that was false).
 *
 * --batch reads NDJSON: each line a request as the daemon takes it (an
 * object with "input"), or an input object decided as KIND for --region.
 * One response line per line.  --compare decides every case a second time
 * against another directory or revision and prints, instead of the
 * responses, what differs (exit status 1 when anything does).
 *
 * Exit status: 0 decided (and, with --compare, no difference); 1 an error
 * response or a difference; 2 usage, an unreadable input or bundle.
 * Runs on the CLI's main thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "cmd_int.h"
#include "verdict/engine.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"
#include "verdict/wire.h"

static const char eval_usage[] =
    "usage: verdict eval KIND --region R [--at T] [--id ID]\n"
    "                    [--policies DIR | --revision REV] [--db PATH]\n"
    "                    [--explain] [--compare DIR|REV] [--batch] "
    "[FILE|-]\n"
    "\n"
    "Decide the input object in FILE (or stdin) offline, in this process,\n"
    "and print the response as verdictd would; nothing is recorded.\n"
    "  --policies DIR    the bundle to decide with (default: policies)\n"
    "  --revision REV    a revision stored in the history instead: a hash\n"
    "                    prefix, active, previous, @-N or a tag\n"
    "  --db PATH         the history database (revisions; ctx.history\n"
    "                    questions are answered from it, read-only;\n"
    "                    default " VD_DEFAULT_DB ")\n"
    "  --at T            the decision time (RFC 3339; default now)\n"
    "  --explain         every rule considered, fired or not, and the\n"
    "                    facts its condition read\n"
    "  --batch           FILE is NDJSON: one request (with \"input\") or one\n"
    "                    input object per line; KIND and --region may be\n"
    "                    left out when every line is a request\n"
    "  --compare DIR|REV decide again with another bundle and print what\n"
    "                    differs (exit 1 if anything does)\n";

typedef struct eval_opts {
  const char *kind, *region, *at, *id, *policies, *revision, *db, *compare;
  const char *file;
  int explain, batch, db_given;
} eval_opts_t;

/* One side of the evaluation: a bundle, its engine, what it explains. */
typedef struct side {
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_decision_t d;
  vd_buf_t explain;
} side_t;

static int facts_answer(void *ud, const char *query, const char *a,
                        const char *b, int64_t since_ms, int64_t until_ms,
                        int64_t *count) {
  return vd_history_answer(ud, query, a, b, since_ms, until_ms, count);
}

static int side_open(side_t *s, const char *spec, int how, const char *db,
                     vd_history_reader_t *facts) {
  vd_limits_t lim = VD_LIMITS_DEFAULT;
  vd_buf_t err = VD_BUF_INIT;
  vd_decision_init(&s->d);
  vd_buf_init(&s->explain);
  s->e = NULL;
  if (vd_cli_open_bundle("eval", spec, how, db, &s->b) != 0)
    return 2;
  if (vd_engine_new(s->b, &lim, &s->e, &err) != 0) {
    fprintf(stderr, "verdict eval: %s: %s\n", spec, err.data);
    vd_buf_release(&err);
    return 2;
  }
  if (facts)
    vd_engine_set_facts(s->e, facts_answer, facts);
  return 0;
}

static void side_close(side_t *s) {
  if (s->e)
    vd_engine_free(s->e);
  if (s->b)
    vd_bundle_unref(s->b);
  vd_decision_release(&s->d);
  vd_buf_release(&s->explain);
}

/* ========================================================================
 * JSON values, read back with yajl's tree parser
 * ====================================================================== */

/* Append V as JSON (object keys in the order they came). */
static void put_value(vd_buf_t *out, yajl_val v) {
  size_t i;
  if (!v || YAJL_IS_NULL(v)) {
    vd_buf_adds(out, "null");
  } else if (YAJL_IS_STRING(v)) {
    vd_buf_add_json_str(out, v->u.string, strlen(v->u.string));
  } else if (YAJL_IS_NUMBER(v)) {
    vd_buf_adds(out, v->u.number.r);
  } else if (YAJL_IS_TRUE(v)) {
    vd_buf_adds(out, "true");
  } else if (YAJL_IS_FALSE(v)) {
    vd_buf_adds(out, "false");
  } else if (YAJL_IS_ARRAY(v)) {
    vd_buf_addc(out, '[');
    for (i = 0; i < v->u.array.len; i++) {
      if (i)
        vd_buf_addc(out, ',');
      put_value(out, v->u.array.values[i]);
    }
    vd_buf_addc(out, ']');
  } else if (YAJL_IS_OBJECT(v)) {
    vd_buf_addc(out, '{');
    for (i = 0; i < v->u.object.len; i++) {
      if (i)
        vd_buf_addc(out, ',');
      vd_buf_add_json_str(out, v->u.object.keys[i],
                          strlen(v->u.object.keys[i]));
      vd_buf_addc(out, ':');
      put_value(out, v->u.object.values[i]);
    }
    vd_buf_addc(out, '}');
  }
}

static yajl_val member(yajl_val obj, const char *key) {
  size_t i;
  if (!obj || !YAJL_IS_OBJECT(obj))
    return NULL;
  for (i = 0; i < obj->u.object.len; i++)
    if (strcmp(obj->u.object.keys[i], key) == 0)
      return obj->u.object.values[i];
  return NULL;
}

/* Append "PATH: A -> B\n" to OUT for every leaf where A and B differ;
 * objects are compared key by key (A's keys first, then B's own), every
 * other value as a whole.  Both come from the canonical encoder (keys
 * sorted), so equal values have equal text.  Returns how many differ. */
static int diff_values(vd_buf_t *out, const char *path, yajl_val a,
                       yajl_val b, int a_has, int b_has) {
  vd_buf_t ta = VD_BUF_INIT, tb = VD_BUF_INIT, sub = VD_BUF_INIT;
  int n = 0;
  size_t i;
  if (a_has && b_has && YAJL_IS_OBJECT(a) && YAJL_IS_OBJECT(b)) {
    for (i = 0; i < a->u.object.len; i++) {
      const char *k = a->u.object.keys[i];
      yajl_val bv = member(b, k);
      vd_buf_reset(&sub);
      vd_buf_addf(&sub, "%s.%s", path, k);
      n += diff_values(out, sub.data, a->u.object.values[i], bv, 1,
                       bv != NULL);
    }
    for (i = 0; i < b->u.object.len; i++) {
      const char *k = b->u.object.keys[i];
      size_t j;
      for (j = 0; j < a->u.object.len; j++)
        if (strcmp(a->u.object.keys[j], k) == 0)
          break;
      if (j < a->u.object.len)
        continue;
      vd_buf_reset(&sub);
      vd_buf_addf(&sub, "%s.%s", path, k);
      n += diff_values(out, sub.data, NULL, b->u.object.values[i], 0, 1);
    }
  } else {
    if (a_has)
      put_value(&ta, a);
    if (b_has)
      put_value(&tb, b);
    if (a_has != b_has || strcmp(ta.data ? ta.data : "",
                                 tb.data ? tb.data : "") != 0) {
      vd_buf_addf(out, "  %s: %s -> %s\n", path,
                  a_has ? ta.data : "(absent)", b_has ? tb.data : "(absent)");
      n = 1;
    }
  }
  vd_buf_release(&ta);
  vd_buf_release(&tb);
  vd_buf_release(&sub);
  return n;
}

/* A decision's outcome as one JSON object: {"error":{code,message}} or
 * {"result":..,"trace":[rule ids]}, for comparing two of them. */
static void outcome_json(const vd_decision_t *d, vd_buf_t *out) {
  vd_buf_reset(out);
  if (d->code) {
    vd_buf_adds(out, "{\"error\":{\"code\":");
    vd_buf_add_json_str(out, vd_err_name(d->code), strlen(vd_err_name(d->code)));
    vd_buf_adds(out, ",\"message\":");
    vd_buf_add_json_str(out, d->message.data ? d->message.data : "",
                        d->message.len);
    vd_buf_adds(out, "}}");
    return;
  }
  vd_buf_adds(out, "{\"result\":");
  vd_buf_add(out, d->result.data, d->result.len);
  vd_buf_adds(out, ",\"trace\":[");
  { /* the rules that fired, in order; their bases say nothing new */
    yajl_val tr = yajl_tree_parse(d->trace.data ? d->trace.data : "[]",
                                  NULL, 0);
    size_t i;
    for (i = 0; tr && YAJL_IS_ARRAY(tr) && i < tr->u.array.len; i++) {
      yajl_val id = member(tr->u.array.values[i], "rule");
      if (i)
        vd_buf_addc(out, ',');
      put_value(out, id);
    }
    yajl_tree_free(tr);
  }
  vd_buf_adds(out, "]}");
}

/* Print what differs between the outcomes of A and B under HEADING;
 * returns 1 if anything does. */
static int compare(const char *heading, const vd_decision_t *a,
                   const vd_decision_t *b) {
  vd_buf_t ja = VD_BUF_INIT, jb = VD_BUF_INIT, out = VD_BUF_INIT;
  yajl_val va, vb;
  int n = 0;
  outcome_json(a, &ja);
  outcome_json(b, &jb);
  va = yajl_tree_parse(ja.data, NULL, 0);
  vb = yajl_tree_parse(jb.data, NULL, 0);
  if (va && vb) {
    n = diff_values(&out, "result", member(va, "result"),
                    member(vb, "result"), member(va, "result") != NULL,
                    member(vb, "result") != NULL);
    n += diff_values(&out, "trace", member(va, "trace"), member(vb, "trace"),
                     member(va, "trace") != NULL,
                     member(vb, "trace") != NULL);
    n += diff_values(&out, "error", member(va, "error"), member(vb, "error"),
                     member(va, "error") != NULL,
                     member(vb, "error") != NULL);
  } else if (strcmp(ja.data, jb.data) != 0) {
    vd_buf_addf(&out, "  %s\n  -> %s\n", ja.data, jb.data);
    n = 1;
  }
  if (n)
    printf("%s\n%s", heading, out.data);
  yajl_tree_free(va);
  yajl_tree_free(vb);
  vd_buf_release(&ja);
  vd_buf_release(&jb);
  vd_buf_release(&out);
  return n ? 1 : 0;
}

/* ========================================================================
 * --explain
 * ====================================================================== */

/* Print the rules ctx.explain recorded (engine.h, vd_engine_set_explain):
 *   fired   compensation/comp.overcharge
 *             read charged_fen = 5000, due_fen = 3000
 *   -       compensation/comp.exempt.outage
 *             false: category = "billing"
 *   -       cap/comp.cap.grade
 *             false after reading capped = 0, cap = 40000 (last: cap)
 */
static void print_explain(const char *text) {
  char why[256];
  yajl_val list = yajl_tree_parse(text && *text ? text : "[]", why,
                                  sizeof why);
  vd_buf_t line = VD_BUF_INIT;
  size_t i, j;
  if (!list || !YAJL_IS_ARRAY(list)) {
    printf("explain: cannot read the explanation: %s\n", why);
    yajl_tree_free(list);
    return;
  }
  printf("explain: %zu rule%s considered\n", list->u.array.len,
         list->u.array.len == 1 ? "" : "s");
  for (i = 0; i < list->u.array.len; i++) {
    yajl_val r = list->u.array.values[i];
    yajl_val tbl = member(r, "table"), id = member(r, "rule");
    yajl_val reads = member(r, "reads");
    int fired = YAJL_IS_TRUE(member(r, "fired"));
    size_t nreads = reads && YAJL_IS_ARRAY(reads) ? reads->u.array.len : 0;
    vd_buf_reset(&line);
    for (j = 0; j < nreads; j++) {
      yajl_val rd = reads->u.array.values[j], v = member(rd, "value");
      yajl_val f = member(rd, "field");
      vd_buf_addf(&line, "%s%s = ", j ? ", " : "",
                  f && YAJL_IS_STRING(f) ? f->u.string : "?");
      if (v)
        put_value(&line, v);
      else
        vd_buf_adds(&line, "(absent)");
    }
    printf("  %-6s %s/%s\n", fired ? "fired" : "-",
           tbl && YAJL_IS_STRING(tbl) ? tbl->u.string : "?",
           id && YAJL_IS_STRING(id) ? id->u.string : "?");
    if (YAJL_IS_TRUE(member(r, "always")))
      printf("           no condition\n");
    else if (fired)
      printf("           read %s\n", nreads ? line.data : "no fact");
    else if (nreads) {
      yajl_val last = reads->u.array.values[nreads - 1];
      yajl_val f = member(last, "field");
      if (nreads == 1)
        printf("           false: %s\n", line.data);
      else /* in `a and b`, the last one read is the condition false */
        printf("           false after reading %s (last: %s)\n", line.data,
               f && YAJL_IS_STRING(f) ? f->u.string : "?");
    } else {
      printf("           false without reading a fact\n");
    }
  }
  vd_buf_release(&line);
  yajl_tree_free(list);
}

/* ========================================================================
 * Requests
 * ====================================================================== */

/* The request line for the input object in [text, text+len), or, when it
 * is a request itself (it has "input"), that request on one line.  The
 * JSON is decoded and encoded again in a Lua state of the one allocator
 * (sandbox.h).  Returns 0, or -1 with ERR saying why. */
static int request_line(const eval_opts_t *o, vd_sandbox_t *sb,
                        const char *text, size_t len, int batch,
                        vd_buf_t *line, vd_buf_t *err) {
  lua_State *L = sb->L;
  int top = lua_gettop(L), rc;
  vd_buf_reset(line);
  rc = vd_json_decode_protected(L, text, len, 0, err);
  if (rc)
    return -1;
  if (vd_json_marker(L, -1) != 2) {
    vd_buf_adds(err, "expected a JSON object");
    lua_settop(L, top);
    return -1;
  }
  if (batch && lua_getfield(L, -1, "input") != LUA_TNIL) {
    lua_pop(L, 1);
    rc = vd_json_encode(L, -1, line, "request", err);
    lua_settop(L, top);
    return rc ? -1 : 0;
  }
  lua_settop(L, top + 1);
  if (!o->kind || !o->region) {
    vd_buf_adds(err, batch ? "an input without \"kind\" and \"input\" needs "
                             "KIND and --region on the command line"
                           : "KIND and --region are required");
    lua_settop(L, top);
    return -1;
  }
  vd_buf_adds(line, "{\"id\":");
  if (o->id)
    vd_buf_add_json_str(line, o->id, strlen(o->id));
  else
    vd_buf_adds(line, "\"eval\"");
  vd_buf_adds(line, ",\"kind\":");
  vd_buf_add_json_str(line, o->kind, strlen(o->kind));
  vd_buf_adds(line, ",\"region\":");
  vd_buf_add_json_str(line, o->region, strlen(o->region));
  if (o->at) {
    vd_buf_adds(line, ",\"at\":");
    vd_buf_add_json_str(line, o->at, strlen(o->at));
  }
  vd_buf_adds(line, ",\"input\":");
  rc = vd_json_encode(L, -1, line, "input", err);
  vd_buf_addc(line, '}');
  lua_settop(L, top);
  return rc ? -1 : 0;
}

/* Decide LINE with S (and C when comparing); print the response, the
 * explanation, or the differences.  Returns 0, or 1 for an error
 * response or a difference. */
static int eval_one(const eval_opts_t *o, side_t *s, side_t *c,
                    const char *line, size_t len, int64_t now_ms,
                    const char *where) {
  vd_buf_t out = VD_BUF_INIT;
  int rc;
  vd_buf_reset(&s->explain);
  vd_engine_decide(s->e, line, len, now_ms, &s->d);
  if (c) {
    vd_buf_t heading = VD_BUF_INIT;
    vd_engine_decide(c->e, line, len, now_ms, &c->d);
    vd_buf_addf(&heading, "%s%s%s differs:", where, *where ? ", id " : "id ",
                s->d.id.data ? s->d.id.data : "null");
    rc = compare(heading.data, &s->d, &c->d);
    vd_buf_release(&heading);
    return rc;
  }
  vd_wire_write_decision(&out, &s->d, NULL, vd_bundle_revision(s->b));
  fwrite(out.data, 1, out.len, stdout);
  if (o->explain && s->explain.len)
    print_explain(s->explain.data);
  vd_buf_release(&out);
  return s->d.code ? 1 : 0;
}

static int read_input(const char *path, vd_buf_t *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  char chunk[65536];
  size_t n;
  if (!f) {
    fprintf(stderr, "verdict eval: %s: ", path);
    perror(NULL);
    return -1;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    vd_buf_add(out, chunk, n);
  if (f != stdin)
    fclose(f);
  return 0;
}

static int parse_opts(int argc, char **argv, eval_opts_t *o) {
  int i, npos = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--explain") == 0) {
      o->explain = 1;
      continue;
    }
    if (strcmp(a, "--batch") == 0) {
      o->batch = 1;
      continue;
    }
    if (strcmp(a, "--region") == 0)
      slot = &o->region;
    else if (strcmp(a, "--at") == 0)
      slot = &o->at;
    else if (strcmp(a, "--id") == 0)
      slot = &o->id;
    else if (strcmp(a, "--policies") == 0)
      slot = &o->policies;
    else if (strcmp(a, "--revision") == 0)
      slot = &o->revision;
    else if (strcmp(a, "--db") == 0)
      slot = &o->db;
    else if (strcmp(a, "--compare") == 0)
      slot = &o->compare;
    if (slot) {
      if (i + 1 >= argc) {
        fprintf(stderr, "verdict eval: %s needs a value\n", a);
        return 2;
      }
      *slot = argv[++i];
      if (slot == &o->db)
        o->db_given = 1;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "verdict eval: unknown option %s\n%s", a, eval_usage);
      return 2;
    } else if (npos == 0) {
      o->kind = a;
      npos++;
    } else if (npos == 1) {
      o->file = a;
      npos++;
    } else {
      fprintf(stderr, "verdict eval: unexpected argument %s\n", a);
      return 2;
    }
  }
  /* --batch of requests only: `verdict eval --batch FILE` */
  if (o->batch && npos == 1 && !o->region) {
    o->file = o->kind;
    o->kind = NULL;
  }
  if (o->policies && o->revision) {
    fprintf(stderr, "verdict eval: --policies and --revision name two "
                    "bundles; give one\n");
    return 2;
  }
  if (o->at) {
    int64_t ms;
    int off;
    if (vd_time_parse(o->at, strlen(o->at), &ms, &off) != 0) {
      fprintf(stderr, "verdict eval: --at: '%s' is not an RFC 3339 time "
                      "(like 2026-11-23T10:00:00+08:00)\n", o->at);
      return 2;
    }
  }
  if (!o->batch && (!o->kind || !o->region)) {
    fprintf(stderr, "verdict eval: KIND and --region are required\n%s",
            eval_usage);
    return 2;
  }
  return 0;
}

int vd_cli_eval(int argc, char **argv) {
  eval_opts_t o;
  side_t s, c;
  vd_history_reader_t *facts = NULL;
  vd_sandbox_t sb;
  vd_buf_t text = VD_BUF_INIT, line = VD_BUF_INIT, err = VD_BUF_INIT;
  int64_t now_ms = vd_now_ms();
  int rc, have_c = 0, sb_ok = 0;

  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(eval_usage);
  memset(&o, 0, sizeof o);
  o.db = VD_DEFAULT_DB;
  memset(&s, 0, sizeof s);
  memset(&c, 0, sizeof c);
  if ((rc = parse_opts(argc, argv, &o)) != 0)
    return rc;
  /* history questions are answered from the database, when there is one */
  if (o.db_given || access(o.db, R_OK) == 0) {
    char *why = NULL;
    if (vd_history_reader_open(&facts, o.db, &why) != 0) {
      if (o.db_given && !o.revision)
        fprintf(stderr, "verdict eval: ctx.history is absent: %s\n",
                why ? why : "cannot open the database");
      facts = NULL;
    }
    free(why);
  }
  rc = side_open(&s, o.revision ? o.revision : o.policies ? o.policies
                                                          : "policies",
                 o.revision ? VD_CLI_REVISION : VD_CLI_DIRECTORY, o.db, facts);
  if (rc == 0 && o.compare) {
    have_c = 1;
    rc = side_open(&c, o.compare, VD_CLI_EITHER, o.db, facts);
  }
  if (rc == 0 && o.explain)
    vd_engine_set_explain(s.e, &s.explain);
  if (rc == 0 && vd_sandbox_init(&sb, &err) != 0) {
    fprintf(stderr, "verdict eval: %s\n", err.data);
    rc = 2;
  } else if (rc == 0) {
    sb_ok = 1;
  }
  if (rc == 0 && read_input(o.file ? o.file : "-", &text) != 0)
    rc = 2;
  if (rc == 0 && !o.batch) {
    if (request_line(&o, &sb, text.data ? text.data : "", text.len, 0, &line,
                     &err) != 0) {
      fprintf(stderr, "verdict eval: %s: %s\n", o.file ? o.file : "stdin",
                      err.data ? err.data : "cannot read the input");
      rc = 2;
    } else {
      rc = eval_one(&o, &s, have_c ? &c : NULL, line.data, line.len, now_ms,
                    "");
      if (have_c && !rc)
        printf("no difference between %s and %s\n",
               vd_bundle_revision(s.b), vd_bundle_revision(c.b));
    }
  } else if (rc == 0) {
    const char *p = text.data ? text.data : "", *end = p + text.len;
    long lineno = 0, cases = 0, differ = 0, errors = 0;
    while (p < end && rc != 2) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
      char where[32];
      lineno++;
      snprintf(where, sizeof where, "line %ld", lineno);
      if (n && p[n - 1] == '\r')
        n--;
      if (strspn(p, " \t") < n) {
        vd_buf_reset(&err);
        if (request_line(&o, &sb, p, n, 1, &line, &err) != 0) {
          fprintf(stderr, "verdict eval: %s:%ld: %s\n",
                  o.file ? o.file : "stdin", lineno, err.data);
          rc = 2;
          break;
        }
        cases++;
        if (eval_one(&o, &s, have_c ? &c : NULL, line.data, line.len, now_ms,
                     where) != 0) {
          if (have_c)
            differ++;
          else
            errors++;
        }
      }
      p = nl ? nl + 1 : end;
    }
    if (rc == 0 && have_c)
      printf("%ld case%s, %ld differ%s between %s and %s\n", cases,
             cases == 1 ? "" : "s", differ, differ == 1 ? "s" : "",
             vd_bundle_revision(s.b), vd_bundle_revision(c.b));
    if (rc == 0)
      rc = differ || errors ? 1 : 0;
  }
  if (sb_ok)
    vd_sandbox_release(&sb);
  side_close(&s);
  if (have_c)
    side_close(&c);
  vd_history_reader_close(facts);
  vd_buf_release(&text);
  vd_buf_release(&line);
  vd_buf_release(&err);
  return rc;
}
