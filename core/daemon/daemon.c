/*
 * daemon.c - verdictd's main thread: sockets, accepting, signals, workers.
 *
 * Owns the listening sockets, the worker array and the active bundle.  The
 * main thread accepts every connection (accept4 on a readable listening
 * socket, watched with uv_poll) and hands it to the worker with the fewest
 * connections; after that the worker owns it.  SIGTERM and SIGINT stop
 * accepting, let every worker answer what it has read, and return.
 *
 * Start-up validates the bundle exactly as a reload does (unless
 * --unchecked), under the same --validate-timeout: a bundle that fails or
 * runs out of time is recorded as a refused activation and the daemon
 * returns before it listens on anything.
 *
 * Runs on the main thread; vd_daemon_write_status() is called by workers
 * and reads only atomics and fields under state_lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon_int.h"
#include "verdict/daemon.h"
#include "verdict/timefmt.h"
#include "verdict/wire.h"

/* ------------------------------------------------------------------------
 * Listening sockets
 * ------------------------------------------------------------------------ */

int vd_daemon_listen_unix(const char *path, mode_t mode, gid_t group,
                          const char *option, vd_buf_t *err) {
  struct sockaddr_un sa;
  int fd;
  if (strlen(path) >= sizeof sa.sun_path) {
    vd_buf_addf(err, "%s: socket path too long", path);
    return -1;
  }
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    vd_buf_addf(err, "socket: %s", strerror(errno));
    return -1;
  }
  /* A socket file left by a daemon that died is replaced; one that a
   * live daemon answers on is not. */
  if (access(path, F_OK) == 0) {
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
      close(probe);
      close(fd);
      vd_buf_addf(err, "%s: another daemon is listening on this socket", path);
      return -1;
    }
    if (probe >= 0)
      close(probe);
    unlink(path);
  }
  /* The group is given before the mode opens the socket to it. */
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    vd_buf_addf(err, "%s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  if (group != (gid_t)-1 && chown(path, (uid_t)-1, group) != 0) {
    vd_buf_addf(err, "%s %s: cannot give it group %u: %s (the daemon's user "
                     "must be a member of the group)",
                option, path, (unsigned)group, strerror(errno));
    goto fail;
  }
  if (chmod(path, mode) != 0 || listen(fd, 1024) != 0) {
    vd_buf_addf(err, "%s: %s", path, strerror(errno));
    goto fail;
  }
  return fd;
fail:
  unlink(path);
  close(fd);
  return -1;
}

static int listen_tcp(const char *opt, const char *spec, vd_buf_t *err) {
  char host[256];
  const char *port;
  struct addrinfo hints, *res = NULL, *ai;
  int fd = -1, one = 1, rc;
  if (vd_hostport_split(spec, host, sizeof host, &port) != 0) {
    vd_buf_addf(err, "%s %s: expected HOST:PORT", opt, spec);
    return -1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    vd_buf_addf(err, "%s %s: %s", opt, spec, gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0)
      continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
      break;
    close(fd);
    fd = -1;
  }
  if (fd < 0)
    vd_buf_addf(err, "%s %s: %s", opt, spec, strerror(errno));
  freeaddrinfo(res);
  return fd;
}

static void describe_peer(int fd, int is_tcp, char out[64]) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN];
  if (!is_tcp) {
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
      snprintf(out, 64, "unix:uid=%u,pid=%d", (unsigned)cred.uid,
               (int)cred.pid);
    else
      snprintf(out, 64, "unix");
    return;
  }
  if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
    snprintf(out, 64, "tcp");
  } else if (ss.ss_family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    snprintf(out, 64, "%s:%u", ip, ntohs(s4->sin_port));
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    snprintf(out, 64, "[%s]:%u", ip, ntohs(s6->sin6_port));
  }
}

static vd_worker_t *least_loaded(vd_daemon_t *d) {
  unsigned i, best = d->next_worker % d->nworkers;
  unsigned min = atomic_load(&d->workers[d->active[best]].connections);
  for (i = 0; i < d->nworkers; i++) {
    unsigned n = atomic_load(&d->workers[d->active[i]].connections);
    if (n < min) {
      min = n;
      best = i;
    }
  }
  d->next_worker = best + 1;
  return &d->workers[d->active[best]];
}

static void resume_accepting(uv_timer_t *t);

static void on_acceptable(uv_poll_t *p, int status, int events) {
  vd_daemon_t *d = p->data;
  int lfd, is_http = p == &d->http_poll, is_tcp = is_http || p == &d->tcp_poll;
  (void)events;
  if (status < 0 || d->stopping)
    return;
  lfd = is_http ? d->http_fd : is_tcp ? d->tcp_fd : d->unix_fd;
  for (;;) {
    vd_handoff_t h;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EINTR || e == ECONNABORTED)
        continue;
      if ((e == EAGAIN || e == EWOULDBLOCK) && d->accept_pauses) {
        vd_log(VD_LEVEL_NOTICE, "accept_resumed",
               "accepting again: every waiting connection taken, "
               "after %u pause%s",
               d->accept_pauses, d->accept_pauses == 1 ? "" : "s");
        d->accept_pauses = 0;
      }
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* Out of descriptors: pause accepting briefly rather than spin,
         * and say so once, not every 100 ms for as long as it lasts. */
        if (d->accept_pauses++ == 0)
          vd_log(VD_LEVEL_WARNING, "accept_paused",
                 "accept: %s; pausing accepts for 100 ms at a time "
                 "while it lasts",
                 strerror(e));
        uv_poll_stop(&d->unix_poll);
        if (d->tcp_fd >= 0)
          uv_poll_stop(&d->tcp_poll);
        if (d->http_fd >= 0)
          uv_poll_stop(&d->http_poll);
        uv_timer_start(&d->accept_pause, resume_accepting, 100, 0);
      }
      return;
    }
    memset(&h, 0, sizeof h);
    h.fd = fd;
    h.is_tcp = is_tcp;
    h.is_http = is_http;
    h.tls = is_tcp && d->tls != NULL;
    describe_peer(fd, is_tcp, h.peer);
    vd_worker_handoff(least_loaded(d), &h);
  }
}

