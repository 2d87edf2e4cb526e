/*
 * history_archive.c - `verdict history archive`: moving the oldest
 * decisions out of the live database into an archive file that verifies
 * on its own, leaving an anchor behind so the live chain still verifies.
 *
 * Owns nothing past one call.  Two steps, so nothing is removed that is
 * not safely elsewhere first:
 *   1. copy: the archive file is created at schema VD_HISTORY_SCHEMA_VERSION
 *      (vd_hist_open_writer(): a new file, the one-writer lock), then,
 *      with the live database attached read-only in one read snapshot,
 *      the records first..last (the chain's prefix received before
 *      BEFORE) and the traces they name, every revision and blob, every
 *      activation and its head,
 *      chain_format and the erasures that touched the range are copied
 *      in; its chain_head names `last`, and an `archives` row with role
 *      'copy' says where its chain starts (the hash before `first`).  The
 *      file is switched to a rollback journal (one file), synced, and
 *      verified with vd_history_verify();
 *   2. move: in one write transaction on the live database, after
 *      checking that `last` still has the hash the archive holds and that
 *      no record of the range was erased since the copy, the records are
 *      deleted and an `archives` row with role 'moved' records who, when,
 *      the range, the anchor (hash of `last`) and the file.  verify then
 *      starts the chain after that anchor (vd_hist_chain_start()).
 * A failure in step 1 removes the file; in step 2 the live database is
 * unchanged and the verified archive is left for the operator.
 *
 * Erasures: verify counts erased records against `erasures`; records and
 * erasure rows can end up in different files, so each archives row keeps
 * `erased_elsewhere`, the erased records counted by this file's erasures
 * that are in the other file.
 *
 * Threads: the caller's.  Step 2 holds the write lock for the DELETE:
 * the daemon's writer waits that long (docs/history.md, "Archive").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* One integer from SQL on DB (bound ?1.. to A and B when not NULL). */
static int one_int(sqlite3 *db, const char *sql, int64_t a, int64_t b,
                   int64_t *out) {
  sqlite3_stmt *st;
  int src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (src == SQLITE_OK) {
    if (sqlite3_bind_parameter_count(st) >= 1)
      sqlite3_bind_int64(st, 1, a);
    if (sqlite3_bind_parameter_count(st) >= 2)
      sqlite3_bind_int64(st, 2, b);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      src = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return src;
}

/* The hash of record SEQ in schema S ("main" or "live"), into out[65]. */
static int hash_of(sqlite3 *db, const char *schema, int64_t seq,
                   char out[65]) {
  sqlite3_stmt *st;
  char sql[96];
  int src;
  snprintf(sql, sizeof sql, "SELECT hash FROM %s.decisions WHERE seq = ?",
           schema);
  src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (src == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, seq);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 64) {
      memcpy(out, sqlite3_column_text(st, 0), 65);
      src = SQLITE_OK;
    } else if (src == SQLITE_ROW || src == SQLITE_DONE) {
      src = SQLITE_CORRUPT; /* a record of the chain without its hash */
    }
  }
  sqlite3_finalize(st);
  return src;
}

/* INSERT an archives row into SCHEMA.archives. */
static int add_archive_row(sqlite3 *db, const char *schema, int64_t now,
                           const char *who, const char *role,
                           int64_t before_ms, int64_t first, int64_t last,
                           const char *start, const char *anchor,
                           const char *file, int64_t elsewhere) {
  sqlite3_stmt *st;
  char sql[256], at[40];
  int src;
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  snprintf(sql, sizeof sql,
           "INSERT INTO %s.archives (at_ms, at, who, role, before_ms,"
           " first_seq, last_seq, start_hash, anchor, file, erased_elsewhere)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", schema);
  src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (src == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, at, -1, SQLITE_STATIC);
    if (who)
      sqlite3_bind_text(st, 3, who, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, role, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, before_ms);
    sqlite3_bind_int64(st, 6, first);
    sqlite3_bind_int64(st, 7, last);
    sqlite3_bind_text(st, 8, start, 64, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, anchor, 64, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, file, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, elsewhere);
    src = sqlite3_step(st);
    src = src == SQLITE_DONE ? SQLITE_OK : src;
  }
  sqlite3_finalize(st);
  return src;
}

