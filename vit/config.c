/*
 * Reading the JSON files of a model directory: typed, range-checked field
 * getters for config.json (each error names the file and the field), and
 * preprocessor_config.json turned into imgio's settings with the defaults
 * of the reference processor of the model's family.
 */
#include "vit/vit_impl.h"

#include <jansson.h>
#include <string.h>
#include <unistd.h>


vit_status vit__cfg_int(json_t *o, const char *path, const char *key,
                         int def, int lo, int hi, int *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return VIT_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: \"%s\" must be an integer from %d to %d", path,
                         key, lo, hi);
    *out = (int)json_integer_value(v);
    return VIT_OK;
}

vit_status vit__cfg_bool(json_t *o, const char *path, const char *key,
                          int def, int *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return VIT_OK;
    }
    if (!json_is_boolean(v))
        return vit__fail(err, VIT_E_CONFIG, "%s: \"%s\" must be true or false",
                         path, key);
    *out = json_is_true(v);
    return VIT_OK;
}

vit_status vit__cfg_act(json_t *o, const char *path, const char *key,
                         const char *def, vit__act *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    const char *s = v ? json_string_value(v) : def;
    if (!s)
        return vit__fail(err, VIT_E_CONFIG, "%s: \"%s\" must be a string",
                         path, key);
    int a = vit__act_parse(s);
    if (a < 0)
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: activation \"%s\" is not supported", path, s);
    *out = (vit__act)a;
    return VIT_OK;
}

/* An image or patch size: an integer, or [height, width]. */
vit_status vit__cfg_size2(json_t *o, const char *path, const char *key,
                          int def, int *h, int *w, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (json_is_array(v) && json_array_size(v) == 2) {
        json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
        if (json_is_integer(a) && json_is_integer(b) &&
            json_integer_value(a) > 0 && json_integer_value(a) <= CFG_MAX_DIM &&
            json_integer_value(b) > 0 && json_integer_value(b) <= CFG_MAX_DIM) {
            *h = (int)json_integer_value(a);
            *w = (int)json_integer_value(b);
            return VIT_OK;
        }
        return vit__fail(err, VIT_E_CONFIG, "%s: bad \"%s\"", path, key);
    }
    vit_status st = vit__cfg_int(o, path, key, def, 1, CFG_MAX_DIM, h, err);
    *w = *h;
    return st;
}


/* ---- preprocessor_config.json, as transformers 5 reads it ---- */

/* The image processor classes vit reproduces, by the names a
 * preprocessor_config.json gives them: transformers 5's (the torchvision
 * one, its "Pil" twin, and the "Fast" name 4.x saved) and the
 * FeatureExtractor names older repositories still ship, which
 * AutoImageProcessor reads as the ImageProcessor of the same stem. */
static const struct {
    const char *stem;
    vit__proc_kind kind;
} processors[] = {
    {"ViT", VIT_PROC_VIT},
    {"CLIP", VIT_PROC_CLIP},
    /* BiT's (DINOv2's) class defaults are CLIP's, value for value. */
    {"Bit", VIT_PROC_CLIP},
    {"DeiT", VIT_PROC_DEIT},
    {"Siglip", VIT_PROC_SIGLIP},
};

/* The names for messages. */
#define PROCESSOR_NAMES                                                     \
    "ViTImageProcessor, CLIPImageProcessor, BitImageProcessor, "            \
    "DeiTImageProcessor and SiglipImageProcessor"

/* 1 and *kind set when `name` is one of the classes above. */
static int processor_named(const char *name, vit__proc_kind *kind)
{
    static const char *const suffixes[] = {
        "ImageProcessor", "ImageProcessorFast", "ImageProcessorPil",
        "FeatureExtractor",
    };
    for (size_t i = 0; i < sizeof processors / sizeof *processors; i++) {
        size_t n = strlen(processors[i].stem);
        if (strncmp(name, processors[i].stem, n) != 0)
            continue;
        for (size_t j = 0; j < sizeof suffixes / sizeof *suffixes; j++)
            if (strcmp(name + n, suffixes[j]) == 0) {
                *kind = processors[i].kind;
                return 1;
            }
    }
    return 0;
}

