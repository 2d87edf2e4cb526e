/*
 * verdictd.c - command line and configuration file of the decision daemon.
 *
 * Every option has one entry in `options`: its name (the same on the
 * command line and in the file), whether it takes a value, whether a
 * SIGHUP applies a new value from the file to the running daemon, and
 * the function that parses and stores it.  The command line is read
 * first; the configuration file then sets only what the command line did
 * not give.  At SIGHUP the file is read again (daemon.h's on_sighup, on
 * the main thread): the options marked live take their new values, any
 * other option whose line changed is logged as needing a restart, and a
 * file with an error changes nothing.  Then vd_daemon_run().
 *
 * The file: "NAME = VALUE" a line, blank lines and lines starting with #
 * ignored; a flag's VALUE is yes or no.  Errors name FILE:LINE.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "verdict/buf.h"
#include "verdict/daemon.h"
#include "verdict/version.h"

/* Where the configuration is read from when --config is not given: set by
 * the package's build (debian/rules: CONFIG=/etc/verdict/verdictd.conf),
 * and then a missing file is not an error; a plain build reads none. */
#ifdef VD_DEFAULT_CONFIG
#define VD_DEFAULT_CONFIG_HELP VD_DEFAULT_CONFIG
#else
#define VD_DEFAULT_CONFIG_HELP "none"
#endif

static void usage(FILE *f) {
  fputs(
      "usage: verdictd [options]\n"
      "  --config FILE        read options from FILE, one NAME = VALUE a line\n"
      "                       with the names below (the command line wins;\n"
      "                       default: " VD_DEFAULT_CONFIG_HELP ")\n"
      "  --policies DIR       policy bundle directory (default: policies)\n"
      "  --socket PATH        decision socket, mode 0660 (default: "
      VD_DEFAULT_SOCKET ")\n"
      "  --listen HOST:PORT   also serve decisions over TCP (default: off)\n"
      "  --socket-group GROUP the decision socket's group: its members may\n"
      "                       ask for decisions (default: the daemon's group)\n"
      "  --http HOST:PORT     also serve the HTTP/1.1 API (docs/protocol.md,\n"
      "                       \"HTTP\"; default: off)\n"
      "  --tokens FILE        HTTP bearer tokens, lines NAME ROLE SHA256HEX\n"
      "                       (roles decide, audit, admin); reread on SIGHUP.\n"
      "                       Without: HTTP serves loopback clients only\n"
      "  --tls-cert FILE      TLS on --listen and --http: certificate chain\n"
      "  --tls-key FILE       ...and its private key (PEM)\n"
      "  --tls-client-ca FILE require client certificates this CA signed\n"
      "                       (mutual TLS; the subject's CN is the credential)\n"
      "  --admin-socket PATH  admin socket, mode 0600 (default: off)\n"
      "  --admin-group GROUP  the admin socket's group, and mode 0660: its\n"
      "                       members may reload and activate (default: none)\n"
      "  --watch              reload when the policy directory changes\n"
      "  --db PATH            history database (default: " VD_DEFAULT_DB ")\n"
      "                       or a PostgreSQL connection string\n"
      "                       (postgresql://..., docs/fleet.md)\n"
      "  --node-id NAME       this node's name in a PostgreSQL history\n"
      "                       (required with one; each node keeps its chain)\n"
      "  --db-timeout MS      a PostgreSQL round trip without its answer by\n"
      "                       then fails and its connection is made again\n"
      "                       (a stalled server); 0: wait forever (default:\n"
      "                       5000)\n"
      "  --log-mode MODE      durable (default), async or off\n"
      "  --log-format FORMAT  text (default) or json: one event per line on\n"
      "                       stderr, with a time, a level and an event name\n"
      "  --workers N          worker threads (default: number of cores)\n"
      "  --max-line BYTES     longest request line (default: 1048576)\n"
      "  --max-pending BYTES  stop reading from a client whose unread answers\n"
      "                       pass this, until they are down to half (default:\n"
      "                       8388608, and at least twice --max-line)\n"
      "  --max-pending-total BYTES  past this many bytes held for all clients\n"
      "                       together, stop reading from those with 64 KiB or\n"
      "                       more unread, until under 3/4 (default: 67108864)\n"
      "  --instr-budget N     VM instructions per decision (default: "
      "10000000)\n"
      "  --mem-cap BYTES      memory one decision may use (default: "
      "33554432)\n"
      "  --decide-timeout MS  a decision still running after this many ms\n"
      "                       (stuck in C: the instruction budget stops Lua)\n"
      "                       has its worker replaced and its connections\n"
      "                       closed; 0: never (default: 5000)\n"
      "  --validate-timeout S seconds a bundle's validation may take, at\n"
      "                       start-up or on a reload, before it is refused as\n"
      "                       timed out (default: 30)\n"
      "  --always-count       count every VM instruction of every decision\n"
      "                       instead of the watchdog's fast attempts (same\n"
      "                       answers, slower; for comparison)\n"
      "  --unchecked          start without running the bundle's checks and\n"
      "                       tests (for testing the sandbox itself on bundles\n"
      "                       that are not valid); a reload is still validated\n"
      "  --policies-win       start with the policy directory even when the\n"
      "                       history's last activation was a rollback\n"
      "                       (verdict activate), which a restart otherwise\n"
      "                       keeps\n"
      "  --pseudonymise-key FILE  record the personal input fields (those the\n"
      "                       policies mark personal) as HMAC-SHA-256 keyed\n"
      "                       with FILE's bytes, never as received\n"
      "  --version            this program's version and its libraries'\n",
      f);
}

