/*
 * history_pseudonym.c - personal values as keyed hashes
 * (include/verdict/pseudonym.h): the key, one pseudonym, and a record
 * rewritten so that none of its personal values is written raw.
 *
 * Owns nothing past one call; a loaded key is the caller's (read-only
 * once loaded, so the daemon's workers share one).  The JSON rewriting is
 * history_erase.c's (vd_hist_json_rewrite()): erasure drops what this
 * replaces.  Runs on its caller's thread (a worker, for each decision it
 * records, when verdictd has --pseudonymise-key).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/hmac.h>

#include "history_int.h"
#include "verdict/buf.h"
#include "verdict/error.h"
#include "verdict/pseudonym.h"

int vd_pseudonym_key_load(vd_pseudonym_key_t *k, const char *path,
                          vd_buf_t *err) {
  struct stat st;
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  memset(k, 0, sizeof *k);
  if (fd < 0) {
    vd_buf_addf(err, "pseudonymise key '%s': %s", path, strerror(errno));
    return VD_EIO;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    vd_buf_addf(err, "pseudonymise key '%s': not a regular file", path);
    close(fd);
    return VD_EINVALID;
  }
  if (st.st_mode & 0007) {
    vd_buf_addf(err, "pseudonymise key '%s': readable by others (mode %04o);"
                     " run: chmod o-rwx %s", path,
                (unsigned)(st.st_mode & 07777), path);
    close(fd);
    return VD_EINVALID;
  }
  n = read(fd, k->key, sizeof k->key);
  close(fd);
  if (n < VD_PSEUDONYM_KEY_MIN || (size_t)n == sizeof k->key) {
    vd_buf_addf(err, "pseudonymise key '%s': %s (it must hold %d to %d "
                     "bytes: head -c 32 /dev/urandom > %s)", path,
                n < 0 ? strerror(errno)
                      : n < VD_PSEUDONYM_KEY_MIN ? "too short" : "too long",
                VD_PSEUDONYM_KEY_MIN, VD_PSEUDONYM_KEY_MAX - 1, path);
    memset(k, 0, sizeof *k);
    return VD_EINVALID;
  }
  k->len = (size_t)n;
  return 0;
}

void vd_pseudonym(const vd_pseudonym_key_t *k, const char *v, size_t n,
                  char out[VD_PSEUDONYM_LEN + 1]) {
  struct hmac_sha256_ctx c;
  uint8_t d[SHA256_DIGEST_SIZE];
  hmac_sha256_set_key(&c, k->len, k->key);
  hmac_sha256_update(&c, n, (const uint8_t *)v);
  hmac_sha256_digest(&c, sizeof d, d);
  memcpy(out, "p1-", 3);
  vd_hist_to_hex(d, 16, out + 3);
}

int vd_pseudonymise_record(const vd_pseudonym_key_t *k,
                           const char *const *fields, size_t nfields,
                           vd_record_t *r, vd_buf_t *req, vd_buf_t *facts,
                           char customer[VD_PSEUDONYM_LEN + 1]) {
  char (*pn)[VD_PSEUDONYM_LEN + 1] = NULL;
  vd_hist_personal_t p;
  yajl_val tree = NULL, ftree = NULL;
  size_t i;
  vd_buf_reset(req);
  vd_buf_reset(facts);
  memset(&p, 0, sizeof p);
  p.fields = fields;
  p.nfields = nfields;
  if (r->customer_id) {
    vd_pseudonym(k, r->customer_id, strlen(r->customer_id), customer);
    p.v[p.n] = r->customer_id;
    p.repl[p.n++] = customer;
  }
  if (r->request &&
      (tree = yajl_tree_parse(r->request, NULL, 0)) != NULL)
    vd_hist_personal_collect(tree, &p);
  if (p.n) {
    pn = malloc(p.n * sizeof *pn);
    if (!pn) {
      yajl_tree_free(tree);
      return VD_ENOMEM;
    }
  }
  for (i = r->customer_id ? 1 : 0; i < p.n; i++) {
    vd_pseudonym(k, p.v[i], strlen(p.v[i]), pn[i]);
    p.repl[i] = pn[i];
  }
  if (tree) {
    vd_hist_json_rewrite(req, tree, &p, VD_HIST_MAP);
  } else if (r->request) {
    vd_buf_adds(req, ""); /* not JSON: nothing in it can be told apart */
  }
  if (r->facts && (ftree = yajl_tree_parse(r->facts, NULL, 0)) != NULL)
    vd_hist_json_rewrite(facts, ftree, &p, VD_HIST_FACTS);
  if (r->request) {
    r->request = req->data ? req->data : "";
    r->request_len = req->len;
  }
  if (r->facts) {
    r->facts = ftree ? facts->data : NULL;
    r->facts_len = ftree ? facts->len : 0;
  }
  if (r->customer_id)
    r->customer_id = customer;
  yajl_tree_free(tree);
  yajl_tree_free(ftree);
  free(pn);
  return 0;
}
