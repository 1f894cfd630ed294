/*
 * BMP, as Pillow's BmpImagePlugin decodes it (Image.open, then
 * convert("RGB")). This reader is our own: no Debian library reads BMP the
 * way Pillow does, and exactness needs Pillow's own rules, quirks
 * included:
 *   - headers: OS/2 1.x's 12-byte one (16-bit sizes, 3-byte palette
 *     entries, never compressed) and the 40-, 52-, 56-, 64-, 108- and
 *     124-byte ones (4-byte entries); a height whose top byte is 0xFF
 *     means rows stored top-down, any other is read as unsigned;
 *   - 1-, 4- and 8-bit indices into a palette of "colors used" entries,
 *     or 1 << bits when that is 0; an index past the palette is black. A
 *     palette that is the gray ramp (entry i = (i, i, i), or black and
 *     white for two entries) is no palette: the image is then read as
 *     Pillow's mode "L" (8-bit values, whatever the file's depth) or
 *     "1" (1-bit values), so an 8-bit file with a black-and-white palette
 *     is read one bit a pixel, as Pillow reads it;
 *   - 16-bit 5-5-5 and, with BI_BITFIELDS, 5-6-5 (levels scaled by
 *     v * 255 / 31 or 63, truncated), 24-bit BGR, 32-bit BGRX, and with
 *     BI_BITFIELDS only the mask sets Pillow lists, four of them with
 *     alpha (and no masks at all reads as BGRA); the 40- and 52-byte
 *     headers have no alpha mask;
 *   - BI_RLE8 and BI_RLE4 through Pillow's own Python RLE reader,
 *     whatever the file's depth (an RLE4 stream in an 8-bit file is read
 *     as RLE4): skipped pixels are index 0, runs past a row's end are
 *     cut, literal runs may run on into the next row, and the word
 *     alignment after a literal run is of the position in the file;
 *   - the pixel data at the file header's offset, unless that points
 *     right after the header (then after the palette too) or is 0 (then
 *     where the headers, masks and palette end).
 * convert("RGB") drops alpha; with composite_on_white the image is laid
 * over white as transformers' convert_to_rgb does. What Pillow refuses is
 * refused: other depths, masks and compressions (BI_JPEG and BI_PNG
 * included), palettes of more than 256 entries (unless the gray ramp),
 * RLE in a 16-, 24- or 32-bit file, and data that ends before the image
 * does ("image file is truncated" in Pillow). BMP has no EXIF: the
 * orientation is always 1.
 */
#include "imgio/imgio_impl.h"

#include <stdlib.h>
#include <string.h>

enum { BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3, BI_JPEG = 4,
       BI_PNG = 5 };

/* How a stored pixel becomes RGB. */
typedef enum { PX_INDEX, PX_555, PX_565, PX_BGR, PX_32 } px_kind;

/* What the headers say, as Pillow's BmpImageFile._bitmap reads them. */
typedef struct {
    uint32_t hsize;   /* the DIB header's size */
    uint64_t w, h;
    unsigned bits;
    uint32_t comp;
    int topdown;
    unsigned pad;     /* bytes per palette entry */
    uint64_t colors;  /* palette entries (bits <= 8) */
    uint64_t off;     /* the pixel data's offset in the file header */
    size_t pal_at;    /* where the palette is: after the headers (and masks) */
    px_kind kind;
    int8_t at[4];     /* PX_32: the byte of R, G, B and A (-1: no alpha) */
} bmp_info;

/* The BI_BITFIELDS masks Pillow reads for 32 bits, and the bytes of R,
 * G, B, A they mean (its MASK_MODES). */
static const struct {
    uint32_t m[4];
    int8_t at[4];
} masks32[] = {
    {{0xff0000, 0xff00, 0xff, 0}, {2, 1, 0, -1}},                /* BGRX */
    {{0xff000000, 0xff0000, 0xff00, 0}, {3, 2, 1, -1}},          /* XBGR */
    {{0xff000000, 0xff00, 0xff, 0}, {3, 1, 0, -1}},              /* BGXR */
    {{0xff000000, 0xff0000, 0xff00, 0xff}, {3, 2, 1, 0}},        /* ABGR */
    {{0xff, 0xff00, 0xff0000, 0xff000000}, {0, 1, 2, 3}},        /* RGBA */
    {{0xff0000, 0xff00, 0xff, 0xff000000}, {2, 1, 0, 3}},        /* BGRA */
    {{0xff000000, 0xff00, 0xff, 0xff0000}, {3, 1, 0, 2}},        /* BGAR */
    {{0, 0, 0, 0}, {2, 1, 0, 3}},                                /* BGRA */
};

