/*
 * test_history.c - the decision history against real SQLite files.
 *
 * Every test works in a fresh mkdtemp() directory and talks to the
 * database the way the daemon and an auditor would: through the history
 * API, the `history` commands, and (for tampering) a separate sqlite3
 * connection doing what someone with the sqlite3 shell could do.  No
 * mocks.  Runs on the main thread plus the threads tests start.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nettle/sha2.h>
#include <sqlite3.h>

#include "history_int.h" /* vd_hist_chain_hash(): rewriting old-form chains */
#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/engine.h"
#include "verdict/history.h"
#include "verdict/metrics.h"
#include "verdict/personal.h"
#include "verdict/pseudonym.h"
#include "verdict/sandbox.h"

/* ------------------------------------------------------------------------
 * Fixtures
 * ---------------------------------------------------------------------- */

static char dir[64];

/* PATHS holds every path a test asks for until the next test starts. */
static char paths[64][128];
static int npaths;

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  chmod(p, 0700);
  return remove(p);
}

static int setup(void **state) {
  (void)state;
  npaths = 0;
  snprintf(dir, sizeof dir, "/tmp/vd-history-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  chmod(dir, 0700);
  return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *path_in(const char *name) {
  char *p;
  assert_true(npaths < 64);
  p = paths[npaths++];
  snprintf(p, sizeof paths[0], "%s/%s", dir, name);
  return p;
}

/* A copy of fixture FROM at TO, for a test that migrates or changes it. */
static void copy_fixture(const char *from, const char *to) {
  FILE *in, *out;
  char buf[4096];
  size_t n;
  in = fopen(from, "rb");
  assert_non_null(in);
  out = fopen(to, "wb");
  assert_non_null(out);
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    assert_int_equal(fwrite(buf, 1, n, out), n);
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

/* Completions arrive here: the notify callback wakes whoever waits. */
typedef struct sink {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned long notified;
} sink_t;

static sink_t sink = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void notify_cb(unsigned worker, void *arg) {
  sink_t *s = arg;
  (void)worker;
  pthread_mutex_lock(&s->mu);
  s->notified++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* How many notifications have arrived: read under the sink's lock, since
 * the writer thread may still be notifying after every completion a test
 * waited for has been drained. */
static unsigned long notified(void) {
  unsigned long n;
  pthread_mutex_lock(&sink.mu);
  n = sink.notified;
  pthread_mutex_unlock(&sink.mu);
  return n;
}

/* Drain WORKER until its completions reach SEQ.  Checks the ranges are
 * contiguous from *upto + 1; returns the status of the range holding SEQ. */
static int await_seq(vd_history_t *h, unsigned worker, uint64_t *upto,
                     uint64_t seq) {
  int status = 1;
  for (;;) {
    vd_history_done_t d[8];
    size_t n, i;
    pthread_mutex_lock(&sink.mu);
    n = vd_history_drain(h, worker, d, 8);
    if (n == 0 && *upto < seq) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 50 * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&sink.cv, &sink.mu, &ts);
    }
    pthread_mutex_unlock(&sink.mu);
    for (i = 0; i < n; i++) {
      assert_int_equal(d[i].first, *upto + 1);
      assert_true(d[i].last >= d[i].first);
      *upto = d[i].last;
      if (d[i].first <= seq && seq <= d[i].last)
        status = d[i].status;
    }
    if (*upto >= seq)
      return status;
  }
}

/* A record with predictable contents; the strings live in `store`. */
typedef struct rec_store {
  char id[40], at[40], customer[32], complaint[32], request[160],
      result[96];
} rec_store_t;

static void make_record(vd_record_t *r, rec_store_t *s, int worker, int i) {
  memset(r, 0, sizeof *r);
  snprintf(s->id, sizeof s->id, "01900000-0000-7000-8000-%04d%08d", worker,
           i);
  snprintf(s->at, sizeof s->at, "2026-11-23T10:%02d:%02d+08:00", i / 60 % 60,
           i % 60);
  snprintf(s->customer, sizeof s->customer, "C%d", i % 7);
  snprintf(s->complaint, sizeof s->complaint, "T-%d-%d", worker, i);
  snprintf(s->request, sizeof s->request,
           "{\"kind\":\"compensation\",\"region\":\"GD\",\"input\":{\"n\":%d}}",
           i);
  snprintf(s->result, sizeof s->result,
           "{\"offer_fen\":%d,\"approval_level\":\"%s\"}", 100 * (i % 5),
           i % 2 ? "team_lead" : "handler");
  r->decision_id = s->id;
  r->received_ms = 1795392000000LL + i;
  r->at = s->at;
  r->at_ms = 1795392000000LL + (int64_t)i * 1000;
  r->kind = "compensation";
  r->region = "GD";
  r->policy_region = "GD";
  r->revision = NULL;
  r->complaint_id = s->complaint;
  r->customer_id = s->customer;
  r->category = "billing";
  r->request = s->request;
  r->request_len = strlen(s->request);
  r->result = s->result;
  r->result_len = strlen(s->result);
  r->trace = "[{\"rule\":\"R1\"}]";
  r->trace_len = strlen(r->trace);
  r->elapsed_us = 120 + i;
  r->client = "unix";
}

static vd_history_t *open_ok(const char *path, vd_log_mode_t mode,
                             unsigned nworkers) {
  vd_history_t *h = NULL;
  char *err = NULL;
  int rc = vd_history_open(&h, path, mode, nworkers, notify_cb, &sink, &err);
  if (rc)
    fail_msg("open %s: %s", path, err ? err : "?");
  assert_null(err);
  return h;
}

/* A database holding N records from worker 0, closed again. */
static const char *make_db(const char *name, int n) {
  const char *path = path_in(name);
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  uint64_t seq = 0, upto = 0;
  int i;
  for (i = 1; i <= n; i++) {
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    assert_int_equal(seq, (uint64_t)i);
  }
  if (n)
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  return path;
}

/* The history turns SQLite's memory statistics off before SQLite starts
 * (vd_hist_sqlite_open): with them on, every allocation SQLite makes takes
 * a process-wide mutex.  Off, SQLite counts nothing: after a history was
 * opened and written, sqlite3_memory_used() is still 0 (on, it would be
 * the bytes its connections hold).  Must run first in this file: nothing
 * else may have started SQLite in this process. */
static void test_sqlite_memstatus_off(void **state) {
  (void)state;
  make_db("memstatus.db", 3);
  assert_int_equal(sqlite3_memory_used(), 0);
  assert_int_equal(sqlite3_memory_highwater(0), 0);
}

/* Run SQL through a connection of its own, as the sqlite3 shell would. */
static void shell(const char *path, const char *sql) {
  sqlite3 *db;
  char *err = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
    fail_msg("%s: %s", sql, err);
  sqlite3_close(db);
}

static int64_t query_int(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  int64_t v = -1;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* The text of the first column of the first row, malloc'd (NULL if none). */
static char *query_text(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  char *v = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* Hash PATH's chain again in the form schema 3 wrote ("vd1"), as an older
 * verdict would have: for the migration tests, which make an old database
 * from a new one.  Moves chain_head along. */
static void rechain_v1(const char *path) {
  sqlite3 *db;
  sqlite3_stmt *st, *up;
  uint8_t prev[32] = {0}, cur[32];
  char hex[65], sql[128];
  int64_t seq = 0;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT " ALL_COLUMNS " FROM"
                                          " decisions ORDER BY seq",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "UPDATE decisions SET hash = ?"
                                          " WHERE seq = ?", -1, &up, NULL),
                   SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    vd_hist_field_t f[NCOLS];
    int i;
    seq = sqlite3_column_int64(st, 0);
    for (i = 0; i < NCOLS; i++)
      f[i] = vd_hist_column_field(st, i + 1);
    vd_hist_chain_hash(prev, seq, f, cur);
    vd_hist_to_hex(cur, sizeof cur, hex);
    memcpy(prev, cur, sizeof prev);
    sqlite3_bind_text(up, 1, hex, 64, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up, 2, seq);
    assert_int_equal(sqlite3_step(up), SQLITE_DONE);
    sqlite3_reset(up);
  }
  sqlite3_finalize(st);
  sqlite3_finalize(up);
  vd_hist_to_hex(prev, sizeof prev, hex);
  snprintf(sql, sizeof sql, "UPDATE chain_head SET seq = %" PRId64
           ", hash = '%s'", seq, seq ? hex : VD_HIST_ZERO_HASH);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

/* ------------------------------------------------------------------------
 * Opening, schema, modes
 * ---------------------------------------------------------------------- */

static void test_mode_names(void **state) {
  vd_log_mode_t m = VD_LOG_OFF;
  (void)state;
  assert_int_equal(vd_history_mode_parse("durable", &m), 0);
  assert_int_equal(m, VD_LOG_DURABLE);
  assert_int_equal(vd_history_mode_parse("async", &m), 0);
  assert_int_equal(m, VD_LOG_ASYNC);
  assert_int_equal(vd_history_mode_parse("off", &m), 0);
  assert_int_equal(m, VD_LOG_OFF);
  assert_int_equal(vd_history_mode_parse("fast", &m), VD_EINVALID);
  assert_int_equal(vd_history_mode_parse(NULL, &m), VD_EINVALID);
  assert_string_equal(vd_history_mode_name(VD_LOG_ASYNC), "async");
}

static void test_open_creates_schema(void **state) {
  const char *path = path_in("h.db");
  vd_history_t *h;
  char *mode;
  (void)state;
  h = open_ok(path, VD_LOG_DURABLE, 2);
  vd_history_close(h);
  assert_int_equal(query_int(path, "PRAGMA user_version"),
                   VD_HISTORY_SCHEMA_VERSION);
  assert_int_equal(query_int(path, "PRAGMA application_id"), 0x76726474);
  mode = query_text(path, "PRAGMA journal_mode");
  assert_string_equal(mode, "wal");
  free(mode);
  assert_int_equal(
      query_int(path, "SELECT count(*) FROM sqlite_schema WHERE name IN"
                      " ('decisions','chain_head','blobs','revisions',"
                      "  'revision_files','activations','decision_summary',"
                      "  'decisions_per_day','offers_by_approval',"
                      "  'errors_by_code')"),
      10);
  assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_schema WHERE"
                                   " type = 'index' AND name LIKE 'decisions_%'"),
                   8);
  /* reopening runs no migration twice and keeps the chain head */
  h = open_ok(path, VD_LOG_ASYNC, 1);
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM chain_head"), 1);
}

/* A version 1 database (the indexes migration 1 made) is taken to the
 * current version at start-up: the two widened indexes, the rows and the
 * chain intact.  Readers refuse it until then. */
static void test_migrate_from_v1(void **state) {
  const char *path = make_db("v1.db", 20);
  vd_history_t *h;
  vd_history_reader_t *rd = NULL;
  vd_verify_report_t rep;
  char *err = NULL, *cols;
  (void)state;
  shell(path, "UPDATE decisions SET trace ="
              "  (SELECT trace FROM traces WHERE sha256 = trace_sha);"
              "ALTER TABLE decisions DROP COLUMN trace_sha;"
              "DROP TABLE traces;"
              "DROP INDEX decisions_revision;"
              "ALTER TABLE decisions DROP COLUMN revision_n;"
              "DROP TABLE revision_numbers;"
              "DROP INDEX decisions_customer;"
              "CREATE INDEX decisions_customer"
              "  ON decisions(customer_id, kind, at_ms, error_code);"
              "DROP INDEX decisions_complaint;"
              "CREATE INDEX decisions_complaint ON decisions(complaint_id);"
              "DROP TABLE activation_head;"
              "ALTER TABLE activations DROP COLUMN hash;"
              "DROP TABLE chain_format;"
              "DROP TABLE erasures;"
              "DROP TABLE archives;"
              "DROP TABLE idempotency;"
              "ALTER TABLE decisions DROP COLUMN personal_salt;"
              "ALTER TABLE decisions DROP COLUMN personal_digest;"
              "DROP INDEX decisions_region;"
              "DROP INDEX decisions_error;"
              "CREATE INDEX decisions_region_kind ON decisions(region, kind);"
              "PRAGMA user_version = 1;");
  rechain_v1(path);
  assert_int_equal(vd_history_reader_open(&rd, path, &err), VD_EINVALID);
  assert_non_null(strstr(err, "schema version 1"));
  free(err);
  h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_history_close(h);
  assert_int_equal(query_int(path, "PRAGMA user_version"),
                   VD_HISTORY_SCHEMA_VERSION);
  cols = query_text(path, "SELECT group_concat(name, ',') FROM"
                          " (SELECT name FROM pragma_index_info("
                          "'decisions_customer') ORDER BY seqno)");
  assert_string_equal(cols, "customer_id,at_ms,kind,error_code,complaint_id");
  free(cols);
  cols = query_text(path, "SELECT group_concat(name, ',') FROM"
                          " (SELECT name FROM pragma_index_info("
                          "'decisions_complaint') ORDER BY seqno)");
  assert_string_equal(cols, "complaint_id,kind,at_ms,error_code");
  free(cols);
  assert_int_equal(query_int(path, "SELECT count(*) FROM sqlite_schema WHERE"
                                   " type = 'index' AND name LIKE 'decisions_%'"),
                   8);
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.records, 20);
  assert_int_equal(vd_history_reader_open(&rd, path, &err), 0);
  vd_history_reader_close(rd);
}

