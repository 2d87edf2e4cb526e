/*
 * fuzz_util.h - what the libFuzzer targets in tests/fuzz/ share.
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput (and, where it needs
 * set-up, LLVMFuzzerInitialize); a crash, a sanitizer report, a leak or a
 * failed FUZZ_CHECK is a finding.  FUZZ_CHECK aborts with the condition
 * and the input's length, so the reproducer libFuzzer writes is the test
 * case.  Built only by `make fuzz` (see docs/fuzzing.md).
 */
#ifndef VERDICT_FUZZ_UTIL_H
#define VERDICT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__,          \
              __LINE__, #cond);                                             \
      abort();                                                              \
    }                                                                       \
  } while (0)

/* A fresh plain Lua state with the JSON markers, as tests/test_wire.c
 * makes one; the caller closes it. */
static inline lua_State *fuzz_json_state(void) {
  lua_State *L = luaL_newstate();
  FUZZ_CHECK(L != NULL);
  vd_json_setup(L);
  return L;
}

/* A sandbox kept across inputs (libFuzzer runs them in one process), for
 * the targets that hold a long-lived state's answers to a fresh one's;
 * made at the first call. */
static inline lua_State *fuzz_kept_sandbox(void) {
  static vd_sandbox_t sb;
  static int made;
  if (!made) {
    vd_buf_t err = VD_BUF_INIT;
    FUZZ_CHECK(vd_sandbox_init(&sb, &err) == 0);
    vd_buf_release(&err);
    made = 1;
  }
  return sb.L;
}

/* Every response line the wire writes is one JSON object and a '\n':
 * decode OUT (without its newline) on L and check. */
static inline void fuzz_check_line(lua_State *L, const vd_buf_t *out) {
  vd_buf_t err = VD_BUF_INIT;
  int top = lua_gettop(L), rc;
  FUZZ_CHECK(out->len > 0 && out->data[out->len - 1] == '\n');
  rc = vd_json_decode_protected(L, out->data, out->len - 1, 0, &err);
  if (rc != 0)
    fprintf(stderr, "response line is not JSON (%s): %.*s", err.data,
            (int)out->len, out->data);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(vd_json_marker(L, -1) == 2);
  lua_settop(L, top);
  vd_buf_release(&err);
}

#endif
