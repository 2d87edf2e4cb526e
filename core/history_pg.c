/*
 * history_pg.c - the history in PostgreSQL, for a fleet of verdictd nodes
 * sharing one database (docs/fleet.md).  The second backend behind
 * include/verdict/history.h: history_writer.c runs the same queue, writer
 * thread and group commit over it through vd_hist_pg_backend, and the
 * readers (facts, rows, verify, revisions) come here when their db string
 * is a libpq connection string (vd_history_is_postgres()).
 *
 * Owns: the writer's two connections (the writer thread's and the main
 * thread's, for revisions and activations), a reader's connection with
 * its prepared facts statements, a rows cursor's connection, verify's.
 *
 * Invariants:
 *   - each node writes its own chain: decisions (node_id, node_seq) with
 *     node_seq 1, 2, 3 ... and hash(n) = SHA-256(hash(n - 1) || canonical
 *     bytes with the node), node_heads holding the node's last (seq,
 *     hash), moved in the batch's transaction; from the node's
 *     node_formats.v2_from on (schema 5) the bytes are "vn2", the
 *     personal columns through a salted digest (vd_hist_node_hash_v2(),
 *     so vd_hist_pg_erase() can erase them), before it "vn1"
 *     (vd_hist_node_hash());
 *   - one writer per node: a session advisory lock on the node's name,
 *     held by the writer connection (taken again when it reconnects);
 *   - a batch is acknowledged (status 0) only after its COMMIT returned;
 *     in durable mode synchronous_commit is on (with a synchronous
 *     standby configured, the row is on two machines), in async off;
 *   - every column but the three integers is bytea, so the bytes hashed
 *     are the bytes stored whatever a request held (invalid UTF-8, NUL);
 *   - decisions are partitioned by month of at_ms (UTC), each month's
 *     partition created, under an advisory lock, before the first batch
 *     that needs it.
 *
 * Threads: a connection belongs to one thread at a time, as SQLite's do:
 * the writer's to the writer thread, aux to the main thread (under
 * h->aux_mu), a reader to its worker.  libpq prints notices to stderr by
 * default; every connection here drops them (the library prints nothing).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>
#include <nettle/sha2.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"
#include "verdict/version.h"

/* The schema version of a PostgreSQL history (verdict_meta 'schema'). */
#define PG_SCHEMA_VERSION 5
/* Advisory lock keys (as SQL text): the schema's creation and a new
 * month's partition, transaction locks ("vrdt" then 1 and 2).  A node's
 * writer holds a session lock on hashtextextended('verdict node ' ||
 * name, 0) instead. */
#define PG_LOCK_SCHEMA "33339823020310529"
#define PG_LOCK_PARTITION "33339823020310530"
_Static_assert(0x76726474000001LL == 33339823020310529LL &&
                   0x76726474000002LL == 33339823020310530LL, "the keys");

/* Idempotency keys, each node's own (docs/protocol.md): stored with the
 * record they answered in the batch's transaction, read at start-up,
 * deleted after VD_HISTORY_IDEM_WINDOW_MS.  Not chained. */
#define PG_IDEM_SCHEMA                                                       \
  "CREATE TABLE idempotency (\n"                               \
  "  node_id text NOT NULL, key text NOT NULL, digest bytea NOT NULL,\n"     \
  "  decision_id text NOT NULL, received_ms bigint NOT NULL, code text,\n"   \
  "  answer bytea NOT NULL, PRIMARY KEY (node_id, key));\n"                  \
  "CREATE INDEX idempotency_received"                          \
  "  ON idempotency (node_id, received_ms)"

#define BYTEAOID 17
#define INT8OID 20
#define TEXTOID 25

/* ========================================================================
 * Connection strings, connections, messages
 * ====================================================================== */

int vd_history_is_postgres(const char *db) {
  size_t n;
  if (!db)
    return 0;
  if (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0)
    return 1;
  /* the keyword form: "host=... dbname=...": a word, then '=' */
  n = strspn(db, "abcdefghijklmnopqrstuvwxyz_");
  while (n && db[n] == ' ')
    n++;
  return n > 0 && db[n] == '=';
}

int vd_history_node_id_ok(const char *node) {
  size_t n = node ? strlen(node) : 0;
  return n >= 1 && n <= 63 &&
         strspn(node, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") == n;
}

int vd_history_db_has_password(const char *db) {
  PQconninfoOption *o, *p;
  int secret = 0;
  if (!vd_history_is_postgres(db) || !(o = PQconninfoParse(db, NULL)))
    return 0;
  for (p = o; p->keyword; p++)
    secret |= p->val && strcmp(p->keyword, "password") == 0;
  PQconninfoFree(o);
  return secret;
}

void vd_history_db_display(const char *db, char *out, size_t n) {
  PQconninfoOption *o, *p;
  vd_buf_t b = VD_BUF_INIT;
  int secret = 0;
  if (!n)
    return;
  if (!vd_history_is_postgres(db)) {
    snprintf(out, n, "%s", db ? db : "");
    return;
  }
  o = PQconninfoParse(db, NULL);
  for (p = o; p && p->keyword; p++)
    secret |= p->val && strcmp(p->keyword, "password") == 0;
  if (!o) {
    snprintf(out, n, "(a connection string libpq cannot read)");
    return;
  }
  if (!secret) {
    snprintf(out, n, "%s", db);
    PQconninfoFree(o);
    return;
  }
  /* libpq's keyword form, every value given, the password hidden */
  for (p = o; p->keyword; p++) {
    const char *v = strcmp(p->keyword, "password") == 0 ? "********" : p->val;
    if (!p->val)
      continue;
    vd_buf_addf(&b, "%s%s='", b.len ? " " : "", p->keyword);
    for (; *v; v++) {
      if (*v == '\'' || *v == '\\')
        vd_buf_addc(&b, '\\');
      vd_buf_addc(&b, *v);
    }
    vd_buf_addc(&b, '\'');
  }
  snprintf(out, n, "%s", b.data ? b.data : "");
  vd_buf_release(&b);
  PQconninfoFree(o);
}

/* What messages call DB: "PostgreSQL history 'dbname' on host:port",
 * never the password a connection string may hold. */
static void describe(const char *conninfo, char *out, size_t n) {
  PQconninfoOption *o = PQconninfoParse(conninfo, NULL), *p;
  const char *db = NULL, *host = NULL, *port = NULL;
  for (p = o; p && p->keyword; p++) {
    if (!p->val)
      continue;
    if (strcmp(p->keyword, "dbname") == 0)
      db = p->val;
    else if (strcmp(p->keyword, "host") == 0)
      host = p->val;
    else if (strcmp(p->keyword, "port") == 0)
      port = p->val;
  }
  snprintf(out, n, "PostgreSQL history '%s' on %s%s%s", db ? db : "(default)",
           host ? host : "(default host)", port ? ":" : "", port ? port : "");
  PQconninfoFree(o);
}

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* libpq's message without its trailing newline. */
static void add_pq_msg(vd_buf_t *err, const char *msg) {
  size_t n = msg ? strlen(msg) : 0;
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
    n--;
  vd_buf_add(err, msg ? msg : "", n);
}

static atomic_int db_timeout_ms; /* 0: no deadline (pq_exec()) */

/* The connection this thread's last round trip dropped at the deadline
 * (rt_expire()), and its server process: res_err() and conn_err() say so
 * for it.  Reset at the start of every round trip, as errno is by the
 * call that sets it. */
static _Thread_local PGconn *expired;
static _Thread_local int expired_pid;

static void add_expired(vd_buf_t *err) {
  vd_buf_addf(err, "no answer within %d ms (--db-timeout): the server is "
                   "stalled or unreachable, and the connection (server "
                   "process %d) was dropped", atomic_load(&db_timeout_ms),
              expired_pid);
}

static int conn_err(vd_buf_t *err, const char *where, PGconn *c,
                    const char *doing) {
  vd_buf_reset(err);
  vd_buf_addf(err, "%s: ", where);
  if (c && c == expired)
    add_expired(err);
  else
    add_pq_msg(err, c ? PQerrorMessage(c) : "out of memory");
  vd_buf_addf(err, " (while %s)", doing);
  return VD_EIO;
}

static int res_err(vd_buf_t *err, const char *where, PGresult *r,
                   PGconn *c, const char *doing) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  vd_buf_reset(err);
  vd_buf_addf(err, "%s: ", where);
  if (c && c == expired)
    add_expired(err);
  else
    add_pq_msg(err, m && *m ? m : PQerrorMessage(c));
  vd_buf_addf(err, " (while %s)", doing);
  return VD_EIO;
}

/* R's status was WANT: 0; else ERR says why (res_err()).  R is
 * cleared either way. */
static int res_done(PGresult *r, ExecStatusType want, vd_buf_t *err,
                    const char *where, PGconn *c, const char *doing) {
  int rc = PQresultStatus(r) == want ? 0 : res_err(err, where, r, c, doing);
  PQclear(r);
  return rc;
}

/* R's status was PGRES_TUPLES_OK: 0, and R is the caller's; else ERR says
 * why (res_err()) and R is cleared. */
static int rows_ok(PGresult *r, vd_buf_t *err, const char *where, PGconn *c,
                   const char *doing) {
  if (PQresultStatus(r) == PGRES_TUPLES_OK)
    return 0;
  res_err(err, where, r, c, doing);
  PQclear(r);
  return VD_EIO;
}

/* ========================================================================
 * Round trips with a deadline
 *
 * libpq's PQexec() and friends wait for the server as long as it takes,
 * and TCP keepalives cannot tell a stalled server (stopped, swapping, a
 * query waiting on a lock) from a slow one: a writer stuck there would
 * hold every durable request, and a reader every history question,
 * forever.  So every round trip here goes through pq_exec() and its
 * siblings: the connection is non-blocking, the query is sent, and poll()
 * waits for its answer until the deadline (vd_history_set_db_timeout());
 * past it the connection is dropped (shutdown() of its socket, which
 * leaves the PGconn CONNECTION_BAD), and the caller's existing path
 * reconnects it on next use (writer_connected(), aux_ready(), the
 * readers).  No PQcancel(): it opens a connection to the postmaster and
 * waits for it without a deadline, and a stalled postmaster would stall
 * it too.  The server ends the orphaned backend itself:
 * client_connection_check_interval (PostgreSQL 14 and later) is set on
 * every connection, so one that waits on a lock notices its client is
 * gone; a stopped one ends when it runs again.
 * ====================================================================== */

void vd_history_set_db_timeout(int ms) {
  atomic_store(&db_timeout_ms, ms > 0 ? ms : 0);
}

int vd_history_db_timeout(void) { return atomic_load(&db_timeout_ms); }

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline of a round trip starting now (monotonic ms), 0: none. */
static int64_t deadline_now(void) {
  int t = atomic_load(&db_timeout_ms);
  return t ? mono_ms() + t : 0;
}

/* Send what C has queued and read until it has a whole result to give:
 * 0; -1 when the connection failed (PQgetResult() then says why); 1 when
 * DEADLINE (monotonic ms, 0: none) passed first. */
static int rt_wait(PGconn *c, int64_t deadline) {
  for (;;) {
    int f = PQflush(c), n, left = -1;
    struct pollfd p;
    if (f < 0)
      return -1;
    if (f == 0 && !PQisBusy(c))
      return 0;
    if ((p.fd = PQsocket(c)) < 0)
      return -1;
    if (deadline) {
      int64_t now = mono_ms();
      if (now >= deadline)
        return 1;
      left = (int)(deadline - now);
    }
    p.events = (short)(POLLIN | (f ? POLLOUT : 0));
    p.revents = 0;
    n = poll(&p, 1, left);
    if (n < 0 && errno != EINTR)
      return -1;
    if (n > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP)) &&
        !PQconsumeInput(c))
      return -1;
  }
}

/* C passed its deadline: drop the connection (the next use reconnects)
 * and hand back a failed result, res_err() naming the deadline. */
static PGresult *rt_expire(PGconn *c) {
  PGresult *r;
  expired = c;
  expired_pid = PQbackendPID(c);
  (void)shutdown(PQsocket(c), SHUT_RDWR);
  while ((r = PQgetResult(c))) /* at once: the socket reads as closed */
    PQclear(r);
  return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
}

/* The next result of the query in flight on C, as PQgetResult() gives
 * it, waiting at most the deadline for it: NULL when the query is done;
 * past the deadline a failed result, and C dropped. */
static PGresult *pq_next(PGconn *c) {
  int w;
  expired = NULL;
  w = rt_wait(c, deadline_now());
  if (w > 0)
    return rt_expire(c);
  return PQgetResult(c);
}

/* After a query was sent (SENT nonzero): its results as PQexec() gives
 * them (the last, or the first COPY one), each awaited within one
 * deadline for the round trip.  NULL if it could not be sent. */
static PGresult *rt_result(PGconn *c, int sent) {
  int64_t deadline = deadline_now();
  PGresult *last = NULL, *r;
  expired = NULL;
  if (!sent)
    return NULL;
  for (;;) {
    if (rt_wait(c, deadline) > 0) {
      PQclear(last);
      return rt_expire(c);
    }
    if (!(r = PQgetResult(c)))
      break;
    PQclear(last);
    last = r;
    if (PQresultStatus(r) == PGRES_COPY_IN ||
        PQresultStatus(r) == PGRES_COPY_OUT ||
        PQresultStatus(r) == PGRES_COPY_BOTH ||
        PQstatus(c) == CONNECTION_BAD)
      break;
  }
  return last;
}

static PGresult *pq_exec(PGconn *c, const char *sql) {
  return rt_result(c, PQsendQuery(c, sql));
}

static PGresult *pq_exec_params(PGconn *c, const char *sql, int n,
                                const Oid *types, const char *const *v,
                                const int *lens, const int *fmts,
                                int result_fmt) {
  return rt_result(c, PQsendQueryParams(c, sql, n, types, v, lens, fmts,
                                        result_fmt));
}

static PGresult *pq_exec_prepared(PGconn *c, const char *name, int n,
                                  const char *const *v, const int *lens,
                                  const int *fmts, int result_fmt) {
  return rt_result(c, PQsendQueryPrepared(c, name, n, v, lens, fmts,
                                          result_fmt));
}

static PGresult *pq_prepare(PGconn *c, const char *name, const char *sql,
                            int n, const Oid *types) {
  return rt_result(c, PQsendPrepare(c, name, sql, n, types));
}

/* A connection made (or made again): notices dropped, non-blocking for
 * rt_wait(), and the server told to look for a vanished client while a
 * query runs (failing on a server older than 14, which is no reason to
 * refuse it). */
static void conn_setup(PGconn *c) {
  int t = atomic_load(&db_timeout_ms);
  PQsetNoticeProcessor(c, quiet, NULL);
  (void)PQsetnonblocking(c, 1);
  if (t) {
    char sql[80];
    snprintf(sql, sizeof sql, "SET client_connection_check_interval = %d",
             t < 1000 ? t : 1000);
    PQclear(pq_exec(c, sql));
  }
}

/* PQreset() with the connection set up again. */
static void pq_reset(PGconn *c) {
  expired = NULL;
  PQreset(c);
  if (PQstatus(c) == CONNECTION_OK)
    conn_setup(c);
}

/* Connect to CONNINFO as APP.  connect_timeout is the round trips'
 * deadline in seconds (rounded up), 5 without one, unless the string
 * says otherwise (it is expanded after, so it wins).  *out is the
 * caller's. */
static int pg_connect(PGconn **out, const char *conninfo, const char *app,
                      const char *where, vd_buf_t *err) {
  const char *kw[] = {"connect_timeout", "application_name", "dbname", NULL};
  int t = atomic_load(&db_timeout_ms);
  char secs[16];
  const char *val[] = {secs, app, conninfo, NULL};
  PGconn *c;
  snprintf(secs, sizeof secs, "%d", t ? (t + 999) / 1000 : 5);
  expired = NULL;
  c = PQconnectdbParams(kw, val, 1);
  *out = NULL;
  if (!c || PQstatus(c) != CONNECTION_OK) {
    int rc = conn_err(err, where, c, "connecting");
    PQfinish(c);
    return rc;
  }
  conn_setup(c);
  *out = c;
  return 0;
}

