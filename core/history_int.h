/*
 * history_int.h - what core/history.c shares with core/cli_history.c.
 *
 * Only the read-only opening of a history database, so that every reader
 * (facts, verify, load, the auditor commands) applies the same checks and
 * gives the same messages.  Nothing here is for code outside the history
 * module.
 */
#ifndef VERDICT_HISTORY_INT_H
#define VERDICT_HISTORY_INT_H

#include <sqlite3.h>

#include "verdict/buf.h"

/* Open the existing verdict history database at PATH read-only with a
 * busy timeout, and check that it is a verdict database of schema
 * VD_HISTORY_SCHEMA_VERSION.  On success *db is the caller's (close it with
 * sqlite3_close()).  On failure *db is NULL, ERR holds a message naming
 * PATH, and the return is VD_ENOT_FOUND (no such file), VD_EINVALID (not a
 * verdict database, or another schema version) or VD_EIO. */
int vd_history_db_open_ro(sqlite3 **db, const char *path, vd_buf_t *err);

#endif
