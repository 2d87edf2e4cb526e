/*
 * admin.c - the policy administrators' commands, over verdictd's admin
 * socket (the daemon's side is core/daemon/admin.c):
 *
 *   verdict reload               load, validate and activate the directory
 *   verdict activate REV         make a stored revision live again
 *   verdict revisions            revisions stored and every activation
 *   verdict diff REV1 [REV2]     unified diff between revisions
 *   verdict status --admin       status with the files in force
 *
 * Options: --admin-socket PATH (default var/verdictd-admin.sock), --who
 * NAME (recorded with the activation).  Each sends one request line
 * through vd_cli_call() (decide.c) and prints the response readably.
 * Owns nothing past one command; runs on the CLI's main thread.
 *
 * Exit status: 0 success, 1 an error response, 2 usage, 3 the daemon
 * could not be reached.
 */
#include <stdio.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

/* The admin operations: the op the request names, and how many revisions
 * it takes (at least, at most), with the request fields they fill. */
static const struct admin_op {
  const char *name;
  int min_revs, max_revs;
  const char *fields[2];
  const char *usage; /* --help */
} admin_ops[] = {
    {"reload", 0, 0, {NULL, NULL},
     "usage: verdict reload [--admin-socket PATH] [--who NAME]\n"
     "\n"
     "Load the policy directory, validate it as verdict check does, and make\n"
     "it live; a bundle that fails is refused and the old one keeps serving.\n"
     "Also takes the directory back after a restart kept a rollback.\n"},
    {"activate", 1, 1, {"revision", NULL},
     "usage: verdict activate REV [--admin-socket PATH] [--who NAME]\n"
     "\n"
     "Make a stored revision live again (validated first): a rollback.  REV\n"
     "is a hash prefix, active, previous, @-N or a tag.  verdictd keeps it\n"
     "across restarts until the next reload (or --policies-win).\n"},
    {"revisions", 0, 0, {NULL, NULL}, NULL},
    {"diff", 1, 2, {"from", "to"}, NULL},
    {"status", 0, 0, {NULL, NULL},
     "usage: verdict status [--admin] [--socket PATH | --admin-socket PATH]\n"
     "\n"
     "The daemon's revision, uptime and counters; --admin adds the files in\n"
     "force per region, over the admin socket.\n"},
    {NULL, 0, 0, {NULL, NULL}, NULL},
};

/* `verdict revisions`: one line per activation, newest first, the one in
 * force (the newest that succeeded) marked '*'; then the tags. */
static void print_revisions(lua_State *L) {
  lua_Integer i, n;
  int marked = 0;
  lua_getfield(L, -1, "activations");
  n = (lua_Integer)lua_rawlen(L, -1);
  printf("  %-29s %-16s %-4s %-71s %s\n", "AT", "TRIGGER", "OK", "REVISION",
         "WHO / ERROR");
  for (i = 1; i <= n; i++) {
    const char *who, *error;
    int ok, active;
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "at");
    lua_getfield(L, -2, "trigger");
    lua_getfield(L, -3, "ok");
    lua_getfield(L, -4, "revision");
    lua_getfield(L, -5, "who");
    lua_getfield(L, -6, "error");
    who = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    error = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    ok = lua_toboolean(L, -4);
    active = ok && !marked;
    marked |= active;
    printf("%c %-29s %-16s %-4s %-71s %s%s%.*s\n", active ? '*' : ' ',
           lua_tostring(L, -6), lua_tostring(L, -5), ok ? "yes" : "NO",
           lua_tostring(L, -3), who, *error ? " / " : "",
           (int)strcspn(error, "\n"), error);
    lua_pop(L, 7);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "tags") == LUA_TTABLE && lua_rawlen(L, -1) > 0) {
    n = (lua_Integer)lua_rawlen(L, -1);
    printf("\ntags:\n");
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_getfield(L, -1, "name");
      lua_getfield(L, -2, "revision");
      lua_getfield(L, -3, "who");
      lua_getfield(L, -4, "at");
      printf("  %-20s %-71s %s, %s\n", lua_tostring(L, -4),
             lua_tostring(L, -3),
             lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?",
             lua_tostring(L, -1));
      lua_pop(L, 5);
    }
  }
  lua_pop(L, 1);
}

/* Print an admin response readably; returns the exit status.  The JSON
 * is read into a Lua state from the one allocator (sandbox.h). */
int vd_cli_print_admin(const char *cmd, const char *resp) {
  vd_sandbox_t sb;
  lua_State *L;
  vd_buf_t err = VD_BUF_INIT;
  int rc = 0;
  if (vd_sandbox_init(&sb, &err) != 0) {
    printf("%s\n", resp);
    vd_buf_release(&err);
    return 0;
  }
  L = sb.L;
  if (vd_json_decode_protected(L, resp, strlen(resp), 0, &err) != 0) {
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
    print_revisions(L);
  } else if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "activate") == 0) {
    lua_getfield(L, -1, "revision");
    lua_getfield(L, -2, "unchanged");
    printf("%s %s\n", lua_toboolean(L, -1) ? "unchanged:" : "activated",
           lua_tostring(L, -2));
  } else {
    printf("%s\n", resp);
  }
done:
  vd_sandbox_release(&sb);
  vd_buf_release(&err);
  return rc;
}

int vd_cli_admin(int argc, char **argv) {
  const char *cmd = argv[0], *socket = VD_DEFAULT_ADMIN_SOCKET, *who = NULL;
  const char *revs[2] = {NULL, NULL};
  const struct admin_op *op;
  vd_buf_t line = VD_BUF_INIT, resp = VD_BUF_INIT;
  int i, nrevs = 0, rc;

  for (op = admin_ops; op->name && strcmp(op->name, cmd) != 0; op++)
    ;
  if (vd_cli_wants_help(argc, argv))
    return vd_cli_help(op->usage ? op->usage : "");
  if (!op->name) {
    fprintf(stderr, "verdict: %s is not an admin command\n", cmd);
    return 2;
  }
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--admin") == 0 && strcmp(cmd, "status") == 0)
      continue;
    if (strcmp(a, "--admin-socket") == 0 || strcmp(a, "--who") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "verdict %s: %s needs a value\n", cmd, a);
        return 2;
      }
      if (strcmp(a, "--who") == 0)
        who = argv[++i];
      else
        socket = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "verdict %s: unknown option %s\n", cmd, a);
      return 2;
    } else if (nrevs < op->max_revs) {
      revs[nrevs++] = a;
    } else {
      fprintf(stderr, "verdict %s: unexpected argument %s\n", cmd, a);
      return 2;
    }
  }
  if (nrevs < op->min_revs) {
    fprintf(stderr, "verdict %s: which revision? (see verdict revisions)\n",
            cmd);
    return 2;
  }

  vd_buf_addf(&line, "{\"op\":\"%s\"", op->name);
  for (i = 0; i < nrevs; i++) {
    vd_buf_addf(&line, ",\"%s\":", op->fields[i]);
    vd_buf_add_json_str(&line, revs[i], strlen(revs[i]));
  }
  if (who) {
    vd_buf_adds(&line, ",\"who\":");
    vd_buf_add_json_str(&line, who, strlen(who));
  }
  vd_buf_addc(&line, '}');
  rc = vd_cli_call(socket, NULL, line.data, line.len, &resp);
  if (rc == 0)
    rc = vd_cli_print_admin(cmd, resp.data);
  vd_buf_release(&line);
  vd_buf_release(&resp);
  return rc;
}
