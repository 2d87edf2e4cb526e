/*
 * protocol.h - the wire format: newline-delimited JSON.
 *
 * One request per line, one response line per request, in request order
 * per connection.  This module writes response lines; requests are read by
 * the engine (vd_engine_decide) straight from the line.  Also the line
 * framer every reader of the protocol uses (daemon, CLI, bench).
 *
 * Response:  {"id":..,"decision_id":..,"kind":..,"region":..,
 *             "policy_region":..,"revision":..,"at":..,"result":{..},
 *             "trace":[..],"elapsed_us":N}
 * Error:     {"id":..,"decision_id":..,"error":{"code":..,"message":..,
 *             "path":..}}
 * Pure functions; any thread.
 */
#ifndef VERDICT_PROTOCOL_H
#define VERDICT_PROTOCOL_H

#include <stddef.h>

#include "verdict/buf.h"
#include "verdict/engine.h"

/* Append the response line (with '\n') for decision d. */
void vd_response_write(vd_buf_t *out, const vd_decision_t *d,
                       const char *decision_id, const char *revision);

/* Append an error line.  id_json may be NULL ("null"); path, decision_id
 * may be NULL (omitted). */
void vd_response_error(vd_buf_t *out, const char *id_json, int code,
                       const char *message, const char *path,
                       const char *decision_id);

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
