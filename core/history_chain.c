/*
 * history_chain.c - the hash chains: a row's canonical bytes, SHA-256,
 * and verification of a whole database (`verdict history verify`,
 * --anchor).  Two chains: decisions, and activations.
 *
 * Owns no state.  The writer (history_writer.c) hashes each row it
 * inserts with vd_hist_chain_hash(), history_revs.c each activation with
 * vd_hist_activation_hash(); verify recomputes every hash from the rows as
 * stored.  Both see a row through vd_hist_field_t, so the bytes hashed on
 * the way in are the bytes hashed on the way back.
 *
 * Invariants (docs/history.md, "The hash chain", "Canonical bytes" and
 * "The activations chain"):
 *   - canonical bytes of row seq: the netstring "3:vd1,", seq, then each
 *     column of VD_HISTORY_COLUMNS in order, text as "<len>:<bytes>,",
 *     integers as the netstring of their decimal text, NULL as "-,";
 *   - hash(seq) = SHA-256(hash(seq - 1) || canonical bytes), hash(0) = 32
 *     zero bytes; chain_head holds the last (seq, hex hash);
 *   - an activation the same with "3:va1,", its id and the columns of
 *     VD_HIST_ACT_COLUMNS, chained from the activation before it;
 *     activation_head holds the last (id, hex hash) and how many rows the
 *     migration to schema 3 chained as it found them.
 *   - from schema 5, records from chain_format.v2_from on are "3:vd2,":
 *     the personal columns (VD_HIST_PERSONAL_COL: customer_id, request,
 *     facts) are replaced by one digest of them with a per-record salt
 *     (vd_hist_personal_digest()), so erasing them leaves the chain
 *     whole: the erased row keeps that digest in personal_digest and
 *     loses its salt, which is what keeps a short value (a phone number)
 *     from being guessed back from the digest.  Records before v2_from
 *     keep "3:vd1," as they were written.
 *   These bytes never change: a stored chain must verify forever.
 *
 * Threads: a record's personal digest and the tail of its canonical
 * bytes (vd_hist_v2_tail()) are made on the thread that submits it, its
 * chaining (vd_hist_chain_hash_tail()) on the writer thread, an
 * activation's on the daemon's main thread, the migration's seal on the
 * opener's; verify on
 * its caller's, through a read-only connection of its own in one read
 * snapshot, so it never blocks the writer.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>
#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* ========================================================================
 * Rows and their canonical bytes
 * ====================================================================== */

static vd_hist_field_t text_field(const char *s, size_t n) {
  vd_hist_field_t f = {s, s ? n : 0, 0, 0};
  return f;
}

static vd_hist_field_t str_field(const char *s) {
  return text_field(s, s ? strlen(s) : 0);
}

static vd_hist_field_t int_field(int64_t v) {
  vd_hist_field_t f = {NULL, 0, v, 1};
  return f;
}

void vd_hist_record_fields(const vd_record_t *r,
                           vd_hist_field_t f[NCOLS]) {
  f[COL_DECISION_ID] = str_field(r->decision_id);
  f[COL_RECEIVED_MS] = int_field(r->received_ms);
  f[COL_AT] = str_field(r->at);
  f[COL_AT_MS] = int_field(r->at_ms);
  f[COL_KIND] = str_field(r->kind);
  f[COL_REGION] = str_field(r->region);
  f[COL_POLICY_REGION] = str_field(r->policy_region);
  f[COL_REVISION] = str_field(r->revision);
  f[COL_COMPLAINT_ID] = str_field(r->complaint_id);
  f[COL_CUSTOMER_ID] = str_field(r->customer_id);
  f[COL_CATEGORY] = str_field(r->category);
  f[COL_REQUEST] = text_field(r->request, r->request_len);
  f[COL_RESULT] = text_field(r->result, r->result_len);
  f[COL_TRACE] = text_field(r->trace, r->trace_len);
  f[COL_FACTS] = text_field(r->facts, r->facts_len);
  f[COL_ERROR_CODE] = str_field(r->error_code);
  f[COL_ERROR_MESSAGE] = str_field(r->error_message);
  f[COL_ERROR_PATH] = str_field(r->error_path);
  f[COL_ELAPSED_US] = int_field(r->elapsed_us);
  f[COL_CLIENT] = str_field(r->client);
}

/* Column i of a row as stored, the way the canonical bytes see it: an
 * integer stays an integer, anything else (text, or a value someone put in
 * an integer column) is its text, NULL is NULL. */
vd_hist_field_t vd_hist_column_field(sqlite3_stmt *st, int i) {
  switch (sqlite3_column_type(st, i)) {
  case SQLITE_NULL:
    return text_field(NULL, 0);
  case SQLITE_INTEGER:
    return int_field(sqlite3_column_int64(st, i));
  default: {
    const char *p = (const char *)sqlite3_column_text(st, i);
    return text_field(p ? p : "", (size_t)sqlite3_column_bytes(st, i));
  }
  }
}

/* Decimal digits of v at the end of buf[0..24), without a sign; returns
 * where they start.  (snprintf, per field of every record, was a tenth of
 * the writer's time.) */
static char *decimal(char buf[24], uint64_t v) {
  char *p = buf + 24;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return p;
}

/* One field of the canonical bytes: "<length>:<bytes>," (a netstring), or
 * "-," for NULL. */
