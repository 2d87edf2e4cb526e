/*
 * history_writer.c - recording decisions: the queue, the writer thread and
 * its group commit, completions per worker (drain), and the three log
 * modes (durable, async, off).  Also vd_history_open() and
 * vd_history_close(), which build and tear down the whole vd_history_t.
 *
 * Owns the vd_history_t: its writer connection and prepared statements,
 * the queue of records, the lanes (one per worker), the writer thread;
 * and, for history_revs.c, the auxiliary connection it opens and closes.
 *
 * Threads: vd_history_submit() and vd_history_drain() run on worker
 * threads, the batch loop (writer_main) on the writer thread, open and
 * close on the daemon's main thread.  `mu` guards the queue, `stopping`
 * and every lane (a worker's sequence counter and its completed ranges);
 * the writer holds it only to take the queue and to publish completions,
 * never across disk I/O.  Fields marked "writer" in struct vd_history
 * (history_int.h) are touched by the writer thread alone once it runs.
 *
 * Invariants:
 *   - queue order is submission order, and a worker's sequence numbers are
 *     handed out under `mu` as its records are queued, so each batch holds
 *     one contiguous range per worker;
 *   - every submission ends in exactly one published range;
 *   - decisions.seq grows by one per row and each row's hash continues the
 *     chain (history_chain.c) from chain_head, read and updated inside the
 *     same write transaction, so a rolled-back batch leaves no trace in
 *     the chain;
 *   - durable mode commits with synchronous=FULL, async with NORMAL (a
 *     power cut may lose the last batches, never corrupt the chain); off
 *     writes no decision and reports each done at once;
 *   - checkpoints run on a thread of their own (the checkpointer, below),
 *     never inside a batch; the writer runs one only between batches,
 *     when the WAL has passed WAL_MAX_PAGES.
 */
#include <limits.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/metrics.h"
#include "verdict/timefmt.h"

const char *vd_history_mode_name(vd_log_mode_t m) {
  switch (m) {
  case VD_LOG_DURABLE: return "durable";
  case VD_LOG_ASYNC: return "async";
  case VD_LOG_OFF: return "off";
  }
  return "?";
}

int vd_history_mode_parse(const char *s, vd_log_mode_t *m) {
  vd_log_mode_t i;
  for (i = VD_LOG_DURABLE; i <= VD_LOG_OFF; i++)
    if (s && strcmp(s, vd_history_mode_name(i)) == 0) {
      *m = i;
      return 0;
    }
  return VD_EINVALID;
}

/* Under mu: append a finished range to a lane, merging with the last one
 * when it continues it.  A lane that cannot grow would leave a worker
 * waiting forever, so running out of memory here aborts, as vd_buf does. */
static void lane_push(vd_hist_lane_t *l, uint64_t first, uint64_t last,
                      int status) {
  vd_history_done_t *d = l->ndone ? &l->done[l->ndone - 1] : NULL;
  if (d && d->status == status && d->last + 1 == first) {
    d->last = last;
    return;
  }
  if (l->ndone == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    d = realloc(l->done, cap * sizeof *d);
    if (!d) {
      fprintf(stderr, "verdict: history: out of memory recording a "
                      "completion\n");
      abort();
    }
    l->done = d;
    l->cap = cap;
  }
  l->done[l->ndone].first = first;
  l->done[l->ndone].last = last;
  l->done[l->ndone].status = status;
  l->ndone++;
}

/* Where the chain continues: the next seq and the previous hash, read in
 * the batch's write transaction.  chain_head is the authority; should it
 * have been tampered with, writing continues past the last row anyway so
 * the daemon keeps recording (and verify reports the damage). */
static int read_head(vd_history_t *h, int64_t *next, uint8_t prev[32],
                     vd_buf_t *err) {
  sqlite3_stmt *st = h->st_head_get;
  int64_t head_seq, max_seq;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return vd_hist_db_err(err, h->path, h->db, rc, "reading the chain head");
  }
  head_seq = sqlite3_column_int64(st, 0);
  max_seq = sqlite3_column_int64(st, 2);
  *next = (head_seq > max_seq ? head_seq : max_seq) + 1;
  if (sqlite3_column_type(st, 1) != SQLITE_NULL)
    rc = vd_hist_from_hex((const char *)sqlite3_column_text(st, 1),
                  (size_t)sqlite3_column_bytes(st, 1), prev);
  else if (sqlite3_column_type(st, 3) != SQLITE_NULL)
    rc = vd_hist_from_hex((const char *)sqlite3_column_text(st, 3),
                  (size_t)sqlite3_column_bytes(st, 3), prev);
  else
    rc = (memset(prev, 0, 32), 0);
  sqlite3_reset(st);
  if (rc) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': chain_head.hash is not 64 hex "
                     "digits; run `verdict history verify`",
                h->path);
    return VD_EINVALID;
  }
  return 0;
}

/* Step a statement that returns no row (BEGIN, COMMIT) and reset it. */
static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The number revision_numbers gives revision REV (N bytes), added if it
 * has none yet, inside the batch's transaction (schema 8). */
