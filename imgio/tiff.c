/*
 * TIFF: the first image of the file, as Pillow 13 gives it (Image.open,
 * then convert("RGB")). libtiff (Debian's libtiff-dev) reads the file from
 * memory and undoes the compression; what Pillow then makes of the
 * samples is reproduced here, since that part is its own:
 *   - the pixel mode comes from Pillow's table (TiffImagePlugin's
 *     OPEN_INFO) keyed by byte order, photometric interpretation, sample
 *     format, fill order, bits per sample and extra samples, all read from
 *     the first directory as Pillow reads them (our own walk of it, in
 *     tiff_dir.c); a combination Pillow has no mode for is refused, as
 *     it refuses it;
 *   - 1-bit is black or white, 2- and 4-bit gray is scaled to 0..255, and
 *     MinIsWhite inverts up to 8 bits (Pillow's "1;I", "L;I"... raw
 *     modes), but not 16;
 *   - 16-bit gray is clamped to 255 (Pillow's I;16 to RGB saturates),
 *     16-bit color keeps its high byte;
 *   - associated (premultiplied) alpha is divided out with Pillow's
 *     integer formula, on the high byte for 16-bit samples;
 *   - a palette entry is the colormap's high byte;
 *   - CMYK becomes RGB by Pillow's own formula, not a colour profile;
 *   - YCbCr is turned into RGB by libtiff, as Pillow asks it to: through
 *     libjpeg for JPEG-compressed contiguous data (JPEGCOLORMODE_RGB),
 *     through TIFFRGBAImage otherwise.
 * Pillow 13 also applies the Orientation tag of the first directory (or,
 * without one, XMP's tiff:Orientation) when it loads a TIFF, so the image
 * comes out turned even without exif_transpose: this decoder turns it
 * itself and reports orientation 1.
 *
 * libtiff never prints here: its errors and warnings go to handlers of
 * this handle alone (TIFFOpenOptions), the first error becoming our
 * message, and its single allocations are capped so that a hostile
 * directory cannot make it allocate much more than the image needs.
 */
#include "imgio/tiff_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

/* ------------------------------------------------ Pillow's pixel modes */

/* How the samples of a pixel become RGB, one per Pillow mode we decode. */
typedef enum {
    K_BILEVEL,   /* "1": 1 bit, 1 white (0 white when inverted) */
    K_GRAY,      /* "L" from 2, 4 or 8 bits; any second sample ignored */
    K_GRAY16,    /* "I;16": clamped to 255 */
    K_GRAY_A,    /* "LA": gray, then alpha */
    K_RGB,       /* "RGB": 8 bits, or 16 with the high byte kept */
    K_RGBA,      /* "RGBA": unassociated alpha */
    K_RGBA_PRE,  /* "RGBa" unpacked to RGBA: alpha divided out */
    K_PAL,       /* "P" */
    K_PAL_A,     /* "PA" */
    K_CMYK,      /* "CMYK" */
    K_YCBCR      /* libtiff converts it to RGB */
} kind;

typedef struct {
    kind k;
    int invert;  /* MinIsWhite, up to 8 bits */
    unsigned bps;
    unsigned spp;   /* samples a pixel as stored (contiguous) */
    unsigned bands; /* samples Pillow reads: the planes of a separate one */
} pmode;

/* Pillow's OPEN_INFO lookup, written out by photometric interpretation.
 * Returns IMG_OK with the mode, or IMG_E_FORMAT with a message naming
 * what the file holds: whether Pillow has no mode for it (or cannot
 * convert that mode to RGB), or this decoder does not read it. */