/* The class defaults of ViTImageProcessor, CLIPImageProcessor (and
 * BitImageProcessor), DeiTImageProcessor and SiglipImageProcessor. Their sizes are the classes'
 * own (224), not the model's: a file that leaves `size` out gets what
 * transformers gives it. */
static void processor_defaults(vit__proc_kind kind, vit__processor *pr)
{
    img_preprocess_cfg d = {
        .do_resize = 1, .resample = IMG_BILINEAR, .size_h = 224,
        .size_w = 224, .do_rescale = 1, .rescale_factor = 1.0f / 255.0f,
        .do_normalize = 1, .mean = {0.5f, 0.5f, 0.5f},
        .std = {0.5f, 0.5f, 0.5f},
    };
    pr->convert_rgb = 0;
    if (kind == VIT_PROC_SIGLIP) {
        d.resample = IMG_BICUBIC;
        pr->convert_rgb = 1;
    }
    if (kind == VIT_PROC_DEIT) {
        d.resample = IMG_BICUBIC;
        d.size_h = d.size_w = 256;
        d.do_center_crop = 1;
        d.crop_h = d.crop_w = 224;
    }
    if (kind == VIT_PROC_CLIP) {
        const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
        const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
        d.resample = IMG_BICUBIC;
        d.size_h = d.size_w = 0;
        d.shortest_edge = 224;
        d.do_center_crop = 1;
        d.crop_h = d.crop_w = 224;
        memcpy(d.mean, mean, sizeof mean);
        memcpy(d.std, std, sizeof std);
        pr->convert_rgb = 1;
    }
    pr->cfg = d;
}

static int pos_int(json_t *v, int *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > CFG_MAX_DIM)
        return 0;
    *out = (int)json_integer_value(v);
    return 1;
}

/* A size as transformers' get_size_dict reads it: an integer (a square, or
 * the shortest edge when the class does not default to a square), a
 * [height, width] list, or a dict with exactly one of the key sets
 * transformers accepts. The form is kept in `p` (for crop_size, only
 * height and width are meaningful: *other is set when the dict has any
 * other form). */
typedef struct {
    int h, w, shortest, longest, max_h, max_w;
    int other; /* a valid form without height and width */
} size_form;

static vit_status read_size(json_t *o, const char *path, const char *key,
                            int square, size_form *f, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    memset(f, 0, sizeof *f);
    int n = 0;
    if (json_is_integer(v)) {
        if (!pos_int(v, square ? &f->h : &f->shortest))
            goto bad;
        if (square)
            f->w = f->h;
        return VIT_OK;
    }
    if (json_is_array(v)) {
        if (json_array_size(v) != 2 || !pos_int(json_array_get(v, 0), &f->h) ||
            !pos_int(json_array_get(v, 1), &f->w))
            goto bad;
        return VIT_OK;
    }
    if (!json_is_object(v))
        goto bad;
    n = (int)json_object_size(v);
    json_t *jh = json_object_get(v, "height"), *jw = json_object_get(v, "width");
    json_t *js = json_object_get(v, "shortest_edge");
    json_t *jl = json_object_get(v, "longest_edge");
    json_t *jmh = json_object_get(v, "max_height");
    json_t *jmw = json_object_get(v, "max_width");
    if (n == 2 && jh && jw) {
        if (!pos_int(jh, &f->h) || !pos_int(jw, &f->w))
            goto bad;
    } else if ((n == 1 && js) || (n == 2 && js && jl)) {
        if (!pos_int(js, &f->shortest) || (jl && !pos_int(jl, &f->longest)))
            goto bad;
        f->other = 1;
    } else if (n == 1 && jl) {
        if (!pos_int(jl, &f->longest))
            goto bad;
        f->other = 1;
    } else if (n == 2 && jmh && jmw) {
        if (!pos_int(jmh, &f->max_h) || !pos_int(jmw, &f->max_w))
            goto bad;
        f->other = 1;
    } else if (n == 2 && json_object_get(v, "min_pixels") &&
               json_object_get(v, "max_pixels")) {
        f->other = 1;
    } else {
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: \"%s\" must have the keys height and width, "
                         "shortest_edge, shortest_edge and longest_edge, "
                         "longest_edge, or max_height and max_width (as "
                         "transformers reads it)",
                         path, key);
    }
    return VIT_OK;
