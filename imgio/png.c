/*
 * PNG decoding with libpng 1.6, giving the pixels of Pillow's
 * Image.open(f).convert("RGB") for every color type and bit depth: gray is
 * replicated, palettes are expanded, 1/2/4-bit gray is scaled to 0..255,
 * 16-bit color keeps its high byte, 16-bit gray is clamped to 255 (Pillow
 * opens it as "I;16" and its I;16-to-RGB conversion saturates rather than
 * shifts), and alpha and tRNS are dropped, since convert does not
 * composite; on request they are instead laid over white as transformers'
 * convert_to_rgb does. This file also owns libpng's error plumbing: errors
 * come back through longjmp with their message kept, and warnings are
 * swallowed.
 */
#include "imgio/imgio_impl.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct {
    const uint8_t *p;
    size_t n, pos;
    char msg[256];
} png_src;

static void on_read(png_structp png, png_bytep data, size_t len)
{
    png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->pos)
        png_error(png, "the file ends early (truncated data)");
    memcpy(data, s->p + s->pos, len);
    s->pos += len;
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng's default would print to stderr; a library must not. */
static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* How the rows libpng hands back become RGB. Without compositing, alpha
 * and tRNS are simply ignored; with it, each pixel gets the alpha Pillow's
 * convert("RGBA") would give it and is laid over white. */
typedef struct {
    int nc;         /* channels per decoded pixel */
    int gray16;     /* 16-bit gray, big-endian: clamped to 255 as Pillow */
    int composite;  /* apply alpha (nc 2 or 4) or the key below */
    int key;        /* nonzero: a tRNS color key is matched */
    int kr, kg, kb; /* the key as Pillow compares it with 8-bit samples */
} conv;


static void row_to_rgb(uint8_t *dst, const uint8_t *src, int w,
                       const conv *c)
{
    int nc = c->nc;
    if (c->gray16) {
        for (int x = 0; x < w; x++, src += 2, dst += 3) {
            int v = src[0] ? 255 : src[1];
            if (c->key && v == c->kr)
                v = 255;  /* transparent: white */
            dst[0] = dst[1] = dst[2] = (uint8_t)v;
        }
    } else if (nc <= 2) {
        for (int x = 0; x < w; x++, src += nc, dst += 3) {
            int v = src[0];
            if (c->composite && nc == 2)
                v = img_over_white(v, src[1]);
            else if (c->key && v == c->kr)
                v = 255;
            dst[0] = dst[1] = dst[2] = (uint8_t)v;
        }
    } else if (c->composite && nc == 4) {
        for (int x = 0; x < w; x++, src += 4, dst += 3) {
            int a = src[3];
            dst[0] = img_over_white(src[0], a);
            dst[1] = img_over_white(src[1], a);
            dst[2] = img_over_white(src[2], a);
        }
    } else {
        for (int x = 0; x < w; x++, src += nc, dst += 3) {
            memcpy(dst, src, 3);
            if (c->key && src[0] == c->kr && src[1] == c->kg &&
                src[2] == c->kb)
                dst[0] = dst[1] = dst[2] = 255;
        }
    }
}

/* The color key of a gray or RGB tRNS chunk as Pillow applies it in
 * convert("RGBA"): it first converts the image to 8-bit RGB as usual, then
 * compares each pixel with the low byte of each key sample, unscaled. So
 * a 1-bit image's key is black or white (Pillow's PNG reader makes it 0
 * or 255); 2- and 4-bit gray compare the key with the value scaled to
 * 0..255 (a 2-bit key of 2 matches nothing, one of 170 matches level 2);
 * 16-bit gray compares the value clamped to 255 with the key's low byte
 * (a key of 300 matches 44); 16-bit RGB compares high bytes with the
 * key's low bytes. Keys that match nothing are fine: nothing matches. */
static void set_key(conv *c, int ctype, int depth, const png_color_16 *k)
{
    c->key = 1;
    if (ctype == PNG_COLOR_TYPE_GRAY) {
        c->kr = depth == 1 ? (k->gray ? 255 : 0) : k->gray & 0xff;
    } else {
        c->kr = k->red & 0xff;
        c->kg = k->green & 0xff;
        c->kb = k->blue & 0xff;
    }
}