static void resume_accepting(uv_timer_t *t) {
  vd_daemon_t *d = t->data;
  if (d->stopping)
    return;
  uv_poll_start(&d->unix_poll, UV_READABLE, on_acceptable);
  if (d->tcp_fd >= 0)
    uv_poll_start(&d->tcp_poll, UV_READABLE, on_acceptable);
  if (d->http_fd >= 0)
    uv_poll_start(&d->http_poll, UV_READABLE, on_acceptable);
}

/* ------------------------------------------------------------------------
 * Status
 * ------------------------------------------------------------------------ */

void vd_daemon_write_status(vd_daemon_t *d, vd_buf_t *out,
                            const char *id_json, int with_files) {
  vd_wire_status_t s;
  unsigned i;
  int k;
  memset(&s, 0, sizeof s);
  for (i = 0; i < d->nslots; i++) { /* replaced ones' counts too */
    vd_worker_t *w = &d->workers[i];
    s.decisions += atomic_load_explicit(&w->decisions, memory_order_relaxed);
    s.connections += atomic_load_explicit(&w->connections,
                                          memory_order_relaxed);
    s.recounted += atomic_load_explicit(&w->recounts, memory_order_relaxed);
    for (k = 0; k < VD_ERR_COUNT; k++)
      s.errors[k] += atomic_load_explicit(&w->errors[k], memory_order_relaxed);
  }
  s.started_ms = d->started_ms;
  s.workers = d->nworkers;
  s.heap_bytes = vd_heap_in_use();
  s.log_mode = vd_history_mode_name(d->opts.log_mode);
  s.budget_mode = d->watchdog.started ? "watchdog" : "count";
  s.interrupts =
      d->watchdog.started ? vd_watchdog_interrupts(&d->watchdog) : 0;
  s.overruns = atomic_load(&d->overruns);
  /* the strings below are the daemon's, changed only under the lock */
  uv_mutex_lock(&d->state_lock);
  s.instructions = d->opts.limits.instr_budget; /* a SIGHUP may change it */
  s.revision = vd_bundle_revision(d->bundle);
  s.source = vd_bundle_source(d->bundle);
  s.activated_ms = d->activated_ms;
  s.activated_by = d->activated_by;
  s.last_failure = d->last_failure.len ? d->last_failure.data : NULL;
  s.history_check = d->check_state;
  s.history_check_error = d->check_error;
  if (with_files && d->in_force.len) {
    s.in_force = d->in_force.data;
    s.in_force_len = d->in_force.len;
  }
  s.now_ms = vd_now_ms();
  vd_wire_write_status(out, id_json, &s);
  uv_mutex_unlock(&d->state_lock);
}

/* ------------------------------------------------------------------------
 * Signals and stopping
 * ------------------------------------------------------------------------ */

static void on_history_done(unsigned worker, void *arg) {
  vd_daemon_t *d = arg;
  if (worker < d->nslots && !atomic_load(&d->workers[worker].abandoned))
    vd_worker_notify(&d->workers[worker]);
}

static void close_listeners(vd_daemon_t *d) {
  if (d->unix_fd >= 0) {
    uv_poll_stop(&d->unix_poll);
    uv_close((uv_handle_t *)&d->unix_poll, NULL);
    close(d->unix_fd);
    unlink(d->opts.socket);
    d->unix_fd = -1;
  }
  if (d->tcp_fd >= 0) {
    uv_poll_stop(&d->tcp_poll);
    uv_close((uv_handle_t *)&d->tcp_poll, NULL);
    close(d->tcp_fd);
    d->tcp_fd = -1;
  }
  if (d->http_fd >= 0) {
    uv_poll_stop(&d->http_poll);
    uv_close((uv_handle_t *)&d->http_poll, NULL);
    close(d->http_fd);
    d->http_fd = -1;
  }
}

/* The main loop's own handles (daemon_init() made them): closed once, by
 * a stop or by the clean-up of a start that failed. */
static void close_own_handles(vd_daemon_t *d) {
  if (uv_is_closing((uv_handle_t *)&d->sig_term))
    return;
  uv_timer_stop(&d->accept_pause);
  uv_close((uv_handle_t *)&d->accept_pause, NULL);
  uv_timer_stop(&d->overrun_timer);
  uv_close((uv_handle_t *)&d->overrun_timer, NULL);
  uv_close((uv_handle_t *)&d->sig_term, NULL);
  uv_close((uv_handle_t *)&d->sig_int, NULL);
  uv_close((uv_handle_t *)&d->sig_hup, NULL);
}

/* Stop accepting, and let every worker answer what it has read; the main
 * loop returns once the workers and the admin channel are done. */
/* ------------------------------------------------------------------------
 * The service manager (systemd's Type=notify; verdictd.service)
 * ------------------------------------------------------------------------ */

void vd_daemon_notify_ready(vd_daemon_t *d, const char *what) {
  sd_notifyf(0, "READY=1\nSTATUS=serving %s (%s)",
             vd_bundle_revision(d->bundle), what);
}

