/*
 * fault_vfs.c - test-only fault injection for SQLite (see fault_vfs.h).
 *
 * Owns: the "fault" VFS (a copy of the "unix" VFS whose xOpen wraps each
 * file), the io-methods table of the wrapped files, the allocator wrapper
 * and the counters.  Each wrapped file is a fault_file_t followed in the
 * same allocation by the real file, as SQLite's own shims (test_vfs.c,
 * the multiplexor) lay them out.
 *
 * Threads: any; SQLite may call in from every connection's thread.  The
 * counters are atomics; which operation is "the n-th" is decided by one
 * atomic increment, so exactly one caller gets each number.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "fault_vfs.h"

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

typedef struct fault {
  atomic_int armed;    /* 0: never fail */
  atomic_int persist;  /* fail every operation from the n-th on */
  atomic_long n;       /* which operation fails (1-based) */
  atomic_long seen;    /* operations since armed */
  atomic_long fired;   /* failures injected since armed */
} fault_t;

static fault_t faults[FAULT_KINDS];
static atomic_long live_allocs;

/* Count one operation of KIND; 1 if it is to fail. */
static int fault_hit(fault_kind_t kind) {
  fault_t *f = &faults[kind];
  long i, n;
  if (!atomic_load(&f->armed))
    return 0;
  i = atomic_fetch_add(&f->seen, 1) + 1;
  n = atomic_load(&f->n);
  if (i == n || (i > n && atomic_load(&f->persist))) {
    atomic_fetch_add(&f->fired, 1);
    return 1;
  }
  return 0;
}

void fault_arm(fault_kind_t kind, long n, int persist) {
  fault_t *f = &faults[kind];
  atomic_store(&f->armed, 0);
  atomic_store(&f->n, n);
  atomic_store(&f->persist, persist);
  atomic_store(&f->seen, 0);
  atomic_store(&f->fired, 0);
  atomic_store(&f->armed, 1);
}

void fault_disarm(void) {
  int k;
  for (k = 0; k < FAULT_KINDS; k++)
    atomic_store(&faults[k].armed, 0);
}

long fault_seen(fault_kind_t kind) { return atomic_load(&faults[kind].seen); }
long fault_fired(fault_kind_t kind) { return atomic_load(&faults[kind].fired); }
long fault_live_allocs(void) { return atomic_load(&live_allocs); }

/* ------------------------------------------------------------------------
 * The allocator
 * ------------------------------------------------------------------------ */

static sqlite3_mem_methods real_mem; /* SQLite's default, wrapped */

static void *mem_malloc(int n) {
  void *p;
  if (fault_hit(FAULT_ALLOC))
    return NULL;
  p = real_mem.xMalloc(n);
  if (p)
    atomic_fetch_add(&live_allocs, 1);
  return p;
}

static void mem_free(void *p) {
  if (p)
    atomic_fetch_sub(&live_allocs, 1);
  real_mem.xFree(p);
}

/* SQLite never reallocates NULL through this method (sqlite3Realloc
 * allocates instead), so the count of live blocks does not change. */
static void *mem_realloc(void *p, int n) {
  if (fault_hit(FAULT_ALLOC))
    return NULL;
  return real_mem.xRealloc(p, n);
}

static int mem_size(void *p) { return real_mem.xSize(p); }
static int mem_roundup(int n) { return real_mem.xRoundup(n); }
static int mem_init(void *arg) { return real_mem.xInit(real_mem.pAppData); }
static void mem_shutdown(void *arg) { real_mem.xShutdown(real_mem.pAppData); }

/* ------------------------------------------------------------------------
 * The VFS
 * ------------------------------------------------------------------------ */

typedef struct fault_file {
  sqlite3_file base;   /* pMethods: &fault_io */
  sqlite3_file *real;  /* the unix VFS's file, just after this struct */
  int is_wal;          /* opened with SQLITE_OPEN_WAL */
} fault_file_t;

static atomic_llong wal_synced; /* fault_wal_synced() */
static atomic_llong wal_writes, wal_bytes; /* fault_wal_writes() */
static char wal_watched[128];   /* "NAME-wal"; set before the opens */

void fault_wal_watch(const char *name) {
  snprintf(wal_watched, sizeof wal_watched, "%s-wal", name);
  atomic_store(&wal_synced, 0);
  atomic_store(&wal_writes, 0);
  atomic_store(&wal_bytes, 0);
}

long long fault_wal_synced(void) { return atomic_load(&wal_synced); }

long long fault_wal_writes(long long *bytes) {
  if (bytes)
    *bytes = atomic_load(&wal_bytes);
  return atomic_load(&wal_writes);
}

static sqlite3_vfs *real_vfs; /* "unix" */
static sqlite3_vfs fault_vfs;

#define REAL(f) (((fault_file_t *)(f))->real)

