/*
 * admin.c - the admin channel and the reload pipeline.
 *
 * Owns d->admin (daemon_int.h): the admin socket (mode 0600) and its
 * connections, the sandbox their requests are decoded in, the queue of
 * reloads, and the --watch directory watchers.  Everything here runs on the
 * main thread's loop, except a reload's validation, which runs on a thread
 * of its own (validate.c), and the `work` half of the ops that read the
 * history database (job_work()), which runs on libuv's thread pool, so
 * that loading, checking and testing a bundle and reading revisions never
 * hold up the main loop, let alone a worker.
 *
 * A reload (SIGHUP, `verdict reload`, a watched change, `verdict activate`)
 * goes: read the bundle (or take it from the history database) -> on the
 * validation thread, validate it exactly as `verdict check` does (every
 * file compiles, every policy loads and is well formed, the bundle's own
 * tests pass) and build one engine per worker -> back on the main thread,
 * store its files in the history database, hand each worker its engine,
 * and record the activation.  A bundle that fails any step is not
 * activated: the previous revision keeps serving and the failure is
 * recorded and shown by `status`.  Reloads run one at a time, in the order
 * asked.  One whose validation has not come back after --validate-timeout
 * is refused as timed out and its thread left behind (validate.c says what
 * that costs and how many may be), so a bundle that hangs in C delays the
 * reloads behind it by the limit, and SIGTERM not at all.
 *
 * Each worker switches between two requests, so every request is decided
 * wholly by one revision, the one its response names.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_int.h"
#include "verdict/policytest.h"
#include "verdict/textdiff.h"
#include "verdict/timefmt.h"
#include "verdict/wire.h"

typedef struct vd_admin_conn {
  uv_pipe_t pipe;
  vd_daemon_t *d;
  struct vd_admin_conn *next, *prev;
  vd_framer_t framer;
  int busy;         /* waiting for a reload: do not read further requests */
  int closing;
  unsigned refs;
  char who[64];
} vd_admin_conn_t;

typedef struct vd_reload {
  struct vd_reload *next;
  vd_daemon_t *d;
  char trigger[16];
  char who[96];
  vd_bundle_t *bundle;          /* NULL: read opts.policies */
  vd_admin_conn_t *reply_to;    /* holds a ref; NULL for signals, watch */
  vd_buf_t reply_id;
  vd_validation_t *v;           /* while it is validated (validate.c) */
  int rc;                       /* why it failed without a validation's */
  vd_buf_t err;                 /* result: cannot start, timed out */
} vd_reload_t;

static void admin_read_start(vd_admin_conn_t *c);
static void start_next_reload(vd_daemon_t *d);
static void on_validation_done(uv_async_t *a);
static void enqueue_reload(vd_daemon_t *d, const char *trigger,
                           const char *who, vd_bundle_t *bundle,
                           vd_admin_conn_t *reply_to, const char *reply_id);

/* ------------------------------------------------------------------------
 * Revisions and activations in the history
 * ------------------------------------------------------------------------ */

static void store_revision(vd_daemon_t *d, vd_bundle_t *b) {
  vd_bundle_file_t *files;
  size_t i, n = vd_bundle_count(b);
  char *err = NULL;
  files = malloc((n ? n : 1) * sizeof *files);
  if (!files)
    return;
  for (i = 0; i < n; i++)
    files[i] = *vd_bundle_file(b, i);
  if (vd_history_store_revision(d->history, vd_bundle_revision(b), files, n,
                                &err) != 0)
    vd_log(VD_LEVEL_ERR, "revision_store_failed",
           "cannot store revision %s: %s", vd_bundle_revision(b),
           err ? err : "?");
  free(err);
  free(files);
}

static int record_activation(vd_daemon_t *d, const char *revision,
                             const char *trigger, const char *who,
                             const char *source, int ok, const char *error) {
  char *err = NULL;
  int rc = vd_history_record_activation(d->history, revision, trigger, who,
                                        source, ok, error, &err);
  if (rc)
    vd_log(VD_LEVEL_ERR, "activation_record_failed",
           "cannot record the activation of %s: %s", revision, err ? err : "?");
  free(err);
  return rc;
}

/* E is an engine of the bundle about to serve.  E NULL: the bundle was
 * refused at start-up, d->last_failure says why; its files are stored all
 * the same (auditors see what was refused, as for a reload) and the
 * activation is recorded as failed.  Non-zero when the activation could
 * not be recorded: the daemon then does not serve (no decision names a
 * revision whose activation the history lacks). */
