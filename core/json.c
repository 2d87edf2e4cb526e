/*
 * json.c - JSON text <-> Lua values (see include/verdict/json.h).
 *
 * Decoding: yajl's SAX callbacks push values straight onto the Lua stack.
 * Invariant while parsing: the stack holds, from `base`, one table per open
 * container, and for an open object whose key has been read, that key above
 * its table.  A scalar or a closed container is stored into the container
 * below it at once, so the stack depth is O(nesting), never O(size).
 *
 * Encoding: a recursive walk with a depth bound (which also stops cycles),
 * keys of objects sorted bytewise for a canonical output.
 *
 * Thread: whichever thread owns the lua_State; no global mutable state.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <yajl_parse.h>

#include "verdict/error.h"
#include "verdict/json.h"

char vd_json_null_tag;

static const char ARRAY_MT[] = "vd.json.array";
static const char OBJECT_MT[] = "vd.json.object";

void vd_json_setup(lua_State *L) {
  /* Both markers hide themselves from getmetatable() and refuse
   * setmetatable(), so a policy cannot change them for every later call. */
  luaL_newmetatable(L, ARRAY_MT);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newmetatable(L, OBJECT_MT);
  lua_pushliteral(L, "object");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

void vd_json_push_marker(lua_State *L, int kind) {
  lua_getfield(L, LUA_REGISTRYINDEX, kind == 'a' ? ARRAY_MT : OBJECT_MT);
}

int vd_json_marker(lua_State *L, int idx) {
  int r = 0;
  if (!lua_getmetatable(L, idx))
    return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MT);
  if (lua_rawequal(L, -1, -2)) {
    r = 1;
  } else {
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, OBJECT_MT);
    if (lua_rawequal(L, -1, -2))
      r = 2;
  }
  lua_pop(L, 2);
  return r;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

typedef struct frame {
  char is_array;
  lua_Integer n; /* elements stored so far, for arrays */
} frame_t;

typedef struct decoder {
  lua_State *L;
  int depth, max_depth;
  int too_deep;
  int bad_utf8; /* yajl lets overlong forms and surrogates through */
  frame_t frames[VD_JSON_MAX_DEPTH + 1];
} decoder_t;

/* A value is on top of the stack: store it into the open container, if
 * any.  With no open container it is the result and stays. */
static void store(decoder_t *d) {
  lua_State *L = d->L;
  frame_t *f;
  if (d->depth == 0)
    return;
  f = &d->frames[d->depth - 1];
  if (f->is_array)
    lua_rawseti(L, -2, ++f->n);
  else
    lua_rawset(L, -3); /* table, key, value */
}

static int on_null(void *ctx) {
  decoder_t *d = ctx;
  lua_pushlightuserdata(d->L, vd_json_null);
  store(d);
  return 1;
}

static int on_boolean(void *ctx, int v) {
  decoder_t *d = ctx;
  lua_pushboolean(d->L, v);
  store(d);
  return 1;
}

static int on_number(void *ctx, const char *s, size_t n) {
  decoder_t *d = ctx;
  char tmp[64];
  char *end;
  if (n >= sizeof tmp) { /* absurdly long number text: read it as a float */
    char *p = malloc(n + 1);
    double v;
    if (!p)
      return 0;
    memcpy(p, s, n);
    p[n] = '\0';
    v = strtod(p, NULL);
    free(p);
    lua_pushnumber(d->L, v);
    store(d);
    return 1;
  }
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (!memchr(s, '.', n) && !memchr(s, 'e', n) && !memchr(s, 'E', n)) {
    long long v;
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno == 0 && *end == '\0') {
      lua_pushinteger(d->L, (lua_Integer)v);
      store(d);
      return 1;
    }
  }
  lua_pushnumber(d->L, strtod(tmp, NULL));
  store(d);
  return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n) {
  decoder_t *d = ctx;
  if (!vd_utf8_valid((const char *)s, n)) {
    d->bad_utf8 = 1;
    return 0;
  }
  lua_pushlstring(d->L, (const char *)s, n);
  store(d);
  return 1;
}