static void expect_open_error(const char *path, int want_rc,
                              const char *want_text) {
  vd_history_t *h = NULL;
  char *err = NULL;
  int rc = vd_history_open(&h, path, VD_LOG_DURABLE, 1, NULL, NULL, &err);
  assert_int_equal(rc, want_rc);
  assert_null(h);
  assert_non_null(err);
  if (!strstr(err, want_text) || !strstr(err, path))
    fail_msg("error \"%s\" should name %s and say \"%s\"", err, path,
             want_text);
  free(err);
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* The database is created 0640 whatever the umask (so are its -wal and
 * -shm), and one that others can read is refused with the chmod to run. */
static void test_open_file_modes(void **state) {
  const char *path = path_in("modes.db");
  char want[256];
  struct stat st;
  mode_t old = umask(077);
  vd_history_t *h;
  /* written first: GCC at -O1 with the sanitizers took the path for a
   * possible NULL once the calls below had it (-Wformat-truncation) */
  snprintf(want, sizeof want, "run: chmod o-rwx '%s'", path);
  h = open_ok(path, VD_LOG_DURABLE, 1);
  umask(old);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(stat(path_in("modes.db-wal"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  assert_int_equal(stat(path_in("modes.db-shm"), &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
  vd_history_close(h);
  (void)state;

  assert_int_equal(chmod(path, 0644), 0);
  expect_open_error(path, VD_EIO, want);
  assert_int_equal(chmod(path, 0640), 0);
  h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_history_close(h);
}

static void test_open_errors(void **state) {
  char big[8192];
  (void)state;
  expect_open_error(path_in("no/such/dir/h.db"), VD_EIO, "does not exist");

  /* not SQLite at all */
  memset(big, 'x', sizeof big);
  write_file(path_in("garbage.db"), big, sizeof big);
  expect_open_error(path_in("garbage.db"), VD_EINVALID, "not a SQLite database");

  /* SQLite, but someone else's */
  shell(path_in("other.db"), "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
  expect_open_error(path_in("other.db"), VD_EINVALID,
                    "not a verdict history database");

  /* ours, from the future */
  make_db("future.db", 1);
  shell(path_in("future.db"), "PRAGMA user_version = 99");
  expect_open_error(path_in("future.db"), VD_EINVALID, "newer");

  /* a path that is a directory */
  mkdir(path_in("adir"), 0700);
  expect_open_error(path_in("adir"), VD_EIO, "not a regular file");
}

static void test_open_corrupt(void **state) {
  const char *path = make_db("corrupt.db", 300);
  char page[4096];
  int fd;
  struct stat st;
  (void)state;
  /* scribble over a page in the middle of the file: a b-tree page */
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_size >= 4 * 4096);
  memset(page, 0x5a, sizeof page);
  fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, page, sizeof page, 2 * 4096), sizeof page);
  close(fd);
  /* opening does not read every page (that is the check's job, which
   * verdictd runs on a thread of its own): the check finds it */
  {
    vd_history_check_t *c = NULL;
    char *err = NULL;
    assert_int_equal(vd_history_check_open(&c, path, &err), 0);
    assert_int_equal(vd_history_check_run(c, &err), VD_EINVALID);
    if (!err || !strstr(err, "corrupt") || !strstr(err, path))
      fail_msg("check said \"%s\"", err ? err : "(nothing)");
    free(err);
    vd_history_check_close(c);
  }
  /* a sound one passes */
  {
    vd_history_check_t *c = NULL;
    char *err = NULL;
    const char *good = make_db("sound.db", 300);
    assert_int_equal(vd_history_check_open(&c, good, &err), 0);
    assert_int_equal(vd_history_check_run(c, &err), 0);
    assert_null(err);
    /* an interrupt that comes before the run still stops it */
    vd_history_check_interrupt(c);
    assert_int_equal(vd_history_check_run(c, &err), VD_EIO);
    assert_non_null(err);
    free(err);
    vd_history_check_close(c);
  }
}

static void test_open_locked(void **state) {
  const char *path = make_db("locked.db", 1);
  sqlite3 *other;
  time_t t0;
  (void)state;
  assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  t0 = time(NULL);
  expect_open_error(path, VD_EIO, "locked by another writer");
  assert_true(time(NULL) - t0 >= VD_HISTORY_BUSY_MS / 1000 - 1);
  sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(other);
}

/* One writer per file: a second open is refused before it touches the
 * database (no journal switch, no migration under the first writer). */
static void test_open_second_writer(void **state) {
  const char *path = path_in("two.db");
  vd_history_t *h;
  (void)state;
  h = open_ok(path, VD_LOG_DURABLE, 1);
  expect_open_error(path, VD_EIO, "another verdictd is writing it");
  vd_history_close(h);
  h = open_ok(path, VD_LOG_DURABLE, 1); /* free again once closed */
  vd_history_close(h);
}

/* Run expect_open_error() as an unprivileged user when we are root, since
 * root may write any file. */
static void open_error_unprivileged(const char *path, int want_rc,
                                    const char *want_text) {
  pid_t pid;
  int status;
  if (geteuid() != 0) {
    expect_open_error(path, want_rc, want_text);
    return;
  }
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    vd_history_t *h = NULL;
    char *err = NULL;
    int rc;
    if (setgid(65534) != 0 || setuid(65534) != 0)
      _exit(3);
    rc = vd_history_open(&h, path, VD_LOG_DURABLE, 1, NULL, NULL, &err);
    if (rc == want_rc && err && strstr(err, want_text) && strstr(err, path))
      _exit(0);
    fprintf(stderr, "unprivileged open: rc %d, \"%s\"\n", rc,
            err ? err : "(none)");
    _exit(1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_open_read_only(void **state) {
  const char *path;
  (void)state;
  /* a directory the (unprivileged) opener may write, a file it may not */
  chmod(dir, 0755);
  mkdir(path_in("rw"), 0755);
  path = make_db("rw/ro.db", 2);
  chmod(path, 0444);
  if (geteuid() == 0)
    assert_int_equal(chown(path_in("rw"), 65534, 65534), 0);
  open_error_unprivileged(path, VD_EIO, "read-only");

  mkdir(path_in("rodir"), 0555);
  open_error_unprivileged(path_in("rodir/h.db"), VD_EIO, "not writable");
}

/* ------------------------------------------------------------------------
 * Recording and the chain
 * ---------------------------------------------------------------------- */

/* The canonical bytes exactly as docs/history.md ("Canonical bytes") defines
 * them. */
static void test_canonical_bytes(void **state) {
  const char *path = path_in("canon.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_record_t r;
  uint64_t seq, upto = 0;
  struct sha256_ctx c;
  uint8_t zero[32] = {0}, d[32];
  char hex[65], *stored, *head;
  static const char canon[] =
      "3:vd1,1:1,"
      "36:01900000-0000-7000-8000-000000000001,"
      "13:1795392000123,"
      "25:2026-11-23T10:00:00+08:00,"
      "13:1795392000000,"
      "3:sla,2:GD,5:GD-SZ,9:sha256:ab,"
      "-,2:C1,-,"
      "14:{\"kind\":\"sla\"},"
      "-,-,-,"
      "11:bad_request,8:no kind\n,4:kind,"
      "2:-5,"
      "0:,";
  int i;
  (void)state;
  memset(&r, 0, sizeof r);
  r.decision_id = "01900000-0000-7000-8000-000000000001";
  r.received_ms = 1795392000123LL;
  r.at = "2026-11-23T10:00:00+08:00";
  r.at_ms = 1795392000000LL;
  r.kind = "sla";
  r.region = "GD";
  r.policy_region = "GD-SZ";
  r.revision = "sha256:ab";
  r.customer_id = "C1";
  r.request = "{\"kind\":\"sla\"}";
  r.request_len = 14;
  r.error_code = "bad_request";
  r.error_message = "no kind\n";
  r.error_path = "kind";
  r.elapsed_us = -5;
  r.client = "";
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);

  sha256_init(&c);
  sha256_update(&c, 32, zero);
  sha256_update(&c, sizeof canon - 1, (const uint8_t *)canon);
  sha256_digest(&c, 32, d);
  for (i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", d[i]);
  /* the "vd1" form, which records stored before schema 5 keep */
  {
    vd_hist_field_t f[NCOLS];
    uint8_t mine[32];
    char mine_hex[65];
    vd_hist_record_fields(&r, f);
    vd_hist_chain_hash(zero, 1, f, mine);
    vd_hist_to_hex(mine, sizeof mine, mine_hex);
    assert_string_equal(mine_hex, hex);
    assert_string_equal(hex, "3a02fffe9959fc9cc9d71183ed52fe99"
                             "14018fc5d61423eccd46e70114f2cb89");
  }
  /* the "vd2" form the writer uses since schema 5: the personal columns
   * (customer_id, request, facts) through one digest salted per record,
   * docs/history.md "Schema 5: the personal part" */
  {
    vd_buf_t inner = VD_BUF_INIT, outer = VD_BUF_INIT;
    char *salt = query_text(path, "SELECT personal_salt FROM decisions");
    char pd[65];
    assert_non_null(salt);
    assert_int_equal(strlen(salt), 32);
    assert_int_equal(strspn(salt, "0123456789abcdef"), 32);
    vd_buf_addf(&inner, "3:vp1,32:%s,2:C1,14:{\"kind\":\"sla\"},-,", salt);
    sha256_init(&c);
    sha256_update(&c, inner.len, (const uint8_t *)inner.data);
    sha256_digest(&c, 32, d);
    for (i = 0; i < 32; i++)
      snprintf(pd + 2 * i, 3, "%02x", d[i]);
    vd_buf_addf(&outer,
                "3:vd2,1:1,"
                "36:01900000-0000-7000-8000-000000000001,"
                "13:1795392000123,"
                "25:2026-11-23T10:00:00+08:00,"
                "13:1795392000000,"
                "3:sla,2:GD,5:GD-SZ,9:sha256:ab,"
                "-,-," /* complaint_id, category */
                "-,-," /* result, trace */
                "11:bad_request,8:no kind\n,4:kind,"
                "2:-5,"
                "0:,"
                "64:%s,", pd);
    sha256_init(&c);
    sha256_update(&c, 32, zero);
    sha256_update(&c, outer.len, (const uint8_t *)outer.data);
    sha256_digest(&c, 32, d);
    for (i = 0; i < 32; i++)
      snprintf(hex + 2 * i, 3, "%02x", d[i]);
    /* the same bytes in the writer's two parts: everything after the seq,
     * made when the record is submitted, then chained (verify hashes
     * with vd_hist_chain_hash_v2(), in one go) */
    {
      vd_hist_field_t f[NCOLS];
      size_t n;
      char *tail;
      uint8_t a[32], b[32];
      vd_hist_record_fields(&r, f);
      n = vd_hist_v2_tail(f, pd, NULL);
      tail = malloc(n);
      assert_non_null(tail);
      assert_int_equal(vd_hist_v2_tail(f, pd, tail), n);
      assert_int_equal(n, outer.len - strlen("3:vd2,1:1,"));
      assert_memory_equal(tail, outer.data + strlen("3:vd2,1:1,"), n);
      vd_hist_chain_hash_tail(zero, 1, tail, n, a);
      vd_hist_chain_hash_v2(zero, 1, f, pd, b);
      assert_memory_equal(a, b, 32);
      assert_memory_equal(a, d, 32);
      free(tail);
    }
    vd_buf_release(&inner);
    vd_buf_release(&outer);
    free(salt);
  }
  stored = query_text(path, "SELECT hash FROM decisions WHERE seq = 1");
  head = query_text(path, "SELECT hash FROM chain_head WHERE seq = 1");
  assert_non_null(stored);
  assert_string_equal(stored, hex);
  assert_string_equal(head, hex);
  free(stored);
  free(head);
  /* NULL stays NULL and "" stays "" */
  assert_int_equal(query_int(path, "SELECT complaint_id IS NULL AND "
                                   "client = '' FROM decisions"),
                   1);
}

typedef struct submitter {
  vd_history_t *h;
  unsigned worker;
  int n;
  int bad; /* ranges out of order, or a failed status */
} submitter_t;

static void *submit_main(void *arg) {
  submitter_t *s = arg;
  uint64_t seq = 0, upto = 0;
  int i;
  for (i = 1; i <= s->n; i++) {
    vd_record_t r;
    rec_store_t st;
    make_record(&r, &st, (int)s->worker, i);
    if (vd_history_submit(s->h, s->worker, &r, &seq) != 0 ||
        seq != (uint64_t)i)
      s->bad++;
  }
  if (await_seq(s->h, s->worker, &upto, seq) != 0 || upto != (uint64_t)s->n)
    s->bad++;
  return NULL;
}

static void test_submit_threads(void **state) {
  enum { NW = 4, N = 2500 };
  const char *path = path_in("threads.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, NW);
  pthread_t t[NW];
  submitter_t s[NW];
  vd_verify_report_t rep;
  unsigned i;
  unsigned long before = notified();
  (void)state;
  for (i = 0; i < NW; i++) {
    s[i].h = h;
    s[i].worker = i;
    s[i].n = N;
    s[i].bad = 0;
    assert_int_equal(pthread_create(&t[i], NULL, submit_main, &s[i]), 0);
  }
  for (i = 0; i < NW; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(s[i].bad, 0);
  }
  /* group commit: far fewer notifications than records */
  assert_true(notified() > before);
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), NW * N);
  assert_int_equal(query_int(path, "SELECT max(seq) FROM decisions"), NW * N);
  /* each worker's records are stored in its own submission order */
  assert_int_equal(
      query_int(path,
                "SELECT count(*) FROM decisions a JOIN decisions b"
                "  ON substr(a.decision_id, 25, 4) = substr(b.decision_id, 25, 4)"
                "  AND a.seq = b.seq - 1"
                " WHERE a.decision_id > b.decision_id"),
      0);
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.problem, VD_VERIFY_OK);
  assert_int_equal(rep.records, NW * N);
  assert_int_equal(strlen(rep.head), 64);
}

static void test_submit_invalid(void **state) {
  vd_history_t *h = open_ok(path_in("inv.db"), VD_LOG_DURABLE, 2);
  vd_record_t r;
  rec_store_t s;
  uint64_t seq = 0;
  (void)state;
  make_record(&r, &s, 0, 1);
  assert_int_equal(vd_history_submit(h, 2, &r, &seq), VD_EINVALID);
  r.decision_id = NULL;
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), VD_EINVALID);
  vd_history_close(h);
  assert_int_equal(query_int(path_in("inv.db"), "SELECT count(*) FROM decisions"),
                   0);
}

typedef struct flood {
  vd_history_t *h;
  int n;
  atomic_int queued; /* submissions that returned */
} flood_t;

static void *flood_main(void *arg) {
  flood_t *f = arg;
  int i;
  for (i = 0; i < f->n; i++) {
    vd_record_t r;
    rec_store_t s;
    uint64_t seq;
    make_record(&r, &s, 1, i);
    if (vd_history_submit(f->h, 1, &r, &seq) != 0)
      break;
    atomic_fetch_add(&f->queued, 1);
  }
  return NULL;
}

/* A notify callback that holds the writer thread until the gate opens. */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int closed, held;
} gate_t;

static void gate_cb(unsigned worker, void *arg) {
  gate_t *g = arg;
  (void)worker;
  pthread_mutex_lock(&g->mu);
  g->held++;
  pthread_cond_broadcast(&g->cv);
  while (g->closed)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

/* With the writer held up, submit queues exactly VD_HISTORY_QUEUE_MAX
 * records and then waits; everything is written once the writer runs. */
static void test_queue_bound(void **state) {
  const char *path = path_in("bound.db");
  gate_t g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0};
  vd_history_t *h = NULL;
  char *err = NULL;
  flood_t f;
  pthread_t t;
  vd_record_t r;
  rec_store_t s;
  uint64_t seq, upto0 = 0, upto1 = 0;
  int i, last = -1;
  struct timespec pause = {0, 100 * 1000000L};
  (void)state;
  assert_int_equal(vd_history_open(&h, path, VD_LOG_DURABLE, 2, gate_cb, &g,
                                   &err),
                   0);
  /* the writer commits this one, then stays in the callback */
  make_record(&r, &s, 0, 1);
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  pthread_mutex_lock(&g.mu);
  while (!g.held)
    pthread_cond_wait(&g.cv, &g.mu);
  pthread_mutex_unlock(&g.mu);

  f.h = h;
  f.n = VD_HISTORY_QUEUE_MAX + 100;
  atomic_init(&f.queued, 0);
  assert_int_equal(pthread_create(&t, NULL, flood_main, &f), 0);
  /* wait until submissions stop advancing (a minute at most) */
  for (i = 0; i < 600; i++) {
    int now = atomic_load(&f.queued);
    if (now == last && now > 0)
      break;
    last = now;
    nanosleep(&pause, NULL);
  }
  assert_int_equal(atomic_load(&f.queued), VD_HISTORY_QUEUE_MAX);

  pthread_mutex_lock(&g.mu);
  g.closed = 0;
  pthread_cond_broadcast(&g.cv);
  pthread_mutex_unlock(&g.mu);
  pthread_join(t, NULL);
  assert_int_equal(atomic_load(&f.queued), f.n);
  assert_int_equal(await_seq(h, 0, &upto0, 1), 0);
  assert_int_equal(await_seq(h, 1, &upto1, (uint64_t)f.n), 0);
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), f.n + 1);
}