int vd_admin_startup(vd_daemon_t *d, vd_engine_t *e) {
  const char *rev = vd_bundle_revision(d->bundle);
  store_revision(d, d->bundle);
  if (!e) /* refused: "startup", or what keep_rollback() started with */
    return record_activation(d, rev, d->activated_by, NULL,
                             vd_bundle_source(d->bundle), 0,
                             d->last_failure.data);
  vd_wire_in_force(&d->in_force, e);
  if (d->metrics)
    vd_metrics_set_revision(d->metrics, rev);
  /* an --unchecked start says so, for auditors */
  return record_activation(d, rev,
                           d->opts.unchecked ? "startup-unchecked"
                                             : d->activated_by,
                           NULL, vd_bundle_source(d->bundle), 1, NULL);
}

/* ------------------------------------------------------------------------
 * Admin connections
 * ------------------------------------------------------------------------ */

typedef struct admin_write {
  uv_write_t req;
  vd_admin_conn_t *c;
  char *data;
} admin_write_t;

static void admin_unref(vd_admin_conn_t *c) {
  if (--c->refs)
    return;
  vd_framer_release(&c->framer);
  free(c);
}

static void on_admin_closed(uv_handle_t *h) {
  vd_admin_conn_t *c = h->data;
  if (c->prev)
    c->prev->next = c->next;
  else
    c->d->admin.conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  admin_unref(c);
}

static void admin_close(vd_admin_conn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->pipe, on_admin_closed);
}

static void on_admin_written(uv_write_t *req, int status) {
  admin_write_t *w = (admin_write_t *)req;
  if (status < 0)
    admin_close(w->c);
  admin_unref(w->c);
  free(w->data);
  free(w);
}

/* Send line (ownership of the buffer's contents passes to the write). */
static void admin_send(vd_admin_conn_t *c, vd_buf_t *line) {
  admin_write_t *w;
  uv_buf_t b;
  size_t len;
  if (c->closing) {
    vd_buf_release(line);
    return;
  }
  w = malloc(sizeof *w);
  if (!w) {
    vd_buf_release(line);
    admin_close(c);
    return;
  }
  w->c = c;
  w->data = vd_buf_detach(line, &len);
  b = uv_buf_init(w->data, (unsigned)len);
  c->refs++;
  if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_admin_written)) {
    c->refs--;
    free(w->data);
    free(w);
    admin_close(c);
  }
}

static void reply_error(vd_admin_conn_t *c, const char *id, int code,
                        const char *msg, const char *path) {
  vd_buf_t out = VD_BUF_INIT;
  vd_wire_write_error(&out, id, code, msg, path, NULL);
  admin_send(c, &out);
}

/* revisions: what the history database holds, newest first, as the
 * members of the reply after its id.  Runs on the thread pool: reads
 * nothing of d but its options. */
static int list_revisions(vd_daemon_t *d, vd_buf_t *out, vd_buf_t *err) {
  vd_buf_addc(out, ',');
  return vd_history_revisions_json(d->opts.db, out, err);
}

/* diff FROM TO: unified diff of every file that differs.  Runs on the
 * thread pool, as list_revisions() does. */
static int diff_revisions(vd_daemon_t *d, const char *from, const char *to,
                          vd_buf_t *text, vd_buf_t *err) {
  vd_bundle_t *a = NULL, *b = NULL;
  int rc = vd_history_load_bundle(d->opts.db, from, &a, err);
  if (rc == 0)
    rc = vd_history_load_bundle(d->opts.db, to, &b, err);
  if (rc == 0)
    vd_text_diff_bundles(a, b, text);
  if (a)
    vd_bundle_unref(a);
  if (b)
    vd_bundle_unref(b);
  return rc;
}

/* ------------------------------------------------------------------------
 * Admin requests
 *
 * Each op is a row of admin_ops: answered at once on the main loop
 * (`now`), or, when it reads the history database, in two halves: `work`
 * on the thread pool, then `done` back on the main loop.  While an op is
 * in flight its connection reads no further request, so answers keep the
 * order of requests.
 * ------------------------------------------------------------------------ */

typedef struct admin_job admin_job_t;

typedef struct admin_op {
  const char *name;
  void (*now)(vd_admin_conn_t *c, const vd_wire_admin_t *req);
  void (*work)(admin_job_t *j);  /* thread pool: reads only the job */
  int (*done)(admin_job_t *j);   /* main loop: answers; 1 if the
                                  * connection stays busy (a reload) */
  const char *needs;             /* a field it cannot do without, or NULL */
  const char *needs_message;     /* the bad_request that names it */
} admin_op_t;

