/*
 * fuzz_request.c - libFuzzer target: the decision-socket request envelope
 * (vd_wire_read_request, wire.h), as vd_engine_decide() reads it: decoded
 * with the default nesting bound, then read under lua_pcall.
 *
 * Input: one request line.  What must hold:
 *   - vd_wire_read_request() leaves the stack as it found it, and returns
 *     0 or the code it put in d->code;
 *   - an error names a message, and a bad_request names its field or none;
 *   - the fixed-size fields it fills are NUL-terminated within their size;
 *     an accepted request has only known fields, named exactly, and each
 *     field it read (op, kind, region, at) is the request's whole string;
 *     "at" parses back as an RFC 3339 time to d->at_ms;
 *   - the response line for an error (vd_wire_write_error(), with the
 *     request's id) is one JSON object;
 *   - decoded flat and read from the decoder's notes
 *     (vd_wire_decode_request() and vd_wire_read_decoded() in a sandbox
 *     kept from one input to the next, twice, so its strings are foretold
 *     the second time), the request gives the same decision, field for
 *     field and message for message, as read by the walk over the table
 *     in that state; the input and at it points at are the table's.
 */
#include <string.h>

#include "fuzz_util.h"
#include "verdict/engine.h"
#include "verdict/sandbox.h"
#include "verdict/timefmt.h"
#include "verdict/wire.h"

/* 2026-11-23T02:00:00.123Z, the tests' "now". */
#define NOW_MS INT64_C(1795399200123)

typedef struct {
  vd_decision_t *d;
  int rc;
  /* decode_read_k's: the line, what the decode answered, its parser */
  const char *line;
  size_t len;
  int max_depth, drc;
  void *parser;
} args_t;

/* Stack: args, request. */
static int read_k(lua_State *L) {
  args_t *a = lua_touserdata(L, 1);
  int top = lua_gettop(L);
  a->rc = vd_wire_read_request(L, 2, NOW_MS, a->d);
  FUZZ_CHECK(lua_gettop(L) == top);
  return 0;
}

/* Stack: args.  Decode the line flat and read it, as the engine does
 * (inside one protected call, the values' slots where the decode left
 * them): every value pushed is at its note's slot, in order, the others
 * strings; the input and at it points at are the request's. */
static int decode_read_k(lua_State *L) {
  args_t *a = lua_touserdata(L, 1);
  const vd_json_notes_t *flat;
  int input, at, i, pushed = 0;
  a->drc = vd_wire_decode_request_in(L, a->line, a->len, a->max_depth,
                                     &a->d->message, &a->parser, &flat);
  if (a->drc)
    return 0;
  for (i = 0; flat && i < flat->ntop; i++) {
    const vd_json_note_t *m = &flat->top[i];
    FUZZ_CHECK(m->slot ? m->slot == 2 + pushed : m->type == LUA_TSTRING);
    pushed += m->slot != 0;
  }
  FUZZ_CHECK(lua_gettop(L) == 1 + (flat ? pushed : 1));
  a->rc = vd_wire_read_decoded(L, flat, NOW_MS, a->d, &input, &at);
  FUZZ_CHECK(input >= 0 && at >= 0 && input <= lua_gettop(L) &&
             at <= lua_gettop(L));
  if (a->rc == 0 && a->d->op == VD_OP_DECIDE) {
    FUZZ_CHECK(input > 1 && lua_type(L, input) == LUA_TTABLE);
    FUZZ_CHECK(vd_json_marker(L, input) == 2);
    FUZZ_CHECK(!(at && a->d->at_stamped)); /* none to give when stamped */
    if (at)
      FUZZ_CHECK(strcmp(lua_tostring(L, at), a->d->at) == 0);
  }
  return 0;
}

static void check_str(const char *s, size_t cap) {
  FUZZ_CHECK(memchr(s, '\0', cap) != NULL);
}

/* A field that was read is the request's string, all of it: a value with
 * a NUL in it must not pass as its prefix ("sla\u0000x" as "sla"). */
static void check_read(lua_State *L, const char *field, const char *got) {
  size_t n;
  const char *s;
  FUZZ_CHECK(lua_getfield(L, 1, field) == LUA_TSTRING);
  s = lua_tolstring(L, -1, &n);
  FUZZ_CHECK(strlen(got) == n && memcmp(got, s, n) == 0);
  lua_pop(L, 1);
}

