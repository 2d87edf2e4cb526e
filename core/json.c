/*
 * json.c - JSON text <-> Lua values (see include/verdict/json.h).
 *
 * Decoding: yajl's SAX callbacks push values straight onto the Lua stack;
 * a plain text is first read by a quick pass of our own that calls the
 * same callbacks ("The quick pass" below) and leaves anything else to yajl.
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <yajl_parse.h>

#include "verdict/error.h"
#include "verdict/json.h"
#include "verdict/sandbox.h"

char vd_json_null_tag;

static const char ARRAY_MT[] = "vd.json.array";
static const char OBJECT_MT[] = "vd.json.object";

/* The markers' metatables (array, object) into mts, from the sandbox of
 * L, which keeps them once vd_json_setup() has made them: 1; 0 for a
 * state that is not a sandbox's (mts unset).  With mts NULL, have the
 * sandbox keep them (read from the registry). */
static int markers_of(lua_State *L, const void *mts[2]) {
  vd_sandbox_t *sb = vd_sandbox_find(L);
  if (!sb)
    return 0;
  if (!mts) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, ARRAY_MT);
    sb->json_mt[0] = lua_topointer(L, -1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, OBJECT_MT);
    sb->json_mt[1] = lua_topointer(L, -1);
    lua_pop(L, 2);
    return 1;
  }
  if (!sb->json_mt[0])
    return 0;
  mts[0] = sb->json_mt[0];
  mts[1] = sb->json_mt[1];
  return 1;
}

void vd_json_setup(lua_State *L) {
  /* Both markers hide themselves from getmetatable() and refuse
   * setmetatable(), so a policy cannot change them for every later call. */
  /* Registered by name, and by the names' addresses for the lookups done
   * on every request (a light userdata key costs no string hashing). */
  luaL_newmetatable(L, ARRAY_MT);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, ARRAY_MT);
  luaL_newmetatable(L, OBJECT_MT);
  lua_pushliteral(L, "object");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, OBJECT_MT);
  markers_of(L, NULL); /* a sandbox keeps their addresses from now on */
}

void vd_json_push_marker(lua_State *L, int kind) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, kind == 'a' ? ARRAY_MT : OBJECT_MT);
}

int vd_json_marker(lua_State *L, int idx) {
  const void *mt, *mts[2];
  int r = 0;
  if (!lua_getmetatable(L, idx))
    return 0;
  mt = lua_topointer(L, -1);
  if (markers_of(L, mts)) {
    lua_pop(L, 1);
    return mt == mts[0] ? 1 : mt == mts[1] ? 2 : 0;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, ARRAY_MT);
  if (lua_topointer(L, -1) == mt) {
    r = 1;
  } else {
    lua_rawgetp(L, LUA_REGISTRYINDEX, OBJECT_MT);
    if (lua_topointer(L, -1) == mt)
      r = 2;
    lua_pop(L, 1);
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
  const char *ks; /* an object's: its key being read, as the text has it
                   * when the quick pass read it plain; else NULL */
  size_t kn;
} frame_t;

/* The decoder's key strings, kept per state (see "Key strings" below). */
#define KEYC_SLOTS 128 /* a power of two */
#define KEYC_WAYS 4    /* slots a string may take: a set */
#define KEYC_BYTES 22
#define KEYC_ORDS 64   /* a document's strings whose slot is foretold */

typedef struct keyc {
  uint64_t w[3];  /* its bytes, as key_words() packs them */
  int ref;        /* the string, in the registry at ref (0: none yet) */
  unsigned char len; /* its length; 0: none */
  unsigned char next; /* a set's first slot: the way to replace next */
} keyc_t;

static keyc_t *key_cache_of(lua_State *L, const int **markers,
                            unsigned char **ords, vd_json_cache_t **cache);
static vd_json_notes_t *cache_notes(vd_json_cache_t *c);

typedef struct decoder {
  lua_State *L;
  keyc_t *keys; /* L's sandbox's key strings, or NULL: none kept */
  const int *markers; /* with them: the markers' registry references
                       * (array, object), or 0 */
  unsigned char *ords; /* and for the n-th string of a document, the slot
                        * (+1; 0: none) its bytes were found in last time */
  unsigned nstr;       /* strings read so far (keys and values) */
  vd_json_notes_t *notes; /* vd_json_decode_flat(): the members noted
                           * as they are stored, or NULL */
  int flat;            /* with them, 1: a top-level object is to be left
                        * flat; 2: it is, its members' values above
                        * flat_base (flat_to_table()) */
  int flat_base;
  const char *sub;     /* the top-level key whose object's members are
                        * noted too, and its length */
  size_t subn;
  int in_sub;          /* the object open at depth 2 is sub's */
  const char *vs;      /* the string value being stored, as the text has
                        * it when the quick pass read it plain; else NULL */
  size_t vn;
  int depth, max_depth;
  int too_deep;
  int bad_utf8; /* yajl lets overlong forms and surrogates through */
  int overflow; /* a number beyond a double's range: it would read as an
                 * infinity, which no JSON text can mean or encode */
  frame_t frames[VD_JSON_MAX_DEPTH + 1];
} decoder_t;

/* A value is on top of the stack: store it into the open container, if
 * any.  With no open container it is the result and stays. */
static vd_json_note_t *note_member(decoder_t *d, int type);

/* A flat object (vd_json_decode_flat()) stays flat while its keys are
 * written plainly in the text and its members fit the notes: a member's
 * key is never pushed (the note has its bytes in the text), nor is a
 * string value written plainly (the same); any other value is pushed and
 * stays, the note's slot.  What flat_to_table() is given on top of the
 * stack besides those values: */
enum { FT_KEY,    /* a key, not written plainly (as a Lua string) */
       FT_PUSHED, /* one member more than the notes hold, its value */
       FT_TEXT }; /* the same, its value a plain string (d->vs) */
static void flat_to_table(decoder_t *d, int cur);

/* A member of a flat object, its key in the text (frames[0].ks), its
 * value on top when PUSHED, else the plain string at d->vs. */
static void store_flat(decoder_t *d, int type, int pushed) {
  vd_json_note_t *m = note_member(d, type);
  if (m)
    m->slot = pushed ? lua_gettop(d->L) : 0;
  else /* one more than the notes hold: a table from here on */
    flat_to_table(d, pushed ? FT_PUSHED : FT_TEXT);
}

/* TYPE: the value's Lua type (for the notes). */
static void store(decoder_t *d, int type) {
  lua_State *L = d->L;
  frame_t *f;
  if (d->depth == 0)
    return;
  f = &d->frames[d->depth - 1];
  if (f->is_array) {
    lua_rawseti(L, -2, ++f->n);
    return;
  }
  if (d->notes && d->depth <= 2) {
    if (d->flat == 2 && d->depth == 1) {
      store_flat(d, type, 1);
      return;
    }
    note_member(d, type);
  }
  lua_rawset(L, -3); /* table, key, value */
}

/* A member of the top-level object, or of the sub object, is about to be
 * stored (key, value on top): noted (vd_json_decode_flat()), from the
 * text where the quick pass read it plain (no Lua call), else from the
 * Lua strings. */
static vd_json_note_t *note_member(decoder_t *d, int type) {
  const frame_t *f = &d->frames[d->depth - 1];
  lua_State *L = d->L;
  vd_json_notes_t *nt = d->notes;
  vd_json_note_t *m;
  int *count;
  if (d->depth == 1) {
    count = &nt->ntop;
    if (*count < 0 || *count == VD_JSON_NOTES_TOP) {
      *count = -1;
      return NULL;
    }
    m = &nt->top[*count];
  } else {
    if (!d->in_sub)
      return NULL;
    count = &nt->nsub;
    if (*count < 0 || *count == VD_JSON_NOTES_SUB) {
      *count = -1;
      return NULL;
    }
    m = &nt->sub[*count];
  }
  (*count)++;
  m->slot = 0;
  if (f->ks) {
    m->k = f->ks;
    m->kn = f->kn;
  } else {
    m->k = lua_tolstring(L, -2, &m->kn);
  }
  m->type = type;
  if (type == LUA_TSTRING) {
    if (d->vs) {
      m->s = d->vs;
      m->n = d->vn;
    } else {
      m->s = lua_tolstring(L, -1, &m->n);
    }
  } else if (type == LUA_TTABLE) { /* a container just closed */
    m->array = d->frames[d->depth].is_array;
  }
  return m;
}

/* The notes begun again: nothing met yet. */
static void notes_reset(decoder_t *d) {
  if (d->notes) {
    d->notes->ntop = 0;
    d->notes->nsub = 0;
    d->in_sub = 0;
  }
}

static int on_null(void *ctx) {
  decoder_t *d = ctx;
  lua_pushlightuserdata(d->L, vd_json_null);
  store(d, LUA_TLIGHTUSERDATA);
  return 1;
}

static int on_boolean(void *ctx, int v) {
  decoder_t *d = ctx;
  lua_pushboolean(d->L, v);
  store(d, LUA_TBOOLEAN);
  return 1;
}

static int on_number(void *ctx, const char *s, size_t n) {
  decoder_t *d = ctx;
  char tmp[64];
  char *end;
  size_t neg = n && s[0] == '-', i, digits = n - neg;
  /* The common case, read here: an integer of 1 to 18 digits (it cannot
   * overflow), as strtoll below would read it. */
  if (digits >= 1 && digits <= 18) {
    long long v = 0;
    for (i = neg; i < n && s[i] >= '0' && s[i] <= '9'; i++)
      v = v * 10 + (s[i] - '0');
    if (i == n) {
      lua_pushinteger(d->L, (lua_Integer)(neg ? -v : v));
      store(d, LUA_TNUMBER);
      return 1;
    }
  }
  if (n >= sizeof tmp) { /* absurdly long number text: read it as a float */
    char *p = malloc(n + 1);
    double v;
    if (!p)
      return 0;
    memcpy(p, s, n);
    p[n] = '\0';
    v = strtod(p, NULL);
    free(p);
    if (isinf(v)) {
      d->overflow = 1;
      return 0;
    }
    lua_pushnumber(d->L, v);
    store(d, LUA_TNUMBER);
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
      store(d, LUA_TNUMBER);
      return 1;
    }
  }
  {
    double v = strtod(tmp, NULL);
    if (isinf(v)) {
      d->overflow = 1;
      return 0;
    }
    lua_pushnumber(d->L, v);
  }
  store(d, LUA_TNUMBER);
  return 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t n) {
  decoder_t *d = ctx;
  if (!vd_utf8_valid((const char *)s, n)) {
    d->bad_utf8 = 1;
    return 0;
  }
  lua_pushlstring(d->L, (const char *)s, n);
  d->vs = NULL; /* not the text's bytes: the string's */
  store(d, LUA_TSTRING);
  return 1;
}