/* The transparency colour that survives transformers' load_image, whose
 * convert("RGB") keeps Pillow's info["transparency"] (as converted for
 * the new mode), which convert_to_rgb then paints white. What survives,
 * by what Pillow made of the tRNS chunk:
 *   palette, one fully transparent entry and every other opaque: the
 *     colour of that entry (so every pixel of that colour turns white,
 *     whatever its index); any other palette tRNS is dropped;
 *   gray of 2, 4 or 8 bits: the key, clamped to 255, as a gray colour,
 *     compared with the samples scaled to 8 bits;
 *   1-bit and 16-bit gray: the key stays an integer, which Pillow's RGB
 *     conversion compares as the colour (key, 0, 0): only a key of 0
 *     (black) ever matches a gray pixel;
 *   RGB: the key's low bytes, compared as for convert("RGBA") (set_key).
 * Returns 1 and fills the key in c when there is one. */
static int load_image_key(png_structp png, png_infop info, int ctype,
                          int depth, conv *c)
{
    png_bytep alpha = NULL;
    int na = 0;
    png_color_16p k = NULL;
    if (png_get_tRNS(png, info, &alpha, &na, &k) != PNG_INFO_tRNS)
        return 0;
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL;
        int np = 0, clear = -1;
        if (!alpha || !png_get_PLTE(png, info, &pal, &np))
            return 0;
        for (int i = 0; i < na; i++) {
            if (alpha[i] == 0 && clear < 0)
                clear = i;
            else if (alpha[i] != 255)
                return 0;
        }
        if (clear < 0 || clear >= np)
            return 0;
        c->key = 1;
        c->kr = pal[clear].red;
        c->kg = pal[clear].green;
        c->kb = pal[clear].blue;
        return 1;
    }
    if (!k)
        return 0;
    if (ctype == PNG_COLOR_TYPE_GRAY) {
        if (depth == 1 || depth == 16) {
            if (k->gray != 0)
                return 0;
            c->key = 1;
            c->kr = 0;
            return 1;
        }
        c->key = 1;
        c->kr = k->gray > 255 ? 255 : k->gray;
        return 1;
    }
    set_key(c, ctype, depth, k);
    return 1;
}

/* libpng allocates an ancillary chunk's whole stated length before it
 * reads the chunk (its "chunk data is too large" check is only a warning
 * when reading), so a 94-byte file whose iTXt claims 1.9 GB had it
 * allocate 1.9 GB (found by fuzzing). A chunk before the image data that
 * runs past the end of the file can never be read, so libpng would fail
 * on it anyway; saying so first, without the allocation, changes no
 * outcome. From the first IDAT on, libpng streams the image data and
 * allocates nothing by chunk length (we never read the chunks after it
 * with libpng). Returns the offset of the first such chunk, or 0. */
static size_t overrunning_chunk(const uint8_t *b, size_t n)
{
    size_t pos = 8;
    while (n >= 8 && pos <= n - 8) {
        uint32_t len = img_be32(b + pos);
        if (memcmp(b + pos + 4, "IDAT", 4) == 0)
            return 0;
        if ((uint64_t)len + 12 > n - pos)
            return pos;
        pos += (size_t)len + 12;
    }
    return 0;
}

img_status img_size_png(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen)
{
    /* The IHDR chunk must come first and holds the size (PNG 1.2, 11.2.2). */
    if (n < 24 || img_be32(bytes + 8) != 13 || memcmp(bytes + 12, "IHDR", 4) != 0)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "PNG does not begin with its IHDR chunk");
    *w = img_be32(bytes + 16);
    *h = img_be32(bytes + 20);
    return IMG_OK;
}

