/*
 * engine.h - deciding one request against a loaded policy bundle.
 *
 * An engine is one sandboxed Lua state with every policy of one bundle
 * revision loaded: for each kind (a file national/<kind>.lua) and each
 * region that has its own file, the policy table that file returned, and
 * for every region code the bundle accepts, which of those decides.
 *
 * vd_engine_decide() takes a request line exactly as a client sent it,
 * decodes it, has vd_wire_read_request() (wire.h) read the request, and
 * fills a vd_decision_t: either the decision (result and trace as JSON) or
 * an error with its code, message and field path.  Requests are decided
 * deterministically: the policy sees only its input, the decision time and
 * the bundle.
 *
 * Threading: an engine belongs to one thread (each daemon worker builds its
 * own from the shared, immutable bundle).  It holds a reference to its
 * bundle until vd_engine_free().
 */
#ifndef VERDICT_ENGINE_H
#define VERDICT_ENGINE_H

#include <stdarg.h>
#include <stdint.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/sandbox.h"

typedef enum {
  VD_OP_DECIDE = 0,
  VD_OP_PING,
  VD_OP_STATUS,
  VD_OP_OTHER /* an operation the daemon handles (admin); name in op_name */
} vd_op_t;

/* Every buffer a decision holds, in one list: the struct declares them,
 * vd_decision_init/_reset/_release set up, empty and free each of them.
 * X(name) -- a vd_buf_t field. */
#define VD_DECISION_BUFS(X)                                                 \
  X(message)      /* error message (file:line for policy errors) */         \
  X(path)         /* error field path, "input.due_fen"; may be empty */     \
  X(id)           /* the request's "id" as JSON; "null" if none */          \
  X(result)       /* JSON object */                                         \
  X(trace)        /* JSON array of {rule, basis} */                         \
  X(complaint_id) /* these three from input, for indexes */                 \
  X(customer_id)                                                            \
  X(category)                                                               \
  X(facts)        /* JSON array of what the policy read from history */

typedef struct vd_decision {
  int code;          /* 0 for a decision, else the VD_E* error code */
  vd_op_t op;
  char op_name[32];  /* the request's "op" when op == VD_OP_OTHER */
  char kind[32];
  char region[32];
  char policy_region[32];
  char at[48];       /* decision time, as given or as stamped */
  int64_t at_ms;
  int at_stamped;    /* 1 when the request had no "at" */
  int facts_now;     /* replay: a question the record did not hold was
                      * answered from the history as it is now */
  int recounted;     /* a fast attempt was dropped and the decision made
                      * again, counted (see vd_engine_set_watch) */
  uint64_t elapsed_ns;
#define VD_DECISION_BUF_FIELD_(name) vd_buf_t name;
  VD_DECISION_BUFS(VD_DECISION_BUF_FIELD_)
#undef VD_DECISION_BUF_FIELD_
} vd_decision_t;

void vd_decision_init(vd_decision_t *d);
void vd_decision_reset(vd_decision_t *d);
void vd_decision_release(vd_decision_t *d);
/* Make d an error: CODE, the message from FMT, and PATH the field it names
 * (NULL: none).  Returns CODE. */
