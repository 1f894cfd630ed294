/*
 * The ViT models: reading config.json and preprocessor_config.json of a
 * `google/vit-*`-style directory, binding ViTForImageClassification and
 * ViTModel to their checkpoint tensors, the per-thread state and its arena,
 * and the forward passes behind vit_classify_pixels and vit_embed_pixels.
 *
 * Dimension legend: B batch, C channels, (Hi, Wi) image size, P patch size,
 * NP = (Hi/P)(Wi/P) patches, T = NP + 1 tokens (class token first),
 * D hidden size, L labels, E embedding size.
 */
#include "vit/vit_impl.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

/* Caps on config values: far past any real ViT, low enough that products
 * of them cannot overflow an int or ask for absurd memory. */
#define CFG_MAX_DIM 65536
#define CFG_MAX_LAYERS 1024

struct vit_model {
    vit_options opt;
    vit__weights *w;
    vit_arch arch;
    char *architecture;
    int C, Hi, Wi, P, gh, gw, NP, T, D;
    int qkv_bias;
    vit__encoder enc;
    const float *patch_w;  /* (D, C * P * P) */
    const float *patch_b;  /* (D) */
    const float *cls;      /* (D) */
    const float *pos;      /* (T, D) */
    const float *ln_w, *ln_b;  /* (D) final layernorm */
    int num_labels;
    char **labels;             /* num_labels */
    const float *head_w;       /* (L, D) */
    const float *head_b;       /* (L) */
    int pool_dim;              /* E when a pooler exists, else 0 */
    vit__act pool_act;
    const float *pool_w;       /* (E, D) */
    const float *pool_b;       /* (E) */
    img_preprocess_cfg pre;
};

struct vit_state {
    const vit_model *m;
    int max_batch;
    float *arena;
    float *x;        /* (B, T, D): the residual stream, then final hidden */
    float *patches;  /* (B * NP, C * P * P) */
    float *cls;      /* (B, D) gathered class tokens */
    float *head;     /* (B, max(L, E)) */
    vit__scratch s;
};

vit_options vit_options_default(void)
{
    img_limits lim = img_limits_default();
    vit_options o = {
        .max_batch = 8,
        .max_width = lim.max_width,
        .max_height = lim.max_height,
        .max_pixels = lim.max_pixels,
        .max_file_bytes = lim.max_bytes,
    };
    return o;
}

/* ---- config.json ---- */

