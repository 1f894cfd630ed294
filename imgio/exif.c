/*
 * EXIF orientation, found and applied as transformers' load_image does it
 * through PIL.ImageOps.exif_transpose: where Pillow looks for the tag (the
 * Exif APP1 segments of a JPEG, concatenated; a PNG's eXIf chunk or its
 * "exif" / "Raw profile type exif" text chunks; then, when none holds an
 * Orientation tag, an XMP packet's tiff:Orientation), how its TIFF reader
 * walks the first directory (first copy of a tag wins, unknown types and
 * out-of-range values skipped, a read past the end stops the walk), which
 * value types count as a number, and the eight transpositions. Everything
 * here reads untrusted bytes: every offset is checked against the buffer
 * before it is used, in 64-bit arithmetic so no sum can wrap.
 */
#include "imgio/imgio_impl.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ------------------------------------------------------------ TIFF/EXIF */

typedef struct {
    const uint8_t *p;
    size_t n;
    int big;  /* big-endian ("MM") */
} tiff;

static uint32_t rd16(const tiff *t, size_t off)
{
    const uint8_t *b = t->p + off;
    return t->big ? (uint32_t)b[0] << 8 | b[1] : (uint32_t)b[1] << 8 | b[0];
}

static uint32_t rd32(const tiff *t, size_t off)
{
    return t->big ? img_be32(t->p + off) : img_le32(t->p + off);
}

static uint64_t rd64(const tiff *t, size_t off)
{
    uint64_t hi = rd32(t, off), lo = rd32(t, off + 4);
    if (!t->big) {
        uint64_t s = hi;
        hi = lo;
        lo = s;
    }
    return hi << 32 | lo;
}

/* Bytes per value of each TIFF type Pillow can load; 0 for the types it
 * skips. */
static unsigned type_size(unsigned typ)
{
    switch (typ) {
    case 1: case 2: case 6: case 7:
        return 1;
    case 3: case 8:
        return 2;
    case 4: case 9: case 11: case 13:
        return 4;
    case 5: case 10: case 12: case 16:
        return 8;
    }
    return 0;
}

/* An integer 1..8 equal to x, else 0 (the value is not an orientation). */
static int small_int_of(double x)
{
    if (x >= 1.0 && x <= 8.0 && x == (double)(int)x)
        return (int)x;
    return 0;
}

/* The first value of the Orientation entry at `off`, as Pillow compares it
 * with the numbers 2..8: integer types by value, rationals as exact
 * fractions (a zero denominator is NaN), floats exactly; BYTE, ASCII and
 * UNDEFINED load as bytes or text, which equal no number. */
static int orientation_value(const tiff *t, unsigned typ, size_t off)
{
    int64_t v;
    switch (typ) {
    case 3: v = rd16(t, off); break;
    case 8: v = (int16_t)rd16(t, off); break;
    case 4: case 13: v = rd32(t, off); break;
    case 9: v = (int32_t)rd32(t, off); break;
    case 6: v = (int8_t)t->p[off]; break;
    case 16: {
        uint64_t u = rd64(t, off);
        v = u > 8 ? 0 : (int64_t)u;
        break;
    }
    case 5: case 10: {
        int64_t num = typ == 5 ? (int64_t)rd32(t, off)
                               : (int64_t)(int32_t)rd32(t, off);
        int64_t den = typ == 5 ? (int64_t)rd32(t, off + 4)
                               : (int64_t)(int32_t)rd32(t, off + 4);
        if (den == 0 || num % den != 0)
            return 0;
        v = num / den;
        break;
    }
    case 11: {
        uint32_t u = rd32(t, off);
        float f;
        memcpy(&f, &u, sizeof f);
        return small_int_of((double)f);
    }
    case 12: {
        uint64_t u = rd64(t, off);
        double d;
        memcpy(&d, &u, sizeof d);
        return small_int_of(d);
    }
    default:
        return 0;
    }
    return v >= 1 && v <= 8 ? (int)v : 0;
}

