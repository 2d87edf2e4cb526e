/*
 * wire.h - the wire format: newline-delimited JSON, both sockets.
 *
 * One request per line, one response line per request, in request order
 * per connection.  This module is the one home of the format: it reads
 * the requests of the decision socket (vd_wire_read_request(), which the
 * engine calls on the request it decoded) and of the admin socket
 * (vd_wire_read_admin()), and writes every response line either socket
 * sends.  Also the line framer every reader of the protocol uses (daemon,
 * CLI, bench) and the HOST:PORT splitter of --listen and --connect.
 *
 * Decision:  {"id":..,"decision_id":..,"kind":..,"region":..,
 *             "policy_region":..,"revision":..,"at":..,"result":{..},
 *             "trace":[..],"elapsed_us":N}
 * Error:     {"id":..,"decision_id":..,"error":{"code":..,"message":..,
 *             "path":..}}
 * ping:      {"id":..,"pong":true,"revision":..}
 * status:    {"id":..,"status":{..}}            (vd_wire_status_t)
 * admin:     {"id":..,"ok":true,"revision":..,"previous":..,"unchanged":B}
 *            {"id":..,"from":..,"to":..,"diff":".."}
 *            {"id":..,"activations":[..],"revisions":[..]}
 *
 * Every string is written with vd_buf_add_json_str(); the "id" is the
 * request's own, re-encoded by the JSON encoder ("null" when absent).
 * No state; any thread.  Readers run on the thread that owns L.
 */
#ifndef VERDICT_WIRE_H
#define VERDICT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "verdict/buf.h"
#include "verdict/engine.h"
#include "verdict/error.h"
#include "verdict/history.h"
#include "verdict/json.h"

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------ */

/* Read the decision-socket request decoded at stack index IDX of L (a
 * table from vd_json_decode()): fills d's id, op, kind, region, at (now_ms
 * to the second when absent: d->at_stamped), and the input's
 * complaint_id, customer_id and category.  Unknown top-level fields are
 * refused.  Returns 0, or d->code with d->message and d->path naming the
 * field.  For an op other than "decide" it stops after op: d->op and
 * d->op_name say which.  Raises only on memory errors (call it under
 * lua_pcall, as the engine does); leaves the stack as it found it. */
int vd_wire_read_request(lua_State *L, int idx, int64_t now_ms,
                         vd_decision_t *d);

/* Decode a decision-socket request line as vd_json_decode_protected()
 * does (the same codes and messages), but with its members left flat on
 * the stack and noted, and its input's members noted too, when it is an
 * object of a request's size (json.h, vd_json_decode_flat(): *flat their
 * notes); else the value is pushed and *flat is NULL.  The caller changes
 * nothing of what it pushed, keeps LINE as it is, and reads it at once
 * with vd_wire_read_decoded(). */
int vd_wire_decode_request(lua_State *L, const char *line, size_t len,
                           int max_depth, vd_buf_t *err,
                           const vd_json_notes_t **flat);
/* The same without a protected call of its own, inside the caller's
 * (json.h, vd_json_decode_flat_in(): it raises when memory runs out,
 * and *parser is then the parser to free with vd_json_parser_free()). */
int vd_wire_decode_request_in(lua_State *L, const char *line, size_t len,
                              int max_depth, vd_buf_t *err, void **parser,
                              const vd_json_notes_t **flat);

/* vd_wire_read_request() on what vd_wire_decode_request() left on top of
 * the stack, FLAT its answer: the same decision, field for field and
 * message for message, read from the notes where they answer (no table is
 * made, none walked).  Leaves the decoded request on the stack (as a
 * table, when a member is not a request's field), with, above it, what
 * *input and *at point at: the stack indexes of the input's value and of
 * the "at" field's string (0: none), which stay until the caller pops
 * them.  Raises only on memory errors. */
