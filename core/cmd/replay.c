/*
 * replay.c - `verdict replay`: decide recorded requests again, offline,
 * and report what came out differently.
 *
 * The replaying is core/replay.c's (include/verdict/replay.h), the
 * writing core/report.c's (include/verdict/report.h).  Two uses:
 *   - no --against (or `--against recorded`): the determinism check, each
 *     row against the revision that made it; any difference is a
 *     determinism violation (exit status 3);
 *   - `--against CANDIDATE`: an impact analysis of CANDIDATE (a policy
 *     directory or a stored revision) against --baseline (the active
 *     revision by default; or `recorded`, a revision, a directory).
 * This file parses the options, resolves the bundles, times the run and
 * writes the report (text, JSON, CSV or HTML) to stdout or --output;
 * problems go to stderr.  Runs on the CLI's main thread.
 *
 * Exit status: 0 all reproduced (or a candidate replayed); 1 some rows
 * could not be decided again; 2 the replay could not run; 3 a recorded
 * decision did not reproduce.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd_int.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/replay.h"
#include "verdict/report.h"
#include "verdict/timefmt.h"

#define MAX_REPORTED 1000 /* changed decisions kept in full by default */

static const char replay_usage[] =
    "usage: verdict replay [--db PATH] [--against recorded|DIR|REV]\n"
    "                      [--baseline active|recorded|DIR|REV]\n"
    "                      [--since T] [--until T] [--at-since T] "
    "[--at-until T]\n"
    "                      [--region R] [--kind K] [--revision REV] "
    "[--error CODE|none]\n"
    "                      [--format text|json|csv|html] "
    "[--output FILE] [--traces]\n"
    "                      [--max-changes N] [--threads N] "
    "[--always-count]\n";

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "verdict replay: %s%s%s\n", msg, arg ? " " : "",
          arg ? arg : "");
  fputs(replay_usage, stderr);
  return 2;
}

static int parse_time_opt(const char *opt, const char *v, int64_t *ms) {
  int off;
  if (vd_time_parse(v, strlen(v), ms, &off) != 0)
    return usage("expects an RFC 3339 time with an offset:", opt);
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write BUF to PATH (NULL: stdout).  0, or 2 after saying why. */
static int write_out(const char *path, const vd_buf_t *buf) {
  FILE *f = path ? fopen(path, "wb") : stdout;
  int bad;
  if (!f) {
    fprintf(stderr, "verdict replay: --output %s: %s\n", path,
            strerror(errno));
    return 2;
  }
  bad = buf->len && fwrite(buf->data, 1, buf->len, f) != buf->len;
  if (path)
    bad |= fclose(f) != 0;
  else
    bad |= fflush(f) != 0;
  if (bad) {
    fprintf(stderr, "verdict replay: writing %s: %s\n",
            path ? path : "stdout", strerror(errno));
    return 2;
  }
  return 0;
}

/* Resolve SPEC (OPT names it) into *B and NAME; 0, or 2 after saying why. */
static int resolve(const char *db, const char *opt, const char *spec,
                   vd_bundle_t **b, vd_buf_t *name) {
  vd_buf_t err = VD_BUF_INIT;
  if (vd_replay_resolve(db, spec, b, name, &err) != 0) {
    fprintf(stderr, "verdict replay: %s %s: %s\n", opt, spec,
            err.data ? err.data : "cannot be loaded");
    vd_buf_release(&err);
    return 2;
  }
  vd_buf_release(&err);
  return 0;
}

/* The row filters among ARGV (already checked), for the report's reader:
 * "decision time from T, region GD"; empty when there are none. */
static void describe(int argc, char **argv, vd_buf_t *sel) {
  static const char *const names[][2] = {
      {"--since", "received from"},     {"--until", "received before"},
      {"--at-since", "decision time from"},
      {"--at-until", "decision time before"},
      {"--region", "region"},           {"--kind", "kind"},
      {"--revision", "decided by"},     {"--error", "error"}};
  int i;
  size_t k;
  for (i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--always-count") == 0 ||
        strcmp(argv[i], "--traces") == 0)
      continue; /* the only options without a value */
    for (k = 0; k < sizeof names / sizeof names[0]; k++)
      if (strcmp(argv[i], names[k][0]) == 0)
        vd_buf_addf(sel, "%s%s %s", sel->len ? ", " : "", names[k][1],
                    argv[i + 1]);
    i++;
  }
}