#define ERASED_IN_RANGE                                                      \
  "SELECT count(*) FROM live.decisions WHERE seq BETWEEN ?1 AND ?2"          \
  " AND personal_digest IS NOT NULL AND personal_salt IS NULL"

/* Step 1: fill the new archive file DEST (attached as "main" of DB, the
 * live database attached as "live") inside one transaction. */
static int copy_range(sqlite3 *db, const char *live_path, const char *dest,
                      int64_t before_ms, const char *who, int64_t now,
                      vd_history_archive_report_t *rep, vd_buf_t *err) {
  char start[65], anchor[65];
  int64_t first, last, erased = 0, counted = 0, v2_from = 0, v2_ms = 0;
  int src;
  static const char *const copies[] = {
      "INSERT INTO main.blobs SELECT * FROM live.blobs",
      "INSERT INTO main.revisions SELECT * FROM live.revisions",
      "INSERT INTO main.revision_files SELECT * FROM live.revision_files",
      "INSERT INTO main.revision_numbers SELECT * FROM live.revision_numbers",
      /* the traces the copied records name (they are copied first) */
      "INSERT INTO main.traces SELECT * FROM live.traces WHERE sha256 IN"
      " (SELECT trace_sha FROM main.decisions)",
      "INSERT INTO main.activations SELECT * FROM live.activations",
      "UPDATE main.activation_head SET (last_id, hash, sealed_id, sealed_ms)"
      " = (SELECT last_id, hash, sealed_id, sealed_ms FROM"
      "    live.activation_head WHERE id = 1)",
      NULL};
  size_t i;
  /* Deferred, not IMMEDIATE: IMMEDIATE starts a write transaction on
   * every attached database, so it took the live database's write lock
   * too and, beside a busy daemon, waited for it and failed ("locked by
   * another writer"), or held the daemon's writer back for the whole
   * copy.  The live database is only read here, in the one snapshot its
   * first read starts; the new file is written from its first INSERT, and
   * nothing else writes it (the one-writer lock). */
  src = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, dest, db, src, "starting the archive");
  src = one_int(db, "SELECT v2_from FROM live.chain_format", 0, 0, &v2_from);
  if (src == SQLITE_OK)
    src = one_int(db, "SELECT migrated_ms FROM live.chain_format", 0, 0,
                  &v2_ms);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, live_path, db, src, "reading chain_format");
  /* first: one past the live chain's last archived record */
  src = one_int(db, "SELECT coalesce((SELECT last_seq FROM live.archives"
                    " WHERE role = 'moved' ORDER BY id DESC LIMIT 1), 0) + 1",
                0, 0, &first);
  /* last: the chain's prefix received before BEFORE */
  if (src == SQLITE_OK)
    src = one_int(db, "SELECT coalesce((SELECT min(seq) FROM live.decisions"
                      " WHERE received_ms >= ?1), (SELECT coalesce(max(seq),"
                      " 0) + 1 FROM live.decisions)) - 1", before_ms, 0, &last);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, live_path, db, src, "finding the range");
  if (last < first) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': no decision received before "
                     "that time is left to archive", live_path);
    return VD_ENOT_FOUND;
  }
  if (first == 1) {
    memcpy(start, VD_HIST_ZERO_HASH, 65);
    src = SQLITE_OK;
  } else {
    sqlite3_stmt *st;
    src = sqlite3_prepare_v2(db, "SELECT anchor FROM live.archives WHERE"
                                 " role = 'moved' ORDER BY id DESC LIMIT 1",
                             -1, &st, NULL);
    if (src == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_bytes(st, 0) == 64)
      memcpy(start, sqlite3_column_text(st, 0), 65);
    else
      src = SQLITE_CORRUPT;
    sqlite3_finalize(st);
  }
  if (src == SQLITE_OK)
    src = hash_of(db, "live", last, anchor);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, live_path, db, src, "reading the range's edges");
  {
    sqlite3_stmt *st;
    src = sqlite3_prepare_v2(db,
                             "INSERT INTO main.decisions (" ALL_COLUMNS
                             ", personal_salt, personal_digest, revision_n,"
                             " trace_sha) SELECT " ALL_COLUMNS
                             ", personal_salt, personal_digest, revision_n,"
                             " trace_sha"
                             " FROM live.decisions WHERE seq BETWEEN ? AND ?",
                             -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, first);
      sqlite3_bind_int64(st, 2, last);
      src = sqlite3_step(st);
      src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    sqlite3_finalize(st);
  }
  for (i = 0; src == SQLITE_OK && copies[i]; i++)
    src = sqlite3_exec(db, copies[i], NULL, NULL, NULL);
  if (src == SQLITE_OK) {
    sqlite3_stmt *st;
    src = sqlite3_prepare_v2(
        db,
        "INSERT INTO main.erasures SELECT * FROM live.erasures"
        " WHERE first_seq <= ?2 AND last_seq >= ?1", -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, first);
      sqlite3_bind_int64(st, 2, last);
      src = sqlite3_step(st);
      src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    sqlite3_finalize(st);
  }
  if (src == SQLITE_OK)
    src = one_int(db, ERASED_IN_RANGE, first, last, &erased);
  if (src == SQLITE_OK)
    src = one_int(db, "SELECT coalesce(sum(records), 0) FROM main.erasures",
                  0, 0, &counted);
  if (src == SQLITE_OK) {
    sqlite3_stmt *st;
    src = sqlite3_prepare_v2(db, "UPDATE main.chain_format SET v2_from = ?,"
                                 " migrated_ms = ?", -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, v2_from);
      sqlite3_bind_int64(st, 2, v2_ms);
      src = sqlite3_step(st);
      src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    sqlite3_finalize(st);
  }
  if (src == SQLITE_OK) {
    sqlite3_stmt *st;
    src = sqlite3_prepare_v2(db, "UPDATE main.chain_head SET seq = ?,"
                                 " hash = ?", -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, last);
      sqlite3_bind_text(st, 2, anchor, 64, SQLITE_STATIC);
      src = sqlite3_step(st);
      src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    sqlite3_finalize(st);
  }
  if (src == SQLITE_OK)
    src = add_archive_row(db, "main", now, who, "copy", before_ms, first,
                          last, start, anchor, live_path, counted - erased);
  if (src == SQLITE_OK)
    src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, dest, db, src, "copying into the archive");
  rep->first_seq = first;
  rep->last_seq = last;
  rep->erased = erased;
  memcpy(rep->anchor, anchor, 65);
  memcpy(rep->start, start, 65);
  return 0;
}

