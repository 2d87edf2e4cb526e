/*
 * history_import.c - moving one node's SQLite history into a fleet's
 * PostgreSQL history (`verdict history import`, docs/fleet.md): every
 * stored revision, every activation (the node's chain of activations
 * there, times and causes kept), then every decision in seq order,
 * appended to a node's chain there through the same writer a daemon
 * uses, so the imported rows are hashed, batched and committed exactly
 * as the node would have written them.
 *
 * Built on the public history API (history.h) and, for the activations,
 * history_pg.c's vd_hist_pg_import_activation(); owns nothing past a
 * call.  Runs on its caller's thread (plus the writer's).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"

/* A stored row's text column: NULL stays NULL. */
static const char *text_of(const vd_history_value_t *v, size_t *len) {
  if (len)
    *len = v->text ? v->len : 0;
  return v->text;
}

static void row_record(const vd_history_value_t *row, vd_record_t *r) {
  memset(r, 0, sizeof *r);
  r->decision_id = text_of(&row[VD_HISTORY_DECISION_ID], NULL);
  r->received_ms = row[VD_HISTORY_RECEIVED_MS].i;
  r->at = text_of(&row[VD_HISTORY_AT], NULL);
  r->at_ms = row[VD_HISTORY_AT_MS].i;
  r->kind = text_of(&row[VD_HISTORY_KIND], NULL);
  r->region = text_of(&row[VD_HISTORY_REGION], NULL);
  r->policy_region = text_of(&row[VD_HISTORY_POLICY_REGION], NULL);
  r->revision = text_of(&row[VD_HISTORY_REVISION], NULL);
  r->complaint_id = text_of(&row[VD_HISTORY_COMPLAINT_ID], NULL);
  r->customer_id = text_of(&row[VD_HISTORY_CUSTOMER_ID], NULL);
  r->category = text_of(&row[VD_HISTORY_CATEGORY], NULL);
  r->request = text_of(&row[VD_HISTORY_REQUEST], &r->request_len);
  r->result = text_of(&row[VD_HISTORY_RESULT], &r->result_len);
  r->trace = text_of(&row[VD_HISTORY_TRACE], &r->trace_len);
  r->facts = text_of(&row[VD_HISTORY_FACTS], &r->facts_len);
  r->error_code = text_of(&row[VD_HISTORY_ERROR_CODE], NULL);
  r->error_message = text_of(&row[VD_HISTORY_ERROR_MESSAGE], NULL);
  r->error_path = text_of(&row[VD_HISTORY_ERROR_PATH], NULL);
  r->elapsed_us = row[VD_HISTORY_ELAPSED_US].i;
  r->client = text_of(&row[VD_HISTORY_CLIENT], NULL);
}

/* Wait until the writer has reported submissions 1..LAST; 0, or VD_EIO
 * when any batch failed. */