/* Push a new container for the decoder, with its marker.  Room for a
 * typical request's fields up front: growing a table rehashes it at 1, 2,
 * 4 and 8 keys, the largest cost of decoding.  An object inside the
 * request (its input) gets room for the defaults the schema check adds to
 * it when it becomes the facts (core/sandbox.c).  DEPTH: the container's
 * (0: the outermost). */
static void push_container(lua_State *L, const int *markers, int is_array,
                           int depth) {
  lua_createtable(L, is_array ? 4 : 0, is_array ? 0 : depth == 1 ? 16 : 8);
  if (markers && markers[!is_array]) /* an integer key: cheaper */
    lua_rawgeti(L, LUA_REGISTRYINDEX, markers[!is_array]);
  else
    vd_json_push_marker(L, is_array ? 'a' : 'o');
  lua_setmetatable(L, -2);
}

/* Push the table of an object's N flat members, noted in TOP: each key
 * from its note, each value from its slot or its note, stored in order
 * (so the table a decode that is not flat makes, slot for slot). */
static void push_flat_members(lua_State *L, const int *markers,
                              const vd_json_note_t *top, int n) {
  int i;
  push_container(L, markers, 0, 0);
  for (i = 0; i < n; i++) {
    lua_pushlstring(L, top[i].k, top[i].kn);
    if (top[i].slot)
      lua_pushvalue(L, top[i].slot);
    else
      lua_pushlstring(L, top[i].s, top[i].n);
    lua_rawset(L, -3);
  }
}

/* The flat object open at depth 1 made a table, at d->flat_base + 1, of
 * its members so far, with CUR (FT_*) stored too, or, a key, left above
 * it for its value: the decode goes on as one that is not flat. */
static void flat_to_table(decoder_t *d, int cur) {
  lua_State *L = d->L;
  int base = d->flat_base;
  push_flat_members(L, d->markers, d->notes->top,
                    cur == FT_KEY ? d->notes->ntop : VD_JSON_NOTES_TOP);
  d->notes->ntop = -1;
  d->flat = 1;
  if (cur == FT_KEY) {
    lua_rotate(L, base + 1, 1); /* table, values..., key */
    lua_rotate(L, base + 2, 1); /* table, key, values... */
    lua_settop(L, base + 2);
    return;
  }
  lua_pushlstring(L, d->frames[0].ks, d->frames[0].kn);
  if (cur == FT_PUSHED)
    lua_pushvalue(L, -3);
  else
    lua_pushlstring(L, d->vs, d->vn);
  lua_rawset(L, -3);
  lua_rotate(L, base + 1, 1);
  lua_settop(L, base + 1);
}

static int open_container(decoder_t *d, int is_array) {
  lua_State *L = d->L;
  if (d->depth >= d->max_depth) {
    d->too_deep = 1;
    return 0;
  }
  /* (room on the stack: decode() made it for two slots a level, and for
   * the flat members) */
  if (d->flat == 1 && d->depth == 0 && !is_array) {
    /* vd_json_decode_flat(): the members left on the stack, no table */
    d->flat = 2;
    d->flat_base = lua_gettop(L);
  } else {
    push_container(L, d->markers, is_array, d->depth);
  }
  if (d->notes && d->depth == 1 && !d->frames[0].is_array) {
    /* a container under a top-level key (below the new table): the sub
     * object has its members noted anew */
    size_t kn = d->frames[0].kn;
    const char *k = d->frames[0].ks;
    if (!k)
      k = lua_tolstring(L, -2, &kn);
    d->in_sub = !is_array && kn == d->subn && memcmp(k, d->sub, kn) == 0;
    if (d->in_sub)
      d->notes->nsub = 0;
  }
  d->frames[d->depth].is_array = (char)is_array;
  d->frames[d->depth].n = 0;
  d->depth++;
  return 1;
}

static int close_container(decoder_t *d) {
  d->depth--;
  store(d, LUA_TTABLE);
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
  d->frames[d->depth - 1].ks = NULL; /* not the text's bytes */
  if (d->flat == 2 && d->depth == 1)
    flat_to_table(d, FT_KEY); /* a flat object's keys are the text's */
  return 1;
}

static const yajl_callbacks decode_callbacks = {
  on_null, on_boolean, NULL, NULL, on_number, on_string,
  on_start_map, on_map_key, on_end_map, on_start_array, on_end_array,
};

/* ------------------------------------------------------------------------
 * The quick pass: the common request read without yajl
 *
 * Most requests are plain JSON: no comments, nothing malformed, few
 * escapes.  quick_decode() reads such a text itself and drives the same
 * callbacks yajl would (open_container, on_map_key, on_string, on_number,
 * ...), in the same order, so the tables it leaves are the ones the yajl
 * pass would make, key for key and slot for slot.  It accepts only what
 * yajl accepts, and reads it as yajl does: JSON's grammar, whitespace of
 * space, tab, CR and LF, strings without control bytes, the escapes \" \\
 * \/ \b \f \n \r \t and \uXXXX (a surrogate only as a high-low pair, no
 * U+0000).  At anything else (a malformed text, an escape it does not
 * decode, a callback that refuses: too deep, invalid UTF-8, a number out
 * of range) it takes back what it pushed and returns 0, and the text is
 * read again by yajl, whose answer, error messages included, is then the
 * answer.  So it changes what a decode costs, never what it gives.
 * ------------------------------------------------------------------------ */

/* Bytes a string may hold as they are: not a quote, a backslash or a
 * control byte, and ASCII (bytes above are checked as UTF-8). */
static const unsigned char quick_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The bytes of w (8 read from memory, little-endian) that are a control
 * byte, '"', '\\' or not ASCII, as their high bits.  The "has a byte less
 * than n" and "has a zero byte" word tests: a false mark can only follow a
 * true one, so the lowest mark is exactly the first such byte. */
