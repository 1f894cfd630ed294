/*
 * TIFF: the first directory's tags, read by our own walk of the file as
 * Pillow 13's TiffImagePlugin reads them (for its pixel mode, the size and
 * the orientation it applies on loading); tiff.c decodes the pixels.
 */
#include "imgio/tiff_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiff.h> /* the tags' numbers */

/* The file's bytes and how its numbers are stored. */
typedef struct {
    const uint8_t *b;
    size_t n;
    int be;  /* "MM": big-endian */
    int big; /* BigTIFF: 8-byte counts and offsets */
} tif_bytes;

/* An unsigned number of `size` bytes (1..8) at `at`, in the file's order;
 * the caller has checked that it lies in the file. */
static uint64_t rd(const tif_bytes *t, size_t at, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v = v << 8 | t->b[at + (t->be ? i : size - 1 - i)];
    return v;
}


/* Bytes per value of each TIFF field type; 0: unknown type. */
static unsigned type_size(unsigned type)
{
    static const uint8_t size[19] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4,
                                     8, 4, 8, 4, 0, 0, 8, 8, 8};
    return type < 19 ? size[type] : 0;
}

/* Value i of an integer field whose values start at `at`; other types
 * give UINT64_MAX, which matches no value Pillow's table holds. */
static uint64_t value_at(const tif_bytes *t, unsigned type, size_t at,
                         uint64_t i)
{
    switch (type) {
    case 1: case 6: case 7:
        return rd(t, at + i, 1);
    case 3: case 8:
        return rd(t, at + 2 * i, 2);
    case 4: case 9: case 13:
        return rd(t, at + 4 * i, 4);
    case 16: case 17: case 18:
        return rd(t, at + 8 * i, 8);
    default:
        return UINT64_MAX;
    }
}

/* The fixed part of the header: the first directory's offset, or a
 * message. */
static img_status tif_header(tif_bytes *t, uint64_t *ifd, char *err,
                             size_t errlen)
{
    t->be = t->b[0] == 'M';
    t->big = t->n >= 4 && t->b[t->be ? 3 : 2] == 43;
    /* Pillow looks for BigTIFF's 43 in the little-endian place only, and
     * misreads the big-endian header. */
    if (t->big && t->be)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "big-endian BigTIFF images are not supported "
                        "(Pillow cannot open them)");
    size_t hdr = t->big ? 16 : 8;
    if (t->n < hdr)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "TIFF image is truncated (%zu bytes, shorter than "
                        "its header)",
                        t->n);
    if (t->big && (rd(t, 4, 2) != 8 || rd(t, 6, 2) != 0))
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "BigTIFF header gives an offset size of %u; only 8 "
                        "exists",
                        (unsigned)rd(t, 4, 2));
    *ifd = t->big ? rd(t, 8, 8) : rd(t, 4, 4);
    return IMG_OK;
}

/* Reads the first directory: every entry must lie in the file (a file
 * cut inside its directory is truncated); an entry whose values do not is
 * skipped, as Pillow skips it. The first copy of a tag counts. */
