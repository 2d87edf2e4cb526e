/*
 * history_facts.c - the questions policies ask of the history
 * (ctx.history.*), answered through a vd_history_reader_t.
 *
 * Owns the readers: each is one read-only connection (history_db.c) with
 * every question's statement prepared once.  Which questions exist, their
 * arguments, windows and limits is VD_HISTORY_FACTS in
 * include/verdict/history.h, the one table the engine's Lua functions
 * (core/engine.c) and vd_history_answer() are both made from.
 *
 * Invariants:
 *   - only successful decisions (error_code IS NULL) count;
 *   - each answer is one statement, so it reads one consistent snapshot
 *     (WAL: never half a batch, never blocks the writer);
 *   - the same question over the same rows gives the same count, which
 *     is what lets replay answer from the facts a decision recorded.
 *
 * Threads: a reader belongs to one thread (a daemon worker, a replay
 * lane); its connection is opened SQLITE_OPEN_NOMUTEX.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"

/* ========================================================================
 * Facts
 * ====================================================================== */

/* The complaint facts, one statement per vd_complaints_t, all bound as
 * (?1 customer, ?2 complaint, ?3 since, ?4 until).  `mine` is the
 * customer's complaints (see history.h); each is kept when the first of
 * its decisions that qualifies falls at or after ?3.  The request and
 * result columns are read only through json_valid(), so a row whose JSON
 * SQLite will not parse cannot make the query fail: it just does not
 * qualify.  Plans (EXPLAIN QUERY PLAN; tests/test_history.c checks them):
 * `mine` is a range of the covering index decisions_customer, the
 * correlated subquery a seek into decisions_complaint (covering for
 * REPEAT; the other two read the row of each appeal or compensation of
 * the complaint for its JSON). */
static const char *const complaints_sql[] = {
    /* VD_COMPLAINTS_REPEAT: a complaint whose first decision is at or
     * after ?3 has every decision there, the one naming the customer
     * included, so `mine` needs only the window */
    [VD_COMPLAINTS_REPEAT] =
    "SELECT count(*) FROM"
    " (SELECT DISTINCT complaint_id AS id FROM decisions"
    "   WHERE customer_id = ?1 AND at_ms >= ?3 AND at_ms < ?4"
    "     AND error_code IS NULL AND complaint_id <> ?2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND at_ms < ?4"
    "          AND error_code IS NULL) >= ?3",
    /* the complaint's first appeal may come long after the decisions
     * that name the customer (up to 2 years after the event), so `mine`
     * reaches back to the start of the history */
    [VD_COMPLAINTS_OVER_HEAD] =
    "SELECT count(*) FROM"
    " (SELECT complaint_id AS id FROM decisions"
    "   WHERE customer_id = ?1 AND at_ms < ?4 AND error_code IS NULL"
    "  UNION SELECT ?2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND kind = 'appeal' AND at_ms < ?4"
    "          AND error_code IS NULL"
    "          AND (CASE WHEN json_valid(request) THEN json_extract(request,"
    "               '$.input.appellant_is_party') END) IS NOT 0) >= ?3",
    [VD_COMPLAINTS_REFUNDED] =
    "SELECT count(*) FROM"
    " (SELECT complaint_id AS id FROM decisions"
    "   WHERE customer_id = ?1 AND at_ms < ?4 AND error_code IS NULL"
    "  UNION SELECT ?2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND kind = 'compensation'"
    "          AND at_ms < ?4 AND error_code IS NULL"
    "          AND (CASE WHEN json_valid(result) THEN json_extract(result,"
    "               '$.offer_fen') END) > 0) >= ?3",
};

#define NCOMPLAINTS (sizeof complaints_sql / sizeof complaints_sql[0])

struct vd_history_reader {
  sqlite3 *db;
  char *path;
  sqlite3_stmt *st_count_kind, *st_count_any, *st_distinct;
  sqlite3_stmt *st_complaints[NCOMPLAINTS]; /* by vd_complaints_t */
  vd_hist_pg_reader_t *pg;  /* a PostgreSQL history's reader instead */
  vd_buf_t err;
};

void vd_history_reader_close(vd_history_reader_t *r) {
  size_t i;
  if (!r)
    return;
  vd_hist_pg_reader_close(r->pg);
  sqlite3_finalize(r->st_count_kind);
  sqlite3_finalize(r->st_count_any);
  sqlite3_finalize(r->st_distinct);
  for (i = 0; i < NCOMPLAINTS; i++)
    sqlite3_finalize(r->st_complaints[i]);
  sqlite3_close(r->db);
  vd_buf_release(&r->err);
  free(r->path);
  free(r);
}

