/*
 * replay.h - decide recorded requests again, offline.
 *
 * A replay reads decisions out of a history database (read-only, in seq
 * order; history.h) and decides each recorded request line again with
 * vd_engine_decide(), the path the daemon took.  Two uses:
 *   - a determinism check (no candidate): each row against the revision
 *     that made it, every revision rebuilt from the files the database
 *     stored; any difference is a determinism violation;
 *   - an impact analysis: a candidate bundle against a baseline, both
 *     chosen (vd_replay_resolve(): the active revision, a stored revision,
 *     a policy directory, or the recorded outcomes themselves).  Each row
 *     is decided by both and only their difference is reported; the
 *     recorded outcome stays beside them as a third value.  A change is
 *     material when it touches a field the kind declares an outcome
 *     (R.policy's `outcomes`, policies/lib/rules.lua), or the error.
 * Each decision sees the history facts its record holds; a question the
 * record does not hold is asked of the history as it is now.
 *
 * Memory is bounded whatever the history's size: rows are streamed, every
 * figure is a running total, a fixed histogram or a table as long as the
 * rules, kinds and regions met, and only the first max_changes changed
 * decisions are kept in full.  The rows are cut into contiguous ranges of
 * seq, one per thread, each thread with its own read-only connection and
 * engines; the totals are added up and the changes kept in chain order.
 * Nothing is printed: the outcome is a vd_replay_report_t (core/report.c
 * writes it as text, JSON, CSV or HTML; core/cmd/replay.c prints it).
 *
 * Threads: vd_replay_run() runs on its caller's thread and starts and
 * joins its own; the report is the caller's.
 */
#ifndef VERDICT_REPLAY_H
#define VERDICT_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/history.h"

/* What an outcome field holds (R.OUTCOMES in policies/lib/rules.lua). */
typedef enum {
  VD_OUTCOME_VALUE = 0, /* compared as a whole */
  VD_OUTCOME_MONEY,     /* a whole number of fen */
  VD_OUTCOME_DEADLINE,  /* an RFC 3339 time: earlier or later */
  VD_OUTCOME_LEVEL      /* a rank: counted from -> to */
} vd_outcome_as_t;

/* "value", "money", "deadline", "level".  Static string. */
const char *vd_outcome_as_name(vd_outcome_as_t as);

typedef struct vd_replay_opts {
  const char *db;          /* the history database */
  vd_bundle_t *candidate;  /* NULL: the determinism check; else borrowed
                            * for the call */
  vd_bundle_t *baseline;   /* with a candidate: what it is compared with;
                            * NULL: the recorded outcomes */
  const char *candidate_name, *baseline_name; /* for the report (copied);
                            * NULL: the bundle's revision, or "recorded" */
  vd_history_filter_t select; /* the rows to replay (its seq range and
                              * limit are the library's to set) */
  int threads;             /* >= 1 */
  int always_count;        /* count every instruction (no watchdog) */
  long long max_changes;   /* changed decisions kept in full; 0: 1000 */
  long long *progress;     /* NULL, or a counter each row read adds 1 to
                            * (atomically, relaxed): another thread (the
                            * console's) may read it during the run */
  long long *total;        /* NULL, or where the number of rows selected
                            * is stored (atomically) once counted, before
                            * the first is read; -1 where the history does
                            * not count first (PostgreSQL) */
  const int *cancel;       /* NULL, or a flag another thread sets
                            * (atomically, nonzero) to stop the run: each
                            * lane stops before its next row, and
                            * vd_replay_run() returns 0 with
                            * rep->cancelled set: its counts are partial,
                            * not a report */
} vd_replay_opts_t;

/* One field that changed, by its path in {"result":..,"trace":..} or
 * {"error":code} ("result.offer_fen", "trace", "error").  old_json (the
 * baseline's) and new_json (the candidate's) are the values as JSON, NULL
 * where the field is absent; recorded_json the recorded outcome's value
 * at the same path (candidate runs; NULL where absent). */
typedef struct vd_replay_diff {
  char *field;
  char *old_json, *new_json;
  char *recorded_json;
  int outcome;             /* the field is (below) a declared outcome */
} vd_replay_diff_t;

/* A decision that came out differently. */
typedef struct vd_replay_change {
  int64_t seq;
  long long order;         /* where in the selection's order: sorts the
                            * list (not for printing) */
  char *decision_id;       /* "?" if the row had none */
  char *complaint_id;      /* NULL if the row had none */
  char kind[32], region[32];
  char at[48];             /* the decision time as recorded */
  int material;            /* an outcome or the error differs */
  long long offer_before, offer_after; /* money outcomes, fen; -1: none */
  vd_replay_diff_t *diffs; /* objects compared field by field, anything
                            * else as a whole; in the order of the keys
                            * of the old outcome, then those only new */
  size_t ndiffs;
  char **gained, **lost;   /* rules only the candidate's trace has, and
                            * only the baseline's */
  size_t ngained, nlost;
} vd_replay_change_t;

/* How often a rule appears in the traces, before (the baseline's) and
 * after (the candidate's), over the rows replayed.  Candidate runs. */
typedef struct vd_replay_rule {
  char *rule;
  long long before, after;
  long long order;         /* where first met: sorts the list (not for
                            * printing) */
} vd_replay_rule_t;

