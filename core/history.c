/*
 * history.c - the decision history: SQLite storage, the group-commit
 * writer, the hash chain, revisions, facts and verification.
 *
 * Owns the history database and everything opened on it:
 *   - the writer connection and the writer thread (one per vd_history_t),
 *     which alone inserts decisions;
 *   - the auxiliary connection that stores revisions and activations for
 *     the main thread (serialised by aux_mu);
 *   - read-only connections: one per vd_history_reader_t (a worker
 *     thread's), and short-lived ones for load and verify.
 *
 * Threads: vd_history_submit() and vd_history_drain() run on worker
 * threads, the batch loop on the writer thread, everything else on the
 * caller's thread.  `mu` guards the queue, `stopping` and every lane (a
 * worker's sequence counter and its completed ranges); the writer holds
 * it only to take the queue and to publish completions, never across disk
 * I/O.  Fields marked "writer" are touched by the writer thread alone once
 * it runs.
 *
 * Invariants:
 *   - queue order is submission order, and a worker's sequence numbers are
 *     handed out under `mu` as its records are queued, so each batch holds
 *     one contiguous range per worker;
 *   - every submission ends in exactly one published range;
 *   - decisions.seq grows by one per row and each row's hash continues the
 *     chain from chain_head, read and updated inside the same write
 *     transaction, so a rolled-back batch leaves no trace in the chain.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>
#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* PRAGMA application_id of a verdict history database: "vrdt". */
#define HISTORY_APP_ID 0x76726474

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* ========================================================================
 * Schema
 * ====================================================================== */

/* migrations[i] takes a database from user_version i to i + 1.  Append
 * only: a shipped migration never changes.  The views write times in
 * +08:00, verdict's default offset (VD_DEFAULT_OFFSET_MIN), like the
 * `verdict history` commands. */
static const char *const migrations[] = {
  /* 0 -> 1 */
  "PRAGMA application_id = 1987208308;\n" /* HISTORY_APP_ID */
  "CREATE TABLE decisions (\n"
  "  seq           INTEGER PRIMARY KEY, -- position in the chain: 1, 2, 3...\n"
  "  decision_id   TEXT,     -- UUIDv7 the client received\n"
  "  received_ms   INTEGER,  -- unix ms the request was read\n"
  "  at            TEXT,     -- RFC 3339 decision time\n"
  "  at_ms         INTEGER,  -- the same in unix ms, 0 if unknown\n"
  "  kind          TEXT,\n"
  "  region        TEXT,     -- region the request named\n"
  "  policy_region TEXT,     -- region whose policy decided\n"
  "  revision      TEXT,     -- revisions.revision that decided\n"
  "  complaint_id  TEXT,\n"
  "  customer_id   TEXT,\n"
  "  category      TEXT,\n"
  "  request       TEXT,     -- the request line, byte for byte\n"
  "  result        TEXT,     -- JSON object; NULL for an error\n"
  "  trace         TEXT,     -- JSON array; NULL for an error\n"
  "  facts         TEXT,     -- JSON: what the policy read from history\n"
  "  error_code    TEXT,     -- NULL on success\n"
  "  error_message TEXT,\n"
  "  error_path    TEXT,\n"
  "  elapsed_us    INTEGER,\n"
  "  client        TEXT,     -- socket peer\n"
  "  hash          TEXT NOT NULL -- hex SHA-256(prev hash || canonical row)\n"
  ");\n"
  "CREATE INDEX decisions_decision_id ON decisions(decision_id);\n"
  "CREATE INDEX decisions_received ON decisions(received_ms);\n"
  "CREATE INDEX decisions_region_kind ON decisions(region, kind);\n"
  "CREATE INDEX decisions_complaint ON decisions(complaint_id);\n"
  "CREATE INDEX decisions_customer\n"
  "  ON decisions(customer_id, kind, at_ms, error_code);\n"
  "CREATE INDEX decisions_region_category\n"
  "  ON decisions(region, category, at_ms, customer_id, error_code);\n"
  "CREATE TABLE chain_head (\n"
  "  id   INTEGER PRIMARY KEY CHECK (id = 1),\n"
  "  seq  INTEGER NOT NULL,  -- seq of the last decision\n"
  "  hash TEXT NOT NULL      -- its hash\n"
  ");\n"
  "INSERT INTO chain_head VALUES (1, 0, '" ZERO_HASH "');\n"
  "CREATE TABLE blobs (\n"
  "  sha256 TEXT PRIMARY KEY, -- hex SHA-256 of data\n"
  "  size   INTEGER NOT NULL,\n"
  "  data   BLOB NOT NULL\n"
  ");\n"
  "CREATE TABLE revisions (\n"
  "  revision  TEXT PRIMARY KEY, -- 'sha256:...', the bundle's name\n"
  "  stored_ms INTEGER NOT NULL,\n"
  "  files     INTEGER NOT NULL,\n"
  "  bytes     INTEGER NOT NULL\n"
  ");\n"
  "CREATE TABLE revision_files (\n"
  "  revision TEXT NOT NULL REFERENCES revisions(revision),\n"
  "  path     TEXT NOT NULL,\n"
  "  blob     TEXT NOT NULL REFERENCES blobs(sha256),\n"
  "  PRIMARY KEY (revision, path)\n"
  ") WITHOUT ROWID;\n"
  "CREATE TABLE activations (\n"
  "  id         INTEGER PRIMARY KEY,\n"
  "  at_ms      INTEGER NOT NULL,\n"
  "  at         TEXT NOT NULL,\n"
  "  revision   TEXT NOT NULL,\n"
  "  cause      TEXT NOT NULL, -- startup, reload, admin...\n"
  "  who        TEXT,\n"
  "  source_dir TEXT,\n"
  "  ok         INTEGER NOT NULL,\n"
  "  error      TEXT\n"
  ");\n"
  "CREATE VIEW decision_summary AS\n"
  "  SELECT seq, decision_id,\n"
  "         strftime('%Y-%m-%dT%H:%M:%f', received_ms / 1000.0,\n"
  "                  'unixepoch', '+8 hours') || '+08:00' AS received,\n"
  "         at, kind, region, policy_region, complaint_id, customer_id,\n"
  "         category, coalesce(error_code, 'ok') AS outcome,\n"
  "         round(elapsed_us / 1000.0, 3) AS elapsed_ms, client, revision\n"
  "  FROM decisions;\n"
  "CREATE VIEW decisions_per_day AS\n"
  "  SELECT coalesce(substr(at, 1, 10),\n"
  "                  date(received_ms / 1000, 'unixepoch', '+8 hours')) AS day,\n"
  "         kind, region,\n"
  "         count(*) FILTER (WHERE error_code IS NULL) AS decisions,\n"
  "         count(*) FILTER (WHERE error_code IS NOT NULL) AS errors\n"
  "  FROM decisions GROUP BY 1, 2, 3;\n"
  "CREATE VIEW offers_by_approval AS\n"
  "  SELECT approval_level, count(*) AS offers, sum(offer_fen) AS total_fen,\n"
  "         min(offer_fen) AS min_fen, max(offer_fen) AS max_fen,\n"
  "         CAST(round(avg(offer_fen)) AS INTEGER) AS avg_fen\n"
  "  FROM (SELECT json_extract(r, '$.approval_level') AS approval_level,\n"
  "               json_extract(r, '$.offer_fen') AS offer_fen\n"
  "        FROM (SELECT CASE WHEN json_valid(result) THEN result END AS r\n"
  "              FROM decisions\n"
  "              WHERE kind = 'compensation' AND error_code IS NULL))\n"
  "  WHERE offer_fen IS NOT NULL\n"
  "  GROUP BY approval_level;\n"
  "CREATE VIEW errors_by_code AS\n"
  "  SELECT error_code, count(*) AS errors,\n"
  "         strftime('%Y-%m-%dT%H:%M:%f', min(received_ms) / 1000.0,\n"
  "                  'unixepoch', '+8 hours') || '+08:00' AS first_seen,\n"
  "         strftime('%Y-%m-%dT%H:%M:%f', max(received_ms) / 1000.0,\n"
  "                  'unixepoch', '+8 hours') || '+08:00' AS last_seen\n"
  "  FROM decisions WHERE error_code IS NOT NULL GROUP BY error_code;\n",
  /* 1 -> 2: the complaint facts (vd_history_count_complaints) read a
   * customer's complaint_ids and each complaint's decisions by kind and
   * time.  Both indexes are widened in place rather than added beside the
   * old ones, so an insert still updates six indexes: decisions_customer
   * puts at_ms before kind (a time range over every kind is then one
   * range) and covers complaint_id; decisions_complaint serves
   * `--complaint` as before and covers kind, at_ms and error_code. */
  "DROP INDEX decisions_customer;\n"
  "CREATE INDEX decisions_customer\n"
  "  ON decisions(customer_id, at_ms, kind, error_code, complaint_id);\n"
  "DROP INDEX decisions_complaint;\n"
  "CREATE INDEX decisions_complaint\n"
  "  ON decisions(complaint_id, kind, at_ms, error_code);\n",
};

