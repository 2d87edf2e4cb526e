/*
 * report.c - an impact or determinism report written out
 * (include/verdict/report.h): text, JSON, CSV or one self-contained HTML
 * file.
 *
 * Owns nothing beyond a call: every writer reads a finished
 * vd_replay_report_t (core/replay.c) and appends to the caller's buffer.
 * The JSON is the one machine form: the HTML embeds exactly it as its
 * data, and the web console is to show the same.  Figures per kind and per
 * region are sums of the report's per-(kind, region) groups.
 *
 * Threads: any; prints nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verdict/error.h"
#include "verdict/report.h"

int vd_report_format_parse(const char *s, vd_report_format_t *f) {
  static const char *const names[] = {"text", "json", "csv", "html"};
  int i;
  for (i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) {
      *f = (vd_report_format_t)i;
      return 0;
    }
  return VD_EINVALID;
}

void vd_report_add_yuan(vd_buf_t *out, long long fen) {
  unsigned long long a = fen < 0 ? 0ULL - (unsigned long long)fen
                                 : (unsigned long long)fen;
  vd_buf_addf(out, "%s%llu.%02llu", fen < 0 ? "-" : "", a / 100, a % 100);
}

static void add_str(vd_buf_t *out, const char *s) {
  if (s)
    vd_buf_add_json_str(out, s, strlen(s));
  else
    vd_buf_adds(out, "null");
}

/* ========================================================================
 * Totals per kind and per region
 * ====================================================================== */

/* Groups summed by kind (by_region 0) or by region (1): a new array of
 * *n entries, sorted as the groups are (by kind) or by region. */
static vd_replay_group_t *sum_groups(const vd_replay_report_t *r,
                                     int by_region, size_t *n) {
  vd_replay_group_t *t = calloc(r->ngroups ? r->ngroups : 1, sizeof *t);
  size_t i, j;
  *n = 0;
  if (!t)
    return NULL;
  for (i = 0; i < r->ngroups; i++) {
    const vd_replay_group_t *g = &r->groups[i];
    const char *key = by_region ? g->region : g->kind;
    for (j = 0; j < *n; j++)
      if (strcmp(by_region ? t[j].region : t[j].kind, key) == 0)
        break;
    if (j == *n) {
      memset(&t[j], 0, sizeof t[j]);
      snprintf(by_region ? t[j].region : t[j].kind, sizeof t[j].kind, "%s",
               key);
      (*n)++;
    }
    t[j].replayed += g->replayed;
    t[j].changed += g->changed;
    t[j].material += g->material;
    t[j].offers += g->offers;
    t[j].before_fen += g->before_fen;
    t[j].after_fen += g->after_fen;
    t[j].up += g->up;
    t[j].down += g->down;
  }
  if (by_region) /* few entries: insertion sort by region */
    for (i = 1; i < *n; i++)
      for (j = i; j > 0 && strcmp(t[j - 1].region, t[j].region) > 0; j--) {
        vd_replay_group_t x = t[j];
        t[j] = t[j - 1];
        t[j - 1] = x;
      }
  return t;
}

/* ========================================================================
 * JSON
 * ====================================================================== */

static void json_group(vd_buf_t *o, const vd_replay_group_t *g, int kind,
                       int region) {
  vd_buf_addc(o, '{');
  if (kind) {
    vd_buf_adds(o, "\"kind\":");
    add_str(o, g->kind);
    vd_buf_addc(o, ',');
  }
  if (region) {
    vd_buf_adds(o, "\"region\":");
    add_str(o, g->region);
    vd_buf_addc(o, ',');
  }
  vd_buf_addf(o, "\"replayed\":%lld,\"changed\":%lld,\"material\":%lld,"
                 "\"offers\":%lld,\"up\":%lld,\"down\":%lld,\"before_yuan\":",
              g->replayed, g->changed, g->material, g->offers, g->up,
              g->down);
  vd_report_add_yuan(o, g->before_fen);
  vd_buf_adds(o, ",\"after_yuan\":");
  vd_report_add_yuan(o, g->after_fen);
  vd_buf_adds(o, ",\"moved_yuan\":");
  vd_report_add_yuan(o, g->after_fen - g->before_fen);
  vd_buf_addc(o, '}');
}

static void json_offers(vd_buf_t *o, const vd_replay_offers_t *s) {
  vd_buf_addf(o, "{\"total_fen\":%lld,\"p50\":%lld,\"p90\":%lld,\"max\":%lld,"
                 "\"total_yuan\":",
              s->total, s->p50, s->p90, s->max);
  vd_report_add_yuan(o, s->total);
  vd_buf_addc(o, '}');
}

static void json_strs(vd_buf_t *o, char *const *v, size_t n) {
  size_t i;
  vd_buf_addc(o, '[');
  for (i = 0; i < n; i++) {
    if (i)
      vd_buf_addc(o, ',');
    add_str(o, v[i]);
  }
  vd_buf_addc(o, ']');
}

static void json_money(vd_buf_t *o, long long fen) {
  if (fen < 0)
    vd_buf_adds(o, "null");
  else
    vd_report_add_yuan(o, fen);
}

