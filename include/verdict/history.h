/*
 * history.h - every decision recorded in SQLite, chained by SHA-256.
 *
 * The history database (docs/history.md, "Schema, version 2", describes it;
 * core/history_db.c creates it) holds one row per response the daemon
 * sent, errors included, plus every file of every policy revision ever
 * loaded.  Four kinds of user:
 *
 *   - the daemon's workers hand records to vd_history_submit(); one writer
 *     thread commits everything queued in one transaction (group commit)
 *     and reports completion per worker through a notify callback and
 *     vd_history_drain();
 *   - the main thread stores revisions and activations (synchronous);
 *   - policies read facts through a vd_history_reader_t, one read-only
 *     connection per worker thread;
 *   - auditors open the file read-only (vd_history_verify(), the
 *     `verdict history` commands, the sqlite3 shell).  The database is in
 *     WAL mode, so readers neither block the writer nor see half a batch.
 *
 * Invariants:
 *   - decisions.seq is 1, 2, 3 ... in commit order with no gaps, and
 *     hash(seq) = SHA-256(hash(seq - 1) || canonical bytes of row seq),
 *     hash(0) = 32 zero bytes; chain_head holds the last (seq, hash).
 *   - A submission is reported done exactly once, in a range of that
 *     worker's consecutive sequence numbers; status 0 means the row is
 *     committed (durable in `durable` mode), VD_EIO that it is not stored.
 *   - The chain is continued from chain_head as read inside each batch's
 *     write transaction, so it always matches what is stored, whatever
 *     failed before.
 *
 * Errors: functions return 0 or a negative VD_E* code.  Functions that can
 * fail for a reason a human must read take `char **errmsg`: on failure it
 * receives a malloc'd message (the caller frees it), on success NULL; pass
 * NULL to ignore it.
 */
#ifndef VERDICT_HISTORY_H
#define VERDICT_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "verdict/bundle.h"

/* The schema version this code writes and reads (PRAGMA user_version). */
#define VD_HISTORY_SCHEMA_VERSION 9

/* Submissions queued for the writer before vd_history_submit() waits. */
#define VD_HISTORY_QUEUE_MAX 65536
/* Records the writer commits in one transaction at most: the oldest of
 * the queue, the rest in the next.  Bounds how long a batch holds the
 * write lock, and so how long an activation, a revision or another
 * connection waits behind it (VD_HISTORY_BUSY_MS); far above the batches
 * a full load makes (a few hundred at P16, docs/performance.md). */
#define VD_HISTORY_BATCH_MAX 4096
/* Bytes of queued records before vd_history_submit() waits; a single
 * record larger than this is refused. */
#define VD_HISTORY_QUEUE_BYTES (256u << 20)
/* How long to wait for another connection's write lock, in ms. */
#define VD_HISTORY_BUSY_MS 5000

typedef enum { VD_LOG_DURABLE, VD_LOG_ASYNC, VD_LOG_OFF } vd_log_mode_t;

/* "durable", "async", "off"; "?" for anything else.  Static string. */
const char *vd_history_mode_name(vd_log_mode_t m);
/* Parse one of those names.  Returns 0, or VD_EINVALID for any other. */
int vd_history_mode_parse(const char *s, vd_log_mode_t *m);

/* ------------------------------------------------------------------------
 * Recording
 * ---------------------------------------------------------------------- */

/* One response, as the daemon sent it.  All strings are borrowed from the
 * caller for the duration of vd_history_submit() only; NULL means absent
 * (stored as SQL NULL, which is not the same as an empty string). */
typedef struct vd_record {
  const char *decision_id;          /* UUIDv7 text, 36 chars; required */
  int64_t received_ms;              /* unix ms when the request was read */
  const char *at;                   /* RFC 3339 decision time */
  int64_t at_ms;                    /* the same as unix ms, 0 if unknown */
  const char *kind, *region, *policy_region, *revision;
  const char *complaint_id, *customer_id, *category; /* from the input */
  const char *request;  size_t request_len; /* request line as received */
  const char *result;   size_t result_len;  /* JSON object; NULL: error */
  const char *trace;    size_t trace_len;   /* JSON array; NULL: error */
  const char *facts;    size_t facts_len;   /* JSON facts read, or NULL */
  const char *error_code, *error_message, *error_path; /* NULL: success */
  int64_t elapsed_us;
  const char *client;               /* socket peer: "unix", "1.2.3.4:5" */
  /* The idempotency key the request came with (NULL: none), stored in the
   * same transaction as the record, so that a durable acknowledgement
   * means the key is stored too: the key in its client's scope ("scope",
   * newline, "key"), the SHA-256 of the request's bytes, the answer line
   * as sent and its error code (0: a decision). */
  const char *idem_key;
  const uint8_t *idem_digest;       /* 32 bytes */
  const char *idem_answer; size_t idem_answer_len;
  int idem_code;
} vd_record_t;

/* The database and its writer thread.  Opaque. */
typedef struct vd_history vd_history_t;

/* Completion of a worker's submissions first..last (inclusive). */
typedef struct vd_history_done {
  uint64_t first, last;
  int status; /* 0: committed; VD_EIO: the batch failed, nothing stored */
} vd_history_done_t;

/* Called after a batch commits or fails, once for each worker that had
 * records in it, on the writer thread (in `off` mode: on the submitting
 * thread, from inside vd_history_submit()).  Must be cheap and must not
 * call back into the history; the daemon's does uv_async_send().  It may
 * be called until vd_history_close() returns, so what it reaches must
 * outlive that call. */
typedef void (*vd_history_notify_cb)(unsigned worker, void *arg);

/* Open or create the database at PATH for writing: WAL, synchronous=FULL
 * (durable) or NORMAL (async), migrations to
 * VD_HISTORY_SCHEMA_VERSION, then the writer thread (none in `off` mode,
 * where records are accepted, reported done and not written; revisions
 * and activations are still stored).  nworkers >= 1 is the number of
 * worker indexes submit accepts.  cb may be NULL.
 *
 * Fails with a message naming PATH and the cause for: a missing or
 * read-only directory, a read-only file, a write lock held by another
 * connection for longer than VD_HISTORY_BUSY_MS, a file that is not a
 * database or belongs to another program, and a schema newer than this
 * code.  It does not read the whole file: damage inside is found by
 * vd_history_check_run() (below), `verdict history verify`, or the first
 * write that meets it.  On success *out is the caller's;
 * vd_history_close() frees it. */
int vd_history_open(vd_history_t **out, const char *path, vd_log_mode_t mode,
                    unsigned nworkers, vd_history_notify_cb cb, void *arg,
                    char **errmsg);

