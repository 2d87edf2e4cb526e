/*
 * audit.c - the auditor commands: `verdict history show|list|verify`
 * (`verdict revisions` goes through the daemon's admin socket: admin.c).
 *
 * Owns nothing past one command: each reads the history database
 * read-only through history.h (vd_history_rows_open() for show and list,
 * vd_history_verify_anchor() for verify; WAL: the daemon keeps writing,
 * we see committed batches only) and prints to stdout.  Runs on the CLI's
 * main thread.
 *
 * Exit status: 0 success; 1 the thing asked about is not there or not
 * intact (no such decision, verify found an alteration); 2 the command
 * could not run (bad usage, no database, not a verdict database).  Error
 * messages go to stderr and name the option or argument at fault.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/personal.h"
#include "verdict/pseudonym.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"

#define DEFAULT_DB VD_DEFAULT_DB

enum { EXIT_OK = 0, EXIT_NO = 1, EXIT_USAGE = 2 };

/* ========================================================================
 * Options
 * ====================================================================== */

/* Which options a command takes. */
enum {
  OPT_DB = 1 << 0,
  OPT_FORMAT = 1 << 1,
  OPT_SINCE = 1 << 2,
  OPT_UNTIL = 1 << 3,
  OPT_REGION = 1 << 4,
  OPT_KIND = 1 << 5,
  OPT_COMPLAINT = 1 << 6,
  OPT_LIMIT = 1 << 7,
  OPT_ANCHOR = 1 << 8,
  OPT_FORCE = 1 << 9,     /* a flag: takes no value */
  OPT_CUSTOMER = 1 << 10,
  OPT_WHO = 1 << 11,
  OPT_POLICIES = 1 << 12,
  OPT_BEFORE = 1 << 13,
  OPT_TO = 1 << 14,
  OPT_PSEUDO_KEY = 1 << 15
};

/* Options that take no value. */
#define FLAG_OPTS OPT_FORCE

typedef struct opts {
  const char *cmd;        /* "history list", for messages */
  const char *db;
  const char *format;     /* as given; checked by the command */
  vd_history_filter_t sel; /* list: the rows to list */
  vd_history_anchor_t anchor; /* verify --anchor SEQ:HASH[/ID:HASH] */
  const char *node_anchors[VD_CLI_MAX_ANCHORS]; /* NODE:SEQ:HASH (fleet.c) */
  int nnode_anchors;
  const char *arg;        /* the one positional argument, if any */
  int force;              /* --force */
  const char *customer;   /* erase --customer */
  const char *who;        /* erase --who */
  const char *policies;   /* erase --policies */
  int has_before;         /* archive --before */
  int64_t before_ms;
  const char *to;         /* archive --to */
  const char *pseudo_key; /* --pseudonymise-key: --customer is looked up
                           * by its pseudonym */
  char pseudonym[VD_PSEUDONYM_LEN + 1];
} opts_t;

static const struct {
  const char *name;
  int bit;
} option_names[] = {
    {"--db", OPT_DB},         {"--format", OPT_FORMAT},
    {"--since", OPT_SINCE},   {"--until", OPT_UNTIL},
    {"--region", OPT_REGION}, {"--kind", OPT_KIND},
    {"--complaint", OPT_COMPLAINT}, {"--limit", OPT_LIMIT},
    {"--anchor", OPT_ANCHOR}, {"--force", OPT_FORCE},
    {"--customer", OPT_CUSTOMER}, {"--who", OPT_WHO},
    {"--policies", OPT_POLICIES}, {"--before", OPT_BEFORE},
    {"--to", OPT_TO}, {"--pseudonymise-key", OPT_PSEUDO_KEY},
};