static void hash_piece(struct sha256_ctx *c, const char *p, size_t n) {
  char buf[25], *d;
  if (!p) {
    sha256_update(c, 2, (const uint8_t *)"-,");
    return;
  }
  buf[24] = ':';
  d = decimal(buf, (uint64_t)n);
  sha256_update(c, (size_t)(buf + 25 - d), (const uint8_t *)d);
  sha256_update(c, n, (const uint8_t *)p);
  sha256_update(c, 1, (const uint8_t *)",");
}

/* An integer field: the netstring of its decimal text ("-12" for -12). */
static void hash_int(struct sha256_ctx *c, int64_t v) {
  char buf[25], *d;
  d = decimal(buf, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
  if (v < 0)
    *--d = '-';
  hash_piece(c, d, (size_t)(buf + 24 - d));
}

/* out = SHA-256(prev || netstring(TAG) pos f[0] ... f[n-1]): the one
 * shape both chains hash. */
static void chain_hash(const uint8_t prev[32], const char *tag, int64_t pos,
                       const vd_hist_field_t *f, int n, uint8_t out[32]) {
  struct sha256_ctx c;
  int i;
  sha256_init(&c);
  sha256_update(&c, 32, prev);
  hash_piece(&c, tag, strlen(tag));
  hash_int(&c, pos);
  for (i = 0; i < n; i++) {
    if (f[i].is_int)
      hash_int(&c, f[i].i);
    else
      hash_piece(&c, f[i].p, f[i].n);
  }
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* out = SHA-256(prev || "3:vd1," seq f[0] ... f[NCOLS-1]), see the
 * docs/history.md, "Canonical bytes". */
void vd_hist_chain_hash(const uint8_t prev[32], int64_t seq,
                        const vd_hist_field_t f[NCOLS], uint8_t out[32]) {
  chain_hash(prev, "vd1", seq, f, NCOLS, out);
}

/* The personal part of a record: the columns that can hold personal
 * data, salted.  out = SHA-256("3:vp1," salt customer_id request facts),
 * each a netstring as in the canonical bytes. */
void vd_hist_personal_digest(const char salt[VD_HIST_SALT_HEX],
                             const vd_hist_field_t f[NCOLS], uint8_t out[32]) {
  struct sha256_ctx c;
  sha256_init(&c);
  hash_piece(&c, "vp1", 3);
  hash_piece(&c, salt, VD_HIST_SALT_HEX);
  hash_piece(&c, f[COL_CUSTOMER_ID].p, f[COL_CUSTOMER_ID].n);
  hash_piece(&c, f[COL_REQUEST].p, f[COL_REQUEST].n);
  hash_piece(&c, f[COL_FACTS].p, f[COL_FACTS].n);
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* out = SHA-256(prev || "3:vd2," seq, every column but the personal
 * ones, the personal digest as 64 hex digits): docs/history.md, "Schema
 * 4: the personal part". */
void vd_hist_chain_hash_v2(const uint8_t prev[32], int64_t seq,
                           const vd_hist_field_t f[NCOLS],
                           const char digest[64], uint8_t out[32]) {
  struct sha256_ctx c;
  int i;
  sha256_init(&c);
  sha256_update(&c, 32, prev);
  hash_piece(&c, "vd2", 3);
  hash_int(&c, seq);
  for (i = 0; i < NCOLS; i++) {
    if (VD_HIST_PERSONAL_COL(i))
      continue;
    if (f[i].is_int)
      hash_int(&c, f[i].i);
    else
      hash_piece(&c, f[i].p, f[i].n);
  }
  hash_piece(&c, digest, 64);
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* One netstring into OUT (when not NULL); returns its length.  The same
 * bytes as hash_piece(). */
static size_t put_piece(char *out, const char *p, size_t n) {
  char buf[25], *d;
  size_t nd;
  if (!p) {
    if (out)
      memcpy(out, "-,", 2);
    return 2;
  }
  buf[24] = ':';
  d = decimal(buf, (uint64_t)n);
  nd = (size_t)(buf + 25 - d);
  if (out) {
    memcpy(out, d, nd);
    memcpy(out + nd, p, n);
    out[nd + n] = ',';
  }
  return nd + n + 1;
}

/* The same bytes as hash_int(). */
static size_t put_int(char *out, int64_t v) {
  char buf[25], *d;
  d = decimal(buf, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
  if (v < 0)
    *--d = '-';
  return put_piece(out, d, (size_t)(buf + 24 - d));
}

/* What vd_hist_chain_hash_v2() hashes after hash_int(seq), in its order. */
size_t vd_hist_v2_tail(const vd_hist_field_t f[NCOLS], const char digest[64],
                       char *out) {
  size_t n = 0;
  int i;
  for (i = 0; i < NCOLS; i++) {
    if (VD_HIST_PERSONAL_COL(i))
      continue;
    if (f[i].is_int)
      n += put_int(out ? out + n : NULL, f[i].i);
    else
      n += put_piece(out ? out + n : NULL, f[i].p, f[i].n);
  }
  if (!out)
    return n + 4 + 64; /* "64:", the digest, "," */
  return n + put_piece(out + n, digest, 64);
}

void vd_hist_chain_hash_tail(const uint8_t prev[32], int64_t seq,
                             const char *tail, size_t n, uint8_t out[32]) {
  struct sha256_ctx c;
  sha256_init(&c);
  sha256_update(&c, 32, prev);
  hash_piece(&c, "vd2", 3);
  hash_int(&c, seq);
  sha256_update(&c, n, (const uint8_t *)tail);
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* The activations' chain has its own tag, so no activation's bytes can
 * ever pass for a decision's or the other way round. */
void vd_hist_activation_hash(const uint8_t prev[32], int64_t id,
                             const vd_hist_field_t f[NACOLS],
                             uint8_t out[32]) {
  chain_hash(prev, "va1", id, f, NACOLS, out);
}

/* A fleet's per-node chains (history_pg.c) take the node into the bytes,
 * first among the fields, under tags of their own ("vn1" decisions, "vm1"
 * activations), so no node's record can pass for another node's or for a
 * single file's. */
void vd_hist_node_hash(const uint8_t prev[32], int activation,
                       const char *node, int64_t pos,
                       const vd_hist_field_t *f, int n, uint8_t out[32]) {
  vd_hist_field_t g[NCOLS + 1];
  assert(n <= NCOLS);
  g[0] = str_field(node);
  memcpy(g + 1, f, (size_t)n * sizeof *f);
  chain_hash(prev, activation ? "vm1" : "vn1", pos, g, n + 1, out);
}

/* A node's record in the personal-digest form ("vn2"): as "vn1", but
 * with the personal columns replaced by DIGEST, last, as "vd2" does. */
void vd_hist_node_hash_v2(const uint8_t prev[32], const char *node,
                          int64_t seq, const vd_hist_field_t f[NCOLS],
                          const char digest[64], uint8_t out[32]) {
  vd_hist_field_t g[NCOLS + 2];
  int i, n = 0;
  g[n++] = str_field(node);
  for (i = 0; i < NCOLS; i++)
    if (!VD_HIST_PERSONAL_COL(i))
      g[n++] = f[i];
  g[n++] = (vd_hist_field_t){digest, 64, 0, 0};
  chain_hash(prev, "vn2", seq, g, n, out);
}

void vd_hist_to_hex(const uint8_t *d, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}

static int hex_val(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* 64 lowercase hex digits to 32 bytes.  Returns 0 or -1. */
int vd_hist_from_hex(const char *s, size_t n, uint8_t out[32]) {
  size_t i;
  if (!s || n != 64)
    return -1;
  for (i = 0; i < 32; i++) {
    int hi = hex_val((unsigned char)s[2 * i]);
    int lo = hex_val((unsigned char)s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

void vd_hist_sha256(const void *data, size_t n, uint8_t out[32]) {
  struct sha256_ctx c;
  sha256_init(&c);
  sha256_update(&c, n, data);
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

void vd_hist_sha256_hex(const void *data, size_t n, char out[65]) {
  uint8_t d[SHA256_DIGEST_SIZE];
  vd_hist_sha256(data, n, d);
  vd_hist_to_hex(d, sizeof d, out);
}

/* ========================================================================
 * Where the schema 5 format begins
 * ====================================================================== */

int vd_hist_read_format(sqlite3 *db, const char *path, int64_t *v2_from,
                        int64_t *v2_ms, vd_buf_t *err) {
  sqlite3_stmt *st;
  int src = sqlite3_prepare_v2(db, "SELECT v2_from, migrated_ms FROM"
                                   " chain_format WHERE id = 1",
                               -1, &st, NULL);
  *v2_from = -1;
  *v2_ms = 0;
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    *v2_from = sqlite3_column_int64(st, 0);
    *v2_ms = sqlite3_column_int64(st, 1);
    src = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading chain_format");
  return 0;
}

/* Where the chain starts: seq 1 after the zero hash; after an archiving
 * ('moved' rows here), one past the archive's last record, after its
 * hash; in an archive file ('copy'), its first record, after the hash
 * before it.  *archived_to: the last seq archived out (0: none). */
int vd_hist_chain_start(sqlite3 *db, const char *path, int64_t *first,
                        uint8_t prev[32], int64_t *archived_to,
                        int64_t *archived_ms, int *copy, vd_buf_t *err) {
  sqlite3_stmt *st;
  int src = sqlite3_prepare_v2(db, "SELECT role, first_seq, last_seq,"
                                   " start_hash, anchor, at_ms FROM archives"
                                   " ORDER BY id DESC LIMIT 1",
                               -1, &st, NULL);
  *first = 1;
  *archived_to = *archived_ms = 0;
  *copy = 0;
  memset(prev, 0, 32);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *role = (const char *)sqlite3_column_text(st, 0);
    int moved = role && strcmp(role, "moved") == 0;
    const char *h = (const char *)sqlite3_column_text(st, moved ? 4 : 3);
    if (vd_hist_from_hex(h, h ? strlen(h) : 0, prev) != 0) {
      sqlite3_finalize(st);
      vd_buf_reset(err);
      vd_buf_addf(err, "history database '%s': the last archives row's hash "
                       "is not 64 hex digits", path);
      return VD_EINVALID;
    }
    *first = moved ? sqlite3_column_int64(st, 2) + 1
                   : sqlite3_column_int64(st, 1);
    *archived_to = moved ? sqlite3_column_int64(st, 2) : 0;
    *archived_ms = sqlite3_column_int64(st, 5);
    *copy = !moved;
    src = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading archives");
  return 0;
}

/* The migration to schema 5: records from one past the last stored (or
 * the head, should that be further) on use the "vd2" form. */
int vd_hist_seal_format(sqlite3 *db, const char *path, int64_t now_ms,
                        vd_buf_t *err) {
  sqlite3_stmt *st;
  int src = sqlite3_prepare_v2(
      db,
      "INSERT INTO chain_format (id, v2_from, migrated_ms) SELECT 1,"
      " max(coalesce((SELECT max(seq) FROM decisions), 0),"
      "     coalesce((SELECT seq FROM chain_head WHERE id = 1), 0)) + 1, ?",
      -1, &st, NULL);
  if (src == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now_ms);
    src = sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src,
                          "recording where schema 5's records begin");
  return 0;
}

/* ========================================================================
 * The activations' chain
 * ====================================================================== */

/* Activations are chained apart from decisions: the main thread writes
 * them through its own connection while the writer thread commits
 * batches, and one chain would make every reload wait for, and reread,
 * the decisions' head.  Each table has its head row (chain_head,
 * activation_head) moved in the transaction that appends to it. */

int vd_hist_seal_activations(sqlite3 *db, const char *path, int64_t now_ms,
                             vd_buf_t *err) {
  sqlite3_stmt *st = NULL, *up = NULL;
  uint8_t prev[32] = {0}, cur[32];
  char hex[65] = VD_HIST_ZERO_HASH;
  int64_t last = 0;
  int src;
  src = sqlite3_prepare_v2(db, "SELECT " ACT_COLUMNS " FROM activations"
                               " ORDER BY id", -1, &st, NULL);
  if (src == SQLITE_OK)
    src = sqlite3_prepare_v2(db, "UPDATE activations SET hash = ?"
                                 " WHERE id = ?", -1, &up, NULL);
  while (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    vd_hist_field_t f[NACOLS];
    int i;
    last = sqlite3_column_int64(st, 0);
    for (i = 0; i < NACOLS; i++)
      f[i] = vd_hist_column_field(st, i + 1);
    vd_hist_activation_hash(prev, last, f, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    memcpy(prev, cur, sizeof prev);
    sqlite3_bind_text(up, 1, hex, 64, SQLITE_STATIC);
    sqlite3_bind_int64(up, 2, last);
    src = sqlite3_step(up);
    sqlite3_reset(up);
    src = src == SQLITE_DONE ? SQLITE_OK : src;
  }
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  if (src == SQLITE_DONE) {
    src = sqlite3_prepare_v2(db, "INSERT INTO activation_head (id, last_id,"
                                 " hash, sealed_id, sealed_ms)"
                                 " VALUES (1, ?, ?, ?, ?)", -1, &st, NULL);
    if (src == SQLITE_OK) {
      sqlite3_bind_int64(st, 1, last);
      sqlite3_bind_text(st, 2, hex, 64, SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, last);
      sqlite3_bind_int64(st, 4, now_ms);
      src = sqlite3_step(st);
      sqlite3_finalize(st);
    }
  }
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src,
                          "chaining the stored activations (schema 3)");
  return 0;
}

/* ========================================================================
 * Verification
 * ====================================================================== */

void vd_hist_verify_report(vd_verify_report_t *rep,
                           vd_verify_problem_t problem, int64_t seq,
                           const char *decision_id, const char *fmt, ...) {
  va_list ap;
  rep->problem = problem;
  rep->seq = seq;
  snprintf(rep->decision_id, sizeof rep->decision_id, "%s",
           decision_id ? decision_id : "");
  va_start(ap, fmt);
  vsnprintf(rep->message, sizeof rep->message, fmt, ap);
  va_end(ap);
}

int vd_hist_personal_check(const vd_hist_field_t f[NCOLS], const char *salt,
                           size_t nsalt, const char *kept, size_t nkept,
                           char digest[65]) {
  if (salt && nsalt == VD_HIST_SALT_HEX) {
    uint8_t d[32];
    vd_hist_personal_digest(salt, f, d);
    vd_hist_to_hex(d, sizeof d, digest);
    return kept && (nkept != 64 || memcmp(kept, digest, 64) != 0)
               ? VD_HIST_PERSONAL_DIFFERS : VD_HIST_PERSONAL_SALTED;
  }
  if (!salt && kept && nkept == 64) {
    memcpy(digest, kept, 64);
    digest[64] = '\0';
    return VD_HIST_PERSONAL_ERASED;
  }
  digest[0] = '\0';
  return salt ? VD_HIST_PERSONAL_BAD_SALT : VD_HIST_PERSONAL_NEITHER;
}

const char *vd_hist_personal_problem(int check) {
  return check == VD_HIST_PERSONAL_BAD_SALT
             ? "a personal_salt that is not 32 hex digits"
             : "neither a personal_salt nor a personal_digest";
}

/* Walk decisions in seq order inside the caller's read transaction.
 * Returns 0, VD_EINVALID (rep says where) or an SQLite failure. */
static int verify_chain(sqlite3 *db, const char *path, int64_t anchor_seq,
                        const char *anchor_hash, vd_verify_report_t *rep,
                        vd_buf_t *err) {
  /* the last column: whether the record's revision number (schema 8)
   * names another revision than its own (see below) */
  static const char sql[] =
      "SELECT " READ_COLUMNS ", personal_salt, personal_digest,"
      " (SELECT r.revision FROM revision_numbers r WHERE r.n = revision_n)"
      " IS NOT revision"
      " FROM decisions ORDER BY seq";
  sqlite3_stmt *st = NULL;
  int64_t head_seq = -1, expect = 1, v2_from = -1, first;
  int copy = 0;
  char head_hash[65] = "";
  uint8_t prev[32] = {0}, cur[32];
  int rc, src;
  src = sqlite3_prepare_v2(db, "SELECT seq, hash FROM chain_head WHERE id = 1",
                           -1, &st, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *hash = (const char *)sqlite3_column_text(st, 1);
    head_seq = sqlite3_column_int64(st, 0);
    snprintf(head_hash, sizeof head_hash, "%s", hash ? hash : "");
    src = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading the chain head");
  if (head_seq < 0) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
        "the chain_head row is missing: the head of the chain was altered");
    return VD_EINVALID;
  }
  rc = vd_hist_read_format(db, path, &v2_from, &rep->v2_ms, err);
  if (rc)
    return rc;
  if (v2_from < 1) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
        "the chain_format row is missing: where schema 5's record "
        "format begins was altered");
    return VD_EINVALID;
  }
  rep->v2_from = v2_from;
  /* after an archiving, the chain starts at the archive's edge */
  rc = vd_hist_chain_start(db, path, &expect, prev, &rep->archived_to,
                           &rep->archived_ms, &copy, err);
  if (rc)
    return rc;
  if (copy)
    rep->archive_first = expect;
  if (anchor_seq && anchor_seq <= rep->archived_to &&
      !(anchor_seq == rep->archived_to && expect > anchor_seq)) {
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, anchor_seq, NULL,
        "anchor %" PRId64 " is in the records 1..%" PRId64 " archived out "
        "of this database: verify it against the archive (verdict history "
        "verify --db ARCHIVE --anchor ...)", anchor_seq, rep->archived_to);
    return VD_EINVALID;
  }
  if (anchor_seq && anchor_seq == rep->archived_to && expect > anchor_seq) {
    char edge[65];
    vd_hist_to_hex(prev, 32, edge);
    if (strcmp(edge, anchor_hash) != 0) {
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, anchor_seq, NULL,
          "anchor %" PRId64 ": its hash was %.16s..., the archive's edge "
          "here says %.16s...", anchor_seq, anchor_hash, edge);
      return VD_EINVALID;
    }
  }
  src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "reading decisions");
  rc = 0;
  first = expect;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    const char *hash = (const char *)sqlite3_column_text(st, NCOLS + 1);
    vd_hist_field_t f[NCOLS];
    char hex[65];
    int i;
    if (seq > head_seq || seq < expect) {
      vd_hist_verify_report(rep, VD_VERIFY_INSERTED, seq, id,
          "row seq %" PRId64 " (decision %s) was inserted: it is outside "
          "the chain, which ends at seq %" PRId64,
          seq, id ? id : "NULL", head_seq);
      rc = VD_EINVALID;
      break;
    }
    if (seq > expect) {
      vd_hist_verify_report(rep, VD_VERIFY_DELETED, expect, id,
          "rows seq %" PRId64 "..%" PRId64 " were deleted: the chain "
          "jumps to seq %" PRId64 " (decision %s)",
          expect, seq - 1, seq, id ? id : "NULL");
      rc = VD_EINVALID;
      break;
    }
    for (i = 0; i < NCOLS; i++)
      f[i] = vd_hist_column_field(st, i + 1);
    if (seq < v2_from) {
      vd_hist_chain_hash(prev, seq, f, cur);
    } else {
      /* the personal part from its salt, or, once erased, as the
       * erasure kept it */
      const char *kept = (const char *)sqlite3_column_text(st, NCOLS + 3);
      char digest[65];
      int check = vd_hist_personal_check(
          f, (const char *)sqlite3_column_text(st, NCOLS + 2),
          (size_t)sqlite3_column_bytes(st, NCOLS + 2), kept,
          (size_t)sqlite3_column_bytes(st, NCOLS + 3), digest);
      if (check == VD_HIST_PERSONAL_DIFFERS) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "row seq %" PRId64 " (decision %s) was changed: its personal "
            "part hashes to %.16s..., its personal_digest says %.16s...",
            seq, id ? id : "NULL", digest, kept);
        rc = VD_EINVALID;
        break;
      } else if (check == VD_HIST_PERSONAL_ERASED) {
        rep->erased++;
      } else if (check != VD_HIST_PERSONAL_SALTED) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "row seq %" PRId64 " (decision %s) was changed: it has %s",
            seq, id ? id : "NULL", vd_hist_personal_problem(check));
        rc = VD_EINVALID;
        break;
      }
      vd_hist_chain_hash_v2(prev, seq, f, digest, cur);
    }
    vd_hist_to_hex(cur, sizeof cur, hex);
    if (!hash || strcmp(hex, hash) != 0) {
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
          "row seq %" PRId64 " (decision %s) was changed: its contents "
          "hash to %.16s..., the chain recorded %.16s...",
          seq, id ? id : "NULL", hex, hash ? hash : "NULL");
      rc = VD_EINVALID;
      break;
    }
    if (sqlite3_column_int(st, NCOLS + 4)) {
      /* revision_n is not hashed (an index's key): a number naming
       * another revision, or none, would hide the record from a search
       * by revision (the console's, replay --revision) or show it in
       * another's */
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
          "row seq %" PRId64 " (decision %s) was changed: its revision "
          "number does not name %.*s, the revision that decided it "
          "(decisions.revision_n or revision_numbers altered), so a search "
          "by revision would not find it",
          seq, id ? id : "NULL",
          f[COL_REVISION].p ? (int)f[COL_REVISION].n : 6,
          f[COL_REVISION].p ? f[COL_REVISION].p : "(none)");
      rc = VD_EINVALID;
      break;
    }
    if (seq == anchor_seq && strcmp(hex, anchor_hash) != 0) {
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
          "anchor %" PRId64 ": its hash was %.16s..., it is now %.16s...: "
          "the chain was rewritten at or before that record",
          seq, anchor_hash, hex);
      rc = VD_EINVALID;
      break;
    }
    memcpy(prev, cur, sizeof prev);
    memcpy(rep->head, hex, sizeof hex);
    rep->records++;
    expect++;
  }
  sqlite3_finalize(st);
  if (rc)
    return rc;
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading decisions");
  if (expect - 1 < head_seq) {
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, expect, NULL,
        "rows seq %" PRId64 "..%" PRId64 " at the end were deleted: the "
        "chain ends at seq %" PRId64,
        expect, head_seq, head_seq);
    return VD_EINVALID;
  }
  if (expect == first) {
    /* no row here: the head is the start (zero, or the archive's edge) */
    vd_hist_to_hex(prev, 32, rep->head);
  }
  if (strcmp(head_hash, rep->head) != 0) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, head_seq, NULL,
        "chain_head was changed: it names hash %.16s... for seq %" PRId64
        ", the row has %.16s...",
        head_hash, head_seq, head_seq ? rep->head : VD_HIST_ZERO_HASH);
    return VD_EINVALID;
  }
  {
    /* every erased record is one an erasure recorded */
    int64_t recorded = 0;
    src = sqlite3_prepare_v2(db, "SELECT coalesce(sum(records), 0) -"
                                 " (SELECT coalesce(sum(erased_elsewhere), 0)"
                                 "    FROM archives) FROM erasures",
                             -1, &st, NULL);
    if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
      recorded = sqlite3_column_int64(st, 0);
      src = SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (src != SQLITE_DONE)
      return vd_hist_db_err(err, path, db, src, "reading erasures");
    if (vd_hist_erasures_accounted(rep, recorded, 0) != 0)
      return VD_EINVALID;
  }
  if (anchor_seq > head_seq) {
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, anchor_seq, NULL,
        "anchor %" PRId64 ": the chain now ends at record %" PRId64
        ", so records were cut from its tail (and chain_head moved back)",
        anchor_seq, head_seq);
    return VD_EINVALID;
  }
  return 0;
}