static void daemon_stop(vd_daemon_t *d, const char *why) {
  unsigned i;
  if (d->stopping)
    return;
  /* main thread's own flag, but /health/ready reads it on a worker under
   * state_lock (http_ready in worker.c): set it under the same lock */
  uv_mutex_lock(&d->state_lock);
  d->stopping = 1;
  uv_mutex_unlock(&d->state_lock);
  sd_notifyf(0, "STOPPING=1\nSTATUS=stopping: %s", why);
  uv_timer_stop(&d->overrun_timer);
  vd_log(VD_LEVEL_NOTICE, "stopping",
         "%s: no longer accepting; finishing requests in flight", why);
  close_listeners(d);
  vd_admin_stop(d);
  vd_fleet_stop(d);
  vd_console_stop(d);
  close_own_handles(d);
  for (i = 0; i < d->nslots; i++)
    if (d->workers[i].started && !atomic_load(&d->workers[i].abandoned))
      vd_worker_request_stop(&d->workers[i]);
}

/* ------------------------------------------------------------------------
 * Decisions past --decide-timeout
 *
 * The instruction budget stops a policy looping in Lua, and the sandbox
 * bounds the C functions a policy can reach; this is the last resort for
 * a decision that is stuck all the same (in C, where no hook fires).  A
 * thread cannot be stopped from outside, so its worker is given up:
 * vd_worker_abandon() shuts its connections down with an error line, a
 * replacement starts in a spare slot and takes its place in d->active
 * (new connections, reloads), and the stuck thread is left behind with
 * its engine and memory until the process ends.  After
 * VD_WORKERS_STUCK_MAX of them, the next overrun stops the daemon with
 * exit status 1, for its supervisor to restart it.
 * ------------------------------------------------------------------------ */

static void replace_worker(vd_daemon_t *d, unsigned i, int64_t ran_ms) {
  unsigned old = d->active[i], slot = d->nworkers + d->nstuck;
  vd_worker_t *w = &d->workers[old];
  vd_handoff_t *queue;
  vd_engine_t *e = NULL;
  vd_buf_t err = VD_BUF_INIT;
  size_t n, k;
  unsigned shut = vd_worker_abandon(w, &queue, &n);
  d->nstuck++;
  vd_log(VD_LEVEL_ERR, "decide_overrun",
         "worker %u: a decision has run for %lld ms, past "
         "--decide-timeout (%u ms); its thread cannot be stopped and "
         "is left behind (%u of at most %u), its %u connections are "
         "closed with an error",
         old, (long long)ran_ms, d->opts.decide_timeout_ms, d->nstuck,
         (unsigned)VD_WORKERS_STUCK_MAX, shut);
  if (d->nstuck > VD_WORKERS_STUCK_MAX ||
      vd_engine_new(d->bundle, &d->opts.limits, &e, &err) != 0 ||
      vd_worker_start(&d->workers[slot], d, slot, e) != 0) {
    if (d->nstuck > VD_WORKERS_STUCK_MAX)
      vd_log(VD_LEVEL_ERR, "workers_stuck",
             "too many workers stuck in decisions: stopping, for a "
             "fresh process to take over");
    else
      vd_log(VD_LEVEL_ERR, "worker_replace_failed",
             "cannot start a worker to replace worker %u: %s; "
             "stopping",
             old, err.len ? err.data : "no thread");
    for (k = 0; k < n; k++)
      close(queue[k].fd);
    free(queue);
    vd_buf_release(&err);
    d->exit_status = 1;
    daemon_stop(d, "a decision overran --decide-timeout");
    return;
  }
  vd_buf_release(&err);
  d->active[i] = slot;
  vd_log(VD_LEVEL_NOTICE, "worker_replaced", "worker %u replaces worker %u",
         slot, old);
  for (k = 0; k < n; k++) /* handed over but never adopted */
    vd_worker_handoff(least_loaded(d), &queue[k]);
  free(queue);
}

static void on_overrun_check(uv_timer_t *t) {
  vd_daemon_t *d = t->data;
  int64_t now = vd_now_ms();
  unsigned i;
  for (i = 0; i < d->nworkers && !d->stopping; i++) {
    vd_worker_t *w = &d->workers[d->active[i]];
    int64_t since = atomic_load_explicit(&w->busy_since_ms,
                                         memory_order_relaxed);
    if (since && now - since > (int64_t)d->opts.decide_timeout_ms) {
      atomic_fetch_add(&d->overruns, 1);
      replace_worker(d, i, now - since);
    }
  }
}

/* Read --tokens into d->tokens: at start-up, and again on SIGHUP, where a
 * file that fails keeps the tokens in force.  0 or an error (logged). */
static int load_tokens(vd_daemon_t *d) {
  vd_tokens_t *t = NULL, *old;
  vd_buf_t err = VD_BUF_INIT;
  int rc = vd_tokens_load(d->opts.tokens, &t, &err);
  if (rc != 0) {
    vd_log(VD_LEVEL_ERR, "tokens_refused", "%s%s",
           err.len ? err.data : "--tokens: out of memory",
           d->tokens ? "; the tokens read before stay in force" : "");
    vd_buf_release(&err);
    return rc;
  }
  uv_rwlock_wrlock(&d->tokens_lock);
  old = d->tokens;
  d->tokens = t;
  uv_rwlock_wrunlock(&d->tokens_lock);
  vd_tokens_free(old);
  vd_log(VD_LEVEL_NOTICE, "tokens_loaded", "--tokens %s: %zu credential%s",
         d->opts.tokens, vd_tokens_count(t),
         vd_tokens_count(t) == 1 ? "" : "s");
  vd_buf_release(&err);
  return 0;
}