/* Run SQL without parameters; 0 or VD_EIO with ERR set. */
static int exec_ok(PGconn *c, const char *sql, const char *where,
                   const char *doing, vd_buf_t *err) {
  PGresult *r = pq_exec(c, sql);
  ExecStatusType s = PQresultStatus(r);
  int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK
               ? 0 : res_err(err, where, r, c, doing);
  PQclear(r);
  return rc;
}

/* Text parameters, text results. */
static PGresult *exec_params(PGconn *c, const char *sql, int n,
                             const char *const *v) {
  return pq_exec_params(c, sql, n, NULL, v, NULL, NULL, 0);
}

static void rollback_if_open(PGconn *c) {
  if (c && PQstatus(c) == CONNECTION_OK &&
      PQtransactionStatus(c) != PQTRANS_IDLE) {
    PGresult *r = pq_exec(c, "ROLLBACK");
    PQclear(r);
  }
}

static uint64_t be64(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++)
    v = v << 8 | u[i];
  return v;
}

static void put64(char *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--, v >>= 8)
    p[i] = (char)(v & 0xff);
}

/* ========================================================================
 * Schema
 * ====================================================================== */

/* Whether column I of VD_HISTORY_COLUMNS is stored as an integer: the
 * record's integer fields (vd_hist_record_fields()). */
static int col_is_int(int i) {
  return i == COL_RECEIVED_MS || i == COL_AT_MS || i == COL_ELAPSED_US;
}

static const char *const col_names[NCOLS] = {
#define PG_COL_NAME_(E, name) #name,
    VD_HISTORY_COLUMNS(PG_COL_NAME_)
#undef PG_COL_NAME_
};

/* "node_id, node_seq, decision_id, ..., client, hash" */
static void add_columns(vd_buf_t *b) {
  int i;
  vd_buf_adds(b, "node_id, node_seq");
  for (i = 0; i < NCOLS; i++)
    vd_buf_addf(b, ", %s", col_names[i]);
  vd_buf_adds(b, ", hash");
}

/* migrations[i] takes a database from schema version i to i + 1, each
 * in a transaction of its own under the schema's advisory lock (two nodes
 * starting at once: the second finds the work done).  Append only: a
 * shipped step never changes, so the columns of 0 -> 1 are spelled out
 * rather than taken from VD_HISTORY_COLUMNS; a new table is a new step. */
static const char *const migrations[] = {
  /* 0 -> 1: the fleet's history */
  "CREATE TABLE decisions (\n"
  "  node_id text NOT NULL, node_seq bigint NOT NULL,\n"
  "  decision_id bytea, received_ms bigint, at bytea, at_ms bigint NOT NULL,\n"
  "  kind bytea, region bytea, policy_region bytea, revision bytea,\n"
  "  complaint_id bytea, customer_id bytea, category bytea, request bytea,\n"
  "  result bytea, trace bytea, facts bytea, error_code bytea,\n"
  "  error_message bytea, error_path bytea, elapsed_us bigint, client bytea,\n"
  "  hash text NOT NULL) PARTITION BY RANGE (at_ms);\n"
  "CREATE INDEX decisions_node_seq ON decisions (node_id, node_seq);\n"
  "CREATE INDEX decisions_decision_id ON decisions (decision_id);\n"
  "CREATE INDEX decisions_received ON decisions (received_ms);\n"
  "CREATE INDEX decisions_complaint ON decisions (complaint_id, at_ms);\n"
  "CREATE INDEX decisions_customer ON decisions (customer_id, kind, at_ms)"
  "  WHERE error_code IS NULL;\n"
  "CREATE INDEX decisions_region_category"
  "  ON decisions (region, category, at_ms, customer_id)"
  "  WHERE error_code IS NULL;\n"
  "CREATE TABLE node_heads (\n"
  "  node_id text PRIMARY KEY,\n"
  "  seq     bigint NOT NULL, -- node_seq of the node's last decision\n"
  "  hash    text NOT NULL    -- its hash\n"
  ");\n"
  "CREATE TABLE blobs (sha256 text PRIMARY KEY, size bigint NOT NULL,"
  "  data bytea NOT NULL);\n"
  "CREATE TABLE revisions (revision text PRIMARY KEY,"
  "  stored_ms bigint NOT NULL, files integer NOT NULL,"
  "  bytes bigint NOT NULL);\n"
  "CREATE TABLE revision_files (\n"
  "  revision text NOT NULL REFERENCES revisions,\n"
  "  path text NOT NULL,\n"
  "  blob text NOT NULL REFERENCES blobs,\n"
  "  PRIMARY KEY (revision, path));\n"
  "CREATE TABLE activations (\n"
  "  node_id text NOT NULL, id bigint NOT NULL, at_ms bigint, at text,\n"
  "  revision text, cause text, who text, source_dir text, ok bigint,\n"
  "  error text, hash text NOT NULL, PRIMARY KEY (node_id, id));\n"
  "CREATE TABLE activation_heads (node_id text PRIMARY KEY,"
  "  last_id bigint NOT NULL, hash text NOT NULL);\n"
  "CREATE TABLE node_status (\n"
  "  node_id      text PRIMARY KEY,\n"
  "  revision     text,   -- the revision it runs\n"
  "  activated_ms bigint, -- when it switched to it\n"
  "  last_error   text,   -- its last failed activation, or NULL\n"
  "  heartbeat_ms bigint, -- last sign of life\n"
  "  started_ms   bigint);\n"
  "CREATE TABLE fleet_desired (\n"
  "  id       integer PRIMARY KEY CHECK (id = 1),\n"
  "  revision text NOT NULL, -- what every node should run\n"
  "  set_by   text NOT NULL, -- the node whose reload set it\n"
  "  set_ms   bigint NOT NULL);\n"
  "CREATE FUNCTION verdict_month_partition(ms bigint) RETURNS void\n"
  "LANGUAGE plpgsql AS $f$\n"
  "DECLARE\n"
  "  lo timestamp := date_trunc('month', to_timestamp(ms / 1000.0)"
  "                            AT TIME ZONE 'UTC');\n"
  "  name text := 'decisions_' || to_char(lo, 'YYYY_MM');\n"
  "BEGIN\n"
  "  PERFORM pg_advisory_xact_lock(" PG_LOCK_PARTITION ");\n"
  "  IF to_regclass(name) IS NULL THEN\n"
  "    EXECUTE format('CREATE TABLE %I PARTITION OF decisions"
  " FOR VALUES FROM (%s) TO (%s)', name,"
  " (extract(epoch FROM lo) * 1000)::bigint,"
  " (extract(epoch FROM lo + interval '1 month') * 1000)::bigint);\n"
  "  END IF;\n"
  "END $f$;\n",

  /* 1 -> 2: which verdict each node runs (a rolling upgrade's progress,
   * in `verdict fleet status`) */
  "ALTER TABLE node_status ADD COLUMN verdict text;\n",
  /* 2 -> 3: idempotency keys (pg_idem_put; docs/protocol.md,
   * "Idempotency keys"), written with the batch they answered */
  PG_IDEM_SCHEMA,
  /* 3 -> 4: names people give revisions (`verdict tag`, pg_tag()), as
   * a file's revision_tags.  Labels, not evidence: not chained. */
  "CREATE TABLE revision_tags (\n"
  "  name     text PRIMARY KEY,\n"
  "  revision text NOT NULL REFERENCES revisions (revision),\n"
  "  who      text,\n"
  "  at_ms    bigint NOT NULL,\n"
  "  at       text NOT NULL);\n",
  /* 4 -> 5: the personal part (docs/fleet.md, "Erasing a customer"): a
   * node's records from its node_formats.v2_from on are chained as "vn2"
   * (vd_hist_node_hash_v2()) through a salted digest of customer_id,
   * request and facts, so those can be erased; the node writes its row
   * when it next takes its lock (writer_setup()), so a node still on an
   * older verdict keeps writing "vn1" and is read as such.  `erasures`
   * records each `verdict history erase`, never the customer. */
  "ALTER TABLE decisions ADD COLUMN personal_salt text,"
  "  ADD COLUMN personal_digest text;\n"
  "CREATE TABLE node_formats (\n"
  "  node_id text PRIMARY KEY,\n"
  "  v2_from bigint NOT NULL, -- the node's first node_seq as \"vn2\"\n"
  "  at_ms   bigint NOT NULL);\n"
  "CREATE TABLE erasures (\n"
  "  id      bigserial PRIMARY KEY,\n"
  "  at_ms   bigint NOT NULL,\n"
  "  at      text NOT NULL,\n"
  "  who     text,\n"
  "  records bigint NOT NULL, -- records erased, every node's\n"
  "  nodes   text NOT NULL,   -- \"NODE:FIRST..LAST\" each, by name\n"
  "  fields  text NOT NULL);\n",
};

#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(sizeof migrations / sizeof migrations[0] == PG_SCHEMA_VERSION,
               "one migration per schema version");
_Static_assert(NCOLS == 20, "migration 0 -> 1 spells out the 20 columns");

/* The schema version in verdict_meta, or 0 without one; -1 on error. */
static int schema_version(PGconn *c, const char *where, vd_buf_t *err) {
  PGresult *r = pq_exec(c, "SELECT value FROM verdict_meta"
                          " WHERE key = 'schema'");
  int version = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    res_err(err, where, r, c, "reading the schema version");
    version = -1;
  } else if (PQntuples(r) == 1) {
    version = atoi(PQgetvalue(r, 0, 0));
  }
  PQclear(r);
  return version;
}

/* Bring the database to PG_SCHEMA_VERSION one step at a time (each step
 * and its verdict_meta 'schema' in one transaction, under the schema's
 * advisory lock); refuse a newer one. */
static int migrate(PGconn *c, const char *where, vd_buf_t *err) {
  int rc = 0, version = 0;
  while (rc == 0) {
    char doing[64], sql[160];
    rc = exec_ok(c, "BEGIN", where, "starting the schema migration", err);
    if (rc == 0)
      rc = exec_ok(c, "SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ")",
                   where, "locking the schema", err);
    if (rc == 0)
      rc = exec_ok(c, "CREATE TABLE IF NOT EXISTS verdict_meta"
                      " (key text PRIMARY KEY, value text NOT NULL)",
                   where, "creating verdict_meta", err);
    /* again, under the lock: another node may have migrated */
    if (rc == 0 && (version = schema_version(c, where, err)) < 0)
      rc = VD_EIO;
    if (rc == 0 && version > PG_SCHEMA_VERSION) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: schema version %d is newer than this verdict "
                       "knows (%d); use a newer verdict",
                  where, version, PG_SCHEMA_VERSION);
      rc = VD_EINVALID;
    }
    if (rc || version == PG_SCHEMA_VERSION)
      break;
    snprintf(doing, sizeof doing, "migrating the schema to version %d",
             version + 1);
    snprintf(sql, sizeof sql, "INSERT INTO verdict_meta VALUES ('schema',"
                              " '%d') ON CONFLICT (key) DO UPDATE"
                              " SET value = excluded.value", version + 1);
    rc = exec_ok(c, migrations[version], where, doing, err);
    if (rc == 0)
      rc = exec_ok(c, sql, where, doing, err);
    if (rc == 0)
      rc = exec_ok(c, "COMMIT", where, doing, err);
  }
  if (rc == 0)
    rc = exec_ok(c, "COMMIT", where, "committing the schema check", err);
  rollback_if_open(c);
  return rc;
}

/* The schema must be there, at our version: every reader checks. */
static int check_schema(PGconn *c, const char *where, vd_buf_t *err) {
  PGresult *r = pq_exec(c, "SELECT value FROM verdict_meta"
                          " WHERE key = 'schema'");
  int rc = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: not a verdict history (no schema version in "
                     "verdict_meta); start verdictd on it once to create it",
                where);
    rc = VD_EINVALID;
  } else if (atoi(PQgetvalue(r, 0, 0)) != PG_SCHEMA_VERSION) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: schema version %s, this verdict reads version %d"
                     " (%s)", where, PQgetvalue(r, 0, 0), PG_SCHEMA_VERSION,
                atoi(PQgetvalue(r, 0, 0)) < PG_SCHEMA_VERSION
                    ? "start this verdict's verdictd on it once to migrate it"
                    : "use a newer verdict");
    rc = VD_EINVALID;
  }
  PQclear(r);
  return rc;
}

/* Open a read-only connection to DB with the schema checked. */
static int open_ro(PGconn **out, const char *db, const char *app,
                   char *where, size_t wn, vd_buf_t *err) {
  int rc;
  describe(db, where, wn);
  rc = pg_connect(out, db, app, where, err);
  if (rc == 0 && (rc = check_schema(*out, where, err)) != 0) {
    PQfinish(*out);
    *out = NULL;
  }
  return rc;
}

/* ========================================================================
 * The writer (vd_hist_pg_backend)
 * ====================================================================== */

typedef struct pg_state {
  char *conninfo;
  char where[256];
  PGconn *conn;      /* the writer thread's; holds the node's lock */
  PGconn *aux;       /* main thread: revisions, activations, status */
  int64_t *months;   /* first ms of each month whose partition exists */
  size_t nmonths, cap;
  vd_buf_t copy;     /* a batch in COPY binary format */
  uint8_t *salts;    /* 16 random bytes per record of the batch in hand */
  size_t nsalts;     /* room in salts, in records */
  int set_up;        /* writer_setup() succeeded on conn as it is */
  int lost_pid;      /* the server process of a writer connection dropped
                        at its deadline, until the node's lock is taken
                        again: the stalled process may still hold it */
} pg_state_t;

/* The server process holding node NODE's lock on C's database, or 0. */
static int lock_holder(PGconn *c, const char *node) {
  const char *v[1] = {node};
  PGresult *r = pq_exec_params(
      c, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
         " AND objsubid = 1 AND database = (SELECT oid FROM pg_database"
         "  WHERE datname = current_database())"
         " AND (classid::bigint << 32 | objid::bigint)"
         "  = hashtextextended('verdict node ' || $1, 0)",
      1, NULL, v, NULL, NULL, 0);
  int pid = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                ? atoi(PQgetvalue(r, 0, 0)) : 0;
  PQclear(r);
  return pid;
}

/* Set up the writer connection: commit level, the node's lock, its head
 * row, its prepared statements.  Used at open and on each reconnect. */
static int writer_setup(vd_history_t *h, pg_state_t *s, vd_buf_t *err) {
  const char *v[1] = {h->node};
  PGresult *r;
  int rc = exec_ok(s->conn, h->mode == VD_LOG_DURABLE
                                ? "SET synchronous_commit = on"
                                : "SET synchronous_commit = off",
                   s->where, "setting synchronous_commit", err);
  if (rc)
    return rc;
  r = exec_params(s->conn, "SELECT pg_try_advisory_lock(hashtextextended("
                           "'verdict node ' || $1, 0))", 1, v);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = res_err(err, s->where, r, s->conn, "taking the node's lock");
  } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
    int holder = s->lost_pid ? lock_holder(s->conn, h->node) : 0;
    vd_buf_reset(err);
    if (holder && holder == s->lost_pid)
      vd_buf_addf(err, "%s: node '%s''s lock is still held by this node's "
                       "previous connection (server process %d), which "
                       "stopped answering; it is released when that "
                       "process ends", s->where, h->node, holder);
    else
      vd_buf_addf(err, "%s: another verdictd is writing as node '%s' (two "
                       "nodes need two --node-id names)", s->where, h->node);
    rc = VD_EIO;
  }
  PQclear(r);
  if (rc)
    return rc;
  s->lost_pid = 0;
  r = exec_params(s->conn, "INSERT INTO node_heads VALUES ($1, 0, '"
                           VD_HIST_ZERO_HASH "') ON CONFLICT DO NOTHING", 1, v);
  rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                "creating the node's chain head");
  if (rc)
    return rc;
  /* from the next record on, this node writes "vn2" (under its lock: no
   * older verdict writes its chain meanwhile) */
  r = exec_params(s->conn, "INSERT INTO node_formats SELECT node_id, seq + 1,"
                           " (extract(epoch FROM now()) * 1000)::bigint"
                           " FROM node_heads WHERE node_id = $1"
                           " ON CONFLICT DO NOTHING", 1, v);
  rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                "marking the node's record form");
  if (rc)
    return rc;
  r = pq_prepare(s->conn, "head_get", "SELECT seq, hash FROM node_heads"
                " WHERE node_id = $1 FOR UPDATE", 1, NULL);
  rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                "preparing statements");
  if (rc == 0) {
    r = pq_prepare(s->conn, "head_set", "UPDATE node_heads SET seq = $2,"
                  " hash = $3 WHERE node_id = $1", 3, NULL);
    rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                  "preparing statements");
  }
  if (rc == 0) {
    r = pq_prepare(s->conn, "idem_put",
                  "INSERT INTO idempotency VALUES ($1, $2, $3, $4, $5, $6, $7)"
                  " ON CONFLICT (node_id, key) DO UPDATE SET"
                  " digest = $3, decision_id = $4, received_ms = $5,"
                  " code = $6, answer = $7", 7, NULL);
    rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                  "preparing statements");
  }
  return rc;
}

