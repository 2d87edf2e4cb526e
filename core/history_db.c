/*
 * history_db.c - the history database file: opening it, its pragmas, its
 * schema and migrations, the one-writer lock, the read-only opening every
 * reader uses, and the whole-file check (PRAGMA quick_check).
 *
 * Owns the check (vd_history_check_t) and nothing else long-lived: it
 * hands out SQLite connections that their callers own (the writer's and
 * the auxiliary one in vd_history_t, a reader's, a replay lane's) and the
 * error messages that say what to fix (vd_hist_db_err()).
 *
 * Invariants:
 *   - a database this code writes has application_id HISTORY_APP_ID and
 *     user_version VD_HISTORY_SCHEMA_VERSION; migrations run in one write
 *     transaction, so a file is at one schema version or the next;
 *   - one writer per file: vd_hist_open_writer() takes an exclusive flock
 *     before SQLite touches the file, so a second daemon can neither
 *     switch the journal nor migrate under the first;
 *   - readers open read-only through vd_history_db_open_ro(), which
 *     refuses anything but a verdict database at this schema version.
 *
 * Threads: each function runs on its caller's thread; a connection is
 * used by one thread at a time (SQLITE_OPEN_NOMUTEX).  The whole-file
 * check runs on a thread of its caller's (verdictd starts one after
 * start-up); vd_history_check_interrupt() may come from any thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

/* PRAGMA application_id of a verdict history database: "vrdt". */
#define HISTORY_APP_ID 0x76726474

/* ========================================================================
 * Schema
 * ====================================================================== */

/* One migration: SQL, then (when not NULL) THEN, in the same
 * transaction, for what SQL cannot do (hashing). */
typedef struct migration {
  const char *sql;
  int (*then)(sqlite3 *db, const char *path, int64_t now_ms, vd_buf_t *err);
} migration_t;

/* migrations[i] takes a database from user_version i to i + 1.  Append
 * only: a shipped migration never changes (its SQL, nor what its step
 * computes).  The views write times in +08:00, verdict's default offset
 * (VD_DEFAULT_OFFSET_MIN), like the `verdict history` commands. */