static int f_close(sqlite3_file *f) {
  return REAL(f)->pMethods->xClose(REAL(f));
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
  return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n,
                   sqlite3_int64 off) {
  if (fault_hit(FAULT_WRITE))
    return SQLITE_IOERR_WRITE;
  if (((fault_file_t *)f)->is_wal) {
    atomic_fetch_add(&wal_writes, 1);
    atomic_fetch_add(&wal_bytes, n);
  }
  return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size) {
  return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int f_sync(sqlite3_file *f, int flags) {
  sqlite3_int64 size = 0;
  int rc;
  if (fault_hit(FAULT_SYNC))
    return SQLITE_IOERR_FSYNC;
  /* the size before the sync: what is written by then is on the disk */
  if (((fault_file_t *)f)->is_wal &&
      REAL(f)->pMethods->xFileSize(REAL(f), &size) != SQLITE_OK)
    size = 0;
  rc = REAL(f)->pMethods->xSync(REAL(f), flags);
  if (rc == SQLITE_OK && ((fault_file_t *)f)->is_wal)
    atomic_store(&wal_synced, (long long)size);
  return rc;
}

static int f_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int f_lock(sqlite3_file *f, int level) {
  return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int f_unlock(sqlite3_file *f, int level) {
  return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int f_check_reserved_lock(sqlite3_file *f, int *out) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int f_file_control(sqlite3_file *f, int op, void *arg) {
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int f_sector_size(sqlite3_file *f) {
  return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int f_device_characteristics(sqlite3_file *f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

/* Version 2 and 3 methods: the unix VFS has them for every file it
 * opens; a file without them is treated as SQLite treats such a file. */
static int f_shm_map(sqlite3_file *f, int pg, int pgsz, int extend,
                     void volatile **pp) {
  if (REAL(f)->pMethods->iVersion < 2)
    return SQLITE_IOERR_SHMMAP;
  return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  if (REAL(f)->pMethods->iVersion < 2)
    return SQLITE_IOERR_SHMLOCK;
  return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void f_shm_barrier(sqlite3_file *f) {
  if (REAL(f)->pMethods->iVersion >= 2)
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int f_shm_unmap(sqlite3_file *f, int del) {
  if (REAL(f)->pMethods->iVersion < 2)
    return SQLITE_OK;
  return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
  if (REAL(f)->pMethods->iVersion < 3) {
    *pp = NULL;
    return SQLITE_OK;
  }
  return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  if (REAL(f)->pMethods->iVersion < 3)
    return SQLITE_OK;
  return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods fault_io = {
    3,
    f_close,
    f_read,
    f_write,
    f_truncate,
    f_sync,
    f_file_size,
    f_lock,
    f_unlock,
    f_check_reserved_lock,
    f_file_control,
    f_sector_size,
    f_device_characteristics,
    f_shm_map,
    f_shm_lock,
    f_shm_barrier,
    f_shm_unmap,
    f_fetch,
    f_unfetch,
};

/* Open the real file behind ours.  SQLite calls xClose only when xOpen
 * left pMethods set, so ours is set exactly when the real one is. */
static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file,
                  int flags, int *out_flags) {
  fault_file_t *ff = (fault_file_t *)file;
  int rc;
  (void)vfs;
  ff->real = (sqlite3_file *)(ff + 1);
  ff->real->pMethods = NULL;
  rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
  ff->base.pMethods = ff->real->pMethods ? &fault_io : NULL;
  if ((flags & SQLITE_OPEN_WAL) && name && wal_watched[0]) {
    const char *slash = strrchr(name, '/');
    ff->is_wal = strcmp(slash ? slash + 1 : name, wal_watched) == 0;
  } else {
    ff->is_wal = 0;
  }
  return rc;
}

int fault_install(void) {
  static const sqlite3_mem_methods wrapped = {
      mem_malloc, mem_free,    mem_realloc,  mem_size,
      mem_roundup, mem_init,   mem_shutdown, NULL};
  int rc = sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem);
  if (rc == SQLITE_OK)
    rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &wrapped);
  if (rc == SQLITE_OK)
    rc = sqlite3_initialize();
  if (rc != SQLITE_OK)
    return rc;
  real_vfs = sqlite3_vfs_find("unix");
  if (!real_vfs)
    return SQLITE_ERROR;
  /* Everything but the name, the file size and xOpen is the unix VFS's
   * own, called with this copy of its struct (its fields kept, pAppData
   * included); files are opened with the real struct. */
  fault_vfs = *real_vfs;
  fault_vfs.pNext = NULL;
  fault_vfs.zName = "fault";
  fault_vfs.szOsFile = (int)sizeof(fault_file_t) + real_vfs->szOsFile;
  fault_vfs.xOpen = f_open;
  return sqlite3_vfs_register(&fault_vfs, 1);
}