static void pg_close(vd_history_t *h) {
  pg_state_t *s = h->be_state;
  if (!s)
    return;
  PQfinish(s->conn);
  PQfinish(s->aux);
  free(s->conninfo);
  free(s->months);
  free(s->salts);
  vd_buf_release(&s->copy);
  free(s);
  h->be_state = NULL;
}

static int pg_open(vd_history_t *h, vd_buf_t *err) {
  pg_state_t *s = calloc(1, sizeof *s);
  char app[96];
  int rc;
  if (!s || !(s->conninfo = strdup(h->path))) {
    free(s);
    return VD_ENOMEM;
  }
  h->be_state = s;
  describe(h->path, s->where, sizeof s->where);
  if (!vd_history_node_id_ok(h->node)) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: %s", s->where,
                h->node ? "--node-id: 1 to 63 letters, digits, '.', '_' or "
                          "'-'"
                        : "a PostgreSQL history needs --node-id NAME (each "
                          "node writes its own chain)");
    return VD_EINVALID;
  }
  snprintf(app, sizeof app, "verdictd %s", h->node);
  rc = pg_connect(&s->conn, h->path, app, s->where, err);
  if (rc == 0)
    rc = migrate(s->conn, s->where, err);
  if (rc == 0)
    rc = writer_setup(h, s, err);
  s->set_up = rc == 0;
  if (rc == 0)
    rc = pg_connect(&s->aux, h->path, app, s->where, err);
  return rc;
}

/* Q's idempotency key, inside the batch's transaction. */
static int pg_idem_put(vd_history_t *h, pg_state_t *s,
                       const vd_hist_qrec_t *q, vd_buf_t *err) {
  char received[24];
  const char *v[7];
  int lens[7] = {0}, fmts[7] = {0};
  PGresult *r;
  int rc = 0;
  snprintf(received, sizeof received, "%" PRId64, q->f[COL_RECEIVED_MS].i);
  v[0] = h->node;
  v[1] = q->idem_key;
  v[2] = (const char *)q->idem_digest;
  lens[2] = (int)sizeof q->idem_digest;
  fmts[2] = 1;
  v[3] = q->f[COL_DECISION_ID].p;
  v[4] = received;
  v[5] = q->idem_code ? vd_err_name(q->idem_code) : NULL;
  v[6] = q->idem_answer;
  lens[6] = (int)q->idem_answer_len;
  fmts[6] = 1;
  r = pq_exec_prepared(s->conn, "idem_put", 7, v, lens, fmts, 0);
  rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                "storing an idempotency key");
  return rc;
}

/* The month of MS (UTC) as its first millisecond: the partition key. */
static int64_t month_of(int64_t ms) {
  int64_t days = (ms >= 0 ? ms : ms - 86399999) / 86400000;
  /* civil_from_days (Howard Hinnant), to the first of the month */
  int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5; /* day of month - 1 */
  return (days - d) * 86400000;
}

/* Make sure the partition of every month in LIST exists, each in its own
 * transaction, before the batch's. */
static int ensure_months(pg_state_t *s, vd_hist_qrec_t *list, vd_buf_t *err) {
  vd_hist_qrec_t *q;
  for (q = list; q; q = q->next) {
    int64_t m = month_of(q->f[COL_AT_MS].i);
    char ms[24];
    const char *v[1] = {ms};
    PGresult *r;
    size_t i;
    for (i = 0; i < s->nmonths && s->months[i] != m; i++)
      ;
    if (i < s->nmonths)
      continue;
    snprintf(ms, sizeof ms, "%" PRId64, m);
    r = exec_params(s->conn, "SELECT verdict_month_partition($1)", 1, v);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      int rc = res_err(err, s->where, r, s->conn, "creating a month's "
                                                  "partition");
      PQclear(r);
      return rc;
    }
    PQclear(r);
    if (s->nmonths == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 16;
      int64_t *nm = realloc(s->months, cap * sizeof *nm);
      if (!nm)
        return VD_ENOMEM;
      s->months = nm;
      s->cap = cap;
    }
    s->months[s->nmonths++] = m;
  }
  return 0;
}

static void copy_field(vd_buf_t *b, const char *p, size_t n) {
  char len[4];
  uint32_t v = p ? (uint32_t)n : 0xffffffffu;
  len[0] = (char)(v >> 24);
  len[1] = (char)(v >> 16);
  len[2] = (char)(v >> 8);
  len[3] = (char)v;
  vd_buf_add(b, len, 4);
  if (p)
    vd_buf_add(b, p, n);
}

static void copy_int(vd_buf_t *b, int64_t v) {
  char d[8];
  put64(d, (uint64_t)v);
  copy_field(b, d, 8);
}

/* 16 random bytes for each record of LIST in s->salts: its salt. */
static int draw_salts(pg_state_t *s, vd_hist_qrec_t *list, vd_buf_t *err) {
  size_t n = 0, got = 0;
  vd_hist_qrec_t *q;
  for (q = list; q; q = q->next)
    n++;
  if (n > s->nsalts) {
    uint8_t *p = realloc(s->salts, n * 16);
    if (!p)
      return VD_ENOMEM;
    s->salts = p;
    s->nsalts = n;
  }
  while (got < n * 16) {
    ssize_t r = getrandom(s->salts + got, n * 16 - got, 0);
    if (r < 0 && errno != EINTR) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: no random bytes for the records' salts: %s",
                  s->where, strerror(errno));
      return VD_EIO;
    }
    if (r > 0)
      got += (size_t)r;
  }
  return 0;
}

/* The writer's connection, set up again (the node's lock included) when
 * it was lost. */
static int writer_connected(vd_history_t *h, pg_state_t *s, vd_buf_t *err) {
  int rc;
  if (s->set_up && PQstatus(s->conn) == CONNECTION_OK)
    return 0;
  if (s->conn == expired) /* dropped at its deadline by the last call */
    s->lost_pid = expired_pid;
  /* a fresh session also after a set-up that failed part way (the
   * node's lock refused): never a batch without the lock */
  s->set_up = 0;
  pq_reset(s->conn);
  if (PQstatus(s->conn) != CONNECTION_OK)
    return conn_err(err, s->where, s->conn, "reconnecting");
  rc = writer_setup(h, s, err);
  s->set_up = rc == 0;
  return rc;
}

/* Idle (vd_hist_backend_t.probe): the writer's connection answers, or is
 * made again with the node's lock; a lost one shows as lost here, not
 * only at the next batch. */
static int pg_probe(vd_history_t *h, vd_buf_t *err) {
  pg_state_t *s = h->be_state;
  int rc = writer_connected(h, s, err), again;
  for (again = 1; rc == 0; again--) {
    rc = exec_ok(s->conn, "SELECT 1", s->where, "checking the connection",
                 err);
    /* a server restarted since: one new connection, then the answer */
    if (rc == 0 || !again || PQstatus(s->conn) == CONNECTION_OK ||
        (rc = writer_connected(h, s, err)) != 0)
      break;
  }
  return rc;
}

/* One transaction: the node's head (locked), every row through COPY in
 * binary, the head moved, COMMIT.  Reconnects first when the connection
 * was lost; on failure rolls back and ERR says why. */
static int pg_write_batch(vd_history_t *h, vd_hist_qrec_t *list,
                          vd_buf_t *err) {
  static const char sig[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
  pg_state_t *s = h->be_state;
  vd_buf_t sql = VD_BUF_INIT;
  uint8_t prev[32], cur[32];
  char hex[65], seqtxt[24];
  const char *v[3];
  int64_t seq;
  vd_hist_qrec_t *q;
  PGresult *r;
  size_t k;
  int rc, i;
  rc = writer_connected(h, s, err);
  if (rc)
    return rc;
  rc = ensure_months(s, list, err);
  if (rc)
    return rc;
  rc = exec_ok(s->conn, "BEGIN", s->where, "starting a batch", err);
  if (rc)
    goto fail;
  v[0] = h->node;
  r = pq_exec_prepared(s->conn, "head_get", 1, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
      vd_hist_from_hex(PQgetvalue(r, 0, 1),
                       (size_t)PQgetlength(r, 0, 1), prev) != 0) {
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: node_heads row of node '%s' is missing or "
                       "altered; run `verdict history verify`",
                  s->where, h->node);
      rc = VD_EINVALID;
    } else {
      rc = res_err(err, s->where, r, s->conn, "reading the chain head");
    }
    PQclear(r);
    goto fail;
  }
  seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10) + 1;
  PQclear(r);

  rc = draw_salts(s, list, err);
  if (rc)
    goto fail;
  vd_buf_reset(&s->copy);
  vd_buf_add(&s->copy, sig, 19);
  for (q = list, k = 0; q; q = q->next, seq++, k++) {
    char nf[2] = {(char)((NCOLS + 4) >> 8), (char)((NCOLS + 4) & 0xff)};
    char salt[VD_HIST_SALT_HEX + 1], digest[65];
    uint8_t d[32];
    /* "vn2": the personal part through its salted digest (writer_setup()
     * marked this node's records so from its first under this verdict) */
    vd_hist_to_hex(s->salts + 16 * k, 16, salt);
    vd_hist_personal_digest(salt, q->f, d);
    vd_hist_to_hex(d, sizeof d, digest);
    vd_hist_node_hash_v2(prev, h->node, seq, q->f, digest, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    vd_buf_add(&s->copy, nf, 2);
    copy_field(&s->copy, h->node, strlen(h->node));
    copy_int(&s->copy, seq);
    for (i = 0; i < NCOLS; i++) {
      if (col_is_int(i))
        copy_int(&s->copy, q->f[i].i);
      else
        copy_field(&s->copy, q->f[i].p, q->f[i].n);
    }
    copy_field(&s->copy, hex, 64);
    copy_field(&s->copy, salt, VD_HIST_SALT_HEX);
    memcpy(prev, cur, sizeof prev);
  }
  vd_buf_add(&s->copy, "\377\377", 2);
  vd_buf_adds(&sql, "COPY decisions (");
  add_columns(&sql);
  vd_buf_adds(&sql, ", personal_salt) FROM STDIN (FORMAT binary)");
  r = pq_exec(s->conn, sql.data);
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    rc = res_err(err, s->where, r, s->conn, "starting to copy a batch");
    PQclear(r);
    goto fail;
  }
  PQclear(r);
  if (PQputCopyData(s->conn, s->copy.data, (int)s->copy.len) != 1 ||
      PQputCopyEnd(s->conn, NULL) != 1) {
    rc = conn_err(err, s->where, s->conn, "copying a batch");
    goto fail;
  }
  r = pq_next(s->conn);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    rc = res_err(err, s->where, r, s->conn, "inserting decisions");
    PQclear(r);
    while ((r = pq_next(s->conn)))
      PQclear(r);
    goto fail;
  }
  PQclear(r);
  while ((r = pq_next(s->conn)))
    PQclear(r);
  for (q = list; q; q = q->next)
    if (q->idem_key && (rc = pg_idem_put(h, s, q, err)) != 0)
      goto fail;
  snprintf(seqtxt, sizeof seqtxt, "%" PRId64, seq - 1);
  vd_hist_to_hex(prev, sizeof prev, hex);
  v[1] = seqtxt;
  v[2] = hex;
  r = pq_exec_prepared(s->conn, "head_set", 3, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    rc = res_err(err, s->where, r, s->conn, "moving the chain head");
    PQclear(r);
    goto fail;
  }
  PQclear(r);
  /* durable: only now, with COMMIT answered, are the rows acknowledged */
  rc = exec_ok(s->conn, "COMMIT", s->where, "committing a batch", err);
  if (rc)
    goto fail;
  vd_buf_release(&sql);
  return 0;
fail:
  rollback_if_open(s->conn);
  vd_buf_release(&sql);
  return rc ? rc : VD_EIO;
}

/* ------------------------------------------------------------------------
 * Revisions and activations, on the aux connection
 * ---------------------------------------------------------------------- */

/* The aux connection, reconnected when it was lost. */
static int aux_ready(pg_state_t *s, vd_buf_t *err) {
  if (PQstatus(s->aux) == CONNECTION_OK)
    return 0;
  pq_reset(s->aux);
  if (PQstatus(s->aux) != CONNECTION_OK)
    return conn_err(err, s->where, s->aux, "reconnecting");
  return 0;
}

static int pg_store_revision(vd_history_t *h, const char *revision,
                             const vd_bundle_file_t *files, size_t nfiles,
                             char **errmsg) {
  pg_state_t *s = h->be_state;
  vd_buf_t err = VD_BUF_INIT;
  char now[24], nf[24], nb[24], sha[65], size[24];
  size_t i, bytes;
  PGresult *r;
  int rc = vd_hist_revision_to_store(revision, files, nfiles, &bytes, errmsg);
  if (rc)
    return rc;
  snprintf(now, sizeof now, "%" PRId64, vd_now_ms());
  snprintf(nf, sizeof nf, "%zu", nfiles);
  snprintf(nb, sizeof nb, "%zu", bytes);
  pthread_mutex_lock(&h->aux_mu);
  rc = aux_ready(s, &err);
  if (rc == 0)
    rc = exec_ok(s->aux, "BEGIN", s->where, "storing a revision", &err);
  if (rc == 0) {
    const char *v[4] = {revision, now, nf, nb};
    r = exec_params(s->aux, "INSERT INTO revisions VALUES ($1, $2, $3, $4)"
                            " ON CONFLICT DO NOTHING", 4, v);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      rc = res_err(&err, s->where, r, s->aux, "storing a revision");
    /* stored before: the name says its files are these */
    else if (strcmp(PQcmdTuples(r), "0") == 0)
      nfiles = 0;
    PQclear(r);
  }
  for (i = 0; rc == 0 && i < nfiles; i++) {
    const char *data = files[i].data ? files[i].data : "";
    const char *bv[3] = {sha, size, data};
    int lens[3] = {0, 0, (int)files[i].len}, fmts[3] = {0, 0, 1};
    vd_hist_sha256_hex(data, files[i].len, sha);
    snprintf(size, sizeof size, "%zu", files[i].len);
    r = pq_exec_params(s->aux, "INSERT INTO blobs VALUES ($1, $2, $3)"
                             " ON CONFLICT DO NOTHING",
                     3, NULL, bv, lens, fmts, 0);
    rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                  "storing a revision file");
    if (rc == 0) {
      const char *fv[3] = {revision, files[i].path, sha};
      r = exec_params(s->aux, "INSERT INTO revision_files VALUES"
                              " ($1, $2, $3)", 3, fv);
      rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                    "storing a revision file");
    }
  }
  if (rc == 0)
    rc = exec_ok(s->aux, "COMMIT", s->where, "committing a revision", &err);
  rollback_if_open(s->aux);
  pthread_mutex_unlock(&h->aux_mu);
  return vd_hist_give_err(errmsg, &err, rc);
}

/* Append an activation made at NOW (AT its text) to the node's chain of
 * activations.  IMPORTED (vd_hist_pg_import_activation()): one from a
 * single node's past, which neither says what the node runs now nor sets
 * the fleet's revision. */