static img_status truncated_header(char *err, size_t errlen)
{
    return img_fail(err, errlen, IMG_E_CORRUPT, "BMP header is truncated");
}

/* Reads the file and DIB headers (and BI_BITFIELDS masks) and refuses
 * what Pillow refuses when it opens the file. `bytes` starts with "BM"
 * and holds at least 18 bytes (is_bmp). */
static img_status bmp_header(const uint8_t *b, size_t n, bmp_info *bi,
                             char *err, size_t errlen)
{
    memset(bi, 0, sizeof *bi);
    bi->off = img_le32(b + 10);
    bi->hsize = img_le32(b + 14);
    uint32_t hs = bi->hsize;
    if (hs == 16)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP files with the short 16-byte OS/2 2.x header "
                        "are not supported");
    if (hs != 12 && hs != 40 && hs != 52 && hs != 56 && hs != 64 &&
        hs != 108 && hs != 124)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP header of %lu bytes is not a known kind",
                        (unsigned long)hs);
    if (n - 14 < hs)
        return truncated_header(err, errlen);
    const uint8_t *d = b + 14;
    uint32_t hcolors = 0;
    if (hs == 12) {
        bi->w = img_le16(d + 4);
        bi->h = img_le16(d + 6);
        bi->bits = img_le16(d + 10);
        bi->comp = BI_RGB;
        bi->pad = 3;
    } else {
        bi->w = img_le32(d + 4);
        bi->h = img_le32(d + 8);
        /* Pillow's test of a negative height is its top byte alone. */
        if (d[11] == 0xff) {
            bi->topdown = 1;
            bi->h = ((uint64_t)1 << 32) - bi->h;
        }
        bi->bits = img_le16(d + 14);
        bi->comp = img_le32(d + 16);
        hcolors = img_le32(d + 32);
        bi->pad = 4;
    }
    bi->pal_at = 14 + (size_t)hs;
    uint32_t m[4] = {0, 0, 0, 0};
    if (bi->comp == BI_BITFIELDS) {
        /* The 40-byte header has its three masks after it; the longer
         * ones hold them, the alpha mask from 56 bytes on. */
        const uint8_t *mp = d + 40;
        if (hs == 40) {
            if (n - bi->pal_at < 12)
                return truncated_header(err, errlen);
            mp = b + bi->pal_at;
            bi->pal_at += 12;
        }
        for (int i = 0; i < (hs >= 56 ? 4 : 3); i++)
            m[i] = img_le32(mp + 4 * i);
    }
    /* Such files have a depth of 0, which Pillow refuses first; naming
     * what they hold says more. */
    if (bi->comp == BI_JPEG || bi->comp == BI_PNG)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP files holding a %s image (compression %lu) "
                        "are not supported",
                        bi->comp == BI_JPEG ? "JPEG" : "PNG",
                        (unsigned long)bi->comp);
    unsigned bits = bi->bits;
    bi->colors = hcolors ? hcolors : bits <= 8 ? (uint64_t)1 << bits : 0;
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 &&
        bits != 32)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP pixel depth of %u bits is not supported (1, 4, "
                        "8, 16, 24 and 32 are)",
                        bits);
    bi->kind = bits <= 8    ? PX_INDEX
               : bits == 16 ? PX_555
               : bits == 24 ? PX_BGR
                            : PX_32;
    memcpy(bi->at, masks32[0].at, sizeof bi->at); /* BGR(X) */
    switch (bi->comp) {
    case BI_RGB:
    case BI_RLE8:
    case BI_RLE4:
        break;
    case BI_BITFIELDS: {
        int ok = 0;
        if (bits == 32) {
            for (size_t i = 0; i < sizeof masks32 / sizeof masks32[0]; i++)
                if (!memcmp(m, masks32[i].m, sizeof m)) {
                    memcpy(bi->at, masks32[i].at, sizeof bi->at);
                    ok = 1;
                    break;
                }
        } else if (bits == 24) {
            ok = m[0] == 0xff0000 && m[1] == 0xff00 && m[2] == 0xff;
        } else if (bits == 16) {
            ok = m[2] == 0x1f && ((m[0] == 0xf800 && m[1] == 0x7e0) ||
                                  (m[0] == 0x7c00 && m[1] == 0x3e0));
            if (m[0] == 0xf800)
                bi->kind = PX_565;
        }
        if (!ok)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "BMP bitfields layout of %u bits with masks "
                            "R %#lx G %#lx B %#lx A %#lx is not supported",
                            bits, (unsigned long)m[0], (unsigned long)m[1],
                            (unsigned long)m[2], (unsigned long)m[3]);
        break;
    }
    default:
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP compression %lu is not supported",
                        (unsigned long)bi->comp);
    }
    if (bits <= 8 && (bi->colors == 0 || bi->colors > 65536))
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP palette of %llu colors is not supported",
                        (unsigned long long)bi->colors);
    return IMG_OK;
}

