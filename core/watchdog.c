/*
 * watchdog.c - the thread that interrupts fast (hook-free) evaluations
 * which run past one tick; see include/verdict/watchdog.h for why.
 *
 * Owns: its thread, the slots, and the handler of VD_WATCH_SIGNAL.
 *
 * Each tick the watchdog reads every attached slot's sequence number.  An
 * odd number is an attempt in progress; the same odd number at two ticks in
 * a row is one attempt that has run for at least a tick, and its thread
 * gets VD_WATCH_SIGNAL.  The handler runs on that thread, so the Lua state
 * it touches is paused exactly as in lua.c's SIGINT handler, and all it does
 * is vd_sandbox_interrupt() (lua_sethook).
 *
 * Sleeping: after a second with no attempt begun, the watchdog sets
 * `asleep`, checks the slots once more and waits on its condition variable.
 * vd_watch_begin() stores the new sequence number and then reads `asleep`
 * (both sequentially consistent), so either the watchdog's second look
 * sees the attempt or the worker sees `asleep` and wakes it.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "verdict/error.h"
#include "verdict/watchdog.h"

#define VD_WATCH_SIGNAL (SIGRTMIN + 4)
#define IDLE_NS_BEFORE_SLEEP 1000000000L /* a second without an attempt */

static _Thread_local vd_watch_slot_t *tls_slot;

static void on_watch_signal(int sig) {
  vd_watch_slot_t *slot = tls_slot;
  vd_sandbox_t *sb;
  int saved = errno;
  (void)sig;
  if (slot && (sb = atomic_load(&slot->running)) != NULL)
    vd_sandbox_interrupt(sb);
  errno = saved;
}

/* One look at every slot; returns whether any attempt began or is running
 * since the last look.  Sends the signal to attempts seen twice. */
static int look(vd_watchdog_t *wd) {
  int i, busy = 0;
  pthread_mutex_lock(&wd->lock);
  for (i = 0; i < wd->nslots; i++) {
    vd_watch_slot_t *s = &wd->slots[i];
    unsigned long seq;
    if (!s->attached)
      continue;
    seq = atomic_load(&s->seq);
    if (seq != s->seen || (seq & 1))
      busy = 1;
    if ((seq & 1) && seq == s->seen) {
      /* counted first: the interrupted thread may read the count (a test,
       * the metrics) as soon as its attempt ends, before we are back */
      atomic_fetch_add(&wd->interrupts, 1);
      pthread_kill(s->thread, VD_WATCH_SIGNAL);
      s->seen = seq + 1; /* one signal per attempt and tick pair */
      continue;
    }
    s->seen = seq;
  }
  pthread_mutex_unlock(&wd->lock);
  return busy;
}

static void *watchdog_main(void *arg) {
  vd_watchdog_t *wd = arg;
  struct timespec tick;
  int idle = 0;
  sigset_t mask;

  /* The watchdog itself never takes our signal nor the daemon's. */
  sigfillset(&mask);
  pthread_sigmask(SIG_BLOCK, &mask, NULL);
  tick.tv_sec = wd->tick_ns / 1000000000L;
  tick.tv_nsec = wd->tick_ns % 1000000000L;
  for (;;) {
    pthread_mutex_lock(&wd->lock);
    if (wd->stop) {
      pthread_mutex_unlock(&wd->lock);
      break;
    }
    pthread_mutex_unlock(&wd->lock);
    nanosleep(&tick, NULL);
    if (look(wd)) {
      idle = 0;
      continue;
    }
    if (++idle < IDLE_NS_BEFORE_SLEEP / wd->tick_ns)
      continue;
    atomic_store(&wd->asleep, 1);
    if (look(wd)) { /* an attempt began meanwhile */
      atomic_store(&wd->asleep, 0);
      idle = 0;
      continue;
    }
    pthread_mutex_lock(&wd->lock);
    while (atomic_load(&wd->asleep) && !wd->stop)
      pthread_cond_wait(&wd->wake, &wd->lock);
    pthread_mutex_unlock(&wd->lock);
    atomic_store(&wd->asleep, 0);
    idle = 0;
  }
  return NULL;
}

