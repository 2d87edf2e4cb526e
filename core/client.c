/*
 * client.c - blocking protocol client (see client.h).  Caller's thread.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "verdict/client.h"
#include "verdict/error.h"

int vd_client_connect(vd_client_t *c, const char *path, const char *hostport,
                      vd_buf_t *err) {
  c->fd = -1;
  vd_framer_init(&c->framer, 64u << 20);
  if (hostport) {
    char host[256];
    const char *port;
    struct addrinfo hints, *res, *ai;
    int rc;
    if (vd_hostport_split(hostport, host, sizeof host, &port) != 0) {
      vd_buf_addf(err, "%s: expected HOST:PORT", hostport);
      return VD_EIO;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
      vd_buf_addf(err, "%s: %s", hostport, gai_strerror(rc));
      return VD_EIO;
    }
    for (ai = res; ai; ai = ai->ai_next) {
      c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
      if (c->fd >= 0 && connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
        break;
      if (c->fd >= 0)
        close(c->fd);
      c->fd = -1;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
      vd_buf_addf(err, "cannot connect to %s: %s", hostport, strerror(errno));
      return VD_EIO;
    }
    return 0;
  } else {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
      vd_buf_addf(err, "%s: socket path too long", path);
      return VD_EIO;
    }
    strcpy(sa.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      int e = errno;
      if (e == EACCES || e == EPERM) /* the daemon may well be running */
        vd_buf_addf(err, "cannot connect to %s: permission denied (the "
                         "socket's owner and mode, or its directory's, "
                         "keep this user out; revisions, activations and "
                         "diffs can be read from the database with --db)",
                    path);
      else
        vd_buf_addf(err, "cannot connect to %s: %s (is verdictd running?)",
                    path, strerror(e));
      errno = e;
      if (c->fd >= 0)
        close(c->fd);
      c->fd = -1;
      return VD_EIO;
    }
  }
  return 0;
}

int vd_client_call(vd_client_t *c, const char *line, size_t len,
                   vd_buf_t *resp, vd_buf_t *err) {
  size_t off = 0;
  const char *l;
  size_t n;
  char buf[65536];
  while (off < len + 1) {
    const char *p = off < len ? line + off : "\n";
    size_t want = off < len ? len - off : 1;
    ssize_t w = send(c->fd, p, want, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      vd_buf_addf(err, "send: %s", strerror(errno));
      return VD_EIO;
    }
    off += (size_t)w;
  }
  for (;;) {
    ssize_t r;
    if (vd_framer_next(&c->framer, &l, &n) == 1) {
      vd_buf_reset(resp);
      vd_buf_add(resp, l, n);
      return 0;
    }
    r = recv(c->fd, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      vd_buf_addf(err, "the daemon closed the connection%s%s",
                  r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
      return VD_EIO;
    }
    vd_framer_feed(&c->framer, buf, (size_t)r);
  }
}

void vd_client_close(vd_client_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  vd_framer_release(&c->framer);
}