static uint64_t care_mask(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ULL;
  uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
  return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs) |
          w) & (ones * 0x80);
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The 4 hex digits at p as a code unit, or -1. */
static long hex4(const unsigned char *p) {
  long v = 0;
  int i, h;
  for (i = 0; i < 4; i++) {
    if ((h = hexval(p[i])) < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Unescape the string body [p, end) (it has escapes) into out (room for
 * end - p bytes: an escape never decodes longer than it is written);
 * its length, or -1 for an escape left to yajl. */
static long quick_unescape(const unsigned char *p, const unsigned char *end,
                           unsigned char *out) {
  unsigned char *o = out;
  while (p < end) {
    long cp;
    if (*p != '\\') {
      *o++ = *p++;
      continue;
    }
    if (end - p < 2)
      return -1;
    switch (p[1]) {
    case '"': *o++ = '"'; p += 2; continue;
    case '\\': *o++ = '\\'; p += 2; continue;
    case '/': *o++ = '/'; p += 2; continue;
    case 'b': *o++ = '\b'; p += 2; continue;
    case 'f': *o++ = '\f'; p += 2; continue;
    case 'n': *o++ = '\n'; p += 2; continue;
    case 'r': *o++ = '\r'; p += 2; continue;
    case 't': *o++ = '\t'; p += 2; continue;
    case 'u': break;
    default: return -1;
    }
    if (end - p < 6 || (cp = hex4(p + 2)) <= 0 ||
        (cp >= 0xDC00 && cp <= 0xDFFF))
      return -1;
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its pair */
      long lo;
      if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
          (lo = hex4(p + 2)) < 0xDC00 || lo > 0xDFFF)
        return -1;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      p += 6;
    }
    if (cp < 0x80) {
      *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
      *o++ = (unsigned char)(0xC0 | (cp >> 6));
      *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *o++ = (unsigned char)(0xE0 | (cp >> 12));
      *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
      *o++ = (unsigned char)(0xF0 | (cp >> 18));
      *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
      *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
  }
  return (long)(o - out);
}

/* ------------------------------------------------------------------------
 * Key strings: a request's keys are the same few every time, and making
 * each a Lua string again (hashing its bytes, finding it among the
 * state's strings) is most of what a key costs.  A sandbox's decoder keeps
 * the strings of the plain ASCII keys it met, up to KEYC_BYTES bytes, in
 * KEYC_SLOTS slots outside the state, each holding its key's bytes and a
 * registry reference to its string (so the collector keeps it), in sets
 * of KEYC_WAYS slots found by the bytes' hash: a key whose bytes are one
 * of its set's slots' is pushed from the registry; any other takes a
 * free slot of the set, else its slots in turn (so keys that share a set,
 * a few of the eleven of a request, do not take each other's slot every
 * time).  The short string values that are not numbers, times or ids
 * (no digit in them: a category, a grade, a region) are kept the same
 * way; the others would only take the keys' slots.  The same string either way (Lua interns short strings), so
 * the tables made are the same.  The references live as long as the state
 * (vd_json_cache_t, freed with it); at most KEYC_SLOTS of them.
 * ------------------------------------------------------------------------ */

/* The bytes [b, b+n) (1 to KEYC_BYTES) as three words that tell them
 * apart: loads that together cover every byte (the first and last 8, and
 * the 8 after the first past 16; the first and last 4; the first, middle
 * and last byte), so two strings of one length with the same words are
 * the same bytes.  Reads nothing outside them. */
static inline void key_words(const unsigned char *b, size_t n,
                             uint64_t w[3]) {
  w[1] = w[2] = 0;
  if (n >= 8) {
    memcpy(&w[0], b, 8);
    memcpy(&w[1], b + n - 8, 8);
    if (n > 16)
      memcpy(&w[2], b + 8, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, b, 4);
    memcpy(&y, b + n - 4, 4);
    w[0] = (uint64_t)x | (uint64_t)y << 32;
  } else {
    w[0] = (uint64_t)b[0] | (uint64_t)b[n >> 1] << 8 |
           (uint64_t)b[n - 1] << 16;
  }
}

/* The first slot of the set of a string of n bytes packed as w. */
static size_t key_set(const uint64_t w[3], size_t n) {
  uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ull;
  h = (h ^ w[0]) * 0xff51afd7ed558ccdull;
  h = (h ^ w[1] ^ (w[2] << 1)) * 0xc4ceb9fe1a85ec53ull;
  return ((size_t)(h >> 57) & (KEYC_SLOTS - 1)) & ~(size_t)(KEYC_WAYS - 1);
}

/* Whether the plain ASCII bytes packed as w (key_words()) have a decimal
 * digit: a byte of 0x30 to 0x39 is one that adding 0x50 takes to 0x80 or
 * more and adding 0x46 does not (no carry between bytes below 0x80). */
static int words_have_digit(const uint64_t w[3]) {
  const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80;
  int i;
  for (i = 0; i < 3; i++)
    if ((w[i] + ones * 0x50) & ~(w[i] + ones * 0x46) & highs)
      return 1;
  return 0;
}

/* Push the string [b, b+n) (plain ASCII, 1 to KEYC_BYTES bytes), packed
 * as w, when a slot of its set has it, and return the slot; else NULL. */
static inline keyc_t *key_hit(decoder_t *d, keyc_t *set, const uint64_t w[3],
                              size_t n) {
  int i;
  for (i = 0; i < KEYC_WAYS; i++) {
    keyc_t *k = &set[i];
    if (k->len == n && k->w[0] == w[0] && k->w[1] == w[1] &&
        k->w[2] == w[2]) {
      lua_rawgeti(d->L, LUA_REGISTRYINDEX, k->ref);
      return k;
    }
  }
  return NULL;
}

/* Push it as a new string, kept in a slot of its set (a free one, else
 * the set's slots in turn); that slot. */
static keyc_t *key_put(decoder_t *d, keyc_t *set, const uint64_t w[3],
                       const unsigned char *b, size_t n) {
  lua_State *L = d->L;
  keyc_t *k;
  int i;
  for (i = 0; i < KEYC_WAYS && set[i].ref; i++)
    ;
  if (i == KEYC_WAYS) {
    i = set->next;
    set->next = (unsigned char)((i + 1) & (KEYC_WAYS - 1));
  }
  k = &set[i];
  lua_pushlstring(L, (const char *)b, n);
  lua_pushvalue(L, -1);
  if (k->ref) {
    k->len = 0; /* in case the store below raises */
    lua_rawseti(L, LUA_REGISTRYINDEX, k->ref);
  } else {
    k->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: nothing kept */
  }
  memcpy(k->w, w, sizeof k->w);
  k->len = (unsigned char)n;
  return k;
}

/* The string at p (after its opening quote) when it is the one the slot
 * foretold for the n-th string of a document holds: pushed, and the byte
 * after its closing quote; else NULL, nothing pushed.  The slot's bytes
 * are plain ASCII with no quote or backslash, so bytes equal to them and
 * then a quote are a whole string without escapes, which the full read
 * (quick_string) would find in that same slot: the same string. */
static inline const unsigned char *key_foretold(decoder_t *d,
                                                const unsigned char *p,
                                                const unsigned char *end) {
  const keyc_t *k;
  uint64_t w[3];
  size_t n;
  unsigned s;
  if (d->nstr >= KEYC_ORDS || !(s = d->ords[d->nstr]))
    return NULL;
  k = &d->keys[s - 1];
  n = k->len;
  if (!n || (size_t)(end - p) <= n || p[n] != '"')
    return NULL;
  key_words(p, n, w);
  if (k->w[0] != w[0] || k->w[1] != w[1] || k->w[2] != w[2])
    return NULL;
  lua_rawgeti(d->L, LUA_REGISTRYINDEX, k->ref);
  return p + n + 1;
}

/* A string with escapes or bytes above ASCII, [b, p) its body (p at its
 * closing quote): unescaped, checked and given to on_map_key (key) or
 * on_string; 0 to leave it to yajl. */
static int quick_string_slow(decoder_t *d, const unsigned char *b,
                             const unsigned char *p, int esc, int key) {
  unsigned char tmp[256];
  size_t n = (size_t)(p - b);
  if (esc) {
    long m;
    if (n > sizeof tmp || (m = quick_unescape(b, p, tmp)) < 0)
      return 0;
    b = tmp;
    n = (size_t)m;
  }
  return key ? on_map_key(d, b, n) : on_string(d, b, n);
}

/* A string read plain from the text, [b, b+n), pushed: a key is noted
 * where its object's member will find it; a value is stored. */
static inline void quick_plain_read(decoder_t *d, const unsigned char *b,
                                    size_t n, int key) {
  if (key) {
    d->frames[d->depth - 1].ks = (const char *)b;
    d->frames[d->depth - 1].kn = n;
  } else {
    d->vs = (const char *)b;
    d->vn = n;
    store(d, LUA_TSTRING);
  }
}

/* The string whose body starts at p: its closing quote, *esc and *high
 * set when it has escapes or bytes above ASCII; NULL for a string the
 * quick pass leaves to yajl (unterminated, a control byte). */
static const unsigned char *quick_scan(const unsigned char *p,
                                       const unsigned char *end, int *esc,
                                       int *high) {
  for (;;) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) { /* plain ASCII a word at a time */
      uint64_t w, m;
      memcpy(&w, p, 8);
      if (!(m = care_mask(w))) {
        p += 8;
        continue;
      }
      p += __builtin_ctzll(m) >> 3; /* the first byte that needs care */
      break;
    }
#endif
    if (p == end)
      return NULL;
    if (quick_plain[*p]) {
      p++;
    } else if (*p == '"') {
      return p;
    } else if (*p == '\\') {
      *esc = 1;
      if (end - p < 2)
        return NULL;
      p += 2; /* an escaped quote does not end the string */
    } else if (*p >= 0x80) {
      *high = 1;
      p++;
    } else {
      return NULL; /* a control byte */
    }
  }
}

