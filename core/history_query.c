/*
 * history_query.c - every SELECT that reads decisions and revisions back
 * for a person or a tool: the auditor commands (`verdict history show`
 * and `list`, core/cmd/audit.c), replay (core/replay.c) and the admin
 * channel's `revisions` (core/daemon/admin.c).  Callers get plain C:
 * rows as vd_history_value_t arrays, JSON text in a vd_buf_t.  (Verify's
 * reads are in history_chain.c, the facts' in history_facts.c.)
 *
 * Owns the vd_history_rows_t cursors: each holds its own read-only
 * connection (vd_history_db_open_ro()), one prepared statement, and the
 * traces it has read by key ("Traces" below).
 *
 * Invariants:
 *   - rows come in seq order, with the columns READ_COLUMNS names (a
 *     cursor's trace read by its key, the same bytes), so a row here is
 *     the row the chain hashed;
 *   - a filter's conditions are appended and bound in one order
 *     (add_filter, bind_filter), so the SQL and its values always agree;
 *   - nothing here writes: every connection is read-only.
 *
 * Threads: the caller's.  A cursor belongs to one thread at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

_Static_assert(VD_HISTORY_NCOLUMNS == NCOLS + 2, "seq, the columns, hash");
_Static_assert(VD_HISTORY_NCOLUMNS <= 64, "a filter's columns: one bit each");

const char *vd_history_column_name(int col) {
  static const char *const names[VD_HISTORY_NCOLUMNS] = {
      "seq",
#define COL_STR_(E, name) #name,
      VD_HISTORY_COLUMNS(COL_STR_)
#undef COL_STR_
      "hash",
  };
  return col >= 0 && col < VD_HISTORY_NCOLUMNS ? names[col] : NULL;
}

/* "DB_PATH: <SQLite's message>" in ERR (reset first); returns VD_EIO. */
static int sql_failed(vd_buf_t *err, const char *path, sqlite3 *db) {
  vd_buf_reset(err);
  vd_buf_addf(err, "%s: %s", path, sqlite3_errmsg(db));
  return VD_EIO;
}

/* ========================================================================
 * Filters
 * ====================================================================== */

/* newest_first's searches (the console's) are read from an index in
 * (received_ms, seq) order, so a page stops after its rows instead of
 * sorting every match: decisions_received, or one of the indexes that
 * follow their column with received_ms (decisions_region,
 * decisions_revision, decisions_error; schema 6, history_db.c).  Of the
 * equalities F holds, one may lead the index: the most selective of the
 * console's fields, in this order.  The others are written "+column = ?",
 * which SQLite reads as "check, do not seek": the history never runs
 * ANALYZE, and without statistics SQLite would weigh two equalities alike
 * and might walk a region's rows for a revision's.  NULL: no equality
 * leads (decisions_received serves the search). */
static const char *newest_lead(const vd_history_filter_t *f) {
  if (f->decision_id)
    return "decision_id";
  if (f->complaint_id)
    return "complaint_id";
  if (f->customer_id)
    return "customer_id";
  if (f->revision)
    return "revision";
  if (f->error_code && *f->error_code && strcmp(f->error_code, "none"))
    return "error_code";
  if (f->region)
    return "region";
  return NULL;
}

/* " AND column = ?", or " AND +column = ?" where it must not lead. */
static void add_equal(vd_buf_t *sql, const vd_history_filter_t *f,
                      const char *lead, const char *column) {
  int plus = f->newest_first && (!lead || strcmp(lead, column));
  vd_buf_addf(sql, " AND %s%s = ?", plus ? "+" : "", column);
}

/* The exclusive upper bound of received_ms: until_ms, or newest_first's
 * cursor (before_ms + 1), whichever is lower; 0 when F has neither.  One
 * bound, so that SQLite seeks to the right one. */
static int upper_ms(const vd_history_filter_t *f, int64_t *ms) {
  int has_cursor = f->newest_first && f->has_before;
  if (!f->has_until && !has_cursor)
    return 0;
  *ms = f->has_until ? f->until_ms : INT64_MAX;
  if (has_cursor && f->before_ms < INT64_MAX && f->before_ms + 1 < *ms)
    *ms = f->before_ms + 1;
  return 1;
}

