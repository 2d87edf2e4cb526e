/*
 * fuzz_admin.c - libFuzzer target: admin-socket requests
 * (vd_wire_read_admin, wire.h), read as core/daemon/admin.c's
 * handle_admin() reads them: on one sandbox that every request reuses.
 *
 * Input: one admin request line.  What must hold:
 *   - on success the request, and only it, is pushed; the strings it
 *     points to are its fields, whole (none with a NUL in it); a field
 *     left NULL is absent or not such a string;
 *   - on failure nothing is pushed and err says why;
 *   - the lines the daemon answers with (an error naming the op, the id
 *     re-encoded; a pong) are each one JSON object.
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/sandbox.h"
#include "verdict/wire.h"

static vd_sandbox_t sb;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  vd_buf_t err = VD_BUF_INIT;
  (void)argc;
  (void)argv;
  if (vd_sandbox_init(&sb, &err) != 0) {
    fprintf(stderr, "fuzz_admin: vd_sandbox_init: %s\n", err.data);
    exit(1);
  }
  vd_buf_release(&err);
  return 0;
}

/* A field read is the request's string, all of it ("reload\u0000x" must
 * not pass as "reload"); one that is not read is absent or no string. */
static void check_field(lua_State *L, const char *got, const char *name) {
  size_t n;
  int t = lua_getfield(L, 1, name);
  if (got) {
    FUZZ_CHECK(t == LUA_TSTRING);
    FUZZ_CHECK(lua_tolstring(L, -1, &n) == got);
    FUZZ_CHECK(strlen(got) == n);
  } else if (t == LUA_TSTRING) {
    const char *s = lua_tolstring(L, -1, &n);
    FUZZ_CHECK(strlen(s) != n);
  }
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = sb.L;
  vd_wire_admin_t req;
  vd_buf_t err = VD_BUF_INIT, out = VD_BUF_INIT;
  int rc;
  FUZZ_CHECK(lua_gettop(L) == 0);
  vd_wire_admin_init(&req);
  rc = vd_wire_read_admin(L, (const char *)data, size, &req, &err);
  if (rc != 0) {
    FUZZ_CHECK(rc == VD_EBAD_REQUEST);
    FUZZ_CHECK(lua_gettop(L) == 0);
    FUZZ_CHECK(err.len > 0);
    FUZZ_CHECK(strcmp(req.id.data, "null") == 0);
    vd_wire_write_error(&out, NULL, rc, err.data, NULL, NULL);
  } else {
    FUZZ_CHECK(lua_gettop(L) == 1);
    check_field(L, req.op, "op");
    check_field(L, req.who, "who");
    check_field(L, req.revision, "revision");
    check_field(L, req.from, "from");
    check_field(L, req.to, "to");
    vd_wire_write_error(&out, req.id.data, VD_EBAD_REQUEST,
                        req.op ? req.op : "missing op", "op", NULL);
    vd_wire_write_pong(&out, req.id.data, req.revision ? req.revision : "");
  }
  /* each line on its own */
  {
    char *nl = memchr(out.data, '\n', out.len);
    vd_buf_t first = VD_BUF_INIT;
    FUZZ_CHECK(nl != NULL);
    vd_buf_add(&first, out.data, (size_t)(nl - out.data) + 1);
    fuzz_check_line(L, &first);
    vd_buf_consume(&out, first.len);
    if (out.len)
      fuzz_check_line(L, &out);
    vd_buf_release(&first);
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  vd_wire_admin_release(&req);
  vd_buf_release(&err);
  vd_buf_release(&out);
  return 0;
}