#define NMIGRATIONS (sizeof migrations / sizeof migrations[0])

_Static_assert(NMIGRATIONS == VD_HISTORY_SCHEMA_VERSION,
               "one migration per schema version");
_Static_assert(HISTORY_APP_ID == 1987208308, "the id in migration 1");
_Static_assert(VD_DEFAULT_OFFSET_MIN == 8 * 60, "the offset in the views");

/* ========================================================================
 * Rows and their canonical bytes
 *
 * The columns of `decisions` (HISTORY_COLUMNS) are in history_int.h, which
 * the auditor commands share; the canonical bytes take them in that order
 * (README, "Canonical bytes").
 * ====================================================================== */

#define COL_PARAM_(E, name) ", ?"
/* The placeholders of ALL_COLUMNS (history_int.h). */
#define ALL_PARAMS "?" HISTORY_COLUMNS(COL_PARAM_) ", ?"

/* One column's value: text (p, n; p == NULL for SQL NULL) or, when is_int,
 * the integer i. */
typedef struct field {
  const char *p;
  size_t n;
  int64_t i;
  int is_int;
} field_t;

static field_t text_field(const char *s, size_t n) {
  field_t f = {s, s ? n : 0, 0, 0};
  return f;
}

static field_t str_field(const char *s) {
  return text_field(s, s ? strlen(s) : 0);
}

static field_t int_field(int64_t v) {
  field_t f = {NULL, 0, v, 1};
  return f;
}