int vd_watchdog_start(vd_watchdog_t *wd, int nslots, long tick_ns) {
  struct sigaction sa;
  int i;
  memset(wd, 0, sizeof *wd);
  wd->slots = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *wd->slots);
  if (!wd->slots)
    return VD_ENOMEM;
  wd->nslots = nslots;
  wd->tick_ns = tick_ns > 0 ? tick_ns : VD_WATCH_TICK_NS;
  for (i = 0; i < nslots; i++)
    wd->slots[i].wd = wd;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_watch_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(VD_WATCH_SIGNAL, &sa, NULL) != 0)
    goto fail_slots;
  pthread_mutex_init(&wd->lock, NULL);
  pthread_cond_init(&wd->wake, NULL);
  if (pthread_create(&wd->thread, NULL, watchdog_main, wd) != 0)
    goto fail_sync;
  wd->started = 1;
  return 0;

fail_sync:
  pthread_cond_destroy(&wd->wake);
  pthread_mutex_destroy(&wd->lock);
fail_slots:
  free(wd->slots);
  wd->slots = NULL;
  return VD_EINTERNAL;
}

void vd_watchdog_stop(vd_watchdog_t *wd) {
  if (!wd->started)
    return;
  pthread_mutex_lock(&wd->lock);
  wd->stop = 1;
  pthread_cond_signal(&wd->wake);
  pthread_mutex_unlock(&wd->lock);
  pthread_join(wd->thread, NULL);
  pthread_cond_destroy(&wd->wake);
  pthread_mutex_destroy(&wd->lock);
  free(wd->slots);
  wd->slots = NULL;
  wd->started = 0;
}

vd_watch_slot_t *vd_watchdog_attach(vd_watchdog_t *wd, int i) {
  vd_watch_slot_t *s;
  sigset_t mask;
  if (!wd->started || i < 0 || i >= wd->nslots)
    return NULL;
  s = &wd->slots[i];
  sigemptyset(&mask);
  sigaddset(&mask, VD_WATCH_SIGNAL);
  pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
  pthread_mutex_lock(&wd->lock);
  s->thread = pthread_self();
  atomic_store(&s->running, NULL);
  s->seen = atomic_load(&s->seq);
  s->attached = 1;
  pthread_mutex_unlock(&wd->lock);
  tls_slot = s;
  return s;
}

void vd_watchdog_detach(vd_watch_slot_t *slot) {
  vd_watchdog_t *wd;
  if (!slot)
    return;
  wd = slot->wd;
  pthread_mutex_lock(&wd->lock); /* no signal is on its way after this */
  slot->attached = 0;
  pthread_mutex_unlock(&wd->lock);
  atomic_store(&slot->running, NULL);
  tls_slot = NULL;
}

void vd_watch_begin(vd_watch_slot_t *slot, vd_sandbox_t *sb) {
  vd_watchdog_t *wd = slot->wd;
  atomic_store(&slot->running, sb);
  atomic_fetch_add(&slot->seq, 1); /* now odd */
  if (atomic_load(&wd->asleep)) {
    pthread_mutex_lock(&wd->lock);
    atomic_store(&wd->asleep, 0);
    pthread_cond_signal(&wd->wake);
    pthread_mutex_unlock(&wd->lock);
  }
}

void vd_watch_end(vd_watch_slot_t *slot) {
  atomic_store(&slot->running, NULL); /* a late signal now does nothing */
  atomic_fetch_add(&slot->seq, 1);    /* even again */
}

unsigned long vd_watchdog_interrupts(vd_watchdog_t *wd) {
  return atomic_load(&wd->interrupts);
}