/* One op in flight on the thread pool.  Owns copies of the request's
 * strings, and a reference to its connection. */
struct admin_job {
  uv_work_t req;
  vd_daemon_t *d;         /* the thread pool reads only its opts */
  vd_admin_conn_t *c;     /* main loop only */
  const admin_op_t *op;
  vd_buf_t id;            /* the request's id as JSON */
  char *revision;         /* activate */
  char *from, *to;        /* diff; to is the active revision if not given */
  char who[96];           /* activate: peer credentials, then "who" */
  int rc;                 /* what work() found */
  vd_bundle_t *bundle;    /* activate: the revision, rebuilt */
  vd_buf_t out;           /* revisions: the lists; diff: the text */
  vd_buf_t err;           /* why work() failed */
};

static void op_ping(vd_admin_conn_t *c, const vd_wire_admin_t *req) {
  vd_buf_t out = VD_BUF_INIT;
  vd_wire_write_pong(&out, req->id.data, vd_bundle_revision(c->d->bundle));
  admin_send(c, &out);
}

static void op_status(vd_admin_conn_t *c, const vd_wire_admin_t *req) {
  vd_buf_t out = VD_BUF_INIT;
  vd_daemon_write_status(c->d, &out, req->id.data, 1);
  admin_send(c, &out);
}

/* "uid=.. pid=.." of the peer, then the request's "who" if any. */
static void who_asks(const vd_admin_conn_t *c, const vd_wire_admin_t *req,
                     char out[96]) {
  snprintf(out, 96, "%s%s%s", c->who, req->who ? " " : "",
           req->who ? req->who : "");
}

static void op_reload(vd_admin_conn_t *c, const vd_wire_admin_t *req) {
  char who[96];
  who_asks(c, req, who);
  c->busy = 1; /* answer this one before reading the next request */
  uv_read_stop((uv_stream_t *)&c->pipe);
  enqueue_reload(c->d, "admin", who, NULL, c, req->id.data);
}

static void work_activate(admin_job_t *j) {
  j->rc = vd_history_load_bundle(j->d->opts.db, j->revision, &j->bundle,
                                 &j->err);
}

static int done_activate(admin_job_t *j) {
  if (j->rc != 0) {
    reply_error(j->c, j->id.data, VD_ENOT_FOUND, j->err.data, "revision");
    return 0;
  }
  enqueue_reload(j->c->d, "admin", j->who, j->bundle, j->c, j->id.data);
  j->bundle = NULL; /* the reload's now */
  return 1;
}

static void work_revisions(admin_job_t *j) {
  j->rc = list_revisions(j->d, &j->out, &j->err);
}

static int done_revisions(admin_job_t *j) {
  vd_buf_t line = VD_BUF_INIT;
  if (j->rc != 0) {
    reply_error(j->c, j->id.data, VD_EIO, j->err.data, NULL);
    return 0;
  }
  vd_wire_write_revisions(&line, j->id.data, j->out.data, j->out.len);
  admin_send(j->c, &line);
  return 0;
}

static void work_diff(admin_job_t *j) {
  j->rc = diff_revisions(j->d, j->from, j->to, &j->out, &j->err);
}

static int done_diff(admin_job_t *j) {
  vd_buf_t line = VD_BUF_INIT;
  if (j->rc != 0) {
    reply_error(j->c, j->id.data, VD_ENOT_FOUND, j->err.data, NULL);
    return 0;
  }
  vd_wire_write_diff(&line, j->id.data, j->from, j->to, j->out.data,
                     j->out.len);
  admin_send(j->c, &line);
  return 0;
}

/* In the order the error messages list them. */
static const admin_op_t admin_ops[] = {
    {"reload", op_reload, NULL, NULL, NULL, NULL},
    {"activate", NULL, work_activate, done_activate, "revision",
     "activate needs \"revision\": \"sha256:...\""},
    {"revisions", NULL, work_revisions, done_revisions, NULL, NULL},
    {"diff", NULL, work_diff, done_diff, "from",
     "diff needs \"from\" (and \"to\", default the active revision)"},
    {"status", op_status, NULL, NULL, NULL, NULL},
    {"ping", op_ping, NULL, NULL, NULL, NULL},
};
#define N_ADMIN_OPS (sizeof admin_ops / sizeof *admin_ops)

static const admin_op_t *find_op(const char *name) {
  size_t i;
  for (i = 0; name && i < N_ADMIN_OPS; i++)
    if (strcmp(admin_ops[i].name, name) == 0)
      return &admin_ops[i];
  return NULL;
}

