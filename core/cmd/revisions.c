/*
 * revisions.c - policy revisions from the history database, offline:
 *
 *   verdict revisions [--db PATH]     revisions, activations and tags
 *   verdict diff A [B] [--db PATH]    unified diff; A and B each a
 *                                     revision or a directory (B: active)
 *   verdict export REV DIR [--db PATH]  write a stored revision to DIR
 *   verdict tag REV NAME [--who W] [--db PATH]  name a revision
 *
 * A revision is named as vd_history_resolve() (history.h) takes it: a
 * hash prefix, active, previous, @-N or a tag.  An argument that names an
 * existing directory is a directory ("./NAME" to be sure).  These read the
 * database file only, read-only (tag writes its one row), so auditors need
 * neither the admin socket nor a running daemon.  Without --db, revisions
 * and diff of two revisions still ask the daemon's admin socket, as before
 * (admin.c), and so see the database the daemon writes.
 *
 * Also the helpers every command shares: --help, and a bundle opened from
 * a directory or a revision (vd_cli_open_bundle).  Runs on the CLI's main
 * thread.
 *
 * Exit status: 0 success (diff: whether or not they differ); 1 the
 * revision or tag could not be found or made; 2 usage.
 */
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd_int.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/textdiff.h"

/* ========================================================================
 * Shared helpers
 * ====================================================================== */

int vd_cli_wants_help(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return 1;
  return 0;
}

int vd_cli_help(const char *usage) {
  fputs(usage, stdout);
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int vd_cli_open_bundle(const char *cmd, const char *spec, int how,
                       const char *db, vd_bundle_t **out) {
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  *out = NULL;
  if (how == VD_CLI_DIRECTORY || (how == VD_CLI_EITHER && is_dir(spec)))
    rc = vd_bundle_load(spec, out, &err);
  else
    rc = vd_history_load_bundle(db, spec, out, &err);
  if (rc) {
    fprintf(stderr, "verdict %s: %s: %s\n", cmd, spec,
            err.data ? err.data : vd_err_desc(rc));
    vd_buf_release(&err);
    return rc == VD_ENOT_FOUND ? 1 : 2;
  }
  vd_buf_release(&err);
  return 0;
}

/* ========================================================================
 * Options
 * ====================================================================== */

typedef struct revs_opts {
  const char *db, *who, *admin_socket;
  const char *pos[2];
  int npos, db_given;
} revs_opts_t;

static int parse(const char *cmd, int argc, char **argv, int maxpos,
                 const char *usage, revs_opts_t *o) {
  int i;
  o->db = VD_DEFAULT_DB;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--db") == 0)
      slot = &o->db;
    else if (strcmp(a, "--who") == 0 && strcmp(cmd, "tag") == 0)
      slot = &o->who;
    else if (strcmp(a, "--admin-socket") == 0 && strcmp(cmd, "tag") != 0 &&
             strcmp(cmd, "export") != 0)
      slot = &o->admin_socket;
    if (slot) {
      if (i + 1 >= argc || !*argv[i + 1]) {
        fprintf(stderr, "verdict %s: %s needs a value\n", cmd, a);
        return 2;
      }
      *slot = argv[++i];
      if (slot == &o->db)
        o->db_given = 1;
    } else if (a[0] == '-' && a[1] && !(a[1] == '.' || a[1] == '/')) {
      fprintf(stderr, "verdict %s: unknown option %s\n%s", cmd, a, usage);
      return 2;
    } else if (o->npos < maxpos) {
      o->pos[o->npos++] = a;
    } else {
      fprintf(stderr, "verdict %s: unexpected argument %s\n%s", cmd, a,
              usage);
      return 2;
    }
  }
  return 0;
}

/* ========================================================================
 * The commands
 * ====================================================================== */

static const char revisions_usage[] =
    "usage: verdict revisions [--db PATH | --admin-socket PATH]\n"
    "\n"
    "Every activation (newest first; '*' marks the revision in force), the\n"
    "revisions stored and their tags.  TRIGGER: startup, startup-rollback\n"
    "(a restart kept the revision last activated), reload (verdict reload),\n"
    "rollback (verdict activate), sighup, watch; on a fleet also fleet (a\n"
    "node took the fleet's revision) and startup-fleet (a node started on\n"
    "it).  With --db the database file is read directly (read-only; no\n"
    "daemon needed), else the daemon is asked over its admin socket\n"
    "(default " VD_DEFAULT_ADMIN_SOCKET ").\n";

static const char diff_usage[] =
    "usage: verdict diff A [B] [--db PATH | --admin-socket PATH]\n"
    "\n"
    "Unified diff from A to B, each a directory or a revision (a hash\n"
    "prefix, active, previous, @-N or a tag; B defaults to active).  An\n"
    "argument that is an existing directory is a directory.  With --db, or\n"
    "when either is a directory, revisions are read from the database file\n"
    "(default " VD_DEFAULT_DB "); otherwise the daemon is asked.\n";

static const char export_usage[] =
    "usage: verdict export REV DIR [--db PATH]\n"
    "\n"
    "Write the files of stored revision REV into DIR (new or empty): the way\n"
    "to start editing from what is live (verdict export active DIR).\n";

static const char tag_usage[] =
    "usage: verdict tag REV NAME [--who WHO] [--db PATH]\n"
    "\n"
    "Name revision REV NAME in the history database, with WHO (default\n"
    "your login name) and the time.  A tag names one revision for good.\n";