static void json_change(vd_buf_t *o, const vd_replay_change_t *c,
                        int impact, int traces) {
  size_t i, k = 0;
  vd_buf_addf(o, "{\"seq\":%lld,\"decision_id\":", (long long)c->seq);
  add_str(o, c->decision_id);
  vd_buf_adds(o, ",\"complaint_id\":");
  add_str(o, c->complaint_id);
  vd_buf_adds(o, ",\"kind\":");
  add_str(o, c->kind);
  vd_buf_adds(o, ",\"region\":");
  add_str(o, c->region);
  vd_buf_adds(o, ",\"at\":");
  add_str(o, c->at);
  if (impact) {
    vd_buf_addf(o, ",\"material\":%s,\"offer_before_yuan\":",
                c->material ? "true" : "false");
    json_money(o, c->offer_before);
    vd_buf_adds(o, ",\"offer_after_yuan\":");
    json_money(o, c->offer_after);
    vd_buf_adds(o, ",\"rules_gained\":");
    json_strs(o, c->gained, c->ngained);
    vd_buf_adds(o, ",\"rules_lost\":");
    json_strs(o, c->lost, c->nlost);
  }
  vd_buf_adds(o, ",\"fields\":[");
  for (i = 0; i < c->ndiffs; i++) {
    const vd_replay_diff_t *d = &c->diffs[i];
    if (!traces && strcmp(d->field, "trace") == 0)
      continue; /* the rules gained and lost say it; in full on request */
    vd_buf_adds(o, k++ ? ",{\"field\":" : "{\"field\":");
    add_str(o, d->field);
    vd_buf_addf(o, ",\"old\":%s,\"new\":%s",
                d->old_json ? d->old_json : "null",
                d->new_json ? d->new_json : "null");
    if (impact)
      vd_buf_addf(o, ",\"recorded\":%s,\"outcome\":%s",
                  d->recorded_json ? d->recorded_json : "null",
                  d->outcome ? "true" : "false");
    vd_buf_addc(o, '}');
  }
  vd_buf_adds(o, "]}");
}

static void write_json(const vd_replay_report_t *r, const vd_report_opts_t *o,
                       vd_buf_t *out) {
  int impact = r->candidate != NULL;
  size_t i, n;
  vd_replay_group_t *t;
  vd_buf_adds(out, "{\"against\":");
  add_str(out, impact ? r->candidate : "recorded");
  if (impact) {
    vd_buf_adds(out, ",\"candidate\":");
    add_str(out, r->candidate);
    vd_buf_adds(out, ",\"baseline\":");
    add_str(out, r->baseline);
  }
  vd_buf_adds(out, ",\"selection\":");
  add_str(out, o->selection ? o->selection : "every decision");
  vd_buf_addf(out, ",\"replayed\":%lld,\"unchanged\":%lld,\"changed\":%lld,"
                   "\"material\":%lld,\"immaterial\":%lld,\"errors\":%lld,"
                   "\"unreplayable\":%lld,\"asked_now\":%lld,"
                   "\"baseline_asked_now\":%lld",
              r->replayed, r->unchanged, r->changed, r->material,
              r->immaterial, r->errors, r->unloadable_rows, r->asked_now,
              r->baseline_asked_now);
  if (o->seconds > 0)
    vd_buf_addf(out, ",\"seconds\":%.3f,\"decisions_per_second\":%.0f",
                o->seconds, (double)r->replayed / o->seconds);
  vd_buf_adds(out, ",\"unloadable\":[");
  for (i = 0; i < r->nunloadable; i++) {
    vd_buf_adds(out, i ? ",{\"revision\":" : "{\"revision\":");
    add_str(out, r->unloadable[i].revision);
    vd_buf_addf(out, ",\"decisions\":%lld,\"activated\":%s,\"why\":",
                r->unloadable[i].rows,
                r->unloadable[i].activated ? "true" : "false");
    add_str(out, r->unloadable[i].why);
    vd_buf_addc(out, '}');
  }
  vd_buf_adds(out, "],\"changes\":[");
  for (i = 0; i < r->nchanges; i++) {
    if (i)
      vd_buf_addc(out, ',');
    json_change(out, &r->changes[i], impact, o->traces);
  }
  vd_buf_addf(out, "],\"changes_not_listed\":%lld",
              r->changed - (long long)r->nchanges);
  if (!impact) {
    vd_buf_adds(out, "}\n");
    return;
  }
  vd_buf_adds(out, ",\"rules\":{");
  for (i = 0; i < r->nrules; i++) {
    if (i)
      vd_buf_addc(out, ',');
    add_str(out, r->rules[i].rule);
    vd_buf_addf(out, ":{\"before\":%lld,\"after\":%lld}", r->rules[i].before,
                r->rules[i].after);
  }
  vd_buf_addf(out, "},\"offers\":{\"count\":%lld,\"before\":",
              r->offers_before.count);
  json_offers(out, &r->offers_before);
  vd_buf_adds(out, ",\"after\":");
  json_offers(out, &r->offers_after);
  vd_buf_adds(out, ",\"moved_yuan\":");
  vd_report_add_yuan(out, r->offers_after.total - r->offers_before.total);
  vd_buf_adds(out, "},\"by_kind_region\":[");
  for (i = 0; i < r->ngroups; i++) {
    if (i)
      vd_buf_addc(out, ',');
    json_group(out, &r->groups[i], 1, 1);
  }
  vd_buf_adds(out, "],\"by_kind\":[");
  t = sum_groups(r, 0, &n);
  for (i = 0; t && i < n; i++) {
    if (i)
      vd_buf_addc(out, ',');
    json_group(out, &t[i], 1, 0);
  }
  free(t);
  vd_buf_adds(out, "],\"by_region\":[");
  t = sum_groups(r, 1, &n);
  for (i = 0; t && i < n; i++) {
    if (i)
      vd_buf_addc(out, ',');
    json_group(out, &t[i], 0, 1);
  }
  free(t);
  vd_buf_adds(out, "],\"outcomes\":[");
  for (i = 0; i < r->nfields; i++) {
    const vd_replay_field_t *f = &r->fields[i];
    vd_buf_adds(out, i ? ",{\"kind\":" : "{\"kind\":");
    add_str(out, f->kind);
    vd_buf_adds(out, ",\"field\":");
    add_str(out, f->field);
    vd_buf_addf(out, ",\"as\":\"%s\",\"changed\":%lld",
                vd_outcome_as_name(f->as), f->changed);
    if (f->as == VD_OUTCOME_DEADLINE)
      vd_buf_addf(out, ",\"earlier\":%lld,\"later\":%lld", f->earlier,
                  f->later);
    vd_buf_addc(out, '}');
  }
  vd_buf_adds(out, "],\"level_moves\":[");
  for (i = 0; i < r->nmoves; i++) {
    const vd_replay_move_t *m = &r->moves[i];
    vd_buf_adds(out, i ? ",{\"kind\":" : "{\"kind\":");
    add_str(out, m->kind);
    vd_buf_adds(out, ",\"field\":");
    add_str(out, m->field);
    vd_buf_addf(out, ",\"from\":%s,\"to\":%s,\"count\":%lld}", m->from,
                m->to, m->count);
  }
  vd_buf_adds(out, "],\"histogram\":{\"edges_yuan\":[");
  for (i = 0; i < VD_REPLAY_HIST_BUCKETS - 1; i++) {
    if (i)
      vd_buf_addc(out, ',');
    vd_buf_addf(out, "%lld", vd_replay_hist_edges[i] / 100);
  }
  vd_buf_adds(out, "],\"counts\":[");
  for (i = 0; i < VD_REPLAY_HIST_BUCKETS; i++)
    vd_buf_addf(out, "%s%lld", i ? "," : "", r->hist[i]);
  vd_buf_adds(out, "]}}\n");
}