int vd_wire_read_decoded(lua_State *L, const vd_json_notes_t *flat,
                         int64_t now_ms, vd_decision_t *d, int *input,
                         int *at);

/* An admin-socket request.  The strings point into the decoded request,
 * which vd_wire_read_admin() leaves on L's stack: they are valid until the
 * caller pops it.  NULL when the field is absent or not a string. */
typedef struct vd_wire_admin {
  vd_buf_t id;           /* the request's "id" as JSON; "null" if none */
  const char *op;        /* reload, activate, revisions, diff, status, ping */
  const char *who;       /* reload, activate: who asks, for the record */
  const char *revision;  /* activate */
  const char *from, *to; /* diff */
} vd_wire_admin_t;

void vd_wire_admin_init(vd_wire_admin_t *req);
void vd_wire_admin_release(vd_wire_admin_t *req);
/* Decode the line [line, line+len) on L (JSON nesting at most 16) and read
 * it into REQ.  Returns 0 with the request pushed on L, or VD_EBAD_REQUEST
 * (not JSON, not an object; err says which, req->id stays "null") or
 * VD_ENOMEM (L's allocator refused) with nothing pushed. */
int vd_wire_read_admin(lua_State *L, const char *line, size_t len,
                       vd_wire_admin_t *req, vd_buf_t *err);

/* ------------------------------------------------------------------------
 * Responses: each appends one line, '\n' included
 * ------------------------------------------------------------------------ */

/* The response line for decision d: the decision, or its error. */
void vd_wire_write_decision(vd_buf_t *out, const vd_decision_t *d,
                            const char *decision_id, const char *revision);

/* An error line.  id_json may be NULL or "" ("null"); message NULL: the
 * code's description; path and decision_id may be NULL (omitted). */
void vd_wire_write_error(vd_buf_t *out, const char *id_json, int code,
                         const char *message, const char *path,
                         const char *decision_id);

/* ping: the revision that would decide the next request. */
void vd_wire_write_pong(vd_buf_t *out, const char *id_json,
                        const char *revision);

/* What `status` reports; the daemon fills it, the strings are its. */
typedef struct vd_wire_status {
  const char *revision;        /* active revision, and its source dir */
  const char *source;
  int64_t activated_ms;
  const char *activated_by;    /* startup, sighup, admin, watch, ... */
  const char *last_failure;    /* why the last reload was refused, or NULL */
  const char *history_check;   /* running, ok, ...; NULL: not reported */
  const char *history_check_error; /* or NULL */
  const char *in_force;        /* vd_wire_in_force() JSON, or NULL */
  size_t in_force_len;
  int64_t started_ms, now_ms;
  unsigned workers, connections;
  int64_t heap_bytes;          /* vd_heap_in_use(); -1: not known */
  const char *log_mode;
  uint64_t decisions;
  uint64_t errors[VD_ERR_COUNT]; /* by vd_err_index() */
  const char *budget_mode;     /* "watchdog" or "count" */
  unsigned long instructions;
  uint64_t recounted;
  unsigned long interrupts;
  unsigned long overruns;      /* decisions past --decide-timeout (in
                                * "budget" when not 0) */
} vd_wire_status_t;

void vd_wire_write_status(vd_buf_t *out, const char *id_json,
                          const vd_wire_status_t *s);

/* Status's "in_force" object: for "national" and every region code of e,
 * the file that decides each kind ({"GD":{"sla":"regions/GD/sla.lua"}}).
 * Replaces out's contents; not a line. */
void vd_wire_in_force(vd_buf_t *out, vd_engine_t *e);

/* reload, activate: REVISION now serves, PREVIOUS served before. */
void vd_wire_write_activated(vd_buf_t *out, const char *id_json,
                             const char *revision, const char *previous);

/* diff: the unified diff [text, text+len) from FROM to TO. */
void vd_wire_write_diff(vd_buf_t *out, const char *id_json, const char *from,
                        const char *to, const char *text, size_t len);