/* Step 2: delete the range from the live database and record it. */
static int move_range(const char *live_path, const char *dest,
                      int64_t before_ms, const char *who, int64_t now,
                      const vd_history_archive_report_t *rep, vd_buf_t *err) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st;
  char hash[65];
  int64_t erased = -1;
  int src;
  src = vd_hist_sqlite_open(live_path, &db, SQLITE_OPEN_READWRITE);
  if (src == SQLITE_OK) {
    sqlite3_extended_result_codes(db, 1);
    vd_hist_busy_poll(db); /* beside a daemon's writer */
    src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  }
  if (src == SQLITE_OK)
    src = hash_of(db, "main", rep->last_seq, hash);
  if (src == SQLITE_OK)
    src = one_int(db, "SELECT count(*) FROM main.decisions WHERE seq BETWEEN"
                      " ?1 AND ?2 AND personal_digest IS NOT NULL AND"
                      " personal_salt IS NULL", rep->first_seq,
                  rep->last_seq, &erased);
  if (src != SQLITE_OK) {
    int rc = vd_hist_db_err(err, live_path, db, src, "starting the move");
    sqlite3_close(db);
    return rc;
  }
  if (strcmp(hash, rep->anchor) != 0 || erased != rep->erased) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': records %" PRId64 "..%" PRId64
                     " changed while they were copied (an erasure?); nothing "
                     "was removed, and %s holds the copy: remove it and run "
                     "the archive again", live_path, rep->first_seq,
                rep->last_seq, dest);
    return VD_EINVALID;
  }
  src = sqlite3_prepare_v2(db, "DELETE FROM decisions WHERE seq BETWEEN ?"
                               " AND ?", -1, &st, NULL);
  if (src == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, rep->first_seq);
    sqlite3_bind_int64(st, 2, rep->last_seq);
    src = sqlite3_step(st);
    src = src == SQLITE_DONE ? SQLITE_OK : src;
  }
  sqlite3_finalize(st);
  if (src == SQLITE_OK)
    src = add_archive_row(db, "main", now, who, "moved", before_ms,
                          rep->first_seq, rep->last_seq, rep->start,
                          rep->anchor, dest, rep->erased);
  if (src == SQLITE_OK)
    src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    int rc = vd_hist_db_err(err, live_path, db, src,
                            "removing the archived records");
    if (!sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
  }
  sqlite3_close(db);
  return 0;
}

