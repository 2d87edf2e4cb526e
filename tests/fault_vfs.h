/*
 * fault_vfs.h - test-only fault injection for SQLite: fail the n-th write,
 * sync or allocation, the way SQLite's own test suite does.
 *
 * fault_install() wraps two of SQLite's layers, process-wide:
 *   - a VFS, "fault", registered as the default, that forwards every call
 *     to the real "unix" VFS except that it can fail an xWrite (with
 *     SQLITE_IOERR_WRITE, writing nothing) or an xSync (SQLITE_IOERR_FSYNC,
 *     syncing nothing);
 *   - the allocator (SQLITE_CONFIG_MALLOC), which can fail an xMalloc or
 *     xRealloc (SQLite sees NULL, as on out-of-memory) and counts the
 *     allocations SQLite holds, so a test can check that closing gave
 *     back everything opening took.
 * sqlite3_test_control(SQLITE_TESTCTRL_FAULT_INSTALL) is not enough, even
 * where the library allows it (Debian's does): the hook it installs is
 * consulted at a few numbered points (the sorter, its worker threads, a
 * btree page check), never on each write, sync or allocation.  The two
 * wrappers here use only SQLite's public interfaces.
 *
 * Every connection opened after fault_install() goes through both, on any
 * thread; the counters are atomic.  Faults fire only while armed, counting
 * from the moment fault_arm() is called.  Test code only: it is linked
 * into the tests that use it, never into libverdict.
 */
#ifndef VERDICT_TESTS_FAULT_VFS_H
#define VERDICT_TESTS_FAULT_VFS_H

typedef enum {
  FAULT_WRITE, /* xWrite on any file: database, WAL, journal */
  FAULT_SYNC,  /* xSync on any file */
  FAULT_ALLOC, /* xMalloc and xRealloc */
  FAULT_KINDS
} fault_kind_t;

/* Wrap SQLite's allocator and register the "fault" VFS as the default.
 * Call once, before anything else uses SQLite (the allocator can only be
 * replaced before sqlite3_initialize()).  Returns 0, or an SQLite code. */
int fault_install(void);

/* Fail the N-th (1, 2, ...) operation of KIND from now on; with PERSIST,
 * that one and every one after it (a dead disk, memory that stays
 * exhausted), until fault_disarm().  Re-arming KIND restarts its count. */
void fault_arm(fault_kind_t kind, long n, int persist);
/* Stop every fault; counts are kept until the next fault_arm(). */
void fault_disarm(void);
/* Operations of KIND seen, and failures injected, since it was armed. */
long fault_seen(fault_kind_t kind);
long fault_fired(fault_kind_t kind);
/* Allocations SQLite holds now (made, not yet freed). */
long fault_live_allocs(void);
/* Watch the WAL of the database file named NAME (its last path
 * component: "h.db") from now on, opened by any connection opened after
 * this call; fault_wal_synced() is then the size that WAL had at its last
 * xSync that succeeded (0: none yet): what of it a power cut would be sure
 * to leave, the page cache lost. */
void fault_wal_watch(const char *name);
long long fault_wal_synced(void);
/* The xWrite calls on the watched WAL that reached this VFS since
 * fault_wal_watch(), and their bytes into *bytes (when not NULL). */
long long fault_wal_writes(long long *bytes);

#endif
