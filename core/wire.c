/*
 * wire.c - the wire format: request readers, response writers, framing
 * (see wire.h).
 *
 * Readers work on a request the JSON decoder (json.c) has pushed on a Lua
 * stack; writers append to a vd_buf_t with its JSON writers, never printf.
 * No state of its own; any thread.
 */
#include <string.h>

#include <lauxlib.h>
#include <yajl_parse.h>

#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/json.h"
#include "verdict/timefmt.h"
#include "verdict/wire.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------ */

/* The string field of the table at idx, or NULL (also for a string with a
 * NUL in it, which would pass as its prefix); the table keeps it. */
static const char *peek_str(lua_State *L, int idx, const char *field) {
  const char *s = NULL;
  size_t n;
  lua_getfield(L, idx, field);
  if (lua_type(L, -1) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    if (strlen(s) != n)
      s = NULL;
  }
  lua_pop(L, 1);
  return s;
}

static void copy_input_str(lua_State *L, int input, const char *field,
                           vd_buf_t *out) {
  size_t n;
  const char *s;
  if (lua_getfield(L, input, field) == LUA_TSTRING) {
    s = lua_tolstring(L, -1, &n);
    if (n <= 256)
      vd_buf_add(out, s, n);
  }
  lua_pop(L, 1);
}

/* The request's "id", the value at idx, re-encoded as JSON into OUT;
 * "null" when it cannot be encoded.  SCRATCH takes the encoder's
 * message. */
static void read_id(lua_State *L, int idx, vd_buf_t *out, vd_buf_t *scratch) {
  vd_buf_reset(out);
  if (vd_json_encode(L, idx, out, "id", scratch)) {
    vd_buf_reset(out);
    vd_buf_adds(out, "null");
  }
}

/* A request's fields, as the walk over its keys found them. */
enum { RF_ID, RF_OP, RF_AT, RF_KIND, RF_IDEM, RF_INPUT, RF_REGION, RF_N };

typedef struct req_field {
  int type;      /* its value's Lua type; LUA_TNIL: absent */
  const char *s; /* a string value's bytes (the table keeps them, or the
                  * decoded line has them: not NUL-terminated), and its
                  * length */
  size_t n;
  int slot;      /* where its value is on the stack (0: not there; a
                  * flat member's string written plainly is not) */
} req_field_t;

/* Which field of a request [k, k+n) names (RF_*), or -1: id, op, kind,
 * region, at, input or idem ("id\u0000x" is not "id"). */
static int request_field(const char *k, size_t n) {
  switch (n) {
  case 2:
    return memcmp(k, "id", 2) == 0   ? RF_ID
           : memcmp(k, "op", 2) == 0 ? RF_OP
           : memcmp(k, "at", 2) == 0 ? RF_AT
                                     : -1;
  case 4:
    return memcmp(k, "kind", 4) == 0   ? RF_KIND
           : memcmp(k, "idem", 4) == 0 ? RF_IDEM
                                       : -1;
  case 5:
    return memcmp(k, "input", 5) == 0 ? RF_INPUT : -1;
  case 6:
    return memcmp(k, "region", 6) == 0 ? RF_REGION : -1;
  default:
    return -1;
  }
}

/* Copy the string field the walk found into a fixed buffer.  Returns 1
 * if present and fitting, 0 if absent, -1 if present but not a string (or
 * one with a NUL in it, which would pass as its prefix), -2 if too long. */
static int field_str(const req_field_t *f, char *out, size_t cap) {
  if (f->type == LUA_TNIL)
    return 0;
  if (f->type != LUA_TSTRING || memchr(f->s, '\0', f->n))
    return -1;
  if (f->n >= cap)
    return -2;
  memcpy(out, f->s, f->n);
  out[f->n] = '\0';
  return 1;
}

/* The input's strings the engine keeps, by their notes (nt->nsub of
 * them): the last member of each name, as its table keeps the last. */
