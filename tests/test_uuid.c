/*
 * test_uuid.c - unit tests for core/uuid.c: UUIDv7 decision ids, their
 * layout and their strict order within one generator.
 *
 * Runs single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verdict/uuid.h"

/* ------------------------------------------------------------------------
 * UUIDv7
 * ------------------------------------------------------------------------ */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static void assert_uuid_v7(const char *u, int64_t ms_at_least) {
  int i;
  int64_t ts = 0;
  assert_int_equal(strlen(u), 36);
  for (i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      assert_int_equal(u[i], '-');
      continue;
    }
    if (hexval(u[i]) < 0)
      fail_msg("uuid %s: '%c' is not lowercase hex", u, u[i]);
  }
  assert_int_equal(u[14], '7');                    /* version */
  assert_non_null(strchr("89ab", u[19]));          /* variant 10xx */
  for (i = 0; i < 13; i++)
    if (i != 8)
      ts = ts * 16 + hexval(u[i]);
  assert_true(ts >= ms_at_least);
  assert_true(ts <= ms_at_least + 2);
}

static void uuid_format(void **state) {
  vd_uuidgen_t g;
  char u[37];
  int64_t now = 1795399200123LL;
  int i;
  (void)state;
  vd_uuidgen_init(&g);
  vd_uuid_v7(&g, now, u);
  assert_uuid_v7(u, now);
  /* the first 48 bits are the millisecond, big-endian */
  {
    char want[14];
    snprintf(want, sizeof want, "%08llx-%04llx",
             (unsigned long long)(now >> 16),
             (unsigned long long)(now & 0xFFFF));
    assert_memory_equal(u, want, 13);
  }
  for (i = 0; i < 1000; i++) {
    vd_uuid_v7(&g, now + i, u);
    assert_uuid_v7(u, now + i);
  }
}

static void uuid_strictly_increasing(void **state) {
  vd_uuidgen_t g, h;
  char prev[37], u[37], other[37];
  int64_t now = 1795399200123LL;
  int i;
  (void)state;
  vd_uuidgen_init(&g);
  vd_uuid_v7(&g, now, prev);
  /* the same millisecond, more times than the 12-bit counter holds */
  for (i = 0; i < 6000; i++) {
    vd_uuid_v7(&g, now, u);
    if (strcmp(u, prev) <= 0)
      fail_msg("id %d: %s does not follow %s", i, u, prev);
    memcpy(prev, u, sizeof u);
  }
  /* a clock that steps back does not break the order */
  vd_uuid_v7(&g, now - 1000, u);
  assert_true(strcmp(u, prev) > 0);
  memcpy(prev, u, sizeof u);
  /* nor does time moving on */
  vd_uuid_v7(&g, now + 100000, u);
  assert_true(strcmp(u, prev) > 0);
  assert_uuid_v7(u, now + 100000);
  /* two generators in the same millisecond differ */
  vd_uuidgen_init(&h);
  vd_uuid_v7(&h, now + 100000, other);
  assert_string_not_equal(u, other);
}

/* The id as the generator wrote it before its table of digit pairs: a
 * byte array, then a digit at a time (kept here to hold the new writer to
 * the same text for every state). */
static uint64_t ref_next_rand(vd_uuidgen_t *g) {
  uint64_t s1 = g->state[0];
  const uint64_t s0 = g->state[1];
  g->state[0] = s0;
  s1 ^= s1 << 23;
  g->state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
  return g->state[1] + s0;
}

static void ref_uuid_v7(vd_uuidgen_t *g, int64_t now_ms, char out[37]) {
  unsigned char b[16];
  uint64_t r = ref_next_rand(g);
  static const char hex[] = "0123456789abcdef";
  int i, o = 0;
  if (now_ms <= g->last_ms) {
    if (++g->counter > 0xFFF) {
      g->counter = 0;
      g->last_ms++;
    }
    now_ms = g->last_ms;
  } else {
    g->last_ms = now_ms;
    g->counter = (unsigned)(r >> 52) & 0x3FF;
  }
  for (i = 0; i < 6; i++)
    b[i] = (unsigned char)(now_ms >> (40 - 8 * i));
  b[6] = (unsigned char)(0x70 | (g->counter >> 8));
  b[7] = (unsigned char)g->counter;
  r = ref_next_rand(g);
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

/* Every byte value at every position, every counter near its wrap, a
 * clock that stays, steps back and jumps (to 2^48 and past, whose high
 * bits an id drops): the same text and the same state after as the digit
 * at a time writer.  It fails if a byte is taken from the wrong shift or
 * a pair's digits are swapped. */
static void uuid_same_text_as_digits(void **state) {
  static const int64_t clocks[] = {0, 1, 255, 256, 1795399200123LL,
                                   (1LL << 48) - 1, 1LL << 48,
                                   (1LL << 56) + 0x123456789abLL, -1};
  vd_uuidgen_t g, h;
  char got[37], want[37];
  int i, c;
  (void)state;
  vd_uuidgen_init(&g);
  for (i = 0; i < 20000; i++) {
    int64_t now;
    if (i % 1000 == 0) { /* state words with every byte value in them */
      g.state[0] = 0x0101010101010101ull * (uint64_t)(i / 1000 * 13 % 256);
      g.state[1] = ~g.state[0] ^ (uint64_t)i;
    }
    c = i % 5;
    now = c == 0   ? g.last_ms        /* the same millisecond */
          : c == 1 ? g.last_ms - 7    /* back */
          : c == 2 ? g.last_ms + 1
                   : clocks[i % (int)(sizeof clocks / sizeof *clocks)];
    if (i % 97 == 0)
      g.counter = 0xFFE + (unsigned)(i % 3); /* at the wrap */
    h = g;
    vd_uuid_v7(&g, now, got);
    ref_uuid_v7(&h, now, want);
    if (strcmp(got, want) != 0)
      fail_msg("id %d at %lld: %s, not %s", i, (long long)now, got, want);
    assert_memory_equal(&g, &h, sizeof g);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(uuid_format),
      cmocka_unit_test(uuid_strictly_increasing),
      cmocka_unit_test(uuid_same_text_as_digits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