static const migration_t migrations[] = {
  {/* 0 -> 1 */
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
  "INSERT INTO chain_head VALUES (1, 0, '" VD_HIST_ZERO_HASH "');\n"
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
   NULL},
  {/* 1 -> 2: the complaint facts (vd_history_count_complaints) read a
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
   NULL},
  /* 2 -> 3: activations join a hash chain of their own (docs/history.md,
   * "The activations chain"), so editing or deleting one shows in
   * verify.  Their own, not the decisions': the main thread appends them
   * through its own connection while the writer thread commits batches,
   * and neither should wait for or reread the other's head.  The rows
   * already stored are chained as found, in id order, by
   * vd_hist_seal_activations(); activation_head keeps how many that was
   * and when, so verify can say those rows were vouched for only from
   * the migration on.  hash stays nullable (ALTER TABLE cannot add a NOT
   * NULL column without a default); verify treats NULL as a change. */
  {"ALTER TABLE activations ADD COLUMN hash TEXT; -- chain, see activation_head\n"
   "CREATE TABLE activation_head (\n"
   "  id        INTEGER PRIMARY KEY CHECK (id = 1),\n"
   "  last_id   INTEGER NOT NULL, -- id of the last activation (0: none)\n"
   "  hash      TEXT NOT NULL,    -- its hash\n"
   "  sealed_id INTEGER NOT NULL, -- 1..sealed_id chained by this migration\n"
   "  sealed_ms INTEGER NOT NULL  -- when it ran\n"
   ");\n",
   vd_hist_seal_activations},
  /* 3 -> 4: names people give revisions (`verdict tag`, history_revs.c),
   * with who gave each and when.  Labels, not evidence: not chained. */
  {"CREATE TABLE IF NOT EXISTS revision_tags (\n"
   "  name     TEXT PRIMARY KEY, -- 'release-2026-12', never hex only\n"
   "  revision TEXT NOT NULL REFERENCES revisions (revision),\n"
   "  who      TEXT,             -- as given, else the login name\n"
   "  at_ms    INTEGER NOT NULL,\n"
   "  at       TEXT NOT NULL     -- RFC 3339, +08:00\n"
   ");\n",
   NULL},
  /* 4 -> 5: the chain commits to a salted digest of a record's personal
   * part (customer_id, request, facts) rather than its bytes, so those
   * can be erased and the chain still verifies (docs/history.md,
   * "Schema 5: the personal part").  Records already stored keep the
   * form they were hashed in: chain_format says from which seq on the
   * new one applies (vd_hist_seal_format()).  `erasures` records each
   * erasure (history_erase.c), `archives` each archiving
   * (history_archive.c).  Reads no decision. */
  {"ALTER TABLE decisions ADD COLUMN personal_salt TEXT;"
   " -- 32 hex digits; NULL before v2_from and once erased\n"
   "ALTER TABLE decisions ADD COLUMN personal_digest TEXT;"
   " -- kept by an erasure\n"
   "CREATE TABLE chain_format (\n"
   "  id          INTEGER PRIMARY KEY CHECK (id = 1),\n"
   "  v2_from     INTEGER NOT NULL, -- first seq hashed as \"vd2\"\n"
   "  migrated_ms INTEGER NOT NULL  -- when the migration to 5 ran\n"
   ");\n"
   "CREATE TABLE erasures ( -- verdict history erase, one row per run\n"
   "  id        INTEGER PRIMARY KEY,\n"
   "  at_ms     INTEGER NOT NULL,\n"
   "  at        TEXT NOT NULL,\n"
   "  who       TEXT,             -- who ran it (never whose data)\n"
   "  records   INTEGER NOT NULL, -- records erased\n"
   "  first_seq INTEGER NOT NULL,\n"
   "  last_seq  INTEGER NOT NULL,\n"
   "  fields    TEXT NOT NULL     -- the input fields removed\n"
   ");\n"
   "CREATE TABLE archives ( -- verdict history archive, one row per run\n"
   "  id         INTEGER PRIMARY KEY,\n"
   "  at_ms      INTEGER NOT NULL,\n"
   "  at         TEXT NOT NULL,\n"
   "  who        TEXT,\n"
   "  role       TEXT NOT NULL,    -- 'moved' here, 'copy' in the archive\n"
   "  before_ms  INTEGER NOT NULL, -- records received before this\n"
   "  first_seq  INTEGER NOT NULL,\n"
   "  last_seq   INTEGER NOT NULL,\n"
   "  start_hash TEXT NOT NULL,    -- hash of first_seq - 1\n"
   "  anchor     TEXT NOT NULL,    -- hash of last_seq\n"
   "  file       TEXT NOT NULL,    -- the other file\n"
   "  erased_elsewhere INTEGER NOT NULL -- erasures' records in the other\n"
   ");\n",
   vd_hist_seal_format},
  /* 5 -> 6: the console's searches (core/daemon/console.c, through
   * history_query.c's newest_first) read newest first, in (received_ms,
   * seq) order, from an index, and stop after a page: on a million rows
   * a revision's search took 760 ms (no index: every newer row read) and
   * a time range 300 ms (its window's rows sorted by seq).  Each index
   * here follows its column with received_ms (the rowid, seq, is every
   * index's last column), so an equality, or an equality and a time
   * range, is one range read in page order.  decisions_region_kind
   * (region, kind) gave a region's rows in kind order, which a search
   * newest first had to sort: decisions_region replaces it, so an
   * insert still updates one index for the region (a search by kind
   * reads decisions_received or a region's rows and checks the kind).
   * decisions_error holds only failed decisions (partial): successful
   * ones, nearly all, cost it nothing.  docs/console.md measures the
   * searches and docs/performance.md the inserts. */
  {"DROP INDEX decisions_region_kind;\n"
   "CREATE INDEX decisions_region ON decisions(region, received_ms);\n"
   "CREATE INDEX decisions_revision ON decisions(revision, received_ms);\n"
   "CREATE INDEX decisions_error ON decisions(error_code, received_ms)\n"
   "  WHERE error_code IS NOT NULL;\n",
   NULL},
  /* 6 -> 7: idempotency keys (docs/protocol.md, "Idempotency keys"),
   * written with the record they answered in one transaction
   * (history_idem.c), loaded at start-up for VD_HISTORY_IDEM_WINDOW_MS
   * and deleted after it.  Not chained: a key names a record, it is not
   * one. */
  {"CREATE TABLE idempotency (\n"
   "  key         TEXT PRIMARY KEY, -- the client's scope, newline, the key\n"
   "  digest      BLOB NOT NULL,    -- SHA-256 of the request's bytes\n"
   "  decision_id TEXT NOT NULL,    -- the record it answered with\n"
   "  received_ms INTEGER NOT NULL,\n"
   "  code        TEXT,             -- the answer's error code; NULL: none\n"
   "  answer      TEXT NOT NULL     -- the answer line as it was sent\n"
   ");\n"
   "CREATE INDEX idempotency_received ON idempotency (received_ms);\n",
   NULL},
  /* 7 -> 8: decisions_revision indexes a small number instead of the
   * revision's name.  Its entries carried the name (71 bytes) and were
   * the largest of the seven indexes a record updates, a third of their
   * WAL bytes (docs/performance.md, "Bytes per durable record, session
   * 7").  revision_numbers gives each revision a decision names a number
   * of this file's, in the order first met; the writer adds one for each
   * new revision in the batch that first names it (history_writer.c),
   * and readers that search by revision look the number up first
   * (history_query.c).  decisions.revision keeps the name: the chain
   * hashes it, and every reader reads it.  The rows already stored get
   * their numbers here, which rewrites each of them once. */
  {"CREATE TABLE revision_numbers (\n"
   "  n        INTEGER PRIMARY KEY,  -- 1, 2, 3... in the order first met\n"
   "  revision TEXT NOT NULL UNIQUE  -- as decisions.revision names it\n"
   ");\n"
   "ALTER TABLE decisions ADD COLUMN revision_n INTEGER;"
   " -- revision_numbers.n of revision; NULL when revision is\n"
   "INSERT INTO revision_numbers (revision)\n"
   "  SELECT revision FROM decisions WHERE revision IS NOT NULL\n"
   "  GROUP BY revision ORDER BY min(seq);\n"
   "UPDATE decisions SET revision_n =\n"
   "  (SELECT n FROM revision_numbers r WHERE r.revision = decisions.revision)\n"
   "  WHERE revision IS NOT NULL;\n"
   "DROP INDEX decisions_revision;\n"
   "CREATE INDEX decisions_revision ON decisions(revision_n, received_ms);\n",
   NULL},
  /* 8 -> 9: a decision's trace is stored once per distinct trace, in
   * `traces`, keyed by its SHA-256; the row keeps the key (trace_sha)
   * and a NULL trace.  A trace names the rules that fired and their
   * basis, no input value (policies must not copy personal fields into
   * it: docs/history.md), so a few hundred distinct traces answer a
   * whole corpus, and the trace was 38% of a row's bytes.  The chain
   * still hashes the trace's bytes: every reader selects them with
   * VD_HIST_TRACE_SQL (history_int.h), which also reads the rows stored
   * before, whose traces stay where they are: this migration adds a
   * column and a table and reads no decision.  Traces are never deleted
   * (an erasure does not touch them; an archive copies the ones its
   * records name). */
  {"CREATE TABLE traces (\n"
   "  sha256 BLOB PRIMARY KEY, -- SHA-256 of trace, 32 bytes\n"
   "  trace  TEXT NOT NULL     -- a decision's trace (JSON array)\n"
   ") WITHOUT ROWID;\n"
   "ALTER TABLE decisions ADD COLUMN trace_sha BLOB;"
   " -- traces.sha256 of its trace; NULL: none, or the trace is in trace\n",
   NULL},
};

#define NMIGRATIONS (sizeof migrations / sizeof migrations[0])

_Static_assert(NMIGRATIONS == VD_HISTORY_SCHEMA_VERSION,
               "one migration per schema version");
_Static_assert(HISTORY_APP_ID == 1987208308, "the id in migration 1");
_Static_assert(VD_DEFAULT_OFFSET_MIN == 8 * 60, "the offset in the views");

/* ========================================================================
 * Opening
 * ====================================================================== */

int vd_hist_give_err(char **errmsg, vd_buf_t *err, int rc) {
  if (rc && !err->len)
    vd_buf_addf(err, "history: %s", vd_err_desc(rc));
  if (errmsg)
    *errmsg = rc ? vd_buf_detach(err, NULL) : NULL;
  vd_buf_release(err);
  return rc;
}

static void sqlite_setup(void) {
  /* before SQLite initialises, or it answers SQLITE_MISUSE and keeps its
   * statistics: harmless (a test that initialised it first, for a VFS) */
  (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* sqlite3_open_v2(), SQLite set up first; with GATHER through the VFS
 * that gathers WAL writes (history_walbuf.c), looked up after the set-up,
 * since looking it up starts SQLite. */
static int sqlite_open(const char *path, sqlite3 **db, int flags, int gather) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, sqlite_setup);
  return sqlite3_open_v2(path, db, flags,
                         gather ? vd_hist_walbuf_vfs() : NULL);
}

int vd_hist_sqlite_open(const char *path, sqlite3 **db, int flags) {
  return sqlite_open(path, db, flags, 0);
}

int vd_hist_db_err(vd_buf_t *err, const char *path, sqlite3 *db, int rc,
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

int vd_hist_check_path(const char *path, int writable, vd_buf_t *err) {
  struct stat st;
  const char *slash = strrchr(path, '/');
  char *dir;
  int rc = 0;
  if (!*path) {
    vd_buf_adds(err, "history database: empty path");
    return VD_EINVALID;
  }
  /* The fleet's store answers verify, list, show, replay and the daemon
   * (history_pg.c); what reaches here is a file's operation. */
  if (vd_history_is_postgres(path)) {
    vd_buf_adds(err, "this works on a SQLite history file, not on a "
                     "PostgreSQL history (docs/fleet.md says what a fleet's "
                     "history supports)");
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
    return vd_hist_db_err(err, path, db, rc, "reading the schema version");
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

/* Bring DB to VD_HISTORY_SCHEMA_VERSION in one write transaction. */
static int migrate(sqlite3 *db, const char *path, vd_buf_t *err) {
  int64_t version = 0;
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, path, db, rc, "starting the schema migration");
  /* again, under the write lock: another process may have migrated */
  rc = check_identity(db, path, &version, err);
  while (rc == 0 && version < (int64_t)NMIGRATIONS) {
    char sql[64];
    const migration_t *m = &migrations[version];
    int src = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", (int)version + 1);
    if (src == SQLITE_OK && m->then) {
      rc = m->then(db, path, vd_now_ms(), err);
      if (rc)
        break;
    }
    if (src == SQLITE_OK)
      src = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
      char doing[64];
      snprintf(doing, sizeof doing, "migrating the schema to version %d",
               (int)version + 1);
      rc = vd_hist_db_err(err, path, db, src, doing);
    }
    version++;
  }
  if (rc == 0) {
    int src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK)
      rc = vd_hist_db_err(err, path, db, src,
                          "committing the schema migration");
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
    rc = vd_hist_db_err(err, path, db, rc, "switching to WAL mode");
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
   * after start-up); SQLite's per-call mutex was 6% of the writer's time.
   * Synced at every commit (durable), its WAL writes are gathered
   * (history_walbuf.c); never without that sync. */
  rc = sqlite_open(path, &db,
                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                       SQLITE_OPEN_NOMUTEX,
                   strcmp(synchronous, "FULL") == 0);
  if (rc != SQLITE_OK) {
    rc = vd_hist_db_err(err, path, db, rc, "opening");
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
    rc = vd_hist_db_err(err, path, db, rc, "configuring the connection");
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

/* The mode of a database this file creates: its owner writes, its group
 * (auditors) reads, others nothing. */
#define VD_HISTORY_FILE_MODE 0640

/* The database holds customer ids: owner and group only (docs/
 * operations.md, "Files and permissions").  A file this open() has just
 * created (empty) is set to VD_HISTORY_FILE_MODE whatever the umask;
 * SQLite gives the -wal and -shm files it creates the database's mode.
 * A database, -wal or -shm that others can read is refused, with the
 * chmod that mends it. */
static int check_modes(int fd, const char *path, vd_buf_t *err) {
  static const char *const suffixes[] = {"", "-wal", "-shm"};
  struct stat st;
  size_t i;
  int open_to_others = 0;
  if (fstat(fd, &st) != 0)
    goto io_error;
  if (st.st_size == 0 && (st.st_mode & 07777) != VD_HISTORY_FILE_MODE &&
      fchmod(fd, VD_HISTORY_FILE_MODE) != 0)
    goto io_error;
  for (i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s%s", path, suffixes[i]);
    if (stat(name, &st) == 0 && (st.st_mode & S_IRWXO))
      open_to_others |= 1 << i;
  }
  if (!open_to_others)
    return 0;
  vd_buf_reset(err);
  vd_buf_addf(err, "history database '%s': %s can be read by every local "
                   "user, and it holds customer ids; run: chmod o-rwx",
              path, open_to_others & 1 ? "the file" : "its -wal or -shm file");
  for (i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
    if (open_to_others & (1 << i))
      vd_buf_addf(err, " '%s%s'", path, suffixes[i]);
  return VD_EIO;
io_error:
  vd_buf_reset(err);
  vd_buf_addf(err, "history database '%s': %s", path, strerror(errno));
  return VD_EIO;
}

int vd_hist_open_writer(sqlite3 **db, int *lock_fd, const char *path,
                        const char *synchronous, vd_buf_t *err) {
  int rc;
  *db = NULL;
  /* One writer per file, decided before anything touches it: a second
   * daemon (a newer binary during an upgrade, say) must not switch the
   * journal or run migrations under the first.  flock is separate from
   * SQLite's own locks, so readers are not affected. */
  *lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, VD_HISTORY_FILE_MODE);
  if (*lock_fd < 0 || flock(*lock_fd, LOCK_EX | LOCK_NB) != 0) {
    vd_buf_reset(err);
    if (*lock_fd < 0)
      vd_buf_addf(err, "history database '%s': cannot open it: %s", path,
                  strerror(errno));
    else
      vd_buf_addf(err, "history database '%s': another verdictd is writing "
                       "it", path);
    return VD_EIO;
  }
  rc = check_modes(*lock_fd, path, err);
  if (rc)
    return rc;
  return open_rw(db, path, synchronous, err);
}

/* Waiting for the write lock of a history the daemon writes.  Its writer
 * holds the lock for each batch and takes it again a moment after each
 * commit, so SQLite's own handler (sqlite3_busy_timeout), which sleeps
 * 1, 2, 5 ... then 100 ms between tries, rarely tries in that gap: under
 * a steady load `verdict history archive` waited its 5 s and failed.
 * This one tries every BUSY_POLL_US, for VD_HISTORY_BUSY_MS of sleeps. */
#define BUSY_POLL_US 200

static int busy_poll(void *arg, int tries) {
  struct timespec ts = {0, BUSY_POLL_US * 1000L};
  (void)arg;
  if ((int64_t)tries * BUSY_POLL_US >= (int64_t)VD_HISTORY_BUSY_MS * 1000)
    return 0;
  nanosleep(&ts, NULL);
  return 1;
}

void vd_hist_busy_poll(sqlite3 *db) {
  sqlite3_busy_handler(db, busy_poll, NULL);
}

int vd_hist_open_aux(sqlite3 **db, const char *path, vd_buf_t *err) {
  int rc = vd_hist_sqlite_open(path, db, SQLITE_OPEN_READWRITE);
  if (rc == SQLITE_OK) {
    sqlite3_extended_result_codes(*db, 1);
    vd_hist_busy_poll(*db);
    rc = sqlite3_exec(*db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK)
    return vd_hist_db_err(err, path, *db, rc, "opening a second connection");
  return 0;
}

int vd_history_db_open_ro(sqlite3 **out, const char *path, vd_buf_t *err) {
  sqlite3 *db = NULL;
  int64_t version = 0;
  int rc;
  *out = NULL;
  rc = vd_hist_check_path(path, 0, err);
  if (rc)
    return rc;
  /* each reader belongs to one thread (a worker, a replay lane, the CLI) */
  rc = vd_hist_sqlite_open(path, &db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX);
  if (rc != SQLITE_OK) {
    rc = vd_hist_db_err(err, path, db, rc, "opening read-only");
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
 * The whole-file check
 * ====================================================================== */

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
  rc = vd_hist_db_err(err, path, db, rc,
                      "checking the database (quick_check)");
  sqlite3_finalize(st);
  return rc;
}

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
    return vd_hist_give_err(errmsg, &err, VD_ENOMEM);
  }
  rc = vd_history_db_open_ro(&c->db, path, &err);
  if (rc) {
    vd_history_check_close(c);
  } else {
    sqlite3_progress_handler(c->db, 1000, check_progress, c);
    *out = c;
  }
  return vd_hist_give_err(errmsg, &err, rc);
}

int vd_history_check_run(vd_history_check_t *c, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = quick_check(c->db, c->path, &err);
  if (rc && rc != VD_EINVALID)
    rc = VD_EIO; /* could not finish: interrupted, or an I/O error */
  return vd_hist_give_err(errmsg, &err, rc);
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
