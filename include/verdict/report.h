/*
 * report.h - an impact or determinism report, written out.
 *
 * A vd_replay_report_t (replay.h) as text for a terminal, JSON for
 * programs (the web console shows the same figures from the same
 * computation), CSV of the changed decisions for a spreadsheet, or one
 * self-contained HTML file (styles, data and the chart library inlined)
 * that opens with no server.  Money is shown in yuan; policies and the
 * report struct work in fen.
 *
 * Every function appends to OUT and prints nothing; runs on its caller's
 * thread.
 */
#ifndef VERDICT_REPORT_H
#define VERDICT_REPORT_H

#include "verdict/buf.h"
#include "verdict/replay.h"

/* Where Debian's libjs-chart.js installs the chart library the HTML
 * report inlines (read at run time, never copied into the repository). */
#define VD_REPORT_CHART_JS "/usr/share/javascript/chart.js/chart.min.js"

typedef enum {
  VD_REPORT_TEXT = 0,
  VD_REPORT_JSON,
  VD_REPORT_CSV,
  VD_REPORT_HTML
} vd_report_format_t;

/* "text", "json", "csv", "html" into *F: 0, or VD_EINVALID. */
int vd_report_format_parse(const char *s, vd_report_format_t *f);

typedef struct vd_report_opts {
  int traces;            /* write each changed decision's traces in full */
  double seconds;        /* how long the replay took (0: not said) */
  const char *selection; /* which rows, for a reader ("decision time from
                          * ... to ..., region GD"); NULL: every row */
  const char *chart_js;  /* HTML: the chart library; NULL:
                          * VD_REPORT_CHART_JS */
} vd_report_opts_t;

/* Write R in format F to OUT.  Returns 0, or (HTML only) VD_EIO with ERR
 * naming the chart library that could not be read (install
 * libjs-chart.js). */
int vd_report_write(const vd_replay_report_t *r, vd_report_format_t f,
                    const vd_report_opts_t *o, vd_buf_t *out, vd_buf_t *err);

/* Whole fen as yuan, "-12.34", appended to OUT. */
void vd_report_add_yuan(vd_buf_t *out, long long fen);

#endif
