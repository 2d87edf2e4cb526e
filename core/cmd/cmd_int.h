/*
 * cmd_int.h - the verdict command's subcommands that live in files of their
 * own, for core/cmd/verdict.c to dispatch to.  Each parses its own options
 * (argv[0] is the subcommand's name) and returns the process exit status.
 */
#ifndef VERDICT_CLI_INT_H
#define VERDICT_CLI_INT_H

#include "verdict/daemon.h" /* the default socket and database paths */

int vd_cli_history(int argc, char **argv); /* audit.c */
int vd_cli_replay(int argc, char **argv);  /* replay.c */
int vd_cli_bench(int argc, char **argv);   /* bench.c */
int vd_cli_reference(int argc, char **argv); /* reference.c */

#endif
