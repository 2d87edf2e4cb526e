/*
 * history_walbuf.c - the durable writer's WAL writes, gathered.
 *
 * SQLite writes a WAL frame as two pwrite() calls (its 24-byte header,
 * then the page), one frame after the other, and at the commit of a
 * durable batch syncs the file.  At P16 that was two system calls for
 * each of the ~0.4 pages a record dirties, a quarter of the writer
 * thread's time in the kernel (docs/performance.md, session 12).  This is
 * a VFS shim over whichever VFS is the default when the writer opens its
 * connection (SQLite's "unix", or a test's): for the WAL file only, writes
 * that continue the one before are gathered in a buffer and reach the
 * file in one write when anything else happens to it.
 *
 * Why that keeps every guarantee: the bytes are in the file before any
 * other call on it returns or proceeds, and in particular before xSync,
 * so a commit's frames are on disk before SQLite marks them committed
 * (synchronous=FULL syncs the WAL before it writes the wal-index header;
 * vd_hist_walbuf_vfs() is asked for only in that mode).  Other
 * connections read the WAL through their own handles, and only frames a
 * committed header names: those were written out at the sync.  A write
 * that does not continue the gathered bytes (a frame rewritten in the
 * same transaction, the header at offset 0 after a restart) writes them
 * out first, then goes through as it came.  A failure to write them out
 * is the error of the call that asked: SQLite sees the commit fail, as
 * if the write had failed, and acknowledges nothing.  A process killed
 * with bytes gathered loses only frames of a transaction that was never
 * committed.  Without the sync at each commit (synchronous=NORMAL) the
 * wal-index could name frames still gathered here: that mode must not
 * use this VFS (vd_hist_open_writer() asks for it only with FULL).
 *
 * Threads: a file belongs to its connection's thread (the writer's); the
 * shims' table is made under a mutex.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "history_int.h"

/* Gathered bytes are written out past this many: a commit of a few
 * hundred records writes its frames in a handful of calls.  Under 128 KiB:
 * SQLite's unix VFS passes at most 0x1ffff bytes to one pwrite() and
 * answers SQLITE_FULL to a longer xWrite (its seekAndWriteFd() masks the
 * length). */
#define WALBUF_BYTES (120 * 1024)

typedef struct {
  sqlite3_file base;       /* pMethods: ours */
  char *buf;               /* gathered bytes; NULL: not a WAL file, or none yet */
  size_t len;              /* bytes gathered */
  sqlite3_int64 off;       /* where they go in the file */
  int wal;                 /* gather this file's writes */
  sqlite3_file *real;      /* the parent VFS's file, right after this struct */
} walbuf_file_t;

typedef struct {
  sqlite3_vfs vfs;         /* pAppData: the parent */
  char name[64];
} walbuf_vfs_t;

#define REAL(f) (((walbuf_file_t *)(f))->real)
#define PARENT(v) ((sqlite3_vfs *)(v)->pAppData)

/* Write out what F gathered.  SQLITE_OK, or the parent's error (the bytes
 * are then dropped: the transaction they belong to fails). */
static int flush(walbuf_file_t *f) {
  int rc;
  if (!f->len)
    return SQLITE_OK;
  rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
  f->len = 0;
  return rc;
}

static int wb_close(sqlite3_file *pf) {
  walbuf_file_t *f = (walbuf_file_t *)pf;
  int rc = flush(f), rc2 = f->real->pMethods->xClose(f->real);
  free(f->buf);
  f->buf = NULL;
  return rc != SQLITE_OK ? rc : rc2;
}

static int wb_write(sqlite3_file *pf, const void *p, int n,
                    sqlite3_int64 off) {
  walbuf_file_t *f = (walbuf_file_t *)pf;
  int rc;
  if (f->wal && n > 0 && (size_t)n < WALBUF_BYTES) {
    if (f->len && off == f->off + (sqlite3_int64)f->len &&
        f->len + (size_t)n <= WALBUF_BYTES) {
      memcpy(f->buf + f->len, p, (size_t)n);
      f->len += (size_t)n;
      return SQLITE_OK;
    }
    rc = flush(f);
    if (rc != SQLITE_OK)
      return rc;
    if (!f->buf)
      f->buf = malloc(WALBUF_BYTES);
    if (f->buf) {
      memcpy(f->buf, p, (size_t)n);
      f->len = (size_t)n;
      f->off = off;
      return SQLITE_OK;
    }
    /* no memory for a buffer: write through, as without this shim */
  } else if ((rc = flush(f)) != SQLITE_OK) {
    return rc;
  }
  return f->real->pMethods->xWrite(f->real, p, n, off);
}