/* Whether DB names a PostgreSQL history rather than a SQLite file: a
 * libpq connection string, "postgresql://...", "postgres://..." or the
 * keyword form ("host=... dbname=...": a lowercase word then '=' first).
 * A file whose name looks like that is reached as "./name". */
int vd_history_is_postgres(const char *db);
/* DB as a log line or message may show it, into OUT[N]: a file's path
 * as it is; a connection string as given unless it holds a password
 * (user:password@ in a URL, password= in either form), then libpq's
 * keyword form of it with the password "********". */
void vd_history_db_display(const char *db, char *out, size_t n);

/* The deadline, in ms, of every round trip to a PostgreSQL history this
 * process makes from now on (0, the default: none): a query without its
 * answer by then has its connection dropped and fails ("no answer within
 * MS ms"), and the connection is made again on its next use; connecting
 * waits as long (connect_timeout, in whole seconds), unless the
 * connection string says otherwise.  Set once, before the connections it
 * should bound are made (verdictd's --db-timeout).  No effect on a SQLite
 * file. */
void vd_history_set_db_timeout(int ms);
#define VD_HISTORY_DB_TIMEOUT_MS 5000 /* verdictd's --db-timeout default */
int vd_history_db_timeout(void);

/* 1 if DB is a PostgreSQL connection string that holds a password
 * (user:password@ in a URL, password= in either form): it shows in ps
 * when given on a command line, where PGPASSWORD, ~/.pgpass or a service
 * file would not. */
int vd_history_db_has_password(const char *db);

/* 1 if NODE is a usable --node-id: 1 to 63 of [A-Za-z0-9._-]. */
int vd_history_node_id_ok(const char *node);

/* vd_history_open() for either store: a SQLite file (NODE must be NULL)
 * or a PostgreSQL history shared by a fleet (docs/fleet.md), where NODE
 * names this daemon's own chain and is required; a second writer with the
 * same NODE on that database is refused.  Everything else is as
 * vd_history_open() says, durable meaning the batch's COMMIT returned. */
int vd_history_open_node(vd_history_t **out, const char *db,
                         const char *node, vd_log_mode_t mode,
                         unsigned nworkers, vd_history_notify_cb cb,
                         void *arg, char **errmsg);

/* What the writer has to say to an operator: a line (no newline) when
 * writing starts failing, naming the cause (EVENT "history_write_failed",
 * FAILING 1), and one when it works again ("history_write_recovered", 0);
 * never one per batch.  Called on the writer thread; must not call back
 * into the history.  The library prints nothing itself: without a log
 * function these lines are dropped (the failed requests still fail). */
typedef void (*vd_history_log_cb)(const char *event, int failing,
                                  const char *line, void *arg);

/* Whether the history takes records now, for a readiness check: 0, or
 * VD_EIO when the writer's last batch failed, or (PostgreSQL) its idle
 * check of the database did, with WHY[N] saying why (no password).
 * Idle, a backend that can be checked (PostgreSQL) is every
 * VD_HISTORY_PROBE_MS, on the writer thread's own connection, so an
 * unreachable database shows here without traffic and its return does
 * too; otherwise the next batch that commits clears it.  Any thread. */
#define VD_HISTORY_PROBE_MS 1000
int vd_history_health(vd_history_t *h, char *why, size_t n);

/* Set (or, with NULL, clear) the log function.  Any thread, any time
 * while the history is open; it takes effect for the next line. */
void vd_history_set_log(vd_history_t *h, vd_history_log_cb cb, void *arg);

/* Measure the writer in M (metrics.h): each batch's commit time and
 * record count, and the queue's depth as records are queued and taken.
 * Once, from any thread, after vd_history_open(); M must outlive H.
 * 0, or VD_ENOMEM (nothing is measured then). */
struct vd_metrics;
int vd_history_set_metrics(vd_history_t *h, struct vd_metrics *m);

/* A structural check of the whole file, SQLite's PRAGMA quick_check, on a
 * read-only connection of its own.  It reads every page (11 s for 180 MB
 * read cold on the development machine), so verdictd runs it on a thread
 * after start-up, while it serves, rather than before.
 *   open: fails as the read-only opening does (not a database...);
 *   run: 0 sound, VD_EINVALID damaged (*errmsg says where), VD_EIO when it
 *        could not finish (interrupted, I/O error); blocks;
 *   interrupt: makes a run in progress return soon; any thread;
 *   close: after run has returned.
 * *errmsg, when set, is the caller's (free()). */
typedef struct vd_history_check vd_history_check_t;
int vd_history_check_open(vd_history_check_t **out, const char *path,
                          char **errmsg);
int vd_history_check_run(vd_history_check_t *c, char **errmsg);
void vd_history_check_interrupt(vd_history_check_t *c);
void vd_history_check_close(vd_history_check_t *c);

/* Queue a copy of REC (one allocation) for the writer and set *seq to this
 * worker's next sequence number (1, 2, 3 ...).  Thread-safe; never waits
 * for disk, only for room when the queue is full.  Returns VD_EINVALID for
 * a worker >= nworkers or a record without decision_id, VD_ETOO_LARGE for a
 * record over VD_HISTORY_QUEUE_BYTES, VD_ENOMEM if the copy cannot be
 * allocated, VD_EIO if the system has no random bytes for the record's
 * salt; nothing is queued then and no sequence number is used.  Must
 * not be called once vd_history_close() has begun. */
int vd_history_submit(vd_history_t *h, unsigned worker, const vd_record_t *rec,
                      uint64_t *seq);

/* On WORKER's thread: move up to MAX completed ranges, oldest first, into
 * OUT and return how many.  Ranges of one status that follow each other
 * are merged.  If it returns MAX, call again: the notify callback is not
 * repeated for what is already waiting. */
size_t vd_history_drain(vd_history_t *h, unsigned worker,
                        vd_history_done_t *out, size_t max);

/* How long a stored idempotency key is kept: the writer deletes older
 * ones, a few thousand at a time, at most once every
 * VD_HISTORY_IDEM_SWEEP_MS, between batches. */
#define VD_HISTORY_IDEM_WINDOW_MS (24 * 3600 * 1000LL)
#define VD_HISTORY_IDEM_SWEEP_MS (60 * 1000)

/* One stored idempotency key, as vd_history_submit() took it; its strings
 * are valid during the callback only. */