img_status img_tiff_read_dir(const uint8_t *b, size_t n, tif_dir *d,
                             char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->compression = 1;
    d->planar = 1;
    d->fillorder = 1;
    d->bps[0] = 1;
    d->n_bps = 1;
    d->sf[0] = 1;
    d->n_sf = 1;
    d->orientation = IMG_ORIENT_ABSENT;
    tif_bytes t = {b, n, 0, 0};
    uint64_t pos = 0;
    img_status st = tif_header(&t, &pos, err, errlen);
    if (st != IMG_OK)
        return st;
    d->be = t.be;
    unsigned csize = t.big ? 8 : 2, esize = t.big ? 20 : 12;
    unsigned vsize = t.big ? 8 : 4;
    if (pos > n || n - pos < csize)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "TIFF image is truncated (its first directory, at "
                        "byte %llu, lies past the end of the %zu bytes)",
                        (unsigned long long)pos, n);
    uint64_t count = rd(&t, (size_t)pos, csize);
    pos += csize;
    if (count > (n - pos) / esize)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "TIFF image is truncated (its first directory of "
                        "%llu entries ends past the end of the file)",
                        (unsigned long long)count);
    uint8_t seen[65536 / 8] = {0};
    for (uint64_t i = 0; i < count; i++) {
        size_t e = (size_t)(pos + i * esize);
        unsigned tag = (unsigned)rd(&t, e, 2);
        unsigned type = (unsigned)rd(&t, e + 2, 2);
        uint64_t cnt = rd(&t, e + 4, vsize);
        unsigned us = type_size(type);
        if (!us || cnt == 0 || cnt > n)
            continue;
        size_t at = e + 4 + vsize;
        if (cnt * us > vsize) {
            uint64_t off = rd(&t, at, vsize);
            if (off > n || cnt * us > n - off)
                continue;
            at = (size_t)off;
        }
        if (seen[tag / 8] & (1u << (tag % 8)))
            continue;
        seen[tag / 8] |= (uint8_t)(1u << (tag % 8));
        uint64_t v0 = value_at(&t, type, at, 0);
        unsigned v16 = v0 > 0xffffffffu ? 0xffffffffu : (unsigned)v0;
        switch (tag) {
        case TIFFTAG_IMAGEWIDTH:
            d->width = v0;
            d->has_width = v0 != UINT64_MAX;
            break;
        case TIFFTAG_IMAGELENGTH:
            d->height = v0;
            d->has_height = v0 != UINT64_MAX;
            break;
        case TIFFTAG_COMPRESSION:
            d->compression = v16;
            break;
        case TIFFTAG_PHOTOMETRIC:
            d->photometric = v16;
            break;
        case TIFFTAG_PLANARCONFIG:
            d->planar = v16;
            break;
        case TIFFTAG_FILLORDER:
            d->fillorder = v16;
            break;
        case TIFFTAG_SAMPLESPERPIXEL:
            d->spp = v16;
            d->has_spp = 1;
            break;
        case TIFFTAG_BITSPERSAMPLE:
        case TIFFTAG_EXTRASAMPLES:
        case TIFFTAG_SAMPLEFORMAT: {
            unsigned *arr = tag == TIFFTAG_BITSPERSAMPLE ? d->bps
                            : tag == TIFFTAG_EXTRASAMPLES ? d->extra
                                                          : d->sf;
            unsigned *len = tag == TIFFTAG_BITSPERSAMPLE ? &d->n_bps
                            : tag == TIFFTAG_EXTRASAMPLES ? &d->n_extra
                                                          : &d->n_sf;
            if (cnt > MAX_SAMPLES) {
                d->too_many = 1;
                break;
            }
            for (uint64_t k = 0; k < cnt; k++) {
                uint64_t v = value_at(&t, type, at, k);
                arr[k] = v > 0xffffffffu ? 0xffffffffu : (unsigned)v;
            }
            *len = (unsigned)cnt;
            break;
        }
        case TIFFTAG_ORIENTATION:
            d->orientation = v0 >= 1 && v0 <= 8 ? (int)v0 : 0;
            break;
        case TIFFTAG_XMLPACKET:
            if (us == 1) {
                d->xmp = b + at;
                d->xmp_n = (size_t)cnt;
                d->has_xmp = 1;
            }
            break;
        default:
            break;
        }
    }
    return IMG_OK;
}

/* The directory's width and height, which must be there. */
static img_status dir_size(const tif_dir *d, char *err, size_t errlen)
{
    if (!d->has_width || !d->has_height)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "TIFF image has no %s in its first directory",
                        d->has_width ? "ImageLength" : "ImageWidth");
    if (d->width > UINT32_MAX || d->height > UINT32_MAX)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "TIFF image is %llux%llu, too large to hold in "
                        "memory",
                        (unsigned long long)d->width,
                        (unsigned long long)d->height);
    return IMG_OK;
}

/* The Orientation Pillow applies on loading: the first directory's tag,
 * read as its getexif reads it, else XMP's. */
static int tif_orientation(const uint8_t *b, size_t n, const tif_dir *d)
{
    /* A classic TIFF is an EXIF block, and is read as one; BigTIFF, which
     * EXIF never is, from our walk of the directory. */
    int big = b[d->be ? 3 : 2] == 43;
    int o = big ? d->orientation : img_tiff_orientation(b, n);
    return img_exif_resolve(o, d->xmp, d->xmp_n, d->has_xmp);
}

/* The size the image decodes to, and the orientation that turns it (5..8
 * swap the sides), as Pillow's Image.open reports it. */
img_status img_tiff_size(const uint8_t *b, size_t n, const tif_dir *d, int *o,
                         uint32_t *w, uint32_t *h, char *err, size_t errlen)
{
    img_status st = dir_size(d, err, errlen);
    if (st != IMG_OK)
        return st;
    *o = tif_orientation(b, n, d);
    int swap = *o >= 5 && *o <= 8;
    *w = (uint32_t)(swap ? d->height : d->width);
    *h = (uint32_t)(swap ? d->width : d->height);
    return IMG_OK;
}

img_status img_size_tiff(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen)
{
    tif_dir d;
    int o;
    img_status st = img_tiff_read_dir(bytes, n, &d, err, errlen);
    if (st != IMG_OK)
        return st;
    return img_tiff_size(bytes, n, &d, &o, w, h, err, errlen);
}

