/*
 * replay.c - `verdict replay`: decide recorded requests again, offline,
 * and print what came out differently.
 *
 * The replaying is core/replay.c's (include/verdict/replay.h): against
 * the revision that made each decision (`--against recorded`, the
 * default: any difference is a determinism violation, exit status 3) or
 * a candidate policy directory (an impact analysis: what would change,
 * per-rule hit counts before and after, and the compensation offers
 * before and after).  This file parses the options, loads the candidate,
 * and prints the report: text or JSON on stdout, problems on stderr.
 * Runs on the CLI's main thread.
 *
 * Exit status: 0 all reproduced (or a candidate replayed); 1 some rows
 * could not be decided again; 2 the replay could not run; 3 a recorded
 * decision did not reproduce.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd_int.h"
#include "verdict/bundle.h"
#include "verdict/error.h"
#include "verdict/replay.h"
#include "verdict/timefmt.h"

#define MAX_REPORTED 1000 /* changed decisions printed in full */

static const char replay_usage[] =
    "usage: verdict replay [--db PATH] [--since T] [--until T] "
    "[--region R] [--kind K]\n"
    "                      [--against recorded|DIR] "
    "[--format text|json] [--threads N]\n"
    "                      [--always-count]\n";

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

/* One changed decision: text, or a JSON object. */
static void print_change(vd_buf_t *b, const vd_replay_change_t *c, int json) {
  size_t i;
  if (json)
    vd_buf_addf(b, "{\"decision_id\":\"%s\",\"fields\":[", c->decision_id);
  else
    vd_buf_addf(b, "  %s\n", c->decision_id);
  for (i = 0; i < c->ndiffs; i++) {
    const vd_replay_diff_t *d = &c->diffs[i];
    if (json) {
      vd_buf_addf(b, "%s{\"field\":", i ? "," : "");
      vd_buf_add_json_str(b, d->field, strlen(d->field));
      vd_buf_addf(b, ",\"old\":%s,\"new\":%s}",
                  d->old_json ? d->old_json : "null",
                  d->new_json ? d->new_json : "null");
    } else {
      vd_buf_addf(b, "    %s: %s -> %s\n", d->field,
                  d->old_json ? d->old_json : "(absent)",
                  d->new_json ? d->new_json : "(absent)");
    }
  }
  if (json)
    vd_buf_adds(b, "]}");
}

static int print_report(const vd_replay_report_t *r, const char *against,
                        int json) {
  const vd_replay_offers_t *ob = &r->offers_before, *oa = &r->offers_after;
  int recorded = against == NULL;
  vd_buf_t changes = VD_BUF_INIT;
  size_t i;
  for (i = 0; i < r->nchanges; i++) {
    if (json && i)
      vd_buf_addc(&changes, ',');
    print_change(&changes, &r->changes[i], json);
  }
  if (json) {
    vd_buf_t a = VD_BUF_INIT;
    vd_buf_add_json_str(&a, recorded ? "recorded" : against,
                        strlen(recorded ? "recorded" : against));
    printf("{\"against\":%s,\"replayed\":%lld,\"unchanged\":%lld,"
           "\"changed\":%lld,\"errors\":%lld,\"asked_now\":%lld,"
           "\"changes\":[%s]",
           a.data, r->replayed, r->unchanged, r->changed, r->errors,
           r->asked_now, changes.data ? changes.data : "");
    vd_buf_release(&a);
    if (!recorded) {
      printf(",\"rules\":{");
      for (i = 0; i < r->nrules; i++)
        printf("%s\"%s\":{\"before\":%lld,\"after\":%lld}", i ? "," : "",
               r->rules[i].rule, r->rules[i].before, r->rules[i].after);
      printf("},\"offers\":{\"count\":%lld,\"before\":{\"total_fen\":%lld,"
             "\"p50\":%lld,\"p90\":%lld,\"max\":%lld},\"after\":{"
             "\"total_fen\":%lld,\"p50\":%lld,\"p90\":%lld,\"max\":%lld}}",
             ob->count, ob->total, ob->p50, ob->p90, ob->max, oa->total,
             oa->p50, oa->p90, oa->max);
    }
    printf("}\n");
  } else {
    printf("replayed %lld against %s: %lld unchanged, %lld changed, %lld "
           "errors\n",
           r->replayed, recorded ? "the recorded revisions" : against,
           r->unchanged, r->changed, r->errors);
    if (r->asked_now)
      printf("%lld decision%s asked history a question %s record did not "
             "hold; answered from the history as it is now\n",
             r->asked_now, r->asked_now == 1 ? "" : "s",
             r->asked_now == 1 ? "its" : "their");
    if (r->changed)
      printf("changed:\n%s", changes.data ? changes.data : "");
    if (r->changed > MAX_REPORTED)
      printf("  (%lld more not shown)\n", r->changed - MAX_REPORTED);
    if (!recorded) {
      printf("rule hits (before -> after):\n");
      for (i = 0; i < r->nrules; i++)
        printf("  %-40s %8lld -> %-8lld%s\n", r->rules[i].rule,
               r->rules[i].before, r->rules[i].after,
               r->rules[i].before != r->rules[i].after ? " *" : "");
      if (ob->count)
        printf("compensation offers (%lld): total %lld -> %lld fen; p50 %lld "
               "-> %lld; p90 %lld -> %lld; max %lld -> %lld\n",
               ob->count, ob->total, oa->total, ob->p50, oa->p50, ob->p90,
               oa->p90, ob->max, oa->max);
    }
  }
  vd_buf_release(&changes);
  if (recorded && r->changed)
    fprintf(stderr, "verdict replay: %lld decision%s did not reproduce "
                    "(a determinism violation)\n",
            r->changed, r->changed == 1 ? "" : "s");
  return r->errors ? 1 : (recorded && r->changed) ? 3 : 0;
}

