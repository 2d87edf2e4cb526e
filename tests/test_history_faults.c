/*
 * test_history_faults.c - the history writer when SQLite's writes, syncs
 * and allocations fail (tests/fault_vfs.c injects them).
 *
 * For each kind of fault, and n = 1, 2, ... until a batch no longer
 * reaches the n-th operation, one durable history is driven through the
 * public API exactly as a daemon worker drives it: submit a decision,
 * drain its completion.  The n-th operation fails once (or, persistent,
 * from then on), then faults stop and writing goes on.  What must hold:
 *   - a submission is reported done exactly once, with status 0 or
 *     VD_EIO (which the daemon answers as `internal`), never lost;
 *   - every decision reported 0 is in the database, none reported VD_EIO
 *     is, and the chain verifies;
 *   - the first decision after the faults stop is stored;
 *   - nothing crashes or hangs, and closing gives back every allocation
 *     SQLite made (counted by the allocator wrapper; AddressSanitizer
 *     checks libverdict's own under `make asan`).
 * Opening is put through the same faults, on a new file and on one that
 * holds decisions: it fails with a message naming the file or works, holds
 * nothing after failing, and the file opens and verifies afterwards.
 * And a power cut, emulated from what the WAL's syncs covered, keeps every
 * decision a durable history acknowledged.
 *
 * The writer's lines (vd_history_set_log) are written to stderr, which is
 * captured to a file per test and checked; anything else written there is
 * passed through.  Runs on the
 * main thread and the history's writer thread.
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "fault_vfs.h"
#include "history_int.h" /* vd_hist_aux_lock(): one batch of many */
#include "verdict/error.h"
#include "verdict/history.h"

/* Decisions one test submits at most; n runs until a batch is done. */
#define MAX_RECORDS 8192
/* n beyond this means the loop is not converging: a test failure. */
#define MAX_N 2000

/* ------------------------------------------------------------------------
 * Fixtures
 * ---------------------------------------------------------------------- */

static char dir[64], db_path[96], log_path[96];

/* One history and what it was told about each decision. */
typedef struct run {
  vd_history_t *h;
  uint64_t upto;              /* completions drained up to this seq */
  int n;                      /* decisions submitted */
  int status[MAX_RECORDS];    /* as reported, by seq - 1 */
  int acked, failed;          /* status 0, status VD_EIO */
} run_t;

static run_t run;
static int saved_stderr = -1;

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

/* A fresh directory, and stderr into a log file there. */
static int setup(void **state) {
  int fd;
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/vd-faults-XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  snprintf(db_path, sizeof db_path, "%s/h.db", dir);
  snprintf(log_path, sizeof log_path, "%s/stderr.log", dir);
  fflush(stderr);
  saved_stderr = dup(2);
  fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (saved_stderr < 0 || fd < 0 || dup2(fd, 2) < 0)
    return -1;
  close(fd);
  return 0;
}

/* Put stderr back and pass on what was written to it other than the
 * history's own lines (which the tests read): cmocka's failure messages,
 * say. */
static int teardown(void **state) {
  char line[1024];
  FILE *f;
  (void)state;
  fault_disarm();
  vd_history_close(run.h); /* still open if the test failed */
  run.h = NULL;
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  saved_stderr = -1;
  if ((f = fopen(log_path, "r")) != NULL) {
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "verdict: history: ", 18) != 0)
        fputs(line, stderr);
    fclose(f);
  }
  return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* How many lines of the stderr log so far contain NEEDLE. */
static int log_lines(const char *needle) {
  char line[1024];
  int n = 0;
  FILE *f;
  fflush(stderr);
  f = fopen(log_path, "r");
  assert_non_null(f);
  while (fgets(line, sizeof line, f))
    if (strstr(line, needle))
      n++;
  fclose(f);
  return n;
}

/* Completions wake the test through this, as they wake a worker's loop. */
static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sink_cv = PTHREAD_COND_INITIALIZER;

static void notify_cb(unsigned worker, void *arg) {
  (void)worker, (void)arg;
  pthread_mutex_lock(&sink_mu);
  pthread_cond_broadcast(&sink_cv);
  pthread_mutex_unlock(&sink_mu);
}

/* ------------------------------------------------------------------------
 * Driving the writer
 * ---------------------------------------------------------------------- */


static void decision_id(int i, char out[40]) {
  snprintf(out, 40, "01900000-0000-7000-8000-%012d", i);
}

static int await_upto(uint64_t seq, int i);