/* The body of a method: the parent's method M with ARGS, once what PF
 * gathered is written out.  Every method uses it but the write, the
 * questions the parent answers (below) and the shared memory, which is
 * the database file's. */
#define FLUSHED(pf, M, ...)                                                  \
  int rc = flush((walbuf_file_t *)(pf));                                    \
  return rc != SQLITE_OK ? rc : REAL(pf)->pMethods->M(REAL(pf), __VA_ARGS__)

static int wb_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off) {
  FLUSHED(pf, xRead, p, n, off);
}
static int wb_truncate(sqlite3_file *pf, sqlite3_int64 size) {
  FLUSHED(pf, xTruncate, size);
}
static int wb_sync(sqlite3_file *pf, int flags) {
  FLUSHED(pf, xSync, flags);
}
static int wb_file_size(sqlite3_file *pf, sqlite3_int64 *size) {
  FLUSHED(pf, xFileSize, size);
}
static int wb_lock(sqlite3_file *pf, int level) {
  FLUSHED(pf, xLock, level);
}
static int wb_unlock(sqlite3_file *pf, int level) {
  FLUSHED(pf, xUnlock, level);
}
static int wb_file_control(sqlite3_file *pf, int op, void *arg) {
  FLUSHED(pf, xFileControl, op, arg);
}
static int wb_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **p) {
  FLUSHED(pf, xFetch, off, n, p);
}

static int wb_check_reserved(sqlite3_file *pf, int *out) {
  return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}

static int wb_sector_size(sqlite3_file *pf) {
  return REAL(pf)->pMethods->xSectorSize(REAL(pf));
}

static int wb_device(sqlite3_file *pf) {
  return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}

/* The shared memory is the database file's (the WAL's handle gathers). */
static int wb_shm_map(sqlite3_file *pf, int page, int size, int extend,
                      void volatile **p) {
  return REAL(pf)->pMethods->xShmMap(REAL(pf), page, size, extend, p);
}

static int wb_shm_lock(sqlite3_file *pf, int offset, int n, int flags) {
  return REAL(pf)->pMethods->xShmLock(REAL(pf), offset, n, flags);
}

static void wb_shm_barrier(sqlite3_file *pf) {
  REAL(pf)->pMethods->xShmBarrier(REAL(pf));
}

static int wb_shm_unmap(sqlite3_file *pf, int del) {
  return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del);
}

static int wb_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p) {
  return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

/* Ours, by the parent file's version: [0] for version 1, [1] adds the
 * shared memory, [2] mmap (a file is given what its parent's has, see
 * open, so a method its parent lacks is never called). */
#define WB_V1_                                                              \
  wb_close, wb_read, wb_write, wb_truncate, wb_sync, wb_file_size, wb_lock, \
      wb_unlock, wb_check_reserved, wb_file_control, wb_sector_size, wb_device
#define WB_SHM_ wb_shm_map, wb_shm_lock, wb_shm_barrier, wb_shm_unmap
static const sqlite3_io_methods methods[3] = {
    {1, WB_V1_, NULL, NULL, NULL, NULL, NULL, NULL},
    {2, WB_V1_, WB_SHM_, NULL, NULL},
    {3, WB_V1_, WB_SHM_, wb_fetch, wb_unfetch}};

static int wb_open(sqlite3_vfs *v, const char *name, sqlite3_file *pf,
                   int flags, int *out_flags) {
  walbuf_file_t *f = (walbuf_file_t *)pf;
  sqlite3_vfs *parent = PARENT(v);
  int rc;
  memset(f, 0, sizeof *f);
  f->real = (sqlite3_file *)(f + 1);
  rc = parent->xOpen(parent, name, f->real, flags, out_flags);
  if (!f->real->pMethods) {
    f->base.pMethods = NULL; /* nothing to close */
    return rc;
  }
  f->base.pMethods = &methods[f->real->pMethods->iVersion <= 1   ? 0
                              : f->real->pMethods->iVersion == 2 ? 1
                                                                 : 2];
  f->wal = rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) != 0;
  return rc;
}

