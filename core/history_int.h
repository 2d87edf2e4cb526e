/*
 * history_int.h - what the files of the history module share, and nothing
 * outside them includes (the public API is include/verdict/history.h).
 *
 * The module is one file per layer, as SQLite is:
 *   history_db.c      opening, pragmas, schema and migrations, the
 *                     one-writer lock, the read-only open every reader
 *                     uses, the whole-file quick_check;
 *   history_chain.c   a row's canonical bytes, the SHA-256 chains (one
 *                     of decisions, one of activations), verify;
 *   history_writer.c  the queue, the writer thread, group commit, drain;
 *   history_revs.c    blobs, revisions, activations, loading a bundle;
 *   history_query.c   every SELECT the auditor commands, replay and the
 *                     admin channel run;
 *   history_facts.c   the questions policies ask (VD_HISTORY_FACTS);
 *   history_pg.c      the same for a fleet's PostgreSQL history: the
 *                     second backend (vd_hist_backend_t) and the readers'
 *                     PostgreSQL side, which the files above hand over to
 *                     when the db string is a connection string;
 *   history_import.c  a SQLite file into a fleet, on the public API.
 * Internal names start with vd_hist_ (public ones with vd_history_).
 *
 * Errors inside the module are carried as in the public API: an int
 * (0 or a negative VD_E* code) and the message in a vd_buf_t that the
 * failing step fills (vd_hist_db_err() and the checks of history_db.c).
 */
#ifndef VERDICT_HISTORY_INT_H
#define VERDICT_HISTORY_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>
#include <yajl/yajl_tree.h>

#include "verdict/buf.h"
#include "verdict/history.h"
#include "verdict/metrics.h"

/* The hash before the first record, and chain_head's on a new database. */
#define VD_HIST_ZERO_HASH \
  "0000000000000000000000000000000000000000000000000000000000000000"

/* ========================================================================
 * Rows (history_chain.c)
 * ====================================================================== */

/* The columns of `decisions` after seq and before hash: VD_HISTORY_COLUMNS
 * (history.h), which the canonical bytes take in order. */
enum {
#define COL_ENUM_(E, name) COL_##E,
  VD_HISTORY_COLUMNS(COL_ENUM_)
#undef COL_ENUM_
  NCOLS
};

#define COL_NAME_(E, name) ", " #name
/* "seq, decision_id, ..., client, hash" */
#define ALL_COLUMNS "seq" VD_HISTORY_COLUMNS(COL_NAME_) ", hash"
/* A decision's trace as readers select it.  From schema 9 a row keeps
 * its trace once per distinct trace in `traces`, and only the key in
 * trace_sha (its trace column NULL); rows stored before keep the trace in
 * their own column.  Either way this gives the bytes the chain hashed. */
#define VD_HIST_TRACE_SQL \
  "coalesce(trace, (SELECT t.trace FROM traces t WHERE t.sha256 = trace_sha))"
/* ALL_COLUMNS as readers select them: each column's name, but TRACE's
 * VD_HIST_TRACE_SQL.  READ_IF_TRACE is defined for TRACE alone: there it
 * expands to two arguments, which puts VD_HIST_TRACE_SQL second; for
 * every other column READ_IF_<E> stays one token and #name is second. */
#define READ_SECOND_(a, b, ...) b
#define READ_SECOND(...) READ_SECOND_(__VA_ARGS__)
#define READ_IF_TRACE ~, VD_HIST_TRACE_SQL
#define COL_READ_(E, name) ", " READ_SECOND(READ_IF_##E, #name, ~)
/* "seq, decision_id, ..., coalesce(trace, ...), ..., client, hash" */
#define READ_COLUMNS "seq" VD_HISTORY_COLUMNS(COL_READ_) ", hash"
#define COL_PARAM_(E, name) ", ?"
/* The placeholders of ALL_COLUMNS. */
#define ALL_PARAMS "?" VD_HISTORY_COLUMNS(COL_PARAM_) ", ?"

/* One column's value: text (p, n; p == NULL for SQL NULL) or, when is_int,
 * the integer i.  Text is borrowed from whatever the field was made of. */
typedef struct vd_hist_field {
  const char *p;
  size_t n;
  int64_t i;
  int is_int;
} vd_hist_field_t;

