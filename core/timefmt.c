/*
 * timefmt.c - RFC 3339 parsing and formatting (see timefmt.h).
 *
 * Civil-date arithmetic uses the days-from-civil algorithm published by
 * Howard Hinnant (public domain description), written here from its
 * description.  No global state; any thread.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "verdict/timefmt.h"

int64_t vd_days_from_civil(int64_t y, unsigned m, unsigned d) {
  int64_t era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  int64_t era;
  unsigned doe, yoe, doy, mp;
  z += 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = (unsigned)(z - era * 146097);
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, int n, int *out) {
  int v = 0, i;
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

static int days_in_month(int y, int m) {
  static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
    return 29;
  return dm[m - 1];
}

int vd_time_parse(const char *s, size_t n, int64_t *ms, int *offset_min) {
  int y, mo, d, h, mi, sec, frac = 0, oh, om, off;
  size_t i = 19;
  if (n < 20)
    return -1;
  if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
      s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
      digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
      s[16] != ':' || digits(s + 17, 2, &sec))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
      mi > 59 || sec > 59)
    return -1;
  if (s[i] == '.') {
    int scale = 100, nd = 0;
    i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
      frac += (s[i] - '0') * scale;
      scale /= 10;
      i++;
      nd++;
    }
    if (nd == 0)
      return -1;
  }
  if (i >= n)
    return -1;
  if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
    off = 0;
  } else if ((s[i] == '+' || s[i] == '-') && i + 6 == n) {
    if (digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
        digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
      return -1;
    off = oh * 60 + om;
    if (s[i] == '-')
      off = -off;
  } else {
    return -1;
  }
  *ms = ((vd_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
          h * 3600 + mi * 60 + sec - (int64_t)off * 60) *
         1000) +
        frac;
  *offset_min = off;
  return 0;
}

size_t vd_time_format(int64_t ms, int offset_min, char *buf) {
  int64_t local = ms + (int64_t)offset_min * 60000;
  int64_t secs = local >= 0 ? local / 1000 : (local - 999) / 1000;
  int frac = (int)(local - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  int64_t rem = secs - days * 86400;
  int64_t y;
  unsigned m, d;
  int off = offset_min < 0 ? -offset_min : offset_min;
  size_t n;
  civil_from_days(days, &y, &m, &d);
  n = 0;
  n += (size_t)snprintf(buf, 32, "%04lld-%02u-%02uT%02d:%02d:%02d",
                        (long long)y, m, d, (int)(rem / 3600),
                        (int)(rem / 60 % 60), (int)(rem % 60));
  if (frac)
    n += (size_t)snprintf(buf + n, 32 - n, ".%03d", frac);
  n += (size_t)snprintf(buf + n, 32 - n, "%c%02d:%02d",
                        offset_min < 0 ? '-' : '+', off / 60, off % 60);
  return n;
}

int64_t vd_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
