/*
 * slab.c - the small-block pool behind each Lua state (see slab.h).
 *
 * Owns: its slabs, 64 KiB each and 64 KiB-aligned, and the set of their
 * addresses.  A block is carved from the newest slab's unused rest, or
 * taken from its class's free list, whose links live in the free blocks
 * themselves.  Runs on the thread that owns the pool.
 */
#include <stdlib.h>
#include <string.h>

#include "verdict/slab.h"

#define SLAB_SIZE ((size_t)1 << VD_SLAB_SHIFT)

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_OFF 1
#endif
#endif
#ifndef SLAB_OFF
#define SLAB_OFF 0
#endif

void vd_slab_init(vd_slab_t *s, size_t max_bytes) {
  memset(s, 0, sizeof *s);
  s->max_slabs = SLAB_OFF ? 0 : max_bytes / SLAB_SIZE;
}

void vd_slab_release(vd_slab_t *s) {
  size_t i;
  for (i = 0; i < s->capbases; i++)
    if (s->bases[i])
      free((void *)s->bases[i]);
  free(s->bases);
  vd_slab_init(s, s->max_slabs * SLAB_SIZE);
}

static void add_base(vd_slab_t *s, uintptr_t base) {
  size_t i = vd_slab_hash_(base, s->capbases);
  while (s->bases[i])
    i = (i + 1) & (s->capbases - 1);
  s->bases[i] = base;
  s->nbases++;
}

/* One more slab for the bump region; 0 or -1 (full, or out of memory). */
static int grow(vd_slab_t *s) {
  void *slab;
  if (s->nbases >= s->max_slabs)
    return -1;
  if ((s->nbases + 1) * 2 > s->capbases) { /* keep the set half empty */
    size_t cap = s->capbases ? s->capbases * 2 : 64, i, old = s->capbases;
    uintptr_t *was = s->bases;
    s->bases = calloc(cap, sizeof *s->bases);
    if (!s->bases) {
      s->bases = was;
      return -1;
    }
    s->capbases = cap;
    s->nbases = 0;
    for (i = 0; i < old; i++)
      if (was[i])
        add_base(s, was[i]);
    free(was);
  }
  slab = aligned_alloc(SLAB_SIZE, SLAB_SIZE);
  if (!slab)
    return -1;
  add_base(s, (uintptr_t)slab);
  s->bump = slab;
  s->bump_end = (char *)slab + SLAB_SIZE;
  return 0;
}

/* vd_slab_alloc's slow path: its class's list is empty and the bump
 * region has no room, so a new slab becomes the bump region. */
void *vd_slab_alloc_slow(vd_slab_t *s, size_t n) {
  size_t size = ((n + 15) / 16) * 16;
  void *p;
  if (grow(s) != 0)
    return NULL;
  p = s->bump;
  s->bump += size;
  return p;
}