typedef struct vd_history_idem {
  const char *key;                  /* scope, newline, key */
  const uint8_t *digest;            /* 32 bytes */
  const char *decision_id;
  const char *answer;
  size_t answer_len;
  int code;
  int64_t received_ms;
} vd_history_idem_t;

/* Call CB for every idempotency key this writer stored with received_ms
 * >= SINCE_MS, oldest first (in a PostgreSQL history: this node's keys).
 * At start-up, on the main thread, before requests are served.  0, or a
 * negative code with *errmsg set (keys read before the failure were
 * passed to CB). */
int vd_history_idem_load(vd_history_t *h, int64_t since_ms,
                         void (*cb)(const vd_history_idem_t *k, void *arg),
                         void *arg, char **errmsg);

/* Commit what is queued, stop the writer thread, close the database and
 * free H.  Completions not drained are dropped.  NULL is allowed. */
void vd_history_close(vd_history_t *h);

/* ------------------------------------------------------------------------
 * Revisions: every file of every bundle, content-addressed
 * ---------------------------------------------------------------------- */

/* Store revision REVISION ("sha256:...", as vd_bundle_revision() names
 * it) made of FILES.  Each file's bytes go into `blobs` keyed by their
 * SHA-256, once, however many revisions share them.  Idempotent: storing
 * the same revision again changes nothing; storing it with different
 * files is VD_EINVALID.  Synchronous, on the caller's thread, through a
 * connection of its own (serialised by a mutex). */
int vd_history_store_revision(vd_history_t *h, const char *revision,
                              const vd_bundle_file_t *files, size_t nfiles,
                              char **errmsg);

/* Append to `activations`: REVISION became (ok = 1) or failed to become
 * (ok = 0, ERROR says why) the running policy.  TRIGGER says what asked
 * ("startup", "reload", "admin"), WHO who did (may be NULL), SOURCE_DIR
 * where the files came from (may be NULL).  Time is now. */
int vd_history_record_activation(vd_history_t *h, const char *revision,
                                 const char *trigger, const char *who,
                                 const char *source_dir, int ok,
                                 const char *error, char **errmsg);

/* Read revision REVISION back from the database at DB_PATH (read-only),
 * every file in path order, each blob checked against its hash.  On
 * success *files is an array of *nfiles files whose path and data are
 * NUL-terminated and owned by the caller: free with
 * vd_history_free_files().  The array feeds vd_bundle_from_files()
 * directly.  VD_ENOT_FOUND if the revision is not stored, VD_EINVALID if a
 * blob does not match its hash. */
int vd_history_load_revision(const char *db_path, const char *revision,
                             vd_bundle_file_t **files, size_t *nfiles,
                             char **errmsg);

/* Revision REVISION (any name vd_history_resolve() takes, below) rebuilt
 * as a bundle (*out, one reference), its files
 * loaded as above and checked to hash to REVISION itself: stored files
 * that no longer make the revision they are filed under are refused with
 * VD_EINVALID.  err says why on failure. */
int vd_history_load_bundle(const char *db_path, const char *revision,
                           vd_bundle_t **out, vd_buf_t *err);
void vd_history_free_files(vd_bundle_file_t *files, size_t n);

/* ------------------------------------------------------------------------
 * Facts from history, for policies
 * ---------------------------------------------------------------------- */

/* A read-only connection with its statements prepared.  One per thread. */
typedef struct vd_history_reader vd_history_reader_t;

/* Open the existing database at PATH read-only.  *out is the caller's;
 * free it with vd_history_reader_close() (NULL allowed). */
int vd_history_reader_open(vd_history_reader_t **out, const char *path,
                           char **errmsg);
void vd_history_reader_close(vd_history_reader_t *r);
/* Why the reader's last call failed ("" if it did not).  Owned by R,
 * valid until its next call. */
const char *vd_history_reader_errmsg(const vd_history_reader_t *r);

/* Successful decisions (error_code IS NULL) for CUSTOMER_ID of KIND (NULL:
 * any kind) with since_ms <= at_ms < until_ms.  Each call reads one
 * consistent snapshot.  Returns 0 with *count set, or VD_EIO. */
int vd_history_count_customer(vd_history_reader_t *r, const char *customer_id,
                              const char *kind, int64_t since_ms,
                              int64_t until_ms, int64_t *count);

/* Distinct customer_id values among successful decisions in REGION with
 * CATEGORY and since_ms <= at_ms < until_ms. */
int vd_history_distinct_customers(vd_history_reader_t *r, const char *region,
                                  const char *category, int64_t since_ms,
                                  int64_t until_ms, int64_t *count);

/* What vd_history_count_complaints() counts.  A customer's complaints are
 * the complaint_id values of the successful decisions that name the
 * customer (customer_id = CUSTOMER_ID) with at_ms < until_ms: only
 * escalation requests carry customer_id, so this is how a compensation or
 * an appeal, whose requests name the complaint only, is tied to its
 * customer.  Each complaint counts once, in the window where its first
 * qualifying successful decision (at_ms < until_ms) falls. */
typedef enum {
  /* the customer's complaints other than COMPLAINT_ID whose first decision
   * of any kind falls in the window: complaints lodged again */
  VD_COMPLAINTS_REPEAT,
  /* the customer's complaints, COMPLAINT_ID included, whose first appeal
   * decision falls in the window; an appeal whose input says the
   * appellant is not the customer (appellant_is_party false) does not
   * count */
  VD_COMPLAINTS_OVER_HEAD,
  /* the customer's complaints, COMPLAINT_ID included, whose first
   * compensation decision with result.offer_fen > 0 falls in the window */
  VD_COMPLAINTS_REFUNDED
} vd_complaints_t;

/* Count the complaints WHICH names for CUSTOMER_ID, with since_ms <= (the
 * first qualifying decision's at_ms) < until_ms.  COMPLAINT_ID is the
 * complaint being decided.  Each call reads one consistent snapshot; the
 * cost grows with the number of complaints the customer has had (an
 * index seek each).  Returns 0 with *count set, VD_EINVALID for an
 * unknown WHICH, or VD_EIO. */
int vd_history_count_complaints(vd_history_reader_t *r, vd_complaints_t which,
                                const char *customer_id,
                                const char *complaint_id, int64_t since_ms,
                                int64_t until_ms, int64_t *count);
/* The SQL vd_history_count_complaints() runs for WHICH, parameters ?1
 * customer, ?2 complaint, ?3 since_ms, ?4 until_ms: for EXPLAIN QUERY PLAN
 * and for an auditor who recounts in the sqlite3 shell.  Static string;
 * NULL for an unknown WHICH. */
const char *vd_history_complaints_sql(vd_complaints_t which);

