/*
 * The library's one way of failing with a message: a printf-style sentence
 * into the error struct's `msg` (vit_error, idx_error: any struct whose msg
 * is a char array), and the status handed back, so that a failure is one
 * line: `return vit__fail(err, VIT_E_ARG, "no model directory");`. A NULL
 * err takes no message.
 *
 * It lives in a header, a static function behind a macro, because all three
 * libraries need it (libvit, libvit-index, libvit-service) and the shared
 * libvit exports none of its internals: a function defined in libvit could
 * not be called from the other two when a program links them against it.
 */
#ifndef VIT_FAIL_H
#define VIT_FAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline unsigned vit__failf(char *msg, size_t size, unsigned st,
                                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline unsigned vit__failf(char *msg, size_t size, unsigned st,
                                  const char *fmt, ...)
{
    if (msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, size, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Sets err->msg (when err is not NULL) and returns st. Unsigned, as gcc
 * and clang make the status enums (none has a negative value), so that a
 * failure in a ?: beside a status is not a mix of signs. */
#define vit__fail(err, st, ...)                                             \
    vit__failf((err) ? (err)->msg : NULL, sizeof (err)->msg, (unsigned)(st),\
               __VA_ARGS__)

#endif