static void copy_noted_input(const vd_json_notes_t *nt, vd_decision_t *d) {
  const vd_json_note_t *cid = NULL, *cust = NULL, *cat = NULL;
  int i;
  for (i = 0; i < nt->nsub; i++) {
    const vd_json_note_t *m = &nt->sub[i];
    if (m->kn == 12 && memcmp(m->k, "complaint_id", 12) == 0)
      cid = m;
    else if (m->kn == 11 && memcmp(m->k, "customer_id", 11) == 0)
      cust = m;
    else if (m->kn == 8 && memcmp(m->k, "category", 8) == 0)
      cat = m;
  }
  /* as copy_input_str() */
  if (cid && cid->type == LUA_TSTRING && cid->n <= 256)
    vd_buf_add(&d->complaint_id, cid->s, cid->n);
  if (cust && cust->type == LUA_TSTRING && cust->n <= 256)
    vd_buf_add(&d->customer_id, cust->s, cust->n);
  if (cat && cat->type == LUA_TSTRING && cat->n <= 256)
    vd_buf_add(&d->category, cat->s, cat->n);
}

/* The request's fields from the decoder's notes of its flat members
 * (vd_wire_decode_request()), as the walk below would find them: 1; 0
 * when a member is not one of a request's fields (the walk names the
 * first in its order). */
static int noted_fields(const vd_json_notes_t *nt, req_field_t *f,
                        int *input_object) {
  int i;
  for (i = 0; i < nt->ntop; i++) {
    const vd_json_note_t *m = &nt->top[i];
    int k = request_field(m->k, m->kn);
    if (k < 0)
      return 0;
    f[k].type = m->type; /* the last of a name, as its table keeps */
    f[k].s = m->s;
    f[k].n = m->n;
    f[k].slot = m->slot;
    if (k == RF_INPUT)
      *input_object = m->type == LUA_TTABLE && !m->array;
  }
  return 1;
}

/* The request's fields from a walk over the table at req (a decoded
 * object: its marker has no __index, so this is what lua_getfield would
 * read), the values of the id, the input and at left on the stack at
 * their slots; the first unknown field in the walk's order, or NULL. */
static const char *walked_fields(lua_State *L, int req, req_field_t *f) {
  const char *unknown = NULL;
  lua_pushnil(L);
  while (lua_next(L, req)) {
    size_t kn;
    const char *k = lua_tolstring(L, -2, &kn);
    int i = request_field(k, kn);
    if (i < 0) {
      if (!unknown)
        unknown = k;
    } else {
      f[i].type = lua_type(L, -1);
      if (f[i].type == LUA_TSTRING)
        f[i].s = lua_tolstring(L, -1, &f[i].n);
      if (i == RF_ID || i == RF_INPUT || i == RF_AT) {
        lua_insert(L, -2); /* value, key: the value stays, the walk goes on */
        f[i].slot = lua_gettop(L) - 1;
        continue;
      }
    }
    lua_pop(L, 1);
  }
  return unknown;
}

/* The fields found checked, into d; nothing on the stack changes.  0, or
 * d->code with d->message and d->path naming the field. */
