/*
 * The library's image entry points: reading and decoding files within the
 * caller's limits, and preprocessing images into the pixel tensor a model
 * takes, by handing imgio the settings read from preprocessor_config.json.
 * imgio's statuses are translated into vit's here and nowhere else.
 */
#include "vit/vit_impl.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static img_limits limits_of(const vit_options *opt)
{
    vit_options d = vit_options_default();
    if (!opt)
        opt = &d;
    img_limits lim = {
        .max_width = opt->max_width,
        .max_height = opt->max_height,
        .max_pixels = opt->max_pixels,
        .max_bytes = opt->max_file_bytes,
    };
    return lim;
}

static img_decode_opts decode_opts_of(const vit_options *opt)
{
    vit_options d = vit_options_default();
    if (!opt)
        opt = &d;
    img_decode_opts o = img_decode_opts_default();
    o.limits = limits_of(opt);
    o.exif_transpose = opt->exif_transpose != 0;
    o.composite_on_white = opt->alpha_over_white != 0;
    o.transparency_white = opt->convert_rgb != 0;
    o.fast_min_side = opt->fast_decode ? opt->decode_min_side : 0;
    return o;
}

static vit_status from_img(img_status st)
{
    switch (st) {
    case IMG_OK:
        return VIT_OK;
    case IMG_E_NOMEM:
        return VIT_E_NOMEM;
    case IMG_E_LIMIT:
        return VIT_E_TOO_LARGE;
    case IMG_E_ARG:
        return VIT_E_ARG;
    default:
        return VIT_E_IMAGE;
    }
}

vit_status vit_image_decode(const void *bytes, size_t n,
                            const vit_options *opt, vit_image *out,
                            vit_error *err)
{
    if (!out || (!bytes && n))
        return vit__fail(err, VIT_E_ARG, "vit_image_decode: NULL argument");
    img_decode_opts o = decode_opts_of(opt);
    img_rgb im;
    char msg[sizeof err->msg];
    img_status st = img_decode_ex(bytes, n, &o, &im, msg, sizeof msg);
    if (st != IMG_OK)
        return vit__fail(err, from_img(st), "%s", msg);
    out->width = im.width;
    out->height = im.height;
    out->rgb = im.rgb;
    return VIT_OK;
}

vit_status vit_image_size(const void *bytes, size_t n,
                          const vit_options *opt, int *width, int *height,
                          vit_error *err)
{
    if (!width || !height || (!bytes && n))
        return vit__fail(err, VIT_E_ARG, "vit_image_size: NULL argument");
    img_limits lim = limits_of(opt);
    uint32_t w, h;
    char msg[sizeof err->msg];
    img_status st = img_size(bytes, n, &lim, &w, &h, msg, sizeof msg);
    if (st != IMG_OK)
        return vit__fail(err, from_img(st), "%s", msg);
    /* img_check_dims has held both sides to INT_MAX. */
    *width = (int)w;
    *height = (int)h;
    return VIT_OK;
}

vit_status vit_image_read(const char *path, const vit_options *opt,
                          vit_image *out, vit_error *err)
{
    if (!path || !out)
        return vit__fail(err, VIT_E_ARG, "vit_image_read: NULL argument");
    img_limits lim = limits_of(opt);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return vit__fail(err, VIT_E_IO, "%s", strerror(errno));
    vit_status st = VIT_OK;
    unsigned char *buf = NULL;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = vit__fail(err, VIT_E_IO, "not a regular file");
        goto out;
    }
    size_t size = (size_t)sb.st_size;
    if (lim.max_bytes && size > lim.max_bytes) {
        st = vit__fail(err, VIT_E_TOO_LARGE,
                       "file is %zu bytes, over the %zu-byte limit", size,
                       lim.max_bytes);
        goto out;
    }
    buf = malloc(size ? size : 1);
    if (!buf) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory reading %zu bytes",
                       size);
        goto out;
    }
    if (fread(buf, 1, size, fp) != size) {
        st = vit__fail(err, VIT_E_IO, "short read");
        goto out;
    }
    st = vit_image_decode(buf, size, opt, out, err);
out:
    free(buf);
    fclose(fp);
    return st;
}