int img_tiff_orientation(const uint8_t *d, size_t n)
{
    /* Pillow strips "Exif\0\0" once or twice before the TIFF header. */
    for (int i = 0; i < 2 && n >= 6 && memcmp(d, "Exif\0\0", 6) == 0; i++) {
        d += 6;
        n -= 6;
    }
    if (n == 0)
        return IMG_ORIENT_ABSENT;
    /* The header prefixes Pillow accepts, including two with the wrong
     * magic byte order; a little-endian BigTIFF header makes it read a
     * 64-bit offset from beyond its 8-byte header, which fails, and a
     * big-endian one passes as classic TIFF. */
    if (n < 4 || !((d[0] == 'I' && d[1] == 'I') ||
                   (d[0] == 'M' && d[1] == 'M')))
        return IMG_ORIENT_BROKEN;
    int ok = (d[2] == 0 && d[3] == 0x2a) || (d[2] == 0x2a && d[3] == 0) ||
             (d[0] == 'M' && d[2] == 0 && d[3] == 0x2b);
    if (!ok || n < 8)
        return IMG_ORIENT_BROKEN;
    tiff t = {d, n, d[0] == 'M'};
    uint64_t pos = rd32(&t, 4);
    if (pos + 2 > n)
        return IMG_ORIENT_ABSENT;
    unsigned count = rd16(&t, (size_t)pos);
    pos += 2;
    /* Tags already stored: a later copy of one is skipped before its data
     * is counted, so the accounting below needs the whole set. */
    uint8_t seen[65536 / 8];
    memset(seen, 0, sizeof seen);
    uint64_t total = 0;  /* out-of-line bytes, as Pillow's total_size */
    for (unsigned i = 0; i < count; i++, pos += 12) {
        if (pos + 12 > n)
            break;  /* Pillow: the read fails and the walk ends */
        size_t e = (size_t)pos;
        unsigned tag = rd16(&t, e), typ = rd16(&t, e + 2);
        uint64_t cnt = rd32(&t, e + 4);
        if (seen[tag / 8] & (1u << (tag % 8)))
            continue;
        unsigned us = type_size(typ);
        if (us == 0)
            continue;
        uint64_t size = cnt * us;  /* < 2^35: cannot wrap */
        size_t at = e + 8;
        if (size > 4) {
            uint64_t off = rd32(&t, e + 8);
            total += size;
            if (total > n)
                continue;  /* "Tag data larger than file": skipped */
            if (off + size > n)
                break;  /* the read comes up short: the walk ends */
            at = (size_t)off;
        }
        if (size == 0)
            continue;
        seen[tag / 8] |= (uint8_t)(1u << (tag % 8));
        if (tag == 274)
            return orientation_value(&t, typ, at);
    }
    return IMG_ORIENT_ABSENT;
}

/* ------------------------------------------------------------------ XMP */

int img_xmp_orientation(const uint8_t *x, size_t n)
{
    static const char key[] = "tiff:Orientation";
    const size_t kl = sizeof key - 1;
    /* The first place where tiff:Orientation is followed by =" or > and a
     * digit, as Pillow's regular expression finds it. */
    for (size_t i = 0; n >= kl && i <= n - kl; i++) {
        if (x[i] != 't' || memcmp(x + i, key, kl) != 0)
            continue;
        size_t j = i + kl;
        if (j + 2 < n && x[j] == '=' && x[j + 1] == '"' &&
            x[j + 2] >= '0' && x[j + 2] <= '9')
            return x[j + 2] - '0';
        if (j + 1 < n && x[j] == '>' && x[j + 1] >= '0' && x[j + 1] <= '9')
            return x[j + 1] - '0';
    }
    return IMG_ORIENT_ABSENT;
}

/* ------------------------------------------------------ both formats */

int img_exif_resolve(int from_exif, const uint8_t *xmp, size_t xmp_n,
                     int have_xmp)
{
    int o = from_exif;
    if (o == IMG_ORIENT_ABSENT && have_xmp)
        o = img_xmp_orientation(xmp, xmp_n);
    return o >= 2 && o <= 8 ? o : 1;
}

/* ------------------------------------------------------------------- PNG */

/* Pillow inflates at most 1 MiB of a text chunk and refuses more. */
#define TEXT_MAX ((size_t)1 << 20)

/* Inflates a zlib stream into a new buffer of at most TEXT_MAX bytes.
 * Returns NULL, with *len 0, on any error or when the limit is passed;
 * Pillow too drops such text (or fails), never half of it. */
static uint8_t *inflate_text(const uint8_t *src, size_t n, size_t *len)
{
    *len = 0;
    uint8_t *out = malloc(TEXT_MAX + 1);
    if (!out)
        return NULL;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(out);
        return NULL;
    }
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = n > UINT_MAX ? UINT_MAX : (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)TEXT_MAX + 1;
    int r = inflate(&z, Z_FINISH);
    size_t got = TEXT_MAX + 1 - z.avail_out;
    inflateEnd(&z);
    if (r != Z_STREAM_END || got > TEXT_MAX) {
        free(out);
        return NULL;
    }
    *len = got;
    return out;
}

/* The last value of each metadata source a PNG may carry, as pointers into
 * the file or into `owned` buffers this walk inflated. */