/* quick_string() when the string is not the one foretold: read in full. */
static int quick_string_read(decoder_t *d, const unsigned char **pp,
                             const unsigned char *end, int key) {
  const unsigned char *p, *b = *pp + 1;
  int esc = 0, high = 0;
  size_t n;
  if (!(p = quick_scan(b, end, &esc, &high)))
    return 0;
  *pp = p + 1;
  if (esc || high) /* checked as UTF-8 by the callback */
    return quick_string_slow(d, b, p, esc, key);
  n = (size_t)(p - b);
  /* plain ASCII: valid UTF-8 already */
  if (d->keys && n && n <= KEYC_BYTES) {
    uint64_t w[3];
    key_words(b, n, w);
    if (key || !words_have_digit(w)) {
      keyc_t *set = &d->keys[key_set(w, n)], *k;
      if (!(k = key_hit(d, set, w, n)))
        k = key_put(d, set, w, b, n);
      if (d->ords && d->nstr <= KEYC_ORDS)
        d->ords[d->nstr - 1] = (unsigned char)(k - d->keys + 1);
      quick_plain_read(d, b, n, key);
      return 1;
    }
  }
  if (d->ords && d->nstr <= KEYC_ORDS)
    d->ords[d->nstr - 1] = 0;
  lua_pushlstring(d->L, (const char *)b, n);
  quick_plain_read(d, b, n, key);
  return 1;
}

/* A key or string value of a flat object's member (vd_json_decode_flat()),
 * the opening quote at *pp: written plainly, it is noted where it is in
 * the text and never pushed; else as quick_string_read() reads it. */
static int quick_flat_string(decoder_t *d, const unsigned char **pp,
                             const unsigned char *end, int key) {
  const unsigned char *p, *b = *pp + 1;
  int esc = 0, high = 0;
  if (!(p = quick_scan(b, end, &esc, &high)))
    return 0;
  *pp = p + 1;
  if (esc || high)
    return quick_string_slow(d, b, p, esc, key);
  if (key) {
    d->frames[0].ks = (const char *)b;
    d->frames[0].kn = (size_t)(p - b);
  } else {
    d->vs = (const char *)b;
    d->vn = (size_t)(p - b);
    store_flat(d, LUA_TSTRING, 0);
  }
  return 1;
}

/* The string whose opening quote is at *pp: given to on_map_key (key) or
 * on_string, *pp moved past its closing quote; 0 to leave it to yajl.
 * Inline (always: GCC's own measure stops short of it, and the call
 * costs a foretold string a third of what it costs): most strings are
 * the ones foretold. */
static inline __attribute__((always_inline)) int quick_string(decoder_t *d, const unsigned char **pp,
                               const unsigned char *end, int key) {
  if (d->flat == 2 && d->depth == 1)
    return quick_flat_string(d, pp, end, key);
  if (d->ords) {
    const unsigned char *q = key_foretold(d, *pp + 1, end);
    d->nstr++;
    if (q) {
      quick_plain_read(d, *pp + 1, (size_t)(q - *pp - 2), key);
      *pp = q;
      return 1;
    }
  }
  return quick_string_read(d, pp, end, key);
}

/* A number at *pp, by JSON's grammar, given to on_number. */
static int quick_number(decoder_t *d, const unsigned char **pp,
                        const unsigned char *end) {
  const unsigned char *p = *pp, *b = p, *digits;
  long long v = 0;
  int neg = 0;
  if (p < end && *p == '-') {
    p++;
    neg = 1;
  }
  if (p == end)
    return 0;
  digits = p;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    const unsigned char *lim = end - p > 18 ? p + 18 : end;
    while (p < lim && (unsigned)(*p - '0') <= 9)
      v = v * 10 + (*p++ - '0');
    while (p < end && (unsigned)(*p - '0') <= 9)
      p++;
  } else {
    return 0;
  }
  /* the common case, an integer of 1 to 18 digits (it cannot overflow),
   * as on_number would read it */
  if (p - digits <= 18 &&
      (p == end || (*p != '.' && *p != 'e' && *p != 'E'))) {
    *pp = p;
    lua_pushinteger(d->L, (lua_Integer)(neg ? -v : v));
    store(d, LUA_TNUMBER);
    return 1;
  }
  if (p < end && *p == '.') {
    if (++p == end || !(*p >= '0' && *p <= '9'))
      return 0;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    if (++p < end && (*p == '+' || *p == '-'))
      p++;
    if (p == end || !(*p >= '0' && *p <= '9'))
      return 0;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  *pp = p;
  return on_number(d, (const char *)b, (size_t)(p - b));
}

/* The literal word (true, false, null) at *pp. */
static int quick_word(const unsigned char **pp, const unsigned char *end,
                      const char *word, size_t n) {
  if ((size_t)(end - *pp) < n || memcmp(*pp, word, n) != 0)
    return 0;
  *pp += n;
  return 1;
}

/* Whitespace skipped; most texts have none between tokens, and every
 * whitespace byte is at most a space. */
#define QUICK_WS(p, end)                                                     \
  do {                                                                       \
    if ((p) < (end) && *(p) <= ' ')                                          \
      while ((p) < (end) && (*(p) == ' ' || *(p) == '\n' ||                  \
                             *(p) == '\r' || *(p) == '\t'))                  \
        (p)++;                                                               \
  } while (0)

/* Read s as described above: 1 with the value pushed, or 0 with the stack
 * and d as they were. */
static int quick_decode(decoder_t *d, const char *s, size_t n) {
  lua_State *L = d->L;
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  int top = lua_gettop(L);

value:
  QUICK_WS(p, end);
  if (p == end)
    goto refuse;
  switch (*p) {
  case '{':
    p++;
    if (!open_container(d, 0))
      goto refuse;
    QUICK_WS(p, end);
    if (p < end && *p == '}') {
      p++;
      close_container(d);
      goto after;
    }
    goto key;
  case '[':
    p++;
    if (!open_container(d, 1))
      goto refuse;
    QUICK_WS(p, end);
    if (p < end && *p == ']') {
      p++;
      close_container(d);
      goto after;
    }
    goto value;
  case '"':
    if (!quick_string(d, &p, end, 0))
      goto refuse;
    goto after;
  case 't':
    if (!quick_word(&p, end, "true", 4) || !on_boolean(d, 1))
      goto refuse;
    goto after;
  case 'f':
    if (!quick_word(&p, end, "false", 5) || !on_boolean(d, 0))
      goto refuse;
    goto after;
  case 'n':
    if (!quick_word(&p, end, "null", 4) || !on_null(d))
      goto refuse;
    goto after;
  default:
    if (!quick_number(d, &p, end))
      goto refuse;
    goto after;
  }

key:
  QUICK_WS(p, end);
  if (p == end || *p != '"' || !quick_string(d, &p, end, 1))
    goto refuse;
  QUICK_WS(p, end);
  if (p == end || *p != ':')
    goto refuse;
  p++;
  goto value;

after: /* a value has been stored, or is the result */
  QUICK_WS(p, end);
  if (d->depth == 0) {
    if (p != end)
      goto refuse; /* trailing garbage */
    return 1;
  }
  if (p == end)
    goto refuse;
  if (*p == ',') {
    p++;
    if (d->frames[d->depth - 1].is_array)
      goto value;
    goto key;
  }
  if (*p == (d->frames[d->depth - 1].is_array ? ']' : '}')) {
    p++;
    close_container(d);
    goto after;
  }

refuse:
  lua_settop(L, top);
  d->depth = 0;
  d->too_deep = 0;
  d->bad_utf8 = 0;
  d->overflow = 0;
  return 0;
}

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
 * that, if a callback raises a Lua error, the protected caller can free it
 * (vd_json_parser_free()).  SUB non-NULL: vd_json_decode_flat(), *flat
 * set as it says. */
