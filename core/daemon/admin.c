/*
 * admin.c - the admin channel and the reload pipeline.
 *
 * Owns: the admin socket (mode 0600) and its connections, the queue of
 * reloads, and the --watch directory watchers.  Everything here runs on the
 * main thread's loop, except reload_work(), which runs on libuv's thread
 * pool so that loading, checking and testing a new bundle never holds up
 * the main loop, let alone a worker.
 *
 * A reload (SIGHUP, `verdict reload`, a watched change, `verdict activate`)
 * goes: read the bundle (or take it from the history database) -> on the
 * thread pool, validate it exactly as `verdict check` does (every file
 * compiles, every policy loads and is well formed, the bundle's own tests
 * pass) and build one engine per worker -> back on the main thread, store
 * its files in the history database, hand each worker its engine, and
 * record the activation.  A bundle that fails any step is not activated:
 * the previous revision keeps serving and the failure is recorded and
 * shown by `status`.  Reloads run one at a time, in the order asked.
 *
 * Each worker switches between two requests, so every request is decided
 * wholly by one revision, the one its response names.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "daemon_int.h"
#include "verdict/json.h"
#include "verdict/policytest.h"
#include "verdict/protocol.h"
#include "verdict/textdiff.h"
#include "verdict/timefmt.h"

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
  /* filled by reload_work on the thread pool */
  int rc;
  vd_buf_t err;
  vd_engine_t **engines;
  vd_buf_t in_force;
} vd_reload_t;

static void admin_read_start(vd_admin_conn_t *c);
static void start_next_reload(vd_daemon_t *d);
static void enqueue_reload(vd_daemon_t *d, const char *trigger,
                           const char *who, vd_bundle_t *bundle,
                           vd_admin_conn_t *reply_to, const char *reply_id);

/* ------------------------------------------------------------------------
 * Files in force
 * ------------------------------------------------------------------------ */

static void in_force_json(vd_engine_t *e, vd_buf_t *out) {
  char path[VD_PATH_MAX];
  size_t r, k;
  vd_buf_reset(out);
  vd_buf_addc(out, '{');
  for (r = 0; r <= vd_engine_region_count(e); r++) {
    const char *region = r ? vd_engine_region(e, r - 1) : "national";
    int first = 1;
    vd_buf_addf(out, "%s\"%s\":{", r ? "," : "", region);
    for (k = 0; k < vd_engine_kind_count(e); k++) {
      const char *kind = vd_engine_kind(e, k);
      const char *pr = vd_engine_policy_region(e, kind, region);
      if (!pr)
        continue;
      vd_engine_policy_path(path, pr, kind);
      vd_buf_addf(out, "%s\"%s\":\"%s\"", first ? "" : ",", kind, path);
      first = 0;
    }
    vd_buf_addc(out, '}');
  }
  vd_buf_addc(out, '}');
}

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
    vd_daemon_log("cannot store revision %s: %s", vd_bundle_revision(b),
                  err ? err : "?");
  free(err);
  free(files);
}

static void record_activation(vd_daemon_t *d, const char *revision,
                              const char *trigger, const char *who,
                              const char *source, int ok, const char *error) {
  char *err = NULL;
  if (vd_history_record_activation(d->history, revision, trigger, who, source,
                                   ok, error, &err) != 0)
    vd_daemon_log("cannot record the activation of %s: %s", revision,
                  err ? err : "?");
  free(err);
}

/* E is an engine of the bundle about to serve.  E NULL: the bundle was
 * refused at start-up, d->last_failure says why; its files are stored all
 * the same (auditors see what was refused, as for a reload) and the
 * activation is recorded as failed. */
