/*
 * test_timefmt.c - unit tests for core/timefmt.c: RFC 3339 times parsed to
 * unix milliseconds and an offset, formatted back, and the civil-date
 * arithmetic under both.
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

#include "verdict/timefmt.h"

/* ------------------------------------------------------------------------
 * Times
 * ------------------------------------------------------------------------ */

static int parse(const char *s, int64_t *ms, int *off) {
  return vd_time_parse(s, strlen(s), ms, off);
}

static void time_parse_valid(void **state) {
  int64_t ms;
  int off;
  (void)state;
  assert_int_equal(parse("2026-11-23T10:00:00+08:00", &ms, &off), 0);
  assert_true(ms == 1795399200000LL);
  assert_int_equal(off, 480);
  assert_int_equal(parse("2026-11-23T02:00:00Z", &ms, &off), 0);
  assert_true(ms == 1795399200000LL);
  assert_int_equal(off, 0);
  assert_int_equal(parse("2026-11-23t02:00:00z", &ms, &off), 0);
  assert_true(ms == 1795399200000LL);
  assert_int_equal(parse("2026-11-22T21:00:00-05:00", &ms, &off), 0);
  assert_true(ms == 1795399200000LL);
  assert_int_equal(off, -300);
  assert_int_equal(parse("2026-11-23T07:30:00+05:30", &ms, &off), 0);
  assert_true(ms == 1795399200000LL);
  assert_int_equal(off, 330);
  assert_int_equal(parse("1970-01-01T00:00:00Z", &ms, &off), 0);
  assert_true(ms == 0);
  assert_int_equal(parse("1900-01-01T00:00:00+00:00", &ms, &off), 0);
  assert_true(ms == -2208988800000LL);
  assert_int_equal(parse("9999-12-31T23:59:59Z", &ms, &off), 0);
  assert_true(ms == 253402300799000LL);
  /* leap days */
  assert_int_equal(parse("2024-02-29T12:00:00Z", &ms, &off), 0);
  assert_true(ms == 1709208000000LL);
  assert_int_equal(parse("2000-02-29T00:00:00Z", &ms, &off), 0);
  assert_true(ms == 951782400000LL);
}

static void time_parse_fraction(void **state) {
  int64_t ms;
  int off;
  (void)state;
  assert_int_equal(parse("2026-11-23T10:00:00.5+08:00", &ms, &off), 0);
  assert_true(ms == 1795399200500LL);
  assert_int_equal(parse("2026-11-23T10:00:00.123+08:00", &ms, &off), 0);
  assert_true(ms == 1795399200123LL);
  assert_int_equal(parse("2026-11-23T10:00:00.07Z", &ms, &off), 0);
  assert_true(ms == 1795399200000LL + 8 * 3600000LL + 70);
  /* kept to the millisecond: extra digits are dropped */
  assert_int_equal(parse("2026-11-23T10:00:00.123999+08:00", &ms, &off), 0);
  assert_true(ms == 1795399200123LL);
  assert_int_equal(parse("1969-12-31T23:59:59.999Z", &ms, &off), 0);
  assert_true(ms == -1);
  assert_int_equal(parse("2026-11-23T10:00:00.+08:00", &ms, &off), -1);
  assert_int_equal(parse("2026-11-23T10:00:00.Z", &ms, &off), -1);
}

static void time_parse_invalid(void **state) {
  static const char *const bad[] = {
      "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-32T00:00:00Z",
      "2026-01-00T00:00:00Z", "2026-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
      "2026-04-31T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T10:60:00Z",
      "2026-11-23T10:00:60Z", "2026-11-23T10:00:00",  "2026-11-23T10:00:00+08",
      "2026-11-23T10:00:00+0800", "2026-11-23T10:00:00+24:00",
      "2026-11-23T10:00:00+08:60", "2026-11-23 10:00:00Z",
      "2026-11-23T10:00:00Z ", "2026-11-23T10:00:00ZZ",
      "2026-11-23T10:00:00+08:00x", " 2026-11-23T10:00:00Z",
      "26-11-23T10:00:00Z", "2026-1-23T10:00:00Z", "2026/11/23T10:00:00Z",
      "2026-11-23T1:00:00Z", "2026-11-23T10:00:0Z", "2026-11-23",
      "", "Z", "2026-11-23T10:00:00-", "+026-11-23T10:00:00Z",
      "2026-11-23T10:00:00.5", "2026-11-23T10:00:00.5+8:00"};
  size_t i;
  int64_t ms = 77;
  int off = 77;
  (void)state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (parse(bad[i], &ms, &off) != -1)
      fail_msg("accepted \"%s\"", bad[i]);
  assert_true(ms == 77 && off == 77); /* outputs untouched on failure */
  /* a valid time followed by bytes outside n is fine: n bounds the parse */
  assert_int_equal(vd_time_parse("2026-11-23T10:00:00Zjunk", 20, &ms, &off), 0);
  assert_int_equal(vd_time_parse("2026-11-23T10:00:00Z", 19, &ms, &off), -1);
}

