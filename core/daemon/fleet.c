/*
 * fleet.c - a node of a fleet following the fleet's policy revision
 * (docs/fleet.md, "Revisions").  Only with a PostgreSQL history.
 *
 * A reload or activate on any node sets the fleet's desired revision in
 * the database and notifies every node (core/history_pg.c does that in the
 * activation's transaction).  Here, one thread per node waits for that
 * notification on a connection of its own (vd_history_watch_wait()), and
 * also looks every VD_FLEET_POLL_MS, for a node that was disconnected when
 * the notification went out, writing the node's heartbeat as it does.
 * When the desired revision is not the one this node runs, the thread
 * loads it from the history and hands it to the main loop, which queues it
 * as any reload (admin.c: validated by this node itself, switched between
 * requests, its activation recorded with trigger "fleet").
 *
 * Owns d->fleet: the thread, its watch, the async handle by which it
 * wakes the main loop, and the bundle in passage between the two.
 *
 * Threads: vd_fleet_start / _stop on the main thread; fleet_main on its
 * own; `mu` guards `pending` and `stopping`.  A revision is tried once
 * per change of the desired revision: one this node refuses is not tried
 * again until the fleet's changes (the refusal is in its node_status).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_int.h"
#include "verdict/history.h"

/* How often a node looks at the desired revision without a notification
 * (and writes its heartbeat). */
#define VD_FLEET_POLL_MS 1000

struct vd_fleet {
  vd_daemon_t *d;
  uv_thread_t thread;
  int has_thread;
  uv_async_t wake;        /* main loop: `pending` is there */
  vd_history_watch_t *watch;
  uv_mutex_t mu;
  int stopping;           /* under mu */
  vd_bundle_t *pending;   /* under mu: loaded, for the main loop */
  char tried[128];        /* thread: the last desired revision acted on */
  char error[512];        /* thread: the last error logged */
};

/* Log a failure once, not once a second. */
static void fleet_error(vd_fleet_t *f, const char *msg) {
  if (strcmp(f->error, msg) != 0)
    vd_log(VD_LEVEL_ERR, "fleet_error", "fleet: %s", msg);
  snprintf(f->error, sizeof f->error, "%s", msg);
}

static int fleet_stopping(vd_fleet_t *f) {
  int s;
  uv_mutex_lock(&f->mu);
  s = f->stopping;
  uv_mutex_unlock(&f->mu);
  return s;
}

static void fleet_main(void *arg) {
  vd_fleet_t *f = arg;
  vd_daemon_t *d = f->d;
  int timeout = 0;
  while (!fleet_stopping(f)) {
    char desired[128], running[128];
    char *msg = NULL;
    vd_bundle_t *b = NULL;
    vd_buf_t err = VD_BUF_INIT;
    int rc = vd_history_watch_wait(f->watch, timeout, desired, sizeof desired,
                                   &msg);
    timeout = VD_FLEET_POLL_MS;
    if (rc) {
      fleet_error(f, msg ? msg : "cannot read the fleet's revision");
      free(msg);
      continue;
    }
    if (f->error[0]) {
      vd_log(VD_LEVEL_NOTICE, "fleet_recovered",
             "fleet: the database answers again");
      f->error[0] = '\0';
    }
    uv_mutex_lock(&d->state_lock);
    snprintf(running, sizeof running, "%s", vd_bundle_revision(d->bundle));
    uv_mutex_unlock(&d->state_lock);
    if (!desired[0] || strcmp(desired, running) == 0 ||
        strcmp(desired, f->tried) == 0)
      continue;
    snprintf(f->tried, sizeof f->tried, "%s", desired);
    if (vd_history_load_bundle(d->opts.db, desired, &b, &err) != 0) {
      vd_log(VD_LEVEL_ERR, "fleet_load_failed",
             "fleet: cannot load revision %s: %s", desired,
             err.data ? err.data : "?");
      vd_buf_release(&err);
      continue;
    }
    vd_buf_release(&err);
    vd_log(VD_LEVEL_NOTICE, "fleet_following",
           "fleet: following revision %s (running %s)", desired, running);
    uv_mutex_lock(&f->mu);
    if (f->pending)
      vd_bundle_unref(f->pending);
    f->pending = b;
    uv_mutex_unlock(&f->mu);
    uv_async_send(&f->wake);
  }
}