static int pg_activation(vd_history_t *h, int64_t now, const char *at,
                         const char *revision, const char *trigger,
                         const char *who, const char *source_dir, int ok,
                         const char *error, int imported, char **errmsg) {
  pg_state_t *s = h->be_state;
  vd_buf_t err = VD_BUF_INIT;
  vd_hist_field_t f[NACOLS];
  int64_t id = 1;
  uint8_t prev[32] = {0}, cur[32];
  char hex[65], idt[24], nowt[24];
  PGresult *r;
  int rc;
  if (errmsg)
    *errmsg = NULL;
  if (!revision || !trigger || !at) {
    vd_buf_adds(&err, "history: an activation needs a revision and a trigger");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  vd_hist_activation_fields(f, now, at, revision, trigger, who, source_dir,
                            ok, error);
  pthread_mutex_lock(&h->aux_mu);
  rc = aux_ready(s, &err);
  if (rc == 0)
    rc = exec_ok(s->aux, "BEGIN", s->where, "recording an activation", &err);
  if (rc == 0) {
    const char *v[1] = {h->node};
    r = exec_params(s->aux, "SELECT last_id, hash FROM activation_heads"
                            " WHERE node_id = $1 FOR UPDATE", 1, v);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
      rc = res_err(&err, s->where, r, s->aux, "reading the activations' "
                                              "head");
    else if (PQntuples(r) == 1) {
      id = strtoll(PQgetvalue(r, 0, 0), NULL, 10) + 1;
      (void)vd_hist_from_hex(PQgetvalue(r, 0, 1),
                             (size_t)PQgetlength(r, 0, 1), prev);
    }
    PQclear(r);
  }
  if (rc == 0) {
    char okt[2] = {ok ? '1' : '0', 0};
    const char *v[11];
    vd_hist_node_hash(prev, 1, h->node, id, f, NACOLS, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    snprintf(idt, sizeof idt, "%" PRId64, id);
    snprintf(nowt, sizeof nowt, "%" PRId64, now);
    v[0] = h->node; v[1] = idt; v[2] = nowt; v[3] = at; v[4] = revision;
    v[5] = trigger; v[6] = who; v[7] = source_dir; v[8] = okt;
    v[9] = error; v[10] = hex;
    r = exec_params(s->aux, "INSERT INTO activations VALUES ($1, $2, $3, $4,"
                            " $5, $6, $7, $8, $9, $10, $11)", 11, v);
    rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                  "recording an activation");
  }
  if (rc == 0) {
    const char *v[3] = {h->node, idt, hex};
    r = exec_params(s->aux, "INSERT INTO activation_heads VALUES ($1, $2, $3)"
                            " ON CONFLICT (node_id) DO UPDATE SET"
                            " last_id = excluded.last_id,"
                            " hash = excluded.hash", 3, v);
    rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                  "moving the activations' head");
  }
  if (rc == 0 && !imported) {
    /* the node's status row says what it runs, or what last failed (each
     * statement uses every parameter it is given: the server infers a
     * parameter's type from its use, and refuses one never used) */
    const char *v[4] = {h->node, revision, nowt, NULL};
    const char *bad[3] = {h->node, error ? error : "?", nowt};
    r = ok ? exec_params(s->aux,
                         "INSERT INTO node_status (node_id, revision,"
                         " activated_ms, last_error, heartbeat_ms,"
                         " started_ms) VALUES ($1, $2, $3, $4, $3, $3)"
                         " ON CONFLICT (node_id) DO UPDATE SET"
                         " revision = $2, activated_ms = $3,"
                         " last_error = NULL, heartbeat_ms = $3",
                         4, v)
           : exec_params(s->aux,
                         "INSERT INTO node_status (node_id, last_error,"
                         " heartbeat_ms) VALUES ($1, $2, $3)"
                         " ON CONFLICT (node_id) DO UPDATE SET"
                         " last_error = $2, heartbeat_ms = $3",
                         3, bad);
    rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                  "updating the node's status");
  }
  if (rc == 0 && !imported && ok && strncmp(trigger, "startup", 7) != 0 &&
      strcmp(trigger, VD_HISTORY_FLEET_TRIGGER) != 0) {
    /* a reload here is the fleet's: every node follows (NOTIFY is sent
     * at COMMIT, so no node reads the revision before it is stored) */
    const char *v[3] = {revision, h->node, nowt};
    r = exec_params(s->aux, "INSERT INTO fleet_desired VALUES (1, $1, $2, $3)"
                            " ON CONFLICT (id) DO UPDATE SET revision = $1,"
                            " set_by = $2, set_ms = $3", 3, v);
    rc = res_done(r, PGRES_COMMAND_OK, &err, s->where, s->aux,
                  "setting the fleet's revision");
    if (rc == 0)
      rc = exec_ok(s->aux, "NOTIFY verdict_revision", s->where,
                   "telling the fleet", &err);
  }
  if (rc == 0)
    rc = exec_ok(s->aux, "COMMIT", s->where, "committing an activation", &err);
  rollback_if_open(s->aux);
  pthread_mutex_unlock(&h->aux_mu);
  return vd_hist_give_err(errmsg, &err, rc);
}

/* The node's idempotency keys received since SINCE_MS (main thread). */
static int pg_idem_load(vd_history_t *h, int64_t since_ms,
                        void (*cb)(const vd_history_idem_t *k, void *arg),
                        void *arg, vd_buf_t *err) {
  pg_state_t *s = h->be_state;
  char since[24];
  const char *v[2] = {h->node, since};
  PGresult *r;
  int rc, i, n;
  snprintf(since, sizeof since, "%" PRId64, since_ms);
  pthread_mutex_lock(&h->aux_mu);
  rc = aux_ready(s, err);
  if (rc)
    goto out;
  /* binary results: the digest and the answer as their bytes */
  r = pq_exec_params(s->aux, "SELECT key, digest, decision_id, received_ms,"
                   " code, answer FROM idempotency WHERE node_id = $1"
                   " AND received_ms >= $2::bigint ORDER BY received_ms",
                   2, NULL, v, NULL, NULL, 1);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = res_err(err, s->where, r, s->aux, "reading the idempotency keys");
    PQclear(r);
    goto out;
  }
  n = PQntuples(r);
  for (i = 0; i < n; i++) {
    vd_history_idem_t k;
    char key[384], id[64], code[64]; /* scope (< 64), newline, key (<= 255) */
    int kl = PQgetlength(r, i, 0), il = PQgetlength(r, i, 2),
        cl = PQgetlength(r, i, 4);
    if (PQgetlength(r, i, 1) != 32 || PQgetlength(r, i, 3) != 8 ||
        kl >= (int)sizeof key || il >= (int)sizeof id ||
        cl >= (int)sizeof code)
      continue; /* altered by hand: skipped, not trusted */
    memcpy(key, PQgetvalue(r, i, 0), (size_t)kl);
    key[kl] = '\0';
    memcpy(id, PQgetvalue(r, i, 2), (size_t)il);
    id[il] = '\0';
    memcpy(code, PQgetvalue(r, i, 4), (size_t)cl);
    code[cl] = '\0';
    k.key = key;
    k.digest = (const uint8_t *)PQgetvalue(r, i, 1);
    k.decision_id = id;
    k.received_ms = (int64_t)be64(PQgetvalue(r, i, 3));
    k.code = PQgetisnull(r, i, 4) ? 0 : vd_err_from_name(code);
    k.answer = PQgetvalue(r, i, 5);
    k.answer_len = (size_t)PQgetlength(r, i, 5);
    if (!PQgetisnull(r, i, 4) && k.code == 0)
      continue;
    cb(&k, arg);
  }
  PQclear(r);
out:
  pthread_mutex_unlock(&h->aux_mu);
  return rc;
}

/* Delete some of the node's keys received before BEFORE_MS (writer
 * thread, between batches). */
static int pg_idem_sweep(vd_history_t *h, int64_t before_ms, vd_buf_t *err) {
  pg_state_t *s = h->be_state;
  char before[24];
  const char *v[2] = {h->node, before};
  PGresult *r;
  int rc = 0;
  if (PQstatus(s->conn) != CONNECTION_OK)
    return 0; /* the next batch reconnects; the next sweep deletes */
  snprintf(before, sizeof before, "%" PRId64, before_ms);
  r = exec_params(s->conn, "DELETE FROM idempotency WHERE node_id = $1"
                  " AND key IN (SELECT key FROM idempotency"
                  " WHERE node_id = $1 AND received_ms < $2::bigint"
                  " LIMIT 5000)", 2, v);
  rc = res_done(r, PGRES_COMMAND_OK, err, s->where, s->conn,
                "deleting expired idempotency keys");
  return rc;
}

static int pg_record_activation(vd_history_t *h, const char *revision,
                                const char *trigger, const char *who,
                                const char *source_dir, int ok,
                                const char *error, char **errmsg) {
  int64_t now = vd_now_ms();
  char at[32];
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  return pg_activation(h, now, at, revision, trigger, who, source_dir, ok,
                       error, 0, errmsg);
}

int vd_hist_pg_import_activation(vd_history_t *h,
                                 const vd_history_activation_t *a,
                                 char **errmsg) {
  if (h->be != &vd_hist_pg_backend) {
    if (errmsg)
      *errmsg = strdup("history: activations are imported into a "
                       "PostgreSQL history");
    return VD_EINVALID;
  }
  return pg_activation(h, a->at_ms, a->at, a->revision, a->trigger, a->who,
                       a->source_dir, a->ok, a->error, 1, errmsg);
}

const vd_hist_backend_t vd_hist_pg_backend = {
    "postgresql", pg_open, pg_write_batch, pg_close, pg_store_revision,
    pg_record_activation, pg_idem_load, pg_idem_sweep,
    NULL, /* after_batch: no WAL to bound */
    pg_probe,
};

/* ========================================================================
 * Facts (vd_history_reader_t's PostgreSQL side)
 * ====================================================================== */

/* The questions of history_facts.c in PostgreSQL's SQL, one per
 * statement, parameters $1, $2 bytea, $3 since_ms, $4 until_ms.  The JSON
 * of a successful decision was parsed by the daemon, so it converts. */
static const char *const facts_sql[] = {
    /* 0: customer_decisions with a kind */
    "SELECT count(*) FROM decisions WHERE customer_id = $1 AND kind = $2"
    " AND at_ms >= $3 AND at_ms < $4 AND error_code IS NULL",
    /* 1: customer_decisions of any kind ($2 unused) */
    "SELECT count(*) FROM decisions WHERE customer_id = $1"
    " AND at_ms >= $3 AND at_ms < $4 AND error_code IS NULL"
    " AND $2::bytea IS NOT DISTINCT FROM $2::bytea",
    /* 2: similar_customers */
    "SELECT count(DISTINCT customer_id) FROM decisions WHERE region = $1"
    " AND category = $2 AND at_ms >= $3 AND at_ms < $4"
    " AND error_code IS NULL",
    /* 3: VD_COMPLAINTS_REPEAT */
    "SELECT count(*) FROM"
    " (SELECT DISTINCT complaint_id AS id FROM decisions"
    "   WHERE customer_id = $1 AND at_ms >= $3 AND at_ms < $4"
    "     AND error_code IS NULL AND complaint_id <> $2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND at_ms < $4"
    "          AND error_code IS NULL) >= $3",
    /* 4: VD_COMPLAINTS_OVER_HEAD */
    "SELECT count(*) FROM"
    " (SELECT complaint_id AS id FROM decisions"
    "   WHERE customer_id = $1 AND at_ms < $4 AND error_code IS NULL"
    "  UNION SELECT $2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND kind = 'appeal'::bytea"
    "          AND at_ms < $4 AND error_code IS NULL"
    "          AND coalesce(convert_from(request, 'UTF8')::json"
    "               -> 'input' ->> 'appellant_is_party', '')"
    "              NOT IN ('false', '0')) >= $3",
    /* 5: VD_COMPLAINTS_REFUNDED */
    "SELECT count(*) FROM"
    " (SELECT complaint_id AS id FROM decisions"
    "   WHERE customer_id = $1 AND at_ms < $4 AND error_code IS NULL"
    "  UNION SELECT $2) AS mine"
    " WHERE (SELECT min(at_ms) FROM decisions"
    "        WHERE complaint_id = mine.id AND kind = 'compensation'::bytea"
    "          AND at_ms < $4 AND error_code IS NULL"
    "          AND CASE WHEN json_typeof(convert_from(result, 'UTF8')::json"
    "                                    -> 'offer_fen') = 'number'"
    "              THEN (convert_from(result, 'UTF8')::json"
    "                    ->> 'offer_fen')::numeric END > 0) >= $3",
};

#define NFACTS_SQL (sizeof facts_sql / sizeof facts_sql[0])

struct vd_hist_pg_reader {
  PGconn *conn;
  char where[256];
  char *db;
  int prepared;
};

void vd_hist_pg_reader_close(vd_hist_pg_reader_t *r) {
  if (!r)
    return;
  PQfinish(r->conn);
  free(r->db);
  free(r);
}

