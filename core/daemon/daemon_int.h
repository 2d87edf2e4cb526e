/*
 * daemon_int.h - what the files of verdictd share: daemon.c and admin.c
 * (main thread) and worker.c (worker threads).  Nothing else includes it.
 *
 * Threads: the main thread runs the default loop: it owns the listening
 * sockets, accepts, hands each new connection's fd to a worker through
 * that worker's queue and uv_async_t, and handles signals.  Each worker
 * thread runs its own loop with its own engine (Lua state) and serves its
 * connections from start to end; no lock is taken on the decision path.
 * The only shared mutable data are each worker's hand-off queue (under its
 * mutex) and the counters (atomics, read by `status` from any worker).
 */
#ifndef VERDICT_DAEMON_INT_H
#define VERDICT_DAEMON_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "verdict/buf.h"
#include "verdict/daemon.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/sandbox.h"
#include "verdict/uuid.h"
#include "verdict/watchdog.h"

typedef struct vd_conn vd_conn_t;

/* A bundle's validation and engines, built on a thread of its own
 * (validate.c, which says why).  The owner reads the results once
 * vd_validation_finished() or vd_validation_wait() says the thread is done,
 * and may take them (set the field to NULL). */
typedef struct vd_validation {
  /* inputs, set by vd_validation_start() */
  char *dir;               /* read the bundle from here if none was given */
  vd_limits_t lim;
  unsigned nengines;
  int check;               /* run vd_policy_validate() first */
  uv_async_t *notify;      /* sent when the thread is done, or NULL */
  /* results, the thread's until it is done */
  int rc;                  /* 0, or why it failed (err says more) */
  int refused;             /* the validation itself failed */
  vd_buf_t err;
  vd_bundle_t *bundle;     /* the bundle validated (a reference) */
  vd_engine_t **engines;   /* nengines of them, when rc is 0 */
  vd_buf_t in_force;       /* vd_wire_in_force() of engines[0] */
  /* between the two threads */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int state;               /* running, finished, abandoned (validate.c) */
} vd_validation_t;

/* How many abandoned validations may still be running before reloads are
 * refused: each holds a thread, its CPU, and up to lim.load_mem of memory
 * until it returns or the process ends. */
#define VD_VALIDATIONS_STUCK_MAX 2
/* How many workers stuck in a decision past --decide-timeout are replaced;
 * at the next one the daemon stops (exit status 1) so that its supervisor
 * starts a fresh process: each holds a thread that may spin and its Lua
 * state (at most the memory cap beyond the state's size). */
#define VD_WORKERS_STUCK_MAX 2
/* How often the main thread looks for a decision past --decide-timeout. */
#define VD_OVERRUN_CHECK_MS 250

/* After SIGTERM, how long a worker waits for clients to take their last
 * answers before it closes their connections. */
#define VD_SHUTDOWN_GRACE_MS 5000

/* Of a request answered bad_request (not valid JSON, or not a request)
 * or too_large (too big to decode under the memory cap), the history
 * keeps at most this many bytes, cut at a UTF-8 boundary: enough to see
 * what a client sent, too few for junk lines to fill the disk (a line of
 * --max-line bytes, 1 MiB by default, costs 4 KiB).  Replay compares only
 * the error code of a bad_request row, and a prefix of a bad request is a
 * bad request; it skips too_large rows. */
#define VD_BAD_REQUEST_RECORD_BYTES 4096


/* Back-pressure (worker.c): past --max-pending-total, connections whose
 * unread responses and unended line come to this much or more are not
 * read from; a client that reads its answers holds next to nothing. */
#define VD_HEAVY_BYTES (64u << 10)
/* How often a worker looks again at the connections it stopped reading. */
#define VD_RECHECK_MS 50
/* Once all connections have held this much (or half of
 * --max-pending-total, if less), malloc_trim() runs when they are down to
 * an eighth of it. */
#define VD_TRIM_ARM_BYTES (16u << 20)
/* What a record costs the history's queue beyond its strings: ids, the
 * decision time, kind, region, revision and the hash, roughly. */
#define VD_RECORD_OVERHEAD 512
/* A connection's framer buffer above this is freed once it is empty. */
#define VD_FRAMER_KEEP_BYTES (256u << 10)

/* A connection handed from the main thread to a worker. */
typedef struct vd_handoff {
  int fd;
  int is_tcp;
  char peer[64];
} vd_handoff_t;

/* A worker thread.  The daemon owns the array; worker.c owns everything in
 * each element, from vd_worker_start() to vd_worker_release(). */