int vd_admin_has_op(const char *name) { return find_op(name) != NULL; }

/* The request's string field NAME (one of those vd_wire_admin_t has). */
static const char *req_field(const vd_wire_admin_t *req, const char *name) {
  return strcmp(name, "revision") == 0 ? req->revision
         : strcmp(name, "from") == 0   ? req->from
         : strcmp(name, "to") == 0     ? req->to
         : strcmp(name, "who") == 0    ? req->who
                                       : NULL;
}

static void job_free(admin_job_t *j) {
  if (j->bundle)
    vd_bundle_unref(j->bundle);
  vd_buf_release(&j->id);
  vd_buf_release(&j->out);
  vd_buf_release(&j->err);
  free(j->revision);
  free(j->from);
  free(j->to);
  free(j);
}

static void job_work(uv_work_t *req) {
  admin_job_t *j = req->data;
  j->op->work(j);
}

static void job_done(uv_work_t *req, int status) {
  admin_job_t *j = req->data;
  vd_admin_conn_t *c = j->c;
  int busy = 0;
  if (status < 0) /* cancelled: never ran */
    reply_error(c, j->id.data, VD_EINTERNAL, "the request was cancelled",
                NULL);
  else
    busy = j->op->done(j);
  if (!busy) {
    c->busy = 0;
    admin_read_start(c);
  }
  job_free(j);
  admin_unref(c);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Hand OP's blocking half to the thread pool; the connection reads no
 * further request until it is answered. */
static void start_job(vd_admin_conn_t *c, const admin_op_t *op,
                      const vd_wire_admin_t *req) {
  vd_daemon_t *d = c->d;
  admin_job_t *j = calloc(1, sizeof *j);
  const char *to = req->to ? req->to : vd_bundle_revision(d->bundle);
  if (!j) {
    reply_error(c, req->id.data, VD_EINTERNAL, "out of memory", NULL);
    return;
  }
  j->req.data = j;
  j->d = d;
  j->c = c;
  j->op = op;
  vd_buf_init(&j->id);
  vd_buf_init(&j->out);
  vd_buf_init(&j->err);
  vd_buf_adds(&j->id, req->id.data);
  who_asks(c, req, j->who);
  j->revision = dup_or_null(req->revision);
  j->from = dup_or_null(req->from);
  j->to = strdup(to);
  if (!j->to || (req->revision && !j->revision) ||
      (req->from && !j->from)) {
    reply_error(c, req->id.data, VD_EINTERNAL, "out of memory", NULL);
    job_free(j);
    return;
  }
  if (uv_queue_work(d->loop, &j->req, job_work, job_done) != 0) {
    reply_error(c, req->id.data, VD_EINTERNAL, "cannot queue the request",
                NULL);
    job_free(j);
    return;
  }
  c->refs++;
  c->busy = 1;
  uv_read_stop((uv_stream_t *)&c->pipe);
}

/* The list of ops for an error message: "reload, activate, ..., ping". */
static void list_ops(vd_buf_t *out) {
  size_t i;
  for (i = 0; i < N_ADMIN_OPS; i++)
    vd_buf_addf(out, "%s%s", i ? ", " : "", admin_ops[i].name);
}

static void handle_admin(vd_admin_conn_t *c, const char *line, size_t len) {
  lua_State *L = c->d->admin.sb.L;
  vd_buf_t msg = VD_BUF_INIT;
  vd_wire_admin_t req;
  const admin_op_t *op;
  int top = lua_gettop(L);

  vd_wire_admin_init(&req);
  if (vd_wire_read_admin(L, line, len, &req, &msg) != 0) {
    reply_error(c, NULL, VD_EBAD_REQUEST, msg.data, NULL);
  } else if ((op = find_op(req.op)) == NULL) {
    vd_buf_adds(&msg, req.op ? "unknown op (" : "missing op (");
    list_ops(&msg);
    vd_buf_addc(&msg, ')');
    reply_error(c, req.id.data, VD_EBAD_REQUEST, msg.data, "op");
  } else if (op->needs && !req_field(&req, op->needs)) {
    reply_error(c, req.id.data, VD_EBAD_REQUEST, op->needs_message,
                op->needs);
  } else if (op->now) {
    op->now(c, &req);
  } else {
    start_job(c, op, &req);
  }
  lua_settop(L, top);
  vd_wire_admin_release(&req);
  vd_buf_release(&msg);
}

static void on_admin_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char slab[65536]; /* main thread only; framed before the next read */
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_admin_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  vd_admin_conn_t *c = s->data;
  const char *line;
  size_t len;
  int r;
  if (nread < 0) {
    admin_close(c);
    return;
  }
  vd_framer_feed(&c->framer, buf->base, (size_t)nread);
  while (!c->busy && (r = vd_framer_next(&c->framer, &line, &len)) != 0) {
    if (r < 0) {
      reply_error(c, NULL, VD_ETOO_LARGE, "admin request too long", NULL);
      admin_close(c);
      return;
    }
    if (len)
      handle_admin(c, line, len);
  }
}