int vd_cli_replay(int argc, char **argv) {
  vd_replay_opts_t o;
  char revision[VD_REVISION_NAME_MAX]; /* --revision, resolved */
  vd_replay_report_t rep;
  vd_report_opts_t ro;
  vd_report_format_t format = VD_REPORT_TEXT;
  vd_bundle_t *cand = NULL, *base = NULL;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT, cname = VD_BUF_INIT,
           bname = VD_BUF_INIT, sel = VD_BUF_INIT;
  const char *against = "recorded", *baseline = NULL, *output = NULL;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  double t0;
  size_t k;
  int i, rc;

  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(replay_usage);
  memset(&o, 0, sizeof o);
  memset(&ro, 0, sizeof ro);
  o.db = VD_DEFAULT_DB;
  o.threads = ncpu > 0 ? (int)(ncpu < 64 ? ncpu : 64) : 1;
  o.max_changes = MAX_REPORTED;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--always-count") == 0) {
      o.always_count = 1;
      continue;
    }
    if (strcmp(a, "--traces") == 0) {
      ro.traces = 1;
      continue;
    }
    if (!v || a[0] != '-')
      return usage("unexpected argument", a);
    if (strcmp(a, "--db") == 0)
      o.db = v;
    else if (strcmp(a, "--against") == 0)
      against = v;
    else if (strcmp(a, "--baseline") == 0)
      baseline = v;
    else if (strcmp(a, "--output") == 0)
      output = v;
    else if (strcmp(a, "--format") == 0) {
      if (vd_report_format_parse(v, &format) != 0)
        return usage("--format takes text, json, csv or html, not", v);
    } else if (strcmp(a, "--region") == 0)
      o.select.region = v;
    else if (strcmp(a, "--kind") == 0)
      o.select.kind = v;
    else if (strcmp(a, "--revision") == 0)
      o.select.revision = v;
    else if (strcmp(a, "--error") == 0)
      o.select.error_code = v;
    else if (strcmp(a, "--threads") == 0) {
      o.threads = atoi(v);
      if (o.threads < 1 || o.threads > 64)
        return usage("--threads takes 1 to 64, not", v);
    } else if (strcmp(a, "--max-changes") == 0) {
      o.max_changes = atoll(v);
      if (o.max_changes < 1)
        return usage("--max-changes takes a whole number above 0, not", v);
    } else if (strcmp(a, "--since") == 0) {
      if (parse_time_opt(a, v, &o.select.since_ms))
        return 2;
      o.select.has_since = 1;
    } else if (strcmp(a, "--until") == 0) {
      if (parse_time_opt(a, v, &o.select.until_ms))
        return 2;
      o.select.has_until = 1;
    } else if (strcmp(a, "--at-since") == 0) {
      if (parse_time_opt(a, v, &o.select.at_since_ms))
        return 2;
      o.select.has_at_since = 1;
    } else if (strcmp(a, "--at-until") == 0) {
      if (parse_time_opt(a, v, &o.select.at_until_ms))
        return 2;
      o.select.has_at_until = 1;
    } else
      return usage("unknown option", a);
    i++;
  }
  if (baseline && strcmp(against, "recorded") == 0)
    return usage("--baseline needs a candidate (--against DIR|REV)", NULL);
  if (o.select.revision) { /* any name the history gives a revision */
    char *msg = NULL;
    if (vd_history_resolve(o.db, o.select.revision, revision, &msg) != 0) {
      fprintf(stderr, "verdict replay: --revision %s: %s\n",
              o.select.revision, msg ? msg : "no such revision");
      free(msg);
      return 2;
    }
    o.select.revision = revision;
  }
  if (!baseline)
    baseline = "active";
  if (strcmp(against, "recorded") != 0) {
    if (resolve(o.db, "--against", against, &cand, &cname))
      return 2;
    o.candidate = cand;
    o.candidate_name = cname.data;
    if (strcmp(baseline, "recorded") != 0) {
      if (resolve(o.db, "--baseline", baseline, &base, &bname)) {
        vd_bundle_unref(cand);
        vd_buf_release(&cname);
        return 2;
      }
      o.baseline = base;
      o.baseline_name = bname.data;
    }
  }
  describe(argc, argv, &sel);
  ro.selection = sel.len ? sel.data : NULL;
  t0 = now_s();
  rc = vd_replay_run(&o, &rep, &err);
  ro.seconds = now_s() - t0;
  if (rc) {
    if (rep.candidate_failed || rep.baseline_failed)
      fprintf(stderr, "verdict replay: %s %s: %s\n",
              rep.candidate_failed ? "--against" : "--baseline",
              rep.candidate_failed ? against : baseline, err.data);
    else
      fprintf(stderr, "verdict replay: %s\n",
              err.data ? err.data : vd_err_desc(rc));
    rc = 2;
    goto out;
  }
  if (rep.facts_warning)
    fprintf(stderr, "verdict replay: new questions of the candidate "
                    "cannot be answered: %s\n", rep.facts_warning);
  for (k = 0; k < rep.nrow_errors; k++)
    fprintf(stderr, "verdict replay: %s: %s\n",
            rep.row_errors[k].decision_id, rep.row_errors[k].why);
  for (k = 0; k < rep.nunloadable; k++)
    fprintf(stderr, "verdict replay: %s: %lld decision%s cannot be replayed "
                    "under the present sandbox: %s\n",
            rep.unloadable[k].revision, rep.unloadable[k].rows,
            rep.unloadable[k].rows == 1 ? "" : "s", rep.unloadable[k].why);
  if (vd_report_write(&rep, format, &ro, &out, &err) != 0) {
    fprintf(stderr, "verdict replay: %s\n", err.data);
    rc = 2;
    goto out;
  }
  if ((rc = write_out(output, &out)) != 0)
    goto out;
  if (!cand && rep.changed)
    fprintf(stderr, "verdict replay: %lld decision%s did not reproduce "
                    "(a determinism violation)\n",
            rep.changed, rep.changed == 1 ? "" : "s");
  rc = rep.errors || rep.unloadable_rows ? 1 : (!cand && rep.changed) ? 3 : 0;
out:
  vd_replay_report_release(&rep);
  if (cand)
    vd_bundle_unref(cand);
  if (base)
    vd_bundle_unref(base);
  vd_buf_release(&err);
  vd_buf_release(&out);
  vd_buf_release(&cname);
  vd_buf_release(&bname);
  vd_buf_release(&sel);
  return rc;
}
