/*
 * uuid.c - UUIDv7 generation (see uuid.h).  Per-thread generator state;
 * the only system call is getrandom() at init.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "verdict/uuid.h"

static uint64_t next_rand(vd_uuidgen_t *g) {
  uint64_t s1 = g->state[0];
  const uint64_t s0 = g->state[1];
  g->state[0] = s0;
  s1 ^= s1 << 23;
  g->state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return g->state[1] + s0;
}

void vd_uuidgen_init(vd_uuidgen_t *g) {
  memset(g, 0, sizeof *g);
  if (getrandom(g->state, sizeof g->state, 0) != (ssize_t)sizeof g->state) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    g->state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)g << 17);
    g->state[1] = (uint64_t)ts.tv_sec * 6364136223846793005ULL + 1;
  }
  if (!g->state[0] && !g->state[1])
    g->state[1] = 1;
}

void vd_uuid_v7(vd_uuidgen_t *g, int64_t now_ms, char out[37]) {
  unsigned char b[16];
  uint64_t r = next_rand(g);
  static const char hex[] = "0123456789abcdef";
  int i, o = 0;
  if (now_ms <= g->last_ms) {
    /* same (or a earlier) millisecond: count up; on overflow borrow the
     * next millisecond so ids stay ordered */
    if (++g->counter > 0xFFF) {
      g->counter = 0;
      g->last_ms++;
    }
    now_ms = g->last_ms;
  } else {
    g->last_ms = now_ms;
    g->counter = (unsigned)(r >> 52) & 0x3FF; /* random start, room to count */
  }
  for (i = 0; i < 6; i++)
    b[i] = (unsigned char)(now_ms >> (40 - 8 * i));
  b[6] = (unsigned char)(0x70 | (g->counter >> 8));
  b[7] = (unsigned char)g->counter;
  r = next_rand(g);
  b[8] = (unsigned char)(0x80 | ((r >> 56) & 0x3F));
  for (i = 9; i < 16; i++)
    b[i] = (unsigned char)(r >> (8 * (15 - i)));
  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
}