/* The questions policies ask through ctx.history, the one table the
 * engine's Lua functions (core/engine.c) and vd_history_answer() are made
 * from: X(NAME, name, unit_ms, max_span).  A policy calls
 * ctx.history.name(a, b, span) with two strings and a whole number of
 * units, 1 <= span <= max_span; the window is the span before the
 * decision time, since_ms = at_ms - span * unit_ms, until_ms = at_ms.
 *   customer_decisions(customer_id, kind, days): the customer's
 *       decisions of that kind (vd_history_count_customer());
 *   similar_customers(region, category, hours): distinct customers with a
 *       complaint of that category in the region
 *       (vd_history_distinct_customers());
 *   repeat_complaints, over_head_complaints, refunded_complaints
 *       (customer_id, complaint_id, days): vd_history_count_complaints()
 *       with VD_COMPLAINTS_REPEAT, _OVER_HEAD, _REFUNDED. */
#define VD_HISTORY_FACTS(X)                                                  \
  X(CUSTOMER_DECISIONS, customer_decisions, 86400000, 3660)                  \
  X(SIMILAR_CUSTOMERS, similar_customers, 3600000, 24 * 366)                 \
  X(REPEAT_COMPLAINTS, repeat_complaints, 86400000, 3660)                    \
  X(OVER_HEAD_COMPLAINTS, over_head_complaints, 86400000, 3660)              \
  X(REFUNDED_COMPLAINTS, refunded_complaints, 86400000, 3660)

typedef enum {
#define VD_HISTORY_FACT_(E, name, unit_ms, max_span) VD_FACT_##E,
  VD_HISTORY_FACTS(VD_HISTORY_FACT_)
#undef VD_HISTORY_FACT_
  VD_NFACTS
} vd_history_fact_t;

/* The question named NAME (its name in VD_HISTORY_FACTS), or -1. */
int vd_history_fact_find(const char *name);

/* Answer the question named QUERY (VD_HISTORY_FACTS) with its two string
 * arguments over since_ms <= at_ms < until_ms: the one dispatch the
 * daemon's workers and replay share.  Returns 0, or VD_EINVALID for an
 * unknown question, or the reader's error. */
int vd_history_answer(vd_history_reader_t *r, const char *query,
                      const char *a, const char *b, int64_t since_ms,
                      int64_t until_ms, int64_t *count);

/* ------------------------------------------------------------------------
 * Reading decisions back (core/history_query.c)
 *
 * For the auditor commands, replay and the admin channel: each opens the
 * database at DB_PATH read-only, as every reader does, so they can run
 * while the daemon writes (WAL: they see committed batches only).  On
 * failure ERR (reset first) holds a message: the opening's, which names
 * the file and the cause, or "DB_PATH: <SQLite's message>".
 * ---------------------------------------------------------------------- */

/* The columns of `decisions` after seq and before hash, in the order the
 * canonical bytes take them (docs/history.md, "Canonical bytes"): X(NAME, name). */
#define VD_HISTORY_COLUMNS(X)                                                \
  X(DECISION_ID, decision_id)                                                \
  X(RECEIVED_MS, received_ms)                                                \
  X(AT, at)                                                                  \
  X(AT_MS, at_ms)                                                            \
  X(KIND, kind)                                                              \
  X(REGION, region)                                                          \
  X(POLICY_REGION, policy_region)                                            \
  X(REVISION, revision)                                                      \
  X(COMPLAINT_ID, complaint_id)                                              \
  X(CUSTOMER_ID, customer_id)                                                \
  X(CATEGORY, category)                                                      \
  X(REQUEST, request)                                                        \
  X(RESULT, result)                                                          \
  X(TRACE, trace)                                                            \
  X(FACTS, facts)                                                            \
  X(ERROR_CODE, error_code)                                                  \
  X(ERROR_MESSAGE, error_message)                                            \
  X(ERROR_PATH, error_path)                                                  \
  X(ELAPSED_US, elapsed_us)                                                  \
  X(CLIENT, client)

/* Indexes into a row: seq, the columns above, hash. */
enum {
  VD_HISTORY_SEQ,
#define VD_HISTORY_COL_(E, name) VD_HISTORY_##E,
  VD_HISTORY_COLUMNS(VD_HISTORY_COL_)
#undef VD_HISTORY_COL_
  VD_HISTORY_HASH,
  VD_HISTORY_NCOLUMNS
};

/* "seq", "decision_id", ... "hash"; NULL out of range.  Static string. */
const char *vd_history_column_name(int col);

/* One column of a stored row.  text is NULL for SQL NULL, else the value
 * as text (integers too, in decimal), NUL-terminated, len bytes; i is the
 * value as an integer (SQLite's conversion when it is not one); is_int
 * says the value is stored as an integer. */
typedef struct vd_history_value {
  const char *text;
  size_t len;
  int64_t i;
  int is_int;
} vd_history_value_t;

/* Which decisions to read; zero-initialised it selects every row. */
typedef struct vd_history_filter {
  int has_since, has_until;  /* since_ms <= received_ms < until_ms */
  int64_t since_ms, until_ms;
  int has_at_since, has_at_until; /* at_since_ms <= at_ms < at_until_ms:
                                   * the decision time */
  int64_t at_since_ms, at_until_ms;
  const char *revision;      /* the revision that decided; NULL: any */
  const char *error_code;    /* NULL: any; "" (or "none"): successful
                              * decisions only; else that error code */
  int has_seq;               /* seq_lo <= seq < seq_hi */
  int64_t seq_lo, seq_hi;
  const char *region, *kind; /* NULL: any */
  const char *complaint_id, *decision_id;
  const char *customer_id;   /* NULL: any */
  int newest_first;          /* rows newest first: descending
                              * received_ms, then seq (the console's
                              * pages); vd_history_rows_open() only */
  int has_before;            /* newest_first's next page: only rows
                              * older than (before_ms, before_seq) in
                              * that order */
  int64_t before_ms, before_seq;
  int has_limit;             /* at most `limit` rows */
  int64_t limit;
  uint64_t columns;          /* vd_history_rows_open() only: the columns
                              * the reader needs, bit (1 << VD_HISTORY_X)
                              * each; 0: all.  The others may be read as
                              * SQL NULL (a SQLite file skips them: a
                              * replay reads 13 of 23), a value not
                              * stored as an integer has i 0, and one
                              * stored as an integer may have no text
                              * (NULL, len 0: read i; SQLite would print
                              * it, 1% of a replayed row) */
} vd_history_filter_t;

