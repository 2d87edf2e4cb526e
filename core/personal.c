/*
 * personal.c - the input fields a bundle's policies declare personal
 * (include/verdict/personal.h).
 *
 * Reads each loaded policy's `fields` table (the input schema R.policy
 * and R.extend keep, policies/lib/rules.lua) through the engine's Lua
 * state, for every kind and every region that has a file of its own.
 * Calls no Lua function: only raw table reads, so nothing can raise.
 * Owns nothing past one call.  Runs on the engine's thread.
 */
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/personal.h"
#include "verdict/sandbox.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Add NAME to the set unless it is there.  0 or VD_ENOMEM. */
static int add(char ***names, size_t *n, size_t *cap, const char *name) {
  size_t i;
  for (i = 0; i < *n; i++)
    if (strcmp((*names)[i], name) == 0)
      return 0;
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 8;
    char **p = realloc(*names, c * sizeof *p);
    if (!p)
      return VD_ENOMEM;
    *names = p;
    *cap = c;
  }
  if (!((*names)[*n] = strdup(name)))
    return VD_ENOMEM;
  (*n)++;
  return 0;
}

/* The policy table on top of L's stack: its fields with personal = true.
 * Pops the table. */
static int scan(lua_State *L, char ***names, size_t *n, size_t *cap) {
  int rc = 0;
  lua_pushliteral(L, "fields");
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (rc == 0 && lua_type(L, -2) == LUA_TSTRING &&
          lua_type(L, -1) == LUA_TTABLE) {
        lua_pushliteral(L, "personal");
        if (lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1))
          rc = add(names, n, cap, lua_tostring(L, -3));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 2);
  return rc;
}

int vd_personal_fields(vd_engine_t *e, char ***names, size_t *n) {
  lua_State *L = vd_engine_sandbox(e)->L;
  size_t k, r, cap = 0;
  int rc = 0;
  *names = NULL;
  *n = 0;
  for (k = 0; rc == 0 && k < vd_engine_kind_count(e); k++) {
    const char *kind = vd_engine_kind(e, k);
    if (vd_engine_push_policy(e, kind, "national") == 0)
      rc = scan(L, names, n, &cap);
    for (r = 0; rc == 0 && r < vd_engine_region_count(e); r++)
      if (vd_engine_push_policy(e, kind, vd_engine_region(e, r)) == 0)
        rc = scan(L, names, n, &cap);
  }
  if (rc) {
    vd_personal_free(*names, *n);
    *names = NULL;
    *n = 0;
    return rc;
  }
  if (*n)
    qsort(*names, *n, sizeof **names, cmp_str);
  return 0;
}

void vd_personal_free(char **names, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    free(names[i]);
  free(names);
}