void vd_admin_startup(vd_daemon_t *d, vd_engine_t *e) {
  const char *rev = vd_bundle_revision(d->bundle);
  store_revision(d, d->bundle);
  if (!e) {
    record_activation(d, rev, "startup", NULL, vd_bundle_source(d->bundle), 0,
                      d->last_failure.data);
    return;
  }
  in_force_json(e, &d->in_force);
  /* an --unchecked start says so, for auditors */
  record_activation(d, rev, d->opts.unchecked ? "startup-unchecked" : "startup",
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
    c->d->admin_conns = c->next;
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
  vd_response_error(&out, id, code, msg, path, NULL);
  admin_send(c, &out);
}

/* revisions: what the history database holds, newest first. */
static int list_revisions(vd_daemon_t *d, vd_buf_t *out, vd_buf_t *err) {
  vd_buf_addc(out, ',');
  return vd_history_revisions_json(d->opts.db, out, err);
}

/* diff FROM TO: unified diff of every file that differs. */
static int diff_revisions(vd_daemon_t *d, const char *from, const char *to,
                          vd_buf_t *text, vd_buf_t *err) {
  vd_bundle_t *a = NULL, *b = NULL;
  size_t i = 0, j = 0;
  int rc = vd_history_load_bundle(d->opts.db, from, &a, err);
  if (rc == 0)
    rc = vd_history_load_bundle(d->opts.db, to, &b, err);
  while (rc == 0 && (i < vd_bundle_count(a) || j < vd_bundle_count(b))) {
    const vd_bundle_file_t *fa = vd_bundle_file(a, i), *fb = vd_bundle_file(b, j);
    int c = !fa ? 1 : !fb ? -1 : strcmp(fa->path, fb->path);
    vd_buf_t na = VD_BUF_INIT, nb = VD_BUF_INIT;
    vd_buf_addf(&na, "a/%s", c <= 0 ? fa->path : fb->path);
    vd_buf_addf(&nb, "b/%s", c >= 0 ? fb->path : fa->path);
    vd_text_diff(c <= 0 ? na.data : "/dev/null", c <= 0 ? fa->data : "",
                 c <= 0 ? fa->len : 0, c >= 0 ? nb.data : "/dev/null",
                 c >= 0 ? fb->data : "", c >= 0 ? fb->len : 0, text);
    vd_buf_release(&na);
    vd_buf_release(&nb);
    if (c <= 0)
      i++;
    if (c >= 0)
      j++;
  }
  if (a)
    vd_bundle_unref(a);
  if (b)
    vd_bundle_unref(b);
  return rc;
}

static const char *field(lua_State *L, int t, const char *k) {
  const char *s;
  lua_getfield(L, t, k);
  s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  return s;
}

static void handle_admin(vd_admin_conn_t *c, const char *line, size_t len) {
  vd_daemon_t *d = c->d;
  lua_State *L = d->admin_L;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT, id = VD_BUF_INIT;
  const char *op, *who;
  int top = lua_gettop(L);

  vd_buf_adds(&id, "null");
  if (vd_json_decode_protected(L, line, len, 16, &err) != 0) {
    reply_error(c, NULL, VD_EBAD_REQUEST, err.data, NULL);
    goto done;
  }
  if (vd_json_marker(L, -1) != 2) {
    reply_error(c, NULL, VD_EBAD_REQUEST, "a request must be a JSON object",
                NULL);
    goto done;
  }
  lua_getfield(L, -1, "id");
  if (!lua_isnil(L, -1)) {
    vd_buf_reset(&id);
    if (vd_json_encode(L, -1, &id, "id", &err))
      vd_buf_adds(&id, "null");
  }
  lua_pop(L, 1);
  op = field(L, top + 1, "op");
  who = field(L, top + 1, "who");
  if (!op) {
    reply_error(c, id.data, VD_EBAD_REQUEST,
                "missing op (reload, activate, revisions, diff, status, ping)",
                "op");
  } else if (strcmp(op, "ping") == 0) {
    vd_buf_addf(&out, "{\"id\":%s,\"pong\":true}\n", id.data);
    admin_send(c, &out);
  } else if (strcmp(op, "status") == 0) {
    vd_buf_addf(&out, "{\"id\":%s,\"status\":", id.data);
    vd_daemon_status_json(d, &out, 1);
    vd_buf_adds(&out, "}\n");
    admin_send(c, &out);
  } else if (strcmp(op, "reload") == 0 || strcmp(op, "activate") == 0) {
    vd_bundle_t *b = NULL;
    char whob[96];
    if (op[0] == 'a') {
      const char *rev = field(L, top + 1, "revision");
      if (!rev) {
        reply_error(c, id.data, VD_EBAD_REQUEST,
                    "activate needs \"revision\": \"sha256:...\"", "revision");
        goto done;
      }
      if (vd_history_load_bundle(d->opts.db, rev, &b, &err) != 0) {
        reply_error(c, id.data, VD_ENOT_FOUND, err.data, "revision");
        goto done;
      }
    }
    snprintf(whob, sizeof whob, "%s%s%s", c->who, who ? " " : "",
             who ? who : "");
    c->busy = 1; /* answer this one before reading the next request */
    uv_read_stop((uv_stream_t *)&c->pipe);
    enqueue_reload(d, "admin", whob, b, c, id.data);
  } else if (strcmp(op, "revisions") == 0) {
    vd_buf_addf(&out, "{\"id\":%s", id.data);
    if (list_revisions(d, &out, &err) != 0) {
      reply_error(c, id.data, VD_EIO, err.data, NULL);
      vd_buf_release(&out);
    } else {
      vd_buf_adds(&out, "}\n");
      admin_send(c, &out);
    }
  } else if (strcmp(op, "diff") == 0) {
    const char *from = field(L, top + 1, "from"), *to = field(L, top + 1, "to");
    vd_buf_t text = VD_BUF_INIT;
    char active[80];
    uv_mutex_lock(&d->state_lock);
    snprintf(active, sizeof active, "%s", vd_bundle_revision(d->bundle));
    uv_mutex_unlock(&d->state_lock);
    if (!to)
      to = active;
    if (!from) {
      reply_error(c, id.data, VD_EBAD_REQUEST,
                  "diff needs \"from\" (and \"to\", default the active "
                  "revision)", "from");
    } else if (diff_revisions(d, from, to, &text, &err) != 0) {
      reply_error(c, id.data, VD_ENOT_FOUND, err.data, NULL);
    } else {
      vd_buf_addf(&out, "{\"id\":%s,\"from\":\"%s\",\"to\":\"%s\",\"diff\":",
                  id.data, from, to);
      vd_buf_add_json_str(&out, text.data ? text.data : "", text.len);
      vd_buf_adds(&out, "}\n");
      admin_send(c, &out);
    }
    vd_buf_release(&text);
  } else {
    reply_error(c, id.data, VD_EBAD_REQUEST,
                "unknown op (reload, activate, revisions, diff, status, ping)",
                "op");
  }
done:
  lua_settop(L, top);
  vd_buf_release(&out);
  vd_buf_release(&err);
  vd_buf_release(&id);
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
  c->next = d->admin_conns;
  if (d->admin_conns)
    d->admin_conns->prev = c;
  d->admin_conns = c;
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
  unsigned i;
  if (r->engines) {
    for (i = 0; i < r->d->nworkers; i++)
      vd_engine_free(r->engines[i]);
    free(r->engines);
  }
  if (r->bundle)
    vd_bundle_unref(r->bundle);
  vd_buf_release(&r->err);
  vd_buf_release(&r->in_force);
  vd_buf_release(&r->reply_id);
  free(r);
}

/* Thread pool: validate as `verdict check` does, then build the engines. */
static void reload_work(uv_work_t *req) {
  vd_reload_t *r = req->data;
  vd_daemon_t *d = r->d;
  /* a reload of the directory reads it here, off the main loop */
  if (!r->bundle && (r->rc = vd_bundle_load(d->opts.policies, &r->bundle,
                                            &r->err)) != 0)
    return;
  r->rc = vd_policy_validate(r->bundle, &d->opts.limits, &r->err);
  if (r->rc)
    return;
  r->engines = calloc(d->nworkers, sizeof *r->engines);
  if (!r->engines) {
    r->rc = VD_ENOMEM;
    vd_buf_adds(&r->err, "out of memory");
    return;
  }
  r->rc = vd_daemon_build_engines(d, r->bundle, r->engines, &r->err);
  if (r->rc == 0)
    in_force_json(r->engines[0], &r->in_force);
}

static void reload_done(uv_work_t *req, int status) {
  vd_reload_t *r = req->data;
  vd_daemon_t *d = r->d;
  char previous[80];
  const char *rev;
  unsigned i;
  vd_buf_t out = VD_BUF_INIT;

  snprintf(previous, sizeof previous, "%s", vd_bundle_revision(d->bundle));
  /* a directory that could not be read has no revision of its own: the
   * failure is named after what keeps serving */
  rev = r->bundle ? vd_bundle_revision(r->bundle) : previous;
  if (status < 0 && r->rc == 0) {
    r->rc = VD_EINTERNAL;
    vd_buf_adds(&r->err, "the reload was cancelled");
  }
  if (r->bundle)
    store_revision(d, r->bundle); /* failed ones too: auditors see them */
  if (r->rc == 0 && !d->stopping) {
    for (i = 0; i < d->nworkers; i++) {
      vd_worker_offer_engine(&d->workers[i], r->engines[i]);
      r->engines[i] = NULL;
    }
    uv_mutex_lock(&d->state_lock);
    vd_bundle_unref(d->bundle);
    d->bundle = r->bundle;
    r->bundle = NULL;
    d->activated_ms = vd_now_ms();
    snprintf(d->activated_by, sizeof d->activated_by, "%s", r->trigger);
    vd_buf_reset(&d->in_force);
    vd_buf_add(&d->in_force, r->in_force.data, r->in_force.len);
    uv_mutex_unlock(&d->state_lock);
    record_activation(d, rev, r->trigger, r->who,
                      vd_bundle_source(d->bundle), 1, NULL);
    vd_daemon_log("%s: activated %s (was %s)", r->trigger,
                  vd_bundle_revision(d->bundle), previous);
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
    vd_daemon_log("%s: refused %s, still serving %s:\n%s", r->trigger, rev,
                  previous, r->err.data);
  }
  if (r->reply_to) {
    vd_admin_conn_t *c = r->reply_to;
    if (r->rc == 0) {
      uv_mutex_lock(&d->state_lock);
      vd_buf_addf(&out, "{\"id\":%s,\"ok\":true,\"revision\":\"%s\","
                        "\"previous\":\"%s\",\"unchanged\":%s}\n",
                  r->reply_id.data, vd_bundle_revision(d->bundle), previous,
                  strcmp(previous, vd_bundle_revision(d->bundle)) == 0
                      ? "true" : "false");
      uv_mutex_unlock(&d->state_lock);
    } else {
      vd_response_error(&out, r->reply_id.data, VD_EPOLICY_ERROR,
                        r->err.data, NULL, NULL);
    }
    admin_send(c, &out);
    c->busy = 0;
    admin_read_start(c);
    admin_unref(c);
  }
  d->reload_busy = 0;
  reload_free(r);
  start_next_reload(d);
}

static void start_next_reload(vd_daemon_t *d) {
  vd_reload_t *r = d->reload_head;
  if (d->reload_busy || !r)
    return;
  d->reload_head = r->next;
  if (!d->reload_head)
    d->reload_tail = NULL;
  d->reload_busy = 1;
  d->reload_work.data = r;
  if (uv_queue_work(d->loop, &d->reload_work, reload_work, reload_done) != 0) {
    r->rc = VD_EINTERNAL;
    vd_buf_adds(&r->err, "cannot queue the reload");
    reload_done(&d->reload_work, 0);
  }
}

static void enqueue_reload(vd_daemon_t *d, const char *trigger,
                           const char *who, vd_bundle_t *bundle,
                           vd_admin_conn_t *reply_to, const char *reply_id) {
  vd_reload_t *r = calloc(1, sizeof *r);
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
  vd_buf_init(&r->in_force);
  vd_buf_init(&r->reply_id);
  if (reply_to) {
    r->reply_to = reply_to;
    reply_to->refs++;
    vd_buf_adds(&r->reply_id, reply_id);
  }
  if (d->reload_tail)
    d->reload_tail->next = r;
  else
    d->reload_head = r;
  d->reload_tail = r;
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
  uv_timer_start(&d->watch_timer, on_watch_quiet, 300, 0);
}

static void unwatch(vd_daemon_t *d) {
  size_t i;
  for (i = 0; i < d->nwatchers; i++)
    uv_close((uv_handle_t *)d->watchers[i], (uv_close_cb)free);
  free(d->watchers);
  d->watchers = NULL;
  d->nwatchers = 0;
}

/* Watch DIR and every directory below it (inotify is not recursive). */
static void watch_one(vd_daemon_t *d, const char *dir, int depth) {
  uv_fs_t req;
  uv_dirent_t ent;
  uv_fs_event_t *h, **arr;
  if (depth > 8)
    return;
  arr = realloc(d->watchers, (d->nwatchers + 1) * sizeof *arr);
  h = malloc(sizeof *h);
  if (arr)
    d->watchers = arr;
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
  d->watchers[d->nwatchers++] = h;
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

int vd_admin_start(vd_daemon_t *d, vd_buf_t *err) {
  int rc, fd;
  d->admin_L = luaL_newstate();
  if (!d->admin_L) {
    vd_buf_adds(err, "out of memory");
    return VD_ENOMEM;
  }
  vd_json_setup(d->admin_L);
  if (d->opts.watch) {
    uv_timer_init(d->loop, &d->watch_timer);
    d->watch_timer.data = d;
    watch_dirs(d);
  }
  if (!d->opts.admin_socket)
    return 0;
  /* as the decision socket: a live daemon's admin socket is not taken */
  fd = vd_daemon_listen_unix(d->opts.admin_socket, 0600, err);
  if (fd < 0)
    return VD_EIO;
  uv_pipe_init(d->loop, &d->admin_server, 0);
  d->admin_server.data = d;
  rc = uv_pipe_open(&d->admin_server, fd);
  if (rc != 0)
    close(fd); /* not the handle's yet */
  else
    rc = uv_listen((uv_stream_t *)&d->admin_server, 64, on_admin_connection);
  if (rc != 0) {
    vd_buf_addf(err, "%s: %s", d->opts.admin_socket, uv_strerror(rc));
    uv_close((uv_handle_t *)&d->admin_server, NULL);
    return VD_EIO;
  }
  d->admin_listening = 1;
  return 0;
}

void vd_admin_stop(vd_daemon_t *d) {
  vd_admin_conn_t *c, *next;
  if (d->admin_listening) {
    uv_close((uv_handle_t *)&d->admin_server, NULL);
    unlink(d->opts.admin_socket);
    d->admin_listening = 0;
  }
  for (c = d->admin_conns; c; c = next) {
    next = c->next;
    admin_close(c);
  }
  if (d->opts.watch) {
    unwatch(d);
    uv_close((uv_handle_t *)&d->watch_timer, NULL);
  }
}