static void on_stop_signal(uv_signal_t *s, int signum) {
  daemon_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* SIGHUP: reload the policy directory (validated, then switched). */
static void on_hup(uv_signal_t *s, int signum) {
  vd_daemon_t *d = s->data;
  (void)signum;
  sd_notify(0, "RELOADING=1\nSTATUS=reloading (SIGHUP)");
  if (d->opts.on_sighup) {
    /* status reads the limits from workers, under the lock */
    uv_mutex_lock(&d->state_lock);
    d->opts.on_sighup(&d->opts, d->opts.on_sighup_arg);
    uv_mutex_unlock(&d->state_lock);
  }
  if (d->opts.tokens)
    load_tokens(d);
  vd_admin_reload(d, "sighup", NULL, NULL);
}

/* ------------------------------------------------------------------------
 * Engines, and a bundle refused at start-up
 * ------------------------------------------------------------------------ */

int vd_daemon_build_engines(unsigned n, const vd_limits_t *lim, vd_bundle_t *b,
                            vd_engine_t **out, vd_buf_t *err) {
  unsigned i;
  int rc;
  for (i = 0; i < n; i++) {
    rc = vd_engine_new(b, lim, &out[i], err);
    if (rc) {
      while (i-- > 0) {
        vd_engine_free(out[i]);
        out[i] = NULL;
      }
      return rc;
    }
  }
  return 0;
}

/* A bundle refused at start-up: the message names the first problem the
 * validator reports ("file:line: message" or "FAIL file case N (name)"); the
 * whole report (expected and actual values, totals) is the event's detail,
 * as for a refused reload. */
static void log_refused(const vd_daemon_t *d, const char *report) {
  int first = (int)strcspn(report, "\n");
  vd_log_detail(VD_LEVEL_ERR, "start_refused",
                report[first] && report[first + 1] ? report : NULL,
                "cannot start: %s (%s) fails its checks: %.*s",
                d->opts.policies, vd_bundle_revision(d->bundle), first, report);
}


/* ------------------------------------------------------------------------
 * The history's whole-file check
 * ------------------------------------------------------------------------ */

/* PRAGMA quick_check reads every page of the history: minutes on a large
 * one, so it runs here, on a thread of its own, while the daemon serves.
 * Damage is logged and shown by status; writes that meet it fail on their
 * own (their requests get `internal`). */
static void history_check_main(void *arg) {
  vd_daemon_t *d = arg;
  int64_t t0 = vd_now_ms();
  char *msg = NULL;
  int rc = vd_history_check_run(d->check, &msg);
  const char *state;
  uv_mutex_lock(&d->state_lock);
  state = rc == 0 ? "ok" : rc == VD_EINVALID ? "damaged"
          : d->check_stopping ? "interrupted" : "failed";
  d->check_state = state;
  d->check_error = msg;
  uv_mutex_unlock(&d->state_lock);
  if (rc == 0)
    vd_log(VD_LEVEL_INFO, "history_sound",
           "history check: %s is sound (quick_check, %.1f s)", d->opts.db,
           (double)(vd_now_ms() - t0) / 1000.0);
  else if (strcmp(state, "interrupted") != 0)
    vd_log(strcmp(state, "damaged") == 0 ? VD_LEVEL_ERR : VD_LEVEL_WARNING,
           strcmp(state, "damaged") == 0 ? "history_damaged"
                                         : "history_check_failed",
           "history check %s: %s", state, msg ? msg : "?");
}

static void history_check_start(vd_daemon_t *d) {
  char *err = NULL;
  d->check_state = "failed";
  if (vd_history_is_postgres(d->opts.db)) {
    d->check_state = "postgresql"; /* the server checks its own pages */
    return;
  }
  if (vd_history_check_open(&d->check, d->opts.db, &err) != 0) {
    vd_log(VD_LEVEL_WARNING, "history_check_not_started",
           "history check not started: %s", err ? err : "?");
    d->check_error = err;
    return;
  }
  d->check_state = "running";
  if (uv_thread_create(&d->check_thread, history_check_main, d) != 0) {
    vd_log(VD_LEVEL_WARNING, "history_check_not_started",
           "history check not started: no thread");
    d->check_state = "failed";
    return;
  }
  d->check_started = 1;
}

static void history_check_stop(vd_daemon_t *d) {
  if (d->check_started) {
    uv_mutex_lock(&d->state_lock);
    d->check_stopping = 1;
    uv_mutex_unlock(&d->state_lock);
    vd_history_check_interrupt(d->check);
    uv_thread_join(&d->check_thread);
  }
  vd_history_check_close(d->check);
  d->check = NULL;
  free(d->check_error);
  d->check_error = NULL;
}

/* ------------------------------------------------------------------------
 * Starting: vd_daemon_run() takes these steps in order and undoes them in
 * reverse, each from the label named for it
 * ------------------------------------------------------------------------ */

/* The daemon's fields and the main loop's own handles.  Signals are caught
 * from here on: one that arrives while we load is handled once the loop
 * runs, never by the default action. */
static void daemon_init(vd_daemon_t *d, const vd_daemon_opts_t *opts) {
  memset(d, 0, sizeof *d);
  d->opts = *opts;
  if (!d->opts.validate_timeout_s)
    d->opts.validate_timeout_s = VD_VALIDATE_TIMEOUT_S;
  if (!d->opts.max_pending_out)
    d->opts.max_pending_out = VD_MAX_PENDING_OUT;
  if (!d->opts.max_pending_total)
    d->opts.max_pending_total = VD_MAX_PENDING_TOTAL;
  d->unix_fd = d->tcp_fd = d->http_fd = -1;
  d->loop = uv_default_loop();
  d->started_ms = d->activated_ms = vd_now_ms();
  snprintf(d->activated_by, sizeof d->activated_by, "startup");
  vd_buf_init(&d->last_failure);
  vd_buf_init(&d->in_force);
  uv_mutex_init(&d->state_lock);
  uv_rwlock_init(&d->tokens_lock);
  if (vd_metrics_new(&d->metrics) != 0)
    vd_log(VD_LEVEL_ERR, "out_of_memory",
           "out of memory for metrics: GET /metrics answers 503");
  if (vd_idem_new(&d->idem) != 0)
    vd_log(VD_LEVEL_ERR, "out_of_memory",
           "out of memory for idempotency keys: requests that carry one are "
           "decided as if they did not");
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN); /* a file-size limit is a write error, not death */
  uv_signal_init(d->loop, &d->sig_term);
  uv_signal_init(d->loop, &d->sig_int);
  uv_signal_init(d->loop, &d->sig_hup);
  d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
  uv_signal_start(&d->sig_term, on_stop_signal, SIGTERM);
  uv_signal_start(&d->sig_int, on_stop_signal, SIGINT);
  uv_signal_start(&d->sig_hup, on_hup, SIGHUP);
  uv_timer_init(d->loop, &d->accept_pause);
  d->accept_pause.data = d;
  uv_timer_init(d->loop, &d->overrun_timer);
  d->overrun_timer.data = d;
}