static void test_off_and_async(void **state) {
  const char *off = path_in("off.db"), *async = path_in("async.db");
  vd_history_t *h;
  vd_history_done_t d[4];
  vd_record_t r;
  rec_store_t s;
  uint64_t seq = 0;
  int i;
  (void)state;
  h = open_ok(off, VD_LOG_OFF, 1);
  for (i = 1; i <= 3; i++) {
    make_record(&r, &s, 0, i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  assert_int_equal(vd_history_drain(h, 0, d, 4), 1);
  assert_int_equal(d[0].first, 1);
  assert_int_equal(d[0].last, 3);
  assert_int_equal(d[0].status, 0);
  vd_history_close(h);
  assert_int_equal(query_int(off, "SELECT count(*) FROM decisions"), 0);

  /* async: close() still commits everything queued */
  h = open_ok(async, VD_LOG_ASYNC, 1);
  for (i = 1; i <= 500; i++) {
    make_record(&r, &s, 0, i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  vd_history_close(h);
  assert_int_equal(query_int(async, "SELECT count(*) FROM decisions"), 500);
}

/* ------------------------------------------------------------------------
 * Tampering, as someone with the sqlite3 shell
 * ---------------------------------------------------------------------- */

static void expect_problem(const char *path, vd_verify_problem_t problem,
                           int64_t seq, const char *decision_id,
                           int64_t good) {
  vd_verify_report_t rep;
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  if (rep.problem != problem || rep.seq != seq)
    fail_msg("want problem %d at seq %" PRId64 ", got %d at %" PRId64 ": %s",
             (int)problem, seq, (int)rep.problem, rep.seq, rep.message);
  assert_string_equal(rep.decision_id, decision_id);
  assert_int_equal(rep.records, good);
  assert_true(strlen(rep.message) > 0);
}

static void test_verify_intact(void **state) {
  const char *path = make_db("intact.db", 10);
  vd_verify_report_t rep;
  char *head;
  (void)state;
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.records, 10);
  head = query_text(path, "SELECT hash FROM decisions WHERE seq = 10");
  assert_string_equal(rep.head, head);
  free(head);
  /* an empty history verifies too */
  path = make_db("empty.db", 0);
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.records, 0);
  /* and a missing one is an error, not a problem found */
  assert_int_equal(vd_history_verify(path_in("nope.db"), &rep), VD_ENOT_FOUND);
  assert_int_equal(rep.problem, VD_VERIFY_OK);
  assert_non_null(strstr(rep.message, "no such file"));
}

static void test_verify_edit(void **state) {
  const char *path = make_db("edit.db", 10);
  (void)state;
  shell(path, "UPDATE decisions SET result = '{\"offer_fen\":99900}'"
              " WHERE seq = 5");
  expect_problem(path, VD_VERIFY_CHANGED, 5,
                 "01900000-0000-7000-8000-000000000005", 4);

  /* a changed integer column, even to the same number written as text */
  path = make_db("edit2.db", 10);
  shell(path, "UPDATE decisions SET elapsed_us = elapsed_us + 1 WHERE seq = 7");
  expect_problem(path, VD_VERIFY_CHANGED, 7,
                 "01900000-0000-7000-8000-000000000007", 6);

  /* NULL for a value */
  path = make_db("edit3.db", 10);
  shell(path, "UPDATE decisions SET complaint_id = NULL WHERE seq = 1");
  expect_problem(path, VD_VERIFY_CHANGED, 1,
                 "01900000-0000-7000-8000-000000000001", 0);

  /* the head itself */
  path = make_db("edit4.db", 10);
  shell(path, "UPDATE chain_head SET hash = (SELECT hash FROM decisions"
              " WHERE seq = 9)");
  expect_problem(path, VD_VERIFY_CHANGED, 10, "", 10);
}

static void test_verify_delete(void **state) {
  const char *path = make_db("del.db", 10);
  (void)state;
  shell(path, "DELETE FROM decisions WHERE seq = 4");
  expect_problem(path, VD_VERIFY_DELETED, 4,
                 "01900000-0000-7000-8000-000000000005", 3);

  path = make_db("deltail.db", 10);
  shell(path, "DELETE FROM decisions WHERE seq >= 9");
  expect_problem(path, VD_VERIFY_DELETED, 9, "", 8);

  /* delete a row and renumber the rest to hide the gap */
  path = make_db("delrenum.db", 10);
  shell(path, "DELETE FROM decisions WHERE seq = 3;"
              "UPDATE decisions SET seq = seq - 1 WHERE seq > 3;"
              "UPDATE chain_head SET seq = 9, hash = (SELECT hash FROM"
              " decisions WHERE seq = 9)");
  expect_problem(path, VD_VERIFY_CHANGED, 3,
                 "01900000-0000-7000-8000-000000000004", 2);
}

static void test_verify_insert(void **state) {
  const char *path = make_db("ins.db", 10);
  (void)state;
  /* a row copied from another, appended */
  shell(path, "INSERT INTO decisions (decision_id, received_ms, at, at_ms,"
              " kind, region, request, result, hash)"
              " SELECT 'forged', received_ms, at, at_ms, kind, region,"
              "        request, result, hash FROM decisions WHERE seq = 10");
  expect_problem(path, VD_VERIFY_INSERTED, 11, "forged", 10);

  /* and the daemon keeps writing after it: still caught */
  {
    vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
    vd_record_t r;
    rec_store_t s;
    uint64_t seq, upto = 0;
    make_record(&r, &s, 1, 1);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
    vd_history_close(h);
    assert_int_equal(query_int(path, "SELECT max(seq) FROM decisions"), 12);
    expect_problem(path, VD_VERIFY_CHANGED, 11, "forged", 10);
  }

  /* a row slipped in before the first */
  path = make_db("ins0.db", 3);
  shell(path, "INSERT INTO decisions (seq, decision_id, hash)"
              " VALUES (0, 'early', 'x')");
  expect_problem(path, VD_VERIFY_INSERTED, 0, "early", 0);
}

/* ------------------------------------------------------------------------
 * Failures while writing
 * ---------------------------------------------------------------------- */

static off_t file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? st.st_size : 0;
}

/* Checkpoints run beside the writer and the WAL stays bounded: one record
 * a batch (each commit adds a frame for the table and each index), more
 * than the bound's worth of frames in all.  The database file grows while
 * the history is open only through checkpoints (the writer's connection
 * has no automatic one), and the WAL never passes its bound (16,384 pages
 * and one batch's) although the batches wrote far more than that: each
 * commit writes at least eight frames (the table, six indexes, the chain
 * head), 20,800 in all. */
static void test_checkpoints(void **state) {
  const char *path = path_in("ckpt.db");
  char wal[160];
  vd_history_t *h;
  off_t db0, frames_max = (16384 + 64) * (4096 + 24) + 32;
  uint64_t seq = 0, upto = 0;
  int i, n = 2600;
  (void)state;
  snprintf(wal, sizeof wal, "%s-wal", path);
  h = open_ok(path, VD_LOG_ASYNC, 1);
  db0 = file_size(path);
  for (i = 1; i <= n; i++) {
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
    if (i == 400) /* some 3,000 frames: the checkpointer runs (a loaded
                   * disk may take seconds: up to a minute) */
      for (int t = 0; t < 6000 && file_size(path) == db0; t++)
        usleep(10000);
    if (i == 400)
      assert_true(file_size(path) > db0);
  }
  assert_true(file_size(wal) <= frames_max);
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), n);
}

/* Activations recorded while the writer commits batch after batch: the
 * main thread's write transaction gets its turn between two batches
 * instead of polling for the lock until the busy timeout (5 s) runs out,
 * which a writer that never idles made it do (an activation that was not
 * recorded). */
typedef struct busy {
  vd_history_t *h;
  atomic_int stop;
  long submitted, failed;
} busy_t;

static void *busy_main(void *arg) {
  busy_t *f = arg;
  int i = 0;
  while (!atomic_load(&f->stop)) {
    vd_record_t r;
    rec_store_t s;
    vd_history_done_t d[64];
    uint64_t seq;
    size_t n, k;
    make_record(&r, &s, 0, ++i);
    if (vd_history_submit(f->h, 0, &r, &seq) == 0)
      f->submitted++;
    n = vd_history_drain(f->h, 0, d, 64);
    for (k = 0; k < n; k++)
      f->failed += d[k].status != 0;
  }
  return NULL;
}

/* A queue longer than VD_HISTORY_BATCH_MAX is committed in several
 * transactions, the oldest records first: with the writer held back (an
 * auxiliary writer's turn, as an activation takes it) while 100 more than
 * the cap are queued, it then commits exactly two batches, a full one and
 * the rest, and every record is acknowledged in order.  Without the cap it
 * was one transaction of the whole queue (up to VD_HISTORY_QUEUE_MAX),
 * which an activation waited behind. */
static void test_batches_capped(void **state) {
  const char *path = path_in("capped.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_metrics_t *m = NULL;
  vd_buf_t text = VD_BUF_INIT;
  const int n = VD_HISTORY_BATCH_MAX + 100;
  char line[96];
  uint64_t seq = 0, upto = 0;
  int i;
  (void)state;
  assert_int_equal(vd_metrics_new(&m), 0);
  assert_int_equal(vd_history_set_metrics(h, m), 0);
  vd_hist_aux_lock(h);
  for (i = 1; i <= n; i++) {
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  vd_hist_aux_unlock(h);
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  assert_int_equal(upto, (uint64_t)n);
  vd_metrics_render(m, &text);
  assert_non_null(strstr(text.data, "\nverdict_history_batch_records_count 2\n"));
  snprintf(line, sizeof line, "\nverdict_history_batch_records_sum %d\n", n);
  assert_non_null(strstr(text.data, line));
  snprintf(line, sizeof line,
           "\nverdict_history_batch_records_bucket{le=\"%d\"} 2\n",
           VD_HISTORY_BATCH_MAX);
  assert_non_null(strstr(text.data, line));
  vd_history_close(h);
  vd_metrics_free(m);
  vd_buf_release(&text);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), n);
  assert_int_equal(query_int(path, "SELECT seq FROM chain_head"), n);
}

static void test_activations_under_load(void **state) {
  const char *path = path_in("busy.db");
  busy_t f;
  pthread_t t;
  int i;
  (void)state;
  memset(&f, 0, sizeof f);
  f.h = open_ok(path, VD_LOG_DURABLE, 1);
  assert_int_equal(pthread_create(&t, NULL, busy_main, &f), 0);
  usleep(200000); /* the writer is busy before the first activation */
  for (i = 0; i < 8; i++) {
    char rev[80], *err = NULL;
    snprintf(rev, sizeof rev, "sha256:%064d", i);
    if (vd_history_record_activation(f.h, rev, "reload", "test", NULL, 1,
                                     NULL, &err) != 0)
      fail_msg("activation %d under load: %s", i, err ? err : "?");
    usleep(20000);
  }
  atomic_store(&f.stop, 1);
  pthread_join(t, NULL);
  vd_history_close(f.h);
  assert_true(f.submitted > 100);
  assert_int_equal(f.failed, 0);
  assert_int_equal(query_int(path, "SELECT count(*) FROM activations"), 8);
}

/* Writing fails as on a full disk (the file-size limit makes write()
 * fail): the batch is reported failed, nothing of it is stored, and
 * writing works again once there is room. */
static void test_disk_full(void **state) {
  const char *path = path_in("full.db");
  char wal[160];
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_record_t r;
  rec_store_t s;
  uint64_t seq, upto = 0;
  struct rlimit old, lim;
  vd_verify_report_t rep;
  struct stat out_st, err_st;
  off_t limit;
  char *big;
  size_t bign;
  (void)state;
  snprintf(wal, sizeof wal, "%s-wal", path);
  make_record(&r, &s, 0, 1);
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);

  /* the limit is per file and per process: leave room for our own
   * stdout and stderr when they are files (a test log), none for a record
   * bigger than that */
  limit = file_size(wal) + file_size(path);
  if (fstat(1, &out_st) == 0 && S_ISREG(out_st.st_mode) &&
      out_st.st_size > limit)
    limit = out_st.st_size;
  if (fstat(2, &err_st) == 0 && S_ISREG(err_st.st_mode) &&
      err_st.st_size > limit)
    limit = err_st.st_size;
  limit += 256 << 10;
  bign = (size_t)limit + (1u << 20);
  big = malloc(bign);
  assert_non_null(big);
  memset(big, 'a', bign);
  big[0] = '"';
  big[bign - 1] = '"';
  signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
  lim = old;
  lim.rlim_cur = (rlim_t)limit;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

  make_record(&r, &s, 0, 2);
  r.request = big;
  r.request_len = bign;
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(seq, 2);
  assert_int_equal(await_seq(h, 0, &upto, seq), VD_EIO);
  make_record(&r, &s, 0, 3);
  r.request = big;
  r.request_len = bign;
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(await_seq(h, 0, &upto, seq), VD_EIO);

  /* room again */
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_DFL);
  make_record(&r, &s, 0, 4);
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(seq, 4);
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  free(big);

  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), 2);
  assert_int_equal(
      query_int(path, "SELECT count(*) FROM decisions WHERE decision_id ="
                      " '01900000-0000-7000-8000-000000000004' AND seq = 2"),
      1);
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.records, 2);
}

/* ------------------------------------------------------------------------
 * Readers while the writer writes
 * ---------------------------------------------------------------------- */

typedef struct writer_arg {
  vd_history_t *h;
  atomic_int stop;
  atomic_int progress; /* records committed so far */
  atomic_int done;     /* the writer thread has returned */
  int submitted;
} writer_arg_t;

static void *busy_writer(void *arg) {
  writer_arg_t *w = arg;
  uint64_t seq, upto = 0;
  int i = 0;
  while (!atomic_load(&w->stop) && i < 20000) {
    int k;
    for (k = 0; k < 50; k++) {
      vd_record_t r;
      rec_store_t s;
      make_record(&r, &s, 0, ++i);
      r.customer_id = "C-busy";
      if (vd_history_submit(w->h, 0, &r, &seq) != 0)
        goto out;
    }
    if (await_seq(w->h, 0, &upto, seq) != 0)
      goto out;
    atomic_store(&w->progress, i);
  }
  w->submitted = i;
out:
  atomic_store(&w->done, 1);
  return NULL;
}

static void test_readers_see_whole_batches(void **state) {
  const char *path = path_in("busy.db");
  writer_arg_t w;
  pthread_t t;
  vd_history_reader_t *rd;
  char *err = NULL;
  int64_t last = 0, verified = 0;
  int rounds;
  (void)state;
  w.h = open_ok(path, VD_LOG_DURABLE, 1);
  atomic_init(&w.stop, 0);
  atomic_init(&w.progress, 0);
  atomic_init(&w.done, 0);
  w.submitted = 0;
  assert_int_equal(vd_history_reader_open(&rd, path, &err), 0);
  assert_int_equal(pthread_create(&t, NULL, busy_writer, &w), 0);
  /* at least 40 rounds, and on until the writer has committed a few
   * batches: on a busy machine it may not have started by round 40 */
  for (rounds = 0; rounds < 40 || (atomic_load(&w.progress) < 200 &&
                                   !atomic_load(&w.done));
       rounds++) {
    vd_verify_report_t rep;
    int64_t n;
    /* every snapshot is a whole chain: head and rows agree */
    if (vd_history_verify(path, &rep) != 0)
      fail_msg("verify while writing: %s", rep.message);
    assert_true(rep.records >= verified);
    verified = rep.records;
    assert_int_equal(vd_history_count_customer(rd, "C-busy", "compensation",
                                               0, INT64_MAX, &n),
                     0);
    assert_true(n >= last);
    last = n;
  }
  atomic_store(&w.stop, 1);
  pthread_join(t, NULL);
  vd_history_close(w.h);
  assert_true(w.submitted > 0);
  assert_int_equal(vd_history_count_customer(rd, "C-busy", NULL, 0, INT64_MAX,
                                             &last),
                   0);
  assert_int_equal(last, w.submitted);
  vd_history_reader_close(rd);
}

/* Backups taken while a writer commits batches: each is one snapshot
 * (its chain verifies and is a prefix of the live one), one file, 0640;
 * DEST is never overwritten without force, and a database that does not
 * verify gives no copy at all. */
static void test_backup(void **state) {
  const char *path = path_in("live.db");
  writer_arg_t w;
  pthread_t t;
  vd_history_backup_report_t rep;
  vd_verify_report_t live;
  vd_history_anchor_t a;
  char *err = NULL, dest[160];
  struct stat st;
  int i;
  (void)state;
  w.h = open_ok(path, VD_LOG_DURABLE, 1);
  atomic_init(&w.stop, 0);
  atomic_init(&w.progress, 0);
  atomic_init(&w.done, 0);
  w.submitted = 0;
  assert_int_equal(pthread_create(&t, NULL, busy_writer, &w), 0);
  for (i = 0; i < 4; i++) {
    snprintf(dest, sizeof dest, "%s/backup-%d.db", dir, i);
    while (atomic_load(&w.progress) < 100 * (i + 1) && !atomic_load(&w.done))
      usleep(1000);
    if (vd_history_backup(path, dest, 0, &rep, &err) != 0)
      fail_msg("backup while writing: %s", err);
    assert_null(err);
    assert_true(rep.pages > 0 && rep.steps >= 1);
    assert_true(rep.verify.records >= 100 * (i + 1));
    /* the copy's head is the live chain's record at that seq */
    memset(&a, 0, sizeof a);
    a.seq = rep.verify.records;
    snprintf(a.hash, sizeof a.hash, "%s", rep.verify.head);
    assert_int_equal(vd_history_verify_anchor(path, &a, &live), 0);
    assert_int_equal(query_int(dest, "SELECT count(*) FROM decisions"),
                     rep.verify.records);
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    snprintf(dest + strlen(dest), 16, "-wal");
    assert_int_not_equal(access(dest, F_OK), 0);
  }
  atomic_store(&w.stop, 1);
  pthread_join(t, NULL);
  vd_history_close(w.h);

  /* an existing DEST: refused, untouched; replaced with force */
  snprintf(dest, sizeof dest, "%s/backup-0.db", dir);
  assert_int_equal(vd_history_backup(path, dest, 0, &rep, &err), VD_EINVALID);
  assert_non_null(strstr(err, "give --force"));
  free(err);
  assert_int_equal(vd_history_backup(path, dest, 1, &rep, &err), 0);
  assert_int_equal(query_int(dest, "SELECT count(*) FROM decisions"),
                   w.submitted);
  /* the database itself, never */
  assert_int_equal(vd_history_backup(path, path, 1, &rep, &err), VD_EINVALID);
  free(err);

  /* a database that does not verify: VD_EINVALID with the problem, and
   * no file (nor temporary) at DEST */
  shell(path, "UPDATE decisions SET elapsed_us = elapsed_us + 1 WHERE seq = 3");
  snprintf(dest, sizeof dest, "%s/bad.db", dir);
  assert_int_equal(vd_history_backup(path, dest, 0, &rep, &err), VD_EINVALID);
  assert_int_equal(rep.verify.problem, VD_VERIFY_CHANGED);
  assert_int_equal(rep.verify.seq, 3);
  assert_non_null(strstr(err, "does not verify"));
  free(err);
  assert_int_not_equal(access(dest, F_OK), 0);
  /* not a verdict database: refused as every reader refuses it */
  snprintf(dest, sizeof dest, "%s/other.db", dir);
  shell(dest, "CREATE TABLE t(x)");
  assert_int_equal(vd_history_backup(dest, path_in("b2.db"), 0, &rep, &err),
                   VD_EINVALID);
  assert_non_null(strstr(err, "not a verdict history database"));
  free(err);
}