img_status img_size_bmp(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen)
{
    bmp_info bi;
    img_status st = bmp_header(bytes, n, &bi, err, errlen);
    if (st != IMG_OK)
        return st;
    /* Both fit: 32-bit fields, and a top-down height is at most 2^24. */
    *w = (uint32_t)bi.w;
    *h = (uint32_t)bi.h;
    return IMG_OK;
}

/* Pillow's mode of an indexed image, by its palette. */
typedef enum { MODE_P, MODE_L, MODE_1 } pal_mode;

/* Reads the palette (as much of it as the file holds, as Pillow's plain
 * read does) into the colour of each index, and returns the mode Pillow
 * gives the image; *pal_len receives the bytes read. */
static img_status read_palette(const uint8_t *b, size_t n,
                               const bmp_info *bi, uint8_t lut[256][3],
                               pal_mode *mode, size_t *pal_len, char *err,
                               size_t errlen)
{
    size_t avail = n > bi->pal_at ? n - bi->pal_at : 0;
    uint64_t want = (uint64_t)bi->pad * bi->colors;
    size_t len = want < avail ? (size_t)want : avail;
    const uint8_t *p = b + bi->pal_at;
    *pal_len = len;
    /* The gray ramp, every entry present: two entries must be black and
     * white; more must be i = (i, i, i), i taken modulo 256. */
    int gray = 1;
    for (uint64_t i = 0; i < bi->colors && gray; i++) {
        unsigned v = bi->colors == 2 ? (i ? 255 : 0) : (unsigned)(i & 255);
        size_t at = (size_t)i * bi->pad;
        gray = at + 3 <= len && p[at] == v && p[at + 1] == v && p[at + 2] == v;
    }
    *mode = !gray ? MODE_P : bi->colors <= 2 ? MODE_1 : MODE_L;
    size_t entries = len / bi->pad;
    if (*mode == MODE_P && entries > 256)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP palette of %zu entries is not supported (at "
                        "most 256)",
                        entries);
    for (unsigned i = 0; i < 256; i++) {
        uint8_t *c = lut[i];
        if (*mode != MODE_P) {
            /* "1" holds 0 or 255, whatever nonzero index RLE gives it. */
            c[0] = c[1] = c[2] = *mode == MODE_L ? (uint8_t)i : i ? 255 : 0;
        } else if (i < entries) {
            const uint8_t *e = p + (size_t)i * bi->pad;
            c[0] = e[2];
            c[1] = e[1];
            c[2] = e[0];
        } else {
            c[0] = c[1] = c[2] = 0;
        }
    }
    return IMG_OK;
}

/* The pixel at x of a stored row of `rbits`-bit indices. */
static unsigned index_at(const uint8_t *row, size_t x, unsigned rbits)
{
    if (rbits == 8)
        return row[x];
    if (rbits == 4)
        return (row[x >> 1] >> (x & 1 ? 0 : 4)) & 15;
    return (row[x >> 3] >> (7 - (x & 7))) & 1;
}

/* Pillow's 5- and 6-bit levels (its BGR;15 and BGR;16 unpackers): scaled
 * up, truncated. */
static uint8_t level(unsigned v, unsigned max)
{
    return (uint8_t)(v * 255 / max);
}