static int usage_err(const opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_err(const opts_t *o, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "verdict %s: ", o->cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(try: verdict %s --help)\n", o->cmd);
  return EXIT_USAGE;
}

static int parse_time(const opts_t *o, const char *opt, const char *v,
                      int64_t *ms) {
  int off;
  if (vd_time_parse(v, strlen(v), ms, &off) != 0)
    return usage_err(o,
                     "%s: '%s' is not an RFC 3339 time "
                     "(like 2026-11-23T10:00:00+08:00)",
                     opt, v);
  return 0;
}

/* Parse argv[first..] into O, accepting only the options in ALLOWED and
 * at most one positional argument when ARG_OK.  Returns 0, EXIT_USAGE
 * (message printed), or -1 for --help. */
static int parse_opts(opts_t *o, int argc, char **argv, int first, int allowed,
                      int arg_ok) {
  int i;
  o->db = DEFAULT_DB;
  for (i = first; i < argc; i++) {
    const char *a = argv[i], *eq, *v;
    size_t nl, k;
    int bit = 0;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return -1;
    if (strncmp(a, "--", 2) != 0) {
      if (!arg_ok || o->arg)
        return usage_err(o, "unexpected argument '%s'", a);
      o->arg = a;
      continue;
    }
    eq = strchr(a, '=');
    nl = eq ? (size_t)(eq - a) : strlen(a);
    for (k = 0; k < sizeof option_names / sizeof option_names[0]; k++)
      if (strlen(option_names[k].name) == nl &&
          strncmp(option_names[k].name, a, nl) == 0)
        bit = option_names[k].bit;
    if (!(bit & allowed))
      return usage_err(o, "unknown option '%.*s'", (int)nl, a);
    if (bit & FLAG_OPTS) {
      if (eq)
        return usage_err(o, "%.*s takes no value", (int)nl, a);
      o->force = 1;
      continue;
    }
    if (eq) {
      v = eq + 1;
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      return usage_err(o, "%s needs a value", a);
    }
    switch (bit) {
    case OPT_DB:
      if (!*v)
        return usage_err(o, "--db: empty path");
      o->db = v;
      break;
    case OPT_FORMAT: o->format = v; break;
    case OPT_CUSTOMER:
      if (!*v)
        return usage_err(o, "--customer: empty customer id");
      o->customer = v;
      break;
    case OPT_WHO: o->who = v; break;
    case OPT_POLICIES: o->policies = v; break;
    case OPT_BEFORE:
      if (parse_time(o, "--before", v, &o->before_ms))
        return EXIT_USAGE;
      o->has_before = 1;
      break;
    case OPT_PSEUDO_KEY: o->pseudo_key = v; break;
    case OPT_TO:
      if (!*v)
        return usage_err(o, "--to: empty path");
      o->to = v;
      break;
    case OPT_REGION: o->sel.region = v; break;
    case OPT_KIND: o->sel.kind = v; break;
    case OPT_COMPLAINT: o->sel.complaint_id = v; break;
    case OPT_SINCE:
      if (parse_time(o, "--since", v, &o->sel.since_ms))
        return EXIT_USAGE;
      o->sel.has_since = 1;
      break;
    case OPT_UNTIL:
      if (parse_time(o, "--until", v, &o->sel.until_ms))
        return EXIT_USAGE;
      o->sel.has_until = 1;
      break;
    case OPT_LIMIT: {
      char *end;
      errno = 0;
      o->sel.limit = strtoll(v, &end, 10);
      o->sel.has_limit = 1;
      if (errno || end == v || *end || o->sel.limit < 0)
        return usage_err(o, "--limit: '%s' is not a whole number >= 0", v);
      break;
    }
    case OPT_ANCHOR:
      if (v[strcspn(v, ":")] && (v[0] < '0' || v[0] > '9')) {
        /* NODE:SEQ:HASH, for a fleet's history; fleet.c parses it */
        if (o->nnode_anchors == VD_CLI_MAX_ANCHORS)
          return usage_err(o, "--anchor: at most %d", VD_CLI_MAX_ANCHORS);
        o->node_anchors[o->nnode_anchors++] = v;
      } else if (vd_history_anchor_parse(v, &o->anchor))
        return usage_err(o, "--anchor: '%s' is not SEQ:HASH or "
                            "SEQ:HASH/ID:HASH (record and activation "
                            "numbers and their 64 hex digits, as verify "
                            "prints them)", v);
      break;
    }
  }
  return 0;
}

/* --customer ID with --pseudonymise-key FILE: the ID as the daemon stored
 * it.  0, or EXIT_USAGE (message printed). */
static int resolve_customer(opts_t *o) {
  vd_pseudonym_key_t *k;
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  if (o->pseudo_key && !o->customer)
    return usage_err(o, "--pseudonymise-key needs --customer ID");
  if (!o->pseudo_key || !o->customer)
    return 0;
  if (!(k = malloc(sizeof *k)))
    return usage_err(o, "out of memory");
  rc = vd_pseudonym_key_load(k, o->pseudo_key, &err);
  if (rc == 0) {
    vd_pseudonym(k, o->customer, strlen(o->customer), o->pseudonym);
    o->customer = o->pseudonym;
  } else {
    fprintf(stderr, "verdict %s: %s\n", o->cmd, err.data);
  }
  memset(k, 0, sizeof *k);
  free(k);
  vd_buf_release(&err);
  return rc ? EXIT_USAGE : 0;
}

/* 0 and the index of o->format in NAMES (NULL-terminated; the first is
 * the default), or EXIT_USAGE. */
static int pick_format(const opts_t *o, const char *const *names, int *which) {
  int i;
  vd_buf_t list = VD_BUF_INIT;
  if (!o->format) {
    *which = 0;
    return 0;
  }
  for (i = 0; names[i]; i++)
    if (strcmp(o->format, names[i]) == 0) {
      *which = i;
      return 0;
    }
  for (i = 0; names[i]; i++)
    vd_buf_addf(&list, "%s%s", i ? ", " : "", names[i]);
  usage_err(o, "--format: '%s' is not one of %s", o->format, list.data);
  vd_buf_release(&list);
  return EXIT_USAGE;
}

/* ========================================================================
 * Output helpers
 * ====================================================================== */

static void out_flush(vd_buf_t *b) {
  fwrite(b->data ? b->data : "", 1, b->len, stdout);
  vd_buf_reset(b);
}

static void add_time(vd_buf_t *b, int64_t ms) {
  char t[32];
  vd_buf_add(b, t, vd_time_format(ms, VD_DEFAULT_OFFSET_MIN, t));
}

/* ------------------------------------------------------------------------
 * Stored JSON, re-indented: yajl's parser drives a writer into a vd_buf.
 *
 * The layout is the one these commands have always printed (yajl_gen's):
 * compact, or with PRETTY one member per line, two spaces a level, ": "
 * after a key, and an empty container as an opening and a closing line
 * with an empty line between.
 * ---------------------------------------------------------------------- */

#define REFORMAT_MAX_DEPTH 128

typedef enum {
  AT_TOP,       /* nothing written yet */
  AT_DONE,      /* the one value is complete */
  MAP_START,    /* in an object, before its first key */
  MAP_KEY,      /* in an object, after a member */
  MAP_VAL,      /* in an object, after a key */
  ARRAY_START,  /* in an array, before its first element */
  IN_ARRAY      /* in an array, after an element */
} place_t;

typedef struct reformat {
  vd_buf_t *out;
  int pretty;
  int depth;
  place_t at[REFORMAT_MAX_DEPTH];
} reformat_t;

/* Before a key, a value or an opening: the separator, then the indent. */
static void before_item(reformat_t *w) {
  place_t p = w->at[w->depth];
  int i;
  if (p == MAP_KEY || p == IN_ARRAY)
    vd_buf_adds(w->out, w->pretty ? ",\n" : ",");
  else if (p == MAP_VAL)
    vd_buf_adds(w->out, w->pretty ? ": " : ":");
  if (w->pretty && p != MAP_VAL)
    for (i = 0; i < w->depth; i++)
      vd_buf_adds(w->out, "  ");
}

/* After a key, a value or a closing: the place moves on. */
static void after_item(reformat_t *w) {
  place_t *p = &w->at[w->depth];
  switch (*p) {
  case AT_TOP: *p = AT_DONE; break;
  case MAP_START:
  case MAP_KEY: *p = MAP_VAL; break;
  case MAP_VAL: *p = MAP_KEY; break;
  case ARRAY_START: *p = IN_ARRAY; break;
  case AT_DONE:
  case IN_ARRAY: break;
  }
}

/* After the last character of the top-level value, a newline if PRETTY. */
static void after_value(reformat_t *w) {
  if (w->pretty && w->depth == 0 && w->at[0] == AT_DONE)
    vd_buf_addc(w->out, '\n');
}

/* A string as these commands have always spelled it: vd_buf's JSON
 * string, except that the control characters other than tab, newline and
 * return keep yajl's spelling (\b, \f, \u00XX with capitals). */
static void add_string(vd_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i, start;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && !strchr("\t\n\r", s[i]))
      break;
  if (i == n) {
    vd_buf_add_json_str(b, s, n);
    return;
  }
  vd_buf_addc(b, '"');
  for (i = start = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    vd_buf_add(b, s + start, i - start);
    start = i + 1;
    switch (c) {
    case '"': vd_buf_adds(b, "\\\""); break;
    case '\\': vd_buf_adds(b, "\\\\"); break;
    case '\b': vd_buf_adds(b, "\\b"); break;
    case '\f': vd_buf_adds(b, "\\f"); break;
    case '\n': vd_buf_adds(b, "\\n"); break;
    case '\r': vd_buf_adds(b, "\\r"); break;
    case '\t': vd_buf_adds(b, "\\t"); break;
    default:
      vd_buf_addf(b, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
      break;
    }
  }
  vd_buf_add(b, s + start, n - start);
  vd_buf_addc(b, '"');
}

static int re_atom(reformat_t *w, const char *s, size_t n) {
  before_item(w);
  vd_buf_add(w->out, s, n);
  after_item(w);
  after_value(w);
  return 1;
}

static int re_null(void *ctx) { return re_atom(ctx, "null", 4); }
static int re_bool(void *ctx, int v) {
  return v ? re_atom(ctx, "true", 4) : re_atom(ctx, "false", 5);
}
static int re_number(void *ctx, const char *s, size_t n) {
  return re_atom(ctx, s, n); /* as written */
}
static int re_string(void *ctx, const unsigned char *s, size_t n) {
  reformat_t *w = ctx;
  before_item(w);
  add_string(w->out, (const char *)s, n);
  after_item(w);
  after_value(w);
  return 1;
}

static int re_open(reformat_t *w, char c, place_t start) {
  if (w->depth + 1 >= REFORMAT_MAX_DEPTH)
    return 0;
  before_item(w);
  w->at[++w->depth] = start;
  vd_buf_addc(w->out, c);
  if (w->pretty)
    vd_buf_addc(w->out, '\n');
  return 1;
}

static int re_close(reformat_t *w, char c) {
  int i;
  w->depth--;
  if (w->pretty)
    vd_buf_addc(w->out, '\n');
  after_item(w);
  if (w->pretty && w->at[w->depth] != MAP_VAL)
    for (i = 0; i < w->depth; i++)
      vd_buf_adds(w->out, "  ");
  vd_buf_addc(w->out, c);
  after_value(w);
  return 1;
}

static int re_map_open(void *ctx) { return re_open(ctx, '{', MAP_START); }
static int re_map_close(void *ctx) { return re_close(ctx, '}'); }
static int re_array_open(void *ctx) { return re_open(ctx, '[', ARRAY_START); }
static int re_array_close(void *ctx) { return re_close(ctx, ']'); }

static const yajl_callbacks reformat_cb = {
    re_null,     re_bool,      NULL,          NULL,           re_number,
    re_string,   re_map_open,  re_string,     re_map_close,   re_array_open,
    re_array_close,
};

/* Append stored JSON text S: re-written (indented when PRETTY) if it
 * parses, else as a JSON string so the output stays valid JSON.  NULL is
 * null. */
static void add_json(vd_buf_t *b, const char *s, size_t n, int pretty) {
  vd_buf_t tmp = VD_BUF_INIT;
  reformat_t w;
  yajl_handle p;
  int ok;
  if (!s) {
    vd_buf_adds(b, "null");
    return;
  }
  memset(&w, 0, sizeof w);
  w.out = &tmp;
  w.pretty = pretty;
  p = yajl_alloc(&reformat_cb, NULL, &w);
  ok = p && yajl_parse(p, (const unsigned char *)s, n) == yajl_status_ok &&
       yajl_complete_parse(p) == yajl_status_ok;
  if (p)
    yajl_free(p);
  while (ok && tmp.len && tmp.data[tmp.len - 1] == '\n')
    tmp.data[--tmp.len] = '\0';
  if (ok)
    vd_buf_add(b, tmp.data, tmp.len);
  else
    vd_buf_add_json_str(b, s, n);
  vd_buf_release(&tmp);
}

static void add_csv(vd_buf_t *b, const char *s) {
  if (!s)
    return;
  if (!strpbrk(s, ",\"\r\n")) {
    vd_buf_adds(b, s);
    return;
  }
  vd_buf_addc(b, '"');
  for (; *s; s++) {
    if (*s == '"')
      vd_buf_addc(b, '"');
    vd_buf_addc(b, *s);
  }
  vd_buf_addc(b, '"');
}

/* ========================================================================
 * Decision rows
 * ====================================================================== */

/* Row columns by a short name (history.h gives the full ones). */
enum {
  R_SEQ = VD_HISTORY_SEQ,
#define R_ENUM_(E, name) R_##E = VD_HISTORY_##E,
  VD_HISTORY_COLUMNS(R_ENUM_)
#undef R_ENUM_
  R_HASH = VD_HISTORY_HASH,
  R_COUNT = VD_HISTORY_NCOLUMNS
};

typedef vd_history_value_t row_t;

static const char *col(const row_t *row, int i) { return row[i].text; }

static int is_json_col(int i) {
  return i == R_REQUEST || i == R_RESULT || i == R_TRACE || i == R_FACTS;
}

/* One decision as a JSON object on one line: every column, JSON columns
 * embedded as JSON, plus "received" as RFC 3339; a fleet's record (NODE
 * not NULL, vd_history_rows_node()) starts with its node_id and
 * node_seq. */
static void row_json(vd_buf_t *b, const row_t *row, const char *node) {
  int i;
  vd_buf_addc(b, '{');
  if (node) {
    vd_buf_adds(b, "\"node_id\":");
    vd_buf_add_json_str(b, node, strlen(node));
    vd_buf_addf(b, ",\"node_seq\":%lld,", (long long)row[R_SEQ].i);
  }
  for (i = 0; i < R_COUNT; i++) {
    const char *v = col(row, i);
    vd_buf_addf(b, "%s\"%s\":", i ? "," : "", vd_history_column_name(i));
    if (!v)
      vd_buf_adds(b, "null");
    else if (row[i].is_int)
      vd_buf_adds(b, v);
    else if (is_json_col(i))
      add_json(b, v, row[i].len, 0);
    else
      vd_buf_add_json_str(b, v, row[i].len);
    if (i == R_RECEIVED_MS && v) {
      vd_buf_adds(b, ",\"received\":\"");
      add_time(b, row[i].i);
      vd_buf_addc(b, '"');
    }
  }
  vd_buf_addc(b, '}');
}

static const char *outcome(const row_t *row) {
  const char *e = col(row, R_ERROR_CODE);
  return e ? e : "ok";
}

/* The `show` text form: labelled fields, JSON indented below its label;
 * a fleet's record names its node first, and its seq is the node's. */
static void row_text(vd_buf_t *b, const row_t *row, const char *node) {
  static const struct {
    const char *label;
    int col;
  } plain[] = {
      {"decision", R_DECISION_ID}, {"seq", R_SEQ},
      {"at", R_AT},                {"kind", R_KIND},
      {"region", R_REGION},        {"policy region", R_POLICY_REGION},
      {"revision", R_REVISION},    {"complaint", R_COMPLAINT_ID},
      {"customer", R_CUSTOMER_ID}, {"category", R_CATEGORY},
      {"client", R_CLIENT},        {"hash", R_HASH},
  };
  static const int json_cols[] = {R_REQUEST, R_RESULT, R_TRACE, R_FACTS};
  size_t i;
  for (i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    const char *v = col(row, plain[i].col);
    if (node && plain[i].col == R_SEQ) {
      vd_buf_addf(b, "%-14s %s\n", "node", node);
      vd_buf_addf(b, "%-14s %s\n", "node seq", v ? v : "-");
    } else {
      vd_buf_addf(b, "%-14s %s\n", plain[i].label, v ? v : "-");
    }
    if (plain[i].col == R_SEQ) {
      vd_buf_addf(b, "%-14s ", "received");
      add_time(b, row[R_RECEIVED_MS].i);
      vd_buf_addc(b, '\n');
    }
  }
  vd_buf_addf(b, "%-14s %.3f ms\n", "elapsed",
              (double)row[R_ELAPSED_US].i / 1000.0);
  vd_buf_addf(b, "%-14s %s", "outcome", outcome(row));
  if (col(row, R_ERROR_CODE))
    vd_buf_addf(b, ": %s%s%s%s",
                col(row, R_ERROR_MESSAGE) ? col(row, R_ERROR_MESSAGE) : "",
                col(row, R_ERROR_PATH) ? " (at " : "",
                col(row, R_ERROR_PATH) ? col(row, R_ERROR_PATH) : "",
                col(row, R_ERROR_PATH) ? ")" : "");
  vd_buf_addc(b, '\n');
  for (i = 0; i < sizeof json_cols / sizeof json_cols[0]; i++) {
    int c = json_cols[i];
    vd_buf_t j = VD_BUF_INIT;
    const char *v = col(row, c), *line;
    if (!v)
      continue;
    add_json(&j, v, row[c].len, 1);
    vd_buf_addf(b, "%s\n", vd_history_column_name(c));
    for (line = j.data; line && *line;) {
      const char *nl = strchr(line, '\n');
      size_t n = nl ? (size_t)(nl - line) : strlen(line);
      vd_buf_addf(b, "  %.*s\n", (int)n, line);
      line += n + (nl != NULL);
    }
    vd_buf_release(&j);
  }
}

/* ========================================================================
 * history show / list / verify
 * ====================================================================== */

/* Start reading the rows F selects; EXIT_USAGE (message printed) if the
 * database cannot be read. */
static int open_rows(const opts_t *o, const vd_history_filter_t *f,
                     vd_history_rows_t **rows) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = vd_history_rows_open(rows, o->db, f, &err);
  if (rc)
    fprintf(stderr, "verdict %s: %s\n", o->cmd, err.data);
  vd_buf_release(&err);
  return rc ? EXIT_USAGE : 0;
}