int vd_cli_replay(int argc, char **argv) {
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_bundle_t *cand = NULL;
  vd_buf_t err = VD_BUF_INIT;
  const char *against = "recorded", *format = "text";
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  size_t k;
  int i, rc;

  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(replay_usage);
  memset(&o, 0, sizeof o);
  o.db = VD_DEFAULT_DB;
  o.threads = ncpu > 0 ? (int)(ncpu < 8 ? ncpu : 8) : 1;
  o.max_changes = MAX_REPORTED;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--always-count") == 0) {
      o.always_count = 1;
      continue;
    }
    if (!v || a[0] != '-')
      return usage("unexpected argument", a);
    if (strcmp(a, "--db") == 0)
      o.db = v;
    else if (strcmp(a, "--against") == 0)
      against = v;
    else if (strcmp(a, "--format") == 0) {
      if (strcmp(v, "text") && strcmp(v, "json"))
        return usage("--format takes text or json, not", v);
      format = v;
    } else if (strcmp(a, "--region") == 0)
      o.select.region = v;
    else if (strcmp(a, "--kind") == 0)
      o.select.kind = v;
    else if (strcmp(a, "--threads") == 0) {
      o.threads = atoi(v);
      if (o.threads < 1 || o.threads > 64)
        return usage("--threads takes 1 to 64, not", v);
    } else if (strcmp(a, "--since") == 0) {
      if (parse_time_opt(a, v, &o.select.since_ms))
        return 2;
      o.select.has_since = 1;
    } else if (strcmp(a, "--until") == 0) {
      if (parse_time_opt(a, v, &o.select.until_ms))
        return 2;
      o.select.has_until = 1;
    } else
      return usage("unknown option", a);
    i++;
  }
  if (strcmp(against, "recorded") != 0) {
    if (vd_bundle_load(against, &cand, &err) != 0) {
      fprintf(stderr, "verdict replay: --against %s: %s\n", against,
              err.data);
      vd_buf_release(&err);
      return 2;
    }
    o.candidate = cand;
  }
  rc = vd_replay_run(&o, &rep, &err);
  if (rc) {
    if (rep.candidate_failed)
      fprintf(stderr, "verdict replay: --against %s: %s\n", against,
              err.data);
    else
      fprintf(stderr, "verdict replay: %s\n",
              err.data ? err.data : vd_err_desc(rc));
    rc = 2;
  } else {
    if (rep.facts_warning)
      fprintf(stderr, "verdict replay: new questions of the candidate "
                      "cannot be answered: %s\n", rep.facts_warning);
    for (k = 0; k < rep.nrow_errors; k++)
      fprintf(stderr, "verdict replay: %s: %s\n",
              rep.row_errors[k].decision_id, rep.row_errors[k].why);
    rc = print_report(&rep, cand ? against : NULL,
                      strcmp(format, "json") == 0);
  }
  vd_replay_report_release(&rep);
  if (cand)
    vd_bundle_unref(cand);
  vd_buf_release(&err);
  return rc;
}