/* ------------------------------------------------------------------------
 * Facts
 * ---------------------------------------------------------------------- */

/* Submit R (as an error record when ERROR is set) and wait until it is
 * committed. */
static void submit_and_wait(vd_history_t *h, uint64_t *upto, vd_record_t *r,
                            const char *error) {
  uint64_t seq;
  if (error) {
    r->result = r->trace = NULL;
    r->error_code = error;
    r->error_message = "refused";
  }
  assert_int_equal(vd_history_submit(h, 0, r, &seq), 0);
  assert_int_equal(await_seq(h, 0, upto, seq), 0);
}

static void submit_fact(vd_history_t *h, uint64_t *upto, int i,
                        const char *kind, const char *region,
                        const char *category, const char *customer,
                        int64_t at_ms, const char *error) {
  vd_record_t r;
  rec_store_t s;
  make_record(&r, &s, 9, i);
  r.kind = kind;
  r.region = region;
  r.category = category;
  r.customer_id = customer;
  r.at_ms = at_ms;
  submit_and_wait(h, upto, &r, error);
}

static void test_facts(void **state) {
  const char *path = path_in("facts.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_history_reader_t *rd = NULL;
  uint64_t upto = 0;
  int64_t n = -1, day = 86400000LL, t0 = 1795392000000LL;
  char *err = NULL;
  (void)state;
  submit_fact(h, &upto, 1, "escalation", "GD", "network", "A", t0, NULL);
  submit_fact(h, &upto, 2, "escalation", "GD", "network", "A", t0 + day, NULL);
  submit_fact(h, &upto, 3, "escalation", "GD", "network", "A", t0 + 40 * day,
              NULL);
  submit_fact(h, &upto, 4, "sla", "GD", "network", "A", t0 + day, NULL);
  submit_fact(h, &upto, 5, "escalation", "GD", "network", "A", t0 + day,
              "bad_input");
  submit_fact(h, &upto, 6, "escalation", "GD", "network", "B", t0 + day, NULL);
  submit_fact(h, &upto, 7, "escalation", "GD", "billing", "C", t0 + day, NULL);
  submit_fact(h, &upto, 8, "escalation", "GD-SZ", "network", "D", t0 + day,
              NULL);
  submit_fact(h, &upto, 9, "sla", "GD", "network", "E", t0 + 2 * day, NULL);
  vd_history_close(h);

  assert_int_equal(vd_history_reader_open(&rd, path, &err), 0);
  assert_null(err);
  /* A's escalations in [t0, t0 + 30d): 1 and 2; not 3 (later), 4 (sla),
   * 5 (an error) */
  assert_int_equal(vd_history_count_customer(rd, "A", "escalation", t0,
                                             t0 + 30 * day, &n),
                   0);
  assert_int_equal(n, 2);
  /* since is inclusive, until exclusive */
  assert_int_equal(vd_history_count_customer(rd, "A", "escalation", t0 + 1,
                                             t0 + day, &n),
                   0);
  assert_int_equal(n, 0);
  assert_int_equal(vd_history_count_customer(rd, "A", "escalation", t0,
                                             t0 + day + 1, &n),
                   0);
  assert_int_equal(n, 2);
  /* any kind */
  assert_int_equal(vd_history_count_customer(rd, "A", NULL, t0, t0 + 30 * day,
                                             &n),
                   0);
  assert_int_equal(n, 3);
  assert_int_equal(vd_history_count_customer(rd, "nobody", NULL, 0, INT64_MAX,
                                             &n),
                   0);
  assert_int_equal(n, 0);
  /* distinct customers with network complaints in GD on day 1: A, B, E
   * (A twice; C is billing, D is GD-SZ, A's error does not count) */
  assert_int_equal(vd_history_distinct_customers(rd, "GD", "network", t0,
                                                 t0 + 3 * day, &n),
                   0);
  assert_int_equal(n, 3);
  assert_int_equal(vd_history_distinct_customers(rd, "GD", "network",
                                                 t0 + day, t0 + 2 * day, &n),
                   0);
  assert_int_equal(n, 2);
  assert_string_equal(vd_history_reader_errmsg(rd), "");
  vd_history_reader_close(rd);

  /* the facts queries are answered from indexes alone */
  {
    sqlite3 *db;
    sqlite3_stmt *st;
    int covering = 0;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "EXPLAIN QUERY PLAN SELECT count(*) FROM decisions"
                           " WHERE customer_id = 'A' AND kind = 'x' AND"
                           " at_ms >= 0 AND at_ms < 9 AND error_code IS NULL",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
      covering += strstr((const char *)sqlite3_column_text(st, 3),
                         "COVERING INDEX decisions_customer") != NULL;
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "EXPLAIN QUERY PLAN SELECT count(DISTINCT"
                           " customer_id) FROM decisions WHERE region = 'GD'"
                           " AND category = 'x' AND at_ms >= 0 AND at_ms < 9"
                           " AND error_code IS NULL",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
      covering += strstr((const char *)sqlite3_column_text(st, 3),
                         "COVERING INDEX decisions_region_category") != NULL;
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(covering, 2);
  }

  /* a reader on a database that is not there */
  assert_int_equal(vd_history_reader_open(&rd, path_in("nope.db"), &err),
                   VD_ENOT_FOUND);
  assert_null(rd);
  assert_non_null(err);
  assert_non_null(strstr(err, "nope.db"));
  free(err);
}

/* One hand-made row for the complaint facts.  RESULT and REQUEST may be
 * NULL (then a default); ERROR makes it an error record. */
static void submit_row(vd_history_t *h, uint64_t *upto, int i,
                       const char *kind, const char *complaint,
                       const char *customer, int64_t at_ms,
                       const char *result, const char *request,
                       const char *error) {
  vd_record_t r;
  rec_store_t s;
  make_record(&r, &s, 8, i);
  r.kind = kind;
  r.complaint_id = complaint;
  r.customer_id = customer;
  r.at_ms = at_ms;
  if (result) {
    r.result = result;
    r.result_len = strlen(result);
  }
  if (request) {
    r.request = request;
    r.request_len = strlen(request);
  }
  submit_and_wait(h, upto, &r, error);
}

static int64_t complaints(vd_history_reader_t *rd, vd_complaints_t which,
                          const char *customer, const char *complaint,
                          int64_t since_ms, int64_t until_ms) {
  int64_t n = -1;
  int rc = vd_history_count_complaints(rd, which, customer, complaint,
                                       since_ms, until_ms, &n);
  if (rc)
    fail_msg("count_complaints(%d, %s, %s): %s", (int)which, customer,
             complaint, vd_history_reader_errmsg(rd));
  return n;
}

/* Customer K's complaints C-1 .. C-10 (C-1 is the one being decided at T),
 * around them other customers, other complaints, errors, zero offers, the
 * same complaint twice, rows just outside each window and bad JSON. */
static void test_complaint_facts(void **state) {
  const char *path = path_in("complaints.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_history_reader_t *rd = NULL;
  uint64_t upto = 0;
  int64_t day = 86400000LL, T = 1795392000000LL + 100 * day;
  int64_t m30 = T - 30 * day, m90 = T - 90 * day, n = -1;
  const char *esc = "escalation", *K = "K";
  const char *party = "{\"kind\":\"appeal\",\"input\":{\"complaint_id\":\"x\","
                      "\"appellant_is_party\":true}}";
  const char *not_party = "{\"kind\":\"appeal\",\"input\":{\"complaint_id\":"
                          "\"x\",\"appellant_is_party\":false}}";
  char *err = NULL;
  int i = 0;
  (void)state;
  /* the decisions that name K tie complaints to K */
  submit_row(h, &upto, ++i, esc, "C-1", K, T - 5 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, "sla", "C-2", NULL, T - 12 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-2", K, T - 10 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-3", K, T - 20 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-3", K, T - 19 * day, NULL, NULL, NULL);
  /* C-4: named by K in the window, but lodged before it */
  submit_row(h, &upto, ++i, "sla", "C-4", NULL, T - 40 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-4", K, T - 10 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-5", K, T - 50 * day, NULL, NULL, NULL);
  /* C-6: only an error names K, so it is not known to be K's */
  submit_row(h, &upto, ++i, esc, "C-6", K, T - 3 * day, NULL, NULL,
             "bad_input");
  submit_row(h, &upto, ++i, "sla", "C-6", NULL, T - 3 * day, NULL, NULL, NULL);
  /* C-7 is L's; C-8 is decided at T and after: not yet */
  submit_row(h, &upto, ++i, esc, "C-7", "L", T - 2 * day, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-8", K, T, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-8", K, T + day, NULL, NULL, NULL);
  /* C-9 starts exactly 30 days before T (since is inclusive) */
  submit_row(h, &upto, ++i, esc, "C-9", K, m30, NULL, NULL, NULL);
  submit_row(h, &upto, ++i, esc, "C-10", K, T - 100 * day, NULL, NULL, NULL);

  /* compensations: C-1 5000; C-2 zero, bad JSON, then an offer at T;
   * C-3 twice; C-5 inside 90 days; C-10 first offered 95 days ago; C-9 an
   * error; C-7 is L's; C-99 is nobody's (and not linked to K) */
  submit_row(h, &upto, ++i, "compensation", "C-1", NULL, T - 4 * day,
             "{\"offer_fen\":5000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-2", NULL, T - 11 * day,
             "{\"offer_fen\":0}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-2", NULL, T - 9 * day,
             "{\"offer_fen\":", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-2", NULL, T,
             "{\"offer_fen\":100}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-3", NULL, T - 18 * day,
             "{\"offer_fen\":2000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-3", NULL, T - 17 * day,
             "{\"offer_fen\":2000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-5", NULL, T - 49 * day,
             "{\"offer_fen\":1000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-10", NULL, T - 95 * day,
             "{\"offer_fen\":3000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-10", NULL, T - 60 * day,
             "{\"offer_fen\":3000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-9", NULL, T - 20 * day, NULL,
             NULL, "policy_error");
  submit_row(h, &upto, ++i, "compensation", "C-7", NULL, T - 2 * day,
             "{\"offer_fen\":9000}", NULL, NULL);
  submit_row(h, &upto, ++i, "compensation", "C-99", NULL, T - 2 * day,
             "{\"offer_fen\":700}", NULL, NULL);
  /* sla, escalation and appeal results have no offer_fen */
  submit_row(h, &upto, ++i, "sla", "C-4", NULL, T - 1 * day,
             "{\"offer_fen\":800}", NULL, NULL);

  /* appeals: C-3 twice; C-2 by someone who is not the customer; C-5 first
   * appealed 45 days ago; C-9 without appellant_is_party; C-1 an error;
   * C-7 L's; C-99 nobody's; C-4 a request that is not JSON */
  submit_row(h, &upto, ++i, "appeal", "C-3", NULL, T - 15 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-3", NULL, T - 14 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-2", NULL, T - 8 * day, NULL,
             not_party, NULL);
  submit_row(h, &upto, ++i, "appeal", "C-5", NULL, T - 45 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-5", NULL, T - 20 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-9", NULL, T - 25 * day, NULL, NULL,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-1", NULL, T - 1 * day, NULL, party,
             "bad_input");
  submit_row(h, &upto, ++i, "appeal", "C-7", NULL, T - 1 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-99", NULL, T - 1 * day, NULL, party,
             NULL);
  submit_row(h, &upto, ++i, "appeal", "C-4", NULL, T - 1 * day, NULL,
             "{\"kind\":", NULL);
  vd_history_close(h);

  assert_int_equal(vd_history_reader_open(&rd, path, &err), 0);
  assert_null(err);

  /* repeat: K's other complaints first decided in [T-30d, T): C-2 (its
   * sla came first), C-3 (twice, once), C-9 (at the edge); not C-1 (the
   * one decided), C-4 (lodged 40 days ago), C-5 and C-10 (older), C-6
   * (only an error names K), C-7 (L's), C-8 (at T and later) */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REPEAT, K, "C-1", m30, T), 3);
  /* a complaint not yet in the history: C-1 counts as another one */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REPEAT, K, "C-new", m30, T),
                   4);
  /* since inclusive, until exclusive: C-9 falls out one ms later, C-8 in
   * one ms later */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REPEAT, K, "C-1", m30 + 1,
                              T + 1),
                   3);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REPEAT, "L", "C-x", m30, T),
                   1);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REPEAT, "nobody", "C-1", 0,
                              INT64_MAX),
                   0);

  /* refunded: K's complaints, this one included, first offered above zero
   * in [T-90d, T): C-1, C-3 (twice, once), C-5; not C-2 (zero, bad JSON,
   * then only at T), C-10 (first offered 95 days ago), C-9 (an error),
   * C-4 (an sla result), C-7 (L's), C-99 (not K's) */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REFUNDED, K, "C-1", m90, T),
                   3);
  /* the complaint being decided counts even when nothing names K yet */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REFUNDED, K, "C-99", m90, T),
                   4);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REFUNDED, K, "C-1", m90, T + 1),
                   4);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REFUNDED, K, "C-1",
                              T - 96 * day, T),
                   4);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_REFUNDED, K, "C-1", m30, T), 2);

  /* over the head: K's complaints first appealed (by K) in [T-30d, T):
   * C-3 (twice, once), C-9 (no appellant_is_party: it defaults to true),
   * C-4 (a request SQLite cannot read: likewise, and no failure); not C-2
   * (not the customer's appeal), C-5 (first 45 days ago), C-1 (an
   * error), C-7 (L's), C-99 (not K's) */
  assert_int_equal(complaints(rd, VD_COMPLAINTS_OVER_HEAD, K, "C-1", m30, T),
                   3);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_OVER_HEAD, K, "C-99", m30, T),
                   4);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_OVER_HEAD, K, "C-1",
                              T - 50 * day, T),
                   4);
  assert_int_equal(complaints(rd, VD_COMPLAINTS_OVER_HEAD, "nobody", "C-0", 0,
                              INT64_MAX),
                   0);

  /* an unknown question is refused, not answered with 0 */
  assert_int_equal(vd_history_count_complaints(rd, (vd_complaints_t)99, K,
                                               "C-1", m30, T, &n),
                   VD_EINVALID);
  assert_null(vd_history_complaints_sql((vd_complaints_t)99));
  vd_history_reader_close(rd);

  /* every one reads indexes only: the customer's complaints from
   * decisions_customer (covering), each complaint's decisions by a seek
   * into decisions_complaint; never a scan of the table */
  {
    sqlite3 *db;
    int which;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    for (which = 0; which <= VD_COMPLAINTS_REFUNDED; which++) {
      vd_buf_t plan = VD_BUF_INIT;
      sqlite3_stmt *st;
      vd_buf_adds(&plan, "EXPLAIN QUERY PLAN ");
      vd_buf_adds(&plan, vd_history_complaints_sql(which));
      assert_int_equal(sqlite3_prepare_v2(db, plan.data, -1, &st, NULL),
                       SQLITE_OK);
      vd_buf_reset(&plan);
      while (sqlite3_step(st) == SQLITE_ROW) {
        vd_buf_adds(&plan, (const char *)sqlite3_column_text(st, 3));
        vd_buf_addc(&plan, '\n');
      }
      sqlite3_finalize(st);
      if (!strstr(plan.data, "SEARCH decisions USING COVERING INDEX "
                             "decisions_customer (customer_id=? AND at_ms") ||
          !strstr(plan.data, "INDEX decisions_complaint (complaint_id=?") ||
          (which == VD_COMPLAINTS_REPEAT &&
           !strstr(plan.data, "COVERING INDEX decisions_complaint")) ||
          strstr(plan.data, "SCAN decisions"))
        fail_msg("complaints query %d: plan\n%s", which, plan.data);
      vd_buf_release(&plan);
    }
    sqlite3_close(db);
  }
}

/* ------------------------------------------------------------------------
 * Revisions
 * ---------------------------------------------------------------------- */

static char *revision_of(const vd_bundle_file_t *f, size_t n) {
  vd_bundle_t *b;
  vd_buf_t err = VD_BUF_INIT;
  char *rev;
  assert_int_equal(vd_bundle_from_files(f, n, "test", &b, &err), 0);
  rev = strdup(vd_bundle_revision(b));
  vd_bundle_unref(b);
  vd_buf_release(&err);
  return rev;
}