/* F's conditions, after "WHERE 1". */
static void add_filter(vd_buf_t *sql, const vd_history_filter_t *f) {
  const char *lead = newest_lead(f);
  int64_t upper;
  if (f->has_seq)
    vd_buf_adds(sql, " AND seq >= ? AND seq < ?");
  if (f->has_since)
    vd_buf_adds(sql, " AND received_ms >= ?");
  if (upper_ms(f, &upper))
    vd_buf_adds(sql, " AND received_ms < ?");
  if (f->newest_first && f->has_before)
    vd_buf_adds(sql, " AND (received_ms < ? OR seq < ?)");
  if (f->has_at_since)
    vd_buf_adds(sql, " AND at_ms >= ?");
  if (f->has_at_until)
    vd_buf_adds(sql, " AND at_ms < ?");
  /* decisions_revision holds the revision's number (schema 8): looked
   * up first where the revision leads; checked by name where not */
  if (f->revision && f->newest_first && (!lead || strcmp(lead, "revision")))
    vd_buf_adds(sql, " AND +revision = ?");
  else if (f->revision)
    vd_buf_adds(sql, " AND revision_n = (SELECT n FROM revision_numbers"
                     " WHERE revision = ?)");
  if (f->error_code && (!*f->error_code || !strcmp(f->error_code, "none")))
    vd_buf_adds(sql, " AND error_code IS NULL");
  else if (f->error_code)
    add_equal(sql, f, lead, "error_code");
  if (f->region)
    add_equal(sql, f, lead, "region");
  if (f->kind)
    add_equal(sql, f, lead, "kind");
  if (f->complaint_id)
    add_equal(sql, f, lead, "complaint_id");
  if (f->decision_id)
    add_equal(sql, f, lead, "decision_id");
  if (f->customer_id)
    add_equal(sql, f, lead, "customer_id");
}

/* Bind F's values in add_filter()'s order, from parameter 1. */
static void bind_filter(sqlite3_stmt *st, const vd_history_filter_t *f) {
  int64_t upper;
  int k = 0;
  if (f->has_seq) {
    sqlite3_bind_int64(st, ++k, f->seq_lo);
    sqlite3_bind_int64(st, ++k, f->seq_hi);
  }
  if (f->has_since)
    sqlite3_bind_int64(st, ++k, f->since_ms);
  if (upper_ms(f, &upper))
    sqlite3_bind_int64(st, ++k, upper);
  if (f->newest_first && f->has_before) {
    sqlite3_bind_int64(st, ++k, f->before_ms);
    sqlite3_bind_int64(st, ++k, f->before_seq);
  }
  if (f->has_at_since)
    sqlite3_bind_int64(st, ++k, f->at_since_ms);
  if (f->has_at_until)
    sqlite3_bind_int64(st, ++k, f->at_until_ms);
  if (f->revision)
    sqlite3_bind_text(st, ++k, f->revision, -1, SQLITE_STATIC);
  if (f->error_code && *f->error_code && strcmp(f->error_code, "none"))
    sqlite3_bind_text(st, ++k, f->error_code, -1, SQLITE_STATIC);
  if (f->region)
    sqlite3_bind_text(st, ++k, f->region, -1, SQLITE_STATIC);
  if (f->kind)
    sqlite3_bind_text(st, ++k, f->kind, -1, SQLITE_STATIC);
  if (f->complaint_id)
    sqlite3_bind_text(st, ++k, f->complaint_id, -1, SQLITE_STATIC);
  if (f->decision_id)
    sqlite3_bind_text(st, ++k, f->decision_id, -1, SQLITE_STATIC);
  if (f->customer_id)
    sqlite3_bind_text(st, ++k, f->customer_id, -1, SQLITE_STATIC);
}

/* Prepare "[EXPLAIN QUERY PLAN ]SELECT <what> FROM decisions WHERE
 * <filter> <tail>" on DB (opened read-only from DB_PATH) with the filter
 * bound.  *st is the caller's on success. */
static int prepare_as(sqlite3 *db, sqlite3_stmt **st, const char *db_path,
                      int explain, const char *what,
                      const vd_history_filter_t *f, const char *tail,
                      vd_buf_t *err) {
  vd_buf_t sql = VD_BUF_INIT;
  int rc = 0;
  vd_buf_addf(&sql, "%sSELECT %s FROM decisions WHERE 1",
              explain ? "EXPLAIN QUERY PLAN " : "", what);
  add_filter(&sql, f);
  vd_buf_adds(&sql, tail);
  if (sqlite3_prepare_v2(db, sql.data, -1, st, NULL) != SQLITE_OK)
    rc = sql_failed(err, db_path, db);
  else
    bind_filter(*st, f);
  vd_buf_release(&sql);
  return rc;
}

static int prepare(sqlite3 *db, sqlite3_stmt **st, const char *db_path,
                   const char *what, const vd_history_filter_t *f,
                   const char *tail, vd_buf_t *err) {
  return prepare_as(db, st, db_path, 0, what, f, tail, err);
}

/* vd_history_rows_open()'s ORDER BY and LIMIT. */
static const char *rows_tail(const vd_history_filter_t *f) {
  if (f->newest_first)
    return f->has_limit ? " ORDER BY received_ms DESC, seq DESC LIMIT ?"
                        : " ORDER BY received_ms DESC, seq DESC";
  return f->has_limit ? " ORDER BY seq LIMIT ?" : " ORDER BY seq";
}

/* ========================================================================
 * Rows
 * ====================================================================== */

/* What a cursor selects: the columns FILTER asks for (every one when it
 * names none), NULL in the others' places, which SQLite then does not
 * decode; the trace as stored and, after the row's columns, its key
 * (Traces, below).  vd_hist_rows_plan() explains the same query. */