static int revision_number(vd_history_t *h, const char *rev, size_t n,
                           int64_t *num) {
  int rc;
  sqlite3_bind_text64(h->st_rev_put, 1, rev, n, SQLITE_STATIC, SQLITE_UTF8);
  rc = step_done(h->st_rev_put);
  if (rc != SQLITE_OK)
    return rc;
  sqlite3_bind_text64(h->st_rev_get, 1, rev, n, SQLITE_STATIC, SQLITE_UTF8);
  rc = sqlite3_step(h->st_rev_get);
  if (rc == SQLITE_ROW) {
    *num = sqlite3_column_int64(h->st_rev_get, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_CORRUPT; /* inserted a moment ago */
  }
  sqlite3_reset(h->st_rev_get);
  return rc;
}

/* Store Q's trace in `traces` unless it is there (schema 9). */
static int put_trace(vd_history_t *h, const vd_hist_qrec_t *q) {
  const vd_hist_field_t *t = &q->f[COL_TRACE];
  sqlite3_bind_blob(h->st_trace_put, 1, q->trace_sha, 32, SQLITE_STATIC);
  sqlite3_bind_text64(h->st_trace_put, 2, t->p, t->n, SQLITE_STATIC,
                      SQLITE_UTF8);
  return step_done(h->st_trace_put);
}

/* Parameters a row takes in the insert statements: seq, the columns,
 * hash, personal_salt, revision_n, trace_sha. */
#define ROW_PARAMS (NCOLS + 5)

/* Rows a statement of st_insert_group inserts.  One row a statement, the
 * table and each of its eight indexes are opened, searched from the root
 * and closed again for every record; sixteen rows a statement open them
 * once and find each next key's place from where the last one went
 * (SQLite's b-tree tries the cursor's last page first).  The writer's CPU
 * a record at P16 went from about 11.6 to 8.7 us (docs/performance.md,
 * "Twelfth round"). */
#define INSERT_GROUP 16

/* Bind Q's row as row J (0-based) of ST: its trace by key (trace_sha; the
 * trace column NULL); REV_N: its revision's number, -1 for none.  Every
 * parameter is bound for each row, so none is cleared.  HASH must live
 * until ST is stepped. */
static void bind_row(sqlite3_stmt *st, int j, int64_t seq,
                     const vd_hist_qrec_t *q, const char *hash,
                     int64_t rev_n) {
  const vd_hist_field_t *f = q->f;
  int i, b = j * ROW_PARAMS + 1;
  sqlite3_bind_int64(st, b, seq);
  for (i = 0; i < NCOLS; i++) {
    if (i == COL_TRACE)
      sqlite3_bind_null(st, b + i + 1);
    else if (f[i].is_int)
      sqlite3_bind_int64(st, b + i + 1, f[i].i);
    else if (!f[i].p)
      sqlite3_bind_null(st, b + i + 1);
    else
      sqlite3_bind_text64(st, b + i + 1, f[i].p, f[i].n, SQLITE_STATIC,
                          SQLITE_UTF8);
  }
  sqlite3_bind_text(st, b + NCOLS + 1, hash, 64, SQLITE_STATIC);
  sqlite3_bind_text(st, b + NCOLS + 2, q->salt, VD_HIST_SALT_HEX,
                    SQLITE_STATIC);
  if (rev_n < 0)
    sqlite3_bind_null(st, b + NCOLS + 3);
  else
    sqlite3_bind_int64(st, b + NCOLS + 3, rev_n);
  if (f[COL_TRACE].p)
    sqlite3_bind_blob(st, b + NCOLS + 4, q->trace_sha, 32, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, b + NCOLS + 4);
}

/* Step ST, whose rows are all bound. */
static int insert_rows(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Slots of write_batch()'s memory of the traces it has stored. */
#define TRACE_SLOTS 64

/* One transaction for the whole batch: continue the chain, insert every
 * record, move the head, commit.  On failure everything is rolled back
 * and ERR says why. */
static int write_batch(vd_history_t *h, vd_hist_qrec_t *list, vd_buf_t *err) {
  uint8_t prev[32], cur[32];
  char hex[65];
  int64_t seq = 0, rev_n = -1;
  const vd_hist_field_t *rev = NULL; /* the last revision numbered */
  /* the traces this batch has stored, by their key's first byte: a
   * record whose trace is here skips the INSERT OR IGNORE.  For this
   * batch only, so a rolled-back batch leaves nothing to forget. */
  const uint8_t *stored[TRACE_SLOTS] = {NULL};
  /* the hashes of the rows bound to st_insert_group, until it is run */
  char hexes[INSERT_GROUP][65];
  size_t k = 0, grouped = 0; /* the record's place; records in full groups */
  vd_hist_qrec_t *q;
  int rc;
  /* A ROLLBACK that failed (it needs memory to run) left the last failed
   * batch's transaction open; end it, or every batch from now on would
   * fail to begin. */
  if (!sqlite3_get_autocommit(h->db))
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
  rc = step_done(h->st_begin);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->db, rc, "starting a batch");
  rc = read_head(h, &seq, prev, err);
  if (rc)
    goto rollback;
  for (q = list; q; q = q->next)
    grouped++;
  grouped -= grouped % INSERT_GROUP;
  /* schema 5: the salt, the personal digest and every byte after the seq
   * were made when the record was submitted (vd_history_submit()); here
   * only what needs the chain: seq and the previous hash */
  for (q = list; q; q = q->next, seq++, k++) {
    vd_hist_chain_hash_tail(prev, seq, q->tail, q->ntail, cur);
    rc = SQLITE_OK;
    /* a batch's records nearly all name one revision: looked up once */
    if (q->f[COL_REVISION].p &&
        (!rev || rev->n != q->f[COL_REVISION].n ||
         memcmp(rev->p, q->f[COL_REVISION].p, rev->n) != 0)) {
      rev = &q->f[COL_REVISION];
      rc = revision_number(h, rev->p, rev->n, &rev_n);
    }
    if (rc == SQLITE_OK && q->f[COL_TRACE].p) {
      const uint8_t **slot = &stored[q->trace_sha[0] % TRACE_SLOTS];
      if (!*slot || memcmp(*slot, q->trace_sha, 32) != 0) {
        rc = put_trace(h, q);
        *slot = q->trace_sha;
      }
    }
    /* A row of a full group is bound at its place in st_insert_group,
     * which runs with the group's last; the rows past the last full
     * group go in one a statement. */
    if (rc == SQLITE_OK) {
      int64_t n = q->f[COL_REVISION].p ? rev_n : -1;
      if (k < grouped) {
        int j = (int)(k % INSERT_GROUP);
        vd_hist_to_hex(cur, sizeof cur, hexes[j]);
        bind_row(h->st_insert_group, j, seq, q, hexes[j], n);
        if (j == INSERT_GROUP - 1)
          rc = insert_rows(h->st_insert_group);
      } else {
        vd_hist_to_hex(cur, sizeof cur, hex);
        bind_row(h->st_insert, 0, seq, q, hex, n);
        rc = insert_rows(h->st_insert);
      }
    }
    if (rc != SQLITE_OK) {
      rc = vd_hist_db_err(err, h->path, h->db, rc, "inserting a decision");
      goto rollback;
    }
    if (q->idem_key && (rc = vd_hist_sqlite_idem_put(h, q, err)) != 0)
      goto rollback;
    memcpy(prev, cur, sizeof prev);
  }
  vd_hist_to_hex(prev, sizeof prev, hex);
  sqlite3_bind_int64(h->st_head_set, 1, seq - 1);
  sqlite3_bind_text(h->st_head_set, 2, hex, 64, SQLITE_STATIC);
  rc = sqlite3_step(h->st_head_set);
  sqlite3_reset(h->st_head_set);
  if (rc != SQLITE_DONE) {
    rc = vd_hist_db_err(err, h->path, h->db, rc, "moving the chain head");
    goto rollback;
  }
  rc = step_done(h->st_commit);
  if (rc != SQLITE_OK) {
    rc = vd_hist_db_err(err, h->path, h->db, rc, "committing a batch");
    goto rollback;
  }
  return 0;
rollback:
  if (!sqlite3_get_autocommit(h->db))
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* Say when writing starts failing and when it works again, not once per
 * batch, through the log function if one is set. */
static void say(vd_history_t *h, const char *event, int failing,
                const char *fmt, ...) {
  vd_history_log_cb cb;
  void *arg;
  char line[512];
  va_list ap;
  pthread_mutex_lock(&h->mu);
  cb = h->log;
  arg = h->log_arg;
  pthread_mutex_unlock(&h->mu);
  if (!cb)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  cb(event, failing, line, arg);
}

static void log_outcome(vd_history_t *h, int rc, size_t n, const char *why) {
  if (rc) {
    if (h->fail_batches++ == 0)
      say(h, "history_write_failed", 1,
          h->mode == VD_LOG_DURABLE
              ? "a batch of %zu records was not stored: %s; their requests "
                "fail with `internal` until writing works again"
              : "a batch of %zu records was not stored: %s; their answers "
                "went out already (--log-mode async): the records are lost, "
                "and so are those of every batch until writing works again",
          n, why);
    h->fail_records += n;
  } else if (h->fail_batches) {
    say(h, "history_write_recovered", 0,
        "writing works again after %lu failed batches (%lu records not "
        "stored)",
        h->fail_batches, h->fail_records);
    h->fail_batches = h->fail_records = 0;
  }
}

void vd_history_set_log(vd_history_t *h, vd_history_log_cb cb, void *arg) {
  pthread_mutex_lock(&h->mu);
  h->log = cb;
  h->log_arg = arg;
  pthread_mutex_unlock(&h->mu);
}

int vd_history_set_metrics(vd_history_t *h, vd_metrics_t *m) {
  vd_metrics_shard_t *s;
  vd_metrics_series_t *depth, *commit, *batch;
  if (vd_metrics_shard_new(m, &s))
    return VD_ENOMEM;
  depth = vd_metrics_series(s, VD_M_QUEUE_DEPTH, NULL);
  commit = vd_metrics_series(s, VD_M_COMMIT_SECONDS, NULL);
  batch = vd_metrics_series(s, VD_M_BATCH_RECORDS, NULL);
  if (!depth || !commit || !batch)
    return VD_ENOMEM;
  pthread_mutex_lock(&h->mu);
  h->m_depth = depth;
  h->m_commit = commit;
  h->m_batch = batch;
  vd_metrics_series_set(depth, (int64_t)h->qcount);
  pthread_mutex_unlock(&h->mu);
  return 0;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Delete idempotency keys past their window, at most once every
 * VD_HISTORY_IDEM_SWEEP_MS (writer thread, between batches).  A failure
 * is tried again at the next sweep; the keys only take room meanwhile. */
static void idem_sweep(vd_history_t *h) {
  vd_buf_t err = VD_BUF_INIT;
  int64_t now = vd_now_ms();
  if (!h->be->idem_sweep || now - h->idem_swept_ms < VD_HISTORY_IDEM_SWEEP_MS)
    return;
  h->idem_swept_ms = now;
  h->be->idem_sweep(h, now - VD_HISTORY_IDEM_WINDOW_MS, &err);
  vd_buf_release(&err);
}

/* Under mu: what vd_history_health() answers from now on. */
static void set_health(vd_history_t *h, int rc, const char *why) {
  h->health = rc ? (rc == VD_ENOMEM ? rc : VD_EIO) : 0;
  snprintf(h->health_why, sizeof h->health_why, "%s",
           rc && why ? why : "");
}

int vd_history_health(vd_history_t *h, char *why, size_t n) {
  int rc;
  pthread_mutex_lock(&h->mu);
  rc = h->health;
  if (n)
    snprintf(why, n, "%s", rc ? h->health_why : "");
  pthread_mutex_unlock(&h->mu);
  return rc;
}

/* Writer thread, under mu, nothing queued: wait for a record; with a
 * backend that can be checked, check it after VD_HISTORY_PROBE_MS of
 * waiting (outside mu), saying when it starts and stops failing. */
static void idle_wait(vd_history_t *h, vd_buf_t *err) {
  struct timespec ts;
  int rc;
  if (!h->be->probe) {
    pthread_cond_wait(&h->wake, &h->mu);
    return;
  }
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += VD_HISTORY_PROBE_MS / 1000;
  ts.tv_nsec += (long)(VD_HISTORY_PROBE_MS % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  if (pthread_cond_timedwait(&h->wake, &h->mu, &ts) != ETIMEDOUT ||
      h->qhead || h->stopping)
    return;
  pthread_mutex_unlock(&h->mu);
  rc = h->be->probe(h, err);
  if (rc && !h->probe_failing)
    say(h, "history_unavailable", 1,
        "the database cannot take records: %s; requests fail with "
        "`internal` until it can", err->data);
  else if (!rc && h->probe_failing)
    say(h, "history_available", 0, "the database takes records again");
  h->probe_failing = rc != 0;
  pthread_mutex_lock(&h->mu);
  set_health(h, rc, err->data);
}

/* Under mu: cut the next batch off the queue, its oldest
 * VD_HISTORY_BATCH_MAX records (all of them when there are no more).  A
 * prefix of the queue holds a prefix of each worker's records, so each
 * worker's part of a batch is still one range of its sequence numbers. */
static vd_hist_qrec_t *take_batch(vd_history_t *h) {
  vd_hist_qrec_t *list = h->qhead, *last = list;
  size_t n = 1, bytes = list->size;
  if (h->qcount <= VD_HISTORY_BATCH_MAX) { /* the whole queue */
    h->qhead = NULL;
    h->qtail = &h->qhead;
    h->qcount = h->qbytes = 0;
    return list;
  }
  while (n < VD_HISTORY_BATCH_MAX) {
    last = last->next;
    bytes += last->size;
    n++;
  }
  h->qhead = last->next;
  last->next = NULL;
  h->qcount -= n;
  h->qbytes -= bytes;
  return list;
}

static void *writer_main(void *arg) {
  vd_history_t *h = arg;
  vd_buf_t err = VD_BUF_INIT;
  pthread_setname_np(pthread_self(), "vd-writer"); /* top -H, perf */
  pthread_mutex_lock(&h->mu);
  for (;;) {
    vd_hist_qrec_t *list, *q, *next;
    vd_metrics_series_t *m_commit, *m_batch;
    size_t n = 0, ntouched = 0, i;
    uint64_t t0;
    int rc;
    while (!h->qhead && !h->stopping)
      idle_wait(h, &err);
    if (!h->qhead)
      break; /* stopping, and everything is written */
    while (h->aux_waiting) /* an activation or revision goes first */
      pthread_cond_wait(&h->aux_done, &h->mu);
    list = take_batch(h);
    vd_metrics_series_set(h->m_depth, (int64_t)h->qcount);
    m_commit = h->m_commit;
    m_batch = h->m_batch;
    pthread_cond_broadcast(&h->room);
    pthread_mutex_unlock(&h->mu);

    for (q = list; q; q = q->next, n++) {
      vd_hist_lane_t *l = &h->lanes[q->worker];
      if (!l->batch_first) {
        l->batch_first = q->wseq;
        h->touched[ntouched++] = q->worker;
      }
      l->batch_last = q->wseq;
    }
    t0 = mono_ns();
    rc = h->be->write_batch(h, list, &err);
    vd_metrics_series_observe(m_commit, mono_ns() - t0);
    vd_metrics_series_observe(m_batch, n);
    log_outcome(h, rc, n, err.data);
    for (q = list; q; q = next) {
      next = q->next;
      free(q);
    }

    if (rc == 0 && h->probe_failing) { /* back before the next check */
      say(h, "history_available", 0, "the database takes records again");
      h->probe_failing = 0;
    }
    pthread_mutex_lock(&h->mu);
    set_health(h, rc, err.data);
    for (i = 0; i < ntouched; i++) {
      vd_hist_lane_t *l = &h->lanes[h->touched[i]];
      lane_push(l, l->batch_first, l->batch_last, rc ? VD_EIO : 0);
      l->batch_first = l->batch_last = 0;
    }
    pthread_mutex_unlock(&h->mu);
    if (h->notify)
      for (i = 0; i < ntouched; i++)
        h->notify(h->touched[i], h->notify_arg);
    idem_sweep(h); /* after the acknowledgements: off their path */
    if (h->be->after_batch)
      h->be->after_batch(h);
    pthread_mutex_lock(&h->mu);
  }
  pthread_mutex_unlock(&h->mu);
  vd_buf_release(&err);
  return NULL;
}

/* *ST: an INSERT of ROWS decision rows (ROW_PARAMS parameters each, as
 * bind_row() binds them).  OR FAIL, not the default ABORT: ABORT undoes a
 * failing statement's earlier rows, which makes SQLite keep a statement
 * journal of every page a many-row statement changes; a failure here
 * rolls the whole batch back anyway (write_batch()). */
static int prepare_insert(vd_history_t *h, int rows, sqlite3_stmt **st) {
  vd_buf_t sql = VD_BUF_INIT;
  int j, rc;
  vd_buf_adds(&sql, "INSERT OR FAIL INTO decisions (" ALL_COLUMNS
                    ", personal_salt, revision_n, trace_sha) VALUES ");
  for (j = 0; j < rows; j++)
    vd_buf_adds(&sql, j ? ", (" ALL_PARAMS ", ?, ?, ?)"
                        : "(" ALL_PARAMS ", ?, ?, ?)");
  rc = sqlite3_prepare_v3(h->db, sql.data, (int)sql.len,
                          SQLITE_PREPARE_PERSISTENT, st, NULL);
  vd_buf_release(&sql);
  return rc;
}

static int prepare_writer(vd_history_t *h, vd_buf_t *err) {
  static const char head_get[] =
      "SELECT h.seq, h.hash, (SELECT max(seq) FROM decisions),"
      "       (SELECT hash FROM decisions ORDER BY seq DESC LIMIT 1)"
      "  FROM (SELECT 1) LEFT JOIN chain_head h ON h.id = 1";
  static const char trace_put[] =
      "INSERT OR IGNORE INTO traces (sha256, trace) VALUES (?, ?)";
  static const char rev_put[] =
      "INSERT OR IGNORE INTO revision_numbers (revision) VALUES (?)";
  static const char rev_get[] =
      "SELECT n FROM revision_numbers WHERE revision = ?";
  static const char head_set[] =
      "INSERT OR REPLACE INTO chain_head (id, seq, hash) VALUES (1, ?, ?)";
  int rc = sqlite3_prepare_v3(h->db, head_get, -1, SQLITE_PREPARE_PERSISTENT,
                              &h->st_head_get, NULL);
  if (rc == SQLITE_OK)
    rc = prepare_insert(h, 1, &h->st_insert);
  if (rc == SQLITE_OK)
    rc = prepare_insert(h, INSERT_GROUP, &h->st_insert_group);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, head_set, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_head_set, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, rev_put, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_rev_put, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, rev_get, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_rev_get, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, trace_put, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_trace_put, NULL);
  /* Each batch's BEGIN and COMMIT, prepared here rather than parsed by
   * sqlite3_exec() for every batch. */
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, "BEGIN IMMEDIATE", -1,
                            SQLITE_PREPARE_PERSISTENT, &h->st_begin, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_commit, NULL);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->db, rc, "preparing statements");
  return vd_hist_sqlite_idem_prepare(h, err);
}

/* ========================================================================
 * Checkpoints, off the writer thread
 * ====================================================================== */

/* A checkpoint copies the pages committed to the WAL into the database
 * file and fsyncs it.  SQLite's automatic one ran on the writer thread,
 * inside the commit that took the WAL past 1,000 pages, while every
 * worker waited on that batch.  Here the writer's connection has none:
 * its WAL hook (run after each commit, on the writer thread) wakes the
 * checkpointer, a thread with a connection of its own, each time the WAL
 * has grown by CKPT_PAGES since the last checkpoint, and the checkpointer
 * runs a PASSIVE one, which takes no write lock: the writer goes on
 * committing beside it.
 *
 * A passive checkpoint copies what was committed when it started.  While
 * the writer keeps committing, the WAL is never wholly copied, so it never
 * starts again from its beginning and would grow without end.  The bound:
 * after a batch that leaves the WAL past WAL_MAX_PAGES, the writer waits
 * for a running checkpoint to end and runs one itself, between batches
 * (after their completions are published): nothing commits during it, so
 * it copies all the rest (all but what a reader still reads) and the next
 * batch's BEGIN starts the WAL from its beginning.  It copies only what
 * was committed since the checkpointer's last run, once per WAL_MAX_PAGES
 * instead of once per 1,000 pages.
 *
 * Durability does not change: a batch is acknowledged after its COMMIT,
 * whose WAL frames are fsynced first in durable mode (synchronous=FULL);
 * the checkpointer's connection has the writer's synchronous level, so
 * SQLite fsyncs the database file before it lets the WAL be reused. */
#define CKPT_PAGES 1000     /* SQLite's default wal_autocheckpoint */
#define WAL_MAX_PAGES 16384 /* journal_size_limit (64 MiB) in 4 KiB pages */

/* sqlite3_wal_hook: after each commit of the writer's connection, on the
 * writer thread; FRAMES is the WAL's size in pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  vd_history_t *h = arg;
  (void)db;
  (void)name;
  pthread_mutex_lock(&h->ck_mu);
  if (frames < h->ck_seen) /* the WAL started again from its beginning */
    h->ck_next = CKPT_PAGES;
  h->ck_seen = frames;
  if (frames >= h->ck_next && !h->ck_running) {
    h->ck_due = 1;
    pthread_cond_signal(&h->ck_wake);
  }
  pthread_mutex_unlock(&h->ck_mu);
  return SQLITE_OK;
}