typedef struct {
    const uint8_t *exif;   /* info["exif"] without Pillow's prefix */
    size_t exif_n;
    int have_exif;
    const uint8_t *raw;    /* "Raw profile type exif" text */
    size_t raw_n;
    int have_raw;
    const uint8_t *xmp;
    size_t xmp_n;
    int have_xmp;
    uint8_t *owned[3];     /* inflated exif-raw / xmp texts, or NULL */
    size_t inflated;       /* bytes inflated so far, all chunks together */
} png_meta;

/* Pillow stops at 64 MiB of text in all (MAX_TEXT_MEMORY); past that we
 * inflate nothing more, so that thousands of small compressed chunks of
 * 1 MiB each cannot keep a core busy. */
#define TEXT_TOTAL_MAX ((size_t)64 << 20)

static void meta_set(png_meta *m, int which, const uint8_t *p, size_t n,
                     uint8_t *owned)
{
    /* which: 0 exif, 1 raw profile, 2 xmp. The previous owned buffer of
     * the same source is replaced: the last chunk wins, as in Pillow. */
    if (which == 0) {
        m->exif = p, m->exif_n = n, m->have_exif = 1;
        return;
    }
    free(m->owned[which]);
    m->owned[which] = owned;
    if (which == 1)
        m->raw = p, m->raw_n = n, m->have_raw = 1;
    else
        m->xmp = p, m->xmp_n = n, m->have_xmp = 1;
}

static int key_is(const uint8_t *k, size_t kl, const char *s)
{
    return kl == strlen(s) && memcmp(k, s, kl) == 0;
}

/* A text chunk: tEXt (kind 0), zTXt (1) or iTXt (2). */
static void png_text(png_meta *m, int kind, const uint8_t *d, size_t n)
{
    const uint8_t *z = memchr(d, 0, n);
    size_t kl = z ? (size_t)(z - d) : n;
    const uint8_t *v = z ? z + 1 : d + n;
    size_t vn = z ? n - kl - 1 : 0;
    int compressed = 0;
    if (kind == 1) {
        if (vn == 0 || v[0] != 0)
            return;  /* an empty value or an unknown method */
        v++, vn--;
        compressed = 1;
    } else if (kind == 2) {
        if (!z || vn < 2)
            return;
        int cf = v[0], cm = v[1];
        v += 2, vn -= 2;
        const uint8_t *l = memchr(v, 0, vn);  /* language tag */
        if (!l)
            return;
        vn -= (size_t)(l + 1 - v), v = l + 1;
        const uint8_t *t = memchr(v, 0, vn);  /* translated keyword */
        if (!t)
            return;
        vn -= (size_t)(t + 1 - v), v = t + 1;
        if (cf != 0) {
            if (cm != 0)
                return;
            compressed = 1;
        }
    }
    int which;
    if (kind == 0 && key_is(d, kl, "exif"))
        which = 0;  /* Pillow keeps tEXt "exif" as bytes: it is EXIF */
    else if (key_is(d, kl, "Raw profile type exif"))
        which = 1;
    else if (key_is(d, kl, "XML:com.adobe.xmp"))
        which = 2;
    else
        return;
    uint8_t *buf = NULL;
    if (compressed) {
        if (m->inflated >= TEXT_TOTAL_MAX)
            return;
        buf = inflate_text(v, vn, &vn);
        m->inflated += buf ? vn : TEXT_MAX; /* a failure may have worked */
        if (!buf)
            return;
        v = buf;
    }
    meta_set(m, which, v, vn, buf);
}

/* bytes.fromhex on the lines of a raw profile after its first three
 * ("", "exif", length): pairs of hex digits, whitespace between pairs.
 * Returns a new buffer, or NULL when the text is not hex (Pillow raises). */