int vd_hist_erasures_accounted(vd_verify_report_t *rep, int64_t recorded,
                               int at_most) {
  if (at_most ? rep->erased <= recorded : rep->erased == recorded)
    return 0;
  vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
      "%" PRId64 " records have their personal data erased, the "
      "erasures table accounts for %" PRId64 ": personal data was "
      "removed, or an erasure's record altered, outside verdict "
      "history erase", rep->erased, recorded);
  return VD_EINVALID;
}

/* Name activation ID for a human: "activation 3 (reload by alice at
 * 2026-...)", from the row as it is now. */
static void act_name(char *buf, size_t n, sqlite3_stmt *st, int64_t id) {
  const char *cause = (const char *)sqlite3_column_text(st, 1 + ACOL_CAUSE);
  const char *who = (const char *)sqlite3_column_text(st, 1 + ACOL_WHO);
  const char *at = (const char *)sqlite3_column_text(st, 1 + ACOL_AT);
  snprintf(buf, n, "activation %" PRId64 " (%s by %s at %s)", id,
           cause ? cause : "NULL", who ? who : "NULL", at ? at : "NULL");
}

/* Walk activations in id order inside the caller's read transaction, as
 * verify_chain walks decisions.  Rows up to activation_head.sealed_id
 * were stored before schema 3 and chained, as found, by its migration;
 * gaps among them were there then.  After it, ids are consecutive.
 * Returns 0, VD_EINVALID (rep says which activation) or an SQLite
 * failure. */