/* Submit decision number run.n + 1 and wait for its completion: returns
 * the status it was reported with.  With NOWAIT, only submit it: 0. */
static int submit_next(int nowait) {
  char id[40], request[96];
  vd_record_t r;
  uint64_t seq = 0;
  int i = run.n + 1;
  assert_true(i <= MAX_RECORDS);
  decision_id(i, id);
  snprintf(request, sizeof request,
           "{\"kind\":\"compensation\",\"region\":\"GD\",\"input\":{\"n\":%d}}",
           i);
  memset(&r, 0, sizeof r);
  r.decision_id = id;
  r.received_ms = 1795392000000LL + i;
  r.at = "2026-11-23T10:00:00+08:00";
  r.at_ms = 1795392000000LL + i;
  r.kind = "compensation";
  r.region = r.policy_region = "GD";
  r.complaint_id = "T-1";
  r.customer_id = "C1";
  r.category = "billing";
  r.request = request;
  r.request_len = strlen(request);
  r.result = "{\"offer_fen\":100}";
  r.result_len = strlen(r.result);
  r.trace = "[{\"rule\":\"R1\"}]";
  r.trace_len = strlen(r.trace);
  r.elapsed_us = 120;
  r.client = "unix";
  assert_int_equal(vd_history_submit(run.h, 0, &r, &seq), 0);
  assert_int_equal(seq, (uint64_t)i); /* no number skipped or reused */
  run.n = i;
  return nowait ? 0 : await_upto(seq, i);
}

static int submit_one(void) { return submit_next(0); }

/* Wait for the completions up to SEQ (decision I's): the status of the
 * last one, counted as acknowledged or failed. */
static int await_upto(uint64_t seq, int i) {
  struct timespec deadline;
  int status = 1;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 60;
  while (run.upto < seq) {
    vd_history_done_t d[4];
    size_t n, k;
    pthread_mutex_lock(&sink_mu);
    n = vd_history_drain(run.h, 0, d, 4);
    if (n == 0 &&
        pthread_cond_timedwait(&sink_cv, &sink_mu, &deadline) != 0 &&
        (n = vd_history_drain(run.h, 0, d, 4)) == 0) {
      pthread_mutex_unlock(&sink_mu);
      fail_msg("decision %d: no completion within 60 s", i);
    }
    pthread_mutex_unlock(&sink_mu);
    for (k = 0; k < n; k++) {
      uint64_t s;
      /* ranges follow each other, each seq reported once */
      assert_int_equal(d[k].first, run.upto + 1);
      assert_true(d[k].last >= d[k].first && d[k].last <= seq);
      if (d[k].status != 0 && d[k].status != VD_EIO)
        fail_msg("decision %d: status %d (%s), want 0 or io", i, d[k].status,
                 vd_err_name(d[k].status));
      for (s = d[k].first; s <= d[k].last; s++) {
        run.status[s - 1] = d[k].status;
        if (d[k].status == 0)
          run.acked++;
        else
          run.failed++;
      }
      run.upto = d[k].last;
      status = d[k].status;
    }
  }
  return status;
}

/* The writer's lines, into the captured stderr as a daemon would log them. */
static void log_cb(const char *event, int failing, const char *line,
                   void *arg) {
  (void)arg;
  fprintf(stderr, "verdict: history: %s %d: %s\n", event, failing, line);
}

static void open_history(void) {
  char *err = NULL;
  memset(&run, 0, sizeof run);
  if (vd_history_open(&run.h, db_path, VD_LOG_DURABLE, 1, notify_cb, NULL,
                      &err) != 0)
    fail_msg("open %s: %s", db_path, err ? err : "?");
  vd_history_set_log(run.h, log_cb, NULL);
}

/* After the history is closed: the database holds exactly the decisions
 * reported stored, in order, and the chain verifies. */
static void check_database(void) {
  vd_verify_report_t rep;
  sqlite3 *db;
  sqlite3_stmt *st;
  int i, stored = 0;
  if (vd_history_verify(db_path, &rep) != 0)
    fail_msg("verify: %s", rep.message);
  assert_int_equal(rep.records, run.acked);
  assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT seq FROM decisions "
                                      "WHERE decision_id = ?",
                                      -1, &st, NULL),
                   SQLITE_OK);
  for (i = 1; i <= run.n; i++) {
    char id[40];
    int found;
    decision_id(i, id);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
      /* stored decisions keep their order: seq counts them */
      assert_int_equal(sqlite3_column_int64(st, 0), ++stored);
    }
    sqlite3_reset(st);
    if (run.status[i - 1] == 0 && !found)
      fail_msg("decision %d was reported stored and is not there", i);
    if (run.status[i - 1] != 0 && found)
      fail_msg("decision %d was reported failed and is stored", i);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  assert_int_equal(stored, run.acked);
}