static int reader_prepare(vd_hist_pg_reader_t *r, vd_buf_t *err) {
  static const unsigned types[4] = {BYTEAOID, BYTEAOID, INT8OID, INT8OID};
  size_t i;
  for (i = 0; i < NFACTS_SQL; i++) {
    char name[16];
    PGresult *res;
    int rc = 0;
    snprintf(name, sizeof name, "fact%zu", i);
    res = pq_prepare(r->conn, name, facts_sql[i], 4, types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
      rc = res_err(err, r->where, res, r->conn, "preparing the facts queries");
    PQclear(res);
    if (rc)
      return rc;
  }
  r->prepared = 1;
  return 0;
}

int vd_hist_pg_reader_open(vd_hist_pg_reader_t **out, const char *db,
                           vd_buf_t *err) {
  vd_hist_pg_reader_t *r = calloc(1, sizeof *r);
  int rc;
  *out = NULL;
  if (!r || !(r->db = strdup(db))) {
    free(r);
    return VD_ENOMEM;
  }
  rc = open_ro(&r->conn, db, "verdict facts", r->where, sizeof r->where, err);
  if (rc == 0)
    rc = reader_prepare(r, err);
  if (rc) {
    vd_hist_pg_reader_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

int vd_hist_pg_count(vd_hist_pg_reader_t *r, int which, const char *a,
                     const char *b, int64_t since_ms, int64_t until_ms,
                     int64_t *count, vd_buf_t *err) {
  char since[8], until[8], name[16];
  const char *v[4] = {a, b, since, until};
  int lens[4] = {a ? (int)strlen(a) : 0, b ? (int)strlen(b) : 0, 8, 8};
  static const int fmts[4] = {1, 1, 1, 1};
  PGresult *res;
  int rc = 0;
  if (which < 0 || (size_t)which >= NFACTS_SQL)
    return VD_EINVALID;
  /* a connection lost (the database restarted): once more, afresh */
  if (PQstatus(r->conn) != CONNECTION_OK || !r->prepared) {
    pq_reset(r->conn);
    r->prepared = 0;
    if (PQstatus(r->conn) != CONNECTION_OK)
      return conn_err(err, r->where, r->conn, "reconnecting");
    rc = reader_prepare(r, err);
    if (rc)
      return rc;
  }
  put64(since, (uint64_t)since_ms);
  put64(until, (uint64_t)until_ms);
  snprintf(name, sizeof name, "fact%d", which);
  res = pq_exec_prepared(r->conn, name, 4, v, lens, fmts, 1);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
      PQgetlength(res, 0, 0) != 8)
    rc = res_err(err, r->where, res, r->conn, "counting decisions");
  else
    *count = (int64_t)be64(PQgetvalue(res, 0, 0));
  PQclear(res);
  return rc;
}

/* ========================================================================
 * Reading decisions back (the rows of history_query.c)
 * ====================================================================== */

struct vd_hist_pg_rows {
  PGconn *conn;
  PGresult *res;   /* the row in hand */
  char where[256];
  int done;
  vd_history_value_t row[VD_HISTORY_NCOLUMNS];
  char num[VD_HISTORY_NCOLUMNS][24]; /* integers' decimal text */
  char node[64];   /* the row in hand's node_id */
  vd_buf_t err;
};

/* The filter as SQL after "WHERE true", its parameters (text) in V. */
/* Every field of vd_history_filter_t, as history_query.c's add_filter()
 * reads them for a SQLite file, with the values as text parameters in V
 * (numbers written into NUM); the number of parameters.  A node's seq is
 * its node_seq: the newest-first cursor (before_ms, before_seq) is a
 * row's (received_ms, node_seq), and the rows of one millisecond are
 * ordered by node_seq then node_id, so a page boundary between two nodes'
 * rows of the same millisecond and the same node_seq can drop one of them
 * (the console's "Older decisions" link carries no node). */
#define PG_FILTER_NUMS 8
#define PG_FILTER_PARAMS 16
static int add_filter(vd_buf_t *sql, const vd_history_filter_t *f,
                      char num[PG_FILTER_NUMS][24], const char **v) {
  int k = 0;
#define PG_NUM_(i, value, cond)                                              \
  do {                                                                       \
    snprintf(num[i], 24, "%" PRId64, (int64_t)(value));                      \
    v[k++] = num[i];                                                         \
    vd_buf_addf(sql, " AND " cond " $%d", k);                                \
  } while (0)
  if (f->has_seq) {
    PG_NUM_(0, f->seq_lo, "node_seq >=");
    PG_NUM_(1, f->seq_hi, "node_seq <");
  }
  if (f->has_since)
    PG_NUM_(2, f->since_ms, "received_ms >=");
  if (f->has_until)
    PG_NUM_(3, f->until_ms, "received_ms <");
  if (f->has_at_since)
    PG_NUM_(4, f->at_since_ms, "at_ms >=");
  if (f->has_at_until)
    PG_NUM_(5, f->at_until_ms, "at_ms <");
  if (f->newest_first && f->has_before) {
    snprintf(num[6], 24, "%" PRId64, f->before_ms);
    snprintf(num[7], 24, "%" PRId64, f->before_seq);
    v[k++] = num[6];
    v[k++] = num[7];
    vd_buf_addf(sql, " AND (received_ms, node_seq) < ($%d::bigint,"
                     " $%d::bigint)", k - 1, k);
  }
#undef PG_NUM_
#define PG_FILTER_(field)                                                    \
  if (f->field) {                                                            \
    v[k++] = f->field;                                                       \
    vd_buf_addf(sql, " AND " #field " = convert_to($%d, 'UTF8')", k);        \
  }
  PG_FILTER_(revision)
  if (f->error_code && (!*f->error_code || !strcmp(f->error_code, "none")))
    vd_buf_adds(sql, " AND error_code IS NULL");
  else
    PG_FILTER_(error_code)
  PG_FILTER_(region)
  PG_FILTER_(kind)
  PG_FILTER_(complaint_id)
  PG_FILTER_(decision_id)
  PG_FILTER_(customer_id)
#undef PG_FILTER_
  return k;
}

/* A reader of decisions (a rows cursor, a finder): *C connected to DB as
 * APP with the schema checked, and SQL begun "SELECT <node_id, node_seq,
 * the columns, hash> FROM decisions WHERE ", for the caller to end. */
static int decisions_reader(PGconn **c, const char *db, const char *app,
                            char *where, size_t wn, vd_buf_t *sql,
                            vd_buf_t *err) {
  int rc = open_ro(c, db, app, where, wn, err);
  if (rc == 0) {
    vd_buf_adds(sql, "SELECT ");
    add_columns(sql);
    vd_buf_adds(sql, " FROM decisions WHERE ");
  }
  return rc;
}

void vd_hist_pg_rows_close(vd_hist_pg_rows_t *r) {
  if (!r)
    return;
  PQclear(r->res);
  /* rows still coming: drop the connection rather than read them, or
   * PQcancel(), which waits on the postmaster without a deadline (see
   * "Round trips with a deadline"); the server ends the query when its
   * next row finds the client gone, or at client_connection_check_interval */
  if (r->conn && !r->done && PQsocket(r->conn) >= 0)
    (void)shutdown(PQsocket(r->conn), SHUT_RDWR);
  PQfinish(r->conn);
  vd_buf_release(&r->err);
  free(r);
}

int vd_hist_pg_rows_open(vd_hist_pg_rows_t **out, const char *db,
                         const vd_history_filter_t *filter, vd_buf_t *err) {
  vd_hist_pg_rows_t *r = calloc(1, sizeof *r);
  vd_buf_t sql = VD_BUF_INIT;
  char num[PG_FILTER_NUMS][24], lim[24];
  const char *v[PG_FILTER_PARAMS];
  int k, rc;
  *out = NULL;
  if (!r)
    return VD_ENOMEM;
  rc = decisions_reader(&r->conn, db, "verdict history", r->where,
                        sizeof r->where, &sql, err);
  if (rc) {
    vd_hist_pg_rows_close(r);
    return rc;
  }
  vd_buf_adds(&sql, "true");
  k = add_filter(&sql, filter, num, v);
  vd_buf_adds(&sql, filter->newest_first
                        ? " ORDER BY received_ms DESC, node_seq DESC,"
                          " node_id DESC"
                        : " ORDER BY received_ms, node_id, node_seq");
  if (filter->has_limit) {
    snprintf(lim, sizeof lim, "%" PRId64, filter->limit);
    v[k++] = lim;
    vd_buf_addf(&sql, " LIMIT $%d", k);
  }
  if (!PQsendQueryParams(r->conn, sql.data, k, NULL, v, NULL, NULL, 1) ||
      !PQsetSingleRowMode(r->conn))
    rc = conn_err(err, r->where, r->conn, "reading decisions");
  vd_buf_release(&sql);
  if (rc) {
    vd_hist_pg_rows_close(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* vd_history_split() on PostgreSQL: a node's seq is its own, so the
 * ranges are of received_ms, the first key of the rows' order (received_ms,
 * node_id, node_seq): bounds[i] is the (i/n)-quantile of the selection's
 * received_ms (percentile_disc: a value a row has), so the rows of one
 * millisecond are never cut apart, and ranges in order hold the rows in
 * order.  One statement: it counts the selection and sorts its received_ms
 * (the received_ms index of each partition where the filter allows). */
int vd_hist_pg_split(const char *db, const vd_history_filter_t *filter,
                     int n, int64_t *bounds, int64_t *total,
                     vd_buf_t *err) {
  PGconn *c = NULL;
  PGresult *r;
  vd_buf_t cond = VD_BUF_INIT, sql = VD_BUF_INIT, frac = VD_BUF_INIT;
  char num[PG_FILTER_NUMS][24], where[256];
  const char *v[PG_FILTER_PARAMS + 1], *p;
  int k, i, rc = open_ro(&c, db, "verdict replay", where, sizeof where, err);
  if (rc)
    return rc;
  k = add_filter(&cond, filter, num, v);
  vd_buf_adds(&frac, "{");
  for (i = 1; i < n; i++)
    vd_buf_addf(&frac, "%s%.17g", i > 1 ? "," : "", (double)i / n);
  vd_buf_adds(&frac, "}");
  v[k++] = frac.data;
  vd_buf_addf(&sql, "SELECT count(*), percentile_disc($%d::float8[]) WITHIN"
                    " GROUP (ORDER BY received_ms) FROM decisions WHERE true",
              k);
  vd_buf_add(&sql, cond.data ? cond.data : "", cond.len);
  r = pq_exec_params(c, sql.data, k, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    rc = res_done(r, PGRES_TUPLES_OK, err, where, c, "splitting decisions");
    if (!rc) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: splitting decisions: no row", where);
      rc = VD_EIO;
    }
    goto out;
  }
  if (total)
    *total = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  bounds[0] = INT64_MIN;
  p = PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1);
  for (i = 1; i < n; i++) {
    /* "{q1,q2,...}"; no rows: NULL, every range but the first empty */
    if (p && (*p == '{' || *p == ',')) {
      char *end;
      bounds[i] = strtoll(p + 1, &end, 10);
      p = end;
    } else {
      bounds[i] = INT64_MAX;
    }
  }
  bounds[n] = INT64_MAX;
  PQclear(r);
out:
  PQfinish(c);
  vd_buf_release(&cond);
  vd_buf_release(&sql);
  vd_buf_release(&frac);
  return rc;
}

/* One column of a binary result row as a value: int8 to its number and
 * decimal text, anything else its bytes. */
static void bin_value(PGresult *res, int col, char *scratch,
                      vd_history_value_t *v) {
  memset(v, 0, sizeof *v);
  if (PQgetisnull(res, 0, col))
    return;
  if (PQftype(res, col) == INT8OID) {
    v->i = (int64_t)be64(PQgetvalue(res, 0, col));
    v->is_int = 1;
    snprintf(scratch, 24, "%" PRId64, v->i);
    v->text = scratch;
    v->len = strlen(scratch);
  } else {
    v->text = PQgetvalue(res, 0, col);
    v->len = (size_t)PQgetlength(res, 0, col);
  }
}

/* A result row of decisions_reader()'s columns (node_id, node_seq, the
 * columns, hash) as the public row: seq (the node's), the columns, hash;
 * integers' text in NUM. */
static void row_values(PGresult *res, vd_history_value_t *row,
                       char num[][24]) {
  int i;
  for (i = 0; i < VD_HISTORY_NCOLUMNS; i++)
    bin_value(res, i + 1, num[i], &row[i]);
}

int vd_hist_pg_rows_next(vd_hist_pg_rows_t *r,
                         const vd_history_value_t **row) {
  ExecStatusType s;
  *row = NULL;
  PQclear(r->res);
  r->res = NULL;
  if (r->done)
    return 0;
  r->res = pq_next(r->conn);
  s = PQresultStatus(r->res);
  if (!r->res || s == PGRES_TUPLES_OK) {
    PGresult *more;
    r->done = 1;
    PQclear(r->res);
    r->res = NULL;
    while ((more = pq_next(r->conn)))
      PQclear(more);
    return 0;
  }
  if (s != PGRES_SINGLE_TUPLE) {
    res_err(&r->err, r->where, r->res, r->conn, "reading decisions");
    r->done = 1;
    return VD_EIO;
  }
  row_values(r->res, r->row, r->num);
  snprintf(r->node, sizeof r->node, "%.*s", PQgetlength(r->res, 0, 0),
           PQgetvalue(r->res, 0, 0));
  *row = r->row;
  return 1;
}

/* One decision by id on a kept connection (vd_history_finder_t). */
struct vd_hist_pg_finder {
  PGconn *conn;
  PGresult *res;   /* the row last found */
  char where[256];
  char *sql;
  vd_history_value_t row[VD_HISTORY_NCOLUMNS];
  char num[VD_HISTORY_NCOLUMNS][24];
};

int vd_hist_pg_finder_open(vd_hist_pg_finder_t **out, const char *db,
                           vd_buf_t *err) {
  vd_hist_pg_finder_t *f = calloc(1, sizeof *f);
  vd_buf_t sql = VD_BUF_INIT;
  int rc;
  *out = NULL;
  if (!f)
    return VD_ENOMEM;
  rc = decisions_reader(&f->conn, db, "verdictd lookup", f->where,
                        sizeof f->where, &sql, err);
  if (rc) {
    vd_hist_pg_finder_close(f);
    return rc;
  }
  vd_buf_adds(&sql, "decision_id = $1"
                    " ORDER BY received_ms, node_id, node_seq LIMIT 1");
  f->sql = vd_buf_detach(&sql, NULL);
  if (!f->sql) {
    vd_hist_pg_finder_close(f);
    return VD_ENOMEM;
  }
  *out = f;
  return 0;
}

int vd_hist_pg_find(vd_hist_pg_finder_t *f, const char *decision_id,
                    const vd_history_value_t **row, vd_buf_t *err) {
  const char *v[1] = {decision_id};
  int lens[1] = {(int)strlen(decision_id)}, fmts[1] = {1};
  *row = NULL;
  PQclear(f->res);
  f->res = NULL;
  if (PQstatus(f->conn) != CONNECTION_OK) { /* lost, or dropped: afresh */
    pq_reset(f->conn);
    if (PQstatus(f->conn) != CONNECTION_OK)
      return conn_err(err, f->where, f->conn, "reconnecting");
  }
  /* decision_id is bytea: the id's bytes, sent as they are */
  f->res = pq_exec_params(f->conn, f->sql, 1, NULL, v, lens, fmts, 1);
  if (PQresultStatus(f->res) != PGRES_TUPLES_OK) {
    res_err(err, f->where, f->res, f->conn, "looking a decision up");
    return VD_EIO;
  }
  if (PQntuples(f->res) == 0)
    return 0;
  row_values(f->res, f->row, f->num);
  *row = f->row;
  return 1;
}

void vd_hist_pg_finder_close(vd_hist_pg_finder_t *f) {
  if (!f)
    return;
  PQclear(f->res);
  PQfinish(f->conn);
  free(f->sql);
  free(f);
}

const char *vd_hist_pg_rows_node(const vd_hist_pg_rows_t *r) {
  return r->res ? r->node : NULL;
}

const char *vd_hist_pg_rows_errmsg(const vd_hist_pg_rows_t *r) {
  return r->err.data ? r->err.data : "";
}

/* ========================================================================
 * Revisions, for replay, the admin channel and verify
 * ====================================================================== */

/* REVISION's files from C, each blob checked, as vd_hist_load_files()
 * reads them from SQLite. */
static int load_files(PGconn *c, const char *where, const char *revision,
                      vd_bundle_file_t **files, size_t *nfiles,
                      vd_buf_t *err) {
  const char *v[1] = {revision};
  vd_bundle_file_t *out = NULL;
  PGresult *r;
  int i, n, rc = 0;
  long expect;
  *files = NULL;
  *nfiles = 0;
  r = exec_params(c, "SELECT files FROM revisions WHERE revision = $1", 1, v);
  if ((rc = rows_ok(r, err, where, c, "looking up a revision")) != 0)
    return rc;
  if (PQntuples(r) != 1) {
    PQclear(r);
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: no revision %s", where, revision);
    return VD_ENOT_FOUND;
  }
  expect = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  r = pq_exec_params(c, "SELECT f.path, f.blob, b.data FROM revision_files f"
                      " LEFT JOIN blobs b ON b.sha256 = f.blob"
                      " WHERE f.revision = $1 ORDER BY f.path COLLATE \"C\"",
                   1, NULL, v, NULL, NULL, 1);
  if ((rc = rows_ok(r, err, where, c, "reading a revision")) != 0)
    return rc;
  n = PQntuples(r);
  out = calloc(n ? (size_t)n : 1, sizeof *out);
  if (!out) {
    PQclear(r);
    return VD_ENOMEM;
  }
  for (i = 0; rc == 0 && i < n; i++) {
    size_t len = (size_t)PQgetlength(r, i, 2);
    const char *blob = PQgetvalue(r, i, 1);
    char sha[65];
    vd_buf_reset(err);
    if (PQgetisnull(r, i, 2)) {
      vd_buf_addf(err, "revision %s: file %s: blob %s is missing", revision,
                  PQgetvalue(r, i, 0), blob);
      rc = VD_EINVALID;
      break;
    }
    vd_hist_sha256_hex(PQgetvalue(r, i, 2), len, sha);
    if (strcmp(sha, blob) != 0) {
      vd_buf_addf(err, "revision %s: file %s: blob %s has been altered "
                       "(its contents hash to %s)",
                  revision, PQgetvalue(r, i, 0), blob, sha);
      rc = VD_EINVALID;
      break;
    }
    out[i].path = strndup(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    out[i].data = malloc(len + 1);
    out[i].len = len;
    if (!out[i].path || !out[i].data) {
      rc = VD_ENOMEM;
      i++;
      break;
    }
    memcpy(out[i].data, PQgetvalue(r, i, 2), len);
    out[i].data[len] = '\0';
  }
  PQclear(r);
  if (rc == 0 && n != expect) {
    vd_buf_reset(err);
    vd_buf_addf(err, "revision %s: %d files stored, %ld expected", revision,
                n, expect);
    rc = VD_EINVALID;
  }
  if (rc) {
    vd_history_free_files(out, (size_t)(rc == 0 ? n : i));
    return rc;
  }
  *files = out;
  *nfiles = (size_t)n;
  return 0;
}

int vd_hist_pg_load_revision(const char *db, const char *revision,
                             vd_bundle_file_t **files, size_t *nfiles,
                             vd_buf_t *err) {
  char where[256];
  PGconn *c;
  int rc = open_ro(&c, db, "verdict", where, sizeof where, err);
  if (rc)
    return rc;
  rc = load_files(c, where, revision, files, nfiles, err);
  PQfinish(c);
  return rc;
}

int vd_hist_pg_revisions_json(const char *db, vd_buf_t *out, vd_buf_t *err) {
  static const char *const cols[] = {"at", "revision", "trigger", "who",
                                     "source", "ok", "error", "node"};
  char where[256];
  PGconn *c;
  PGresult *r;
  int rc = open_ro(&c, db, "verdict", where, sizeof where, err), i, j;
  if (rc)
    return VD_EIO;
  vd_buf_adds(out, "\"activations\":[");
  r = pq_exec(c, "SELECT at, revision, cause, who, source_dir, ok, error,"
                " node_id FROM activations ORDER BY at_ms DESC, node_id,"
                " id DESC LIMIT 200");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    rc = res_err(err, where, r, c, "reading activations");
  for (i = 0; rc == 0 && i < PQntuples(r); i++) {
    vd_buf_adds(out, i ? ",{" : "{");
    for (j = 0; j < 8; j++) {
      vd_buf_addf(out, "%s\"%s\":", j ? "," : "", cols[j]);
      if (j == 5)
        vd_buf_adds(out, strcmp(PQgetvalue(r, i, j), "0") ? "true" : "false");
      else if (PQgetisnull(r, i, j))
        vd_buf_adds(out, "null");
      else
        vd_buf_add_json_str(out, PQgetvalue(r, i, j),
                            (size_t)PQgetlength(r, i, j));
    }
    vd_buf_addc(out, '}');
  }
  PQclear(r);
  vd_buf_adds(out, "],\"revisions\":[");
  if (rc == 0) {
    r = pq_exec(c, "SELECT revision, stored_ms, files, bytes FROM revisions"
                  " ORDER BY stored_ms DESC, revision");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
      rc = res_err(err, where, r, c, "reading revisions");
    for (i = 0; rc == 0 && i < PQntuples(r); i++) {
      char ts[32];
      vd_time_format(strtoll(PQgetvalue(r, i, 1), NULL, 10),
                     VD_DEFAULT_OFFSET_MIN, ts);
      vd_buf_addf(out, "%s{\"revision\":\"%s\",\"stored_at\":\"%s\","
                       "\"files\":%s,\"bytes\":%s}",
                  i ? "," : "", PQgetvalue(r, i, 0), ts, PQgetvalue(r, i, 2),
                  PQgetvalue(r, i, 3));
    }
    PQclear(r);
  }
  vd_buf_adds(out, "],\"tags\":[");
  if (rc == 0) {
    r = pq_exec(c, "SELECT name, revision, who, at FROM revision_tags"
                   " ORDER BY at_ms, name");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
      rc = res_err(err, where, r, c, "reading tags");
    for (i = 0; rc == 0 && i < PQntuples(r); i++) {
      static const char *const tcols[] = {"name", "revision", "who", "at"};
      for (j = 0; j < 4; j++) {
        vd_buf_addf(out, "%s\"%s\":", j ? "," : i ? ",{" : "{", tcols[j]);
        if (PQgetisnull(r, i, j))
          vd_buf_adds(out, "null");
        else
          vd_buf_add_json_str(out, PQgetvalue(r, i, j),
                              (size_t)PQgetlength(r, i, j));
      }
      vd_buf_addc(out, '}');
    }
    PQclear(r);
  }
  vd_buf_addc(out, ']');
  PQfinish(c);
  return rc ? VD_EIO : 0;
}

/* ------------------------------------------------------------------------
 * Naming revisions (vd_history_resolve(), vd_history_tag())
 * ---------------------------------------------------------------------- */

/* The revision the fleet ran N changes ago: first the fleet's revision
 * (fleet_desired), then those it was changed to before, newest first
 * (the successful activations that set it: neither a start-up nor a
 * node following the fleet), then the one it ran before its first
 * change (the newest activation before it: a start-up), a revision
 * repeated in a row counted once. */
static int pg_nth_active(PGconn *c, const char *where, int64_t n,
                         char out[VD_REVISION_NAME_MAX], vd_buf_t *err) {
#define PG_CHANGES_ "FROM activations WHERE ok = 1 AND cause NOT LIKE" \
                    " 'startup%' AND cause <> '" VD_HISTORY_FLEET_TRIGGER "'"
  static const char sql[] =
      "SELECT revision FROM (SELECT 0 AS k, 0::bigint AS at_ms,"
      "  ''::text AS node_id, 0::bigint AS id, revision FROM fleet_desired"
      " UNION ALL SELECT 1, at_ms, node_id, id, revision " PG_CHANGES_
      " UNION ALL (SELECT 2, at_ms, node_id, id, revision FROM activations"
      "  WHERE ok = 1 AND at_ms < coalesce((SELECT min(at_ms) " PG_CHANGES_
      "), 9223372036854775807)"
      "  ORDER BY at_ms DESC, node_id DESC, id DESC LIMIT 1)) AS a"
      " ORDER BY k, at_ms DESC, node_id DESC, id DESC";
#undef PG_CHANGES_
  char last[VD_REVISION_NAME_MAX] = "";
  int64_t seen = -1;
  PGresult *r = pq_exec(c, sql);
  int i;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    int rc = res_err(err, where, r, c, "reading the activations");
    PQclear(r);
    return rc;
  }
  for (i = 0; i < PQntuples(r) && seen < n; i++) {
    const char *rev = PQgetvalue(r, i, 0);
    if (strcmp(rev, last) == 0)
      continue;
    snprintf(last, sizeof last, "%s", rev);
    seen++;
  }
  PQclear(r);
  vd_buf_reset(err);
  if (seen < n) {
    if (seen < 0)
      vd_buf_addf(err, "%s: no revision has been activated yet", where);
    else
      vd_buf_addf(err, "%s: only %" PRId64 " earlier revision%s went live "
                       "in the fleet before the active one", where, seen,
                  seen == 1 ? "" : "s");
    return VD_ENOT_FOUND;
  }
  memcpy(out, last, sizeof last);
  return 0;
}

/* NAME as vd_history_resolve() takes it, on C. */
static int pg_resolve(PGconn *c, const char *where, const char *name,
                      char out[VD_REVISION_NAME_MAX], vd_buf_t *err) {
  char want[VD_REVISION_NAME_MAX];
  int64_t back;
  PGresult *r;
  int rc = 0, i, n, how = vd_hist_name_read(name, &back, want, err);
  out[0] = '\0';
  if (how == VD_HIST_NAME_BACK)
    return pg_nth_active(c, where, back, out, err);
  if (how == VD_HIST_NAME_PREFIX) {
    char len[8];
    const char *v[2] = {want, len};
    snprintf(len, sizeof len, "%zu", strlen(want));
    r = pq_exec_params(c, "SELECT revision FROM revisions WHERE"
                          " left(revision, $2::int) = $1 ORDER BY revision"
                          " COLLATE \"C\" LIMIT 11",
                       2, NULL, v, NULL, NULL, 0);
    if ((rc = rows_ok(r, err, where, c, "looking up a revision")) != 0)
      return rc;
    n = PQntuples(r);
    if (n == 1) {
      snprintf(out, VD_REVISION_NAME_MAX, "%s", PQgetvalue(r, 0, 0));
    } else if (n == 0) {
      vd_buf_addf(err, "%s: no revision %s", where, name);
      rc = VD_ENOT_FOUND;
    } else {
      vd_buf_addf(err, "revision '%s' is ambiguous; it starts:", name);
      for (i = 0; i < n; i++)
        vd_buf_addf(err, "\n  %s", i < 10 ? PQgetvalue(r, i, 0) : "...");
      rc = VD_EINVALID;
    }
    PQclear(r);
    return rc;
  }
  if (how != VD_HIST_NAME_TAG)
    return how;
  vd_buf_reset(err);
  {
    const char *v[1] = {name};
    r = pq_exec_params(c, "SELECT revision FROM revision_tags WHERE name = $1",
                       1, NULL, v, NULL, NULL, 0);
  }
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    rc = res_err(err, where, r, c, "looking up a tag");
  else if (PQntuples(r) == 1)
    snprintf(out, VD_REVISION_NAME_MAX, "%s", PQgetvalue(r, 0, 0));
  else {
    vd_buf_addf(err, "%s: no revision named '%s' (a hash prefix, active, "
                     "previous, @-N or a tag)", where, name);
    rc = VD_ENOT_FOUND;
  }
  PQclear(r);
  return rc;
}

int vd_hist_pg_resolve(const char *db, const char *name,
                       char out[VD_REVISION_NAME_MAX], vd_buf_t *err) {
  char where[256];
  PGconn *c;
  int rc = open_ro(&c, db, "verdict", where, sizeof where, err);
  out[0] = '\0';
  if (rc)
    return rc;
  rc = pg_resolve(c, where, name, out, err);
  PQfinish(c);
  return rc;
}

int vd_hist_pg_tag(const char *db, const char *name, const char *tag,
                   const char *who, char out[VD_REVISION_NAME_MAX],
                   vd_buf_t *err) {
  int64_t now = vd_now_ms();
  char where[256], at[32], nowt[24];
  PGconn *c;
  PGresult *r;
  int rc = open_ro(&c, db, "verdict", where, sizeof where, err);
  out[0] = '\0';
  if (rc)
    return rc;
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  snprintf(nowt, sizeof nowt, "%" PRId64, now);
  rc = pg_resolve(c, where, name, out, err);
  if (rc == 0) {
    const char *v[5] = {tag, out, who, nowt, at};
    r = pq_exec_params(c, "INSERT INTO revision_tags VALUES ($1, $2, $3, $4,"
                          " $5) ON CONFLICT (name) DO NOTHING",
                       5, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      rc = res_err(err, where, r, c, "tagging a revision");
    else if (strcmp(PQcmdTuples(r), "0") == 0)
      rc = VD_EINVALID; /* taken: a tag names one revision for good */
    PQclear(r);
  }
  if (rc == VD_EINVALID) {
    const char *v[1] = {tag};
    r = pq_exec_params(c, "SELECT revision, who, at FROM revision_tags"
                          " WHERE name = $1", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
      rc = res_err(err, where, r, c, "tagging a revision");
    } else {
      vd_buf_reset(err);
      vd_buf_addf(err, "tag '%s' already names %s (given by %s at %s)", tag,
                  PQgetvalue(r, 0, 0),
                  PQgetisnull(r, 0, 1) ? "?" : PQgetvalue(r, 0, 1),
                  PQgetvalue(r, 0, 2));
    }
    PQclear(r);
  }
  PQfinish(c);
  if (rc)
    out[0] = '\0';
  return rc;
}

/* ========================================================================
 * Fleet status
 * ====================================================================== */

int vd_history_fleet_status(const char *db, vd_buf_t *out, vd_buf_t *err) {
  char where[256];
  PGconn *c;
  PGresult *r;
  int rc = open_ro(&c, db, "verdict", where, sizeof where, err), i;
  if (rc)
    return rc;
  r = pq_exec(c, "SELECT s.node_id, s.revision, s.activated_ms, s.last_error,"
                "  s.heartbeat_ms, h.seq, s.verdict"
                " FROM node_status s LEFT JOIN node_heads h USING (node_id)"
                " ORDER BY s.node_id COLLATE \"C\"");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    rc = res_err(err, where, r, c, "reading node_status");
  vd_buf_adds(out, "[");
  for (i = 0; rc == 0 && i < PQntuples(r); i++) {
    int j;
    static const char *const names[] = {"node", "revision", "activated_ms",
                                        "last_error", "heartbeat_ms",
                                        "decisions", "verdict"};
    vd_buf_adds(out, i ? ",{" : "{");
    for (j = 0; j < 7; j++) {
      vd_buf_addf(out, "%s\"%s\":", j ? "," : "", names[j]);
      if (PQgetisnull(r, i, j))
        vd_buf_adds(out, "null");
      else if (j == 2 || j == 4 || j == 5)
        vd_buf_adds(out, PQgetvalue(r, i, j));
      else
        vd_buf_add_json_str(out, PQgetvalue(r, i, j),
                            (size_t)PQgetlength(r, i, j));
    }
    vd_buf_addc(out, '}');
  }
  vd_buf_adds(out, "]");
  PQclear(r);
  PQfinish(c);
  return rc;
}

/* ========================================================================
 * Verification of every node's chain
 * ====================================================================== */

/* Walk NODE's decisions in node_seq order in C's snapshot: as
 * verify_chain() in history_chain.c, per node.  HEAD is node_heads' row;
 * A the node's anchor or NULL. */
static int verify_node(PGconn *c, const char *where,
                       vd_history_node_head_t *head,
                       const vd_history_node_anchor_t *a,
                       vd_verify_report_t *rep, vd_buf_t *err) {
  vd_buf_t sql = VD_BUF_INIT;
  const char *v[1] = {head->node};
  uint8_t prev[32] = {0}, cur[32];
  int64_t expect = 1, head_seq = head->seq, v2_from = INT64_MAX;
  char head_hash[65], last[65] = VD_HIST_ZERO_HASH;
  PGresult *r;
  int rc = 0;
  memcpy(head_hash, head->hash, sizeof head_hash);
  /* where the node's "vn2" records begin (none: all are "vn1") */
  r = exec_params(c, "SELECT v2_from FROM node_formats WHERE node_id = $1",
                  1, v);
  if ((rc = rows_ok(r, err, where, c, "reading node_formats")) != 0)
    return rc;
  if (PQntuples(r) == 1)
    v2_from = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  vd_buf_adds(&sql, "SELECT ");
  add_columns(&sql);
  vd_buf_adds(&sql, ", personal_salt, personal_digest FROM decisions"
                    " WHERE node_id = $1 ORDER BY node_seq");
  if (!PQsendQueryParams(c, sql.data, 1, NULL, v, NULL, NULL, 1) ||
      !PQsetSingleRowMode(c)) {
    vd_buf_release(&sql);
    return conn_err(err, where, c, "reading decisions");
  }
  vd_buf_release(&sql);
  head->seq = 0;
  while ((r = pq_next(c))) {
    vd_hist_field_t f[NCOLS];
    char hex[65], id[64] = "", nums[NCOLS][24];
    int64_t seq;
    int i;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      PQclear(r);
      continue;
    }
    if (PQresultStatus(r) != PGRES_SINGLE_TUPLE) {
      if (!rc)
        rc = res_err(err, where, r, c, "reading decisions");
      PQclear(r);
      continue;
    }
    if (rc) { /* drain after a problem */
      PQclear(r);
      continue;
    }
    seq = (int64_t)be64(PQgetvalue(r, 0, 1));
    if (!PQgetisnull(r, 0, 2))
      snprintf(id, sizeof id, "%.*s", PQgetlength(r, 0, 2),
               PQgetvalue(r, 0, 2));
    /* retention: rows up to the anchor are gone, and the kept segment
     * must continue from it */
    if (expect == 1 && a && a->seq >= 1 && seq == a->seq + 1 &&
        vd_hist_from_hex(a->hash, 64, prev) == 0) {
      expect = seq;
      head->start = a->seq;
    }
    if (seq > head_seq || seq < expect) {
      vd_hist_verify_report(rep, VD_VERIFY_INSERTED, seq, id,
          "node %s: row node_seq %" PRId64 " (decision %s) was inserted: "
          "it is outside the node's chain, which ends at %" PRId64,
          head->node, seq, *id ? id : "NULL", head_seq);
      rc = VD_EINVALID;
    } else if (seq > expect) {
      vd_hist_verify_report(rep, VD_VERIFY_DELETED, expect, id,
          "node %s: rows node_seq %" PRId64 "..%" PRId64 " were deleted: "
          "the chain jumps to %" PRId64 " (decision %s)",
          head->node, expect, seq - 1, seq, *id ? id : "NULL");
      rc = VD_EINVALID;
    } else {
      vd_history_value_t val;
      char digest[65];
      int check = VD_HIST_PERSONAL_SALTED;
      for (i = 0; i < NCOLS; i++) {
        bin_value(r, i + 2, nums[i], &val);
        f[i] = (vd_hist_field_t){val.is_int ? NULL : val.text, val.len,
                                 val.i, val.is_int};
      }
      if (seq < v2_from) {
        vd_hist_node_hash(prev, 0, head->node, seq, f, NCOLS, cur);
      } else {
        /* the personal part from its salt, or as an erasure kept it */
        const char *salt = PQgetisnull(r, 0, NCOLS + 3)
                               ? NULL : PQgetvalue(r, 0, NCOLS + 3);
        const char *kept = PQgetisnull(r, 0, NCOLS + 4)
                               ? NULL : PQgetvalue(r, 0, NCOLS + 4);
        check = vd_hist_personal_check(
            f, salt, (size_t)PQgetlength(r, 0, NCOLS + 3), kept,
            (size_t)PQgetlength(r, 0, NCOLS + 4), digest);
        vd_hist_node_hash_v2(prev, head->node, seq, f, digest, cur);
      }
      vd_hist_to_hex(cur, sizeof cur, hex);
      if (check == VD_HIST_PERSONAL_DIFFERS) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "node %s: row node_seq %" PRId64 " (decision %s) was changed: "
            "its personal part hashes to %.16s..., its personal_digest "
            "says %.16s...", head->node, seq, *id ? id : "NULL", digest,
            PQgetvalue(r, 0, NCOLS + 4));
        rc = VD_EINVALID;
      } else if (check != VD_HIST_PERSONAL_SALTED &&
                 check != VD_HIST_PERSONAL_ERASED) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "node %s: row node_seq %" PRId64 " (decision %s) was changed: "
            "it has %s", head->node, seq, *id ? id : "NULL",
            vd_hist_personal_problem(check));
        rc = VD_EINVALID;
      } else if (PQgetlength(r, 0, NCOLS + 2) != 64 ||
          memcmp(hex, PQgetvalue(r, 0, NCOLS + 2), 64) != 0) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "node %s: row node_seq %" PRId64 " (decision %s) was changed: "
            "its contents hash to %.16s..., the chain recorded %.16s...",
            head->node, seq, *id ? id : "NULL", hex,
            PQgetvalue(r, 0, NCOLS + 2));
        rc = VD_EINVALID;
      } else if (a && seq == a->seq && strcmp(hex, a->hash) != 0) {
        vd_hist_verify_report(rep, VD_VERIFY_CHANGED, seq, id,
            "anchor %s:%" PRId64 ": its hash was %.16s..., it is now "
            "%.16s...: the node's chain was rewritten at or before it",
            head->node, seq, a->hash, hex);
        rc = VD_EINVALID;
      } else {
        memcpy(prev, cur, sizeof prev);
        memcpy(last, hex, sizeof hex);
        head->seq = seq;
        rep->records++;
        if (check == VD_HIST_PERSONAL_ERASED)
          rep->erased++;
        expect++;
      }
    }
    PQclear(r);
  }
  memcpy(head->hash, last, sizeof last);
  if (rc)
    return rc;
  if (expect == 1 && a && a->seq >= 1 && a->seq == head_seq &&
      strcmp(a->hash, head_hash) == 0) {
    /* every row up to the anchor dropped, none written since */
    head->start = head->seq = a->seq;
    memcpy(head->hash, head_hash, sizeof head_hash);
    return 0;
  }
  if (expect - 1 < head_seq) {
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, expect, NULL,
        "node %s: rows node_seq %" PRId64 "..%" PRId64 " at the end were "
        "deleted: the chain ends at %" PRId64,
        head->node, expect, head_seq, head_seq);
    return VD_EINVALID;
  }
  if (strcmp(head_hash, last) != 0) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, head_seq, NULL,
        "node %s: node_heads was changed: it names hash %.16s... for "
        "%" PRId64 ", the row has %.16s...",
        head->node, head_hash, head_seq, last);
    return VD_EINVALID;
  }
  if (a && a->seq > head_seq) {
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, a->seq, NULL,
        "anchor %s:%" PRId64 ": the node's chain now ends at %" PRId64
        ", so records were cut from its tail (and node_heads moved back)",
        head->node, a->seq, head_seq);
    return VD_EINVALID;
  }
  return 0;
}