static img_status pillow_mode(const tif_dir *d, pmode *m, char *err,
                              size_t errlen)
{
    unsigned photo = d->photometric, fill = d->fillorder;
    /* Pillow's own adjustments of the sample counts. */
    unsigned bps[MAX_SAMPLES], nb = d->n_bps, extra[MAX_SAMPLES];
    unsigned ne = d->n_extra;
    unsigned spp = d->has_spp ? d->spp : 1;
    memcpy(bps, d->bps, sizeof bps);
    memcpy(extra, d->extra, sizeof extra);
    if (d->too_many || spp > 6)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "TIFF images with more than 6 samples a pixel are "
                        "not supported (Pillow refuses them too)");
    if (d->planar == 2 && ne > 0) {
        unsigned mx = 0;
        for (unsigned i = 0; i < ne; i++)
            mx = extra[i] > mx ? extra[i] : mx;
        if (mx == 0) {
            /* Unspecified planes of a separate image are left unread. */
            nb = nb >= ne ? nb - ne : 0;
            spp = spp >= ne ? spp - ne : 0;
            ne = 0;
        }
    }
    if (spp < nb)
        nb = spp;
    else if (spp > nb && nb == 1)
        for (; nb < spp; nb++)
            bps[nb] = bps[0];
    unsigned sf = d->sf[0];
    for (unsigned i = 1; i < d->n_sf; i++)
        if (d->sf[i] != sf)
            sf = 0; /* mixed sample formats: no entry */
    if (nb != spp || nb == 0)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "TIFF image has %u samples a pixel but %u "
                        "BitsPerSample values (Pillow refuses it too)",
                        spp, d->n_bps);
    unsigned b = bps[0];
    for (unsigned i = 1; i < nb; i++)
        if (bps[i] != b)
            b = 0;
    /* The extra samples as a number: one digit each, first most
     * significant, e.g. (1, 0) is 10; none is 0 with ne == 0. */
    unsigned ex = 0;
    for (unsigned i = 0; i < ne; i++)
        ex = ex * 10 + (extra[i] <= 2 ? extra[i] : 9);
    int ok = 0;
    *m = (pmode){.bps = b, .spp = spp, .bands = spp};
    switch (photo) {
    case 0: /* MinIsWhite */
    case 1: /* MinIsBlack */
        if (spp == 1 && sf == 1 && (b == 1 || b == 2 || b == 4 || b == 8) &&
            (fill == 1 || fill == 2)) {
            m->k = b == 1 ? K_BILEVEL : K_GRAY;
            m->invert = photo == 0;
            ok = 1;
        } else if (spp == 1 && sf == 2 && b == 8 && photo == 1 && fill == 1) {
            m->k = K_GRAY; /* signed 8-bit: the bytes as they are */
            ok = 1;
        } else if (spp == 1 && sf == 1 && b == 16 && fill == 1 &&
                   (photo == 1 || !d->be)) {
            m->k = K_GRAY16; /* MinIsWhite too: Pillow does not invert */
            ok = 1;
        } else if (spp == 2 && sf == 1 && b == 8 && photo == 1 && fill == 1 &&
                   ne == 1) {
            if (ex == 1)
                return img_fail(err, errlen, IMG_E_FORMAT,
                                "TIFF gray images with premultiplied alpha "
                                "are not supported (Pillow opens them as "
                                "\"La\" and cannot convert that to RGB)");
            if (ex == 0 || ex == 2) {
                m->k = ex == 2 ? K_GRAY_A : K_GRAY;
                ok = 1;
            }
        } else if (spp == 1 && sf == 1 && b == 16 && fill == 2 &&
                   photo == 1 && !d->be) {
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "16-bit TIFF gray images with FillOrder 2 are "
                            "not supported");
        } else if (spp == 1 && ((sf == 2 && b == 16) || b == 32 ||
                                (b == 12 && sf == 1))) {
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "TIFF gray images of %u-bit %s samples are not "
                            "supported",
                            b, sf == 3 ? "floating-point"
                               : sf == 2 ? "signed" : "unsigned");
        }
        break;
    case 2: /* RGB */
        if (sf != 1 || !(b == 8 || b == 16) || spp < 3 ||
            (fill != 1 && !(fill == 2 && b == 8 && spp == 3)))
            break;
        if (spp == 3 && ne == 0) {
            m->k = K_RGB;
            ok = 1;
        } else if (spp == 4 && ne == 0) {
            m->k = K_RGBA; /* four samples without ExtraSamples */
            ok = 1;
        } else if (ne == spp - 3 && (b == 8 || spp == 4)) {
            /* 8 bits: (x), (x, 0), (x, 0, 0); 16 bits: (x) alone. */
            unsigned first = extra[0], rest = 0;
            for (unsigned i = 1; i < ne; i++)
                rest |= extra[i];
            if (rest == 0 && first <= 2) {
                m->k = first == 0 ? K_RGB : first == 1 ? K_RGBA_PRE : K_RGBA;
                ok = 1;
            } else if (b == 8 && spp == 4 && first == 999) {
                m->k = K_RGBA; /* Corel Draw 10's */
                ok = 1;
            }
        }
        break;
    case 3: /* palette */
        if (sf == 1 && spp == 1 && (b == 1 || b == 2 || b == 4 || b == 8) &&
            (fill == 1 || fill == 2)) {
            m->k = K_PAL;
            ok = 1;
        } else if (sf == 1 && spp == 2 && b == 8 && fill == 1 && ne == 1 &&
                   (ex == 0 || ex == 2)) {
            m->k = ex == 2 ? K_PAL_A : K_PAL;
            ok = 1;
        }
        break;
    case 5: /* separated: CMYK */
        if (sf == 1 && fill == 1 &&
            ((b == 8 && spp == 4 && ne == 0) ||
             (b == 8 && spp == 5 && ne == 1 && ex == 0) ||
             (b == 8 && spp == 6 && ne == 2 && ex == 0) ||
             (b == 16 && spp == 4 && ne == 0))) {
            m->k = K_CMYK;
            ok = 1;
        }
        break;
    case 6: /* YCbCr */
        if (sf == 1 && fill == 1 && b == 8 && spp == 3 && ne == 0) {
            m->k = K_YCBCR;
            ok = 1;
        } else if (sf == 1 && fill == 1 && b == 8 && spp == 1) {
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "TIFF YCbCr images of one sample are not "
                            "supported");
        }
        break;
    case 8: /* CIELab */
        if (sf == 1 && fill == 1 && b == 8 && spp == 3 && ne == 0)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "TIFF CIELab images are not supported");
        break;
    default:
        break;
    }
    if (!ok)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "TIFF image of a kind Pillow has no mode for "
                        "(photometric %u, %u samples of %u bits, sample "
                        "format %u, %u extra samples, fill order %u)",
                        photo, spp, bps[0], d->sf[0], ne, fill);
    return IMG_OK;
}

