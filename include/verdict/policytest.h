/*
 * policytest.h - `verdict test` and `verdict check`: what a policy
 * administrator runs before a bundle goes live.
 *
 * vd_policy_test() runs the table-driven cases kept beside the policies
 * (<dir>/national/<kind>_test.lua, <dir>/regions/<CODE>/<kind>_test.lua)
 * through the same engine and sandbox as the daemon, prints each failure
 * with expected and actual values, the rules no case fired, and a closing
 * "N passed, N failed" line.
 *
 * vd_policy_check() loads every file in the sandbox and checks the
 * structure of every policy (hit policy declared, each rule with an id and a
 * basis, ids unique in a policy), then runs the tests; problems are printed
 * as "file:line: message".
 *
 * Both run on the caller's thread and print to `out`.
 */
#ifndef VERDICT_POLICYTEST_H
#define VERDICT_POLICYTEST_H

#include <stdio.h>

#include "verdict/bundle.h"
#include "verdict/engine.h"

typedef struct vd_test_totals {
  unsigned passed, failed;
  unsigned unfired; /* rules no case fired */
} vd_test_totals_t;

/* Run the bundle's tests against engine e.  quiet: print only failures and
 * the totals line.  Returns 0 when every case passed. */
int vd_policy_run_tests(vd_engine_t *e, FILE *out, int quiet,
                        vd_test_totals_t *totals);

/* Structural checks of every loaded policy; prints problems, returns
 * their number. */
unsigned vd_policy_check_structure(vd_engine_t *e, FILE *out);

/* Load the bundle at dir and do all of the above.  Return exit status. */
int vd_policy_test_main(const char *dir, int quiet);
int vd_policy_check_main(const char *dir);

/* Validate a bundle as a reload would: load, check, test, under the
 * limits the daemon will decide with (NULL: the defaults), so a bundle
 * whose own tests pass its --instr-budget or --mem-cap is refused.  Returns
 * 0 or an error code with the first problems in err ("file:line:
 * message"). */
int vd_policy_validate(vd_bundle_t *b, const vd_limits_t *lim, vd_buf_t *err);

#endif
