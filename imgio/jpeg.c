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

#include <limits.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;  /* first, so a j_common_ptr's err is ours */
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    int too_many_scans;         /* the progress monitor stopped the decode */
} jpeg_err;

/* A progressive JPEG may hold any number of scans, and libjpeg walks every
 * block of the image for each; a small file of thousands of empty scans
 * would keep a core busy for minutes. Real encoders write about ten
 * (mozjpeg's tuned scripts under twenty); libjpeg-turbo's own tools and
 * fuzzers stop at 500, and so do we. */
#define MAX_SCANS 500

typedef struct {
    struct jpeg_progress_mgr pub;
    jpeg_err *err;
} scan_guard;

static void on_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    scan_guard *g = (scan_guard *)c->progress;
    if (d->input_scan_number > MAX_SCANS) {
        g->err->too_many_scans = 1;
        snprintf(g->err->msg, sizeof g->err->msg,
                 "more than %d scans", MAX_SCANS);
        longjmp(g->err->jump, 1);
    }
}

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

/* The bytes of the whole-image coefficient array libjpeg allocates for a
 * file read in more than one scan (progressive, or sequential with the
 * components in separate scans: the first scan, read by jpeg_read_header,
 * then lacks some), as jdcoefct.c sizes it; 0 for a single-scan file,
 * which is decoded a row of blocks at a time. */
static uint64_t coef_bytes(j_decompress_ptr c)
{
    if (!c->progressive_mode && c->comps_in_scan >= c->num_components)
        return 0;
    uint64_t total = 0;
    for (int ci = 0; ci < c->num_components; ci++) {
        const jpeg_component_info *k = &c->comp_info[ci];
        uint64_t hs = (uint64_t)k->h_samp_factor;
        uint64_t vs = (uint64_t)k->v_samp_factor;
        uint64_t wb = (k->width_in_blocks + hs - 1) / hs * hs;
        uint64_t hb = (k->height_in_blocks + vs - 1) / vs * vs;
        total += wb * hb * DCTSIZE2 * sizeof(JCOEF);
    }
    return total;
}

/* Points libjpeg's error handling at `jerr` (messages kept, fatal errors
 * back through jerr->jump, which the caller sets next). */
static void errors_to(struct jpeg_decompress_struct *cinfo, jpeg_err *jerr)
{
    memset(cinfo, 0, sizeof *cinfo);
    cinfo->err = jpeg_std_error(&jerr->pub);
    jerr->pub.error_exit = on_error_exit;
    jerr->pub.emit_message = on_emit_message;
    jerr->pub.output_message = on_output_message;
    jerr->msg[0] = '\0';
    jerr->too_many_scans = 0;
}

img_status img_size_jpeg(const uint8_t *bytes, size_t n, uint32_t *w,
                         uint32_t *h, char *err, size_t errlen)
{
    /* jpeg_read_header reads the markers up to the first scan and no
     * entropy-coded data: microseconds, whatever the image's size. */
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    errors_to(&cinfo, &jerr);
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return img_fail(err, errlen, IMG_E_CORRUPT,
                        "JPEG header cannot be read: %s", jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    *w = cinfo.image_width;
    *h = cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return IMG_OK;
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

    errors_to(&cinfo, &jerr);
    scan_guard guard = {.err = &jerr};
    guard.pub.progress_monitor = on_progress;
    if (setjmp(jerr.jump)) {
        int code = jerr.pub.msg_code;
        int scans = jerr.too_many_scans;
        long cap = cinfo.mem ? cinfo.mem->max_memory_to_use : 0;
        int prec = jerr.pub.msg_parm.i[0];
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        /* Valid JPEGs of kinds libjpeg-turbo's 8-bit decoder (and so
         * Pillow) does not handle are a format refusal, not damage. */
        if (scans)
            return img_fail(err, errlen, IMG_E_LIMIT,
                            "JPEG has more than %d scans; refused as a "
                            "likely denial of service",
                            MAX_SCANS);
        if (code == JERR_NO_BACKING_STORE)
            return img_fail(err, errlen, IMG_E_LIMIT,
                            "JPEG decoding needs more working memory than "
                            "the %ld-byte decoder limit",
                            cap);
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
    cinfo.progress = &guard.pub;
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

    /* libjpeg's one big allocation besides our output is the whole-image
     * coefficient array of a progressive or multi-scan file (two bytes a
     * coefficient, every block of every component, padded to whole MCUs),
     * allocated as decoding starts, before any of the data that would
     * justify it has been read. It is counted here from the header and
     * held to the caller's cap; max_memory_to_use is set too, for the
     * libjpeg-turbo versions that honour it (2.1, which Debian 12 ships,
     * ignores it: its memory manager has no backing store to fall back
     * on). */
    {
        uint64_t need = coef_bytes(&cinfo);
        if (lim->max_decoder_memory && need > lim->max_decoder_memory) {
            st = img_fail(err, errlen, IMG_E_LIMIT,
                          "JPEG decoding needs %llu bytes of coefficient "
                          "memory, more than the %zu-byte decoder limit",
                          (unsigned long long)need, lim->max_decoder_memory);
            jpeg_destroy_decompress(&cinfo);
            return st;
        }
        uint64_t cap = need + ((uint64_t)32 << 20);
        if (lim->max_decoder_memory && lim->max_decoder_memory < cap)
            cap = lim->max_decoder_memory;
        cinfo.mem->max_memory_to_use =
            cap > (uint64_t)LONG_MAX ? LONG_MAX : (long)cap;
    }
    /* Opt-in reduced decoding: libjpeg's DCT scaling by 1/8, 1/4 or 1/2,
     * the largest that keeps the shorter side at least fast_min_side. */
    if (opt->fast_min_side > 0) {
        uint64_t ms = cinfo.image_width < cinfo.image_height
                          ? cinfo.image_width
                          : cinfo.image_height;
        for (unsigned d = 8; d >= 2; d /= 2)
            if ((ms + d - 1) / d >= (uint64_t)opt->fast_min_side) {
                cinfo.scale_num = 1;
                cinfo.scale_denom = d;
                break;
            }
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
        /* RGB rows are read straight into place, a whole iMCU row (up to
         * 16) per call, which saves libjpeg a copy through its own buffer;
         * others go one by one through `row` to be converted. */
        JSAMPROW rp[16];
        JDIMENSION want = 1;
        if (nc == 3) {
            want = cinfo.output_height - cinfo.output_scanline;
            if (want > 16)
                want = 16;
            for (JDIMENSION i = 0; i < want; i++)
                rp[i] = dst + (size_t)i * (size_t)w * 3;
        } else {
            rp[0] = row;
        }
        /* A memory source never suspends, so reading no row at all is a
         * bug in libjpeg's contract rather than bad input; fail rather than
         * spin. */
        if (jpeg_read_scanlines(&cinfo, rp, want) == 0) {
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
