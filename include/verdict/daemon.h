/*
 * daemon.h - verdictd, the decision daemon.
 *
 * vd_daemon_run() loads the bundle, validates it exactly as a reload does
 * (vd_policy_validate(): every file compiles, every policy is well formed,
 * the bundle's own tests pass), opens the history database, listens,
 * starts the workers and serves until SIGTERM or SIGINT, after which it
 * answers the requests already read and returns 0.  A bundle that fails
 * validation, or whose validation takes longer than validate_timeout_s,
 * is refused: nothing is listened on or served, and it returns non-zero.
 * SIGHUP reloads the bundle.  A worker whose decision runs past
 * decide_timeout_ms is replaced; past two of them (VD_WORKERS_STUCK_MAX in
 * core/daemon/daemon_int.h) the daemon stops and returns 1
 * (docs/operations.md, "Limits").  It blocks the calling thread, which
 * becomes the main thread.
 */
#ifndef VERDICT_DAEMON_H
#define VERDICT_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

#include "verdict/history.h"
#include "verdict/sandbox.h"

typedef struct vd_daemon vd_daemon_t;

/* Where verdictd listens and writes unless told otherwise, and so where
 * the verdict command looks by default (relative to the working
 * directory, as `make run` uses them). */
#define VD_DEFAULT_SOCKET "var/verdictd.sock"
#define VD_DEFAULT_ADMIN_SOCKET "var/verdictd-admin.sock"
#define VD_DEFAULT_DB "var/verdict.db"

/* The default of --validate-timeout, in seconds: `verdict check` of the
 * bundled policies takes about a second, so this is far above any bundle
 * whose code terminates. */
#define VD_VALIDATE_TIMEOUT_S 30
/* The default of --decide-timeout, in ms: a decision takes well under a
 * millisecond and its instruction budget stops a runaway in Lua within
 * about a second, so only a decision stuck in C gets this far. */
#define VD_DECIDE_TIMEOUT_MS 5000
/* The defaults of --max-pending (one connection's unread responses) and
 * --max-pending-total (every connection's bytes together). */
#define VD_MAX_PENDING_OUT (8u << 20)
#define VD_MAX_PENDING_TOTAL (64u << 20)

typedef struct vd_daemon_opts {
  const char *policies;    /* bundle directory */
  const char *socket;      /* decision socket path */
  const char *admin_socket;/* admin socket path, or NULL */
  const char *listen;      /* "HOST:PORT" for TCP, or NULL */
  const char *http;        /* "HOST:PORT" for HTTP/1.1, or NULL */
  const char *tokens;      /* bearer tokens for HTTP (core/daemon/auth.c
                              says the format), or NULL: HTTP then serves
                              loopback clients only */
  const char *tls_cert;    /* PEM chain: TLS on --listen and --http */
  const char *tls_key;
  const char *tls_client_ca; /* require client certificates it signed */
  const char *db;          /* history database path, or a PostgreSQL
                              connection string (docs/fleet.md) */
  const char *node_id;     /* this node's chain in a PostgreSQL history */
  gid_t socket_gid;        /* group of the decision socket (mode 0660), or
                              (gid_t)-1 for the daemon's own */
  gid_t admin_gid;         /* group of the admin socket, which is then 0660
                              instead of 0600, or (gid_t)-1 */
  int watch;               /* reload when the policy directory changes */
  int always_count;        /* no fast attempts: count every instruction */
  int policies_win;        /* start with the directory even when a
                              rollback is in force in the history */
  int unchecked;           /* start without validating the bundle (for
                              testing the sandbox on bundles that are not
                              valid); reloads are validated regardless */
  vd_log_mode_t log_mode;
  unsigned workers;
  size_t max_line;         /* bytes; longer lines get too_large and a close */
  size_t max_pending_out;  /* stop reading a client whose unsent output passes this */
  size_t max_pending_total;/* ...and, past this sum over all connections,
                              every client with 64 KiB or more unread */
  unsigned decide_timeout_ms; /* a decision still running after this has
                              its worker replaced (daemon.c); 0: never */
  unsigned validate_timeout_s; /* a bundle's validation, at start-up or on a
                              reload, that takes longer is refused as timed
                              out (0: VD_VALIDATE_TIMEOUT_S) */
  vd_limits_t limits;
  const char *pseudonymise_key; /* --pseudonymise-key FILE: personal fields
                              recorded as keyed hashes (pseudonym.h); NULL:
                              as received */
  /* SIGHUP, on the main thread, before the policies are reloaded, under
   * the daemon's state lock (which it must not take): may
   * change limits and validate_timeout_s in OPTS (the
   * daemon's own; verdictd.c reads its configuration file again), which
   * the reload and what follows it use.  NULL: nothing. */
  void (*on_sighup)(struct vd_daemon_opts *opts, void *arg);
  void *on_sighup_arg;
} vd_daemon_opts_t;

/* Serve until stopped.  Returns the process exit status. */
int vd_daemon_run(const vd_daemon_opts_t *opts);

#endif