/* --------------------------------------------------- libtiff, in memory */

/* The file libtiff reads, and the first error it reported. */
typedef struct {
    const uint8_t *p;
    uint64_t n, at;
    char msg[200];
} tif_src;

static tmsize_t on_read(thandle_t h, void *buf, tmsize_t size)
{
    tif_src *s = h;
    if (size <= 0 || s->at >= s->n)
        return 0;
    uint64_t k = s->n - s->at;
    if (k > (uint64_t)size)
        k = (uint64_t)size;
    memcpy(buf, s->p + s->at, (size_t)k);
    s->at += k;
    return (tmsize_t)k;
}

static tmsize_t on_write(thandle_t h, void *buf, tmsize_t size)
{
    (void)h;
    (void)buf;
    (void)size;
    return 0; /* opened for reading only */
}

/* Positions past the end are allowed, as for a file; reads there get
 * nothing. */
static toff_t on_seek(thandle_t h, toff_t off, int whence)
{
    tif_src *s = h;
    if (whence == SEEK_CUR)
        off += s->at;
    else if (whence == SEEK_END)
        off += s->n;
    s->at = off;
    return off;
}

static int on_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t on_size(thandle_t h)
{
    return ((tif_src *)h)->n;
}

/* The buffer is handed out as libtiff's memory-mapped file, as Pillow
 * hands it, so that strips are decoded from it without a copy. */
static int on_map(thandle_t h, void **base, toff_t *size)
{
    tif_src *s = h;
    *base = (void *)(uintptr_t)s->p;
    *size = s->n;
    return 1;
}

static void on_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static int on_error(TIFF *tif, void *user, const char *module,
                    const char *fmt, va_list ap)
{
    (void)tif;
    tif_src *s = user;
    if (!s->msg[0]) {
        char m[160];
        vsnprintf(m, sizeof m, fmt, ap);
        snprintf(s->msg, sizeof s->msg, "%s%s%s", module ? module : "",
                 module ? ": " : "", m);
    }
    return 1; /* handled: nothing reaches libtiff's global handler */
}