static int same_buf(const vd_buf_t *a, const vd_buf_t *b) {
  return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/* Decode and read the input in S, flat from the notes (NOTED) or by the
 * walk over its table, into n (cleared first); the decode's code or the
 * read's. */
static int decide_in(lua_State *S, const uint8_t *data, size_t size,
                     int max_depth, int noted, vd_decision_t *n) {
  args_t a;
  int rc;
  vd_decision_reset(n);
  a.d = n;
  a.rc = -1;
  if (noted) {
    a.line = (const char *)data;
    a.len = size;
    a.max_depth = max_depth;
    a.parser = NULL;
    lua_pushcfunction(S, decode_read_k);
    lua_pushlightuserdata(S, &a);
    if (lua_pcall(S, 1, 0, 0) != LUA_OK) { /* out of memory decoding */
      vd_json_parser_free(a.parser);
      lua_settop(S, 0);
      return VD_ENOMEM;
    }
    rc = a.drc ? a.drc : a.rc;
    if (!a.drc)
      FUZZ_CHECK(a.rc == n->code);
    lua_settop(S, 0);
    return rc;
  }
  rc = vd_json_decode_protected(S, (const char *)data, size, max_depth,
                                &n->message);
  if (rc == 0) {
    lua_pushcfunction(S, read_k);
    lua_insert(S, 1);
    lua_pushlightuserdata(S, &a);
    lua_insert(S, 2);
    FUZZ_CHECK(lua_pcall(S, 2, 0, 0) == LUA_OK);
    FUZZ_CHECK(a.rc == n->code);
    rc = a.rc;
  }
  lua_settop(S, 0);
  return rc;
}

/* The input read from the notes in the kept sandbox answers as read by
 * the walk in that same state (whose string hashes, and so the walk's
 * order, are its own), twice. */
static void same_from_notes(const uint8_t *data, size_t size, int max_depth) {
  lua_State *S = fuzz_kept_sandbox();
  vd_decision_t w, n;
  int i;
  vd_decision_init(&w);
  vd_decision_init(&n);
  for (i = 0; i < 2; i++) {
    int wrc = decide_in(S, data, size, max_depth, 0, &w);
    FUZZ_CHECK(decide_in(S, data, size, max_depth, 1, &n) == wrc);
    FUZZ_CHECK(n.code == w.code && n.op == w.op);
    FUZZ_CHECK(strcmp(n.op_name, w.op_name) == 0);
    FUZZ_CHECK(strcmp(n.kind, w.kind) == 0);
    FUZZ_CHECK(strcmp(n.region, w.region) == 0);
    FUZZ_CHECK(strcmp(n.at, w.at) == 0 && n.at_ms == w.at_ms &&
               n.at_stamped == w.at_stamped);
    FUZZ_CHECK(same_buf(&n.message, &w.message));
    FUZZ_CHECK(same_buf(&n.path, &w.path) && same_buf(&n.id, &w.id));
    FUZZ_CHECK(same_buf(&n.complaint_id, &w.complaint_id) &&
               same_buf(&n.customer_id, &w.customer_id) &&
               same_buf(&n.category, &w.category));
  }
  vd_decision_release(&w);
  vd_decision_release(&n);
}

/* An accepted request has only the fields a request has, named exactly. */
static void check_keys(lua_State *L) {
  static const char *const fields[] = {"id", "op", "kind", "region",
                                       "at", "input", NULL};
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    size_t n;
    const char *k = lua_tolstring(L, -2, &n);
    const char *const *f;
    for (f = fields; *f; f++)
      if (strlen(*f) == n && memcmp(*f, k, n) == 0)
        break;
    FUZZ_CHECK(*f != NULL);
    lua_pop(L, 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const vd_limits_t lim = VD_LIMITS_DEFAULT;
  lua_State *L = fuzz_json_state();
  vd_decision_t d;
  vd_buf_t out = VD_BUF_INIT;
  args_t a;
  int rc;
  vd_decision_init(&d);
  rc = vd_json_decode_protected(L, (const char *)data, size, lim.max_depth,
                                &d.message);
  same_from_notes(data, size, lim.max_depth);
  if (rc == 0) {
    a.d = &d;
    a.rc = -1;
    lua_pushcfunction(L, read_k);
    lua_pushlightuserdata(L, &a);
    lua_pushvalue(L, 1);
    FUZZ_CHECK(lua_pcall(L, 2, 0, 0) == LUA_OK);
    FUZZ_CHECK(lua_gettop(L) == 1);
    FUZZ_CHECK(a.rc == d.code);
    check_str(d.op_name, sizeof d.op_name);
    check_str(d.kind, sizeof d.kind);
    check_str(d.region, sizeof d.region);
    check_str(d.at, sizeof d.at);
    /* the id is JSON, or empty when there is none (written "null") */
    if (d.id.len) {
      vd_buf_t e = VD_BUF_INIT;
      FUZZ_CHECK(vd_json_decode_protected(L, d.id.data, d.id.len, 0, &e) ==
                 0);
      lua_pop(L, 1);
      vd_buf_release(&e);
    }
    if (d.code) {
      FUZZ_CHECK(d.message.len > 0);
      vd_wire_write_error(&out, d.id.data, d.code, d.message.data,
                          d.path.data, NULL);
      fuzz_check_line(L, &out);
    } else {
      check_keys(L);
      if (d.op != VD_OP_DECIDE || d.op_name[0])
        check_read(L, "op", d.op_name);
    }
    if (d.code == 0 && d.op == VD_OP_DECIDE) {
      int64_t ms;
      int off;
      check_read(L, "kind", d.kind);
      check_read(L, "region", d.region);
      if (!d.at_stamped)
        check_read(L, "at", d.at);
      FUZZ_CHECK(vd_time_parse(d.at, strlen(d.at), &ms, &off) == 0);
      FUZZ_CHECK(ms == d.at_ms);
    }
  } else {
    FUZZ_CHECK(rc == VD_EBAD_REQUEST);
    vd_wire_write_error(&out, NULL, rc, d.message.data, NULL, NULL);
    fuzz_check_line(L, &out);
  }
  vd_buf_release(&out);
  vd_decision_release(&d);
  lua_close(L);
  return 0;
}