/* The whole cycle for one kind of fault, failing once or for good. */
static void fault_cycle(fault_kind_t kind, int persist) {
  long n, before = fault_live_allocs();
  int i, failed_batches = 0;
  open_history();
  for (i = 0; i < 3; i++)
    assert_int_equal(submit_one(), 0);
  for (n = 1;; n++) {
    int st, st2 = 0, fired;
    if (n > MAX_N)
      fail_msg("a one-decision batch did more than %d operations", MAX_N);
    fault_arm(kind, n, persist);
    st = submit_one();
    if (persist && fault_fired(kind))
      st2 = submit_one(); /* the fault is still there */
    fired = fault_fired(kind) > 0;
    fault_disarm();
    if (!fired) {
      /* the batch no longer reaches the n-th operation: done */
      assert_int_equal(st, 0);
      break;
    }
    if (st || st2)
      failed_batches++; /* one burst of failures, one pair of log lines */
    if (persist && st == VD_EIO)
      assert_int_equal(st2, VD_EIO);
    /* faults stopped: writing works again at once */
    assert_int_equal(submit_one(), 0);
  }
  /* the faults did make batches fail, and the operator was told each
   * time, and told when writing worked again */
  assert_true(failed_batches > 0);
  assert_true(run.failed >= failed_batches);
  assert_int_equal(log_lines("was not stored"), failed_batches);
  assert_int_equal(log_lines("history_write_failed 1: a batch"),
                   failed_batches);
  assert_int_equal(log_lines("writing works again after"), failed_batches);
  assert_int_equal(log_lines("history_write_recovered 0: writing"),
                   failed_batches);
  vd_history_close(run.h);
  run.h = NULL;
  /* every allocation SQLite made for the history was given back */
  assert_int_equal(fault_live_allocs(), before);
  check_database();
}

static void write_fails_once(void **state) {
  (void)state;
  fault_cycle(FAULT_WRITE, 0);
}

static void write_fails_for_good(void **state) {
  (void)state;
  fault_cycle(FAULT_WRITE, 1);
}

static void sync_fails_once(void **state) {
  (void)state;
  fault_cycle(FAULT_SYNC, 0);
}

static void sync_fails_for_good(void **state) {
  (void)state;
  fault_cycle(FAULT_SYNC, 1);
}

static void alloc_fails_once(void **state) {
  (void)state;
  fault_cycle(FAULT_ALLOC, 0);
}

static void alloc_fails_for_good(void **state) {
  (void)state;
  fault_cycle(FAULT_ALLOC, 1);
}

/* Copy the first LIMIT bytes of FROM (all of it: -1) to TO. */
static void copy_file(const char *from, const char *to, long long limit) {
  char buf[8192];
  FILE *in = fopen(from, "rb"), *out;
  size_t n;
  assert_non_null(in);
  out = fopen(to, "wb");
  assert_non_null(out);
  while (limit != 0 && (n = fread(buf, 1, sizeof buf, in)) > 0) {
    if (limit > 0 && (long long)n > limit)
      n = (size_t)limit;
    assert_int_equal(fwrite(buf, 1, n, out), n);
    if (limit > 0)
      limit -= (long long)n;
  }
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

/* A power cut, emulated while the history is open: the database file as
 * it is (only checkpoints write it, and they sync it first) and of the
 * WAL only what its last sync covered (fault_wal_synced()): what the page
 * cache held besides is what a power cut takes.  Returns how many
 * decisions that copy holds once SQLite has recovered it; its chain must
 * verify. */
static int after_power_cut(const char *path) {
  char from[160], cut[128], cut_wal[160];
  long long synced = fault_wal_synced();
  vd_verify_report_t rep;
  sqlite3 *db;
  sqlite3_stmt *st;
  int n;
  snprintf(cut, sizeof cut, "%s/cut.db", dir);
  snprintf(cut_wal, sizeof cut_wal, "%s-wal", cut);
  snprintf(from, sizeof from, "%s-wal", path);
  unlink(cut_wal);
  copy_file(path, cut, -1);
  copy_file(from, cut_wal, synced);
  assert_int_equal(sqlite3_open_v2(cut, &db, SQLITE_OPEN_READWRITE, NULL),
                   SQLITE_OK);
  /* async never syncs its commits, not even the schema's: a cut can leave
   * no table at all */
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM decisions", -1, &st,
                         NULL) != SQLITE_OK) {
    if (!strstr(sqlite3_errmsg(db), "no such table"))
      fail_msg("the copy after the power cut (%lld bytes of WAL): %s",
               synced, sqlite3_errmsg(db));
    sqlite3_close(db);
    return 0;
  }
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
  if (vd_history_verify(cut, &rep) != 0)
    fail_msg("verify after the power cut: %s", rep.message);
  return n;
}

