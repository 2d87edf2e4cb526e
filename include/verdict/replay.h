/*
 * replay.h - decide recorded requests again, offline.
 *
 * A replay reads decisions out of a history database (read-only, in seq
 * order; history.h) and decides each recorded request line again with
 * vd_engine_decide(), the path the daemon took, against either
 *   - the revision that made it (no candidate): every policy revision is
 *     rebuilt from the files the database stored, and any difference is a
 *     determinism violation; or
 *   - a candidate bundle: an impact analysis, with per-rule hit counts
 *     before and after and the compensation offers before and after.
 * The policy sees the history facts its decision recorded; a candidate's
 * question the record does not hold is asked of the history as it is now.
 *
 * The rows are cut into contiguous ranges of seq, one per thread, each
 * thread with its own read-only connection and engines; the totals are
 * added up and the changes kept in chain order.  Nothing is printed: the
 * outcome is a vd_replay_report_t (core/cmd/replay.c prints it).
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

typedef struct vd_replay_opts {
  const char *db;          /* the history database */
  vd_bundle_t *candidate;  /* NULL: against the recorded revisions; else
                            * borrowed for the call */
  vd_history_filter_t select; /* the rows to replay (its seq range and
                              * limit are the library's to set) */
  int threads;             /* >= 1 */
  int always_count;        /* count every instruction (no watchdog) */
  long long max_changes;   /* changed decisions kept in full; 0: 1000 */
} vd_replay_opts_t;

/* One field that changed, by its path in {"result":..,"trace":..} or
 * {"error":code} ("result.offer_fen", "trace", "error").  old_json and
 * new_json are the values as JSON, NULL where the field is absent. */
typedef struct vd_replay_diff {
  char *field;
  char *old_json, *new_json;
} vd_replay_diff_t;

/* A decision that came out differently. */
typedef struct vd_replay_change {
  int64_t seq;
  char *decision_id;       /* "?" if the row had none */
  vd_replay_diff_t *diffs; /* objects compared field by field, anything
                            * else as a whole; in the order of the keys
                            * of the old outcome, then those only new */
  size_t ndiffs;
} vd_replay_change_t;

/* How often a rule appears in the traces, before (recorded) and after
 * (the candidate's), over the rows replayed.  Candidate replays only. */
typedef struct vd_replay_rule {
  char *rule;
  long long before, after;
} vd_replay_rule_t;

/* Compensation offers (result.offer_fen) of the rows where either side
 * made one; a side without one counts as 0.  Candidate replays only. */
typedef struct vd_replay_offers {
  long long count;
  long long total, p50, p90, max; /* fen */
} vd_replay_offers_t;

/* A row that could not be decided again: its revision could not be
 * rebuilt, or it names none. */
typedef struct vd_replay_error {
  char *decision_id;
  char *why;
} vd_replay_error_t;

typedef struct vd_replay_report {
  long long replayed;  /* rows with a request to decide */
  long long unchanged, changed;
  long long errors;    /* rows that could not be decided again */
  long long asked_now; /* candidate decisions that asked a question their
                        * record did not hold */
  vd_replay_change_t *changes; /* the first max_changes, in seq order */
  size_t nchanges;
  vd_replay_rule_t *rules;     /* in the order first seen */
  size_t nrules;
  vd_replay_offers_t offers_before, offers_after; /* count is the same */
  vd_replay_error_t *row_errors; /* the first ten of each thread */
  size_t nrow_errors;
  char *facts_warning; /* why a candidate's new questions could not be
                        * answered (the history could not be opened for
                        * facts), or NULL */
  int candidate_failed; /* on failure: an engine could not be built from
                         * the candidate (else reading the database
                         * failed) */
} vd_replay_report_t;

/* Replay the rows O selects.  Returns 0 with REP filled (the caller
 * releases it with vd_replay_report_release(), also after a failure), or
 * a negative code with ERR saying why: the database could not be read,
 * or (rep->candidate_failed) the candidate does not make an engine. */
int vd_replay_run(const vd_replay_opts_t *o, vd_replay_report_t *rep,
                  vd_buf_t *err);
void vd_replay_report_release(vd_replay_report_t *rep);

#endif
