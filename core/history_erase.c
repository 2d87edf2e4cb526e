/*
 * history_erase.c - `verdict history erase`: removing one customer's
 * personal data from the history while the chain still verifies.
 *
 * Owns nothing past one call.  Records from chain_format.v2_from on are
 * hashed through a salted digest of their personal part (customer_id,
 * request, facts: history_chain.c, vd_hist_personal_digest()).  Erasing
 * one keeps that digest in personal_digest, drops the salt, sets
 * customer_id to NULL, removes the personal fields from the request's
 * input and replaces every personal value in facts with null; verify
 * then takes the kept digest in place of recomputing it.  The erasure is
 * recorded in `erasures` (who, when, how many, which seqs, which fields)
 * in the same transaction, and verify checks that the records it finds
 * erased are the ones `erasures` accounts for.  Never the customer id:
 * the record of an erasure must not undo it.
 *
 * Invariants:
 *   - one write transaction (BEGIN IMMEDIATE, so the daemon's writer
 *     waits at most one erasure, and the erasure a batch): all the
 *     customer's records, and the erasures row, or nothing;
 *   - a record stored before schema 5 (seq < v2_from) is never touched:
 *     its hash commits to its raw bytes, so it is counted and left.
 *
 * A PostgreSQL history is erased by history_pg.c (vd_hist_pg_erase(),
 * every node's records in one transaction) through the same per-record
 * step, vd_hist_erase_record().
 *
 * Threads: the caller's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* ========================================================================
 * Rewriting a record's JSON (erasure here, pseudonyms in
 * history_pseudonym.c)
 * ====================================================================== */

static int is_field(const char *key, const vd_hist_personal_t *p) {
  size_t i;
  if (strcmp(key, "customer_id") == 0)
    return 1;
  for (i = 0; i < p->nfields; i++)
    if (strcmp(key, p->fields[i]) == 0)
      return 1;
  return 0;
}

/* The index of S among P's values, or -1. */
static int value_index(const char *s, const vd_hist_personal_t *p) {
  size_t i;
  for (i = 0; i < p->n; i++)
    if (strcmp(s, p->v[i]) == 0)
      return (int)i;
  return -1;
}

/* S's replacement: a JSON string, or null. */
static void add_repl(vd_buf_t *b, const char *repl) {
  if (repl)
    vd_buf_add_json_str(b, repl, strlen(repl));
  else
    vd_buf_adds(b, "null");
}

/* Write V as compact JSON into B.  IN_INPUT: V is the request's top-level
 * "input" object, whose personal members MODE drops (VD_HIST_DROP) or
 * whose string values it replaces (VD_HIST_MAP); with VD_HIST_FACTS any
 * string equal to a personal value is replaced, wherever it is. */
static void write_json(vd_buf_t *b, yajl_val v, int depth, int in_input,
                       const vd_hist_personal_t *p, int mode) {
  size_t i;
  int first = 1, k;
  switch (v ? v->type : yajl_t_null) {
  case yajl_t_string:
    if (mode == VD_HIST_FACTS && (k = value_index(v->u.string, p)) >= 0)
      add_repl(b, p->repl[k]);
    else
      vd_buf_add_json_str(b, v->u.string, strlen(v->u.string));
    break;
  case yajl_t_number: vd_buf_adds(b, v->u.number.r); break;
  case yajl_t_true: vd_buf_adds(b, "true"); break;
  case yajl_t_false: vd_buf_adds(b, "false"); break;
  case yajl_t_object:
    vd_buf_addc(b, '{');
    for (i = 0; i < v->u.object.len; i++) {
      const char *key = v->u.object.keys[i];
      yajl_val val = v->u.object.values[i];
      int personal = in_input && is_field(key, p);
      if (personal && mode == VD_HIST_DROP)
        continue;
      if (!first)
        vd_buf_addc(b, ',');
      first = 0;
      vd_buf_add_json_str(b, key, strlen(key));
      vd_buf_addc(b, ':');
      if (personal && YAJL_IS_STRING(val) &&
          (k = value_index(val->u.string, p)) >= 0)
        add_repl(b, p->repl[k]);
      else
        write_json(b, val, depth + 1,
                   mode != VD_HIST_FACTS && depth == 0 &&
                       strcmp(key, "input") == 0,
                   p, mode);
    }
    vd_buf_addc(b, '}');
    break;
  case yajl_t_array:
    vd_buf_addc(b, '[');
    for (i = 0; i < v->u.array.len; i++) {
      if (i)
        vd_buf_addc(b, ',');
      write_json(b, v->u.array.values[i], depth + 1, 0, p, mode);
    }
    vd_buf_addc(b, ']');
    break;
  default: vd_buf_adds(b, "null"); break;
  }
}

