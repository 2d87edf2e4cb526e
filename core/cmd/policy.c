/*
 * policy.c - the offline policy administration commands:
 *
 *   verdict test [options] [DIR] [PATH...]
 *                                  run the bundle's own tests: all, or only
 *                                  the test files PATH names (a test file,
 *                                  a policy file, a region's directory,
 *                                  "national" or a region code)
 *       --run PATTERN              only the cases whose name matches
 *                                  PATTERN (POSIX extended regex)
 *       -v, --verbose              print every case, passed ones too
 *       --format text|json|junit   the report's form (json and junit for
 *                                  CI systems: the totals line goes to
 *                                  stderr, the document to stdout)
 *       --coverage                 print each policy file's rule coverage
 *       -q, --quiet                leave out the rules no case fired
 *   verdict check [--quiet] [--coverage] [DIR]
 *                                  compile, load, check the structure, run
 *                                  the tests, decide the grid (no region
 *                                  looser than its parent, no grade than
 *                                  the one below) and run luacheck
 *                                  (policytest.h)
 *
 * DIR defaults to `policies`.  An argument is the bundle when it is a
 * directory with a national/ directory in it; a PATH inside a bundle
 * (policies/regions/GD) also says which bundle, when none is given.  The
 * library validates and returns a report (vd_policy_test(),
 * vd_policy_check()); this file prints it, and for check a closing
 * "check: ..." line.  VERDICT_LUACHECK_DIR names another directory to load
 * luacheck's modules from (the default is VD_LUACHECK_DIR, where Debian's
 * lua-check puts them).  Runs on the CLI's main thread.
 *
 * Exit status: 0 everything passed, 1 a problem or a failed case, 2 usage.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd_int.h"
#include "verdict/policytest.h"

static void usage(FILE *to, const char *cmd) {
  if (strcmp(cmd, "check") == 0)
    fputs("usage: verdict check [--quiet] [--coverage] [DIR]\n", to);
  else
    fputs("usage: verdict test [--run PATTERN] [-v]"
          " [--format text|json|junit]\n"
          "                    [--coverage] [--quiet] [DIR] [PATH...]\n"
          "  PATH: a test file, a policy file, a region's directory,\n"
          "        \"national\" or a region code; DIR: the bundle (default:\n"
          "        policies)\n", to);
}

/* Is dir a bundle's root (a directory holding national/)? */
static int bundle_root(const char *dir) {
  struct stat st;
  vd_buf_t p = VD_BUF_INIT;
  int yes;
  vd_buf_addf(&p, "%s/national", dir);
  yes = stat(p.data, &st) == 0 && S_ISDIR(st.st_mode);
  vd_buf_release(&p);
  return yes;
}

/* If path names a file or directory inside a bundle, put the bundle's
 * root in root and return the path relative to it (a pointer into path);
 * else NULL. */
static const char *inside_bundle(const char *path, vd_buf_t *root) {
  struct stat st;
  size_t n = strlen(path);
  if (stat(path, &st) != 0)
    return NULL;
  while (n > 0) {
    while (n > 0 && path[n - 1] != '/')
      n--;
    if (n == 0)
      break;
    vd_buf_reset(root);
    vd_buf_add(root, path, n - 1);
    if (root->len == 0)
      vd_buf_adds(root, "/");
    if (bundle_root(root->data))
      return path + n;
    n--;
  }
  return NULL;
}

/* --- the report as JSON or JUnit XML ----------------------------------- */

static void json_str(vd_buf_t *out, const char *s) {
  vd_buf_add_json_str(out, s ? s : "", s ? strlen(s) : 0);
}

static void xml_text(vd_buf_t *out, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': vd_buf_adds(out, "&amp;"); break;
    case '<': vd_buf_adds(out, "&lt;"); break;
    case '>': vd_buf_adds(out, "&gt;"); break;
    case '"': vd_buf_adds(out, "&quot;"); break;
    default:
      if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
        vd_buf_addf(out, "&#%d;", *s); /* not allowed in XML 1.0: shown */
      else
        vd_buf_addc(out, *s);
    }
  }
}

/* A problem's "file:line: message" (or the message alone). */
static void problem_text(const vd_finding_t *f, vd_buf_t *out) {
  vd_buf_t line = VD_BUF_INIT;
  vd_policy_finding_format(f, &line);
  while (line.len && line.data[line.len - 1] == '\n')
    line.data[--line.len] = '\0';
  vd_buf_adds(out, line.data ? line.data : "");
  vd_buf_release(&line);
}