int vd_history_archive(const char *live_path, int64_t before_ms,
                       const char *dest, const char *who,
                       vd_history_archive_report_t *rep, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db = NULL, *probe = NULL;
  struct stat st;
  int64_t now = vd_now_ms();
  int rc, src, lock_fd = -1;
  memset(rep, 0, sizeof *rep);
  if (!dest || !*dest) {
    vd_buf_adds(&err, "archive: empty destination path");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  if (stat(dest, &st) == 0) {
    vd_buf_addf(&err, "archive '%s': the file exists; an archive is always "
                      "a new file", dest);
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  /* the live database: a verdict database of this schema */
  rc = vd_history_db_open_ro(&probe, live_path, &err);
  sqlite3_close(probe);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  /* 1. the archive file, created like any history database */
  rc = vd_hist_open_writer(&db, &lock_fd, dest, "FULL", &err);
  if (rc)
    goto fail;
  {
    char *sql = sqlite3_mprintf("ATTACH %Q AS live", live_path);
    src = sql ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
    sqlite3_free(sql);
    if (src != SQLITE_OK) {
      rc = vd_hist_db_err(&err, live_path, db, src, "attaching it");
      goto fail;
    }
  }
  rc = copy_range(db, live_path, dest, before_ms, who, now, rep, &err);
  if (rc) {
    if (!sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    goto fail;
  }
  sqlite3_exec(db, "DETACH live", NULL, NULL, NULL);
  src = sqlite3_exec(db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
  if (src != SQLITE_OK) {
    rc = vd_hist_db_err(&err, dest, db, src,
                        "switching the archive to a rollback journal");
    goto fail;
  }
  sqlite3_close(db);
  db = NULL;
  close(lock_fd);
  lock_fd = -1;
  rc = vd_history_verify(dest, &rep->verify);
  if (rc || rep->verify.records != rep->last_seq - rep->first_seq + 1 ||
      strcmp(rep->verify.head, rep->anchor) != 0) {
    vd_buf_reset(&err);
    vd_buf_addf(&err, "archive '%s': the archive does not verify, so "
                      "nothing was removed: %s", dest, rep->verify.message);
    rc = rc ? rc : VD_EINVALID;
    goto fail;
  }
  /* 2. out of the live database */
  rc = move_range(live_path, dest, before_ms, who, now, rep, &err);
  if (rc) {
    memset(rep, 0, sizeof *rep);
    return vd_hist_give_err(errmsg, &err, rc);
  }
  return vd_hist_give_err(errmsg, &err, 0);
fail:
  sqlite3_close(db);
  if (lock_fd >= 0)
    close(lock_fd);
  unlink(dest);
  {
    char side[4096];
    snprintf(side, sizeof side, "%s-wal", dest);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", dest);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", dest);
    unlink(side);
  }
  memset(rep, 0, sizeof *rep);
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_archived(const char *db_path, vd_history_archived_t *a,
                        char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  sqlite3_stmt *st;
  int rc = vd_history_db_open_ro(&db, db_path, &err), src;
  memset(a, 0, sizeof *a);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  src = sqlite3_prepare_v2(db, "SELECT last_seq, before_ms, at, file FROM"
                               " archives WHERE role = 'moved'"
                               " ORDER BY id DESC LIMIT 1", -1, &st, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    a->last_seq = sqlite3_column_int64(st, 0);
    a->before_ms = sqlite3_column_int64(st, 1);
    snprintf(a->at, sizeof a->at, "%s", sqlite3_column_text(st, 2));
    snprintf(a->file, sizeof a->file, "%s", sqlite3_column_text(st, 3));
    src = SQLITE_DONE;
  }
  if (src != SQLITE_DONE)
    rc = vd_hist_db_err(&err, db_path, db, src, "reading archives");
  sqlite3_finalize(st);
  sqlite3_close(db);
  return vd_hist_give_err(errmsg, &err, rc);
}