static void admin_read_start(vd_admin_conn_t *c) {
  const char *line;
  size_t len;
  int r;
  /* requests that arrived while we were busy come first */
  while (!c->busy && !c->closing &&
         (r = vd_framer_next(&c->framer, &line, &len)) > 0)
    if (len)
      handle_admin(c, line, len);
  if (!c->busy && !c->closing)
    uv_read_start((uv_stream_t *)&c->pipe, on_admin_alloc, on_admin_read);
}

static void on_admin_connection(uv_stream_t *server, int status) {
  vd_daemon_t *d = server->data;
  vd_admin_conn_t *c;
  struct ucred cred;
  socklen_t cl = sizeof cred;
  uv_os_fd_t fd;
  if (status < 0)
    return;
  c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->d = d;
  c->refs = 1;
  vd_framer_init(&c->framer, 1u << 20);
  uv_pipe_init(d->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->next = d->admin.conns;
  if (d->admin.conns)
    d->admin.conns->prev = c;
  d->admin.conns = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
    admin_close(c);
    return;
  }
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0 &&
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
    snprintf(c->who, sizeof c->who, "uid=%u pid=%d", (unsigned)cred.uid,
             (int)cred.pid);
  admin_read_start(c);
}

/* ------------------------------------------------------------------------
 * The reload pipeline
 * ------------------------------------------------------------------------ */

static void reload_free(vd_reload_t *r) {
  vd_validation_abandon(r->v); /* frees it, if its thread is done */
  if (r->bundle)
    vd_bundle_unref(r->bundle);
  vd_buf_release(&r->err);
  vd_buf_release(&r->reply_id);
  free(r);
}

/* The reload R (d->admin.running) is over: its validation finished, timed
 * out, or never started (r->rc says why).  Activate it or record why not,
 * answer whoever asked, and start the next. */