/* ========================================================================
 * Text
 * ====================================================================== */

static void write_text(const vd_replay_report_t *r, const vd_report_opts_t *o,
                       vd_buf_t *out) {
  int impact = r->candidate != NULL;
  const vd_replay_offers_t *ob = &r->offers_before, *oa = &r->offers_after;
  size_t i, j, n;
  vd_replay_group_t *t;
  if (impact)
    vd_buf_addf(out, "replayed %lld: candidate %s against baseline %s: "
                     "%lld unchanged, %lld changed (%lld material, %lld "
                     "immaterial), %lld errors\n",
                r->replayed, r->candidate, r->baseline, r->unchanged,
                r->changed, r->material, r->immaterial, r->errors);
  else
    vd_buf_addf(out, "replayed %lld against the recorded revisions: %lld "
                     "unchanged, %lld changed, %lld errors\n",
                r->replayed, r->unchanged, r->changed, r->errors);
  if (o->selection)
    vd_buf_addf(out, "selected: %s\n", o->selection);
  if (o->seconds > 0)
    vd_buf_addf(out, "%.2f s, %.0f decisions/s\n", o->seconds,
                (double)r->replayed / o->seconds);
  for (i = 0; i < r->nunloadable; i++)
    vd_buf_addf(out, "%lld decision%s of %s cannot be replayed under the "
                     "present sandbox%s: %s\n",
                r->unloadable[i].rows, r->unloadable[i].rows == 1 ? "" : "s",
                r->unloadable[i].revision,
                r->unloadable[i].activated
                    ? " (it loaded when it was activated: the load rules "
                      "have changed since)"
                    : "",
                r->unloadable[i].why);
  if (r->asked_now)
    vd_buf_addf(out, "%lld decision%s asked history a question %s record "
                     "did not hold; answered from the history as it is now\n",
                r->asked_now, r->asked_now == 1 ? "" : "s",
                r->asked_now == 1 ? "its" : "their");
  if (r->changed)
    vd_buf_adds(out, "changed:\n");
  for (i = 0; i < r->nchanges; i++) {
    const vd_replay_change_t *c = &r->changes[i];
    vd_buf_addf(out, "  %s", c->decision_id);
    if (impact)
      vd_buf_addf(out, "  %s %s %s complaint %s%s", c->kind, c->region, c->at,
                  c->complaint_id ? c->complaint_id : "-",
                  c->material ? "" : "  (immaterial)");
    vd_buf_addc(out, '\n');
    for (j = 0; j < c->ndiffs; j++) {
      const vd_replay_diff_t *d = &c->diffs[j];
      if (impact && !o->traces && strcmp(d->field, "trace") == 0)
        continue;
      vd_buf_addf(out, "    %s: %s -> %s", d->field,
                  d->old_json ? d->old_json : "(absent)",
                  d->new_json ? d->new_json : "(absent)");
      if (impact)
        vd_buf_addf(out, "  (recorded %s)",
                    d->recorded_json ? d->recorded_json : "absent");
      vd_buf_addc(out, '\n');
    }
    for (j = 0; j < c->ngained; j++)
      vd_buf_addf(out, "    + rule %s\n", c->gained[j]);
    for (j = 0; j < c->nlost; j++)
      vd_buf_addf(out, "    - rule %s\n", c->lost[j]);
  }
  if (r->changed > (long long)r->nchanges)
    vd_buf_addf(out, "  (%lld more not shown)\n",
                r->changed - (long long)r->nchanges);
  if (!impact)
    return;
  vd_buf_adds(out, "rule hits (baseline -> candidate):\n");
  for (i = 0; i < r->nrules; i++)
    vd_buf_addf(out, "  %-40s %8lld -> %-8lld%s\n", r->rules[i].rule,
                r->rules[i].before, r->rules[i].after,
                r->rules[i].before != r->rules[i].after ? " *" : "");
  if (ob->count) {
    const long long *pairs[4][2] = {{&ob->total, &oa->total},
                                    {&ob->p50, &oa->p50},
                                    {&ob->p90, &oa->p90},
                                    {&ob->max, &oa->max}};
    static const char *const names[4] = {"total", "p50", "p90", "max"};
    vd_buf_addf(out, "offers (%lld decisions with one either side), yuan:",
                ob->count);
    for (j = 0; j < 4; j++) {
      vd_buf_addf(out, "%s %s ", j ? ";" : "", names[j]);
      vd_report_add_yuan(out, *pairs[j][0]);
      vd_buf_adds(out, " -> ");
      vd_report_add_yuan(out, *pairs[j][1]);
    }
    vd_buf_addc(out, '\n');
    vd_buf_adds(out, "money by region (yuan, baseline -> candidate):\n");
    t = sum_groups(r, 1, &n);
    for (i = 0; t && i < n; i++) {
      if (!t[i].offers)
        continue;
      vd_buf_addf(out, "  %-10s ", t[i].region);
      vd_report_add_yuan(out, t[i].before_fen);
      vd_buf_adds(out, " -> ");
      vd_report_add_yuan(out, t[i].after_fen);
      vd_buf_addf(out, "  (%lld up, %lld down)\n", t[i].up, t[i].down);
    }
    free(t);
  }
  for (i = 0; i < r->nfields; i++) {
    const vd_replay_field_t *f = &r->fields[i];
    vd_buf_addf(out, "%s %s (%s): %lld decision%s changed", f->kind, f->field,
                vd_outcome_as_name(f->as), f->changed,
                f->changed == 1 ? "" : "s");
    if (f->as == VD_OUTCOME_DEADLINE)
      vd_buf_addf(out, "; %lld earlier, %lld later", f->earlier, f->later);
    vd_buf_addc(out, '\n');
  }
  for (i = 0; i < r->nmoves; i++)
    vd_buf_addf(out, "  %s %s %s -> %s: %lld\n", r->moves[i].kind,
                r->moves[i].field, r->moves[i].from, r->moves[i].to,
                r->moves[i].count);
}

