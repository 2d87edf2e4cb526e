/*
 * verdict.c - the command-line client and the administrators' and
 * auditors' tool: main(), the usage text and the table of commands.
 *
 * Each command group lives in a file of its own (cmd_int.h), in the
 * manner of git's builtin/: decide.c (decide, ping, status), admin.c
 * (reload, activate, status --admin, and revisions and diff through the
 * daemon), revisions.c (revisions, diff, export, tag from the database
 * file; the --help and bundle helpers), eval.c, policy.c (test, check),
 * audit.c (history), replay.c, bench.c, reference.c, schema.c.  Every
 * command answers --help and -h with its usage on stdout, exit status 0.
 * Options may come before the command name; main() moves the name to the
 * front and hands the command its arguments.  Exit status: 0 success, 1 an
 * error response or a failed check, 2 usage, 3 the daemon could not be
 * reached.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/history.h"
#include "verdict/version.h"

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
        "  activate REV     make a stored revision live again (validated);\n"
        "                   a restart keeps it until the next reload\n"
        "  revisions        every activation ('*': in force) and revision\n"
        "  diff A [B]       unified diff, each a revision or a directory\n"
        "                   (B: active)\n"
        "  status --admin   status with the files in force per region\n"
        "  options: --admin-socket PATH (default var/verdictd-admin.sock),"
        " --who NAME\n"
        "  REV: a hash prefix (b60c, sha256:b60c), active, previous, @-N\n"
        "  (N activations ago) or a tag\n"
        "\n"
        "policy administration (offline):\n"
        "  eval KIND --region R [--at T] [--policies DIR | --revision REV]\n"
        "       [--explain] [--batch] [--compare DIR|REV] [FILE|-]\n"
        "                   decide a case in this process, as the daemon\n"
        "                   would, recording nothing (see verdict eval --help)\n"
        "  revisions --db PATH, diff A [B] --db PATH\n"
        "                   the same read from the database file, no daemon\n"
        "  export REV DIR   write a stored revision into a new directory\n"
        "  tag REV NAME [--who W]   name a revision (--db PATH)\n"
        "  test [DIR] [PATH...]  run the bundle's policy tests (default:"
        " policies);\n"
        "                   --run PATTERN, -v, --format text|json|junit,"
        " --coverage\n"
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
        "  reference [DIR]  the field reference of a bundle, as Markdown\n"
        "  schema [KIND] [--region R] [--policies DIR]\n"
        "                   JSON Schema of KIND's input, or the OpenAPI\n"
        "                   document of the HTTP API without KIND\n"
        "\n"
        "  --db-timeout MS  with --db postgresql://...: a round trip to the\n"
        "                   server without its answer after MS ms fails the\n"
        "                   command (default: wait as long as it takes)\n"
        "  --version        this program's version and its libraries'\n",
        f);
}

/* --db-timeout MS, before or after the command: taken out of ARGV (its
 * count returned) and set for every PostgreSQL round trip the command
 * makes (vd_history_set_db_timeout(), as verdictd's option); -1 after a
 * usage error, said on stderr. */
static int take_db_timeout(int argc, char **argv) {
  int i, j;
  for (i = j = 1; i < argc; i++) {
    char *end;
    long ms;
    if (strcmp(argv[i], "--db-timeout") != 0) {
      argv[j++] = argv[i];
      continue;
    }
    if (i + 1 >= argc) {
      fputs("verdict: --db-timeout: expected a number of milliseconds\n",
            stderr);
      return -1;
    }
    errno = 0;
    ms = strtol(argv[++i], &end, 10);
    if (errno || end == argv[i] || *end || ms < 1 || ms > 3600000) {
      fprintf(stderr, "verdict: --db-timeout: '%s' is not a number of "
                      "milliseconds from 1 to 3600000\n", argv[i]);
      return -1;
    }
    vd_history_set_db_timeout((int)ms);
  }
  argv[j] = NULL;
  return j;
}

/* `verdict --version`: the version, then a line per library. */
static int print_version(void) {
  vd_buf_t b = VD_BUF_INIT;
  vd_version_libs(&b);
  printf("verdict %s\n%s", vd_version(), b.data);
  vd_buf_release(&b);
  return fflush(stdout) == 0 ? 0 : 1;
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
    {"revisions", vd_cli_revs},
    {"diff", vd_cli_revs},
    {"test", vd_cli_policy},
    {"check", vd_cli_policy},
    {"history", vd_cli_history},
    {"replay", vd_cli_replay},
    {"fleet", vd_cli_fleet},
    {"reference", vd_cli_reference},
    {"schema", vd_cli_schema},
    {"eval", vd_cli_eval},
    {"export", vd_cli_revs},
    {"tag", vd_cli_revs},
    {NULL, NULL},
};

int main(int argc, char **argv) {
  const struct command *c;
  const char *cmd;
  int i;

  if ((argc = take_db_timeout(argc, argv)) < 0)
    return 2;
  /* Options may come before the command: move the command to argv[1]. */
  for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++)
    if (strcmp(argv[i], "--admin") != 0 && strcmp(argv[i], "--quiet") != 0 &&
        strcmp(argv[i], "--help") != 0 && strcmp(argv[i], "--version") != 0 &&
        i + 1 < argc)
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
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
    return print_version();
  for (c = commands; c->name; c++)
    if (strcmp(c->name, cmd) == 0)
      return c->run(argc - 1, argv + 1);
  fprintf(stderr, "verdict: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