static int decode(lua_State *L, const char *s, size_t n, int max_depth,
                  vd_buf_t *err, void **slot, int quick,
                  const char *sub, const vd_json_notes_t **flat) {
  decoder_t d;
  yajl_handle h;
  yajl_status st;
  vd_json_cache_t *c = NULL;
  int top = lua_gettop(L);
  int rc = 0;

  d.L = L;
  d.markers = NULL;
  d.ords = NULL;
  d.nstr = 0;
  d.notes = NULL;
  d.flat = 0;
  d.in_sub = 0;
  if (flat)
    *flat = NULL;
  if (quick) {
    d.keys = key_cache_of(L, &d.markers, &d.ords, &c);
  } else {
    vd_sandbox_t *sb = vd_sandbox_find(L);
    d.keys = NULL;
    c = sb ? sb->encoded : NULL;
  }
  if (c && sub) {
    d.notes = cache_notes(c);
    d.flat = 1;
    d.sub = sub;
    d.subn = strlen(sub);
    notes_reset(&d);
  }
  d.depth = 0;
  d.too_deep = 0;
  d.bad_utf8 = 0;
  d.overflow = 0;
  d.max_depth = max_depth > 0 && max_depth <= VD_JSON_MAX_DEPTH
                    ? max_depth
                    : VD_JSON_MAX_DEPTH;
  if (!lua_checkstack(L, d.max_depth * 2 + 8 +
                            (d.flat ? 2 * VD_JSON_NOTES_TOP : 0)))
    luaL_error(L, "not enough memory");
  if (quick && quick_decode(&d, s, n)) {
    if (d.flat == 2)
      *flat = d.notes;
    return 0;
  }
  /* yajl's keys are never the text's, so it makes no flat object, and
   * notes are read only of one: none */
  d.notes = NULL;
  d.flat = 0;
  *slot = h = yajl_alloc(&decode_callbacks, NULL, &d);
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
    } else if (d.overflow) {
      vd_buf_reset(err);
      vd_buf_addf(err, "number out of range (beyond 1.8e308) before byte %zu",
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
  void *slot = NULL;
  return decode(L, s, n, max_depth, err, &slot, 1, NULL, NULL);
}

int vd_json_decode_yajl(lua_State *L, const char *s, size_t n, int max_depth,
                        vd_buf_t *err) {
  void *slot = NULL;
  return decode(L, s, n, max_depth, err, &slot, 0, NULL, NULL);
}

typedef struct decode_args {
  const char *s;
  size_t n;
  int max_depth;
  vd_buf_t *err;
  void *slot; /* the yajl handle while parsing */
  int rc;
  const char *sub; /* vd_json_decode_flat()'s, or NULL */
  const vd_json_notes_t *flat; /* and its answer */
} decode_args_t;

/* Stack: args.  Returns what the decode pushed (nothing on an error). */
static int decode_k(lua_State *L) {
  decode_args_t *a = lua_touserdata(L, 1);
  lua_pop(L, 1);
  a->rc = decode(L, a->s, a->n, a->max_depth, a->err, &a->slot, 1, a->sub,
                 a->sub ? &a->flat : NULL);
  return a->rc ? 0 : lua_gettop(L); /* the value, or the flat values */
}

static int decode_protected(lua_State *L, const char *s, size_t n,
                            int max_depth, vd_buf_t *err, const char *sub,
                            const vd_json_notes_t **flat) {
  decode_args_t a = {s, n, max_depth, err, NULL, 0, sub, NULL};
  int status, top = lua_gettop(L);
  if (!lua_checkstack(L, 3))
    return VD_ENOMEM;
  lua_pushcfunction(L, decode_k);
  lua_pushlightuserdata(L, &a);
  status = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (status != LUA_OK) {
    lua_settop(L, top);
    vd_json_parser_free(a.slot); /* a callback raised mid-parse */
    vd_buf_reset(err);
    vd_buf_adds(err, "not enough memory to decode the request");
    return VD_ENOMEM;
  }
  if (flat)
    *flat = a.flat;
  return a.rc;
}

int vd_json_decode_protected(lua_State *L, const char *s, size_t n,
                             int max_depth, vd_buf_t *err) {
  return decode_protected(L, s, n, max_depth, err, NULL, NULL);
}

int vd_json_decode_flat(lua_State *L, const char *s, size_t n, int max_depth,
                        vd_buf_t *err, const char *sub,
                        const vd_json_notes_t **flat) {
  return decode_protected(L, s, n, max_depth, err, sub, flat);
}

int vd_json_decode_flat_in(lua_State *L, const char *s, size_t n,
                           int max_depth, vd_buf_t *err, const char *sub,
                           void **parser, const vd_json_notes_t **flat) {
  *parser = NULL;
  return decode(L, s, n, max_depth, err, parser, 1, sub, flat);
}


void vd_json_parser_free(void *parser) {
  if (parser)
    yajl_free((yajl_handle)parser);
}


/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */

/* Where the encoder is, for messages: one segment per open container,
 * turned into "result.deadlines[2]" only when something fails. */
typedef struct seg {
  const char *key; /* object key (anchored by its table), or NULL */
  size_t n;
  lua_Integer index; /* array index when key is NULL */
} seg_t;

typedef struct encoder {
  lua_State *L;
  vd_buf_t *out;
  vd_buf_t *err;
  const char *root;
  const void *array_mt, *object_mt; /* the markers' metatables */
  size_t limit;                     /* out->len may not pass this */
  int depth;
  int deepest;                      /* the largest depth reached so far */
  vd_sandbox_t *sb;                 /* L's sandbox (its cache), or NULL */
  seg_t segs[VD_JSON_MAX_DEPTH + 1];
} encoder_t;

static int enc_fail(encoder_t *e, const char *what) {
  int i;
  vd_buf_reset(e->err);
  vd_buf_adds(e->err, e->root ? e->root : "value");
  for (i = 0; i < e->depth; i++) {
    if (e->segs[i].key) {
      vd_buf_addc(e->err, '.');
      vd_buf_add(e->err, e->segs[i].key, e->segs[i].n);
    } else if (e->segs[i].index) {
      vd_buf_addf(e->err, "[%lld]", (long long)e->segs[i].index);
    }
  }
  vd_buf_addf(e->err, ": %s", what);
  return VD_EINVALID;
}

/* Before adding n bytes: fail (leaving `out` as it is) if they would take
 * the encoding past its limit.  Checked before every addition, so the
 * buffer grows only by what is allowed: a value that is huge as JSON (a
 * DAG of shared tables is exponential in its depth) stops at the limit,
 * having cost work in proportion to the limit, and never asks for more
 * memory than that. */
static int too_big(encoder_t *e, size_t n) {
  char what[96];
  if (e->out->len <= e->limit && n <= e->limit - e->out->len)
    return 0;
  snprintf(what, sizeof what, "larger than %zu bytes as JSON (the limit)",
           (size_t)VD_JSON_MAX_ENCODED);
  enc_fail(e, what);
  return 1;
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


/* ------------------------------------------------------------------------
 * The JSON of frozen tables (json.h, vd_json_cache_t): an open-addressed
 * table from a frozen copy's address to its encoding and its height (how
 * many levels of tables it nests below itself), so that a copy met deeper
 * than where it was encoded is still refused past VD_JSON_MAX_DEPTH as
 * the full walk would refuse it.
 * ------------------------------------------------------------------------ */

typedef struct cached {
  const void *key; /* the proxy's metatable (one per frozen copy T', held
                    * by the state as long as T'); NULL: a free slot */
  char *json;
  size_t len;
  int height;
  int trace_ok; /* vd_json_trace_entry_note(): T' is a well-formed trace
                 * entry */
} cached_t;

/* An object's keys as encode_keyed() last met them (see "Key shapes"
 * below). */
#define SHAPE_SLOTS 64 /* a power of two: SHAPE_SLOTS / 2 sets of two */
#define SHAPE_KEYS 16
#define SHAPE_BYTES 1024

typedef struct shape {
  int n;                         /* keys; 0: a free slot */
  int busy;                      /* objects of this shape being written
                                  * now (an outer one while its values
                                  * are): not to be replaced until 0 */
  const char *at[SHAPE_KEYS];    /* their bytes' addresses, lua_next order */
  size_t len[SHAPE_KEYS];        /* and lengths */
  unsigned char sorted[SHAPE_KEYS]; /* the i-th in byte order: its index */
  size_t json[SHAPE_KEYS + 1];   /* in text: each key's "key": (sorted) */
  char text[SHAPE_BYTES];        /* the keys' bytes (lua_next order), then
                                  * their JSON (sorted order) */
} shape_t;

/* vd_json_trace_entry_note()'s entries, by the proxies' addresses: a
 * direct-mapped memo in front of the cache's look-up by metatable. */
#define KNOWN_SLOTS 256 /* a power of two */

static size_t known_slot(const void *p) {
  uintptr_t h = (uintptr_t)p;
  h ^= h >> 17;
  h *= (uintptr_t)0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 40) & (KNOWN_SLOTS - 1);
}

struct vd_json_cache {
  cached_t *slots;
  size_t cap; /* a power of two, or 0 */
  size_t n;
  size_t bytes; /* the encodings' lengths, together */
  shape_t *shapes; /* SHAPE_SLOTS of them, or NULL until the first */
  unsigned char shape_next[SHAPE_SLOTS / 2]; /* per set: the way (0, 1)
                                              * to replace next */
  unsigned long shape_misses; /* vd_json_shape_misses() */
  keyc_t *keys;    /* KEYC_SLOTS of them, or NULL until the first */
  unsigned char ords[KEYC_ORDS]; /* the decoder's foretold slots */
  struct vd_json_known {
    const void *proxy; /* a well-formed trace entry (a proxy), by its own
                        * address; NULL: none */
    const char *json;  /* and its slot's encoding (never freed or moved
                        * while the cache lives), length and height */
    size_t len;
    int height;
  } entries[KNOWN_SLOTS];
  vd_json_notes_t notes;      /* vd_json_decode_flat()'s last notes */
  int markers[2];  /* the markers (array, object) at these registry
                    * references too, for the decoder; 0: not yet */
};

/* L's sandbox's key strings, made on first use; NULL if L is not a
 * sandbox's or there is no memory for them (keys are then made as
 * strings each time). */
static keyc_t *key_cache_of(lua_State *L, const int **markers,
                            unsigned char **ords, vd_json_cache_t **cache) {
  vd_sandbox_t *sb = vd_sandbox_find(L);
  vd_json_cache_t *c;
  int i;
  *cache = NULL;
  if (!sb)
    return NULL;
  if (!(c = sb->encoded)) {
    if (!(c = calloc(1, sizeof *c)))
      return NULL;
    sb->encoded = c;
  }
  *cache = c;
  if (!c->keys)
    c->keys = calloc(KEYC_SLOTS, sizeof *c->keys);
  /* a light userdata key (vd_json_push_marker) is hashed in a large
   * registry; an integer one is its array part's.  Made once (luaL_ref
   * may raise: then none, and the next decode tries again) */
  for (i = 0; i < 2; i++)
    if (!c->markers[i] && sb->json_mt[0]) {
      vd_json_push_marker(L, i ? 'o' : 'a');
      c->markers[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  *markers = c->markers;
  *ords = c->keys ? c->ords : NULL;
  return c->keys;
}

/* The cache's notes. */
static vd_json_notes_t *cache_notes(vd_json_cache_t *c) {
  return &c->notes;
}

void vd_json_flat_table(lua_State *L, const vd_json_notes_t *flat) {
  int base = lua_gettop(L), i;
  vd_sandbox_t *sb = vd_sandbox_find(L); /* a flat decode's: it has one */
  for (i = 0; i < flat->ntop; i++)
    if (flat->top[i].slot)
      base--;
  push_flat_members(L, sb && sb->encoded ? sb->encoded->markers : NULL,
                    flat->top, flat->ntop);
  lua_rotate(L, base + 1, 1);
  lua_settop(L, base + 1);
}

void vd_json_cache_free(vd_json_cache_t *c) {
  size_t i;
  if (!c)
    return;
  for (i = 0; i < c->cap; i++)
    free(c->slots[i].json);
  free(c->slots);
  free(c->shapes);
  free(c->keys); /* their references go with the state */
  free(c);
}

static size_t cache_slot(const vd_json_cache_t *c, const void *key) {
  uintptr_t h = (uintptr_t)key;
  size_t i;
  h ^= h >> 17;
  h *= (uintptr_t)0x9e3779b97f4a7c15ull;
  for (i = (size_t)(h >> 7) & (c->cap - 1); c->slots[i].key &&
                                            c->slots[i].key != key;
       i = (i + 1) & (c->cap - 1))
    ;
  return i;
}

static const cached_t *cache_get(const vd_json_cache_t *c, const void *key) {
  size_t i;
  if (!c || !c->n)
    return NULL;
  i = cache_slot(c, key);
  return c->slots[i].key ? &c->slots[i] : NULL;
}

/* Keep [json, json+len) as key's encoding; on any failure keep nothing
 * (the cache only saves work). */
static void cache_put(vd_sandbox_t *sb, const void *key, const char *json,
                      size_t len, int height) {
  vd_json_cache_t *c = sb->encoded;
  cached_t *slot;
  if (len > VD_JSON_CACHE_ENTRY)
    return;
  if (!c) {
    if (!(c = calloc(1, sizeof *c)))
      return;
    sb->encoded = c;
  }
  if (c->bytes + len > VD_JSON_CACHE_BYTES)
    return;
  if (2 * (c->n + 1) > c->cap) { /* at most half full */
    vd_json_cache_t grown = *c;
    size_t i;
    grown.cap = c->cap ? 2 * c->cap : 64;
    if (!(grown.slots = calloc(grown.cap, sizeof *grown.slots)))
      return;
    for (i = 0; i < c->cap; i++)
      if (c->slots[i].key)
        grown.slots[cache_slot(&grown, c->slots[i].key)] = c->slots[i];
    free(c->slots);
    *c = grown;
  }
  slot = &c->slots[cache_slot(c, key)];
  if (slot->key)
    return;
  if (!(slot->json = malloc(len ? len : 1)))
    return;
  memcpy(slot->json, json, len);
  slot->len = len;
  slot->height = height;
  slot->trace_ok = 0;
  slot->key = key;
  c->n++;
  c->bytes += len;
}

static int encode_typed(encoder_t *e, int idx, int t);

static inline int encode_value(encoder_t *e, int idx) {
  return encode_typed(e, idx, lua_type(e->L, idx));
}

static inline int encode_element(encoder_t *e, int idx);

typedef struct keyref {
  const char *s;
  size_t n;
  int slot; /* stack index of the key's value */
} keyref_t;

static int keyref_less(const keyref_t *x, const keyref_t *y) {
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->s, y->s, n);
  return c < 0 || (c == 0 && x->n < y->n);
}

static int keyref_cmp(const void *a, const void *b) {
  const keyref_t *x = a, *y = b;
  return keyref_less(x, y) ? -1 : keyref_less(y, x);
}

/* Objects have a handful of keys: insertion sort, qsort past that. */
static void sort_keys(keyref_t *k, size_t n) {
  size_t i, j;
  if (n > 16) {
    qsort(k, n, sizeof *k, keyref_cmp);
    return;
  }
  for (i = 1; i < n; i++) {
    keyref_t t = k[i];
    for (j = i; j > 0 && keyref_less(&t, &k[j - 1]); j--)
      k[j] = k[j - 1];
    k[j] = t;
  }
}

/* Elements from..n of the list at idx, by index; from 1: its '[' too
 * (else the ones before are written already). */
static int encode_array_from(encoder_t *e, int idx, lua_Integer from,
                             lua_Integer n) {
  seg_t *seg = &e->segs[e->depth - 1];
  lua_Integer i;
  if (from == 1) {
    if (too_big(e, 2))
      return VD_EINVALID;
    vd_buf_addc(e->out, '[');
  }
  seg->key = NULL;
  for (i = from; i <= n; i++) {
    int rc;
    if (i > 1) {
      if (too_big(e, 2))
        return VD_EINVALID;
      vd_buf_addc(e->out, ',');
    }
    seg->index = i;
    lua_rawgeti(e->L, idx, i);
    rc = encode_value(e, lua_gettop(e->L));
    lua_pop(e->L, 1);
    if (rc)
      return rc;
  }
  vd_buf_addc(e->out, ']');
  return 0;
}

static int encode_array(encoder_t *e, int idx, lua_Integer n) {
  return encode_array_from(e, idx, 1, n);
}

/* ------------------------------------------------------------------------
 * Key shapes: a result made by the same code has the same keys every time,
 * so the order they sort in and their escaped JSON are kept per state, by
 * the keys' addresses (Lua's short strings are interned, so the same key
 * is the same address while it lives).  A shape is used only if every key
 * is still, at its address, the bytes it was kept with (compared), so a
 * string freed and another made at its address cannot mislead it: the
 * JSON kept depends only on the bytes.  Two-way: the keys' addresses
 * choose a set of two slots, and a new shape replaces the one of the two
 * used less recently (direct-mapped, two shapes a decision writes could
 * fall in one slot and evict each other every decision: about 4,200
 * instructions a decision at some string seeds, docs/performance.md).
 * SHAPE_SLOTS shapes of up to SHAPE_KEYS keys and SHAPE_BYTES of text
 * each; any other object is sorted and escaped as it comes.  Memory outside the state, in the
 * sandbox's vd_json_cache_t.
 * ------------------------------------------------------------------------ */

/* The set of keys k (n of them): its first slot's index (even). */
static size_t shape_set(const keyref_t *k, size_t n) {
  uintptr_t h = (uintptr_t)n;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ (uintptr_t)k[i].s) * (uintptr_t)0x9e3779b97f4a7c15ull;
  return ((size_t)(h >> 40) & (SHAPE_SLOTS / 2 - 1)) * 2;
}

/* Whether [a, a+n) and [b, b+n) are the same bytes; inline, for the few
 * bytes of a key (memcmp's call is most of what it costs there).  Reads
 * nothing outside them. */
static inline int same_bytes(const char *a, const char *b, size_t n) {
  uint64_t x, y;
  uint32_t u, v;
  size_t i;
  if (n >= 8) {
    for (i = 0; i + 8 < n; i += 8) {
      memcpy(&x, a + i, 8);
      memcpy(&y, b + i, 8);
      if (x != y)
        return 0;
    }
    memcpy(&x, a + n - 8, 8); /* the last 8, overlapping */
    memcpy(&y, b + n - 8, 8);
    return x == y;
  }
  if (n >= 4) {
    memcpy(&u, a, 4);
    memcpy(&v, b, 4);
    if (u != v)
      return 0;
    memcpy(&u, a + n - 4, 4);
    memcpy(&v, b + n - 4, 4);
    return u == v;
  }
  for (i = 0; i < n; i++)
    if (a[i] != b[i])
      return 0;
  return 1;
}

unsigned long vd_json_shape_misses(lua_State *L) {
  vd_sandbox_t *sb = vd_sandbox_find(L);
  return sb && sb->encoded ? sb->encoded->shape_misses : 0;
}

/* Whether SH holds keys k (n of them, lua_next order). */
static int shape_holds(const shape_t *sh, const keyref_t *k, size_t n) {
  size_t i, off = 0;
  if ((size_t)sh->n != n)
    return 0;
  for (i = 0; i < n; i++) {
    if (sh->at[i] != k[i].s || sh->len[i] != k[i].n ||
        !same_bytes(sh->text + off, k[i].s, k[i].n))
      return 0;
    off += k[i].n;
  }
  return 1;
}

/* The shape kept for keys k (n of them, lua_next order), or NULL. */
static shape_t *shape_get(encoder_t *e, const keyref_t *k, size_t n) {
  vd_json_cache_t *c;
  size_t set, w;
  if (n == 0 || n > SHAPE_KEYS || !e->sb || !(c = e->sb->encoded) ||
      !c->shapes)
    return NULL;
  set = shape_set(k, n);
  for (w = 0; w < 2; w++)
    if (shape_holds(&c->shapes[set + w], k, n)) {
      c->shape_next[set / 2] = (unsigned char)(1 - w); /* the other */
      return &c->shapes[set + w];
    }
  return NULL;
}

/* Keep the shape of keys k (n, lua_next order; sorted: the same keys in
 * byte order) when it fits; nothing on any failure (it only saves work). */
static void shape_put(encoder_t *e, const keyref_t *k, const keyref_t *sorted,
                      size_t n) {
  vd_json_cache_t *c;
  shape_t *sh;
  vd_buf_t json = VD_BUF_INIT;
  size_t i, j, off = 0, set, w;
  if (n == 0 || n > SHAPE_KEYS || !e->sb)
    return;
  if (!(c = e->sb->encoded)) {
    if (!(c = calloc(1, sizeof *c)))
      return;
    e->sb->encoded = c;
  }
  c->shape_misses++;
  for (i = 0; i < n; i++)
    off += k[i].n;
  if (off > SHAPE_BYTES / 8)
    return;
  if (!c->shapes && !(c->shapes = calloc(SHAPE_SLOTS, sizeof *c->shapes)))
    return;
  /* a free slot of the set, else the one used less recently; one being
   * written (an outer object's) is never replaced */
  set = shape_set(k, n);
  w = !c->shapes[set].n ? 0 : !c->shapes[set + 1].n ? 1 : c->shape_next[set / 2];
  if (c->shapes[set + w].busy)
    w = 1 - w;
  sh = &c->shapes[set + w];
  if (sh->busy)
    return;
  c->shape_next[set / 2] = (unsigned char)(1 - w);
  sh->n = 0;
  for (i = 0, off = 0; i < n; i++) {
    sh->at[i] = k[i].s;
    sh->len[i] = k[i].n;
    memcpy(sh->text + off, k[i].s, k[i].n);
    off += k[i].n;
  }
  for (i = 0; i < n; i++) {
    for (j = 0; j < n && sorted[i].s != k[j].s; j++)
      ;
    if (j == n) /* two keys at one address cannot be: keep nothing */
      goto done;
    sh->sorted[i] = (unsigned char)j;
    sh->json[i] = off + json.len;
    vd_buf_add_json_str(&json, sorted[i].s, sorted[i].n);
    vd_buf_addc(&json, ':');
  }
  sh->json[n] = off + json.len;
  if (off + json.len > SHAPE_BYTES)
    goto done;
  memcpy(sh->text + off, json.data, json.len);
  sh->n = (int)n;
done:
  vd_buf_release(&json);
}

static const char MIXED[] = "table mixes array and object keys, or has a "
                            "non-string key; cannot encode it as JSON";

/* Take back what encode_keyed() wrote of a list as it walked it: the
 * output, the depths, and its segment of the path, as they were. */
static void untried(encoder_t *e, size_t start, int depth, int deepest) {
  e->out->len = start;
  if (e->out->data)
    e->out->data[start] = '\0';
  e->depth = depth;
  e->deepest = deepest;
  e->segs[depth - 1].key = NULL;
  e->segs[depth - 1].index = 0;
}

/* A table that is not marked as an array: one walk over its keys decides
 * whether it is a sequence 1..n (encoded as an array; so is the empty
 * table) or an object with string keys, whose values the walk leaves on
 * the stack to be encoded in key order.  Nothing is allocated in Lua, so
 * encoding never raises. */
static int encode_keyed(encoder_t *e, int idx, int marked_object) {
  lua_State *L = e->L;
  keyref_t small[16], *keys = small, unsorted[SHAPE_KEYS];
  shape_t *sh = NULL;
  size_t nkeys = 0, cap = 16, i;
  lua_Integer nints = 0, maxint = 0;
  int rc = 0, base = lua_gettop(L), top;
  seg_t *seg = &e->segs[e->depth - 1];
  /* A list's elements are encoded as the walk meets them while its keys
   * come as 1, 2, 3... (spec), as encode_array would write them, without
   * reading them again; once they come in another order, the rest are
   * read by index after the walk.  An element that fails stops the
   * writing, its message and path kept: the answer if the walk finds a
   * list.  Any other table takes back what was written (each element is
   * written at most once). */
  int spec = !marked_object, depth0 = e->depth, deepest0 = e->deepest;
  int failed = 0;          /* the rc of the element that failed */
  lua_Integer written = 0; /* elements written, 1..written */
  size_t start = e->out->len;

  lua_pushnil(L);
  top = base + 1; /* lua_gettop(L), counted: ... values, key */
  while (lua_next(L, idx)) { /* ... values, key, value */
    int kt = lua_type(L, -2), isint;
    lua_Integer k;
    top++;
    if (kt == LUA_TSTRING) {
      if (written || failed) /* an object, or mixed: nothing written */
        untried(e, start, depth0, deepest0);
      spec = 0;
      written = 0;
      failed = 0;
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
      keys[nkeys].s = lua_tolstring(L, -2, &keys[nkeys].n);
      keys[nkeys].slot = top - 1; /* where the value will be */
      nkeys++;
    } else if (!marked_object && kt == LUA_TNUMBER &&
               (k = lua_tointegerx(L, -2, &isint), isint) && k >= 1) {
      /* a key that is a number and converts to an integer is one: Lua
       * stores a float key with an integral value as that integer */
      nints++;
      if (k > maxint)
        maxint = k;
      if (spec && k == written + 1) {
        if (too_big(e, 2)) {
          failed = VD_EINVALID;
          spec = 0;
        } else {
          vd_buf_addc(e->out, written ? ',' : '[');
          seg->key = NULL;
          seg->index = k;
          if ((rc = encode_element(e, top)) != 0) {
            failed = rc;
            rc = 0;
            spec = 0;
          } else {
            written = k;
          }
        }
      } else {
        spec = 0; /* another order: the rest by index */
      }
      lua_pop(L, 1); /* the value is read again by index */
      top--;
      continue;
    } else {
      if (written || failed)
        untried(e, start, depth0, deepest0);
      rc = enc_fail(e, MIXED);
      goto done;
    }
    if (nints) {
      rc = enc_fail(e, MIXED);
      goto done;
    }
    lua_insert(L, -2); /* keep the value below the key */
    if (!lua_checkstack(L, 3)) {
      rc = enc_fail(e, "object has too many keys");
      goto done;
    }
  }
  if ((written || failed) && !nkeys && nints == maxint) { /* a list */
    if (failed)
      rc = failed;
    else if (written == nints)
      vd_buf_addc(e->out, ']');
    else
      rc = encode_array_from(e, idx, written + 1, nints);
    goto done;
  }
  if (written || failed) /* a sparse list: nothing written */
    untried(e, start, depth0, deepest0);
  if (nkeys && nints) {
    rc = enc_fail(e, MIXED);
    goto done;
  }
  if (!nkeys && !marked_object) {
    if (nints != maxint) { /* a sparse list is not an array */
      rc = enc_fail(e, MIXED);
      goto done;
    }
    rc = encode_array(e, idx, nints);
    goto done;
  }
  if (!e->sb)
    e->sb = vd_sandbox_find(L);
  if ((sh = shape_get(e, keys, nkeys)) != NULL) {
    sh->busy++; /* its values may be objects of other shapes */
    if (too_big(e, 2)) {
      rc = VD_EINVALID;
      goto done;
    }
    vd_buf_addc(e->out, '{');
    for (i = 0; i < nkeys; i++) {
      const keyref_t *k = &keys[sh->sorted[i]];
      if (too_big(e, k->n + 5)) {
        rc = VD_EINVALID;
        goto done;
      }
      if (i)
        vd_buf_addc(e->out, ',');
      vd_buf_add(e->out, sh->text + sh->json[i], sh->json[i + 1] - sh->json[i]);
      seg->key = k->s;
      seg->n = k->n;
      rc = encode_value(e, k->slot);
      if (rc)
        goto done;
    }
    vd_buf_addc(e->out, '}');
    goto done;
  }
  if (nkeys <= SHAPE_KEYS && e->sb)
    memcpy(unsorted, keys, nkeys * sizeof *keys);
  sort_keys(keys, nkeys);
  if (nkeys <= SHAPE_KEYS && e->sb)
    shape_put(e, unsorted, keys, nkeys);
  if (too_big(e, 2)) {
    rc = VD_EINVALID;
    goto done;
  }
  vd_buf_addc(e->out, '{');
  for (i = 0; i < nkeys; i++) {
    /* the key, quoted, a comma and a colon; escapes are checked after */
    if (too_big(e, keys[i].n + 5)) {
      rc = VD_EINVALID;
      goto done;
    }
    if (i)
      vd_buf_addc(e->out, ',');
    vd_buf_add_json_str(e->out, keys[i].s, keys[i].n);
    vd_buf_addc(e->out, ':');
    seg->key = keys[i].s;
    seg->n = keys[i].n;
    rc = encode_value(e, keys[i].slot);
    if (rc)
      goto done;
  }
  vd_buf_addc(e->out, '}');
done:
  if (sh)
    sh->busy--;
  lua_settop(L, base);
  if (keys != small)
    free(keys);
  return rc;
}

static int encode_table(encoder_t *e, int idx) {
  lua_State *L = e->L;
  const void *mt = NULL, *frozen = NULL;
  size_t start;
  int deepest, rc;
  if (lua_getmetatable(L, idx)) {
    mt = lua_topointer(L, -1);
    lua_settop(L, -2);
    if (mt != e->array_mt && mt != e->object_mt) {
      /* encoded before?  Known by the metatable just read: a frozen
       * table's proxy has its own (held by the state while the copy is),
       * the only kind kept, so the copy need not be found first.  The
       * same bytes, if they fit here */
      const cached_t *c;
      if (!e->sb)
        e->sb = vd_sandbox_find(L);
      c = e->sb ? cache_get(e->sb->encoded, mt) : NULL;
      if (c && e->depth + c->height <= VD_JSON_MAX_DEPTH &&
          e->out->len <= e->limit && c->len <= e->limit - e->out->len) {
        vd_buf_add(e->out, c->json, c->len);
        if (e->depth + c->height > e->deepest)
          e->deepest = e->depth + c->height;
        return 0;
      }
      /* a table loaded with the bundle encodes as it was loaded: its copy
       * (sandbox.h), whose metatable is a marker or none */
      if (vd_sandbox_unfreeze(L, idx)) {
        frozen = mt;
        mt = NULL;
        if (lua_getmetatable(L, idx)) {
          mt = lua_topointer(L, -1);
          lua_pop(L, 1);
        }
      }
    }
  }
  start = e->out->len;
  deepest = e->deepest;
  e->deepest = e->depth;
  if (mt && mt == e->array_mt)
    rc = encode_array(e, idx, (lua_Integer)lua_rawlen(L, idx));
  else
    rc = encode_keyed(e, idx, mt && mt == e->object_mt);
  if (rc == 0 && frozen && e->sb)
    cache_put(e->sb, frozen, e->out->data + start, e->out->len - start,
              e->deepest - e->depth);
  if (deepest > e->deepest)
    e->deepest = deepest;
  return rc;
}

/* encode_value() of a value of type t. */
static int encode_typed(encoder_t *e, int idx, int t) {
  lua_State *L = e->L;
  int rc;
  switch (t) {
  case LUA_TNIL:
  case LUA_TBOOLEAN:
  case LUA_TNUMBER:
  case LUA_TLIGHTUSERDATA:
    if (too_big(e, 32)) /* the longest scalar: a double's text */
      return VD_EINVALID;
    break;
  default:
    break;
  }
  switch (t) {
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
    /* the string as it is, quoted; escaping can add up to 5 bytes a byte,
     * so the length is checked again once it is in */
    if (too_big(e, n + 2))
      return VD_EINVALID;
    if (vd_buf_add_json_str(e->out, s, n))
      return enc_fail(e, "string is not valid UTF-8");
    return too_big(e, 0) ? VD_EINVALID : 0;
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
    e->segs[e->depth].key = NULL; /* not inside it yet: no segment */
    e->segs[e->depth].index = 0;
    e->depth++;
    rc = encode_table(e, idx);
    if (rc == 0)
      e->depth--; /* on failure the path stays for the message */
    return rc;
  default:
    return enc_fail(e, lua_type(L, idx) == LUA_TFUNCTION
                           ? "cannot encode a function as JSON"
                           : "cannot encode this value as JSON");
  }
}

/* A list's element met by the walk (encode_keyed()): a trace entry noted
 * well-formed (vd_json_trace_entry_note()) is known by its address (the
 * memo: no other table is there while the cache lives) and copied from
 * the cache, as encode_table() would copy it after reading its metatable,
 * when it fits where it is (else, and for any other value, encode_value()
 * as before).  A trace list's elements are such entries. */
static inline int encode_element(encoder_t *e, int idx) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  vd_json_cache_t *cache;
  if (t == LUA_TTABLE && e->sb && (cache = e->sb->encoded) &&
      e->depth < VD_JSON_MAX_DEPTH) {
    const void *p = lua_topointer(L, idx);
    const struct vd_json_known *c = &cache->entries[known_slot(p)];
    if (c->proxy == p && e->depth + 1 + c->height <= VD_JSON_MAX_DEPTH &&
        e->out->len <= e->limit && c->len <= e->limit - e->out->len &&
        lua_checkstack(L, 4)) { /* (as encode_typed() asks) */
      vd_buf_add(e->out, c->json, c->len);
      if (e->depth + 1 + c->height > e->deepest)
        e->deepest = e->depth + 1 + c->height;
      return 0;
    }
  }
  return encode_typed(e, idx, t);
}

