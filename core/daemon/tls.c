/*
 * tls.c - TLS on the HTTP and TCP listeners (--tls-cert, --tls-key,
 * --tls-client-ca), OpenSSL over memory BIOs.
 *
 * A connection's TLS state sits between its socket and its protocol: the
 * worker hands every byte read to vd_tls_feed(), which gives back the
 * plaintext (and the handshake's own answers, ciphertext to send), and
 * every byte to send to vd_tls_seal().  OpenSSL never touches the socket,
 * so the worker's libuv code, back-pressure and ordering stay as they are.
 *
 * The context (vd_tls_ctx_t) is made once at start-up on the main thread
 * and only read afterwards (OpenSSL's SSL_new() on a shared SSL_CTX is
 * thread-safe); each vd_tls_t belongs to the worker thread of its
 * connection.
 */
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "daemon_int.h"

struct vd_tls_ctx {
  SSL_CTX *ctx;
  int verify;              /* --tls-client-ca: a client certificate is required */
};

struct vd_tls {
  SSL *ssl;
  BIO *rbio, *wbio;        /* ciphertext in, ciphertext out (the SSL's) */
  int done;                /* the handshake finished */
  const char *failure;     /* why the handshake failed (a reason label of
                            * verdict_tls_handshake_failures_total), or NULL */
  char subject[64];        /* the client certificate's CN, or "" */
};

/* What went wrong in a handshake, from OpenSSL's first error: one of a
 * few fixed words, so that the counter's label cannot grow with what
 * clients send.  The whole message goes to the log. */
static const char *failure_reason(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL)
    return "other";
  switch (ERR_GET_REASON(e)) {
  case SSL_R_HTTP_REQUEST:
  case SSL_R_HTTPS_PROXY_REQUEST:
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_UNKNOWN_PROTOCOL:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_RECORD_LENGTH_MISMATCH:
    return "not_tls"; /* plain HTTP, or other bytes, on the TLS port */
  case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    return "no_client_certificate";
  case SSL_R_CERTIFICATE_VERIFY_FAILED:
    return "bad_client_certificate";
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_NO_PROTOCOLS_AVAILABLE:
  case SSL_R_NO_SHARED_CIPHER:
  case SSL_R_VERSION_TOO_LOW:
  case SSL_R_NO_SHARED_GROUPS:
    return "no_common_protocol";
  default:
    /* the client refused us (an alert: it does not trust our certificate) */
    if (ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET)
      return "client_alert";
    return "other";
  }
}

/* OpenSSL's error queue, as one line, into err. */
static void ssl_errors(vd_buf_t *err) {
  unsigned long e;
  char line[256];
  int first = 1;
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, line, sizeof line);
    vd_buf_addf(err, "%s%s", first ? "" : "; ", line);
    first = 0;
  }
  if (first)
    vd_buf_adds(err, "unknown TLS error");
}

int vd_tls_ctx_new(vd_tls_ctx_t **out, const char *cert, const char *key,
                   const char *client_ca, vd_buf_t *err) {
  vd_tls_ctx_t *t = calloc(1, sizeof *t);
  *out = NULL;
  if (!t)
    return VD_ENOMEM;
  ERR_clear_error();
  t->ctx = SSL_CTX_new(TLS_server_method());
  if (!t->ctx) {
    ssl_errors(err);
    goto fail;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(t->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1) {
    vd_buf_addf(err, "--tls-cert %s: ", cert);
    ssl_errors(err);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(t->ctx) != 1) {
    vd_buf_addf(err, "--tls-key %s: ", key);
    ssl_errors(err);
    goto fail;
  }
  if (client_ca) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
    if (SSL_CTX_load_verify_locations(t->ctx, client_ca, NULL) != 1 ||
        !names) {
      vd_buf_addf(err, "--tls-client-ca %s: ", client_ca);
      ssl_errors(err);
      if (names)
        sk_X509_NAME_pop_free(names, X509_NAME_free);
      goto fail;
    }
    SSL_CTX_set_client_CA_list(t->ctx, names);
    SSL_CTX_set_verify(t->ctx,
                       SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    t->verify = 1;
  }
  *out = t;
  return 0;
fail:
  vd_tls_ctx_free(t);
  return VD_EINVALID;
}

void vd_tls_ctx_free(vd_tls_ctx_t *t) {
  if (!t)
    return;
  SSL_CTX_free(t->ctx);
  free(t);
}

int vd_tls_ctx_verifies(const vd_tls_ctx_t *t) { return t && t->verify; }

vd_tls_t *vd_tls_new(vd_tls_ctx_t *ctx) {
  vd_tls_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->ssl = SSL_new(ctx->ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  BIO_set_mem_eof_return(t->rbio, -1); /* empty: "retry", not EOF */
  SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both now */
  SSL_set_accept_state(t->ssl);
  return t;
}

void vd_tls_free(vd_tls_t *t) {
  if (!t)
    return;
  SSL_free(t->ssl);
  free(t);
}

/* What the SSL has written to its wbio, to OUT. */
static void drain(vd_tls_t *t, vd_buf_t *out) {
  char buf[16384];
  int n;
  while ((n = BIO_read(t->wbio, buf, sizeof buf)) > 0)
    vd_buf_add(out, buf, (size_t)n);
}

static void note_subject(vd_tls_t *t) {
  X509 *peer = SSL_get1_peer_certificate(t->ssl);
  if (!peer)
    return;
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName,
                                t->subject, sizeof t->subject) < 0)
    t->subject[0] = '\0';
  X509_free(peer);
}

int vd_tls_feed(vd_tls_t *t, const char *p, size_t n, vd_buf_t *plain,
                vd_buf_t *cipher, vd_buf_t *err) {
  char buf[16384];
  int r;
  if (n && BIO_write(t->rbio, p, (int)n) != (int)n) {
    vd_buf_adds(err, "out of memory");
    return -1;
  }
  ERR_clear_error();
  if (!t->done) {
    r = SSL_do_handshake(t->ssl);
    drain(t, cipher); /* the handshake's answer, or its alert */
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
      t->failure = failure_reason(ERR_peek_error());
      ssl_errors(err);
      return -1;
    }
    t->done = 1;
    note_subject(t);
  }
  for (;;) {
    r = SSL_read(t->ssl, buf, sizeof buf);
    if (r > 0) {
      vd_buf_add(plain, buf, (size_t)r);
      continue;
    }
    r = SSL_get_error(t->ssl, r);
    drain(t, cipher); /* a renegotiation's or key update's bytes */
    if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
      return 0;
    if (r == SSL_ERROR_ZERO_RETURN)
      return 1; /* close_notify: the client is done */
    ssl_errors(err);
    return -1;
  }
}

int vd_tls_seal(vd_tls_t *t, const char *p, size_t n, vd_buf_t *cipher) {
  while (n) {
    int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
    int r = SSL_write(t->ssl, p, chunk);
    if (r <= 0)
      return -1;
    drain(t, cipher);
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int vd_tls_ready(const vd_tls_t *t) { return t->done; }

const char *vd_tls_failure(const vd_tls_t *t) { return t->failure; }

const char *vd_tls_subject(const vd_tls_t *t) {
  return t->subject[0] ? t->subject : NULL;
}
