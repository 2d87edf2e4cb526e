/*
 * client.h - a blocking client of verdictd's protocol, for the CLI.
 *
 * Connects to the Unix socket or a TCP HOST:PORT, sends request lines and
 * reads response lines.  One client per thread; the caller owns it.
 */
#ifndef VERDICT_CLIENT_H
#define VERDICT_CLIENT_H

#include "verdict/buf.h"
#include "verdict/wire.h"

typedef struct vd_client {
  int fd;
  vd_framer_t framer;
} vd_client_t;

/* Connect to `hostport` ("HOST:PORT") if given, else the Unix socket at
 * `path`.  Returns 0, or VD_EIO with a message in err. */
int vd_client_connect(vd_client_t *c, const char *path, const char *hostport,
                      vd_buf_t *err);
/* Send one request line (a '\n' is added) and read one response line into
 * `resp` (without its newline).  Returns 0 or VD_EIO. */
int vd_client_call(vd_client_t *c, const char *line, size_t len,
                   vd_buf_t *resp, vd_buf_t *err);
void vd_client_close(vd_client_t *c);

#endif
