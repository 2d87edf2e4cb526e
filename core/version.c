/*
 * version.c - vd_version() and vd_version_libs() (verdict/version.h).
 *
 * VD_VERSION comes from the Makefile's VERSION, given to this file alone
 * on the compiler's command line.  Each library is asked for the version
 * it is at run time where it can say (a shared library upgraded under a
 * built binary shows here); the headers' version is the fallback and is
 * shown beside it when the two differ.  Any thread.
 */
#include <lua.h>
#include <nettle/version.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <yajl/yajl_version.h>

#include "verdict/version.h"

#ifndef VD_VERSION
#error "VD_VERSION is set by the Makefile (VERSION)"
#endif

const char *vd_version(void) { return VD_VERSION; }

/* "NAME RUN", and " (built with BUILT)" when they differ. */
static void add_lib(vd_buf_t *out, const char *name, const char *run,
                    const char *built) {
  vd_buf_addf(out, "%s %s", name, run);
  if (strcmp(run, built) != 0)
    vd_buf_addf(out, " (built with %s)", built);
  vd_buf_addc(out, '\n');
}

void vd_version_libs(vd_buf_t *out) {
  char run[32], built[32];
  int y = yajl_version();

  /* Lua's run-time answer is only LUA_VERSION_NUM (504): the release,
   * with its patch level, is what the headers name. */
  vd_buf_addf(out, "%s\n", LUA_RELEASE); /* "Lua 5.4.N" */
  snprintf(built, sizeof built, "%d.%d.%d", UV_VERSION_MAJOR,
           UV_VERSION_MINOR, UV_VERSION_PATCH);
  add_lib(out, "libuv", uv_version_string(), built);
  add_lib(out, "SQLite", sqlite3_libversion(), SQLITE_VERSION);
  snprintf(run, sizeof run, "%d.%d.%d", y / 10000, y / 100 % 100, y % 100);
  snprintf(built, sizeof built, "%d.%d.%d", YAJL_MAJOR, YAJL_MINOR,
           YAJL_MICRO);
  add_lib(out, "yajl", run, built);
  snprintf(run, sizeof run, "%d.%d", nettle_version_major(),
           nettle_version_minor());
  snprintf(built, sizeof built, "%d.%d", NETTLE_VERSION_MAJOR,
           NETTLE_VERSION_MINOR);
  add_lib(out, "nettle", run, built);
}
