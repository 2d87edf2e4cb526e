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

#include <http_parser.h>
#include <uv.h>

#include "log.h"
#include "verdict/buf.h"
#include "verdict/daemon.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/metrics.h"
#include "verdict/pseudonym.h"
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

/* HTTP (http.c, and worker.c's HTTP part): the request line and headers
 * of one request together at most this many bytes (431 and a close);
 * a request begun must be complete within VD_HTTP_REQUEST_MS (408 and a
 * close); a keep-alive connection idle for VD_HTTP_IDLE_MS, with nothing
 * of it waiting to be answered, is closed.  A worker looks every
 * VD_HTTP_SWEEP_MS. */
#define VD_HTTP_MAX_HEADER 16384
#define VD_HTTP_REQUEST_MS 10000
#define VD_HTTP_IDLE_MS 60000
#define VD_HTTP_SWEEP_MS 1000

/* One HTTP request as read: valid during the on_request callback. */
typedef struct vd_http_req {
  int method;           /* http-parser's HTTP_GET, HTTP_POST, ... */
  vd_buf_t target;      /* the request target: path and query */
  vd_buf_t body;        /* decoded (chunked or not) */
  vd_buf_t auth;        /* Authorization, or empty */
  vd_buf_t idem;        /* Idempotency-Key, or empty */
  vd_buf_t cookie;      /* Cookie (the console's login), or empty */
  int expect_continue;  /* Expect: 100-continue */
  int keep_alive;       /* the connection may serve another request */
} vd_http_req_t;

/* Called for each complete request: 0 to go on, VD_HTTP_PAUSE to parse
 * no further until vd_http_resume() (an answer that comes later), any
 * other value to read no further. */
#define VD_HTTP_PAUSE 2
typedef int (*vd_http_request_cb)(void *arg, vd_http_req_t *req);

/* An HTTP connection's parser (http.c).  Fields after `parser` are
 * http.c's; the worker reads in_message, started_ms and the error. */
typedef struct vd_http {
  http_parser parser;
  vd_http_req_t req;
  size_t max_body;
  size_t header_bytes;  /* of the request being read */
  int which;            /* the header being read (http.c) */
  char name[32];        /* its name, gathered from its pieces */
  size_t name_len;
  int in_value;         /* the pieces now are its value's */
  char expect[16];      /* Expect's value, gathered */
  size_t expect_len;
  int in_message;       /* a request begun and not complete */
  int64_t started_ms;   /* ...since */
  int stopped;          /* on_request said stop */
  int paused;           /* ...or pause: the bytes after wait in rest */
  vd_buf_t rest;
  uint64_t nrequests;
  int error_status;     /* 400, 413, 431: the request refused, and why */
  int error_code;
  const char *error_msg;/* static, or NULL: the code's description */
  vd_http_request_cb on_request;
  void (*on_continue)(void *arg);
  void *arg;
} vd_http_t;

/* Set up H (which allocates nothing until bytes come) for bodies of at
 * most MAX_BODY bytes; ON_REQUEST and ON_CONTINUE (a request waits for
 * "100 Continue"; may be NULL) get ARG. */
void vd_http_init(vd_http_t *h, size_t max_body, vd_http_request_cb on_request,
                  void (*on_continue)(void *), void *arg);
void vd_http_release(vd_http_t *h);
/* Parse [p, p+n), calling on_request for each complete request.  0, or
 * -1 once on_request said stop, or the status of a refused request
 * (h->error_*): answer it and close; nothing more is parsed. */
int vd_http_feed(vd_http_t *h, const char *p, size_t n);
/* Parse what waited since on_request paused; as vd_http_feed(). */
int vd_http_resume(vd_http_t *h);
/* Bytes H holds of requests not yet complete or not yet parsed. */
size_t vd_http_held(const vd_http_t *h);
/* Append a response: status line, Content-Type, Content-Length,
 * "Connection: close" unless KEEP_ALIVE, EXTRA_HEADERS (each ending in
 * "\r\n", or NULL), the body. */
void vd_http_write(vd_buf_t *out, int status, const char *content_type,
                   const char *extra_headers, const char *body, size_t len,
                   int keep_alive);

/* auth.c: the token file (--tokens).  A table never changes once loaded:
 * any thread may read one it holds (under d->tokens_lock). */
