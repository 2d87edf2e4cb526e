/*
 * decide.c - the commands that ask verdictd's decision socket:
 *
 *   verdict decide KIND --region R [--at T] [--id ID] [FILE|-]
 *   verdict ping | status
 *
 * and vd_cli_call(), the one request-response exchange every command that
 * talks to the daemon uses (admin.c too).  Connects with --socket PATH
 * (default var/verdictd.sock) or --connect HOST:PORT, sends one line,
 * prints the response line.  Owns nothing past one command; runs on the
 * CLI's main thread.
 *
 * Exit status: 0 success, 1 an error response, 2 usage or an unreadable
 * input, 3 the daemon could not be reached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/client.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

int vd_cli_call(const char *socket, const char *connect, const char *line,
                size_t len, vd_buf_t *resp) {
  vd_client_t c;
  vd_buf_t err = VD_BUF_INIT;
  int rc;
  if (vd_client_connect(&c, socket, connect, &err) != 0) {
    fprintf(stderr, "verdict: %s\n", err.data);
    vd_buf_release(&err);
    return 3;
  }
  rc = vd_client_call(&c, line, len, resp, &err);
  vd_client_close(&c);
  if (rc)
    fprintf(stderr, "verdict: %s\n", err.data);
  vd_buf_release(&err);
  return rc ? 3 : 0;
}

/* Send line, print the response; 1 when it is an error response. */
static int call_and_print(const char *socket, const char *connect,
                          const char *line, size_t len) {
  vd_buf_t resp = VD_BUF_INIT;
  int rc = vd_cli_call(socket, connect, line, len, &resp);
  if (rc == 0) {
    printf("%s\n", resp.data);
    rc = strstr(resp.data, "\"error\":{") ? 1 : 0;
  }
  vd_buf_release(&resp);
  return rc;
}

/* Parse the options of the decision socket's commands: --socket,
 * --connect, and for decide --region, --at, --id.  Positional arguments
 * go to pos (at most npos).  Returns 0, or 2 after a usage message. */
typedef struct decide_opts {
  const char *socket, *connect, *region, *at, *id;
  const char *pos[2];
  int npos;
} decide_opts_t;

static int parse(int argc, char **argv, int decide, int npos,
                 decide_opts_t *o) {
  int i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--socket") == 0)
      slot = &o->socket;
    else if (strcmp(a, "--connect") == 0)
      slot = &o->connect;
    else if (decide && strcmp(a, "--region") == 0)
      slot = &o->region;
    else if (decide && strcmp(a, "--at") == 0)
      slot = &o->at;
    else if (decide && strcmp(a, "--id") == 0)
      slot = &o->id;
    if (slot) {
      if (i + 1 >= argc) {
        fprintf(stderr, "verdict %s: %s needs a value\n", argv[0], a);
        return 2;
      }
      *slot = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "verdict %s: unknown option %s\n", argv[0], a);
      return 2;
    } else if (o->npos < npos) {
      o->pos[o->npos++] = a;
    } else {
      fprintf(stderr, "verdict %s: unexpected argument %s\n", argv[0], a);
      return 2;
    }
  }
  return 0;
}

static int read_all(const char *path, vd_buf_t *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  char chunk[65536];
  size_t n;
  if (!f) {
    perror(path);
    return -1;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    vd_buf_add(out, chunk, n);
  if (f != stdin)
    fclose(f);
  return 0;
}

/* Re-encode JSON text (perhaps spread over lines) as one line, through a
 * Lua state from the one allocator (sandbox.h; the JSON markers are set
 * up in every such state). */
static int one_line(const char *text, size_t len, vd_buf_t *out,
                    vd_buf_t *err) {
  vd_sandbox_t sb;
  int rc;
  if (vd_sandbox_init(&sb, err) != 0)
    return -1;
  rc = vd_json_decode_protected(sb.L, text, len, 0, err);
  if (rc == 0) {
    if (vd_json_marker(sb.L, -1) != 2) {
      vd_buf_adds(err, "the input must be a JSON object");
      rc = -1;
    } else {
      rc = vd_json_encode(sb.L, -1, out, "input", err);
    }
  }
  vd_sandbox_release(&sb);
  return rc;
}

static const char decide_usage[] =
    "usage: verdict decide KIND --region R [--at T] [--id ID] [FILE|-]\n"
    "                      [--socket PATH | --connect HOST:PORT]\n"
    "\n"
    "Ask verdictd to decide the input object in FILE (or stdin).  The\n"
    "decision is recorded in the daemon's history for good: to try a case,\n"
    "use verdict eval, which records nothing.\n";

static const char ping_usage[] =
    "usage: verdict ping | status [--socket PATH | --connect HOST:PORT]\n"
    "       verdict status --admin [--admin-socket PATH]\n"
    "\n"
    "ping: check the daemon answers.  status: its revision, uptime and\n"
    "counters (--admin: with the files in force per region).\n";

int vd_cli_decide(int argc, char **argv) {
  decide_opts_t o = {VD_DEFAULT_SOCKET, NULL, NULL, NULL, NULL, {NULL}, 0};
  const char *kind, *file;
  vd_buf_t line = VD_BUF_INIT, text = VD_BUF_INIT, err = VD_BUF_INIT;
  int rc;
  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(decide_usage);
  if ((rc = parse(argc, argv, 1, 2, &o)) != 0)
    return rc;
  kind = o.pos[0];
  file = o.pos[1];
  if (!kind || !o.region) {
    fprintf(stderr, "verdict decide: KIND and --region are required\n");
    return 2;
  }
  if (read_all(file ? file : "-", &text) != 0)
    return 2;
  vd_buf_adds(&line, "{\"id\":");
  if (o.id)
    vd_buf_add_json_str(&line, o.id, strlen(o.id));
  else
    vd_buf_adds(&line, "\"cli\"");
  vd_buf_adds(&line, ",\"kind\":");
  vd_buf_add_json_str(&line, kind, strlen(kind));
  vd_buf_adds(&line, ",\"region\":");
  vd_buf_add_json_str(&line, o.region, strlen(o.region));
  if (o.at) {
    vd_buf_adds(&line, ",\"at\":");
    vd_buf_add_json_str(&line, o.at, strlen(o.at));
  }
  vd_buf_adds(&line, ",\"input\":");
  if (one_line(text.data ? text.data : "", text.len, &line, &err) != 0) {
    fprintf(stderr, "verdict decide: %s: %s\n", file ? file : "stdin",
            err.data ? err.data : "cannot read the input");
    rc = 2;
  } else {
    vd_buf_addc(&line, '}');
    rc = call_and_print(o.socket, o.connect, line.data, line.len);
  }
  vd_buf_release(&line);
  vd_buf_release(&text);
  vd_buf_release(&err);
  return rc;
}

/* ping, and status (status --admin asks the admin socket: admin.c). */
int vd_cli_ping(int argc, char **argv) {
  decide_opts_t o = {VD_DEFAULT_SOCKET, NULL, NULL, NULL, NULL, {NULL}, 0};
  vd_buf_t line = VD_BUF_INIT;
  int i, rc;
  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(ping_usage);
  for (i = 1; strcmp(argv[0], "status") == 0 && i < argc; i++)
    if (strcmp(argv[i], "--admin") == 0)
      return vd_cli_admin(argc, argv);
  if ((rc = parse(argc, argv, 0, 0, &o)) != 0)
    return rc;
  vd_buf_addf(&line, "{\"op\":\"%s\"}", argv[0]);
  rc = call_and_print(o.socket, o.connect, line.data, line.len);
  vd_buf_release(&line);
  return rc;
}