static void record_fields(const vd_record_t *r, field_t f[NCOLS]) {
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
static field_t column_field(sqlite3_stmt *st, int i) {
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

/* out = SHA-256(prev || "3:vd1," seq f[0] ... f[NCOLS-1]), see
 * docs/history.md "Canonical bytes". */
static void chain_hash(const uint8_t prev[32], int64_t seq,
                       const field_t f[NCOLS], uint8_t out[32]) {
  struct sha256_ctx c;
  int i;
  sha256_init(&c);
  sha256_update(&c, 32, prev);
  hash_piece(&c, "vd1", 3);
  hash_int(&c, seq);
  for (i = 0; i < NCOLS; i++) {
    if (f[i].is_int)
      hash_int(&c, f[i].i);
    else
      hash_piece(&c, f[i].p, f[i].n);
  }
  sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
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
static int from_hex(const char *s, size_t n, uint8_t out[32]) {
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

static void sha256_hex(const void *data, size_t n, char out[65]) {
  struct sha256_ctx c;
  uint8_t d[SHA256_DIGEST_SIZE];
  sha256_init(&c);
  sha256_update(&c, n, data);
  sha256_digest(&c, sizeof d, d);
  to_hex(d, sizeof d, out);
}

/* ========================================================================
 * Opening
 * ====================================================================== */

/* Hand ERR to the caller as *errmsg (or drop it) and return rc. */
static int give_err(char **errmsg, vd_buf_t *err, int rc) {
  if (rc && !err->len)
    vd_buf_addf(err, "history: %s", vd_err_desc(rc));
  if (errmsg)
    *errmsg = rc ? vd_buf_detach(err, NULL) : NULL;
  vd_buf_release(err);
  return rc;
}

/* Describe SQLite's failure RC on DB (may be NULL) while DOING, for PATH.
 * Returns the VD_E* code it maps to. */
static int db_err(vd_buf_t *err, const char *path, sqlite3 *db, int rc,
                  const char *doing) {
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  vd_buf_reset(err);
  vd_buf_addf(err, "history database '%s': ", path);
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    vd_buf_addf(err, "locked by another writer (waited %d ms while %s)",
                VD_HISTORY_BUSY_MS, doing);
    return VD_EIO;
  case SQLITE_NOTADB:
    vd_buf_adds(err, "not a SQLite database (wrong file, or damaged beyond "
                     "recognition)");
    return VD_EINVALID;
  case SQLITE_CORRUPT:
    vd_buf_addf(err, "the database is corrupt (%s while %s)", msg, doing);
    return VD_EINVALID;
  case SQLITE_READONLY:
    vd_buf_addf(err, "read-only (%s while %s)", msg, doing);
    return VD_EIO;
  case SQLITE_FULL:
    vd_buf_addf(err, "disk full while %s", doing);
    return VD_EIO;
  case SQLITE_NOMEM:
    vd_buf_addf(err, "out of memory while %s", doing);
    return VD_ENOMEM;
  default:
    vd_buf_addf(err, "%s while %s", msg, doing);
    return VD_EIO;
  }
}

/* Check the file system before SQLite does, for messages that say what
 * to fix.  WRITABLE: the file (if any) and its directory must be writable,
 * and the file may be missing; otherwise the file must exist. */
static int check_path(const char *path, int writable, vd_buf_t *err) {
  struct stat st;
  const char *slash = strrchr(path, '/');
  char *dir;
  int rc = 0;
  if (!*path) {
    vd_buf_adds(err, "history database: empty path");
    return VD_EINVALID;
  }
  dir = slash == path ? strdup("/")
        : slash       ? strndup(path, (size_t)(slash - path))
                      : strdup(".");
  if (!dir)
    return VD_ENOMEM;
  vd_buf_reset(err);
  if (stat(dir, &st) != 0) {
    vd_buf_addf(err, "history database '%s': directory '%s' %s", path, dir,
                errno == ENOENT ? "does not exist" : strerror(errno));
    rc = VD_EIO;
  } else if (!S_ISDIR(st.st_mode)) {
    vd_buf_addf(err, "history database '%s': '%s' is not a directory", path,
                dir);
    rc = VD_EIO;
  } else if (writable && access(dir, W_OK | X_OK) != 0) {
    vd_buf_addf(err,
                "history database '%s': directory '%s' is not writable (%s); "
                "the database keeps its -wal and -shm files beside it",
                path, dir, strerror(errno));
    rc = VD_EIO;
  } else if (stat(path, &st) != 0) {
    int e = errno;
    if (e != ENOENT || !writable) {
      vd_buf_addf(err, "history database '%s': %s", path,
                  e == ENOENT ? "no such file" : strerror(e));
      rc = e == ENOENT ? VD_ENOT_FOUND : VD_EIO;
    }
  } else if (!S_ISREG(st.st_mode)) {
    vd_buf_addf(err, "history database '%s': not a regular file", path);
    rc = VD_EIO;
  } else if (access(path, writable ? R_OK | W_OK : R_OK) != 0) {
    vd_buf_addf(err, "history database '%s': file is %s (%s)", path,
                writable ? "read-only" : "not readable", strerror(errno));
    rc = VD_EIO;
  }
  free(dir);
  return rc;
}

/* The single integer a PRAGMA returns. */
static int pragma_int(sqlite3 *db, const char *sql, int64_t *v) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *v = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Is DB a verdict history database we understand?  Sets *version (0 for
 * an empty database, which only a writer may initialise). */
static int check_identity(sqlite3 *db, const char *path, int64_t *version,
                          vd_buf_t *err) {
  int64_t app = 0, ntables = 0;
  int rc = pragma_int(db, "PRAGMA application_id", &app);
  if (rc == SQLITE_OK)
    rc = pragma_int(db, "PRAGMA user_version", version);
  if (rc == SQLITE_OK)
    rc = pragma_int(db, "SELECT count(*) FROM sqlite_schema", &ntables);
  if (rc != SQLITE_OK)
    return db_err(err, path, db, rc, "reading the schema version");
  vd_buf_reset(err);
  if (app != HISTORY_APP_ID && (app != 0 || ntables != 0 || *version != 0)) {
    vd_buf_addf(err,
                "history database '%s': not a verdict history database "
                "(application_id %" PRId64 ", %" PRId64 " schema objects)",
                path, app, ntables);
    return VD_EINVALID;
  }
  if (*version > VD_HISTORY_SCHEMA_VERSION) {
    vd_buf_addf(err,
                "history database '%s': schema version %" PRId64
                " is newer than this verdict knows (%d); use a newer verdict",
                path, *version, VD_HISTORY_SCHEMA_VERSION);
    return VD_EINVALID;
  }
  return 0;
}

/* PRAGMA quick_check: SQLite's structural check, without the index
 * cross-checks of integrity_check.  Reads the whole file once. */
static int quick_check(sqlite3 *db, const char *path, vd_buf_t *err) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const char *res = (const char *)sqlite3_column_text(st, 0);
    if (res && strcmp(res, "ok") == 0) {
      sqlite3_finalize(st);
      return 0;
    }
    vd_buf_reset(err);
    vd_buf_addf(err,
                "history database '%s': the database is corrupt "
                "(quick_check: %s)",
                path, res ? res : "?");
    sqlite3_finalize(st);
    return VD_EINVALID;
  }
  rc = db_err(err, path, db, rc, "checking the database (quick_check)");
  sqlite3_finalize(st);
  return rc;
}

/* Bring DB to VD_HISTORY_SCHEMA_VERSION in one write transaction. */
static int migrate(sqlite3 *db, const char *path, vd_buf_t *err) {
  int64_t version = 0;
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return db_err(err, path, db, rc, "starting the schema migration");
  /* again, under the write lock: another process may have migrated */
  rc = check_identity(db, path, &version, err);
  while (rc == 0 && version < (int64_t)NMIGRATIONS) {
    char sql[64];
    int src = sqlite3_exec(db, migrations[version], NULL, NULL, NULL);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", (int)version + 1);
    if (src == SQLITE_OK)
      src = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
      char doing[64];
      snprintf(doing, sizeof doing, "migrating the schema to version %d",
               (int)version + 1);
      rc = db_err(err, path, db, src, doing);
    }
    version++;
  }
  if (rc == 0) {
    int src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK)
      rc = db_err(err, path, db, src, "committing the schema migration");
  }
  if (rc != 0 && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* PRAGMA journal_mode = WAL, and make sure it took: SQLite answers with
 * the mode it is in rather than failing. */
static int set_wal(sqlite3 *db, const char *path, vd_buf_t *err) {
  sqlite3_stmt *st;
  const char *mode;
  int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    rc = db_err(err, path, db, rc, "switching to WAL mode");
    sqlite3_finalize(st);
    return rc;
  }
  mode = (const char *)sqlite3_column_text(st, 0);
  rc = 0;
  if (!mode || strcmp(mode, "wal") != 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': cannot use WAL mode (it stays "
                     "in '%s' mode)",
                path, mode ? mode : "?");
    rc = VD_EIO;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Open PATH for writing, check it, put it in WAL mode with the given
 * synchronous level.  *out is the caller's on success. */
static int open_rw(sqlite3 **out, const char *path, const char *synchronous,
                   vd_buf_t *err) {
  sqlite3 *db = NULL;
  int64_t version = 0;
  char sql[64];
  int rc;
  *out = NULL;
  /* NOMUTEX: one thread at a time uses the connection (the writer thread,
   * after start-up); SQLite's per-call mutex was 6% of the writer's time */
  rc = sqlite3_open_v2(path, &db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                           SQLITE_OPEN_NOMUTEX,
                       NULL);
  if (rc != SQLITE_OK) {
    rc = db_err(err, path, db, rc, "opening");
    goto fail;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, VD_HISTORY_BUSY_MS);
  if (sqlite3_db_readonly(db, "main") == 1) {
    vd_buf_reset(err);
    vd_buf_addf(err, "history database '%s': opened read-only; the daemon "
                     "needs to write it",
                path);
    rc = VD_EIO;
    goto fail;
  }
  rc = check_identity(db, path, &version, err);
  if (rc)
    goto fail;
  rc = set_wal(db, path, err);
  if (rc)
    goto fail;
  snprintf(sql, sizeof sql, "PRAGMA synchronous = %s", synchronous);
  rc = sqlite3_exec(db,
                    "PRAGMA journal_size_limit = 67108864;"
                    "PRAGMA cache_size = -8192;" /* 8 MiB: appends touch the tails */
                    "PRAGMA foreign_keys = ON",
                    NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    rc = db_err(err, path, db, rc, "configuring the connection");
    goto fail;
  }
  rc = migrate(db, path, err);
  if (rc)
    goto fail;
  *out = db;
  return 0;
fail:
  sqlite3_close(db);
  return rc;
}

int vd_history_db_open_ro(sqlite3 **out, const char *path, vd_buf_t *err) {
  sqlite3 *db = NULL;
  int64_t version = 0;
  int rc;
  *out = NULL;
  rc = check_path(path, 0, err);
  if (rc)
    return rc;
  /* each reader belongs to one thread (a worker, a replay lane, the CLI) */
  rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                       NULL);
  if (rc != SQLITE_OK) {
    rc = db_err(err, path, db, rc, "opening read-only");
    sqlite3_close(db);
    return rc;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, VD_HISTORY_BUSY_MS);
  rc = check_identity(db, path, &version, err);
  if (rc == 0 && version != VD_HISTORY_SCHEMA_VERSION) {
    vd_buf_reset(err);
    if (version == 0)
      vd_buf_addf(err, "history database '%s': empty, no verdict history "
                       "has been written to it",
                  path);
    else
      vd_buf_addf(err,
                  "history database '%s': schema version %" PRId64
                  ", this verdict reads version %d; start the daemon on it "
                  "once to migrate it",
                  path, version, VD_HISTORY_SCHEMA_VERSION);
    rc = VD_EINVALID;
  }
  if (rc) {
    sqlite3_close(db);
    return rc;
  }
  *out = db;
  return 0;
}

