/*
 * history_backup.c - `verdict history backup`: a consistent copy of a
 * history database taken while the daemon writes it, verified before it
 * is put in place.
 *
 * Owns nothing past one call.  The copy is SQLite's online backup
 * (sqlite3_backup_init/step/finish) from a read-only connection that
 * holds one read transaction for the whole copy: in WAL mode that
 * snapshot never blocks the writer, and since the source connection keeps
 * it, sqlite3_backup_step() never sees the file change under it and never
 * restarts, however fast the daemon commits.  The copy is stepped
 * BACKUP_STEP_PAGES pages at a time into a temporary file beside DEST,
 * switched to a rollback journal (one self-contained file, no -wal or
 * -shm to carry along), synced, verified as `verdict history verify`
 * does (both chains, every revision), and only then linked to DEST (or,
 * with force, renamed over it).  A copy that fails any step is removed:
 * DEST is either absent, the old file, or a verified copy.
 *
 * Invariants:
 *   - the source is only ever read (SQLITE_OPEN_READONLY);
 *   - DEST is created 0640 (owner and group, like the database);
 *   - without force an existing DEST is never replaced, even one that
 *     appears while the copy runs (link(2) fails rather than overwrite).
 *
 * Threads: the caller's; blocks for the length of the copy and verify.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/history.h"

/* Pages copied per sqlite3_backup_step(): 4 MiB at 4 KiB pages. */
#define BACKUP_STEP_PAGES 1024

/* fsync the file (or directory) at PATH.  0, or errno. */
static int sync_path(const char *path, int dir) {
  int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
  int e = 0;
  if (fd < 0)
    return errno;
  if (fsync(fd) != 0)
    e = errno;
  close(fd);
  return e;
}

/* The directory part of PATH, malloc'd ("." for a bare name). */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* Copy SRC (open, in its read transaction) into the empty file TMP. */
static int copy_pages(sqlite3 *src, const char *src_path, const char *tmp,
                      const char *dest, vd_history_backup_report_t *rep,
                      vd_buf_t *err) {
  sqlite3 *dst = NULL;
  sqlite3_backup *b;
  int src_rc, rc = 0;
  src_rc = vd_hist_sqlite_open(tmp, &dst, SQLITE_OPEN_READWRITE);
  if (src_rc != SQLITE_OK) {
    rc = vd_hist_db_err(err, dest, dst, src_rc, "creating the copy");
    sqlite3_close(dst);
    return rc;
  }
  sqlite3_extended_result_codes(dst, 1);
  b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) {
    rc = vd_hist_db_err(err, dest, dst, sqlite3_errcode(dst),
                        "starting the copy");
    sqlite3_close(dst);
    return rc;
  }
  do {
    src_rc = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
    rep->steps++;
    /* the source is held in one snapshot, so BUSY can only be another
     * process locking the new file: wait as the busy handler would */
    if (src_rc == SQLITE_BUSY || src_rc == SQLITE_LOCKED)
      sqlite3_sleep(10);
  } while (src_rc == SQLITE_OK || src_rc == SQLITE_BUSY ||
           src_rc == SQLITE_LOCKED);
  rep->pages = sqlite3_backup_pagecount(b);
  sqlite3_backup_finish(b);
  if (src_rc != SQLITE_DONE) {
    /* the failing side's message: the source's if it has one */
    sqlite3 *bad = sqlite3_errcode(src) != SQLITE_OK ? src : dst;
    rc = vd_hist_db_err(err, bad == src ? src_path : dest, bad, src_rc,
                        "copying the database");
    sqlite3_close(dst);
    return rc;
  }
  /* one file: the copy leaves WAL mode, its header says so */
  src_rc = sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
  if (src_rc != SQLITE_OK)
    rc = vd_hist_db_err(err, dest, dst, src_rc,
                        "switching the copy to a rollback journal");
  if (sqlite3_close(dst) != SQLITE_OK && rc == 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "backup '%s': closing the copy failed", dest);
    rc = VD_EIO;
  }
  return rc;
}