/* The rows a filter selects, in seq order, every column as stored. */
static void test_query_rows(void **state) {
  const char *path = make_db("rows.db", 12);
  vd_history_filter_t f;
  vd_history_rows_t *rows;
  const vd_history_value_t *row;
  vd_buf_t err = VD_BUF_INIT;
  int64_t want;
  (void)state;
  assert_string_equal(vd_history_column_name(VD_HISTORY_SEQ), "seq");
  assert_string_equal(vd_history_column_name(VD_HISTORY_FACTS), "facts");
  assert_string_equal(vd_history_column_name(VD_HISTORY_HASH), "hash");
  assert_null(vd_history_column_name(VD_HISTORY_NCOLUMNS));

  /* seq 3 <= seq < 9 and received_ms >= seq 5's: 5 6 7 8, at most 3 */
  memset(&f, 0, sizeof f);
  f.has_seq = 1;
  f.seq_lo = 3;
  f.seq_hi = 9;
  f.has_since = 1;
  f.since_ms = 1795392000000LL + 5;
  f.has_limit = 1;
  f.limit = 3;
  f.kind = "compensation";
  assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
  for (want = 5; vd_history_rows_next(rows, &row) == 1; want++) {
    assert_true(row[VD_HISTORY_SEQ].is_int);
    assert_int_equal(row[VD_HISTORY_SEQ].i, want);
    assert_int_equal(row[VD_HISTORY_RECEIVED_MS].i, 1795392000000LL + want);
    assert_false(row[VD_HISTORY_KIND].is_int);
    assert_string_equal(row[VD_HISTORY_KIND].text, "compensation");
    assert_null(row[VD_HISTORY_FACTS].text); /* SQL NULL */
    assert_int_equal(row[VD_HISTORY_HASH].len, 64);
  }
  assert_int_equal(want, 8);
  assert_int_equal(vd_history_rows_next(rows, &row), 0); /* and stays 0 */
  vd_history_rows_close(rows);

  /* one decision by its id; a region none has */
  memset(&f, 0, sizeof f);
  f.decision_id = "01900000-0000-7000-8000-000000000007";
  assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
  assert_int_equal(vd_history_rows_next(rows, &row), 1);
  assert_int_equal(row[VD_HISTORY_SEQ].i, 7);
  assert_int_equal(vd_history_rows_next(rows, &row), 0);
  vd_history_rows_close(rows);
  f.decision_id = NULL;
  f.region = "BJ";
  assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
  assert_int_equal(vd_history_rows_next(rows, &row), 0);
  vd_history_rows_close(rows);

  /* no such file: the opening's message */
  assert_int_equal(vd_history_rows_open(&rows, path_in("none.db"), &f, &err),
                   VD_ENOT_FOUND);
  assert_null(rows);
  assert_non_null(strstr(err.data, "none.db"));
  vd_buf_release(&err);
}

/* Schema 8: each revision a record names gets a number of the file's
 * in the batch that first names it (NULL for none), decisions_revision
 * holds the number, and a search by the revision's name, in seq order
 * or newest first, finds its records by it. */
static void test_revision_numbers(void **state) {
  static const char *const revs[] = {"sha256:aa", NULL, "sha256:aa",
                                     "sha256:bb", "sha256:aa", "sha256:bb"};
  const char *path = path_in("revnum.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  uint64_t seq = 0, upto = 0;
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_buf_t err = VD_BUF_INIT;
  char *got;
  int i, round;
  (void)state;
  for (round = 0; round < 2; round++) { /* the second: numbers known */
    for (i = 0; i < 6; i++) {
      vd_record_t r;
      rec_store_t s;
      make_record(&r, &s, 0, round * 6 + i + 1);
      r.revision = revs[i];
      assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    }
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  }
  vd_history_close(h);
  got = query_text(path, "SELECT group_concat(n || '=' || revision, ',')"
                         " FROM (SELECT * FROM revision_numbers ORDER BY n)");
  assert_string_equal(got, "1=sha256:aa,2=sha256:bb");
  free(got);
  got = query_text(path, "SELECT group_concat(coalesce(revision_n, '-'), '')"
                         " FROM (SELECT * FROM decisions ORDER BY seq)");
  assert_string_equal(got, "1-1212" "1-1212");
  free(got);
  got = query_text(path, "SELECT group_concat(name, ',') FROM"
                         " (SELECT name FROM pragma_index_info("
                         "'decisions_revision') ORDER BY seqno)");
  assert_string_equal(got, "revision_n,received_ms");
  free(got);
  for (i = 0; i < 2; i++) {
    static const int64_t want[] = {4, 6, 10, 12};
    int k;
    memset(&f, 0, sizeof f);
    f.revision = "sha256:bb";
    f.newest_first = i;
    assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
    for (k = 0; k < 4; k++) {
      assert_int_equal(vd_history_rows_next(rows, &row), 1);
      assert_int_equal(row[VD_HISTORY_SEQ].i, want[i ? 3 - k : k]);
      assert_string_equal(row[VD_HISTORY_REVISION].text, "sha256:bb");
    }
    assert_int_equal(vd_history_rows_next(rows, &row), 0);
    vd_history_rows_close(rows);
    /* with another field leading, the revision is checked by name */
    f.region = "GD";
    f.newest_first = 1;
    assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
    for (k = 0; k < 4; k++)
      assert_int_equal(vd_history_rows_next(rows, &row), 1);
    assert_int_equal(vd_history_rows_next(rows, &row), 0);
    vd_history_rows_close(rows);
  }
  memset(&f, 0, sizeof f);
  f.revision = "sha256:cc"; /* never named: no number, no row */
  assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
  assert_int_equal(vd_history_rows_next(rows, &row), 0);
  vd_history_rows_close(rows);
  vd_buf_release(&err);
}

/* revision_numbers' numbers 1 and 2 renamed ONE and TWO, as someone with
 * the sqlite3 shell would (through a third name: revision is UNIQUE). */
static void name_numbers(const char *path, const char *one, const char *two) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "UPDATE revision_numbers SET revision = 'x' WHERE n = 1;"
           "UPDATE revision_numbers SET revision = '%s' WHERE n = 2;"
           "UPDATE revision_numbers SET revision = '%s' WHERE n = 1",
           two, one);
  shell(path, sql);
}

/* The writer inserts a batch's rows sixteen to a statement and the rows
 * past the last full group one at a time (history_writer.c,
 * INSERT_GROUP): batches of every size around those edges store every
 * record once, in order, as it was hashed (verify recomputes each hash
 * from the stored columns, so a row bound with another's values, or a
 * trace key, revision number or hash in the wrong row, fails it). */
static void test_batch_sizes_grouped(void **state) {
  static const int sizes[] = {1, 15, 16, 17, 31, 32, 33, 50};
  vd_bundle_file_t one[1] = {{"national/sla.lua", "return {}\n", 10}};
  char *rev = revision_of(one, 1);
  size_t k;
  (void)state;
  for (k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    const int n = sizes[k];
    char name[32], sql[512];
    const char *path;
    vd_history_t *h;
    vd_verify_report_t rep;
    uint64_t seq = 0, upto = 0;
    int i;
    snprintf(name, sizeof name, "grouped-%d.db", n);
    path = path_in(name);
    h = open_ok(path, VD_LOG_DURABLE, 1);
    assert_int_equal(vd_history_store_revision(h, rev, one, 1, NULL), 0);
    vd_hist_aux_lock(h); /* the writer waits: one batch of n */
    for (i = 1; i <= n; i++) {
      vd_record_t r;
      rec_store_t s;
      make_record(&r, &s, 0, i);
      if (i % 3 == 0) /* a revision number in some rows only */
        r.revision = rev;
      if (i % 2 == 0) { /* two traces, by key */
        r.trace = "[{\"rule\":\"R2\"}]";
        r.trace_len = strlen(r.trace);
      }
      assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    }
    vd_hist_aux_unlock(h);
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
    assert_int_equal(upto, (uint64_t)n);
    vd_history_close(h);
    if (vd_history_verify(path, &rep) != 0)
      fail_msg("%d records in one batch: verify: %s", n, rep.message);
    assert_int_equal(rep.records, n);
    /* row i is record i, with its own trace and revision number */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM decisions WHERE decision_id ="
             " printf('01900000-0000-7000-8000-0000%%08d', seq)"
             " AND elapsed_us = 120 + seq"
             " AND (revision_n IS NOT NULL) = (seq %% 3 = 0)"
             " AND " VD_HIST_TRACE_SQL " = CASE seq %% 2 WHEN 0"
             " THEN '[{\"rule\":\"R2\"}]' ELSE '[{\"rule\":\"R1\"}]' END");
    assert_int_equal(query_int(path, sql), n);
  }
  free(rev);
}

/* The numbers of schema 8 are not hashed, so verify checks them against
 * the names: a record's number moved to another revision, taken away,
 * given to a record without a revision, or two numbers' names swapped,
 * is a changed record at the first row it misleads, found in the one walk
 * of the chain. */
static void test_revision_numbers_verified(void **state) {
  vd_bundle_file_t one[1] = {{"national/sla.lua", "return {}\n", 10}};
  vd_bundle_file_t two[1] = {{"national/sla.lua", "return { }\n", 11}};
  char *revs[2] = {revision_of(one, 1), revision_of(two, 1)};
  const char *path = path_in("revnum-verify.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  uint64_t seq = 0, upto = 0;
  vd_verify_report_t rep;
  char *err = NULL, id[64];
  int i;
  (void)state;
  assert_int_equal(vd_history_store_revision(h, revs[0], one, 1, &err), 0);
  assert_int_equal(vd_history_store_revision(h, revs[1], two, 1, &err), 0);
  for (i = 1; i <= 6; i++) { /* revisions 1, -, 1, 2, 1, 2 */
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, i);
    r.revision = i == 2 ? NULL : revs[i == 4 || i == 6];
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  {
    static const struct {
      const char *tamper, *undo;
      int seq;
    } cases[] = {
        {"UPDATE decisions SET revision_n = 2 WHERE seq = 3",
         "UPDATE decisions SET revision_n = 1 WHERE seq = 3", 3},
        {"UPDATE decisions SET revision_n = NULL WHERE seq = 4",
         "UPDATE decisions SET revision_n = 2 WHERE seq = 4", 4},
        {"UPDATE decisions SET revision_n = 1 WHERE seq = 2",
         "UPDATE decisions SET revision_n = NULL WHERE seq = 2", 2},
        {NULL, NULL, 1}, /* the names of 1 and 2 swapped: below */
    };
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
      if (cases[i].tamper)
        shell(path, cases[i].tamper);
      else
        name_numbers(path, revs[1], revs[0]);
      snprintf(id, sizeof id, "01900000-0000-7000-8000-%04d%08d", 0,
               cases[i].seq);
      expect_problem(path, VD_VERIFY_CHANGED, cases[i].seq, id,
                     cases[i].seq - 1);
      if (cases[i].undo)
        shell(path, cases[i].undo);
      else
        name_numbers(path, revs[0], revs[1]);
      if (vd_history_verify(path, &rep) != 0)
        fail_msg("verify after undoing case %d: %s", i, rep.message);
    }
  }
  free(revs[0]);
  free(revs[1]);
}

/* Schema 9: a trace is stored once in `traces`, keyed by its SHA-256,
 * and a row keeps the key; readers get the trace's bytes back, verify
 * hashes them, and an edited, swapped or deleted trace is a changed
 * record at the first row that names it. */
static void test_traces_once(void **state) {
  static const char *const traces[] = {"[{\"rule\":\"A\"}]",
                                       "[{\"rule\":\"B\"}]", NULL};
  const char *path = path_in("traces.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  uint64_t seq = 0, upto = 0;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_history_filter_t f;
  vd_buf_t err = VD_BUF_INIT;
  vd_verify_report_t rep;
  char id[64];
  int i, round;
  (void)state;
  for (round = 0; round < 2; round++) { /* the second: traces stored */
    for (i = 1; i <= 6; i++) {
      vd_record_t r;
      rec_store_t s;
      make_record(&r, &s, 0, round * 6 + i);
      r.trace = traces[(i - 1) % 3]; /* A, B, none (an error), A, B... */
      r.trace_len = r.trace ? strlen(r.trace) : 0;
      if (!r.trace)
        r.result = NULL, r.result_len = 0, r.error_code = "bad_input";
      assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    }
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  }
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM traces"), 2);
  assert_int_equal(query_int(path, "SELECT count(*) FROM traces WHERE"
                                   " length(sha256) = 32"), 2);
  assert_int_equal(query_int(path, "SELECT count(trace) FROM decisions"), 0);
  assert_int_equal(query_int(path, "SELECT count(trace_sha) FROM decisions"),
                   8);
  memset(&f, 0, sizeof f);
  assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
  for (i = 1; i <= 12; i++) {
    const char *want = traces[(i - 1) % 3];
    assert_int_equal(vd_history_rows_next(rows, &row), 1);
    if (want)
      assert_string_equal(row[VD_HISTORY_TRACE].text, want);
    else
      assert_null(row[VD_HISTORY_TRACE].text);
  }
  assert_int_equal(vd_history_rows_next(rows, &row), 0);
  vd_history_rows_close(rows);
  vd_buf_release(&err);
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.records, 12);

  /* trace B edited where it is stored: seq 2 is the first to name it */
  snprintf(id, sizeof id, "01900000-0000-7000-8000-%04d%08d", 0, 2);
  shell(path, "UPDATE traces SET trace = '[{\"rule\":\"C\"}]'"
              " WHERE trace = '[{\"rule\":\"B\"}]'");
  expect_problem(path, VD_VERIFY_CHANGED, 2, id, 1);
  shell(path, "UPDATE traces SET trace = '[{\"rule\":\"B\"}]'"
              " WHERE trace = '[{\"rule\":\"C\"}]'");
  assert_int_equal(vd_history_verify(path, &rep), 0);
  /* seq 4 (trace A) made to name trace B's key, then put back */
  shell(path, "UPDATE decisions SET trace_sha ="
              " (SELECT trace_sha FROM decisions WHERE seq = 2) WHERE seq = 4");
  snprintf(id, sizeof id, "01900000-0000-7000-8000-%04d%08d", 0, 4);
  expect_problem(path, VD_VERIFY_CHANGED, 4, id, 3);
  shell(path, "UPDATE decisions SET trace_sha ="
              " (SELECT trace_sha FROM decisions WHERE seq = 1) WHERE seq = 4");
  assert_int_equal(vd_history_verify(path, &rep), 0);
  /* trace A's row deleted: seq 1 has no trace any more */
  shell(path, "DELETE FROM traces WHERE trace = '[{\"rule\":\"A\"}]'");
  snprintf(id, sizeof id, "01900000-0000-7000-8000-%04d%08d", 0, 1);
  expect_problem(path, VD_VERIFY_CHANGED, 1, id, 0);
}

/* A cursor reads a row's trace by its key and keeps the texts it read
 * (history_query.c, "Traces"): many distinct traces, more than it keeps,
 * each read back as stored in every order the rows name them; a row
 * stored before schema 9 (its trace in the row, no key) as it is; a key
 * not in `traces` as NULL; and nothing when the trace is not asked for. */