static void *checkpointer_main(void *arg) {
  vd_history_t *h = arg;
  pthread_setname_np(pthread_self(), "vd-checkpoint"); /* top -H, perf */
  pthread_mutex_lock(&h->ck_mu);
  for (;;) {
    int log = -1, done = -1;
    while (!h->ck_due && !h->ck_stop)
      pthread_cond_wait(&h->ck_wake, &h->ck_mu);
    if (h->ck_stop)
      break;
    h->ck_due = 0;
    h->ck_running = 1;
    pthread_mutex_unlock(&h->ck_mu);
    /* A failure (another checkpoint running, a full disk) leaves the
     * pages in the WAL, where readers find them, for the next one. */
    sqlite3_wal_checkpoint_v2(h->ck_db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                              &log, &done);
    pthread_mutex_lock(&h->ck_mu);
    h->ck_running = 0;
    /* next one CKPT_PAGES on, unless the WAL started again meanwhile */
    h->ck_next = log >= 0 && h->ck_seen >= log && log < INT_MAX - CKPT_PAGES
                     ? log + CKPT_PAGES
                     : CKPT_PAGES;
    pthread_cond_broadcast(&h->ck_idle);
  }
  pthread_mutex_unlock(&h->ck_mu);
  return NULL;
}

/* after_batch of the SQLite backend: keep the WAL under WAL_MAX_PAGES. */
static void bound_wal(vd_history_t *h) {
  if (!h->has_ck)
    return;
  pthread_mutex_lock(&h->ck_mu);
  if (h->ck_seen < WAL_MAX_PAGES) {
    pthread_mutex_unlock(&h->ck_mu);
    return;
  }
  while (h->ck_running)
    pthread_cond_wait(&h->ck_idle, &h->ck_mu);
  /* only this thread's commits make one due: none starts until the next */
  h->ck_due = 0;
  pthread_mutex_unlock(&h->ck_mu);
  sqlite3_wal_checkpoint_v2(h->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                            NULL);
}

