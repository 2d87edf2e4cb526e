/*
 * fleet.c - the commands for a fleet's PostgreSQL history
 * (docs/fleet.md): `verdict fleet status`, and what `verdict history
 * verify` prints when its --db is a connection string (one anchor per
 * node and the fleet anchor over their heads).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/history.h"
#include "verdict/timefmt.h"

int vd_cli_fleet_verify(const char *db, const char *const *anchors,
                        int nanchors, int json) {
  vd_history_node_anchor_t a[VD_CLI_MAX_ANCHORS];
  vd_history_node_head_t *heads = NULL;
  vd_verify_report_t rep;
  vd_buf_t b = VD_BUF_INIT;
  char fleet[65];
  size_t n = 0, i;
  int k, rc;
  for (k = 0; k < nanchors; k++)
    if (vd_history_node_anchor_parse(anchors[k], &a[k]) != 0) {
      fprintf(stderr, "verdict history verify: --anchor: '%s' is not "
                      "NODE:SEQ:HASH (a node's name, a record number and "
                      "its 64 hex digits, as verify prints them)\n",
              anchors[k]);
      return 2;
    }
  rc = vd_history_verify_fleet(db, a, (size_t)nanchors, &rep, &heads, &n,
                               fleet);
  if (rc && rep.problem == VD_VERIFY_OK) {
    fprintf(stderr, "verdict history verify: %s\n", rep.message);
    free(heads);
    return 2;
  }
  if (json) {
    vd_buf_addf(&b, "{\"ok\":%s,\"records\":%" PRId64 ",\"erased\":%" PRId64
                    ",\"revisions\":%" PRId64 ",\"nodes\":[",
                rc ? "false" : "true", rep.records, rep.erased, rep.revisions);
    for (i = 0; i < n; i++)
      vd_buf_addf(&b, "%s{\"node\":\"%s\",\"seq\":%" PRId64 ",\"head\":\"%s\","
                      "\"activations\":%" PRId64 ",\"start\":%" PRId64
                      ",\"anchor\":\"%s:%" PRId64 ":%s\"}", i ? "," : "",
                  heads[i].node, heads[i].seq, heads[i].hash,
                  heads[i].activations, heads[i].start, heads[i].node,
                  heads[i].seq, heads[i].hash);
    vd_buf_adds(&b, "]");
    if (!rc)
      vd_buf_addf(&b, ",\"fleet_anchor\":\"%s\"", fleet);
    if (rc)
      vd_buf_addf(&b, ",\"seq\":%" PRId64, rep.seq);
    vd_buf_adds(&b, ",\"message\":");
    vd_buf_add_json_str(&b, rep.message, strlen(rep.message));
    vd_buf_adds(&b, "}\n");
  } else if (rc == 0) {
    vd_buf_addf(&b, "ok: %s\n", rep.message);
    for (k = 0; k < nanchors; k++)
      vd_buf_addf(&b, "anchor %s:%" PRId64 " holds\n", a[k].node, a[k].seq);
    for (i = 0; i < n; i++) {
      vd_buf_addf(&b, "anchor: %s:%" PRId64 ":%s (%" PRId64 " activations",
                  heads[i].node, heads[i].seq, heads[i].hash,
                  heads[i].activations);
      if (heads[i].start)
        vd_buf_addf(&b, "; rows 1..%" PRId64 " dropped, the rest continue "
                        "from anchor %s:%" PRId64, heads[i].start,
                    heads[i].node, heads[i].start);
      vd_buf_adds(&b, ")\n");
    }
    vd_buf_addf(&b, "fleet anchor: %s (keep these outside the database; "
                    "verify --anchor NODE:SEQ:HASH later)\n", fleet);
  } else {
    vd_buf_addf(&b, "FAILED: %s\n", rep.message);
    vd_buf_addf(&b, "the %" PRId64 " records before it verify\n",
                rep.records);
  }
  fwrite(b.data, 1, b.len, stdout);
  vd_buf_release(&b);
  free(heads);
  return rc ? 1 : 0;
}

static const char import_usage[] =
    "usage: verdict history import --from FILE.db --db CONNINFO "
    "--node-id NAME\n"
    "\n"
    "Move a single node's SQLite history FILE.db (it must verify) into the\n"
    "fleet's PostgreSQL history CONNINFO as node NAME's chain, which must\n"
    "not exist yet there: every revision, every activation (times and\n"
    "causes kept), then every decision in order.\n"
    "Prints the file's verified head (its last anchor) and what was moved.\n"
    "Exit status: 0 done; 1 refused or failed; 2 usage.\n";

int vd_cli_history_import(int argc, char **argv) {
  const char *from = NULL, *db = NULL, *node = NULL;
  vd_history_import_t got;
  char *msg = NULL;
  int i, rc;
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(import_usage, stdout);
      return 0;
    }
    if (i + 1 < argc && strcmp(argv[i], "--from") == 0)
      from = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--db") == 0)
      db = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--node-id") == 0)
      node = argv[++i];
    else {
      fprintf(stderr, "verdict history import: unexpected argument '%s'\n%s",
              argv[i], import_usage);
      return 2;
    }
  }
  if (!from || !db || !node) {
    fprintf(stderr, "verdict history import: --from, --db and --node-id are "
                    "all needed\n%s", import_usage);
    return 2;
  }
  if (!vd_history_node_id_ok(node)) {
    fprintf(stderr, "verdict history import: --node-id: 1 to 63 letters, "
                    "digits, '.', '_' or '-'\n");
    return 2;
  }
  rc = vd_history_import(from, db, node, &got, &msg);
  if (got.source_head[0])
    printf("%s verified: head %s\n", from, got.source_head);
  printf("imported %" PRId64 " decisions and %" PRId64 " revisions as node "
         "%s, with its %" PRId64 " activations\n", got.records, got.revisions,
         node, got.activations);
  if (rc)
    fprintf(stderr, "verdict history import: %s\n", msg ? msg : "failed");
  free(msg);
  return rc ? 1 : 0;
}

static const char fleet_usage[] =
    "usage: verdict fleet status --db CONNINFO [--format table|json]\n"
    "\n"
    "Each node of a fleet sharing the PostgreSQL history CONNINFO (a libpq\n"
    "connection string, postgresql://...): the revision it runs, when it\n"
    "switched to it, its last failed activation, its last sign of life,\n"
    "the length of its chain and the verdict version it runs\n"
    "(docs/fleet.md).\n";

/* KEY in the object at P, which ends before END (NULL: the last one). */
static const char *key_in(const char *p, const char *end, const char *key) {
  const char *q = strstr(p, key);
  return q && (!end || q < end) ? q : NULL;
}