static void test_traces_by_key(void **state) {
  enum { NTRACES = 90, NROWS = 400 };
  const char *path = path_in("traces_key.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  char traces[NTRACES][48];
  uint64_t seq = 0, upto = 0;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_history_filter_t f;
  vd_buf_t err = VD_BUF_INIT;
  int i, pass;
  (void)state;
  for (i = 0; i < NTRACES; i++)
    snprintf(traces[i], sizeof traces[i], "[{\"rule\":\"r%d\"}]", i);
  for (i = 1; i <= NROWS; i++) {
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, i);
    /* back and forth over the traces, so that a text read long ago is
     * named again after others took its place */
    r.trace = traces[(i * 37 + i / 50) % NTRACES];
    r.trace_len = strlen(r.trace);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  assert_int_equal(query_int(path, "SELECT count(*) FROM traces"), NTRACES);
  /* seq 7 as a row stored before schema 9 keeps it; seq 9's trace gone */
  shell(path, "UPDATE decisions SET trace = '[\"inline\"]', trace_sha = NULL"
              " WHERE seq = 7");
  shell(path, "UPDATE decisions SET trace_sha = randomblob(32) WHERE seq = 9");
  for (pass = 0; pass < 3; pass++) {
    memset(&f, 0, sizeof f);
    if (pass == 1) /* the columns a replay names */
      f.columns = (uint64_t)1 << VD_HISTORY_SEQ |
                  (uint64_t)1 << VD_HISTORY_TRACE |
                  (uint64_t)1 << VD_HISTORY_RESULT;
    if (pass == 2) /* no trace asked for */
      f.columns = (uint64_t)1 << VD_HISTORY_SEQ |
                  (uint64_t)1 << VD_HISTORY_RESULT;
    assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
    for (i = 1; i <= NROWS; i++) {
      const char *want = traces[(i * 37 + i / 50) % NTRACES];
      assert_int_equal(vd_history_rows_next(rows, &row), 1);
      assert_int_equal(row[VD_HISTORY_SEQ].i, i);
      if (i == 7)
        want = "[\"inline\"]";
      if (i == 9 || pass == 2) {
        assert_null(row[VD_HISTORY_TRACE].text);
        continue;
      }
      assert_non_null(row[VD_HISTORY_TRACE].text);
      assert_string_equal(row[VD_HISTORY_TRACE].text, want);
      assert_int_equal(row[VD_HISTORY_TRACE].len, strlen(want));
    }
    assert_int_equal(vd_history_rows_next(rows, &row), 0);
    vd_history_rows_close(rows);
  }
  vd_buf_release(&err);
}

/* Every combination of the console's search fields (newest first, a
 * page of 51, the first page and a later one) is read from an index:
 * never "SCAN decisions" (every row), and a sort ("TEMP B-TREE") only
 * when a field that selects a handful of rows leads (decision id,
 * complaint, customer).  The index is the one the leading field names. */
static void test_query_newest_plans(void **state) {
  enum { DECISION, COMPLAINT, CUSTOMER, REVISION, ERROR, REGION, KIND,
         RANGE, NFIELDS };
  static const char *const lead_index[] = {
      [DECISION] = "decisions_decision_id", [COMPLAINT] = "decisions_complaint",
      [CUSTOMER] = "decisions_customer",    [REVISION] = "decisions_revision",
      [ERROR] = "decisions_error",          [REGION] = "decisions_region"};
  const char *path = make_db("plans.db", 3);
  vd_buf_t plan = VD_BUF_INIT, err = VD_BUF_INIT;
  unsigned set;
  int page, none, i;
  (void)state;
  for (set = 0; set < 1u << NFIELDS; set++)
    for (page = 0; page < 2; page++)
      for (none = 0; none < 2; none++) {
        vd_history_filter_t f;
        const char *want = "decisions_received";
        if (none && (set & 1u << ERROR))
          continue;
        memset(&f, 0, sizeof f);
        f.newest_first = f.has_limit = 1;
        f.limit = 51;
        f.decision_id = set & 1u << DECISION ? "01900000-0000-7000-8000" : NULL;
        f.complaint_id = set & 1u << COMPLAINT ? "C-1" : NULL;
        f.customer_id = set & 1u << CUSTOMER ? "U-1" : NULL;
        f.revision = set & 1u << REVISION ? "sha256:00" : NULL;
        f.error_code = set & 1u << ERROR ? "bad_input" : none ? "none" : NULL;
        f.region = set & 1u << REGION ? "BJ" : NULL;
        f.kind = set & 1u << KIND ? "sla" : NULL;
        f.has_since = f.has_until = (set & 1u << RANGE) != 0;
        f.since_ms = 1795392000000LL;
        f.until_ms = f.since_ms + 3600000;
        f.has_before = page;
        f.before_ms = f.since_ms + 1800000;
        f.before_seq = 7;
        for (i = 0; i < REGION + 1; i++)
          if (set & 1u << i) {
            want = lead_index[i];
            break;
          }
        vd_buf_reset(&plan);
        assert_int_equal(vd_hist_rows_plan(path, &f, &plan, &err), 0);
        if (strstr(plan.data, "SCAN decisions") &&
            !strstr(plan.data, "SCAN decisions USING INDEX"))
          fail_msg("fields %#x page %d: reads every row: %s", set, page,
                   plan.data);
        if (!strstr(plan.data, want))
          fail_msg("fields %#x page %d: not %s: %s", set, page, want,
                   plan.data);
        if (strstr(plan.data, "TEMP B-TREE") && i > CUSTOMER)
          fail_msg("fields %#x page %d: sorts: %s", set, page, plan.data);
      }
  vd_buf_release(&plan);
  vd_buf_release(&err);
}

/* Newest first, page by page with the cursor of each page's last row:
 * every row once, in (received_ms, seq) descending order, also where
 * rows share a millisecond and a page ends inside such a run, and with a
 * time range whose end is past or before the cursor. */
static void test_query_newest_pages(void **state) {
  const char *path = make_db("pages.db", 12);
  static const int64_t want[] = {12, 11, 9, 10, 8, 7, 6, 5, 4, 3, 2, 1};
  const int64_t t0 = 1795392000000LL;
  vd_buf_t err = VD_BUF_INIT;
  int round;
  (void)state;
  /* 5, 6 and 7 arrive in one millisecond; 10 before 9 */
  shell(path, "UPDATE decisions SET received_ms = 1795392000006"
              " WHERE seq IN (5, 6, 7);"
              "UPDATE decisions SET received_ms = 1795392000009"
              " WHERE seq = 10;"
              "UPDATE decisions SET received_ms = 1795392000010"
              " WHERE seq = 9;");
  for (round = 0; round < 3; round++) {
    vd_history_filter_t f;
    vd_history_rows_t *rows;
    const vd_history_value_t *row;
    size_t got = 0, first = 0, last = sizeof want / sizeof want[0];
    memset(&f, 0, sizeof f);
    f.newest_first = f.has_limit = 1;
    f.limit = 2;
    if (round == 1) { /* until after every row: the cursor bounds */
      f.has_until = 1;
      f.until_ms = t0 + 1000;
    } else if (round == 2) { /* [t0 + 4, t0 + 10): 10 8 7 6 5 4 */
      f.has_since = f.has_until = 1;
      f.since_ms = t0 + 4;
      f.until_ms = t0 + 10;
      first = 3;
      last = 9;
    }
    for (;;) {
      int n = 0;
      assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
      while (vd_history_rows_next(rows, &row) == 1) {
        assert_true(first + got < last);
        if (row[VD_HISTORY_SEQ].i != want[first + got])
          fail_msg("round %d, row %zu: seq %lld, not %lld", round, got,
                   (long long)row[VD_HISTORY_SEQ].i,
                   (long long)want[first + got]);
        f.before_ms = row[VD_HISTORY_RECEIVED_MS].i;
        f.before_seq = row[VD_HISTORY_SEQ].i;
        f.has_before = 1;
        got++;
        n++;
      }
      vd_history_rows_close(rows);
      if (n < 2)
        break;
    }
    assert_int_equal(first + got, last);
  }
  vd_buf_release(&err);
}

/* Ranges of seq with about as many selected rows each, for replay. */
static void test_query_split(void **state) {
  const char *path = make_db("split.db", 12);
  vd_history_filter_t f;
  vd_buf_t err = VD_BUF_INIT;
  int64_t b[6], total = 0;
  int i, in11 = -1, in12 = -1;
  (void)state;
  memset(&f, 0, sizeof f);
  assert_int_equal(vd_history_split(path, &f, 3, b, NULL, &err), 0);
  assert_int_equal(b[0], 1);
  assert_int_equal(b[1], 5);
  assert_int_equal(b[2], 9);
  assert_int_equal(b[3], 13); /* one past the last row: by seq */
  /* more ranges than selected rows: some are empty, each row in one */
  f.has_since = 1;
  f.since_ms = 1795392000000LL + 11; /* seq 11 and 12 */
  assert_int_equal(vd_history_split(path, &f, 5, b, &total, &err), 0);
  assert_int_equal(total, 2);
  assert_int_equal(b[0], 11);
  assert_int_equal(b[5], 13);
  for (i = 0; i < 5; i++) {
    assert_true(b[i] <= b[i + 1]);
    if (b[i] <= 11 && 11 < b[i + 1])
      in11 = i;
    if (b[i] <= 12 && 12 < b[i + 1])
      in12 = i;
  }
  assert_true(in11 >= 0 && in12 > in11);
  vd_buf_release(&err);
}

static void test_revisions(void **state) {
  const char *path = path_in("rev.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  static char bin[] = "\0\1\2binary\0tail";
  vd_bundle_file_t files[3] = {
      {"regions/GD/sla.lua", "return { rules = {} }\n", 22},
      {"national/sla.lua", "-- national\nreturn {}\n", 22},
      {"calendar/2026.bin", bin, sizeof bin},
  };
  vd_bundle_file_t second[2] = {
      {"national/sla.lua", "-- national\nreturn {}\n", 22},
      {"national/appeal.lua", "return 1\n", 9},
  };
  vd_bundle_file_t *got = NULL;
  size_t n = 0;
  char *err = NULL, *rev1 = revision_of(files, 3), *rev2 = revision_of(second, 2);
  vd_verify_report_t rep;
  (void)state;
  assert_int_equal(vd_history_store_revision(h, rev1, files, 3, &err), 0);
  assert_null(err);
  /* idempotent */
  assert_int_equal(vd_history_store_revision(h, rev1, files, 3, &err), 0);
  assert_int_equal(vd_history_store_revision(h, rev2, second, 2, &err), 0);
  /* a name that does not match the files */
  assert_int_equal(vd_history_store_revision(h, rev2, files, 3, &err),
                   VD_EINVALID);
  assert_non_null(strstr(err, rev2));
  free(err);
  assert_int_equal(vd_history_record_activation(h, rev1, "startup", "test",
                                                "/srv/policies", 1, NULL, &err),
                   0);
  assert_int_equal(vd_history_record_activation(h, rev2, "reload", NULL, NULL,
                                                0, "syntax error", &err),
                   0);
  vd_history_close(h);

  assert_int_equal(query_int(path, "SELECT count(*) FROM revisions"), 2);
  /* the shared file is stored once */
  assert_int_equal(query_int(path, "SELECT count(*) FROM blobs"), 4);
  assert_int_equal(query_int(path, "SELECT count(*) FROM revision_files"), 5);
  assert_int_equal(query_int(path, "SELECT count(*) FROM activations WHERE"
                                   " ok = 0 AND error = 'syntax error'"),
                   1);

  /* round trip: same bytes, in path order */
  assert_int_equal(vd_history_load_revision(path, rev1, &got, &n, &err), 0);
  assert_int_equal(n, 3);
  assert_string_equal(got[0].path, "calendar/2026.bin");
  assert_int_equal(got[0].len, sizeof bin);
  assert_memory_equal(got[0].data, bin, sizeof bin);
  assert_string_equal(got[1].path, "national/sla.lua");
  assert_memory_equal(got[1].data, files[1].data, 22);
  assert_string_equal(got[2].path, "regions/GD/sla.lua");
  assert_memory_equal(got[2].data, files[0].data, 22);
  assert_int_equal(got[2].data[22], '\0');
  {
    char *again = revision_of(got, n);
    assert_string_equal(again, rev1);
    free(again);
  }
  vd_history_free_files(got, n);

  assert_int_equal(vd_history_load_revision(path, "sha256:none", &got, &n, &err),
                   VD_ENOT_FOUND);
  assert_non_null(strstr(err, "sha256:none"));
  free(err);
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.revisions, 2);

  /* alter a policy file inside the database */
  shell(path, "UPDATE blobs SET data = CAST('return 2\n' AS BLOB)"
              " WHERE size = 9");
  assert_int_equal(vd_history_load_revision(path, rev2, &got, &n, &err),
                   VD_EINVALID);
  assert_non_null(strstr(err, "altered"));
  free(err);
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.problem, VD_VERIFY_REVISION);
  assert_non_null(strstr(rep.message, "national/appeal.lua"));
  free(rev1);
  free(rev2);
}

/* The admin channel's revision list: activations, then revisions. */
static void test_query_revisions_json(void **state) {
  const char *path = path_in("revlist.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_bundle_file_t files[2] = {
      {"national/sla.lua", "-- national\nreturn {}\n", 22},
      {"national/appeal.lua", "return 1\n", 9},
  };
  char *rev = revision_of(files, 2), *err = NULL;
  vd_buf_t out = VD_BUF_INIT, why = VD_BUF_INIT, want = VD_BUF_INIT;
  (void)state;
  assert_int_equal(vd_history_store_revision(h, rev, files, 2, &err), 0);
  assert_int_equal(vd_history_record_activation(h, rev, "reload", NULL,
                                                "/srv/p", 0, "tests failed",
                                                &err),
                   0);
  vd_history_close(h);
  assert_int_equal(vd_history_revisions_json(path, &out, &why), 0);
  assert_non_null(strstr(out.data, "\"activations\":[{\"at\":\""));
  vd_buf_addf(&want,
              "\"revision\":\"%s\",\"trigger\":\"reload\",\"who\":null,"
              "\"source\":\"/srv/p\",\"ok\":false,\"error\":\"tests "
              "failed\"}],\"revisions\":[{\"revision\":\"%s\",\"stored_at\":",
              rev, rev);
  assert_non_null(strstr(out.data, want.data));
  assert_non_null(strstr(out.data, "\"files\":2,\"bytes\":31}]"));
  vd_buf_reset(&out);
  assert_int_not_equal(
      vd_history_revisions_json(path_in("none.db"), &out, &why), 0);
  assert_non_null(strstr(why.data, "none.db"));
  vd_buf_release(&out);
  vd_buf_release(&why);
  vd_buf_release(&want);
  free(rev);
}

static void test_verify_missing_revision(void **state) {
  const char *path = path_in("norev.db");
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_record_t r;
  rec_store_t s;
  uint64_t seq, upto = 0;
  vd_verify_report_t rep;
  (void)state;
  make_record(&r, &s, 0, 1);
  r.revision = "sha256:gone";
  assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.problem, VD_VERIFY_REVISION);
  assert_int_equal(rep.seq, 1);
  assert_non_null(strstr(rep.message, "sha256:gone"));
}

/* ------------------------------------------------------------------------
 * The auditor commands
 * ---------------------------------------------------------------------- */

/* The `verdict` binary under test: $VERDICT_BUILD/verdict (as the
 * black-box tests find it), else the one beside this test's directory
 * (BUILD/tests/test_history -> BUILD/verdict).  "" if there is none. */
static const char *verdict_bin(void) {
  static char bin[4096];
  const char *build = getenv("VERDICT_BUILD");
  char self[4000];
  ssize_t n;
  if (build && *build) {
    snprintf(bin, sizeof bin, "%s/verdict", build);
  } else if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) > 0) {
    char *slash;
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash)
      *slash = '\0';
    snprintf(bin, sizeof bin, "%s/../verdict", self);
  }
  return access(bin, X_OK) == 0 ? bin : "";
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  long len;
  char *s;
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  rewind(f);
  s = malloc((size_t)len + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
  s[len] = '\0';
  fclose(f);
  return s;
}

/* Run `verdict ARGS... NULL` with stdout and stderr captured (malloc'd);
 * return its exit status. */
