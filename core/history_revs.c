/*
 * history_revs.c - policy revisions in the history database: blobs (each
 * file's bytes, keyed by their SHA-256, stored once), revisions and their
 * files, activations, and reading a revision back as files or a bundle.
 *
 * Owns no state of its own: storing goes through the auxiliary connection
 * of a vd_history_t (h->aux, opened by history_writer.c), reading through
 * a read-only connection opened and closed per call.
 *
 * Invariants:
 *   - a revision's name is the hash of its files (vd_bundle_revision()),
 *     checked before it is stored and again whenever it is read back, so
 *     a stored revision of a name holds exactly the files of that name;
 *   - storing is idempotent and atomic: one write transaction per
 *     revision, and storing a stored revision changes nothing;
 *   - activations are append-only and hash-chained on their own
 *     (history_chain.c): each is inserted with the next id and its hash
 *     in the transaction that moves activation_head.
 *
 * Threads: store and record run on the daemon's main thread (h->aux_mu
 * serialises them should another caller come); loading on its caller's
 * thread (the admin channel's, replay's, verify's).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* ========================================================================
 * Revisions and activations
 * ====================================================================== */

int vd_hist_revision_name_ok(const char *revision,
                             const vd_bundle_file_t *files, size_t n,
                             vd_buf_t *err) {
  vd_bundle_t *b;
  vd_buf_t why = VD_BUF_INIT;
  int rc = vd_bundle_from_files(files, n, "history", &b, &why);
  vd_buf_reset(err);
  if (rc) {
    vd_buf_addf(err, "revision %s: %s", revision,
                why.data ? why.data : vd_err_desc(rc));
  } else {
    if (strcmp(vd_bundle_revision(b), revision) != 0) {
      vd_buf_addf(err, "revision %s: its files hash to %s", revision,
                  vd_bundle_revision(b));
      rc = VD_EINVALID;
    }
    vd_bundle_unref(b);
  }
  vd_buf_release(&why);
  return rc;
}

/* Run SQL on DB with up to three text parameters and one optional int64
 * result (the first column of the first row). */
static int aux_exec(sqlite3 *db, const char *sql, const char *a, const char *b,
                    const char *c, int64_t *result) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  if (a)
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
  if (b)
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
  if (c)
    sqlite3_bind_text(st, 3, c, -1, SQLITE_STATIC);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    if (result)
      *result = sqlite3_column_type(st, 0) == SQLITE_NULL
                    ? -1
                    : sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    if (result)
      *result = -1;
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Store one file: its blob (once per content) and its (revision, path)
 * row.  In the caller's transaction on the aux connection. */
static int store_file(vd_history_t *h, const char *revision,
                      const vd_bundle_file_t *f, vd_buf_t *err) {
  char sha[65];
  sqlite3_stmt *st;
  int rc;
  vd_hist_sha256_hex(f->data ? f->data : "", f->len, sha);
  rc = sqlite3_prepare_v2(h->aux,
                          "INSERT OR IGNORE INTO blobs (sha256, size, data)"
                          " VALUES (?, ?, ?)",
                          -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, sha, 64, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->len);
    sqlite3_bind_blob64(st, 3, f->data ? f->data : "", f->len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    sqlite3_finalize(st);
  }
  if (rc == SQLITE_OK)
    rc = aux_exec(h->aux,
                  "INSERT INTO revision_files (revision, path, blob)"
                  " VALUES (?, ?, ?)",
                  revision, f->path, sha, NULL);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, h->path, h->aux, rc, "storing a revision file");
  return 0;
}