/* Warnings (unknown tags, odd but readable values) are what Pillow
 * ignores too. */
static int on_warning(TIFF *tif, void *user, const char *module,
                      const char *fmt, va_list ap)
{
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

static img_status libtiff_fail(const tif_src *s, const char *what, char *err,
                               size_t errlen)
{
    return img_fail(err, errlen, IMG_E_CORRUPT, "TIFF decoding failed%s%s%s",
                    what, s->msg[0] ? ": " : "", s->msg);
}

/* --------------------------------------------------------- the samples */

/* The compressions Pillow reads (its libtiff's codecs) that Debian's
 * libtiff reads too; `name` for the messages. */
static int compression_known(unsigned c, const char **name)
{
    static const struct {
        unsigned code;
        const char *name;
        int ok;
    } tab[] = {
        {1, "uncompressed", 1},
        {2, "CCITT RLE", 1},
        {3, "CCITT Group 3 fax", 1},
        {4, "CCITT Group 4 fax", 1},
        {5, "LZW", 1},
        {6, "old-style JPEG", 0},
        {7, "JPEG", 1},
        {8, "Deflate", 1},
        {32771, "CCITT RLE (word-aligned)", 0},
        {32773, "PackBits", 1},
        {32809, "ThunderScan", 0},
        {32946, "Deflate (old code)", 1},
        {34676, "SGI LogLuv", 0},
        {34677, "SGI LogLuv 24-bit", 0},
        {34925, "LZMA", 1},
        {50000, "Zstandard", 1},
        {50001, "WebP", 0},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (tab[i].code == c) {
            *name = tab[i].name;
            return tab[i].ok;
        }
    *name = NULL;
    return 0;
}

/* One row's samples, `count` of `bps` bits packed MSB first (libtiff has
 * already undone FillOrder 2) or 16-bit native words, into dst[i * step]. */
static void unpack(const uint8_t *src, unsigned bps, size_t count,
                   uint16_t *dst, size_t step)
{
    if (bps == 8) {
        for (size_t i = 0; i < count; i++)
            dst[i * step] = src[i];
    } else if (bps == 16) {
        for (size_t i = 0; i < count; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            dst[i * step] = v;
        }
    } else {
        unsigned mask = (1u << bps) - 1;
        for (size_t i = 0; i < count; i++) {
            size_t bit = i * bps;
            unsigned shift = 8 - bps - (unsigned)(bit % 8);
            dst[i * step] = (uint16_t)((src[bit / 8] >> shift) & mask);
        }
    }
}

/* Pillow's MULDIV255: a * b / 255, rounded, in integers. */
static int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* Writes `cols` pixels of samples s (m->spp a pixel) as RGB at d, as
 * Pillow's unpacker and then convert("RGB") (or, with over, convert_to_rgb's
 * composite on white) make them. */
static void to_rgb(const pmode *m, const uint16_t *s, size_t cols,
                   const uint8_t (*pal)[3], int over, uint8_t *d)
{
    unsigned spp = m->spp, hi = m->bps == 16 ? 8 : 0;
    for (size_t x = 0; x < cols; x++, s += spp, d += 3) {
        int v, a = 255;
        switch (m->k) {
        case K_BILEVEL:
            d[0] = d[1] = d[2] = (s[0] != 0) != (m->invert != 0) ? 255 : 0;
            break;
        case K_GRAY:
        case K_GRAY_A:
            v = m->bps == 2 ? s[0] * 85 : m->bps == 4 ? s[0] * 17 : s[0];
            if (m->invert)
                v = 255 - v;
            if (m->k == K_GRAY_A && over)
                v = img_over_white(v, s[1]);
            d[0] = d[1] = d[2] = (uint8_t)v;
            break;
        case K_GRAY16:
            d[0] = d[1] = d[2] = s[0] > 255 ? 255 : (uint8_t)s[0];
            break;
        case K_PAL:
        case K_PAL_A:
            if (m->k == K_PAL_A && over)
                a = s[1];
            for (int c = 0; c < 3; c++)
                d[c] = img_over_white(pal[s[0]][c], a);
            break;
        case K_CMYK: {
            int nk = 255 - (s[3] >> hi);
            for (int c = 0; c < 3; c++)
                d[c] = (uint8_t)(nk - muldiv255(s[c] >> hi, nk));
            break;
        }
        case K_RGBA_PRE:
            a = s[3] >> hi;
            for (int c = 0; c < 3; c++) {
                v = s[c] >> hi;
                /* Pillow's unpackRGBa: truncating division, clipped. */
                v = a == 0 ? 0 : a == 255 ? v : v * 255 / a;
                d[c] = over ? img_over_white(v > 255 ? 255 : v, a)
                            : (uint8_t)(v > 255 ? 255 : v);
            }
            break;
        case K_RGBA:
            if (over)
                a = s[3] >> hi;
            /* fall through */
        default: /* K_RGB, and YCbCr that libjpeg made RGB */
            for (int c = 0; c < 3; c++)
                d[c] = img_over_white(s[c] >> hi, a);
            break;
        }
    }
}

/* --------------------------------------------------------- the decoding */

/* What one decode holds, freed together. */
typedef struct {
    TIFF *tif;
    tif_src src;
    uint8_t *blk[MAX_SAMPLES]; /* one strip or tile of each plane read */
    uint16_t *row;             /* one row's samples */
    uint32_t *rgba;            /* TIFFRGBAImage's rows */
    uint8_t *rgb;              /* the output */
} tif_job;

static void job_free(tif_job *j)
{
    if (j->tif)
        TIFFClose(j->tif);
    for (int i = 0; i < MAX_SAMPLES; i++)
        free(j->blk[i]);
    free(j->row);
    free(j->rgba);
    free(j->rgb);
}

/* Checks the decoder's working memory (besides the output) against the
 * caller's cap. */
static img_status memory_ok(const img_limits *lim, uint64_t need, char *err,
                            size_t errlen)
{
    if (lim->max_decoder_memory && need > lim->max_decoder_memory)
        return img_fail(err, errlen, IMG_E_LIMIT,
                        "TIFF decoding needs %llu bytes of strip or tile "
                        "buffers, more than the %zu-byte decoder limit",
                        (unsigned long long)need, lim->max_decoder_memory);
    return IMG_OK;
}

/* YCbCr other than JPEG's contiguous kind: libtiff's TIFFRGBAImage makes
 * it RGBA, a strip's or tile's rows at a time, as Pillow's _decodeAsRGBA
 * reads it. */
static img_status decode_rgba(tif_job *j, uint32_t w, uint32_t h,
                              const img_limits *lim, char *err, size_t errlen)
{
    uint32_t rows = 0;
    if (!(TIFFIsTiled(j->tif)
              ? TIFFGetFieldDefaulted(j->tif, TIFFTAG_TILELENGTH, &rows)
              : TIFFGetFieldDefaulted(j->tif, TIFFTAG_ROWSPERSTRIP, &rows)) ||
        rows == 0 || rows > h)
        rows = h;
    img_status st = memory_ok(lim, (uint64_t)w * rows * 4, err, errlen);
    if (st != IMG_OK)
        return st;
    char emsg[1024] = "";
    TIFFRGBAImage img;
    if (!TIFFRGBAImageOK(j->tif, emsg) ||
        !TIFFRGBAImageBegin(&img, j->tif, 0, emsg))
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "TIFF decoding failed: %s",
                        emsg[0] ? emsg : j->src.msg);
    /* Rows as stored: Pillow 13's libtiff applies no Orientation here
     * (Pillow turns the image afterwards, by the tag, as for any TIFF). */
    img.req_orientation = img.orientation;
    img.col_offset = 0;
    j->rgba = malloc((size_t)w * rows * 4);
    if (!j->rgba) {
        TIFFRGBAImageEnd(&img);
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    }
    for (uint32_t y = 0; y < h; y += rows) {
        uint32_t n = rows < h - y ? rows : h - y;
        img.row_offset = (int)y;
        if (!TIFFRGBAImageGet(&img, j->rgba, w, n)) {
            TIFFRGBAImageEnd(&img);
            return libtiff_fail(&j->src, " in the YCbCr conversion", err,
                                errlen);
        }
        uint8_t *d = j->rgb + (size_t)y * w * 3;
        for (size_t i = 0; i < (size_t)w * n; i++) {
            d[3 * i] = (uint8_t)TIFFGetR(j->rgba[i]);
            d[3 * i + 1] = (uint8_t)TIFFGetG(j->rgba[i]);
            d[3 * i + 2] = (uint8_t)TIFFGetB(j->rgba[i]);
        }
    }
    TIFFRGBAImageEnd(&img);
    return IMG_OK;
}