/* The status array vd_history_fleet_status() wrote, as a table: one
 * object per node, flat (strings, numbers, null), each value found by its
 * key.  A value holding an escaped quote is cut there in the table (the
 * JSON format has it whole). */
static void print_status(const char *json) {
  const char *p = json;
  printf("%-16s %-20s %-29s %-29s %10s  %-12s %s\n", "NODE", "REVISION",
         "ACTIVATED", "HEARTBEAT", "DECISIONS", "VERDICT", "LAST ERROR");
  while ((p = strstr(p, "{\"node\":"))) {
    char node[64] = "", rev[80] = "", err[200] = "", act[32] = "-",
         hb[32] = "-", dec[24] = "0", ver[64] = "";
    long long v;
    const char *q, *end = strstr(p + 1, "{\"node\":");
    sscanf(p, "{\"node\":\"%63[^\"]\"", node);
    if ((q = key_in(p, end, "\"revision\":\"")))
      sscanf(q, "\"revision\":\"%79[^\"]\"", rev);
    if ((q = key_in(p, end, "\"activated_ms\":")) && sscanf(q, "\"activated_ms\":%lld", &v) == 1)
      vd_time_format(v, VD_DEFAULT_OFFSET_MIN, act);
    if ((q = key_in(p, end, "\"last_error\":\"")))
      sscanf(q, "\"last_error\":\"%199[^\"]\"", err);
    if ((q = key_in(p, end, "\"heartbeat_ms\":")) && sscanf(q, "\"heartbeat_ms\":%lld", &v) == 1)
      vd_time_format(v, VD_DEFAULT_OFFSET_MIN, hb);
    if ((q = key_in(p, end, "\"decisions\":")))
      sscanf(q, "\"decisions\":%23[0-9]", dec);
    if ((q = key_in(p, end, "\"verdict\":\"")))
      sscanf(q, "\"verdict\":\"%63[^\"]\"", ver);
    printf("%-16s %-20.20s %-29s %-29s %10s  %-12s %s\n", node,
           *rev ? rev : "-", act, hb, dec, *ver ? ver : "-", *err ? err : "-");
    p++;
  }
}

int vd_cli_fleet(int argc, char **argv) {
  const char *db = NULL, *format = "table";
  vd_buf_t out = VD_BUF_INIT, err = VD_BUF_INIT;
  int i, rc;
  if (argc < 2 || strcmp(argv[1], "status") != 0) {
    int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
                             strcmp(argv[1], "-h") == 0);
    fputs(fleet_usage, help ? stdout : stderr);
    return help ? 0 : 2;
  }
  for (i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(fleet_usage, stdout);
      return 0;
    }
    if (i + 1 < argc && strcmp(argv[i], "--db") == 0)
      db = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--format") == 0)
      format = argv[++i];
    else {
      fprintf(stderr, "verdict fleet status: unexpected argument '%s'\n%s",
              argv[i], fleet_usage);
      return 2;
    }
  }
  if (!db || !vd_history_is_postgres(db)) {
    fprintf(stderr, "verdict fleet status: --db must be a PostgreSQL "
                    "connection string (postgresql://...)\n");
    return 2;
  }
  if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0) {
    fprintf(stderr, "verdict fleet status: --format: 'table' or 'json'\n");
    return 2;
  }
  rc = vd_history_fleet_status(db, &out, &err);
  if (rc) {
    fprintf(stderr, "verdict fleet status: %s\n", err.data ? err.data : "?");
  } else if (strcmp(format, "json") == 0) {
    printf("%s\n", out.data);
  } else {
    print_status(out.data);
  }
  vd_buf_release(&out);
  vd_buf_release(&err);
  return rc ? 2 : 0;
}