/* Money outcomes of the rows where either side has one; a side without
 * one counts as 0.  p50 and p90 are exact below 1000 fen and to three
 * significant figures above (a fixed histogram: memory stays bounded). */
typedef struct vd_replay_offers {
  long long count;
  long long total, p50, p90, max; /* fen */
} vd_replay_offers_t;

/* Per kind and region: what changed there.  Candidate runs. */
typedef struct vd_replay_group {
  char kind[32], region[32];
  long long replayed, changed, material;
  long long offers;             /* rows with a money outcome either side */
  long long before_fen, after_fen; /* their totals */
  long long up, down;           /* rows whose money went up, down */
} vd_replay_group_t;

/* Per outcome field (the declared path, "deadlines"): material changes
 * touching it; for deadlines how many moved earlier and later (or
 * appeared, went); for levels, each from -> to below. */
typedef struct vd_replay_field {
  char *kind, *field;
  vd_outcome_as_t as;
  long long changed, earlier, later;
} vd_replay_field_t;

typedef struct vd_replay_move {
  char *kind, *field;
  char *from, *to;          /* JSON values; "null" where absent */
  long long count;
} vd_replay_move_t;

/* Money moved per decision (candidate - baseline, fen) over the rows
 * where it moved: counts per bucket.  Bucket 0 is below
 * vd_replay_hist_edges[0], bucket i (1 <= i < N) from edge i-1 up to
 * (not including) edge i, the last from the last edge up. */
#define VD_REPLAY_HIST_BUCKETS 14
extern const long long vd_replay_hist_edges[VD_REPLAY_HIST_BUCKETS - 1];

/* A stored revision that does not load under the present engine (its
 * rows are counted, not reported one by one).  activated: it was
 * activated successfully once, so it loaded under the rules of that
 * day: the load rules have changed since. */
typedef struct vd_replay_unloadable {
  char *revision, *why;
  long long rows;
  int activated;
  long long order;         /* where first met: sorts the list */
} vd_replay_unloadable_t;

/* A row that could not be decided again: its revision is not stored, or
 * it names none. */
typedef struct vd_replay_error {
  char *decision_id;
  char *why;
  long long order;         /* where met: sorts the list */
}  vd_replay_error_t;

typedef struct vd_replay_report {
  char *candidate, *baseline; /* names: a directory, a revision, "active
                               * (sha256:...)", "recorded"; NULL in a
                               * determinism check */
  long long replayed;  /* rows with a request to decide */
  long long unchanged, changed;
  long long material, immaterial; /* changed = material + immaterial */
  long long errors;    /* rows that could not be decided again */
  long long unloadable_rows; /* rows of revisions in `unloadable` */
  long long asked_now; /* candidate decisions that asked a question their
                        * record did not hold */
  long long baseline_asked_now; /* the same for a baseline bundle */
  vd_replay_change_t *changes; /* the first max_changes, in seq order */
  size_t nchanges;
  vd_replay_rule_t *rules;     /* in the order first seen (in the
                                * selection's order, a row's baseline trace
                                * before its candidate's) */
  size_t nrules;
  vd_replay_offers_t offers_before, offers_after; /* count is the same */
  vd_replay_group_t *groups;   /* sorted by kind, then region */
  size_t ngroups;
  vd_replay_field_t *fields;   /* sorted by kind, then field */
  size_t nfields;
  vd_replay_move_t *moves;     /* sorted by kind, field, count */
  size_t nmoves;
  long long hist[VD_REPLAY_HIST_BUCKETS];
  vd_replay_unloadable_t *unloadable; /* determinism checks; in the
                                       * order first met */
  size_t nunloadable;
  vd_replay_error_t *row_errors; /* the first ten, in the selection's
                                  * order */
  size_t nrow_errors;
  char *facts_warning; /* why a candidate's new questions could not be
                        * answered (the history could not be opened for
                        * facts), or NULL */
  int candidate_failed; /* on failure: an engine could not be built from
                         * the candidate (else reading the database
                         * failed) */
  int baseline_failed;  /* the same for the baseline */
  int cancelled;        /* vd_replay_opts_t.cancel stopped the run:
                         * the counts cover only the rows done */
} vd_replay_report_t;

/* Resolve SPEC into a bundle for a replay, for a candidate or a baseline:
 *   "active"     the revision the history's last successful activation
 *                made live (VD_ENOT_FOUND when it holds none);
 *   "sha256:..." a stored revision (rebuilt from DB's files);
 *   anything else a policy directory.
 * On success *out holds one reference and NAME (reset first) says what
 * it is ("active (sha256:...)", the revision, or the directory); else
 * ERR says why.  "recorded" is not a bundle: the caller handles it. */
int vd_replay_resolve(const char *db, const char *spec, vd_bundle_t **out,
                      vd_buf_t *name, vd_buf_t *err);

/* Replay the rows O selects.  Returns 0 with REP filled (the caller
 * releases it with vd_replay_report_release(), also after a failure), or
 * a negative code with ERR saying why: the database could not be read,
 * or (rep->candidate_failed) the candidate does not make an engine. */
int vd_replay_run(const vd_replay_opts_t *o, vd_replay_report_t *rep,
                  vd_buf_t *err);
void vd_replay_report_release(vd_replay_report_t *rep);

#endif