static int rows_failed(const opts_t *o, const vd_history_rows_t *rows) {
  fprintf(stderr, "verdict %s: %s\n", o->cmd, vd_history_rows_errmsg(rows));
  return EXIT_USAGE;
}

/* When records were archived out of the database, say so on stderr (for
 * show: when the decision was not found; for list: when the selection
 * reaches back before the archive). */
static void note_archived(const opts_t *o, int always) {
  vd_history_archived_t a;
  char *msg = NULL;
  if (vd_history_archived(o->db, &a, &msg) != 0) {
    free(msg);
    return;
  }
  if (!a.last_seq)
    return;
  if (!always && o->sel.has_since && o->sel.since_ms >= a.before_ms)
    return;
  fprintf(stderr, "verdict %s: note: records 1..%" PRId64 " (received "
                  "before ", o->cmd, a.last_seq);
  {
    char t[40];
    vd_time_format(a.before_ms, VD_DEFAULT_OFFSET_MIN, t);
    fprintf(stderr, "%s) were archived at %s to %s; read them there with "
                    "--db %s\n", t, a.at, a.file, a.file);
  }
}

static int cmd_show(opts_t *o) {
  static const char *const formats[] = {"text", "json", NULL};
  vd_history_filter_t f;
  vd_history_rows_t *rows;
  const row_t *row;
  vd_buf_t b = VD_BUF_INIT;
  int fmt, rc, found = 0;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (!o->arg && !o->customer)
    return usage_err(o, "which decision? give its DECISION_ID, or "
                        "--customer ID for a customer's");
  if (o->arg && o->customer)
    return usage_err(o, "give a DECISION_ID or --customer ID, not both");
  memset(&f, 0, sizeof f);
  f.decision_id = o->arg;
  f.customer_id = o->customer;
  if (open_rows(o, &f, &rows))
    return EXIT_USAGE;
  while ((rc = vd_history_rows_next(rows, &row)) == 1) {
    if (fmt) {
      row_json(&b, row, vd_history_rows_node(rows));
      vd_buf_addc(&b, '\n');
    } else {
      if (found)
        vd_buf_addc(&b, '\n'); /* a blank line between two records */
      row_text(&b, row, vd_history_rows_node(rows));
    }
    found++;
    out_flush(&b);
  }
  if (rc < 0)
    rc = rows_failed(o, rows);
  else if (!found) {
    char db[1024];
    vd_history_db_display(o->db, db, sizeof db); /* no password */
    if (o->arg)
      fprintf(stderr, "verdict %s: no decision '%s' in %s\n", o->cmd, o->arg,
              db);
    else
      fprintf(stderr, "verdict %s: no decision of that customer in %s\n",
              o->cmd, db);
    note_archived(o, 1);
    rc = EXIT_NO;
  } else {
    rc = EXIT_OK;
  }
  vd_history_rows_close(rows);
  vd_buf_release(&b);
  return rc;
}