typedef struct vd_worker {
  vd_daemon_t *daemon;
  unsigned index;
  int started;             /* between a successful start and its release */
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;         /* hand-offs, history completions, stop, swap */
  uv_timer_t grace;        /* started by a stop: force-close stragglers */
  uv_timer_t recheck;      /* while nthrottled: VD_RECHECK_MS */
  unsigned nthrottled;     /* connections not read for back-pressure */

  uv_mutex_t lock;         /* guards the fields up to `engine` */
  vd_handoff_t *queue;
  size_t nqueue, capqueue;
  int stop;                /* the main thread asked us to finish */
  vd_engine_t *next_engine;/* a newer revision to switch to */
  int *fds;                /* descriptors of the open connections */
  size_t nfds, capfds;

  vd_engine_t *engine;     /* the revision deciding now (worker-only) */
  vd_watch_slot_t *watch;  /* this thread's watchdog slot, or NULL */
  vd_history_reader_t *reader; /* answers ctx.history (worker-only) */
  vd_uuidgen_t uuid;
  vd_decision_t dec;       /* scratch, reused for every request */
  vd_buf_t scratch;
  char readbuf[65536];
  vd_conn_t *conns;        /* every open connection (list) */
  unsigned nconns;
  int stopping;

  /* responses waiting for their history record to commit, oldest first */
  struct vd_pending *pend_head, *pend_tail;
  /* records in the history's queue, oldest first (what they hold) */
  struct vd_unsynced *uns_head, *uns_tail;

  /* the start of the decision running now (ms), 0 between decisions:
   * read by the main thread's overrun check */
  _Atomic int64_t busy_since_ms;
  atomic_int abandoned;    /* given up on after an overrun (daemon.c) */
  atomic_size_t held;      /* bytes its connections hold (worker.c) */

  /* counters, read by status from any thread */
  atomic_uint_fast64_t decisions;
  atomic_uint_fast64_t errors[VD_ERR_COUNT];
  atomic_uint connections;
  atomic_uint_fast64_t recounts; /* decisions decided again, counted */
} vd_worker_t;

/* admin.c's state: the admin channel, the reload pipeline and --watch.
 * Only admin.c reads or writes it, from vd_admin_start() to
 * vd_admin_release(), on the main thread. */
typedef struct vd_admin {
  uv_pipe_t server;
  int listening;
  int started;                    /* between start and release */
  int stopped;                    /* vd_admin_stop() has run */
  struct vd_admin_conn *conns;
  vd_sandbox_t sb;                /* decodes admin requests */
  struct vd_reload *reload_head, *reload_tail; /* queued */
  struct vd_reload *running;      /* being validated, or NULL */
  uv_async_t validation_done;     /* its thread is done */
  uv_timer_t reload_timer;        /* --validate-timeout */
  uv_fs_event_t **watchers;       /* --watch: one per bundle directory */
  size_t nwatchers;
  uv_timer_t watch_timer;         /* debounce */
} vd_admin_t;

struct vd_daemon {
  vd_daemon_opts_t opts;
  uv_loop_t *loop;
  vd_bundle_t *bundle;     /* the active revision (main thread) */
  vd_history_t *history;   /* open in every log mode: with off, decisions
                            * are not written but revisions still are */
  vd_watchdog_t watchdog;  /* fast attempts; .started is 0 without */
  int64_t started_ms;
  int64_t activated_ms;
  char activated_by[32];
  vd_buf_t last_failure;   /* why the last reload was refused */

  int unix_fd, tcp_fd;
  uv_poll_t unix_poll, tcp_poll;
  uv_timer_t accept_pause;
  unsigned accept_pauses; /* out of descriptors, since the queue was last empty */
  uv_signal_t sig_term, sig_int, sig_hup;
  int stopping;
  atomic_ulong overruns;   /* decisions past --decide-timeout */

  /* the workers' held, summed (worker.c), passed max_pending_total
   * (logged once) / passed VD_TRIM_ARM_BYTES since the last trim */
  atomic_int shedding;
  atomic_int trim_armed;

  vd_worker_t *workers;    /* nslots of them: */
  unsigned nworkers;       /* how many serve at once (--workers) */
  unsigned nslots;         /* nworkers + VD_WORKERS_STUCK_MAX replacements */
  unsigned *active;        /* [nworkers]: the slot of each serving worker */
  unsigned nstuck;         /* workers given up on (decide overruns) */
  int exit_status;         /* 1 once too many workers are stuck */
  uv_timer_t overrun_timer;/* --decide-timeout: looks at busy_since_ms */
  unsigned next_worker;
  uv_mutex_t state_lock;   /* guards bundle/activation fields for status */
  vd_buf_t in_force;       /* JSON: which file decides each region and kind */

  /* the whole-file check of the history, on its own thread after start-up
   * (history.h vd_history_check_*); state and error under state_lock */
  vd_history_check_t *check;
  uv_thread_t check_thread;
  int check_started;
  int check_stopping;
  const char *check_state;  /* running, ok, damaged, failed, interrupted */
  char *check_error;

  vd_admin_t admin;        /* admin.c's, on the main thread */
  struct vd_fleet *fleet;  /* fleet.c's, with a PostgreSQL history */
};

/* worker.c.  Main thread: start worker INDEX of D deciding with ENGINE,
 * which it takes in every case (freed on failure).  Returns 0 or a libuv
 * error, having undone its own steps. */
int vd_worker_start(vd_worker_t *w, vd_daemon_t *d, unsigned index,
                    vd_engine_t *engine);