/* REC's columns, borrowing its strings. */
void vd_hist_record_fields(const vd_record_t *rec,
                           vd_hist_field_t f[NCOLS]);
/* Column I of a stepped row as the canonical bytes see it, borrowing
 * SQLite's text until the next step. */
vd_hist_field_t vd_hist_column_field(sqlite3_stmt *st, int i);
/* out = SHA-256(prev || canonical bytes of (seq, f)). */
void vd_hist_chain_hash(const uint8_t prev[32], int64_t seq,
                        const vd_hist_field_t f[NCOLS], uint8_t out[32]);

/* Schema 5 ("vd2" records): the columns that can hold personal data,
 * committed through one salted digest instead of their bytes. */
#define VD_HIST_PERSONAL_COL(i) \
  ((i) == COL_CUSTOMER_ID || (i) == COL_REQUEST || (i) == COL_FACTS)
/* A record's salt: 16 random bytes as 32 lowercase hex digits. */
#define VD_HIST_SALT_HEX 32
/* out = SHA-256(netstrings "vp1", SALT, customer_id, request, facts). */
void vd_hist_personal_digest(const char salt[VD_HIST_SALT_HEX],
                             const vd_hist_field_t f[NCOLS], uint8_t out[32]);
/* out = SHA-256(prev || "3:vd2," seq, the columns but the personal ones,
 * DIGEST (64 hex digits)). */
void vd_hist_chain_hash_v2(const uint8_t prev[32], int64_t seq,
                           const vd_hist_field_t f[NCOLS],
                           const char digest[64], uint8_t out[32]);
/* The same bytes in two parts, so that all but the chaining can be done
 * before the record's seq and the previous hash are known (on the
 * worker that submits it, history_writer.c): the tail is every byte
 * after the seq's netstring.  vd_hist_v2_tail() writes it to OUT (unless
 * OUT is NULL) and returns its length, which does not depend on DIGEST;
 * vd_hist_chain_hash_tail() then gives what vd_hist_chain_hash_v2() gives
 * for the record the tail was made of. */
size_t vd_hist_v2_tail(const vd_hist_field_t f[NCOLS], const char digest[64],
                       char *out);
void vd_hist_chain_hash_tail(const uint8_t prev[32], int64_t seq,
                             const char *tail, size_t n, uint8_t out[32]);
/* chain_format's row: the first seq in the "vd2" form and when the
 * migration to schema 5 ran (*v2_from -1 when the row is missing). */
int vd_hist_read_format(sqlite3 *db, const char *path, int64_t *v2_from,
                        int64_t *v2_ms, vd_buf_t *err);
/* Where the decisions' chain starts in DB (history_chain.c): *first and
 * the hash before it; *archived_to the last seq archived out of it (0:
 * none) and when; *copy when DB is itself an archive file. */
int vd_hist_chain_start(sqlite3 *db, const char *path, int64_t *first,
                        uint8_t prev[32], int64_t *archived_to,
                        int64_t *archived_ms, int *copy, vd_buf_t *err);
/* The migration to schema 5, inside its write transaction. */
int vd_hist_seal_format(sqlite3 *db, const char *path, int64_t now_ms,
                        vd_buf_t *err);
/* out = SHA-256(prev || canonical bytes of a node's record): as the chain
 * of its kind (ACTIVATION 0: a decision, "3:vn1,"; 1: an activation,
 * "3:vm1,"), then POS, then NODE as a text field, then the N fields.  The
 * per-node chains of a PostgreSQL history (history_pg.c). */
void vd_hist_node_hash(const uint8_t prev[32], int activation,
                       const char *node, int64_t pos,
                       const vd_hist_field_t *f, int n, uint8_t out[32]);

/* out = SHA-256(prev || "3:vn2," SEQ, NODE, the columns but the personal
 * ones, DIGEST): a node's record from its node_formats.v2_from on. */
void vd_hist_node_hash_v2(const uint8_t prev[32], const char *node,
                          int64_t seq, const vd_hist_field_t f[NCOLS],
                          const char digest[64], uint8_t out[32]);

/* Verify's view of a "vd2"/"vn2" record's personal part: from its salt
 * (SALT, NSALT bytes; NULL when the column is NULL), or as an erasure
 * kept it (KEPT, NKEPT).  DIGEST gets the hex digest the chain hashes
 * (recomputed from the salt, else the kept one).  Returns one of: */
