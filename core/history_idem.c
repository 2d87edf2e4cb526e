/*
 * history_idem.c - idempotency keys kept in the SQLite history, so that a
 * retry after a restart is answered from the first request
 * (docs/protocol.md, "Idempotency keys").
 *
 * Owns the SQL of the `idempotency` table (schema 6, history_db.c): the
 * writer's insert, run by write_batch (history_writer.c) in the same
 * transaction as the record the key belongs to, so a durable
 * acknowledgement implies the key is stored; the start-up load; and the
 * sweep that deletes keys past VD_HISTORY_IDEM_WINDOW_MS.
 *
 * Threads: prepare and put on the writer's connection (h->db, the writer
 * thread once it runs), sweep on the writer thread between batches, load
 * on the main thread through the auxiliary connection (h->aux, under
 * aux_mu) before the daemon serves.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"

/* A sweep deletes at most this many keys, so that it never holds the
 * write lock long; a backlog goes over the next sweeps. */
#define SWEEP_ROWS 5000

int vd_hist_sqlite_idem_prepare(vd_history_t *h, vd_buf_t *err) {
  static const char put[] =
      "INSERT OR REPLACE INTO idempotency"
      " (key, digest, decision_id, received_ms, code, answer)"
      " VALUES (?, ?, ?, ?, ?, ?)";
  int rc = sqlite3_prepare_v3(h->db, put, -1, SQLITE_PREPARE_PERSISTENT,
                              &h->st_idem, NULL);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->db, rc, "preparing statements");
  return 0;
}

int vd_hist_sqlite_idem_put(vd_history_t *h, const vd_hist_qrec_t *q,
                            vd_buf_t *err) {
  sqlite3_stmt *st = h->st_idem;
  int rc;
  sqlite3_bind_text(st, 1, q->idem_key, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, q->idem_digest, sizeof q->idem_digest,
                    SQLITE_STATIC);
  sqlite3_bind_text64(st, 3, q->f[COL_DECISION_ID].p,
                      q->f[COL_DECISION_ID].n, SQLITE_STATIC, SQLITE_UTF8);
  sqlite3_bind_int64(st, 4, q->f[COL_RECEIVED_MS].i);
  if (q->idem_code)
    sqlite3_bind_text(st, 5, vd_err_name(q->idem_code), -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 5);
  sqlite3_bind_text64(st, 6, q->idem_answer, q->idem_answer_len,
                      SQLITE_STATIC, SQLITE_UTF8);
  rc = sqlite3_step(st);
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return vd_hist_db_err(err, h->path, h->db, rc,
                          "storing an idempotency key");
  return 0;
}

int vd_hist_sqlite_idem_sweep(vd_history_t *h, int64_t before_ms,
                              vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      h->db,
      "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
      " WHERE received_ms < ? ORDER BY received_ms LIMIT ?)",
      -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int(st, 2, SWEEP_ROWS);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
      rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->db, rc,
                          "deleting expired idempotency keys");
  return 0;
}

int vd_hist_sqlite_idem_load(vd_history_t *h, int64_t since_ms,
                             void (*cb)(const vd_history_idem_t *k,
                                        void *arg),
                             void *arg, vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int rc;
  pthread_mutex_lock(&h->aux_mu);
  rc = sqlite3_prepare_v2(h->aux,
                          "SELECT key, digest, decision_id, received_ms,"
                          " code, answer FROM idempotency"
                          " WHERE received_ms >= ? ORDER BY received_ms",
                          -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, since_ms);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      vd_history_idem_t k;
      const char *code = (const char *)sqlite3_column_text(st, 4);
      k.key = (const char *)sqlite3_column_text(st, 0);
      k.digest = sqlite3_column_blob(st, 1);
      k.decision_id = (const char *)sqlite3_column_text(st, 2);
      k.received_ms = sqlite3_column_int64(st, 3);
      k.code = code ? vd_err_from_name(code) : 0;
      k.answer = (const char *)sqlite3_column_text(st, 5);
      k.answer_len = (size_t)sqlite3_column_bytes(st, 5);
      /* a row someone altered by hand is skipped, not trusted */
      if (!k.key || !k.answer || !k.decision_id ||
          sqlite3_column_bytes(st, 1) != 32 || (code && k.code == 0))
        continue;
      cb(&k, arg);
    }
    if (rc == SQLITE_DONE)
      rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK)
    rc = vd_hist_db_err(err, h->path, h->aux, rc,
                        "reading the idempotency keys");
  sqlite3_finalize(st);
  pthread_mutex_unlock(&h->aux_mu);
  return rc;
}

int vd_history_idem_load(vd_history_t *h, int64_t since_ms,
                         void (*cb)(const vd_history_idem_t *k, void *arg),
                         void *arg, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = 0;
  if (errmsg)
    *errmsg = NULL;
  if (h->mode != VD_LOG_OFF && h->be->idem_load)
    rc = h->be->idem_load(h, since_ms, cb, arg, &err);
  return vd_hist_give_err(errmsg, &err, rc);
}