static int check_fields(lua_State *L, req_field_t *f, int input_object,
                        const char *unknown, int64_t now_ms,
                        vd_decision_t *d) {
  int r;
  int off;

  if (f[RF_ID].slot) {
    read_id(L, f[RF_ID].slot, &d->id, &d->message);
  } else if (f[RF_ID].type == LUA_TSTRING) { /* a flat member's, unpushed */
    lua_pushlstring(L, f[RF_ID].s, f[RF_ID].n);
    read_id(L, -1, &d->id, &d->message);
    lua_pop(L, 1);
  }
  vd_buf_reset(&d->message);

  /* Unknown top-level fields are refused, so a typo never goes unseen. */
  if (unknown)
    return vd_decision_fail(d, VD_EBAD_REQUEST, unknown,
                            "unknown field '%s' (a request has id, op, "
                            "kind, region, at, input, idem)", unknown);

  {
    char idem[VD_IDEM_KEY_MAX + 1];
    r = field_str(&f[RF_IDEM], idem, sizeof idem);
    if (r < 0 || (r > 0 && !vd_wire_idem_valid(idem, strlen(idem))))
      return vd_decision_fail(d, VD_EBAD_REQUEST, "idem",
                              "idem must be a string of 1 to %d printable "
                              "ASCII characters", VD_IDEM_KEY_MAX);
  }
  r = field_str(&f[RF_OP], d->op_name, sizeof d->op_name);
  if (r < 0)
    return vd_decision_fail(d, VD_EBAD_REQUEST, "op",
                            "op must be a short string");
  if (r > 0 && strcmp(d->op_name, "decide") != 0) {
    d->op = strcmp(d->op_name, "ping") == 0     ? VD_OP_PING
            : strcmp(d->op_name, "status") == 0 ? VD_OP_STATUS
                                                : VD_OP_OTHER;
    return 0;
  }

  r = field_str(&f[RF_KIND], d->kind, sizeof d->kind);
  if (r == 0)
    return vd_decision_fail(d, VD_EBAD_REQUEST, "kind",
                            "missing field 'kind' (one of the bundle's "
                            "decision kinds)");
  if (r < 0)
    return vd_decision_fail(d, r == -1 ? VD_EBAD_REQUEST : VD_EUNKNOWN_KIND,
                            "kind",
                            "kind must be a string naming a decision kind");
  r = field_str(&f[RF_REGION], d->region, sizeof d->region);
  if (r == 0)
    return vd_decision_fail(d, VD_EBAD_REQUEST, "region",
                            "missing field 'region' (a region code such as "
                            "GD-SZ, or \"national\")");
  if (r == -1)
    return vd_decision_fail(d, VD_EBAD_REQUEST, "region",
                            "region must be a string");
  if (r == -2)
    return vd_decision_fail(d, VD_EUNKNOWN_REGION, "region",
                            "region code too long");

  r = field_str(&f[RF_AT], d->at, sizeof d->at);
  if (r < 0 || (r > 0 && vd_time_parse(d->at, strlen(d->at), &d->at_ms,
                                       &off) != 0))
    return vd_decision_fail(d, VD_EBAD_REQUEST, "at",
                            "at must be an RFC 3339 time with an offset, "
                            "like 2026-11-23T10:00:00+08:00");
  if (r == 0) { /* stamped to the second, and at_ms is the same instant
                  * (history windows end where the policy's clock stands;
                  * the record keeps received_ms to the millisecond) */
    d->at_ms = now_ms - now_ms % 1000;
    d->at_stamped = 1;
    vd_time_format(d->at_ms, VD_DEFAULT_OFFSET_MIN, d->at);
  }

  if (f[RF_INPUT].type != LUA_TTABLE ||
      (input_object < 0 ? vd_json_marker(L, f[RF_INPUT].slot) != 2
                        : !input_object))
    return vd_decision_fail(d, VD_EBAD_REQUEST, "input",
                            f[RF_INPUT].type == LUA_TNIL
                                ? "missing field 'input' (a JSON object)"
                                : "input must be a JSON object");
  return 0;
}

/* The input's strings the engine keeps, from the input at idx. */
static void copy_input(lua_State *L, int idx, vd_decision_t *d) {
  copy_input_str(L, idx, "complaint_id", &d->complaint_id);
  copy_input_str(L, idx, "customer_id", &d->customer_id);
  copy_input_str(L, idx, "category", &d->category);
}

static void fields_init(req_field_t *f) {
  int i;
  for (i = 0; i < RF_N; i++) {
    f[i].type = LUA_TNIL;
    f[i].s = NULL;
    f[i].n = 0;
    f[i].slot = 0;
  }
}

/* The request at req (a table) read by the walk over its keys; the
 * values of its id, input and at pushed, their slots in f. */
static int read_table(lua_State *L, int req, int64_t now_ms,
                      vd_decision_t *d, req_field_t *f) {
  const char *unknown;
  int rc;
  if (lua_type(L, req) != LUA_TTABLE || vd_json_marker(L, req) != 2)
    return vd_decision_fail(d, VD_EBAD_REQUEST, NULL,
                            "a request must be a JSON object, one per line");
  unknown = walked_fields(L, req, f);
  rc = check_fields(L, f, -1, unknown, now_ms, d);
  if (rc == 0 && d->op == VD_OP_DECIDE)
    copy_input(L, f[RF_INPUT].slot, d);
  return rc;
}

int vd_wire_decode_request(lua_State *L, const char *line, size_t len,
                           int max_depth, vd_buf_t *err,
                           const vd_json_notes_t **flat) {
  return vd_json_decode_flat(L, line, len, max_depth, err, "input", flat);
}

int vd_wire_decode_request_in(lua_State *L, const char *line, size_t len,
                              int max_depth, vd_buf_t *err, void **parser,
                              const vd_json_notes_t **flat) {
  return vd_json_decode_flat_in(L, line, len, max_depth, err, "input",
                                parser, flat);
}