enum { VD_ROLE_DECIDE = 1, VD_ROLE_AUDIT = 2, VD_ROLE_ADMIN = 4 };
typedef struct vd_tokens vd_tokens_t;
/* Read PATH: 0 and *out (vd_tokens_free() it), or an error with err
 * naming the file and line. */
int vd_tokens_load(const char *path, vd_tokens_t **out, vd_buf_t *err);
void vd_tokens_free(vd_tokens_t *t);
size_t vd_tokens_count(const vd_tokens_t *t);
/* The roles (VD_ROLE_* bits) of the bearer token [token, token+len), its
 * credential's name into name[cap]; 0 for a token not in T. */
unsigned vd_tokens_check(const vd_tokens_t *t, const char *token, size_t len,
                         char *name, size_t cap);
/* The roles of every line of T named NAME (a client certificate's CN). */
unsigned vd_tokens_roles_of(const vd_tokens_t *t, const char *name);

/* console.c: the web console's pages under /console/ (docs/console.md),
 * built on libuv's thread pool (worker.c's http_console() queues it; any
 * thread may call it).  The answer is built whole into A
 * (status, a static content type, extra header lines, body); release it
 * with vd_console_answer_release().  LOOPBACK and TLS describe the peer
 * and the listener, as the worker's authorize() reads them. */
typedef struct vd_console_answer {
  int status;
  const char *type;
  vd_buf_t headers;
  vd_buf_t body;
  void (*after)(void *arg, int run); /* non-NULL: work queued on the
                             * pool once the answer is sent (an Impact
                             * run), RUN 1; RUN 0 (on the loop): it could
                             * not be queued, give it up */
  void *after_arg;
} vd_console_answer_t;
void vd_console_serve(vd_daemon_t *d, int loopback, int tls,
                      const vd_http_req_t *req, vd_console_answer_t *a);
void vd_console_answer_release(vd_console_answer_t *a);
/* Cancel the console's Impact run in progress, if any (daemon_stop()):
 * its lanes stop before their next row, so stopping never waits for a
 * replay.  Any thread. */
void vd_console_stop(vd_daemon_t *d);

/* tls.c: TLS over memory BIOs, between a connection's socket and its
 * protocol.  The context is made once on the main thread and then only
 * read; each vd_tls_t is its connection's worker's. */
typedef struct vd_tls_ctx vd_tls_ctx_t;
typedef struct vd_tls vd_tls_t;
/* CERT (a PEM chain) and KEY; CLIENT_CA (or NULL): require a client
 * certificate it signed.  0, or an error with err naming the option. */
int vd_tls_ctx_new(vd_tls_ctx_t **out, const char *cert, const char *key,
                   const char *client_ca, vd_buf_t *err);
void vd_tls_ctx_free(vd_tls_ctx_t *t);
int vd_tls_ctx_verifies(const vd_tls_ctx_t *t);
vd_tls_t *vd_tls_new(vd_tls_ctx_t *ctx);   /* NULL: out of memory */
void vd_tls_free(vd_tls_t *t);
/* Ciphertext [p, p+n) in: plaintext appended to PLAIN, bytes to send
 * (the handshake's, an alert) to CIPHER.  0, 1 once the client closed
 * its side (close_notify), -1 on a failure (err says which; send CIPHER,
 * then close). */
int vd_tls_feed(vd_tls_t *t, const char *p, size_t n, vd_buf_t *plain,
                vd_buf_t *cipher, vd_buf_t *err);
/* Plaintext [p, p+n) out: its records appended to CIPHER.  0 or -1. */
int vd_tls_seal(vd_tls_t *t, const char *p, size_t n, vd_buf_t *cipher);
int vd_tls_ready(const vd_tls_t *t);      /* the handshake is done */
/* After vd_tls_feed() failed in the handshake: why, as one of a few
 * fixed words (not_tls, no_client_certificate, bad_client_certificate,
 * no_common_protocol, client_alert, other); else NULL.  Static string. */
const char *vd_tls_failure(const vd_tls_t *t);
/* The verified client certificate's subject CN, or NULL. */
const char *vd_tls_subject(const vd_tls_t *t);