bad:
    return vit__fail(err, VIT_E_CONFIG,
                     "%s: \"%s\" must be a positive integer, a [height, "
                     "width] list or a dict of positive integers",
                     path, key);
}

static vit_status pre_floats3(json_t *o, const char *path, const char *key,
                              float *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return VIT_OK;
    if (json_is_number(v)) {
        out[0] = out[1] = out[2] = (float)json_number_value(v);
        return VIT_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: \"%s\" must be a number or a list of 3 numbers",
                         path, key);
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (!json_is_number(x))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: \"%s\" must be a number or a list of 3 "
                             "numbers",
                             path, key);
        out[i] = (float)json_number_value(x);
    }
    return VIT_OK;
}

/* Which class the file asks for, as AutoImageProcessor resolves it:
 * image_processor_type; else, unless the file points to code of the
 * repository's own (auto_map, which transformers runs only when told to
 * trust it, and vit never), feature_extractor_type; else the model's own
 * class (model_kind). */
static vit_status processor_class(json_t *o, const char *path,
                                  vit__proc_kind model_kind,
                                  vit__proc_kind *kind, vit_error *err)
{
    json_t *am = json_object_get(o, "auto_map");
    const char *t = json_string_value(json_object_get(o, "image_processor_type"));
    if (!t && !json_object_get(am, "AutoImageProcessor") &&
        !json_object_get(am, "AutoFeatureExtractor"))
        t = json_string_value(json_object_get(o, "feature_extractor_type"));
    if (!t && model_kind == VIT_PROC_NONE)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s names no image processor class "
                         "(image_processor_type), and transformers has no "
                         "default one for this model type",
                         path);
    if (!t) {
        *kind = model_kind;
        return VIT_OK;
    }
    if (!processor_named(t, kind))
        return vit__fail(err, VIT_E_UNSUPPORTED,
                         "%s: image processor %s is not supported; vit "
                         "reproduces " PROCESSOR_NAMES " (also under their "
                         "Fast, Pil and FeatureExtractor names)",
                         path, t);
    return VIT_OK;
}

int vit__processor_size(const vit__processor *pr, int *h, int *w)
{
    const img_preprocess_cfg *p = &pr->cfg;
    *h = *w = 0;
    if (pr->missing)
        return 0;
    if (p->do_center_crop)
        *h = p->crop_h, *w = p->crop_w;
    else if (p->do_resize && p->size_h)
        *h = p->size_h, *w = p->size_w;
    return *h > 0;
}

