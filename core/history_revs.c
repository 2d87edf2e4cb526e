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
 * Threads: store and record run on the daemon's main thread, under
 * vd_hist_aux_lock() (it serialises them should another caller come, and
 * holds the writer between batches so that they are not starved);
 * loading on its caller's thread (the admin channel's, replay's,
 * verify's).
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

static int all_hex(const char *s);

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

int vd_hist_revision_to_store(const char *revision,
                              const vd_bundle_file_t *files, size_t nfiles,
                              size_t *bytes, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  size_t i;
  int rc;
  if (errmsg)
    *errmsg = NULL;
  *bytes = 0;
  /* the name is the hash of the files, so a stored revision of this name
   * already holds exactly these files */
  rc = vd_hist_revision_name_ok(revision, files, nfiles, &err);
  for (i = 0; rc == 0 && i < nfiles; i++)
    *bytes += files[i].len;
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_hist_verify_revision(const char *revision, int loaded,
                            vd_bundle_file_t *files, size_t n,
                            vd_verify_report_t *rep, vd_buf_t *err) {
  int rc = loaded;
  if (rc == 0) {
    rc = vd_hist_revision_name_ok(revision, files, n, err);
    vd_history_free_files(files, n);
  }
  if (rc == VD_EINVALID || rc == VD_ENOT_FOUND) {
    rep->problem = VD_VERIFY_REVISION;
    rep->seq = 0;
    rep->decision_id[0] = '\0';
    snprintf(rep->message, sizeof rep->message, "%s",
             err->data ? err->data : "");
    return VD_EINVALID;
  }
  if (rc == 0)
    rep->revisions++;
  return rc;
}

int vd_hist_sqlite_store_revision(vd_history_t *h, const char *revision,
                                  const vd_bundle_file_t *files,
                                  size_t nfiles, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int64_t stored = -1;
  size_t i, bytes;
  char sql[160];
  int rc = vd_hist_revision_to_store(revision, files, nfiles, &bytes, errmsg);
  if (rc)
    return rc;
  snprintf(sql, sizeof sql,
           "INSERT INTO revisions (revision, stored_ms, files, bytes)"
           " VALUES (?, %" PRId64 ", %zu, %zu)",
           vd_now_ms(), nfiles, bytes);
  vd_hist_aux_lock(h);
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
  vd_hist_aux_unlock(h);
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

/* An activation's columns (ACOL_*) in F, as both stores hash and insert
 * them; AT is NOW's text, and the strings are borrowed. */
void vd_hist_activation_fields(vd_hist_field_t *f, int64_t now,
                               const char *at, const char *revision,
                               const char *trigger, const char *who,
                               const char *source_dir, int ok,
                               const char *error) {
  f[ACOL_AT_MS] = (vd_hist_field_t){NULL, 0, now, 1};
  f[ACOL_AT] = (vd_hist_field_t){at, strlen(at), 0, 0};
  f[ACOL_REVISION] = (vd_hist_field_t){revision, strlen(revision), 0, 0};
  f[ACOL_CAUSE] = (vd_hist_field_t){trigger, strlen(trigger), 0, 0};
  f[ACOL_WHO] = (vd_hist_field_t){who, who ? strlen(who) : 0, 0, 0};
  f[ACOL_SOURCE_DIR] =
      (vd_hist_field_t){source_dir, source_dir ? strlen(source_dir) : 0, 0, 0};
  f[ACOL_OK] = (vd_hist_field_t){NULL, 0, ok ? 1 : 0, 1};
  f[ACOL_ERROR] = (vd_hist_field_t){error, error ? strlen(error) : 0, 0, 0};
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
  vd_hist_activation_fields(f, now, at, revision, trigger, who, source_dir,
                            ok, error);
  vd_hist_aux_lock(h);
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
  vd_hist_aux_unlock(h);
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_load_bundle(const char *db_path, const char *name,
                           vd_bundle_t **out, vd_buf_t *err) {
  vd_bundle_file_t *files = NULL;
  size_t n = 0;
  char *msg = NULL, revision[VD_REVISION_NAME_MAX];
  int rc = 0;
  /* a full name is used as it is: replay loads one per revision it meets */
  if (strncmp(name, "sha256:", 7) == 0 && strlen(name) == 71 &&
      all_hex(name + 7))
    snprintf(revision, sizeof revision, "%s", name);
  else
    rc = vd_history_resolve(db_path, name, revision, &msg);
  if (rc == 0)
    rc = vd_history_load_revision(db_path, revision, &files, &n, &msg);
  *out = NULL;
  vd_buf_reset(err);
  if (rc) {
    vd_buf_adds(err, msg ? msg : "cannot read the revision");
    free(msg);
    return rc;
  }
  {
    vd_buf_t source = VD_BUF_INIT; /* "db:PATH": activations tell a
                                    * rollback from a reload by it */
    char shown[4200]; /* a connection string's password hidden */
    vd_history_db_display(db_path, shown, sizeof shown);
    vd_buf_addf(&source, "db:%s", shown);
    rc = vd_bundle_from_files(files, n, source.data, out, err);
    vd_buf_release(&source);
  }
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

/* ========================================================================
 * Naming revisions: hash prefixes, active, previous, @-N, tags
 * ====================================================================== */

/* "@-N": N >= 0 into *n; 0 if NAME is not of that form. */
static int steps_back(const char *name, int64_t *n) {
  const char *p = name + 2;
  if (strncmp(name, "@-", 2) != 0 || !*p || strlen(p) > 9)
    return 0;
  *n = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    *n = *n * 10 + (*p - '0');
  }
  return 1;
}

static int all_hex(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
          (*s >= 'A' && *s <= 'F')))
      return 0;
  return 1;
}

/* The revision live N changes ago: the successful activations newest
 * first, consecutive ones of the same revision counted once. */
static int nth_active(sqlite3 *db, const char *path, int64_t n,
                      char out[VD_REVISION_NAME_MAX], vd_buf_t *err) {
  sqlite3_stmt *st;
  int64_t seen = -1;
  char last[VD_REVISION_NAME_MAX] = "";
  int src = sqlite3_prepare_v2(db,
                               "SELECT revision FROM activations WHERE ok = 1"
                               " ORDER BY id DESC",
                               -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "reading the activations");
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *r = (const char *)sqlite3_column_text(st, 0);
    if (!r || strcmp(r, last) == 0)
      continue;
    snprintf(last, sizeof last, "%s", r);
    if (++seen == n)
      break;
  }
  sqlite3_finalize(st);
  if (src != SQLITE_ROW && src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading the activations");
  vd_buf_reset(err);
  if (seen < n) {
    if (seen < 0)
      vd_buf_addf(err, "history database '%s': no revision has been "
                       "activated yet", path);
    else
      vd_buf_addf(err, "history database '%s': only %" PRId64 " earlier "
                       "revision%s went live before the active one", path,
                  seen, seen == 1 ? "" : "s");
    return VD_ENOT_FOUND;
  }
  memcpy(out, last, sizeof last);
  return 0;
}

/* The stored revisions whose name starts with WANT ("sha256:" and at
 * least 4 hex digits, vd_hist_name_read()). */
static int by_prefix(sqlite3 *db, const char *path, const char *name,
                     const char *want, char out[VD_REVISION_NAME_MAX],
                     vd_buf_t *err) {
  sqlite3_stmt *st;
  size_t n = strlen(want) - 7;
  int src, found = 0;
  vd_buf_t cands = VD_BUF_INIT;
  vd_buf_reset(err);
  src = sqlite3_prepare_v2(db,
                           "SELECT revision FROM revisions"
                           " WHERE substr(revision, 1, ?2) = ?1"
                           " ORDER BY revision LIMIT 11",
                           -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "looking up a revision");
  sqlite3_bind_text(st, 1, want, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, (int)(n + 7));
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *r = (const char *)sqlite3_column_text(st, 0);
    if (found++ == 0)
      snprintf(out, VD_REVISION_NAME_MAX, "%s", r ? r : "");
    if (found <= 10)
      vd_buf_addf(&cands, "\n  %s", r ? r : "");
    else
      vd_buf_adds(&cands, "\n  ...");
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE) {
    vd_buf_release(&cands);
    return vd_hist_db_err(err, path, db, src, "looking up a revision");
  }
  if (found == 1) {
    vd_buf_release(&cands);
    return 0;
  }
  if (found == 0)
    vd_buf_addf(err, "history database '%s': no revision %s", path, name);
  else
    vd_buf_addf(err, "revision '%s' is ambiguous; it starts:%s", name,
                cands.data);
  vd_buf_release(&cands);
  return found ? VD_EINVALID : VD_ENOT_FOUND;
}