/* --version: the version, then a line per library, libsystemd last (it
 * has no run-time version call: this is the one built against). */
static int print_version(void) {
  vd_buf_t b = VD_BUF_INIT;
  vd_version_libs(&b);
  printf("verdictd %s\n%slibsystemd %s\n", vd_version(), b.data,
         VD_LIBSYSTEMD_VERSION);
  vd_buf_release(&b);
  return fflush(stdout) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------ */

/* What the options set: the daemon's, and the log format. */
typedef struct config {
  vd_daemon_opts_t o;
  vd_log_format_t log_format;
  int db_timeout_ms;       /* vd_history_set_db_timeout() */
} config_t;

typedef int (*setter_fn)(config_t *c, const char *v, vd_buf_t *err);

typedef struct option_def {
  const char *name;
  int takes_value;         /* 0: a flag */
  int live;                /* a SIGHUP applies the file's new value */
  setter_fn set;           /* V NULL for a flag given on the command line */
} option_def_t;

/* A whole number in [min, max]. */
static int parse_size(const char *s, size_t min, size_t max, size_t *out,
                      vd_buf_t *err) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (*s == '-' || !*s || *end || errno || v < min || v > max) {
    if (max == SIZE_MAX)
      vd_buf_addf(err, "%s: expected a whole number >= %zu", s, min);
    else
      vd_buf_addf(err, "%s: expected a whole number from %zu to %zu", s, min,
                  max);
    return -1;
  }
  *out = (size_t)v;
  return 0;
}

