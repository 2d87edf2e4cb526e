/*
 * json.h - JSON to Lua values and back.
 *
 * Decoding is a yajl SAX parse that builds Lua values directly on a Lua
 * stack, with no intermediate tree.  The mapping:
 *
 *   JSON object  -> table whose metatable is the registry's object marker
 *   JSON array   -> sequence 1..n whose metatable is the array marker
 *   null         -> vd_json_null (a light userdata) as `verdict.null`
 *   number       -> integer when written without '.', 'e' or 'E' and in
 *                   range of lua_Integer, float otherwise; a number
 *                   beyond a double's range (1e400) is an error, not
 *                   an infinity
 *   string       -> string (yajl rejects invalid UTF-8)
 *
 * Encoding maps back: tables with a marker keep their JSON type; an
 * unmarked empty table is `[]`; an unmarked sequence is an array; other
 * tables are objects with string keys, written in sorted key order so the
 * same value always gives the same bytes.  Floats are written in the
 * shortest form that reads back to the same double and always contain '.',
 * 'e' or "Infinity"-free notation, so a float never comes back as an
 * integer.  NaN and infinities, functions, userdata and non-string keys in
 * objects are errors.
 *
 * Both directions run on the caller's thread and Lua state.  Decoding
 * allocates Lua values and so can raise a Lua memory error: call it only
 * from protected code (lua_pcall), which is what vd_json_decode_protected()
 * does for you.  Encoding never raises.
 */
#ifndef VERDICT_JSON_H
#define VERDICT_JSON_H

#include <stddef.h>

#include <lua.h>

#include "verdict/buf.h"

#define VD_JSON_MAX_DEPTH 64

/* The JSON null sentinel. */
extern char vd_json_null_tag;
#define vd_json_null ((void *)&vd_json_null_tag)

/* Create the array and object marker metatables in L's registry.
 * Call once per state before any decode or encode. */
void vd_json_setup(lua_State *L);

/* Push the array (kind 'a') or object (kind 'o') marker metatable. */
void vd_json_push_marker(lua_State *L, int kind);

/* Decode JSON text [s, s+n) and push the value on success (returns 0).
 * On a syntax error returns VD_EBAD_REQUEST, pushes nothing and writes a
 * message naming the byte offset into `err`.  Raises on memory errors:
 * call under lua_pcall.  max_depth bounds nesting (0 = VD_JSON_MAX_DEPTH). */
int vd_json_decode(lua_State *L, const char *s, size_t n, int max_depth,
                   vd_buf_t *err);

/* vd_json_decode() without its quick pass (core/json.c): every text read
 * by yajl.  The same answer for every text, errors included; for the tests
 * that hold the quick pass to it. */
int vd_json_decode_yajl(lua_State *L, const char *s, size_t n, int max_depth,
                        vd_buf_t *err);

/* The same inside a lua_pcall: returns 0 and pushes the value,
 * VD_EBAD_REQUEST with `err` set for bad JSON, or VD_ENOMEM if the state's
 * allocator refused (nothing pushed in both error cases). */
int vd_json_decode_protected(lua_State *L, const char *s, size_t n,
                             int max_depth, vd_buf_t *err);

/* A decode's notes of an object's members, taken as it stores them, so
 * that a reader of the object need not walk its table (wire.c reads a
 * request so).  A member is noted by its key and, for a string value,
 * the string: their bytes, in the decoded text where they are written
 * there as they are (no escapes), else in the Lua strings decoded; valid
 * while both are (of two members with one key, a table and a reader keep
 * the last). */
#define VD_JSON_NOTES_TOP 8  /* the top-level object's members */
#define VD_JSON_NOTES_SUB 16 /* and those of one member's object */
typedef struct vd_json_note {
  const char *k; /* the key's bytes (not NUL-terminated), its length */
  size_t kn;
  int type;      /* the value's Lua type */
  int array;     /* a table: 1 for a JSON array, 0 for an object */
  const char *s; /* a string value's bytes (not NUL-terminated) */
  size_t n;
  int slot;      /* a flat member's: its value's stack index; 0 for a
                  * string written plainly (s, n), which is not pushed */
} vd_json_note_t;
typedef struct vd_json_notes {
  int ntop; /* the top-level members, in the order met, duplicates too */
  int nsub; /* the members of the last object met under the key named to
             * vd_json_decode_flat(); -1: more than fit */
  vd_json_note_t top[VD_JSON_NOTES_TOP];
  vd_json_note_t sub[VD_JSON_NOTES_SUB];
} vd_json_notes_t;

