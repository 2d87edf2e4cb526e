/*
 * json_compare.c - the measurement behind the choice of yajl (docs/design.md,
 * "Dependencies and why"): decode a request line into Lua tables with
 *   (a) verdict's yajl SAX decoder (vd_json_decode), building Lua values
 *       as the bytes are read, and
 *   (b) jansson: json_loadb() into a tree, then a walk of the tree into
 *       the same Lua tables;
 * the same line, the same Lua state, N times each, alternating rounds so
 * that a noisy machine affects both alike.  Prints the median ns per
 * request of each.  Built and run by scripts/json-compare.
 */
#include <jansson.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "verdict/json.h"

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Push the jansson value v as the Lua value vd_json_decode would give. */
static void push_tree(lua_State *L, json_t *v) {
  size_t i;
  const char *k;
  json_t *x;
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    lua_createtable(L, 0, (int)json_object_size(v));
    vd_json_push_marker(L, 'o');
    lua_setmetatable(L, -2);
    json_object_foreach(v, k, x) {
      push_tree(L, x);
      lua_setfield(L, -2, k);
    }
    break;
  case JSON_ARRAY:
    lua_createtable(L, (int)json_array_size(v), 0);
    vd_json_push_marker(L, 'a');
    lua_setmetatable(L, -2);
    json_array_foreach(v, i, x) {
      push_tree(L, x);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(v), json_string_length(v));
    break;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(v));
    break;
  case JSON_REAL:
    lua_pushnumber(L, json_real_value(v));
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    lua_pushboolean(L, json_is_true(v));
    break;
  default:
    lua_pushlightuserdata(L, vd_json_null);
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *line = argc > 1 ? argv[1] : "{}";
  int n = argc > 2 ? atoi(argv[2]) : 20000, rounds = 9, r, i;
  size_t len = strlen(line);
  double ya[9], ja[9];
  vd_buf_t err = VD_BUF_INIT;
  lua_State *L = luaL_newstate();
  vd_json_setup(L);
  for (r = 0; r < rounds; r++) {
    double t = now_ns();
    for (i = 0; i < n; i++) {
      if (vd_json_decode(L, line, len, 0, &err) != 0) {
        fprintf(stderr, "yajl: %s\n", err.data);
        return 1;
      }
      lua_pop(L, 1);
    }
    ya[r] = (now_ns() - t) / n;
    t = now_ns();
    for (i = 0; i < n; i++) {
      json_error_t je;
      json_t *v = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
      if (!v) {
        fprintf(stderr, "jansson: %s\n", je.text);
        return 1;
      }
      push_tree(L, v);
      json_decref(v);
      lua_pop(L, 1);
    }
    ja[r] = (now_ns() - t) / n;
  }
  qsort(ya, rounds, sizeof *ya, cmp);
  qsort(ja, rounds, sizeof *ja, cmp);
  printf("decode one %zu-byte request into Lua, median of %d rounds of %d:\n",
         len, rounds, n);
  printf("  yajl SAX straight into Lua   %8.0f ns\n", ya[rounds / 2]);
  printf("  jansson tree, then into Lua  %8.0f ns   (%.2fx)\n", ja[rounds / 2],
         ja[rounds / 2] / ya[rounds / 2]);
  lua_close(L);
  vd_buf_release(&err);
  return 0;
}