/* A flag: on from the command line (V NULL), yes or no from the file. */
static int parse_flag(const char *v, int *out, vd_buf_t *err) {
  if (!v || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
    *out = 1;
  else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
    *out = 0;
  else {
    vd_buf_addf(err, "%s: expected yes or no", v);
    return -1;
  }
  return 0;
}

/* A group by name or number. */
static int parse_group(const char *s, gid_t *out, vd_buf_t *err) {
  struct group *g = getgrnam(s);
  char *end;
  unsigned long v;
  if (g) {
    *out = g->gr_gid;
    return 0;
  }
  v = strtoul(s, &end, 10);
  if (*s && *s != '-' && !*end && v < (gid_t)-1) {
    *out = (gid_t)v;
    return 0;
  }
  vd_buf_addf(err, "%s: no such group", s);
  return -1;
}

/* Option strings live as long as the process: copies (of argv's, or of
 * the file's: a few bytes per SIGHUP that changes one, at most), listed
 * here so that they are freed at exit and a leak checker sees none. */
static char **kept;
static size_t nkept, kept_cap;

static void free_kept(void) {
  size_t i;
  for (i = 0; i < nkept; i++)
    free(kept[i]);
  free(kept);
  kept = NULL;
  nkept = kept_cap = 0;
}

static const char *keep(const char *v) {
  char *copy = strdup(v);
  if (copy && nkept == kept_cap) {
    size_t cap = kept_cap ? kept_cap * 2 : 32;
    char **grown = realloc(kept, cap * sizeof *grown);
    if (grown) {
      kept = grown;
      kept_cap = cap;
    }
  }
  if (!copy || nkept == kept_cap) {
    fputs("verdictd: out of memory\n", stderr);
    exit(1);
  }
  kept[nkept++] = copy;
  return copy;
}

static int set_policies(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.policies = keep(v); return 0;
}
static int set_socket(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.socket = keep(v); return 0;
}
static int set_listen(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.listen = keep(v); return 0;
}
static int set_http(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.http = keep(v); return 0;
}
static int set_tokens(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.tokens = keep(v); return 0;
}
static int set_tls_cert(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.tls_cert = keep(v); return 0;
}
static int set_tls_key(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.tls_key = keep(v); return 0;
}
static int set_tls_client_ca(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.tls_client_ca = keep(v); return 0;
}
static int set_node_id(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.node_id = keep(v); return 0;
}
static int set_admin_socket(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.admin_socket = keep(v); return 0;
}
static int set_db(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.db = keep(v); return 0;
}
static int set_socket_group(config_t *c, const char *v, vd_buf_t *e) {
  return parse_group(v, &c->o.socket_gid, e);
}
static int set_admin_group(config_t *c, const char *v, vd_buf_t *e) {
  return parse_group(v, &c->o.admin_gid, e);
}
static int set_log_mode(config_t *c, const char *v, vd_buf_t *e) {
  if (vd_history_mode_parse(v, &c->o.log_mode) == 0)
    return 0;
  vd_buf_addf(e, "%s: expected durable, async or off", v);
  return -1;
}
static int set_log_format(config_t *c, const char *v, vd_buf_t *e) {
  if (vd_log_format_parse(v, &c->log_format) == 0)
    return 0;
  vd_buf_addf(e, "%s: expected text or json", v);
  return -1;
}
static int set_workers(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 1, 256, &n, e))
    return -1;
  c->o.workers = (unsigned)n;
  return 0;
}
static int set_max_line(config_t *c, const char *v, vd_buf_t *e) {
  return parse_size(v, 64, SIZE_MAX / 4, &c->o.max_line, e);
}
static int set_max_pending(config_t *c, const char *v, vd_buf_t *e) {
  return parse_size(v, 65536, SIZE_MAX, &c->o.max_pending_out, e);
}
static int set_max_pending_total(config_t *c, const char *v, vd_buf_t *e) {
  return parse_size(v, 1u << 20, SIZE_MAX, &c->o.max_pending_total, e);
}
static int set_instr_budget(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 1000, SIZE_MAX, &n, e))
    return -1;
  c->o.limits.instr_budget = n;
  return 0;
}
static int set_mem_cap(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 65536, SIZE_MAX, &n, e))
    return -1;
  c->o.limits.mem_cap = n;
  return 0;
}
static int set_validate_timeout(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 1, 86400, &n, e))
    return -1;
  c->o.validate_timeout_s = (unsigned)n;
  return 0;
}
static int set_decide_timeout(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 0, 86400000, &n, e))
    return -1;
  c->o.decide_timeout_ms = (unsigned)n;
  return 0;
}
static int set_db_timeout(config_t *c, const char *v, vd_buf_t *e) {
  size_t n;
  if (parse_size(v, 0, 3600000, &n, e))
    return -1;
  c->db_timeout_ms = (int)n;
  return 0;
}
static int set_watch(config_t *c, const char *v, vd_buf_t *e) {
  return parse_flag(v, &c->o.watch, e);
}
static int set_always_count(config_t *c, const char *v, vd_buf_t *e) {
  return parse_flag(v, &c->o.always_count, e);
}
static int set_unchecked(config_t *c, const char *v, vd_buf_t *e) {
  return parse_flag(v, &c->o.unchecked, e);
}
static int set_policies_win(config_t *c, const char *v, vd_buf_t *e) {
  return parse_flag(v, &c->o.policies_win, e);
}
static int set_pseudonymise_key(config_t *c, const char *v, vd_buf_t *e) {
  (void)e; c->o.pseudonymise_key = keep(v); return 0;
}

/* Live: read by the main thread alone, for the next reload's engines and
 * its validation (admin.c).  Not --decide-timeout: its check runs only
 * when it was set at start. */