/* A read of the rows FILTER selects, in seq order (newest first with
 * newest_first).  Open it, take rows
 * with next until it returns 0, close it.  One thread at a time. */
typedef struct vd_history_rows vd_history_rows_t;
/* Open DB_PATH and start reading.  *out is the caller's on success (free
 * with vd_history_rows_close()); FILTER's strings are borrowed until
 * then. */
int vd_history_rows_open(vd_history_rows_t **out, const char *db_path,
                         const vd_history_filter_t *filter, vd_buf_t *err);
/* 1 and *row set to VD_HISTORY_NCOLUMNS values, owned by R and valid until
 * the next call; 0 at the end (and on every call after it); VD_EIO when
 * reading failed, vd_history_rows_errmsg() says why. */
int vd_history_rows_next(vd_history_rows_t *r, const vd_history_value_t **row);
/* Read the columns of COLUMNS (bit (1 << VD_HISTORY_X) each) that R's
 * filter did not name into the row in hand, by its seq (which the filter
 * must name; not the trace, which is read with the row only): for a
 * reader that needs some columns of only a few rows
 * (replay: who a changed decision was, of every row only what deciding it
 * again needs).  They are valid as the row's others are, until the next
 * call on R.  0 (also when R reads every column: PostgreSQL, or a filter
 * naming none), or an error code with vd_history_rows_errmsg() set. */
int vd_history_rows_more(vd_history_rows_t *r, uint64_t columns);
/* Open a read of the rows SELECTION selects in one of the ranges
 * vd_history_split() made of it, LO <= key < HI; as
 * vd_history_rows_open() otherwise (SELECTION's strings borrowed until
 * the close). */
int vd_history_rows_open_range(vd_history_rows_t **out, const char *db_path,
                               const vd_history_filter_t *selection,
                               int64_t lo, int64_t hi, vd_buf_t *err);
/* Move R, opened by vd_history_rows_open_range(), to another range of
 * its selection, LO <= key < HI: its next row is that range's first.  In
 * a SQLite file the statement is only reset and bound again (a reader
 * going through many ranges keeps its connection and its caches); on
 * PostgreSQL the range is a new query.  0, or an error code with
 * vd_history_rows_errmsg() set (VD_EINVALID: R was opened without a
 * range); after an error R reads nothing more. */
int vd_history_rows_range(vd_history_rows_t *r, int64_t lo, int64_t hi);
/* The node whose chain the row in hand is on, its seq being the node's
 * node_seq: a PostgreSQL history (docs/fleet.md).  NULL for a SQLite
 * file (one chain) or with no row in hand.  Owned by R, valid as the
 * row is. */
const char *vd_history_rows_node(const vd_history_rows_t *r);
/* Why next failed: "DB_PATH: <SQLite's message>".  Owned by R. */
const char *vd_history_rows_errmsg(const vd_history_rows_t *r);
void vd_history_rows_close(vd_history_rows_t *r);

/* One decision looked up by its id, again and again, on one kept
 * read-only connection (GET /v1/decisions/{id}: a worker keeps one).
 * SQLite: the file opened as every reader opens it, one prepared
 * statement, the row copied out so no read transaction stays open;
 * PostgreSQL: one connection.  A lookup that fails on a connection that
 * served before is tried once more on a new one (a restarted server, a
 * dropped connection), so a caller sees an error only when the store
 * itself fails.  One thread at a time.
 *   open: connect (fails as vd_history_rows_open() does); *out the
 *     caller's, free with vd_history_finder_close() (NULL allowed);
 *   find: 1 and *row (VD_HISTORY_NCOLUMNS values, owned by F, valid
 *     until its next call), 0 when there is no such decision, or a
 *     negative code with ERR set. */
typedef struct vd_history_finder vd_history_finder_t;
int vd_history_finder_open(vd_history_finder_t **out, const char *db_path,
                           vd_buf_t *err);
int vd_history_find(vd_history_finder_t *f, const char *decision_id,
                    const vd_history_value_t **row, vd_buf_t *err);
void vd_history_finder_close(vd_history_finder_t *f);

/* Cut the rows FILTER selects into N contiguous ranges of the history's
 * own order: bounds[0..n] (n + 1 values, the caller's array), range i is
 * bounds[i] <= key < bounds[i + 1].  bounds[n] is INT64_MAX, except in a
 * SQLite file cut by seq, where it is one past the highest seq selected
 * (rows written after the cut are not in any range).  Range i's
 * rows all come before range i + 1's in vd_history_rows_open()'s order;
 * with fewer rows than ranges some ranges are empty.
 *   In a SQLite file the key is seq.  A filter by time alone (or none) is
 * cut into equal spans of seq from the lowest it selects to the highest
 * (a seek at each end, or one pass over the time index: no row is read;
 * by the decision time, which no index leads, the span of the received
 * window or of the whole table, whose rows the ranges' readers check);
 * any other into ranges of about as many rows each (one pass over the
 * filter's seqs in order).  On PostgreSQL, where a seq is its node's, the
 * key is received_ms and the ranges hold about as many rows each (the
 * rows of one millisecond are never cut apart).
 *   *total (when TOTAL is not NULL): how many rows FILTER selects; a SQLite
 * file counts them only when asked or when it cuts by rows.
 * vd_history_rows_open_range() reads one range. */
int vd_history_split(const char *db_path, const vd_history_filter_t *filter,
                     int n, int64_t *bounds, int64_t *total, vd_buf_t *err);
/* vd_history_split() in two steps, where it makes a pass over the time
 * index (a received window in a SQLite file, selected by time alone: on
 * a busy history, about an engine's build for a few seconds' rows), so
 * that readers can start on most of the rows before the pass ends:
 *   middle: at once (a seek at each end of the window in the time index),
 *     bounds[1] to bounds[n - 1]: ranges 1 to n - 2, equal spans of seq
 *     from the window's first row in received order to its last.  1; or
 *     0, writing nothing, where vd_history_split() makes no such pass or
 *     N < 3; or an error code with ERR set;
 *   ends: then the pass: bounds[0] and bounds[n], range 0 the window's
 *     rows below range 1 and range n - 1 those above range n - 2 (rows
 *     recorded in another order than they were received in: few or
 *     none; ranges that may be empty), and *total as
 *     vd_history_split() counts it.  0, or an error code with ERR set.
 * Together the n ranges hold every row vd_history_split() would cut,
 * each once, range i's before range i + 1's. */
int vd_history_split_middle(const char *db_path,
                            const vd_history_filter_t *filter, int n,
                            int64_t *bounds, vd_buf_t *err);