static void format_json(const vd_policy_report_t *r, vd_buf_t *out) {
  size_t i;
  int first = 1;
  vd_buf_addf(out, "{\"passed\":%u,\"failed\":%u,\"cases\":[", r->passed,
              r->failed);
  for (i = 0; i < r->count; i++) {
    const vd_finding_t *f = &r->findings[i];
    if (!(f->kind == VD_FINDING_PASS ||
          (f->kind == VD_FINDING_FAIL && f->case_no > 0)))
      continue;
    vd_buf_adds(out, first ? "\n" : ",\n");
    first = 0;
    vd_buf_adds(out, "{\"file\":");
    json_str(out, f->file);
    vd_buf_addf(out, ",\"line\":%d,\"case\":%d,\"name\":", f->line,
                f->case_no);
    json_str(out, f->text);
    vd_buf_addf(out, ",\"result\":\"%s\"",
                f->kind == VD_FINDING_PASS ? "pass" : "fail");
    if (f->detail) {
      vd_buf_adds(out, ",\"detail\":");
      json_str(out, f->detail);
    }
    vd_buf_addc(out, '}');
  }
  vd_buf_adds(out, "],\"problems\":[");
  first = 1;
  for (i = 0; i < r->count; i++) {
    const vd_finding_t *f = &r->findings[i];
    vd_buf_t text = VD_BUF_INIT;
    if (f->kind == VD_FINDING_PASS ||
        (f->kind == VD_FINDING_FAIL && f->case_no > 0))
      continue;
    vd_buf_adds(out, first ? "\n" : ",\n");
    first = 0;
    vd_buf_adds(out, "{\"kind\":");
    json_str(out, f->kind == VD_FINDING_NOTE       ? "note"
                  : f->kind == VD_FINDING_UNFIRED ? "not_fired"
                                                   : "problem");
    vd_buf_adds(out, ",\"file\":");
    if (f->file)
      json_str(out, f->file);
    else
      vd_buf_adds(out, "null");
    vd_buf_addf(out, ",\"line\":%d,\"message\":", f->line);
    vd_buf_adds(&text, f->text);
    json_str(out, text.data);
    vd_buf_release(&text);
    vd_buf_addc(out, '}');
  }
  vd_buf_adds(out, "]}\n");
}