static void rows_columns(const vd_history_filter_t *f, vd_buf_t *what) {
  uint64_t cols = f->columns ? f->columns : ~(uint64_t)0;
  int i;
  for (i = 0; i < VD_HISTORY_NCOLUMNS; i++)
    vd_buf_addf(what, "%s%s", i ? ", " : "",
                cols & ((uint64_t)1 << i) ? vd_history_column_name(i)
                                          : "NULL");
  vd_buf_adds(what, cols & ((uint64_t)1 << VD_HISTORY_TRACE) ? ", trace_sha"
                                                              : ", NULL");
}

/* Traces.  A row's trace is read by its key.  Since schema 9 a row keeps the
 * trace's SHA-256 (trace_sha) and a NULL trace, and a few hundred
 * distinct traces answer a whole history (history_db.c, 8 -> 9).  Rather
 * than VD_HIST_TRACE_SQL's sub-select on every row (a search of `traces`
 * that was a quarter of a replayed row's read), a cursor selects trace
 * and trace_sha and looks the text up here, going to `traces` only when
 * a key is not held.  Direct-mapped on the key's first byte: memory is at
 * most TRACE_SLOTS texts, whatever the history's size; a trace that is
 * not in `traces` reads as NULL, as the sub-select's did. */
#define TRACE_SLOTS 32

typedef struct {
  uint8_t sha[32];
  char *text; /* NULL: slot empty */
  size_t len;
} trace_slot_t;

struct vd_history_rows {
  sqlite3 *db;
  sqlite3_stmt *st;
  sqlite3_stmt *trace_st; /* SELECT trace FROM traces WHERE sha256 = ? */
  char *path;
  int done;        /* the end was reached: SQLite would start again */
  vd_hist_pg_rows_t *pg; /* a PostgreSQL history's rows instead */
  vd_history_value_t row[VD_HISTORY_NCOLUMNS]; /* the row last stepped to */
  uint64_t columns; /* the filter's: the others stay NULL in row */
  int all;          /* the filter named no columns: every one, as before */
  int ranged;       /* opened by vd_history_rows_open_range(): it may move */
  vd_history_filter_t sel; /* the selection it was opened on, before it
                            * was narrowed to a range (PostgreSQL narrows
                            * it again for each range; its strings are
                            * the caller's, as the filter's) */
  sqlite3_stmt *more_st; /* vd_history_rows_more()'s: SELECT more_cols
                          * WHERE seq = ? */
  uint64_t more_cols;
  uint64_t filled;  /* the columns it filled in the row in hand */
  trace_slot_t traces[TRACE_SLOTS];
  vd_buf_t err;
};

int vd_history_rows_open(vd_history_rows_t **out, const char *db_path,
                         const vd_history_filter_t *filter, vd_buf_t *err) {
  vd_history_rows_t *r;
  int rc;
  *out = NULL;
  r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(db_path))) {
    free(r);
    vd_buf_reset(err);
    vd_buf_adds(err, "out of memory");
    return VD_ENOMEM;
  }
  if (vd_history_is_postgres(db_path)) {
    rc = vd_hist_pg_rows_open(&r->pg, db_path, filter, err);
    if (rc)
      vd_history_rows_close(r);
    else
      *out = r;
    return rc;
  }
  rc = vd_history_db_open_ro(&r->db, db_path, err);
  if (rc == 0) {
    vd_buf_t what = VD_BUF_INIT;
    rows_columns(filter, &what);
    rc = prepare(r->db, &r->st, db_path, what.data, filter,
                 rows_tail(filter), err);
    vd_buf_release(&what);
  }
  if (rc) {
    vd_history_rows_close(r);
    return rc;
  }
  if (filter->has_limit)
    sqlite3_bind_int64(r->st, sqlite3_bind_parameter_count(r->st),
                       filter->limit);
  r->columns = filter->columns ? filter->columns : ~(uint64_t)0;
  r->all = !filter->columns;
  *out = r;
  return 0;
}

/* Narrow F, a selection given to vd_history_split(), to the rows of the
 * range LO <= key < HI it made for DB_PATH. */
static void filter_range(vd_history_filter_t *f, const char *db_path,
                         int64_t lo, int64_t hi) {
  if (!vd_history_is_postgres(db_path)) {
    f->has_seq = 1;
    f->seq_lo = lo;
    f->seq_hi = hi;
    return;
  }
  /* received_ms, within the selection's own window */
  if (!f->has_since || f->since_ms < lo)
    f->since_ms = lo;
  f->has_since = 1;
  if (hi != INT64_MAX && (!f->has_until || f->until_ms > hi)) {
    f->until_ms = hi;
    f->has_until = 1;
  }
}

int vd_history_rows_open_range(vd_history_rows_t **out, const char *db_path,
                               const vd_history_filter_t *selection,
                               int64_t lo, int64_t hi, vd_buf_t *err) {
  vd_history_filter_t f = *selection;
  int rc;
  filter_range(&f, db_path, lo, hi);
  rc = vd_history_rows_open(out, db_path, &f, err);
  if (rc == 0) {
    (*out)->ranged = 1;
    (*out)->sel = *selection;
  }
  return rc;
}