static int cmd_revisions(int argc, char **argv) {
  revs_opts_t o = {0};
  vd_buf_t json = VD_BUF_INIT, err = VD_BUF_INIT;
  int rc;
  if ((rc = parse("revisions", argc, argv, 0, revisions_usage, &o)) != 0)
    return rc;
  if (!o.db_given)
    return vd_cli_admin(argc, argv);
  vd_buf_addc(&json, '{');
  rc = vd_history_revisions_json(o.db, &json, &err);
  vd_buf_addc(&json, '}');
  if (rc) {
    fprintf(stderr, "verdict revisions: %s\n", err.data);
    rc = 1;
  } else {
    rc = vd_cli_print_admin("revisions", json.data);
  }
  vd_buf_release(&json);
  vd_buf_release(&err);
  return rc;
}

static int cmd_diff(int argc, char **argv) {
  revs_opts_t o = {0};
  vd_bundle_t *a = NULL, *b = NULL;
  vd_buf_t text = VD_BUF_INIT;
  int rc;
  if ((rc = parse("diff", argc, argv, 2, diff_usage, &o)) != 0)
    return rc;
  if (o.npos < 1) {
    fprintf(stderr, "verdict diff: which revisions or directories?\n%s",
            diff_usage);
    return 2;
  }
  if (!o.db_given && !is_dir(o.pos[0]) && !(o.npos > 1 && is_dir(o.pos[1])))
    return vd_cli_admin(argc, argv);
  rc = vd_cli_open_bundle("diff", o.pos[0], VD_CLI_EITHER, o.db, &a);
  if (rc == 0)
    rc = vd_cli_open_bundle("diff", o.npos > 1 ? o.pos[1] : "active",
                            VD_CLI_EITHER, o.db, &b);
  if (rc == 0) {
    vd_text_diff_bundles(a, b, &text);
    fwrite(text.data ? text.data : "", 1, text.len, stdout);
  }
  if (a)
    vd_bundle_unref(a);
  if (b)
    vd_bundle_unref(b);
  vd_buf_release(&text);
  return rc;
}

/* mkdir -p for the directories above the file at PATH (inside DIR). */
static int make_parents(char *path) {
  char *p;
  for (p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
      *p = '/';
      return -1;
    }
    *p = '/';
  }
  return 0;
}

/* 1 if PATH is an empty directory or does not exist. */
static int empty_dir(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  int empty = 1;
  if (!d)
    return errno == ENOENT;
  while (empty && (e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      empty = 0;
  closedir(d);
  return empty;
}

static int cmd_export(int argc, char **argv) {
  revs_opts_t o = {0};
  vd_bundle_t *b = NULL;
  size_t i;
  int rc;
  if ((rc = parse("export", argc, argv, 2, export_usage, &o)) != 0)
    return rc;
  if (o.npos < 2) {
    fprintf(stderr, "verdict export: REV and DIR are required\n%s",
            export_usage);
    return 2;
  }
  if ((rc = vd_cli_open_bundle("export", o.pos[0], VD_CLI_REVISION, o.db,
                               &b)) != 0)
    return rc;
  if (!empty_dir(o.pos[1]) || (!is_dir(o.pos[1]) && mkdir(o.pos[1], 0755))) {
    fprintf(stderr, "verdict export: %s: %s\n", o.pos[1],
            is_dir(o.pos[1]) ? "not empty; export into a new or empty "
                               "directory"
                             : strerror(errno));
    vd_bundle_unref(b);
    return 2;
  }
  for (i = 0; rc == 0 && i < vd_bundle_count(b); i++) {
    const vd_bundle_file_t *f = vd_bundle_file(b, i);
    vd_buf_t path = VD_BUF_INIT;
    FILE *fp = NULL;
    vd_buf_addf(&path, "%s/%s", o.pos[1], f->path);
    if (make_parents(path.data) != 0 || !(fp = fopen(path.data, "wb")) ||
        fwrite(f->data, 1, f->len, fp) != f->len) {
      fprintf(stderr, "verdict export: %s: %s\n", path.data, strerror(errno));
      rc = 2;
    }
    if (fp && fclose(fp) != 0 && rc == 0) {
      fprintf(stderr, "verdict export: %s: %s\n", path.data, strerror(errno));
      rc = 2;
    }
    vd_buf_release(&path);
  }
  if (rc == 0)
    printf("exported %s (%zu files) to %s\n", vd_bundle_revision(b),
           vd_bundle_count(b), o.pos[1]);
  if (b)
    vd_bundle_unref(b);
  return rc;
}

static int cmd_tag(int argc, char **argv) {
  revs_opts_t o = {0};
  char rev[VD_REVISION_NAME_MAX], *err = NULL;
  const char *who;
  int rc;
  if ((rc = parse("tag", argc, argv, 2, tag_usage, &o)) != 0)
    return rc;
  if (o.npos < 2) {
    fprintf(stderr, "verdict tag: REV and NAME are required\n%s", tag_usage);
    return 2;
  }
  who = o.who;
  if (!who) {
    struct passwd *pw = getpwuid(getuid());
    who = pw ? pw->pw_name : NULL;
  }
  rc = vd_history_tag(o.db, o.pos[0], o.pos[1], who, rev, &err);
  if (rc) {
    fprintf(stderr, "verdict tag: %s\n", err ? err : vd_err_desc(rc));
    free(err);
    return 1;
  }
  printf("tagged %s %s\n", rev, o.pos[1]);
  return 0;
}

int vd_cli_revs(int argc, char **argv) {
  static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
  } cmds[] = {
      {"revisions", cmd_revisions, revisions_usage},
      {"diff", cmd_diff, diff_usage},
      {"export", cmd_export, export_usage},
      {"tag", cmd_tag, tag_usage},
  };
  size_t i;
  for (i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp(argv[0], cmds[i].name) == 0)
      return vd_cli_wants_help(argc, argv) ? vd_cli_help(cmds[i].usage)
                                           : cmds[i].run(argc, argv);
  fprintf(stderr, "verdict: %s is not a revisions command\n", argv[0]);
  return 2;
}