/* Every other kind: each strip or tile (of each plane read, for separate
 * planes) decoded by libtiff, its rows unpacked and converted. */
static img_status decode_samples(tif_job *j, const pmode *m, int separate,
                                 uint32_t w, uint32_t h,
                                 const uint8_t (*pal)[3], int over,
                                 const img_limits *lim, char *err,
                                 size_t errlen)
{
    TIFF *tif = j->tif;
    int tiled = TIFFIsTiled(tif);
    uint32_t bw = w, bh = h;
    tmsize_t bytes, rowbytes;
    if (tiled) {
        if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &bw) ||
            !TIFFGetField(tif, TIFFTAG_TILELENGTH, &bh) || bw == 0 || bh == 0)
            return img_fail(err, errlen, IMG_E_CORRUPT,
                            "TIFF image is tiled but gives no tile size");
        bytes = TIFFTileSize(tif);
        rowbytes = TIFFTileRowSize(tif);
    } else {
        if (!TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &bh) ||
            bh == 0 || bh > h)
            bh = h;
        bytes = TIFFStripSize(tif);
        rowbytes = TIFFScanlineSize(tif);
    }
    unsigned planes = separate ? m->bands : 1;
    unsigned per = separate ? 1 : m->spp; /* samples a pixel in a block */
    uint64_t need_row = ((uint64_t)bw * per * m->bps + 7) / 8;
    if (bytes <= 0 || rowbytes <= 0 || (uint64_t)rowbytes < need_row ||
        (uint64_t)bytes / (uint64_t)rowbytes < (bh < h ? bh : h))
        return libtiff_fail(&j->src, " (its strip or tile sizes do not "
                                     "fit the image)",
                            err, errlen);
    uint64_t bw_clip = bw < w ? bw : w;
    img_status st = memory_ok(lim,
                              (uint64_t)bytes * planes +
                                  bw_clip * m->spp * sizeof *j->row,
                              err, errlen);
    if (st != IMG_OK)
        return st;
    for (unsigned p = 0; p < planes; p++)
        if (!(j->blk[p] = calloc(1, (size_t)bytes)))
            return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    if (!(j->row = malloc((size_t)bw_clip * m->spp * sizeof *j->row)))
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    for (uint32_t y = 0; y < h; y += bh) {
        uint32_t rows = bh < h - y ? bh : h - y;
        for (uint32_t x = 0; x < w; x += bw) {
            uint32_t cols = bw < w - x ? bw : w - x;
            for (unsigned p = 0; p < planes; p++) {
                tmsize_t got =
                    tiled ? TIFFReadTile(tif, j->blk[p], x, y, 0, (uint16_t)p)
                          : TIFFReadEncodedStrip(
                                tif, TIFFComputeStrip(tif, y, (uint16_t)p),
                                j->blk[p], bytes);
                if (got < 0)
                    return libtiff_fail(&j->src, "", err, errlen);
            }
            for (uint32_t r = 0; r < rows; r++) {
                for (unsigned p = 0; p < planes; p++)
                    unpack(j->blk[p] + (size_t)r * (size_t)rowbytes, m->bps,
                           (size_t)cols * per, j->row + p, planes);
                to_rgb(m, j->row, cols, pal, over,
                       j->rgb + ((size_t)(y + r) * w + x) * 3);
            }
        }
    }
    return IMG_OK;
}

