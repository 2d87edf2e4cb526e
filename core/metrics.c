/*
 * metrics.c - the metrics registry and its Prometheus text exposition
 * (see include/verdict/metrics.h for the model and who calls what).
 *
 * Owns: the family table (names, label names, buckets), the shards and
 * their series, the active revision's name.
 *
 * A shard is an open-addressing hash table of series pointers, keyed by
 * family and label values.  Its writer looks series up without a lock:
 * only the writer ever changes the table, and it does so under the
 * shard's mutex, which vd_metrics_render() holds while it copies the
 * table.  A series never moves or goes before the registry does, so
 * render reads the cells after letting go of the mutex.  Cells are
 * _Atomic uint64_t written by one writer with a relaxed load and store
 * (no locked instruction on the hot path) and read by render with a
 * relaxed load: a scrape sees each cell whole, and a histogram's buckets,
 * sum and count as of slightly different moments, as Prometheus clients
 * do.
 *
 * Threads: a shard's writer (worker, history writer), any thread for the
 * shared shard under m->mu, any thread for render.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/metrics.h"

/* ------------------------------------------------------------------------
 * Families
 * ------------------------------------------------------------------------ */

typedef enum { COUNTER, GAUGE, HISTOGRAM } family_type_t;

typedef struct family {
  const char *name;
  const char *help;
  family_type_t type;
  int nlabels;
  const char *labels[VD_METRICS_MAX_LABELS];
  const uint64_t *bounds;   /* histogram: upper bounds, ascending, in the */
  size_t nbounds;           /*   observed unit; +Inf is implied */
  int exp10;                /* rendered value = observed / 10^exp10 */
} family_t;

/* Decisions take tens of microseconds; a slow policy up to the budget. */
static const uint64_t decide_ns[] = {
    10000,    25000,    50000,     100000,    250000,    500000,
    1000000,  2500000,  5000000,   10000000,  25000000,  50000000,
    100000000, 250000000, 1000000000};
/* A durable commit is an fsync or two: 100 us on NVMe to seconds on a
 * busy disk. */
static const uint64_t commit_ns[] = {
    100000,   250000,    500000,    1000000,    2500000,   5000000,
    10000000, 25000000,  50000000,  100000000,  250000000, 500000000,
    1000000000, 2500000000u, 5000000000u, 10000000000u};
/* Up to VD_HISTORY_BATCH_MAX records per batch (the buckets above it stay:
 * dashboards read them). */
static const uint64_t batch_records[] = {1,   2,   4,   8,    16,   32,
                                         64,  128, 256, 512,  1024, 2048,
                                         4096, 16384, 65536};

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static const family_t families[VD_M_COUNT] = {
#define FAMILY_(id, type, name, help) [VD_M_##id] = {name, help, type, 0, {0}, NULL, 0, 0},
    VD_METRICS_MAP(FAMILY_)
#undef FAMILY_
};

/* What the X-macro cannot say: labels and buckets, filled in by
 * family_init() into a copy. */
static family_t fam[VD_M_COUNT];
static pthread_once_t fam_once = PTHREAD_ONCE_INIT;

