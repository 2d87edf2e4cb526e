/*
 * worker.c - a worker thread: its own libuv loop, its own engine, and the
 * connections the main thread handed it.
 *
 * Owns: every vd_conn_t on its loop, the queue of responses that wait for
 * their history record to commit, its engine, and everything else in its
 * vd_worker_t, from vd_worker_start() to vd_worker_release() (main
 * thread).  Runs entirely on the worker's thread except those two,
 * vd_worker_join() (main thread), and vd_worker_handoff(),
 * vd_worker_request_stop(), vd_worker_offer_engine() and
 * vd_worker_notify(), which any thread may call (they take w->lock or only
 * wake the loop).
 *
 * Order: each connection's responses leave in the order its requests
 * arrived.  Requests are decided as soon as their line is complete; with
 * --log-mode durable a response is held in the worker's pending queue
 * (FIFO, all connections) until the history writer reports its record
 * committed, and entries leave that queue strictly from the head.
 *
 * Back-pressure: every byte held for a connection is counted (`held`):
 * what it sent that is not yet decided (the framer's buffer), responses
 * not yet given to uv_write, those in uv_write requests not yet done,
 * with --log-mode durable those in the pending queue waiting for their
 * commit, and the history's copies of its records until they are
 * committed (`unsynced`).  A connection whose unread responses and records
 * pass max_pending_out is not read from (nor are the lines already read
 * from it decided) until they are down to half; so it holds at most
 * max_pending_out plus one response and record, and its framer at most
 * max_line plus one read (64 KiB): it slows only itself.  Each worker sums
 * its connections in w->held; past max_pending_total, summed over the
 * workers, they stop reading from every connection that holds
 * VD_HEAVY_BYTES or more, unread answers and unended line together (the
 * clients that do not read their answers or never end a line: one that
 * reads and ends its lines holds next to nothing), until the sum is back
 * under three quarters of it.  A timer re-checks such connections
 * every VD_RECHECK_MS, since the bytes that free them may be another
 * worker's.  Once the sum has been high and is low again, a worker asks
 * malloc to give the freed memory back to the system (malloc_trim).
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon_int.h"
#include "verdict/openapi.h"
#include "verdict/personal.h"
#include "verdict/pseudonym.h"
#include "verdict/timefmt.h"
#include "verdict/uvstream.h"
#include "verdict/wire.h"

struct vd_conn {
  vd_uv_stream_t h;
  vd_worker_t *w;
  vd_conn_t *prev, *next;
  vd_framer_t framer;
  vd_buf_t out;         /* response bytes not yet given to uv_write */
  size_t inflight;      /* bytes in uv_write requests not yet done */
  unsigned refs;        /* the loop's, plus one per pending response */
  unsigned npending;    /* responses of ours in the pending queue */
  size_t queued;        /* bytes of ours in the pending queue */
  size_t held;          /* what conn_account() last added to w->held */
  int reading;          /* uv_read_start is in effect */
  int throttled;        /* reading stopped for back-pressure */
  int shed;             /* ...because the sum passed max_pending_total */
  int hung_up;          /* seen while shed: the client sends no more */
  int eof;              /* the client sent EOF, or we are stopping */
  int closing;          /* uv_close called */
  int close_when_flushed;
  int sniffed;          /* NDJSON: the first bytes were looked at */
  vd_http_t *http;      /* an HTTP connection (--http), else NULL */
  vd_tls_t *tls;        /* TLS (--tls-cert), else NULL */
  vd_buf_t sealed;      /* TLS records not yet given to uv_write */
  int keep_alive;       /* HTTP: the request being answered allows more */
  int head;             /* HTTP: ...and is a HEAD (health checks) */
  int64_t last_ms;      /* HTTP: when it last sent or was answered */
  int loopback;         /* the peer is 127.0.0.0/8 or ::1 */
  int transport;        /* VD_TRANSPORT_*: its open-connections gauge */
  char who[64];         /* HTTP: the credential of the request, or "" */
  char client[136];     /* what the history records as the client */
  char peer[64];
  vd_conn_t *flush_next; /* release_pending(): connections to flush */
  int flush_listed;      /* ...c is on that list (and holds a ref for it) */
};

typedef struct vd_pending {
  struct vd_pending *next;
  vd_conn_t *conn;
  uint64_t seq;         /* history sequence to wait for; 0: none */
  size_t len;           /* bytes of the response line */
  size_t id_off;        /* where the request id JSON starts in data */
  char *idem;           /* its idempotency scope, NUL, key; or NULL */
  char decision_id[37];
  char data[];          /* response line, then NUL, then the id JSON */
} vd_pending_t;

/* A record of c's in the history's queue, not yet committed: its bytes
 * are c's until then (in every log mode but off). */
typedef struct vd_unsynced {
  struct vd_unsynced *next;
  vd_conn_t *conn;
  uint64_t seq;
  size_t bytes;
} vd_unsynced_t;

typedef struct vd_write {
  uv_write_t req;
  vd_conn_t *conn;
  char *data;
  size_t len;
} vd_write_t;

static void conn_flush(vd_conn_t *c);
static void conn_maybe_close(vd_conn_t *c);
static void conn_account(vd_conn_t *c);
static void conn_resume(vd_conn_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static int answer_fact(void *ud, const char *query, const char *a,
                       const char *b, int64_t since_ms, int64_t until_ms,
                       int64_t *count);

/* What c holds of requests not yet complete: its unended line, or its
 * HTTP request being read. */
static size_t in_held(const vd_conn_t *c) {
  return vd_framer_pending(&c->framer) + (c->http ? vd_http_held(c->http) : 0);
}

/* ------------------------------------------------------------------------
 * Connection lifetime
 * ------------------------------------------------------------------------ */

static size_t trim_arm_bytes(const vd_daemon_t *d) {
  size_t half = d->opts.max_pending_total / 2;
  return half < VD_TRIM_ARM_BYTES ? half : VD_TRIM_ARM_BYTES;
}

/* Add NOW and take OLD from what this worker's connections hold (w->held,
 * written by this thread only). */
static void held_add(vd_worker_t *w, size_t old, size_t now) {
  size_t mine = atomic_load_explicit(&w->held, memory_order_relaxed);
  atomic_store_explicit(&w->held, mine - old + now, memory_order_relaxed);
}

/* What the connections of every worker hold.  A worker given up on
 * (daemon.c, replace_worker()) no longer counts: its thread will never
 * free what it holds, and may never say. */
static size_t total_held(vd_worker_t *w) {
  vd_daemon_t *d = w->daemon;
  size_t total = 0;
  unsigned i;
  for (i = 0; i < d->nslots; i++)
    if (!atomic_load_explicit(&d->workers[i].abandoned, memory_order_relaxed))
      total += atomic_load_explicit(&d->workers[i].held, memory_order_relaxed);
  /* Once the sum has passed VD_TRIM_ARM_BYTES (half of
   * --max-pending-total, when that is less), the next time it falls under
   * an eighth of that malloc gives back what the connections' buffers
   * freed: glibc keeps freed memory in its arenas (after_release()). */
  if (total > trim_arm_bytes(d))
    atomic_store_explicit(&d->trim_armed, 1, memory_order_relaxed);
  return total;
}

/* After bytes were freed: say when the sum is back under 3/4 of
 * --max-pending-total after shedding, and trim (total_held()). */
static void after_release(vd_worker_t *w) {
  vd_daemon_t *d = w->daemon;
  size_t total = total_held(w);
  if (atomic_load_explicit(&d->shedding, memory_order_relaxed) &&
      total <= d->opts.max_pending_total / 4 * 3 &&
      atomic_exchange(&d->shedding, 0))
    vd_log(VD_LEVEL_NOTICE, "backpressure_ended",
           "connections hold %zu bytes, under --max-pending-total "
           "again: reading from every connection",
           total);
  if (atomic_load_explicit(&d->trim_armed, memory_order_relaxed) &&
      total < trim_arm_bytes(d) / 8 && atomic_exchange(&d->trim_armed, 0))
    malloc_trim(0);
}

/* A stopping worker is done when no connection and no pending response
 * is left: close its own handles so that its loop returns. */
static void finish_if_done(vd_worker_t *w) {
  if (!w->stopping || w->nconns || w->pend_head ||
      uv_is_closing((uv_handle_t *)&w->wake))
    return;
  uv_close((uv_handle_t *)&w->wake, NULL);
  uv_close((uv_handle_t *)&w->recheck, NULL);
  uv_close((uv_handle_t *)&w->http_sweep, NULL);
  if (!uv_is_closing((uv_handle_t *)&w->grace))
    uv_close((uv_handle_t *)&w->grace, NULL);
}

static void conn_unref(vd_conn_t *c) {
  vd_worker_t *w = c->w;
  if (--c->refs)
    return;
  held_add(c->w, c->held, 0);
  if (c->http) {
    vd_http_release(c->http);
    free(c->http);
  }
  vd_tls_free(c->tls);
  vd_buf_release(&c->sealed);
  vd_framer_release(&c->framer);
  vd_buf_release(&c->out);
  free(c);
  after_release(w);
}

static void on_close(uv_handle_t *h) {
  vd_conn_t *c = h->data;
  vd_worker_t *w = c->w;
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  w->nconns--;
  if (c->http && --w->nhttp == 0)
    uv_timer_stop(&w->http_sweep);
  if (c->throttled) {
    c->throttled = 0;
    w->nthrottled--;
  }
  atomic_fetch_sub(&w->connections, 1);
  vd_metrics_series_move(w->m_conns[c->transport], -1);
  conn_unref(c);
  finish_if_done(w);
}

/* w->fds: the descriptors of our open connections, for
 * vd_worker_abandon() on the main thread (under w->lock). */
static void fd_register(vd_worker_t *w, int fd, int framing) {
  uv_mutex_lock(&w->lock);
  if (w->nfds == w->capfds) {
    size_t cap = w->capfds ? w->capfds * 2 : 64;
    struct vd_open_fd *a = realloc(w->fds, cap * sizeof *a);
    if (!a) { /* only an overrun would miss it */
      uv_mutex_unlock(&w->lock);
      return;
    }
    w->fds = a;
    w->capfds = cap;
  }
  w->fds[w->nfds].fd = fd;
  w->fds[w->nfds++].framing = framing;
  uv_mutex_unlock(&w->lock);
}

static void fd_unregister(vd_worker_t *w, int fd) {
  size_t i;
  uv_mutex_lock(&w->lock);
  for (i = 0; i < w->nfds; i++) {
    if (w->fds[i].fd == fd) {
      w->fds[i] = w->fds[--w->nfds];
      break;
    }
  }
  uv_mutex_unlock(&w->lock);
}

static void conn_close(vd_conn_t *c) {
  uv_os_fd_t fd;
  if (c->closing)
    return;
  c->closing = 1;
  /* before uv_close() closes it: the number may be reused at once */
  if (uv_fileno(&c->h.handle, &fd) == 0)
    fd_unregister(c->w, fd);
  uv_close(&c->h.handle, on_close);
}

static void conn_read_start(vd_conn_t *c) {
  if (c->reading || c->closing || c->eof || (c->http && c->http->paused))
    return;
  if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0)
    c->reading = 1;
}

static void conn_read_stop(vd_conn_t *c) {
  if (!c->reading)
    return;
  uv_read_stop(&c->h.stream);
  c->reading = 0;
}

/* ------------------------------------------------------------------------
 * Back-pressure (see the top of the file)
 * ------------------------------------------------------------------------ */