/* ========================================================================
 * CSV: one row per changed decision
 * ====================================================================== */

static void csv_cell(vd_buf_t *out, const char *s, int last) {
  const char *p;
  s = s ? s : "";
  if (strpbrk(s, ",\"\r\n")) {
    vd_buf_addc(out, '"');
    for (p = s; *p; p++) {
      if (*p == '"')
        vd_buf_addc(out, '"');
      vd_buf_addc(out, *p);
    }
    vd_buf_addc(out, '"');
  } else {
    vd_buf_adds(out, s);
  }
  vd_buf_adds(out, last ? "\r\n" : ",");
}

static void write_csv(const vd_replay_report_t *r, const vd_report_opts_t *o,
                      vd_buf_t *out) {
  static const char header[] =
      "seq,decision_id,complaint_id,kind,region,at,material,"
      "baseline_offer_yuan,candidate_offer_yuan,moved_yuan,changed_fields,"
      "baseline,candidate,recorded,rules_gained,rules_lost\r\n";
  vd_buf_t cell = VD_BUF_INIT;
  size_t i, j;
  int part;
  vd_buf_adds(out, header);
  for (i = 0; i < r->nchanges; i++) {
    const vd_replay_change_t *c = &r->changes[i];
    vd_buf_addf(out, "%lld,", (long long)c->seq);
    csv_cell(out, c->decision_id, 0);
    csv_cell(out, c->complaint_id, 0);
    csv_cell(out, c->kind, 0);
    csv_cell(out, c->region, 0);
    csv_cell(out, c->at, 0);
    csv_cell(out, c->material ? "yes" : "no", 0);
    vd_buf_reset(&cell);
    if (c->offer_before >= 0)
      vd_report_add_yuan(&cell, c->offer_before);
    csv_cell(out, cell.data, 0);
    vd_buf_reset(&cell);
    if (c->offer_after >= 0)
      vd_report_add_yuan(&cell, c->offer_after);
    csv_cell(out, cell.data, 0);
    vd_buf_reset(&cell);
    if (c->offer_before >= 0 || c->offer_after >= 0)
      vd_report_add_yuan(&cell, (c->offer_after > 0 ? c->offer_after : 0) -
                                    (c->offer_before > 0 ? c->offer_before
                                                         : 0));
    csv_cell(out, cell.data, 0);
    /* the fields, then their values in three columns, "; " between */
    for (part = 0; part < 4; part++) {
      int k = 0;
      vd_buf_reset(&cell);
      for (j = 0; j < c->ndiffs; j++) {
        const vd_replay_diff_t *d = &c->diffs[j];
        const char *v = part == 0   ? d->field
                        : part == 1 ? d->old_json
                        : part == 2 ? d->new_json
                                    : d->recorded_json;
        if (!o->traces && strcmp(d->field, "trace") == 0)
          continue;
        if (k++)
          vd_buf_adds(&cell, "; ");
        vd_buf_adds(&cell, v ? v : "(absent)");
      }
      csv_cell(out, cell.data, 0);
    }
    vd_buf_reset(&cell);
    for (j = 0; j < c->ngained; j++)
      vd_buf_addf(&cell, "%s%s", j ? " " : "", c->gained[j]);
    csv_cell(out, cell.data, 0);
    vd_buf_reset(&cell);
    for (j = 0; j < c->nlost; j++)
      vd_buf_addf(&cell, "%s%s", j ? " " : "", c->lost[j]);
    csv_cell(out, cell.data, 1);
  }
  vd_buf_release(&cell);
}