static vit_status cfg_int(json_t *o, const char *path, const char *key,
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

static vit_status cfg_bool(json_t *o, const char *path, const char *key,
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

static vit_status cfg_act(json_t *o, const char *path, const char *key,
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
static vit_status cfg_size2(json_t *o, const char *path, const char *key,
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
    vit_status st = cfg_int(o, path, key, def, 1, CFG_MAX_DIM, h, err);
    *w = *h;
    return st;
}

static vit_status read_labels(vit_model *m, json_t *cfg, const char *path,
                              vit_error *err)
{
    json_t *map = json_object_get(cfg, "id2label");
    int n = 2; /* transformers' default when a config names no labels */
    if (json_is_object(map))
        n = (int)json_object_size(map);
    else if (json_is_integer(json_object_get(cfg, "num_labels")))
        n = (int)json_integer_value(json_object_get(cfg, "num_labels"));
    if (n < 1 || n > 10000000)
        return vit__fail(err, VIT_E_CONFIG, "%s: %d labels", path, n);
    m->labels = calloc((size_t)n, sizeof *m->labels);
    if (!m->labels)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    m->num_labels = n;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%d", i);
        json_t *v = json_is_object(map) ? json_object_get(map, key) : NULL;
        if (json_is_object(map) && !json_is_string(v))
            return vit__fail(err, VIT_E_CONFIG,
                             "%s: id2label has no string for id %d", path, i);
        char fallback[32];
        snprintf(fallback, sizeof fallback, "LABEL_%d", i);
        m->labels[i] = strdup(v ? json_string_value(v) : fallback);
        if (!m->labels[i])
            return vit__fail(err, VIT_E_NOMEM, "out of memory");
    }
    return VIT_OK;
}

static vit_status read_config(vit_model *m, const char *dir, vit_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!cfg) {
        if (access(path, F_OK) != 0)
            return vit__fail(err, VIT_E_IO, "%s: %s", path, strerror(errno));
        return vit__fail(err, VIT_E_CONFIG, "%s:%d: malformed JSON: %s", path,
                         je.line, je.text);
    }
    vit_status st = VIT_OK;
    if (!json_is_object(cfg)) {
        st = vit__fail(err, VIT_E_CONFIG, "%s: not a JSON object", path);
        goto out;
    }
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    json_t *archs = json_object_get(cfg, "architectures");
    const char *arch = json_string_value(json_array_get(archs, 0));
    if (!arch)
        arch = "ViTModel";
    if (mt && strcmp(mt, "vit") != 0) {
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s: model_type \"%s\" is not supported (vit reads "
                       "\"vit\" models)",
                       path, mt);
        goto out;
    }
    if (strcmp(arch, "ViTForImageClassification") == 0)
        m->arch = VIT_ARCH_VIT_CLASSIFIER;
    else if (strcmp(arch, "ViTModel") == 0)
        m->arch = VIT_ARCH_VIT_MODEL;
    else {
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s: architecture \"%s\" is not supported; vit runs "
                       "ViTForImageClassification and ViTModel",
                       path, arch);
        goto out;
    }
    m->architecture = strdup(arch);
    if (!m->architecture) {
        st = vit__fail(err, VIT_E_NOMEM, "out of memory");
        goto out;
    }
    vit__encoder *e = &m->enc;
    int ph, pw;
    double eps = 1e-12;
    json_t *je_eps = json_object_get(cfg, "layer_norm_eps");
    if (je_eps && !json_is_number(je_eps)) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: \"layer_norm_eps\" must be a number", path);
        goto out;
    }
    if (je_eps)
        eps = json_number_value(je_eps);
    e->eps = (float)eps;
    if ((st = cfg_int(cfg, path, "hidden_size", 768, 1, CFG_MAX_DIM, &e->D,
                      err)) ||
        (st = cfg_int(cfg, path, "num_hidden_layers", 12, 0, CFG_MAX_LAYERS,
                      &e->L, err)) ||
        (st = cfg_int(cfg, path, "num_attention_heads", 12, 1, CFG_MAX_DIM,
                      &e->H, err)) ||
        (st = cfg_int(cfg, path, "intermediate_size", 3072, 1,
                      4 * CFG_MAX_DIM, &e->F, err)) ||
        (st = cfg_int(cfg, path, "num_channels", 3, 1, 64, &m->C, err)) ||
        (st = cfg_size2(cfg, path, "image_size", 224, &m->Hi, &m->Wi, err)) ||
        (st = cfg_size2(cfg, path, "patch_size", 16, &ph, &pw, err)) ||
        (st = cfg_bool(cfg, path, "qkv_bias", 1, &m->qkv_bias, err)) ||
        (st = cfg_act(cfg, path, "hidden_act", "gelu", &e->act, err)))
        goto out;
    if (ph != pw) {
        st = vit__fail(err, VIT_E_UNSUPPORTED,
                       "%s: non-square patches (%dx%d)", path, ph, pw);
        goto out;
    }
    m->P = ph;
    m->D = e->D;
    if (e->D % e->H) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: hidden_size %d does not divide by "
                       "num_attention_heads %d",
                       path, e->D, e->H);
        goto out;
    }
    if (m->Hi % m->P || m->Wi % m->P) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: image_size %dx%d does not divide by patch_size %d",
                       path, m->Hi, m->Wi, m->P);
        goto out;
    }
    if (!(eps > 0)) {
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: layer_norm_eps must be positive", path);
        goto out;
    }
    m->gh = m->Hi / m->P;
    m->gw = m->Wi / m->P;
    m->NP = m->gh * m->gw;
    m->T = m->NP + 1;
    if ((int64_t)m->T * m->T > (1 << 28) ||
        (int64_t)m->C * m->P * m->P > CFG_MAX_DIM * 16) {
        st = vit__fail(err, VIT_E_CONFIG, "%s: %d tokens is too many", path,
                       m->T);
        goto out;
    }
    if (m->arch == VIT_ARCH_VIT_CLASSIFIER) {
        if ((st = read_labels(m, cfg, path, err)))
            goto out;
    } else {
        if ((st = cfg_int(cfg, path, "pooler_output_size", e->D, 1,
                          CFG_MAX_DIM, &m->pool_dim, err)) ||
            (st = cfg_act(cfg, path, "pooler_act", "tanh", &m->pool_act, err)))
            goto out;
    }