/* idem.c: idempotency keys, remembered VD_IDEM_WINDOW_MS (24 h), at most
 * VD_IDEM_MAX of them and VD_IDEM_BYTES of answers, oldest dropped first.
 * Any thread (one mutex). */
#define VD_IDEM_WINDOW_MS VD_HISTORY_IDEM_WINDOW_MS
#define VD_IDEM_MAX 200000
#define VD_IDEM_BYTES (64u << 20)
enum { VD_IDEM_NEW, VD_IDEM_HIT, VD_IDEM_BUSY, VD_IDEM_CONFLICT };
typedef struct vd_idem vd_idem_t;
int vd_idem_new(vd_idem_t **out);
void vd_idem_free(vd_idem_t *t);
/* A request [req, req+len) with KEY in SCOPE (the credential's name, or
 * ""): VD_IDEM_NEW (remembered from now: decide it, then _answer() and
 * _settle()), VD_IDEM_HIT (the first one's answer line appended to
 * ANSWER, its code in *code), VD_IDEM_BUSY (the first is not settled
 * yet) or VD_IDEM_CONFLICT (the key came with other bytes).  DIGEST
 * receives the SHA-256 of the request's bytes, which the history stores
 * with the key. */
int vd_idem_begin(vd_idem_t *t, const char *scope, const char *key,
                  const char *req, size_t len, vd_buf_t *answer, int *code,
                  uint8_t digest[32]);
/* A key the history kept (vd_history_idem_load()), answered and settled
 * as it was before a restart; one past the window is not taken.  0, or
 * VD_ENOMEM. */
int vd_idem_restore(vd_idem_t *t, const vd_history_idem_t *k);
/* The answer to the NEW request of KEY; FINAL: it needs no commit. */
void vd_idem_answer(vd_idem_t *t, const char *scope, const char *key,
                    const char *answer, size_t len, int code, int final);
/* Its record is STORED (the answer stands), or not (the key is
 * forgotten, and a retry decided). */
void vd_idem_settle(vd_idem_t *t, const char *scope, const char *key,
                    int stored);

/* How vd_worker_abandon() can still say something on a connection: an
 * NDJSON line, an HTTP response, or nothing (TLS: its records are the
 * stuck thread's to seal). */
enum { VD_FRAMING_LINE, VD_FRAMING_HTTP, VD_FRAMING_NONE };

/* verdict_open_connections{transport}: the index of each label. */
enum { VD_TRANSPORT_UNIX, VD_TRANSPORT_TCP, VD_TRANSPORT_TCP_TLS,
       VD_TRANSPORT_HTTP, VD_TRANSPORT_HTTPS };