/* One stored row to RGB. */
static void row_to_rgb(uint8_t *d, const uint8_t *s, size_t w,
                       const bmp_info *bi, unsigned rbits,
                       const uint8_t lut[256][3], int over)
{
    for (size_t x = 0; x < w; x++, d += 3) {
        switch (bi->kind) {
        case PX_INDEX:
            memcpy(d, lut[index_at(s, x, rbits)], 3);
            break;
        case PX_555:
        case PX_565: {
            unsigned v = img_le16(s + 2 * x);
            int six = bi->kind == PX_565;
            d[0] = level((v >> (six ? 11 : 10)) & 31, 31);
            d[1] = six ? level((v >> 5) & 63, 63) : level((v >> 5) & 31, 31);
            d[2] = level(v & 31, 31);
            break;
        }
        case PX_BGR:
            d[0] = s[3 * x + 2];
            d[1] = s[3 * x + 1];
            d[2] = s[3 * x];
            break;
        case PX_32: {
            const uint8_t *p = s + 4 * x;
            int a = bi->at[3] >= 0 ? p[bi->at[3]] : 255;
            for (int c = 0; c < 3; c++)
                d[c] = over ? img_over_white(p[bi->at[c]], a) : p[bi->at[c]];
            break;
        }
        }
    }
}

/* Where Pillow's RLE reader has got to in the image: `pos` pixels written
 * in file order (Pillow's len(data)), the next one at column `x` of the
 * output row `row`. */
typedef struct {
    uint8_t *rgb;
    size_t w, h;
    uint64_t pos, dest;
    int topdown;
    uint8_t *row;
    size_t x;
    const uint8_t (*lut)[3];
} rle_out;

static void rle_seek(rle_out *o, uint64_t pos)
{
    o->pos = pos;
    if (pos >= o->dest)
        return;
    size_t r = (size_t)(pos / o->w);
    o->x = (size_t)(pos % o->w);
    o->row = o->rgb + (o->topdown ? r : o->h - 1 - r) * o->w * 3;
}

/* Writes index v at the next pixel; the caller keeps pos below dest. */
static void rle_put(rle_out *o, unsigned v)
{
    memcpy(o->row + 3 * o->x, o->lut[v], 3);
    if (++o->x == o->w)
        rle_seek(o, o->pos + 1);
    else
        o->pos++;
}

/* k pixels of index 0: what Pillow's reader fills skipped pixels with. */
static void rle_fill(rle_out *o, uint64_t k)
{
    while (k-- > 0)
        rle_put(o, 0);
}

/* BmpRleDecoder.decode, step by step, from file offset `at`. Returns 1
 * when the image is complete. */
static int rle_decode(const uint8_t *b, size_t n, uint64_t at, int rle4,
                      rle_out *o)
{
    uint64_t x = 0; /* Pillow's column count, which literal runs overrun */
    uint64_t w = o->w;
    while (o->pos < o->dest) {
        if (at >= n || n - at < 2)
            break;
        unsigned count = b[at], byte = b[at + 1];
        at += 2;
        if (count) {
            /* A run, cut at the row's end. */
            uint64_t k = x + count > w ? (x < w ? w - x : 0) : count;
            for (uint64_t i = 0; i < k; i++)
                rle_put(o, !rle4 ? byte : i % 2 ? byte & 15 : byte >> 4);
            x += k;
        } else if (byte == 0) {
            /* End of line: the rest of the row is index 0. */
            rle_fill(o, (w - o->pos % w) % w);
            x = 0;
        } else if (byte == 1) {
            break; /* end of bitmap */
        } else if (byte == 2) {
            /* Delta: Pillow skips right + up * width pixels forward. */
            if (at >= n || n - at < 2)
                break;
            uint64_t skip = b[at] + (uint64_t)b[at + 1] * w;
            at += 2;
            rle_fill(o, skip < o->dest - o->pos ? skip : o->dest - o->pos);
            x = o->pos % w;
        } else {
            /* A literal run of `byte` indices, padded to a 16-bit word of
             * the file. */
            uint64_t k = byte < o->dest - o->pos ? byte : o->dest - o->pos;
            uint64_t need = rle4 ? (k + 1) / 2 : k;
            uint64_t avail = at < n ? n - at : 0;
            uint64_t got = need < avail ? need : avail;
            for (uint64_t i = 0; i < got; i++) {
                unsigned v = b[at + i];
                if (!rle4) {
                    rle_put(o, v);
                } else {
                    rle_put(o, v >> 4);
                    if (2 * i + 1 < k)
                        rle_put(o, v & 15);
                }
            }
            at += got;
            if (got < need || o->pos == o->dest)
                break;
            x += byte;
            at += at % 2;
        }
    }
    return o->pos == o->dest;
}