int vd_history_reader_open(vd_history_reader_t **out, const char *path,
                           char **errmsg) {
  static const char *const sql[3] = {
      "SELECT count(*) FROM decisions"
      " WHERE customer_id = ?1 AND kind = ?2 AND at_ms >= ?3 AND at_ms < ?4"
      "   AND error_code IS NULL",
      "SELECT count(*) FROM decisions"
      " WHERE customer_id = ?1 AND at_ms >= ?3 AND at_ms < ?4"
      "   AND error_code IS NULL",
      "SELECT count(DISTINCT customer_id) FROM decisions"
      " WHERE region = ?1 AND category = ?2 AND at_ms >= ?3 AND at_ms < ?4"
      "   AND error_code IS NULL",
  };
  vd_buf_t err = VD_BUF_INIT;
  vd_history_reader_t *r;
  const char *text[3 + NCOMPLAINTS];
  sqlite3_stmt **st[3 + NCOMPLAINTS];
  size_t i;
  int rc;
  *out = NULL;
  if (errmsg)
    *errmsg = NULL;
  r = calloc(1, sizeof *r);
  if (!r || !(r->path = strdup(path))) {
    free(r);
    return vd_hist_give_err(errmsg, &err, VD_ENOMEM);
  }
  st[0] = &r->st_count_kind;
  st[1] = &r->st_count_any;
  st[2] = &r->st_distinct;
  memcpy(text, sql, sizeof sql);
  for (i = 0; i < NCOMPLAINTS; i++) {
    text[3 + i] = complaints_sql[i];
    st[3 + i] = &r->st_complaints[i];
  }
  if (vd_history_is_postgres(path)) {
    rc = vd_hist_pg_reader_open(&r->pg, path, &err);
    goto done;
  }
  rc = vd_history_db_open_ro(&r->db, path, &err);
  for (i = 0; rc == 0 && i < 3 + NCOMPLAINTS; i++) {
    int src = sqlite3_prepare_v3(r->db, text[i], -1,
                                 SQLITE_PREPARE_PERSISTENT, st[i], NULL);
    if (src != SQLITE_OK)
      rc = vd_hist_db_err(&err, path, r->db, src,
                          "preparing the facts queries");
  }
done:
  if (rc) {
    vd_history_reader_close(r);
    return vd_hist_give_err(errmsg, &err, rc);
  }
  *out = r;
  return vd_hist_give_err(errmsg, &err, 0);
}

const char *vd_history_reader_errmsg(const vd_history_reader_t *r) {
  return r->err.data ? r->err.data : "";
}

/* Run a counting statement with (?1, ?2, ?3, ?4) bound. */
static int reader_count(vd_history_reader_t *r, sqlite3_stmt *st,
                        const char *a, const char *b, int64_t since_ms,
                        int64_t until_ms, int64_t *count) {
  int rc;
  vd_buf_reset(&r->err);
  sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
  if (b)
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, since_ms);
  sqlite3_bind_int64(st, 4, until_ms);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *count = sqlite3_column_int64(st, 0);
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  if (rc != SQLITE_ROW)
    return vd_hist_db_err(&r->err, r->path, r->db, rc, "counting decisions");
  return 0;
}

int vd_history_count_customer(vd_history_reader_t *r, const char *customer_id,
                              const char *kind, int64_t since_ms,
                              int64_t until_ms, int64_t *count) {
  if (r->pg)
    return vd_hist_pg_count(r->pg, kind ? 0 : 1, customer_id, kind, since_ms,
                            until_ms, count, (vd_buf_reset(&r->err), &r->err));
  return reader_count(r, kind ? r->st_count_kind : r->st_count_any,
                      customer_id, kind, since_ms, until_ms, count);
}

int vd_history_distinct_customers(vd_history_reader_t *r, const char *region,
                                  const char *category, int64_t since_ms,
                                  int64_t until_ms, int64_t *count) {
  if (r->pg)
    return vd_hist_pg_count(r->pg, 2, region, category, since_ms, until_ms,
                            count, (vd_buf_reset(&r->err), &r->err));
  return reader_count(r, r->st_distinct, region, category, since_ms, until_ms,
                      count);
}

const char *vd_history_complaints_sql(vd_complaints_t which) {
  return (unsigned)which < NCOMPLAINTS ? complaints_sql[which] : NULL;
}

int vd_history_count_complaints(vd_history_reader_t *r, vd_complaints_t which,
                                const char *customer_id,
                                const char *complaint_id, int64_t since_ms,
                                int64_t until_ms, int64_t *count) {
  if ((unsigned)which >= NCOMPLAINTS || !customer_id || !complaint_id) {
    vd_buf_reset(&r->err);
    vd_buf_adds(&r->err, "counting complaints: unknown question, or no "
                         "customer or complaint given");
    return VD_EINVALID;
  }
  if (r->pg)
    return vd_hist_pg_count(r->pg, 3 + (int)which, customer_id, complaint_id,
                            since_ms, until_ms, count,
                            (vd_buf_reset(&r->err), &r->err));
  return reader_count(r, r->st_complaints[which], customer_id, complaint_id,
                      since_ms, until_ms, count);
}

int vd_history_fact_find(const char *name) {
  static const char *const names[VD_NFACTS] = {
#define FACT_NAME_(E, name, unit_ms, max_span) #name,
      VD_HISTORY_FACTS(FACT_NAME_)
#undef FACT_NAME_
  };
  int i;
  for (i = 0; name && i < VD_NFACTS; i++)
    if (strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

int vd_history_answer(vd_history_reader_t *r, const char *query,
                      const char *a, const char *b, int64_t since_ms,
                      int64_t until_ms, int64_t *count) {
  switch (vd_history_fact_find(query)) {
  case VD_FACT_CUSTOMER_DECISIONS:
    return vd_history_count_customer(r, a, b, since_ms, until_ms, count);
  case VD_FACT_SIMILAR_CUSTOMERS:
    return vd_history_distinct_customers(r, a, b, since_ms, until_ms, count);
  case VD_FACT_REPEAT_COMPLAINTS:
    return vd_history_count_complaints(r, VD_COMPLAINTS_REPEAT, a, b,
                                       since_ms, until_ms, count);
  case VD_FACT_OVER_HEAD_COMPLAINTS:
    return vd_history_count_complaints(r, VD_COMPLAINTS_OVER_HEAD, a, b,
                                       since_ms, until_ms, count);
  case VD_FACT_REFUNDED_COMPLAINTS:
    return vd_history_count_complaints(r, VD_COMPLAINTS_REFUNDED, a, b,
                                       since_ms, until_ms, count);
  }
  return VD_EINVALID;
}