/* NODE's activations, chained as verify_activations() walks SQLite's. */
static int verify_node_activations(PGconn *c, const char *where,
                                   vd_history_node_head_t *head,
                                   vd_verify_report_t *rep, vd_buf_t *err) {
  const char *v[1] = {head->node};
  uint8_t prev[32] = {0}, cur[32];
  int64_t last_id = 0, expect = 1;
  char head_hash[65] = VD_HIST_ZERO_HASH;
  PGresult *r;
  int i, n, rc = 0;
  r = exec_params(c, "SELECT last_id, hash FROM activation_heads"
                     " WHERE node_id = $1", 1, v);
  if ((rc = rows_ok(r, err, where, c, "reading the activations' heads")) != 0)
    return rc;
  if (PQntuples(r) == 1) {
    last_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(head_hash, sizeof head_hash, "%s", PQgetvalue(r, 0, 1));
  }
  PQclear(r);
  r = pq_exec_params(c, "SELECT id, at_ms, at, revision, cause, who,"
                      " source_dir, ok, error, hash FROM activations"
                      " WHERE node_id = $1 ORDER BY id", 1, NULL, v, NULL,
                   NULL, 1);
  if ((rc = rows_ok(r, err, where, c, "reading activations")) != 0)
    return rc;
  n = PQntuples(r);
  strcpy(head->act_hash, VD_HIST_ZERO_HASH);
  for (i = 0; i < n; i++) {
    int64_t id = (int64_t)be64(PQgetvalue(r, i, 0));
    vd_hist_field_t f[NACOLS];
    char hex[65];
    int j;
    if (id > last_id || id < expect) {
      rep->activation = id;
      vd_hist_verify_report(rep, VD_VERIFY_INSERTED, 0, NULL,
          "node %s: activation %" PRId64 " was inserted: the node's "
          "activations end at %" PRId64, head->node, id, last_id);
      rc = VD_EINVALID;
      break;
    }
    if (id > expect) {
      rep->activation = expect;
      vd_hist_verify_report(rep, VD_VERIFY_DELETED, 0, NULL,
          "node %s: activations %" PRId64 "..%" PRId64 " were deleted",
          head->node, expect, id - 1);
      rc = VD_EINVALID;
      break;
    }
    for (j = 0; j < NACOLS; j++) {
      int col = j + 1;
      if (PQgetisnull(r, i, col))
        f[j] = (vd_hist_field_t){NULL, 0, 0, 0};
      else if (PQftype(r, col) == INT8OID)
        f[j] = (vd_hist_field_t){NULL, 0,
                                 (int64_t)be64(PQgetvalue(r, i, col)), 1};
      else
        f[j] = (vd_hist_field_t){PQgetvalue(r, i, col),
                                 (size_t)PQgetlength(r, i, col), 0, 0};
    }
    vd_hist_node_hash(prev, 1, head->node, id, f, NACOLS, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    if (strcmp(hex, PQgetvalue(r, i, NACOLS + 1)) != 0) {
      rep->activation = id;
      vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
          "node %s: activation %" PRId64 " was changed: its contents "
          "hash to %.16s..., the chain recorded %.16s...",
          head->node, id, hex, PQgetvalue(r, i, NACOLS + 1));
      rc = VD_EINVALID;
      break;
    }
    memcpy(prev, cur, sizeof prev);
    memcpy(head->act_hash, hex, sizeof hex);
    head->activations = id;
    rep->activations++;
    expect++;
  }
  PQclear(r);
  if (rc)
    return rc;
  if (head->activations < last_id) {
    rep->activation = head->activations + 1;
    vd_hist_verify_report(rep, VD_VERIFY_DELETED, 0, NULL,
        "node %s: activations %" PRId64 "..%" PRId64 " at the end were "
        "deleted", head->node, head->activations + 1, last_id);
    return VD_EINVALID;
  }
  if (strcmp(head_hash, head->act_hash) != 0) {
    vd_hist_verify_report(rep, VD_VERIFY_CHANGED, 0, NULL,
        "node %s: activation_heads was changed", head->node);
    return VD_EINVALID;
  }
  return 0;
}