img_status img_decode_bmp(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen)
{
    bmp_info bi;
    img_status st = bmp_header(bytes, n, &bi, err, errlen);
    if (st != IMG_OK)
        return st;
    if ((st = img_check_dims(&opt->limits, bi.w, bi.h, err, errlen)) !=
        IMG_OK)
        return st;
    size_t w = (size_t)bi.w, h = (size_t)bi.h;
    uint8_t lut[256][3];
    pal_mode mode = MODE_P;
    size_t pal_len = 0;
    if (bi.bits <= 8 &&
        (st = read_palette(bytes, n, &bi, lut, &mode, &pal_len, err,
                           errlen)) != IMG_OK)
        return st;
    /* The data offset, adjusted as Pillow adjusts it. */
    uint64_t off = bi.off;
    if (off == 14 + (uint64_t)bi.hsize && bi.bits <= 8)
        off += (uint64_t)bi.pad * bi.colors;
    if (off == 0)
        off = bi.pal_at + pal_len;
    int rle = bi.comp == BI_RLE8 || bi.comp == BI_RLE4;
    if (rle && bi.bits > 8)
        return img_fail(err, errlen, IMG_E_FORMAT,
                        "BMP files with RLE compression and %u-bit pixels "
                        "are not supported",
                        bi.bits);
    /* Rows are read with the stride of the file's depth, but unpacked at
     * the mode's depth: mode "L" reads bytes, mode "1" bits. A 1- or 4-bit
     * file read as "L" can need more bytes a row than it has: Pillow's
     * decoder then fails, as we do. (Opened by file name rather than from
     * bytes, Pillow memory-maps such a file instead when it is long
     * enough, rows overlapping; we decode bytes, as it does from a URL.) */
    unsigned rbits = mode == MODE_L ? 8 : mode == MODE_1 ? 1 : bi.bits;
    uint64_t stride = ((bi.w * bi.bits + 31) >> 3) & ~(uint64_t)3;
    uint64_t rowbytes = (bi.w * rbits + 7) / 8;
    if (!rle) {
        if (rowbytes > stride)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "BMP of %u-bit pixels with a gray-ramp palette "
                            "is not supported: read as 8-bit gray, as "
                            "Pillow reads it, a row needs %llu bytes and "
                            "has %llu",
                            bi.bits, (unsigned long long)rowbytes,
                            (unsigned long long)stride);
        uint64_t need = stride * (h - 1) + rowbytes;
        if (off > n || n - off < need)
            return img_fail(err, errlen, IMG_E_CORRUPT,
                            "BMP image data is truncated (%llu bytes at "
                            "offset %llu; the file has %zu bytes)",
                            (unsigned long long)need,
                            (unsigned long long)off, n);
    }
    uint8_t *rgb = malloc(w * h * 3);
    if (!rgb)
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    if (rle) {
        rle_out o = {.rgb = rgb, .w = w, .h = h, .dest = (uint64_t)w * h,
                     .topdown = bi.topdown, .lut = (const uint8_t(*)[3])lut};
        rle_seek(&o, 0);
        if (!rle_decode(bytes, n, off, bi.comp == BI_RLE4, &o)) {
            free(rgb);
            return img_fail(err, errlen, IMG_E_CORRUPT,
                            "BMP RLE data ends before the image is complete "
                            "(%llu of %llu pixels)",
                            (unsigned long long)o.pos,
                            (unsigned long long)o.dest);
        }
    } else {
        int over = opt->composite_on_white && bi.kind == PX_32 &&
                   bi.at[3] >= 0;
        for (size_t y = 0; y < h; y++) {
            const uint8_t *s = bytes + off + stride * y;
            size_t to = bi.topdown ? y : h - 1 - y;
            row_to_rgb(rgb + to * w * 3, s, w, &bi, rbits,
                       (const uint8_t(*)[3])lut, over);
        }
    }
    out->width = (int)w;
    out->height = (int)h;
    out->rgb = rgb;
    *orient = 1; /* BMP has no EXIF */
    return IMG_OK;
}
