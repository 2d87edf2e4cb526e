/*
 * version.h - which verdict this is, and which libraries it runs on.
 *
 * The version number has one home, the Makefile's VERSION (debian/changelog
 * is checked against it by tests/blackbox/test_package.py); the Makefile
 * passes it to core/version.c alone.  Pure functions, any thread.
 */
#ifndef VERDICT_VERSION_H
#define VERDICT_VERSION_H

#include "verdict/buf.h"

/* "0.4.0": a static string. */
const char *vd_version(void);

/* Append one line per library linked into every verdict program, each
 * "NAME VERSION", the version the process runs on (the shared library's
 * own answer where it has one), followed by " (built with VERSION)" when
 * the headers compiled against differ. */
void vd_version_libs(vd_buf_t *out);

#endif