enum { FMT_TABLE, FMT_JSON, FMT_CSV };

/* FLEET: the rows of a PostgreSQL history, each on a node's chain (a
 * NODE column first, SEQ being the node's). */
static void list_header(vd_buf_t *b, int fmt, int fleet) {
  if (fleet && fmt == FMT_TABLE)
    vd_buf_addf(b, "%-16s ", "NODE");
  else if (fleet && fmt == FMT_CSV)
    vd_buf_adds(b, "node_id,");
  if (fmt == FMT_TABLE)
    vd_buf_addf(b, "%-7s %-29s %-36s %-13s %-7s %-16s %-14s %9s\n", "SEQ",
                "RECEIVED", "DECISION_ID", "KIND", "REGION", "COMPLAINT",
                "OUTCOME", "MS");
  else if (fmt == FMT_CSV)
    vd_buf_adds(b, "seq,decision_id,received,at,kind,region,policy_region,"
                   "revision,complaint_id,customer_id,category,outcome,"
                   "error_message,elapsed_us,client\n");
  else
    vd_buf_adds(b, "[\n");
}

static void list_row(vd_buf_t *b, int fmt, const row_t *row,
                     const char *node, int first) {
  static const int csv_cols[] = {R_AT,          R_KIND,      R_REGION,
                                 R_POLICY_REGION, R_REVISION, R_COMPLAINT_ID,
                                 R_CUSTOMER_ID, R_CATEGORY};
  size_t i;
  if (fmt == FMT_JSON) {
    if (!first)
      vd_buf_adds(b, ",\n");
    row_json(b, row, node);
    return;
  }
  if (node && fmt == FMT_TABLE)
    vd_buf_addf(b, "%-16s ", node);
  else if (node) {
    add_csv(b, node);
    vd_buf_addc(b, ',');
  }
  if (fmt == FMT_TABLE) {
    char t[32];
    vd_time_format(row[R_RECEIVED_MS].i, VD_DEFAULT_OFFSET_MIN, t);
    vd_buf_addf(b, "%-7lld %-29s %-36s %-13s %-7s %-16s %-14s %9.3f\n",
                (long long)row[R_SEQ].i, t,
                col(row, R_DECISION_ID) ? col(row, R_DECISION_ID) : "-",
                col(row, R_KIND) ? col(row, R_KIND) : "-",
                col(row, R_REGION) ? col(row, R_REGION) : "-",
                col(row, R_COMPLAINT_ID) ? col(row, R_COMPLAINT_ID) : "-",
                outcome(row), (double)row[R_ELAPSED_US].i / 1000.0);
    return;
  }
  vd_buf_addf(b, "%lld,", (long long)row[R_SEQ].i);
  add_csv(b, col(row, R_DECISION_ID));
  vd_buf_addc(b, ',');
  add_time(b, row[R_RECEIVED_MS].i);
  for (i = 0; i < sizeof csv_cols / sizeof csv_cols[0]; i++) {
    vd_buf_addc(b, ',');
    add_csv(b, col(row, csv_cols[i]));
  }
  vd_buf_addc(b, ',');
  add_csv(b, outcome(row));
  vd_buf_addc(b, ',');
  add_csv(b, col(row, R_ERROR_MESSAGE));
  vd_buf_addf(b, ",%lld,", (long long)row[R_ELAPSED_US].i);
  add_csv(b, col(row, R_CLIENT));
  vd_buf_addc(b, '\n');
}