int vd_history_split_ends(const char *db_path,
                          const vd_history_filter_t *filter, int n,
                          int64_t *bounds, int64_t *total, vd_buf_t *err);
/* How many ranges LANES readers that take ranges as they come should ask
 * vd_history_split() for: 128 a lane for a SQLite selection by time alone
 * (a slowed lane then holds the others up by at most one small range);
 * 4 a lane on PostgreSQL, where a range is a query on a connection of its
 * own; one a lane for a SQLite selection by equality, whose cursors walk
 * the column's index once per range. */
int vd_history_split_count(const char *db_path,
                           const vd_history_filter_t *filter, int lanes);

/* Decisions received in N buckets of BUCKET_MS from SINCE_MS: bucket i
 * counts since_ms + i * bucket_ms <= received_ms < that + bucket_ms,
 * total[i] of them, errors[i] refused (error_code set); both arrays are
 * the caller's, N long.  One range of the received_ms index: the cost
 * grows with the rows in the window.  The console's Health chart. */
int vd_history_rate(const char *db_path, int64_t since_ms, int64_t bucket_ms,
                    int n, int64_t *total, int64_t *errors, vd_buf_t *err);

/* One row of a SQLite history's activations, every string owned by the
 * reader and valid during the callback only (NULL: absent). */
typedef struct vd_history_activation {
  int64_t id;              /* 1, 2, 3 ... on the file's chain */
  int64_t at_ms;           /* when, unix ms */
  const char *at;          /* the same as stored text (+08:00) */
  const char *revision, *trigger, *who, *source_dir, *error;
  int ok;
} vd_history_activation_t;

/* Call CB with every activation of the SQLite history DB_PATH, oldest
 * first, until it returns non-zero (which is returned).  0, or an error
 * with ERR set. */
int vd_history_each_activation(const char *db_path,
                               int (*cb)(const vd_history_activation_t *a,
                                         void *arg),
                               void *arg, vd_buf_t *err);

/* Append to OUT what the database holds about revisions, as three members
 * of a JSON object: "activations":[...] (the last 200, newest first: at,
 * revision, trigger, who, source, ok, error), "revisions":[...]
 * (newest first: revision, stored_at, files, bytes), and a third,
 * "tags":[...] (oldest first: name, revision, who, at).  The admin channel's
 * `revisions` answer.  On failure OUT holds part of it. */
int vd_history_revisions_json(const char *db_path, vd_buf_t *out,
                              vd_buf_t *err);

/* ------------------------------------------------------------------------
 * Naming revisions (core/history_revs.c)
 *
 * Wherever a revision is taken (activate, diff, eval --revision, export,
 * tag), it may be named by:
 *   - its name "sha256:<64 hex>", or any unique prefix of it of at least
 *     4 hex digits, with or without "sha256:";
 *   - "active": the revision of the last successful activation;
 *   - "previous", "@-N": the revision live before it, N changes ago
 *     (successful activations newest first, consecutive ones of the same
 *     revision counted once; "@-0" is active, "@-1" previous);
 *   - a tag given with vd_history_tag().
 * ---------------------------------------------------------------------- */

/* "sha256:" + 64 hex digits + NUL. */
#define VD_REVISION_NAME_MAX 72

/* Resolve NAME in the database at DB_PATH (read-only) to the full name of
 * a stored revision, into OUT.  VD_ENOT_FOUND (nothing of that name),
 * VD_EINVALID (a prefix that several revisions share: *errmsg lists
 * them; a prefix too short), or the opening's error. */
int vd_history_resolve(const char *db_path, const char *name,
                       char out[VD_REVISION_NAME_MAX], char **errmsg);

/* 0 if TAG may name a revision: 1 to 64 letters, digits, '.', '-', '_',
 * starting with a letter, and not readable as another kind of name (hex
 * only, active, previous, sha256...).  Else VD_EINVALID and WHY says why. */
int vd_history_tag_name_ok(const char *tag, vd_buf_t *why);

/* Give the revision NAME (any of the forms above) the tag TAG, recorded
 * with WHO (may be NULL) and the time, in the database at DB_PATH, which
 * must exist at this schema; OUT receives the revision's full name.  A
 * tag names one revision for good: VD_EINVALID when TAG is taken.  Writes
 * through a connection of its own (WAL: alongside a running daemon). */
int vd_history_tag(const char *db_path, const char *name, const char *tag,
                   const char *who, char out[VD_REVISION_NAME_MAX],
                   char **errmsg);

/* Is a rollback in force: was the last successful activation in the
 * database at DB_PATH one of a stored revision (`verdict activate`, or a
 * start-up that kept one), rather than of the policy directory?  1 with
 * its name in OUT; 0 when not; a negative code when the database cannot
 * be read (verdictd starts with that revision again: daemon.c). */
int vd_history_rollback_in_force(const char *db_path,
                                 char out[VD_REVISION_NAME_MAX],
                                 char **errmsg);

/* ------------------------------------------------------------------------
 * Verification
 * ---------------------------------------------------------------------- */

typedef enum {
  VD_VERIFY_OK = 0,
  VD_VERIFY_CHANGED,  /* a row's contents no longer match its hash */
  VD_VERIFY_DELETED,  /* rows missing: a gap in seq, or the tail is gone */
  VD_VERIFY_INSERTED, /* a row outside the chain recorded in chain_head */
  VD_VERIFY_REVISION  /* a stored revision or blob was altered or removed */
} vd_verify_problem_t;

typedef struct vd_verify_report {
  vd_verify_problem_t problem;
  int64_t records;       /* rows whose hash verified before the problem */
  char head[65];         /* hex hash of the last of those ("" if none) */
  int64_t seq;           /* where the problem is: the bad row's seq, or the
                          * first missing seq for a deletion; 0 if none */
  char decision_id[64];  /* the row at `seq` (for a deletion: the row after
                          * the gap), "" when there is none */
  int64_t revisions;     /* revisions rebuilt and found intact */
  int64_t activations;   /* activations whose hash verified (their own
                          * chain, after the decisions') */
  char act_head[65];     /* hex hash of the last of those ("" if none) */
  int64_t act_last;      /* and its id (0 if none) */
  int64_t activation;    /* the activation (id) the problem is in, or the
                          * first missing one; 0 when the problem is not
                          * in the activations */
  int64_t sealed;        /* activations 1..sealed were stored before
                          * schema 3 and chained by its migration, at
                          * sealed_ms; 0: every one chained as written */
  int64_t sealed_ms;
  int64_t v2_from;       /* records from this seq on have the schema 5
                          * form (a salted digest of their personal part) */
  int64_t v2_ms;         /* when the migration to schema 5 ran */
  int64_t erased;        /* records verified through a kept digest: their
                          * personal data was erased */
  int64_t archived_to;   /* records 1..archived_to were archived out of
                          * this database; the chain starts after them */
  int64_t archived_ms;   /* when the last archiving ran */
  int64_t archive_first; /* in an archive file: its first record */
  char message[512];     /* one line for a human: the problem, or why
                          * verification could not run */
} vd_verify_report_t;