static int open_container(decoder_t *d, int is_array) {
  lua_State *L = d->L;
  if (d->depth >= d->max_depth) {
    d->too_deep = 1;
    return 0;
  }
  if (!lua_checkstack(L, 4))
    luaL_error(L, "not enough memory");
  /* Room for a typical request's fields up front: growing a table
   * rehashes it at 1, 2, 4 and 8 keys, the largest cost of decoding. */
  lua_createtable(L, is_array ? 4 : 0, is_array ? 0 : 8);
  vd_json_push_marker(L, is_array ? 'a' : 'o');
  lua_setmetatable(L, -2);
  d->frames[d->depth].is_array = (char)is_array;
  d->frames[d->depth].n = 0;
  d->depth++;
  return 1;
}

static int close_container(decoder_t *d) {
  d->depth--;
  store(d);
  return 1;
}

static int on_start_map(void *ctx) { return open_container(ctx, 0); }
static int on_end_map(void *ctx) { return close_container(ctx); }
static int on_start_array(void *ctx) { return open_container(ctx, 1); }
static int on_end_array(void *ctx) { return close_container(ctx); }

static int on_map_key(void *ctx, const unsigned char *s, size_t n) {
  decoder_t *d = ctx;
  if (!vd_utf8_valid((const char *)s, n)) {
    d->bad_utf8 = 1;
    return 0;
  }
  lua_pushlstring(d->L, (const char *)s, n);
  return 1;
}

static const yajl_callbacks decode_callbacks = {
  on_null, on_boolean, NULL, NULL, on_number, on_string,
  on_start_map, on_map_key, on_end_map, on_start_array, on_end_array,
};

/* Turn yajl's multi-line message into one line and note the offset. */
static void set_parse_error(yajl_handle h, const char *s, size_t n,
                            vd_buf_t *err) {
  unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)s, n);
  size_t at = yajl_get_bytes_consumed(h);
  char *p, *nl;
  vd_buf_reset(err);
  vd_buf_addf(err, "invalid JSON at byte %zu: ", at);
  p = (char *)msg;
  if (p) {
    /* yajl says "parse error: X\n" or "lexical error: X\n" */
    nl = strchr(p, '\n');
    if (nl)
      *nl = '\0';
    vd_buf_adds(err, p);
    yajl_free_error(h, msg);
  }
}

/* Parse into Lua values.  *slot holds the yajl handle while parsing so
 * that, if a callback raises a Lua error, the protected caller can free it. */
static int decode(lua_State *L, const char *s, size_t n, int max_depth,
                  vd_buf_t *err, yajl_handle *slot) {
  decoder_t d;
  yajl_handle h;
  yajl_status st;
  int top = lua_gettop(L);
  int rc = 0;

  d.L = L;
  d.depth = 0;
  d.too_deep = 0;
  d.bad_utf8 = 0;
  d.max_depth = max_depth > 0 && max_depth <= VD_JSON_MAX_DEPTH
                    ? max_depth
                    : VD_JSON_MAX_DEPTH;
  if (!lua_checkstack(L, d.max_depth * 2 + 8))
    luaL_error(L, "not enough memory");
  h = *slot = yajl_alloc(&decode_callbacks, NULL, &d);
  if (!h)
    luaL_error(L, "not enough memory");
  st = yajl_parse(h, (const unsigned char *)s, n);
  if (st == yajl_status_ok)
    st = yajl_complete_parse(h);
  if (st != yajl_status_ok) {
    if (d.too_deep) {
      vd_buf_reset(err);
      vd_buf_addf(err, "JSON nested deeper than %d levels at byte %zu",
                  d.max_depth, yajl_get_bytes_consumed(h));
    } else if (d.bad_utf8) {
      vd_buf_reset(err);
      vd_buf_addf(err, "invalid UTF-8 in a string before byte %zu",
                  yajl_get_bytes_consumed(h));
    } else {
      set_parse_error(h, s, n, err);
    }
    rc = VD_EBAD_REQUEST;
  } else if (lua_gettop(L) != top + 1) { /* blank input */
    vd_buf_reset(err);
    vd_buf_adds(err, "invalid JSON at byte 0: no value");
    rc = VD_EBAD_REQUEST;
  }
  *slot = NULL;
  yajl_free(h);
  if (rc)
    lua_settop(L, top);
  return rc;
}

