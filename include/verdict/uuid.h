/*
 * uuid.h - UUIDv7 decision identifiers (RFC 9562).
 *
 * 48 bits of Unix milliseconds, then a 12-bit counter that keeps ids from
 * one generator strictly increasing within a millisecond, then 62 random
 * bits.  One generator per thread; not thread-safe.
 */
#ifndef VERDICT_UUID_H
#define VERDICT_UUID_H

#include <stdint.h>

typedef struct vd_uuidgen {
  uint64_t state[2]; /* xorshift128+ state, seeded from getrandom() */
  int64_t last_ms;
  unsigned counter;
} vd_uuidgen_t;

void vd_uuidgen_init(vd_uuidgen_t *g);
/* Write 36 characters and a NUL into out. */
void vd_uuid_v7(vd_uuidgen_t *g, int64_t now_ms, char out[37]);

#endif
