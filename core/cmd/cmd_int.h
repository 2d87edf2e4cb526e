/*
 * cmd_int.h - the verdict command's subcommands, one file per group, for
 * core/cmd/verdict.c to dispatch to.  Each parses its own options
 * (argv[0] is the subcommand's name, argv[1..] its arguments) and returns
 * the process exit status.
 */
#ifndef VERDICT_CLI_INT_H
#define VERDICT_CLI_INT_H

#include <stddef.h>

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/daemon.h" /* the default socket and database paths */

int vd_cli_decide(int argc, char **argv);  /* decide.c: decide */
int vd_cli_ping(int argc, char **argv);    /* decide.c: ping, status */
int vd_cli_admin(int argc, char **argv);   /* admin.c: reload, activate,
                                            * revisions, diff, status --admin */
int vd_cli_policy(int argc, char **argv);  /* policy.c: test, check */
int vd_cli_history(int argc, char **argv); /* audit.c */
int vd_cli_replay(int argc, char **argv);  /* replay.c */
int vd_cli_bench(int argc, char **argv);   /* bench.c */
int vd_cli_reference(int argc, char **argv); /* reference.c */
int vd_cli_schema(int argc, char **argv);  /* schema.c */
int vd_cli_eval(int argc, char **argv);    /* eval.c */
int vd_cli_revs(int argc, char **argv);    /* revisions.c: revisions, diff,
                                            * export, tag */

/* revisions.c: 1 when argv[1..] asks for --help or -h. */
int vd_cli_wants_help(int argc, char **argv);
/* revisions.c: print USAGE on stdout; returns 0, the exit status. */
int vd_cli_help(const char *usage);

/* revisions.c: open SPEC as a bundle for command CMD: a directory, a
 * revision in the history database DB (any name vd_history_resolve()
 * takes), or (EITHER) a directory if one of that name exists.  Returns 0
 * with *out one reference, or the exit status (1 not found, 2 otherwise)
 * after saying why on stderr. */
enum { VD_CLI_EITHER, VD_CLI_DIRECTORY, VD_CLI_REVISION };
int vd_cli_open_bundle(const char *cmd, const char *spec, int how,
                       const char *db, vd_bundle_t **out);

/* admin.c: print an admin response (or the same JSON read from the
 * database) readably for command CMD; returns the exit status. */
int vd_cli_print_admin(const char *cmd, const char *resp);
int vd_cli_fleet(int argc, char **argv);   /* fleet.c: fleet status */
int vd_cli_history_import(int argc, char **argv); /* fleet.c: history import */

/* fleet.c: `verdict history verify` on a PostgreSQL history DB, with up
 * to VD_CLI_MAX_ANCHORS --anchor NODE:SEQ:HASH; JSON output when json. */
#define VD_CLI_MAX_ANCHORS 64
int vd_cli_fleet_verify(const char *db, const char *const *anchors,
                        int nanchors, int json);

/* decide.c: send one request line to the daemon at socket (or, when
 * connect is not NULL, HOST:PORT) and put the response line in resp.
 * Returns 0, or 3 after saying on stderr why the daemon could not be
 * reached. */
int vd_cli_call(const char *socket, const char *connect, const char *line,
                size_t len, vd_buf_t *resp);

#endif