/* ========================================================================
 * The writer
 * ====================================================================== */

/* A queued copy of one record: the struct and every string it points to
 * in one allocation. */
typedef struct qrec {
  struct qrec *next;
  unsigned worker;
  uint64_t wseq;    /* the worker's sequence number */
  field_t f[NCOLS]; /* the record's columns, measured once; text in data[] */
  char data[];
} qrec_t;

/* One worker's side: its sequence counter and finished ranges. */
typedef struct lane {
  uint64_t next_seq;        /* last sequence number handed out */
  vd_history_done_t *done;  /* finished, not yet drained; oldest first */
  size_t ndone, cap;
  uint64_t batch_first;     /* writer: this worker's range in the batch */
  uint64_t batch_last;      /*   in hand (0: none) */
} lane_t;

struct vd_history {
  char *path;
  int lock_fd;          /* flock held: one writer per database file */
  vd_log_mode_t mode;
  unsigned nworkers;
  vd_history_notify_cb notify;
  void *notify_arg;

  /* writer */
  sqlite3 *db;
  sqlite3_stmt *st_head_get, *st_insert, *st_head_set;
  unsigned *touched;        /* workers with records in the batch in hand */
  unsigned long fail_batches, fail_records; /* in the current burst */

  /* under mu */
  pthread_mutex_t mu;
  pthread_cond_t wake;      /* writer: something queued, or stopping */
  pthread_cond_t room;      /* submitters: the queue has room again */
  qrec_t *qhead, **qtail;
  size_t qcount, qbytes;
  int stopping;
  lane_t *lanes;            /* nworkers of them */

  pthread_t thread;
  int has_thread;