static void unfill(vd_history_rows_t *r);

int vd_history_rows_range(vd_history_rows_t *r, int64_t lo, int64_t hi) {
  if (!r->ranged) {
    vd_buf_reset(&r->err);
    vd_buf_adds(&r->err, "not opened on a range of a selection");
    return VD_EINVALID;
  }
  if (!r->st) { /* PostgreSQL (r->pg; NULL after a range that failed) */
    /* a range is a query of its own, narrowed from the selection, never
     * from the last range (its received_ms window would shrink: a lane's
     * second range read nothing) */
    vd_history_filter_t f = r->sel;
    filter_range(&f, r->path, lo, hi);
    vd_hist_pg_rows_close(r->pg);
    r->pg = NULL;
    return vd_hist_pg_rows_open(&r->pg, r->path, &f, &r->err);
  }
  unfill(r);
  sqlite3_reset(r->st);
  sqlite3_bind_int64(r->st, 1, lo);
  sqlite3_bind_int64(r->st, 2, hi);
  r->done = 0;
  return 0;
}

/* V (the trace column, NULL as stored) from the row's key, the column
 * after the row's: through the slots, else from `traces`.  0, or an error
 * code with r->err set.  V stays NULL without a key, or for a key not in `traces`. */
static int trace_by_key(vd_history_rows_t *r, vd_history_value_t *v) {
  const uint8_t *sha = sqlite3_column_blob(r->st, VD_HISTORY_NCOLUMNS);
  trace_slot_t *slot;
  const char *text;
  char *copy;
  size_t n;
  int rc;
  if (!sha || sqlite3_column_bytes(r->st, VD_HISTORY_NCOLUMNS) != 32)
    return 0;
  slot = &r->traces[sha[0] % TRACE_SLOTS];
  if (!slot->text || memcmp(slot->sha, sha, 32) != 0) {
    if (!r->trace_st &&
        sqlite3_prepare_v2(r->db,
                           "SELECT trace FROM traces WHERE sha256 = ?", -1,
                           &r->trace_st, NULL) != SQLITE_OK)
      return sql_failed(&r->err, r->path, r->db);
    sqlite3_bind_blob(r->trace_st, 1, sha, 32, SQLITE_TRANSIENT);
    rc = sqlite3_step(r->trace_st);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(r->trace_st);
      return 0; /* not stored: NULL, as the row's sub-select read it */
    }
    if (rc != SQLITE_ROW) {
      rc = sql_failed(&r->err, r->path, r->db);
      sqlite3_reset(r->trace_st);
      return rc;
    }
    text = (const char *)sqlite3_column_text(r->trace_st, 0);
    n = (size_t)sqlite3_column_bytes(r->trace_st, 0);
    copy = text ? malloc(n + 1) : NULL; /* (trace is NOT NULL) */
    if (copy)
      memcpy(copy, text, n + 1);
    sqlite3_reset(r->trace_st);
    if (!copy) {
      vd_buf_reset(&r->err);
      vd_buf_adds(&r->err, "out of memory");
      return VD_ENOMEM;
    }
    free(slot->text);
    slot->text = copy;
    slot->len = n;
    memcpy(slot->sha, sha, 32);
  }
  v->text = slot->text;
  v->len = slot->len;
  return 0;
}

/* V from column COL of ST's row: the type first (SQLite defines it only
 * before a conversion); with the columns named (ALL 0), text is not
 * converted to a number (history.h). */
static void read_value(sqlite3_stmt *st, int col, int all,
                       vd_history_value_t *v) {
  v->is_int = sqlite3_column_type(st, col) == SQLITE_INTEGER;
  v->i = v->is_int || all ? sqlite3_column_int64(st, col) : 0;
  if (v->is_int && !all) { /* i alone: SQLite would print it for text */
    v->text = NULL;
    v->len = 0;
    return;
  }
  v->text = (const char *)sqlite3_column_text(st, col);
  v->len = v->text ? (size_t)sqlite3_column_bytes(st, col) : 0;
}

/* Forget what vd_history_rows_more() filled in the row in hand. */
static void unfill(vd_history_rows_t *r) {
  int i;
  if (!r->filled)
    return;
  for (i = 0; i < VD_HISTORY_NCOLUMNS; i++)
    if (r->filled & ((uint64_t)1 << i))
      memset(&r->row[i], 0, sizeof r->row[i]);
  r->filled = 0;
  sqlite3_reset(r->more_st);
}

