/*
 * metrics.h - verdictd's counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4, what GET /metrics serves).
 *
 * A registry (vd_metrics_t) holds a fixed set of metric families, the
 * vd_metric_id_t below; each family has label names, and a series per
 * combination of label values seen.  Values live in shards:
 *
 *   - a shard (vd_metrics_shard_t) belongs to one writer thread (a
 *     worker, the history writer).  Updating a series that the shard has
 *     already seen takes no lock and no atomic read-modify-write: the
 *     owner loads and stores its own cells (relaxed atomics, so a render
 *     on another thread reads whole values).  Only the first update of a
 *     new label combination takes the shard's mutex, to add the series.
 *     "One writer" may also mean several threads that take turns under a
 *     lock of their own (the history's queue mutex, for queue depth).
 *   - the registry's own shared shard, updated through the functions that
 *     take a vd_metrics_t (vd_metrics_count, vd_metrics_set): any thread,
 *     under the registry's mutex; for the rare events (reloads).
 *
 * vd_metrics_render() sums every shard's series of the same family and
 * label values, so a counter is the total over threads, and a gauge that
 * several threads move (open connections: +1 and -1 from each worker) is
 * their sum.  A gauge that is *set* (queue depth, Lua memory) must be set
 * by one shard per label combination.  Shards are never freed before the
 * registry, so counters never go backwards when a thread ends; a retired
 * shard's (vd_metrics_shard_retire) gauges stop being rendered.
 *
 * Units: time histograms are observed in nanoseconds and rendered in
 * seconds; sizes in their own unit (records, bytes).  Label values are
 * any bytes (escaped when rendered); the engine caps what clients can put
 * in them (vd_metrics_decided()).
 *
 * What calls what (the daemon wires the last four; the library does the
 * first two itself once given a shard or the registry):
 *
 *   verdict_decisions_total{kind,region,code}        vd_engine_set_metrics()
 *   verdict_decision_duration_seconds{kind}          (engine.h), each worker
 *   verdict_watchdog_recounts_total                  its own shard
 *   verdict_history_commit_duration_seconds          vd_history_set_metrics()
 *   verdict_history_batch_records                    (history.h), once
 *   verdict_history_queue_depth                      after vd_history_open()
 *   verdict_reloads_total{result}                    vd_metrics_count(m,
 *       VD_M_RELOADS, (const char *[]){"ok"|"failed"}, 1) per reload
 *   verdict_policy_revision_info{revision}           vd_metrics_set_revision()
 *       at start-up and on every activation
 *   verdict_open_connections{transport}              vd_metrics_gauge_add()
 *       on a worker's shard: +1 when it takes a connection, -1 when it
 *       closes ("unix", "tcp", "tcp_tls", "http", "https")
 *   verdict_lua_memory_bytes{worker}                 vd_metrics_gauge_set()
 *       on the worker's shard, after each decision or on a timer, with
 *       vd_engine_sandbox(e)->used; worker = its index in decimal
 *   verdict_heap_in_use_bytes                        vd_metrics_set() with
 *       vd_heap_in_use() before each rendering
 *
 * Threading as said above; vd_metrics_new/free on one thread, free after
 * every writer has stopped.
 */
#ifndef VERDICT_METRICS_H
#define VERDICT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "verdict/buf.h"

struct vd_decision;

/* X(ID, type, "name", "help") -- the families, in the order rendered.
 * Their label names and buckets are in metrics.c's family_init(): a new
 * family is a line here and, if it has labels or is a histogram, a line
 * there (and a row in docs/protocol.md's table, which a test compares). */
#define VD_METRICS_MAP(X)                                                    \
  X(DECISIONS, COUNTER, "verdict_decisions_total",                           \
    "Decision requests answered, by kind, region and outcome code (ok, or "  \
    "the error code the wire protocol sent).")                               \
  X(DECISION_SECONDS, HISTOGRAM, "verdict_decision_duration_seconds",        \
    "Time to decide one request (decode, policy, encode), by kind.")         \
  X(RECOUNTS, COUNTER, "verdict_watchdog_recounts_total",                    \
    "Decisions decided again with instruction counting after the "           \
    "watchdog interrupted their fast attempt.")                              \
  X(COMMIT_SECONDS, HISTOGRAM, "verdict_history_commit_duration_seconds",    \
    "Time the history writer took to write and commit one batch.")           \
  X(BATCH_RECORDS, HISTOGRAM, "verdict_history_batch_records",               \
    "Records in each batch the history writer committed.")                   \
  X(QUEUE_DEPTH, GAUGE, "verdict_history_queue_depth",                       \
    "Records queued for the history writer and not yet taken.")              \
  X(RELOADS, COUNTER, "verdict_reloads_total",                               \
    "Policy reloads and activations, by result (ok or failed).")             \
  X(CONNECTIONS, GAUGE, "verdict_open_connections",                          \
    "Client connections open now, by transport.")                            \
  X(LUA_MEMORY, GAUGE, "verdict_lua_memory_bytes",                           \
    "Bytes held by each worker's Lua state.")                                \
  X(HEAP_BYTES, GAUGE, "verdict_heap_in_use_bytes",                        \
    "Bytes the process's allocator holds allocated now, Lua states "         \
    "included; falls when memory is freed, unlike the resident set.")        \
  X(TLS_FAILURES, COUNTER, "verdict_tls_handshake_failures_total",           \
    "TLS handshakes refused or failed on the HTTP and TCP listeners, by "    \
    "reason.")