static int run_verdict(char **out, char **err, ...) {
  const char *files[2] = {path_in("cli.out"), path_in("cli.err")};
  char *argv[32];
  int argc = 1, status;
  pid_t pid;
  va_list ap;
  argv[0] = (char *)verdict_bin();
  va_start(ap, err);
  while (argc < 31 && (argv[argc] = va_arg(ap, char *)) != NULL)
    argc++;
  va_end(ap);
  argv[argc] = NULL;
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int i;
    for (i = 0; i < 2; i++) {
      int fd = open(files[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0 || dup2(fd, i + 1) < 0)
        _exit(127);
      close(fd);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  *out = slurp(files[0]);
  *err = slurp(files[1]);
  return WEXITSTATUS(status);
}

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* The `history` commands, through the real binary as an auditor runs
 * them.  Skipped when the binary has not been built beside the tests. */
static void test_cli(void **state) {
  const char *path;
  char *out, *err;
  char db[160];
  (void)state;
  if (!*verdict_bin()) {
    print_message("no verdict binary beside the tests (set VERDICT_BUILD)\n");
    skip();
  }
  path = make_db("cli.db", 12);
  snprintf(db, sizeof db, "--db=%s", path);

  assert_int_equal(run_verdict(&out, &err, "history", "verify",
                           "--db", path, NULL),
                   0);
  assert_non_null(strstr(out, "12 records verified"));
  free(out);
  free(err);

  /* show: every field, the JSON pretty-printed */
  assert_int_equal(run_verdict(&out, &err, "history", "show",
                           "01900000-0000-7000-8000-000000000003", db, NULL),
                   0);
  assert_non_null(strstr(out, "T-0-3"));
  assert_non_null(strstr(out, "\"offer_fen\": 300"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "show",
                           "01900000-0000-7000-8000-000000000003", db,
                           "--format", "json", NULL),
                   0);
  assert_non_null(strstr(out, "\"result\":{\"offer_fen\":300,"));
  assert_non_null(strstr(out, "\"seq\":3"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "show",
                           "no-such-id", db, NULL),
                   1);
  assert_non_null(strstr(err, "no-such-id"));
  free(out);
  free(err);

  /* list with filters, in every format */
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--format", "csv", NULL),
                   0);
  assert_int_equal(count_lines(out), 13); /* header + 12 */
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--complaint", "T-0-7", "--format", "csv", NULL),
                   0);
  assert_int_equal(count_lines(out), 2);
  assert_non_null(strstr(out, "01900000-0000-7000-8000-000000000007"));
  free(out);
  free(err);
  /* received_ms of record i is 1795392000000 + i: 2026-11-23T00:00:00Z */
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--since", "2026-11-23T08:00:00.005+08:00",
                           "--until", "2026-11-23T00:00:00.009Z", "--format",
                           "json", NULL),
                   0);
  assert_int_equal(count_lines(out), 6); /* [, 5..8 , ] */
  assert_non_null(strstr(out, "000000000005"));
  assert_null(strstr(out, "000000000009"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--region", "GD", "--kind", "compensation",
                           "--limit", "3", NULL),
                   0);
  assert_int_equal(count_lines(out), 4); /* header + 3 */
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--kind", "sla", "--format", "csv", NULL),
                   0);
  assert_int_equal(count_lines(out), 1);
  free(out);
  free(err);

  /* errors name what is wrong */
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--since", "yesterday", NULL),
                   2);
  assert_non_null(strstr(err, "--since"));
  assert_non_null(strstr(err, "yesterday"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--format", "xml", NULL),
                   2);
  assert_non_null(strstr(err, "--format"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "list", db,
                           "--limit", NULL),
                   2);
  assert_non_null(strstr(err, "--limit"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "frobnicate",
                           NULL),
                   2);
  assert_non_null(strstr(err, "frobnicate"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "verify",
                           "--db", path_in("missing.db"), NULL),
                   2);
  assert_non_null(strstr(err, "missing.db"));
  free(out);
  free(err);

  /* tampering: exit status 1, naming the record */
  shell(path, "UPDATE decisions SET region = 'GX' WHERE seq = 6");
  assert_int_equal(run_verdict(&out, &err, "history", "verify",
                           db, NULL),
                   1);
  assert_non_null(strstr(out, "01900000-0000-7000-8000-000000000006"));
  assert_non_null(strstr(out, "seq 6"));
  free(out);
  free(err);
  assert_int_equal(run_verdict(&out, &err, "history", "verify",
                           db, "--format", "json", NULL),
                   1);
  assert_non_null(strstr(out, "\"problem\":\"changed\""));
  free(out);
  free(err);

}

/* ------------------------------------------------------------------------
 * The activations' chain (schema 3)
 * ---------------------------------------------------------------------- */

#define VD_ZERO64 \
  "0000000000000000000000000000000000000000000000000000000000000000"

/* A database with two records and three activations (the second refused,
 * the third with no who), closed again. */
static const char *acts_db(const char *name) {
  const char *path = make_db(name, 2);
  vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
  char *err = NULL;
  assert_int_equal(vd_history_record_activation(h, "sha256:a1", "startup",
                                                "ops", "/srv/p", 1, NULL, &err),
                   0);
  assert_int_equal(vd_history_record_activation(h, "sha256:a2", "reload",
                                                "alice", "/srv/p", 0,
                                                "syntax error", &err),
                   0);
  assert_int_equal(vd_history_record_activation(h, "sha256:a3", "admin", NULL,
                                                NULL, 1, NULL, &err),
                   0);
  assert_null(err);
  vd_history_close(h);
  return path;
}

/* verify fails on PATH with PROBLEM in activation ID, and says so. */
static void expect_act_problem(const char *path, vd_verify_problem_t problem,
                               int64_t id, const char *says) {
  vd_verify_report_t rep;
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  if (rep.problem != problem || rep.activation != id ||
      !strstr(rep.message, says))
    fail_msg("problem %d at activation %lld: %s", (int)rep.problem,
             (long long)rep.activation, rep.message);
  assert_int_equal(rep.records, 2); /* the decisions all verified first */
  assert_int_equal(rep.seq, 0);
}

static void test_activations_chain(void **state) {
  const char *path = acts_db("acts.db");
  vd_verify_report_t rep;
  char *hash;
  (void)state;
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.activations, 3);
  assert_int_equal(rep.act_last, 3);
  assert_int_equal(rep.sealed, 0);
  assert_non_null(strstr(rep.message, "; 3 activations verified, chain "
                                      "head "));
  assert_non_null(strstr(rep.message, rep.act_head));
  assert_int_equal(query_int(path, "SELECT last_id FROM activation_head"), 3);
  hash = query_text(path, "SELECT hash FROM activation_head");
  assert_string_equal(hash, rep.act_head);
  free(hash);

  /* who edited */
  shell(path, "UPDATE activations SET who = 'mallory' WHERE id = 2");
  expect_act_problem(path, VD_VERIFY_CHANGED, 2,
                     "activation 2 (reload by mallory at ");
  path = acts_db("acts-null.db");
  shell(path, "UPDATE activations SET who = NULL WHERE id = 1");
  expect_act_problem(path, VD_VERIFY_CHANGED, 1, "was changed");
  /* one deleted from the middle */
  path = acts_db("acts-del.db");
  shell(path, "DELETE FROM activations WHERE id = 2");
  expect_act_problem(path, VD_VERIFY_DELETED, 2,
                     "activations 2..2 were deleted");
  /* the last deleted, the head left alone */
  path = acts_db("acts-tail.db");
  shell(path, "DELETE FROM activations WHERE id = 3");
  expect_act_problem(path, VD_VERIFY_DELETED, 3, "at the end were deleted");
  /* two swapped */
  path = acts_db("acts-swap.db");
  shell(path, "UPDATE activations SET id = 100 WHERE id = 1;"
              "UPDATE activations SET id = 1 WHERE id = 2;"
              "UPDATE activations SET id = 2 WHERE id = 100;");
  expect_act_problem(path, VD_VERIFY_CHANGED, 1, "activation 1 (reload by");
  /* one appended by hand */
  path = acts_db("acts-ins.db");
  shell(path, "INSERT INTO activations (id, at_ms, at, revision, cause, ok,"
              " hash) VALUES (4, 0, 'x', 'sha256:a9', 'reload', 1, 'ab')");
  expect_act_problem(path, VD_VERIFY_INSERTED, 4, "was inserted");
  /* the head row removed */
  path = acts_db("acts-head.db");
  shell(path, "DELETE FROM activation_head");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_non_null(strstr(rep.message, "activation_head row is missing"));
}

/* Cutting the tail and moving activation_head back leaves a chain that
 * verifies on its own; an anchor kept outside shows it.  An anchor of the
 * old form still checks the decisions. */
static void test_activations_anchor(void **state) {
  const char *path = acts_db("anchor.db");
  vd_verify_report_t rep;
  vd_history_anchor_t a;
  char text[200], *dhead;
  (void)state;
  assert_int_equal(vd_history_verify(path, &rep), 0);
  snprintf(text, sizeof text, "2:%s/3:%s", rep.head, rep.act_head);
  assert_int_equal(vd_history_anchor_parse(text, &a), 0);
  assert_int_equal(a.seq, 2);
  assert_int_equal(a.activation, 3);
  assert_string_equal(a.act_hash, rep.act_head);
  assert_int_equal(vd_history_verify_anchor(path, &a, &rep), 0);
  dhead = strdup(rep.head);

  shell(path, "DELETE FROM activations WHERE id = 3;"
              "UPDATE activation_head SET last_id = 2, hash ="
              " (SELECT hash FROM activations WHERE id = 2)");
  if (vd_history_verify(path, &rep) != 0) /* the file cannot vouch */
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.activations, 2);
  assert_int_equal(vd_history_verify_anchor(path, &a, &rep), VD_EINVALID);
  assert_int_equal(rep.problem, VD_VERIFY_DELETED);
  assert_int_equal(rep.activation, 3);
  assert_non_null(strstr(rep.message, "cut from its tail"));
  /* the old form checks the decisions only */
  snprintf(text, sizeof text, "2:%s", dhead);
  assert_int_equal(vd_history_anchor_parse(text, &a), 0);
  assert_int_equal(a.activation, 0);
  assert_int_equal(vd_history_verify_anchor(path, &a, &rep), 0);
  /* a rewritten activation with a consistent head: its anchor differs */
  path = acts_db("anchor2.db");
  assert_int_equal(vd_history_verify(path, &rep), 0);
  snprintf(text, sizeof text, "2:%s/3:%s", rep.head, rep.act_head);
  assert_int_equal(vd_history_anchor_parse(text, &a), 0);
  shell(path, "UPDATE activations SET hash = '" VD_ZERO64 "' WHERE id = 3;"
              "UPDATE activation_head SET hash = '" VD_ZERO64 "'");
  assert_int_equal(vd_history_verify_anchor(path, &a, &rep), VD_EINVALID);
  assert_int_equal(rep.activation, 3);

  /* what is not an anchor */
  assert_int_equal(vd_history_anchor_parse("2:xyz", &a), VD_EINVALID);
  snprintf(text, sizeof text, "2:%s/0:%s", dhead, dhead);
  assert_int_equal(vd_history_anchor_parse(text, &a), VD_EINVALID);
  snprintf(text, sizeof text, "0:%s", VD_ZERO64);
  assert_int_equal(vd_history_anchor_parse(text, &a), VD_EINVALID);
  snprintf(text, sizeof text, "0:%s/1:%s", VD_ZERO64, dhead);
  assert_int_equal(vd_history_anchor_parse(text, &a), 0);
  snprintf(text, sizeof text, "0:%s/1:%s", dhead, dhead);
  assert_int_equal(vd_history_anchor_parse(text, &a), VD_EINVALID);
  snprintf(text, sizeof text, "2:%s/1:%s/", dhead, dhead);
  assert_int_equal(vd_history_anchor_parse(text, &a), VD_EINVALID);
  free(dhead);
}

/* tests/fixtures/history-v2.db was written by the code before schema 3
 * (three decisions, three activations).  The first start migrates it: the
 * activations are chained as found and verify says since when; those
 * recorded later continue the chain; the decisions' chain is untouched. */
static void test_migrate_from_v2(void **state) {
  const char *path = path_in("v2.db");
  vd_history_t *h;
  vd_history_reader_t *rd = NULL;
  vd_verify_report_t rep;
  char *err = NULL, *head;
  (void)state;
  copy_fixture("tests/fixtures/history-v2.db", path);
  assert_int_equal(query_int(path, "PRAGMA user_version"), 2);
  head = query_text(path, "SELECT hash FROM chain_head");
  assert_int_equal(vd_history_reader_open(&rd, path, &err), VD_EINVALID);
  assert_non_null(strstr(err, "schema version 2"));
  free(err);

  h = open_ok(path, VD_LOG_DURABLE, 1);
  vd_history_close(h);
  assert_int_equal(query_int(path, "PRAGMA user_version"),
                   VD_HISTORY_SCHEMA_VERSION);
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.records, 3);
  assert_string_equal(rep.head, head); /* the same chain as before */
  assert_int_equal(rep.activations, 3);
  assert_int_equal(rep.sealed, 3);
  assert_true(rep.sealed_ms > 1796000000000);
  assert_non_null(strstr(rep.message, "(1..3 chained by the migration to "
                                      "schema 3 at "));
  free(head);
  /* the bytes docs/history.md ("The activations chain") spells out for
   * the fixture's first activation, hashed here independently */
  {
    static const char canon[] =
        "3:va1,1:1,13:1796398842032,29:2026-12-04T23:40:42.032+08:00,"
        "9:sha256:aa,7:startup,3:ops,13:/srv/policies,1:1,-,";
    struct sha256_ctx c;
    uint8_t zero[32] = {0}, d[32];
    char hex[65], *stored;
    int i;
    sha256_init(&c);
    sha256_update(&c, 32, zero);
    sha256_update(&c, sizeof canon - 1, (const uint8_t *)canon);
    sha256_digest(&c, sizeof d, d);
    for (i = 0; i < 32; i++)
      snprintf(hex + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(hex, "5a3978cee492265eafcb1da1306ef78d"
                             "f2edf9c1540eea654c97a924dafb3262");
    stored = query_text(path, "SELECT hash FROM activations WHERE id = 1");
    assert_string_equal(stored, hex);
    free(stored);
  }

  /* later activations continue the chain; the seal stays */
  h = open_ok(path, VD_LOG_DURABLE, 1);
  assert_int_equal(vd_history_record_activation(h, "sha256:dd", "reload",
                                                "bob", NULL, 1, NULL, &err),
                   0);
  vd_history_close(h);
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.activations, 4);
  assert_int_equal(rep.act_last, 4);
  assert_int_equal(rep.sealed, 3);
  /* a sealed row is covered from the migration on */
  shell(path, "UPDATE activations SET who = 'mallory' WHERE id = 2");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.activation, 2);
  assert_non_null(strstr(rep.message, "activation 2 (reload by mallory"));
}

/* tests/fixtures/history-v3.db was written by the code before schema 5
 * (six decisions of the mini bundle, with customer_id and phone in
 * their input).  The first start migrates it: those six keep their
 * "vd1" hashes and verify as before; records from seq 7 on are "vd2".
 * An erasure (here by hand, as `verdict history erase` does it: keep
 * the digest, drop the salt and the personal columns) leaves the chain
 * verifying; any other change to those columns does not. */
static void test_migrate_from_v3(void **state) {
  const char *path = path_in("v3.db");
  vd_history_t *h;
  vd_verify_report_t rep;
  uint64_t seq = 0, upto = 0;
  char *head, *salt;
  int i;
  (void)state;
  copy_fixture("tests/fixtures/history-v3.db", path);
  assert_int_equal(query_int(path, "PRAGMA user_version"), 3);
  head = query_text(path, "SELECT hash FROM chain_head");

  h = open_ok(path, VD_LOG_DURABLE, 1);
  for (i = 1; i <= 4; i++) {
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, 100 + i);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);
  assert_int_equal(query_int(path, "PRAGMA user_version"), VD_HISTORY_SCHEMA_VERSION);
  assert_int_equal(query_int(path, "SELECT v2_from FROM chain_format"), 7);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions WHERE"
                                   " personal_salt IS NULL"), 6);
  /* schema 8: the old records' revision got number 1, which the index
   * holds and a search by the revision's name finds */
  assert_int_equal(query_int(path, "SELECT count(*) FROM revision_numbers"), 1);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions WHERE"
                                   " revision_n = 1 AND revision ="
                                   " (SELECT revision FROM revision_numbers"
                                   "  WHERE n = 1)"), 6);
  {
    vd_history_filter_t f;
    vd_history_rows_t *rows = NULL;
    const vd_history_value_t *row;
    vd_buf_t err = VD_BUF_INIT;
    memset(&f, 0, sizeof f);
    f.revision = "sha256:84fb886bc42d677c93c17f8750e3d71815862e204faff485a9"
                 "0447ceed46b27a";
    assert_int_equal(vd_history_rows_open(&rows, path, &f, &err), 0);
    for (i = 1; i <= 6; i++) {
      assert_int_equal(vd_history_rows_next(rows, &row), 1);
      assert_int_equal(row[VD_HISTORY_SEQ].i, i);
    }
    assert_int_equal(vd_history_rows_next(rows, &row), 0);
    vd_history_rows_close(rows);
    vd_buf_release(&err);
  }
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.records, 10);
  assert_int_equal(rep.v2_from, 7);
  assert_int_equal(rep.erased, 0);
  {
    /* the old records' chain is the one an old anchor names */
    vd_history_anchor_t a;
    memset(&a, 0, sizeof a);
    a.seq = 6;
    snprintf(a.hash, sizeof a.hash, "%s", head);
    assert_int_equal(vd_history_verify_anchor(path, &a, &rep), 0);
  }
  free(head);

  /* erase seq 8's personal part: digest kept, salt and values gone */
  {
    sqlite3 *db;
    sqlite3_stmt *st;
    vd_hist_field_t f[NCOLS];
    uint8_t d[32];
    char digest[65], sql[256];
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT " ALL_COLUMNS
                                            ", personal_salt FROM decisions"
                                            " WHERE seq = 8", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    for (i = 0; i < NCOLS; i++)
      f[i] = vd_hist_column_field(st, i + 1);
    vd_hist_personal_digest((const char *)sqlite3_column_text(st, NCOLS + 2),
                            f, d);
    vd_hist_to_hex(d, sizeof d, digest);
    sqlite3_finalize(st);
    sqlite3_close(db);
    snprintf(sql, sizeof sql,
             "UPDATE decisions SET personal_digest = '%s', personal_salt ="
             " NULL, customer_id = NULL, request = '{}' WHERE seq = 8", digest);
    shell(path, sql);
  }
  /* not recorded in erasures: personal data removed behind verdict's back */
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_non_null(strstr(rep.message, "1 records have their personal data "
                                      "erased, the erasures table accounts "
                                      "for 0"));
  shell(path, "INSERT INTO erasures (at_ms, at, who, records, first_seq,"
              " last_seq, fields) VALUES (0, '', 'test', 1, 8, 8,"
              " 'customer_id')");
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("verify after erasure: %s", rep.message);
  assert_int_equal(rep.erased, 1);
  assert_non_null(strstr(rep.message, "(1 with personal data erased)"));

  /* a personal column changed under its salt */
  shell(path, "UPDATE decisions SET customer_id = 'C9' WHERE seq = 9");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.seq, 9);
  shell(path, "UPDATE decisions SET customer_id = 'C5' WHERE seq = 9");
  assert_int_equal(vd_history_verify(path, &rep), 0);
  /* a salt dropped without the digest kept */
  salt = query_text(path, "SELECT personal_salt FROM decisions WHERE seq = 10");
  shell(path, "UPDATE decisions SET personal_salt = NULL WHERE seq = 10");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.seq, 10);
  assert_non_null(strstr(rep.message, "neither a personal_salt"));
  {
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE decisions SET personal_salt = '%s'"
             " WHERE seq = 10", salt);
    shell(path, sql);
  }
  free(salt);
  /* a wrong digest kept beside the salt */
  shell(path, "UPDATE decisions SET personal_digest = hash WHERE seq = 7");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.seq, 7);
  shell(path, "UPDATE decisions SET personal_digest = NULL WHERE seq = 7");
  assert_int_equal(vd_history_verify(path, &rep), 0);
  /* where the new form begins is itself checked: moved either way, the
   * rows on the boundary no longer hash */
  shell(path, "UPDATE chain_format SET v2_from = 5");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.seq, 5);
  shell(path, "UPDATE chain_format SET v2_from = 8");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.seq, 7);
  shell(path, "DELETE FROM chain_format");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_non_null(strstr(rep.message, "chain_format row is missing"));
}