  /* revisions and activations, from the main thread */
  pthread_mutex_t aux_mu;
  sqlite3 *aux;
};

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
static void lane_push(lane_t *l, uint64_t first, uint64_t last, int status) {
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
    return db_err(err, h->path, h->db, rc, "reading the chain head");
  }
  head_seq = sqlite3_column_int64(st, 0);
  max_seq = sqlite3_column_int64(st, 2);
  *next = (head_seq > max_seq ? head_seq : max_seq) + 1;
  if (sqlite3_column_type(st, 1) != SQLITE_NULL)
    rc = from_hex((const char *)sqlite3_column_text(st, 1),
                  (size_t)sqlite3_column_bytes(st, 1), prev);
  else if (sqlite3_column_type(st, 3) != SQLITE_NULL)
    rc = from_hex((const char *)sqlite3_column_text(st, 3),
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

static int insert_row(vd_history_t *h, int64_t seq, const field_t f[NCOLS],
                      const char *hash) {
  sqlite3_stmt *st = h->st_insert;
  int i, rc;
  sqlite3_bind_int64(st, 1, seq);
  for (i = 0; i < NCOLS; i++) {
    if (f[i].is_int)
      sqlite3_bind_int64(st, i + 2, f[i].i);
    else if (!f[i].p)
      sqlite3_bind_null(st, i + 2);
    else
      sqlite3_bind_text64(st, i + 2, f[i].p, f[i].n, SQLITE_STATIC,
                          SQLITE_UTF8);
  }
  sqlite3_bind_text(st, NCOLS + 2, hash, 64, SQLITE_STATIC);
  rc = sqlite3_step(st);
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One transaction for the whole batch: continue the chain, insert every
 * record, move the head, commit.  On failure everything is rolled back
 * and ERR says why. */
static int write_batch(vd_history_t *h, qrec_t *list, vd_buf_t *err) {
  uint8_t prev[32], cur[32];
  char hex[65];
  int64_t seq = 0;
  qrec_t *q;
  int rc;
  /* A ROLLBACK that failed (it needs memory to run) left the last failed
   * batch's transaction open; end it, or every batch from now on would
   * fail to begin. */
  if (!sqlite3_get_autocommit(h->db))
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
  rc = sqlite3_exec(h->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return db_err(err, h->path, h->db, rc, "starting a batch");
  rc = read_head(h, &seq, prev, err);
  if (rc)
    goto rollback;
  for (q = list; q; q = q->next, seq++) {
    chain_hash(prev, seq, q->f, cur);
    to_hex(cur, sizeof cur, hex);
    rc = insert_row(h, seq, q->f, hex);
    if (rc != SQLITE_OK) {
      rc = db_err(err, h->path, h->db, rc, "inserting a decision");
      goto rollback;
    }
    memcpy(prev, cur, sizeof prev);
  }
  to_hex(prev, sizeof prev, hex);
  sqlite3_bind_int64(h->st_head_set, 1, seq - 1);
  sqlite3_bind_text(h->st_head_set, 2, hex, 64, SQLITE_STATIC);
  rc = sqlite3_step(h->st_head_set);
  sqlite3_reset(h->st_head_set);
  if (rc != SQLITE_DONE) {
    rc = db_err(err, h->path, h->db, rc, "moving the chain head");
    goto rollback;
  }
  rc = sqlite3_exec(h->db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    rc = db_err(err, h->path, h->db, rc, "committing a batch");
    goto rollback;
  }
  return 0;
rollback:
  if (!sqlite3_get_autocommit(h->db))
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* Tell stderr when writing starts failing and when it works again, not
 * once per batch. */
static void log_outcome(vd_history_t *h, int rc, size_t n, const char *why) {
  if (rc) {
    if (h->fail_batches++ == 0)
      fprintf(stderr,
              "verdict: history: a batch of %zu records was not stored: %s; "
              "their requests fail with `internal` until writing works "
              "again\n",
              n, why);
    h->fail_records += n;
  } else if (h->fail_batches) {
    fprintf(stderr,
            "verdict: history: writing works again after %lu failed "
            "batches (%lu records not stored)\n",
            h->fail_batches, h->fail_records);
    h->fail_batches = h->fail_records = 0;
  }
}

static void *writer_main(void *arg) {
  vd_history_t *h = arg;
  vd_buf_t err = VD_BUF_INIT;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    qrec_t *list, *q, *next;
    size_t n = 0, ntouched = 0, i;
    int rc;
    while (!h->qhead && !h->stopping)
      pthread_cond_wait(&h->wake, &h->mu);
    if (!h->qhead)
      break; /* stopping, and everything is written */
    list = h->qhead;
    h->qhead = NULL;
    h->qtail = &h->qhead;
    h->qcount = h->qbytes = 0;
    pthread_cond_broadcast(&h->room);
    pthread_mutex_unlock(&h->mu);

    for (q = list; q; q = q->next, n++) {
      lane_t *l = &h->lanes[q->worker];
      if (!l->batch_first) {
        l->batch_first = q->wseq;
        h->touched[ntouched++] = q->worker;
      }
      l->batch_last = q->wseq;
    }
    rc = write_batch(h, list, &err);
    log_outcome(h, rc, n, err.data);
    for (q = list; q; q = next) {
      next = q->next;
      free(q);
    }

    pthread_mutex_lock(&h->mu);
    for (i = 0; i < ntouched; i++) {
      lane_t *l = &h->lanes[h->touched[i]];
      lane_push(l, l->batch_first, l->batch_last, rc ? VD_EIO : 0);
      l->batch_first = l->batch_last = 0;
    }
    pthread_mutex_unlock(&h->mu);
    if (h->notify)
      for (i = 0; i < ntouched; i++)
        h->notify(h->touched[i], h->notify_arg);
    pthread_mutex_lock(&h->mu);
  }
  pthread_mutex_unlock(&h->mu);
  vd_buf_release(&err);
  return NULL;
}

static int prepare_writer(vd_history_t *h, vd_buf_t *err) {
  static const char head_get[] =
      "SELECT h.seq, h.hash, (SELECT max(seq) FROM decisions),"
      "       (SELECT hash FROM decisions ORDER BY seq DESC LIMIT 1)"
      "  FROM (SELECT 1) LEFT JOIN chain_head h ON h.id = 1";
  static const char insert[] =
      "INSERT INTO decisions (" ALL_COLUMNS ") VALUES (" ALL_PARAMS ")";
  static const char head_set[] =
      "INSERT OR REPLACE INTO chain_head (id, seq, hash) VALUES (1, ?, ?)";
  int rc = sqlite3_prepare_v3(h->db, head_get, -1, SQLITE_PREPARE_PERSISTENT,
                              &h->st_head_get, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, insert, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_insert, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v3(h->db, head_set, -1, SQLITE_PREPARE_PERSISTENT,
                            &h->st_head_set, NULL);
  if (rc != SQLITE_OK)
    return db_err(err, h->path, h->db, rc, "preparing statements");
  return 0;
}

/* Free H and whatever it holds; the writer thread is not running. */
static void history_free(vd_history_t *h) {
  unsigned i;
  qrec_t *q, *next;
  sqlite3_finalize(h->st_head_get);
  sqlite3_finalize(h->st_insert);
  sqlite3_finalize(h->st_head_set);
  sqlite3_close(h->db);
  sqlite3_close(h->aux);
  if (h->lock_fd >= 0)
    close(h->lock_fd); /* after the connections: the lock covers them */
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
  pthread_cond_destroy(&h->wake);
  pthread_cond_destroy(&h->room);
  pthread_mutex_destroy(&h->mu);
  pthread_mutex_destroy(&h->aux_mu);
  free(h);
}

int vd_history_open(vd_history_t **out, const char *path, vd_log_mode_t mode,
                    unsigned nworkers, vd_history_notify_cb cb, void *arg,
                    char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  const char *sync = mode == VD_LOG_DURABLE ? "FULL" : "NORMAL";
  vd_history_t *h;
  int rc;
  *out = NULL;
  if (errmsg)
    *errmsg = NULL;
  if (nworkers == 0 || mode < VD_LOG_DURABLE || mode > VD_LOG_OFF) {
    vd_buf_adds(&err, "history: bad arguments (no workers, or no such mode)");
    return give_err(errmsg, &err, VD_EINVALID);
  }
  rc = check_path(path, 1, &err);
  if (rc)
    return give_err(errmsg, &err, rc);
  h = calloc(1, sizeof *h);
  if (!h)
    return give_err(errmsg, &err, VD_ENOMEM);
  pthread_mutex_init(&h->mu, NULL);
  pthread_mutex_init(&h->aux_mu, NULL);
  pthread_cond_init(&h->wake, NULL);
  pthread_cond_init(&h->room, NULL);
  h->qtail = &h->qhead;
  h->lock_fd = -1;
  h->mode = mode;
  h->nworkers = nworkers;
  h->notify = cb;
  h->notify_arg = arg;
  h->path = strdup(path);
  h->lanes = calloc(nworkers, sizeof *h->lanes);
  h->touched = calloc(nworkers, sizeof *h->touched);
  if (!h->path || !h->lanes || !h->touched) {
    rc = VD_ENOMEM;
    goto fail;
  }
  /* One writer per file, decided before anything touches it: a second
   * daemon (a newer binary during an upgrade, say) must not switch the
   * journal or run migrations under the first.  flock is separate from
   * SQLite's own locks, so readers are not affected. */
  h->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (h->lock_fd < 0 || flock(h->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    vd_buf_reset(&err);
    if (h->lock_fd < 0)
      vd_buf_addf(&err, "history database '%s': cannot open it: %s", path,
                  strerror(errno));
    else
      vd_buf_addf(&err, "history database '%s': another verdictd is writing "
                        "it", path);
    rc = VD_EIO;
    goto fail;
  }
  rc = open_rw(&h->db, path, sync, &err);
  if (rc)
    goto fail;
  rc = prepare_writer(h, &err);
  if (rc)
    goto fail;
  rc = sqlite3_open_v2(path, &h->aux, SQLITE_OPEN_READWRITE, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(h->aux, 1);
    sqlite3_busy_timeout(h->aux, VD_HISTORY_BUSY_MS);
    rc = sqlite3_exec(h->aux, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK) {
    rc = db_err(&err, path, h->aux, rc, "opening a second connection");
    goto fail;
  }
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
  return give_err(errmsg, &err, 0);
fail:
  history_free(h);
  return give_err(errmsg, &err, rc);
}

/* Copy n bytes and a NUL to *p; return where they went. */
int vd_history_submit(vd_history_t *h, unsigned worker, const vd_record_t *r,
                      uint64_t *seq) {
  field_t f[NCOLS];
  qrec_t *q;
  size_t size;
  char *p;
  int i;
  if (worker >= h->nworkers || !r->decision_id)
    return VD_EINVALID;
  if (h->mode == VD_LOG_OFF) {
    lane_t *l = &h->lanes[worker];
    pthread_mutex_lock(&h->mu);
    *seq = ++l->next_seq;
    lane_push(l, *seq, *seq, 0);
    pthread_mutex_unlock(&h->mu);
    if (h->notify)
      h->notify(worker, h->notify_arg);
    return 0;
  }
  /* Measured once, here: the copy, the hash and the insert all use f. */
  record_fields(r, f);
  size = sizeof *q;
  for (i = 0; i < NCOLS; i++)
    if (!f[i].is_int && f[i].p)
      size += f[i].n + 1;
  if (size > VD_HISTORY_QUEUE_BYTES)
    return VD_ETOO_LARGE;
  q = malloc(size);
  if (!q)
    return VD_ENOMEM;
  q->next = NULL;
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

  pthread_mutex_lock(&h->mu);
  while (h->qcount > 0 && (h->qcount >= VD_HISTORY_QUEUE_MAX ||
                           h->qbytes + size > VD_HISTORY_QUEUE_BYTES))
    pthread_cond_wait(&h->room, &h->mu);
  q->wseq = *seq = ++h->lanes[worker].next_seq;
  *h->qtail = q;
  h->qtail = &q->next;
  h->qcount++;
  h->qbytes += size;
  pthread_cond_signal(&h->wake);
  pthread_mutex_unlock(&h->mu);
  return 0;
}

size_t vd_history_drain(vd_history_t *h, unsigned worker,
                        vd_history_done_t *out, size_t max) {
  lane_t *l;
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

/* ========================================================================
 * Revisions and activations
 * ====================================================================== */

/* Does REVISION name exactly these files (the bundle's own hashing)? */
static int revision_name_ok(const char *revision, const vd_bundle_file_t *files,
                            size_t n, vd_buf_t *err) {
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
  sha256_hex(f->data ? f->data : "", f->len, sha);
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
    return db_err(err, h->path, h->aux, rc, "storing a revision file");
  return 0;
}

int vd_history_store_revision(vd_history_t *h, const char *revision,
                              const vd_bundle_file_t *files, size_t nfiles,
                              char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int64_t stored = -1;
  size_t i, bytes = 0;
  char sql[160];
  int rc;
  if (errmsg)
    *errmsg = NULL;
  /* the name is the hash of the files, so a stored revision of this name
   * already holds exactly these files */
  rc = revision_name_ok(revision, files, nfiles, &err);
  if (rc)
    return give_err(errmsg, &err, rc);
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
    rc = db_err(&err, h->path, h->aux, rc, "storing a revision");
  for (i = 0; rc == 0 && stored < 0 && i < nfiles; i++)
    rc = store_file(h, revision, &files[i], &err);
  if (rc == 0 && (rc = sqlite3_exec(h->aux, "COMMIT", NULL, NULL, NULL)))
    rc = db_err(&err, h->path, h->aux, rc, "committing a revision");
  if (rc && !sqlite3_get_autocommit(h->aux))
    sqlite3_exec(h->aux, "ROLLBACK", NULL, NULL, NULL);
  pthread_mutex_unlock(&h->aux_mu);
  return give_err(errmsg, &err, rc);
}

int vd_history_record_activation(vd_history_t *h, const char *revision,
                                 const char *trigger, const char *who,
                                 const char *source_dir, int ok,
                                 const char *error, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3_stmt *st;
  int64_t now = vd_now_ms();
  char at[32];
  int rc;
  if (errmsg)
    *errmsg = NULL;
  if (!revision || !trigger) {
    vd_buf_adds(&err, "history: an activation needs a revision and a trigger");
    return give_err(errmsg, &err, VD_EINVALID);
  }
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  pthread_mutex_lock(&h->aux_mu);
  rc = sqlite3_prepare_v2(h->aux,
                          "INSERT INTO activations (at_ms, at, revision, cause,"
                          " who, source_dir, ok, error)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, at, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, revision, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, trigger, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, who, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, source_dir, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 7, ok ? 1 : 0);
    sqlite3_bind_text(st, 8, error, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK)
    rc = db_err(&err, h->path, h->aux, rc, "recording an activation");
  pthread_mutex_unlock(&h->aux_mu);
  return give_err(errmsg, &err, rc);
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

/* Every file of REVISION from DB, in path order, each blob checked.
 * Returns 0, VD_ENOT_FOUND, VD_EINVALID (a blob missing or altered) or
 * VD_EIO / VD_ENOMEM, with ERR set. */
static int load_files(sqlite3 *db, const char *path, const char *revision,
                      vd_bundle_file_t **files, size_t *nfiles, vd_buf_t *err) {
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
    return db_err(err, path, db, src, "looking up a revision");
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
    return db_err(err, path, db, src, "reading a revision");
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
    sha256_hex(data ? data : "", len, sha);
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
    rc = db_err(err, path, db, src, "reading a revision");
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
  rc = vd_history_db_open_ro(&db, db_path, &err);
  if (rc)
    return give_err(errmsg, &err, rc);
  rc = load_files(db, db_path, revision, files, nfiles, &err);
  sqlite3_close(db);
  return give_err(errmsg, &err, rc);
}

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
  vd_buf_t err;
};

void vd_history_reader_close(vd_history_reader_t *r) {
  size_t i;
  if (!r)
    return;
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
    return give_err(errmsg, &err, VD_ENOMEM);
  }
  st[0] = &r->st_count_kind;
  st[1] = &r->st_count_any;
  st[2] = &r->st_distinct;
  memcpy(text, sql, sizeof sql);
  for (i = 0; i < NCOMPLAINTS; i++) {
    text[3 + i] = complaints_sql[i];
    st[3 + i] = &r->st_complaints[i];
  }
  rc = vd_history_db_open_ro(&r->db, path, &err);
  for (i = 0; rc == 0 && i < 3 + NCOMPLAINTS; i++) {
    int src = sqlite3_prepare_v3(r->db, text[i], -1,
                                 SQLITE_PREPARE_PERSISTENT, st[i], NULL);
    if (src != SQLITE_OK)
      rc = db_err(&err, path, r->db, src, "preparing the facts queries");
  }
  if (rc) {
    vd_history_reader_close(r);
    return give_err(errmsg, &err, rc);
  }
  *out = r;
  return give_err(errmsg, &err, 0);
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
    return db_err(&r->err, r->path, r->db, rc, "counting decisions");
  return 0;
}

int vd_history_count_customer(vd_history_reader_t *r, const char *customer_id,
                              const char *kind, int64_t since_ms,
                              int64_t until_ms, int64_t *count) {
  return reader_count(r, kind ? r->st_count_kind : r->st_count_any,
                      customer_id, kind, since_ms, until_ms, count);
}

int vd_history_distinct_customers(vd_history_reader_t *r, const char *region,
                                  const char *category, int64_t since_ms,
                                  int64_t until_ms, int64_t *count) {
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
  return reader_count(r, r->st_complaints[which], customer_id, complaint_id,
                      since_ms, until_ms, count);
}

int vd_history_answer(vd_history_reader_t *r, const char *query,
                      const char *a, const char *b, int64_t since_ms,
                      int64_t until_ms, int64_t *count) {
  static const struct {
    const char *name;
    vd_complaints_t which;
  } complaints[] = {{"repeat_complaints", VD_COMPLAINTS_REPEAT},
                    {"over_head_complaints", VD_COMPLAINTS_OVER_HEAD},
                    {"refunded_complaints", VD_COMPLAINTS_REFUNDED}};
  size_t i;
  if (strcmp(query, "customer_decisions") == 0)
    return vd_history_count_customer(r, a, b, since_ms, until_ms, count);
  if (strcmp(query, "similar_customers") == 0)
    return vd_history_distinct_customers(r, a, b, since_ms, until_ms, count);
  for (i = 0; i < sizeof complaints / sizeof complaints[0]; i++)
    if (strcmp(query, complaints[i].name) == 0)
      return vd_history_count_complaints(r, complaints[i].which, a, b,
                                         since_ms, until_ms, count);
  return VD_EINVALID;
}

/* ========================================================================
 * The whole-file check
 * ====================================================================== */

struct vd_history_check {
  sqlite3 *db;
  char *path;
  atomic_int stop; /* set by interrupt; read by the progress handler */
};

/* SQLite forgets an sqlite3_interrupt() that comes before a statement
 * runs; a progress handler asks again every 1,000 VM steps, whenever the
 * interrupt came. */
static int check_progress(void *arg) {
  vd_history_check_t *c = arg;
  return atomic_load(&c->stop);
}

int vd_history_check_open(vd_history_check_t **out, const char *path,
                          char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  vd_history_check_t *c = calloc(1, sizeof *c);
  int rc;
  *out = NULL;
  if (!c || !(c->path = strdup(path))) {
    free(c);
    vd_buf_adds(&err, "out of memory");
    return give_err(errmsg, &err, VD_ENOMEM);
  }
  rc = vd_history_db_open_ro(&c->db, path, &err);
  if (rc) {
    vd_history_check_close(c);
  } else {
    sqlite3_progress_handler(c->db, 1000, check_progress, c);
    *out = c;
  }
  return give_err(errmsg, &err, rc);
}

int vd_history_check_run(vd_history_check_t *c, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = quick_check(c->db, c->path, &err);
  if (rc && rc != VD_EINVALID)
    rc = VD_EIO; /* could not finish: interrupted, or an I/O error */
  return give_err(errmsg, &err, rc);
}

void vd_history_check_interrupt(vd_history_check_t *c) {
  if (c)
    atomic_store(&c->stop, 1);
}

void vd_history_check_close(vd_history_check_t *c) {
  if (!c)
    return;
  sqlite3_close(c->db);
  free(c->path);
  free(c);
}

/* ========================================================================
 * Verification
 * ====================================================================== */

static void report(vd_verify_report_t *rep, vd_verify_problem_t problem,
                   int64_t seq, const char *decision_id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void report(vd_verify_report_t *rep, vd_verify_problem_t problem,
                   int64_t seq, const char *decision_id, const char *fmt,
                   ...) {
  va_list ap;
  rep->problem = problem;
  rep->seq = seq;
  snprintf(rep->decision_id, sizeof rep->decision_id, "%s",
           decision_id ? decision_id : "");
  va_start(ap, fmt);
  vsnprintf(rep->message, sizeof rep->message, fmt, ap);
  va_end(ap);
}

/* Walk decisions in seq order inside the caller's read transaction.
 * Returns 0, VD_EINVALID (rep says where) or an SQLite failure. */
static int verify_chain(sqlite3 *db, const char *path, int64_t anchor_seq,
                        const char *anchor_hash, vd_verify_report_t *rep,
                        vd_buf_t *err) {
  static const char sql[] =
      "SELECT " ALL_COLUMNS " FROM decisions ORDER BY seq";
  sqlite3_stmt *st = NULL;
  int64_t head_seq = -1, expect = 1;
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
    return db_err(err, path, db, src, "reading the chain head");
  if (head_seq < 0) {
    report(rep, VD_VERIFY_CHANGED, 0, NULL,
           "the chain_head row is missing: the head of the chain was altered");
    return VD_EINVALID;
  }
  src = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (src != SQLITE_OK)
    return db_err(err, path, db, src, "reading decisions");
  rc = 0;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t seq = sqlite3_column_int64(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    const char *hash = (const char *)sqlite3_column_text(st, NCOLS + 1);
    field_t f[NCOLS];
    char hex[65];
    int i;
    if (seq > head_seq || seq < expect) {
      report(rep, VD_VERIFY_INSERTED, seq, id,
             "row seq %" PRId64 " (decision %s) was inserted: it is outside "
             "the chain, which ends at seq %" PRId64,
             seq, id ? id : "NULL", head_seq);
      rc = VD_EINVALID;
      break;
    }
    if (seq > expect) {
      report(rep, VD_VERIFY_DELETED, expect, id,
             "rows seq %" PRId64 "..%" PRId64 " were deleted: the chain "
             "jumps to seq %" PRId64 " (decision %s)",
             expect, seq - 1, seq, id ? id : "NULL");
      rc = VD_EINVALID;
      break;
    }
    for (i = 0; i < NCOLS; i++)
      f[i] = column_field(st, i + 1);
    chain_hash(prev, seq, f, cur);
    to_hex(cur, sizeof cur, hex);
    if (!hash || strcmp(hex, hash) != 0) {
      report(rep, VD_VERIFY_CHANGED, seq, id,
             "row seq %" PRId64 " (decision %s) was changed: its contents "
             "hash to %.16s..., the chain recorded %.16s...",
             seq, id ? id : "NULL", hex, hash ? hash : "NULL");
      rc = VD_EINVALID;
      break;
    }
    if (seq == anchor_seq && strcmp(hex, anchor_hash) != 0) {
      report(rep, VD_VERIFY_CHANGED, seq, id,
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
    return db_err(err, path, db, src, "reading decisions");
  if (expect - 1 < head_seq) {
    report(rep, VD_VERIFY_DELETED, expect, NULL,
           "rows seq %" PRId64 "..%" PRId64 " at the end were deleted: the "
           "chain ends at seq %" PRId64,
           expect, head_seq, head_seq);
    return VD_EINVALID;
  }
  if (strcmp(head_hash, head_seq ? rep->head : ZERO_HASH) != 0) {
    report(rep, VD_VERIFY_CHANGED, head_seq, NULL,
           "chain_head was changed: it names hash %.16s... for seq %" PRId64
           ", the row has %.16s...",
           head_hash, head_seq, head_seq ? rep->head : ZERO_HASH);
    return VD_EINVALID;
  }
  if (anchor_seq > head_seq) {
    report(rep, VD_VERIFY_DELETED, anchor_seq, NULL,
           "anchor %" PRId64 ": the chain now ends at record %" PRId64
           ", so records were cut from its tail (and chain_head moved back)",
           anchor_seq, head_seq);
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
    report(rep, VD_VERIFY_REVISION, sqlite3_column_int64(st, 0), id,
           "decision %s (seq %lld) names revision %s, which is not in the "
           "database (removed, or never stored)",
           id ? id : "NULL", (long long)sqlite3_column_int64(st, 0),
           (const char *)sqlite3_column_text(st, 2));
    rc = VD_EINVALID;
  } else if (src != SQLITE_DONE) {
    rc = db_err(err, path, db, src, "checking revisions");
  }
  sqlite3_finalize(st);
  if (rc)
    return rc;
  src = sqlite3_prepare_v2(db, "SELECT revision FROM revisions ORDER BY 1", -1,
                           &st, NULL);
  if (src != SQLITE_OK)
    return db_err(err, path, db, src, "reading revisions");
  while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
    const char *revision = (const char *)sqlite3_column_text(st, 0);
    vd_bundle_file_t *files;
    size_t n;
    rc = load_files(db, path, revision, &files, &n, err);
    if (rc == 0) {
      rc = revision_name_ok(revision, files, n, err);
      vd_history_free_files(files, n);
    }
    if (rc == VD_EINVALID || rc == VD_ENOT_FOUND) {
      report(rep, VD_VERIFY_REVISION, 0, NULL, "%s", err->data);
      rc = VD_EINVALID;
    } else if (rc == 0) {
      rep->revisions++;
    }
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = db_err(err, path, db, src, "reading revisions");
  sqlite3_finalize(st);
  return rc;
}

int vd_history_verify(const char *path, vd_verify_report_t *rep) {
  return vd_history_verify_anchored(path, 0, NULL, rep);
}

int vd_history_verify_anchored(const char *path, int64_t anchor_seq,
                               const char *anchor_hash,
                               vd_verify_report_t *rep) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *db;
  int rc, src;
  memset(rep, 0, sizeof *rep);
  rc = vd_history_db_open_ro(&db, path, &err);
  if (rc)
    goto out;
  /* one snapshot for everything: the writer may go on meanwhile */
  src = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  if (src != SQLITE_OK)
    rc = db_err(&err, path, db, src, "starting to read");
  if (rc == 0)
    rc = verify_chain(db, path, anchor_seq, anchor_hash, rep, &err);
  if (rc == 0)
    rc = verify_revisions(db, path, rep, &err);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(db);
out:
  if (rc && rep->problem == VD_VERIFY_OK) {
    snprintf(rep->message, sizeof rep->message, "%s",
             err.data ? err.data : vd_err_desc(rc));
  } else if (rc == 0) {
    snprintf(rep->message, sizeof rep->message,
             "%" PRId64 " records verified, chain head %s; %" PRId64
             " revisions intact",
             rep->records, rep->records ? rep->head : ZERO_HASH,
             rep->revisions);
  }
  vd_buf_release(&err);
  return rc;
}
