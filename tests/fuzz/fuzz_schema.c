/*
 * fuzz_schema.c - libFuzzer target: each kind's input schema check, through
 * the whole decision (vd_engine_decide, engine.h) on the bundled policies.
 *
 * LLVMFuzzerInitialize loads policies/ (or $VERDICT_FUZZ_POLICIES) once,
 * with the default limits.  Input: one byte that picks the kind (its value
 * modulo the number of kinds, in the engine's sorted order: "0" appeal,
 * "1" compensation, "2" escalation, "3" sla with the bundled policies),
 * then the bytes of "input" in
 *   {"kind":K,"region":"national","at":"2026-11-23T10:00:00+08:00",
 *    "input":<bytes>}
 * What must hold: the answer is a decision or one of the errors a request
 * may earn (bad_request, bad_input, policy_error, policy_timeout,
 * policy_memory, too_large); never internal or nomem.  A decision's
 * response line is one JSON object with a result object and a trace
 * array; an error's names a message.  (The bytes may close "input" and
 * add envelope fields, "op" among them: another op is answered as the
 * daemon does.)  With VERDICT_FUZZ_STRICT=1 in the
 * environment policy_error is a finding too (a schema check that raises
 * instead of naming the field).
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"
#include "verdict/sandbox.h"
#include "verdict/wire.h"

/* 2026-11-23T02:00:00.123Z, the tests' "now". */
#define NOW_MS INT64_C(1795399200123)

static vd_engine_t *engine;
static lua_State *check_L; /* decodes response lines */
static int strict;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  static const vd_limits_t lim = VD_LIMITS_DEFAULT;
  const char *dir = getenv("VERDICT_FUZZ_POLICIES");
  const char *s = getenv("VERDICT_FUZZ_STRICT");
  vd_bundle_t *b = NULL;
  vd_buf_t err = VD_BUF_INIT;
  (void)argc;
  (void)argv;
  if (!dir || !*dir)
    dir = "policies";
  strict = s && strcmp(s, "1") == 0;
  if (vd_bundle_load(dir, &b, &err) != 0 ||
      vd_engine_new(b, &lim, &engine, &err) != 0) {
    fprintf(stderr, "fuzz_schema: cannot load %s: %s\n", dir, err.data);
    exit(1);
  }
  vd_bundle_unref(b); /* the engine holds its own reference */
  vd_buf_release(&err);
  check_L = fuzz_json_state();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vd_buf_t line = VD_BUF_INIT, out = VD_BUF_INIT;
  vd_decision_t d;
  const char *kind;
  int rc;
  if (size < 1)
    return 0;
  kind = vd_engine_kind(engine, data[0] % vd_engine_kind_count(engine));
  vd_buf_adds(&line, "{\"kind\":\"");
  vd_buf_adds(&line, kind);
  vd_buf_adds(&line, "\",\"region\":\"national\","
                     "\"at\":\"2026-11-23T10:00:00+08:00\",\"input\":");
  vd_buf_add(&line, data + 1, size - 1);
  vd_buf_addc(&line, '}');
  vd_decision_init(&d);
  rc = vd_engine_decide(engine, line.data, line.len, NOW_MS, &d);
  FUZZ_CHECK(rc == d.code);
  if (rc != 0 && rc != VD_EBAD_REQUEST && rc != VD_EBAD_INPUT &&
      (rc != VD_EPOLICY_ERROR || strict) && rc != VD_EPOLICY_TIMEOUT &&
      rc != VD_EPOLICY_MEMORY && rc != VD_ETOO_LARGE) {
    fprintf(stderr, "fuzz_schema: %s: %s (path %s)\n", vd_err_name(rc),
            d.message.data ? d.message.data : "",
            d.path.data ? d.path.data : "");
    FUZZ_CHECK(!"an error no request may earn");
  }
  if (rc == 0 && d.op != VD_OP_DECIDE) {
    /* the bytes closed "input" and set "op": the daemon answers these
     * itself (core/daemon/worker.c), as this does for any op but decide */
    vd_wire_write_error(&out, d.id.data, VD_EBAD_REQUEST, "unknown op",
                        "op", NULL);
  } else {
    if (rc == 0) {
      FUZZ_CHECK(d.result.len > 0 && d.result.data[0] == '{');
      FUZZ_CHECK(d.trace.len > 0 && d.trace.data[0] == '[');
    } else {
      FUZZ_CHECK(d.message.len > 0);
    }
    vd_wire_write_decision(&out, &d, NULL, "sha256:fuzz");
  }
  fuzz_check_line(check_L, &out);
  lua_gc(check_L, LUA_GCSTEP, 0);
  vd_decision_release(&d);
  vd_buf_release(&out);
  vd_buf_release(&line);
  return 0;
}