/* The checkpointer's connection and thread, and the writer's connection
 * handed over to them.  SYNC: the writer's synchronous level. */
static int checkpointer_start(vd_history_t *h, const char *sync,
                              vd_buf_t *err) {
  char sql[64];
  int rc = vd_hist_sqlite_open(h->path, &h->ck_db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(h->ck_db, 1);
    sqlite3_busy_timeout(h->ck_db, VD_HISTORY_BUSY_MS);
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %s", sync);
    rc = sqlite3_exec(h->ck_db, sql, NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->ck_db, rc,
                          "opening the checkpointer's connection");
  h->ck_next = CKPT_PAGES;
  if (pthread_create(&h->ck_thread, NULL, checkpointer_main, h) != 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': cannot start the "
                     "checkpointer thread", h->path);
    return VD_EIO;
  }
  h->has_ck = 1;
  sqlite3_wal_autocheckpoint(h->db, 0);
  sqlite3_wal_hook(h->db, wal_hook, h);
  return 0;
}

static void checkpointer_stop(vd_history_t *h) {
  if (h->has_ck) {
    pthread_mutex_lock(&h->ck_mu);
    h->ck_stop = 1;
    pthread_cond_signal(&h->ck_wake);
    pthread_mutex_unlock(&h->ck_mu);
    pthread_join(h->ck_thread, NULL);
    h->has_ck = 0;
  }
  sqlite3_close(h->ck_db);
  h->ck_db = NULL;
}

