/*
 * fuzz_json.c - libFuzzer target: the JSON decoder (vd_json_decode, json.h).
 *
 * Input: JSON text.  Decoded at the nesting bounds that are in use (16 for
 * admin requests, 32 for decision requests, VD_JSON_MAX_DEPTH) on a fresh
 * Lua state.  What must hold:
 *   - a text that decodes under a bound decodes under every larger one;
 *   - a failure pushes nothing and says why; a success pushes one value;
 *   - what decodes encodes (vd_json_encode), the encoding decodes under
 *     the same bound, and encoding that again gives the same bytes (the
 *     encoder's output is canonical and a fixed point);
 *   - the decoder's quick pass (json.c) answers as yajl alone does
 *     (vd_json_decode_yajl): the same code and message for a text either
 *     refuses, the same value (encoded: the same bytes) for one it takes;
 *   - a sandbox's state, kept from one input to the next as a worker's
 *     is (its decoder keeps key and value strings, its encoder key
 *     shapes: json.c), answers as the fresh plain state does: the same
 *     code, the same bytes encoded.
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/sandbox.h"

/* At DEPTH, the kept sandbox's answer against the plain state's (RC and
 * its message PERR; on success its value at the top of L).  Called for
 * each depth in turn, so the sandbox's second and third decodes of an
 * input find its strings foretold (json.c, key_foretold). */
static void same_in_sandbox(lua_State *L, const uint8_t *data, size_t size,
                            int depth, int rc, const vd_buf_t *perr) {
  lua_State *S = fuzz_kept_sandbox();
  vd_buf_t err = VD_BUF_INIT, a = VD_BUF_INIT, b = VD_BUF_INIT;
  int src = vd_json_decode_protected(S, (const char *)data, size, depth,
                                     &err);
  FUZZ_CHECK(src == rc);
  if (rc && strcmp(err.data, perr->data) != 0)
    fprintf(stderr, "plain %s, sandbox %s\n", perr->data, err.data);
  FUZZ_CHECK(!rc || strcmp(err.data, perr->data) == 0);
  if (!rc) {
    FUZZ_CHECK(vd_json_encode(L, lua_gettop(L), &a, "value", &err) == 0);
    FUZZ_CHECK(vd_json_encode(S, lua_gettop(S), &b, "value", &err) == 0);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
      fprintf(stderr, "plain %s, sandbox %s\n", a.data, b.data);
    FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  }
  lua_settop(S, 0);
  vd_buf_release(&err);
  vd_buf_release(&a);
  vd_buf_release(&b);
}

static const int depths[] = {16, 32, VD_JSON_MAX_DEPTH};
#define N_DEPTHS (sizeof depths / sizeof depths[0])

/* At DEPTH, the quick pass's answer (RC, ERR; on success the value at
 * the top of L) against yajl's alone.  Leaves L as it found it. */
static void same_as_yajl(lua_State *L, const uint8_t *data, size_t size,
                         int depth, int rc, const vd_buf_t *err) {
  vd_buf_t yerr = VD_BUF_INIT, a = VD_BUF_INIT, b = VD_BUF_INIT;
  int top = lua_gettop(L);
  int yrc = vd_json_decode_yajl(L, (const char *)data, size, depth, &yerr);
  if (yrc != rc || (rc && strcmp(err->data, yerr.data) != 0))
    fprintf(stderr, "quick pass %d (%s), yajl %d (%s)\n", rc,
            rc ? err->data : "", yrc, yrc ? yerr.data : "");
  FUZZ_CHECK(yrc == rc);
  FUZZ_CHECK(!rc || strcmp(err->data, yerr.data) == 0);
  if (!rc) {
    vd_buf_reset(&yerr);
    FUZZ_CHECK(vd_json_encode(L, top, &a, "value", &yerr) == 0);
    FUZZ_CHECK(vd_json_encode(L, top + 1, &b, "value", &yerr) == 0);
    FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  }
  lua_settop(L, top);
  vd_buf_release(&yerr);
  vd_buf_release(&a);
  vd_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_json_state();
  vd_buf_t err = VD_BUF_INIT, once = VD_BUF_INIT, twice = VD_BUF_INIT;
  int ok_before = 0;
  size_t i;
  for (i = 0; i < N_DEPTHS; i++) {
    int rc;
    vd_buf_reset(&err);
    rc = vd_json_decode_protected(L, (const char *)data, size, depths[i],
                                  &err);
    same_as_yajl(L, data, size, depths[i], rc, &err);
    same_in_sandbox(L, data, size, depths[i], rc, &err);
    if (rc != 0) {
      FUZZ_CHECK(rc == VD_EBAD_REQUEST);
      FUZZ_CHECK(lua_gettop(L) == 0);
      FUZZ_CHECK(err.len > 0);
      FUZZ_CHECK(!ok_before); /* a larger bound refused what a smaller took */
      continue;
    }
    ok_before = 1;
    FUZZ_CHECK(lua_gettop(L) == 1);
    vd_buf_reset(&once);
    vd_buf_reset(&twice);
    vd_buf_reset(&err);
    FUZZ_CHECK(vd_json_encode(L, 1, &once, "value", &err) == 0);
    lua_settop(L, 0);
    rc = vd_json_decode_protected(L, once.data, once.len, depths[i], &err);
    if (rc != 0)
      fprintf(stderr, "re-decoding %.*s: %s\n", (int)once.len, once.data,
              err.data);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(vd_json_encode(L, 1, &twice, "value", &err) == 0);
    FUZZ_CHECK(once.len == twice.len);
    FUZZ_CHECK(memcmp(once.data, twice.data, once.len) == 0);
    lua_settop(L, 0);
  }
  vd_buf_release(&err);
  vd_buf_release(&once);
  vd_buf_release(&twice);
  lua_close(L);
  return 0;
}