typedef enum {
#define VD_METRIC_ID_(id, type, name, help) VD_M_##id,
  VD_METRICS_MAP(VD_METRIC_ID_)
#undef VD_METRIC_ID_
  VD_M_COUNT
} vd_metric_id_t;

/* The largest number of labels a family has. */
#define VD_METRICS_MAX_LABELS 3

typedef struct vd_metrics vd_metrics_t;
typedef struct vd_metrics_shard vd_metrics_shard_t;
/* One series: a family and its label values.  Owned by its shard. */
typedef struct vd_metrics_series vd_metrics_series_t;

/* A new, empty registry (series without labels start at 0 and are always
 * rendered).  0 or VD_ENOMEM. */
int vd_metrics_new(vd_metrics_t **out);
/* Frees the registry, its shards and their series.  NULL is allowed. */
void vd_metrics_free(vd_metrics_t *m);

/* A new shard of M for one writer (see above), owned by M.  0 or
 * VD_ENOMEM.  Any thread. */
int vd_metrics_shard_new(vd_metrics_t *m, vd_metrics_shard_t **out);
/* Its writer has gone: its counters and histograms still count, its
 * gauges are no longer rendered.  The shard must not be updated again. */
void vd_metrics_shard_retire(vd_metrics_shard_t *s);

/* The series of family ID with LABELS (as many values as the family has
 * label names; NULL when it has none) in shard S, added if new.  NULL
 * when it cannot be allocated (or LABELS is NULL for a family that has
 * labels).  The pointer stays valid for the
 * registry's life: keep it to update without the look-up.  S's writer. */
vd_metrics_series_t *vd_metrics_series(vd_metrics_shard_t *s,
                                       vd_metric_id_t id,
                                       const char *const *labels);

/* Updates of one series, by its shard's writer.  A NULL series is
 * ignored (the allocation that would have made it failed). */
void vd_metrics_series_add(vd_metrics_series_t *x, uint64_t n);    /* counter */
void vd_metrics_series_set(vd_metrics_series_t *x, int64_t v);     /* gauge */
void vd_metrics_series_move(vd_metrics_series_t *x, int64_t delta); /* gauge */
/* Histogram: V in the family's unit (nanoseconds for _seconds). */
void vd_metrics_series_observe(vd_metrics_series_t *x, uint64_t v);

/* The same, looking the series up in shard S first. */
void vd_metrics_inc(vd_metrics_shard_t *s, vd_metric_id_t id,
                    const char *const *labels, uint64_t n);
void vd_metrics_gauge_set(vd_metrics_shard_t *s, vd_metric_id_t id,
                          const char *const *labels, int64_t v);
void vd_metrics_gauge_add(vd_metrics_shard_t *s, vd_metric_id_t id,
                          const char *const *labels, int64_t delta);
void vd_metrics_observe(vd_metrics_shard_t *s, vd_metric_id_t id,
                        const char *const *labels, uint64_t v);

/* Any thread, under the registry's mutex: add N to a counter, set a
 * gauge, in the registry's shared shard. */
void vd_metrics_count(vd_metrics_t *m, vd_metric_id_t id,
                      const char *const *labels, uint64_t n);
void vd_metrics_set(vd_metrics_t *m, vd_metric_id_t id,
                    const char *const *labels, int64_t v);

/* verdict_policy_revision_info{revision="REVISION"} 1: the revision
 * that decides now (NULL: none, the metric is not rendered).  Copied.
 * Any thread. */
void vd_metrics_set_revision(vd_metrics_t *m, const char *revision);

/* The engine's hot path (vd_engine_decide, once per decide request):
 * counts D in verdict_decisions_total and its duration, and a recount.
 * Labels a client could make up are not copied into series: a kind the
 * bundle does not decide and a region it does not accept are counted as
 * kind="unknown" / region="unknown" (what D's code and policy_region say
 * the engine resolved). */
void vd_metrics_decided(vd_metrics_shard_t *s, const struct vd_decision *d);

/* Bytes the allocator holds allocated now (glibc's mallinfo2(): in use in
 * its arenas plus mmap()ed blocks), or -1 where the C library cannot say.
 * Unlike the resident set, it falls when memory is freed: a leak is a
 * growth of this figure.  Takes each arena's lock once: for a status or a
 * scrape, not for every request.  Any thread. */
int64_t vd_heap_in_use(void);

/* Append the text exposition of every family to OUT: # HELP and # TYPE
 * lines, then the series sorted by label values.  Any thread; it takes
 * each shard's mutex in turn, never a writer's hot path. */
void vd_metrics_render(vd_metrics_t *m, vd_buf_t *out);

/* Content-Type of what vd_metrics_render() writes. */
#define VD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