int vd_history_rows_more(vd_history_rows_t *r, uint64_t columns) {
  uint64_t want;
  vd_buf_t sql = VD_BUF_INIT;
  int i, k, rc;
  if (r->pg || r->all)
    return 0; /* every column is in the row already */
  if (!(columns & ~r->columns & ~r->filled))
    return 0;
  if (!(r->columns & ((uint64_t)1 << VD_HISTORY_SEQ)) || r->done ||
      (columns & ~r->columns & ((uint64_t)1 << VD_HISTORY_TRACE))) {
    vd_buf_reset(&r->err);
    vd_buf_adds(&r->err, "more columns: no row in hand, its seq not read, "
                         "or the trace asked for (read with the row only)");
    return VD_EINVALID;
  }
  /* the columns filled before for this row as well: one statement */
  want = (columns | r->filled) & ~r->columns;
  unfill(r);
  if (!r->more_st || r->more_cols != want) {
    sqlite3_finalize(r->more_st);
    r->more_st = NULL;
    vd_buf_adds(&sql, "SELECT ");
    for (i = 0, k = 0; i < VD_HISTORY_NCOLUMNS; i++)
      if (want & ((uint64_t)1 << i))
        vd_buf_addf(&sql, "%s%s", k++ ? ", " : "", vd_history_column_name(i));
    vd_buf_adds(&sql, " FROM decisions WHERE seq = ?");
    rc = sqlite3_prepare_v2(r->db, sql.data, -1, &r->more_st, NULL);
    vd_buf_release(&sql);
    if (rc != SQLITE_OK)
      return sql_failed(&r->err, r->path, r->db);
    r->more_cols = want;
  }
  sqlite3_bind_int64(r->more_st, 1, r->row[VD_HISTORY_SEQ].i);
  rc = sqlite3_step(r->more_st);
  if (rc == SQLITE_DONE) { /* the same read transaction: cannot happen */
    sqlite3_reset(r->more_st);
    vd_buf_reset(&r->err);
    vd_buf_addf(&r->err, "%s: the row of seq %lld is gone", r->path,
                (long long)r->row[VD_HISTORY_SEQ].i);
    return VD_EIO;
  }
  if (rc != SQLITE_ROW) {
    rc = sql_failed(&r->err, r->path, r->db);
    sqlite3_reset(r->more_st);
    return rc;
  }
  for (i = 0, k = 0; i < VD_HISTORY_NCOLUMNS; i++)
    if (want & ((uint64_t)1 << i))
      read_value(r->more_st, k++, 0, &r->row[i]);
  r->filled = want;
  return 0;
}

int vd_history_rows_next(vd_history_rows_t *r,
                         const vd_history_value_t **row) {
  int i, rc;
  *row = NULL;
  if (r->pg)
    return vd_hist_pg_rows_next(r->pg, row);
  if (!r->st) /* a PostgreSQL range that could not be opened */
    return VD_EIO;
  unfill(r);
  if (r->done)
    return 0;
  rc = sqlite3_step(r->st);
  if (rc == SQLITE_DONE) {
    r->done = 1;
    return 0;
  }
  if (rc != SQLITE_ROW)
    return sql_failed(&r->err, r->path, r->db);
  for (i = 0; i < VD_HISTORY_NCOLUMNS; i++) {
    vd_history_value_t *v = &r->row[i];
    if (!(r->columns & ((uint64_t)1 << i)))
      continue; /* selected as NULL: row[i] stays zeroed (calloc) */
    read_value(r->st, i, r->all, v);
  }
  if ((r->columns & ((uint64_t)1 << VD_HISTORY_TRACE)) &&
      !r->row[VD_HISTORY_TRACE].text &&
      (rc = trace_by_key(r, &r->row[VD_HISTORY_TRACE])) != 0)
    return rc;
  *row = r->row;
  return 1;
}

const char *vd_history_rows_node(const vd_history_rows_t *r) {
  return r->pg ? vd_hist_pg_rows_node(r->pg) : NULL;
}

const char *vd_history_rows_errmsg(const vd_history_rows_t *r) {
  if (r->pg)
    return vd_hist_pg_rows_errmsg(r->pg);
  return r->err.data ? r->err.data : "";
}

void vd_history_rows_close(vd_history_rows_t *r) {
  int i;
  if (!r)
    return;
  vd_hist_pg_rows_close(r->pg);
  for (i = 0; i < TRACE_SLOTS; i++)
    free(r->traces[i].text);
  sqlite3_finalize(r->trace_st);
  sqlite3_finalize(r->more_st);
  sqlite3_finalize(r->st);
  sqlite3_close(r->db);
  vd_buf_release(&r->err);
  free(r->path);
  free(r);
}

int vd_hist_rows_plan(const char *db_path, const vd_history_filter_t *filter,
                      vd_buf_t *plan, vd_buf_t *err) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  vd_buf_t what = VD_BUF_INIT;
  int rc, step = SQLITE_DONE;
  rows_columns(filter, &what);
  rc = vd_history_db_open_ro(&db, db_path, err);
  if (rc == 0)
    rc = prepare_as(db, &st, db_path, 1, what.data, filter,
                    rows_tail(filter), err);
  vd_buf_release(&what);
  if (rc == 0 && filter->has_limit)
    sqlite3_bind_int64(st, sqlite3_bind_parameter_count(st), filter->limit);
  while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
    if (plan->len)
      vd_buf_adds(plan, "; ");
    vd_buf_adds(plan, (const char *)sqlite3_column_text(st, 3));
  }
  if (rc == 0 && step != SQLITE_DONE)
    rc = sql_failed(err, db_path, db);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