/* The SQLite file: the one-writer lock, the writer's connection and its
 * statements, the auxiliary connection, and the
 * checkpointer when decisions are written. */
static int sqlite_open(vd_history_t *h, vd_buf_t *err) {
  const char *sync = h->mode == VD_LOG_DURABLE ? "FULL" : "NORMAL";
  int rc;
  if (h->node) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': --node-id is for a PostgreSQL "
                     "history shared by a fleet (--db postgresql://...)",
                h->path);
    return VD_EINVALID;
  }
  rc = vd_hist_check_path(h->path, 1, err);
  if (rc == 0)
    rc = vd_hist_open_writer(&h->db, &h->lock_fd, h->path, sync, err);
  if (rc == 0)
    rc = prepare_writer(h, err);
  h->tail_on_submit = 1;
  if (rc == 0)
    rc = vd_hist_open_aux(&h->aux, h->path, err);
  if (rc == 0 && h->mode != VD_LOG_OFF)
    rc = checkpointer_start(h, sync, err);
  return rc;
}

static void sqlite_close(vd_history_t *h) {
  checkpointer_stop(h); /* its thread is gone before the connections */
  sqlite3_finalize(h->st_head_get);
  sqlite3_finalize(h->st_insert);
  sqlite3_finalize(h->st_insert_group);
  sqlite3_finalize(h->st_head_set);
  sqlite3_finalize(h->st_rev_put);
  sqlite3_finalize(h->st_rev_get);
  sqlite3_finalize(h->st_trace_put);
  sqlite3_finalize(h->st_begin);
  sqlite3_finalize(h->st_commit);
  sqlite3_finalize(h->st_idem);
  sqlite3_close(h->db);
  sqlite3_close(h->aux);
  if (h->lock_fd >= 0)
    close(h->lock_fd); /* after the connections: the lock covers them */
  h->lock_fd = -1;
}