out:
    json_decref(cfg);
    return st;
}

/* ---- preprocessor_config.json ---- */

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

static vit_status read_preprocessor(vit_model *m, const char *dir,
                                    vit_error *err)
{
    /* ViTImageProcessor's defaults, used for whatever the file leaves out
     * (and for all of it when there is no file). */
    img_preprocess_cfg *p = &m->pre;
    *p = (img_preprocess_cfg){
        .do_resize = 1, .resample = IMG_BILINEAR, .size_h = m->Hi,
        .size_w = m->Wi, .do_rescale = 1, .rescale_factor = 1.0f / 255.0f,
        .do_normalize = 1, .mean = {0.5f, 0.5f, 0.5f},
        .std = {0.5f, 0.5f, 0.5f},
    };
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
    if ((st = cfg_bool(o, path, "do_resize", 1, &p->do_resize, err)) ||
        (st = cfg_bool(o, path, "do_center_crop", 0, &p->do_center_crop,
                       err)) ||
        (st = cfg_bool(o, path, "do_rescale", 1, &p->do_rescale, err)) ||
        (st = cfg_bool(o, path, "do_normalize", 1, &p->do_normalize, err)) ||
        (st = cfg_int(o, path, "resample", IMG_BILINEAR, 0, 5, &resample,
                      err)) ||
        (st = pre_size(o, path, "size", &p->size_h, &p->size_w,
                       &p->shortest_edge, err)) ||
        (st = pre_size(o, path, "crop_size", &p->crop_h, &p->crop_w, NULL,
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
    if (oh && (oh != m->Hi || ow != m->Wi))
        st = vit__fail(err, VIT_E_CONFIG,
                       "%s: the processor makes %dx%d images but the model "
                       "takes %dx%d",
                       path, oh, ow, m->Hi, m->Wi);
out:
    json_decref(o);
    return st;
}

/* ---- binding tensors ---- */

static const vit__layer_names vit_names = {
    .ln1_w = "%sencoder.layer.%d.layernorm_before.weight",
    .ln1_b = "%sencoder.layer.%d.layernorm_before.bias",
    .wq = "%sencoder.layer.%d.attention.attention.query.weight",
    .bq = "%sencoder.layer.%d.attention.attention.query.bias",
    .wk = "%sencoder.layer.%d.attention.attention.key.weight",
    .bk = "%sencoder.layer.%d.attention.attention.key.bias",
    .wv = "%sencoder.layer.%d.attention.attention.value.weight",
    .bv = "%sencoder.layer.%d.attention.attention.value.bias",
    .wo = "%sencoder.layer.%d.attention.output.dense.weight",
    .bo = "%sencoder.layer.%d.attention.output.dense.bias",
    .ln2_w = "%sencoder.layer.%d.layernorm_after.weight",
    .ln2_b = "%sencoder.layer.%d.layernorm_after.bias",
    .w1 = "%sencoder.layer.%d.intermediate.dense.weight",
    .b1 = "%sencoder.layer.%d.intermediate.dense.bias",
    .w2 = "%sencoder.layer.%d.output.dense.weight",
    .b2 = "%sencoder.layer.%d.output.dense.bias",
};

static const float *get(vit_model *m, const char *prefix, const char *name,
                        int ndim, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3, vit_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[4] = {d0, d1, d2, d3};
    return vit__weights_get(m->w, full, ndim, shape, err);
}

static vit_status bind_weights(vit_model *m, vit_error *err)
{
    /* ViTForImageClassification nests the ViTModel under "vit."; a bare
     * ViTModel saves it at the top level. */
    const char *px = vit__weights_find(m->w, "vit.embeddings.cls_token")
                         ? "vit."
                         : "";
    int D = m->D;
    if (!(m->patch_w = get(m, px, "embeddings.patch_embeddings.projection.weight",
                           4, D, m->C, m->P, m->P, err)) ||
        !(m->patch_b = get(m, px, "embeddings.patch_embeddings.projection.bias",
                           1, D, 0, 0, 0, err)) ||
        !(m->cls = get(m, px, "embeddings.cls_token", 3, 1, 1, D, 0, err)) ||
        !(m->pos = get(m, px, "embeddings.position_embeddings", 3, 1, m->T, D,
                       0, err)) ||
        !(m->ln_w = get(m, px, "layernorm.weight", 1, D, 0, 0, 0, err)) ||
        !(m->ln_b = get(m, px, "layernorm.bias", 1, D, 0, 0, 0, err)))
        return VIT_E_CHECKPOINT;
    vit_status st = vit__encoder_bind(&m->enc, m->w, &vit_names, px,
                                      m->qkv_bias, err);
    if (st)
        return st;
    if (m->arch == VIT_ARCH_VIT_CLASSIFIER) {
        if (!(m->head_w = get(m, "", "classifier.weight", 2, m->num_labels, D,
                              0, 0, err)) ||
            !(m->head_b = get(m, "", "classifier.bias", 1, m->num_labels, 0,
                              0, 0, err)))
            return VIT_E_CHECKPOINT;
    } else if (vit__weights_find(m->w, "pooler.dense.weight")) {
        if (!(m->pool_w = get(m, "", "pooler.dense.weight", 2, m->pool_dim, D,
                              0, 0, err)) ||
            !(m->pool_b = get(m, "", "pooler.dense.bias", 1, m->pool_dim, 0,
                              0, 0, err)))
            return VIT_E_CHECKPOINT;
    } else {
        m->pool_dim = 0; /* saved with add_pooling_layer=False */
    }
    return VIT_OK;
}

/* ---- load / free / info ---- */

vit_status vit_model_load(const char *dir, const vit_options *opt,
                          vit_model **out, vit_error *err)
{
    if (!dir || !out)
        return vit__fail(err, VIT_E_ARG, "vit_model_load: NULL argument");
    vit_model *m = calloc(1, sizeof *m);
    if (!m)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    m->opt = opt ? *opt : vit_options_default();
    if (m->opt.max_batch < 1)
        m->opt.max_batch = 1;
    vit_status st;
    if ((st = read_config(m, dir, err)) ||
        (st = read_preprocessor(m, dir, err)) ||
        (st = vit__weights_open(dir, &m->w, err)))
        goto fail;
    if ((st = bind_weights(m, err)) != VIT_OK) {
        /* Name the directory: the tensor-level message alone does not say
         * which model was being loaded. */
        char inner[sizeof err->msg];
        if (err) {
            memcpy(inner, err->msg, sizeof inner);
            vit__fail(err, st, "%s: %s", dir, inner);
        }
        goto fail;
    }
    *out = m;
    return VIT_OK;
fail:
    vit_model_free(m);
    return st;
}

void vit_model_free(vit_model *m)
{
    if (!m)
        return;
    vit__encoder_free(&m->enc);
    vit__weights_free(m->w);
    for (int i = 0; i < m->num_labels && m->labels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->architecture);
    free(m);
}

void vit_model_get_info(const vit_model *m, vit_model_info *info)
{
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->architecture = m->architecture;
    info->channels = m->C;
    info->image_h = m->Hi;
    info->image_w = m->Wi;
    info->num_labels = m->arch == VIT_ARCH_VIT_CLASSIFIER ? m->num_labels : 0;
    info->embed_dim = m->pool_dim ? m->pool_dim : m->D;
    info->hidden_size = m->D;
    info->num_layers = m->enc.L;
    info->num_heads = m->enc.H;
    info->patch_size = m->P;
    info->mlp_size = m->enc.F;
}

const char *vit_model_label(const vit_model *m, int id)
{
    if (!m || m->arch != VIT_ARCH_VIT_CLASSIFIER || id < 0 ||
        id >= m->num_labels)
        return NULL;
    return m->labels[id];
}

const vit_options *vit__model_options(const vit_model *m) { return &m->opt; }

const img_preprocess_cfg *vit__model_preprocess(const vit_model *m)
{
    return &m->pre;
}

/* ---- state ---- */

vit_status vit_state_new(const vit_model *m, vit_state **out, vit_error *err)
{
    if (!m || !out)
        return vit__fail(err, VIT_E_ARG, "vit_state_new: NULL argument");
    vit_state *s = calloc(1, sizeof *s);
    if (!s)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    int B = m->opt.max_batch, T = m->T, D = m->D;
    int heads = m->num_labels > m->pool_dim ? m->num_labels : m->pool_dim;
    size_t cpp = (size_t)m->C * m->P * m->P;
    size_t nx = (size_t)B * T * D, np = (size_t)B * m->NP * cpp,
           nc = (size_t)B * D, nh = (size_t)B * (heads > 0 ? heads : 1);
    size_t total = nx + np + nc + nh +
                   vit__scratch_floats(B, T, D, m->enc.F);
    s->arena = malloc(total * sizeof(float));
    if (!s->arena) {
        free(s);
        return vit__fail(err, VIT_E_NOMEM,
                         "out of memory for a %zu MiB activation arena "
                         "(max_batch %d)",
                         total * sizeof(float) >> 20, B);
    }
    s->m = m;
    s->max_batch = B;
    s->x = s->arena;
    s->patches = s->x + nx;
    s->cls = s->patches + np;
    s->head = s->cls + nc;
    vit__scratch_carve(&s->s, s->head + nh, B, T, D, m->enc.F);
    *out = s;
    return VIT_OK;
}

void vit_state_free(vit_state *s)
{
    if (!s)
        return;
    free(s->arena);
    free(s);
}

/* ---- forward ---- */

static void patch_embed(vit_state *s, const float *pixels, int B)
{
    /* pixels (B, C, Hi, Wi) -> patches (B * NP, C * P * P), the im2col of
     * the stride-P convolution, in the weight's (c, ky, kx) order. */
    const vit_model *m = s->m;
    int C = m->C, P = m->P, Hi = m->Hi, Wi = m->Wi;
    size_t cpp = (size_t)C * P * P;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < m->gh; py++)
            for (int px = 0; px < m->gw; px++) {
                float *row = s->patches +
                             ((size_t)b * m->NP + (size_t)py * m->gw + px) * cpp;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < P; ky++)
                        memcpy(row + ((size_t)c * P + ky) * P,
                               pixels + (((size_t)b * C + c) * Hi +
                                         (size_t)py * P + ky) * Wi +
                                   (size_t)px * P,
                               (size_t)P * sizeof(float));
            }
    /* The patch tokens go to rows 1..NP of each sequence: one GEMM per
     * image, writing with the sequence's stride. */
    int D = m->D, T = m->T;
    for (int b = 0; b < B; b++) {
        float *x = s->x + (size_t)b * T * D;
        memcpy(x, m->cls, (size_t)D * sizeof *x);
        vit__linear(x + D, s->patches + (size_t)b * m->NP * cpp, m->patch_w,
                    m->patch_b, m->NP, D, (int)cpp);
        for (size_t i = 0; i < (size_t)T * D; i++)
            x[i] += m->pos[i];
    }
}

void vit__forward_hidden(vit_state *s, const float *pixels, int B)
{
    const vit_model *m = s->m;
    patch_embed(s, pixels, B);
    vit__encoder_forward(&m->enc, s->x, B, m->T, 0, &s->s);
    vit__layernorm(s->x, s->x, m->ln_w, m->ln_b, B * m->T, m->D, m->enc.eps);
}

const float *vit__state_hidden(const vit_state *s) { return s->x; }

const vit_model *vit__state_model(const vit_state *s) { return s->m; }

static void gather_cls(vit_state *s, int B)
{
    int D = s->m->D, T = s->m->T;
    for (int b = 0; b < B; b++)
        memcpy(s->cls + (size_t)b * D, s->x + (size_t)b * T * D,
               (size_t)D * sizeof(float));
}

static vit_status check_run(vit_state *s, const void *pixels, int n,
                            vit_error *err)
{
    if (!s || (!pixels && n > 0) || n < 0)
        return vit__fail(err, VIT_E_ARG, "NULL state or pixels");
    return VIT_OK;
}

static void top_k(const float *logits, int L, int k, vit_prediction *out,
                  const vit_model *m, float *probs)
{
    memcpy(probs, logits, (size_t)L * sizeof *probs);
    vit__softmax(probs, 1, L);
    int kk = k < L ? k : L;
    for (int r = 0; r < kk; r++) {
        int best = -1;
        for (int i = 0; i < L; i++) {
            if (probs[i] < 0)
                continue; /* taken */
            if (best < 0 || probs[i] > probs[best])
                best = i;
        }
        out[r].id = best;
        out[r].score = probs[best];
        out[r].label = m->labels[best];
        probs[best] = -1;
    }
    for (int r = kk; r < k; r++)
        out[r] = (vit_prediction){.id = -1, .score = 0, .label = NULL};
}

vit_status vit_classify_pixels(vit_state *s, const float *pixels, int n,
                               int top_k_n, vit_prediction *out,
                               float *logits, vit_error *err)
{
    vit_status st = check_run(s, pixels, n, err);
    if (st)
        return st;
    const vit_model *m = s->m;
    if (m->arch != VIT_ARCH_VIT_CLASSIFIER)
        return vit__fail(err, VIT_E_NO_HEAD,
                         "%s has no classification head; use embeddings",
                         m->architecture);
    if (top_k_n < 0 || (top_k_n > 0 && !out))
        return vit__fail(err, VIT_E_ARG, "bad top_k or NULL output");
    size_t per = (size_t)m->C * m->Hi * m->Wi;
    int L = m->num_labels, D = m->D;
    float *probs = malloc((size_t)L * sizeof *probs);
    if (!probs)
        return vit__fail(err, VIT_E_NOMEM, "out of memory");
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__forward_hidden(s, pixels + (size_t)i0 * per, B);
        gather_cls(s, B);
        vit__linear(s->head, s->cls, m->head_w, m->head_b, B, L, D);
        for (int b = 0; b < B; b++) {
            const float *lg = s->head + (size_t)b * L;
            if (logits)
                memcpy(logits + (size_t)(i0 + b) * L, lg,
                       (size_t)L * sizeof *lg);
            if (top_k_n > 0)
                top_k(lg, L, top_k_n, out + (size_t)(i0 + b) * top_k_n, m,
                      probs);
        }
    }
    free(probs);
    return VIT_OK;
}

vit_status vit_embed_pixels(vit_state *s, const float *pixels, int n,
                            float *out, vit_error *err)
{
    vit_status st = check_run(s, pixels, n, err);
    if (st)
        return st;
    if (!out)
        return vit__fail(err, VIT_E_ARG, "NULL output");
    const vit_model *m = s->m;
    size_t per = (size_t)m->C * m->Hi * m->Wi;
    int D = m->D, E = m->pool_dim ? m->pool_dim : D;
    for (int i0 = 0; i0 < n; i0 += s->max_batch) {
        int B = n - i0 < s->max_batch ? n - i0 : s->max_batch;
        vit__forward_hidden(s, pixels + (size_t)i0 * per, B);
        gather_cls(s, B);
        float *dst = out + (size_t)i0 * E;
        if (m->pool_dim) {
            vit__linear(dst, s->cls, m->pool_w, m->pool_b, B, E, D);
            vit__activation(dst, (size_t)B * E, m->pool_act);
        } else {
            memcpy(dst, s->cls, (size_t)B * D * sizeof *dst);
        }
    }
    return VIT_OK;
}
