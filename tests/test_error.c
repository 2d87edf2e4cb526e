/*
 * test_error.c - unit tests for core/error.c: the one table of error codes,
 * their stable wire names and descriptions.
 *
 * Pure functions.  Runs single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "verdict/error.h"

/* ------------------------------------------------------------------------
 * Error names
 * ------------------------------------------------------------------------ */

static void error_names(void **state) {
  static const struct {
    int code;
    const char *name;
  } wire[] = {
      {VD_EBAD_REQUEST, "bad_request"},   {VD_EUNKNOWN_KIND, "unknown_kind"},
      {VD_EUNKNOWN_REGION, "unknown_region"}, {VD_EBAD_INPUT, "bad_input"},
      {VD_EPOLICY_ERROR, "policy_error"}, {VD_EPOLICY_TIMEOUT, "policy_timeout"},
      {VD_EPOLICY_MEMORY, "policy_memory"}, {VD_ETOO_LARGE, "too_large"},
      {VD_EINTERNAL, "internal"},         {VD_EFORBIDDEN, "forbidden"},
      {VD_ENOT_FOUND, "not_found"},       {VD_EIO, "io"},
      {VD_ENOMEM, "nomem"},               {VD_EINVALID, "invalid"},
      {VD_EUNAUTHORIZED, "unauthorized"}};
  int seen[VD_ERR_COUNT] = {0};
  size_t i;
  (void)state;
  assert_int_equal(VD_ERR_COUNT, (int)(sizeof wire / sizeof wire[0]));
  assert_string_equal(vd_err_name(0), "ok");
  assert_string_equal(vd_err_desc(0), "success");
  assert_int_equal(vd_err_index(0), -1);
  for (i = 0; i < sizeof wire / sizeof wire[0]; i++) {
    int idx = vd_err_index(wire[i].code);
    assert_true(wire[i].code < 0);
    assert_string_equal(vd_err_name(wire[i].code), wire[i].name);
    assert_int_equal(vd_err_from_name(wire[i].name), wire[i].code);
    assert_true(idx >= 0 && idx < VD_ERR_COUNT);
    assert_int_equal(seen[idx], 0);
    seen[idx] = 1;
    assert_true(strlen(vd_err_desc(wire[i].code)) > 0);
    assert_string_not_equal(vd_err_desc(wire[i].code), "unknown error");
  }
  /* unknown codes and names */
  assert_string_equal(vd_err_name(-1), "internal");
  assert_string_equal(vd_err_name(12345), "internal");
  assert_string_equal(vd_err_name(VD_ERR_FIRST_), "internal");
  assert_string_equal(vd_err_name(VD_ERR_LAST_), "internal");
  assert_string_equal(vd_err_desc(-1), "unknown error");
  assert_int_equal(vd_err_index(-1), -1);
  assert_int_equal(vd_err_index(VD_ERR_LAST_), -1);
  assert_int_equal(vd_err_from_name("ok"), 0);
  assert_int_equal(vd_err_from_name("nope"), 0);
  assert_int_equal(vd_err_from_name(""), 0);
  assert_int_equal(vd_err_from_name("BAD_REQUEST"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(error_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