static int verify_activations(sqlite3 *db, const char *path, int64_t anchor_id,
                              const char *anchor_hash, vd_verify_report_t *rep,
                              vd_buf_t *err) {
  sqlite3_stmt *st = NULL;
  int64_t last_id = -1, sealed = 0, sealed_ms = 0, prev_id = 0;
  char head_hash[65] = "", name[200];
  uint8_t prev[32] = {0}, cur[32];
  int rc, src;
  src = sqlite3_prepare_v2(db, "SELECT last_id, hash, sealed_id, sealed_ms"
                               " FROM activation_head WHERE id = 1",
                           -1, &st, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *hash = (const char *)sqlite3_column_text(st, 1);
    last_id = sqlite3_column_int64(st, 0);
    snprintf(head_hash, sizeof head_hash, "%s", hash ? hash : "");
    sealed = sqlite3_column_int64(st, 2);
    sealed_ms = sqlite3_column_int64(st, 3);
    src = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src,
                          "reading the activations' chain head");
  if (last_id < 0) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
        "the activation_head row is missing: the head of the "
        "activations' chain was altered");
    return VD_EINVALID;
  }
  rep->sealed = sealed;
  rep->sealed_ms = sealed_ms;
  src = sqlite3_prepare_v2(db, "SELECT " ACT_COLUMNS " FROM activations"
                               " ORDER BY id", -1, &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "reading activations");
  rc = 0;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    const char *hash = (const char *)sqlite3_column_text(st, NACOLS + 1);
    vd_hist_field_t f[NACOLS];
    char hex[65];
    int i, same;
    act_name(name, sizeof name, st, id);
    if (id > last_id || id < 1) {
      rep->activation = id;
      vd_hist_verify_report(rep, VD_VERIFY_INSERTED, 0, NULL,
          "%s was inserted: it is outside the activations' chain, which "
          "ends at activation %" PRId64, name, last_id);
      rc = VD_EINVALID;
      break;
    }
    for (i = 0; i < NACOLS; i++)
      f[i] = vd_hist_column_field(st, i + 1);
    vd_hist_activation_hash(prev, id, f, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    same = hash && strcmp(hex, hash) == 0;
    /* a gap after the seal is a deletion; one the migration sealed over
     * is not, unless the row after it no longer follows its predecessor */
    if (id > prev_id + 1 && (id - 1 > sealed || !same)) {
      rep->activation = prev_id + 1;
      vd_hist_verify_report(rep, VD_VERIFY_DELETED, 0, NULL,
          "activations %" PRId64 "..%" PRId64 " were deleted: the "
          "activations' chain jumps to %s", prev_id + 1, id - 1, name);
      rc = VD_EINVALID;
      break;
    }
    if (!same) {
      rep->activation = id;
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
          "%s was changed: its contents hash to %.16s..., the chain "
          "recorded %.16s...", name, hex, hash ? hash : "NULL");
      rc = VD_EINVALID;
      break;
    }
    if (id == anchor_id && strcmp(hex, anchor_hash) != 0) {
      rep->activation = id;
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
          "anchor activation %" PRId64 ": its hash was %.16s..., it is "
          "now %.16s...: the activations' chain was rewritten at or "
          "before it", id, anchor_hash, hex);
      rc = VD_EINVALID;
      break;
    }
    memcpy(prev, cur, sizeof prev);
    memcpy(rep->act_head, hex, sizeof hex);
    rep->act_last = id;
    rep->activations++;
    prev_id = id;
  }
  sqlite3_finalize(st);
  if (rc)
    return rc;
  if (src != SQLITE_DONE)
    return vd_hist_db_err(err, path, db, src, "reading activations");
  if (prev_id < last_id) {
    rep->activation = prev_id + 1;
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, 0, NULL,
        "activations %" PRId64 "..%" PRId64 " at the end were deleted: "
        "the activations' chain ends at activation %" PRId64,
        prev_id + 1, last_id, last_id);
    return VD_EINVALID;
  }
  if (strcmp(head_hash, last_id ? rep->act_head : VD_HIST_ZERO_HASH) != 0) {
    rep->activation = last_id;
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
        "activation_head was changed: it names hash %.16s... for "
        "activation %" PRId64 ", the row has %.16s...",
        head_hash, last_id, last_id ? rep->act_head : VD_HIST_ZERO_HASH);
    return VD_EINVALID;
  }
  if (anchor_id > last_id) {
    rep->activation = anchor_id;
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, 0, NULL,
        "anchor activation %" PRId64 ": the activations' chain now ends "
        "at activation %" PRId64 ", so activations were cut from its "
        "tail (and activation_head moved back)", anchor_id, last_id);
    return VD_EINVALID;
  }
  return 0;
}