img_status img_decode_png(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen)
{
    const img_limits *lim = &opt->limits;
    img_status st;
    /* The IHDR chunk must come first, so its size can be checked against
     * our limits before libpng runs at all; that way our message, not
     * libpng's own "exceeds user limit", names the limit. The check after
     * png_read_info below is the authoritative one. */
    if (n >= 24 && img_be32(bytes + 8) == 13 &&
        memcmp(bytes + 12, "IHDR", 4) == 0) {
        st = img_check_dims(lim, img_be32(bytes + 16), img_be32(bytes + 20), err,
                            errlen);
        if (st != IMG_OK)
            return st;
    }

    size_t bad = overrunning_chunk(bytes, n);
    if (bad) {
        const uint8_t *t = bytes + bad + 4;
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "PNG decoding failed: a chunk of type "
                        "%02x%02x%02x%02x at byte %zu claims %lu bytes, "
                        "more than the %zu left in the file",
                        t[0], t[1], t[2], t[3], bad,
                        (unsigned long)img_be32(bytes + bad), n - bad - 8);
    }

    png_src src = {.p = bytes, .n = n, .pos = 0, .msg = ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src,
                                             on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory starting the PNG decoder");
    }
    /* Assigned after setjmp and freed after a longjmp: volatile. */
    uint8_t *volatile pix = NULL;
    uint8_t *volatile tmp = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(tmp);
        free(rows);
        return img_fail(err, errlen, IMG_E_CORRUPT, "PNG decoding failed: %s",
                        src.msg);
    }
    png_set_read_fn(png, &src, on_read);
    /* Our limits are the ones that count; libpng's default of 1,000,000
     * pixels a side would otherwise refuse first with its own words. */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    /* Pillow refuses a PNG whose chunk CRCs do not match, ancillary chunks
     * included; libpng by default would only warn about the latter. */
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int depth, ctype, ilace;
    png_get_IHDR(png, info, &w32, &h32, &depth, &ctype, &ilace, NULL, NULL);
    st = img_check_dims(lim, w32, h32, err, errlen);
    if (st != IMG_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    int w = (int)w32, h = (int)h32;
    conv cv = {0};
    cv.gray16 = ctype == PNG_COLOR_TYPE_GRAY && depth == 16;
    cv.composite = opt->composite_on_white != 0;
    /* The color key, read before png_read_update_info, which rescales
     * libpng's own copy of it for expanded low-bit gray. */
    png_color_16p key = NULL;
    if (cv.composite && ctype != PNG_COLOR_TYPE_PALETTE &&
        png_get_tRNS(png, info, NULL, NULL, &key) == PNG_INFO_tRNS && key)
        set_key(&cv, ctype, depth, key);
    else if (!cv.composite && opt->transparency_white)
        load_image_key(png, info, ctype, depth, &cv);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);  /* alpha from tRNS: RGBA */
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);  /* scales, as Pillow does */
    if (depth == 16 && !cv.gray16)
        png_set_strip_16(png);  /* keeps the high byte, as Pillow does */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    cv.nc = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * (size_t)cv.nc * (cv.gray16 ? 2 : 1) ||
        (cv.gray16 && cv.nc != 1)) {
        png_destroy_read_struct(&png, &info, NULL);
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "PNG decoding failed: unexpected row layout (%zu "
                        "bytes for %d pixels of %d channels)",
                        rowbytes, w, cv.nc);
    }
    /* Three-channel rows land straight in the output; others go through a
     * whole-image buffer, because an interlaced image is only complete once
     * every pass has been read. */
    int direct = cv.nc == 3 && !cv.gray16 && !cv.key;
    pix = malloc((size_t)w * (size_t)h * 3);
    rows = malloc((size_t)h * sizeof *rows);
    if (!direct && pix && rows)
        tmp = malloc(rowbytes * (size_t)h);
    if (!pix || !rows || (!direct && !tmp)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(tmp);
        free(rows);
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory for a %dx%d PNG image", w, h);
    }
    for (int y = 0; y < h; y++)
        rows[y] = direct ? pix + (size_t)y * (size_t)w * 3
                         : tmp + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* png_read_end is skipped on purpose: the chunks after the image data
     * carry nothing libpng needs to check for us (the orientation reader
     * below walks them itself), and Pillow too accepts a file whose pixels
     * are complete but whose IEND is missing. */
    png_destroy_read_struct(&png, &info, NULL);
    if (!direct)
        for (int y = 0; y < h; y++)
            row_to_rgb(pix + (size_t)y * (size_t)w * 3, rows[y], w, &cv);
    free(tmp);
    free(rows);
    *orient = opt->exif_transpose ? img_png_orientation(bytes, n) : 1;
    out->width = w;
    out->height = h;
    out->rgb = pix;
    return IMG_OK;
}