/* The kinds whose uncompressed, planar-separate files Pillow reads right:
 * its own unpacker then reads each plane with one letter of the mode's
 * raw mode, which only fits 8-bit planes of R, G, B (and unassociated A)
 * or C, M, Y, K, and one plane of 8-bit gray, palette or bilevel data. */
static int raw_planes_ok(const tif_dir *d, const pmode *m)
{
    if (m->bps != (m->k == K_BILEVEL ? 1u : 8u) || d->fillorder != 1 ||
        (d->has_spp ? d->spp : 1) != m->spp)
        return 0;
    if (m->spp == 1)
        return !m->invert &&
               (m->k == K_GRAY || m->k == K_PAL || m->k == K_BILEVEL);
    return (m->k == K_RGB && m->spp == 3) ||
           (m->k == K_RGBA && m->spp == 4 && d->n_extra != 0 &&
            d->extra[0] == 2) ||
           (m->k == K_CMYK && m->spp == 4);
}

img_status img_decode_tiff(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen)
{
    const img_limits *lim = &opt->limits;
    tif_dir d;
    uint32_t tw, th;
    int turn;
    img_status st = img_tiff_read_dir(bytes, n, &d, err, errlen);
    if (st == IMG_OK)
        st = img_tiff_size(bytes, n, &d, &turn, &tw, &th, err, errlen);
    /* The size as decoded, turned, so that img_size and the limits agree
     * with what comes out. */
    if (st == IMG_OK)
        st = img_check_dims(lim, tw, th, err, errlen);
    if (st != IMG_OK)
        return st;
    uint32_t w = (uint32_t)d.width, h = (uint32_t)d.height;
    const char *cname;
    if (!compression_known(d.compression, &cname)) {
        if (cname)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "%s-compressed TIFF images are not supported",
                            cname);
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "TIFF images of compression %u are not supported "
                        "(Pillow does not read them either)",
                        d.compression);
    }
    pmode m;
    if ((st = pillow_mode(&d, &m, err, errlen)) != IMG_OK)
        return st;
    int separate = d.planar == 2 && m.spp > 1;
    if (d.compression == 1 && m.k == K_YCBCR)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "uncompressed YCbCr TIFF images are not supported");
    if (d.compression == 1 && d.planar == 2 && !raw_planes_ok(&d, &m))
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "uncompressed planar-separate TIFF images of this "
                        "kind (photometric %u, %u samples of %u bits%s) are "
                        "not supported",
                        d.photometric, d.has_spp ? d.spp : 1, m.bps,
                        m.k == K_RGBA_PRE ? ", premultiplied alpha" : "");

    tif_job j = {.src = {.p = bytes, .n = n}};
    TIFFOpenOptions *oo = TIFFOpenOptionsAlloc();
    if (!oo)
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    TIFFOpenOptionsSetErrorHandlerExtR(oo, on_error, &j.src);
    TIFFOpenOptionsSetWarningHandlerExtR(oo, on_warning, &j.src);
    /* No single allocation of libtiff's past what a legitimate read of
     * this image needs (TIFFRGBAImage's strip of 4-byte pixels, at
     * most), nor past the caller's cap. */
    uint64_t cap = (uint64_t)w * h * 4;
    if (cap < ((uint64_t)32 << 20))
        cap = (uint64_t)32 << 20;
    if (lim->max_decoder_memory && lim->max_decoder_memory < cap)
        cap = lim->max_decoder_memory;
    TIFFOpenOptionsSetMaxSingleMemAlloc(oo, (tmsize_t)cap);
    j.tif = TIFFClientOpenExt("tiff", "r", &j.src, on_read, on_write, on_seek,
                              on_close, on_size, on_map, on_unmap, oo);
    TIFFOpenOptionsFree(oo);
    if (!j.tif)
        return libtiff_fail(&j.src, "", err, errlen);

    /* libtiff decodes what its own reading of the directory says; it must
     * be what Pillow's (ours) says. */
    uint32_t lw = 0, lh = 0;
    uint16_t lbps = 0, lspp = 0, lphoto = 0, lplanar = 0, lcomp = 0;
    TIFFGetField(j.tif, TIFFTAG_IMAGEWIDTH, &lw);
    TIFFGetField(j.tif, TIFFTAG_IMAGELENGTH, &lh);
    TIFFGetFieldDefaulted(j.tif, TIFFTAG_BITSPERSAMPLE, &lbps);
    TIFFGetFieldDefaulted(j.tif, TIFFTAG_SAMPLESPERPIXEL, &lspp);
    TIFFGetField(j.tif, TIFFTAG_PHOTOMETRIC, &lphoto);
    TIFFGetFieldDefaulted(j.tif, TIFFTAG_PLANARCONFIG, &lplanar);
    TIFFGetFieldDefaulted(j.tif, TIFFTAG_COMPRESSION, &lcomp);
    if (lw != w || lh != h || lbps != m.bps ||
        lspp != (d.has_spp ? d.spp : 1) || lphoto != d.photometric ||
        lplanar != d.planar || lcomp != d.compression) {
        st = img_fail(err, errlen, IMG_E_CORRUPT,
                      "TIFF directory is ambiguous: libtiff reads it as "
                      "%ux%u, %u samples of %u bits, photometric %u, planar "
                      "%u, compression %u",
                      lw, lh, lspp, lbps, lphoto, lplanar, lcomp);
        goto out;
    }
    /* Every strip or tile must lie in the file: a file cut short is
     * refused here, before the output is allocated. */
    uint32_t nblk = TIFFIsTiled(j.tif) ? TIFFNumberOfTiles(j.tif)
                                       : TIFFNumberOfStrips(j.tif);
    for (uint32_t i = 0; i < nblk; i++) {
        uint64_t off = TIFFGetStrileOffset(j.tif, i);
        uint64_t cnt = TIFFGetStrileByteCount(j.tif, i);
        if (off > n || cnt > n - off) {
            st = img_fail(err, errlen, IMG_E_CORRUPT,
                          "TIFF image is truncated (%s %u of %u lies past "
                          "the end of the %zu bytes)",
                          TIFFIsTiled(j.tif) ? "tile" : "strip", i, nblk, n);
            goto out;
        }
    }

    uint8_t pal[256][3] = {{0}};
    if (m.k == K_PAL || m.k == K_PAL_A) {
        uint16_t *r, *g, *b;
        if (!TIFFGetField(j.tif, TIFFTAG_COLORMAP, &r, &g, &b)) {
            st = img_fail(err, errlen, IMG_E_CORRUPT,
                          "TIFF palette image has no colormap");
            goto out;
        }
        for (unsigned i = 0; i < (1u << m.bps); i++) {
            pal[i][0] = (uint8_t)(r[i] >> 8);
            pal[i][1] = (uint8_t)(g[i] >> 8);
            pal[i][2] = (uint8_t)(b[i] >> 8);
        }
    }
    if (!(j.rgb = malloc((size_t)w * h * 3))) {
        st = img_fail(err, errlen, IMG_E_NOMEM,
                      "out of memory for a %ux%u TIFF image", w, h);
        goto out;
    }
    if (m.k == K_YCBCR && d.compression == 7 && !separate) {
        /* Pillow has libjpeg give RGB (and so do we). */
        if (!TIFFSetField(j.tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB)) {
            st = libtiff_fail(&j.src, "", err, errlen);
            goto out;
        }
        pmode rgb = m;
        rgb.k = K_RGB;
        st = decode_samples(&j, &rgb, 0, w, h, (const uint8_t(*)[3])pal, 0,
                            lim, err, errlen);
    } else if (m.k == K_YCBCR) {
        st = decode_rgba(&j, w, h, lim, err, errlen);
    } else {
        st = decode_samples(&j, &m, separate, w, h,
                            (const uint8_t(*)[3])pal,
                            opt->composite_on_white != 0, lim, err, errlen);
    }
    if (st != IMG_OK)
        goto out;
    img_rgb im = {(int)w, (int)h, j.rgb};
    j.rgb = NULL;
    /* Pillow 13 turns a TIFF by its orientation as it loads it, so the
     * turn belongs to the decoding, asked for or not. */
    if ((st = img_orient(&im, turn, err, errlen)) != IMG_OK) {
        img_rgb_free(&im);
        goto out;
    }
    *out = im;
    *orient = 1;
out:
    job_free(&j);
    return st;
}