/* ========================================================================
 * Splitting a selection for replay's threads
 * ====================================================================== */

/* "SELECT WHAT FROM decisions WHERE <FILTER>", one row of N integers
 * into v (NULL reads as 0).  0, or an error code with ERR set. */
static int aggregate(sqlite3 *db, const char *db_path, const char *what,
                     const vd_history_filter_t *filter, int64_t *v, int n,
                     vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = prepare(db, &st, db_path, what, filter, "", err), i;
  if (rc == 0 && sqlite3_step(st) != SQLITE_ROW)
    rc = sql_failed(err, db_path, db);
  for (i = 0; rc == 0 && i < n; i++)
    v[i] = sqlite3_column_int64(st, i);
  sqlite3_finalize(st);
  return rc;
}

/* SELECTION without its decision-time conditions: at_ms leads no index,
 * so what an index tells of the selection; the readers of the ranges
 * check the rest on their rows. */
static vd_history_filter_t index_led(const vd_history_filter_t *selection) {
  vd_history_filter_t f = *selection;
  f.has_at_since = f.has_at_until = 0;
  return f;
}

/* A span of seq that holds every row FILTER selects, from the lowest to
 * the highest of them (*lo > *hi: none: a seq is at least 1) as far as an
 * index tells them.  Without a condition, each from one end of the table
 * (SQLite's min/max optimization: a seek each, whatever the history's
 * size); with a received window, a single aggregate that SQLite answers
 * from the time index alone.  The decision time (at_ms) leads no index:
 * its condition is left to the readers of the ranges, which check it on
 * every row of their span anyway, side by side, rather than read every
 * row here first, on one thread, to narrow the span. */
static int seq_span(sqlite3 *db, const char *db_path,
                    const vd_history_filter_t *selection, int64_t *lo,
                    int64_t *hi, vd_buf_t *err) {
  vd_buf_t sql = VD_BUF_INIT;
  vd_history_filter_t f = index_led(selection);
  int64_t v[2] = {0, 0};
  int rc, conditions;
  add_filter(&sql, &f);
  conditions = sql.len > 0;
  vd_buf_release(&sql);
  if (conditions)
    rc = aggregate(db, db_path, "min(seq), max(seq)", &f, v, 2, err);
  else if ((rc = aggregate(db, db_path, "min(seq)", &f, v, 1, err)) == 0)
    rc = aggregate(db, db_path, "max(seq)", &f, v + 1, 1, err);
  *lo = v[0] ? v[0] : 1; /* min(seq) of no rows: NULL, read as 0 */
  *hi = v[1];
  return rc;
}

/* Ranges a time window (or the whole history) is cut into, per lane: a
 * lane that the machine slows leaves the others at most one range to
 * finish alone (about 1/256 of the run with two lanes); a range costs its
 * lane a reset and a seek of its statement. */
#define RANGES_PER_LANE 128
/* On PostgreSQL a range is a query on a connection of its own: a few a
 * lane, so that a slowed lane is still made up for. */
#define PG_RANGES_PER_LANE 4

/* FILTER selects by time alone (received_ms, at_ms), or not at all: a
 * cursor narrowed to a range of seq then walks that range of the table
 * (SQLite's plan: the rowid), whatever else it checks.  An equality
 * (region, revision, error...) leads SQLite to that column's index, which
 * a cursor walks whole for every range it reads, and whose rows may
 * cluster anywhere in the seq order. */
static int by_time_alone(const vd_history_filter_t *f) {
  return !f->revision && !f->error_code && !f->region && !f->kind &&
         !f->complaint_id && !f->decision_id && !f->customer_id;
}

int vd_history_split_count(const char *db_path,
                           const vd_history_filter_t *filter, int lanes) {
  if (vd_history_is_postgres(db_path))
    return lanes * PG_RANGES_PER_LANE;
  if (!by_time_alone(filter))
    return lanes;
  return lanes * RANGES_PER_LANE;
}

/* Equal spans of seq from the lowest FILTER selects to the highest (found
 * with a seek at each end, or one pass over the time index; a span that
 * holds them where the decision time narrows the selection), no row read:
 * a time window's rows fill their span of seq. */
static int split_by_seq(sqlite3 *db, const char *db_path,
                        const vd_history_filter_t *filter, int n,
                        int64_t *bounds, vd_buf_t *err) {
  int64_t lo, hi, span;
  int rc = seq_span(db, db_path, filter, &lo, &hi, err), i;
  if (rc)
    return rc;
  /* lo + span * i / n, without overflow */
  span = lo > hi ? 0 : hi - lo + 1;
  bounds[0] = span ? lo : INT64_MAX;
  for (i = 1; i < n; i++)
    bounds[i] = span ? lo + span / n * i + span % n * i / n : INT64_MAX;
  /* the last range ends after the highest row too: a cursor on seq >= X
   * alone would walk the table's rows past the window to its end, every
   * one checked against the window and refused */
  bounds[n] = span ? hi + 1 : INT64_MAX;
  return 0;
}

