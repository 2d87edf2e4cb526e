/*
 * history_int.h - what core/history.c shares with core/cmd/audit.c.
 *
 * The read-only opening of a history database, so that every reader
 * (facts, verify, load, the auditor commands) applies the same checks and
 * gives the same messages; and the columns of `decisions`, so that the
 * auditor commands select them as the writer and verify know them.
 * For the history module and the commands that read its file (the
 * auditor commands, replay, the admin channel's revision list); nothing
 * else includes it.
 */
#ifndef VERDICT_HISTORY_INT_H
#define VERDICT_HISTORY_INT_H

#include <sqlite3.h>

#include "verdict/buf.h"

/* The columns of `decisions` after seq and before hash, in the order the
 * canonical bytes take them (README, "Canonical bytes"). */
#define HISTORY_COLUMNS(X)                                                   \
  X(DECISION_ID, decision_id)                                                \
  X(RECEIVED_MS, received_ms)                                                \
  X(AT, at)                                                                  \
  X(AT_MS, at_ms)                                                            \
  X(KIND, kind)                                                              \
  X(REGION, region)                                                          \
  X(POLICY_REGION, policy_region)                                            \
  X(REVISION, revision)                                                      \
  X(COMPLAINT_ID, complaint_id)                                              \
  X(CUSTOMER_ID, customer_id)                                                \
  X(CATEGORY, category)                                                      \
  X(REQUEST, request)                                                        \
  X(RESULT, result)                                                          \
  X(TRACE, trace)                                                            \
  X(FACTS, facts)                                                            \
  X(ERROR_CODE, error_code)                                                  \
  X(ERROR_MESSAGE, error_message)                                            \
  X(ERROR_PATH, error_path)                                                  \
  X(ELAPSED_US, elapsed_us)                                                  \
  X(CLIENT, client)

enum {
#define COL_ENUM_(E, name) COL_##E,
  HISTORY_COLUMNS(COL_ENUM_)
#undef COL_ENUM_
  NCOLS
};

#define COL_NAME_(E, name) ", " #name
/* "seq, decision_id, ..., client, hash" */
#define ALL_COLUMNS "seq" HISTORY_COLUMNS(COL_NAME_) ", hash"

/* Open the existing verdict history database at PATH read-only with a
 * busy timeout, and check that it is a verdict database of schema
 * VD_HISTORY_SCHEMA_VERSION.  On success *db is the caller's (close it with
 * sqlite3_close()).  On failure *db is NULL, ERR holds a message naming
 * PATH, and the return is VD_ENOT_FOUND (no such file), VD_EINVALID (not a
 * verdict database, or another schema version) or VD_EIO. */
int vd_history_db_open_ro(sqlite3 **db, const char *path, vd_buf_t *err);

#endif