/* revisions: LISTS is the members after the id, as the history writes
 * them (,"activations":[..],"revisions":[..]). */
void vd_wire_write_revisions(vd_buf_t *out, const char *id_json,
                             const char *lists, size_t len);

/* ------------------------------------------------------------------------
 * HTTP (verdictd --http; docs/protocol.md, "HTTP")
 * ------------------------------------------------------------------------ */

/* The HTTP status that answers a response of CODE (0: 200): 400
 * bad_request, 422 bad_input, 404 unknown_kind, unknown_region and
 * not_found, 413 too_large, 403 forbidden, 422 invalid (a bundle that
 * fails its checks), 500 policy_error, 503 the rest
 * (policy_timeout, policy_memory, internal). */
int vd_wire_http_status(int code);

/* POST /v1/decisions/{kind}: append to OUT the socket request that asks
 * for KIND in REGION at AT (both may be NULL: absent), with id ID_JSON
 * (a string, or NULL) and the input BODY, [body, body+len).  BODY must be
 * exactly one JSON value (whether it is an object is the engine's to
 * say): else VD_EBAD_REQUEST, with err naming the byte, and OUT
 * untouched. */
int vd_wire_kind_request(vd_buf_t *out, const char *kind, const char *region,
                         const char *at, const char *id_json,
                         const char *body, size_t len, vd_buf_t *err);

/* Idempotency keys (the socket's "idem", HTTP's Idempotency-Key): 1 to
 * VD_IDEM_KEY_MAX printable ASCII characters, no spaces. */
#define VD_IDEM_KEY_MAX 255
int vd_wire_idem_valid(const char *key, size_t len);
/* The top-level "idem" string of the request line [line, line+len) into
 * out[cap] (cap > VD_IDEM_KEY_MAX): 1, or 0 when it has none, or is not
 * JSON, or the key is not valid (the engine refuses those lines). */
int vd_wire_peek_idem(const char *line, size_t len, char *out, size_t cap);

/* GET /v1/decisions/{id}: a stored row (VD_HISTORY_NCOLUMNS values) as
 * one JSON object named by column, as `verdict history show --format
 * json` names them; request, result, trace and facts as the JSON they
 * are (a bad_request or too_large row's request as a string). */
void vd_wire_write_record(vd_buf_t *out, const vd_history_value_t *row);

/* ------------------------------------------------------------------------
 * Framing
 * ------------------------------------------------------------------------ */

/* Line framing over a byte stream.  Feed bytes with vd_framer_feed(); then
 * take complete lines with vd_framer_next() until it returns 0.  A line
 * longer than max_line makes vd_framer_next() return -1 (too large): the
 * caller answers too_large and closes.  "\r\n" is accepted as "\n". */
typedef struct vd_framer {
  vd_buf_t buf;     /* bytes received and not yet consumed */
  size_t start;     /* first unconsumed byte */
  size_t scanned;   /* bytes after start already known to hold no '\n' */
  size_t max_line;
} vd_framer_t;

void vd_framer_init(vd_framer_t *f, size_t max_line);
void vd_framer_release(vd_framer_t *f);
void vd_framer_feed(vd_framer_t *f, const char *p, size_t n);
/* 1 and sets *line and *len (valid until the next feed), 0 if no full line yet,
 * -1 if the pending line is already longer than max_line. */
int vd_framer_next(vd_framer_t *f, const char **line, size_t *len);
/* Bytes buffered that do not yet form a line. */
size_t vd_framer_pending(const vd_framer_t *f);

/* Split a TCP address "HOST:PORT" or "[IPv6]:PORT" (verdictd --listen,
 * verdict --connect): the host, without brackets, into host[cap], and
 * *port pointing at the port in SPEC.  0, or -1 when SPEC has no
 * non-empty host and port. */
int vd_hostport_split(const char *spec, char *host, size_t cap,
                      const char **port);

#endif