int vd_history_backup(const char *src_path, const char *dest, int force,
                      vd_history_backup_report_t *rep, char **errmsg) {
  vd_buf_t err = VD_BUF_INIT;
  sqlite3 *src = NULL;
  struct stat s_src, s_dst;
  char *tmp = NULL, *dir = NULL;
  int rc, src_rc, fd, placed = 0;
  memset(rep, 0, sizeof *rep);
  if (!dest || !*dest) {
    vd_buf_adds(&err, "backup: empty destination path");
    return vd_hist_give_err(errmsg, &err, VD_EINVALID);
  }
  if (stat(dest, &s_dst) == 0) {
    if (stat(src_path, &s_src) == 0 && s_src.st_dev == s_dst.st_dev &&
        s_src.st_ino == s_dst.st_ino) {
      vd_buf_addf(&err, "backup '%s': that is the database itself", dest);
      return vd_hist_give_err(errmsg, &err, VD_EINVALID);
    }
    if (!force) {
      vd_buf_addf(&err, "backup '%s': the file exists; give --force to "
                        "replace it", dest);
      return vd_hist_give_err(errmsg, &err, VD_EINVALID);
    }
    if (!S_ISREG(s_dst.st_mode)) {
      vd_buf_addf(&err, "backup '%s': not a regular file", dest);
      return vd_hist_give_err(errmsg, &err, VD_EINVALID);
    }
  }
  rc = vd_history_db_open_ro(&src, src_path, &err);
  if (rc)
    return vd_hist_give_err(errmsg, &err, rc);
  /* one read snapshot for the whole copy (see the top of the file) */
  src_rc = sqlite3_exec(src, "BEGIN; SELECT seq FROM chain_head", NULL, NULL,
                        NULL);
  if (src_rc != SQLITE_OK) {
    rc = vd_hist_db_err(&err, src_path, src, src_rc, "starting to read");
    goto close_src;
  }
  if (!(dir = dir_of(dest)) ||
      !(tmp = malloc(strlen(dest) + sizeof ".backup-XXXXXX"))) {
    rc = VD_ENOMEM;
    goto close_src;
  }
  sprintf(tmp, "%s.backup-XXXXXX", dest);
  fd = mkstemp(tmp);
  if (fd < 0) {
    vd_buf_addf(&err, "backup '%s': cannot create a file in '%s': %s", dest,
                dir, strerror(errno));
    rc = VD_EIO;
    free(tmp);
    tmp = NULL;
    goto close_src;
  }
  if (fchmod(fd, 0640) != 0) {
    vd_buf_addf(&err, "backup '%s': chmod 0640: %s", dest, strerror(errno));
    rc = VD_EIO;
  }
  close(fd);
  if (rc == 0)
    rc = copy_pages(src, src_path, tmp, dest, rep, &err);
close_src:
  if (src) {
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(src);
  }
  if (rc)
    goto remove_tmp;
  if ((errno = sync_path(tmp, 0)) != 0) {
    vd_buf_addf(&err, "backup '%s': fsync: %s", dest, strerror(errno));
    rc = VD_EIO;
    goto remove_tmp;
  }
  /* the copy is verified as a file of its own, before it takes DEST */
  rc = vd_history_verify(tmp, &rep->verify);
  if (rc) {
    if (rep->verify.problem == VD_VERIFY_OK)
      vd_buf_addf(&err, "backup '%s': the copy cannot be read back: %s",
                  dest, rep->verify.message);
    else
      vd_buf_addf(&err, "backup '%s': the copy does not verify, so the "
                        "database does not either (run verdict history "
                        "verify on it): %s", dest, rep->verify.message);
    goto remove_tmp;
  }
  if (force) {
    placed = rename(tmp, dest) == 0;
  } else {
    placed = link(tmp, dest) == 0;
    if (placed)
      unlink(tmp);
  }
  if (!placed) {
    vd_buf_addf(&err, "backup '%s': %s%s", dest, strerror(errno),
                errno == EEXIST ? " (it appeared while copying; give --force "
                                  "to replace it)" : "");
    rc = VD_EIO;
    goto remove_tmp;
  }
  if ((errno = sync_path(dir, 1)) != 0) {
    vd_buf_addf(&err, "backup '%s': fsync of '%s': %s", dest, dir,
                strerror(errno));
    rc = VD_EIO;
  }
  goto out;
remove_tmp:
  if (tmp)
    unlink(tmp);
out:
  free(tmp);
  free(dir);
  return vd_hist_give_err(errmsg, &err, rc);
}