int vd_wire_read_request(lua_State *L, int idx, int64_t now_ms,
                         vd_decision_t *d) {
  int req = lua_absindex(L, idx), top = lua_gettop(L), rc;
  req_field_t f[RF_N];
  fields_init(f);
  rc = read_table(L, req, now_ms, d, f);
  lua_settop(L, top);
  return rc;
}

int vd_wire_read_decoded(lua_State *L, const vd_json_notes_t *flat,
                         int64_t now_ms, vd_decision_t *d, int *input,
                         int *at) {
  req_field_t f[RF_N];
  int rc, input_object = -1;
  fields_init(f);
  if (flat && noted_fields(flat, f, &input_object)) {
    rc = check_fields(L, f, input_object, NULL, now_ms, d);
    if (rc == 0 && d->op == VD_OP_DECIDE) {
      if (flat->nsub >= 0) {
        copy_noted_input(flat, d);
      } else { /* more members than the notes hold: from the table */
        copy_input(L, f[RF_INPUT].slot, d);
      }
    }
  } else {
    if (flat) /* a member that is not a field: named as the walk names it */
      vd_json_flat_table(L, flat);
    rc = read_table(L, lua_gettop(L), now_ms, d, f);
  }
  *input = f[RF_INPUT].slot;
  *at = f[RF_AT].type == LUA_TSTRING ? f[RF_AT].slot : 0;
  return rc;
}

void vd_wire_admin_init(vd_wire_admin_t *req) {
  memset(req, 0, sizeof *req);
  vd_buf_init(&req->id);
  vd_buf_adds(&req->id, "null");
}

void vd_wire_admin_release(vd_wire_admin_t *req) {
  vd_buf_release(&req->id);
}

int vd_wire_read_admin(lua_State *L, const char *line, size_t len,
                       vd_wire_admin_t *req, vd_buf_t *err) {
  int rc = vd_json_decode_protected(L, line, len, 16, err);
  int t;
  if (rc != 0)
    return rc;
  t = lua_gettop(L);
  if (vd_json_marker(L, t) != 2) {
    lua_pop(L, 1);
    vd_buf_reset(err);
    vd_buf_adds(err, "a request must be a JSON object");
    return VD_EBAD_REQUEST;
  }
  if (lua_getfield(L, t, "id") != LUA_TNIL)
    read_id(L, -1, &req->id, err);
  lua_pop(L, 1);
  vd_buf_reset(err);
  req->op = peek_str(L, t, "op");
  req->who = peek_str(L, t, "who");
  req->revision = peek_str(L, t, "revision");
  req->from = peek_str(L, t, "from");
  req->to = peek_str(L, t, "to");
  return 0;
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */

/* ,"key":"value" -- with plain appends: vfprintf was 6% of a decision.
 * KEY is a literal: its ,"key": is one constant of known length, copied
 * inline where the function is. */
static inline void add_str_at(vd_buf_t *out, const char *pre, size_t n,
                              const char *val) {
  vd_buf_add(out, pre, n);
  vd_buf_add_json_str(out, val, strlen(val));
}
#define add_str(out, key, val) \
  add_str_at((out), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (val))

/* ,"key":"value" for a value that is a NUL-terminated string in a char
 * array of CAP bytes (a decision's kind, region, policy_region and at):
 * the array is read 16 bytes at a time, which stays inside it, and a
 * value whose bytes before its NUL are plain (ASCII, no quote, backslash
 * or control byte) is copied as it is found, without strlen() or a call;
 * any other is written by vd_buf_add_json_str() as add_str() writes it. */
static inline void add_arr_at(vd_buf_t *out, const char *pre, size_t n,
                              const char *val, size_t cap) {
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                bslash = _mm_set1_epi8('\\');
  char *o;
  size_t i;
  vd_buf_grow(out, n + cap + 2);
  vd_buf_add(out, pre, n);
  o = out->data + out->len + 1; /* room for cap bytes and the quotes */
  for (i = 0; i + 16 <= cap; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(val + i));
    /* below 0x20 as a signed byte: a control byte, the NUL among them, or
     * one above ASCII */
    unsigned care = (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_cmplt_epi8(v, space),
                     _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                  _mm_cmpeq_epi8(v, bslash))));
    _mm_storeu_si128((__m128i *)(void *)(o + i), v);
    if (care) {
      unsigned first = (unsigned)__builtin_ctz(care);
      if (val[i + first] != '\0')
        break; /* a byte that needs care before the end */
      o[-1] = '"';
      o[i + first] = '"';
      out->len += i + first + 2;
      out->data[out->len] = '\0';
      return;
    }
  }
  vd_buf_add_json_str(out, val, strlen(val)); /* (the stores above lie
                                                * past the buffer's end) */