static void format_junit(const vd_policy_report_t *r, vd_buf_t *out) {
  size_t i, j;
  unsigned problems = 0;
  vd_buf_adds(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  for (i = 0; i < r->count; i++)
    if (r->findings[i].kind == VD_FINDING_PROBLEM ||
        (r->findings[i].kind == VD_FINDING_FAIL &&
         r->findings[i].case_no == 0))
      problems++;
  vd_buf_addf(out, "<testsuites name=\"verdict test\" tests=\"%u\" "
                   "failures=\"%u\" errors=\"%u\">\n",
              r->passed + r->failed + problems, r->failed, problems);
  /* one suite per test file, its cases in the order they ran */
  for (i = 0; i < r->count; i++) {
    const vd_finding_t *f = &r->findings[i];
    unsigned tests = 0, failures = 0;
    int seen = 0;
    if (!(f->kind == VD_FINDING_PASS ||
          (f->kind == VD_FINDING_FAIL && f->case_no > 0)))
      continue;
    for (j = 0; j < i && !seen; j++)
      seen = r->findings[j].case_no > 0 && r->findings[j].file &&
             strcmp(r->findings[j].file, f->file) == 0 &&
             (r->findings[j].kind == VD_FINDING_PASS ||
              r->findings[j].kind == VD_FINDING_FAIL);
    if (seen)
      continue;
    for (j = i; j < r->count; j++) {
      const vd_finding_t *g = &r->findings[j];
      if (g->case_no > 0 && g->file && strcmp(g->file, f->file) == 0 &&
          (g->kind == VD_FINDING_PASS || g->kind == VD_FINDING_FAIL)) {
        tests++;
        failures += g->kind == VD_FINDING_FAIL;
      }
    }
    vd_buf_adds(out, "  <testsuite name=\"");
    xml_text(out, f->file);
    vd_buf_addf(out, "\" tests=\"%u\" failures=\"%u\">\n", tests, failures);
    for (j = i; j < r->count; j++) {
      const vd_finding_t *g = &r->findings[j];
      if (!(g->case_no > 0 && g->file && strcmp(g->file, f->file) == 0 &&
            (g->kind == VD_FINDING_PASS || g->kind == VD_FINDING_FAIL)))
        continue;
      vd_buf_adds(out, "    <testcase classname=\"");
      xml_text(out, g->file);
      vd_buf_addf(out, "\" name=\"case %d (", g->case_no);
      xml_text(out, g->text);
      vd_buf_adds(out, ")\"");
      if (g->kind == VD_FINDING_PASS) {
        vd_buf_adds(out, "/>\n");
        continue;
      }
      vd_buf_adds(out, ">\n      <failure message=\"");
      xml_text(out, g->text);
      vd_buf_adds(out, "\">");
      xml_text(out, g->detail);
      vd_buf_adds(out, "</failure>\n    </testcase>\n");
    }
    vd_buf_adds(out, "  </testsuite>\n");
  }
  if (problems) {
    vd_buf_addf(out, "  <testsuite name=\"bundle\" tests=\"%u\" "
                     "errors=\"%u\">\n", problems, problems);
    for (i = 0; i < r->count; i++) {
      const vd_finding_t *f = &r->findings[i];
      vd_buf_t text = VD_BUF_INIT;
      if (!(f->kind == VD_FINDING_PROBLEM ||
            (f->kind == VD_FINDING_FAIL && f->case_no == 0)))
        continue;
      problem_text(f, &text);
      vd_buf_adds(out, "    <testcase classname=\"bundle\" name=\"");
      xml_text(out, f->file ? f->file : "bundle");
      vd_buf_adds(out, "\">\n      <error message=\"");
      xml_text(out, text.data);
      vd_buf_adds(out, "\"/>\n    </testcase>\n");
      vd_buf_release(&text);
    }
    vd_buf_adds(out, "  </testsuite>\n");
  }
  vd_buf_adds(out, "</testsuites>\n");
}

int vd_cli_policy(int argc, char **argv) {
  const char *cmd = argv[0], *dir = NULL, *format = "text";
  int check = strcmp(cmd, "check") == 0, quiet = 0, i, rc;
  vd_policy_filter_t filter = {NULL, 0, NULL, 0};
  const char **paths;
  char *found = NULL; /* the bundle a PATH lies in, when no DIR is given */
  vd_bundle_t *b;
  vd_policy_report_t r;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT, root = VD_BUF_INIT;

  vd_policy_report_init(&r);
  paths = calloc((size_t)argc, sizeof *paths);
  if (!paths) {
    fprintf(stderr, "verdict %s: out of memory\n", cmd);
    return 1;
  }
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
      quiet = 1;
    } else if (strcmp(a, "--coverage") == 0) {
      r.coverage = 1;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout, cmd);
      free(paths);
      return 0;
    } else if (!check &&
               (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0)) {
      filter.verbose = 1;
    } else if (!check &&
               (strcmp(a, "--run") == 0 || strcmp(a, "--format") == 0)) {
      if (i + 1 >= argc) {
        fprintf(stderr, "verdict %s: %s needs a value\n", cmd, a);
        free(paths);
        return 2;
      }
      if (strcmp(a, "--run") == 0)
        filter.run = argv[++i];
      else
        format = argv[++i];
    } else if (a[0] == '-') {
      fprintf(stderr, "verdict %s: unknown option %s\n", cmd, a);
      usage(stderr, cmd);
      free(paths);
      return 2;
    } else if (!dir && (check || bundle_root(a))) {
      dir = a;
    } else if (check) {
      fprintf(stderr, "verdict check: one bundle directory only (%s)\n", a);
      free(paths);
      return 2;
    } else {
      paths[filter.npaths++] = a;
    }
  }
  if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0 &&
      strcmp(format, "junit") != 0) {
    fprintf(stderr, "verdict %s: --format is text, json or junit, not %s\n",
            cmd, format);
    free(paths);
    return 2;
  }
  /* a PATH inside a bundle names the bundle when no DIR does, and is
   * taken relative to it */
  for (i = 0; i < (int)filter.npaths; i++) {
    const char *rel;
    if (!(rel = inside_bundle(paths[i], &root)))
      continue;
    if (!dir) {
      if (!(found = strdup(root.data))) {
        free(paths);
        return 1;
      }
      dir = found;
    }
    paths[i] = rel;
  }
  if (!dir)
    dir = "policies";
  filter.paths = paths;
  if (filter.npaths || filter.run || filter.verbose ||
      strcmp(format, "text") != 0) {
    filter.verbose |= strcmp(format, "text") != 0; /* every case listed */
    r.filter = &filter;
  }
  if (vd_bundle_load(dir, &b, &err)) {
    /* test: counted as a failed run by scripts that read the totals */
    printf("%s\n%s", err.data, check ? "" : "0 passed, 1 failed\n");
    vd_buf_release(&err);
    vd_buf_release(&root);
    free(found);
    free(paths);
    return 1;
  }
  if (check)
    rc = vd_policy_check(b, NULL, getenv("VERDICT_LUACHECK_DIR"), &r);
  else
    rc = vd_policy_test(b, NULL, &r);
  vd_bundle_unref(b);
  if (strcmp(format, "json") == 0) {
    format_json(&r, &out);
  } else if (strcmp(format, "junit") == 0) {
    format_junit(&r, &out);
  } else {
    vd_policy_report_format(&r, quiet ? VD_REPORT_QUIET : 0, &out);
    if (check && r.problems)
      vd_buf_addf(&out, "check: %u problem%s in %s\n", r.problems,
                  r.problems == 1 ? "" : "s", dir);
    else if (check)
      vd_buf_addf(&out, "check: %s is ready to go live\n", dir);
  }
  fwrite(out.data ? out.data : "", 1, out.len, stdout);
  if (strcmp(format, "text") != 0)
    fprintf(stderr, "%u passed, %u failed\n", r.passed, r.failed);
  vd_policy_report_release(&r);
  vd_buf_release(&out);
  vd_buf_release(&root);
  free(found);
  free(paths);
  return rc ? 1 : 0;
}
