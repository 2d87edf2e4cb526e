/*
 * idem.c - idempotency keys: a retried request answered from the first.
 *
 * A request that carries a key (the socket's "idem", HTTP's
 * Idempotency-Key) and whose key, in its client's scope, was seen within
 * VD_IDEM_WINDOW_MS with the same request bytes is answered with the
 * first request's answer (its decision_id included): it is neither
 * decided nor recorded again.  The same key with other bytes is refused
 * (conflict); a retry while the first is still being decided or waits
 * for its record's commit is refused as busy (the client retries).  A
 * first request whose record could not be stored forgets its key, so
 * that the retry is decided.
 *
 * The table lives in memory; the history keeps each key with the record
 * it answered, in the record's transaction (history_idem.c), and the
 * daemon puts those of the window back here at start-up
 * (vd_idem_restore()), so a retry after a restart, even a kill -9, is
 * answered as before.  It keeps at most VD_IDEM_MAX keys and
 * VD_IDEM_BYTES of answers, dropping the oldest first, and drops keys
 * older than the window as it goes.
 *
 * Any worker thread; one mutex guards the table (held for a lookup or an
 * insertion, never across a decision).
 */
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "daemon_int.h"
#include "verdict/timefmt.h"

typedef struct vd_idem_entry {
  struct vd_idem_entry *hnext;      /* hash chain */
  struct vd_idem_entry *older, *newer; /* age list */
  char *key;                        /* scope, '\n', key */
  uint64_t hash;
  unsigned char body[SHA256_DIGEST_SIZE];
  int done;                         /* the answer below is final */
  int code;
  char *answer;                     /* the NDJSON answer line */
  size_t len;
  int64_t created_ms;
} vd_idem_entry_t;

struct vd_idem {
  uv_mutex_t lock;
  vd_idem_entry_t **buckets;
  size_t nbuckets, n, bytes;
  vd_idem_entry_t *oldest, *newest;
};