enum {
  VD_HIST_PERSONAL_SALTED,   /* from the salt (and KEPT, if any, agrees) */
  VD_HIST_PERSONAL_ERASED,   /* erased: the kept digest */
  VD_HIST_PERSONAL_DIFFERS,  /* the salt's digest is not the kept one */
  VD_HIST_PERSONAL_BAD_SALT, /* a salt that is not 32 hex digits */
  VD_HIST_PERSONAL_NEITHER   /* no salt and no kept digest */
};
int vd_hist_personal_check(const vd_hist_field_t f[NCOLS], const char *salt,
                           size_t nsalt, const char *kept, size_t nkept,
                           char digest[65]);
/* What a BAD_SALT or NEITHER record has, for verify's message. */
const char *vd_hist_personal_problem(int check);
/* Set REP's problem, the record (SEQ, DECISION_ID, may be NULL) and its
 * message: every verify (history_chain.c, history_pg.c) reports so. */
void vd_hist_verify_report(vd_verify_report_t *rep,
                           vd_verify_problem_t problem, int64_t seq,
                           const char *decision_id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Whether the erasures table accounts for the erased records verify
 * found (rep->erased) with RECORDED: as many, or, AT_MOST (a fleet whose
 * oldest rows were dropped, taking erased ones with them), no more.  0, or
 * VD_EINVALID with REP's problem set. */
int vd_hist_erasures_accounted(vd_verify_report_t *rep, int64_t recorded,
                               int at_most);

/* The columns of `activations` after id and before hash, in the order
 * their canonical bytes take them (docs/history.md, "The activations
 * chain"). */
#define VD_HIST_ACT_COLUMNS(X)                                               \
  X(AT_MS, at_ms)                                                            \
  X(AT, at)                                                                  \
  X(REVISION, revision)                                                      \
  X(CAUSE, cause)                                                            \
  X(WHO, who)                                                                \
  X(SOURCE_DIR, source_dir)                                                  \
  X(OK, ok)                                                                  \
  X(ERROR, error)

enum {
#define ACOL_ENUM_(E, name) ACOL_##E,
  VD_HIST_ACT_COLUMNS(ACOL_ENUM_)
#undef ACOL_ENUM_
  NACOLS
};

/* An activation's columns in F (NACOLS of them), as both stores hash and
 * insert them; AT is NOW's text, the strings borrowed (history_revs.c). */
void vd_hist_activation_fields(vd_hist_field_t *f, int64_t now,
                               const char *at, const char *revision,
                               const char *trigger, const char *who,
                               const char *source_dir, int ok,
                               const char *error);

/* "id, at_ms, ..., error, hash" and its placeholders. */
#define ACT_COLUMNS "id" VD_HIST_ACT_COLUMNS(COL_NAME_) ", hash"
#define ACT_PARAMS "?" VD_HIST_ACT_COLUMNS(COL_PARAM_) ", ?"

/* out = SHA-256(prev || canonical bytes of activation (id, f)): the
 * netstring "3:va1,", id, then each column of VD_HIST_ACT_COLUMNS. */
void vd_hist_activation_hash(const uint8_t prev[32], int64_t id,
                             const vd_hist_field_t f[NACOLS],
                             uint8_t out[32]);
/* The migration to schema 3, inside its write transaction: chain the
 * activations already stored, in id order, and create activation_head
 * saying they were sealed at NOW_MS (history_db.c runs it). */
int vd_hist_seal_activations(sqlite3 *db, const char *path, int64_t now_ms,
                             vd_buf_t *err);

/* N bytes as 2N lowercase hex digits and a NUL. */
void vd_hist_to_hex(const uint8_t *d, size_t n, char *out);
/* 64 lowercase hex digits to 32 bytes.  Returns 0 or -1. */
int vd_hist_from_hex(const char *s, size_t n, uint8_t out[32]);
/* SHA-256 of N bytes, raw and as hex. */
void vd_hist_sha256(const void *data, size_t n, uint8_t out[32]);
void vd_hist_sha256_hex(const void *data, size_t n, char out[65]);

/* ========================================================================
 * A record's personal values in its JSON (history_erase.c)
 * ====================================================================== */

#define VD_HIST_MAX_PERSONAL 64

/* The personal input fields (customer_id always, and FIELDS), the
 * record's personal values v[0..n) and what replaces each in the JSON
 * (repl[i]: a string, or NULL for null).  Borrows everything. */
typedef struct vd_hist_personal {
  const char *const *fields;
  size_t nfields;
  const char *v[VD_HIST_MAX_PERSONAL];
  const char *repl[VD_HIST_MAX_PERSONAL];
  size_t n;
} vd_hist_personal_t;

enum {
  VD_HIST_DROP = 1, /* request: personal input members left out */
  VD_HIST_MAP,      /* request: their string values replaced */
  VD_HIST_FACTS     /* facts: every personal value replaced */
};

/* Add the string values of REQ's personal input members to P's values
 * (repl NULL), each once. */
void vd_hist_personal_collect(yajl_val req, vd_hist_personal_t *p);
/* V as compact JSON into B, rewritten as MODE says. */
void vd_hist_json_rewrite(vd_buf_t *b, yajl_val v,
                          const vd_hist_personal_t *p, int mode);

/* A record's erased form (vd_hist_erase_record()): what its row becomes. */
typedef struct vd_hist_erased {
  char digest[65];        /* the personal digest it keeps */
  vd_buf_t request;       /* the request without its personal input */
  vd_buf_t facts;         /* facts with null for every personal value */
  int has_request;        /* 0: request becomes NULL (none, or it did */
  int has_facts;          /*    not parse); the same for facts */
} vd_hist_erased_t;

/* Erase CUSTOMER's record (columns F, salt SALT), the personal input
 * FIELDS besides customer_id, into *E (the caller's, released with
 * vd_hist_erased_release()).  Both stores (history_erase.c, history_pg.c)
 * erase through it. */
void vd_hist_erase_record(const vd_hist_field_t f[NCOLS],
                          const char salt[VD_HIST_SALT_HEX],
                          const char *customer, const char *const *fields,
                          size_t nfields, vd_hist_erased_t *e);
void vd_hist_erased_release(vd_hist_erased_t *e);
/* "customer_id,F1,F2": the fields an erasures row names. */
void vd_hist_erasure_fields(vd_buf_t *b, const char *const *fields,
                            size_t nfields);

/* ========================================================================
 * Opening and errors (history_db.c)
 * ====================================================================== */

/* sqlite3_open_v2() for every connection of the history: first, once per
 * process, turns off SQLite's memory statistics (SQLITE_CONFIG_MEMSTATUS),
 * which verdict never reads and which cost every SQLite allocation a
 * global mutex and its bookkeeping (docs/performance.md, "SQLite's memory
 * statistics"). */
int vd_hist_sqlite_open(const char *path, sqlite3 **db, int flags);
/* The name of a VFS over the current default one that gathers a WAL
 * file's consecutive writes until anything else is done to the file
 * (history_walbuf.c): for a connection that syncs at every commit
 * (synchronous=FULL) only.  NULL: none (use the default). */
const char *vd_hist_walbuf_vfs(void);
/* Hand ERR to the caller as *errmsg (malloc'd; or drop it when errmsg is
 * NULL), release ERR and return RC.  A failure without a message gets one
 * from vd_err_desc(). */
int vd_hist_give_err(char **errmsg, vd_buf_t *err, int rc);
/* Describe SQLite's failure RC on DB (may be NULL) while DOING, for PATH,
 * in ERR (reset first).  Returns the VD_E* code it maps to. */
int vd_hist_db_err(vd_buf_t *err, const char *path, sqlite3 *db, int rc,
                   const char *doing);
/* Check the file system before SQLite does, for messages that say what to
 * fix.  WRITABLE: the file (if any) and its directory must be writable,
 * and the file may be missing; otherwise the file must exist. */
int vd_hist_check_path(const char *path, int writable, vd_buf_t *err);
/* Take the one-writer lock on PATH (*lock_fd: the caller closes it after
 * the connections), then open it for writing: checked, WAL, SYNCHRONOUS
 * ("FULL" or "NORMAL"), migrated.  *db is the caller's on success. */
int vd_hist_open_writer(sqlite3 **db, int *lock_fd, const char *path,
                        const char *synchronous, vd_buf_t *err);
/* A second read-write connection on a database vd_hist_open_writer() has
 * opened (revisions and activations).  *db is the caller's, even on
 * failure (close it). */
int vd_hist_open_aux(sqlite3 **db, const char *path, vd_buf_t *err);
/* DB waits for the write lock of a history a daemon writes (history_db.c:
 * tries every 200 us, VD_HISTORY_BUSY_MS in all), instead of SQLite's
 * busy timeout, whose growing sleeps miss the moments between batches.
 * For the connections that write beside the daemon: its aux connection,
 * `verdict history archive`, `erase`, `tag`. */
void vd_hist_busy_poll(sqlite3 *db);

/* Open the existing verdict history database at PATH read-only with a
 * busy timeout, and check that it is a verdict database of schema
 * VD_HISTORY_SCHEMA_VERSION.  On success *db is the caller's (close it with
 * sqlite3_close()).  On failure *db is NULL, ERR holds a message naming
 * PATH, and the return is VD_ENOT_FOUND (no such file), VD_EINVALID (not a
 * verdict database, or another schema version) or VD_EIO.  Every reader
 * opens the file this way, so all apply the same checks and messages. */
int vd_history_db_open_ro(sqlite3 **db, const char *path, vd_buf_t *err);

/* The query plan of the statement vd_history_rows_open() would run for
 * FILTER on the SQLite history DB_PATH: EXPLAIN QUERY PLAN's details,
 * joined by "; ", appended to PLAN (the tests check that every console
 * search is read from an index; history_query.c). */
int vd_hist_rows_plan(const char *db_path, const vd_history_filter_t *filter,
                      vd_buf_t *plan, vd_buf_t *err);

/* ========================================================================
 * Backends: where the writer's batches, revisions and activations go
 * ====================================================================== */

typedef struct vd_hist_qrec vd_hist_qrec_t;

/* The writer side of a history store.  history_writer.c runs the queue,
 * the writer thread and group commit over whichever h->be is, chosen by
 * vd_history_open_node() from the db string (vd_history_is_postgres()).
 *   open: connect or open, migrate, prepare (state in h->be_state);
 *   write_batch: on the writer thread, LIST in one transaction, 0 only
 *     once it is committed, else rolled back with ERR set;
 *   close: free h->be_state (also after a failed open);
 *   store_revision, record_activation: the public calls, for h;
 *   after_batch: NULL, or on the writer thread after a batch's
 *     completions are published (SQLite: keeps the WAL bounded). */
typedef struct vd_hist_backend {
  const char *name;
  int (*open)(vd_history_t *h, vd_buf_t *err);
  int (*write_batch)(vd_history_t *h, vd_hist_qrec_t *list, vd_buf_t *err);
  void (*close)(vd_history_t *h);
  int (*store_revision)(vd_history_t *h, const char *revision,
                        const vd_bundle_file_t *files, size_t nfiles,
                        char **errmsg);
  int (*record_activation)(vd_history_t *h, const char *revision,
                           const char *trigger, const char *who,
                           const char *source_dir, int ok, const char *error,
                           char **errmsg);
  /* vd_history_idem_load(), on the main thread */
  int (*idem_load)(vd_history_t *h, int64_t since_ms,
                   void (*cb)(const vd_history_idem_t *k, void *arg),
                   void *arg, vd_buf_t *err);
  /* on the writer thread, between batches: delete some of the keys
   * received before BEFORE_MS (a bounded number); 0 or an error */
  int (*idem_sweep)(vd_history_t *h, int64_t before_ms, vd_buf_t *err);
  void (*after_batch)(vd_history_t *h);
  /* Writer thread, after VD_HISTORY_PROBE_MS idle: whether a batch could
   * be written now (reconnecting if need be): 0, or an error with ERR
   * set.  NULL: the backend is only judged by its batches. */
  int (*probe)(vd_history_t *h, vd_buf_t *err);
} vd_hist_backend_t;

/* The SQLite file (history_writer.c, history_revs.c) and PostgreSQL
 * (history_pg.c). */
extern const vd_hist_backend_t vd_hist_sqlite_backend;
extern const vd_hist_backend_t vd_hist_pg_backend;

/* history_revs.c's store and record, for vd_hist_sqlite_backend. */
int vd_hist_sqlite_store_revision(vd_history_t *h, const char *revision,
                                  const vd_bundle_file_t *files,
                                  size_t nfiles, char **errmsg);
int vd_hist_sqlite_record_activation(vd_history_t *h, const char *revision,
                                     const char *trigger, const char *who,
                                     const char *source_dir, int ok,
                                     const char *error, char **errmsg);

/* history_idem.c: the SQLite side of idempotency keys.  prepare sets
 * h->st_idem on the writer's connection; put stores Q's key (Q has one)
 * inside the batch's transaction; sweep and load as the backend's
 * idem_sweep and idem_load say. */
int vd_hist_sqlite_idem_prepare(vd_history_t *h, vd_buf_t *err);
int vd_hist_sqlite_idem_put(vd_history_t *h, const vd_hist_qrec_t *q,
                            vd_buf_t *err);
int vd_hist_sqlite_idem_sweep(vd_history_t *h, int64_t before_ms,
                              vd_buf_t *err);
int vd_hist_sqlite_idem_load(vd_history_t *h, int64_t since_ms,
                             void (*cb)(const vd_history_idem_t *k,
                                        void *arg),
                             void *arg, vd_buf_t *err);

/* The readers' PostgreSQL side (history_pg.c): history_facts.c and
 * history_query.c hand over to these when their db string is a
 * connection string. */
typedef struct vd_hist_pg_reader vd_hist_pg_reader_t;
int vd_hist_pg_reader_open(vd_hist_pg_reader_t **out, const char *db,
                           vd_buf_t *err);
/* WHICH: 0 customer_decisions of a kind, 1 of any kind, 2
 * similar_customers, 3 + vd_complaints_t the complaint counts. */
int vd_hist_pg_count(vd_hist_pg_reader_t *r, int which, const char *a,
                     const char *b, int64_t since_ms, int64_t until_ms,
                     int64_t *count, vd_buf_t *err);
void vd_hist_pg_reader_close(vd_hist_pg_reader_t *r);

typedef struct vd_hist_pg_rows vd_hist_pg_rows_t;
int vd_hist_pg_rows_open(vd_hist_pg_rows_t **out, const char *db,
                         const vd_history_filter_t *filter, vd_buf_t *err);
int vd_hist_pg_split(const char *db, const vd_history_filter_t *filter,
                     int n, int64_t *bounds, int64_t *total, vd_buf_t *err);
int vd_hist_pg_rows_next(vd_hist_pg_rows_t *r,
                         const vd_history_value_t **row);
const char *vd_hist_pg_rows_errmsg(const vd_hist_pg_rows_t *r);
const char *vd_hist_pg_rows_node(const vd_hist_pg_rows_t *r);
/* history_import.c: A, from a single node's file, appended to H's node's
 * activations chain as it was (its time, its cause), H being a
 * PostgreSQL history; neither node_status nor the fleet's revision
 * changes.  0, or an error with *ERRMSG (malloc'd) set. */
int vd_hist_pg_import_activation(vd_history_t *h,
                                 const vd_history_activation_t *a,
                                 char **errmsg);
void vd_hist_pg_rows_close(vd_hist_pg_rows_t *r);
/* vd_history_erase() on a PostgreSQL history: every node's records of
 * CUSTOMER_ID in one transaction. */
int vd_hist_pg_erase(const char *db, const char *customer_id,
                     const char *const *fields, size_t nfields,
                     const char *who, vd_history_erase_report_t *rep,
                     char **errmsg);

/* vd_history_finder_t's PostgreSQL side (history_find.c). */
typedef struct vd_hist_pg_finder vd_hist_pg_finder_t;
int vd_hist_pg_finder_open(vd_hist_pg_finder_t **out, const char *db,
                           vd_buf_t *err);
int vd_hist_pg_find(vd_hist_pg_finder_t *f, const char *decision_id,
                    const vd_history_value_t **row, vd_buf_t *err);
void vd_hist_pg_finder_close(vd_hist_pg_finder_t *f);

int vd_hist_pg_load_revision(const char *db, const char *revision,
                             vd_bundle_file_t **files, size_t *nfiles,
                             vd_buf_t *err);
int vd_hist_pg_revisions_json(const char *db, vd_buf_t *out, vd_buf_t *err);
/* vd_history_resolve() and vd_history_tag() (TAG's name already checked)
 * on a PostgreSQL history, where active, previous and @-N count the
 * fleet's revisions (docs/fleet.md, "Naming revisions"). */
int vd_hist_pg_resolve(const char *db, const char *name,
                       char out[VD_REVISION_NAME_MAX], vd_buf_t *err);
int vd_hist_pg_tag(const char *db, const char *name, const char *tag,
                   const char *who, char out[VD_REVISION_NAME_MAX],
                   vd_buf_t *err);
/* A revision about to be stored (both stores' store_revision): its name
 * must be the hash of FILES[NFILES] (vd_hist_revision_name_ok()); *BYTES
 * their size.  0, or an error with *ERRMSG (malloc'd, the caller's). */
int vd_hist_revision_to_store(const char *revision,
                              const vd_bundle_file_t *files, size_t nfiles,
                              size_t *bytes, char **errmsg);
/* Verify's check of stored revision REVISION, whose files' loading gave
 * LOADED (0: FILES[N], freed here): they must hash to its name.  0: it
 * is counted in REP; one that fails (or was missing a file) is REP's
 * problem, VD_VERIFY_REVISION with ERR's message, and VD_EINVALID; any
 * other failure is returned as it is.  Both stores' verify use it. */
int vd_hist_verify_revision(const char *revision, int loaded,
                            vd_bundle_file_t *files, size_t n,
                            vd_verify_report_t *rep, vd_buf_t *err);
/* How revision name NAME reads (vd_history_resolve()), for both stores:
 * VD_HIST_NAME_BACK, the revision live *BACK changes ago (active 0,
 * previous 1, @-N); VD_HIST_NAME_PREFIX, a hash prefix, WANT its
 * "sha256:" and hex digits in lower case; VD_HIST_NAME_TAG, anything else;
 * or VD_EINVALID with ERR set: a prefix of fewer than 4 or more than 64
 * digits. */
enum { VD_HIST_NAME_BACK = 1, VD_HIST_NAME_PREFIX, VD_HIST_NAME_TAG };
int vd_hist_name_read(const char *name, int64_t *back,
                      char want[VD_REVISION_NAME_MAX], vd_buf_t *err);

/* ========================================================================
 * The writer's state (history_writer.c; aux and aux_mu: history_revs.c)
 * ====================================================================== */

/* A queued copy of one record: the struct and every string it points to
 * in one allocation. */
struct vd_hist_qrec {
  struct vd_hist_qrec *next;
  size_t size;              /* what it counts in h->qbytes */
  unsigned worker;
  uint64_t wseq;            /* the worker's sequence number */
  vd_hist_field_t f[NCOLS]; /* the record's columns, measured once; text
                             * in data[] */
  /* its idempotency key (vd_record_t's idem_*), text in data[]; idem_key
   * NULL: none */
  const char *idem_key, *idem_answer;
  size_t idem_answer_len;
  uint8_t idem_digest[32];
  int idem_code;
  /* SQLite (h->tail_on_submit): made by the submitting thread, so that
   * the writer only chains and inserts */
  char salt[VD_HIST_SALT_HEX];  /* the record's salt, hex */
  uint8_t trace_sha[32];    /* SHA-256 of f[COL_TRACE] (when not NULL): */
                            /* its key in `traces` (schema 9) */
  const char *tail;         /* vd_hist_v2_tail() of f, in data[] */
  size_t ntail;
  char data[];
};

/* One worker's side: its sequence counter and finished ranges. */
typedef struct vd_hist_lane {
  uint64_t next_seq;        /* last sequence number handed out */
  vd_history_done_t *done;  /* finished, not yet drained; oldest first */
  size_t ndone, cap;
  uint64_t batch_first;     /* writer: this worker's range in the batch */
  uint64_t batch_last;      /*   in hand (0: none) */
} vd_hist_lane_t;

struct vd_history {
  char *path;           /* the db string: a file, or a connection string */
  char *node;           /* --node-id (PostgreSQL), or NULL */
  const vd_hist_backend_t *be;
  void *be_state;       /* the backend's (pg_state_t in history_pg.c) */
  int lock_fd;          /* flock held: one writer per database file */
  int tail_on_submit;   /* SQLite: queued records carry salt and tail */
  vd_log_mode_t mode;
  unsigned nworkers;
  vd_history_notify_cb notify;
  void *notify_arg;

  /* writer */
  sqlite3 *db;
  sqlite3_stmt *st_head_get, *st_insert, *st_head_set;
  sqlite3_stmt *st_insert_group; /* INSERT_GROUP rows (history_writer.c) */
  sqlite3_stmt *st_rev_put, *st_rev_get; /* revision_numbers (schema 8) */
  sqlite3_stmt *st_trace_put; /* INSERT OR IGNORE INTO traces (schema 9) */
  sqlite3_stmt *st_begin, *st_commit; /* BEGIN IMMEDIATE, COMMIT: parsed once */
  sqlite3_stmt *st_idem;    /* INSERT OR REPLACE INTO idempotency */
  int64_t idem_swept_ms;    /* when the writer last deleted old keys */
  unsigned *touched;        /* workers with records in the batch in hand */
  unsigned long fail_batches, fail_records; /* in the current burst */
  int probe_failing;        /* the last probe failed (and was logged) */

  /* under mu */
  pthread_mutex_t mu;
  pthread_cond_t wake;      /* writer: something queued, or stopping */
  pthread_cond_t room;      /* submitters: the queue has room again */
  vd_history_log_cb log;   /* the writer's lines, or NULL (vd_history_set_log) */
  void *log_arg;
  vd_hist_qrec_t *qhead, **qtail;
  size_t qcount, qbytes;
  int stopping;
  int health;               /* 0, or the last batch's or probe's error */
  char health_why[512];     /* then why (vd_history_health) */
  vd_hist_lane_t *lanes;    /* nworkers of them */
  /* vd_history_set_metrics(): NULL until then; the depth is set under mu,
   * the other two by the writer thread (pointers read under mu) */
  vd_metrics_series_t *m_depth, *m_commit, *m_batch;

  pthread_t thread;
  int has_thread;

  /* SQLite's checkpoints, off the writer thread (history_writer.c): the
   * checkpointer's own connection and thread; ck_* under ck_mu */
  sqlite3 *ck_db;
  pthread_t ck_thread;
  int has_ck;
  pthread_mutex_t ck_mu;
  pthread_cond_t ck_wake;   /* checkpointer: a checkpoint is due, or stop */
  pthread_cond_t ck_idle;   /* writer: the checkpointer finished one */
  int ck_due, ck_running, ck_stop;
  int ck_next;              /* WAL frames at which the next one is due */
  int ck_seen;              /* WAL frames after the last commit */

  /* revisions and activations, from the main thread (history_revs.c),
   * under vd_hist_aux_lock(); aux_waiting (under mu) holds the writer at
   * its next batch until aux_done is signalled */
  pthread_mutex_t aux_mu;
  sqlite3 *aux;
  int aux_waiting;
  pthread_cond_t aux_done;
};

/* Take h->aux for one write transaction, and give it back.  A writer
 * that commits batch after batch would otherwise starve the aux
 * connection's BEGIN IMMEDIATE, which only polls for the lock between
 * sleeps (an activation not recorded within the busy timeout): while an
 * aux transaction is wanted the writer starts no new batch, so it waits
 * for one batch at most. */
void vd_hist_aux_lock(vd_history_t *h);
void vd_hist_aux_unlock(vd_history_t *h);

/* ========================================================================
 * Revisions (history_revs.c), for verify
 * ====================================================================== */

/* vd_history_resolve() on an open connection (history_revs.c). */
int vd_hist_resolve(sqlite3 *db, const char *path, const char *name,
                    char out[VD_REVISION_NAME_MAX], vd_buf_t *err);

/* 0 if REVISION names exactly FILES (the bundle's own hashing); else
 * VD_EINVALID or the bundle's error, with ERR set. */
int vd_hist_revision_name_ok(const char *revision,
                             const vd_bundle_file_t *files, size_t n,
                             vd_buf_t *err);
/* Every file of REVISION from DB, in path order, each blob checked.
 * Returns 0, VD_ENOT_FOUND, VD_EINVALID (a blob missing or altered) or
 * VD_EIO / VD_ENOMEM, with ERR set.  *files as vd_history_load_revision()
 * gives them. */
int vd_hist_load_files(sqlite3 *db, const char *path, const char *revision,
                       vd_bundle_file_t **files, size_t *nfiles,
                       vd_buf_t *err);

#endif
