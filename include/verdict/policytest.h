/*
 * policytest.h - policy validation: what `verdict test`, `verdict check`
 * and every reload of verdictd run before a bundle goes live.
 *
 * vd_policy_test() runs the table-driven cases kept beside the policies
 * (<dir>/national/<kind>_test.lua, <dir>/regions/<CODE>/<kind>_test.lua)
 * through the same engine and sandbox as the daemon; each failure is
 * recorded with expected and actual values, and so is every rule no case
 * fired.
 *
 * vd_policy_check() compiles every file, loads the bundle, checks the
 * structure of every policy (hit policy declared, each rule with an id and
 * a basis, ids unique in a policy), runs the tests, and runs luacheck on
 * every .lua file of the bundle as it was loaded.  luacheck runs in
 * process, in a Lua state of its own (lint.c), from the pure-Lua modules
 * of Debian's lua-check package; where they cannot be loaded the check
 * fails, so a bundle gets the same answer on every host.
 *
 * Then, on the same engine, the grid (grid.c): for every kind whose
 * national policy declares `tighter` (lib/rules.lua), a generated grid of
 * inputs (lib/grid.lua) is decided, every point for every customer grade,
 * under every region with a policy file of its own for the kind and under
 * its parent, through vd_engine_decide() as the tests are.  The first
 * input where a region's answer is looser than its parent's, or where a
 * grade's answer is looser than the grade's just below, is a problem
 * naming the field, both values and the rules that fired; the exceptions
 * the policies declare (`loosens`) are listed with their reasons.
 *
 * Nothing here prints, spawns or writes a file: the findings go into a
 * vd_policy_report_t, which vd_policy_report_format() turns into the text
 * `verdict` prints (core/cmd/policy.c) and verdictd records.  Everything
 * runs on the caller's thread.
 *
 * The report, once formatted, reads (one line each, in this order):
 *   file:line: message             problems: syntax, load, structure
 *   ok file case N (name)          a passed case (filter->verbose)
 *   FAIL file[:line] case N (name) a failed case, then its indented diffs
 *   not fired: kind rule id (region)
 *   file: problem with its tests' coverage of its own rules
 *   file: coverage N/M ...         with r->coverage set
 *   N passed, N failed             when the tests ran
 *   file: kind ...                 the grid: a looser answer (then its
 *                                  input, indented), an exception, and one
 *                                  closing line per kind
 *   file:line:column: (W211) message   luacheck's warnings
 */
#ifndef VERDICT_POLICYTEST_H
#define VERDICT_POLICYTEST_H

#include <stddef.h>

#include <lua.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"

/* Where luacheck's modules are looked for (luacheck/init.lua below it)
 * unless the caller names another directory. */
#ifndef VD_LUACHECK_DIR
#define VD_LUACHECK_DIR "/usr/share/lua/5.1"
#endif

typedef enum vd_finding_kind {
  VD_FINDING_PROBLEM, /* "[file[:line[:column]]: ][(code) ]text" */
  VD_FINDING_FAIL,    /* a test: "FAIL file case N (text)" + detail, or,
                       * for a whole file (case 0), "FAIL [file[:line]: ]text" */
  VD_FINDING_UNFIRED, /* "not fired: text"; file is the policy */
  VD_FINDING_NOTE,    /* "[file: ]text" + detail: not a problem (the
                       * grid's exceptions and totals) */
  VD_FINDING_PASS     /* "ok file case N (text)": a case that passed,
                       * recorded when the filter asks (verbose) */
} vd_finding_kind_t;

typedef enum vd_stage {
  VD_STAGE_SYNTAX,    /* a file does not compile */
  VD_STAGE_LOAD,      /* the bundle, or the engine on it, cannot be built */
  VD_STAGE_STRUCTURE, /* a policy is not well formed */
  VD_STAGE_TESTS,     /* the bundle's own tests */
  VD_STAGE_GRID,      /* regions against parents, grades against grades */
  VD_STAGE_LUACHECK   /* luacheck, or its absence */
} vd_stage_t;

typedef struct vd_finding {
  vd_finding_kind_t kind;
  vd_stage_t stage;
  char *file;   /* bundle-relative path, or NULL when no file is to blame */
  int line;     /* 1-based, 0 when unknown */
  int column;   /* 1-based, 0 when unknown */
  int case_no;  /* FAIL: the case's index in its file; 0 the whole file */
  char *code;   /* luacheck's code ("W211"), else NULL */
  char *text;   /* the message, one line, without the file prefix */
  char *detail; /* indented lines that explain it (a failed case, a
                 * looser grid answer's input), else NULL */
} vd_finding_t;

/* Which tests to run, and how much to record: `verdict test PATH...
 * --run PATTERN -v`.  The caller's; set on a report (filter) before
 * vd_policy_test() or vd_policy_run_tests().
 *
 * paths: each a test file ("regions/GD/sla_test.lua"), a policy file (its
 * test file), a region's directory ("regions/GD": its own test files, not
 * its cities'), "national", or a region code ("GD"); a test file runs when
 * one of them names it.  A path that names no test file of the bundle is
 * a problem.  run: a POSIX extended regular expression; only cases whose
 * name it matches run.  With either, the rules no case fired are not
 * listed, and coverage is measured only for the policy files whose tests
 * all ran (none with run).  verbose: every passed case is recorded too. */
typedef struct vd_policy_filter {
  const char *const *paths; /* npaths entries, or NULL: every test file */
  size_t npaths;
  const char *run;          /* or NULL: every case */
  int verbose;
} vd_policy_filter_t;

