/*
 * reference.c - `verdict reference [DIR]`: the field reference of a policy
 * bundle, as Markdown, generated from the input schemas its policies
 * declare.
 *
 * Loads the bundle as the daemon does (vd_bundle_load, vd_engine_new), then
 * for each kind walks the `fields` table of the national policy (the specs
 * lib/schema.lua builds: type, required, default, requires, `expect`, the
 * words bad_input messages use for what a field accepts, and `doc`) and,
 * for each region with a file of its own, the fields that region adds.
 * Nested objects are listed field by field (`done.acceptance`).  Names are
 * sorted bytewise, so the same bundle always gives the same bytes:
 * docs/policy-reference.md is this command's output (`make reference`), and
 * scripts/run-tests fails when the committed file is not current.
 *
 * The walk runs in the engine's sandbox under lua_pcall and only reads;
 * the page is built in a buffer and printed once the walk has finished.
 * Runs on the calling thread.  Exit status: 0, 1 the bundle does not load,
 * 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cmd_int.h"
#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/sandbox.h"

typedef struct ref_args {
  vd_engine_t *e;
  vd_buf_t *out;
} ref_args_t;

/* Markdown table cell text: one line, `|` escaped. */
static void add_cell(vd_buf_t *out, const char *s) {
  for (; *s; s++) {
    if (*s == '|')
      vd_buf_adds(out, "\\|");
    else if (*s == '\n' || *s == '\r' || *s == '\t')
      vd_buf_addc(out, ' ');
    else
      vd_buf_addc(out, *s);
  }
}

/* Push field NAME of the table at idx; return it if it is a string, else
 * "".  The caller pops it (with the row it belongs to). */
static const char *field_str(lua_State *L, int idx, const char *name) {
  if (lua_getfield(L, idx, name) == LUA_TSTRING)
    return lua_tostring(L, -1);
  return "";
}

/* "required", "default `X`" or "optional" for the spec at idx, with the
 * sibling fields it `requires`. */
