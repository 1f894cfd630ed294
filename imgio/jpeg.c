/*
 * JPEG decoding with libjpeg-turbo, set up as Pillow sets it up (ISLOW
 * inverse DCT, fancy upsampling: libjpeg's defaults) so that the pixels
 * equal those of Image.open(f).convert("RGB"), for every kind libjpeg's
 * 8-bit decoder reads: baseline, progressive and arithmetic-coded, any
 * sampling (4:4:4, 4:2:2, 4:2:0, 4:1:1, 4:4:0), restart markers, gray,
 * RGB, CMYK and YCCK. 12-bit, lossless and hierarchical JPEGs are refused
 * as formats. This file owns the error plumbing libjpeg needs: its fatal
 * errors come back through longjmp, its messages are kept instead of
 * printed, and the one warning that means the data ran out is promoted to
 * an error, because libjpeg would otherwise pad a truncated file with gray
 * and call it a success. It also collects the EXIF and XMP segments the
 * orientation comes from.
 */
#include "imgio/imgio_impl.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;  /* first, so a j_common_ptr's err is ours */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void on_error_exit(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jump, 1);
}

/* libjpeg reports a premature end of data as a warning and goes on with
 * invented gray pixels; Pillow refuses such a file ("image file is
 * truncated"), and so do we. Other warnings (extraneous bytes before a
 * marker, a bad Huffman code in one block) leave a usable image, and Pillow
 * accepts them too, so they are only counted. */
static void on_emit_message(j_common_ptr c, int level)
{
    if (level >= 0)
        return;  /* trace messages */
    if (c->err->msg_code == JWRN_JPEG_EOF)
        on_error_exit(c);
    c->err->num_warnings++;
}

/* The default would print to stderr; a library must not. */
static void on_output_message(j_common_ptr c) { (void)c; }

/* Pillow opens every four-component JPEG as "CMYK;I", that is, assuming
 * Adobe's inverted storage, and then converts CMYK to RGB with its own
 * formula, which this reproduces on the stored (inverted) samples. */
static uint8_t muldiv255(int a, int b)
{
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_row_to_rgb(uint8_t *dst, const uint8_t *src, int w)
{
    for (int x = 0; x < w; x++, src += 4, dst += 3) {
        int nk = src[3];  /* 255 - K with K = 255 - stored */
        for (int c = 0; c < 3; c++)
            dst[c] = (uint8_t)(nk - muldiv255(255 - src[c], nk));
    }
}

/* Where Pillow's JPEG reader finds EXIF: every APP1 segment that starts
 * with "Exif\0\0", the first whole and the rest without that prefix,
 * concatenated (a large block may be split across segments); and XMP, the
 * last APP1 with Adobe's namespace header. Both are looked at only among
 * the markers before the first scan, which are what jpeg_read_header has
 * saved by the time this runs. Returns the orientation to apply, 1..8. */
static int jpeg_orientation(j_decompress_ptr cinfo)
{
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/";
    const size_t xl = sizeof xmp_id; /* with its NUL */
    size_t total = 0;
    const uint8_t *xmp = NULL;
    size_t xmp_n = 0;
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1)
            continue;
        if (m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0)
            total += m->data_length;
        else if (m->data_length >= xl && memcmp(m->data, xmp_id, xl) == 0)
            xmp = m->data + xl, xmp_n = m->data_length - xl;
    }
    int o = IMG_ORIENT_ABSENT;
    if (total > 0) {
        uint8_t *exif = malloc(total);
        if (!exif)
            return 1; /* only metadata: decode upright rather than fail */
        size_t k = 0;
        for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
            if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 ||
                memcmp(m->data, "Exif\0\0", 6) != 0)
                continue;
            size_t skip = k == 0 ? 0 : 6;
            memcpy(exif + k, m->data + skip, m->data_length - skip);
            k += m->data_length - skip;
        }
        o = img_tiff_orientation(exif, k);
        free(exif);
    }
    return img_exif_resolve(o, xmp, xmp_n, xmp != NULL);
}

img_status img_decode_jpeg(const uint8_t *bytes, size_t n,
                           const img_decode_opts *opt, img_rgb *out,
                           int *orient, char *err, size_t errlen)
{
    const img_limits *lim = &opt->limits;
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    /* Both are assigned after setjmp and freed after a longjmp, so they must
     * be volatile to keep their values across it. */
    uint8_t *volatile pix = NULL;
    uint8_t *volatile row = NULL;
    img_status st;

    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = on_error_exit;
    jerr.pub.emit_message = on_emit_message;
    jerr.pub.output_message = on_output_message;
    jerr.msg[0] = '\0';
    if (setjmp(jerr.jump)) {
        int code = jerr.pub.msg_code;
        int prec = jerr.pub.msg_parm.i[0];
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        /* Valid JPEGs of kinds libjpeg-turbo's 8-bit decoder (and so
         * Pillow) does not handle are a format refusal, not damage. */
        if (code == JERR_BAD_PRECISION)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "%d-bit JPEG images are not supported (only "
                            "8-bit samples)",
                            prec);
        if (code == JERR_SOF_UNSUPPORTED)
            return img_fail(err, errlen, IMG_E_FORMAT,
                            "lossless and hierarchical JPEG images (SOF "
                            "marker 0x%02x) are not supported",
                            prec);
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "JPEG decoding failed: %s", jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    /* libjpeg-turbo's jpeg_mem_src takes the size as unsigned long, which
     * is 64 bits here; the file-size limit keeps real inputs far below. */
    jpeg_mem_src(&cinfo, bytes, (unsigned long)n);
    if (opt->exif_transpose)
        jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    *orient = opt->exif_transpose ? jpeg_orientation(&cinfo) : 1;

    st = img_check_dims(lim, cinfo.image_width, cinfo.image_height, err,
                        errlen);
    if (st != IMG_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        break;
    default:
        st = img_fail(err, errlen, IMG_E_FORMAT,
                      "JPEG images with %d color components of unknown "
                      "meaning are not supported",
                      cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return st;
    }

    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int nc = cinfo.output_components;
    pix = malloc((size_t)w * (size_t)h * 3);
    if (nc != 3)
        row = malloc((size_t)w * (size_t)nc);
    if (!pix || (nc != 3 && !row)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        return img_fail(err, errlen, IMG_E_NOMEM,
                        "out of memory for a %dx%d JPEG image", w, h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = pix + (size_t)cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW rp = nc == 3 ? dst : row;
        /* A memory source never suspends, so a short read is a bug in
         * libjpeg's contract rather than bad input; fail rather than spin. */
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            int at = (int)cinfo.output_scanline;
            jpeg_destroy_decompress(&cinfo);
            free(pix);
            free(row);
            return img_fail(err, errlen, IMG_E_CORRUPT,
                            "JPEG decoding stopped at row %d of %d", at, h);
        }
        if (nc == 1) {
            for (int x = 0; x < w; x++)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (nc == 4) {
            cmyk_row_to_rgb(dst, row, w);
        }
    }
    /* jpeg_finish_decompress is skipped on purpose: it would only read on
     * to the EOI marker, and a file whose pixels are all present but whose
     * EOI is missing is still a good image. */
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->width = w;
    out->height = h;
    out->rgb = pix;
    return IMG_OK;
}