static int cmd_list(opts_t *o) {
  static const char *const formats[] = {"table", "json", "csv", NULL};
  vd_buf_t b = VD_BUF_INIT;
  const vd_history_filter_t *f = &o->sel;
  vd_history_rows_t *rows;
  const row_t *row;
  int fmt, rc, n = 0;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (f->has_since && f->has_until && f->until_ms <= f->since_ms)
    return usage_err(o, "--until must be later than --since");
  if (open_rows(o, f, &rows))
    return EXIT_USAGE;
  note_archived(o, 0);
  list_header(&b, fmt, vd_history_is_postgres(o->db));
  while ((rc = vd_history_rows_next(rows, &row)) == 1) {
    list_row(&b, fmt, row, vd_history_rows_node(rows), n++ == 0);
    if (b.len > 65536)
      out_flush(&b);
  }
  if (fmt == FMT_JSON)
    vd_buf_adds(&b, n ? "\n]\n" : "]\n");
  out_flush(&b);
  rc = rc == 0 ? EXIT_OK : rows_failed(o, rows);
  vd_history_rows_close(rows);
  vd_buf_release(&b);
  return rc;
}

static const char *problem_name(vd_verify_problem_t p) {
  switch (p) {
  case VD_VERIFY_OK: return "none";
  case VD_VERIFY_CHANGED: return "changed";
  case VD_VERIFY_DELETED: return "deleted";
  case VD_VERIFY_INSERTED: return "inserted";
  case VD_VERIFY_REVISION: return "revision";
  }
  return "?";
}

/* The anchor of a verified REP into OUT: "SEQ:HASH" as before when there
 * are no activations, else with the activations' head after a slash (SEQ
 * 0 and the zero hash when no decision was recorded yet); "" when there
 * is nothing to anchor. */
static void format_anchor(const vd_verify_report_t *rep, char *out,
                          size_t n) {
  static const char zero[] =
      "0000000000000000000000000000000000000000000000000000000000000000";
  /* the last record's seq: after an archiving the chain starts later */
  int64_t seq = rep->records + rep->archived_to +
                (rep->archive_first ? rep->archive_first - 1 : 0);
  int any = seq > 0;
  *out = '\0';
  if (rep->activations)
    snprintf(out, n, "%" PRId64 ":%s/%" PRId64 ":%s", seq,
             any ? rep->head : zero, rep->act_last, rep->act_head);
  else if (any)
    snprintf(out, n, "%" PRId64 ":%s", seq, rep->head);
}

/* Room for "SEQ:HASH/ID:HASH". */
#define ANCHOR_MAX (2 * (20 + 1 + 64) + 2)

