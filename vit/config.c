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


static vit_status pre_size(json_t *o, const char *path, const char *key,
                           int *h, int *w, int *shortest, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return VIT_OK;
    json_t *jh = json_object_get(v, "height"), *jw = json_object_get(v, "width");
    json_t *js = json_object_get(v, "shortest_edge");
    if (json_is_integer(v)) {
        *h = *w = (int)json_integer_value(v);
    } else if (json_is_integer(jh) && json_is_integer(jw)) {
        *h = (int)json_integer_value(jh);
        *w = (int)json_integer_value(jw);
    } else if (shortest && json_is_integer(js)) {
        *shortest = (int)json_integer_value(js);
        if (*shortest < 1 || *shortest > CFG_MAX_DIM)
            return vit__fail(err, VIT_E_CONFIG, "%s: bad \"%s\"", path, key);
        return VIT_OK;
    } else {
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: \"%s\" must be an integer or have height and "
                         "width%s",
                         path, key, shortest ? " or shortest_edge" : "");
    }
    if (*h < 1 || *w < 1 || *h > CFG_MAX_DIM || *w > CFG_MAX_DIM)
        return vit__fail(err, VIT_E_CONFIG, "%s: bad \"%s\"", path, key);
    return VIT_OK;
}

static vit_status pre_floats3(json_t *o, const char *path, const char *key,
                              float *out, vit_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return VIT_OK;
    if (json_is_number(v)) {
        out[0] = out[1] = out[2] = (float)json_number_value(v);
        return VIT_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return vit__fail(err, VIT_E_CONFIG,
                         "%s: \"%s\" must be a list of 3 numbers", path, key);
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (!json_is_number(x))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: \"%s\" must be a list of 3 numbers", path,
                             key);
        out[i] = (float)json_number_value(x);
    }
    return VIT_OK;
}


vit_status vit__read_preprocessor(const char *dir, const img_preprocess_cfg *def,
                                  int model_h, int model_w,
                                  img_preprocess_cfg *p, vit_error *err)
{
    *p = *def;
    char path[4096];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (access(path, F_OK) != 0)
        return VIT_OK;
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return vit__fail(err, VIT_E_CONFIG, "%s:%d: malformed JSON: %s", path,
                         je.line, je.text);
    }
    vit_status st;
    int resample;
    json_t *rf = json_object_get(o, "rescale_factor");
    if (json_is_number(rf))
        p->rescale_factor = (float)json_number_value(rf);
    if ((st = vit__cfg_bool(o, path, "do_resize", p->do_resize,
                            &p->do_resize, err)) ||
        (st = vit__cfg_bool(o, path, "do_center_crop", p->do_center_crop,
                            &p->do_center_crop, err)) ||
        (st = vit__cfg_bool(o, path, "do_rescale", p->do_rescale,
                            &p->do_rescale, err)) ||
        (st = vit__cfg_bool(o, path, "do_normalize", p->do_normalize,
                            &p->do_normalize, err)) ||
        (st = vit__cfg_int(o, path, "resample", (int)p->resample, 0, 5,
                           &resample, err)))
        goto out;
    if (json_object_get(o, "size")) {
        p->shortest_edge = p->size_h = p->size_w = 0;
        if ((st = pre_size(o, path, "size", &p->size_h, &p->size_w,
                           &p->shortest_edge, err)))
            goto out;
    }
    if ((st = pre_size(o, path, "crop_size", &p->crop_h, &p->crop_w, NULL,
                       err)) ||
        (st = pre_floats3(o, path, "image_mean", p->mean, err)) ||
        (st = pre_floats3(o, path, "image_std", p->std, err)))
        goto out;
    p->resample = (img_filter)resample;
    if (p->do_center_crop && p->crop_h == 0) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: do_center_crop is set but crop_size is missing",
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
    int oh = 0, ow = 0;
    if (p->do_center_crop)
        oh = p->crop_h, ow = p->crop_w;
    else if (p->do_resize && !p->shortest_edge)
        oh = p->size_h, ow = p->size_w;
    if (oh && (oh != model_h || ow != model_w))
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