#else
  (void)cap;
  add_str_at(out, pre, n, val);
#endif
}
#define add_arr(out, key, arr)                                            \
  add_arr_at((out), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (arr), \
             sizeof(arr))

/* ,"key":N */
static void add_int_at(vd_buf_t *out, const char *pre, size_t n,
                       long long val) {
  vd_buf_add(out, pre, n);
  vd_buf_add_int(out, val);
}
#define add_int(out, key, val) \
  add_int_at((out), ",\"" key "\":", sizeof(",\"" key "\":") - 1, (val))

/* {"id":ID -- every line starts so */
static void open_line(vd_buf_t *out, const char *id_json) {
  vd_buf_adds(out, "{\"id\":");
  vd_buf_adds(out, id_json && *id_json ? id_json : "null");
}

/* The error line; errors_json (a JSON array, or NULL) goes in as
 * "errors": a bad request's every problem. */
static void write_error(vd_buf_t *out, const char *id_json, int code,
                        const char *message, const char *path,
                        const char *errors_json, const char *decision_id) {
  open_line(out, id_json);
  if (decision_id)
    add_str(out, "decision_id", decision_id);
  vd_buf_adds(out, ",\"error\":{\"code\":");
  vd_buf_add_json_str(out, vd_err_name(code), strlen(vd_err_name(code)));
  add_str(out, "message", message ? message : vd_err_desc(code));
  if (path && *path)
    add_str(out, "path", path);
  if (errors_json && *errors_json) {
    vd_buf_adds(out, ",\"errors\":");
    vd_buf_adds(out, errors_json);
  }
  vd_buf_adds(out, "}}\n");
}

void vd_wire_write_error(vd_buf_t *out, const char *id_json, int code,
                         const char *message, const char *path,
                         const char *decision_id) {
  write_error(out, id_json, code, message, path, NULL, decision_id);
}

void vd_wire_write_decision(vd_buf_t *out, const vd_decision_t *d,
                            const char *decision_id, const char *revision) {
  if (d->code) {
    write_error(out, d->id.data, d->code, d->message.data, d->path.data,
                d->errors.data, decision_id);
    return;
  }
  vd_buf_adds(out, "{\"id\":");
  vd_buf_add(out, d->id.data, d->id.len);
  if (decision_id)
    add_str(out, "decision_id", decision_id);
  add_arr(out, "kind", d->kind);
  add_arr(out, "region", d->region);
  add_arr(out, "policy_region", d->policy_region);
  add_str(out, "revision", revision);
  add_arr(out, "at", d->at);
  vd_buf_adds(out, ",\"result\":");
  vd_buf_add(out, d->result.data, d->result.len);
  vd_buf_adds(out, ",\"trace\":");
  vd_buf_add(out, d->trace.data, d->trace.len);
  vd_buf_adds(out, ",\"elapsed_us\":");
  vd_buf_add_int(out, (long long)(d->elapsed_ns / 1000));
  vd_buf_add(out, "}\n", 2);
}

void vd_wire_write_pong(vd_buf_t *out, const char *id_json,
                        const char *revision) {
  open_line(out, id_json);
  vd_buf_adds(out, ",\"pong\":true");
  add_str(out, "revision", revision);
  vd_buf_add(out, "}\n", 2);
}