static void family_init(void) {
  memcpy(fam, families, sizeof fam);
#define LABELS_(id, ...)                                                     \
  do {                                                                       \
    static const char *const l_[] = {__VA_ARGS__};                           \
    size_t i_;                                                               \
    fam[VD_M_##id].nlabels = (int)N_(l_);                                    \
    for (i_ = 0; i_ < N_(l_); i_++)                                          \
      fam[VD_M_##id].labels[i_] = l_[i_];                                    \
  } while (0)
#define BUCKETS_(id, b, e)                                                   \
  (fam[VD_M_##id].bounds = (b), fam[VD_M_##id].nbounds = N_(b),              \
   fam[VD_M_##id].exp10 = (e))
  LABELS_(DECISIONS, "kind", "region", "code");
  LABELS_(DECISION_SECONDS, "kind");
  LABELS_(RELOADS, "result");
  LABELS_(CONNECTIONS, "transport");
  LABELS_(LUA_MEMORY, "worker");
  LABELS_(TLS_FAILURES, "reason");
  BUCKETS_(DECISION_SECONDS, decide_ns, 9);
  BUCKETS_(COMMIT_SECONDS, commit_ns, 9);
  BUCKETS_(BATCH_RECORDS, batch_records, 0);
#undef LABELS_
#undef BUCKETS_
}

/* Cells of a series: one value, or a histogram's buckets (+Inf last,
 * not cumulative) and its sum. */
static size_t cell_count(const family_t *f) {
  return f->type == HISTOGRAM ? f->nbounds + 2 : 1;
}

/* ------------------------------------------------------------------------
 * Series and shards
 * ------------------------------------------------------------------------ */

struct vd_metrics_series {
  vd_metric_id_t id;
  uint32_t hash;
  size_t labels_len;         /* bytes of labels, each value NUL-ended */
  const char *labels;        /* after the cells, in the same block */
  _Atomic uint64_t cell[];
};

/* vd_metrics_decided()'s look-ups, remembered: a hit costs two string
 * compares instead of two hashed look-ups.  Writer only. */
#define DECIDED_SLOTS 16
typedef struct decided_slot {
  char kind[32], region[32]; /* label values; "" for an empty slot */
  int code;
  vd_metrics_series_t *count, *duration;
} decided_slot_t;

struct vd_metrics_shard {
  vd_metrics_t *m;
  decided_slot_t decided[DECIDED_SLOTS];
  pthread_mutex_t mu;        /* changes of slot/cap/n vs render's copy */
  vd_metrics_series_t **slot;
  size_t cap, n;             /* cap a power of two, n <= cap / 2 */
  atomic_int retired;
  vd_metrics_shard_t *next;  /* m's list, under m->mu */
};

struct vd_metrics {
  pthread_mutex_t mu;        /* the shard list, the shared shard's
                              * updates, revision */
  vd_metrics_shard_t *shards;
  vd_metrics_shard_t *shared;
  char *revision;
};

static uint32_t hash_labels(vd_metric_id_t id, const char *const *labels,
                            int n) {
  uint32_t h = 2166136261u ^ (uint32_t)id;
  int i;
  for (i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)labels[i];
    do {
      h ^= *p;
      h *= 16777619u;
    } while (*p++);
  }
  return h;
}

static int same_labels(const vd_metrics_series_t *x,
                       const char *const *labels, int n) {
  const char *p = x->labels;
  int i;
  for (i = 0; i < n; i++) {
    size_t len = strlen(labels[i]);
    if ((size_t)(p - x->labels) + len >= x->labels_len ||
        memcmp(p, labels[i], len + 1) != 0)
      return 0;
    p += len + 1;
  }
  return 1;
}

static vd_metrics_series_t *series_alloc(vd_metric_id_t id, uint32_t hash,
                                         const char *const *labels, int n) {
  size_t cells = cell_count(&fam[id]), len = 0, i;
  vd_metrics_series_t *x;
  char *p;
  for (i = 0; i < (size_t)n; i++)
    len += strlen(labels[i]) + 1;
  x = calloc(1, sizeof *x + cells * sizeof x->cell[0] + len + 1);
  if (!x)
    return NULL;
  x->id = id;
  x->hash = hash;
  x->labels_len = len;
  p = (char *)&x->cell[cells];
  x->labels = p;
  for (i = 0; i < (size_t)n; i++) {
    size_t l = strlen(labels[i]) + 1;
    memcpy(p, labels[i], l);
    p += l;
  }
  for (i = 0; i < cells; i++)
    atomic_init(&x->cell[i], 0);
  return x;
}

/* Under s->mu: put X in a table twice the size when it is half full. */
static int shard_insert(vd_metrics_shard_t *s, vd_metrics_series_t *x) {
  size_t i;
  if ((s->n + 1) * 2 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16, j;
    vd_metrics_series_t **slot = calloc(cap, sizeof *slot);
    if (!slot)
      return VD_ENOMEM;
    for (j = 0; j < s->cap; j++) {
      vd_metrics_series_t *y = s->slot[j];
      if (!y)
        continue;
      for (i = y->hash & (cap - 1); slot[i]; i = (i + 1) & (cap - 1))
        ;
      slot[i] = y;
    }
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
  }
  for (i = x->hash & (s->cap - 1); s->slot[i]; i = (i + 1) & (s->cap - 1))
    ;
  s->slot[i] = x;
  s->n++;
  return 0;
}

vd_metrics_series_t *vd_metrics_series(vd_metrics_shard_t *s,
                                       vd_metric_id_t id,
                                       const char *const *labels) {
  int n = fam[id].nlabels;
  uint32_t h;
  vd_metrics_series_t *x;
  size_t i;
  if (n && !labels)
    return NULL; /* a caller's mistake: counted nowhere, never a crash */
  h = hash_labels(id, labels, n);
  if (s->cap) {
    for (i = h & (s->cap - 1); (x = s->slot[i]) != NULL;
         i = (i + 1) & (s->cap - 1))
      if (x->hash == h && x->id == id && same_labels(x, labels, n))
        return x;
  }
  x = series_alloc(id, h, labels, n);
  if (!x)
    return NULL;
  pthread_mutex_lock(&s->mu);
  if (shard_insert(s, x)) {
    pthread_mutex_unlock(&s->mu);
    free(x);
    return NULL;
  }
  pthread_mutex_unlock(&s->mu);
  return x;
}

static void shard_free(vd_metrics_shard_t *s) {
  size_t i;
  for (i = 0; i < s->cap; i++)
    free(s->slot[i]);
  free(s->slot);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int vd_metrics_shard_new(vd_metrics_t *m, vd_metrics_shard_t **out) {
  vd_metrics_shard_t *s = calloc(1, sizeof *s);
  *out = NULL;
  if (!s)
    return VD_ENOMEM;
  s->m = m;
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->retired, 0);
  pthread_mutex_lock(&m->mu);
  s->next = m->shards;
  m->shards = s;
  pthread_mutex_unlock(&m->mu);
  *out = s;
  return 0;
}

void vd_metrics_shard_retire(vd_metrics_shard_t *s) {
  if (s)
    atomic_store(&s->retired, 1);
}

int vd_metrics_new(vd_metrics_t **out) {
  vd_metrics_t *m;
  vd_metric_id_t id;
  *out = NULL;
  pthread_once(&fam_once, family_init);
  m = calloc(1, sizeof *m);
  if (!m)
    return VD_ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  if (vd_metrics_shard_new(m, &m->shared))
    goto fail;
  /* every series without labels exists from the start, at 0 */
  for (id = 0; id < VD_M_COUNT; id++)
    if (fam[id].nlabels == 0 && !vd_metrics_series(m->shared, id, NULL))
      goto fail;
  *out = m;
  return 0;
fail:
  vd_metrics_free(m);
  return VD_ENOMEM;
}

void vd_metrics_free(vd_metrics_t *m) {
  vd_metrics_shard_t *s, *next;
  if (!m)
    return;
  for (s = m->shards; s; s = next) {
    next = s->next;
    shard_free(s);
  }
  free(m->revision);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* ------------------------------------------------------------------------
 * Updates
 * ------------------------------------------------------------------------ */

/* One writer per cell: a plain load and store, never a locked add. */
static inline void cell_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

void vd_metrics_series_add(vd_metrics_series_t *x, uint64_t n) {
  if (x)
    cell_add(&x->cell[0], n);
}

void vd_metrics_series_set(vd_metrics_series_t *x, int64_t v) {
  if (x)
    atomic_store_explicit(&x->cell[0], (uint64_t)v, memory_order_relaxed);
}

void vd_metrics_series_move(vd_metrics_series_t *x, int64_t delta) {
  if (x)
    cell_add(&x->cell[0], (uint64_t)delta); /* two's complement */
}

void vd_metrics_series_observe(vd_metrics_series_t *x, uint64_t v) {
  const family_t *f;
  size_t i;
  if (!x)
    return;
  f = &fam[x->id];
  for (i = 0; i < f->nbounds && v > f->bounds[i]; i++)
    ;
  cell_add(&x->cell[i], 1);
  cell_add(&x->cell[f->nbounds + 1], v);
}

void vd_metrics_inc(vd_metrics_shard_t *s, vd_metric_id_t id,
                    const char *const *labels, uint64_t n) {
  vd_metrics_series_add(vd_metrics_series(s, id, labels), n);
}

void vd_metrics_gauge_set(vd_metrics_shard_t *s, vd_metric_id_t id,
                          const char *const *labels, int64_t v) {
  vd_metrics_series_set(vd_metrics_series(s, id, labels), v);
}

void vd_metrics_gauge_add(vd_metrics_shard_t *s, vd_metric_id_t id,
                          const char *const *labels, int64_t delta) {
  vd_metrics_series_move(vd_metrics_series(s, id, labels), delta);
}

void vd_metrics_observe(vd_metrics_shard_t *s, vd_metric_id_t id,
                        const char *const *labels, uint64_t v) {
  vd_metrics_series_observe(vd_metrics_series(s, id, labels), v);
}

void vd_metrics_count(vd_metrics_t *m, vd_metric_id_t id,
                      const char *const *labels, uint64_t n) {
  pthread_mutex_lock(&m->mu);
  vd_metrics_inc(m->shared, id, labels, n);
  pthread_mutex_unlock(&m->mu);
}

void vd_metrics_set(vd_metrics_t *m, vd_metric_id_t id,
                    const char *const *labels, int64_t v) {
  pthread_mutex_lock(&m->mu);
  vd_metrics_gauge_set(m->shared, id, labels, v);
  pthread_mutex_unlock(&m->mu);
}

void vd_metrics_set_revision(vd_metrics_t *m, const char *revision) {
  char *copy = revision ? strdup(revision) : NULL;
  pthread_mutex_lock(&m->mu);
  free(m->revision);
  m->revision = copy; /* NULL when the copy failed: not rendered */
  pthread_mutex_unlock(&m->mu);
}

void vd_metrics_decided(vd_metrics_shard_t *s, const vd_decision_t *d) {
  const char *labels[3];
  int resolved = d->policy_region[0] != '\0';
  decided_slot_t *c;
  labels[0] = resolved || d->code == VD_EUNKNOWN_REGION ? d->kind : "unknown";
  labels[1] = resolved ? d->region : "unknown";
  c = &s->decided[((unsigned)d->code + (unsigned char)labels[0][0] * 3u +
                   (unsigned char)labels[1][0] * 5u +
                   (unsigned char)labels[1][1] * 7u) % DECIDED_SLOTS];
  if (c->code != d->code || strcmp(c->kind, labels[0]) != 0 ||
      strcmp(c->region, labels[1]) != 0 || !c->count) {
    labels[2] = d->code ? vd_err_name(d->code) : "ok";
    c->count = vd_metrics_series(s, VD_M_DECISIONS, labels);
    c->duration = vd_metrics_series(s, VD_M_DECISION_SECONDS, labels);
    /* kind and region fit: both come from 32-byte fields of d */
    c->code = d->code;
    snprintf(c->kind, sizeof c->kind, "%s", labels[0]);
    snprintf(c->region, sizeof c->region, "%s", labels[1]);
  }
  vd_metrics_series_add(c->count, 1);
  vd_metrics_series_observe(c->duration, d->elapsed_ns);
  if (d->recounted)
    vd_metrics_inc(s, VD_M_RECOUNTS, NULL, 1);
}

/* ------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------ */

typedef struct entry {
  vd_metrics_series_t *x;
  int retired;
} entry_t;

static int entry_cmp(const void *a, const void *b) {
  const vd_metrics_series_t *x = ((const entry_t *)a)->x;
  const vd_metrics_series_t *y = ((const entry_t *)b)->x;
  size_t n;
  int c;
  if (x->id != y->id)
    return x->id < y->id ? -1 : 1;
  n = x->labels_len < y->labels_len ? x->labels_len : y->labels_len;
  c = memcmp(x->labels, y->labels, n);
  if (c)
    return c;
  return x->labels_len < y->labels_len ? -1 : x->labels_len > y->labels_len;
}

/* Text escaped as the exposition format wants: \ and newline always,
 * " too inside a label value. */
static void add_escaped(vd_buf_t *out, const char *s, int quote) {
  for (; *s; s++) {
    if (*s == '\\')
      vd_buf_adds(out, "\\\\");
    else if (*s == '\n')
      vd_buf_adds(out, "\\n");
    else if (*s == '"' && quote)
      vd_buf_adds(out, "\\\"");
    else
      vd_buf_addc(out, *s);
  }
}

/* V / 10^EXP exactly, in decimal, without trailing zeros: 1500000 with
 * exp 9 is "0.0015". */
static void add_scaled(vd_buf_t *out, uint64_t v, int exp) {
  uint64_t div = 1, frac;
  char digits[24];
  int i, n;
  for (i = 0; i < exp; i++)
    div *= 10;
  vd_buf_add_int(out, (long long)(v / div));
  frac = v % div;
  if (!frac)
    return;
  for (n = exp; n > 0 && frac % 10 == 0; n--)
    frac /= 10;
  for (i = n - 1; i >= 0; i--, frac /= 10)
    digits[i] = (char)('0' + frac % 10);
  vd_buf_addc(out, '.');
  vd_buf_add(out, digits, (size_t)n);
}

static void add_u64(vd_buf_t *out, uint64_t v) {
  vd_buf_addf(out, "%llu", (unsigned long long)v);
}

/* name{l1="v1",...,EXTRA} with the series' label values; EXTRA (the
 * `le` of a bucket) may be NULL. */
static void add_series_name(vd_buf_t *out, const char *name,
                            const char *suffix, const family_t *f,
                            const vd_metrics_series_t *x,
                            const char *extra) {
  const char *p = x->labels;
  int i;
  vd_buf_adds(out, name);
  vd_buf_adds(out, suffix);
  if (f->nlabels == 0 && !extra)
    return;
  vd_buf_addc(out, '{');
  for (i = 0; i < f->nlabels; i++) {
    vd_buf_addf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
    add_escaped(out, p, 1);
    vd_buf_addc(out, '"');
    p += strlen(p) + 1;
  }
  if (extra) {
    if (f->nlabels)
      vd_buf_addc(out, ',');
    vd_buf_adds(out, extra);
  }
  vd_buf_addc(out, '}');
}

/* One series: the sum of CELLS over its shards. */
static void add_sample(vd_buf_t *out, const family_t *f,
                       const vd_metrics_series_t *x, const uint64_t *cells) {
  if (f->type == COUNTER) {
    add_series_name(out, f->name, "", f, x, NULL);
    vd_buf_addc(out, ' ');
    add_u64(out, cells[0]);
    vd_buf_addc(out, '\n');
  } else if (f->type == GAUGE) {
    add_series_name(out, f->name, "", f, x, NULL);
    vd_buf_addc(out, ' ');
    vd_buf_add_int(out, (long long)(int64_t)cells[0]);
    vd_buf_addc(out, '\n');
  } else {
    uint64_t cum = 0;
    size_t i;
    vd_buf_t le = VD_BUF_INIT;
    for (i = 0; i <= f->nbounds; i++) {
      cum += cells[i];
      vd_buf_reset(&le);
      vd_buf_adds(&le, "le=\"");
      if (i < f->nbounds)
        add_scaled(&le, f->bounds[i], f->exp10);
      else
        vd_buf_adds(&le, "+Inf");
      vd_buf_addc(&le, '"');
      add_series_name(out, f->name, "_bucket", f, x, le.data);
      vd_buf_addc(out, ' ');
      add_u64(out, cum);
      vd_buf_addc(out, '\n');
    }
    vd_buf_release(&le);
    add_series_name(out, f->name, "_sum", f, x, NULL);
    vd_buf_addc(out, ' ');
    add_scaled(out, cells[f->nbounds + 1], f->exp10);
    vd_buf_addc(out, '\n');
    add_series_name(out, f->name, "_count", f, x, NULL);
    vd_buf_addc(out, ' ');
    add_u64(out, cum);
    vd_buf_addc(out, '\n');
  }
}

static void add_head(vd_buf_t *out, const char *name, const char *help,
                     const char *type) {
  vd_buf_addf(out, "# HELP %s ", name);
  add_escaped(out, help, 0);
  vd_buf_addf(out, "\n# TYPE %s %s\n", name, type);
}

void vd_metrics_render(vd_metrics_t *m, vd_buf_t *out) {
  static const char *const type_name[] = {"counter", "gauge", "histogram"};
  entry_t *e = NULL;
  size_t n = 0, cap = 0, i, j;
  uint64_t cells[64];
  vd_metrics_shard_t *s;
  char *revision = NULL;
  vd_metric_id_t id;

  /* copy every shard's table (the series themselves stay put) */
  pthread_mutex_lock(&m->mu);
  for (s = m->shards; s; s = s->next) {
    int retired = atomic_load(&s->retired);
    pthread_mutex_lock(&s->mu);
    if (n + s->n > cap) {
      size_t c = (n + s->n) * 2;
      entry_t *ne = realloc(e, c * sizeof *e);
      if (!ne) {
        pthread_mutex_unlock(&s->mu);
        continue; /* this shard is missing from this scrape */
      }
      e = ne;
      cap = c;
    }
    for (i = 0; i < s->cap; i++)
      if (s->slot[i]) {
        e[n].x = s->slot[i];
        e[n].retired = retired;
        n++;
      }
    pthread_mutex_unlock(&s->mu);
  }
  if (m->revision)
    revision = strdup(m->revision);
  pthread_mutex_unlock(&m->mu);
  if (n)
    qsort(e, n, sizeof *e, entry_cmp);

  i = 0;
  for (id = 0; id < VD_M_COUNT; id++) {
    const family_t *f = &fam[id];
    size_t nc = cell_count(f), k;
    add_head(out, f->name, f->help, type_name[f->type]);
    while (i < n && e[i].x->id == id) {
      int any = 0;
      memset(cells, 0, nc * sizeof cells[0]);
      for (j = i; j < n && entry_cmp(&e[i], &e[j]) == 0; j++) {
        if (f->type == GAUGE && e[j].retired)
          continue;
        any = 1;
        for (k = 0; k < nc; k++)
          cells[k] += atomic_load_explicit(&e[j].x->cell[k],
                                           memory_order_relaxed);
      }
      if (any)
        add_sample(out, f, e[i].x, cells);
      i = j;
    }
  }
  add_head(out, "verdict_policy_revision_info",
           "The policy revision that decides now (value 1).", "gauge");
  if (revision) {
    vd_buf_adds(out, "verdict_policy_revision_info{revision=\"");
    add_escaped(out, revision, 1);
    vd_buf_adds(out, "\"} 1\n");
  }
  free(revision);
  free(e);
}

int64_t vd_heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 mi = mallinfo2();
  return (int64_t)(mi.uordblks + mi.hblkhd);
#else
  return -1;
#endif
}
