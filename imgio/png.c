/*
 * PNG decoding with libpng 1.6, giving the pixels of Pillow's
 * Image.open(f).convert("RGB") for every color type and bit depth: gray is
 * replicated, alpha and tRNS are dropped (convert does not composite),
 * palettes are expanded, 1/2/4-bit gray is scaled to 0..255, 16-bit color
 * keeps its high byte, and 16-bit gray is clamped to 255 (Pillow opens it as
 * "I;16" and its I;16-to-RGB conversion saturates rather than shifts). This
 * file also owns libpng's error plumbing: errors come back through
 * longjmp with their message kept, and warnings are swallowed.
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

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

/* Turns one decoded row of `nc` channels (8-bit, or 16-bit big-endian when
 * gray16) into RGB. */
static void row_to_rgb(uint8_t *dst, const uint8_t *src, int w, int nc,
                       int gray16)
{
    if (gray16) {
        for (int x = 0; x < w; x++, src += 2, dst += 3)
            dst[0] = dst[1] = dst[2] = src[0] ? 255 : src[1];
    } else if (nc <= 2) {
        for (int x = 0; x < w; x++, src += nc, dst += 3)
            dst[0] = dst[1] = dst[2] = src[0];
    } else {
        for (int x = 0; x < w; x++, src += nc, dst += 3)
            memcpy(dst, src, 3);
    }
}

img_status img_decode_png(const uint8_t *bytes, size_t n,
                          const img_limits *lim, img_rgb *out, char *err,
                          size_t errlen)
{
    img_status st;
    /* The IHDR chunk must come first, so its size can be checked against
     * our limits before libpng runs at all; that way our message, not
     * libpng's own "exceeds user limit", names the limit. The check after
     * png_read_info below is the authoritative one. */
    if (n >= 24 && be32(bytes + 8) == 13 &&
        memcmp(bytes + 12, "IHDR", 4) == 0) {
        st = img_check_dims(lim, be32(bytes + 16), be32(bytes + 20), err,
                            errlen);
        if (st != IMG_OK)
            return st;
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
    int gray16 = ctype == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);  /* may add alpha from tRNS: dropped */
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);  /* scales, as Pillow does */
    if (depth == 16 && !gray16)
        png_set_strip_16(png);  /* keeps the high byte, as Pillow does */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int nc = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * (size_t)nc * (gray16 ? 2 : 1)) {
        png_destroy_read_struct(&png, &info, NULL);
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "PNG decoding failed: unexpected row layout (%zu "
                        "bytes for %d pixels of %d channels)",
                        rowbytes, w, nc);
    }
    /* Three-channel rows land straight in the output; others go through a
     * whole-image buffer, because an interlaced image is only complete once
     * every pass has been read. */
    int direct = nc == 3 && !gray16;
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
     * carry nothing we use, and Pillow too accepts a file whose pixels are
     * complete but whose IEND is missing. */
    png_destroy_read_struct(&png, &info, NULL);
    if (!direct)
        for (int y = 0; y < h; y++)
            row_to_rgb(pix + (size_t)y * (size_t)w * 3, rows[y], w, nc, gray16);
    free(tmp);
    free(rows);
    out->width = w;
    out->height = h;
    out->rgb = pix;
    return IMG_OK;
}