static const option_def_t options[] = {
    {"policies", 1, 0, set_policies},
    {"socket", 1, 0, set_socket},
    {"socket-group", 1, 0, set_socket_group},
    {"listen", 1, 0, set_listen},
    {"http", 1, 0, set_http},
    {"tokens", 1, 0, set_tokens},
    {"tls-cert", 1, 0, set_tls_cert},
    {"tls-key", 1, 0, set_tls_key},
    {"tls-client-ca", 1, 0, set_tls_client_ca},
    {"admin-socket", 1, 0, set_admin_socket},
    {"admin-group", 1, 0, set_admin_group},
    {"watch", 0, 0, set_watch},
    {"db", 1, 0, set_db},
    {"node-id", 1, 0, set_node_id},
    {"db-timeout", 1, 0, set_db_timeout},
    {"log-mode", 1, 0, set_log_mode},
    {"log-format", 1, 0, set_log_format},
    {"workers", 1, 0, set_workers},
    {"max-line", 1, 0, set_max_line},
    {"max-pending", 1, 0, set_max_pending},
    {"max-pending-total", 1, 0, set_max_pending_total},
    {"instr-budget", 1, 1, set_instr_budget},
    {"mem-cap", 1, 1, set_mem_cap},
    {"decide-timeout", 1, 0, set_decide_timeout},
    {"validate-timeout", 1, 1, set_validate_timeout},
    {"always-count", 0, 0, set_always_count},
    {"unchecked", 0, 0, set_unchecked},
    {"policies-win", 0, 0, set_policies_win},
    {"pseudonymise-key", 1, 0, set_pseudonymise_key},
};
#define NOPTIONS (sizeof options / sizeof *options)

/* The index in options[] of NAME, which is there. */
static size_t option_index(const char *name) {
  size_t i;
  for (i = 0; i < NOPTIONS && strcmp(options[i].name, name) != 0; i++)
    ;
  return i;
}

/* getopt_long's values for --config, --help, --version; the table's
 * options are OPT_BASE + their index. */
enum { OPT_CONFIG = 1, OPT_HELP, OPT_VERSION, OPT_BASE = 256 };

static void defaults(config_t *c) {
  static const vd_limits_t limits = VD_LIMITS_DEFAULT;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  memset(c, 0, sizeof *c);
  c->o.policies = "policies";
  c->o.socket = VD_DEFAULT_SOCKET;
  c->o.socket_gid = (gid_t)-1;
  c->o.admin_gid = (gid_t)-1;
  c->o.db = VD_DEFAULT_DB;
  c->o.log_mode = VD_LOG_DURABLE;
  c->o.workers = ncpu > 0 ? (unsigned)ncpu : 1;
  c->o.max_line = 1u << 20;
  c->o.max_pending_out = VD_MAX_PENDING_OUT;
  c->o.max_pending_total = VD_MAX_PENDING_TOTAL;
  c->o.validate_timeout_s = VD_VALIDATE_TIMEOUT_S;
  c->o.decide_timeout_ms = VD_DECIDE_TIMEOUT_MS;
  c->o.limits = limits;
  c->log_format = VD_LOG_FORMAT_TEXT;
  c->db_timeout_ms = VD_HISTORY_DB_TIMEOUT_MS;
}

/* ------------------------------------------------------------------------
 * The configuration file
 * ------------------------------------------------------------------------ */

/* What the file said, by option: the value as written (NULL: not set),
 * to tell at SIGHUP which lines changed. */
typedef struct file_values {
  char *value[NOPTIONS];
} file_values_t;

static void file_values_release(file_values_t *f) {
  size_t i;
  for (i = 0; i < NOPTIONS; i++)
    free(f->value[i]);
  memset(f, 0, sizeof *f);
}

static char *trim(char *s) {
  char *end;
  while (*s == ' ' || *s == '\t')
    s++;
  end = s + strlen(s);
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
                     end[-1] == '\r'))
    *--end = '\0';
  return s;
}

/* Read PATH into C, skipping the options in FROM_ARGV (given on the
 * command line), recording what it says in *fv.  MISSING_OK: a file that
 * does not exist sets nothing.  Returns 0, or -1 with err set to
 * "PATH:LINE: ...", having set what came before the error. */