/* The findings in the order they were found, and the counts.  Owns every
 * string of every finding.  vd_policy_report_init() does not allocate;
 * vd_policy_report_release() frees everything and leaves it empty. */
typedef struct vd_policy_report {
  vd_finding_t *findings; /* count entries, inside `store` */
  size_t count;
  vd_buf_t store;         /* the findings array's memory */
  unsigned passed, failed; /* test cases */
  unsigned unfired;        /* rules no case fired (not a problem) */
  unsigned problems;       /* PROBLEM findings, plus one if a case failed:
                            * what `verdict check` counts */
  int tested;              /* the tests ran (the totals line belongs) */
  const vd_policy_filter_t *filter; /* set by the caller, or NULL: all */
  int coverage;            /* set by the caller: record each policy file's
                            * rule coverage as a NOTE ("file: coverage N/M
                            * own rules fired by TEST (P%)") */
} vd_policy_report_t;

void vd_policy_report_init(vd_policy_report_t *r);
void vd_policy_report_release(vd_policy_report_t *r);

/* Append one finding (strings copied; NULL allowed where the struct says)
 * and return it, owned by r (valid until the next add).  Counts a PROBLEM
 * in r->problems.  Aborts on out of memory, as buffers do. */
vd_finding_t *vd_policy_report_add(vd_policy_report_t *r,
                                   vd_finding_kind_t kind, vd_stage_t stage,
                                   const char *file, int line, int column,
                                   const char *code, const char *text);
/* Set f's detail to a copy of text (replacing any). */
void vd_policy_finding_detail(vd_finding_t *f, const char *text);

/* Append the text of the whole report to out, as in the banner above.
 * VD_REPORT_QUIET leaves out the "not fired" lines. */
#define VD_REPORT_QUIET 1

void vd_policy_report_format(const vd_policy_report_t *r, int flags,
                             vd_buf_t *out);
/* Append the text of one finding (one line, then its detail). */
void vd_policy_finding_format(const vd_finding_t *f, vd_buf_t *out);

/* Run the bundle's tests against engine e, adding to r.  Returns 0 when
 * every case passed. */
int vd_policy_run_tests(vd_engine_t *e, vd_policy_report_t *r);

/* Structural checks of every loaded policy; adds the problems to r and
 * returns their number. */
unsigned vd_policy_check_structure(vd_engine_t *e, vd_policy_report_t *r);

/* luacheck on every .lua file of b, loaded from dir (NULL:
 * VD_LUACHECK_DIR); adds each warning to r.  Returns the number of
 * problems added: a warning each, or one when luacheck cannot be loaded or
 * fails (lint.c). */
unsigned vd_policy_luacheck(vd_bundle_t *b, const char *dir,
                            vd_policy_report_t *r);

/* The grid (grid.c).  How many decisions the grid of one kind may take,
 * all regions and grades together: the grid has about this many divided
 * by (regions x grades) points (lib/grid.lua samples it), so a reload of
 * the shipped bundle stays well under 2 seconds. */
#define VD_GRID_DECISIONS 6000

/* Decide the grid of every kind that declares `tighter` on engine e and
 * add to r a problem for each region looser than its parent and each grade
 * looser than the one below (the first input each), a note for each
 * exception and one per kind with the totals.  Returns the problems
 * added. */
unsigned vd_policy_check_grid(vd_engine_t *e, vd_policy_report_t *r);

/* Is answer a looser than answer b?  tighter, a and b are tables at those
 * stack indices of L (a kind's `tighter` orders, lib/rules.lua, and two
 * decoded results: a the region's or the higher grade's, b the parent's or
 * the lower grade's).  Fields are compared in the order of the sorted
 * `tighter` keys, the keys of a "name.*" map in sorted order.  A field
 * named in excused[0..nexcused) (a `tighter` key or a concrete path) is
 * not counted: used[i] is incremented instead (used may be NULL).  A
 * field b has and a lacks is looser, whatever its order.
 * Returns 1 at the first looser field, with its path in field and both
 * values as JSON ("(absent)" when missing) in va and vb (buffers reset
 * first); 0 when a is nowhere looser.  Never raises: call it with room for
 * 8 stack slots. */
int vd_policy_compare(lua_State *L, int tighter, int a, int b,
                      const char *const *excused, size_t nexcused,
                      unsigned *used, vd_buf_t *field, vd_buf_t *va,
                      vd_buf_t *vb);

/* `verdict test`: build an engine on b under lim (NULL: the defaults) and
 * run its tests.  Returns 0 when every case passed. */
int vd_policy_test(vd_bundle_t *b, const vd_limits_t *lim,
                   vd_policy_report_t *r);

/* `verdict check`: everything above (the grid included), under the limits the daemon will
 * decide with (NULL: the defaults), so a bundle whose own tests pass its
 * --instr-budget or --mem-cap is refused; luacheck from luacheck_dir
 * (NULL: VD_LUACHECK_DIR).  Returns 0, or VD_EINVALID when r counts a
 * problem. */
int vd_policy_check(vd_bundle_t *b, const vd_limits_t *lim,
                    const char *luacheck_dir, vd_policy_report_t *r);

/* What a reload runs: vd_policy_check() with the default luacheck
 * directory, the report formatted quietly into err when it fails.
 * Returns 0 or VD_EINVALID. */
int vd_policy_validate(vd_bundle_t *b, const vd_limits_t *lim, vd_buf_t *err);

#endif