const vd_hist_backend_t vd_hist_sqlite_backend = {
    "sqlite", sqlite_open, write_batch, sqlite_close,
    vd_hist_sqlite_store_revision, vd_hist_sqlite_record_activation,
    vd_hist_sqlite_idem_load, vd_hist_sqlite_idem_sweep,
    bound_wal,
    NULL, /* judged by its batches */
};

/* Free H and whatever it holds; the writer thread is not running. */
static void history_free(vd_history_t *h) {
  unsigned i;
  vd_hist_qrec_t *q, *next;
  if (h->be)
    h->be->close(h);
  for (q = h->qhead; q; q = next) {
    next = q->next;
    free(q);
  }
  if (h->lanes)
    for (i = 0; i < h->nworkers; i++)
      free(h->lanes[i].done);
  free(h->lanes);
  free(h->touched);
  free(h->path);
  free(h->node);
  pthread_cond_destroy(&h->wake);
  pthread_cond_destroy(&h->room);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->aux_mu);
  pthread_cond_destroy(&h->ck_wake);
  pthread_cond_destroy(&h->ck_idle);
  pthread_cond_destroy(&h->aux_done);
  pthread_mutex_destroy(&h->ck_mu);
  free(h);
}

int vd_history_open(vd_history_t **out, const char *path, vd_log_mode_t mode,
                    unsigned nworkers, vd_history_notify_cb cb, void *arg,
                    char **errmsg) {
  return vd_history_open_node(out, path, NULL, mode, nworkers, cb, arg,
                              errmsg);
}