/* Main loop: queue the revision the thread loaded, as a reload, unless
 * this node runs it by now.  A reload here records its activation (and
 * with it the fleet's desired revision) before its workers take it, so
 * the thread can read the new desired revision while d->bundle is still
 * the old one; the main loop, which makes the switch, looks again. */
static void on_fleet_wake(uv_async_t *a) {
  vd_fleet_t *f = a->data;
  vd_bundle_t *b;
  uv_mutex_lock(&f->mu);
  b = f->pending;
  f->pending = NULL;
  uv_mutex_unlock(&f->mu);
  if (b && !f->d->stopping &&
      strcmp(vd_bundle_revision(b), vd_bundle_revision(f->d->bundle)) != 0)
    vd_admin_reload(f->d, VD_HISTORY_FLEET_TRIGGER, NULL, b);
  else if (b)
    vd_bundle_unref(b);
}

static void on_fleet_closed(uv_handle_t *h) {
  vd_fleet_t *f = h->data;
  if (f->pending)
    vd_bundle_unref(f->pending);
  vd_history_watch_close(f->watch);
  uv_mutex_destroy(&f->mu);
  free(f);
}

void vd_fleet_keep_desired(vd_daemon_t *d) {
  char rev[VD_REVISION_NAME_MAX], *msg = NULL;
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  if (d->opts.policies_win)
    return;
  if (vd_history_fleet_revision(d->opts.db, rev, sizeof rev, &msg) != 0) {
    vd_log(VD_LEVEL_WARNING, "fleet_revision_unread",
           "start-up: cannot read the fleet's revision (%s); starting with "
           "%s", msg ? msg : "?", d->opts.policies);
    free(msg);
    return;
  }
  if (!rev[0] || strcmp(rev, vd_bundle_revision(d->bundle)) == 0)
    return;
  if (vd_history_load_bundle(d->opts.db, rev, &b, &err) != 0) {
    vd_log(VD_LEVEL_WARNING, "fleet_revision_not_kept",
           "start-up: cannot load the fleet's revision %s (%s); starting "
           "with %s, and following the fleet once serving", rev,
           err.data ? err.data : "?", d->opts.policies);
  } else {
    vd_log(VD_LEVEL_NOTICE, "fleet_revision_kept",
           "start-up: the fleet's revision %s, not %s in %s; "
           "`verdict reload` (for the whole fleet) or --policies-win takes "
           "the directory", rev, vd_bundle_revision(d->bundle),
           d->opts.policies);
    vd_bundle_unref(d->bundle);
    d->bundle = b;
    snprintf(d->activated_by, sizeof d->activated_by, "startup-fleet");
  }
  vd_buf_release(&err);
}

int vd_fleet_start(vd_daemon_t *d) {
  vd_fleet_t *f;
  char *msg = NULL;
  if (!vd_history_is_postgres(d->opts.db))
    return 0;
  f = calloc(1, sizeof *f);
  if (!f)
    return VD_ENOMEM;
  f->d = d;
  /* refused at start-up: tried already (daemon.c) */
  snprintf(f->tried, sizeof f->tried, "%s", d->fleet_refused);
  if (vd_history_watch_open(&f->watch, d->opts.db, d->opts.node_id, &msg)) {
    vd_log(VD_LEVEL_ERR, "fleet_unavailable",
           "fleet: cannot follow the fleet's revision: %s", msg ? msg : "?");
    free(msg);
    free(f);
    return VD_EIO;
  }
  uv_mutex_init(&f->mu);
  uv_async_init(d->loop, &f->wake, on_fleet_wake);
  f->wake.data = f;
  d->fleet = f;
  if (uv_thread_create(&f->thread, fleet_main, f) != 0) {
    vd_log(VD_LEVEL_ERR, "fleet_unavailable",
           "fleet: no thread to follow the fleet's revision");
    vd_fleet_stop(d);
    return VD_EINTERNAL;
  }
  f->has_thread = 1;
  return 0;
}

void vd_fleet_stop(vd_daemon_t *d) {
  vd_fleet_t *f = d->fleet;
  if (!f)
    return;
  d->fleet = NULL;
  uv_mutex_lock(&f->mu);
  f->stopping = 1;
  uv_mutex_unlock(&f->mu);
  if (f->has_thread)
    uv_thread_join(&f->thread); /* within VD_FLEET_POLL_MS */
  uv_close((uv_handle_t *)&f->wake, on_fleet_closed);
}
