/*
 * bundle.c - reading a policy bundle into memory and naming its revision.
 *
 * Owns the file copies of each vd_bundle_t.  Loading runs on whichever
 * thread asks (the main thread at start-up and on reload); a finished
 * bundle is read-only and shared between threads by reference count.
 */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nettle/sha2.h>

#include "verdict/bundle.h"
#include "verdict/error.h"

struct vd_bundle {
  atomic_int refs;
  char *source;
  char revision[8 + 64 + 1];
  size_t nfiles, cap;
  size_t bytes;
  vd_bundle_file_t *files;
};

static void bundle_free(vd_bundle_t *b) {
  size_t i;
  if (!b)
    return;
  for (i = 0; i < b->nfiles; i++) {
    free(b->files[i].path);
    free(b->files[i].data);
  }
  free(b->files);
  free(b->source);
  free(b);
}

void vd_bundle_ref(vd_bundle_t *b) { atomic_fetch_add(&b->refs, 1); }

void vd_bundle_unref(vd_bundle_t *b) {
  if (b && atomic_fetch_sub(&b->refs, 1) == 1)
    bundle_free(b);
}

const char *vd_bundle_revision(const vd_bundle_t *b) { return b->revision; }
const char *vd_bundle_source(const vd_bundle_t *b) { return b->source; }
size_t vd_bundle_count(const vd_bundle_t *b) { return b->nfiles; }

const vd_bundle_file_t *vd_bundle_file(const vd_bundle_t *b, size_t i) {
  return i < b->nfiles ? &b->files[i] : NULL;
}

static int file_cmp(const void *x, const void *y) {
  return strcmp(((const vd_bundle_file_t *)x)->path,
                ((const vd_bundle_file_t *)y)->path);
}

const vd_bundle_file_t *vd_bundle_find(const vd_bundle_t *b, const char *path) {
  vd_bundle_file_t key;
  key.path = (char *)path;
  return bsearch(&key, b->files, b->nfiles, sizeof key, file_cmp);
}

static vd_bundle_t *bundle_new(const char *source) {
  vd_bundle_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  atomic_init(&b->refs, 1);
  b->source = strdup(source ? source : "");
  if (!b->source) {
    free(b);
    return NULL;
  }
  return b;
}

/* Take ownership of path and data. */
static int bundle_add(vd_bundle_t *b, char *path, char *data, size_t len,
                      vd_buf_t *err) {
  if (b->nfiles >= VD_BUNDLE_MAX_FILES ||
      b->bytes + len > VD_BUNDLE_MAX_BYTES) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: bundle too large (limit %d files, %u MiB)", path,
                VD_BUNDLE_MAX_FILES, VD_BUNDLE_MAX_BYTES >> 20);
    free(path);
    free(data);
    return VD_EINVALID;
  }
  if (b->nfiles == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    vd_bundle_file_t *f = realloc(b->files, cap * sizeof *f);
    if (!f) {
      free(path);
      free(data);
      return VD_ENOMEM;
    }
    b->files = f;
    b->cap = cap;
  }
  b->files[b->nfiles].path = path;
  b->files[b->nfiles].data = data;
  b->files[b->nfiles].len = len;
  b->nfiles++;
  b->bytes += len;
  return 0;
}

/* Sort, refuse duplicates, compute the revision. */
static int bundle_finish(vd_bundle_t *b, vd_buf_t *err) {
  struct sha256_ctx ctx;
  uint8_t digest[SHA256_DIGEST_SIZE];
  static const char hex[] = "0123456789abcdef";
  size_t i;
  qsort(b->files, b->nfiles, sizeof *b->files, file_cmp);
  sha256_init(&ctx);
  for (i = 0; i < b->nfiles; i++) {
    char len[24];
    int n = snprintf(len, sizeof len, "%zu", b->files[i].len);
    if (i && strcmp(b->files[i - 1].path, b->files[i].path) == 0) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: file given twice", b->files[i].path);
      return VD_EINVALID;
    }
    sha256_update(&ctx, strlen(b->files[i].path) + 1,
                  (const uint8_t *)b->files[i].path);
    sha256_update(&ctx, (size_t)n + 1, (const uint8_t *)len);
    sha256_update(&ctx, b->files[i].len, (const uint8_t *)b->files[i].data);
  }
  sha256_digest(&ctx, sizeof digest, digest);
  memcpy(b->revision, "sha256:", 7);
  for (i = 0; i < sizeof digest; i++) {
    b->revision[7 + 2 * i] = hex[digest[i] >> 4];
    b->revision[8 + 2 * i] = hex[digest[i] & 15];
  }
  b->revision[7 + 64] = '\0';
  return 0;
}