static void reload_finish(vd_daemon_t *d, vd_reload_t *r) {
  vd_validation_t *v = r->v;
  char previous[80];
  const char *rev;
  unsigned i;
  int unrecorded = 0;
  vd_buf_t out = VD_BUF_INIT;

  uv_timer_stop(&d->admin.reload_timer);
  d->admin.running = NULL;
  if (v) { /* finished: its results are ours to read and take */
    r->rc = v->rc;
    vd_buf_add(&r->err, v->err.data, v->err.len);
    if (!r->bundle && v->bundle)
      vd_bundle_ref(r->bundle = v->bundle);
  }
  snprintf(previous, sizeof previous, "%s", vd_bundle_revision(d->bundle));
  /* a directory that could not be read has no revision of its own: the
   * failure is named after what keeps serving */
  rev = r->bundle ? vd_bundle_revision(r->bundle) : previous;
  if (r->bundle)
    store_revision(d, r->bundle); /* failed ones too: auditors see them */
  /* recorded before it serves: no decision names a revision whose
   * activation the history lacks.  One that cannot be recorded (the
   * database locked past its busy timeout, a full disk) is refused, and
   * the revision in force keeps serving */
  if (r->rc == 0 && !d->stopping) {
    char *why = NULL;
    if (vd_history_record_activation(d->history, rev, r->trigger, r->who,
                                     vd_bundle_source(r->bundle), 1, NULL,
                                     &why) != 0) {
      r->rc = VD_EIO;
      unrecorded = 1;
      vd_buf_addf(&r->err, "cannot record the activation in the history: %s",
                  why ? why : "?");
    }
    free(why);
  }
  if (r->rc == 0 && !d->stopping) {
    for (i = 0; i < d->nworkers; i++) {
      vd_worker_offer_engine(&d->workers[d->active[i]], v->engines[i]);
      v->engines[i] = NULL;
    }
    uv_mutex_lock(&d->state_lock);
    vd_bundle_unref(d->bundle);
    d->bundle = r->bundle;
    r->bundle = NULL;
    d->activated_ms = vd_now_ms();
    snprintf(d->activated_by, sizeof d->activated_by, "%s", r->trigger);
    vd_buf_reset(&d->in_force);
    vd_buf_add(&d->in_force, v->in_force.data, v->in_force.len);
    uv_mutex_unlock(&d->state_lock);
    if (d->metrics) {
      vd_metrics_count(d->metrics, VD_M_RELOADS, (const char *[]){"ok"}, 1);
      vd_metrics_set_revision(d->metrics, vd_bundle_revision(d->bundle));
    }
    vd_log(VD_LEVEL_NOTICE, "reload_activated", "%s: activated %s (was %s)",
           r->trigger, vd_bundle_revision(d->bundle), previous);
  } else {
    if (r->rc == 0) {
      r->rc = VD_EINTERNAL;
      vd_buf_adds(&r->err, "the daemon is stopping");
    }
    uv_mutex_lock(&d->state_lock);
    vd_buf_reset(&d->last_failure);
    vd_buf_addf(&d->last_failure, "%s: %s", rev, r->err.data);
    uv_mutex_unlock(&d->state_lock);
    record_activation(d, rev, r->trigger, r->who,
                      r->bundle ? vd_bundle_source(r->bundle)
                                : d->opts.policies,
                      0, r->err.data);
    if (d->metrics)
      vd_metrics_count(d->metrics, VD_M_RELOADS, (const char *[]){"failed"},
                       1);
    vd_log_detail(VD_LEVEL_WARNING, "reload_refused", r->err.data,
                  "%s: refused %s, still serving %s", r->trigger, rev,
                  previous);
  }
  if (!d->stopping)
    vd_daemon_notify_ready(d, r->rc == 0 ? "activated" : "refused");
  if (r->reply_to) {
    vd_admin_conn_t *c = r->reply_to;
    if (r->rc == 0) {
      vd_wire_write_activated(&out, r->reply_id.data,
                              vd_bundle_revision(d->bundle), previous);
    } else {
      /* a validation that ran out of time is a timeout, as a decision's;
       * a history that could not record it is the daemon's failure */
      vd_wire_write_error(&out, r->reply_id.data,
                          r->rc == VD_EPOLICY_TIMEOUT ? VD_EPOLICY_TIMEOUT
                          : unrecorded                ? VD_EINTERNAL
                                                      : VD_EPOLICY_ERROR,
                          r->err.data, NULL, NULL);
    }
    admin_send(c, &out);
    c->busy = 0;
    admin_read_start(c);
    admin_unref(c);
    r->reply_to = NULL;
  }
  reload_free(r);
  start_next_reload(d);
}

/* The validation thread of the running reload is done. */
static void on_validation_done(uv_async_t *a) {
  vd_daemon_t *d = a->data;
  vd_reload_t *r = d->admin.running;
  if (r && r->v && vd_validation_finished(r->v))
    reload_finish(d, r);
}

/* --validate-timeout is over and the validation has not come back: refuse
 * the reload as timed out and walk away from its thread (validate.c). */
static void on_validation_timeout(uv_timer_t *t) {
  vd_daemon_t *d = t->data;
  vd_reload_t *r = d->admin.running;
  if (!r || !r->v)
    return;
  if (vd_validation_finished(r->v)) { /* it came back just now */
    reload_finish(d, r);
    return;
  }
  if (!r->bundle)
    r->bundle = vd_validation_bundle(r->v);
  vd_validation_abandon(r->v);
  r->v = NULL;
  r->rc = VD_EPOLICY_TIMEOUT;
  vd_buf_addf(&r->err,
              "timed out: validation did not finish within %u s "
              "(--validate-timeout); its thread is left behind (%u now, "
              "at most %u before reloads are refused until a restart)",
              d->opts.validate_timeout_s, vd_validations_stuck(),
              (unsigned)VD_VALIDATIONS_STUCK_MAX);
  reload_finish(d, r);
}

/* Validate the next reload on a thread of its own, against the clock. */
static void start_next_reload(vd_daemon_t *d) {
  vd_reload_t *r = d->admin.reload_head;
  vd_bundle_t *b = r ? r->bundle : NULL;
  unsigned stuck = vd_validations_stuck();
  int rc;
  if (d->admin.running || !r || d->admin.stopped)
    return;
  d->admin.reload_head = r->next;
  if (!d->admin.reload_head)
    d->admin.reload_tail = NULL;
  d->admin.running = r;
  if (stuck >= VD_VALIDATIONS_STUCK_MAX) {
    r->rc = VD_EPOLICY_TIMEOUT;
    vd_buf_addf(&r->err,
                "refused unread: %u earlier validations are still running "
                "past --validate-timeout, and a thread stuck in a C function "
                "cannot be stopped; restart verdictd to reclaim them",
                stuck);
    reload_finish(d, r);
    return;
  }
  if (b)
    vd_bundle_ref(b); /* one for the thread, one to name the reload */
  rc = vd_validation_start(&r->v, d->opts.policies, b, &d->opts.limits,
                           d->nworkers, 1, &d->admin.validation_done);
  if (rc != 0) {
    r->rc = rc;
    vd_buf_adds(&r->err, "cannot start a thread to validate the bundle");
    reload_finish(d, r);
    return;
  }
  uv_timer_start(&d->admin.reload_timer, on_validation_timeout,
                 (uint64_t)d->opts.validate_timeout_s * 1000, 0);
}

