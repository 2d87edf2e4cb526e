/*
 * bundle.h - a policy bundle held in memory.
 *
 * A bundle is a directory of policy files (national/<kind>.lua,
 * regions/<CODE>/<kind>.lua, lib/, calendar/, tests beside the policies).
 * Loading reads every regular file under it into memory once; from then on
 * nothing reads the directory again, so what was hashed is exactly what
 * runs.  The revision is "sha256:" followed by the SHA-256, in hex, of every
 * file in bytewise order of its path, each contributing
 *     path NUL decimal-length NUL contents
 *
 * Invariants: files are sorted by path, paths are relative with '/'
 * separators, no "." or ".." segments, no hidden (dot) files.  A bundle is
 * immutable after creation and reference-counted (atomically), so worker
 * threads share one without locks; the last vd_bundle_unref() frees it.
 */
#ifndef VERDICT_BUNDLE_H
#define VERDICT_BUNDLE_H

#include <stddef.h>

#include "verdict/buf.h"

#define VD_BUNDLE_MAX_FILES 4096
#define VD_BUNDLE_MAX_BYTES (64u << 20)

typedef struct vd_bundle_file {
  char *path;   /* relative, e.g. "regions/GD/sla.lua" */
  char *data;   /* contents, NUL-terminated for convenience */
  size_t len;   /* bytes of contents */
} vd_bundle_file_t;

typedef struct vd_bundle vd_bundle_t;

/* Read directory DIR.  On success *out holds one reference.  On failure
 * returns VD_EIO / VD_EINVALID / VD_ENOMEM with the reason in err. */
int vd_bundle_load(const char *dir, vd_bundle_t **out, vd_buf_t *err);

/* Build a bundle from files given in memory (copied; any order).
 * `source` says where they came from ("db:sha256:..."). */
int vd_bundle_from_files(const vd_bundle_file_t *files, size_t n,
                         const char *source, vd_bundle_t **out, vd_buf_t *err);

void vd_bundle_ref(vd_bundle_t *b);
void vd_bundle_unref(vd_bundle_t *b);

const char *vd_bundle_revision(const vd_bundle_t *b); /* "sha256:..." */
const char *vd_bundle_source(const vd_bundle_t *b);   /* directory or origin */
size_t vd_bundle_count(const vd_bundle_t *b);
const vd_bundle_file_t *vd_bundle_file(const vd_bundle_t *b, size_t i);
/* The file at PATH, or NULL.  Binary search. */
const vd_bundle_file_t *vd_bundle_find(const vd_bundle_t *b, const char *path);

#endif