void vd_wire_write_status(vd_buf_t *out, const char *id_json,
                          const vd_wire_status_t *s) {
  char ts[32];
  uint64_t total = 0;
  int k, first = 1;
  open_line(out, id_json);
  vd_buf_adds(out, ",\"status\":{\"revision\":");
  vd_buf_add_json_str(out, s->revision, strlen(s->revision));
  add_str(out, "source", s->source);
  vd_time_format(s->activated_ms, VD_DEFAULT_OFFSET_MIN, ts);
  add_str(out, "activated_at", ts);
  add_str(out, "activated_by", s->activated_by);
  if (s->last_failure)
    add_str(out, "last_failure", s->last_failure);
  if (s->history_check) {
    add_str(out, "history_check", s->history_check);
    if (s->history_check_error)
      add_str(out, "history_check_error", s->history_check_error);
  }
  if (s->in_force) {
    vd_buf_adds(out, ",\"in_force\":");
    vd_buf_add(out, s->in_force, s->in_force_len);
  }
  vd_time_format(s->started_ms, VD_DEFAULT_OFFSET_MIN, ts);
  add_str(out, "started_at", ts);
  add_int(out, "uptime_s", (long long)((s->now_ms - s->started_ms) / 1000));
  add_int(out, "workers", s->workers);
  add_int(out, "connections", s->connections);
  if (s->heap_bytes >= 0)
    add_int(out, "heap_in_use_bytes", (long long)s->heap_bytes);
  add_str(out, "log_mode", s->log_mode);
  add_int(out, "decisions", (long long)s->decisions);
  vd_buf_adds(out, ",\"errors\":{");
  for (k = 0; k < VD_ERR_COUNT; k++) {
    const char *name = vd_err_name(k + VD_ERR_FIRST_ + 1);
    if (!s->errors[k])
      continue;
    if (!first)
      vd_buf_addc(out, ',');
    vd_buf_add_json_str(out, name, strlen(name));
    vd_buf_addc(out, ':');
    vd_buf_add_int(out, (long long)s->errors[k]);
    total += s->errors[k];
    first = 0;
  }
  vd_buf_addc(out, '}');
  add_int(out, "errors_total", (long long)total);
  vd_buf_adds(out, ",\"budget\":{\"mode\":");
  vd_buf_add_json_str(out, s->budget_mode, strlen(s->budget_mode));
  add_int(out, "instructions", (long long)s->instructions);
  add_int(out, "recounted", (long long)s->recounted);
  add_int(out, "interrupts", (long long)s->interrupts);
  if (s->overruns) /* only once one has happened */
    add_int(out, "overruns", (long long)s->overruns);
  vd_buf_adds(out, "}}}\n");
}

void vd_wire_in_force(vd_buf_t *out, vd_engine_t *e) {
  char path[VD_PATH_MAX];
  size_t r, k;
  vd_buf_reset(out);
  vd_buf_addc(out, '{');
  for (r = 0; r <= vd_engine_region_count(e); r++) {
    const char *region = r ? vd_engine_region(e, r - 1) : "national";
    int first = 1;
    if (r)
      vd_buf_addc(out, ',');
    vd_buf_add_json_str(out, region, strlen(region));
    vd_buf_add(out, ":{", 2);
    for (k = 0; k < vd_engine_kind_count(e); k++) {
      const char *kind = vd_engine_kind(e, k);
      const char *pr = vd_engine_policy_region(e, kind, region);
      if (!pr)
        continue;
      vd_engine_policy_path(path, pr, kind);
      if (!first)
        vd_buf_addc(out, ',');
      vd_buf_add_json_str(out, kind, strlen(kind));
      vd_buf_addc(out, ':');
      vd_buf_add_json_str(out, path, strlen(path));
      first = 0;
    }
    vd_buf_addc(out, '}');
  }
  vd_buf_addc(out, '}');
}

void vd_wire_write_activated(vd_buf_t *out, const char *id_json,
                             const char *revision, const char *previous) {
  open_line(out, id_json);
  vd_buf_adds(out, ",\"ok\":true");
  add_str(out, "revision", revision);
  add_str(out, "previous", previous);
  vd_buf_adds(out, strcmp(revision, previous) == 0 ? ",\"unchanged\":true}\n"
                                                   : ",\"unchanged\":false}\n");
}

void vd_wire_write_diff(vd_buf_t *out, const char *id_json, const char *from,
                        const char *to, const char *text, size_t len) {
  open_line(out, id_json);
  add_str(out, "from", from);
  add_str(out, "to", to);
  vd_buf_adds(out, ",\"diff\":");
  vd_buf_add_json_str(out, text ? text : "", len);
  vd_buf_add(out, "}\n", 2);
}

void vd_wire_write_revisions(vd_buf_t *out, const char *id_json,
                             const char *lists, size_t len) {
  open_line(out, id_json);
  vd_buf_add(out, lists, len);
  vd_buf_add(out, "}\n", 2);
}

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

void vd_framer_init(vd_framer_t *f, size_t max_line) {
  vd_buf_init(&f->buf);
  f->start = 0;
  f->scanned = 0;
  f->max_line = max_line;
}

void vd_framer_release(vd_framer_t *f) { vd_buf_release(&f->buf); }

