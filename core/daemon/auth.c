/*
 * auth.c - the HTTP listener's credentials: the token file (--tokens).
 *
 * A token file has one credential a line, `NAME ROLE SHA256HEX`: NAME
 * (letters, digits, '.', '_', '-', '@'; at most 63 bytes) is what the
 * history and the admin actions record, ROLE is decide, audit or admin,
 * and SHA256HEX is the SHA-256 of the bearer token, in hex (`printf %s
 * TOKEN | sha256sum`), so the file never holds a token itself; `-` for
 * a name that only a client certificate carries (its subject CN, with
 * --tls-client-ca: it gets the roles of every line of its name).  Blank
 * lines and lines starting with '#' are skipped.  One name may have
 * several lines (a role each, or a second token while the first is being
 * retired).  The file is read whole at start-up and on SIGHUP; a file
 * with a bad line is refused, naming the line, and on SIGHUP the tokens
 * before it stay in force.
 *
 * A vd_tokens_t never changes once loaded, so any thread may read it;
 * the daemon swaps the whole table under d->tokens_lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "daemon_int.h"

typedef struct vd_token {
  char name[64];
  unsigned roles;
  int cert_only;           /* "-": no token, a certificate's CN only */
  unsigned char hash[SHA256_DIGEST_SIZE];
} vd_token_t;

struct vd_tokens {
  vd_token_t *v;
  size_t n;
};

static int parse_role(const char *s, unsigned *role) {
  if (strcmp(s, "decide") == 0)
    *role = VD_ROLE_DECIDE;
  else if (strcmp(s, "audit") == 0)
    *role = VD_ROLE_AUDIT;
  else if (strcmp(s, "admin") == 0)
    *role = VD_ROLE_ADMIN;
  else
    return -1;
  return 0;
}

static int parse_hex(const char *s, unsigned char out[SHA256_DIGEST_SIZE]) {
  size_t i;
  if (strlen(s) != 2 * SHA256_DIGEST_SIZE)
    return -1;
  for (i = 0; i < SHA256_DIGEST_SIZE; i++) {
    unsigned v;
    if (!strchr("0123456789abcdefABCDEF", s[2 * i]) ||
        !strchr("0123456789abcdefABCDEF", s[2 * i + 1]) ||
        sscanf(s + 2 * i, "%2x", &v) != 1)
      return -1;
    out[i] = (unsigned char)v;
  }
  return 0;
}

static int valid_name(const char *s) {
  size_t n = strlen(s), i;
  if (n == 0 || n > 63)
    return 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("._-@", c)))
      return 0;
  }
  return 1;
}

int vd_tokens_load(const char *path, vd_tokens_t **out, vd_buf_t *err) {
  FILE *f = fopen(path, "r");
  vd_tokens_t *t;
  char line[512];
  unsigned lineno = 0;
  *out = NULL;
  if (!f) {
    vd_buf_addf(err, "--tokens %s: %s", path, strerror(errno));
    return VD_EIO;
  }
  t = calloc(1, sizeof *t);
  if (!t) {
    fclose(f);
    return VD_ENOMEM;
  }
  while (fgets(line, sizeof line, f)) {
    char name[128], role[32], hex[128], extra[2];
    vd_token_t *tok, *grown;
    unsigned r;
    int k;
    lineno++;
    if (!strchr(line, '\n') && !feof(f)) {
      vd_buf_addf(err, "%s:%u: line longer than %zu bytes", path, lineno,
                  sizeof line - 2);
      goto fail;
    }
    k = sscanf(line, " %127s %31s %127s %1s", name, role, hex, extra);
    if (k <= 0 || name[0] == '#')
      continue;
    if (k != 3) {
      vd_buf_addf(err, "%s:%u: expected NAME ROLE SHA256HEX", path, lineno);
      goto fail;
    }
    if (!valid_name(name)) {
      vd_buf_addf(err, "%s:%u: name '%s': 1 to 63 letters, digits, '.', "
                       "'_', '-' or '@'", path, lineno, name);
      goto fail;
    }
    if (parse_role(role, &r) != 0) {
      vd_buf_addf(err, "%s:%u: role '%s': expected decide, audit or admin",
                  path, lineno, role);
      goto fail;
    }
    grown = realloc(t->v, (t->n + 1) * sizeof *t->v);
    if (!grown)
      goto fail;
    t->v = grown;
    tok = &t->v[t->n];
    memset(tok->hash, 0, sizeof tok->hash);
    tok->cert_only = strcmp(hex, "-") == 0;
    if (!tok->cert_only && parse_hex(hex, tok->hash) != 0) {
      vd_buf_addf(err, "%s:%u: expected the token's SHA-256 as 64 hex "
                       "digits (printf %%s TOKEN | sha256sum)", path, lineno);
      goto fail;
    }
    snprintf(tok->name, sizeof tok->name, "%.63s", name); /* valid_name() */
    tok->roles = r;
    t->n++;
  }
  if (ferror(f)) {
    vd_buf_addf(err, "--tokens %s: read error", path);
    goto fail;
  }
  fclose(f);
  *out = t;
  return 0;
fail:
  fclose(f);
  vd_tokens_free(t);
  return VD_EINVALID;
}

void vd_tokens_free(vd_tokens_t *t) {
  if (!t)
    return;
  free(t->v);
  free(t);
}

size_t vd_tokens_count(const vd_tokens_t *t) { return t ? t->n : 0; }

unsigned vd_tokens_check(const vd_tokens_t *t, const char *token, size_t len,
                         char *name, size_t cap) {
  struct sha256_ctx ctx;
  unsigned char h[SHA256_DIGEST_SIZE];
  unsigned roles = 0;
  size_t i, k;
  if (!t || len == 0)
    return 0;
  sha256_init(&ctx);
  sha256_update(&ctx, len, (const uint8_t *)token);
  sha256_digest(&ctx, sizeof h, h);
  /* every line is compared whole: the time taken says nothing about
   * which bytes of which hash matched */
  for (i = 0; i < t->n; i++) {
    unsigned char diff = 0;
    for (k = 0; k < sizeof h; k++)
      diff |= (unsigned char)(h[k] ^ t->v[i].hash[k]);
    if (diff == 0 && !t->v[i].cert_only) {
      if (!roles)
        snprintf(name, cap, "%s", t->v[i].name);
      if (strcmp(name, t->v[i].name) == 0)
        roles |= t->v[i].roles;
    }
  }
  return roles;
}

unsigned vd_tokens_roles_of(const vd_tokens_t *t, const char *name) {
  unsigned roles = 0;
  size_t i;
  for (i = 0; t && i < t->n; i++)
    if (strcmp(t->v[i].name, name) == 0)
      roles |= t->v[i].roles;
  return roles;
}