/* The JSON cache's entry for the table at idx, by its metatable (a frozen
 * table's proxy, encoded before), or NULL. */
static cached_t *frozen_entry(lua_State *L, int idx) {
  vd_sandbox_t *sb;
  const void *mt;
  const cached_t *c;
  /* any value's metatable: only a frozen table's proxy's is kept, so
   * another kind of value (a string's, shared) finds nothing */
  if (!lua_getmetatable(L, idx))
    return NULL;
  mt = lua_topointer(L, -1);
  lua_settop(L, -2);
  if (!(sb = vd_sandbox_find(L)) || !(c = cache_get(sb->encoded, mt)))
    return NULL;
  return (cached_t *)c;
}

/* An entry noted well-formed is a frozen table's proxy, which the state
 * holds until it is closed (json.h): no other value can be at its address
 * while the cache lives, so a table found at an address the memo keeps is
 * that entry.  Any other value asks the cache by its metatable. */
int vd_json_trace_entry_known(lua_State *L, int idx) {
  const cached_t *c;
  if (lua_type(L, idx) == LUA_TTABLE) {
    const void *p = lua_topointer(L, idx);
    vd_sandbox_t *sb = vd_sandbox_find(L);
    if (sb && sb->encoded && sb->encoded->entries[known_slot(p)].proxy == p)
      return 1;
  }
  c = frozen_entry(L, idx);
  return c && c->trace_ok;
}