/* A connection handed from the main thread to a worker. */
typedef struct vd_handoff {
  int fd;
  int is_tcp;
  int is_http;             /* accepted on --http */
  int tls;                 /* ...or --listen, with --tls-cert */
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
  uv_timer_t http_sweep;   /* while HTTP connections: VD_HTTP_SWEEP_MS */
  vd_metrics_shard_t *metrics;   /* this thread's counters, or NULL */
  vd_metrics_series_t *m_conns[5]; /* open connections, by VD_TRANSPORT_* */
  vd_metrics_series_t *m_lua;    /* its Lua state's bytes */
  unsigned nhttp;          /* open HTTP connections */
  unsigned nthrottled;     /* connections not read for back-pressure */

  uv_mutex_t lock;         /* guards the fields up to `engine` */
  vd_handoff_t *queue;
  size_t nqueue, capqueue;
  int stop;                /* the main thread asked us to finish */
  vd_engine_t *next_engine;/* a newer revision to switch to */
  struct vd_open_fd {      /* the open connections: */
    int fd;
    int framing;           /* VD_FRAMING_*: what a last word to it is */
  } *fds;
  size_t nfds, capfds;

  vd_engine_t *engine;     /* the revision deciding now (worker-only) */
  vd_watch_slot_t *watch;  /* this thread's watchdog slot, or NULL */
  vd_history_reader_t *reader; /* answers ctx.history (worker-only) */
  vd_uuidgen_t uuid;
  vd_decision_t dec;       /* scratch, reused for every request */
  vd_buf_t scratch;
  /* --pseudonymise-key: the engine's personal fields, and the record's
   * rewritten texts (worker.c, record_and_respond) */
  char **personal;
  size_t npersonal;
  vd_buf_t pseudo_req, pseudo_facts;
  char readbuf[65536];
  vd_buf_t tlsplain;       /* a TLS read's plaintext (scratch) */
  /* the idempotency key of the request being decided, or NULL; set if
   * record_and_respond() took it over */
  const char *idem_key, *idem_scope;
  int idem_taken;
  uint8_t idem_digest[32]; /* ...and the SHA-256 of its bytes */
  /* GET /v1/openapi.json of the revision named openapi_rev ("": none
   * yet), built on the first request after an activation (worker.c,
   * http_openapi) */
  vd_buf_t openapi;
  vd_history_finder_t *finder; /* GET /v1/decisions/{id}'s, or NULL */
  char openapi_rev[VD_REVISION_NAME_MAX];
  vd_buf_t idem_scoped;    /* scope, newline, key: the history's form */
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
  vd_pseudonym_key_t *pkey; /* --pseudonymise-key, or NULL (read-only) */
  vd_watchdog_t watchdog;  /* fast attempts; .started is 0 without */
  int64_t started_ms;
  int64_t activated_ms;
  char activated_by[32];
  /* the fleet's revision this node refused at start-up (daemon.c,
   * start_on_directory()), or "": the fleet thread does not try it
   * again until the fleet's revision changes */
  char fleet_refused[128];
  vd_buf_t last_failure;   /* why the last reload was refused */

  int unix_fd, tcp_fd, http_fd;
  uv_poll_t unix_poll, tcp_poll, http_poll;
  /* --tokens, reread on SIGHUP; NULL without (HTTP serves loopback only) */
  vd_tokens_t *tokens;
  uv_rwlock_t tokens_lock;
  vd_tls_ctx_t *tls;       /* --tls-cert: the TCP and HTTP listeners' */
  vd_idem_t *idem;         /* idempotency keys (idem.c); NULL: none kept */
  vd_metrics_t *metrics;   /* GET /metrics (metrics.h); NULL: none kept */
  /* TLS handshake failures' log lines, at most one a second across the
   * workers (worker.c, tls_failed): when the last went, and how many
   * were left out since */
  _Atomic int64_t tls_logged_ms;
  atomic_ulong tls_unlogged;
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
/* A listening Unix socket at PATH, mode MODE, its group GROUP ((gid_t)-1:
 * the daemon's): a file left by a daemon that died is replaced, one a live
 * daemon answers on is refused.  OPTION names the option that gave PATH
 * in errors.  Returns the fd, or -1 with err set. */
int vd_daemon_listen_unix(const char *path, mode_t mode, gid_t group,
                          const char *option, vd_buf_t *err);
/* N engines for bundle B under LIM (any thread); all or nothing: on
 * failure every out[i] is NULL and err says why. */
int vd_daemon_build_engines(unsigned n, const vd_limits_t *lim, vd_bundle_t *b,
                            vd_engine_t **out, vd_buf_t *err);

/* daemon.c (main thread): tell the service manager (sd_notify(3); nothing
 * without NOTIFY_SOCKET) that the daemon serves: READY=1, and a STATUS
 * with the active revision, after start-up and after each reload, which
 * WHAT describes ("started", "activated", "refused"). */
void vd_daemon_notify_ready(vd_daemon_t *d, const char *what);

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
int vd_admin_startup(vd_daemon_t *d, vd_engine_t *e);

/* fleet.c (main thread).  With a PostgreSQL history, follow the fleet's
 * desired revision on a thread of its own; a no-op returning 0 for a
 * SQLite file.  Stop: join the thread, close its handle (once). */
typedef struct vd_fleet vd_fleet_t;
int vd_fleet_start(vd_daemon_t *d);
void vd_fleet_stop(vd_daemon_t *d);
/* At start-up, before the engines are made: with a PostgreSQL history,
 * start on the fleet's revision rather than the directory's (unless
 * --policies-win), so a rollback, or an activate of an older revision,
 * on any node outlasts this node's restart.  Logs what it did; the
 * directory's bundle stays when there is nothing to keep or it cannot
 * be loaded. */
void vd_fleet_keep_desired(vd_daemon_t *d);

#endif
