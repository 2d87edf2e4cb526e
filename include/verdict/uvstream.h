/*
 * uvstream.h - the libuv handle of one protocol connection.
 *
 * A connection of the wire protocol (wire.h) is a Unix-domain socket or a
 * TCP socket; code that serves or drives one (the daemon's workers, the
 * bench's clients) embeds this union in its connection struct, so that
 * the same struct, and the same close callback, serves both.  Initialise
 * the member for the transport (pipe or tcp); use `stream` for reads and
 * writes and `handle` for uv_close(), whose callback frees the struct.
 *
 * Only for code that runs a uv loop (core/daemon/, the bench in core/cmd/);
 * nothing in the library includes it.
 */
#ifndef VERDICT_UVSTREAM_H
#define VERDICT_UVSTREAM_H

#include <uv.h>

typedef union vd_uv_stream {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_pipe_t pipe;
  uv_tcp_t tcp;
} vd_uv_stream_t;

#endif
