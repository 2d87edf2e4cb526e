/*
 * error.h - verdict's error codes.
 *
 * Every fallible function returns int: 0 on success or one of the negative
 * VD_E* codes below.  Each code has a stable string name; it is the name the
 * wire protocol puts in {"error": {"code": ...}} and the name stored in the
 * history database, so names never change once shipped.
 *
 * Human-readable detail (which field, which line) lives on the object that
 * failed, never in a global.
 */
#ifndef VERDICT_ERROR_H
#define VERDICT_ERROR_H

/* X(ENUM, "wire_name", "what it means") */
#define VD_ERRNO_MAP(X)                                                       \
  X(BAD_REQUEST,    "bad_request",    "the request line is not a valid request") \
  X(UNKNOWN_KIND,   "unknown_kind",   "no policy kind of that name")          \
  X(UNKNOWN_REGION, "unknown_region", "the region code is not in the bundle") \
  X(BAD_INPUT,      "bad_input",      "the policy rejected an input field")    \
  X(POLICY_ERROR,   "policy_error",   "the policy raised an error or returned a wrong shape") \
  X(POLICY_TIMEOUT, "policy_timeout", "the policy exceeded its instruction budget") \
  X(POLICY_MEMORY,  "policy_memory",  "the policy exceeded its memory cap")    \
  X(TOO_LARGE,      "too_large",      "the request line exceeds --max-line")   \
  X(INTERNAL,       "internal",       "the daemon failed; the request was not decided") \
  X(FORBIDDEN,      "forbidden",      "the operation is not allowed on this channel") \
  X(NOT_FOUND,      "not_found",      "no such object")                        \
  X(IO,             "io",             "a file or socket operation failed")     \
  X(NOMEM,          "nomem",          "out of memory")                         \
  X(INVALID,        "invalid",        "an argument or file is invalid")        \
  X(UNAUTHORIZED,   "unauthorized",   "no credential, or one the daemon does not know")

typedef enum {
  VD_OK = 0,
#define VD_ERR_ENUM_(name, str, desc) VD_E##name,
  VD_ERR_FIRST_ = -100,
  VD_ERRNO_MAP(VD_ERR_ENUM_)
#undef VD_ERR_ENUM_
  VD_ERR_LAST_
} vd_errno_t;

#define VD_ERR_COUNT (VD_ERR_LAST_ - VD_ERR_FIRST_ - 1)

/* Stable wire name of an error code ("bad_request"); "ok" for 0 and
 * "internal" for anything unknown.  The string is static. */
const char *vd_err_name(int code);

/* One-line description of an error code.  Static string. */
const char *vd_err_desc(int code);

/* Index 0 .. VD_ERR_COUNT-1 of a code, for per-code counters; -1 if not
 * a verdict error code. */
int vd_err_index(int code);

/* The code whose wire name is NAME, or 0 if none. */
int vd_err_from_name(const char *name);

#endif