/* Ranges of about as many of FILTER's rows each, from its seqs in order
 * (for an equality, from its index and a sort). */
static int split_by_rows(sqlite3 *db, const char *db_path,
                         const vd_history_filter_t *filter, int n,
                         int64_t total, int64_t *bounds, vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int64_t row = 0, last = 0;
  int rc, lane = 1;
  rc = prepare(db, &st, db_path, "seq", filter, " ORDER BY seq", err);
  if (rc)
    return rc;
  bounds[0] = 0;
  while (lane < n && sqlite3_step(st) == SQLITE_ROW) {
    last = sqlite3_column_int64(st, 0);
    if (row == 0)
      bounds[0] = last;
    while (lane < n && row == total * lane / n)
      bounds[lane++] = last;
    row++;
  }
  /* with fewer rows than ranges, the rest are empty */
  while (lane < n)
    bounds[lane++] = INT64_MAX;
  bounds[n] = INT64_MAX;
  sqlite3_finalize(st);
  return 0;
}

int vd_history_split(const char *db_path, const vd_history_filter_t *filter,
                     int n, int64_t *bounds, int64_t *total_out,
                     vd_buf_t *err) {
  sqlite3 *db = NULL;
  int64_t total = -1;
  int rc, alone = by_time_alone(filter);
  if (vd_history_is_postgres(db_path))
    return vd_hist_pg_split(db_path, filter, n, bounds, total_out, err);
  rc = vd_history_db_open_ro(&db, db_path, err);
  if (rc)
    return rc;
  /* counted when asked, or to cut by rows: a pass over an index */
  if (total_out || !alone)
    rc = aggregate(db, db_path, "count(*)", filter, &total, 1, err);
  if (rc == 0 && total_out)
    *total_out = total;
  if (rc == 0)
    rc = alone ? split_by_seq(db, db_path, filter, n, bounds, err)
               : split_by_rows(db, db_path, filter, n, total, bounds, err);
  sqlite3_close(db);
  return rc;
}

/* The seq of the first row of a window in the time index's order (ORDER:
 * " ORDER BY received_ms, seq LIMIT 1", or its last: DESC): one seek.
 * *seq 0 when the window holds none. */
static int window_row(sqlite3 *db, const char *db_path,
                      const vd_history_filter_t *f, const char *order,
                      int64_t *seq, vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = prepare(db, &st, db_path, "seq", f, order, err), step;
  *seq = 0;
  if (rc)
    return rc;
  step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    *seq = sqlite3_column_int64(st, 0);
  else if (step != SQLITE_DONE)
    rc = sql_failed(err, db_path, db);
  sqlite3_finalize(st);
  return rc;
}

int vd_history_split_middle(const char *db_path,
                            const vd_history_filter_t *filter, int n,
                            int64_t *bounds, vd_buf_t *err) {
  sqlite3 *db = NULL;
  vd_history_filter_t f = index_led(filter); /* the received window */
  int64_t first, last, span;
  int rc, m = n - 2, i;
  if (n < 3 || vd_history_is_postgres(db_path) || !by_time_alone(filter) ||
      (!filter->has_since && !filter->has_until))
    return 0; /* vd_history_split() makes no pass, or cuts by rows */
  if ((rc = vd_history_db_open_ro(&db, db_path, err)) != 0)
    return rc;
  rc = window_row(db, db_path, &f, " ORDER BY received_ms, seq LIMIT 1",
                  &first, err);
  if (rc == 0)
    rc = window_row(db, db_path, &f,
                    " ORDER BY received_ms DESC, seq DESC LIMIT 1", &last,
                    err);
  sqlite3_close(db);
  if (rc)
    return rc;
  /* the first received may have been recorded after the last: then the
   * middle is empty, and the ends hold them all */
  span = first && last >= first ? last - first + 1 : 0;
  for (i = 0; i <= m; i++)
    bounds[1 + i] = !first ? INT64_MAX
                           : first + span / m * i + span % m * i / m;
  return 1;
}

int vd_history_split_ends(const char *db_path,
                          const vd_history_filter_t *filter, int n,
                          int64_t *bounds, int64_t *total, vd_buf_t *err) {
  sqlite3 *db = NULL;
  int64_t lo, hi;
  int rc = vd_history_db_open_ro(&db, db_path, err);
  if (rc)
    return rc;
  rc = seq_span(db, db_path, filter, &lo, &hi, err);
  if (rc == 0 && total)
    rc = aggregate(db, db_path, "count(*)", filter, total, 1, err);
  sqlite3_close(db);
  if (rc)
    return rc;
  /* range 0: the window's rows below the middle's; range n - 1: those
   * above it (none where the rows were recorded in the order received) */
  bounds[0] = lo <= hi && lo < bounds[1] ? lo : bounds[1];
  bounds[n] = lo <= hi && hi + 1 > bounds[n - 1] ? hi + 1 : bounds[n - 1];
  return 0;
}