static void enqueue_reload(vd_daemon_t *d, const char *trigger,
                           const char *who, vd_bundle_t *bundle,
                           vd_admin_conn_t *reply_to, const char *reply_id) {
  vd_reload_t *r;
  if (d->admin.stopped) { /* an activate whose job came back after stop */
    if (bundle)
      vd_bundle_unref(bundle);
    return;
  }
  r = calloc(1, sizeof *r);
  if (!r) {
    if (bundle)
      vd_bundle_unref(bundle);
    if (reply_to) {
      reply_error(reply_to, reply_id, VD_EINTERNAL, "out of memory", NULL);
      reply_to->busy = 0;
      admin_read_start(reply_to);
    }
    return;
  }
  r->d = d;
  snprintf(r->trigger, sizeof r->trigger, "%s", trigger);
  snprintf(r->who, sizeof r->who, "%s", who ? who : "");
  r->bundle = bundle;
  vd_buf_init(&r->err);
  vd_buf_init(&r->reply_id);
  if (reply_to) {
    r->reply_to = reply_to;
    reply_to->refs++;
    vd_buf_adds(&r->reply_id, reply_id);
  }
  if (d->admin.reload_tail)
    d->admin.reload_tail->next = r;
  else
    d->admin.reload_head = r;
  d->admin.reload_tail = r;
  start_next_reload(d);
}

void vd_admin_reload(vd_daemon_t *d, const char *trigger, const char *who,
                     vd_bundle_t *bundle) {
  enqueue_reload(d, trigger, who, bundle, NULL, NULL);
}

/* ------------------------------------------------------------------------
 * --watch: reload when the directory changes, once per burst of saves
 * ------------------------------------------------------------------------ */

static void watch_dirs(vd_daemon_t *d);

static void on_watch_quiet(uv_timer_t *t) {
  vd_daemon_t *d = t->data;
  watch_dirs(d); /* pick up directories created since */
  vd_admin_reload(d, "watch", NULL, NULL);
}

static void on_dir_event(uv_fs_event_t *h, const char *name, int events,
                         int status) {
  vd_daemon_t *d = h->data;
  (void)events;
  (void)status;
  if (name && (name[0] == '.' || name[strlen(name) - 1] == '~'))
    return; /* editor swap and backup files */
  /* debounce: an editor saving several files causes one reload */
  uv_timer_start(&d->admin.watch_timer, on_watch_quiet, 300, 0);
}

static void unwatch(vd_daemon_t *d) {
  size_t i;
  for (i = 0; i < d->admin.nwatchers; i++)
    uv_close((uv_handle_t *)d->admin.watchers[i], (uv_close_cb)free);
  free(d->admin.watchers);
  d->admin.watchers = NULL;
  d->admin.nwatchers = 0;
}

/* Watch DIR and every directory below it (inotify is not recursive). */
static void watch_one(vd_daemon_t *d, const char *dir, int depth) {
  uv_fs_t req;
  uv_dirent_t ent;
  uv_fs_event_t *h, **arr;
  if (depth > 8)
    return;
  arr = realloc(d->admin.watchers, (d->admin.nwatchers + 1) * sizeof *arr);
  h = malloc(sizeof *h);
  if (arr)
    d->admin.watchers = arr;
  if (!arr || !h) {
    free(h);
    return;
  }
  uv_fs_event_init(d->loop, h);
  h->data = d;
  if (uv_fs_event_start(h, on_dir_event, dir, 0) != 0) {
    uv_close((uv_handle_t *)h, (uv_close_cb)free);
    return;
  }
  d->admin.watchers[d->admin.nwatchers++] = h;
  if (uv_fs_scandir(NULL, &req, dir, 0, NULL) < 0)
    return;
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    if (ent.type == UV_DIRENT_DIR && ent.name[0] != '.') {
      vd_buf_t sub = VD_BUF_INIT;
      vd_buf_addf(&sub, "%s/%s", dir, ent.name);
      watch_one(d, sub.data, depth + 1);
      vd_buf_release(&sub);
    }
  }
  uv_fs_req_cleanup(&req);
}

