/*
 * verdictd.c - command line of the decision daemon.
 * Parses options into vd_daemon_opts_t and calls vd_daemon_run().
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verdict/daemon.h"

static void usage(FILE *f) {
  fputs(
      "usage: verdictd [options]\n"
      "  --policies DIR       policy bundle directory (default: policies)\n"
      "  --socket PATH        decision socket, mode 0660 (default: "
      VD_DEFAULT_SOCKET ")\n"
      "  --listen HOST:PORT   also serve decisions over TCP (default: off)\n"
      "  --admin-socket PATH  admin socket, mode 0600 (default: off)\n"
      "  --watch              reload when the policy directory changes\n"
      "  --db PATH            history database (default: " VD_DEFAULT_DB ")\n"
      "                       or a PostgreSQL connection string\n"
      "                       (postgresql://..., docs/fleet.md)\n"
      "  --node-id NAME       this node's name in a PostgreSQL history\n"
      "                       (required with one; each node keeps its chain)\n"
      "  --log-mode MODE      durable (default), async or off\n"
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
      "                       that are not valid); a reload is still validated\n",
      f);
}

static int parse_size(const char *opt, const char *s, size_t min, size_t *out) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*s == '-' || *end || v < min) {
    fprintf(stderr, "verdictd: %s %s: expected a whole number >= %zu\n", opt,
            s, min);
    return -1;
  }
  *out = (size_t)v;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"policies", required_argument, 0, 'p'},
      {"socket", required_argument, 0, 's'},
      {"listen", required_argument, 0, 'l'},
      {"admin-socket", required_argument, 0, 'a'},
      {"db", required_argument, 0, 'd'},
      {"node-id", required_argument, 0, 'N'},
      {"log-mode", required_argument, 0, 'm'},
      {"workers", required_argument, 0, 'w'},
      {"max-line", required_argument, 0, 'L'},
      {"max-pending", required_argument, 0, 'P'},
      {"max-pending-total", required_argument, 0, 'G'},
      {"instr-budget", required_argument, 0, 'I'},
      {"mem-cap", required_argument, 0, 'M'},
      {"validate-timeout", required_argument, 0, 'T'},
      {"decide-timeout", required_argument, 0, 'D'},
      {"watch", no_argument, 0, 'W'},
      {"always-count", no_argument, 0, 'C'},
      {"unchecked", no_argument, 0, 'U'},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  static const vd_limits_t limits = VD_LIMITS_DEFAULT;
  vd_daemon_opts_t o;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  size_t v;
  int c;

  memset(&o, 0, sizeof o);
  o.policies = "policies";
  o.socket = VD_DEFAULT_SOCKET;
  o.db = VD_DEFAULT_DB;
  o.log_mode = VD_LOG_DURABLE;
  o.workers = ncpu > 0 ? (unsigned)ncpu : 1;
  o.max_line = 1u << 20;
  o.max_pending_out = VD_MAX_PENDING_OUT;
  o.max_pending_total = VD_MAX_PENDING_TOTAL;
  o.validate_timeout_s = VD_VALIDATE_TIMEOUT_S;
  o.decide_timeout_ms = VD_DECIDE_TIMEOUT_MS;
  o.limits = limits;

  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'p': o.policies = optarg; break;
    case 's': o.socket = optarg; break;
    case 'l': o.listen = optarg; break;
    case 'a': o.admin_socket = optarg; break;
    case 'd': o.db = optarg; break;
    case 'N': o.node_id = optarg; break;
    case 'm':
      if (vd_history_mode_parse(optarg, &o.log_mode) != 0) {
        fprintf(stderr, "verdictd: --log-mode %s: expected durable, async or "
                        "off\n", optarg);
        return 2;
      }
      break;
    case 'w':
      if (parse_size("--workers", optarg, 1, &v) || v > 256) {
        fprintf(stderr, "verdictd: --workers takes 1 to 256\n");
        return 2;
      }
      o.workers = (unsigned)v;
      break;
    case 'L':
      if (parse_size("--max-line", optarg, 64, &v))
        return 2;
      o.max_line = v;
      break;
    case 'P':
      if (parse_size("--max-pending", optarg, 65536, &v))
        return 2;
      o.max_pending_out = v;
      break;
    case 'G':
      if (parse_size("--max-pending-total", optarg, 1u << 20, &v))
        return 2;
      o.max_pending_total = v;
      break;
    case 'I':
      if (parse_size("--instr-budget", optarg, 1000, &v))
        return 2;
      o.limits.instr_budget = v;
      break;
    case 'M':
      if (parse_size("--mem-cap", optarg, 65536, &v))
        return 2;
      o.limits.mem_cap = v;
      break;
    case 'T':
      if (parse_size("--validate-timeout", optarg, 1, &v) || v > 86400) {
        fprintf(stderr, "verdictd: --validate-timeout takes 1 to 86400 "
                        "seconds\n");
        return 2;
      }
      o.validate_timeout_s = (unsigned)v;
      break;
    case 'D':
      if (parse_size("--decide-timeout", optarg, 0, &v) || v > 86400000) {
        fprintf(stderr, "verdictd: --decide-timeout takes 0 to 86400000 "
                        "ms\n");
        return 2;
      }
      o.decide_timeout_ms = (unsigned)v;
      break;
    case 'W': o.watch = 1; break;
    case 'C': o.always_count = 1; break;
    case 'U': o.unchecked = 1; break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (vd_history_is_postgres(o.db) && !vd_history_node_id_ok(o.node_id)) {
    fprintf(stderr, "verdictd: %s\n",
            o.node_id ? "--node-id: 1 to 63 letters, digits, '.', '_' or '-'"
                      : "--db names a PostgreSQL history: give this node a "
                        "name with --node-id NAME");
    return 2;
  }
  if (o.node_id && !vd_history_is_postgres(o.db)) {
    fprintf(stderr, "verdictd: --node-id is for a PostgreSQL history "
                    "(--db postgresql://...)\n");
    return 2;
  }
  if (o.max_pending_out < o.max_line * 2)
    o.max_pending_out = o.max_line * 2; /* one whole line's answer and more */
  if (optind < argc) {
    fprintf(stderr, "verdictd: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return vd_daemon_run(&o);
}