void vit_image_free(vit_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

vit_status vit_preprocess(const vit_model *m, const vit_image *imgs, int n,
                          float *pixels, vit_error *err)
{
    if (!m || (n > 0 && (!imgs || !pixels)) || n < 0)
        return vit__fail(err, VIT_E_ARG, "vit_preprocess: NULL argument");
    vit_model_info info;
    vit_model_get_info(m, &info);
    if (info.channels != 3)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "the model takes %d-channel input; images decode to "
                         "RGB, so give it preprocessed pixels instead",
                         info.channels);
    const vit__processor *pr = vit__model_processor(m);
    const img_preprocess_cfg *cfg = &pr->cfg;
    if (n > 0 && pr->missing)
        return vit__fail(err, VIT_E_CONFIG,
                         "the model directory has no preprocessor_config.json, "
                         "so how to resize and normalize its images is not "
                         "known (transformers refuses such a directory too); "
                         "add the file its image processor saves, or give "
                         "preprocessed pixels (.npy)");
    size_t per = (size_t)3 * info.image_h * info.image_w;
    for (int i = 0; i < n; i++) {
        int oh, ow;
        img_preprocess_size(cfg, imgs[i].width, imgs[i].height, &oh, &ow);
        if (oh != info.image_h || ow != info.image_w)
            return vit__fail(err, VIT_E_IMAGE,
                             "a %dx%d image preprocesses to %dx%d, but the "
                             "model takes %dx%d",
                             imgs[i].width, imgs[i].height, ow, oh,
                             info.image_w, info.image_h);
        img_rgb src = {imgs[i].width, imgs[i].height, imgs[i].rgb};
        char msg[sizeof err->msg];
        img_status st = img_preprocess(&src, cfg, pixels + (size_t)i * per,
                                       oh, ow, msg, sizeof msg);
        if (st != IMG_OK)
            return vit__fail(err, from_img(st), "%s", msg);
    }
    return VIT_OK;
}

/* What runs on each chunk of preprocessed images: image i0 of the call is
 * the chunk's first. */
typedef vit_status (*chunk_fn)(vit_state *s, const float *pixels, int i0,
                               int b, void *ctx, vit_error *err);

/* Preprocesses and runs `n` images one chunk of max_batch at a time, so
 * memory stays bounded however many images the caller passes. */
static vit_status image_chunks(vit_state *s, const vit_image *imgs, int n,
                               chunk_fn fn, void *ctx, vit_error *err)
{
    if (!s || n < 0 || (n > 0 && !imgs))
        return vit__fail(err, VIT_E_ARG, "NULL state or images");
    const vit_model *m = vit__state_model(s);
    vit_model_info info;
    vit_model_get_info(m, &info);
    if (!info.has_vision)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no vision tower; it embeds text only",
                         info.architecture);
    size_t per = (size_t)info.channels * info.image_h * info.image_w;
    int chunk = vit__model_options(m)->max_batch;
    float *pixels = malloc((size_t)chunk * per * sizeof *pixels);
    if (!pixels)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    vit_status st = VIT_OK;
    for (int i = 0; i < n && st == VIT_OK; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        st = vit_preprocess(m, imgs + i, b, pixels, err);
        if (st == VIT_OK)
            st = fn(s, pixels, i, b, ctx, err);
    }
    free(pixels);
    return st;
}

typedef struct {
    int top_k, num_labels;
    vit_prediction *out;
    float *logits;
} classify_ctx;

static vit_status classify_chunk(vit_state *s, const float *pixels, int i0,
                                 int b, void *p, vit_error *err)
{
    classify_ctx *c = p;
    return vit_classify_pixels(
        s, pixels, b, c->top_k, c->out ? c->out + (size_t)i0 * c->top_k : NULL,
        c->logits ? c->logits + (size_t)i0 * c->num_labels : NULL, err);
}

vit_status vit_classify(vit_state *s, const vit_image *imgs, int n, int top_k,
                        vit_prediction *out, float *logits, vit_error *err)
{
    if (!s)
        return vit__fail(err, VIT_E_ARG, "vit_classify: NULL state");
    vit_model_info info;
    vit_model_get_info(vit__state_model(s), &info);
    classify_ctx c = {top_k, info.num_labels, out, logits};
    return image_chunks(s, imgs, n, classify_chunk, &c, err);
}

static vit_status embed_chunk(vit_state *s, const float *pixels, int i0,
                              int b, void *p, vit_error *err)
{
    const vit_model *m = vit__state_model(s);
    vit_model_info info;
    vit_model_get_info(m, &info);
    return vit_embed_pixels(s, pixels, b, (float *)p + (size_t)i0 * info.embed_dim,
                            err);
}

vit_status vit_embed_images(vit_state *s, const vit_image *imgs, int n,
                            float *out, vit_error *err)
{
    if (!out)
        return vit__fail(err, VIT_E_ARG, "vit_embed_images: NULL output");
    return image_chunks(s, imgs, n, embed_chunk, out, err);
}