static int read_config(const char *path, int missing_ok,
                       const unsigned char *from_argv, config_t *c,
                       file_values_t *fv, vd_buf_t *err) {
  unsigned lines_of[NOPTIONS] = {0};
  char *line = NULL;
  size_t cap = 0;
  unsigned lineno = 0;
  int rc = 0;
  FILE *f = fopen(path, "r");
  if (!f) {
    if (missing_ok && errno == ENOENT)
      return 0;
    vd_buf_addf(err, "configuration file %s: %s", path, strerror(errno));
    return -1;
  }
  while (rc == 0 && getline(&line, &cap, f) >= 0) {
    char *name = trim(line), *value, *eq;
    size_t i;
    lineno++;
    if (!*name || *name == '#')
      continue;
    eq = strchr(name, '=');
    if (!eq) {
      vd_buf_addf(err, "%s:%u: expected NAME = VALUE", path, lineno);
      rc = -1;
      break;
    }
    *eq = '\0';
    name = trim(name);
    value = trim(eq + 1);
    for (i = 0; i < NOPTIONS && strcmp(options[i].name, name) != 0; i++)
      ;
    if (i == NOPTIONS) {
      vd_buf_addf(err, "%s:%u: unknown option '%s'%s", path, lineno, name,
                  strcmp(name, "config") == 0 ? " (a file names no other)"
                                              : "");
      rc = -1;
    } else if (lines_of[i]) {
      vd_buf_addf(err, "%s:%u: %s is set already, on line %u", path, lineno,
                  name, lines_of[i]);
      rc = -1;
    } else if (!*value) {
      vd_buf_addf(err, "%s:%u: %s: no value", path, lineno, name);
      rc = -1;
    } else {
      lines_of[i] = lineno;
      fv->value[i] = strdup(value);
      if (!fv->value[i]) {
        vd_buf_addf(err, "%s: out of memory", path);
        rc = -1;
      } else if (!from_argv[i]) {
        vd_buf_t why = VD_BUF_INIT;
        if (options[i].set(c, value, &why) != 0) {
          vd_buf_addf(err, "%s:%u: %s %s", path, lineno, name, why.data);
          rc = -1;
        }
        vd_buf_release(&why);
      }
    }
  }
  if (rc == 0 && ferror(f)) {
    vd_buf_addf(err, "%s: %s", path, strerror(errno));
    rc = -1;
  }
  free(line);
  fclose(f);
  return rc;
}

/* ------------------------------------------------------------------------
 * SIGHUP
 * ------------------------------------------------------------------------ */

/* What on_sighup needs: the file, what the command line gave, and what
 * the file said when it was last applied. */
static struct {
  const char *path;        /* NULL: no file */
  int missing_ok;
  unsigned char from_argv[NOPTIONS];
  const char *argv_value[NOPTIONS]; /* the command line's (NULL: a flag) */
  file_values_t applied;
} conf;

static int same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Main thread (daemon.h).  The file again: live options take its values,
 * the others are logged if their line changed. */