/* vd_history_erase() on a database migrated from schema 3: the
 * customer's records from v2_from on lose customer_id, the personal input
 * fields and the personal values in facts, and keep their digest; the
 * records stored before schema 5 are counted and left; the erasure is
 * recorded without the customer id; the chain verifies. */
static void test_erase(void **state) {
  const char *path = path_in("erase.db");
  const char *fields[] = {"phone"};
  vd_history_t *h;
  vd_history_erase_report_t rep;
  vd_verify_report_t ver;
  uint64_t seq = 0, upto = 0;
  char *err = NULL, *text;
  int i;
  (void)state;
  copy_fixture("tests/fixtures/history-v3.db", path);
  h = open_ok(path, VD_LOG_DURABLE, 1);
  for (i = 0; i < 4; i++) { /* seq 7..10, U-1 at 8 and 10 */
    vd_record_t r;
    rec_store_t s;
    make_record(&r, &s, 0, 200 + i);
    r.customer_id = i % 2 ? "U-1" : "U-0";
    snprintf(s.request, sizeof s.request,
             "{\"id\":%d,\"input\":{\"customer_id\":\"%s\",\"phone\":"
             "\"1380000000%d\",\"charged_fen\":%d}}", i, r.customer_id,
             i % 2, 5000 + i);
    r.request_len = strlen(s.request);
    r.facts = i % 2 ? "[{\"args\":[\"U-1\",\"C-9\",30],\"query\":"
                      "\"repeat_complaints\",\"value\":1}]" : NULL;
    r.facts_len = r.facts ? strlen(r.facts) : 0;
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
  }
  assert_int_equal(await_seq(h, 0, &upto, seq), 0);
  vd_history_close(h);

  if (vd_history_erase(path, "U-1", fields, 1, "dpo", &rep, &err) != 0)
    fail_msg("erase: %s", err);
  assert_int_equal(rep.erased, 2);
  assert_int_equal(rep.old_form, 3); /* seq 2, 4, 6 of the fixture */
  assert_int_equal(rep.first_seq, 8);
  assert_int_equal(rep.last_seq, 10);
  assert_int_equal(rep.erasure, 1);
  text = query_text(path, "SELECT request FROM decisions WHERE seq = 8");
  assert_string_equal(text, "{\"id\":1,\"input\":{\"charged_fen\":5001}}");
  free(text);
  text = query_text(path, "SELECT facts FROM decisions WHERE seq = 10");
  assert_string_equal(text, "[{\"args\":[null,\"C-9\",30],\"query\":"
                            "\"repeat_complaints\",\"value\":1}]");
  free(text);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions WHERE"
                                   " customer_id = 'U-1'"), 3);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions WHERE"
                                   " customer_id = 'U-0' AND personal_salt"
                                   " IS NOT NULL"), 2);
  text = query_text(path, "SELECT who || ' ' || records || ' ' || first_seq"
                          " || '..' || last_seq || ' ' || fields"
                          " FROM erasures");
  assert_string_equal(text, "dpo 2 8..10 customer_id,phone");
  free(text);
  if (vd_history_verify(path, &ver) != 0)
    fail_msg("verify: %s", ver.message);
  assert_int_equal(ver.records, 10);
  assert_int_equal(ver.erased, 2);
  /* again: only the old-form records are left to name the customer */
  assert_int_equal(vd_history_erase(path, "U-1", fields, 1, "dpo", &rep,
                                    &err), 0);
  assert_int_equal(rep.erased, 0);
  assert_int_equal(rep.old_form, 3);
  assert_int_equal(rep.erasure, 0);
  assert_int_equal(query_int(path, "SELECT count(*) FROM erasures"), 1);
  assert_int_equal(vd_history_erase(path, "", fields, 1, "dpo", &rep, &err),
                   VD_EINVALID);
  free(err);
}

/* vd_history_archive(): the prefix moves into a file that verifies on
 * its own; the live chain verifies from its edge; an erasure whose
 * records straddle the edge is accounted for on both sides; tampering
 * with the edge shows. */
static void test_archive(void **state) {
  const char *path = make_db("live.db", 10);
  const char *dest = path_in("archive.db");
  const char *fields[] = {"phone"};
  vd_history_erase_report_t er;
  vd_history_archive_report_t ar;
  vd_history_archived_t where;
  vd_verify_report_t rep;
  char *err = NULL, *hash;
  (void)state;
  /* C3's records are seq 3 and 10: one on each side of the edge */
  assert_int_equal(vd_history_erase(path, "C3", fields, 1, "dpo", &er, &err),
                   0);
  assert_int_equal(er.erased, 2);
  hash = query_text(path, "SELECT hash FROM decisions WHERE seq = 5");
  if (vd_history_archive(path, 1795392000006LL, dest, "ops", &ar, &err) != 0)
    fail_msg("archive: %s", err);
  assert_int_equal(ar.first_seq, 1);
  assert_int_equal(ar.last_seq, 5);
  assert_int_equal(ar.erased, 1);
  assert_string_equal(ar.anchor, hash);
  assert_string_equal(ar.start, VD_HIST_ZERO_HASH);
  free(hash);
  /* the archive: records 1..5, on its own */
  if (vd_history_verify(dest, &rep) != 0)
    fail_msg("archive verify: %s", rep.message);
  assert_int_equal(rep.records, 5);
  assert_int_equal(rep.erased, 1);
  assert_int_equal(rep.archive_first, 1);
  assert_string_equal(rep.head, ar.anchor);
  assert_int_equal(query_int(dest, "PRAGMA user_version"),
                   VD_HISTORY_SCHEMA_VERSION);
  /* the trace its records name came with them (schema 9), and stays in
   * the live file for the records there */
  assert_int_equal(query_int(dest, "SELECT count(*) FROM decisions d WHERE"
                                   " trace_sha IS NOT NULL AND NOT EXISTS"
                                   " (SELECT 1 FROM traces t"
                                   "  WHERE t.sha256 = d.trace_sha)"), 0);
  assert_true(query_int(dest, "SELECT count(*) FROM traces") >= 1);
  /* the live database: 6..10 from the edge */
  if (vd_history_verify(path, &rep) != 0)
    fail_msg("live verify: %s", rep.message);
  assert_int_equal(rep.records, 5);
  assert_int_equal(rep.erased, 1);
  assert_int_equal(rep.archived_to, 5);
  assert_int_equal(query_int(path, "SELECT min(seq) FROM decisions"), 6);
  assert_int_equal(vd_history_archived(path, &where, &err), 0);
  assert_int_equal(where.last_seq, 5);
  assert_string_equal(where.file, dest);
  /* records keep coming after the archive, the chain continues */
  {
    vd_history_t *h = open_ok(path, VD_LOG_DURABLE, 1);
    vd_record_t r;
    rec_store_t s;
    uint64_t seq = 0, upto = 0;
    make_record(&r, &s, 0, 11);
    assert_int_equal(vd_history_submit(h, 0, &r, &seq), 0);
    assert_int_equal(await_seq(h, 0, &upto, seq), 0);
    vd_history_close(h);
  }
  assert_int_equal(vd_history_verify(path, &rep), 0);
  assert_int_equal(rep.records, 6);
  /* the same range again: nothing that old is left */
  assert_int_equal(vd_history_archive(path, 1795392000006LL,
                                      path_in("again.db"), "ops", &ar, &err),
                   VD_ENOT_FOUND);
  free(err);
  assert_int_not_equal(access(path_in("again.db"), F_OK), 0);
  /* a record of the archived range put back: outside the chain */
  {
    char sql[512];
    snprintf(sql, sizeof sql,
             "ATTACH '%s' AS a; INSERT INTO decisions SELECT * FROM"
             " a.decisions WHERE seq = 5", dest);
    shell(path, sql);
  }
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.problem, VD_VERIFY_INSERTED);
  assert_int_equal(rep.seq, 5);
  shell(path, "DELETE FROM decisions WHERE seq = 5");
  /* the edge moved: the first live record no longer follows it */
  shell(path, "UPDATE archives SET anchor = start_hash");
  assert_int_equal(vd_history_verify(path, &rep), VD_EINVALID);
  assert_int_equal(rep.problem, VD_VERIFY_CHANGED);
  assert_int_equal(rep.seq, 6);
}

/* The archive's first step (the copy) reads the live database in one read
 * snapshot: it must not take the live database's write lock, which the
 * daemon's writer takes again a moment after each commit (its BEGIN
 * IMMEDIATE took it, on every attached database, and under a busy daemon
 * waited its 5 s and failed).  Here another connection holds that lock
 * throughout: the copy gets through, and only the move waits, fails, and
 * leaves the verified archive for the operator, the live records all
 * there. */
static void test_archive_copies_beside_a_writer(void **state) {
  const char *path = make_db("held.db", 10);
  const char *dest = path_in("held-archive.db");
  vd_history_archive_report_t ar;
  vd_verify_report_t rep;
  sqlite3 *writer;
  char *err = NULL;
  (void)state;
  assert_int_equal(sqlite3_open(path, &writer), SQLITE_OK);
  assert_int_equal(sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_not_equal(
      vd_history_archive(path, 1795392000006LL, dest, "ops", &ar, &err), 0);
  assert_non_null(err);
  if (!strstr(err, "starting the move"))
    fail_msg("the copy did not get through: %s", err);
  free(err);
  sqlite3_exec(writer, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(writer);
  if (vd_history_verify(dest, &rep) != 0)
    fail_msg("archive verify: %s", rep.message);
  assert_int_equal(rep.records, 5);
  assert_int_equal(query_int(path, "SELECT count(*) FROM decisions"), 10);
}

/* Pseudonyms: HMAC-SHA-256 under the key, as Python's hmac computes it
 * (the expected values below come from hmac.new(bytes(range(32)), v,
 * sha256)); a record rewritten so that no raw personal value is left,
 * equal values under equal pseudonyms, everything else byte for byte. */
static void test_pseudonyms(void **state) {
  vd_pseudonym_key_t k;
  vd_buf_t err = VD_BUF_INIT, req = VD_BUF_INIT, facts = VD_BUF_INIT;
  const char *fields[] = {"phone"};
  char out[VD_PSEUDONYM_LEN + 1], cust[VD_PSEUDONYM_LEN + 1], buf[200];
  const char *key = path_in("key");
  vd_record_t r;
  int i;
  (void)state;
  for (i = 0; i < 32; i++)
    buf[i] = (char)i;
  write_file(key, buf, 32);
  chmod(key, 0600);
  assert_int_equal(vd_pseudonym_key_load(&k, key, &err), 0);
  vd_pseudonym(&k, "U-1", 3, out);
  assert_string_equal(out, "p1-7d6b5cd70c6e41d7c0c79f4c81edb102");
  memset(&r, 0, sizeof r);
  r.customer_id = "U-1";
  r.request = "{\"id\":7,\"input\":{\"customer_id\":\"U-1\",\"phone\":"
              "\"13800000001\",\"note\":\"U-1\",\"n\":1.50}}";
  r.request_len = strlen(r.request);
  r.facts = "[{\"args\":[\"U-1\",\"C-1\",30],\"value\":2}]";
  r.facts_len = strlen(r.facts);
  assert_int_equal(vd_pseudonymise_record(&k, fields, 1, &r, &req, &facts,
                                          cust), 0);
  assert_string_equal(r.customer_id, "p1-7d6b5cd70c6e41d7c0c79f4c81edb102");
  /* a field not declared personal is kept as it is, even if it says the
   * same (policies must declare what is personal) */
  snprintf(buf, sizeof buf, "{\"id\":7,\"input\":{\"customer_id\":"
           "\"p1-7d6b5cd70c6e41d7c0c79f4c81edb102\",\"phone\":"
           "\"p1-84abc6fc842f5de4a54dc575068295ed\",\"note\":\"U-1\","
           "\"n\":1.50}}");
  assert_int_equal(r.request_len, strlen(buf));
  assert_memory_equal(r.request, buf, r.request_len);
  assert_string_equal(r.facts, "[{\"args\":[\"p1-7d6b5cd70c6e41d7c0c79f4c81e"
                               "db102\",\"C-1\",30],\"value\":2}]");
  /* keys that anyone may read, or too short, are refused */
  chmod(key, 0644);
  assert_int_equal(vd_pseudonym_key_load(&k, key, &err), VD_EINVALID);
  assert_non_null(strstr(err.data, "readable by others"));
  vd_buf_reset(&err);
  write_file(key, "short", 5);
  chmod(key, 0600);
  assert_int_equal(vd_pseudonym_key_load(&k, key, &err), VD_EINVALID);
  assert_non_null(strstr(err.data, "too short"));
  vd_buf_release(&err);
  vd_buf_release(&req);
  vd_buf_release(&facts);
}

/* The bundled policies declare customer_id personal, in every kind. */
static void test_personal_fields(void **state) {
  vd_limits_t lim = VD_LIMITS_DEFAULT;
  vd_buf_t err = VD_BUF_INIT;
  vd_bundle_t *b = NULL;
  vd_engine_t *e = NULL;
  char **names;
  size_t n;
  (void)state;
  if (vd_bundle_load("policies", &b, &err) != 0 ||
      vd_engine_new(b, &lim, &e, &err) != 0)
    fail_msg("policies: %s", err.data);
  assert_int_equal(vd_personal_fields(e, &names, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "customer_id");
  vd_personal_free(names, n);
  vd_engine_free(e);
  vd_bundle_unref(b);
  vd_buf_release(&err);
}

int main(void) {
  /* Files made here are made as an operator's umask would (others get
   * nothing): the history refuses a database that others can read. */
  umask(027);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mode_names),
      /* first: before any other test starts SQLite in this process */
      cmocka_unit_test_setup_teardown(test_sqlite_memstatus_off, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revision_numbers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revision_numbers_verified, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_traces_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_traces_by_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_newest_plans, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_newest_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_file_modes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_corrupt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_second_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_locked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_read_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_canonical_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_submit_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_off_and_async, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_intact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_edit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_delete, setup, teardown),
      cmocka_unit_test_setup_teardown(test_verify_insert, setup, teardown),
      cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
      cmocka_unit_test_setup_teardown(test_readers_see_whole_batches, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_backup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_facts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_complaint_facts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_split, setup, teardown),
      cmocka_unit_test_setup_teardown(test_revisions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_query_revisions_json, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_verify_missing_revision, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
      cmocka_unit_test_setup_teardown(test_activations_chain, setup, teardown),
      cmocka_unit_test_setup_teardown(test_activations_anchor, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_migrate_from_v2, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migrate_from_v3, setup, teardown),
      cmocka_unit_test_setup_teardown(test_erase, setup, teardown),
      cmocka_unit_test(test_personal_fields),
      cmocka_unit_test_setup_teardown(test_archive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_archive_copies_beside_a_writer, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_pseudonyms, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoints, setup, teardown),
      cmocka_unit_test_setup_teardown(test_activations_under_load, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_batches_capped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_sizes_grouped, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