/* Every decision's revision is stored; every stored revision's files are
 * intact and hash to its name. */
static int verify_revisions(sqlite3 *db, const char *path,
                            vd_verify_report_t *rep, vd_buf_t *err) {
  sqlite3_stmt *st;
  int rc = 0, src;
  src = sqlite3_prepare_v2(
      db,
      "SELECT d.seq, d.decision_id, d.revision FROM decisions d"
      " WHERE d.revision IS NOT NULL AND NOT EXISTS"
      "   (SELECT 1 FROM revisions r WHERE r.revision = d.revision)"
      " ORDER BY d.seq LIMIT 1",
      -1, &st, NULL);
  if (src == SQLITE_OK && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *id = (const char *)sqlite3_column_text(st, 1);
    vd_hist_verify_report(rep, VD_VERIFY_REVISION,
        sqlite3_column_int64(st, 0), id,
        "decision %s (seq %lld) names revision %s, which is not in the "
        "database (removed, or never stored)",
        id ? id : "NULL", (long long)sqlite3_column_int64(st, 0),
        (const char *)sqlite3_column_text(st, 2));
    rc = VD_EINVALID;
  } else if (src != SQLITE_DONE) {
    rc = vd_hist_db_err(err, path, db, src, "checking revisions");
  }
  sqlite3_finalize(st);
  if (rc)
    return rc;
  src = sqlite3_prepare_v2(db, "SELECT revision FROM revisions ORDER BY 1", -1,
                           &st, NULL);
  if (src != SQLITE_OK)
    return vd_hist_db_err(err, path, db, src, "reading revisions");
  while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *revision = (const char *)sqlite3_column_text(st, 0);
    vd_bundle_file_t *files;
    size_t n;
    rc = vd_hist_load_files(db, path, revision, &files, &n, err);
    rc = vd_hist_verify_revision(revision, rc, files, n, rep, err);
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = vd_hist_db_err(err, path, db, src, "reading revisions");
  sqlite3_finalize(st);
  return rc;
}