static int cmd_verify(opts_t *o) {
  static const char *const formats[] = {"text", "json", NULL};
  vd_verify_report_t rep;
  vd_buf_t b = VD_BUF_INIT;
  char anchor[ANCHOR_MAX] = "";
  int fmt, rc;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (o->arg)
    return usage_err(o, "unexpected argument '%s'", o->arg);
  if (vd_history_is_postgres(o->db))
    return vd_cli_fleet_verify(o->db, o->node_anchors, o->nnode_anchors, fmt);
  if (o->nnode_anchors)
    return usage_err(o, "--anchor %s: NODE:SEQ:HASH is for a PostgreSQL "
                        "history", o->node_anchors[0]);
  rc = vd_history_verify_anchor(o->db, &o->anchor, &rep);
  if (rc && rep.problem == VD_VERIFY_OK) {
    fprintf(stderr, "verdict %s: %s\n", o->cmd, rep.message);
    return EXIT_USAGE;
  }
  if (rc == 0)
    format_anchor(&rep, anchor, sizeof anchor);
  if (fmt) {
    vd_buf_addf(&b, "{\"ok\":%s,\"problem\":\"%s\",\"records\":%" PRId64,
                rc ? "false" : "true", problem_name(rep.problem), rep.records);
    vd_buf_addf(&b, ",\"head\":\"%s\",\"revisions\":%" PRId64, rep.head,
                rep.revisions);
    if (rep.activations || rep.activation)
      vd_buf_addf(&b, ",\"activations\":%" PRId64 ",\"activations_head\":"
                      "\"%s\",\"sealed_activations\":%" PRId64,
                  rep.activations, rep.act_head, rep.sealed);
    if (*anchor)
      vd_buf_addf(&b, ",\"anchor\":\"%s\"", anchor);
    if (rc) {
      vd_buf_addf(&b, ",\"seq\":%" PRId64 ",\"decision_id\":", rep.seq);
      vd_buf_add_json_str(&b, rep.decision_id, strlen(rep.decision_id));
      if (rep.activation)
        vd_buf_addf(&b, ",\"activation\":%" PRId64, rep.activation);
    }
    vd_buf_adds(&b, ",\"message\":");
    vd_buf_add_json_str(&b, rep.message, strlen(rep.message));
    vd_buf_adds(&b, "}\n");
  } else if (rc == 0) {
    vd_buf_addf(&b, "ok: %s\n", rep.message);
    if (o->anchor.seq)
      vd_buf_addf(&b, "anchor %" PRId64 " holds\n", o->anchor.seq);
    if (o->anchor.activation)
      vd_buf_addf(&b, "anchor activation %" PRId64 " holds\n",
                  o->anchor.activation);
    if (*anchor)
      vd_buf_addf(&b, "anchor: %s (keep it outside this database; verify "
                      "--anchor it later)\n", anchor);
  } else if (rep.activation) {
    /* every decision verified; the problem is in the activations */
    vd_buf_addf(&b, "FAILED (%s): %s\n", problem_name(rep.problem),
                rep.message);
    vd_buf_addf(&b, "the %" PRId64 " records verify", rep.records);
    if (rep.records)
      vd_buf_addf(&b, ", up to hash %s", rep.head);
    vd_buf_addf(&b, "; the %" PRId64 " activations before it verify",
                rep.activations);
    if (rep.activations)
      vd_buf_addf(&b, ", up to hash %s", rep.act_head);
    vd_buf_addc(&b, '\n');
  } else {
    vd_buf_addf(&b, "FAILED (%s): %s\n", problem_name(rep.problem),
                rep.message);
    vd_buf_addf(&b, "the %" PRId64 " records before it verify", rep.records);
    if (rep.records)
      vd_buf_addf(&b, ", up to hash %s", rep.head);
    vd_buf_addc(&b, '\n');
  }
  out_flush(&b);
  vd_buf_release(&b);
  return rc ? EXIT_NO : EXIT_OK;
}

/* A file's command on a fleet's history: the refusal, saying what to do
 * there instead (docs/fleet.md). */
static int refuse_on_fleet(const opts_t *o, const char *instead) {
  fprintf(stderr, "verdict %s: not on a PostgreSQL history: %s "
                  "(docs/fleet.md)\n", o->cmd, instead);
  return EXIT_USAGE;
}

/* `history backup DEST`: copy, verify the copy, say its anchor. */
static int cmd_backup(opts_t *o) {
  static const char *const formats[] = {"text", "json", NULL};
  vd_history_backup_report_t rep;
  vd_buf_t b = VD_BUF_INIT;
  char anchor[ANCHOR_MAX] = "", *msg = NULL;
  int fmt, rc;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (vd_history_is_postgres(o->db))
    return refuse_on_fleet(o, "PostgreSQL backs its databases up itself: "
                              "pg_dump for a consistent copy of this one, "
                              "or pg_basebackup and WAL archiving for the "
                              "cluster to any point in time; then `verdict "
                              "history verify --db` the restored copy");
  if (!o->arg)
    return usage_err(o, "where to? give the DEST file");
  rc = vd_history_backup(o->db, o->arg, o->force, &rep, &msg);
  if (rc) {
    fprintf(stderr, "verdict %s: %s\n", o->cmd, msg);
    free(msg);
    /* a copy that does not verify: the database does not either */
    return rep.verify.problem != VD_VERIFY_OK ? EXIT_NO : EXIT_USAGE;
  }
  format_anchor(&rep.verify, anchor, sizeof anchor);
  if (fmt) {
    vd_buf_adds(&b, "{\"ok\":true,\"backup\":");
    vd_buf_add_json_str(&b, o->arg, strlen(o->arg));
    vd_buf_addf(&b, ",\"pages\":%" PRId64 ",\"records\":%" PRId64
                    ",\"activations\":%" PRId64 ",\"revisions\":%" PRId64
                    ",\"anchor\":\"%s\",\"message\":",
                rep.pages, rep.verify.records, rep.verify.activations,
                rep.verify.revisions, anchor);
    vd_buf_add_json_str(&b, rep.verify.message, strlen(rep.verify.message));
    vd_buf_adds(&b, "}\n");
  } else {
    vd_buf_addf(&b, "backup: %s (%" PRId64 " pages)\nok: %s\n", o->arg,
                rep.pages, rep.verify.message);
    if (*anchor)
      vd_buf_addf(&b, "anchor: %s (the copy's heads; verify --anchor the "
                      "database with it later)\n", anchor);
  }
  out_flush(&b);
  vd_buf_release(&b);
  return EXIT_OK;
}

