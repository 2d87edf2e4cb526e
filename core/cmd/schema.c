/*
 * schema.c - `verdict schema [KIND] [--region R] [--policies DIR]
 * [--compact]`: the JSON Schema of a decision kind's input, or without
 * KIND the OpenAPI 3.1 document of verdictd's HTTP API, generated from
 * the policies of bundle DIR (default: policies) as GET /v1/openapi.json
 * serves it for the revision that decides (openapi.h).
 *
 * Loads the bundle as the daemon does (vd_bundle_load, vd_engine_new),
 * has openapi.c write the JSON, and prints it indented two spaces a
 * level (--compact: as generated, one line).  Runs on the calling thread.
 * Exit status: 0, 1 the bundle does not load or has no such kind or
 * region, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/openapi.h"

static const char usage_text[] =
    "usage: verdict schema [KIND] [--region R] [--policies DIR] [--compact]\n"
    "  print the JSON Schema of KIND's input (as the file that decides\n"
    "  region R declares it; default national), or without KIND the\n"
    "  OpenAPI 3.1 document of verdictd's HTTP API, both generated from\n"
    "  the policies in DIR (default: policies)\n";

/* Compact JSON [s, s+n) indented: a line per member and element, empty
 * objects and arrays kept as {} and []. */
static void indent(vd_buf_t *out, const char *s, size_t n) {
  size_t i;
  int depth = 0, in_str = 0;
  for (i = 0; i < n; i++) {
    char ch = s[i];
    if (in_str) {
      vd_buf_addc(out, ch);
      if (ch == '\\' && i + 1 < n)
        vd_buf_addc(out, s[++i]);
      else if (ch == '"')
        in_str = 0;
      continue;
    }
    switch (ch) {
    case '"':
      in_str = 1;
      vd_buf_addc(out, ch);
      break;
    case '{':
    case '[':
      vd_buf_addc(out, ch);
      if (i + 1 < n && (s[i + 1] == '}' || s[i + 1] == ']')) {
        vd_buf_addc(out, s[++i]);
        break;
      }
      depth++;
      vd_buf_addf(out, "\n%*s", depth * 2, "");
      break;
    case '}':
    case ']':
      depth--;
      vd_buf_addf(out, "\n%*s%c", depth * 2, "", ch);
      break;
    case ',':
      vd_buf_addf(out, ",\n%*s", depth * 2, "");
      break;
    case ':':
      vd_buf_adds(out, ": ");
      break;
    default:
      vd_buf_addc(out, ch);
    }
  }
  vd_buf_addc(out, '\n');
}

int vd_cli_schema(int argc, char **argv) {
  const char *dir = "policies", *kind = NULL, *region = NULL;
  vd_buf_t err = VD_BUF_INIT, json = VD_BUF_INIT, out = VD_BUF_INIT;
  vd_bundle_t *b;
  vd_engine_t *e;
  int i, rc, compact = 0;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(argv[i], "--policies") == 0 && i + 1 < argc) {
      dir = argv[++i];
    } else if (strcmp(argv[i], "--region") == 0 && i + 1 < argc) {
      region = argv[++i];
    } else if (strcmp(argv[i], "--compact") == 0) {
      compact = 1;
    } else if (argv[i][0] != '-' && !kind) {
      kind = argv[i];
    } else {
      fprintf(stderr, "verdict schema: unexpected argument %s\n%s", argv[i],
              usage_text);
      return 2;
    }
  }
  if (region && !kind) {
    fprintf(stderr, "verdict schema: --region needs a KIND\n%s", usage_text);
    return 2;
  }
  if (vd_bundle_load(dir, &b, &err)) {
    fprintf(stderr, "verdict schema: %s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  rc = vd_engine_new(b, NULL, &e, &err);
  vd_bundle_unref(b); /* the engine holds its own reference */
  if (rc) {
    fprintf(stderr, "verdict schema: %s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  rc = kind ? vd_openapi_input_schema(e, kind, region, &json, &err)
            : vd_openapi_document(e, &json, &err);
  if (rc) {
    fprintf(stderr, "verdict schema: %s\n", err.data);
  } else if (compact) {
    vd_buf_addc(&json, '\n');
    fwrite(json.data, 1, json.len, stdout);
  } else {
    indent(&out, json.data, json.len);
    fwrite(out.data, 1, out.len, stdout);
  }
  vd_engine_free(e);
  vd_buf_release(&json);
  vd_buf_release(&out);
  vd_buf_release(&err);
  return rc ? 1 : 0;
}