static void time_format(void **state) {
  char buf[32];
  (void)state;
  assert_int_equal(vd_time_format(0, 0, buf), 25);
  assert_string_equal(buf, "1970-01-01T00:00:00+00:00");
  vd_time_format(1795399200000LL, 480, buf);
  assert_string_equal(buf, "2026-11-23T10:00:00+08:00");
  vd_time_format(1795399200123LL, 480, buf);
  assert_string_equal(buf, "2026-11-23T10:00:00.123+08:00");
  vd_time_format(1795399200007LL, -330, buf);
  assert_string_equal(buf, "2026-11-22T20:30:00.007-05:30");
  vd_time_format(-1, 0, buf);
  assert_string_equal(buf, "1969-12-31T23:59:59.999+00:00");
  vd_time_format(-2208988800000LL, 0, buf);
  assert_string_equal(buf, "1900-01-01T00:00:00+00:00");
  vd_time_format(253402300799999LL, 0, buf);
  assert_string_equal(buf, "9999-12-31T23:59:59.999+00:00");
  assert_int_equal(strlen(buf), 29);
  /* an offset crossing midnight and a year */
  vd_time_format(1798761600000LL - 1, 480, buf); /* 2027-01-01T00:00Z - 1 */
  assert_string_equal(buf, "2027-01-01T07:59:59.999+08:00");
  vd_time_format(1798761600000LL, -60, buf);
  assert_string_equal(buf, "2026-12-31T23:00:00-01:00");
}

static void time_round_trip(void **state) {
  static const char *const times[] = {
      "2026-11-23T10:00:00+08:00", "2026-11-23T10:00:00.123+08:00",
      "2024-02-29T23:59:59.999-12:00", "1970-01-01T00:00:00+00:00",
      "1969-07-20T20:17:40.001+00:00", "2000-03-01T00:00:00+14:00",
      "2026-06-30T12:34:56.789+05:45", "0001-01-01T00:00:00+00:00"};
  size_t i;
  char buf[32];
  int64_t ms, ms2;
  int off, off2;
  (void)state;
  for (i = 0; i < sizeof times / sizeof times[0]; i++) {
    assert_int_equal(parse(times[i], &ms, &off), 0);
    vd_time_format(ms, off, buf);
    assert_string_equal(buf, times[i]);
    assert_int_equal(parse(buf, &ms2, &off2), 0);
    assert_true(ms2 == ms && off2 == off);
  }
  /* every millisecond offset of a second round-trips */
  for (i = 0; i < 1000; i++) {
    vd_time_format(1795399200000LL + (int64_t)i, 480, buf);
    assert_int_equal(parse(buf, &ms, &off), 0);
    assert_true(ms == 1795399200000LL + (int64_t)i);
  }
  /* 'Z' comes back as +00:00 */
  assert_int_equal(parse("2026-11-23T02:00:00Z", &ms, &off), 0);
  vd_time_format(ms, off, buf);
  assert_string_equal(buf, "2026-11-23T02:00:00+00:00");
}

static void days_from_civil(void **state) {
  (void)state;
  assert_true(vd_days_from_civil(1970, 1, 1) == 0);
  assert_true(vd_days_from_civil(1969, 12, 31) == -1);
  assert_true(vd_days_from_civil(2000, 3, 1) == 11017);
  assert_true(vd_days_from_civil(2000, 2, 29) == 11016);
  assert_true(vd_days_from_civil(1900, 1, 1) == -25567);
  assert_true(vd_now_ms() > 1735689600000LL); /* after 2025-01-01 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(time_parse_valid),
      cmocka_unit_test(time_parse_fraction),
      cmocka_unit_test(time_parse_invalid),
      cmocka_unit_test(time_format),
      cmocka_unit_test(time_round_trip),
      cmocka_unit_test(days_from_civil),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