static void recheck_start(vd_worker_t *w);

static void throttle(vd_conn_t *c, int shed) {
  vd_worker_t *w = c->w;
  vd_daemon_t *d = w->daemon;
  c->throttled = 1;
  c->shed = shed;
  w->nthrottled++;
  conn_read_stop(c);
  recheck_start(w);
  if (shed && !atomic_exchange(&d->shedding, 1))
    vd_log(VD_LEVEL_WARNING, "backpressure_started",
           "connections hold %zu bytes, over --max-pending-total "
           "%zu: not reading from those holding %u KiB or more",
           total_held(w), d->opts.max_pending_total, VD_HEAVY_BYTES >> 10);
}

/* Response bytes c holds that its client has not read: whether to read
 * from it depends on these.  (Its framer holds at most --max-line plus one
 * read, whether we read or not, and is counted in w->held.) */
static size_t out_held(const vd_conn_t *c) {
  return c->out.len + c->sealed.len + c->inflight + c->queued;
}

/* Count what c holds now into w->held, and stop reading from it if it
 * holds too much, or the daemon does and c is among the heavy (only then
 * is the sum over the workers taken). */
static void conn_account(vd_conn_t *c) {
  vd_worker_t *w = c->w;
  const vd_daemon_opts_t *o = &w->daemon->opts;
  size_t out = out_held(c), now = out + in_held(c);
  held_add(w, c->held, now);
  c->held = now;
  if (c->throttled || c->closing || c->eof)
    return;
  if (out > o->max_pending_out)
    throttle(c, 0);
  else if (!c->hung_up && now >= VD_HEAVY_BYTES &&
           total_held(w) > o->max_pending_total)
    throttle(c, 1);
}

static void process_lines(vd_conn_t *c);

/* Read from a throttled c again if it, and the daemon, hold little enough
 * now: first the lines already read, then the socket. */
static void conn_resume(vd_conn_t *c) {
  vd_worker_t *w = c->w;
  vd_daemon_t *d = w->daemon;
  const vd_daemon_opts_t *o = &d->opts;
  size_t out = out_held(c), total = total_held(w);
  int heavy = !c->hung_up && total > o->max_pending_total / 4 * 3 &&
              out + in_held(c) >= VD_HEAVY_BYTES;
  if (!c->throttled || out > o->max_pending_out / 2 || heavy)
    return;
  c->throttled = 0;
  c->shed = 0;
  w->nthrottled--;
  if (c->closing || c->eof)
    return;
  process_lines(c);
  conn_flush(c);
  conn_account(c);
  if (!c->throttled)
    conn_read_start(c);
}

/* Whether c's client has closed or shut down its end.  A connection we do
 * not read from would not see its EOF: one shed with an unended line and
 * no answer to write could then hold its bytes, and its descriptor, until
 * the sum is low again, which its own bytes may prevent for good. */
