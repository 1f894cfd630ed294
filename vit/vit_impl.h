/*
 * Private declarations shared by the files of vit/: the model and state
 * structs, the checkpoint loader, the kernels and the encoder. Nothing here
 * is API; tests include it to check internals against the reference.
 */
#ifndef VIT_IMPL_H
#define VIT_IMPL_H

#include "vit/vit.h"
#include "imgio/imgio.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* For bugs only: bad input returns a status instead. */
#define VIT_ASSERT(c)                                                        \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                    __LINE__, #c);                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* Sets err->msg (when err is not NULL) and returns st. */
vit_status vit__fail(vit_error *err, vit_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