int vd_json_decode(lua_State *L, const char *s, size_t n, int max_depth,
                   vd_buf_t *err) {
  yajl_handle slot = NULL;
  return decode(L, s, n, max_depth, err, &slot);
}

typedef struct decode_args {
  const char *s;
  size_t n;
  int max_depth;
  vd_buf_t *err;
  yajl_handle slot;
  int rc;
} decode_args_t;

static int decode_k(lua_State *L) {
  decode_args_t *a = lua_touserdata(L, 1);
  lua_pop(L, 1);
  a->rc = decode(L, a->s, a->n, a->max_depth, a->err, &a->slot);
  return a->rc == 0 ? 1 : 0;
}

int vd_json_decode_protected(lua_State *L, const char *s, size_t n,
                             int max_depth, vd_buf_t *err) {
  decode_args_t a = {s, n, max_depth, err, NULL, 0};
  int status;
  if (!lua_checkstack(L, 3))
    return VD_ENOMEM;
  lua_pushcfunction(L, decode_k);
  lua_pushlightuserdata(L, &a);
  status = lua_pcall(L, 1, 1, 0);
  if (status != LUA_OK) {
    lua_pop(L, 1);
    if (a.slot) /* a callback raised mid-parse */
      yajl_free(a.slot);
    vd_buf_reset(err);
    vd_buf_adds(err, "not enough memory to decode the request");
    return VD_ENOMEM;
  }
  if (a.rc != 0) {
    lua_pop(L, 1);
    return a.rc;
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

typedef struct encoder {
  lua_State *L;
  vd_buf_t *out;
  vd_buf_t *err;
  vd_buf_t path; /* "result.deadlines" while inside that value */
  int depth;
} encoder_t;

static int enc_fail(encoder_t *e, const char *what) {
  vd_buf_reset(e->err);
  vd_buf_addf(e->err, "%s: %s", e->path.data ? e->path.data : "value", what);
  return VD_EINVALID;
}

void vd_json_add_double(vd_buf_t *out, double d) {
  char tmp[40];
  int prec;
  for (prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  vd_buf_adds(out, tmp);
  if (!strpbrk(tmp, ".eEn")) /* keep it a float when read back */
    vd_buf_adds(out, ".0");
}

static int encode_value(encoder_t *e, int idx);

typedef struct keyref {
  const char *s;
  size_t n;
  int slot; /* stack index of a copy of the key */
} keyref_t;

static int keyref_cmp(const void *a, const void *b) {
  const keyref_t *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->s, y->s, n);
  if (c)
    return c;
  return x->n < y->n ? -1 : x->n > y->n;
}

/* Is the table at idx a sequence 1..n with nothing else?  Sets *n. */
static int is_sequence(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TNUMBER || !lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    {
      lua_Integer k = lua_tointeger(L, -1);
      if (k < 1) {
        lua_pop(L, 1);
        return 0;
      }
      if (k > max)
        max = k;
    }
    count++;
  }
  *n = count;
  return count == max;
}

static int encode_array(encoder_t *e, int idx, lua_Integer n) {
  size_t mark = e->path.len;
  lua_Integer i;
  vd_buf_addc(e->out, '[');
  for (i = 1; i <= n; i++) {
    int rc;
    if (i > 1)
      vd_buf_addc(e->out, ',');
    vd_buf_addc(&e->path, '[');
    vd_buf_add_int(&e->path, (long long)i);
    vd_buf_addc(&e->path, ']');
    lua_rawgeti(e->L, idx, i);
    rc = encode_value(e, lua_gettop(e->L));
    lua_pop(e->L, 1);
    if (rc)
      return rc;
    e->path.len = mark;
    e->path.data[mark] = '\0';
  }
  vd_buf_addc(e->out, ']');
  return 0;
}

static int encode_object(encoder_t *e, int idx) {
  lua_State *L = e->L;
  keyref_t small[16], *keys = small;
  size_t nkeys = 0, cap = 16, i, mark = e->path.len;
  int rc = 0, base = lua_gettop(L);

  /* Each key is copied onto the stack (nothing is allocated, so encoding
   * never raises) and remembered by its stack slot, to be pushed back. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      rc = enc_fail(e, "table mixes array and object keys, or has a "
                       "non-string key; cannot encode it as JSON");
      goto done;
    }
    if (!lua_checkstack(L, 3)) {
      rc = enc_fail(e, "object has too many keys");
      goto done;
    }
    if (nkeys == cap) {
      keyref_t *k2 = malloc(sizeof *k2 * cap * 2);
      if (!k2) {
        rc = enc_fail(e, "out of memory");
        goto done;
      }
      memcpy(k2, keys, sizeof *k2 * nkeys);
      if (keys != small)
        free(keys);
      keys = k2;
      cap *= 2;
    }
    lua_pushvalue(L, -1);
    lua_insert(L, -2); /* keep the copy below the iteration key */
    keys[nkeys].s = lua_tolstring(L, -2, &keys[nkeys].n);
    keys[nkeys].slot = lua_gettop(L) - 1;
    nkeys++;
  }
  qsort(keys, nkeys, sizeof *keys, keyref_cmp);
  vd_buf_addc(e->out, '{');
  for (i = 0; i < nkeys; i++) {
    if (i)
      vd_buf_addc(e->out, ',');
    vd_buf_add_json_str(e->out, keys[i].s, keys[i].n);
    vd_buf_addc(e->out, ':');
    vd_buf_addc(&e->path, '.');
    vd_buf_add(&e->path, keys[i].s, keys[i].n);
    lua_pushvalue(L, keys[i].slot);
    lua_rawget(L, idx);
    rc = encode_value(e, lua_gettop(L));
    lua_pop(L, 1);
    if (rc)
      goto done;
    e->path.len = mark;
    e->path.data[mark] = '\0';
  }
  vd_buf_addc(e->out, '}');
done:
  lua_settop(L, base);
  if (keys != small)
    free(keys);
  return rc;
}

