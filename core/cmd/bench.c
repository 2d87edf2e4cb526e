/*
 * bench.c - `verdict bench`: a load generator for verdictd's protocol.
 *
 *   verdict bench [--socket PATH | --connect HOST:PORT] [--connections N]
 *                 [--pipeline P] [--duration S | --requests COUNT]
 *                 [--warmup S] [--rate R] [--file REQUESTS.ndjson]
 *                 [--format text|json]
 *
 * N connections on one libuv loop.  Closed loop (the default): each
 * connection keeps P requests in flight; it sends P lines, and one more for
 * every response.  Open loop (--rate R): requests are due at a fixed rate
 * of R per second whatever the daemon does; each due request goes to the
 * next connection with fewer than P in flight (P defaults to 1 there, so
 * nothing is pipelined), and requests that find every connection busy wait
 * in a backlog, which shows as an achieved rate below R (time spent in
 * the backlog is not latency: it is the client falling behind, reported as
 * that).  A timerfd ticks the pacer every 1/R s, but not more often than
 * every 50 us nor less often than every 1 ms.
 *
 * Request lines come from --file, one JSON request per line, cycled, and
 * are sent byte for byte as written (responses arrive in request order per
 * connection, so no id is needed to match them).  Without --file, the
 * national compensation request of examples/compensation.json is used.
 *
 * Latency is measured per request from the moment its line is handed to
 * the socket to the moment its response line is read, with the monotonic
 * clock (uv_hrtime), and recorded in a log-linear histogram (below) that
 * keeps every value to within 0.2%.  Responses that carry "error":{ are
 * counted as errors.  Requests still in flight when the measurement ends
 * are not counted.
 *
 * Exit status: 0 done, 1 a connection was lost during the run, 2 usage,
 * 3 a connection could not be made.
 *
 * Runs on the CLI's main thread: one loop, no other threads.
 */
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <uv.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/uvstream.h"
#include "verdict/wire.h"


#define BENCH_MAX_LINE (64u << 20) /* longest response line we accept */
#define BENCH_READ_BUF 65536       /* the loop's one read buffer */
#define BENCH_STALL_NS (10 * 1000000000ull) /* no response for this: give up */

/* The request used when no --file is given: examples/compensation.json,
 * national, at a fixed time (so every decision is the same work). */
static const char default_request[] =
    "{\"kind\":\"compensation\",\"region\":\"national\","
    "\"at\":\"2026-11-23T10:00:00+08:00\",\"input\":{"
    "\"complaint_id\":\"C-2026-110002\",\"category\":\"billing\","
    "\"customer_grade\":\"retail\",\"cause\":\"carrier\","
    "\"charged_fen\":12800,\"due_fen\":8800,\"claimed_fen\":50000}}\n";

/* ------------------------------------------------------------------------
 * Latency histogram
 *
 * Log-linear, in the manner of HdrHistogram: values below 1024 ns have a
 * slot each; above, every power of two [2^k, 2^(k+1)) is cut into 512
 * slots of equal width, so a slot is never wider than 1/512 of the values
 * it holds.  Slot of v >= 1024: with k the index of v's top bit and
 * shift = k - 9, slot = shift * 512 + (v >> shift), where v >> shift lies
 * in [512, 1024).  Values past 2^40 ns (18 minutes) go in the last slot.
 * ------------------------------------------------------------------------ */

#define HIST_SUB 512
#define HIST_MAX_SHIFT 31 /* top bit 40 */
#define HIST_SLOTS ((HIST_MAX_SHIFT + 1) * HIST_SUB + HIST_SUB)

typedef struct bench_hist {
  uint64_t counts[HIST_SLOTS];
  uint64_t n;   /* values recorded */
  uint64_t max; /* exact largest value */
  double sum;   /* for the mean */
} bench_hist_t;

static size_t hist_slot(uint64_t v) {
  unsigned k, shift;
  if (v < 2 * HIST_SUB)
    return (size_t)v;
  k = 63u - (unsigned)__builtin_clzll(v);
  shift = k - 9u;
  if (shift > HIST_MAX_SHIFT)
    return HIST_SLOTS - 1;
  return (size_t)shift * HIST_SUB + (size_t)(v >> shift);
}