void vd_hist_json_rewrite(vd_buf_t *b, yajl_val v,
                          const vd_hist_personal_t *p, int mode) {
  write_json(b, v, 0, 0, p, mode);
}

void vd_hist_personal_collect(yajl_val req, vd_hist_personal_t *p) {
  static const char *path[] = {"input", NULL};
  yajl_val in = yajl_tree_get(req, path, yajl_t_object);
  size_t i;
  if (!in)
    return;
  for (i = 0; i < in->u.object.len && p->n < VD_HIST_MAX_PERSONAL; i++)
    if (is_field(in->u.object.keys[i], p) &&
        YAJL_IS_STRING(in->u.object.values[i]) &&
        value_index(in->u.object.values[i]->u.string, p) < 0) {
      p->v[p->n] = in->u.object.values[i]->u.string;
      p->repl[p->n++] = NULL;
    }
}

void vd_hist_erase_record(const vd_hist_field_t f[NCOLS],
                          const char salt[VD_HIST_SALT_HEX],
                          const char *customer, const char *const *fields,
                          size_t nfields, vd_hist_erased_t *e) {
  vd_hist_personal_t p;
  yajl_val tree = NULL, ftree = NULL;
  uint8_t d[32];
  memset(e, 0, sizeof *e);
  vd_hist_personal_digest(salt, f, d);
  vd_hist_to_hex(d, sizeof d, e->digest);
  memset(&p, 0, sizeof p);
  p.fields = fields;
  p.nfields = nfields;
  p.v[p.n++] = customer;
  /* the request: its input without the personal fields; one that does
   * not parse (a refused bad_request line) goes whole */
  if (f[COL_REQUEST].p &&
      (tree = yajl_tree_parse(f[COL_REQUEST].p, NULL, 0)) != NULL) {
    vd_hist_personal_collect(tree, &p);
    vd_hist_json_rewrite(&e->request, tree, &p, VD_HIST_DROP);
    e->has_request = 1;
  }
  if (f[COL_FACTS].p &&
      (ftree = yajl_tree_parse(f[COL_FACTS].p, NULL, 0)) != NULL) {
    vd_hist_json_rewrite(&e->facts, ftree, &p, VD_HIST_FACTS);
    e->has_facts = 1;
  }
  yajl_tree_free(tree);
  yajl_tree_free(ftree);
}

void vd_hist_erased_release(vd_hist_erased_t *e) {
  vd_buf_release(&e->request);
  vd_buf_release(&e->facts);
}

void vd_hist_erasure_fields(vd_buf_t *b, const char *const *fields,
                            size_t nfields) {
  size_t i;
  vd_buf_adds(b, "customer_id");
  for (i = 0; i < nfields; i++)
    if (strcmp(fields[i], "customer_id") != 0)
      vd_buf_addf(b, ",%s", fields[i]);
}

/* Erase the row ST points at (columns READ_COLUMNS, personal_salt) with
 * UP.  CUSTOMER is the customer asked for. */