int vd_history_rate(const char *db_path, int64_t since_ms, int64_t bucket_ms,
                    int n, int64_t *total, int64_t *errors, vd_buf_t *err) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc, i;
  for (i = 0; i < n; i++)
    total[i] = errors[i] = 0;
  if (n <= 0 || bucket_ms <= 0)
    return 0;
  rc = vd_history_db_open_ro(&db, db_path, err);
  if (rc)
    goto out;
  /* the range is one seek into decisions_received; error_code is read
   * from each row of it */
  if (sqlite3_prepare_v2(db,
                         "SELECT (received_ms - ?1) / ?2, count(*), "
                         "count(error_code) FROM decisions "
                         "WHERE received_ms >= ?1 AND received_ms < ?3 "
                         "GROUP BY 1", -1, &st, NULL) != SQLITE_OK) {
    rc = sql_failed(err, db_path, db);
    goto out;
  }
  sqlite3_bind_int64(st, 1, since_ms);
  sqlite3_bind_int64(st, 2, bucket_ms);
  sqlite3_bind_int64(st, 3, since_ms + bucket_ms * n);
  while ((i = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t b = sqlite3_column_int64(st, 0);
    if (b >= 0 && b < n) {
      total[b] = sqlite3_column_int64(st, 1);
      errors[b] = sqlite3_column_int64(st, 2);
    }
  }
  if (i != SQLITE_DONE)
    rc = sql_failed(err, db_path, db);
out:
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

/* ========================================================================
 * Revisions and activations, for the admin channel
 * ====================================================================== */

int vd_history_revisions_json(const char *db_path, vd_buf_t *out,
                              vd_buf_t *err) {
  static const char *const cols[] = {"at",     "revision", "trigger", "who",
                                     "source", "ok",       "error"};
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc, first = 1;
  if (vd_history_is_postgres(db_path))
    return vd_hist_pg_revisions_json(db_path, out, err);
  if (vd_history_db_open_ro(&db, db_path, err) != 0)
    return VD_EIO;
  vd_buf_adds(out, "\"activations\":[");
  rc = sqlite3_prepare_v2(
      db,
      /* the trigger as people tell them apart: an admin's activation of
       * a stored revision (its source "db:...", vd_history_load_bundle)
       * is a rollback, of the directory a reload */
      "SELECT at, revision, CASE WHEN cause <> 'admin' THEN cause"
      "  WHEN source_dir LIKE 'db:%' THEN 'rollback' ELSE 'reload' END,"
      " who, source_dir, ok, error FROM activations "
      "ORDER BY id DESC LIMIT 200", -1, &st, NULL);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    int i;
    vd_buf_adds(out, first ? "{" : ",{");
    first = 0;
    for (i = 0; i < 7; i++) {
      const char *v = (const char *)sqlite3_column_text(st, i);
      vd_buf_addf(out, "%s\"%s\":", i ? "," : "", cols[i]);
      if (i == 5)
        vd_buf_adds(out, sqlite3_column_int(st, i) ? "true" : "false");
      else if (!v)
        vd_buf_adds(out, "null");
      else
        vd_buf_add_json_str(out, v, strlen(v));
    }
    vd_buf_addc(out, '}');
  }
  sqlite3_finalize(st);
  vd_buf_adds(out, "],\"revisions\":[");
  first = 1;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db,
                            "SELECT revision, stored_ms, files, bytes FROM "
                            "revisions ORDER BY stored_ms DESC, revision",
                            -1, &st, NULL);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    char ts[32];
    vd_time_format(sqlite3_column_int64(st, 1), VD_DEFAULT_OFFSET_MIN, ts);
    vd_buf_addf(out, "%s{\"revision\":\"%s\",\"stored_at\":\"%s\",\"files\":%d,"
                     "\"bytes\":%lld}",
                first ? "" : ",", sqlite3_column_text(st, 0), ts,
                sqlite3_column_int(st, 2),
                (long long)sqlite3_column_int64(st, 3));
    first = 0;
  }
  vd_buf_addc(out, ']');
  sqlite3_finalize(st);
  st = NULL;
  vd_buf_adds(out, ",\"tags\":[");
  first = 1;
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db,
                            "SELECT name, revision, who, at FROM revision_tags"
                            " ORDER BY at_ms, name",
                            -1, &st, NULL);
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    int i;
    for (i = 0; i < 4; i++) {
      static const char *const tcols[] = {"name", "revision", "who", "at"};
      const char *v = (const char *)sqlite3_column_text(st, i);
      vd_buf_addf(out, "%s\"%s\":", i ? "," : first ? "{" : ",{", tcols[i]);
      if (v)
        vd_buf_add_json_str(out, v, strlen(v));
      else
        vd_buf_adds(out, "null");
    }
    vd_buf_addc(out, '}');
    first = 0;
  }
  vd_buf_addc(out, ']');
  if (rc != SQLITE_OK)
    vd_buf_addf(err, "%s: %s", db_path, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : VD_EIO;
}