static void add_presence(lua_State *L, int idx, const char *type,
                         vd_buf_t *out) {
  int t;
  lua_getfield(L, idx, "required");
  if (lua_toboolean(L, -1)) {
    vd_buf_adds(out, "required");
  } else {
    t = lua_getfield(L, idx, "default");
    if (t == LUA_TNIL) {
      vd_buf_adds(out, "optional");
    } else if (t == LUA_TSTRING) {
      vd_buf_addf(out, "default `\"%s\"`", lua_tostring(L, -1));
    } else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
      vd_buf_addf(out, "default `%s`", luaL_tolstring(L, -1, NULL));
      lua_pop(L, 1);
    } else if (t == LUA_TTABLE && luaL_len(L, -1) == 0) {
      int array = strcmp(type, "set") == 0 || strcmp(type, "list") == 0;
      vd_buf_adds(out, array ? "default `[]`" : "default `{}`");
    } else {
      vd_buf_addf(out, "default: a %s", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "requires") == LUA_TTABLE) {
    lua_Integer i, n = (lua_Integer)luaL_len(L, -1);
    vd_buf_adds(out, "; needs");
    for (i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      vd_buf_addf(out, "%s `%s`", i > 1 ? "," : "",
                  luaL_tolstring(L, -1, NULL));
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
}

/* One table row per field of the fields table at idx, PREFIX before each
 * name; nested objects (and arrays of objects) row by row below theirs.
 * SKIP, when not 0, is a fields table whose names are left out.  Every
 * string lives on the Lua stack, so an error raised here leaks nothing. */
static void add_rows(lua_State *L, int idx, const char *prefix, int skip,
                     vd_buf_t *out) {
  lua_Integer i, n;
  idx = lua_absindex(L, idx);
  vd_sandbox_push_sorted_keys(L, idx);
  n = (lua_Integer)luaL_len(L, -1);
  for (i = 1; i <= n; i++) {
    int top = lua_gettop(L), spec, sub;
    const char *name, *type;
    lua_rawgeti(L, top, i);
    if (skip && lua_getfield(L, skip, lua_tostring(L, -1)) != LUA_TNIL) {
      lua_settop(L, top);
      continue;
    }
    name = lua_pushfstring(L, "%s%s", prefix, lua_tostring(L, top + 1));
    lua_pushvalue(L, top + 1);
    lua_gettable(L, idx);
    spec = lua_gettop(L);
    if (!lua_istable(L, spec)) {
      lua_settop(L, top);
      continue;
    }
    type = field_str(L, spec, "type");
    vd_buf_addf(out, "| `%s` | %s | ", name, *type ? type : "?");
    add_presence(L, spec, type, out);
    vd_buf_adds(out, " | ");
    add_cell(out, field_str(L, spec, "expect"));
    vd_buf_adds(out, " | ");
    add_cell(out, field_str(L, spec, "doc"));
    vd_buf_adds(out, " |\n");
    /* an object's fields, or those of an array's object elements */
    sub = lua_getfield(L, spec, "of") == LUA_TTABLE ? lua_gettop(L) : spec;
    if (strcmp(field_str(L, sub, "type"), "object") == 0 &&
        lua_getfield(L, sub, "fields") == LUA_TTABLE) {
      const char *p =
          lua_pushfstring(L, "%s%s", name, sub != spec ? "[]." : ".");
      add_rows(L, -2, p, 0, out);
    }
    lua_settop(L, top);
  }
  lua_pop(L, 1);
}

#define TABLE_HEAD                                                           \
  "| field | type | required / default | accepts | meaning |\n"             \
  "|---|---|---|---|---|\n"

static int reference_k(lua_State *L) {
  ref_args_t *a = lua_touserdata(L, 1);
  vd_buf_t *out = a->out;
  char file[VD_PATH_MAX];
  size_t k, g;
  for (k = 0; k < vd_engine_kind_count(a->e); k++) {
    const char *kind = vd_engine_kind(a->e, k);
    int national;
    if (vd_engine_push_policy(a->e, kind, "national"))
      continue;
    national = lua_gettop(L);
    vd_engine_policy_path(file, "national", kind);
    vd_buf_addf(out, "\n## `%s`\n\nInput fields of `%s`:\n\n" TABLE_HEAD,
                kind, file);
    if (lua_getfield(L, national, "fields") == LUA_TTABLE)
      add_rows(L, -1, "", 0, out);
    for (g = 0; g < vd_engine_region_count(a->e); g++) {
      const char *region = vd_engine_region(a->e, g);
      size_t before;
      if (vd_engine_push_policy(a->e, kind, region))
        continue;
      if (lua_getfield(L, -1, "fields") != LUA_TTABLE) {
        lua_pop(L, 2);
        continue;
      }
      vd_engine_policy_path(file, region, kind);
      before = out->len;
      vd_buf_addf(out, "\nFields `%s` adds:\n\n" TABLE_HEAD, file);
      {
        size_t head = out->len;
        add_rows(L, -1, "", lua_istable(L, national + 1) ? national + 1 : 0,
                 out);
        if (out->len == head) /* it adds none: no table */
          out->len = before, out->data[before] = '\0';
      }
      lua_pop(L, 2);
    }
    lua_settop(L, national - 1);
  }
  return 0;
}

int vd_cli_reference(int argc, char **argv) {
  const char *dir = "policies";
  vd_bundle_t *b;
  vd_engine_t *e;
  vd_sandbox_t *sb;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  ref_args_t a;
  int i, rc = 0;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      puts("usage: verdict reference [DIR]\n"
           "  print the input fields of every policy kind in bundle DIR\n"
           "  (default: policies) as Markdown, from the policies' schemas");
      return 0;
    }
    if (argv[i][0] == '-' || i > 1) {
      fprintf(stderr, "verdict reference: unexpected argument %s\n", argv[i]);
      return 2;
    }
    dir = argv[i];
  }
  if (vd_bundle_load(dir, &b, &err)) {
    fprintf(stderr, "verdict reference: %s\n", err.data);
    vd_buf_release(&err);
    return 1;
  }
  if (vd_engine_new(b, NULL, &e, &err)) {
    fprintf(stderr, "verdict reference: %s\n", err.data);
    vd_bundle_unref(b);
    vd_buf_release(&err);
    return 1;
  }
  vd_bundle_unref(b); /* the engine holds its own reference */

  vd_buf_adds(&out,
    "# Policy field reference\n"
    "\n"
    "The input fields of each decision kind, as the bundle's policies\n"
    "declare them with `lib/schema.lua`. Generated by `verdict reference`\n"
    "(`make reference`); do not edit by hand: `make test` fails when this\n"
    "file is not what the command prints. \"accepts\" is what a `bad_input`\n"
    "error says was expected. Unknown fields are refused and JSON `null`\n"
    "counts as absent. What each field means for the decision, and the\n"
    "result fields, are in the [policy guide]"
    "(policy-guide.md#what-each-kind-decides).\n");
  sb = vd_engine_sandbox(e);
  a.e = e;
  a.out = &out;
  vd_sandbox_arm(sb, 100000000UL, 0);
  lua_pushcfunction(sb->L, reference_k);
  lua_pushlightuserdata(sb->L, &a);
  if (lua_pcall(sb->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "verdict reference: %s\n", lua_tostring(sb->L, -1));
    lua_pop(sb->L, 1);
    rc = 1;
  }
  vd_sandbox_disarm(sb);
  if (rc == 0)
    fwrite(out.data, 1, out.len, stdout);
  vd_engine_free(e);
  vd_buf_release(&out);
  vd_buf_release(&err);
  return rc;
}