static void daemon_release(vd_daemon_t *d) {
  close_own_handles(d);
  uv_run(d->loop, UV_RUN_NOWAIT); /* every close callback */
  uv_loop_close(d->loop);
  if (d->bundle)
    vd_bundle_unref(d->bundle);
  d->bundle = NULL;
  vd_buf_release(&d->last_failure);
  vd_buf_release(&d->in_force);
  uv_mutex_destroy(&d->state_lock);
  vd_tokens_free(d->tokens);
  d->tokens = NULL;
  vd_tls_ctx_free(d->tls);
  d->tls = NULL;
  vd_idem_free(d->idem);
  d->idem = NULL;
  vd_metrics_free(d->metrics); /* after every writer: workers, history */
  d->metrics = NULL;
  uv_rwlock_destroy(&d->tokens_lock);
}

/* Load the bundle; it is validated by make_engines(). */
static int load_policies(vd_daemon_t *d) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = vd_bundle_load(d->opts.policies, &d->bundle, &err);
  if (rc != 0)
    vd_log(VD_LEVEL_ERR, "policies_load_failed", "cannot load policies: %s",
           err.data);
  vd_buf_release(&err);
  return rc;
}

/* A rollback survives a restart: when the history's last successful
 * activation was of a stored revision (verdict activate) other than what
 * the directory holds, start with that revision again, unless
 * --policies-win.  The admin's next reload takes the directory.  On a
 * fleet's history, the fleet's revision (fleet.c). */
static void keep_rollback(vd_daemon_t *d) {
  char rev[VD_REVISION_NAME_MAX], *msg = NULL;
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  struct stat st;
  /* Not on a database others can read: the writer's open refuses it with
   * the chmod to run, and this read-only look would first have made its
   * -shm file with the same loose mode, which that chmod leaves behind. */
  if (vd_history_is_postgres(d->opts.db)) { /* a fleet's: its revision */
    vd_fleet_keep_desired(d);
    return;
  }
  if (d->opts.policies_win || stat(d->opts.db, &st) != 0 ||
      (st.st_mode & S_IRWXO) ||
      vd_history_rollback_in_force(d->opts.db, rev, &msg) <= 0 ||
      strcmp(rev, vd_bundle_revision(d->bundle)) == 0) {
    free(msg);
    return;
  }
  if (vd_history_load_bundle(d->opts.db, rev, &b, &err) != 0) {
    vd_log(VD_LEVEL_WARNING, "rollback_not_kept",
           "cannot keep the rollback to %s (%s); starting with %s", rev,
           err.data, d->opts.policies);
  } else {
    vd_log(VD_LEVEL_NOTICE, "rollback_kept",
           "start-up: keeping %s, the revision last activated "
           "(a rollback), not %s in %s; `verdict reload` or "
           "--policies-win takes the directory",
           rev, vd_bundle_revision(d->bundle), d->opts.policies);
    vd_bundle_unref(d->bundle);
    d->bundle = b;
    snprintf(d->activated_by, sizeof d->activated_by, "startup-rollback");
  }
  vd_buf_release(&err);
}

/* The worker array, and one engine per worker.  First the bundle is
 * validated exactly as a reload does (unless --unchecked): a broken edit
 * never goes live, a restart included.  Both run on a validation thread
 * under --validate-timeout, as a reload's do (validate.c), so that a
 * bundle whose code never returns cannot hang the start either.  A bundle
 * that fails or runs out of time is not an error here: *refused says so,
 * and d->last_failure why (the refusal is recorded once the history is
 * open). */
