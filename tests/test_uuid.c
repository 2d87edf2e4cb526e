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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(uuid_format),
      cmocka_unit_test(uuid_strictly_increasing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