/* vd_json_decode_protected(), except that a top-level object of at most
 * VD_JSON_NOTES_TOP members whose keys are written plainly in the text (no
 * escapes, ASCII) is not made a table: its members are left "flat", *flat
 * their notes, which also note the members of the object of its member
 * named SUB (the last such member's).  Their keys, and their string
 * values written plainly, stay in the text; their other values are pushed
 * in the text's order (duplicates too) and stay, each at its note's slot.
 * A decode of anything else (an object read by yajl too) pushes the value
 * and sets *flat to NULL, as in a state that is not a sandbox's, whose
 * decoder keeps no notes.  The notes are valid until the next decode on L;
 * their slots are absolute stack indexes: the caller changes nothing of
 * what was pushed, inserts or removes nothing below it, and keeps the
 * text it decoded as it was (the engine reads a request so, inside the
 * function whose stack the decode used). */
int vd_json_decode_flat(lua_State *L, const char *s, size_t n, int max_depth,
                        vd_buf_t *err, const char *sub,
                        const vd_json_notes_t **flat);

/* vd_json_decode_flat() without a protected call of its own, for a caller
 * already inside one (the engine decodes a request inside the decision's
 * protected call): 0 with the value or members pushed, or VD_EBAD_REQUEST
 * with err set; when the state's memory runs out it raises a Lua error.
 * *parser holds the parser while it parses: after such a raise the caller
 * hands it to vd_json_parser_free(); otherwise it is left NULL. */
int vd_json_decode_flat_in(lua_State *L, const char *s, size_t n,
                           int max_depth, vd_buf_t *err, const char *sub,
                           void **parser, const vd_json_notes_t **flat);
void vd_json_parser_free(void *parser); /* NULL: nothing */

/* The flat members' values on top of the stack, FLAT their notes,
 * replaced by the table vd_json_decode() would have made of their object
 * (slot for slot: the same walk order).  May raise a memory error. */
void vd_json_flat_table(lua_State *L, const vd_json_notes_t *flat);

/* The most bytes one vd_json_encode() call appends.  A value can be far
 * bigger as JSON than in memory (a DAG of shared tables doubles with each
 * level), so the encoder checks this before every addition: the buffer
 * never grows much past it (a string's escapes, at most 6 bytes a byte,
 * are checked once written) and never aborts the process for a policy. */
#define VD_JSON_MAX_ENCODED (8u << 20)

/* Encode the value at stack index idx, appending JSON to `out`.  Returns 0,
 * or VD_EINVALID with `err` naming the path below `root` that could not be
 * encoded (e.g. "result.deadlines.x: cannot encode a function", or "...:
 * larger than 8388608 bytes as JSON (the limit)").  Reads tables raw: no
 * metamethod runs.  On error `out` may hold a partial encoding: the caller
 * discards it.  Never raises. */
int vd_json_encode(lua_State *L, int idx, vd_buf_t *out, const char *root,
                   vd_buf_t *err);

/* The JSON of tables loaded with a bundle, kept once encoded.  Such a
 * table is frozen (sandbox.h: vd_sandbox_freeze()), so its encoding never
 * changes while its state lives: a rule's trace entry, its id and its long
 * basis, is escaped once per state, then copied.  vd_json_encode() keeps
 * and reads one per sandbox state (vd_sandbox_t.encoded), keyed by the
 * address of the metatable of the copy's proxy (one per copy; the state
 * holds every copy and proxy until it is closed);
 * at most VD_JSON_CACHE_BYTES in all, each at most VD_JSON_CACHE_ENTRY.
 * The same cache keeps, by their keys' addresses, the shapes of objects
 * met (their keys' order and escaped JSON, json.c "Key shapes"): at most
 * 64 of up to 16 keys, checked against the keys' bytes before each use.
 * Memory outside the state: malloc'd, freed by vd_json_cache_free(). */
#define VD_JSON_CACHE_BYTES (1u << 20)
#define VD_JSON_CACHE_ENTRY (4u << 10)
typedef struct vd_json_cache vd_json_cache_t;
void vd_json_cache_free(vd_json_cache_t *c);
/* How many objects the encoder of L's sandbox found no kept shape for
 * (sorted and escaped their keys anew) since the state began; 0 for a
 * state that is not a sandbox's.  For tests and profiles. */
unsigned long vd_json_shape_misses(lua_State *L);

/* A trace entry loaded with the bundle is the same frozen table every
 * time: the engine checks its shape ({rule = <string>, basis = <string>},
 * raw) once and notes it on the entry's cached JSON.
 * vd_json_trace_entry_note(): the table at idx (a frozen table's proxy)
 * was found well-formed; noted only once it is encoded and kept (the note
 * is then never lost: entries are not evicted).  vd_json_trace_entry_known():
 * 1 if so noted; 0 for any other value.  Neither raises. */
int vd_json_trace_entry_known(lua_State *L, int idx);
void vd_json_trace_entry_note(lua_State *L, int idx);

/* 1 if the value at idx is a table carrying the array marker, 2 for the
 * object marker, 0 otherwise. */
int vd_json_marker(lua_State *L, int idx);

/* Append the shortest round-tripping text of a finite double. */
void vd_json_add_double(vd_buf_t *out, double d);

#endif