static int make_engines(vd_daemon_t *d, int *refused, vd_engine_t ***out) {
  vd_validation_t *v = NULL;
  unsigned i;
  int rc;
  d->nworkers = d->opts.workers;
  d->nslots = d->nworkers + VD_WORKERS_STUCK_MAX;
  d->workers = calloc(d->nslots, sizeof *d->workers);
  d->active = calloc(d->nworkers, sizeof *d->active);
  *out = calloc(d->nworkers, sizeof **out);
  if (!d->workers || !d->active || !*out) {
    vd_log(VD_LEVEL_ERR, "out_of_memory", "out of memory");
    return VD_ENOMEM;
  }
  vd_bundle_ref(d->bundle); /* the thread's */
  rc = vd_validation_start(&v, d->opts.policies, d->bundle, &d->opts.limits,
                           d->nworkers, !d->opts.unchecked, NULL);
  if (rc != 0) {
    vd_log(VD_LEVEL_ERR, "validation_thread_failed",
           "cannot start a thread to validate the bundle");
    return rc;
  }
  if (vd_validation_wait(v, (int64_t)d->opts.validate_timeout_s * 1000) != 0) {
    vd_validation_abandon(v); /* it ends with the process */
    vd_buf_addf(&d->last_failure,
                "timed out: validation did not finish within %u s "
                "(--validate-timeout)", d->opts.validate_timeout_s);
    log_refused(d, d->last_failure.data);
    *refused = 1;
    return 0;
  }
  rc = v->rc;
  if (rc != 0 && v->refused) {
    vd_buf_add(&d->last_failure, v->err.data, v->err.len);
    log_refused(d, d->last_failure.data);
    *refused = 1;
    rc = 0;
  } else if (rc != 0) {
    vd_log(VD_LEVEL_ERR, "policies_load_failed",
           "cannot load policies from %s: %s", d->opts.policies, v->err.data);
  } else {
    for (i = 0; i < d->nworkers; i++) {
      (*out)[i] = v->engines[i];
      v->engines[i] = NULL;
    }
  }
  vd_validation_free(v);
  return rc;
}

static void free_engines(vd_daemon_t *d, vd_engine_t **engines) {
  unsigned i;
  for (i = 0; engines && i < d->nworkers; i++)
    vd_engine_free(engines[i]);
  free(engines);
}

/* The fleet's revision, refused at start-up by this node's own
 * validation, and why. */
typedef struct fleet_refusal {
  vd_bundle_t *bundle;
  vd_buf_t why;
} fleet_refusal_t;

static void fleet_refusal_free(fleet_refusal_t *f) {
  if (!f)
    return;
  vd_bundle_unref(f->bundle);
  vd_buf_release(&f->why);
  free(f);
}

/* The fleet's revision (vd_fleet_keep_desired()) was refused by this
 * node's validation: start on the policy directory instead, as a serving
 * node that refuses the fleet's revision keeps its own (fleet.c), rather
 * than not start at all.  *OUT keeps the refused revision and why, for
 * record_fleet_refusal() once the history is open; *ENGINES and *REFUSED
 * are make_engines()'s for the directory. */
static int start_on_directory(vd_daemon_t *d, fleet_refusal_t **out,
                              vd_engine_t ***engines, int *refused) {
  fleet_refusal_t *f = calloc(1, sizeof *f);
  if (!f)
    return VD_ENOMEM;
  f->bundle = d->bundle;
  f->why = d->last_failure;
  vd_buf_init(&d->last_failure);
  d->bundle = NULL;
  *out = f;
  free_engines(d, *engines);
  free(d->workers);
  free(d->active);
  *engines = NULL;
  d->workers = NULL;
  d->active = NULL;
  *refused = 0;
  snprintf(d->activated_by, sizeof d->activated_by, "startup");
  vd_log(VD_LEVEL_WARNING, "fleet_revision_refused",
         "start-up: this node refused the fleet's revision %s (%s); "
         "starting with %s, and following the fleet's next revision",
         vd_bundle_revision(f->bundle), f->why.data ? f->why.data : "?",
         d->opts.policies);
  if (load_policies(d) != 0)
    return VD_EINVALID;
  return make_engines(d, refused, engines);
}

/* Record the fleet's revision refused at start-up (start_on_directory())
 * as the node's refused activation, after the directory's: node_status
 * keeps the last failure, so that fleet status shows why the node is not
 * on the fleet's revision. */
static void record_fleet_refusal(vd_daemon_t *d, fleet_refusal_t *f) {
  vd_bundle_t *own = d->bundle;
  vd_buf_t failure = d->last_failure;
  d->bundle = f->bundle;
  d->last_failure = f->why;
  snprintf(d->activated_by, sizeof d->activated_by, "startup-fleet");
  (void)vd_admin_startup(d, NULL);
  snprintf(d->fleet_refused, sizeof d->fleet_refused, "%s",
           vd_bundle_revision(f->bundle));
  /* status's last_failure says why the node is not on the fleet's */
  d->bundle = own;
  f->why = failure;
  snprintf(d->activated_by, sizeof d->activated_by, "startup");
}

/* The history writer's lines go to the daemon's log. */
static void on_history_log(const char *event, int failing, const char *line,
                           void *arg) {
  (void)arg;
  vd_log(failing ? VD_LEVEL_ERR : VD_LEVEL_NOTICE, event, "history: %s", line);
}

typedef struct idem_load {
  vd_idem_t *t;
  size_t kept, failed;
} idem_load_t;

static void restore_idem(const vd_history_idem_t *k, void *arg) {
  idem_load_t *l = arg;
  if (vd_idem_restore(l->t, k) == 0)
    l->kept++;
  else
    l->failed++;
}

/* The idempotency keys of the last VD_IDEM_WINDOW_MS back from the
 * history, before any request is served: a retry after a restart is
 * answered as before (idem.c). */
static void load_idem(vd_daemon_t *d) {
  idem_load_t l = {d->idem, 0, 0};
  char *err = NULL;
  if (vd_history_idem_load(d->history, vd_now_ms() - VD_IDEM_WINDOW_MS,
                           restore_idem, &l, &err) != 0)
    vd_log(VD_LEVEL_ERR, "idempotency_load_failed",
           "idempotency keys not read back (%zu were): %s; a retry of a "
           "request made before the restart may be decided again",
           l.kept, err ? err : "unknown error");
  else if (l.kept)
    vd_log(VD_LEVEL_INFO, "idempotency_loaded",
           "%zu idempotency keys of the last 24 hours read back", l.kept);
  if (l.failed)
    vd_log(VD_LEVEL_ERR, "out_of_memory",
           "out of memory for %zu idempotency keys read back", l.failed);
  free(err);
}