/* Every decision's revision is stored, every stored revision intact. */
static int verify_pg_revisions(PGconn *c, const char *where,
                               vd_verify_report_t *rep, vd_buf_t *err) {
  PGresult *r = pq_exec(c, "SELECT d.node_id, d.node_seq,"
                          " convert_from(d.revision, 'UTF8')"
                          " FROM decisions d WHERE d.revision IS NOT NULL"
                          " AND NOT EXISTS (SELECT 1 FROM revisions v"
                          "  WHERE v.revision ="
                          "        convert_from(d.revision, 'UTF8'))"
                          " LIMIT 1");
  int i, rc = 0;
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = res_err(err, where, r, c, "checking revisions");
  } else if (PQntuples(r) == 1) {
    vd_hist_verify_report(rep, VD_VERIFY_REVISION,
        strtoll(PQgetvalue(r, 0, 1), NULL, 10),
        NULL, "node %s: decision %s names revision %s, which is not in "
        "the database", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
        PQgetvalue(r, 0, 2));
    rc = VD_EINVALID;
  }
  PQclear(r);
  if (rc)
    return rc;
  r = pq_exec(c, "SELECT revision FROM revisions ORDER BY 1");
  if ((rc = rows_ok(r, err, where, c, "reading revisions")) != 0)
    return rc;
  for (i = 0; rc == 0 && i < PQntuples(r); i++) {
    const char *revision = PQgetvalue(r, i, 0);
    vd_bundle_file_t *files;
    size_t n;
    rc = load_files(c, where, revision, &files, &n, err);
    rc = vd_hist_verify_revision(revision, rc, files, n, rep, err);
  }
  PQclear(r);
  return rc;
}

/* Every erased record is one an erasure recorded (as verify_chain() in
 * history_chain.c checks a file's). */
static int verify_pg_erasures(PGconn *c, const char *where, int dropped,
                              vd_verify_report_t *rep, vd_buf_t *err) {
  PGresult *r = pq_exec(c, "SELECT coalesce(sum(records), 0) FROM erasures");
  int64_t recorded;
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    int rc = res_err(err, where, r, c, "reading erasures");
    PQclear(r);
    return rc;
  }
  recorded = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  /* with a node's oldest rows dropped (retention), erased records may
   * have gone with them: then no more erased than recorded */
  return vd_hist_erasures_accounted(rep, recorded, dropped);
}

/* Verify's lanes: up to VERIFY_LANES threads, each on a connection of its
 * own in the snapshot the first connection exported, take the nodes in
 * turn; each node's outcome is kept apart and the first node (in name
 * order) with a problem is the one reported, whatever finished first. */
#define VERIFY_LANES 4

typedef struct verify_job {
  const char *db, *snapshot;
  vd_history_node_head_t *h;
  int n, next;                 /* next under mu */
  const vd_history_node_anchor_t *anchors;
  size_t nanchors;
  pthread_mutex_t mu;
  vd_verify_report_t *reps;    /* [n]: each node's */
  int *rcs;                    /* [n] */
} verify_job_t;

static void *verify_lane(void *arg) {
  verify_job_t *j = arg;
  vd_buf_t err = VD_BUF_INIT, sql = VD_BUF_INIT;
  char where[256];
  PGconn *c = NULL;
  int rc;
  describe(j->db, where, sizeof where);
  rc = pg_connect(&c, j->db, "verdict verify", where, &err);
  vd_buf_addf(&sql, "SET TRANSACTION SNAPSHOT '%s'", j->snapshot);
  if (rc == 0)
    rc = exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", where,
                 "starting to read", &err);
  if (rc == 0)
    rc = exec_ok(c, sql.data, where, "joining verify's snapshot", &err);
  for (;;) {
    const vd_history_node_anchor_t *a = NULL;
    vd_verify_report_t *rep;
    size_t k;
    int i, nrc = rc;
    pthread_mutex_lock(&j->mu);
    i = j->next++;
    pthread_mutex_unlock(&j->mu);
    if (i >= j->n)
      break;
    rep = &j->reps[i];
    for (k = 0; k < j->nanchors; k++)
      if (strcmp(j->anchors[k].node, j->h[i].node) == 0)
        a = &j->anchors[k];
    if (nrc == 0)
      nrc = verify_node(c, where, &j->h[i], a, rep, &err);
    if (nrc == 0)
      nrc = verify_node_activations(c, where, &j->h[i], rep, &err);
    if (nrc && rep->problem == VD_VERIFY_OK)
      snprintf(rep->message, sizeof rep->message, "%s",
               err.data ? err.data : vd_err_desc(nrc));
    j->rcs[i] = nrc;
  }
  rollback_if_open(c);
  PQfinish(c);
  vd_buf_release(&err);
  vd_buf_release(&sql);
  return NULL;
}

/* Every node of H verified in lanes; the outcome in REP as one walk
 * would give it (records and activations summed, the first problem). */
