/*
 * GIF: the first frame, as Pillow's GifImagePlugin gives it (Image.open,
 * then convert("RGB")). giflib (Debian's libgif-dev) reads the blocks and
 * the LZW data; what Pillow makes of them is reproduced here, since its
 * GIF reader is its own:
 *   - the image is the logical screen, grown to hold a first frame that
 *     reaches past it;
 *   - outside the frame it holds the transparent index of the frame's
 *     graphic control extension when there is one, else index 0;
 *   - the palette is the frame's local one, else the global one; a
 *     palette that is the identity grayscale ramp (entry i = (i, i, i))
 *     is no palette: the indices are then gray levels (mode "L");
 *   - an index past the palette's entries is black.
 * A file cut short, or whose LZW data ends before the frame is full, is
 * refused, as Pillow refuses it ("image file is truncated").
 */
#include "imgio/imgio_impl.h"

#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

typedef struct {
    const uint8_t *p;
    size_t n, at;
} mem_src;

static int read_mem(GifFileType *g, GifByteType *dst, int len)
{
    mem_src *m = g->UserData;
    size_t k = m->n - m->at < (size_t)len ? m->n - m->at : (size_t)len;
    memcpy(dst, m->p + m->at, k);
    m->at += k;
    return (int)k;
}

/* giflib's failure as a status; running out of bytes, whatever giflib
 * was reading then, is a truncated file. */
static img_status gif_fail(int code, const mem_src *m, char *err,
                           size_t errlen)
{
    if (code == D_GIF_ERR_NOT_ENOUGH_MEM)
        return img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
    if (code == D_GIF_ERR_READ_FAILED || code == D_GIF_ERR_EOF_TOO_SOON ||
        m->at >= m->n)
        return img_fail(err, errlen, IMG_E_CORRUPT, "GIF image is truncated");
    const char *why = GifErrorString(code);
    return img_fail(err, errlen, IMG_E_CORRUPT, "GIF image is damaged (%s)",
                    why ? why : "giflib error");
}

/* A palette Pillow keeps: anything but the identity grayscale ramp. */
static int palette_needed(const ColorMapObject *c)
{
    for (int i = 0; i < c->ColorCount; i++)
        if (c->Colors[i].Red != i || c->Colors[i].Green != i ||
            c->Colors[i].Blue != i)
            return 1;
    return 0;
}

/* Everything up to the first image descriptor: the transparent index of
 * the graphic control extensions before it (-1: none), and the frame. */
static img_status first_frame(GifFileType *g, int *trns, char *err,
                              size_t errlen)
{
    *trns = -1;
    for (;;) {
        GifRecordType t;
        if (DGifGetRecordType(g, &t) == GIF_ERROR)
            return gif_fail(g->Error, g->UserData, err, errlen);
        if (t == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(g) == GIF_ERROR)
                return gif_fail(g->Error, g->UserData, err, errlen);
            return IMG_OK;
        }
        if (t == TERMINATE_RECORD_TYPE)
            return img_fail(err, errlen, IMG_E_CORRUPT,
                            "GIF file holds no image");
        if (t != EXTENSION_RECORD_TYPE)
            continue;
        int code;
        GifByteType *ext;
        if (DGifGetExtension(g, &code, &ext) == GIF_ERROR)
            return gif_fail(g->Error, g->UserData, err, errlen);
        /* Pillow reads a transparent index from a control extension of
         * at least 4 bytes whose flag says so; a later one without the
         * flag leaves it. */
        if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 &&
            (ext[1] & 1))
            *trns = ext[4];
        while (ext) {
            if (DGifGetExtensionNext(g, &ext) == GIF_ERROR)
                return gif_fail(g->Error, g->UserData, err, errlen);
        }
    }
}

img_status img_size_gif(const uint8_t *bytes, size_t n, uint32_t *w,
                        uint32_t *h, char *err, size_t errlen)
{
    /* The logical screen, grown to the first frame's extent: the blocks
     * are walked to its descriptor (extensions are sub-blocks, so this
     * is a few hops, never the image data). */
    if (n < 13)
        return img_fail(err, errlen, IMG_E_CORRUPT, "GIF image is truncated");
    uint32_t W = img_le16(bytes + 6), H = img_le16(bytes + 8);
    size_t i = 13 + ((bytes[10] & 0x80) ? (size_t)3 << ((bytes[10] & 7) + 1)
                                         : 0);
    while (i < n && bytes[i] == 0x21) {
        i += 2;
        while (i < n && bytes[i])
            i += (size_t)bytes[i] + 1;
        i++;
    }
    if (i >= n || bytes[i] != 0x2c || i + 9 > n)
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        i < n && bytes[i] == 0x3b ? "GIF file holds no image"
                                                  : "GIF image is truncated");
    uint32_t x1 = img_le16(bytes + i + 1) + img_le16(bytes + i + 5);
    uint32_t y1 = img_le16(bytes + i + 3) + img_le16(bytes + i + 7);
    *w = x1 > W ? x1 : W;
    *h = y1 > H ? y1 : H;
    return IMG_OK;
}