/* The largest value slot i holds. */
static uint64_t hist_slot_top(size_t i) {
  uint64_t shift, sub;
  if (i < 2 * HIST_SUB)
    return i;
  shift = i / HIST_SUB - 1;
  sub = i - shift * HIST_SUB;
  return ((sub + 1) << shift) - 1;
}

static void hist_record(bench_hist_t *h, uint64_t v) {
  h->counts[hist_slot(v)]++;
  h->n++;
  h->sum += (double)v;
  if (v > h->max)
    h->max = v;
}

/* The value at quantile q (0..1): the smallest recorded value's slot top
 * such that at least q of the values are at or below it; never above max. */
static uint64_t hist_quantile(const bench_hist_t *h, double q) {
  uint64_t want, seen = 0;
  size_t i;
  if (h->n == 0)
    return 0;
  want = (uint64_t)ceil(q * (double)h->n);
  if (want < 1)
    want = 1;
  for (i = 0; i < HIST_SLOTS; i++) {
    seen += h->counts[i];
    if (seen >= want) {
      uint64_t top = hist_slot_top(i);
      return top < h->max ? top : h->max;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------ */

typedef struct bench bench_t;

typedef struct bench_conn {
  vd_uv_stream_t h;
  uv_connect_t connect_req;
  bench_t *b;
  vd_framer_t framer;
  uint64_t *sent_at;  /* FIFO ring of send times of requests in flight */
  size_t ring_cap;    /* a power of two */
  size_t ring_head;   /* oldest entry */
  size_t inflight;    /* entries in the ring */
  size_t next_req;    /* index of the next request line to send */
  int connected;
  int closing;
} bench_conn_t;

typedef enum { PHASE_CONNECT, PHASE_WARMUP, PHASE_MEASURE, PHASE_DONE } phase_t;

struct bench {
  /* options */
  const char *socket_path, *hostport, *file, *format;
  unsigned connections, pipeline;
  double duration_s, warmup_s, rate;
  uint64_t requests;  /* --requests; 0: run for --duration */

  /* requests */
  vd_buf_t file_text;
  uv_buf_t *lines;    /* points into file_text (or default_request) */
  size_t nlines;

  uv_loop_t loop;
  bench_conn_t *conns;
  struct sockaddr_storage addr; /* resolved --connect address */
  char read_buf[BENCH_READ_BUF];
  uv_timer_t phase_timer;  /* warmup end, then measurement end */
  uv_timer_t watch_timer;  /* stall watchdog */
  uv_poll_t pace_poll;     /* --rate: a timerfd that ticks the pacer */
  int pace_fd;
  int timers_open;

  phase_t phase;
  unsigned attempted, connect_done, connect_failed, lost;
  unsigned live;           /* connections connected and not yet closed */
  char first_connect_error[256];
  uint64_t t_measure_start, t_measure_end, t_last_progress;
  uint64_t t_rate_start, scheduled, backlog;
  size_t rr;               /* round-robin position for --rate */
  uint64_t sent_measured;  /* requests sent since the measurement began */
  uint64_t completed, errors;
  uint64_t inflight_total;
  int stop_sending;
  bench_hist_t hist;
};

/* ------------------------------------------------------------------------
 * Options and the request file
 * ------------------------------------------------------------------------ */

static void bench_usage(FILE *f) {
  fputs("usage: verdict bench [--socket PATH | --connect HOST:PORT]\n"
        "                     [--connections N] [--pipeline P]\n"
        "                     [--duration SECONDS | --requests COUNT]\n"
        "                     [--warmup SECONDS] [--rate R]\n"
        "                     [--file REQUESTS.ndjson] [--format text|json]\n"
        "\n"
        "  --socket PATH      the daemon's Unix socket (default "
        VD_DEFAULT_SOCKET ")\n"
        "  --connect H:P      a TCP address instead\n"
        "  --connections N    connections, default 50\n"
        "  --pipeline P       requests in flight per connection, default 1\n"
        "  --duration S       measure for S seconds (default 10)\n"
        "  --requests COUNT   or until COUNT requests are answered\n"
        "  --warmup S         run S seconds before measuring (default 0)\n"
        "  --rate R           open loop: send R requests per second\n"
        "                     (at most P in flight per connection)\n"
        "  --file F           request lines, one JSON request per line, "
        "cycled\n"
        "                     (default: the national compensation example)\n"
        "  --format text|json the report's format (default text)\n",
        f);
}

static int bad_option(const char *msg, const char *arg) {
  fprintf(stderr, "verdict bench: %s%s%s\n", msg, arg ? ": " : "",
          arg ? arg : "");
  fputs("(verdict bench --help for the options)\n", stderr);
  return 2;
}

static int parse_uint(const char *s, unsigned long long max,
                      unsigned long long *out) {
  char *end;
  unsigned long long v;
  if (!s || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_seconds(const char *s, double *out) {
  char *end;
  double v;
  if (!s || !*s)
    return -1;
  errno = 0;
  v = strtod(s, &end);
  if (errno || *end || !(v >= 0) || v > 86400.0 * 365)
    return -1;
  *out = v;
  return 0;
}

static int is_option(const char *a) {
  static const char *const known[] = {
      "--socket",   "--connect", "--connections", "--pipeline", "--duration",
      "--requests", "--warmup",  "--rate",        "--file",     "--format"};
  size_t i;
  for (i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(a, known[i]) == 0)
      return 1;
  return 0;
}

static int parse_args(bench_t *b, int argc, char **argv) {
  int i, have_duration = 0;
  unsigned long long u;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      bench_usage(stdout);
      return 1;
    }
    if (a[0] != '-')
      return bad_option("unexpected argument", a);
    if (!is_option(a))
      return bad_option("unknown option", a);
    if (!v)
      return bad_option("option needs a value", a);
    if (strcmp(a, "--socket") == 0) {
      b->socket_path = v;
    } else if (strcmp(a, "--connect") == 0) {
      b->hostport = v;
    } else if (strcmp(a, "--connections") == 0) {
      if (parse_uint(v, 100000, &u) || u == 0)
        return bad_option("--connections takes a count from 1 to 100000, not",
                          v);
      b->connections = (unsigned)u;
    } else if (strcmp(a, "--pipeline") == 0) {
      if (parse_uint(v, 65536, &u) || u == 0)
        return bad_option("--pipeline takes a depth from 1 to 65536, not", v);
      b->pipeline = (unsigned)u;
    } else if (strcmp(a, "--duration") == 0) {
      if (parse_seconds(v, &b->duration_s) || b->duration_s <= 0)
        return bad_option("--duration takes a positive number of seconds, not",
                          v);
      have_duration = 1;
    } else if (strcmp(a, "--requests") == 0) {
      if (parse_uint(v, UINT64_MAX / 2, &u) || u == 0)
        return bad_option("--requests takes a positive count, not", v);
      b->requests = u;
    } else if (strcmp(a, "--warmup") == 0) {
      if (parse_seconds(v, &b->warmup_s))
        return bad_option("--warmup takes a number of seconds, not", v);
    } else if (strcmp(a, "--rate") == 0) {
      char *end;
      errno = 0;
      b->rate = strtod(v, &end);
      if (errno || *end || !(b->rate > 0) || b->rate > 1e8)
        return bad_option("--rate takes requests per second (above 0), not",
                          v);
    } else if (strcmp(a, "--file") == 0) {
      b->file = v;
    } else if (strcmp(a, "--format") == 0) {
      if (strcmp(v, "text") && strcmp(v, "json"))
        return bad_option("--format takes text or json, not", v);
      b->format = v;
    }
    i++;
  }
  if (have_duration && b->requests)
    return bad_option("give --duration or --requests, not both", NULL);
  if (b->socket_path && b->hostport)
    return bad_option("give --socket or --connect, not both", NULL);
  if (!b->socket_path && !b->hostport)
    b->socket_path = VD_DEFAULT_SOCKET;
  return 0;
}

/* Read the request file into b->lines: one request per non-blank line,
 * each an object on its own line.  Returns 0 or 2 (usage) with a message. */
static int load_requests(bench_t *b) {
  FILE *f;
  char chunk[65536];
  size_t n, i, start, lineno = 0;
  if (!b->file) {
    b->lines = malloc(sizeof *b->lines);
    if (!b->lines)
      return 2;
    b->lines[0] = uv_buf_init((char *)default_request,
                              (unsigned)(sizeof default_request - 1));
    b->nlines = 1;
    return 0;
  }
  f = fopen(b->file, "rb");
  if (!f) {
    fprintf(stderr, "verdict bench: %s: %s\n", b->file, strerror(errno));
    return 2;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    vd_buf_add(&b->file_text, chunk, n);
  fclose(f);
  n = 0;
  /* Count lines, then point at each; each keeps its '\n' (added to the last
   * one if missing) so that a line and its newline go out as one buffer. */
  if (b->file_text.len && b->file_text.data[b->file_text.len - 1] != '\n')
    vd_buf_addc(&b->file_text, '\n');
  for (i = 0; i < b->file_text.len; i++)
    if (b->file_text.data[i] == '\n')
      n++;
  b->lines = malloc((n + 1) * sizeof *b->lines);
  if (!b->lines)
    return 2;
  for (start = 0, i = 0; i < b->file_text.len; i++) {
    char *s = b->file_text.data + start, *e = b->file_text.data + i;
    if (b->file_text.data[i] != '\n')
      continue;
    lineno++;
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      e--;
    if (e > s) {
      if (*s != '{' || e[-1] != '}') {
        fprintf(stderr,
                "verdict bench: %s:%zu: expected one JSON request object per "
                "line\n",
                b->file, lineno);
        return 2;
      }
      /* send from the first byte of the object through the '\n' */
      b->lines[b->nlines++] =
          uv_buf_init(s, (unsigned)(b->file_text.data + i + 1 - s));
    }
    start = i + 1;
  }
  if (b->nlines == 0) {
    fprintf(stderr, "verdict bench: %s: no requests in the file\n", b->file);
    return 2;
  }
  return 0;
}

/* Resolve --connect HOST:PORT once for every connection. */
static int resolve(bench_t *b) {
  char host[256];
  const char *port;
  struct addrinfo hints, *res;
  int rc;
  if (vd_hostport_split(b->hostport, host, sizeof host, &port) != 0) {
    fprintf(stderr, "verdict bench: --connect %s: expected HOST:PORT\n",
            b->hostport);
    return 2;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(host, port, &hints, &res);
  if (rc) {
    fprintf(stderr, "verdict bench: cannot resolve %s: %s\n", b->hostport,
            gai_strerror(rc));
    return 3;
  }
  memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

/* ------------------------------------------------------------------------
 * Sending and receiving
 * ------------------------------------------------------------------------ */

static void bench_finish(bench_t *b);

/* The load generator has no partial state worth keeping without memory. */
static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fputs("verdict bench: out of memory\n", stderr);
    abort();
  }
  return p;
}

static void ring_push(bench_conn_t *c, uint64_t t) {
  if (c->inflight == c->ring_cap) {
    size_t cap = c->ring_cap ? c->ring_cap * 2 : 16, i;
    uint64_t *r = xmalloc(cap * sizeof *r);
    for (i = 0; i < c->inflight; i++)
      r[i] = c->sent_at[(c->ring_head + i) & (c->ring_cap - 1)];
    free(c->sent_at);
    c->sent_at = r;
    c->ring_cap = cap;
    c->ring_head = 0;
  }
  c->sent_at[(c->ring_head + c->inflight) & (c->ring_cap - 1)] = t;
  c->inflight++;
}

static uint64_t ring_pop(bench_conn_t *c) {
  uint64_t t = c->sent_at[c->ring_head];
  c->ring_head = (c->ring_head + 1) & (c->ring_cap - 1);
  c->inflight--;
  return t;
}

static void on_write(uv_write_t *req, int status) {
  (void)status; /* a failed write shows up as a failed read */
  free(req);
}

/* How many more requests may be sent (--requests caps the total). */
static uint64_t send_allowance(bench_t *b, uint64_t want) {
  if (b->stop_sending)
    return 0;
  if (b->requests && b->phase == PHASE_MEASURE) {
    uint64_t left = b->requests - b->sent_measured;
    if (want > left)
      want = left;
  }
  return want;
}

/* Send the next `count` request lines on c, stamped now.  The lines are
 * first offered to uv_try_write(): a write that completes at once needs no
 * request and, unlike uv_write(), does not re-arm the descriptor in epoll
 * (one epoll_ctl per write), which on two shared cores is CPU taken from
 * the daemon.  Whatever the socket did not take goes through uv_write(). */
static void conn_send(bench_conn_t *c, size_t count) {
  bench_t *b = c->b;
  uv_buf_t small[16], *bufs = small, *rest;
  size_t i, nrest;
  uint64_t now;
  int n;
  count = (size_t)send_allowance(b, count);
  if (count == 0 || c->closing)
    return;
  if (count > sizeof small / sizeof small[0])
    bufs = xmalloc(count * sizeof *bufs);
  for (i = 0; i < count; i++) {
    bufs[i] = b->lines[c->next_req];
    if (++c->next_req == b->nlines)
      c->next_req = 0;
  }
  now = uv_hrtime();
  n = uv_try_write(&c->h.stream, bufs, (unsigned)count);
  if (n < 0 && n != UV_EAGAIN)
    goto out; /* the read side reports the broken connection */
  /* Skip what was written; the lines themselves are never modified (they
   * are shared by every connection), only our copies of their uv_buf_t. */
  rest = bufs;
  nrest = count;
  if (n > 0) {
    size_t done = (size_t)n;
    while (nrest > 0 && done >= rest->len) {
      done -= rest->len;
      rest++;
      nrest--;
    }
    if (nrest > 0) {
      rest->base += done;
      rest->len -= done;
    }
  }
  if (nrest > 0) {
    uv_write_t *w = xmalloc(sizeof *w);
    if (uv_write(w, &c->h.stream, rest, (unsigned)nrest, on_write) < 0) {
      free(w);
      goto out;
    }
  }
  for (i = 0; i < count; i++)
    ring_push(c, now);
  b->inflight_total += count;
  if (b->phase == PHASE_MEASURE)
    b->sent_measured += count;
  if (b->requests && b->phase == PHASE_MEASURE &&
      b->sent_measured >= b->requests)
    b->stop_sending = 1;
out:
  if (bufs != small)
    free(bufs);
}

/* --rate: give due requests to connections with room, round robin. */
static void dispatch_backlog(bench_t *b) {
  unsigned tried = 0;
  while (b->backlog > 0 && tried < b->connections && !b->stop_sending) {
    bench_conn_t *c = &b->conns[b->rr];
    if (++b->rr == b->connections)
      b->rr = 0;
    if (c->connected && !c->closing && c->inflight < b->pipeline) {
      conn_send(c, 1);
      b->backlog--;
      tried = 0;
    } else {
      tried++;
    }
  }
}

static void on_pace(uv_poll_t *p, int status, int events) {
  bench_t *b = p->data;
  uint64_t expirations, due;
  double elapsed;
  if (read(b->pace_fd, &expirations, sizeof expirations) < 0 &&
      errno != EAGAIN)
    return;
  if (b->stop_sending)
    return;
  elapsed = (double)(uv_hrtime() - b->t_rate_start) / 1e9;
  due = (uint64_t)(elapsed * b->rate);
  if (due > b->scheduled) {
    b->backlog += due - b->scheduled;
    b->scheduled = due;
  }
  dispatch_backlog(b);
}

static void conn_close_cb(uv_handle_t *h) {
  bench_conn_t *c = (bench_conn_t *)h;
  vd_framer_release(&c->framer);
  free(c->sent_at);
  c->sent_at = NULL;
}

static void conn_close(bench_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  if (c->connected)
    c->b->live--;
  c->b->inflight_total -= c->inflight;
  c->inflight = 0;
  uv_close(&c->h.handle, conn_close_cb);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  bench_conn_t *c = (bench_conn_t *)h;
  buf->base = c->b->read_buf;
  buf->len = sizeof c->b->read_buf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  bench_conn_t *c = (bench_conn_t *)s;
  bench_t *b = c->b;
  const char *line;
  size_t len, replies = 0;
  uint64_t now;
  int rc;
  if (nread < 0) {
    if (b->phase != PHASE_DONE && !b->lost++) /* say it once */
      fprintf(stderr, "verdict bench: connection lost: %s\n",
              nread == UV_EOF ? "closed by the daemon"
                              : uv_strerror((int)nread));
    conn_close(c);
    if (b->live == 0)
      bench_finish(b);
    return;
  }
  if (nread == 0)
    return;
  vd_framer_feed(&c->framer, buf->base, (size_t)nread);
  now = uv_hrtime();
  while ((rc = vd_framer_next(&c->framer, &line, &len)) == 1) {
    uint64_t sent;
    if (c->inflight == 0) {
      fprintf(stderr, "verdict bench: a response nobody asked for: %.*s\n",
              (int)(len > 200 ? 200 : len), line);
      continue;
    }
    sent = ring_pop(c);
    b->inflight_total--;
    replies++;
    if (b->phase == PHASE_MEASURE) {
      hist_record(&b->hist, now - sent);
      b->completed++;
      if (memmem(line, len, "\"error\":{", 9))
        b->errors++;
    }
  }
  if (rc < 0) {
    b->lost++;
    fprintf(stderr, "verdict bench: a response line passed %u bytes\n",
            BENCH_MAX_LINE);
    conn_close(c);
    if (b->live == 0)
      bench_finish(b);
    return;
  }
  if (replies)
    b->t_last_progress = now;
  if (b->rate > 0)
    dispatch_backlog(b);
  else if (replies)
    conn_send(c, replies);
  if (b->stop_sending && b->inflight_total == 0 && b->phase != PHASE_DONE) {
    b->t_measure_end = now;
    bench_finish(b);
  }
}

/* ------------------------------------------------------------------------
 * Phases: connect, warm up, measure, done
 * ------------------------------------------------------------------------ */

/* Stop everything; the loop ends when the last handle has closed. */
static void bench_finish(bench_t *b) {
  unsigned i;
  if (b->phase == PHASE_DONE)
    return;
  if (b->phase == PHASE_MEASURE && !b->t_measure_end)
    b->t_measure_end = uv_hrtime();
  b->phase = PHASE_DONE;
  b->stop_sending = 1;
  for (i = 0; i < b->attempted; i++)
    conn_close(&b->conns[i]);
  if (b->timers_open) {
    b->timers_open = 0;
    uv_close((uv_handle_t *)&b->phase_timer, NULL);
    uv_close((uv_handle_t *)&b->watch_timer, NULL);
    if (b->pace_fd >= 0)
      uv_close((uv_handle_t *)&b->pace_poll, NULL);
  }
}

static void on_phase_timer(uv_timer_t *t) {
  bench_t *b = t->data;
  if (b->phase == PHASE_WARMUP) {
    memset(&b->hist, 0, sizeof b->hist);
    b->completed = b->errors = b->sent_measured = 0;
    b->phase = PHASE_MEASURE;
    b->t_measure_start = uv_hrtime();
    if (!b->requests)
      uv_timer_start(&b->phase_timer, on_phase_timer,
                     (uint64_t)(b->duration_s * 1000.0 + 0.5), 0);
  } else if (b->phase == PHASE_MEASURE) {
    bench_finish(b);
  }
}

static void on_watch_timer(uv_timer_t *t) {
  bench_t *b = t->data;
  uint64_t now = uv_hrtime();
  if (b->inflight_total > 0 && now - b->t_last_progress > BENCH_STALL_NS) {
    fprintf(stderr,
            "verdict bench: no response for %llu s with %llu requests in "
            "flight; giving up\n",
            (unsigned long long)(BENCH_STALL_NS / 1000000000ull),
            (unsigned long long)b->inflight_total);
    b->lost++;
    bench_finish(b);
  }
}

static int start_pacer(bench_t *b) {
  struct itimerspec its;
  double period_ns = 1e9 / b->rate;
  uint64_t p;
  /* Tick at the request interval, but not more often than every 50 us nor
   * less often than every 1 ms: a few requests per tick at high rates. */
  if (period_ns < 50000)
    period_ns = 50000;
  if (period_ns > 1000000)
    period_ns = 1000000;
  p = (uint64_t)period_ns;
  b->pace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (b->pace_fd < 0) {
    fprintf(stderr, "verdict bench: timerfd: %s\n", strerror(errno));
    return -1;
  }
  memset(&its, 0, sizeof its);
  its.it_interval.tv_sec = (time_t)(p / 1000000000u);
  its.it_interval.tv_nsec = (long)(p % 1000000000u);
  its.it_value = its.it_interval;
  if (timerfd_settime(b->pace_fd, 0, &its, NULL) < 0 ||
      uv_poll_init(&b->loop, &b->pace_poll, b->pace_fd) < 0) {
    fprintf(stderr, "verdict bench: timerfd: %s\n", strerror(errno));
    close(b->pace_fd);
    b->pace_fd = -1;
    return -1;
  }
  b->pace_poll.data = b;
  b->t_rate_start = uv_hrtime();
  uv_poll_start(&b->pace_poll, UV_READABLE, on_pace);
  return 0;
}

/* Every connection has connected or failed: start the load. */
static void bench_start(bench_t *b) {
  unsigned i;
  b->t_last_progress = uv_hrtime();
  if (b->connect_failed) {
    bench_finish(b);
    return;
  }
  b->phase = b->warmup_s > 0 ? PHASE_WARMUP : PHASE_MEASURE;
  b->t_measure_start = uv_hrtime();
  uv_timer_start(&b->watch_timer, on_watch_timer, 1000, 1000);
  if (b->phase == PHASE_WARMUP)
    uv_timer_start(&b->phase_timer, on_phase_timer,
                   (uint64_t)(b->warmup_s * 1000.0 + 0.5), 0);
  else if (!b->requests)
    uv_timer_start(&b->phase_timer, on_phase_timer,
                   (uint64_t)(b->duration_s * 1000.0 + 0.5), 0);
  if (b->rate > 0) {
    if (start_pacer(b) < 0) {
      b->lost++;
      bench_finish(b);
    }
    return;
  }
  for (i = 0; i < b->connections; i++)
    conn_send(&b->conns[i], b->pipeline);
}

static void on_connect(uv_connect_t *req, int status) {
  bench_conn_t *c = req->data;
  bench_t *b = c->b;
  b->connect_done++;
  if (status < 0) {
    if (!b->connect_failed++)
      snprintf(b->first_connect_error, sizeof b->first_connect_error, "%s",
               uv_strerror(status));
    conn_close(c);
  } else if (b->phase != PHASE_DONE) {
    c->connected = 1;
    b->live++;
    if (b->hostport)
      uv_tcp_nodelay(&c->h.tcp, 1);
    uv_read_start(&c->h.stream, on_alloc, on_read);
  }
  if (b->connect_done == b->connections && b->phase == PHASE_CONNECT)
    bench_start(b);
}

static int conn_open(bench_t *b, bench_conn_t *c) {
  int rc;
  c->b = b;
  vd_framer_init(&c->framer, BENCH_MAX_LINE);
  c->connect_req.data = c;
  c->next_req = (size_t)(c - b->conns) % b->nlines;
  if (b->hostport) {
    rc = uv_tcp_init(&b->loop, &c->h.tcp);
    if (rc == 0) {
      rc = uv_tcp_connect(&c->connect_req, &c->h.tcp,
                          (const struct sockaddr *)&b->addr, on_connect);
    }
  } else {
    rc = uv_pipe_init(&b->loop, &c->h.pipe, 0);
    if (rc == 0) {
      uv_pipe_connect(&c->connect_req, &c->h.pipe, b->socket_path, on_connect);
    }
  }
  return rc;
}

/* ------------------------------------------------------------------------
 * Report
 * ------------------------------------------------------------------------ */

static void report(bench_t *b) {
  double secs = b->t_measure_end > b->t_measure_start
                    ? (double)(b->t_measure_end - b->t_measure_start) / 1e9
                    : 0;
  double dps = secs > 0 ? (double)b->completed / secs : 0;
  double p50 = (double)hist_quantile(&b->hist, 0.50) / 1e3;
  double p90 = (double)hist_quantile(&b->hist, 0.90) / 1e3;
  double p99 = (double)hist_quantile(&b->hist, 0.99) / 1e3;
  double p999 = (double)hist_quantile(&b->hist, 0.999) / 1e3;
  double max = (double)b->hist.max / 1e3;
  double mean = b->hist.n ? b->hist.sum / (double)b->hist.n / 1e3 : 0;
  const char *target = b->hostport ? b->hostport : b->socket_path;
  if (strcmp(b->format, "json") == 0) {
    vd_buf_t o = VD_BUF_INIT;
    vd_buf_adds(&o, "{\"target\":");
    vd_buf_add_json_str(&o, target, strlen(target));
    vd_buf_addf(&o,
                ",\"transport\":\"%s\",\"connections\":%u,\"pipeline\":%u,"
                "\"rate\":%.1f,\"seconds\":%.3f,\"requests\":%llu,"
                "\"errors\":%llu,\"connect_failures\":%u,"
                "\"lost_connections\":%u,\"decisions_per_s\":%.1f,"
                "\"latency_us\":{\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
                "\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f}}\n",
                b->hostport ? "tcp" : "unix", b->connections, b->pipeline,
                b->rate, secs, (unsigned long long)b->completed,
                (unsigned long long)b->errors, b->connect_failed, b->lost, dps,
                mean, p50, p90, p99, p999, max);
    fputs(o.data, stdout);
    vd_buf_release(&o);
    return;
  }
  printf("verdict bench: %s %s, %u connections, pipeline %u",
         b->hostport ? "tcp" : "unix socket", target, b->connections,
         b->pipeline);
  if (b->rate > 0)
    printf(", open loop at %.0f/s", b->rate);
  printf("\n  measured     %.3f s", secs);
  if (b->warmup_s > 0)
    printf(" after %.3g s warmup", b->warmup_s);
  printf("\n  responses    %llu  (errors %llu)\n",
         (unsigned long long)b->completed, (unsigned long long)b->errors);
  printf("  decisions/s  %.1f\n", dps);
  printf("  latency      p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us"
         "  (mean %.1f us, p90 %.1f us)\n",
         p50, p99, p999, max, mean, p90);
  printf("  connections  %u failed to connect, %u lost\n", b->connect_failed,
         b->lost);
}

/* ------------------------------------------------------------------------
 * Entry
 * ------------------------------------------------------------------------ */

/* Let this process open as many descriptors as its hard limit allows. */
static void raise_fd_limit(unsigned want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want + 64) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want + 64
                      ? (rlim_t)want + 64
                      : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int vd_cli_bench(int argc, char **argv) {
  bench_t *b;
  unsigned i;
  int rc;

  b = calloc(1, sizeof *b); /* the histogram makes it large: not on stack */
  if (!b) {
    fputs("verdict bench: out of memory\n", stderr);
    return 1;
  }
  b->connections = 50;
  b->pipeline = 1;
  b->duration_s = 10;
  b->format = "text";
  b->pace_fd = -1;
  vd_buf_init(&b->file_text);

  rc = parse_args(b, argc, argv);
  if (rc == 1) { /* --help */
    rc = 0;
    goto out_free;
  }
  if (rc)
    goto out_free;
  if ((rc = load_requests(b)) != 0)
    goto out_free;
  if (b->hostport && (rc = resolve(b)) != 0)
    goto out_free;

  raise_fd_limit(b->connections);
  /* A daemon that goes away mid-run is a lost connection, not a SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  b->conns = calloc(b->connections, sizeof *b->conns);
  if (!b->conns || uv_loop_init(&b->loop) != 0) {
    fputs("verdict bench: out of memory\n", stderr);
    rc = 1;
    goto out_free;
  }
  uv_timer_init(&b->loop, &b->phase_timer);
  uv_timer_init(&b->loop, &b->watch_timer);
  b->phase_timer.data = b->watch_timer.data = b;
  b->timers_open = 1;

  b->phase = PHASE_CONNECT;
  for (i = 0; i < b->connections; i++) {
    rc = conn_open(b, &b->conns[i]);
    b->attempted++;
    if (rc < 0) { /* cannot even start: count it as failed to connect */
      b->connect_done++;
      if (!b->connect_failed++)
        snprintf(b->first_connect_error, sizeof b->first_connect_error, "%s",
                 uv_strerror(rc));
      if (b->conns[i].h.handle.loop)
        conn_close(&b->conns[i]);
      else
        vd_framer_release(&b->conns[i].framer);
      b->conns[i].closing = 1;
    }
  }
  if (b->connect_done == b->connections)
    bench_start(b);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  uv_loop_close(&b->loop);
  if (b->pace_fd >= 0)
    close(b->pace_fd); /* its poll handle is closed by now */

  if (b->connect_failed) {
    fprintf(stderr, "verdict bench: %u of %u connections to %s failed: %s\n",
            b->connect_failed, b->connections,
            b->hostport ? b->hostport : b->socket_path,
            b->first_connect_error);
    rc = 3;
    goto out_free;
  }
  report(b);
  rc = b->lost ? 1 : 0;

out_free:
  free(b->conns);
  free(b->lines);
  vd_buf_release(&b->file_text);
  free(b);
  return rc;
}
