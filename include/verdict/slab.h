/*
 * slab.h - small blocks for one Lua state, faster than malloc.
 *
 * A decision allocates and frees some sixty small objects (strings, tables,
 * their parts); through glibc each malloc/free pair cost about 230
 * instructions, 10% of a decision.  A slab pool hands out blocks of up to
 * VD_SLAB_MAX bytes in 16-byte classes, carved from 64 KiB slabs, and keeps
 * freed blocks on a list per class: an allocation or a free is a few
 * instructions.
 *
 * Invariants: a block belongs to the pool exactly when its address lies in
 * one of the pool's slabs (vd_slab_owns, a hash of slab addresses), so the
 * caller may mix pool blocks and malloc blocks freely.  The pool holds at
 * most `max_bytes` of slabs; past that vd_slab_alloc returns NULL and the
 * caller uses malloc, so a burst of small objects cannot pin more than that.
 * Slabs are returned to the system only by vd_slab_release.
 *
 * Threads: none of its own; a pool belongs to the thread that owns its
 * Lua state.  Under AddressSanitizer the pool is off (every call falls
 * through to malloc), so the sanitizer sees every block.
 */
#ifndef VERDICT_SLAB_H
#define VERDICT_SLAB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Largest block size served: 512, so that a table's hash part of 16
 * nodes (384 bytes: the decoder's input object, room for 16 keys) comes
 * from the pool too, not from malloc on every decision. */
#define VD_SLAB_MAX 512
#define VD_SLAB_CLASSES (VD_SLAB_MAX / 16)

typedef struct vd_slab {
  void *free[VD_SLAB_CLASSES];  /* freed blocks, per 16-byte class */
  char *bump, *bump_end;        /* unused rest of the newest slab */
  uintptr_t *bases;             /* open-addressing set of slab addresses */
  size_t nbases, capbases;      /* slabs held, table size (power of 2) */
  size_t max_slabs;
} vd_slab_t;

/* Set up an empty pool that may hold max_bytes of slabs (no allocation). */
void vd_slab_init(vd_slab_t *s, size_t max_bytes);
/* Free every slab; the pool is empty again. */
void vd_slab_release(vd_slab_t *s);

#define VD_SLAB_SHIFT 16 /* slabs of 64 KiB, 64 KiB-aligned */

/* The pool's slow paths (slab.c): a new slab for the bump region, and the
 * hash of a slab's address into the set (a power-of-two capacity). */
void *vd_slab_alloc_slow(vd_slab_t *s, size_t n);
static inline size_t vd_slab_hash_(uintptr_t base, size_t cap) {
  uintptr_t h = (base >> VD_SLAB_SHIFT) * (uintptr_t)0x9E3779B97F4A7C15ULL;
  return (size_t)(h >> 7) & (cap - 1);
}

/* The three calls below are inline: the state's allocator makes one of
 * them for nearly every block a decision allocates or frees (some forty
 * each way), and each is a few instructions once it is not a call. */

/* A block of n bytes (1..VD_SLAB_MAX), 16-byte aligned, or NULL when the
 * pool is full or out of memory (then use malloc). */
static inline void *vd_slab_alloc(vd_slab_t *s, size_t n);
/* vd_slab_alloc without its slow path: NULL where that would be needed
 * (no freed block of the class, no room in the bump region), so that a
 * caller's common path calls nothing. */
static inline void *vd_slab_alloc_quick(vd_slab_t *s, size_t n) {
  size_t c = (n + 15) / 16 - 1;
  void *p = s->free[c];
  if (p) {
    memcpy(&s->free[c], p, sizeof(void *)); /* its link */
    return p;
  }
  if ((size_t)(s->bump_end - s->bump) >= (c + 1) * 16) {
    p = s->bump;
    s->bump += (c + 1) * 16;
    return p;
  }
  return NULL;
}
static inline void *vd_slab_alloc(vd_slab_t *s, size_t n) {
  void *p = vd_slab_alloc_quick(s, n);
  return p ? p : vd_slab_alloc_slow(s, n);
}
/* Whether p is a block of this pool. */
static inline int vd_slab_owns(const vd_slab_t *s, const void *p) {
  uintptr_t base = (uintptr_t)p & ~(((uintptr_t)1 << VD_SLAB_SHIFT) - 1);
  size_t i;
  if (!s->nbases)
    return 0;
  for (i = vd_slab_hash_(base, s->capbases);; i = (i + 1) & (s->capbases - 1)) {
    if (s->bases[i] == base)
      return 1;
    if (!s->bases[i])
      return 0;
  }
}
/* Give back pool block p, allocated for at least n bytes (n <= VD_SLAB_MAX;
 * n may be smaller than at allocation, never larger). */
static inline void vd_slab_free(vd_slab_t *s, void *p, size_t n) {
  size_t c = (n + 15) / 16 - 1;
  memcpy(p, &s->free[c], sizeof(void *));
  s->free[c] = p;
}

#endif
