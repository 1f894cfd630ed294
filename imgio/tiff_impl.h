/*
 * TIFF's first directory, as tiff_dir.c reads it for tiff.c: private to
 * the two.
 */
#ifndef VIT_IMGIO_TIFF_IMPL_H
#define VIT_IMGIO_TIFF_IMPL_H

#include "imgio/imgio_impl.h"

#define MAX_SAMPLES 8 /* more than Pillow's 6: such a file is refused */

/* What Pillow's _setup reads from the directory, with its defaults. */
typedef struct {
    uint64_t width, height;
    int has_width, has_height;
    unsigned compression, photometric, planar, fillorder, spp;
    int has_spp;
    unsigned bps[MAX_SAMPLES], n_bps;
    unsigned extra[MAX_SAMPLES], n_extra;
    unsigned sf[MAX_SAMPLES], n_sf;
    int be;       /* big-endian: Pillow's table has some 16-bit modes
                   * for one byte order only */
    int too_many; /* an array tag longer than MAX_SAMPLES */
    int orientation; /* IMG_ORIENT_ABSENT, 0 (not 1..8) or 1..8 */
    const uint8_t *xmp;
    size_t xmp_n;
    int has_xmp;
} tif_dir;

/* Reads the first directory: every entry must lie in the file (a file
 * cut inside its directory is truncated); an entry whose values do not is
 * skipped, as Pillow skips it. The first copy of a tag counts. */
img_status img_tiff_read_dir(const uint8_t *b, size_t n, tif_dir *d,
                             char *err, size_t errlen);

/* The size the image decodes to, and the orientation that turns it (5..8
 * swap the sides), as Pillow's Image.open reports it. */
img_status img_tiff_size(const uint8_t *b, size_t n, const tif_dir *d, int *o,
                         uint32_t *w, uint32_t *h, char *err, size_t errlen);

#endif