static int verify_nodes(PGconn *c, const char *db, const char *where,
                        vd_history_node_head_t *h, int n,
                        const vd_history_node_anchor_t *anchors,
                        size_t nanchors, vd_verify_report_t *rep,
                        vd_buf_t *err) {
  verify_job_t j;
  pthread_t th[VERIFY_LANES];
  int nth = 0, i, rc = 0;
  char snap[128];
  PGresult *r;
  if (n == 0)
    return 0;
  r = pq_exec(c, "SELECT pg_export_snapshot()");
  if ((rc = rows_ok(r, err, where, c, "exporting the snapshot")) != 0)
    return rc;
  snprintf(snap, sizeof snap, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  memset(&j, 0, sizeof j);
  j.db = db;
  j.snapshot = snap;
  j.h = h;
  j.n = n;
  j.anchors = anchors;
  j.nanchors = nanchors;
  j.reps = calloc((size_t)n, sizeof *j.reps);
  j.rcs = calloc((size_t)n, sizeof *j.rcs);
  if (!j.reps || !j.rcs) {
    free(j.reps);
    free(j.rcs);
    return VD_ENOMEM;
  }
  pthread_mutex_init(&j.mu, NULL);
  for (i = 0; i < VERIFY_LANES && i < n; i++)
    if (pthread_create(&th[nth], NULL, verify_lane, &j) == 0)
      nth++;
  if (nth == 0)
    verify_lane(&j); /* no thread to be had: this one walks them all */
  for (i = 0; i < nth; i++)
    pthread_join(th[i], NULL);
  pthread_mutex_destroy(&j.mu);
  for (i = 0; i < n; i++) {
    rep->records += j.reps[i].records;
    rep->activations += j.reps[i].activations;
    rep->erased += j.reps[i].erased;
  }
  for (i = 0; i < n && !rc; i++)
    if (j.rcs[i]) {
      int64_t records = rep->records, activations = rep->activations;
      int64_t erased = rep->erased;
      rc = j.rcs[i];
      *rep = j.reps[i];
      rep->records = records;
      rep->activations = activations;
      rep->erased = erased;
      if (rep->problem == VD_VERIFY_OK) {
        vd_buf_reset(err);
        vd_buf_adds(err, rep->message);
      }
    }
  free(j.reps);
  free(j.rcs);
  return rc;
}

int vd_history_node_anchor_parse(const char *text,
                                 vd_history_node_anchor_t *a) {
  const char *colon = text ? strchr(text, ':') : NULL;
  vd_history_anchor_t one;
  memset(a, 0, sizeof *a);
  if (!colon || (size_t)(colon - text) >= sizeof a->node)
    return VD_EINVALID;
  memcpy(a->node, text, (size_t)(colon - text));
  /* "NODE:0:<zero hash>": a node that had no decision yet */
  if (strcmp(colon + 1, "0:" VD_HIST_ZERO_HASH) == 0 &&
      vd_history_node_id_ok(a->node)) {
    memcpy(a->hash, VD_HIST_ZERO_HASH, sizeof a->hash);
    return 0;
  }
  if (!vd_history_node_id_ok(a->node) ||
      vd_history_anchor_parse(colon + 1, &one) != 0 || one.activation) {
    memset(a, 0, sizeof *a);
    return VD_EINVALID;
  }
  a->seq = one.seq;
  memcpy(a->hash, one.hash, sizeof a->hash);
  return 0;
}

int vd_history_verify_fleet(const char *db,
                            const vd_history_node_anchor_t *anchors,
                            size_t nanchors, vd_verify_report_t *rep,
                            vd_history_node_head_t **heads, size_t *nheads,
                            char fleet[65]) {
  vd_buf_t err = VD_BUF_INIT;
  vd_history_node_head_t *h = NULL;
  struct sha256_ctx ctx;
  uint8_t d[32];
  char where[256];
  PGconn *c = NULL;
  PGresult *r;
  int rc, i, n = 0;
  size_t k;
  memset(rep, 0, sizeof *rep);
  *heads = NULL;
  *nheads = 0;
  fleet[0] = '\0';
  rc = open_ro(&c, db, "verdict verify", where, sizeof where, &err);
  if (rc)
    goto out;
  /* one snapshot for every node: the writers go on meanwhile */
  rc = exec_ok(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", where,
               "starting to read", &err);
  if (rc)
    goto out;
  r = pq_exec(c, "SELECT node_id, seq, hash FROM"
                " (SELECT node_id, seq, hash FROM node_heads"
                "  UNION ALL SELECT DISTINCT node_id, -1, '' FROM decisions d"
                "   WHERE NOT EXISTS (SELECT 1 FROM node_heads h"
                "                      WHERE h.node_id = d.node_id)) AS n"
                " ORDER BY node_id COLLATE \"C\"");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = res_err(&err, where, r, c, "reading node_heads");
    PQclear(r);
    goto out;
  }
  n = PQntuples(r);
  h = calloc(n ? (size_t)n : 1, sizeof *h);
  if (!h) {
    PQclear(r);
    rc = VD_ENOMEM;
    goto out;
  }
  for (i = 0; i < n; i++) {
    snprintf(h[i].node, sizeof h[i].node, "%s", PQgetvalue(r, i, 0));
    h[i].seq = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    snprintf(h[i].hash, sizeof h[i].hash, "%s", PQgetvalue(r, i, 2));
  }
  PQclear(r);
  for (i = 0; rc == 0 && i < n; i++)
    if (h[i].seq < 0) {
      vd_hist_verify_report(rep, VD_VERIFY_INSERTED, 0, NULL,
          "decisions of node '%s' were inserted: no such node has a "
          "chain (node_heads)", h[i].node);
      rc = VD_EINVALID;
    }
  for (k = 0; rc == 0 && k < nanchors; k++) {
    for (i = 0; i < n && strcmp(h[i].node, anchors[k].node) != 0; i++)
      ;
    if (i == n) {
      vd_hist_verify_report(rep, VD_VERIFY_DELETED, anchors[k].seq, NULL,
          "anchor %s:%" PRId64 ": node %s has no chain in this database "
          "any more", anchors[k].node, anchors[k].seq, anchors[k].node);
      rc = VD_EINVALID;
    }
  }
  if (rc == 0)
    rc = verify_nodes(c, db, where, h, n, anchors, nanchors, rep, &err);
  if (rc == 0) {
    int dropped = 0;
    for (i = 0; i < n; i++)
      dropped |= h[i].start > 0;
    rc = verify_pg_erasures(c, where, dropped, rep, &err);
  }
  if (rc == 0)
    rc = verify_pg_revisions(c, where, rep, &err);
  if (rc == 0) {
    /* the fleet anchor: SHA-256 of "NODE:SEQ:HASH\n" per node, by name */
    sha256_init(&ctx);
    for (i = 0; i < n; i++) {
      char line[160];
      int len = snprintf(line, sizeof line, "%s:%" PRId64 ":%s\n", h[i].node,
                         h[i].seq, h[i].hash);
      sha256_update(&ctx, (size_t)len, (const uint8_t *)line);
    }
    sha256_digest(&ctx, sizeof d, d);
    vd_hist_to_hex(d, sizeof d, fleet);
  }
out:
  rollback_if_open(c);
  PQfinish(c);
  if (rc && rep->problem == VD_VERIFY_OK)
    snprintf(rep->message, sizeof rep->message, "%s",
             err.data ? err.data : vd_err_desc(rc));
  else if (rc == 0) {
    char erased[64] = "";
    if (rep->erased)
      snprintf(erased, sizeof erased, " (%" PRId64 " with personal data "
               "erased)", rep->erased);
    snprintf(rep->message, sizeof rep->message,
             "%d nodes, %" PRId64 " records%s and %" PRId64 " activations "
             "verified; %" PRId64 " revisions intact; fleet anchor %s",
             n, rep->records, erased, rep->activations, rep->revisions,
             fleet);
  }
  vd_buf_release(&err);
  if (rc == 0 || rep->problem != VD_VERIFY_OK) {
    *heads = h;
    *nheads = (size_t)n;
  } else {
    free(h);
  }
  return rc;
}

/* ========================================================================
 * Erasing a customer (vd_history_erase() on a fleet; history_erase.c
 * says what an erasure is, and makes each record's erased form)
 *
 * One transaction over every node's rows: the decisions table locked
 * against writers (SHARE ROW EXCLUSIVE, which two erasures also take in
 * turn), so every record of the customer committed before it is erased
 * and none is written meanwhile; each node's writer waits at most one
 * erasure (within --db-timeout), as a file's writer does.
 * ====================================================================== */

/* The erased form of the row at ROW of R (columns: node_id, node_seq,
 * the columns, hash, personal_salt), written back. */
static int pg_erase_row(PGconn *c, const char *where, PGresult *r, int row,
                        const char *customer, const char *const *fields,
                        size_t nfields, vd_buf_t *err) {
  vd_hist_field_t f[NCOLS];
  vd_hist_erased_t e;
  char nums[NCOLS][24], seq[24], salt[VD_HIST_SALT_HEX];
  const char *v[5];
  int lens[5] = {0}, fmts[5] = {0, 1, 1, 0, 0}, i, rc = 0;
  PGresult *u;
  for (i = 0; i < NCOLS; i++) {
    const char *p = PQgetisnull(r, row, i + 2) ? NULL
                                                : PQgetvalue(r, row, i + 2);
    size_t n = (size_t)PQgetlength(r, row, i + 2);
    f[i] = (vd_hist_field_t){p, n, 0, col_is_int(i)};
    if (col_is_int(i) && p) {
      f[i].i = (int64_t)be64(p);
      snprintf(nums[i], sizeof nums[i], "%" PRId64, f[i].i);
      f[i].p = nums[i];
    }
  }
  memcpy(salt, PQgetvalue(r, row, NCOLS + 3), sizeof salt);
  vd_hist_erase_record(f, salt, customer, fields, nfields, &e);
  snprintf(seq, sizeof seq, "%" PRId64, (int64_t)be64(PQgetvalue(r, row, 1)));
  v[0] = e.digest;
  v[1] = e.has_request ? e.request.data : NULL;
  lens[1] = (int)e.request.len;
  v[2] = e.has_facts ? e.facts.data : NULL;
  lens[2] = (int)e.facts.len;
  v[3] = PQgetvalue(r, row, 0);
  v[4] = seq;
  u = pq_exec_params(c, "UPDATE decisions SET personal_digest = $1,"
                        " personal_salt = NULL, customer_id = NULL,"
                        " request = $2, facts = $3"
                        " WHERE node_id = $4 AND node_seq = $5",
                     5, NULL, v, lens, fmts, 0);
  if (PQresultStatus(u) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(u), "1"))
    rc = res_err(err, where, u, c, "erasing a record");
  PQclear(u);
  vd_hist_erased_release(&e);
  return rc;
}

/* The erasures row: NODES "NODE:FIRST..LAST, ..." of what was erased. */
static int pg_record_erasure(PGconn *c, const char *where, const char *who,
                             const char *nodes, const char *const *fields,
                             size_t nfields, vd_history_erase_report_t *rep,
                             vd_buf_t *err) {
  vd_buf_t names = VD_BUF_INIT;
  char at[40], ms[24], records[24];
  int64_t now = vd_now_ms();
  const char *v[6] = {ms, at, who, records, nodes, NULL};
  PGresult *r;
  int rc = 0;
  vd_hist_erasure_fields(&names, fields, nfields);
  v[5] = names.data;
  vd_time_format(now, VD_DEFAULT_OFFSET_MIN, at);
  snprintf(ms, sizeof ms, "%" PRId64, now);
  snprintf(records, sizeof records, "%" PRId64, rep->erased);
  r = exec_params(c, "INSERT INTO erasures (at_ms, at, who, records, nodes,"
                     " fields) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                  6, v);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    rc = res_err(err, where, r, c, "recording the erasure");
  else
    rep->erasure = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  vd_buf_release(&names);
  return rc;
}

int vd_hist_pg_erase(const char *db, const char *customer_id,
                     const char *const *fields, size_t nfields,
                     const char *who, vd_history_erase_report_t *rep,
                     char **errmsg) {
  vd_buf_t err = VD_BUF_INIT, sql = VD_BUF_INIT, nodes = VD_BUF_INIT;
  const char *v[1] = {customer_id};
  int lens[1] = {(int)strlen(customer_id)}, fmts[1] = {1};
  char where[256], node[64] = "";
  int64_t first = 0, last = 0;
  PGconn *c = NULL;
  PGresult *r = NULL;
  int rc, i, n;
  memset(rep, 0, sizeof *rep);
  rc = open_ro(&c, db, "verdict history erase", where, sizeof where, &err);
  if (rc == 0)
    rc = exec_ok(c, "BEGIN", where, "starting the erasure", &err);
  if (rc == 0)
    rc = exec_ok(c, "LOCK TABLE decisions IN SHARE ROW EXCLUSIVE MODE", where,
                 "waiting for the nodes' batches in hand", &err);
  if (rc)
    goto out;
  /* customer_id is bytea: the id's bytes, sent as they are */
  vd_buf_adds(&sql, "SELECT ");
  add_columns(&sql);
  vd_buf_adds(&sql, ", personal_salt, (SELECT v2_from FROM node_formats f"
                    " WHERE f.node_id = d.node_id) FROM decisions d"
                    " WHERE customer_id = $1"
                    " ORDER BY node_id COLLATE \"C\", node_seq");
  r = pq_exec_params(c, sql.data, 1, NULL, v, lens, fmts, 1);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = res_err(&err, where, r, c, "finding the records");
    goto out;
  }
  n = PQntuples(r);
  for (i = 0; i < n && rc == 0; i++) {
    const char *rnode = PQgetvalue(r, i, 0);
    int64_t seq = (int64_t)be64(PQgetvalue(r, i, 1));
    /* a "vn1" record: its hash commits to its raw bytes */
    if (PQgetisnull(r, i, NCOLS + 4) ||
        seq < (int64_t)be64(PQgetvalue(r, i, NCOLS + 4))) {
      rep->old_form++;
      continue;
    }
    if (PQgetlength(r, i, NCOLS + 3) != VD_HIST_SALT_HEX) {
      vd_buf_reset(&err);
      vd_buf_addf(&err, "%s: node %s's record %" PRId64 " has no "
                        "personal_salt to erase it by; run verdict history "
                        "verify", where, rnode, seq);
      rc = VD_EINVALID;
      break;
    }
    rc = pg_erase_row(c, where, r, i, customer_id, fields, nfields, &err);
    if (rc)
      break;
    if (strcmp(node, rnode) != 0) {
      if (*node)
        vd_buf_addf(&nodes, "%s:%" PRId64 "..%" PRId64 ", ", node, first,
                    last);
      snprintf(node, sizeof node, "%s", rnode);
      first = seq;
    }
    last = seq;
    rep->erased++;
  }
  if (rc == 0 && rep->erased) {
    vd_buf_addf(&nodes, "%s:%" PRId64 "..%" PRId64, node, first, last);
    rc = pg_record_erasure(c, where, who, nodes.data, fields, nfields, rep,
                           &err);
  }
  if (rc == 0)
    rc = exec_ok(c, "COMMIT", where, "committing the erasure", &err);
  if (rc == 0)
    snprintf(rep->nodes, sizeof rep->nodes, "%s",
             nodes.data ? nodes.data : "");
out:
  PQclear(r);
  rollback_if_open(c);
  PQfinish(c);
  vd_buf_release(&sql);
  vd_buf_release(&nodes);
  if (rc)
    memset(rep, 0, sizeof *rep);
  return vd_hist_give_err(errmsg, &err, rc);
}

/* ========================================================================
 * Following the fleet's revision
 * ====================================================================== */

int vd_history_fleet_revision(const char *db, char *out, size_t n,
                              char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  char where[256];
  PGconn *c = NULL;
  PGresult *r;
  int rc;
  out[0] = '\0';
  if (errmsg)
    *errmsg = NULL;
  describe(db, where, sizeof where);
  rc = pg_connect(&c, db, "verdictd fleet", where, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  r = pq_exec(c, "SELECT revision FROM fleet_desired WHERE id = 1");
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    if (PQntuples(r) == 1)
      snprintf(out, n, "%s", PQgetvalue(r, 0, 0));
  } else {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* undefined_table: a database no node has started on yet */
    if (!state || strcmp(state, "42P01") != 0)
      rc = res_err(&err, where, r, c, "reading the fleet's revision");
  }
  PQclear(r);
  PQfinish(c);
  return vd_hist_give_err(errmsg, &err, rc);
}

struct vd_history_watch {
  PGconn *conn;
  char *db, *node;
  char where[256];
  int listening;
};

void vd_history_watch_close(vd_history_watch_t *w) {
  if (!w)
    return;
  PQfinish(w->conn);
  free(w->db);
  free(w->node);
  free(w);
}

int vd_history_watch_open(vd_history_watch_t **out, const char *db,
                          const char *node, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  vd_history_watch_t *w = calloc(1, sizeof *w);
  int rc;
  *out = NULL;
  if (errmsg)
    *errmsg = NULL;
  if (!w || !(w->db = strdup(db)) || !(w->node = strdup(node))) {
    vd_history_watch_close(w);
    return vd_hist_give_err(errmsg, &err, VD_ENOMEM);
  }
  describe(db, w->where, sizeof w->where);
  rc = pg_connect(&w->conn, db, "verdictd fleet", w->where, &err);
  if (rc) {
    vd_history_watch_close(w);
    return vd_hist_give_err(errmsg, &err, rc);
  }
  *out = w;
  return vd_hist_give_err(errmsg, &err, 0);
}

int vd_history_watch_wait(vd_history_watch_t *w, int timeout_ms,
                          char *desired, size_t n, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  const char *v[3];
  char now[24];
  PGnotify *note;
  PGresult *r;
  int rc = 0;
  if (errmsg)
    *errmsg = NULL;
  desired[0] = '\0';
  if (PQstatus(w->conn) != CONNECTION_OK) {
    pq_reset(w->conn);
    w->listening = 0;
    if (PQstatus(w->conn) != CONNECTION_OK) {
      rc = conn_err(&err, w->where, w->conn, "reconnecting");
      (void)poll(NULL, 0, timeout_ms); /* the interval, as a wait would */
      return vd_hist_give_err(errmsg, &err, rc);
    }
  }
  if (!w->listening) {
    rc = exec_ok(w->conn, "LISTEN verdict_revision", w->where, "listening",
                 &err);
    if (rc) {
      (void)poll(NULL, 0, timeout_ms);
      return vd_hist_give_err(errmsg, &err, rc);
    }
    w->listening = 1;
  } else {
    /* wait for a notification, or the poll interval */
    struct pollfd p = {PQsocket(w->conn), POLLIN, 0};
    if (p.fd >= 0 && poll(&p, 1, timeout_ms) > 0)
      (void)PQconsumeInput(w->conn);
  }
  while ((note = PQnotifies(w->conn)))
    PQfreemem(note);
  /* a heartbeat for `verdict fleet status`, then the desired revision */
  snprintf(now, sizeof now, "%" PRId64, vd_now_ms());
  v[0] = w->node;
  v[1] = now;
  v[2] = vd_version();
  r = exec_params(w->conn, "INSERT INTO node_status (node_id, heartbeat_ms,"
                           " started_ms, verdict) VALUES ($1, $2, $2, $3)"
                           " ON CONFLICT (node_id) DO UPDATE"
                           " SET heartbeat_ms = $2, verdict = $3", 3, v);
  rc = res_done(r, PGRES_COMMAND_OK, &err, w->where, w->conn,
                "writing the heartbeat");
  if (rc == 0) {
    r = pq_exec(w->conn, "SELECT revision FROM fleet_desired WHERE id = 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
      rc = res_err(&err, w->where, r, w->conn, "reading the fleet's revision");
    else if (PQntuples(r) == 1)
      snprintf(desired, n, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  return vd_hist_give_err(errmsg, &err, rc);
}