/* ========================================================================
 * HTML: one file, opened with no server
 * ====================================================================== */

static void html_text(vd_buf_t *out, const char *s) {
  for (; s && *s; s++)
    switch (*s) {
    case '<': vd_buf_adds(out, "&lt;"); break;
    case '>': vd_buf_adds(out, "&gt;"); break;
    case '&': vd_buf_adds(out, "&amp;"); break;
    case '"': vd_buf_adds(out, "&quot;"); break;
    default: vd_buf_addc(out, *s);
    }
}

/* A file read whole into OUT; VD_EIO with ERR saying why. */
static int read_file(const char *path, vd_buf_t *out, vd_buf_t *err) {
  char chunk[65536];
  size_t n;
  FILE *f = fopen(path, "rb");
  if (!f) {
    vd_buf_addf(err, "%s: cannot read the chart library (install Debian's "
                     "libjs-chart.js): %s", path, strerror(errno));
    return VD_EIO;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    vd_buf_add(out, chunk, n);
  fclose(f);
  return 0;
}

static const char STYLE[] =
    "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;"
    "padding:1rem 1.5rem;color:#1b1b1b;background:#fff}"
    "h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin-top:2rem;"
    "border-bottom:1px solid #ccc}"
    "dl.summary{display:grid;grid-template-columns:repeat(auto-fill,"
    "minmax(9rem,1fr));gap:.5rem}dl.summary div{background:#f1f3f5;"
    "padding:.5rem .7rem;border-radius:4px}dt{font-size:.85rem;color:#444}"
    "dd{margin:0;font-size:1.4rem;font-weight:600}"
    "table{border-collapse:collapse;width:100%;margin:.5rem 0}"
    "th,td{border-bottom:1px solid #ddd;padding:.25rem .5rem;text-align:left;"
    "vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:"
    "tabular-nums}th{background:#f1f3f5}code{font-size:.85rem;"
    "word-break:break-all}.chart{position:relative;height:18rem}"
    ".up{color:#a4000f}.down{color:#005a32}.note{color:#444}"
    "@media print{.chart{height:14rem}}";

/* The page script: charts from the embedded data (the JSON form). */
static const char SCRIPT[] =
    "(function(){\n"
    "var d=JSON.parse(document.getElementById('impact-data').textContent);\n"
    "var ok=typeof Chart!=='undefined';\n"
    "function chart(id,cfg){var c=document.getElementById(id);"
    "if(!ok||!c)return;c.chartInstance=new Chart(c,cfg);}\n"
    "var opt={responsive:true,maintainAspectRatio:false,animation:false};\n"
    "var g=d.by_kind_region.filter(function(x){return x.changed>0;});\n"
    "chart('chart-groups',{type:'bar',data:{labels:g.map(function(x){"
    "return x.kind+' / '+x.region;}),datasets:[{label:'material',"
    "backgroundColor:'#c0392b',data:g.map(function(x){return x.material;})},"
    "{label:'immaterial',backgroundColor:'#95a5a6',data:g.map(function(x){"
    "return x.changed-x.material;})}]},options:Object.assign({scales:{x:{"
    "stacked:true},y:{stacked:true,beginAtZero:true,title:{display:true,"
    "text:'changed decisions'}}}},opt)});\n"
    "var e=d.histogram.edges_yuan,labels=[];\n"
    "for(var i=0;i<=e.length;i++){labels.push(i==0?'< '+e[0]:i==e.length?"
    "'\\u2265 '+e[e.length-1]:e[i-1]+' to '+e[i]);}\n"
    "chart('chart-money',{type:'bar',data:{labels:labels,datasets:[{"
    "label:'decisions whose offer moved (yuan)',backgroundColor:'#2c7fb8',"
    "data:d.histogram.counts}]},options:Object.assign({scales:{y:{"
    "beginAtZero:true}}},opt)});\n"
    "var r=Object.keys(d.rules).map(function(k){return{rule:k,delta:"
    "d.rules[k].after-d.rules[k].before};}).filter(function(x){"
    "return x.delta!=0;}).sort(function(a,b){return Math.abs(b.delta)-"
    "Math.abs(a.delta);}).slice(0,30);\n"
    "chart('chart-rules',{type:'bar',data:{labels:r.map(function(x){"
    "return x.rule;}),datasets:[{label:'fires more (+) or less (-)',"
    "backgroundColor:r.map(function(x){return x.delta>0?'#c0392b':"
    "'#27ae60';}),data:r.map(function(x){return x.delta;})}]},"
    "options:Object.assign({indexAxis:'y'},opt)});\n"
    "})();\n";

static void html_group_row(vd_buf_t *o, const vd_replay_group_t *g,
                           const char *a, const char *b) {
  long long moved = g->after_fen - g->before_fen;
  vd_buf_adds(o, "<tr><td>");
  html_text(o, a);
  if (b) {
    vd_buf_adds(o, "</td><td>");
    html_text(o, b);
  }
  vd_buf_addf(o, "</td><td class=n>%lld</td><td class=n>%lld</td>"
                 "<td class=n>%lld</td><td class=n>",
              g->replayed, g->changed, g->material);
  vd_report_add_yuan(o, g->before_fen);
  vd_buf_adds(o, "</td><td class=n>");
  vd_report_add_yuan(o, g->after_fen);
  vd_buf_addf(o, "</td><td class=\"n %s\">", moved > 0   ? "up"
                                              : moved < 0 ? "down"
                                                          : "");
  vd_report_add_yuan(o, moved);
  vd_buf_addf(o, "</td><td class=n>%lld</td><td class=n>%lld</td></tr>\n",
              g->up, g->down);
}

static const char GROUP_HEAD[] =
    "<th scope=col class=n>replayed</th><th scope=col class=n>changed</th>"
    "<th scope=col class=n>material</th><th scope=col class=n>offers before "
    "(yuan)</th><th scope=col class=n>offers after (yuan)</th><th scope=col "
    "class=n>moved (yuan)</th><th scope=col class=n>up</th><th scope=col "
    "class=n>down</th></tr></thead><tbody>\n";

static int write_html(const vd_replay_report_t *r, const vd_report_opts_t *o,
                      vd_buf_t *out, vd_buf_t *err) {
  vd_buf_t lib = VD_BUF_INIT, json = VD_BUF_INIT;
  const char *path = o->chart_js ? o->chart_js : VD_REPORT_CHART_JS;
  vd_replay_group_t *t;
  size_t i, j, n;
  int impact = r->candidate != NULL;

  if (read_file(path, &lib, err) != 0)
    return VD_EIO;
  if (strstr(lib.data ? lib.data : "", "</script")) {
    vd_buf_addf(err, "%s: holds \"</script\", cannot be inlined", path);
    vd_buf_release(&lib);
    return VD_EINVALID;
  }
  write_json(r, o, &json);

  vd_buf_adds(out, "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta "
                   "charset=utf-8>\n<meta name=viewport content=\"width="
                   "device-width, initial-scale=1\">\n<title>verdict impact "
                   "report</title>\n<style>");
  vd_buf_adds(out, STYLE);
  vd_buf_adds(out, "</style>\n</head>\n<body>\n<main>\n<h1>Impact report</h1>\n"
                   "<p>");
  if (impact) {
    vd_buf_adds(out, "Candidate <code>");
    html_text(out, r->candidate);
    vd_buf_adds(out, "</code> against baseline <code>");
    html_text(out, r->baseline);
    vd_buf_adds(out, "</code>: every recorded request in the window decided "
                     "by both; only their difference is shown, the recorded "
                     "outcome beside it.");
  } else {
    vd_buf_adds(out, "Determinism check: every recorded request decided "
                     "again by the revision that made it.");
  }
  vd_buf_adds(out, "</p>\n<p>Decisions selected: ");
  html_text(out, o->selection ? o->selection : "every decision");
  vd_buf_adds(out, ".</p>\n<dl class=summary>");
#define SUMMARY(label, v)                                                    \
  vd_buf_addf(out, "<div><dt>%s</dt><dd>%lld</dd></div>", label, (long long)(v))
  SUMMARY("replayed", r->replayed);
  SUMMARY("unchanged", r->unchanged);
  SUMMARY("changed", r->changed);
  if (impact) {
    SUMMARY("material", r->material);
    SUMMARY("immaterial", r->immaterial);
  }
  SUMMARY("errors", r->errors);
  SUMMARY("cannot be replayed", r->unloadable_rows);
#undef SUMMARY
  if (impact && r->offers_before.count) {
    vd_buf_adds(out, "<div><dt>money moved (yuan)</dt><dd>");
    vd_report_add_yuan(out, r->offers_after.total - r->offers_before.total);
    vd_buf_adds(out, "</dd></div>");
  }
  vd_buf_adds(out, "</dl>\n");
  for (i = 0; i < r->nunloadable; i++) {
    vd_buf_addf(out, "<p class=note>%lld decisions of <code>",
                r->unloadable[i].rows);
    html_text(out, r->unloadable[i].revision);
    vd_buf_adds(out, "</code> cannot be replayed under the present sandbox: ");
    html_text(out, r->unloadable[i].why);
    vd_buf_adds(out, "</p>\n");
  }

  if (impact) {
    vd_buf_adds(out, "<h2 id=groups>Changed decisions by kind and region</h2>\n"
                     "<div class=chart><canvas id=chart-groups role=img "
                     "aria-label=\"changed decisions per kind and region, "
                     "material and immaterial\"></canvas></div>\n"
                     "<table><caption>Per kind and region</caption><thead><tr>"
                     "<th scope=col>kind</th><th scope=col>region</th>");
    vd_buf_adds(out, GROUP_HEAD);
    for (i = 0; i < r->ngroups; i++)
      html_group_row(out, &r->groups[i], r->groups[i].kind,
                     r->groups[i].region);
    vd_buf_adds(out, "</tbody></table>\n<h2 id=money>Money moved</h2>\n<p>");
    vd_buf_addf(out, "%lld decisions with an offer either side: ",
                r->offers_before.count);
    vd_report_add_yuan(out, r->offers_before.total);
    vd_buf_adds(out, " yuan before, ");
    vd_report_add_yuan(out, r->offers_after.total);
    vd_buf_adds(out, " yuan after.</p>\n<div class=chart><canvas "
                     "id=chart-money role=img aria-label=\"histogram of "
                     "offer changes in yuan\"></canvas></div>\n");
    for (j = 0; j < 2; j++) {
      t = sum_groups(r, (int)j, &n);
      vd_buf_addf(out, "<table><caption>Totals per %s</caption><thead><tr>"
                       "<th scope=col>%s</th>",
                  j ? "region" : "kind", j ? "region" : "kind");
      vd_buf_adds(out, GROUP_HEAD);
      for (i = 0; t && i < n; i++)
        html_group_row(out, &t[i], j ? t[i].region : t[i].kind, NULL);
      vd_buf_adds(out, "</tbody></table>\n");
      free(t);
    }
    vd_buf_adds(out, "<h2 id=rules>Rules firing more or less often</h2>\n"
                     "<div class=chart><canvas id=chart-rules role=img "
                     "aria-label=\"rules firing more or less often\">"
                     "</canvas></div>\n<table><thead><tr><th scope=col>rule"
                     "</th><th scope=col class=n>baseline</th><th scope=col "
                     "class=n>candidate</th><th scope=col class=n>difference"
                     "</th></tr></thead><tbody>\n");
    for (i = 0; i < r->nrules; i++) {
      const vd_replay_rule_t *ru = &r->rules[i];
      if (ru->before == ru->after)
        continue;
      vd_buf_adds(out, "<tr><td><code>");
      html_text(out, ru->rule);
      vd_buf_addf(out, "</code></td><td class=n>%lld</td><td class=n>%lld"
                       "</td><td class=n>%+lld</td></tr>\n",
                  ru->before, ru->after, ru->after - ru->before);
    }
    vd_buf_adds(out, "</tbody></table>\n<h2 id=outcomes>Deadlines, levels "
                     "and other outcomes</h2>\n<table><thead><tr><th "
                     "scope=col>kind</th><th scope=col>outcome</th><th "
                     "scope=col class=n>decisions changed</th><th scope=col "
                     "class=n>earlier</th><th scope=col class=n>later</th>"
                     "</tr></thead><tbody>\n");
    for (i = 0; i < r->nfields; i++) {
      const vd_replay_field_t *f = &r->fields[i];
      vd_buf_adds(out, "<tr><td>");
      html_text(out, f->kind);
      vd_buf_adds(out, "</td><td><code>");
      html_text(out, f->field);
      vd_buf_addf(out, "</code> (%s)</td><td class=n>%lld</td>",
                  vd_outcome_as_name(f->as), f->changed);
      if (f->as == VD_OUTCOME_DEADLINE)
        vd_buf_addf(out, "<td class=n>%lld</td><td class=n>%lld</td></tr>\n",
                    f->earlier, f->later);
      else
        vd_buf_adds(out, "<td></td><td></td></tr>\n");
    }
    vd_buf_adds(out, "</tbody></table>\n");
    if (r->nmoves) {
      vd_buf_adds(out, "<table><caption>Level changes</caption><thead><tr>"
                       "<th scope=col>kind</th><th scope=col>outcome</th>"
                       "<th scope=col>from</th><th scope=col>to</th><th "
                       "scope=col class=n>decisions</th></tr></thead>"
                       "<tbody>\n");
      for (i = 0; i < r->nmoves; i++) {
        const vd_replay_move_t *m = &r->moves[i];
        vd_buf_adds(out, "<tr><td>");
        html_text(out, m->kind);
        vd_buf_adds(out, "</td><td><code>");
        html_text(out, m->field);
        vd_buf_adds(out, "</code></td><td>");
        html_text(out, m->from);
        vd_buf_adds(out, "</td><td>");
        html_text(out, m->to);
        vd_buf_addf(out, "</td><td class=n>%lld</td></tr>\n", m->count);
      }
      vd_buf_adds(out, "</tbody></table>\n");
    }
  }

  vd_buf_addf(out, "<h2 id=changes>Changed decisions</h2>\n<p>%lld changed"
                   "%s.</p>\n<table><thead><tr><th scope=col>decision</th>"
                   "<th scope=col>complaint</th><th scope=col>kind</th><th "
                   "scope=col>region</th><th scope=col>decision time</th><th "
                   "scope=col>material</th><th scope=col>field</th><th "
                   "scope=col>baseline</th><th scope=col>candidate</th><th "
                   "scope=col>recorded</th><th scope=col>rules</th></tr>"
                   "</thead><tbody>\n",
              r->changed,
              r->changed > (long long)r->nchanges ? "; the first ones listed"
                                                  : "");
  for (i = 0; i < r->nchanges; i++) {
    const vd_replay_change_t *c = &r->changes[i];
    vd_buf_t f = VD_BUF_INIT, a = VD_BUF_INIT, b = VD_BUF_INIT,
             rec = VD_BUF_INIT;
    for (j = 0; j < c->ndiffs; j++) {
      const vd_replay_diff_t *d = &c->diffs[j];
      if (!o->traces && strcmp(d->field, "trace") == 0)
        continue;
      html_text(&f, d->field);
      html_text(&a, d->old_json ? d->old_json : "(absent)");
      html_text(&b, d->new_json ? d->new_json : "(absent)");
      html_text(&rec, d->recorded_json ? d->recorded_json : "(absent)");
      vd_buf_adds(&f, "<br>");
      vd_buf_adds(&a, "<br>");
      vd_buf_adds(&b, "<br>");
      vd_buf_adds(&rec, "<br>");
    }
    vd_buf_adds(out, "<tr><td><code>");
    html_text(out, c->decision_id);
    vd_buf_adds(out, "</code></td><td>");
    html_text(out, c->complaint_id ? c->complaint_id : "");
    vd_buf_adds(out, "</td><td>");
    html_text(out, c->kind);
    vd_buf_adds(out, "</td><td>");
    html_text(out, c->region);
    vd_buf_adds(out, "</td><td>");
    html_text(out, c->at);
    vd_buf_addf(out, "</td><td>%s</td><td><code>%s</code></td><td><code>%s"
                     "</code></td><td><code>%s</code></td><td><code>%s"
                     "</code></td><td>",
                c->material ? "yes" : "no", f.data ? f.data : "",
                a.data ? a.data : "", b.data ? b.data : "",
                rec.data ? rec.data : "");
    for (j = 0; j < c->ngained; j++) {
      vd_buf_adds(out, "+&#8203;<code>");
      html_text(out, c->gained[j]);
      vd_buf_adds(out, "</code><br>");
    }
    for (j = 0; j < c->nlost; j++) {
      vd_buf_adds(out, "&minus;<code>");
      html_text(out, c->lost[j]);
      vd_buf_adds(out, "</code><br>");
    }
    vd_buf_adds(out, "</td></tr>\n");
    vd_buf_release(&f);
    vd_buf_release(&a);
    vd_buf_release(&b);
    vd_buf_release(&rec);
  }
  vd_buf_adds(out, "</tbody></table>\n</main>\n"
                   "<script type=\"application/json\" id=impact-data>");
  for (i = 0; i < json.len; i++) /* no "</script" can end the element */
    if (json.data[i] == '<')
      vd_buf_adds(out, "\\u003c");
    else
      vd_buf_addc(out, json.data[i]);
  vd_buf_adds(out, "</script>\n<script>/* Chart.js, from ");
  html_text(out, path);
  vd_buf_adds(out, " (Debian's libjs-chart.js) */\n");
  vd_buf_add(out, lib.data, lib.len);
  vd_buf_adds(out, "\n</script>\n<script>\n");
  if (impact)
    vd_buf_adds(out, SCRIPT);
  vd_buf_adds(out, "</script>\n</body>\n</html>\n");
  vd_buf_release(&lib);
  vd_buf_release(&json);
  return 0;
}

int vd_report_write(const vd_replay_report_t *r, vd_report_format_t f,
                    const vd_report_opts_t *o, vd_buf_t *out, vd_buf_t *err) {
  static const vd_report_opts_t none = {0, 0, NULL, NULL};
  o = o ? o : &none;
  switch (f) {
  case VD_REPORT_JSON: write_json(r, o, out); return 0;
  case VD_REPORT_CSV: write_csv(r, o, out); return 0;
  case VD_REPORT_HTML: return write_html(r, o, out, err);
  default: write_text(r, o, out); return 0;
  }
}
