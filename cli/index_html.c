/*
 * The results page of `vit index search --html`: one self-contained HTML
 * file (no scripts, no external files) that a person can open or mail,
 * with every hit shown as a thumbnail embedded as a PNG data URI, its rank,
 * score and path. Thumbnails are made here: the image decoded by the
 * library as search sees it (EXIF turn applied), reduced by box averaging
 * to at most CLI_THUMB_MAX pixels a side, and encoded with libpng's
 * simplified writer; a page of 10 hits is then tens of kilobytes, not the
 * megabytes of the originals.
 */
#include "cli/index_html.h"
#include "cli/cli.h"

#include <errno.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

/* Writes s with &, <, >, " escaped. */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* Box-averages an RGB image down to fit max x max (never up). The new
 * pixels are malloc'd into *out; NULL when out of memory. */
static uint8_t *shrink(const vit_image *img, int max, int *ow, int *oh)
{
    int w = img->width, h = img->height;
    int tw = w, th = h;
    if (w > max || h > max) {
        if (w >= h) {
            tw = max;
            th = (int)((long)h * max / w);
        } else {
            th = max;
            tw = (int)((long)w * max / h);
        }
        tw = tw < 1 ? 1 : tw;
        th = th < 1 ? 1 : th;
    }
    uint8_t *o = malloc((size_t)tw * (size_t)th * 3);
    if (!o)
        return NULL;
    for (int y = 0; y < th; y++) {
        long y0 = (long)y * h / th, y1 = (long)(y + 1) * h / th;
        if (y1 <= y0)
            y1 = y0 + 1;
        for (int x = 0; x < tw; x++) {
            long x0 = (long)x * w / tw, x1 = (long)(x + 1) * w / tw;
            if (x1 <= x0)
                x1 = x0 + 1;
            unsigned long sum[3] = {0, 0, 0};
            for (long sy = y0; sy < y1; sy++) {
                const uint8_t *p = img->rgb + ((size_t)sy * (size_t)w +
                                               (size_t)x0) * 3;
                for (long sx = x0; sx < x1; sx++, p += 3)
                    sum[0] += p[0], sum[1] += p[1], sum[2] += p[2];
            }
            unsigned long cnt = (unsigned long)((y1 - y0) * (x1 - x0));
            uint8_t *q = o + ((size_t)y * (size_t)tw + (size_t)x) * 3;
            for (int c = 0; c < 3; c++)
                q[c] = (uint8_t)((sum[c] + cnt / 2) / cnt);
        }
    }
    *ow = tw;
    *oh = th;
    return o;
}

/* PNG bytes of an RGB image, malloc'd, or NULL. */
static unsigned char *png_encode(const uint8_t *rgb, int w, int h,
                                 size_t *n)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&im, NULL, &size, 0, rgb, 0, NULL))
        return NULL;
    unsigned char *buf = malloc(size);
    if (!buf)
        return NULL;
    if (!png_image_write_to_memory(&im, buf, &size, 0, rgb, 0, NULL)) {
        free(buf);
        return NULL;
    }
    *n = size;
    return buf;
}

static void put_base64(FILE *f, const unsigned char *p, size_t n)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        fputc(t[v >> 18], f);
        fputc(t[(v >> 12) & 63], f);
        fputc(t[(v >> 6) & 63], f);
        fputc(t[v & 63], f);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        fputc(t[v >> 18], f);
        fputc(t[(v >> 12) & 63], f);
        fputs("==", f);
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        fputc(t[v >> 18], f);
        fputc(t[(v >> 12) & 63], f);
        fputc(t[(v >> 6) & 63], f);
        fputc('=', f);
    }
}

/* A thumbnail <img> of the file, or a note saying why there is none. */
static void put_thumb(FILE *f, const char *file, const vit_options *opt)
{
    vit_image img;
    vit_error err = {{0}};
    if (vit_image_read(file, opt, &img, &err) != VIT_OK) {
        fputs("<div class=\"missing\">", f);
        put_escaped(f, err.msg[0] ? err.msg : "unreadable");
        fputs("</div>", f);
        return;
    }
    int w, h;
    size_t n = 0;
    uint8_t *small = shrink(&img, CLI_THUMB_MAX, &w, &h);
    unsigned char *png = small ? png_encode(small, w, h, &n) : NULL;
    vit_image_free(&img);
    free(small);
    if (!png) {
        fputs("<div class=\"missing\">could not make a thumbnail</div>", f);
        return;
    }
    /* Shown at least 96 px wide so that tiny images (32 x 32 digits) can
     * be seen; `pixelated` keeps their pixels sharp. */
    int dw = w, dh = h;
    if (dw < 96 && dh < 96) {
        int s = 96 / (dw > dh ? dw : dh);
        dw *= s;
        dh *= s;
    }
    fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"\" src=\"data:image/png;"
               "base64,", dw, dh);
    put_base64(f, png, n);
    fputs("\">", f);
    free(png);
}

static const char style[] =
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;width:176px;border:1px solid #ddd;padding:6px;"
    "border-radius:4px;background:#fafafa}"
    "figure img{display:block;margin:0 auto;image-rendering:pixelated}"
    "figcaption{font-size:12px;margin-top:4px;word-break:break-all}"
    ".score{font-weight:bold}.missing{color:#a00;font-size:12px}"
    ".query img{border:2px solid #48c}";

int cli_index_html(const char *path, const cli_html_query *q, int nq,
                   const idx_hit *hits, int k, const vit_options *opt)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_report(path, strerror(errno));
        return -1;
    }
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta "
               "charset=\"utf-8\"><title>vit index search</title>"
               "<style>%s</style></head>\n<body>\n<h1>vit index search</h1>\n",
            style);
    for (int i = 0; i < nq; i++) {
        fputs("<section>\n<h2>", f);
        fputs(q[i].is_image ? "image: " : "text: ", f);
        put_escaped(f, q[i].s);
        fputs("</h2>\n", f);
        if (q[i].is_image) {
            fputs("<div class=\"query\">", f);
            put_thumb(f, q[i].s, opt);
            fputs("</div>\n", f);
        }
        fputs("<div class=\"grid\">\n", f);
        const idx_hit *h = hits + (size_t)i * (size_t)k;
        int j = 0;
        for (; j < k && h[j].id >= 0; j++) {
            fputs("<figure>", f);
            put_thumb(f, h[j].key, opt);
            fprintf(f, "<figcaption>%d. <span class=\"score\">%.4f</span><br>",
                    j + 1, (double)h[j].score);
            put_escaped(f, h[j].key);
            fputs("</figcaption></figure>\n", f);
        }
        if (j == 0)
            fputs("<p>No matches.</p>\n", f);
        fputs("</div>\n</section>\n", f);
    }
    fputs("</body></html>\n", f);
    if (ferror(f) | (fclose(f) != 0)) {
        cli_report(path, strerror(errno));
        return -1;
    }
    return 0;
}