/* Durable: every decision reported stored survives a power cut taken
 * just after it was reported (the page cache lost, only what was synced
 * kept), whichever thread flushes the WAL.  Async acknowledges before any
 * flush, and the same cut does lose its decisions: the check can fail. */
static void power_cut_keeps_what_was_acknowledged(void **state) {
  char async_path[128];
  char *err = NULL;
  int i, lost = 0;
  (void)state;
  fault_wal_watch("h.db"); /* db_path's */
  open_history();
  for (i = 0; i < 40; i++) {
    assert_int_equal(submit_one(), 0);
    assert_int_equal(after_power_cut(db_path), run.acked);
  }
  vd_history_close(run.h);
  run.h = NULL;

  snprintf(async_path, sizeof async_path, "%s/async.db", dir);
  memset(&run, 0, sizeof run);
  fault_wal_watch("async.db");
  if (vd_history_open(&run.h, async_path, VD_LOG_ASYNC, 1, notify_cb, NULL,
                      &err) != 0)
    fail_msg("open %s: %s", async_path, err ? err : "?");
  for (i = 0; i < 40; i++) {
    assert_int_equal(submit_one(), 0);
    lost += after_power_cut(async_path) < run.acked;
  }
  assert_true(lost > 0);
}

/* A durable history's WAL reaches the file in writes gathered across
 * frames (core/history_walbuf.c): a commit of many records in a few
 * writes, where SQLite alone makes two a frame; and every record is
 * there, acknowledged, after a power cut.  An async history (no sync at
 * its commits, so nothing may be held back from the file) is written
 * frame by frame, as SQLite writes it. */
static void wal_writes_gathered(void **state) {
  char async_path[128];
  char *err = NULL;
  long long writes, bytes, frames;
  int i, mode;
  (void)state;
  for (mode = 0; mode < 2; mode++) {
    memset(&run, 0, sizeof run);
    if (mode == 0) {
      fault_wal_watch("h.db"); /* db_path's */
      open_history();
    } else {
      snprintf(async_path, sizeof async_path, "%s/async.db", dir);
      fault_wal_watch("async.db");
      if (vd_history_open(&run.h, async_path, VD_LOG_ASYNC, 1, notify_cb,
                          NULL, &err) != 0)
        fail_msg("open %s: %s", async_path, err ? err : "?");
    }
    for (i = 0; i < 400; i++)
      submit_next(1);
    assert_int_equal(await_upto((uint64_t)run.n, run.n), 0);
    assert_int_equal(run.acked, 400);
    writes = fault_wal_writes(&bytes);
    frames = bytes / (24 + 4096); /* a frame: its header and a page */
    if (mode == 0) {
      assert_int_equal(after_power_cut(db_path), 400);
      if (frames < 20 || writes * 4 > frames)
        fail_msg("durable: %lld WAL writes for %lld frames (%lld bytes): "
                 "not gathered", writes, frames, bytes);
    } else if (writes < 2 * frames) {
      fail_msg("async: %lld WAL writes for %lld frames: gathered without "
               "a sync at each commit", writes, frames);
    }
    vd_history_close(run.h);
    run.h = NULL;
  }
}

/* Remove the database and what SQLite keeps beside it. */
static void remove_db(void) {
  static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
  char p[128];
  size_t i;
  for (i = 0; i < sizeof ext / sizeof ext[0]; i++) {
    snprintf(p, sizeof p, "%s%s", db_path, ext[i]);
    unlink(p);
  }
}

/* Opening fails cleanly under every fault: an error and a message, or a
 * history that works; nothing held afterwards either way; and the file
 * opens and verifies once the faults stop.  On a new file (the schema
 * created) and on one that holds decisions. */