int vd_history_verify(const char *path, vd_verify_report_t *rep) {
  return vd_history_verify_anchor(path, NULL, rep);
}

int vd_history_verify_anchored(const char *path, int64_t anchor_seq,
                               const char *anchor_hash,
                               vd_verify_report_t *rep) {
  vd_history_anchor_t a;
  memset(&a, 0, sizeof a);
  a.seq = anchor_seq;
  if (anchor_hash)
    snprintf(a.hash, sizeof a.hash, "%s", anchor_hash);
  return vd_history_verify_anchor(path, &a, rep);
}

/* One "NUM:HASH" of an anchor, ending at END ('\0' or '/'). */
static int anchor_part(const char **p, int end, int64_t *num, char hash[65]) {
  const char *s = *p;
  int64_t v = 0;
  if (*s < '0' || *s > '9')
    return -1;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (INT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (*s - '0');
  }
  if (*s++ != ':' || strspn(s, "0123456789abcdef") != 64 || s[64] != end)
    return -1;
  memcpy(hash, s, 64);
  hash[64] = '\0';
  *num = v;
  *p = s + 64 + (end ? 1 : 0);
  return 0;
}

int vd_history_anchor_parse(const char *text, vd_history_anchor_t *a) {
  const char *p = text;
  memset(a, 0, sizeof *a);
  if (!text)
    return VD_EINVALID;
  if (strchr(text, '/')) {
    /* decisions, then activations; SEQ 0 only as "no decisions yet" */
    if (anchor_part(&p, '/', &a->seq, a->hash) ||
        anchor_part(&p, '\0', &a->activation, a->act_hash) ||
        a->activation < 1 ||
        (a->seq == 0 && strcmp(a->hash, VD_HIST_ZERO_HASH) != 0))
      goto bad;
    return 0;
  }
  if (anchor_part(&p, '\0', &a->seq, a->hash) || a->seq < 1)
    goto bad;
  return 0;
bad:
  memset(a, 0, sizeof *a);
  return VD_EINVALID;
}