/* The personal fields the policies declare: of the bundle in
 * o->policies, else of the revision the database ran last.  *names as
 * vd_personal_fields() gives them; EXIT_USAGE (message printed). */
static int personal_fields(const opts_t *o, char ***names, size_t *n) {
  vd_limits_t lim = VD_LIMITS_DEFAULT;
  vd_buf_t err = VD_BUF_INIT;
  vd_bundle_t *b = NULL;
  vd_engine_t *e = NULL;
  char revision[128], *msg = NULL;
  int rc;
  if (o->policies) {
    rc = vd_bundle_load(o->policies, &b, &err);
  } else {
    rc = vd_history_last_revision(o->db, revision, sizeof revision, &msg);
    if (rc == 0)
      rc = vd_history_load_bundle(o->db, revision, &b, &err);
    else
      vd_buf_adds(&err, msg);
    free(msg);
  }
  if (rc == 0)
    rc = vd_engine_new(b, &lim, &e, &err);
  if (rc == 0)
    rc = vd_personal_fields(e, names, n);
  if (rc)
    fprintf(stderr, "verdict %s: which fields are personal: %s\n", o->cmd,
            err.len ? err.data : vd_err_desc(rc));
  vd_engine_free(e);
  if (b)
    vd_bundle_unref(b);
  vd_buf_release(&err);
  return rc ? EXIT_USAGE : 0;
}

/* Who runs this command: --who, else the login that sudo'ed, else the
 * user. */
static const char *who_runs(const opts_t *o) {
  const struct passwd *pw;
  const char *s;
  if (o->who)
    return o->who;
  if ((s = getenv("SUDO_USER")) != NULL && *s)
    return s;
  pw = getpwuid(getuid());
  return pw ? pw->pw_name : NULL;
}

/* `history erase --customer ID`: erase, then verify that the chain still
 * holds. */
static int cmd_erase(opts_t *o) {
  static const char *const formats[] = {"text", "json", NULL};
  vd_history_erase_report_t rep;
  vd_verify_report_t ver;
  vd_buf_t b = VD_BUF_INIT;
  char **fields = NULL, *msg = NULL;
  size_t nfields = 0, i;
  const char *who;
  int fmt, rc;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (o->arg)
    return usage_err(o, "unexpected argument '%s'", o->arg);
  if (!o->customer)
    return usage_err(o, "whose data? give --customer ID");
  if (personal_fields(o, &fields, &nfields))
    return EXIT_USAGE;
  who = who_runs(o);
  rc = vd_history_erase(o->db, o->customer, (const char *const *)fields,
                        nfields, who, &rep, &msg);
  if (rc) {
    fprintf(stderr, "verdict %s: %s\n", o->cmd, msg);
    free(msg);
    vd_personal_free(fields, nfields);
    return EXIT_USAGE;
  }
  if (vd_history_is_postgres(o->db)) {
    vd_history_node_head_t *heads = NULL;
    size_t nheads = 0;
    char fleet[65];
    rc = vd_history_verify_fleet(o->db, NULL, 0, &ver, &heads, &nheads,
                                 fleet);
    free(heads);
  } else {
    rc = vd_history_verify(o->db, &ver);
  }
  if (fmt) {
    vd_buf_addf(&b, "{\"erased\":%" PRId64 ",\"old_form\":%" PRId64
                    ",\"first_seq\":%" PRId64 ",\"last_seq\":%" PRId64
                    ",\"erasure\":%" PRId64 ",\"fields\":[\"customer_id\"",
                rep.erased, rep.old_form, rep.first_seq, rep.last_seq,
                rep.erasure);
    if (rep.nodes[0]) {
      vd_buf_adds(&b, ",\"nodes\":");
      vd_buf_add_json_str(&b, rep.nodes, strlen(rep.nodes));
    }
    for (i = 0; i < nfields; i++)
      if (strcmp(fields[i], "customer_id") != 0) {
        vd_buf_addc(&b, ',');
        vd_buf_add_json_str(&b, fields[i], strlen(fields[i]));
      }
    vd_buf_addf(&b, "],\"verified\":%s,\"message\":",
                rc ? "false" : "true");
    vd_buf_add_json_str(&b, ver.message, strlen(ver.message));
    vd_buf_adds(&b, "}\n");
  } else {
    vd_buf_addf(&b, "erased: the personal data of %" PRId64 " records",
                rep.erased);
    if (rep.erased && rep.nodes[0])
      vd_buf_addf(&b, " (%s), erasure %" PRId64 " by %s", rep.nodes,
                  rep.erasure, who ? who : "?");
    else if (rep.erased)
      vd_buf_addf(&b, " (seq %" PRId64 "..%" PRId64 "), erasure %" PRId64
                      " by %s", rep.first_seq, rep.last_seq, rep.erasure,
                  who ? who : "?");
    vd_buf_adds(&b, "\nfields: customer_id");
    for (i = 0; i < nfields; i++)
      if (strcmp(fields[i], "customer_id") != 0)
        vd_buf_addf(&b, ", %s", fields[i]);
    vd_buf_addc(&b, '\n');
    if (rep.old_form)
      vd_buf_addf(&b, "left: %" PRId64 " records stored before %s, "
                      "whose hashes commit to their raw bytes\n",
                  rep.old_form, rep.nodes[0] || vd_history_is_postgres(o->db)
                                    ? "their node's first start on "
                                      "PostgreSQL schema 5"
                                    : "schema 5");
    vd_buf_addf(&b, "%s: %s\n", rc ? "FAILED" : "ok", ver.message);
  }
  out_flush(&b);
  vd_buf_release(&b);
  vd_personal_free(fields, nfields);
  if (rc)
    return EXIT_NO;
  if (!rep.erased && !rep.old_form) {
    fprintf(stderr, "verdict %s: no record names customer '%s' in %s\n",
            o->cmd, o->customer, o->db);
    return EXIT_NO;
  }
  return EXIT_OK;
}