/* What an earlier verify printed, kept outside the database: the head of
 * each chain.  Text "SEQ:HASH" (decisions only, as verify printed before
 * activations were chained) or "SEQ:HASH/ID:HASH" (decisions, then
 * activations; SEQ may be 0 with the zero hash when there were no
 * decisions yet).  0 in seq or activation: that chain is not checked. */
typedef struct vd_history_anchor {
  int64_t seq;
  char hash[65];
  int64_t activation;
  char act_hash[65];
} vd_history_anchor_t;

/* Parse TEXT into *A.  0, or VD_EINVALID when it is not one of the two
 * forms above (64 lowercase hex digits per hash). */
int vd_history_anchor_parse(const char *text, vd_history_anchor_t *a);

/* Walk the whole chain of the database at PATH in one read snapshot
 * (read-only; never blocks the writer), recomputing every hash, then the
 * activations' chain the same way (rep->activation names the row at
 * fault there), then check every stored revision: each blob against its hash, each
 * revision's files against its name, each decision's revision present.
 * Returns 0 when everything holds (rep->records, rep->head are the chain
 * verified).  Otherwise a negative code, and either rep->problem names the
 * first alteration found (the code is then VD_EINVALID), or rep->problem
 * is VD_VERIFY_OK and rep->message says why the file could not be checked
 * (missing, not a verdict database, unreadable).  REP is the caller's. */
int vd_history_verify(const char *path, vd_verify_report_t *rep);
/* The same, and record ANCHOR_SEQ (>= 1; 0: none) must still exist with
 * hash ANCHOR_HASH (64 hex digits, as an earlier verify printed the head).
 * A rewrite of the chain's tail together with chain_head verifies on its
 * own, since the file cannot vouch for itself; an anchor kept outside it
 * shows it: DELETED when the record is gone, CHANGED when it hashes to
 * something else.  Checked inside the same snapshot. */
int vd_history_verify_anchored(const char *path, int64_t anchor_seq,
                               const char *anchor_hash,
                               vd_verify_report_t *rep);
/* The same with both heads of ANCHOR (NULL: none): the activation it
 * names must still exist with that hash, as the record must. */
int vd_history_verify_anchor(const char *path,
                             const vd_history_anchor_t *anchor,
                             vd_verify_report_t *rep);

/* ------------------------------------------------------------------------
 * Backup (core/history_backup.c)
 * ---------------------------------------------------------------------- */

typedef struct vd_history_backup_report {
  int64_t pages;              /* pages copied */
  int64_t steps;              /* sqlite3_backup_step() calls it took */
  vd_verify_report_t verify;  /* the copy's verification: on success its
                               * records, heads and message, as
                               * vd_history_verify() gives them */
} vd_history_backup_report_t;

/* Copy the history database at SRC_PATH to DEST while a daemon may be
 * writing it: SQLite's online backup, stepped in chunks from one read
 * snapshot (so the copy is the database as of one commit and the writer
 * is never blocked), into a temporary file beside DEST that is then
 * switched to a rollback journal (one self-contained file), synced and
 * verified as vd_history_verify() does.  Only a copy that verifies takes
 * DEST, created 0640.  An existing DEST is refused (VD_EINVALID) unless
 * FORCE; DEST the database itself is always refused.  Returns 0; or
 * VD_EINVALID with rep->verify.problem set when the copy, hence the
 * database, does not verify (DEST is then untouched); or another code.
 * *errmsg as for the other calls; REP is the caller's. */
int vd_history_backup(const char *src_path, const char *dest, int force,
                      vd_history_backup_report_t *rep, char **errmsg);

/* ------------------------------------------------------------------------
 * Erasure (core/history_erase.c)
 * ---------------------------------------------------------------------- */

typedef struct vd_history_erase_report {
  int64_t erased;    /* records whose personal data was erased */
  int64_t old_form;  /* the customer's records stored before schema 5:
                      * their hashes commit to the raw bytes, so they are
                      * left as they are */
  int64_t first_seq, last_seq; /* the erased records' range (0: none; a
                                * fleet's are in nodes) */
  int64_t erasure;   /* the id of the `erasures` row (0: nothing erased) */
  char nodes[256];   /* a PostgreSQL history: "NODE:FIRST..LAST, ..." of
                      * the erased records by node (cut short past 255
                      * bytes; `erasures` keeps it whole); else "" */
} vd_history_erase_report_t;

/* Erase the personal data of every record of CUSTOMER_ID (customer_id =
 * CUSTOMER_ID) in the database at DB_PATH, in one write transaction
 * (safe while the daemon writes: it waits for the batch in hand, and
 * the batch for it): customer_id becomes NULL, the request's input loses
 * customer_id and the FIELDS (the policies' personal fields), facts
 * lose every personal value (null in their place), and the record keeps
 * the digest its hash committed to (docs/history.md, "Schema 5: the
 * personal part"), so the chain still verifies.  WHO (may be NULL), the
 * time, the count, the seq range and the field names are recorded in
 * `erasures`; the customer id is not.  DB_PATH may be a PostgreSQL
 * history (every node's records, in one transaction: docs/fleet.md).
 * Returns 0 (rep says how many),
 * VD_EINVALID (no customer, a damaged record), or the opening's errors.
 * *errmsg as for the other calls. */
int vd_history_erase(const char *db_path, const char *customer_id,
                     const char *const *fields, size_t nfields,
                     const char *who, vd_history_erase_report_t *rep,
                     char **errmsg);
/* The revision of the last successful activation in DB_PATH, into OUT
 * (N bytes).  VD_ENOT_FOUND when there was none. */
int vd_history_last_revision(const char *db_path, char *out, size_t n,
                             char **errmsg);

/* ------------------------------------------------------------------------
 * Archive (core/history_archive.c)
 * ---------------------------------------------------------------------- */

typedef struct vd_history_archive_report {
  int64_t first_seq, last_seq; /* the records moved */
  int64_t erased;              /* of which had their personal data erased */
  char start[65];              /* hash before first_seq (the archive's
                                * start) */
  char anchor[65];             /* hash of last_seq: where the live chain
                                * now starts */
  vd_verify_report_t verify;   /* the archive file's verification */
} vd_history_archive_report_t;