vit_status vit__read_preprocessor(const char *dir, vit__proc_kind model_kind,
                                  int model_h, int model_w,
                                  vit__processor *pr, vit_error *err)
{
    memset(pr, 0, sizeof *pr);
    processor_defaults(model_kind, pr);
    char path[4096];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (access(path, F_OK) != 0) {
        pr->missing = 1;
        return VIT_OK;
    }
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return vit__fail(err, VIT_E_CONFIG, "%s:%d: malformed JSON: %s", path,
                         je.line, je.text);
    }
    vit_status st;
    vit__proc_kind kind = model_kind;
    int resample, square;
    size_form size, crop;
    if ((st = processor_class(o, path, model_kind, &kind, err)))
        goto out;
    processor_defaults(kind, pr);
    img_preprocess_cfg *p = &pr->cfg;
    json_t *rf = json_object_get(o, "rescale_factor");
    if (json_is_number(rf)) {
        p->rescale_factor = (float)json_number_value(rf);
    } else if (rf && !json_is_null(rf)) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: \"rescale_factor\" must be a number", path);
        goto out;
    }
    if ((st = vit__cfg_bool(o, path, "do_resize", p->do_resize,
                            &p->do_resize, err)) ||
        (st = vit__cfg_bool(o, path, "do_center_crop", p->do_center_crop,
                            &p->do_center_crop, err)) ||
        (st = vit__cfg_bool(o, path, "do_rescale", p->do_rescale,
                            &p->do_rescale, err)) ||
        (st = vit__cfg_bool(o, path, "do_normalize", p->do_normalize,
                            &p->do_normalize, err)) ||
        (st = vit__cfg_bool(o, path, "do_convert_rgb", pr->convert_rgb,
                            &pr->convert_rgb, err)) ||
        (st = vit__cfg_bool(o, path, "default_to_square",
                            kind != VIT_PROC_CLIP && kind != VIT_PROC_SIGLIP,
                            &square,
                            err)) ||
        (st = vit__cfg_int(o, path, "resample", (int)p->resample, 0, 5,
                           &resample, err)) ||
        (st = pre_floats3(o, path, "image_mean", p->mean, err)) ||
        (st = pre_floats3(o, path, "image_std", p->std, err)))
        goto out;
    p->resample = (img_filter)resample;
    json_t *js = json_object_get(o, "size");
    if (js && !json_is_null(js)) {
        if ((st = read_size(o, path, "size", square, &size, err)))
            goto out;
        p->size_h = size.h;
        p->size_w = size.w;
        p->shortest_edge = size.shortest;
        p->longest_edge = size.longest;
        p->max_h = size.max_h;
        p->max_w = size.max_w;
        if (p->do_resize && !size.shortest && !size.max_h && !size.h) {
            /* transformers' resize refuses these too. */
            st = vit__fail(err, VIT_E_CONFIG,
                           "%s: a \"size\" of %s cannot resize an image (it "
                           "needs height and width, shortest_edge, or "
                           "max_height and max_width)",
                           path, size.longest ? "longest_edge alone"
                                              : "min_pixels and max_pixels");
            goto out;
        }
    }
    json_t *jc = json_object_get(o, "crop_size");
    if (jc && !json_is_null(jc)) {
        if ((st = read_size(o, path, "crop_size", 1, &crop, err)))
            goto out;
        p->crop_h = crop.h;
        p->crop_w = crop.w;
    }
    if (p->do_center_crop && p->crop_h == 0) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: do_center_crop is set but crop_size has no "
                       "height and width",
                       path);
        goto out;
    }
    for (int c = 0; c < 3; c++)
        if (p->do_normalize && p->std[c] == 0) {
            st = vit__fail(err, VIT_E_CONFIG, "%s: image_std has a zero",
                           path);
            goto out;
        }
    /* The tensor the processor makes must be the one the model takes,
     * whenever that is known before seeing an image. */
    int oh, ow;
    if (model_h && vit__processor_size(pr, &oh, &ow) &&
        (oh != model_h || ow != model_w))
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: the processor makes %dx%d images but the model "
                       "takes %dx%d",
                       path, oh, ow, model_h, model_w);
out:
    json_decref(o);
    return st;
}

vit_status vit__cfg_float(json_t *o, const char *path, const char *key,
                          double def, double *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return VIT_OK;
    }
    if (!json_is_number(v))
        return vit__fail(err, VIT_E_CONFIG, "%s: \"%s\" must be a number",
                         path, key);
    *out = json_number_value(v);
    return VIT_OK;
}