static int encode_table(encoder_t *e, int idx) {
  lua_State *L = e->L;
  int marker = vd_json_marker(L, idx);
  lua_Integer n = 0;
  if (marker == 1) {
    n = (lua_Integer)lua_rawlen(L, idx);
    return encode_array(e, idx, n);
  }
  if (marker == 2)
    return encode_object(e, idx);
  if (is_sequence(L, idx, &n))
    return encode_array(e, idx, n); /* includes the empty table: [] */
  return encode_object(e, idx);
}

static int encode_value(encoder_t *e, int idx) {
  lua_State *L = e->L;
  int rc;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    vd_buf_adds(e->out, "null");
    return 0;
  case LUA_TBOOLEAN:
    vd_buf_adds(e->out, lua_toboolean(L, idx) ? "true" : "false");
    return 0;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      vd_buf_add_int(e->out, (long long)lua_tointeger(L, idx));
    } else {
      double d = (double)lua_tonumber(L, idx);
      if (!isfinite(d))
        return enc_fail(e, "cannot encode NaN or infinity as JSON");
      vd_json_add_double(e->out, d);
    }
    return 0;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (vd_buf_add_json_str(e->out, s, n))
      return enc_fail(e, "string is not valid UTF-8");
    return 0;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == vd_json_null) {
      vd_buf_adds(e->out, "null");
      return 0;
    }
    return enc_fail(e, "cannot encode a userdata as JSON");
  case LUA_TTABLE:
    if (e->depth >= VD_JSON_MAX_DEPTH)
      return enc_fail(e, "nested too deeply (or a table contains itself)");
    if (!lua_checkstack(L, 4))
      return enc_fail(e, "out of stack space");
    e->depth++;
    rc = encode_table(e, idx);
    e->depth--;
    return rc;
  default:
    return enc_fail(e, lua_typename(L, lua_type(L, idx)) &&
                               lua_type(L, idx) == LUA_TFUNCTION
                           ? "cannot encode a function as JSON"
                           : "cannot encode this value as JSON");
  }
}

int vd_json_encode(lua_State *L, int idx, vd_buf_t *out, const char *root,
                   vd_buf_t *err) {
  encoder_t e;
  int rc;
  e.L = L;
  e.out = out;
  e.err = err;
  e.depth = 0;
  vd_buf_init(&e.path);
  vd_buf_adds(&e.path, root ? root : "value");
  rc = encode_value(&e, lua_absindex(L, idx));
  vd_buf_release(&e.path);
  return rc;
}
