/*
 * verdict.c - the command-line client and the administrators' and
 * auditors' tool.
 *
 *   verdict decide KIND --region R [--at T] [--id ID] [FILE|-]
 *   verdict ping | status
 *   verdict test [DIR] | check [DIR]
 *   verdict history ... (see audit.c)
 *
 * Talks to the daemon over --socket PATH (default var/verdictd.sock) or
 * --connect HOST:PORT.  Exit status: 0 success, 1 an error response or a
 * failed check, 2 usage, 3 the daemon could not be reached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "verdict/client.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/policytest.h"
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
        "\n"
        "audit (offline, reads the database):\n"
        "  history show ID | list [filters] | verify   (--db PATH)\n"
        "  replay [--since T] [--until T] [--region R] [--kind K]\n"
        "         [--against recorded|DIR] [--format text|json] [--threads N]\n"
        "                   decide recorded requests again; exit 3 if a\n"
        "                   recorded decision does not reproduce\n",
        f);
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

/* Re-encode JSON text (perhaps spread over lines) as one line. */
static int one_line(const char *text, size_t len, vd_buf_t *out,
                    vd_buf_t *err) {
  lua_State *L = luaL_newstate();
  int rc;
  if (!L)
    return -1;
  vd_json_setup(L);
  rc = vd_json_decode_protected(L, text, len, 0, err);
  if (rc == 0) {
    if (vd_json_marker(L, -1) != 2) {
      vd_buf_adds(err, "the input must be a JSON object");
      rc = -1;
    } else {
      rc = vd_json_encode(L, -1, out, "input", err);
    }
  }
  lua_close(L);
  return rc;
}

typedef struct conn_opts {
  const char *socket;
  const char *connect;
} conn_opts_t;

/* Print an admin response readably; returns the exit status. */
static int print_admin(const char *cmd, const char *resp) {
  lua_State *L = luaL_newstate();
  vd_buf_t err = VD_BUF_INIT;
  int rc = 0;
  if (!L || vd_json_decode_protected(L, resp, strlen(resp), 0, &err) != 0) {
    printf("%s\n", resp);
    goto done;
  }
  if (lua_getfield(L, -1, "error") == LUA_TTABLE) {
    lua_getfield(L, -1, "code");
    lua_getfield(L, -2, "message");
    fprintf(stderr, "verdict %s: %s: %s\n", cmd, lua_tostring(L, -2),
            lua_tostring(L, -1));
    rc = 1;
    goto done;
  }
  lua_pop(L, 1);
  if (strcmp(cmd, "diff") == 0) {
    lua_getfield(L, -1, "diff");
    fputs(lua_tostring(L, -1) ? lua_tostring(L, -1) : "", stdout);
  } else if (strcmp(cmd, "revisions") == 0) {
    lua_Integer i, n;
    lua_getfield(L, -1, "activations");
    n = (lua_Integer)lua_rawlen(L, -1);
    printf("%-29s %-10s %-4s %-71s %s\n", "AT", "TRIGGER", "OK", "REVISION",
           "WHO / ERROR");
    for (i = 1; i <= n; i++) {
      const char *who, *error;
      lua_rawgeti(L, -1, i);
      lua_getfield(L, -1, "at");
      lua_getfield(L, -2, "trigger");
      lua_getfield(L, -3, "ok");
      lua_getfield(L, -4, "revision");
      lua_getfield(L, -5, "who");
      lua_getfield(L, -6, "error");
      who = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      error = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      printf("%-29s %-10s %-4s %-71s %s%s%.*s\n", lua_tostring(L, -6),
             lua_tostring(L, -5), lua_toboolean(L, -4) ? "yes" : "NO",
             lua_tostring(L, -3), who, *error ? " / " : "",
             (int)strcspn(error, "\n"), error);
      lua_pop(L, 7);
    }
  } else if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "activate") == 0) {
    lua_getfield(L, -1, "revision");
    lua_getfield(L, -2, "unchanged");
    printf("%s %s\n", lua_toboolean(L, -1) ? "unchanged:" : "activated",
           lua_tostring(L, -2));
  } else {
    printf("%s\n", resp);
  }