static void open_under_faults(void **state) {
  static const fault_kind_t kinds[] = {FAULT_ALLOC, FAULT_WRITE, FAULT_SYNC};
  size_t k;
  int fresh;
  (void)state;
  for (fresh = 1; fresh >= 0; fresh--)
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      long n, step;
      /* Opening allocates thousands of times (4,000 on a new file, parsing
       * the schema): past the first hundred, every 61st allocation */
      for (n = 1;; n += step) {
        long before;
        char *err = NULL;
        int rc, fired, held;
        step = kinds[k] == FAULT_ALLOC && n >= 100 ? 61 : 1;
        if (n > 100 * MAX_N)
          fail_msg("opening did more than %d operations", 100 * MAX_N);
        if (fresh) {
          remove_db();
        } else if (n == 1) { /* once per kind: two decisions stored */
          remove_db();
          open_history();
          assert_int_equal(submit_one(), 0);
          assert_int_equal(submit_one(), 0);
          vd_history_close(run.h);
          run.h = NULL;
        }
        before = fault_live_allocs();
        fault_arm(kinds[k], n, 0);
        rc = vd_history_open(&run.h, db_path, VD_LOG_DURABLE, 1, notify_cb,
                             NULL, &err);
        fired = fault_fired(kinds[k]) > 0;
        fault_disarm();
        if (rc) {
          /* refused: with a reason, and nothing to close */
          assert_true(fired);
          assert_null(run.h);
          assert_non_null(err);
          assert_non_null(strstr(err, db_path));
          free(err);
        } else {
          assert_null(err);
          vd_history_close(run.h);
          run.h = NULL;
        }
        held = (int)(fault_live_allocs() - before);
        if (held != 0)
          fail_msg("kind %d, n %ld: %d SQLite allocations left", (int)kinds[k],
                   n, held);
        /* whatever happened, the file is a history again once faults stop */
        open_history();
        vd_history_close(run.h);
        run.h = NULL;
        if (!fresh) {
          vd_verify_report_t rep;
          if (vd_history_verify(db_path, &rep) != 0)
            fail_msg("verify after kind %d, n %ld: %s", (int)kinds[k], n,
                     rep.message);
          assert_int_equal(rep.records, 2); /* the two stored above */
        }
        if (!fired)
          break;
      }
    }
}

/* A fault at every few operations of a batch of GROUP_BATCH records,
 * which the writer inserts sixteen to a statement and the rest one at a
 * time (history_writer.c): a fault in the middle of a many-row statement
 * fails the whole batch, nothing of it is stored, and the next batch
 * works. */
#define GROUP_BATCH 20
#define GROUP_STEP 5
static void grouped_batch_faults(void **state) {
  static const fault_kind_t kinds[] = {FAULT_ALLOC, FAULT_WRITE};
  size_t k;
  (void)state;
  for (k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    long n;
    int failed = 0;
    snprintf(db_path, sizeof db_path, "%s/grouped-%zu.db", dir, k);
    memset(&run, 0, sizeof run);
    open_history();
    for (n = 1;; n += GROUP_STEP) {
      int i, st, fired;
      if (n > MAX_N)
        fail_msg("a batch of %d did more than %d operations", GROUP_BATCH,
                 MAX_N);
      vd_hist_aux_lock(run.h); /* the writer waits: one batch */
      fault_arm(kinds[k], n, 0);
      for (i = 0; i < GROUP_BATCH; i++)
        submit_next(1);
      vd_hist_aux_unlock(run.h);
      st = await_upto((uint64_t)run.n, run.n);
      fired = fault_fired(kinds[k]) > 0;
      fault_disarm();
      if (!fired) {
        assert_int_equal(st, 0);
        break;
      }
      /* one status for the batch: every record of it failed, or none */
      for (i = run.n - GROUP_BATCH; i < run.n; i++)
        assert_int_equal(run.status[i], st);
      failed += st != 0;
      assert_int_equal(submit_one(), 0); /* works again at once */
    }
    assert_true(failed > 0);
    vd_history_close(run.h);
    run.h = NULL;
    check_database();
  }
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(write_fails_once), T(write_fails_for_good), T(sync_fails_once),
      T(sync_fails_for_good), T(alloc_fails_once), T(alloc_fails_for_good),
      T(open_under_faults), T(power_cut_keeps_what_was_acknowledged),
      T(wal_writes_gathered), T(grouped_batch_faults),
  };
#undef T
  if (fault_install() != 0) {
    fprintf(stderr, "test_history_faults: cannot install the fault VFS\n");
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
