/*
 * verdict.c - the command-line client and the administrators' and
 * auditors' tool: main(), the usage text and the table of commands.
 *
 * Each command group lives in a file of its own (cmd_int.h), in the
 * manner of git's builtin/: decide.c (decide, ping, status), admin.c
 * (reload, activate, revisions, diff, status --admin), policy.c (test,
 * check), audit.c (history), replay.c, bench.c, reference.c.  Options
 * may come before the command name; main() moves the name to the front
 * and hands the command its arguments.  Exit status: 0 success, 1 an error response or
 * a failed check, 2 usage, 3 the daemon could not be reached.
 */
#include <stdio.h>
#include <string.h>

#include "cmd_int.h"

static void usage(FILE *f) {
  fputs("usage: verdict COMMAND [options]\n"
        "\n"
        "decisions (talk to verdictd):\n"
        "  decide KIND --region R [--at T] [--id ID] [FILE|-]\n"
        "                   decide the input object in FILE (or stdin)\n"
        "  ping             check the daemon answers\n"
        "  bench [options]  load generator: decisions/s and latency (see\n"
        "                   verdict bench --help)\n"
        "  status           the daemon's revision, uptime and counters\n"
        "  options: --socket PATH (default var/verdictd.sock),"
        " --connect HOST:PORT\n"
        "\n"
        "policy administration (talk to verdictd's admin socket):\n"
        "  reload           load, validate and activate the policy directory\n"
        "  activate REV     make a stored revision live again (validated)\n"
        "  revisions        revisions stored and every activation\n"
        "  diff REV1 [REV2] unified diff between revisions (REV2: active)\n"
        "  status --admin   status with the files in force per region\n"
        "  options: --admin-socket PATH (default var/verdictd-admin.sock),"
        " --who NAME\n"
        "\n"
        "policy administration (offline):\n"
        "  test [DIR]       run the bundle's policy tests (default: policies)\n"
        "  check [DIR]      load, check structure, run tests and luacheck\n"
        "                   (VERDICT_LUACHECK_DIR: where luacheck's modules"
        " are)\n"
        "\n"
        "audit (offline, reads the database):\n"
        "  history show ID | list [filters] | verify   (--db PATH)\n"
        "  replay [--since T] [--until T] [--region R] [--kind K]\n"
        "         [--against recorded|DIR] [--format text|json] [--threads N]\n"
        "                   decide recorded requests again; exit 3 if a\n"
        "                   recorded decision does not reproduce\n"
        "  fleet status --db CONNINFO   each node of a PostgreSQL history\n"
        "                   (--db postgresql://... works for history and\n"
        "                   replay too; docs/fleet.md)\n"
        "\n"
        "documentation (offline):\n"
        "  reference [DIR]  the field reference of a bundle, as Markdown\n",
        f);
}

/* The commands, by name. */
static const struct command {
  const char *name;
  int (*run)(int argc, char **argv);
} commands[] = {
    {"decide", vd_cli_decide},
    {"ping", vd_cli_ping},
    {"status", vd_cli_ping},
    {"bench", vd_cli_bench},
    {"reload", vd_cli_admin},
    {"activate", vd_cli_admin},
    {"revisions", vd_cli_admin},
    {"diff", vd_cli_admin},
    {"test", vd_cli_policy},
    {"check", vd_cli_policy},
    {"history", vd_cli_history},
    {"replay", vd_cli_replay},
    {"fleet", vd_cli_fleet},
    {"reference", vd_cli_reference},
    {NULL, NULL},
};

int main(int argc, char **argv) {
  const struct command *c;
  const char *cmd;
  int i;

  /* Options may come before the command: move the command to argv[1]. */
  for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++)
    if (strcmp(argv[i], "--admin") != 0 && strcmp(argv[i], "--quiet") != 0 &&
        strcmp(argv[i], "--help") != 0 && i + 1 < argc)
      i++;
  if (i > 1 && i < argc) {
    char *name = argv[i];
    memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof *argv);
    argv[1] = name;
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  cmd = argv[1];
  if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
      strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  for (c = commands; c->name; c++)
    if (strcmp(c->name, cmd) == 0)
      return c->run(argc - 1, argv + 1);
  fprintf(stderr, "verdict: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