/* `history archive --before T --to FILE`. */
static int cmd_archive(opts_t *o) {
  static const char *const formats[] = {"text", "json", NULL};
  vd_history_archive_report_t rep;
  vd_buf_t b = VD_BUF_INIT;
  const char *who;
  char *msg = NULL;
  int fmt, rc;
  if (pick_format(o, formats, &fmt))
    return EXIT_USAGE;
  if (o->arg)
    return usage_err(o, "unexpected argument '%s'", o->arg);
  if (vd_history_is_postgres(o->db))
    return refuse_on_fleet(o, "keep verify's anchors, then detach and drop "
                              "the months' partitions (decisions_YYYY_MM)");
  if (!o->has_before)
    return usage_err(o, "archive what? give --before T");
  if (!o->to)
    return usage_err(o, "where to? give --to FILE");
  who = who_runs(o);
  rc = vd_history_archive(o->db, o->before_ms, o->to, who, &rep, &msg);
  if (rc) {
    fprintf(stderr, "verdict %s: %s\n", o->cmd, msg);
    free(msg);
    return rc == VD_ENOT_FOUND ? EXIT_NO : EXIT_USAGE;
  }
  if (fmt) {
    vd_buf_addf(&b, "{\"archive\":");
    vd_buf_add_json_str(&b, o->to, strlen(o->to));
    vd_buf_addf(&b, ",\"first_seq\":%" PRId64 ",\"last_seq\":%" PRId64
                    ",\"anchor\":\"%" PRId64 ":%s\",\"message\":",
                rep.first_seq, rep.last_seq, rep.last_seq, rep.anchor);
    vd_buf_add_json_str(&b, rep.verify.message, strlen(rep.verify.message));
    vd_buf_adds(&b, "}\n");
  } else {
    vd_buf_addf(&b, "archived: records %" PRId64 "..%" PRId64 " to %s, by "
                    "%s\nok: %s\nanchor: %" PRId64 ":%s (the live chain "
                    "continues from it)\n",
                rep.first_seq, rep.last_seq, o->to, who ? who : "?",
                rep.verify.message, rep.last_seq, rep.anchor);
  }
  out_flush(&b);
  vd_buf_release(&b);
  return EXIT_OK;
}

static const char history_usage[] =
    "usage: verdict history show DECISION_ID [--db PATH] [--format text|json]\n"
    "       verdict history show --customer ID [--pseudonymise-key FILE] ...\n"
    "       verdict history list [--since T] [--until T] [--region R]\n"
    "                            [--kind K] [--complaint ID] [--limit N]\n"
    "                            [--customer ID [--pseudonymise-key FILE]]\n"
    "                            [--format table|json|csv] [--db PATH]\n"
    "       verdict history verify [--anchor SEQ:HASH[/ID:HASH]] [--db PATH]\n"
    "       verdict history verify [--anchor NODE:SEQ:HASH]... --db CONNINFO\n"
    "       verdict history import --from FILE.db --db CONNINFO --node-id NAME\n"
    "                              [--format text|json]\n"
    "       verdict history backup DEST [--db PATH] [--force]\n"
    "                              [--format text|json]\n"
    "       verdict history erase --customer ID [--pseudonymise-key FILE]\n"
    "                             [--who NAME] [--policies DIR]\n"
    "                             [--db PATH] [--format text|json]\n"
    "       verdict history archive --before T --to FILE [--who NAME]\n"
    "                               [--db PATH] [--format text|json]\n"
    "\n"
    "Read the decision history (read-only; safe while the daemon runs).\n"
    "T is an RFC 3339 time, compared with when the daemon received the\n"
    "request: since <= received < until.  --db defaults to " DEFAULT_DB ".\n"
    "backup copies the database while the daemon writes it (one consistent\n"
    "snapshot), verifies the copy and prints its anchor; DEST must not\n"
    "exist unless --force.\n"
    "erase removes a customer's personal data (customer_id and the input\n"
    "fields the policies mark personal: those of DIR, else of the revision\n"
    "that ran last) from their records, records the erasure, and verifies.\n"
    "archive moves the decisions received before T into a new FILE that\n"
    "verifies on its own, and leaves an anchor so verify still proves the\n"
    "rest.\n"
    "Exit status: 0 ok; 1 no such decision, or verify (or backup's check of\n"
    "the copy) found an alteration; 2 usage error or unreadable database.\n";

int vd_cli_history(int argc, char **argv) {
  static const struct {
    const char *name;
    int options;
    int takes_arg;
    int (*run)(opts_t *);
  } cmds[] = {
      {"show", OPT_DB | OPT_FORMAT | OPT_CUSTOMER | OPT_PSEUDO_KEY, 1,
       cmd_show},
      {"list",
       OPT_DB | OPT_FORMAT | OPT_SINCE | OPT_UNTIL | OPT_REGION | OPT_KIND |
           OPT_COMPLAINT | OPT_LIMIT | OPT_CUSTOMER | OPT_PSEUDO_KEY,
       0, cmd_list},
      {"verify", OPT_DB | OPT_FORMAT | OPT_ANCHOR, 0, cmd_verify},
      {"backup", OPT_DB | OPT_FORMAT | OPT_FORCE, 1, cmd_backup},
      {"erase", OPT_DB | OPT_FORMAT | OPT_CUSTOMER | OPT_WHO | OPT_POLICIES |
                    OPT_PSEUDO_KEY,
       0, cmd_erase},
      {"archive", OPT_DB | OPT_FORMAT | OPT_BEFORE | OPT_TO | OPT_WHO, 0,
       cmd_archive},
  };
  char name[32];
  opts_t o;
  size_t i;
  int rc;
  memset(&o, 0, sizeof o);
  o.cmd = "history";
  if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    fputs(history_usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  if (strcmp(argv[1], "import") == 0) /* fleet.c */
    return vd_cli_history_import(argc - 1, argv + 1);
  for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    if (strcmp(argv[1], cmds[i].name) != 0)
      continue;
    snprintf(name, sizeof name, "history %s", cmds[i].name);
    o.cmd = name;
    rc = parse_opts(&o, argc, argv, 2, cmds[i].options, cmds[i].takes_arg);
    if (rc < 0) {
      fputs(history_usage, stdout);
      return EXIT_OK;
    }
    if (rc == 0)
      rc = resolve_customer(&o);
    if (rc == 0 && o.customer)
      o.sel.customer_id = o.customer;
    return rc ? rc : cmds[i].run(&o);
  }
  fprintf(stderr, "verdict history: unknown command '%s'\n%s", argv[1],
          history_usage);
  return EXIT_USAGE;
}