int vd_hist_name_read(const char *name, int64_t *back,
                      char want[VD_REVISION_NAME_MAX], vd_buf_t *err) {
  const char *hex = strncmp(name, "sha256:", 7) == 0 ? name + 7 : NULL;
  size_t i, n;
  if (strcmp(name, "active") == 0 || strcmp(name, "previous") == 0) {
    *back = name[0] == 'p';
    return VD_HIST_NAME_BACK;
  }
  if (steps_back(name, back))
    return VD_HIST_NAME_BACK;
  if (!hex && !all_hex(name))
    return VD_HIST_NAME_TAG;
  hex = hex ? hex : name;
  n = strlen(hex);
  if (n < 4 || n > 64) {
    vd_buf_reset(err);
    vd_buf_addf(err, "revision '%s': a hash prefix needs 4 to 64 hex digits",
                name);
    return VD_EINVALID;
  }
  memcpy(want, "sha256:", 7);
  for (i = 0; i <= n; i++) /* the NUL too */
    want[7 + i] = hex[i] >= 'A' && hex[i] <= 'F' ? (char)(hex[i] + 32)
                                                  : hex[i];
  return VD_HIST_NAME_PREFIX;
}

int vd_hist_resolve(sqlite3 *db, const char *path, const char *name,
                    char out[VD_REVISION_NAME_MAX], vd_buf_t *err) {
  sqlite3_stmt *st;
  char want[VD_REVISION_NAME_MAX];
  int64_t back;
  int src, how = vd_hist_name_read(name, &back, want, err);
  out[0] = '\0';
  if (how == VD_HIST_NAME_BACK)
    return nth_active(db, path, back, out, err);
  if (how == VD_HIST_NAME_PREFIX)
    return by_prefix(db, path, name, want, out, err);
  if (how != VD_HIST_NAME_TAG)
    return how;
  src = sqlite3_prepare_v2(db,
                           "SELECT revision FROM revision_tags WHERE name = ?",
                           -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "looking up a tag");
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    snprintf(out, VD_REVISION_NAME_MAX, "%s",
             (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (src == SQLITE_ROW)
    return 0;
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "looking up a tag");
  vd_buf_reset(err);
  vd_buf_addf(err, "history database '%s': no revision named '%s' (a hash "
                   "prefix, active, previous, @-N or a tag)", path, name);
  return VD_ENOT_FOUND;
}

int vd_history_each_activation(const char *db_path,
                               int (*cb)(const vd_history_activation_t *a,
                                         void *arg),
                               void *arg, vd_buf_t *err) {
  sqlite3 *db;
  sqlite3_stmt *st = NULL;
  int rc = vd_history_db_open_ro(&db, db_path, err), src = SQLITE_OK;
  if (rc)
    return rc;
  src = sqlite3_prepare_v2(db, "SELECT " ACT_COLUMNS " FROM activations"
                               " ORDER BY id", -1, &st, NULL);
  while (src == SQLITE_OK && rc == 0 &&
         (src = sqlite3_step(st)) == SQLITE_ROW) {
    vd_history_activation_t a;
#define ACT_TEXT_(i) ((const char *)sqlite3_column_text(st, (i) + 1))
    a.id = sqlite3_column_int64(st, 0);
    a.at_ms = sqlite3_column_int64(st, ACOL_AT_MS + 1);
    a.at = ACT_TEXT_(ACOL_AT);
    a.revision = ACT_TEXT_(ACOL_REVISION);
    a.trigger = ACT_TEXT_(ACOL_CAUSE);
    a.who = ACT_TEXT_(ACOL_WHO);
    a.source_dir = ACT_TEXT_(ACOL_SOURCE_DIR);
    a.error = ACT_TEXT_(ACOL_ERROR);
#undef ACT_TEXT_
    a.ok = sqlite3_column_int(st, ACOL_OK + 1) != 0;
    rc = cb(&a, arg);
    src = SQLITE_OK;
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = vd_hist_db_err(err, db_path, db, src, "reading activations");
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc;
}

int vd_history_resolve(const char *db_path, const char *name,
                       char out[VD_REVISION_NAME_MAX], char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  int rc;
  if (errmsg)
    *errmsg = NULL;
  out[0] = '\0';
  if (vd_history_is_postgres(db_path))
    return vd_hist_give_err(errmsg, &err,
                            vd_hist_pg_resolve(db_path, name, out, &err));
  rc = vd_history_db_open_ro(&db, db_path, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  rc = vd_hist_resolve(db, db_path, name, out, &err);
  sqlite3_close(db);
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_tag_name_ok(const char *tag, vd_buf_t *why) {
  size_t i, n = strlen(tag);
  int64_t back;
  if (n == 0 || n > 64) {
    vd_buf_adds(why, "a tag has 1 to 64 characters");
    return VD_EINVALID;
  }
  if (!((tag[0] >= 'a' && tag[0] <= 'z') || (tag[0] >= 'A' && tag[0] <= 'Z'))) {
    vd_buf_addf(why, "tag '%s' must start with a letter", tag);
    return VD_EINVALID;
  }
  for (i = 0; i < n; i++) {
    char c = tag[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')) {
      vd_buf_addf(why, "tag '%s': only letters, digits, '.', '-' and '_'",
                  tag);
      return VD_EINVALID;
    }
  }
  if (all_hex(tag) || strcmp(tag, "active") == 0 ||
      strcmp(tag, "previous") == 0 || steps_back(tag, &back) ||
      strncmp(tag, "sha256", 6) == 0) {
    vd_buf_addf(why, "tag '%s' would read as a revision name (a hash prefix, "
                     "active, previous)", tag);
    return VD_EINVALID;
  }
  return 0;
}

int vd_history_tag(const char *db_path, const char *name, const char *tag,
                   const char *who, char out[VD_REVISION_NAME_MAX],
                   char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t now = vd_now_ms();
  char at[32];
  int rc, src;
  if (errmsg)
    *errmsg = NULL;
  out[0] = '\0';
  if ((rc = vd_history_tag_name_ok(tag, &err)) != 0)
    return vd_hist_give_err(errmsg, &err, rc);
  if (vd_history_is_postgres(db_path))
    return vd_hist_give_err(errmsg, &err, vd_hist_pg_tag(db_path, name, tag,
                                                         who, out, &err));
  /* the read-only opening's checks first: a verdict database, this
   * schema; then a connection to write the one row with */
  rc = vd_history_db_open_ro(&db, db_path, &err);
  sqlite3_close(db);
  db = NULL;
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  rc = vd_hist_open_aux(&db, db_path, &err);
  if (rc == 0 && (src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL,
                                     NULL)) != SQLITE_OK)
    rc = vd_hist_db_err(&err, db_path, db, src, "tagging a revision");
  if (rc == 0)
    rc = vd_hist_resolve(db, db_path, name, out, &err);
  if (rc == 0) {
    src = sqlite3_prepare_v2(db,
                             "SELECT revision, who, at FROM revision_tags"
                             " WHERE name = ?",
                             -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_text(st, 1, tag, -1, SQLITE_STATIC);
      src = sqlite3_step(st);
      if (src == SQLITE_ROW) {
        const char *w = (const char *)sqlite3_column_text(st, 1);
        vd_buf_reset(&err);
        vd_buf_addf(&err, "tag '%s' already names %s (given by %s at %s)",
                    tag, sqlite3_column_text(st, 0), w ? w : "?",
                    sqlite3_column_text(st, 2));
        rc = VD_EINVALID;
      } else if (src != SQLITE_DONE) {
        rc = vd_hist_db_err(&err, db_path, db, src, "tagging a revision");
      }
      sqlite3_finalize(st);
    } else {
      rc = vd_hist_db_err(&err, db_path, db, src, "tagging a revision");
    }
  }
  if (rc == 0) {
    vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
    src = sqlite3_prepare_v2(db,
                             "INSERT INTO revision_tags (name, revision, who,"
                             " at_ms, at) VALUES (?, ?, ?, ?, ?)",
                             -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_text(st, 1, tag, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, out, -1, SQLITE_STATIC);
      if (who)
        sqlite3_bind_text(st, 3, who, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, now);
      sqlite3_bind_text(st, 5, at, -1, SQLITE_STATIC);
      src = sqlite3_step(st);
      src = src == SQLITE_DONE ? SQLITE_OK : src;
      sqlite3_finalize(st);
    }
    if (src == SQLITE_OK)
      src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK)
      rc = vd_hist_db_err(&err, db_path, db, src, "tagging a revision");
  }
  if (db && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(db);
  if (rc)
    out[0] = '\0';
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_rollback_in_force(const char *db_path,
                                 char out[VD_REVISION_NAME_MAX],
                                 char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  sqlite3_stmt *st;
  int rc, src;
  if (errmsg)
    *errmsg = NULL;
  out[0] = '\0';
  rc = vd_history_db_open_ro(&db, db_path, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  src = sqlite3_prepare_v2(db,
                           "SELECT revision, source_dir LIKE 'db:%'"
                           "  FROM activations WHERE ok = 1"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL);
  if (src == SQLITE_OK) {
    src = sqlite3_step(st);
    if (src == SQLITE_ROW && sqlite3_column_int(st, 1) &&
        sqlite3_column_text(st, 0)) {
      snprintf(out, VD_REVISION_NAME_MAX, "%s",
               (const char *)sqlite3_column_text(st, 0));
      rc = 1;
    }
    src = src == SQLITE_ROW ? SQLITE_DONE : src;
    sqlite3_finalize(st);
  }
  if (src != SQLITE_DONE)
    rc = vd_hist_db_err(&err, db_path, db, src, "reading the activations");
  sqlite3_close(db);
  if (rc > 0) {
    vd_buf_release(&err);
    return rc;
  }
  return vd_hist_give_err(errmsg, &err, rc);
}
