/*
 * Helpers the suites share: comparing against reference arrays (printing
 * the max difference, as every numeric check here does), temporary
 * directories, and small file utilities.
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <stddef.h>

#define FIXTURES "tests/fixtures"

/* max |got - ref| / max |ref|, printed with `what` to stdout. */
double tu_rel_diff(const char *what, const float *got, const float *ref,
                   size_t n);

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it. */
char *tu_tmpdir(void);
/* Removes a directory tree made by the tests. */
void tu_rmrf(const char *path);
/* Copies a file; returns 0 on success. */
int tu_copy(const char *src, const char *dst);
/* Reads a whole file; *n gets its size. NULL on failure. */
unsigned char *tu_read(const char *path, size_t *n);
/* Writes `n` bytes; returns 0 on success. */
int tu_write(const char *path, const void *data, size_t n);

#endif
