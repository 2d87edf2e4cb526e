/*
 * history_find.c - one recorded decision by its id, on a kept read-only
 * connection (vd_history_finder_t, history.h): what GET /v1/decisions/{id}
 * reads, without opening the database for every lookup.
 *
 * Owns the finder: for SQLite its connection (vd_history_db_open_ro()),
 * its one prepared statement and a copy of the last row found; for
 * PostgreSQL the backend's finder (history_pg.c).  A connection that
 * fails is dropped and opened again, once, within the same call.
 *
 * Invariants: no statement is left stepped between calls (the row is
 * copied out and the statement reset), so a finder never holds a read
 * transaction that would keep the writer's WAL from being checkpointed.
 *
 * Threads: the caller's; a finder belongs to one thread at a time.
 */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"

struct vd_history_finder {
  char *path;                /* the db string */
  int used;                  /* the connection answered a lookup before */
  sqlite3 *db;               /* SQLite: the connection, or NULL */
  sqlite3_stmt *st;          /*   SELECT ... WHERE decision_id = ? */
  vd_hist_pg_finder_t *pg;   /* PostgreSQL: the backend's finder */
  vd_buf_t copy;             /* the row's texts, each NUL-ended */
  vd_history_value_t row[VD_HISTORY_NCOLUMNS];
};

static void drop_connection(vd_history_finder_t *f) {
  sqlite3_finalize(f->st);
  sqlite3_close(f->db);
  vd_hist_pg_finder_close(f->pg);
  f->st = NULL;
  f->db = NULL;
  f->pg = NULL;
  f->used = 0;
}

static int connect_store(vd_history_finder_t *f, vd_buf_t *err) {
  int rc;
  if (vd_history_is_postgres(f->path))
    return vd_hist_pg_finder_open(&f->pg, f->path, err);
  rc = vd_history_db_open_ro(&f->db, f->path, err);
  if (rc == 0 &&
      (rc = sqlite3_prepare_v3(f->db,
                               "SELECT " READ_COLUMNS " FROM decisions"
                               " WHERE decision_id = ? ORDER BY seq LIMIT 1",
                               -1, SQLITE_PREPARE_PERSISTENT, &f->st,
                               NULL)) != SQLITE_OK)
    rc = vd_hist_db_err(err, f->path, f->db, rc, "preparing a lookup");
  if (rc)
    drop_connection(f);
  return rc;
}

int vd_history_finder_open(vd_history_finder_t **out, const char *db_path,
                           vd_buf_t *err) {
  vd_history_finder_t *f = calloc(1, sizeof *f);
  int rc;
  *out = NULL;
  if (!f || !(f->path = strdup(db_path))) {
    free(f);
    vd_buf_reset(err);
    vd_buf_adds(err, "out of memory");
    return VD_ENOMEM;
  }
  vd_buf_init(&f->copy);
  if ((rc = connect_store(f, err)) != 0) {
    vd_history_finder_close(f);
    return rc;
  }
  *out = f;
  return 0;
}

void vd_history_finder_close(vd_history_finder_t *f) {
  if (!f)
    return;
  drop_connection(f);
  vd_buf_release(&f->copy);
  free(f->path);
  free(f);
}

/* The SQLite lookup: the row copied into f->row. */
static int find_sqlite(vd_history_finder_t *f, const char *decision_id,
                       vd_buf_t *err) {
  size_t off[VD_HISTORY_NCOLUMNS];
  int i, rc;
  sqlite3_bind_text(f->st, 1, decision_id, -1, SQLITE_STATIC);
  rc = sqlite3_step(f->st);
  if (rc == SQLITE_ROW) {
    vd_buf_reset(&f->copy);
    for (i = 0; i < VD_HISTORY_NCOLUMNS; i++) {
      vd_history_value_t *v = &f->row[i];
      const char *t;
      v->is_int = sqlite3_column_type(f->st, i) == SQLITE_INTEGER;
      v->i = sqlite3_column_int64(f->st, i);
      t = (const char *)sqlite3_column_text(f->st, i);
      v->len = t ? (size_t)sqlite3_column_bytes(f->st, i) : 0;
      off[i] = f->copy.len;
      v->text = t; /* pointed into the copy below, once it stops moving */
      if (t) {
        vd_buf_add(&f->copy, t, v->len);
        vd_buf_add(&f->copy, "", 1);
      }
    }
    for (i = 0; i < VD_HISTORY_NCOLUMNS; i++)
      if (f->row[i].text)
        f->row[i].text = f->copy.data + off[i];
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    rc = vd_hist_db_err(err, f->path, f->db, rc, "looking a decision up");
  else
    rc = rc == SQLITE_ROW;
  sqlite3_reset(f->st);
  sqlite3_clear_bindings(f->st);
  return rc;
}

int vd_history_find(vd_history_finder_t *f, const char *decision_id,
                    const vd_history_value_t **row, vd_buf_t *err) {
  int attempt, rc = 0;
  *row = NULL;
  for (attempt = 0; attempt < 2; attempt++) {
    int reused = f->used;
    if (!f->db && !f->pg && (rc = connect_store(f, err)) != 0)
      return rc;
    if (f->pg)
      rc = vd_hist_pg_find(f->pg, decision_id, row, err);
    else if ((rc = find_sqlite(f, decision_id, err)) == 1)
      *row = f->row;
    if (rc >= 0) {
      f->used = 1;
      return rc;
    }
    drop_connection(f); /* opened again next time, or now */
    if (!reused)
      break;
  }
  return rc;
}