/* Opened in every log mode: with off, revisions are still stored. */
static int open_history(vd_daemon_t *d) {
  char *err = NULL;
  int rc;
  if (d->opts.pseudonymise_key) {
    vd_buf_t kerr = VD_BUF_INIT;
    d->pkey = malloc(sizeof *d->pkey);
    rc = d->pkey ? vd_pseudonym_key_load(d->pkey, d->opts.pseudonymise_key,
                                         &kerr)
                 : VD_ENOMEM;
    if (rc)
      vd_log(VD_LEVEL_ERR, "start_refused", "cannot start: %s",
             kerr.len ? kerr.data : "out of memory");
    vd_buf_release(&kerr);
    if (rc)
      return rc;
  }
  rc = vd_history_open_node(&d->history, d->opts.db, d->opts.node_id,
                            d->opts.log_mode, d->nslots, on_history_done, d,
                            &err);
  if (rc != 0)
    vd_log(VD_LEVEL_ERR, "history_open_failed",
           "cannot open the history database: %s", err ? err : "unknown error");
  else
    vd_history_set_log(d->history, on_history_log, NULL);
  if (rc == 0 && d->metrics &&
      vd_history_set_metrics(d->history, d->metrics) != 0)
    vd_log(VD_LEVEL_ERR, "out_of_memory",
           "out of memory for the history's metrics");
  free(err);
  if (rc == 0 && d->idem)
    load_idem(d);
  return rc;
}

static void close_history(vd_daemon_t *d) {
  vd_history_close(d->history);
  d->history = NULL;
  if (d->pkey)
    memset(d->pkey, 0, sizeof *d->pkey);
  free(d->pkey);
  d->pkey = NULL;
}

/* The decision sockets.  Each poll handle exists as soon as its fd does,
 * so that close_listeners() undoes any part of this. */
static int open_listeners(vd_daemon_t *d) {
  vd_buf_t err = VD_BUF_INIT;
  if (d->opts.tls_cert &&
      vd_tls_ctx_new(&d->tls, d->opts.tls_cert, d->opts.tls_key,
                     d->opts.tls_client_ca, &err) != 0)
    goto fail;
  /* read before any socket is made: a start it refuses leaves none that
   * takes a connection for a moment */
  if (d->opts.http && d->opts.tokens && load_tokens(d) != 0) {
    vd_buf_release(&err);
    return VD_EINVALID;
  }
  if (d->opts.listen) {
    if (!d->opts.tls_client_ca)
      vd_log(VD_LEVEL_WARNING, "loopback_only",
             "--listen %s has no credentials (--tls-client-ca): serving "
             "loopback clients only", d->opts.listen);
    d->tcp_fd = listen_tcp("--listen", d->opts.listen, &err);
    if (d->tcp_fd < 0)
      goto fail;
    uv_poll_init(d->loop, &d->tcp_poll, d->tcp_fd);
    d->tcp_poll.data = d;
  }
  if (d->opts.http) {
    if (!d->opts.tokens && !d->opts.tls_client_ca)
      vd_log(VD_LEVEL_WARNING, "loopback_only",
             "--http %s has no credentials (--tokens, --tls-client-ca): "
             "serving loopback clients only", d->opts.http);
    d->http_fd = listen_tcp("--http", d->opts.http, &err);
    if (d->http_fd < 0)
      goto fail;
    uv_poll_init(d->loop, &d->http_poll, d->http_fd);
    d->http_poll.data = d;
  }
  /* the Unix socket last: once it takes a connection every listener is
   * up (what a supervisor or a test waits for), and a TCP port that is
   * taken stops the start before the socket exists */
  d->unix_fd = vd_daemon_listen_unix(d->opts.socket, 0660, d->opts.socket_gid,
                                     "--socket", &err);
  if (d->unix_fd < 0)
    goto fail;
  uv_poll_init(d->loop, &d->unix_poll, d->unix_fd);
  d->unix_poll.data = d;
  vd_buf_release(&err);
  return 0;
fail:
  vd_log(VD_LEVEL_ERR, "listen_failed", "cannot listen: %s", err.data);
  vd_buf_release(&err);
  return VD_EIO;
}

static int start_admin(vd_daemon_t *d) {
  vd_buf_t err = VD_BUF_INIT;
  int rc = vd_admin_start(d, &err);
  if (rc != 0)
    vd_log(VD_LEVEL_ERR, "listen_failed", "cannot listen: %s", err.data);
  vd_buf_release(&err);
  return rc;
}

/* Start each worker with its engine (taken); returns how many started.
 * The first that fails ends the loop: the daemon then stops at once. */
static unsigned start_workers(vd_daemon_t *d, vd_engine_t **engines) {
  unsigned i;
  for (i = 0; i < d->nworkers; i++) {
    vd_engine_t *e = engines[i];
    engines[i] = NULL;
    d->active[i] = i;
    if (vd_worker_start(&d->workers[i], d, i, e) != 0) {
      vd_log(VD_LEVEL_ERR, "worker_start_failed", "cannot start worker %u", i);
      break;
    }
  }
  return i;
}

/* After the main loop: every worker has been asked to stop.  The writer may
 * still commit queued records (async mode) and notify the workers' loops
 * until it has stopped, so it closes after their threads end and before
 * their loops do. */