int vd_hist_sqlite_store_revision(vd_history_t *h, const char *revision,
                                  const vd_bundle_file_t *files,
                                  size_t nfiles, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int64_t stored = -1;
  size_t i, bytes = 0;
  char sql[160];
  int rc;
  if (errmsg)
    *errmsg = NULL;
  /* the name is the hash of the files, so a stored revision of this name
   * already holds exactly these files */
  rc = vd_hist_revision_name_ok(revision, files, nfiles, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  for (i = 0; i < nfiles; i++)
    bytes += files[i].len;
  snprintf(sql, sizeof sql,
           "INSERT INTO revisions (revision, stored_ms, files, bytes)"
           " VALUES (?, %" PRId64 ", %zu, %zu)",
           vd_now_ms(), nfiles, bytes);
  pthread_mutex_lock(&h->aux_mu);
  rc = sqlite3_exec(h->aux, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = aux_exec(h->aux, "SELECT 1 FROM revisions WHERE revision = ?",
                  revision, NULL, NULL, &stored);
  if (rc == SQLITE_OK && stored < 0)
    rc = aux_exec(h->aux, sql, revision, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    rc = vd_hist_db_err(&err, h->path, h->aux, rc, "storing a revision");
  for (i = 0; rc == 0 && stored < 0 && i < nfiles; i++)
    rc = store_file(h, revision, &files[i], &err);
  if (rc == 0 && (rc = sqlite3_exec(h->aux, "COMMIT", NULL, NULL, NULL)))
    rc = vd_hist_db_err(&err, h->path, h->aux, rc, "committing a revision");
  if (rc && !sqlite3_get_autocommit(h->aux))
    sqlite3_exec(h->aux, "ROLLBACK", NULL, NULL, NULL);
  pthread_mutex_unlock(&h->aux_mu);
  return vd_hist_give_err(errmsg, &err, rc);
}

/* Where the activations' chain continues, read in the caller's write
 * transaction: the next id and the previous hash.  activation_head is the
 * authority; should it have been tampered with, recording continues past
 * the last row anyway (as the decisions' writer does) and verify reports
 * the damage. */
static int act_head(sqlite3 *db, int64_t *next, uint8_t prev[32]) {
  sqlite3_stmt *st;
  int64_t head_id, max_id;
  int rc = sqlite3_prepare_v2(
      db,
      "SELECT h.last_id, h.hash, (SELECT max(id) FROM activations),"
      "       (SELECT hash FROM activations ORDER BY id DESC LIMIT 1)"
      "  FROM (SELECT 1) LEFT JOIN activation_head h ON h.id = 1",
      -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int col = sqlite3_column_type(st, 1) != SQLITE_NULL ? 1 : 3;
    head_id = sqlite3_column_int64(st, 0);
    max_id = sqlite3_column_int64(st, 2);
    *next = (head_id > max_id ? head_id : max_id) + 1;
    memset(prev, 0, 32);
    /* a hash that is not 64 hex digits leaves prev zero: verify says so */
    if (sqlite3_column_type(st, col) != SQLITE_NULL)
      (void)vd_hist_from_hex((const char *)sqlite3_column_text(st, col),
                             (size_t)sqlite3_column_bytes(st, col), prev);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

int vd_hist_sqlite_record_activation(vd_history_t *h, const char *revision,
                                     const char *trigger, const char *who,
                                     const char *source_dir, int ok,
                                     const char *error, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3_stmt *st = NULL;
  vd_hist_field_t f[NACOLS];
  int64_t now = vd_now_ms(), id = 0;
  uint8_t prev[32], cur[32];
  char at[32], hex[65];
  int rc;
  if (errmsg)
    *errmsg = NULL;
  if (!revision || !trigger) {
    vd_buf_adds(&err, "history: an activation needs a revision and a trigger");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  f[ACOL_AT_MS] = (vd_hist_field_t){NULL, 0, now, 1};
  f[ACOL_AT] = (vd_hist_field_t){at, strlen(at), 0, 0};
  f[ACOL_REVISION] = (vd_hist_field_t){revision, strlen(revision), 0, 0};
  f[ACOL_CAUSE] = (vd_hist_field_t){trigger, strlen(trigger), 0, 0};
  f[ACOL_WHO] = (vd_hist_field_t){who, who ? strlen(who) : 0, 0, 0};
  f[ACOL_SOURCE_DIR] =
      (vd_hist_field_t){source_dir, source_dir ? strlen(source_dir) : 0, 0, 0};
  f[ACOL_OK] = (vd_hist_field_t){NULL, 0, ok ? 1 : 0, 1};
  f[ACOL_ERROR] = (vd_hist_field_t){error, error ? strlen(error) : 0, 0, 0};
  pthread_mutex_lock(&h->aux_mu);
  /* the row, its hash and the head move together, in one transaction on
   * the aux connection; the decisions' chain is not touched */
  rc = sqlite3_exec(h->aux, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = act_head(h->aux, &id, prev);
  if (rc == SQLITE_OK) {
    int i;
    vd_hist_activation_hash(prev, id, f, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    rc = sqlite3_prepare_v2(h->aux,
                            "INSERT INTO activations (" ACT_COLUMNS ")"
                            " VALUES (" ACT_PARAMS ")",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      for (i = 0; i < NACOLS; i++) {
        if (f[i].is_int)
          sqlite3_bind_int64(st, i + 2, f[i].i);
        else if (f[i].p)
          sqlite3_bind_text(st, i + 2, f[i].p, (int)f[i].n, SQLITE_STATIC);
      }
      sqlite3_bind_text(st, NACOLS + 2, hex, 64, SQLITE_STATIC);
      rc = sqlite3_step(st);
      rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
      sqlite3_finalize(st);
    }
  }
  if (rc == SQLITE_OK) {
    /* ON CONFLICT keeps sealed_id and sealed_ms; a head row someone
     * deleted comes back saying nothing was sealed */
    rc = sqlite3_prepare_v2(h->aux,
                            "INSERT INTO activation_head (id, last_id, hash,"
                            " sealed_id, sealed_ms) VALUES (1, ?, ?, 0, 0)"
                            " ON CONFLICT (id) DO UPDATE SET"
                            " last_id = excluded.last_id, hash = excluded.hash",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_text(st, 2, hex, 64, SQLITE_STATIC);
      rc = sqlite3_step(st);
      rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
      sqlite3_finalize(st);
    }
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(h->aux, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    rc = vd_hist_db_err(&err, h->path, h->aux, rc, "recording an activation");
    if (!sqlite3_get_autocommit(h->aux))
      sqlite3_exec(h->aux, "ROLLBACK", NULL, NULL, NULL);
  }
  pthread_mutex_unlock(&h->aux_mu);
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_load_bundle(const char *db_path, const char *revision,
                           vd_bundle_t **out, vd_buf_t *err) {
  vd_bundle_file_t *files = NULL;
  size_t n = 0;
  char *msg = NULL;
  int rc = vd_history_load_revision(db_path, revision, &files, &n, &msg);
  *out = NULL;
  vd_buf_reset(err);
  if (rc) {
    vd_buf_adds(err, msg ? msg : "cannot read the revision");
    free(msg);
    return rc;
  }
  rc = vd_bundle_from_files(files, n, db_path, out, err);
  vd_history_free_files(files, n);
  if (rc == 0 && strcmp(vd_bundle_revision(*out), revision) != 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "the stored files of %s hash to %s", revision,
                vd_bundle_revision(*out));
    vd_bundle_unref(*out);
    *out = NULL;
    return VD_EINVALID;
  }
  return rc;
}

void vd_history_free_files(vd_bundle_file_t *files, size_t n) {
  size_t i;
  if (!files)
    return;
  for (i = 0; i < n; i++) {
    free(files[i].path);
    free(files[i].data);
  }
  free(files);
}

int vd_hist_load_files(sqlite3 *db, const char *path, const char *revision,
                       vd_bundle_file_t **files, size_t *nfiles,
                       vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  vd_bundle_file_t *v = NULL;
  size_t n = 0, cap = 0;
  int64_t expect = -1;
  int rc, src;
  *files = NULL;
  *nfiles = 0;
  src = aux_exec(db, "SELECT files FROM revisions WHERE revision = ?",
                 revision, NULL, NULL, &expect);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "looking up a revision");
  if (expect < 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': no revision %s", path, revision);
    return VD_ENOT_FOUND;
  }
  src = sqlite3_prepare_v2(db,
                           "SELECT f.path, f.blob, b.data"
                           "  FROM revision_files f"
                           "  LEFT JOIN blobs b ON b.sha256 = f.blob"
                           " WHERE f.revision = ? ORDER BY f.path",
                           -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "reading a revision");
  sqlite3_bind_text(st, 1, revision, -1, SQLITE_STATIC);
  rc = 0;
  while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *fpath = (const char *)sqlite3_column_text(st, 0);
    const char *blob = (const char *)sqlite3_column_text(st, 1);
    const void *data = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    char sha[65];
    vd_buf_reset(err);
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) {
      vd_buf_addf(err, "revision %s: file %s: blob %s is missing", revision,
                  fpath, blob);
      rc = VD_EINVALID;
      break;
    }
    vd_hist_sha256_hex(data ? data : "", len, sha);
    if (!blob || strcmp(sha, blob) != 0) {
      vd_buf_addf(err, "revision %s: file %s: blob %s has been altered "
                       "(its contents hash to %s)",
                  revision, fpath, blob ? blob : "(null)", sha);
      rc = VD_EINVALID;
      break;
    }
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      vd_bundle_file_t *nv = realloc(v, ncap * sizeof *nv);
      if (!nv) {
        rc = VD_ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    v[n].path = strdup(fpath ? fpath : "");
    v[n].data = malloc(len + 1);
    v[n].len = len;
    if (!v[n].path || !v[n].data) {
      free(v[n].path);
      free(v[n].data);
      rc = VD_ENOMEM;
      break;
    }
    memcpy(v[n].data, data ? data : "", len);
    v[n].data[len] = '\0';
    n++;
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = vd_hist_db_err(err, path, db, src, "reading a revision");
  if (rc == 0 && (int64_t)n != expect) {
    vd_buf_reset(err);
    vd_buf_addf(err, "revision %s: %zu files stored, %" PRId64 " expected",
                revision, n, expect);
    rc = VD_EINVALID;
  }
  if (rc == VD_ENOMEM) {
    vd_buf_reset(err);
    vd_buf_addf(err, "revision %s: out of memory", revision);
  }
  sqlite3_finalize(st);
  if (rc) {
    vd_history_free_files(v, n);
    return rc;
  }
  *files = v;
  *nfiles = n;
  return 0;
}

int vd_history_load_revision(const char *db_path, const char *revision,
                             vd_bundle_file_t **files, size_t *nfiles,
                             char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  int rc;
  *files = NULL;
  *nfiles = 0;
  if (errmsg)
    *errmsg = NULL;
  if (vd_history_is_postgres(db_path))
    return vd_hist_give_err(errmsg, &err,
                            vd_hist_pg_load_revision(db_path, revision, files,
                                                     nfiles, &err));
  rc = vd_history_db_open_ro(&db, db_path, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  rc = vd_hist_load_files(db, db_path, revision, files, nfiles, &err);
  sqlite3_close(db);
  return vd_hist_give_err(errmsg, &err, rc);
}