int vd_history_verify_anchor(const char *path,
                             const vd_history_anchor_t *anchor,
                             vd_verify_report_t *rep) {
  vd_buf_t err = VD_BUF_INIT;
  vd_history_anchor_t none;
  sqlite3 *db;
  int rc, src;
  memset(rep, 0, sizeof *rep);
  if (!anchor) {
    memset(&none, 0, sizeof none);
    anchor = &none;
  }
  rc = vd_history_db_open_ro(&db, path, &err);
  if (rc)
    goto out;
  /* one snapshot for everything: the writer may go on meanwhile */
  src = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    rc = vd_hist_db_err(&err, path, db, src, "starting to read");
  if (rc == 0)
    rc = verify_chain(db, path, anchor->seq, anchor->hash, rep, &err);
  if (rc == 0)
    rc = verify_activations(db, path, anchor->activation, anchor->act_hash,
                            rep, &err);
  if (rc == 0)
    rc = verify_revisions(db, path, rep, &err);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(db);
out:
  if (rc && rep->problem == VD_VERIFY_OK) {
    snprintf(rep->message, sizeof rep->message, "%s",
             err.data ? err.data : vd_err_desc(rc));
  } else if (rc == 0) {
    /* without activations, the line verify printed before they were
     * chained, byte for byte */
    char acts[256] = "";
    if (rep->activations) {
      int n = snprintf(acts, sizeof acts,
                       "; %" PRId64 " activations verified, chain head %s",
                       rep->activations, rep->act_head);
      if (rep->sealed) {
        char at[40];
        vd_time_format(rep->sealed_ms, VD_DEFAULT_OFFSET_MIN, at);
        snprintf(acts + n, sizeof acts - (size_t)n,
                 " (1..%" PRId64 " chained by the migration to schema 3 at %s)",
                 rep->sealed, at);
      }
    }
    char erased[64] = "";
    if (rep->erased)
      snprintf(erased, sizeof erased, " (%" PRId64 " with personal data "
               "erased)", rep->erased);
    snprintf(rep->message, sizeof rep->message,
             "%" PRId64 " records verified%s, chain head %s%s; %" PRId64
             " revisions intact",
             rep->records, erased,
             rep->records ? rep->head : VD_HIST_ZERO_HASH, acts,
             rep->revisions);
    if (rep->archived_to || rep->archive_first) {
      size_t len = strlen(rep->message);
      if (rep->archive_first)
        snprintf(rep->message + len, sizeof rep->message - len,
                 "; an archive of records %" PRId64 "..%" PRId64,
                 rep->archive_first, rep->archive_first + rep->records - 1);
      else
        snprintf(rep->message + len, sizeof rep->message - len,
                 "; records 1..%" PRId64 " archived, the chain verified from "
                 "their edge", rep->archived_to);
    }
  }
  vd_buf_release(&err);
  return rc;
}