/* Move the decisions of the database at LIVE_PATH received before
 * BEFORE_MS (the chain's prefix: from its first record up to the last
 * before the first one received at or after BEFORE_MS) into a new
 * archive file DEST (refused if it exists): a history database that
 * verifies on its own (its records, every revision, every activation),
 * verified before anything is removed; then delete them from the live
 * database in one write transaction and record the archiving there
 * (who, when, the range, the anchor, the file) in `archives`, from which
 * verify starts the chain.  Safe while the daemon writes (it waits for
 * the DELETE).  VD_ENOT_FOUND when nothing is that old.  *errmsg as for
 * the other calls. */
int vd_history_archive(const char *live_path, int64_t before_ms,
                       const char *dest, const char *who,
                       vd_history_archive_report_t *rep, char **errmsg);

/* The last archiving of DB_PATH: records 1..last_seq (0: none) were
 * moved to FILE at AT, those received before before_ms. */
typedef struct vd_history_archived {
  int64_t last_seq;
  int64_t before_ms;
  char at[40];
  char file[1024];
} vd_history_archived_t;
int vd_history_archived(const char *db_path, vd_history_archived_t *a,
                        char **errmsg);

/* ------------------------------------------------------------------------
 * A fleet's history in PostgreSQL (core/history_pg.c, docs/fleet.md)
 * ---------------------------------------------------------------------- */

/* One node's chain as verify found it: its last decision (seq, hash; 0
 * and the zero hash when it has none) and last activation. */
typedef struct vd_history_node_head {
  char node[64];
  int64_t seq;
  char hash[65];
  int64_t start;         /* 0, or the anchor its kept rows continue from
                          * (rows 1..start were dropped: retention) */
  int64_t activations;
  char act_hash[65];
} vd_history_node_head_t;

/* "NODE:SEQ:HASH", one node's head as an earlier verify printed it. */
typedef struct vd_history_node_anchor {
  char node[64];
  int64_t seq;
  char hash[65];
} vd_history_node_anchor_t;

/* Parse TEXT into *A: 0, or VD_EINVALID (a bad node name, SEQ < 1, not 64
 * lowercase hex digits). */
int vd_history_node_anchor_parse(const char *text,
                                 vd_history_node_anchor_t *a);

/* Verify every node's chain of decisions and of activations in the
 * PostgreSQL history DB, in one snapshot, and every stored revision, as
 * vd_history_verify_anchor() does for a file; each of ANCHORS (NANCHORS)
 * must still hold.  An anchor whose row and every row before it are gone
 * (a month dropped for retention) is where that node's kept rows must
 * continue from: its SEQ + 1 follows its HASH.  On success (0) and on a problem found (VD_EINVALID,
 * rep->problem set, rep->message naming the node) *heads is a malloc'd
 * array of *nheads nodes in name order (the caller frees it); on success
 * FLEET is the fleet anchor: hex SHA-256 of "NODE:SEQ:HASH\n" for every
 * node in that order. */
int vd_history_verify_fleet(const char *db,
                            const vd_history_node_anchor_t *anchors,
                            size_t nanchors, vd_verify_report_t *rep,
                            vd_history_node_head_t **heads, size_t *nheads,
                            char fleet[65]);

/* Append to OUT a JSON array with one object per node of the fleet's
 * node_status table: node, revision, activated_ms, last_error,
 * heartbeat_ms, decisions (its chain's length).  VD_EIO or VD_EINVALID
 * with ERR set on failure. */
int vd_history_fleet_status(const char *db, vd_buf_t *out, vd_buf_t *err);

/* What vd_history_import() did. */
typedef struct vd_history_import {
  int64_t records;       /* decisions appended to the node's chain */
  int64_t revisions;     /* revisions stored (those already there count) */
  int64_t activations;   /* activations appended to the node's chain */
  char source_head[100]; /* "SEQ:HASH", the file's verified head */
} vd_history_import_t;

/* Move the SQLite history FROM into the PostgreSQL history DB as node
 * NODE's chain (core/history_import.c): FROM must verify, NODE must have
 * no decisions in DB yet; its revisions are stored, then its decisions
 * appended in seq order through a writer as NODE (so no daemon may be
 * writing as NODE meanwhile), each batch committed durably.  The rows'
 * bytes are kept; their hashes are the node chain's (docs/fleet.md).
 * Its activations are appended to NODE's chain of activations as they
 * were (time, cause, who), before the decisions; they change neither the
 * fleet's revision nor NODE's node_status.  *out says what was done, also
 * on failure (what was committed before it). */
int vd_history_import(const char *from, const char *db, const char *node,
                      vd_history_import_t *out, char **errmsg);

/* The trigger of an activation a node makes to follow the fleet.  Every
 * successful activation in a PostgreSQL history whose trigger is neither
 * this nor starts with "startup" (a reload, an activate, a watched
 * change) also sets the fleet's desired revision and notifies the other
 * nodes, in the activation's transaction. */
#define VD_HISTORY_FLEET_TRIGGER "fleet"

/* The fleet's desired revision in the PostgreSQL history DB (what every
 * node follows: the last reload or activate on any node) into OUT (N
 * bytes); "" when none was ever set, or the database has no verdict
 * schema yet.  0, or VD_EIO / VD_ENOMEM with *errmsg set.  A connection
 * of its own, without the readers' schema check: verdictd asks before it
 * opens (and may migrate) the history. */
int vd_history_fleet_revision(const char *db, char *out, size_t n,
                              char **errmsg);

/* A node's watch on the fleet's desired revision: its own connection,
 * LISTENing for changes.  One thread uses it (verdictd's fleet thread).
 *   open: connect (fails as the readers' opening does);
 *   wait: block up to TIMEOUT_MS for a change (the first call returns at
 *     once), write the node's heartbeat into node_status, and put the
 *     desired revision in DESIRED (N bytes; "" when none was ever set).
 *     A lost connection is tried again on each call; meanwhile it fails
 *     (after waiting TIMEOUT_MS) with *errmsg set;
 *   close: NULL allowed. */
typedef struct vd_history_watch vd_history_watch_t;
int vd_history_watch_open(vd_history_watch_t **out, const char *db,
                          const char *node, char **errmsg);
int vd_history_watch_wait(vd_history_watch_t *w, int timeout_ms,
                          char *desired, size_t n, char **errmsg);
void vd_history_watch_close(vd_history_watch_t *w);

#endif
