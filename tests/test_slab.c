/*
 * test_slab.c - unit tests for core/slab.c: the small-block pool behind
 * each Lua state's allocator (size classes, reuse, the cap past which the
 * caller falls back to malloc, ownership by address).
 *
 * Under AddressSanitizer the pool is off and hands out nothing, so the
 * sanitizer sees every block; the tests check that instead.  Runs
 * single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verdict/slab.h"

static void slab_blocks(void **state) {
  vd_slab_t s;
  void *a, *b, *c, *big[2000];
  int i, pooled = 0, fallback = 0;
  char local;
  (void)state;
  vd_slab_init(&s, 1u << 16); /* one slab */
  a = vd_slab_alloc(&s, 1);
  b = vd_slab_alloc(&s, 16);
  c = vd_slab_alloc(&s, 17);
#if !defined(__SANITIZE_ADDRESS__)
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(c);
  assert_int_equal((uintptr_t)a % 16, 0);
  assert_int_equal((uintptr_t)c % 16, 0);
  assert_true(vd_slab_owns(&s, a) && vd_slab_owns(&s, c));
  assert_false(vd_slab_owns(&s, &local));
  memset(c, 0xAB, 32); /* a 17-byte request gets a 32-byte block */
  /* a freed block comes back for its class, last in first out */
  vd_slab_free(&s, b, 16);
  assert_ptr_equal(vd_slab_alloc(&s, 9), b);
  vd_slab_free(&s, c, 32);
  assert_ptr_equal(vd_slab_alloc(&s, 30), c);
  /* the pool never holds more than its slabs: then NULL, for malloc */
  for (i = 0; i < 2000; i++) {
    big[i] = vd_slab_alloc(&s, VD_SLAB_MAX);
    if (big[i])
      pooled++;
    else
      fallback++;
  }
  assert_true(pooled > 0 && pooled < 256);
  assert_true(fallback > 0);
  vd_slab_free(&s, big[0], VD_SLAB_MAX);
  assert_ptr_equal(vd_slab_alloc(&s, VD_SLAB_MAX - 15), big[0]); /* the same class */
  assert_null(vd_slab_alloc(&s, VD_SLAB_MAX - 56)); /* another class, and no room */
#else
  assert_null(a); /* off under AddressSanitizer: every block is malloc's */
  (void)b, (void)c, (void)big, (void)pooled, (void)fallback, (void)local;
  (void)i;
#endif
  vd_slab_release(&s);
  assert_false(vd_slab_owns(&s, a));
}

/* Many slabs: the address set grows and still knows every block. */
static void slab_many_slabs(void **state) {
  vd_slab_t s;
  static void *p[40000];
  int i;
  (void)state;
  vd_slab_init(&s, 16u << 20);
  for (i = 0; i < 40000; i++) {
    p[i] = vd_slab_alloc(&s, 100 + i % 150);
#if !defined(__SANITIZE_ADDRESS__)
    assert_non_null(p[i]);
#endif
  }
  for (i = 0; i < 40000; i++)
    if (p[i])
      assert_true(vd_slab_owns(&s, p[i]));
  vd_slab_release(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slab_blocks),
      cmocka_unit_test(slab_many_slabs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