void vd_framer_feed(vd_framer_t *f, const char *p, size_t n) {
  if (f->start > 0 && (f->start == f->buf.len || f->start > f->buf.cap / 2)) {
    vd_buf_consume(&f->buf, f->start);
    f->start = 0;
  }
  vd_buf_add(&f->buf, p, n);
}

int vd_framer_next(vd_framer_t *f, const char **line, size_t *len) {
  char *base = f->buf.data + f->start;
  size_t avail = f->buf.len - f->start;
  char *nl;
  if (avail == 0)
    return 0;
  nl = memchr(base + f->scanned, '\n', avail - f->scanned);
  if (!nl) {
    f->scanned = avail;
    /* max_line counts the line's content: a '\r' that may be the first
     * half of "\r\n" is not content yet */
    if (avail == f->max_line + 1 && base[avail - 1] == '\r')
      return 0;
    return avail > f->max_line ? -1 : 0;
  }
  *len = (size_t)(nl - base);
  if (*len && base[*len - 1] == '\r')
    (*len)--;
  if (*len > f->max_line)
    return -1;
  *line = base;
  f->start += (size_t)(nl - base) + 1;
  f->scanned = 0;
  return 1;
}

size_t vd_framer_pending(const vd_framer_t *f) {
  return f->buf.len - f->start;
}

int vd_hostport_split(const char *spec, char *host, size_t cap,
                      const char **port) {
  const char *colon = strrchr(spec, ':'), *h = spec;
  size_t n;
  if (!colon || !colon[1])
    return -1;
  if (spec[0] == '[') { /* [::1]:7000 */
    if (colon < spec + 2 || colon[-1] != ']')
      return -1;
    h = spec + 1;
    n = (size_t)(colon - 1 - h);
  } else {
    n = (size_t)(colon - h);
  }
  if (n == 0 || n >= cap)
    return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  *port = colon + 1;
  return 0;
}

/* ------------------------------------------------------------------------
 * HTTP (core/daemon/http.c frames the messages; these are the bodies)
 * ------------------------------------------------------------------------ */

int vd_wire_http_status(int code) {
  switch (code) {
  case 0: return 200;
  case VD_EBAD_REQUEST: return 400;
  case VD_EBAD_INPUT: return 422;
  case VD_EUNKNOWN_KIND:
  case VD_EUNKNOWN_REGION:
  case VD_ENOT_FOUND: return 404;
  case VD_ETOO_LARGE: return 413;
  case VD_EUNAUTHORIZED: return 401;
  case VD_EFORBIDDEN: return 403;
  case VD_EINVALID: return 422; /* a bundle refused by its checks */
  case VD_EPOLICY_ERROR: return 500;
  default: return 503; /* policy_timeout, policy_memory, internal, ... */
  }
}

int vd_wire_kind_request(vd_buf_t *out, const char *kind, const char *region,
                         const char *at, const char *id_json,
                         const char *body, size_t len, vd_buf_t *err) {
  yajl_handle y = yajl_alloc(NULL, NULL, NULL);
  yajl_status st;
  if (!y) {
    vd_buf_adds(err, "out of memory");
    return VD_ENOMEM;
  }
  /* one JSON value and nothing after it: a body cannot add top-level
   * fields of its own (a second "kind") to the request built around it */
  st = yajl_parse(y, (const unsigned char *)body, len);
  if (st == yajl_status_ok)
    st = yajl_complete_parse(y);
  if (st != yajl_status_ok) {
    unsigned char *m = yajl_get_error(y, 0, (const unsigned char *)body, len);
    vd_buf_addf(err, "the body is not one JSON value: %s (byte %zu)",
                m ? (const char *)m : "?", yajl_get_bytes_consumed(y));
    if (m)
      yajl_free_error(y, m);
    yajl_free(y);
    return VD_EBAD_REQUEST;
  }
  yajl_free(y);
  vd_buf_adds(out, "{\"kind\":");
  vd_buf_add_json_str(out, kind, strlen(kind));
  if (region) {
    vd_buf_adds(out, ",\"region\":");
    vd_buf_add_json_str(out, region, strlen(region));
  }
  if (at) {
    vd_buf_adds(out, ",\"at\":");
    vd_buf_add_json_str(out, at, strlen(at));
  }
  if (id_json) {
    vd_buf_adds(out, ",\"id\":");
    vd_buf_add_json_str(out, id_json, strlen(id_json));
  }
  vd_buf_adds(out, ",\"input\":");
  vd_buf_add(out, body, len);
  vd_buf_addc(out, '}');
  return 0;
}