void vd_json_trace_entry_note(lua_State *L, int idx) {
  cached_t *c = frozen_entry(L, idx);
  if (c) {
    c->trace_ok = 1;
    if (lua_type(L, idx) == LUA_TTABLE) { /* (a proxy: a cache is there) */
      const void *p = lua_topointer(L, idx);
      vd_json_cache_t *cache = vd_sandbox_find(L)->encoded;
      size_t k = known_slot(p);
      cache->entries[k].proxy = p;
      cache->entries[k].json = c->json;
      cache->entries[k].len = c->len;
      cache->entries[k].height = c->height;
    }
  }
}

int vd_json_encode(lua_State *L, int idx, vd_buf_t *out, const char *root,
                   vd_buf_t *err) {
  encoder_t e;
  e.L = L;
  e.out = out;
  e.err = err;
  e.root = root;
  e.depth = 0;
  e.deepest = 0;
  e.sb = vd_sandbox_find(L); /* its cache, its markers (markers_of()) */
  e.limit = out->len + VD_JSON_MAX_ENCODED;
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 2))
    return enc_fail(&e, "out of stack space");
  if (e.sb && e.sb->json_mt[0]) {
    e.array_mt = e.sb->json_mt[0];
    e.object_mt = e.sb->json_mt[1];
    return encode_value(&e, idx);
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, ARRAY_MT);
  e.array_mt = lua_topointer(L, -1); /* NULL if this state has none */
  lua_rawgetp(L, LUA_REGISTRYINDEX, OBJECT_MT);
  e.object_mt = lua_topointer(L, -1);
  lua_pop(L, 2);
  return encode_value(&e, idx);
}