img_status img_decode_gif(const uint8_t *bytes, size_t n,
                          const img_decode_opts *opt, img_rgb *out,
                          int *orient, char *err, size_t errlen)
{
    mem_src m = {bytes, n, 0};
    int code = 0;
    GifFileType *g = DGifOpen(&m, read_mem, &code);
    if (!g)
        return gif_fail(code, &m, err, errlen);
    uint8_t *idx = NULL, *rgb = NULL;
    int trns;
    img_status st = first_frame(g, &trns, err, errlen);
    if (st != IMG_OK)
        goto out;
    const GifImageDesc *d = &g->Image;
    uint64_t x1 = (uint64_t)d->Left + (uint64_t)d->Width;
    uint64_t y1 = (uint64_t)d->Top + (uint64_t)d->Height;
    uint64_t W = x1 > (uint64_t)g->SWidth ? x1 : (uint64_t)g->SWidth;
    uint64_t H = y1 > (uint64_t)g->SHeight ? y1 : (uint64_t)g->SHeight;
    if ((st = img_check_dims(&opt->limits, W, H, err, errlen)) != IMG_OK)
        goto out;
    if (d->Width <= 0 || d->Height <= 0) {
        st = img_fail(err, errlen, IMG_E_CORRUPT,
                      "GIF frame is %dx%d; both sides must be at least 1",
                      d->Width, d->Height);
        goto out;
    }
    size_t px = (size_t)W * (size_t)H;
    if (!(idx = malloc(px)) || !(rgb = malloc(px * 3))) {
        st = img_fail(err, errlen, IMG_E_NOMEM, "out of memory");
        goto out;
    }
    memset(idx, trns >= 0 ? trns : 0, px);
    /* Rows in file order; an interlaced frame's come in four passes. */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    int passes = d->Interlace ? 4 : 1;
    for (int p = 0; p < passes; p++) {
        int y0 = d->Interlace ? start[p] : 0, dy = d->Interlace ? step[p] : 1;
        for (int y = y0; y < d->Height; y += dy) {
            uint8_t *row = idx + ((size_t)d->Top + (size_t)y) * (size_t)W +
                           (size_t)d->Left;
            if (DGifGetLine(g, row, d->Width) == GIF_ERROR) {
                st = gif_fail(g->Error, g->UserData, err, errlen);
                goto out;
            }
        }
    }
    const ColorMapObject *pal = d->ColorMap ? d->ColorMap : g->SColorMap;
    /* A local palette that is the ramp is no palette, even with a global
     * one (Pillow's `palette = False`). */
    int gray = !pal || !palette_needed(pal);
    uint8_t lut[256][3];
    for (int i = 0; i < 256; i++) {
        int in = !gray && i < pal->ColorCount;
        lut[i][0] = gray ? (uint8_t)i : in ? pal->Colors[i].Red : 0;
        lut[i][1] = gray ? (uint8_t)i : in ? pal->Colors[i].Green : 0;
        lut[i][2] = gray ? (uint8_t)i : in ? pal->Colors[i].Blue : 0;
    }
    /* CLIP's convert_to_rgb of the opened image: the transparent index
     * over white. transformers 5's, after load_image's convert("RGB"),
     * which keeps the transparent index's colour: every pixel of that
     * colour white. */
    const uint8_t *key = trns >= 0 ? lut[trns] : NULL;
    for (size_t i = 0; i < px; i++) {
        const uint8_t *c = lut[idx[i]];
        int white = trns >= 0 &&
                    ((opt->composite_on_white && idx[i] == trns) ||
                     (!opt->composite_on_white && opt->transparency_white &&
                      c[0] == key[0] && c[1] == key[1] && c[2] == key[2]));
        for (int k = 0; k < 3; k++)
            rgb[3 * i + k] = white ? 255 : c[k];
    }
    out->width = (int)W;
    out->height = (int)H;
    out->rgb = rgb;
    rgb = NULL;
    *orient = 1; /* GIF has no EXIF orientation Pillow applies */
out:
    free(idx);
    free(rgb);
    DGifCloseFile(g, &code);
    return st;
}