static int peer_hung_up(vd_conn_t *c) {
  uv_os_fd_t fd;
  struct pollfd p;
  if (uv_fileno(&c->h.handle, &fd) != 0)
    return 0;
  p.fd = fd;
  p.events = POLLRDHUP;
  p.revents = 0;
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Every VD_RECHECK_MS while a connection of ours is throttled: what frees
 * it may have been another worker's bytes.  A shed one whose client hung
 * up is read again, to its EOF (what is left is only what the client sent
 * before it went), and answered and closed as usual. */
static void on_recheck(uv_timer_t *t) {
  vd_worker_t *w = t->data;
  vd_conn_t *c;
  for (c = w->conns; c; c = c->next) {
    if (c->throttled && !c->closing) {
      if (c->shed && !c->hung_up && peer_hung_up(c))
        c->hung_up = 1;
      conn_account(c);
      conn_resume(c);
    }
  }
  if (!w->nthrottled)
    uv_timer_stop(t);
  after_release(w);
}

static void recheck_start(vd_worker_t *w) {
  if (!uv_is_active((uv_handle_t *)&w->recheck) && !w->stopping)
    uv_timer_start(&w->recheck, on_recheck, VD_RECHECK_MS, VD_RECHECK_MS);
}

/* Close once nothing is left to send: the client finished (EOF) or we
 * answered a fatal error. */
static void conn_maybe_close(vd_conn_t *c) {
  if (c->closing)
    return;
  if ((c->eof || c->close_when_flushed) && c->npending == 0 &&
      c->out.len == 0 && c->sealed.len == 0 && c->inflight == 0)
    conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  vd_write_t *wr = (vd_write_t *)req;
  vd_conn_t *c = wr->conn;
  c->inflight -= wr->len;
  free(wr->data);
  free(wr);
  if (status < 0) {
    conn_close(c);
  } else {
    conn_account(c);
    if (c->throttled)
      conn_resume(c);
    conn_maybe_close(c);
  }
  conn_unref(c);
}

static void conn_flush(vd_conn_t *c) {
  vd_write_t *wr;
  vd_buf_t *wire = &c->out; /* the bytes for the socket */
  uv_buf_t b;
  int n;
  if (c->closing)
    return;
  if (c->tls) { /* sealed into TLS records first */
    if (c->out.len &&
        vd_tls_seal(c->tls, c->out.data, c->out.len, &c->sealed) != 0) {
      conn_close(c);
      return;
    }
    vd_buf_reset(&c->out);
    wire = &c->sealed;
  }
  if (wire->len == 0)
    return;
  /* Most responses fit the socket buffer at once: write them now, and only
   * queue (and have libuv watch the socket for) what is left. */
  if (c->inflight == 0) {
    b = uv_buf_init(wire->data, (unsigned)wire->len);
    n = uv_try_write(&c->h.stream, &b, 1);
    if (n > 0)
      vd_buf_consume(wire, (size_t)n);
    else if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    if (wire->len == 0)
      return;
  }
  wr = malloc(sizeof *wr);
  if (!wr) {
    conn_close(c);
    return;
  }
  wr->conn = c;
  wr->data = vd_buf_detach(wire, &wr->len);
  b = uv_buf_init(wr->data, (unsigned)wr->len);
  c->inflight += wr->len;
  c->refs++;
  if (uv_write(&wr->req, &c->h.stream, &b, 1, on_write) < 0) {
    c->inflight -= wr->len;
    c->refs--;
    free(wr->data);
    free(wr);
    conn_close(c);
    return;
  }
}

/* ------------------------------------------------------------------------
 * Responses and the pending queue
 * ------------------------------------------------------------------------ */

static void count_response(vd_worker_t *w, int code) {
  if (code == 0) {
    atomic_fetch_add_explicit(&w->decisions, 1, memory_order_relaxed);
  } else {
    int i = vd_err_index(code);
    if (i >= 0)
      atomic_fetch_add_explicit(&w->errors[i], 1, memory_order_relaxed);
  }
}

/* Queue line for c: straight to its output, unless earlier responses of
 * the worker still wait for history (then behind them, to keep order). */
static void respond(vd_conn_t *c, const char *line, size_t len, uint64_t seq,
                    const char *decision_id, const char *id_json) {
  vd_worker_t *w = c->w;
  vd_pending_t *p;
  size_t idl;
  if (seq == 0 && !w->pend_head) {
    vd_buf_add(&c->out, line, len);
    return;
  }
  idl = id_json ? strlen(id_json) : 0;
  p = malloc(sizeof *p + len + 1 + idl + 1);
  if (!p) {
    conn_close(c);
    return;
  }
  p->next = NULL;
  p->idem = NULL;
  p->conn = c;
  p->seq = seq;
  p->len = len;
  memcpy(p->data, line, len);
  p->data[len] = '\0';
  p->id_off = len + 1;
  memcpy(p->data + p->id_off, id_json ? id_json : "", idl + 1);
  snprintf(p->decision_id, sizeof p->decision_id, "%s",
           decision_id ? decision_id : "");
  c->refs++;
  c->npending++;
  c->queued += len;
  if (w->pend_tail)
    w->pend_tail->next = p;
  else
    w->pend_head = p;
  w->pend_tail = p;
}

/* An answer of CODE to the request being served on c: the NDJSON line as
 * it is, or over HTTP the same JSON as the body of a response whose
 * status says CODE (vd_wire_http_status()).  After an HTTP request that
 * does not keep the connection alive, c closes once this is out. */
static void reply(vd_conn_t *c, int code, const char *line, size_t len,
                  uint64_t seq, const char *decision_id, const char *id_json) {
  vd_buf_t msg = VD_BUF_INIT;
  if (!c->http) {
    respond(c, line, len, seq, decision_id, id_json);
    return;
  }
  if (seq == 0 && !c->w->pend_head) { /* respond()'s own shortcut: framed
                                        * straight into the output */
    vd_http_write(&c->out, vd_wire_http_status(code), "application/json",
                  NULL, line, len, c->keep_alive);
  } else {
    vd_http_write(&msg, vd_wire_http_status(code), "application/json", NULL,
                  line, len, c->keep_alive);
    respond(c, msg.data, msg.len, seq, decision_id, id_json);
    vd_buf_release(&msg);
  }
  if (!c->keep_alive)
    c->close_when_flushed = 1;
}

/* Release pending responses from the head whose records are done: those
 * up to done->last, failed ones (done->status != 0, seq from done->first)
 * as internal errors.  Responses that waited for no record (seq 0) leave
 * as soon as they reach the head.  A commit releases every connection's
 * responses at once, interleaved in the queue: each connection's are
 * gathered in its output and written once at the end, one write a
 * connection rather than one a response (with 50 connections at
 * pipeline 16, about 16 responses a write instead of 1.8). */
static void release_pending(vd_worker_t *w, const vd_history_done_t *done) {
  vd_pending_t *p;
  vd_conn_t *c, *flush = NULL;
  while ((p = w->pend_head) != NULL && p->seq <= done->last) {
    c = p->conn;
    int lost = p->seq && done->status != 0 && p->seq >= done->first;
    w->pend_head = p->next;
    if (!w->pend_head)
      w->pend_tail = NULL;
    if (!c->closing) {
      if (lost) {
        vd_buf_t line = VD_BUF_INIT;
        vd_wire_write_error(&line, p->data + p->id_off, VD_EINTERNAL,
                            "the decision could not be recorded in the history "
                            "database, so it was not made; retry later",
                            NULL, p->decision_id);
        if (c->http) /* what follows it on c was framed for a keep-alive */
          vd_http_write(&c->out, 503, "application/json", NULL, line.data,
                        line.len, 1);
        else
          vd_buf_add(&c->out, line.data, line.len);
        vd_buf_release(&line);
        count_response(w, VD_EINTERNAL);
      } else {
        vd_buf_add(&c->out, p->data, p->len);
      }
    }
    if (p->idem) { /* the key's answer stands, or a retry decides */
      vd_idem_settle(w->daemon->idem, p->idem, p->idem + strlen(p->idem) + 1,
                     !lost);
      free(p->idem);
    }
    c->npending--;
    c->queued -= p->len;
    free(p);
    if (!c->closing && !c->flush_listed) {
      c->flush_listed = 1;
      c->flush_next = flush;
      flush = c;
      c->refs++; /* the list's */
    }
    conn_unref(c);
  }
  while ((c = flush) != NULL) {
    flush = c->flush_next;
    c->flush_listed = 0;
    if (!c->closing) {
      conn_flush(c);
      conn_account(c);
      if (c->throttled)
        conn_resume(c);
    }
    conn_maybe_close(c);
    conn_unref(c);
  }
}

/* Records up to done->last are committed (or failed): no longer held. */
static void release_unsynced(vd_worker_t *w, const vd_history_done_t *done) {
  vd_unsynced_t *u;
  while ((u = w->uns_head) != NULL && u->seq <= done->last) {
    vd_conn_t *c = u->conn;
    w->uns_head = u->next;
    if (!w->uns_head)
      w->uns_tail = NULL;
    c->queued -= u->bytes;
    free(u);
    if (!c->closing) {
      conn_account(c);
      if (c->throttled)
        conn_resume(c);
    }
    conn_unref(c);
  }
}

/* Charge c with a record of BYTES in the history's queue until seq is
 * committed. */
static void hold_unsynced(vd_conn_t *c, uint64_t seq, size_t bytes) {
  vd_worker_t *w = c->w;
  vd_unsynced_t *u = malloc(sizeof *u);
  if (!u)
    return; /* uncounted, not lost: the record is queued all the same */
  u->next = NULL;
  u->conn = c;
  u->seq = seq;
  u->bytes = bytes;
  c->refs++;
  c->queued += bytes;
  if (w->uns_tail)
    w->uns_tail->next = u;
  else
    w->uns_head = u;
  w->uns_tail = u;
}

/* History completions arrived: release what they cover, range by range
 * (each range of this worker's records is wholly stored or wholly not). */
static void history_done(vd_worker_t *w) {
  vd_history_done_t done[64];
  size_t n, i;
  while ((n = vd_history_drain(w->daemon->history, w->index, done, 64)) > 0)
    for (i = 0; i < n; i++) {
      release_unsynced(w, &done[i]);
      release_pending(w, &done[i]);
    }
  /* responses queued behind nothing (ping, status, async) */
  if (w->pend_head && w->pend_head->seq == 0) {
    vd_history_done_t none = {0, 0, 0};
    release_pending(w, &none);
  }
}

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------ */

/* The longest prefix of s, at most max bytes, that does not end inside a
 * UTF-8 sequence (s is longer than max). */
static size_t utf8_prefix(const char *s, size_t max) {
  size_t n = max;
  while (n > 0 && n > max - 4 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

/* --pseudonymise-key: the personal fields of the engine in hand, read
 * again when it changes (on the worker's thread, or before it starts). */
static void read_personal(vd_worker_t *w) {
  if (!w->daemon->pkey)
    return;
  vd_personal_free(w->personal, w->npersonal);
  if (vd_personal_fields(w->engine, &w->personal, &w->npersonal) != 0) {
    w->personal = NULL; /* out of memory: customer_id still goes */
    w->npersonal = 0;
  }
}

/* The idempotency key of the request being decided, in R, as the
 * history stores it: scoped, with its digest and the answer in
 * w->scratch. */
static void idem_fields(vd_worker_t *w, vd_record_t *r, int code) {
  vd_buf_reset(&w->idem_scoped);
  vd_buf_addf(&w->idem_scoped, "%s\n%s", w->idem_scope, w->idem_key);
  r->idem_key = w->idem_scoped.data;
  r->idem_digest = w->idem_digest;
  r->idem_answer = w->scratch.data;
  r->idem_answer_len = w->scratch.len;
  r->idem_code = code;
}

static void record_and_respond(vd_conn_t *c, const char *line, size_t len,
                               int64_t received_ms) {
  vd_worker_t *w = c->w;
  vd_decision_t *d = &w->dec;
  vd_history_t *h = w->daemon->history;
  const char *revision = vd_bundle_revision(vd_engine_bundle(w->engine));
  char decision_id[37], pseudonym[VD_PSEUDONYM_LEN + 1];
  uint64_t seq = 0;
  int code = d->code;

  vd_uuid_v7(&w->uuid, received_ms, decision_id);
  vd_buf_reset(&w->scratch);
  vd_wire_write_decision(&w->scratch, d, decision_id, revision);
  count_response(w, d->code);

  if (w->daemon->opts.log_mode != VD_LOG_OFF) {
    vd_record_t r;
    memset(&r, 0, sizeof r);
    r.decision_id = decision_id;
    r.received_ms = received_ms;
    r.at = d->at[0] ? d->at : NULL;
    r.at_ms = d->at_ms;
    r.kind = d->kind[0] ? d->kind : NULL;
    r.region = d->region[0] ? d->region : NULL;
    r.policy_region = d->policy_region[0] ? d->policy_region : NULL;
    r.revision = revision;
    r.complaint_id = d->complaint_id.len ? d->complaint_id.data : NULL;
    r.customer_id = d->customer_id.len ? d->customer_id.data : NULL;
    r.category = d->category.len ? d->category.data : NULL;
    r.request = line;
    r.request_len = len;
    if ((d->code == VD_EBAD_REQUEST || d->code == VD_ETOO_LARGE) &&
        len > VD_BAD_REQUEST_RECORD_BYTES)
      r.request_len = utf8_prefix(line, VD_BAD_REQUEST_RECORD_BYTES);
    if (d->code == 0) {
      r.result = d->result.data;
      r.result_len = d->result.len;
      r.trace = d->trace.data;
      r.trace_len = d->trace.len;
    } else {
      r.error_code = vd_err_name(d->code);
      r.error_message = d->message.data;
      r.error_path = d->path.len ? d->path.data : NULL;
    }
    if (d->facts.len) {
      r.facts = d->facts.data;
      r.facts_len = d->facts.len;
    }
    r.elapsed_us = (int64_t)(d->elapsed_ns / 1000);
    r.client = c->who[0] ? c->client : c->peer;
    if (w->idem_key) /* stored with the record: it outlives a restart */
      idem_fields(w, &r, code);
    if (w->daemon->pkey &&
        vd_pseudonymise_record(w->daemon->pkey,
                               (const char *const *)w->personal,
                               w->npersonal, &r, &w->pseudo_req,
                               &w->pseudo_facts, pseudonym) != 0) {
      /* raw values are never written: the texts go, the record stays */
      r.request = r.facts = r.customer_id = NULL;
      r.request_len = r.facts_len = 0;
    }
    if (vd_history_submit(h, w->index, &r, &seq) != 0) {
      code = VD_EINTERNAL;
      vd_buf_reset(&w->scratch);
      vd_wire_write_error(&w->scratch, d->id.data, VD_EINTERNAL,
                          "the history database is not accepting records",
                          NULL, decision_id);
      seq = 0;
    } else {
      /* the history's copy of the record, about */
      hold_unsynced(c, seq, sizeof r + r.request_len + r.result_len +
                                r.trace_len + r.facts_len + d->message.len +
                                VD_RECORD_OVERHEAD);
      if (w->daemon->opts.log_mode != VD_LOG_DURABLE)
        seq = 0;
    }
  }
  reply(c, code, w->scratch.data, w->scratch.len, seq, decision_id,
        d->id.data);
  if (w->idem_key) { /* handle_request(): remember the answer */
    vd_idem_t *t = w->daemon->idem;
    w->idem_taken = 1;
    if (code == VD_EINTERNAL && d->code != VD_EINTERNAL) {
      vd_idem_settle(t, w->idem_scope, w->idem_key, 0); /* not recorded */
    } else {
      vd_idem_answer(t, w->idem_scope, w->idem_key, w->scratch.data,
                     w->scratch.len, code, seq == 0);
      if (seq && w->pend_tail && w->pend_tail->seq == seq) {
        size_t sn = strlen(w->idem_scope), kn = strlen(w->idem_key);
        char *k = malloc(sn + kn + 2);
        if (k) {
          memcpy(k, w->idem_scope, sn + 1);
          memcpy(k + sn + 1, w->idem_key, kn + 1);
          w->pend_tail->idem = k;
        } else {
          vd_idem_settle(t, w->idem_scope, w->idem_key, 0);
        }
      }
    }
  }
}

/* The decision came back after the daemon gave up on this worker (it ran
 * past --decide-timeout; vd_worker_abandon()).  Its connections are shut
 * down and a replacement serves in its place; the main thread no longer
 * expects anything of this thread and may be freeing what it shares, so
 * it touches nothing more and sleeps until the process ends. */
static void park(vd_worker_t *w) {
  vd_log(VD_LEVEL_WARNING, "overrun_returned",
         "worker %u: the decision that overran --decide-timeout "
         "returned after all; the thread stays parked until a "
         "restart",
         w->index);
  for (;;)
    pause();
}

static void handle_line(vd_conn_t *c, const char *line, size_t len) {
  vd_worker_t *w = c->w;
  vd_decision_t *d = &w->dec;
  int64_t now = vd_now_ms();
  size_t i;

  for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
    ;
  if (i == len)
    return; /* blank lines are not requests */
  atomic_store_explicit(&w->busy_since_ms, now, memory_order_relaxed);
  vd_engine_decide(w->engine, line, len, now, d);
  atomic_store_explicit(&w->busy_since_ms, 0, memory_order_relaxed);
  if (atomic_load(&w->abandoned))
    park(w);
  vd_metrics_series_set(w->m_lua,
                        (int64_t)vd_engine_sandbox(w->engine)->used);
  if (d->recounted)
    atomic_fetch_add_explicit(&w->recounts, 1, memory_order_relaxed);
  if (d->code == 0 && d->op != VD_OP_DECIDE) {
    int code = 0;
    vd_buf_reset(&w->scratch);
    switch (d->op) {
    case VD_OP_PING:
      vd_wire_write_pong(&w->scratch, d->id.data,
                         vd_bundle_revision(vd_engine_bundle(w->engine)));
      break;
    case VD_OP_STATUS:
      vd_daemon_write_status(w->daemon, &w->scratch, d->id.data, 0);
      break;
    default:
      code = vd_admin_has_op(d->op_name) ? VD_EFORBIDDEN : VD_EBAD_REQUEST;
      if (code == VD_EFORBIDDEN)
        vd_wire_write_error(&w->scratch, d->id.data, VD_EFORBIDDEN,
                            "administrative operations are accepted only on "
                            "the admin socket (verdictd --admin-socket)",
                            "op", NULL);
      else
        vd_wire_write_error(&w->scratch, d->id.data, VD_EBAD_REQUEST,
                            "unknown op (decide, ping or status)", "op", NULL);
      break;
    }
    reply(c, code, w->scratch.data, w->scratch.len, 0, NULL, NULL);
    return;
  }
  record_and_respond(c, line, len, now);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  vd_conn_t *c = h->data;
  (void)suggested;
  /* One buffer per worker: each read is framed before the next alloc. */
  *buf = uv_buf_init(c->w->readbuf, sizeof c->w->readbuf);
}

static void too_large(vd_conn_t *c) {
  vd_worker_t *w = c->w;
  vd_buf_reset(&w->scratch);
  vd_buf_addf(&w->scratch,
              "request line longer than %zu bytes; closing the connection",
              w->daemon->opts.max_line);
  {
    vd_buf_t line = VD_BUF_INIT;
    vd_wire_write_error(&line, NULL, VD_ETOO_LARGE, w->scratch.data, NULL,
                        NULL);
    respond(c, line.data, line.len, 0, NULL, NULL);
    vd_buf_release(&line);
  }
  count_response(w, VD_ETOO_LARGE);
  c->close_when_flushed = 1;
  conn_read_stop(c);
  c->eof = 1;
}

static void http_answer(vd_conn_t *c, int status, const char *body,
                        size_t len, const char *extra_headers);

/* A request line, with its idempotency key: HKEY (HTTP's header), else
 * the line's own "idem".  A retry of a key already answered gets that
 * answer again, undecided and unrecorded (idem.c); one whose first is
 * not answered yet, or that reuses a key with other bytes, is refused. */
static void handle_request(vd_conn_t *c, const char *line, size_t len,
                           const char *hkey) {
  vd_worker_t *w = c->w;
  vd_idem_t *t = w->daemon->idem;
  char key[VD_IDEM_KEY_MAX + 1];
  const char *k = hkey, *scope = c->who[0] ? c->who : "";
  vd_buf_t answer = VD_BUF_INIT, err = VD_BUF_INIT;
  int code = 0, rc;
  if (!k && t && vd_wire_peek_idem(line, len, key, sizeof key))
    k = key;
  if (!k || !t) {
    handle_line(c, line, len);
    return;
  }
  switch (rc = vd_idem_begin(t, scope, k, line, len, &answer, &code,
                             w->idem_digest)) {
  case VD_IDEM_HIT:
    reply(c, code, answer.data, answer.len, 0, NULL, NULL);
    break;
  case VD_IDEM_BUSY:
  case VD_IDEM_CONFLICT:
    vd_wire_write_error(&err, NULL, VD_EBAD_REQUEST,
                        rc == VD_IDEM_BUSY
                            ? "a request with this idempotency key is still "
                              "being decided; retry once it is answered"
                            : "this idempotency key came with another "
                              "request: a key names one request",
                        "idem", NULL);
    count_response(w, VD_EBAD_REQUEST);
    if (c->http)
      http_answer(c, 409, err.data, err.len, NULL);
    else
      respond(c, err.data, err.len, 0, NULL, NULL);
    break;
  default:
    w->idem_key = k;
    w->idem_scope = scope;
    w->idem_taken = 0;
    handle_line(c, line, len);
    if (!w->idem_taken) /* nothing recorded (ping, status, a blank line) */
      vd_idem_settle(t, scope, k, 0);
    w->idem_key = w->idem_scope = NULL;
    break;
  }
  vd_buf_release(&answer);
  vd_buf_release(&err);
}

/* Decide the complete lines c sent, in order, until it holds too much
 * (conn_account() throttles it; the rest wait in the framer, counted). */
static void process_lines(vd_conn_t *c) {
  const char *line;
  size_t len;
  int r = 0;
  while (!c->throttled && !c->closing && !c->close_when_flushed &&
         (r = vd_framer_next(&c->framer, &line, &len)) == 1) {
    handle_request(c, line, len, NULL);
    if (c->out.len >= VD_HEAVY_BYTES) /* a burst: to the socket as we go */
      conn_flush(c);
    conn_account(c);
  }
  if (r < 0)
    too_large(c);
  /* a long line or a burst grew the buffer: give it back once drained */
  if (vd_framer_pending(&c->framer) == 0 &&
      c->framer.buf.cap > VD_FRAMER_KEEP_BYTES) {
    size_t max = c->framer.max_line;
    vd_framer_release(&c->framer);
    vd_framer_init(&c->framer, max);
  }
}

/* ------------------------------------------------------------------------
 * HTTP (--http): requests framed by http.c, decided as lines are
 * ------------------------------------------------------------------------ */

/* Answer c's current HTTP request with STATUS and BODY of TYPE, not
 * recorded (health, lookups, refusals). */
static void http_answer_typed(vd_conn_t *c, int status, const char *type,
                              const char *body, size_t len,
                              const char *extra_headers) {
  vd_buf_t msg = VD_BUF_INIT;
  vd_http_write(&msg, status, type, extra_headers, body, len, c->keep_alive);
  if (c->head) /* HEAD: the same head, no body */
    msg.len -= len;
  respond(c, msg.data, msg.len, 0, NULL, NULL);
  vd_buf_release(&msg);
  if (!c->keep_alive)
    c->close_when_flushed = 1;
}

static void http_answer(vd_conn_t *c, int status, const char *body,
                        size_t len, const char *extra_headers) {
  http_answer_typed(c, status, "application/json", body, len, extra_headers);
}

/* ...with the socket protocol's error object for CODE (STATUS 0: the
 * code's own). */
static void http_error(vd_conn_t *c, int status, int code, const char *msg,
                       const char *extra_headers) {
  vd_buf_t line = VD_BUF_INIT;
  vd_wire_write_error(&line, NULL, code, msg, NULL, NULL);
  count_response(c->w, code);
  http_answer(c, status ? status : vd_wire_http_status(code), line.data,
              line.len, extra_headers);
  vd_buf_release(&line);
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Percent-decode [s, s+n) into out[cap] ('+' stays '+': an offset in
 * "at" is written as it is).  0, or -1 if malformed (a bad escape, an
 * escaped NUL) or too long. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap) {
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    int ch = (unsigned char)s[i];
    if (ch == '%') {
      int hi, lo;
      if (i + 2 >= n)
        return -1;
      hi = hexval((unsigned char)s[i + 1]);
      lo = hexval((unsigned char)s[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return -1;
      ch = hi * 16 + lo;
      i += 2;
    }
    if (o + 1 >= cap)
      return -1;
    out[o++] = (char)ch;
  }
  out[o] = '\0';
  return 0;
}

/* The query parameter NAME of [q, q+n) ("a=1&b=2"), decoded into
 * out[cap]: 1, 0 if absent, -1 if malformed. */
static int query_param(const char *q, size_t n, const char *name, char *out,
                       size_t cap) {
  size_t nl = strlen(name);
  const char *end = q + n, *p = q;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=')
      return pct_decode(p + nl + 1, (size_t)(stop - p - nl - 1), out, cap) == 0
                 ? 1 : -1;
    p = stop + 1;
  }
  return 0;
}

/* GET /v1/decisions/{id}: the record, as `verdict history show` reads it,
 * through this worker's finder: a read-only connection opened on the
 * first lookup and kept (an index seek on it, well under a millisecond;
 * opening the database for each lookup cost more than the lookup), dropped
 * and opened again by the history when it fails (history_find.c). */
static void http_lookup(vd_conn_t *c, const char *id) {
  vd_worker_t *w = c->w;
  const vd_history_value_t *row;
  vd_buf_t body = VD_BUF_INIT, err = VD_BUF_INIT;
  int rc = 0;
  if (!w->finder)
    rc = vd_history_finder_open(&w->finder, w->daemon->opts.db, &err);
  if (rc == 0)
    rc = vd_history_find(w->finder, id, &row, &err);
  if (rc == 1) {
    vd_wire_write_record(&body, row);
    http_answer(c, 200, body.data, body.len, NULL);
  } else if (rc == 0) {
    vd_buf_reset(&err);
    vd_buf_addf(&err, "no decision %s in the history", id);
    http_error(c, 0, VD_ENOT_FOUND, err.data, NULL);
  } else {
    http_error(c, 0, VD_EINTERNAL, err.len ? err.data : NULL, NULL);
  }
  vd_buf_release(&body);
  vd_buf_release(&err);
}

/* GET /metrics: the Prometheus text exposition of every thread's counts. */
static void http_metrics(vd_conn_t *c) {
  vd_metrics_t *m = c->w->daemon->metrics;
  vd_buf_t body = VD_BUF_INIT;
  if (!m) {
    http_error(c, 503, VD_EINTERNAL, "no metrics: verdictd ran out of "
                                     "memory for them at start-up", NULL);
    return;
  }
  if (vd_heap_in_use() >= 0)
    vd_metrics_set(m, VD_M_HEAP_BYTES, NULL, vd_heap_in_use());
  vd_metrics_render(m, &body);
  http_answer_typed(c, 200, VD_METRICS_CONTENT_TYPE, body.data, body.len,
                    NULL);
  vd_buf_release(&body);
}

/* GET /v1/openapi.json: the contract of the revision this worker decides
 * with, generated from its policies' schemas (openapi.h) once per
 * revision, on the first request after an activation, between two
 * decisions (0.8 ms, 30 KB), then answered from the worker's own copy:
 * a function of the bundle alone, so its revision names it, and no other
 * thread touches it. */
static void http_openapi(vd_conn_t *c) {
  vd_worker_t *w = c->w;
  const char *rev = vd_bundle_revision(vd_engine_bundle(w->engine));
  vd_buf_t err = VD_BUF_INIT;
  if (!w->openapi.len || strcmp(rev, w->openapi_rev) != 0) {
    vd_buf_reset(&w->openapi);
    w->openapi_rev[0] = '\0';
    if (vd_openapi_document(w->engine, &w->openapi, &err) != 0) {
      vd_buf_reset(&w->openapi);
      http_error(c, 500, VD_EPOLICY_ERROR, err.len ? err.data : NULL, NULL);
      vd_buf_release(&err);
      return;
    }
    snprintf(w->openapi_rev, sizeof w->openapi_rev, "%s", rev);
  }
  http_answer(c, 200, w->openapi.data, w->openapi.len, NULL);
}

/* GET /health/ready: 200 when a revision serves and the history takes
 * records, else 503 and why. */
static void http_ready(vd_conn_t *c) {
  vd_daemon_t *d = c->w->daemon;
  const char *why = NULL;
  char hw[640] = "the history database is not accepting records: ";
  size_t hn = strlen(hw);
  vd_buf_t body = VD_BUF_INIT;
  uv_mutex_lock(&d->state_lock);
  if (d->stopping || c->w->stopping)
    why = "verdictd is shutting down";
  else if (!d->bundle)
    why = "no revision is active";
  else if (d->check_state && strcmp(d->check_state, "damaged") == 0)
    why = "the history database is damaged (status: history_check)";
  else if (d->history &&
           vd_history_health(d->history, hw + hn, sizeof hw - hn) != 0)
    why = hw; /* its last batch, or its idle check, failed: says why */
  uv_mutex_unlock(&d->state_lock);
  if (why) {
    http_error(c, 503, VD_EINTERNAL, why, NULL);
    return;
  }
  vd_buf_adds(&body, "{\"ready\":true,\"revision\":");
  vd_buf_adds(&body, "\"");
  vd_buf_adds(&body, vd_bundle_revision(vd_engine_bundle(c->w->engine)));
  vd_buf_adds(&body, "\"}\n");
  http_answer(c, 200, body.data, body.len, NULL);
  vd_buf_release(&body);
}

static int blank(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return 0;
  return 1;
}

/* The request's Idempotency-Key into out[VD_IDEM_KEY_MAX + 1]: 1 and
 * *key (NULL without one), or 0 when it is not a valid key (answered). */
static int http_key(vd_conn_t *c, vd_http_req_t *req, char *out,
                    const char **key) {
  *key = NULL;
  if (!req->idem.len)
    return 1;
  if (!vd_wire_idem_valid(req->idem.data, req->idem.len)) {
    http_error(c, 400, VD_EBAD_REQUEST,
               "Idempotency-Key: 1 to 255 printable ASCII characters", NULL);
    return 0;
  }
  memcpy(out, req->idem.data, req->idem.len);
  out[req->idem.len] = '\0';
  *key = out;
  return 1;
}

/* POST /v1/decisions/{kind}?region=&at=: the socket request built around
 * the body, then decided as a line is.  A body that is not one JSON value
 * is decided as it is, and refused and recorded as bad_request, as the
 * same bytes on the socket would be. */
static void http_decide_kind(vd_conn_t *c, const char *kind, const char *q,
                             size_t qn, vd_http_req_t *req, const char *key) {
  char region[64], at[64];
  int hr, ha;
  vd_buf_t line = VD_BUF_INIT, err = VD_BUF_INIT;
  hr = query_param(q, qn, "region", region, sizeof region);
  ha = query_param(q, qn, "at", at, sizeof at);
  if (hr < 0 || ha < 0) {
    http_error(c, 0, VD_EBAD_REQUEST,
               hr < 0 ? "query parameter region: malformed or too long"
                      : "query parameter at: malformed or too long", NULL);
    return;
  }
  if (vd_wire_kind_request(&line, kind, hr ? region : NULL, ha ? at : NULL,
                           NULL, req->body.data, req->body.len, &err) == 0)
    handle_request(c, line.data, line.len, key);
  else
    handle_request(c, req->body.data, req->body.len, key);
  vd_buf_release(&line);
  vd_buf_release(&err);
}

/* Whether the request may do what ROLE allows; if not, it is answered
 * (401 without a known token, 403 with one that lacks the role, or from a
 * non-loopback peer when no --tokens are set) and 0 is returned.  Sets
 * c->who to the credential's name ("" on loopback without tokens). */
static int authorize(vd_conn_t *c, vd_http_req_t *req, unsigned role) {
  vd_daemon_t *d = c->w->daemon;
  static const char bearer[] = "Bearer ";
  static const char challenge[] =
      "WWW-Authenticate: Bearer realm=\"verdict\"\r\n";
  const char *tok = req->auth.data;
  size_t n = req->auth.len;
  unsigned roles = 0;
  int configured;
  char name[64] = "";
  const char *subject = c->tls ? vd_tls_subject(c->tls) : NULL;
  c->who[0] = '\0';
  uv_rwlock_rdlock(&d->tokens_lock);
  configured = d->tokens != NULL || vd_tls_ctx_verifies(d->tls);
  if (d->tokens && n > sizeof bearer - 1 &&
      strncasecmp(tok, bearer, sizeof bearer - 1) == 0)
    roles = vd_tokens_check(d->tokens, tok + sizeof bearer - 1,
                            n - (sizeof bearer - 1), name, sizeof name);
  if (!roles && subject) { /* mutual TLS: the certificate's CN */
    snprintf(name, sizeof name, "%s", subject);
    roles = d->tokens ? vd_tokens_roles_of(d->tokens, subject)
                      : VD_ROLE_DECIDE | VD_ROLE_AUDIT | VD_ROLE_ADMIN;
    if (!roles) { /* known to the CA, not to the token file: no role */
      uv_rwlock_rdunlock(&d->tokens_lock);
      snprintf(c->who, sizeof c->who, "%s", name);
      snprintf(c->client, sizeof c->client, "%s@%s", name, c->peer);
      http_error(c, 403, VD_EFORBIDDEN,
                 "the client certificate's subject has no line in the "
                 "token file (verdictd --tokens)", NULL);
      return 0;
    }
  }
  uv_rwlock_rdunlock(&d->tokens_lock);
  if (!configured) {
    if (c->loopback)
      return 1;
    http_error(c, 403, VD_EFORBIDDEN,
               "this listener has no credentials (verdictd --tokens) and "
               "serves loopback clients only", NULL);
    return 0;
  }
  if (!roles) {
    http_error(c, 401, VD_EUNAUTHORIZED,
               n ? "the bearer token is not known (verdictd --tokens)"
                 : "a bearer token is required (Authorization: Bearer ...)",
               challenge);
    return 0;
  }
  snprintf(c->who, sizeof c->who, "%s", name);
  snprintf(c->client, sizeof c->client, "%s@%s", name, c->peer);
  if (role && !(roles & role)) { /* 0: any credential will do */
    vd_buf_t msg = VD_BUF_INIT;
    vd_buf_addf(&msg, "credential '%s' lacks the %s role", name,
                role == VD_ROLE_DECIDE ? "decide"
                : role == VD_ROLE_AUDIT ? "audit" : "admin");
    http_error(c, 403, VD_EFORBIDDEN, msg.data, NULL);
    vd_buf_release(&msg);
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------------
 * HTTP /v1/admin/...: the admin socket's operations, asked over it
 *
 * admin.c owns reloads, activations and the revisions' reads, on the main
 * thread; an admin request over HTTP is passed to it as one line on the
 * admin socket (--admin-socket), with the credential's name as "who", and
 * its answer line is the response's body.  The connection parses nothing
 * further until the answer is in (vd_http_t's pause), so its answers keep
 * their order.
 * ------------------------------------------------------------------------ */

typedef struct vd_admin_call {
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_write_t write;
  vd_conn_t *conn;      /* holds a reference */
  vd_buf_t line;        /* the request, then the answer as it comes */
  int answered;
  int activates;        /* reload, activate: a refused bundle is a 422 */
} vd_admin_call_t;

static void http_resume(vd_conn_t *c);

static void on_admin_call_closed(uv_handle_t *h) {
  vd_admin_call_t *a = h->data;
  vd_buf_release(&a->line);
  free(a);
}

/* The answer (or why there is none) to c's admin request: to the client,
 * and c parses on. */
static void admin_call_end(vd_admin_call_t *a, const char *line, size_t len) {
  vd_conn_t *c = a->conn;
  if (a->answered)
    return;
  a->answered = 1;
  if (!c->closing) {
    if (line) {
      /* the error's code, as admin.c's vd_wire_write_error() wrote it */
      const char *e = memmem(line, len, "\"error\":{\"code\":\"", 17);
      char name[32] = "";
      int code = 0;
      if (e) {
        size_t k = 0;
        e += 17;
        while (k + 1 < sizeof name && e < line + len && *e != '"')
          name[k++] = *e++;
        name[k] = '\0';
        code = vd_err_from_name(name);
        if (!code)
          code = VD_EINTERNAL;
      }
      /* a bundle its checks refuse (policy_error, policy_timeout) was
       * asked for properly and cannot be processed: 422, as the OpenAPI
       * document says */
      int status = a->activates && (code == VD_EPOLICY_ERROR ||
                                    code == VD_EPOLICY_TIMEOUT)
                       ? 422 : vd_wire_http_status(code);
      http_answer(c, status, line, len, NULL);
    } else {
      http_error(c, 503, VD_EINTERNAL,
                 "the admin socket did not answer", NULL);
    }
    http_resume(c);
  }
  uv_close((uv_handle_t *)&a->pipe, on_admin_call_closed);
  conn_unref(c);
}

static void on_admin_call_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  vd_admin_call_t *a = h->data;
  (void)n;
  vd_buf_grow(&a->line, 65536);
  *b = uv_buf_init(a->line.data + a->line.len, 65536);
}

static void on_admin_call_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  vd_admin_call_t *a = s->data;
  char *nl;
  (void)b;
  if (n < 0) {
    admin_call_end(a, NULL, 0);
    return;
  }
  a->line.len += (size_t)n;
  nl = memchr(a->line.data, '\n', a->line.len);
  if (nl)
    admin_call_end(a, a->line.data, (size_t)(nl - a->line.data) + 1);
}

static void on_admin_call_written(uv_write_t *req, int status) {
  vd_admin_call_t *a = req->data;
  if (status < 0) {
    admin_call_end(a, NULL, 0);
    return;
  }
  vd_buf_reset(&a->line);
  if (uv_read_start((uv_stream_t *)&a->pipe, on_admin_call_alloc,
                    on_admin_call_read) != 0)
    admin_call_end(a, NULL, 0);
}

static void on_admin_call_connected(uv_connect_t *req, int status) {
  vd_admin_call_t *a = req->data;
  uv_buf_t b;
  if (status < 0) {
    admin_call_end(a, NULL, 0);
    return;
  }
  b = uv_buf_init(a->line.data, (unsigned)a->line.len);
  a->write.data = a;
  if (uv_write(&a->write, (uv_stream_t *)&a->pipe, &b, 1,
               on_admin_call_written) != 0)
    admin_call_end(a, NULL, 0);
}

/* Ask the admin socket OP with the string fields NAMES[i] = VALUES[i]
 * (NULL values left out) and who, for c.  Returns what http_on_request
 * returns: VD_HTTP_PAUSE while the answer is awaited. */
static int http_admin(vd_conn_t *c, const char *op, const char *const *names,
                      const char *const *values, size_t n) {
  const char *sock = c->w->daemon->opts.admin_socket;
  vd_admin_call_t *a;
  size_t i;
  if (!sock) {
    http_error(c, 503, VD_EINTERNAL,
               "/v1/admin needs the admin socket: start verdictd with "
               "--admin-socket PATH", NULL);
    return c->close_when_flushed;
  }
  a = calloc(1, sizeof *a);
  if (!a) {
    http_error(c, 503, VD_EINTERNAL, NULL, NULL);
    return c->close_when_flushed;
  }
  a->conn = c;
  a->activates = strcmp(op, "reload") == 0 || strcmp(op, "activate") == 0;
  vd_buf_init(&a->line);
  vd_buf_adds(&a->line, "{\"op\":");
  vd_buf_add_json_str(&a->line, op, strlen(op));
  vd_buf_adds(&a->line, ",\"who\":");
  vd_buf_adds(&a->line, "\"http:");
  vd_buf_adds(&a->line, c->who[0] ? c->who : "loopback");
  vd_buf_addc(&a->line, '"');
  for (i = 0; i < n; i++) {
    if (!values[i])
      continue;
    vd_buf_addc(&a->line, ',');
    vd_buf_add_json_str(&a->line, names[i], strlen(names[i]));
    vd_buf_addc(&a->line, ':');
    vd_buf_add_json_str(&a->line, values[i], strlen(values[i]));
  }
  vd_buf_adds(&a->line, "}\n");
  uv_pipe_init(&c->w->loop, &a->pipe, 0);
  a->pipe.data = a;
  a->connect.data = a;
  c->refs++;
  conn_read_stop(c); /* until the answer: see http_resume() */
  uv_pipe_connect(&a->connect, &a->pipe, sock, on_admin_call_connected);
  return VD_HTTP_PAUSE;
}

/* /v1/admin/OP (the part after /v1/admin/ in [p, p+n)). */
static int http_admin_route(vd_conn_t *c, vd_http_req_t *req, const char *p,
                            size_t n, const char *q, size_t qn) {
  char a[128], b[128];
  int ha, hb;
  if (!authorize(c, req, VD_ROLE_ADMIN))
    return c->close_when_flushed;
  if (n == 6 && memcmp(p, "reload", 6) == 0 && req->method == HTTP_POST)
    return http_admin(c, "reload", NULL, NULL, 0);
  if (n == 8 && memcmp(p, "activate", 8) == 0 && req->method == HTTP_POST) {
    static const char *const names[] = {"revision"};
    const char *values[1];
    ha = query_param(q, qn, "revision", a, sizeof a);
    if (ha != 1) {
      http_error(c, 400, VD_EBAD_REQUEST,
                 "activate needs ?revision=sha256:... (or a prefix, or a "
                 "name the admin socket takes)", NULL);
      return c->close_when_flushed;
    }
    values[0] = a;
    return http_admin(c, "activate", names, values, 1);
  }
  if (n == 9 && memcmp(p, "revisions", 9) == 0 && req->method == HTTP_GET)
    return http_admin(c, "revisions", NULL, NULL, 0);
  if (n == 4 && memcmp(p, "diff", 4) == 0 && req->method == HTTP_GET) {
    static const char *const names[] = {"from", "to"};
    const char *values[2];
    ha = query_param(q, qn, "from", a, sizeof a);
    hb = query_param(q, qn, "to", b, sizeof b);
    if (ha != 1 || hb < 0) {
      http_error(c, 400, VD_EBAD_REQUEST,
                 "diff needs ?from=REVISION (and &to=, default the active "
                 "revision)", NULL);
      return c->close_when_flushed;
    }
    values[0] = a;
    values[1] = hb == 1 ? b : NULL;
    return http_admin(c, "diff", names, values, 2);
  }
  http_error(c, 404, VD_ENOT_FOUND,
             "no such admin path: POST /v1/admin/reload, POST "
             "/v1/admin/activate?revision=, GET /v1/admin/revisions, GET "
             "/v1/admin/diff?from=&to=", NULL);
  return c->close_when_flushed;
}

/* ------------------------------------------------------------------------
 * HTTP /console/...: the web console's pages (console.c), each built on
 * libuv's thread pool so that its history reads never hold this loop; the
 * connection parses nothing further until its page is sent, as with
 * http_admin().
 * ------------------------------------------------------------------------ */

typedef struct vd_console_call {
  uv_work_t work;
  vd_conn_t *conn;             /* holds a reference */
  vd_daemon_t *daemon;
  vd_http_req_t req;           /* a copy: the parser reuses its own */
  int loopback, tls;
  vd_console_answer_t answer;  /* the pool thread's until console_done() */
} vd_console_call_t;

static void console_work(uv_work_t *w) {
  vd_console_call_t *k = w->data;
  vd_console_serve(k->daemon, k->loopback, k->tls, &k->req, &k->answer);
}

/* Work a page leaves for later (console.c's Impact run), on the pool. */
typedef struct vd_console_after {
  uv_work_t work;
  void (*fn)(void *arg, int run);
  void *arg;
} vd_console_after_t;

static void console_after_work(uv_work_t *w) {
  vd_console_after_t *f = w->data;
  f->fn(f->arg, 1);
}

static void console_after_done(uv_work_t *w, int status) {
  free(w->data);
}

static void console_done(uv_work_t *w, int status) {
  vd_console_call_t *k = w->data;
  vd_conn_t *c = k->conn;
  vd_console_answer_t *a = &k->answer;
  if (a->after) { /* console.c owns its argument until fn has run */
    vd_console_after_t *f = calloc(1, sizeof *f);
    if (f) {
      f->fn = a->after;
      f->arg = a->after_arg;
      f->work.data = f;
    }
    if (!f || uv_queue_work(&c->w->loop, &f->work, console_after_work,
                            console_after_done)) {
      free(f);
      a->after(a->after_arg, 0); /* never on this loop: given up */
    }
  }
  if (!c->closing) {
    if (status == 0)
      http_answer_typed(c, a->status, a->type, a->body.data ? a->body.data
                                                            : "",
                        a->body.len, a->headers.len ? a->headers.data : NULL);
    else
      http_error(c, 503, VD_EINTERNAL, NULL, NULL);
    http_resume(c);
  }
  vd_console_answer_release(a);
  vd_buf_release(&k->req.target);
  vd_buf_release(&k->req.body);
  vd_buf_release(&k->req.auth);
  vd_buf_release(&k->req.cookie);
  free(k);
  conn_unref(c);
}

static int http_console(vd_conn_t *c, vd_http_req_t *req) {
  vd_console_call_t *k = calloc(1, sizeof *k);
  if (!k) {
    http_error(c, 503, VD_EINTERNAL, NULL, NULL);
    return c->close_when_flushed;
  }
  k->conn = c;
  k->daemon = c->w->daemon;
  k->loopback = c->loopback;
  k->tls = c->tls != NULL;
  k->req.method = req->method;
  vd_buf_add(&k->req.target, req->target.data, req->target.len);
  vd_buf_add(&k->req.body, req->body.data, req->body.len);
  vd_buf_add(&k->req.auth, req->auth.data, req->auth.len);
  vd_buf_add(&k->req.cookie, req->cookie.data, req->cookie.len);
  k->work.data = k;
  if (uv_queue_work(&c->w->loop, &k->work, console_work, console_done)) {
    vd_buf_release(&k->req.target);
    vd_buf_release(&k->req.body);
    vd_buf_release(&k->req.auth);
    vd_buf_release(&k->req.cookie);
    free(k);
    http_error(c, 503, VD_EINTERNAL, NULL, NULL);
    return c->close_when_flushed;
  }
  c->refs++;
  conn_read_stop(c); /* until the page: see http_resume() */
  return VD_HTTP_PAUSE;
}

static int http_on_request(void *arg, vd_http_req_t *req) {
  vd_conn_t *c = arg;
  const char *t = req->target.len ? req->target.data : "";
  size_t tn = req->target.len, pn;
  const char *q = memchr(t, '?', tn);
  char seg[128], key[VD_IDEM_KEY_MAX + 1];
  const char *k;
  static const char decisions[] = "/v1/decisions";
  c->keep_alive = req->keep_alive;
  c->head = 0;
  c->last_ms = vd_now_ms();
  pn = q ? (size_t)(q - t) : tn;
  if ((pn == 7 && memcmp(t, "/health", 7) == 0) ||
      (pn == 13 && memcmp(t, "/health/ready", 13) == 0))
    c->head = req->method == HTTP_HEAD; /* what load balancers may send */
  if (pn == 7 && memcmp(t, "/health", 7) == 0) {
    if (req->method != HTTP_GET && !c->head)
      http_error(c, 405, VD_EBAD_REQUEST, "GET /health",
                 "Allow: GET, HEAD\r\n");
    else {
      static const char ok[] = "{\"status\":\"ok\"}\n";
      http_answer(c, 200, ok, sizeof ok - 1, NULL);
    }
  } else if (pn == 13 && memcmp(t, "/health/ready", 13) == 0) {
    if (req->method != HTTP_GET && !c->head)
      http_error(c, 405, VD_EBAD_REQUEST, "GET /health/ready",
                 "Allow: GET, HEAD\r\n");
    else
      http_ready(c);
  } else if (pn == sizeof decisions - 1 && memcmp(t, decisions, pn) == 0) {
    if (req->method != HTTP_POST)
      http_error(c, 405, VD_EBAD_REQUEST, "POST /v1/decisions",
                 "Allow: POST\r\n");
    else if (!authorize(c, req, VD_ROLE_DECIDE) || !http_key(c, req, key, &k))
      ; /* answered */
    else if (blank(req->body.data ? req->body.data : "", req->body.len))
      http_error(c, 0, VD_EBAD_REQUEST,
                 "the body is empty: send the request object", NULL);
    else
      handle_request(c, req->body.data, req->body.len, k);
  } else if (pn > sizeof decisions &&
             memcmp(t, decisions, sizeof decisions - 1) == 0 &&
             t[sizeof decisions - 1] == '/' &&
             !memchr(t + sizeof decisions, '/', pn - sizeof decisions)) {
    if (pct_decode(t + sizeof decisions, pn - sizeof decisions, seg,
                   sizeof seg) != 0)
      http_error(c, 404, VD_ENOT_FOUND, "no such path", NULL);
    else if (req->method == HTTP_GET) {
      if (authorize(c, req, VD_ROLE_AUDIT))
        http_lookup(c, seg);
    }
    else if (req->method != HTTP_POST)
      http_error(c, 405, VD_EBAD_REQUEST,
                 "GET /v1/decisions/{id} or POST /v1/decisions/{kind}",
                 "Allow: GET, POST\r\n");
    else if (!authorize(c, req, VD_ROLE_DECIDE) || !http_key(c, req, key, &k))
      ; /* answered */
    else if (blank(req->body.data ? req->body.data : "", req->body.len))
      http_error(c, 0, VD_EBAD_REQUEST,
                 "the body is empty: send the input object", NULL);
    else
      http_decide_kind(c, seg, q ? q + 1 : "", q ? tn - pn - 1 : 0, req, k);
  } else if (pn == 8 && memcmp(t, "/metrics", 8) == 0) {
    if (req->method != HTTP_GET)
      http_error(c, 405, VD_EBAD_REQUEST, "GET /metrics", "Allow: GET\r\n");
    else if (authorize(c, req, 0))
      http_metrics(c);
  } else if (pn == 16 && memcmp(t, "/v1/openapi.json", 16) == 0) {
    if (req->method != HTTP_GET)
      http_error(c, 405, VD_EBAD_REQUEST, "GET /v1/openapi.json",
                 "Allow: GET\r\n");
    else if (authorize(c, req, 0))
      http_openapi(c);
  } else if (pn >= 8 && memcmp(t, "/console", 8) == 0 &&
             (pn == 8 || t[8] == '/')) { /* console.c checks credentials */
    int rc = http_console(c, req);
    conn_account(c);
    return rc;
  } else if (pn > 10 && memcmp(t, "/v1/admin/", 10) == 0) {
    int rc = http_admin_route(c, req, t + 10, pn - 10, q ? q + 1 : "",
                              q ? tn - pn - 1 : 0);
    conn_account(c);
    return rc;
  } else {
    http_error(c, 404, VD_ENOT_FOUND,
               "no such path: POST /v1/decisions, POST /v1/decisions/{kind}, "
               "GET /v1/decisions/{id}, GET /health, GET /health/ready, "
               "GET /metrics, GET /v1/openapi.json, /v1/admin/...", NULL);
  }
  conn_account(c);
  return c->close_when_flushed;
}

/* A request sent "Expect: 100-continue": tell it to send the body (in
 * order, behind the answers to its requests before). */
static void http_on_continue(void *arg) {
  vd_conn_t *c = arg;
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  respond(c, cont, sizeof cont - 1, 0, NULL, NULL);
}

static void http_fed(vd_conn_t *c, int st);

/* Bytes from an HTTP client. */
static void http_read(vd_conn_t *c, const char *p, size_t n) {
  c->last_ms = vd_now_ms();
  http_fed(c, vd_http_feed(c->http, p, n));
}

/* An answer that paused c came: parse what waited, and read again. */
static void http_resume(vd_conn_t *c) {
  http_fed(c, vd_http_resume(c->http));
  if (!c->http->paused && !c->throttled)
    conn_read_start(c);
  conn_flush(c);
  conn_account(c);
  conn_maybe_close(c);
}

/* What vd_http_feed() or _resume() said (ST). */
static void http_fed(vd_conn_t *c, int st) {
  if (st > 0) { /* refused: answer, then close */
    c->keep_alive = 0;
    http_error(c, st, c->http->error_code, c->http->error_msg, NULL);
  }
  if (st != 0) {
    c->close_when_flushed = 1;
    conn_read_stop(c);
    c->eof = 1;
  }
}

/* Every VD_HTTP_SWEEP_MS while HTTP connections are open: a request begun
 * VD_HTTP_REQUEST_MS ago and not complete gets 408 and a close; an idle
 * keep-alive connection (nothing of it waiting) is closed after
 * VD_HTTP_IDLE_MS.  A slow client costs its own connection, no more. */
static void on_http_sweep(uv_timer_t *t) {
  vd_worker_t *w = t->data;
  int64_t now = vd_now_ms();
  vd_conn_t *c, *next;
  for (c = w->conns; c; c = next) {
    next = c->next;
    if (!c->http || c->closing)
      continue;
    if (c->http->in_message && !c->close_when_flushed &&
        now - c->http->started_ms > VD_HTTP_REQUEST_MS) {
      c->keep_alive = 0;
      http_error(c, 408, VD_EBAD_REQUEST,
                 "the request was not complete within 10 s", NULL);
      conn_read_stop(c);
      c->eof = 1;
      conn_flush(c);
      conn_maybe_close(c);
    } else if (!c->http->in_message && c->npending == 0 && c->out.len == 0 &&
               c->inflight == 0 && now - c->last_ms > VD_HTTP_IDLE_MS) {
      conn_close(c);
    } else if (c->close_when_flushed && c->inflight &&
               now - c->last_ms > VD_HTTP_REQUEST_MS) {
      conn_close(c); /* its last answer, never read */
    }
  }
}

/* ------------------------------------------------------------------------
 * The NDJSON socket meets an HTTP client
 * ------------------------------------------------------------------------ */

/* Whether c's first bytes are an HTTP request line ("GET / HTTP/1.1"):
 * 1 yes, 0 no, -1 not yet known (fewer bytes than a method and a space).
 * A request line begins with capitals, which no JSON value does. */
static int looks_like_http(const char *p, size_t n) {
  size_t i;
  for (i = 0; i < n && i < 8; i++) {
    if (p[i] == ' ')
      return i > 0 && i + 1 < n ? p[i + 1] == '/' || p[i + 1] == '*' ||
                                      (p[i + 1] >= 'a' && p[i + 1] <= 'z')
             : i > 0 ? -1 : 0;
    if (p[i] < 'A' || p[i] > 'Z')
      return 0;
  }
  return i < 8 ? -1 : 0;
}

/* One HTTP 400 that names --http, then the connection closes; nothing is
 * decided and nothing recorded. */
static void refuse_http(vd_conn_t *c) {
  static const char body[] =
      "{\"id\":null,\"error\":{\"code\":\"bad_request\",\"message\":\"this "
      "is verdictd's NDJSON decision socket (one JSON request per line); "
      "HTTP is served on the listener verdictd --http HOST:PORT opens\"}}\n";
  vd_buf_t msg = VD_BUF_INIT;
  vd_http_write(&msg, 400, "application/json", NULL, body, sizeof body - 1,
                0);
  respond(c, msg.data, msg.len, 0, NULL, NULL);
  vd_buf_release(&msg);
  count_response(c->w, VD_EBAD_REQUEST);
  vd_framer_release(&c->framer);
  vd_framer_init(&c->framer, c->w->daemon->opts.max_line);
  c->close_when_flushed = 1;
  conn_read_stop(c);
  c->eof = 1;
}

/* Bytes [p, p+n) from c's client (decrypted, under TLS). */
static void conn_got(vd_conn_t *c, const char *p, size_t n) {
  if (c->http) {
    http_read(c, p, n);
  } else {
    vd_framer_feed(&c->framer, p, n);
    if (!c->sniffed) {
      int h = looks_like_http(c->framer.buf.data + c->framer.start,
                              vd_framer_pending(&c->framer));
      c->sniffed = h != -1;
      if (h == 1)
        refuse_http(c);
    }
    if (c->sniffed && !c->close_when_flushed)
      process_lines(c);
  }
}

/* c's client sent all it will. */
static void conn_got_eof(vd_conn_t *c) {
  const char *line;
  size_t len;
  if (!c->http && vd_framer_pending(&c->framer) && !c->close_when_flushed) {
    /* Half-close: answer everything received, a last unterminated line
     * included, then close when the answers are out. */
    vd_framer_feed(&c->framer, "\n", 1);
    if (vd_framer_next(&c->framer, &line, &len) == 1)
      handle_request(c, line, len, NULL);
  }
  conn_read_stop(c);
  c->eof = 1;
}

/* c's TLS handshake failed (ERR: OpenSSL's words): counted by reason in
 * verdict_tls_handshake_failures_total, and logged, one line a second at
 * most across the workers (a scanner cannot flood the log); the next
 * line says how many were left out. */
static void tls_failed(vd_conn_t *c, const char *err) {
  vd_worker_t *w = c->w;
  vd_daemon_t *d = w->daemon;
  const char *label[1] = {vd_tls_failure(c->tls)};
  int64_t now = vd_now_ms(), last;
  unsigned long skipped;
  char more[64] = "";
  if (!label[0])
    return; /* after the handshake: the connection's own error */
  if (w->metrics)
    vd_metrics_inc(w->metrics, VD_M_TLS_FAILURES, label, 1);
  last = atomic_load_explicit(&d->tls_logged_ms, memory_order_relaxed);
  if (now - last < 1000 ||
      !atomic_compare_exchange_strong(&d->tls_logged_ms, &last, now)) {
    atomic_fetch_add_explicit(&d->tls_unlogged, 1, memory_order_relaxed);
    return;
  }
  skipped = atomic_exchange(&d->tls_unlogged, 0);
  if (skipped)
    snprintf(more, sizeof more, " (and %lu more since the last line)",
             skipped);
  vd_log(VD_LEVEL_WARNING, "tls_handshake_failed",
         "TLS handshake with %s on the %s listener failed (%s): %s%s",
         c->peer, c->http ? "HTTP" : "TCP", label[0], err, more);
}

/* TLS records from c's client: their plaintext on to conn_got().  A
 * failed handshake (a client certificate the CA did not sign, none when
 * one is required, no common protocol) gets its alert, and a close. */
static void tls_got(vd_conn_t *c, const char *p, size_t n) {
  vd_worker_t *w = c->w;
  vd_buf_t err = VD_BUF_INIT;
  int r;
  vd_buf_reset(&w->tlsplain);
  r = vd_tls_feed(c->tls, p, n, &w->tlsplain, &c->sealed, &err);
  if (r < 0)
    tls_failed(c, err.len ? err.data : "unknown TLS error");
  vd_buf_release(&err);
  if (r < 0) {
    conn_read_stop(c);
    c->eof = 1;
    c->close_when_flushed = 1;
    return;
  }
  if (!c->http && !c->who[0] && vd_tls_subject(c->tls)) {
    /* the NDJSON protocol has one role: the certificate names its client */
    snprintf(c->who, sizeof c->who, "%s", vd_tls_subject(c->tls));
    snprintf(c->client, sizeof c->client, "%s@%s", c->who, c->peer);
  }
  if (w->tlsplain.len)
    conn_got(c, w->tlsplain.data, w->tlsplain.len);
  if (r == 1 && !c->eof)
    conn_got_eof(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  vd_conn_t *c = s->data;
  if (nread > 0 && c->tls) {
    tls_got(c, buf->base, (size_t)nread);
  } else if (nread > 0) {
    conn_got(c, buf->base, (size_t)nread);
  } else if (nread == UV_EOF) {
    conn_got_eof(c);
  } else if (nread < 0) {
    conn_read_stop(c);
    conn_close(c);
    return;
  }
  conn_flush(c);
  conn_account(c);
  if (c->throttled) /* what stopped it may be gone, flushed just now */
    conn_resume(c);
  conn_maybe_close(c);
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

static void adopt(vd_worker_t *w, const vd_handoff_t *ho) {
  vd_conn_t *c = calloc(1, sizeof *c);
  int rc;
  if (!c) {
    close(ho->fd);
    return;
  }
  c->w = w;
  c->refs = 1;
  snprintf(c->peer, sizeof c->peer, "%s", ho->peer);
  c->loopback = strncmp(ho->peer, "127.", 4) == 0 ||
                strncmp(ho->peer, "[::1]:", 6) == 0 ||
                strncmp(ho->peer, "[::ffff:127.", 12) == 0;
  vd_framer_init(&c->framer, w->daemon->opts.max_line);
  vd_buf_init(&c->out);
  if (ho->is_http) {
    c->http = malloc(sizeof *c->http);
    if (!c->http) {
      close(ho->fd);
      free(c);
      return;
    }
    vd_http_init(c->http, w->daemon->opts.max_line, http_on_request,
                 http_on_continue, c);
    c->last_ms = vd_now_ms();
    if (w->nhttp++ == 0)
      uv_timer_start(&w->http_sweep, on_http_sweep, VD_HTTP_SWEEP_MS,
                     VD_HTTP_SWEEP_MS);
  }
  vd_buf_init(&c->sealed);
  if (ho->tls && (c->tls = vd_tls_new(w->daemon->tls)) == NULL) {
    if (c->http) {
      vd_http_release(c->http);
      free(c->http);
      if (--w->nhttp == 0)
        uv_timer_stop(&w->http_sweep);
    }
    close(ho->fd);
    free(c);
    return;
  }
  if (ho->is_tcp) {
    uv_tcp_init(&w->loop, &c->h.tcp);
    rc = uv_tcp_open(&c->h.tcp, ho->fd);
    if (rc == 0)
      uv_tcp_nodelay(&c->h.tcp, 1);
  } else {
    uv_pipe_init(&w->loop, &c->h.pipe, 0);
    rc = uv_pipe_open(&c->h.pipe, ho->fd);
  }
  c->h.handle.data = c;
  c->transport = ho->is_http ? (ho->tls ? VD_TRANSPORT_HTTPS : VD_TRANSPORT_HTTP)
                 : ho->is_tcp ? (ho->tls ? VD_TRANSPORT_TCP_TLS : VD_TRANSPORT_TCP)
                              : VD_TRANSPORT_UNIX;
  c->next = w->conns;
  if (w->conns)
    w->conns->prev = c;
  w->conns = c;
  w->nconns++;
  atomic_fetch_add(&w->connections, 1);
  vd_metrics_series_move(w->m_conns[c->transport], 1);
  if (rc != 0) {
    close(ho->fd);
    conn_close(c);
    return;
  }
  fd_register(w, ho->fd, ho->tls ? VD_FRAMING_NONE
                         : ho->is_http ? VD_FRAMING_HTTP : VD_FRAMING_LINE);
  if (ho->is_tcp && !ho->is_http && !c->loopback &&
      !vd_tls_ctx_verifies(w->daemon->tls)) {
    /* --listen without credentials serves loopback clients only (the
     * daemon said so at start-up): one error line, and a close */
    static const char line[] =
        "{\"id\":null,\"error\":{\"code\":\"forbidden\",\"message\":"
        "\"this listener has no credentials (verdictd --tls-client-ca) and "
        "serves loopback clients only\"}}\n";
    respond(c, line, sizeof line - 1, 0, NULL, NULL);
    count_response(w, VD_EFORBIDDEN);
    c->close_when_flushed = 1;
    c->eof = 1;
    conn_flush(c);
    conn_maybe_close(c);
    return;
  }
  conn_read_start(c);
}

/* The grace period after SIGTERM is over: close what is still open (a
 * client that does not read its answers must not keep us alive). */
static void on_grace_over(uv_timer_t *t) {
  vd_worker_t *w = t->data;
  vd_conn_t *c;
  unsigned n = 0;
  for (c = w->conns; c; c = c->next) {
    if (!c->closing) {
      conn_close(c);
      n++;
    }
  }
  if (n)
    vd_log(VD_LEVEL_WARNING, "connections_cut",
           "worker %u: closed %u "
           "connection%s that did not drain within the shutdown grace period",
           w->index, n, n == 1 ? "" : "s");
}

static void begin_stop(vd_worker_t *w) {
  vd_conn_t *c, *next;
  if (w->stopping)
    return;
  w->stopping = 1;
  uv_timer_init(&w->loop, &w->grace);
  w->grace.data = w;
  uv_timer_start(&w->grace, on_grace_over, VD_SHUTDOWN_GRACE_MS, 0);
  uv_unref((uv_handle_t *)&w->grace);
  for (c = w->conns; c; c = next) {
    next = c->next;
    conn_read_stop(c);
    c->eof = 1;
    conn_maybe_close(c);
  }
  finish_if_done(w);
}

static void on_wake(uv_async_t *a) {
  vd_worker_t *w = a->data;
  vd_handoff_t local[64];
  size_t n, i;
  int stop;
  vd_engine_t *fresh;

  for (;;) {
    uv_mutex_lock(&w->lock);
    n = w->nqueue < 64 ? w->nqueue : 64;
    if (n) {
      memcpy(local, w->queue, n * sizeof *local);
      memmove(w->queue, w->queue + n, (w->nqueue - n) * sizeof *local);
      w->nqueue -= n;
    }
    stop = w->stop;
    fresh = w->next_engine;
    w->next_engine = NULL;
    uv_mutex_unlock(&w->lock);
    if (fresh) { /* between two requests: every request sees one revision */
      vd_engine_free(w->engine);
      w->engine = fresh;
      read_personal(w);
      vd_engine_set_watch(w->engine, w->watch);
      vd_engine_set_metrics(w->engine, w->metrics);
      if (w->reader)
        vd_engine_set_facts(w->engine, answer_fact, w);
    }
    for (i = 0; i < n; i++) {
      if (stop)
        close(local[i].fd);
      else
        adopt(w, &local[i]);
    }
    if (n < 64)
      break;
  }
  history_done(w);
  if (stop)
    begin_stop(w);
  finish_if_done(w);
}

/* ctx.history, answered from this worker's read-only connection. */
static int answer_fact(void *ud, const char *query, const char *a,
                       const char *b, int64_t since_ms, int64_t until_ms,
                       int64_t *count) {
  vd_worker_t *w = ud;
  char pseudonym[VD_PSEUDONYM_LEN + 1];
  /* the questions about one customer ask by its pseudonym, as stored */
  if (w->daemon->pkey && a && strcmp(query, "similar_customers") != 0) {
    vd_pseudonym(w->daemon->pkey, a, strlen(a), pseudonym);
    a = pseudonym;
  }
  return vd_history_answer(w->reader, query, a, b, since_ms, until_ms, count);
}

/* This thread's series: made here, by the shard's one writer. */
static void metrics_start(vd_worker_t *w) {
  static const char *const transports[] = {"unix", "tcp", "tcp_tls", "http",
                                           "https"};
  char index[16];
  const char *label[1];
  unsigned i;
  if (!w->metrics)
    return;
  for (i = 0; i < sizeof transports / sizeof transports[0]; i++) {
    label[0] = transports[i];
    w->m_conns[i] = vd_metrics_series(w->metrics, VD_M_CONNECTIONS, label);
  }
  snprintf(index, sizeof index, "%u", w->index);
  label[0] = index;
  w->m_lua = vd_metrics_series(w->metrics, VD_M_LUA_MEMORY, label);
  vd_metrics_series_set(w->m_lua,
                        (int64_t)vd_engine_sandbox(w->engine)->used);
  vd_engine_set_metrics(w->engine, w->metrics);
}

static void worker_main(void *arg) {
  vd_worker_t *w = arg;
  char *err = NULL;
  metrics_start(w);
  if (vd_history_reader_open(&w->reader, w->daemon->opts.db, &err) == 0)
    vd_engine_set_facts(w->engine, answer_fact, w);
  else
    vd_log(VD_LEVEL_ERR, "history_facts_unavailable",
           "worker %u: no history "
           "facts for policies: %s",
           w->index, err ? err : "?");
  free(err);
  if (w->daemon->watchdog.started) {
    w->watch = vd_watchdog_attach(&w->daemon->watchdog, (int)w->index);
    vd_engine_set_watch(w->engine, w->watch);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  vd_engine_set_watch(w->engine, NULL);
  vd_watchdog_detach(w->watch);
  w->watch = NULL;
  vd_history_reader_close(w->reader);
  w->reader = NULL;
  vd_history_finder_close(w->finder);
  w->finder = NULL;
}

/* ------------------------------------------------------------------------
 * Start and stop (main thread)
 * ------------------------------------------------------------------------ */

/* What a worker's buffers and personal-data keys hold, for a start that
 * failed half-way and for the release after the loop ended. */
static void release_buffers(vd_worker_t *w) {
  vd_buf_release(&w->scratch);
  vd_buf_release(&w->idem_scoped);
  vd_buf_release(&w->openapi);
  vd_buf_release(&w->pseudo_req);
  vd_buf_release(&w->pseudo_facts);
  vd_personal_free(w->personal, w->npersonal);
  w->personal = NULL;
  w->npersonal = 0;
  vd_buf_release(&w->tlsplain);
}

int vd_worker_start(vd_worker_t *w, vd_daemon_t *d, unsigned index,
                    vd_engine_t *engine) {
  int rc;
  w->daemon = d;
  w->index = index;
  w->engine = engine;
  read_personal(w);
  if (d->metrics && vd_metrics_shard_new(d->metrics, &w->metrics) != 0)
    w->metrics = NULL; /* this worker goes uncounted */
  vd_uuidgen_init(&w->uuid);
  vd_decision_init(&w->dec);
  vd_buf_init(&w->scratch);
  vd_buf_init(&w->idem_scoped);
  vd_buf_init(&w->openapi);
  vd_buf_init(&w->tlsplain);
  vd_buf_init(&w->pseudo_req);
  vd_buf_init(&w->pseudo_facts);
  rc = uv_loop_init(&w->loop);
  if (rc)
    goto out_buffers;
  rc = uv_mutex_init(&w->lock);
  if (rc)
    goto out_loop;
  rc = uv_async_init(&w->loop, &w->wake, on_wake);
  if (rc)
    goto out_mutex;
  w->wake.data = w;
  uv_timer_init(&w->loop, &w->recheck);
  w->recheck.data = w;
  uv_timer_init(&w->loop, &w->http_sweep);
  w->http_sweep.data = w;
  rc = uv_thread_create(&w->thread, worker_main, w);
  if (rc)
    goto out_wake;
  w->started = 1;
  return 0;

out_wake:
  uv_close((uv_handle_t *)&w->wake, NULL);
  uv_close((uv_handle_t *)&w->recheck, NULL);
  uv_close((uv_handle_t *)&w->http_sweep, NULL);
  uv_run(&w->loop, UV_RUN_NOWAIT);
out_mutex:
  uv_mutex_destroy(&w->lock);
out_loop:
  uv_loop_close(&w->loop);
out_buffers:
  release_buffers(w);
  vd_decision_release(&w->dec);
  vd_engine_free(w->engine);
  w->engine = NULL;
  return rc;
}

int vd_worker_join(vd_worker_t *w) {
  if (w->started)
    uv_thread_join(&w->thread);
  return 0;
}

int vd_worker_join_until(vd_worker_t *w, int64_t deadline_ms) {
  struct timespec ts;
  if (!w->started)
    return 0;
  ts.tv_sec = (time_t)(deadline_ms / 1000);
  ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
  return pthread_timedjoin_np(w->thread, NULL, &ts) == 0 ? 0 : VD_EINTERNAL;
}

void vd_worker_release(vd_worker_t *w) {
  size_t i;
  if (!w->started)
    return;
  /* the close callbacks of what the loop's last pass closed */
  uv_run(&w->loop, UV_RUN_NOWAIT);
  uv_loop_close(&w->loop);
  for (i = 0; i < w->nqueue; i++) /* handed over after the last wake */
    close(w->queue[i].fd);
  free(w->queue);
  w->queue = NULL;
  w->nqueue = w->capqueue = 0;
  free(w->fds);
  w->fds = NULL;
  w->nfds = w->capfds = 0;
  uv_mutex_destroy(&w->lock);
  /* records still uncommitted when the loop ended (async mode): the
   * history commits them as it closes; what they held is no longer ours */
  while (w->uns_head) {
    vd_unsynced_t *u = w->uns_head;
    w->uns_head = u->next;
    u->conn->queued -= u->bytes;
    conn_unref(u->conn);
    free(u);
  }
  w->uns_tail = NULL;
  vd_engine_free(w->next_engine);
  vd_engine_free(w->engine);
  w->next_engine = w->engine = NULL;
  vd_decision_release(&w->dec);
  release_buffers(w);
  w->started = 0;
}

/* ------------------------------------------------------------------------
 * From other threads
 * ------------------------------------------------------------------------ */

void vd_worker_handoff(vd_worker_t *w, const vd_handoff_t *h) {
  uv_mutex_lock(&w->lock);
  if (w->nqueue == w->capqueue) {
    size_t cap = w->capqueue ? w->capqueue * 2 : 64;
    vd_handoff_t *q = realloc(w->queue, cap * sizeof *q);
    if (!q) {
      uv_mutex_unlock(&w->lock);
      close(h->fd);
      return;
    }
    w->queue = q;
    w->capqueue = cap;
  }
  w->queue[w->nqueue++] = *h;
  uv_mutex_unlock(&w->lock);
  uv_async_send(&w->wake);
}

void vd_worker_request_stop(vd_worker_t *w) {
  uv_mutex_lock(&w->lock);
  w->stop = 1;
  uv_mutex_unlock(&w->lock);
  uv_async_send(&w->wake);
}

void vd_worker_notify(vd_worker_t *w) { uv_async_send(&w->wake); }

void vd_worker_offer_engine(vd_worker_t *w, vd_engine_t *e) {
  vd_engine_t *old;
  uv_mutex_lock(&w->lock);
  old = w->next_engine;
  w->next_engine = e;
  uv_mutex_unlock(&w->lock);
  vd_engine_free(old); /* never used: a newer one superseded it */
  uv_async_send(&w->wake);
}

/* Main thread: a decision of W's has run past --decide-timeout.  Its
 * thread cannot be stopped, so the worker is given up: flagged (should
 * the decision return, the thread parks: park()), every connection it
 * adopted gets a last error line (as an HTTP 503 response on HTTP; none
 * under TLS, whose records the stuck thread owns; best effort,
 * non-blocking) and is shut
 * down (the descriptor stays W's: closing it here would let the number be
 * reused under the stuck thread), and the connections handed to it but
 * not adopted yet are moved to *queue (the caller hands them on).
 * Returns how many connections were shut down. */
unsigned vd_worker_abandon(vd_worker_t *w, vd_handoff_t **queue, size_t *n) {
  static const char line[] =
      "{\"error\":{\"code\":\"internal\",\"message\":\"the worker "
      "serving this connection is stuck in a decision that ran past "
      "--decide-timeout, so the connection is closed; a request on it that "
      "got no answer may still have been recorded: look its id up in the "
      "history before sending it again on a new connection\"}}\n";
  vd_buf_t http = VD_BUF_INIT;
  size_t i;
  unsigned shut = 0;
  /* an HTTP client gets the line as a 503 response */
  vd_http_write(&http, 503, "application/json", NULL, line, sizeof line - 1,
                0);
  atomic_store(&w->abandoned, 1);
  uv_mutex_lock(&w->lock);
  for (i = 0; i < w->nfds; i++) {
    int fd = w->fds[i].fd;
    ssize_t r = 0;
    if (w->fds[i].framing == VD_FRAMING_LINE)
      r = send(fd, line, sizeof line - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    else if (w->fds[i].framing == VD_FRAMING_HTTP)
      r = send(fd, http.data, http.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)r; /* a full socket buffer: the shutdown alone tells it */
    if (shutdown(fd, SHUT_RDWR) == 0 || errno != EBADF)
      shut++;
  }
  vd_buf_release(&http);
  *queue = w->queue;
  *n = w->nqueue;
  w->queue = NULL;
  w->nqueue = w->capqueue = 0;
  uv_mutex_unlock(&w->lock);
  return shut;
}