static int erase_row(sqlite3_stmt *st, sqlite3_stmt *up, const char *customer,
                     const char *const *fields, size_t nfields) {
  vd_hist_field_t f[NCOLS];
  vd_hist_erased_t e;
  int i, src;
  for (i = 0; i < NCOLS; i++)
    f[i] = vd_hist_column_field(st, i + 1);
  vd_hist_erase_record(f, (const char *)sqlite3_column_text(st, NCOLS + 2),
                       customer, fields, nfields, &e);
  sqlite3_bind_text(up, 1, e.digest, 64, SQLITE_STATIC);
  if (e.has_request)
    sqlite3_bind_text(up, 2, e.request.data, (int)e.request.len,
                      SQLITE_STATIC);
  else
    sqlite3_bind_null(up, 2);
  if (e.has_facts)
    sqlite3_bind_text(up, 3, e.facts.data, (int)e.facts.len, SQLITE_STATIC);
  else
    sqlite3_bind_null(up, 3);
  sqlite3_bind_int64(up, 4, sqlite3_column_int64(st, 0));
  src = sqlite3_step(up);
  sqlite3_reset(up);
  sqlite3_clear_bindings(up);
  vd_hist_erased_release(&e);
  return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* The erasures row for what was just erased. */
static int record_erasure(sqlite3 *db, const char *who,
                          const char *const *fields, size_t nfields,
                          vd_history_erase_report_t *rep) {
  sqlite3_stmt *st;
  vd_buf_t names = VD_BUF_INIT;
  char at[40];
  int64_t now = vd_now_ms();
  int src;
  vd_hist_erasure_fields(&names, fields, nfields);
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  src = sqlite3_prepare_v2(db, "INSERT INTO erasures (at_ms, at, who,"
                               " records, first_seq, last_seq, fields)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL);
  if (src == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, at, -1, SQLITE_STATIC);
    if (who)
      sqlite3_bind_text(st, 3, who, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, rep->erased);
    sqlite3_bind_int64(st, 5, rep->first_seq);
    sqlite3_bind_int64(st, 6, rep->last_seq);
    sqlite3_bind_text(st, 7, names.data, (int)names.len, SQLITE_STATIC);
    src = sqlite3_step(st);
    rep->erasure = sqlite3_last_insert_rowid(db);
  }
  sqlite3_finalize(st);
  vd_buf_release(&names);
  return src == SQLITE_DONE ? SQLITE_OK : src;
}

int vd_history_erase(const char *db_path, const char *customer_id,
                     const char *const *fields, size_t nfields,
                     const char *who, vd_history_erase_report_t *rep,
                     char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db = NULL;
  sqlite3_stmt *list = NULL, *st = NULL, *up = NULL;
  int64_t v2_from = -1, v2_ms = 0, *seqs = NULL;
  size_t nseqs = 0, cap = 0, k;
  int rc, src;
  memset(rep, 0, sizeof *rep);
  if (!customer_id || !*customer_id) {
    vd_buf_adds(&err, "erase: no customer id given");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  if (vd_history_is_postgres(db_path))
    return vd_hist_pg_erase(db_path, customer_id, fields, nfields, who, rep,
                            errmsg);
  /* the checks every reader makes (a verdict database, this schema) */
  rc = vd_history_db_open_ro(&db, db_path, &err);
  sqlite3_close(db);
  db = NULL;
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  src = vd_hist_sqlite_open(db_path, &db, SQLITE_OPEN_READWRITE);
  if (src == SQLITE_OK) {
    sqlite3_extended_result_codes(db, 1);
    vd_hist_busy_poll(db); /* beside a daemon's writer */
    src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  }
  if (src != SQLITE_OK) {
    rc = vd_hist_db_err(&err, db_path, db, src, "starting the erasure");
    goto out;
  }
  rc = vd_hist_read_format(db, db_path, &v2_from, &v2_ms, &err);
  if (rc)
    goto out;
  if (v2_from < 1) {
    vd_buf_addf(&err, "history database '%s': the chain_format row is "
                      "missing; run verdict history verify", db_path);
    rc = VD_EINVALID;
    goto out;
  }
  /* the customer's records first (decisions_customer), then each by seq:
   * the erasure moves them out of that index */
  src = sqlite3_prepare_v2(db, "SELECT seq FROM decisions"
                               " WHERE customer_id = ? ORDER BY seq",
                           -1, &list, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_prepare_v2(db, "SELECT " READ_COLUMNS ", personal_salt"
                                 " FROM decisions WHERE seq = ?",
                             -1, &st, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_prepare_v2(db, "UPDATE decisions SET personal_digest = ?,"
                                 " personal_salt = NULL, customer_id = NULL,"
                                 " request = ?, facts = ? WHERE seq = ?",
                             -1, &up, NULL);
  if (src != SQLITE_OK) {
    rc = vd_hist_db_err(&err, db_path, db, src, "preparing the erasure");
    goto out;
  }
  sqlite3_bind_text(list, 1, customer_id, -1, SQLITE_STATIC);
  while ((src = sqlite3_step(list)) == SQLITE_ROW) {
    if (nseqs == cap) {
      int64_t *p = realloc(seqs, (cap = cap ? 2 * cap : 64) * sizeof *p);
      if (!p) {
        rc = VD_ENOMEM;
        goto out;
      }
      seqs = p;
    }
    seqs[nseqs++] = sqlite3_column_int64(list, 0);
  }
  if (src != SQLITE_DONE) {
    rc = vd_hist_db_err(&err, db_path, db, src, "finding the records");
    goto out;
  }
  src = SQLITE_DONE;
  for (k = 0; k < nseqs; k++) {
    int64_t seq = seqs[k];
    if (seq < v2_from) {
      rep->old_form++;
      continue;
    }
    sqlite3_bind_int64(st, 1, seq);
    if ((src = sqlite3_step(st)) != SQLITE_ROW) {
      rc = vd_hist_db_err(&err, db_path, db, src, "reading a record");
      goto out;
    }
    if (sqlite3_column_bytes(st, NCOLS + 2) != VD_HIST_SALT_HEX) {
      vd_buf_addf(&err, "history database '%s': record seq %" PRId64
                        " has no personal_salt to erase it by; run verdict "
                        "history verify", db_path, seq);
      rc = VD_EINVALID;
      goto out;
    }
    src = erase_row(st, up, customer_id, fields, nfields);
    sqlite3_reset(st);
    if (src != SQLITE_OK)
      break;
    if (!rep->first_seq)
      rep->first_seq = seq;
    rep->last_seq = seq;
    rep->erased++;
    src = SQLITE_DONE;
  }
  if (src != SQLITE_DONE) {
    rc = vd_hist_db_err(&err, db_path, db, src, "erasing");
    goto out;
  }
  if (rep->erased) {
    src = record_erasure(db, who, fields, nfields, rep);
    if (src != SQLITE_OK) {
      rc = vd_hist_db_err(&err, db_path, db, src, "recording the erasure");
      goto out;
    }
  }
  sqlite3_finalize(list);
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  list = st = up = NULL;
  src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    rc = vd_hist_db_err(&err, db_path, db, src, "committing the erasure");
out:
  free(seqs);
  sqlite3_finalize(list);
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  if (db && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(db);
  if (rc)
    memset(rep, 0, sizeof *rep);
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_last_revision(const char *db_path, char *out, size_t n,
                             char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  sqlite3_stmt *st;
  int rc, src;
  char full[VD_REVISION_NAME_MAX];
  if (vd_history_is_postgres(db_path)) { /* a fleet: the fleet's revision */
    vd_buf_release(&err);
    rc = vd_history_resolve(db_path, "active", full, errmsg);
    if (rc == 0)
      snprintf(out, n, "%s", full);
    return rc;
  }
  rc = vd_history_db_open_ro(&db, db_path, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  src = sqlite3_prepare_v2(db, "SELECT revision FROM activations WHERE ok = 1"
                               " ORDER BY id DESC LIMIT 1", -1, &st, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
    src = SQLITE_DONE;
  } else if (src == SQLITE_DONE) {
    vd_buf_addf(&err, "history database '%s': no policy revision was ever "
                      "active; give --policies DIR", db_path);
    rc = VD_ENOT_FOUND;
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = vd_hist_db_err(&err, db_path, db, src, "reading activations");
  sqlite3_finalize(st);
  sqlite3_close(db);
  return vd_hist_give_err(errmsg, &err, rc);
}