static int read_file(const char *full, char **data, size_t *len,
                     vd_buf_t *err) {
  FILE *f = fopen(full, "rb");
  vd_buf_t buf = VD_BUF_INIT;
  char chunk[16384];
  size_t n;
  if (!f) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: %s", full, strerror(errno));
    return VD_EIO;
  }
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    vd_buf_add(&buf, chunk, n);
    if (buf.len > VD_BUNDLE_MAX_BYTES)
      break;
  }
  if (ferror(f)) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: read error: %s", full, strerror(errno));
    fclose(f);
    vd_buf_release(&buf);
    return VD_EIO;
  }
  fclose(f);
  *data = vd_buf_detach(&buf, len);
  return 0;
}

/* Walk DIR/rel recursively.  Skips hidden names and editor backups ("~"). */
static int walk(vd_bundle_t *b, const char *root, const char *rel, int depth,
                vd_buf_t *err) {
  vd_buf_t full = VD_BUF_INIT;
  DIR *d;
  struct dirent *de;
  int rc = 0;
  if (depth > 16) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s/%s: directories nested too deeply", root, rel);
    return VD_EINVALID;
  }
  vd_buf_addf(&full, "%s%s%s", root, *rel ? "/" : "", rel);
  d = opendir(full.data);
  if (!d) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: %s", full.data, strerror(errno));
    vd_buf_release(&full);
    return VD_EIO;
  }
  while (rc == 0 && (de = readdir(d)) != NULL) {
    vd_buf_t child = VD_BUF_INIT, path = VD_BUF_INIT;
    struct stat st;
    size_t nl = strlen(de->d_name);
    if (de->d_name[0] == '.' || de->d_name[nl - 1] == '~')
      continue;
    vd_buf_addf(&path, "%s%s%s", rel, *rel ? "/" : "", de->d_name);
    vd_buf_addf(&child, "%s/%s", full.data, de->d_name);
    if (stat(child.data, &st) != 0) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: %s", child.data, strerror(errno));
      rc = VD_EIO;
    } else if (S_ISDIR(st.st_mode)) {
      rc = walk(b, root, path.data, depth + 1, err);
    } else if (S_ISREG(st.st_mode)) {
      char *data;
      size_t len;
      rc = read_file(child.data, &data, &len, err);
      if (rc == 0)
        rc = bundle_add(b, vd_buf_detach(&path, NULL), data, len, err);
    }
    vd_buf_release(&child);
    vd_buf_release(&path);
  }
  closedir(d);
  vd_buf_release(&full);
  return rc;
}

int vd_bundle_load(const char *dir, vd_bundle_t **out, vd_buf_t *err) {
  vd_bundle_t *b;
  int rc;
  *out = NULL;
  b = bundle_new(dir);
  if (!b)
    return VD_ENOMEM;
  rc = walk(b, dir, "", 0, err);
  if (rc == 0 && b->nfiles == 0) {
    vd_buf_reset(err);
    vd_buf_addf(err, "%s: no policy files", dir);
    rc = VD_EINVALID;
  }
  if (rc == 0)
    rc = bundle_finish(b, err);
  if (rc) {
    bundle_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

static int path_ok(const char *p) {
  const char *s = p;
  if (!*p || *p == '/')
    return 0;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 0 || s[0] == '.')
      return 0;
    s += n;
    if (*s == '/')
      s++;
  }
  return 1;
}

int vd_bundle_from_files(const vd_bundle_file_t *files, size_t n,
                         const char *source, vd_bundle_t **out, vd_buf_t *err) {
  vd_bundle_t *b;
  size_t i;
  int rc = 0;
  *out = NULL;
  b = bundle_new(source);
  if (!b)
    return VD_ENOMEM;
  for (i = 0; rc == 0 && i < n; i++) {
    char *p, *d;
    if (!path_ok(files[i].path)) {
      vd_buf_reset(err);
      vd_buf_addf(err, "%s: not a valid bundle path", files[i].path);
      rc = VD_EINVALID;
      break;
    }
    p = strdup(files[i].path);
    d = malloc(files[i].len + 1);
    if (!p || !d) {
      free(p);
      free(d);
      rc = VD_ENOMEM;
      break;
    }
    memcpy(d, files[i].data, files[i].len);
    d[files[i].len] = '\0';
    rc = bundle_add(b, p, d, files[i].len, err);
  }
  if (rc == 0)
    rc = bundle_finish(b, err);
  if (rc) {
    bundle_free(b);
    return rc;
  }
  *out = b;
  return 0;
}