/* Everything else is the parent's. */
static int wb_delete(sqlite3_vfs *v, const char *name, int sync) {
  return PARENT(v)->xDelete(PARENT(v), name, sync);
}
static int wb_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
  return PARENT(v)->xAccess(PARENT(v), name, flags, out);
}
static int wb_full_pathname(sqlite3_vfs *v, const char *name, int n,
                            char *out) {
  return PARENT(v)->xFullPathname(PARENT(v), name, n, out);
}
static void *wb_dl_open(sqlite3_vfs *v, const char *name) {
  return PARENT(v)->xDlOpen(PARENT(v), name);
}
static void wb_dl_error(sqlite3_vfs *v, int n, char *out) {
  PARENT(v)->xDlError(PARENT(v), n, out);
}
static void (*wb_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void) {
  return PARENT(v)->xDlSym(PARENT(v), h, sym);
}
static void wb_dl_close(sqlite3_vfs *v, void *h) {
  PARENT(v)->xDlClose(PARENT(v), h);
}
static int wb_randomness(sqlite3_vfs *v, int n, char *out) {
  return PARENT(v)->xRandomness(PARENT(v), n, out);
}
static int wb_sleep(sqlite3_vfs *v, int us) {
  return PARENT(v)->xSleep(PARENT(v), us);
}
static int wb_current_time(sqlite3_vfs *v, double *out) {
  return PARENT(v)->xCurrentTime(PARENT(v), out);
}
static int wb_get_last_error(sqlite3_vfs *v, int n, char *out) {
  return PARENT(v)->xGetLastError ? PARENT(v)->xGetLastError(PARENT(v), n, out)
                                  : 0;
}
static int wb_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
  return PARENT(v)->xCurrentTimeInt64(PARENT(v), out);
}

/* One shim per parent met (the default VFS: "unix", or a test's). */
#define MAX_SHIMS 8
static walbuf_vfs_t shims[MAX_SHIMS];
static int nshims;
static pthread_mutex_t shims_mu = PTHREAD_MUTEX_INITIALIZER;

const char *vd_hist_walbuf_vfs(void) {
  sqlite3_vfs *parent = sqlite3_vfs_find(NULL);
  const char *name = NULL;
  int i;
  if (!parent)
    return NULL;
  pthread_mutex_lock(&shims_mu);
  for (i = 0; i < nshims && !name; i++)
    if (shims[i].vfs.pAppData == parent)
      name = shims[i].name;
  if (!name && nshims < MAX_SHIMS && parent->iVersion >= 2 &&
      parent->xCurrentTimeInt64) {
    walbuf_vfs_t *s = &shims[nshims];
    snprintf(s->name, sizeof s->name, "verdict-walbuf-%d", nshims);
    s->vfs.iVersion = 2;
    s->vfs.szOsFile = (int)sizeof(walbuf_file_t) + parent->szOsFile;
    s->vfs.mxPathname = parent->mxPathname;
    s->vfs.zName = s->name;
    s->vfs.pAppData = parent;
    s->vfs.xOpen = wb_open;
    s->vfs.xDelete = wb_delete;
    s->vfs.xAccess = wb_access;
    s->vfs.xFullPathname = wb_full_pathname;
    s->vfs.xDlOpen = wb_dl_open;
    s->vfs.xDlError = wb_dl_error;
    s->vfs.xDlSym = wb_dl_sym;
    s->vfs.xDlClose = wb_dl_close;
    s->vfs.xRandomness = wb_randomness;
    s->vfs.xSleep = wb_sleep;
    s->vfs.xCurrentTime = wb_current_time;
    s->vfs.xGetLastError = wb_get_last_error;
    s->vfs.xCurrentTimeInt64 = wb_current_time_int64;
    if (sqlite3_vfs_register(&s->vfs, 0) == SQLITE_OK) {
      nshims++;
      name = s->name;
    }
  }
  pthread_mutex_unlock(&shims_mu);
  return name;
}