int vd_decision_fail(vd_decision_t *d, int code, const char *path,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int vd_decision_vfail(vd_decision_t *d, int code, const char *path,
                      const char *fmt, va_list ap);

typedef struct vd_engine vd_engine_t;

/* Load every policy of bundle B into a new sandbox.  On success *out owns a
 * reference to B.  On failure returns an error code and err holds
 * "file:line: message" for the first problem found. */
int vd_engine_new(vd_bundle_t *b, const vd_limits_t *lim, vd_engine_t **out,
                  vd_buf_t *err);
void vd_engine_free(vd_engine_t *e);

/* Decide the request line [line, line+len) (no newline).  now_ms stamps
 * requests that carry no "at".  Always fills d (reset first); returns
 * d->code.  For op != VD_OP_DECIDE, returns 0 with only id and op set. */
int vd_engine_decide(vd_engine_t *e, const char *line, size_t len,
                     int64_t now_ms, vd_decision_t *d);

/* Facts from history.  Policies see ctx.history with
 *   customer_decisions(customer_id, kind, days)  -> decisions of that kind
 *       for the customer in the `days` before the decision time
 *   similar_customers(region, category, hours)   -> distinct customers with
 *       a complaint of that category in the region in the `hours` before
 *   repeat_complaints(customer_id, complaint_id, days)    -> the customer's
 *       other complaints first decided in the `days` before
 *   over_head_complaints(customer_id, complaint_id, days) -> the customer's
 *       complaints (this one included) first appealed in the `days` before
 *   refunded_complaints(customer_id, complaint_id, days)  -> the customer's
 *       complaints (this one included) first offered compensation above
 *       zero in the `days` before
 *   (vd_history_count_complaints() in history.h defines the last three)
 * Live: answered by fn (the daemon asks its history reader).  Replay: the
 * next decision is answered from FACTS, the JSON its record holds, so it
 * sees exactly what it saw then.  Every answer a decision reads is written
 * to d->facts.  With neither, ctx.history is absent. */
typedef int (*vd_facts_fn)(void *ud, const char *query, const char *a,
                           const char *b, int64_t since_ms, int64_t until_ms,
                           int64_t *count);
void vd_engine_set_facts(vd_engine_t *e, vd_facts_fn fn, void *ud);
/* For the next vd_engine_decide() only (facts may be NULL: none read).
 * A question FACTS does not hold is an error, unless a facts function is
 * set too (replay of a candidate bundle that asks new questions): then it
 * is asked now, over the same window before the decision time, and
 * d->facts_now says so. */
void vd_engine_replay_facts(vd_engine_t *e, const char *facts);

/* Let the watchdog slot of the calling thread watch this engine's
 * decisions, which are then tried first without the count hook (see
 * watchdog.h and vd_engine_decide); NULL to always count.  The slot must
 * belong to the thread that calls vd_engine_decide. */
struct vd_watch_slot;
void vd_engine_set_watch(vd_engine_t *e, struct vd_watch_slot *slot);

/* Count every decide request of this engine (its outcome, duration and
 * recount: vd_metrics_decided() in metrics.h) in SHARD, which must belong
 * to the thread that calls vd_engine_decide; NULL to stop.  Live
 * decisions only: replays and checks leave it unset. */
struct vd_metrics_shard;
void vd_engine_set_metrics(vd_engine_t *e, struct vd_metrics_shard *shard);

vd_bundle_t *vd_engine_bundle(const vd_engine_t *e);
vd_sandbox_t *vd_engine_sandbox(vd_engine_t *e);

/* Region codes the bundle accepts, sorted, and the kinds it decides. */
size_t vd_engine_region_count(const vd_engine_t *e);
const char *vd_engine_region(const vd_engine_t *e, size_t i);
size_t vd_engine_kind_count(const vd_engine_t *e);
const char *vd_engine_kind(const vd_engine_t *e, size_t i);
/* Which region's file decides KIND for REGION ("national" for the
 * baseline), or NULL if the pair is unknown. */
const char *vd_engine_policy_region(vd_engine_t *e, const char *kind,
                                    const char *region);

/* The bundle path of REGION's file for KIND: "national/sla.lua" for the
 * region "national", else "regions/GD/sla.lua".  Region and kind names are
 * at most 31 bytes, so it fits VD_PATH_MAX. */
#define VD_PATH_MAX 96
void vd_engine_policy_path(char out[VD_PATH_MAX], const char *region,
                           const char *kind);

/* Push the policy table that decides KIND for REGION_WITH_FILE (a region
 * that has its own file, or "national").  Returns 0 or VD_ENOT_FOUND. */
int vd_engine_push_policy(vd_engine_t *e, const char *kind,
                          const char *region_with_file);

#endif
