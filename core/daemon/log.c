/*
 * log.c - verdictd's log lines (log.h says what a line holds).
 *
 * A line is built in a buffer of its own and written with one write(2) to
 * fd 2: stdio's stderr is unbuffered, and several fprintf calls from two
 * threads could interleave.  The format and the journal's prefix are set
 * by vd_log_setup() before any thread but the main one exists and only
 * read after.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "verdict/buf.h"
#include "verdict/timefmt.h"

static vd_log_format_t log_format = VD_LOG_FORMAT_TEXT;
static int to_journal; /* stderr is the journal's stream: "<N>" first */

int vd_log_format_parse(const char *s, vd_log_format_t *out) {
  if (strcmp(s, "text") == 0)
    *out = VD_LOG_FORMAT_TEXT;
  else if (strcmp(s, "json") == 0)
    *out = VD_LOG_FORMAT_JSON;
  else
    return -1;
  return 0;
}

/* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connects
 * stdout and stderr to; stderr is the journal only if they match (a
 * redirection in between leaves the variable behind). */
static int stderr_is_journal(void) {
  const char *js = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;
  if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
      fstat(STDERR_FILENO, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev &&
         (unsigned long long)st.st_ino == ino;
}

void vd_log_setup(vd_log_format_t format) {
  log_format = format;
  to_journal = stderr_is_journal();
}

static const char *level_name(vd_level_t level) {
  switch (level) {
  case VD_LEVEL_ERR: return "error";
  case VD_LEVEL_WARNING: return "warning";
  case VD_LEVEL_NOTICE: return "notice";
  case VD_LEVEL_INFO: break;
  }
  return "info";
}

/* S in the text format: what would end or garble the line escaped. */
static void add_text(vd_buf_t *b, const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n')
      vd_buf_adds(b, "\\n");
    else if (c == '\\')
      vd_buf_adds(b, "\\\\");
    else if (c < 0x20 || c == 0x7f)
      vd_buf_addf(b, "\\x%02x", c);
    else
      vd_buf_addc(b, (char)c);
  }
}

static void emit(vd_level_t level, const char *event, const char *detail,
                 const char *fmt, va_list ap) {
  vd_buf_t msg = VD_BUF_INIT, line = VD_BUF_INIT;
  char ts[32];
  const char *p;
  size_t left;
  ssize_t n;

  vd_buf_vaddf(&msg, fmt, ap);
  /* a message that ends in a newline would leave an empty field */
  while (msg.len && msg.data[msg.len - 1] == '\n')
    msg.data[--msg.len] = '\0';
  vd_time_format(vd_now_ms(), VD_DEFAULT_OFFSET_MIN, ts);
  if (to_journal)
    vd_buf_addf(&line, "<%d>", (int)level);
  if (log_format == VD_LOG_FORMAT_JSON) {
    vd_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", ts,
                level_name(level));
    vd_buf_add_json_str(&line, event, strlen(event));
    vd_buf_adds(&line, ",\"msg\":");
    vd_buf_add_json_str(&line, msg.data ? msg.data : "", msg.len);
    if (detail) {
      vd_buf_adds(&line, ",\"detail\":");
      vd_buf_add_json_str(&line, detail, strlen(detail));
    }
    vd_buf_addc(&line, '}');
  } else {
    vd_buf_addf(&line, "%s %s %s: ", ts, level_name(level), event);
    add_text(&line, msg.data ? msg.data : "", msg.len);
    if (detail) {
      vd_buf_adds(&line, " | ");
      add_text(&line, detail, strlen(detail));
    }
  }
  vd_buf_addc(&line, '\n');
  /* one write; a short one (a full pipe) goes on from where it stopped */
  for (p = line.data, left = line.len; left > 0; p += n, left -= (size_t)n) {
    n = write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR)
      n = 0;
    else if (n < 0)
      break; /* nowhere else to say it */
  }
  vd_buf_release(&line);
  vd_buf_release(&msg);
}

void vd_log(vd_level_t level, const char *event, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, event, NULL, fmt, ap);
  va_end(ap);
}

void vd_log_detail(vd_level_t level, const char *event, const char *detail,
                   const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, event, detail, fmt, ap);
  va_end(ap);
}
