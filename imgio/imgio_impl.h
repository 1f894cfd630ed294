/*
 * Private declarations shared by the files of imgio/: the error-message
 * helper, the limit check every decoder runs on its header, and the two
 * decoders that img_decode dispatches to. Nothing here is API; the tests
 * may include it.
 */
#ifndef IMGIO_IMPL_H
#define IMGIO_IMPL_H

#include "imgio/imgio.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Writes a sentence into err (when err is not NULL and errlen > 0), always
 * NUL-terminated and truncated to fit, and returns st. */
img_status img_fail(char *err, size_t errlen, img_status st, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* Checks a width and height read from an image header against `lim`
 * (zero fields meaning no limit), and that w * h * 3 bytes can be allocated
 * and indexed with int. Returns IMG_OK, IMG_E_CORRUPT for a zero dimension
 * or IMG_E_LIMIT, with a message naming the limit and the numbers. */
img_status img_check_dims(const img_limits *lim, uint64_t w, uint64_t h,
                          char *err, size_t errlen);

/* The decoders behind img_decode. `bytes` holds a file that starts with the
 * format's signature; `lim` is not NULL. Same contract as img_decode. */
img_status img_decode_jpeg(const uint8_t *bytes, size_t n,
                           const img_limits *lim, img_rgb *out, char *err,
                           size_t errlen);
img_status img_decode_png(const uint8_t *bytes, size_t n,
                          const img_limits *lim, img_rgb *out, char *err,
                          size_t errlen);

#endif