static void on_sighup(vd_daemon_opts_t *live, void *arg) {
  config_t next;
  file_values_t fv;
  vd_buf_t err = VD_BUF_INIT;
  size_t i;
  (void)arg;
  if (!conf.path)
    return;
  /* as at start: defaults, the command line, the file */
  memset(&fv, 0, sizeof fv);
  defaults(&next);
  for (i = 0; i < NOPTIONS; i++)
    if (conf.from_argv[i])
      options[i].set(&next, conf.argv_value[i], &err); /* parsed once */
  if (read_config(conf.path, conf.missing_ok, conf.from_argv, &next, &fv,
                  &err) != 0) {
    vd_log(VD_LEVEL_ERR, "config_refused",
           "%s; no option changed (the policies are still reloaded)",
           err.data);
    vd_buf_release(&err);
    file_values_release(&fv);
    return;
  }
  for (i = 0; i < NOPTIONS; i++) {
    if (conf.from_argv[i] || same(fv.value[i], conf.applied.value[i]))
      continue;
    if (options[i].live)
      vd_log(VD_LEVEL_NOTICE, "config_changed", "%s: %s is now %s",
             conf.path, options[i].name,
             fv.value[i] ? fv.value[i] : "its default");
    else
      vd_log(VD_LEVEL_WARNING, "config_needs_restart",
             "%s: %s changed; it takes effect at the next start", conf.path,
             options[i].name);
  }
  /* the options marked live in `options` */
  live->limits.instr_budget = next.o.limits.instr_budget;
  live->limits.mem_cap = next.o.limits.mem_cap;
  live->validate_timeout_s = next.o.validate_timeout_s;
  file_values_release(&conf.applied);
  conf.applied = fv;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  struct option longopts[NOPTIONS + 4];
  vd_buf_t err = VD_BUF_INIT;
  config_t c;
  size_t i;
  int opt;

  atexit(free_kept);

  defaults(&c);
  for (i = 0; i < NOPTIONS; i++) {
    longopts[i].name = options[i].name;
    longopts[i].has_arg = options[i].takes_value ? required_argument
                                                 : no_argument;
    longopts[i].flag = NULL;
    longopts[i].val = OPT_BASE + (int)i;
  }
  longopts[i++] = (struct option){"config", required_argument, 0, OPT_CONFIG};
  longopts[i++] = (struct option){"help", no_argument, 0, OPT_HELP};
  longopts[i++] = (struct option){"version", no_argument, 0, OPT_VERSION};
  longopts[i] = (struct option){0, 0, 0, 0};
#ifdef VD_DEFAULT_CONFIG
  conf.path = VD_DEFAULT_CONFIG;
  conf.missing_ok = 1;
#endif

  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (opt >= OPT_BASE) {
      const option_def_t *d = &options[opt - OPT_BASE];
      if (d->set(&c, optarg, &err) != 0) {
        fprintf(stderr, "verdictd: --%s %s\n", d->name, err.data);
        vd_buf_release(&err);
        return 2;
      }
      conf.from_argv[opt - OPT_BASE] = 1;
      conf.argv_value[opt - OPT_BASE] = optarg;
    } else if (opt == OPT_CONFIG) {
      conf.path = optarg;
      conf.missing_ok = 0;
    } else if (opt == OPT_HELP || opt == 'h') {
      usage(stdout);
      return 0;
    } else if (opt == OPT_VERSION) {
      return print_version();
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "verdictd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (conf.path && read_config(conf.path, conf.missing_ok, conf.from_argv, &c,
                               &conf.applied, &err) != 0) {
    fprintf(stderr, "verdictd: %s\n", err.data);
    vd_buf_release(&err);
    return 2;
  }
  vd_buf_release(&err);
  if (c.o.max_pending_out < c.o.max_line * 2)
    c.o.max_pending_out = c.o.max_line * 2; /* one whole line's answer */
  if (!c.o.tls_cert != !c.o.tls_key || (c.o.tls_client_ca && !c.o.tls_cert)) {
    fprintf(stderr, "verdictd: --tls-cert and --tls-key go together, and "
                    "--tls-client-ca needs them\n");
    return 2;
  }
  if (c.o.tls_cert && !c.o.listen && !c.o.http) {
    fprintf(stderr, "verdictd: --tls-cert: no TCP listener to use it on "
                    "(--listen, --http)\n");
    return 2;
  }
  if (vd_history_is_postgres(c.o.db) && !vd_history_node_id_ok(c.o.node_id)) {
    fprintf(stderr, "verdictd: %s\n",
            c.o.node_id ? "--node-id: 1 to 63 letters, digits, '.', '_' or '-'"
                        : "--db names a PostgreSQL history: give this node a "
                          "name with --node-id NAME");
    return 2;
  }
  if (c.o.node_id && !vd_history_is_postgres(c.o.db)) {
    fprintf(stderr, "verdictd: --node-id is for a PostgreSQL history "
                    "(--db postgresql://...)\n");
    return 2;
  }
  c.o.on_sighup = on_sighup;
  vd_history_set_db_timeout(c.db_timeout_ms);
  vd_log_setup(c.log_format);
  if (conf.from_argv[option_index("db")] && vd_history_db_has_password(c.o.db))
    vd_log(VD_LEVEL_WARNING, "password_in_argv",
           "the --db connection string holds a password, which any user of "
           "this machine can read in ps or /proc: give it in PGPASSWORD, "
           "~/.pgpass (PGPASSFILE) or a service file instead, or put --db "
           "in the --config file (docs/fleet.md)");
  return vd_daemon_run(&c.o);
}
