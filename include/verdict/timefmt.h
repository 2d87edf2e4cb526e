/*
 * timefmt.h - RFC 3339 times as verdict uses them.
 *
 * Decision times travel as RFC 3339 strings with an explicit offset
 * ("2026-11-23T10:00:00+08:00"; "Z" is accepted on input).  Internally a
 * time is Unix milliseconds plus the offset it was written in, so it can be
 * written back in the same offset.  Pure functions, any thread.
 */
#ifndef VERDICT_TIMEFMT_H
#define VERDICT_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

/* The offset verdict writes times in when it stamps one itself. */
#define VD_DEFAULT_OFFSET_MIN (8 * 60)

/* Parse S (n bytes).  Returns 0 and sets *ms and *offset_min, or -1 if S is
 * not an RFC 3339 date-time with an offset (fractional seconds are allowed
 * and kept to the millisecond; out-of-range fields are rejected). */
int vd_time_parse(const char *s, size_t n, int64_t *ms, int *offset_min);

/* Write ms in the given offset as "YYYY-MM-DDTHH:MM:SS+HH:MM" (with ".mmm"
 * when ms is not a whole second).  buf must hold 32 bytes.  Returns length. */
size_t vd_time_format(int64_t ms, int offset_min, char *buf);

/* Days since 1970-01-01 of a proleptic Gregorian civil date. */
int64_t vd_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Unix time in milliseconds from the real-time clock. */
int64_t vd_now_ms(void);

#endif