done:
  if (L)
    lua_close(L);
  vd_buf_release(&err);
  return rc;
}

static int call(const conn_opts_t *co, const char *line, size_t len,
                const char *admin_cmd) {
  vd_client_t c;
  vd_buf_t resp = VD_BUF_INIT, err = VD_BUF_INIT;
  int rc;
  if (vd_client_connect(&c, co->socket, co->connect, &err) != 0) {
    fprintf(stderr, "verdict: %s\n", err.data);
    vd_buf_release(&err);
    return 3;
  }
  rc = vd_client_call(&c, line, len, &resp, &err);
  vd_client_close(&c);
  if (rc) {
    fprintf(stderr, "verdict: %s\n", err.data);
    rc = 3;
  } else if (admin_cmd) {
    rc = print_admin(admin_cmd, resp.data);
  } else {
    printf("%s\n", resp.data);
    rc = strstr(resp.data, "\"error\":{") ? 1 : 0;
  }
  vd_buf_release(&resp);
  vd_buf_release(&err);
  return rc;
}

/* verdict test / check: load the bundle, validate, print the report. */
static int policy_cmd(const char *cmd, const char *dir, int quiet) {
  vd_bundle_t *b;
  vd_policy_report_t r;
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  int rc;
  if (vd_bundle_load(dir, &b, &err)) {
    printf("%s\n%s", err.data, cmd[0] == 't' ? "0 passed, 1 failed\n" : "");
    vd_buf_release(&err);
    return 1;
  }
  vd_policy_report_init(&r);
  if (cmd[0] == 't')
    rc = vd_policy_test(b, NULL, &r);
  else
    rc = vd_policy_check(b, NULL, getenv("VERDICT_LUACHECK_DIR"), &r);
  vd_bundle_unref(b);
  vd_policy_report_format(&r, quiet ? VD_REPORT_QUIET : 0, &out);
  if (cmd[0] == 'c' && r.problems)
    vd_buf_addf(&out, "check: %u problem%s in %s\n", r.problems,
                r.problems == 1 ? "" : "s", dir);
  else if (cmd[0] == 'c')
    vd_buf_addf(&out, "check: %s is ready to go live\n", dir);
  fwrite(out.data, 1, out.len, stdout);
  vd_policy_report_release(&r);
  vd_buf_release(&out);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  conn_opts_t co = {VD_DEFAULT_SOCKET, NULL};
  const char *cmd, *kind = NULL, *region = NULL, *at = NULL, *id = NULL;
  const char *file = NULL, *file2 = NULL, *who = NULL;
  const char *admin_socket = VD_DEFAULT_ADMIN_SOCKET;
  int admin_status = 0;
  vd_buf_t line = VD_BUF_INIT, text = VD_BUF_INIT, err = VD_BUF_INIT;
  int i, rc;

  /* Options may come before the command: move the command to argv[1]. */
  for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++)
    if (strcmp(argv[i], "--admin") != 0 && strcmp(argv[i], "--quiet") != 0 &&
        strcmp(argv[i], "--help") != 0 && i + 1 < argc)
      i++;
  if (i > 1 && i < argc) {
    char *c = argv[i];
    memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof *argv);
    argv[1] = c;
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
  if (strcmp(cmd, "history") == 0)
    return vd_cli_history(argc - 1, argv + 1);
  if (strcmp(cmd, "replay") == 0)
    return vd_cli_replay(argc - 1, argv + 1);
  if (strcmp(cmd, "bench") == 0)
    return vd_cli_bench(argc - 1, argv + 1);
  if (strcmp(cmd, "test") == 0 || strcmp(cmd, "check") == 0) {
    const char *dir = "policies";
    int quiet = 0;
    for (i = 2; i < argc; i++) {
      if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
        quiet = 1;
      else if (argv[i][0] == '-') {
        fprintf(stderr, "verdict %s: unknown option %s\n", cmd, argv[i]);
        return 2;
      } else
        dir = argv[i];
    }
    return policy_cmd(cmd, dir, quiet);
  }

  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--socket") == 0)
      slot = &co.socket;
    else if (strcmp(a, "--connect") == 0)
      slot = &co.connect;
    else if (strcmp(a, "--region") == 0)
      slot = &region;
    else if (strcmp(a, "--at") == 0)
      slot = &at;
    else if (strcmp(a, "--id") == 0)
      slot = &id;
    else if (strcmp(a, "--admin-socket") == 0)
      slot = &admin_socket;
    else if (strcmp(a, "--who") == 0)
      slot = &who;
    if (strcmp(a, "--admin") == 0) {
      admin_status = 1;
      continue;
    }
    if (slot) {
      if (i + 1 >= argc) {
        fprintf(stderr, "verdict: %s needs a value\n", a);
        return 2;
      }
      *slot = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "verdict: unknown option %s\n", a);
      return 2;
    } else if (strcmp(cmd, "decide") == 0 && !kind) {
      kind = a;
    } else if (!file) {
      file = a;
    } else if (!file2) {
      file2 = a;
    } else {
      fprintf(stderr, "verdict: unexpected argument %s\n", a);
      return 2;
    }
  }

  if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "activate") == 0 ||
      strcmp(cmd, "revisions") == 0 || strcmp(cmd, "diff") == 0 ||
      (strcmp(cmd, "status") == 0 && admin_status)) {
    conn_opts_t ao = {admin_socket, NULL};
    if ((cmd[0] == 'a' || cmd[0] == 'd') && !file) {
      fprintf(stderr, "verdict %s: which revision? (see verdict revisions)\n",
              cmd);
      return 2;
    }
    vd_buf_addf(&line, "{\"op\":\"%s\"", cmd);
    if (cmd[0] == 'a') {
      vd_buf_adds(&line, ",\"revision\":");
      vd_buf_add_json_str(&line, file, strlen(file));
    } else if (cmd[0] == 'd') {
      vd_buf_adds(&line, ",\"from\":");
      vd_buf_add_json_str(&line, file, strlen(file));
      if (file2) {
        vd_buf_adds(&line, ",\"to\":");
        vd_buf_add_json_str(&line, file2, strlen(file2));
      }
    }
    if (who) {
      vd_buf_adds(&line, ",\"who\":");
      vd_buf_add_json_str(&line, who, strlen(who));
    }
    vd_buf_addc(&line, '}');
    rc = call(&ao, line.data, line.len, cmd);
  } else if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "status") == 0) {
    vd_buf_addf(&line, "{\"op\":\"%s\"}", cmd);
    rc = call(&co, line.data, line.len, NULL);
  } else if (strcmp(cmd, "decide") == 0) {
    if (!kind || !region) {
      fprintf(stderr, "verdict decide: KIND and --region are required\n");
      return 2;
    }
    if (read_all(file ? file : "-", &text) != 0)
      return 2;
    vd_buf_adds(&line, "{\"id\":");
    if (id)
      vd_buf_add_json_str(&line, id, strlen(id));
    else
      vd_buf_adds(&line, "\"cli\"");
    vd_buf_adds(&line, ",\"kind\":");
    vd_buf_add_json_str(&line, kind, strlen(kind));
    vd_buf_adds(&line, ",\"region\":");
    vd_buf_add_json_str(&line, region, strlen(region));
    if (at) {
      vd_buf_adds(&line, ",\"at\":");
      vd_buf_add_json_str(&line, at, strlen(at));
    }
    vd_buf_adds(&line, ",\"input\":");
    if (one_line(text.data ? text.data : "", text.len, &line, &err) != 0) {
      fprintf(stderr, "verdict decide: %s: %s\n", file ? file : "stdin",
              err.data ? err.data : "cannot read the input");
      rc = 2;
    } else {
      vd_buf_addc(&line, '}');
      rc = call(&co, line.data, line.len, NULL);
    }
  } else {
    fprintf(stderr, "verdict: unknown command '%s'\n", cmd);
    usage(stderr);
    rc = 2;
  }
  vd_buf_release(&line);
  vd_buf_release(&text);
  vd_buf_release(&err);
  return rc;
}
