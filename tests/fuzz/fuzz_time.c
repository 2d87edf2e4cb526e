/*
 * fuzz_time.c - libFuzzer target: RFC 3339 times (vd_time_parse and
 * vd_time_format, timefmt.h).
 *
 * Input: a time string.  What must hold when it parses:
 *   - the offset is within +-23:59 and the instant within the years
 *     0000..9999 as written, moved by at most that offset;
 *   - vd_time_format() of the instant, in its offset, fits its 32 bytes,
 *     parses back to the same instant and offset, and formatting that
 *     gives the same text (parse and format are inverse on what format
 *     writes);
 *   - the fields it read are the ones written: formatting in the parsed
 *     offset gives back the input's date and time of day (fractional
 *     digits past the third are dropped, "z", "t" and "-00:00" are
 *     written "Z"-less as "+00:00").
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/timefmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  int64_t ms, ms2, lo, hi;
  int off, off2;
  char buf[32], again[32];
  size_t n, n2;
  if (vd_time_parse(s, size, &ms, &off) != 0)
    return 0;
  FUZZ_CHECK(off >= -(23 * 60 + 59) && off <= 23 * 60 + 59);
  lo = vd_days_from_civil(0, 1, 1) * 86400000 - 86400000;
  hi = vd_days_from_civil(10000, 1, 1) * 86400000 + 86400000;
  FUZZ_CHECK(ms >= lo && ms < hi);
  n = vd_time_format(ms, off, buf);
  FUZZ_CHECK(n < sizeof buf && strlen(buf) == n);
  FUZZ_CHECK(vd_time_parse(buf, n, &ms2, &off2) == 0);
  FUZZ_CHECK(ms2 == ms && off2 == off);
  n2 = vd_time_format(ms2, off2, again);
  FUZZ_CHECK(n2 == n && memcmp(buf, again, n) == 0);
  /* date and time of day as written: "YYYY-MM-DD" and "HH:MM:SS" */
  FUZZ_CHECK(memcmp(buf, s, 10) == 0);
  FUZZ_CHECK(memcmp(buf + 11, s + 11, 8) == 0);
  return 0;
}
