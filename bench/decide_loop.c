/*
 * decide_loop.c - the decision path without sockets, in a tight loop: for
 * profiling (valgrind --tool=callgrind, perf) and for the cost of one
 * decision on one core.
 *
 *   decide_loop POLICY_DIR COUNT [REQUESTS.ndjson]
 *
 * Loads the bundle and builds one engine as a daemon worker does, then
 * decides the first request line of the file (default: the national
 * compensation request) COUNT times with vd_engine_decide() and writes each
 * response line with vd_wire_write_decision(), the work a worker does per
 * request short of the socket and the history.  Prints nanoseconds per
 * decision.  Built and run by `scripts/bench --profile BUILD_DIR`; links
 * BUILD_DIR/libverdict.a.  One thread.
 *
 * DECIDE_MODE=fast (the default) decides as a daemon worker does, with a
 * watchdog slot and no count hook; DECIDE_MODE=count counts every
 * instruction (verdictd --always-count); DECIDE_MODE=both runs the loop
 * once each way, one after the other, and prints both.  DECIDE_BUDGET=N
 * sets the instruction budget; under valgrind, give it a large one so that
 * the slowed-down fast attempts stay under their recount threshold (the
 * budget at ten instructions a nanosecond) and are not decided twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"
#include "verdict/uuid.h"
#include "verdict/watchdog.h"
#include "verdict/wire.h"

static const char default_request[] =
    "{\"kind\":\"compensation\",\"region\":\"national\","
    "\"at\":\"2026-11-23T10:00:00+08:00\",\"input\":{"
    "\"complaint_id\":\"C-2026-110002\",\"category\":\"billing\","
    "\"customer_grade\":\"retail\",\"cause\":\"carrier\","
    "\"charged_fen\":12800,\"due_fen\":8800,\"claimed_fen\":50000}}";

static double mono_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The first non-blank line of PATH into out; 0 or -1. */
static int first_line(const char *path, vd_buf_t *out) {
  char line[65536];
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    size_t n = strcspn(line, "\r\n");
    if (n) {
      vd_buf_add(out, line, n);
      fclose(f);
      return 0;
    }
  }
  fclose(f);
  fprintf(stderr, "%s: no request line\n", path);
  return -1;
}

int main(int argc, char **argv) {
  vd_bundle_t *b = NULL;
  vd_engine_t *e = NULL;
  vd_buf_t err = VD_BUF_INIT, req = VD_BUF_INIT, out = VD_BUF_INIT;
  vd_decision_t d;
  vd_uuidgen_t gen;
  long i, count;
  double t0, t1;
  const char *mode = getenv("DECIDE_MODE");
  vd_limits_t lim = VD_LIMITS_DEFAULT;
  vd_watchdog_t wd;
  vd_watch_slot_t *slot = NULL;
  unsigned long recounted, misses;
  int rc = 1, pass;
  long memory = getenv("DECIDE_MEMORY") ? atol(getenv("DECIDE_MEMORY")) : 0;
  size_t mem_first = 0, mem_most = 0, mem_window = 0;

  if (argc < 3 || (count = atol(argv[2])) <= 0) {
    fprintf(stderr, "usage: decide_loop POLICY_DIR COUNT [REQUESTS.ndjson]\n");
    return 2;
  }
  if (argc > 3) {
    if (first_line(argv[3], &req) != 0)
      return 1;
  } else {
    vd_buf_adds(&req, default_request);
  }
  if (getenv("DECIDE_BUDGET"))
    lim.instr_budget = strtoul(getenv("DECIDE_BUDGET"), NULL, 10);
  vd_decision_init(&d);
  vd_uuidgen_init(&gen);
  if (vd_bundle_load(argv[1], &b, &err) != 0 ||
      vd_engine_new(b, &lim, &e, &err) != 0) {
    fprintf(stderr, "decide_loop: %s\n", err.data ? err.data : "?");
    goto out;
  }

  if (!mode || strcmp(mode, "both") == 0 || strcmp(mode, "fast") == 0) {
    if (vd_watchdog_start(&wd, 1, VD_WATCH_TICK_NS) != 0) {
      fprintf(stderr, "decide_loop: cannot start the watchdog\n");
      goto out;
    }
    slot = vd_watchdog_attach(&wd, 0);
  }
  for (pass = 0; pass < 2; pass++) {
    int fast = pass == 0 ? slot != NULL : 0;
    if (pass == 1 && !(mode && strcmp(mode, "both") == 0))
      break;
    if (pass == 0 && mode && strcmp(mode, "count") == 0)
      fast = 0;
    vd_engine_set_watch(e, fast ? slot : NULL);
    recounted = 0;
    mem_first = mem_most = mem_window = 0;
    t0 = mono_s();
    misses = 0;
    for (i = 0; i < count; i++) {
      char id[37];
      int64_t now = vd_now_ms();
      if (vd_engine_decide(e, req.data, req.len, now, &d) != 0) {
        fprintf(stderr, "decide_loop: the request failed: %s\n",
                d.message.data ? d.message.data : "?");
        goto out;
      }
      recounted += d.recounted;
      if (i == 0) /* the shapes met from the second decision on */
        misses = vd_json_shape_misses(vd_engine_sandbox(e)->L);
      vd_uuid_v7(&gen, now, id);
      vd_buf_reset(&out);
      vd_wire_write_decision(&out, &d, id, vd_bundle_revision(b));
      if (memory) {
        size_t used = vd_engine_sandbox(e)->used;
        if (i == 0)
          mem_first = used;
        if (used > mem_most)
          mem_most = used;
        if (used > mem_window)
          mem_window = used;
        if ((i + 1) % memory == 0) {
          printf("lua memory: at most %zu bytes in decisions %ld to %ld\n",
                 mem_window, i + 2 - memory, i + 1);
          mem_window = 0;
        }
      }
    }
    t1 = mono_s();
    printf("%s: %ld decisions, %.0f ns each, %.0f per second on one core, "
           "%lu recounted, %.2f key shapes missed a decision after the "
           "first\n", fast ? "fast" : "count", count,
           (t1 - t0) / (double)count * 1e9, (double)count / (t1 - t0),
           recounted,
           count > 1 ? (double)(vd_json_shape_misses(vd_engine_sandbox(e)->L) -
                                misses) / (double)(count - 1)
                     : 0.0);
    if (memory)
      printf("lua memory: %zu bytes after the first decision, at most %zu, "
             "%zu after the last\n", mem_first, mem_most,
             vd_engine_sandbox(e)->used);
  }
  rc = 0;

out:
  if (slot) {
    vd_engine_set_watch(e, NULL);
    vd_watchdog_detach(slot);
    vd_watchdog_stop(&wd);
  }
  vd_decision_release(&d);
  if (e)
    vd_engine_free(e);
  if (b)
    vd_bundle_unref(b);
  vd_buf_release(&err);
  vd_buf_release(&req);
  vd_buf_release(&out);
  return rc;
}