/* Main thread: wait for the thread of a worker asked to stop (no-op for
 * one that never started); returns 0.  _until: only until DEADLINE_MS
 * (vd_now_ms() time), then returns VD_EINTERNAL, the thread still
 * running. */
int vd_worker_join(vd_worker_t *w);
int vd_worker_join_until(vd_worker_t *w, int64_t deadline_ms);
/* Main thread, after vd_worker_join() and once nothing can notify the
 * worker any more (the history is closed): free its loop, engines and
 * buffers.  No-op for one that never started. */
void vd_worker_release(vd_worker_t *w);
/* Any thread: queue a connection, ask the worker to stop, offer it the
 * engine of a new revision (taken), or tell it that history records of
 * its have completed. */
void vd_worker_handoff(vd_worker_t *w, const vd_handoff_t *h);
void vd_worker_request_stop(vd_worker_t *w);
void vd_worker_offer_engine(vd_worker_t *w, vd_engine_t *e);
void vd_worker_notify(vd_worker_t *w);
/* Main thread: give up on W, whose decision overran (worker.c says what
 * that does); its hand-offs not yet adopted are moved to *queue (free()
 * it).  Returns how many of its connections were shut down. */
unsigned vd_worker_abandon(vd_worker_t *w, vd_handoff_t **queue, size_t *n);

/* validate.c (owner: one thread, the main one).  Start validating BUNDLE
 * (taken; NULL: load DIR) under LIM on a new thread, which builds NENGINES
 * engines if it passes (CHECK 0: without validating) and then sends NOTIFY
 * if not NULL.  Returns 0 or VD_ENOMEM / VD_EINTERNAL (bundle released). */
int vd_validation_start(vd_validation_t **out, const char *dir,
                        vd_bundle_t *bundle, const vd_limits_t *lim,
                        unsigned nengines, int check, uv_async_t *notify);
/* 1 once the thread is done and its results can be read. */
int vd_validation_finished(vd_validation_t *v);
/* Block up to TIMEOUT_MS for the thread: 0 if it is done, else
 * VD_EPOLICY_TIMEOUT (it still runs; abandon or wait again). */
int vd_validation_wait(vd_validation_t *v, int64_t timeout_ms);
/* Free a finished validation, and what is left of its results; one that
 * is still running is abandoned instead. */
void vd_validation_free(vd_validation_t *v);
/* Walk away from V: from now on its thread frees it when it returns, and
 * never sends notify.  V must not be used after this. */
void vd_validation_abandon(vd_validation_t *v);
/* The bundle V validates, a new reference, or NULL while it is still
 * being read. */
vd_bundle_t *vd_validation_bundle(vd_validation_t *v);
/* Abandoned validations whose thread has not returned. */
unsigned vd_validations_stuck(void);

/* daemon.c: the status line answering request ID_JSON (any thread).
 * with_files adds which file decides each region and kind. */
void vd_daemon_write_status(vd_daemon_t *d, vd_buf_t *out,
                            const char *id_json, int with_files);
/* A listening Unix socket at PATH, mode MODE: a file left by a daemon that
 * died is replaced, one a live daemon answers on is refused.  Returns the
 * fd, or -1 with err set. */
int vd_daemon_listen_unix(const char *path, mode_t mode, vd_buf_t *err);
/* N engines for bundle B under LIM (any thread); all or nothing: on
 * failure every out[i] is NULL and err says why. */
int vd_daemon_build_engines(unsigned n, const vd_limits_t *lim, vd_bundle_t *b,
                            vd_engine_t **out, vd_buf_t *err);
/* A line on stderr, after the time. */
void vd_daemon_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* admin.c (main thread).  Start: the request decoder, --watch, the admin
 * socket if one is asked for; returns 0, or an error with err set and
 * every step undone.  Stop: close the socket, the connections and the
 * watchers (once; the loop then runs their close callbacks).  Release,
 * after the loop has ended: free what is left. */
int vd_admin_start(vd_daemon_t *d, vd_buf_t *err);
void vd_admin_stop(vd_daemon_t *d);
void vd_admin_release(vd_daemon_t *d);
/* 1 if NAME is an operation of the admin socket (the decision socket
 * refuses them as forbidden). */
int vd_admin_has_op(const char *name);
/* Queue a reload of the policy directory (bundle NULL) or activation of a
 * bundle already in memory (takes the reference).  TRIGGER: "sighup",
 * "watch", "admin"; WHO may be NULL. */
void vd_admin_reload(vd_daemon_t *d, const char *trigger, const char *who,
                     vd_bundle_t *bundle);
/* Record the revision that serves from start-up and what is in force. */
void vd_admin_startup(vd_daemon_t *d, vd_engine_t *e);

/* fleet.c (main thread).  With a PostgreSQL history, follow the fleet's
 * desired revision on a thread of its own; a no-op returning 0 for a
 * SQLite file.  Stop: join the thread, close its handle (once). */
typedef struct vd_fleet vd_fleet_t;
int vd_fleet_start(vd_daemon_t *d);
void vd_fleet_stop(vd_daemon_t *d);

#endif
