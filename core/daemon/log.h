/*
 * log.h - verdictd's log: one event per line on stderr, always.
 *
 * Every line carries a timestamp, a level and an event name (a stable
 * snake_case word a log shipper can match on: reload_refused,
 * history_damaged, ...), then a one-line message, and, when there is one,
 * a detail that may span lines (a refused bundle's report) but is written
 * escaped inside the line:
 *
 *   text: 2026-11-23T10:00:00.123+08:00 warning reload_refused: MESSAGE | DETAIL
 *         (newlines, backslashes and control bytes escaped as \n, \\, \xNN)
 *   json: {"ts":"...","level":"warning","event":"reload_refused",
 *          "msg":"MESSAGE","detail":"DETAIL"}
 *
 * When stderr is the systemd journal's stream (JOURNAL_STREAM names it,
 * systemd.exec(5)), each line starts with the level as "<N>" (sd-daemon(3))
 * so that the journal keeps the priority.
 *
 * vd_log_setup() runs once on the main thread before any other thread
 * starts; after it every function here may be called from any thread.
 * Each event is written with a single write(2), so lines from threads do
 * not interleave.
 */
#ifndef VERDICT_DAEMON_LOG_H
#define VERDICT_DAEMON_LOG_H

/* Levels, numbered as syslog's (and the journal's) priorities. */
typedef enum vd_level {
  VD_LEVEL_ERR = 3,     /* the daemon cannot do what it was asked */
  VD_LEVEL_WARNING = 4, /* it goes on, but an operator should look */
  VD_LEVEL_NOTICE = 5,  /* a change of state: started, reloaded, stopped */
  VD_LEVEL_INFO = 6     /* for the record */
} vd_level_t;

typedef enum vd_log_format {
  VD_LOG_FORMAT_TEXT,
  VD_LOG_FORMAT_JSON
} vd_log_format_t;

/* "text" or "json" into *out: 0, or -1 for another word. */
int vd_log_format_parse(const char *s, vd_log_format_t *out);

/* Choose the format, and see whether stderr is the journal. */
void vd_log_setup(vd_log_format_t format);

/* One event: LEVEL, EVENT (a literal), the message from FMT. */
void vd_log(vd_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with DETAIL (may be NULL or span lines) in a field of its own. */
void vd_log_detail(vd_level_t level, const char *event, const char *detail,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
