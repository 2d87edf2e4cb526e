/*
 * watchdog.h - lets evaluations run without Lua's count hook, and still
 * stop one that runs too long.
 *
 * Why: while a count hook is set, Lua 5.4 sends every VM instruction
 * through luaG_traceexec, which costs a quarter of a typical decision.  An
 * engine with a watch slot evaluates with no hook at all (its "fast"
 * attempt) and the watchdog thread keeps an eye on it: an attempt that is
 * still running after one tick is interrupted from its own thread (a signal
 * whose handler calls lua_sethook, as lua.c does for Ctrl-C), and the
 * engine then decides again from the start with the exact instruction
 * count.  So is an attempt that finished but took longer than its recount
 * threshold.  The answers therefore stay exactly those of counted
 * evaluation; see vd_engine_decide() and docs/design.md "Instruction budget".
 *
 * Threads: one watchdog thread per vd_watchdog_t.  A slot belongs to the
 * one thread that attached it; vd_watch_begin()/vd_watch_end() are called
 * only there and cost two atomic stores and a load.  When no evaluation
 * has run for a second the watchdog sleeps until the next one begins, so an
 * idle daemon does not wake up.
 *
 * A spurious interrupt (the attempt finished just before the signal came)
 * costs one recounted evaluation, never a wrong answer.
 */
#ifndef VERDICT_WATCHDOG_H
#define VERDICT_WATCHDOG_H

#include <pthread.h>
#include <stdatomic.h>

#include "verdict/sandbox.h"

typedef struct vd_watchdog vd_watchdog_t;

typedef struct vd_watch_slot {
  vd_watchdog_t *wd;
  _Atomic unsigned long seq;      /* odd while a fast attempt runs */
  _Atomic(vd_sandbox_t *) running; /* its sandbox, NULL between attempts */
  pthread_t thread;               /* the thread that attached the slot */
  int attached;                   /* guarded by wd->lock */
  unsigned long seen;             /* watchdog thread only: seq last tick */
} vd_watch_slot_t;

struct vd_watchdog {
  pthread_t thread;
  pthread_mutex_t lock;   /* guards slots' attached, asleep and stop */
  pthread_cond_t wake;
  _Atomic int asleep;     /* the watchdog waits for an evaluation to begin */
  int stop;
  int started;
  long tick_ns;
  int nslots;
  vd_watch_slot_t *slots;
  _Atomic unsigned long interrupts; /* signals sent, for status */
};

/* Start the watchdog thread with `nslots` slots, checking every `tick_ns`
 * nanoseconds.  Installs the interrupt signal's handler (process-wide).
 * Returns 0 or VD_ENOMEM / VD_EINTERNAL. */
int vd_watchdog_start(vd_watchdog_t *wd, int nslots, long tick_ns);
/* Stop and join the thread, free the slots.  Every slot must be detached. */
void vd_watchdog_stop(vd_watchdog_t *wd);

/* Slot i for the calling thread: from now on the watchdog may signal this
 * thread.  Detach it before the thread ends. */
vd_watch_slot_t *vd_watchdog_attach(vd_watchdog_t *wd, int i);
void vd_watchdog_detach(vd_watch_slot_t *slot);

/* Around one fast attempt of `sb` on the slot's own thread. */
void vd_watch_begin(vd_watch_slot_t *slot, vd_sandbox_t *sb);
void vd_watch_end(vd_watch_slot_t *slot);

/* Signals the watchdog has sent since it started. */
unsigned long vd_watchdog_interrupts(vd_watchdog_t *wd);

/* The default tick: 5 ms.  It bounds only how long a runaway fast attempt
 * runs before it is stopped and counted (two ticks at most); exactness does
 * not depend on it (see vd_engine_decide).  Under load the watchdog wakes
 * 200 times a second. */
#define VD_WATCH_TICK_NS 5000000L

#endif