int vd_history_open_node(vd_history_t **out, const char *path,
                         const char *node, vd_log_mode_t mode,
                         unsigned nworkers, vd_history_notify_cb cb,
                         void *arg, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  vd_history_t *h;
  int rc;
  *out = NULL;
  if (errmsg)
    *errmsg = NULL;
  if (nworkers == 0 || mode < VD_LOG_DURABLE || mode > VD_LOG_OFF) {
    vd_buf_adds(&err, "history: bad arguments (no workers, or no such mode)");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  h = calloc(1, sizeof *h);
  if (!h)
    return vd_hist_give_err(errmsg, &err, VD_ENOMEM);
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->aux_mu, NULL);
  {
    pthread_condattr_t ca; /* idle_wait()'s clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
  }
  pthread_cond_init(&h->room, NULL);
  pthread_mutex_init(&h->ck_mu, NULL);
  pthread_cond_init(&h->ck_wake, NULL);
  pthread_cond_init(&h->ck_idle, NULL);
  pthread_cond_init(&h->aux_done, NULL);
  h->qtail = &h->qhead;
  h->lock_fd = -1;
  h->mode = mode;
  h->nworkers = nworkers;
  h->notify = cb;
  h->notify_arg = arg;
  h->path = strdup(path);
  h->node = node ? strdup(node) : NULL;
  h->lanes = calloc(nworkers, sizeof *h->lanes);
  h->touched = calloc(nworkers, sizeof *h->touched);
  if (!h->path || (node && !h->node) || !h->lanes || !h->touched) {
    rc = VD_ENOMEM;
    goto fail;
  }
  h->be = vd_history_is_postgres(path) ? &vd_hist_pg_backend
                                       : &vd_hist_sqlite_backend;
  rc = h->be->open(h, &err);
  if (rc)
    goto fail;
  if (mode != VD_LOG_OFF) {
    if (pthread_create(&h->thread, NULL, writer_main, h) != 0) {
      vd_buf_reset(&err);
      vd_buf_addf(&err, "history database '%s': cannot start the writer "
                        "thread",
                  path);
      rc = VD_EIO;
      goto fail;
    }
    h->has_thread = 1;
  }
  *out = h;
  return vd_hist_give_err(errmsg, &err, 0);
fail:
  history_free(h);
  return vd_hist_give_err(errmsg, &err, rc);
}

void vd_hist_aux_lock(vd_history_t *h) {
  pthread_mutex_lock(&h->aux_mu);
  pthread_mutex_lock(&h->mu);
  h->aux_waiting++;
  pthread_mutex_unlock(&h->mu);
}

void vd_hist_aux_unlock(vd_history_t *h) {
  pthread_mutex_lock(&h->mu);
  if (--h->aux_waiting == 0)
    pthread_cond_broadcast(&h->aux_done);
  pthread_mutex_unlock(&h->mu);
  pthread_mutex_unlock(&h->aux_mu);
}

int vd_history_store_revision(vd_history_t *h, const char *revision,
                              const vd_bundle_file_t *files, size_t nfiles,
                              char **errmsg) {
  return h->be->store_revision(h, revision, files, nfiles, errmsg);
}

int vd_history_record_activation(vd_history_t *h, const char *revision,
                                 const char *trigger, const char *who,
                                 const char *source_dir, int ok,
                                 const char *error, char **errmsg) {
  return h->be->record_activation(h, revision, trigger, who, source_dir, ok,
                                  error, errmsg);
}

/* 16 random bytes as a record's salt, in hex and a NUL.  getrandom() once
 * per 64 records, into a buffer of each submitting thread's own. */
static int draw_salt(char salt[VD_HIST_SALT_HEX + 1]) {
  static _Thread_local uint8_t rnd[64 * 16];
  static _Thread_local size_t used = sizeof rnd;
  if (used == sizeof rnd) {
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
      return VD_EIO;
    used = 0;
  }
  vd_hist_to_hex(rnd + used, 16, salt);
  used += 16;
  return 0;
}

/* Traces up to this many bytes are remembered by trace_key(). */
#define TRACE_MEMO_MAX 4096

/* The trace's key in `traces`, its SHA-256, into OUT.  A worker decides
 * one request after another, and the same policy firing the same rules
 * gives the same trace, byte for byte (the bench sends one trace over
 * and over): each submitting thread remembers the last trace it hashed,
 * its bytes and its key, and a trace equal to it is compared, not hashed
 * again. */
static void trace_key(const char *p, size_t n, uint8_t out[32]) {
  static _Thread_local char memo[TRACE_MEMO_MAX];
  static _Thread_local size_t memo_n; /* 0: nothing remembered */
  static _Thread_local uint8_t memo_sha[32];
  if (memo_n && memo_n == n && memcmp(memo, p, n) == 0) {
    memcpy(out, memo_sha, 32);
    return;
  }
  vd_hist_sha256(p, n, out);
  if (n > 0 && n <= sizeof memo) {
    memcpy(memo, p, n);
    memcpy(memo_sha, out, 32);
    memo_n = n;
  }
}

int vd_history_submit(vd_history_t *h, unsigned worker, const vd_record_t *r,
                      uint64_t *seq) {
  vd_hist_field_t f[NCOLS];
  vd_hist_qrec_t *q;
  char salt[VD_HIST_SALT_HEX + 1], digest[65];
  uint8_t d[32];
  size_t size, ntail = 0;
  char *p;
  int i, rc;
  if (worker >= h->nworkers || !r->decision_id)
    return VD_EINVALID;
  if (h->mode == VD_LOG_OFF) {
    vd_hist_lane_t *l = &h->lanes[worker];
    pthread_mutex_lock(&h->mu);
    *seq = ++l->next_seq;
    lane_push(l, *seq, *seq, 0);
    pthread_mutex_unlock(&h->mu);
    if (h->notify)
      h->notify(worker, h->notify_arg);
    return 0;
  }
  /* Measured once, here: the copy, the hash and the insert all use f. */
  vd_hist_record_fields(r, f);
  size = sizeof *q;
  for (i = 0; i < NCOLS; i++)
    if (!f[i].is_int && f[i].p)
      size += f[i].n + 1;
  if (r->idem_key)
    size += strlen(r->idem_key) + 1 + r->idem_answer_len + 1;
  if (h->tail_on_submit)
    size += ntail = vd_hist_v2_tail(f, NULL, NULL);
  if (size > VD_HISTORY_QUEUE_BYTES)
    return VD_ETOO_LARGE;
  /* On this thread, many of them side by side, rather than on the one
   * writer thread: the salt, the personal digest, the canonical bytes
   * but for the seq (history_chain.c). */
  if (h->tail_on_submit) {
    rc = draw_salt(salt);
    if (rc)
      return rc;
    vd_hist_personal_digest(salt, f, d);
    vd_hist_to_hex(d, sizeof d, digest);
  }
  q = malloc(size);
  if (!q)
    return VD_ENOMEM;
  q->next = NULL;
  q->size = size;
  q->worker = worker;
  p = q->data;
  for (i = 0; i < NCOLS; i++) {
    q->f[i] = f[i];
    if (!f[i].is_int && f[i].p) {
      memcpy(p, f[i].p, f[i].n);
      p[f[i].n] = '\0';
      q->f[i].p = p;
      p += f[i].n + 1;
    }
  }
  q->idem_key = q->idem_answer = NULL;
  if (r->idem_key) { /* history_idem.c stores it with the record */
    size_t kn = strlen(r->idem_key) + 1;
    memcpy(p, r->idem_key, kn);
    q->idem_key = p;
    p += kn;
    memcpy(p, r->idem_answer, r->idem_answer_len);
    p[r->idem_answer_len] = '\0';
    q->idem_answer = p;
    p += r->idem_answer_len + 1; /* the record's tail follows */
    q->idem_answer_len = r->idem_answer_len;
    memcpy(q->idem_digest, r->idem_digest, sizeof q->idem_digest);
    q->idem_code = r->idem_code;
  }
  q->tail = NULL;
  q->ntail = ntail;
  if (h->tail_on_submit) {
    memcpy(q->salt, salt, sizeof q->salt);
    q->tail = p;
    vd_hist_v2_tail(f, digest, p);
    if (f[COL_TRACE].p) /* its key in `traces`, hashed here too */
      trace_key(f[COL_TRACE].p, f[COL_TRACE].n, q->trace_sha);
  }

  pthread_mutex_lock(&h->mu);
  while (h->qcount > 0 && (h->qcount >= VD_HISTORY_QUEUE_MAX ||
                           h->qbytes + size > VD_HISTORY_QUEUE_BYTES))
    pthread_cond_wait(&h->room, &h->mu);
  q->wseq = *seq = ++h->lanes[worker].next_seq;
  *h->qtail = q;
  h->qtail = &q->next;
  h->qcount++;
  h->qbytes += size;
  vd_metrics_series_set(h->m_depth, (int64_t)h->qcount);
  pthread_cond_signal(&h->wake);
  pthread_mutex_unlock(&h->mu);
  return 0;
}

size_t vd_history_drain(vd_history_t *h, unsigned worker,
                        vd_history_done_t *out, size_t max) {
  vd_hist_lane_t *l;
  size_t n;
  if (worker >= h->nworkers)
    return 0;
  l = &h->lanes[worker];
  pthread_mutex_lock(&h->mu);
  n = l->ndone < max ? l->ndone : max;
  if (n) {
    memcpy(out, l->done, n * sizeof *out);
    memmove(l->done, l->done + n, (l->ndone - n) * sizeof *l->done);
    l->ndone -= n;
  }
  pthread_mutex_unlock(&h->mu);
  return n;
}

void vd_history_close(vd_history_t *h) {
  if (!h)
    return;
  if (h->has_thread) {
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
  }
  history_free(h);
}