static uint64_t fnv(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

int vd_idem_new(vd_idem_t **out) {
  vd_idem_t *t = calloc(1, sizeof *t);
  *out = NULL;
  if (!t)
    return VD_ENOMEM;
  t->nbuckets = 1u << 16;
  t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
  if (!t->buckets || uv_mutex_init(&t->lock) != 0) {
    free(t->buckets);
    free(t);
    return VD_ENOMEM;
  }
  *out = t;
  return 0;
}

static void entry_free(vd_idem_entry_t *e) {
  free(e->key);
  free(e->answer);
  free(e);
}

/* Unlink e from its chain and the age list, and free it (lock held). */
static void drop(vd_idem_t *t, vd_idem_entry_t *e) {
  vd_idem_entry_t **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  if (e->older)
    e->older->newer = e->newer;
  else
    t->oldest = e->newer;
  if (e->newer)
    e->newer->older = e->older;
  else
    t->newest = e->older;
  t->n--;
  t->bytes -= e->len;
  entry_free(e);
}

void vd_idem_free(vd_idem_t *t) {
  if (!t)
    return;
  while (t->oldest)
    drop(t, t->oldest);
  free(t->buckets);
  uv_mutex_destroy(&t->lock);
  free(t);
}

static vd_idem_entry_t *find(vd_idem_t *t, const char *key, size_t kn,
                             uint64_t h) {
  vd_idem_entry_t *e;
  for (e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && strlen(e->key) == kn && memcmp(e->key, key, kn) == 0)
      return e;
  return NULL;
}

/* Drop what is past the window, or past the caps (lock held). */
static void expire(vd_idem_t *t, int64_t now) {
  vd_idem_entry_t *e;
  while ((e = t->oldest) != NULL) {
    int old = now - e->created_ms > VD_IDEM_WINDOW_MS;
    int over = t->n > VD_IDEM_MAX || t->bytes > VD_IDEM_BYTES;
    if (!old && !(over && e->done)) /* one being decided stays */
      break;
    drop(t, e);
  }
}

static char *scoped(const char *scope, const char *key, size_t *len) {
  size_t sn = strlen(scope), kn = strlen(key);
  char *s = malloc(sn + 1 + kn + 1);
  if (!s)
    return NULL;
  memcpy(s, scope, sn);
  s[sn] = '\n';
  memcpy(s + sn + 1, key, kn + 1);
  *len = sn + 1 + kn;
  return s;
}

/* Put E (its key and hash set) in the table as the newest (lock held). */
static void link_newest(vd_idem_t *t, vd_idem_entry_t *e) {
  e->hnext = t->buckets[e->hash & (t->nbuckets - 1)];
  t->buckets[e->hash & (t->nbuckets - 1)] = e;
  e->older = t->newest;
  if (t->newest)
    t->newest->newer = e;
  else
    t->oldest = e;
  t->newest = e;
  t->n++;
}

int vd_idem_begin(vd_idem_t *t, const char *scope, const char *key,
                  const char *req, size_t len, vd_buf_t *answer, int *code,
                  uint8_t digest[32]) {
  struct sha256_ctx ctx;
  unsigned char body[SHA256_DIGEST_SIZE];
  size_t kn;
  char *k;
  uint64_t h;
  vd_idem_entry_t *e;
  int64_t now = vd_now_ms();
  int rc;
  sha256_init(&ctx);
  sha256_update(&ctx, len, (const uint8_t *)req);
  sha256_digest(&ctx, sizeof body, body);
  memcpy(digest, body, sizeof body);
  if (!(k = scoped(scope, key, &kn)))
    return VD_IDEM_NEW; /* unremembered, not refused */
  h = fnv(k, kn);
  uv_mutex_lock(&t->lock);
  expire(t, now);
  e = find(t, k, kn, h);
  if (e) {
    if (memcmp(e->body, body, sizeof body) != 0) {
      rc = VD_IDEM_CONFLICT;
    } else if (!e->done) {
      rc = VD_IDEM_BUSY;
    } else {
      vd_buf_add(answer, e->answer, e->len);
      *code = e->code;
      rc = VD_IDEM_HIT;
    }
    uv_mutex_unlock(&t->lock);
    free(k);
    return rc;
  }
  e = calloc(1, sizeof *e);
  if (!e) {
    uv_mutex_unlock(&t->lock);
    free(k);
    return VD_IDEM_NEW;
  }
  e->key = k;
  e->hash = h;
  memcpy(e->body, body, sizeof body);
  e->created_ms = now;
  link_newest(t, e);
  uv_mutex_unlock(&t->lock);
  return VD_IDEM_NEW;
}

int vd_idem_restore(vd_idem_t *t, const vd_history_idem_t *k) {
  size_t kn = strlen(k->key);
  uint64_t h = fnv(k->key, kn);
  vd_idem_entry_t *e, *old;
  if (vd_now_ms() - k->received_ms > VD_IDEM_WINDOW_MS)
    return 0;
  if (!(e = calloc(1, sizeof *e)) || !(e->key = malloc(kn + 1)) ||
      !(e->answer = malloc(k->answer_len ? k->answer_len : 1))) {
    if (e)
      entry_free(e);
    return VD_ENOMEM;
  }
  memcpy(e->key, k->key, kn + 1);
  memcpy(e->answer, k->answer, k->answer_len);
  e->len = k->answer_len;
  e->hash = h;
  memcpy(e->body, k->digest, sizeof e->body);
  e->done = 1;
  e->code = k->code;
  e->created_ms = k->received_ms;
  uv_mutex_lock(&t->lock);
  if ((old = find(t, e->key, kn, h)) != NULL) /* stored twice: the later */
    drop(t, old);
  link_newest(t, e);
  t->bytes += e->len;
  expire(t, vd_now_ms());
  uv_mutex_unlock(&t->lock);
  return 0;
}

/* The entry of SCOPE and KEY, or NULL (lock held). */
static vd_idem_entry_t *lookup(vd_idem_t *t, const char *scope,
                               const char *key) {
  size_t kn;
  char *k = scoped(scope, key, &kn);
  vd_idem_entry_t *e;
  if (!k)
    return NULL;
  e = find(t, k, kn, fnv(k, kn));
  free(k);
  return e;
}

void vd_idem_answer(vd_idem_t *t, const char *scope, const char *key,
                    const char *answer, size_t len, int code, int final) {
  vd_idem_entry_t *e;
  uv_mutex_lock(&t->lock);
  e = lookup(t, scope, key);
  if (e && !e->done && !e->answer) {
    if ((e->answer = malloc(len)) == NULL) {
      drop(t, e); /* unremembered: a retry is decided again */
    } else {
      memcpy(e->answer, answer, len);
      e->len = len;
      e->code = code;
      e->done = final;
      t->bytes += len;
    }
  }
  uv_mutex_unlock(&t->lock);
}

void vd_idem_settle(vd_idem_t *t, const char *scope, const char *key,
                    int stored) {
  vd_idem_entry_t *e;
  uv_mutex_lock(&t->lock);
  e = lookup(t, scope, key);
  if (e && !e->done) {
    if (stored && e->answer)
      e->done = 1;
    else
      drop(t, e);
  }
  uv_mutex_unlock(&t->lock);
}