void vd_wire_write_record(vd_buf_t *out, const vd_history_value_t *row) {
  int i;
  int bad = row[VD_HISTORY_ERROR_CODE].text &&
            (strcmp(row[VD_HISTORY_ERROR_CODE].text, "bad_request") == 0 ||
             strcmp(row[VD_HISTORY_ERROR_CODE].text, "too_large") == 0);
  vd_buf_addc(out, '{');
  for (i = 0; i < VD_HISTORY_NCOLUMNS; i++) {
    const vd_history_value_t *v = &row[i];
    int json = i == VD_HISTORY_RESULT || i == VD_HISTORY_TRACE ||
               i == VD_HISTORY_FACTS || (i == VD_HISTORY_REQUEST && !bad);
    if (i)
      vd_buf_addc(out, ',');
    vd_buf_add_json_str(out, vd_history_column_name(i),
                        strlen(vd_history_column_name(i)));
    vd_buf_addc(out, ':');
    if (!v->text)
      vd_buf_adds(out, "null");
    else if (v->is_int)
      vd_buf_add_int(out, (long long)v->i);
    else if (json) /* stored as the JSON the daemon wrote or decoded */
      vd_buf_add(out, v->text, v->len);
    else
      vd_buf_add_json_str(out, v->text, v->len);
  }
  vd_buf_adds(out, "}\n");
}

int vd_wire_idem_valid(const char *key, size_t len) {
  size_t i;
  if (len == 0 || len > VD_IDEM_KEY_MAX)
    return 0;
  for (i = 0; i < len; i++)
    if (key[i] < 0x21 || key[i] > 0x7e)
      return 0;
  return 1;
}

/* vd_wire_peek_idem()'s walk: the top-level member named "idem". */
typedef struct idem_walk {
  int depth;         /* 1 inside the top-level object */
  int at_idem;       /* the last top-level key was "idem" */
  char *out;
  size_t cap;
  int found;
} idem_walk_t;

static int iw_value(void *ctx) {
  idem_walk_t *w = ctx;
  w->at_idem = 0;
  return 1;
}
static int iw_bool(void *ctx, int b) { (void)b; return iw_value(ctx); }
static int iw_number(void *ctx, const char *s, size_t n) {
  (void)s;
  (void)n;
  return iw_value(ctx);
}
static int iw_string(void *ctx, const unsigned char *s, size_t n) {
  idem_walk_t *w = ctx;
  if (w->depth == 1 && w->at_idem && n < w->cap) {
    memcpy(w->out, s, n);
    w->out[n] = '\0';
    w->found = 1;
  }
  w->at_idem = 0;
  return 1;
}
static int iw_key(void *ctx, const unsigned char *s, size_t n) {
  idem_walk_t *w = ctx;
  w->at_idem = w->depth == 1 && n == 4 && memcmp(s, "idem", 4) == 0;
  return 1;
}
static int iw_open(void *ctx) {
  idem_walk_t *w = ctx;
  w->depth++;
  w->at_idem = 0;
  return w->depth < 64; /* deeper: not a request worth walking */
}
static int iw_close(void *ctx) {
  idem_walk_t *w = ctx;
  w->depth--;
  return 1;
}

int vd_wire_peek_idem(const char *line, size_t len, char *out, size_t cap) {
  static const yajl_callbacks cb = {
      iw_value, iw_bool, NULL, NULL, iw_number, iw_string,
      iw_open,  iw_key,  iw_close, iw_open, iw_close};
  idem_walk_t w;
  yajl_handle y;
  yajl_status st;
  if (!memmem(line, len, "\"idem\"", 6))
    return 0; /* the common case: no key, no walk */
  memset(&w, 0, sizeof w);
  w.out = out;
  w.cap = cap;
  y = yajl_alloc(&cb, NULL, &w);
  if (!y)
    return 0;
  st = yajl_parse(y, (const unsigned char *)line, len);
  if (st == yajl_status_ok)
    st = yajl_complete_parse(y);
  yajl_free(y);
  /* a line that is not JSON is decided, and refused, as it is */
  return st == yajl_status_ok && w.found &&
         vd_wire_idem_valid(out, strlen(out));
}
