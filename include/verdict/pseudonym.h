/*
 * pseudonym.h - personal values recorded as keyed hashes (verdictd
 * --pseudonymise-key), so the raw values are never written.
 *
 * A pseudonym is "p1-" and the first 32 hex digits (128 bits) of
 * HMAC-SHA-256(key, value): equal values give equal pseudonyms under one
 * key, so the history's questions (a customer's decisions, distinct
 * customers) and replay work on them; without the key a pseudonym
 * cannot be turned back into the value, nor a guessed value checked.
 * 35 bytes: within the policies' 64-byte limit on a customer id.
 *
 * The key is the whole content of a file (at least 32 bytes; `head -c 32
 * /dev/urandom > FILE`), which must not be readable by others.
 * Everything here runs on its caller's thread; a loaded key is read-only
 * and may be shared between threads.
 */
#ifndef VERDICT_PSEUDONYM_H
#define VERDICT_PSEUDONYM_H

#include <stddef.h>

#include "verdict/buf.h"
#include "verdict/history.h"

#define VD_PSEUDONYM_LEN 35     /* "p1-" + 32 hex digits */
#define VD_PSEUDONYM_KEY_MIN 32 /* bytes */
#define VD_PSEUDONYM_KEY_MAX 1024

typedef struct vd_pseudonym_key {
  unsigned char key[VD_PSEUDONYM_KEY_MAX];
  size_t len;
} vd_pseudonym_key_t;

/* Read the key from PATH.  0, or VD_EIO / VD_EINVALID with ERR saying
 * why (missing, readable by others, shorter than VD_PSEUDONYM_KEY_MIN). */
int vd_pseudonym_key_load(vd_pseudonym_key_t *k, const char *path,
                          vd_buf_t *err);

/* OUT (VD_PSEUDONYM_LEN + 1 bytes) = the pseudonym of V[0..n). */
void vd_pseudonym(const vd_pseudonym_key_t *k, const char *v, size_t n,
                  char out[VD_PSEUDONYM_LEN + 1]);

/* The record R as it may be written: customer_id, the request's personal
 * input fields (customer_id and FIELDS: top-level members of "input"
 * with string values) and every occurrence of their values in facts
 * replaced by pseudonyms.  The new texts go into REQ, FACTS and CUSTOMER
 * (the caller's buffers, reset first) and R points at them; a request
 * that is not JSON (a bad_request line) is replaced by an empty string,
 * since what personal data it holds cannot be found.  Returns 0 or
 * VD_ENOMEM. */
int vd_pseudonymise_record(const vd_pseudonym_key_t *k,
                           const char *const *fields, size_t nfields,
                           vd_record_t *r, vd_buf_t *req, vd_buf_t *facts,
                           char customer[VD_PSEUDONYM_LEN + 1]);

#endif