static void watch_dirs(vd_daemon_t *d) {
  unwatch(d);
  watch_one(d, d->opts.policies, 0);
}

/* ------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------ */

/* The admin socket, if --admin-socket asks for one. */
static int admin_listen(vd_daemon_t *d, vd_buf_t *err) {
  int rc, fd;
  /* as the decision socket: a live daemon's admin socket is not taken */
  fd = vd_daemon_listen_unix(d->opts.admin_socket,
                             d->opts.admin_gid != (gid_t)-1 ? 0660 : 0600,
                             d->opts.admin_gid, "--admin-socket", err);
  if (fd < 0)
    return VD_EIO;
  uv_pipe_init(d->loop, &d->admin.server, 0);
  d->admin.server.data = d;
  rc = uv_pipe_open(&d->admin.server, fd);
  if (rc != 0)
    close(fd); /* not the handle's yet */
  else
    rc = uv_listen((uv_stream_t *)&d->admin.server, 64, on_admin_connection);
  if (rc != 0) {
    vd_buf_addf(err, "%s: %s", d->opts.admin_socket, uv_strerror(rc));
    uv_close((uv_handle_t *)&d->admin.server, NULL);
    unlink(d->opts.admin_socket);
    return VD_EIO;
  }
  d->admin.listening = 1;
  return 0;
}

static void stop_watching(vd_daemon_t *d) {
  if (!d->opts.watch)
    return;
  unwatch(d);
  uv_close((uv_handle_t *)&d->admin.watch_timer, NULL);
}

int vd_admin_start(vd_daemon_t *d, vd_buf_t *err) {
  vd_admin_t *a = &d->admin;
  int rc;
  /* admin requests are decoded in a sandbox: the one allocator path */
  rc = vd_sandbox_init(&a->sb, err);
  if (rc != 0)
    return rc;
  if (d->opts.watch) {
    uv_timer_init(d->loop, &a->watch_timer);
    a->watch_timer.data = d;
    watch_dirs(d);
  }
  if (d->opts.admin_socket && (rc = admin_listen(d, err)) != 0)
    goto out_watch;
  /* reloads: their validation threads report here; main loop only */
  uv_async_init(d->loop, &a->validation_done, on_validation_done);
  a->validation_done.data = d;
  uv_timer_init(d->loop, &a->reload_timer);
  a->reload_timer.data = d;
  a->started = 1;
  return 0;

out_watch:
  stop_watching(d); /* their close callbacks free them */
  vd_sandbox_release(&a->sb);
  return rc;
}

void vd_admin_stop(vd_daemon_t *d) {
  vd_admin_t *a = &d->admin;
  vd_admin_conn_t *c, *next;
  vd_reload_t *r;
  if (!a->started || a->stopped)
    return;
  a->stopped = 1;
  if (a->listening) {
    uv_close((uv_handle_t *)&a->server, NULL);
    unlink(d->opts.admin_socket);
    a->listening = 0;
  }
  /* A reload being validated is abandoned, not waited for: its thread may
   * be stuck in C for good (validate.c), and the process ends it with
   * itself.  Queued ones are dropped; their connections close below. */
  while ((r = a->running ? a->running : a->reload_head) != NULL) {
    if (r == a->running) {
      a->running = NULL;
      vd_log(VD_LEVEL_WARNING, "reload_abandoned",
             "stopping: abandoned the %s reload being validated", r->trigger);
    } else {
      a->reload_head = r->next;
    }
    if (r->reply_to)
      admin_unref(r->reply_to);
    reload_free(r);
  }
  a->reload_tail = NULL;
  uv_timer_stop(&a->reload_timer);
  uv_close((uv_handle_t *)&a->reload_timer, NULL);
  uv_close((uv_handle_t *)&a->validation_done, NULL); /* nobody sends now */
  for (c = a->conns; c; c = next) {
    next = c->next;
    admin_close(c);
  }
  stop_watching(d);
}

void vd_admin_release(vd_daemon_t *d) {
  vd_admin_t *a = &d->admin;
  if (!a->started)
    return;
  vd_admin_stop(d);
  /* connections are freed by their close callbacks, reloads and jobs by
   * their done callbacks: the loop that ran them has ended */
  vd_sandbox_release(&a->sb);
  a->started = 0;
}
