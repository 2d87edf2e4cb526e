/*
 * policy.c - the offline policy administration commands:
 *
 *   verdict test [--quiet] [--coverage] [DIR]
 *                                  run the bundle's own tests; --coverage
 *                                  prints each policy file's rule coverage
 *   verdict check [DIR]            compile, load, check the structure, run
 *                                  the tests, decide the grid (no region
 *                                  looser than its parent, no grade than
 *                                  the one below) and run luacheck
 *                                  (policytest.h)
 *
 * DIR defaults to `policies`.  The library validates and returns a
 * report (vd_policy_test(), vd_policy_check()); this file prints it, and
 * for check a closing "check: ..." line.  VERDICT_LUACHECK_DIR names
 * another directory to load luacheck's modules from (the default is
 * VD_LUACHECK_DIR, where Debian's lua-check puts them).  Runs on the CLI's
 * main thread.
 *
 * Exit status: 0 everything passed, 1 a problem or a failed case, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/policytest.h"

int vd_cli_policy(int argc, char **argv) {
  const char *cmd = argv[0], *dir = "policies";
  int check = strcmp(cmd, "check") == 0, quiet = 0, coverage = 0, i, rc;
  vd_bundle_t *b;
  vd_policy_report_t r;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
      quiet = 1;
    else if (strcmp(argv[i], "--coverage") == 0)
      coverage = 1;
    else if (argv[i][0] == '-') {
      fprintf(stderr, "verdict %s: unknown option %s\n", cmd, argv[i]);
      return 2;
    } else
      dir = argv[i];
  }
  if (vd_bundle_load(dir, &b, &err)) {
    /* test: counted as a failed run by scripts that read the totals */
    printf("%s\n%s", err.data, check ? "" : "0 passed, 1 failed\n");
    vd_buf_release(&err);
    return 1;
  }
  vd_policy_report_init(&r);
  r.coverage = coverage;
  if (check)
    rc = vd_policy_check(b, NULL, getenv("VERDICT_LUACHECK_DIR"), &r);
  else
    rc = vd_policy_test(b, NULL, &r);
  vd_bundle_unref(b);
  vd_policy_report_format(&r, quiet ? VD_REPORT_QUIET : 0, &out);
  if (check && r.problems)
    vd_buf_addf(&out, "check: %u problem%s in %s\n", r.problems,
                r.problems == 1 ? "" : "s", dir);
  else if (check)
    vd_buf_addf(&out, "check: %s is ready to go live\n", dir);
  fwrite(out.data ? out.data : "", 1, out.len, stdout);
  vd_policy_report_release(&r);
  vd_buf_release(&out);
  return rc ? 1 : 0;
}