static int wait_done(vd_history_t *h, uint64_t last, uint64_t *done) {
  vd_history_done_t d[64];
  int rc = 0;
  while (*done < last) {
    size_t i, n = vd_history_drain(h, 0, d, 64);
    for (i = 0; i < n; i++) {
      if (d[i].status)
        rc = VD_EIO;
      *done = d[i].last;
    }
    if (!n) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return rc;
}

/* Every revision the SQLite file's decisions and activations name, from
 * its admin listing, stored in H. */
static int copy_revisions(const char *from, vd_history_t *h, int64_t *nrev,
                          vd_buf_t *err) {
  vd_buf_t list = VD_BUF_INIT;
  const char *p;
  int rc = vd_history_revisions_json(from, &list, err);
  /* the listing's "revisions":[{"revision":"sha256:...",...}] */
  p = list.data ? strstr(list.data, "\"revisions\":[") : NULL;
  while (rc == 0 && p && (p = strstr(p, "{\"revision\":\""))) {
    char rev[80];
    vd_bundle_file_t *files;
    size_t n;
    char *msg = NULL;
    p += 13;
    snprintf(rev, sizeof rev, "%.*s", (int)strcspn(p, "\""), p);
    rc = vd_history_load_revision(from, rev, &files, &n, &msg);
    if (rc == 0) {
      rc = vd_history_store_revision(h, rev, files, n, &msg);
      vd_history_free_files(files, n);
    }
    if (rc) {
      vd_buf_reset(err);
      vd_buf_addf(err, "revision %s: %s", rev, msg ? msg : "?");
    } else {
      (*nrev)++;
    }
    free(msg);
  }
  vd_buf_release(&list);
  return rc;
}

typedef struct act_copy {
  vd_history_t *h;
  int64_t *n;
  vd_buf_t *err;
} act_copy_t;

static int copy_activation(const vd_history_activation_t *a, void *arg) {
  act_copy_t *c = arg;
  char *msg = NULL;
  int rc = vd_hist_pg_import_activation(c->h, a, &msg);
  if (rc) {
    vd_buf_reset(c->err);
    vd_buf_addf(c->err, "activation %" PRId64 ": %s", a->id,
                msg ? msg : vd_err_desc(rc));
  } else {
    (*c->n)++;
  }
  free(msg);
  return rc;
}

/* NODE must have no chain in DB yet: an import is the start of one.  The
 * destination is verified on the way (vd_history_verify_fleet()). */
static int node_is_new(const char *db, const char *node, vd_buf_t *err) {
  vd_history_node_head_t *heads = NULL;
  vd_verify_report_t rep;
  size_t n = 0, i;
  char fleet[65];
  int rc = vd_history_verify_fleet(db, NULL, 0, &rep, &heads, &n, fleet);
  if (rc == VD_EINVALID && rep.problem == VD_VERIFY_OK) {
    rc = 0; /* no verdict history there yet: the import creates it */
  } else if (rc) {
    vd_buf_addf(err, "import: %s", rep.message);
  }
  for (i = 0; rc == 0 && i < n; i++)
    if (strcmp(heads[i].node, node) == 0 &&
        (heads[i].seq > 0 || heads[i].activations > 0)) {
      if (heads[i].seq > 0)
        vd_buf_addf(err, "import: node '%s' already has %" PRId64
                         " decisions", node, heads[i].seq);
      else
        vd_buf_addf(err, "import: node '%s' already has %" PRId64
                         " activations", node, heads[i].activations);
      vd_buf_adds(err, " in the fleet's history; import under a new "
                       "--node-id");
      rc = VD_EINVALID;
    }
  free(heads);
  return rc;
}

int vd_history_import(const char *from, const char *db, const char *node,
                      vd_history_import_t *out, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  vd_verify_report_t rep;
  vd_history_filter_t all;
  vd_history_rows_t *rows = NULL;
  vd_history_t *h = NULL;
  const vd_history_value_t *row;
  uint64_t seq = 0, done = 0;
  char *msg = NULL;
  int rc;
  memset(out, 0, sizeof *out);
  memset(&all, 0, sizeof all);
  if (errmsg)
    *errmsg = NULL;
  if (vd_history_is_postgres(from) || !vd_history_is_postgres(db)) {
    vd_buf_adds(&err, "import: --from names a SQLite file, --db a "
                      "PostgreSQL history");
    rc = VD_EINVALID;
    goto out;
  }
  /* only an intact history is moved, and its head is said, so the old
   * anchors can be checked one last time */
  rc = vd_history_verify(from, &rep);
  if (rc) {
    vd_buf_addf(&err, "import: %s does not verify: %s", from, rep.message);
    goto out;
  }
  snprintf(out->source_head, sizeof out->source_head, "%" PRId64 ":%s",
           rep.records, rep.records ? rep.head : "");
  rc = node_is_new(db, node, &err);
  if (rc)
    goto out;
  rc = vd_history_open_node(&h, db, node, VD_LOG_DURABLE, 1, NULL, NULL,
                            &msg);
  if (rc) {
    vd_buf_adds(&err, msg ? msg : "cannot open the history");
    goto out;
  }
  rc = copy_revisions(from, h, &out->revisions, &err);
  if (rc == 0) {
    act_copy_t c = {h, &out->activations, &err};
    rc = vd_history_each_activation(from, copy_activation, &c, &err);
  }
  if (rc == 0)
    rc = vd_history_rows_open(&rows, from, &all, &err);
  while (rc == 0 && (rc = vd_history_rows_next(rows, &row)) == 1) {
    vd_record_t r;
    uint64_t s;
    row_record(row, &r);
    rc = vd_history_submit(h, 0, &r, &s);
    if (rc == 0) {
      seq = s;
      out->records++;
    } else {
      vd_buf_addf(&err, "import: record %" PRId64 " was not queued: %s",
                  row[VD_HISTORY_SEQ].i, vd_err_desc(rc));
    }
  }
  if (rc < 0 && !err.len)
    vd_buf_adds(&err, vd_history_rows_errmsg(rows));
  if (rc == 0 && wait_done(h, seq, &done) != 0) {
    vd_buf_adds(&err, "import: a batch was not stored (nothing is half "
                      "imported within a batch; the database's log says "
                      "why)");
    rc = VD_EIO;
  }
out:
  vd_history_rows_close(rows);
  vd_history_close(h);
  free(msg);
  if (rc && !err.len)
    vd_buf_adds(&err, vd_err_desc(rc));
  if (errmsg && rc)
    *errmsg = vd_buf_detach(&err, NULL);
  vd_buf_release(&err);
  return rc;
}
