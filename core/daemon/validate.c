/*
 * validate.c - a bundle's validation, and the building of its engines, on
 * a thread of its own that the daemon can walk away from.
 *
 * Why a thread of its own: a bundle's code runs while it is validated (the
 * files load, the tests decide).  The sandbox bounds what runs in Lua (the
 * instruction budget, the memory cap), but no hook fires inside a C
 * function, so a library function that never returns would hold whatever
 * thread called it.  On libuv's thread pool that thread is shared with every
 * other blocking job, and the loop cannot end while work is queued or
 * running, so a stuck validation used to wedge the next reload and SIGTERM.
 * Here the caller waits for the thread with a time limit
 * (--validate-timeout); when it is over, the caller abandons the
 * validation: the reload is refused as timed out, nothing waits for the
 * thread any more, and whoever comes last (the caller abandoning, or the
 * thread finishing) frees what the thread built.
 *
 * Why not a child process, which could be killed: fork() without exec in a
 * process with running threads (workers, the history writer, the
 * watchdog) may call only async-signal-safe functions in the child, and a
 * Lua state is anything but; the child would also hold a copy of every
 * client's socket for as long as it ran.  Spawning a fresh verdictd to
 * validate would be sound, at the cost of sending it the bundle; a thread
 * left behind is sound too, with a cost that is bounded and stated: it
 * keeps its CPU (it spins in C) and its memory (the sandbox's cap for a
 * load, lim.load_mem, plus luacheck's state) until it returns or the
 * process ends.  VD_VALIDATIONS_STUCK_MAX bounds how many may be left
 * behind; past it the daemon refuses reloads (it keeps serving the active
 * revision) until it is restarted.  A process exiting ends such a thread
 * with it.
 *
 * Threads: vd_validation_start(), _wait(), _finished(), _free() and
 * _abandon() are called by the one owner (the main thread); the
 * validation's thread reads the inputs, writes the results, and touches
 * nothing outside its vd_validation_t (no vd_daemon_t: the daemon may be
 * gone when an abandoned thread returns).  `state` is under `lock`.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon_int.h"
#include "verdict/policytest.h"
#include "verdict/wire.h"

enum { RUNNING, FINISHED, ABANDONED };

/* Abandoned validations whose thread has not returned yet (process-wide). */
static atomic_uint stuck;

static void results_free(vd_validation_t *v) {
  unsigned i;
  if (v->engines) {
    for (i = 0; i < v->nengines; i++)
      vd_engine_free(v->engines[i]);
    free(v->engines);
  }
  if (v->bundle)
    vd_bundle_unref(v->bundle);
  vd_buf_release(&v->err);
  vd_buf_release(&v->in_force);
  free(v->dir);
  pthread_mutex_destroy(&v->lock);
  pthread_cond_destroy(&v->cond);
  free(v);
}

/* What the thread does: read the bundle if it has none, validate it unless
 * told not to, build one engine per worker, and say what is in force. */
static void validate(vd_validation_t *v) {
  if (!v->bundle) {
    vd_bundle_t *b = NULL;
    if ((v->rc = vd_bundle_load(v->dir, &b, &v->err)) != 0)
      return;
    pthread_mutex_lock(&v->lock); /* vd_validation_bundle() reads it */
    v->bundle = b;
    pthread_mutex_unlock(&v->lock);
  }
  if (v->check) {
    v->rc = vd_policy_validate(v->bundle, &v->lim, &v->err);
    if (v->rc) {
      if (!v->err.len)
        vd_buf_adds(&v->err, vd_err_desc(v->rc));
      v->refused = 1;
      return;
    }
  }
  v->engines = calloc(v->nengines, sizeof *v->engines);
  if (!v->engines) {
    v->rc = VD_ENOMEM;
    vd_buf_adds(&v->err, "out of memory");
    return;
  }
  v->rc = vd_daemon_build_engines(v->nengines, &v->lim, v->bundle, v->engines,
                                  &v->err);
  if (v->rc == 0)
    vd_wire_in_force(&v->in_force, v->engines[0]);
}

static void *validation_main(void *arg) {
  vd_validation_t *v = arg;
  int abandoned;
  sigset_t mask;
  /* signals are the main thread's and the workers' business */
  sigfillset(&mask);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  validate(v);
  pthread_mutex_lock(&v->lock);
  abandoned = v->state == ABANDONED;
  if (!abandoned) {
    v->state = FINISHED;
    pthread_cond_broadcast(&v->cond);
    if (v->notify) /* the owner closes it only after abandoning us */
      uv_async_send(v->notify);
  }
  pthread_mutex_unlock(&v->lock);
  if (abandoned) { /* nobody wants the results: ours to free */
    results_free(v);
    atomic_fetch_sub(&stuck, 1);
  }
  return NULL;
}

int vd_validation_start(vd_validation_t **out, const char *dir,
                        vd_bundle_t *bundle, const vd_limits_t *lim,
                        unsigned nengines, int check, uv_async_t *notify) {
  vd_validation_t *v = calloc(1, sizeof *v);
  pthread_attr_t attr;
  pthread_t t;
  int rc;
  *out = NULL;
  if (!v || !(v->dir = strdup(dir))) {
    free(v);
    if (bundle)
      vd_bundle_unref(bundle);
    return VD_ENOMEM;
  }
  v->bundle = bundle;
  v->lim = *lim;
  v->nengines = nengines;
  v->check = check;
  v->notify = notify;
  v->state = RUNNING;
  vd_buf_init(&v->err);
  vd_buf_init(&v->in_force);
  pthread_mutex_init(&v->lock, NULL);
  pthread_cond_init(&v->cond, NULL);
  /* detached: nobody joins a thread that may never return */
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  rc = pthread_create(&t, &attr, validation_main, v);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    results_free(v);
    return VD_EINTERNAL;
  }
  *out = v;
  return 0;
}

int vd_validation_finished(vd_validation_t *v) {
  int done;
  pthread_mutex_lock(&v->lock);
  done = v->state == FINISHED;
  pthread_mutex_unlock(&v->lock);
  return done;
}

int vd_validation_wait(vd_validation_t *v, int64_t timeout_ms) {
  struct timespec until;
  int done;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(timeout_ms / 1000);
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&v->lock);
  while (v->state == RUNNING &&
         pthread_cond_timedwait(&v->cond, &v->lock, &until) == 0)
    ;
  done = v->state == FINISHED;
  pthread_mutex_unlock(&v->lock);
  return done ? 0 : VD_EPOLICY_TIMEOUT;
}

void vd_validation_free(vd_validation_t *v) {
  if (!v)
    return;
  if (!vd_validation_finished(v)) {
    vd_validation_abandon(v);
    return;
  }
  results_free(v);
}

void vd_validation_abandon(vd_validation_t *v) {
  int finished;
  if (!v)
    return;
  pthread_mutex_lock(&v->lock);
  finished = v->state == FINISHED;
  if (!finished) {
    v->state = ABANDONED;
    atomic_fetch_add(&stuck, 1);
  }
  pthread_mutex_unlock(&v->lock);
  if (finished) /* it came back after all: nothing is left behind */
    results_free(v);
}

vd_bundle_t *vd_validation_bundle(vd_validation_t *v) {
  vd_bundle_t *b;
  pthread_mutex_lock(&v->lock);
  b = v->bundle;
  if (b)
    vd_bundle_ref(b);
  pthread_mutex_unlock(&v->lock);
  return b;
}

unsigned vd_validations_stuck(void) { return atomic_load(&stuck); }