static unsigned stop_workers(vd_daemon_t *d) {
  /* a worker that finishes its connections within the grace period and
   * whose last decision ends within --decide-timeout is joined; one that
   * does not is stuck, and left behind as replace_worker() leaves them */
  int64_t until = vd_now_ms() + VD_SHUTDOWN_GRACE_MS +
                  d->opts.decide_timeout_ms + 1000;
  unsigned i, stuck = 0;
  for (i = 0; i < d->nslots; i++) {
    vd_worker_t *w = &d->workers[i];
    if (!w->started)
      continue;
    if (atomic_load(&w->abandoned) ||
        (d->opts.decide_timeout_ms ? vd_worker_join_until(w, until)
                                   : vd_worker_join(w)) != 0) {
      if (!atomic_exchange(&w->abandoned, 1))
        vd_log(VD_LEVEL_WARNING, "worker_left_behind",
               "worker %u did not finish; leaving it behind", i);
      stuck++;
    }
  }
  /* a stuck thread may still use its watchdog slot: leave the watchdog */
  if (!stuck)
    vd_watchdog_stop(&d->watchdog);
  /* the check's read-only connection first, so that the writer's is the
   * last one open and checkpoints the WAL into the file as it closes */
  history_check_stop(d);
  close_history(d);
  for (i = 0; i < d->nslots; i++)
    if (!atomic_load(&d->workers[i].abandoned))
      vd_worker_release(&d->workers[i]);
  return stuck;
}

int vd_daemon_run(const vd_daemon_opts_t *opts) {
  vd_daemon_t d;
  vd_engine_t **engines = NULL;
  unsigned started, stuck = 0;
  int rc = 1, refused = 0, unrecorded = 0;
  char dbname[1024];
  fleet_refusal_t *fleet_refused = NULL;

  daemon_init(&d, opts);
  if (load_policies(&d) != 0)
    goto out;
  keep_rollback(&d);
  if (make_engines(&d, &refused, &engines) != 0)
    goto out_engines;
  if (refused && strcmp(d.activated_by, "startup-fleet") == 0 &&
      start_on_directory(&d, &fleet_refused, &engines, &refused) != 0)
    goto out_engines;
  if (open_history(&d) != 0)
    goto out_engines;
  if (refused) {
    vd_admin_startup(&d, NULL); /* stored and recorded as refused */
    if (fleet_refused)
      record_fleet_refusal(&d, fleet_refused);
    goto out_history;
  }
  if (open_listeners(&d) != 0)
    goto out_listeners;
  if (start_admin(&d) != 0)
    goto out_listeners;

  unrecorded = vd_admin_startup(&d, engines[0]) != 0;
  if (fleet_refused) /* after: the node's status keeps the refusal */
    record_fleet_refusal(&d, fleet_refused);
  (void)vd_fleet_start(&d); /* a node that cannot follow still serves */
  history_check_start(&d);
  if (!opts->always_count &&
      vd_watchdog_start(&d.watchdog, (int)d.nslots, VD_WATCH_TICK_NS) != 0)
    vd_log(VD_LEVEL_WARNING, "watchdog_unavailable",
           "no watchdog thread: every instruction will be counted");
  started = start_workers(&d, engines);
  uv_poll_start(&d.unix_poll, UV_READABLE, on_acceptable);
  if (d.tcp_fd >= 0)
    uv_poll_start(&d.tcp_poll, UV_READABLE, on_acceptable);
  if (d.http_fd >= 0)
    uv_poll_start(&d.http_poll, UV_READABLE, on_acceptable);
  vd_history_db_display(opts->db, dbname, sizeof dbname); /* no password */
  if (!unrecorded)
    vd_log(VD_LEVEL_NOTICE, "serving",
           "serving %s (%s%s) on %s%s%s%s%s with %u workers, history %s (%s)",
           opts->policies, vd_bundle_revision(d.bundle),
           opts->unchecked ? ", unchecked" : "", opts->socket,
           opts->listen ? " and tcp " : "", opts->listen ? opts->listen : "",
           opts->http ? " and http " : "", opts->http ? opts->http : "",
           d.nworkers, dbname, vd_history_mode_name(opts->log_mode));
  if (started < d.nworkers) {
    daemon_stop(&d, "a worker did not start");
  } else if (unrecorded) {
    vd_log(VD_LEVEL_ERR, "start_refused", "cannot start: the activation of "
           "%s could not be recorded in the history",
           vd_bundle_revision(d.bundle));
    d.exit_status = 1;
    daemon_stop(&d, "the activation could not be recorded");
  } else {
    if (opts->decide_timeout_ms)
      uv_timer_start(&d.overrun_timer, on_overrun_check, VD_OVERRUN_CHECK_MS,
                     VD_OVERRUN_CHECK_MS);
    vd_daemon_notify_ready(&d, "started");
  }
  uv_run(d.loop, UV_RUN_DEFAULT);
  stuck = stop_workers(&d);
  rc = started == d.nworkers && !d.exit_status ? 0 : 1;
  vd_log(VD_LEVEL_NOTICE, "stopped", "stopped");
  if (stuck) {
    /* A thread left behind in a decision, and the watchdog it may still
     * use, live in this frame and in what it would free: end the process
     * here, the history already closed (stop_workers), rather than free
     * anything under them. */
    vd_log(VD_LEVEL_WARNING, "workers_left_behind",
           "%u worker thread%s left behind: exiting without "
           "freeing what they use",
           stuck, stuck == 1 ? "" : "s");
    fflush(stderr);
    _exit(rc);
  }

  vd_admin_stop(&d);
  vd_admin_release(&d);
out_listeners:
  close_listeners(&d);
out_history:
  if (d.history)
    close_history(&d);
out_engines:
  free_engines(&d, engines);
  free(d.workers);
  free(d.active);
  fleet_refusal_free(fleet_refused);
out:
  daemon_release(&d);
  return rc;
}