static uint8_t *raw_profile_bytes(const uint8_t *s, size_t n, size_t *len)
{
    size_t i = 0;
    for (int line = 0; line < 3; line++) {
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        if (!nl) {
            i = n;
            break;
        }
        i = (size_t)(nl - s) + 1;
    }
    uint8_t *out = malloc((n - i) / 2 + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    int hi = -1;
    for (; i < n; i++) {
        int c = s[i], v;
        if (c == '\n')
            continue;  /* joined away before fromhex sees the text */
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else if (hi < 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\v' ||
                            c == '\f'))
            continue;
        else
            goto bad;
        if (hi < 0) {
            hi = v;
        } else {
            out[k++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0)
        goto bad;
    *len = k;
    return out;
bad:
    free(out);
    return NULL;
}

int img_png_orientation(const uint8_t *b, size_t n)
{
    png_meta m;
    memset(&m, 0, sizeof m);
    /* The chunks in file order, the last of each kind winning, up to IEND
     * or the first chunk that does not fit; Pillow reads the ones after the
     * image data too (exif_transpose loads the image first) and, there,
     * does not check their CRCs, so neither does this. */
    size_t pos = 8;
    while (n >= 12 && pos <= n - 12) {
        uint32_t len = img_be32(b + pos);
        const uint8_t *type = b + pos + 4;
        if (len > 0x7fffffffu || (uint64_t)len + 12 > n - pos)
            break;
        const uint8_t *d = b + pos + 8;
        if (memcmp(type, "IEND", 4) == 0)
            break;
        if (memcmp(type, "eXIf", 4) == 0)
            meta_set(&m, 0, d, len, NULL);
        else if (memcmp(type, "tEXt", 4) == 0)
            png_text(&m, 0, d, len);
        else if (memcmp(type, "zTXt", 4) == 0)
            png_text(&m, 1, d, len);
        else if (memcmp(type, "iTXt", 4) == 0)
            png_text(&m, 2, d, len);
        pos += (size_t)len + 12;
    }
    int o = IMG_ORIENT_ABSENT;
    if (m.have_exif) {
        o = img_tiff_orientation(m.exif, m.exif_n);
    } else if (m.have_raw) {
        size_t rn;
        uint8_t *raw = raw_profile_bytes(m.raw, m.raw_n, &rn);
        o = raw ? img_tiff_orientation(raw, rn) : IMG_ORIENT_BROKEN;
        free(raw);
    }
    o = img_exif_resolve(o, m.xmp, m.xmp_n, m.have_xmp);
    for (int i = 0; i < 3; i++)
        free(m.owned[i]);
    return o;
}

/* ------------------------------------------------------------ transpose */

img_status img_orient(img_rgb *im, int orientation, char *err, size_t errlen)
{
    if (orientation < 2 || orientation > 8)
        return IMG_OK;
    int w = im->width, h = im->height;
    if (orientation <= 4) {
        /* Mirror, 180 and flip keep the shape: done in place, by swapping
         * pixels pairwise, with no second image in memory. */
        uint8_t *p = im->rgb, t[3];
        size_t row = (size_t)w * 3;
        if (orientation != 4) /* mirror each row (180 = mirror + flip) */
            for (int y = 0; y < h; y++)
                for (int a = 0, b = w - 1; a < b; a++, b--) {
                    uint8_t *pa = p + (size_t)y * row + (size_t)a * 3;
                    uint8_t *pb = p + (size_t)y * row + (size_t)b * 3;
                    memcpy(t, pa, 3);
                    memcpy(pa, pb, 3);
                    memcpy(pb, t, 3);
                }
        if (orientation != 2) /* swap rows top to bottom */
            for (int a = 0, b = h - 1; a < b; a++, b--)
                for (size_t i = 0; i < row; i++) {
                    uint8_t v = p[(size_t)a * row + i];
                    p[(size_t)a * row + i] = p[(size_t)b * row + i];
                    p[(size_t)b * row + i] = v;
                }
        return IMG_OK;
    }
    int ow = h, oh = w; /* the last four exchange the sides */
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst)
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory rotating a %dx%d image", w, h);
    const uint8_t *src = im->rgb;
    /* For each output pixel the source pixel is (sx, sy) = (ax + bx*x +
     * cx*y, ay + by*x + cy*y); Pillow's four side-exchanging transposes
     * are these maps. */
    long ax = 0, bx = 0, cx = 1, ay = 0, by = 1, cy = 0; /* transpose */
    switch (orientation) {
    case 6: bx = 0, cx = 1, ay = h - 1, by = -1, cy = 0; break; /* 90 cw */
    case 7: ax = w - 1, bx = 0, cx = -1, ay = h - 1, by = -1, cy = 0; break;
    case 8: ax = w - 1, bx = 0, cx = -1, by = 1, cy = 0; break; /* 90 ccw */
    }
    /* In 64x64 tiles, so that a rotation's column walk over the source
     * stays in cache. */
    enum { T = 64 };
    for (int y0 = 0; y0 < oh; y0 += T)
        for (int x0 = 0; x0 < ow; x0 += T)
            for (int y = y0; y < oh && y < y0 + T; y++) {
                uint8_t *o = dst + ((size_t)y * (size_t)ow + (size_t)x0) * 3;
                for (int x = x0; x < ow && x < x0 + T; x++, o += 3) {
                    long sx = ax + bx * x + cx * y, sy = ay + by * x + cy * y;
                    const uint8_t *s = src + ((size_t)sy * (size_t)w +
                                              (size_t)sx) * 3;
                    o[0] = s[0], o[1] = s[1], o[2] = s[2];
                }
            }
    free(im->rgb);
    im->rgb = dst;
    im->width = ow;
    im->height = oh;
    return IMG_OK;
}
