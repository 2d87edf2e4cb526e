/*
 * error.c - names and descriptions of verdict's error codes.
 *
 * Owns nothing; pure tables generated from VD_ERRNO_MAP in error.h.
 * Thread-safe: read-only data.
 */
#include <string.h>

#include "verdict/error.h"

#define VD_ERR_NAME_(name, str, desc) str,
static const char *const err_names[] = { VD_ERRNO_MAP(VD_ERR_NAME_) };
#undef VD_ERR_NAME_

#define VD_ERR_DESC_(name, str, desc) desc,
static const char *const err_descs[] = { VD_ERRNO_MAP(VD_ERR_DESC_) };
#undef VD_ERR_DESC_

int vd_err_index(int code) {
  if (code <= VD_ERR_FIRST_ || code >= VD_ERR_LAST_)
    return -1;
  return code - VD_ERR_FIRST_ - 1;
}

const char *vd_err_name(int code) {
  int i;
  if (code == 0)
    return "ok";
  i = vd_err_index(code);
  return i < 0 ? "internal" : err_names[i];
}

const char *vd_err_desc(int code) {
  int i;
  if (code == 0)
    return "success";
  i = vd_err_index(code);
  return i < 0 ? "unknown error" : err_descs[i];
}

int vd_err_from_name(const char *name) {
  int i;
  for (i = 0; i < VD_ERR_COUNT; i++)
    if (strcmp(err_names[i], name) == 0)
      return VD_ERR_FIRST_ + 1 + i;
  return 0;
}
